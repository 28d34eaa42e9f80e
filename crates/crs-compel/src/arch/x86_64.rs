//! x86_64: register layout, the `syscall` instruction, and syscall restart.

use std::io;

use crs_sys::{ptrace, RemoteAddr, Tid};

use super::{Arch, Restart};

/// The x86_64 (64-bit mode) architecture.
pub struct X86_64;

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;
const NR_RESTART_SYSCALL: u64 = 219;
/// Length of the `syscall` instruction, by which the kernel rewinds rip on restart.
const SYSCALL_LEN: u64 = 2;
/// Code segment selector of 64-bit user mode.
const USER_CS_64: u64 = 0x33;
/// EFLAGS.TF: single-step trap.
const FLAG_TF: u64 = 1 << 8;

impl Arch for X86_64 {
    type Regs = ptrace::UserRegs;

    const SYSCALL_INSN: &'static [u8] = &[0x0f, 0x05];

    fn get_regs(tid: Tid) -> io::Result<Self::Regs> {
        ptrace::get_regs(tid)
    }

    fn set_regs(tid: Tid, regs: &Self::Regs) -> io::Result<()> {
        ptrace::set_regs(tid, regs)
    }

    fn check_native(regs: &Self::Regs) -> Result<(), u64> {
        if regs.cs == USER_CS_64 {
            Ok(())
        } else {
            Err(regs.cs)
        }
    }

    fn ip(regs: &Self::Regs) -> RemoteAddr {
        RemoteAddr(regs.rip)
    }

    fn syscall_regs(saved: &Self::Regs, site: RemoteAddr, nr: i64, args: &[u64; 6]) -> Self::Regs {
        let mut r = *saved;
        r.rip = site.get();
        r.rax = nr as u64;
        // -1: "not in a syscall", so the kernel applies no restart on the way out of the
        // stop we resume from.
        r.orig_rax = u64::MAX;
        r.rdi = args[0];
        r.rsi = args[1];
        r.rdx = args[2];
        r.r10 = args[3];
        r.r8 = args[4];
        r.r9 = args[5];
        r.eflags &= !FLAG_TF;
        r
    }

    fn batch_regs(saved: &Self::Regs, code: RemoteAddr, with: [u64; 5]) -> Self::Regs {
        let mut r = *saved;
        r.rip = code.get();
        r.orig_rax = u64::MAX;
        [r.rbx, r.r12, r.r13, r.r14, r.r15] = with;
        r.eflags &= !FLAG_TF;
        r
    }

    fn batch_cursor(regs: &Self::Regs) -> u64 {
        regs.rbx
    }

    fn syscall_result(regs: &Self::Regs) -> i64 {
        regs.rax as i64
    }

    fn pending_restart(regs: &Self::Regs) -> Option<Restart> {
        if (regs.orig_rax as i64) < 0 {
            return None;
        }
        match -(regs.rax as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => Some(Restart::Again),
            ERESTART_RESTARTBLOCK => Some(Restart::RestartBlock),
            _ => None,
        }
    }

    fn regs_to_words(r: &Self::Regs) -> Vec<u64> {
        vec![
            r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx,
            r.rdx, r.rsi, r.rdi, r.orig_rax, r.rip, r.cs, r.eflags, r.rsp, r.ss, r.fs_base,
            r.gs_base, r.ds, r.es, r.fs, r.gs,
        ]
    }

    fn regs_from_words(w: &[u64]) -> Option<Self::Regs> {
        let &[r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss, fs_base, gs_base, ds, es, fs, gs] =
            w
        else {
            return None;
        };
        Some(ptrace::UserRegs {
            r15,
            r14,
            r13,
            r12,
            rbp,
            rbx,
            r11,
            r10,
            r9,
            r8,
            rax,
            rcx,
            rdx,
            rsi,
            rdi,
            orig_rax,
            rip,
            cs,
            eflags,
            rsp,
            ss,
            fs_base,
            gs_base,
            ds,
            es,
            fs,
            gs,
        })
    }

    fn result_reg(regs: &Self::Regs) -> u64 {
        regs.rax
    }

    fn restarted(regs: &Self::Regs) -> Self::Regs {
        let mut r = *regs;
        match Self::pending_restart(regs) {
            Some(Restart::Again) => {
                r.rax = r.orig_rax;
                r.rip = r.rip.wrapping_sub(SYSCALL_LEN);
            }
            Some(Restart::RestartBlock) => {
                r.rax = NR_RESTART_SYSCALL;
                r.rip = r.rip.wrapping_sub(SYSCALL_LEN);
            }
            None => {}
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> ptrace::UserRegs {
        // SAFETY: user_regs_struct is plain integers; all-zero is a valid value.
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn regs_words_round_trip_keeps_every_register() {
        let words: Vec<u64> = (1..=27).collect();
        let r = X86_64::regs_from_words(&words).unwrap();
        assert_eq!((r.r15, r.rip, r.gs), (1, 17, 27));
        assert_eq!(X86_64::regs_to_words(&r), words);
        assert!(X86_64::regs_from_words(&words[1..]).is_none());
    }

    #[test]
    fn pending_restart_user_code_is_none() {
        let mut r = regs();
        r.orig_rax = u64::MAX;
        r.rax = (-ERESTARTSYS) as u64;
        assert_eq!(X86_64::pending_restart(&r), None);
    }

    #[test]
    fn pending_restart_read_interrupted_is_again() {
        let mut r = regs();
        r.orig_rax = 0;
        r.rax = (-ERESTARTSYS) as u64;
        assert_eq!(X86_64::pending_restart(&r), Some(Restart::Again));
    }

    #[test]
    fn pending_restart_completed_syscall_is_none() {
        let mut r = regs();
        r.orig_rax = 0;
        r.rax = (-4i64) as u64; // -EINTR is final
        assert_eq!(X86_64::pending_restart(&r), None);
    }

    #[test]
    fn restarted_nanosleep_becomes_restart_syscall() {
        let mut r = regs();
        r.orig_rax = 35;
        r.rax = (-ERESTART_RESTARTBLOCK) as u64;
        r.rip = 0x1002;
        let out = X86_64::restarted(&r);
        assert_eq!((out.rax, out.rip), (NR_RESTART_SYSCALL, 0x1000));
    }

    #[test]
    fn restarted_futex_reexecutes_same_syscall() {
        let mut r = regs();
        r.orig_rax = 202;
        r.rax = (-ERESTARTNOINTR) as u64;
        r.rip = 0x2002;
        let out = X86_64::restarted(&r);
        assert_eq!((out.rax, out.rip), (202, 0x2000));
    }

    #[test]
    fn batch_regs_sets_cursor_end_and_stop_arguments() {
        let mut saved = regs();
        saved.orig_rax = 7;
        saved.eflags = 0x246 | FLAG_TF;
        let r = X86_64::batch_regs(&saved, RemoteAddr(0x9000), [1, 2, 3, 4, 5]);
        assert_eq!(
            (r.rip, r.rbx, r.r12, r.r13, r.r14, r.r15, r.orig_rax, r.eflags),
            (0x9000, 1, 2, 3, 4, 5, u64::MAX, 0x246)
        );
        assert_eq!(X86_64::batch_cursor(&r), 1);
    }

    #[test]
    fn syscall_regs_sets_arguments_and_clears_restart() {
        let mut saved = regs();
        saved.orig_rax = 0;
        saved.rax = (-ERESTARTSYS) as u64;
        saved.eflags = 0x246 | FLAG_TF;
        let r = X86_64::syscall_regs(&saved, RemoteAddr(0x7000), 39, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(
            (r.rip, r.rax, r.orig_rax, r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9, r.eflags),
            (0x7000, 39, u64::MAX, 1, 2, 3, 4, 5, 6, 0x246)
        );
    }
}
