//! Entry framing of CRIU images: a header of magics, then entries, each a 32-bit
//! little-endian length, that many bytes of protobuf, and for some images a raw
//! payload whose size the message gives.
//!
//! Everything here works on a byte slice the caller already holds (the file as
//! read or mapped), so every length is checked against what is really there
//! before anything is allocated or sliced.

use crate::error::{ImageError, Result};
use crate::magic::{self, Header, Magic};

/// Parses the header of an image. Returns the magic and the offset of the first entry.
pub fn parse_header(image: &str, bytes: &[u8]) -> Result<(&'static Magic, usize)> {
    let first = read_u32(bytes, 0).ok_or_else(|| ImageError::NoHeader {
        image: image.to_string(),
        len: bytes.len(),
    })?;
    if first == magic::IMG_COMMON || first == magic::IMG_SERVICE {
        let value = read_u32(bytes, 4).ok_or_else(|| ImageError::NoHeader {
            image: image.to_string(),
            len: bytes.len(),
        })?;
        let m = magic::by_value(value).ok_or_else(|| ImageError::BadMagic {
            image: image.to_string(),
            found: value,
            offset: 4,
        })?;
        let expected = match m.header {
            Header::Service => magic::IMG_SERVICE,
            _ => magic::IMG_COMMON,
        };
        if m.header == Header::Single || first != expected {
            return Err(ImageError::WrongFirstMagic {
                image: image.to_string(),
                magic: m.name,
                found: first,
                expected,
            });
        }
        return Ok((m, 8));
    }
    match magic::by_value(first) {
        Some(m) if m.header == Header::Single => Ok((m, 4)),
        _ => Err(ImageError::BadMagic {
            image: image.to_string(),
            found: first,
            offset: 0,
        }),
    }
}

/// Writes the header for `magic`.
pub fn write_header(out: &mut Vec<u8>, magic: &Magic) {
    match magic.header {
        Header::Common => out.extend_from_slice(&magic::IMG_COMMON.to_le_bytes()),
        Header::Service => out.extend_from_slice(&magic::IMG_SERVICE.to_le_bytes()),
        Header::Single => {}
    }
    out.extend_from_slice(&magic.value.to_le_bytes());
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// A cursor over the entries of one image, bounded by the slice it reads.
#[derive(Debug, Clone)]
pub struct EntryCursor<'a> {
    image: &'a str,
    bytes: &'a [u8],
    pos: usize,
    entry: usize,
}

/// One framed message, borrowed from the image.
#[derive(Debug, Clone, Copy)]
pub struct RawEntry<'a> {
    /// Index of the entry in the image (0-based, counting framed messages).
    pub index: usize,
    /// Offset of the entry's length field in the file.
    pub offset: usize,
    /// The protobuf bytes.
    pub message: &'a [u8],
}

impl<'a> EntryCursor<'a> {
    /// Starts reading entries at `start` (the end of the header).
    pub fn new(image: &'a str, bytes: &'a [u8], start: usize) -> Self {
        EntryCursor {
            image,
            bytes,
            pos: start.min(bytes.len()),
            entry: 0,
        }
    }

    /// The image's name, for errors.
    pub fn image(&self) -> &'a str {
        self.image
    }

    /// Current offset in the file.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Index the next entry will have.
    pub fn entry_index(&self) -> usize {
        self.entry
    }

    /// True when every byte has been consumed.
    pub fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Reads the next framed message, or `None` at the end of the file.
    pub fn next_entry(&mut self) -> Result<Option<RawEntry<'a>>> {
        if self.at_end() {
            return Ok(None);
        }
        let offset = self.pos;
        let have = self.remaining();
        let Some(len) = read_u32(self.bytes, offset) else {
            return Err(ImageError::TruncatedLength {
                image: self.image.to_string(),
                entry: self.entry,
                offset,
                have,
            });
        };
        let start = offset + 4;
        let remaining = self.bytes.len() - start;
        if len as usize > remaining {
            return Err(ImageError::EntryTooLarge {
                image: self.image.to_string(),
                entry: self.entry,
                offset,
                size: u64::from(len),
                remaining,
            });
        }
        let message = &self.bytes[start..start + len as usize];
        self.pos = start + len as usize;
        let index = self.entry;
        self.entry += 1;
        Ok(Some(RawEntry {
            index,
            offset,
            message,
        }))
    }

    /// Takes `size` raw payload bytes that follow the last entry.
    pub fn take_payload(&mut self, size: u64) -> Result<&'a [u8]> {
        let remaining = self.remaining();
        if size > remaining as u64 {
            return Err(ImageError::PayloadTooLarge {
                image: self.image.to_string(),
                entry: self.entry.saturating_sub(1),
                offset: self.pos,
                size,
                remaining,
            });
        }
        let data = &self.bytes[self.pos..self.pos + size as usize];
        self.pos += size as usize;
        Ok(data)
    }

    /// Takes everything left in the file as payload.
    pub fn take_rest(&mut self) -> &'a [u8] {
        let data = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        data
    }
}

/// Appends one framed message.
pub fn write_entry(out: &mut Vec<u8>, message: &[u8]) {
    out.extend_from_slice(&(message.len() as u32).to_le_bytes());
    out.extend_from_slice(message);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(magic: &Magic, entries: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        write_header(&mut v, magic);
        for e in entries {
            write_entry(&mut v, e);
        }
        v
    }

    #[test]
    fn parse_header_common_image_ok() {
        let m = magic::by_name("CORE").unwrap();
        let bytes = image(m, &[]);
        let (found, start) = parse_header("core-1.img", &bytes).unwrap();
        assert_eq!(found.name, "CORE");
        assert_eq!(start, 8);
    }

    #[test]
    fn parse_header_inventory_single_magic_ok() {
        let m = magic::by_name("INVENTORY").unwrap();
        let bytes = image(m, &[b"\x08\x02"]);
        let (found, start) = parse_header("inventory.img", &bytes).unwrap();
        assert_eq!(found.name, "INVENTORY");
        assert_eq!(start, 4);
    }

    #[test]
    fn parse_header_stats_with_common_magic_rejected() {
        let mut bytes = magic::IMG_COMMON.to_le_bytes().to_vec();
        bytes.extend_from_slice(&magic::by_name("STATS").unwrap().value.to_le_bytes());
        assert!(matches!(
            parse_header("stats-dump", &bytes),
            Err(ImageError::WrongFirstMagic { .. })
        ));
    }

    #[test]
    fn parse_header_unknown_magic_named_with_offset() {
        let mut bytes = magic::IMG_COMMON.to_le_bytes().to_vec();
        bytes.extend_from_slice(&0x1234_5678u32.to_le_bytes());
        let err = parse_header("x.img", &bytes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.img: unknown magic 0x12345678 at offset 4"
        );
    }

    #[test]
    fn parse_header_short_file_errors() {
        assert!(matches!(
            parse_header("x.img", &[1, 2]),
            Err(ImageError::NoHeader { len: 2, .. })
        ));
    }

    #[test]
    fn next_entry_oversized_length_errors_without_allocating() {
        let m = magic::by_name("CORE").unwrap();
        let mut bytes = image(m, &[]);
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(b"abc");
        let mut c = EntryCursor::new("core-1.img", &bytes, 8);
        let err = c.next_entry().unwrap_err();
        assert!(matches!(
            err,
            ImageError::EntryTooLarge {
                entry: 0,
                offset: 8,
                remaining: 3,
                ..
            }
        ));
    }

    #[test]
    fn next_entry_truncated_length_errors() {
        let mut c = EntryCursor::new("x", &[1, 0], 0);
        assert!(matches!(
            c.next_entry(),
            Err(ImageError::TruncatedLength { have: 2, .. })
        ));
    }

    #[test]
    fn take_payload_past_end_errors() {
        let m = magic::by_name("PIPES_DATA").unwrap();
        let bytes = image(m, &[b"\x08\x01"]);
        let mut c = EntryCursor::new("pipes-data.img", &bytes, 8);
        c.next_entry().unwrap().unwrap();
        assert!(matches!(
            c.take_payload(10),
            Err(ImageError::PayloadTooLarge {
                size: 10,
                remaining: 0,
                ..
            })
        ));
    }

    #[test]
    fn entries_roundtrip_in_order() {
        let m = magic::by_name("FDINFO").unwrap();
        let bytes = image(m, &[b"a", b"", b"bc"]);
        let mut c = EntryCursor::new("fdinfo-2.img", &bytes, 8);
        let mut got = Vec::new();
        while let Some(e) = c.next_entry().unwrap() {
            got.push(e.message.to_vec());
        }
        assert_eq!(got, vec![b"a".to_vec(), vec![], b"bc".to_vec()]);
    }
}
