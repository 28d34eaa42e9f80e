//! File locks held by the dumped processes, from the `lock:` lines of each fd's fdinfo (the
//! kernel lists there the locks taken through that open file description: POSIX locks of
//! the process reading it, flocks, OFD locks and leases of the description whoever reads
//! it), saved as CRIU's filelocks.img: one file_lock_entry per lock with the pid and fd
//! to take it again through, its class (flag), type and byte range.
//!
//! A lock of a description (flock, OFD lock, lease) seen through several fds, dup'ed or
//! inherited, is saved once, for the first process and fd it was seen at. A lease being
//! broken is saved as CRIU does: its type is `LEASE_BREAKING` with the type the break
//! leads to (`F_GETLEASE`: `F_RDLCK` for a downgrade, `F_UNLCK` for a removal). The
//! restore takes such a lease and breaks it again, which needs it to be the only lease
//! on its file, or all of those leases to be in one process: a lease being broken on a
//! file that leases of other processes share is refused.

use std::collections::HashSet;

use crs_compel::Tid;
use crs_images::codec::ImageWriter;
use crs_images::pb::file_lock::File_lock_entry;
use crs_proc::{FileLock, LockClass, LockKind};

use crate::error::{DumpError, Result};
use crate::files::image_err;
use crate::imgdir::ImageDir;

/// CRIU's `FL_POSIX`.
pub(crate) const FL_POSIX: u32 = 1;
/// CRIU's `FL_FLOCK`.
pub(crate) const FL_FLOCK: u32 = 2;
/// CRIU's `FL_OFD`.
pub(crate) const FL_OFD: u32 = 4;
/// CRIU's `FL_LEASE`.
pub(crate) const FL_LEASE: u32 = 8;
/// CRIU's `LEASE_BREAKING`, or'ed into the type of a lease being broken.
pub(crate) const LEASE_BREAKING: u32 = 4;

/// The fdinfo mode of a lease being broken.
const BREAKING: &str = "BREAKING";
/// The fdinfo mode of a lease not being broken.
const ACTIVE: &str = "ACTIVE";

/// Where locks are seen: fd `fd` of process `pid`, of open file description `id` (the
/// file id of the dump), on the file `(device, inode)` that `link` names.
pub(crate) struct At<'a> {
    pub pid: Tid,
    /// `pid` as the images record it (see `ns::Vpids`).
    pub vpid: u32,
    pub fd: i32,
    pub id: u32,
    pub file: (u64, u64),
    pub link: &'a str,
}

/// A lease saved, for the check that a lease being broken has its file to itself.
struct Lease {
    pid: Tid,
    fd: i32,
    file: (u64, u64),
    link: String,
    breaking: bool,
}

/// The locks of a dump, in the order they were found.
#[derive(Default)]
pub(crate) struct Locks {
    entries: Vec<File_lock_entry>,
    /// (file id, flag, type, pid or 0 for a lock of the description, start, len) of every
    /// saved lock.
    seen: HashSet<(u32, u32, u32, i32, i64, i64)>,
    leases: Vec<Lease>,
}

/// Whether a read-only open of the file would break a lease of `locks` (a write lease, or
/// a lease being broken, which may still be a write lease): crs must not open such a file
/// again while it dumps it.
pub(crate) fn lease_blocks_readers(locks: &[FileLock]) -> bool {
    locks.iter().any(|l| {
        !l.blocked
            && l.class == LockClass::Lease
            && (l.kind == LockKind::Write || l.mode == BREAKING)
    })
}

/// The image entry of lock `l` held by process `pid` (as the images record it) through fd
/// `fd`, or why it is refused. `lease_target` asks the kernel what a lease being broken
/// will become (`F_GETLEASE`).
pub(crate) fn entry(
    pid: u32,
    fd: i32,
    l: &FileLock,
    lease_target: impl FnOnce() -> std::io::Result<i32>,
) -> Result<File_lock_entry, &'static str> {
    let flag = match l.class {
        LockClass::Posix => FL_POSIX,
        LockClass::Flock => FL_FLOCK,
        LockClass::Ofd => FL_OFD,
        LockClass::Lease => FL_LEASE,
        LockClass::Deleg => return Err("NFS delegations"),
        _ => return Err("file locks other than flock, POSIX, OFD locks and leases"),
    };
    let type_ = if flag == FL_LEASE && l.mode == BREAKING {
        match lease_target() {
            Ok(t) if t == libc::F_RDLCK || t == libc::F_UNLCK => LEASE_BREAKING | t as u32,
            Ok(_) => return Err("a lease being broken that F_GETLEASE shows as a write lease"),
            Err(_) => return Err("a lease being broken whose target F_GETLEASE does not tell"),
        }
    } else if flag == FL_LEASE && l.mode != ACTIVE {
        return Err("a lease neither active nor being broken");
    } else {
        match l.kind {
            LockKind::Read => libc::F_RDLCK as u32,
            LockKind::Write => libc::F_WRLCK as u32,
            _ => return Err("file locks other than read and write locks"),
        }
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
        pid: Some(pid as i32),
        fd: Some(fd),
        start: Some(start),
        len: Some(len),
        ..Default::default()
    })
}

impl Locks {
    /// Records the locks `locks` of the fdinfo of `at`. A POSIX lock is its owner's only;
    /// a flock, OFD lock or lease belongs to the description and is saved for the first
    /// process it is seen in.
    pub(crate) fn note(
        &mut self,
        at: &At<'_>,
        locks: &[FileLock],
        lease_target: impl Fn() -> std::io::Result<i32>,
    ) -> Result<(), &'static str> {
        for l in locks.iter().filter(|l| !l.blocked) {
            if l.class == LockClass::Posix && l.pid != at.pid {
                continue;
            }
            let e = entry(at.vpid, at.fd, l, &lease_target)?;
            let owner = if e.flag() == FL_POSIX { at.pid } else { 0 };
            let key = (at.id, e.flag(), e.type_(), owner, e.start(), e.len());
            if self.seen.insert(key) {
                tracing::debug!(
                    pid = at.pid,
                    fd = at.fd,
                    flag = e.flag(),
                    type_ = e.type_(),
                    start = e.start(),
                    len = e.len(),
                    "file lock"
                );
                if e.flag() == FL_LEASE {
                    self.leases.push(Lease {
                        pid: at.pid,
                        fd: at.fd,
                        file: at.file,
                        link: at.link.to_owned(),
                        breaking: e.type_() & LEASE_BREAKING != 0,
                    });
                }
                self.entries.push(e);
            }
        }
        Ok(())
    }

    /// Refuses a lease being broken on a file that a lease of another process shares: the
    /// restore, which builds processes apart, could not take the second lease once the
    /// first is being broken again.
    fn check_breaking(&self) -> Result<()> {
        for b in self.leases.iter().filter(|l| l.breaking) {
            if let Some(o) = self
                .leases
                .iter()
                .find(|o| o.file == b.file && o.pid != b.pid)
            {
                return Err(DumpError::BreakingLeaseShared {
                    pid: b.pid,
                    fd: b.fd,
                    link: b.link.clone(),
                    other: o.pid,
                });
            }
        }
        Ok(())
    }

    /// Writes filelocks.img when any lock was found.
    pub(crate) fn write(&self, dir: &mut ImageDir) -> Result<()> {
        self.check_breaking()?;
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
            no_lease,
        )
        .unwrap();
        assert_eq!((e.flag(), e.type_(), e.pid(), e.fd()), (FL_POSIX, 1, 7, 4));
        assert_eq!((e.start(), e.len()), (100, 50));
    }

    #[test]
    fn entry_flock_to_eof_has_zero_len() {
        let e = entry(
            7,
            3,
            &lock(LockClass::Flock, LockKind::Read, 0, None),
            no_lease,
        )
        .unwrap();
        assert_eq!(
            (e.flag(), e.type_(), e.start(), e.len()),
            (FL_FLOCK, 0, 0, 0)
        );
    }

    fn no_lease() -> std::io::Result<i32> {
        panic!("F_GETLEASE asked for a lock that is no lease being broken")
    }

    fn at(pid: Tid, fd: i32, id: u32, ino: u64) -> At<'static> {
        At {
            pid,
            vpid: pid as u32,
            fd,
            id,
            file: (1, ino),
            link: "/f",
        }
    }

    #[test]
    fn entry_ofd_range_has_flag_4() {
        let l = lock(LockClass::Ofd, LockKind::Read, 10, Some(19));
        let e = entry(7, 3, &l, no_lease).unwrap();
        assert_eq!(
            (e.flag(), e.type_(), e.pid(), e.start(), e.len()),
            (FL_OFD, libc::F_RDLCK as u32, 7, 10, 10)
        );
    }

    #[test]
    fn entry_active_write_lease_has_flag_8_and_write_type() {
        let mut l = lock(LockClass::Lease, LockKind::Write, 0, None);
        l.mode = "ACTIVE".into();
        let e = entry(7, 3, &l, no_lease).unwrap();
        assert_eq!(
            (e.flag(), e.type_(), e.start(), e.len()),
            (FL_LEASE, libc::F_WRLCK as u32, 0, 0)
        );
    }

    #[test]
    fn entry_breaking_lease_has_breaking_bit_and_target_type() {
        let mut l = lock(LockClass::Lease, LockKind::Unlock, 0, None);
        l.mode = "BREAKING".into();
        let e = entry(7, 3, &l, || Ok(libc::F_UNLCK)).unwrap();
        assert_eq!(e.type_(), LEASE_BREAKING | libc::F_UNLCK as u32);
        let e = entry(7, 3, &l, || Ok(libc::F_RDLCK)).unwrap();
        assert_eq!(e.type_(), LEASE_BREAKING | libc::F_RDLCK as u32);
    }

    #[test]
    fn entry_breaking_lease_to_write_is_refused() {
        let mut l = lock(LockClass::Lease, LockKind::Read, 0, None);
        l.mode = "BREAKING".into();
        assert!(entry(7, 3, &l, || Ok(libc::F_WRLCK)).is_err());
        assert!(entry(7, 3, &l, || Err(std::io::Error::from_raw_os_error(
            libc::EBADF
        )))
        .is_err());
    }

    #[test]
    fn entry_delegation_is_refused() {
        let l = lock(LockClass::Deleg, LockKind::Read, 0, None);
        assert!(entry(7, 3, &l, no_lease).is_err());
    }

    #[test]
    fn note_same_flock_twice_is_saved_once() {
        let mut l = Locks::default();
        let f = [lock(LockClass::Flock, LockKind::Write, 0, None)];
        l.note(&at(7, 3, 9, 1), &f, no_lease).unwrap();
        l.note(&at(7, 5, 9, 1), &f, no_lease).unwrap();
        assert_eq!(l.entries.len(), 1);
    }

    #[test]
    fn note_inherited_ofd_lock_is_saved_for_the_first_process() {
        let mut l = Locks::default();
        let mut ofd = lock(LockClass::Ofd, LockKind::Write, 0, None);
        ofd.pid = -1;
        l.note(&at(7, 3, 9, 1), &[ofd.clone()], no_lease).unwrap();
        l.note(&at(8, 3, 9, 1), &[ofd], no_lease).unwrap();
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.entries[0].pid(), 7);
    }

    #[test]
    fn breaking_lease_sharing_its_file_with_another_process_is_refused() {
        let mut l = Locks::default();
        let mut brk = lock(LockClass::Lease, LockKind::Unlock, 0, None);
        brk.mode = "BREAKING".into();
        l.note(&at(7, 3, 9, 1), &[brk.clone()], || Ok(libc::F_UNLCK))
            .unwrap();
        assert!(l.check_breaking().is_ok());
        l.note(&at(7, 4, 10, 1), &[brk.clone()], || Ok(libc::F_UNLCK))
            .unwrap();
        assert!(l.check_breaking().is_ok(), "one process: restorable");
        l.note(&at(8, 3, 11, 1), &[brk], || Ok(libc::F_UNLCK))
            .unwrap();
        let e = l.check_breaking().unwrap_err().to_string();
        assert!(e.contains("a lease being broken"), "{e}");
        assert!(e.contains("fd 3 of process 7"), "{e}");
        assert!(e.contains("process 8 also"), "{e}");
    }
}
