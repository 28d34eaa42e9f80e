//! Scheduling of another task: policy, real-time priority and nice value, set from crs
//! (CAP_SYS_NICE) on a thread of a task being restored.

use std::io;

/// `sched_setscheduler(tid, policy, {prio})`; `policy` may carry SCHED_RESET_ON_FORK.
pub fn set_scheduler(tid: i32, policy: i32, prio: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: `param` is a plain struct that lives across the call; the kernel only
    // reads it.
    if unsafe { libc::sched_setscheduler(tid, policy, &param) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `setpriority(PRIO_PROCESS, tid, nice)`: the nice value of one thread.
pub fn set_nice(tid: i32, nice: i32) -> io::Result<()> {
    // SAFETY: integers only.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_nice_and_batch_policy_on_a_child_thread_read_back() {
        let mut child = std::process::Command::new("/bin/sleep")
            .arg("10")
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        set_scheduler(pid, libc::SCHED_BATCH, 0).unwrap();
        set_nice(pid, 7).unwrap();
        // SAFETY: integers only.
        let policy = unsafe { libc::sched_getscheduler(pid) };
        // SAFETY: integers only.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, pid as libc::id_t) };
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!((policy, nice), (libc::SCHED_BATCH, 7));
    }
}
