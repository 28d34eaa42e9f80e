//! flock and POSIX (fcntl) locks held by the dumped processes, from the `lock:` lines of
//! each fd's fdinfo (the kernel lists there the locks taken through that open file
//! description by its owner), saved as CRIU's filelocks.img: one file_lock_entry per lock
//! with the owner pid, the fd to re-take it through, its class, type and byte range.
//!
//! A lock seen through several fds of one description (dup'ed, or inherited) is saved
//! once, at the first fd it was seen at. OFD locks and leases are refused.

use std::collections::HashSet;

use crs_compel::Tid;
use crs_images::codec::ImageWriter;
use crs_images::pb::file_lock::File_lock_entry;
use crs_proc::{FileLock, LockClass, LockKind};

use crate::error::Result;
use crate::files::image_err;
use crate::imgdir::ImageDir;

/// CRIU's `FL_POSIX`.
pub(crate) const FL_POSIX: u32 = 1;
/// CRIU's `FL_FLOCK`.
pub(crate) const FL_FLOCK: u32 = 2;

/// The locks of a dump, in the order they were found.
#[derive(Default)]
pub(crate) struct Locks {
    entries: Vec<File_lock_entry>,
    /// (file id, flag, type, pid or 0 for flock, start, len) of every saved lock.
    seen: HashSet<(u32, u32, u32, i32, i64, i64)>,
}

/// The image entry of lock `l` held by process `pid` through fd `fd`, or why it is refused.
pub(crate) fn entry(pid: Tid, fd: i32, l: &FileLock) -> Result<File_lock_entry, &'static str> {
    let flag = match l.class {
        LockClass::Posix => FL_POSIX,
        LockClass::Flock => FL_FLOCK,
        LockClass::Ofd => return Err("OFD locks (F_OFD_SETLK)"),
        LockClass::Lease => return Err("file leases"),
        _ => return Err("file locks other than flock and POSIX"),
    };
    let type_ = match l.kind {
        LockKind::Read => libc::F_RDLCK as u32,
        LockKind::Write => libc::F_WRLCK as u32,
        _ => return Err("file locks other than read and write locks"),
    };
    let start = i64::try_from(l.start).map_err(|_| "a lock starting past i64::MAX")?;
    let len = match l.end {
        None => 0,
        Some(end) => end
            .checked_sub(l.start)
            .and_then(|d| d.checked_add(1))
            .and_then(|n| i64::try_from(n).ok())
            .ok_or("a lock whose end is before its start")?,
    };
    Ok(File_lock_entry {
        flag: Some(flag),
        type_: Some(type_),
        pid: Some(pid),
        fd: Some(fd),
        start: Some(start),
        len: Some(len),
        ..Default::default()
    })
}

impl Locks {
    /// Records the locks of fd `fd` (file id `id`) of process `pid` from its fdinfo.
    /// A POSIX lock is its owner's only; a flock belongs to the description and is saved
    /// for the first process it is seen in.
    pub(crate) fn note(
        &mut self,
        pid: Tid,
        fd: i32,
        id: u32,
        locks: &[FileLock],
    ) -> Result<(), &'static str> {
        for l in locks.iter().filter(|l| !l.blocked) {
            if l.class == LockClass::Posix && l.pid != pid {
                continue;
            }
            let e = entry(pid, fd, l)?;
            let owner = if e.flag() == FL_POSIX { pid } else { 0 };
            let key = (id, e.flag(), e.type_(), owner, e.start(), e.len());
            if self.seen.insert(key) {
                tracing::debug!(
                    pid,
                    fd,
                    flag = e.flag(),
                    type_ = e.type_(),
                    start = e.start(),
                    len = e.len(),
                    "file lock"
                );
                self.entries.push(e);
            }
        }
        Ok(())
    }

    /// Writes filelocks.img when any lock was found.
    pub(crate) fn write(&self, dir: &mut ImageDir) -> Result<()> {
        if self.entries.is_empty() {
            return Ok(());
        }
        let mut img = ImageWriter::new("filelocks.img", "FILE_LOCKS");
        for e in &self.entries {
            img.push(e).map_err(image_err("filelocks.img"))?;
        }
        dir.write(img)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(class: LockClass, kind: LockKind, start: u64, end: Option<u64>) -> FileLock {
        FileLock {
            id: 1,
            blocked: false,
            class,
            mode: "ADVISORY".into(),
            kind,
            pid: 7,
            file: None,
            start,
            end,
        }
    }

    #[test]
    fn entry_posix_range_is_inclusive_end_plus_one() {
        let e = entry(
            7,
            4,
            &lock(LockClass::Posix, LockKind::Write, 100, Some(149)),
        )
        .unwrap();
        assert_eq!((e.flag(), e.type_(), e.pid(), e.fd()), (FL_POSIX, 1, 7, 4));
        assert_eq!((e.start(), e.len()), (100, 50));
    }

    #[test]
    fn entry_flock_to_eof_has_zero_len() {
        let e = entry(7, 3, &lock(LockClass::Flock, LockKind::Read, 0, None)).unwrap();
        assert_eq!(
            (e.flag(), e.type_(), e.start(), e.len()),
            (FL_FLOCK, 0, 0, 0)
        );
    }

    #[test]
    fn entry_ofd_lock_is_refused() {
        assert!(entry(7, 3, &lock(LockClass::Ofd, LockKind::Write, 0, None)).is_err());
    }

    #[test]
    fn note_same_flock_twice_is_saved_once() {
        let mut l = Locks::default();
        let f = [lock(LockClass::Flock, LockKind::Write, 0, None)];
        l.note(7, 3, 9, &f).unwrap();
        l.note(7, 5, 9, &f).unwrap();
        assert_eq!(l.entries.len(), 1);
    }
}
