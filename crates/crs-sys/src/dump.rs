//! Kernel interfaces the dumper needs that nix/libc lack: the `PAGEMAP_SCAN` ioctl, `kcmp`,
//! the owner of a file (`F_GETOWN_EX`, `F_GETSIG`) and its lease (`F_GETLEASE`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::{cvt, Tid};

/// Page categories of `PAGEMAP_SCAN` (linux/fs.h `PAGE_IS_*`).
pub mod page_is {
    pub const WPALLOWED: u64 = 1 << 0;
    pub const WRITTEN: u64 = 1 << 1;
    pub const FILE: u64 = 1 << 2;
    pub const PRESENT: u64 = 1 << 3;
    pub const SWAPPED: u64 = 1 << 4;
    pub const PFNZERO: u64 = 1 << 5;
    pub const HUGE: u64 = 1 << 6;
    pub const SOFT_DIRTY: u64 = 1 << 7;
    pub const GUARD: u64 = 1 << 8;
}

/// One region `PAGEMAP_SCAN` reports (`struct page_region`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageRegion {
    pub start: u64,
    pub end: u64,
    pub categories: u64,
}

/// `struct pm_scan_arg`.
#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;

/// What a `PAGEMAP_SCAN` call looks for (see the kernel's pagemap documentation): a page
/// matches when `(categories ^ inverted) & mask == mask` and, if `anyof` is not zero,
/// `(categories ^ inverted) & anyof != 0`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ScanQuery {
    pub category_inverted: u64,
    pub category_mask: u64,
    pub category_anyof_mask: u64,
    pub return_mask: u64,
}

/// `PM_SCAN_WP_MATCHING`: write-protect (userfaultfd, async mode) the matching pages.
pub const SCAN_WP_MATCHING: u64 = 1 << 0;

/// One `PAGEMAP_SCAN` ioctl on an open `/proc/PID/pagemap` over `[start, end)`. Fills `out`
/// with matching regions and returns how many, and the address where the walk stopped
/// (`end` when the whole range was walked).
pub fn pagemap_scan(
    pagemap: BorrowedFd<'_>,
    start: u64,
    end: u64,
    query: &ScanQuery,
    out: &mut [PageRegion],
) -> io::Result<(usize, u64)> {
    pagemap_scan_flags(pagemap, start, end, query, 0, out)
}

/// [`pagemap_scan`] with `flags` (`SCAN_WP_MATCHING`: the matching pages of memory
/// registered for userfaultfd write-protection are protected again).
pub fn pagemap_scan_flags(
    pagemap: BorrowedFd<'_>,
    start: u64,
    end: u64,
    query: &ScanQuery,
    flags: u64,
    out: &mut [PageRegion],
) -> io::Result<(usize, u64)> {
    let mut arg = PmScanArg {
        size: std::mem::size_of::<PmScanArg>() as u64,
        flags,
        start,
        end,
        walk_end: 0,
        vec: out.as_mut_ptr() as usize as u64,
        vec_len: out.len() as u64,
        max_pages: 0,
        category_inverted: query.category_inverted,
        category_mask: query.category_mask,
        category_anyof_mask: query.category_anyof_mask,
        return_mask: query.return_mask,
    };
    // SAFETY: `arg` is a live, exclusive pm_scan_arg whose `size` is its own size; its `vec`
    // points at `out`, a live exclusive array of `vec_len` repr(C) page_regions (the kernel's
    // layout) of which the kernel writes at most `vec_len`. Both outlive the call. With
    // SCAN_WP_MATCHING the kernel write-protects the matching pages of the target (only in
    // memory registered for userfaultfd write-protection); nothing else is changed.
    let ret = unsafe {
        libc::ioctl(
            pagemap.as_raw_fd(),
            PAGEMAP_SCAN as _,
            &mut arg as *mut PmScanArg,
        )
    };
    let n = cvt(ret as libc::c_long)? as usize;
    Ok((n.min(out.len()), arg.walk_end))
}

/// `kcmp` types.
pub mod kcmp_type {
    pub const FILE: i32 = 0;
    pub const VM: i32 = 1;
    pub const FILES: i32 = 2;
    pub const FS: i32 = 3;
    pub const SIGHAND: i32 = 4;
}

/// `kcmp(pid1, pid2, type, idx1, idx2)`: 0 when the two objects are the same, 1 or 2 for an
/// ordering of different objects, 3 when they differ and cannot be ordered.
pub fn kcmp(pid1: Tid, pid2: Tid, kind: i32, idx1: u64, idx2: u64) -> io::Result<i32> {
    // SAFETY: every kcmp type used here (FILE, VM, FILES, FS, SIGHAND) takes integers only;
    // no memory of ours is read or written.
    let ret = unsafe { libc::syscall(libc::SYS_kcmp, pid1, pid2, kind, idx1, idx2) };
    Ok(cvt(ret)? as i32)
}

/// The owner of an open file, as `F_GETOWN_EX` and `F_GETSIG` report it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileOwner {
    /// F_OWNER_TID (0), F_OWNER_PID (1) or F_OWNER_PGRP (2).
    pub kind: i32,
    /// The owner's id, 0 when none.
    pub pid: i32,
    /// The signal sent on I/O readiness (0: SIGIO).
    pub signum: i32,
}

/// `struct f_owner_ex`.
#[repr(C)]
struct FOwnerEx {
    type_: i32,
    pid: i32,
}

const F_GETSIG: i32 = 11;
const F_GETOWN_EX: i32 = 16;

/// Reads the owner of the open file behind `fd`.
pub fn file_owner(fd: BorrowedFd<'_>) -> io::Result<FileOwner> {
    let mut owner = FOwnerEx { type_: 0, pid: 0 };
    // SAFETY: F_GETOWN_EX writes one f_owner_ex into the live, exclusively borrowed `owner`.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETOWN_EX, &mut owner as *mut FOwnerEx) };
    cvt(ret as libc::c_long)?;
    // SAFETY: F_GETSIG takes no argument and touches no memory of ours.
    let sig = unsafe { libc::fcntl(fd.as_raw_fd(), F_GETSIG) };
    let signum = cvt(sig as libc::c_long)? as i32;
    Ok(FileOwner {
        kind: owner.type_,
        pid: owner.pid,
        signum,
    })
}

/// The lease held through the open file behind `fd`, as `F_GETLEASE` reports it:
/// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`. For a lease being broken it is the type the lease
/// will have once the break is done (`F_RDLCK` for a downgrade, `F_UNLCK` for a removal).
pub fn lease_type(fd: BorrowedFd<'_>) -> io::Result<i32> {
    // SAFETY: F_GETLEASE takes no argument and touches no memory of ours; `fd` is a live
    // borrowed descriptor.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETLEASE) };
    Ok(cvt(ret as libc::c_long)? as i32)
}

/// `PTRACE_GET_THREAD_AREA`: the GDT TLS descriptor `index` of stopped tracee `tid`, as
/// `struct user_desc` words (entry_number, base_addr, limit, flag bits).
pub fn get_thread_area(tid: Tid, index: u32) -> io::Result<[u32; 4]> {
    const PTRACE_GET_THREAD_AREA: libc::c_uint = 25;
    let mut desc = [0u32; 4];
    // SAFETY: the request writes one 16-byte struct user_desc to `data`, which points at
    // `desc`, a live exclusively borrowed [u32; 4] of exactly that size; `addr` is an integer.
    let ret = unsafe {
        libc::ptrace(
            PTRACE_GET_THREAD_AREA,
            tid,
            index as usize as *mut libc::c_void,
            desc.as_mut_ptr() as *mut libc::c_void,
        )
    };
    cvt(ret)?;
    Ok(desc)
}
