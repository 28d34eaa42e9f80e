//! pidfds: `pidfd_open`, `pidfd_getfd`, `pidfd_send_signal`.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::{cvt, Tid};

/// `pidfd_open(pid, flags)`: a file descriptor that refers to process `pid` for as long as
/// it is held, even after the pid is reused.
pub fn pidfd_open(pid: Tid, flags: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    let fd = cvt(ret)? as RawFd;
    // SAFETY: on success the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_getfd(pidfd, targetfd, 0)`: a duplicate, in crs, of file descriptor `targetfd` of
/// the process behind `pidfd` (needs PTRACE_MODE_ATTACH_REALCREDS on it).
pub fn pidfd_getfd(pidfd: BorrowedFd<'_>, targetfd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_getfd takes integers only; `pidfd` is a live descriptor for the call.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), targetfd, 0u32) };
    let fd = cvt(ret)? as RawFd;
    // SAFETY: on success the kernel installed a new descriptor in our table; we own it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(pidfd, sig, NULL, 0)`.
pub fn pidfd_send_signal(pidfd: BorrowedFd<'_>, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo pointer is allowed (the kernel fills in a SI_USER siginfo);
    // the other arguments are integers and `pidfd` is live for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    cvt(ret).map(drop)
}

/// `PIDFD_NONBLOCK`: the pidfd's file is O_NONBLOCK (waitid on it does not block).
pub const PIDFD_NONBLOCK: u32 = libc::O_NONBLOCK as u32;
/// `PIDFD_THREAD` (Linux 6.9+): the pidfd refers to a thread, not a thread group; its
/// file shows it as O_EXCL.
pub const PIDFD_THREAD: u32 = libc::O_EXCL as u32;

/// Pidfds of a process that has exited and been reaped: one per entry of `flags` (each a
/// set of [`PIDFD_NONBLOCK`] and [`PIDFD_THREAD`]), all of the same process (one pidfs
/// inode). A helper process is cloned that exits at once; the pidfds are opened while it
/// is an unreaped zombie (so its pid cannot have been reused), then it is reaped. Its pid
/// is free again on return. Each pidfd polls readable (POLLIN|POLLHUP), shows `Pid: -1`
/// in fdinfo, and `pidfd_send_signal` on it fails with ESRCH.
pub fn dead_pidfds(flags: &[u32]) -> io::Result<Vec<OwnedFd>> {
    // A clone without CLONE_VM and with no new stack is fork(): the child runs on a copy
    // of this thread's memory and stack. It only calls `_exit`, which is async-signal-safe
    // and takes no lock another thread may have held at the clone. The parent/child tid
    // and tls arguments are unused without their flags.
    // SAFETY: fork-like clone passing no pointer; the child does nothing but `_exit`.
    let ret = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) };
    if ret == 0 {
        // SAFETY: ends the child at once, running no destructor or atexit handler (which
        // could touch state copied from other threads of crs).
        unsafe { libc::_exit(0) };
    }
    let pid = cvt(ret)? as Tid;
    let opened: io::Result<Vec<OwnedFd>> = flags.iter().map(|&f| pidfd_open(pid, f)).collect();
    let reaped = crate::restore::reap(pid);
    let fds = opened?;
    reaped?;
    Ok(fds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    fn fdinfo(fd: &OwnedFd) -> String {
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).unwrap()
    }

    #[test]
    fn dead_pidfds_refer_to_one_reaped_process_with_their_flags() {
        let fds = dead_pidfds(&[0, PIDFD_NONBLOCK, PIDFD_THREAD]).unwrap();
        assert_eq!(fds.len(), 3);
        let mut inos = Vec::new();
        for (fd, flags) in fds.iter().zip([0, PIDFD_NONBLOCK, PIDFD_THREAD]) {
            let info = fdinfo(fd);
            assert!(info.contains("\nPid:\t-1\n"), "{info}");
            let shown = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:\t"))
                .map(|f| u32::from_str_radix(f, 8).unwrap())
                .unwrap();
            assert_eq!(shown & (PIDFD_NONBLOCK | PIDFD_THREAD), flags, "{info}");
            inos.push(
                info.lines()
                    .find(|l| l.starts_with("ino:"))
                    .unwrap()
                    .to_owned(),
            );
            let err = pidfd_send_signal(fd.as_fd(), 0).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
            use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
            let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            assert_eq!(poll(&mut p, PollTimeout::ZERO).unwrap(), 1);
            let rev = p[0].revents().unwrap();
            assert!(
                rev.contains(PollFlags::POLLIN | PollFlags::POLLHUP),
                "{rev:?}"
            );
        }
        assert!(inos.iter().all(|i| *i == inos[0]), "{inos:?}");
    }
}
