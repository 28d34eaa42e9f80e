//! VMAs: validating the dumped list, and rebuilding the address space of the new task
//! (unmapping crs's own mappings, moving the vDSO, mapping every VMA, madvise, prot).

use crs_proc::{Vma as MapsVma, VmaName};

use crate::images::{Images, PAGE, TASK_SIZE};
use crate::remote::{Batch, Remote};
use crate::RestoreError;

// VMA status bits (CRIU's VMA_AREA_*).
const AREA_REGULAR: u32 = 1 << 0;
const AREA_VSYSCALL: u32 = 1 << 2;
const AREA_VDSO: u32 = 1 << 3;
const FILE_PRIVATE: u32 = 1 << 6;
const FILE_SHARED: u32 = 1 << 7;
const ANON_SHARED: u32 = 1 << 8;
const ANON_PRIVATE: u32 = 1 << 9;
const AREA_VVAR: u32 = 1 << 12;
const AREA_MEMFD: u32 = 1 << 14;
const AREA_SYSVIPC: u32 = 1 << 10;
/// SOCKET, AIORING, SHSTK, UPROBES, UNSUPP.
const UNSUPPORTED: u32 = (1 << 11) | (1 << 13) | (1 << 15) | (1 << 17) | (1 << 31);

/// What a dumped VMA is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Anon,
    /// MAP_SHARED|MAP_ANONYMOUS: a mapping of shared object `shmid` (one object for every
    /// process that maps it).
    AnonShared {
        shmid: u64,
    },
    FilePrivate,
    FileShared,
    /// A mapping (shared or private, see `flags`) of the memfd opened by MEMFD file
    /// `file_id` (see `memfd`).
    Memfd {
        file_id: u32,
    },
    /// An attach of SysV shared memory segment `id` (see `sysv`).
    SysvShm {
        id: u32,
    },
    Vdso,
    Vvar,
    Vsyscall,
}

/// One dumped VMA, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Vma {
    pub start: u64,
    pub end: u64,
    pub prot: u32,
    pub flags: u32,
    pub kind: Kind,
    pub file_id: Option<u32>,
    pub pgoff: u64,
    pub fdflags: u32,
    pub madv: u64,
}

impl Vma {
    fn special(&self) -> bool {
        matches!(self.kind, Kind::Vdso | Kind::Vvar | Kind::Vsyscall)
    }
}

/// Checks the VMAs of `mm` (sorted, disjoint, aligned, in user space, of a kind crs
/// restores) and returns them.
pub(crate) fn parse(
    image: &str,
    mm: &crs_images::pb::mm::Mm_entry,
) -> Result<Vec<Vma>, RestoreError> {
    let bad = |what: String| RestoreError::Invalid {
        image: image.to_string(),
        what,
    };
    let mut out: Vec<Vma> = Vec::with_capacity(mm.vmas.len());
    for v in &mm.vmas {
        let (start, end, status) = (v.start(), v.end(), v.status());
        let range = format!("VMA {start:#x}-{end:#x}");
        if start % PAGE != 0 || end % PAGE != 0 || start >= end {
            return Err(bad(format!("{range}: unaligned or empty")));
        }
        if let Some(prev) = out.last() {
            if start < prev.end {
                return Err(bad(format!(
                    "{range}: overlaps or precedes the VMA before it"
                )));
            }
        }
        let kind = if status & AREA_VSYSCALL != 0 {
            Kind::Vsyscall
        } else if status & AREA_VDSO != 0 {
            Kind::Vdso
        } else if status & AREA_VVAR != 0 {
            Kind::Vvar
        } else if status & UNSUPPORTED != 0 {
            return Err(RestoreError::Unsupported {
                what: format!("{image}: {range} with status {status:#x}"),
            });
        } else if status & AREA_REGULAR == 0 {
            return Err(bad(format!(
                "{range}: status {status:#x} without VMA_AREA_REGULAR"
            )));
        } else if status & AREA_SYSVIPC != 0 {
            if v.flags() & libc::MAP_SHARED as u32 == 0 {
                return Err(bad(format!(
                    "{range}: SysV shared memory without MAP_SHARED"
                )));
            }
            if v.pgoff() != 0 {
                return Err(RestoreError::Unsupported {
                    what: format!(
                        "{image}: {range}: a part (offset {:#x}) of a SysV segment",
                        v.pgoff()
                    ),
                });
            }
            Kind::SysvShm {
                id: u32::try_from(v.shmid())
                    .map_err(|_| bad(format!("{range}: SysV segment id {}", v.shmid())))?,
            }
        } else if status & AREA_MEMFD != 0 {
            if status & (FILE_SHARED | FILE_PRIVATE) == 0 {
                return Err(bad(format!(
                    "{range}: memfd status {status:#x} without a file kind"
                )));
            }
            Kind::Memfd {
                file_id: u32::try_from(v.shmid())
                    .map_err(|_| bad(format!("{range}: file id {}", v.shmid())))?,
            }
        } else if status & ANON_SHARED != 0 {
            if v.flags() & libc::MAP_SHARED as u32 == 0 {
                return Err(bad(format!("{range}: shared anonymous without MAP_SHARED")));
            }
            Kind::AnonShared { shmid: v.shmid() }
        } else if status & FILE_PRIVATE != 0 {
            Kind::FilePrivate
        } else if status & FILE_SHARED != 0 {
            Kind::FileShared
        } else if status & ANON_PRIVATE != 0 {
            Kind::Anon
        } else {
            return Err(bad(format!("{range}: status {status:#x} names no kind")));
        };
        // The vsyscall page is the kernel's, above user space; everything else is below.
        if kind == Kind::Vsyscall {
            if start < TASK_SIZE {
                return Err(bad(format!("{range}: a vsyscall area inside user space")));
            }
        } else if end > TASK_SIZE {
            return Err(bad(format!("{range}: beyond user space")));
        }
        let file_id = match kind {
            Kind::FilePrivate | Kind::FileShared => Some(
                u32::try_from(v.shmid())
                    .map_err(|_| bad(format!("{range}: file id {}", v.shmid())))?,
            ),
            _ => None,
        };
        if v.prot() & !(libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u32 != 0 {
            return Err(bad(format!("{range}: prot {:#x}", v.prot())));
        }
        out.push(Vma {
            start,
            end,
            prot: v.prot(),
            flags: v.flags(),
            kind,
            file_id,
            pgoff: v.pgoff(),
            fdflags: v.fdflags(),
            madv: v.madv(),
        });
    }
    Ok(out)
}

/// Whether `[start, end)` is covered by consecutive VMAs of `vmas` (sorted).
pub(crate) fn covered(vmas: &[Vma], start: u64, end: u64) -> bool {
    let mut at = start;
    let first = vmas.partition_point(|v| v.end <= start);
    for v in &vmas[first..] {
        if v.start > at {
            return false;
        }
        at = v.end;
        if at >= end {
            return true;
        }
    }
    false
}

/// Whether any page run touches `v`.
fn has_pages(images: &Images, v: &Vma) -> bool {
    let i = images.runs.partition_point(|r| r.addr + r.len <= v.start);
    images.runs.get(i).is_some_and(|r| r.addr < v.end)
}

/// The kernel's special mappings in the new task: [vvar], [vvar_vclock], [vdso].
fn vdso_pieces(maps: &[MapsVma]) -> Vec<(u64, u64)> {
    maps.iter()
        .filter(|m| matches!(m.name, VmaName::Vdso | VmaName::Vvar | VmaName::VvarVclock))
        .map(|m| (m.start, m.end))
        .collect()
}

/// Unmaps everything of crs in the new task except the trampoline and the vDSO pieces.
pub(crate) fn unmap_crs(
    r: &mut Remote<'_>,
    maps: &[MapsVma],
    tramp_len: u64,
) -> Result<(), RestoreError> {
    let mut keep = vdso_pieces(maps);
    keep.push((r.trampoline, r.trampoline + tramp_len));
    keep.sort();
    let top = maps
        .iter()
        .filter(|m| m.end <= TASK_SIZE)
        .map(|m| m.end)
        .max()
        .unwrap_or(TASK_SIZE);
    let mut at = 0u64;
    let mut batch = Batch::default();
    for (s, e) in keep.into_iter().chain([(top, top)]) {
        if s > at {
            batch.push(libc::SYS_munmap, [at, s - at, 0, 0, 0, 0], move || {
                format!("munmap {at:#x}-{s:#x}")
            });
        }
        at = at.max(e);
    }
    r.run(batch)?;
    Ok(())
}

/// Moves the new task's vvar+vdso block to where the image had it.
pub(crate) fn move_vdso(
    r: &mut Remote<'_>,
    images: &Images,
    maps: &[MapsVma],
    tramp_len: u64,
) -> Result<(), RestoreError> {
    let pieces = vdso_pieces(maps);
    let dumped: Vec<&Vma> = images
        .vmas
        .iter()
        .filter(|v| matches!(v.kind, Kind::Vdso | Kind::Vvar))
        .collect();
    let (Some(cs), Some(ce)) = (
        pieces.iter().map(|p| p.0).min(),
        pieces.iter().map(|p| p.1).max(),
    ) else {
        if dumped.is_empty() {
            return Ok(());
        }
        return Err(RestoreError::VdsoMismatch {
            pid: r.pid,
            image: dumped.iter().map(|v| v.end - v.start).sum(),
            here: 0,
        });
    };
    if dumped.is_empty() {
        let mut batch = Batch::default();
        for (s, e) in pieces {
            batch.push(libc::SYS_munmap, [s, e - s, 0, 0, 0, 0], move || {
                format!("munmap of the vdso piece {s:#x}-{e:#x}")
            });
        }
        r.run(batch)?;
        return Ok(());
    }
    let ds = dumped.iter().map(|v| v.start).min().expect("non-empty");
    let de = dumped.iter().map(|v| v.end).max().expect("non-empty");
    let here_vdso = maps
        .iter()
        .find(|m| m.name == VmaName::Vdso)
        .map(|m| m.start - cs);
    let image_vdso = dumped
        .iter()
        .find(|v| v.kind == Kind::Vdso)
        .map(|v| v.start - ds);
    if ce - cs != de - ds || here_vdso != image_vdso {
        return Err(RestoreError::VdsoMismatch {
            pid: r.pid,
            image: de - ds,
            here: ce - cs,
        });
    }
    if cs == ds {
        return Ok(());
    }
    let size = ce - cs;
    let mut from = cs;
    let mut batch = Batch::default();
    if cs < de && ds < ce {
        // Overlapping: go through a free spot next to the trampoline first.
        let mut tmp = r.trampoline + tramp_len;
        if tmp < ce.max(de) && cs.min(ds) < tmp + size {
            tmp = r.trampoline - size;
        }
        mremap_block(&mut batch, &pieces, from, tmp);
        from = tmp;
    }
    mremap_block(&mut batch, &pieces, from, ds);
    r.run(batch)?;
    Ok(())
}

fn mremap_block(batch: &mut Batch<'_>, pieces: &[(u64, u64)], from: u64, to: u64) {
    let base = pieces.iter().map(|p| p.0).min().unwrap_or(0);
    for &(s, e) in pieces {
        let old = s - base + from;
        let new = s - base + to;
        let len = e - s;
        batch.push(
            libc::SYS_mremap,
            [
                old,
                len,
                len,
                (libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED) as u64,
                new,
                0,
            ],
            move || {
                format!(
                    "mremap of the vdso piece {old:#x}-{:#x} to {new:#x}",
                    old + len
                )
            },
        );
    }
}

/// A file a VMA maps, opened in the task for the mmap and closed after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum MapFd {
    /// Shared anonymous object `shmid` (crs made and filled it).
    Shmem(u64),
    /// memfd `file_id` with this access mode.
    Memfd(u32, u32),
    /// Regular file `id` with this access mode.
    File(u32, u32),
}

/// Maps every dumped VMA at its address; VMAs that get pages are writable until
/// [`finish_prot`]. Applies madvise bits. Shared anonymous VMAs map the object crs made for
/// them (`shmem`), opened in the task through `/proc/<crs>/fd/<n>`.
///
/// Three batches of injected syscalls: the opens of the files mapped (more when their
/// paths do not fit the scratch area together), then every mmap, shmat and madvise
/// followed by the closes.
pub(crate) fn map_all(
    r: &mut Remote<'_>,
    images: &Images,
    shmem: &crate::shmem::Objects,
    memfds: &crate::memfd::Objects,
    sysv_sizes: &std::collections::BTreeMap<u32, u64>,
) -> Result<(), RestoreError> {
    struct Plan<'v> {
        v: &'v Vma,
        prot: u32,
        flags: i32,
        fd: Option<MapFd>,
    }
    let mut plans = Vec::new();
    let mut wanted: Vec<(MapFd, String, u32, String)> = Vec::new();
    for v in images.vmas.iter().filter(|v| !v.special()) {
        let writable_for_fill = has_pages(images, v) && v.prot & libc::PROT_WRITE as u32 == 0;
        let shared = v.flags & libc::MAP_SHARED as u32 != 0;
        let shared_kind = matches!(v.kind, Kind::FileShared | Kind::AnonShared { .. })
            || matches!(v.kind, Kind::Memfd { .. }) && shared;
        if writable_for_fill && shared_kind {
            return Err(RestoreError::Invalid {
                image: "pagemap".into(),
                what: format!(
                    "pages dumped for the shared file mapping {:#x}-{:#x}",
                    v.start, v.end
                ),
            });
        }
        let prot = if writable_for_fill {
            v.prot | libc::PROT_WRITE as u32
        } else {
            v.prot
        };
        let mut flags = (v.flags as i32 | libc::MAP_FIXED) & !libc::MAP_FIXED_NOREPLACE;
        let fd = match (v.file_id, v.kind) {
            (_, Kind::SysvShm { .. }) => None,
            (None, Kind::AnonShared { shmid }) => {
                // The object crs created and filled: mapped through its fd, not anew.
                flags &= !libc::MAP_ANONYMOUS;
                let key = MapFd::Shmem(shmid);
                if !wanted.iter().any(|w| w.0 == key) {
                    let theirs = shmem.fd_path(shmid)?;
                    let what = format!("opening shared memory {shmid} ({theirs}) to map it");
                    wanted.push((key, theirs, libc::O_RDWR as u32, what));
                }
                Some(key)
            }
            (None, Kind::Memfd { file_id }) => {
                let acc = if shared && v.prot & libc::PROT_WRITE as u32 != 0 {
                    libc::O_RDWR as u32
                } else {
                    libc::O_RDONLY as u32
                };
                let key = MapFd::Memfd(file_id, acc);
                if !wanted.iter().any(|w| w.0 == key) {
                    let theirs = memfds.fd_path(file_id)?;
                    let what = format!("opening memfd {file_id} ({theirs}) to map it");
                    wanted.push((key, theirs, acc, what));
                }
                Some(key)
            }
            (None, _) => None,
            (Some(id), _) => {
                let acc = if v.kind == Kind::FileShared {
                    v.fdflags & libc::O_ACCMODE as u32
                } else {
                    libc::O_RDONLY as u32
                };
                let key = MapFd::File(id, acc);
                if !wanted.iter().any(|w| w.0 == key) {
                    let path = crate::files::open_path(images, id);
                    let what = format!("opening {path} to map it");
                    wanted.push((key, path, acc, what));
                }
                Some(key)
            }
        };
        plans.push(Plan { v, prot, flags, fd });
    }

    let fds = open_all(r, wanted)?;
    let fd_of = |key: Option<MapFd>| {
        key.and_then(|k| fds.iter().find(|f| f.0 == k))
            .map_or(u64::MAX, |f| f.1 as u64)
    };

    let mut batch = Batch::default();
    // (index of the mmap/shmat in the batch, VMA, what it is).
    let mut placed = Vec::new();
    for p in &plans {
        let v = p.v;
        if let Kind::SysvShm { id } = v.kind {
            placed.push((batch.len(), v, Some(id)));
            let size = *sysv_sizes
                .get(&id)
                .ok_or_else(|| RestoreError::SharedMemory {
                    shmid: u64::from(id),
                    what: "finding the dumped size of",
                    source: std::io::ErrorKind::NotFound.into(),
                })?;
            attach_sysv(&mut batch, v, id, size);
            continue;
        }
        let (prot, flags) = (p.prot, p.flags);
        let off = if v.file_id.is_some()
            || matches!(v.kind, Kind::AnonShared { .. } | Kind::Memfd { .. })
        {
            v.pgoff
        } else {
            0
        };
        let len = v.end - v.start;
        placed.push((batch.len(), v, None));
        batch.push(
            libc::SYS_mmap,
            [
                v.start,
                len,
                u64::from(prot),
                flags as u32 as u64,
                fd_of(p.fd),
                off,
            ],
            move || {
                format!(
                    "mmap of VMA {:#x}-{:#x} (prot {prot:#x} flags {flags:#x})",
                    v.start, v.end
                )
            },
        );
        for bit in 0..64u32 {
            if v.madv & (1 << bit) != 0 {
                batch.push(
                    libc::SYS_madvise,
                    [v.start, len, u64::from(bit), 0, 0, 0],
                    move || format!("madvise({bit}) of VMA {:#x}-{:#x}", v.start, v.end),
                );
            }
        }
    }
    for &(_, fd) in &fds {
        batch.push(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0], move || {
            format!("close of mapping fd {fd}")
        });
    }
    let results = r.run(batch)?;
    for (i, v, sysv) in placed {
        let got = results[i];
        if got as u64 == v.start {
            continue;
        }
        let what = match sysv {
            Some(id) => format!(
                "shmat of SysV segment {id} landed at {got:#x}, not {:#x}",
                v.start
            ),
            None => format!("mmap of VMA {:#x} landed at {got:#x}", v.start),
        };
        return Err(RestoreError::Syscall {
            pid: r.pid,
            what,
            errno: 0,
        });
    }
    Ok(())
}

/// Opens `wanted` (key, path, access mode, what) in the task, as few batches as their
/// paths allow; returns each key's fd.
fn open_all(
    r: &mut Remote<'_>,
    wanted: Vec<(MapFd, String, u32, String)>,
) -> Result<Vec<(MapFd, i64)>, RestoreError> {
    let mut out = Vec::with_capacity(wanted.len());
    let mut rest = wanted.into_iter().peekable();
    while rest.peek().is_some() {
        let room = r.batch_room();
        let mut batch = Batch::default();
        let mut keys = Vec::new();
        let mut off = 0usize;
        while let Some((_, path, _, _)) = rest.peek() {
            let need = (path.len() + 1).next_multiple_of(8);
            if off + need > room && !keys.is_empty() {
                break;
            }
            let (key, path, acc, what) = rest.next().expect("peeked");
            let mut b = path.into_bytes();
            b.push(0);
            let p = r.put_for_batch(off, &b)?;
            off += need;
            batch.push(
                libc::SYS_openat,
                [
                    libc::AT_FDCWD as u64,
                    p,
                    u64::from(acc) | (libc::O_CLOEXEC | libc::O_LARGEFILE) as u64,
                    0,
                    0,
                    0,
                ],
                move || what,
            );
            keys.push(key);
        }
        let fds = r.run(batch)?;
        out.extend(keys.into_iter().zip(fds));
    }
    Ok(out)
}

/// Adds the attach of SysV segment `id` (of `size` bytes) at the VMA's address with its
/// protection; the part of the segment past the VMA's end (a shorter VMA: the rest was
/// unmapped) is unmapped again.
fn attach_sysv<'v>(batch: &mut Batch<'v>, v: &'v Vma, id: u32, size: u64) {
    let mut flg = SHM_REMAP;
    if v.prot & libc::PROT_WRITE as u32 == 0 {
        flg |= libc::SHM_RDONLY as u64;
    }
    if v.prot & libc::PROT_EXEC as u32 != 0 {
        flg |= SHM_EXEC;
    }
    batch.push(
        libc::SYS_shmat,
        [u64::from(id), v.start, flg, 0, 0, 0],
        move || format!("shmat of SysV segment {id} at {:#x}", v.start),
    );
    let seg_end = v.start + size.div_ceil(PAGE) * PAGE;
    if seg_end > v.end {
        batch.push(
            libc::SYS_munmap,
            [v.end, seg_end - v.end, 0, 0, 0, 0],
            move || format!("unmapping the part of SysV segment {id} past {:#x}", v.end),
        );
    }
}

/// shmat flags libc does not name for x86_64.
const SHM_REMAP: u64 = 0o40000;
const SHM_EXEC: u64 = 0o100000;

/// Puts back the dumped protection of VMAs that were made writable for the page fill.
pub(crate) fn finish_prot(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    let mut batch = Batch::default();
    for v in images.vmas.iter().filter(|v| !v.special()) {
        if has_pages(images, v) && v.prot & libc::PROT_WRITE as u32 == 0 {
            batch.push(
                libc::SYS_mprotect,
                [v.start, v.end - v.start, u64::from(v.prot), 0, 0, 0],
                move || {
                    format!(
                        "mprotect of VMA {:#x}-{:#x} to {:#x}",
                        v.start, v.end, v.prot
                    )
                },
            );
        }
    }
    r.run(batch)?;
    Ok(())
}

/// Whether `v` is a vDSO/vvar VMA (its pages are never written: the kernel provides them).
pub(crate) fn is_vdso(v: &Vma) -> bool {
    matches!(v.kind, Kind::Vdso | Kind::Vvar | Kind::Vsyscall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(start: u64, end: u64) -> Vma {
        Vma {
            start,
            end,
            prot: 3,
            flags: 0x22,
            kind: Kind::Anon,
            file_id: None,
            pgoff: 0,
            fdflags: 0,
            madv: 0,
        }
    }

    fn mm_with(status: u32, flags: u32) -> crs_images::pb::mm::Mm_entry {
        crs_images::pb::mm::Mm_entry {
            vmas: vec![crs_images::pb::vma::Vma_entry {
                start: Some(0x10000),
                end: Some(0x20000),
                pgoff: Some(0x3000),
                shmid: Some(1034),
                prot: Some(3),
                flags: Some(flags),
                status: Some(status),
                fd: Some(-1),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn parse_anon_shared_kind_carries_shmid() {
        let mm = mm_with(AREA_REGULAR | ANON_SHARED, 0x21);
        let v = parse("mm-1.img", &mm).unwrap();
        assert_eq!(v[0].kind, Kind::AnonShared { shmid: 1034 });
        assert_eq!(v[0].pgoff, 0x3000);
        assert_eq!(v[0].file_id, None);
    }

    #[test]
    fn parse_anon_shared_without_map_shared_is_invalid() {
        let mm = mm_with(AREA_REGULAR | ANON_SHARED, 0x22);
        assert!(matches!(
            parse("mm-1.img", &mm),
            Err(RestoreError::Invalid { .. })
        ));
    }

    fn vsyscall_at(start: u64, end: u64) -> crs_images::pb::mm::Mm_entry {
        let mut mm = mm_with(AREA_VSYSCALL | ANON_PRIVATE, 0x22);
        mm.vmas[0].start = Some(start);
        mm.vmas[0].end = Some(end);
        mm
    }

    #[test]
    fn parse_vsyscall_above_user_space_is_accepted() {
        let mm = vsyscall_at(0xffff_ffff_ff60_0000, 0xffff_ffff_ff60_1000);
        assert_eq!(parse("mm-1.img", &mm).unwrap()[0].kind, Kind::Vsyscall);
    }

    #[test]
    fn parse_vsyscall_inside_user_space_is_invalid() {
        // Its end would have been taken as the top of the dumped layout (the trampoline's
        // search overflowed past it).
        let mm = vsyscall_at(0x10000, 0xffff_ffff_ffff_f000);
        let err = parse("mm-1.img", &mm).unwrap_err();
        assert!(matches!(err, RestoreError::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("mm-1.img: VMA 0x10000-"), "{err}");
    }

    #[test]
    fn parse_unsupported_kind_names_the_image() {
        let mm = mm_with(AREA_REGULAR | (1 << 11), 0x22);
        let err = parse("mm-7.img", &mm).unwrap_err();
        assert!(matches!(err, RestoreError::Unsupported { .. }), "{err}");
        assert!(
            err.to_string().starts_with("mm-7.img: VMA 0x10000-0x20000"),
            "{err}"
        );
    }

    #[test]
    fn covered_adjacent_vmas_is_true() {
        assert!(covered(
            &[v(0x1000, 0x3000), v(0x3000, 0x5000)],
            0x2000,
            0x4000
        ));
    }

    #[test]
    fn covered_across_hole_is_false() {
        assert!(!covered(
            &[v(0x1000, 0x3000), v(0x4000, 0x5000)],
            0x2000,
            0x4800
        ));
    }

    #[test]
    fn covered_past_last_vma_is_false() {
        assert!(!covered(&[v(0x1000, 0x3000)], 0x2000, 0x4000));
    }
}
