//! SysV shared memory segments (`ipcns-shm-*.img`, VMAs with `VMA_AREA_SYSVIPC` whose
//! `shmid` is the segment id).
//!
//! ```text
//! load   : every segment a VMA of the tree attaches, its entry and contents
//!          (pagemap-shmem-<id>.img, in_pagemaps as CRIU writes them)
//! create : a segment that still exists with the same key and size is reused; else it is
//!          made with its id (kernel.shm_next_id, then shmget IPC_CREAT|IPC_EXCL); either
//!          way its contents are written from the images, its owner and mode set
//! attach : each task runs shmat(id, start) at the VMA's address (vma::map_all)
//! finish : a segment that was marked removed (SHM_DEST) is removed again once every task
//!          attached it; on a failed restore the segments crs made are removed
//! ```
//! Segments live in the IPC namespace of crs, or, when the tree has its own, in that one
//! (every segment of it is restored, attached or not; they are made and removed by a
//! thread of crs that joins it, and go with the namespace if the restore fails).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::ipc_shm::Ipc_shm_entry;
use crs_sys::sysv::{self, SHM_DEST};
use tracing::{debug, warn};

use crate::error::{invalid, unsupported};
use crate::images::{Tree, PAGE, TASK_SIZE};
use crate::ns;
use crate::shmem;
use crate::vma::Kind;
use crate::RestoreError;

const SHM_NEXT_ID: &str = "/proc/sys/kernel/shm_next_id";

/// One segment as dumped.
#[derive(Debug)]
pub(crate) struct Segment {
    pub entry: Ipc_shm_entry,
    pub contents: shmem::Image,
}

/// Reads the segments the VMAs of the tree attach, by id; with `own_ipc` (the tree's own
/// IPC namespace's id) every segment of `ipcns-shm-<own_ipc>.img`.
pub(crate) fn load(
    dir: &Path,
    tree: &Tree,
    own_ipc: Option<u32>,
) -> Result<BTreeMap<u32, Segment>, RestoreError> {
    // Segment id -> the first VMA that attaches it (pid, address), for errors.
    let mut wanted: BTreeMap<u32, (i32, u64)> = BTreeMap::new();
    for p in &tree.procs {
        for v in &p.vmas {
            if let Kind::SysvShm { id } = v.kind {
                wanted.entry(id).or_insert((p.pid, v.start));
            }
        }
    }
    let mut out = BTreeMap::new();
    if wanted.is_empty() && own_ipc.is_none() {
        return Ok(out);
    }
    let mut entries: BTreeMap<u32, Ipc_shm_entry> = BTreeMap::new();
    let list = std::fs::read_dir(dir).map_err(|source| RestoreError::Stat {
        path: dir.to_path_buf(),
        source,
    })?;
    for e in list.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("ipcns-shm-") && name.ends_with(".img")) {
            continue;
        }
        let bytes = read_file(&e.path())?;
        let label = e.path().display().to_string();
        for s in ImageReader::new(&label, &bytes, "IPCNS_SHM")?.all::<Ipc_shm_entry>()? {
            let id = s.desc.id();
            if !s.in_pagemaps() {
                return Err(unsupported(format!(
                    "{name}: SysV segment {id} with its contents inline (not in_pagemaps)"
                )));
            }
            if s.hugetlb_flag() != 0 {
                return Err(unsupported(format!("{name}: hugetlb SysV segment {id}")));
            }
            if s.size() == 0 || s.size() > TASK_SIZE {
                return Err(invalid(
                    &name,
                    format!("segment {id}: size {:#x}", s.size()),
                ));
            }
            let ours = own_ipc.is_some_and(|ns| name == format!("ipcns-shm-{ns}.img"));
            if ours {
                wanted.entry(id).or_insert((0, 0));
            }
            if entries.insert(id, s).is_some() && wanted.contains_key(&id) {
                return Err(invalid(&name, format!("segment {id} twice")));
            }
        }
    }
    for (id, (pid, start)) in wanted {
        let entry = entries.remove(&id).ok_or_else(|| {
            invalid(
                &format!("mm-{pid}.img"),
                format!("VMA {start:#x} attaches SysV segment {id}, which no ipcns-shm-*.img has"),
            )
        })?;
        let span = entry.size().div_ceil(PAGE) * PAGE;
        let contents = shmem::load_object(dir, u64::from(id), span)?;
        out.insert(id, Segment { entry, contents });
    }
    Ok(out)
}

/// The segments, ready to attach. Dropped before [`Segments::commit`], it removes the
/// segments it created.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    /// Made by this restore (removed on failure).
    created: Vec<u32>,
    /// Marked removed at dump time (removed again after every attach).
    dest: Vec<u32>,
    committed: bool,
    /// In the tree's own IPC namespace, which joining this process (the new root) reaches.
    in_ns: Option<crs_compel::Tid>,
}

fn shm_err(id: u32, what: &'static str) -> impl FnOnce(io::Error) -> RestoreError {
    move |source| RestoreError::SharedMemory {
        shmid: u64::from(id),
        what,
        source,
    }
}

impl Segments {
    /// Makes (or reuses) every segment and writes its contents; `in_ns`: in the tree's own
    /// IPC namespace, that of this process (the new root). Returns the pages written.
    pub fn create(
        segs: &BTreeMap<u32, Segment>,
        in_ns: Option<crs_compel::Tid>,
    ) -> Result<(Segments, u64), RestoreError> {
        match in_ns {
            Some(root) => {
                let (mut out, pages) =
                    ns::within(root, &["ipc"], || Segments::make_all(segs, false))?;
                out.in_ns = in_ns;
                Ok((out, pages))
            }
            None => Segments::make_all(segs, true),
        }
    }

    /// `journal`: the segments made are the guardian's to remove if crs dies (not in a
    /// namespace of the tree's own, which goes with the tree).
    fn make_all(
        segs: &BTreeMap<u32, Segment>,
        journal: bool,
    ) -> Result<(Segments, u64), RestoreError> {
        let mut out = Segments::default();
        let mut pages = 0;
        for (&id, s) in segs {
            let d = &s.entry.desc;
            let size = s.entry.size();
            match sysv::shm_stat(id as i32) {
                Ok(st) if st.key == d.key() as i32 && st.size == size => {
                    debug!(id, "SysV segment still there: reused");
                }
                Ok(st) => {
                    return Err(RestoreError::Unsupported {
                        what: format!(
                            "SysV segment {id} exists with key {:#x} and size {} \
                             (dumped: key {:#x}, size {size})",
                            st.key,
                            st.size,
                            d.key()
                        ),
                    })
                }
                Err(_) => {
                    if journal {
                        crs_compel::guard::record(&crs_compel::guard::Record::SysvShm {
                            id: id as i32,
                        });
                    }
                    make(id, d.key() as i32, size, d.mode())?;
                    if journal {
                        out.created.push(id);
                    }
                }
            }
            let file = sysv::shm_file(id as i32).map_err(shm_err(id, "opening"))?;
            if let Some(pages_path) = &s.contents.pages_path {
                shmem::fill(u64::from(id), &file, &s.contents, pages_path)?;
            }
            pages += s.contents.runs.iter().map(|r| r.len / PAGE).sum::<u64>();
            sysv::shm_set_owner(id as i32, d.uid(), d.gid(), d.mode())
                .map_err(shm_err(id, "setting owner and mode of"))?;
            if d.mode() & SHM_DEST != 0 {
                out.dest.push(id);
            }
        }
        Ok((out, pages))
    }

    /// Every task attached its segments: those removed at dump time are removed again.
    pub fn commit(mut self) -> Result<(), RestoreError> {
        self.committed = true;
        for &id in &self.created {
            crs_compel::guard::record(&crs_compel::guard::Record::SysvKept { id: id as i32 });
        }
        let remove = |dest: &[u32]| {
            for &id in dest {
                sysv::shm_remove(id as i32).map_err(shm_err(id, "removing"))?;
            }
            Ok(())
        };
        match self.in_ns {
            Some(root) => ns::within(root, &["ipc"], || remove(&self.dest)),
            None => remove(&self.dest),
        }
    }
}

impl Drop for Segments {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for &id in &self.created {
            if let Err(e) = sysv::shm_remove(id as i32) {
                warn!(id, error = %e, "removing a SysV segment of a failed restore");
            }
        }
    }
}

/// Creates segment `id` (key, size, permission bits of `mode`) through kernel.shm_next_id.
fn make(id: u32, key: i32, size: u64, mode: u32) -> Result<(), RestoreError> {
    let set = |v: &str| {
        std::fs::write(SHM_NEXT_ID, v).map_err(|source| RestoreError::SharedMemory {
            shmid: u64::from(id),
            what: "choosing the id (kernel.shm_next_id) of",
            source,
        })
    };
    // The kernel takes next_id for the next segment made in this namespace and forgets it
    // (it cannot be set back to -1 by hand).
    set(&id.to_string())?;
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (mode & 0o777) as i32;
    let got = sysv::shm_get(key, size, flags).map_err(shm_err(id, "creating"))?;
    if got != id as i32 {
        let _ = sysv::shm_remove(got);
        return Err(RestoreError::Unsupported {
            what: format!("SysV segment {id}: the kernel gave id {got}"),
        });
    }
    debug!(id, key, size, "SysV segment created");
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testsets;
    use crs_images::codec::ImageWriter;
    use crs_images::pb::ipc_desc::Ipc_desc_entry;
    use crs_images::pb::ipc_shm::Ipc_shm_entry;
    use crs_images::pb::mm::Mm_entry;

    /// The tree set with its memfd mapping at 0x7f0844301000 in 72000 turned into an
    /// attach of SysV segment 38.
    fn tree_attaching_38(test: &str) -> Option<tempfile::TempDir> {
        let t = testsets::copy("tree", test)?;
        testsets::rewrite(t.path(), "mm-72000.img", "MM", |v: &mut Vec<Mm_entry>| {
            let vma = v[0]
                .vmas
                .iter_mut()
                .find(|v| v.start() == 0x7f08_4430_1000)
                .unwrap();
            vma.status = Some(1 | (1 << 10));
            vma.shmid = Some(38);
        });
        Some(t)
    }

    fn segment(id: u32) -> Ipc_shm_entry {
        Ipc_shm_entry {
            desc: protobuf::MessageField::some(Ipc_desc_entry {
                key: Some(0),
                uid: Some(0),
                gid: Some(0),
                cuid: Some(0),
                cgid: Some(0),
                mode: Some(0o600),
                id: Some(id),
                ..Default::default()
            }),
            size: Some(0x10000),
            in_pagemaps: Some(true),
            ..Default::default()
        }
    }

    #[test]
    fn load_segment_no_image_has_names_the_vma() {
        let test = "load_segment_no_image_has_names_the_vma";
        let Some(t) = tree_attaching_38(test) else {
            return;
        };
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("mm-72000.img: VMA 0x7f0844301000 attaches SysV segment 38"),
            "{err}"
        );
    }

    #[test]
    fn load_segment_twice_is_invalid() {
        let Some(t) = tree_attaching_38("load_segment_twice_is_invalid") else {
            return;
        };
        let mut w = ImageWriter::new("ipcns-shm-3.img", "IPCNS_SHM");
        w.push(&segment(38)).unwrap();
        w.push(&segment(38)).unwrap();
        std::fs::write(t.path().join("ipcns-shm-3.img"), w.into_bytes()).unwrap();
        let err = testsets::load_err(t.path());
        assert!(err.contains("ipcns-shm-3.img: segment 38 twice"), "{err}");
        // Once, it is accepted.
        let mut w = ImageWriter::new("ipcns-shm-3.img", "IPCNS_SHM");
        w.push(&segment(38)).unwrap();
        std::fs::write(t.path().join("ipcns-shm-3.img"), w.into_bytes()).unwrap();
        testsets::load(t.path()).unwrap();
    }
}
