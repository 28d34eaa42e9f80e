//! Anon-inode fds: eventfd (its counter), signalfd (its mask), timerfd (clock, settings,
//! remaining time, unread expirations) and epoll (its targets), saved from
//! `/proc/PID/fdinfo/N` as CRIU's EVENTFD, SIGNALFD, TIMERFD and EVENTPOLL file entries.
//!
//! A child module of `files`: the file ids, the shared-description lookup and files.img
//! are the file table's. Flags are the open file's status flags without O_CLOEXEC (which
//! is the fd's, in fdinfo-N.img), as CRIU stores them.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use crs_compel::SeizedTree;
use crs_images::pb::eventfd::Eventfd_file_entry;
use crs_images::pb::eventpoll::{Eventpoll_file_entry, Eventpoll_tfd_entry};
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::fown::Fown_entry;
use crs_images::pb::signalfd::Signalfd_entry;
use crs_images::pb::timerfd::Timerfd_entry;
use crs_proc::{FdInfo, ProcDir};
use protobuf::{EnumOrUnknown, MessageField};
use tracing::debug;

use super::{fown_of, FdEntry, FileTable};
use crate::error::{compel_err, DumpError, Result};

/// The anon-inode files crs saves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AnonKind {
    Eventfd,
    Signalfd,
    Timerfd,
    Eventpoll,
}

impl AnonKind {
    /// The kind of an `fd/N` link (`anon_inode:[eventfd]`, ...).
    pub(crate) fn of_link(link: &str) -> Option<AnonKind> {
        match link {
            "anon_inode:[eventfd]" => Some(AnonKind::Eventfd),
            "anon_inode:[signalfd]" => Some(AnonKind::Signalfd),
            "anon_inode:[timerfd]" => Some(AnonKind::Timerfd),
            "anon_inode:[eventpoll]" => Some(AnonKind::Eventpoll),
            _ => None,
        }
    }

    fn fd_type(self) -> Fd_types {
        match self {
            AnonKind::Eventfd => Fd_types::EVENTFD,
            AnonKind::Signalfd => Fd_types::SIGNALFD,
            AnonKind::Timerfd => Fd_types::TIMERFD,
            AnonKind::Eventpoll => Fd_types::EVENTPOLL,
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
        let shared = match self.shared_with(pid, fd, key)? {
            Some((other_pid, _)) if other_pid != pid => {
                return Err(unsupported("an anon-inode file shared between processes"));
            }
            found => found.map(|(_, id)| id),
        };
        let id = match shared {
            Some(id) => id,
            None => {
                let id = self.alloc();
                let fown = fown_of(&file);
                let flags = info.flags & !(libc::O_CLOEXEC as u32);
                let entry =
                    anon_entry(id, kind, flags, fown, info, proc_dir).map_err(unsupported)?;
                debug!(pid, fd, id, ?kind, "anon-inode file");
                self.entries.push(entry);
                id
            }
        };
        self.seen.entry(key).or_default().push((pid, fd, id));
        Ok(FdEntry {
            fd,
            id,
            cloexec: info.flags & libc::O_CLOEXEC as u32 != 0,
            kind: kind.fd_type(),
        })
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
    }
    Ok(e)
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
        assert_eq!(AnonKind::of_link("anon_inode:[inotify]"), None);
        assert_eq!(AnonKind::of_link("/tmp/x"), None);
    }
}
