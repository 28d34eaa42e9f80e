//! `/proc/PID/net/unix`, `/proc/PID/net/{tcp,tcp6,udp,udp6}`: the sockets of the network
//! namespace of a task (sock_diag gives more; these are cheap cross-checks).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::error::ParseError;
use crate::util::{lines, split_token, tokens, Ctx};
use crate::ProcFile;

/// One line of `/proc/net/unix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnixSocketLine {
    /// Kernel address of the socket (hashed unless kptr_restrict allows).
    pub kernel_addr: u64,
    /// Reference count.
    pub refcount: u32,
    /// Protocol (always 0).
    pub protocol: u32,
    /// Flags; 0x10000 (__SO_ACCEPTCON) marks a listening socket.
    pub flags: u32,
    /// SOCK_STREAM 1, SOCK_DGRAM 2, SOCK_SEQPACKET 5.
    pub sock_type: u16,
    /// SS_UNCONNECTED 1, SS_CONNECTING 2, SS_CONNECTED 3, SS_DISCONNECTING 4.
    pub state: u8,
    /// Socket inode (as in `socket:[N]`).
    pub inode: u64,
    /// Bound name: a path, or `@name` for an abstract name (NUL bytes shown as `@`).
    pub path: Option<Vec<u8>>,
}

impl UnixSocketLine {
    /// True for a listening socket.
    pub fn listening(&self) -> bool {
        self.flags & 0x10000 != 0
    }
}

/// Parses `/proc/net/unix` (the header line is skipped).
pub fn parse_net_unix(bytes: &[u8]) -> Result<Vec<UnixSocketLine>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in lines(bytes) {
        let ctx = Ctx::line(ProcFile::NetUnix, n);
        if n == 1 {
            if !line.starts_with(b"Num") {
                return Err(ctx.missing("header line"));
            }
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let mut rest = line;
        let mut col = |what: &'static str| {
            let (t, r) = split_token(rest);
            rest = r;
            if t.is_empty() {
                Err(ctx.missing(what))
            } else {
                Ok(t)
            }
        };
        let num = col("Num")?;
        let num = num
            .strip_suffix(b":")
            .ok_or_else(|| ctx.invalid("Num", num))?;
        let kernel_addr = ctx.hex("Num", num)?;
        let refcount = ctx.hex("RefCount", col("RefCount")?)?;
        let protocol = ctx.hex("Protocol", col("Protocol")?)?;
        let flags = ctx.hex("Flags", col("Flags")?)?;
        let sock_type = ctx.hex("Type", col("Type")?)?;
        let state = ctx.hex("St", col("St")?)?;
        let inode = ctx.dec("Inode", col("Inode")?)?;
        // The path is everything after the single space following the inode.
        let path = (!rest.is_empty()).then(|| rest.to_vec());
        out.push(UnixSocketLine {
            kernel_addr,
            refcount,
            protocol,
            flags,
            sock_type,
            state,
            inode,
            path,
        });
    }
    Ok(out)
}

/// One line of `/proc/net/tcp`, `tcp6`, `udp` or `udp6`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InetSocketLine {
    /// Slot number.
    pub sl: u32,
    /// Local address and port.
    pub local: SocketAddr,
    /// Remote address and port.
    pub remote: SocketAddr,
    /// TCP state (TCP_ESTABLISHED 1 ... TCP_LISTEN 10; UDP uses 7 = TCP_CLOSE, 1 when connected).
    pub state: u8,
    /// Bytes in the send queue.
    pub tx_queue: u32,
    /// Bytes in the receive queue (or accept backlog for a listener).
    pub rx_queue: u32,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode.
    pub inode: u64,
}

fn parse_addr(ctx: &Ctx, t: &[u8]) -> Result<SocketAddr, ParseError> {
    let colon = t
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| ctx.invalid("address", t))?;
    let (a, p) = (&t[..colon], &t[colon + 1..]);
    let port: u16 = ctx.hex("port", p)?;
    // The kernel prints each 32-bit word of the (network-order) address as a native u32.
    let ip = match a.len() {
        8 => {
            let w: u32 = ctx.hex("address", a)?;
            std::net::IpAddr::V4(Ipv4Addr::from(w.to_ne_bytes()))
        }
        32 => {
            let mut b = [0u8; 16];
            for (i, chunk) in a.chunks(8).enumerate() {
                let w: u32 = ctx.hex("address", chunk)?;
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
            }
            std::net::IpAddr::V6(Ipv6Addr::from(b))
        }
        _ => return Err(ctx.invalid("address", t)),
    };
    Ok(SocketAddr::new(ip, port))
}

fn pair(ctx: &Ctx, field: &'static str, t: &[u8]) -> Result<(u32, u32), ParseError> {
    let colon = t
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| ctx.invalid(field, t))?;
    Ok((
        ctx.hex(field, &t[..colon])?,
        ctx.hex(field, &t[colon + 1..])?,
    ))
}

/// Parses `/proc/net/tcp`, `tcp6`, `udp` or `udp6` (`file` names which, for errors; the
/// header line is skipped).
pub fn parse_net_inet(file: ProcFile, bytes: &[u8]) -> Result<Vec<InetSocketLine>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in lines(bytes) {
        let ctx = Ctx::line(file, n);
        if n == 1 {
            if !line.trim_ascii_start().starts_with(b"sl") {
                return Err(ctx.missing("header line"));
            }
            continue;
        }
        let t: Vec<&[u8]> = tokens(line).collect();
        if t.is_empty() {
            continue;
        }
        if t.len() < 10 {
            return Err(ctx.malformed("fewer than 10 columns"));
        }
        let sl = t[0]
            .strip_suffix(b":")
            .ok_or_else(|| ctx.invalid("sl", t[0]))?;
        let (tx_queue, rx_queue) = pair(&ctx, "tx_queue:rx_queue", t[4])?;
        out.push(InetSocketLine {
            sl: ctx.dec("sl", sl)?,
            local: parse_addr(&ctx, t[1])?,
            remote: parse_addr(&ctx, t[2])?,
            state: ctx.hex("st", t[3])?,
            tx_queue,
            rx_queue,
            uid: ctx.dec("uid", t[7])?,
            inode: ctx.dec("inode", t[9])?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;

    #[test]
    fn net_unix_zoo_parsed() {
        let v = parse_net_unix(include_bytes!("../tests/fixtures/zoo/net_unix")).unwrap();
        assert_eq!(v.len(), 6);
        let l = &v[0];
        assert!(l.listening());
        assert_eq!((l.sock_type, l.state, l.inode), (5, 1, 6668));
        assert_eq!(l.path.as_deref(), Some(&b"/tmp/crsproc/sock"[..]));
        assert_eq!(v[2].path, None);
        assert_eq!(v[2].state, 3);
        assert_eq!(v[5].path.as_deref(), Some(&b"@crs-abstract"[..]));
        assert_eq!(v[5].sock_type, 2);
    }

    #[test]
    fn net_unix_path_with_space_kept() {
        let text = b"Num       RefCount Protocol Flags    Type St Inode Path\n\
0000000000000000: 00000002 00000000 00010000 0001 01  77 /tmp/a b\n";
        assert_eq!(
            parse_net_unix(text).unwrap()[0].path.as_deref(),
            Some(&b"/tmp/a b"[..])
        );
    }

    #[test]
    fn net_unix_malformed_names_line() {
        let text = b"Num       RefCount Protocol Flags    Type St Inode Path\n\
0000000000000000: 00000002 00000000\n";
        assert_eq!(
            parse_net_unix(text).unwrap_err().location,
            Location::Line(2)
        );
        assert!(parse_net_unix(b"garbage\n").is_err());
    }

    #[test]
    fn net_tcp_listener_parsed() {
        let v = parse_net_inet(
            ProcFile::NetTcp,
            include_bytes!("../tests/fixtures/zoo/net_tcp"),
        )
        .unwrap();
        assert_eq!(v[0].local, "127.0.0.1:45678".parse().unwrap());
        assert_eq!(v[0].remote, "0.0.0.0:0".parse().unwrap());
        assert_eq!((v[0].state, v[0].inode), (10, 6670));
    }

    #[test]
    fn net_tcp6_and_udp_parsed() {
        let v = parse_net_inet(
            ProcFile::NetTcp6,
            include_bytes!("../tests/fixtures/zoo/net_tcp6"),
        )
        .unwrap();
        assert_eq!(v[0].local, "[::1]:45679".parse().unwrap());
        let u = parse_net_inet(
            ProcFile::NetUdp,
            include_bytes!("../tests/fixtures/zoo/net_udp"),
        )
        .unwrap();
        assert_eq!(u[0].sl, 1427);
        assert_eq!(u[0].local, "127.0.0.1:45680".parse().unwrap());
        assert_eq!(u[0].state, 7);
    }

    #[test]
    fn net_inet_malformed_is_error() {
        let hdr = b"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n";
        let mut t = hdr.to_vec();
        t.extend_from_slice(b"   0: 0100007F:B26E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0\n");
        assert!(parse_net_inet(ProcFile::NetTcp, &t).is_err());
        let mut t = hdr.to_vec();
        t.extend_from_slice(b"   0: 0100007:B26E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1\n");
        assert!(parse_net_inet(ProcFile::NetTcp, &t).is_err());
        assert!(parse_net_inet(ProcFile::NetTcp, b"nope\n").is_err());
    }
}
