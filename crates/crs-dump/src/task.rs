//! What only the task itself can answer, asked by running syscalls inside it: sigactions,
//! itimers, POSIX timer values, sigaltstack, TLS, prctl values, brk.

use crs_compel::{Call, RemoteAddr, SeizedTree, Tid};
use crs_sys::remote::RemoteRange;

use crate::core::ThreadExtra;
use crate::error::{compel_err, DumpError, Result};

/// Runs syscalls in the threads of one held process, with its scratch area for results.
pub(crate) struct Remote<'a> {
    pub(crate) tree: &'a mut SeizedTree,
    pid: Tid,
    scratch: RemoteRange,
}

/// The kernel's `struct sigaction` (handler, flags, restorer, mask).
pub(crate) const KSIGACTION_SIZE: usize = 32;
/// Signals 1..=64.
pub(crate) const NSIG: usize = 64;

fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_ne_bytes(w)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[off..off + 4]);
    u32::from_ne_bytes(w)
}

/// One sigaction as the kernel holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct KSigaction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

/// `struct itimerval` / `struct itimerspec`: (interval, value) as (sec, sub-second).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TimerVal {
    pub interval: (u64, u64),
    pub value: (u64, u64),
}

/// `struct user_desc` of one TLS slot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct UserDesc {
    pub entry_number: u32,
    pub base_addr: u32,
    pub limit: u32,
    pub flags: u32,
}

/// `stack_t`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AltStack {
    pub sp: u64,
    pub flags: u32,
    pub size: u64,
}

const PR_GET_PDEATHSIG: u64 = 2;
const PR_GET_DUMPABLE: u64 = 3;
const PR_GET_SECUREBITS: u64 = 27;
const PR_GET_CHILD_SUBREAPER: u64 = 37;
const PR_GET_TID_ADDRESS: u64 = 40;
const PR_GET_THP_DISABLE: u64 = 42;

/// First GDT slot of the TLS entries on x86_64 and how many there are.
pub(crate) const GDT_ENTRY_TLS_MIN: u32 = 12;
pub(crate) const GDT_ENTRY_TLS_NUM: u32 = 3;

/// Syscalls planned for one batch, with the scratch memory their results go to.
#[derive(Default)]
struct Plan {
    calls: Vec<Call>,
    names: Vec<&'static str>,
    /// Bytes of scratch handed out so far (from offset 0).
    used: usize,
}

impl Plan {
    fn call(&mut self, name: &'static str, nr: i64, args: [u64; 6]) -> usize {
        self.calls.push(Call::new(nr, args));
        self.names.push(name);
        self.calls.len() - 1
    }

    /// `len` bytes of scratch for one result; returns their offset.
    fn buf(&mut self, len: usize) -> usize {
        let off = self.used;
        self.used += len.next_multiple_of(8);
        off
    }
}

/// What a batch came to: the results of its calls and the scratch they wrote.
struct Answers {
    results: Vec<i64>,
    mem: Vec<u8>,
}

impl Answers {
    fn u64(&self, off: usize) -> u64 {
        u64_at(&self.mem, off)
    }

    fn u32(&self, off: usize) -> u32 {
        u32_at(&self.mem, off)
    }

    fn timer(&self, off: usize) -> TimerVal {
        TimerVal {
            interval: (self.u64(off), self.u64(off + 8)),
            value: (self.u64(off + 16), self.u64(off + 24)),
        }
    }
}

/// What a process answers as a whole (asked in its leader).
#[derive(Clone, Debug)]
pub(crate) struct ProcessAnswers {
    /// Every sigaction, indexed by signal number - 1 (default for those not asked).
    pub sigactions: Vec<KSigaction>,
    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF (microseconds).
    pub itimers: [TimerVal; 3],
    /// `timer_gettime` (nanoseconds) and `timer_getoverrun` of each POSIX timer asked.
    pub posix: Vec<(TimerVal, u32)>,
    pub child_subreaper: bool,
    pub dumpable: i32,
    pub thp_disabled: bool,
    /// The current program break.
    pub brk: u64,
}

/// Where the per-thread answers of a plan are.
struct ThreadSlots {
    robust: (usize, usize),
    policy: usize,
    prio: usize,
    param: usize,
    sas: usize,
    pdeath: usize,
    secbits: usize,
    clear_tid: usize,
}

/// POSIX timers asked in one batch at most (32 bytes of scratch each).
const TIMERS_PER_BATCH: usize = 256;

impl<'a> Remote<'a> {
    pub(crate) fn new(tree: &'a mut SeizedTree, pid: Tid) -> Result<Remote<'a>> {
        let scratch = tree
            .scratch(pid)
            .map_err(compel_err(pid, "mapping a scratch area"))?;
        Ok(Remote { tree, pid, scratch })
    }

    fn at(&self, off: usize) -> u64 {
        self.scratch.addr.get() + off as u64
    }

    /// Runs `plan` in `tid` as one batch and reads back the scratch it wrote. A call that
    /// fails is an error naming it, as if it had run alone.
    fn run(&mut self, tid: Tid, plan: &Plan) -> Result<Answers> {
        if plan.used > self.scratch.len {
            return Err(DumpError::Remote {
                tid,
                call: "a batch larger than the scratch area",
                errno: libc::E2BIG as i64,
            });
        }
        // Some answers are ints written into 8-byte slots.
        self.write(0, &vec![0u8; plan.used])?;
        let results = self
            .tree
            .syscalls(tid, &plan.calls)
            .map_err(compel_err(tid, "running a batch of injected syscalls"))?;
        for (i, name) in plan.names.iter().enumerate() {
            match results.get(i) {
                Some(&ret) if (-4095..0).contains(&ret) => {
                    return Err(DumpError::Remote {
                        tid,
                        call: name,
                        errno: -ret,
                    })
                }
                Some(_) => {}
                // The batch stops only at a failing call, reported above.
                None => {
                    return Err(DumpError::Remote {
                        tid,
                        call: name,
                        errno: 0,
                    })
                }
            }
        }
        let mem = self.read(0, plan.used)?;
        Ok(Answers { results, mem })
    }

    /// The membarrier commands the process registered for (MEMBARRIER_CMD_REGISTER_*
    /// bits, from MEMBARRIER_CMD_GET_REGISTRATIONS); 0 on a kernel without that command.
    pub(crate) fn membarrier_registrations(&mut self) -> Result<u32> {
        const GET_REGISTRATIONS: u64 = 1 << 9;
        let ret = self
            .tree
            .syscall(
                self.pid,
                libc::SYS_membarrier,
                [GET_REGISTRATIONS, 0, 0, 0, 0, 0],
            )
            .map_err(compel_err(self.pid, "asking the membarrier registrations"))?;
        match ret {
            r if r >= 0 => Ok(r as u32),
            r if r == -(libc::EINVAL as i64) => Ok(0),
            r => Err(DumpError::Remote {
                tid: self.pid,
                call: "membarrier(MEMBARRIER_CMD_GET_REGISTRATIONS)",
                errno: -r,
            }),
        }
    }

    fn read(&self, off: usize, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.tree
            .read_memory(self.pid, RemoteAddr(self.at(off)), &mut buf)
            .map_err(compel_err(self.pid, "reading the scratch area"))?;
        Ok(buf)
    }

    fn write(&self, off: usize, data: &[u8]) -> Result<()> {
        self.tree
            .write_memory(self.pid, RemoteAddr(self.at(off)), data)
            .map_err(compel_err(self.pid, "writing the scratch area"))
    }

    /// What the process answers as a whole, and what its leader answers as a thread: one
    /// batch in the leader (plus one per [`TIMERS_PER_BATCH`] POSIX timers when there are
    /// more). `asked`: the signals whose sigaction is wanted (bit n-1 = signal n;
    /// SIGKILL and SIGSTOP are never asked). `timers`: POSIX timer ids.
    pub(crate) fn process(
        &mut self,
        asked: u64,
        timers: &[i32],
    ) -> Result<(ProcessAnswers, ThreadExtra)> {
        let pid = self.pid;
        let mut plan = Plan::default();
        let wanted = |sig: usize| {
            sig != libc::SIGKILL as usize
                && sig != libc::SIGSTOP as usize
                && asked & (1u64 << (sig - 1)) != 0
        };
        let mut sa_slots = Vec::new();
        for sig in (1..=NSIG).filter(|&s| wanted(s)) {
            let off = plan.buf(KSIGACTION_SIZE);
            let old = self.at(off);
            plan.call(
                "rt_sigaction",
                libc::SYS_rt_sigaction,
                [sig as u64, 0, old, 8, 0, 0],
            );
            sa_slots.push((sig, off));
        }
        let mut it_slots = [0usize; 3];
        for (which, slot) in it_slots.iter_mut().enumerate() {
            *slot = plan.buf(32);
            let p = self.at(*slot);
            plan.call(
                "getitimer",
                libc::SYS_getitimer,
                [which as u64, p, 0, 0, 0, 0],
            );
        }
        let inline = timers.len() <= TIMERS_PER_BATCH;
        let mut timer_slots = Vec::new();
        if inline {
            timer_slots = self.plan_timers(&mut plan, timers);
        }
        let off = plan.buf(8);
        let subreaper = plan.call(
            "prctl(PR_GET_CHILD_SUBREAPER)",
            libc::SYS_prctl,
            [PR_GET_CHILD_SUBREAPER, self.at(off), 0, 0, 0, 0],
        );
        let subreaper = (subreaper, off);
        let dumpable = plan.call(
            "prctl(PR_GET_DUMPABLE)",
            libc::SYS_prctl,
            [PR_GET_DUMPABLE, 0, 0, 0, 0, 0],
        );
        let thp = plan.call(
            "prctl(PR_GET_THP_DISABLE)",
            libc::SYS_prctl,
            [PR_GET_THP_DISABLE, 0, 0, 0, 0, 0],
        );
        let brk = plan.call("brk", libc::SYS_brk, [0; 6]);
        let slots = self.plan_thread(&mut plan);
        let a = self.run(pid, &plan)?;

        let mut sigactions = vec![KSigaction::default(); NSIG];
        for (sig, off) in sa_slots {
            sigactions[sig - 1] = KSigaction {
                handler: a.u64(off),
                flags: a.u64(off + 8),
                restorer: a.u64(off + 16),
                mask: a.u64(off + 24),
            };
        }
        let itimers = it_slots.map(|off| a.timer(off));
        let mut posix = Vec::with_capacity(timers.len());
        if inline {
            posix.extend(
                timer_slots
                    .iter()
                    .map(|&(off, i)| (a.timer(off), a.results[i] as u32)),
            );
        } else {
            for chunk in timers.chunks(TIMERS_PER_BATCH) {
                let mut tp = Plan::default();
                let slots = self.plan_timers(&mut tp, chunk);
                let t = self.run(pid, &tp)?;
                posix.extend(
                    slots
                        .iter()
                        .map(|&(off, i)| (t.timer(off), t.results[i] as u32)),
                );
            }
        }
        let answers = ProcessAnswers {
            sigactions,
            itimers,
            posix,
            child_subreaper: a.u32(subreaper.1) != 0,
            dumpable: a.results[dumpable] as i32,
            thp_disabled: a.results[thp] != 0,
            brk: a.results[brk] as u64,
        };
        let extra = self.thread_extra(pid, &a, &slots)?;
        Ok((answers, extra))
    }

    /// timer_gettime + timer_getoverrun of each of `ids`: (scratch offset of the value,
    /// index of the overrun call).
    fn plan_timers(&self, plan: &mut Plan, ids: &[i32]) -> Vec<(usize, usize)> {
        ids.iter()
            .map(|&id| {
                let off = plan.buf(32);
                plan.call(
                    "timer_gettime",
                    libc::SYS_timer_gettime,
                    [id as u64, self.at(off), 0, 0, 0, 0],
                );
                let i = plan.call(
                    "timer_getoverrun",
                    libc::SYS_timer_getoverrun,
                    [id as u64, 0, 0, 0, 0, 0],
                );
                (off, i)
            })
            .collect()
    }

    /// What a thread other than the leader answers: one batch in it.
    pub(crate) fn thread(&mut self, tid: Tid) -> Result<ThreadExtra> {
        let mut plan = Plan::default();
        let slots = self.plan_thread(&mut plan);
        let a = self.run(tid, &plan)?;
        self.thread_extra(tid, &a, &slots)
    }

    /// The per-thread questions: robust list, scheduling, sigaltstack, parent-death
    /// signal, securebits, clear-tid address.
    fn plan_thread(&self, plan: &mut Plan) -> ThreadSlots {
        let head = plan.buf(8);
        let len = plan.buf(8);
        plan.call(
            "get_robust_list",
            libc::SYS_get_robust_list,
            [0, self.at(head), self.at(len), 0, 0, 0],
        );
        let policy = plan.call("sched_getscheduler", libc::SYS_sched_getscheduler, [0; 6]);
        let prio = plan.call(
            "getpriority",
            libc::SYS_getpriority,
            [libc::PRIO_PROCESS as u64, 0, 0, 0, 0, 0],
        );
        // Asked whatever the policy (it answers 0 for the others), used for FIFO and RR.
        let param = plan.buf(8);
        plan.call(
            "sched_getparam",
            libc::SYS_sched_getparam,
            [0, self.at(param), 0, 0, 0, 0],
        );
        let sas = plan.buf(24);
        plan.call(
            "sigaltstack",
            libc::SYS_sigaltstack,
            [0, self.at(sas), 0, 0, 0, 0],
        );
        let pdeath = plan.buf(8);
        plan.call(
            "prctl(PR_GET_PDEATHSIG)",
            libc::SYS_prctl,
            [PR_GET_PDEATHSIG, self.at(pdeath), 0, 0, 0, 0],
        );
        let secbits = plan.call(
            "prctl(PR_GET_SECUREBITS)",
            libc::SYS_prctl,
            [PR_GET_SECUREBITS, 0, 0, 0, 0, 0],
        );
        let clear_tid = plan.buf(8);
        plan.call(
            "prctl(PR_GET_TID_ADDRESS)",
            libc::SYS_prctl,
            [PR_GET_TID_ADDRESS, self.at(clear_tid), 0, 0, 0, 0],
        );
        ThreadSlots {
            robust: (head, len),
            policy,
            prio,
            param,
            sas,
            pdeath,
            secbits,
            clear_tid,
        }
    }

    fn thread_extra(&mut self, tid: Tid, a: &Answers, s: &ThreadSlots) -> Result<ThreadExtra> {
        let policy = a.results[s.policy] as u32;
        // The raw syscall returns 20 - nice so that it is never negative.
        let nice = 20 - a.results[s.prio] as i32;
        let base = policy & !(libc::SCHED_RESET_ON_FORK as u32);
        let rt = (base == libc::SCHED_FIFO as u32 || base == libc::SCHED_RR as u32)
            .then(|| a.u32(s.param));
        Ok(ThreadExtra {
            robust_list: (a.u64(s.robust.0), a.u64(s.robust.1) as u32),
            sched: (policy, nice, rt),
            sas: AltStack {
                sp: a.u64(s.sas),
                flags: a.u32(s.sas + 8),
                size: a.u64(s.sas + 16),
            },
            pdeath_sig: a.u32(s.pdeath),
            secbits: a.results[s.secbits] as u32,
            tls: tls(tid)?,
            clear_tid_addr: a.u64(s.clear_tid),
        })
    }
}

/// The three TLS descriptors of the GDT (read with ptrace: get_thread_area is not a
/// 64-bit syscall).
fn tls(tid: Tid) -> Result<Vec<UserDesc>> {
    let mut out = Vec::new();
    for n in GDT_ENTRY_TLS_MIN..GDT_ENTRY_TLS_MIN + GDT_ENTRY_TLS_NUM {
        let d = crs_sys::dump::get_thread_area(tid, n).map_err(|source| DumpError::File {
            what: "PTRACE_GET_THREAD_AREA of thread",
            path: tid.to_string().into(),
            source,
        })?;
        out.push(UserDesc {
            entry_number: d[0],
            base_addr: d[1],
            limit: d[2],
            flags: d[3],
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_buf_offsets_are_eight_byte_aligned_and_disjoint() {
        let mut p = Plan::default();
        let a = p.buf(4);
        let b = p.buf(24);
        let c = p.buf(8);
        assert_eq!((a, b, c, p.used), (0, 8, 32, 40));
    }

    #[test]
    fn plan_call_indexes_follow_push_order() {
        let mut p = Plan::default();
        assert_eq!(p.call("brk", libc::SYS_brk, [0; 6]), 0);
        assert_eq!(p.call("getpid", libc::SYS_getpid, [0; 6]), 1);
        assert_eq!(p.names, vec!["brk", "getpid"]);
    }
}
