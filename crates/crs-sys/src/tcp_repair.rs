//! TCP repair mode (`TCP_REPAIR`, Linux 3.5+): a socket in repair mode sends nothing (no
//! ACK, no FIN or RST when closed), its sequence numbers and options can be read and set,
//! its queues read without being consumed and filled without being sent, and `connect`
//! makes it established at once, without a handshake. Needs CAP_NET_ADMIN.
//!
//! ```text
//!   send queue:  snd_una ... snd_nxt ... write_seq     (SIOCOUTQ = write_seq - snd_una,
//!                 (sent, not acked)(not sent)           SIOCOUTQNSD = write_seq - snd_nxt)
//!   recv queue:  copied_seq ... rcv_nxt                (SIOCINQ = rcv_nxt - copied_seq)
//!   TCP_QUEUE_SEQ reads write_seq / rcv_nxt; set (on a new socket) it is where the queue
//!   starts, and what is then put in the queue moves it on.
//! ```

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use crate::unixsk::{getsockopt_int, setsockopt_int};

const TCP_REPAIR: i32 = 19;
const TCP_REPAIR_QUEUE: i32 = 20;
const TCP_QUEUE_SEQ: i32 = 21;
const TCP_REPAIR_OPTIONS: i32 = 22;
const TCP_TIMESTAMP: i32 = 24;
const TCP_REPAIR_WINDOW: i32 = 29;
const SIOCOUTQNSD: libc::c_ulong = 0x894b;

/// One of a socket's two queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// Neither (`TCP_NO_QUEUE`), as a socket in repair mode starts.
    None = 0,
    /// Bytes received, not yet read (`TCP_RECV_QUEUE`).
    Recv = 1,
    /// Bytes written, not yet acknowledged (`TCP_SEND_QUEUE`).
    Send = 2,
}

/// `TCPOPT_*` codes `TCP_REPAIR_OPTIONS` takes.
pub const TCPOPT_MAXSEG: u32 = 2;
/// Window scale: the value is `snd_wscale | rcv_wscale << 16`.
pub const TCPOPT_WINDOW: u32 = 3;
/// SACK permitted (value 0).
pub const TCPOPT_SACK_PERM: u32 = 4;
/// Timestamps (value 0).
pub const TCPOPT_TIMESTAMP: u32 = 8;

/// `tcpi_options` bits.
pub const TCPI_OPT_TIMESTAMPS: u32 = 1;
/// SACK was negotiated.
pub const TCPI_OPT_SACK: u32 = 2;
/// Window scaling was negotiated.
pub const TCPI_OPT_WSCALE: u32 = 4;

fn int(fd: BorrowedFd<'_>, name: i32) -> io::Result<i32> {
    getsockopt_int(fd, libc::IPPROTO_TCP, name)
}

fn set_int(fd: BorrowedFd<'_>, name: i32, v: i32) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, name, v)
}

/// Repair mode on or off. Turned off on an established socket, the kernel sends a window
/// probe; on, sockets bind whatever the address's other users (`SK_FORCE_REUSE`), and off
/// again leaves SO_REUSEADDR off.
pub fn set_repair(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    set_int(fd, TCP_REPAIR, i32::from(on))
}

/// Repair mode off without the window probe (`TCP_REPAIR_OFF_NO_WP`), for a socket whose
/// state was only read, and SO_REUSEADDR back to `reuseaddr`.
pub fn leave_quietly(fd: BorrowedFd<'_>, reuseaddr: bool) -> io::Result<()> {
    set_int(fd, TCP_REPAIR, -1)?;
    setsockopt_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        i32::from(reuseaddr),
    )
}

/// Repair mode off, and SO_REUSEADDR as it was before it was turned on (`reuseaddr`).
pub fn resume(fd: BorrowedFd<'_>, reuseaddr: bool) -> io::Result<()> {
    set_repair(fd, false)?;
    setsockopt_int(
        fd,
        libc::SOL_SOCKET,
        libc::SO_REUSEADDR,
        i32::from(reuseaddr),
    )
}

/// Which queue `queue_seq`, `set_queue_seq`, `peek` and `send` act on.
pub fn select_queue(fd: BorrowedFd<'_>, q: Queue) -> io::Result<()> {
    set_int(fd, TCP_REPAIR_QUEUE, q as i32)
}

/// The selected queue's sequence number (write_seq or rcv_nxt).
pub fn queue_seq(fd: BorrowedFd<'_>) -> io::Result<u32> {
    int(fd, TCP_QUEUE_SEQ).map(|v| v as u32)
}

/// Sets where the selected queue starts (a socket not yet connected).
pub fn set_queue_seq(fd: BorrowedFd<'_>, seq: u32) -> io::Result<()> {
    set_int(fd, TCP_QUEUE_SEQ, seq as i32)
}

/// The TCP timestamp clock of the socket (`TCP_TIMESTAMP`).
pub fn timestamp(fd: BorrowedFd<'_>) -> io::Result<u32> {
    int(fd, TCP_TIMESTAMP).map(|v| v as u32)
}

/// Sets the socket's timestamp clock to go on from `ts`.
pub fn set_timestamp(fd: BorrowedFd<'_>, ts: u32) -> io::Result<()> {
    set_int(fd, TCP_TIMESTAMP, ts as i32)
}

/// The MSS clamp (`TCP_MAXSEG`).
pub fn mss(fd: BorrowedFd<'_>) -> io::Result<u32> {
    int(fd, libc::TCP_MAXSEG).map(|v| v as u32)
}

fn ioctl_int(fd: BorrowedFd<'_>, req: libc::c_ulong) -> io::Result<u32> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCINQ, SIOCOUTQ and SIOCOUTQNSD write one int through the pointer, a live
    // local; the fd is borrowed.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req as _, &mut n) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as u32)
}

/// Bytes in the receive queue (SIOCINQ).
pub fn inq_len(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_int(fd, libc::FIONREAD as libc::c_ulong)
}

/// Bytes in the send queue, sent or not (SIOCOUTQ).
pub fn outq_len(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_int(fd, libc::TIOCOUTQ as libc::c_ulong)
}

/// Bytes of the send queue not yet sent (SIOCOUTQNSD).
pub fn unsent_len(fd: BorrowedFd<'_>) -> io::Result<u32> {
    ioctl_int(fd, SIOCOUTQNSD)
}

/// The selected queue's `len` bytes, left in the queue (recv with MSG_PEEK). Fewer or more
/// bytes than `len` is an error: the queue changed under a frozen socket.
pub fn peek(fd: BorrowedFd<'_>, len: usize) -> io::Result<Vec<u8>> {
    if len == 0 {
        // An empty queue answers EAGAIN (or its last data if not quite empty): nothing
        // to read.
        return Ok(Vec::new());
    }
    let mut buf = vec![0u8; len + 1];
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`, alive across the call.
    let n = unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("the queue holds {n} bytes, not the {len} its size said"),
        ));
    }
    buf.truncate(len);
    Ok(buf)
}

/// Writes all of `data` into the selected queue (in repair mode: as received, or as sent
/// and unacknowledged; out of it: as new data to send). The kernel takes a receive
/// queue's write as one linear buffer: when one that large cannot be had (ENOMEM), the
/// pieces are halved.
pub fn send(fd: BorrowedFd<'_>, data: &[u8]) -> io::Result<()> {
    let mut off = 0;
    let mut chunk = data.len().max(1);
    while off < data.len() {
        let len = chunk.min(data.len() - off);
        // SAFETY: send reads `len` bytes from `data[off..]`, in bounds and alive.
        let n = unsafe {
            libc::send(
                fd.as_raw_fd(),
                data[off..].as_ptr().cast(),
                len,
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            let e = io::Error::last_os_error();
            if chunk > 1024 && (n == 0 || e.raw_os_error() == Some(libc::ENOMEM)) {
                chunk /= 2;
                continue;
            }
            return Err(if n == 0 {
                io::Error::new(io::ErrorKind::WriteZero, "the queue took no bytes")
            } else {
                e
            });
        }
        off += n as usize;
    }
    Ok(())
}

/// `TCP_REPAIR_OPTIONS`: the options the handshake negotiated, as (TCPOPT_*, value).
pub fn set_options(fd: BorrowedFd<'_>, opts: &[(u32, u32)]) -> io::Result<()> {
    let words: Vec<u32> = opts.iter().flat_map(|&(c, v)| [c, v]).collect();
    set_raw(fd, TCP_REPAIR_OPTIONS, &words)
}

/// The window state `TCP_REPAIR_WINDOW` reads and sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    /// Sequence number of the segment that last updated the send window.
    pub snd_wl1: u32,
    /// The send window.
    pub snd_wnd: u32,
    /// The largest window the peer offered.
    pub max_window: u32,
    /// The receive window offered.
    pub rcv_wnd: u32,
    /// rcv_nxt when the receive window was last offered.
    pub rcv_wup: u32,
}

/// `getsockopt(TCP_REPAIR_WINDOW)` (repair mode only).
pub fn window(fd: BorrowedFd<'_>) -> io::Result<Window> {
    let w = crate::inetsk::getsockopt_words(fd, libc::IPPROTO_TCP, TCP_REPAIR_WINDOW, 5)?;
    if w.len() != 5 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("TCP_REPAIR_WINDOW of {} words", w.len()),
        ));
    }
    Ok(Window {
        snd_wl1: w[0],
        snd_wnd: w[1],
        max_window: w[2],
        rcv_wnd: w[3],
        rcv_wup: w[4],
    })
}

/// `setsockopt(TCP_REPAIR_WINDOW)` (repair mode, established).
pub fn set_window(fd: BorrowedFd<'_>, w: &Window) -> io::Result<()> {
    set_raw(
        fd,
        TCP_REPAIR_WINDOW,
        &[w.snd_wl1, w.snd_wnd, w.max_window, w.rcv_wnd, w.rcv_wup],
    )
}

fn set_raw(fd: BorrowedFd<'_>, name: i32, words: &[u32]) -> io::Result<()> {
    crate::inetsk::setsockopt_words(fd, libc::IPPROTO_TCP, name, words)
}

/// TCP header flags of [`send_segment`].
pub const TH_FIN: u8 = 0x01;
/// See [`TH_FIN`].
pub const TH_ACK: u8 = 0x10;

/// `shutdown(SHUT_WR)`: in repair mode, the FIN goes into the send queue (as sent when the
/// send queue is selected).
pub fn shutdown_write(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: shutdown takes integers only; the fd is borrowed.
    if unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The one's complement sum of `data` as 16-bit big-endian words, folded.
fn sum16(mut acc: u32, data: &[u8]) -> u32 {
    for pair in data.chunks(2) {
        let w = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        acc += u32::from(w);
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

/// A TCP segment without options or payload, as a peer would send it.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    /// TH_* bits.
    pub flags: u8,
}

/// The IP packet (IPv4 or IPv6 header, then a 20-byte TCP header, its checksum over the
/// pseudo-header) of segment `g`.
pub fn segment(g: &Segment) -> Vec<u8> {
    let Segment {
        src,
        dst,
        seq,
        ack,
        window,
        flags,
    } = *g;
    let mut tcp = Vec::with_capacity(20);
    tcp.extend_from_slice(&src.port().to_be_bytes());
    tcp.extend_from_slice(&dst.port().to_be_bytes());
    tcp.extend_from_slice(&seq.to_be_bytes());
    tcp.extend_from_slice(&ack.to_be_bytes());
    tcp.push(5 << 4); // data offset: 5 words
    tcp.push(flags);
    tcp.extend_from_slice(&window.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                                          // A v4-mapped connection's packets are IPv4.
    let (s, d) = (src.ip().to_canonical(), dst.ip().to_canonical());
    let mut pseudo = Vec::new();
    let mut ip = Vec::new();
    match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, libc::IPPROTO_TCP as u8, 0, 20]);
            // version 4, 5 words; length 40; don't fragment; TTL 64; the header checksum
            // and id are the kernel's to fill in (raw(7)).
            ip.extend_from_slice(&[
                0x45,
                0,
                0,
                40,
                0,
                0,
                0x40,
                0,
                64,
                libc::IPPROTO_TCP as u8,
                0,
                0,
            ]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
        }
        _ => {
            let to6 = |a: IpAddr| match a {
                IpAddr::V6(a) => a,
                IpAddr::V4(a) => a.to_ipv6_mapped(),
            };
            let (s, d) = (to6(s), to6(d));
            pseudo.extend_from_slice(&s.octets());
            pseudo.extend_from_slice(&d.octets());
            pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, libc::IPPROTO_TCP as u8]);
            // version 6; payload 20 bytes; next header TCP; hop limit 64.
            ip.extend_from_slice(&[0x60, 0, 0, 0, 0, 20, libc::IPPROTO_TCP as u8, 64]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
        }
    }
    let sum = !(sum16(sum16(0, &pseudo), &tcp) as u16);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

/// Sends [`segment`] through a raw socket, marked [`crate::netlock::MARK`] so that the
/// network lock lets it through: a segment the peer would have sent (a FIN, or the ACK of
/// ours), for a connection rebuilt in repair mode to take.
pub fn send_segment(g: &Segment) -> io::Result<()> {
    let (dst, pkt) = (g.dst, segment(g));
    let v6 = pkt[0] >> 4 == 6;
    let family = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let s = crate::inetsk::socket(family, libc::SOCK_RAW, libc::IPPROTO_RAW)?;
    if v6 {
        // IPV6_HDRINCL: the packet brings its own IPv6 header.
        setsockopt_int(s.as_fd(), libc::IPPROTO_IPV6, 36, 1)?;
    }
    setsockopt_int(
        s.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_MARK,
        crate::netlock::MARK as i32,
    )?;
    let to = match dst.ip().to_canonical() {
        IpAddr::V4(a) if !v6 => SocketAddr::new(IpAddr::V4(a), 0),
        IpAddr::V4(a) => SocketAddr::new(IpAddr::V6(a.to_ipv6_mapped()), 0),
        IpAddr::V6(a) => SocketAddr::new(IpAddr::V6(a), 0),
    };
    let (ss, len) = crate::inetsk::to_storage(&to);
    // SAFETY: sendto reads `pkt.len()` bytes of `pkt` and `len` bytes of `ss`, a valid
    // sockaddr of that length; both are alive across the call.
    let n = unsafe {
        libc::sendto(
            s.as_raw_fd(),
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inetsk::{bind, connect, local_addr, socket, tcp_info};
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    /// A loopback connection: a socket crs made (`ours`) and the accepted end.
    fn pair() -> (std::os::fd::OwnedFd, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let s = socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP).unwrap();
        connect(s.as_fd(), &l.local_addr().unwrap()).unwrap();
        let (peer, _) = l.accept().unwrap();
        (s, peer)
    }

    #[test]
    fn segment_checksums_verify() {
        // A correct checksum makes the one's complement sum over pseudo-header and
        // segment 0xffff.
        for (src, dst) in [
            ("127.0.0.1:5000", "127.0.0.2:80"),
            ("[::1]:7", "[::1]:9"),
            ("[::ffff:10.0.0.1]:1", "[::ffff:10.0.0.2]:2"),
        ] {
            let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
            let p = segment(&Segment {
                src,
                dst,
                seq: 0x0102_0304,
                ack: 0x0a0b_0c0d,
                window: 512,
                flags: TH_FIN | TH_ACK,
            });
            let (hdr, tcp) = if p[0] >> 4 == 4 {
                p.split_at(20)
            } else {
                p.split_at(40)
            };
            assert_eq!(tcp.len(), 20);
            assert_eq!(&tcp[4..8], &[1, 2, 3, 4]);
            assert_eq!(tcp[13], TH_FIN | TH_ACK);
            let mut pseudo = Vec::new();
            if p[0] >> 4 == 4 {
                pseudo.extend_from_slice(&hdr[12..20]);
                pseudo.extend_from_slice(&[0, 6, 0, 20]);
            } else {
                pseudo.extend_from_slice(&hdr[8..40]);
                pseudo.extend_from_slice(&[0, 0, 0, 20, 0, 0, 0, 6]);
            }
            assert_eq!(sum16(sum16(0, &pseudo), tcp), 0xffff, "{src} -> {dst}");
        }
    }

    #[test]
    fn queues_are_read_in_place_and_refilled_on_a_copy() {
        if !crs_testkit::root_or_skip("queues_are_read_in_place_and_refilled_on_a_copy") {
            return;
        }
        let (s, mut peer) = pair();
        peer.write_all(b"to be read later").unwrap();
        // The bytes are in s's receive queue once SIOCINQ says so (loopback delivers on
        // write).
        assert_eq!(inq_len(s.as_fd()).unwrap(), 16);
        set_repair(s.as_fd(), true).unwrap();
        select_queue(s.as_fd(), Queue::Recv).unwrap();
        let rcv_nxt = queue_seq(s.as_fd()).unwrap();
        assert_eq!(peek(s.as_fd(), 16).unwrap(), b"to be read later");
        assert!(peek(s.as_fd(), 10).is_err(), "a wrong length is an error");
        select_queue(s.as_fd(), Queue::Send).unwrap();
        let write_seq = queue_seq(s.as_fd()).unwrap();
        let w = window(s.as_fd()).unwrap();
        let info = tcp_info(s.as_fd()).unwrap();
        let (src, dst) = (
            local_addr(s.as_fd()).unwrap().unwrap(),
            crate::inetsk::peer_addr(s.as_fd()).unwrap().unwrap(),
        );
        let mss = mss(s.as_fd()).unwrap();
        let ts = timestamp(s.as_fd()).unwrap();
        // A copy: the old socket goes silently (repair mode), the new one takes its place.
        drop(s);
        let c = socket(libc::AF_INET, libc::SOCK_STREAM, libc::IPPROTO_TCP).unwrap();
        let fd = c.as_fd();
        set_repair(fd, true).unwrap();
        select_queue(fd, Queue::Recv).unwrap();
        set_queue_seq(fd, rcv_nxt - 16).unwrap();
        select_queue(fd, Queue::Send).unwrap();
        set_queue_seq(fd, write_seq).unwrap();
        bind(fd, &src).unwrap();
        connect(fd, &dst).unwrap();
        let mut opts = vec![(TCPOPT_MAXSEG, mss)];
        if info.options & TCPI_OPT_TIMESTAMPS != 0 {
            opts.push((TCPOPT_TIMESTAMP, 0));
        }
        set_options(fd, &opts).unwrap();
        set_timestamp(fd, ts).unwrap();
        select_queue(fd, Queue::Recv).unwrap();
        send(fd, b"to be read later").unwrap();
        set_window(fd, &w).unwrap();
        set_repair(fd, false).unwrap();
        assert_eq!(tcp_info(fd).unwrap().state, 1);
        let mut got = [0u8; 16];
        std::fs::File::from(c.try_clone().unwrap())
            .read_exact(&mut got)
            .unwrap();
        assert_eq!(&got, b"to be read later");
        // Both ways still work.
        std::fs::File::from(c).write_all(b"back").unwrap();
        let mut back = [0u8; 4];
        peer.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"back");
    }
}
