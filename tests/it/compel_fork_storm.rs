//! Seizing a tree that forks and spawns threads in a tight loop terminates, and every live
//! task of the tree is held when seize returns.

use std::collections::{HashSet, VecDeque};
use std::fs;
use std::process::Command;

use crs_compel::{Release, SeizeOptions, SeizedTree};
use crs_tests::process::{skip_unless_root, ProcessGuard};

const ROUNDS: usize = 200;

fn field(status: &str, key: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_owned()))
}

/// Every task reachable from `root` through /proc that is not a zombie, as (pid, tid).
fn live_tasks(root: i32) -> Vec<(i32, i32, String)> {
    let mut out = Vec::new();
    let mut todo = VecDeque::from([root]);
    let mut seen = HashSet::new();
    while let Some(pid) = todo.pop_front() {
        if !seen.insert(pid) {
            continue;
        }
        let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for ent in dir {
            let tid: i32 = ent.unwrap().file_name().to_str().unwrap().parse().unwrap();
            if let Ok(kids) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/children")) {
                todo.extend(kids.split_whitespace().map(|k| k.parse::<i32>().unwrap()));
            }
            let Ok(status) = fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")) else {
                continue;
            };
            let state = field(&status, "State:").unwrap_or_default();
            if !state.starts_with('Z') && !state.starts_with('X') {
                out.push((pid, tid, status));
            }
        }
    }
    out
}

#[test]
fn compel_fork_storm_seize_terminates_and_holds_every_task() {
    if skip_unless_root("compel_fork_storm_seize_terminates_and_holds_every_task") {
        return;
    }
    let mut wl =
        ProcessGuard::spawn(Command::new(env!("CARGO_BIN_EXE_compel_forker"))).expect("spawn");
    wl.expect_line("ready");
    // TracerPid names the tracing thread, which is this test thread.
    let me = nix::unistd::gettid().to_string();
    let mut max_procs = 0;
    for round in 0..ROUNDS {
        let mut tree = SeizedTree::seize(wl.pid(), &SeizeOptions::default())
            .unwrap_or_else(|e| panic!("seize #{round}: {e}"));
        let held: HashSet<i32> = tree.tids().collect();
        max_procs = max_procs.max(tree.processes().count());
        for (pid, tid, status) in live_tasks(wl.pid()) {
            assert!(
                held.contains(&tid),
                "round {round}: task {tid} of {pid} not held:\n{status}"
            );
            assert_eq!(field(&status, "TracerPid:").as_deref(), Some(me.as_str()));
            assert!(
                field(&status, "State:").unwrap().starts_with('t'),
                "{tid} not in tracing stop"
            );
        }
        let pids: Vec<i32> = tree.processes().map(|p| p.pid()).collect();
        for pid in pids {
            let tid = tree.process(pid).unwrap().threads()[0].tid();
            let got = tree.syscall(tid, libc::SYS_getpid, [0; 6]).expect("getpid");
            assert_eq!(got, i64::from(pid));
        }
        tree.release(Release::Detach)
            .unwrap_or_else(|e| panic!("release #{round}: {e}"));
    }
    eprintln!("compel_fork_storm: up to {max_procs} processes held at once");
    wl.send_line("stop").expect("stop");
    let st = wl.wait().expect("wait");
    assert!(st.success(), "workload verdict: {st}");
}
