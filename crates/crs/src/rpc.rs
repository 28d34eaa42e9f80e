//! `crs swrk FD`: CRIU's RPC service on a connected `SOCK_SEQPACKET` socket the caller
//! hands down (runc through go-criu, and crun and other libcriu users, run `criu swrk FD`
//! this way).
//! Each packet from the caller is one `criu_req`; each answer one `criu_resp`.
//!
//! ```text
//! caller                          crs swrk FD
//!   criu_req{VERSION|FEATURE_CHECK, keep_open} ──►  answered; more requests may follow
//!   criu_req{CHECK|DUMP|RESTORE, opts}         ──►  one per process, then crs exits
//!        ◄── criu_resp{NOTIFY, notify{script, pid}}   at each action-script point,
//!   criu_req{NOTIFY, notify_success}           ──►    when opts.notify_scripts
//!        ◄── criu_resp{type, success, cr_errno, cr_errmsg, dump|restore}
//! ```
//!
//! `criu_opts` becomes criu's command line ([`crate::rpc_opts`]) and runs through the same
//! dump and restore as `crs dump`/`crs restore`. The caller's `images_dir_fd` and
//! `work_dir_fd` are reached as `/proc/<caller>/fd/N`, the caller's pid read with
//! `SO_PEERCRED`, as CRIU does. Notifications follow CRIU's order for a tree without
//! namespaces of its own: dump `pre-dump`, `query-ext-files`, `post-dump`; restore
//! `pre-restore`, `post-restore` (with the root's pid), `pre-resume`, `post-resume`.
//! A refused `post-dump` leaves the tree running untouched; a refused `post-restore`
//! kills the restored tree; refusals of `pre-resume` and `post-resume` are logged
//! (CRIU's rules). Request types crs does not serve are answered `success: false`
//! naming them.

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context, Result};
use crs_images::pb::rpc::{
    Criu_dump_resp, Criu_features, Criu_notify, Criu_opts, Criu_req, Criu_req_type, Criu_resp,
    Criu_restore_resp, Criu_version,
};
use nix::sys::socket::{getsockopt, recv, send, sockopt, MsgFlags};
use protobuf::{EnumOrUnknown, Message, MessageField};

use crate::criu_cli::CriuArgs;
use crate::rpc_opts::{self, Kind};
use crate::{logging, run};

/// The largest request crs reads (CRIU's are a few hundred bytes).
const MAX_REQUEST: usize = 4 << 20;

/// Whether crs can track memory changes (`criu_features.mem_track`: pre-dumps with soft
/// dirty bits): not yet, whatever the kernel can do.
const CRS_TRACKS_MEMORY: bool = false;
/// Whether crs can restore lazily (`criu_features.lazy_pages`): not yet.
const CRS_LAZY_PAGES: bool = false;
/// Whether crs takes `criu_opts.pidfd_store_sk` (`criu_features.pidfd_store`): not yet.
const CRS_PIDFD_STORE: bool = false;

/// `crs swrk FD`.
pub fn swrk(a: &CriuArgs) -> Result<ExitCode> {
    let [fd] = a.operands.as_slice() else {
        bail!("usage: crs swrk FD (a connected SOCK_SEQPACKET socket)");
    };
    let fd: i32 = fd
        .parse()
        .with_context(|| format!("crs swrk {fd:?}: not an fd number"))?;
    let sk = crs_sys::inherited::dup_inherited(fd)
        .with_context(|| format!("crs swrk {fd}: not an open file descriptor"))?;
    let ty = getsockopt(&sk, sockopt::SockType)
        .with_context(|| format!("crs swrk {fd}: not a socket"))?;
    if ty != nix::sys::socket::SockType::SeqPacket {
        bail!("crs swrk {fd}: a {ty:?} socket, not SOCK_SEQPACKET");
    }
    let caller = getsockopt(&sk, sockopt::PeerCredentials)
        .with_context(|| format!("crs swrk {fd}: SO_PEERCRED"))?
        .pid();
    let mut s = Service {
        sk,
        caller,
        logging: false,
    };
    s.serve()
}

struct Service {
    sk: OwnedFd,
    /// The pid of the process at the other end (SO_PEERCRED).
    caller: i32,
    /// The log is set up (once per process).
    logging: bool,
}

/// Why a request failed: the answer's `cr_errno` and `cr_errmsg`.
struct Failure {
    errno: Option<i32>,
    msg: String,
}

impl Failure {
    /// Options crs refuses (CRIU's "bad options": EBADRQC).
    fn bad_options(msg: impl ToString) -> Failure {
        Failure {
            errno: Some(libc::EBADRQC),
            msg: msg.to_string(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        Failure {
            errno: None,
            msg: format!("{e:#}"),
        }
    }
}

fn resp(ty: Criu_req_type) -> Criu_resp {
    Criu_resp {
        type_: Some(EnumOrUnknown::new(ty)),
        success: Some(false),
        ..Default::default()
    }
}

/// Marks `r` failed with `f` (success stays false).
fn fail(r: &mut Criu_resp, f: Failure) {
    r.success = Some(false);
    r.cr_errno = f.errno.filter(|&e| e != 0);
    r.cr_errmsg = Some(f.msg);
}

impl Service {
    fn serve(&mut self) -> Result<ExitCode> {
        let mut first = true;
        loop {
            let Some(req) = self.recv()? else {
                if first {
                    bail!("the caller closed the socket before any request");
                }
                // The end of a keep_open session.
                return Ok(ExitCode::SUCCESS);
            };
            first = false;
            let ty = req.type_.map(|t| t.enum_value());
            let keep_open = req.keep_open();
            let answer = match ty {
                Some(Ok(t)) if keep_open && !keeps_open(t) => {
                    let mut r = resp(t);
                    fail(
                        &mut r,
                        Failure::bad_options(format!(
                            "criu_req.keep_open: not with a {t:?} request (only VERSION and \
                             FEATURE_CHECK keep the connection open)"
                        )),
                    );
                    r
                }
                Some(Ok(t)) => self.handle(t, &req),
                Some(Err(_)) | None => {
                    let n = n_or(ty);
                    let mut r = resp(Criu_req_type::EMPTY);
                    fail(
                        &mut r,
                        Failure::bad_options(format!("criu_req.type {n}: no such request")),
                    );
                    r
                }
            };
            let ok = answer.success();
            self.send(&answer)?;
            if !(keep_open && ok && ty.is_some_and(|t| t.is_ok_and(keeps_open))) {
                return Ok(if ok {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                });
            }
        }
    }

    fn handle(&mut self, ty: Criu_req_type, req: &Criu_req) -> Criu_resp {
        let mut r = resp(ty);
        let done = match ty {
            Criu_req_type::VERSION => {
                r.version = MessageField::some(version());
                Ok(())
            }
            Criu_req_type::FEATURE_CHECK => {
                r.features = MessageField::some(features(req.features.as_ref()));
                Ok(())
            }
            Criu_req_type::CHECK => self.check(req.opts.as_ref()),
            Criu_req_type::DUMP => {
                r.dump = MessageField::some(Criu_dump_resp {
                    restored: Some(false),
                    ..Default::default()
                });
                self.dump(req.opts.as_ref())
            }
            Criu_req_type::RESTORE => {
                let done = self.restore(req.opts.as_ref());
                r.restore = MessageField::some(Criu_restore_resp {
                    pid: Some(*done.as_ref().unwrap_or(&-1)),
                    ..Default::default()
                });
                done.map(drop)
            }
            Criu_req_type::NOTIFY => Err(Failure::bad_options(
                "criu_req.type NOTIFY: no notification is pending",
            )),
            other => Err(Failure {
                errno: Some(libc::EOPNOTSUPP),
                msg: format!("the {other:?} request is not supported by crs yet"),
            }),
        };
        match done {
            Ok(()) => r.success = Some(true),
            Err(f) => {
                if self.logging {
                    tracing::error!("{}", f.msg);
                }
                fail(&mut r, f);
            }
        }
        r
    }

    /// Sets up the log of the one dump, restore or check of this process.
    fn start_log(&mut self, dirs: &rpc_opts::Dirs) -> Result<(), Failure> {
        if self.logging {
            return Ok(());
        }
        logging::init(dirs.verbosity, dirs.log.as_deref())?;
        self.logging = true;
        Ok(())
    }

    /// The options of a dump or restore: where things are, the log started, and the
    /// command line they stand for (or every field crs refuses).
    fn prepare(
        &mut self,
        opts: Option<&Criu_opts>,
        kind: Kind,
    ) -> Result<(rpc_opts::Converted, rpc_opts::Dirs), Failure> {
        let opts = opts.ok_or_else(|| Failure::bad_options("criu_req.opts: missing"))?;
        let dirs = rpc_opts::dirs(opts, kind, self.caller).map_err(Failure::bad_options)?;
        self.start_log(&dirs)?;
        let conv = rpc_opts::convert(opts, kind).map_err(Failure::bad_options)?;
        conv.args.check_supported().map_err(Failure::bad_options)?;
        Ok((conv, dirs))
    }

    fn check(&mut self, opts: Option<&Criu_opts>) -> Result<(), Failure> {
        if let Some(opts) = opts {
            let dirs =
                rpc_opts::dirs(opts, Kind::Check, self.caller).map_err(Failure::bad_options)?;
            self.start_log(&dirs)?;
            rpc_opts::convert(opts, Kind::Check).map_err(Failure::bad_options)?;
        }
        let missing = run::missing_required();
        if missing.is_empty() {
            tracing::info!("Looks good.");
            return Ok(());
        }
        let what: Vec<String> = missing
            .iter()
            .map(|(name, why)| format!("{name} is not supported: {why}"))
            .collect();
        Err(Failure {
            errno: None,
            msg: what.join("; "),
        })
    }

    fn dump(&mut self, opts: Option<&Criu_opts>) -> Result<(), Failure> {
        let (conv, dirs) = self.prepare(opts, Kind::Dump)?;
        let pid: i32 = conv.args.int("tree").ok().flatten().unwrap_or(0);
        let notify = |stage: crs_dump::DumpStage| -> Result<(), crs_dump::NotifyError> {
            if !conv.notify {
                return Ok(());
            }
            let answer = self.notify(stage.action(), None)?;
            if stage == crs_dump::DumpStage::QueryExtFiles {
                if let Some(external) = answer.opts.as_ref().map(|o| &o.external) {
                    if !external.is_empty() {
                        return Err(format!(
                            "the caller named external resources ({}): crs does not take \
                             criu_opts.external yet",
                            external.join(", ")
                        )
                        .into());
                    }
                }
            }
            Ok(())
        };
        let r = run::guarded(|| run::dump(&conv.args, dirs.images_dir.clone(), &notify));
        r.map(drop).map_err(|e| {
            let gone = pid > 0 && !std::path::Path::new(&format!("/proc/{pid}")).exists();
            Failure {
                // CRIU's: no such process.
                errno: gone.then_some(libc::ESRCH),
                msg: format!("{e:#}"),
            }
        })
    }

    /// The restored root's pid.
    fn restore(&mut self, opts: Option<&Criu_opts>) -> Result<i32, Failure> {
        let (conv, dirs) = self.prepare(opts, Kind::Restore)?;
        let notify = |stage: crs_restore::RestoreStage| -> Result<(), crs_restore::NotifyError> {
            if !conv.notify {
                return Ok(());
            }
            // CRIU gives the pid with post-restore only (and setup-namespaces).
            let pid = match stage {
                crs_restore::RestoreStage::PostRestore { root } => Some(root),
                _ => None,
            };
            self.notify(stage.action(), pid).map(drop)
        };
        let r = run::guarded(|| run::restore(&conv.args, dirs.images_dir.clone(), &notify));
        r.map(|restored| restored.root_pid).map_err(|e| {
            let taken = matches!(
                e.downcast_ref::<crs_restore::RestoreError>(),
                Some(crs_restore::RestoreError::PidTaken { .. })
            );
            Failure {
                // CRIU's: a process with such a pid exists.
                errno: taken.then_some(libc::EEXIST),
                msg: format!("{e:#}"),
            }
        })
    }

    /// Tells the caller of action `script` and waits for its answer: Ok when it answered
    /// `notify_success: true`, with its request (query-ext-files may carry options).
    fn notify(&self, script: &str, pid: Option<i32>) -> Result<Criu_req, crs_dump::NotifyError> {
        let mut r = resp(Criu_req_type::NOTIFY);
        r.success = Some(true);
        r.notify = MessageField::some(Criu_notify {
            script: Some(script.to_string()),
            pid,
            ..Default::default()
        });
        self.send(&r)?;
        let answer = self
            .recv()?
            .ok_or_else(|| anyhow!("the caller closed the socket instead of answering"))?;
        match answer.type_.map(|t| t.enum_value()) {
            Some(Ok(Criu_req_type::NOTIFY)) => {}
            other => {
                return Err(format!(
                    "the caller answered a {} request, not NOTIFY",
                    type_name(other)
                )
                .into())
            }
        }
        if !answer.notify_success() {
            return Err("the caller answered notify_success: false".into());
        }
        Ok(answer)
    }

    /// The next request; None when the caller closed its end.
    fn recv(&self) -> Result<Option<Criu_req>> {
        let mut probe = [0u8; 0];
        let len = loop {
            match recv(
                self.sk.as_raw_fd(),
                &mut probe,
                MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC,
            ) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("reading a request"),
            }
        };
        if len == 0 {
            // An empty packet is no request either: SEQPACKET EOF and a 0-byte packet look
            // alike here, and neither can be a criu_req (its type is required).
            return Ok(None);
        }
        if len > MAX_REQUEST {
            bail!("a request of {len} bytes (crs reads at most {MAX_REQUEST})");
        }
        let mut buf = vec![0u8; len];
        let got = loop {
            match recv(self.sk.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => break n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("reading a request"),
            }
        };
        let req = Criu_req::parse_from_bytes(&buf[..got]).context("decoding a criu_req")?;
        Ok(Some(req))
    }

    fn send(&self, r: &Criu_resp) -> Result<()> {
        let bytes = r.write_to_bytes().context("encoding a criu_resp")?;
        loop {
            match send(self.sk.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL) {
                Ok(n) if n == bytes.len() => return Ok(()),
                Ok(n) => bail!("sent {n} of the {} bytes of an answer", bytes.len()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("sending an answer to the caller"),
            }
        }
    }
}

fn n_or(ty: Option<Result<Criu_req_type, i32>>) -> String {
    match ty {
        Some(Err(n)) => n.to_string(),
        _ => "unset".into(),
    }
}

fn type_name(ty: Option<Result<Criu_req_type, i32>>) -> String {
    match ty {
        Some(Ok(t)) => format!("{t:?}"),
        other => n_or(other),
    }
}

/// The requests after which the connection may stay open (CRIU's list, of those crs
/// serves).
fn keeps_open(t: Criu_req_type) -> bool {
    matches!(t, Criu_req_type::VERSION | Criu_req_type::FEATURE_CHECK)
}

/// The CRIU version crs is compatible with ([`run::CRIU_VERSION`]), and crs's own.
fn version() -> Criu_version {
    let mut parts = run::CRIU_VERSION.split('.').map(|p| p.parse::<i32>().ok());
    Criu_version {
        major_number: parts.next().flatten(),
        minor_number: parts.next().flatten(),
        gitid: Some(format!("crs-{}", env!("CARGO_PKG_VERSION"))),
        ..Default::default()
    }
}

/// The answer to FEATURE_CHECK: each feature asked for is true when the kernel has it and
/// crs uses it; every one is answered (false when not asked), as CRIU does.
fn features(asked: Option<&Criu_features>) -> Criu_features {
    use crs_sys::probe::{self, Probe};
    let asked = asked.cloned().unwrap_or_default();
    let both = |wanted: bool, crs: bool, name: &str, kernel: &dyn Fn() -> Probe| {
        if !wanted {
            return false;
        }
        let k = kernel();
        tracing::debug!(feature = name, kernel = ?k, crs, "feature check");
        crs && k == Probe::Present
    };
    Criu_features {
        mem_track: Some(both(
            asked.mem_track(),
            CRS_TRACKS_MEMORY,
            "mem_track",
            &probe::mem_dirty_track,
        )),
        lazy_pages: Some(both(
            asked.lazy_pages(),
            CRS_LAZY_PAGES,
            "lazy_pages",
            &|| match probe::uffd() {
                Probe::Present => probe::uffd_noncoop(),
                absent => absent,
            },
        )),
        pidfd_store: Some(both(
            asked.pidfd_store(),
            CRS_PIDFD_STORE,
            "pidfd_store",
            &probe::pidfd_store,
        )),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_is_criu_4_2_with_crs_gitid() {
        let v = version();
        assert_eq!((v.major_number, v.minor_number), (Some(4), Some(2)));
        assert!(v.gitid().starts_with("crs-"));
    }

    #[test]
    fn features_answers_all_three_and_what_crs_lacks_is_false() {
        let f = features(Some(&Criu_features {
            mem_track: Some(true),
            lazy_pages: Some(true),
            pidfd_store: Some(true),
            ..Default::default()
        }));
        assert_eq!(
            (f.mem_track, f.lazy_pages, f.pidfd_store),
            (Some(false), Some(false), Some(false))
        );
        let f = features(None);
        assert_eq!(
            (f.mem_track, f.lazy_pages, f.pidfd_store),
            (Some(false), Some(false), Some(false))
        );
    }
}
