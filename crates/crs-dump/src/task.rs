//! What only the task itself can answer, asked by running syscalls inside it: sigactions,
//! itimers, POSIX timer values, sigaltstack, TLS, prctl values, brk.

use crs_compel::{RemoteAddr, SeizedTree, Tid};
use crs_sys::remote::RemoteRange;

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

    /// Runs a syscall; a negative errno result is an error naming `call`.
    fn call(&mut self, tid: Tid, call: &'static str, nr: i64, args: [u64; 6]) -> Result<i64> {
        let ret = self
            .tree
            .syscall(tid, nr, args)
            .map_err(compel_err(tid, call))?;
        if (-4095..0).contains(&ret) {
            return Err(DumpError::Remote {
                tid,
                call,
                errno: -ret,
            });
        }
        Ok(ret)
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

    /// Every sigaction, indexed by signal number - 1 (SIGKILL and SIGSTOP included, as the
    /// kernel reports them).
    pub(crate) fn sigactions(&mut self, tid: Tid, asked: u64) -> Result<Vec<KSigaction>> {
        let mut got = vec![KSigaction::default(); NSIG];
        let wanted = |sig: usize| {
            sig != libc::SIGKILL as usize
                && sig != libc::SIGSTOP as usize
                && asked & (1u64 << (sig - 1)) != 0
        };
        for sig in (1..=NSIG).filter(|&s| wanted(s)) {
            let old = self.at((sig - 1) * KSIGACTION_SIZE);
            self.call(
                tid,
                "rt_sigaction",
                libc::SYS_rt_sigaction,
                [sig as u64, 0, old, 8, 0, 0],
            )?;
        }
        let b = self.read(0, NSIG * KSIGACTION_SIZE)?;
        for (i, slot) in got.iter_mut().enumerate() {
            if !wanted(i + 1) {
                continue;
            }
            let o = i * KSIGACTION_SIZE;
            *slot = KSigaction {
                handler: u64_at(&b, o),
                flags: u64_at(&b, o + 8),
                restorer: u64_at(&b, o + 16),
                mask: u64_at(&b, o + 24),
            };
        }
        Ok(got)
    }

    /// ITIMER_REAL, ITIMER_VIRTUAL, ITIMER_PROF (microseconds).
    pub(crate) fn itimers(&mut self, tid: Tid) -> Result<[TimerVal; 3]> {
        let mut out = [TimerVal::default(); 3];
        for (which, slot) in out.iter_mut().enumerate() {
            self.call(
                tid,
                "getitimer",
                libc::SYS_getitimer,
                [which as u64, self.at(0), 0, 0, 0, 0],
            )?;
            let b = self.read(0, 32)?;
            *slot = TimerVal {
                interval: (u64_at(&b, 0), u64_at(&b, 8)),
                value: (u64_at(&b, 16), u64_at(&b, 24)),
            };
        }
        Ok(out)
    }

    /// `timer_gettime` and `timer_getoverrun` of POSIX timer `id` (nanoseconds).
    pub(crate) fn posix_timer(&mut self, tid: Tid, id: i32) -> Result<(TimerVal, u32)> {
        self.call(
            tid,
            "timer_gettime",
            libc::SYS_timer_gettime,
            [id as u64, self.at(0), 0, 0, 0, 0],
        )?;
        let b = self.read(0, 32)?;
        let overrun = self.call(
            tid,
            "timer_getoverrun",
            libc::SYS_timer_getoverrun,
            [id as u64, 0, 0, 0, 0, 0],
        )?;
        Ok((
            TimerVal {
                interval: (u64_at(&b, 0), u64_at(&b, 8)),
                value: (u64_at(&b, 16), u64_at(&b, 24)),
            },
            overrun as u32,
        ))
    }

    pub(crate) fn sigaltstack(&mut self, tid: Tid) -> Result<AltStack> {
        self.call(
            tid,
            "sigaltstack",
            libc::SYS_sigaltstack,
            [0, self.at(0), 0, 0, 0, 0],
        )?;
        let b = self.read(0, 24)?;
        Ok(AltStack {
            sp: u64_at(&b, 0),
            flags: u32_at(&b, 8),
            size: u64_at(&b, 16),
        })
    }

    /// The three TLS descriptors of the GDT (read with ptrace: get_thread_area is not a
    /// 64-bit syscall).
    pub(crate) fn tls(&mut self, tid: Tid) -> Result<Vec<UserDesc>> {
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

    fn prctl_ptr_u64(&mut self, tid: Tid, call: &'static str, option: u64) -> Result<u64> {
        self.write(0, &[0u8; 8])?;
        self.call(tid, call, libc::SYS_prctl, [option, self.at(0), 0, 0, 0, 0])?;
        Ok(u64_at(&self.read(0, 8)?, 0))
    }

    fn prctl_ret(&mut self, tid: Tid, call: &'static str, option: u64) -> Result<i64> {
        self.call(tid, call, libc::SYS_prctl, [option, 0, 0, 0, 0, 0])
    }

    pub(crate) fn clear_tid_address(&mut self, tid: Tid) -> Result<u64> {
        self.prctl_ptr_u64(tid, "prctl(PR_GET_TID_ADDRESS)", PR_GET_TID_ADDRESS)
    }

    pub(crate) fn pdeath_signal(&mut self, tid: Tid) -> Result<u32> {
        Ok(self.prctl_ptr_u64(tid, "prctl(PR_GET_PDEATHSIG)", PR_GET_PDEATHSIG)? as u32)
    }

    pub(crate) fn child_subreaper(&mut self, tid: Tid) -> Result<bool> {
        Ok(
            self.prctl_ptr_u64(tid, "prctl(PR_GET_CHILD_SUBREAPER)", PR_GET_CHILD_SUBREAPER)?
                as u32
                != 0,
        )
    }

    pub(crate) fn dumpable(&mut self, tid: Tid) -> Result<i32> {
        Ok(self.prctl_ret(tid, "prctl(PR_GET_DUMPABLE)", PR_GET_DUMPABLE)? as i32)
    }

    pub(crate) fn thp_disabled(&mut self, tid: Tid) -> Result<bool> {
        Ok(self.prctl_ret(tid, "prctl(PR_GET_THP_DISABLE)", PR_GET_THP_DISABLE)? != 0)
    }

    pub(crate) fn securebits(&mut self, tid: Tid) -> Result<u32> {
        Ok(self.prctl_ret(tid, "prctl(PR_GET_SECUREBITS)", PR_GET_SECUREBITS)? as u32)
    }

    /// The current program break.
    pub(crate) fn brk(&mut self, tid: Tid) -> Result<u64> {
        Ok(self.call(tid, "brk", libc::SYS_brk, [0; 6])? as u64)
    }

    /// The robust futex list head and its length.
    pub(crate) fn robust_list(&mut self, tid: Tid) -> Result<(u64, u32)> {
        self.call(
            tid,
            "get_robust_list",
            libc::SYS_get_robust_list,
            [0, self.at(0), self.at(8), 0, 0, 0],
        )?;
        let b = self.read(0, 16)?;
        Ok((u64_at(&b, 0), u64_at(&b, 8) as u32))
    }

    /// Scheduling policy (with SCHED_RESET_ON_FORK), nice, and the RT priority when the
    /// policy is SCHED_FIFO or SCHED_RR.
    pub(crate) fn sched(&mut self, tid: Tid) -> Result<(u32, i32, Option<u32>)> {
        let policy = self.call(
            tid,
            "sched_getscheduler",
            libc::SYS_sched_getscheduler,
            [0; 6],
        )? as u32;
        // The raw syscall returns 20 - nice so that it is never negative.
        let prio = self.call(
            tid,
            "getpriority",
            libc::SYS_getpriority,
            [libc::PRIO_PROCESS as u64, 0, 0, 0, 0, 0],
        )?;
        let nice = 20 - prio as i32;
        let base = policy & !(libc::SCHED_RESET_ON_FORK as u32);
        let rt = if base == libc::SCHED_FIFO as u32 || base == libc::SCHED_RR as u32 {
            self.call(
                tid,
                "sched_getparam",
                libc::SYS_sched_getparam,
                [0, self.at(0), 0, 0, 0, 0],
            )?;
            Some(u32_at(&self.read(0, 4)?, 0))
        } else {
            None
        };
        Ok((policy, nice, rt))
    }
}
