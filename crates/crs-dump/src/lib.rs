//! Walks a frozen tree and writes CRIU images.
#![forbid(unsafe_code)]
