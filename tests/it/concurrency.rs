//! Concurrency, end to end through the `crs` binary:
//! - two crs dump two trees at once (the first is held at a ptrace call while it holds its
//!   tree, so the second runs entirely inside the first's dump), both succeed, both trees
//!   restore at once (held the same way) and pass their own checks;
//! - a second crs on a tree another crs holds, or a debugger holds (all of it, or one
//!   thread of a child), is refused with an error naming the pid and the tracer, and
//!   disturbs neither: the tree is still held by the first, the first dump completes and
//!   restores, and a tree the debugger lets go runs on;
//! - two crs started at once on one tree: each succeeds or is refused naming the other,
//!   the tree runs on, and a successful set restores;
//! - a tree that forks, exits and execs as fast as it can (`workloads/storm.c`) is either
//!   dumped (then the images restore and the restored tree runs on) or refused (then the
//!   error says what happened, no image set is left, and the tree runs on).
//!
//! Workloads are the zoo's C programs (ZOO_READY fifo, SIGTERM, exit status = verdict).
//! Every process is in a group a [`Cleanup`] kills on drop; the test is a child subreaper,
//! so every process of a dumped or restored tree ends up reaped by it.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use crs_images::codec::ImageReader;
use crs_images::pb::pstree::Pstree_entry;
use crs_sys::ptrace::{self, Stop};
use crs_tests::{cpu_masks, crs_bin, descendants, wait_readable};
use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How long a workload may take to say ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one crs command may take.
const CRS_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a workload may take to check itself and exit after SIGTERM (the storm waits
/// up to 120 s for progress).
const EXIT_TIMEOUT: Duration = Duration::from_secs(300);

fn zoo_dir() -> PathBuf {
    PathBuf::from(env!("ZOO_DIR"))
}

fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// Kills every process group it was told about, and what is below each known root, then
/// reaps every child of the test (the test is a subreaper: every orphan is its child).
struct Cleanup {
    groups: Vec<i32>,
}

impl Cleanup {
    fn new() -> Cleanup {
        Cleanup { groups: Vec::new() }
    }

    fn add(&mut self, pgid: i32) {
        self.groups.push(pgid);
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for &g in &self.groups {
            for p in descendants(g) {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            let _ = killpg(Pid::from_raw(g), Signal::SIGKILL);
            let _ = kill(Pid::from_raw(g), Signal::SIGKILL);
        }
        // Every child is dying now; orphans become ours as their parents go.
        while let Ok(_) | Err(Errno::EINTR) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL))
        {
        }
    }
}

fn pidfd(pid: i32) -> OwnedFd {
    crs_sys::pidfd::pidfd_open(pid, 0).unwrap_or_else(|e| panic!("pidfd_open({pid}): {e}"))
}

/// Waits until `pid` (a child of the test by now) exits, and reaps it.
fn reap(pid: i32, timeout: Duration, what: &str) -> WaitStatus {
    let fd = pidfd(pid);
    assert!(
        wait_readable(&[fd.as_fd()], timeout).is_some(),
        "{what} (pid {pid}) did not exit within {timeout:?}"
    );
    waitpid(Pid::from_raw(pid), Some(WaitPidFlag::__WALL))
        .unwrap_or_else(|e| panic!("waitpid {what} ({pid}): {e}"))
}

/// One zoo workload started by `zoo_launch` (a session and process group of its own).
struct Workload {
    name: &'static str,
    pid: i32,
    dir: PathBuf,
}

impl Workload {
    fn start(name: &'static str, dir: &Path, cleanup: &mut Cleanup) -> Workload {
        let dir = dir.join(name);
        let work = dir.join("work");
        std::fs::create_dir_all(&work).expect("create work dir");
        let fifo = dir.join("ready");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let mut ready = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("open the ready fifo");
        let log = File::create(dir.join("workload.log")).expect("create workload.log");
        let child = Command::new(zoo_dir().join("zoo_launch"))
            .arg(zoo_dir().join(name))
            .current_dir(&work)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("ZOO_READY", &fifo)
            .env("ZOO_TMP", &work)
            .env("ZOO_CORRUPT", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn zoo_launch");
        let pid = child.id() as i32;
        drop(child); // reaped by pid
        cleanup.add(pid);
        let w = Workload { name, pid, dir };
        let exited = pidfd(pid);
        let mut got = Vec::new();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match wait_readable(&[ready.as_fd(), exited.as_fd()], left) {
                Some(0) => {}
                Some(_) => panic!("{name} exited before it was ready:\n{}", w.log()),
                None => panic!("{name} was not ready in {READY_TIMEOUT:?}:\n{}", w.log()),
            }
            let mut buf = [0u8; 64];
            match ready.read(&mut buf) {
                Ok(0) if got.is_empty() => panic!("{name} closed the fifo:\n{}", w.log()),
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading the ready fifo: {e}"),
            }
        }
        assert_eq!(got, b"ready\n", "{name} said {got:?}");
        w
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("workload.log")).unwrap_or_default()
    }

    /// SIGTERM and the workload's verdict (it must be a child of the test: started by it,
    /// or restored and orphaned to it).
    fn finish(&self) {
        kill(Pid::from_raw(self.pid), Signal::SIGTERM)
            .unwrap_or_else(|e| panic!("SIGTERM {} ({}): {e}", self.name, self.pid));
        let st = reap(self.pid, EXIT_TIMEOUT, self.name);
        assert!(
            matches!(st, WaitStatus::Exited(_, 0)),
            "{} ({}) ended with {st:?}, want exit 0:\n{}",
            self.name,
            self.pid,
            self.log()
        );
    }
}

/// What a finished crs command left.
struct CrsRun {
    status: WaitStatus,
    output: String,
}

impl CrsRun {
    fn ok(&self) -> bool {
        matches!(self.status, WaitStatus::Exited(_, 0))
    }
}

/// `crs ARGS` in a process group of its own, output to `out`.
fn crs_command(args: &[&str], out: &Path) -> Command {
    let out = File::create(out).expect("create crs output file");
    let mut cmd = Command::new(crs_bin());
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .process_group(0);
    cmd
}

/// Runs `crs ARGS` to its end.
fn crs(args: &[&str], out: &Path, cleanup: &mut Cleanup) -> CrsRun {
    let child = crs_command(args, out).spawn().expect("spawn crs");
    let pid = child.id() as i32;
    drop(child);
    cleanup.add(pid);
    finish_crs(pid, args, out)
}

fn finish_crs(pid: i32, args: &[&str], out: &Path) -> CrsRun {
    let status = reap(pid, CRS_TIMEOUT, &format!("crs {}", args.join(" ")));
    CrsRun {
        status,
        output: std::fs::read_to_string(out).unwrap_or_default(),
    }
}

/// A crs traced by this thread and stopped at the entry of one of its ptrace(2) calls:
/// everything crs holds stays held until [`HeldCrs::resume`].
struct HeldCrs {
    pid: i32,
    args: Vec<String>,
    out: PathBuf,
}

impl HeldCrs {
    /// Starts `crs ARGS` and runs it syscall by syscall until, at the entry of a ptrace(2)
    /// call, `held()` is true; leaves it stopped there. crs does all its ptrace work on its
    /// main thread, the only one traced here.
    fn start(
        args: &[&str],
        out: &Path,
        cleanup: &mut Cleanup,
        held: impl Fn(i32) -> bool,
    ) -> HeldCrs {
        // A shell that waits for a line before it becomes crs, so the trace starts before
        // crs runs one instruction.
        let out_file = File::create(out).expect("create crs output file");
        let mut child = Command::new("/bin/sh")
            .arg("-c")
            .arg("read _ && exec \"$0\" \"$@\"")
            .arg(crs_bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out_file.try_clone().expect("dup"))
            .stderr(out_file)
            .process_group(0)
            .spawn()
            .expect("spawn sh");
        let pid = child.id() as i32;
        let mut stdin = child.stdin.take().expect("stdin");
        drop(child);
        cleanup.add(pid);
        let me = HeldCrs {
            pid,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            out: out.to_owned(),
        };
        ptrace::seize(pid, ptrace::opt::TRACESYSGOOD | ptrace::opt::EXITKILL)
            .expect("PTRACE_SEIZE the shell");
        ptrace::interrupt(pid).expect("PTRACE_INTERRUPT");
        // A crs that never gets there is killed, so the wait below ends.
        let (cancel, expired) = std::sync::mpsc::channel::<()>();
        let _watchdog = Watchdog(Some(cancel));
        std::thread::spawn(move || {
            if expired.recv_timeout(CRS_TIMEOUT) == Err(RecvTimeoutError::Timeout) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        });
        let mut started = false;
        loop {
            let stop = ptrace::wait(pid).expect("wait for crs");
            let sig = match stop {
                Stop::Exited(_) | Stop::Signaled(_) => panic!(
                    "crs {} ended ({stop:?}, killed after {CRS_TIMEOUT:?} if SIGKILL) before \
                     it held what it should:\n{}",
                    args.join(" "),
                    std::fs::read_to_string(out).unwrap_or_default()
                ),
                Stop::Signal(sig) => sig,
                Stop::Syscall => {
                    let regs = ptrace::get_regs(pid).expect("PTRACE_GETREGS");
                    let entry = regs.rax as i64 == -i64::from(libc::ENOSYS);
                    if entry && regs.orig_rax as i64 == libc::SYS_ptrace && held(pid) {
                        return me;
                    }
                    0
                }
                Stop::EventStop(_) | Stop::Event(..) => 0,
            };
            ptrace::syscall(pid, sig).expect("PTRACE_SYSCALL");
            if !started {
                stdin.write_all(b"go\n").expect("start crs");
                started = true;
            }
        }
    }

    /// Lets crs go on, untraced, and waits for its end.
    fn resume(self) -> CrsRun {
        ptrace::detach(self.pid, 0).expect("PTRACE_DETACH crs");
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        finish_crs(self.pid, &args, &self.out)
    }
}

/// Cancels a timeout thread when dropped.
struct Watchdog(Option<std::sync::mpsc::Sender<()>>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(tx) = self.0.take() {
            let _ = tx.send(());
        }
    }
}

/// (pid, tid, status text) of every thread at or below `root`, zombies left out.
fn live_threads(root: i32) -> Vec<(i32, i32, String)> {
    let mut out = Vec::new();
    for pid in std::iter::once(root).chain(descendants(root)) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            if !matches!(
                field(&status, "State:").chars().next(),
                Some('Z' | 'X') | None
            ) {
                out.push((pid, tid, status));
            }
        }
    }
    out
}

fn field<'a>(status: &'a str, key: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .map_or("", str::trim)
}

/// Whether every live thread at or below `root` is in a tracing stop under `tracer`.
fn held_by(root: i32, tracer: i32) -> bool {
    let threads = live_threads(root);
    !threads.is_empty()
        && threads.iter().all(|(_, _, st)| {
            field(st, "TracerPid:") == tracer.to_string() && field(st, "State:").starts_with('t')
        })
}

/// Panics unless no thread at or below `root` is traced or in a tracing stop.
fn assert_runs_free(root: i32, when: &str) {
    for (pid, tid, st) in live_threads(root) {
        assert!(
            field(&st, "TracerPid:") == "0" && !field(&st, "State:").starts_with('t'),
            "{when}: thread {tid} of {pid} is still traced or stopped:\n{st}"
        );
    }
}

/// The processes of an image set, parents before children (pstree.img order).
fn dumped_pids(images: &Path) -> Vec<i32> {
    let bytes = std::fs::read(images.join("pstree.img")).expect("read pstree.img");
    let entries: Vec<Pstree_entry> = ImageReader::new("pstree.img", &bytes, "PSTREE")
        .and_then(|mut r| r.all())
        .expect("decode pstree.img");
    entries.iter().map(|e| e.pid() as i32).collect()
}

/// After a dump without -R: reaps every process of the set (each is the test's child once
/// its parent is gone), so their pids are free for the restore.
fn reap_dumped(images: &Path) {
    for pid in dumped_pids(images) {
        let st = reap(pid, Duration::from_secs(60), "a dumped process");
        assert!(
            matches!(
                st,
                WaitStatus::Signaled(_, Signal::SIGKILL, _) | WaitStatus::Exited(..)
            ),
            "dumped process {pid} ended with {st:?}"
        );
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "/proc/{pid} still there after reaping it"
        );
    }
}

fn restore_args<'a>(images: &'a str, pidfile: &'a str) -> Vec<&'a str> {
    vec![
        "restore",
        "-D",
        images,
        "-d",
        "-o",
        "restore.log",
        "-v4",
        "--pidfile",
        pidfile,
    ]
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn logs(images: &Path) -> String {
    let mut out = String::new();
    for name in ["dump.log", "restore.log"] {
        if let Ok(text) = std::fs::read_to_string(images.join(name)) {
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines.len().saturating_sub(60);
            out += &format!("----- {name} -----\n{}\n", lines[tail..].join("\n"));
        }
    }
    out
}

fn tempdir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("crs-conc-{name}-"))
        .tempdir()
        .expect("temp dir")
}

fn setup(test: &str) -> bool {
    if !crs_testkit::root_or_skip(test) {
        return false;
    }
    crs_bin();
    become_subreaper();
    true
}

/// Two trees dumped at once, then restored at once: every step succeeds and both restored
/// trees pass their own checks. Overlap is forced, not hoped for: the first crs is held at
/// a ptrace call while it holds its whole tree (resp. while it builds the restored tree),
/// and the second runs from start to end meanwhile.
#[test]
fn two_crs_on_two_trees_at_once_both_succeed() {
    if !setup("two_crs_on_two_trees_at_once_both_succeed") {
        return;
    }
    let tmp = tempdir("two");
    let mut cleanup = Cleanup::new();
    let a = Workload::start("tree", tmp.path(), &mut cleanup);
    let b = Workload::start("threads", tmp.path(), &mut cleanup);
    let (img_a, img_b) = (tmp.path().join("img-a"), tmp.path().join("img-b"));
    std::fs::create_dir(&img_a).expect("mkdir");
    std::fs::create_dir(&img_b).expect("mkdir");
    let (pa, pb) = (a.pid.to_string(), b.pid.to_string());
    let dump_a = ["dump", "-t", &pa, "-D", s(&img_a), "-o", "dump.log", "-v4"];
    let dump_b = ["dump", "-t", &pb, "-D", s(&img_b), "-o", "dump.log", "-v4"];

    let first = HeldCrs::start(
        &dump_a,
        &tmp.path().join("dump-a.out"),
        &mut cleanup,
        |crs| held_by(a.pid, crs),
    );
    let second = crs(&dump_b, &tmp.path().join("dump-b.out"), &mut cleanup);
    assert!(
        held_by(a.pid, first.pid),
        "tree A is no longer held by the first crs after the second dump"
    );
    let first = first.resume();
    assert!(
        second.ok(),
        "the second dump failed ({:?}):\n{}\n{}",
        second.status,
        second.output,
        logs(&img_b)
    );
    assert!(
        first.ok(),
        "the first dump failed ({:?}):\n{}\n{}",
        first.status,
        first.output,
        logs(&img_a)
    );
    for img in [&img_a, &img_b] {
        assert!(
            img.join("inventory.img").exists(),
            "{} incomplete",
            img.display()
        );
    }
    reap_dumped(&img_a);
    reap_dumped(&img_b);

    let (pf_a, pf_b) = (tmp.path().join("a.pid"), tmp.path().join("b.pid"));
    let restore_a = restore_args(s(&img_a), s(&pf_a));
    let restore_b = restore_args(s(&img_b), s(&pf_b));
    // The first restore is held at its first ptrace call: it has created tasks of tree A
    // and is building them.
    let first = HeldCrs::start(
        &restore_a,
        &tmp.path().join("restore-a.out"),
        &mut cleanup,
        |_| true,
    );
    let second = crs(&restore_b, &tmp.path().join("restore-b.out"), &mut cleanup);
    let first = first.resume();
    assert!(
        second.ok(),
        "the second restore failed ({:?}):\n{}\n{}",
        second.status,
        second.output,
        logs(&img_b)
    );
    assert!(
        first.ok(),
        "the first restore failed ({:?}):\n{}\n{}",
        first.status,
        first.output,
        logs(&img_a)
    );
    for (w, pf) in [(&a, &pf_a), (&b, &pf_b)] {
        let got = std::fs::read_to_string(pf).unwrap_or_default();
        assert_eq!(got.trim(), w.pid.to_string(), "pidfile of {}", w.name);
    }
    a.finish();
    b.finish();
}

/// A second crs on a tree the first crs holds: refused, naming the pid and the holder
/// (crs, its pid); nothing written; the tree still held by the first, whose dump then
/// completes and restores.
#[test]
fn second_crs_on_a_held_tree_is_refused_and_disturbs_nothing() {
    if !setup("second_crs_on_a_held_tree_is_refused_and_disturbs_nothing") {
        return;
    }
    let tmp = tempdir("held");
    let mut cleanup = Cleanup::new();
    let w = Workload::start("tree", tmp.path(), &mut cleanup);
    let (img1, img2) = (tmp.path().join("img1"), tmp.path().join("img2"));
    std::fs::create_dir(&img1).expect("mkdir");
    std::fs::create_dir(&img2).expect("mkdir");
    let pid = w.pid.to_string();
    let dump1 = ["dump", "-t", &pid, "-D", s(&img1), "-o", "dump.log", "-v4"];
    let first = HeldCrs::start(&dump1, &tmp.path().join("dump1.out"), &mut cleanup, |crs| {
        held_by(w.pid, crs)
    });
    let before: BTreeSet<i32> = live_threads(w.pid).iter().map(|t| t.1).collect();

    // Without -R: the second crs would kill the tree if it thought it held it.
    let second = crs(
        &["dump", "-t", &pid, "-D", s(&img2)],
        &tmp.path().join("dump2.out"),
        &mut cleanup,
    );
    assert!(
        matches!(second.status, WaitStatus::Exited(_, 1)),
        "the second dump ended with {:?}, want exit 1:\n{}",
        second.status,
        second.output
    );
    let want = format!(
        "process {} is already traced by crs (pid {})",
        w.pid, first.pid
    );
    assert!(
        second.output.contains(&want),
        "the second dump's error does not say {want:?}:\n{}",
        second.output
    );
    let left: Vec<_> = std::fs::read_dir(&img2)
        .expect("read img2")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the refused dump left {left:?}");
    assert!(
        held_by(w.pid, first.pid),
        "the tree is not held by the first crs any more after the refused dump"
    );
    let after: BTreeSet<i32> = live_threads(w.pid).iter().map(|t| t.1).collect();
    assert_eq!(
        before, after,
        "the tree's threads changed during the refused dump"
    );

    let first = first.resume();
    assert!(
        first.ok(),
        "the first dump failed ({:?}):\n{}\n{}",
        first.status,
        first.output,
        logs(&img1)
    );
    reap_dumped(&img1);
    let pidfile = tmp.path().join("restore.pid");
    let restored = crs(
        &restore_args(s(&img1), s(&pidfile)),
        &tmp.path().join("restore.out"),
        &mut cleanup,
    );
    assert!(
        restored.ok(),
        "restore failed ({:?}):\n{}\n{}",
        restored.status,
        restored.output,
        logs(&img1)
    );
    w.finish();
}

/// Two crs started at once on one tree, neither held: whichever seizes a thread first
/// keeps it, so each dump either succeeds or is refused because the other crs traces a
/// thread (both may be refused when they split the tree). The tree runs on and passes;
/// a successful set then restores and passes again.
#[test]
fn two_crs_racing_for_one_tree_succeed_or_are_refused_cleanly() {
    if !setup("two_crs_racing_for_one_tree_succeed_or_are_refused_cleanly") {
        return;
    }
    let tmp = tempdir("race");
    let mut cleanup = Cleanup::new();
    let w = Workload::start("tree", tmp.path(), &mut cleanup);
    let pid = w.pid.to_string();
    let imgs = [tmp.path().join("img1"), tmp.path().join("img2")];
    let mut crs_pids = Vec::new();
    for (i, img) in imgs.iter().enumerate() {
        std::fs::create_dir(img).expect("mkdir");
        let args = [
            "dump",
            "-t",
            &pid,
            "-D",
            s(img),
            "-R",
            "-o",
            "dump.log",
            "-v4",
        ];
        let child = crs_command(&args, &tmp.path().join(format!("dump{i}.out")))
            .spawn()
            .expect("spawn crs");
        crs_pids.push(child.id() as i32);
        cleanup.add(child.id() as i32);
        drop(child); // reaped by pid
    }
    let mut won = None;
    for (i, img) in imgs.iter().enumerate() {
        let out = tmp.path().join(format!("dump{i}.out"));
        let run = finish_crs(crs_pids[i], &["dump", "-R"], &out);
        if run.ok() {
            assert!(
                img.join("inventory.img").exists(),
                "{} incomplete",
                img.display()
            );
            won = Some(img.clone());
            continue;
        }
        let other = crs_pids[1 - i];
        assert!(
            matches!(run.status, WaitStatus::Exited(_, 1))
                && run.output.contains("is already traced by crs (pid ")
                && run.output.contains(&format!("(pid {other})")),
            "dump {i} was neither done nor refused for the other crs ({other}): {:?}\n{}\n{}",
            run.status,
            run.output,
            logs(img)
        );
        assert!(
            !img.join("inventory.img").exists(),
            "a refused dump left inventory.img"
        );
    }
    eprintln!(
        "race: {:?} won",
        won.as_ref().map(|p| p.display().to_string())
    );
    assert_runs_free(w.pid, "after both dumps");
    let log_len = std::fs::metadata(w.dir.join("workload.log")).map_or(0, |m| m.len());
    w.finish();
    let Some(img) = won else {
        return;
    };
    wait_pids_free(&dumped_pids(&img));
    truncate_log(&w, log_len);
    restore_and_finish(&w, &img, tmp.path(), "race", &mut cleanup);
}

/// Puts the workload's log back to `len` bytes, as an image set taken then recorded it
/// (the rest is kept in workload.log.before).
fn truncate_log(w: &Workload, len: u64) {
    let log = w.dir.join("workload.log");
    std::fs::copy(&log, w.dir.join("workload.log.before")).expect("copy the log");
    File::options()
        .write(true)
        .open(&log)
        .and_then(|f| f.set_len(len))
        .expect("truncate the log");
}

/// This thread as a debugger: PTRACE_SEIZE and stop each listed thread.
struct Debugger {
    tids: Vec<i32>,
}

impl Debugger {
    fn attach(tids: Vec<i32>) -> Debugger {
        let mut dbg = Debugger { tids: Vec::new() };
        for tid in tids {
            ptrace::seize(tid, 0).unwrap_or_else(|e| panic!("PTRACE_SEIZE {tid}: {e}"));
            dbg.tids.push(tid);
            ptrace::interrupt(tid).expect("PTRACE_INTERRUPT");
            match ptrace::wait(tid).expect("wait") {
                Stop::EventStop(_) => {}
                other => panic!("thread {tid} stopped with {other:?}"),
            }
        }
        dbg
    }
}

impl Drop for Debugger {
    fn drop(&mut self) {
        for &tid in &self.tids {
            let _ = ptrace::detach(tid, 0);
        }
    }
}

/// The name of process `pid` (/proc/PID/comm).
fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .expect("comm")
        .trim_end()
        .to_owned()
}

/// Runs `crs dump` (without -R) on a tree some threads of which this thread traces;
/// it must be refused naming `victim` and this process, leave nothing in the image
/// directory and change nothing in the tree; once the debugger lets go, the tree runs on
/// and passes its own checks.
fn refused_under_debugger(test: &str, traced: impl Fn(&Workload) -> Vec<(i32, i32)>) {
    if !setup(test) {
        return;
    }
    let tmp = tempdir("dbg");
    let mut cleanup = Cleanup::new();
    let w = Workload::start("tree", tmp.path(), &mut cleanup);
    let masks = cpu_masks(w.pid);
    let victims = traced(&w);
    let dbg = Debugger::attach(victims.iter().map(|v| v.1).collect());
    let me = nix::unistd::getpid().as_raw();
    let my_tid = nix::unistd::gettid().as_raw();
    let img = tmp.path().join("img");
    std::fs::create_dir(&img).expect("mkdir");
    let pid = w.pid.to_string();
    let out = crs(
        &["dump", "-t", &pid, "-D", s(&img)],
        &tmp.path().join("dump.out"),
        &mut cleanup,
    );
    assert!(
        matches!(out.status, WaitStatus::Exited(_, 1)),
        "dump ended with {:?}, want exit 1:\n{}",
        out.status,
        out.output
    );
    let (vpid, vtid) = victims[0];
    let who = if vpid == vtid {
        format!("process {vpid}")
    } else {
        format!("thread {vtid} of process {vpid}")
    };
    // TracerPid names the tracing thread: this one, maybe not the main thread.
    let thread = if my_tid == me {
        String::new()
    } else {
        format!(", thread {my_tid}")
    };
    let want = format!("{who} is already traced by {} (pid {me}{thread})", comm(me));
    assert!(
        out.output.contains(&want),
        "the dump's error does not say {want:?}:\n{}",
        out.output
    );
    let left: Vec<_> = std::fs::read_dir(&img)
        .expect("read img")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "the refused dump left {left:?}");
    // What the debugger holds is still held by it, nothing else is traced or stopped.
    let held: BTreeSet<i32> = victims.iter().map(|v| v.1).collect();
    for (pid, tid, st) in live_threads(w.pid) {
        let tracer = field(&st, "TracerPid:");
        if held.contains(&tid) {
            assert_eq!(tracer, my_tid.to_string(), "thread {tid} of {pid}:\n{st}");
            assert!(field(&st, "State:").starts_with('t'), "{tid}:\n{st}");
        } else {
            assert_eq!(tracer, "0", "thread {tid} of {pid} left traced:\n{st}");
            assert!(!field(&st, "State:").starts_with('t'), "{tid}:\n{st}");
        }
    }
    drop(dbg);
    assert_runs_free(w.pid, "after the debugger detached");
    assert_eq!(
        cpu_masks(w.pid),
        masks,
        "CPU masks changed by the refused dump"
    );
    w.finish();
}

/// The whole tree held by a debugger (this thread): the dump is refused at the root.
#[test]
fn dump_of_a_tree_a_debugger_holds_is_refused_and_disturbs_nothing() {
    refused_under_debugger(
        "dump_of_a_tree_a_debugger_holds_is_refused_and_disturbs_nothing",
        |w| {
            live_threads(w.pid)
                .into_iter()
                .map(|(p, t, _)| (p, t))
                .collect()
        },
    );
}

/// One process deep in the tree traced (strace -p CHILD): crs has seized the processes
/// above it when it meets it, and must let them go as it found them.
#[test]
fn dump_of_a_tree_with_one_traced_child_is_refused_and_releases_the_rest() {
    refused_under_debugger(
        "dump_of_a_tree_with_one_traced_child_is_refused_and_releases_the_rest",
        |w| {
            let deepest = live_threads(w.pid)
                .into_iter()
                .filter(|(p, _, _)| *p != w.pid)
                .max_by_key(|(p, _, _)| *p)
                .expect("the tree workload has children");
            vec![(deepest.0, deepest.1)]
        },
    );
}

/// How many `dump -R` rounds the storm gets before the final dump.
const STORM_ROUNDS: usize = 20;

/// What a dump of the storm came to; panics on anything but a clean success or a clean
/// refusal.
fn storm_dump(
    w: &Workload,
    img: &Path,
    leave_running: bool,
    out: &Path,
    cleanup: &mut Cleanup,
) -> bool {
    std::fs::create_dir(img).expect("mkdir");
    let pid = w.pid.to_string();
    let mut args = vec!["dump", "-t", &pid, "-D", s(img), "-o", "dump.log", "-v4"];
    if leave_running {
        args.push("-R");
    }
    let run = crs(&args, out, cleanup);
    if run.ok() {
        assert!(
            img.join("inventory.img").exists(),
            "dump succeeded without inventory.img:\n{}",
            run.output
        );
        return true;
    }
    // Refused: exit 1, and the only reason allowed is the one the storm gives: its shape
    // changed under the seize (said so, naming the process); no image set, and the tree
    // left running.
    assert!(
        matches!(run.status, WaitStatus::Exited(_, 1)),
        "dump of the storm ended with {:?}:\n{}\n{}",
        run.status,
        run.output,
        logs(img)
    );
    let err = run
        .output
        .lines()
        .find(|l| l.starts_with("crs: "))
        .unwrap_or_else(|| panic!("no `crs: ` error line:\n{}", run.output));
    assert!(
        err.contains("process ") && err.contains("the tree changed while it was being seized"),
        "a refusal that does not say the tree changed under the seize: {err}\n{}",
        logs(img)
    );
    assert!(
        !img.join("inventory.img").exists(),
        "a refused dump left inventory.img"
    );
    eprintln!("storm: dump refused: {err}");
    assert_runs_free(w.pid, "after a refused dump");
    false
}

/// A tree that forks, exits and execs as fast as it can: each dump either succeeds (and
/// a `-R` one leaves the tree running, untraced) or is refused with a clear error (tree
/// running, no image set). Then the storm is killed and the last `-R` image set restored:
/// the restored storm runs on (every loop progresses after SIGTERM) and passes; the same
/// for a final dump without -R, if it is not refused (a refused one leaves the storm to
/// pass on its own).
#[test]
fn storm_is_dumped_consistently_or_refused_cleanly() {
    if !setup("storm_is_dumped_consistently_or_refused_cleanly") {
        return;
    }
    let tmp = tempdir("storm");
    let mut cleanup = Cleanup::new();
    let w = Workload::start("storm", tmp.path(), &mut cleanup);
    let mut last_ok = None;
    let mut done = 0;
    for round in 0..STORM_ROUNDS {
        let img = tmp.path().join(format!("img-r{round}"));
        let out = tmp.path().join(format!("dump-r{round}.out"));
        if storm_dump(&w, &img, true, &out, &mut cleanup) {
            done += 1;
            assert_runs_free(w.pid, "after dump -R");
            // The set records the size of the workload's log, which grows when it ends.
            let log_len = std::fs::metadata(w.dir.join("workload.log")).map_or(0, |m| m.len());
            last_ok = Some((img, log_len));
        }
    }
    eprintln!("storm: {done} of {STORM_ROUNDS} dumps -R succeeded");

    // The final dump kills the storm if it succeeds.
    let img = tmp.path().join("img-final");
    let killed = storm_dump(
        &w,
        &img,
        false,
        &tmp.path().join("dump-final.out"),
        &mut cleanup,
    );
    if !killed {
        // Refused: the storm was left running; it must pass as it is, then the last -R set
        // is restored below.
        w.finish();
    } else {
        reap_dumped(&img);
        restore_and_finish(&w, &img, tmp.path(), "final", &mut cleanup);
    }
    let Some((prev, log_len)) = last_ok else {
        return;
    };
    // The storm (original or restored) ended with its verdict; anything of it still about
    // is killed, and every pid of the -R set must be free before that set is restored.
    let _ = killpg(Pid::from_raw(w.pid), Signal::SIGKILL);
    wait_pids_free(&dumped_pids(&prev));
    truncate_log(&w, log_len);
    restore_and_finish(&w, &prev, tmp.path(), "r", &mut cleanup);
}

/// Waits until none of `pids` exists, reaping each that is (or becomes) the test's child.
/// Polled with a deadline: a process reparented to the test is reaped at once, but one
/// whose parent is still dying has no event to wait on.
fn wait_pids_free(pids: &[i32]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    for &pid in pids {
        while Path::new(&format!("/proc/{pid}")).exists() {
            let flags = WaitPidFlag::__WALL | WaitPidFlag::WNOHANG;
            let _ = waitpid(Pid::from_raw(pid), Some(flags));
            assert!(
                Instant::now() < deadline,
                "pid {pid} still taken after 60 s"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn restore_and_finish(w: &Workload, img: &Path, tmp: &Path, tag: &str, cleanup: &mut Cleanup) {
    let pidfile = tmp.join(format!("restore-{tag}.pid"));
    let run = crs(
        &restore_args(s(img), s(&pidfile)),
        &tmp.join(format!("restore-{tag}.out")),
        cleanup,
    );
    assert!(
        run.ok(),
        "restore of {} failed ({:?}):\n{}\n{}",
        img.display(),
        run.status,
        run.output,
        logs(img)
    );
    w.finish();
}
