//! Work done inside another process's namespaces by a thread of crs that joins them.

use std::fs::File;
use std::io;

use crate::Tid;

/// Joining a namespace failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} the {kind} namespace of process {pid}")]
pub struct NsError {
    pub pid: Tid,
    pub kind: &'static str,
    pub what: &'static str,
    #[source]
    pub source: io::Error,
}

/// The `setns` flag of a namespace kind a thread can join on its own (the others need the
/// whole process or an unshared fs).
fn thread_flag(kind: &str) -> Option<nix::sched::CloneFlags> {
    use nix::sched::CloneFlags;
    match kind {
        "uts" => Some(CloneFlags::CLONE_NEWUTS),
        "ipc" => Some(CloneFlags::CLONE_NEWIPC),
        "net" => Some(CloneFlags::CLONE_NEWNET),
        _ => None,
    }
}

/// Runs `f` on a new thread of crs that first joins process `pid`'s namespaces `kinds`
/// (`uts`, `ipc`, `net`: a thread's own, so crs's other threads stay where they are).
/// A panic in `f` is resumed on the caller's thread.
pub fn within<R: Send>(
    pid: Tid,
    kinds: &[&'static str],
    f: impl FnOnce() -> R + Send,
) -> Result<R, NsError> {
    let mut fds: Vec<(&'static str, nix::sched::CloneFlags, File)> = Vec::new();
    for &kind in kinds {
        let err = |source| NsError {
            pid,
            kind,
            what: "opening",
            source,
        };
        let flag =
            thread_flag(kind).ok_or_else(|| err(io::Error::from(io::ErrorKind::Unsupported)))?;
        let fd = File::open(format!("/proc/{pid}/ns/{kind}")).map_err(err)?;
        fds.push((kind, flag, fd));
    }
    std::thread::scope(|s| {
        s.spawn(move || {
            for (kind, flag, fd) in &fds {
                nix::sched::setns(fd, *flag).map_err(|e| NsError {
                    pid,
                    kind,
                    what: "joining",
                    source: e.into(),
                })?;
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_own_uts_namespace_runs_and_reads_it() {
        let me = std::process::id() as Tid;
        let name = within(me, &["uts"], || {
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap()
        });
        match name {
            Ok(n) => assert_eq!(
                n,
                std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap()
            ),
            // Joining needs CAP_SYS_ADMIN.
            Err(e) => assert_eq!(e.source.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
    }

    #[test]
    fn within_mount_namespace_is_refused_by_name() {
        let err = within(std::process::id() as Tid, &["mnt"], || ()).unwrap_err();
        assert_eq!(err.kind, "mnt");
        assert!(
            err.to_string().contains("opening the mnt namespace"),
            "{err}"
        );
    }
}
