//! Regular files: checking they are what was dumped, and the plan of fds the new task
//! opens for itself before crs takes it over.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::PathBuf;

use crs_sys::restore::{ChildPlan, PlannedFile};

use crate::images::Images;
use crate::RestoreError;

/// Open flags that must not be replayed.
const STRIP: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC;

fn cstring(s: &str) -> Result<CString, RestoreError> {
    CString::new(s).map_err(|_| RestoreError::Invalid {
        image: "files.img".into(),
        what: format!("path {s:?} contains a NUL byte"),
    })
}

/// Checks that every regular file the images name and recorded a size for still has it
/// (like CRIU, a changed file is refused).
pub(crate) fn check_sizes(images: &Images) -> Result<(), RestoreError> {
    let mut ids: Vec<u32> = images.fdinfo.iter().map(|e| e.id()).collect();
    ids.push(images.mm.exe_file_id());
    ids.extend(images.vmas.iter().filter_map(|v| v.file_id));
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let reg = images.reg(id);
        if !reg.has_size() {
            continue;
        }
        let path = PathBuf::from(reg.name());
        let md = std::fs::metadata(&path).map_err(|source| RestoreError::Stat {
            path: path.clone(),
            source,
        })?;
        if md.len() != reg.size() {
            return Err(RestoreError::FileChanged {
                path,
                expected: reg.size(),
                found: md.len(),
            });
        }
    }
    Ok(())
}

/// What the new task does to itself: session, umask, cwd/root, files at their fds.
pub(crate) fn child_plan(
    images: &Images,
    shell_job: bool,
    trampoline: u64,
    trampoline_len: usize,
) -> Result<ChildPlan, RestoreError> {
    let pid = images.pstree.pid();
    let new_session = images.pstree.sid() == pid;
    if !new_session && !shell_job {
        return Err(RestoreError::Unsupported {
            what: format!(
                "restoring a process of another session (sid {}) without --shell-job",
                images.pstree.sid()
            ),
        });
    }
    let mut by_id: BTreeMap<u32, PlannedFile> = BTreeMap::new();
    for e in &images.fdinfo {
        let reg = images.reg(e.id());
        let cloexec = e.flags() & libc::FD_CLOEXEC as u32 != 0;
        if let Some(f) = by_id.get_mut(&e.id()) {
            f.fds.push((e.fd() as i32, cloexec));
            continue;
        }
        by_id.insert(
            e.id(),
            PlannedFile {
                path: cstring(reg.name())?,
                flags: (reg.flags() as i32 & !STRIP) | libc::O_LARGEFILE,
                pos: reg.pos(),
                fds: vec![(e.fd() as i32, cloexec)],
            },
        );
    }
    let root = images.reg(images.fs.root_id()).name();
    Ok(ChildPlan {
        new_session,
        own_pgrp: images.pstree.pgid() == pid,
        umask: images.fs.umask.unwrap_or(0o022),
        cwd: cstring(images.reg(images.fs.cwd_id()).name())?,
        root: if root == "/" {
            None
        } else {
            Some(cstring(root)?)
        },
        files: by_id.into_values().collect(),
        trampoline,
        trampoline_len,
    })
}
