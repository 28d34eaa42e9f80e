//! `--inherit-fd fd[N]:KEY`: a shell whose stdin and stdout are pipes to the test is
//! dumped; the restore is given new pipes in their place, as runc gives a restored
//! container new stdio, and the shell answers through them. Also when crs runs in a pid
//! namespace that the shell's session leader is outside of (as in a CI container): the
//! session is 0 there.

use std::io::{BufRead, Write};
use std::process::Command;

use crs_tests::process::{skip_unless_root, KillOnDrop, ProcessGuard};

#[test]
fn inherit_fd_gives_a_restored_shell_new_stdio_pipes() {
    let test = "inherit_fd_gives_a_restored_shell_new_stdio_pipes";
    if skip_unless_root(test) {
        return;
    }
    let mut g = crs_tests::answering_shell(&[]);
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

/// The NSpid line of host process `pid`: its pid at each level, the innermost last.
fn ns_pids(pid: i32) -> Vec<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("NSpid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect()
}

#[test]
fn shell_job_whose_session_leader_crs_cannot_see_dumps_and_restores() {
    let test = "shell_job_whose_session_leader_crs_cannot_see_dumps_and_restores";
    if skip_unless_root(test) {
        return;
    }
    // A pid namespace for crs and the shell; its init (a shell waiting on its stdin) is
    // what nsenter enters, and killing it ends everything inside.
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--pid",
        "--fork",
        "--mount-proc",
        "sh",
        "-c",
        "echo ready; exec cat",
    ]);
    let mut holder = ProcessGuard::spawn(cmd).expect("spawn unshare");
    holder.expect_line("ready");
    let init = crs_tests::descendants(holder.pid())[0];
    let _init = KillOnDrop(init);
    let t = init.to_string();
    let via = ["nsenter", "-t", &t, "-p", "-m", "--"];
    // The shell is in the test's session, whose leader is outside the namespace.
    let mut g = crs_tests::answering_shell(&via);
    let host = crs_tests::descendants(g.pid())[0];
    let inner = *ns_pids(host).last().unwrap();
    let sid = std::fs::read_to_string(format!("/proc/{init}/root/proc/{inner}/stat")).unwrap();
    let sid: i32 = sid
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(4)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(sid, 0, "the shell's session as its namespace sees it");
    let keys = crs_tests::stdio_pipe_keys(host);
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().to_str().unwrap().to_owned();
    let out = Command::new(via[0])
        .args(&via[1..])
        .arg(crs_tests::crs_bin())
        .args([
            "dump",
            "--shell-job",
            "-t",
            &inner.to_string(),
            "-D",
            &images,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crs dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // nsenter exits once the dumped shell is gone.
    g.wait().unwrap();
    let (mut to_shell, mut from_shell) =
        crs_tests::restore_with_new_stdio_via(&via, &[], &images, &keys);
    writeln!(to_shell, "after").unwrap();
    let mut line = String::new();
    from_shell.read_line(&mut line).unwrap();
    assert_eq!(line, "got after\n");
    // Its new stdin at EOF, the shell exits: its stdout closes.
    drop(to_shell);
    line.clear();
    assert_eq!(from_shell.read_line(&mut line).unwrap(), 0);
}
