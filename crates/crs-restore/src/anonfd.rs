//! Anon-inode fds (eventfd, signalfd, timerfd, epoll) of the restored task, created by
//! syscalls injected into it once it is seized (the raw plan it runs before knows only
//! paths and pipes): each is created, put at its fd numbers with their close-on-exec
//! flags, and the temporary fd closed. Eventfds get their counter, signalfds their mask;
//! epoll instances are created after every other anon fd and get their targets with
//! epoll_ctl once all of them exist (an epoll may watch another epoll). Timerfds are
//! created disarmed and armed late ([`arm`], next to the other timers, right before the
//! registers), with the time that was left and their unread expiration count.
//!
//! A file shared by several processes is refused at dump; at restore each process creates
//! its own (the dump never writes such images).

use std::collections::BTreeMap;

use crs_images::pb::fdinfo::{Fd_types, Fdinfo_entry, File_entry};
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::images::Images;
use crate::remote::Remote;
use crate::RestoreError;

/// `TFD_IOC_SET_TICKS`: `_IOW('T', 0, u64)`.
const TFD_IOC_SET_TICKS: u64 = 0x4008_5400;
const TFD_TIMER_ABSTIME: u32 = 1;

/// An anon-inode file type crs restores.
pub(crate) fn is_anon(t: Fd_types) -> bool {
    matches!(
        t,
        Fd_types::EVENTFD | Fd_types::SIGNALFD | Fd_types::TIMERFD | Fd_types::EVENTPOLL
    )
}

/// Checks file entry `f` (of an anon type) and, for an epoll, that each target fd is an
/// fd of the same process (`fdinfo`, of image `image`).
pub(crate) fn check(
    f: &File_entry,
    fdinfo: &[Fdinfo_entry],
    image: &str,
) -> Result<(), RestoreError> {
    let id = f.id();
    let none = |what: &str| invalid("files.img", format!("file id {id} has no {what} entry"));
    match f.type_() {
        Fd_types::EVENTFD => {
            f.efd.as_ref().ok_or_else(|| none("eventfd"))?;
        }
        Fd_types::SIGNALFD => {
            f.sgfd.as_ref().ok_or_else(|| none("signalfd"))?;
        }
        Fd_types::TIMERFD => {
            let t = f.tfd.as_ref().ok_or_else(|| none("timerfd"))?;
            if t.vnsec() >= 1_000_000_000 || t.insec() >= 1_000_000_000 {
                return Err(invalid(
                    "files.img",
                    format!("timerfd {id}: nanoseconds {} / {}", t.vnsec(), t.insec()),
                ));
            }
        }
        Fd_types::EVENTPOLL => {
            let ep = f.epfd.as_ref().ok_or_else(|| none("eventpoll"))?;
            for t in &ep.tfd {
                if !fdinfo.iter().any(|e| e.fd() == t.tfd()) {
                    return Err(invalid(
                        image,
                        format!("epoll {id} watches fd {}, which is not open", t.tfd()),
                    ));
                }
            }
        }
        other => return Err(unsupported(format!("anon file of type {other:?}"))),
    }
    Ok(())
}

/// An anon file's entry and the fds it goes to, each with its close-on-exec flag.
type AnonFile<'a> = (&'a File_entry, Vec<(i32, bool)>);

/// The anon files of the task by file id.
fn anon_files(images: &Images) -> BTreeMap<u32, AnonFile<'_>> {
    let mut out: BTreeMap<u32, AnonFile<'_>> = BTreeMap::new();
    for e in images.fdinfo.iter().filter(|e| is_anon(e.type_())) {
        let cloexec = e.flags() & libc::FD_CLOEXEC as u32 != 0;
        out.entry(e.id())
            .or_insert_with(|| (&images.files[&e.id()], Vec::new()))
            .1
            .push((e.fd() as i32, cloexec));
    }
    out
}

/// Puts the new fd `fd` at each of `fds`, then closes it unless it is one of them.
fn place(r: &mut Remote<'_>, fd: i64, fds: &[(i32, bool)], id: u32) -> Result<(), RestoreError> {
    let mut kept = false;
    for &(target, cloexec) in fds {
        if i64::from(target) == fd {
            kept = true;
            let fl = if cloexec { libc::FD_CLOEXEC } else { 0 };
            r.call(
                libc::SYS_fcntl,
                [fd as u64, libc::F_SETFD as u64, fl as u64, 0, 0, 0],
                || format!("setting FD_CLOEXEC of anon file {id} at fd {fd}"),
            )?;
        } else {
            let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
            r.call(
                libc::SYS_dup3,
                [fd as u64, target as u64, fl as u64, 0, 0, 0],
                || format!("placing anon file {id} at fd {target}"),
            )?;
        }
    }
    if !kept {
        r.call(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0], || {
            format!("closing the temporary fd {fd} of anon file {id}")
        })?;
    }
    Ok(())
}

/// Creates every eventfd, signalfd, timerfd (disarmed) and epoll of the task at its fds,
/// then adds each epoll's targets. Returns how many files were created.
pub(crate) fn create(r: &mut Remote<'_>, images: &Images) -> Result<usize, RestoreError> {
    let files = anon_files(images);
    let nonblock = libc::O_NONBLOCK as u32;
    // Epolls last: their targets may be any anon file.
    let (epolls, others): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|(_, (f, _))| f.type_() == Fd_types::EVENTPOLL);
    for (&id, (f, fds)) in others.into_iter().chain(epolls.iter().copied()) {
        let fd = match f.type_() {
            Fd_types::EVENTFD => {
                let e = f.efd.as_ref().expect("checked at load");
                let init = u32::try_from(e.counter()).unwrap_or(0);
                let fd = r.call(
                    libc::SYS_eventfd2,
                    [u64::from(init), u64::from(e.flags() & nonblock), 0, 0, 0, 0],
                    || format!("eventfd2 of anon file {id}"),
                )?;
                if u64::from(init) != e.counter() {
                    let p = r.put(0, &e.counter().to_le_bytes())?;
                    r.call(libc::SYS_write, [fd as u64, p, 8, 0, 0, 0], || {
                        format!("setting the counter {} of eventfd {id}", e.counter())
                    })?;
                }
                fd
            }
            Fd_types::SIGNALFD => {
                let s = f.sgfd.as_ref().expect("checked at load");
                let p = r.put(0, &s.sigmask().to_le_bytes())?;
                r.call(
                    libc::SYS_signalfd4,
                    [u64::MAX, p, 8, u64::from(s.flags() & nonblock), 0, 0],
                    || format!("signalfd4 of anon file {id} (mask {:#x})", s.sigmask()),
                )?
            }
            Fd_types::TIMERFD => {
                let t = f.tfd.as_ref().expect("checked at load");
                r.call(
                    libc::SYS_timerfd_create,
                    [
                        u64::from(t.clockid()),
                        u64::from(t.flags() & nonblock),
                        0,
                        0,
                        0,
                        0,
                    ],
                    || format!("timerfd_create of anon file {id} (clock {})", t.clockid()),
                )?
            }
            _ => r.call(libc::SYS_epoll_create1, [0; 6], || {
                format!("epoll_create1 of anon file {id}")
            })?,
        };
        if f.type_() == Fd_types::EVENTPOLL {
            let flags = f.epfd.as_ref().expect("checked at load").flags() & nonblock;
            if flags != 0 {
                r.call(
                    libc::SYS_fcntl,
                    [fd as u64, libc::F_SETFL as u64, u64::from(flags), 0, 0, 0],
                    || format!("setting the flags of epoll {id}"),
                )?;
            }
        }
        place(r, fd, fds, id)?;
    }
    for (&id, (f, fds)) in epolls {
        let ep = f.epfd.as_ref().expect("checked at load");
        let epfd = fds[0].0;
        for t in &ep.tfd {
            // struct epoll_event is packed on x86-64: u32 events, u64 data.
            let mut ev = t.events().to_le_bytes().to_vec();
            ev.extend_from_slice(&t.data().to_le_bytes());
            let p = r.put(0, &ev)?;
            r.call(
                libc::SYS_epoll_ctl,
                [
                    epfd as u64,
                    libc::EPOLL_CTL_ADD as u64,
                    u64::from(t.tfd()),
                    p,
                    0,
                    0,
                ],
                || {
                    format!(
                        "adding fd {} to epoll {id} (events {:#x})",
                        t.tfd(),
                        t.events()
                    )
                },
            )?;
        }
    }
    debug!(files = files.len(), "anon-inode files created");
    Ok(files.len())
}

/// Arms every timerfd with the time that was left (absolute timers at now + left on
/// their clock; a periodic timer overdue at dump one interval from now) and sets its
/// unread expiration count.
pub(crate) fn arm(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    for (id, (f, fds)) in anon_files(images) {
        let Some(t) = f.tfd.as_ref().filter(|_| f.type_() == Fd_types::TIMERFD) else {
            continue;
        };
        let fd = fds[0].0 as u64;
        let (mut vsec, mut vnsec) = (t.vsec(), t.vnsec());
        if vsec == 0 && vnsec == 0 {
            // A periodic timer that expired and was not read since shows no time left
            // (the kernel moves it on at the next read): the next expiry is one interval
            // away, never earlier; the expirations not read are in `ticks`.
            (vsec, vnsec) = (t.isec(), t.insec());
        }
        let armed = vsec != 0 || vnsec != 0;
        if armed {
            if t.settime_flags() & TFD_TIMER_ABSTIME != 0 {
                let now = crs_sys::time::now(t.clockid() as libc::clockid_t).map_err(|e| {
                    RestoreError::Syscall {
                        pid: r.pid,
                        what: format!("clock_gettime({}) for timerfd {id}", t.clockid()),
                        errno: i64::from(e.raw_os_error().unwrap_or(0)),
                    }
                })?;
                vnsec += u64::from(now.subsec_nanos());
                vsec += now.as_secs() + vnsec / 1_000_000_000;
                vnsec %= 1_000_000_000;
            }
            let its: Vec<u8> = [t.isec(), t.insec(), vsec, vnsec]
                .iter()
                .flat_map(|w| w.to_le_bytes())
                .collect();
            let p = r.put(0, &its)?;
            r.call(
                libc::SYS_timerfd_settime,
                [fd, u64::from(t.settime_flags()), p, 0, 0, 0],
                || format!("arming timerfd {id} ({vsec}.{vnsec:09} s)"),
            )?;
        }
        if t.ticks() != 0 {
            let p = r.put(0, &t.ticks().to_le_bytes())?;
            r.call(libc::SYS_ioctl, [fd, TFD_IOC_SET_TICKS, p, 0, 0, 0], || {
                format!("setting {} unread expirations of timerfd {id}", t.ticks())
            })?;
        }
        debug!(id, armed, ticks = t.ticks(), "timerfd armed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crs_images::pb::eventpoll::{Eventpoll_file_entry, Eventpoll_tfd_entry};
    use crs_images::pb::timerfd::Timerfd_entry;
    use protobuf::{EnumOrUnknown, MessageField};

    fn fdinfo(fd: u32) -> Fdinfo_entry {
        Fdinfo_entry {
            fd: Some(fd),
            ..Default::default()
        }
    }

    #[test]
    fn check_epoll_target_not_open_is_invalid() {
        let f = File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::EVENTPOLL)),
            id: Some(7),
            epfd: MessageField::some(Eventpoll_file_entry {
                tfd: vec![Eventpoll_tfd_entry {
                    tfd: Some(4),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check(&f, &[fdinfo(3), fdinfo(4)], "fdinfo-2.img").is_ok());
        assert!(matches!(
            check(&f, &[fdinfo(3)], "fdinfo-2.img"),
            Err(RestoreError::Invalid { .. })
        ));
    }

    #[test]
    fn check_timerfd_nanoseconds_past_a_second_is_invalid() {
        let mut f = File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::TIMERFD)),
            id: Some(8),
            tfd: MessageField::some(Timerfd_entry {
                vnsec: Some(999_999_999),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check(&f, &[], "fdinfo-2.img").is_ok());
        f.tfd.as_mut().unwrap().insec = Some(1_000_000_000);
        assert!(matches!(
            check(&f, &[], "fdinfo-2.img"),
            Err(RestoreError::Invalid { .. })
        ));
    }

    #[test]
    fn check_eventfd_without_its_entry_is_invalid() {
        let f = File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::EVENTFD)),
            id: Some(5),
            ..Default::default()
        };
        assert!(matches!(
            check(&f, &[], "fdinfo-2.img"),
            Err(RestoreError::Invalid { .. })
        ));
    }
}
