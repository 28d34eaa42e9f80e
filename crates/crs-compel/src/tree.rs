//! Seizing a process tree, holding it, and letting it go.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::io;
use std::marker::PhantomData;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use crs_sys::ptrace::{self, Stop};
use crs_sys::remote::RemoteRange;
use crs_sys::{pidfd, RemoteAddr, Tid};
use nix::sched::CpuSet;
use tracing::{debug, debug_span, warn};

use crate::arch::{Arch, Host, Regs};
use crate::freezer::Freezer;
use crate::{guard, pin, procfs, Error, Result};

/// How to seize a tree.
#[derive(Clone, Debug)]
pub struct SeizeOptions {
    /// Set PTRACE_O_SUSPEND_SECCOMP so injected syscalls bypass the tasks' seccomp filters
    /// (needs CAP_SYS_ADMIN and an unfiltered crs).
    pub suspend_seccomp: bool,
    /// Freeze this cgroup (v1 `freezer.state` or v2 `cgroup.freeze`) while seizing, so the
    /// tree cannot change under the walk; it is thawed once every task is held.
    pub freeze_cgroup: Option<PathBuf>,
    /// How long to wait for the cgroup to report frozen.
    pub freeze_timeout: Duration,
}

impl Default for SeizeOptions {
    fn default() -> Self {
        SeizeOptions {
            suspend_seccomp: true,
            freeze_cgroup: None,
            freeze_timeout: Duration::from_secs(10),
        }
    }
}

/// What to do with the tree when letting it go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// Detach every thread, leaving it running (or group-stopped) as it was found.
    Detach,
    /// SIGKILL every process and reap the traced threads.
    Kill,
}

/// One held thread.
#[derive(Debug)]
pub struct SeizedThread {
    pub(crate) tid: Tid,
    pub(crate) stopped: bool,
    /// The signal of its group-stop (SIGSTOP, SIGTSTP, ...), 0 when not stopped.
    pub(crate) stop_signo: i32,
    pub(crate) regs: Regs,
    pub(crate) sigmask: u64,
}

impl SeizedThread {
    /// The thread id.
    pub fn tid(&self) -> Tid {
        self.tid
    }

    /// Whether the thread was in group-stop (SIGSTOP, job control) when seized; release
    /// leaves it stopped.
    pub fn was_stopped(&self) -> bool {
        self.stopped
    }

    /// The registers the thread had when seized (or as last set), which it will resume with.
    pub fn regs(&self) -> &Regs {
        &self.regs
    }

    /// The thread's blocked-signal mask (bit n-1 = signal n).
    pub fn sigmask(&self) -> u64 {
        self.sigmask
    }
}

/// One held process.
#[derive(Debug)]
pub struct SeizedProcess {
    pub(crate) pid: Tid,
    pub(crate) ppid: Tid,
    pub(crate) threads: Vec<SeizedThread>,
    pub(crate) pidfd: Option<OwnedFd>,
    pub(crate) syscall_site: Option<RemoteAddr>,
    pub(crate) scratch: Option<RemoteRange>,
    pub(crate) batch: Option<crate::batch::BatchSite>,
    /// What compel mapped in the process (batch code, scratch, batch table).
    pub(crate) own_map: Option<RemoteRange>,
    /// SigIgn and SigCgt, once read (see the batch's stop signal), and whether the
    /// process is in a pid namespace below crs's (its ids inside differ from crs's).
    pub(crate) dispositions: Option<(u64, u64, bool)>,
    /// Where the vDSO ends, once looked up (`Some(None)`: no vDSO).
    pub(crate) vdso_end: Option<Option<u64>>,
    /// `/proc/PID/mem` opened for writing, once needed.
    pub(crate) mem: Option<std::fs::File>,
}

impl SeizedProcess {
    /// The process id (thread-group id).
    pub fn pid(&self) -> Tid {
        self.pid
    }

    /// The parent process id when seized.
    pub fn ppid(&self) -> Tid {
        self.ppid
    }

    /// The held threads, in the order they were seized.
    pub fn threads(&self) -> &[SeizedThread] {
        &self.threads
    }

    /// Whether the process was group-stopped when seized.
    pub fn was_stopped(&self) -> bool {
        self.threads.iter().any(|t| t.stopped)
    }

    /// The signal that group-stopped the process (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU),
    /// if it was stopped when seized.
    pub fn stop_signal(&self) -> Option<i32> {
        self.threads
            .iter()
            .find(|t| t.stopped && t.stop_signo != 0)
            .map(|t| t.stop_signo)
    }
}

/// A process tree whose every thread is stopped under ptrace by the calling thread.
///
/// Not `Send`: ptrace binds tracees to the thread that attached them. Dropping it without
/// [`SeizedTree::release`] detaches every thread.
pub struct SeizedTree {
    root: Tid,
    options: u64,
    pub(crate) procs: BTreeMap<Tid, SeizedProcess>,
    pub(crate) owner: HashMap<Tid, Tid>,
    /// Seized and interrupted, stop not yet collected: (pid, tid).
    pending: Vec<(Tid, Tid)>,
    /// Threads that are exiting and cannot be seized (a zombie leader of a live group).
    unseizable: HashSet<Tid>,
    zombies: BTreeSet<Tid>,
    /// Set by [`SeizedTree::pin_to_cpu`]: the CPU, and each pinned thread's mask to put
    /// back at release.
    pinned: Option<(usize, HashMap<Tid, CpuSet>)>,
    released: bool,
    _not_send: PhantomData<*const ()>,
}

/// What seizing one thread came to.
enum SeizeOutcome {
    Seized,
    /// Exiting or already gone: not part of the tree any more.
    Gone,
    /// A zombie: listed in /proc but cannot be traced.
    Zombie,
}

impl SeizedTree {
    /// Stops every thread of every process at or below `root`, and keeps looking until no
    /// new thread or child appears. A thread that exits meanwhile is dropped from the tree;
    /// zombie processes are listed in [`SeizedTree::zombies`].
    pub fn seize(root: Tid, opts: &SeizeOptions) -> Result<SeizedTree> {
        let _span = debug_span!("seize", root).entered();
        if root == std::process::id() as Tid {
            return Err(Error::SelfInTree { pid: root });
        }
        procfs::status(root).map_err(|_| Error::NoSuchProcess { pid: root })?;
        let mut tree = SeizedTree::empty(root, opts);
        if let Some(path) = &opts.freeze_cgroup {
            let freezer = Freezer::freeze(path, opts.freeze_timeout)?;
            // Frozen tasks (cgroup v1) only take the interrupt once thawed: seize and
            // interrupt everything now, thaw, then collect the stops.
            let walked = tree.seize_frozen();
            let thawed = freezer.thaw();
            walked?;
            thawed?;
            tree.settle_pending()?;
        }
        tree.collect()?;
        tree.trace_exits()?;
        debug!(
            processes = tree.procs.len(),
            threads = tree.owner.len(),
            zombies = tree.zombies.len(),
            "tree seized"
        );
        Ok(tree)
    }

    /// Seizes every thread of each listed process, and nothing else (not their children):
    /// for a caller that knows the whole tree and holds it in parts, one part per thread
    /// (restore builds processes in parallel this way). The first pid is the part's root.
    /// A listed process that is gone is an error; so is an empty list.
    pub fn seize_processes(pids: &[Tid], opts: &SeizeOptions) -> Result<SeizedTree> {
        let &root = pids.first().ok_or(Error::NoSuchProcess { pid: 0 })?;
        let _span = debug_span!("seize", root, processes = pids.len()).entered();
        let mut tree = SeizedTree::empty(root, opts);
        for &pid in pids {
            if pid == std::process::id() as Tid {
                return Err(Error::SelfInTree { pid });
            }
            tree.seize_threads(pid)?;
            if !tree.procs.contains_key(&pid) {
                return Err(Error::NoSuchProcess { pid });
            }
        }
        tree.trace_exits()?;
        Ok(tree)
    }

    fn empty(root: Tid, opts: &SeizeOptions) -> SeizedTree {
        let mut options = ptrace::opt::TRACESYSGOOD | ptrace::opt::TRACEEXIT;
        if opts.suspend_seccomp {
            options |= ptrace::opt::SUSPEND_SECCOMP;
        }
        SeizedTree {
            root,
            options,
            procs: BTreeMap::new(),
            owner: HashMap::new(),
            pending: Vec::new(),
            unseizable: HashSet::new(),
            zombies: BTreeSet::new(),
            pinned: None,
            released: false,
            _not_send: PhantomData,
        }
    }

    /// Runs every held thread, and each thread adopted later, on CPU `cpu` alone until the
    /// tree is released (see [`crate::pin`]; the caller pins its own thread there too).
    /// At release each thread gets back `restore_to` if given (restore: the mask crs
    /// started with, which the new tasks should have), else the mask it had. A thread the
    /// kernel will not pin is left as it is.
    pub fn pin_to_cpu(&mut self, cpu: usize, restore_to: Option<CpuSet>) {
        let mut saved = HashMap::new();
        for (pid, tid) in self.pid_tids() {
            if let Some(old) = pin_recorded(pid, tid, cpu) {
                saved.insert(tid, restore_to.unwrap_or(old));
            }
        }
        debug!(cpu, threads = saved.len(), "held threads pinned");
        self.pinned = Some((cpu, saved));
    }

    /// Every held thread with its process: (pid, tid).
    fn pid_tids(&self) -> Vec<(Tid, Tid)> {
        self.procs
            .values()
            .flat_map(|p| p.threads.iter().map(|t| (p.pid, t.tid)))
            .collect()
    }

    /// Puts back the masks [`SeizedTree::pin_to_cpu`] changed.
    fn unpin(&mut self) -> Result<()> {
        let Some((_, saved)) = self.pinned.take() else {
            return Ok(());
        };
        let mut first_err = None;
        for (tid, mask) in saved {
            if let Err(source) = pin::set_mask(tid, &mask) {
                first_err.get_or_insert(Error::Affinity { tid, source });
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The root pid the tree was seized from.
    pub fn root(&self) -> Tid {
        self.root
    }

    /// The held processes, by pid.
    pub fn processes(&self) -> impl Iterator<Item = &SeizedProcess> {
        self.procs.values()
    }

    /// One held process.
    pub fn process(&self, pid: Tid) -> Option<&SeizedProcess> {
        self.procs.get(&pid)
    }

    /// Every held thread id.
    pub fn tids(&self) -> impl Iterator<Item = Tid> + '_ {
        self.procs
            .values()
            .flat_map(|p| p.threads.iter().map(|t| t.tid))
    }

    /// Number of held threads.
    pub fn thread_count(&self) -> usize {
        self.owner.len()
    }

    /// Zombie processes found in the tree (not traced: they run no code).
    pub fn zombies(&self) -> impl Iterator<Item = Tid> + '_ {
        self.zombies.iter().copied()
    }

    /// The pid of the process a held thread belongs to.
    pub fn pid_of(&self, tid: Tid) -> Result<Tid> {
        self.owner
            .get(&tid)
            .copied()
            .ok_or(Error::NotSeized { tid })
    }

    /// A held thread.
    pub fn thread(&self, tid: Tid) -> Result<&SeizedThread> {
        let pid = self.pid_of(tid)?;
        self.procs[&pid]
            .threads
            .iter()
            .find(|t| t.tid == tid)
            .ok_or(Error::NotSeized { tid })
    }

    pub(crate) fn thread_mut(&mut self, tid: Tid) -> Result<&mut SeizedThread> {
        let pid = self.pid_of(tid)?;
        self.procs
            .get_mut(&pid)
            .and_then(|p| p.threads.iter_mut().find(|t| t.tid == tid))
            .ok_or(Error::NotSeized { tid })
    }

    /// Seizes thread `tid`, just created inside held process `pid` (by an injected clone),
    /// and holds it like the threads found at seize: it is stopped when this returns, and
    /// released with the rest of the tree.
    pub fn adopt_thread(&mut self, pid: Tid, tid: Tid) -> Result<()> {
        if !self.procs.contains_key(&pid) {
            return Err(Error::NotSeized { tid: pid });
        }
        if self.owner.contains_key(&tid) {
            return Ok(());
        }
        match self.seize_one(tid)? {
            // A thread crs made itself: nothing can exec under it, so its first stop is
            // waited for (a new thread spins on the CPU crs's thread is pinned to: polling
            // would only take turns with it).
            SeizeOutcome::Seized => self.collect_stop_with(pid, tid, FirstStop::Wait)?,
            SeizeOutcome::Gone | SeizeOutcome::Zombie => {}
        }
        if self.owner.contains_key(&tid) {
            self.trace_exit(tid)?;
            // A new thread inherits its creator's pinned mask: it gets its process's
            // saved one back at release.
            if let Some((cpu, saved)) = &mut self.pinned {
                if let Some(mask) = saved.get(&pid).copied() {
                    if pin_recorded(pid, tid, *cpu).is_some() {
                        saved.insert(tid, mask);
                    }
                }
            }
            Ok(())
        } else {
            Err(Error::ThreadGone { tid })
        }
    }

    /// Lets the tree go: detach (as found) or kill. Every thread is handled even when one
    /// fails; the first error is returned.
    pub fn release(mut self, how: Release) -> Result<()> {
        self.release_inner(how)
    }

    /// Gives held thread `tid` registers `regs` and signal mask `sigmask`, in the kernel and
    /// as the state release leaves it with (the guardian's: a thread a dead crs left parked
    /// in compel's code). The mask goes first: it may differ from the thread's only while
    /// its instruction pointer is in compel's code.
    pub(crate) fn reset_thread(&mut self, tid: Tid, regs: &Regs, sigmask: u64) -> Result<()> {
        let t = self.thread_mut(tid)?;
        ptrace::set_sigmask(tid, sigmask).map_err(|source| Error::SetSigmask { tid, source })?;
        Host::set_regs(tid, regs).map_err(|source| Error::SetRegs { tid, source })?;
        t.regs = *regs;
        t.sigmask = sigmask;
        Ok(())
    }

    /// Walks the tree and seizes until a whole pass finds nothing new.
    fn collect(&mut self) -> Result<()> {
        loop {
            let mut changed = false;
            let mut todo = VecDeque::from([self.root]);
            let mut seen = HashSet::new();
            while let Some(pid) = todo.pop_front() {
                if !seen.insert(pid) {
                    continue;
                }
                changed |= self.seize_threads(pid)?;
                let Some(proc_) = self.procs.get(&pid) else {
                    continue;
                };
                for t in &proc_.threads {
                    match procfs::children(pid, t.tid) {
                        Ok(kids) => todo.extend(kids),
                        // A held thread cannot vanish unless killed from outside.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(source) => return Err(Error::ListChildren { tid: t.tid, source }),
                    }
                }
            }
            if !changed && !self.recheck()? {
                return Ok(());
            }
        }
    }

    /// The options a thread is seized with: without `PTRACE_O_TRACEEXIT` until the whole
    /// tree is held. An execve in a multi-threaded process waits until every other thread
    /// of it is dead; a thread we hold that it kills would stop at its exit event and wait
    /// for us, while we wait for (or, in PTRACE_SEIZE, for the exec lock of) the execing
    /// thread: a deadlock. Without the exit event the killed thread just dies.
    fn seize_options(&self) -> u64 {
        self.options & !ptrace::opt::TRACEEXIT
    }

    /// Once the tree is held (no thread of it can exec any more): the exit event on for
    /// every held thread, so a thread killed while held stops at its exit.
    fn trace_exits(&mut self) -> Result<()> {
        let tids: Vec<Tid> = self.owner.keys().copied().collect();
        for tid in tids {
            self.trace_exit(tid)?;
        }
        Ok(())
    }

    fn trace_exit(&self, tid: Tid) -> Result<()> {
        match ptrace::set_options(tid, self.options) {
            Ok(()) => Ok(()),
            // Killed from outside while held: whoever drives it next finds it gone.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(source) => Err(Error::Seize { tid, source }),
        }
    }

    /// After a pass that found nothing new: is what is held still what was collected? An
    /// execve from a thread the walk had not stopped yet kills every other thread of its
    /// process, and the execing thread takes over the leader's tid, so a held tid may now
    /// name a dead thread or a new program, and a zombie leader the walk set aside may
    /// live again. Each held thread must be in its tracing stop with nothing new to report;
    /// one that is not is collected again (or dropped if it is not ours any more), and the
    /// walk goes round once more. Returns whether anything changed.
    fn recheck(&mut self) -> Result<bool> {
        use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
        let me = nix::unistd::gettid().as_raw();
        let mut changed = false;
        let revived: Vec<Tid> = self
            .unseizable
            .iter()
            .copied()
            .filter(|&t| matches!(procfs::status(t), Ok(st) if st.state != 'Z' && st.state != 'X'))
            .collect();
        for tid in revived {
            debug!(tid, "a zombie set aside lives again (an exec took its tid)");
            self.unseizable.remove(&tid);
            changed = true;
        }
        let held: Vec<(Tid, Tid)> = self.owner.iter().map(|(&t, &p)| (p, t)).collect();
        let peek = WaitPidFlag::WSTOPPED
            | WaitPidFlag::WEXITED
            | WaitPidFlag::WNOHANG
            | WaitPidFlag::WNOWAIT
            | WaitPidFlag::__WALL;
        for (pid, tid) in held {
            let (news, ours) = match waitid(Id::Pid(nix::unistd::Pid::from_raw(tid)), peek) {
                Ok(WaitStatus::StillAlive) => match procfs::status(tid) {
                    Ok(st) if st.tracer == me => (st.state != 't', true),
                    _ => (true, false),
                },
                Ok(_) => (true, true),
                Err(nix::errno::Errno::ECHILD) => (true, false),
                Err(e) => {
                    return Err(Error::Wait {
                        tid,
                        source: e.into(),
                    })
                }
            };
            if !news {
                continue;
            }
            debug!(
                pid,
                tid, ours, "a held thread changed under the walk: collected again"
            );
            self.forget(pid, tid);
            if ours {
                self.pending.push((pid, tid));
            }
            changed = true;
        }
        if changed {
            self.settle_pending()?;
        }
        Ok(changed)
    }

    /// Drops what was collected of one held thread (and its process, if it was the last).
    fn forget(&mut self, pid: Tid, tid: Tid) {
        self.owner.remove(&tid);
        if let Some(p) = self.procs.get_mut(&pid) {
            p.threads.retain(|t| t.tid != tid);
            if p.threads.is_empty() {
                self.procs.remove(&pid);
            }
        }
    }

    /// Seizes the threads of `pid` not yet held, until its thread list is stable. Returns
    /// whether anything new was found.
    fn seize_threads(&mut self, pid: Tid) -> Result<bool> {
        let mut changed = false;
        loop {
            let tids = match procfs::list_tids(pid) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(changed),
                Err(source) => return Err(Error::ListThreads { pid, source }),
            };
            let new: Vec<Tid> = tids
                .iter()
                .copied()
                .filter(|t| !self.owner.contains_key(t) && !self.unseizable.contains(t))
                .collect();
            if new.is_empty() {
                break;
            }
            changed = true;
            for tid in new {
                match self.seize_one(tid)? {
                    SeizeOutcome::Seized => self.pending.push((pid, tid)),
                    SeizeOutcome::Zombie => {
                        self.unseizable.insert(tid);
                    }
                    SeizeOutcome::Gone => {}
                }
            }
            self.settle_pending()?;
        }
        if !self.procs.contains_key(&pid) && !self.zombies.contains(&pid) {
            if let Ok(st) = procfs::status(pid) {
                if st.state == 'Z' {
                    self.zombies.insert(pid);
                    changed = true;
                }
            }
        }
        Ok(changed)
    }

    fn seize_one(&mut self, tid: Tid) -> Result<SeizeOutcome> {
        // EPERM from a live thread nobody traces: the old leader of a process that is in
        // an execve from another thread, a zombie for a moment until the execing thread
        // takes its tid. It is seizable again right after; anything else that refuses
        // (an LSM) refuses for good.
        let deadline = std::time::Instant::now() + EXEC_RACE_LIMIT;
        loop {
            let e = match ptrace::seize(tid, self.seize_options()) {
                Ok(()) => break,
                Err(e) => e,
            };
            match e.raw_os_error() {
                Some(libc::ESRCH) => return Ok(SeizeOutcome::Gone),
                Some(libc::EPERM) => {}
                _ => return Err(Error::Seize { tid, source: e }),
            }
            let st = match procfs::status(tid) {
                Err(_) => return Ok(SeizeOutcome::Gone),
                Ok(st) => st,
            };
            if st.state == 'Z' || st.state == 'X' {
                return Ok(SeizeOutcome::Zombie);
            }
            if st.tracer == nix::unistd::gettid().as_raw() {
                // Ours already: a thread seized under another tid that then took this one
                // by an execve. Its interrupt is still pending.
                debug!(tid, "seized earlier under another tid (execve)");
                return Ok(SeizeOutcome::Seized);
            }
            if st.tracer != 0 {
                return Err(already_traced(tid, st.tgid, st.tracer));
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::SeizeDenied {
                    tid,
                    pid: st.tgid,
                    waited_ms: EXEC_RACE_LIMIT.as_millis() as u64,
                });
            }
            std::thread::yield_now();
        }
        match ptrace::interrupt(tid) {
            Ok(()) => Ok(SeizeOutcome::Seized),
            // Died right after the seize: the wait in settle_pending collects its exit.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(SeizeOutcome::Seized),
            Err(source) => Err(Error::Interrupt { tid, source }),
        }
    }

    /// Collects the stop of every seized-and-interrupted thread and records it. Threads of
    /// other groups first, thread-group leaders last: an exiting leader is reported only
    /// after the rest of its group is gone, which may need us to let a thread go first.
    pub(crate) fn settle_pending(&mut self) -> Result<()> {
        self.pending
            .sort_by_key(|&(pid, tid)| std::cmp::Reverse((pid == tid, tid)));
        let mut first_err = None;
        while let Some((pid, tid)) = self.pending.pop() {
            match self.collect_stop(pid, tid) {
                Ok(()) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn collect_stop(&mut self, pid: Tid, tid: Tid) -> Result<()> {
        self.collect_stop_with(pid, tid, FirstStop::Poll)
    }

    fn collect_stop_with(&mut self, pid: Tid, tid: Tid, how: FirstStop) -> Result<()> {
        let Some(stop_signo) = initial_stop(tid, how)? else {
            debug!(tid, "thread exited while being seized");
            return Ok(());
        };
        let regs = Host::get_regs(tid).map_err(|source| Error::GetRegs { tid, source });
        let sigmask = ptrace::get_sigmask(tid).map_err(|source| Error::GetSigmask { tid, source });
        let (regs, sigmask) = match (regs, sigmask) {
            (Ok(r), Ok(m)) => (r, m),
            // Killed right after it stopped (an execve from another thread of its process
            // kills the others): gone, like a thread that exits while being seized.
            (Err(Error::GetRegs { source, .. } | Error::GetSigmask { source, .. }), _)
            | (_, Err(Error::GetSigmask { source, .. }))
                if source.raw_os_error() == Some(libc::ESRCH) =>
            {
                debug!(tid, "thread killed while being seized");
                return Ok(());
            }
            (Err(e), _) | (_, Err(e)) => {
                let _ = ptrace::detach(tid, 0);
                return Err(e);
            }
        };
        let proc_ = self.procs.entry(pid).or_insert_with(|| {
            let pidfd = pidfd::pidfd_open(pid, 0).ok();
            if let Some(fd) = &pidfd {
                use std::os::fd::AsFd;
                guard::record_with_fd(&guard::Record::Held { pid }, fd.as_fd());
            }
            SeizedProcess {
                pid,
                ppid: procfs::status(pid).map(|s| s.ppid).unwrap_or(0),
                threads: Vec::new(),
                pidfd,
                syscall_site: None,
                scratch: None,
                batch: None,
                own_map: None,
                dispositions: None,
                vdso_end: None,
                mem: None,
            }
        });
        guard::record(&guard::Record::Thread {
            pid,
            tid,
            sigmask,
            regs: Host::regs_to_words(&regs),
        });
        let stopped = stop_signo != 0;
        debug!(pid, tid, stopped, ip = %Host::ip(&regs), "thread held");
        proc_.threads.push(SeizedThread {
            tid,
            stopped,
            stop_signo,
            regs,
            sigmask,
        });
        self.owner.insert(tid, pid);
        Ok(())
    }

    /// Seizes and interrupts every thread of the (frozen) tree without waiting.
    fn seize_frozen(&mut self) -> Result<()> {
        let mut todo = VecDeque::from([self.root]);
        let mut seen = HashSet::new();
        while let Some(pid) = todo.pop_front() {
            if !seen.insert(pid) {
                continue;
            }
            let tids = match procfs::list_tids(pid) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(Error::ListThreads { pid, source }),
            };
            for tid in tids {
                if let Ok(kids) = procfs::children(pid, tid) {
                    todo.extend(kids);
                }
                match self.seize_one(tid)? {
                    SeizeOutcome::Seized => self.pending.push((pid, tid)),
                    SeizeOutcome::Zombie => {
                        self.unseizable.insert(tid);
                    }
                    SeizeOutcome::Gone => {}
                }
            }
        }
        Ok(())
    }

    fn release_inner(&mut self, how: Release) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let _span = debug_span!("release", root = self.root, ?how).entered();
        let mut first_err: Option<Error> = self.settle_pending().err();
        match how {
            Release::Detach => {
                if let Err(e) = self.unpin() {
                    first_err.get_or_insert(e);
                }
                let pids: Vec<Tid> = self.procs.keys().copied().collect();
                for pid in pids {
                    if let Err(e) = self.unmap_scratch(pid) {
                        first_err.get_or_insert(e);
                    }
                }
                for p in self.procs.values() {
                    // Leader last: if the group was killed meanwhile, the leader's exit is
                    // reported only once the other threads are reaped.
                    for tid in leader_last(p) {
                        if let Err(e) = detach_thread(tid) {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
            Release::Kill => {
                guard::record(&guard::Record::Killing);
                for p in self.procs.values() {
                    let sent = match &p.pidfd {
                        Some(fd) => {
                            use std::os::fd::AsFd;
                            pidfd::pidfd_send_signal(fd.as_fd(), libc::SIGKILL)
                        }
                        None => nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(p.pid),
                            nix::sys::signal::Signal::SIGKILL,
                        )
                        .map_err(io::Error::from),
                    };
                    if let Err(source) = sent {
                        if source.raw_os_error() != Some(libc::ESRCH) {
                            first_err.get_or_insert(Error::Kill { pid: p.pid, source });
                        }
                    }
                }
                // The root last: when it is the init of a pid namespace, its exit waits
                // until every other process of the namespace is reaped, and a traced one
                // is reaped only once its tracer (crs) has seen it die.
                let root = self.root;
                let order = self
                    .procs
                    .values()
                    .filter(|p| p.pid != root)
                    .chain(self.procs.get(&root));
                for p in order {
                    for tid in leader_last(p) {
                        if let Err(e) = reap_killed(tid) {
                            first_err.get_or_insert(e);
                        }
                    }
                }
            }
        }
        self.procs.clear();
        self.owner.clear();
        first_err.map_or(Ok(()), Err)
    }
}

impl Drop for SeizedTree {
    fn drop(&mut self) {
        if !self.released {
            warn!(root = self.root, "tree dropped while held: detaching it");
            if let Err(e) = self.release_inner(Release::Detach) {
                warn!(root = self.root, error = %e, "detaching a dropped tree");
            }
        }
    }
}

/// Pins thread `tid` of process `pid` to `cpu` and returns the mask it had, recorded for the
/// guardian before the change; `None` (and the thread left as it was) when the kernel
/// refuses.
fn pin_recorded(pid: Tid, tid: Tid, cpu: usize) -> Option<CpuSet> {
    let old = pin::mask_of(tid)?;
    guard::record(&guard::Record::Mask {
        pid,
        tid,
        cpus: guard::mask_words(&old),
    });
    pin::set_only(tid, cpu).then_some(old)
}

/// How long a live, untraced thread may refuse PTRACE_SEIZE with EPERM before that is an
/// error (see [`SeizedTree::seize_one`]).
const EXEC_RACE_LIMIT: Duration = Duration::from_secs(1);

/// [`Error::AlreadyTraced`] for thread `tid` of process `pid`, traced by thread `tracer`,
/// with the tracer's process and that process's name as /proc tells them.
fn already_traced(tid: Tid, pid: Tid, tracer: Tid) -> Error {
    let tracer_pid = procfs::status(tracer).map_or(tracer, |st| st.tgid);
    let tracer_name = std::fs::read_to_string(format!("/proc/{tracer_pid}/comm"))
        .map(|s| s.trim_end().to_owned())
        .unwrap_or_else(|_| "?".to_owned());
    Error::AlreadyTraced {
        tid,
        pid,
        tracer,
        tracer_pid,
        tracer_name,
    }
}

/// Waits for the first stop of a just-interrupted thread. `Some(stop signal)` once it is
/// held (0: it was not group-stopped), `None` if it exited.
///
/// The wait polls rather than blocks: a thread seized just before another thread of its
/// process runs execve is killed by the exec and then silently let go by the kernel (the
/// execing thread takes over its tid, untraced), and a blocking wait for it was seen never
/// to return. Between polls the thread must still be traced by this thread.
fn initial_stop(tid: Tid, how: FirstStop) -> Result<Option<i32>> {
    let me = nix::unistd::gettid().as_raw();
    let mut idle = 0u32;
    loop {
        let waited = match how {
            FirstStop::Wait => ptrace::wait(tid).map(Some),
            FirstStop::Poll => ptrace::try_wait(tid),
        };
        let st = match waited {
            Ok(Some(st)) => st,
            Ok(None) => {
                // A stop normally follows the interrupt within microseconds: yield a few
                // times, then sleep, longer each time up to 160 us; whether the thread is
                // still ours is read from /proc only once the stop is late.
                if idle >= YIELDS && idle.is_multiple_of(YIELDS) {
                    match procfs::status(tid) {
                        Ok(st) if st.tracer == me => {}
                        _ => return Ok(None),
                    }
                }
                if idle < YIELDS {
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(Duration::from_micros(10 << (idle - YIELDS).min(4)));
                }
                idle += 1;
                continue;
            }
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(None),
            Err(source) => return Err(Error::Wait { tid, source }),
        };
        let resumed = match st {
            Stop::EventStop(sig) => return Ok(Some(if sig == libc::SIGTRAP { 0 } else { sig })),
            Stop::Exited(_) | Stop::Signaled(_) => return Ok(None),
            Stop::Event(ptrace::event::EXIT, _) => {
                // Exiting on its own: let it finish.
                let _ = ptrace::detach(tid, 0);
                return Ok(None);
            }
            // The thread was about to take a signal when the interrupt came: deliver it
            // as the kernel would have; the interrupt trap follows.
            Stop::Signal(sig) => ptrace::cont(tid, sig),
            Stop::Syscall | Stop::Event(..) => ptrace::cont(tid, 0),
        };
        match resumed {
            Ok(()) => {}
            // Killed meanwhile: the next wait reports the exit.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(source) => return Err(Error::Resume { tid, source }),
        }
    }
}

/// How [`initial_stop`] waits for a thread's first stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FirstStop {
    /// Block in wait4: for a thread crs created.
    Wait,
    /// Poll (see [`initial_stop`]): for a thread of a live tree, which an exec elsewhere in
    /// its process may take away without a wakeup.
    Poll,
}

/// Yields before [`initial_stop`] sleeps between polls.
const YIELDS: u32 = 16;

fn leader_last(p: &SeizedProcess) -> Vec<Tid> {
    let mut order: Vec<Tid> = p.threads.iter().map(|t| t.tid).collect();
    order.sort_by_key(|&t| (t == p.pid, t));
    order
}

fn detach_thread(tid: Tid) -> Result<()> {
    match ptrace::detach(tid, 0) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
            // Not in a stop: killed from outside while held. Reap it if it is a zombie
            // waiting for us, so its real parent gets to see it.
            let _ = ptrace::try_wait(tid);
            Ok(())
        }
        Err(source) => Err(Error::Detach { tid, source }),
    }
}

fn reap_killed(tid: Tid) -> Result<()> {
    loop {
        match ptrace::wait(tid) {
            Ok(Stop::Exited(_) | Stop::Signaled(_)) => return Ok(()),
            Ok(_) => match ptrace::cont(tid, 0) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(source) => return Err(Error::Resume { tid, source }),
            },
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => return Ok(()),
            Err(source) => return Err(Error::Wait { tid, source }),
        }
    }
}
