//! Batches of injected syscalls in a real process (`sleep`), seized by the test.

use std::process::{Child, Command, Stdio};

use crs_compel::{Arch, Call, Host, Release, SeizeOptions, SeizedTree};

/// Kills and reaps the child even when the test panics.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sleeper() -> Guard {
    let child = Command::new("sleep")
        .arg("100")
        .stdin(Stdio::null())
        .spawn()
        .expect("spawning sleep");
    Guard(child)
}

/// Waits until the child has exec'ed `sleep` (its comm changed), without sleeping.
fn wait_exec(pid: i32) {
    loop {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "sleep" {
            return;
        }
        std::thread::yield_now();
    }
}

#[test]
fn syscalls_all_succeed_results_in_order_and_regs_put_back() {
    let g = sleeper();
    let pid = g.0.id() as i32;
    wait_exec(pid);
    let mut tree = SeizedTree::seize(pid, &SeizeOptions::default()).unwrap();
    tree.scratch(pid).unwrap();
    assert!(tree.batch_site(pid).is_some());
    let before = Host::get_regs(pid).unwrap();
    let mask = crs_sys::ptrace::get_sigmask(pid).unwrap();
    let calls: Vec<Call> = (0..300)
        .map(|i| {
            if i % 2 == 0 {
                Call::new(libc::SYS_getpid, [0; 6])
            } else {
                Call::new(libc::SYS_getppid, [0; 6])
            }
        })
        .collect();
    let got = tree.syscalls(pid, &calls).unwrap();
    let ppid = std::process::id() as i64;
    assert_eq!(got.len(), 300);
    assert!(got
        .iter()
        .enumerate()
        .all(|(i, &r)| r == if i % 2 == 0 { pid as i64 } else { ppid }));
    let after = Host::get_regs(pid).unwrap();
    assert_eq!(format!("{before:?}"), format!("{after:?}"));
    assert_eq!(crs_sys::ptrace::get_sigmask(pid).unwrap(), mask);
    // A single injection still works after a batch.
    assert_eq!(
        tree.syscall(pid, libc::SYS_getpid, [0; 6]).unwrap(),
        pid as i64
    );
    tree.release(Release::Kill).unwrap();
}

#[test]
fn syscalls_failing_call_stops_the_batch_there() {
    let g = sleeper();
    let pid = g.0.id() as i32;
    wait_exec(pid);
    let mut tree = SeizedTree::seize(pid, &SeizeOptions::default()).unwrap();
    tree.scratch(pid).unwrap();
    let calls = [
        Call::new(libc::SYS_getpid, [0; 6]),
        Call::new(libc::SYS_close, [u64::MAX, 0, 0, 0, 0, 0]),
        Call::new(libc::SYS_getpid, [0; 6]),
    ];
    let got = tree.syscalls(pid, &calls).unwrap();
    assert_eq!(got, vec![pid as i64, -(libc::EBADF as i64)]);
    tree.release(Release::Kill).unwrap();
}

#[test]
fn syscalls_pending_sigtrap_stays_queued() {
    let g = sleeper();
    let pid = g.0.id() as i32;
    wait_exec(pid);
    let mut tree = SeizedTree::seize(pid, &SeizeOptions::default()).unwrap();
    tree.scratch(pid).unwrap();
    // Blocked in the task while held; queued for its thread.
    let mut mask = tree.thread(pid).unwrap().sigmask();
    mask |= 1 << (libc::SIGTRAP - 1);
    tree.set_sigmask(pid, mask).unwrap();
    crs_sys::ptrace::tgkill(pid, pid, libc::SIGTRAP).unwrap();
    let got = tree
        .syscalls(pid, &[Call::new(libc::SYS_getpid, [0; 6])])
        .unwrap();
    assert_eq!(got, vec![pid as i64]);
    let pending = crs_sys::ptrace::all_pending(pid, false).unwrap();
    assert_eq!(
        pending.iter().map(|s| s.si_signo).collect::<Vec<_>>(),
        vec![libc::SIGTRAP]
    );
    tree.release(Release::Kill).unwrap();
}

#[test]
fn syscalls_same_signal_from_elsewhere_is_queued_again() {
    let g = sleeper();
    let pid = g.0.id() as i32;
    wait_exec(pid);
    let mut tree = SeizedTree::seize(pid, &SeizeOptions::default()).unwrap();
    tree.scratch(pid).unwrap();
    // The batch stops itself with SIGURG (nothing queued, not caught: ignored by default);
    // a kill() in it sends one more (SI_USER), which the thread takes mid-batch.
    let calls = [
        Call::new(
            libc::SYS_kill,
            [pid as u64, libc::SIGURG as u64, 0, 0, 0, 0],
        ),
        Call::new(libc::SYS_getpid, [0; 6]),
        Call::new(libc::SYS_getppid, [0; 6]),
        Call::new(libc::SYS_getpid, [0; 6]),
        Call::new(libc::SYS_getppid, [0; 6]),
    ];
    let got = tree.syscalls(pid, &calls).unwrap();
    let ppid = std::process::id() as i64;
    assert_eq!(got, vec![0, pid as i64, ppid, pid as i64, ppid]);
    let pending = crs_sys::ptrace::all_pending(pid, false).unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|s| (s.si_signo, s.si_code))
            .collect::<Vec<_>>(),
        vec![(libc::SIGURG, 0)]
    );
    tree.release(Release::Kill).unwrap();
}

/// A process in a pid namespace below crs's: the batch signals itself with the ids its own
/// namespace gives it (a tgkill with crs's ids would reach no thread there, or another).
#[test]
fn syscalls_in_a_pid_namespace_stop_at_their_own_signal() {
    let test = "syscalls_in_a_pid_namespace_stop_at_their_own_signal";
    if !crs_testkit::root_or_skip(test) {
        return;
    }
    // unshare forks the namespace's init, which execs sleep.
    let g = Guard(
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "sleep", "100"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning unshare"),
    );
    let outer = g.0.id() as i32;
    let pid = loop {
        let kids = std::fs::read_to_string(format!("/proc/{outer}/task/{outer}/children"))
            .unwrap_or_default();
        if let Some(k) = kids.split_whitespace().next() {
            break k.parse::<i32>().unwrap();
        }
        std::thread::yield_now();
    };
    wait_exec(pid);
    let mut tree = SeizedTree::seize(pid, &SeizeOptions::default()).unwrap();
    tree.scratch(pid).unwrap();
    assert!(tree.batch_site(pid).is_some());
    let calls = vec![Call::new(libc::SYS_getpid, [0; 6]); 3];
    let got = tree.syscalls(pid, &calls).unwrap();
    // The namespace's init: pid 1 inside.
    assert_eq!(got, vec![1, 1, 1]);
    tree.release(Release::Detach).unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .unwrap()
            .trim(),
        "sleep"
    );
}
