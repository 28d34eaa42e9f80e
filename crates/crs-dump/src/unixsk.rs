//! Unix sockets: connected pairs (socketpair(2)) of SOCK_STREAM, SOCK_DGRAM or
//! SOCK_SEQPACKET held by one process, saved as CRIU's UNIXSK file entries with the
//! messages queued on each end in sk-queues.img.
//!
//! The socket's identity (inode, state, peer inode, queue lengths, shutdown state) comes
//! from the kernel's sock_diag (NETLINK_SOCK_DIAG, UNIX_DIAG) for the inode; the options
//! from getsockopt on the socket taken out of the task with pidfd_getfd. Queued data is
//! read without consuming it, as CRIU does: SO_PEEK_OFF is set to 0 and each
//! `MSG_PEEK` returns the next message (stream: the next bytes), then the task's peek
//! offset is put back. Named, listening or unconnected sockets, sockets shared with or
//! connected to another process, shut-down sockets and messages with ancillary data
//! (SCM_RIGHTS, credentials) are refused.
//!
//! A child module of `files`: the file ids, the shared-description lookup and files.img
//! are the file table's.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use crs_compel::SeizedTree;
use crs_images::codec::ImageWriter;
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::sk_opts::Sk_opts_entry;
use crs_images::pb::sk_packet::Sk_packet_entry;
use crs_images::pb::sk_unix::Unix_sk_entry;
use crs_proc::FdInfo;
use crs_sys::unixsk as sk;
use protobuf::{EnumOrUnknown, MessageField};
use tracing::debug;

use super::{fown_of, FdEntry, FileTable};
use crate::error::{compel_err, DumpError, Result};
use crate::imgdir::ImageDir;

/// TCP_ESTABLISHED: a connected unix socket's state in sock_diag.
const STATE_ESTABLISHED: u8 = 1;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const UDIAG_SHOW_NAME: u32 = 0x01;
const UDIAG_SHOW_PEER: u32 = 0x04;
const UDIAG_SHOW_RQLEN: u32 = 0x10;
const UNIX_DIAG_NAME: u16 = 0;
const UNIX_DIAG_PEER: u16 = 2;
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
    pub peer: u32,
    /// (receive queue, send queue) from UNIX_DIAG_RQLEN.
    pub rqlen: (u32, u32),
    pub shutdown: u8,
}

/// The unix sockets dumped so far and the messages queued on them.
#[derive(Default)]
pub(crate) struct UnixSockets {
    /// (pid, fd, inode, peer inode) of every socket dumped.
    socks: Vec<(i32, i32, u32, u32)>,
    /// sk-queues.img, in dump order.
    queues: Vec<(Sk_packet_entry, Vec<u8>)>,
}

impl UnixSockets {
    /// Checks that every socket of process `pid` has its peer among the sockets of the
    /// same process (a pair held by one process).
    pub(crate) fn check_peers(&self, pid: i32) -> Result<()> {
        for &(p, fd, ino, peer) in &self.socks {
            if p != pid {
                continue;
            }
            let mutual = self
                .socks
                .iter()
                .any(|&(q, _, i, pp)| q == pid && i == peer && pp == ino);
            if !mutual {
                return Err(DumpError::UnsupportedFd {
                    pid,
                    fd,
                    link: format!("socket:[{ino}]"),
                    why: "a unix socket whose peer is not open in the same process",
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

impl FileTable {
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
        if domain != libc::AF_UNIX {
            return Err(unsupported("sockets other than unix sockets"));
        }
        let key = (md.dev(), md.ino());
        let shared = match self.shared_with(pid, fd, key)? {
            Some((other_pid, _)) if other_pid != pid => {
                return Err(unsupported("a unix socket shared between processes"));
            }
            found => found.map(|(_, id)| id),
        };
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
                if d.name.as_ref().is_some_and(|n| !n.is_empty()) {
                    return Err(unsupported(
                        "a named or abstract unix socket (not supported yet)",
                    ));
                }
                if d.state != STATE_ESTABLISHED || d.peer == 0 {
                    return Err(unsupported(
                        "a unix socket that is not connected (only socketpairs are supported)",
                    ));
                }
                if d.shutdown != 0 {
                    return Err(unsupported("a shut-down unix socket (not supported yet)"));
                }
                let kind = u32::from(d.kind);
                let stream = match d.kind as i32 {
                    libc::SOCK_STREAM => true,
                    libc::SOCK_DGRAM | libc::SOCK_SEQPACKET => false,
                    _ => return Err(unsupported("a unix socket of an unknown type")),
                };
                let id = self.alloc();
                let fown = fown_of(&file);
                let opts = sk_opts(&file).map_err(io_err("reading the options of"))?;
                let msgs = peek_queue(&file, stream).map_err(|e| match e {
                    PeekError::Io(source) => DumpError::File {
                        what: "peeking at the queue of",
                        path: path.clone(),
                        source,
                    },
                    PeekError::Unsupported(why) => unsupported(why),
                })?;
                let bytes: usize = msgs.iter().map(Vec::len).sum();
                debug!(
                    pid,
                    fd,
                    id,
                    ino,
                    peer = d.peer,
                    kind,
                    messages = msgs.len(),
                    bytes,
                    "unix socket"
                );
                for m in msgs {
                    self.unix.queues.push((
                        Sk_packet_entry {
                            id_for: Some(id),
                            length: Some(m.len() as u32),
                            ..Default::default()
                        },
                        m,
                    ));
                }
                self.unix.socks.push((pid, fd, ino, d.peer));
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
                        name: Some(Vec::new()),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                id
            }
        };
        self.seen.entry(key).or_default().push((pid, fd, id));
        Ok(FdEntry {
            fd,
            id,
            cloexec: info.flags & libc::O_CLOEXEC as u32 != 0,
            kind: Fd_types::UNIXSK,
        })
    }
}

/// A SOCK_DIAG_BY_FAMILY request for the unix socket with inode `ino`: its name, peer,
/// queue lengths (and, always sent, its shutdown state).
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
    b.extend_from_slice(&(UDIAG_SHOW_NAME | UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN).to_ne_bytes());
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
            UNIX_DIAG_PEER if data.len() >= 4 => d.peer = u32_at(o + 4).ok_or(0)?,
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
fn sk_opts(file: &File) -> std::io::Result<Sk_opts_entry> {
    let fd = file.as_fd();
    let int = |name| sk::getsockopt_int(fd, libc::SOL_SOCKET, name);
    let (snd_s, snd_us) = sk::getsockopt_timeval(fd, libc::SO_SNDTIMEO)?;
    let (rcv_s, rcv_us) = sk::getsockopt_timeval(fd, libc::SO_RCVTIMEO)?;
    let mark = int(libc::SO_MARK)? as u32;
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
        so_passcred: Some(int(libc::SO_PASSCRED)? != 0),
        so_passsec: Some(int(libc::SO_PASSSEC)? != 0),
        so_dontroute: Some(int(libc::SO_DONTROUTE)? != 0),
        so_no_check: Some(int(libc::SO_NO_CHECK)? != 0),
        so_reuseport: Some(int(libc::SO_REUSEPORT)? != 0),
        so_broadcast: Some(int(libc::SO_BROADCAST)? != 0),
        so_keepalive: Some(int(libc::SO_KEEPALIVE)? != 0),
        so_oobinline: Some(int(libc::SO_OOBINLINE)? as u32),
        so_buf_lock: Some(0),
        ..Default::default()
    })
}

enum PeekError {
    Io(std::io::Error),
    Unsupported(&'static str),
}

/// The messages queued on `file` (the socket's receive queue), in order, not consumed:
/// SO_PEEK_OFF is set to 0 for the walk and put back after it, also on error.
fn peek_queue(file: &File, stream: bool) -> std::result::Result<Vec<Vec<u8>>, PeekError> {
    let fd = file.as_fd();
    let old = sk::getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF).map_err(PeekError::Io)?;
    sk::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, 0).map_err(PeekError::Io)?;
    let out = peek_all(file, stream);
    let back = sk::setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_PEEK_OFF, old);
    let out = out?;
    back.map_err(PeekError::Io)?;
    Ok(out)
}

fn peek_all(file: &File, stream: bool) -> std::result::Result<Vec<Vec<u8>>, PeekError> {
    let mut buf = vec![0u8; PEEK_BUF];
    let mut out = Vec::new();
    while let Some(p) = sk::peek(file.as_fd(), &mut buf).map_err(PeekError::Io)? {
        if p.control {
            return Err(PeekError::Unsupported(
                "a queued unix message with ancillary data (SCM_RIGHTS or credentials)",
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
        out.push(buf[..p.len].to_vec());
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
}
