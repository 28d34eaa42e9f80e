//! Memory contents, the hot path: find the pages worth saving (PAGEMAP_SCAN, or
//! /proc/PID/pagemap where the ioctl is missing), then copy them with `process_vm_readv` in
//! large batches, spread over a rayon pool, each batch written with `pwrite` at its
//! precomputed offset of `pages-N.img`. crs holds at most one batch buffer per worker.
//! Each batch is hashed by the reader that copied it, while it is still in that CPU's
//! cache: the checksums of a pages image are one segment per batch.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Condvar, Mutex};

use crs_compel::{RemoteAddr, Tid};
use crs_images::checksums::Segment;
use crs_proc::ProcDir;
use crs_sys::dump::{page_is, pagemap_scan, PageRegion, ScanQuery};
use crs_sys::remote::{process_vm_readv, RemoteRange, IOV_MAX};
use rayon::prelude::*;
use tracing::{debug, warn};

use crate::error::{proc_err, DumpError, Result};

pub(crate) const PAGE_SIZE: u64 = 4096;

/// Regions per PAGEMAP_SCAN call. On this kernel vec_len >= 1024 returned a short
/// walk_end and repeated regions; 512 was exact.
const SCAN_VEC_LEN: usize = 512;

/// Largest batch one worker copies with one `process_vm_readv` (and writes in
/// [`WRITE_BYTES`] pieces).
pub(crate) const BATCH_BYTES: usize = 4 << 20;

/// Largest single `pwrite` of page data. The page cache sizes a new folio after the write
/// that creates it: a 4 MiB write into ext4 gets 2 MiB folios, which on this VM come from
/// the free memory it has handed back to its host, so the copy into them runs at host
/// page-fault speed. Writing 1 GiB to ext4 after other memory was freed, one thread, by
/// write size: 4 MiB 2.5-2.6 s, 1 MiB 1.3 s, 512 KiB 0.18-0.50 s, 256 KiB 0.17-0.18 s,
/// 64 KiB 0.20 s; on tmpfs (small folios) 4 MiB and 256 KiB both 0.28 s.
pub(crate) const WRITE_BYTES: usize = 256 << 10;

/// One VMA whose pages are to be looked at.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScanVma {
    pub start: u64,
    pub end: u64,
    /// Every page is saved, present or not (the vDSO).
    pub all: bool,
    /// Pages may be restored lazily (PE_LAZY).
    pub lazy: bool,
    /// The VMA can be read with process_vm_readv (PROT_READ); otherwise /proc/PID/mem.
    pub readable: bool,
    /// Private file mapping: pages still shared with the file are not saved.
    pub file_private: bool,
}

/// A run of consecutive pages to save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageRun {
    pub addr: u64,
    pub pages: u64,
    pub lazy: bool,
    pub readable: bool,
}

/// Finds the pages to save in `vmas`. Returns the runs (address order) and how many pages
/// were looked at.
pub(crate) fn scan(proc_dir: &ProcDir, vmas: &[ScanVma]) -> Result<(Vec<PageRun>, u64)> {
    let pid = proc_dir.pid();
    let pagemap = proc_dir.pagemap().map_err(proc_err(pid, "pagemap"))?;
    let mut runs: Vec<PageRun> = Vec::new();
    let mut scanned = 0u64;
    let mut use_ioctl = true;
    let mut regions = vec![PageRegion::default(); SCAN_VEC_LEN];
    for v in vmas {
        scanned += (v.end - v.start) / PAGE_SIZE;
        let mut push = |start: u64, end: u64| {
            if let Some(last) = runs.last_mut() {
                if last.addr + last.pages * PAGE_SIZE == start
                    && last.lazy == v.lazy
                    && last.readable == v.readable
                {
                    last.pages += (end - start) / PAGE_SIZE;
                    return;
                }
            }
            runs.push(PageRun {
                addr: start,
                pages: (end - start) / PAGE_SIZE,
                lazy: v.lazy,
                readable: v.readable,
            });
        };
        if v.all {
            push(v.start, v.end);
            continue;
        }
        if use_ioctl {
            match scan_ioctl(pagemap.file(), v, &mut regions, &mut push) {
                Ok(()) => continue,
                Err(e)
                    if e.raw_os_error() == Some(libc::ENOTTY)
                        || e.raw_os_error() == Some(libc::EINVAL) =>
                {
                    warn!(pid, error = %e, "PAGEMAP_SCAN unavailable, reading pagemap");
                    use_ioctl = false;
                }
                Err(source) => {
                    return Err(DumpError::PageScan {
                        pid,
                        addr: v.start,
                        source,
                    })
                }
            }
        }
        scan_pagemap(&pagemap, pid, v, &mut push)?;
    }
    Ok((runs, scanned))
}

fn scan_ioctl(
    pagemap: &File,
    v: &ScanVma,
    regions: &mut [PageRegion],
    push: &mut impl FnMut(u64, u64),
) -> std::io::Result<()> {
    // Present or swapped, and neither the zero page nor (for private file mappings) a
    // page still shared with the file.
    let query = ScanQuery {
        category_inverted: page_is::PFNZERO | page_is::FILE,
        category_mask: page_is::PFNZERO | page_is::FILE,
        category_anyof_mask: page_is::PRESENT | page_is::SWAPPED,
        return_mask: page_is::PRESENT | page_is::SWAPPED,
    };
    let _ = v.file_private; // anonymous pages are never PAGE_IS_FILE: one query serves both
    walk(pagemap, v.start, v.end, &query, regions, push)
}

/// The regions of `[start, end)` matching `query`, in order, each handed to `push` once:
/// `PAGEMAP_SCAN` again after the last region when its vector filled up.
fn walk(
    pagemap: &File,
    start: u64,
    end: u64,
    query: &ScanQuery,
    regions: &mut [PageRegion],
    push: &mut impl FnMut(u64, u64),
) -> std::io::Result<()> {
    let mut at = start;
    let mut prev_end = start;
    while at < end {
        let (n, walk_end) = pagemap_scan(pagemap.as_fd(), at, end, query, regions)?;
        for r in &regions[..n] {
            // Never trust a region to start before what was already reported.
            let (s, e) = (r.start.max(prev_end), r.end.min(end));
            if s < e {
                push(s, e);
                prev_end = e;
            }
        }
        let next = if n == regions.len() {
            // The vector filled up: continue after the last region reported.
            walk_end.max(prev_end)
        } else {
            walk_end
        };
        if next <= at {
            break;
        }
        at = next;
    }
    Ok(())
}

fn scan_pagemap(
    pagemap: &crs_proc::Pagemap,
    pid: Tid,
    v: &ScanVma,
    push: &mut impl FnMut(u64, u64),
) -> Result<()> {
    const STEP: u64 = 64 * 1024;
    let mut at = v.start;
    while at < v.end {
        let n = ((v.end - at) / PAGE_SIZE).min(STEP);
        let entries = pagemap
            .read(at, n as usize)
            .map_err(proc_err(pid, "pagemap"))?;
        for (i, e) in entries.iter().enumerate() {
            let addr = at + i as u64 * PAGE_SIZE;
            if v.file_private && e.file_or_shared() {
                continue;
            }
            if e.present() || e.swapped() {
                push(addr, addr + PAGE_SIZE);
            }
        }
        at += n * PAGE_SIZE;
    }
    Ok(())
}

/// One unit of copy work: up to IOV_MAX remote ranges, up to BATCH_BYTES, written at
/// `offset` of the pages image.
#[derive(Debug)]
struct Batch {
    offset: u64,
    ranges: Vec<RemoteRange>,
    len: usize,
    readable: bool,
}

fn batches(runs: &[PageRun]) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    let mut offset = 0u64;
    let mut cur: Option<Batch> = None;
    for r in runs {
        let mut addr = r.addr;
        let mut left = (r.pages * PAGE_SIZE) as usize;
        while left > 0 {
            let b = match &mut cur {
                Some(b)
                    if b.readable == r.readable
                        && b.ranges.len() < IOV_MAX
                        && b.len < BATCH_BYTES =>
                {
                    b
                }
                _ => {
                    if let Some(done) = cur.take() {
                        out.push(done);
                    }
                    cur = Some(Batch {
                        offset,
                        ranges: Vec::new(),
                        len: 0,
                        readable: r.readable,
                    });
                    cur.as_mut().expect("just set")
                }
            };
            let take = left.min(BATCH_BYTES - b.len);
            match b.ranges.last_mut() {
                Some(last) if last.addr.get() + last.len as u64 == addr => last.len += take,
                _ => b.ranges.push(RemoteRange {
                    addr: RemoteAddr(addr),
                    len: take,
                }),
            }
            b.len += take;
            addr += take as u64;
            left -= take;
            offset += take as u64;
        }
    }
    if let Some(done) = cur {
        out.push(done);
    }
    out
}

/// What copying the pages came to.
#[derive(Clone, Debug, Default)]
pub(crate) struct CopyStats {
    pub bytes: u64,
    pub batches: usize,
    /// With `hash`: one per batch, in no particular order.
    pub segments: Vec<Segment>,
}

/// Copies the pages of `runs` from process `pid` into `out` (already sized).
///
/// Readers on the rayon pool fill buffers from the task (one `process_vm_readv` per
/// batch); one writer thread writes each buffer at its batch's offset in
/// [`WRITE_BYTES`] pieces and hands it back. The file systems crs writes to (ext4, tmpfs)
/// take the inode lock for every buffered write, so two writers on one file only take
/// turns, and the waiting one spins on the lock, taking CPU from the one writing (13-33%
/// of a 1 GiB dump's samples were that spin on ext4). The buffers are a fixed few,
/// allocated once: crs's memory does not grow with the task's. With `hash`, each reader
/// hashes the batch it just read (see `crs_images::checksums`).
pub(crate) fn copy(
    pid: Tid,
    runs: &[PageRun],
    out: &File,
    out_path: &Path,
    hash: bool,
) -> Result<CopyStats> {
    let work = batches(runs);
    let mem = if work.iter().any(|b| !b.readable) {
        let path = format!("/proc/{pid}/mem");
        Some(File::open(&path).map_err(|source| DumpError::File {
            what: "opening",
            path: path.into(),
            source,
        })?)
    } else {
        None
    };
    debug!(pid, batches = work.len(), "copying pages");
    let read = |data: &mut [u8], b: &Batch| -> Result<()> {
        if b.readable {
            return read_batch(pid, b, data);
        }
        let mem = mem.as_ref().expect("opened for unreadable batches");
        let mut off = 0usize;
        for r in &b.ranges {
            mem.read_exact_at(&mut data[off..off + r.len], r.addr.get())
                .map_err(|source| DumpError::PageRead {
                    pid,
                    addr: r.addr.get(),
                    len: r.len,
                    source,
                })?;
            off += r.len;
        }
        Ok(())
    };
    let write = |data: &[u8], b: &Batch| -> Result<()> {
        let mut done = 0;
        for piece in data.chunks(WRITE_BYTES) {
            let offset = b.offset + done as u64;
            out.write_all_at(piece, offset)
                .map_err(|source| DumpError::PageWrite {
                    path: out_path.to_path_buf(),
                    offset,
                    len: piece.len(),
                    source,
                })?;
            done += piece.len();
        }
        crs_sys::fault::kill_point(|| {
            format!("{}: pages written at {:#x}", out_path.display(), b.offset)
        });
        Ok(())
    };
    let segment = |data: &[u8], b: &Batch| hash.then(|| Segment::of(b.offset, data));
    let mut stats = CopyStats {
        bytes: work.iter().map(|b| b.len as u64).sum(),
        batches: work.len(),
        segments: Vec::new(),
    };
    // Buffers no larger than the largest batch, and no threads for a single batch (waking
    // them costs more than copying a small process's pages).
    let buf_len = work.iter().map(|b| b.len).max().unwrap_or(0);
    if work.len() <= 1 {
        let mut buf = vec![0u8; buf_len];
        for b in &work {
            read(&mut buf[..b.len], b)?;
            stats.segments.extend(segment(&buf[..b.len], b));
            write(&buf[..b.len], b)?;
        }
        return Ok(stats);
    }
    // One buffer per reader being filled, one being written, one queued.
    let pool = BufferPool::new(rayon::current_num_threads() + 2, buf_len);
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(Vec<u8>, &Batch)>();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            // Started from the pinned ptrace thread: it needs no ptrace, so any CPU.
            crs_compel::pin::unpin_this_thread();
            let mut first_err = None;
            for (buf, b) in rx {
                if first_err.is_none() {
                    if let Err(e) = write(&buf[..b.len], b) {
                        failed.store(true, Ordering::Relaxed);
                        first_err = Some(e);
                    }
                }
                pool.give(buf);
            }
            first_err.map_or(Ok(()), Err)
        });
        let read_all = work
            .par_iter()
            .map_with(tx, |tx, b| -> Result<Option<Segment>> {
                if failed.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let mut buf = pool.take();
                match read(&mut buf[..b.len], b) {
                    Ok(()) => {
                        let seg = segment(&buf[..b.len], b);
                        // The writer outlives every sender.
                        let _ = tx.send((buf, b));
                        Ok(seg)
                    }
                    Err(e) => {
                        failed.store(true, Ordering::Relaxed);
                        pool.give(buf);
                        Err(e)
                    }
                }
            })
            .collect::<Result<Vec<Option<Segment>>>>();
        // Every sender is gone once the readers are done: the writer drains and ends.
        let written = writer.join().expect("the page writer does not panic");
        // A batch skipped after a failure leaves no segment, but then one of the two is
        // an error.
        let segments = read_all.and_then(|s| written.map(|()| s))?;
        stats.segments = segments.into_iter().flatten().collect();
        Ok::<(), DumpError>(())
    })?;
    Ok(stats)
}

/// A fixed set of equal buffers shared by the readers and the writer of [`copy`].
struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    returned: Condvar,
}

impl BufferPool {
    fn new(n: usize, len: usize) -> BufferPool {
        BufferPool {
            free: Mutex::new((0..n).map(|_| vec![0u8; len]).collect()),
            returned: Condvar::new(),
        }
    }

    /// A free buffer, waiting for the writer to hand one back if none is.
    fn take(&self) -> Vec<u8> {
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(b) = free.pop() {
                return b;
            }
            free = self.returned.wait(free).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn give(&self, b: Vec<u8>) {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).push(b);
        self.returned.notify_one();
    }
}

/// One `process_vm_readv` for the whole batch; a short read is retried from where it
/// stopped so a transient partial transfer is not mistaken for a fault, and a range that
/// returns nothing is an error naming it.
fn read_batch(pid: Tid, b: &Batch, data: &mut [u8]) -> Result<()> {
    let mut done = 0usize;
    let mut first = 0usize; // index of the range `done` falls in
    let mut in_first = 0usize; // bytes of that range already read
    while done < b.len {
        let mut remote: Vec<RemoteRange> = Vec::with_capacity(b.ranges.len() - first);
        for (i, r) in b.ranges[first..].iter().enumerate() {
            if i == 0 {
                remote.push(RemoteRange {
                    addr: RemoteAddr(r.addr.get() + in_first as u64),
                    len: r.len - in_first,
                });
            } else {
                remote.push(*r);
            }
        }
        let n = process_vm_readv(pid, &mut [IoSliceMut::new(&mut data[done..])], &remote).map_err(
            |source| DumpError::PageRead {
                pid,
                addr: remote[0].addr.get(),
                len: b.len - done,
                source,
            },
        )?;
        if n == 0 {
            return Err(DumpError::PageRead {
                pid,
                addr: remote[0].addr.get(),
                len: remote[0].len,
                source: std::io::Error::from_raw_os_error(libc::EFAULT),
            });
        }
        done += n;
        let mut left = n;
        while left > 0 {
            let room = b.ranges[first].len - in_first;
            if left >= room {
                left -= room;
                first += 1;
                in_first = 0;
            } else {
                in_first += left;
                left = 0;
            }
        }
    }
    Ok(())
}

/// Pagemap entries: runs merged when adjacent with the same flags, as (vaddr, pages, lazy).
pub(crate) fn pagemap_entries(runs: &[PageRun]) -> Vec<(u64, u64, bool)> {
    let mut out: Vec<(u64, u64, bool)> = Vec::new();
    for r in runs {
        if let Some(last) = out.last_mut() {
            if last.0 + last.1 * PAGE_SIZE == r.addr && last.2 == r.lazy {
                last.1 += r.pages;
                continue;
            }
        }
        out.push((r.addr, r.pages, r.lazy));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(addr: u64, pages: u64) -> PageRun {
        PageRun {
            addr,
            pages,
            lazy: true,
            readable: true,
        }
    }

    #[test]
    fn batches_large_run_split_at_batch_bytes() {
        let pages = (BATCH_BYTES as u64 / PAGE_SIZE) * 2 + 1;
        let b = batches(&[run(0x10000, pages)]);
        assert_eq!(b.len(), 3);
        assert_eq!(b[0].len, BATCH_BYTES);
        assert_eq!(b[1].offset, BATCH_BYTES as u64);
        assert_eq!(b[2].len, PAGE_SIZE as usize);
        assert_eq!(b[2].ranges[0].addr.get(), 0x10000 + 2 * BATCH_BYTES as u64);
    }

    #[test]
    fn batches_many_small_runs_capped_at_iov_max() {
        let runs: Vec<PageRun> = (0..IOV_MAX as u64 + 5)
            .map(|i| run(0x100000 + i * 2 * PAGE_SIZE, 1))
            .collect();
        let b = batches(&runs);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].ranges.len(), IOV_MAX);
        assert_eq!(b[1].offset, IOV_MAX as u64 * PAGE_SIZE);
    }

    #[test]
    fn batches_unreadable_run_gets_own_batch() {
        let mut r2 = run(0x20000, 1);
        r2.readable = false;
        let b = batches(&[run(0x10000, 1), r2, run(0x30000, 1)]);
        assert_eq!(
            b.iter().map(|b| b.readable).collect::<Vec<_>>(),
            [true, false, true]
        );
        assert_eq!(b[2].offset, 2 * PAGE_SIZE);
    }

    #[test]
    fn pagemap_entries_adjacent_same_flags_merged() {
        let mut r3 = run(0x3000, 1);
        r3.lazy = false;
        let e = pagemap_entries(&[run(0x1000, 1), run(0x2000, 1), r3, run(0x5000, 2)]);
        assert_eq!(
            e,
            vec![(0x1000, 2, true), (0x3000, 1, false), (0x5000, 2, true)]
        );
    }
}

/// Ranges `[start, end)` of written pages (`PAGE_IS_WRITTEN`: not write-protected by
/// userfaultfd since the last protection) among `vmas`, address order. Memory not
/// registered for write-protection has no protection, so all of it counts as written.
pub(crate) fn written(proc_dir: &ProcDir, vmas: &[ScanVma]) -> Result<Vec<(u64, u64)>> {
    let pid = proc_dir.pid();
    let pagemap = proc_dir.pagemap().map_err(proc_err(pid, "pagemap"))?;
    let query = ScanQuery {
        category_mask: page_is::WRITTEN,
        return_mask: page_is::WRITTEN,
        ..Default::default()
    };
    let mut regions = vec![PageRegion::default(); SCAN_VEC_LEN];
    let mut out: Vec<(u64, u64)> = Vec::new();
    for v in vmas {
        let mut push = |s: u64, e: u64| match out.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => out.push((s, e)),
        };
        walk(
            pagemap.file(),
            v.start,
            v.end,
            &query,
            &mut regions,
            &mut push,
        )
        .map_err(|source| DumpError::PageScan {
            pid,
            addr: v.start,
            source,
        })?;
    }
    Ok(out)
}

/// Splits the present pages `runs` of an incremental dump: pages not written since the
/// parent dump (outside `written`) that the parent images hold (inside `cover`) are left
/// to the parent (returned as ranges, for `PE_PARENT` entries); the rest are copied.
/// `written` and `cover` are sorted, non-overlapping ranges.
pub(crate) fn split_parent(
    runs: &[PageRun],
    written: &[(u64, u64)],
    cover: &[(u64, u64)],
) -> (Vec<PageRun>, Vec<(u64, u64)>) {
    // The ranges a page may be taken from the parent in: covered and not written.
    let mut from_parent: Vec<(u64, u64)> = Vec::new();
    for &(cs, ce) in cover {
        let mut at = cs;
        for &(ws, we) in written {
            if we <= at || ws >= ce {
                continue;
            }
            if ws > at {
                from_parent.push((at, ws));
            }
            at = at.max(we);
            if at >= ce {
                break;
            }
        }
        if at < ce {
            from_parent.push((at, ce));
        }
    }
    let mut copy = Vec::new();
    let mut parent: Vec<(u64, u64)> = Vec::new();
    for r in runs {
        let (rs, re) = (r.addr, r.addr + r.pages * PAGE_SIZE);
        let mut at = rs;
        for &(ps, pe) in &from_parent {
            if pe <= at || ps >= re {
                continue;
            }
            let (s, e) = (ps.max(at), pe.min(re));
            if s > at {
                copy.push(PageRun {
                    addr: at,
                    pages: (s - at) / PAGE_SIZE,
                    ..*r
                });
            }
            match parent.last_mut() {
                Some(last) if last.1 == s => last.1 = e,
                _ => parent.push((s, e)),
            }
            at = e;
        }
        if at < re {
            copy.push(PageRun {
                addr: at,
                pages: (re - at) / PAGE_SIZE,
                ..*r
            });
        }
    }
    (copy, parent)
}

#[cfg(test)]
mod split_tests {
    use super::*;

    fn run(addr: u64, pages: u64) -> PageRun {
        PageRun {
            addr,
            pages,
            lazy: false,
            readable: true,
        }
    }

    const P: u64 = PAGE_SIZE;

    #[test]
    fn unwritten_covered_pages_go_to_the_parent() {
        // 8 present pages at 0x10000; pages 2-3 written; the parent covers pages 0-5.
        let runs = [run(0x10000, 8)];
        let written = [(0x10000 + 2 * P, 0x10000 + 4 * P)];
        let cover = [(0x10000, 0x10000 + 6 * P)];
        let (copy, parent) = split_parent(&runs, &written, &cover);
        assert_eq!(copy, vec![run(0x10000 + 2 * P, 2), run(0x10000 + 6 * P, 2)]);
        assert_eq!(
            parent,
            vec![
                (0x10000, 0x10000 + 2 * P),
                (0x10000 + 4 * P, 0x10000 + 6 * P)
            ]
        );
    }

    #[test]
    fn without_cover_everything_is_copied() {
        let runs = [run(0x1000, 3), run(0x9000, 1)];
        let (copy, parent) = split_parent(&runs, &[], &[]);
        assert_eq!(copy, runs.to_vec());
        assert!(parent.is_empty());
    }

    #[test]
    fn all_written_is_all_copied() {
        let runs = [run(0x1000, 4)];
        let (copy, parent) = split_parent(&runs, &[(0x1000, 0x5000)], &[(0, 0x10000)]);
        assert_eq!(copy, runs.to_vec());
        assert!(parent.is_empty());
    }

    #[test]
    fn nothing_written_and_all_covered_copies_nothing() {
        let runs = [run(0x1000, 2), run(0x4000, 1)];
        let (copy, parent) = split_parent(&runs, &[], &[(0x1000, 0x8000)]);
        assert!(copy.is_empty());
        assert_eq!(parent, vec![(0x1000, 0x3000), (0x4000, 0x5000)]);
    }
}
