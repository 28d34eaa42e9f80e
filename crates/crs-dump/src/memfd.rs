//! memfds: every memfd inode the tree holds open or maps, once (memfd.img), with its
//! contents saved from the file itself like shared anonymous memory (pagemap-shmem-<ino>
//! + pages), whatever the number of fds, descriptions and mappings that reach it.
//!
//! An fd on a memfd is a MEMFD file entry (flags, position, inode id); a mapping is a VMA
//! with `VMA_AREA_MEMFD` whose `shmid` is a MEMFD file entry, as CRIU 4.2 writes them.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crs_images::codec::ImageWriter;
use crs_images::pb::memfd::Memfd_inode_entry;
use nix::fcntl::{fcntl, FcntlArg};
use tracing::debug;

use crate::error::{DumpError, Result};
use crate::files::image_err;
use crate::imgdir::ImageDir;
use crate::pages::PAGE_SIZE;

/// The name of a memfd as its /proc link shows it: `/memfd:NAME (deleted)` -> `NAME`.
pub(crate) fn name_of(link: &str) -> Option<&str> {
    let rest = link.strip_prefix("/memfd:")?;
    Some(rest.strip_suffix(" (deleted)").unwrap_or(rest))
}

struct Inode {
    entry: Memfd_inode_entry,
    /// A descriptor of it, to read the contents at write time.
    file: File,
    /// Where it was found (for errors).
    path: PathBuf,
}

/// The memfd inodes met so far, by inode number.
#[derive(Default)]
pub(crate) struct Memfds {
    by_ino: BTreeMap<u64, Inode>,
}

impl Memfds {
    /// The inode id of the memfd `file` (found at `path`, shown as `link`), recorded the
    /// first time it is met.
    pub(crate) fn inode(&mut self, file: &File, path: &Path, link: &str) -> Result<u32> {
        let md = file.metadata().map_err(|source| DumpError::File {
            what: "stat of memfd",
            path: path.to_path_buf(),
            source,
        })?;
        let next = self.by_ino.len() as u64 + 1;
        if let Some(i) = self.by_ino.get(&md.ino()) {
            return Ok(i.entry.inode_id() as u32);
        }
        let name = name_of(link).unwrap_or(link);
        let seals = fcntl(file.as_fd(), FcntlArg::F_GET_SEALS).map_err(|e| DumpError::File {
            what: "reading the seals of memfd",
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        let file = file.try_clone().map_err(|source| DumpError::File {
            what: "duplicating fd of memfd",
            path: path.to_path_buf(),
            source,
        })?;
        let entry = Memfd_inode_entry {
            name: Some(name.to_string()),
            uid: Some(md.uid()),
            gid: Some(md.gid()),
            size: Some(md.size()),
            shmid: Some(md.ino() as u32),
            seals: Some(seals as u32),
            inode_id: Some(next),
            mode: Some(md.mode()),
            ..Default::default()
        };
        debug!(
            ino = md.ino(),
            inode_id = next,
            name,
            size = md.size(),
            "memfd"
        );
        self.by_ino.insert(
            md.ino(),
            Inode {
                entry,
                file,
                path: path.to_path_buf(),
            },
        );
        Ok(next as u32)
    }

    /// Writes memfd.img and each inode's contents; pages ids from `next_id` on. Returns the
    /// pages written.
    pub(crate) fn write(&self, dir: &mut ImageDir, next_id: &mut u32) -> Result<u64> {
        if self.by_ino.is_empty() {
            return Ok(0);
        }
        let mut inodes: Vec<&Inode> = self.by_ino.values().collect();
        inodes.sort_by_key(|i| i.entry.inode_id());
        let mut img = ImageWriter::new("memfd.img", "MEMFD_INODE");
        let mut pages = 0;
        for i in inodes {
            img.push(&i.entry).map_err(image_err("memfd.img"))?;
            *next_id += 1;
            let shmid = u64::from(i.entry.shmid());
            pages +=
                crate::shmem::write_contents(dir, shmid, &i.file, &i.path, *next_id)? / PAGE_SIZE;
        }
        dir.write(img)?;
        Ok(pages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_of_memfd_link_strips_prefix_and_deleted() {
        assert_eq!(
            name_of("/memfd:crs-tree-memfd (deleted)"),
            Some("crs-tree-memfd")
        );
        assert_eq!(name_of("/memfd:a b"), Some("a b"));
        assert_eq!(name_of("/tmp/memfd:x"), None);
    }
}
