//! Errors of the image layer. Each names the image and the byte offset.

use thiserror::Error;

/// An image could not be read or written.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("{image}: file is {len} bytes, too short for an image header")]
    NoHeader { image: String, len: usize },
    #[error("{image}: unknown magic {found:#010x} at offset {offset}")]
    BadMagic {
        image: String,
        found: u32,
        offset: usize,
    },
    #[error(
        "{image}: first magic {found:#010x} does not match {magic} (expected {expected:#010x})"
    )]
    WrongFirstMagic {
        image: String,
        magic: &'static str,
        found: u32,
        expected: u32,
    },
    #[error("{image}: expected a {expected} image, found {found}")]
    WrongImage {
        image: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error(
        "{image}: entry {entry} at offset {offset}: length field truncated ({have} of 4 bytes)"
    )]
    TruncatedLength {
        image: String,
        entry: usize,
        offset: usize,
        have: usize,
    },
    #[error("{image}: entry {entry} at offset {offset}: {size} bytes claimed, {remaining} left in the file")]
    EntryTooLarge {
        image: String,
        entry: usize,
        offset: usize,
        size: u64,
        remaining: usize,
    },
    #[error("{image}: entry {entry} at offset {offset}: payload of {size} bytes claimed, {remaining} left in the file")]
    PayloadTooLarge {
        image: String,
        entry: usize,
        offset: usize,
        size: u64,
        remaining: usize,
    },
    #[error("{image}: entry {entry} at offset {offset}: cannot decode {message}")]
    Decode {
        image: String,
        entry: usize,
        offset: usize,
        message: String,
        #[source]
        source: protobuf::Error,
    },
    #[error("{image}: entry {entry} at offset {offset}: malformed {message}")]
    Wire {
        image: String,
        entry: usize,
        offset: usize,
        message: String,
        #[source]
        source: crate::wire::WireError,
    },
    #[error("{image}: entry {entry}: cannot encode {message}")]
    Encode {
        image: String,
        entry: usize,
        message: String,
        #[source]
        source: protobuf::Error,
    },
    #[error("{image}: entry {entry} at offset {offset}: {what}")]
    Invalid {
        image: String,
        entry: usize,
        offset: usize,
        what: String,
    },
    #[error("{image}: no decoder for {magic} images")]
    NoHandler { image: String, magic: &'static str },
    #[error("{image}: {what} is a raw image ({kind}) with no entries to decode")]
    RawImage {
        image: String,
        what: String,
        kind: &'static str,
    },
    #[error("{image}: JSON {path}: {what}")]
    Json {
        image: String,
        path: String,
        what: String,
    },
    #[error("{image}: I/O")]
    Io {
        image: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result of the image layer.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
