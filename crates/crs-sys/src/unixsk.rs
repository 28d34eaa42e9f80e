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

/// [`getsockopt_int`], `None` when this kind of socket has no such option (ENOPROTOOPT,
/// EOPNOTSUPP: SO_PASSSEC on an inet socket, IP_FREEBIND on a raw IPv6 one).
pub fn getsockopt_int_if_any(fd: BorrowedFd<'_>, level: i32, name: i32) -> io::Result<Option<i32>> {
    match getsockopt_int(fd, level, name) {
        Ok(v) => Ok(Some(v)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOPROTOOPT)) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
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

/// `getsockopt(fd, level, name)` of an option of at most `max` bytes, as bytes
/// (SO_BINDTODEVICE's name, SO_LINGER's struct).
pub fn getsockopt_bytes(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    max: usize,
) -> io::Result<Vec<u8>> {
    let mut b = vec![0u8; max];
    let mut len = max as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `b` and the length into `len`,
    // both alive across the call; the fd is borrowed.
    let ret =
        unsafe { libc::getsockopt(fd.as_raw_fd(), level, name, b.as_mut_ptr().cast(), &mut len) };
    cvt(ret.into())?;
    b.truncate(len as usize);
    Ok(b)
}

/// `setsockopt(fd, level, name)` of an option given as bytes.
pub fn setsockopt_bytes(fd: BorrowedFd<'_>, level: i32, name: i32, b: &[u8]) -> io::Result<()> {
    // SAFETY: setsockopt reads `b.len()` bytes of `b`, alive across the call; the fd is
    // borrowed.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            b.as_ptr().cast(),
            b.len() as libc::socklen_t,
        )
    };
    cvt(ret.into())?;
    Ok(())
}

/// A socket's classic BPF filter (SO_GET_FILTER) as CRIU's images hold it: one word per
/// instruction, `code << 48 | jt << 40 | jf << 32 | k`; empty when it has none.
pub fn get_filter(fd: BorrowedFd<'_>) -> io::Result<Vec<u64>> {
    const SO_GET_FILTER: i32 = 26;
    // The length is counted in instructions: asked with 0, the kernel says how many.
    let mut n: libc::socklen_t = 0;
    // SAFETY: with a length of 0 the kernel writes nothing but the count into `n`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut n,
        )
    };
    cvt(ret.into())?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let zero = libc::sock_filter {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    };
    let mut prog = vec![zero; n as usize];
    // SAFETY: the kernel writes at most `n` sock_filters into `prog`, which has room for
    // `n`, and the count into `n`.
    let ret = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_GET_FILTER,
            prog.as_mut_ptr().cast(),
            &mut n,
        )
    };
    cvt(ret.into())?;
    prog.truncate(n as usize);
    Ok(prog
        .iter()
        .map(|f| {
            u64::from(f.code) << 48 | u64::from(f.jt) << 40 | u64::from(f.jf) << 32 | u64::from(f.k)
        })
        .collect())
}

/// Attaches classic BPF program `prog` (CRIU's words, as [`get_filter`] gives them) with
/// SO_ATTACH_FILTER.
pub fn set_filter(fd: BorrowedFd<'_>, prog: &[u64]) -> io::Result<()> {
    let mut insns: Vec<libc::sock_filter> = prog
        .iter()
        .map(|&w| libc::sock_filter {
            code: (w >> 48) as u16,
            jt: (w >> 40) as u8,
            jf: (w >> 32) as u8,
            k: w as u32,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: insns.len() as u16,
        filter: insns.as_mut_ptr(),
    };
    // SAFETY: the kernel reads the sock_fprog and the `len` sock_filters it points at,
    // all alive across the call; the fd is borrowed.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&fprog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    cvt(ret.into())?;
    Ok(())
}

/// One instruction in `struct sock_filter`'s memory layout (code, jt, jf, k), from CRIU's
/// word (see [`get_filter`]).
pub fn filter_insn_bytes(w: u64) -> [u8; 8] {
    let mut b = [0u8; 8];
    b[..2].copy_from_slice(&((w >> 48) as u16).to_ne_bytes());
    b[2] = (w >> 40) as u8;
    b[3] = (w >> 32) as u8;
    b[4..].copy_from_slice(&(w as u32).to_ne_bytes());
    b
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
#[derive(Debug)]
pub struct Peeked {
    /// Bytes copied into the buffer.
    pub len: usize,
    /// The message was longer than the buffer (MSG_TRUNC).
    pub truncated: bool,
    /// The message carries ancillary data (SCM_RIGHTS, credentials, ...).
    pub control: bool,
    /// The fds it passes (SCM_RIGHTS), installed in crs by the peek (close-on-exec): new
    /// descriptions of nothing, the same open files as the sender's.
    pub fds: Vec<OwnedFd>,
    /// Its control data did not fit (MSG_CTRUNC): the fds are incomplete.
    pub control_truncated: bool,
}

/// Control buffer of [`peek`]: room for SCM_MAX_FD (253) fds and a credentials message.
const PEEK_CONTROL_WORDS: usize = 160;

/// `recvmsg(fd, MSG_PEEK | MSG_DONTWAIT)` into `buf`, with a control buffer for the fds a
/// message passes. With SO_PEEK_OFF set, each call returns the data after the previous
/// one. An empty queue is `Ok(None)` (the kernel's EAGAIN).
pub fn peek(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Option<Peeked>> {
    match recvmsg_with_control(fd, buf, libc::MSG_PEEK | libc::MSG_DONTWAIT) {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One `recvmsg(fd, flags | MSG_CMSG_CLOEXEC)` into `buf`, with a control buffer with room
/// for SCM_MAX_FD fds and credentials; the fds it installs are owned by the result.
fn recvmsg_with_control(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<Peeked> {
    let mut control = [0u64; PEEK_CONTROL_WORDS];
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
    // The kernel writes within the lengths of `iov` and `control` and updates `msg`.
    // Passed fds (SCM_RIGHTS) it installs are reported through `control` and owned below.
    // SAFETY: `msg` points at `iov` (describing `buf`, borrowed mutably) and `control`,
    // both live for the call; the fd is borrowed, so it stays open.
    let ret = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
    let len = cvt(ret as libc::c_long)? as usize;
    let control_truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
    let fds = if msg.msg_controllen != 0 {
        passed_fds(&msg)
    } else {
        Vec::new()
    };
    Ok(Peeked {
        len,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        control: msg.msg_controllen != 0 || control_truncated,
        fds,
        control_truncated,
    })
}

/// The fds the SCM_RIGHTS messages of `msg` installed in crs, owned.
fn passed_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut out = Vec::new();
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
                    out.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    out
}

/// A new NETLINK_SOCK_DIAG socket that has sent `request` (one netlink message) to the
/// kernel.
fn diag_sent(request: &[u8]) -> io::Result<OwnedFd> {
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
    Ok(sock)
}

/// The next datagram of `sock` (at most 64 KiB).
fn recv_datagram(sock: &OwnedFd) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`, live for the call.
    let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    buf.truncate(cvt(n as libc::c_long)? as usize);
    Ok(buf)
}

/// Sends `request` (one netlink message) to the kernel on a new NETLINK_SOCK_DIAG socket
/// and returns its first reply datagram (at most 64 KiB).
pub fn sock_diag(request: &[u8]) -> io::Result<Vec<u8>> {
    recv_datagram(&diag_sent(request)?)
}

/// Sends dump request `request` (one netlink message with NLM_F_DUMP) to the kernel on a
/// new NETLINK_SOCK_DIAG socket and gives `each` every message of the answer, up to
/// NLMSG_DONE (an NLMSG_ERROR is the error it carries).
pub fn sock_diag_dump(request: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    let sock = diag_sent(request)?;
    loop {
        let buf = recv_datagram(&sock)?;
        if buf.is_empty() {
            return Ok(());
        }
        for m in crate::rtnl::split(&buf)? {
            match u16::from_ne_bytes([m[4], m[5]]) {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let Some(e) = m.get(16..20) else {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "sock_diag: a short NLMSG_ERROR message",
                        ));
                    };
                    let errno = i32::from_ne_bytes(e.try_into().expect("4 bytes"));
                    if errno != 0 {
                        return Err(io::Error::from_raw_os_error(-errno));
                    }
                }
                _ => each(&m[16..]),
            }
        }
    }
}

/// `setsockopt(fd, SOL_SOCKET, name)` of a `struct timeval` option (SO_SNDTIMEO,
/// SO_RCVTIMEO).
pub fn setsockopt_timeval(fd: BorrowedFd<'_>, name: i32, sec: u64, usec: u64) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: sec as libc::time_t,
        tv_usec: usec as libc::suseconds_t,
    };
    // SAFETY: the kernel reads `size_of::<timeval>()` bytes from `tv`, a live local. The
    // fd is borrowed, so it stays open.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    cvt(ret.into())?;
    Ok(())
}

/// A new `AF_UNIX` socket of type `kind` (SOCK_STREAM, ...), close-on-exec and
/// non-blocking (the caller sets the final status flags).
pub fn socket(kind: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; the new fd is owned right away.
    let raw = unsafe {
        libc::socket(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    cvt(raw.into())?;
    // SAFETY: `raw` is a new fd owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// A connected pair of `AF_UNIX` sockets of type `kind`, close-on-exec and non-blocking.
pub fn socketpair(kind: i32) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut sv = [-1 as libc::c_int; 2];
    // SAFETY: the kernel writes two ints into `sv`, a live local array of two ints.
    let ret = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
            sv.as_mut_ptr(),
        )
    };
    cvt(ret.into())?;
    // SAFETY: both fds are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(sv[0]), OwnedFd::from_raw_fd(sv[1])) })
}

/// A `sockaddr_un` holding `name` (a path, or an abstract name starting with NUL) and its
/// length as bind/connect take it.
fn sockaddr(name: &[u8]) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; all-zero is a valid (unnamed) address.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.is_empty() || name.len() > addr.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (d, s) in addr.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let len = std::mem::size_of::<libc::sa_family_t>() + name.len();
    Ok((addr, len as libc::socklen_t))
}

/// `bind(fd, name)` for a unix socket.
pub fn bind(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (addr, len) = sockaddr(name)?;
    // SAFETY: the kernel reads `len` (at most size_of::<sockaddr_un>()) bytes of `addr`, a
    // live local. The fd is borrowed, so it stays open.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    cvt(ret.into())?;
    Ok(())
}

/// `bind(fd, name)` with the relative path `name` resolved against directory `dir`: done
/// on a short-lived thread that unshares its filesystem context and changes into `dir`,
/// so crs's own working directory never moves.
pub fn bind_in_dir(fd: BorrowedFd<'_>, dir: &std::path::Path, name: &[u8]) -> io::Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshare takes no pointers; CLONE_FS only gives this thread its own
            // cwd/root/umask copy, which dies with the thread.
            cvt(unsafe { libc::unshare(libc::CLONE_FS) }.into())?;
            std::env::set_current_dir(dir)?;
            bind(fd, name)
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("bind thread panicked")))
    })
}

/// `connect(fd, name)` for a unix socket.
pub fn connect(fd: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let (addr, len) = sockaddr(name)?;
    // SAFETY: the kernel reads `len` bytes of `addr`, a live local. The fd is borrowed.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_un).cast(),
            len,
        )
    };
    cvt(ret.into())?;
    Ok(())
}

/// `listen(fd, backlog)`.
pub fn listen(fd: BorrowedFd<'_>, backlog: i32) -> io::Result<()> {
    // SAFETY: listen takes no pointers; the fd is borrowed, so it stays open.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) }.into())?;
    Ok(())
}

/// `accept4(fd)`: the next queued connection, close-on-exec and non-blocking.
pub fn accept(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    // SAFETY: null address and length pointers are allowed (the peer address is not
    // wanted); the fd is borrowed, so it stays open.
    let raw = unsafe {
        libc::accept4(
            fd.as_raw_fd(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
        )
    };
    cvt(raw.into())?;
    // SAFETY: `raw` is a new fd owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// `send(fd, data, MSG_DONTWAIT)`, or `sendto` the unix address `to`: one message (or run
/// of stream bytes). Returns the bytes sent.
pub fn send(fd: BorrowedFd<'_>, data: &[u8], to: Option<&[u8]>) -> io::Result<usize> {
    let (addr, len) = match to {
        Some(n) => {
            let (a, l) = sockaddr(n)?;
            (Some(a), l)
        }
        None => (None, 0),
    };
    let ap = addr
        .as_ref()
        .map_or(std::ptr::null(), |a| (a as *const libc::sockaddr_un).cast());
    // SAFETY: the kernel reads `data.len()` bytes of `data` and `len` bytes at `ap` (null
    // with length 0 when there is no address), both live for the call. The fd is borrowed.
    let ret = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            ap,
            len,
        )
    };
    Ok(cvt(ret as libc::c_long)? as usize)
}

/// `sendmsg(fd, data, MSG_DONTWAIT)` passing `fds` (SCM_RIGHTS, at most 253), to the
/// unix address `to` when given. Returns the bytes sent.
pub fn send_with_fds(
    fd: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    to: Option<&[u8]>,
) -> io::Result<usize> {
    if fds.is_empty() || fds.len() > 253 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    send_msg(fd, data, fds, to, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
}

/// `sendmsg` of `data` passing `fds` (may be empty), blocking: for crs's own sockets.
pub fn send_blocking_with_fds(
    fd: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    if fds.len() > 253 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    send_msg(fd, data, fds, None, libc::MSG_NOSIGNAL)
}

fn send_msg(
    fd: BorrowedFd<'_>,
    data: &[u8],
    fds: &[BorrowedFd<'_>],
    to: Option<&[u8]>,
    flags: i32,
) -> io::Result<usize> {
    let (addr, addr_len) = match to {
        Some(n) => {
            let (a, l) = sockaddr(n)?;
            (Some(a), l)
        }
        None => (None, 0),
    };
    let raw: Vec<libc::c_int> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let payload = std::mem::size_of_val(raw.as_slice()) as libc::c_uint;
    // SAFETY: CMSG_SPACE only computes a size from its argument.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: data.as_ptr().cast_mut().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid (empty) value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(a) = addr.as_ref() {
        msg.msg_name = (a as *const libc::sockaddr_un).cast_mut().cast();
        msg.msg_namelen = addr_len;
    }
    if !raw.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: `control` holds CMSG_SPACE(payload) bytes (8-byte aligned), so the first
        // header and its data of `payload` bytes fit; the fds are copied into it unaligned.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload) as usize;
            let dst = libc::CMSG_DATA(c).cast::<libc::c_int>();
            for (i, f) in raw.iter().enumerate() {
                dst.add(i).write_unaligned(*f);
            }
        }
    }
    // SAFETY: `msg` points at `iov` (describing `data`, only read), `control` (when fds are
    // passed) and the address, all live for the call; the fds in `control` are borrowed
    // and stay open.
    let ret = unsafe { libc::sendmsg(fd.as_raw_fd(), &msg, flags) };
    Ok(cvt(ret as libc::c_long)? as usize)
}

/// `recvmsg(fd, buf)` (blocking): the bytes received and the fds passed with them
/// (SCM_RIGHTS), owned and close-on-exec. A control part that did not fit is an error
/// (EMSGSIZE), its fds already closed by the kernel's truncation.
pub fn recv_with_fds(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let got = recvmsg_with_control(fd, buf, 0)?;
    if got.control_truncated {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    Ok((got.len, got.fds))
}

/// `shutdown(fd, how)` (SHUT_RD, SHUT_WR, SHUT_RDWR).
pub fn shutdown(fd: BorrowedFd<'_>, how: i32) -> io::Result<()> {
    // SAFETY: shutdown takes no pointers; the fd is borrowed, so it stays open.
    cvt(unsafe { libc::shutdown(fd.as_raw_fd(), how) }.into())?;
    Ok(())
}

/// Sets or clears O_NONBLOCK on the open description of `fd`, other status flags kept.
pub fn set_nonblock(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL takes no pointer argument; the fd is borrowed.
    let fl = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) }.into())? as i32;
    let want = if on {
        fl | libc::O_NONBLOCK
    } else {
        fl & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL takes an int argument, no pointer; the fd is borrowed.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, want) }.into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn fds_sent_with_a_message_are_peeked_without_being_consumed() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let f = std::fs::File::open("/proc/self/exe").unwrap();
        let g = std::fs::File::open("/dev/null").unwrap();
        let sent = send_with_fds(a.as_fd(), b"hi", &[f.as_fd(), g.as_fd()], None).unwrap();
        assert_eq!(sent, 2);
        let mut buf = [0u8; 16];
        for _ in 0..2 {
            // A peek leaves the message and its fds queued: the second sees them again.
            let p = peek(b.as_fd(), &mut buf).unwrap().unwrap();
            assert_eq!(&buf[..p.len], b"hi");
            assert!(p.control && !p.control_truncated);
            assert_eq!(p.fds.len(), 2);
            let got = std::fs::File::from(p.fds.into_iter().next().unwrap());
            assert_eq!(got.metadata().unwrap().ino(), f.metadata().unwrap().ino());
        }
    }

    #[test]
    fn send_with_no_fds_is_refused() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let e = send_with_fds(a.as_fd(), b"x", &[], None).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
