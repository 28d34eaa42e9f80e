//! JSON text laid out the way Python's `json.dump` lays it out (crit's output):
//! `", "` and `": "` separators, or 4-space indentation with `--pretty`, and
//! non-ASCII characters escaped as `\uXXXX`.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter, PrettyFormatter};

/// Python's default separators, no indentation.
struct Compact;

impl Formatter for Compact {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            w.write_all(b", ")
        }
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        write_ascii(w, fragment)
    }
}

/// Indented by 4 with ASCII-only strings.
struct Pretty<'a>(PrettyFormatter<'a>);

impl Formatter for Pretty<'_> {
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        write_ascii(w, fragment)
    }
}

fn write_ascii<W: ?Sized + Write>(w: &mut W, fragment: &str) -> io::Result<()> {
    if fragment.is_ascii() {
        return w.write_all(fragment.as_bytes());
    }
    for c in fragment.chars() {
        if c.is_ascii() {
            w.write_all(&[c as u8])?;
        } else {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                write!(w, "\\u{unit:04x}")?;
            }
        }
    }
    Ok(())
}

/// Serialises `value` as crit would print it.
pub fn to_string(value: &serde_json::Value, pretty: bool) -> String {
    let mut out = Vec::new();
    let r = if pretty {
        let mut ser = serde_json::Serializer::with_formatter(
            &mut out,
            Pretty(PrettyFormatter::with_indent(b"    ")),
        );
        value.serialize(&mut ser)
    } else {
        let mut ser = serde_json::Serializer::with_formatter(&mut out, Compact);
        value.serialize(&mut ser)
    };
    // Serialising a Value into a Vec cannot fail.
    r.expect("serialising JSON into memory");
    String::from_utf8(out).expect("JSON output is ASCII")
}

#[allow(dead_code)]
fn _escape_is_default(_: CharEscape) {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_uses_python_separators() {
        assert_eq!(
            to_string(&json!({"a": [1, 2], "b": "x"}), false),
            r#"{"a": [1, 2], "b": "x"}"#
        );
    }

    #[test]
    fn pretty_indents_by_four_and_escapes_non_ascii() {
        assert_eq!(
            to_string(&json!({"a": "é"}), true),
            "{\n    \"a\": \"\\u00e9\"\n}"
        );
    }
}
