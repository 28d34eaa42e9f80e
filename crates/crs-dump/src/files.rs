//! Files: regular files (open fds, mapped files, exe, cwd, root), character devices saved
//! as regular files like CRIU does, deleted files saved as ghost files, pipes, pidfds
//! (`pidfd`), and terminals (`tty`: ptys, `/dev/tty`, the console, virtual terminals).
//!
//! Every fd is taken out of the frozen task with pidfd_getfd and inspected from crs. The
//! task's own open file descriptions are never read from or seeked: a ghost file's
//! contents are read through a fresh open of `/proc/self/fd/N` (a new description), and a
//! pipe's queued bytes are duplicated with tee(2) into a pipe of crs's own, which does not
//! consume them.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crs_compel::{SeizedTree, Tid};
use crs_images::codec::ImageWriter;
use crs_images::pb::fdinfo::{Fd_types, Fdinfo_entry, File_entry};
use crs_images::pb::fown::Fown_entry;
use crs_images::pb::ghost_file::{Ghost_chunk_entry, Ghost_file_entry};
use crs_images::pb::memfd::Memfd_file_entry;
use crs_images::pb::pipe::Pipe_entry;
use crs_images::pb::pipe_data::Pipe_data_entry;
use crs_images::pb::regfile::Reg_file_entry;
use crs_images::pb::remap_file_path::{Remap_file_path_entry, Remap_type};
use crs_images::pb::time::Timeval;
use crs_proc::ProcDir;
use crs_sys::dump::{file_owner, kcmp, kcmp_type};
use protobuf::{EnumOrUnknown, MessageField};
use tracing::debug;

use crate::error::{compel_err, proc_err, DumpError, Result};
use crate::imgdir::ImageDir;

#[path = "anonfd.rs"]
mod anonfd;
#[path = "inetsk.rs"]
mod inetsk;
pub(crate) use inetsk::{dumped_connection, Repaired};
#[path = "locks.rs"]
mod locks;
#[path = "nlsk.rs"]
mod nlsk;
#[path = "packetsk.rs"]
mod packetsk;
#[path = "pidfd.rs"]
mod pidfd;
#[path = "tty.rs"]
mod tty;
#[path = "unixsk.rs"]
mod unixsk;

const DELETED_SUFFIX: &str = " (deleted)";
/// Ghost files at least this big are saved as chunks of data, holes skipped (CRIU's
/// GHOST_CHUNKS_THRESH).
const GHOST_CHUNKS_THRESH: u64 = 3 * 4096;
/// Largest ghost file (allocated bytes) that is saved by default: CRIU's default
/// `--ghost-limit` (see [`crate::DumpOptions::ghost_limit`]).
pub const GHOST_LIMIT: u64 = 1 << 20;

/// Identity of a file opened by path (mapped files, exe, cwd, root): the same inode opened
/// the same way is one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct SpecialKey {
    dev: u64,
    ino: u64,
    flags: u32,
}

/// An fd already dumped: (pid, fd, file id).
type DumpedFd = (i32, i32, u32);

/// Every file entry of a dump, and the ghost files they refer to.
pub(crate) struct FileTable {
    /// Largest ghost file saved (allocated bytes).
    ghost_limit: u64,
    next_id: u32,
    entries: Vec<File_entry>,
    special: HashMap<SpecialKey, u32>,
    next_ghost: u32,
    ghosts: HashMap<(u64, u64), u32>,
    remaps: Vec<Remap_file_path_entry>,
    ghost_images: Vec<ImageWriter>,
    /// Queued bytes of each pipe whose read end was dumped, in dump order.
    pipe_data: Vec<(Pipe_data_entry, Vec<u8>)>,
    /// Queued bytes of each FIFO (fifo-data.img), in dump order.
    fifo_data: Vec<(Pipe_data_entry, Vec<u8>)>,
    /// Terminals: tty-info.img, and the descriptions to check and drain at the end.
    ttys: tty::Terminals,
    /// Unix sockets and their queued messages (sk-queues.img).
    unix: unixsk::UnixSockets,
    /// (dev, ino) -> (pid, fd, id) of every fd dumped so far, in every process: an fd whose
    /// open file description (kcmp KCMP_FILE) is one of these gets its id, so fds that
    /// share a description, in one process or across processes, share one file entry.
    seen: HashMap<(u64, u64), Vec<DumpedFd>>,
    /// flock and POSIX locks held (filelocks.img), with `--file-locks`.
    locks: locks::Locks,
    /// crs's pids -> the tree's own pid namespace's, when it has one (`ns::Vpids`).
    inner_pids: Option<HashMap<i32, u32>>,
    /// memfd inodes (memfd.img), saved by [`FileTable::write_memfds`].
    memfds: crate::memfd::Memfds,
    /// SysV shared memory segments attached (ipcns-shm), saved by [`FileTable::write_sysv`].
    pub(crate) sysv: crate::sysv::Segments,
    /// `--tcp-established`: established TCP connections are dumped (else refused).
    pub(crate) tcp_established: bool,
    /// `--tcp-close`: connections are saved without their state, to be restored closed.
    pub(crate) tcp_close: bool,
    /// `--skip-in-flight`: see `DumpOptions::skip_in_flight`.
    pub(crate) skip_in_flight: bool,
    /// inet_diag's answers, read once per dump: by (network namespace inode, family,
    /// protocol, state mask), each socket's shutdown state by inode.
    pub(crate) inet_diag: HashMap<(u64, i32, i32, u32), HashMap<u64, u8>>,
    /// Listeners with connections waiting to be accepted, resolved at the end
    /// ([`FileTable::resolve_pending`]).
    pub(crate) pending_listeners: Vec<inetsk::PendingListener>,
    /// The connections dumped: (local, peer), v4-mapped addresses as IPv4.
    pub(crate) inet_conns: Vec<(std::net::SocketAddr, std::net::SocketAddr)>,
    /// tcp-stream-INO.img of each established connection.
    tcp_streams: Vec<ImageWriter>,
    /// The connections in repair mode (see [`inetsk::Repaired`]).
    repaired: inetsk::Repaired,
}

/// One fd of a process, as saved in fdinfo-N.img.
pub(crate) struct FdEntry {
    pub fd: i32,
    pub id: u32,
    pub cloexec: bool,
    pub kind: Fd_types,
}

fn strip_deleted(path: &Path) -> (PathBuf, bool) {
    let s = path.as_os_str().as_encoded_bytes();
    let suf = DELETED_SUFFIX.as_bytes();
    if s.ends_with(suf) {
        let cut = &path.to_string_lossy()[..s.len() - suf.len()];
        (PathBuf::from(cut), true)
    } else {
        (path.to_path_buf(), false)
    }
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DumpError {
    let path = path.to_path_buf();
    move |source| DumpError::File { what, path, source }
}

/// The GNU build-id of an ELF file, as CRIU stores it (native-endian u32 words), or `None`
/// if the file is not an ELF with a build-id note.
pub(crate) fn build_id(f: &File) -> Option<Vec<u32>> {
    let mut eh = [0u8; 64];
    f.read_exact_at(&mut eh, 0).ok()?;
    if &eh[..4] != b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return None; // only 64-bit little-endian
    }
    let u16_at = |b: &[u8], o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as u64;
    let u32_at = |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
    let u64_at = |b: &[u8], o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
    let phoff = u64_at(&eh, 32);
    let phentsize = u16_at(&eh, 54);
    let phnum = u16_at(&eh, 56);
    if phentsize < 56 || phnum > 4096 {
        return None;
    }
    let mut ph = vec![0u8; (phentsize * phnum) as usize];
    f.read_exact_at(&mut ph, phoff).ok()?;
    for i in 0..phnum as usize {
        let p = &ph[i * phentsize as usize..];
        if u32_at(p, 0) != 4 {
            continue; // PT_NOTE
        }
        let off = u64_at(p, 8);
        let size = u64_at(p, 32).min(1 << 20);
        let mut notes = vec![0u8; size as usize];
        f.read_exact_at(&mut notes, off).ok()?;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let namesz = u32_at(&notes, at) as usize;
            let descsz = u32_at(&notes, at + 4) as usize;
            let ntype = u32_at(&notes, at + 8);
            let name_at = at + 12;
            let desc_at = name_at + namesz.div_ceil(4) * 4;
            let next = desc_at + descsz.div_ceil(4) * 4;
            if next > notes.len() {
                break;
            }
            if ntype == 3 && namesz == 4 && &notes[name_at..name_at + 4] == b"GNU\0" {
                let desc = &notes[desc_at..desc_at + descsz];
                return Some(
                    desc.chunks(4)
                        .map(|c| {
                            let mut w = [0u8; 4];
                            w[..c.len()].copy_from_slice(c);
                            u32::from_ne_bytes(w)
                        })
                        .collect(),
                );
            }
            at = next;
        }
    }
    None
}

/// The owner of an open file (F_GETOWN_EX / F_GETSIG), as CRIU records it, its pid as
/// the images record pids (`vpid`: see `ns::Vpids`); `pid` has the file.
fn fown_of(
    file: &std::fs::File,
    pid: Tid,
    vpid: impl Fn(i32) -> Option<u32>,
) -> Result<Fown_entry> {
    let owner = file_owner(file.as_fd()).unwrap_or_default();
    let owner_pid = if owner.pid == 0 {
        0
    } else {
        vpid(owner.pid).ok_or(DumpError::OutsidePidNs {
            pid,
            what: "the owner (F_SETOWN) of one of its files",
        })?
    };
    Ok(Fown_entry {
        uid: Some(0),
        euid: Some(0),
        signum: Some(owner.signum as u32),
        pid_type: Some(owner.kind as u32),
        pid: Some(owner_pid),
        ..Default::default()
    })
}

impl FileTable {
    /// An already-dumped fd with the same open file description as fd `fd` of
    /// `pid` (kcmp KCMP_FILE among the fds seen on the same inode `key`): the
    /// process holding it and the file id it was given.
    fn shared_with(
        &self,
        pid: Tid,
        fd: i32,
        key: (u64, u64),
    ) -> Result<Option<(Tid, u32)>, DumpError> {
        for &(other_pid, other, id) in self.seen.get(&key).into_iter().flatten() {
            let same = kcmp(pid, other_pid, kcmp_type::FILE, fd as u64, other as u64).map_err(
                |source| DumpError::Kcmp {
                    pid,
                    what: "files",
                    source,
                },
            )?;
            if same == 0 {
                return Ok(Some((other_pid, id)));
            }
        }
        Ok(None)
    }

    pub(crate) fn new(ghost_limit: u64) -> FileTable {
        FileTable {
            inner_pids: None,
            ghost_limit,
            next_id: 1,
            entries: Vec::new(),
            special: HashMap::new(),
            next_ghost: 1,
            ghosts: HashMap::new(),
            remaps: Vec::new(),
            ghost_images: Vec::new(),
            pipe_data: Vec::new(),
            fifo_data: Vec::new(),
            ttys: tty::Terminals::default(),
            unix: unixsk::UnixSockets::default(),
            seen: HashMap::new(),
            locks: locks::Locks::default(),
            memfds: Default::default(),
            sysv: Default::default(),
            tcp_established: false,
            tcp_close: false,
            skip_in_flight: false,
            inet_diag: HashMap::new(),
            pending_listeners: Vec::new(),
            inet_conns: Vec::new(),
            tcp_streams: Vec::new(),
            repaired: Default::default(),
        }
    }

    /// Notes that fd `fd` of process `pid` (status flags `flags`) is file `id` on inode
    /// `key`, and returns its entry.
    fn seen_fd(
        &mut self,
        (pid, fd): (Tid, i32),
        key: (u64, u64),
        id: u32,
        flags: u32,
        kind: Fd_types,
    ) -> FdEntry {
        self.seen.entry(key).or_default().push((pid, fd, id));
        FdEntry {
            fd,
            id,
            cloexec: flags & libc::O_CLOEXEC as u32 != 0,
            kind,
        }
    }

    /// The connections in repair mode, to hold until the tree is released.
    pub(crate) fn take_repaired(&mut self) -> inetsk::Repaired {
        std::mem::take(&mut self.repaired)
    }

    /// Pids in the images are the tree's own pid namespace's (`ns::Vpids`).
    pub(crate) fn set_inner_pids(&mut self, map: Option<HashMap<i32, u32>>) {
        self.inner_pids = map;
    }

    /// Process or thread `pid` (crs's) as the images record it; `None` when it is outside
    /// the tree's own pid namespace.
    pub(crate) fn vpid(&self, pid: i32) -> Option<u32> {
        match &self.inner_pids {
            None => Some(pid as u32),
            Some(m) => m.get(&pid).copied(),
        }
    }

    /// [`fown_of`] with this table's pids.
    pub(crate) fn fown(&self, file: &std::fs::File, pid: Tid) -> Result<Fown_entry> {
        fown_of(file, pid, |p| self.vpid(p))
    }

    fn alloc(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A file reached by path (mapped file, exe, cwd, root): `file` is open on it (readable
    /// when it is a regular file, for the build-id), `link` is the path the kernel shows.
    /// The same inode opened with the same flags gets the same id.
    pub(crate) fn special(&mut self, link: &Path, file: &File, flags: u32) -> Result<u32> {
        let md = file.metadata().map_err(file_err("stat of", link))?;
        let key = SpecialKey {
            dev: md.dev(),
            ino: md.ino(),
            flags,
        };
        if let Some(&id) = self.special.get(&key) {
            return Ok(id);
        }
        let id = self.alloc();
        let reg = self.reg_entry(id, link, file, &md, flags, 0, zero_fown())?;
        self.push_reg(id, reg);
        self.special.insert(key, id);
        Ok(id)
    }

    /// A MEMFD file entry `id` for an open description of memfd `file` (its inode saved
    /// once, see `memfd`), found at `path` and shown by the kernel as `shown`.
    #[allow(clippy::too_many_arguments)]
    fn memfd_file(
        &mut self,
        id: u32,
        file: &File,
        path: &Path,
        shown: &Path,
        flags: u32,
        pos: u64,
        fown: Fown_entry,
    ) -> Result<()> {
        let inode_id = self.memfds.inode(file, path, &shown.to_string_lossy())?;
        self.entries.push(File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::MEMFD)),
            id: Some(id),
            memfd: MessageField::some(Memfd_file_entry {
                id: Some(id),
                flags: Some(flags),
                pos: Some(pos),
                fown: MessageField::some(fown),
                inode_id: Some(inode_id),
                ..Default::default()
            }),
            ..Default::default()
        });
        Ok(())
    }

    /// The MEMFD file id a mapping of memfd `file` names (`shown`: the kernel's name of
    /// the mapping); the same inode mapped with the same flags gets the same id.
    pub(crate) fn memfd_mapping(
        &mut self,
        shown: &Path,
        file: &File,
        path: &Path,
        flags: u32,
    ) -> Result<u32> {
        let md = file.metadata().map_err(file_err("stat of", path))?;
        let key = SpecialKey {
            dev: md.dev(),
            ino: md.ino(),
            flags,
        };
        if let Some(&id) = self.special.get(&key) {
            return Ok(id);
        }
        let id = self.alloc();
        self.memfd_file(id, file, path, shown, flags, 0, zero_fown())?;
        self.special.insert(key, id);
        Ok(id)
    }

    /// Saves the memfd inodes (memfd.img and their contents); pages ids from `next_id` on.
    /// Returns the pages written.
    pub(crate) fn write_memfds(&self, dir: &mut ImageDir, next_id: &mut u32) -> Result<u64> {
        self.memfds.write(dir, next_id)
    }

    /// The SysV shared memory segments attached in the tree (in crs's IPC namespace),
    /// opened.
    pub(crate) fn open_sysv(&self) -> Result<Vec<crate::sysv::Opened>> {
        self.sysv.open()
    }

    fn push_reg(&mut self, id: u32, reg: Reg_file_entry) {
        self.entries.push(File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::REG)),
            id: Some(id),
            reg: MessageField::some(reg),
            ..Default::default()
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn reg_entry(
        &mut self,
        id: u32,
        link: &Path,
        file: &File,
        md: &std::fs::Metadata,
        flags: u32,
        pos: u64,
        fown: Fown_entry,
    ) -> Result<Reg_file_entry> {
        let (path, deleted) = strip_deleted(link);
        let ft = md.file_type();
        let mut reg = Reg_file_entry {
            id: Some(id),
            flags: Some(flags),
            pos: Some(pos),
            fown: MessageField::some(fown),
            name: Some(path.to_string_lossy().into_owned()),
            mode: Some(md.mode()),
            ..Default::default()
        };
        // CRIU records the size (to refuse a changed file at restore) except for append-only
        // writers such as log files, which are expected to grow.
        let acc = flags & libc::O_ACCMODE as u32;
        let append_only = acc == libc::O_WRONLY as u32 && flags & libc::O_APPEND as u32 != 0;
        if ft.is_file() && !append_only {
            reg.size = Some(md.size());
            // An O_PATH fd cannot be read: no build-id.
            if flags & libc::O_PATH as u32 == 0 {
                if let Some(bid) = build_id(file) {
                    reg.build_id = bid;
                }
            }
        }
        if deleted && md.nlink() == 0 {
            self.ghost(id, link, file, md)?;
        } else if deleted {
            return Err(DumpError::File {
                what: "unlinked file that still has links (linked remap not supported yet):",
                path,
                source: std::io::Error::from_raw_os_error(libc::ENOTSUP),
            });
        }
        Ok(reg)
    }

    /// Saves the contents of deleted file `file` as a ghost file and records the remap.
    fn ghost(&mut self, id: u32, link: &Path, file: &File, md: &std::fs::Metadata) -> Result<()> {
        let key = (md.dev(), md.ino());
        let gid = match self.ghosts.get(&key) {
            Some(&g) => g,
            None => {
                let allocated = md.blocks() * 512;
                if allocated > self.ghost_limit {
                    return Err(DumpError::GhostTooBig {
                        path: strip_deleted(link).0,
                        size: allocated,
                        limit: self.ghost_limit,
                    });
                }
                let g = self.next_ghost;
                self.next_ghost += 1;
                let img = ghost_image(g, link, file, md)?;
                self.ghost_images.push(img);
                self.ghosts.insert(key, g);
                g
            }
        };
        debug!(id, ghost = gid, path = %link.display(), "deleted file saved as ghost");
        self.remaps.push(Remap_file_path_entry {
            orig_id: Some(id),
            remap_id: Some(gid),
            remap_type: Some(EnumOrUnknown::new(Remap_type::GHOST)),
            ..Default::default()
        });
        Ok(())
    }

    /// Dumps the fds of process `pid`. Fds sharing one open file description share an id,
    /// also with fds of processes dumped before.
    pub(crate) fn dump_fds(
        &mut self,
        tree: &SeizedTree,
        proc_dir: &ProcDir,
        file_locks: bool,
    ) -> Result<Vec<FdEntry>> {
        let pid = proc_dir.pid();
        let fds = proc_dir.fds().map_err(proc_err(pid, "fd list"))?;
        let mut out = Vec::new();
        for fd in fds {
            let link = proc_dir.fd_link(fd).map_err(proc_err(pid, "fd link"))?;
            let info = proc_dir.fdinfo(fd).map_err(proc_err(pid, "fdinfo"))?;
            let link_s = link.to_string_lossy().into_owned();
            let unsupported = |why| DumpError::UnsupportedFd {
                pid,
                fd,
                link: link_s.clone(),
                why,
            };
            let live_locks = info.locks.iter().filter(|l| !l.blocked).count();
            if live_locks > 0 && !file_locks {
                return Err(DumpError::FileLocked {
                    pid,
                    fd,
                    link: link_s.clone(),
                });
            }
            let reg_locks = live_locks > 0 && link_s.starts_with('/');
            if live_locks > 0 && !reg_locks {
                return Err(unsupported("file locks on anything but a regular file"));
            }
            if let Some(kind) = anonfd::AnonKind::of_link(&link_s) {
                out.push(self.anon_fd(tree, proc_dir, fd, kind, &info, &link_s)?);
                continue;
            }
            if link_s == pidfd::LINK {
                out.push(self.pidfd(tree, pid, fd, &info)?);
                continue;
            }
            if link_s.starts_with("socket:[") {
                out.push(self.unix_fd(tree, pid, fd, &info, &link_s)?);
                continue;
            }
            if link_s == "anon_inode:[fanotify]" {
                return Err(unsupported("fanotify"));
            }
            let is_pipe = link_s.starts_with("pipe:[");
            if !is_pipe && !link_s.starts_with('/') {
                return Err(unsupported(
                    "only regular files, devices and pipes are supported",
                ));
            }
            let is_memfd = link_s.starts_with("/memfd:");
            let taken = tree
                .take_fd(pid, fd)
                .map_err(compel_err(pid, "taking an fd"))?;
            let file = File::from(taken);
            let md = file.metadata().map_err(file_err("stat of", &link))?;
            let ft = md.file_type();
            use std::os::unix::fs::FileTypeExt;
            if is_mqueue(&file) {
                return Err(unsupported("a POSIX message queue"));
            }
            if is_pipe && !ft.is_fifo() {
                return Err(unsupported("a pipe link on something that is not a pipe"));
            }
            let reg_like =
                ft.is_file() || ft.is_dir() || ft.is_char_device() || ft.is_block_device();
            // An O_PATH fd only names its inode (a FIFO, a symlink with O_NOFOLLOW, ...):
            // a regular-file entry reopens it by path.
            let opath = info.flags & libc::O_PATH as u32 != 0;
            let is_fifo = !is_pipe && !opath && ft.is_fifo();
            if !is_pipe && !is_fifo && !reg_like && !opath {
                return Err(unsupported("not a regular file, directory or device"));
            }
            let tty_driver = if !opath && ft.is_char_device() {
                tty::driver_of(md.rdev()).map_err(unsupported)?
            } else {
                None
            };
            let is_tty = tty_driver.is_some();
            let cloexec = info.flags & libc::O_CLOEXEC as u32 != 0;
            let key = (md.dev(), md.ino());
            let shared = self.shared_with(pid, fd, key)?.map(|(_, id)| id);
            let id = match shared {
                Some(id) => id,
                None => {
                    let id = self.alloc();
                    let fown = self.fown(&file, pid)?;
                    let flags = info.flags & !(libc::O_CLOEXEC as u32);
                    if is_pipe {
                        if flags & libc::O_DIRECT as u32 != 0 {
                            return Err(unsupported("packetized pipes (O_DIRECT)"));
                        }
                        self.pipe(id, &link, &file, md.ino(), flags, fown)?;
                    } else if is_fifo {
                        self.fifo(id, &link, &file, &md, flags, fown)?;
                    } else if is_memfd {
                        let pos = info.pos as u64;
                        self.memfd_file(id, &file, &link, &link, flags, pos, fown)?;
                    } else if let Some(driver) = tty_driver {
                        let at = (pid, fd);
                        self.tty(id, at, &link_s, &file, &md, flags, fown, proc_dir, driver)?;
                    } else {
                        // The description may be write-only: read the build-id through a
                        // fresh read-only open of the same file, unless that open would
                        // break a lease the description holds.
                        let blocks = locks::lease_blocks_readers(&info.locks);
                        if blocks && strip_deleted(&link).1 {
                            return Err(unsupported(
                                "a write lease or a lease being broken on a deleted file \
                                 (reading it again would break the lease)",
                            ));
                        }
                        let write_only = (flags & libc::O_ACCMODE as u32) == 1;
                        let readable = if ft.is_file() && write_only && !blocks {
                            reopen_readonly(&file).unwrap_or_else(|| file.try_clone().expect("dup"))
                        } else {
                            file.try_clone()
                                .map_err(file_err("duplicating fd of", &link))?
                        };
                        let pos = info.pos as u64;
                        let reg = self.reg_entry(id, &link, &readable, &md, flags, pos, fown)?;
                        self.push_reg(id, reg);
                    }
                    id
                }
            };
            if reg_locks {
                if is_pipe || is_tty || !ft.is_file() {
                    return Err(unsupported("file locks on anything but a regular file"));
                }
                let at = locks::At {
                    pid,
                    vpid: self.vpid(pid).unwrap_or(pid as u32),
                    fd,
                    id,
                    file: key,
                    link: &link_s,
                };
                self.locks
                    .note(&at, &info.locks, || crs_sys::dump::lease_type(file.as_fd()))
                    .map_err(unsupported)?;
            }
            self.seen.entry(key).or_default().push((pid, fd, id));
            out.push(FdEntry {
                fd,
                id,
                cloexec,
                kind: if is_pipe {
                    Fd_types::PIPE
                } else if is_fifo {
                    Fd_types::FIFO
                } else if is_memfd {
                    Fd_types::MEMFD
                } else if is_tty {
                    Fd_types::TTY
                } else {
                    Fd_types::REG
                },
            });
        }
        Ok(out)
    }

    /// One end of a pipe: its file entry and, for a read end whose pipe was not seen yet,
    /// the bytes queued in it (as CRIU: data is taken from read ends only).
    fn pipe(
        &mut self,
        id: u32,
        link: &Path,
        file: &File,
        ino: u64,
        flags: u32,
        fown: Fown_entry,
    ) -> Result<()> {
        let pipe_id = ino as u32;
        self.entries.push(File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::PIPE)),
            id: Some(id),
            pipe: MessageField::some(Pipe_entry {
                id: Some(id),
                pipe_id: Some(pipe_id),
                flags: Some(flags),
                fown: MessageField::some(fown),
                ..Default::default()
            }),
            ..Default::default()
        });
        let read_end = flags & libc::O_WRONLY as u32 == 0;
        if !read_end || self.pipe_data.iter().any(|(e, _)| e.pipe_id() == pipe_id) {
            return Ok(());
        }
        let (size, data) = queued_pipe_data(file, link)?;
        debug!(id, pipe_id, size, bytes = data.len(), "pipe data saved");
        self.pipe_data.push(pipe_data_entry(pipe_id, size, data));
        Ok(())
    }

    /// Writes files.img, remap-fpath.img, the ghost files, tcp-stream-INO.img, tty-info.img,
    /// tty-data.img, pipes-data.img, fifo-data.img and filelocks.img (the connections in
    /// repair mode are to be taken first: see [`FileTable::take_repaired`]). `leaders`: the live processes that
    /// lead their session; `shell_job`: one pty slave may be a terminal outside the tree.
    pub(crate) fn write(
        mut self,
        dir: &mut ImageDir,
        leaders: &[Tid],
        shell_job: bool,
    ) -> Result<()> {
        self.unix.finish(&mut self.entries)?;
        self.resolve_pending()?;
        self.resolve_in_flight()?;
        self.ttys.check(leaders, shell_job)?;
        let tty_data = self.ttys.queued_data()?;
        let mut img = ImageWriter::new("files.img", "FILES");
        for e in &self.entries {
            img.push(e).map_err(image_err("files.img"))?;
        }
        dir.write(img)?;
        if !self.remaps.is_empty() {
            let mut img = ImageWriter::new("remap-fpath.img", "REMAP_FPATH");
            for e in &self.remaps {
                img.push(e).map_err(image_err("remap-fpath.img"))?;
            }
            dir.write(img)?;
        }
        for g in self.ghost_images {
            dir.write(g)?;
        }
        for t in self.tcp_streams {
            dir.write(t)?;
        }
        if !self.ttys.infos().is_empty() {
            let mut img = ImageWriter::new("tty-info.img", "TTY_INFO");
            for e in self.ttys.infos() {
                img.push(e).map_err(image_err("tty-info.img"))?;
            }
            dir.write(img)?;
        }
        if !tty_data.is_empty() {
            let mut img = ImageWriter::new("tty-data.img", "TTY_DATA");
            for e in &tty_data {
                img.push(e).map_err(image_err("tty-data.img"))?;
            }
            dir.write(img)?;
        }
        if !self.pipe_data.is_empty() {
            let mut img = ImageWriter::new("pipes-data.img", "PIPES_DATA");
            for (e, data) in &self.pipe_data {
                img.push(e).map_err(image_err("pipes-data.img"))?;
                img.payload(data);
            }
            dir.write(img)?;
        }
        if !self.fifo_data.is_empty() {
            let mut img = ImageWriter::new("fifo-data.img", "FIFO_DATA");
            for (e, data) in &self.fifo_data {
                img.push(e).map_err(image_err("fifo-data.img"))?;
                img.payload(data);
            }
            dir.write(img)?;
        }
        self.locks.write(dir)?;
        self.unix.write(dir)
    }
}

/// Whether `file` is a POSIX message queue (mqueue filesystem): opening it again by path
/// would not give back its queued messages, so it is refused rather than restored wrong.
fn is_mqueue(file: &File) -> bool {
    const MQUEUE_MAGIC: i64 = 0x1980_0202;
    nix::sys::statfs::fstatfs(file).is_ok_and(|s| s.filesystem_type().0 == MQUEUE_MAGIC)
}

fn zero_fown() -> Fown_entry {
    Fown_entry {
        uid: Some(0),
        euid: Some(0),
        signum: Some(0),
        pid_type: Some(0),
        pid: Some(0),
        ..Default::default()
    }
}

pub(crate) fn image_err(image: &str) -> impl FnOnce(crs_images::ImageError) -> DumpError {
    let image = image.to_string();
    move |source| DumpError::Image { image, source }
}

/// A new, read-only open file description of the file `f` is open on, through the
/// `/proc/self/fd` magic link (which reaches deleted files too). The magic link must be
/// followed: O_NOFOLLOW would make the open fail with ELOOP.
/// A new read-only description of the file `f` is open on (through /proc/self/fd), with
/// extra open flags `extra` (O_NONBLOCK for a FIFO, so the open never waits for a writer).
pub(crate) fn reopen_readonly_at(f: &File, extra: i32) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(extra)
        .open(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

fn reopen_readonly(f: &File) -> Option<File> {
    reopen_readonly_at(f, 0).ok()
}

/// The pipes-data.img / fifo-data.img entry of the `data` queued in pipe `pipe_id` of
/// `size` bytes, with the data that follows it.
pub(crate) fn pipe_data_entry(
    pipe_id: u32,
    size: u32,
    data: Vec<u8>,
) -> (Pipe_data_entry, Vec<u8>) {
    (
        Pipe_data_entry {
            pipe_id: Some(pipe_id),
            bytes: Some(data.len() as u32),
            size: Some(size),
            ..Default::default()
        },
        data,
    )
}

/// The pipe size and the bytes queued in the pipe `file` is an end of, left queued: they
/// are duplicated with tee(2) into a pipe of crs's own of the same size, then read from it.
fn queued_pipe_data(file: &File, link: &Path) -> Result<(u32, Vec<u8>)> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let err = |what| {
        let path = link.to_path_buf();
        move |e: nix::errno::Errno| DumpError::File {
            what,
            path,
            source: e.into(),
        }
    };
    let size = fcntl(file, FcntlArg::F_GETPIPE_SZ).map_err(err("size of pipe"))?;
    let (steal_r, steal_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(err("creating a pipe to copy the data of"))?;
    fcntl(&steal_w, FcntlArg::F_SETPIPE_SZ(size))
        .map_err(err("sizing a pipe to copy the data of"))?;
    let n = crs_sys::pipe::tee_nonblock(file.as_fd(), steal_w.as_fd(), size as usize)
        .map_err(file_err("duplicating the queued data of", link))?;
    drop(steal_w);
    let mut data = vec![0u8; n];
    File::from(steal_r)
        .read_exact(&mut data)
        .map_err(file_err("reading the queued data of", link))?;
    Ok((size as u32, data))
}

/// A `st_dev` in the kernel's internal encoding (major << 20 | minor), which CRIU stores in
/// `dev` fields (crit decodes them that way; `rdev` keeps the userspace encoding).
fn kernel_dev(dev: u64) -> u32 {
    let major = nix::sys::stat::major(dev) as u32;
    let minor = nix::sys::stat::minor(dev) as u32;
    (major << 20) | (minor & 0xf_ffff)
}

fn ghost_image(gid: u32, link: &Path, file: &File, md: &std::fs::Metadata) -> Result<ImageWriter> {
    let name = format!("ghost-file-{gid:x}.img");
    let mut gfe = Ghost_file_entry {
        uid: Some(md.uid()),
        gid: Some(md.gid()),
        mode: Some(md.mode()),
        dev: Some(kernel_dev(md.dev())),
        ino: Some(md.ino()),
        atim: MessageField::some(Timeval {
            tv_sec: Some(md.atime() as u64),
            tv_usec: Some(md.atime_nsec() as u64 / 1000),
            ..Default::default()
        }),
        mtim: MessageField::some(Timeval {
            tv_sec: Some(md.mtime() as u64),
            tv_usec: Some(md.mtime_nsec() as u64 / 1000),
            ..Default::default()
        }),
        ..Default::default()
    };
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    if ft.is_char_device() || ft.is_block_device() {
        gfe.rdev = Some(md.rdev() as u32);
    }
    let chunks = ft.is_file() && md.size() >= GHOST_CHUNKS_THRESH;
    if chunks {
        gfe.chunks = Some(true);
        gfe.size = Some(md.size());
    }
    let mut img = ImageWriter::new(name.clone(), "GHOST_FILE");
    img.push(&gfe).map_err(image_err(&name))?;
    if !ft.is_file() {
        return Ok(img);
    }
    // Read through a fresh description so the task's file position is not involved (and a
    // write-only description can still be read).
    let mut f = reopen_readonly_at(file, 0).map_err(file_err("reopening deleted file", link))?;
    if !chunks {
        let mut data = Vec::with_capacity(md.size() as usize);
        (&mut f)
            .take(md.size())
            .read_to_end(&mut data)
            .map_err(file_err("reading deleted file", link))?;
        if data.len() as u64 != md.size() {
            return Err(file_err("reading deleted file", link)(
                std::io::ErrorKind::UnexpectedEof.into(),
            ));
        }
        img.payload(&data);
        return Ok(img);
    }
    use nix::unistd::{lseek, Whence};
    let size = md.size() as i64;
    let mut off = 0i64;
    while off < size {
        let (data, hole) = match lseek(&f, off, Whence::SeekData) {
            Ok(d) => (
                d,
                lseek(&f, d, Whence::SeekHole)
                    .map_err(|e| file_err("seeking in deleted file", link)(e.into()))?,
            ),
            Err(nix::errno::Errno::ENXIO) => break,
            // A file system without SEEK_DATA: the whole file is one chunk.
            Err(_) if off == 0 => (0, size),
            Err(e) => return Err(file_err("seeking in deleted file", link)(e.into())),
        };
        let hole = hole.min(size);
        let len = (hole - data) as u64;
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, data as u64)
            .map_err(file_err("reading deleted file", link))?;
        img.push(&Ghost_chunk_entry {
            len: Some(len),
            off: Some(data as u64),
            ..Default::default()
        })
        .map_err(image_err(&name))?;
        img.payload(&buf);
        off = hole;
    }
    Ok(img)
}

/// fdinfo-N.img.
pub(crate) fn fdinfo_image(files_id: u32, fds: &[FdEntry]) -> Result<ImageWriter> {
    let name = format!("fdinfo-{files_id}.img");
    let mut img = ImageWriter::new(name.clone(), "FDINFO");
    for e in fds {
        img.push(&Fdinfo_entry {
            id: Some(e.id),
            flags: Some(if e.cloexec {
                libc::FD_CLOEXEC as u32
            } else {
                0
            }),
            type_: Some(EnumOrUnknown::new(e.kind)),
            fd: Some(e.fd as u32),
            ..Default::default()
        })
        .map_err(image_err(&name))?;
    }
    Ok(img)
}

/// Opens a file by a /proc magic link (exe, cwd, root, map_files), readable if possible.
pub(crate) fn open_link(path: &Path, tid: Tid) -> Result<File> {
    match File::open(path) {
        Ok(f) => Ok(f),
        Err(_) => OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH)
            .open(path)
            .map_err(|source| DumpError::File {
                what: "opening",
                path: PathBuf::from(format!("{} (pid {tid})", path.display())),
                source,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn termios_entry_packs_control_chars_like_criu() {
        // The CRIU 4.2 shell reference set: ^C ^\ DEL ^U in the first word, 19 words.
        let mut t = crs_sys::tty::Termios {
            lflag: 35387,
            ..Default::default()
        };
        t.cc[..4].copy_from_slice(&[0x03, 0x1c, 0x7f, 0x15]);
        let e = tty::termios_entry(&t);
        assert_eq!(e.c_cc.len(), 19);
        assert_eq!(e.c_cc[0], 360651779);
        assert!(e.c_cc[1..].iter().all(|&w| w == 0));
        assert_eq!((e.c_lflag(), e.c_ispeed(), e.c_ospeed()), (35387, 0, 0));
    }

    #[test]
    fn kernel_dev_of_userspace_dev_is_major_shl_20_or_minor() {
        let dev = nix::sys::stat::makedev(254, 0x12345);
        assert_eq!(kernel_dev(dev), (254 << 20) | 0x12345);
    }

    #[test]
    fn strip_deleted_suffix_is_removed_and_reported() {
        assert_eq!(
            strip_deleted(Path::new("/tmp/a b (deleted)")),
            (PathBuf::from("/tmp/a b"), true)
        );
        assert_eq!(
            strip_deleted(Path::new("/tmp/x")),
            (PathBuf::from("/tmp/x"), false)
        );
    }

    #[test]
    fn queued_pipe_data_leaves_the_bytes_queued() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        let mut w = File::from(w);
        w.write_all(&data).unwrap();
        let r = File::from(r);
        let (size, got) = queued_pipe_data(&r, Path::new("pipe:[test]")).unwrap();
        assert_eq!(size, 65536);
        assert_eq!(got, data);
        let mut again = vec![0u8; data.len()];
        (&r).read_exact(&mut again).unwrap();
        assert_eq!(again, data);
    }

    #[test]
    fn queued_pipe_data_of_empty_pipe_is_empty() {
        let (r, _w) = nix::unistd::pipe().unwrap();
        let (_, got) = queued_pipe_data(&File::from(r), Path::new("pipe:[test]")).unwrap();
        assert!(got.is_empty());
    }

    fn ghost_of(contents: &[u8]) -> (Vec<u8>, Vec<serde_json::Value>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g");
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.write_all(contents).unwrap();
        std::fs::remove_file(&path).unwrap();
        let md = f.metadata().unwrap();
        let link = PathBuf::from(format!("{} (deleted)", path.display()));
        let bytes = ghost_image(1, &link, &f, &md).unwrap().into_bytes();
        let json = crs_images::codec::decode_image("ghost", &bytes, Default::default()).unwrap();
        let entries = json["entries"].as_array().unwrap().clone();
        (bytes, entries)
    }

    #[test]
    fn ghost_image_small_file_is_plain_contents() {
        let (bytes, entries) = ghost_of(b"tiny ghost");
        assert_eq!(entries.len(), 1);
        assert!(entries[0].get("chunks").is_none());
        assert!(bytes.ends_with(b"tiny ghost"));
    }

    #[test]
    fn ghost_image_large_file_is_chunked() {
        let data = vec![0xabu8; 5 * 4096];
        let (bytes, entries) = ghost_of(&data);
        assert_eq!(entries[0]["chunks"], true);
        assert_eq!(entries[0]["size"], 5 * 4096);
        assert_eq!(entries[1]["off"], 0);
        assert_eq!(entries[1]["len"], 5 * 4096);
        assert!(bytes.ends_with(&data));
    }
}
