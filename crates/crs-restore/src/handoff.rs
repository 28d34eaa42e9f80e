//! Files created in crs's own process and handed to a task being restored.
//!
//! Some objects are easier (or only possible) to build from crs: the two ends of a socket
//! pair held by two processes, a memfd filled from the images, an object whose one open
//! description several processes share. crs creates the file, and the task takes it with
//! two injected syscalls: `pidfd_open(crs)` once, then `pidfd_getfd(pidfd, crs_fd)` per
//! file, which yields the same open description (offset, flags, socket state), not a new
//! open. The task is still root with crs's credentials at that point (credentials are
//! restored last), so the ptrace-access check of pidfd_getfd passes.
//!
//! The files go over in groups, three batches of injected syscalls per group (see
//! `place_group`): one stop of the task per batch rather than one per syscall. 2000 sockets
//! took 145 ms one syscall at a time (three or four per file), a few ms batched.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use tracing::debug;

use crate::images::Images;
use crate::remote::{Batch, Remote};
use crate::RestoreError;

/// The open descriptions crs created for the whole tree, by file id (files.img). Each task
/// gets, at its fds, every one of them its fdinfo names (see [`install_held`]).
#[derive(Default)]
pub(crate) struct CrsFiles {
    pub by_id: BTreeMap<u32, OwnedFd>,
}

impl CrsFiles {
    /// Makes, with `make`, every file of type `kind` the tree holds (in the tree's network
    /// namespace when it has one: `net_of`, the process to take it from), for the
    /// holders to take: the sockets made one by one in crs.
    pub fn make_held(
        &mut self,
        tree: &crate::images::Tree,
        kind: crs_images::pb::fdinfo::Fd_types,
        net_of: Option<crs_sys::Tid>,
        make: impl Fn(u32, &crs_images::pb::fdinfo::File_entry) -> Result<OwnedFd, crate::RestoreError>
            + Send
            + Sync,
    ) -> Result<(), crate::RestoreError> {
        let Some(first) = tree.procs.first() else {
            return Ok(());
        };
        let held = tree.held(kind);
        if held.is_empty() {
            return Ok(());
        }
        let make_all = || -> Result<Vec<(u32, OwnedFd)>, crate::RestoreError> {
            held.iter()
                .map(|&id| Ok((id, make(id, &first.files[&id])?)))
                .collect()
        };
        let made = match net_of {
            Some(pid) => crate::ns::within(pid, &["net"], make_all)?,
            None => make_all()?,
        };
        self.by_id.extend(made);
        Ok(())
    }

    /// Whether file `id` is created by crs (the task must not create it itself).
    pub fn has(&self, id: u32) -> bool {
        self.by_id.contains_key(&id)
    }
}

/// Places every fd of the task whose file crs created (`files`) at its number.
pub(crate) fn install_held(
    r: &mut Remote<'_>,
    images: &Images,
    files: &CrsFiles,
) -> Result<(), RestoreError> {
    let list: Vec<Handoff<'_>> = images
        .fdinfo
        .iter()
        .filter_map(|e| {
            let f = files.by_id.get(&e.id())?;
            Some(Handoff {
                file: f.as_fd(),
                fd: e.fd() as i32,
                cloexec: e.flags() & libc::FD_CLOEXEC as u32 != 0,
                what: format!("file {} ({:?})", e.id(), e.type_()),
            })
        })
        .collect();
    install(r, &list)
}

/// One file of crs to place in the task.
pub(crate) struct Handoff<'f> {
    /// crs's descriptor of the file.
    pub file: BorrowedFd<'f>,
    /// The fd number it gets in the task.
    pub fd: i32,
    /// FD_CLOEXEC on the task's fd.
    pub cloexec: bool,
    /// What it is, for errors ("unix socket 17").
    pub what: String,
}

/// Places every file of `files` in the task at its fd number (replacing whatever is
/// there). The task's fds other than the targets are untouched; the pidfd it uses lives
/// above every target and is closed before returning.
pub(crate) fn install(r: &mut Remote<'_>, files: &[Handoff<'_>]) -> Result<(), RestoreError> {
    let Some(max_fd) = files.iter().map(|h| h.fd).max() else {
        return Ok(());
    };
    let crs = std::process::id() as u64;
    let first = r.call(libc::SYS_pidfd_open, [crs, 0, 0, 0, 0, 0], || {
        format!("opening a pidfd of crs (pid {crs})")
    })?;
    // Out of the way of every target fd: the first free fd may be one of them.
    let above = max_fd as u64 + 1;
    let pidfd = r.call(
        libc::SYS_fcntl,
        [first as u64, libc::F_DUPFD_CLOEXEC as u64, above, 0, 0, 0],
        || format!("moving the pidfd of crs above fd {max_fd}"),
    );
    r.call(libc::SYS_close, [first as u64, 0, 0, 0, 0, 0], || {
        format!("closing fd {first} (pidfd of crs)")
    })?;
    let pidfd = pidfd? as u64;
    let placed = files
        .chunks(GROUP)
        .try_for_each(|group| place_group(r, pidfd, above, group));
    let closed = r.call(libc::SYS_close, [pidfd, 0, 0, 0, 0, 0], || {
        format!("closing fd {pidfd} (pidfd of crs)")
    });
    placed?;
    closed?;
    debug!(files = files.len(), "files handed over from crs");
    Ok(())
}

/// Files placed per group: each of its batches then fits one stop of the task (64 calls),
/// and the task holds at most this many extra fds at a time.
const GROUP: usize = 32;

/// Places `group` in three batches: each file taken from crs (`pidfd_getfd` gives the
/// lowest free fd, which may be where another file of the group goes), then moved above
/// every target (`above`), then put at its number with its FD_CLOEXEC.
fn place_group(
    r: &mut Remote<'_>,
    pidfd: u64,
    above: u64,
    group: &[Handoff<'_>],
) -> Result<(), RestoreError> {
    let mut take = Batch::default();
    for h in group {
        let src = h.file.as_raw_fd() as u64;
        take.push(libc::SYS_pidfd_getfd, [pidfd, src, 0, 0, 0, 0], || {
            format!("taking {} from crs", h.what)
        });
    }
    let got = r.run(take)?;
    let mut lift = Batch::default();
    for (h, &g) in group.iter().zip(&got) {
        let g = g as u64;
        lift.push(
            libc::SYS_fcntl,
            [g, libc::F_DUPFD_CLOEXEC as u64, above, 0, 0, 0],
            || format!("moving {} above fd {above}", h.what),
        );
        lift.push(libc::SYS_close, [g, 0, 0, 0, 0, 0], move || {
            format!("closing the temporary fd {g}")
        });
    }
    let lifted = r.run(lift)?;
    let mut put = Batch::default();
    for (h, pair) in group.iter().zip(lifted.chunks(2)) {
        let high = pair[0] as u64;
        let fd = h.fd as u64;
        let fl = if h.cloexec { libc::O_CLOEXEC } else { 0 };
        put.push(libc::SYS_dup3, [high, fd, fl as u64, 0, 0, 0], move || {
            format!("placing {} at fd {fd}", h.what)
        });
        put.push(libc::SYS_close, [high, 0, 0, 0, 0, 0], move || {
            format!("closing the temporary fd {high}")
        });
    }
    r.run(put)?;
    Ok(())
}
