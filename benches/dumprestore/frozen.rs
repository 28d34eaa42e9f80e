//! The I/O of the frozen-time measure (`crs_benches::heartbeat` describes the method): the
//! heartbeat file shared with the workloads, and a thread that timestamps deaths.

use std::fs::{self, File, OpenOptions};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crs_benches::heartbeat::{
    header, parse_slots, Slot, FILE_BYTES, HEADER_BYTES, SLOTS, SLOT_BYTES,
};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const ARM_TIMEOUT: Duration = Duration::from_secs(30);

/// CLOCK_MONOTONIC now, in ns (the clock the workload stamps its beats with).
pub fn now_ns() -> u64 {
    crs_sys::time::now(libc::CLOCK_MONOTONIC)
        .expect("clock_gettime(CLOCK_MONOTONIC)")
        .as_nanos() as u64
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
        self.file
            .write_all_at(&header(control), 0)
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
            if let Some(slots) = parse_slots(&a, n) {
                return slots;
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
