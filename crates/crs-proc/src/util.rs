//! Small helpers shared by the parsers: line iteration, tokenising, number parsing.

use crate::error::{Location, ParseError, ParseErrorKind};
use crate::ProcFile;

/// Parsing context: which file and which line, to build errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub file: ProcFile,
    pub loc: Location,
}

impl Ctx {
    pub fn new(file: ProcFile) -> Self {
        Ctx {
            file,
            loc: Location::File,
        }
    }

    pub fn line(file: ProcFile, line: usize) -> Self {
        Ctx {
            file,
            loc: Location::Line(line),
        }
    }

    pub fn err(&self, kind: ParseErrorKind) -> ParseError {
        ParseError {
            file: self.file,
            location: self.loc,
            kind,
        }
    }

    pub fn missing(&self, what: &'static str) -> ParseError {
        self.err(ParseErrorKind::Missing(what))
    }

    pub fn malformed(&self, what: &'static str) -> ParseError {
        self.err(ParseErrorKind::Malformed(what))
    }

    pub fn invalid(&self, field: &'static str, value: &[u8]) -> ParseError {
        let shown = &value[..value.len().min(64)];
        self.err(ParseErrorKind::Invalid {
            field,
            value: String::from_utf8_lossy(shown).into_owned(),
        })
    }

    /// Unsigned decimal.
    pub fn dec<T: TryFrom<u64>>(&self, field: &'static str, tok: &[u8]) -> Result<T, ParseError> {
        parse_radix(tok, 10)
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| self.invalid(field, tok))
    }

    /// Signed decimal.
    pub fn sdec<T: TryFrom<i64>>(&self, field: &'static str, tok: &[u8]) -> Result<T, ParseError> {
        parse_signed(tok)
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| self.invalid(field, tok))
    }

    /// Unsigned hexadecimal, with or without a `0x` prefix.
    pub fn hex<T: TryFrom<u64>>(&self, field: &'static str, tok: &[u8]) -> Result<T, ParseError> {
        let t = tok
            .strip_prefix(b"0x")
            .or_else(|| tok.strip_prefix(b"0X"))
            .unwrap_or(tok);
        parse_radix(t, 16)
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| self.invalid(field, tok))
    }

    /// Unsigned octal (a leading 0 is allowed, as the kernel prints it).
    pub fn oct<T: TryFrom<u64>>(&self, field: &'static str, tok: &[u8]) -> Result<T, ParseError> {
        parse_radix(tok, 8)
            .and_then(|v| T::try_from(v).ok())
            .ok_or_else(|| self.invalid(field, tok))
    }

    /// A token that must be ASCII/UTF-8 text.
    pub fn text<'a>(&self, field: &'static str, tok: &'a [u8]) -> Result<&'a str, ParseError> {
        std::str::from_utf8(tok).map_err(|_| self.invalid(field, tok))
    }
}

/// Parses an unsigned number in `radix`; `None` if empty, not a number, or overflowing.
pub(crate) fn parse_radix(tok: &[u8], radix: u32) -> Option<u64> {
    if tok.is_empty() || tok.len() > 66 {
        return None;
    }
    let s = std::str::from_utf8(tok).ok()?;
    if s.starts_with('+') || s.starts_with('-') {
        return None;
    }
    u64::from_str_radix(s, radix).ok()
}

/// Parses a signed decimal number.
pub(crate) fn parse_signed(tok: &[u8]) -> Option<i64> {
    if tok.is_empty() || tok.len() > 24 {
        return None;
    }
    std::str::from_utf8(tok).ok()?.parse().ok()
}

/// Lines of `bytes` with their 1-based numbers; a final newline does not make an empty line.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = body.is_empty() && bytes.is_empty();
    body.split(|&b| b == b'\n')
        .enumerate()
        .filter(move |_| !empty)
        .map(|(i, l)| (i + 1, l))
}

/// Whitespace-separated tokens (space and tab).
pub(crate) fn tokens(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| b == b' ' || b == b'\t')
        .filter(|t| !t.is_empty())
}

/// Strips leading spaces and tabs.
pub(crate) fn trim_start(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    &s[n..]
}

/// Strips trailing spaces and tabs.
pub(crate) fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(0, |p| p + 1);
    &s[..n]
}

pub(crate) fn trim(s: &[u8]) -> &[u8] {
    trim_end(trim_start(s))
}

/// Splits `s` at the first whitespace: (first token, rest with leading whitespace removed).
pub(crate) fn split_token(s: &[u8]) -> (&[u8], &[u8]) {
    let s = trim_start(s);
    match s.iter().position(|&b| b == b' ' || b == b'\t') {
        Some(p) => (&s[..p], trim_start(&s[p..])),
        None => (s, &[]),
    }
}

/// Splits a `Key:\tvalue` line at its first colon; the value is trimmed.
pub(crate) fn split_key(line: &[u8]) -> Option<(&[u8], &[u8])> {
    let p = line.iter().position(|&b| b == b':')?;
    Some((&line[..p], trim(&line[p + 1..])))
}

/// Decodes the kernel's octal escapes (`\040`, `\011`, `\012`, `\134`) as written by
/// `seq_escape`/`mangle`; a backslash not followed by three octal digits is kept as is.
pub(crate) fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 3 < s.len() && is_oct3(&s[i + 1..i + 4]) {
            let v = u32::from(s[i + 1] - b'0') * 64
                + u32::from(s[i + 2] - b'0') * 8
                + u32::from(s[i + 3] - b'0');
            if let Ok(b) = u8::try_from(v) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn is_oct3(s: &[u8]) -> bool {
    s.len() == 3 && s.iter().all(|b| (b'0'..=b'7').contains(b))
}

/// `key:value` tokens of an fdinfo-style line (`tfd:   4 events: 1c ino:1a09`): a token
/// ending in `:` takes the next token as its value.
pub(crate) fn kv_tokens(line: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut it = tokens(line).peekable();
    while let Some(t) = it.next() {
        match t.iter().position(|&b| b == b':') {
            Some(p) if p + 1 == t.len() => {
                let v = it.next().unwrap_or(&[]);
                out.push((&t[..p], v));
            }
            Some(p) => out.push((&t[..p], &t[p + 1..])),
            None => out.push((t, &[][..])),
        }
    }
    out
}

/// Looks up `key` in a list from [`kv_tokens`].
pub(crate) fn kv_get<'a>(kv: &[(&[u8], &'a [u8])], key: &str) -> Option<&'a [u8]> {
    kv.iter()
        .find(|(k, _)| *k == key.as_bytes())
        .map(|(_, v)| *v)
}

pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_octal_space_and_backslash_decoded() {
        assert_eq!(unescape_octal(br"/a\040b\134c"), b"/a b\\c");
    }

    #[test]
    fn unescape_octal_truncated_escape_kept() {
        assert_eq!(unescape_octal(br"/a\04"), br"/a\04");
        assert_eq!(unescape_octal(br"\"), br"\");
        assert_eq!(unescape_octal(br"\777x"), br"\777x");
    }

    #[test]
    fn lines_empty_input_yields_nothing() {
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n").count(), 1);
        assert_eq!(
            lines(b"a\nb\n").collect::<Vec<_>>(),
            vec![(1, &b"a"[..]), (2, &b"b"[..])]
        );
    }

    #[test]
    fn kv_tokens_spaced_values_paired() {
        let kv = kv_tokens(b"tfd:        4 events:       1c data:  7  pos:0 ino:1a09");
        assert_eq!(kv_get(&kv, "tfd"), Some(&b"4"[..]));
        assert_eq!(kv_get(&kv, "events"), Some(&b"1c"[..]));
        assert_eq!(kv_get(&kv, "pos"), Some(&b"0"[..]));
        assert_eq!(kv_get(&kv, "ino"), Some(&b"1a09"[..]));
    }

    #[test]
    fn parse_radix_sign_and_overflow_rejected() {
        assert_eq!(parse_radix(b"-1", 10), None);
        assert_eq!(parse_radix(b"+1", 10), None);
        assert_eq!(parse_radix(b"18446744073709551616", 10), None);
        assert_eq!(parse_radix(b"ffffffffffffffff", 16), Some(u64::MAX));
    }
}
