//! `--inherit-fd fd[N]:KEY`: a shell whose stdin and stdout are pipes to the test is
//! dumped; the restore is given new pipes in their place, as runc gives a restored
//! container new stdio, and the shell answers through them.

use std::io::{BufRead, Write};
use std::process::Command;

use crs_tests::process::{skip_unless_root, KillOnDrop, ProcessGuard};

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
    let keys = crs_tests::stdio_pipe_keys(pid);
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().to_str().unwrap().to_owned();
    crs_tests::crs_ok(&["dump", "--shell-job", "-t", &pid.to_string(), "-D", &images]);
    // The dumped shell is gone: its pid is free again once reaped.
    g.wait().unwrap();
    // It is this subreaper's child once `crs restore -d` exits.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let (mut to_shell, mut from_shell) = crs_tests::restore_with_new_stdio(&images, &keys);
    let _kill = KillOnDrop(pid);
    writeln!(to_shell, "after").unwrap();
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
