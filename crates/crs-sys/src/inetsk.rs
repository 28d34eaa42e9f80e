//! IPv4 and IPv6 sockets: their addresses (getsockname, getpeername), bind and connect
//! by address, the bytes queued for reading.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// TCP states (the kernel's `tcp_states.h`), as TCP_INFO and inet_diag report them (and
/// CRIU's images record: 1 and 7 for UDP too), and the ones a connection of crs's is in.
pub mod tcp_state {
    pub const TCP_ESTABLISHED: u32 = 1;
    pub const TCP_SYN_SENT: u32 = 2;
    pub const TCP_SYN_RECV: u32 = 3;
    pub const TCP_FIN_WAIT1: u32 = 4;
    pub const TCP_FIN_WAIT2: u32 = 5;
    pub const TCP_CLOSE: u32 = 7;
    pub const TCP_CLOSE_WAIT: u32 = 8;
    pub const TCP_LAST_ACK: u32 = 9;
    pub const TCP_LISTEN: u32 = 10;
    pub const TCP_CLOSING: u32 = 11;
    /// Bound, not listening nor connected (inet_diag only, Linux 6.10).
    pub const TCP_BOUND_INACTIVE: u32 = 13;

    /// The connections crs dumps (with `--tcp-established`) and restores: established,
    /// half-closed (our FIN sent, acknowledged or not; the peer's received), closing on
    /// both sides with our FIN not acknowledged (sent after the peer's came, or before: a
    /// simultaneous close).
    pub const CONNECTED: [u32; 6] = [
        TCP_ESTABLISHED,
        TCP_FIN_WAIT1,
        TCP_FIN_WAIT2,
        TCP_CLOSE_WAIT,
        TCP_LAST_ACK,
        TCP_CLOSING,
    ];

    /// The peer's FIN came: it is in rcv_nxt.
    pub fn fin_received(state: u32) -> bool {
        [TCP_CLOSE_WAIT, TCP_LAST_ACK, TCP_CLOSING].contains(&state)
    }

    /// We sent a FIN: it is in write_seq (and counts one in SIOCOUTQ).
    pub fn fin_sent(state: u32) -> bool {
        [TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_LAST_ACK, TCP_CLOSING].contains(&state)
    }

    /// Our FIN is not acknowledged.
    pub fn fin_unacknowledged(state: u32) -> bool {
        [TCP_FIN_WAIT1, TCP_LAST_ACK, TCP_CLOSING].contains(&state)
    }
}

/// Where `family`'s freebind option is: IP_FREEBIND, or for IPv6 IPV6_FREEBIND (the same
/// flag; a raw IPv6 socket has only the latter).
pub fn freebind_opt(family: i32) -> (i32, i32) {
    const IPV6_FREEBIND: i32 = 78;
    if family == libc::AF_INET6 {
        (libc::IPPROTO_IPV6, IPV6_FREEBIND)
    } else {
        (libc::IPPROTO_IP, libc::IP_FREEBIND)
    }
}

/// A new socket (close-on-exec) of `family` (AF_INET, AF_INET6), `kind` and `proto`.
pub fn socket(family: i32, kind: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers only; a non-negative result is a new fd we own.
    let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The address of a sockaddr_storage the kernel filled (`None`: AF_UNSPEC, no address).
fn from_storage(ss: &libc::sockaddr_storage) -> io::Result<Option<SocketAddr>> {
    match i32::from(ss.ss_family) {
        libc::AF_UNSPEC => Ok(None),
        libc::AF_INET => {
            // SAFETY: an AF_INET sockaddr_storage holds a sockaddr_in at its start.
            let sin: libc::sockaddr_in = unsafe { std::mem::transmute_copy(ss) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok(Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 sockaddr_storage holds a sockaddr_in6 at its start.
            let sin6: libc::sockaddr_in6 = unsafe { std::mem::transmute_copy(ss) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            let mut a = std::net::SocketAddrV6::new(ip, u16::from_be(sin6.sin6_port), 0, 0);
            a.set_flowinfo(u32::from_be(sin6.sin6_flowinfo));
            a.set_scope_id(sin6.sin6_scope_id);
            Ok(Some(SocketAddr::V6(a)))
        }
        f => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("address family {f}"),
        )),
    }
}

/// A sockaddr for `addr`, and its length.
pub(crate) fn to_storage(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain integers; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: a sockaddr_in fits at the start of a sockaddr_storage, which is
            // aligned for it.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin) };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            let sin6 = libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo().to_be(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            };
            // SAFETY: as above, for a sockaddr_in6.
            unsafe { std::ptr::write((&mut ss as *mut libc::sockaddr_storage).cast(), sin6) };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

type NameCall =
    unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn name_of(fd: BorrowedFd<'_>, call: NameCall) -> io::Result<Option<SocketAddr>> {
    // SAFETY: as in `to_storage`.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname/getpeername write at most `len` bytes into `ss` and the length
    // into `len`, both alive across the call.
    let r = unsafe {
        call(
            fd.as_raw_fd(),
            (&mut ss as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    from_storage(&ss)
}

/// getsockname: the local address (`None` for AF_UNSPEC).
pub fn local_addr(fd: BorrowedFd<'_>) -> io::Result<Option<SocketAddr>> {
    name_of(fd, libc::getsockname)
}

/// getpeername: the peer's address; `None` when not connected (ENOTCONN).
pub fn peer_addr(fd: BorrowedFd<'_>) -> io::Result<Option<SocketAddr>> {
    match name_of(fd, libc::getpeername) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(None),
        r => r,
    }
}

type AddrCall =
    unsafe extern "C" fn(libc::c_int, *const libc::sockaddr, libc::socklen_t) -> libc::c_int;

/// bind or connect (`call`) with `addr`.
fn with_addr(fd: BorrowedFd<'_>, addr: &SocketAddr, call: AddrCall) -> io::Result<()> {
    let (ss, len) = to_storage(addr);
    // SAFETY: bind and connect read `len` bytes of `ss`, a valid sockaddr of that length.
    if unsafe {
        call(
            fd.as_raw_fd(),
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// bind to `addr`.
pub fn bind(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    with_addr(fd, addr, libc::bind)
}

/// connect to `addr` (for a datagram socket: sets its peer).
pub fn connect(fd: BorrowedFd<'_>, addr: &SocketAddr) -> io::Result<()> {
    with_addr(fd, addr, libc::connect)
}

/// One socket as inet_diag shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiagSock {
    /// TCP state (UDP: 1 connected, 7 not).
    pub state: u8,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Bytes queued for reading (a listener: connections waiting).
    pub rqueue: u32,
    /// 0 for a socket no file holds: a connection waiting to be accepted, or an orphan.
    pub inode: u64,
    /// INET_DIAG_SHUTDOWN: 1 receive, 2 send.
    pub shutdown: u8,
}

/// Parses one inet_diag_msg (with its attributes) of `family`.
fn parse_diag(family: i32, m: &[u8]) -> Option<DiagSock> {
    const INET_DIAG_SHUTDOWN: u16 = 8;
    /// inet_diag_msg: family, state, timer, retrans, sockid (sport, dport, src[16],
    /// dst[16], if, cookie[2]), expires, rqueue, wqueue, uid, inode; attributes follow.
    const MSG_LEN: usize = 72;
    let word =
        |o: usize| -> Option<u32> { Some(u32::from_ne_bytes(m.get(o..o + 4)?.try_into().ok()?)) };
    let addr = |o: usize, port_at: usize| -> Option<SocketAddr> {
        let port = u16::from_be_bytes(m.get(port_at..port_at + 2)?.try_into().ok()?);
        let ip = if family == libc::AF_INET6 {
            IpAddr::V6(Ipv6Addr::from(
                <[u8; 16]>::try_from(m.get(o..o + 16)?).ok()?,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(m.get(o..o + 4)?).ok()?))
        };
        Some(SocketAddr::new(ip, port))
    };
    let mut d = DiagSock {
        state: *m.get(1)?,
        local: addr(8, 4)?,
        remote: addr(24, 6)?,
        rqueue: word(56)?,
        inode: u64::from(word(68)?),
        shutdown: 0,
    };
    let mut at = MSG_LEN;
    while let Some(h) = m.get(at..at + 4) {
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        if len < 4 {
            break;
        }
        if u16::from_ne_bytes([h[2], h[3]]) == INET_DIAG_SHUTDOWN {
            d.shutdown = m.get(at + 4).copied().unwrap_or(0);
        }
        at += (len + 3) & !3;
    }
    Some(d)
}

/// Every inet socket of `family` and `proto` in crs's network namespace whose state is in
/// `states` (a mask of 1 << state), as inet_diag shows it.
pub fn inet_diag(family: i32, proto: i32, states: u32) -> io::Result<Vec<DiagSock>> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    let mut req = Vec::with_capacity(72);
    req.extend_from_slice(&72u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    // The sequence number and port id (0), then inet_diag_req_v2: family, protocol, ext,
    // pad, states, and the sockid, zeroed.
    req.extend_from_slice(&[0; 8]);
    req.extend_from_slice(&[family as u8, proto as u8, 0, 0]);
    req.extend_from_slice(&states.to_ne_bytes());
    req.resize(72, 0);
    let mut out = Vec::new();
    let mut bad = false;
    crate::unixsk::sock_diag_dump(&req, |m| match parse_diag(family, m) {
        Some(d) => out.push(d),
        None => bad = true,
    })?;
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "inet_diag: a message too short for an inet_diag_msg",
        ));
    }
    Ok(out)
}

/// [`inet_diag`]'s shutdown state of each socket, by inode.
pub fn diag_shutdown(
    family: i32,
    proto: i32,
    states: u32,
) -> io::Result<std::collections::HashMap<u64, u8>> {
    Ok(inet_diag(family, proto, states)?
        .into_iter()
        .map(|d| (d.inode, d.shutdown))
        .collect())
}

/// The shutdown state (1 receive, 2 send) that poll shows of socket `fd`: receive once
/// POLLRDHUP, both once POLLHUP too. For a socket the kernel's tables do not list (not
/// bound, or closed), where inet_diag cannot tell; a send-only shutdown does not show.
pub fn polled_shutdown(fd: BorrowedFd<'_>) -> io::Result<u8> {
    let revents = poll_now(fd, libc::POLLRDHUP | libc::POLLHUP)?;
    Ok(
        match (revents & libc::POLLRDHUP != 0, revents & libc::POLLHUP != 0) {
            (true, true) => 3,
            (true, false) => 1,
            _ => 0,
        },
    )
}

/// The events of `events` `fd` has now (poll, timeout 0).
fn poll_now(fd: BorrowedFd<'_>, events: libc::c_short) -> io::Result<libc::c_short> {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd `p`, live for the call; timeout 0.
    if unsafe { libc::poll(&mut p, 1, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(p.revents)
}

/// `getsockopt(fd, level, name)` of an option that is `n` 32-bit words (ICMP_FILTER,
/// ICMP6_FILTER, TCP_REPAIR_WINDOW); fewer when the kernel gives fewer.
pub fn getsockopt_words(
    fd: BorrowedFd<'_>,
    level: i32,
    name: i32,
    n: usize,
) -> io::Result<Vec<u32>> {
    let b = crate::unixsk::getsockopt_bytes(fd, level, name, n * 4)?;
    Ok(b.chunks_exact(4)
        .map(|w| u32::from_ne_bytes(w.try_into().expect("4 bytes")))
        .collect())
}

/// `setsockopt(fd, level, name)` of an option of 32-bit words.
pub fn setsockopt_words(fd: BorrowedFd<'_>, level: i32, name: i32, w: &[u32]) -> io::Result<()> {
    let b: Vec<u8> = w.iter().flat_map(|x| x.to_ne_bytes()).collect();
    crate::unixsk::setsockopt_bytes(fd, level, name, &b)
}

/// What `TCP_INFO` tells of a TCP socket that crs looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpInfo {
    /// TCP_ESTABLISHED (1) ... TCP_LISTEN (10).
    pub state: u8,
    /// A listener: connections waiting to be accepted (`tcpi_unacked`).
    pub pending: u32,
    /// A listener: its backlog, as listen() set it (`tcpi_sacked`).
    pub backlog: u32,
    /// `tcpi_options`: the TCPI_OPT_* the handshake agreed on.
    pub options: u32,
    /// The window scale shifts: what the peer applies to ours, and we to the peer's.
    pub snd_wscale: u32,
    /// See `snd_wscale`.
    pub rcv_wscale: u32,
}

/// `getsockopt(TCP_INFO)`.
pub fn tcp_info(fd: BorrowedFd<'_>) -> io::Result<TcpInfo> {
    // struct tcp_info: u8 state, ca_state, retransmits, probes, backoff, options, then
    // the two 4-bit window scales (snd low, rcv high) and one more u8; then u32 rto, ato,
    // snd_mss, rcv_mss, unacked, sacked, ...
    let mut buf = [0u8; 104];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `buf` and the length into `len`,
    // both alive across the call.
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    if (len as usize) < 32 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a short tcp_info",
        ));
    }
    let word = |at: usize| u32::from_ne_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
    Ok(TcpInfo {
        state: buf[0],
        pending: word(24),
        backlog: word(28),
        options: u32::from(buf[5]),
        snd_wscale: u32::from(buf[6] & 0xf),
        rcv_wscale: u32::from(buf[6] >> 4),
    })
}

/// The bytes queued for reading (SIOCINQ; for a datagram socket, the next datagram's).
pub fn queued(fd: BorrowedFd<'_>) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD (SIOCINQ) writes one int through the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Whether a datagram is queued for reading on `fd`, by poll (for a socket without
/// SIOCINQ: an ICMP ping socket). A receive side shut down also polls readable: that is
/// no datagram.
pub fn datagram_queued(fd: BorrowedFd<'_>) -> io::Result<bool> {
    let revents = poll_now(fd, libc::POLLIN | libc::POLLRDHUP)?;
    Ok(revents & libc::POLLIN != 0 && revents & libc::POLLRDHUP == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unixsk::listen;
    use std::os::fd::AsFd;

    #[test]
    fn udp_bound_and_connected_reads_back_its_addresses() {
        let a = socket(libc::AF_INET, libc::SOCK_DGRAM, libc::IPPROTO_UDP).unwrap();
        bind(a.as_fd(), &"127.0.0.1:0".parse().unwrap()).unwrap();
        let local = local_addr(a.as_fd()).unwrap().unwrap();
        assert_eq!(local.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
        assert_ne!(local.port(), 0);
        assert_eq!(peer_addr(a.as_fd()).unwrap(), None);
        let b = socket(libc::AF_INET6, libc::SOCK_DGRAM, libc::IPPROTO_UDP).unwrap();
        connect(b.as_fd(), &"[::ffff:127.0.0.1]:9".parse().unwrap()).unwrap();
        assert_eq!(
            peer_addr(b.as_fd()).unwrap(),
            Some("[::ffff:127.0.0.1]:9".parse().unwrap())
        );
        assert_eq!(queued(a.as_fd()).unwrap(), 0);
    }

    #[test]
    fn tcp_bound_inactive_has_a_bound_socket_not_one_closed_after_connecting() {
        use std::os::unix::fs::MetadataExt;
        let ino = |s: &std::net::TcpStream| {
            std::fs::metadata(format!("/proc/self/fd/{}", s.as_raw_fd()))
                .unwrap()
                .ino()
        };
        let b = socket(libc::AF_INET, libc::SOCK_STREAM, 0).unwrap();
        bind(b.as_fd(), &"127.0.0.1:0".parse().unwrap()).unwrap();
        let b_ino = std::fs::metadata(format!("/proc/self/fd/{}", b.as_raw_fd()))
            .unwrap()
            .ino();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        drop(s); // c gets a FIN; its shutdown then ends the connection
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut buf = [0u8; 1];
        assert_eq!(std::io::Read::read(&mut &c, &mut buf).unwrap(), 0);
        let bound = diag_shutdown(
            libc::AF_INET,
            libc::IPPROTO_TCP,
            1 << tcp_state::TCP_BOUND_INACTIVE,
        )
        .unwrap();
        assert!(bound.contains_key(&b_ino), "the bound socket is not listed");
        assert!(
            !bound.contains_key(&ino(&c)),
            "the closed connection is listed"
        );
    }

    #[test]
    fn inet_diag_shows_a_connection_waiting_to_be_accepted_with_no_inode() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        c.write_all(b"hello").unwrap();
        let all = inet_diag(libc::AF_INET, libc::IPPROTO_TCP, 1 << 1).unwrap();
        let child = all
            .iter()
            .find(|d| d.local == l.local_addr().unwrap() && d.remote == c.local_addr().unwrap())
            .expect("the connection waiting in the listener's queue");
        assert_eq!((child.state, child.inode, child.rqueue), (1, 0, 5));
        let client = all
            .iter()
            .find(|d| d.local == c.local_addr().unwrap())
            .expect("the client");
        assert_ne!(client.inode, 0);
    }

    #[test]
    fn tcp_listener_reports_its_backlog_and_pending() {
        let l = socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP).unwrap();
        bind(l.as_fd(), &"127.0.0.1:0".parse().unwrap()).unwrap();
        listen(l.as_fd(), 7).unwrap();
        let at = local_addr(l.as_fd()).unwrap().unwrap();
        let c = std::net::TcpStream::connect(at).unwrap();
        let info = tcp_info(l.as_fd()).unwrap();
        drop(c);
        assert_eq!((info.state, info.backlog, info.pending), (10, 7, 1));
    }
}
