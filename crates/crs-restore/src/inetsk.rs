//! UDP and raw sockets, TCP sockets listening or only bound, and established TCP
//! connections (IPv4, IPv6): made in crs and handed to their holders (`handoff`).
//!
//! ```text
//! check  : an inet_sk_entry of a UDP, raw or TCP socket, IPv4 or IPv6, with addresses
//!          of its family's size; a TCP socket listening, closed, established or
//!          half-closed or closing; anything else (SCTP, a connection being opened,
//!          ...) refused by name
//! load   : tcp-stream-INO.img of each established connection (sequence numbers,
//!          window, negotiated options, queued bytes)
//! create : every socket but the connections first (a listener binds its port before
//!          the connections that share it), then the connections, in repair mode:
//!          socket, options, IPV6_V6ONLY, TOS/TTL, freebind
//!          TCP_REPAIR on, each queue's starting sequence number, bind, connect (no
//!          handshake), the negotiated options, the timestamp clock, the receive queue's
//!          bytes and the sent-unacknowledged part of the send queue, the window
//!          (a connection that waited in a listener's queue: its client bound and
//!          connected for real, see `connect_waiting`)
//!          then, every connection made (both ends of one in the tree exist: neither is
//!          answered with a RST), TCP_REPAIR off (a window probe goes out), the unsent
//!          part of the send queue written as new data, SO_REUSEADDR as dumped
//!          bind / connect (UDP) / listen with its backlog (TCP) for the others;
//!          O_NONBLOCK; the owner (F_SETOWN) is the holder's to set (`fown`)
//! ```
//! Datagrams queued at the dump were refused then: nothing is queued here. The sockets
//! are made in the tree's network namespace when it has its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::sk_inet::Inet_sk_entry;
use crs_images::pb::tcp_stream::{Tcp_opts_entry, Tcp_stream_entry};
use crs_sys::inetsk;
use crs_sys::inetsk::tcp_state::*;
use crs_sys::tcp_repair::{self as repair, Queue};
use crs_sys::unixsk as sk;
use tracing::{debug, info, warn};

use crate::error::{invalid, unsupported};
use crate::handoff::CrsFiles;
use crate::images::Tree;
use crate::RestoreError;

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
    let raw = e.type_() as i32 == libc::SOCK_RAW;
    let ping = e.type_() as i32 == libc::SOCK_DGRAM
        && (e.proto() as i32 == libc::IPPROTO_ICMP || e.proto() as i32 == libc::IPPROTO_ICMPV6);
    if !udp && !tcp && !raw && !ping {
        return Err(unsupported(format!(
            "files.img: inet socket {id} of type {} and protocol {} (crs restores UDP, \
             UDP-lite, TCP, ICMP ping and raw sockets only)",
            e.type_(),
            e.proto()
        )));
    }
    if (udp || raw || ping) && e.state() != TCP_ESTABLISHED && e.state() != TCP_CLOSE {
        return Err(invalid(
            "files.img",
            format!("UDP, ping or raw socket {id}: state {}", e.state()),
        ));
    }
    if tcp && !(CONNECTED.contains(&e.state()) || [TCP_LISTEN, TCP_CLOSE].contains(&e.state())) {
        return Err(unsupported(format!(
            "files.img: TCP socket {id} in state {} (crs restores listening, closed, \
             established, half-closed and closing ones; not a connection being opened)",
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

/// The established (or half-closed) connections in the images, with their state.
fn connections(tree: &Tree) -> usize {
    tree.procs
        .first()
        .map_or(0, |p| p.file_images.tcp_streams.len())
}

/// The connections in the images, whether saved with their state or not (--tcp-close).
fn connection_entries(tree: &Tree) -> usize {
    tree.procs.first().map_or(0, |p| {
        p.files
            .values()
            .filter(|f| f.type_() == Fd_types::INETSK)
            .filter(|f| f.isk.as_ref().is_some_and(is_connection))
            .count()
    })
}

/// Established connections are restored with `--tcp-established` only, as CRIU does (the
/// peer of one outside the tree must be waiting for it, and its network locked), or
/// closed with `--tcp-close`, which images dumped with it require (they have no
/// connection's state).
pub(crate) fn check_tree(
    tree: &Tree,
    tcp_established: bool,
    tcp_close: bool,
) -> Result<(), RestoreError> {
    if tree.tcp_close && !tcp_close {
        return Err(unsupported(
            "inventory.img: the images were dumped with --tcp-close (no connection's \
             state is saved): restore with --tcp-close"
                .to_string(),
        ));
    }
    let conns = connections(tree);
    if conns > 0 && !tcp_established && !tcp_close {
        return Err(unsupported(format!(
            "{conns} established TCP connection(s) in the images (restore with \
             --tcp-established, or --tcp-close to restore them closed)"
        )));
    }
    if tcp_close {
        let n = connection_entries(tree);
        if n > 0 {
            info!(
                connections = n,
                "--tcp-close: the connections are restored closed"
            );
        }
    }
    Ok(())
}

/// The connections run (restored, tree let go): the dump's network lock goes, as CRIU's
/// restore removes it (an nftables table named after the dump's run id, made by crs or
/// CRIU; absent when the images come from another host). A tree with a network namespace
/// of its own had its lock there, gone with it. Failing to unlock is only logged: the
/// tree runs already.
pub(crate) fn unlock(tree: &Tree, own_net: bool) {
    if connections(tree) == 0 || own_net {
        return;
    }
    use crs_sys::netlock::method;
    match &tree.net_lock {
        (method::NFTABLES, run_id) if !run_id.is_empty() => {
            let table = crs_sys::netlock::table(run_id);
            match crs_sys::netlock::unlock(&table) {
                Ok(true) => info!(%table, "network unlocked"),
                Ok(false) => debug!(%table, "no network lock to remove"),
                Err(e) => warn!(%table, error = %e, "removing the network lock"),
            }
        }
        (method::IPTABLES, _) => warn!(
            "the images were dumped with an iptables network lock, which crs does not \
             remove: if its rules are on this host, delete them"
        ),
        _ => {}
    }
}

/// One established connection's tcp-stream-INO.img.
#[derive(Debug)]
pub(crate) struct Stream {
    pub entry: Tcp_stream_entry,
    pub inq: Vec<u8>,
    pub outq: Vec<u8>,
}

fn is_connection(e: &Inet_sk_entry) -> bool {
    e.type_() as i32 == libc::SOCK_STREAM && CONNECTED.contains(&e.state())
}

/// Reads tcp-stream-INO.img of every established connection of `files` (by file id).
pub(crate) fn load_streams(
    dir: &Path,
    files: &BTreeMap<u32, File_entry>,
) -> Result<BTreeMap<u32, Stream>, RestoreError> {
    use rayon::prelude::*;
    let conns: Vec<(u32, u32)> = files
        .values()
        .filter(|f| f.type_() == Fd_types::INETSK)
        .filter_map(|f| {
            // Inode 0: a connection waiting in a listener's queue, which no fd holds and
            // which has no image (see `waiting`).
            let e = f
                .isk
                .as_ref()
                .filter(|e| is_connection(e) && e.ino() != 0)?;
            Some((f.id(), e.ino()))
        })
        .collect();
    // Read on the rayon pool: one file per connection (2000 files: ~25 ms on one thread).
    conns
        .into_par_iter()
        .map(|(id, ino)| Ok((id, load_stream(dir, id, ino)?)))
        .collect()
}

/// tcp-stream-INO.img of connection `id`.
fn load_stream(dir: &Path, id: u32, ino: u32) -> Result<Stream, RestoreError> {
    let name = format!("tcp-stream-{ino:x}.img");
    let path = dir.join(&name);
    if !path.exists() {
        return Err(invalid(
            "files.img",
            format!("established TCP socket {id} has no {name} (its sequence numbers and queues)"),
        ));
    }
    let bytes = read_file(&path)?;
    let label = path.display().to_string();
    let mut r = ImageReader::new(&label, &bytes, "TCP_STREAM")?;
    let Some(entry) = r.next::<Tcp_stream_entry>()? else {
        return Err(invalid(&name, "no entry"));
    };
    let bad = |what: String| invalid(&name, what);
    if entry.unsq_len() > entry.outq_len() {
        return Err(bad(format!(
            "{} unsent bytes of a send queue of {}",
            entry.unsq_len(),
            entry.outq_len()
        )));
    }
    if entry.snd_wscale() > 14 || entry.rcv_wscale() > 14 {
        return Err(bad(format!(
            "window scales {} and {} (at most 14)",
            entry.snd_wscale(),
            entry.rcv_wscale()
        )));
    }
    let inq = r.payload(u64::from(entry.inq_len()))?.to_vec();
    let outq = r.payload(u64::from(entry.outq_len()))?.to_vec();
    if !r.rest().is_empty() {
        return Err(bad("bytes after the send queue".into()));
    }
    Ok(Stream { entry, inq, outq })
}

/// Makes every inet socket the tree holds, in crs (in the tree's network namespace when
/// it has one: `net_of`, the process to take it from), for the holders to take.
pub(crate) fn create_in_crs(
    tree: &Tree,
    net_of: Option<crs_sys::Tid>,
    tcp_close: bool,
    out: &mut CrsFiles,
) -> Result<(), RestoreError> {
    let Some(first) = tree.procs.first() else {
        return Ok(());
    };
    let held = tree.held(Fd_types::INETSK);
    if held.is_empty() {
        return Ok(());
    }
    let streams = &first.file_images.tcp_streams;
    // On the rayon pool in crs's own network namespace (2000 sockets: 105 ms on one
    // thread); one by one on the thread that joined the tree's (the pool's threads have
    // not).
    let make_all = |par: bool| -> Result<Vec<(u32, OwnedFd)>, RestoreError> {
        let entries = held
            .iter()
            .map(|&id| Ok((id, isk(&first.files[&id])?)))
            .collect::<Result<Vec<_>, RestoreError>>()?;
        let (conns, others): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|(_, e)| is_connection(e));
        let err = |id| move |(what, source)| RestoreError::InetSocket { id, what, source };
        let mut made = each(others, par, |(id, e)| Ok((id, make(e).map_err(err(id))?)))?;
        // Every one bound (on the pool, in no order): now each gets its reuse options
        // as dumped, as CRIU's restore does once all are open (one turned off earlier
        // would refuse a later socket its shared port).
        for (id, fd) in &made {
            reuse_as_dumped(fd.as_fd(), isk(&first.files[id])?).map_err(err(*id))?;
        }
        if tcp_close {
            made.extend(each(conns, par, |(id, e)| {
                Ok((id, make_closed(e).map_err(err(id))?))
            })?);
            return Ok(made);
        }
        let conns = conns
            .into_iter()
            .map(|(id, e)| match streams.get(&id) {
                Some(stream) => Ok((id, e, stream)),
                None => Err(invalid(
                    "files.img",
                    format!("established TCP socket {id} has no tcp-stream image (inode 0)"),
                )),
            })
            .collect::<Result<Vec<_>, RestoreError>>()?;
        // The clients of connections waiting in a listener's queue connect again, for real
        // (the listeners listen by now).
        let waiting_ones = waiting(&first.files);
        let (clients, conns): (Vec<_>, Vec<_>) = conns.into_iter().partition(|(_, e, _)| {
            let (src, dst) = ends_of(e);
            waiting_ones.contains(&(dst, src))
        });
        if !clients.is_empty() {
            made.extend(connect_waiting(
                &clients,
                &made,
                held_entries(first, &held)?,
            )?);
        }
        let repaired = each(conns, par, |(id, e, stream)| {
            Ok((id, e, stream, make_connection(e, stream).map_err(err(id))?))
        })?;
        // Every connection exists: the FINs of the half-closed ones, then out of repair
        // mode.
        each(
            repaired.iter().collect(),
            par,
            |&(id, e, stream, ref fd)| put_fins(fd.as_fd(), e, stream).map_err(err(id)),
        )?;
        made.extend(each(repaired, par, |(id, e, stream, fd)| {
            finish_connection(fd.as_fd(), e, stream).map_err(err(id))?;
            keep_quiet(fd.as_fd(), e);
            Ok((id, fd))
        })?);
        Ok(made)
    };
    let made = match net_of {
        Some(pid) => crate::ns::within(pid, &["net"], || make_all(false))?,
        None => make_all(true)?,
    };
    out.by_id.extend(made);
    Ok(())
}

/// The (local, peer) addresses of inet socket `e`, v4-mapped IPv6 ones as IPv4.
fn ends_of(e: &Inet_sk_entry) -> (SocketAddr, SocketAddr) {
    let family = e.family() as i32;
    let c = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    (
        c(addr(family, &e.src_addr, e.src_port()).expect("checked at load")),
        c(addr(family, &e.dst_addr, e.dst_port()).expect("checked at load")),
    )
}

/// The connections waiting in a listener's queue at the dump: entries of inode 0, which
/// no fd holds (crs's dump writes them; CRIU's never has them), by (local, peer).
fn waiting(files: &BTreeMap<u32, File_entry>) -> BTreeSet<(SocketAddr, SocketAddr)> {
    files
        .values()
        .filter(|f| f.type_() == Fd_types::INETSK)
        .filter_map(|f| f.isk.as_ref())
        .filter(|e| is_connection(e) && e.ino() == 0)
        .map(ends_of)
        .collect()
}

/// The inet entries of `held`, by id.
fn held_entries<'a>(
    first: &'a crate::images::Images,
    held: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, &'a Inet_sk_entry>, RestoreError> {
    held.iter()
        .map(|&id| Ok((id, isk(&first.files[&id])?)))
        .collect()
}

/// Connects each of `clients` (the client ends of connections that waited in a
/// listener's queue) to its listener, among the sockets `made` (by id, `entries`), so
/// that the connection waits in that queue again: bound to its own address, connected,
/// its unacknowledged and unsent bytes sent again (the waiting end held none, or the dump
/// refused it), its FIN after them if it had sent one. While connecting, the client and
/// the listener carry the network lock's mark (the lock drops the connection's packets
/// until the tree runs); then their own again (the waiting connection keeps the mark it
/// took from its listener).
fn connect_waiting(
    clients: &[(u32, &Inet_sk_entry, &Stream)],
    made: &[(u32, OwnedFd)],
    entries: BTreeMap<u32, &Inet_sk_entry>,
) -> Result<Vec<(u32, OwnedFd)>, RestoreError> {
    use crs_sys::netlock::MARK;
    let mark_of = |e: &Inet_sk_entry| e.opts.as_ref().map_or(0, |o| o.so_mark());
    let listener_of = |dst: SocketAddr| {
        made.iter().find(|(id, _)| {
            entries.get(id).is_some_and(|l| {
                let (bound, _) = ends_of(l);
                l.state() == TCP_LISTEN
                    && bound.port() == dst.port()
                    && (bound.ip().is_unspecified() || bound.ip() == dst.ip())
            })
        })
    };
    let mut out = Vec::with_capacity(clients.len());
    for &(id, e, stream) in clients {
        let err = |(what, source)| RestoreError::InetSocket { id, what, source };
        let (src, dst) = ends_of(e);
        let Some((lid, lfd)) = listener_of(dst) else {
            return Err(invalid(
                "files.img",
                format!(
                    "TCP socket {id} waited in the queue of a listener at {dst}, which no fd holds"
                ),
            ));
        };
        if !stream.inq.is_empty()
            || ![TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2].contains(&e.state())
        {
            return Err(invalid(
                "files.img",
                format!(
                    "TCP socket {id}, whose connection waited to be accepted, in state {} with \
                     {} bytes received (the waiting end sent nothing)",
                    e.state(),
                    stream.inq.len()
                ),
            ));
        }
        let mark = |fd: BorrowedFd<'_>, v: u32| {
            sk::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_MARK, v as i32)
        };
        mark(lfd.as_fd(), MARK).map_err(|source| RestoreError::InetSocket {
            id: *lid,
            what: "SO_MARK".into(),
            source,
        })?;
        let s = (|| {
            let s = new_socket(e)?;
            let fd = s.as_fd();
            mark(fd, MARK).map_err(at("SO_MARK"))?;
            sk::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)
                .map_err(at("SO_REUSEADDR"))?;
            let own = addr(e.family() as i32, &e.src_addr, e.src_port()).expect("checked");
            let peer = addr(e.family() as i32, &e.dst_addr, e.dst_port()).expect("checked");
            inetsk::bind(fd, &own).map_err(at(&format!("bind to {own}")))?;
            inetsk::connect(fd, &peer).map_err(at(&format!("connect to {peer}")))?;
            repair::send(fd, &stream.outq).map_err(at("the send queue's bytes"))?;
            if e.state() != TCP_ESTABLISHED {
                sk::shutdown(fd, libc::SHUT_WR).map_err(at("our FIN (shutdown)"))?;
            }
            mark(fd, mark_of(e)).map_err(at("SO_MARK"))?;
            let reuseaddr = e.opts.as_ref().is_some_and(|o| o.reuseaddr());
            sk::setsockopt_int(
                fd,
                libc::SOL_SOCKET,
                libc::SO_REUSEADDR,
                i32::from(reuseaddr),
            )
            .map_err(at("SO_REUSEADDR"))?;
            if e.flags() & libc::O_NONBLOCK as u32 != 0 {
                sk::set_nonblock(fd, true).map_err(at("O_NONBLOCK"))?;
            }
            Ok(s)
        })()
        .map_err(err);
        let back =
            mark(lfd.as_fd(), entries.get(lid).map_or(0, |l| mark_of(l))).map_err(|source| {
                RestoreError::InetSocket {
                    id: *lid,
                    what: "SO_MARK".into(),
                    source,
                }
            });
        let s = s?;
        back?;
        debug!(id, %src, %dst, outq = stream.outq.len(), "connection waiting to be accepted made again");
        keep_quiet(s.as_fd(), e);
        out.push((id, s));
    }
    Ok(out)
}

/// The connections restored, until the tree runs or is killed (crs's copies): see
/// [`silence`].
static RESTORED: std::sync::Mutex<Vec<OwnedFd>> = std::sync::Mutex::new(Vec::new());

/// Keeps connection `fd` (of `e`) to put back in repair mode should the restore fail,
/// here ([`silence`]) or in the guardian (crs killed), so that it closes silently with
/// the killed tree: no FIN or RST to its peer, whose state still matches the images a
/// second restore takes, and no TIME-WAIT remnant holding its addresses.
fn keep_quiet(fd: BorrowedFd<'_>, e: &Inet_sk_entry) {
    let reuseaddr = e.opts.as_ref().is_some_and(|o| o.reuseaddr());
    crs_compel::guard::record_with_fd(&crs_compel::guard::Record::TcpRepair { reuseaddr }, fd);
    match fd.try_clone_to_owned() {
        Ok(own) => RESTORED.lock().unwrap_or_else(|p| p.into_inner()).push(own),
        Err(e) => warn!(error = %e, "keeping a restored connection to silence on failure"),
    }
}

/// The restore failed: every connection it made goes back to repair mode before the tree
/// is killed. `ran`: the tree runs instead, and they are only let go.
pub(crate) fn silence(ran: bool) {
    let conns = std::mem::take(&mut *RESTORED.lock().unwrap_or_else(|p| p.into_inner()));
    if ran {
        return;
    }
    for s in conns {
        if let Err(e) = repair::set_repair(s.as_fd(), true) {
            warn!(error = %e, "putting a restored connection in repair mode before the kill");
        }
    }
}

/// `f` of each of `items`, on the rayon pool when `par`; the first error wins.
fn each<T: Send, R: Send>(
    items: Vec<T>,
    par: bool,
    f: impl Fn(T) -> Result<R, RestoreError> + Sync + Send,
) -> Result<Vec<R>, RestoreError> {
    use rayon::prelude::*;
    if par {
        items.into_par_iter().map(f).collect()
    } else {
        items.into_iter().map(f).collect()
    }
}

type Failed = (String, std::io::Error);

/// A new socket of `e`'s family, type and protocol with its socket-level and IP-level
/// options.
fn new_socket(e: &Inet_sk_entry) -> Result<OwnedFd, Failed> {
    let family = e.family() as i32;
    let s = inetsk::socket(family, e.type_() as i32, e.proto() as i32).map_err(|err| {
        let ping = e.type_() as i32 == libc::SOCK_DGRAM
            && [libc::IPPROTO_ICMP, libc::IPPROTO_ICMPV6].contains(&(e.proto() as i32));
        if ping && err.raw_os_error() == Some(libc::EACCES) {
            (
                "socket (an ICMP ping socket, which net.ipv4.ping_group_range does not let \
                 crs's group make here)"
                    .to_string(),
                err,
            )
        } else {
            ("socket".to_string(), err)
        }
    })?;
    let fd = s.as_fd();
    let int = |level, name, v: u32| sk::setsockopt_int(fd, level, name, v as i32);
    if let Some(o) = e.opts.as_ref() {
        crate::unixsk::set_sk_opts(fd, o).map_err(at("the socket options"))?;
    }
    // Set only where it differs from what the new socket has: a raw one (bound to its
    // protocol from the start) refuses the option, with the value it already has.
    if family == libc::AF_INET6
        && sk::getsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY)
            .map_err(at("reading IPV6_V6ONLY"))?
            != i32::from(e.v6only())
    {
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
        if ip.pktinfo() {
            let name = if family == libc::AF_INET6 {
                libc::IPV6_RECVPKTINFO
            } else {
                libc::IP_PKTINFO
            };
            int(level, name, 1).map_err(at("the PKTINFO option"))?;
        }
    }
    if let Some(t) = e.tcp_opts.as_ref() {
        set_tcp_opts(fd, t).map_err(at("the TCP options"))?;
    }
    if let Some(r) = e.ip_opts.as_ref().and_then(|ip| ip.raw.as_ref()) {
        set_raw_opts(fd, family, e.proto() as i32, r).map_err(at("the raw socket options"))?;
    }
    Ok(s)
}

/// A raw socket's own options: the header included, no fragmentation (IPv4), the ICMP
/// type filter.
fn set_raw_opts(
    fd: BorrowedFd<'_>,
    family: i32,
    proto: i32,
    r: &crs_images::pb::sk_inet::Ip_opts_raw_entry,
) -> std::io::Result<()> {
    const SOL_RAW: i32 = 255;
    const ICMP_FILTER: i32 = 1;
    const ICMP6_FILTER: i32 = 1;
    const IPV6_HDRINCL: i32 = 36;
    const IP_NODEFRAG: i32 = 22;
    let v6 = family == libc::AF_INET6;
    if r.hdrincl() {
        let (level, name) = if v6 {
            (libc::IPPROTO_IPV6, IPV6_HDRINCL)
        } else {
            (libc::IPPROTO_IP, libc::IP_HDRINCL)
        };
        sk::setsockopt_int(fd, level, name, 1)?;
    }
    if r.nodefrag() && !v6 {
        sk::setsockopt_int(fd, libc::IPPROTO_IP, IP_NODEFRAG, 1)?;
    }
    if !r.icmpv_filter.is_empty() {
        let (level, name) = if v6 && proto == libc::IPPROTO_ICMPV6 {
            (libc::IPPROTO_ICMPV6, ICMP6_FILTER)
        } else {
            (SOL_RAW, ICMP_FILTER)
        };
        inetsk::setsockopt_words(fd, level, name, &r.icmpv_filter)?;
    }
    Ok(())
}

fn at(what: &str) -> impl FnOnce(std::io::Error) -> Failed {
    let what = what.to_string();
    move |source| (what, source)
}

/// TCP_NODELAY, TCP_CORK and the keepalive timing, where the image has them.
fn set_tcp_opts(fd: BorrowedFd<'_>, t: &Tcp_opts_entry) -> std::io::Result<()> {
    let int = |name, v: u32| sk::setsockopt_int(fd, libc::IPPROTO_TCP, name, v as i32);
    for (has, name, v) in [
        (t.has_nodelay(), libc::TCP_NODELAY, u32::from(t.nodelay())),
        (t.has_cork(), libc::TCP_CORK, u32::from(t.cork())),
        // 0 is not a keepalive time the kernel takes (an image without them).
        (t.keepcnt() > 0, libc::TCP_KEEPCNT, t.keepcnt()),
        (t.keepidle() > 0, libc::TCP_KEEPIDLE, t.keepidle()),
        (t.keepintvl() > 0, libc::TCP_KEEPINTVL, t.keepintvl()),
    ] {
        if has {
            int(name, v)?;
        }
    }
    Ok(())
}

fn make(e: &Inet_sk_entry) -> Result<OwnedFd, Failed> {
    let family = e.family() as i32;
    let s = new_socket(e)?;
    let fd = s.as_fd();
    let int = |level, name, v: u32| sk::setsockopt_int(fd, level, name, v as i32);
    let src = addr(family, &e.src_addr, e.src_port()).expect("checked at load");
    let bound = is_bound(e);
    // Freebind where the image has it.
    let (fb_level, fb_name) = inetsk::freebind_opt(family);
    let has_freebind = e.ip_opts.as_ref().is_some_and(|ip| ip.has_freebind());
    if bound {
        // With IP_FREEBIND the address need not be local now (a socket bound with it and
        // then turned it off, or moved to a host without the address).
        if has_freebind {
            int(fb_level, fb_name, 1).map_err(at("the freebind option"))?;
        }
        // With SO_REUSEADDR and SO_REUSEPORT, as CRIU binds: two sockets of the tree may
        // share a port (SO_REUSEPORT listeners, one of which turned it off after), and a
        // connection's TIME-WAIT remnant (the kernel's) may hold a port a while after
        // the dump. Set as dumped once every socket is bound (`reuse_as_dumped`).
        int(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1).map_err(at("SO_REUSEADDR"))?;
        int(libc::SOL_SOCKET, libc::SO_REUSEPORT, 1).map_err(at("SO_REUSEPORT"))?;
        inetsk::bind(fd, &src).map_err(at(&format!("bind to {src}")))?;
    }
    // Then IP_FREEBIND as dumped, where that is not what the socket has now (on for a
    // bound one, off for a new one).
    let freebind = e.ip_opts.as_ref().is_some_and(|ip| ip.freebind());
    if has_freebind && freebind != bound {
        int(fb_level, fb_name, u32::from(freebind)).map_err(at("the freebind option"))?;
    }
    let tcp = e.type_() as i32 == libc::SOCK_STREAM;
    if !tcp && e.state() == TCP_ESTABLISHED {
        let dst = addr(family, &e.dst_addr, e.dst_port()).expect("checked at load");
        inetsk::connect(fd, &dst).map_err(at(&format!("connect to {dst}")))?;
    }
    if tcp && e.state() == TCP_LISTEN {
        sk::listen(fd, e.backlog() as i32).map_err(at("listen"))?;
    }
    // Shut down as dumped: a socket that is not connected says ENOTCONN but is marked
    // all the same (its reads then return EOF, its sends fail with EPIPE).
    if let Some(how) = e.shutdown.map(|v| v.value()).filter(|&v| v != 0) {
        let how = match how {
            1 => libc::SHUT_RD,
            2 => libc::SHUT_WR,
            _ => libc::SHUT_RDWR,
        };
        match sk::shutdown(fd, how) {
            Err(err) if err.raw_os_error() != Some(libc::ENOTCONN) => {
                return Err(("shutdown".to_string(), err))
            }
            _ => {}
        }
    }
    // SO_REUSEADDR and SO_REUSEPORT stay on until every socket is bound (`reuse_as_dumped`).
    if e.flags() & libc::O_NONBLOCK as u32 != 0 {
        sk::set_nonblock(fd, true).map_err(at("O_NONBLOCK"))?;
    }
    debug!(id = e.id(), %src, state = e.state(), tcp, "inet socket made");
    Ok(s)
}

/// Whether socket `e` was bound: to a port, or to an address (a raw socket's port is its
/// protocol, bound or not).
fn is_bound(e: &Inet_sk_entry) -> bool {
    let src = addr(e.family() as i32, &e.src_addr, e.src_port()).expect("checked at load");
    let raw = e.type_() as i32 == libc::SOCK_RAW;
    (src.port() != 0 && !raw) || !src.ip().is_unspecified()
}

/// SO_REUSEADDR and SO_REUSEPORT of a socket `make` bound, as dumped.
fn reuse_as_dumped(fd: BorrowedFd<'_>, e: &Inet_sk_entry) -> Result<(), Failed> {
    if !is_bound(e) {
        return Ok(());
    }
    let reuseaddr = e.opts.as_ref().is_some_and(|o| o.reuseaddr());
    let reuseport = e.opts.as_ref().is_some_and(|o| o.so_reuseport());
    let int = |name, v: bool| sk::setsockopt_int(fd, libc::SOL_SOCKET, name, i32::from(v));
    int(libc::SO_REUSEADDR, reuseaddr).map_err(at("SO_REUSEADDR"))?;
    int(libc::SO_REUSEPORT, reuseport).map_err(at("SO_REUSEPORT"))
}

/// A connection restored closed (`--tcp-close`, as CRIU does it): a new socket with its
/// options, shut down both ways, so that its holder reads EOF and cannot send (EPIPE).
fn make_closed(e: &Inet_sk_entry) -> Result<OwnedFd, Failed> {
    let s = new_socket(e)?;
    let fd = s.as_fd();
    // Not connected: the kernel says so, and marks it shut down all the same.
    match sk::shutdown(fd, libc::SHUT_RDWR) {
        Err(err) if err.raw_os_error() != Some(libc::ENOTCONN) => {
            return Err(("shutdown".to_string(), err))
        }
        _ => {}
    }
    if e.flags() & libc::O_NONBLOCK as u32 != 0 {
        sk::set_nonblock(fd, true).map_err(at("O_NONBLOCK"))?;
    }
    debug!(
        id = e.id(),
        state = e.state(),
        "TCP connection restored closed"
    );
    Ok(s)
}

/// An established connection as `stream` saved it, left in repair mode: everything but
/// the unsent bytes (see the module's comment).
fn make_connection(e: &Inet_sk_entry, stream: &Stream) -> Result<OwnedFd, Failed> {
    let family = e.family() as i32;
    let s = new_socket(e)?;
    let fd = s.as_fd();
    let t = &stream.entry;
    let state = e.state();
    // A FIN has a sequence number: the peer's (CLOSE-WAIT) is in the saved rcv_nxt, ours
    // (FIN-WAIT) in the saved write_seq. The queues are rebuilt without them and the FINs
    // put back after (see the end).
    let rcv_fin = fin_received(state);
    let snd_fin = fin_sent(state);
    let inq_seq = t.inq_seq().wrapping_sub(u32::from(rcv_fin));
    let outq_seq = t.outq_seq().wrapping_sub(u32::from(snd_fin));
    repair::set_repair(fd, true).map_err(at("TCP_REPAIR"))?;
    // Where the queues start: the bytes put back below move them on to the saved ends.
    repair::select_queue(fd, Queue::Recv).map_err(at("TCP_REPAIR_QUEUE"))?;
    repair::set_queue_seq(fd, inq_seq.wrapping_sub(t.inq_len()))
        .map_err(at("the receive queue's sequence number"))?;
    repair::select_queue(fd, Queue::Send).map_err(at("TCP_REPAIR_QUEUE"))?;
    repair::set_queue_seq(fd, outq_seq.wrapping_sub(t.outq_len()))
        .map_err(at("the send queue's sequence number"))?;
    let src = addr(family, &e.src_addr, e.src_port()).expect("checked at load");
    let dst = addr(family, &e.dst_addr, e.dst_port()).expect("checked at load");
    // Bound whatever else has the port (repair mode forces reuse); freebind as dumped.
    let freebind = e.ip_opts.as_ref().is_some_and(|ip| ip.freebind());
    let (fb_level, fb_name) = inetsk::freebind_opt(family);
    sk::setsockopt_int(fd, fb_level, fb_name, 1).map_err(at("the freebind option"))?;
    inetsk::bind(fd, &src).map_err(at(&format!("bind to {src}")))?;
    if !freebind {
        sk::setsockopt_int(fd, fb_level, fb_name, 0).map_err(at("the freebind option"))?;
    }
    inetsk::connect(fd, &dst).map_err(at(&format!("connect (repair) to {dst}")))?;
    let mask = t.opt_mask();
    let mut opts = Vec::with_capacity(4);
    if mask & repair::TCPI_OPT_SACK != 0 {
        opts.push((repair::TCPOPT_SACK_PERM, 0));
    }
    if mask & repair::TCPI_OPT_WSCALE != 0 {
        opts.push((
            repair::TCPOPT_WINDOW,
            t.snd_wscale() | (t.rcv_wscale() << 16),
        ));
    }
    if mask & repair::TCPI_OPT_TIMESTAMPS != 0 {
        opts.push((repair::TCPOPT_TIMESTAMP, 0));
    }
    opts.push((repair::TCPOPT_MAXSEG, t.mss_clamp()));
    repair::set_options(fd, &opts).map_err(at("TCP_REPAIR_OPTIONS"))?;
    if mask & repair::TCPI_OPT_TIMESTAMPS != 0 {
        repair::set_timestamp(fd, t.timestamp()).map_err(at("TCP_TIMESTAMP"))?;
    }
    // Room for the send queue whatever the send buffer the image has (one the kernel had
    // grown past what an option sets): the kernel counts each queued buffer's overhead
    // too. The size is put back once the queue is in (`finish_connection`). The receive
    // buffer stays as dumped: it bounds the window the restored socket offers, and a
    // larger one would let its peer send more than it then has room for.
    let room = (u64::from(t.outq_len()) * 4 + (1 << 20)).min(i32::MAX as u64 / 2);
    sk::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, room as i32)
        .map_err(at("room for the send queue"))?;
    repair::select_queue(fd, Queue::Recv).map_err(at("TCP_REPAIR_QUEUE"))?;
    repair::send(fd, &stream.inq).map_err(at("the receive queue's bytes"))?;
    let sent = (t.outq_len() - t.unsq_len()) as usize;
    repair::select_queue(fd, Queue::Send).map_err(at("TCP_REPAIR_QUEUE"))?;
    repair::send(fd, &stream.outq[..sent]).map_err(at("the send queue's sent bytes"))?;
    if t.has_snd_wl1() {
        let mut w = repair::Window {
            snd_wl1: t.snd_wl1(),
            snd_wnd: t.snd_wnd(),
            max_window: t.max_window(),
            rcv_wnd: t.rcv_wnd(),
            rcv_wup: t.rcv_wup(),
        };
        if rcv_fin {
            // The window as it was before the peer's FIN took its sequence number.
            w.rcv_wup = w.rcv_wup.wrapping_sub(1);
            w.rcv_wnd = w.rcv_wnd.wrapping_add(1);
        }
        repair::set_window(fd, &w).map_err(at("TCP_REPAIR_WINDOW"))?;
    }
    debug!(id = e.id(), %src, %dst, inq = t.inq_len(), outq = t.outq_len(), "TCP connection made in repair mode");
    Ok(s)
}

/// Puts back the FINs of a half-closed connection `make_connection` made (every
/// connection exists by then: an ACK one sends finds its peer), as segments the peer
/// would send: the socket takes them as it does any (repair mode changes what it sends,
/// not what it receives). Their source is the peer's address; they are marked so that
/// the network lock lets them through. (A CLOSING connection's peer FIN comes after ours,
/// see `finish_connection`.)
fn put_fins(fd: BorrowedFd<'_>, e: &Inet_sk_entry, stream: &Stream) -> Result<(), Failed> {
    let state = e.state();
    if fin_received(state) && state != TCP_CLOSING {
        peer_fin(e, stream)?;
    }
    if state == TCP_FIN_WAIT2 {
        // Ours, sent and acknowledged: into the send queue as sent, then the peer's ACK
        // of it. (An unacknowledged one goes after the unsent bytes, once out of repair
        // mode, see `finish_connection`.)
        let t = &stream.entry;
        repair::select_queue(fd, Queue::Send).map_err(at("TCP_REPAIR_QUEUE"))?;
        repair::shutdown_write(fd).map_err(at("our FIN (shutdown)"))?;
        repair::select_queue(fd, Queue::None).map_err(at("TCP_REPAIR_QUEUE"))?;
        let (src, dst, peer_window) = ends(e, stream);
        repair::send_segment(&repair::Segment {
            src: dst,
            dst: src,
            seq: t.inq_seq(),
            ack: t.outq_seq(),
            window: peer_window,
            flags: repair::TH_ACK,
        })
        .map_err(at("the peer's ACK of our FIN (a raw segment)"))?;
    }
    Ok(())
}

/// Connection `e`'s own address, its peer's, and the window the peer offered (unscaled).
fn ends(e: &Inet_sk_entry, stream: &Stream) -> (SocketAddr, SocketAddr, u16) {
    let family = e.family() as i32;
    let t = &stream.entry;
    let src = addr(family, &e.src_addr, e.src_port()).expect("checked at load");
    let dst = addr(family, &e.dst_addr, e.dst_port()).expect("checked at load");
    let peer_window = (t.snd_wnd() >> t.snd_wscale()).min(u32::from(u16::MAX)) as u16;
    (src, dst, peer_window)
}

/// The peer's FIN, acknowledging what the peer had of our bytes (not our FIN).
fn peer_fin(e: &Inet_sk_entry, stream: &Stream) -> Result<(), Failed> {
    let t = &stream.entry;
    let (src, dst, peer_window) = ends(e, stream);
    let write_seq = t.outq_seq().wrapping_sub(u32::from(fin_sent(e.state())));
    let snd_una = write_seq.wrapping_sub(t.outq_len());
    repair::send_segment(&repair::Segment {
        src: dst,
        dst: src,
        seq: t.inq_seq().wrapping_sub(1),
        ack: snd_una,
        window: peer_window,
        flags: repair::TH_FIN | repair::TH_ACK,
    })
    .map_err(at("the peer's FIN (a raw segment)"))
}

/// Takes a connection `make_connection` made out of repair mode: its unsent bytes are
/// queued as new data, SO_REUSEADDR and O_NONBLOCK are as dumped.
fn finish_connection(fd: BorrowedFd<'_>, e: &Inet_sk_entry, stream: &Stream) -> Result<(), Failed> {
    let reuseaddr = e.opts.as_ref().is_some_and(|o| o.reuseaddr());
    repair::resume(fd, reuseaddr).map_err(at("TCP_REPAIR off"))?;
    let t = &stream.entry;
    let sent = (t.outq_len() - t.unsq_len()) as usize;
    repair::send(fd, &stream.outq[sent..]).map_err(at("the send queue's unsent bytes"))?;
    if fin_unacknowledged(e.state()) {
        // Our FIN, not acknowledged: after the bytes, sent (again) as a FIN is.
        repair::shutdown_write(fd).map_err(at("our FIN (shutdown)"))?;
    }
    if e.state() == TCP_CLOSING {
        // Then the peer's, which crossed ours: CLOSING, not LAST-ACK.
        peer_fin(e, stream)?;
    }
    if let Some(o) = e.opts.as_ref() {
        crate::unixsk::set_buffers(fd, o).map_err(at("the buffer sizes"))?;
    }
    if e.flags() & libc::O_NONBLOCK as u32 != 0 {
        sk::set_nonblock(fd, true).map_err(at("O_NONBLOCK"))?;
    }
    Ok(())
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
        let sctp = refusal(&entry(
            libc::SOCK_SEQPACKET,
            libc::IPPROTO_SCTP,
            TCP_CLOSE,
            vec![0],
        ));
        assert!(
            sctp.contains("crs restores UDP, UDP-lite, TCP, ICMP ping and raw sockets only"),
            "{sctp}"
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
        let opening = refusal(&entry(libc::SOCK_STREAM, libc::IPPROTO_TCP, 2, vec![0]));
        assert!(opening.contains("TCP socket 5 in state 2"), "{opening}");
    }
}
