//! Memory of another process: addresses and `process_vm_readv`/`process_vm_writev`.

use std::fmt;
use std::io;

use crate::{cvt, Tid};

/// An address inside another process. Never dereferenced by crs.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RemoteAddr(pub u64);

impl RemoteAddr {
    /// The null address.
    pub const NULL: RemoteAddr = RemoteAddr(0);

    /// This address plus `off` bytes, or `None` on overflow.
    pub fn checked_add(self, off: u64) -> Option<RemoteAddr> {
        self.0.checked_add(off).map(RemoteAddr)
    }

    /// The raw value, as passed in a syscall argument register.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Debug for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteAddr({:#x})", self.0)
    }
}

impl fmt::Display for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

impl fmt::LowerHex for RemoteAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::LowerHex::fmt(&self.0, f)
    }
}

/// One range of remote memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteRange {
    pub addr: RemoteAddr,
    pub len: usize,
}

/// The most iovecs the kernel accepts in one `process_vm_readv`/`writev` call (IOV_MAX).
pub const IOV_MAX: usize = 1024;

fn to_remote_iovecs(remote: &[RemoteRange]) -> io::Result<Vec<libc::iovec>> {
    if remote.len() > IOV_MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    Ok(remote
        .iter()
        .map(|r| libc::iovec {
            // The kernel only interprets this value as an address in the target process;
            // it is never dereferenced in ours.
            iov_base: r.addr.0 as usize as *mut libc::c_void,
            iov_len: r.len,
        })
        .collect())
}

/// Reads the remote ranges of `pid` into `local`, in order, as one `process_vm_readv` call.
/// Returns the number of bytes read, which may be short (the kernel stops at the first
/// range it cannot read).
pub fn process_vm_readv(
    pid: Tid,
    local: &mut [io::IoSliceMut<'_>],
    remote: &[RemoteRange],
) -> io::Result<usize> {
    if local.len() > IOV_MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let riov = to_remote_iovecs(remote)?;
    // SAFETY: `IoSliceMut` is ABI-compatible with `struct iovec` (std guarantees it on unix);
    // each local slice is a live, exclusive buffer of its length, so the kernel writes only
    // memory we own. `riov` lives through the call with `riov.len()` entries of remote
    // addresses the kernel checks against the target's mappings. Both counts <= IOV_MAX.
    let ret = unsafe {
        libc::process_vm_readv(
            pid,
            local.as_mut_ptr().cast::<libc::iovec>(),
            local.len() as libc::c_ulong,
            riov.as_ptr(),
            riov.len() as libc::c_ulong,
            0,
        )
    };
    Ok(cvt(ret as libc::c_long)? as usize)
}

/// Writes `local` into the remote ranges of `pid` as one `process_vm_writev` call. Returns
/// the number of bytes written (possibly short).
pub fn process_vm_writev(
    pid: Tid,
    local: &[io::IoSlice<'_>],
    remote: &[RemoteRange],
) -> io::Result<usize> {
    if local.len() > IOV_MAX {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let riov = to_remote_iovecs(remote)?;
    // SAFETY: `IoSlice` is ABI-compatible with `struct iovec`; the kernel only reads the
    // local buffers, which are live shared borrows of the stated lengths. `riov` is valid for
    // its length during the call and holds addresses the kernel checks in the target.
    let ret = unsafe {
        libc::process_vm_writev(
            pid,
            local.as_ptr().cast::<libc::iovec>(),
            local.len() as libc::c_ulong,
            riov.as_ptr(),
            riov.len() as libc::c_ulong,
            0,
        )
    };
    Ok(cvt(ret as libc::c_long)? as usize)
}

/// Reads exactly `buf.len()` bytes at `addr` of `pid`; a short read is `EFAULT`.
pub fn read_exact(pid: Tid, addr: RemoteAddr, buf: &mut [u8]) -> io::Result<()> {
    let len = buf.len();
    if len == 0 {
        return Ok(());
    }
    let n = process_vm_readv(
        pid,
        &mut [io::IoSliceMut::new(buf)],
        &[RemoteRange { addr, len }],
    )?;
    if n != len {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(())
}

/// Writes all of `buf` at `addr` of `pid`; a short write is `EFAULT`.
pub fn write_all(pid: Tid, addr: RemoteAddr, buf: &[u8]) -> io::Result<()> {
    let len = buf.len();
    if len == 0 {
        return Ok(());
    }
    let n = process_vm_writev(pid, &[io::IoSlice::new(buf)], &[RemoteRange { addr, len }])?;
    if n != len {
        return Err(io::Error::from_raw_os_error(libc::EFAULT));
    }
    Ok(())
}
