//! Shared helpers for the benches.

use std::path::PathBuf;

/// A file of one of the CRIU 4.2 reference image sets in `shared/criu-images`
/// beside the repository (`CRS_SHARED` overrides the shared directory).
pub fn reference_image(set: &str, name: &str) -> PathBuf {
    let shared = std::env::var_os("CRS_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    shared.join("criu-images").join(set).join(name)
}
