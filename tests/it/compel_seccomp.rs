//! Injected syscalls bypass the task's seccomp filters with PTRACE_O_SUSPEND_SECCOMP, hit
//! them without it, and the filters are read back and left in force.

use std::process::Command;

use crs_compel::{Release, SeizeOptions, SeizedTree};
use crs_tests::process::{skip_unless_root, ProcessGuard};

#[test]
fn compel_seccomp_suspended_filter_is_bypassed_and_kept() {
    if skip_unless_root("compel_seccomp_suspended_filter_is_bypassed_and_kept") {
        return;
    }
    let mut wl =
        ProcessGuard::spawn(Command::new(env!("CARGO_BIN_EXE_compel_seccomp"))).expect("spawn");
    wl.expect_line("ready");
    let me = i64::from(std::process::id());

    let mut tree = SeizedTree::seize(wl.pid(), &SeizeOptions::default()).expect("seize");
    let tids: Vec<i32> = tree.tids().collect();
    assert_eq!(tids.len(), 2);
    for &tid in &tids {
        assert_eq!(
            tree.syscall(tid, libc::SYS_getppid, [0; 6])
                .expect("getppid"),
            me
        );
        let st = tree.thread_state(tid).expect("state");
        assert_eq!(st.seccomp_mode, 2);
        assert_eq!(st.seccomp_filters.len(), 1);
        assert_eq!(st.seccomp_filters[0].program.len(), 7);
    }
    tree.release(Release::Detach).expect("release");

    let opts = SeizeOptions {
        suspend_seccomp: false,
        ..SeizeOptions::default()
    };
    let mut tree = SeizedTree::seize(wl.pid(), &opts).expect("seize without suspend");
    for &tid in &tids {
        let ret = tree
            .syscall(tid, libc::SYS_getppid, [0; 6])
            .expect("getppid");
        assert_eq!(ret, -i64::from(libc::EPERM));
    }
    tree.release(Release::Detach).expect("release");

    wl.send_line("stop").expect("stop");
    let st = wl.wait().expect("wait");
    assert!(st.success(), "workload verdict: {st}");
}
