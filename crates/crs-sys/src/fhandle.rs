//! File handles: `open_by_handle_at`, to reach the inode an inotify watch names.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use crate::cvt;

/// `MAX_HANDLE_SZ`: the largest `f_handle` the kernel encodes or accepts.
pub const MAX_HANDLE_SZ: usize = 128;

/// `open_by_handle_at(mount_fd, handle, flags)`: opens the inode that file handle
/// (`handle_type`, `handle`) names on the file system `mount_fd` is on (`mount_fd` must
/// not be an O_PATH descriptor: EBADF). Needs CAP_DAC_READ_SEARCH. `handle` longer than [`MAX_HANDLE_SZ`] is EINVAL without a call.
pub fn open_by_handle_at(
    mount_fd: BorrowedFd<'_>,
    handle_type: i32,
    handle: &[u8],
    flags: i32,
) -> io::Result<OwnedFd> {
    if handle.len() > MAX_HANDLE_SZ {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // struct file_handle { u32 handle_bytes; i32 handle_type; u8 f_handle[]; }, built in
    // u32 words so the header fields are aligned.
    let mut buf = [0u32; 2 + MAX_HANDLE_SZ / 4];
    buf[0] = handle.len() as u32;
    buf[1] = handle_type as u32;
    for (i, b) in handle.iter().enumerate() {
        let w = &mut buf[2 + i / 4];
        let mut bytes = w.to_ne_bytes();
        bytes[i % 4] = *b;
        *w = u32::from_ne_bytes(bytes);
    }
    // SAFETY: `buf` is a live, 4-byte aligned local array of 8 + MAX_HANDLE_SZ bytes that
    // holds a struct file_handle whose handle_bytes (at most MAX_HANDLE_SZ, checked above)
    // covers only bytes inside it; the kernel only reads it during the call. `mount_fd` is
    // a live descriptor for the call; `flags` is an integer.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_open_by_handle_at,
            mount_fd.as_raw_fd(),
            buf.as_mut_ptr(),
            flags,
        )
    };
    let fd = cvt(ret)? as RawFd;
    // SAFETY: on success the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn open_by_handle_at_handle_of_a_directory_opens_it() {
        use std::os::unix::fs::MetadataExt;
        let dir = std::env::temp_dir();
        let path = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        let mut buf = [0u32; 2 + MAX_HANDLE_SZ / 4];
        buf[0] = MAX_HANDLE_SZ as u32;
        let mut mnt_id = 0i32;
        // SAFETY: `path` is NUL-terminated and alive for the call; `buf` is a 4-byte
        // aligned struct file_handle whose handle_bytes says how much room follows the
        // header; `mnt_id` is a live i32. The kernel writes only inside them.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_name_to_handle_at,
                libc::AT_FDCWD,
                path.as_ptr(),
                buf.as_mut_ptr(),
                &mut mnt_id as *mut i32,
                0,
            )
        };
        if ret != 0 {
            crs_testkit::skip(
                "open_by_handle_at_handle_of_a_directory_opens_it",
                "no file handles on the temp dir's file system",
            );
            return;
        }
        let len = buf[0] as usize;
        let bytes: Vec<u8> = buf[2..]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .take(len)
            .collect();
        let mnt = std::fs::File::open(&dir).unwrap();
        let fd = open_by_handle_at(mnt.as_fd(), buf[1] as i32, &bytes, libc::O_PATH).unwrap();
        let got = std::fs::File::from(fd).metadata().unwrap();
        assert_eq!(got.ino(), std::fs::metadata(&dir).unwrap().ino());
    }

    #[test]
    fn open_by_handle_at_too_long_handle_is_einval() {
        let dir = std::fs::File::open("/").unwrap();
        let e =
            open_by_handle_at(dir.as_fd(), 1, &[0u8; MAX_HANDLE_SZ + 1], libc::O_PATH).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
