//! Helper for the compel tests: seizes the tree at the pid given as argument, injects
//! syscalls into every thread (leaving a scratch mapping in each process), prints `held`,
//! and waits on stdin for ever, so a test can SIGKILL it while it holds the tree.
#![forbid(unsafe_code)]

use std::io::{self, Read, Write};

use crs_compel::{SeizeOptions, SeizedTree};

fn main() {
    let root: i32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .expect("usage: compel_holder PID");
    let mut tree = SeizedTree::seize(root, &SeizeOptions::default()).expect("seize");
    let tids: Vec<i32> = tree.tids().collect();
    for tid in tids {
        let ret = tree.syscall(tid, libc::SYS_getpid, [0; 6]).expect("getpid");
        assert_eq!(ret, i64::from(tree.pid_of(tid).expect("pid_of")));
    }
    let pids: Vec<i32> = tree.processes().map(|p| p.pid()).collect();
    for pid in pids {
        tree.scratch(pid).expect("scratch");
    }
    println!("held {}", tree.thread_count());
    io::stdout().flush().expect("stdout");
    let mut buf = Vec::new();
    let _ = io::stdin().read_to_end(&mut buf);
    drop(tree);
}
