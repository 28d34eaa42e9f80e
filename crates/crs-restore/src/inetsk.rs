//! UDP sockets, and TCP sockets listening or only bound (IPv4, IPv6): made in crs and
//! handed to their holders (`handoff`).
//!
//! ```text
//! check  : an inet_sk_entry of a UDP datagram socket, IPv4 or IPv6, with addresses of
//!          its family's size; anything else (TCP, raw, ...) refused by name
//! create : socket, SO_REUSEADDR and the other options, IPV6_V6ONLY, TOS/TTL, freebind,
//!          bind to its address when it had one, connect to its peer when it had one (UDP)
//!          or listen with its backlog (TCP), O_NONBLOCK; the owner (F_SETOWN) is the
//!          holder's to set (`fown`)
//! ```
//! Datagrams queued at the dump were refused then: nothing is queued here.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, OwnedFd};

use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::sk_inet::Inet_sk_entry;
use crs_sys::inetsk;
use crs_sys::unixsk as sk;
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::handoff::CrsFiles;
use crate::images::Tree;
use crate::RestoreError;

const TCP_ESTABLISHED: u32 = 1;
const TCP_CLOSE: u32 = 7;
const TCP_LISTEN: u32 = 10;

fn isk(f: &File_entry) -> Result<&Inet_sk_entry, RestoreError> {
    f.isk
        .as_ref()
        .ok_or_else(|| invalid("files.img", format!("file id {} has no isk entry", f.id())))
}

/// The address CRIU's words stand for (`family`'s size).
fn addr(family: i32, words: &[u32], port: u32) -> Option<SocketAddr> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let ip = match (family, bytes.len()) {
        (libc::AF_INET, 4) => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        (libc::AF_INET6, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&bytes[..]).ok()?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, u16::try_from(port).ok()?))
}

/// Checks file entry `f` (an INETSK) is a socket crs restores.
pub(crate) fn check(f: &File_entry) -> Result<(), RestoreError> {
    let e = isk(f)?;
    let id = f.id();
    let family = e.family() as i32;
    if family != libc::AF_INET && family != libc::AF_INET6 {
        return Err(invalid(
            "files.img",
            format!("inet socket {id}: family {family}"),
        ));
    }
    let udp = e.type_() as i32 == libc::SOCK_DGRAM
        && (e.proto() as i32 == libc::IPPROTO_UDP || e.proto() as i32 == libc::IPPROTO_UDPLITE);
    let tcp = e.type_() as i32 == libc::SOCK_STREAM && e.proto() as i32 == libc::IPPROTO_TCP;
    if !udp && !tcp {
        return Err(unsupported(format!(
            "files.img: inet socket {id} of type {} and protocol {} (crs restores UDP, \
             UDP-lite and TCP sockets only)",
            e.type_(),
            e.proto()
        )));
    }
    if udp && e.state() != TCP_ESTABLISHED && e.state() != TCP_CLOSE {
        return Err(invalid(
            "files.img",
            format!("UDP socket {id}: state {}", e.state()),
        ));
    }
    if tcp && e.state() != TCP_LISTEN && e.state() != TCP_CLOSE {
        return Err(unsupported(format!(
            "files.img: TCP socket {id} in state {} (crs restores listening and closed \
             ones; connections need TCP_REPAIR)",
            e.state()
        )));
    }
    if addr(family, &e.src_addr, e.src_port()).is_none()
        || addr(family, &e.dst_addr, e.dst_port()).is_none()
    {
        return Err(invalid(
            "files.img",
            format!("inet socket {id}: an address or port of the wrong size for its family"),
        ));
    }
    Ok(())
}

/// Makes every inet socket the tree holds, in crs, for the holders to take.
pub(crate) fn create_in_crs(tree: &Tree, out: &mut CrsFiles) -> Result<(), RestoreError> {
    let Some(first) = tree.procs.first() else {
        return Ok(());
    };
    let held: BTreeSet<u32> = tree
        .procs
        .iter()
        .flat_map(|p| p.fdinfo.iter())
        .filter(|e| e.type_() == Fd_types::INETSK)
        .map(|e| e.id())
        .collect();
    for id in held {
        let e = isk(&first.files[&id])?;
        let fd = make(e).map_err(|(what, source)| RestoreError::InetSocket { id, what, source })?;
        out.by_id.insert(id, fd);
    }
    Ok(())
}

type Failed = (String, std::io::Error);

fn make(e: &Inet_sk_entry) -> Result<OwnedFd, Failed> {
    let family = e.family() as i32;
    let at = |what: &str| {
        let what = what.to_string();
        move |source| (what, source)
    };
    let s = inetsk::socket(family, e.type_() as i32, e.proto() as i32).map_err(at("socket"))?;
    let fd = s.as_fd();
    let int = |level, name, v: u32| sk::setsockopt_int(fd, level, name, v as i32);
    if let Some(o) = e.opts.as_ref() {
        crate::unixsk::set_sk_opts(fd, o).map_err(at("the socket options"))?;
    }
    if family == libc::AF_INET6 {
        int(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, u32::from(e.v6only()))
            .map_err(at("IPV6_V6ONLY"))?;
    }
    if let Some(ip) = e.ip_opts.as_ref() {
        let (level, tos, ttl) = if family == libc::AF_INET6 {
            (
                libc::IPPROTO_IPV6,
                libc::IPV6_TCLASS,
                libc::IPV6_UNICAST_HOPS,
            )
        } else {
            (libc::IPPROTO_IP, libc::IP_TOS, libc::IP_TTL)
        };

        if ip.has_tos() && ip.tos() != 0 {
            int(level, tos, ip.tos()).map_err(at("the TOS"))?;
        }
        // What a new socket reports is the default (64, or -1 for IPv6's "use the
        // route's"): set only another value.
        let default_ttl = sk::getsockopt_int(fd, level, ttl).map_err(at("reading the TTL"))?;
        if ip.has_ttl() && ip.ttl() as i32 != default_ttl {
            int(level, ttl, ip.ttl()).map_err(at("the TTL"))?;
        }
    }
    let src = addr(family, &e.src_addr, e.src_port()).expect("checked at load");
    let bound = src.port() != 0 || !src.ip().is_unspecified();
    if bound {
        // With IP_FREEBIND the address need not be local now (a socket bound with it and
        // then turned it off, or moved to a host without the address).
        int(libc::IPPROTO_IP, libc::IP_FREEBIND, 1).map_err(at("IP_FREEBIND"))?;
        inetsk::bind(fd, &src).map_err(at(&format!("bind to {src}")))?;
    }
    // Then IP_FREEBIND as dumped, where that is not what the socket has now (on for a
    // bound one, off for a new one).
    let freebind = e.ip_opts.as_ref().is_some_and(|ip| ip.freebind());
    if freebind != bound {
        int(libc::IPPROTO_IP, libc::IP_FREEBIND, u32::from(freebind)).map_err(at("IP_FREEBIND"))?;
    }
    let tcp = e.type_() as i32 == libc::SOCK_STREAM;
    if !tcp && e.state() == TCP_ESTABLISHED {
        let dst = addr(family, &e.dst_addr, e.dst_port()).expect("checked at load");
        inetsk::connect(fd, &dst).map_err(at(&format!("connect to {dst}")))?;
    }
    if tcp && e.state() == TCP_LISTEN {
        sk::listen(fd, e.backlog() as i32).map_err(at("listen"))?;
    }
    if e.flags() & libc::O_NONBLOCK as u32 != 0 {
        sk::set_nonblock(fd, true).map_err(at("O_NONBLOCK"))?;
    }
    debug!(id = e.id(), %src, state = e.state(), tcp, "inet socket made");
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::MessageField;

    fn entry(kind: i32, proto: i32, state: u32, src_addr: Vec<u32>) -> File_entry {
        File_entry {
            id: Some(5),
            isk: MessageField::some(Inet_sk_entry {
                family: Some(libc::AF_INET as u32),
                type_: Some(kind as u32),
                proto: Some(proto as u32),
                state: Some(state),
                src_addr,
                dst_addr: vec![0],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn refusal(f: &File_entry) -> String {
        check(f).expect_err("check accepted the entry").to_string()
    }

    #[test]
    fn check_accepts_a_listener_and_a_bound_udp_socket() {
        check(&entry(
            libc::SOCK_STREAM,
            libc::IPPROTO_TCP,
            TCP_LISTEN,
            vec![0],
        ))
        .unwrap();
        check(&entry(
            libc::SOCK_DGRAM,
            libc::IPPROTO_UDP,
            TCP_CLOSE,
            vec![0],
        ))
        .unwrap();
    }

    #[test]
    fn check_names_what_it_refuses() {
        let raw = refusal(&entry(
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP,
            TCP_CLOSE,
            vec![0],
        ));
        assert!(
            raw.contains("crs restores UDP, UDP-lite and TCP sockets only"),
            "{raw}"
        );
        let tcp = refusal(&entry(
            libc::SOCK_STREAM,
            libc::IPPROTO_TCP,
            TCP_CLOSE,
            vec![0, 0],
        ));
        assert!(
            tcp.contains("inet socket 5: an address or port of the wrong size"),
            "{tcp}"
        );
        let conn = refusal(&entry(
            libc::SOCK_STREAM,
            libc::IPPROTO_TCP,
            TCP_ESTABLISHED,
            vec![0],
        ));
        assert!(conn.contains("TCP socket 5 in state 1"), "{conn}");
    }
}
