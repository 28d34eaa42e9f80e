//! `/proc/locks` and the `lock:` lines of fdinfo (same format).

use crate::error::ParseError;
use crate::util::{lines, lossy, tokens, trim, Ctx};
use crate::ProcFile;

/// The lock class column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockClass {
    /// `POSIX` (fcntl F_SETLK, lockf)
    Posix,
    /// `OFDLCK` (open file description lock, F_OFD_SETLK)
    Ofd,
    /// `FLOCK` (flock)
    Flock,
    /// `LEASE`
    Lease,
    /// `DELEG` (NFS delegation)
    Deleg,
    /// `ACCESS`
    Access,
    /// Anything else, verbatim.
    Other(String),
}

/// The lock type column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockKind {
    /// `READ`
    Read,
    /// `WRITE`
    Write,
    /// `UNLCK`
    Unlock,
    /// Anything else, verbatim.
    Other(String),
}

/// One lock line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLock {
    /// Ordinal number printed first.
    pub id: u64,
    /// Line marked `->`: a request blocked waiting on the lock above it.
    pub blocked: bool,
    /// Class.
    pub class: LockClass,
    /// The mode column: `ADVISORY`, `MANDATORY`, `*NOINODE*`, or for leases `ACTIVE`,
    /// `BREAKING`, `BREAKER`.
    pub mode: String,
    /// READ / WRITE.
    pub kind: LockKind,
    /// Owner pid; -1 for OFD locks (they belong to an open file description).
    pub pid: i32,
    /// Device and inode of the locked file; `None` if the kernel printed `<none>`.
    pub file: Option<LockedFile>,
    /// First byte.
    pub start: u64,
    /// Last byte (inclusive); `None` for `EOF` (to the end of the file, also whole-file
    /// flock and leases).
    pub end: Option<u64>,
}

/// Device and inode of a locked file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockedFile {
    /// Device major.
    pub dev_major: u32,
    /// Device minor.
    pub dev_minor: u32,
    /// Inode.
    pub inode: u64,
}

/// Parses one lock line (`1: POSIX  ADVISORY  WRITE 5876 fe:00:10011160 2 6`).
pub(crate) fn parse_lock_line(ctx: &Ctx, line: &[u8]) -> Result<FileLock, ParseError> {
    let line = trim(line);
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| ctx.missing("lock number"))?;
    let id: u64 = ctx.dec("lock number", &line[..colon])?;
    let mut t = tokens(&line[colon + 1..]).peekable();
    let blocked = t.next_if(|x| *x == b"->").is_some();
    let mut next = |what: &'static str| t.next().ok_or_else(|| ctx.missing(what));
    let class = match next("lock class")? {
        b"POSIX" => LockClass::Posix,
        b"OFDLCK" => LockClass::Ofd,
        b"FLOCK" => LockClass::Flock,
        b"LEASE" => LockClass::Lease,
        b"DELEG" => LockClass::Deleg,
        b"ACCESS" => LockClass::Access,
        o => LockClass::Other(lossy(o)),
    };
    let mode = lossy(next("lock mode")?);
    let kind = match next("lock type")? {
        b"READ" => LockKind::Read,
        b"WRITE" => LockKind::Write,
        b"UNLCK" => LockKind::Unlock,
        o => LockKind::Other(lossy(o)),
    };
    let pid: i32 = ctx.sdec("lock pid", next("lock pid")?)?;
    let f = next("lock device:inode")?;
    let file = if f.starts_with(b"<none>") {
        None
    } else {
        let parts: Vec<&[u8]> = f.split(|&b| b == b':').collect();
        if parts.len() != 3 {
            return Err(ctx.invalid("lock device:inode", f));
        }
        Some(LockedFile {
            dev_major: ctx.hex("lock device", parts[0])?,
            dev_minor: ctx.hex("lock device", parts[1])?,
            inode: ctx.dec("lock inode", parts[2])?,
        })
    };
    let start: u64 = ctx.dec("lock start", next("lock start")?)?;
    let end = match next("lock end")? {
        b"EOF" => None,
        e => Some(ctx.dec("lock end", e)?),
    };
    Ok(FileLock {
        id,
        blocked,
        class,
        mode,
        kind,
        pid,
        file,
        start,
        end,
    })
}

/// Parses `/proc/locks`.
pub fn parse_locks(bytes: &[u8]) -> Result<Vec<FileLock>, ParseError> {
    lines(bytes)
        .filter(|(_, l)| !trim(l).is_empty())
        .map(|(n, l)| parse_lock_line(&Ctx::line(ProcFile::Locks, n), l))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;

    const ZOO: &[u8] = include_bytes!("../tests/fixtures/zoo/locks");

    #[test]
    fn locks_zoo_three_classes_parsed() {
        let v = parse_locks(ZOO).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].class, LockClass::Ofd);
        assert_eq!(v[0].kind, LockKind::Read);
        assert_eq!(v[0].pid, -1);
        assert_eq!(v[0].end, None);
        assert_eq!(v[1].class, LockClass::Posix);
        assert_eq!((v[1].start, v[1].end), (2, Some(6)));
        assert_eq!(
            v[1].file,
            Some(LockedFile {
                dev_major: 0xfe,
                dev_minor: 0,
                inode: 10011160
            })
        );
        assert_eq!(v[2].class, LockClass::Flock);
        assert_eq!(v[2].mode, "ADVISORY");
        assert_eq!(v[2].kind, LockKind::Write);
        assert!(!v[2].blocked);
    }

    #[test]
    fn locks_blocked_waiter_and_lease_parsed() {
        let text = b"1: POSIX  ADVISORY  WRITE 10 08:01:99 0 EOF\n\
1: -> POSIX  ADVISORY  WRITE 11 08:01:99 0 EOF\n\
2: LEASE  ACTIVE    READ  12 08:01:100 0 EOF\n\
3: FLOCK  ADVISORY  WRITE 13 <none>:0 0 EOF\n";
        let v = parse_locks(text).unwrap();
        assert!(v[1].blocked);
        assert_eq!(v[1].pid, 11);
        assert_eq!(v[2].class, LockClass::Lease);
        assert_eq!(v[2].mode, "ACTIVE");
        assert_eq!(v[3].file, None);
    }

    #[test]
    fn locks_truncated_line_names_line() {
        let e = parse_locks(b"1: POSIX ADVISORY WRITE 10 08:01:99 0 EOF\n2: POSIX ADVISORY\n")
            .unwrap_err();
        assert_eq!(e.location, Location::Line(2));
        assert!(parse_locks(b"x: POSIX ADVISORY WRITE 1 0:0:0 0 EOF").is_err());
        assert!(parse_locks(b"1: POSIX ADVISORY WRITE 1 0:0 0 EOF").is_err());
        assert!(parse_locks(b"1: POSIX ADVISORY WRITE 1 0:0:0 0 7x").is_err());
    }
}
