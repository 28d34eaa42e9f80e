//! Killing the process that holds a tree (SIGKILL, no cleanup) leaves the tree running and
//! unharmed: the kernel detaches every thread and compel left nothing behind that breaks it.

use std::fs;
use std::process::Command;

use crs_tests::process::{skip_unless_root, ProcessGuard};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[test]
fn compel_holder_killed_tree_keeps_running() {
    if skip_unless_root("compel_holder_killed_tree_keeps_running") {
        return;
    }
    let mut wl =
        ProcessGuard::spawn(Command::new(env!("CARGO_BIN_EXE_compel_tree"))).expect("spawn");
    wl.expect_line("ready");

    let mut cmd = Command::new(env!("CARGO_BIN_EXE_compel_holder"));
    cmd.arg(wl.pid().to_string());
    let mut holder = ProcessGuard::spawn(cmd).expect("spawn holder");
    assert_eq!(holder.read_line().expect("holder output"), "held 24");

    kill(Pid::from_raw(holder.pid()), Signal::SIGKILL).expect("kill holder");
    let st = holder.wait().expect("wait holder");
    assert!(!st.success());

    // The tracer is gone and reaped: no thread of the tree is traced any more.
    for line in fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
        let Ok(pid) = line.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        assert!(
            !status.contains(&format!("TracerPid:\t{}\n", holder.pid())),
            "process {pid} still traced by the dead holder"
        );
    }

    wl.send_line("stop").expect("stop");
    let st = wl.wait().expect("wait");
    assert!(st.success(), "workload verdict: {st}");
}
