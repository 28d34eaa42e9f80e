//! Live snapshot (`crs dump -R --live`, beyond CRIU): the tree is frozen only to read its
//! state, write every image but the pages, and write-protect its private anonymous memory
//! (userfaultfd, synchronous mode); then it runs on while crs copies the pages. A thread
//! that writes a page crs has not copied yet waits in the kernel until crs copies it and
//! lifts the protection of that page, so the images hold exactly the memory at the freeze,
//! however long the copy takes.
//!
//! Each process's userfaultfd is made inside it (see `track`); a handler thread of crs
//! reads the faults and events of all of them while the copier walks the pages in address
//! order, each 1 MiB piece copied and unprotected under the process's lock (a page the
//! handler already copied is not copied again: it may have been written since).
//!
//! What the tree does during the copy: a thread or process it creates shares or copies
//! the protected memory (a forked child's copy is not protected: it is not part of the
//! snapshot); memory it maps is not in the snapshot; a process that exits, or unmaps,
//! moves or discards (MADV_DONTNEED) memory not copied yet, makes the dump fail with an
//! error saying so (the tree runs on, unaffected, and the unfinished images are removed);
//! memory already copied may go at will. Memory that cannot be protected (private file
//! mappings' pages, hugetlb) is copied while the tree is frozen.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crs_compel::{SeizedTree, Tid};
use crs_sys::uffd::{self, Event};
use tracing::{debug, info};

use crate::error::{DumpError, Result};
use crate::pages::PAGE_SIZE;

/// Bytes copied (and unprotected) at a time by the copier.
const PIECE: u64 = 1 << 20;

/// Where the pages of one process go, once the tree runs again.
pub(crate) struct Job {
    pub pid: Tid,
    /// (address, pages, offset in the pages image), address order.
    pub runs: Vec<(u64, u64, u64)>,
    pub pages_name: String,
    pub pages_file: File,
    pub pages_path: PathBuf,
    pub pages_len: u64,
}

fn live_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DumpError {
    let what = what.into();
    move |source| DumpError::Live { what, source }
}

/// One protected process: its userfaultfd, its memory, and the pages saved before
/// they were unprotected.
struct Proc {
    pid: Tid,
    uffd: OwnedFd,
    mem: File,
    /// Page address -> its contents at the freeze, saved by the handler before a write.
    saved: Mutex<HashMap<u64, Box<[u8]>>>,
    /// Ranges unmapped, discarded or moved while protected, not saved (an error if the
    /// snapshot needs them).
    lost: Mutex<Vec<(u64, u64)>>,
}

struct Inner {
    procs: Mutex<Vec<Arc<Proc>>>,
    stop: AtomicBool,
    failed: Mutex<Option<DumpError>>,
}

/// A live snapshot in progress: from the first process protected, a handler thread
/// serves every write fault on protected memory (the page saved first, then
/// unprotected), in the frozen phase too (the kernel writes user memory on a task's
/// behalf: rseq, syscall results), until [`Session::finish`].
pub(crate) struct Session {
    inner: Arc<Inner>,
    wake: OwnedFd,
    handler: Option<std::thread::JoinHandle<u64>>,
}

impl Session {
    pub(crate) fn start() -> Result<Session> {
        let (r, w) = nix::unistd::pipe().map_err(|e| DumpError::Live {
            what: "a pipe".into(),
            source: e.into(),
        })?;
        let inner = Arc::new(Inner {
            procs: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            failed: Mutex::new(None),
        });
        let i2 = Arc::clone(&inner);
        let handler = std::thread::Builder::new()
            .name("crs-live".into())
            .spawn(move || {
                crs_compel::pin::unpin_this_thread();
                let mut served = 0u64;
                if let Err(e) = handle(&i2, r, &mut served) {
                    i2.failed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .get_or_insert(e);
                }
                served
            })
            .map_err(live_err("starting the fault handler"))?;
        Ok(Session {
            inner,
            wake: w,
            handler: Some(handler),
        })
    }

    fn wake(&self) {
        let _ = nix::unistd::write(&self.wake, &[1]);
    }

    /// While the tree is frozen: a userfaultfd made in `pid` (kernel-mode faults
    /// included, so the process must be allowed userfaultfd: root, or
    /// vm.unprivileged_userfaultfd), served by the handler from now on, with `ranges`
    /// registered for write-protection and protected. Returns the ranges protected (a
    /// range the kernel refuses is left out: its pages are copied while frozen).
    pub(crate) fn arm(
        &self,
        tree: &mut SeizedTree,
        pid: Tid,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<(u64, u64)>> {
        let want =
            uffd::FEATURE_EVENT_REMAP | uffd::FEATURE_EVENT_REMOVE | uffd::FEATURE_EVENT_UNMAP;
        let fd = crate::track::make_in(tree, pid, 0, want, want)?;
        let path = format!("/proc/{pid}/mem");
        let mem = File::open(&path).map_err(live_err(format!("opening {path}")))?;
        let proc_ = Arc::new(Proc {
            pid,
            uffd: fd,
            mem,
            saved: Mutex::new(HashMap::new()),
            lost: Mutex::new(Vec::new()),
        });
        self.inner
            .procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(&proc_));
        self.wake();
        let mut done = Vec::new();
        for &(start, end) in ranges {
            let len = end - start;
            match uffd::register_wp(proc_.uffd.as_fd(), start, len)
                .and_then(|()| uffd::write_protect(proc_.uffd.as_fd(), start, len, true))
            {
                Ok(()) => done.push((start, end)),
                Err(e) => debug!(pid, start, end, error = %e, "not protected: copied while frozen"),
            }
        }
        Ok(done)
    }

    /// Copies the pages of `jobs` (the tree runs now): a page the handler saved is
    /// written from what it saved, the others read (still protected, so as at the freeze)
    /// and unprotected piece by piece.
    pub(crate) fn copy(&self, jobs: &[Job]) -> Result<()> {
        let procs = self
            .inner
            .procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut buf = vec![0u8; PIECE as usize];
        for j in jobs {
            let Some(p) = procs.iter().find(|p| p.pid == j.pid) else {
                continue;
            };
            for &(addr, pages, off) in &j.runs {
                let mut done = 0u64;
                while done < pages {
                    self.check()?;
                    let n = (pages - done).min(PIECE / PAGE_SIZE);
                    let at = addr + done * PAGE_SIZE;
                    let len = (n * PAGE_SIZE) as usize;
                    {
                        // Under the lock: the handler saves no page of this piece
                        // meanwhile, and none is written before it is unprotected.
                        let saved = p.saved.lock().unwrap_or_else(|e| e.into_inner());
                        p.mem
                            .read_exact_at(&mut buf[..len], at)
                            .map_err(live_err(format!("reading pid {} at {at:#x}", j.pid)))?;
                        for k in 0..n as usize {
                            let page = at + k as u64 * PAGE_SIZE;
                            if let Some(old) = saved.get(&page) {
                                buf[k * PAGE_SIZE as usize..(k + 1) * PAGE_SIZE as usize]
                                    .copy_from_slice(old);
                            }
                        }
                        j.pages_file
                            .write_all_at(&buf[..len], off + done * PAGE_SIZE)
                            .map_err(live_err(format!("writing {}", j.pages_path.display())))?;
                        uffd::write_protect(p.uffd.as_fd(), at, len as u64, false)
                            .map_err(live_err(format!("unprotecting pid {} at {at:#x}", j.pid)))?;
                    }
                    done += n;
                }
                let lost = p.lost.lock().unwrap_or_else(|e| e.into_inner());
                let end = addr + pages * PAGE_SIZE;
                if let Some(&(ls, le)) = lost.iter().find(|&&(ls, le)| ls < end && le > addr) {
                    return Err(DumpError::Live {
                        what: format!(
                            "pid {} unmapped, discarded or moved memory {ls:#x}-{le:#x} \
                             before crs copied it: the snapshot cannot hold it",
                            j.pid
                        ),
                        source: std::io::Error::from_raw_os_error(libc::EFAULT),
                    });
                }
            }
            debug!(pid = j.pid, "live pages copied");
        }
        self.check()
    }

    fn check(&self) -> Result<()> {
        let mut f = self.inner.failed.lock().unwrap_or_else(|p| p.into_inner());
        match f.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Stops the handler and drops the userfaultfds: the protection ends. Returns the
    /// pages the handler saved before a write.
    pub(crate) fn finish(mut self) -> Result<u64> {
        let served = self.stop();
        self.check()?;
        info!(saved_before_a_write = served, "live copy done");
        Ok(served)
    }

    fn stop(&mut self) -> u64 {
        self.inner.stop.store(true, Ordering::Relaxed);
        self.wake();
        let served = self.handler.take().map_or(0, |h| h.join().unwrap_or(0));
        self.inner
            .procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        served
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.handler.is_some() {
            self.stop();
        }
    }
}

/// The handler loop: every event of every protected process.
fn handle(inner: &Inner, wake: OwnedFd, served: &mut u64) -> Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut events = Vec::new();
    loop {
        if inner.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let procs = inner
            .procs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut fds: Vec<PollFd<'_>> = procs
            .iter()
            .map(|p| PollFd::new(p.uffd.as_fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(wake.as_fd(), PollFlags::POLLIN));
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(live_err("poll")(e.into())),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[procs.len()] {
            let mut b = [0u8; 64];
            let _ = nix::unistd::read(&wake, &mut b);
        }
        for (i, p) in procs.iter().enumerate() {
            if !ready[i] {
                continue;
            }
            events.clear();
            uffd::read_events(p.uffd.as_fd(), &mut events).map_err(live_err(format!(
                "reading the userfaultfd of pid {}",
                p.pid
            )))?;
            for &e in &events {
                serve(p, e, served)?;
            }
        }
    }
}

fn serve(p: &Proc, e: Event, served: &mut u64) -> Result<()> {
    match e {
        Event::PageFault { address, .. } => {
            let page = address & !(PAGE_SIZE - 1);
            let mut saved = p.saved.lock().unwrap_or_else(|e| e.into_inner());
            if let std::collections::hash_map::Entry::Vacant(v) = saved.entry(page) {
                let mut buf = vec![0u8; PAGE_SIZE as usize].into_boxed_slice();
                // A page that cannot be read (not there any more) has nothing to save.
                if p.mem.read_exact_at(&mut buf, page).is_ok() {
                    v.insert(buf);
                    *served += 1;
                }
            }
            uffd::write_protect(p.uffd.as_fd(), page, PAGE_SIZE, false)
                .map_err(live_err(format!("unprotecting pid {} at {page:#x}", p.pid)))?;
        }
        Event::Removed { start, end } => p
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((start, end)),
        Event::Remapped { from, len, .. } => p
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((from, from + len)),
        // A fork (not asked for: the child's copy is not protected) or anything else.
        Event::Fork { .. } | Event::Other(_) => {}
    }
    Ok(())
}

/// Pieces of memory: (address, pages, offset in the pages image).
pub(crate) type Pieces = Vec<(u64, u64, u64)>;

/// Splits the page runs of a process (address order; their pages are laid out in that
/// order in the pages image) into the pieces inside `protected` ranges, copied later, and
/// the others, copied now: each as (address, pages, offset in the image).
pub(crate) fn split(runs: &[crate::pages::PageRun], protected: &[(u64, u64)]) -> (Pieces, Pieces) {
    let (mut later, mut now) = (Vec::new(), Vec::new());
    let mut off = 0u64;
    for r in runs {
        let (rs, re) = (r.addr, r.addr + r.pages * PAGE_SIZE);
        let mut at = rs;
        let push = |v: &mut Vec<(u64, u64, u64)>, s: u64, e: u64| {
            if s < e {
                v.push((s, (e - s) / PAGE_SIZE, off + (s - rs)));
            }
        };
        for &(ps, pe) in protected {
            if pe <= at || ps >= re {
                continue;
            }
            let (s, e) = (ps.max(at), pe.min(re));
            push(&mut now, at, s);
            push(&mut later, s, e);
            at = e;
        }
        push(&mut now, at, re);
        off += re - rs;
    }
    (later, now)
}

/// Copies `pieces` (address, pages, offset) of process `pid` into the pages image now,
/// while the tree is frozen (through /proc/PID/mem, which reads any protection).
pub(crate) fn copy_now(
    pid: Tid,
    pieces: &[(u64, u64, u64)],
    file: &File,
    path: &std::path::Path,
) -> Result<()> {
    if pieces.is_empty() {
        return Ok(());
    }
    let mem_path = format!("/proc/{pid}/mem");
    let mem = File::open(&mem_path).map_err(live_err(format!("opening {mem_path}")))?;
    let mut buf = vec![0u8; PIECE as usize];
    for &(addr, pages, off) in pieces {
        let mut done = 0u64;
        while done < pages {
            let n = (pages - done).min(PIECE / PAGE_SIZE);
            let len = (n * PAGE_SIZE) as usize;
            let at = addr + done * PAGE_SIZE;
            mem.read_exact_at(&mut buf[..len], at)
                .map_err(live_err(format!("reading pid {pid} at {at:#x}")))?;
            file.write_all_at(&buf[..len], off + done * PAGE_SIZE)
                .map_err(live_err(format!("writing {}", path.display())))?;
            done += n;
        }
    }
    Ok(())
}

/// The checksum segment of a pages image the live copy finished (read back whole).
pub(crate) fn segment_of(job: &Job) -> Result<crs_images::checksums::Segment> {
    let mut data = vec![0u8; job.pages_len as usize];
    job.pages_file
        .read_exact_at(&mut data, 0)
        .map_err(live_err(format!(
            "reading back {}",
            job.pages_path.display()
        )))?;
    Ok(crs_images::checksums::Segment::of(0, &data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::PageRun;

    fn run(addr: u64, pages: u64) -> PageRun {
        PageRun {
            addr,
            pages,
            lazy: false,
            readable: true,
        }
    }

    #[test]
    fn runs_split_at_protected_ranges_keep_their_offsets() {
        const P: u64 = PAGE_SIZE;
        let runs = [run(0x10000, 4), run(0x20000, 2)];
        // Pages 1-2 of the first run and all of the second are protected.
        let protected = [(0x10000 + P, 0x10000 + 3 * P), (0x20000, 0x30000)];
        let (later, now) = split(&runs, &protected);
        assert_eq!(later, vec![(0x10000 + P, 2, P), (0x20000, 2, 4 * P)]);
        assert_eq!(now, vec![(0x10000, 1, 0), (0x10000 + 3 * P, 1, 3 * P)]);
    }
}
