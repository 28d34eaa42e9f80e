//! Shared helpers for the benches, and the parts of the `dumprestore` bench that can be
//! tested on their own.

pub mod heartbeat;
pub mod limit;

use std::path::PathBuf;

/// A file of one of the CRIU 4.2 reference image sets in `shared/criu-images`
/// beside the repository (`CRS_SHARED` overrides the shared directory).
pub fn reference_image(set: &str, name: &str) -> PathBuf {
    crs_testkit::criu_images().join(set).join(name)
}
