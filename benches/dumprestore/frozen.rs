//! Frozen time measured from outside the tools, the same way for crs and criu.
//!
//! The workload beats: each of its processes stores the CLOCK_MONOTONIC time into its slot
//! of a small shared file every period (`memfill.c` has the layout). A process stops beating
//! when the tool stops it, and beats again at once when it is thawed (its sleep has an
//! absolute deadline, long passed). The bench watches every process's pidfd from a thread
//! at real-time priority and timestamps each death.
//!
//! - Start: the root's last beat (it beats every [`ROOT_PERIOD`]), or, if earlier, the
//!   moment a child missed its second beat (last beat + 2 x [`CHILD_PERIOD`]): a child that
//!   was not starved cannot have been frozen later than that, so a tool that froze a child
//!   well before the root is caught. Both tools stop the root first (its children can only
//!   be listed once it cannot fork), so the start is the root's last beat, at most one
//!   root period (plus its wake-up delay) before the freeze.
//! - End of a dump that kills: the last death seen, at most one watcher wake-up after it.
//!   End of a `-R` dump: the last process's first beat after its longest silence during
//!   the dump.
//!
//! Children beat slowly because a beat costs: on this VM a timer wake-up takes about 15-20
//! µs of CPU, so 49 children at 100 µs would need several CPUs. Beats happen only while a
//! process runs, from arming (just before the tool starts) to its freeze; the bench stops
//! them (control word 0) before a restored tree runs.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Heartbeat period of the root process of a workload.
pub const ROOT_PERIOD: Duration = Duration::from_micros(100);
/// Heartbeat period of the children of a tree workload.
pub const CHILD_PERIOD: Duration = Duration::from_millis(5);

const SLOTS: usize = 63;
const SLOT_BYTES: usize = 256;
const HEADER_BYTES: usize = 64;
const FILE_BYTES: usize = HEADER_BYTES + SLOTS * SLOT_BYTES;
const RING: usize = 12;
const ARM_TIMEOUT: Duration = Duration::from_secs(30);

/// CLOCK_MONOTONIC now, in ns (the clock the workload stamps its beats with).
pub fn now_ns() -> u64 {
    crs_sys::time::now(libc::CLOCK_MONOTONIC)
        .expect("clock_gettime(CLOCK_MONOTONIC)")
        .as_nanos() as u64
}

/// One process's slot, as last written.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    pub pid: i32,
    pub period_ns: u64,
    pub beats: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub max_gap_ns: u64,
    /// (start, end) of the last gaps longer than two periods, oldest first.
    pub gaps: Vec<(u64, u64)>,
}

impl Slot {
    fn parse(b: &[u8]) -> (u64, Slot) {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let ngaps = w(7) as usize;
        let gaps = (ngaps.saturating_sub(RING)..ngaps)
            .map(|k| {
                let i = 8 + 2 * (k % RING);
                (w(i), w(i + 1))
            })
            .collect();
        let s = Slot {
            pid: w(1) as i32,
            period_ns: w(2),
            beats: w(3),
            first_ns: w(4),
            last_ns: w(5),
            max_gap_ns: w(6),
            gaps,
        };
        (w(0), s)
    }

    /// Mean time between beats before the freeze, in ns.
    pub fn mean_gap_ns(&self) -> f64 {
        if self.beats < 2 {
            return f64::NAN;
        }
        (self.last_ns - self.first_ns) as f64 / (self.beats - 1) as f64
    }
}

/// The heartbeat file shared with the workloads; removed on drop.
pub struct Heartbeat {
    path: PathBuf,
    file: File,
}

impl Heartbeat {
    /// A zeroed heartbeat file in `dir` (a tmpfs: its page is the workloads' mapping).
    pub fn create(dir: &Path) -> Heartbeat {
        let path = dir.join(format!("crs-bench-heartbeat-{}", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        file.set_len(FILE_BYTES as u64)
            .expect("size the heartbeat file");
        Heartbeat { path, file }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Zeroes every slot and the control word: before a workload starts.
    pub fn reset(&self) {
        self.file
            .write_all_at(&[0u8; FILE_BYTES], 0)
            .expect("zero the heartbeat file");
    }

    fn header(&self, control: u64) {
        let mut h = [0u8; 24];
        h[..8].copy_from_slice(&control.to_le_bytes());
        h[8..16].copy_from_slice(&(ROOT_PERIOD.as_nanos() as u64).to_le_bytes());
        h[16..].copy_from_slice(&(CHILD_PERIOD.as_nanos() as u64).to_le_bytes());
        self.file
            .write_all_at(&h, 0)
            .expect("write heartbeat header");
    }

    /// Starts the beats of `pids` (the root first, then the children in fork order, as the
    /// workload numbers its slots) and waits until each has beaten twice.
    pub fn arm(&self, case: &str, pids: &[i32]) {
        assert!(
            pids.len() <= SLOTS,
            "{case}: more processes than heartbeat slots"
        );
        self.header(1);
        for &p in pids {
            kill(Pid::from_raw(p), Signal::SIGUSR1).expect("SIGUSR1 a workload process");
        }
        let deadline = Instant::now() + ARM_TIMEOUT;
        loop {
            let slots = self.read(pids.len());
            if slots.iter().all(|s| s.beats >= 2) {
                let mut got: Vec<i32> = slots.iter().map(|s| s.pid).collect();
                let mut want = pids.to_vec();
                assert_eq!(got[0], want[0], "{case}: slot 0 is not the root's");
                got.sort_unstable();
                want.sort_unstable();
                assert_eq!(
                    got, want,
                    "{case}: heartbeat slots belong to other processes"
                );
                return;
            }
            assert!(Instant::now() < deadline, "{case}: workload does not beat");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops the beats: a restored workload goes back to waiting after one beat.
    pub fn disarm(&self) {
        self.header(0);
    }

    /// The first `n` slots, each whole (read until two reads agree and no slot is being
    /// written).
    pub fn read(&self, n: usize) -> Vec<Slot> {
        let len = HEADER_BYTES + n * SLOT_BYTES;
        let mut a = vec![0u8; len];
        let mut b = vec![0u8; len];
        loop {
            self.file.read_exact_at(&mut a, 0).expect("read heartbeat");
            self.file.read_exact_at(&mut b, 0).expect("read heartbeat");
            if a != b {
                continue;
            }
            let parsed: Vec<(u64, Slot)> = a[HEADER_BYTES..]
                .chunks(SLOT_BYTES)
                .map(Slot::parse)
                .collect();
            if parsed.iter().all(|(seq, _)| seq % 2 == 0) {
                return parsed.into_iter().map(|(_, s)| s).collect();
            }
        }
    }

    /// After a `-R` dump that ended at `after_ns`: waits until every process beat again.
    pub fn wait_beats_after(&self, case: &str, n: usize, after_ns: u64) -> Vec<Slot> {
        let deadline = Instant::now() + ARM_TIMEOUT;
        loop {
            let slots = self.read(n);
            if slots.iter().all(|s| s.last_ns > after_ns) {
                return slots;
            }
            assert!(
                Instant::now() < deadline,
                "{case}: workload does not beat after the dump"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// A thread that timestamps the death of each watched process.
pub struct DeathWatch {
    thread: JoinHandle<Vec<(i32, u64)>>,
    stop: OwnedFd,
}

/// Watches `pids` through pidfds (opened here, before the tool runs) from a SCHED_FIFO
/// thread, so its wake-up at a death does not wait behind the tool's threads. Returns once
/// the thread is about to poll.
pub fn watch_deaths(pids: &[i32]) -> DeathWatch {
    let fds: Vec<(i32, OwnedFd)> = pids
        .iter()
        .map(|&p| {
            let fd =
                crs_sys::pidfd::pidfd_open(p, 0).unwrap_or_else(|e| panic!("pidfd_open({p}): {e}"));
            (p, fd)
        })
        .collect();
    let (stop_r, stop_w) = nix::unistd::pipe().expect("pipe");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let tid = nix::unistd::gettid().as_raw();
        // Best effort: without it the wake-up waits its turn.
        let _ = crs_sys::sched::set_scheduler(tid, libc::SCHED_FIFO, 1);
        let _ = ready_tx.send(());
        let mut left = fds;
        let mut seen = Vec::with_capacity(left.len());
        while !left.is_empty() {
            let mut pfds: Vec<PollFd> = left
                .iter()
                .map(|(_, fd)| PollFd::new(fd.as_fd(), PollFlags::POLLIN))
                .collect();
            pfds.push(PollFd::new(stop_r.as_fd(), PollFlags::POLLIN));
            match poll(&mut pfds, PollTimeout::NONE) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => panic!("poll pidfds: {e}"),
            }
            let t = now_ns();
            let ready: Vec<bool> = pfds
                .iter()
                .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
                .collect();
            let stop = ready[left.len()];
            let mut i = 0;
            left.retain(|(pid, _)| {
                let dead = ready[i];
                i += 1;
                if dead {
                    seen.push((*pid, t));
                }
                !dead
            });
            if stop {
                break;
            }
        }
        seen
    });
    ready_rx.recv().expect("death watcher started");
    DeathWatch {
        thread,
        stop: stop_w,
    }
}

impl DeathWatch {
    /// The deaths seen so far, after stopping the watch: (pid, CLOCK_MONOTONIC ns).
    pub fn finish(self) -> Vec<(i32, u64)> {
        let _ = nix::unistd::write(&self.stop, b"x");
        self.thread.join().expect("death watcher")
    }
}

/// One frozen span, and how it was found.
#[derive(Clone, Copy, Debug)]
pub struct Frozen {
    pub secs: f64,
    /// The start came from a child's missed beat, not from the root's last beat.
    pub child_first: bool,
    /// The root's largest gap between beats before the freeze (its error bar), in s.
    pub root_max_gap: f64,
    /// The root's mean gap between beats before the freeze, in s.
    pub root_mean_gap: f64,
}

/// The start of the frozen span: the root's last beat before the freeze, or a child's
/// second missed beat (its last beat before the freeze + two periods: one is often missed
/// on a loaded machine) if earlier. `children` are (last beat before the freeze, period)
/// pairs.
fn start_ns(root_last: u64, children: impl Iterator<Item = (u64, u64)>) -> (u64, bool) {
    let child = children.map(|(l, p)| l + 2 * p).min().unwrap_or(u64::MAX);
    if child < root_last {
        (child, true)
    } else {
        (root_last, false)
    }
}

/// A dump that killed the tree: from the start to the last death.
pub fn killed(case: &str, slots: &[Slot], deaths: &[(i32, u64)]) -> Frozen {
    for s in slots {
        assert!(
            deaths.iter().any(|d| d.0 == s.pid),
            "{case}: no death seen for pid {}",
            s.pid
        );
    }
    let end = deaths.iter().map(|d| d.1).max().expect("deaths");
    let (start, child_first) = start_ns(
        slots[0].last_ns,
        slots[1..].iter().map(|s| (s.last_ns, s.period_ns)),
    );
    assert!(end > start, "{case}: death before the last beat");
    Frozen {
        secs: (end - start) as f64 / 1e9,
        child_first,
        root_max_gap: slots[0].max_gap_ns as f64 / 1e9,
        root_mean_gap: slots[0].mean_gap_ns() / 1e9,
    }
}

/// A `-R` dump that ran from `t0` to `t1` (ns): each process's longest silence that
/// overlaps the dump is its freeze; from the start to the last first beat after one. A
/// child frozen for less than about two of its periods shows no silence and is left out
/// (its freeze cannot have been much longer than that).
pub fn left_running(case: &str, slots: &[Slot], t0: u64, t1: u64) -> Frozen {
    let freeze = |s: &Slot| {
        s.gaps
            .iter()
            .copied()
            .filter(|&(a, b)| a < t1 && b > t0)
            .max_by_key(|&(a, b)| b - a)
    };
    let root = freeze(&slots[0])
        .unwrap_or_else(|| panic!("{case}: the root never stopped beating during the dump"));
    let children: Vec<(u64, u64, u64)> = slots[1..]
        .iter()
        .filter_map(|s| freeze(s).map(|g| (g.0, g.1, s.period_ns)))
        .collect();
    let (start, child_first) = start_ns(root.0, children.iter().map(|c| (c.0, c.2)));
    let end = children.iter().map(|c| c.1).fold(root.1, u64::max);
    Frozen {
        secs: (end - start) as f64 / 1e9,
        child_first,
        root_max_gap: f64::NAN,
        root_mean_gap: f64::NAN,
    }
}
