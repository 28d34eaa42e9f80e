//! Interval timers and POSIX timers.
//!
//! POSIX timers are created with their dumped ids before the credentials are restored,
//! and every timer is armed at the very end, just before the registers (so the time
//! spent restoring does not run down the clocks), as CRIU's restorer does. Ids: with
//! PR_TIMER_CREATE_RESTORE_IDS (Linux 6.17+) timer_create takes the wanted id; without
//! it the kernel hands out ids in sequence from 0 in a new process, so timers are created
//! in id order and the gaps filled by timers deleted at once.
//!
//! A timer's overrun count is recorded by the dump but cannot be set: like CRIU, the
//! restored timer starts with none.

use crs_compel::RemoteAddr;
use crs_images::pb::timer::{Itimer_entry, Posix_timer_entry};
use tracing::debug;

use crate::images::Images;
use crate::remote::{Batch, Remote};
use crate::RestoreError;

const PR_TIMER_CREATE_RESTORE_IDS: u64 = 77;
const NSEC_PER_SEC: u64 = 1_000_000_000;
const USEC_PER_SEC: u64 = 1_000_000;
/// Fillers created at most to reach an id without PR_TIMER_CREATE_RESTORE_IDS (each
/// costs two injected syscalls).
const MAX_FILLERS: u32 = 1 << 16;
/// Scratch layout: the sigevent, then the timer id.
const SIGEVENT_LEN: usize = 64;
const ID_OFF: usize = SIGEVENT_LEN;

/// One POSIX timer to recreate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PosixTimer {
    pub id: i32,
    pub clock: i32,
    pub signo: i32,
    pub notify: i32,
    pub sival: u64,
    pub notify_tid: i32,
    /// (sec, nsec) of interval and first expiry.
    pub interval: (u64, u64),
    pub value: (u64, u64),
    pub overrun: u32,
}

impl PosixTimer {
    /// The kernel's `struct sigevent` (64 bytes on x86_64).
    fn sigevent(&self) -> [u8; SIGEVENT_LEN] {
        let mut b = [0u8; SIGEVENT_LEN];
        b[0..8].copy_from_slice(&self.sival.to_le_bytes());
        b[8..12].copy_from_slice(&self.signo.to_le_bytes());
        b[12..16].copy_from_slice(&self.notify.to_le_bytes());
        b[16..20].copy_from_slice(&self.notify_tid.to_le_bytes());
        b
    }

    fn armed(&self) -> bool {
        self.value != (0, 0)
    }
}

fn timespec_ok((sec, sub): (u64, u64), per_sec: u64) -> bool {
    sec <= i64::MAX as u64 && sub < per_sec
}

/// The image's POSIX timers, checked and in id order. A timer whose remaining time was
/// too short to record (zero) but that has an interval starts again with the interval,
/// as in CRIU.
pub(crate) fn posix_timers(images: &Images) -> Result<Vec<PosixTimer>, RestoreError> {
    let tc = images.core.tc.as_ref().expect("checked at load");
    let Some(t) = tc.timers.as_ref() else {
        return Ok(Vec::new());
    };
    let image = format!("core-{}.img", images.pid);
    let mut out = Vec::with_capacity(t.posix.len());
    for p in &t.posix {
        out.push(posix_timer(p).map_err(|what| RestoreError::Invalid {
            image: image.clone(),
            what,
        })?);
    }
    out.sort_by_key(|t| t.id);
    if let Some(w) = out.windows(2).find(|w| w[0].id == w[1].id) {
        return Err(RestoreError::Invalid {
            image,
            what: format!("POSIX timer id {} twice", w[0].id),
        });
    }
    Ok(out)
}

fn posix_timer(p: &Posix_timer_entry) -> Result<PosixTimer, String> {
    let id = i32::try_from(p.it_id()).map_err(|_| format!("POSIX timer id {}", p.it_id()))?;
    let interval = (p.isec(), p.insec());
    let mut value = (p.vsec(), p.vnsec());
    if !timespec_ok(interval, NSEC_PER_SEC) || !timespec_ok(value, NSEC_PER_SEC) {
        return Err(format!("POSIX timer {id}: invalid interval or value"));
    }
    if value == (0, 0) {
        value = interval;
    }
    let notify = p.it_sigev_notify() as i32;
    let base = notify & !libc::SIGEV_THREAD_ID;
    if ![libc::SIGEV_SIGNAL, libc::SIGEV_NONE, libc::SIGEV_THREAD].contains(&base) {
        return Err(format!("POSIX timer {id}: sigev_notify {notify}"));
    }
    Ok(PosixTimer {
        id,
        clock: p.clock_id() as i32,
        signo: p.si_signo() as i32,
        notify,
        sival: p.sival_ptr(),
        notify_tid: p.notify_thread_id(),
        interval,
        value,
        overrun: p.overrun(),
    })
}

/// Creates the POSIX timers with their ids, unarmed.
pub(crate) fn create_posix_timers(
    r: &mut Remote<'_>,
    timers: &[PosixTimer],
) -> Result<(), RestoreError> {
    if timers.is_empty() {
        return Ok(());
    }
    let by_id = match r.call(
        libc::SYS_prctl,
        [PR_TIMER_CREATE_RESTORE_IDS, 1, 0, 0, 0, 0],
        || "prctl(PR_TIMER_CREATE_RESTORE_IDS, ON)".into(),
    ) {
        Ok(_) => true,
        Err(RestoreError::Syscall { errno, .. }) if errno == i64::from(libc::EINVAL) => false,
        Err(e) => return Err(e),
    };
    debug!(by_id, n = timers.len(), "creating POSIX timers");
    let mut next = 0i32;
    for t in timers {
        let sev = r.put(0, &t.sigevent())?;
        if by_id {
            let got = create(r, t, sev, t.id)?;
            if got != t.id {
                return Err(unexpected(r, t.id, got));
            }
            continue;
        }
        if t.id < next || (t.id - next) as u32 > MAX_FILLERS {
            return Err(RestoreError::Unsupported {
                what: format!(
                    "POSIX timer id {} without PR_TIMER_CREATE_RESTORE_IDS (next id {next})",
                    t.id
                ),
            });
        }
        loop {
            let got = create(r, t, sev, 0)?;
            if got != next {
                return Err(unexpected(r, next, got));
            }
            next += 1;
            if got == t.id {
                break;
            }
            r.call(libc::SYS_timer_delete, [got as u64, 0, 0, 0, 0, 0], || {
                format!("timer_delete of filler timer {got}")
            })?;
        }
    }
    if by_id {
        r.call(
            libc::SYS_prctl,
            [PR_TIMER_CREATE_RESTORE_IDS, 0, 0, 0, 0, 0],
            || "prctl(PR_TIMER_CREATE_RESTORE_IDS, OFF)".into(),
        )?;
    }
    Ok(())
}

/// timer_create with the id slot preset to `want` (read by the kernel in restore-ids
/// mode); returns the id the kernel gave.
fn create(r: &mut Remote<'_>, t: &PosixTimer, sev: u64, want: i32) -> Result<i32, RestoreError> {
    let slot = r.put(ID_OFF, &want.to_le_bytes())?;
    r.call(
        libc::SYS_timer_create,
        [t.clock as u64, sev, slot, 0, 0, 0],
        || {
            format!(
                "timer_create(clock {}, signal {}, notify {}) for timer {}",
                t.clock, t.signo, t.notify, t.id
            )
        },
    )?;
    let mut id = [0u8; 4];
    r.tree
        .read_memory(r.pid, RemoteAddr(slot), &mut id)
        .map_err(|source| RestoreError::Compel {
            pid: r.pid,
            what: "reading the new timer id".into(),
            source,
        })?;
    Ok(i32::from_le_bytes(id))
}

fn unexpected(r: &Remote<'_>, want: i32, got: i32) -> RestoreError {
    RestoreError::Invalid {
        image: format!("core-{}.img", r.pid),
        what: format!("the kernel gave POSIX timer id {got}, {want} was expected"),
    }
}

/// An itimer's (interval, value) in (sec, usec), or None when it is not armed; a
/// remaining time too short to record starts again with the interval (CRIU).
fn itimer(it: &Itimer_entry) -> Result<Option<[u64; 4]>, String> {
    let interval = (it.isec(), it.iusec());
    let mut value = (it.vsec(), it.vusec());
    if interval == (0, 0) && value == (0, 0) {
        return Ok(None);
    }
    if value == (0, 0) {
        value = interval;
    }
    if !timespec_ok(interval, USEC_PER_SEC) || !timespec_ok(value, USEC_PER_SEC) {
        return Err("invalid itimer interval or value".into());
    }
    Ok(Some([interval.0, interval.1, value.0, value.1]))
}

/// Checks the timers of the image before anything is created.
pub(crate) fn check(images: &Images) -> Result<(), RestoreError> {
    posix_timers(images)?;
    let tc = images.core.tc.as_ref().expect("checked at load");
    if let Some(t) = tc.timers.as_ref() {
        for it in [&t.real, &t.virt, &t.prof].into_iter().flatten() {
            itimer(it).map_err(|what| RestoreError::Invalid {
                image: format!("core-{}.img", images.pid),
                what,
            })?;
        }
    }
    Ok(())
}

/// Arms the interval timers and the POSIX timers: the last thing before the registers.
pub(crate) fn arm(
    r: &mut Remote<'_>,
    images: &Images,
    timers: &[PosixTimer],
) -> Result<(), RestoreError> {
    let tc = images.core.tc.as_ref().expect("checked at load");
    // One batch; each call's itimerval/itimerspec at its own 32 bytes of scratch.
    let mut batch = Batch::default();
    let mut off = 0usize;
    if let Some(t) = tc.timers.as_ref() {
        for (which, it) in [
            (libc::ITIMER_REAL, &t.real),
            (libc::ITIMER_VIRTUAL, &t.virt),
            (libc::ITIMER_PROF, &t.prof),
        ] {
            let Some(it) = it.as_ref() else { continue };
            let Some(words) = itimer(it).map_err(|what| RestoreError::Invalid {
                image: format!("core-{}.img", r.pid),
                what,
            })?
            else {
                continue;
            };
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let p = r.put_for_batch(off, &bytes)?;
            off += bytes.len();
            batch.push(
                libc::SYS_setitimer,
                [which as u64, p, 0, 0, 0, 0],
                move || format!("setitimer({which})"),
            );
        }
    }
    for t in timers.iter().filter(|t| t.armed()) {
        if t.overrun != 0 {
            debug!(id = t.id, overrun = t.overrun, "timer overrun not restored");
        }
        let words = [t.interval.0, t.interval.1, t.value.0, t.value.1];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        if off + bytes.len() > r.batch_room() {
            r.run(std::mem::take(&mut batch))?;
            off = 0;
        }
        let p = r.put_for_batch(off, &bytes)?;
        off += bytes.len();
        let id = t.id;
        batch.push(
            libc::SYS_timer_settime,
            [id as u64, 0, p, 0, 0, 0],
            move || format!("timer_settime of POSIX timer {id}"),
        );
    }
    r.run(batch)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u32, notify: i32, interval: (u64, u64), value: (u64, u64)) -> Posix_timer_entry {
        Posix_timer_entry {
            it_id: Some(id),
            clock_id: Some(1),
            si_signo: Some(12),
            it_sigev_notify: Some(notify as u32),
            sival_ptr: Some(0x5eed),
            overrun: Some(0),
            isec: Some(interval.0),
            insec: Some(interval.1),
            vsec: Some(value.0),
            vnsec: Some(value.1),
            ..Default::default()
        }
    }

    #[test]
    fn posix_timer_expired_periodic_rearmed_with_interval() {
        let t = posix_timer(&entry(2, libc::SIGEV_SIGNAL, (0, 50_000_000), (0, 0))).unwrap();
        assert_eq!(t.value, (0, 50_000_000));
        assert!(t.armed());
    }

    #[test]
    fn posix_timer_never_armed_stays_unarmed() {
        let t = posix_timer(&entry(3, libc::SIGEV_SIGNAL, (0, 0), (0, 0))).unwrap();
        assert!(!t.armed());
    }

    #[test]
    fn posix_timer_bad_nsec_is_error() {
        assert!(posix_timer(&entry(0, libc::SIGEV_SIGNAL, (0, NSEC_PER_SEC), (1, 0))).is_err());
    }

    #[test]
    fn posix_timer_unknown_notify_is_error() {
        assert!(posix_timer(&entry(0, 7, (0, 0), (1, 0))).is_err());
    }

    #[test]
    fn posix_timer_sigevent_layout_matches_kernel() {
        let mut e = entry(1, libc::SIGEV_THREAD_ID, (0, 0), (1, 0));
        e.notify_thread_id = Some(4321);
        let b = posix_timer(&e).unwrap().sigevent();
        assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 0x5eed);
        assert_eq!(i32::from_le_bytes(b[8..12].try_into().unwrap()), 12);
        assert_eq!(i32::from_le_bytes(b[12..16].try_into().unwrap()), 4);
        assert_eq!(i32::from_le_bytes(b[16..20].try_into().unwrap()), 4321);
    }

    #[test]
    fn itimer_unarmed_is_none_and_expired_uses_interval() {
        let it = |i: (u64, u64), v: (u64, u64)| Itimer_entry {
            isec: Some(i.0),
            iusec: Some(i.1),
            vsec: Some(v.0),
            vusec: Some(v.1),
            ..Default::default()
        };
        assert_eq!(itimer(&it((0, 0), (0, 0))).unwrap(), None);
        assert_eq!(itimer(&it((1, 5), (0, 0))).unwrap(), Some([1, 5, 1, 5]));
        assert!(itimer(&it((0, USEC_PER_SEC), (1, 0))).is_err());
    }
}
