//! The dump/restore zoo harness (the shape of CRIU's zdtm): start a workload in a session of
//! its own, wait until it says `ready`, then either send SIGTERM straight away (control) or
//! `crs dump` it, check it is gone, `crs restore -d` it, and send SIGTERM to the restored
//! process; the workload checks its own state and its exit status is the verdict. With
//! `crs dump -R` the workload runs on and gives its verdict; then the images are restored
//! as well (its pids free again, its work directory and log as they were at the dump) and
//! the restored copy gives its own.
//!
//! Included by `it/zoo.rs` with `#[path]` (it uses the dev-dependency `tempfile`).
//!
//! Workload protocol (see `workloads/zoo.h`): `<workload> --items` prints how many items
//! the workload checks; environment `ZOO_READY` (a FIFO to write `ready\n` to), `ZOO_TMP`
//! (its scratch directory, also its cwd), `ZOO_CORRUPT=N` (break item N after ready: the
//! negative control), `ZOO_PAUSED` (a file holding the seconds crs held the workload,
//! written before SIGTERM: timers may be late by that much). Exit 0 = state intact, 1 = a
//! check failed (one `FAIL: <name>: item <N>: ...` line each), anything else = the workload
//! could not run.

pub use crs_tests::crs_bin;
use crs_tests::{cpu_masks, descendants, own_cpu_mask, set_cloexec, wait_readable};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
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
    /// A C program as `C` that needs these device files: skipped where one of them does
    /// not open (for reading).
    CNeeds(&'static str, &'static [&'static str]),
    /// A C program as `C`, started as the init (pid 1) of a pid namespace of its own
    /// (`zoo_launch --pid-ns`): the restored init has another pid in the test's namespace,
    /// read from the restore's pidfile.
    CPidNs(&'static str),
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
            | Workload::CNeeds(n, _)
            | Workload::CPidNs(n)
            | Workload::Python(n)
            | Workload::Bash(n) => n,
        }
    }

    /// Whether it runs as the init of a pid namespace of its own.
    fn pid_ns(self) -> bool {
        matches!(self, Workload::CPidNs(_))
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
            Workload::CPidNs(n) => Ok(vec![PathBuf::from("--pid-ns"), zoo_dir().join(n)]),
            Workload::CNeeds(n, devices) => {
                for d in devices {
                    File::open(d).map_err(|e| format!("{d} does not open here: {e}"))?;
                }
                Ok(vec![zoo_dir().join(n)])
            }
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
    /// Once per item the workload checks (`--items`), in a run of its own: the workload
    /// breaks that item after ready, and exactly that item must fail (proves each check
    /// can fail, and fails for what it checks).
    Corrupt,
    /// `crs dump`, then `crs restore -d`: the workload must pass.
    DumpRestore,
    /// `crs dump -R`: the workload keeps running untouched and must pass; then, with its
    /// work directory and log put back as they were at the dump, the images are restored
    /// and the restored copy must pass too.
    LeaveRunning,
    /// `crs dump`, then `$CRIU restore -d` (a CRIU 4.2 built by hand; skipped without
    /// one): crs's images are CRIU's format, readable by CRIU.
    CriuRestoresCrs,
    /// `$CRIU dump`, then `crs restore -d`.
    CrsRestoresCriu,
    /// `crs dump --page-server` into a `crs page-server` (over a socket pair,
    /// `--ps-socket`), then `crs restore -d` of the two directories merged.
    PageServer,
    /// As `PageServer` with `$CRIU page-server` receiving crs's pages (skipped without
    /// `$CRIU`).
    CriuPageServer,
    /// As `PageServer` with `$CRIU dump --page-server` sending into crs's page server.
    CriuDumpsToCrsPageServer,
    /// Three `crs pre-dump`s, each on top of the one before (`--prev-images-dir`), the
    /// workload sent SIGUSR1 after each (it changes its memory then: `memtrack`), then
    /// `crs dump --prev-images-dir` of the last and `crs restore -d`: the final images
    /// must leave pages to their parents, and the restored workload must pass.
    PreDumpChain,
    /// As `PreDumpChain` without the signals, for workloads that do not expect them.
    PreDumpChainQuiet,
    /// As `LeaveRunning` with `crs dump -R --live`: the workload runs on while its pages
    /// are copied, and the images must still be its state at the freeze.
    LiveLeaveRunning,
    /// As `DumpRestore` with `crs restore --lazy-pages`: the workload runs before its
    /// memory is in, each page filled on first touch or in the background.
    LazyRestore,
}

/// Which program dumps and which restores.
#[derive(Clone, Copy)]
enum Tools<'a> {
    Crs,
    /// `$CRIU` dumps, crs restores.
    CriuDumps(&'a Path),
    /// crs dumps, `$CRIU` restores.
    CriuRestores(&'a Path),
    /// `$CRIU` alone: what CRIU itself can do with the workload.
    Criu(&'a Path),
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

/// One workload run: its directory, logs and processes.
struct Run {
    // Declared first so it drops first: the process dies before its directory goes.
    proc: Option<ProcGuard>,
    /// The page server the next dump sends its pages to (crs's or `$CRIU`).
    page_server: Option<PathBuf>,
    /// More options for the next dump.
    dump_args: Vec<String>,
    /// More options for the next restore.
    restore_args: Vec<String>,
    workload: Workload,
    /// The item the run breaks (`ZOO_CORRUPT`), 0 for none.
    corrupt: u32,
    dir: tempfile::TempDir,
}

impl Run {
    /// A run with its own temporary directory (kept when `ZOO_KEEP` is set).
    fn new(workload: Workload, test: &str, corrupt: u32) -> Run {
        let mut dir = tempfile::Builder::new()
            .prefix(&format!("zoo-{}-", workload.name()))
            .tempdir()
            .expect("temp dir");
        if std::env::var_os("ZOO_KEEP").is_some() {
            dir.disable_cleanup(true);
            println!("{test}: files kept in {}", dir.path().display());
        }
        Run {
            proc: None,
            page_server: None,
            dump_args: Vec::new(),
            restore_args: Vec::new(),
            workload,
            corrupt,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn images(&self) -> PathBuf {
        self.path("images")
    }

    /// Everything a reader of a failure needs: the workload logs and the crs logs.
    fn logs(&self) -> String {
        let mut s = String::new();
        for (title, p) in [
            ("log of the workload left running", self.path(RUNNING_LOG)),
            ("workload log", self.path(LOG)),
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
        let item = if self.corrupt == 0 {
            String::new()
        } else {
            format!(" (ZOO_CORRUPT={})", self.corrupt)
        };
        panic!(
            "{}{item}: {what} (set ZOO_KEEP=1 to keep {})",
            self.workload.name(),
            self.dir.path().display()
        );
    }

    fn start(&mut self, argv: &[PathBuf]) {
        let work = self.path(WORK);
        std::fs::create_dir(&work).expect("create work dir");
        let fifo = self.path("ready");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        // Opened before the workload starts (non-blocking, so this does not wait for a
        // writer): its open for writing then never blocks.
        let mut ready = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("open the ready fifo");
        let log = File::create(self.path(LOG)).expect("create the workload log");

        let mut cmd = Command::new(zoo_dir().join("zoo_launch"));
        cmd.args(argv)
            .current_dir(&work)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("ZOO_READY", &fifo)
            .env("ZOO_TMP", &work)
            .env("ZOO_CORRUPT", self.corrupt.to_string())
            .env("ZOO_PAUSED", self.path(PAUSED))
            .env("ZOO_INIT_PID", self.path(INIT_PID))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let mut child = cmd.spawn().expect("spawn zoo_launch");
        let mut pid = child.id() as i32;
        if self.workload.pid_ns() {
            // zoo_launch forked the namespace's init, named it and exited: the init is
            // this subreaper's child now.
            let st = child.wait().expect("wait for zoo_launch");
            if !st.success() {
                self.fail(&format!("zoo_launch --pid-ns: {st}"));
            }
            pid = self.read_pid(INIT_PID);
        }
        drop(child); // reaped through the guard, by pid
        let guard = match ProcGuard::open(pid) {
            Ok(g) => g,
            Err(e) => {
                let _ = waitpid(Pid::from_raw(pid), None);
                self.fail(&format!("pidfd_open({pid}): {e}"));
            }
        };

        let waited = crs_tests::wait_ready(&mut ready, guard.pidfd.as_fd(), READY_TIMEOUT);
        self.proc = Some(guard);
        if let Err(why) = waited {
            self.fail(&why);
        }
    }

    /// The pid in file `name` of the run's directory.
    fn read_pid(&self, name: &str) -> i32 {
        let text = std::fs::read_to_string(self.path(name)).unwrap_or_default();
        text.trim()
            .parse()
            .unwrap_or_else(|_| self.fail(&format!("{name} holds no pid: {text:?}")))
    }

    /// Runs `crs ARGS` with its output in `<out>`; fails the test unless it exits 0.
    fn crs(&self, args: &[&str], out: &str) {
        self.tool(&crs_bin(), args, out);
    }

    /// Runs `BIN ARGS` with its output in `<out>`; fails the test unless it exits 0.
    fn tool(&self, bin: &Path, args: &[&str], out: &str) {
        let out_file = File::create(self.path(out)).expect("create the output file");
        let name = bin.file_name().unwrap_or_default().to_string_lossy();
        let child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out_file.try_clone().expect("dup"))
            .stderr(out_file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let mut g = match ProcGuard::open(child.id() as i32) {
            Ok(g) => g,
            Err(e) => panic!("pidfd_open({name}): {e}"),
        };
        drop(child);
        if !g.wait_exit(CRS_TIMEOUT) {
            self.fail(&format!(
                "`{name} {}` did not finish in {CRS_TIMEOUT:?}",
                args.join(" ")
            ));
        }
        match g.reap() {
            Ok(WaitStatus::Exited(_, 0)) => {}
            Ok(st) => self.fail(&format!("`{name} {}` ended with {st:?}", args.join(" "))),
            Err(e) => self.fail(&format!("waitpid({name}): {e}")),
        }
    }

    /// Waits until the pids and thread ids `ids` can be taken again (see
    /// `workloads/zoo_pid_free.c`: a thread gone from /proc may still hold its id).
    fn wait_ids_free(&self, ids: &[i32]) {
        let args: Vec<String> = ids.iter().map(i32::to_string).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.tool(&zoo_dir().join("zoo_pid_free"), &args, "pid-free.out");
    }

    fn images_arg(&self) -> String {
        self.images().to_str().expect("utf-8 temp path").to_owned()
    }

    /// `crs dump` (without -R): the workload and its tree are gone afterwards.
    fn dump(&mut self) {
        self.dump_with(Tools::Crs);
    }

    /// A dump without -R by crs or by `$CRIU`.
    fn dump_with(&mut self, tools: Tools<'_>) {
        let images = self.images();
        std::fs::create_dir(&images).expect("create images dir");
        let images_s = self.images_arg();
        let pid = self.proc.as_ref().expect("started").pid;
        let pid_s = pid.to_string();
        let below = descendants(pid);

        let mut args = vec![
            "dump", "-t", &pid_s, "-D", &images_s, "-o", "dump.log", "-v4",
        ];
        args.extend_from_slice(self.workload.crs_args());
        let extra = self.dump_args.clone();
        args.extend(extra.iter().map(String::as_str));
        let server = self
            .page_server
            .clone()
            .map(|bin| self.start_page_server(&bin));
        let ps_fd;
        if let Some((_, dumper_end, _)) = &server {
            ps_fd = dumper_end.as_raw_fd().to_string();
            args.extend_from_slice(&["--page-server", "--ps-socket", &ps_fd]);
            set_cloexec(dumper_end, false);
        }
        match tools {
            Tools::CriuDumps(criu) | Tools::Criu(criu) => self.tool(criu, &args, "criu-dump.out"),
            Tools::Crs => self.crs(&args, "crs-dump.out"),
            // A CRIU built without libnftables (as one built by hand here is) cannot remove
            // crs's nftables network lock; the workloads' connections are all inside the
            // tree, which needs none.
            Tools::CriuRestores(_) => {
                args.extend_from_slice(&["--network-lock", "skip"]);
                self.crs(&args, "crs-dump.out")
            }
        }
        if let Some((guard, dumper_end, name)) = server {
            drop(dumper_end);
            self.finish_page_server(guard, &name);
        }
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
    }

    /// Starts page server `bin` on one end of a new socket pair (`--ps-socket`), writing
    /// into `<dir>/ps-images`: its guard, the other end (for the dumper) and its name.
    fn start_page_server(&self, bin: &Path) -> (ProcGuard, OwnedFd, String) {
        let (server_end, dumper_end) = nix::sys::socket::socketpair(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let dir = self.path("ps-images");
        std::fs::create_dir(&dir).expect("create the page server's dir");
        let name = bin
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let out = File::create(self.path(&format!("{name}-page-server.out"))).expect("out");
        set_cloexec(&server_end, false);
        let child = Command::new(bin)
            .args(["page-server", "-D"])
            .arg(&dir)
            .args(["--ps-socket", &server_end.as_raw_fd().to_string()])
            .args(["-o", "page-server.log", "-v4"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {} page-server: {e}", bin.display()));
        drop(server_end);
        let g = ProcGuard::open(child.id() as i32).expect("pidfd of the page server");
        drop(child);
        (g, dumper_end, name)
    }

    /// Waits for the page server to end with 0, then moves what it received into the
    /// images directory (the two directories of a migration, brought together).
    fn finish_page_server(&self, mut g: ProcGuard, name: &str) {
        if !g.wait_exit(CRS_TIMEOUT) {
            self.fail(&format!("`{name} page-server` did not end after the dump"));
        }
        match g.reap() {
            Ok(WaitStatus::Exited(_, 0)) => {}
            other => {
                let out = std::fs::read_to_string(self.path(&format!("{name}-page-server.out")))
                    .unwrap_or_default();
                let log = std::fs::read_to_string(self.path("ps-images/page-server.log"))
                    .unwrap_or_default();
                self.fail(&format!(
                    "`{name} page-server` ended with {other:?}: {out}\n{log}"
                ))
            }
        }
        let received: Vec<_> = std::fs::read_dir(self.path("ps-images"))
            .expect("the page server's dir")
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().ends_with(".img"))
            .collect();
        if !received
            .iter()
            .any(|n| n.to_string_lossy().starts_with("pagemap-"))
        {
            self.fail(&format!("`{name} page-server` received no pagemap"));
        }
        let images = self.images();
        if let Ok(local) = std::fs::read_dir(&images) {
            let left: Vec<_> = local
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("pagemap-") || n.starts_with("pages-"))
                .collect();
            if !left.is_empty() {
                self.fail(&format!(
                    "pages left in the local directory after a dump to a page server: {left:?}"
                ));
            }
        }
        for n in received {
            std::fs::rename(self.path("ps-images").join(&n), images.join(&n))
                .expect("move a received image");
        }
    }

    /// `crs restore -d` of the images of the workload whose pid was `pid`: the restored
    /// process is reparented to this subreaper and guarded.
    fn restore(&mut self, pid: i32) {
        self.restore_with(pid, Tools::Crs);
    }

    /// `restore -d` by crs or by `$CRIU`.
    fn restore_with(&mut self, pid: i32, tools: Tools<'_>) {
        let images_s = self.images_arg();
        let pid_s = pid.to_string();
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
        args.extend_from_slice(self.workload.crs_args());
        let extra = self.restore_args.clone();
        args.extend(extra.iter().map(String::as_str));
        match tools {
            Tools::CriuRestores(criu) | Tools::Criu(criu) => {
                self.tool(criu, &args, "criu-restore.out")
            }
            Tools::Crs | Tools::CriuDumps(_) => self.crs(&args, "crs-restore.out"),
        }
        // The init of a pid namespace of its own gets another pid in the test's: the
        // pidfile names it, which must be that namespace's init (pid 1 inside).
        let pid = if self.workload.pid_ns() {
            let p = self.read_pid("restore.pid");
            let status = std::fs::read_to_string(format!("/proc/{p}/status")).unwrap_or_default();
            let inner = status
                .lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .and_then(|v| v.split_whitespace().last().map(str::to_owned));
            if inner.as_deref() != Some("1") {
                self.fail(&format!("--pidfile names {p}, not a pid namespace's init"));
            }
            p
        } else {
            pid
        };
        match ProcGuard::open(pid) {
            Ok(g) => self.proc = Some(g),
            Err(e) => self.fail(&format!("no process {pid} after `crs restore`: {e}")),
        }
        match std::fs::read_to_string(&pidfile) {
            Ok(s) if s.trim() == pid_s || s.trim() == pid.to_string() => {}
            Ok(s) => self.fail(&format!("--pidfile holds {s:?}, want {pid}")),
            Err(e) => self.fail(&format!("--pidfile {}: {e}", pidfile.display())),
        }
        if matches!(tools, Tools::CriuRestores(_) | Tools::Criu(_)) {
            return;
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
        let images_s = self.images_arg();
        let pid_s = self.proc.as_ref().expect("started").pid.to_string();
        let mut args = vec![
            "dump", "-t", &pid_s, "-D", &images_s, "-R", "-o", "dump.log", "-v4",
        ];
        args.extend_from_slice(self.workload.crs_args());
        let extra = self.dump_args.clone();
        args.extend(extra.iter().map(String::as_str));
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

    /// Tells the workload how long crs held it (see `ZOO_PAUSED` in zoo.h).
    fn set_paused(&self, paused: Duration) {
        std::fs::write(self.path(PAUSED), format!("{:.6}\n", paused.as_secs_f64()))
            .expect("write the pause file");
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

    /// The items of the `FAIL:` lines of the workload log (None: a line without an item).
    fn failed_items(&self) -> Vec<Option<u32>> {
        let log = std::fs::read_to_string(self.path(LOG)).unwrap_or_default();
        log.lines().filter_map(fail_line_item).collect()
    }

    /// The verdict of a run that must pass: exit 0 and no `FAIL:` line.
    fn expect_pass(&self, st: WaitStatus) {
        if !matches!(st, WaitStatus::Exited(_, 0)) {
            self.fail(&format!("verdict {st:?}, want exit 0"));
        }
        let failed = self.failed_items();
        if !failed.is_empty() {
            self.fail(&format!(
                "exit 0, but the log has FAIL lines (items {failed:?})"
            ));
        }
    }

    /// After `crs dump -R` and the running workload's own verdict: puts the work directory
    /// and the log back as they were at the dump (the running workload has changed both
    /// after it, as a task restored from these images must not see), waits until the pids
    /// of the dumped tree are free, and restores the images.
    fn restore_left_running(&mut self, snapshot: &Path, ids: &[i32]) {
        // What came to this subreaper is reaped: the running workload's verdict was its
        // own, so its children are gone but for any it left behind.
        for &p in ids {
            let _ = waitpid(
                Pid::from_raw(p),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG | nix::sys::wait::WaitPidFlag::__WALL),
            );
        }
        // A pid namespace of its own is new: its pids are free.
        if !self.workload.pid_ns() {
            self.wait_ids_free(ids);
        }
        let rename = |from: &Path, to: &Path| {
            std::fs::rename(from, to).unwrap_or_else(|e| {
                self.fail(&format!(
                    "rename {} to {}: {e}",
                    from.display(),
                    to.display()
                ))
            });
        };
        rename(&self.path(LOG), &self.path(RUNNING_LOG));
        rename(&self.path(WORK), &self.path("work.running"));
        rename(&snapshot.join(LOG), &self.path(LOG));
        rename(&snapshot.join(WORK), &self.path(WORK));
        self.restore(ids[0]);
    }
}

/// The workload's scratch directory (`ZOO_TMP`) inside the run's directory.
const WORK: &str = "work";
/// The workload's stdout and stderr.
const LOG: &str = "workload.log";
/// Where `zoo_launch --pid-ns` writes the init's pid.
const INIT_PID: &str = "init.pid";
/// The log of the workload `crs dump -R` left running (once its images are restored).
const RUNNING_LOG: &str = "workload.running.log";
/// The file `ZOO_PAUSED` names.
const PAUSED: &str = "paused";
/// How many corrupted runs of one workload run at a time.
const CORRUPT_JOBS: usize = 8;

/// The item of a `FAIL: <name>: item <N>: ...` line; `Some(None)` for a `FAIL:` line
/// without an item, None for other lines.
fn fail_line_item(line: &str) -> Option<Option<u32>> {
    let rest = line.strip_prefix("FAIL: ")?;
    let item = rest
        .split_once(": item ")
        .and_then(|(_, r)| r.split_once(':'))
        .and_then(|(n, _)| n.parse().ok());
    Some(item)
}

/// The pid `pid` first, then the ids of its threads and of the processes below it and
/// their threads: what the restore of its images needs free.
fn tree_tids(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    for p in std::iter::once(pid).chain(descendants(pid)) {
        if p != pid {
            out.push(p);
        }
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) {
            out.extend(
                tasks
                    .flatten()
                    .filter_map(|t| t.file_name().to_str()?.parse::<i32>().ok())
                    .filter(|&t| t != p),
            );
        }
    }
    out
}

/// Copies the directory tree `from` to `to` (which must not exist): directories, regular
/// files (empty ones made, not read), symlinks, FIFOs and socket inodes, with their modes.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    use nix::sys::stat::{mknod, Mode as FileMode, SFlag};
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    std::fs::create_dir(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let md = std::fs::symlink_metadata(&src)?;
        let ft = md.file_type();
        if ft.is_dir() {
            copy_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
            continue;
        } else if ft.is_file() && md.len() == 0 {
            // Not opened: an open of a file the workload holds a lease on would break the
            // lease (`workloads/leases.c` keeps its leased files empty for this).
            File::create(&dst)?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
        } else if ft.is_fifo() || ft.is_socket() {
            let kind = if ft.is_fifo() {
                SFlag::S_IFIFO
            } else {
                SFlag::S_IFSOCK
            };
            mknod(&dst, kind, FileMode::from_bits_truncate(0o600), 0)?;
        } else {
            return Err(std::io::Error::other(format!(
                "{}: a device file in a workload directory",
                src.display()
            )));
        }
        std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    let mode = std::fs::metadata(from)?.mode() & 0o7777;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode))
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
    let criu = match mode {
        Mode::CriuRestoresCrs
        | Mode::CrsRestoresCriu
        | Mode::CriuPageServer
        | Mode::CriuDumpsToCrsPageServer => match crs_testkit::hand_built_criu(&test) {
            Some(c) => Some(c),
            None => return,
        },
        _ => None,
    };
    become_subreaper();
    if mode != Mode::Control && mode != Mode::Corrupt {
        crs_bin(); // fail early and clearly when crs is not built
    }
    if mode == Mode::Corrupt {
        run_corrupt(workload, &test, &argv);
        return;
    }
    match (mode, criu.as_deref()) {
        (Mode::PreDumpChain | Mode::PreDumpChainQuiet, _) => {
            pre_dump_chain(workload, &test, &argv, mode == Mode::PreDumpChain);
            return;
        }
        (Mode::PageServer, _) => {
            page_server_round_trip(workload, &test, &argv, Tools::Crs, &crs_bin());
            return;
        }
        (Mode::CriuPageServer, Some(criu)) => {
            page_server_round_trip(workload, &test, &argv, Tools::Crs, criu);
            return;
        }
        (Mode::CriuDumpsToCrsPageServer, Some(criu)) => {
            page_server_round_trip(workload, &test, &argv, Tools::CriuDumps(criu), &crs_bin());
            return;
        }
        (_, Some(criu)) => {
            run_interop(workload, mode, &test, &argv, criu);
            return;
        }
        _ => {}
    }
    let mut run = Run::new(workload, &test, 0);
    run.start(&argv);
    match mode {
        Mode::Control => run.set_paused(Duration::ZERO),
        Mode::DumpRestore | Mode::LazyRestore => {
            if mode == Mode::LazyRestore {
                run.restore_args = vec!["--lazy-pages".into()];
            }
            let pid = run.proc.as_ref().expect("started").pid;
            let ids = tree_tids(pid);
            let begin = Instant::now();
            run.dump();
            run.wait_ids_free(&ids);
            run.restore(pid);
            run.set_paused(begin.elapsed());
        }
        Mode::LeaveRunning | Mode::LiveLeaveRunning => {
            if mode == Mode::LiveLeaveRunning {
                run.dump_args = vec!["--live".into()];
            }
            let pid = run.proc.as_ref().expect("started").pid;
            let begin = Instant::now();
            run.dump_leave_running();
            run.set_paused(begin.elapsed());
            // The files as the dump saw them (the workload does not touch them while it
            // waits for SIGTERM), for the restore below.
            let snapshot = run.path("at-dump");
            std::fs::create_dir(&snapshot).expect("create the snapshot dir");
            if let Err(e) = copy_tree(&run.path(WORK), &snapshot.join(WORK))
                .and_then(|()| std::fs::copy(run.path(LOG), snapshot.join(LOG)).map(drop))
            {
                run.fail(&format!("copying the work directory and log: {e}"));
            }
            let ids = tree_tids(pid);
            let st = run.finish();
            run.expect_pass(st);
            run.restore_left_running(&snapshot, &ids);
            run.set_paused(begin.elapsed());
        }
        Mode::CriuRestoresCrs
        | Mode::CrsRestoresCriu
        | Mode::PageServer
        | Mode::CriuPageServer
        | Mode::CriuDumpsToCrsPageServer
        | Mode::PreDumpChain
        | Mode::PreDumpChainQuiet
        | Mode::Corrupt => unreachable!("handled above"),
    }
    let st = run.finish();
    run.expect_pass(st);
}

/// Three pre-dumps, a dump on top of them, a restore (see `Mode::PreDumpChain`).
fn pre_dump_chain(workload: Workload, test: &str, argv: &[PathBuf], signal: bool) {
    const ROUNDS: usize = 3;
    let mut run = Run::new(workload, test, 0);
    run.start(argv);
    let pid = run.proc.as_ref().expect("started").pid;
    let pid_s = pid.to_string();
    for i in 1..=ROUNDS {
        let dir = run.path(&format!("pre{i}"));
        std::fs::create_dir(&dir).expect("create a pre-dump dir");
        let dir_s = dir.to_str().expect("utf-8").to_owned();
        let prev = format!("../pre{}", i - 1);
        let mut args = vec![
            "pre-dump", "-t", &pid_s, "-D", &dir_s, "-o", "pre.log", "-v4",
        ];
        if i > 1 {
            args.extend_from_slice(&["--prev-images-dir", &prev]);
        }
        run.crs(&args, &format!("crs-pre{i}.out"));
        if signal {
            if let Err(e) = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGUSR1) {
                run.fail(&format!("SIGUSR1 to the workload: {e}"));
            }
        }
    }
    run.dump_args = vec!["--prev-images-dir".into(), format!("../pre{ROUNDS}")];
    let ids = tree_tids(pid);
    let begin = Instant::now();
    run.dump_with(Tools::Crs);
    // The dump leaves the pages nobody wrote since the last pre-dump to the chain.
    let left = parent_pages(&run.images().join(format!("pagemap-{pid}.img")));
    if left == 0 {
        run.fail("the dump on top of the pre-dumps left no page to them");
    }
    run.wait_ids_free(&ids);
    run.restore_with(pid, Tools::Crs);
    run.set_paused(begin.elapsed());
    let st = run.finish();
    run.expect_pass(st);
}

/// How many pages pagemap image `path` leaves to the parent images (PE_PARENT entries).
fn parent_pages(path: &Path) -> u64 {
    use crs_images::pb::pagemap::{Pagemap_entry, Pagemap_head};
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let label = path.display().to_string();
    let mut r = crs_images::codec::ImageReader::new(&label, &bytes, "PAGEMAP").expect("pagemap");
    let _: Option<Pagemap_head> = r.next().expect("pagemap head");
    let entries: Vec<Pagemap_entry> = r.all().expect("pagemap entries");
    entries
        .iter()
        .filter(|e| e.flags() & 1 != 0)
        .map(|e| e.nr_pages())
        .sum()
}

/// A dump by `dumper` into page server `server` (each crs or `$CRIU`), then `crs restore`.
fn page_server_round_trip(
    workload: Workload,
    test: &str,
    argv: &[PathBuf],
    dumper: Tools<'_>,
    server: &Path,
) {
    let mut run = Run::new(workload, test, 0);
    run.page_server = Some(server.to_path_buf());
    run.start(argv);
    let pid = run.proc.as_ref().expect("started").pid;
    let ids = tree_tids(pid);
    let begin = Instant::now();
    run.dump_with(dumper);
    run.wait_ids_free(&ids);
    run.restore_with(pid, Tools::Crs);
    run.set_paused(begin.elapsed());
    let st = run.finish();
    run.expect_pass(st);
}

/// One dump and restore of the workload by `tools`, checked like `dump_restore_passes`.
fn round_trip(workload: Workload, test: &str, argv: &[PathBuf], tools: Tools<'_>) {
    let mut run = Run::new(workload, test, 0);
    run.start(argv);
    let pid = run.proc.as_ref().expect("started").pid;
    let ids = tree_tids(pid);
    let begin = Instant::now();
    run.dump_with(tools);
    run.wait_ids_free(&ids);
    run.restore_with(pid, tools);
    run.set_paused(begin.elapsed());
    let st = run.finish();
    run.expect_pass(st);
}

/// crs and `$CRIU` on one workload, one dumping and the other restoring. Where that fails,
/// CRIU alone does the same round trip: if CRIU cannot do it either (its own limits,
/// e.g. it never restores the personality, and refuses SysV memory outside an IPC
/// namespace), the workload is beyond what the two can share, and the test says so and
/// passes; if CRIU can, the failure is crs's and the test fails with it.
fn run_interop(workload: Workload, mode: Mode, test: &str, argv: &[PathBuf], criu: &Path) {
    let tools = if mode == Mode::CriuRestoresCrs {
        Tools::CriuRestores(criu)
    } else {
        Tools::CriuDumps(criu)
    };
    let mixed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        round_trip(workload, test, argv, tools);
    }));
    let Err(failure) = mixed else {
        return;
    };
    let alone = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        round_trip(
            workload,
            &format!("{test}_criu_alone"),
            argv,
            Tools::Criu(criu),
        );
    }));
    match alone {
        Ok(()) => std::panic::resume_unwind(failure),
        Err(why) => {
            let why = why
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| why.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            println!("{test}: CRIU cannot do this round trip by itself either: {why}");
        }
    }
}

/// The `--items` answer of the workload.
fn item_count(workload: Workload, test: &str, argv: &[PathBuf]) -> u32 {
    let run = Run::new(workload, test, 0);
    // The program itself, not zoo_launch's option.
    let argv = if workload.pid_ns() { &argv[1..] } else { argv };
    let out = run.path("items.out");
    let out_file = File::create(&out).expect("create items.out");
    let child = Command::new(&argv[0])
        .args(&argv[1..])
        .arg("--items")
        .current_dir(run.dir.path())
        .stdin(Stdio::null())
        .stdout(out_file)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", argv[0].display()));
    let mut g = ProcGuard::open(child.id() as i32).expect("pidfd_open");
    drop(child);
    if !g.wait_exit(READY_TIMEOUT) {
        run.fail("`--items` did not answer in time");
    }
    let st = g.reap();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    match (st, text.trim().parse::<u32>()) {
        (Ok(WaitStatus::Exited(_, 0)), Ok(n)) if n > 0 => n,
        (st, _) => run.fail(&format!(
            "`--items` ended with {st:?} and printed {text:?}, want a count of at least 1"
        )),
    }
}

/// One run per item, `CORRUPT_JOBS` at a time: each must exit 1 with exactly its item
/// failed.
fn run_corrupt(workload: Workload, test: &str, argv: &[PathBuf]) {
    let items = item_count(workload, test, argv);
    let next = std::sync::atomic::AtomicU32::new(1);
    let failed = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..CORRUPT_JOBS.min(items as usize) {
            s.spawn(|| loop {
                let item = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if item > items {
                    break;
                }
                let one = std::panic::catch_unwind(|| corrupt_one(workload, test, argv, item));
                if one.is_err() {
                    failed.lock().unwrap_or_else(|e| e.into_inner()).push(item);
                }
            });
        }
    });
    let mut failed = failed.into_inner().unwrap_or_else(|e| e.into_inner());
    failed.sort_unstable();
    assert!(
        failed.is_empty(),
        "{}: of its {items} items, corrupting {failed:?} did not fail as it must (see above)",
        workload.name()
    );
}

fn corrupt_one(workload: Workload, test: &str, argv: &[PathBuf], item: u32) {
    let mut run = Run::new(workload, test, item);
    run.start(argv);
    run.set_paused(Duration::ZERO);
    let st = run.finish();
    if !matches!(st, WaitStatus::Exited(_, 1)) {
        run.fail(&format!(
            "with item {item} broken the workload ended with {st:?}, want exit 1 (a failed check)"
        ));
    }
    let failed = run.failed_items();
    if failed.is_empty() || failed.iter().any(|f| *f != Some(item)) {
        run.fail(&format!(
            "with item {item} broken the failed items are {failed:?}, want only {item}"
        ));
    }
}
