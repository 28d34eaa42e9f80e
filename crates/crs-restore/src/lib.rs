//! Reads CRIU images and rebuilds the process tree.
#![forbid(unsafe_code)]
