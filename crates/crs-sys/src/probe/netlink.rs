//! Just enough netlink for the probes: a message builder, a reader of replies (pure, over
//! bytes), and one request/reply exchange on a socket of the calling thread's network
//! namespace.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};

pub(crate) const NLM_F_REQUEST: u16 = 0x1;
pub(crate) const NLM_F_ACK: u16 = 0x4;
pub(crate) const NLM_F_DUMP: u16 = 0x300;
pub(crate) const NLM_F_EXCL: u16 = 0x200;
pub(crate) const NLM_F_CREATE: u16 = 0x400;

pub(crate) const NLMSG_ERROR: u16 = 2;
pub(crate) const NLMSG_DONE: u16 = 3;

const HDR: usize = 16;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A netlink request under construction: header, fixed payload, attributes.
pub(crate) struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    /// A message of `kind` with `flags`; sequence number 1.
    pub(crate) fn new(kind: u16, flags: u16) -> Msg {
        let mut buf = vec![0u8; HDR];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf[8..12].copy_from_slice(&1u32.to_ne_bytes());
        Msg { buf }
    }

    /// Appends `bytes` (a fixed header such as `ifinfomsg`), padded to 4 bytes.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> &mut Msg {
        self.buf.extend_from_slice(bytes);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// Appends attribute `kind` holding `data`.
    pub(crate) fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Msg {
        let len = u16::try_from(4 + data.len()).expect("netlink attribute too long");
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.push(data)
    }

    /// Appends attribute `kind` holding what `inner` appends (a nested attribute).
    pub(crate) fn nest(&mut self, kind: u16, inner: impl FnOnce(&mut Msg)) -> &mut Msg {
        let at = self.buf.len();
        self.attr(kind, &[]);
        inner(self);
        let len = u16::try_from(self.buf.len() - at).expect("netlink attribute too long");
        self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    /// The finished message, its length set.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        std::mem::take(&mut self.buf)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The messages of a run of reply datagrams: (type, payload). Stops at the first
/// malformed header.
pub(crate) fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32_at(buf, 0)? as usize;
        let kind = u16_at(buf, 4)?;
        if len < HDR || len > buf.len() {
            return None;
        }
        let payload = &buf[HDR..len];
        buf = buf.get(align4(len)..).unwrap_or_default();
        Some((kind, payload))
    })
}

/// The attributes in `buf`: (type without the nested/byte-order flags, data).
pub(crate) fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16_at(buf, 0)? as usize;
        let kind = u16_at(buf, 2)? & 0x3fff;
        if len < 4 || len > buf.len() {
            return None;
        }
        let data = &buf[4..len];
        buf = buf.get(align4(len)..).unwrap_or_default();
        Some((kind, data))
    })
}

/// The errno an NLMSG_ERROR (or NLMSG_DONE) payload carries: 0 for an acknowledgement.
pub(crate) fn error_of(payload: &[u8]) -> Option<i32> {
    Some(-(u32_at(payload, 0)? as i32))
}

/// Whether `replies` ends an exchange: it holds NLMSG_DONE or NLMSG_ERROR.
fn complete(replies: &[u8]) -> bool {
    messages(replies).any(|(k, _)| k == NLMSG_ERROR || k == NLMSG_DONE)
}

/// Sends `request` to the kernel on a new netlink socket of `protocol` (in the calling
/// thread's network namespace) and returns every reply datagram up to the one that ends
/// the exchange (NLMSG_DONE or NLMSG_ERROR), concatenated. A silent kernel is an error
/// after 5 s.
pub(crate) fn talk(protocol: SockProtocol, request: &[u8]) -> io::Result<Vec<u8>> {
    let sock = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        protocol,
    )?;
    crate::unixsk::setsockopt_timeval(sock.as_fd(), libc::SO_RCVTIMEO, 5, 0)?;
    // An unconnected netlink socket sends to the kernel; reads take one datagram each.
    let mut sock = File::from(sock);
    sock.write_all(request)?;
    let mut replies = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    while !complete(&replies) {
        let n = sock.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        replies.extend_from_slice(&buf[..n]);
    }
    Ok(replies)
}

/// The first error a run of replies reports (an NLMSG_ERROR that is not an
/// acknowledgement, or an NLMSG_DONE carrying a negative status).
pub(crate) fn first_error(replies: &[u8]) -> Option<i32> {
    messages(replies).find_map(|(k, p)| match k {
        NLMSG_ERROR | NLMSG_DONE => error_of(p).filter(|&e| e > 0),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_header_and_attrs_laid_out() {
        let m = Msg::new(90, NLM_F_REQUEST | NLM_F_ACK)
            .push(&[0]) // rtgenmsg
            .attr(2, &7u32.to_ne_bytes())
            .finish();
        assert_eq!(m.len(), 16 + 4 + 8);
        assert_eq!(u32_at(&m, 0), Some(28));
        assert_eq!(u16_at(&m, 4), Some(90));
        assert_eq!(u16_at(&m, 6), Some(5));
        let (kind, payload) = messages(&m).next().unwrap();
        assert_eq!(kind, 90);
        let a: Vec<_> = attrs(&payload[4..]).collect();
        assert_eq!(a, vec![(2, &7u32.to_ne_bytes()[..])]);
    }

    #[test]
    fn msg_nested_attr_length_covers_children() {
        let m = Msg::new(16, 0)
            .nest(18, |m| {
                m.attr(1, b"veth");
                m.nest(2, |m| {
                    m.attr(3, b"abc\0");
                });
            })
            .finish();
        let (_, payload) = messages(&m).next().unwrap();
        let outer: Vec<_> = attrs(payload).collect();
        assert_eq!(outer.len(), 1);
        assert_eq!(outer[0].0, 18);
        let inner: Vec<_> = attrs(outer[0].1).collect();
        assert_eq!(inner[0], (1, &b"veth"[..]));
        assert_eq!(inner[1].0, 2);
        assert_eq!(attrs(inner[1].1).next(), Some((3, &b"abc\0"[..])));
    }

    fn reply(kind: u16, payload: &[u8]) -> Vec<u8> {
        Msg::new(kind, 0).push(payload).finish()
    }

    #[test]
    fn first_error_ack_is_none_error_is_errno() {
        let ack = reply(NLMSG_ERROR, &0i32.to_ne_bytes());
        assert_eq!(first_error(&ack), None);
        assert!(complete(&ack));
        let enodev = reply(NLMSG_ERROR, &(-libc::ENODEV).to_ne_bytes());
        assert_eq!(first_error(&enodev), Some(libc::ENODEV));
    }

    #[test]
    fn first_error_dump_done_with_status() {
        let mut replies = reply(20, &[1, 2, 3, 4]);
        assert!(!complete(&replies));
        replies.extend(reply(NLMSG_DONE, &0i32.to_ne_bytes()));
        assert!(complete(&replies));
        assert_eq!(first_error(&replies), None);
        let failed = reply(NLMSG_DONE, &(-libc::ENOENT).to_ne_bytes());
        assert_eq!(first_error(&failed), Some(libc::ENOENT));
    }

    #[test]
    fn messages_truncated_header_stops() {
        let mut m = reply(20, &[0; 8]);
        m.truncate(20);
        assert_eq!(messages(&m).count(), 0);
        assert_eq!(attrs(&[8, 0, 1, 0, 1]).count(), 0);
    }
}
