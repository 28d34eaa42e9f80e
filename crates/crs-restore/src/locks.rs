//! File locks (`--file-locks`): the locks of filelocks.img are taken again by syscalls
//! injected into each owner once its files are at their fds and before its file owners
//! and credentials are set:
//! - flock: `flock(fd, LOCK_SH|LOCK_EX | LOCK_NB)`;
//! - POSIX: `fcntl(fd, F_SETLK)` over the saved byte range;
//! - OFD: `fcntl(fd, F_OFD_SETLK)` over the saved byte range, through the fd of the
//!   description that holds it (a description several processes share is one description
//!   after restore, so they share the lock as they did);
//! - lease: `fcntl(fd, F_SETLEASE, type)`, then `F_SETOWN` 0. F_SETLEASE makes the
//!   caller the file's owner; the dumped owner is put back right after by `fown`, which
//!   for a description with a lease only the lease's process does.
//!
//! A lease that was being broken (CRIU's `LEASE_BREAKING` type, with the type the break
//! leads to) is taken as it was before the break: a write lease when the break was a
//! downgrade to a read lease, else a read lease on a read-only description and a write
//! lease on others (as CRIU does: the dump cannot tell the two apart). Once every lease of
//! the process is taken, crs breaks it again by opening the file itself through
//! `/proc/PID/fd/FD`, non-blocking, for writing (a break to no lease) or for reading (a
//! downgrade): the open must fail with EWOULDBLOCK, and leaves the lease being broken with
//! the kernel's full `lease-break-time` ahead. The owner is still cleared then, so the
//! break sends no second notification: the process had its notice before the dump.
//!
//! Non-blocking throughout: a lock someone else took meanwhile is an error, not a hang.
//! Without `--file-locks` an image that holds locks is refused.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::fdinfo::Fd_types;
use crs_images::pb::file_lock::File_lock_entry;
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::images::Tree;
use crate::remote::Remote;
use crate::RestoreError;

const IMAGE: &str = "filelocks.img";
/// CRIU's `FL_POSIX`, `FL_FLOCK`, `FL_OFD` and `FL_LEASE`.
const FL_POSIX: u32 = 1;
const FL_FLOCK: u32 = 2;
const FL_OFD: u32 = 4;
const FL_LEASE: u32 = 8;
/// CRIU's `LEASE_BREAKING`, or'ed into the type of a lease being broken.
const LEASE_BREAKING: u32 = 4;
/// `F_SETOWN` (x86-64).
const F_SETOWN: u64 = 8;

/// How one lock is taken again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum How {
    /// `flock` with this operation (LOCK_SH or LOCK_EX).
    Flock(i32),
    /// `F_SETLK` over the entry's range.
    Posix,
    /// `F_OFD_SETLK` over the entry's range.
    Ofd,
    /// `F_SETLEASE` of this type.
    Lease(i32),
    /// `F_SETLEASE` of type `hold`, then broken by an open with access mode `open`.
    BreakingLease { hold: i32, open: i32 },
}

/// One lock of filelocks.img, checked, with how to take it.
#[derive(Debug, Clone)]
pub(crate) struct Lock {
    entry: File_lock_entry,
    how: How,
}

/// The locks of a restore.
#[derive(Debug, Default)]
pub(crate) struct FileLocks {
    /// The locks of each process, by pid.
    by_pid: BTreeMap<i32, Vec<Lock>>,
    /// File id -> the pid that takes its lease: that process alone sets the owner of the
    /// description (F_SETLEASE changes it).
    leased: BTreeMap<u32, i32>,
}

impl FileLocks {
    /// The locks process `pid` takes.
    pub(crate) fn of(&self, pid: i32) -> &[Lock] {
        self.by_pid.get(&pid).map_or(&[][..], Vec::as_slice)
    }

    /// The file ids with a lease that a process other than `pid` takes: `pid` leaves
    /// their owner to that process.
    pub(crate) fn owner_set_elsewhere(&self, pid: i32) -> BTreeSet<u32> {
        self.leased
            .iter()
            .filter(|(_, &p)| p != pid)
            .map(|(&id, _)| id)
            .collect()
    }
}

/// The locks of each process, read and checked against the tree: every lock's owner is a
/// restored process and its fd a regular file of that process.
pub(crate) fn load(dir: &Path, enabled: bool, tree: &Tree) -> Result<FileLocks, RestoreError> {
    let path = dir.join(IMAGE);
    if !path.exists() {
        return Ok(FileLocks::default());
    }
    let bytes = read_file(&path)?;
    let label = path.display().to_string();
    let entries: Vec<File_lock_entry> = ImageReader::new(&label, &bytes, "FILE_LOCKS")?.all()?;
    if entries.is_empty() {
        return Ok(FileLocks::default());
    }
    if !enabled {
        return Err(RestoreError::FileLocksNeedOption {
            count: entries.len(),
        });
    }
    let mut out = FileLocks::default();
    // Path -> (pid, breaking) of each lease on it.
    let mut leases: BTreeMap<String, Vec<(i32, i32, bool)>> = BTreeMap::new();
    for e in entries {
        let (how, id, path) = check(&e, tree)?;
        if e.flag() == FL_LEASE {
            out.leased.insert(id, e.pid());
            let breaking = matches!(how, How::BreakingLease { .. });
            leases
                .entry(path)
                .or_default()
                .push((e.pid(), e.fd(), breaking));
        }
        out.by_pid
            .entry(e.pid())
            .or_default()
            .push(Lock { entry: e, how });
    }
    for (path, on) in &leases {
        for &(pid, fd, _) in on.iter().filter(|l| l.2) {
            if let Some(&(other, ..)) = on.iter().find(|l| l.0 != pid) {
                return Err(unsupported(format!(
                    "{IMAGE}: lock of pid {pid} on fd {fd} ({path}): a lease being broken \
                     on a file that process {other} also holds a lease on"
                )));
            }
        }
    }
    Ok(out)
}

/// Checks entry `e`: how to take it, its file id and the path of its file.
fn check(e: &File_lock_entry, tree: &Tree) -> Result<(How, u32, String), RestoreError> {
    let what = |s: &str| {
        invalid(
            IMAGE,
            format!("lock of pid {} on fd {}: {s}", e.pid(), e.fd()),
        )
    };
    let p = tree
        .procs
        .iter()
        .find(|p| p.pid == e.pid())
        .ok_or_else(|| what("no such process in the tree"))?;
    let fi = p
        .fdinfo
        .iter()
        .find(|f| i64::from(f.fd()) == i64::from(e.fd()))
        .ok_or_else(|| what("the fd is not open"))?;
    let file = p.files.get(&fi.id());
    let reg = match file.and_then(|f| (f.type_() == Fd_types::REG).then_some(f.reg.as_ref())) {
        Some(Some(reg)) => reg,
        _ => return Err(what("the fd is not a regular file")),
    };
    let t = e.type_() as i32;
    let rd_or_wr = |t: i32| {
        if t == libc::F_RDLCK || t == libc::F_WRLCK {
            Ok(t)
        } else {
            Err(what(&format!("lock type {t}")))
        }
    };
    let how = match e.flag() {
        FL_FLOCK => match rd_or_wr(t)? {
            libc::F_RDLCK => How::Flock(libc::LOCK_SH),
            _ => How::Flock(libc::LOCK_EX),
        },
        FL_POSIX => How::Posix,
        FL_OFD => How::Ofd,
        FL_LEASE if e.type_() & LEASE_BREAKING == 0 => How::Lease(rd_or_wr(t)?),
        FL_LEASE => {
            let read_only = reg.flags() as i32 & libc::O_ACCMODE == libc::O_RDONLY;
            match (e.type_() & !LEASE_BREAKING) as i32 {
                // A downgrade: only a write lease is downgraded, by a reader.
                libc::F_RDLCK => How::BreakingLease {
                    hold: libc::F_WRLCK,
                    open: libc::O_RDONLY,
                },
                // A removal, by a writer: of a read lease or a write lease.
                libc::F_UNLCK => How::BreakingLease {
                    hold: if read_only {
                        libc::F_RDLCK
                    } else {
                        libc::F_WRLCK
                    },
                    open: libc::O_WRONLY,
                },
                t => return Err(what(&format!("a lease being broken to type {t}"))),
            }
        }
        f => {
            return Err(unsupported(format!(
                "{IMAGE}: lock of pid {} on fd {}: file locks of kind {f:#x}",
                e.pid(),
                e.fd()
            )))
        }
    };
    if matches!(how, How::Posix | How::Ofd) {
        rd_or_wr(t)?;
    }
    if e.start() < 0 || e.len() < 0 {
        return Err(what(&format!("range {} + {}", e.start(), e.len())));
    }
    Ok((how, fi.id(), reg.name().to_owned()))
}

/// The `struct flock` (x86-64 layout) for F_SETLK / F_OFD_SETLK of `e` (l_pid 0, as
/// F_OFD_SETLK requires).
fn flock_struct(e: &File_lock_entry) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..2].copy_from_slice(&(e.type_() as i16).to_ne_bytes());
    b[2..4].copy_from_slice(&(libc::SEEK_SET as i16).to_ne_bytes());
    b[8..16].copy_from_slice(&e.start().to_ne_bytes());
    b[16..24].copy_from_slice(&e.len().to_ne_bytes());
    b
}

/// Takes the locks `locks` (all owned by the process of `r`) again, then breaks again
/// the leases that were being broken.
pub(crate) fn take(r: &mut Remote<'_>, locks: &[Lock]) -> Result<(), RestoreError> {
    for l in locks {
        let e = &l.entry;
        let fd = e.fd() as u64;
        match l.how {
            How::Flock(op) => {
                r.call(
                    libc::SYS_flock,
                    [fd, (op | libc::LOCK_NB) as u64, 0, 0, 0, 0],
                    || format!("flock of fd {fd}"),
                )?;
            }
            How::Posix | How::Ofd => {
                let (cmd, name) = if l.how == How::Posix {
                    (libc::F_SETLK, "F_SETLK")
                } else {
                    (libc::F_OFD_SETLK, "F_OFD_SETLK")
                };
                let arg = r.put(0, &flock_struct(e))?;
                r.call(libc::SYS_fcntl, [fd, cmd as u64, arg, 0, 0, 0], || {
                    format!(
                        "fcntl({name}) of fd {fd}, {} bytes at {}",
                        e.len(),
                        e.start()
                    )
                })?;
            }
            How::Lease(t) | How::BreakingLease { hold: t, .. } => {
                r.call(
                    libc::SYS_fcntl,
                    [fd, libc::F_SETLEASE as u64, t as u64, 0, 0, 0],
                    || format!("fcntl(F_SETLEASE, {t}) of fd {fd}"),
                )?;
                r.call(libc::SYS_fcntl, [fd, F_SETOWN, 0, 0, 0, 0], || {
                    format!("fcntl(F_SETOWN, 0) of fd {fd}, after its lease")
                })?;
            }
        }
        debug!(
            fd,
            flag = e.flag(),
            type_ = e.type_(),
            start = e.start(),
            len = e.len(),
            "file lock taken"
        );
    }
    for l in locks {
        if let How::BreakingLease { open, .. } = l.how {
            break_lease(r.pid, l.entry.fd(), open)?;
        }
    }
    Ok(())
}

/// Breaks the lease on fd `fd` of process `pid` by an open of its file with access mode
/// `mode`, non-blocking: the open must be refused with EWOULDBLOCK.
fn break_lease(pid: i32, fd: i32, mode: i32) -> Result<(), RestoreError> {
    let path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
    let err = |what: &'static str, source: Option<io::Error>| RestoreError::LeaseBreak {
        pid,
        fd,
        path: path.clone(),
        what,
        source,
    };
    let mut o = OpenOptions::new();
    if mode == libc::O_RDONLY {
        o.read(true);
    } else {
        o.write(true);
    }
    match o
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
    {
        Ok(_) => Err(err("the open was granted: no lease to break", None)),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {
            debug!(fd, mode, "lease broken again");
            Ok(())
        }
        Err(e) => Err(err("the open failed otherwise", Some(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flock_struct_write_lock_has_type_range_and_seek_set() {
        let e = File_lock_entry {
            flag: Some(FL_POSIX),
            type_: Some(libc::F_WRLCK as u32),
            pid: Some(1),
            fd: Some(3),
            start: Some(100),
            len: Some(50),
            ..Default::default()
        };
        let b = flock_struct(&e);
        assert_eq!(i16::from_ne_bytes([b[0], b[1]]), libc::F_WRLCK as i16);
        assert_eq!(i16::from_ne_bytes([b[2], b[3]]), libc::SEEK_SET as i16);
        assert_eq!(i64::from_ne_bytes(b[8..16].try_into().unwrap()), 100);
        assert_eq!(i64::from_ne_bytes(b[16..24].try_into().unwrap()), 50);
        assert_eq!(
            i32::from_ne_bytes(b[24..28].try_into().unwrap()),
            0,
            "l_pid"
        );
    }

    #[test]
    fn flock_struct_layout_matches_libc_size() {
        assert_eq!(std::mem::size_of::<libc::flock>(), 32);
    }

    fn lease(pid: i32, fd: i32, type_: u32) -> File_lock_entry {
        File_lock_entry {
            flag: Some(FL_LEASE),
            type_: Some(type_),
            pid: Some(pid),
            fd: Some(fd),
            start: Some(0),
            len: Some(0),
            ..Default::default()
        }
    }

    /// The "tree" reference set (72000 and its children 72001, 72002 share /dev/null,
    /// read-write, at fd 0) with `locks` as its filelocks.img, loaded.
    fn load_tree_with(
        test: &str,
        locks: &[File_lock_entry],
    ) -> Option<Result<FileLocks, RestoreError>> {
        let t = crate::testsets::copy("tree", test)?;
        let mut w = crs_images::codec::ImageWriter::new(IMAGE, "FILE_LOCKS");
        for e in locks {
            w.push(e).unwrap();
        }
        std::fs::write(t.path().join(IMAGE), w.into_bytes()).unwrap();
        let tree = crate::images::Images::load_tree(t.path()).unwrap();
        Some(load(t.path(), true, &tree))
    }

    #[test]
    fn load_breaking_leases_are_taken_as_before_the_break() {
        let Some(l) = load_tree_with(
            "load_breaking_leases_are_taken_as_before_the_break",
            &[
                lease(72000, 0, LEASE_BREAKING | libc::F_RDLCK as u32),
                lease(72000, 1, LEASE_BREAKING | libc::F_UNLCK as u32),
            ],
        ) else {
            return;
        };
        let l = l.unwrap();
        let hows: Vec<How> = l.of(72000).iter().map(|l| l.how).collect();
        // A downgrade was of a write lease; a removal on a read-write description too.
        let broken_by = |open| How::BreakingLease {
            hold: libc::F_WRLCK,
            open,
        };
        assert_eq!(hows, [broken_by(libc::O_RDONLY), broken_by(libc::O_WRONLY)]);
        // File id 3 (/dev/null) is leased by 72000: the others leave its owner to it.
        assert!(!l.owner_set_elsewhere(72000).contains(&3));
        assert!(l.owner_set_elsewhere(72001).contains(&3));
    }

    #[test]
    fn load_active_lease_is_taken_with_its_type() {
        let Some(l) = load_tree_with(
            "load_active_lease_is_taken_with_its_type",
            &[lease(72001, 1, libc::F_WRLCK as u32)],
        ) else {
            return;
        };
        let l = l.unwrap();
        assert_eq!(l.of(72001)[0].how, How::Lease(libc::F_WRLCK));
        assert!(l.of(72000).is_empty());
    }

    #[test]
    fn load_breaking_lease_on_a_file_another_process_leases_is_refused() {
        let Some(l) = load_tree_with(
            "load_breaking_lease_on_a_file_another_process_leases_is_refused",
            &[
                lease(72000, 0, LEASE_BREAKING | libc::F_UNLCK as u32),
                lease(72001, 0, LEASE_BREAKING | libc::F_UNLCK as u32),
            ],
        ) else {
            return;
        };
        let e = l.unwrap_err().to_string();
        assert!(e.contains("pid 72000 on fd 0"), "{e}");
        assert!(e.contains("a lease being broken"), "{e}");
        assert!(e.contains("process 72001"), "{e}");
    }

    #[test]
    fn load_lease_breaking_to_a_write_lease_is_invalid() {
        let Some(l) = load_tree_with(
            "load_lease_breaking_to_a_write_lease_is_invalid",
            &[lease(72000, 0, LEASE_BREAKING | libc::F_WRLCK as u32)],
        ) else {
            return;
        };
        let e = l.unwrap_err().to_string();
        assert!(e.contains("a lease being broken to type 1"), "{e}");
    }

    #[test]
    fn f_setown_is_the_x86_64_value() {
        assert_eq!(F_SETOWN, libc::F_SETOWN as u64);
    }
}
