//! The two text encodings crit uses for bytes: MIME base64 (Python's
//! `base64.encodebytes`: 76-character lines, each ending in a newline) and
//! quoted-printable (Python's `quopri.encodestring`) for unix socket names.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Base64 in 76-character lines, each followed by `\n`; empty input gives "".
pub fn base64_encode(data: &[u8]) -> String {
    let flat = STANDARD.encode(data);
    let mut out = String::with_capacity(flat.len() + flat.len() / 76 + 1);
    for chunk in flat.as_bytes().chunks(76) {
        // chunks of an ASCII string are ASCII
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out
}

/// Decodes base64, ignoring line breaks and other whitespace.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let flat: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(flat).ok()
}

const QP_MAX_LINE: usize = 76;

/// Quoted-printable encoding with the rules of CPython's `binascii.b2a_qp`
/// (text mode, tabs and spaces left alone except at the end, no header mode).
pub fn qp_encode(data: &[u8]) -> String {
    let mut out = String::new();
    let mut line_len = 0usize;
    let n = data.len();
    let mut i = 0;
    while i < n {
        let c = data[i];
        let at_end = i + 1 == n;
        let next_is_eol = at_end || matches!(data[i + 1], b'\n' | b'\r' | 0);
        let must_quote = c > 126
            || c == b'='
            || (c == b'.' && line_len == 0 && next_is_eol)
            || ((c == b'\t' || c == b' ') && at_end)
            || (c < 33 && c != b'\r' && c != b'\n' && c != b'\t' && c != b' ');
        if must_quote {
            if line_len + 3 >= QP_MAX_LINE {
                out.push_str("=\n");
                line_len = 0;
            }
            out.push_str(&format!("={c:02X}"));
            line_len += 3;
            i += 1;
        } else if c == b'\n' || (c == b'\r' && i + 1 < n && data[i + 1] == b'\n') {
            // A line break in text mode: keep it; a space or tab before it is quoted.
            if let Some(last) = out.chars().last() {
                if line_len > 0 && (last == ' ' || last == '\t') {
                    out.pop();
                    out.push_str(&format!("={:02X}", last as u32));
                }
            }
            if c == b'\r' {
                out.push_str("\r\n");
                i += 2;
            } else {
                out.push('\n');
                i += 1;
            }
            line_len = 0;
        } else {
            if i + 1 != n && data[i + 1] != b'\n' && line_len + 1 >= QP_MAX_LINE {
                out.push_str("=\n");
                line_len = 0;
            }
            out.push(c as char);
            line_len += 1;
            i += 1;
        }
    }
    out
}

/// Decodes quoted-printable: `=XX` escapes and `=\n` soft line breaks.
pub fn qp_decode(text: &str) -> Vec<u8> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b.get(i + 1) == Some(&b'\n') {
                i += 2;
                continue;
            }
            if b.get(i + 1) == Some(&b'\r') && b.get(i + 2) == Some(&b'\n') {
                i += 3;
                continue;
            }
            let hex = |x: u8| (x as char).to_digit(16);
            if let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encode_wraps_at_76_with_trailing_newline() {
        let data = vec![b'a'; 100];
        let s = base64_encode(&data);
        let lines: Vec<&str> = s.split_terminator('\n').collect();
        assert_eq!(lines[0].len(), 76);
        assert!(s.ends_with('\n'));
        assert_eq!(base64_decode(&s).unwrap(), data);
    }

    #[test]
    fn base64_encode_empty_is_empty() {
        assert_eq!(base64_encode(b""), "");
    }

    #[test]
    fn qp_encode_abstract_name_escapes_nul() {
        assert_eq!(qp_encode(b"\0crs-sock"), "=00crs-sock");
        assert_eq!(qp_encode(b"/tmp/a=b"), "/tmp/a=3Db");
        assert_eq!(qp_encode(b"x "), "x=20");
    }

    #[test]
    fn qp_roundtrip_long_and_binary() {
        let data: Vec<u8> = (0..=255u8)
            .chain(
                b"plain text that is long enough "
                    .iter()
                    .copied()
                    .cycle()
                    .take(200),
            )
            .collect();
        assert_eq!(qp_decode(&qp_encode(&data)), data);
    }
}
