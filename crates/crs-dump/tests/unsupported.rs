//! An fd kind crs cannot dump fails the dump with an error naming the pid, the fd and the
//! kind, writes no images, and leaves the process running untouched.

mod common;

use std::io::BufReader;
use std::process::{Command, Stdio};

use common::{read_line, root_or_skip, Guard};
use crs_dump::{dump, DumpError, DumpOptions};

/// Opens a POSIX message queue (unlinked at once: nothing is left on the host), reports
/// its fd, then answers one line per line it reads.
const WORKLOAD: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mq_open.restype = ctypes.c_int
name = b"/crs-test-mq-%d" % os.getpid()
fd = libc.mq_open(name, os.O_CREAT | os.O_RDWR, 0o600, None)
assert fd >= 0, ctypes.get_errno()
libc.mq_unlink(name)
print(fd, flush=True)
for line in sys.stdin:
    print("echo " + line.strip(), flush=True)
"#;

#[test]
fn dump_of_posix_message_queue_fails_naming_the_fd() {
    if !root_or_skip("dump_of_posix_message_queue_fails_naming_the_fd") {
        return;
    }
    let mut g = Guard::spawn(
        Command::new("/usr/bin/setsid")
            .arg("/usr/bin/python3")
            .arg("-c")
            .arg(WORKLOAD)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut out = BufReader::new(g.child.stdout.take().unwrap());
    let fd: i32 = read_line(&mut out).trim().parse().unwrap();
    let pid = g.pid();
    let images = tempfile::tempdir().unwrap();
    let err = dump(&DumpOptions::new(pid, images.path())).unwrap_err();
    match &err {
        DumpError::UnsupportedFd {
            pid: p, fd: f, why, ..
        } => {
            assert_eq!((*p, *f), (pid, fd), "{err}");
            assert!(why.contains("message queue"), "{err}");
        }
        _ => panic!("{err:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&pid.to_string()) && msg.contains(&format!("fd {fd}")),
        "{msg}"
    );
    assert_eq!(std::fs::read_dir(images.path()).unwrap().count(), 0);
    // Still running and answering, not traced.
    use std::io::Write;
    let mut stdin = g.child.stdin.take().unwrap();
    writeln!(stdin, "after").unwrap();
    assert_eq!(read_line(&mut out).trim(), "echo after");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("TracerPid:\t0"), "{status}");
}

/// Opens a pidfd (of the pid in argv[1], or with argv[1] `thread` of a second thread of its
/// own with PIDFD_THREAD), reports "FD TARGET", then answers one line per line it reads.
const PIDFD_WORKLOAD: &str = r#"
import os, sys, threading
if sys.argv[1] == "thread":
    started = threading.Event()
    tid = []
    def run():
        tid.append(threading.get_native_id())
        started.set()
        threading.Event().wait()
    threading.Thread(target=run, daemon=True).start()
    started.wait()
    target = tid[0]
    fd = os.pidfd_open(target, os.O_EXCL)  # PIDFD_THREAD
else:
    target = int(sys.argv[1])
    fd = os.pidfd_open(target)
print(fd, target, flush=True)
for line in sys.stdin:
    print("echo " + line.strip(), flush=True)
"#;

/// Starts the pidfd workload with `arg`; returns its guard, stdout, fd and target.
fn start_pidfd_workload(arg: &str) -> (Guard, BufReader<std::process::ChildStdout>, i32, i32) {
    let mut g = Guard::spawn(
        Command::new("/usr/bin/setsid")
            .arg("/usr/bin/python3")
            .arg("-c")
            .arg(PIDFD_WORKLOAD)
            .arg(arg)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let mut out = BufReader::new(g.child.stdout.take().unwrap());
    let line = read_line(&mut out);
    let mut words = line.split_whitespace().map(|w| w.parse::<i32>().unwrap());
    let (fd, target) = (words.next().unwrap(), words.next().unwrap());
    (g, out, fd, target)
}

/// After a refused dump: no images, and the workload runs on untraced and answers.
fn still_running_untouched(
    g: &mut Guard,
    out: &mut BufReader<std::process::ChildStdout>,
    images: &std::path::Path,
) {
    use std::io::Write;
    assert_eq!(std::fs::read_dir(images).unwrap().count(), 0);
    let mut stdin = g.child.stdin.take().unwrap();
    writeln!(stdin, "after").unwrap();
    assert_eq!(read_line(out).trim(), "echo after");
    let status = std::fs::read_to_string(format!("/proc/{}/status", g.pid())).unwrap();
    assert!(status.contains("TracerPid:\t0"), "{status}");
}

#[test]
fn dump_of_pidfd_of_process_outside_the_tree_fails_naming_the_pid() {
    if !root_or_skip("dump_of_pidfd_of_process_outside_the_tree_fails_naming_the_pid") {
        return;
    }
    // A pidfd of this test process: alive, and not below the dumped root.
    let me = std::process::id() as i32;
    let (mut g, mut out, fd, target) = start_pidfd_workload(&me.to_string());
    assert_eq!(target, me);
    let pid = g.pid();
    let images = tempfile::tempdir().unwrap();
    let err = dump(&DumpOptions::new(pid, images.path())).unwrap_err();
    match &err {
        DumpError::PidfdOutsideTree {
            pid: p,
            fd: f,
            target: t,
        } => assert_eq!((*p, *f, *t), (pid, fd, me), "{err}"),
        _ => panic!("{err:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "fd {fd} of process {pid} is a pidfd of process {me},"
        )),
        "{msg}"
    );
    still_running_untouched(&mut g, &mut out, images.path());
}

#[test]
fn dump_of_pidfd_of_a_non_leader_thread_fails_naming_the_thread() {
    if !root_or_skip("dump_of_pidfd_of_a_non_leader_thread_fails_naming_the_thread") {
        return;
    }
    let (mut g, mut out, fd, tid) = start_pidfd_workload("thread");
    let pid = g.pid();
    assert_ne!(tid, pid);
    let images = tempfile::tempdir().unwrap();
    let err = dump(&DumpOptions::new(pid, images.path())).unwrap_err();
    match &err {
        DumpError::PidfdOfThread {
            pid: p,
            fd: f,
            tid: t,
            leader,
        } => assert_eq!((*p, *f, *t, *leader), (pid, fd, tid, pid), "{err}"),
        _ => panic!("{err:?}"),
    }
    assert!(err.to_string().contains("PIDFD_THREAD"), "{err}");
    still_running_untouched(&mut g, &mut out, images.path());
}
