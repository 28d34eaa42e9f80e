//! The dump/restore zoo harness (the shape of CRIU's zdtm): start a workload in a session of
//! its own, wait until it says `ready`, then either send SIGTERM straight away (control) or
//! `crs dump` it, check it is gone, `crs restore -d` it, and send SIGTERM to the restored
//! process; the workload checks its own state and its exit status is the verdict.
//!
//! Included by `it/zoo.rs` with `#[path]` (it uses the dev-dependency `tempfile`).
//!
//! Workload protocol (see `workloads/zoo.h`): environment `ZOO_READY` (a FIFO to write
//! `ready\n` to), `ZOO_TMP` (its scratch directory, also its cwd), `ZOO_CORRUPT=1` (damage
//! the state after ready: the negative control). Exit 0 = state intact, 1 = a check failed,
//! anything else = the workload could not run.

pub use crs_tests::crs_bin;
use crs_tests::{cpu_masks, descendants, own_cpu_mask};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

/// How long a workload may take to report ready (python3 imports included).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a workload may take to check its state and exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(180);
/// How long one `crs dump` or `crs restore` may take.
const CRS_TIMEOUT: Duration = Duration::from_secs(300);

/// What program a workload is.
#[derive(Clone, Copy, Debug)]
pub enum Workload {
    /// A C program of `workloads/<name>.c`, built by build.rs into `$ZOO_DIR`.
    C(&'static str),
    /// A C program as `C`, dumped and restored with extra crs options (e.g. `-l`), given
    /// to `crs dump` and `crs restore` alike.
    CWithArgs(&'static str, &'static [&'static str]),
    /// A python3 script in `workloads/`.
    Python(&'static str),
    /// A bash script in `workloads/`.
    Bash(&'static str),
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::C(n)
            | Workload::CWithArgs(n, _)
            | Workload::Python(n)
            | Workload::Bash(n) => n,
        }
    }

    /// Extra options of `crs dump` and `crs restore` for this workload.
    fn crs_args(self) -> &'static [&'static str] {
        match self {
            Workload::CWithArgs(_, a) => a,
            _ => &[],
        }
    }

    /// The argv (after the launcher), or None with the reason it cannot run here.
    fn argv(self) -> Result<Vec<PathBuf>, String> {
        let scripts = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        match self {
            Workload::C(n) | Workload::CWithArgs(n, _) => Ok(vec![zoo_dir().join(n)]),
            Workload::Python(s) => Ok(vec![python3()?.clone(), scripts.join(s)]),
            Workload::Bash(s) => {
                let bash = Path::new("/bin/bash");
                if bash.exists() {
                    Ok(vec![bash.to_path_buf(), scripts.join(s)])
                } else {
                    Err("no /bin/bash".to_owned())
                }
            }
        }
    }
}

/// What to do between ready and SIGTERM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing: the workload must pass (proves its checks accept an intact state).
    Control,
    /// The workload damages its own state: it must fail (proves its checks can fail).
    Corrupt,
    /// `crs dump`, then `crs restore -d`: the workload must pass.
    DumpRestore,
    /// `crs dump -R`: the workload keeps running untouched and must pass.
    LeaveRunning,
}

/// `$ZOO_DIR`, where build.rs put the compiled C workloads.
pub fn zoo_dir() -> PathBuf {
    PathBuf::from(env!("ZOO_DIR"))
}

/// The real python3 executable (not a pyenv shim script), found once.
fn python3() -> Result<&'static PathBuf, String> {
    static PY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    PY.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("python3 not runnable: {e}"))?;
        let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !out.status.success() || path.is_empty() {
            return Err(format!(
                "python3 did not name its executable ({})",
                out.status
            ));
        }
        Ok(PathBuf::from(path))
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// Makes the test process a child subreaper, so a restored workload (orphaned when
/// `crs restore -d` exits) is reparented to it and can be waited for.
fn become_subreaper() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// A process the test started or restored: SIGKILLed and reaped on drop unless reaped.
struct ProcGuard {
    pid: i32,
    pidfd: OwnedFd,
    reaped: Option<WaitStatus>,
}

impl ProcGuard {
    fn open(pid: i32) -> std::io::Result<ProcGuard> {
        Ok(ProcGuard {
            pid,
            pidfd: crs_sys::pidfd::pidfd_open(pid, 0)?,
            reaped: None,
        })
    }

    fn signal(&self, sig: Signal) -> std::io::Result<()> {
        crs_sys::pidfd::pidfd_send_signal(self.pidfd.as_fd(), sig as i32)
    }

    /// Waits until the process has exited (its pidfd is readable); false on timeout.
    fn wait_exit(&self, timeout: Duration) -> bool {
        wait_readable(&[self.pidfd.as_fd()], timeout) == Some(0)
    }

    /// Reaps the exited process (it must be a child of the test process by now).
    fn reap(&mut self) -> Result<WaitStatus, Errno> {
        if let Some(st) = self.reaped {
            return Ok(st);
        }
        let st = waitpid(Pid::from_raw(self.pid), None)?;
        self.reaped = Some(st);
        Ok(st)
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        let _ = self.signal(Signal::SIGKILL);
        // A child is reaped; a process that is not ours (a restore that went wrong) is at
        // least waited for, so nothing outlives the test.
        if self.wait_exit(Duration::from_secs(30)) {
            let _ = waitpid(Pid::from_raw(self.pid), None);
        }
    }
}

/// Polls the fds for readability; the index of the first readable one, None on timeout.
fn wait_readable(fds: &[std::os::fd::BorrowedFd<'_>], timeout: Duration) -> Option<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        match poll(&mut pfds, ms) {
            Ok(0) => return None,
            Ok(_) => {
                return pfds.iter().position(|p| {
                    p.revents()
                        .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
                })
            }
            Err(Errno::EINTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// One workload run: its directory, logs and processes.
struct Run {
    // Declared first so it drops first: the process dies before its directory goes.
    proc: Option<ProcGuard>,
    workload: Workload,
    dir: tempfile::TempDir,
}

impl Run {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn images(&self) -> PathBuf {
        self.path("images")
    }

    /// Everything a reader of a failure needs: the workload log and the crs logs.
    fn logs(&self) -> String {
        let mut s = String::new();
        for (title, p) in [
            ("workload log", self.path("workload.log")),
            ("crs dump output", self.path("crs-dump.out")),
            ("dump.log", self.images().join("dump.log")),
            ("crs restore output", self.path("crs-restore.out")),
            ("restore.log", self.images().join("restore.log")),
        ] {
            if let Ok(text) = std::fs::read_to_string(&p) {
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines.len().saturating_sub(200);
                s += &format!("----- {title} ({}) -----\n", p.display());
                if tail > 0 {
                    s += &format!("[... {tail} lines ...]\n");
                }
                s += &lines[tail..].join("\n");
                s += "\n";
            }
        }
        s
    }

    fn fail(&self, what: &str) -> ! {
        eprintln!("{}", self.logs());
        panic!(
            "{}: {what} (set ZOO_KEEP=1 to keep {})",
            self.workload.name(),
            self.dir.path().display()
        );
    }

    fn start(&mut self, mode: Mode, argv: &[PathBuf]) {
        let work = self.path("work");
        std::fs::create_dir(&work).expect("create work dir");
        let fifo = self.path("ready");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // Opened before the workload starts, non-blocking: poll reports it once written.
        let mut ready = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("open the ready fifo");
        let log = File::create(self.path("workload.log")).expect("create workload.log");

        let mut cmd = Command::new(zoo_dir().join("zoo_launch"));
        cmd.args(argv)
            .current_dir(&work)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("ZOO_READY", &fifo)
            .env("ZOO_TMP", &work)
            .env("ZOO_CORRUPT", if mode == Mode::Corrupt { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = cmd.spawn().expect("spawn zoo_launch");
        let pid = child.id() as i32;
        drop(child); // reaped through the guard, by pid
        let guard = match ProcGuard::open(pid) {
            Ok(g) => g,
            Err(e) => {
                let _ = waitpid(Pid::from_raw(pid), None);
                self.fail(&format!("pidfd_open({pid}): {e}"));
            }
        };

        // Read until EOF, not just the newline: EOF means the workload has closed its end,
        // so the fifo is not among the fds the dump sees. (Before any writer opened it,
        // poll does not report the fifo, so an early EOF cannot be mistaken for this.)
        let mut got = Vec::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match wait_readable(&[ready.as_fd(), guard.pidfd.as_fd()], left) {
                Some(0) => {}
                Some(_) => {
                    self.proc = Some(guard);
                    self.fail("the workload exited before it was ready");
                }
                None => {
                    self.proc = Some(guard);
                    self.fail("the workload was not ready (or did not close the fifo) in time");
                }
            }
            let mut buf = [0u8; 64];
            match ready.read(&mut buf) {
                Ok(0) if got.is_empty() => {
                    self.proc = Some(guard);
                    self.fail("the ready fifo was closed without `ready`");
                }
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading the ready fifo: {e}"),
            }
        }
        self.proc = Some(guard);
        if got != b"ready\n" {
            self.fail(&format!(
                "the workload wrote {:?}, not ready",
                String::from_utf8_lossy(&got)
            ));
        }
    }

    /// Runs `crs ARGS` with its output in `<out>`; fails the test unless it exits 0.
    fn crs(&self, args: &[&str], out: &str) {
        let bin = crs_bin();
        let out_file = File::create(self.path(out)).expect("create crs output file");
        let child = Command::new(&bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().expect("dup"))
            .stderr(out_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut g = match ProcGuard::open(child.id() as i32) {
            Ok(g) => g,
            Err(e) => panic!("pidfd_open(crs): {e}"),
        };
        drop(child);
        if !g.wait_exit(CRS_TIMEOUT) {
            self.fail(&format!(
                "`crs {}` did not finish in {CRS_TIMEOUT:?}",
                args.join(" ")
            ));
        }
        match g.reap() {
            Ok(WaitStatus::Exited(_, 0)) => {}
            Ok(st) => self.fail(&format!("`crs {}` ended with {st:?}", args.join(" "))),
            Err(e) => self.fail(&format!("waitpid(crs): {e}")),
        }
    }

    fn dump_and_restore(&mut self) {
        let images = self.images();
        std::fs::create_dir(&images).expect("create images dir");
        let images_s = images.to_str().expect("utf-8 temp path").to_owned();
        let pid = self.proc.as_ref().expect("started").pid;
        let pid_s = pid.to_string();
        let below = descendants(pid);

        let extra = self.workload.crs_args();
        let mut args = vec![
            "dump", "-t", &pid_s, "-D", &images_s, "-o", "dump.log", "-v4",
        ];
        args.extend_from_slice(extra);
        self.crs(&args, "crs-dump.out");
        // Without -R the dumped task is killed: ours to reap, and the pid is then free.
        let mut old = self.proc.take().expect("started");
        if !old.wait_exit(Duration::from_secs(30)) {
            self.proc = Some(old);
            self.fail("the workload is still running after `crs dump` (no -R given)");
        }
        match old.reap() {
            Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) => {}
            Ok(st) => self.fail(&format!(
                "the dumped workload ended with {st:?}, not SIGKILL"
            )),
            Err(e) => self.fail(&format!("waitpid on the dumped workload: {e}")),
        }
        // The rest of the dumped tree was killed too and is reparented to this subreaper,
        // each process when its parent is gone: reaped parents first, so their pids are
        // free for the restore.
        for p in below {
            let _ = waitpid(Pid::from_raw(p), Some(nix::sys::wait::WaitPidFlag::__WALL));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            self.fail(&format!("/proc/{pid} still exists after the dump"));
        }

        let pidfile = self.path("restore.pid");
        let pidfile_s = pidfile.to_str().expect("utf-8 temp path").to_owned();
        let mut args = vec![
            "restore",
            "-D",
            &images_s,
            "-d",
            "-o",
            "restore.log",
            "-v4",
            "--pidfile",
            &pidfile_s,
        ];
        args.extend_from_slice(extra);
        self.crs(&args, "crs-restore.out");
        match ProcGuard::open(pid) {
            Ok(g) => self.proc = Some(g),
            Err(e) => self.fail(&format!("no process {pid} after `crs restore`: {e}")),
        }
        match std::fs::read_to_string(&pidfile) {
            Ok(s) if s.trim() == pid_s => {}
            Ok(s) => self.fail(&format!("--pidfile holds {s:?}, want {pid}")),
            Err(e) => self.fail(&format!("--pidfile {}: {e}", pidfile.display())),
        }
        // crs runs the tasks it builds on its own CPUs while it holds them: each thread
        // must have crs's mask (this thread's, which crs inherited) back.
        let want = own_cpu_mask();
        let wrong: Vec<_> = cpu_masks(pid)
            .into_iter()
            .filter(|(_, m)| *m != want)
            .collect();
        if !wrong.is_empty() {
            self.fail(&format!(
                "restored threads with another CPU mask than crs's {want:?}: {wrong:?}"
            ));
        }
    }

    /// `crs dump -R`: the images are complete and the workload is still running.
    fn dump_leave_running(&mut self) {
        let images = self.images();
        std::fs::create_dir(&images).expect("create images dir");
        let images_s = images.to_str().expect("utf-8 temp path").to_owned();
        let pid_s = self.proc.as_ref().expect("started").pid.to_string();
        let mut args = vec![
            "dump", "-t", &pid_s, "-D", &images_s, "-R", "-o", "dump.log", "-v4",
        ];
        args.extend_from_slice(self.workload.crs_args());
        let masks = cpu_masks(self.proc.as_ref().expect("started").pid);
        self.crs(&args, "crs-dump.out");
        let after = cpu_masks(self.proc.as_ref().expect("started").pid);
        if after != masks {
            self.fail(&format!(
                "`crs dump -R` changed CPU masks: before {masks:?}, after {after:?}"
            ));
        }
        if !images.join("inventory.img").exists() {
            self.fail("`crs dump -R` left no inventory.img: the image set is incomplete");
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid_s}/stat")).unwrap_or_default();
        let state = stat.rsplit(") ").next().unwrap_or("").chars().next();
        if !matches!(state, Some('S' | 'R' | 'D')) {
            self.fail(&format!(
                "after `crs dump -R` the workload is in state {state:?}, not running"
            ));
        }
        let status = std::fs::read_to_string(format!("/proc/{pid_s}/status")).unwrap_or_default();
        if !status.lines().any(|l| l == "TracerPid:\t0") {
            self.fail("after `crs dump -R` the workload is still traced");
        }
    }

    /// SIGTERM, wait, reap: the workload's verdict.
    fn finish(&mut self) -> WaitStatus {
        let g = self.proc.as_ref().expect("started");
        if let Err(e) = g.signal(Signal::SIGTERM) {
            self.fail(&format!("SIGTERM: {e}"));
        }
        if !g.wait_exit(EXIT_TIMEOUT) {
            self.fail(&format!("no exit {EXIT_TIMEOUT:?} after SIGTERM"));
        }
        let st = self.proc.as_mut().expect("started").reap();
        match st {
            Ok(st) => st,
            Err(e) => self.fail(&format!(
                "waitpid: {e} (a restored workload must be reparented to the test, a subreaper)"
            )),
        }
    }
}

/// Runs one workload in one mode and asserts its verdict.
///
/// # Panics
/// On any failure, after printing the workload's log and the crs logs.
pub fn run(workload: Workload, mode: Mode) {
    let test = format!("{}_{mode:?}", workload.name());
    if !crs_testkit::root_or_skip(&test) {
        return;
    }
    let argv = match workload.argv() {
        Ok(a) => a,
        Err(why) => {
            crs_testkit::skip(&test, &why);
            return;
        }
    };
    become_subreaper();
    if matches!(mode, Mode::DumpRestore | Mode::LeaveRunning) {
        crs_bin(); // fail early and clearly when crs is not built
    }
    let mut dir = tempfile::Builder::new()
        .prefix(&format!("zoo-{}-", workload.name()))
        .tempdir()
        .expect("temp dir");
    if std::env::var_os("ZOO_KEEP").is_some() {
        dir.disable_cleanup(true);
        println!("{test}: files kept in {}", dir.path().display());
    }
    let mut run = Run {
        proc: None,
        workload,
        dir,
    };
    run.start(mode, &argv);
    match mode {
        Mode::DumpRestore => run.dump_and_restore(),
        Mode::LeaveRunning => run.dump_leave_running(),
        Mode::Control | Mode::Corrupt => {}
    }
    let st = run.finish();
    match (mode, st) {
        (Mode::Control | Mode::DumpRestore | Mode::LeaveRunning, WaitStatus::Exited(_, 0)) => {}
        (Mode::Corrupt, WaitStatus::Exited(_, 1)) => {}
        (Mode::Corrupt, st) => run.fail(&format!(
            "with its state corrupted the workload ended with {st:?}, want exit 1 (a failed check)"
        )),
        (_, st) => run.fail(&format!("verdict {st:?}, want exit 0")),
    }
}
