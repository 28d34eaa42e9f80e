//! Process and thread state put back by syscalls run inside the new task: mm fields
//! (PR_SET_MM_MAP), prctl values, sigactions, sigaltstack, robust list, rseq, pending
//! signals, rlimits. (Credentials: `creds`; timers: `timers`.)

use crs_images::pb::core::Thread_core_entry;
use crs_images::pb::core_x86::Thread_info_x86;
use tracing::warn;

use crate::images::Images;
use crate::remote::{Batch, Remote};
use crate::RestoreError;

const PR_SET_MM: u64 = 35;
const PR_SET_MM_MAP: u64 = 14;
const RSEQ_FLAG_UNREGISTER: u64 = 1;
const SS_DISABLE: u32 = 2;

fn le(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Unregisters the rseq area the new task inherited from crs (it lives in memory that is
/// about to be unmapped, and the kernel would write to it).
pub(crate) fn drop_inherited_rseq(r: &mut Remote<'_>) -> Result<(), RestoreError> {
    let conf =
        crs_sys::ptrace::get_rseq_configuration(r.pid).map_err(|source| RestoreError::Compel {
            pid: r.pid,
            what: "reading the inherited rseq registration".into(),
            source: crs_compel::Error::Rseq { tid: r.pid, source },
        })?;
    if conf.rseq_abi_pointer == 0 {
        return Ok(());
    }
    r.call(
        libc::SYS_rseq,
        [
            conf.rseq_abi_pointer,
            u64::from(conf.rseq_abi_size),
            RSEQ_FLAG_UNREGISTER,
            u64::from(conf.signature),
            0,
            0,
        ],
        || "unregistering the inherited rseq area".into(),
    )?;
    Ok(())
}

/// mm fields, brk, auxv and the exe link, in one PR_SET_MM_MAP.
pub(crate) fn set_mm(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    let mm = &images.mm;
    let exe = crate::files::open_path(images, mm.exe_file_id());
    let p = r.put_str(0, &exe)?;
    let fd = r.call(
        libc::SYS_openat,
        [
            libc::AT_FDCWD as u64,
            p,
            (libc::O_RDONLY | libc::O_CLOEXEC | libc::O_LARGEFILE) as u64,
            0,
            0,
            0,
        ],
        || format!("opening the executable {exe}"),
    )?;
    let auxv = r.put(4096, &le(&mm.mm_saved_auxv))?;
    let mut map = le(&[
        mm.mm_start_code(),
        mm.mm_end_code(),
        mm.mm_start_data(),
        mm.mm_end_data(),
        mm.mm_start_brk(),
        mm.mm_brk(),
        mm.mm_start_stack(),
        mm.mm_arg_start(),
        mm.mm_arg_end(),
        mm.mm_env_start(),
        mm.mm_env_end(),
        auxv,
    ]);
    map.extend_from_slice(&((mm.mm_saved_auxv.len() * 8) as u32).to_le_bytes());
    map.extend_from_slice(&(fd as u32).to_le_bytes());
    let len = map.len() as u64;
    // The map and the close in one batch (the map sits below the batch table).
    let p = r.put_for_batch(auxv_room(r)?, &map)?;
    let mut batch = Batch::default();
    let (start_code, end_code) = (mm.mm_start_code(), mm.mm_end_code());
    let (start_brk, brk) = (mm.mm_start_brk(), mm.mm_brk());
    batch.push(
        libc::SYS_prctl,
        [PR_SET_MM, PR_SET_MM_MAP, p, len, 0, 0],
        move || {
            format!(
                "prctl(PR_SET_MM_MAP) (code {start_code:#x}-{end_code:#x}, brk {start_brk:#x}-{brk:#x}, exe {exe})"
            )
        },
    );
    batch.push(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0], || {
        "closing the exe fd".into()
    });
    r.run(batch)?;
    Ok(())
}

/// Where the PR_SET_MM_MAP struct goes: after the auxv (at 4096, at most 1 KiB).
fn auxv_room(r: &Remote<'_>) -> Result<usize, RestoreError> {
    let off = 4096 + crate::images::AUXV_WORDS * 8;
    if off + 256 > r.batch_room() {
        return Err(RestoreError::Unsupported {
            what: format!("a scratch area of {} bytes", r.scratch_len),
        });
    }
    Ok(off)
}

/// prctl values, personality, robust list, clear-tid address, rseq, sigaltstack,
/// sigactions. (The parent-death signal and the dumpable flag come after the
/// credentials, which reset them; timers are armed last.)
pub(crate) fn set_misc(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    let core = &images.core;
    let tc = core.tc.as_ref().expect("checked at load");
    let th = core.thread_core.as_ref().expect("checked at load");
    let ti = core.thread_info.as_ref().expect("checked at load");

    // One batch: the leader's own state, personality, prctls, sigactions.
    let mut batch = Batch::default();
    let used = thread_misc(r, &mut batch, 0, th, ti, tc.comm())?;
    let personality = tc.personality();
    batch.push(
        libc::SYS_personality,
        [u64::from(personality), 0, 0, 0, 0, 0],
        move || format!("personality({personality:#x})"),
    );
    if tc.child_subreaper() {
        batch.push(
            libc::SYS_prctl,
            [libc::PR_SET_CHILD_SUBREAPER as u64, 1, 0, 0, 0, 0],
            || "prctl(PR_SET_CHILD_SUBREAPER)".into(),
        );
    }
    if images.mm.thp_disabled() {
        batch.push(
            libc::SYS_prctl,
            [libc::PR_SET_THP_DISABLE as u64, 1, 0, 0, 0, 0],
            || "prctl(PR_SET_THP_DISABLE)".into(),
        );
    }

    // Every catchable signal, in image order (1..=64 without SIGKILL and SIGSTOP), that
    // is not at the plain default in the image or is not at it in the new task now (crs's
    // own handlers and ignored signals were inherited and must not survive). A plain
    // default needs no syscall.
    let inherited = inherited_actions(r.pid)?;
    let sigs = (1..=64u64).filter(|&s| s != libc::SIGKILL as u64 && s != libc::SIGSTOP as u64);
    let mut table = Vec::with_capacity(62 * 32);
    let mut which = Vec::new();
    for (sig, sa) in sigs.zip(tc.sigactions.iter()) {
        if sa.compat_sigaction() {
            return Err(RestoreError::Unsupported {
                what: "compat sigactions".into(),
            });
        }
        let plain = [sa.sigaction(), sa.flags(), sa.restorer(), sa.mask()] == [0; 4];
        if plain && inherited & (1u64 << (sig - 1)) == 0 {
            continue;
        }
        table.extend(le(&[sa.sigaction(), sa.flags(), sa.restorer(), sa.mask()]));
        which.push(sig);
    }
    let base = r.put_for_batch(used, &table)?;
    for (i, sig) in which.into_iter().enumerate() {
        batch.push(
            libc::SYS_rt_sigaction,
            [sig, base + 32 * i as u64, 0, 8, 0, 0],
            move || format!("rt_sigaction({sig})"),
        );
    }
    r.run(batch)?;

    if let Some(adj) = tc.oom_score_adj {
        if adj != 0 {
            let path = format!("/proc/{}/oom_score_adj", r.pid);
            std::fs::write(&path, adj.to_string()).map_err(|source| RestoreError::Write {
                path: path.into(),
                source,
            })?;
        }
    }
    Ok(())
}

/// The state of one thread that only the thread itself can set, by syscalls run in it
/// (`r.pid` is the thread): its name, clear-tid address, robust futex list, rseq area and
/// alternate signal stack, in one batch. `comm` is the name when the image has no thread
/// name.
pub(crate) fn set_thread_misc(
    r: &mut Remote<'_>,
    th: &Thread_core_entry,
    ti: &Thread_info_x86,
    comm: &str,
) -> Result<(), RestoreError> {
    let mut batch = Batch::default();
    thread_misc(r, &mut batch, 0, th, ti, comm)?;
    r.run(batch)?;
    Ok(())
}

/// Adds the calls of [`set_thread_misc`] to `batch`, with their arguments in scratch from
/// offset `off`; returns the scratch offset after them.
fn thread_misc(
    r: &mut Remote<'_>,
    batch: &mut Batch<'_>,
    off: usize,
    th: &Thread_core_entry,
    ti: &Thread_info_x86,
    comm: &str,
) -> Result<usize, RestoreError> {
    let comm = th.comm.as_deref().unwrap_or(comm);
    let mut name = comm.as_bytes()[..comm.len().min(15)].to_vec();
    name.push(0);
    let p = r.put_for_batch(off, &name)?;
    batch.push(
        libc::SYS_prctl,
        [libc::PR_SET_NAME as u64, p, 0, 0, 0, 0],
        || "prctl(PR_SET_NAME)".into(),
    );
    batch.push(
        libc::SYS_set_tid_address,
        [ti.clear_tid_addr(), 0, 0, 0, 0, 0],
        || "set_tid_address".into(),
    );
    if th.futex_rla_len() != 0 {
        batch.push(
            libc::SYS_set_robust_list,
            [th.futex_rla(), u64::from(th.futex_rla_len()), 0, 0, 0, 0],
            || "set_robust_list".into(),
        );
    }
    if let Some(rs) = th.rseq_entry.as_ref() {
        let at = rs.rseq_abi_pointer();
        if at != 0 {
            batch.push(
                libc::SYS_rseq,
                [
                    at,
                    u64::from(rs.rseq_abi_size()),
                    0,
                    u64::from(rs.signature()),
                    0,
                    0,
                ],
                move || format!("rseq registration at {at:#x}"),
            );
        }
    }
    let (sp, size, flags) = th.sas.as_ref().map_or((0, 0, SS_DISABLE), |s| {
        (s.ss_sp(), s.ss_size(), s.ss_flags())
    });
    let mut ss = le(&[sp]);
    ss.extend_from_slice(&(flags as i32).to_le_bytes());
    ss.extend_from_slice(&[0; 4]);
    ss.extend_from_slice(&size.to_le_bytes());
    let ss_off = off + 16;
    let p = r.put_for_batch(ss_off, &ss)?;
    batch.push(libc::SYS_sigaltstack, [p, 0, 0, 0, 0, 0], move || {
        format!("sigaltstack({sp:#x}, {size:#x}, {flags:#x})")
    });
    Ok(ss_off + ss.len())
}

/// Queues the dumped pending signals again (private to each thread, then shared).
pub(crate) fn queue_signals(r: &mut Remote<'_>, images: &Images) -> Result<usize, RestoreError> {
    let core = &images.core;
    let tc = core.tc.as_ref().expect("checked at load");
    let th = core.thread_core.as_ref().expect("checked at load");
    let mut n = 0;
    // (tid inside, crs's tid) of each thread.
    let leader = (images.pid, r.pid);
    let private = th
        .signals_p
        .iter()
        .flat_map(|q| q.signals.iter())
        .map(|s| (Some(leader), s));
    let shared = tc
        .signals_s
        .iter()
        .flat_map(|q| q.signals.iter())
        .map(|s| (None, s));
    // A thread's private signals are queued from inside that thread: the kernel lets
    // only the target itself queue kernel-coded (si_code >= 0) or tkill signals.
    let others = images.threads.iter().flat_map(|t| {
        t.thread_core()
            .signals_p
            .iter()
            .flat_map(|q| q.signals.iter())
            .map(move |s| (Some((t.tid, t.host.get())), s))
    });
    for (target, s) in private.chain(others).chain(shared) {
        let info = s.siginfo();
        let signo = u64::from(u32::from_le_bytes(
            info[0..4].try_into().expect("128 bytes checked"),
        ));
        let p = r.put(0, info)?;
        // The task's own pid and tids: as its pid namespace knows them (the images').
        let pid = images.pid as u64;
        if let Some((tid, host)) = target {
            r.in_thread(host, |r| {
                r.call(
                    libc::SYS_rt_tgsigqueueinfo,
                    [pid, tid as u64, signo, p, 0, 0],
                    || format!("queueing signal {signo} to thread {tid}"),
                )
            })?;
        } else {
            r.call(libc::SYS_rt_sigqueueinfo, [pid, signo, p, 0, 0, 0], || {
                format!("queueing shared signal {signo}")
            })?;
        }
        n += 1;
    }
    Ok(n)
}

/// Sets the resource limits from crs (prlimit). A limit the kernel refuses to raise (no
/// CAP_SYS_RESOURCE) is left as inherited, with a warning.
pub(crate) fn set_rlimits(pid: i32, images: &Images) {
    let tc = images.core.tc.as_ref().expect("checked at load");
    let Some(rl) = tc.rlimits.as_ref() else {
        return;
    };
    for (res, l) in rl.rlimits.iter().enumerate() {
        if let Err(e) = crs_sys::restore::prlimit(pid, res as u32, l.cur(), l.max()) {
            warn!(pid, resource = res, cur = l.cur(), max = l.max(), error = %e, "resource limit not restored");
        }
    }
}

/// The signals task `pid` catches or ignores now (SigCgt | SigIgn of its status): the
/// actions it inherited from crs.
fn inherited_actions(pid: crs_compel::Tid) -> Result<u64, RestoreError> {
    let st = crate::creds::status(pid)?;
    Ok(st.sig_cgt.0 | st.sig_ign.0)
}

/// Scheduling policy, real-time priority and nice value of every thread, set from crs
/// (CAP_SYS_NICE; the new task inherited crs's own, usually SCHED_OTHER at nice 0).
pub(crate) fn set_sched(images: &Images) -> Result<(), RestoreError> {
    let leader = images.core.thread_core.as_ref().expect("checked at load");
    // Set from crs: crs's tids.
    let all = std::iter::once((images.host.get(), leader)).chain(
        images
            .threads
            .iter()
            .map(|t| (t.host.get(), t.thread_core())),
    );
    for (tid, tc) in all {
        let fail = |what: String| {
            move |e: std::io::Error| RestoreError::Syscall {
                pid: tid,
                what,
                errno: i64::from(e.raw_os_error().unwrap_or(0)),
            }
        };
        if let Some(policy) = tc.sched_policy {
            let policy = policy as i32;
            let base = policy & !libc::SCHED_RESET_ON_FORK;
            let prio = if base == libc::SCHED_FIFO || base == libc::SCHED_RR {
                tc.sched_prio() as i32
            } else {
                0
            };
            crs_sys::sched::set_scheduler(tid, policy, prio)
                .map_err(fail(format!("sched_setscheduler({policy}, {prio})")))?;
        }
        if let Some(nice) = tc.sched_nice {
            crs_sys::sched::set_nice(tid, nice).map_err(fail(format!("setpriority({nice})")))?;
        }
    }
    Ok(())
}

/// The MEMBARRIER_CMD_REGISTER_* commands a task can have registered for (global
/// expedited, private expedited, its sync-core and rseq variants).
pub(crate) const MEMBARRIER_REGISTER_BITS: u32 = (1 << 2) | (1 << 4) | (1 << 6) | (1 << 8);

/// Registers the task again for the membarrier commands it had registered for (a
/// property of its mm: one call per command, in the leader).
pub(crate) fn set_membarrier(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    let mask = images
        .core
        .tc
        .as_ref()
        .expect("checked at load")
        .membarrier_registration_mask();
    for bit in (0..32).map(|b| 1u32 << b).filter(|b| mask & b != 0) {
        r.call(
            libc::SYS_membarrier,
            [u64::from(bit), 0, 0, 0, 0, 0],
            || format!("membarrier({bit:#x}) registration"),
        )?;
    }
    Ok(())
}

/// The fd ranges a task must not have: everything outside the dumped fd numbers `fds`
/// (sorted or not), as inclusive (first, last) pairs up to the largest fd number.
pub(crate) fn unlisted_fd_ranges(fds: &[u32]) -> Vec<(u32, u32)> {
    let mut fds = fds.to_vec();
    fds.sort_unstable();
    fds.dedup();
    let mut out = Vec::new();
    let mut next = 0u64;
    for fd in fds.into_iter().map(u64::from) {
        if fd > next {
            out.push((next as u32, (fd - 1) as u32));
        }
        next = fd + 1;
    }
    if next <= u64::from(u32::MAX) {
        out.push((next as u32, u32::MAX));
    }
    out
}

/// Closes every fd of the task that its images do not list. The task runs its own setup
/// before it is seized, and the seize can catch it between reporting to its parent and
/// closing its report pipe (a task and its parent on one CPU make that likely): what the
/// dumped process did not have must not survive into the restored one.
pub(crate) fn close_unlisted_fds(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    if images.shares_fd_table {
        return Ok(());
    }
    let fds: Vec<u32> = images.fdinfo.iter().map(|e| e.fd()).collect();
    let mut batch = Batch::default();
    for (lo, hi) in unlisted_fd_ranges(&fds) {
        batch.push(
            libc::SYS_close_range,
            [u64::from(lo), u64::from(hi), 0, 0, 0, 0],
            move || format!("closing fds {lo}..={hi}, which the images do not list"),
        );
    }
    r.run(batch).map(drop)
}

#[cfg(test)]
mod tests {
    use super::unlisted_fd_ranges;

    #[test]
    fn unlisted_fd_ranges_are_the_gaps_and_the_rest() {
        assert_eq!(unlisted_fd_ranges(&[]), [(0, u32::MAX)]);
        assert_eq!(unlisted_fd_ranges(&[0, 1, 2]), [(3, u32::MAX)]);
        assert_eq!(
            unlisted_fd_ranges(&[7, 2, 2, 0, 3]),
            [(1, 1), (4, 6), (8, u32::MAX)]
        );
        assert_eq!(unlisted_fd_ranges(&[5]), [(0, 4), (6, u32::MAX)]);
        assert_eq!(unlisted_fd_ranges(&[u32::MAX]), [(0, u32::MAX - 1)]);
    }
}
