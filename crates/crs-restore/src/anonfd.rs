//! Anon-inode fds (eventfd, signalfd, timerfd, epoll, inotify) and FIFOs of the restored
//! task, created by syscalls injected into it once it is seized (the raw plan it runs
//! before knows only plain paths and pipes): each is created, put at its fd numbers with
//! their close-on-exec flags, and the temporary fd closed. Eventfds get their counter,
//! signalfds their mask; inotify instances their watches, added by path in watch
//! descriptor order so each gets its dumped number (see [`add_watches`]; queued events
//! were not saved); a FIFO is opened by path, first read-write so that the open with the
//! dumped flags does not wait for the other end, and the first process to claim it queues
//! its saved bytes (once per FIFO: the FIFO's buffer is shared by every opener, and
//! processes are built in parallel);
//! epoll instances are created after every other anon fd and get their targets with
//! epoll_ctl once all of them exist (an epoll may watch another epoll). Timerfds are
//! created disarmed and armed late ([`arm`], next to the other timers, right before the
//! registers), with the time that was left and their unread expiration count.
//!
//! An eventfd or signalfd several processes hold (one file id in several fd tables) is
//! made once in crs instead, with its counter or mask, and handed to each holder
//! (`handoff`), so they share it as they did ([`create_in_crs`]); the other anon-inode
//! kinds shared by several processes are refused at dump. A FIFO description shared
//! by several processes becomes one description per process, on the same pipe buffer
//! (status flags set later through one of them are no longer seen by the others).

use std::collections::{BTreeMap, BTreeSet};

use crs_images::pb::fdinfo::{Fd_types, Fdinfo_entry, File_entry};
use crs_images::pb::fsnotify::Inotify_wd_entry;
use crs_images::pb::regfile::Reg_file_entry;
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::files::PipeData;
use crate::images::Images;
use crate::remote::Remote;
use crate::RestoreError;

/// `TFD_IOC_SET_TICKS`: `_IOW('T', 0, u64)`.
const TFD_IOC_SET_TICKS: u64 = 0x4008_5400;
const TFD_TIMER_ABSTIME: u32 = 1;
/// `INOTIFY_IOC_SETNEXTWD`: `_IOW('I', 0, __s32)`, the argument is the number itself.
const INOTIFY_IOC_SETNEXTWD: u64 = 0x4004_4900;
/// The bits of a dumped watch mask inotify_add_watch takes back: the events,
/// IN_EXCL_UNLINK and IN_ONESHOT (fdinfo shows these; older kernels showed internal
/// bits such as FS_EVENT_ON_CHILD too, which are dropped).
const WATCH_MASK: u32 = libc::IN_ALL_EVENTS | libc::IN_EXCL_UNLINK | libc::IN_ONESHOT;

/// A file type this module restores: anon-inode files, inotify and FIFOs (the plan the new
/// task runs before it is seized leaves them alone).
pub(crate) fn is_anon(t: Fd_types) -> bool {
    matches!(
        t,
        Fd_types::EVENTFD
            | Fd_types::SIGNALFD
            | Fd_types::TIMERFD
            | Fd_types::EVENTPOLL
            | Fd_types::INOTIFY
            | Fd_types::FIFO
    )
}

/// The regular-file entry of FIFO `f`'s path (its `regf_id`, or its own id in old images).
fn fifo_reg<'a>(
    f: &File_entry,
    files: &'a BTreeMap<u32, File_entry>,
) -> Result<&'a Reg_file_entry, RestoreError> {
    let fe = f
        .fifo
        .as_ref()
        .ok_or_else(|| invalid("files.img", format!("file id {} has no fifo entry", f.id())))?;
    let rid = fe.regf_id.unwrap_or(f.id());
    files.get(&rid).and_then(|r| r.reg.as_ref()).ok_or_else(|| {
        invalid(
            "files.img",
            format!("FIFO {} names file {rid}, not a regular-file entry", f.id()),
        )
    })
}

/// Checks file entry `f` (of a type of [`is_anon`]; `files` is files.img by id) and, for
/// an epoll, that each target fd is an fd of the same process (`fdinfo`, of image
/// `image`); for an inotify, that each watch has a path and a distinct positive number.
pub(crate) fn check(
    f: &File_entry,
    files: &BTreeMap<u32, File_entry>,
    fdinfo: &[Fdinfo_entry],
    image: &str,
) -> Result<(), RestoreError> {
    let id = f.id();
    let none = |what: &str| invalid("files.img", format!("file id {id} has no {what} entry"));
    match f.type_() {
        Fd_types::EVENTFD => {
            f.efd.as_ref().ok_or_else(|| none("eventfd"))?;
        }
        Fd_types::SIGNALFD => {
            f.sgfd.as_ref().ok_or_else(|| none("signalfd"))?;
        }
        Fd_types::TIMERFD => {
            let t = f.tfd.as_ref().ok_or_else(|| none("timerfd"))?;
            if t.vnsec() >= 1_000_000_000 || t.insec() >= 1_000_000_000 {
                return Err(invalid(
                    "files.img",
                    format!("timerfd {id}: nanoseconds {} / {}", t.vnsec(), t.insec()),
                ));
            }
        }
        Fd_types::EVENTPOLL => {
            let ep = f.epfd.as_ref().ok_or_else(|| none("eventpoll"))?;
            for t in &ep.tfd {
                if !fdinfo.iter().any(|e| e.fd() == t.tfd()) {
                    return Err(invalid(
                        image,
                        format!("epoll {id} watches fd {}, which is not open", t.tfd()),
                    ));
                }
            }
        }
        Fd_types::INOTIFY => {
            let ify = f.ify.as_ref().ok_or_else(|| none("inotify"))?;
            let mut wds = BTreeSet::new();
            for w in &ify.wd {
                if w.wd() == 0 || w.wd() > i32::MAX as u32 || !wds.insert(w.wd()) {
                    return Err(invalid(
                        "files.img",
                        format!(
                            "inotify {id}: watch descriptor {} zero, too large or twice",
                            w.wd()
                        ),
                    ));
                }
                let path = w.f_handle.as_ref().and_then(|h| h.path.as_deref());
                if !path.is_some_and(|p| p.starts_with('/')) {
                    return Err(unsupported(format!(
                        "files.img: inotify {id}: watch {} without a path (only its file handle)",
                        w.wd()
                    )));
                }
                if w.mask() & WATCH_MASK & libc::IN_ALL_EVENTS == 0 {
                    return Err(invalid(
                        "files.img",
                        format!(
                            "inotify {id}: watch {} has no events ({:#x})",
                            w.wd(),
                            w.mask()
                        ),
                    ));
                }
            }
        }
        Fd_types::FIFO => {
            let reg = fifo_reg(f, files)?;
            if !reg.name().starts_with('/') {
                return Err(invalid(
                    "files.img",
                    format!("FIFO {id} at a relative path {:?}", reg.name()),
                ));
            }
            let acc = reg.flags() as i32 & libc::O_ACCMODE;
            if acc == libc::O_ACCMODE {
                return Err(invalid(
                    "files.img",
                    format!("FIFO {id} with access mode 3 (flags {:#o})", reg.flags()),
                ));
            }
        }
        other => {
            return Err(unsupported(format!(
                "files.img: file id {id}: anon file of type {other:?}"
            )))
        }
    }
    Ok(())
}

/// An anon file's entry and the fds it goes to, each with its close-on-exec flag.
type AnonFile<'a> = (&'a File_entry, Vec<(i32, bool)>);

/// The anon files of the task by file id.
fn anon_files(images: &Images) -> BTreeMap<u32, AnonFile<'_>> {
    let mut out: BTreeMap<u32, AnonFile<'_>> = BTreeMap::new();
    for e in images.fdinfo.iter().filter(|e| is_anon(e.type_())) {
        let cloexec = e.flags() & libc::FD_CLOEXEC as u32 != 0;
        out.entry(e.id())
            .or_insert_with(|| (&images.files[&e.id()], Vec::new()))
            .1
            .push((e.fd() as i32, cloexec));
    }
    out
}

/// Puts the new fd `fd` at each of `fds`, then closes it unless it is one of them.
fn place(r: &mut Remote<'_>, fd: i64, fds: &[(i32, bool)], id: u32) -> Result<(), RestoreError> {
    let mut kept = false;
    for &(target, cloexec) in fds {
        if i64::from(target) == fd {
            kept = true;
            let fl = if cloexec { libc::FD_CLOEXEC } else { 0 };
            r.call(
                libc::SYS_fcntl,
                [fd as u64, libc::F_SETFD as u64, fl as u64, 0, 0, 0],
                || format!("setting FD_CLOEXEC of anon file {id} at fd {fd}"),
            )?;
        } else {
            let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
            r.call(
                libc::SYS_dup3,
                [fd as u64, target as u64, fl as u64, 0, 0, 0],
                || format!("placing anon file {id} at fd {target}"),
            )?;
        }
    }
    if !kept {
        r.call(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0], || {
            format!("closing the temporary fd {fd} of anon file {id}")
        })?;
    }
    Ok(())
}

/// Creates every eventfd, signalfd, timerfd (disarmed) and epoll of the task at its fds,
/// then adds each epoll's targets. Returns how many files were created.
pub(crate) fn create(
    r: &mut Remote<'_>,
    images: &Images,
    fifos_filled: &FifosFilled,
    in_crs: &crate::handoff::CrsFiles,
) -> Result<usize, RestoreError> {
    let mut files = anon_files(images);
    // Made by crs and handed over already.
    files.retain(|id, _| !in_crs.has(*id));
    let nonblock = libc::O_NONBLOCK as u32;
    // Epolls last: their targets may be any anon file.
    let (epolls, others): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|(_, (f, _))| f.type_() == Fd_types::EVENTPOLL);
    for (&id, (f, fds)) in others.into_iter().chain(epolls.iter().copied()) {
        let fd = match f.type_() {
            Fd_types::EVENTFD => {
                let e = f.efd.as_ref().expect("checked at load");
                let init = u32::try_from(e.counter()).unwrap_or(0);
                let fd = r.call(
                    libc::SYS_eventfd2,
                    [u64::from(init), u64::from(e.flags() & nonblock), 0, 0, 0, 0],
                    || format!("eventfd2 of anon file {id}"),
                )?;
                if u64::from(init) != e.counter() {
                    let p = r.put(0, &e.counter().to_le_bytes())?;
                    r.call(libc::SYS_write, [fd as u64, p, 8, 0, 0, 0], || {
                        format!("setting the counter {} of eventfd {id}", e.counter())
                    })?;
                }
                fd
            }
            Fd_types::SIGNALFD => {
                let s = f.sgfd.as_ref().expect("checked at load");
                let p = r.put(0, &s.sigmask().to_le_bytes())?;
                r.call(
                    libc::SYS_signalfd4,
                    [u64::MAX, p, 8, u64::from(s.flags() & nonblock), 0, 0],
                    || format!("signalfd4 of anon file {id} (mask {:#x})", s.sigmask()),
                )?
            }
            Fd_types::TIMERFD => {
                let t = f.tfd.as_ref().expect("checked at load");
                r.call(
                    libc::SYS_timerfd_create,
                    [
                        u64::from(t.clockid()),
                        u64::from(t.flags() & nonblock),
                        0,
                        0,
                        0,
                        0,
                    ],
                    || format!("timerfd_create of anon file {id} (clock {})", t.clockid()),
                )?
            }
            Fd_types::INOTIFY => {
                let ify = f.ify.as_ref().expect("checked at load");
                let fd = r.call(
                    libc::SYS_inotify_init1,
                    [u64::from(ify.flags() & nonblock), 0, 0, 0, 0, 0],
                    || format!("inotify_init1 of anon file {id}"),
                )?;
                add_watches(r, fd, id, &ify.wd)?;
                fd
            }
            Fd_types::FIFO => open_fifo(r, images, f, fifos_filled)?,
            _ => r.call(libc::SYS_epoll_create1, [0; 6], || {
                format!("epoll_create1 of anon file {id}")
            })?,
        };
        if f.type_() == Fd_types::EVENTPOLL {
            let flags = f.epfd.as_ref().expect("checked at load").flags() & nonblock;
            if flags != 0 {
                r.call(
                    libc::SYS_fcntl,
                    [fd as u64, libc::F_SETFL as u64, u64::from(flags), 0, 0, 0],
                    || format!("setting the flags of epoll {id}"),
                )?;
            }
        }
        place(r, fd, fds, id)?;
    }
    for (&id, (f, fds)) in epolls {
        let ep = f.epfd.as_ref().expect("checked at load");
        let epfd = fds[0].0;
        for t in &ep.tfd {
            // struct epoll_event is packed on x86-64: u32 events, u64 data.
            let mut ev = t.events().to_le_bytes().to_vec();
            ev.extend_from_slice(&t.data().to_le_bytes());
            let p = r.put(0, &ev)?;
            r.call(
                libc::SYS_epoll_ctl,
                [
                    epfd as u64,
                    libc::EPOLL_CTL_ADD as u64,
                    u64::from(t.tfd()),
                    p,
                    0,
                    0,
                ],
                || {
                    format!(
                        "adding fd {} to epoll {id} (events {:#x})",
                        t.tfd(),
                        t.events()
                    )
                },
            )?;
        }
    }
    debug!(files = files.len(), "anon-inode files created");
    Ok(files.len())
}

/// Adds the watches `wds` of inotify `id` (open at `fd` in the task) by path, in watch
/// descriptor order, each getting its dumped number: the next number is set with
/// INOTIFY_IOC_SETNEXTWD; without it (a kernel without CONFIG_CHECKPOINT_RESTORE) the
/// numbers below it are used up by adding and removing the watch until the kernel hands
/// out the right one (inotify numbers watches cyclically upwards), as CRIU does, and the
/// IN_IGNORED events that leaves queued are read away. A number that still comes out
/// wrong is an error. Paths are taken as they are (IN_DONT_FOLLOW: a dumped path is the
/// watched inode's own).
fn add_watches(
    r: &mut Remote<'_>,
    fd: i64,
    id: u32,
    wds: &[Inotify_wd_entry],
) -> Result<(), RestoreError> {
    let mut sorted: Vec<&Inotify_wd_entry> = wds.iter().collect();
    sorted.sort_by_key(|w| w.wd());
    let mut dummies = 0u32;
    for w in sorted {
        let path = w.f_handle.path();
        let want = i64::from(w.wd());
        let mask = (w.mask() & WATCH_MASK) | libc::IN_DONT_FOLLOW;
        let p = r.put_str(0, path)?;
        let set = r.call(
            libc::SYS_ioctl,
            [fd as u64, INOTIFY_IOC_SETNEXTWD, want as u64, 0, 0, 0],
            || format!("INOTIFY_IOC_SETNEXTWD {want} on inotify {id}"),
        );
        match set {
            Ok(_) => {}
            Err(RestoreError::Syscall { errno, .. }) if errno == i64::from(libc::ENOTTY) => {}
            Err(e) => return Err(e),
        }
        loop {
            let got = r.call(
                libc::SYS_inotify_add_watch,
                [fd as u64, p, u64::from(mask), 0, 0, 0],
                || format!("watching {path} (mask {mask:#x}) for inotify {id}"),
            )?;
            if got == want {
                break;
            }
            if got > want || set.is_ok() {
                return Err(RestoreError::Syscall {
                    pid: r.pid,
                    what: format!(
                        "watching {path} for inotify {id}: watch descriptor {got}, not {want}"
                    ),
                    errno: i64::from(libc::EEXIST),
                });
            }
            r.call(
                libc::SYS_inotify_rm_watch,
                [fd as u64, got as u64, 0, 0, 0, 0],
                || format!("removing the filler watch {got} of inotify {id}"),
            )?;
            dummies += 1;
        }
        debug!(
            id,
            wd = want,
            path,
            mask = format_args!("{mask:#x}"),
            "inotify watch added"
        );
    }
    if dummies > 0 {
        drain_ignored(r, fd, id)?;
    }
    Ok(())
}

/// Reads away every event queued on inotify `fd` (the IN_IGNORED of filler watches): the
/// fd is made non-blocking for the reads and gets its flags back after.
fn drain_ignored(r: &mut Remote<'_>, fd: i64, id: u32) -> Result<(), RestoreError> {
    let fl = r.call(
        libc::SYS_fcntl,
        [fd as u64, libc::F_GETFL as u64, 0, 0, 0, 0],
        || format!("reading the flags of inotify {id}"),
    )?;
    let nb = fl as u64 | libc::O_NONBLOCK as u64;
    r.call(
        libc::SYS_fcntl,
        [fd as u64, libc::F_SETFL as u64, nb, 0, 0, 0],
        || format!("making inotify {id} non-blocking"),
    )?;
    let buf = r.scratch;
    let len = r.scratch_len as u64;
    loop {
        match r.call(libc::SYS_read, [fd as u64, buf, len, 0, 0, 0], || {
            format!("reading the filler events of inotify {id}")
        }) {
            Ok(_) => continue,
            Err(RestoreError::Syscall { errno, .. }) if errno == i64::from(libc::EAGAIN) => break,
            Err(e) => return Err(e),
        }
    }
    r.call(
        libc::SYS_fcntl,
        [fd as u64, libc::F_SETFL as u64, fl as u64, 0, 0, 0],
        || format!("restoring the flags of inotify {id}"),
    )?;
    Ok(())
}

/// The FIFOs (by pipe id) whose saved bytes a process has claimed to queue: shared by the
/// threads that build processes in parallel, so each FIFO is filled exactly once.
pub(crate) type FifosFilled = std::sync::Mutex<std::collections::BTreeSet<u32>>;

/// Opens FIFO `f` in the task: a read-write description first (it opens without waiting
/// for the other end), then the one with the dumped flags. The first process to claim the
/// FIFO in `fifos_filled` writes the saved bytes (fifo-data.img) through the read-write
/// description and sizes the pipe; the others only open it (the buffer is the FIFO's,
/// shared by every opener, and every process keeps it open). Returns the fd with the
/// dumped flags.
fn open_fifo(
    r: &mut Remote<'_>,
    images: &Images,
    f: &File_entry,
    fifos_filled: &FifosFilled,
) -> Result<i64, RestoreError> {
    let id = f.id();
    let reg = fifo_reg(f, &images.files)?;
    // A deleted FIFO is opened at its ghost (`files::mapped_ghosts`).
    let path_s = crate::files::open_path(images, reg.id());
    let path = path_s.as_str();
    let pipe_id = f.fifo.pipe_id();
    let p = r.put_str(0, path)?;
    let rw = (libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC) as u64;
    let at = libc::AT_FDCWD as u64;
    let helper = r.call(libc::SYS_openat, [at, p, rw, 0, 0, 0], || {
        format!("opening FIFO {id} ({path}) read-write")
    })?;
    let flags = (reg.flags() as i32
        & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC))
        | libc::O_LARGEFILE;
    let fd = r.call(libc::SYS_openat, [at, p, flags as u64, 0, 0, 0], || {
        format!("opening FIFO {id} ({path}) with flags {flags:#o}")
    })?;
    if let Some(d) = images.file_images.fifo_data.get(&pipe_id) {
        let mine = fifos_filled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pipe_id);
        if mine {
            fill_fifo(r, helper, id, path, d)?;
        }
    }
    r.call(libc::SYS_close, [helper as u64, 0, 0, 0, 0, 0], || {
        format!("closing the read-write fd {helper} of FIFO {id}")
    })?;
    Ok(fd)
}

/// Sizes the pipe of a FIFO (open read-write and non-blocking at `fd` in the task) and
/// writes its saved bytes, a scratch area at a time.
fn fill_fifo(
    r: &mut Remote<'_>,
    fd: i64,
    id: u32,
    path: &str,
    d: &PipeData,
) -> Result<(), RestoreError> {
    if let Some(size) = d.size {
        r.call(
            libc::SYS_fcntl,
            [
                fd as u64,
                libc::F_SETPIPE_SZ as u64,
                u64::from(size),
                0,
                0,
                0,
            ],
            || format!("sizing FIFO {id} ({path}) to {size} bytes"),
        )?;
    }
    let mut off = 0usize;
    while off < d.data.len() {
        let n = (d.data.len() - off).min(r.scratch_len);
        let q = r.put(0, &d.data[off..off + n])?;
        let wrote = r.call(libc::SYS_write, [fd as u64, q, n as u64, 0, 0, 0], || {
            format!("queueing {n} bytes at {off} in FIFO {id} ({path})")
        })?;
        off += wrote as usize;
    }
    debug!(id, path, bytes = d.data.len(), "FIFO data queued");
    Ok(())
}

/// Makes in crs every eventfd and signalfd that processes with different fd tables hold,
/// for each holder to take (see the module's comment).
pub(crate) fn create_in_crs(
    tree: &crate::images::Tree,
    out: &mut crate::handoff::CrsFiles,
) -> Result<(), RestoreError> {
    use std::os::fd::OwnedFd;
    let mut holders: BTreeMap<u32, BTreeSet<u32>> = BTreeMap::new();
    for p in &tree.procs {
        for e in &p.fdinfo {
            if matches!(e.type_(), Fd_types::EVENTFD | Fd_types::SIGNALFD) {
                holders.entry(e.id()).or_default().insert(p.files_id);
            }
        }
    }
    let Some(first) = tree.procs.first() else {
        return Ok(());
    };
    for (id, tables) in holders.into_iter().filter(|(_, t)| t.len() > 1) {
        let f = &first.files[&id];
        let err = |what: &str| {
            let what = format!(
                "{what} of anon file {id}, shared by {} fd tables",
                tables.len()
            );
            move |e: nix::Error| RestoreError::AnonFile {
                id,
                what,
                source: e.into(),
            }
        };
        let fd: OwnedFd = match f.type_() {
            Fd_types::EVENTFD => {
                use nix::sys::eventfd::{EfdFlags, EventFd};
                let e = f.efd.as_ref().expect("checked at load");
                let mut flags = EfdFlags::EFD_CLOEXEC;
                if e.flags() & libc::O_NONBLOCK as u32 != 0 {
                    flags |= EfdFlags::EFD_NONBLOCK;
                }
                let efd = EventFd::from_flags(flags).map_err(err("eventfd2"))?;
                if e.counter() != 0 {
                    efd.write(e.counter()).map_err(err("setting the counter"))?;
                }
                efd.into()
            }
            _ => {
                // The raw mask: real-time signals included (nix's SigSet of Signal has none).
                let s = f.sgfd.as_ref().expect("checked at load");
                let mut flags = libc::SFD_CLOEXEC;
                if s.flags() & libc::O_NONBLOCK as u32 != 0 {
                    flags |= libc::SFD_NONBLOCK;
                }
                crs_sys::restore::signalfd(s.sigmask(), flags).map_err(|e| {
                    err("signalfd4")(nix::Error::from_raw(e.raw_os_error().unwrap_or(0)))
                })?
            }
        };
        debug!(id, kind = ?f.type_(), "shared anon file made by crs");
        out.by_id.insert(id, fd);
    }
    Ok(())
}

/// Arms every timerfd with the time that was left (absolute timers at now + left on
/// their clock; a periodic timer overdue at dump one interval from now) and sets its
/// unread expiration count.
pub(crate) fn arm(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    for (id, (f, fds)) in anon_files(images) {
        let Some(t) = f.tfd.as_ref().filter(|_| f.type_() == Fd_types::TIMERFD) else {
            continue;
        };
        let fd = fds[0].0 as u64;
        let (mut vsec, mut vnsec) = (t.vsec(), t.vnsec());
        if vsec == 0 && vnsec == 0 {
            // A periodic timer that expired and was not read since shows no time left
            // (the kernel moves it on at the next read): the next expiry is one interval
            // away, never earlier; the expirations not read are in `ticks`.
            (vsec, vnsec) = (t.isec(), t.insec());
        }
        let armed = vsec != 0 || vnsec != 0;
        if armed {
            if t.settime_flags() & TFD_TIMER_ABSTIME != 0 {
                let now = crs_sys::time::now(t.clockid() as libc::clockid_t).map_err(|e| {
                    RestoreError::Syscall {
                        pid: r.pid,
                        what: format!("clock_gettime({}) for timerfd {id}", t.clockid()),
                        errno: i64::from(e.raw_os_error().unwrap_or(0)),
                    }
                })?;
                vnsec += u64::from(now.subsec_nanos());
                vsec += now.as_secs() + vnsec / 1_000_000_000;
                vnsec %= 1_000_000_000;
            }
            let its: Vec<u8> = [t.isec(), t.insec(), vsec, vnsec]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            let p = r.put(0, &its)?;
            r.call(
                libc::SYS_timerfd_settime,
                [fd, u64::from(t.settime_flags()), p, 0, 0, 0],
                || format!("arming timerfd {id} ({vsec}.{vnsec:09} s)"),
            )?;
        }
        if t.ticks() != 0 {
            let p = r.put(0, &t.ticks().to_le_bytes())?;
            r.call(libc::SYS_ioctl, [fd, TFD_IOC_SET_TICKS, p, 0, 0, 0], || {
                format!("setting {} unread expirations of timerfd {id}", t.ticks())
            })?;
        }
        debug!(id, armed, ticks = t.ticks(), "timerfd armed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crs_images::pb::eventpoll::{Eventpoll_file_entry, Eventpoll_tfd_entry};
    use crs_images::pb::fh::Fh_entry;
    use crs_images::pb::fifo::Fifo_entry;
    use crs_images::pb::fsnotify::Inotify_file_entry;
    use crs_images::pb::timerfd::Timerfd_entry;
    use protobuf::{EnumOrUnknown, MessageField};

    fn fdinfo(fd: u32) -> Fdinfo_entry {
        Fdinfo_entry {
            fd: Some(fd),
            ..Default::default()
        }
    }

    #[test]
    fn check_epoll_target_not_open_is_invalid() {
        let f = File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::EVENTPOLL)),
            id: Some(7),
            epfd: MessageField::some(Eventpoll_file_entry {
                tfd: vec![Eventpoll_tfd_entry {
                    tfd: Some(4),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check(
            &f,
            &BTreeMap::new(),
            &[fdinfo(3), fdinfo(4)],
            "fdinfo-2.img"
        )
        .is_ok());
        assert!(matches!(
            check(&f, &BTreeMap::new(), &[fdinfo(3)], "fdinfo-2.img"),
            Err(RestoreError::Invalid { .. })
        ));
    }

    #[test]
    fn check_timerfd_nanoseconds_past_a_second_is_invalid() {
        let mut f = File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::TIMERFD)),
            id: Some(8),
            tfd: MessageField::some(Timerfd_entry {
                vnsec: Some(999_999_999),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check(&f, &BTreeMap::new(), &[], "fdinfo-2.img").is_ok());
        f.tfd.as_mut().unwrap().insec = Some(1_000_000_000);
        assert!(matches!(
            check(&f, &BTreeMap::new(), &[], "fdinfo-2.img"),
            Err(RestoreError::Invalid { .. })
        ));
    }

    fn files_of(entries: Vec<File_entry>) -> BTreeMap<u32, File_entry> {
        entries.into_iter().map(|f| (f.id(), f)).collect()
    }

    fn inotify(wds: &[(u32, Option<&str>)]) -> File_entry {
        File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::INOTIFY)),
            id: Some(3),
            ify: MessageField::some(Inotify_file_entry {
                id: Some(3),
                wd: wds
                    .iter()
                    .map(|&(wd, path)| Inotify_wd_entry {
                        wd: Some(wd),
                        mask: Some(libc::IN_CREATE),
                        f_handle: MessageField::some(Fh_entry {
                            path: path.map(str::to_string),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn check_criu_reference_tree_inotify_is_accepted() {
        let dir = crs_testkit::criu_images().join("tree");
        if !dir.join("files.img").exists() {
            crs_testkit::skip(
                "check_criu_reference_tree_inotify_is_accepted",
                "no CRIU reference set",
            );
            return;
        }
        let bytes = crs_images::codec::read_file(&dir.join("files.img")).unwrap();
        let files = files_of(
            crs_images::codec::ImageReader::new("files.img", &bytes, "FILES")
                .unwrap()
                .all::<File_entry>()
                .unwrap(),
        );
        let f = &files[&10];
        assert!(is_anon(f.type_()));
        check(f, &files, &[], "fdinfo-2.img").unwrap();
        let ify = f.ify.as_ref().unwrap();
        assert_eq!(
            ify.flags() & libc::O_NONBLOCK as u32,
            libc::O_NONBLOCK as u32
        );
        let w = &ify.wd[0];
        assert_eq!((w.wd(), w.mask() & WATCH_MASK), (1, 0x30a));
        assert_eq!(w.f_handle.path(), "/tmp/crs-ref/tree");
    }

    #[test]
    fn check_inotify_watch_twice_or_zero_is_invalid() {
        let files = BTreeMap::new();
        let ok = inotify(&[(1, Some("/a")), (4, Some("/b"))]);
        assert!(check(&ok, &files, &[], "fdinfo-2.img").is_ok());
        for bad in [
            inotify(&[(2, Some("/a")), (2, Some("/b"))]),
            inotify(&[(0, Some("/a"))]),
        ] {
            assert!(matches!(
                check(&bad, &files, &[], "fdinfo-2.img"),
                Err(RestoreError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn check_inotify_watch_without_path_is_unsupported() {
        let f = inotify(&[(1, None)]);
        assert!(matches!(
            check(&f, &BTreeMap::new(), &[], "fdinfo-2.img"),
            Err(RestoreError::Unsupported { .. })
        ));
    }

    #[test]
    fn check_fifo_without_its_path_entry_is_invalid() {
        let fifo = File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::FIFO)),
            id: Some(6),
            fifo: MessageField::some(Fifo_entry {
                id: Some(6),
                pipe_id: Some(77),
                regf_id: Some(7),
                ..Default::default()
            }),
            ..Default::default()
        };
        let reg = File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::REG)),
            id: Some(7),
            reg: MessageField::some(Reg_file_entry {
                id: Some(7),
                name: Some("/tmp/f".into()),
                flags: Some(libc::O_RDONLY as u32),
                ..Default::default()
            }),
            ..Default::default()
        };
        let files = files_of(vec![fifo.clone(), reg]);
        assert!(check(&fifo, &files, &[], "fdinfo-2.img").is_ok());
        let files = files_of(vec![fifo.clone()]);
        assert!(matches!(
            check(&fifo, &files, &[], "fdinfo-2.img"),
            Err(RestoreError::Invalid { .. })
        ));
    }

    #[test]
    fn check_eventfd_without_its_entry_is_invalid() {
        let f = File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::EVENTFD)),
            id: Some(5),
            ..Default::default()
        };
        assert!(matches!(
            check(&f, &BTreeMap::new(), &[], "fdinfo-2.img"),
            Err(RestoreError::Invalid { .. })
        ));
    }
}
