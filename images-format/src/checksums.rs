//! `crs-checksums`: the checksum of every image file of a set crs dumped, so a restore can
//! refuse a set with a changed byte anywhere before it creates anything. CRIU opens images
//! by name and never looks at this file, so it restores such a set as any other.
//!
//! ```text
//! crs-checksums 1 xxh3-64                       header: format version, hash
//! <image> <offset> <length> <hash>              one line per segment of an image
//! ...
//! end <segments> <hash>                         the hash of every byte before this line
//! ```
//!
//! Numbers are decimal, hashes 16 lowercase hex digits of XXH3-64 (unseeded). The segments
//! of one image are consecutive lines, the first at offset 0, each starting where the one
//! before ended; together they cover the whole file, and the last one's end is its size.
//! An empty image has one segment of length 0. Small images are one segment; pages images
//! one per batch of the copy (at most 4 MiB), hashed by the reader that copied it while the
//! bytes are still in its cache, and checked in parallel at restore. The `end` line makes a
//! changed byte in this file itself an error about this file, never about an image.
//!
//! The checksums find damage (a disk, a copy, an editor), not an attacker: anyone who can
//! change an image can write a matching file. The parser is bounded: the file may not be
//! larger than [`MAX_FILE_LEN`], a line not longer than [`MAX_LINE_LEN`].

use std::collections::BTreeSet;
use std::fmt::Write as _;

/// Name of the checksum file in an images directory.
pub const FILE_NAME: &str = "crs-checksums";

/// Largest checksum file accepted (a 1 TiB pages image takes about 13 MiB of lines).
pub const MAX_FILE_LEN: u64 = 64 << 20;

/// Longest line accepted, newline excluded.
pub const MAX_LINE_LEN: usize = 512;

/// Longest image name accepted.
pub const MAX_NAME_LEN: usize = 255;

const HEADER: &str = "crs-checksums 1 xxh3-64";

/// XXH3-64 of `bytes`, as the file records it.
pub fn hash(bytes: &[u8]) -> u64 {
    twox_hash::XxHash3_64::oneshot(bytes)
}

/// XXH3-64 of bytes given in pieces: the same value as [`hash`] of them all.
#[derive(Default)]
pub struct Hasher(twox_hash::XxHash3_64);

impl Hasher {
    pub fn new() -> Hasher {
        Hasher::default()
    }

    pub fn write(&mut self, bytes: &[u8]) {
        std::hash::Hasher::write(&mut self.0, bytes);
    }

    pub fn finish(&self) -> u64 {
        std::hash::Hasher::finish(&self.0)
    }
}

/// A contiguous range of an image file and the hash of its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub offset: u64,
    pub len: u64,
    pub hash: u64,
}

impl Segment {
    /// The segment of `bytes` placed at `offset`.
    pub fn of(offset: u64, bytes: &[u8]) -> Segment {
        Segment {
            offset,
            len: bytes.len() as u64,
            hash: hash(bytes),
        }
    }

    /// Where it ends (checked at parse: no overflow).
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The checksums of one image file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSums {
    pub name: String,
    /// In offset order, covering `0..size` exactly.
    pub segments: Vec<Segment>,
}

impl ImageSums {
    /// The file's size, as recorded.
    pub fn size(&self) -> u64 {
        self.segments.last().map_or(0, Segment::end)
    }
}

/// What a checksum file is wrong about (the caller names the file).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChecksumFileError {
    #[error("larger than {MAX_FILE_LEN} bytes")]
    TooLarge,
    #[error("line {line}: {what}")]
    Line { line: usize, what: String },
    #[error("no `end` line: the file is cut short")]
    NoEnd,
    #[error("the `end` line's hash does not match the lines before it: the file was changed")]
    SelfHash,
}

/// Why a list of segments cannot describe a file.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SegmentError {
    #[error("image name {0:?} is not a plain file name")]
    BadName(String),
    #[error("image {name}: no segment")]
    Empty { name: String },
    #[error("image {name}: the segment at {offset} does not follow the one before (expected {expected})")]
    Gap {
        name: String,
        offset: u64,
        expected: u64,
    },
    #[error("image {name}: an empty segment among others")]
    EmptySegment { name: String },
    #[error("image {name}: segments end past 2^64")]
    Overflow { name: String },
    #[error("image {name} listed twice")]
    Twice { name: String },
    #[error("image {name} written after inventory.img")]
    AfterInventory { name: String },
}

/// True when `name` can be a file directly in the images directory: 1 to
/// [`MAX_NAME_LEN`] bytes of `[A-Za-z0-9._-]`, not starting with a dot.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks that `segments` cover `0..end` in order (one empty segment for an empty file).
pub fn check_segments(name: &str, segments: &[Segment]) -> Result<(), SegmentError> {
    if !valid_name(name) {
        return Err(SegmentError::BadName(name.to_string()));
    }
    if segments.is_empty() {
        return Err(SegmentError::Empty {
            name: name.to_string(),
        });
    }
    let mut expected = 0u64;
    for s in segments {
        if s.offset != expected {
            return Err(SegmentError::Gap {
                name: name.to_string(),
                offset: s.offset,
                expected,
            });
        }
        if s.len == 0 && segments.len() > 1 {
            return Err(SegmentError::EmptySegment {
                name: name.to_string(),
            });
        }
        expected = s.offset.checked_add(s.len).ok_or(SegmentError::Overflow {
            name: name.to_string(),
        })?;
    }
    Ok(())
}

/// The checksum file for `images` (in the order given), with its `end` line.
///
/// # Errors
/// When an image's name or segments break the rules of the format (a bug of the writer).
pub fn render(images: &[ImageSums]) -> Result<Vec<u8>, SegmentError> {
    let mut seen = BTreeSet::new();
    let mut out = String::with_capacity(64 * (1 + images.len()));
    out.push_str(HEADER);
    out.push('\n');
    let mut count = 0usize;
    for img in images {
        check_segments(&img.name, &img.segments)?;
        if !seen.insert(img.name.as_str()) {
            return Err(SegmentError::Twice {
                name: img.name.clone(),
            });
        }
        for s in &img.segments {
            // Writing into a String cannot fail.
            let _ = writeln!(out, "{} {} {} {:016x}", img.name, s.offset, s.len, s.hash);
            count += 1;
        }
    }
    let h = hash(out.as_bytes());
    let _ = writeln!(out, "end {count} {h:016x}");
    Ok(out.into_bytes())
}

/// Parses a checksum file: the images in file order.
///
/// # Errors
/// Anything but a well-formed file whose `end` line matches: the line (1-based) and what is
/// wrong with it.
pub fn parse(bytes: &[u8]) -> Result<Vec<ImageSums>, ChecksumFileError> {
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(ChecksumFileError::TooLarge);
    }
    let bad = |line: usize, what: String| ChecksumFileError::Line { line, what };
    let mut images: Vec<ImageSums> = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut count = 0usize;
    let mut at = 0usize;
    let mut lineno = 0usize;
    while at < bytes.len() {
        lineno += 1;
        let rest = &bytes[at..];
        let Some(nl) = rest.iter().take(MAX_LINE_LEN + 1).position(|&b| b == b'\n') else {
            return Err(if rest.len() > MAX_LINE_LEN {
                bad(lineno, format!("longer than {MAX_LINE_LEN} bytes"))
            } else {
                bad(lineno, "no newline at the end".into())
            });
        };
        let line =
            std::str::from_utf8(&rest[..nl]).map_err(|_| bad(lineno, "not ASCII text".into()))?;
        let start = at;
        at += nl + 1;
        if lineno == 1 {
            if line != HEADER {
                return Err(bad(1, format!("header {line:?}, expected {HEADER:?}")));
            }
            continue;
        }
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() == 3 && fields[0] == "end" {
            let n: usize = number(fields[1]).ok_or_else(|| bad(lineno, "bad count".into()))?;
            let h = hex64(fields[2]).ok_or_else(|| bad(lineno, "bad hash".into()))?;
            if at != bytes.len() {
                return Err(bad(lineno + 1, "text after the `end` line".into()));
            }
            if hash(&bytes[..start]) != h {
                return Err(ChecksumFileError::SelfHash);
            }
            if n != count {
                return Err(bad(
                    lineno,
                    format!("{count} segments listed, `end` says {n}"),
                ));
            }
            return Ok(images);
        }
        let [name, offset, len, h] = fields[..] else {
            return Err(bad(
                lineno,
                format!(
                    "{} fields, expected 4 (name offset length hash)",
                    fields.len()
                ),
            ));
        };
        if !valid_name(name) {
            return Err(bad(
                lineno,
                format!("image name {name:?} is not a plain file name"),
            ));
        }
        let seg = Segment {
            offset: number(offset).ok_or_else(|| bad(lineno, "bad offset".into()))?,
            len: number(len).ok_or_else(|| bad(lineno, "bad length".into()))?,
            hash: hex64(h).ok_or_else(|| bad(lineno, "bad hash".into()))?,
        };
        count += 1;
        match images.last_mut() {
            Some(img) if img.name == name => {
                let expected = img.size();
                if seg.offset != expected {
                    return Err(bad(
                        lineno,
                        format!("{name}: segment at {}, expected {expected}", seg.offset),
                    ));
                }
                if seg.len == 0 || img.segments[0].len == 0 {
                    return Err(bad(
                        lineno,
                        format!("{name}: an empty segment among others"),
                    ));
                }
                if seg.offset.checked_add(seg.len).is_none() {
                    return Err(bad(lineno, format!("{name}: ends past 2^64")));
                }
                img.segments.push(seg);
            }
            _ => {
                if !seen.insert(name.to_string()) {
                    return Err(bad(lineno, format!("{name} listed again")));
                }
                if seg.offset != 0 {
                    return Err(bad(
                        lineno,
                        format!("{name}: first segment at {}", seg.offset),
                    ));
                }
                images.push(ImageSums {
                    name: name.to_string(),
                    segments: vec![seg],
                });
            }
        }
    }
    if lineno == 0 {
        return Err(bad(1, "empty file".into()));
    }
    Err(ChecksumFileError::NoEnd)
}

/// A decimal number without sign, leading zeros or excess digits.
fn number<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Exactly 16 lowercase hex digits.
fn hex64(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<ImageSums> {
        vec![
            ImageSums {
                name: "core-1.img".into(),
                segments: vec![Segment::of(0, b"core bytes")],
            },
            ImageSums {
                name: "pages-1.img".into(),
                segments: vec![
                    Segment::of(0, &[1u8; 4096]),
                    Segment::of(4096, &[2u8; 8192]),
                ],
            },
            ImageSums {
                name: "empty.img".into(),
                segments: vec![Segment::of(0, b"")],
            },
        ]
    }

    fn rendered() -> Vec<u8> {
        render(&sample()).unwrap()
    }

    /// Re-signs a hand-edited file, so a test reaches the check it aims at.
    fn resign(body: &str) -> Vec<u8> {
        let count = body.lines().count() - 1;
        let mut out = body.to_string();
        out.push_str(&format!("end {count} {:016x}\n", hash(body.as_bytes())));
        out.into_bytes()
    }

    fn body() -> String {
        let s = String::from_utf8(rendered()).unwrap();
        let end = s.rfind("end ").unwrap();
        s[..end].to_string()
    }

    fn line_err(r: Result<Vec<ImageSums>, ChecksumFileError>) -> (usize, String) {
        match r {
            Err(ChecksumFileError::Line { line, what }) => (line, what),
            other => panic!("expected a line error, got {other:?}"),
        }
    }

    #[test]
    fn parse_rendered_round_trips() {
        let text = rendered();
        assert_eq!(parse(&text).unwrap(), sample());
        let s = String::from_utf8(text).unwrap();
        assert!(
            s.starts_with("crs-checksums 1 xxh3-64\ncore-1.img 0 10 "),
            "{s}"
        );
        assert!(s.contains("\npages-1.img 4096 8192 "), "{s}");
        assert!(s.contains("\nend 4 "), "{s}");
    }

    #[test]
    fn parse_sizes_are_segment_ends() {
        let v = parse(&rendered()).unwrap();
        assert_eq!(
            v.iter().map(ImageSums::size).collect::<Vec<_>>(),
            [10, 12288, 0]
        );
    }

    #[test]
    fn parse_no_image_is_valid() {
        let text = render(&[]).unwrap();
        assert_eq!(parse(&text).unwrap(), vec![]);
    }

    #[test]
    fn hash_is_xxh3_64() {
        // The reference value of XXH3-64 of the empty input (xxhash's test vectors).
        assert_eq!(hash(b""), 0x2d06_8005_38d3_94c2);
    }

    #[test]
    fn hasher_in_pieces_equals_oneshot() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for piece in [1usize, 63, 64, 1000, 4096, 1 << 20, data.len()] {
            let mut h = Hasher::new();
            for c in data.chunks(piece) {
                h.write(c);
            }
            assert_eq!(h.finish(), hash(&data), "pieces of {piece}");
        }
    }

    #[test]
    fn parse_any_flipped_byte_fails() {
        let text = rendered();
        for i in 0..text.len() {
            for bit in 0..8 {
                let mut t = text.clone();
                t[i] ^= 1 << bit;
                assert!(parse(&t).is_err(), "byte {i} bit {bit} accepted");
            }
        }
    }

    #[test]
    fn parse_changed_hash_digit_is_self_hash_error() {
        let mut t = rendered();
        let at = t.iter().position(|&b| b == b'\n').unwrap() + 20;
        t[at] = if t[at] == b'0' { b'1' } else { b'0' };
        assert_eq!(parse(&t), Err(ChecksumFileError::SelfHash));
    }

    #[test]
    fn parse_truncated_fails_at_every_length() {
        let text = rendered();
        for n in 0..text.len() {
            assert!(parse(&text[..n]).is_err(), "cut at {n} accepted");
        }
    }

    #[test]
    fn parse_cut_at_line_end_is_no_end() {
        let text = rendered();
        let n = text[..text.len() - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .unwrap()
            + 1;
        assert_eq!(parse(&text[..n]), Err(ChecksumFileError::NoEnd));
    }

    #[test]
    fn parse_text_after_end_fails() {
        let mut t = rendered();
        t.extend_from_slice(b"x\n");
        assert_eq!(line_err(parse(&t)).1, "text after the `end` line");
    }

    #[test]
    fn parse_wrong_header_fails() {
        let t = rendered();
        let s = String::from_utf8(t).unwrap().replacen(" 1 ", " 2 ", 1);
        let (line, what) = line_err(parse(s.as_bytes()));
        assert_eq!(line, 1);
        assert!(what.contains("header"), "{what}");
    }

    #[test]
    fn parse_gap_between_segments_fails() {
        let b = body().replace("pages-1.img 4096 ", "pages-1.img 8192 ");
        let (line, what) = line_err(parse(&resign(&b)));
        assert_eq!(line, 4);
        assert!(what.contains("expected 4096"), "{what}");
    }

    #[test]
    fn parse_first_segment_not_at_zero_fails() {
        let b = body().replace("core-1.img 0 ", "core-1.img 1 ");
        let (line, what) = line_err(parse(&resign(&b)));
        assert_eq!(line, 2);
        assert!(what.contains("first segment"), "{what}");
    }

    #[test]
    fn parse_name_listed_twice_fails() {
        let mut b = body();
        let core = b.lines().nth(1).unwrap().to_string();
        b.push_str(&core);
        b.push('\n');
        let (_, what) = line_err(parse(&resign(&b)));
        assert!(what.contains("listed again"), "{what}");
    }

    #[test]
    fn parse_path_names_fail() {
        for name in ["../core-1.img", "a/b.img", ".hidden", "", "sp ace"] {
            let b = body().replace("core-1.img", name);
            assert!(parse(&resign(&b)).is_err(), "{name:?} accepted");
        }
    }

    #[test]
    fn parse_bad_numbers_fail() {
        for (from, to) in [
            ("core-1.img 0 10 ", "core-1.img 0 010 "),
            ("core-1.img 0 10 ", "core-1.img 0 -10 "),
            ("core-1.img 0 10 ", "core-1.img 0 +10 "),
            ("core-1.img 0 10 ", "core-1.img 0 99999999999999999999 "),
            ("core-1.img 0 10 ", "core-1.img 0 10  "),
        ] {
            let b = body().replacen(from, to, 1);
            assert!(parse(&resign(&b)).is_err(), "{to:?} accepted");
        }
    }

    #[test]
    fn parse_segment_past_u64_fails() {
        let b = body().replace(
            "pages-1.img 4096 8192",
            &format!("pages-1.img 4096 {}", u64::MAX - 100),
        );
        let (_, what) = line_err(parse(&resign(&b)));
        assert!(what.contains("2^64"), "{what}");
    }

    #[test]
    fn parse_uppercase_hash_fails() {
        let b = body();
        let line = b.lines().nth(1).unwrap();
        let b2 = b.replace(line, "core-1.img 0 10 ABCDEF0123456789");
        let (line, what) = line_err(parse(&resign(&b2)));
        assert_eq!((line, what.as_str()), (2, "bad hash"));
    }

    #[test]
    fn parse_wrong_count_fails() {
        let s = String::from_utf8(rendered()).unwrap();
        let b = body();
        let h = &s[s.rfind(' ').unwrap() + 1..];
        let t = format!("{b}end 5 {h}");
        let (_, what) = line_err(parse(t.as_bytes()));
        assert!(what.contains("`end` says 5"), "{what}");
    }

    #[test]
    fn parse_long_line_fails_without_reading_it_whole() {
        let mut t = b"crs-checksums 1 xxh3-64\n".to_vec();
        t.extend(std::iter::repeat_n(b'a', 10_000));
        let (line, what) = line_err(parse(&t));
        assert_eq!(line, 2);
        assert!(what.contains("longer than"), "{what}");
    }

    #[test]
    fn parse_oversized_file_fails() {
        let t = vec![b'\n'; MAX_FILE_LEN as usize + 1];
        assert_eq!(parse(&t), Err(ChecksumFileError::TooLarge));
    }

    #[test]
    fn parse_empty_file_fails() {
        assert!(parse(b"").is_err());
    }

    #[test]
    fn render_gap_is_refused() {
        let img = ImageSums {
            name: "pages-1.img".into(),
            segments: vec![Segment::of(0, b"ab"), Segment::of(3, b"c")],
        };
        assert!(matches!(render(&[img]), Err(SegmentError::Gap { .. })));
    }

    #[test]
    fn render_same_name_twice_is_refused() {
        let img = sample()[0].clone();
        assert!(matches!(
            render(&[img.clone(), img]),
            Err(SegmentError::Twice { .. })
        ));
    }
}
