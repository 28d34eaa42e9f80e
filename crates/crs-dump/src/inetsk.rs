//! UDP sockets and TCP sockets that are not connected (listening with no connection
//! waiting to be accepted, or only bound), IPv4 and IPv6: their addresses, state, backlog
//! and options, as CRIU's `inet_sk_entry` in files.img. TCP connections (#13's
//! TCP_REPAIR), a listener with connections waiting, raw and ICMP sockets, and a UDP
//! socket with datagrams queued for reading (CRIU saves none: they would be lost) are
//! refused by name.
//!
//! Addresses are CRIU's: `src_addr`/`dst_addr` hold the address bytes as 32-bit words in
//! memory order (one word for IPv4, four for IPv6), as inet_diag gives them.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::PathBuf;

use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::sk_inet::{Inet_sk_entry, Ip_opts_entry};
use crs_proc::FdInfo;
use crs_sys::inetsk;
use crs_sys::unixsk as sk;
use protobuf::{EnumOrUnknown, MessageField};
use tracing::debug;

use super::unixsk::sk_opts;
use super::{FdEntry, FileTable};
use crate::error::{DumpError, Result};

/// TCP states as inet_diag reports them, which CRIU records for UDP too.
const TCP_ESTABLISHED: u32 = 1;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u8 = 10;

/// The address as CRIU's repeated uint32 (memory-order words).
pub(crate) fn addr_words(ip: &IpAddr) -> Vec<u32> {
    let bytes: Vec<u8> = match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

impl FileTable {
    /// Dumps inet socket fd `fd` of process `pid` (`file`, crs's copy of it, of `domain`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn inet_fd(
        &mut self,
        pid: i32,
        fd: i32,
        info: &FdInfo,
        link: &str,
        file: File,
        key: (u64, u64),
        domain: i32,
    ) -> Result<FdEntry> {
        let unsupported = |why| DumpError::UnsupportedFd {
            pid,
            fd,
            link: link.to_string(),
            why,
        };
        let path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
        let io_err = |what: &'static str| {
            let path = path.clone();
            move |source| DumpError::File { what, path, source }
        };
        let s = file.as_fd();
        let kind = sk::getsockopt_int(s, libc::SOL_SOCKET, libc::SO_TYPE)
            .map_err(io_err("reading SO_TYPE of"))?;
        let proto = sk::getsockopt_int(s, libc::SOL_SOCKET, libc::SO_PROTOCOL)
            .map_err(io_err("reading SO_PROTOCOL of"))?;
        // UDP-lite is UDP with a partial checksum: the same state to save.
        let udp = kind == libc::SOCK_DGRAM
            && (proto == libc::IPPROTO_UDP || proto == libc::IPPROTO_UDPLITE);
        let tcp = kind == libc::SOCK_STREAM && proto == libc::IPPROTO_TCP;
        if !udp && !tcp {
            return Err(unsupported(
                "inet sockets other than UDP, UDP-lite and TCP ones (raw, ICMP, SCTP)",
            ));
        }
        let id = match self.shared_with(pid, fd, key)?.map(|(_, id)| id) {
            Some(id) => id,
            None => {
                // A TCP socket: listening (nothing waiting) or closed, with its backlog.
                let (tcp_state, backlog) = if tcp {
                    let info = inetsk::tcp_info(s).map_err(io_err("reading TCP_INFO of"))?;
                    match info.state {
                        TCP_LISTEN if info.pending > 0 => {
                            return Err(unsupported(
                                "a TCP listener with connections waiting to be accepted",
                            ))
                        }
                        TCP_LISTEN => (u32::from(TCP_LISTEN), info.backlog),
                        s if u32::from(s) == TCP_CLOSE => (TCP_CLOSE, 0),
                        _ => {
                            return Err(unsupported(
                                "a TCP connection (established, connecting or closing)",
                            ))
                        }
                    }
                } else {
                    if inetsk::queued(s).map_err(io_err("reading the queue of"))? > 0 {
                        return Err(unsupported(
                            "a UDP socket with datagrams queued for reading",
                        ));
                    }
                    (0, 0)
                };
                let local = inetsk::local_addr(s).map_err(io_err("getsockname of"))?;
                let peer = inetsk::peer_addr(s).map_err(io_err("getpeername of"))?;
                let any = |a: &Option<SocketAddr>| -> SocketAddr {
                    a.unwrap_or_else(|| match domain {
                        libc::AF_INET6 => "[::]:0".parse().expect("an address"),
                        _ => "0.0.0.0:0".parse().expect("an address"),
                    })
                };
                let (src, dst) = (any(&local), any(&peer));
                let int = |level, name| sk::getsockopt_int(s, level, name);
                let (ip_level, tos, ttl) = if domain == libc::AF_INET6 {
                    (
                        libc::IPPROTO_IPV6,
                        libc::IPV6_TCLASS,
                        libc::IPV6_UNICAST_HOPS,
                    )
                } else {
                    (libc::IPPROTO_IP, libc::IP_TOS, libc::IP_TTL)
                };
                let ip_opts = Ip_opts_entry {
                    freebind: Some(
                        int(libc::IPPROTO_IP, libc::IP_FREEBIND)
                            .map_err(io_err("reading IP_FREEBIND of"))?
                            != 0,
                    ),
                    tos: Some(int(ip_level, tos).map_err(io_err("reading the TOS of"))? as u32),
                    ttl: Some(int(ip_level, ttl).map_err(io_err("reading the TTL of"))? as u32),
                    ..Default::default()
                };
                let v6only = if domain == libc::AF_INET6 {
                    Some(
                        int(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
                            .map_err(io_err("reading IPV6_V6ONLY of"))?
                            != 0,
                    )
                } else {
                    None
                };
                let id = self.alloc();
                let fown = self.fown(&file, pid)?;
                let opts = sk_opts(&file).map_err(io_err("reading the options of"))?;
                let state = if tcp {
                    tcp_state
                } else if peer.is_some() {
                    TCP_ESTABLISHED
                } else {
                    TCP_CLOSE
                };
                debug!(pid, fd, id, %src, %dst, state, tcp, "inet socket");
                self.entries.push(File_entry {
                    type_: Some(EnumOrUnknown::new(Fd_types::INETSK)),
                    id: Some(id),
                    isk: MessageField::some(Inet_sk_entry {
                        id: Some(id),
                        ino: Some(key.1 as u32),
                        family: Some(domain as u32),
                        type_: Some(kind as u32),
                        proto: Some(proto as u32),
                        state: Some(state),
                        src_port: Some(u32::from(src.port())),
                        dst_port: Some(u32::from(dst.port())),
                        flags: Some(info.flags & !(libc::O_CLOEXEC as u32)),
                        backlog: Some(backlog),
                        src_addr: addr_words(&src.ip()),
                        dst_addr: addr_words(&dst.ip()),
                        fown: MessageField::some(fown),
                        opts: MessageField::some(opts),
                        v6only,
                        ip_opts: MessageField::some(ip_opts),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                id
            }
        };
        Ok(self.seen_fd((pid, fd), key, id, info.flags, Fd_types::INETSK))
    }
}
