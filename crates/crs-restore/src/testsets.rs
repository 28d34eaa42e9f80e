//! Copies of the CRIU reference sets for unit tests that change one image and load the
//! set as a restore does.

use std::path::Path;

use crs_images::codec::{ImageReader, ImageWriter};
use crs_testkit::imageset::{read_set, scratch_copy};
use protobuf::MessageFull;

use crate::{load_and_check, Loaded, RestoreError, RestoreOptions};

/// A copy of reference set `set` (pages images as sparse files of their size: loading
/// reads only their size), or None after a SKIP line when the sets are missing.
pub(crate) fn copy(set: &str, test: &str) -> Option<tempfile::TempDir> {
    let from = crs_testkit::criu_images().join(set);
    if !from.join("inventory.img").exists() {
        crs_testkit::skip(
            test,
            &format!("no CRIU reference set at {}", from.display()),
        );
        return None;
    }
    let (tmp, _) = scratch_copy(&read_set(&from));
    Some(tmp)
}

/// Rewrites image `name` of `dir` (entries of type `M`, magic `magic`) through `f`.
pub(crate) fn rewrite<M: MessageFull>(
    dir: &Path,
    name: &str,
    magic: &'static str,
    f: impl FnOnce(&mut Vec<M>),
) {
    let bytes = std::fs::read(dir.join(name)).unwrap();
    let mut v: Vec<M> = ImageReader::new(name, &bytes, magic)
        .unwrap()
        .all()
        .unwrap();
    f(&mut v);
    let mut w = ImageWriter::new(name, magic);
    for m in &v {
        w.push(m).unwrap();
    }
    std::fs::write(dir.join(name), w.into_bytes()).unwrap();
}

/// [`load_and_check`] of `dir` (file locks allowed).
pub(crate) fn load(dir: &Path) -> Result<Loaded, RestoreError> {
    load_and_check(&RestoreOptions {
        images_dir: dir.to_path_buf(),
        file_locks: true,
        ..RestoreOptions::default()
    })
}

/// The error of loading `dir`, as a user reads it (with its sources).
pub(crate) fn load_err(dir: &Path) -> String {
    crs_testkit::imageset::error_text(&load(dir).expect_err("the set is refused"))
}
