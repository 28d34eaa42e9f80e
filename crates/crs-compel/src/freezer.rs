//! The cgroup freezer: v2 `cgroup.freeze` (with `cgroup.events` notification) or v1
//! `freezer.state`.

use std::fs;
use std::io::{self, Read, Seek};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use tracing::debug;

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    V1,
    V2,
}

/// A cgroup frozen by crs. Thawed by [`Freezer::thaw`] or on drop, unless it was already
/// frozen when crs came.
#[derive(Debug)]
pub struct Freezer {
    path: PathBuf,
    kind: Kind,
    was_frozen: bool,
    thawed: bool,
}

impl Freezer {
    /// Freezes the cgroup at `path` and waits until every task in it is frozen.
    pub fn freeze(path: &Path, timeout: Duration) -> Result<Freezer> {
        let kind = if path.join("cgroup.freeze").exists() {
            Kind::V2
        } else if path.join("freezer.state").exists() {
            Kind::V1
        } else {
            return Err(Error::NoFreezer {
                path: path.to_owned(),
            });
        };
        let err = |source: io::Error| Error::Freeze {
            path: path.to_owned(),
            source,
        };
        let was_frozen = match kind {
            Kind::V2 => {
                fs::read_to_string(path.join("cgroup.freeze"))
                    .map_err(err)?
                    .trim()
                    == "1"
            }
            Kind::V1 => {
                fs::read_to_string(path.join("freezer.state"))
                    .map_err(err)?
                    .trim()
                    == "FROZEN"
            }
        };
        let f = Freezer {
            path: path.to_owned(),
            kind,
            was_frozen,
            thawed: false,
        };
        if !was_frozen {
            crate::guard::record(&crate::guard::Record::Frozen {
                path: path.to_owned(),
            });
            f.write_state(true).map_err(err)?;
        }
        f.wait_frozen(timeout)?;
        debug!(path = %path.display(), ?kind, was_frozen, "cgroup frozen");
        Ok(f)
    }

    /// Thaws the cgroup (a no-op if it was frozen before crs froze it).
    pub fn thaw(mut self) -> Result<()> {
        self.thaw_inner()
    }

    fn thaw_inner(&mut self) -> Result<()> {
        if self.thawed || self.was_frozen {
            self.thawed = true;
            return Ok(());
        }
        self.thawed = true;
        self.write_state(false).map_err(|source| Error::Freeze {
            path: self.path.clone(),
            source,
        })?;
        crate::guard::record(&crate::guard::Record::Thawed);
        Ok(())
    }

    /// Thaws the cgroup at `path` (the guardian's undo of a freeze crs could not take back).
    pub(crate) fn thaw_path(path: &Path) -> io::Result<()> {
        let kind = if path.join("cgroup.freeze").exists() {
            Kind::V2
        } else {
            Kind::V1
        };
        Freezer {
            path: path.to_owned(),
            kind,
            was_frozen: false,
            thawed: true,
        }
        .write_state(false)
    }

    fn write_state(&self, frozen: bool) -> io::Result<()> {
        match self.kind {
            Kind::V2 => fs::write(
                self.path.join("cgroup.freeze"),
                if frozen { "1" } else { "0" },
            ),
            Kind::V1 => fs::write(
                self.path.join("freezer.state"),
                if frozen { "FROZEN" } else { "THAWED" },
            ),
        }
    }

    fn wait_frozen(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let err = |source: io::Error| Error::Freeze {
            path: self.path.clone(),
            source,
        };
        let timed_out = || Error::FreezeTimeout {
            path: self.path.clone(),
            timeout_ms: timeout.as_millis() as u64,
        };
        match self.kind {
            Kind::V2 => {
                // cgroup.events changes are signalled as POLLPRI.
                let mut events = fs::File::open(self.path.join("cgroup.events")).map_err(err)?;
                let mut text = String::new();
                loop {
                    text.clear();
                    events.rewind().map_err(err)?;
                    events.read_to_string(&mut text).map_err(err)?;
                    if text.lines().any(|l| l.trim() == "frozen 1") {
                        return Ok(());
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(timed_out());
                    }
                    let ms = PollTimeout::try_from(left.as_millis().min(60_000) as u32)
                        .unwrap_or(PollTimeout::MAX);
                    let mut fds = [PollFd::new(events.as_fd(), PollFlags::POLLPRI)];
                    poll(&mut fds, ms).map_err(|e| err(e.into()))?;
                }
            }
            Kind::V1 => {
                // v1 has no change notification: re-read with a growing pause. The
                // pause paces a kernel state transition, it does not order our own work.
                let mut pause = Duration::from_micros(100);
                loop {
                    let state = fs::read_to_string(self.path.join("freezer.state")).map_err(err)?;
                    if state.trim() == "FROZEN" {
                        return Ok(());
                    }
                    if Instant::now() >= deadline {
                        return Err(timed_out());
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
            }
        }
    }
}

impl Drop for Freezer {
    fn drop(&mut self) {
        if let Err(e) = self.thaw_inner() {
            tracing::warn!(error = %e, "thawing cgroup");
        }
    }
}
