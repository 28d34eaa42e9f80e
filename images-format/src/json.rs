//! Messages to and from crit's JSON form.
//!
//! The rules are crit's (pycriu `pb2dict`): only fields that are set appear, in
//! field-number order; enums by value name; bytes as MIME base64 (76-column
//! lines, trailing newline), or quoted-printable for `(criu).conv =
//! "unix_name"`. With `pretty`, integers marked `(criu).hex` print as
//! `"0x.."` (and every integer inside a message field so marked), `(criu).dev`
//! as `"major:minor"`, `(criu).flags` as `"A | B | 0x.."` and `(criu).dict`
//! values by name; repeated `(criu).ipadd` fields as one IPv4/IPv6 address.
//! Reading accepts both forms, as crit does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use protobuf::reflect::{
    FieldDescriptor, MessageDescriptor, ReflectFieldRef, ReflectValueBox, ReflectValueRef,
    RuntimeFieldType, RuntimeType,
};
use protobuf::MessageDyn;
use serde_json::{Map, Number, Value};

use crate::pb::opts::CRIU_Opts;

/// The `(criu)` options of a field (defaults when it has none).
pub fn field_opts(field: &FieldDescriptor) -> CRIU_Opts {
    let options = field.proto().options.get_or_default();
    crate::pb::opts::exts::criu.get(options).unwrap_or_default()
}

/// Converts a message to crit's JSON form.
pub fn message_to_json(msg: &dyn MessageDyn, pretty: bool) -> Value {
    to_json(msg, pretty, false)
}

fn to_json(msg: &dyn MessageDyn, pretty: bool, is_hex: bool) -> Value {
    let desc = msg.descriptor_dyn();
    let mut fields: Vec<FieldDescriptor> = desc.fields().collect();
    fields.sort_by_key(|f| f.number());
    let mut out = Map::new();
    for field in fields {
        let opts = field_opts(&field);
        let hex = is_hex || opts.hex();
        let value = match field.get_reflect(msg) {
            ReflectFieldRef::Optional(o) => match o.value() {
                Some(v) => cast_to_json(&field, &opts, v, pretty, hex),
                None => continue,
            },
            ReflectFieldRef::Repeated(r) => {
                if r.is_empty() {
                    continue;
                }
                if pretty && opts.ipadd() {
                    ip_to_json(&r.into_iter().map(value_as_u32).collect::<Vec<_>>())
                } else {
                    Value::Array(
                        r.into_iter()
                            .map(|v| cast_to_json(&field, &opts, v, pretty, hex))
                            .collect(),
                    )
                }
            }
            ReflectFieldRef::Map(_) => continue,
        };
        out.insert(field.name().to_string(), value);
    }
    Value::Object(out)
}

fn value_as_u32(v: ReflectValueRef) -> u32 {
    match v {
        ReflectValueRef::U32(x) => x,
        ReflectValueRef::I32(x) => x as u32,
        ReflectValueRef::U64(x) => x as u32,
        ReflectValueRef::I64(x) => x as u32,
        _ => 0,
    }
}

fn ip_to_json(words: &[u32]) -> Value {
    // The words hold the address in network byte order as the kernel stores it,
    // read as little-endian u32s.
    let addr: IpAddr = if words.len() == 1 {
        Ipv4Addr::from(u32::from_be(words[0])).into()
    } else {
        let mut v: u128 = 0;
        for i in 0..4 {
            let w = words.get(i).copied().unwrap_or(0);
            v = (v << 32) | u128::from(u32::from_be(w));
        }
        Ipv6Addr::from(v).into()
    };
    Value::Array(vec![Value::String(addr.to_string())])
}

fn cast_to_json(
    field: &FieldDescriptor,
    opts: &CRIU_Opts,
    v: ReflectValueRef,
    pretty: bool,
    hex: bool,
) -> Value {
    let int = |signed: Option<i64>, unsigned: Option<u64>| -> Value {
        if pretty {
            if hex {
                return Value::String(match (signed, unsigned) {
                    (Some(s), _) if s < 0 => format!("-{:#x}", s.unsigned_abs()),
                    (Some(s), _) => format!("{s:#x}"),
                    (_, Some(u)) => format!("{u:#x}"),
                    _ => unreachable!("an integer is signed or unsigned"),
                });
            }
            let raw = unsigned.unwrap_or_else(|| signed.unwrap_or(0) as u64);
            if opts.dev() {
                return Value::String(decode_dev(raw, opts.odev()));
            }
            if opts.has_flags() {
                return Value::String(match flag_table(opts.flags()) {
                    Some(table) => map_flags(raw, table),
                    None => format!("{raw:#x}"),
                });
            }
            if opts.has_dict() {
                if let Some(name) = dict_lookup(opts.dict(), field.name(), raw) {
                    return Value::String(name.to_string());
                }
            }
        }
        match (signed, unsigned) {
            (Some(s), _) => Value::Number(Number::from(s)),
            (_, Some(u)) => Value::Number(Number::from(u)),
            _ => Value::Null,
        }
    };
    match v {
        ReflectValueRef::U32(x) => int(None, Some(u64::from(x))),
        ReflectValueRef::U64(x) => int(None, Some(x)),
        ReflectValueRef::I32(x) => int(Some(i64::from(x)), None),
        ReflectValueRef::I64(x) => int(Some(x), None),
        ReflectValueRef::F32(x) => {
            Number::from_f64(f64::from(x)).map_or(Value::Null, Value::Number)
        }
        ReflectValueRef::F64(x) => Number::from_f64(x).map_or(Value::Null, Value::Number),
        ReflectValueRef::Bool(b) => Value::Bool(b),
        ReflectValueRef::String(s) => Value::String(s.to_string()),
        ReflectValueRef::Bytes(b) => Value::String(if opts.conv() == "unix_name" {
            crate::textcodec::qp_encode(b)
        } else {
            crate::textcodec::base64_encode(b)
        }),
        ReflectValueRef::Enum(d, n) => match d.value_by_number(n) {
            Some(ev) => Value::String(ev.name().to_string()),
            None => Value::Number(Number::from(n)),
        },
        ReflectValueRef::Message(m) => to_json(&*m, pretty, hex),
    }
}

/// Flag names of crit's flag tables, by table name.
pub fn flag_table(name: &str) -> Option<&'static [(&'static str, u64)]> {
    const MMAP_PROT: &[(&str, u64)] =
        &[("PROT_READ", 0x1), ("PROT_WRITE", 0x2), ("PROT_EXEC", 0x4)];
    const MMAP_FLAGS: &[(&str, u64)] = &[
        ("MAP_SHARED", 0x1),
        ("MAP_PRIVATE", 0x2),
        ("MAP_DROPPABLE", 0x08),
        ("MAP_ANON", 0x20),
        ("MAP_GROWSDOWN", 0x0100),
    ];
    const MMAP_STATUS: &[(&str, u64)] = &[
        ("VMA_AREA_NONE", 0),
        ("VMA_AREA_REGULAR", 1 << 0),
        ("VMA_AREA_STACK", 1 << 1),
        ("VMA_AREA_VSYSCALL", 1 << 2),
        ("VMA_AREA_VDSO", 1 << 3),
        ("VMA_AREA_HEAP", 1 << 5),
        ("VMA_FILE_PRIVATE", 1 << 6),
        ("VMA_FILE_SHARED", 1 << 7),
        ("VMA_ANON_SHARED", 1 << 8),
        ("VMA_ANON_PRIVATE", 1 << 9),
        ("VMA_AREA_SYSVIPC", 1 << 10),
        ("VMA_AREA_SOCKET", 1 << 11),
        ("VMA_AREA_VVAR", 1 << 12),
        ("VMA_AREA_AIORING", 1 << 13),
        ("VMA_AREA_MEMFD", 1 << 14),
        ("VMA_AREA_SHSTK", 1 << 15),
        ("VMA_AREA_UPROBES", 1 << 17),
        ("VMA_UNSUPP", 1 << 31),
    ];
    const RFILE_FLAGS: &[(&str, u64)] = &[
        ("O_WRONLY", 0o1),
        ("O_RDWR", 0o2),
        ("O_CREAT", 0o100),
        ("O_EXCL", 0o200),
        ("O_NOCTTY", 0o400),
        ("O_TRUNC", 0o1000),
        ("O_APPEND", 0o2000),
        ("O_NONBLOCK", 0o4000),
        ("O_DSYNC", 0o10000),
        ("FASYNC", 0o20000),
        ("O_DIRECT", 0o40000),
        ("O_LARGEFILE", 0o100000),
        ("O_DIRECTORY", 0o200000),
        ("O_NOFOLLOW", 0o400000),
        ("O_NOATIME", 0o1000000),
        ("O_CLOEXEC", 0o2000000),
    ];
    const SEALS_FLAGS: &[(&str, u64)] = &[
        ("F_SEAL_SEAL", 0x1),
        ("F_SEAL_SHRINK", 0x2),
        ("F_SEAL_GROW", 0x4),
        ("F_SEAL_WRITE", 0x8),
        ("F_SEAL_FUTURE_WRITE", 0x10),
    ];
    const PMAP_FLAGS: &[(&str, u64)] = &[("PE_PARENT", 1), ("PE_LAZY", 2), ("PE_PRESENT", 4)];
    Some(match name {
        "mmap.prot" => MMAP_PROT,
        "mmap.flags" => MMAP_FLAGS,
        "mmap.status" => MMAP_STATUS,
        "rfile.flags" => RFILE_FLAGS,
        "seals.flags" => SEALS_FLAGS,
        "pmap.flags" => PMAP_FLAGS,
        _ => return None,
    })
}

/// `"A | B | 0x.."`: the names of the bits set, then what no name covers.
pub fn map_flags(value: u64, table: &[(&str, u64)]) -> String {
    let mut parts: Vec<String> = table
        .iter()
        .filter(|(_, bit)| value & bit != 0)
        .map(|(n, _)| n.to_string())
        .collect();
    let known = table.iter().fold(0, |acc, (_, bit)| acc | bit);
    let rest = value & !known;
    if rest != 0 {
        parts.push(format!("{rest:#x}"));
    }
    parts.join(" | ")
}

/// Inverse of [`map_flags`]: names and numbers joined by `|`.
pub fn unmap_flags(text: &str, table: &[(&str, u64)]) -> Option<u64> {
    if text.is_empty() {
        return Some(0);
    }
    text.split('|').map(str::trim).try_fold(0u64, |acc, part| {
        let v = match table.iter().find(|(n, _)| *n == part) {
            Some((_, bit)) => *bit,
            None => parse_int(part)? as u64,
        };
        Some(acc.wrapping_add(v))
    })
}

const DICT_GEN: &[(&str, &[(u64, &str)])] = &[(
    "task_state",
    &[(1, "Alive"), (2, "Dead"), (3, "Stopped"), (6, "Zombie")],
)];
const DICT_SK: &[(&str, &[(u64, &str)])] = &[
    (
        "family",
        &[
            (1, "UNIX"),
            (2, "INET"),
            (10, "INET6"),
            (16, "NETLINK"),
            (17, "PACKET"),
        ],
    ),
    (
        "type",
        &[
            (1, "STREAM"),
            (2, "DGRAM"),
            (3, "RAW"),
            (5, "SEQPACKET"),
            (10, "PACKET"),
        ],
    ),
    (
        "state",
        &[
            (1, "ESTABLISHED"),
            (2, "SYN_SENT"),
            (3, "SYN_RECV"),
            (4, "FIN_WAIT1"),
            (5, "FIN_WAIT2"),
            (6, "TIME_WAIT"),
            (7, "CLOSE"),
            (8, "CLOSE_WAIT"),
            (9, "LAST_ACK"),
            (10, "LISTEN"),
        ],
    ),
    (
        "proto",
        &[(0, "IP"), (6, "TCP"), (17, "UDP"), (136, "UDPLITE")],
    ),
];

fn dict_values(dict: &str, field: &str) -> Option<&'static [(u64, &'static str)]> {
    let table = match dict {
        "gen" => DICT_GEN,
        "sk" => DICT_SK,
        _ => return None,
    };
    table.iter().find(|(f, _)| *f == field).map(|(_, v)| *v)
}

fn dict_lookup(dict: &str, field: &str, value: u64) -> Option<&'static str> {
    dict_values(dict, field)?
        .iter()
        .find(|(v, _)| *v == value)
        .map(|(_, n)| *n)
}

fn dict_reverse(dict: &str, field: &str, name: &str) -> Option<u64> {
    dict_values(dict, field)?
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(v, _)| *v)
}

const MINORBITS: u32 = 20;

fn decode_dev(v: u64, old: bool) -> String {
    if old {
        // glibc's gnu_dev_major/minor
        let major = ((v >> 8) & 0xfff) | ((v >> 32) & !0xfff);
        let minor = (v & 0xff) | ((v >> 12) & !0xff);
        format!("{major}:{minor}")
    } else {
        format!("{}:{}", v >> MINORBITS, v & ((1 << MINORBITS) - 1))
    }
}

fn encode_dev(text: &str, old: bool) -> Option<u64> {
    let (ma, mi) = text.split_once(':')?;
    let major: u64 = ma.trim().parse().ok()?;
    let minor: u64 = mi.trim().parse().ok()?;
    Some(if old {
        ((major & 0xfff) << 8) | ((major & !0xfff) << 32) | (minor & 0xff) | ((minor & !0xff) << 12)
    } else {
        (major << MINORBITS) | minor
    })
}

/// Parses an integer the way Python's `int(text, 0)` does: an optional sign,
/// then decimal, `0x` hex, `0o` octal or `0b` binary, underscores allowed.
pub fn parse_int(text: &str) -> Option<i128> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let lower = t.to_ascii_lowercase();
    let (radix, digits) = if let Some(r) = lower.strip_prefix("0x") {
        (16, r)
    } else if let Some(r) = lower.strip_prefix("0o") {
        (8, r)
    } else if let Some(r) = lower.strip_prefix("0b") {
        (2, r)
    } else {
        (10, lower.as_str())
    };
    let digits: String = digits.chars().filter(|c| *c != '_').collect();
    if digits.is_empty() {
        return None;
    }
    let v = i128::from_str_radix(&digits, radix).ok()?;
    Some(if neg { -v } else { v })
}

/// Why a JSON value could not become a message, and where.
#[derive(Debug)]
pub struct JsonError {
    /// Dotted path of the field (`tc.sigactions[3].flags`).
    pub path: String,
    /// What is wrong.
    pub what: String,
}

type JResult<T> = Result<T, JsonError>;

fn jerr(path: &str, what: impl Into<String>) -> JsonError {
    JsonError {
        path: path.to_string(),
        what: what.into(),
    }
}

/// Builds a message of type `desc` from its JSON form. Keys that name no field
/// are an error (except `ignore`, e.g. `"extra"` at the top of an entry).
pub fn message_from_json(
    desc: &MessageDescriptor,
    value: &Value,
    ignore: &[&str],
) -> Result<Box<dyn MessageDyn>, JsonError> {
    let mut msg = desc.new_instance();
    fill_message(&mut *msg, value, "", ignore)?;
    Ok(msg)
}

fn fill_message(
    msg: &mut dyn MessageDyn,
    value: &Value,
    path: &str,
    ignore: &[&str],
) -> JResult<()> {
    let obj = value
        .as_object()
        .ok_or_else(|| jerr(path, "expected an object"))?;
    let desc = msg.descriptor_dyn();
    for (key, v) in obj {
        if ignore.contains(&key.as_str()) {
            continue;
        }
        let sub = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        let field = desc
            .field_by_name(key)
            .ok_or_else(|| jerr(&sub, format!("no field {key} in {}", desc.name())))?;
        let opts = field_opts(&field);
        match field.runtime_field_type() {
            RuntimeFieldType::Singular(rt) => {
                if let RuntimeType::Message(_) = rt {
                    let m = field.mut_message(msg);
                    fill_message(m, v, &sub, &[])?;
                } else {
                    let b = cast_from_json(&field, &opts, &rt, v, &sub)?;
                    field.set_singular_field(msg, b);
                }
            }
            RuntimeFieldType::Repeated(rt) => {
                let items = v
                    .as_array()
                    .ok_or_else(|| jerr(&sub, "expected an array"))?;
                let mut boxes = Vec::with_capacity(items.len());
                if opts.ipadd() && items.first().is_some_and(Value::is_string) {
                    let text = items[0].as_str().unwrap_or_default();
                    let addr: IpAddr = text
                        .parse()
                        .map_err(|_| jerr(&sub, format!("bad IP address {text:?}")))?;
                    let words: Vec<u32> = match addr {
                        IpAddr::V4(a) => vec![u32::from(a).to_be()],
                        IpAddr::V6(a) => {
                            let v = u128::from(a);
                            (0..4)
                                .rev()
                                .map(|i| ((v >> (32 * i)) as u32).to_be())
                                .collect()
                        }
                    };
                    for w in words {
                        boxes.push(match rt {
                            RuntimeType::U32 => ReflectValueBox::U32(w),
                            RuntimeType::I32 => ReflectValueBox::I32(w as i32),
                            RuntimeType::U64 => ReflectValueBox::U64(u64::from(w)),
                            RuntimeType::I64 => ReflectValueBox::I64(i64::from(w)),
                            _ => return Err(jerr(&sub, "ipadd on a non-integer field")),
                        });
                    }
                } else {
                    for (i, item) in items.iter().enumerate() {
                        let ipath = format!("{sub}[{i}]");
                        if let RuntimeType::Message(md) = &rt {
                            let mut m = md.new_instance();
                            fill_message(&mut *m, item, &ipath, &[])?;
                            boxes.push(ReflectValueBox::Message(m));
                        } else {
                            boxes.push(cast_from_json(&field, &opts, &rt, item, &ipath)?);
                        }
                    }
                }
                let mut rep = field.mut_repeated(msg);
                for b in boxes {
                    rep.push(b);
                }
            }
            RuntimeFieldType::Map(..) => {
                return Err(jerr(&sub, "map fields are not used in images"))
            }
        }
    }
    Ok(())
}

fn cast_from_json(
    field: &FieldDescriptor,
    opts: &CRIU_Opts,
    rt: &RuntimeType,
    v: &Value,
    path: &str,
) -> JResult<ReflectValueBox> {
    let int = || -> JResult<i128> {
        match v {
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .ok_or_else(|| jerr(path, format!("{n} is not an integer"))),
            Value::String(s) => {
                if opts.dev() {
                    if let Some(d) = encode_dev(s, opts.odev()) {
                        return Ok(i128::from(d));
                    }
                }
                if opts.has_flags() {
                    if let Some(table) = flag_table(opts.flags()) {
                        return unmap_flags(s, table)
                            .map(i128::from)
                            .ok_or_else(|| jerr(path, format!("bad flags {s:?}")));
                    }
                }
                if opts.has_dict() {
                    if let Some(x) = dict_reverse(opts.dict(), field.name(), s) {
                        return Ok(i128::from(x));
                    }
                }
                parse_int(s).ok_or_else(|| jerr(path, format!("bad integer {s:?}")))
            }
            Value::Bool(b) => Ok(i128::from(*b)),
            _ => Err(jerr(path, "expected an integer")),
        }
    };
    let range = |x: i128, lo: i128, hi: i128| -> JResult<i128> {
        if x < lo || x > hi {
            Err(jerr(path, format!("{x} out of range")))
        } else {
            Ok(x)
        }
    };
    Ok(match rt {
        RuntimeType::U32 => ReflectValueBox::U32(range(int()?, 0, i128::from(u32::MAX))? as u32),
        RuntimeType::U64 => ReflectValueBox::U64(range(int()?, 0, i128::from(u64::MAX))? as u64),
        RuntimeType::I32 => {
            ReflectValueBox::I32(range(int()?, i128::from(i32::MIN), i128::from(i32::MAX))? as i32)
        }
        RuntimeType::I64 => {
            ReflectValueBox::I64(range(int()?, i128::from(i64::MIN), i128::from(i64::MAX))? as i64)
        }
        RuntimeType::F32 => {
            ReflectValueBox::F32(v.as_f64().ok_or_else(|| jerr(path, "expected a number"))? as f32)
        }
        RuntimeType::F64 => {
            ReflectValueBox::F64(v.as_f64().ok_or_else(|| jerr(path, "expected a number"))?)
        }
        RuntimeType::Bool => ReflectValueBox::Bool(match v {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_i64().is_some_and(|x| x != 0),
            _ => return Err(jerr(path, "expected a boolean")),
        }),
        RuntimeType::String => ReflectValueBox::String(
            v.as_str()
                .ok_or_else(|| jerr(path, "expected a string"))?
                .to_string(),
        ),
        RuntimeType::VecU8 => {
            let s = v.as_str().ok_or_else(|| jerr(path, "expected a string"))?;
            ReflectValueBox::Bytes(if opts.conv() == "unix_name" {
                crate::textcodec::qp_decode(s)
            } else {
                crate::textcodec::base64_decode(s).ok_or_else(|| jerr(path, "bad base64"))?
            })
        }
        RuntimeType::Enum(ed) => {
            let n = match v {
                Value::String(s) => ed
                    .value_by_name(s)
                    .map(|e| e.value())
                    .ok_or_else(|| jerr(path, format!("{s:?} is not a value of {}", ed.name())))?,
                Value::Number(n) => n
                    .as_i64()
                    .and_then(|x| i32::try_from(x).ok())
                    .ok_or_else(|| jerr(path, "bad enum number"))?,
                _ => return Err(jerr(path, "expected an enum name")),
            };
            ReflectValueBox::Enum(ed.clone(), n)
        }
        RuntimeType::Message(_) => return Err(jerr(path, "unexpected message")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_flags_known_and_rest() {
        let t = flag_table("mmap.prot").unwrap();
        assert_eq!(map_flags(0x3, t), "PROT_READ | PROT_WRITE");
        assert_eq!(map_flags(0x9, t), "PROT_READ | 0x8");
        assert_eq!(map_flags(0, t), "");
    }

    #[test]
    fn unmap_flags_inverts_map_flags() {
        let t = flag_table("rfile.flags").unwrap();
        for v in [0u64, 0o2, 0o2002, 0o2000000 | 0o1, 0x8000_0000] {
            assert_eq!(unmap_flags(&map_flags(v, t), t), Some(v));
        }
    }

    #[test]
    fn mmap_status_none_never_printed_for_nonzero() {
        // VMA_AREA_NONE has value 0 so `value & 0` never selects it, as in crit.
        let t = flag_table("mmap.status").unwrap();
        assert_eq!(map_flags(0x201, t), "VMA_AREA_REGULAR | VMA_ANON_PRIVATE");
    }

    #[test]
    fn parse_int_python_forms() {
        assert_eq!(parse_int("0x1f"), Some(31));
        assert_eq!(parse_int("-0x1"), Some(-1));
        assert_eq!(parse_int("0o17"), Some(15));
        assert_eq!(parse_int("1_000"), Some(1000));
        assert_eq!(parse_int("zz"), None);
        assert_eq!(parse_int(""), None);
    }

    #[test]
    fn dev_roundtrip_both_encodings() {
        assert_eq!(decode_dev((8 << 20) | 1, false), "8:1");
        assert_eq!(encode_dev("8:1", false), Some((8 << 20) | 1));
        let old = encode_dev("259:65536", true).unwrap();
        assert_eq!(decode_dev(old, true), "259:65536");
    }

    #[test]
    fn ip_to_json_v4_and_v6() {
        assert_eq!(
            ip_to_json(&[u32::from_le_bytes([127, 0, 0, 1])]),
            serde_json::json!(["127.0.0.1"])
        );
        let one = u32::from_le_bytes([0, 0, 0, 1]);
        assert_eq!(ip_to_json(&[0, 0, 0, one]), serde_json::json!(["::1"]));
    }
}
