//! Small files: `task/TID/children`, `personality`, `loginuid`, `timens_offsets`, and
//! the `ns/*` link values.

use crate::error::ParseError;
use crate::util::{lines, tokens, trim, Ctx};
use crate::ProcFile;

/// Parses `/proc/PID/task/TID/children`: the pids of this thread's children.
pub fn parse_children(bytes: &[u8]) -> Result<Vec<i32>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in lines(bytes) {
        let ctx = Ctx::line(ProcFile::Children, n);
        for t in tokens(line) {
            out.push(ctx.sdec("child pid", t)?);
        }
    }
    Ok(out)
}

fn single_line(file: ProcFile, bytes: &[u8]) -> Result<(Ctx, &[u8]), ParseError> {
    let mut it = lines(bytes);
    let (n, line) = it.next().ok_or_else(|| Ctx::new(file).missing("value"))?;
    if let Some((m, _)) = it.next() {
        return Err(Ctx::line(file, m).malformed("more than one line"));
    }
    Ok((Ctx::line(file, n), trim(line)))
}

/// Parses `/proc/PID/personality` (hex).
pub fn parse_personality(bytes: &[u8]) -> Result<u32, ParseError> {
    let (ctx, v) = single_line(ProcFile::Personality, bytes)?;
    ctx.hex("personality", v)
}

/// Parses `/proc/PID/loginuid` (decimal; 4294967295 means unset).
pub fn parse_loginuid(bytes: &[u8]) -> Result<u32, ParseError> {
    let (ctx, v) = single_line(ProcFile::Loginuid, bytes)?;
    ctx.dec("loginuid", v)
}

/// The clock offsets of a time namespace (`/proc/PID/timens_offsets`, of the namespace
/// the process's children get), in nanoseconds (negative ones too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimensOffsets {
    /// CLOCK_MONOTONIC's offset.
    pub monotonic_ns: i128,
    /// CLOCK_BOOTTIME's offset.
    pub boottime_ns: i128,
}

/// Parses `/proc/PID/timens_offsets`: lines `monotonic SECS NSECS` and `boottime SECS
/// NSECS` (seconds may be negative, nanoseconds are 0..1e9).
pub fn parse_timens_offsets(bytes: &[u8]) -> Result<TimensOffsets, ParseError> {
    let mut out = TimensOffsets::default();
    let (mut mono, mut boot) = (false, false);
    for (n, line) in lines(bytes) {
        let ctx = Ctx::line(ProcFile::TimensOffsets, n);
        let t: Vec<&[u8]> = tokens(line).collect();
        let [clock, secs, nsecs] = t[..] else {
            return Err(ctx.malformed("a line of clock, seconds and nanoseconds"));
        };
        let secs: i64 = ctx.sdec("seconds", secs)?;
        let nsecs: u32 = ctx.dec("nanoseconds", nsecs)?;
        if nsecs >= 1_000_000_000 {
            return Err(ctx.invalid("nanoseconds", t[2]));
        }
        let v = i128::from(secs) * 1_000_000_000 + i128::from(nsecs);
        match clock {
            b"monotonic" if !mono => (out.monotonic_ns, mono) = (v, true),
            b"boottime" if !boot => (out.boottime_ns, boot) = (v, true),
            _ => return Err(ctx.invalid("clock", clock)),
        }
    }
    if !(mono && boot) {
        return Err(Ctx::new(ProcFile::TimensOffsets).missing("monotonic and boottime lines"));
    }
    Ok(out)
}

/// A namespace link value `type:[inode]` (from `readlink /proc/PID/ns/NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsLink {
    /// The type word: `mnt`, `net`, `pid`, `user`, `uts`, `ipc`, `cgroup`, `time`.
    pub kind: String,
    /// The namespace inode number: equal inodes mean the same namespace.
    pub inode: u64,
}

/// Parses a namespace link value such as `net:[4026531833]`.
pub fn parse_ns_link(bytes: &[u8]) -> Result<NsLink, ParseError> {
    let (ctx, v) = single_line(ProcFile::NsLink, bytes)?;
    let colon = v
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| ctx.invalid("namespace link", v))?;
    let kind = ctx.text("namespace type", &v[..colon])?;
    if kind.is_empty() {
        return Err(ctx.invalid("namespace type", v));
    }
    let ino = v[colon + 1..]
        .strip_prefix(b"[")
        .and_then(|x| x.strip_suffix(b"]"))
        .ok_or_else(|| ctx.invalid("namespace inode", v))?;
    Ok(NsLink {
        kind: kind.to_owned(),
        inode: ctx.dec("namespace inode", ino)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;

    #[test]
    fn children_list_parsed() {
        let v = parse_children(include_bytes!("../tests/fixtures/zoo/children_5876")).unwrap();
        assert_eq!(v, vec![5879]);
        let none = parse_children(include_bytes!("../tests/fixtures/zoo/children_5878")).unwrap();
        assert!(none.is_empty());
        assert_eq!(parse_children(b"1 2 3 ").unwrap(), vec![1, 2, 3]);
    }

    #[test]
    fn children_garbage_is_error() {
        assert!(parse_children(b"1 x").is_err());
    }

    #[test]
    fn personality_hex_parsed() {
        let p = parse_personality(include_bytes!("../tests/fixtures/zoo/personality")).unwrap();
        assert_eq!(p, 0x0040000); // ADDR_NO_RANDOMIZE
        assert!(parse_personality(b"").is_err());
        assert!(parse_personality(b"zz\n").is_err());
        let e = parse_personality(b"0\n1\n").unwrap_err();
        assert_eq!(e.location, Location::Line(2));
    }

    #[test]
    fn loginuid_unset_parsed() {
        let l = parse_loginuid(include_bytes!("../tests/fixtures/zoo/loginuid")).unwrap();
        assert_eq!(l, u32::MAX);
        assert!(parse_loginuid(b"-1").is_err());
    }

    #[test]
    fn ns_link_parsed() {
        let n = parse_ns_link(b"net:[4026531833]").unwrap();
        assert_eq!(
            n,
            NsLink {
                kind: "net".into(),
                inode: 4026531833
            }
        );
        let fx = include_str!("../tests/fixtures/zoo/ns_links");
        for line in fx.lines() {
            let (name, link) = line.split_once(' ').unwrap();
            let n = parse_ns_link(link.as_bytes()).unwrap();
            assert!(name.starts_with(&n.kind), "{name} {link}");
        }
    }

    #[test]
    fn ns_link_malformed_is_error() {
        for bad in [&b"net"[..], b"net:4026", b"net:[x]", b":[1]", b"net:[1"] {
            assert!(
                parse_ns_link(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn parse_timens_offsets_reads_negative_seconds() {
        let o = parse_timens_offsets(b"monotonic -5 250\nboottime 7 0\n").unwrap();
        assert_eq!(o.monotonic_ns, -5_000_000_000 + 250);
        assert_eq!(o.boottime_ns, 7_000_000_000);
        assert!(parse_timens_offsets(b"monotonic 1 0\n").is_err());
        assert!(parse_timens_offsets(b"monotonic 1 0\nboottime 1 1000000000\n").is_err());
        assert!(parse_timens_offsets(b"monotonic 1 0\nmonotonic 1 0\n").is_err());
    }
}
