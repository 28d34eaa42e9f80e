//! `/proc/PID/timers`: POSIX timers (timer_create), four lines per timer.

use crate::error::ParseError;
use crate::util::{lines, lossy, split_key, Ctx};
use crate::ProcFile;

/// How a timer notifies (sigev_notify without SIGEV_THREAD_ID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerNotify {
    /// `none` (SIGEV_NONE)
    None,
    /// `signal` (SIGEV_SIGNAL, or SIGEV_THREAD_ID when `thread_id` is set)
    Signal,
    /// `thread` (SIGEV_THREAD; glibc implements it with SIGEV_THREAD_ID)
    Thread,
    /// Anything else, verbatim.
    Other(String),
}

/// One POSIX timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosixTimer {
    /// `ID:` the timer id timer_create returned.
    pub id: i32,
    /// `signal:` sigev_signo.
    pub signo: i32,
    /// `signal:` sigev_value (printed as a pointer).
    pub sigev_value: u64,
    /// `notify:` kind.
    pub notify: TimerNotify,
    /// `notify:` `tid` (SIGEV_THREAD_ID) rather than `pid`.
    pub thread_id: bool,
    /// `notify:` the pid or tid notified.
    pub notify_pid: i32,
    /// `ClockID:`
    pub clock_id: i32,
}

#[derive(Default)]
struct Partial {
    line: usize,
    id: i32,
    signal: Option<(i32, u64)>,
    notify: Option<(TimerNotify, bool, i32)>,
    clock: Option<i32>,
}

impl Partial {
    fn finish(self) -> Result<PosixTimer, ParseError> {
        let ctx = Ctx::line(ProcFile::Timers, self.line);
        let (signo, sigev_value) = self.signal.ok_or_else(|| ctx.missing("signal: line"))?;
        let (notify, thread_id, notify_pid) =
            self.notify.ok_or_else(|| ctx.missing("notify: line"))?;
        Ok(PosixTimer {
            id: self.id,
            signo,
            sigev_value,
            notify,
            thread_id,
            notify_pid,
            clock_id: self.clock.ok_or_else(|| ctx.missing("ClockID: line"))?,
        })
    }
}

/// Parses `/proc/PID/timers`. Each timer starts with `ID:`; the error for an incomplete
/// timer names its `ID:` line.
pub fn parse_timers(bytes: &[u8]) -> Result<Vec<PosixTimer>, ParseError> {
    let mut out = Vec::new();
    let mut cur: Option<Partial> = None;
    for (n, line) in lines(bytes) {
        let ctx = Ctx::line(ProcFile::Timers, n);
        if line.is_empty() {
            continue;
        }
        let (key, v) = split_key(line).ok_or_else(|| ctx.malformed("no ':' after the key"))?;
        if key == b"ID" {
            if let Some(p) = cur.take() {
                out.push(p.finish()?);
            }
            cur = Some(Partial {
                line: n,
                id: ctx.sdec("ID", v)?,
                ..Partial::default()
            });
            continue;
        }
        let p = cur
            .as_mut()
            .ok_or_else(|| ctx.malformed("timer field before the first ID: line"))?;
        match key {
            b"signal" => {
                let slash = v
                    .iter()
                    .position(|&b| b == b'/')
                    .ok_or_else(|| ctx.invalid("signal", v))?;
                p.signal = Some((
                    ctx.sdec("signal", &v[..slash])?,
                    ctx.hex("sigev_value", &v[slash + 1..])?,
                ));
            }
            b"notify" => {
                let slash = v
                    .iter()
                    .position(|&b| b == b'/')
                    .ok_or_else(|| ctx.invalid("notify", v))?;
                let kind = match &v[..slash] {
                    b"none" => TimerNotify::None,
                    b"signal" => TimerNotify::Signal,
                    b"thread" => TimerNotify::Thread,
                    o => TimerNotify::Other(lossy(o)),
                };
                let target = &v[slash + 1..];
                let (thread_id, num) = if let Some(t) = target.strip_prefix(b"tid.") {
                    (true, t)
                } else if let Some(t) = target.strip_prefix(b"pid.") {
                    (false, t)
                } else {
                    return Err(ctx.invalid("notify target", target));
                };
                p.notify = Some((kind, thread_id, ctx.sdec("notify pid", num)?));
            }
            b"ClockID" => p.clock = Some(ctx.sdec("ClockID", v)?),
            _ => return Err(ctx.invalid("timer field", key)),
        }
    }
    if let Some(p) = cur {
        out.push(p.finish()?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Location, ParseErrorKind};

    #[test]
    fn timers_zoo_three_kinds_parsed() {
        let v = parse_timers(include_bytes!("../tests/fixtures/zoo/timers")).unwrap();
        assert_eq!(v.len(), 3);
        assert_eq!(
            v[0],
            PosixTimer {
                id: 2,
                signo: 34,
                sigev_value: 0,
                notify: TimerNotify::Signal,
                thread_id: true,
                notify_pid: 5876,
                clock_id: 7,
            }
        );
        assert_eq!(v[1].notify, TimerNotify::None);
        assert_eq!(v[1].clock_id, 0);
        assert_eq!(
            (v[2].id, v[2].signo, v[2].thread_id, v[2].clock_id),
            (0, 10, false, 1)
        );
    }

    #[test]
    fn timers_sigev_value_pointer_parsed() {
        let v =
            parse_timers(b"ID: 5\nsignal: 14/00007ffd12345678\nnotify: thread/tid.9\nClockID: 1\n")
                .unwrap();
        assert_eq!(v[0].sigev_value, 0x7ffd12345678);
        assert_eq!(v[0].notify, TimerNotify::Thread);
    }

    #[test]
    fn timers_empty_is_empty() {
        assert!(parse_timers(b"").unwrap().is_empty());
    }

    #[test]
    fn timers_incomplete_names_id_line() {
        let e = parse_timers(
            b"ID: 1\nsignal: 14/0\nnotify: none/pid.1\nClockID: 0\nID: 2\nsignal: 1/0\n",
        )
        .unwrap_err();
        assert_eq!(e.location, Location::Line(5));
        assert_eq!(e.kind, ParseErrorKind::Missing("notify: line"));
    }

    #[test]
    fn timers_malformed_lines_are_errors() {
        assert!(parse_timers(b"signal: 1/0\n").is_err());
        assert!(parse_timers(b"ID: 1\nsignal: 1\n").is_err());
        assert!(parse_timers(b"ID: 1\nnotify: none/xid.1\n").is_err());
        assert!(parse_timers(b"ID: 1\nwhat: 1\n").is_err());
        assert!(parse_timers(b"ID: x\n").is_err());
    }
}
