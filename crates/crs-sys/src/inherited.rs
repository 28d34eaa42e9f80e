//! File descriptors crs is handed by number on its command line (criu's `--ps-socket FD`,
//! `--status-fd FD`): the caller opened them before running crs and they are crs's to use.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A new descriptor (close-on-exec) for the same open file as inherited fd `fd`. The
/// inherited one is left open: only the copy is owned here.
pub fn dup_inherited(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: F_DUPFD_CLOEXEC takes an int and returns a new descriptor or -1; no memory
    // is passed, and a bad `fd` only makes it fail with EBADF.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just returned by fcntl: an open descriptor that nothing else in
    // this process refers to, so the OwnedFd is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn dup_of_an_open_fd_is_a_new_fd() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let d = dup_inherited(f.as_raw_fd()).unwrap();
        assert_ne!(d.as_raw_fd(), f.as_raw_fd());
    }

    #[test]
    fn dup_of_a_closed_fd_is_ebadf() {
        assert_eq!(
            dup_inherited(1 << 20).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        assert_eq!(
            dup_inherited(-1).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
    }
}
