//! `/proc/PID/fdinfo/N`: the common lines and every type-specific line the dumper needs.
//!
//! The kind of file is not guessed from the lines (an epoll instance with no targets has no
//! `tfd:` line); the caller knows it from the `fd/N` link and reads the matching field.

use crate::error::ParseError;
use crate::locks::{parse_lock_line, FileLock};
use crate::status::SigSet;
use crate::util::{kv_get, kv_tokens, lines, lossy, split_key, tokens, trim, Ctx};
use crate::ProcFile;

/// `eventfd-*` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventfdInfo {
    /// `eventfd-count:` the counter (printed in hex).
    pub count: u64,
    /// `eventfd-id:` (5.2+).
    pub id: Option<u64>,
    /// `eventfd-semaphore:` (6.7+), EFD_SEMAPHORE.
    pub semaphore: Option<bool>,
}

/// One `tfd:` line of an epoll instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpollTarget {
    /// Target fd number (in the process that added it).
    pub tfd: i32,
    /// Event mask (EPOLLIN, EPOLLET, ...).
    pub events: u32,
    /// The user data word.
    pub data: u64,
    /// File position of the target file.
    pub pos: u64,
    /// Inode of the target file.
    pub ino: u64,
    /// Device of the target file (kernel encoding).
    pub sdev: u32,
}

/// A file handle as inotify and fanotify print it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHandle {
    /// `fhandle-bytes:`
    pub bytes: u32,
    /// `fhandle-type:`
    pub handle_type: i32,
    /// `f_handle:` decoded from hex.
    pub handle: Vec<u8>,
}

/// One `inotify wd:` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InotifyWatch {
    /// Watch descriptor.
    pub wd: i32,
    /// Watched inode.
    pub ino: u64,
    /// Device of the watched inode (kernel encoding).
    pub sdev: u32,
    /// Event mask.
    pub mask: u32,
    /// Ignored mask.
    pub ignored_mask: u32,
    /// File handle of the watched inode, when the kernel could encode one.
    pub fhandle: Option<FileHandle>,
}

/// One fanotify mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FanotifyMark {
    /// `fanotify ino:…` an inode mark.
    Inode {
        /// Inode.
        ino: u64,
        /// Device.
        sdev: u32,
        /// Mark flags.
        mflags: u32,
        /// Mask.
        mask: u64,
        /// Ignored mask.
        ignored_mask: u64,
        /// File handle.
        fhandle: Option<FileHandle>,
    },
    /// `fanotify mnt_id:…` a mount mark.
    Mount {
        /// Mount id.
        mnt_id: u32,
        /// Mark flags.
        mflags: u32,
        /// Mask.
        mask: u64,
        /// Ignored mask.
        ignored_mask: u64,
    },
    /// `fanotify sdev:…` a filesystem (superblock) mark.
    Filesystem {
        /// Device.
        sdev: u32,
        /// Mark flags.
        mflags: u32,
        /// Mask.
        mask: u64,
        /// Ignored mask.
        ignored_mask: u64,
    },
}

/// The fanotify group lines.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FanotifyInfo {
    /// `fanotify flags:` fanotify_init flags.
    pub flags: u32,
    /// `event-flags:` fanotify_init event_f_flags.
    pub event_flags: u32,
    /// The marks.
    pub marks: Vec<FanotifyMark>,
}

/// timerfd lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimerfdInfo {
    /// `clockid:`
    pub clockid: i32,
    /// `ticks:` expirations not yet read.
    pub ticks: u64,
    /// `settime flags:` TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET (printed in octal).
    pub settime_flags: u32,
    /// `it_value:` (seconds, nanoseconds) remaining.
    pub it_value: (u64, u64),
    /// `it_interval:` (seconds, nanoseconds).
    pub it_interval: (u64, u64),
}

/// pidfd lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidfdInfo {
    /// `Pid:` in the namespace of the /proc mount; -1 once the process has been reaped.
    pub pid: i32,
    /// `NSpid:` outermost first (the last is the pid in the pidfd's own namespace);
    /// `[-1]` once reaped; empty on a kernel without pid namespaces (no `NSpid:` line).
    pub ns_pid: Vec<i32>,
}

/// `/proc/PID/fdinfo/N`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FdInfo {
    /// `pos:`
    pub pos: i64,
    /// `flags:` the open flags (printed in octal), O_CLOEXEC included.
    pub flags: u32,
    /// `mnt_id:`
    pub mnt_id: Option<i32>,
    /// `ino:`
    pub ino: Option<u64>,
    /// `lock:` lines (locks held through this open file).
    pub locks: Vec<FileLock>,
    /// eventfd.
    pub eventfd: Option<EventfdInfo>,
    /// epoll targets.
    pub epoll: Vec<EpollTarget>,
    /// signalfd `sigmask:`.
    pub signalfd_mask: Option<SigSet>,
    /// inotify watches.
    pub inotify: Vec<InotifyWatch>,
    /// fanotify group and marks.
    pub fanotify: Option<FanotifyInfo>,
    /// timerfd.
    pub timerfd: Option<TimerfdInfo>,
    /// pidfd.
    pub pidfd: Option<PidfdInfo>,
    /// `scm_fds:` of a unix socket (fds in flight in its queue).
    pub scm_fds: Option<u32>,
    /// `tty-index:` of a pty master.
    pub tty_index: Option<u32>,
    /// Other `key: value` lines.
    pub unknown: Vec<(String, String)>,
}

fn hex_bytes(ctx: &Ctx, s: &[u8]) -> Result<Vec<u8>, ParseError> {
    if s.len() % 2 != 0 {
        return Err(ctx.invalid("f_handle", s));
    }
    s.chunks(2).map(|c| ctx.hex("f_handle", c)).collect()
}

fn fhandle(ctx: &Ctx, kv: &[(&[u8], &[u8])]) -> Result<Option<FileHandle>, ParseError> {
    let (Some(b), Some(t), Some(h)) = (
        kv_get(kv, "fhandle-bytes"),
        kv_get(kv, "fhandle-type"),
        kv_get(kv, "f_handle"),
    ) else {
        return Ok(None);
    };
    Ok(Some(FileHandle {
        bytes: ctx.hex("fhandle-bytes", b)?,
        handle_type: ctx.hex("fhandle-type", t)?,
        handle: hex_bytes(ctx, h)?,
    }))
}

fn need<'a>(
    ctx: &Ctx,
    kv: &[(&[u8], &'a [u8])],
    key: &'static str,
) -> Result<&'a [u8], ParseError> {
    kv_get(kv, key).ok_or_else(|| ctx.missing(key))
}

fn timespec(ctx: &Ctx, field: &'static str, v: &[u8]) -> Result<(u64, u64), ParseError> {
    let inner = v
        .strip_prefix(b"(")
        .and_then(|x| x.strip_suffix(b")"))
        .ok_or_else(|| ctx.invalid(field, v))?;
    let comma = inner
        .iter()
        .position(|&b| b == b',')
        .ok_or_else(|| ctx.invalid(field, v))?;
    Ok((
        ctx.dec(field, trim(&inner[..comma]))?,
        ctx.dec(field, trim(&inner[comma + 1..]))?,
    ))
}

/// Parses `/proc/PID/fdinfo/N`.
pub fn parse_fdinfo(bytes: &[u8]) -> Result<FdInfo, ParseError> {
    let file = ProcFile::Fdinfo;
    let mut out = FdInfo::default();
    let (mut pos, mut flags) = (None, None);
    let mut eventfd_count = None;
    let (mut eventfd_id, mut eventfd_sem) = (None, None);
    let mut timerfd: Option<TimerfdInfo> = None;
    let mut pid = None;
    let mut ns_pid = None;

    for (n, line) in lines(bytes) {
        let ctx = Ctx::line(file, n);
        if trim(line).is_empty() {
            continue;
        }
        if line.starts_with(b"tfd:") {
            let kv = kv_tokens(line);
            out.epoll.push(EpollTarget {
                tfd: ctx.sdec("tfd", need(&ctx, &kv, "tfd")?)?,
                events: ctx.hex("events", need(&ctx, &kv, "events")?)?,
                data: ctx.hex("data", need(&ctx, &kv, "data")?)?,
                pos: kv_get(&kv, "pos").map_or(Ok(0), |v| ctx.dec("pos", v))?,
                ino: kv_get(&kv, "ino").map_or(Ok(0), |v| ctx.hex("ino", v))?,
                sdev: kv_get(&kv, "sdev").map_or(Ok(0), |v| ctx.hex("sdev", v))?,
            });
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"inotify ") {
            let kv = kv_tokens(rest);
            out.inotify.push(InotifyWatch {
                wd: ctx.hex("wd", need(&ctx, &kv, "wd")?)?,
                ino: ctx.hex("ino", need(&ctx, &kv, "ino")?)?,
                sdev: ctx.hex("sdev", need(&ctx, &kv, "sdev")?)?,
                mask: ctx.hex("mask", need(&ctx, &kv, "mask")?)?,
                ignored_mask: ctx.hex("ignored_mask", need(&ctx, &kv, "ignored_mask")?)?,
                fhandle: fhandle(&ctx, &kv)?,
            });
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"fanotify ") {
            let kv = kv_tokens(rest);
            let fan = out.fanotify.get_or_insert_with(FanotifyInfo::default);
            let first = kv.first().map(|(k, _)| *k).unwrap_or(&[]);
            let masks = |ctx: &Ctx| -> Result<(u32, u64, u64), ParseError> {
                Ok((
                    ctx.hex("mflags", need(ctx, &kv, "mflags")?)?,
                    ctx.hex("mask", need(ctx, &kv, "mask")?)?,
                    ctx.hex("ignored_mask", need(ctx, &kv, "ignored_mask")?)?,
                ))
            };
            match first {
                b"flags" => {
                    fan.flags = ctx.hex("flags", need(&ctx, &kv, "flags")?)?;
                    fan.event_flags = ctx.hex("event-flags", need(&ctx, &kv, "event-flags")?)?;
                }
                b"ino" => {
                    let (mflags, mask, ignored_mask) = masks(&ctx)?;
                    fan.marks.push(FanotifyMark::Inode {
                        ino: ctx.hex("ino", need(&ctx, &kv, "ino")?)?,
                        sdev: ctx.hex("sdev", need(&ctx, &kv, "sdev")?)?,
                        mflags,
                        mask,
                        ignored_mask,
                        fhandle: fhandle(&ctx, &kv)?,
                    });
                }
                b"mnt_id" => {
                    let (mflags, mask, ignored_mask) = masks(&ctx)?;
                    fan.marks.push(FanotifyMark::Mount {
                        mnt_id: ctx.hex("mnt_id", need(&ctx, &kv, "mnt_id")?)?,
                        mflags,
                        mask,
                        ignored_mask,
                    });
                }
                b"sdev" => {
                    let (mflags, mask, ignored_mask) = masks(&ctx)?;
                    fan.marks.push(FanotifyMark::Filesystem {
                        sdev: ctx.hex("sdev", need(&ctx, &kv, "sdev")?)?,
                        mflags,
                        mask,
                        ignored_mask,
                    });
                }
                _ => return Err(ctx.malformed("unknown fanotify line")),
            }
            continue;
        }
        let (key, v) = split_key(line).ok_or_else(|| ctx.malformed("no ':' after the key"))?;
        match key {
            b"pos" => pos = Some(ctx.sdec("pos", v)?),
            b"flags" => flags = Some(ctx.oct("flags", v)?),
            b"mnt_id" => out.mnt_id = Some(ctx.sdec("mnt_id", v)?),
            b"ino" => out.ino = Some(ctx.dec("ino", v)?),
            b"lock" => out.locks.push(parse_lock_line(&ctx, v)?),
            b"eventfd-count" => eventfd_count = Some(ctx.hex("eventfd-count", v)?),
            b"eventfd-id" => eventfd_id = Some(ctx.dec("eventfd-id", v)?),
            b"eventfd-semaphore" => eventfd_sem = Some(ctx.dec::<u8>("eventfd-semaphore", v)? != 0),
            b"sigmask" => out.signalfd_mask = Some(SigSet(ctx.hex("sigmask", v)?)),
            b"clockid" => {
                timerfd.get_or_insert_with(Default::default).clockid = ctx.sdec("clockid", v)?
            }
            b"ticks" => timerfd.get_or_insert_with(Default::default).ticks = ctx.dec("ticks", v)?,
            b"settime flags" => {
                timerfd.get_or_insert_with(Default::default).settime_flags =
                    ctx.oct("settime flags", v)?
            }
            b"it_value" => {
                timerfd.get_or_insert_with(Default::default).it_value =
                    timespec(&ctx, "it_value", v)?
            }
            b"it_interval" => {
                timerfd.get_or_insert_with(Default::default).it_interval =
                    timespec(&ctx, "it_interval", v)?
            }
            b"Pid" => pid = Some(ctx.sdec("Pid", v)?),
            b"NSpid" => {
                ns_pid = Some(
                    tokens(v)
                        .map(|t| ctx.sdec("NSpid", t))
                        .collect::<Result<Vec<i32>, _>>()?,
                )
            }
            b"scm_fds" => out.scm_fds = Some(ctx.dec("scm_fds", v)?),
            b"tty-index" => out.tty_index = Some(ctx.dec("tty-index", v)?),
            _ => out.unknown.push((lossy(key), lossy(v))),
        }
    }
    let whole = Ctx::new(file);
    out.pos = pos.ok_or_else(|| whole.missing("pos:"))?;
    out.flags = flags.ok_or_else(|| whole.missing("flags:"))?;
    if let Some(count) = eventfd_count {
        out.eventfd = Some(EventfdInfo {
            count,
            id: eventfd_id,
            semaphore: eventfd_sem,
        });
    } else if eventfd_id.is_some() || eventfd_sem.is_some() {
        return Err(whole.missing("eventfd-count:"));
    }
    out.timerfd = timerfd;
    match (pid, ns_pid) {
        (Some(pid), ns) => {
            out.pidfd = Some(PidfdInfo {
                pid,
                ns_pid: ns.unwrap_or_default(),
            })
        }
        (None, Some(_)) => return Err(whole.missing("Pid:")),
        (None, None) => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Location, ParseErrorKind};
    use crate::locks::LockClass;

    macro_rules! fx {
        ($n:literal) => {
            parse_fdinfo(include_bytes!(concat!("../tests/fixtures/zoo/fdinfo/", $n))).unwrap()
        };
    }

    #[test]
    fn fdinfo_plain_file_common_fields_parsed() {
        let f = fx!("1");
        assert_eq!(f.pos, 40);
        assert_eq!(f.flags, 0o100001);
        assert_eq!(f.mnt_id, Some(27));
        assert_eq!(f.ino, Some(10011148));
        assert!(f.unknown.is_empty());
        assert_eq!(fx!("18").flags, 0o10000000); // O_PATH
        assert_eq!(fx!("15").flags & 0o2000, 0o2000); // O_APPEND
    }

    #[test]
    fn fdinfo_eventfd_count_is_hex() {
        let e = fx!("5").eventfd.unwrap();
        assert_eq!(
            e,
            EventfdInfo {
                count: 5,
                id: Some(1),
                semaphore: Some(false)
            }
        );
        let f = parse_fdinfo(b"pos:\t0\nflags:\t02\neventfd-count:               1f\n").unwrap();
        assert_eq!(f.eventfd.unwrap().count, 0x1f);
    }

    #[test]
    fn fdinfo_epoll_targets_parsed() {
        let f = fx!("6");
        assert_eq!(
            f.epoll,
            vec![
                EpollTarget {
                    tfd: 4,
                    events: 0x1c,
                    data: 7,
                    pos: 0,
                    ino: 0x1a09,
                    sdev: 0xf
                },
                EpollTarget {
                    tfd: 5,
                    events: 0x8000_0019,
                    data: 0x1234,
                    pos: 0,
                    ino: 0x414,
                    sdev: 0x10
                },
            ]
        );
    }

    #[test]
    fn fdinfo_signalfd_mask_parsed() {
        let m = fx!("7").signalfd_mask.unwrap();
        assert_eq!(m.signals().collect::<Vec<_>>(), vec![10, 12, 36]);
    }

    #[test]
    fn fdinfo_inotify_watches_with_fhandle_parsed() {
        let f = fx!("8");
        assert_eq!(f.inotify.len(), 2);
        let w = &f.inotify[1];
        assert_eq!(
            (w.wd, w.ino, w.sdev, w.mask),
            (1, 0x3c4a7, 0xfe00000, 0x300)
        );
        let h = w.fhandle.as_ref().unwrap();
        assert_eq!((h.bytes, h.handle_type), (8, 1));
        assert_eq!(h.handle, vec![0xa7, 0xc4, 0x03, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn fdinfo_inotify_watch_without_fhandle_has_none() {
        let f = parse_fdinfo(
            b"pos:\t0\nflags:\t02004000\nmnt_id:\t16\nino:\t1057\n\
              inotify wd:1f ino:2a sdev:800001 mask:84000100 ignored_mask:0 \n",
        )
        .unwrap();
        assert_eq!(
            f.inotify,
            vec![InotifyWatch {
                wd: 0x1f,
                ino: 0x2a,
                sdev: 0x80_0001,
                mask: 0x8400_0100,
                ignored_mask: 0,
                fhandle: None,
            }]
        );
        assert!(f.unknown.is_empty());
    }

    #[test]
    fn fdinfo_inotify_long_fhandle_decoded() {
        let f = parse_fdinfo(
            b"pos:\t0\nflags:\t00\n\
              inotify wd:3 ino:5 sdev:27 mask:2 ignored_mask:0 fhandle-bytes:c fhandle-type:81 f_handle:0500000000000000deadbeef\n",
        )
        .unwrap();
        let h = f.inotify[0].fhandle.as_ref().unwrap();
        assert_eq!((h.bytes, h.handle_type), (12, 0x81));
        assert_eq!(
            h.handle,
            vec![5, 0, 0, 0, 0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]
        );
    }

    #[test]
    fn fdinfo_fanotify_marks_parsed() {
        let fan = fx!("9").fanotify.unwrap();
        assert_eq!((fan.flags, fan.event_flags), (0, 0o100000));
        assert_eq!(fan.marks.len(), 2);
        assert_eq!(
            fan.marks[0],
            FanotifyMark::Mount {
                mnt_id: 0x1b,
                mflags: 0,
                mask: 0x20,
                ignored_mask: 0
            }
        );
        assert!(matches!(
            &fan.marks[1],
            FanotifyMark::Inode {
                ino: 0x3c4a7,
                mask: 0x28,
                fhandle: Some(_),
                ..
            }
        ));
        let sb = parse_fdinfo(
            b"pos:\t0\nflags:\t02\nfanotify sdev:800001 mflags:0 mask:1 ignored_mask:0\n",
        )
        .unwrap();
        assert!(matches!(
            sb.fanotify.unwrap().marks[0],
            FanotifyMark::Filesystem { sdev: 0x800001, .. }
        ));
    }

    #[test]
    fn fdinfo_timerfd_parsed() {
        let t = fx!("11").timerfd.unwrap();
        assert_eq!(t.clockid, 1);
        assert_eq!(t.settime_flags, 0);
        assert_eq!(t.it_value, (72, 290220613));
        assert_eq!(t.it_interval, (3, 500));
        let t = fx!("12").timerfd.unwrap();
        assert_eq!((t.clockid, t.settime_flags), (0, 3));
    }

    #[test]
    fn fdinfo_pidfd_parsed() {
        let p = fx!("13").pidfd.unwrap();
        assert_eq!(
            p,
            PidfdInfo {
                pid: 5876,
                ns_pid: vec![5876]
            }
        );
        let dead = parse_fdinfo(b"pos:\t0\nflags:\t02\nmnt_id:\t4\nino:\t9\nPid:\t-1\n").unwrap();
        assert_eq!(dead.pidfd.unwrap().pid, -1);
        // Linux 6.18, a reaped task: NSpid repeats the -1.
        let dead = parse_fdinfo(
            b"pos:\t0\nflags:\t02004202\nmnt_id:\t4\nino:\t6112388\nPid:\t-1\nNSpid:\t-1\n",
        )
        .unwrap();
        assert_eq!((dead.flags, dead.ino), (0o2004202, Some(6112388)));
        assert_eq!(
            dead.pidfd.unwrap(),
            PidfdInfo {
                pid: -1,
                ns_pid: vec![-1]
            }
        );
    }

    #[test]
    fn fdinfo_lock_lines_parsed() {
        assert_eq!(fx!("14").locks[0].class, LockClass::Flock);
        let l = &fx!("15").locks[0];
        assert_eq!(
            (l.class.clone(), l.start, l.end),
            (LockClass::Posix, 2, Some(6))
        );
        assert_eq!(fx!("16").locks[0].class, LockClass::Ofd);
    }

    #[test]
    fn fdinfo_socket_scm_fds_parsed() {
        assert_eq!(fx!("20").scm_fds, Some(0));
        assert_eq!(fx!("24").scm_fds, None);
    }

    #[test]
    fn fdinfo_every_fixture_parses() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/zoo/fdinfo");
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let f = parse_fdinfo(&std::fs::read(&p).unwrap());
            assert!(f.is_ok(), "{}: {:?}", p.display(), f);
            assert!(f.unwrap().unknown.is_empty(), "{}", p.display());
        }
    }

    #[test]
    fn fdinfo_missing_flags_is_error() {
        let e = parse_fdinfo(b"pos:\t0\n").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::Missing("flags:"));
    }

    #[test]
    fn fdinfo_bad_lines_name_line() {
        let e = parse_fdinfo(b"pos:\t0\nflags:\t09\n").unwrap_err();
        assert_eq!(e.location, Location::Line(2));
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t0\ntfd: x events: 1 data: 1\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t0\ntfd: 1 events: 1\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t0\nit_value: (1 2)\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t0\ninotify wd:1\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t0\nfanotify what:1\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t0\ninotify wd:1 ino:1 sdev:1 mask:1 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:abc\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t0\nNSpid:\t1\n").is_err());
        assert!(parse_fdinfo(b"pos:\t0\nflags:\t0\nlock:\tgarbage\n").is_err());
    }
}
