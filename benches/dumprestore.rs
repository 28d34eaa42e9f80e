//! End-to-end dump/restore benchmark of `crs` against the kernel's limit and, when a working
//! one is found, CRIU.
//!
//! For each filesystem (tmpfs under /dev/shm, and the filesystem of `target/`, ext4 here)
//! and each workload (`benches/workloads/memfill.c`: N MiB of touched, checksummed
//! anonymous memory; N = 0 is the `sleep`), every iteration:
//!
//! 1. starts a fresh workload and waits for its `ready`;
//! 2. measures the raw limit on it: `process_vm_readv` of the same memory, 4 MiB per call on
//!    two threads, each `pwrite`n at its offset of a fresh file on the same filesystem
//!    (no fsync: the page cache is the limit; the file is then removed, which drops its
//!    dirty pages);
//! 3. `crs dump -t PID -D DIR` (wall time and peak RSS, measured by a wrapper process that
//!    waits for crs and reads `getrusage(RUSAGE_CHILDREN)`), checks the workload was killed;
//! 4. `crs restore -D DIR -d`, then SIGTERMs the restored workload, which re-checks its
//!    checksum: anything but exit 0 fails the benchmark;
//!
//! and the same for criu in the same run, alternating which tool goes first. Medians are
//! printed with the ratios crs/limit and criu/crs, and written to `target/bench/results.json`
//! and `target/bench/results.svg`.
//!
//! Environment: `CRS_BIN` (default `target/release/crs`), `CRIU` (else `criu` on PATH, used
//! only if `criu check` passes), `CRS_BENCH_ITERS` (default 5 for small workloads, 3 for
//! 1 GiB, 2 for 4 GiB), `CRS_BENCH_4G=1` adds the 4 GiB workload, a non-flag argument
//! filters cases by substring (e.g. `cargo bench --bench dumprestore -- 1024`).
#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, IoSliceMut, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use serde_json::json;

const WRAP_ENV: &str = "CRS_BENCH_WRAP";
const CHUNK: usize = 4 << 20;
const READY_TIMEOUT: Duration = Duration::from_secs(120);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches lives in the workspace")
        .to_path_buf()
}

/// Wrapper mode: runs argv, prints "<wall ns> <peak rss KiB> <exit code>".
fn wrap(args: &[String]) -> ! {
    let t = Instant::now();
    let st = Command::new(&args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", args[0]));
    let wall = t.elapsed();
    let ru = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN)
        .expect("getrusage");
    println!(
        "{} {} {}",
        wall.as_nanos(),
        ru.max_rss(),
        st.code().unwrap_or(-1)
    );
    std::process::exit(0);
}

/// One timed run of a dump or restore command.
#[derive(Clone, Copy, Debug)]
struct Timed {
    secs: f64,
    rss_kib: u64,
}

fn timed(cmd: &[String], log: &Path) -> Result<Timed, String> {
    let exe = std::env::current_exe().expect("current_exe");
    let out = Command::new(exe)
        .env(WRAP_ENV, "1")
        .args(cmd)
        .stdin(Stdio::null())
        .stderr(File::create(log).expect("create command log"))
        .output()
        .expect("run the wrapper");
    let s = String::from_utf8_lossy(&out.stdout);
    let f: Vec<i64> = s
        .split_whitespace()
        .map(|x| x.parse().expect("wrapper output"))
        .collect();
    if f.len() != 3 {
        return Err(format!("wrapper printed {s:?}"));
    }
    if f[2] != 0 {
        let l = fs::read_to_string(log).unwrap_or_default();
        return Err(format!("`{}` exited {}: {l}", cmd.join(" "), f[2]));
    }
    Ok(Timed {
        secs: f[0] as f64 / 1e9,
        rss_kib: f[1] as u64,
    })
}

/// A process this bench started or got as a restored orphan (we are a child subreaper):
/// SIGKILLed and reaped on drop unless reaped already.
struct Proc {
    pid: i32,
    reaped: bool,
}

impl Proc {
    fn wait(&mut self) -> WaitStatus {
        let st = waitpid(Pid::from_raw(self.pid), None).expect("waitpid");
        self.reaped = true;
        st
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(self.pid), None);
        }
    }
}

#[derive(Clone, Debug)]
struct Workload {
    name: String,
    mib: u64,
    extra: Vec<String>,
    /// crs cannot do this one yet.
    crs_unsupported: bool,
    iters: usize,
}

fn start(memfill: &Path, w: &Workload, work: &Path, seed: u64) -> Proc {
    let fifo = work.join("ready");
    let _ = fs::remove_file(&fifo);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let mut ready = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("open fifo");
    let log = File::create(work.join("workload.log")).expect("workload.log");
    let child = Command::new(memfill)
        .arg(w.mib.to_string())
        .arg(seed.to_string())
        .args(&w.extra)
        .current_dir(work)
        .env_clear()
        .env("ZOO_READY", &fifo)
        .env("ZOO_TMP", work)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("spawn memfill");
    let mut p = Proc {
        pid: child.id() as i32,
        reaped: false,
    };
    drop(child);
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut got = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "{}: not ready in time", w.name);
        let mut fds = [PollFd::new(ready.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(200u16)).expect("poll");
        if n == 0 {
            match waitpid(Pid::from_raw(p.pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => continue,
                st => {
                    p.reaped = true;
                    panic!("{}: workload ended before ready: {st:?}", w.name)
                }
            }
        }
        let mut buf = [0u8; 64];
        match ready.read(&mut buf) {
            Ok(0) if got.is_empty() => panic!("{}: fifo closed without ready", w.name),
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => panic!("reading fifo: {e}"),
        }
    }
    assert_eq!(got, b"ready\n", "{}: workload said {got:?}", w.name);
    p
}

/// The largest private anonymous read-write mapping of `pid`: the workload's memory.
fn region(pid: i32) -> (u64, u64) {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    maps.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let range = f.next()?;
            let perms = f.next()?;
            let path = f.nth(3);
            if perms != "rw-p" || path.is_some() {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            let a = u64::from_str_radix(a, 16).ok()?;
            let b = u64::from_str_radix(b, 16).ok()?;
            Some((a, b - a))
        })
        .max_by_key(|r| r.1)
        .expect("an anonymous mapping")
}

/// process_vm_readv of `len` bytes at `addr` of `pid`, 4 MiB per call on two threads, each
/// chunk pwritten at its offset of a fresh file in `dir`. Returns the seconds it took.
fn raw_limit(pid: i32, addr: u64, len: u64, dir: &Path) -> f64 {
    let path = dir.join("limit.raw");
    let f = File::create(&path).expect("create limit file");
    let chunks = len.div_ceil(CHUNK as u64);
    let next = std::sync::atomic::AtomicU64::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let mut buf = vec![0u8; CHUNK];
                loop {
                    let c = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if c >= chunks {
                        break;
                    }
                    let off = c * CHUNK as u64;
                    let n = (len - off).min(CHUNK as u64) as usize;
                    let remote = [RemoteIoVec {
                        base: (addr + off) as usize,
                        len: n,
                    }];
                    let got = process_vm_readv(
                        Pid::from_raw(pid),
                        &mut [IoSliceMut::new(&mut buf[..n])],
                        &remote,
                    )
                    .expect("process_vm_readv");
                    assert_eq!(got, n, "short process_vm_readv");
                    f.write_all_at(&buf[..n], off).expect("pwrite");
                }
            });
        }
    });
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    fs::remove_file(&path).expect("remove limit file");
    secs
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Tool {
    Crs,
    Criu,
}

struct Tools {
    crs: PathBuf,
    criu: Option<PathBuf>,
    memfill: PathBuf,
}

/// One dump + restore + verdict of a fresh workload with `tool`.
fn cycle(t: &Tools, tool: Tool, w: &Workload, work: &Path, seed: u64) -> (Timed, Timed) {
    let mut p = start(&t.memfill, w, work, seed);
    let images = work.join(match tool {
        Tool::Crs => "img-crs",
        Tool::Criu => "img-criu",
    });
    let _ = fs::remove_dir_all(&images);
    fs::create_dir(&images).expect("images dir");
    let bin = match tool {
        Tool::Crs => t.crs.clone(),
        Tool::Criu => t.criu.clone().expect("criu"),
    };
    let s = |p: &Path| p.to_str().expect("utf-8 path").to_string();
    let pid = p.pid.to_string();
    let dump = timed(
        &[
            s(&bin),
            "dump".into(),
            "-t".into(),
            pid.clone(),
            "-D".into(),
            s(&images),
            "-o".into(),
            "dump.log".into(),
        ],
        &work.join("dump.out"),
    )
    .unwrap_or_else(|e| panic!("{}: {tool:?} dump: {e}", w.name));
    match p.wait() {
        WaitStatus::Signaled(_, Signal::SIGKILL, _) => {}
        st => panic!("{}: dumped workload ended with {st:?}", w.name),
    }
    let pidfile = work.join("restore.pid");
    let _ = fs::remove_file(&pidfile);
    let restore = timed(
        &[
            s(&bin),
            "restore".into(),
            "-D".into(),
            s(&images),
            "-d".into(),
            "-o".into(),
            "restore.log".into(),
            "--pidfile".into(),
            s(&pidfile),
        ],
        &work.join("restore.out"),
    );
    // Whatever happened, a restored process is ours now (child subreaper).
    let mut r = Proc {
        pid: p.pid,
        reaped: false,
    };
    let restore = restore.unwrap_or_else(|e| panic!("{}: {tool:?} restore: {e}", w.name));
    let before = fs::read_to_string(format!("/proc/{}/stat", r.pid)).unwrap_or_default();
    kill(Pid::from_raw(r.pid), Signal::SIGTERM).expect("SIGTERM the restored workload");
    match r.wait() {
        WaitStatus::Exited(_, 0) => {}
        st => {
            let log = fs::read_to_string(work.join("workload.log")).unwrap_or_default();
            panic!(
                "{}: {tool:?}-restored workload failed its check: {st:?}: {log} (before SIGTERM: {before})",
                w.name
            )
        }
    }
    let _ = fs::remove_dir_all(&images);
    (dump, restore)
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

#[derive(Default)]
struct Samples {
    dump: Vec<f64>,
    restore: Vec<f64>,
    dump_rss: Vec<f64>,
    restore_rss: Vec<f64>,
}

impl Samples {
    fn push(&mut self, (d, r): (Timed, Timed)) {
        self.dump.push(d.secs);
        self.restore.push(r.secs);
        self.dump_rss.push(d.rss_kib as f64 / 1024.0);
        self.restore_rss.push(r.rss_kib as f64 / 1024.0);
    }

    fn json(&mut self, gib: f64) -> serde_json::Value {
        if self.dump.is_empty() {
            return serde_json::Value::Null;
        }
        let d = median(&mut self.dump);
        let r = median(&mut self.restore);
        json!({
            "dump_s": d, "restore_s": r,
            "dump_gib_s": if gib > 0.0 { gib / d } else { f64::NAN },
            "restore_gib_s": if gib > 0.0 { gib / r } else { f64::NAN },
            "dump_peak_rss_mib": median(&mut self.dump_rss),
            "restore_peak_rss_mib": median(&mut self.restore_rss),
            "dump_samples_s": self.dump, "restore_samples_s": self.restore,
        })
    }
}

fn find_criu() -> (Option<PathBuf>, String) {
    let cand = std::env::var_os("CRIU").map(PathBuf::from).or_else(|| {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("criu"))
                .find(|c| c.is_file())
        })
    });
    let Some(c) = cand else {
        return (None, "criu: not found".into());
    };
    match Command::new(&c).arg("check").output() {
        Ok(o) if o.status.success() => (Some(c.clone()), format!("criu: {}", c.display())),
        Ok(o) => (
            None,
            format!(
                "criu: {} fails `criu check`: {}",
                c.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ),
        ),
        Err(e) => (None, format!("criu: {}: {e}", c.display())),
    }
}

fn fs_type(dir: &Path) -> &'static str {
    match nix::sys::statfs::statfs(dir).map(|s| s.filesystem_type()) {
        Ok(t) if t == nix::sys::statfs::TMPFS_MAGIC => "tmpfs",
        Ok(t) if t == nix::sys::statfs::EXT4_SUPER_MAGIC => "ext4",
        Ok(_) => "other",
        Err(_) => "unknown",
    }
}

fn build_memfill(out: &Path) -> PathBuf {
    let src = root().join("benches/workloads/memfill.c");
    let bin = out.join("memfill");
    let st = Command::new(std::env::var("CC").unwrap_or_else(|_| "gcc".into()))
        .args([
            "-O2",
            "-Wall",
            "-Wextra",
            "-std=gnu11",
            "-static",
            "-pthread",
            "-I",
        ])
        .arg(root().join("tests/workloads"))
        .arg("-o")
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("run gcc");
    assert!(st.success(), "compiling {}", src.display());
    bin
}

fn iters(mib: u64) -> usize {
    std::env::var("CRS_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(match mib {
            0..=256 => 5,
            257..=1024 => 3,
            _ => 2,
        })
}

fn main() {
    if std::env::var_os(WRAP_ENV).is_some() {
        wrap(&std::env::args().skip(1).collect::<Vec<_>>());
    }
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let out = root().join("target/bench");
    fs::create_dir_all(&out).expect("target/bench");
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");

    let crs = std::env::var_os("CRS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/release/crs"));
    assert!(
        crs.is_file(),
        "{} missing: cargo build --release -p crs (cargo xtask bench does it)",
        crs.display()
    );
    let (criu, criu_note) = find_criu();
    println!("crs: {}\n{criu_note}", crs.display());
    let tools = Tools {
        crs,
        criu,
        memfill: build_memfill(&out),
    };

    let mut workloads = vec![
        Workload {
            name: "sleep".into(),
            mib: 0,
            extra: vec![],
            crs_unsupported: false,
            iters: iters(0).max(5),
        },
        Workload {
            name: "mem-256MiB".into(),
            mib: 256,
            extra: vec![],
            crs_unsupported: false,
            iters: iters(256),
        },
        Workload {
            name: "mem-1024MiB".into(),
            mib: 1024,
            extra: vec![],
            crs_unsupported: false,
            iters: iters(1024),
        },
    ];
    if std::env::var("CRS_BENCH_4G").is_ok_and(|v| v == "1") {
        workloads.push(Workload {
            name: "mem-4096MiB".into(),
            mib: 4096,
            extra: vec![],
            crs_unsupported: false,
            iters: iters(4096),
        });
    }
    for (name, kind) in [("tree-50", "children"), ("threads-50", "threads")] {
        workloads.push(Workload {
            name: name.into(),
            mib: 0,
            extra: vec![kind.into(), "49".into()],
            crs_unsupported: true,
            iters: iters(0),
        });
    }

    let tmpfs = PathBuf::from("/dev/shm/crs-bench");
    let disk = out.join("work");
    let mut results = Vec::new();
    let mut svg_rows: Vec<(String, [f64; 5])> = Vec::new();
    println!(
        "{:<28} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9}",
        "case",
        "dump s",
        "GiB/s",
        "restore",
        "GiB/s",
        "limit s",
        "GiB/s",
        "crs/lim",
        "rss MiB",
        "criu/crs d",
        "criu/crs r"
    );
    for dir in [&tmpfs, &disk] {
        let _ = fs::remove_dir_all(dir);
        fs::create_dir_all(dir).expect("bench work dir");
        let fst = fs_type(dir);
        for w in &workloads {
            let case = format!("{}/{fst}", w.name);
            if filter.as_ref().is_some_and(|f| !case.contains(f.as_str())) {
                continue;
            }
            let gib = w.mib as f64 / 1024.0;
            let mut crs = Samples::default();
            let mut criu = Samples::default();
            let mut limit = Vec::new();
            for i in 0..w.iters {
                let seed = i as u64 + 1;
                let mut order = vec![Tool::Crs, Tool::Criu];
                if i % 2 == 1 {
                    order.reverse();
                }
                if w.mib > 0 {
                    let p = start(&tools.memfill, w, dir, seed);
                    let (addr, len) = region(p.pid);
                    assert!(len >= w.mib << 20, "{case}: region {len:#x} too small");
                    limit.push(raw_limit(p.pid, addr, w.mib << 20, dir));
                    drop(p);
                }
                for tool in order {
                    match tool {
                        Tool::Crs if !w.crs_unsupported => {
                            crs.push(cycle(&tools, tool, w, dir, seed));
                        }
                        Tool::Criu if tools.criu.is_some() => {
                            criu.push(cycle(&tools, tool, w, dir, seed));
                        }
                        _ => {}
                    }
                }
            }
            let lim = median(&mut limit);
            let cj = crs.json(gib);
            let rj = criu.json(gib);
            let get = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
            let (cd, cr) = (get(&cj, "dump_s"), get(&cj, "restore_s"));
            let (rd, rr) = (get(&rj, "dump_s"), get(&rj, "restore_s"));
            if w.crs_unsupported {
                println!("{case:<28} crs: unsupported by crs yet");
            } else {
                // A ratio with no criu (or no memory to move) prints as "-".
                let ratio = |x: f64| {
                    if x.is_finite() {
                        format!("{x:.2}")
                    } else {
                        "-".into()
                    }
                };
                println!(
                    "{:<28} {:>9.4} {:>9} {:>8.4} {:>9} {:>9} {:>9} {:>8} {:>8.1} {:>9} {:>9}",
                    case,
                    cd,
                    ratio(gib / cd),
                    cr,
                    ratio(gib / cr),
                    if lim.is_finite() {
                        format!("{lim:.4}")
                    } else {
                        "-".into()
                    },
                    ratio(gib / lim),
                    ratio(cd / lim),
                    get(&cj, "dump_peak_rss_mib").max(get(&cj, "restore_peak_rss_mib")),
                    ratio(rd / cd),
                    ratio(rr / cr),
                );
            }
            if tools.criu.is_some() {
                println!("{:<28} criu: dump {rd:.4} s, restore {rr:.4} s", "");
            }
            if gib > 0.0 && !w.crs_unsupported {
                svg_rows.push((
                    case.clone(),
                    [gib / cd, gib / cr, gib / lim, gib / rd, gib / rr],
                ));
            }
            results.push(json!({
                "case": case, "workload": w.name, "fs": fst, "mib": w.mib,
                "iterations": w.iters,
                "crs": if w.crs_unsupported { json!("unsupported by crs yet") } else { cj },
                "criu": if tools.criu.is_some() { rj } else { json!(criu_note) },
                "limit": if w.mib > 0 {
                    json!({"dump_s": lim, "gib_s": gib / lim, "samples_s": limit})
                } else { serde_json::Value::Null },
                "ratios": {
                    "crs_dump_over_limit": cd / lim,
                    "criu_over_crs_dump": rd / cd,
                    "criu_over_crs_restore": rr / cr,
                },
            }));
        }
        let _ = fs::remove_dir_all(dir);
    }
    let doc = json!({
        "machine": {"cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)},
        "criu": criu_note,
        "results": results,
    });
    let jpath = out.join("results.json");
    fs::write(&jpath, serde_json::to_string_pretty(&doc).expect("json")).expect("write json");
    let spath = out.join("results.svg");
    fs::write(&spath, svg(&svg_rows)).expect("write svg");
    println!("wrote {} and {}", jpath.display(), spath.display());
}

/// A grouped horizontal bar chart of GiB/s: crs dump, crs restore, limit, criu dump, criu
/// restore (missing values are left out).
fn svg(rows: &[(String, [f64; 5])]) -> String {
    const LABELS: [&str; 5] = [
        "crs dump",
        "crs restore",
        "limit (readv+write)",
        "criu dump",
        "criu restore",
    ];
    const COLORS: [&str; 5] = ["#1f77b4", "#2ca02c", "#7f7f7f", "#d62728", "#ff7f0e"];
    let max = rows
        .iter()
        .flat_map(|r| r.1.iter().copied())
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max);
    let (left, width, bar) = (200.0, 560.0, 12.0);
    let group = bar * 5.0 + 14.0;
    let height = 60.0 + group * rows.len() as f64 + 20.0 * 5.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">crs vs the raw limit (and criu), GiB/s, medians</text>\n",
        left + width + 80.0
    );
    for (i, (name, v)) in rows.iter().enumerate() {
        let y0 = 40.0 + group * i as f64;
        s += &format!(
            "<text x=\"10\" y=\"{}\">{name}</text>\n",
            y0 + bar * 2.5 + 4.0
        );
        for (k, val) in v.iter().enumerate() {
            if !val.is_finite() {
                continue;
            }
            let y = y0 + bar * k as f64;
            let w = width * val / max;
            s += &format!(
                "<rect x=\"{left}\" y=\"{y}\" width=\"{w:.1}\" height=\"{}\" fill=\"{}\"/>\
                 <text x=\"{:.1}\" y=\"{}\">{val:.2}</text>\n",
                bar - 2.0,
                COLORS[k],
                left + w + 4.0,
                y + bar - 3.0
            );
        }
    }
    let ly = 50.0 + group * rows.len() as f64;
    for (k, l) in LABELS.iter().enumerate() {
        let y = ly + 20.0 * k as f64;
        s += &format!(
            "<rect x=\"10\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"28\" y=\"{}\">{l}</text>\n",
            COLORS[k],
            y + 10.0
        );
    }
    s += "</svg>\n";
    s
}
