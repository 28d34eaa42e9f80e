//! Shared anonymous memory objects (what MAP_SHARED|MAP_ANONYMOUS creates), held by an fd.

use std::fs::OpenOptions;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;

/// Creates a shmem object of `len` bytes exactly as `mmap(MAP_SHARED|MAP_ANONYMOUS)` does
/// (the kernel names it "/dev/zero"), and returns an fd on it (read-write, close-on-exec).
/// The mapping used to create it is gone on return; the fd keeps the object alive.
pub fn anon_shared_object(len: usize) -> io::Result<OwnedFd> {
    if len == 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: a fresh mapping at an address the kernel chooses (no MAP_FIXED), so no
    // existing memory of this process is replaced; nothing dereferences it, and it is
    // unmapped below before the function returns.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    let start = addr as usize;
    let end = start + len.div_ceil(4096) * 4096;
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(format!("/proc/self/map_files/{start:x}-{end:x}"));
    // SAFETY: exactly the mapping created above, which no reference points into.
    let unmapped = unsafe { libc::munmap(addr, len) };
    let file = opened?;
    if unmapped != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::FileExt;

    #[test]
    fn anon_shared_object_sized_and_writable_through_fd() {
        let fd = anon_shared_object(3 * 4096).unwrap();
        let f = File::from(fd);
        assert_eq!(f.metadata().unwrap().len(), 3 * 4096);
        f.write_all_at(b"crs", 4096).unwrap();
        let mut b = [0u8; 3];
        f.read_exact_at(&mut b, 4096).unwrap();
        assert_eq!(&b, b"crs");
    }

    #[test]
    fn anon_shared_object_empty_is_einval() {
        let e = anon_shared_object(0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EINVAL));
    }
}
