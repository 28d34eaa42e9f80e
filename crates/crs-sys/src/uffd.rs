//! userfaultfd write-protection in async mode, for dumps that copy only what was written
//! since the last one: the tracked memory's pages are write-protected; a write clears the
//! protection of its page without any fault handler (`UFFD_FEATURE_WP_ASYNC`); the
//! `PAGEMAP_SCAN` ioctl then reports which pages were written (`PAGE_IS_WRITTEN`) and can
//! protect them again (`PM_SCAN_WP_MATCHING`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::cvt;

/// `UFFD_API`.
const API: u64 = 0xaa;
/// `_IOWR(0xAA, 0x3F, struct uffdio_api)`.
const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
/// `_IOWR(0xAA, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: libc::c_ulong = 0xc020_aa00;
/// `_IOWR(0xAA, 0x06, struct uffdio_writeprotect)`.
const UFFDIO_WRITEPROTECT: libc::c_ulong = 0xc018_aa06;
/// `UFFDIO_REGISTER_MODE_WP`.
const REGISTER_MODE_WP: u64 = 1 << 1;
/// `UFFDIO_WRITEPROTECT_MODE_WP`.
const WRITEPROTECT_MODE_WP: u64 = 1 << 0;

/// `UFFD_FEATURE_WP_ASYNC`: a write to a protected page unprotects it, no fault handler.
pub const FEATURE_WP_ASYNC: u64 = 1 << 15;
/// `UFFD_FEATURE_WP_UNPOPULATED`: protection covers pages not populated yet.
pub const FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
/// `UFFD_USER_MODE_ONLY`: the flag of userfaultfd(2) that lets an unprivileged task make
/// one (only faults from user mode are tracked, which is all write tracking needs).
pub const USER_MODE_ONLY: i32 = 1;

/// `UFFD_FEATURE_EVENT_FORK`: a fork of a process with registered memory is reported,
/// with a new userfaultfd for the child.
pub const FEATURE_EVENT_FORK: u64 = 1 << 1;
/// `UFFD_FEATURE_EVENT_REMAP`: mremap of registered memory is reported.
pub const FEATURE_EVENT_REMAP: u64 = 1 << 2;
/// `UFFD_FEATURE_EVENT_REMOVE`: MADV_DONTNEED/REMOVE of registered memory is reported.
pub const FEATURE_EVENT_REMOVE: u64 = 1 << 3;
/// `UFFD_FEATURE_EVENT_UNMAP`: munmap of registered memory is reported.
pub const FEATURE_EVENT_UNMAP: u64 = 1 << 6;

/// What a userfaultfd reports (`struct uffd_msg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A thread faulted at `address`; `wp`: on a write-protected page (it waits until the
    /// page is unprotected).
    PageFault { address: u64, wp: bool },
    /// Memory `[start, end)` was unmapped or discarded (munmap, MADV_DONTNEED, ...).
    Removed { start: u64, end: u64 },
    /// Memory moved by mremap.
    Remapped { from: u64, to: u64, len: u64 },
    /// A fork: the child's userfaultfd, installed in the reader's fd table.
    Fork { ufd: i32 },
    /// Another event, by its number.
    Other(u8),
}

const EVENT_PAGEFAULT: u8 = 0x12;
const EVENT_FORK: u8 = 0x13;
const EVENT_REMAP: u8 = 0x14;
const EVENT_REMOVE: u8 = 0x15;
const EVENT_UNMAP: u8 = 0x16;
const PAGEFAULT_FLAG_WP: u64 = 1 << 1;

/// Parses one 32-byte `uffd_msg`.
pub fn parse_event(m: &[u8; 32]) -> Event {
    let u = |o: usize| u64::from_ne_bytes(m[o..o + 8].try_into().expect("8 bytes"));
    match m[0] {
        EVENT_PAGEFAULT => Event::PageFault {
            address: u(16),
            wp: u(8) & PAGEFAULT_FLAG_WP != 0,
        },
        EVENT_REMOVE | EVENT_UNMAP => Event::Removed {
            start: u(8),
            end: u(16),
        },
        EVENT_REMAP => Event::Remapped {
            from: u(8),
            to: u(16),
            len: u(24),
        },
        EVENT_FORK => Event::Fork {
            ufd: u32::from_ne_bytes(m[8..12].try_into().expect("4 bytes")) as i32,
        },
        other => Event::Other(other),
    }
}

/// Reads the events waiting on `uffd` (opened O_NONBLOCK) into `out`; none is EAGAIN's
/// empty result.
pub fn read_events(uffd: BorrowedFd<'_>, out: &mut Vec<Event>) -> io::Result<()> {
    let mut buf = [0u8; 32 * 16];
    // SAFETY: read(2) writes at most `buf.len()` bytes into `buf`, a live exclusive local;
    // the fd is borrowed.
    let n = unsafe { libc::read(uffd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    let n = match cvt(n as libc::c_long) {
        Ok(n) => n as usize,
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Ok(()),
        Err(e) => return Err(e),
    };
    for m in buf[..n].chunks_exact(32) {
        out.push(parse_event(m.try_into().expect("32 bytes")));
    }
    Ok(())
}

#[repr(C)]
struct Api {
    api: u64,
    features: u64,
    ioctls: u64,
}

#[repr(C)]
struct Range {
    start: u64,
    len: u64,
}

#[repr(C)]
struct Register {
    range: Range,
    mode: u64,
    ioctls: u64,
}

#[repr(C)]
struct WriteProtect {
    range: Range,
    mode: u64,
}

/// The API handshake asking for `features`; returns the features the kernel enabled.
pub fn api(uffd: BorrowedFd<'_>, features: u64) -> io::Result<u64> {
    let mut a = Api {
        api: API,
        features,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_API reads and writes one uffdio_api at the pointer, which points at
    // `a`, a live exclusive local of the kernel's layout; the fd is borrowed.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_API, &mut a as *mut Api) };
    cvt(ret.into())?;
    Ok(a.features)
}

/// Registers `[start, start + len)` of the userfaultfd's address space for
/// write-protection.
pub fn register_wp(uffd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<()> {
    let mut r = Register {
        range: Range { start, len },
        mode: REGISTER_MODE_WP,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_REGISTER reads and writes one uffdio_register at the pointer, which
    // points at `r`, a live exclusive local of the kernel's layout; the fd is borrowed.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_REGISTER, &mut r as *mut Register) };
    cvt(ret.into())?;
    Ok(())
}

/// `_IOWR(0xAA, 0x03, struct uffdio_copy)`.
const UFFDIO_COPY: libc::c_ulong = 0xc028_aa03;
/// `_IOWR(0xAA, 0x04, struct uffdio_zeropage)`.
const UFFDIO_ZEROPAGE: libc::c_ulong = 0xc020_aa04;
/// `UFFDIO_REGISTER_MODE_MISSING`.
const REGISTER_MODE_MISSING: u64 = 1 << 0;

/// Registers `[start, start + len)` for missing-page faults (lazy restore).
pub fn register_missing(uffd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<()> {
    let mut r = Register {
        range: Range { start, len },
        mode: REGISTER_MODE_MISSING,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_REGISTER reads and writes one uffdio_register at the pointer, which
    // points at `r`, a live exclusive local of the kernel's layout; the fd is borrowed.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_REGISTER, &mut r as *mut Register) };
    cvt(ret.into())?;
    Ok(())
}

#[repr(C)]
struct Copy {
    dst: u64,
    src: u64,
    len: u64,
    mode: u64,
    copy: i64,
}

/// Fills the missing pages at `dst` with `data` (whole pages) and wakes the threads
/// waiting on them. EEXIST: a page there is present already.
pub fn copy(uffd: BorrowedFd<'_>, dst: u64, data: &[u8]) -> io::Result<()> {
    let mut c = Copy {
        dst,
        src: data.as_ptr() as usize as u64,
        len: data.len() as u64,
        mode: 0,
        copy: 0,
    };
    // SAFETY: UFFDIO_COPY reads `len` bytes at `src`, which is `data`, borrowed for the
    // call, and writes the uffdio_copy at the pointer, `c`, a live exclusive local.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_COPY, &mut c as *mut Copy) };
    cvt(ret.into())?;
    Ok(())
}

#[repr(C)]
struct ZeroPage {
    range: Range,
    mode: u64,
    zeropage: i64,
}

/// Fills the missing pages of `[start, start + len)` with zeros and wakes their waiters.
pub fn zeropage(uffd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<()> {
    let mut z = ZeroPage {
        range: Range { start, len },
        mode: 0,
        zeropage: 0,
    };
    // SAFETY: UFFDIO_ZEROPAGE reads and writes one uffdio_zeropage at the pointer, `z`, a
    // live exclusive local of the kernel's layout; the fd is borrowed.
    let ret = unsafe { libc::ioctl(uffd.as_raw_fd(), UFFDIO_ZEROPAGE, &mut z as *mut ZeroPage) };
    cvt(ret.into())?;
    Ok(())
}

/// Write-protects (`on`) or unprotects `[start, start + len)`, which must be registered.
pub fn write_protect(uffd: BorrowedFd<'_>, start: u64, len: u64, on: bool) -> io::Result<()> {
    let mut w = WriteProtect {
        range: Range { start, len },
        mode: if on { WRITEPROTECT_MODE_WP } else { 0 },
    };
    // SAFETY: UFFDIO_WRITEPROTECT reads one uffdio_writeprotect at the pointer, which points
    // at `w`, a live exclusive local of the kernel's layout; the fd is borrowed.
    let ret = unsafe {
        libc::ioctl(
            uffd.as_raw_fd(),
            UFFDIO_WRITEPROTECT,
            &mut w as *mut WriteProtect,
        )
    };
    cvt(ret.into())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_from_uffd_msg_bytes() {
        let mut m = [0u8; 32];
        m[0] = EVENT_PAGEFAULT;
        m[8..16].copy_from_slice(&PAGEFAULT_FLAG_WP.to_ne_bytes());
        m[16..24].copy_from_slice(&0x7f00_1000u64.to_ne_bytes());
        assert_eq!(
            parse_event(&m),
            Event::PageFault {
                address: 0x7f00_1000,
                wp: true
            }
        );
        m[0] = EVENT_UNMAP;
        m[8..16].copy_from_slice(&0x1000u64.to_ne_bytes());
        m[16..24].copy_from_slice(&0x3000u64.to_ne_bytes());
        assert_eq!(
            parse_event(&m),
            Event::Removed {
                start: 0x1000,
                end: 0x3000
            }
        );
        m[0] = EVENT_FORK;
        m[8..12].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(parse_event(&m), Event::Fork { ufd: 7 });
        m[0] = 0x17;
        assert_eq!(parse_event(&m), Event::Other(0x17));
    }
    use crate::dump::{page_is, pagemap_scan_flags, PageRegion, ScanQuery, SCAN_WP_MATCHING};
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    #[test]
    fn written_pages_are_reported_and_protected_again() {
        // SAFETY: userfaultfd takes flags and returns a new descriptor or -1.
        let raw = unsafe {
            libc::syscall(
                libc::SYS_userfaultfd,
                libc::O_CLOEXEC | libc::O_NONBLOCK | USER_MODE_ONLY,
            )
        };
        assert!(raw >= 0, "userfaultfd: {}", io::Error::last_os_error());
        // SAFETY: `raw` is a new descriptor nothing else owns.
        let uffd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let got = api(uffd.as_fd(), FEATURE_WP_ASYNC).expect("UFFDIO_API");
        assert_ne!(got & FEATURE_WP_ASYNC, 0);
        let len = 8 * 4096usize;
        // SAFETY: a fresh private anonymous mapping of `len` bytes, unmapped below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let start = p as u64;
        // SAFETY: the mapping is `len` bytes long and ours; every page gets written once.
        unsafe { std::ptr::write_bytes(p.cast::<u8>(), 1, len) };
        register_wp(uffd.as_fd(), start, len as u64).expect("register");
        write_protect(uffd.as_fd(), start, len as u64, true).expect("protect");
        // SAFETY: pages 2 and 5 of the mapping, which is ours.
        unsafe {
            *p.cast::<u8>().add(2 * 4096) = 7;
            *p.cast::<u8>().add(5 * 4096 + 10) = 7;
        }
        let pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
        let q = ScanQuery {
            category_mask: page_is::WRITTEN,
            return_mask: page_is::WRITTEN,
            ..Default::default()
        };
        let mut out = [PageRegion::default(); 16];
        let end = start + len as u64;
        let (n, _) =
            pagemap_scan_flags(pagemap.as_fd(), start, end, &q, SCAN_WP_MATCHING, &mut out)
                .expect("scan");
        let written: Vec<(u64, u64)> = out[..n]
            .iter()
            .map(|r| ((r.start - start) / 4096, (r.end - start) / 4096))
            .collect();
        assert_eq!(written, vec![(2, 3), (5, 6)]);
        // Protected again by the scan: nothing written since.
        let (n, _) = pagemap_scan_flags(pagemap.as_fd(), start, end, &q, 0, &mut out).unwrap();
        assert_eq!(n, 0);
        // SAFETY: unmapping the mapping made above, no longer used.
        unsafe { libc::munmap(p, len) };
    }
}
