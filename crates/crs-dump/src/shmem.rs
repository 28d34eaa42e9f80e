//! Shared anonymous memory (MAP_SHARED|MAP_ANONYMOUS): one shmem object, whatever the
//! number of processes that map it, identified by its inode number (the VMA's shmid).
//!
//! Its contents are saved once, from the object itself rather than from any process's
//! page tables: crs opens `/proc/PID/map_files/<range>` of the first mapping it met (a file
//! on the shmem inode), finds the populated ranges with `SEEK_DATA`/`SEEK_HOLE` (swapped
//! pages count as data, holes were never written and stay holes) and copies them into
//! `pages-N.img`, described by `pagemap-shmem-<shmid>.img`, whose `vaddr`s are offsets in
//! the object (CRIU's format).

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crs_compel::Tid;
use crs_images::checksums::Segment;
use crs_images::codec::ImageWriter;
use crs_images::pb::pagemap::{Pagemap_entry, Pagemap_head};
use nix::unistd::{lseek, Whence};
use tracing::debug;

use crate::error::{DumpError, Result};
use crate::files::{image_err, open_link};
use crate::imgdir::ImageDir;
use crate::pages::{BATCH_BYTES, PAGE_SIZE};

/// The first mapping seen of each shared anonymous object: shmid -> (pid, start, end).
#[derive(Debug, Default)]
pub(crate) struct ShmemObjects {
    first: BTreeMap<u64, (Tid, u64, u64)>,
}

impl ShmemObjects {
    /// Records a mapping of object `shmid` by `pid` (only the first one is kept).
    pub(crate) fn saw(&mut self, shmid: u64, pid: Tid, start: u64, end: u64) {
        self.first.entry(shmid).or_insert((pid, start, end));
    }

    /// Writes every object's pagemap-shmem and pages images; pages ids from `next_id` on.
    /// Returns the number of pages written.
    pub(crate) fn write(&self, dir: &mut ImageDir, next_id: &mut u32) -> Result<u64> {
        let mut total = 0;
        for (&shmid, &(pid, start, end)) in &self.first {
            *next_id += 1;
            total += dump_object(dir, shmid, pid, start, end, *next_id)?;
        }
        Ok(total)
    }
}

/// Populated page-aligned ranges of `f` below `size`.
fn data_ranges(f: &File, size: u64, path: &Path) -> Result<Vec<(u64, u64)>> {
    let seek_err = |source: nix::Error| DumpError::File {
        what: "seeking the data of shared memory",
        path: path.to_path_buf(),
        source: source.into(),
    };
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut at = 0u64;
    while at < size {
        let data = match lseek(f.as_fd(), at as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::Error::ENXIO) => break,
            Err(e) => return Err(seek_err(e)),
        };
        let hole = lseek(f.as_fd(), data as i64, Whence::SeekHole).map_err(seek_err)? as u64;
        let s = data / PAGE_SIZE * PAGE_SIZE;
        let e = hole.min(size).div_ceil(PAGE_SIZE) * PAGE_SIZE;
        if s < e {
            match out.last_mut() {
                Some(last) if last.1 >= s => last.1 = last.1.max(e),
                _ => out.push((s, e)),
            }
        }
        if hole <= at {
            break;
        }
        at = hole;
    }
    Ok(out)
}

fn dump_object(
    dir: &mut ImageDir,
    shmid: u64,
    pid: Tid,
    start: u64,
    end: u64,
    pages_id: u32,
) -> Result<u64> {
    let path = PathBuf::from(format!("/proc/{pid}/map_files/{start:x}-{end:x}"));
    let f = open_link(&path, pid)?;
    let bytes = write_contents(dir, shmid, &f, &path, pages_id)?;
    debug!(shmid, pid, bytes, "shared anonymous memory saved");
    Ok(bytes / PAGE_SIZE)
}

/// Saves the populated pages of shmem file `f` (shared anonymous memory or a memfd) into
/// `pages-<pages_id>.img`, described by `pagemap-shmem-<shmid>.img`. A last page past the
/// end of the file is saved zero-padded. Returns the bytes saved.
pub(crate) fn write_contents(
    dir: &mut ImageDir,
    shmid: u64,
    f: &File,
    path: &Path,
    pages_id: u32,
) -> Result<u64> {
    let size = f
        .metadata()
        .map_err(|source| DumpError::File {
            what: "stat of shared memory",
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let ranges = data_ranges(f, size, path)?;
    let bytes: u64 = ranges.iter().map(|r| r.1 - r.0).sum();
    let pages_name = format!("pages-{pages_id}.img");
    let (out, out_path) = dir.create_raw(&pages_name, bytes)?;
    let hash = dir.checksums();
    let mut segments = Vec::new();
    let mut buf = vec![0u8; BATCH_BYTES.min(bytes as usize)];
    let mut off = 0u64;
    for &(s, e) in &ranges {
        let mut at = s;
        while at < e {
            let n = ((e - at) as usize).min(buf.len());
            let chunk = &mut buf[..n];
            let inside = (size.saturating_sub(at) as usize).min(n);
            chunk[inside..].fill(0);
            f.read_exact_at(&mut chunk[..inside], at)
                .map_err(|source| DumpError::File {
                    what: "reading shared memory",
                    path: path.to_path_buf(),
                    source,
                })?;
            if hash {
                segments.push(Segment::of(off, chunk));
            }
            out.write_all_at(chunk, off)
                .map_err(|source| DumpError::PageWrite {
                    path: out_path.clone(),
                    offset: off,
                    len: n,
                    source,
                })?;
            at += n as u64;
            off += n as u64;
        }
    }
    dir.raw_written(&pages_name, bytes, segments)?;
    let name = format!("pagemap-shmem-{shmid}.img");
    let mut img = ImageWriter::new(name.clone(), "PAGEMAP");
    img.push(&Pagemap_head {
        pages_id: Some(pages_id),
        ..Default::default()
    })
    .map_err(image_err(&name))?;
    const PE_PRESENT: u32 = 1 << 2;
    for &(s, e) in &ranges {
        img.push(&Pagemap_entry {
            vaddr: Some(s),
            compat_nr_pages: Some(0),
            flags: Some(PE_PRESENT),
            nr_pages: Some((e - s) / PAGE_SIZE),
            ..Default::default()
        })
        .map_err(image_err(&name))?;
    }
    dir.write(img)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_ranges_sparse_tmpfs_file_only_written_pages() {
        // tmpfs is shmem: the same SEEK_DATA/SEEK_HOLE as a shared anonymous object.
        let f = tempfile::tempfile_in("/dev/shm").unwrap();
        f.set_len(16 * PAGE_SIZE).unwrap();
        f.write_all_at(&[1], 2 * PAGE_SIZE + 5).unwrap();
        f.write_all_at(&[2; 4096 * 2], 3 * PAGE_SIZE).unwrap();
        f.write_all_at(&[3], 15 * PAGE_SIZE).unwrap();
        let r = data_ranges(&f, 16 * PAGE_SIZE, Path::new("test")).unwrap();
        assert_eq!(
            r,
            [
                (2 * PAGE_SIZE, 5 * PAGE_SIZE),
                (15 * PAGE_SIZE, 16 * PAGE_SIZE)
            ]
        );
    }

    #[test]
    fn data_ranges_untouched_object_is_empty() {
        let f = tempfile::tempfile_in("/dev/shm").unwrap();
        f.set_len(8 * PAGE_SIZE).unwrap();
        assert!(data_ranges(&f, 8 * PAGE_SIZE, Path::new("test"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn shmem_objects_first_mapping_kept() {
        let mut o = ShmemObjects::default();
        o.saw(7, 100, 0x1000, 0x3000);
        o.saw(7, 101, 0x5000, 0x7000);
        o.saw(9, 101, 0x8000, 0x9000);
        assert_eq!(o.first[&7], (100, 0x1000, 0x3000));
        assert_eq!(o.first.len(), 2);
    }
}
