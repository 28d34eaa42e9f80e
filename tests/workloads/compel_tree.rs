//! Workload for the compel tests: a tree of processes (the root and `--children N` copies of
//! itself), each running 8 threads that compute, sleep, pass data through a pipe, ping-pong
//! on a futex and wait in epoll, each checking its own results.
//!
//! Protocol: prints `ready` once every thread of every process has done one round. Reads
//! stdin; on `tick` it waits until every thread of every process made progress since the
//! last check and answers `tick`; on `stop` or EOF it checks that every thread still makes progress, stops the
//! threads, and exits 0 when every check passed, 1 otherwise (the failures on stderr).
//!
//! Options: `--children N` (default 2), `--max-late-ms M`: how late a sleep may end (default
//! 1000), `--child` (internal).
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use crs_sys::time::{clock_nanosleep, now, Sleep};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::eventfd::{EfdFlags, EventFd};

const SLEEP: Duration = Duration::from_millis(20);
const WRITER_PERIOD: Duration = Duration::from_millis(3);
/// How long, after `stop`, every thread gets to show it still makes progress.
const PROGRESS_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Shared {
    stop: AtomicBool,
    compute: AtomicU64,
    sleeps: AtomicU64,
    written: AtomicU64,
    read: AtomicU64,
    ping: AtomicU64,
    pong: AtomicU64,
    epoll: AtomicU64,
    turn: AtomicU32,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, what: String) {
        let mut f = self.failures.lock().unwrap();
        if f.len() < 20 {
            f.push(what);
        }
    }

    fn counters(&self) -> [(&'static str, u64); 7] {
        [
            ("compute", self.compute.load(SeqCst)),
            ("sleeps", self.sleeps.load(SeqCst)),
            ("written", self.written.load(SeqCst)),
            ("read", self.read.load(SeqCst)),
            ("ping", self.ping.load(SeqCst)),
            ("pong", self.pong.load(SeqCst)),
            ("epoll", self.epoll.load(SeqCst)),
        ]
    }
}

/// The computation every round repeats: integer and floating point, so a corrupted
/// register or FPU state shows as a wrong result.
fn checksum(seed: u64) -> (u64, f64) {
    let mut h: u64 = 0xcbf29ce484222325 ^ seed;
    let mut f = 0.0f64;
    for i in 0..20_000u64 {
        h ^= i.wrapping_mul(0x9e3779b97f4a7c15);
        h = h.wrapping_mul(0x100000001b3);
        f += ((i + seed) as f64).sqrt() * 1.000_000_1;
    }
    (h, f)
}

fn mono() -> Duration {
    now(libc::CLOCK_MONOTONIC).expect("clock_gettime")
}

fn spawn_workers(sh: &Arc<Shared>, max_late: Duration) -> Vec<std::thread::JoinHandle<()>> {
    let barrier = Arc::new(Barrier::new(8));
    let (pipe_r, pipe_w) = nix::unistd::pipe().expect("pipe");
    let efd = Arc::new(EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).expect("eventfd"));
    let mut handles = Vec::new();
    let mut go = |name: &str, f: Box<dyn FnOnce() + Send>| {
        handles.push(
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .expect("spawn"),
        );
    };

    // 1. compute
    let (s, b) = (sh.clone(), barrier.clone());
    go(
        "compute",
        Box::new(move || {
            let want: Vec<(u64, f64)> = (0..4).map(checksum).collect();
            let mut round = 0u64;
            loop {
                let k = round % 4;
                let got = checksum(k);
                if got.0 != want[k as usize].0 || got.1.to_bits() != want[k as usize].1.to_bits() {
                    s.fail(format!("checksum {k} wrong in round {round}: {got:?}"));
                }
                s.compute.fetch_add(1, SeqCst);
                if round == 0 {
                    b.wait();
                }
                round += 1;
                if s.stop.load(SeqCst) {
                    return;
                }
            }
        }),
    );

    // 2. sleeper: alternates relative (restart_syscall on restart) and absolute
    // (re-executed on restart) sleeps, each checked against the clock.
    let (s, b) = (sh.clone(), barrier.clone());
    go(
        "sleeper",
        Box::new(move || {
            let mut round = 0u64;
            loop {
                let start = mono();
                let (what, res) = if round & 1 == 0 {
                    (
                        "relative",
                        clock_nanosleep(libc::CLOCK_MONOTONIC, Sleep::Relative(SLEEP)),
                    )
                } else {
                    (
                        "absolute",
                        clock_nanosleep(libc::CLOCK_MONOTONIC, Sleep::Until(start + SLEEP)),
                    )
                };
                let took = mono() - start;
                if let Err(e) = res {
                    s.fail(format!("{what} sleep failed: {e}"));
                } else if took < SLEEP {
                    s.fail(format!("{what} sleep ended early: {took:?}"));
                } else if took > SLEEP + max_late {
                    s.fail(format!("{what} sleep ended late: {took:?}"));
                }
                s.sleeps.fetch_add(1, SeqCst);
                if round == 0 {
                    b.wait();
                }
                round += 1;
                if s.stop.load(SeqCst) {
                    return;
                }
            }
        }),
    );

    // 3. pipe writer (also pokes the eventfd the epoll thread waits on)
    let (s, b, e) = (sh.clone(), barrier.clone(), efd.clone());
    let mut w = File::from(pipe_w);
    go(
        "writer",
        Box::new(move || {
            let mut seq = 0u64;
            loop {
                if let Err(err) = w.write_all(&seq.to_le_bytes()) {
                    s.fail(format!("pipe write failed: {err}"));
                }
                seq += 1;
                s.written.fetch_add(1, SeqCst);
                if let Err(err) = e.write(1) {
                    s.fail(format!("eventfd write failed: {err}"));
                }
                if seq == 1 {
                    b.wait();
                }
                if s.stop.load(SeqCst) {
                    return; // dropping `w` gives the reader EOF
                }
                if let Err(err) =
                    clock_nanosleep(libc::CLOCK_MONOTONIC, Sleep::Relative(WRITER_PERIOD))
                {
                    s.fail(format!("writer sleep failed: {err}"));
                }
            }
        }),
    );

    // 4. pipe reader: blocking reads, sequence checked
    let (s, b) = (sh.clone(), barrier.clone());
    let mut r = File::from(pipe_r);
    go(
        "reader",
        Box::new(move || {
            let mut want = 0u64;
            let mut buf = [0u8; 8];
            loop {
                match r.read_exact(&mut buf) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return,
                    Err(e) => {
                        s.fail(format!("pipe read failed: {e}"));
                        return;
                    }
                }
                let got = u64::from_le_bytes(buf);
                if got != want {
                    s.fail(format!("pipe delivered {got}, expected {want}"));
                }
                want = got + 1;
                s.read.fetch_add(1, SeqCst);
                if want == 1 {
                    b.wait();
                }
            }
        }),
    );

    // 5./6. futex ping-pong: `turn` 0 = ping's move, 1 = pong's, 2 = stop.
    for (me, name) in [(0u32, "ping"), (1u32, "pong")] {
        let (s, b) = (sh.clone(), barrier.clone());
        go(
            name,
            Box::new(move || {
                let mut round = 0u64;
                loop {
                    loop {
                        let t = s.turn.load(SeqCst);
                        if t == 2 {
                            return;
                        }
                        if t == me {
                            break;
                        }
                        // pong waits with a timeout (restart_syscall path), ping without.
                        let timeout = (me == 1).then_some(Duration::from_secs(1));
                        match crs_sys::futex::wait(&s.turn, t, timeout) {
                            Ok(()) => {}
                            Err(e)
                                if matches!(
                                    e.raw_os_error(),
                                    Some(libc::EAGAIN | libc::ETIMEDOUT)
                                ) => {}
                            Err(e) => s.fail(format!("{name} futex wait failed: {e}")),
                        }
                    }
                    let (mine, other) = if me == 0 {
                        (&s.ping, &s.pong)
                    } else {
                        (&s.pong, &s.ping)
                    };
                    let n = mine.fetch_add(1, SeqCst) + 1;
                    let o = other.load(SeqCst);
                    let ok = if me == 0 { n == o + 1 } else { n == o };
                    if !ok {
                        s.fail(format!("{name} round {n} saw the other side at {o}"));
                    }
                    let _ = s.turn.compare_exchange(me, 1 - me, SeqCst, SeqCst);
                    let _ = crs_sys::futex::wake(&s.turn, 1);
                    if round == 0 {
                        b.wait();
                    }
                    round += 1;
                }
            }),
        );
    }

    // 7. epoll on the eventfd, with a timeout; EINTR is allowed (epoll_wait is never
    // restarted after a stop) and retried.
    let (s, b, e) = (sh.clone(), barrier.clone(), efd);
    go(
        "epoll",
        Box::new(move || {
            let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).expect("epoll");
            ep.add(e.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, 7))
                .expect("epoll add");
            let mut events = [EpollEvent::empty(); 4];
            let mut round = 0u64;
            loop {
                match ep.wait(&mut events, 100u16) {
                    Ok(n) => {
                        for ev in &events[..n] {
                            if ev.data() != 7 {
                                s.fail(format!("epoll returned data {}", ev.data()));
                            }
                        }
                        if n > 0 {
                            if let Err(err) = e.read() {
                                s.fail(format!("eventfd read failed: {err}"));
                            }
                            s.epoll.fetch_add(1, SeqCst);
                            if round == 0 {
                                b.wait();
                            }
                            round += 1;
                        }
                    }
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(err) => s.fail(format!("epoll_wait failed: {err}")),
                }
                if s.stop.load(SeqCst) {
                    return;
                }
            }
        }),
    );

    barrier.wait();
    handles
}

/// Waits until every counter moved past its value at the call, or the deadline.
fn check_progress(sh: &Shared) {
    let before = sh.counters();
    let start = Instant::now();
    loop {
        let now = sh.counters();
        let stuck: Vec<&str> = before
            .iter()
            .zip(now.iter())
            .filter(|(b, n)| n.1 <= b.1)
            .map(|(b, _)| b.0)
            .collect();
        if stuck.is_empty() {
            return;
        }
        if start.elapsed() > PROGRESS_DEADLINE {
            sh.fail(format!("no progress after release: {stuck:?}"));
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mut children = 2usize;
    let mut max_late = Duration::from_millis(1000);
    let mut is_child = false;
    let mut i = 1;
    while i < args.len() {
        match args[i].as_str() {
            "--children" => {
                i += 1;
                children = args
                    .get(i)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| usage());
            }
            "--max-late-ms" => {
                i += 1;
                max_late = Duration::from_millis(
                    args.get(i)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or_else(|| usage()),
                );
            }
            "--child" => is_child = true,
            _ => usage(),
        }
        i += 1;
    }
    if is_child {
        children = 0;
    }

    // Children first: spawning from a process with threads running is fine, but keep the
    // tree's shape simple and fixed.
    let mut kids = Vec::new();
    for _ in 0..children {
        let mut kid = Command::new(std::env::current_exe().expect("current_exe"))
            .args([
                "--child",
                "--max-late-ms",
                &max_late.as_millis().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let mut out = BufReader::new(kid.stdout.take().expect("child stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("child ready");
        if line.trim() != "ready" {
            eprintln!("compel_tree: child said {line:?}");
            std::process::exit(1);
        }
        kids.push((kid, out));
    }

    let sh = Arc::new(Shared::default());
    let handles = spawn_workers(&sh, max_late);
    println!("ready");
    io::stdout().flush().expect("stdout");

    // The main thread blocks in read(2) until told to stop. `tick`: show that every
    // thread of every process moved since the last tick, then answer `tick`.
    loop {
        let mut line = String::new();
        if io::stdin().lock().read_line(&mut line).unwrap_or(0) == 0 || line.trim() != "tick" {
            break;
        }
        check_progress(&sh);
        for (kid, out) in kids.iter_mut() {
            let stdin = kid.stdin.as_mut().expect("child stdin");
            let mut answer = String::new();
            if stdin.write_all(b"tick\n").is_err()
                || out.read_line(&mut answer).is_err()
                || answer.trim() != "tick"
            {
                sh.fail(format!("child {} did not answer tick", kid.id()));
            }
        }
        println!("tick");
        io::stdout().flush().expect("stdout");
    }

    check_progress(&sh);
    sh.stop.store(true, SeqCst);
    sh.turn.store(2, SeqCst);
    let _ = crs_sys::futex::wake(&sh.turn, u32::MAX);
    for h in handles {
        if h.join().is_err() {
            sh.fail("a worker thread panicked".into());
        }
    }
    let (ping, pong) = (sh.ping.load(SeqCst), sh.pong.load(SeqCst));
    if ping != pong && ping != pong + 1 {
        sh.fail(format!("futex ping {ping} pong {pong}"));
    }
    if sh.read.load(SeqCst) != sh.written.load(SeqCst) {
        sh.fail(format!(
            "pipe: written {} read {}",
            sh.written.load(SeqCst),
            sh.read.load(SeqCst)
        ));
    }

    let mut ok = true;
    for (n, (mut kid, _)) in kids.into_iter().enumerate() {
        drop(kid.stdin.take()); // EOF = stop
        match kid.wait() {
            Ok(st) if st.success() => {}
            Ok(st) => {
                eprintln!("compel_tree: child {n} ended with {st}");
                ok = false;
            }
            Err(e) => {
                eprintln!("compel_tree: waiting for child {n}: {e}");
                ok = false;
            }
        }
    }
    let failures = sh.failures.lock().unwrap();
    let pid = std::process::id();
    eprintln!("compel_tree[{pid}]: {:?}", sh.counters());
    for f in failures.iter() {
        eprintln!("compel_tree[{pid}]: FAIL {f}");
    }
    std::process::exit(if ok && failures.is_empty() { 0 } else { 1 });
}

fn usage() -> ! {
    eprintln!("usage: compel_tree [--children N] [--max-late-ms M]");
    std::process::exit(2);
}
