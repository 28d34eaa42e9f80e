//! Batches of injected syscalls: N independent syscalls run in a held thread with one
//! resume/stop cycle instead of N.
//!
//! ```text
//! process: [code page R-X: BATCH_CODE]  [table RW: entry 0 | entry 1 | ... ]
//! entry (64 bytes): nr, a1, a2, a3, a4, a5, a6, result
//! crs: write the table; rip = code, rbx = first entry, r12 = end of the table,
//!      r13/r14/r15 = tgid/tid/signal; mask = every signal but that one; PTRACE_CONT
//! task: for each entry: load, `syscall`, store rax; stop at the first -errno;
//!      then tgkill(tgid, tid, signal) ──► signal-delivery-stop, seen by crs's wait
//! crs: rbx says how far it got; read the results; put registers and mask back
//! ```
//!
//! The stop is a signal the batch sends itself with tgkill, not a trap instruction: a
//! trap forced while its signal is blocked or ignored resets the task's handler for it,
//! while a queued signal to a traced task changes nothing. Only that signal is unblocked
//! during the batch, and it is one that is not pending in the thread or the process, so
//! nothing the task had queued is taken. The stop is a signal-delivery-stop, inside the
//! kernel's signal handling: once the registers are put back, a syscall the thread was
//! stopped in restarts exactly as it would have (no extra trip like a single injection
//! needs). The signal is suppressed on the next resume (crs resumes with signal 0).
//!
//! A signal of the same number that comes from elsewhere while the batch runs (a timer,
//! a kill) is taken by the thread at its next syscall return: crs keeps its siginfo, lets
//! the batch go on, and queues it again to the thread afterwards (rt_tgsigqueueinfo run in
//! the thread, which the kernel allows for any si_code).

use crs_sys::ptrace::{self, Stop};
use crs_sys::remote::RemoteRange;
use crs_sys::{RemoteAddr, Tid};
use tracing::{debug, trace};

use crate::arch::{Arch, Host};
use crate::tree::{SeizedThread, SeizedTree};
use crate::{Error, Result};

/// One syscall of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Call {
    pub nr: i64,
    pub args: [u64; 6],
}

impl Call {
    pub fn new(nr: i64, args: [u64; 6]) -> Call {
        Call { nr, args }
    }
}

/// Where a process runs batches from: the code and the table of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchSite {
    /// Address of [`BATCH_CODE`] (executable).
    pub code: RemoteAddr,
    /// Writable memory for the entries; its length bounds the entries of one cycle.
    pub table: RemoteRange,
}

/// Bytes of one table entry: nr, six arguments, result.
pub const ENTRY_SIZE: usize = 64;

/// The batch loop (x86_64). rbx = current entry, r12 = end of the table, r13/r14/r15 =
/// the tgkill arguments of the final stop.
///
/// ```text
/// 00 loop:  4c 39 e3              cmp  rbx, r12
/// 03        73 2f                 jae  fin
/// 05        48 8b 03              mov  rax, [rbx]
/// 08        48 8b 7b 08           mov  rdi, [rbx+8]
/// 0c        48 8b 73 10           mov  rsi, [rbx+16]
/// 10        48 8b 53 18           mov  rdx, [rbx+24]
/// 14        4c 8b 53 20           mov  r10, [rbx+32]
/// 18        4c 8b 43 28           mov  r8,  [rbx+40]
/// 1c        4c 8b 4b 30           mov  r9,  [rbx+48]
/// 20        0f 05                 syscall
/// 22        48 89 43 38           mov  [rbx+56], rax
/// 26        48 3d 01 f0 ff ff     cmp  rax, -4095
/// 2c        73 06                 jae  fin              ; -errno: stop here
/// 2e        48 83 c3 40           add  rbx, 64
/// 32        eb cc                 jmp  loop
/// 34 fin:   b8 ea 00 00 00        mov  eax, 234         ; tgkill
/// 39        4c 89 ef              mov  rdi, r13
/// 3c        4c 89 f6              mov  rsi, r14
/// 3f        4c 89 fa              mov  rdx, r15
/// 42        0f 05                 syscall               ; the stop comes on its way out
/// 44        48 85 c0              test rax, rax
/// 47        75 02                 jnz  trap
/// 49 park:  eb fe                 jmp  park             ; only if crs is gone (below)
/// 4b trap:  cc                    int3                  ; only if tgkill failed
/// ```
///
/// crs stops the thread at the signal the final tgkill sends. If crs dies while the batch
/// runs, the kernel lets the thread go: the signal is one the task ignores (see
/// [`stop_signal`]), so the thread reaches `park` and spins there until the guardian
/// puts its registers back (see `guard`).
pub const BATCH_CODE: [u8; 76] = [
    0x4c, 0x39, 0xe3, // cmp rbx, r12
    0x73, 0x2f, // jae fin
    0x48, 0x8b, 0x03, // mov rax, [rbx]
    0x48, 0x8b, 0x7b, 0x08, // mov rdi, [rbx+8]
    0x48, 0x8b, 0x73, 0x10, // mov rsi, [rbx+16]
    0x48, 0x8b, 0x53, 0x18, // mov rdx, [rbx+24]
    0x4c, 0x8b, 0x53, 0x20, // mov r10, [rbx+32]
    0x4c, 0x8b, 0x43, 0x28, // mov r8, [rbx+40]
    0x4c, 0x8b, 0x4b, 0x30, // mov r9, [rbx+48]
    0x0f, 0x05, // syscall
    0x48, 0x89, 0x43, 0x38, // mov [rbx+56], rax
    0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, // cmp rax, -4095
    0x73, 0x06, // jae fin
    0x48, 0x83, 0xc3, 0x40, // add rbx, 64
    0xeb, 0xcc, // jmp loop
    0xb8, 0xea, 0x00, 0x00, 0x00, // mov eax, SYS_tgkill
    0x4c, 0x89, 0xef, // mov rdi, r13
    0x4c, 0x89, 0xf6, // mov rsi, r14
    0x4c, 0x89, 0xfa, // mov rdx, r15
    0x0f, 0x05, // syscall
    0x48, 0x85, 0xc0, // test rax, rax
    0x75, 0x02, // jnz trap
    0xeb, 0xfe, // park: jmp park
    0xcc, // trap: int3
];

/// Offset of the single-injection stub in compel's code, after [`BATCH_CODE`]:
/// `syscall; jmp .`. A single injected syscall runs from there, so a thread that crs
/// leaves behind mid-injection parks instead of running on with foreign registers.
pub(crate) const STUB_AT: usize = 0x50;

/// `syscall; jmp .`
pub(crate) const PARK_STUB: [u8; 4] = [0x0f, 0x05, 0xeb, 0xfe];

/// Everything compel writes at a batch site: the batch loop, padding, the stub.
pub(crate) fn code() -> Vec<u8> {
    let mut c = BATCH_CODE.to_vec();
    c.resize(STUB_AT, 0xcc);
    c.extend_from_slice(&PARK_STUB);
    c
}

/// Offset of `fin` in [`BATCH_CODE`].
#[cfg(test)]
const FIN: usize = 0x34;
/// Offset just past the final `syscall`: where the thread is when the stop comes.
const STOP_AT: usize = 0x44;

/// Signals the batch may stop itself with: not stop/continue signals (sending those
/// flushes queued ones of the other kind), not real-time (their queue can be full). Those
/// whose default action is to be ignored come first: if crs dies while a batch runs, the
/// kernel delivers the stop signal to the untraced thread, which must then survive it.
const STOP_SIGNALS: [i32; 5] = [
    libc::SIGURG,
    libc::SIGWINCH,
    libc::SIGCHLD,
    libc::SIGTRAP,
    libc::SIGPWR,
];

/// Signals whose default action is to do nothing.
const DEFAULT_IGNORED: u64 =
    (1 << (libc::SIGURG - 1)) | (1 << (libc::SIGWINCH - 1)) | (1 << (libc::SIGCHLD - 1));

/// `si_code` of a signal sent with tkill/tgkill.
const SI_TKILL: i32 = -6;

/// Entries per cycle the table of `site` holds.
fn capacity(site: &BatchSite) -> usize {
    site.table.len / ENTRY_SIZE
}

fn encode(calls: &[Call]) -> Vec<u8> {
    let mut out = Vec::with_capacity(calls.len() * ENTRY_SIZE);
    for c in calls {
        out.extend_from_slice(&c.nr.to_ne_bytes());
        for a in c.args {
            out.extend_from_slice(&a.to_ne_bytes());
        }
        out.extend_from_slice(&0u64.to_ne_bytes());
    }
    out
}

/// The result word of entry `i` of a table read back.
fn result_of(table: &[u8], i: usize) -> i64 {
    let off = i * ENTRY_SIZE + 56;
    let mut w = [0u8; 8];
    w.copy_from_slice(&table[off..off + 8]);
    i64::from_ne_bytes(w)
}

fn is_error(ret: i64) -> bool {
    (-4095..0).contains(&ret)
}

impl SeizedTree {
    /// Makes process `pid` run batches from `site`, writing [`BATCH_CODE`] at `site.code`
    /// through `/proc/PID/mem` (which writes read-only private pages, as a debugger does).
    /// The caller vouches that `site.code` is mapped executable and `site.table` writable,
    /// and that neither is used for anything else while batches run.
    pub fn set_batch_site(&mut self, pid: Tid, site: BatchSite) -> Result<()> {
        let pid = self.pid_of(pid)?;
        self.poke(pid, site.code, &code())?;
        self.procs
            .get_mut(&pid)
            .ok_or(Error::NotSeized { tid: pid })?
            .batch = Some(site);
        Ok(())
    }

    /// The batch site of the process thread `tid` belongs to, if it has one.
    pub fn batch_site(&self, tid: Tid) -> Option<BatchSite> {
        let pid = self.pid_of(tid).ok()?;
        self.procs.get(&pid)?.batch
    }

    /// Runs `calls` in held thread `tid`, in order, and returns their raw results. It stops
    /// at the first call that fails (returns -errno): the last result is then that error
    /// and the calls after it did not run. The thread's registers and mask are put back.
    ///
    /// Uses the process's batch site (one stop per table-full of calls); without one, the
    /// calls are injected one by one with the same outcome.
    pub fn syscalls(&mut self, tid: Tid, calls: &[Call]) -> Result<Vec<i64>> {
        let pid = self.pid_of(tid)?;
        let site = self.procs.get(&pid).and_then(|p| p.batch);
        let mut out = Vec::with_capacity(calls.len());
        let Some(site) = site.filter(|s| capacity(s) > 0) else {
            for c in calls {
                let ret = self.syscall(tid, c.nr, c.args)?;
                out.push(ret);
                if is_error(ret) {
                    break;
                }
            }
            return Ok(out);
        };
        let (ignored, caught, nested) = self.dispositions(pid)?;
        // The batch signals itself with its ids as its own pid namespace numbers them.
        let own_ids = if nested {
            let st = crate::procfs::status(tid).map_err(|source| Error::Status { tid, source })?;
            (st.ns_tgid, st.ns_pid)
        } else {
            (pid, tid)
        };
        for chunk in calls.chunks(capacity(&site)) {
            crs_sys::fault::point(|| {
                format!("a batch of {} syscalls in thread {tid}", chunk.len())
            })?;
            let thread = self.thread_mut(tid)?;
            let got = run_batch(thread, pid, own_ids, &site, chunk, (ignored, caught))?;
            trace!(tid, calls = chunk.len(), ran = got.len(), "injected batch");
            let failed = got.last().is_some_and(|&r| is_error(r));
            out.extend(got);
            if failed {
                break;
            }
        }
        Ok(out)
    }
}

impl SeizedTree {
    /// Writes `bytes` at `addr` of held process `pid` through `/proc/PID/mem` (which
    /// writes read-only private pages, as a debugger does), opened once per process.
    pub(crate) fn poke(&mut self, pid: Tid, addr: RemoteAddr, bytes: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        let err = |source| Error::RemoteWrite {
            pid,
            addr,
            len: bytes.len(),
            source,
        };
        let p = self
            .procs
            .get_mut(&pid)
            .ok_or(Error::NotSeized { tid: pid })?;
        if p.mem.is_none() {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/proc/{pid}/mem"))
                .map_err(err)?;
            p.mem = Some(f);
        }
        let f = p.mem.as_ref().expect("opened above");
        f.write_all_at(bytes, addr.get()).map_err(err)
    }
}

/// The signal a batch of `tid` stops with (see [`STOP_SIGNALS`]): one queued neither for
/// the thread nor for its process, preferably one the process ignores (`ignored`: SigIgn)
/// or leaves to a default that ignores it (`caught`: SigCgt), so that it does no harm if
/// it is ever delivered. `None` when every candidate is queued.
fn stop_signal(tid: Tid, ignored: u64, caught: u64) -> Result<Option<i32>> {
    let mut pending = 0u64;
    for shared in [false, true] {
        let queued = ptrace::all_pending(tid, shared).map_err(|source| Error::PeekSiginfo {
            tid,
            shared,
            source,
        })?;
        for s in queued {
            if (1..=64).contains(&s.si_signo) {
                pending |= 1 << (s.si_signo - 1);
            }
        }
    }
    Ok(choose_stop_signal(pending, ignored, caught))
}

/// [`stop_signal`]'s choice, from the masks.
fn choose_stop_signal(pending: u64, ignored: u64, caught: u64) -> Option<i32> {
    let bit = |s: i32| 1u64 << (s - 1);
    let free = |&s: &i32| pending & bit(s) == 0;
    let harmless = |&s: &i32| ignored & bit(s) != 0 || (DEFAULT_IGNORED & !caught) & bit(s) != 0;
    STOP_SIGNALS
        .into_iter()
        .filter(free)
        .find(harmless)
        .or_else(|| STOP_SIGNALS.into_iter().find(free))
}

/// One cycle: `calls` (at most the table's capacity) run in `thread` of process `pid`,
/// which are numbered `own_ids` (tgid, tid) in their own pid namespace.
fn run_batch(
    thread: &mut SeizedThread,
    pid: Tid,
    own_ids: (Tid, Tid),
    site: &BatchSite,
    calls: &[Call],
    (ignored, caught): (u64, u64),
) -> Result<Vec<i64>> {
    let tid = thread.tid;
    let saved = thread.regs;
    Host::check_native(&saved).map_err(|cs| Error::CompatMode { tid, cs })?;
    let Some(sig) = stop_signal(tid, ignored, caught)? else {
        return Err(Error::NoStopSignal { tid });
    };
    let table = encode(calls);
    crs_sys::remote::write_all(pid, site.table.addr, &table).map_err(|source| {
        Error::RemoteWrite {
            pid,
            addr: site.table.addr,
            len: table.len(),
            source,
        }
    })?;
    let end = site.table.addr.get() + table.len() as u64;
    let regs = Host::batch_regs(
        &saved,
        site.code,
        [
            site.table.addr.get(),
            end,
            own_ids.0 as u64,
            own_ids.1 as u64,
            sig as u64,
        ],
    );
    let mask = !(1u64 << (sig - 1));
    let mut foreign = Vec::new();
    let run = run_to_stop(thread, site, regs, mask, sig, own_ids.0, &mut foreign);
    let back = put_back(thread);
    let results = match (run, back) {
        (Ok(at), Ok(())) => read_results(tid, pid, site, at, end),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    };
    // After the results are read (the table holds the siginfo), and even if the batch
    // failed: a signal the task was sent is not lost.
    let requeued = requeue(thread, pid, own_ids, site, sig, &foreign);
    let results = results?;
    requeued?;
    Ok(results)
}

/// The results of the entries a batch ran, from its table; `at` is the entry pointer it
/// stopped with, `end` the end of its table.
fn read_results(tid: Tid, pid: Tid, site: &BatchSite, at: u64, end: u64) -> Result<Vec<i64>> {
    let base = site.table.addr.get();
    if at < base || at > end || !(at - base).is_multiple_of(ENTRY_SIZE as u64) {
        return Err(Error::BatchLost { tid, at });
    }
    let done = ((at - base) / ENTRY_SIZE as u64) as usize;
    // Stopped before the end: entry `done` failed, and its result is the error.
    let ran = if at < end { done + 1 } else { done };
    let mut back = vec![0u8; ran * ENTRY_SIZE];
    crs_sys::remote::read_exact(pid, site.table.addr, &mut back).map_err(|source| {
        Error::RemoteRead {
            pid,
            addr: site.table.addr,
            len: back.len(),
            source,
        }
    })?;
    Ok((0..ran).map(|i| result_of(&back, i)).collect())
}

/// Queues again the signals `sig` that came from elsewhere during the batch, each from
/// inside the thread that took it.
fn requeue(
    thread: &mut SeizedThread,
    pid: Tid,
    own_ids: (Tid, Tid),
    site: &BatchSite,
    sig: i32,
    foreign: &[[u8; SIGINFO_SIZE]],
) -> Result<()> {
    let tid = thread.tid;
    let at = RemoteAddr(site.code.get() + STUB_AT as u64);
    for info in foreign {
        // The table is free again: the siginfo goes where the entries were.
        crs_sys::remote::write_all(pid, site.table.addr, info).map_err(|source| {
            Error::RemoteWrite {
                pid,
                addr: site.table.addr,
                len: info.len(),
                source,
            }
        })?;
        let args = [
            own_ids.0 as u64,
            own_ids.1 as u64,
            sig as u64,
            site.table.addr.get(),
            0,
            0,
        ];
        let ret = crate::inject::inject(thread, at, libc::SYS_rt_tgsigqueueinfo, &args)?;
        if is_error(ret) {
            return Err(Error::UnexpectedSignal { tid, signo: sig });
        }
        debug!(tid, sig, "signal taken during a batch queued again");
    }
    Ok(())
}

const SIGINFO_SIZE: usize = std::mem::size_of::<libc::siginfo_t>();

/// Runs the thread from `regs` until the batch's own stop; returns the entry pointer
/// (rbx) it stopped with. Signals `sig` not sent by the batch are kept in `foreign`.
/// `own_pid` is the process's id in its own pid namespace (the sender's id a self-sent
/// signal carries).
/// The registers are set before the mask: the mask is changed only while the thread's
/// instruction pointer is in compel's code (see `guard`).
fn run_to_stop(
    thread: &mut SeizedThread,
    site: &BatchSite,
    regs: crate::Regs,
    mask: u64,
    sig: i32,
    own_pid: Tid,
    foreign: &mut Vec<[u8; SIGINFO_SIZE]>,
) -> Result<u64> {
    let tid = thread.tid;
    Host::set_regs(tid, &regs).map_err(|source| Error::SetRegs { tid, source })?;
    crs_sys::fault::kill_point(|| format!("batch of thread {tid}: registers set"));
    ptrace::set_sigmask(tid, mask).map_err(|source| Error::SetSigmask { tid, source })?;
    crs_sys::fault::kill_point(|| format!("batch of thread {tid}: mask set"));
    ptrace::cont(tid, 0).map_err(|source| Error::Resume { tid, source })?;
    crs_sys::fault::kill_point(|| format!("batch of thread {tid}: running"));
    loop {
        let st = match ptrace::wait(tid) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                return Err(Error::ThreadGone { tid })
            }
            Err(source) => return Err(Error::Wait { tid, source }),
        };
        let resume = match st {
            Stop::Signal(s) if s == sig => {
                let out = Host::get_regs(tid).map_err(|source| Error::GetRegs { tid, source })?;
                let (ours, raw) = sent_by_itself(tid, own_pid)?;
                if !ours {
                    foreign.push(raw);
                }
                // At the final stop the batch is over even if the signal taken there came
                // from elsewhere (the batch's own was then merged into it).
                if Host::ip(&out).get() == site.code.get() + STOP_AT as u64 {
                    return Ok(Host::batch_cursor(&out));
                }
                if ours {
                    return Err(Error::BatchLost {
                        tid,
                        at: Host::ip(&out).get(),
                    });
                }
                0
            }
            Stop::Signal(s) if is_stop_signal(s) => s,
            Stop::Signal(signo) => return Err(Error::UnexpectedSignal { tid, signo }),
            Stop::EventStop(s) => {
                // A group-stop began while the batch ran; the kernel reinstates it at
                // detach.
                if s != libc::SIGTRAP {
                    thread.stopped = true;
                    thread.stop_signo = s;
                }
                0
            }
            Stop::Exited(_) | Stop::Signaled(_) | Stop::Event(ptrace::event::EXIT, _) => {
                return Err(Error::ThreadGone { tid })
            }
            Stop::Syscall | Stop::Event(..) => 0,
        };
        ptrace::cont(tid, resume).map_err(|source| Error::Resume { tid, source })?;
    }
}

/// Whether the signal `tid` is stopped with was sent with tgkill by its own process
/// (`pid`, as its own pid namespace numbers it), and its raw siginfo.
fn sent_by_itself(tid: Tid, pid: Tid) -> Result<(bool, [u8; SIGINFO_SIZE])> {
    let info = nix::sys::ptrace::getsiginfo(nix::unistd::Pid::from_raw(tid)).map_err(|e| {
        Error::GetSiginfo {
            tid,
            source: e.into(),
        }
    })?;
    // SAFETY: si_pid reads the `_kill` member of the union, which the kernel fills for
    // SI_TKILL (checked first); for other codes it is not read.
    let ours = info.si_code == SI_TKILL && unsafe { info.si_pid() } == pid;
    // SAFETY: siginfo_t is a plain C struct of integers, SIGINFO_SIZE bytes, all of which
    // PTRACE_GETSIGINFO wrote; copying it out as bytes reads only initialised memory.
    let raw: [u8; SIGINFO_SIZE] = unsafe { std::mem::transmute_copy(&info) };
    Ok((ours, raw))
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// Puts back the saved mask, then the registers (the mask is changed only while the
/// thread's instruction pointer is in compel's code). The thread is in a
/// signal-delivery-stop, so a syscall it was stopped in restarts on resume as it would
/// have without the batch.
fn put_back(thread: &SeizedThread) -> Result<()> {
    let tid = thread.tid;
    crs_sys::fault::kill_point(|| format!("batch of thread {tid}: stopped"));
    ptrace::set_sigmask(tid, thread.sigmask).map_err(|source| Error::SetSigmask { tid, source })?;
    crs_sys::fault::kill_point(|| format!("batch of thread {tid}: mask back"));
    Host::set_regs(tid, &thread.regs).map_err(|source| Error::SetRegs { tid, source })
}

impl SeizedTree {
    /// What held process `pid` ignores and catches (SigIgn, SigCgt), read once: nothing
    /// changes them while it is held but injected rt_sigaction calls, and a restore's
    /// (which sets them) needs no harmless stop signal: its guardian kills the tree.
    /// Also whether the process is in a pid namespace below crs's.
    fn dispositions(&mut self, pid: Tid) -> Result<(u64, u64, bool)> {
        let p = self
            .procs
            .get_mut(&pid)
            .ok_or(Error::NotSeized { tid: pid })?;
        if let Some(d) = p.dispositions {
            return Ok(d);
        }
        let st = crate::procfs::status(pid).map_err(|source| Error::Status { tid: pid, source })?;
        let d = (st.sig_ign, st.sig_cgt, st.ns_levels > 1);
        p.dispositions = Some(d);
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_code_loop_head_compares_rbx_with_r12() {
        assert_eq!(&BATCH_CODE[0..3], &[0x4c, 0x39, 0xe3]);
    }

    #[test]
    fn batch_code_jumps_land_on_fin_and_loop() {
        // jae rel8 at 0x03 and 0x2c, jmp rel8 at 0x32: targets from the next instruction.
        let target = |at: usize| (at as i64 + 2 + BATCH_CODE[at + 1] as i8 as i64) as usize;
        assert_eq!((BATCH_CODE[0x03], target(0x03)), (0x73, FIN));
        assert_eq!((BATCH_CODE[0x2c], target(0x2c)), (0x73, FIN));
        assert_eq!((BATCH_CODE[0x32], target(0x32)), (0xeb, 0));
    }

    #[test]
    fn batch_code_syscalls_and_result_store_at_documented_offsets() {
        assert_eq!(&BATCH_CODE[0x20..0x22], Host::SYSCALL_INSN);
        assert_eq!(&BATCH_CODE[0x22..0x26], &[0x48, 0x89, 0x43, 0x38]);
        assert_eq!(&BATCH_CODE[0x42..0x44], Host::SYSCALL_INSN);
        assert_eq!(
            &BATCH_CODE[STOP_AT..],
            &[0x48, 0x85, 0xc0, 0x75, 0x02, 0xeb, 0xfe, 0xcc]
        );
    }

    #[test]
    fn batch_code_after_the_stop_parks_unless_tgkill_failed() {
        // jnz at 0x47 skips the park to the int3; the park jumps to itself.
        let target = |at: usize| (at as i64 + 2 + BATCH_CODE[at + 1] as i8 as i64) as usize;
        assert_eq!((BATCH_CODE[0x47], target(0x47)), (0x75, 0x4b));
        assert_eq!((BATCH_CODE[0x49], target(0x49)), (0xeb, 0x49));
        assert_eq!(BATCH_CODE[0x4b], 0xcc);
    }

    #[test]
    fn code_stub_follows_the_batch_loop() {
        let c = code();
        assert_eq!(&c[..BATCH_CODE.len()], &BATCH_CODE);
        assert_eq!(&c[STUB_AT..], &PARK_STUB);
        assert_eq!(&c[STUB_AT..STUB_AT + 2], Host::SYSCALL_INSN);
        assert!(c[BATCH_CODE.len()..STUB_AT].iter().all(|&b| b == 0xcc));
    }

    #[test]
    fn choose_stop_signal_prefers_a_default_ignored_one() {
        assert_eq!(choose_stop_signal(0, 0, 0), Some(libc::SIGURG));
    }

    #[test]
    fn choose_stop_signal_skips_caught_and_pending_ones() {
        let bit = |s: i32| 1u64 << (s - 1);
        // Go catches SIGURG; SIGWINCH is queued: SIGCHLD is left, default ignored.
        let got = choose_stop_signal(bit(libc::SIGWINCH), 0, bit(libc::SIGURG));
        assert_eq!(got, Some(libc::SIGCHLD));
    }

    #[test]
    fn choose_stop_signal_takes_an_ignored_one_before_a_harmful_default() {
        let bit = |s: i32| 1u64 << (s - 1);
        let caught = bit(libc::SIGURG) | bit(libc::SIGWINCH) | bit(libc::SIGCHLD);
        let got = choose_stop_signal(0, bit(libc::SIGPWR), caught);
        assert_eq!(got, Some(libc::SIGPWR));
        // Nothing harmless: the first free one, as before.
        assert_eq!(choose_stop_signal(0, 0, caught), Some(libc::SIGURG));
    }

    #[test]
    fn batch_code_fin_calls_tgkill_with_r13_r14_r15() {
        assert_eq!(
            &BATCH_CODE[FIN..FIN + 5],
            &[0xb8, libc::SYS_tgkill as u8, 0, 0, 0]
        );
        assert_eq!(
            &BATCH_CODE[0x39..0x42],
            &[0x4c, 0x89, 0xef, 0x4c, 0x89, 0xf6, 0x4c, 0x89, 0xfa]
        );
    }

    #[test]
    fn batch_code_loads_arguments_in_syscall_order() {
        // mov reg, [rbx+disp8]: modrm 01 reg 011, disp = 8 * argument index.
        let loads = [(0x08, 0x7b, 8), (0x0c, 0x73, 16), (0x10, 0x53, 24)];
        for (at, modrm, disp) in loads {
            assert_eq!(&BATCH_CODE[at..at + 4], &[0x48, 0x8b, modrm, disp]);
        }
        let high = [(0x14, 0x53, 32), (0x18, 0x43, 40), (0x1c, 0x4b, 48)];
        for (at, modrm, disp) in high {
            assert_eq!(&BATCH_CODE[at..at + 4], &[0x4c, 0x8b, modrm, disp]);
        }
    }

    #[test]
    fn encode_entry_layout_is_nr_args_result() {
        let t = encode(&[Call::new(39, [1, 2, 3, 4, 5, 6])]);
        assert_eq!(t.len(), ENTRY_SIZE);
        let word = |i: usize| u64::from_ne_bytes(t[8 * i..8 * i + 8].try_into().unwrap());
        assert_eq!(
            (0..8).map(word).collect::<Vec<_>>(),
            vec![39, 1, 2, 3, 4, 5, 6, 0]
        );
    }

    #[test]
    fn result_of_second_entry_reads_its_last_word() {
        let mut t = encode(&[Call::new(1, [0; 6]), Call::new(2, [0; 6])]);
        t[ENTRY_SIZE + 56..ENTRY_SIZE + 64].copy_from_slice(&(-22i64).to_ne_bytes());
        assert_eq!(result_of(&t, 1), -22);
    }
}
