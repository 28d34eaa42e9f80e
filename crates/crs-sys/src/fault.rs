//! Fault injection: makes crs fail, or die, at its Nth fault point, so that tests can walk
//! every step of a dump or a restore and check that a failure there leaves nothing behind.
//!
//! Fault points sit where crs changes the world: each image written, each batch of
//! injected syscalls, each stage of each restored process. [`point`] is one of them;
//! [`kill_point`] marks an instant where only a death is interesting (a thread is running
//! injected code, a mask is half changed): there a returned error would not be a failure
//! crs could meet, but SIGKILL could come.
//!
//! `CRS_FAULT` selects, read once per process:
//!
//! | value | effect |
//! |---|---|
//! | unset, empty | nothing (one relaxed load per point) |
//! | `N` | the Nth [`point`] returns [`Injected`] (numbered from 1) |
//! | `N:kill` | crs kills itself with SIGKILL at the Nth point, [`point`] or [`kill_point`] |
//! | `list` | every [`point`] is reported on stderr (`crs-fault-point N: what`) |
//! | `list:kill` | every [`point`] and [`kill_point`], numbered as `N:kill` counts them |
//!
//! Points reached from several threads at once (restore builds processes in parallel) are
//! numbered in the order they are reached: the count of a run is fixed, the order of
//! parallel ones is not.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The error a fault point returns when it is the chosen one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fault injected at point {n} ({what})")]
pub struct Injected {
    /// The point's number in this run.
    pub n: u64,
    /// What crs was about to do.
    pub what: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Off,
    Fail(u64),
    Kill(u64),
    List { kill: bool },
}

/// Parses a `CRS_FAULT` value; `None` when malformed.
fn parse(v: &str) -> Option<Mode> {
    match v.trim() {
        "" => Some(Mode::Off),
        "list" => Some(Mode::List { kill: false }),
        "list:kill" => Some(Mode::List { kill: true }),
        v => match v.split_once(':') {
            Some((n, "kill")) => n.parse().ok().filter(|&n| n > 0).map(Mode::Kill),
            Some(_) => None,
            None => v.parse().ok().filter(|&n| n > 0).map(Mode::Fail),
        },
    }
}

fn mode() -> Mode {
    if DISABLED.load(Ordering::Relaxed) {
        return Mode::Off;
    }
    static MODE: OnceLock<Mode> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("CRS_FAULT") {
        Err(_) => Mode::Off,
        Ok(v) => parse(&v).unwrap_or_else(|| {
            // A typo must not make a fault test pass by injecting nothing.
            eprintln!("crs: CRS_FAULT={v:?} is not N, N:kill, list or list:kill");
            std::process::exit(2)
        }),
    })
}

static REACHED: AtomicU64 = AtomicU64::new(0);

static DISABLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns fault injection off for the rest of this process (a guardian forked from crs:
/// faults are injected into crs, never into what undoes them).
pub fn disable() {
    DISABLED.store(true, Ordering::Relaxed);
}

/// Whether any fault injection is on (to skip building point descriptions).
pub fn enabled() -> bool {
    mode() != Mode::Off
}

/// A fault point: `Err` when it is the one `CRS_FAULT=N` names; crs dies here with
/// `CRS_FAULT=N:kill`. `what` says what crs is about to do (it is only called when fault
/// injection is on).
pub fn point(what: impl FnOnce() -> String) -> Result<(), Injected> {
    let m = mode();
    if m == Mode::Off {
        return Ok(());
    }
    let n = REACHED.fetch_add(1, Ordering::Relaxed) + 1;
    match m {
        Mode::Fail(k) if k == n => Err(Injected { n, what: what() }),
        Mode::Kill(k) if k == n => die(n, &what()),
        Mode::List { .. } => {
            eprintln!("crs-fault-point {n}: {}", what());
            Ok(())
        }
        _ => Ok(()),
    }
}

/// An instant where only a death is of interest (see the module doc): counted, and fatal,
/// only with `CRS_FAULT=N:kill` (listed with `list:kill`).
pub fn kill_point(what: impl FnOnce() -> String) {
    let m = mode();
    if !matches!(m, Mode::Kill(_) | Mode::List { kill: true }) {
        return;
    }
    let n = REACHED.fetch_add(1, Ordering::Relaxed) + 1;
    match m {
        Mode::Kill(k) if k == n => die(n, &what()),
        Mode::List { .. } => eprintln!("crs-fault-point {n}: {} (kill only)", what()),
        _ => {}
    }
}

fn die(n: u64, what: &str) -> ! {
    eprintln!("crs: killing crs at fault point {n} ({what})");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    // SIGKILL cannot be caught or blocked: raise does not return.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_number_is_fail_at_n() {
        assert_eq!(parse("7"), Some(Mode::Fail(7)));
    }

    #[test]
    fn parse_kill_suffix_is_kill_at_n() {
        assert_eq!(parse("12:kill"), Some(Mode::Kill(12)));
    }

    #[test]
    fn parse_list_forms_are_lists() {
        assert_eq!(parse("list"), Some(Mode::List { kill: false }));
        assert_eq!(parse("list:kill"), Some(Mode::List { kill: true }));
        assert_eq!(parse(""), Some(Mode::Off));
    }

    #[test]
    fn parse_zero_or_junk_is_refused() {
        for bad in ["0", "0:kill", "x", "3:stop", "-1", "1:"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
