//! The images directory. When it holds no images yet (the usual fresh `-D`), images are
//! written straight into it, `inventory.img` last. When it already holds some, they are
//! written into a private staging directory inside it and moved into place only once all
//! of them are written, `inventory.img` last, so an older set is never mixed with a
//! half-written one. A dump that fails removes what it wrote either way, so a directory
//! never holds a set that looks complete but is not. (Writing straight saves a rename per
//! image while the tree is frozen: 3 ms of a 50-process dump on tmpfs.)
//!
//! Every image written is also hashed (see `crs_images::checksums`): small images whole
//! when written, pages images by the copy, batch by batch. `crs-checksums` is written just
//! before `inventory.img`, so it is in place (renamed in before it, when staged) whenever
//! the set looks complete. `CRS_IMAGE_CHECKSUMS=0` (read by the binary) leaves it out.
//! When a staged set is committed, the older set's images that the new one does not have
//! (every `*.img` and `crs-checksums`) are removed, so the directory holds one set, never
//! a mix that a restore would read parts of (`filelocks.img` of an older dump, say).
//!
//! Like CRIU, crs does not flush the images to disk: the page cache has them when crs
//! exits, which is all another process (a restore, rsync to another host) needs. Waiting
//! for the disk cost more than the whole dump on ext4 (a 1 GiB dump: 1.37 s with
//! fdatasync of every image against 0.59 s for criu, which never syncs); run `sync` after
//! the dump when the images must survive a power loss.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use crs_images::checksums::{self, ImageSums, Segment, SegmentError};
use crs_images::codec::ImageWriter;
use tracing::{debug, warn};

use crate::error::{DumpError, Result};

/// The image whose presence marks a complete set.
pub(crate) const INVENTORY: &str = "inventory.img";

pub(crate) struct ImageDir {
    dir: PathBuf,
    /// Where images are written: `dir` itself, or a staging directory inside it.
    staging: PathBuf,
    names: Vec<String>,
    /// `names` as a set: a dump of thousands of connections writes as many images.
    known: std::collections::HashSet<String>,
    /// Files already moved into `dir` (removed again if the commit fails half way).
    moved: Vec<PathBuf>,
    /// The checksums of the images written so far, by name; None when they are not kept.
    sums: Option<BTreeMap<String, Vec<Segment>>>,
    /// `inventory.img` is written: the set is complete, nothing may follow.
    sealed: bool,
    done: bool,
}

impl ImageDir {
    /// Checks that `dir` exists and is a directory (criu's -D must exist).
    pub(crate) fn check(dir: &Path) -> Result<()> {
        let md = fs::metadata(dir).map_err(|source| DumpError::ImagesDir {
            path: dir.to_path_buf(),
            source,
        })?;
        if !md.is_dir() {
            return Err(DumpError::ImagesDir {
                path: dir.to_path_buf(),
                source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }
        Ok(())
    }

    /// Writes straight into `dir` when it holds no images, else creates the staging
    /// directory inside it. With `checksums`, `crs-checksums` is written before the
    /// inventory.
    pub(crate) fn create(dir: &Path, pid: i32, checksums: bool) -> Result<ImageDir> {
        let entries = fs::read_dir(dir).map_err(|source| DumpError::ImagesDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let holds_images = entries.filter_map(|e| e.ok()).any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(".img") || name.starts_with(".crs-dump-") || name == checksums::FILE_NAME
        });
        let sums = checksums.then(BTreeMap::new);
        if !holds_images {
            // A read-only directory fails here, before anything is written.
            nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).map_err(|e| {
                DumpError::ImagesDir {
                    path: dir.to_path_buf(),
                    source: e.into(),
                }
            })?;
            crs_compel::guard::record(&crs_compel::guard::Record::Images {
                dir: dir.to_path_buf(),
                staging: dir.to_path_buf(),
            });
            return Ok(ImageDir {
                dir: dir.to_path_buf(),
                staging: dir.to_path_buf(),
                names: Vec::new(),
                known: Default::default(),
                moved: Vec::new(),
                sums,
                sealed: false,
                done: false,
            });
        }
        let staging = dir.join(format!(".crs-dump-{pid}.{}", std::process::id()));
        if staging.exists() {
            let _ = fs::remove_dir_all(&staging);
        }
        crs_compel::guard::record(&crs_compel::guard::Record::Images {
            dir: dir.to_path_buf(),
            staging: staging.clone(),
        });
        fs::create_dir(&staging).map_err(|source| DumpError::ImagesDir {
            path: staging.clone(),
            source,
        })?;
        Ok(ImageDir {
            dir: dir.to_path_buf(),
            staging,
            names: Vec::new(),
            known: Default::default(),
            moved: Vec::new(),
            sums,
            sealed: false,
            done: false,
        })
    }

    /// Whether images are hashed (the pages copy hashes its batches only then).
    pub(crate) fn checksums(&self) -> bool {
        self.sums.is_some()
    }

    /// Images go straight into the directory (it held none).
    fn direct(&self) -> bool {
        self.staging == self.dir
    }

    fn staged(&mut self, name: &str) -> Result<PathBuf> {
        if self.sealed {
            // A bug: the checksums and the inventory are already written.
            return Err(DumpError::Checksums {
                source: SegmentError::AfterInventory {
                    name: name.to_string(),
                },
            });
        }
        if self.known.insert(name.to_string()) {
            self.names.push(name.to_string());
        }
        Ok(self.staging.join(name))
    }

    /// Writes a finished image.
    pub(crate) fn write(&mut self, img: ImageWriter) -> Result<()> {
        let name = img.name().to_string();
        self.write_bytes(&name, &img.into_bytes())
    }

    /// Writes raw bytes as image `name`. `inventory.img` must be the last image: with
    /// checksums, `crs-checksums` is written just before it.
    pub(crate) fn write_bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        if let Some(sums) = &mut self.sums {
            sums.insert(name.to_string(), vec![Segment::of(0, bytes)]);
            if name == INVENTORY {
                self.write_checksums()?;
            }
        }
        self.put(name, bytes)?;
        if name == INVENTORY {
            self.sealed = true;
        }
        Ok(())
    }

    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        crs_sys::fault::point(|| format!("writing {name}"))?;
        let path = self.staged(name)?;
        let mut f = File::create(&path).map_err(|source| DumpError::Write {
            path: path.clone(),
            source,
        })?;
        f.write_all(bytes)
            .map_err(|source| DumpError::Write { path, source })?;
        debug!(image = name, len = bytes.len(), "image written");
        Ok(())
    }

    /// `crs-checksums`: every image written so far, then the inventory.
    fn write_checksums(&mut self) -> Result<()> {
        let Some(sums) = &mut self.sums else {
            return Ok(());
        };
        let list: Vec<ImageSums> = self
            .names
            .iter()
            .map(String::as_str)
            .filter(|&n| n != INVENTORY)
            .chain([INVENTORY])
            .map(|name| ImageSums {
                name: name.to_string(),
                // None: a raw image whose writer recorded no segments, a bug that
                // `render` refuses.
                segments: sums.remove(name).unwrap_or_default(),
            })
            .collect();
        let text = checksums::render(&list).map_err(|source| DumpError::Checksums { source })?;
        self.put(checksums::FILE_NAME, &text)
    }

    /// Creates raw image `name` of `len` bytes, to be filled with positioned writes. With
    /// checksums, its writer hands the segments to [`ImageDir::raw_written`].
    pub(crate) fn create_raw(&mut self, name: &str, len: u64) -> Result<(File, PathBuf)> {
        crs_sys::fault::point(|| format!("creating {name}"))?;
        let path = self.staged(name)?;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|source| DumpError::Write {
                path: path.clone(),
                source,
            })?;
        f.set_len(len).map_err(|source| DumpError::Write {
            path: path.clone(),
            source,
        })?;
        if let Some(sums) = &mut self.sums {
            sums.remove(name);
        }
        Ok((f, path))
    }

    /// The checksums of raw image `name` (of `len` bytes), as its writer hashed it:
    /// segments in any order, which must cover the file exactly.
    pub(crate) fn raw_written(
        &mut self,
        name: &str,
        len: u64,
        mut segments: Vec<Segment>,
    ) -> Result<()> {
        let Some(sums) = &mut self.sums else {
            return Ok(());
        };
        segments.sort_by_key(|s| s.offset);
        if segments.is_empty() && len == 0 {
            segments.push(Segment::of(0, &[]));
        }
        checksums::check_segments(name, &segments)
            .map_err(|source| DumpError::Checksums { source })?;
        let end = segments.last().map_or(0, Segment::end);
        if end != len {
            return Err(DumpError::Checksums {
                source: SegmentError::Gap {
                    name: name.to_string(),
                    offset: end,
                    expected: len,
                },
            });
        }
        sums.insert(name.to_string(), segments);
        Ok(())
    }

    /// Moves the images into place, inventory last.
    pub(crate) fn commit(mut self) -> Result<()> {
        crs_sys::fault::point(|| "committing the images".to_string())?;
        if self.direct() {
            self.done = true;
            crs_compel::guard::record(&crs_compel::guard::Record::ImagesComplete);
            return Ok(());
        }
        // An older set in the directory stops looking complete before it is overwritten.
        let old_inventory = self.dir.join(INVENTORY);
        match fs::remove_file(&old_inventory) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(DumpError::Write {
                    path: old_inventory,
                    source,
                })
            }
        }
        self.remove_stale()?;
        let names = std::mem::take(&mut self.names);
        self.known.clear();
        let (inventory, others): (Vec<_>, Vec<_>) = names.into_iter().partition(|n| n == INVENTORY);
        for name in others.iter().chain(inventory.iter()) {
            let from = self.staging.join(name);
            let to = self.dir.join(name);
            fs::rename(&from, &to).map_err(|source| DumpError::Write {
                path: to.clone(),
                source,
            })?;
            self.moved.push(to);
        }
        self.done = true;
        crs_compel::guard::record(&crs_compel::guard::Record::ImagesComplete);
        let _ = fs::remove_dir_all(&self.staging);
        Ok(())
    }
}

impl ImageDir {
    /// Removes the older set's images that the new set does not replace (called once the
    /// older inventory is gone, before the new images move in).
    fn remove_stale(&self) -> Result<()> {
        let entries = fs::read_dir(&self.dir).map_err(|source| DumpError::ImagesDir {
            path: self.dir.clone(),
            source,
        })?;
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let image = name.ends_with(".img") || name == checksums::FILE_NAME;
            if !image || self.known.contains(name) {
                continue;
            }
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let path = e.path();
            match fs::remove_file(&path) {
                Ok(()) => debug!(image = name, "older image removed"),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(DumpError::Write { path, source }),
            }
        }
        Ok(())
    }
}

impl Drop for ImageDir {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if self.direct() {
            for name in &self.names {
                let p = self.dir.join(name);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        warn!(path = %p.display(), error = %e, "removing a partly written image")
                    }
                }
            }
            return;
        }
        for p in &self.moved {
            if let Err(e) = fs::remove_file(p) {
                warn!(path = %p.display(), error = %e, "removing a partly committed image");
            }
        }
        if let Err(e) = fs::remove_dir_all(&self.staging) {
            warn!(path = %self.staging.display(), error = %e, "removing the staging directory");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn image(name: &str) -> ImageWriter {
        ImageWriter::new(name, "INVENTORY")
    }

    #[test]
    fn empty_dir_is_written_straight_and_kept_on_commit() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("dump.log"), b"log").unwrap();
        let mut d = ImageDir::create(t.path(), 1, true).unwrap();
        d.write(image("core-1.img")).unwrap();
        assert_eq!(names(t.path()), ["core-1.img", "dump.log"]);
        d.write(image(INVENTORY)).unwrap();
        d.commit().unwrap();
        assert_eq!(
            names(t.path()),
            ["core-1.img", checksums::FILE_NAME, "dump.log", INVENTORY]
        );
    }

    #[test]
    fn empty_dir_failed_dump_removes_only_its_images() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("dump.log"), b"log").unwrap();
        let mut d = ImageDir::create(t.path(), 1, true).unwrap();
        d.write(image("core-1.img")).unwrap();
        d.create_raw("pages-1.img", 4096).unwrap();
        drop(d);
        assert_eq!(names(t.path()), ["dump.log"]);
    }

    #[test]
    fn older_set_is_replaced_only_on_commit() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("core-1.img"), b"old").unwrap();
        fs::write(t.path().join(INVENTORY), b"old").unwrap();
        let mut d = ImageDir::create(t.path(), 1, true).unwrap();
        d.write(image("core-1.img")).unwrap();
        // Staged: the old set is untouched until the commit.
        assert_eq!(fs::read(t.path().join("core-1.img")).unwrap(), b"old");
        d.write(image(INVENTORY)).unwrap();
        d.commit().unwrap();
        assert_eq!(
            names(t.path()),
            ["core-1.img", checksums::FILE_NAME, INVENTORY]
        );
        assert_ne!(fs::read(t.path().join("core-1.img")).unwrap(), b"old");
    }

    #[test]
    fn older_set_survives_a_failed_dump() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("core-1.img"), b"old").unwrap();
        let mut d = ImageDir::create(t.path(), 1, true).unwrap();
        d.write(image("core-1.img")).unwrap();
        drop(d);
        assert_eq!(names(t.path()), ["core-1.img"]);
        assert_eq!(fs::read(t.path().join("core-1.img")).unwrap(), b"old");
    }

    /// The checksum file of `dir`, parsed, with each image's recorded hash checked against
    /// the file on disk.
    fn listed(dir: &Path) -> Vec<String> {
        let text = fs::read(dir.join(checksums::FILE_NAME)).unwrap();
        let images = checksums::parse(&text).unwrap();
        for img in &images {
            let bytes = fs::read(dir.join(&img.name)).unwrap();
            assert_eq!(bytes.len() as u64, img.size(), "{}", img.name);
            for s in &img.segments {
                let part = &bytes[s.offset as usize..s.end() as usize];
                assert_eq!(
                    checksums::hash(part),
                    s.hash,
                    "{} at {}",
                    img.name,
                    s.offset
                );
            }
        }
        images.into_iter().map(|i| i.name).collect()
    }

    #[test]
    fn checksums_list_every_image_inventory_last() {
        let t = tempfile::tempdir().unwrap();
        let mut d = ImageDir::create(t.path(), 1, true).unwrap();
        d.write(image("core-1.img")).unwrap();
        let (f, _) = d.create_raw("pages-1.img", 3 * 4096).unwrap();
        f.write_all_at(&[7u8; 4096], 4096).unwrap();
        let segs = (0..3u64)
            .map(|i| {
                let fill = if i == 1 { 7u8 } else { 0 };
                Segment::of(i * 4096, &[fill; 4096])
            })
            .rev()
            .collect();
        d.raw_written("pages-1.img", 3 * 4096, segs).unwrap();
        let (_, _) = d.create_raw("pages-2.img", 0).unwrap();
        d.raw_written("pages-2.img", 0, Vec::new()).unwrap();
        d.write(image(INVENTORY)).unwrap();
        d.commit().unwrap();
        assert_eq!(
            listed(t.path()),
            ["core-1.img", "pages-1.img", "pages-2.img", INVENTORY]
        );
    }

    #[test]
    fn checksums_off_writes_no_checksum_file() {
        let t = tempfile::tempdir().unwrap();
        let mut d = ImageDir::create(t.path(), 1, false).unwrap();
        d.write(image("core-1.img")).unwrap();
        let (_, _) = d.create_raw("pages-1.img", 4096).unwrap();
        d.raw_written("pages-1.img", 4096, Vec::new()).unwrap();
        d.write(image(INVENTORY)).unwrap();
        d.commit().unwrap();
        assert_eq!(names(t.path()), ["core-1.img", INVENTORY, "pages-1.img"]);
    }

    #[test]
    fn checksums_failed_dump_removes_checksum_file() {
        let t = tempfile::tempdir().unwrap();
        let mut d = ImageDir::create(t.path(), 1, true).unwrap();
        d.write(image("core-1.img")).unwrap();
        d.write(image(INVENTORY)).unwrap();
        drop(d);
        assert!(names(t.path()).is_empty());
    }

    #[test]
    fn checksums_raw_image_without_segments_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut d = ImageDir::create(t.path(), 1, true).unwrap();
        d.create_raw("pages-1.img", 4096).unwrap();
        let e = d.write(image(INVENTORY)).unwrap_err();
        assert!(matches!(e, DumpError::Checksums { .. }), "{e:?}");
    }

    #[test]
    fn checksums_raw_segments_short_of_the_file_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut d = ImageDir::create(t.path(), 1, true).unwrap();
        d.create_raw("pages-1.img", 8192).unwrap();
        let segs = vec![Segment::of(0, &[0u8; 4096])];
        let e = d.raw_written("pages-1.img", 8192, segs).unwrap_err();
        assert!(matches!(e, DumpError::Checksums { .. }), "{e:?}");
    }

    #[test]
    fn checksums_image_after_inventory_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut d = ImageDir::create(t.path(), 1, true).unwrap();
        d.write(image(INVENTORY)).unwrap();
        let e = d.write(image("core-1.img")).unwrap_err();
        assert!(matches!(e, DumpError::Checksums { .. }), "{e:?}");
    }

    #[test]
    fn older_set_images_not_in_the_new_one_are_removed_on_commit() {
        let t = tempfile::tempdir().unwrap();
        for n in [
            "core-1.img",
            "filelocks.img",
            INVENTORY,
            checksums::FILE_NAME,
        ] {
            fs::write(t.path().join(n), b"old").unwrap();
        }
        fs::write(t.path().join("dump.log"), b"log").unwrap();
        fs::write(t.path().join("stats-dump"), b"old").unwrap();
        let mut d = ImageDir::create(t.path(), 1, true).unwrap();
        d.write(image("core-1.img")).unwrap();
        d.write(image(INVENTORY)).unwrap();
        // Staged: the older set is whole until the commit.
        assert_eq!(fs::read(t.path().join("filelocks.img")).unwrap(), b"old");
        d.commit().unwrap();
        assert_eq!(
            names(t.path()),
            [
                "core-1.img",
                checksums::FILE_NAME,
                "dump.log",
                INVENTORY,
                "stats-dump"
            ]
        );
        assert_eq!(listed(t.path()), ["core-1.img", INVENTORY]);
    }

    #[test]
    fn older_checksum_file_goes_when_the_new_set_has_none() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join(checksums::FILE_NAME), b"old").unwrap();
        let mut d = ImageDir::create(t.path(), 1, false).unwrap();
        d.write(image(INVENTORY)).unwrap();
        d.commit().unwrap();
        assert_eq!(names(t.path()), [INVENTORY]);
    }
}
