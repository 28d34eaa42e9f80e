//! `/proc/PID/maps` and `/proc/PID/smaps`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::error::ParseError;
use crate::util::{lines, lossy, split_key, split_token, tokens, trim_start, Ctx};
use crate::ProcFile;

/// The permission column `rwxp` / `rwxs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms {
    /// `r`
    pub read: bool,
    /// `w`
    pub write: bool,
    /// `x`
    pub exec: bool,
    /// `s` (VM_MAYSHARE) rather than `p` (private).
    pub shared: bool,
}

/// The name column of a VMA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmaName {
    /// No name: private or shared anonymous memory without a name.
    Anonymous,
    /// A file mapping (including `/memfd:…`, `/dev/zero` of a shared anonymous mapping and
    /// `/SYSV…` SysV shm). `deleted` is set when the kernel appended ` (deleted)`, which is
    /// stripped from `path`; a file whose real name ends in ` (deleted)` cannot be told apart
    /// here (check `map_files/` or the inode link count).
    File {
        /// The path, with the kernel's `\012` escape decoded.
        path: PathBuf,
        /// The file was unlinked.
        deleted: bool,
    },
    /// `[heap]`
    Heap,
    /// `[stack]`
    Stack,
    /// `[stack:TID]` (kernels before 4.5).
    ThreadStack(i32),
    /// `[vdso]`
    Vdso,
    /// `[vvar]`
    Vvar,
    /// `[vvar_vclock]` (split vDSO data pages, 6.13+)
    VvarVclock,
    /// `[vsyscall]`
    Vsyscall,
    /// `[anon:NAME]` set with prctl(PR_SET_VMA_ANON_NAME).
    AnonNamed(Vec<u8>),
    /// `[anon_shmem:NAME]`
    AnonShmemNamed(Vec<u8>),
    /// Any other bracketed name (e.g. `[uprobes]`), without the brackets.
    Special(Vec<u8>),
}

/// One line of `/proc/PID/maps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vma {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Permissions and sharing.
    pub perms: Perms,
    /// File offset in bytes (page offset for anonymous memory is shown as 0 or the pgoff).
    pub offset: u64,
    /// Device major number.
    pub dev_major: u32,
    /// Device minor number.
    pub dev_minor: u32,
    /// Inode number (0 for anonymous memory).
    pub inode: u64,
    /// Name column.
    pub name: VmaName,
}

impl Vma {
    /// Length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True if the VMA covers no address (never produced by the kernel).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Decodes the `\012` escape `seq_file_path(…, "\n")` uses for newlines in paths.
fn unescape_newlines(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(br"\012") {
            out.push(b'\n');
            i += 4;
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

fn parse_name(raw: &[u8]) -> VmaName {
    if raw.is_empty() {
        return VmaName::Anonymous;
    }
    if raw.starts_with(b"[") && raw.ends_with(b"]") && raw.len() >= 2 {
        let inner = &raw[1..raw.len() - 1];
        return match inner {
            b"heap" => VmaName::Heap,
            b"stack" => VmaName::Stack,
            b"vdso" => VmaName::Vdso,
            b"vvar" => VmaName::Vvar,
            b"vvar_vclock" => VmaName::VvarVclock,
            b"vsyscall" => VmaName::Vsyscall,
            _ => {
                if let Some(n) = inner.strip_prefix(b"anon:") {
                    VmaName::AnonNamed(n.to_vec())
                } else if let Some(n) = inner.strip_prefix(b"anon_shmem:") {
                    VmaName::AnonShmemNamed(n.to_vec())
                } else if let Some(tid) = inner
                    .strip_prefix(b"stack:")
                    .and_then(crate::util::parse_signed)
                    .and_then(|t| i32::try_from(t).ok())
                {
                    VmaName::ThreadStack(tid)
                } else {
                    VmaName::Special(inner.to_vec())
                }
            }
        };
    }
    let (path, deleted) = match raw.strip_suffix(b" (deleted)") {
        Some(p) => (p, true),
        None => (raw, false),
    };
    VmaName::File {
        path: PathBuf::from(OsString::from_vec(unescape_newlines(path))),
        deleted,
    }
}

/// Parses one maps line (also the header line of an smaps entry).
fn parse_vma_line(ctx: &Ctx, line: &[u8]) -> Result<Vma, ParseError> {
    let (range, rest) = split_token(line);
    let dash = range
        .iter()
        .position(|&b| b == b'-')
        .ok_or_else(|| ctx.invalid("address range", range))?;
    let start: u64 = ctx.hex("start address", &range[..dash])?;
    let end: u64 = ctx.hex("end address", &range[dash + 1..])?;
    if end < start {
        return Err(ctx.invalid("address range", range));
    }
    let (perm, rest) = split_token(rest);
    if perm.len() != 4 {
        return Err(ctx.invalid("permissions", perm));
    }
    let bit = |i: usize, on: u8| -> Result<bool, ParseError> {
        match perm[i] {
            b'-' => Ok(false),
            c if c == on => Ok(true),
            _ => Err(ctx.invalid("permissions", perm)),
        }
    };
    let shared = match perm[3] {
        b's' => true,
        b'p' => false,
        _ => return Err(ctx.invalid("permissions", perm)),
    };
    let perms = Perms {
        read: bit(0, b'r')?,
        write: bit(1, b'w')?,
        exec: bit(2, b'x')?,
        shared,
    };
    let (off, rest) = split_token(rest);
    let offset: u64 = ctx.hex("offset", off)?;
    let (dev, rest) = split_token(rest);
    let colon = dev
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| ctx.invalid("device", dev))?;
    let dev_major: u32 = ctx.hex("device", &dev[..colon])?;
    let dev_minor: u32 = ctx.hex("device", &dev[colon + 1..])?;
    // The inode is followed by padding spaces and the name; the name itself may contain
    // spaces, so it is everything after the padding.
    let rest = trim_start(rest);
    let ino_end = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(rest.len());
    let inode: u64 = ctx.dec("inode", &rest[..ino_end])?;
    let name = parse_name(trim_start(&rest[ino_end..]));
    Ok(Vma {
        start,
        end,
        perms,
        offset,
        dev_major,
        dev_minor,
        inode,
        name,
    })
}

/// Parses `/proc/PID/maps`.
pub fn parse_maps(bytes: &[u8]) -> Result<Vec<Vma>, ParseError> {
    lines(bytes)
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, l)| parse_vma_line(&Ctx::line(ProcFile::Maps, n), l))
        .collect()
}

/// One flag of smaps' `VmFlags:` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VmFlag {
    /// `rd` readable
    Read,
    /// `wr` writable
    Write,
    /// `ex` executable
    Exec,
    /// `sh` shared
    Shared,
    /// `mr` may read
    MayRead,
    /// `mw` may write
    MayWrite,
    /// `me` may execute
    MayExec,
    /// `ms` may share
    MayShare,
    /// `gd` stack segment grows down
    GrowsDown,
    /// `pf` pure PFN range
    PfnMap,
    /// `dw` disabled write to the mapped file (old kernels)
    DenyWrite,
    /// `lo` pages are locked in memory
    Locked,
    /// `io` memory-mapped I/O area
    Io,
    /// `sr` sequential read advice
    SeqRead,
    /// `rr` random read advice
    RandRead,
    /// `dc` do not copy on fork (MADV_DONTFORK)
    DontCopy,
    /// `de` do not expand on remap
    DontExpand,
    /// `lf` lock on fault
    LockOnFault,
    /// `ac` accountable
    Account,
    /// `nr` swap space not reserved
    NoReserve,
    /// `ht` hugetlb
    Hugetlb,
    /// `sf` synchronous page faults
    Sync,
    /// `ar` architecture-specific
    Arch1,
    /// `wf` wipe on fork
    WipeOnFork,
    /// `dd` do not include in core dumps
    DontDump,
    /// `sd` soft dirty
    SoftDirty,
    /// `mm` mixed map
    MixedMap,
    /// `hg` huge page advice (MADV_HUGEPAGE)
    HugePage,
    /// `nh` no huge page advice (MADV_NOHUGEPAGE)
    NoHugePage,
    /// `mg` mergeable (KSM)
    Mergeable,
    /// `bt` arm64 BTI guarded
    Bti,
    /// `mt` arm64 MTE tags
    Mte,
    /// `um` userfaultfd missing-page tracking
    UffdMissing,
    /// `uw` userfaultfd write-protect tracking
    UffdWp,
    /// `ui` userfaultfd minor-fault tracking
    UffdMinor,
    /// `ss` shadow stack
    ShadowStack,
    /// `sl` sealed (mseal)
    Sealed,
    /// `dp` droppable
    Droppable,
    /// `mp` MPX bounds tables (old x86)
    Mpx,
}

const VM_FLAG_NAMES: [(VmFlag, &[u8; 2]); 39] = [
    (VmFlag::Read, b"rd"),
    (VmFlag::Write, b"wr"),
    (VmFlag::Exec, b"ex"),
    (VmFlag::Shared, b"sh"),
    (VmFlag::MayRead, b"mr"),
    (VmFlag::MayWrite, b"mw"),
    (VmFlag::MayExec, b"me"),
    (VmFlag::MayShare, b"ms"),
    (VmFlag::GrowsDown, b"gd"),
    (VmFlag::PfnMap, b"pf"),
    (VmFlag::DenyWrite, b"dw"),
    (VmFlag::Locked, b"lo"),
    (VmFlag::Io, b"io"),
    (VmFlag::SeqRead, b"sr"),
    (VmFlag::RandRead, b"rr"),
    (VmFlag::DontCopy, b"dc"),
    (VmFlag::DontExpand, b"de"),
    (VmFlag::LockOnFault, b"lf"),
    (VmFlag::Account, b"ac"),
    (VmFlag::NoReserve, b"nr"),
    (VmFlag::Hugetlb, b"ht"),
    (VmFlag::Sync, b"sf"),
    (VmFlag::Arch1, b"ar"),
    (VmFlag::WipeOnFork, b"wf"),
    (VmFlag::DontDump, b"dd"),
    (VmFlag::SoftDirty, b"sd"),
    (VmFlag::MixedMap, b"mm"),
    (VmFlag::HugePage, b"hg"),
    (VmFlag::NoHugePage, b"nh"),
    (VmFlag::Mergeable, b"mg"),
    (VmFlag::Bti, b"bt"),
    (VmFlag::Mte, b"mt"),
    (VmFlag::UffdMissing, b"um"),
    (VmFlag::UffdWp, b"uw"),
    (VmFlag::UffdMinor, b"ui"),
    (VmFlag::ShadowStack, b"ss"),
    (VmFlag::Sealed, b"sl"),
    (VmFlag::Droppable, b"dp"),
    (VmFlag::Mpx, b"mp"),
];

impl VmFlag {
    /// The two-letter mnemonic the kernel prints.
    pub fn mnemonic(self) -> &'static str {
        let m = VM_FLAG_NAMES[self as usize].1;
        // The table holds ASCII letters only.
        std::str::from_utf8(m).unwrap_or("??")
    }

    /// Looks a mnemonic up.
    pub fn from_mnemonic(m: &[u8]) -> Option<VmFlag> {
        VM_FLAG_NAMES
            .iter()
            .find(|(_, n)| &n[..] == m)
            .map(|(f, _)| *f)
    }
}

/// The set of flags of a `VmFlags:` line; mnemonics this crate does not know are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VmFlags {
    bits: u64,
    /// Mnemonics not in [`VmFlag`], in file order.
    pub unknown: Vec<String>,
}

impl VmFlags {
    /// True if `f` is set.
    pub fn contains(&self, f: VmFlag) -> bool {
        self.bits & (1u64 << f as u8) != 0
    }

    /// Adds `f`.
    pub fn insert(&mut self, f: VmFlag) {
        self.bits |= 1u64 << f as u8;
    }

    /// The known flags that are set, in [`VmFlag`] order.
    pub fn iter(&self) -> impl Iterator<Item = VmFlag> + '_ {
        VM_FLAG_NAMES
            .iter()
            .map(|(f, _)| *f)
            .filter(|f| self.contains(*f))
    }

    /// Parses the value of a `VmFlags:` line.
    pub fn parse(value: &[u8]) -> VmFlags {
        let mut out = VmFlags::default();
        for t in tokens(value) {
            match VmFlag::from_mnemonic(t) {
                Some(f) => out.insert(f),
                None => out.unknown.push(lossy(t)),
            }
        }
        out
    }
}

/// Sizes of an smaps entry, in bytes (the file shows kB). Fields the kernel did not print
/// are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmapsSizes {
    /// Size
    pub size: u64,
    /// KernelPageSize
    pub kernel_page_size: u64,
    /// MMUPageSize
    pub mmu_page_size: u64,
    /// Rss
    pub rss: u64,
    /// Pss
    pub pss: u64,
    /// Pss_Dirty
    pub pss_dirty: u64,
    /// Shared_Clean
    pub shared_clean: u64,
    /// Shared_Dirty
    pub shared_dirty: u64,
    /// Private_Clean
    pub private_clean: u64,
    /// Private_Dirty
    pub private_dirty: u64,
    /// Referenced
    pub referenced: u64,
    /// Anonymous
    pub anonymous: u64,
    /// KSM
    pub ksm: u64,
    /// LazyFree
    pub lazy_free: u64,
    /// AnonHugePages
    pub anon_huge_pages: u64,
    /// ShmemPmdMapped
    pub shmem_pmd_mapped: u64,
    /// FilePmdMapped
    pub file_pmd_mapped: u64,
    /// Shared_Hugetlb
    pub shared_hugetlb: u64,
    /// Private_Hugetlb
    pub private_hugetlb: u64,
    /// Swap
    pub swap: u64,
    /// SwapPss
    pub swap_pss: u64,
    /// Locked
    pub locked: u64,
}

/// One entry of `/proc/PID/smaps`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmapsEntry {
    /// The maps line.
    pub vma: Vma,
    /// Size fields.
    pub sizes: SmapsSizes,
    /// THPeligible:
    pub thp_eligible: Option<bool>,
    /// ProtectionKey: (x86 with PKU)
    pub protection_key: Option<u32>,
    /// VmFlags:
    pub vm_flags: VmFlags,
    /// Other `Key: value` lines, in order.
    pub unknown: Vec<(String, String)>,
}

fn is_vma_header(line: &[u8]) -> bool {
    let first = line.split(|&b| b == b' ').next().unwrap_or(&[]);
    match first.iter().position(|&b| b == b'-') {
        Some(p) => p > 0 && first[..p].iter().all(u8::is_ascii_hexdigit),
        None => false,
    }
}

/// Parses `/proc/PID/smaps`. Every entry must end up with a `VmFlags:` line.
pub fn parse_smaps(bytes: &[u8]) -> Result<Vec<SmapsEntry>, ParseError> {
    let file = ProcFile::Smaps;
    let mut out: Vec<(usize, SmapsEntry, bool)> = Vec::new();
    for (n, line) in lines(bytes) {
        let ctx = Ctx::line(file, n);
        if line.is_empty() {
            continue;
        }
        if is_vma_header(line) {
            let vma = parse_vma_line(&ctx, line)?;
            out.push((
                n,
                SmapsEntry {
                    vma,
                    sizes: SmapsSizes::default(),
                    thp_eligible: None,
                    protection_key: None,
                    vm_flags: VmFlags::default(),
                    unknown: Vec::new(),
                },
                false,
            ));
            continue;
        }
        let (_, cur, seen_flags) = out
            .last_mut()
            .ok_or_else(|| ctx.malformed("field before the first mapping line"))?;
        let (key, v) = split_key(line).ok_or_else(|| ctx.malformed("no ':' after the key"))?;
        let s = &mut cur.sizes;
        let slot: Option<&mut u64> = match key {
            b"Size" => Some(&mut s.size),
            b"KernelPageSize" => Some(&mut s.kernel_page_size),
            b"MMUPageSize" => Some(&mut s.mmu_page_size),
            b"Rss" => Some(&mut s.rss),
            b"Pss" => Some(&mut s.pss),
            b"Pss_Dirty" => Some(&mut s.pss_dirty),
            b"Shared_Clean" => Some(&mut s.shared_clean),
            b"Shared_Dirty" => Some(&mut s.shared_dirty),
            b"Private_Clean" => Some(&mut s.private_clean),
            b"Private_Dirty" => Some(&mut s.private_dirty),
            b"Referenced" => Some(&mut s.referenced),
            b"Anonymous" => Some(&mut s.anonymous),
            b"KSM" => Some(&mut s.ksm),
            b"LazyFree" => Some(&mut s.lazy_free),
            b"AnonHugePages" => Some(&mut s.anon_huge_pages),
            b"ShmemPmdMapped" => Some(&mut s.shmem_pmd_mapped),
            b"FilePmdMapped" => Some(&mut s.file_pmd_mapped),
            b"Shared_Hugetlb" => Some(&mut s.shared_hugetlb),
            b"Private_Hugetlb" => Some(&mut s.private_hugetlb),
            b"Swap" => Some(&mut s.swap),
            b"SwapPss" => Some(&mut s.swap_pss),
            b"Locked" => Some(&mut s.locked),
            _ => None,
        };
        if let Some(slot) = slot {
            let mut t = tokens(v);
            let num: u64 = ctx.dec("size", t.next().unwrap_or(&[]))?;
            if t.next() != Some(b"kB") || t.next().is_some() {
                return Err(ctx.invalid("size unit", v));
            }
            *slot = num
                .checked_mul(1024)
                .ok_or_else(|| ctx.invalid("size", v))?;
            continue;
        }
        match key {
            b"THPeligible" => {
                cur.thp_eligible = Some(match v {
                    b"0" => false,
                    b"1" => true,
                    _ => return Err(ctx.invalid("THPeligible", v)),
                })
            }
            b"ProtectionKey" => cur.protection_key = Some(ctx.dec("ProtectionKey", v)?),
            b"VmFlags" => {
                cur.vm_flags = VmFlags::parse(v);
                *seen_flags = true;
            }
            _ => cur.unknown.push((lossy(key), lossy(v))),
        }
    }
    out.into_iter()
        .map(|(n, e, seen)| {
            if seen {
                Ok(e)
            } else {
                Err(Ctx::line(file, n).missing("VmFlags: line of this mapping"))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Location, ParseErrorKind};

    const MAPS: &[u8] = include_bytes!("../tests/fixtures/zoo/maps");
    const SMAPS: &[u8] = include_bytes!("../tests/fixtures/zoo/smaps");

    fn find<'a>(v: &'a [Vma], name: &VmaName) -> &'a Vma {
        v.iter().find(|m| &m.name == name).unwrap()
    }

    #[test]
    fn maps_zoo_every_line_parsed() {
        let v = parse_maps(MAPS).unwrap();
        assert_eq!(v.len(), 34);
        let first = &v[0];
        assert_eq!((first.start, first.end), (0x5587f5408000, 0x5587f540a000));
        assert_eq!(
            first.perms,
            Perms {
                read: true,
                ..Perms::default()
            }
        );
        assert_eq!(
            (first.dev_major, first.dev_minor, first.inode),
            (0xfe, 0, 10011163)
        );
        assert_eq!(
            first.name,
            VmaName::File {
                path: "/tmp/crsproc/zoo".into(),
                deleted: false
            }
        );
        let heap = find(&v, &VmaName::Heap);
        assert!(heap.perms.write && !heap.perms.shared);
        find(&v, &VmaName::Stack);
        find(&v, &VmaName::Vdso);
        find(&v, &VmaName::Vvar);
        find(&v, &VmaName::VvarVclock);
        let vsys = find(&v, &VmaName::Vsyscall);
        assert_eq!(vsys.start, 0xffffffffff600000);
        assert!(vsys.perms.exec && !vsys.perms.read);
    }

    #[test]
    fn maps_deleted_file_with_space_parsed() {
        let v = parse_maps(MAPS).unwrap();
        let d = find(
            &v,
            &VmaName::File {
                path: "/tmp/crsproc/deleted file".into(),
                deleted: true,
            },
        );
        assert!(d.perms.shared && d.perms.write);
        let memfd = find(
            &v,
            &VmaName::File {
                path: "/memfd:crs memfd".into(),
                deleted: true,
            },
        );
        assert_eq!((memfd.dev_major, memfd.dev_minor), (0, 1));
        find(
            &v,
            &VmaName::File {
                path: "/dev/zero".into(),
                deleted: true,
            },
        );
    }

    #[test]
    fn maps_anonymous_and_prot_none_parsed() {
        let v = parse_maps(MAPS).unwrap();
        let none = v.iter().find(|m| m.start == 0x7f1a09bff000).unwrap();
        assert_eq!(none.perms, Perms::default());
        assert_eq!(none.name, VmaName::Anonymous);
        assert_eq!(none.len(), 0x1000);
    }

    #[test]
    fn maps_special_names_parsed() {
        let text = b"7f0000000000-7f0000001000 rw-p 00000000 00:00 0    [anon:my name]\n\
7f0000001000-7f0000002000 rw-s 00000000 00:01 5    [anon_shmem:shm]\n\
7f0000002000-7f0000003000 r-xp 00000000 00:00 0    [uprobes]\n\
7f0000003000-7f0000004000 rw-p 00000000 00:00 0    [stack:123]\n\
7f0000004000-7f0000005000 r--p 00001000 103:02 77  /a\\012b\n";
        let v = parse_maps(text).unwrap();
        assert_eq!(v[0].name, VmaName::AnonNamed(b"my name".to_vec()));
        assert_eq!(v[1].name, VmaName::AnonShmemNamed(b"shm".to_vec()));
        assert_eq!(v[2].name, VmaName::Special(b"uprobes".to_vec()));
        assert_eq!(v[3].name, VmaName::ThreadStack(123));
        assert_eq!(v[4].dev_major, 0x103);
        assert_eq!(v[4].offset, 0x1000);
        assert_eq!(
            v[4].name,
            VmaName::File {
                path: "/a\nb".into(),
                deleted: false
            }
        );
    }

    #[test]
    fn maps_empty_input_is_empty_list() {
        assert_eq!(parse_maps(b"").unwrap(), vec![]);
    }

    #[test]
    fn maps_bad_perms_names_line() {
        let text = b"1000-2000 r--p 00000000 00:00 0\n1000-2000 rq-p 00000000 00:00 0\n";
        let e = parse_maps(text).unwrap_err();
        assert_eq!(e.location, Location::Line(2));
        assert!(matches!(
            e.kind,
            ParseErrorKind::Invalid {
                field: "permissions",
                ..
            }
        ));
    }

    #[test]
    fn maps_malformed_lines_are_errors() {
        for bad in [
            &b"1000 r--p 0 00:00 0"[..],
            b"2000-1000 r--p 0 00:00 0",
            b"1000-2000 r--p 0 0000 0",
            b"1000-2000 r--p 0 00:00",
            b"1000-2000 r--p",
            b"1000-2000",
            b"zz-2000 r--p 0 00:00 0",
        ] {
            assert!(parse_maps(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn smaps_zoo_sizes_and_flags_parsed() {
        let v = parse_smaps(SMAPS).unwrap();
        assert_eq!(v.len(), 34);
        let first = &v[0];
        assert_eq!(first.sizes.size, 8 * 1024);
        assert_eq!(first.sizes.rss, 8 * 1024);
        assert_eq!(first.sizes.kernel_page_size, 4096);
        assert_eq!(first.thp_eligible, Some(false));
        assert_eq!(first.protection_key, Some(0));
        let flags: Vec<_> = first.vm_flags.iter().collect();
        assert_eq!(
            flags,
            vec![
                VmFlag::Read,
                VmFlag::MayRead,
                VmFlag::MayWrite,
                VmFlag::MayExec
            ]
        );
        assert!(v.iter().any(|e| e.vm_flags.contains(VmFlag::HugePage)));
        assert!(v.iter().any(|e| e.vm_flags.contains(VmFlag::DontCopy)));
        assert!(v.iter().any(|e| e.vm_flags.contains(VmFlag::Locked)));
        assert!(v.iter().any(|e| e.vm_flags.contains(VmFlag::GrowsDown)));
        let vvar = v.iter().find(|e| e.vma.name == VmaName::Vvar).unwrap();
        assert!(vvar.vm_flags.contains(VmFlag::PfnMap) && vvar.vm_flags.contains(VmFlag::Io));
        assert!(v.iter().all(|e| e.vm_flags.unknown.is_empty()));
    }

    #[test]
    fn smaps_unknown_flag_and_key_kept() {
        let text = b"1000-2000 rw-p 00000000 00:00 0\nSize:   4 kB\nNewThing: 7\n\
Swap:  8 kB\nVmFlags: rd wr zz \n";
        let v = parse_smaps(text).unwrap();
        assert_eq!(v[0].sizes.swap, 8192);
        assert_eq!(v[0].unknown, vec![("NewThing".into(), "7".into())]);
        assert_eq!(v[0].vm_flags.unknown, vec!["zz".to_string()]);
        assert_eq!(VmFlag::Write.mnemonic(), "wr");
    }

    #[test]
    fn smaps_missing_vmflags_is_error() {
        let e = parse_smaps(b"1000-2000 rw-p 00000000 00:00 0\nSize: 4 kB\n").unwrap_err();
        assert_eq!(e.location, Location::Line(1));
        assert!(matches!(e.kind, ParseErrorKind::Missing(_)));
    }

    #[test]
    fn smaps_field_before_header_is_error() {
        assert!(parse_smaps(b"Size: 4 kB\n").is_err());
        assert!(parse_smaps(b"1000-2000 rw-p 0 00:00 0\nSize: 4 MB\nVmFlags: rd\n").is_err());
        assert!(parse_smaps(b"1000-2000 rw-p 0 00:00 0\nSize 4 kB\nVmFlags: rd\n").is_err());
    }
}
