//! Sockets seen from crs: socket options, peeking at queued messages without consuming
//! them, and one-shot `NETLINK_SOCK_DIAG` requests (nix offers sockets only behind a
//! feature the workspace does not enable).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use crate::cvt;

/// `getsockopt(fd, level, name)` of an option whose value is a C `int`.
pub fn getsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<i32> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live locals; the kernel writes at most `len` bytes into
    // `v` and the actual length into `len`. The fd is borrowed, so it stays open.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    cvt(ret.into())?;
    Ok(v)
}

/// `setsockopt(fd, level, name)` of an option whose value is a C `int`.
pub fn setsockopt_int(fd: BorrowedFd<'_>, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the kernel reads `size_of::<c_int>()` bytes from `value`, a live local. The
    // fd is borrowed, so it stays open.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    cvt(ret.into())?;
    Ok(())
}

/// `getsockopt(fd, SOL_SOCKET, name)` of a `struct timeval` option (SO_SNDTIMEO,
/// SO_RCVTIMEO): (seconds, microseconds).
pub fn getsockopt_timeval(fd: BorrowedFd<'_>, name: i32) -> io::Result<(u64, u64)> {
    let mut tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 0,
    };
    let mut len = std::mem::size_of::<libc::timeval>() as libc::socklen_t;
    // SAFETY: `tv` and `len` are live locals; the kernel writes at most `len` bytes into
    // `tv`. The fd is borrowed, so it stays open.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&mut tv as *mut libc::timeval).cast(),
            &mut len,
        )
    };
    cvt(ret.into())?;
    Ok((tv.tv_sec as u64, tv.tv_usec as u64))
}

/// One message (or run of stream bytes) peeked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peeked {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// The message was longer than the buffer (MSG_TRUNC).
    pub truncated: bool,
    /// The message carries ancillary data (SCM_RIGHTS, credentials, ...).
    pub control: bool,
}

/// `recvmsg(fd, MSG_PEEK | MSG_DONTWAIT)` into `buf`, with a small control buffer so
/// ancillary data is noticed. With SO_PEEK_OFF set, each call returns the data after the
/// previous one. An empty queue is `Ok(None)` (the kernel's EAGAIN).
pub fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<Peeked>> {
    let mut control = [0u64; 32];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at `iov` (describing `buf`, borrowed mutably for the call) and
    // at `control`, both live for the call; the kernel writes within their lengths and
    // updates `msg`. The fd is borrowed, so it stays open. Passed fds (SCM_RIGHTS) that
    // the peek would install are reported through `control` and closed below.
    let ret = unsafe {
        libc::recvmsg(
            fd.as_raw_fd(),
            &mut msg,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    let n = match cvt(ret as libc::c_long) {
        Ok(n) => n as usize,
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(None),
        Err(e) => return Err(e),
    };
    let has_control = msg.msg_controllen != 0 || msg.msg_flags & libc::MSG_CTRUNC != 0;
    if has_control {
        close_passed_fds(&msg);
    }
    Ok(Some(Peeked {
        len: n,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        control: has_control,
    }))
}

/// Closes the fds an SCM_RIGHTS message of `msg` installed in crs.
fn close_passed_fds(msg: &libc::msghdr) {
    // SAFETY: `msg` was filled by recvmsg; CMSG_FIRSTHDR/CMSG_NXTHDR walk its control
    // buffer within msg_controllen, and CMSG_DATA points inside each header's length.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<libc::c_int>();
                let n = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<libc::c_int>();
                for i in 0..n {
                    // Each fd was just installed in crs by the peek and is owned by no one.
                    drop(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
}

/// Sends `request` (one netlink message) to the kernel on a new NETLINK_SOCK_DIAG socket
/// and returns its first reply datagram (at most 64 KiB).
pub fn sock_diag(request: &[u8]) -> io::Result<Vec<u8>> {
    // SAFETY: socket takes no pointers; the new fd is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    cvt(raw.into())?;
    // SAFETY: `raw` is a new fd owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_nl is plain data; all-zero is the kernel's address with family set
    // below.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: the kernel reads `request.len()` bytes of `request` and the address from
    // `addr`, both live for the call; `sock` is open.
    let ret = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            request.as_ptr().cast(),
            request.len(),
            0,
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    cvt(ret as libc::c_long)?;
    let mut buf = vec![0u8; 65536];
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, live for the call.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    buf.truncate(cvt(n as libc::c_long)? as usize);
    Ok(buf)
}
