//! Raw ptrace requests and tracee waits.
//!
//! Each function issues one `ptrace(2)` request on thread `tid`; the caller must be that
//! thread's tracer (the very thread that attached it) and, for most requests, the tracee
//! must be in a ptrace-stop. Those are kernel-checked conditions (ESRCH otherwise), not
//! memory-safety obligations.

use std::io;
use std::mem::{size_of, MaybeUninit};

use crate::{cvt, Tid};

/// Request numbers from `<linux/ptrace.h>`.
pub mod req {
    pub const GETREGS: u32 = 12;
    pub const SETREGS: u32 = 13;
    pub const POKEUSER: u32 = 6;
    pub const CONT: u32 = 7;
    pub const KILL: u32 = 8;
    pub const DETACH: u32 = 17;
    pub const SYSCALL: u32 = 24;
    pub const SETOPTIONS: u32 = 0x4200;
    pub const GETEVENTMSG: u32 = 0x4201;
    pub const GETSIGINFO: u32 = 0x4202;
    pub const GETREGSET: u32 = 0x4204;
    pub const SETREGSET: u32 = 0x4205;
    pub const SEIZE: u32 = 0x4206;
    pub const INTERRUPT: u32 = 0x4207;
    pub const LISTEN: u32 = 0x4208;
    pub const PEEKSIGINFO: u32 = 0x4209;
    pub const GETSIGMASK: u32 = 0x420a;
    pub const SETSIGMASK: u32 = 0x420b;
    pub const SECCOMP_GET_FILTER: u32 = 0x420c;
    pub const SECCOMP_GET_METADATA: u32 = 0x420d;
    pub const GET_SYSCALL_INFO: u32 = 0x420e;
    pub const GET_RSEQ_CONFIGURATION: u32 = 0x420f;
}

/// `PTRACE_O_*` option bits.
pub mod opt {
    pub const TRACESYSGOOD: u64 = 1;
    pub const TRACEEXIT: u64 = 1 << 6;
    pub const EXITKILL: u64 = 1 << 20;
    pub const SUSPEND_SECCOMP: u64 = 1 << 21;
}

/// `PTRACE_EVENT_*` values (bits 16.. of a wait status).
pub mod event {
    pub const EXIT: i32 = 6;
    pub const STOP: i32 = 128;
}

/// Note types for PTRACE_GETREGSET.
pub mod nt {
    pub const PRSTATUS: u32 = 1;
    pub const PRFPREG: u32 = 2;
    pub const X86_XSTATE: u32 = 0x202;
}

/// `PTRACE_PEEKSIGINFO_SHARED`: peek the process-wide queue instead of the thread's.
pub const PEEKSIGINFO_SHARED: u32 = 1;

/// x86_64 general-purpose registers as PTRACE_GETREGS transfers them.
pub type UserRegs = libc::user_regs_struct;

/// One raw request.
///
/// # Safety
///
/// When `request` interprets `addr` or `data` as a pointer, it must point to live memory
/// of the size and layout that request reads or writes, exclusively borrowed if written.
unsafe fn raw(request: u32, tid: Tid, addr: u64, data: u64) -> io::Result<libc::c_long> {
    // SAFETY: the caller guarantees pointer arguments are valid for this request (see
    // above); integer arguments touch no memory. The kernel validates the tracee itself.
    let ret = unsafe {
        libc::ptrace(
            request as _,
            tid,
            addr as usize as *mut libc::c_void,
            data as usize as *mut libc::c_void,
        )
    };
    cvt(ret)
}

/// PTRACE_SEIZE with `options` (an `opt::*` mask). Does not stop the thread.
pub fn seize(tid: Tid, options: u64) -> io::Result<()> {
    // SAFETY: this request takes integers only; no memory of ours is touched.
    unsafe { raw(req::SEIZE, tid, 0, options) }.map(drop)
}

/// PTRACE_INTERRUPT: ask a seized thread to stop (reported as PTRACE_EVENT_STOP).
pub fn interrupt(tid: Tid) -> io::Result<()> {
    // SAFETY: this request takes integers only; no memory of ours is touched.
    unsafe { raw(req::INTERRUPT, tid, 0, 0) }.map(drop)
}

/// PTRACE_SETOPTIONS.
pub fn set_options(tid: Tid, options: u64) -> io::Result<()> {
    // SAFETY: this request takes integers only; no memory of ours is touched.
    unsafe { raw(req::SETOPTIONS, tid, 0, options) }.map(drop)
}

/// PTRACE_CONT, delivering `sig` (0 for none).
pub fn cont(tid: Tid, sig: i32) -> io::Result<()> {
    // SAFETY: this request takes integers only; no memory of ours is touched.
    unsafe { raw(req::CONT, tid, 0, sig as u64) }.map(drop)
}

/// PTRACE_SYSCALL: resume until the next syscall entry or exit, delivering `sig`.
pub fn syscall(tid: Tid, sig: i32) -> io::Result<()> {
    // SAFETY: this request takes integers only; no memory of ours is touched.
    unsafe { raw(req::SYSCALL, tid, 0, sig as u64) }.map(drop)
}

/// PTRACE_DETACH, delivering `sig` (0 for none).
pub fn detach(tid: Tid, sig: i32) -> io::Result<()> {
    // SAFETY: this request takes integers only; no memory of ours is touched.
    unsafe { raw(req::DETACH, tid, 0, sig as u64) }.map(drop)
}

/// PTRACE_POKEUSER: writes `value` at `offset` of the tracee's `struct user` (on x86_64,
/// the debug registers are there).
pub fn poke_user(tid: Tid, offset: u64, value: u64) -> io::Result<()> {
    // SAFETY: this request takes integers only (an offset into the tracee's `struct user`,
    // checked by the kernel, and a value); no memory of ours is touched.
    unsafe { raw(req::POKEUSER, tid, offset, value) }.map(drop)
}

/// PTRACE_GETEVENTMSG.
pub fn get_event_msg(tid: Tid) -> io::Result<u64> {
    let mut msg: libc::c_ulong = 0;
    let ptr = &mut msg as *mut libc::c_ulong as u64;
    // SAFETY: `ptr` points at a live, exclusively borrowed c_ulong: what the request writes.
    unsafe { raw(req::GETEVENTMSG, tid, 0, ptr) }?;
    Ok(msg)
}

/// PTRACE_GETREGS.
pub fn get_regs(tid: Tid) -> io::Result<UserRegs> {
    let mut regs = MaybeUninit::<UserRegs>::uninit();
    // SAFETY: `regs` is live, exclusively borrowed storage for one user_regs_struct, which
    // is exactly what GETREGS writes.
    unsafe { raw(req::GETREGS, tid, 0, regs.as_mut_ptr() as u64) }?;
    // SAFETY: GETREGS succeeded, so the kernel wrote a whole user_regs_struct into `regs`.
    Ok(unsafe { regs.assume_init() })
}

/// PTRACE_SETREGS.
pub fn set_regs(tid: Tid, regs: &UserRegs) -> io::Result<()> {
    // SAFETY: `regs` is a live user_regs_struct that SETREGS only reads.
    unsafe { raw(req::SETREGS, tid, 0, regs as *const UserRegs as u64) }.map(drop)
}

/// PTRACE_GETREGSET of note type `nt` into `buf`; returns the number of bytes the kernel
/// filled (at most `buf.len()`).
pub fn get_regset(tid: Tid, nt: u32, buf: &mut [u8]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: `iov` is a live iovec describing `buf`, which is exclusively borrowed and
    // `iov_len` bytes long; the kernel writes at most that many bytes there and updates
    // `iov.iov_len`.
    unsafe {
        raw(
            req::GETREGSET,
            tid,
            nt as u64,
            &mut iov as *mut libc::iovec as u64,
        )
    }?;
    Ok(iov.iov_len)
}

/// PTRACE_SETREGSET of note type `nt` from `buf`.
pub fn set_regset(tid: Tid, nt: u32, buf: &[u8]) -> io::Result<()> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `iov` is a live iovec describing `buf` (live, `iov_len` bytes); the kernel only
    // reads through it.
    unsafe {
        raw(
            req::SETREGSET,
            tid,
            nt as u64,
            &iov as *const libc::iovec as u64,
        )
    }
    .map(drop)
}

/// PTRACE_GETSIGMASK: the thread's blocked-signal mask (bit n-1 = signal n). When the
/// thread sits in a syscall that swapped its mask temporarily (ppoll, sigsuspend), this is
/// the mask that will be restored, i.e. the thread's own.
pub fn get_sigmask(tid: Tid) -> io::Result<u64> {
    let mut mask: u64 = 0;
    // SAFETY: `addr` says 8 bytes and `data` points at a live, exclusively borrowed u64.
    unsafe {
        raw(
            req::GETSIGMASK,
            tid,
            size_of::<u64>() as u64,
            &mut mask as *mut u64 as u64,
        )
    }?;
    Ok(mask)
}

/// PTRACE_SETSIGMASK (SIGKILL and SIGSTOP are dropped by the kernel). Also cancels a
/// pending "restore the saved mask" of the thread; a restarted ppoll/sigsuspend reinstalls
/// its temporary mask itself.
pub fn set_sigmask(tid: Tid, mask: u64) -> io::Result<()> {
    // SAFETY: `addr` says 8 bytes and `data` points at a live u64 the kernel only reads.
    unsafe {
        raw(
            req::SETSIGMASK,
            tid,
            size_of::<u64>() as u64,
            &mask as *const u64 as u64,
        )
    }
    .map(drop)
}

/// Layout of `struct ptrace_peeksiginfo_args`.
#[repr(C)]
struct PeekSiginfoArgs {
    off: u64,
    flags: u32,
    nr: i32,
}

/// PTRACE_PEEKSIGINFO: copies up to `buf.len()` queued signals starting at queue position
/// `off` of the thread's private queue, or of the process's shared queue when `shared`.
/// Returns how many were copied (0 at the end of the queue). Does not dequeue anything.
pub fn peek_siginfo(
    tid: Tid,
    off: u64,
    shared: bool,
    buf: &mut [MaybeUninit<libc::siginfo_t>],
) -> io::Result<usize> {
    let args = PeekSiginfoArgs {
        off,
        flags: if shared { PEEKSIGINFO_SHARED } else { 0 },
        nr: i32::try_from(buf.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
    };
    // SAFETY: `args` is a live struct with the kernel's layout (read only); `buf` is
    // exclusively borrowed with room for `nr` siginfo_t, the most the kernel copies.
    let n = unsafe {
        raw(
            req::PEEKSIGINFO,
            tid,
            &args as *const PeekSiginfoArgs as u64,
            buf.as_mut_ptr() as u64,
        )
    }?;
    Ok(n as usize)
}

/// All queued signals of one queue, in queue order.
pub fn all_pending(tid: Tid, shared: bool) -> io::Result<Vec<libc::siginfo_t>> {
    let mut out = Vec::new();
    let mut chunk = [MaybeUninit::<libc::siginfo_t>::uninit(); 32];
    loop {
        let n = peek_siginfo(tid, out.len() as u64, shared, &mut chunk)?;
        if n == 0 {
            return Ok(out);
        }
        for slot in &chunk[..n.min(chunk.len())] {
            // SAFETY: the kernel reported `n` entries copied, so the first `n` slots hold
            // fully written siginfo_t values (a plain-old-data C struct).
            out.push(unsafe { slot.assume_init() });
        }
    }
}

/// One classic-BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// PTRACE_SECCOMP_GET_FILTER: the BPF program of the `index`-th seccomp filter of the
/// thread (0 = most recently installed). ENOENT past the last filter.
pub fn seccomp_get_filter(tid: Tid, index: u64) -> io::Result<Vec<SockFilter>> {
    // SAFETY: with a null buffer the kernel writes nothing and returns the instruction count.
    let count = unsafe { raw(req::SECCOMP_GET_FILTER, tid, index, 0) }? as usize;
    let mut prog = vec![SockFilter::default(); count];
    // SAFETY: `prog` is exclusively borrowed with room for `count` instructions, which is
    // what the kernel copies: filters are immutable once installed, and an index names the
    // same filter while the tracee is stopped (only the thread itself can add filters).
    let n = unsafe {
        raw(
            req::SECCOMP_GET_FILTER,
            tid,
            index,
            prog.as_mut_ptr() as u64,
        )
    }? as usize;
    prog.truncate(n);
    Ok(prog)
}

#[repr(C)]
struct SeccompMetadata {
    filter_off: u64,
    flags: u64,
}

/// PTRACE_SECCOMP_GET_METADATA: the flags (SECCOMP_FILTER_FLAG_LOG, ...) the `index`-th
/// filter was installed with.
pub fn seccomp_get_metadata(tid: Tid, index: u64) -> io::Result<u64> {
    let mut md = SeccompMetadata {
        filter_off: index,
        flags: 0,
    };
    // SAFETY: `md` is a live, exclusively borrowed struct of the kernel's layout and `addr`
    // is its size, so the kernel reads and writes only inside it.
    unsafe {
        raw(
            req::SECCOMP_GET_METADATA,
            tid,
            size_of::<SeccompMetadata>() as u64,
            &mut md as *mut SeccompMetadata as u64,
        )
    }?;
    Ok(md.flags)
}

/// `struct ptrace_rseq_configuration`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RseqConfiguration {
    pub rseq_abi_pointer: u64,
    pub rseq_abi_size: u32,
    pub signature: u32,
    pub flags: u32,
    pub pad: u32,
}

/// PTRACE_GET_RSEQ_CONFIGURATION. A thread without rseq has a zero pointer and size.
pub fn get_rseq_configuration(tid: Tid) -> io::Result<RseqConfiguration> {
    let mut conf = RseqConfiguration::default();
    // SAFETY: `conf` is a live, exclusively borrowed struct of the kernel's layout and
    // `addr` is its size, so the kernel writes only inside it.
    unsafe {
        raw(
            req::GET_RSEQ_CONFIGURATION,
            tid,
            size_of::<RseqConfiguration>() as u64,
            &mut conf as *mut RseqConfiguration as u64,
        )
    }?;
    Ok(conf)
}

/// What a wait for a traced thread reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Exited with this code (for a thread: the thread is gone).
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Signal-delivery-stop: the thread is about to receive this signal.
    Signal(i32),
    /// Syscall-entry or syscall-exit stop (PTRACE_O_TRACESYSGOOD).
    Syscall,
    /// PTRACE_EVENT_STOP: an interrupt or group-stop trap. The signal is SIGTRAP for an
    /// interrupt, the stop signal when the thread group is in group-stop.
    EventStop(i32),
    /// Any other PTRACE_EVENT_* stop, with its signal.
    Event(i32, i32),
}

impl Stop {
    /// Decodes a wait status.
    pub fn from_status(status: i32) -> Stop {
        if libc::WIFEXITED(status) {
            Stop::Exited(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            Stop::Signaled(libc::WTERMSIG(status))
        } else {
            let sig = libc::WSTOPSIG(status);
            let ev = status >> 16;
            if ev == event::STOP {
                Stop::EventStop(sig)
            } else if ev != 0 {
                Stop::Event(ev, sig)
            } else if sig == (libc::SIGTRAP | 0x80) {
                Stop::Syscall
            } else {
                Stop::Signal(sig)
            }
        }
    }
}

/// `waitpid(tid, __WALL)`, retried on EINTR; blocks until `tid` reports.
pub fn wait(tid: Tid) -> io::Result<Stop> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a live int the kernel writes; no other memory is touched.
        let ret = unsafe { libc::waitpid(tid, &mut status, libc::__WALL) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        return Ok(Stop::from_status(status));
    }
}

/// `waitpid(tid, __WALL | WNOHANG)`: `None` when `tid` has nothing to report.
pub fn try_wait(tid: Tid) -> io::Result<Option<Stop>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a live int the kernel writes; no other memory is touched.
    let ret = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
    match ret {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        _ => Ok(Some(Stop::from_status(status))),
    }
}

/// `tgkill(tgid, tid, sig)`.
pub fn tgkill(tgid: Tid, tid: Tid, sig: i32) -> io::Result<()> {
    // SAFETY: tgkill takes integers only.
    let ret = unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) };
    cvt(ret).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_from_status_event_stop_decodes_signal() {
        let status = (event::STOP << 16) | (libc::SIGSTOP << 8) | 0x7f;
        assert_eq!(Stop::from_status(status), Stop::EventStop(libc::SIGSTOP));
    }

    #[test]
    fn stop_from_status_syscall_stop_is_syscall() {
        let status = ((libc::SIGTRAP | 0x80) << 8) | 0x7f;
        assert_eq!(Stop::from_status(status), Stop::Syscall);
    }

    #[test]
    fn stop_from_status_realtime_signal_is_signal() {
        let status = ((libc::SIGRTMIN() + 3) << 8) | 0x7f;
        assert_eq!(
            Stop::from_status(status),
            Stop::Signal(libc::SIGRTMIN() + 3)
        );
    }

    #[test]
    fn stop_from_status_killed_is_signaled() {
        assert_eq!(
            Stop::from_status(libc::SIGKILL),
            Stop::Signaled(libc::SIGKILL)
        );
    }

    #[test]
    fn stop_from_status_exit_code_is_exited() {
        assert_eq!(Stop::from_status(3 << 8), Stop::Exited(3));
    }
}
