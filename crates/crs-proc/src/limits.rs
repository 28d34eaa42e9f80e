//! `/proc/PID/limits`.

use crate::error::ParseError;
use crate::util::{lines, lossy, tokens, trim, Ctx};
use crate::ProcFile;

/// A resource limit, in RLIMIT_* order (the discriminant is the RLIMIT_ number on x86_64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// RLIMIT_CPU, "Max cpu time"
    Cpu = 0,
    /// RLIMIT_FSIZE, "Max file size"
    Fsize = 1,
    /// RLIMIT_DATA, "Max data size"
    Data = 2,
    /// RLIMIT_STACK, "Max stack size"
    Stack = 3,
    /// RLIMIT_CORE, "Max core file size"
    Core = 4,
    /// RLIMIT_RSS, "Max resident set"
    Rss = 5,
    /// RLIMIT_NPROC, "Max processes"
    Nproc = 6,
    /// RLIMIT_NOFILE, "Max open files"
    Nofile = 7,
    /// RLIMIT_MEMLOCK, "Max locked memory"
    Memlock = 8,
    /// RLIMIT_AS, "Max address space"
    As = 9,
    /// RLIMIT_LOCKS, "Max file locks"
    Locks = 10,
    /// RLIMIT_SIGPENDING, "Max pending signals"
    Sigpending = 11,
    /// RLIMIT_MSGQUEUE, "Max msgqueue size"
    Msgqueue = 12,
    /// RLIMIT_NICE, "Max nice priority"
    Nice = 13,
    /// RLIMIT_RTPRIO, "Max realtime priority"
    Rtprio = 14,
    /// RLIMIT_RTTIME, "Max realtime timeout"
    Rttime = 15,
}

/// Resources in RLIMIT_ order with the row label the kernel prints.
pub const RESOURCES: [(Resource, &str); 16] = [
    (Resource::Cpu, "Max cpu time"),
    (Resource::Fsize, "Max file size"),
    (Resource::Data, "Max data size"),
    (Resource::Stack, "Max stack size"),
    (Resource::Core, "Max core file size"),
    (Resource::Rss, "Max resident set"),
    (Resource::Nproc, "Max processes"),
    (Resource::Nofile, "Max open files"),
    (Resource::Memlock, "Max locked memory"),
    (Resource::As, "Max address space"),
    (Resource::Locks, "Max file locks"),
    (Resource::Sigpending, "Max pending signals"),
    (Resource::Msgqueue, "Max msgqueue size"),
    (Resource::Nice, "Max nice priority"),
    (Resource::Rtprio, "Max realtime priority"),
    (Resource::Rttime, "Max realtime timeout"),
];

/// One limit value; `None` is "unlimited" (RLIM_INFINITY).
pub type LimitValue = Option<u64>;

/// The soft and hard value of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Soft limit.
    pub soft: LimitValue,
    /// Hard limit.
    pub hard: LimitValue,
}

impl Limit {
    /// The values as `struct rlimit` holds them (RLIM_INFINITY = `u64::MAX`).
    pub fn as_raw(&self) -> (u64, u64) {
        (self.soft.unwrap_or(u64::MAX), self.hard.unwrap_or(u64::MAX))
    }
}

/// `/proc/PID/limits`: one entry per resource in RLIMIT_ order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Indexed by `Resource as usize`; `None` if the row was absent.
    pub limits: [Option<Limit>; 16],
    /// Rows with a label this crate does not know, kept as trimmed text.
    pub unknown: Vec<String>,
}

impl Limits {
    /// The limit of `r`, if its row was present.
    pub fn get(&self, r: Resource) -> Option<Limit> {
        self.limits[r as usize]
    }
}

fn value(ctx: &Ctx, field: &'static str, t: &[u8]) -> Result<LimitValue, ParseError> {
    if t == b"unlimited" {
        Ok(None)
    } else {
        Ok(Some(ctx.dec(field, t)?))
    }
}

/// Parses `/proc/PID/limits`. The header row must come first; every known row must be
/// present.
pub fn parse_limits(bytes: &[u8]) -> Result<Limits, ParseError> {
    let file = ProcFile::Limits;
    let mut out = Limits {
        limits: [None; 16],
        unknown: Vec::new(),
    };
    let mut header = false;
    for (n, line) in lines(bytes) {
        let ctx = Ctx::line(file, n);
        if !header {
            if !line.starts_with(b"Limit ") {
                return Err(ctx.missing("header row \"Limit Soft Limit ...\""));
            }
            header = true;
            continue;
        }
        if trim(line).is_empty() {
            continue;
        }
        let Some((res, label)) = RESOURCES
            .iter()
            .find(|(_, l)| line.starts_with(l.as_bytes()) && line.get(l.len()) == Some(&b' '))
        else {
            out.unknown.push(lossy(trim(line)));
            continue;
        };
        let mut t = tokens(&line[label.len()..]);
        let soft = value(
            &ctx,
            "soft limit",
            t.next().ok_or_else(|| ctx.missing("soft limit"))?,
        )?;
        let hard = value(
            &ctx,
            "hard limit",
            t.next().ok_or_else(|| ctx.missing("hard limit"))?,
        )?;
        out.limits[*res as usize] = Some(Limit { soft, hard });
    }
    if !header {
        return Err(Ctx::new(file).missing("header row"));
    }
    if let Some((_, label)) = RESOURCES
        .iter()
        .find(|(r, _)| out.limits[*r as usize].is_none())
    {
        return Err(Ctx::new(file).missing(label));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Location, ParseErrorKind};

    const ZOO: &[u8] = include_bytes!("../tests/fixtures/zoo/limits");

    #[test]
    fn limits_zoo_parsed_with_unlimited() {
        let l = parse_limits(ZOO).unwrap();
        assert_eq!(
            l.get(Resource::Cpu),
            Some(Limit {
                soft: None,
                hard: None
            })
        );
        assert_eq!(
            l.get(Resource::Stack),
            Some(Limit {
                soft: Some(8388608),
                hard: None
            })
        );
        assert_eq!(l.get(Resource::Nofile).unwrap().as_raw(), (20000, 20000));
        assert_eq!(l.get(Resource::Core).unwrap().soft, Some(0));
        assert_eq!(
            l.get(Resource::Nice),
            Some(Limit {
                soft: Some(0),
                hard: Some(0)
            })
        );
        assert_eq!(
            l.get(Resource::Rttime).unwrap().as_raw(),
            (u64::MAX, u64::MAX)
        );
        assert!(l.unknown.is_empty());
    }

    #[test]
    fn limits_missing_row_named() {
        let text: Vec<u8> = lines(ZOO)
            .filter(|(_, l)| !l.starts_with(b"Max file locks"))
            .flat_map(|(_, l)| l.iter().copied().chain([b'\n']))
            .collect();
        let e = parse_limits(&text).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::Missing("Max file locks"));
    }

    #[test]
    fn limits_bad_value_names_line() {
        let mut text = ZOO.to_vec();
        text.extend_from_slice(
            b"Max cpu time              lots                 unlimited  seconds\n",
        );
        let e = parse_limits(&text).unwrap_err();
        assert_eq!(e.location, Location::Line(18));
    }

    #[test]
    fn limits_without_header_is_error() {
        assert!(parse_limits(b"").is_err());
        assert!(parse_limits(b"Max cpu time unlimited unlimited seconds\n").is_err());
    }

    #[test]
    fn limits_unknown_row_kept() {
        let mut text = ZOO.to_vec();
        text.extend_from_slice(
            b"Max widgets               5                    6          things\n",
        );
        let l = parse_limits(&text).unwrap();
        assert_eq!(l.unknown.len(), 1);
    }
}
