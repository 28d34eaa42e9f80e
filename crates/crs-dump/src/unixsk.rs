//! Unix sockets of every kind CRIU 4.2 saves, as UNIXSK file entries with the messages
//! queued on each socket in sk-queues.img: socket pairs (ends in one process or in two),
//! descriptions shared by several processes, sockets bound to a path or an abstract name,
//! listening sockets with their accepted connections and the connections still waiting
//! in their backlog ("icons"), connected and unconnected datagram sockets, half-closed
//! connections.
//!
//! The socket's identity (inode, state, peer inode, name, the inode of its socket file,
//! queue lengths, shutdown state, pending connections) comes from the kernel's sock_diag
//! (NETLINK_SOCK_DIAG, UNIX_DIAG) for the inode; the options from getsockopt on the
//! socket taken out of the task with pidfd_getfd. Queued data is read without consuming
//! it, as CRIU does: SO_PEEK_OFF is set to 0 and each `MSG_PEEK` returns the next message
//! (stream: the next bytes), then the task's peek offset is put back.
//!
//! Peers are resolved once the whole tree is dumped ([`UnixSockets::finish`]): a socket
//! connected to one outside the dump (no --ext-unix-sk support), a pending connection that
//! already sent data, a stream connection whose peer vanished without shutting it down,
//! are refused, naming the pid and fd.
//!
//! A queued message that passes fds (SCM_RIGHTS) keeps them as file ids in its `scm`
//! entry: the peek installs a copy of each passed fd in crs, and once every process is
//! dumped each is matched (kcmp KCMP_FILE) to the open file description a process of the
//! tree holds. A passed file no process holds any more is refused by name. On a stream
//! socket, bytes queued before a run that passes fds come back from a peek together with
//! it (the kernel's MSG_PEEK walks on to the next run and takes its fds), so they are saved
//! as one message with the fds, as CRIU saves them. Credentials
//! attached to queued messages (SO_PASSCRED) are not saved, as in CRIU.
//!
//! A child module of `files`: the file ids, the shared-description lookup and files.img
//! are the file table's.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crs_compel::SeizedTree;
use crs_images::codec::ImageWriter;
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::sk_opts::{Sk_opts_entry, Sk_shutdown};
use crs_images::pb::sk_packet::{Scm_entry, Sk_packet_entry};
use crs_images::pb::sk_unix::{File_perms_entry, Unix_sk_entry};
use crs_proc::FdInfo;
use crs_sys::unixsk as sk;
use protobuf::{EnumOrUnknown, MessageField};
use tracing::debug;

use super::{FdEntry, FileTable};
use crate::error::{compel_err, DumpError, Result};
use crate::imgdir::ImageDir;

/// TCP_ESTABLISHED: a connected unix socket's state in sock_diag.
const STATE_ESTABLISHED: u8 = 1;
/// TCP_CLOSE: an unconnected socket.
const STATE_CLOSE: u8 = 7;
/// TCP_LISTEN: a listening socket.
const STATE_LISTEN: u8 = 10;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_VFS: u32 = 0x02;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_ICONS: u32 = 0x08;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_VFS: u16 = 1;
const UNIX_DIAG_PEER: u16 = 2;
const UNIX_DIAG_ICONS: u16 = 3;
const UNIX_DIAG_RQLEN: u16 = 4;
const UNIX_DIAG_SHUTDOWN: u16 = 6;
/// Largest message peeked at (bigger than any unix socket buffer the kernel allows by
/// default).
const PEEK_BUF: usize = 1 << 20;

/// What sock_diag says about one unix socket.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Diag {
    pub kind: u8,
    pub state: u8,
    pub ino: u32,
    pub name: Option<Vec<u8>>,
    /// (inode, kernel dev_t) of the socket file of a path-bound socket.
    pub vfs: Option<(u32, u32)>,
    pub peer: u32,
    /// Inodes of the client sockets of the connections waiting to be accepted.
    pub icons: Vec<u32>,
    /// (receive queue, send queue) from UNIX_DIAG_RQLEN; for a listening socket
    /// (pending connections, backlog).
    pub rqlen: (u32, u32),
    pub shutdown: u8,
}

/// One unix socket dumped (its first fd).
#[derive(Debug, Clone)]
struct Sock {
    pid: i32,
    fd: i32,
    link: String,
    ino: u32,
    peer: u32,
    kind: u8,
    state: u8,
    named: bool,
    shutdown: u8,
    wqlen: u32,
    icons: Vec<u32>,
}

/// The unix sockets dumped so far and the messages queued on them.
#[derive(Default)]
pub(crate) struct UnixSockets {
    socks: Vec<Sock>,
    /// sk-queues.img, in dump order.
    queues: Vec<(Sk_packet_entry, Vec<u8>)>,
    /// The fds passed by queued messages, until they are matched to file ids.
    in_flight: Vec<InFlight>,
}

/// The fds one queued message passes (SCM_RIGHTS), as copies installed in crs.
struct InFlight {
    /// Index of the message in `queues`.
    message: usize,
    /// The receiving socket's process, fd and link (for errors).
    pid: i32,
    fd: i32,
    link: String,
    files: Vec<File>,
}

/// Why the peers of the dumped sockets cannot be restored, by socket.
fn check_peers(socks: &[Sock]) -> std::result::Result<HashMap<u32, u32>, (usize, &'static str)> {
    let by_ino: HashMap<u32, usize> = socks.iter().enumerate().map(|(i, s)| (s.ino, i)).collect();
    // Pending connections: client inode -> listener inode.
    let mut fixed = HashMap::new();
    for (i, s) in socks.iter().enumerate() {
        if s.peer != 0 {
            let Some(&j) = by_ino.get(&s.peer) else {
                return Err((
                    i,
                    "a unix socket connected to a socket outside the dumped tree \
                     (--ext-unix-sk is not supported)",
                ));
            };
            let p = &socks[j];
            if p.kind != s.kind {
                return Err((i, "a unix socket connected to one of another type"));
            }
            if p.peer != s.ino && !(i32::from(s.kind) == libc::SOCK_DGRAM && p.named) {
                return Err((
                    i,
                    "a unix socket connected to an unnamed socket that is connected elsewhere",
                ));
            }
        } else if s.state == STATE_ESTABLISHED && i32::from(s.kind) != libc::SOCK_DGRAM {
            let listener = socks
                .iter()
                .find(|l| l.state == STATE_LISTEN && l.icons.contains(&s.ino));
            match listener {
                Some(_) if s.wqlen != 0 => {
                    return Err((i, "a connection not accepted yet that already sent data"));
                }
                Some(l) => {
                    fixed.insert(s.ino, l.ino);
                }
                None if s.shutdown == Sk_shutdown::BOTH as u8 => {}
                None => {
                    return Err((
                        i,
                        "a connected unix socket whose peer is gone but not shut down",
                    ))
                }
            }
        }
    }
    Ok(fixed)
}

impl UnixSockets {
    /// Resolves the peers once every process is dumped: pending connections get the
    /// listener's inode as their peer (as CRIU records them), anything that cannot be
    /// restored is an error naming the pid and fd.
    pub(crate) fn finish(&self, entries: &mut [File_entry]) -> Result<()> {
        let fixed = check_peers(&self.socks).map_err(|(i, why)| {
            let s = &self.socks[i];
            DumpError::UnsupportedFd {
                pid: s.pid,
                fd: s.fd,
                link: s.link.clone(),
                why,
            }
        })?;
        for e in entries.iter_mut() {
            if let Some(u) = e.usk.as_mut() {
                if let Some(&l) = fixed.get(&u.ino()) {
                    debug!(ino = u.ino(), listener = l, "pending unix connection");
                    u.peer = Some(l);
                }
            }
        }
        for l in self.socks.iter().filter(|l| l.state == STATE_LISTEN) {
            let lost = l
                .icons
                .iter()
                .filter(|i| !self.socks.iter().any(|s| s.ino == **i))
                .count();
            if lost > 0 {
                // Their client is closed or in a process outside the dump: the restored
                // listener would lack them and an accept() waiting for one would hang.
                return Err(DumpError::UnsupportedFd {
                    pid: l.pid,
                    fd: l.fd,
                    link: l.link.clone(),
                    why: "a listener with pending connections whose client is closed or \
                          outside the dumped tree",
                });
            }
        }
        Ok(())
    }

    /// Writes sk-queues.img (only when something is queued, like CRIU).
    pub(crate) fn write(&self, dir: &mut ImageDir) -> Result<()> {
        if self.queues.is_empty() {
            return Ok(());
        }
        let mut img = ImageWriter::new("sk-queues.img", "SK_QUEUES");
        for (e, data) in &self.queues {
            img.push(e).map_err(super::image_err("sk-queues.img"))?;
            img.payload(data);
        }
        dir.write(img)
    }
}

/// The path of a bound name (trailing NULs the kernel keeps dropped), None for an
/// abstract or empty name.
fn name_path(name: &[u8]) -> Option<&[u8]> {
    let end = name.iter().rposition(|&b| b != 0)? + 1;
    (name[0] != 0).then_some(&name[..end])
}

/// Whether the kernel dev_t `kdev` (major << 20 | minor) is the user dev_t `dev`.
fn same_dev(kdev: u32, dev: u64) -> bool {
    let (ma, mi) = (u64::from(kdev >> 20), u64::from(kdev & 0xfffff));
    nix::sys::stat::major(dev) == ma && nix::sys::stat::minor(dev) == mi
}

impl FileTable {
    /// Gives each queued message that passes fds the file ids of what it passes (its
    /// `scm` entry): the open file description of each copy crs holds is found among the
    /// fds of the tree (kcmp KCMP_FILE against every fd seen on the same inode).
    pub(super) fn resolve_in_flight(&mut self) -> Result<()> {
        const SCM_RIGHTS: u32 = 1;
        let me = std::process::id() as i32;
        let in_flight = std::mem::take(&mut self.unix.in_flight);
        for m in &in_flight {
            let mut rights = Vec::with_capacity(m.files.len());
            for f in &m.files {
                let md = f.metadata().map_err(|source| DumpError::File {
                    what: "stat of a file passed in a queued message on",
                    path: PathBuf::from(&m.link),
                    source,
                })?;
                let mut found = None;
                for &(other_pid, other_fd, id) in
                    self.seen.get(&(md.dev(), md.ino())).into_iter().flatten()
                {
                    let same = crs_sys::dump::kcmp(
                        me,
                        other_pid,
                        crs_sys::dump::kcmp_type::FILE,
                        f.as_raw_fd() as u64,
                        other_fd as u64,
                    )
                    .map_err(|source| DumpError::Kcmp {
                        pid: other_pid,
                        what: "a file passed in a queued message",
                        source,
                    })?;
                    if same == 0 {
                        found = Some(id);
                        break;
                    }
                }
                let id = found.ok_or_else(|| DumpError::UnsupportedFd {
                    pid: m.pid,
                    fd: m.fd,
                    link: m.link.clone(),
                    why: "a queued unix message passing a file that no process of the \
                          tree holds open (SCM_RIGHTS)",
                })?;
                rights.push(id);
            }
            debug!(
                pid = m.pid,
                fd = m.fd,
                files = ?rights,
                "fds passed in a queued unix message"
            );
            self.unix.queues[m.message].0.scm.push(Scm_entry {
                type_: Some(SCM_RIGHTS),
                rights,
                ..Default::default()
            });
        }
        Ok(())
    }

    /// Dumps unix socket fd `fd` of process `pid`: its file entry and queued messages the
    /// first time its open file description is seen.
    pub(super) fn unix_fd(
        &mut self,
        tree: &SeizedTree,
        pid: i32,
        fd: i32,
        info: &FdInfo,
        link: &str,
    ) -> Result<FdEntry> {
        let unsupported = |why| DumpError::UnsupportedFd {
            pid,
            fd,
            link: link.to_string(),
            why,
        };
        let file = File::from(
            tree.take_fd(pid, fd)
                .map_err(compel_err(pid, "taking an fd"))?,
        );
        let path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
        let io_err = |what: &'static str| {
            let path = path.clone();
            move |source| DumpError::File { what, path, source }
        };
        let md = file.metadata().map_err(io_err("stat of"))?;
        let domain = sk::getsockopt_int(file.as_fd(), libc::SOL_SOCKET, libc::SO_DOMAIN)
            .map_err(io_err("reading SO_DOMAIN of"))?;
        let key = (md.dev(), md.ino());
        if domain == libc::AF_INET || domain == libc::AF_INET6 {
            return self.inet_fd(pid, fd, info, link, file, key, domain);
        }
        if domain == libc::AF_NETLINK {
            return self.netlink_fd(pid, fd, info, link, file, key);
        }
        if domain == libc::AF_PACKET {
            return self.packet_fd(pid, fd, info, link, file, key);
        }
        if domain != libc::AF_UNIX {
            return Err(unsupported(
                "sockets other than unix, inet, netlink and packet sockets",
            ));
        }
        let shared = self.shared_with(pid, fd, key)?.map(|(_, id)| id);
        let id = match shared {
            Some(id) => id,
            None => {
                let ino = md.ino() as u32;
                let reply = sk::sock_diag(&diag_request(ino)).map_err(io_err("sock_diag of"))?;
                let d = parse_diag(&reply)
                    .map_err(|_| unsupported("a unix socket sock_diag does not describe"))?;
                if d.ino != ino {
                    return Err(unsupported("a unix socket sock_diag does not describe"));
                }
                if ![STATE_ESTABLISHED, STATE_CLOSE, STATE_LISTEN].contains(&d.state) {
                    return Err(unsupported("a unix socket in a transient state"));
                }
                let kind = u32::from(d.kind);
                let stream = match d.kind as i32 {
                    libc::SOCK_STREAM => true,
                    libc::SOCK_DGRAM | libc::SOCK_SEQPACKET => false,
                    _ => return Err(unsupported("a unix socket of an unknown type")),
                };
                let name = d.name.clone().unwrap_or_default();
                let (perms, name_dir, deleted) = self.unix_name(pid, &d, &name, unsupported)?;
                let id = self.alloc();
                let fown = self.fown(&file, pid)?;
                let opts = sk_opts(&file).map_err(io_err("reading the options of"))?;
                // A listener queues connections, not data; a stream or seqpacket socket
                // never connected has no queue (recv on it fails: EINVAL, ENOTCONN).
                let never_connected = d.state == STATE_CLOSE && kind != libc::SOCK_DGRAM as u32;
                let msgs = if d.state == STATE_LISTEN || never_connected {
                    Vec::new()
                } else {
                    peek_queue(&file, stream).map_err(|e| match e {
                        PeekError::Io(source) => DumpError::File {
                            what: "peeking at the queue of",
                            path: path.clone(),
                            source,
                        },
                        PeekError::Unsupported(why) => unsupported(why),
                    })?
                };
                let bytes: usize = msgs.iter().map(|(m, _)| m.len()).sum();
                debug!(
                    pid,
                    fd,
                    id,
                    ino,
                    peer = d.peer,
                    kind,
                    state = d.state,
                    name = %String::from_utf8_lossy(&name),
                    messages = msgs.len(),
                    bytes,
                    "unix socket"
                );
                for (m, fds) in msgs {
                    if !fds.is_empty() {
                        self.unix.in_flight.push(InFlight {
                            message: self.unix.queues.len(),
                            pid,
                            fd,
                            link: link.to_string(),
                            files: fds.into_iter().map(File::from).collect(),
                        });
                    }
                    self.unix.queues.push((
                        Sk_packet_entry {
                            id_for: Some(id),
                            length: Some(m.len() as u32),
                            ..Default::default()
                        },
                        m,
                    ));
                }
                self.unix.socks.push(Sock {
                    pid,
                    fd,
                    link: link.to_string(),
                    ino,
                    peer: d.peer,
                    kind: d.kind,
                    state: d.state,
                    named: !name.is_empty(),
                    shutdown: d.shutdown,
                    wqlen: d.rqlen.1,
                    icons: d.icons.clone(),
                });
                let shutdown = match d.shutdown & 3 {
                    0 => None,
                    1 => Some(Sk_shutdown::READ),
                    2 => Some(Sk_shutdown::WRITE),
                    _ => Some(Sk_shutdown::BOTH),
                };
                self.entries.push(File_entry {
                    type_: Some(EnumOrUnknown::new(Fd_types::UNIXSK)),
                    id: Some(id),
                    usk: MessageField::some(Unix_sk_entry {
                        id: Some(id),
                        ino: Some(ino),
                        type_: Some(kind),
                        state: Some(u32::from(d.state)),
                        flags: Some(info.flags & !(libc::O_CLOEXEC as u32)),
                        uflags: Some(0),
                        backlog: Some(d.rqlen.1),
                        peer: Some(d.peer),
                        fown: MessageField::some(fown),
                        opts: MessageField::some(opts),
                        name: Some(name),
                        shutdown: shutdown.map(EnumOrUnknown::new),
                        file_perms: perms.map_or(MessageField::none(), MessageField::some),
                        name_dir,
                        deleted: deleted.then_some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                id
            }
        };
        Ok(self.seen_fd((pid, fd), key, id, info.flags, Fd_types::UNIXSK))
    }

    /// For a socket bound to a path: the mode and owner of its socket file, the directory
    /// a relative name was bound in, and whether the file was removed (the name no longer
    /// leads to this socket).
    fn unix_name(
        &self,
        pid: i32,
        d: &Diag,
        name: &[u8],
        unsupported: impl Fn(&'static str) -> DumpError,
    ) -> Result<(Option<File_perms_entry>, Option<String>, bool)> {
        use std::os::unix::ffi::OsStrExt;
        let Some(p) = name_path(name) else {
            return Ok((None, None, false));
        };
        let p = std::ffi::OsStr::from_bytes(p);
        let (full, name_dir) = if p.as_bytes().starts_with(b"/") {
            let rel = p.as_bytes().strip_prefix(b"/").unwrap_or_default();
            (
                PathBuf::from(format!("/proc/{pid}/root")).join(std::ffi::OsStr::from_bytes(rel)),
                None,
            )
        } else {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(|source| {
                DumpError::File {
                    what: "reading the working directory of",
                    path: PathBuf::from(format!("/proc/{pid}/cwd")),
                    source,
                }
            })?;
            (
                PathBuf::from(format!("/proc/{pid}/cwd")).join(p),
                Some(cwd.to_string_lossy().into_owned()),
            )
        };
        let found = std::fs::metadata(&full).ok().filter(|m| {
            d.vfs
                .is_some_and(|(ino, dev)| m.ino() == u64::from(ino) && same_dev(dev, m.dev()))
        });
        match found {
            Some(m) => Ok((
                Some(File_perms_entry {
                    mode: Some(m.mode()),
                    uid: Some(m.uid()),
                    gid: Some(m.gid()),
                    ..Default::default()
                }),
                name_dir,
                false,
            )),
            None if name_dir.is_some() => Err(unsupported(
                "a unix socket bound to a relative name not found in the working directory",
            )),
            None => Ok((None, None, true)),
        }
    }
}

/// A SOCK_DIAG_BY_FAMILY request for the unix socket with inode `ino`: its name, socket
/// file, peer, pending connections, queue lengths (and, always sent, its shutdown state).
pub(crate) fn diag_request(ino: u32) -> Vec<u8> {
    let mut b = Vec::with_capacity(40);
    b.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
    b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    b.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    b.extend_from_slice(&1u32.to_ne_bytes()); // seq
    b.extend_from_slice(&0u32.to_ne_bytes()); // pid
                                              // struct unix_diag_req
    b.push(libc::AF_UNIX as u8);
    b.push(0);
    b.extend_from_slice(&0u16.to_ne_bytes());
    b.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    b.extend_from_slice(&ino.to_ne_bytes());
    let show =
        UDIAG_SHOW_NAME | UDIAG_SHOW_VFS | UDIAG_SHOW_PEER | UDIAG_SHOW_ICONS | UDIAG_SHOW_RQLEN;
    b.extend_from_slice(&show.to_ne_bytes());
    b.extend_from_slice(&u32::MAX.to_ne_bytes()); // no cookie
    b.extend_from_slice(&u32::MAX.to_ne_bytes());
    b
}

/// Parses the reply to [`diag_request`]: one unix_diag_msg and its attributes. An
/// NLMSG_ERROR reply, or one too short, is `Err` with the errno (0 when malformed).
pub(crate) fn parse_diag(b: &[u8]) -> std::result::Result<Diag, i32> {
    let u16_at = |o: usize| b.get(o..o + 2).map(|s| u16::from_ne_bytes([s[0], s[1]]));
    let u32_at = |o: usize| {
        b.get(o..o + 4)
            .map(|s| u32::from_ne_bytes(s.try_into().expect("4 bytes")))
    };
    let len = u32_at(0).ok_or(0)? as usize;
    let ty = u16_at(4).ok_or(0)?;
    if len > b.len() || len < 16 {
        return Err(0);
    }
    if ty == NLMSG_ERROR {
        return Err(-(u32_at(16).ok_or(0)? as i32));
    }
    if ty != SOCK_DIAG_BY_FAMILY || len < 32 {
        return Err(0);
    }
    let mut d = Diag {
        kind: b[17],
        state: b[18],
        ino: u32_at(20).ok_or(0)?,
        ..Default::default()
    };
    let mut o = 32;
    while o + 4 <= len {
        let alen = u16_at(o).ok_or(0)? as usize;
        let aty = u16_at(o + 2).ok_or(0)? & 0x3fff;
        if alen < 4 || o + alen > len {
            return Err(0);
        }
        let data = &b[o + 4..o + alen];
        match aty {
            UNIX_DIAG_NAME => d.name = Some(data.to_vec()),
            UNIX_DIAG_VFS if data.len() >= 8 => {
                d.vfs = Some((u32_at(o + 4).ok_or(0)?, u32_at(o + 8).ok_or(0)?))
            }
            UNIX_DIAG_PEER if data.len() >= 4 => d.peer = u32_at(o + 4).ok_or(0)?,
            UNIX_DIAG_ICONS => {
                d.icons = data
                    .chunks_exact(4)
                    .map(|c| u32::from_ne_bytes(c.try_into().expect("4 bytes")))
                    .collect()
            }
            UNIX_DIAG_RQLEN if data.len() >= 8 => {
                d.rqlen = (u32_at(o + 4).ok_or(0)?, u32_at(o + 8).ok_or(0)?)
            }
            UNIX_DIAG_SHUTDOWN if !data.is_empty() => d.shutdown = data[0],
            _ => {}
        }
        o += (alen + 3) & !3;
    }
    Ok(d)
}

/// The socket options CRIU saves for a unix socket.
pub(super) fn sk_opts(file: &File) -> std::io::Result<Sk_opts_entry> {
    let fd = file.as_fd();
    let int = |name| sk::getsockopt_int(fd, libc::SOL_SOCKET, name);
    let (snd_s, snd_us) = sk::getsockopt_timeval(fd, libc::SO_SNDTIMEO)?;
    let (rcv_s, rcv_us) = sk::getsockopt_timeval(fd, libc::SO_RCVTIMEO)?;
    let mark = int(libc::SO_MARK)? as u32;
    // An option this kind of socket does not have is left out.
    let opt = |name| sk::getsockopt_int_if_any(fd, libc::SOL_SOCKET, name);
    Ok(Sk_opts_entry {
        so_sndbuf: Some(int(libc::SO_SNDBUF)? as u32),
        so_rcvbuf: Some(int(libc::SO_RCVBUF)? as u32),
        so_snd_tmo_sec: Some(snd_s),
        so_snd_tmo_usec: Some(snd_us),
        so_rcv_tmo_sec: Some(rcv_s),
        so_rcv_tmo_usec: Some(rcv_us),
        reuseaddr: Some(int(libc::SO_REUSEADDR)? != 0),
        so_priority: Some(int(libc::SO_PRIORITY)? as u32),
        so_rcvlowat: Some(int(libc::SO_RCVLOWAT)? as u32),
        so_mark: (mark != 0).then_some(mark),
        so_passcred: opt(libc::SO_PASSCRED)?.map(|v| v != 0),
        so_passsec: opt(libc::SO_PASSSEC)?.map(|v| v != 0),
        so_dontroute: Some(int(libc::SO_DONTROUTE)? != 0),
        so_no_check: Some(int(libc::SO_NO_CHECK)? != 0),
        so_reuseport: Some(int(libc::SO_REUSEPORT)? != 0),
        so_broadcast: Some(int(libc::SO_BROADCAST)? != 0),
        so_keepalive: Some(int(libc::SO_KEEPALIVE)? != 0),
        so_oobinline: Some(int(libc::SO_OOBINLINE)? as u32),
        so_buf_lock: Some(opt(SO_BUF_LOCK)?.unwrap_or(0) as u32),
        so_bound_dev: bound_dev(fd)?,
        so_filter: sk::get_filter(fd)?,
        so_linger: linger(fd)?,
        ..Default::default()
    })
}

/// SO_BUF_LOCK (Linux 5.14): which buffer sizes were set by hand (1 send, 2 receive).
const SO_BUF_LOCK: i32 = 72;

/// The device the socket is bound to (SO_BINDTODEVICE), if any.
fn bound_dev(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Option<String>> {
    let b = sk::getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, libc::IFNAMSIZ)?;
    let name = b.split(|&c| c == 0).next().unwrap_or_default();
    Ok((!name.is_empty()).then(|| String::from_utf8_lossy(name).into_owned()))
}

/// SO_LINGER's time when lingering is on.
fn linger(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<Option<u32>> {
    let b = sk::getsockopt_bytes(fd, libc::SOL_SOCKET, libc::SO_LINGER, 8)?;
    let word = |at: usize| {
        b.get(at..at + 4)
            .map(|w| i32::from_ne_bytes(w.try_into().expect("4 bytes")))
    };
    Ok(match (word(0), word(4)) {
        (Some(on), Some(secs)) if on != 0 => Some(secs as u32),
        _ => None,
    })
}

enum PeekError {
    Io(std::io::Error),
    Unsupported(&'static str),
}

/// A queued message and the fds it passes.
type Message = (Vec<u8>, Vec<std::os::fd::OwnedFd>);

/// The messages queued on `file` (the socket's receive queue), in order, not consumed:
/// SO_PEEK_OFF is set to 0 for the walk and put back after it, also on error.
fn peek_queue(file: &File, stream: bool) -> std::result::Result<Vec<Message>, PeekError> {
    let fd = file.as_fd();
    let old = sk::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF).map_err(PeekError::Io)?;
    sk::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0).map_err(PeekError::Io)?;
    let out = peek_all(file, stream);
    let back = sk::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old);
    let out = out?;
    back.map_err(PeekError::Io)?;
    Ok(out)
}

fn peek_all(file: &File, stream: bool) -> std::result::Result<Vec<Message>, PeekError> {
    let mut buf = vec![0u8; PEEK_BUF];
    let mut out = Vec::new();
    while let Some(p) = sk::peek(file.as_fd(), &mut buf).map_err(PeekError::Io)? {
        if p.control_truncated {
            return Err(PeekError::Unsupported(
                "a queued unix message with more ancillary data than crs reads",
            ));
        }
        if p.truncated {
            return Err(PeekError::Unsupported("a queued unix message over 1 MiB"));
        }
        if p.len == 0 {
            if stream {
                break; // the peer shut down its writing side
            }
            return Err(PeekError::Unsupported("a queued zero-length unix message"));
        }
        out.push((buf[..p.len].to_vec(), p.fds));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_diag_reply_with_peer_and_rqlen_is_read() {
        let mut b = Vec::new();
        let attrs: Vec<u8> = [
            &[8u8, 0, 2, 0][..],
            &77u32.to_ne_bytes(),
            &[12, 0, 4, 0],
            &5u32.to_ne_bytes(),
            &768u32.to_ne_bytes(),
            &[5, 0, 6, 0, 0, 0, 0, 0],
        ]
        .concat();
        b.extend_from_slice(&((32 + attrs.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&[1, 5, 1, 0]);
        b.extend_from_slice(&76u32.to_ne_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&attrs);
        let d = parse_diag(&b).unwrap();
        assert_eq!(
            d,
            Diag {
                kind: 5,
                state: 1,
                ino: 76,
                name: None,
                peer: 77,
                vfs: None,
                icons: Vec::new(),
                rqlen: (5, 768),
                shutdown: 0,
            }
        );
    }

    #[test]
    fn parse_diag_error_reply_is_errno() {
        let mut b = Vec::new();
        b.extend_from_slice(&36u32.to_ne_bytes());
        b.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&(-libc::ENOENT).to_ne_bytes());
        b.extend_from_slice(&[0; 16]);
        assert_eq!(parse_diag(&b), Err(libc::ENOENT));
        assert_eq!(parse_diag(&b[..8]), Err(0));
    }

    #[test]
    fn diag_request_is_40_bytes_for_the_inode() {
        let r = diag_request(1234);
        assert_eq!(r.len(), 40);
        assert_eq!(&r[24..28], &1234u32.to_ne_bytes());
    }

    #[test]
    fn parse_diag_listener_with_vfs_and_icons_is_read() {
        let attrs: Vec<u8> = [
            &[8u8, 0, 0, 0][..],
            b"/s\0\0",
            &[12, 0, 1, 0],
            &900u32.to_ne_bytes(),
            &((8u32 << 20) | 3).to_ne_bytes(),
            &[12, 0, 3, 0],
            &41u32.to_ne_bytes(),
            &42u32.to_ne_bytes(),
        ]
        .concat();
        let mut b = Vec::new();
        b.extend_from_slice(&((32 + attrs.len()) as u32).to_ne_bytes());
        b.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        b.extend_from_slice(&[0; 10]);
        b.extend_from_slice(&[1, 1, STATE_LISTEN, 0]);
        b.extend_from_slice(&40u32.to_ne_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&attrs);
        let d = parse_diag(&b).unwrap();
        assert_eq!(d.state, STATE_LISTEN);
        assert_eq!(d.name.as_deref(), Some(&b"/s\0\0"[..]));
        assert_eq!(d.vfs, Some((900, (8 << 20) | 3)));
        assert_eq!(d.icons, vec![41, 42]);
    }

    fn sock(ino: u32, peer: u32, kind: i32, state: u8) -> Sock {
        Sock {
            pid: 1,
            fd: ino as i32,
            link: format!("socket:[{ino}]"),
            ino,
            peer,
            kind: kind as u8,
            state,
            named: false,
            shutdown: 0,
            wqlen: 0,
            icons: Vec::new(),
        }
    }

    #[test]
    fn check_peers_pending_connection_gets_the_listener() {
        let mut l = sock(10, 0, libc::SOCK_STREAM, STATE_LISTEN);
        l.named = true;
        l.icons = vec![12];
        let socks = [l, sock(12, 0, libc::SOCK_STREAM, STATE_ESTABLISHED)];
        let fixed = check_peers(&socks).unwrap();
        assert_eq!(fixed.get(&12), Some(&10));
    }

    #[test]
    fn finish_listener_with_pending_connection_of_a_closed_client_is_refused() {
        let mut l = sock(10, 0, libc::SOCK_STREAM, STATE_LISTEN);
        l.icons = vec![99]; // a client no process of the dump holds (closed or outside)
        let socks = UnixSockets {
            socks: vec![l],
            queues: Vec::new(),
            in_flight: Vec::new(),
        };
        let err = socks.finish(&mut []).unwrap_err();
        assert!(
            matches!(err, DumpError::UnsupportedFd { why, .. } if why.contains("pending")),
            "{err}"
        );
    }

    #[test]
    fn check_peers_pending_connection_with_data_is_refused() {
        let mut l = sock(10, 0, libc::SOCK_STREAM, STATE_LISTEN);
        l.icons = vec![12];
        let mut c = sock(12, 0, libc::SOCK_STREAM, STATE_ESTABLISHED);
        c.wqlen = 5;
        assert_eq!(check_peers(&[l, c]).map_err(|e| e.0), Err(1));
    }

    #[test]
    fn check_peers_peer_outside_the_dump_is_refused() {
        let socks = [sock(10, 11, libc::SOCK_STREAM, STATE_ESTABLISHED)];
        assert_eq!(check_peers(&socks).map_err(|e| e.0), Err(0));
    }

    #[test]
    fn check_peers_dgram_to_named_server_is_ok() {
        let mut srv = sock(10, 0, libc::SOCK_DGRAM, STATE_CLOSE);
        srv.named = true;
        let socks = [srv, sock(11, 10, libc::SOCK_DGRAM, STATE_ESTABLISHED)];
        assert!(check_peers(&socks).unwrap().is_empty());
    }

    #[test]
    fn check_peers_dangling_stream_is_refused_unless_shut_down() {
        let mut s = sock(10, 0, libc::SOCK_STREAM, STATE_ESTABLISHED);
        assert!(check_peers(std::slice::from_ref(&s)).is_err());
        s.shutdown = 3;
        assert!(check_peers(&[s]).is_ok());
    }

    #[test]
    fn name_path_and_same_dev_cases() {
        assert_eq!(name_path(b"/a/b\0"), Some(&b"/a/b"[..]));
        assert_eq!(name_path(b"\0abs"), None);
        assert!(same_dev((259 << 20) | 2, nix::sys::stat::makedev(259, 2)));
        assert!(!same_dev((259 << 20) | 2, nix::sys::stat::makedev(259, 3)));
    }
}

#[cfg(test)]
mod peek_tests {
    use super::*;

    /// A stream peek runs through data that passes no fds into the next run that does
    /// and stops after it (and a real read of the same length would return the fds with
    /// it): the bytes before cannot be told apart, and are saved with the fds, as CRIU
    /// saves them. The data after is a message of its own.
    #[test]
    fn stream_fds_go_with_the_data_before_them() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let f = File::open("/dev/null").unwrap();
        sk::send(a.as_fd(), b"plain one", None).unwrap();
        sk::send_with_fds(a.as_fd(), b"two fds", &[f.as_fd()], None).unwrap();
        sk::send(a.as_fd(), b"plain two", None).unwrap();
        let b = File::from(std::os::fd::OwnedFd::from(b));
        let msgs = match peek_queue(&b, true) {
            Ok(m) => m,
            Err(PeekError::Io(e)) => panic!("{e}"),
            Err(PeekError::Unsupported(w)) => panic!("{w}"),
        };
        let got: Vec<(String, usize)> = msgs
            .iter()
            .map(|(d, fds)| (String::from_utf8_lossy(d).into_owned(), fds.len()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("plain onetwo fds".to_string(), 1),
                ("plain two".to_string(), 0)
            ]
        );
    }
}
