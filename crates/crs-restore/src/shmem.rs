//! Shared anonymous memory (VMA_ANON_SHARED): one object per shmid for the whole tree.
//!
//! ```text
//! load    : every shmid the VMAs of the tree name; its size is the furthest any VMA maps
//!           (pgoff + length); pagemap-shmem-<shmid>.img (offsets in the object) checked
//!           against that size and the pages image
//! create  : crs makes the object itself (a MAP_SHARED|MAP_ANONYMOUS mapping of its own,
//!           reopened through /proc/self/map_files and unmapped: the fd holds a shmem
//!           object the kernel names "/dev/zero", as the original), and fills it ONCE from
//!           the pages image with pwrite (rayon batches); holes stay holes
//! map     : each process opens /proc/<crs>/fd/<n> by an injected openat and mmaps it
//!           MAP_SHARED|MAP_FIXED at its address and pgoff, then closes it (vma::map_all)
//! ```
//! crs drops its fds once every process is built; the mappings keep the object.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::pagemap::{Pagemap_entry, Pagemap_head};
use rayon::prelude::*;
use tracing::debug;

use crate::error::invalid;
use crate::images::{page_runs, Images, PageRun, PAGE, TASK_SIZE};
use crate::pages::{batches, BATCH};
use crate::vma::{Kind, Vma};
use crate::RestoreError;

/// One shared object as dumped.
#[derive(Debug)]
pub(crate) struct Image {
    pub size: u64,
    /// Runs of pages; `addr` is the offset in the object.
    pub runs: Vec<PageRun>,
    pub pages_path: Option<PathBuf>,
}

/// Reads and checks the shared objects the processes of the tree map.
pub(crate) fn load(dir: &Path, procs: &[Images]) -> Result<BTreeMap<u64, Image>, RestoreError> {
    load_for(dir, procs.iter().map(|p| (p.pid, &p.vmas[..])))
}

/// [`load`] for the VMAs of each pid.
fn load_for<'a>(
    dir: &Path,
    procs: impl Iterator<Item = (i32, &'a [Vma])>,
) -> Result<BTreeMap<u64, Image>, RestoreError> {
    let mut sizes: BTreeMap<u64, u64> = BTreeMap::new();
    for (pid, vmas) in procs {
        for v in vmas {
            if let Kind::AnonShared { shmid } = v.kind {
                let end = v
                    .pgoff
                    .checked_add(v.end - v.start)
                    .filter(|&e| v.pgoff % PAGE == 0 && e <= TASK_SIZE)
                    .ok_or_else(|| {
                        invalid(
                            &format!("mm-{pid}.img"),
                            format!("VMA {:#x}: pgoff {:#x}", v.start, v.pgoff),
                        )
                    })?;
                let s = sizes.entry(shmid).or_default();
                *s = (*s).max(end);
            }
        }
    }
    let mut out = BTreeMap::new();
    for (shmid, size) in sizes {
        out.insert(shmid, load_object(dir, shmid, size)?);
    }
    Ok(out)
}

/// Reads the contents of shmem object `shmid` of `size` bytes (pagemap-shmem-<shmid>.img,
/// whose runs are offsets in the object): checked against the size and the pages image.
/// No pagemap means nothing was ever written to it.
pub(crate) fn load_object(dir: &Path, shmid: u64, size: u64) -> Result<Image, RestoreError> {
    let name = format!("pagemap-shmem-{shmid}.img");
    let path = dir.join(&name);
    if !path.exists() {
        return Ok(Image {
            size,
            runs: Vec::new(),
            pages_path: None,
        });
    }
    let bytes = read_file(&path)?;
    let label = path.display().to_string();
    let mut r = ImageReader::new(&label, &bytes, "PAGEMAP")?;
    let head: Pagemap_head = r.next()?.ok_or_else(|| invalid(&name, "no pagemap_head"))?;
    let entries: Vec<Pagemap_entry> = r.all()?;
    let pages_name = format!("pages-{}.img", head.pages_id());
    let pages_path = dir.join(&pages_name);
    let pages_len = std::fs::metadata(&pages_path)
        .map_err(|source| RestoreError::PagesImage {
            image: name.clone(),
            pages: pages_path.clone(),
            source,
        })?
        .len();
    // The object as one VMA at 0: every run must lie inside it.
    let whole = Vma {
        start: 0,
        end: size,
        prot: 0,
        flags: 0,
        kind: Kind::AnonShared { shmid },
        file_id: None,
        pgoff: 0,
        fdflags: 0,
        madv: 0,
    };
    let object = format!("the object of {size:#x} bytes");
    let runs = page_runs(
        &name,
        &entries,
        (&object, &[whole]),
        (&pages_name, pages_len),
    )?;
    Ok(Image {
        size,
        runs,
        pages_path: Some(pages_path),
    })
}

/// The objects, created and filled, held open by crs until every process mapped them.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    fds: BTreeMap<u64, File>,
}

impl Objects {
    /// Creates every object and fills it from its pages. Returns them and the pages written.
    pub fn create(images: &BTreeMap<u64, Image>) -> Result<(Objects, u64), RestoreError> {
        let mut fds = BTreeMap::new();
        let mut pages = 0;
        for (&shmid, img) in images {
            let fd = crs_sys::shmem::anon_shared_object(img.size as usize).map_err(|source| {
                RestoreError::SharedMemory {
                    shmid,
                    what: "creating",
                    source,
                }
            })?;
            let obj = File::from(fd);
            if let Some(pages_path) = &img.pages_path {
                fill(shmid, &obj, img, pages_path)?;
            }
            pages += img.runs.iter().map(|r| r.len / PAGE).sum::<u64>();
            debug!(shmid, size = img.size, "shared anonymous memory created");
            fds.insert(shmid, obj);
        }
        Ok((Objects { fds }, pages))
    }

    /// The path a process of the tree opens to reach object `shmid`.
    pub fn fd_path(&self, shmid: u64) -> Result<String, RestoreError> {
        let f = self.fds.get(&shmid).ok_or_else(|| RestoreError::Invalid {
            image: "mm".into(),
            what: format!("shared memory {shmid} was not loaded"),
        })?;
        Ok(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()))
    }
}

pub(crate) fn fill(
    shmid: u64,
    obj: &File,
    img: &Image,
    pages_path: &Path,
) -> Result<(), RestoreError> {
    let src = File::open(pages_path).map_err(|source| RestoreError::Stat {
        path: pages_path.to_path_buf(),
        source,
    })?;
    batches(&img.runs, BATCH).par_iter().try_for_each_init(
        || vec![0u8; BATCH as usize],
        |buf, b| {
            let buf = &mut buf[..b.len as usize];
            src.read_exact_at(buf, b.offset)
                .map_err(|source| RestoreError::ReadPages {
                    image: pages_path.to_path_buf(),
                    offset: b.offset,
                    len: b.len as usize,
                    source,
                })?;
            let mut at = 0usize;
            for &(off, len) in &b.remote {
                obj.write_all_at(&buf[at..at + len as usize], off)
                    .map_err(|source| RestoreError::SharedMemory {
                        shmid,
                        what: "filling",
                        source,
                    })?;
                at += len as usize;
            }
            Ok(())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crs_images::codec::ImageWriter;

    fn shared(start: u64, end: u64, pgoff: u64) -> Vma {
        Vma {
            start,
            end,
            prot: 3,
            flags: 0x21,
            kind: Kind::AnonShared { shmid: 5 },
            file_id: None,
            pgoff,
            fdflags: 0,
            madv: 0,
        }
    }

    /// pagemap-shmem-5.img with runs (offset, pages) and a pages-9.img of `pages` pages.
    fn images(dir: &Path, runs: &[(u64, u64)], pages: u64) {
        let mut w = ImageWriter::new("pagemap-shmem-5.img", "PAGEMAP");
        w.push(&Pagemap_head {
            pages_id: Some(9),
            ..Default::default()
        })
        .unwrap();
        for &(vaddr, n) in runs {
            w.push(&Pagemap_entry {
                vaddr: Some(vaddr),
                compat_nr_pages: Some(0),
                nr_pages: Some(n),
                flags: Some(4),
                ..Default::default()
            })
            .unwrap();
        }
        std::fs::write(dir.join("pagemap-shmem-5.img"), w.into_bytes()).unwrap();
        std::fs::write(dir.join("pages-9.img"), vec![0u8; (pages * PAGE) as usize]).unwrap();
    }

    #[test]
    fn load_size_is_furthest_mapping_and_runs_are_offsets() {
        let dir = tempfile::tempdir().unwrap();
        images(dir.path(), &[(0x1000, 2)], 2);
        let a = [shared(0x10000, 0x14000, 0)];
        let b = [shared(0x50000, 0x52000, 0x4000)];
        let got = load_for(dir.path(), [(1, &a[..]), (2, &b[..])].into_iter()).unwrap();
        assert_eq!(got[&5].size, 0x6000);
        assert_eq!(
            got[&5].runs,
            [PageRun {
                addr: 0x1000,
                len: 0x2000,
                offset: 0
            }]
        );
    }

    #[test]
    fn load_run_past_object_end_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        images(dir.path(), &[(0x3000, 2)], 2);
        let a = [shared(0x10000, 0x14000, 0)];
        let e = load_for(dir.path(), [(1, &a[..])].into_iter()).unwrap_err();
        assert!(matches!(e, RestoreError::Invalid { .. }), "{e}");
    }

    #[test]
    fn load_pages_image_too_short_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        images(dir.path(), &[(0, 3)], 2);
        let a = [shared(0x10000, 0x14000, 0)];
        let e = load_for(dir.path(), [(1, &a[..])].into_iter()).unwrap_err();
        assert!(matches!(e, RestoreError::Invalid { .. }), "{e}");
    }

    #[test]
    fn load_without_pagemap_is_empty_object() {
        let dir = tempfile::tempdir().unwrap();
        let a = [shared(0x10000, 0x14000, 0)];
        let got = load_for(dir.path(), [(1, &a[..])].into_iter()).unwrap();
        assert!(got[&5].runs.is_empty() && got[&5].pages_path.is_none());
    }
}
