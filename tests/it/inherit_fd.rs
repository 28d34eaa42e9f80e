//! `--inherit-fd fd[N]:KEY`: a shell whose stdin and stdout are pipes to the test is
//! dumped; the restore is given new pipes in their place, as runc gives a restored
//! container new stdio, and the shell answers through them.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crs_tests::process::{skip_unless_root, KillOnDrop, ProcessGuard};

/// The pipe inode `/proc/PID/fd/FD` names (`pipe:[INO]`).
fn pipe_key(pid: i32, fd: i32) -> String {
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
    let key = link.to_string_lossy().into_owned();
    assert!(key.starts_with("pipe:["), "{key}");
    key
}

#[test]
fn inherit_fd_gives_a_restored_shell_new_stdio_pipes() {
    let test = "inherit_fd_gives_a_restored_shell_new_stdio_pipes";
    if skip_unless_root(test) {
        return;
    }
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "echo ready; while read x; do echo \"got $x\"; done"]);
    let mut g = ProcessGuard::spawn(cmd).expect("spawn sh");
    g.expect_line("ready");
    let pid = g.pid();
    let (stdin_key, stdout_key) = (pipe_key(pid, 0), pipe_key(pid, 1));
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().to_str().unwrap().to_owned();
    let out = Command::new(crs_tests::crs_bin())
        .args(["dump", "--shell-job", "-t", &pid.to_string(), "-D", &images])
        .output()
        .expect("run crs dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The dumped shell is gone: its pid is free again once reaped.
    g.wait().unwrap();

    // New pipes: crs gets the shell's ends as its own stdin (fd 0) and stdout (fd 1).
    let (in_r, in_w) = nix::unistd::pipe().unwrap();
    let (out_r, out_w) = nix::unistd::pipe().unwrap();
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let restore = Command::new(crs_tests::crs_bin())
        .args(["restore", "--shell-job", "-d", "-D", &images])
        .arg(format!("--inherit-fd=fd[0]:{stdin_key}"))
        .arg(format!("--inherit-fd=fd[1]:{stdout_key}"))
        .stdin(Stdio::from(in_r))
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::piped())
        .output()
        .expect("run crs restore");
    let _kill = KillOnDrop(pid);
    assert!(
        restore.status.success(),
        "{}",
        String::from_utf8_lossy(&restore.stderr)
    );
    let mut to_shell = std::fs::File::from(in_w);
    writeln!(to_shell, "after").unwrap();
    let mut from_shell = BufReader::new(std::fs::File::from(out_r));
    let mut line = String::new();
    from_shell.read_line(&mut line).unwrap();
    assert_eq!(line, "got after\n");
    // EOF on its new stdin ends the shell's loop: it exits 0.
    drop(to_shell);
    let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    assert_eq!(
        st,
        nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0)
    );
}
