//! pidfds (`anon_inode:[pidfd]`, on pidfs since Linux 6.9): saved as CRIU 4.2's PIDFD file
//! entries from `/proc/PID/fdinfo/N`: the pid the pidfd refers to (`NSpid`, -1 once the
//! process has been reaped), its pidfs inode (which tells pidfds of one dead process apart
//! from another's), its status flags (PIDFD_NONBLOCK is O_NONBLOCK, PIDFD_THREAD is
//! O_EXCL; O_RDWR and O_CLOEXEC are dropped, as CRIU does) and its owner.
//!
//! A pidfd can be restored only if its process will exist again: a process or zombie of
//! the dumped tree (restored with the same pid), or one that is gone (`Pid: -1`, restored
//! as a pidfd of a helper that has exited). Anything else is refused by pid. A pidfd of a
//! thread that is not its process's leader (PIDFD_THREAD) is refused too: crs makes the
//! pidfds before the restored processes have their other threads. One open description
//! may be shared by several processes (crs makes it once and hands it to each).
//!
//! A child module of `files`: the file ids, the shared-description lookup and files.img
//! are the file table's.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use crs_compel::{SeizedTree, Tid};
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::pidfd::Pidfd_entry;
use crs_proc::FdInfo;
use protobuf::{EnumOrUnknown, MessageField};
use tracing::debug;

use super::{FdEntry, FileTable};
use crate::error::{compel_err, DumpError, Result};

/// The fd link of a pidfd.
pub(crate) const LINK: &str = "anon_inode:[pidfd]";

/// Where the process a pidfd refers to is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// Reaped (`Pid: -1`).
    Dead,
    /// A live process or a zombie of the dumped tree.
    InTree,
    /// A thread of process `leader` of the tree, not its leader.
    Thread { leader: Tid },
    /// Not in the dumped tree.
    Outside,
}

/// Where pid `target` (from a pidfd's `Pid:` line) is, in the held tree.
fn locate(tree: &SeizedTree, target: i32) -> Target {
    if target == -1 {
        return Target::Dead;
    }
    if tree.process(target).is_some() || tree.zombies().any(|z| z == target) {
        return Target::InTree;
    }
    match tree.pid_of(target) {
        Ok(leader) => Target::Thread { leader },
        Err(_) => Target::Outside,
    }
}

/// The flags a PIDFD entry records: the file's status flags without the access mode
/// (always O_RDWR) and O_CLOEXEC (the fd's, in fdinfo-N.img).
fn entry_flags(fdinfo_flags: u32) -> u32 {
    fdinfo_flags & !((libc::O_CLOEXEC | libc::O_ACCMODE) as u32)
}

impl FileTable {
    /// Dumps pidfd `fd` of process `pid` (its fdinfo `info`): its PIDFD file entry the
    /// first time its open description is seen (in this process or any other).
    pub(super) fn pidfd(
        &mut self,
        tree: &SeizedTree,
        pid: Tid,
        fd: i32,
        info: &FdInfo,
    ) -> Result<FdEntry> {
        let pi = info
            .pidfd
            .as_ref()
            .ok_or_else(|| DumpError::UnsupportedFd {
                pid,
                fd,
                link: LINK.into(),
                why: "a pidfd whose fdinfo has no Pid: line",
            })?;
        let target = pi.pid;
        match locate(tree, target) {
            Target::Dead | Target::InTree => {}
            Target::Thread { leader } => {
                return Err(DumpError::PidfdOfThread {
                    pid,
                    fd,
                    tid: target,
                    leader,
                })
            }
            Target::Outside => return Err(DumpError::PidfdOutsideTree { pid, fd, target }),
        }
        let file = File::from(
            tree.take_fd(pid, fd)
                .map_err(compel_err(pid, "taking an fd"))?,
        );
        let md = file.metadata().map_err(|source| DumpError::File {
            what: "stat of",
            path: format!("/proc/{pid}/fd/{fd}").into(),
            source,
        })?;
        let key = (md.dev(), md.ino());
        let id = match self.shared_with(pid, fd, key)? {
            Some((_, id)) => id,
            None => {
                let id = self.alloc();
                let flags = entry_flags(info.flags);
                debug!(pid, fd, id, target, flags, ino = md.ino(), "pidfd");
                self.entries.push(File_entry {
                    type_: Some(EnumOrUnknown::new(Fd_types::PIDFD)),
                    id: Some(id),
                    pidfd: MessageField::some(Pidfd_entry {
                        id: Some(id),
                        // CRIU's field is 32 bits wide (pidfs inode numbers are 64).
                        ino: Some(md.ino() as u32),
                        flags: Some(flags),
                        // The target is in the tree: its pid as the images record it.
                        nspid: Some(self.vpid(target).map_or(target, |v| v as i32)),
                        fown: MessageField::some(self.fown(&file, pid)?),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                id
            }
        };
        Ok(self.seen_fd((pid, fd), key, id, info.flags, Fd_types::PIDFD))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_flags_keep_nonblock_and_thread_and_drop_rdwr_and_cloexec() {
        // fdinfo flags of pidfd_open(pid, 0), PIDFD_NONBLOCK, PIDFD_THREAD (Linux 6.18).
        assert_eq!(entry_flags(0o2000002), 0);
        assert_eq!(entry_flags(0o2004002), libc::O_NONBLOCK as u32);
        assert_eq!(entry_flags(0o2000202), libc::O_EXCL as u32);
        assert_eq!(entry_flags(0o2020002), libc::O_ASYNC as u32);
    }
}
