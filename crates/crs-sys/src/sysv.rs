//! SysV shared memory segments: their attributes (`shmctl`), creation with a chosen id,
//! and an fd on a segment's shmem file, to read or fill it with pread/pwrite.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;

/// What `shmctl(IPC_STAT)` says of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShmStat {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    /// Permission bits plus SHM_DEST / SHM_LOCKED.
    pub mode: u32,
    pub size: u64,
    /// Attaches (mappings) right now.
    pub nattch: u64,
}

/// SHM_DEST in `mode`: the segment goes when its last attach does (IPC_RMID was called).
pub const SHM_DEST: u32 = 0o1000;

fn stat_raw(id: i32) -> io::Result<libc::shmid_ds> {
    // SAFETY: shmid_ds is plain integers; all-zero is a valid value.
    let mut ds: libc::shmid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one shmid_ds into `ds`, which lives across the call.
    let ret = unsafe { libc::shmctl(id, libc::IPC_STAT, &mut ds) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ds)
}

/// `shmctl(id, IPC_STAT)`.
pub fn shm_stat(id: i32) -> io::Result<ShmStat> {
    let ds = stat_raw(id)?;
    Ok(ShmStat {
        key: ds.shm_perm.__key,
        uid: ds.shm_perm.uid,
        gid: ds.shm_perm.gid,
        cuid: ds.shm_perm.cuid,
        cgid: ds.shm_perm.cgid,
        mode: u32::from(ds.shm_perm.mode),
        size: ds.shm_segsz as u64,
        nattch: ds.shm_nattch,
    })
}

/// `shmget(key, size, flags)`: the id of the segment.
pub fn shm_get(key: i32, size: u64, flags: i32) -> io::Result<i32> {
    // SAFETY: shmget takes integers only.
    let id = unsafe { libc::shmget(key, size as usize, flags) };
    if id < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(id)
}

/// `shmctl(id, IPC_SET)` of owner and permission bits.
pub fn shm_set_owner(id: i32, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    let mut ds = stat_raw(id)?;
    ds.shm_perm.uid = uid;
    ds.shm_perm.gid = gid;
    ds.shm_perm.mode = (mode & 0o777) as _;
    // SAFETY: IPC_SET reads one shmid_ds from `ds`, which lives across the call.
    if unsafe { libc::shmctl(id, libc::IPC_SET, &mut ds) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `shmctl(id, IPC_RMID)`: the segment goes when its last attach does.
pub fn shm_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID reads no buffer; a null pointer is what the man page passes.
    if unsafe { libc::shmctl(id, libc::IPC_RMID, std::ptr::null_mut()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An fd (read-write, close-on-exec) on the shmem file of segment `id`, through a
/// short-lived attach of crs's own; the segment's attach count is back as it was on
/// return.
pub fn shm_file(id: i32) -> io::Result<File> {
    let size = stat_raw(id)?.shm_segsz;
    // SAFETY: attaching at an address the kernel chooses replaces no memory of ours;
    // nothing dereferences it and it is detached below before returning.
    let addr = unsafe { libc::shmat(id, std::ptr::null(), 0) };
    if addr as isize == -1 {
        return Err(io::Error::last_os_error());
    }
    let start = addr as usize;
    let end = start + size.div_ceil(4096) * 4096;
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(format!("/proc/self/map_files/{start:x}-{end:x}"));
    // SAFETY: exactly the attach made above, which no reference points into.
    let detached = unsafe { libc::shmdt(addr) };
    let file = opened?;
    if detached != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn shm_file_reads_and_writes_the_segment() {
        let id = shm_get(libc::IPC_PRIVATE, 3 * 4096, libc::IPC_CREAT | 0o600).unwrap();
        let f = shm_file(id).unwrap();
        f.write_all_at(b"sysv", 4096 + 7).unwrap();
        let g = shm_file(id).unwrap();
        let mut b = [0u8; 4];
        g.read_exact_at(&mut b, 4096 + 7).unwrap();
        let st = shm_stat(id).unwrap();
        shm_remove(id).unwrap();
        assert_eq!(&b, b"sysv");
        assert_eq!(st.size, 3 * 4096);
        assert_eq!(st.nattch, 0);
        assert_eq!(st.mode & 0o777, 0o600);
    }
}
