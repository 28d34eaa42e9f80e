//! Keeping crs's ptrace thread and its tracees on one CPU.
//!
//! Every injected syscall, register access cycle and stop is a round trip between crs and a
//! tracee. When the two sit on different CPUs, each wakeup of the other side is an
//! inter-processor interrupt to a CPU that has usually gone idle; in a VM that is a trip
//! through the hypervisor. Measured on this project's 2-CPU VM (a pipe ping-pong between
//! two processes): 1.9 µs per round trip on one CPU, 20 µs left to the scheduler, 65 µs
//! pinned to different CPUs. So while crs drives a tree it runs the driving thread and
//! every held thread on one CPU ([`CpuPin`], [`crate::SeizedTree::pin_to_cpu`]), and puts
//! each thread's own CPU mask back before letting it go. Work that needs no ptrace (page
//! copies on the rayon pool) is not pinned.

use nix::sched::{sched_getaffinity, sched_getcpu, sched_setaffinity, CpuSet};
use nix::unistd::Pid;
use std::sync::Mutex;
use tracing::debug;

/// The calling thread pinned to one CPU; its previous mask is put back on drop.
pub struct CpuPin {
    cpu: usize,
    saved: CpuSet,
}

impl CpuPin {
    /// Pins the calling thread to the CPU it runs on now. `None` when the kernel refuses
    /// (crs then runs unpinned, only slower).
    pub fn here() -> Option<CpuPin> {
        let cpu = sched_getcpu().ok()?;
        CpuPin::to(cpu)
    }

    /// Pins the calling thread to `cpu`. `None` when the kernel refuses (a CPU outside
    /// the thread's cpuset, say).
    pub fn to(cpu: usize) -> Option<CpuPin> {
        // tid 0: the calling thread.
        let Some(saved) = pin_thread(0, cpu) else {
            debug!(cpu, "not pinning crs to a CPU");
            return None;
        };
        UNPINNED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(saved);
        Some(CpuPin { cpu, saved })
    }

    /// The CPU the thread is pinned to.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// The mask the thread had before it was pinned.
    pub fn saved(&self) -> &CpuSet {
        &self.saved
    }
}

impl Drop for CpuPin {
    fn drop(&mut self) {
        let _ = set_mask(0, &self.saved);
    }
}

/// The mask crs's threads had before the first [`CpuPin`].
static UNPINNED: Mutex<Option<CpuSet>> = Mutex::new(None);

/// Gives the calling thread the mask crs had before anything was pinned: for a thread
/// started by a pinned one (which inherits its one-CPU mask) that does work needing no
/// ptrace. Nothing is done when nothing was ever pinned.
pub fn unpin_this_thread() {
    let saved = *UNPINNED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(mask) = saved {
        let _ = set_mask(0, &mask);
    }
}

/// The CPUs the calling thread may run on, ascending.
pub fn allowed_cpus() -> Vec<usize> {
    let Ok(set) = sched_getaffinity(Pid::from_raw(0)) else {
        return Vec::new();
    };
    (0..CpuSet::count())
        .filter(|&c| set.is_set(c).unwrap_or(false))
        .collect()
}

/// Sets `tid`'s mask to `cpu` alone and returns the mask it had; `None` (and the thread
/// left as it was) when the kernel refuses. For a task crs created itself and will hold
/// with [`crate::SeizedTree::pin_to_cpu`] (which puts a chosen mask back at release):
/// moving it before the seize keeps the seize's own round trips on one CPU.
pub fn pin_thread(tid: i32, cpu: usize) -> Option<CpuSet> {
    let saved = mask_of(tid)?;
    set_only(tid, cpu).then_some(saved)
}

/// `tid`'s CPU mask.
pub(crate) fn mask_of(tid: i32) -> Option<CpuSet> {
    sched_getaffinity(Pid::from_raw(tid)).ok()
}

/// Sets `tid`'s mask to `cpu` alone; false when the kernel refuses.
pub(crate) fn set_only(tid: i32, cpu: usize) -> bool {
    only(cpu).is_some_and(|set| sched_setaffinity(Pid::from_raw(tid), &set).is_ok())
}

/// The mask of `cpu` alone (`None` past the largest CPU number a mask holds).
fn only(cpu: usize) -> Option<CpuSet> {
    let mut one = CpuSet::new();
    one.set(cpu).ok()?;
    Some(one)
}

/// Sets `tid`'s mask (puts a saved one back). A thread that is gone needs nothing.
pub fn set_mask(tid: i32, saved: &CpuSet) -> std::io::Result<()> {
    match sched_setaffinity(Pid::from_raw(tid), saved) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_of_this_thread_is_undone_on_drop() {
        let before = sched_getaffinity(Pid::from_raw(0)).unwrap();
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        {
            let pin = CpuPin::to(cpus[cpus.len() - 1]).expect("pinning to an allowed CPU");
            let now = sched_getaffinity(Pid::from_raw(0)).unwrap();
            let set: Vec<usize> = (0..CpuSet::count())
                .filter(|&c| now.is_set(c).unwrap())
                .collect();
            assert_eq!(set, [pin.cpu()]);
            assert_eq!(sched_getcpu().unwrap(), pin.cpu());
        }
        assert_eq!(sched_getaffinity(Pid::from_raw(0)).unwrap(), before);
    }
}
