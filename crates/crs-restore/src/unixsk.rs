//! Unix socket pairs held by one process (UNIXSK files whose peer is another UNIXSK file
//! of the same process), created by syscalls injected into the seized task: socketpair,
//! the ends moved above every fd of the task, their status flags and socket options set,
//! the messages of sk-queues.img sent into each end's peer in image order (one send per
//! message, so datagram and seqpacket boundaries are kept), then each end put at its fd
//! numbers and the temporary fd closed. Runs before the anon files: an epoll may watch a
//! socket.
//!
//! Named, listening and unconnected sockets, sockets whose peer is in another process,
//! shut-down sockets and queued messages with SCM_RIGHTS are refused at load.

use std::collections::BTreeMap;
use std::path::Path;

use crs_compel::RemoteAddr;
use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::fdinfo::{Fd_types, Fdinfo_entry, File_entry};
use crs_images::pb::sk_opts::Sk_shutdown;
use crs_images::pb::sk_packet::Sk_packet_entry;
use crs_images::pb::sk_unix::Unix_sk_entry;
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::images::Images;
use crate::remote::Remote;
use crate::RestoreError;

const STATE_ESTABLISHED: u32 = 1;

/// The messages queued on each socket (sk-queues.img), by receiving file id, in order.
pub(crate) type Queues = BTreeMap<u32, Vec<Vec<u8>>>;

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

/// The file id of the peer of unix socket `id` among `ids` (checked at load).
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

/// Checks unix socket file `f`: a connected, unnamed socket of a known type whose peer is
/// a unix socket of the same process (`fdinfo`).
pub(crate) fn check(
    f: &File_entry,
    files: &BTreeMap<u32, File_entry>,
    fdinfo: &[Fdinfo_entry],
) -> Result<(), RestoreError> {
    let u = usk(f)?;
    let id = f.id();
    if !u.name().is_empty() {
        return Err(unsupported(format!(
            "named or abstract unix socket {id} ({:?})",
            String::from_utf8_lossy(u.name())
        )));
    }
    if u.state() != STATE_ESTABLISHED || u.peer() == 0 {
        return Err(unsupported(format!(
            "unix socket {id} in state {} (only connected pairs)",
            u.state()
        )));
    }
    if !matches!(
        u.type_() as i32,
        libc::SOCK_STREAM | libc::SOCK_DGRAM | libc::SOCK_SEQPACKET
    ) {
        return Err(invalid(
            "files.img",
            format!("unix socket {id} of type {}", u.type_()),
        ));
    }
    if u.shutdown
        .is_some_and(|s| s.value() != Sk_shutdown::NONE as i32)
    {
        return Err(unsupported(format!("shut-down unix socket {id}")));
    }
    if u.uflags() != 0 {
        return Err(unsupported(format!(
            "unix socket {id} with flags {:#x}",
            u.uflags()
        )));
    }
    let peer = peer_of(files, &ids(fdinfo), id).ok_or_else(|| {
        unsupported(format!(
            "unix socket {id} whose peer (inode {}) is not open in the same process",
            u.peer()
        ))
    })?;
    if usk(&files[&peer])?.type_() != u.type_() {
        return Err(invalid(
            "files.img",
            format!("unix sockets {id} and {peer} of different types"),
        ));
    }
    Ok(())
}

/// Reads sk-queues.img (optional) and keeps the messages for the unix sockets of the
/// process (`fdinfo`). A message with SCM entries is refused.
pub(crate) fn load(
    dir: &Path,
    files: &BTreeMap<u32, File_entry>,
    fdinfo: &[Fdinfo_entry],
) -> Result<Queues, RestoreError> {
    let mut out = Queues::new();
    let ids = ids(fdinfo);
    let path = dir.join("sk-queues.img");
    if ids.is_empty() || !path.exists() {
        return Ok(out);
    }
    let bytes = read_file(&path)?;
    let label = path.display().to_string();
    let mut r = ImageReader::new(&label, &bytes, "SK_QUEUES")?;
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
        if !e.scm.is_empty() {
            return Err(unsupported(format!(
                "a queued message with ancillary data (SCM) on unix socket {}",
                e.id_for()
            )));
        }
        out.entry(e.id_for()).or_default().push(data.to_vec());
    }
    Ok(out)
}

/// Creates every unix socket pair of the task at its fds with its queued messages.
/// Returns how many sockets were created.
pub(crate) fn create(r: &mut Remote<'_>, images: &Images) -> Result<usize, RestoreError> {
    let ids = ids(&images.fdinfo);
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
        let peer = peer_of(&images.files, &ids, id).expect("checked at load");
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
    for (&id, msgs) in &images.unix_queues {
        let peer = peer_of(&images.files, &ids, id).expect("checked at load");
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
    // The kernel doubles what SO_*BUF sets and reports the doubled value.
    let mut ints = vec![
        (libc::SO_SNDBUFFORCE, "SO_SNDBUFFORCE", o.so_sndbuf() / 2),
        (libc::SO_RCVBUFFORCE, "SO_RCVBUFFORCE", o.so_rcvbuf() / 2),
    ];
    if o.so_passcred() {
        ints.push((libc::SO_PASSCRED, "SO_PASSCRED", 1));
    }
    if o.so_passsec() {
        ints.push((libc::SO_PASSSEC, "SO_PASSSEC", 1));
    }
    if o.so_priority() != 0 {
        ints.push((libc::SO_PRIORITY, "SO_PRIORITY", o.so_priority()));
    }
    if o.has_so_rcvlowat() && o.so_rcvlowat() > 1 {
        ints.push((libc::SO_RCVLOWAT, "SO_RCVLOWAT", o.so_rcvlowat()));
    }
    if o.so_mark() != 0 {
        ints.push((libc::SO_MARK, "SO_MARK", o.so_mark()));
    }
    for (name, label, v) in ints {
        if v == 0 {
            continue;
        }
        let p = r.put(0, &(v as i32).to_ne_bytes())?;
        r.call(
            libc::SYS_setsockopt,
            [fd as u64, libc::SOL_SOCKET as u64, name as u64, p, 4, 0],
            || format!("setting {label} {v} of unix socket {id}"),
        )?;
    }
    for (name, label, s, us) in [
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
        if s == 0 && us == 0 {
            continue;
        }
        let tv: Vec<u8> = [s, us].iter().flat_map(|w| w.to_ne_bytes()).collect();
        let p = r.put(0, &tv)?;
        r.call(
            libc::SYS_setsockopt,
            [fd as u64, libc::SOL_SOCKET as u64, name as u64, p, 16, 0],
            || format!("setting {label} {s}.{us:06} of unix socket {id}"),
        )?;
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

    fn fdinfo(fd: u32, id: u32) -> Fdinfo_entry {
        Fdinfo_entry {
            fd: Some(fd),
            id: Some(id),
            type_: Some(EnumOrUnknown::new(Fd_types::UNIXSK)),
            ..Default::default()
        }
    }

    #[test]
    fn check_pair_in_one_process_is_ok() {
        let files: BTreeMap<u32, File_entry> = [(1, sock(1, 10, 11)), (2, sock(2, 11, 10))].into();
        let fdi = [fdinfo(3, 1), fdinfo(4, 2)];
        assert!(check(&files[&1], &files, &fdi).is_ok());
        assert!(check(&files[&2], &files, &fdi).is_ok());
    }

    #[test]
    fn check_peer_in_another_process_is_unsupported() {
        let files: BTreeMap<u32, File_entry> = [(1, sock(1, 10, 11)), (2, sock(2, 11, 10))].into();
        assert!(matches!(
            check(&files[&1], &files, &[fdinfo(3, 1)]),
            Err(RestoreError::Unsupported { .. })
        ));
    }

    #[test]
    fn check_named_socket_is_unsupported() {
        let mut f = sock(1, 10, 11);
        f.usk.as_mut().unwrap().name = Some(b"/tmp/sock".to_vec());
        let files: BTreeMap<u32, File_entry> = [(1, f), (2, sock(2, 11, 10))].into();
        let fdi = [fdinfo(3, 1), fdinfo(4, 2)];
        assert!(matches!(
            check(&files[&1], &files, &fdi),
            Err(RestoreError::Unsupported { .. })
        ));
    }
}
