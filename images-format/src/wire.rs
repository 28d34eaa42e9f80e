//! A bounds check of protobuf wire data, run before a message is handed to
//! rust-protobuf. rust-protobuf reserves room for a packed repeated field from
//! its claimed length before it checks that length against the input, so a
//! few corrupt bytes could make it allocate tens of megabytes. Checking every
//! length-delimited field (at every depth, using the schema to find nested
//! messages) against its enclosing span first bounds every such reservation
//! by the size of the input.

use protobuf::reflect::{MessageDescriptor, RuntimeFieldType, RuntimeType};

/// Why wire data was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    /// Offset in the checked bytes.
    pub offset: usize,
    /// What is wrong there.
    pub what: &'static str,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at message byte {}", self.what, self.offset)
    }
}

impl std::error::Error for WireError {}

const MAX_DEPTH: usize = 64;

fn varint(bytes: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut v = 0u64;
    for i in 0..10 {
        let Some(&b) = bytes.get(*pos) else {
            return Err(WireError {
                offset: start,
                what: "truncated varint",
            });
        };
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(WireError {
        offset: start,
        what: "varint longer than 10 bytes",
    })
}

/// Checks `bytes` as an encoding of `md`: every length fits in what encloses it.
pub fn check(md: &MessageDescriptor, bytes: &[u8]) -> Result<(), WireError> {
    check_at(&Schema::Reflect(md.clone()), bytes, 0, 0)
}

mod schema {
    include!(concat!(env!("OUT_DIR"), "/wire_schema.rs"));
}

/// The index in the generated wire schema of the top-level message `name` (its full name:
/// the proto files have no package).
pub fn schema_index(name: &str) -> Option<u16> {
    schema::WIRE_MESSAGES
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| i as u16)
}

/// [`check`] with the generated schema of message `index` (see [`schema_index`]): the same
/// check without protobuf's reflection, whose descriptors take milliseconds to build.
pub fn check_indexed(index: u16, bytes: &[u8]) -> Result<(), WireError> {
    check_at(&Schema::Static(index), bytes, 0, 0)
}

/// Where the message-typed fields of a message come from.
enum Schema {
    Reflect(MessageDescriptor),
    Static(u16),
}

impl Schema {
    /// The schema of field `number` if it is of message type.
    fn nested(&self, number: u32) -> Option<Schema> {
        match self {
            Schema::Reflect(md) => {
                let field = md.field_by_number(number)?;
                match field.runtime_field_type() {
                    RuntimeFieldType::Singular(RuntimeType::Message(m))
                    | RuntimeFieldType::Repeated(RuntimeType::Message(m)) => {
                        Some(Schema::Reflect(m))
                    }
                    _ => None,
                }
            }
            Schema::Static(i) => schema::WIRE_MESSAGES
                .get(usize::from(*i))?
                .1
                .iter()
                .find(|(n, _)| *n == number)
                .map(|&(_, m)| Schema::Static(m)),
        }
    }
}

fn check_at(md: &Schema, bytes: &[u8], base: usize, depth: usize) -> Result<(), WireError> {
    if depth > MAX_DEPTH {
        return Err(WireError {
            offset: base,
            what: "messages nested too deeply",
        });
    }
    let mut pos = 0;
    while pos < bytes.len() {
        let tag_at = pos;
        let tag = varint(bytes, &mut pos).map_err(|e| WireError {
            offset: base + e.offset,
            ..e
        })?;
        let skip = match tag & 7 {
            0 => {
                varint(bytes, &mut pos).map_err(|e| WireError {
                    offset: base + e.offset,
                    ..e
                })?;
                0
            }
            1 => 8,
            5 => 4,
            2 => {
                let len = varint(bytes, &mut pos).map_err(|e| WireError {
                    offset: base + e.offset,
                    ..e
                })?;
                if len > (bytes.len() - pos) as u64 {
                    return Err(WireError {
                        offset: base + tag_at,
                        what: "length-delimited field longer than its enclosing message",
                    });
                }
                let len = len as usize;
                let number = u32::try_from(tag >> 3).unwrap_or(0);
                if let Some(m) = md.nested(number) {
                    check_at(&m, &bytes[pos..pos + len], base + pos, depth + 1)?;
                }
                len
            }
            _ => {
                return Err(WireError {
                    offset: base + tag_at,
                    what: "unsupported wire type",
                })
            }
        };
        if skip > bytes.len() - pos {
            return Err(WireError {
                offset: base + pos,
                what: "truncated fixed-size field",
            });
        }
        pos += skip;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::MessageFull;

    fn mm() -> MessageDescriptor {
        crate::pb::mm::Mm_entry::descriptor()
    }

    #[test]
    fn generated_schema_matches_reflection_for_every_message() {
        let all: Vec<_> = crate::registry::all_messages().collect();
        assert!(all.len() > 100, "{}", all.len());
        for md in all {
            let i = schema_index(md.full_name())
                .unwrap_or_else(|| panic!("{} not in the schema", md.full_name()));
            for f in md.fields() {
                let want = match f.runtime_field_type() {
                    RuntimeFieldType::Singular(RuntimeType::Message(m))
                    | RuntimeFieldType::Repeated(RuntimeType::Message(m)) => {
                        Some(m.full_name().to_string())
                    }
                    _ => None,
                };
                let got = match Schema::Static(i).nested(f.number() as u32) {
                    Some(Schema::Static(j)) => {
                        Some(schema::WIRE_MESSAGES[usize::from(j)].0.to_string())
                    }
                    _ => None,
                };
                assert_eq!(got, want, "{}.{}", md.full_name(), f.name());
            }
        }
    }

    #[test]
    fn check_indexed_same_verdicts_as_reflection() {
        let i = schema_index("mm_entry").unwrap();
        for bytes in [
            &[0x08, 0x01, 0x6a, 0x02, 0x01, 0x02][..],
            &[0x6a, 0xff, 0xff, 0x7f, 0x01],
            &[0x72, 0x03, 0x0a, 0x7f, 0x00],
            &[0x72, 0x02, 0x08, 0x01],
        ] {
            assert_eq!(check_indexed(i, bytes), check(&mm(), bytes), "{bytes:?}");
        }
    }

    #[test]
    fn check_valid_message_ok() {
        // field 1 varint, field 13 (mm_saved_auxv) packed with 2 bytes
        assert_eq!(check(&mm(), &[0x08, 0x01, 0x6a, 0x02, 0x01, 0x02]), Ok(()));
    }

    #[test]
    fn check_packed_length_past_end_rejected() {
        let err = check(&mm(), &[0x6a, 0xff, 0xff, 0x7f, 0x01]).unwrap_err();
        assert_eq!(err.offset, 0);
    }

    #[test]
    fn check_nested_message_length_lie_rejected() {
        // vmas (field 14) holding a nested length-delimited field that lies.
        let err = check(&mm(), &[0x72, 0x03, 0x0a, 0x7f, 0x00]).unwrap_err();
        assert_eq!(err.offset, 2);
    }

    #[test]
    fn check_truncated_varint_rejected() {
        assert!(check(&mm(), &[0x08, 0x80]).is_err());
    }
}
