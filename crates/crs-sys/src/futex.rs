//! futex(2) wait and wake on an `AtomicU32` (process-private).

use std::io;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::cvt;

/// FUTEX_WAIT_PRIVATE: sleeps while `*word == expected`, at most `timeout` (relative).
/// Returns `Ok(())` when woken; errors are EAGAIN (value differed), ETIMEDOUT, EINTR.
pub fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(|d| libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 (AtomicU32 has u32 layout) for the whole call;
    // the kernel only reads it atomically. `ts_ptr` is null or points at `ts`, alive until
    // the call returns. FUTEX_WAIT ignores the remaining arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    cvt(ret).map(drop)
}

/// FUTEX_WAKE_PRIVATE: wakes up to `n` waiters on `word`; returns how many woke.
pub fn wake(word: &AtomicU32, n: u32) -> io::Result<usize> {
    // SAFETY: `word` is a live, aligned u32; FUTEX_WAKE only uses its address as a key.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        )
    };
    Ok(cvt(ret)? as usize)
}
