//! File locks (`--file-locks`): filelocks.img's flock and POSIX locks are taken again by
//! syscalls injected into each owner once its files are at their fds and before its
//! credentials change: flock(fd, LOCK_SH|LOCK_EX | LOCK_NB) or fcntl(fd, F_SETLK) over
//! the saved byte range. Non-blocking: a lock someone else took meanwhile is an error,
//! not a hang. Without `--file-locks` an image that holds locks is refused.

use std::collections::BTreeMap;
use std::path::Path;

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::fdinfo::Fd_types;
use crs_images::pb::file_lock::File_lock_entry;
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::images::Tree;
use crate::remote::Remote;
use crate::RestoreError;

const IMAGE: &str = "filelocks.img";
/// CRIU's `FL_POSIX` and `FL_FLOCK`.
const FL_POSIX: u32 = 1;
const FL_FLOCK: u32 = 2;

/// The locks of each process by pid, read and checked against the tree: every lock's
/// owner is a restored process and its fd a regular file of that process.
pub(crate) fn load(
    dir: &Path,
    enabled: bool,
    tree: &Tree,
) -> Result<BTreeMap<i32, Vec<File_lock_entry>>, RestoreError> {
    let path = dir.join(IMAGE);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    let bytes = read_file(&path)?;
    let label = path.display().to_string();
    let entries: Vec<File_lock_entry> = ImageReader::new(&label, &bytes, "FILE_LOCKS")?.all()?;
    if entries.is_empty() {
        return Ok(BTreeMap::new());
    }
    if !enabled {
        return Err(RestoreError::FileLocksNeedOption {
            count: entries.len(),
        });
    }
    let mut out: BTreeMap<i32, Vec<File_lock_entry>> = BTreeMap::new();
    for e in entries {
        check(&e, tree)?;
        out.entry(e.pid()).or_default().push(e);
    }
    Ok(out)
}

fn check(e: &File_lock_entry, tree: &Tree) -> Result<(), RestoreError> {
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
    if p.files.get(&fi.id()).map(|f| f.type_()) != Some(Fd_types::REG) {
        return Err(what("the fd is not a regular file"));
    }
    match e.flag() {
        FL_FLOCK | FL_POSIX => {}
        f => {
            return Err(unsupported(format!(
                "{IMAGE}: lock of pid {} on fd {}: file locks of kind {f:#x}",
                e.pid(),
                e.fd()
            )))
        }
    }
    let t = e.type_() as i32;
    if t != libc::F_RDLCK && t != libc::F_WRLCK {
        return Err(what(&format!("lock type {t}")));
    }
    if e.start() < 0 || e.len() < 0 {
        return Err(what(&format!("range {} + {}", e.start(), e.len())));
    }
    Ok(())
}

/// The `struct flock` (x86-64 layout) for F_SETLK of `e`.
fn flock_struct(e: &File_lock_entry) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0..2].copy_from_slice(&(e.type_() as i16).to_ne_bytes());
    b[2..4].copy_from_slice(&(libc::SEEK_SET as i16).to_ne_bytes());
    b[8..16].copy_from_slice(&e.start().to_ne_bytes());
    b[16..24].copy_from_slice(&e.len().to_ne_bytes());
    b
}

/// Takes the locks `locks` (all owned by the process of `r`) again.
pub(crate) fn take(r: &mut Remote<'_>, locks: &[File_lock_entry]) -> Result<(), RestoreError> {
    for e in locks {
        let fd = e.fd() as u64;
        if e.flag() == FL_FLOCK {
            let op = if e.type_() as i32 == libc::F_RDLCK {
                libc::LOCK_SH
            } else {
                libc::LOCK_EX
            };
            r.call(
                libc::SYS_flock,
                [fd, (op | libc::LOCK_NB) as u64, 0, 0, 0, 0],
                || format!("flock of fd {fd}"),
            )?;
        } else {
            let arg = r.put(0, &flock_struct(e))?;
            r.call(
                libc::SYS_fcntl,
                [fd, libc::F_SETLK as u64, arg, 0, 0, 0],
                || {
                    format!(
                        "fcntl(F_SETLK) of fd {fd}, {} bytes at {}",
                        e.len(),
                        e.start()
                    )
                },
            )?;
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
    Ok(())
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
    }

    #[test]
    fn flock_struct_layout_matches_libc_size() {
        assert_eq!(std::mem::size_of::<libc::flock>(), 32);
    }
}
