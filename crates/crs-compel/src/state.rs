//! Per-thread state: registers, extended FPU state, signals, seccomp, rseq.

use std::fmt;

use crs_sys::ptrace::{self, RseqConfiguration, SockFilter};
use crs_sys::Tid;

use crate::arch::{Arch, Host, Regs};
use crate::tree::SeizedTree;
use crate::{procfs, Error, Result};

/// One queued signal, as the kernel's `siginfo_t` (128 bytes).
#[derive(Clone, Copy)]
pub struct QueuedSignal {
    pub raw: libc::siginfo_t,
}

impl QueuedSignal {
    /// The signal number.
    pub fn signo(&self) -> i32 {
        self.raw.si_signo
    }

    /// The si_code (SI_USER, SI_QUEUE, SI_TKILL, ...).
    pub fn code(&self) -> i32 {
        self.raw.si_code
    }

    /// The 128 raw bytes, as they go into an image.
    pub fn bytes(&self) -> [u8; std::mem::size_of::<libc::siginfo_t>()] {
        // SAFETY: siginfo_t is a plain C struct of integers with no padding-dependent
        // invariants; reading its bytes is always valid and the size matches the array.
        unsafe { std::mem::transmute_copy(&self.raw) }
    }
}

impl fmt::Debug for QueuedSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueuedSignal")
            .field("signo", &self.signo())
            .field("code", &self.code())
            .finish()
    }
}

/// One seccomp filter of a thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SeccompFilter {
    /// SECCOMP_FILTER_FLAG_* the filter was installed with.
    pub flags: u64,
    /// The classic-BPF program.
    pub program: Vec<SockFilter>,
}

/// Everything about a held thread that ptrace can read without running code in it.
#[derive(Clone, Debug)]
pub struct ThreadState {
    /// General registers (including fs_base/gs_base), as the thread will resume with them.
    pub regs: Regs,
    /// The NT_X86_XSTATE regset (XSAVE layout), sized from CPUID.
    pub xstate: Vec<u8>,
    /// Blocked signals.
    pub sigmask: u64,
    /// Signals queued for this thread.
    pub pending: Vec<QueuedSignal>,
    /// Signals queued for the whole process.
    pub shared_pending: Vec<QueuedSignal>,
    /// Seccomp mode (0 off, 1 strict, 2 filter).
    pub seccomp_mode: u32,
    /// Seccomp filters, most recently installed first.
    pub seccomp_filters: Vec<SeccompFilter>,
    /// rseq registration (zero pointer when none).
    pub rseq: RseqConfiguration,
}

impl SeizedTree {
    /// Reads the state of held thread `tid`.
    pub fn thread_state(&self, tid: Tid) -> Result<ThreadState> {
        let thread = self.thread(tid)?;
        let xstate = self.xstate(tid)?;
        let peek = |shared| -> Result<Vec<QueuedSignal>> {
            ptrace::all_pending(tid, shared)
                .map(|v| v.into_iter().map(|raw| QueuedSignal { raw }).collect())
                .map_err(|source| Error::PeekSiginfo {
                    tid,
                    shared,
                    source,
                })
        };
        let pending = peek(false)?;
        let shared_pending = peek(true)?;
        let seccomp_mode = procfs::status(tid)
            .map_err(|source| Error::Status { tid, source })?
            .seccomp;
        let mut seccomp_filters = Vec::new();
        if seccomp_mode == 2 {
            for index in 0.. {
                let program = match ptrace::seccomp_get_filter(tid, index) {
                    Ok(p) => p,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => break,
                    Err(source) => return Err(Error::SeccompFilter { tid, index, source }),
                };
                let flags = ptrace::seccomp_get_metadata(tid, index)
                    .map_err(|source| Error::SeccompFilter { tid, index, source })?;
                seccomp_filters.push(SeccompFilter { flags, program });
            }
        }
        let rseq =
            ptrace::get_rseq_configuration(tid).map_err(|source| Error::Rseq { tid, source })?;
        Ok(ThreadState {
            regs: thread.regs,
            xstate,
            sigmask: thread.sigmask,
            pending,
            shared_pending,
            seccomp_mode,
            seccomp_filters,
            rseq,
        })
    }

    /// The NT_X86_XSTATE regset of held thread `tid`.
    pub fn xstate(&self, tid: Tid) -> Result<Vec<u8>> {
        self.thread(tid)?;
        let mut buf = vec![0u8; crs_sys::x86::xstate_size()];
        let n = ptrace::get_regset(tid, ptrace::nt::X86_XSTATE, &mut buf)
            .map_err(|source| Error::GetXstate { tid, source })?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Writes the NT_X86_XSTATE regset of held thread `tid`.
    pub fn set_xstate(&mut self, tid: Tid, xstate: &[u8]) -> Result<()> {
        self.thread(tid)?;
        ptrace::set_regset(tid, ptrace::nt::X86_XSTATE, xstate)
            .map_err(|source| Error::SetXstate { tid, source })
    }

    /// Sets the registers held thread `tid` resumes with (and that injected syscalls put
    /// back).
    pub fn set_regs(&mut self, tid: Tid, regs: &Regs) -> Result<()> {
        let thread = self.thread_mut(tid)?;
        Host::set_regs(tid, regs).map_err(|source| Error::SetRegs { tid, source })?;
        thread.regs = *regs;
        Ok(())
    }

    /// Sets the blocked-signal mask held thread `tid` resumes with.
    pub fn set_sigmask(&mut self, tid: Tid, mask: u64) -> Result<()> {
        let thread = self.thread_mut(tid)?;
        ptrace::set_sigmask(tid, mask).map_err(|source| Error::SetSigmask { tid, source })?;
        thread.sigmask = mask;
        Ok(())
    }
}
