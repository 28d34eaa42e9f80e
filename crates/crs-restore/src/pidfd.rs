//! pidfds (PIDFD file entries), made in crs once every process and zombie of the tree
//! exists, and handed to the tasks that hold them like every file crs makes (see
//! `handoff`): one open description per file id, so a pidfd shared by several processes
//! stays one description.
//!
//! - A pidfd of a process of the tree (`nspid` its pid; itself included, and zombies) is
//!   `pidfd_open(nspid, flags)` from crs: the restored process has the same pid, and crs
//!   is in the tree's pid namespace.
//! - A pidfd of a process that had been reaped (`nspid` -1) must be a pidfd of a process
//!   that is gone: crs clones a helper that exits at once, opens the pidfds on it while it
//!   is a zombie, and reaps it (`crs_sys::pidfd::dead_pidfds`). The pidfds of one dead
//!   process (same `ino`) share one helper, so they still refer to one process. Only the
//!   fact of the exit is kept: PIDFD_GET_INFO with PIDFD_INFO_EXIT (Linux 6.15+) reports
//!   the helper's wait status (exit 0), not the dead process's, which CRIU's image does not
//!   record.
//!
//! PIDFD_NONBLOCK and PIDFD_THREAD are pidfd_open flags; O_ASYNC and the owner are set
//! with the other files' (`fown`). A pidfd of a pid that is no process of the tree is
//! refused before anything is created.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;

use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::pidfd::Pidfd_entry;
use crs_sys::pidfd::{PIDFD_NONBLOCK, PIDFD_THREAD};
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::handoff::CrsFiles;
use crate::images::Tree;
use crate::RestoreError;

/// The flags of a PIDFD entry crs restores: pidfd_open's, and O_ASYNC (set with the
/// owner, see `fown`). The access mode is ignored: a pidfd is always O_RDWR.
const KNOWN_FLAGS: u32 = PIDFD_NONBLOCK | PIDFD_THREAD | libc::O_ASYNC as u32;

/// The PIDFD entry of file `f`.
fn entry(f: &File_entry) -> Result<&Pidfd_entry, RestoreError> {
    f.pidfd.as_ref().ok_or_else(|| {
        invalid(
            "files.img",
            format!("file id {} has no pidfd entry", f.id()),
        )
    })
}

/// Checks the PIDFD file entry `f` on its own: flags crs can give back, a pid or -1.
pub(crate) fn check(f: &File_entry) -> Result<(), RestoreError> {
    let e = entry(f)?;
    let extra = e.flags() & !KNOWN_FLAGS & !(libc::O_ACCMODE as u32);
    if extra != 0 {
        return Err(unsupported(format!(
            "files.img: pidfd {} with flags {:#o} (beyond PIDFD_NONBLOCK, PIDFD_THREAD, O_ASYNC)",
            f.id(),
            e.flags()
        )));
    }
    if e.nspid() == 0 || e.nspid() < -1 {
        return Err(invalid(
            "files.img",
            format!("pidfd {} refers to pid {}", f.id(), e.nspid()),
        ));
    }
    Ok(())
}

/// What crs makes for the pidfds of a tree.
#[derive(Debug, Default, PartialEq, Eq)]
struct Plan {
    /// File id -> (pid of the tree, pidfd_open flags).
    live: BTreeMap<u32, (i32, u32)>,
    /// Dead process (pidfs inode) -> its pidfds: (file id, pidfd_open flags).
    dead: BTreeMap<u32, Vec<(u32, u32)>>,
}

/// The pidfds every process of `tree` holds, checked: a pidfd of a pid must name a process
/// or zombie of the tree.
fn plan(tree: &Tree) -> Result<Plan, RestoreError> {
    let pids: std::collections::BTreeSet<i32> = tree
        .procs
        .iter()
        .map(|p| p.pid)
        .chain(tree.zombies.iter().map(|z| z.pid))
        .collect();
    let mut out = Plan::default();
    for p in &tree.procs {
        for e in p.fdinfo.iter().filter(|e| e.type_() == Fd_types::PIDFD) {
            let id = e.id();
            let pe = entry(&p.files[&id])?;
            let flags = pe.flags() & (PIDFD_NONBLOCK | PIDFD_THREAD);
            match pe.nspid() {
                -1 => {
                    let list = out.dead.entry(pe.ino()).or_default();
                    if !list.iter().any(|&(other, _)| other == id) {
                        list.push((id, flags));
                    }
                }
                pid if pids.contains(&pid) => {
                    out.live.insert(id, (pid, flags));
                }
                pid => {
                    return Err(invalid(
                        &format!("fdinfo-{}.img", p.files_id),
                        format!(
                            "fd {} of pid {} is pidfd {id} of pid {pid}, which is no process of \
                             the restored tree",
                            e.fd(),
                            p.pid
                        ),
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// Checks, before anything is created, that every pidfd of the tree can be made.
pub(crate) fn check_tree(tree: &Tree) -> Result<(), RestoreError> {
    plan(tree).map(drop)
}

/// Makes every pidfd of the tree in crs and puts it in `out` by file id, for the tasks to
/// take. Every process and zombie of the tree must exist (the tree is spawned).
pub(crate) fn create_in_crs(tree: &Tree, out: &mut CrsFiles) -> Result<(), RestoreError> {
    let plan = plan(tree)?;
    let mut made: BTreeMap<u32, OwnedFd> = BTreeMap::new();
    for (&id, &(pid, flags)) in &plan.live {
        // The target as crs knows it.
        let pid = tree.host_of(pid).unwrap_or(pid);
        let fd = crs_sys::pidfd::pidfd_open(pid, flags).map_err(|source| RestoreError::Pidfd {
            id,
            what: format!("pidfd_open of pid {pid} with flags {flags:#o}"),
            source,
        })?;
        made.insert(id, fd);
    }
    for (&ino, list) in &plan.dead {
        let flags: Vec<u32> = list.iter().map(|&(_, f)| f).collect();
        let fds = crs_sys::pidfd::dead_pidfds(&flags).map_err(|source| RestoreError::Pidfd {
            id: list[0].0,
            what: format!("a pidfd of a process that has exited (inode {ino}), from a helper"),
            source,
        })?;
        made.extend(list.iter().map(|&(id, _)| id).zip(fds));
    }
    debug!(
        live = plan.live.len(),
        dead = plan.dead.len(),
        "pidfds made by crs"
    );
    out.by_id.extend(made);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::{EnumOrUnknown, MessageField};

    fn pidfd(id: u32, nspid: i32, flags: u32) -> File_entry {
        File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::PIDFD)),
            id: Some(id),
            pidfd: MessageField::some(Pidfd_entry {
                id: Some(id),
                ino: Some(7),
                flags: Some(flags),
                nspid: Some(nspid),
                fown: MessageField::some(crs_images::pb::fown::Fown_entry {
                    uid: Some(0),
                    euid: Some(0),
                    signum: Some(0),
                    pid_type: Some(0),
                    pid: Some(0),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn check_nonblock_thread_and_dead_are_ok() {
        check(&pidfd(1, 42, PIDFD_NONBLOCK | PIDFD_THREAD)).unwrap();
        check(&pidfd(2, -1, 0)).unwrap();
        check(&pidfd(3, 42, libc::O_RDWR as u32)).unwrap();
    }

    #[test]
    fn check_unknown_flags_are_unsupported_naming_the_file() {
        let e = check(&pidfd(5, 42, libc::O_APPEND as u32)).unwrap_err();
        assert!(matches!(e, RestoreError::Unsupported { .. }), "{e}");
        assert!(e.to_string().contains("pidfd 5"), "{e}");
    }

    #[test]
    fn check_pid_zero_or_below_minus_one_is_invalid() {
        for pid in [0, -2] {
            let e = check(&pidfd(4, pid, 0)).unwrap_err();
            assert!(
                e.to_string().contains(&format!("pid {pid}")),
                "{e} (pid {pid})"
            );
        }
    }

    #[test]
    fn check_without_pidfd_entry_is_invalid() {
        let mut f = pidfd(6, 1, 0);
        f.pidfd = MessageField::none();
        let e = check(&f).unwrap_err();
        assert!(
            e.to_string().contains("file id 6 has no pidfd entry"),
            "{e}"
        );
    }

    /// A copy of CRIU's `tree` set (root 72000 with children 72001 and 72002, thread
    /// 72003 of one of them) whose root holds fds 50.. on pidfds (file ids 100..) of
    /// `(nspid, flags, ino)`.
    fn tree_with_pidfds(test: &str, pidfds: &[(i32, u32, u32)]) -> Option<tempfile::TempDir> {
        use crs_images::pb::fdinfo::Fdinfo_entry;
        let t = crate::testsets::copy("tree", test)?;
        let ids: Vec<u32> = (100..).take(pidfds.len()).collect();
        crate::testsets::rewrite(t.path(), "files.img", "FILES", |v: &mut Vec<File_entry>| {
            for (&id, &(nspid, flags, ino)) in ids.iter().zip(pidfds) {
                let mut f = pidfd(id, nspid, flags);
                f.pidfd.as_mut().unwrap().ino = Some(ino);
                v.push(f);
            }
        });
        crate::testsets::rewrite(
            t.path(),
            "fdinfo-2.img",
            "FDINFO",
            |v: &mut Vec<Fdinfo_entry>| {
                for (k, &id) in ids.iter().enumerate() {
                    v.push(Fdinfo_entry {
                        id: Some(id),
                        flags: Some(libc::FD_CLOEXEC as u32),
                        type_: Some(EnumOrUnknown::new(Fd_types::PIDFD)),
                        fd: Some(50 + k as u32),
                        ..Default::default()
                    });
                }
            },
        );
        Some(t)
    }

    #[test]
    fn plan_pidfds_of_tree_processes_and_dead_ones_are_grouped_by_inode() {
        let test = "plan_pidfds_of_tree_processes_and_dead_ones_are_grouped_by_inode";
        let nb = PIDFD_NONBLOCK;
        let Some(t) = tree_with_pidfds(
            test,
            &[
                (72000, 0, 1),
                (72001, nb | libc::O_ASYNC as u32, 2),
                (-1, 0, 9),
                (-1, nb, 9),
                (-1, 0, 8),
            ],
        ) else {
            return;
        };
        let l = crate::testsets::load(t.path()).unwrap();
        let p = plan(&l.tree).unwrap();
        assert_eq!(
            p.live,
            BTreeMap::from([(100, (72000, 0)), (101, (72001, nb))])
        );
        assert_eq!(
            p.dead,
            BTreeMap::from([(8, vec![(104, 0)]), (9, vec![(102, 0), (103, nb)])])
        );
    }

    #[test]
    fn load_pidfd_of_pid_outside_the_tree_is_invalid_naming_fd_and_pid() {
        let test = "load_pidfd_of_pid_outside_the_tree_is_invalid_naming_fd_and_pid";
        // 72003 is a thread, not a process: no pidfd (without PIDFD_THREAD) can name it.
        for pid in [4_000_000, 72003] {
            let Some(t) = tree_with_pidfds(test, &[(72001, 0, 1), (pid, 0, 2)]) else {
                return;
            };
            let err = crate::testsets::load_err(t.path());
            assert!(
                err.starts_with(&format!(
                    "fdinfo-2.img: fd 51 of pid 72000 is pidfd 101 of pid {pid}, which is no \
                     process of the restored tree"
                )),
                "{err}"
            );
        }
    }
}
