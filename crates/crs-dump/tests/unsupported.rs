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
