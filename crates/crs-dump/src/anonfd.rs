//! Anon-inode fds: eventfd (its counter), signalfd (its mask), timerfd (clock, settings,
//! remaining time, unread expirations), epoll (its targets) and inotify (its watches),
//! saved from `/proc/PID/fdinfo/N` as CRIU's EVENTFD, SIGNALFD, TIMERFD, EVENTPOLL and
//! INOTIFY file entries; and FIFOs (named pipes), which like inotify are re-created at
//! restore by the task from a path.
//!
//! An inotify watch is saved with the file handle fdinfo shows and the path of the watched
//! inode: the handle is opened with open_by_handle_at on a mount of the watch's device
//! (from the task's mountinfo) and the path read back from `/proc/self/fd`; the path must
//! reach the same inode from crs (same mount namespace). Events queued on the inotify fd
//! are not saved (CRIU drops them too): a warning says so.
//!
//! A FIFO is a regular-file entry of its path, a FIFO entry naming it (`regf_id`) and, the
//! first time its pipe is seen, the bytes queued in it (fifo-data.img), duplicated with
//! tee(2) and left queued. A write-only end is read through a new read-only description
//! of the same FIFO (CRIU saves data from readable ends only).
//!
//! A child module of `files`: the file ids, the shared-description lookup and files.img
//! are the file table's. Flags are the open file's status flags without O_CLOEXEC (which
//! is the fd's, in fdinfo-N.img), as CRIU stores them.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use crs_compel::SeizedTree;
use crs_images::pb::eventfd::Eventfd_file_entry;
use crs_images::pb::eventpoll::{Eventpoll_file_entry, Eventpoll_tfd_entry};
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::fh::Fh_entry;
use crs_images::pb::fifo::Fifo_entry;
use crs_images::pb::fown::Fown_entry;
use crs_images::pb::fsnotify::{Inotify_file_entry, Inotify_wd_entry};
use crs_images::pb::signalfd::Signalfd_entry;
use crs_images::pb::timerfd::Timerfd_entry;
use crs_proc::{FdInfo, InotifyWatch, MountInfo, ProcDir};
use protobuf::{EnumOrUnknown, MessageField};
use tracing::{debug, warn};

use super::{file_err, kernel_dev, queued_pipe_data, strip_deleted, FdEntry, FileTable};
use crate::error::{compel_err, proc_err, DumpError, Result};

/// Words of `fh_entry.handle` CRIU always writes (`fh_entry_sizes.min_entries`): the
/// handle bytes, zero-padded.
const FH_MIN_WORDS: usize = 16;

/// The anon-inode files crs saves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnonKind {
    Eventfd,
    Signalfd,
    Timerfd,
    Eventpoll,
    Inotify,
}

impl AnonKind {
    /// The kind of an `fd/N` link (`anon_inode:[eventfd]`, ...).
    pub(crate) fn of_link(link: &str) -> Option<AnonKind> {
        match link {
            "anon_inode:[eventfd]" => Some(AnonKind::Eventfd),
            "anon_inode:[signalfd]" => Some(AnonKind::Signalfd),
            "anon_inode:[timerfd]" => Some(AnonKind::Timerfd),
            "anon_inode:[eventpoll]" => Some(AnonKind::Eventpoll),
            "anon_inode:inotify" | "anon_inode:[inotify]" => Some(AnonKind::Inotify),
            _ => None,
        }
    }

    fn fd_type(self) -> Fd_types {
        match self {
            AnonKind::Eventfd => Fd_types::EVENTFD,
            AnonKind::Signalfd => Fd_types::SIGNALFD,
            AnonKind::Timerfd => Fd_types::TIMERFD,
            AnonKind::Eventpoll => Fd_types::EVENTPOLL,
            AnonKind::Inotify => Fd_types::INOTIFY,
        }
    }
}

impl FileTable {
    /// Dumps anon-inode fd `fd` of the process of `proc_dir`: its file entry the first
    /// time its open file description is seen. A description shared with another process
    /// is refused (only one process creates these at restore).
    pub(super) fn anon_fd(
        &mut self,
        tree: &SeizedTree,
        proc_dir: &ProcDir,
        fd: i32,
        kind: AnonKind,
        info: &FdInfo,
        link: &str,
    ) -> Result<FdEntry> {
        let pid = proc_dir.pid();
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
        let md = file.metadata().map_err(|source| DumpError::File {
            what: "stat of",
            path: link.into(),
            source,
        })?;
        let key = (md.dev(), md.ino());
        // An eventfd or signalfd several processes share is made once by crs at restore;
        // the other kinds are still each process's own.
        let shareable = matches!(kind, AnonKind::Eventfd | AnonKind::Signalfd);
        let shared = match self.shared_with(pid, fd, key)? {
            Some((other_pid, _)) if other_pid != pid && !shareable => {
                return Err(unsupported(
                    "an epoll, timerfd or inotify file shared between processes",
                ));
            }
            found => found.map(|(_, id)| id),
        };
        let id = match shared {
            Some(id) => id,
            None => {
                let id = self.alloc();
                let fown = self.fown(&file, pid)?;
                let flags = info.flags & !(libc::O_CLOEXEC as u32);
                let entry = if kind == AnonKind::Inotify {
                    if has_queued_events(&file) {
                        warn!(pid, fd, id, "events queued on inotify fd are dropped");
                    }
                    let mounts = proc_dir.mountinfo().map_err(proc_err(pid, "mountinfo"))?;
                    inotify_entry(id, flags, fown, &info.inotify, &mounts, proc_dir.path())
                        .map_err(unsupported)?
                } else {
                    anon_entry(id, kind, flags, fown, info, proc_dir).map_err(unsupported)?
                };
                debug!(pid, fd, id, ?kind, "anon-inode file");
                self.entries.push(entry);
                id
            }
        };
        Ok(self.seen_fd((pid, fd), key, id, info.flags, kind.fd_type()))
    }
}

/// The file entry of an anon-inode file from its fdinfo. Epoll targets must be open in
/// the same process at the fd number they were added with (their inode is checked). An
/// error says why the file cannot be saved.
fn anon_entry(
    id: u32,
    kind: AnonKind,
    flags: u32,
    fown: Fown_entry,
    info: &FdInfo,
    proc_dir: &ProcDir,
) -> std::result::Result<File_entry, &'static str> {
    let mut e = File_entry {
        type_: Some(EnumOrUnknown::new(kind.fd_type())),
        id: Some(id),
        ..Default::default()
    };
    let fown = MessageField::some(fown);
    match kind {
        AnonKind::Eventfd => {
            let ev = info
                .eventfd
                .ok_or("eventfd without an eventfd-count line")?;
            if ev.semaphore == Some(true) {
                return Err("EFD_SEMAPHORE eventfd (not in CRIU's image)");
            }
            e.efd = MessageField::some(Eventfd_file_entry {
                id: Some(id),
                flags: Some(flags),
                fown,
                counter: Some(ev.count),
                ..Default::default()
            });
        }
        AnonKind::Signalfd => {
            let mask = info
                .signalfd_mask
                .ok_or("signalfd without a sigmask line")?;
            e.sgfd = MessageField::some(Signalfd_entry {
                id: Some(id),
                flags: Some(flags),
                fown,
                sigmask: Some(mask.0),
                ..Default::default()
            });
        }
        AnonKind::Timerfd => {
            let t = info
                .timerfd
                .ok_or("timerfd without its clockid/ticks lines")?;
            e.tfd = MessageField::some(Timerfd_entry {
                id: Some(id),
                flags: Some(flags),
                fown,
                clockid: Some(t.clockid as u32),
                ticks: Some(t.ticks),
                settime_flags: Some(t.settime_flags),
                vsec: Some(t.it_value.0),
                vnsec: Some(t.it_value.1),
                isec: Some(t.it_interval.0),
                insec: Some(t.it_interval.1),
                ..Default::default()
            });
        }
        AnonKind::Eventpoll => {
            let mut tfds = Vec::with_capacity(info.epoll.len());
            for t in &info.epoll {
                let target = proc_dir.fdinfo(t.tfd).ok();
                if target.and_then(|ti| ti.ino) != Some(t.ino) {
                    return Err(
                        "epoll target closed or replaced since it was added (not supported yet)",
                    );
                }
                tfds.push(Eventpoll_tfd_entry {
                    id: Some(0),
                    tfd: Some(t.tfd as u32),
                    events: Some(t.events),
                    data: Some(t.data),
                    dev: Some(t.sdev),
                    inode: Some(t.ino),
                    pos: Some(t.pos),
                    ..Default::default()
                });
            }
            e.epfd = MessageField::some(Eventpoll_file_entry {
                id: Some(id),
                flags: Some(flags),
                fown,
                tfd: tfds,
                ..Default::default()
            });
        }
        AnonKind::Inotify => return Err("inotify without its mount table"),
    }
    Ok(e)
}

impl FileTable {
    /// A FIFO opened by path (`file`, its fd `link`, open with `flags`): the regular-file
    /// entry of its path (allocated after the FIFO's id, written before it, as CRIU does),
    /// the FIFO entry, and the first time its pipe is seen the bytes queued in it.
    pub(super) fn fifo(
        &mut self,
        id: u32,
        link: &Path,
        file: &File,
        md: &std::fs::Metadata,
        flags: u32,
        fown: Fown_entry,
    ) -> Result<()> {
        let pipe_id = md.ino() as u32;
        let regf_id = self.alloc();
        let reg = self.reg_entry(regf_id, link, file, md, flags, 0, fown)?;
        self.push_reg(regf_id, reg);
        self.entries.push(File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::FIFO)),
            id: Some(id),
            fifo: MessageField::some(Fifo_entry {
                id: Some(id),
                pipe_id: Some(pipe_id),
                regf_id: Some(regf_id),
                ..Default::default()
            }),
            ..Default::default()
        });
        if self.fifo_data.iter().any(|(e, _)| e.pipe_id() == pipe_id) {
            return Ok(());
        }
        // tee(2) needs a readable end: a write-only one is read through a new read-only
        // description of the FIFO (non-blocking, so the open does not wait for a writer).
        let readable = if flags & libc::O_ACCMODE as u32 == libc::O_WRONLY as u32 {
            super::reopen_readonly_at(file, libc::O_NONBLOCK)
                .map_err(file_err("reopening for reading the FIFO", link))?
        } else {
            file.try_clone()
                .map_err(file_err("duplicating fd of", link))?
        };
        let (size, data) = queued_pipe_data(&readable, link)?;
        debug!(
            id,
            pipe_id,
            regf_id,
            size,
            bytes = data.len(),
            "FIFO data saved"
        );
        self.fifo_data
            .push(super::pipe_data_entry(pipe_id, size, data));
        Ok(())
    }
}

/// Whether events are queued on inotify fd `file` (it polls readable).
fn has_queued_events(file: &File) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
}

/// The INOTIFY file entry of an inotify instance with `watches` (in fdinfo order, as CRIU
/// keeps them), each with its file handle and the path it resolves to through a mount of
/// `mounts` (the task's, reached under `proc_path`/root).
fn inotify_entry(
    id: u32,
    flags: u32,
    fown: Fown_entry,
    watches: &[InotifyWatch],
    mounts: &[MountInfo],
    proc_path: &Path,
) -> std::result::Result<File_entry, &'static str> {
    let mut wds = Vec::with_capacity(watches.len());
    for w in watches {
        let fh = w
            .fhandle
            .as_ref()
            .ok_or("inotify watch on a file system without file handles")?;
        if fh.bytes as usize != fh.handle.len() {
            return Err("inotify watch whose fhandle-bytes is not the handle's length");
        }
        let path = watch_path(w, mounts, proc_path)?;
        debug!(
            id,
            wd = w.wd,
            ino = w.ino,
            mask = w.mask,
            path,
            "inotify watch"
        );
        wds.push(Inotify_wd_entry {
            id: Some(0),
            i_ino: Some(w.ino),
            mask: Some(w.mask),
            ignored_mask: Some(w.ignored_mask),
            s_dev: Some(w.sdev),
            wd: Some(w.wd as u32),
            f_handle: MessageField::some(Fh_entry {
                bytes: Some(fh.bytes),
                type_: Some(fh.handle_type as u32),
                handle: handle_words(&fh.handle),
                path: Some(path),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    Ok(File_entry {
        type_: Some(EnumOrUnknown::new(Fd_types::INOTIFY)),
        id: Some(id),
        ify: MessageField::some(Inotify_file_entry {
            id: Some(id),
            flags: Some(flags),
            fown: MessageField::some(fown),
            wd: wds,
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// A file handle's bytes as CRIU stores them: native-endian 64-bit words, zero-padded to
/// at least [`FH_MIN_WORDS`].
fn handle_words(handle: &[u8]) -> Vec<u64> {
    let mut words = vec![0u64; handle.len().div_ceil(8).max(FH_MIN_WORDS)];
    for (w, chunk) in words.iter_mut().zip(handle.chunks(8)) {
        let mut b = [0u8; 8];
        b[..chunk.len()].copy_from_slice(chunk);
        *w = u64::from_ne_bytes(b);
    }
    words
}

/// The path of the inode watch `w` names: its file handle opened on each mount of its
/// device until the path read back reaches the same inode from crs.
fn watch_path(
    w: &InotifyWatch,
    mounts: &[MountInfo],
    proc_path: &Path,
) -> std::result::Result<String, &'static str> {
    let fh = w
        .fhandle
        .as_ref()
        .ok_or("inotify watch without a file handle")?;
    let mut opened = false;
    for m in mounts
        .iter()
        .filter(|m| (m.major << 20) | m.minor == w.sdev)
    {
        let rel = m.mount_point.strip_prefix("/").unwrap_or(&m.mount_point);
        // Not O_PATH: open_by_handle_at refuses an O_PATH mount fd (EBADF).
        let Ok(mnt) = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(proc_path.join("root").join(rel))
        else {
            continue; // a file bind mount, or a mount crs cannot reach
        };
        let Ok(target) = crs_sys::fhandle::open_by_handle_at(
            mnt.as_fd(),
            fh.handle_type,
            &fh.handle,
            libc::O_PATH,
        ) else {
            continue;
        };
        opened = true;
        let Ok(link) = std::fs::read_link(format!("/proc/self/fd/{}", target.as_raw_fd())) else {
            continue;
        };
        let (path, deleted) = strip_deleted(&link);
        if deleted {
            return Err("inotify watch on a file that was unlinked");
        }
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if md.ino() == w.ino && kernel_dev(md.dev()) == w.sdev {
            return path
                .into_os_string()
                .into_string()
                .map_err(|_| "inotify watch on a path that is not UTF-8");
        }
    }
    Err(if opened {
        "inotify watch on an inode with no path crs can reach"
    } else {
        "inotify watch whose file handle opens on no mount of its device"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn of_link_anon_inode_names_are_known_kinds() {
        assert_eq!(
            AnonKind::of_link("anon_inode:[eventfd]"),
            Some(AnonKind::Eventfd)
        );
        assert_eq!(
            AnonKind::of_link("anon_inode:[eventpoll]"),
            Some(AnonKind::Eventpoll)
        );
        assert_eq!(
            AnonKind::of_link("anon_inode:inotify"),
            Some(AnonKind::Inotify)
        );
        assert_eq!(AnonKind::of_link("anon_inode:[fanotify]"), None);
        assert_eq!(AnonKind::of_link("/tmp/x"), None);
    }

    #[test]
    fn handle_words_short_handle_is_padded_to_16_words() {
        let w = handle_words(&[0xa7, 0xc4, 0x03, 0, 1, 0, 0, 0, 0xff]);
        assert_eq!(w.len(), FH_MIN_WORDS);
        assert_eq!(w[0], u64::from_ne_bytes([0xa7, 0xc4, 0x03, 0, 1, 0, 0, 0]));
        assert_eq!(w[1], 0xff);
        assert!(w[2..].iter().all(|&x| x == 0));
    }
}
