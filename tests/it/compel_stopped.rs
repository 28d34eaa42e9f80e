//! A process stopped by SIGSTOP before it is seized is still stopped after release.

use std::fs;
use std::process::Command;
use std::time::{Duration, Instant};

use crs_compel::{Release, SeizeOptions, SeizedTree};
use crs_tests::process::{skip_unless_root, ProcessGuard};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

fn thread_states(pid: i32) -> Vec<char> {
    let mut out = Vec::new();
    for ent in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let tid = ent.unwrap().file_name().into_string().unwrap();
        let stat = fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat")).unwrap();
        let (_, rest) = stat.rsplit_once(") ").unwrap();
        out.push(rest.chars().next().unwrap());
    }
    out
}

#[test]
fn compel_stopped_task_stays_stopped_after_release() {
    if skip_unless_root("compel_stopped_task_stays_stopped_after_release") {
        return;
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_compel_tree"));
    // Its sleeps are stopped for the length of the test: do not call them late.
    cmd.args(["--children", "0", "--max-late-ms", "600000"]);
    let mut wl = ProcessGuard::spawn(cmd).expect("spawn");
    wl.expect_line("ready");
    let pid = Pid::from_raw(wl.pid());

    kill(pid, Signal::SIGSTOP).expect("SIGSTOP");
    // The parent is told once the whole group has stopped.
    match waitpid(pid, Some(WaitPidFlag::WUNTRACED)).expect("waitpid") {
        WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
        other => panic!("unexpected {other:?}"),
    }
    assert!(thread_states(wl.pid()).iter().all(|&s| s == 'T'));

    let mut tree = SeizedTree::seize(wl.pid(), &SeizeOptions::default()).expect("seize");
    assert_eq!(tree.thread_count(), 8);
    let tids: Vec<i32> = tree.tids().collect();
    for &tid in &tids {
        assert!(
            tree.thread(tid).unwrap().was_stopped(),
            "thread {tid} not seen stopped"
        );
        assert_eq!(
            tree.syscall(tid, libc::SYS_getpid, [0; 6]).expect("getpid"),
            i64::from(wl.pid())
        );
    }
    tree.scratch(wl.pid()).expect("scratch");
    tree.release(Release::Detach).expect("release");

    // Detaching puts each thread back into the group-stop; that is a kernel transition
    // with no notification to wait on, so watch /proc for it (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let states = thread_states(wl.pid());
        if states.iter().all(|&s| s == 'T') {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not stopped after release: {states:?}"
        );
        std::thread::yield_now();
    }

    kill(pid, Signal::SIGCONT).expect("SIGCONT");
    wl.send_line("stop").expect("stop");
    let st = wl.wait().expect("wait");
    assert!(st.success(), "workload verdict: {st}");
}
