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
