//! The address space: VMAs with CRIU's status bits, and the mm fields.

use std::os::unix::fs::MetadataExt;

use crs_images::pb::vma::Vma_entry;
use crs_proc::{ProcDir, SmapsEntry, VmFlag, VmaName};

use crate::error::{proc_err, DumpError, Result};
use crate::files::{open_link, FileTable};
use crate::pages::ScanVma;

// CRIU's VMA status bits (criu/include/image.h).
pub const VMA_AREA_REGULAR: u32 = 1 << 0;
pub const VMA_AREA_VSYSCALL: u32 = 1 << 2;
pub const VMA_AREA_VDSO: u32 = 1 << 3;
pub const VMA_AREA_HEAP: u32 = 1 << 5;
pub const VMA_FILE_PRIVATE: u32 = 1 << 6;
pub const VMA_FILE_SHARED: u32 = 1 << 7;
pub const VMA_ANON_SHARED: u32 = 1 << 8;
pub const VMA_ANON_PRIVATE: u32 = 1 << 9;
pub const VMA_AREA_VVAR: u32 = 1 << 12;
pub const VMA_AREA_MEMFD: u32 = 1 << 14;
pub const VMA_AREA_SYSVIPC: u32 = 1 << 10;

const MAP_DROPPABLE: u32 = 0x08;
/// Highest user address + 1 on x86_64 with 4-level paging (what CRIU calls the task size).
const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// One VMA as it goes into mm-PID.img.
#[derive(Clone, Debug)]
pub(crate) struct DumpVma {
    pub entry: Vma_entry,
}

impl DumpVma {
    fn status(&self) -> u32 {
        self.entry.status.unwrap_or(0)
    }

    fn flags(&self) -> u32 {
        self.entry.flags.unwrap_or(0)
    }

    /// The object id of a shared anonymous mapping (not a SysV segment's attach, which
    /// CRIU marks shared anonymous too).
    pub(crate) fn anon_shared(&self) -> Option<u64> {
        (self.status() & (VMA_ANON_SHARED | VMA_AREA_SYSVIPC) == VMA_ANON_SHARED)
            .then(|| self.entry.shmid.unwrap_or(0))
    }

    /// `[start, end)` when writes to it can be tracked between dumps (userfaultfd
    /// write-protection works on anonymous memory only): private anonymous memory that is
    /// not the vDSO, vvar or vsyscall page, nor hugetlb.
    pub(crate) fn trackable(&self) -> Option<(u64, u64)> {
        let st = self.status();
        let f = self.flags();
        let ok = st & VMA_AREA_REGULAR != 0
            && st & VMA_ANON_PRIVATE != 0
            && st & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL) == 0
            && f & libc::MAP_HUGETLB as u32 == 0
            && f & MAP_DROPPABLE == 0;
        let (start, end) = (self.entry.start.unwrap_or(0), self.entry.end.unwrap_or(0));
        (ok && start < end && end <= TASK_SIZE).then_some((start, end))
    }

    /// Whether its pages are saved in pages-N.img, and how.
    pub(crate) fn scan(&self) -> Option<ScanVma> {
        let st = self.status();
        let start = self.entry.start.unwrap_or(0);
        let end = self.entry.end.unwrap_or(0);
        let private = st & VMA_AREA_REGULAR != 0
            && st & (VMA_ANON_PRIVATE | VMA_FILE_PRIVATE) != 0
            && end <= TASK_SIZE;
        if !private || st & VMA_AREA_VVAR != 0 || self.flags() & MAP_DROPPABLE != 0 {
            return None;
        }
        let f = self.flags();
        let lazy = f & libc::MAP_ANONYMOUS as u32 != 0
            && f & libc::MAP_PRIVATE as u32 != 0
            && f & libc::MAP_LOCKED as u32 == 0
            && f & libc::MAP_HUGETLB as u32 == 0
            && st & (VMA_AREA_VDSO | VMA_AREA_VVAR | VMA_AREA_VSYSCALL) == 0;
        Some(ScanVma {
            start,
            end,
            all: st & VMA_AREA_VDSO != 0,
            lazy,
            readable: self.entry.prot.unwrap_or(0) & libc::PROT_READ as u32 != 0,
            file_private: st & VMA_FILE_PRIVATE != 0,
        })
    }
}

fn madv_and_flags(e: &SmapsEntry) -> (u64, u32, bool) {
    let mut madv = 0u64;
    let mut flags = 0u32;
    let mut io_pf = false;
    for f in e.vm_flags.iter() {
        match f {
            VmFlag::GrowsDown => flags |= libc::MAP_GROWSDOWN as u32,
            VmFlag::Locked => flags |= libc::MAP_LOCKED as u32,
            VmFlag::NoReserve => flags |= libc::MAP_NORESERVE as u32,
            VmFlag::Hugetlb => flags |= libc::MAP_HUGETLB as u32,
            VmFlag::Droppable => flags |= MAP_DROPPABLE,
            VmFlag::SeqRead => madv |= 1 << libc::MADV_SEQUENTIAL,
            VmFlag::RandRead => madv |= 1 << libc::MADV_RANDOM,
            VmFlag::DontCopy => madv |= 1 << libc::MADV_DONTFORK,
            VmFlag::DontDump => madv |= 1 << libc::MADV_DONTDUMP,
            VmFlag::Mergeable => madv |= 1 << libc::MADV_MERGEABLE,
            VmFlag::HugePage => madv |= 1 << libc::MADV_HUGEPAGE,
            VmFlag::NoHugePage => madv |= 1 << libc::MADV_NOHUGEPAGE,
            VmFlag::WipeOnFork => madv |= 1 << libc::MADV_WIPEONFORK,
            VmFlag::Io | VmFlag::PfnMap => io_pf = true,
            _ => {}
        }
    }
    (madv, flags, io_pf)
}

/// Reads the VMAs of the process, registering mapped files in `files`.
pub(crate) fn collect_vmas(proc_dir: &ProcDir, files: &mut FileTable) -> Result<Vec<DumpVma>> {
    let pid = proc_dir.pid();
    let smaps = proc_dir.smaps().map_err(proc_err(pid, "smaps"))?;
    let mut out: Vec<DumpVma> = Vec::new();
    for e in &smaps {
        let v = &e.vma;
        let unsupported = |why| DumpError::UnsupportedVma {
            pid,
            start: v.start,
            end: v.end,
            why,
        };
        let mut prot = 0u32;
        if v.perms.read {
            prot |= libc::PROT_READ as u32;
        }
        if v.perms.write {
            prot |= libc::PROT_WRITE as u32;
        }
        if v.perms.exec {
            prot |= libc::PROT_EXEC as u32;
        }
        let (madv, vmflags, io_pf) = madv_and_flags(e);
        let shared = v.perms.shared;
        let mut flags = vmflags
            | if shared {
                libc::MAP_SHARED as u32
            } else {
                libc::MAP_PRIVATE as u32
            };
        let mut entry = Vma_entry {
            start: Some(v.start),
            end: Some(v.end),
            pgoff: Some(v.offset),
            shmid: Some(0),
            fd: Some(-1),
            ..Default::default()
        };
        let anon_status = if shared {
            VMA_ANON_SHARED
        } else {
            VMA_ANON_PRIVATE
        };
        let mut status = match &v.name {
            VmaName::Vsyscall => VMA_AREA_VSYSCALL,
            VmaName::Vdso => {
                let rx = (libc::PROT_READ | libc::PROT_EXEC) as u32;
                VMA_AREA_REGULAR | if prot & rx == rx { VMA_AREA_VDSO } else { 0 }
            }
            VmaName::Vvar | VmaName::VvarVclock => {
                VMA_AREA_REGULAR
                    | if prot & libc::PROT_READ as u32 != 0 {
                        VMA_AREA_VVAR
                    } else {
                        0
                    }
            }
            VmaName::Heap => VMA_AREA_REGULAR | VMA_AREA_HEAP,
            VmaName::Anonymous
            | VmaName::Stack
            | VmaName::ThreadStack(_)
            | VmaName::AnonNamed(_) => VMA_AREA_REGULAR,
            VmaName::AnonShmemNamed(_) => return Err(unsupported("shared anonymous memory")),
            VmaName::Special(_) => return Err(unsupported("special mapping")),
            // MAP_SHARED|MAP_ANONYMOUS: a shmem object the kernel names "/dev/zero
            // (deleted)"; its inode is the object's id, shared by every process mapping it.
            VmaName::File { path, deleted }
                if shared && *deleted && path.as_os_str() == "/dev/zero" =>
            {
                entry.shmid = Some(v.inode);
                flags |= libc::MAP_ANONYMOUS as u32;
                VMA_AREA_REGULAR | VMA_ANON_SHARED
            }
            // An attach of a SysV shared memory segment: the inode is the segment id.
            VmaName::File { path, .. } if shared && path.to_string_lossy().starts_with("/SYSV") => {
                let id = u32::try_from(v.inode)
                    .map_err(|_| unsupported("SysV segment id above 32 bits"))?;
                files.sysv.saw(id);
                entry.shmid = Some(u64::from(id));
                // As CRIU marks it: shared anonymous memory that is a SysV attach (CRIU's
                // restore collects it as shared memory first, then sees the SysV bit).
                flags |= libc::MAP_ANONYMOUS as u32;
                VMA_AREA_REGULAR | VMA_ANON_SHARED | VMA_AREA_SYSVIPC
            }
            // A mapping of a memfd: its inode saved once, the VMA names a MEMFD file.
            VmaName::File { path, .. } if path.to_string_lossy().starts_with("/memfd:") => {
                let link = proc_dir
                    .path()
                    .join(format!("map_files/{:x}-{:x}", v.start, v.end));
                let file = open_link(&link, pid)?;
                // As the file was opened (a read-only shared mapping of a read-write file
                // may be mprotect'ed writable later), as CRIU records it.
                let fdflags = proc_dir
                    .map_file_access(v.start, v.end)
                    .map_err(proc_err(pid, "map_files link mode"))?
                    as u32;
                let shown = proc_dir
                    .map_file_link(v.start, v.end)
                    .map_err(proc_err(pid, "map_files link"))?;
                let id = files.memfd_mapping(&shown, &file, &link, fdflags)?;
                entry.shmid = Some(u64::from(id));
                entry.fdflags = Some(fdflags);
                let kind = if shared {
                    VMA_FILE_SHARED
                } else {
                    VMA_FILE_PRIVATE
                };
                VMA_AREA_REGULAR | kind | VMA_AREA_MEMFD
            }
            VmaName::File { path, .. } => {
                let s = path.to_string_lossy();
                if s.starts_with("/SYSV") || (shared && s.starts_with("/dev/zero")) {
                    return Err(unsupported("shared anonymous memory"));
                }
                let link = proc_dir
                    .path()
                    .join(format!("map_files/{:x}-{:x}", v.start, v.end));
                let file = open_link(&link, pid)?;
                let md = file.metadata().map_err(|source| DumpError::File {
                    what: "stat of mapped file",
                    path: link.clone(),
                    source,
                })?;
                use std::os::unix::fs::FileTypeExt;
                let ft = md.file_type();
                let devzero = ft.is_char_device() && md.rdev() == nix::sys::stat::makedev(1, 5);
                if !ft.is_file() && !devzero {
                    return Err(unsupported("mapping of a device"));
                }
                // As the file was opened (a read-only shared mapping of a read-write file
                // may be mprotect'ed writable later), as CRIU records it.
                let fdflags = proc_dir
                    .map_file_access(v.start, v.end)
                    .map_err(proc_err(pid, "map_files link mode"))?
                    as u32;
                // The kernel's name, with " (deleted)" for an unlinked file.
                let shown = proc_dir
                    .map_file_link(v.start, v.end)
                    .map_err(proc_err(pid, "map_files link"))?;
                let id = files.special(&shown, &file, fdflags)?;
                entry.shmid = Some(id as u64);
                entry.fdflags = Some(fdflags);
                VMA_AREA_REGULAR
                    | if shared {
                        VMA_FILE_SHARED
                    } else {
                        VMA_FILE_PRIVATE
                    }
            }
        };
        if !matches!(v.name, VmaName::File { .. }) {
            status |= anon_status;
            flags |= libc::MAP_ANONYMOUS as u32;
            if shared {
                return Err(unsupported("shared anonymous memory"));
            }
        }
        if io_pf && status & (VMA_AREA_VVAR | VMA_FILE_SHARED) == 0 {
            return Err(unsupported("VM_IO/VM_PFNMAP mapping"));
        }
        if flags & MAP_DROPPABLE != 0 {
            flags &= !(libc::MAP_PRIVATE as u32);
        }
        entry.prot = Some(prot);
        entry.flags = Some(flags);
        entry.status = Some(status);
        if madv != 0 {
            entry.madv = Some(madv);
        }
        // The split vDSO data pages ([vvar] then [vvar_vclock]) are one VVAR area.
        if status & VMA_AREA_VVAR != 0 {
            if let Some(prev) = out.last_mut() {
                if prev.status() & VMA_AREA_VVAR != 0 && prev.entry.end == Some(v.start) {
                    prev.entry.end = Some(v.end);
                    continue;
                }
            }
        }
        out.push(DumpVma { entry });
    }
    Ok(out)
}

/// Words of /proc/PID/auxv as mm.img keeps them (see [`auxv_words`]).
pub(crate) fn saved_auxv(proc_dir: &ProcDir) -> Result<Vec<u64>> {
    let pid = proc_dir.pid();
    let raw = proc_dir.read("auxv").map_err(proc_err(pid, "auxv"))?;
    Ok(auxv_words(&raw))
}

/// The most auxv words CRIU 4.2 restores on x86-64 (its `AT_VECTOR_SIZE`): it refuses an
/// mm.img with more ("Image corrupted").
pub(crate) const CRIU_AUXV_WORDS: usize = 44;

/// The auxv words of raw /proc/PID/auxv bytes: key, value pairs ending with the AT_NULL
/// pair. When there are more than CRIU can restore, the terminating AT_NULL pair is left
/// out: the kernel ends a vector set with PR_SET_MM_MAP with AT_NULL itself, so the
/// process gets back the same vector (Linux 6.18 gives 23 pairs, 46 words; CRIU's own
/// dumps here keep the first 44 words, which is the same cut). A vector still too long
/// keeps every pair (crs restores it, CRIU cannot).
pub(crate) fn auxv_words(raw: &[u8]) -> Vec<u64> {
    let mut words: Vec<u64> = raw
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().expect("8 bytes")))
        .collect();
    while words.len() > CRIU_AUXV_WORDS && words.len() >= 2 && words[words.len() - 2..] == [0, 0] {
        words.truncate(words.len() - 2);
    }
    words
}

/// The id of the exe file, shared with its mapping when it is mapped.
pub(crate) fn exe_file_id(proc_dir: &ProcDir, files: &mut FileTable) -> Result<u32> {
    let pid = proc_dir.pid();
    let shown = proc_dir.exe().map_err(proc_err(pid, "exe link"))?;
    let file = open_link(&proc_dir.path().join("exe"), pid)?;
    let _ = file.metadata().map(|m| m.ino());
    files.special(&shown, &file, libc::O_RDONLY as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(words: &[u64]) -> Vec<u8> {
        words.iter().flat_map(|w| w.to_ne_bytes()).collect()
    }

    #[test]
    fn auxv_of_46_words_loses_only_its_terminator() {
        let mut v: Vec<u64> = (1..=22).flat_map(|k| [k, k * 100]).collect();
        v.extend([0, 0]);
        assert_eq!(v.len(), 46);
        let got = auxv_words(&bytes(&v));
        assert_eq!(got.len(), CRIU_AUXV_WORDS);
        assert_eq!(got[..], v[..44]);
    }

    #[test]
    fn auxv_that_fits_keeps_its_terminator() {
        let mut v: Vec<u64> = (1..=10).flat_map(|k| [k, k]).collect();
        v.extend([0, 0]);
        assert_eq!(auxv_words(&bytes(&v)), v);
    }

    #[test]
    fn auxv_too_long_even_without_terminator_keeps_every_pair() {
        let mut v: Vec<u64> = (1..=30).flat_map(|k| [k, k]).collect();
        v.extend([0, 0]);
        assert_eq!(auxv_words(&bytes(&v)), v[..60]);
    }

    #[test]
    fn auxv_with_a_torn_tail_ignores_the_partial_word() {
        let mut raw = bytes(&[6, 4096, 0, 0]);
        raw.extend([1, 2, 3]);
        assert_eq!(auxv_words(&raw), vec![6, 4096, 0, 0]);
    }
}
