//! compel: seize a live process tree, read/write its state, run syscalls inside its tasks.
#![deny(unsafe_op_in_unsafe_fn)]
