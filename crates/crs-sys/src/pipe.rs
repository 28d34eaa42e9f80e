//! Pipes: `tee(2)`, which nix offers only behind a feature the workspace does not enable.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::cvt;

/// `tee(fd_in, fd_out, len, SPLICE_F_NONBLOCK)`: duplicates up to `len` bytes queued in pipe
/// `fd_in` into pipe `fd_out` without consuming them. Returns the number of bytes
/// duplicated; an empty `fd_in` is `Ok(0)` (the kernel's EAGAIN).
pub fn tee_nonblock(
    fd_in: BorrowedFd<'_>,
    fd_out: BorrowedFd<'_>,
    len: usize,
) -> io::Result<usize> {
    // SAFETY: tee takes two descriptors, a length and flags; it touches no memory of ours.
    // Both descriptors are borrowed, so they stay open for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_tee,
            fd_in.as_raw_fd(),
            fd_out.as_raw_fd(),
            len,
            libc::SPLICE_F_NONBLOCK,
        )
    };
    match cvt(ret) {
        Ok(n) => Ok(n as usize),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(0),
        Err(e) => Err(e),
    }
}
