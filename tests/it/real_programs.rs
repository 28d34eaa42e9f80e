//! Real programs that no one wrote for crs, dumped mid-way and restored, must produce the
//! same output as an uninterrupted run:
//! - `sh -c 'yes | head -c N | sha256sum > OUT'`: a tree of four processes joined by pipes
//!   with data in flight;
//! - `sort --parallel=2 -S 64M` of a file larger than its buffer: threads, temp files and
//!   file positions.
//!
//! Each program starts in a session of its own through `zoo_launch` (setsid, fds above 2
//! closed, stdio /dev/null). The test is a child subreaper, so the restored root (orphaned
//! when `crs restore -d` exits) becomes its child and is reaped here. Every process is
//! SIGKILLed and reaped by a guard, even on panic.

use crs_tests::{crs_bin, descendants};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long a program may take to reach the point where it is dumped.
const MIDWAY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one `crs dump`/`crs restore`, or a restored program, may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// Bytes that `head` passes from `yes` to `sha256sum` (a couple of seconds here).
const YES_BYTES: u64 = 256 << 20;
/// Size of sort's input: larger than its 64 MiB buffer, so it writes temp files.
const SORT_INPUT_BYTES: u64 = 100 << 20;

/// Waits until `fd` is readable (a pidfd: the process exited); false on timeout.
fn wait_readable(fd: std::os::fd::BorrowedFd<'_>, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut pfds = [PollFd::new(fd, PollFlags::POLLIN)];
        match poll(&mut pfds, ms) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(Errno::EINTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// The root of a process tree in a session of its own (pid = pgid = sid): on drop, its
/// process group is SIGKILLed, and the root and the descendants seen then are reaped.
struct TreeGuard {
    pid: i32,
    pidfd: OwnedFd,
    reaped: Option<WaitStatus>,
}

impl TreeGuard {
    fn open(pid: i32) -> std::io::Result<TreeGuard> {
        Ok(TreeGuard {
            pid,
            pidfd: crs_sys::pidfd::pidfd_open(pid, 0)?,
            reaped: None,
        })
    }

    fn wait_exit(&self, timeout: Duration) -> bool {
        wait_readable(self.pidfd.as_fd(), timeout)
    }

    fn reap(&mut self) -> Result<WaitStatus, Errno> {
        if let Some(st) = self.reaped {
            return Ok(st);
        }
        let st = waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::__WALL))?;
        self.reaped = Some(st);
        Ok(st)
    }
}

impl Drop for TreeGuard {
    fn drop(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        let below = descendants(self.pid);
        let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        let _ = crs_sys::pidfd::pidfd_send_signal(self.pidfd.as_fd(), Signal::SIGKILL as i32);
        if self.wait_exit(Duration::from_secs(30)) {
            let _ = waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::__WALL));
        }
        // Reparented to this subreaper once the root is gone.
        for p in below {
            let _ = waitpid(Pid::from_raw(p), Some(WaitPidFlag::__WALL));
        }
    }
}

/// One program run: its scratch directory and the crs logs in it.
struct Case {
    // Declared first so it drops first: the tree dies before its directory goes.
    tree: Option<TreeGuard>,
    dir: tempfile::TempDir,
    /// The root pid that was dumped (the restore gives it back).
    dump_pid: i32,
}

impl Case {
    /// None when not root (the dump needs it).
    fn new(name: &str) -> Option<Case> {
        if !crs_testkit::root_or_skip(name) {
            return None;
        }
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        crs_bin();
        let mut dir = tempfile::Builder::new()
            .prefix(&format!("real-{name}-"))
            .tempdir()
            .expect("temp dir");
        if std::env::var_os("ZOO_KEEP").is_some() {
            dir.disable_cleanup(true);
            println!("{name}: files kept in {}", dir.path().display());
        }
        Some(Case {
            tree: None,
            dir,
            dump_pid: 0,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn fail(&self, what: &str) -> ! {
        for (title, p) in [
            ("crs dump output", self.path("crs-dump.out")),
            ("dump.log", self.path("images/dump.log")),
            ("crs restore output", self.path("crs-restore.out")),
            ("restore.log", self.path("images/restore.log")),
        ] {
            if let Ok(text) = std::fs::read_to_string(&p) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines.len().saturating_sub(150);
                eprintln!("----- {title} ({}) -----", p.display());
                eprintln!("{}", lines[tail..].join("\n"));
            }
        }
        panic!(
            "{what} (set ZOO_KEEP=1 to keep {})",
            self.dir.path().display()
        );
    }

    /// A command with the environment every run (reference and dumped) shares.
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    /// Runs `argv` to completion, uninterrupted: the reference.
    fn run_reference(&self, argv: &[&str]) {
        let started = Instant::now();
        let st = self
            .command(argv[0])
            .args(&argv[1..])
            .status()
            .unwrap_or_else(|e| panic!("running {argv:?}: {e}"));
        assert!(st.success(), "the reference run {argv:?} ended with {st}");
        println!("reference run {argv:?}: {:?}", started.elapsed());
    }

    /// Starts `argv` through zoo_launch (setsid, fds above 2 closed) and guards it.
    fn launch(&mut self, argv: &[&str]) -> i32 {
        let launcher = PathBuf::from(env!("ZOO_DIR")).join("zoo_launch");
        let child = self
            .command(launcher.to_str().expect("utf-8 ZOO_DIR"))
            .args(argv)
            .spawn()
            .expect("spawn zoo_launch");
        let pid = child.id() as i32;
        drop(child); // reaped through the guard, by pid
        match TreeGuard::open(pid) {
            Ok(g) => self.tree = Some(g),
            Err(e) => {
                let _ = waitpid(Pid::from_raw(pid), None);
                panic!("pidfd_open({pid}): {e}");
            }
        }
        pid
    }

    /// Polls `probe` until it answers; fails when the tree exits first or on timeout.
    fn wait_until<T>(&self, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + MIDWAY_TIMEOUT;
        let tree = self.tree.as_ref().expect("launched");
        loop {
            if let Some(v) = probe() {
                return v;
            }
            // The pidfd doubles as the poll interval: readable means the program is done.
            if tree.wait_exit(Duration::from_millis(2)) {
                self.fail(&format!("the program finished before {what}"));
            }
            if Instant::now() > deadline {
                self.fail(&format!("no {what} in {MIDWAY_TIMEOUT:?}"));
            }
        }
    }

    /// Runs `crs ARGS`, output in `out`; fails unless it exits 0.
    fn crs(&self, args: &[&str], out: &str) {
        let out_file = File::create(self.path(out)).expect("create crs output file");
        let child = Command::new(crs_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().expect("dup"))
            .stderr(out_file)
            .spawn()
            .expect("spawn crs");
        let mut g = TreeGuard::open(child.id() as i32).expect("pidfd_open(crs)");
        drop(child);
        if !g.wait_exit(RUN_TIMEOUT) {
            self.fail(&format!("`crs {}` did not finish", args.join(" ")));
        }
        match g.reap() {
            Ok(WaitStatus::Exited(_, 0)) => {}
            Ok(st) => self.fail(&format!("`crs {}` ended with {st:?}", args.join(" "))),
            Err(e) => self.fail(&format!("waitpid(crs): {e}")),
        }
    }

    /// `crs dump -t ROOT`; checks the whole tree is gone and reaps it.
    fn dump(&mut self) {
        let images = self.path("images");
        std::fs::create_dir(&images).expect("create images dir");
        let images_s = images.to_str().expect("utf-8 temp path").to_owned();
        let pid = self.tree.as_ref().expect("launched").pid;
        self.dump_pid = pid;
        let pid_s = pid.to_string();
        let below = descendants(pid);

        self.crs(
            &[
                "dump", "-t", &pid_s, "-D", &images_s, "-o", "dump.log", "-v4",
            ],
            "crs-dump.out",
        );
        let mut old = self.tree.take().expect("launched");
        if !old.wait_exit(Duration::from_secs(30)) {
            self.tree = Some(old);
            self.fail("the program is still running after `crs dump`");
        }
        match old.reap() {
            Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) => {}
            Ok(st) => self.fail(&format!("the dumped root ended with {st:?}, not SIGKILL")),
            Err(e) => self.fail(&format!("waitpid on the dumped root: {e}")),
        }
        // Killed by the dump and reparented to this subreaper when the root died.
        for p in &below {
            match waitpid(Pid::from_raw(*p), Some(WaitPidFlag::__WALL)) {
                Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) => {}
                other => self.fail(&format!("dumped process {p} ended with {other:?}")),
            }
        }
        for p in std::iter::once(&pid).chain(&below) {
            if Path::new(&format!("/proc/{p}")).exists() {
                self.fail(&format!("/proc/{p} still exists after the dump"));
            }
        }
    }

    /// `crs restore -d` of the dumped tree; its root becomes this subreaper's child.
    fn restore(&mut self) {
        let images_s = self
            .path("images")
            .to_str()
            .expect("utf-8 temp path")
            .to_owned();
        let pid = self.dump_pid;
        self.crs(
            &["restore", "-D", &images_s, "-d", "-o", "restore.log", "-v4"],
            "crs-restore.out",
        );
        match TreeGuard::open(pid) {
            Ok(g) => self.tree = Some(g),
            Err(e) => self.fail(&format!("no process {pid} after `crs restore`: {e}")),
        }
    }

    /// Waits for the restored root to finish and reaps it; it must exit 0.
    fn finish(&mut self) {
        let tree = self.tree.as_mut().expect("restored");
        if !tree.wait_exit(RUN_TIMEOUT) {
            self.fail(&format!(
                "the restored program did not finish in {RUN_TIMEOUT:?}"
            ));
        }
        match tree.reap() {
            Ok(WaitStatus::Exited(_, 0)) => {}
            Ok(st) => self.fail(&format!(
                "the restored program ended with {st:?}, want exit 0"
            )),
            Err(e) => self.fail(&format!("waitpid on the restored root: {e}")),
        }
    }

    /// Fails unless files `a` and `b` (in the case directory) have the same bytes.
    fn assert_same(&self, a: &str, b: &str) {
        let mut fa = File::open(self.path(a)).unwrap_or_else(|e| panic!("open {a}: {e}"));
        let mut fb = File::open(self.path(b)).unwrap_or_else(|e| panic!("open {b}: {e}"));
        let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
        let mut offset = 0u64;
        loop {
            let na = read_full(&mut fa, &mut ba);
            let nb = read_full(&mut fb, &mut bb);
            if ba[..na] != bb[..nb] {
                self.fail(&format!(
                    "{a} and {b} differ in the 1 MiB at offset {offset}"
                ));
            }
            if na == 0 {
                return;
            }
            offset += na as u64;
        }
    }
}

/// Reads until `buf` is full or EOF; the byte count.
fn read_full(f: &mut File, buf: &mut [u8]) -> usize {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    n
}

/// `/proc/PID/comm` without the newline.
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim_end()
        .to_owned()
}

/// The `wchar` line of `/proc/PID/io` (bytes written), 0 when unreadable.
fn wchar(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn yes_head_sha256sum_pipeline_same_digest() {
    let Some(mut case) = Case::new("yes-pipeline") else {
        return;
    };
    let script = |out: &str| format!("yes | head -c {YES_BYTES} | sha256sum > {out}");
    case.run_reference(&["/bin/sh", "-c", &script("REF")]);

    let sh = case.launch(&["/bin/sh", "-c", &script("OUT")]);
    let head = case.wait_until("head running", || {
        descendants(sh).into_iter().find(|&p| comm(p) == "head")
    });
    // Mid-way: a fifth of the bytes are through head.
    case.wait_until("head a fifth through", || {
        (wchar(head) >= YES_BYTES / 5).then_some(())
    });
    case.dump();
    // sha256sum writes only at the end: an empty OUT proves the dump came before it.
    let out_len = std::fs::metadata(case.path("OUT")).map(|m| m.len());
    if !matches!(out_len, Ok(0)) {
        case.fail(&format!(
            "OUT before the restored run finished: {out_len:?}, want empty"
        ));
    }
    case.restore();
    case.finish();
    case.assert_same("OUT", "REF");
}

/// Writes `bytes` of random printable lines (a fixed-seed xorshift: no dependency).
fn write_random_lines(path: &Path, bytes: u64) {
    let mut w = BufWriter::with_capacity(1 << 20, File::create(path).expect("create input"));
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut written = 0u64;
    let mut line = Vec::with_capacity(128);
    while written < bytes {
        line.clear();
        let len = 8 + (next() % 80) as usize;
        for _ in 0..len {
            line.push(b'!' + (next() % 94) as u8);
        }
        line.push(b'\n');
        w.write_all(&line).expect("write input");
        written += line.len() as u64;
    }
    w.flush().expect("flush input");
}

#[test]
fn sort_parallel_with_temp_files_same_output() {
    let Some(mut case) = Case::new("sort") else {
        return;
    };
    write_random_lines(&case.path("input"), SORT_INPUT_BYTES);
    for d in ["tmp-ref", "tmp"] {
        std::fs::create_dir(case.path(d)).expect("create sort temp dir");
    }
    let sort = |tmp: &str, out: &str| {
        [
            "/usr/bin/env",
            "sort",
            "--parallel=2",
            "-S",
            "64M",
            "-T",
            tmp,
            "-o",
            out,
            "input",
        ]
        .map(str::to_owned)
    };
    let reference = sort("tmp-ref", "REF");
    case.run_reference(&reference.each_ref().map(String::as_str));

    let argv = sort("tmp", "OUT");
    let pid = case.launch(&argv.each_ref().map(String::as_str));
    // Mid-way: sort has written (part of) a first run to a temp file and goes on.
    let tmp = case.path("tmp");
    case.wait_until("a sort temp file with data", || {
        std::fs::read_dir(&tmp)
            .ok()?
            .flatten()
            .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
            .then_some(())
    });
    let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, Iterator::count);
    println!("sort has {threads} threads at the dump");
    case.dump();
    case.restore();
    case.finish();
    case.assert_same("OUT", "REF");
}
