//! rtnetlink (NETLINK_ROUTE) in the calling thread's network namespace: dumps of links,
//! addresses, routes and rules as the kernel sends them (raw messages: CRIU's images of
//! them are `ip ... save`'s, which is those messages), and requests acknowledged one at a
//! time. netlink-sys makes the socket, netlink-packet-route the messages.

use std::io;

pub use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
pub use netlink_packet_route as route;
pub use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The magic words `ip addr save`, `ip route save` and `ip rule save` write first: CRIU's
/// ifaddr-ID.img, route-ID.img / route6-ID.img and rule-ID.img are their output.
pub const IFADDR_MAGIC: u32 = 0x4736_1222;
pub const ROUTE_MAGIC: u32 = 0x4531_1224;
pub const RULE_MAGIC: u32 = 0x7170_6986;

/// What `ip ... save` writes: `magic`, then the raw messages, each 4-byte aligned.
pub fn save<M: AsRef<[u8]>>(magic: u32, msgs: &[M]) -> Vec<u8> {
    let mut out = magic.to_ne_bytes().to_vec();
    for m in msgs {
        out.extend_from_slice(m.as_ref());
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_DUMP_INTR: u16 = 16;

/// A NETLINK_ROUTE socket of the calling thread's network namespace.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Parses one raw rtnetlink message (a dump's, or an image's).
pub fn parse(m: &[u8]) -> io::Result<NetlinkMessage<RouteNetlinkMessage>> {
    NetlinkMessage::deserialize(m).map_err(|e| bad(format!("rtnetlink message: {e}")))
}

/// Splits `buf` into the netlink messages it holds (each 4-byte aligned, as the kernel
/// and `ip ... save` lay them out).
pub fn split(buf: &[u8]) -> io::Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let Some(h) = buf.get(at..at + 16) else {
            return Err(bad(format!(
                "{} bytes at {at}: too few for a netlink header",
                buf.len() - at
            )));
        };
        let len = u32::from_ne_bytes(h[..4].try_into().expect("4 bytes")) as usize;
        if len < 16 || at + len > buf.len() {
            return Err(bad(format!(
                "a netlink message of {len} bytes at {at} of {}",
                buf.len()
            )));
        }
        out.push(&buf[at..at + len]);
        at += len.next_multiple_of(4).min(buf.len() - at);
    }
    Ok(out)
}

impl Rtnl {
    /// A socket of the calling thread's network namespace.
    pub fn open() -> io::Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE)?;
        sock.bind_auto()?;
        sock.connect(&SocketAddr::new(0, 0))?;
        Ok(Rtnl { sock, seq: 0 })
    }

    fn send_raw(&mut self, buf: &mut [u8], flags: u16) -> io::Result<u32> {
        self.seq += 1;
        buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        buf[8..12].copy_from_slice(&self.seq.to_ne_bytes());
        let n = self.sock.send(buf, 0)?;
        if n != buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("rtnetlink: sent {n} of {} bytes", buf.len()),
            ));
        }
        Ok(self.seq)
    }

    fn send(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<u32> {
        let mut m = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        m.finalize();
        let mut buf = vec![0; m.buffer_len()];
        m.serialize(&mut buf);
        self.send_raw(&mut buf, flags)
    }

    /// The raw messages a dump request `msg` gets back (the kernel's layout, NLM_F_MULTI
    /// set), up to NLMSG_DONE. A dump the kernel says was interrupted (the namespace
    /// changed during it) is an error.
    pub fn dump(&mut self, msg: RouteNetlinkMessage) -> io::Result<Vec<Vec<u8>>> {
        let seq = self.send(msg, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut out = Vec::new();
        loop {
            let (buf, _) = self.sock.recv_from_full()?;
            for m in split(&buf)? {
                let kind = u16::from_ne_bytes([m[4], m[5]]);
                let flags = u16::from_ne_bytes([m[6], m[7]]);
                if u32::from_ne_bytes(m[8..12].try_into().expect("4 bytes")) != seq {
                    continue;
                }
                if flags & NLM_F_DUMP_INTR != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::Interrupted,
                        "rtnetlink: the dump was interrupted (the namespace changed during it)",
                    ));
                }
                match kind {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => errno_of(m)?,
                    _ => out.push(m.to_vec()),
                }
            }
        }
    }

    /// Sends a copy of raw message `m` (as a dump gave it) as a request, with `flags`,
    /// and waits for its acknowledgement. `Ok(false)`: the kernel has it already
    /// (EEXIST), as `ip ... restore` takes it.
    pub fn apply_raw(&mut self, m: &[u8], flags: u16) -> io::Result<bool> {
        let mut buf = m.to_vec();
        if buf.len() < 16 {
            return Err(bad(format!("a netlink message of {} bytes", buf.len())));
        }
        let seq = self.send_raw(&mut buf, flags | NLM_F_REQUEST | NLM_F_ACK)?;
        self.ack(seq)
    }

    /// Sends request `msg` with `flags` and waits for its acknowledgement (`Ok(false)`:
    /// EEXIST).
    pub fn apply(&mut self, msg: RouteNetlinkMessage, flags: u16) -> io::Result<bool> {
        let seq = self.send(msg, flags | NLM_F_REQUEST | NLM_F_ACK)?;
        self.ack(seq)
    }

    fn ack(&mut self, seq: u32) -> io::Result<bool> {
        loop {
            let (buf, _) = self.sock.recv_from_full()?;
            for m in split(&buf)? {
                let kind = u16::from_ne_bytes([m[4], m[5]]);
                if kind != NLMSG_ERROR
                    || u32::from_ne_bytes(m[8..12].try_into().expect("4 bytes")) != seq
                {
                    continue;
                }
                return match errno_of(m) {
                    Ok(()) => Ok(true),
                    Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(false),
                    Err(e) => Err(e),
                };
            }
        }
    }
}

/// The error an NLMSG_ERROR message carries (0: an acknowledgement).
fn errno_of(m: &[u8]) -> io::Result<()> {
    let Some(e) = m.get(16..20) else {
        return Err(bad("a short NLMSG_ERROR message".into()));
    };
    match i32::from_ne_bytes(e.try_into().expect("4 bytes")) {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(-e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_takes_aligned_messages_and_refuses_a_cut_one() {
        let mut buf = Vec::new();
        for len in [20u32, 18] {
            let mut m = vec![0u8; len as usize];
            m[..4].copy_from_slice(&len.to_ne_bytes());
            buf.extend_from_slice(&m);
            buf.resize(buf.len().next_multiple_of(4), 0);
        }
        let parts = split(&buf).unwrap();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [20, 18]);
        let err = split(&buf[..37]).unwrap_err().to_string();
        assert!(
            err.contains("a netlink message of 18 bytes at 20 of 37"),
            "{err}"
        );
    }

    #[test]
    fn dump_of_links_has_the_loopback() {
        use route::link::{LinkAttribute, LinkMessage};
        let mut rt = Rtnl::open().unwrap();
        let links = rt
            .dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))
            .unwrap();
        let names: Vec<String> = links
            .iter()
            .filter_map(|m| match parse(m).unwrap().payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    l.attributes.into_iter().find_map(|a| match a {
                        LinkAttribute::IfName(n) => Some(n),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect();
        assert!(names.iter().any(|n| n == "lo"), "{names:?}");
    }
}
