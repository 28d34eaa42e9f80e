//! SysV shared memory segments the tree has attached: each once, in
//! `ipcns-shm-<ipc ns id>.img` (CRIU's `ipc_shm_entry`, contents `in_pagemaps`: saved like
//! shared anonymous memory, in pagemap-shmem-<shm id> + pages), whatever the number of
//! attaches. A VMA of a segment is `VMA_AREA_SYSVIPC` with the segment id as `shmid`.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crs_images::codec::ImageWriter;
use crs_images::pb::ipc_desc::Ipc_desc_entry;
use crs_images::pb::ipc_shm::Ipc_shm_entry;
use protobuf::MessageField;
use tracing::debug;

use crate::error::{DumpError, Result};
use crate::files::image_err;
use crate::imgdir::ImageDir;
use crate::pages::PAGE_SIZE;

/// The segments attached somewhere in the tree, by id.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    ids: BTreeSet<u32>,
}

impl Segments {
    pub(crate) fn saw(&mut self, id: u32) {
        self.ids.insert(id);
    }

    /// Writes ipcns-shm-<ipc_ns>.img and every segment's contents; pages ids from `next_id`
    /// on. Returns the pages written.
    pub(crate) fn write(&self, dir: &mut ImageDir, ipc_ns: u32, next_id: &mut u32) -> Result<u64> {
        if self.ids.is_empty() {
            return Ok(0);
        }
        let name = format!("ipcns-shm-{ipc_ns}.img");
        let mut img = ImageWriter::new(name.clone(), "IPCNS_SHM");
        let mut pages = 0;
        for &id in &self.ids {
            let label = PathBuf::from(format!("SysV shared memory segment {id}"));
            let err = |what: &'static str| {
                let path = label.clone();
                move |source| DumpError::File { what, path, source }
            };
            let st = crs_sys::sysv::shm_stat(id as i32).map_err(err("shmctl(IPC_STAT) of"))?;
            let file = crs_sys::sysv::shm_file(id as i32).map_err(err("opening"))?;
            img.push(&Ipc_shm_entry {
                desc: MessageField::some(Ipc_desc_entry {
                    key: Some(st.key as u32),
                    uid: Some(st.uid),
                    gid: Some(st.gid),
                    cuid: Some(st.cuid),
                    cgid: Some(st.cgid),
                    mode: Some(st.mode),
                    id: Some(id),
                    ..Default::default()
                }),
                size: Some(st.size),
                in_pagemaps: Some(true),
                ..Default::default()
            })
            .map_err(image_err(&name))?;
            *next_id += 1;
            let bytes = crate::shmem::write_contents(dir, u64::from(id), &file, &label, *next_id)?;
            debug!(
                id,
                key = st.key,
                size = st.size,
                bytes,
                "SysV shared memory saved"
            );
            pages += bytes / PAGE_SIZE;
        }
        dir.write(img)?;
        Ok(pages)
    }
}
