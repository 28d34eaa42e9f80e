//! UDP sockets, TCP sockets that are not connected (listening with no connection waiting
//! to be accepted, or only bound), and, with `--tcp-established`, established TCP
//! connections, IPv4 and IPv6: their addresses, state, backlog and options, as CRIU's
//! `inet_sk_entry` in files.img; a connection's sequence numbers, window, negotiated
//! options and queued bytes in tcp-stream-INO.img, read in TCP repair mode.
//!
//! ```text
//! established TCP socket (crs's copy of it)
//!   socket options, SO_REUSEADDR included   (before repair mode: it changes them)
//!   TCP_REPAIR on, then SIOCINQ / SIOCOUTQ / SIOCOUTQNSD, TCP_INFO (options, window
//!   scales), TCP_MAXSEG, TCP_TIMESTAMP, TCP_REPAIR_WINDOW, each queue's sequence number
//!   and bytes (peeked), then TCP_REPAIR off without a window probe (the tree is still
//!   frozen; a tree let go never runs with a socket in repair mode)
//! just before the tree is killed: TCP_REPAIR on for each (`Repaired::arm`), so that
//!   the sockets close silently (no FIN, no RST)
//! ```
//!
//! Half-closed connections (FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT) and those closing on both
//! sides whose FIN is not acknowledged yet (LAST-ACK, CLOSING) are dumped as established
//! ones are, with the state; a FIN we sent is not counted in the send queue.
//!
//! Raw sockets (any protocol, IPv4 and IPv6) are saved like UDP ones, with their own
//! options (header included, no fragmentation, the ICMP type filter); so are ICMP ping
//! sockets (SOCK_DGRAM, IPPROTO_ICMP / ICMPV6), whose port is their echo identifier.
//!
//! Connections waiting in a listener's queue whose client is in the tree are kept as
//! entries of inode 0 ([`FileTable::resolve_pending`]). With `--tcp-close` a connection
//! is saved without its state (to be restored closed); with `--skip-in-flight` waiting
//! connections that cannot be kept are left out.
//! A socket's shutdown state comes from inet_diag (a UDP socket the kernel's tables list)
//! or poll; whether a closed TCP socket still holds its port from inet_diag's
//! bound-inactive sockets, asked once per network namespace in a dump.
//!
//! Refused by name: a connection without `--tcp-established` (or `--tcp-close`), one
//! being opened, one in TIME-WAIT (no socket holds it: only an orphan can be), a listener
//! with connections waiting from peers outside the tree or holding bytes (without
//! `--skip-in-flight`), ICMP ping sockets, and a UDP
//! or raw socket with datagrams queued for reading (CRIU saves none: they would be
//! lost).
//!
//! Addresses are CRIU's: `src_addr`/`dst_addr` hold the address bytes as 32-bit words in
//! memory order (one word for IPv4, four for IPv6), as inet_diag gives them.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crs_images::codec::ImageWriter;
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::sk_inet::{Inet_sk_entry, Ip_opts_entry, Ip_opts_raw_entry};
use crs_images::pb::sk_opts::Sk_shutdown;
use crs_images::pb::tcp_stream::{Tcp_opts_entry, Tcp_stream_entry};
use crs_proc::FdInfo;
use crs_sys::inetsk;
use crs_sys::inetsk::tcp_state::*;
use crs_sys::tcp_repair::{self as repair, Queue};
use crs_sys::unixsk as sk;
use protobuf::{EnumOrUnknown, MessageField};
use std::os::fd::{BorrowedFd, OwnedFd};
use tracing::{debug, warn};

use super::unixsk::sk_opts;
use super::{image_err, FdEntry, FileTable};
use crate::error::{DumpError, Result};

/// The states of a connection crs dumps with `--tcp-established`.
pub(crate) fn dumped_connection(state: u32) -> bool {
    CONNECTED.contains(&state)
}

/// The established sockets a dump read in repair mode, each with its SO_REUSEADDR (repair
/// mode clears it). Each is in repair mode only while it is read (`read`), so that a tree
/// let go, by crs or (crs killed) by the kernel, never runs with a socket in repair mode,
/// where its reads and writes fail. Just before the tree is killed, [`Repaired::arm`]
/// puts them all back in repair mode, so that they close without a FIN or RST to their
/// peers. Dropped, every one is taken out of repair mode (a no-op for those that are).
#[derive(Default)]
pub(crate) struct Repaired {
    socks: Vec<(OwnedFd, bool)>,
}

impl Repaired {
    /// Reads established socket `s` (with `reuseaddr` to give back) in repair mode, after
    /// telling the guardian.
    fn read(
        &mut self,
        s: BorrowedFd<'_>,
        info: &inetsk::TcpInfo,
        reuseaddr: bool,
    ) -> std::io::Result<(Tcp_stream_entry, Vec<u8>, Vec<u8>)> {
        let own = s.try_clone_to_owned()?;
        crs_compel::guard::record_with_fd(
            &crs_compel::guard::Record::TcpRepair { reuseaddr },
            own.as_fd(),
        );
        self.socks.push((own, reuseaddr));
        repair::set_repair(s, true)?;
        let read = read_stream(s, info);
        repair::leave_quietly(s, reuseaddr)?;
        read
    }

    /// Every socket in repair mode again: the tree is about to be killed.
    pub(crate) fn arm(&self) {
        for (s, _) in &self.socks {
            if let Err(e) = repair::set_repair(s.as_fd(), true) {
                warn!(error = %e, "putting a TCP socket in repair mode before the kill: it \
                       may send its peer a FIN or RST");
            }
        }
    }

    /// The tree is dead: its sockets close in repair mode.
    pub(crate) fn leave(mut self) {
        self.socks.clear();
    }
}

impl Drop for Repaired {
    fn drop(&mut self) {
        for (s, reuseaddr) in self.socks.drain(..) {
            if let Err(e) = repair::leave_quietly(s.as_fd(), reuseaddr) {
                warn!(error = %e, "taking a TCP socket out of repair mode");
            }
        }
    }
}

/// Reads established socket `s` in repair mode (see the module's comment), whose TCP_INFO
/// is `info` (its state and the options the handshake agreed on): its stream entry and
/// its receive and send queues' bytes.
fn read_stream(
    s: BorrowedFd<'_>,
    info: &inetsk::TcpInfo,
) -> std::io::Result<(Tcp_stream_entry, Vec<u8>, Vec<u8>)> {
    let state = u32::from(info.state);
    let inq_len = repair::inq_len(s)?;
    let mut outq_len = repair::outq_len(s)?;
    let mut unsq_len = repair::unsent_len(s)?;
    // A FIN we sent counts one in the send queue's sizes (its sequence number): it is no
    // byte to save (CRIU's images do not count it either).
    if fin_sent(state) {
        outq_len = outq_len.saturating_sub(1);
        unsq_len = unsq_len.saturating_sub(1);
    }
    let timestamp = if info.options & repair::TCPI_OPT_TIMESTAMPS != 0 {
        Some(repair::timestamp(s)?)
    } else {
        None
    };
    let w = repair::window(s)?;
    repair::select_queue(s, Queue::Recv)?;
    let inq_seq = repair::queue_seq(s)?;
    let inq = repair::peek(s, inq_len as usize)?;
    repair::select_queue(s, Queue::Send)?;
    let outq_seq = repair::queue_seq(s)?;
    let outq = repair::peek(s, outq_len as usize)?;
    let wscale = info.options & repair::TCPI_OPT_WSCALE != 0;
    let e = Tcp_stream_entry {
        inq_len: Some(inq_len),
        inq_seq: Some(inq_seq),
        outq_len: Some(outq_len),
        outq_seq: Some(outq_seq),
        opt_mask: Some(info.options),
        snd_wscale: Some(if wscale { info.snd_wscale } else { 0 }),
        mss_clamp: Some(repair::mss(s)?),
        rcv_wscale: Some(if wscale { info.rcv_wscale } else { 0 }),
        timestamp,
        unsq_len: Some(unsq_len),
        snd_wl1: Some(w.snd_wl1),
        snd_wnd: Some(w.snd_wnd),
        max_window: Some(w.max_window),
        rcv_wnd: Some(w.rcv_wnd),
        rcv_wup: Some(w.rcv_wup),
        ..Default::default()
    };
    Ok((e, inq, outq))
}

enum RawError {
    Io(std::io::Error),
    Unsupported(&'static str),
}

/// A raw socket's own options (CRIU's `ip_opts_raw_entry`): the header included, no
/// fragmentation (IPv4), the ICMP type filter (ICMP: one word; ICMPv6: eight).
fn raw_opts(
    s: BorrowedFd<'_>,
    domain: i32,
    proto: i32,
) -> std::result::Result<Ip_opts_raw_entry, RawError> {
    const SOL_RAW: i32 = 255;
    const ICMP_FILTER: i32 = 1;
    const ICMP6_FILTER: i32 = 1;
    const IPV6_HDRINCL: i32 = 36;
    const IPV6_CHECKSUM: i32 = 7;
    let int = |level, name| sk::getsockopt_int(s, level, name).map_err(RawError::Io);
    let mut e = Ip_opts_raw_entry::default();
    if domain == libc::AF_INET6 {
        e.hdrincl = Some(int(libc::IPPROTO_IPV6, IPV6_HDRINCL)? != 0);
        if proto == libc::IPPROTO_ICMPV6 {
            e.icmpv_filter = inetsk::getsockopt_words(s, libc::IPPROTO_ICMPV6, ICMP6_FILTER, 8)
                .map_err(RawError::Io)?;
        } else if int(libc::IPPROTO_IPV6, IPV6_CHECKSUM)? != -1 {
            return Err(RawError::Unsupported(
                "a raw IPv6 socket with IPV6_CHECKSUM set (CRIU's images keep no offset)",
            ));
        }
    } else {
        e.hdrincl = Some(int(libc::IPPROTO_IP, libc::IP_HDRINCL)? != 0);
        e.nodefrag = Some(int(libc::IPPROTO_IP, 22 /* IP_NODEFRAG */)? != 0);
        if proto == libc::IPPROTO_ICMP {
            e.icmpv_filter =
                inetsk::getsockopt_words(s, SOL_RAW, ICMP_FILTER, 1).map_err(RawError::Io)?;
        }
    }
    Ok(e)
}

/// A TCP socket's TCP-level options.
fn tcp_opts(s: BorrowedFd<'_>) -> std::io::Result<Tcp_opts_entry> {
    let int = |name| sk::getsockopt_int(s, libc::IPPROTO_TCP, name);
    Ok(Tcp_opts_entry {
        cork: Some(int(libc::TCP_CORK)? != 0),
        nodelay: Some(int(libc::TCP_NODELAY)? != 0),
        keepcnt: Some(int(libc::TCP_KEEPCNT)? as u32),
        keepidle: Some(int(libc::TCP_KEEPIDLE)? as u32),
        keepintvl: Some(int(libc::TCP_KEEPINTVL)? as u32),
        ..Default::default()
    })
}

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

/// A listener of the tree with connections waiting to be accepted (see
/// [`FileTable::resolve_pending`]).
pub(crate) struct PendingListener {
    pid: i32,
    fd: i32,
    link: String,
    family: i32,
    addr: SocketAddr,
    pending: u32,
}

/// `a` with a v4-mapped IPv6 address as the IPv4 one (a dual-stack listener's connection
/// and its IPv4 peer name the same addresses differently).
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// Whether a socket bound to `bound` (maybe the unspecified address) has `local`.
fn listens_at(bound: SocketAddr, local: SocketAddr) -> bool {
    bound.port() == local.port()
        && (bound.ip().is_unspecified() || bound.ip().to_canonical() == local.ip().to_canonical())
}

impl FileTable {
    /// The connections waiting in the queues of the tree's listeners (inet_diag shows them
    /// with no inode). One whose client is a socket of the tree is kept, as an entry of
    /// files.img with inode 0 and no fd (CRIU restores no fd of it and needs no image),
    /// that the restore finds as the mirror of its client: it connects that client to the
    /// listener again, for real, and the connection waits to be accepted as it did. Its
    /// client's bytes still queued must be in the client's send queue: a connection
    /// holding bytes it received cannot be read without accepting it. A connection from a
    /// peer outside the tree (whose sequence numbers a new handshake would not keep), and
    /// one holding bytes, are refused, or left out (lost) with `--skip-in-flight`. With
    /// `--tcp-close` every one is left out: the connections come back closed.
    pub(crate) fn resolve_pending(&mut self) -> Result<()> {
        let listeners = std::mem::take(&mut self.pending_listeners);
        for l in &listeners {
            let unsupported = |why| DumpError::UnsupportedFd {
                pid: l.pid,
                fd: l.fd,
                link: l.link.clone(),
                why,
            };
            if self.tcp_close {
                warn!(
                    pid = l.pid,
                    fd = l.fd,
                    pending = l.pending,
                    "--tcp-close: connections \
                      waiting to be accepted are left out"
                );
                continue;
            }
            let path = PathBuf::from(format!("/proc/{}/fd/{}", l.pid, l.fd));
            let socks = crate::ns::within(l.pid, &["net"], || {
                inetsk::inet_diag(
                    l.family,
                    libc::IPPROTO_TCP,
                    1 << TCP_ESTABLISHED | 1 << TCP_CLOSE_WAIT,
                )
                .map_err(|source| DumpError::File {
                    what: "listing the connections waiting to be accepted (inet_diag) by",
                    path: path.clone(),
                    source,
                })
            })?;
            let waiting: Vec<_> = socks
                .into_iter()
                .filter(|d| d.inode == 0 && listens_at(l.addr, d.local))
                .collect();
            if waiting.len() != l.pending as usize {
                return Err(unsupported(
                    "a TCP listener whose connections waiting to be accepted cannot be told \
                     apart from others on its port (SO_REUSEPORT listeners, or connections \
                     being opened or closed meanwhile)",
                ));
            }
            for w in waiting {
                let (local, remote) = (canonical(w.local), canonical(w.remote));
                let client_in_tree = self.inet_conns.contains(&(remote, local));
                // inet_diag counts rcv_nxt - copied_seq: the client's FIN, once received,
                // is one of them.
                let bytes =
                    w.rqueue - u32::from(u32::from(w.state) == TCP_CLOSE_WAIT).min(w.rqueue);
                let why = match (client_in_tree, bytes) {
                    (true, 0) => None,
                    (true, _) => Some(
                        "a TCP listener with a connection waiting to be accepted that holds \
                         bytes its client sent (they cannot be read without accepting it; \
                         --skip-in-flight leaves it out)",
                    ),
                    (false, _) => Some(
                        "a TCP listener with connections waiting to be accepted from a peer \
                         outside the tree (--skip-in-flight leaves them out)",
                    ),
                };
                if let Some(why) = why {
                    if !self.skip_in_flight {
                        return Err(unsupported(why));
                    }
                    warn!(pid = l.pid, fd = l.fd, %remote, "--skip-in-flight: a connection \
                          waiting to be accepted is left out ({why})");
                    continue;
                }
                let id = self.alloc();
                debug!(pid = l.pid, fd = l.fd, %local, %remote, id, "connection waiting to be accepted");
                self.entries.push(File_entry {
                    type_: Some(EnumOrUnknown::new(Fd_types::INETSK)),
                    id: Some(id),
                    isk: MessageField::some(Inet_sk_entry {
                        id: Some(id),
                        ino: Some(0),
                        family: Some(l.family as u32),
                        type_: Some(libc::SOCK_STREAM as u32),
                        proto: Some(libc::IPPROTO_TCP as u32),
                        state: Some(u32::from(w.state)),
                        src_port: Some(u32::from(w.local.port())),
                        dst_port: Some(u32::from(w.remote.port())),
                        flags: Some(libc::O_RDWR as u32),
                        backlog: Some(0),
                        src_addr: addr_words(&w.local.ip()),
                        dst_addr: addr_words(&w.remote.ip()),
                        // No file: no owner, and options nobody set (the required fields).
                        fown: MessageField::some(crs_images::pb::fown::Fown_entry {
                            uid: Some(0),
                            euid: Some(0),
                            signum: Some(0),
                            pid_type: Some(0),
                            pid: Some(0),
                            ..Default::default()
                        }),
                        opts: MessageField::some(crs_images::pb::sk_opts::Sk_opts_entry {
                            so_sndbuf: Some(0),
                            so_rcvbuf: Some(0),
                            so_snd_tmo_sec: Some(0),
                            so_snd_tmo_usec: Some(0),
                            so_rcv_tmo_sec: Some(0),
                            so_rcv_tmo_usec: Some(0),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
        }
        Ok(())
    }

    /// inet_diag's sockets of `family`/`proto` in `states` in the network namespace of
    /// `pid` (whose socket `path` is being dumped), each with its shutdown state: asked
    /// once per namespace and kind in a dump (the tree is frozen).
    fn diag(
        &mut self,
        pid: i32,
        path: &Path,
        family: i32,
        proto: i32,
        states: u32,
    ) -> Result<&std::collections::HashMap<u64, u8>> {
        use std::collections::hash_map::Entry;
        use std::os::unix::fs::MetadataExt;
        let err = |what| {
            let path = path.to_path_buf();
            move |source| DumpError::File { what, path, source }
        };
        let ns = std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map_err(err("reading the network namespace of"))?
            .ino();
        Ok(match self.inet_diag.entry((ns, family, proto, states)) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(crate::ns::within(pid, &["net"], || {
                inetsk::diag_shutdown(family, proto, states)
                    .map_err(err("listing the sockets (inet_diag) of the namespace of"))
            })?),
        })
    }

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
        // A raw socket: its protocol, bound and connected addresses and options.
        let raw = kind == libc::SOCK_RAW;
        // An ICMP ping socket: a datagram socket whose port is its echo identifier.
        let ping = kind == libc::SOCK_DGRAM
            && (proto == libc::IPPROTO_ICMP || proto == libc::IPPROTO_ICMPV6);
        if !udp && !tcp && !raw && !ping {
            return Err(unsupported(
                "inet sockets other than UDP, UDP-lite, TCP, ICMP ping and raw ones (SCTP)",
            ));
        }
        let id = match self.shared_with(pid, fd, key)?.map(|(_, id)| id) {
            Some(id) => id,
            None => {
                // A TCP socket: listening (nothing waiting), closed or established, with
                // its backlog.
                let tcp_info = if tcp {
                    Some(inetsk::tcp_info(s).map_err(io_err("reading TCP_INFO of"))?)
                } else {
                    None
                };
                let (tcp_state, backlog) = if let Some(info) = tcp_info {
                    match u32::from(info.state) {
                        TCP_LISTEN => (TCP_LISTEN, info.backlog),
                        TCP_CLOSE => (TCP_CLOSE, 0),
                        // CRIU's --tcp-close: the connection as it was, to be restored
                        // closed (its state is not read).
                        st if dumped_connection(st) && self.tcp_close => (st, 0),
                        st if dumped_connection(st) && !self.tcp_established => {
                            return Err(unsupported(
                                "an established TCP connection (dump with --tcp-established, \
                                 or --tcp-close to restore it closed)",
                            ))
                        }
                        // The backlog CRIU records for a connection: its send queue.
                        st if dumped_connection(st) => (
                            st,
                            repair::outq_len(s).map_err(io_err("reading SIOCOUTQ of"))?,
                        ),
                        TCP_SYN_SENT | TCP_SYN_RECV => {
                            return Err(unsupported(
                                "a TCP connection being opened (SYN sent or received)",
                            ))
                        }
                        _ => {
                            return Err(unsupported(
                                "a TCP connection closed on both sides and acknowledged \
                                 (TIME-WAIT)",
                            ))
                        }
                    }
                } else {
                    let queued = if ping {
                        inetsk::datagram_queued(s).map_err(io_err("polling"))?
                    } else {
                        inetsk::queued(s).map_err(io_err("reading the queue of"))? > 0
                    };
                    if queued {
                        return Err(unsupported(
                            "a UDP, ICMP ping or raw socket with datagrams queued for reading",
                        ));
                    }
                    // Corked, a UDP socket holds what it was given until uncorked: bytes
                    // no image keeps (CRIU refuses them too).
                    const UDP_CORK: i32 = 1;
                    if udp
                        && sk::getsockopt_int(s, libc::IPPROTO_UDP, UDP_CORK)
                            .map_err(io_err("reading UDP_CORK of"))?
                            != 0
                        && repair::outq_len(s).map_err(io_err("reading SIOCOUTQ of"))? > 0
                    {
                        return Err(unsupported(
                            "a corked UDP socket holding data not sent yet (UDP_CORK)",
                        ));
                    }
                    (0, 0)
                };
                let mut local = inetsk::local_addr(s).map_err(io_err("getsockname of"))?;
                // A TCP socket closed after a connection on a port it did not bind itself
                // has given the port back (getsockname still shows it): saved unbound,
                // so that its restore does not take the port (a TIME-WAIT remnant of
                // the connection may hold it) and it can be bound again, as it could.
                if tcp
                    && tcp_state == TCP_CLOSE
                    && local.is_some_and(|a| a.port() != 0)
                    && !self
                        .diag(pid, &path, domain, proto, 1 << TCP_BOUND_INACTIVE)?
                        .contains_key(&key.1)
                {
                    local = None;
                }
                // The shutdown state: a UDP socket's from inet_diag when the kernel's
                // tables list it (bound or connected), else, as for an unconnected TCP
                // socket (where only the receive side shows), from poll. A connection's
                // is its state.
                let polled = |path: &PathBuf| {
                    inetsk::polled_shutdown(s).map_err(|source| DumpError::File {
                        what: "polling",
                        path: path.clone(),
                        source,
                    })
                };
                let shutdown = if udp {
                    match self.diag(pid, &path, domain, proto, !0)?.get(&key.1) {
                        Some(&v) => v & 3,
                        None => polled(&path)?,
                    }
                } else if tcp && tcp_state == TCP_CLOSE {
                    polled(&path)? & 1
                } else if ping {
                    polled(&path)?
                } else {
                    0
                };
                let peer = inetsk::peer_addr(s).map_err(io_err("getpeername of"))?;
                let any = |a: &Option<SocketAddr>| -> SocketAddr {
                    a.unwrap_or_else(|| match domain {
                        libc::AF_INET6 => "[::]:0".parse().expect("an address"),
                        _ => "0.0.0.0:0".parse().expect("an address"),
                    })
                };
                let (src, dst) = (any(&local), any(&peer));
                // Connections waiting in a listener's queue: which ones, and whether
                // they can be kept, once every socket of the tree is known.
                if let Some(info) =
                    tcp_info.filter(|i| u32::from(i.state) == TCP_LISTEN && i.pending > 0)
                {
                    self.pending_listeners.push(PendingListener {
                        pid,
                        fd,
                        link: link.to_string(),
                        family: domain,
                        addr: src,
                        pending: info.pending,
                    });
                }
                if tcp && dumped_connection(tcp_state) && !self.tcp_close {
                    self.inet_conns.push((canonical(src), canonical(dst)));
                }
                let int = |level, name| sk::getsockopt_int(s, level, name);
                let (ip_level, tos, ttl, pktinfo) = if domain == libc::AF_INET6 {
                    (
                        libc::IPPROTO_IPV6,
                        libc::IPV6_TCLASS,
                        libc::IPV6_UNICAST_HOPS,
                        libc::IPV6_RECVPKTINFO,
                    )
                } else {
                    (
                        libc::IPPROTO_IP,
                        libc::IP_TOS,
                        libc::IP_TTL,
                        libc::IP_PKTINFO,
                    )
                };
                let raw_opts = if raw {
                    Some(raw_opts(s, domain, proto).map_err(|e| match e {
                        RawError::Io(source) => DumpError::File {
                            what: "reading the raw socket options of",
                            path: path.clone(),
                            source,
                        },
                        RawError::Unsupported(why) => unsupported(why),
                    })?)
                } else {
                    None
                };
                // An option this kind of socket does not have is left out.
                let opt = |level, name| sk::getsockopt_int_if_any(s, level, name);
                let ip_opts = Ip_opts_entry {
                    raw: raw_opts.into(),
                    freebind: {
                        let (level, name) = inetsk::freebind_opt(domain);
                        opt(level, name)
                    }
                    .map_err(io_err("reading the freebind option of"))?
                    .map(|v| v != 0),
                    tos: opt(ip_level, tos)
                        .map_err(io_err("reading the TOS of"))?
                        .map(|v| v as u32),
                    ttl: opt(ip_level, ttl)
                        .map_err(io_err("reading the TTL of"))?
                        .map(|v| v as u32),
                    // IP_PKTINFO / IPV6_RECVPKTINFO: the destination of each datagram
                    // comes with it.
                    pktinfo: opt(ip_level, pktinfo)
                        .map_err(io_err("reading the PKTINFO option of"))?
                        .map(|v| v != 0),
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
                let tcp_opts = if tcp {
                    Some(tcp_opts(s).map_err(io_err("reading the TCP options of"))?)
                } else {
                    None
                };
                if let Some(info) =
                    tcp_info.filter(|_| dumped_connection(tcp_state) && !self.tcp_close)
                {
                    let (e, inq, outq) = self
                        .repaired
                        .read(s, &info, opts.reuseaddr())
                        .map_err(io_err("reading in TCP repair mode"))?;
                    let name = format!("tcp-stream-{:x}.img", key.1);
                    let mut img = ImageWriter::new(name.clone(), "TCP_STREAM");
                    img.push(&e).map_err(image_err(&name))?;
                    img.payload(&inq);
                    img.payload(&outq);
                    debug!(
                        pid,
                        fd,
                        inq = inq.len(),
                        outq = outq.len(),
                        "TCP connection"
                    );
                    self.tcp_streams.push(img);
                }
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
                        tcp_opts: tcp_opts.into(),
                        // As CRIU: only a socket shut down has the field.
                        shutdown: match shutdown {
                            0 => None,
                            1 => Some(Sk_shutdown::READ),
                            2 => Some(Sk_shutdown::WRITE),
                            _ => Some(Sk_shutdown::BOTH),
                        }
                        .map(EnumOrUnknown::new),
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
