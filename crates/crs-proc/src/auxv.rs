//! `/proc/PID/auxv`: native-endian (key, value) u64 pairs ending with AT_NULL.

use crate::error::{Location, ParseError, ParseErrorKind};
use crate::ProcFile;

/// AT_NULL, the terminating key.
pub const AT_NULL: u64 = 0;

/// One auxiliary vector entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuxvEntry {
    /// AT_* key.
    pub key: u64,
    /// Value.
    pub value: u64,
}

/// The auxiliary vector, without its AT_NULL terminator.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auxv {
    /// Entries in file order.
    pub entries: Vec<AuxvEntry>,
}

impl Auxv {
    /// Value of the first entry with `key`.
    pub fn get(&self, key: u64) -> Option<u64> {
        self.entries.iter().find(|e| e.key == key).map(|e| e.value)
    }

    /// The vector as a flat list of words, AT_NULL pair included (the shape of CRIU's
    /// `mm_saved_auxv`).
    pub fn to_words(&self) -> Vec<u64> {
        self.entries
            .iter()
            .flat_map(|e| [e.key, e.value])
            .chain([AT_NULL, 0])
            .collect()
    }
}

/// Parses `/proc/PID/auxv`. An empty file (kernel threads, zombies) is an empty vector;
/// otherwise the length must be a multiple of 16 and an AT_NULL entry must end it; bytes
/// after AT_NULL are ignored.
pub fn parse_auxv(bytes: &[u8]) -> Result<Auxv, ParseError> {
    let err = |location, kind| ParseError {
        file: ProcFile::Auxv,
        location,
        kind,
    };
    if bytes.len() % 16 != 0 {
        return Err(err(
            Location::File,
            ParseErrorKind::BadLength {
                len: bytes.len(),
                unit: 16,
            },
        ));
    }
    let mut out = Auxv::default();
    if bytes.is_empty() {
        return Ok(out);
    }
    for pair in bytes.chunks_exact(16) {
        let (k, v) = pair.split_at(8);
        let key = u64::from_ne_bytes(k.try_into().unwrap_or_default());
        let value = u64::from_ne_bytes(v.try_into().unwrap_or_default());
        if key == AT_NULL {
            return Ok(out);
        }
        out.entries.push(AuxvEntry { key, value });
    }
    Err(err(
        Location::Offset(bytes.len()),
        ParseErrorKind::Missing("AT_NULL terminator"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT_PAGESZ: u64 = 6;
    const AT_SYSINFO_EHDR: u64 = 33;

    #[test]
    fn auxv_zoo_parsed() {
        let a = parse_auxv(include_bytes!("../tests/fixtures/zoo/auxv")).unwrap();
        assert_eq!(a.get(AT_PAGESZ), Some(4096));
        assert_eq!(a.get(AT_SYSINFO_EHDR), Some(0x7f1a0a8c7000));
        assert_eq!(a.entries.len(), 22);
        let w = a.to_words();
        assert_eq!(w.len(), 46);
        assert_eq!(&w[44..], &[0, 0]);
    }

    #[test]
    fn auxv_empty_is_empty() {
        assert_eq!(parse_auxv(b"").unwrap(), Auxv::default());
    }

    #[test]
    fn auxv_bad_length_is_error() {
        let e = parse_auxv(&[0u8; 15]).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BadLength { len: 15, unit: 16 });
    }

    #[test]
    fn auxv_without_terminator_is_error() {
        let mut b = 6u64.to_ne_bytes().to_vec();
        b.extend(4096u64.to_ne_bytes());
        let e = parse_auxv(&b).unwrap_err();
        assert_eq!(e.location, Location::Offset(16));
    }
}
