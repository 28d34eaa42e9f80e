//! `--shell-job`: a job of an interactive terminal session (fds 0-2 on the pty slave that
//! is its controlling terminal, its own foreground process group, not the session leader)
//! is dumped with `crs dump -j` and restored with `crs restore -j` run in the foreground of
//! another terminal session: the job must go on counting on crs's terminal, as its
//! controlling terminal and foreground group, in crs's session, and pass its own checks.
//!
//! Processes: `tty_session -f shell_job LOG` (session leader of pty 1, waits for the job)
//! and its child `shell_job` (the job); then `tty_session crs restore -D DIR -j` (crs leads
//! the session of pty 2) and the restored job, crs's child. All of them are SIGKILLed and
//! reaped by [`Procs`] whatever happens.

use crs_tests::crs_bin;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crs_tests::process::skip_unless_root;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// How long any one step may take before the test fails (a bound, not a synchronisation).
const STEP: Duration = Duration::from_secs(20);

/// The processes of the test: launchers (its children) and jobs (their children).
/// Dropping kills every one, reaps the launchers, then the jobs, which are by then either
/// reaped by their parent or reparented to the test (a child subreaper).
#[derive(Default)]
struct Procs {
    launchers: Vec<Child>,
    jobs: Vec<(i32, OwnedFd)>,
}

impl Procs {
    fn job(&mut self, pid: i32) {
        let fd =
            crs_sys::pidfd::pidfd_open(pid, 0).unwrap_or_else(|e| panic!("pidfd_open({pid}): {e}"));
        self.jobs.push((pid, fd));
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, fd) in &self.jobs {
            let _ = crs_sys::pidfd::pidfd_send_signal(fd.as_fd(), libc::SIGKILL);
        }
        for c in &mut self.launchers {
            let _ = c.kill();
            let _ = c.wait();
        }
        for (pid, _) in &self.jobs {
            // ECHILD: already reaped by its parent.
            let _ = waitpid(Pid::from_raw(*pid), None);
        }
    }
}

fn zoo(name: &str) -> PathBuf {
    PathBuf::from(env!("ZOO_DIR")).join(name)
}

/// What a pty master has delivered so far.
struct Terminal {
    master: File,
    text: String,
}

impl Terminal {
    fn new(master: OwnedFd) -> Terminal {
        Terminal {
            master: File::from(master),
            text: String::new(),
        }
    }

    /// Reads what is there within `left`; false at EOF (EIO: every slave is closed) or
    /// when nothing came in time.
    fn read_some(&mut self, left: Duration) -> bool {
        let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut pfd = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut pfd, ms) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(Errno::EINTR) => return true,
            Err(e) => panic!("poll of a pty master: {e}"),
        }
        let mut buf = [0u8; 4096];
        match self.master.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => {
                self.text.push_str(&String::from_utf8_lossy(&buf[..n]));
                true
            }
            Err(e) if e.raw_os_error() == Some(libc::EIO) => false,
            Err(e) => panic!("reading a pty master: {e}"),
        }
    }

    /// Reads until a line satisfies `pred` (returns it), panicking after [`STEP`].
    fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + STEP;
        loop {
            if let Some(l) = self.text.lines().find(|l| pred(l.trim_end_matches('\r'))) {
                return l.trim_end_matches('\r').to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.read_some(left) {
                panic!("no {what} on the terminal; it showed:\n{}", self.text);
            }
        }
    }

    /// Reads until every slave is closed (or [`STEP`] passes).
    fn drain(&mut self) {
        let deadline = Instant::now() + STEP;
        while self.read_some(deadline.saturating_duration_since(Instant::now())) {}
    }

    /// The tick numbers shown, in order.
    fn ticks(&self) -> Vec<u64> {
        self.text
            .lines()
            .filter_map(|l| l.trim_end_matches('\r').strip_prefix("tick "))
            .filter_map(|n| n.parse().ok())
            .collect()
    }
}

/// A new pty: (master, three handles on its slave for stdin, stdout and stderr). Every
/// fd is close-on-exec from its creation, so a process another test thread starts
/// meanwhile cannot hold this pty open.
fn pty() -> (OwnedFd, [Stdio; 3]) {
    use nix::fcntl::OFlag;
    use std::os::unix::fs::OpenOptionsExt;
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .expect("posix_openpt");
    nix::pty::grantpt(&master).expect("grantpt");
    nix::pty::unlockpt(&master).expect("unlockpt");
    let name = nix::pty::ptsname_r(&master).expect("ptsname_r");
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&name)
        .unwrap_or_else(|e| panic!("opening {name}: {e}"));
    let s = || Stdio::from(slave.try_clone().expect("dup of the pty slave"));
    (master.into(), [s(), s(), s()])
}

fn spawn_on(pty_stdio: [Stdio; 3], program: &Path, args: &[&std::ffi::OsStr]) -> Child {
    let [i, o, e] = pty_stdio;
    Command::new(program)
        .args(args)
        .stdin(i)
        .stdout(o)
        .stderr(e)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", program.display()))
}

/// (session, process group, foreground group of the terminal) of `pid`, from its stat.
fn ids(pid: i32) -> (i32, i32, i32) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat of the job");
    let f: Vec<i32> = s[s.rfind(')').expect("comm") + 2..]
        .split(' ')
        .skip(2)
        .take(5)
        .map(|x| x.parse().expect("number"))
        .collect();
    (f[1], f[0], f[3])
}

fn logs(dir: &Path) -> String {
    let mut s = String::new();
    for name in ["dump.log", "restore.log", "job.log"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        s.push_str(&format!("--- {name} (last lines)\n"));
        for l in tail.iter().rev() {
            s.push_str(l);
            s.push('\n');
        }
    }
    s
}

#[test]
fn shell_job_dump_restore_continues_on_crs_terminal() {
    if skip_unless_root("shell_job_dump_restore_continues_on_crs_terminal") {
        return;
    }
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let crs = crs_bin();
    let tmp = tempfile::tempdir().expect("tempdir");
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).expect("images dir");
    let log = tmp.path().join("job.log");
    let mut procs = Procs::default();

    // 1. The job, in the session of pty 1.
    let (master1, stdio1) = pty();
    let mut term1 = Terminal::new(master1);
    let session1 = spawn_on(
        stdio1,
        &zoo("tty_session"),
        &["-f".as_ref(), zoo("shell_job").as_os_str(), log.as_os_str()],
    );
    let leader1 = session1.id() as i32;
    procs.launchers.push(session1);
    term1.wait_line("tick 3", |l| l == "tick 3");
    let children = std::fs::read_to_string(format!("/proc/{leader1}/task/{leader1}/children"))
        .expect("children of the session leader");
    let job: i32 = children.trim().parse().expect("one job");
    procs.job(job);
    let (sid, pgid, fg) = ids(job);
    assert_eq!(
        (sid, pgid, fg),
        (leader1, job, job),
        "the job's session, group, foreground group before the dump"
    );

    // 2. Without -j the dump is refused and the job runs on; with -j crs dumps it, kills
    // it, and its session leader exits.
    let out = Command::new(&crs)
        .args(["dump", "-t", &job.to_string(), "-D"])
        .arg(&images)
        .output()
        .expect("run crs dump");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--shell-job"),
        "{err}"
    );
    let after_refusal = format!("tick {}", term1.ticks().last().copied().unwrap_or(0) + 2);
    term1.wait_line("ticks after the refused dump", |l| l == after_refusal);
    let out = Command::new(&crs)
        .args(["dump", "-t", &job.to_string(), "-D"])
        .arg(&images)
        .args(["-j", "-o", "dump.log", "-v4"])
        .output()
        .expect("run crs dump");
    assert!(
        out.status.success(),
        "crs dump -j failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        logs(&images)
    );
    for name in ["tty-info.img", "files.img", "pstree.img"] {
        assert!(images.join(name).exists(), "{name} missing after the dump");
    }
    let st = procs.launchers[0]
        .wait()
        .expect("wait for the session leader");
    assert_eq!(
        st.code(),
        Some(128 + Signal::SIGKILL as i32),
        "job ended by the dump"
    );
    term1.drain();
    let before = term1.ticks();
    let last = *before.last().expect("ticks before the dump");
    assert!(
        !Path::new(&format!("/proc/{job}")).exists(),
        "the dumped job is still there"
    );
    procs.jobs.clear();

    // 3. Without -j, or without a terminal, the restore is refused before anything is
    // created; then crs restores it in the foreground of pty 2.
    for (args, want) in [
        (&[][..], "tty: restore with --shell-job"),
        (&["-j"][..], "no terminal on crs's stdin"),
    ] {
        let out = Command::new(&crs)
            .args(["restore", "-D"])
            .arg(&images)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run crs restore");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{args:?}: {err}"
        );
        assert!(
            !Path::new(&format!("/proc/{job}")).exists(),
            "{args:?}: task left"
        );
    }
    let (master2, stdio2) = pty();
    let mut term2 = Terminal::new(master2);
    let session2 = spawn_on(
        stdio2,
        &zoo("tty_session"),
        &[
            crs.as_os_str(),
            "restore".as_ref(),
            "-D".as_ref(),
            images.as_os_str(),
            "-j".as_ref(),
            "-o".as_ref(),
            "restore.log".as_ref(),
            "-v4".as_ref(),
        ],
    );
    let crs_pid = session2.id() as i32;
    procs.launchers.push(session2);
    let first = term2.wait_line("a tick after the restore", |l| l.starts_with("tick "));
    procs.job(job);
    assert_eq!(
        first,
        format!("tick {}", last + 1),
        "the counter must continue where the dump stopped it\n{}",
        logs(&images)
    );
    let three_more = format!("tick {}", last + 3);
    term2.wait_line(&three_more, |l| l == three_more);
    let (sid, pgid, fg) = ids(job);
    assert_eq!(
        (sid, pgid, fg),
        (crs_pid, job, job),
        "after the restore: crs's session, its own group, in the foreground"
    );

    // 4. SIGTERM: the job checks itself on its new terminal and exits; crs exits with it.
    nix::sys::signal::kill(Pid::from_raw(job), Signal::SIGTERM).expect("SIGTERM to the job");
    let verdict = term2.wait_line("a verdict", |l| l.starts_with("verdict "));
    let st = procs.launchers[1].wait().expect("wait for crs restore");
    term2.drain();
    assert!(
        verdict.starts_with("verdict PASS"),
        "the job's own checks failed:\n{}\n{}",
        term2.text,
        logs(&images)
    );
    assert_eq!(
        st.code(),
        Some(0),
        "crs restore exits with the job's status\n{}",
        logs(&images)
    );
    let ns: Vec<u64> = std::fs::read_to_string(&log)
        .expect("job log")
        .lines()
        .filter_map(|l| l.strip_prefix("n=")?.split(' ').next()?.parse().ok())
        .collect();
    assert!(
        ns.windows(2).all(|w| w[1] == w[0] + 1),
        "the log counter has gaps or repeats: {ns:?}"
    );
}

/// The CRIU 4.2 reference set `shell` (a job at PID 74000 dumped by `criu dump
/// --shell-job`, see its README): crs restores it with `-j` on its own terminal and the
/// job goes on from `n=17` with its state, in crs's session, as the foreground group.
#[test]
fn criu_reference_shell_set_restores_on_crs_terminal() {
    const PID: i32 = 74000;
    // The set's lock is held until the end: the job's pid and directory are the set's.
    let Some(set) =
        crs_testkit::reference("shell", "criu_reference_shell_set_restores_on_crs_terminal")
    else {
        return;
    };
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let log = set.work.join("shell.log");
    let _ = std::fs::remove_file(&log);
    // A copy: restore writes its log and stats into the images dir.
    let tmp = set.copy_images();
    let mut procs = Procs::default();
    let (master, stdio) = pty();
    let mut term = Terminal::new(master);
    let crs = crs_bin();
    let session = spawn_on(
        stdio,
        &zoo("tty_session"),
        &[
            crs.as_os_str(),
            "restore".as_ref(),
            "-D".as_ref(),
            tmp.path().as_os_str(),
            "--shell-job".as_ref(),
            "-o".as_ref(),
            "restore.log".as_ref(),
            "-v4".as_ref(),
        ],
    );
    let crs_pid = session.id() as i32;
    procs.launchers.push(session);
    let first = term.wait_line("a tick after the restore", |l| l.starts_with("shell tick "));
    procs.job(PID);
    assert_eq!(first, "shell tick 17", "{}", logs(tmp.path()));
    term.wait_line("shell tick 19", |l| l == "shell tick 19");
    assert_eq!(
        ids(PID),
        (crs_pid, PID, PID),
        "session, group, foreground group"
    );
    nix::sys::signal::kill(Pid::from_raw(PID), Signal::SIGTERM).expect("SIGTERM to the job");
    let st = procs.launchers[0].wait().expect("wait for crs restore");
    assert_eq!(
        st.code(),
        Some(128 + Signal::SIGTERM as i32),
        "crs restore exits with the job's status (killed by SIGTERM)"
    );
    let text = std::fs::read_to_string(&log).expect("shell.log");
    let lines: Vec<&str> = text.lines().collect();
    // "shell tick 19" was on the terminal, so n=18 is logged (the job writes the terminal
    // first, then the log, and SIGTERM may come in between).
    assert!(lines.len() >= 2, "log:\n{text}");
    for (i, l) in lines.iter().enumerate() {
        let want = format!("shell n={} tty=", 17 + i);
        assert!(l.starts_with(&want), "line {i}: {l}");
        for part in [
            "ctty=1",
            &format!("pid={PID} pgid={PID} sid={crs_pid} fg=1"),
            "state=704ee7024141fa57",
        ] {
            assert!(l.contains(part), "line {i} lacks {part}: {l}");
        }
    }
}
