//! Shared helpers for the integration tests: process guards, workload discovery,
//! reference-image locations.

use std::path::PathBuf;

pub mod process;

/// The shared/ directory that sits beside the repository (CI puts a copy there).
/// `CRS_SHARED` overrides it.
pub fn shared_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CRS_SHARED") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared")
}

/// The CRIU 4.2 reference image sets (`simple`, `tree`, `tcp`, `shell`, `container`).
///
/// # Panics
/// When the directory is missing: the compatibility tests cannot run without it,
/// and a silent pass would hide that.
pub fn reference_sets() -> Vec<PathBuf> {
    let root = shared_dir().join("criu-images");
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reference images not found at {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("inventory.img").exists())
        .collect();
    sets.sort();
    sets
}
