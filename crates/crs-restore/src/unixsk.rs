//! Unix sockets, built two ways.
//!
//! - A pair whose two ends are unnamed and held by one process only (fds of one fdinfo,
//!   no other process has either end) is created by syscalls injected into the seized
//!   task ([`create`]): socketpair, the ends moved above every fd of the task, their
//!   status flags and socket options set, the messages of sk-queues.img sent into each
//!   end's peer in image order, then each end put at its fd numbers. The kernel then
//!   records the task itself as the peer (SO_PEERCRED), as CRIU does.
//! - Every other socket is built in crs's own process ([`create_in_crs`]) and handed to
//!   each task that holds it (`handoff`), which keeps one open description for all of
//!   them: listeners are bound and listen, accepted connections are made by connecting a
//!   new client to the restored listener and accepting (so the accepted end carries the
//!   listener's name), connections that were waiting in a backlog are connected and left
//!   there, pairs without a listener are socketpairs, datagram sockets are bound and
//!   connected by name, queued messages are sent one by one in image order from the
//!   socket that can reach the receiver (datagram and seqpacket boundaries kept), then
//!   shutdown states, socket file mode and owner, and status flags are set. A stale
//!   socket file at a bind path is removed first (anything else there is an error). The
//!   peer credentials of these sockets name crs, not the task (CRIU has the same limit
//!   for connections between processes).
//!
//! A socket on whose queue a message passes fds (SCM_RIGHTS) gets its whole queue last
//! ([`queue_passing`]), once every process of the tree holds its fds: crs takes the
//! sender (the socket's peer) and each passed file from the processes holding them
//! (pidfd_getfd) and sends the messages in image order, the fds with theirs.
//!
//! Refused: sockets connected to ones outside the images (USK_EXTERN, --ext-unix-sk),
//! pending connections to a listener whose socket file was removed, a message passing
//! fds to a socket whose peer (or a passed file) no restored process holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crs_compel::RemoteAddr;
use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::fdinfo::{Fd_types, Fdinfo_entry, File_entry};
use crs_images::pb::sk_opts::{Sk_opts_entry, Sk_shutdown};
use crs_images::pb::sk_packet::Sk_packet_entry;
use crs_images::pb::sk_unix::Unix_sk_entry;
use crs_sys::unixsk as sk;
use tracing::{debug, warn};

use crate::error::{invalid, unsupported};
use crate::handoff::CrsFiles;
use crate::images::{Images, Tree};
use crate::remote::Remote;
use crate::RestoreError;

const STATE_ESTABLISHED: u32 = 1;
const STATE_CLOSE: u32 = 7;
const STATE_LISTEN: u32 = 10;

/// The messages queued on each socket (sk-queues.img), by receiving file id, in order.
pub(crate) type Queues = BTreeMap<u32, Vec<Vec<u8>>>;

/// One queued message and the file ids it passes (none for a message passing no fds).
pub(crate) type PassingMessage = (Vec<u8>, Vec<u32>);

/// The queues that pass fds: by receiving file id, their messages in order.
pub(crate) type Passing = BTreeMap<u32, Vec<PassingMessage>>;

/// scm_entry type of passed fds.
const SCM_RIGHTS: u32 = 1;

fn usk(f: &File_entry) -> Result<&Unix_sk_entry, RestoreError> {
    f.usk.as_ref().ok_or_else(|| {
        invalid(
            "files.img",
            format!("file id {} has no unix_sk entry", f.id()),
        )
    })
}

/// The UNIXSK file ids of the process (its `fdinfo`).
fn ids(fdinfo: &[Fdinfo_entry]) -> Vec<u32> {
    let mut v: Vec<u32> = fdinfo
        .iter()
        .filter(|e| e.type_() == Fd_types::UNIXSK)
        .map(|e| e.id())
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The file id of the peer of unix socket `id` among `ids`: the one whose inode is its
/// peer and whose peer is it.
fn peer_of(files: &BTreeMap<u32, File_entry>, ids: &[u32], id: u32) -> Option<u32> {
    let me = files.get(&id)?.usk.as_ref()?;
    ids.iter().copied().find(|&o| {
        o != id
            && files
                .get(&o)
                .and_then(|f| f.usk.as_ref())
                .is_some_and(|u| u.ino() == me.peer() && u.peer() == me.ino())
    })
}

/// Checks unix socket file `f` on its own: a known type and state, a name that fits a
/// sockaddr_un, no flags crs does not handle (external, service, inherited sockets).
/// How it relates to other sockets is checked when the sockets are built.
pub(crate) fn check(f: &File_entry) -> Result<(), RestoreError> {
    let u = usk(f)?;
    let id = f.id();
    if !matches!(
        u.type_() as i32,
        libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET
    ) {
        return Err(invalid(
            "files.img",
            format!("unix socket {id} of type {}", u.type_()),
        ));
    }
    if ![STATE_ESTABLISHED, STATE_CLOSE, STATE_LISTEN].contains(&u.state()) {
        return Err(unsupported(format!(
            "files.img: unix socket {id} in state {}",
            u.state()
        )));
    }
    if u.state() == STATE_LISTEN && u.type_() as i32 == libc::SOCK_DGRAM {
        return Err(invalid(
            "files.img",
            format!("listening datagram unix socket {id}"),
        ));
    }
    if u.name().len() > 108 {
        return Err(invalid(
            "files.img",
            format!("unix socket {id} with a name of {} bytes", u.name().len()),
        ));
    }
    if u.uflags() != 0 {
        return Err(unsupported(format!(
            "files.img: unix socket {id} with flags {:#x} (external, service or inherited socket; \
             --ext-unix-sk is not supported)",
            u.uflags()
        )));
    }
    Ok(())
}

/// The UNIXSK file ids of the whole tree and the processes holding each.
fn holders(tree: &Tree) -> BTreeMap<u32, BTreeSet<i32>> {
    let mut out: BTreeMap<u32, BTreeSet<i32>> = BTreeMap::new();
    for p in &tree.procs {
        for id in ids(&p.fdinfo) {
            out.entry(id).or_default().insert(p.pid);
        }
    }
    out
}

/// The unix sockets a task builds itself: unnamed connected pairs whose two ends are held
/// by the same single process. Every other socket of `holders` is built by crs.
fn in_task_ids(
    files: &BTreeMap<u32, File_entry>,
    holders: &BTreeMap<u32, BTreeSet<i32>>,
) -> BTreeSet<u32> {
    let all: Vec<u32> = holders.keys().copied().collect();
    let simple = |id: u32| {
        files
            .get(&id)
            .and_then(|f| f.usk.as_ref())
            .is_some_and(|u| {
                u.name().is_empty()
                    && u.state() == STATE_ESTABLISHED
                    && u.peer() != 0
                    && u.shutdown
                        .is_none_or(|s| s.value() == Sk_shutdown::NONE as i32)
            })
    };
    all.iter()
        .copied()
        .filter(|&id| {
            let Some(peer) = peer_of(files, &all, id) else {
                return false;
            };
            let (a, b) = (&holders[&id], &holders[&peer]);
            simple(id) && simple(peer) && a.len() == 1 && a == b
        })
        .collect()
}

/// Reads sk-queues.img (optional) and keeps the messages for the unix sockets of the
/// process (`fdinfo`): the queues passing no fds, and apart the whole queues of sockets
/// on which some message passes fds.
pub(crate) fn load(
    dir: &Path,
    files: &BTreeMap<u32, File_entry>,
    fdinfo: &[Fdinfo_entry],
) -> Result<(Queues, Passing), RestoreError> {
    let mut out = Queues::new();
    let mut passing = Passing::new();
    let ids = ids(fdinfo);
    let path = dir.join("sk-queues.img");
    if ids.is_empty() || !path.exists() {
        return Ok((out, passing));
    }
    let bytes = read_file(&path)?;
    let label = path.display().to_string();
    let mut r = ImageReader::new(&label, &bytes, "SK_QUEUES")?;
    let mut all: Vec<(u32, Vec<u8>, Vec<u32>)> = Vec::new();
    while let Some(e) = r.next::<Sk_packet_entry>()? {
        let data = r.payload(u64::from(e.length()))?;
        if !files.contains_key(&e.id_for()) {
            return Err(invalid(
                "sk-queues.img",
                format!("message for file id {} absent from files.img", e.id_for()),
            ));
        }
        if !ids.contains(&e.id_for()) {
            continue;
        }
        let mut rights = Vec::new();
        for scm in &e.scm {
            if scm.type_() != SCM_RIGHTS {
                return Err(unsupported(format!(
                    "sk-queues.img: a queued message with ancillary data of type {} on unix \
                     socket {}",
                    scm.type_(),
                    e.id_for()
                )));
            }
            for &f in &scm.rights {
                if !files.contains_key(&f) {
                    return Err(invalid(
                        "sk-queues.img",
                        format!(
                            "a message on unix socket {} passes file id {f}, absent from \
                             files.img",
                            e.id_for()
                        ),
                    ));
                }
                rights.push(f);
            }
        }
        if rights.len() > 253 {
            return Err(invalid(
                "sk-queues.img",
                format!(
                    "a message on unix socket {} passes {} fds (at most 253)",
                    e.id_for(),
                    rights.len()
                ),
            ));
        }
        all.push((e.id_for(), data.to_vec(), rights));
    }
    let passes: BTreeSet<u32> = all
        .iter()
        .filter(|(_, _, rights)| !rights.is_empty())
        .map(|(id, _, _)| *id)
        .collect();
    for (id, data, rights) in all {
        if passes.contains(&id) {
            passing.entry(id).or_default().push((data, rights));
        } else {
            out.entry(id).or_default().push(data);
        }
    }
    Ok((out, passing))
}

/// Where a restored file is: the first process (pid order of the tree) holding file id
/// `id` at an fd, and that fd.
/// A process holding file `id` (crs's pid of it) and its fd.
fn holder(procs: &[&Images], id: u32) -> Option<(i32, i32)> {
    procs.iter().find_map(|p| {
        p.fdinfo
            .iter()
            .find(|e| e.id() == id)
            .map(|e| (p.host.get(), e.fd() as i32))
    })
}

/// Queues the messages of the sockets on which some message passes fds (see the module
/// comment), once every process of the tree holds its fds and before any runs.
pub(crate) fn queue_passing(procs: &[&Images]) -> Result<(), RestoreError> {
    let mut queues: BTreeMap<u32, &Vec<PassingMessage>> = BTreeMap::new();
    for p in procs {
        for (id, q) in &p.unix_passing {
            queues.entry(*id).or_insert(q);
        }
    }
    if queues.is_empty() {
        return Ok(());
    }
    let Some(files) = procs.first().map(|p| &p.files) else {
        return Ok(());
    };
    let mut pidfds: BTreeMap<i32, OwnedFd> = BTreeMap::new();
    let mut take = |id: u32, pid: i32, fd: i32, what: &str| -> Result<OwnedFd, RestoreError> {
        let io = |source: io::Error| RestoreError::UnixSocket {
            id,
            at: format!("pid {pid} fd {fd}"),
            what: format!("taking {what} from its process"),
            source,
        };
        let pidfd = match pidfds.entry(pid) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(crs_sys::pidfd::pidfd_open(pid, 0).map_err(io)?)
            }
        };
        crs_sys::pidfd::pidfd_getfd(pidfd.as_fd(), fd).map_err(io)
    };
    for (id, msgs) in queues {
        let u = usk(files.get(&id).ok_or_else(|| missing(id))?)?;
        let peer = files
            .values()
            .find(|f| {
                f.usk
                    .as_ref()
                    .is_some_and(|o| o.ino() == u.peer() && u.peer() != 0)
            })
            .map(|f| f.id());
        let dgram = u.type_() == libc::SOCK_DGRAM as u32;
        let named = name_path(u.name()).map(<[u8]>::to_vec);
        let (sender, to) = match peer.and_then(|p| holder(procs, p)) {
            Some((pid, fd)) => (take(id, pid, fd, "the socket's peer")?, None),
            None if dgram && named.is_some() => {
                let s =
                    sk::socket(libc::SOCK_DGRAM).map_err(|source| RestoreError::UnixSocket {
                        id,
                        at: String::from_utf8_lossy(u.name()).into_owned(),
                        what: "creating a socket to queue messages with".into(),
                        source,
                    })?;
                (s, named)
            }
            None => {
                return Err(unsupported(format!(
                    "messages passing fds on unix socket {id}, whose peer no restored process \
                     holds"
                )))
            }
        };
        for (data, rights) in msgs {
            let mut passed = Vec::with_capacity(rights.len());
            for &f in rights {
                let (pid, fd) = holder(procs, f).ok_or_else(|| {
                    unsupported(format!(
                        "a message on unix socket {id} passes file id {f}, which no restored \
                         process holds"
                    ))
                })?;
                passed.push(take(id, pid, fd, "a file passed in a queued message")?);
            }
            let err = |source: io::Error| RestoreError::UnixSocket {
                id,
                at: String::from_utf8_lossy(u.name()).into_owned(),
                what: format!(
                    "queueing a message of {} bytes passing {} fds",
                    data.len(),
                    rights.len()
                ),
                source,
            };
            let mut sent = if passed.is_empty() {
                sk::send(sender.as_fd(), data, to.as_deref()).map_err(err)?
            } else {
                let fds: Vec<BorrowedFd<'_>> = passed.iter().map(AsFd::as_fd).collect();
                sk::send_with_fds(sender.as_fd(), data, &fds, to.as_deref()).map_err(err)?
            };
            // A stream takes the rest of a long message in more sends.
            while sent < data.len() {
                let n = sk::send(sender.as_fd(), &data[sent..], to.as_deref()).map_err(err)?;
                if n == 0 {
                    return Err(err(io::Error::from_raw_os_error(libc::EAGAIN)));
                }
                sent += n;
            }
        }
        debug!(id, messages = msgs.len(), "unix queue passing fds restored");
    }
    Ok(())
}

/// Creates the unix socket pairs the task builds itself (those crs did not build, see
/// [`create_in_crs`]) at its fds with their queued messages. Returns how many sockets
/// were created.
pub(crate) fn create(
    r: &mut Remote<'_>,
    images: &Images,
    crs: &CrsFiles,
) -> Result<usize, RestoreError> {
    let mut ids = ids(&images.fdinfo);
    ids.retain(|&id| !crs.has(id));
    if ids.is_empty() {
        return Ok(0);
    }
    let base = images.fdinfo.iter().map(|e| e.fd()).max().unwrap_or(0) as u64 + 1;
    // File id -> temporary fd, above every fd the task ends up with.
    let mut tmp: BTreeMap<u32, i64> = BTreeMap::new();
    for &id in &ids {
        if tmp.contains_key(&id) {
            continue;
        }
        let peer = peer_of(&images.files, &ids, id).ok_or_else(|| {
            invalid(
                "files.img",
                format!("unix socket {id} without its peer in the process"),
            )
        })?;
        let kind = usk(&images.files[&id])?.type_();
        let p = r.put(0, &[0u8; 8])?;
        r.call(
            libc::SYS_socketpair,
            [libc::AF_UNIX as u64, u64::from(kind), 0, p, 0, 0],
            || format!("socketpair of unix sockets {id} and {peer}"),
        )?;
        let mut sv = [0u8; 8];
        r.tree
            .read_memory(r.pid, RemoteAddr(p), &mut sv)
            .map_err(|source| RestoreError::Compel {
                pid: r.pid,
                what: "reading the fds socketpair returned".into(),
                source,
            })?;
        for (fid, raw) in [(id, &sv[..4]), (peer, &sv[4..])] {
            let fd = i32::from_ne_bytes(raw.try_into().expect("4 bytes"));
            let high = r.call(
                libc::SYS_fcntl,
                [fd as u64, libc::F_DUPFD as u64, base, 0, 0, 0],
                || format!("moving unix socket {fid} above fd {base}"),
            )?;
            r.call(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0], || {
                format!("closing the first fd {fd} of unix socket {fid}")
            })?;
            set_up(r, high, fid, usk(&images.files[&fid])?)?;
            tmp.insert(fid, high);
        }
    }
    for (&id, msgs) in images
        .unix_queues
        .iter()
        .filter(|(id, _)| tmp.contains_key(id))
    {
        let peer = peer_of(&images.files, &ids, id).ok_or_else(|| {
            invalid(
                "files.img",
                format!("unix socket {id} without its peer in the process"),
            )
        })?;
        let stream = usk(&images.files[&id])?.type_() == libc::SOCK_STREAM as u32;
        let chunk = if stream { r.scratch_len } else { usize::MAX };
        for m in msgs {
            for part in m.chunks(chunk.max(1)) {
                let p = r.put(0, part)?;
                let sent = r.call(
                    libc::SYS_sendto,
                    [
                        tmp[&peer] as u64,
                        p,
                        part.len() as u64,
                        libc::MSG_DONTWAIT as u64,
                        0,
                        0,
                    ],
                    || format!("queueing {} bytes into unix socket {id}", part.len()),
                )?;
                if sent as usize != part.len() {
                    return Err(RestoreError::Syscall {
                        pid: r.pid,
                        what: format!(
                            "queueing {} bytes into unix socket {id}: {sent} sent",
                            part.len()
                        ),
                        errno: libc::EAGAIN as i64,
                    });
                }
            }
        }
        debug!(id, messages = msgs.len(), "unix socket queue restored");
    }
    for &id in &ids {
        let high = tmp[&id];
        for e in images.fdinfo.iter().filter(|e| e.id() == id) {
            let cloexec = e.flags() & libc::FD_CLOEXEC as u32 != 0;
            let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
            r.call(
                libc::SYS_dup3,
                [high as u64, u64::from(e.fd()), fl as u64, 0, 0, 0],
                || format!("placing unix socket {id} at fd {}", e.fd()),
            )?;
        }
        r.call(libc::SYS_close, [high as u64, 0, 0, 0, 0, 0], || {
            format!("closing the temporary fd {high} of unix socket {id}")
        })?;
    }
    debug!(sockets = ids.len(), "unix sockets created");
    Ok(ids.len())
}

/// Sets the status flags (O_NONBLOCK) and socket options of the new socket `fd`.
fn set_up(r: &mut Remote<'_>, fd: i64, id: u32, u: &Unix_sk_entry) -> Result<(), RestoreError> {
    let nonblock = u.flags() & libc::O_NONBLOCK as u32;
    if nonblock != 0 {
        r.call(
            libc::SYS_fcntl,
            [
                fd as u64,
                libc::F_SETFL as u64,
                u64::from(nonblock),
                0,
                0,
                0,
            ],
            || format!("setting the flags of unix socket {id}"),
        )?;
    }
    let Some(o) = u.opts.as_ref() else {
        return Ok(());
    };
    for opt in sol_socket_opts(o) {
        let p = r.put(0, &opt.value)?;
        let len = opt.value.len() as u64;
        r.call(
            libc::SYS_setsockopt,
            [
                fd as u64,
                libc::SOL_SOCKET as u64,
                opt.name as u64,
                p,
                len,
                0,
            ],
            || format!("setting {} of unix socket {id}", opt.label),
        )?;
    }
    if !o.so_filter.is_empty() {
        // The program above the sock_fprog that points at it.
        const PROG_OFF: usize = 64;
        let prog: Vec<u8> = o
            .so_filter
            .iter()
            .flat_map(|&w| sk::filter_insn_bytes(w))
            .collect();
        let at = r.put(PROG_OFF, &prog)?;
        let mut fprog = Vec::with_capacity(16);
        fprog.extend_from_slice(&(o.so_filter.len() as u16).to_ne_bytes());
        fprog.extend_from_slice(&[0; 6]);
        fprog.extend_from_slice(&at.to_ne_bytes());
        let p = r.put(0, &fprog)?;
        r.call(
            libc::SYS_setsockopt,
            [
                fd as u64,
                libc::SOL_SOCKET as u64,
                libc::SO_ATTACH_FILTER as u64,
                p,
                16,
                0,
            ],
            || format!("setting SO_ATTACH_FILTER of unix socket {id}"),
        )?;
    }
    Ok(())
}

/// How a socket built by crs comes to life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// A listening socket: bound, listen(backlog).
    Listen,
    /// A socket of its own: bound when named; a datagram socket is then connected to
    /// its peer's name (`connect_to`).
    Single,
    /// One end of a socketpair; `peer` is the other end's file id.
    Pair { peer: u32 },
    /// One end of a socketpair whose other end only queues the messages and is then
    /// closed: a connection whose peer is gone, or an unnamed datagram socket holding
    /// messages.
    Orphan,
    /// The accepted end of a connection to listener `listener`; `client` is the other
    /// end.
    Accepted { listener: u32, client: u32 },
    /// The client end of a connection accepted by `listener`.
    Client { listener: u32 },
    /// A connection waiting in the backlog of `listener`, never accepted.
    Pending { listener: u32 },
}

/// The plan for one socket built by crs.
struct Plan<'a> {
    id: u32,
    u: &'a Unix_sk_entry,
    how: How,
    /// A datagram socket's peer to connect to by name (file id).
    connect_to: Option<u32>,
    /// Where it is held, for errors: "pid 7 fd 5".
    at: String,
}

/// The path of a bound name (trailing NULs dropped), None for an abstract name.
fn name_path(name: &[u8]) -> Option<&[u8]> {
    let end = name.iter().rposition(|&b| b != 0)? + 1;
    (name[0] != 0).then_some(&name[..end])
}

/// The address crs connects or sends to for plan `p`: its name, with a relative path
/// made absolute by the directory it was bound in (crs's cwd is not the task's).
fn reach(p: &Plan<'_>) -> Vec<u8> {
    let name = p.u.name();
    match (name_path(name), p.u.name_dir.as_deref()) {
        (Some(path), Some(dir)) if !path.starts_with(b"/") => {
            let mut v = dir.as_bytes().to_vec();
            v.push(b'/');
            v.extend_from_slice(path);
            v
        }
        _ => name.to_vec(),
    }
}

/// Decides how each socket of `ids` (built by crs) is made. Errors name the socket and
/// where it is held.
fn plan<'a>(
    files: &'a BTreeMap<u32, File_entry>,
    ids: &[u32],
    at: &BTreeMap<u32, String>,
    queued: &BTreeSet<u32>,
) -> Result<Vec<Plan<'a>>, RestoreError> {
    let entries: BTreeMap<u32, &Unix_sk_entry> = ids
        .iter()
        .map(|&id| Ok((id, usk(files.get(&id).ok_or_else(|| missing(id))?)?)))
        .collect::<Result<_, RestoreError>>()?;
    let by_ino: HashMap<u32, u32> = entries.iter().map(|(&id, u)| (u.ino(), id)).collect();
    let ext = |id: u32, u: &Unix_sk_entry| {
        // A peer in files.img that no process holds, or that is one end of a pair of
        // one process, cannot come from a dump.
        let known = files.values().find(|f| {
            f.usk
                .as_ref()
                .is_some_and(|p| p.ino() == u.peer() && f.id() != id)
        });
        match known {
            Some(p) => invalid(
                "files.img",
                format!(
                    "unix socket {id} ({}) is connected to unix socket {} (inode {}), {}",
                    at[&id],
                    p.id(),
                    u.peer(),
                    if at.contains_key(&p.id()) {
                        "one end of a pair that one process holds"
                    } else {
                        "which no process holds (no fd table lists it: ids-PID.img names \
                         the fdinfo-N.img of each process)"
                    }
                ),
            ),
            None => unsupported(format!(
                "files.img: unix socket {id} ({}) connected to inode {} outside the images \
                 (--ext-unix-sk)",
                at[&id],
                u.peer()
            )),
        }
    };
    // A listener with `name` and type `kind` that was not removed from the filesystem.
    let listener_named = |name: &[u8], kind: u32| {
        entries.iter().find_map(|(&l, lu)| {
            (lu.state() == STATE_LISTEN
                && lu.type_() == kind
                && !name.is_empty()
                && lu.name() == name
                && !lu.deleted())
            .then_some(l)
        })
    };
    let mut out = Vec::new();
    let mut decided: BTreeMap<u32, How> = BTreeMap::new();
    for (&id, &u) in &entries {
        let dgram = u.type_() as i32 == libc::SOCK_DGRAM;
        let peer = (u.peer() != 0)
            .then(|| by_ino.get(&u.peer()).copied().ok_or_else(|| ext(id, u)))
            .transpose()?;
        let mut connect_to = None;
        let how = if let Some(&h) = decided.get(&id) {
            h
        } else if u.state() == STATE_LISTEN {
            How::Listen
        } else if let Some(p) = peer {
            let pu = entries[&p];
            let mutual = pu.peer() == u.ino() && pu.type_() == u.type_();
            if !dgram && pu.state() == STATE_LISTEN {
                if pu.deleted() {
                    return Err(unsupported(format!(
                        "unix socket {id} ({}): a pending connection to a listener whose \
                         socket file was removed",
                        at[&id]
                    )));
                }
                How::Pending { listener: p }
            } else if !dgram {
                if !mutual {
                    return Err(invalid(
                        "files.img",
                        format!("unix socket {id} connected to {p}, which is not connected back"),
                    ));
                }
                let (mine, theirs) = (
                    listener_named(u.name(), u.type_()),
                    listener_named(pu.name(), u.type_()),
                );
                match (mine, theirs) {
                    (Some(l), _) => {
                        decided.insert(p, How::Client { listener: l });
                        How::Accepted {
                            listener: l,
                            client: p,
                        }
                    }
                    (None, Some(l)) => {
                        decided.insert(
                            p,
                            How::Accepted {
                                listener: l,
                                client: id,
                            },
                        );
                        How::Client { listener: l }
                    }
                    (None, None) => {
                        for (n, nu) in [(id, u), (p, pu)] {
                            if !nu.name().is_empty() {
                                warn!(
                                    id = n,
                                    name = %String::from_utf8_lossy(nu.name()),
                                    "the name of a connected unix socket without its listener is not restored"
                                );
                            }
                        }
                        decided.insert(p, How::Pair { peer: id });
                        How::Pair { peer: p }
                    }
                }
            } else if mutual && u.name().is_empty() && pu.name().is_empty() {
                decided.insert(p, How::Pair { peer: id });
                How::Pair { peer: p }
            } else if pu.name().is_empty() {
                return Err(invalid(
                    "files.img",
                    format!("datagram unix socket {id} connected to unnamed socket {p}"),
                ));
            } else {
                connect_to = Some(p);
                if u.name().is_empty() && queued.contains(&id) && !mutual {
                    return Err(unsupported(format!(
                        "unix socket {id} ({}): messages queued on an unnamed datagram \
                         socket connected to a socket that is not connected back",
                        at[&id]
                    )));
                }
                How::Single
            }
        } else if (u.state() == STATE_ESTABLISHED && !dgram)
            || (dgram && u.name().is_empty() && queued.contains(&id))
        {
            How::Orphan
        } else {
            How::Single
        };
        decided.insert(id, how);
        out.push(Plan {
            id,
            u,
            how,
            connect_to,
            at: at[&id].clone(),
        });
    }
    // A pair decided from its other end.
    for p in &mut out {
        p.how = decided[&p.id];
    }
    Ok(out)
}

fn missing(id: u32) -> RestoreError {
    invalid(
        "files.img",
        format!("unix socket {id} absent from files.img"),
    )
}

/// The sockets crs builds and the messages it queues on them.
type CrsSockets<'a> = (Vec<Plan<'a>>, BTreeMap<u32, &'a Vec<Vec<u8>>>);

/// How crs builds every unix socket of `tree` that is not a same-process unnamed pair
/// (see the module comment), and the messages queued on them; None when there is none.
fn crs_sockets(tree: &Tree) -> Result<Option<CrsSockets<'_>>, RestoreError> {
    let Some(first) = tree.procs.first() else {
        return Ok(None);
    };
    let files = &first.files;
    let holders = holders(tree);
    let in_task = in_task_ids(files, &holders);
    let ids: Vec<u32> = holders
        .keys()
        .copied()
        .filter(|id| !in_task.contains(id))
        .collect();
    if ids.is_empty() {
        return Ok(None);
    }
    let mut at: BTreeMap<u32, String> = BTreeMap::new();
    for p in &tree.procs {
        for e in p.fdinfo.iter().filter(|e| e.type_() == Fd_types::UNIXSK) {
            let s = at.entry(e.id()).or_default();
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&format!("pid {} fd {}", p.pid, e.fd()));
        }
    }
    let mut queues: BTreeMap<u32, &Vec<Vec<u8>>> = BTreeMap::new();
    for p in &tree.procs {
        for (id, q) in &p.unix_queues {
            queues.entry(*id).or_insert(q);
        }
    }
    queues.retain(|id, q| !in_task.contains(id) && !q.is_empty());
    let queued: BTreeSet<u32> = queues.keys().copied().collect();
    let plans = plan(files, &ids, &at, &queued)?;
    Ok(Some((plans, queues)))
}

/// Checks, before anything is created, that every unix socket crs builds can be built
/// (the plan of [`create_in_crs`]).
pub(crate) fn check_tree(tree: &Tree) -> Result<(), RestoreError> {
    crs_sockets(tree).map(|_| ())
}

/// Builds in crs every unix socket that is not a same-process unnamed pair (see the
/// module comment) and puts each in `out` by file id, for the tasks to take.
pub(crate) fn create_in_crs(tree: &Tree, out: &mut CrsFiles) -> Result<(), RestoreError> {
    let Some((plans, queues)) = crs_sockets(tree)? else {
        return Ok(());
    };
    let mut b = Builder {
        plans: plans.iter().map(|p| (p.id, p)).collect(),
        fds: BTreeMap::new(),
        queuers: BTreeMap::new(),
    };
    b.build(&plans)?;
    b.fill(&queues)?;
    b.finish(&plans)?;
    debug!(sockets = b.fds.len(), "unix sockets built by crs");
    out.by_id.extend(b.fds);
    Ok(())
}

/// The sockets crs built so far.
struct Builder<'p, 'a> {
    plans: BTreeMap<u32, &'p Plan<'a>>,
    fds: BTreeMap<u32, OwnedFd>,
    /// The throwaway ends of [`How::Orphan`] sockets, by the socket's id.
    queuers: BTreeMap<u32, OwnedFd>,
}

impl Builder<'_, '_> {
    fn err(&self, id: u32, what: impl Into<String>) -> impl FnOnce(io::Error) -> RestoreError {
        let at = self
            .plans
            .get(&id)
            .map_or_else(String::new, |p| p.at.clone());
        let what = what.into();
        move |source| RestoreError::UnixSocket {
            id,
            at,
            what,
            source,
        }
    }

    fn fd(&self, id: u32) -> Result<BorrowedFd<'_>, RestoreError> {
        self.fds
            .get(&id)
            .map(AsFd::as_fd)
            .ok_or_else(|| invalid("files.img", format!("unix socket {id} was not built")))
    }

    /// Creates the sockets in dependency order: listeners and sockets of their own
    /// first, then pairs, accepted connections, connected datagram sockets and pending
    /// connections.
    fn build(&mut self, plans: &[Plan<'_>]) -> Result<(), RestoreError> {
        for p in plans {
            let kind = p.u.type_() as i32;
            match p.how {
                How::Listen | How::Single => {
                    let fd = sk::socket(kind).map_err(self.err(p.id, "creating"))?;
                    self.bind(&fd, p)?;
                    if p.how == How::Listen {
                        let backlog = p.u.backlog().min(i32::MAX as u32) as i32;
                        sk::listen(fd.as_fd(), backlog)
                            .map_err(self.err(p.id, format!("listen({backlog})")))?;
                    }
                    self.fds.insert(p.id, fd);
                }
                How::Pair { peer } if p.id < peer => {
                    let (a, b) = sk::socketpair(kind)
                        .map_err(self.err(p.id, format!("socketpair with {peer}")))?;
                    self.fds.insert(p.id, a);
                    self.fds.insert(peer, b);
                }
                How::Orphan => {
                    let (a, b) = sk::socketpair(kind).map_err(self.err(p.id, "socketpair"))?;
                    self.fds.insert(p.id, a);
                    self.queuers.insert(p.id, b);
                }
                _ => {}
            }
        }
        for p in plans {
            set_opts(self.fd(p.id).ok(), p).map_err(self.err(p.id, "setting options"))?;
        }
        for p in plans {
            if let How::Accepted { listener, client } = p.how {
                let kind = p.u.type_() as i32;
                let c = sk::socket(kind).map_err(self.err(client, "creating"))?;
                let cp = self.plans[&client];
                set_opts(Some(c.as_fd()), cp).map_err(self.err(client, "setting options"))?;
                self.bind(&c, cp)?;
                let lname = &reach(self.plans[&listener]);
                sk::connect(c.as_fd(), lname)
                    .map_err(self.err(client, format!("connecting to listener {listener}")))?;
                let a = sk::accept(self.fd(listener)?).map_err(self.err(
                    p.id,
                    format!("accepting the connection of {client} on listener {listener}"),
                ))?;
                set_opts(Some(a.as_fd()), p).map_err(self.err(p.id, "setting options"))?;
                self.fds.insert(client, c);
                self.fds.insert(p.id, a);
            }
        }
        for p in plans {
            if let Some(to) = p.connect_to {
                let name = &reach(self.plans[&to]);
                sk::connect(self.fd(p.id)?, name)
                    .map_err(self.err(p.id, format!("connecting to {to}")))?;
            }
        }
        for p in plans {
            if let How::Pending { listener } = p.how {
                let c = sk::socket(p.u.type_() as i32).map_err(self.err(p.id, "creating"))?;
                set_opts(Some(c.as_fd()), p).map_err(self.err(p.id, "setting options"))?;
                self.bind(&c, p)?;
                let lname = &reach(self.plans[&listener]);
                sk::connect(c.as_fd(), lname).map_err(self.err(
                    p.id,
                    format!("connecting to listener {listener} (pending connection)"),
                ))?;
                self.fds.insert(p.id, c);
            }
        }
        Ok(())
    }

    /// Binds `fd` to the name of plan `p` (nothing for an unnamed socket), removing a
    /// stale socket file first, then sets the socket file's mode and owner.
    fn bind(&self, fd: &OwnedFd, p: &Plan<'_>) -> Result<(), RestoreError> {
        let name = p.u.name();
        if name.is_empty() {
            return Ok(());
        }
        let Some(path) = name_path(name) else {
            return sk::bind(fd.as_fd(), name).map_err(self.err(
                p.id,
                format!(
                    "binding to abstract name {:?}",
                    String::from_utf8_lossy(&name[1..])
                ),
            ));
        };
        let path = Path::new(std::ffi::OsStr::from_bytes(path));
        let dir = p.u.name_dir.as_deref().filter(|_| path.is_relative());
        let full: PathBuf = match dir {
            Some(d) => Path::new(d).join(path),
            None => path.to_path_buf(),
        };
        let shown = full.display().to_string();
        match std::fs::symlink_metadata(&full) {
            // Its file was removed before the dump: whatever is there now is not ours.
            Ok(_) if p.u.deleted() => {
                return Err(self.err(p.id, format!("binding to {shown}"))(
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "the socket file was removed before the dump and the path is taken now",
                    ),
                ))
            }
            Ok(m) if m.file_type().is_socket() => {
                std::fs::remove_file(&full)
                    .map_err(self.err(p.id, format!("removing the stale socket {shown}")))?;
            }
            Ok(_) => {
                return Err(self.err(p.id, format!("binding to {shown}"))(
                    io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        "a file that is not a socket is there",
                    ),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.err(p.id, format!("inspecting {shown}"))(e)),
        }
        match dir {
            Some(d) => sk::bind_in_dir(fd.as_fd(), Path::new(d), name),
            None => sk::bind(fd.as_fd(), name),
        }
        .map_err(self.err(p.id, format!("binding to {shown}")))?;
        if let Some(perm) = p.u.file_perms.as_ref() {
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(perm.mode() & 0o7777))
                .map_err(self.err(p.id, format!("setting the mode of {shown}")))?;
            std::os::unix::fs::lchown(&full, Some(perm.uid()), Some(perm.gid()))
                .map_err(self.err(p.id, format!("setting the owner of {shown}")))?;
        }
        Ok(())
    }

    /// Queues the messages of each socket, in image order, from a socket that reaches it.
    fn fill(&self, queues: &BTreeMap<u32, &Vec<Vec<u8>>>) -> Result<(), RestoreError> {
        let mut spare: Option<OwnedFd> = None;
        for (&id, msgs) in queues {
            let p = self.plans[&id];
            let kind = p.u.type_() as i32;
            let peer_id = self
                .plans
                .values()
                .find(|q| q.u.ino() == p.u.peer() && p.u.peer() != 0)
                .map(|q| q.id);
            // The sender, and the name to send to (datagram sockets not connected to
            // the receiver).
            let (from, to): (BorrowedFd<'_>, Option<Vec<u8>>) =
                if let Some(q) = self.queuers.get(&id) {
                    (q.as_fd(), None)
                } else if kind != libc::SOCK_DGRAM {
                    let peer = peer_id.ok_or_else(|| {
                        invalid(
                            "sk-queues.img",
                            format!("messages queued on unix socket {id}, which has no peer"),
                        )
                    })?;
                    (self.fd(peer)?, None)
                } else if let Some(peer) = peer_id {
                    let pp = self.plans[&peer];
                    if pp.u.peer() == p.u.ino() {
                        (self.fd(peer)?, None)
                    } else {
                        (self.fd(peer)?, Some(reach(p)))
                    }
                } else if !p.u.name().is_empty() {
                    if spare.is_none() {
                        spare = Some(
                            sk::socket(libc::SOCK_DGRAM)
                                .map_err(self.err(id, "creating a socket to queue messages"))?,
                        );
                    }
                    (spare.as_ref().expect("just made").as_fd(), Some(reach(p)))
                } else {
                    return Err(invalid(
                        "sk-queues.img",
                        format!("messages queued on unnamed unconnected unix socket {id}"),
                    ));
                };
            for (n, m) in msgs.iter().enumerate() {
                let mut off = 0;
                loop {
                    let sent = sk::send(from, &m[off..], to.as_deref()).map_err(
                        self.err(id, format!("queueing message {n} ({} bytes)", m.len())),
                    )?;
                    off += sent;
                    if off >= m.len() {
                        break;
                    }
                    if kind != libc::SOCK_STREAM || sent == 0 {
                        return Err(self.err(id, format!("queueing message {n}"))(
                            io::Error::new(
                                io::ErrorKind::WriteZero,
                                format!("{off} of {} bytes sent", m.len()),
                            ),
                        ));
                    }
                }
            }
            debug!(id, messages = msgs.len(), "unix socket queue restored");
        }
        Ok(())
    }

    /// Closes the throwaway ends, applies shutdown states, removes the socket files of
    /// sockets whose file was removed, and sets the status flags.
    fn finish(&mut self, plans: &[Plan<'_>]) -> Result<(), RestoreError> {
        self.queuers.clear();
        for p in plans {
            let how = match p.u.shutdown.map(|s| s.value()) {
                Some(v) if v == Sk_shutdown::READ as i32 => libc::SHUT_RD,
                Some(v) if v == Sk_shutdown::WRITE as i32 => libc::SHUT_WR,
                Some(v) if v == Sk_shutdown::BOTH as i32 => libc::SHUT_RDWR,
                _ => continue,
            };
            if p.how == How::Orphan {
                continue; // its peer is closed: both directions are shut already
            }
            sk::shutdown(self.fd(p.id)?, how).map_err(self.err(p.id, "shutdown"))?;
        }
        for p in plans.iter().filter(|p| p.u.deleted()) {
            let Some(path) = name_path(p.u.name()) else {
                continue;
            };
            let live = plans
                .iter()
                .any(|q| !q.u.deleted() && name_path(q.u.name()) == Some(path));
            let path = Path::new(std::ffi::OsStr::from_bytes(path));
            let full = match p.u.name_dir.as_deref().filter(|_| path.is_relative()) {
                Some(d) => Path::new(d).join(path),
                None => path.to_path_buf(),
            };
            let is_sock = std::fs::symlink_metadata(&full).is_ok_and(|m| m.file_type().is_socket());
            if live || !is_sock || !matches!(p.how, How::Listen | How::Single) {
                continue;
            }
            std::fs::remove_file(&full).map_err(self.err(
                p.id,
                format!("removing {} (it was deleted)", full.display()),
            ))?;
        }
        for p in plans {
            let nonblock = p.u.flags() & libc::O_NONBLOCK as u32 != 0;
            sk::set_nonblock(self.fd(p.id)?, nonblock)
                .map_err(self.err(p.id, "setting the status flags"))?;
        }
        Ok(())
    }
}

/// Sets the socket options of plan `p` on `fd` (nothing when it is not built yet).
fn set_opts(fd: Option<BorrowedFd<'_>>, p: &Plan<'_>) -> io::Result<()> {
    let (Some(fd), Some(o)) = (fd, p.u.opts.as_ref()) else {
        return Ok(());
    };
    set_sk_opts(fd, o)
}

/// One SOL_SOCKET option to set: its name, for errors, and its value's bytes.
struct SockOpt {
    name: i32,
    label: &'static str,
    value: Vec<u8>,
}

/// The SOL_SOCKET options of `o` that differ from a new socket's, in the order to set
/// them, but the BPF filter (its value points at memory: each caller places it): in crs
/// (`set_sk_opts`) and, for a socketpair a task makes itself, by injected syscalls
/// (`set_up`).
fn sol_socket_opts(o: &Sk_opts_entry) -> Vec<SockOpt> {
    let int = |name, label, v: i32| SockOpt {
        name,
        label,
        value: v.to_ne_bytes().to_vec(),
    };
    let mut out = Vec::new();
    // The kernel doubles what SO_*BUF sets and reports the doubled value.
    for (name, label, v) in [
        (libc::SO_SNDBUFFORCE, "SO_SNDBUFFORCE", o.so_sndbuf() / 2),
        (libc::SO_RCVBUFFORCE, "SO_RCVBUFFORCE", o.so_rcvbuf() / 2),
        (libc::SO_PRIORITY, "SO_PRIORITY", o.so_priority()),
        (libc::SO_MARK, "SO_MARK", o.so_mark()),
    ] {
        if v != 0 {
            out.push(int(name, label, v as i32));
        }
    }
    if o.has_so_rcvlowat() && o.so_rcvlowat() > 1 {
        out.push(int(
            libc::SO_RCVLOWAT,
            "SO_RCVLOWAT",
            o.so_rcvlowat() as i32,
        ));
    }
    for (on, name, label) in [
        (o.so_passcred(), libc::SO_PASSCRED, "SO_PASSCRED"),
        (o.so_passsec(), libc::SO_PASSSEC, "SO_PASSSEC"),
        (o.reuseaddr(), libc::SO_REUSEADDR, "SO_REUSEADDR"),
        (o.so_reuseport(), libc::SO_REUSEPORT, "SO_REUSEPORT"),
        (o.so_broadcast(), libc::SO_BROADCAST, "SO_BROADCAST"),
        (o.so_dontroute(), libc::SO_DONTROUTE, "SO_DONTROUTE"),
        (o.so_no_check(), libc::SO_NO_CHECK, "SO_NO_CHECK"),
        (o.so_keepalive(), libc::SO_KEEPALIVE, "SO_KEEPALIVE"),
        (o.so_oobinline() != 0, libc::SO_OOBINLINE, "SO_OOBINLINE"),
    ] {
        if on {
            out.push(int(name, label, 1));
        }
    }
    for (name, label, sec, usec) in [
        (
            libc::SO_SNDTIMEO,
            "SO_SNDTIMEO",
            o.so_snd_tmo_sec(),
            o.so_snd_tmo_usec(),
        ),
        (
            libc::SO_RCVTIMEO,
            "SO_RCVTIMEO",
            o.so_rcv_tmo_sec(),
            o.so_rcv_tmo_usec(),
        ),
    ] {
        if sec != 0 || usec != 0 {
            // struct timeval: two 64-bit words.
            let value = [sec, usec].iter().flat_map(|w| w.to_ne_bytes()).collect();
            out.push(SockOpt { name, label, value });
        }
    }
    if o.has_so_linger() {
        let value = [1i32, o.so_linger() as i32]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        out.push(SockOpt {
            name: libc::SO_LINGER,
            label: "SO_LINGER",
            value,
        });
    }
    if !o.so_bound_dev().is_empty() {
        out.push(SockOpt {
            name: libc::SO_BINDTODEVICE,
            label: "SO_BINDTODEVICE",
            value: o.so_bound_dev().as_bytes().to_vec(),
        });
    }
    out.extend(buf_lock(o));
    out
}

/// SO_BUF_LOCK as dumped (Linux 5.14): which buffer sizes the task set itself. Set after
/// the sizes, whose FORCE calls lock both.
fn buf_lock(o: &Sk_opts_entry) -> Option<SockOpt> {
    const SO_BUF_LOCK: i32 = 72;
    o.has_so_buf_lock().then(|| SockOpt {
        name: SO_BUF_LOCK,
        label: "SO_BUF_LOCK",
        value: (o.so_buf_lock() as i32).to_ne_bytes().to_vec(),
    })
}

/// Sets the buffer sizes of `o` and then SO_BUF_LOCK (a connection's are raised while its
/// queues are filled, then put back with this).
pub(crate) fn set_buffers(fd: BorrowedFd<'_>, o: &Sk_opts_entry) -> io::Result<()> {
    for (name, v) in [
        (libc::SO_SNDBUFFORCE, o.so_sndbuf() / 2),
        (libc::SO_RCVBUFFORCE, o.so_rcvbuf() / 2),
    ] {
        if v != 0 {
            sk::setsockopt_int(fd, libc::SOL_SOCKET, name, v as i32)?;
        }
    }
    if let Some(l) = buf_lock(o) {
        sk::setsockopt_bytes(fd, libc::SOL_SOCKET, l.name, &l.value)?;
    }
    Ok(())
}

/// Sets the SOL_SOCKET options of `o` that differ from a new socket's on `fd`.
pub(crate) fn set_sk_opts(fd: BorrowedFd<'_>, o: &Sk_opts_entry) -> io::Result<()> {
    for opt in sol_socket_opts(o) {
        sk::setsockopt_bytes(fd, libc::SOL_SOCKET, opt.name, &opt.value)?;
    }
    if !o.so_filter.is_empty() {
        sk::set_filter(fd, &o.so_filter)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::{EnumOrUnknown, MessageField};

    fn sock(id: u32, ino: u32, peer: u32) -> File_entry {
        File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::UNIXSK)),
            id: Some(id),
            usk: MessageField::some(Unix_sk_entry {
                id: Some(id),
                ino: Some(ino),
                type_: Some(libc::SOCK_STREAM as u32),
                state: Some(STATE_ESTABLISHED),
                peer: Some(peer),
                name: Some(Vec::new()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn named(mut f: File_entry, name: &[u8], state: u32) -> File_entry {
        let u = f.usk.as_mut().unwrap();
        u.name = Some(name.to_vec());
        u.state = Some(state);
        f
    }

    fn files_of(list: Vec<File_entry>) -> BTreeMap<u32, File_entry> {
        list.into_iter().map(|f| (f.id(), f)).collect()
    }

    fn holders_of(list: &[(u32, i32)]) -> BTreeMap<u32, BTreeSet<i32>> {
        let mut out: BTreeMap<u32, BTreeSet<i32>> = BTreeMap::new();
        for &(id, pid) in list {
            out.entry(id).or_default().insert(pid);
        }
        out
    }

    fn plan_of(
        files: &BTreeMap<u32, File_entry>,
        queued: &[u32],
    ) -> Result<BTreeMap<u32, (How, Option<u32>)>, RestoreError> {
        let ids: Vec<u32> = files.keys().copied().collect();
        let at = ids.iter().map(|&id| (id, format!("fd {id}"))).collect();
        let queued = queued.iter().copied().collect();
        Ok(plan(files, &ids, &at, &queued)?
            .into_iter()
            .map(|p| (p.id, (p.how, p.connect_to)))
            .collect())
    }

    #[test]
    fn check_plain_and_named_sockets_are_ok() {
        assert!(check(&sock(1, 10, 11)).is_ok());
        assert!(check(&named(sock(1, 10, 0), b"/tmp/s\0", STATE_LISTEN)).is_ok());
    }

    #[test]
    fn check_external_socket_is_unsupported() {
        let mut f = sock(1, 10, 11);
        f.usk.as_mut().unwrap().uflags = Some(1);
        assert!(matches!(check(&f), Err(RestoreError::Unsupported { .. })));
    }

    #[test]
    fn check_listening_dgram_is_invalid() {
        let mut f = named(sock(1, 10, 0), b"/tmp/s", STATE_LISTEN);
        f.usk.as_mut().unwrap().type_ = Some(libc::SOCK_DGRAM as u32);
        assert!(matches!(check(&f), Err(RestoreError::Invalid { .. })));
    }

    #[test]
    fn in_task_ids_pair_in_one_process_only_is_in_task() {
        let files = files_of(vec![sock(1, 10, 11), sock(2, 11, 10)]);
        let one = holders_of(&[(1, 7), (2, 7)]);
        assert_eq!(in_task_ids(&files, &one), [1, 2].into());
        let split = holders_of(&[(1, 7), (2, 8)]);
        assert!(in_task_ids(&files, &split).is_empty());
        let shared = holders_of(&[(1, 7), (2, 7), (2, 8)]);
        assert!(in_task_ids(&files, &shared).is_empty());
    }

    #[test]
    fn in_task_ids_named_pair_is_built_by_crs() {
        let files = files_of(vec![
            named(sock(1, 10, 11), b"/tmp/s\0", STATE_ESTABLISHED),
            sock(2, 11, 10),
        ]);
        assert!(in_task_ids(&files, &holders_of(&[(1, 7), (2, 7)])).is_empty());
    }

    #[test]
    fn plan_listener_accepted_client_and_pending_are_told_apart() {
        let files = files_of(vec![
            named(sock(1, 10, 0), b"/tmp/s\0", STATE_LISTEN),
            named(sock(2, 11, 12), b"/tmp/s\0", STATE_ESTABLISHED),
            sock(3, 12, 11),
            sock(4, 13, 10),
            sock(5, 14, 15),
            sock(6, 15, 14),
        ]);
        let p = plan_of(&files, &[]).unwrap();
        assert_eq!(p[&1].0, How::Listen);
        assert_eq!(
            p[&2].0,
            How::Accepted {
                listener: 1,
                client: 3
            }
        );
        assert_eq!(p[&3].0, How::Client { listener: 1 });
        assert_eq!(p[&4].0, How::Pending { listener: 1 });
        assert_eq!(p[&5].0, How::Pair { peer: 6 });
        assert_eq!(p[&6].0, How::Pair { peer: 5 });
    }

    #[test]
    fn plan_dgram_connected_to_named_server_connects_by_name() {
        let mut srv = named(sock(1, 10, 0), b"/tmp/d\0", STATE_CLOSE);
        srv.usk.as_mut().unwrap().type_ = Some(libc::SOCK_DGRAM as u32);
        let mut cli = sock(2, 11, 10);
        cli.usk.as_mut().unwrap().type_ = Some(libc::SOCK_DGRAM as u32);
        let p = plan_of(&files_of(vec![srv, cli]), &[]).unwrap();
        assert_eq!(p[&1], (How::Single, None));
        assert_eq!(p[&2], (How::Single, Some(1)));
    }

    #[test]
    fn plan_half_closed_connection_is_orphan() {
        let mut f = sock(1, 10, 0);
        f.usk.as_mut().unwrap().shutdown = Some(EnumOrUnknown::new(Sk_shutdown::BOTH));
        let p = plan_of(&files_of(vec![f]), &[1]).unwrap();
        assert_eq!(p[&1].0, How::Orphan);
    }

    #[test]
    fn plan_peer_that_no_process_holds_is_invalid() {
        let files = files_of(vec![sock(1, 10, 11), sock(2, 11, 10)]);
        let at = [(1, "pid 7 fd 3".to_string())].into();
        let err = plan(&files, &[1], &at, &BTreeSet::new()).err().unwrap();
        assert!(matches!(err, RestoreError::Invalid { .. }), "{err}");
        assert!(
            err.to_string().contains(
                "files.img: unix socket 1 (pid 7 fd 3) is connected to unix socket 2 \
                 (inode 11), which no process holds (no fd table lists it: ids-PID.img \
                 names the fdinfo-N.img of each process)"
            ),
            "{err}"
        );
    }

    #[test]
    fn plan_peer_outside_the_images_is_unsupported() {
        let p = plan_of(&files_of(vec![sock(1, 10, 99)]), &[]);
        assert!(matches!(p, Err(RestoreError::Unsupported { .. })));
    }

    #[test]
    fn name_path_strips_nul_and_skips_abstract() {
        assert_eq!(name_path(b"/tmp/s\0"), Some(&b"/tmp/s"[..]));
        assert_eq!(name_path(b"rel"), Some(&b"rel"[..]));
        assert_eq!(name_path(b"\0abstract"), None);
    }
}
