//! Per-architecture register handling behind one small trait.

use std::io;

use crs_sys::{RemoteAddr, Tid};

#[cfg(target_arch = "x86_64")]
mod x86_64;
#[cfg(target_arch = "x86_64")]
pub use x86_64::X86_64 as Host;

/// Registers of the host architecture.
pub type Regs = <Host as Arch>::Regs;

/// How the kernel will restart a syscall a thread was stopped in, once the thread resumes
/// from a stop inside signal handling without a handler to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// -ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND: the same syscall is executed again.
    Again,
    /// -ERESTART_RESTARTBLOCK: `restart_syscall` continues it (nanosleep, futex timeouts).
    RestartBlock,
}

/// What compel needs to know about an architecture.
pub trait Arch {
    /// General-purpose registers as the kernel's regset transfers them.
    type Regs: Copy + std::fmt::Debug;

    /// The machine code of one syscall instruction.
    const SYSCALL_INSN: &'static [u8];

    /// Reads the general registers of a stopped tracee.
    fn get_regs(tid: Tid) -> io::Result<Self::Regs>;

    /// Writes the general registers of a stopped tracee.
    fn set_regs(tid: Tid, regs: &Self::Regs) -> io::Result<()>;

    /// Whether the registers belong to the native 64-bit mode (compel cannot inject into
    /// compat tasks). `Err` carries the mode selector to report.
    fn check_native(regs: &Self::Regs) -> Result<(), u64>;

    /// The instruction pointer.
    fn ip(regs: &Self::Regs) -> RemoteAddr;

    /// `saved` changed to execute syscall `nr` with `args` from the syscall instruction at
    /// `site`, with no pending syscall restart.
    fn syscall_regs(saved: &Self::Regs, site: RemoteAddr, nr: i64, args: &[u64; 6]) -> Self::Regs;

    /// `saved` changed to run the batch code at `code` (see `batch`): `with` = first entry,
    /// end of the table, then the tgkill arguments (tgid, tid, signal) of the final stop.
    fn batch_regs(saved: &Self::Regs, code: RemoteAddr, with: [u64; 5]) -> Self::Regs;

    /// The entry pointer of the batch code, read at its stop.
    fn batch_cursor(regs: &Self::Regs) -> u64;

    /// The return value of a syscall, read at its syscall-exit stop.
    fn syscall_result(regs: &Self::Regs) -> i64;

    /// If the thread was stopped while returning from a syscall the kernel will restart,
    /// how it will restart. Such a thread must be resumed from a stop inside signal
    /// handling (where the kernel applies the restart), not from a syscall-exit stop.
    fn pending_restart(regs: &Self::Regs) -> Option<Restart>;

    /// The registers as the thread will see them once the kernel has applied a pending
    /// restart, with no signal handler run: what a checkpoint must record so that the
    /// restored thread re-enters the syscall.
    fn restarted(regs: &Self::Regs) -> Self::Regs;

    /// The registers as words, in the kernel's regset order (for the guardian's journal).
    fn regs_to_words(regs: &Self::Regs) -> Vec<u64>;

    /// The registers from [`Arch::regs_to_words`]'s words; `None` if the count is wrong.
    fn regs_from_words(words: &[u64]) -> Option<Self::Regs>;

    /// The syscall result register (where a parked thread keeps the result of the
    /// syscall it ran last).
    fn result_reg(regs: &Self::Regs) -> u64;
}
