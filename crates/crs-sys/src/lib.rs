//! Thin unsafe layer: raw syscalls and ioctls that nix/libc lack.
//!
//! Every function here is a small, typed wrapper around one kernel interface. Addresses in
//! another process are [`RemoteAddr`], never pointers; file descriptors are `OwnedFd`.
//! Errors are plain `std::io::Error` (the errno); callers add context.
#![deny(unsafe_op_in_unsafe_fn)]

pub mod dump;
pub mod fault;
pub mod fhandle;
pub mod futex;
pub mod inetsk;
pub mod inherited;
pub mod net;
pub mod netlock;
pub mod nlsk;
pub mod ns;
pub mod packetsk;
pub mod pidfd;
pub mod pipe;
pub mod probe;
pub mod ptrace;
pub mod remote;
pub mod restore;
pub mod rtnl;
pub mod sched;
pub mod seccomp;
pub mod shmem;
pub mod sysv;
pub mod tcp_repair;
pub mod time;
pub mod tty;
pub mod uffd;
pub mod unixsk;
#[cfg(target_arch = "x86_64")]
pub mod x86;

pub use remote::RemoteAddr;

/// A thread or process id as the kernel sees it (in crs's pid namespace).
pub type Tid = libc::pid_t;

/// Turns a `-1 and errno` return into an `io::Result`.
pub(crate) fn cvt(ret: libc::c_long) -> std::io::Result<libc::c_long> {
    if ret == -1 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}
