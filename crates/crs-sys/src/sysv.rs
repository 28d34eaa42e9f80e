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

/// The owner, key and mode of a SysV object (`ipc_perm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpcPerm {
    pub key: i32,
    pub uid: u32,
    pub gid: u32,
    pub cuid: u32,
    pub cgid: u32,
    pub mode: u32,
}

impl IpcPerm {
    fn of(p: &libc::ipc_perm) -> IpcPerm {
        IpcPerm {
            key: p.__key,
            uid: p.uid,
            gid: p.gid,
            cuid: p.cuid,
            cgid: p.cgid,
            mode: u32::from(p.mode),
        }
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn sem_stat_raw(id: i32) -> io::Result<libc::semid_ds> {
    // SAFETY: semid_ds is plain integers; all-zero is a valid value.
    let mut ds: libc::semid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one semid_ds through the pointer (the `arg.buf` of the union
    // semctl takes), which points at `ds`, alive across the call.
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_STAT, &mut ds as *mut libc::semid_ds) })?;
    Ok(ds)
}

/// `semctl(id, IPC_STAT)`: the set's owner and mode, and how many semaphores it has.
pub fn sem_stat(id: i32) -> io::Result<(IpcPerm, usize)> {
    let ds = sem_stat_raw(id)?;
    Ok((IpcPerm::of(&ds.sem_perm), ds.sem_nsems as usize))
}

/// `semctl(id, GETALL)`: the values of the set's `nsems` semaphores.
pub fn sem_values(id: i32, nsems: usize) -> io::Result<Vec<u16>> {
    let mut v = vec![0u16; nsems];
    // SAFETY: GETALL writes one unsigned short per semaphore of the set through the
    // pointer (`arg.array`); `v` holds `nsems` of them, the set's count just read, and a
    // set's size cannot change.
    cvt(unsafe { libc::semctl(id, 0, libc::GETALL, v.as_mut_ptr()) })?;
    Ok(v)
}

/// `semget(key, nsems, flags)`: the id of the set.
pub fn sem_get(key: i32, nsems: usize, flags: i32) -> io::Result<i32> {
    // SAFETY: semget takes integers only.
    cvt(unsafe { libc::semget(key, nsems as i32, flags) })
}

/// `semctl(id, SETALL)`: sets every semaphore of the set (`values` has one per semaphore).
pub fn sem_set_values(id: i32, values: &[u16]) -> io::Result<()> {
    let (_, nsems) = sem_stat(id)?;
    if values.len() != nsems {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} values for a set of {nsems}", values.len()),
        ));
    }
    // SAFETY: SETALL reads one unsigned short per semaphore of the set (`arg.array`);
    // `values` holds exactly that many (checked above) and lives across the call.
    cvt(unsafe { libc::semctl(id, 0, libc::SETALL, values.as_ptr()) })?;
    Ok(())
}

/// `semctl(id, IPC_SET)` of owner and permission bits.
pub fn sem_set_owner(id: i32, uid: u32, gid: u32, mode: u32) -> io::Result<()> {
    let mut ds = sem_stat_raw(id)?;
    ds.sem_perm.uid = uid;
    ds.sem_perm.gid = gid;
    ds.sem_perm.mode = (mode & 0o777) as _;
    // SAFETY: IPC_SET reads one semid_ds through the pointer, which points at `ds`.
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_SET, &mut ds as *mut libc::semid_ds) })?;
    Ok(())
}

fn msg_stat_raw(id: i32) -> io::Result<libc::msqid_ds> {
    // SAFETY: msqid_ds is plain integers; all-zero is a valid value.
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: IPC_STAT writes one msqid_ds into `ds`, which lives across the call.
    cvt(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(ds)
}

/// `msgctl(id, IPC_STAT)`: the queue's owner and mode, its byte limit and message count.
pub fn msg_stat(id: i32) -> io::Result<(IpcPerm, u64, u64)> {
    let ds = msg_stat_raw(id)?;
    Ok((IpcPerm::of(&ds.msg_perm), ds.msg_qbytes, ds.msg_qnum))
}

/// msgrcv's flag that copies the message at an index without taking it (kernels with
/// CONFIG_CHECKPOINT_RESTORE).
const MSG_COPY: i32 = 0o40000;

/// The message at `index` of queue `id` (type and text, at most `max` bytes), copied with
/// `MSG_COPY`: the queue is left as it was.
pub fn msg_copy(id: i32, index: u64, max: usize) -> io::Result<(i64, Vec<u8>)> {
    // struct msgbuf: a long type, then the text.
    let mut buf = vec![0u8; 8 + max];
    // SAFETY: msgrcv writes at most 8 + `max` bytes (the type and up to `max` bytes of
    // text) into `buf`, which has that many; with MSG_COPY the type argument is an index.
    let n = unsafe {
        libc::msgrcv(
            id,
            buf.as_mut_ptr().cast(),
            max,
            index as libc::c_long,
            MSG_COPY | libc::IPC_NOWAIT | libc::MSG_NOERROR,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mtype = i64::from_ne_bytes(buf[..8].try_into().expect("8 bytes"));
    buf.drain(..8);
    buf.truncate(n as usize);
    Ok((mtype, buf))
}

/// `msgget(key, flags)`: the id of the queue.
pub fn msg_get(key: i32, flags: i32) -> io::Result<i32> {
    // SAFETY: msgget takes integers only.
    cvt(unsafe { libc::msgget(key, flags) })
}

/// `msgsnd(id, {mtype, text}, IPC_NOWAIT)`.
pub fn msg_send(id: i32, mtype: i64, text: &[u8]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(8 + text.len());
    buf.extend_from_slice(&mtype.to_ne_bytes());
    buf.extend_from_slice(text);
    // SAFETY: msgsnd reads the type and `text.len()` bytes of text from `buf`, which holds
    // exactly those and lives across the call.
    cvt(unsafe { libc::msgsnd(id, buf.as_ptr().cast(), text.len(), libc::IPC_NOWAIT) })?;
    Ok(())
}

/// `msgctl(id, IPC_SET)` of owner, permission bits and the queue's byte limit.
pub fn msg_set(id: i32, uid: u32, gid: u32, mode: u32, qbytes: u64) -> io::Result<()> {
    let mut ds = msg_stat_raw(id)?;
    ds.msg_perm.uid = uid;
    ds.msg_perm.gid = gid;
    ds.msg_perm.mode = (mode & 0o777) as _;
    ds.msg_qbytes = qbytes;
    // SAFETY: IPC_SET reads one msqid_ds from `ds`, which lives across the call.
    cvt(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) })?;
    Ok(())
}

/// `semctl(id, IPC_RMID)`.
pub fn sem_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID reads no argument.
    cvt(unsafe { libc::semctl(id, 0, libc::IPC_RMID) })?;
    Ok(())
}

/// `msgctl(id, IPC_RMID)`.
pub fn msg_remove(id: i32) -> io::Result<()> {
    // SAFETY: IPC_RMID reads no buffer; a null pointer is what the man page passes.
    cvt(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) })?;
    Ok(())
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

    #[test]
    fn sem_values_set_and_read_back() {
        let id = sem_get(libc::IPC_PRIVATE, 3, libc::IPC_CREAT | 0o600).unwrap();
        let set = sem_set_values(id, &[4, 0, 32767]);
        let short = sem_set_values(id, &[1]);
        let got = sem_values(id, 3);
        let owner = sem_set_owner(id, 0, 0, 0o640);
        let st = sem_stat(id);
        sem_remove(id).unwrap();
        set.unwrap();
        assert_eq!(short.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(got.unwrap(), vec![4, 0, 32767]);
        owner.unwrap();
        let (perm, nsems) = st.unwrap();
        assert_eq!((perm.mode & 0o777, nsems), (0o640, 3));
    }

    #[test]
    fn msg_copy_leaves_the_queue_as_it_was() {
        let id = msg_get(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600).unwrap();
        let sent = msg_send(id, 7, b"first").and_then(|()| msg_send(id, 9, b""));
        let a = msg_copy(id, 0, 64);
        let b = msg_copy(id, 1, 64);
        let none = msg_copy(id, 2, 64);
        let set = msg_set(id, 0, 0, 0o600, 4096);
        let st = msg_stat(id);
        msg_remove(id).unwrap();
        sent.unwrap();
        match a {
            Ok(m) => {
                assert_eq!(m, (7, b"first".to_vec()));
                assert_eq!(b.unwrap(), (9, Vec::new()));
                assert_eq!(none.unwrap_err().raw_os_error(), Some(libc::ENOMSG));
            }
            // A kernel without CONFIG_CHECKPOINT_RESTORE.
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOSYS), "{e}"),
        }
        set.unwrap();
        let (_, qbytes, qnum) = st.unwrap();
        assert_eq!((qbytes, qnum), (4096, 2));
    }
}
