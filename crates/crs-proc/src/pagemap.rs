//! `/proc/PID/pagemap`: one u64 per virtual page (Documentation/admin-guide/mm/pagemap.rst).

use crate::error::{Location, ParseError, ParseErrorKind};
use crate::ProcFile;

/// One pagemap entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PagemapEntry(pub u64);

impl PagemapEntry {
    const PFN_MASK: u64 = (1 << 55) - 1;
    /// Bit 55: soft-dirty.
    pub const SOFT_DIRTY: u64 = 1 << 55;
    /// Bit 56: page exclusively mapped.
    pub const EXCLUSIVE: u64 = 1 << 56;
    /// Bit 57: write-protected by userfaultfd.
    pub const UFFD_WP: u64 = 1 << 57;
    /// Bit 58: guard region (MADV_GUARD_INSTALL).
    pub const GUARD: u64 = 1 << 58;
    /// Bit 61: file page or shared anonymous.
    pub const FILE_OR_SHARED: u64 = 1 << 61;
    /// Bit 62: swapped.
    pub const SWAPPED: u64 = 1 << 62;
    /// Bit 63: present in RAM.
    pub const PRESENT: u64 = 1 << 63;

    /// Decodes 8 native-endian bytes.
    pub fn from_ne_bytes(b: [u8; 8]) -> Self {
        PagemapEntry(u64::from_ne_bytes(b))
    }

    /// Page present in RAM.
    pub fn present(self) -> bool {
        self.0 & Self::PRESENT != 0
    }

    /// Page swapped out.
    pub fn swapped(self) -> bool {
        self.0 & Self::SWAPPED != 0
    }

    /// File-backed page or shared anonymous page (not private anonymous).
    pub fn file_or_shared(self) -> bool {
        self.0 & Self::FILE_OR_SHARED != 0
    }

    /// Exclusively mapped (not shared with another process, e.g. after fork).
    pub fn exclusive(self) -> bool {
        self.0 & Self::EXCLUSIVE != 0
    }

    /// Soft-dirty (always 0 on kernels without CONFIG_MEM_SOFT_DIRTY).
    pub fn soft_dirty(self) -> bool {
        self.0 & Self::SOFT_DIRTY != 0
    }

    /// Write-protected by userfaultfd.
    pub fn uffd_wp(self) -> bool {
        self.0 & Self::UFFD_WP != 0
    }

    /// Guard region.
    pub fn guard(self) -> bool {
        self.0 & Self::GUARD != 0
    }

    /// Page frame number when present (0 without CAP_SYS_ADMIN).
    pub fn pfn(self) -> Option<u64> {
        self.present().then_some(self.0 & Self::PFN_MASK)
    }

    /// Swap type (bits 0-4) when swapped.
    pub fn swap_type(self) -> Option<u8> {
        // The mask keeps 5 bits, so the value fits.
        (self.swapped() && !self.present()).then_some((self.0 & 0x1f) as u8)
    }

    /// Swap offset (bits 5-54) when swapped.
    pub fn swap_offset(self) -> Option<u64> {
        (self.swapped() && !self.present()).then_some((self.0 & Self::PFN_MASK) >> 5)
    }

    /// True if the page has content to dump for a private mapping: present or swapped, and
    /// private anonymous (a file page that was never written is read back from the file).
    pub fn is_private_anon_data(self) -> bool {
        (self.present() || self.swapped()) && !self.file_or_shared()
    }
}

/// Parses a run of pagemap entries (the length must be a multiple of 8).
pub fn parse_pagemap(bytes: &[u8]) -> Result<Vec<PagemapEntry>, ParseError> {
    if bytes.len() % 8 != 0 {
        return Err(ParseError {
            file: ProcFile::Pagemap,
            location: Location::Offset(bytes.len() - bytes.len() % 8),
            kind: ParseErrorKind::BadLength {
                len: bytes.len(),
                unit: 8,
            },
        });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| PagemapEntry::from_ne_bytes(c.try_into().unwrap_or_default()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagemap_zoo_bits_decoded() {
        let v = parse_pagemap(include_bytes!("../tests/fixtures/zoo/pagemap")).unwrap();
        // First page of the binary's text: present, file-backed, exclusively mapped.
        let e = v[0];
        assert_eq!(e, PagemapEntry(0xa100000000148fc1));
        assert!(e.present() && e.file_or_shared() && e.exclusive());
        assert!(!e.swapped() && !e.soft_dirty());
        assert_eq!(e.pfn(), Some(0x148fc1));
        // Heap page: present private anonymous, exclusive.
        let heap = PagemapEntry(0x81000000001506f3);
        assert!(heap.is_private_anon_data());
        assert!(v.contains(&heap));
        assert!(v.contains(&PagemapEntry(0)));
    }

    #[test]
    fn pagemap_swap_entry_decoded() {
        let e = PagemapEntry(PagemapEntry::SWAPPED | (1234 << 5) | 3);
        assert!(!e.present());
        assert_eq!(e.swap_type(), Some(3));
        assert_eq!(e.swap_offset(), Some(1234));
        assert_eq!(e.pfn(), None);
        assert!(e.is_private_anon_data());
    }

    #[test]
    fn pagemap_flag_bits_decoded() {
        let e =
            PagemapEntry(PagemapEntry::UFFD_WP | PagemapEntry::GUARD | PagemapEntry::SOFT_DIRTY);
        assert!(e.uffd_wp() && e.guard() && e.soft_dirty());
        assert!(!e.is_private_anon_data());
    }

    #[test]
    fn pagemap_bad_length_is_error() {
        let e = parse_pagemap(&[0; 12]).unwrap_err();
        assert_eq!(e.location, Location::Offset(8));
        assert_eq!(parse_pagemap(b"").unwrap(), vec![]);
    }
}
