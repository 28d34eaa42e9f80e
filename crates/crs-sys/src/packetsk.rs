//! AF_PACKET sockets: what packet_diag (NETLINK_SOCK_DIAG) says of one (its device, the
//! options it was given, multicast memberships, ring settings, fanout), and making one
//! bound and set up again.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub const SOL_PACKET: i32 = 263;
pub const PACKET_ADD_MEMBERSHIP: i32 = 1;
pub const PACKET_RX_RING: i32 = 5;
pub const PACKET_COPY_THRESH: i32 = 7;
pub const PACKET_AUXDATA: i32 = 8;
pub const PACKET_ORIGDEV: i32 = 9;
pub const PACKET_VERSION: i32 = 10;
pub const PACKET_RESERVE: i32 = 12;
pub const PACKET_TX_RING: i32 = 13;
pub const PACKET_LOSS: i32 = 14;
pub const PACKET_VNET_HDR: i32 = 15;
pub const PACKET_TIMESTAMP: i32 = 17;
pub const PACKET_FANOUT: i32 = 18;

/// packet_diag_info's flags.
pub const PDI_AUXDATA: u32 = 0x2;
pub const PDI_ORIGDEV: u32 = 0x4;
pub const PDI_VNETHDR: u32 = 0x8;
pub const PDI_LOSS: u32 = 0x10;

/// A multicast (or promiscuous, ...) membership: device, kind, address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub index: u32,
    pub count: u32,
    pub kind: u16,
    pub addr: Vec<u8>,
}

/// A ring's settings (tpacket_req3's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ring {
    pub block_size: u32,
    pub block_nr: u32,
    pub frame_size: u32,
    pub frame_nr: u32,
    pub retire_tmo: u32,
    pub sizeof_priv: u32,
    pub features: u32,
}

/// What packet_diag says of one socket.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PacketDiag {
    pub kind: u8,
    /// The protocol, host order.
    pub protocol: u16,
    pub ino: u32,
    pub ifindex: u32,
    pub version: u32,
    pub reserve: u32,
    pub copy_thresh: u32,
    pub tstamp: u32,
    pub flags: u32,
    pub mclist: Vec<Membership>,
    pub rx_ring: Option<Ring>,
    pub tx_ring: Option<Ring>,
    pub fanout: Option<u32>,
}

fn words(b: &[u8]) -> impl Iterator<Item = u32> + '_ {
    b.chunks_exact(4)
        .map(|w| u32::from_ne_bytes(w.try_into().expect("4 bytes")))
}

fn ring(b: &[u8]) -> Option<Ring> {
    let w: Vec<u32> = words(b).collect();
    (w.len() >= 7).then(|| Ring {
        block_size: w[0],
        block_nr: w[1],
        frame_size: w[2],
        frame_nr: w[3],
        retire_tmo: w[4],
        sizeof_priv: w[5],
        features: w[6],
    })
}

/// Parses one packet_diag_msg with its attributes.
pub fn parse_diag(m: &[u8]) -> Option<PacketDiag> {
    const INFO: u16 = 0;
    const MCLIST: u16 = 1;
    const RX_RING: u16 = 2;
    const TX_RING: u16 = 3;
    const FANOUT: u16 = 4;
    let mut d = PacketDiag {
        kind: *m.get(1)?,
        protocol: u16::from_ne_bytes(m.get(2..4)?.try_into().ok()?),
        ino: u32::from_ne_bytes(m.get(4..8)?.try_into().ok()?),
        ..Default::default()
    };
    let mut at = 16;
    while let Some(h) = m.get(at..at + 4) {
        let len = usize::from(u16::from_ne_bytes([h[0], h[1]]));
        let kind = u16::from_ne_bytes([h[2], h[3]]);
        if len < 4 {
            break;
        }
        let data = m.get(at + 4..at + len)?;
        match kind {
            INFO => {
                let w: Vec<u32> = words(data).collect();
                if w.len() < 6 {
                    return None;
                }
                d.ifindex = w[0];
                d.version = w[1];
                d.reserve = w[2];
                d.copy_thresh = w[3];
                d.tstamp = w[4];
                d.flags = w[5];
            }
            MCLIST => {
                // packet_diag_mclist: index, count, type (u16), alen (u16), addr[32].
                for e in data.chunks_exact(44) {
                    let alen = usize::from(u16::from_ne_bytes([e[10], e[11]])).min(32);
                    d.mclist.push(Membership {
                        index: u32::from_ne_bytes(e[0..4].try_into().ok()?),
                        count: u32::from_ne_bytes(e[4..8].try_into().ok()?),
                        kind: u16::from_ne_bytes([e[8], e[9]]),
                        addr: e[12..12 + alen].to_vec(),
                    });
                }
            }
            RX_RING => d.rx_ring = ring(data),
            TX_RING => d.tx_ring = ring(data),
            FANOUT => d.fanout = words(data).next(),
            _ => {}
        }
        at += (len + 3) & !3;
    }
    Some(d)
}

/// What packet_diag says of the socket of inode `ino` in crs's network namespace.
pub fn diag(ino: u32) -> io::Result<Option<PacketDiag>> {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    // INFO, MCLIST, RING_CFG, FANOUT.
    const SHOW: u32 = 0x1 | 0x2 | 0x4 | 0x8;
    let mut req = Vec::with_capacity(40);
    req.extend_from_slice(&40u32.to_ne_bytes());
    req.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    req.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16).to_ne_bytes());
    req.extend_from_slice(&[0; 8]);
    // packet_diag_req: family, protocol, pad, ino, show, cookie.
    req.extend_from_slice(&[libc::AF_PACKET as u8, 0, 0, 0]);
    req.extend_from_slice(&ino.to_ne_bytes());
    req.extend_from_slice(&SHOW.to_ne_bytes());
    req.resize(40, 0);
    let mut found = None;
    let mut bad = false;
    crate::unixsk::sock_diag_dump(&req, |m| match parse_diag(m) {
        Some(d) if d.ino == ino => found = Some(d),
        Some(_) => {}
        None => bad = true,
    })?;
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "packet_diag: a message too short for what it says it holds",
        ));
    }
    Ok(found)
}

/// A new packet socket (close-on-exec) of `kind` for `protocol` (host order).
pub fn socket(kind: i32, protocol: u16) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers only; a non-negative result is a new fd we own.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            kind | libc::SOCK_CLOEXEC,
            i32::from(protocol.to_be()),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// bind to device `ifindex` (0: every device) for `protocol` (host order).
pub fn bind(fd: BorrowedFd<'_>, ifindex: u32, protocol: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain integers; all-zero is valid.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = protocol.to_be();
    a.sll_ifindex = ifindex as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: bind reads `len` bytes of `a`, a valid sockaddr_ll.
    if unsafe { libc::bind(fd.as_raw_fd(), (&a as *const libc::sockaddr_ll).cast(), len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// PACKET_ADD_MEMBERSHIP of `m`.
pub fn add_membership(fd: BorrowedFd<'_>, m: &Membership) -> io::Result<()> {
    // packet_mreq: ifindex (int), type (u16), alen (u16), address[8].
    let mut b = Vec::with_capacity(16);
    b.extend_from_slice(&(m.index as i32).to_ne_bytes());
    b.extend_from_slice(&m.kind.to_ne_bytes());
    b.extend_from_slice(&(m.addr.len().min(8) as u16).to_ne_bytes());
    let mut addr = [0u8; 8];
    for (d, s) in addr.iter_mut().zip(&m.addr) {
        *d = *s;
    }
    b.extend_from_slice(&addr);
    crate::unixsk::setsockopt_bytes(fd, SOL_PACKET, PACKET_ADD_MEMBERSHIP, &b)
}

/// PACKET_RX_RING / PACKET_TX_RING (`opt`) with `r` (tpacket_req3 for TPACKET_V3, else
/// its first four words).
pub fn set_ring(fd: BorrowedFd<'_>, opt: i32, r: &Ring, version: u32) -> io::Result<()> {
    const TPACKET_V3: u32 = 2;
    let mut w = vec![r.block_size, r.block_nr, r.frame_size, r.frame_nr];
    if version == TPACKET_V3 {
        w.extend([r.retire_tmo, r.sizeof_priv, r.features]);
    }
    let b: Vec<u8> = w.iter().flat_map(|x| x.to_ne_bytes()).collect();
    crate::unixsk::setsockopt_bytes(fd, SOL_PACKET, opt, &b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn diag_shows_what_a_packet_socket_was_given() {
        const ETH_P_IP: u16 = 0x0800;
        let s = socket(libc::SOCK_DGRAM, ETH_P_IP).unwrap();
        let fd = s.as_fd();
        bind(fd, 1, ETH_P_IP).unwrap();
        crate::unixsk::setsockopt_int(fd, SOL_PACKET, PACKET_VERSION, 1).unwrap();
        crate::unixsk::setsockopt_int(fd, SOL_PACKET, PACKET_RESERVE, 16).unwrap();
        crate::unixsk::setsockopt_int(fd, SOL_PACKET, PACKET_AUXDATA, 1).unwrap();
        let m = Membership {
            index: 1,
            count: 1,
            kind: 1, /* PACKET_MR_PROMISC */
            addr: vec![],
        };
        add_membership(fd, &m).unwrap();
        let r = Ring {
            block_size: 4096,
            block_nr: 1,
            frame_size: 2048,
            frame_nr: 2,
            ..Ring::default()
        };
        set_ring(fd, PACKET_RX_RING, &r, 1).unwrap();
        let ino = std::fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino() as u32;
        let d = diag(ino).unwrap().expect("the socket");
        assert_eq!(
            (d.kind, d.protocol, d.ifindex, d.version, d.reserve),
            (libc::SOCK_DGRAM as u8, ETH_P_IP, 1, 1, 16)
        );
        assert_ne!(d.flags & PDI_AUXDATA, 0);
        assert_eq!(d.mclist.len(), 1);
        assert_eq!((d.mclist[0].index, d.mclist[0].kind), (1, 1));
        assert_eq!(
            d.rx_ring.map(|r| (r.block_size, r.frame_nr)),
            Some((4096, 2))
        );
        assert_eq!(d.tx_ring, None);
    }
}
