//! `clock_nanosleep(2)` with its restart behaviour visible to the caller.

use std::io;
use std::time::Duration;

/// A `clock_nanosleep` deadline.
#[derive(Clone, Copy, Debug)]
pub enum Sleep {
    /// Sleep this long (restarted by the kernel through restart_syscall).
    Relative(Duration),
    /// Sleep until the clock reads this value (TIMER_ABSTIME).
    Until(Duration),
}

/// Reads `clock` (clock_gettime) as a duration since its epoch.
pub fn now(clock: libc::clockid_t) -> io::Result<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, exclusively borrowed timespec the kernel writes.
    let ret = unsafe { libc::clock_gettime(clock, &mut ts) };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// One `clock_nanosleep` call, not retried: EINTR (or any other error) is returned as is,
/// so a caller can tell a wrongly interrupted sleep from a completed one.
pub fn clock_nanosleep(clock: libc::clockid_t, sleep: Sleep) -> io::Result<()> {
    let (flags, d) = match sleep {
        Sleep::Relative(d) => (0, d),
        Sleep::Until(d) => (libc::TIMER_ABSTIME, d),
    };
    let ts = libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `ts` is a live timespec the kernel reads; the remainder pointer is null,
    // which the call allows.
    let ret = unsafe { libc::clock_nanosleep(clock, flags, &ts, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}
