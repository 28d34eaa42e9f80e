//! The threads other than the leader: created from inside the restored task by an
//! injected clone3 with `set_tid` = the dumped TID, seized by TID, then given their own
//! state by syscalls run in each of them and by ptrace.
//!
//! ```text
//! leader (held): clone3(VM|FS|FILES|SIGHAND|THREAD|SYSVSEM, set_tid = [tid]) from the
//!   trampoline's `syscall; jmp .` ──► the new thread leaves the syscall at `jmp .` and
//!   spins there (every signal blocked: the leader's mask during an injection) ──►
//!   PTRACE_SEIZE + INTERRUPT by TID, held like the leader
//! each thread: name, clear-tid address, robust list, rseq, sigaltstack (set_thread_misc),
//!   private signals (queued from the leader), credentials, then xstate, sigmask and
//!   registers (fs_base is the TLS) last; all threads are detached together.
//! ```

use crs_compel::RemoteAddr;

use crate::arch;
use crate::images::{Images, ThreadImage};
use crate::remote::Remote;
use crate::{creds, task, RestoreError};

/// CLONE_ARGS_SIZE_VER1: up to `set_tid_size`.
const CLONE_ARGS_SIZE: u64 = 80;
/// Offset in scratch of the one-entry `set_tid` array (after the clone_args).
const SET_TID_OFF: usize = 128;
const THREAD_FLAGS: u64 = (libc::CLONE_VM
    | libc::CLONE_FS
    | libc::CLONE_FILES
    | libc::CLONE_SIGHAND
    | libc::CLONE_THREAD
    | libc::CLONE_SYSVSEM) as u64;

/// The clone_args (version 1) of a thread that gets TID `tid`, whose `set_tid` array is
/// at `set_tid`. No stack: the new thread never runs code that uses one before its
/// registers are replaced.
fn clone_args(set_tid: u64) -> Vec<u8> {
    [THREAD_FLAGS, 0, 0, 0, 0, 0, 0, 0, set_tid, 1]
        .iter()
        .flat_map(|w: &u64| w.to_le_bytes())
        .collect()
}

/// Creates every non-leader thread with its TID and holds it.
pub(crate) fn create(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    if images.threads.is_empty() {
        return Ok(());
    }
    // clone3 runs from the trampoline's `syscall; jmp .` (the syscall site of every
    // injection here): the new thread parks on the `jmp .`.
    images
        .threads
        .iter()
        .try_for_each(|t| clone_one(r, t, images.own_pid_ns))
}

/// Creates thread `t` (its tid as the images and its pid namespace know it) and holds it;
/// `own_pid_ns`: in a pid namespace of the tree's own, where crs knows it by another tid,
/// found then (`ThreadImage::host`).
fn clone_one(r: &mut Remote<'_>, t: &ThreadImage, own_pid_ns: bool) -> Result<(), RestoreError> {
    let tid = t.tid;
    let set_tid = r.put(SET_TID_OFF, &tid.to_le_bytes())?;
    let args = r.put(0, &clone_args(set_tid))?;
    let got = r
        .call(
            libc::SYS_clone3,
            [args, CLONE_ARGS_SIZE, 0, 0, 0, 0],
            || format!("clone3 of thread {tid}"),
        )
        .map_err(|e| match e {
            RestoreError::Syscall { errno, .. } if errno == i64::from(libc::EEXIST) => {
                RestoreError::PidTaken { pid: tid }
            }
            e => e,
        })?;
    if got != i64::from(tid) {
        return Err(RestoreError::ThreadTid {
            pid: r.pid,
            want: tid,
            got,
        });
    }
    if own_pid_ns {
        t.host.set(crate::ns::host_tid(r.pid, tid)?);
    }
    r.tree
        .adopt_thread(r.pid, t.host.get())
        .map_err(|source| RestoreError::Compel {
            pid: r.pid,
            what: format!("seizing the new thread {tid}"),
            source,
        })
}

/// Name, clear-tid address, robust list, rseq, sigaltstack of every non-leader thread.
pub(crate) fn set_misc(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    let comm = images.core.tc.as_ref().expect("checked at load").comm();
    for t in &images.threads {
        r.in_thread(t.host.get(), |r| {
            task::set_thread_misc(r, t.thread_core(), t.thread_info(), comm)
        })?;
    }
    Ok(())
}

/// The credentials of every non-leader thread (they are per thread in Linux).
pub(crate) fn set_creds(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    for t in &images.threads {
        r.in_thread(t.host.get(), |r| creds::restore_thread(r, t.thread_core()))?;
    }
    Ok(())
}

/// FPU state, signal mask and registers of every non-leader thread: the last thing done
/// to them before they are let go.
pub(crate) fn set_final(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    let leader_mask = images
        .core
        .tc
        .as_ref()
        .expect("checked at load")
        .blk_sigset();
    for t in &images.threads {
        set_final_one(r, t, leader_mask)?;
    }
    Ok(())
}

fn set_final_one(
    r: &mut Remote<'_>,
    t: &ThreadImage,
    leader_mask: u64,
) -> Result<(), RestoreError> {
    // crs's tids (the images' name the core image).
    let (pid, tid) = (r.pid, t.host.get());
    let compel = |what: &'static str| {
        move |source| RestoreError::Compel {
            pid,
            what: format!("thread {tid}: {what}"),
            source,
        }
    };
    let ti = t.thread_info();
    let mut xstate = r
        .tree
        .xstate(tid)
        .map_err(compel("reading the FPU state"))?;
    arch::build_xstate(&ti.fpregs, &mut xstate).map_err(|what| RestoreError::Invalid {
        image: format!("core-{}.img", t.tid),
        what,
    })?;
    r.tree
        .set_xstate(tid, &xstate)
        .map_err(compel("writing the FPU state"))?;
    let mask = t.thread_core().blk_sigset.unwrap_or(leader_mask);
    r.tree
        .set_sigmask(tid, mask)
        .map_err(compel("setting the signal mask"))?;
    let tree = &*r.tree;
    let regs = arch::final_regs(&ti.gpregs, |ip| {
        let mut insn = [0u8; 2];
        tree.read_memory(pid, RemoteAddr(ip), &mut insn).is_ok() && insn == [0x0f, 0x05]
    });
    r.tree
        .set_regs(tid, &regs)
        .map_err(compel("setting the registers"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_args_set_tid_is_version_one_layout() {
        let a = clone_args(0x1234_5000);
        assert_eq!(a.len() as u64, CLONE_ARGS_SIZE);
        let word = |i: usize| u64::from_le_bytes(a[8 * i..8 * i + 8].try_into().unwrap());
        assert_eq!(word(0), 0x50f00);
        // exit_signal 0 (a thread), no stack, no tls.
        assert_eq!((word(4), word(5), word(6), word(7)), (0, 0, 0, 0));
        assert_eq!((word(8), word(9)), (0x1234_5000, 1));
    }
}
