//! core-TID.img: registers, FPU/xsave state, TLS, and the per-task and per-thread state.

use crs_compel::{Arch, Host, Regs, Restart, ThreadState};
use crs_images::pb::core::{Seccomp_mode, Thread_core_entry, Thread_sas_entry};
use crs_images::pb::core_x86::{
    Thread_info_x86, User_desc_t, User_x86_cet_entry, User_x86_fpregs_entry, User_x86_regs_entry,
    User_x86_regs_mode, User_x86_xsave_entry,
};
use crs_images::pb::creds::Creds_entry;
use crs_images::pb::rseq::Rseq_entry;
use crs_images::pb::siginfo::{Siginfo_entry, Signal_queue_entry};
use crs_images::pb::timer::Posix_timer_entry;
use crs_proc::{PosixTimer, Status, TimerNotify};
use protobuf::{EnumOrUnknown, MessageField};

use crate::task::{AltStack, TimerVal, UserDesc};

const EINTR: i64 = 4;

/// The registers as CRIU records them: a syscall the kernel would restart is rewound to
/// be issued again; one that needs the restart block (nanosleep and friends) returns
/// EINTR instead, since the restart block cannot be carried over.
pub(crate) fn dumped_regs(regs: &Regs) -> Regs {
    match Host::pending_restart(regs) {
        Some(Restart::Again) => Host::restarted(regs),
        Some(Restart::RestartBlock) => {
            let mut r = *regs;
            r.rax = (-EINTR) as u64;
            r
        }
        None => *regs,
    }
}

pub(crate) fn gpregs(r: &Regs) -> User_x86_regs_entry {
    User_x86_regs_entry {
        r15: Some(r.r15),
        r14: Some(r.r14),
        r13: Some(r.r13),
        r12: Some(r.r12),
        bp: Some(r.rbp),
        bx: Some(r.rbx),
        r11: Some(r.r11),
        r10: Some(r.r10),
        r9: Some(r.r9),
        r8: Some(r.r8),
        ax: Some(r.rax),
        cx: Some(r.rcx),
        dx: Some(r.rdx),
        si: Some(r.rsi),
        di: Some(r.rdi),
        orig_ax: Some(r.orig_rax),
        ip: Some(r.rip),
        cs: Some(r.cs),
        flags: Some(r.eflags),
        sp: Some(r.rsp),
        ss: Some(r.ss),
        fs_base: Some(r.fs_base),
        gs_base: Some(r.gs_base),
        ds: Some(r.ds),
        es: Some(r.es),
        fs: Some(r.fs),
        gs: Some(r.gs),
        mode: Some(EnumOrUnknown::new(User_x86_regs_mode::NATIVE)),
        ..Default::default()
    }
}

fn le16(b: &[u8], o: usize) -> u32 {
    u16::from_le_bytes([b[o], b[o + 1]]) as u32
}
fn le32(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn le64(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// XSAVE feature bits the image has a field for.
const XFEATURE_YMM: u32 = 2;
const XFEATURE_BNDREGS: u32 = 3;
const XFEATURE_BNDCSR: u32 = 4;
const XFEATURE_OPMASK: u32 = 5;
const XFEATURE_ZMM_HI256: u32 = 6;
const XFEATURE_HI16_ZMM: u32 = 7;
const XFEATURE_PKRU: u32 = 9;
/// The PKRU value every task starts with (all keys but 0 access-disabled).
const PKRU_DEFAULT: u32 = 0x5555_5554;

/// The XSAVE features recorded: those CPUID enumerates for XSAVE, whose CPU feature is
/// present, among the user features CRIU knows (the mask CRIU's compel computes, so the
/// images carry the same fields).
fn xfeatures() -> u64 {
    use crs_sys::x86::cpuid;
    let d = cpuid(0xd, 0);
    let mut mask = (d.eax as u64) | ((d.edx as u64) << 32);
    let l1 = cpuid(1, 0);
    let l7 = cpuid(7, 0);
    let avx = l1.ecx & (1 << 28) != 0;
    let mpx = l7.ebx & (1 << 14) != 0;
    let avx512f = l7.ebx & (1 << 16) != 0;
    let pku = l7.ecx & (1 << 3) != 0;
    for (bit, present) in [
        (XFEATURE_YMM, avx),
        (XFEATURE_BNDREGS, mpx),
        (XFEATURE_BNDCSR, mpx),
        (XFEATURE_OPMASK, avx512f),
        (XFEATURE_ZMM_HI256, avx512f),
        (XFEATURE_HI16_ZMM, avx512f),
        (XFEATURE_PKRU, pku),
    ] {
        if !present {
            mask &= !(1u64 << bit);
        }
    }
    let user = [
        0,
        1,
        XFEATURE_YMM,
        XFEATURE_BNDREGS,
        XFEATURE_BNDCSR,
        XFEATURE_OPMASK,
        XFEATURE_ZMM_HI256,
        XFEATURE_HI16_ZMM,
        XFEATURE_PKRU,
    ]
    .iter()
    .fold(0u64, |m, b| m | (1 << b));
    mask & user
}

fn has_shstk() -> bool {
    crs_sys::x86::cpuid(7, 0).ecx & (1 << 7) != 0
}

/// With the x87 or SSE component in its init state (XSTATE_BV bits 0/1 clear), the
/// kernel's XSAVE copy of the legacy area may not hold the real values (mxcsr_mask among
/// them): take that area from NT_PRFPREG instead, as CRIU does.
pub(crate) fn fill_legacy_fpu(tid: crs_compel::Tid, xs: &mut [u8]) -> crate::error::Result<()> {
    if xs.len() < 520 || le64(xs, 512) & 3 == 3 {
        return Ok(());
    }
    crs_sys::ptrace::get_regset(tid, crs_sys::ptrace::nt::PRFPREG, &mut xs[..512]).map_err(
        |source| crate::DumpError::File {
            what: "PTRACE_GETREGSET(NT_PRFPREG) of thread",
            path: tid.to_string().into(),
            source,
        },
    )?;
    Ok(())
}

/// The FPU and extended state from the NT_X86_XSTATE regset (XSAVE layout).
pub(crate) fn fpregs(xs: &[u8]) -> User_x86_fpregs_entry {
    let mut fp = User_x86_fpregs_entry {
        cwd: Some(le16(xs, 0)),
        swd: Some(le16(xs, 2)),
        twd: Some(le16(xs, 4)),
        fop: Some(le16(xs, 6)),
        rip: Some(le64(xs, 8)),
        rdp: Some(le64(xs, 16)),
        mxcsr: Some(le32(xs, 24)),
        mxcsr_mask: Some(le32(xs, 28)),
        st_space: (0..32).map(|i| le32(xs, 32 + 4 * i)).collect(),
        xmm_space: (0..64).map(|i| le32(xs, 160 + 4 * i)).collect(),
        ..Default::default()
    };
    if xs.len() < 576 {
        return fp;
    }
    let mask = xfeatures();
    let mut x = User_x86_xsave_entry {
        xstate_bv: Some(le64(xs, 512)),
        ..Default::default()
    };
    let slice = |feature: u32| -> Option<&[u8]> {
        if mask & (1 << feature) == 0 {
            return None;
        }
        let (off, size) = crs_sys::x86::xsave_component(feature);
        xs.get(off..off + size)
    };
    let words32 = |b: &[u8]| b.chunks_exact(4).map(|c| le32(c, 0)).collect::<Vec<_>>();
    let words64 = |b: &[u8]| b.chunks_exact(8).map(|c| le64(c, 0)).collect::<Vec<_>>();
    if let Some(b) = slice(XFEATURE_YMM) {
        x.ymmh_space = words32(b);
    }
    if let Some(b) = slice(XFEATURE_BNDREGS) {
        x.bndreg_state = words64(b);
    }
    if let Some(b) = slice(XFEATURE_BNDCSR) {
        x.bndcsr_state = words64(b);
    }
    if let Some(b) = slice(XFEATURE_OPMASK) {
        x.opmask_reg = words64(b);
    }
    if let Some(b) = slice(XFEATURE_ZMM_HI256) {
        x.zmm_upper = words64(b);
    }
    if let Some(b) = slice(XFEATURE_HI16_ZMM) {
        x.hi16_zmm = words64(b);
    }
    if let Some(b) = slice(XFEATURE_PKRU) {
        // CRIU 4.2 leaves PKRU out on this machine's CPUs; it is recorded only when a task
        // changed it from the kernel's default, so ordinary images carry the same fields.
        let words = words32(b);
        if words.first().is_some_and(|&p| p != PKRU_DEFAULT) {
            x.pkru = words;
        }
    }
    if has_shstk() {
        // Shadow stacks are not enabled by any task crs dumps yet: record them as off.
        x.cet = MessageField::some(User_x86_cet_entry {
            cet: Some(0),
            ssp: Some(0),
            ..Default::default()
        });
    }
    fp.xsave = MessageField::some(x);
    fp
}

pub(crate) fn tls(descs: &[UserDesc]) -> Vec<User_desc_t> {
    descs
        .iter()
        .map(|d| User_desc_t {
            entry_number: Some(d.entry_number),
            base_addr: Some(d.base_addr),
            limit: Some(d.limit),
            seg_32bit: Some(d.flags & 1 != 0),
            contents_h: Some(d.flags & 4 != 0),
            contents_l: Some(d.flags & 2 != 0),
            read_exec_only: Some(d.flags & 8 != 0),
            limit_in_pages: Some(d.flags & 16 != 0),
            seg_not_present: Some(d.flags & 32 != 0),
            usable: Some(d.flags & 64 != 0),
            ..Default::default()
        })
        .collect()
}

pub(crate) fn thread_info(
    st: &ThreadState,
    descs: &[UserDesc],
    clear_tid_addr: u64,
) -> Thread_info_x86 {
    Thread_info_x86 {
        clear_tid_addr: Some(clear_tid_addr),
        gpregs: MessageField::some(gpregs(&dumped_regs(&st.regs))),
        fpregs: MessageField::some(fpregs(&st.xstate)),
        tls: tls(descs),
        ..Default::default()
    }
}

pub(crate) fn signal_queue(q: &[crs_compel::QueuedSignal]) -> Signal_queue_entry {
    Signal_queue_entry {
        signals: q
            .iter()
            .map(|s| Siginfo_entry {
                siginfo: Some(s.bytes().to_vec()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// One POSIX timer as CRIU records it: the notify kind is SIGEV_THREAD_ID whenever
/// /proc names a thread (whatever the kind printed before it), and the thread id is
/// recorded only then; the remaining time and interval as timer_gettime gave them.
pub(crate) fn posix_timer(t: &PosixTimer, val: &TimerVal, overrun: u32) -> Posix_timer_entry {
    let notify = if t.thread_id {
        libc::SIGEV_THREAD_ID
    } else {
        match t.notify {
            TimerNotify::Signal => libc::SIGEV_SIGNAL,
            TimerNotify::Thread => libc::SIGEV_THREAD,
            TimerNotify::None | TimerNotify::Other(_) => libc::SIGEV_NONE,
        }
    };
    Posix_timer_entry {
        it_id: Some(t.id as u32),
        clock_id: Some(t.clock_id as u32),
        si_signo: Some(t.signo as u32),
        it_sigev_notify: Some(notify as u32),
        sival_ptr: Some(t.sigev_value),
        overrun: Some(overrun),
        isec: Some(val.interval.0),
        insec: Some(val.interval.1),
        vsec: Some(val.value.0),
        vnsec: Some(val.value.1),
        notify_thread_id: t.thread_id.then_some(t.notify_pid),
        ..Default::default()
    }
}

fn caps(c: u64) -> Vec<u32> {
    vec![c as u32, (c >> 32) as u32]
}

pub(crate) fn creds(status: &Status, secbits: u32) -> Creds_entry {
    Creds_entry {
        uid: Some(status.uid.real),
        gid: Some(status.gid.real),
        euid: Some(status.uid.effective),
        egid: Some(status.gid.effective),
        suid: Some(status.uid.saved),
        sgid: Some(status.gid.saved),
        fsuid: Some(status.uid.fs),
        fsgid: Some(status.gid.fs),
        cap_inh: caps(status.cap_inh.0),
        cap_prm: caps(status.cap_prm.0),
        cap_eff: caps(status.cap_eff.0),
        cap_bnd: caps(status.cap_bnd.0),
        cap_amb: caps(status.cap_amb.0),
        secbits: Some(secbits),
        groups: status.groups.clone(),
        no_new_privs: status.no_new_privs.then_some(1),
        ..Default::default()
    }
}

/// Per-thread facts gathered by injected syscalls.
pub(crate) struct ThreadExtra {
    pub robust_list: (u64, u32),
    pub sched: (u32, i32, Option<u32>),
    pub sas: AltStack,
    pub pdeath_sig: u32,
    pub secbits: u32,
    pub tls: Vec<UserDesc>,
    pub clear_tid_addr: u64,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn thread_core(
    st: &ThreadState,
    extra: &ThreadExtra,
    status: &Status,
    comm: &str,
    leader: bool,
    seccomp_filter: Option<u32>,
    cg_set: u32,
) -> Thread_core_entry {
    let (policy, nice, prio) = extra.sched;
    let mut tc = Thread_core_entry {
        futex_rla: Some(extra.robust_list.0),
        futex_rla_len: Some(extra.robust_list.1),
        sched_nice: Some(nice),
        sched_policy: Some(policy),
        sched_prio: prio,
        sas: MessageField::some(Thread_sas_entry {
            ss_sp: Some(extra.sas.sp),
            ss_size: Some(extra.sas.size),
            ss_flags: Some(extra.sas.flags),
            ..Default::default()
        }),
        signals_p: MessageField::some(signal_queue(&st.pending)),
        creds: MessageField::some(creds(status, extra.secbits)),
        comm: Some(comm.to_string()),
        cg_set: Some(cg_set),
        ..Default::default()
    };
    if !leader {
        tc.blk_sigset = Some(st.sigmask);
    }
    if extra.pdeath_sig != 0 {
        tc.pdeath_sig = Some(extra.pdeath_sig);
    }
    match st.seccomp_mode {
        1 => tc.seccomp_mode = Some(EnumOrUnknown::new(Seccomp_mode::strict)),
        2 => {
            tc.seccomp_mode = Some(EnumOrUnknown::new(Seccomp_mode::filter));
            tc.seccomp_filter = seccomp_filter;
        }
        _ => {}
    }
    if st.rseq.rseq_abi_pointer != 0 {
        tc.rseq_entry = MessageField::some(Rseq_entry {
            rseq_abi_pointer: Some(st.rseq.rseq_abi_pointer),
            rseq_abi_size: Some(st.rseq.rseq_abi_size),
            signature: Some(st.rseq.signature),
            ..Default::default()
        });
    }
    tc
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> Regs {
        Regs {
            r15: 0,
            r14: 0,
            r13: 0,
            r12: 0,
            rbp: 0,
            rbx: 0,
            r11: 0,
            r10: 0,
            r9: 0,
            r8: 0,
            rax: 0,
            rcx: 0,
            rdx: 0,
            rsi: 0,
            rdi: 0,
            orig_rax: 0,
            rip: 0,
            cs: 0x33,
            eflags: 0,
            rsp: 0,
            ss: 0x2b,
            fs_base: 0,
            gs_base: 0,
            ds: 0,
            es: 0,
            fs: 0,
            gs: 0,
        }
    }

    #[test]
    fn dumped_regs_nanosleep_returns_eintr() {
        let mut r = regs();
        r.orig_rax = 230;
        r.rax = (-516i64) as u64;
        r.rip = 0x1002;
        let d = dumped_regs(&r);
        assert_eq!((d.rax as i64, d.rip, d.orig_rax), (-4, 0x1002, 230));
    }

    #[test]
    fn dumped_regs_read_restart_rewinds() {
        let mut r = regs();
        r.orig_rax = 0;
        r.rax = (-512i64) as u64;
        r.rip = 0x2002;
        let d = dumped_regs(&r);
        assert_eq!((d.rax, d.rip), (0, 0x2000));
    }

    #[test]
    fn fpregs_legacy_area_decoded() {
        let mut xs = vec![0u8; 512];
        xs[0..2].copy_from_slice(&0x37fu16.to_le_bytes());
        xs[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        let fp = fpregs(&xs);
        assert_eq!((fp.cwd, fp.mxcsr), (Some(0x37f), Some(0x1f80)));
        assert_eq!((fp.st_space.len(), fp.xmm_space.len()), (32, 64));
        assert!(fp.xsave.is_none());
    }

    fn timer(notify: TimerNotify, thread_id: bool) -> PosixTimer {
        PosixTimer {
            id: 3,
            signo: 35,
            sigev_value: 0x71c,
            notify,
            thread_id,
            notify_pid: 4321,
            clock_id: 1,
        }
    }

    #[test]
    fn posix_timer_thread_id_recorded_as_criu() {
        let val = TimerVal {
            interval: (0, 50_000_000),
            value: (0, 1_000),
        };
        let e = posix_timer(&timer(TimerNotify::Signal, true), &val, 2);
        assert_eq!(e.it_sigev_notify, Some(libc::SIGEV_THREAD_ID as u32));
        assert_eq!(e.notify_thread_id, Some(4321));
        assert_eq!(
            (e.it_id, e.clock_id, e.si_signo),
            (Some(3), Some(1), Some(35))
        );
        assert_eq!(
            (e.insec, e.vnsec, e.overrun),
            (Some(50_000_000), Some(1_000), Some(2))
        );
        let e = posix_timer(&timer(TimerNotify::Thread, true), &val, 0);
        assert_eq!(e.it_sigev_notify, Some(libc::SIGEV_THREAD_ID as u32));
    }

    #[test]
    fn posix_timer_process_notify_has_no_thread_id() {
        let val = TimerVal::default();
        let e = posix_timer(&timer(TimerNotify::Signal, false), &val, 0);
        assert_eq!(e.it_sigev_notify, Some(libc::SIGEV_SIGNAL as u32));
        assert_eq!(e.notify_thread_id, None);
        let e = posix_timer(&timer(TimerNotify::None, false), &val, 0);
        assert_eq!(e.it_sigev_notify, Some(libc::SIGEV_NONE as u32));
    }

    #[test]
    fn tls_empty_slot_flags_decoded() {
        let t = tls(&[UserDesc {
            entry_number: 12,
            base_addr: 0,
            limit: 0,
            flags: 8 | 32,
        }]);
        assert_eq!(t[0].read_exec_only, Some(true));
        assert_eq!(t[0].seg_not_present, Some(true));
        assert_eq!(t[0].usable, Some(false));
    }
}
