//! CRIU image format: wire-compatible message definitions, image framing and
//! magics, bounded readers, and crit-compatible JSON.
#![forbid(unsafe_code)]

/// Generated protobuf code, one module per `.proto` file.
pub mod pb {
    #![allow(
        clippy::all,
        unused_imports,
        non_camel_case_types,
        non_snake_case,
        non_upper_case_globals
    )]
    include!(concat!(env!("OUT_DIR"), "/pb/mod.rs"));
}

pub mod checksums;
pub mod codec;
pub mod error;
pub mod explore;
pub mod frame;
pub mod json;
pub mod magic;
pub mod registry;
pub mod textcodec;
pub mod wire;

pub use error::{ImageError, Result};
