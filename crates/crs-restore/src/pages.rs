//! Filling the new task's memory from the pages image: large process_vm_writev batches
//! (contiguous file range -> up to IOV_MAX remote ranges), spread over a rayon pool. Each
//! worker holds one batch buffer, so crs's memory stays bounded whatever the image size.

use std::fs::File;
use std::io::IoSlice;
use std::os::unix::fs::FileExt;

use crs_compel::Tid;
use crs_sys::remote::{process_vm_writev, RemoteRange, IOV_MAX};
use crs_sys::RemoteAddr;
use rayon::prelude::*;

use crate::images::{Images, PageRun};
use crate::vma;
use crate::RestoreError;

/// Most bytes one batch moves.
pub(crate) const BATCH: u64 = 4 << 20;

/// One batch: a contiguous range of the pages image and where its bytes go.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Batch {
    pub offset: u64,
    pub len: u64,
    pub remote: Vec<(u64, u64)>,
}

/// Splits runs into batches of at most `max` bytes and IOV_MAX remote ranges, each over
/// one contiguous range of the image.
pub(crate) fn batches(runs: &[PageRun], max: u64) -> Vec<Batch> {
    let mut out: Vec<Batch> = Vec::new();
    for r in runs {
        let mut done = 0;
        while done < r.len {
            let off = r.offset + done;
            let addr = r.addr + done;
            let fits = out.last().is_some_and(|b| {
                b.offset + b.len == off && b.len < max && b.remote.len() < IOV_MAX
            });
            if !fits {
                out.push(Batch {
                    offset: off,
                    len: 0,
                    remote: Vec::new(),
                });
            }
            let b = out.last_mut().expect("pushed");
            let take = (r.len - done).min(max - b.len);
            match b.remote.last_mut() {
                Some(last) if last.0 + last.1 == addr => last.1 += take,
                _ => b.remote.push((addr, take)),
            }
            b.len += take;
            done += take;
        }
    }
    out
}

/// Copies every page run of `images` into process `pid`, its own pages and those its
/// parent image sets hold (an incremental dump). Returns the number of pages.
pub(crate) fn fill(pid: Tid, images: &Images) -> Result<u64, RestoreError> {
    let mut n = fill_from(pid, images, &images.pages_path, &images.runs)?;
    for (path, runs) in &images.parent_pages {
        n += fill_from(pid, images, path, runs)?;
    }
    Ok(n)
}

/// Copies the runs of `groups` (pages image, runs) into process `pid` (the pages to fill
/// now of a lazy restore). Returns the number of pages.
pub(crate) fn fill_only(
    pid: Tid,
    images: &Images,
    groups: &[crate::ByFile],
) -> Result<u64, RestoreError> {
    let mut n = 0;
    for (path, runs) in groups {
        n += fill_from(pid, images, path, runs)?;
    }
    Ok(n)
}

/// Copies `runs` from pages image `pages_path` into process `pid`.
fn fill_from(
    pid: Tid,
    images: &Images,
    pages_path: &std::path::Path,
    runs: &[PageRun],
) -> Result<u64, RestoreError> {
    let runs: Vec<PageRun> = runs
        .iter()
        .copied()
        .filter(|r| {
            // Pages of the vDSO come from the kernel, not from the image.
            !images
                .vmas
                .iter()
                .any(|v| vma::is_vdso(v) && v.start <= r.addr && r.addr < v.end)
        })
        .collect();
    let batches = batches(&runs, BATCH);
    let file = File::open(pages_path).map_err(|source| RestoreError::Stat {
        path: pages_path.to_path_buf(),
        source,
    })?;
    let one = |buf: &mut Vec<u8>, b: &Batch| -> Result<(), RestoreError> {
        let buf = &mut buf[..b.len as usize];
        file.read_exact_at(buf, b.offset)
            .map_err(|source| RestoreError::ReadPages {
                image: pages_path.to_path_buf(),
                offset: b.offset,
                len: b.len as usize,
                source,
            })?;
        let remote: Vec<RemoteRange> = b
            .remote
            .iter()
            .map(|&(addr, len)| RemoteRange {
                addr: RemoteAddr(addr),
                len: len as usize,
            })
            .collect();
        let first = b.remote[0].0;
        let n = process_vm_writev(pid, &[IoSlice::new(buf)], &remote).map_err(|source| {
            RestoreError::WritePages {
                pid,
                addr: first,
                len: b.len as usize,
                source,
            }
        })?;
        if n as u64 != b.len {
            return Err(RestoreError::WritePages {
                pid,
                addr: first,
                len: b.len as usize,
                source: std::io::Error::from_raw_os_error(libc::EFAULT),
            });
        }
        Ok(())
    };
    // Buffers no larger than the largest batch: a small process needs no 4 MiB buffer.
    let buf_len = batches.iter().map(|b| b.len).max().unwrap_or(0) as usize;
    if batches.len() <= 1 {
        // One batch gains nothing from the pool and would pay for waking it (measured:
        // 0.2-2.7 ms per 12-page process of a 50-process tree, 55-95 us inline).
        let mut buf = vec![0u8; buf_len];
        batches.iter().try_for_each(|b| one(&mut buf, b))?;
    } else {
        batches
            .par_iter()
            .try_for_each_init(|| vec![0u8; buf_len], |buf, b| one(buf, b))?;
    }
    Ok(runs.iter().map(|r| r.len / crate::images::PAGE).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_at_max_and_merge_contiguous() {
        let runs = [
            PageRun {
                addr: 0x1000,
                len: 0x2000,
                offset: 0,
            },
            PageRun {
                addr: 0x3000,
                len: 0x1000,
                offset: 0x2000,
            },
            PageRun {
                addr: 0x9000,
                len: 0x3000,
                offset: 0x3000,
            },
        ];
        let b = batches(&runs, 0x4000);
        assert_eq!(
            b,
            [
                Batch {
                    offset: 0,
                    len: 0x4000,
                    remote: vec![(0x1000, 0x3000), (0x9000, 0x1000)]
                },
                Batch {
                    offset: 0x4000,
                    len: 0x2000,
                    remote: vec![(0xa000, 0x2000)]
                },
            ]
        );
    }
}
