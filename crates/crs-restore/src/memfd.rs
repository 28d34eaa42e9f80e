//! memfd files and memfd mappings: the inodes of memfd.img, the MEMFD entries of files.img
//! that open them, and the VMAs (`VMA_AREA_MEMFD`, `shmid` = a MEMFD file id) that map them.
//!
//! ```text
//! load   : every MEMFD file an fd or a VMA of the tree names, its inode (memfd.img) and the
//!          inode's contents (pagemap-shmem-<shmid>.img, offsets in the file)
//! create : crs makes each inode once: memfd_create(name) (or, for the inode CRIU 4.2 writes
//!          for shared anonymous memory, named "/dev/zero" and never opened as an fd, a
//!          real shared anonymous object, so the restored mapping is anonymous again),
//!          size, contents (pwrite, rayon batches, holes stay holes), mode, owner, seals;
//!          then one open description per MEMFD file with an fd (flags, position), handed
//!          to the tasks that hold it (see `handoff`)
//! map    : a task maps an inode through /proc/<crs>/fd/<n> (vma::map_all)
//! ```

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::memfd::{Memfd_file_entry, Memfd_inode_entry};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::handoff::CrsFiles;
use crate::images::{Tree, PAGE, TASK_SIZE};
use crate::shmem;
use crate::vma::Kind;
use crate::RestoreError;

/// The name the kernel gives shared anonymous memory, which CRIU 4.2 saves as a memfd.
const ANON_SHARED_NAME: &str = "/dev/zero";

/// One memfd inode as dumped, with its contents.
#[derive(Debug)]
pub(crate) struct Inode {
    pub entry: Memfd_inode_entry,
    pub contents: shmem::Image,
    /// Whether an fd (not only a mapping) opens it.
    pub has_fd: bool,
}

/// Every memfd of the tree.
#[derive(Debug, Default)]
pub(crate) struct Memfds {
    /// By inode id.
    pub inodes: BTreeMap<u64, Inode>,
    /// MEMFD file id -> its entry.
    pub files: BTreeMap<u32, Memfd_file_entry>,
    /// MEMFD file ids opened by an fd of some task.
    pub with_fd: Vec<u32>,
}

fn memfd_of(f: &File_entry) -> Result<&Memfd_file_entry, RestoreError> {
    f.memfd.as_ref().ok_or_else(|| {
        invalid(
            "files.img",
            format!("file id {} has no memfd entry", f.id()),
        )
    })
}

/// Reads the memfds the tree uses (none: no memfd.img needed).
pub(crate) fn load(dir: &Path, tree: &Tree) -> Result<Memfds, RestoreError> {
    let mut out = Memfds::default();
    for p in &tree.procs {
        for e in p.fdinfo.iter().filter(|e| e.type_() == Fd_types::MEMFD) {
            let f = memfd_of(&p.files[&e.id()])?;
            out.files.insert(e.id(), f.clone());
            if !out.with_fd.contains(&e.id()) {
                out.with_fd.push(e.id());
            }
        }
        for v in &p.vmas {
            if let Kind::Memfd { file_id } = v.kind {
                let f = p.files.get(&file_id).ok_or_else(|| {
                    invalid(
                        &format!("mm-{}.img", p.pid),
                        format!(
                            "VMA {:#x} maps file id {file_id} absent from files.img",
                            v.start
                        ),
                    )
                })?;
                if f.type_() != Fd_types::MEMFD {
                    return Err(invalid(
                        &format!("mm-{}.img", p.pid),
                        format!("VMA {:#x} maps file id {file_id}, not a memfd", v.start),
                    ));
                }
                out.files.insert(file_id, memfd_of(f)?.clone());
            }
        }
    }
    if out.files.is_empty() {
        return Ok(out);
    }
    let bytes = read_file(&dir.join("memfd.img"))?;
    let label = dir.join("memfd.img").display().to_string();
    let entries: Vec<Memfd_inode_entry> = ImageReader::new(&label, &bytes, "MEMFD_INODE")?.all()?;
    let mut by_id: BTreeMap<u64, Memfd_inode_entry> = BTreeMap::new();
    for e in entries {
        if by_id.insert(e.inode_id(), e.clone()).is_some() {
            return Err(invalid(
                "memfd.img",
                format!("inode id {} twice", e.inode_id()),
            ));
        }
    }
    for (&fid, f) in &out.files {
        let iid = u64::from(f.inode_id());
        if out.inodes.contains_key(&iid) {
            continue;
        }
        let entry = by_id.remove(&iid).ok_or_else(|| {
            invalid(
                "memfd.img",
                format!("file {fid} names inode {iid}, which is not there"),
            )
        })?;
        if entry.hugetlb_flag() != 0 {
            return Err(unsupported(format!(
                "memfd.img: hugetlb memfd {} (inode {iid})",
                crate::images::shown(entry.name())
            )));
        }
        // memfd_create takes at most 249 bytes of name (NAME_MAX less "memfd:").
        if entry.name().len() > 249 || entry.name().contains('\0') {
            return Err(invalid(
                "memfd.img",
                format!(
                    "inode {iid}: name {} of {} bytes, or with a NUL byte",
                    crate::images::shown(entry.name()),
                    entry.name().len()
                ),
            ));
        }
        if entry.size() > TASK_SIZE {
            return Err(invalid(
                "memfd.img",
                format!("inode {iid}: size {:#x}", entry.size()),
            ));
        }
        // The contents are whole pages: the object covers the size rounded up.
        let span = entry.size().div_ceil(PAGE) * PAGE;
        let contents = shmem::load_object(dir, u64::from(entry.shmid()), span)?;
        out.inodes.insert(
            iid,
            Inode {
                entry,
                contents,
                has_fd: false,
            },
        );
    }
    for fid in &out.with_fd {
        let iid = u64::from(out.files[fid].inode_id());
        out.inodes.get_mut(&iid).expect("loaded above").has_fd = true;
    }
    Ok(out)
}

/// The memfd inodes, made and filled, held by crs until every task is built.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    inodes: BTreeMap<u64, File>,
    /// MEMFD file id -> inode id.
    file_inode: BTreeMap<u32, u64>,
}

impl Objects {
    /// Creates every inode and the open description of every MEMFD file an fd holds
    /// (into `crs_files`). Returns the objects and the pages written.
    pub fn create(m: &Memfds, crs_files: &mut CrsFiles) -> Result<(Objects, u64), RestoreError> {
        let mut out = Objects::default();
        let mut pages = 0;
        for (&iid, inode) in &m.inodes {
            let e = &inode.entry;
            let err = |what: &'static str| {
                let name = e.name().to_string();
                move |source| RestoreError::Memfd { name, what, source }
            };
            let anon_shared = e.name() == ANON_SHARED_NAME && !inode.has_fd;
            let file = if anon_shared {
                File::from(
                    crs_sys::shmem::anon_shared_object(inode.contents.size as usize)
                        .map_err(err("creating shared anonymous memory for"))?,
                )
            } else {
                let name = std::ffi::CString::new(e.name())
                    .map_err(|_| invalid("memfd.img", format!("inode {iid}: name with NUL")))?;
                let f = File::from(
                    memfd_create(name.as_c_str(), MFdFlags::MFD_ALLOW_SEALING)
                        .map_err(|e| err("creating")(e.into()))?,
                );
                f.set_len(e.size()).map_err(err("sizing"))?;
                f
            };
            if let Some(pages_path) = &inode.contents.pages_path {
                shmem::fill(u64::from(e.shmid()), &file, &inode.contents, pages_path)?;
                // The last page was saved whole: cut the file back to its size.
                if !anon_shared {
                    file.set_len(e.size()).map_err(err("sizing"))?;
                }
            }
            pages += inode
                .contents
                .runs
                .iter()
                .map(|r| r.len / PAGE)
                .sum::<u64>();
            if e.has_mode() {
                nix::sys::stat::fchmod(
                    &file,
                    nix::sys::stat::Mode::from_bits_truncate(e.mode() & 0o7777),
                )
                .map_err(|e| err("setting the mode of")(e.into()))?;
            }
            nix::unistd::fchown(
                &file,
                Some(nix::unistd::Uid::from_raw(e.uid())),
                Some(nix::unistd::Gid::from_raw(e.gid())),
            )
            .map_err(|e| err("setting the owner of")(e.into()))?;
            // A memfd made without MFD_ALLOW_SEALING reports F_SEAL_SEAL: the same here.
            let have = fcntl(&file, FcntlArg::F_GET_SEALS).map_err(|e| err("sealing")(e.into()))?;
            let missing = e.seals() as i32 & !have;
            if missing != 0 {
                let seals = SealFlag::from_bits_truncate(missing);
                fcntl(&file, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| err("sealing")(e.into()))?;
            }
            debug!(
                inode = iid,
                name = e.name(),
                size = e.size(),
                "memfd created"
            );
            out.inodes.insert(iid, file);
        }
        for (&fid, f) in &m.files {
            out.file_inode.insert(fid, u64::from(f.inode_id()));
        }
        // The first read-write description of each memfd is the file memfd_create made:
        // unlike a reopen through /proc, it does not count as a writer of the inode, so
        // the task can still execveat() it (ETXTBSY otherwise), as it could before.
        let mut original_used: Vec<u64> = Vec::new();
        for &fid in &m.with_fd {
            let f = &m.files[&fid];
            let iid = u64::from(f.inode_id());
            let inode = &out.inodes[&iid];
            let err = |what: &'static str| {
                let name = m.inodes[&iid].entry.name().to_string();
                move |source| RestoreError::Memfd { name, what, source }
            };
            let flags = f.flags() as i32;
            let desc = if flags & libc::O_ACCMODE == libc::O_RDWR && !original_used.contains(&iid) {
                original_used.push(iid);
                let d = inode.try_clone().map_err(err("duplicating"))?;
                set_description(&d, flags, f.pos())
                    .map_err(err("setting up the description of"))?;
                d
            } else {
                reopen(inode, flags, f.pos()).map_err(err("opening a description of"))?
            };
            crs_files.by_id.insert(fid, OwnedFd::from(desc));
        }
        Ok((out, pages))
    }

    /// The path a task opens to map MEMFD file `file_id`.
    pub fn fd_path(&self, file_id: u32) -> Result<String, RestoreError> {
        let f = self
            .file_inode
            .get(&file_id)
            .and_then(|iid| self.inodes.get(iid))
            .ok_or_else(|| invalid("mm", format!("memfd file {file_id} was not loaded")))?;
        Ok(format!("/proc/{}/fd/{}", std::process::id(), f.as_raw_fd()))
    }
}

/// A new open description of `inode` with the dumped status `flags` at position `pos`
/// (through /proc/self/fd, as opening /proc/PID/fd/N of a memfd does).
fn reopen(inode: &File, flags: i32, pos: u64) -> std::io::Result<File> {
    use std::io::{Seek, SeekFrom};
    use std::os::unix::fs::OpenOptionsExt;
    let acc = flags & libc::O_ACCMODE;
    let f = std::fs::OpenOptions::new()
        .read(acc != libc::O_WRONLY)
        .write(acc != libc::O_RDONLY)
        .custom_flags(flags & !(libc::O_ACCMODE | libc::O_CLOEXEC | libc::O_CREAT | libc::O_TRUNC))
        .open(format!("/proc/self/fd/{}", inode.as_raw_fd()))?;
    (&f).seek(SeekFrom::Start(pos))?;
    Ok(f)
}

/// Puts the dumped status flags (those F_SETFL changes) and position on description `f`.
fn set_description(f: &File, flags: i32, pos: u64) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let settable =
        libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_DIRECT | libc::O_NOATIME;
    let fl = nix::fcntl::OFlag::from_bits_truncate(flags & settable);
    fcntl(f, FcntlArg::F_SETFL(fl)).map_err(std::io::Error::from)?;
    (&*f).seek(SeekFrom::Start(pos))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::testsets;
    use crs_images::pb::memfd::Memfd_inode_entry;

    #[test]
    fn load_memfd_name_with_nul_is_invalid_before_anything_is_made() {
        // memfd_create refused it only after the tree was created.
        let test = "load_memfd_name_with_nul_is_invalid_before_anything_is_made";
        let Some(t) = testsets::copy("tree", test) else {
            return;
        };
        testsets::rewrite(
            t.path(),
            "memfd.img",
            "MEMFD_INODE",
            |v: &mut Vec<Memfd_inode_entry>| {
                let e = v.iter_mut().find(|e| e.inode_id() == 2).unwrap();
                e.name = Some("crs\0memfd".into());
            },
        );
        let err = testsets::load_err(t.path());
        assert!(err.contains("memfd.img: inode 2: name"), "{err}");
    }
}
