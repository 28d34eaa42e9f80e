//! compel: seize a live process tree, read/write its state, run syscalls inside its tasks.
//!
//! ```text
//! let mut tree = SeizedTree::seize(root, &SeizeOptions::default())?;   // every thread stopped
//! let pid_in_task = tree.syscall(tid, libc::SYS_getpid, [0; 6])?;     // runs inside `tid`
//! tree.release(Release::Detach)?;                                     // left exactly as found
//! ```
//!
//! All ptrace work for a tree happens on the thread that seized it: [`SeizedTree`] is not
//! `Send`. Dropping a tree that was not released detaches it, so an error or a panic between
//! seize and release leaves the target running (or stopped) as it was found.
//!
//! # How a syscall is injected
//!
//! The thread's registers are saved at seize. To run a syscall, the registers are pointed at
//! a `syscall` instruction already present in the task (found once per process, normally in
//! the vDSO), with `orig_rax = -1` so the kernel applies no restart, and every signal but
//! SIGKILL/SIGSTOP blocked; the thread runs to the syscall-entry and syscall-exit stops
//! (PTRACE_SYSCALL), the result is read, and the saved registers and mask are put back.
//! A thread that was stopped while returning from a restartable syscall (`orig_rax >= 0`,
//! `rax = -ERESTART*`) is first brought back to a stop inside signal handling
//! (PTRACE_INTERRUPT + PTRACE_CONT) before its registers are restored, because that is where
//! the kernel applies syscall restart when the thread resumes; a thread in any other state
//! is left at the syscall-exit stop with its registers restored, which resumes it exactly as
//! found. No signal is ever generated in the task, so no sigaction or queue changes.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod arch;
mod batch;
mod error;
mod freezer;
pub mod guard;
mod inject;
pub mod pin;
mod procfs;
mod state;
mod tree;

pub use arch::{Arch, Host, Regs, Restart};
pub use batch::{BatchSite, Call, BATCH_CODE, ENTRY_SIZE};
pub use crs_sys::remote::RemoteRange;
pub use crs_sys::{RemoteAddr, Tid};
pub use error::Error;
pub use freezer::Freezer;
pub use inject::SCRATCH_SIZE;
pub use nix::sched::CpuSet;
pub use pin::{allowed_cpus, CpuPin};
pub use state::{QueuedSignal, SeccompFilter, ThreadState};
pub use tree::{Release, SeizeOptions, SeizedProcess, SeizedThread, SeizedTree};

/// Result of compel operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
