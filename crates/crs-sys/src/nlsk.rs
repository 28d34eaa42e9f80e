//! AF_NETLINK sockets seen from crs: their own address (port id, the first 32 groups)
//! and their peer's, group memberships, and making one bound and connected again.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// SOL_NETLINK and its options.
pub const SOL_NETLINK: i32 = 270;
const NETLINK_ADD_MEMBERSHIP: i32 = 1;
const NETLINK_LIST_MEMBERSHIPS: i32 = 9;

fn sockaddr(portid: u32, groups: u32) -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain integers; all-zero is valid.
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    a.nl_pid = portid;
    a.nl_groups = groups;
    a
}

type NameCall =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn name(fd: BorrowedFd<'_>, call: NameCall) -> io::Result<(u32, u32)> {
    let mut a = sockaddr(0, 0);
    let mut len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: getsockname/getpeername write at most `len` bytes into `a` and the length
    // into `len`, both alive across the call.
    if unsafe {
        call(
            fd.as_raw_fd(),
            (&mut a as *mut libc::sockaddr_nl).cast(),
            &mut len,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok((a.nl_pid, a.nl_groups))
}

/// The socket's (port id, groups) and its peer's (port id, group): getsockname and
/// getpeername (a netlink socket not connected has the kernel, 0, as its peer).
pub fn names(fd: BorrowedFd<'_>) -> io::Result<((u32, u32), (u32, u32))> {
    Ok((name(fd, libc::getsockname)?, name(fd, libc::getpeername)?))
}

/// Every group the socket is a member of, as 32-bit words of bits
/// (NETLINK_LIST_MEMBERSHIPS), without trailing zero words.
pub fn memberships(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let b = crate::unixsk::getsockopt_bytes(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 4096)?;
    let mut words: Vec<u32> = b
        .chunks_exact(4)
        .map(|w| u32::from_ne_bytes(w.try_into().expect("4 bytes")))
        .collect();
    while words.last() == Some(&0) {
        words.pop();
    }
    Ok(words)
}

/// A new netlink socket (close-on-exec) of `kind` and `protocol`.
pub fn socket(kind: i32, protocol: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers only; a non-negative result is a new fd we own.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

type AddrCall =
    unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int;

fn with_addr(fd: BorrowedFd<'_>, portid: u32, groups: u32, call: AddrCall) -> io::Result<()> {
    let a = sockaddr(portid, groups);
    let len = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: bind/connect read `len` bytes of `a`, a valid sockaddr_nl.
    if unsafe { call(fd.as_raw_fd(), (&a as *const libc::sockaddr_nl).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// bind to port id `portid` and the first 32 groups `groups`.
pub fn bind(fd: BorrowedFd<'_>, portid: u32, groups: u32) -> io::Result<()> {
    with_addr(fd, portid, groups, libc::bind)
}

/// connect to port id `portid` / group `group`.
pub fn connect(fd: BorrowedFd<'_>, portid: u32, group: u32) -> io::Result<()> {
    with_addr(fd, portid, group, libc::connect)
}

/// Joins group number `group` (1-based: NETLINK_ADD_MEMBERSHIP).
pub fn add_membership(fd: BorrowedFd<'_>, group: u32) -> io::Result<()> {
    crate::unixsk::setsockopt_int(fd, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group as i32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn bound_connected_and_member_socket_reads_back() {
        const NETLINK_KOBJECT_UEVENT: i32 = 15;
        let s = socket(libc::SOCK_RAW, NETLINK_KOBJECT_UEVENT).unwrap();
        // Port id 0: the kernel picks one.
        bind(s.as_fd(), 0, 1 << 3).unwrap();
        add_membership(s.as_fd(), 5).unwrap();
        connect(s.as_fd(), 0, 2).unwrap();
        let ((portid, groups), (dst, dgroup)) = names(s.as_fd()).unwrap();
        assert_ne!(portid, 0);
        // getsockname shows every membership of the first 32, bound or added.
        assert_eq!((groups, dst, dgroup), (1 << 3 | 1 << 4, 0, 2));
        assert_eq!(memberships(s.as_fd()).unwrap(), vec![1 << 3 | 1 << 4]);
    }
}
