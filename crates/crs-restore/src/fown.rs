//! File owners: the process or group that gets SIGIO (or the F_SETSIG signal) when an
//! O_ASYNC description becomes ready. Set on each open description of the task once all
//! its fds are in place, by injected `fcntl`s: F_SETOWN_EX (the dumped owner, whose pid
//! is the same after restore), F_SETSIG, then O_ASYNC (which `open` ignores, so it is only
//! ever set by F_SETFL). Done as root, before the credentials are restored, as CRIU does:
//! the owner is recorded with crs's credentials, which may signal anyone. A description
//! with a lease is set only by the process that takes the lease (see `locks`), after it.

use std::collections::BTreeSet;

use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::fown::Fown_entry;
use tracing::debug;

use crate::images::Images;
use crate::remote::Remote;
use crate::RestoreError;

const F_SETSIG: u64 = 10;
const F_SETOWN_EX: u64 = 15;

/// The owner and status flags of file entry `f`, for the kinds that carry them.
fn fown_and_flags(f: &File_entry) -> Option<(&Fown_entry, u32)> {
    let (fown, flags) = match f.type_() {
        Fd_types::REG => f.reg.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::PIPE => f.pipe.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::UNIXSK => f.usk.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::INETSK => f.isk.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::NETLINKSK => f.nlsk.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::PACKETSK => f.psk.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::EVENTFD => f.efd.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::EVENTPOLL => f.epfd.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::SIGNALFD => f.sgfd.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::TIMERFD => f.tfd.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::INOTIFY => f.ify.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::MEMFD => f.memfd.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::TTY => f.tty.as_ref().map(|e| (&e.fown, e.flags()))?,
        Fd_types::PIDFD => f.pidfd.as_ref().map(|e| (&e.fown, e.flags()))?,
        _ => return None,
    };
    Some((fown.as_ref()?, flags))
}

/// Sets the owner, signal and O_ASYNC of every open description of the task that had
/// them, but those of `elsewhere` (descriptions another process sets: the one that takes
/// their lease, which makes it the owner). Returns how many descriptions were touched.
pub(crate) fn restore(
    r: &mut Remote<'_>,
    images: &Images,
    elsewhere: &BTreeSet<u32>,
) -> Result<usize, RestoreError> {
    let mut done = BTreeSet::new();
    for e in &images.fdinfo {
        if elsewhere.contains(&e.id()) || !done.insert(e.id()) {
            continue; // one description, several fds
        }
        let Some((fown, flags)) = images.files.get(&e.id()).and_then(fown_and_flags) else {
            continue;
        };
        let is_async = flags & libc::O_ASYNC as u32 != 0;
        if fown.pid() == 0 && fown.signum() == 0 && !is_async {
            done.remove(&e.id());
            continue;
        }
        let fd = u64::from(e.fd());
        if fown.pid() != 0 {
            let mut owner = Vec::with_capacity(8);
            owner.extend_from_slice(&(fown.pid_type() as i32).to_ne_bytes());
            owner.extend_from_slice(&(fown.pid() as i32).to_ne_bytes());
            let p = r.put(0, &owner)?;
            r.call(libc::SYS_fcntl, [fd, F_SETOWN_EX, p, 0, 0, 0], || {
                format!(
                    "fcntl(F_SETOWN_EX, type {}, pid {}) of fd {fd}",
                    fown.pid_type(),
                    fown.pid()
                )
            })?;
        }
        if fown.signum() != 0 {
            r.call(
                libc::SYS_fcntl,
                [fd, F_SETSIG, u64::from(fown.signum()), 0, 0, 0],
                || format!("fcntl(F_SETSIG, {}) of fd {fd}", fown.signum()),
            )?;
        }
        if is_async {
            let cur = r.call(
                libc::SYS_fcntl,
                [fd, libc::F_GETFL as u64, 0, 0, 0, 0],
                || format!("fcntl(F_GETFL) of fd {fd}"),
            )?;
            // Files and pipes the task opened itself already have it (their plan sets
            // the status flags); the descriptions made otherwise do not.
            if cur & libc::O_ASYNC as i64 == 0 {
                r.call(
                    libc::SYS_fcntl,
                    [
                        fd,
                        libc::F_SETFL as u64,
                        (cur | libc::O_ASYNC as i64) as u64,
                        0,
                        0,
                        0,
                    ],
                    || format!("fcntl(F_SETFL, O_ASYNC) of fd {fd}"),
                )?;
            }
        }
        debug!(
            fd,
            owner = fown.pid(),
            signum = fown.signum(),
            is_async,
            "file owner set"
        );
    }
    Ok(done.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crs_images::pb::pipe::Pipe_entry;
    use protobuf::{EnumOrUnknown, MessageField};

    #[test]
    fn fown_and_flags_of_a_pipe_end_are_found() {
        let f = File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::PIPE)),
            id: Some(4),
            pipe: MessageField::some(Pipe_entry {
                id: Some(4),
                pipe_id: Some(9),
                flags: Some(libc::O_ASYNC as u32),
                fown: MessageField::some(Fown_entry {
                    pid: Some(77),
                    pid_type: Some(1),
                    signum: Some(10),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (fown, flags) = fown_and_flags(&f).unwrap();
        assert_eq!(
            (fown.pid(), fown.signum(), flags),
            (77, 10, libc::O_ASYNC as u32)
        );
    }

    #[test]
    fn fown_and_flags_of_a_kind_without_owner_is_none() {
        let f = File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::PIPE)),
            id: Some(4),
            ..Default::default()
        };
        assert!(fown_and_flags(&f).is_none());
    }
}
