//! Thin unsafe layer: raw syscalls and ioctls that nix/libc lack.
#![deny(unsafe_op_in_unsafe_fn)]
