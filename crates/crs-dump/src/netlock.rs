//! The dump's network lock (`--network-lock`, nftables by default; see
//! `crs_sys::netlock`): every established TCP connection of the tree is locked before any
//! socket is read, and stays locked once the tree is killed, for the restore to unlock
//! (crs's or CRIU's: the table is named after the inventory's `dump_criu_run_id`). A dump
//! that fails or leaves the tree running (`-R`) unlocks again; so does the guardian if crs
//! dies before the kill.
//!
//! The connections are found before the sockets are dumped: the inodes of the tree's
//! `socket:[N]` fds against the established ones of its network namespace's
//! /proc/PID/net/tcp and tcp6. With a network namespace of its own the tree's lock is
//! made in that namespace (it goes with it).

use std::collections::HashSet;
use std::net::SocketAddr;

use crs_proc::{ProcDir, ProcFile};
use crs_sys::{netlock, Tid};
use tracing::{info, warn};

use crate::error::{proc_err, DumpError, Result};

/// `--network-lock`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Method {
    /// nftables (`nft`): crs's default.
    #[default]
    Nftables,
    /// iptables: CRIU's default, not supported by crs (refused when there is a
    /// connection to lock).
    Iptables,
    /// No lock (the caller locks, or the connections have no peer outside the tree).
    Skip,
}

impl Method {
    /// inventory.img's `network_lock_method` (CRIU's own numbering).
    pub(crate) fn inventory_value(self) -> u32 {
        match self {
            Method::Iptables => netlock::method::IPTABLES,
            Method::Nftables => netlock::method::NFTABLES,
            Method::Skip => netlock::method::SKIP,
        }
    }
}

/// The established TCP connections (local, peer) the processes `pids` hold, seen in the
/// network namespace of `net`.
fn connections(net: &ProcDir, pids: &[Tid]) -> Result<Vec<(SocketAddr, SocketAddr)>> {
    let mut held = HashSet::new();
    for &pid in pids {
        let dir = ProcDir::open(pid).map_err(proc_err(pid, "the /proc directory"))?;
        // A process that is a zombie has no fds.
        for fd in dir.fds().unwrap_or_default() {
            if let Ok(link) = dir.fd_link(fd) {
                let l = link.to_string_lossy();
                if let Some(ino) = l
                    .strip_prefix("socket:[")
                    .and_then(|r| r.strip_suffix(']'))
                    .and_then(|n| n.parse::<u64>().ok())
                {
                    held.insert(ino);
                }
            }
        }
    }
    let mut out = Vec::new();
    for kind in [ProcFile::NetTcp, ProcFile::NetTcp6] {
        let lines = net
            .net_inet(kind)
            .map_err(proc_err(net.pid(), "the TCP sockets"))?;
        out.extend(
            lines
                .into_iter()
                .filter(|l| {
                    crate::files::dumped_connection(u32::from(l.state)) && held.contains(&l.inode)
                })
                .map(|l| (l.local, l.remote)),
        );
    }
    Ok(out)
}

/// A lock in place; unlocked when dropped unless [`Lock::keep`] was called.
pub(crate) struct Lock {
    table: String,
    /// The tree's root when the lock is in its own network namespace.
    net_of: Option<Tid>,
    kept: bool,
}

/// `f` in the network namespace of process `net_of` (`None`: crs's own).
fn in_net<R: Send>(net_of: Option<Tid>, f: impl FnOnce() -> Result<R> + Send) -> Result<R> {
    match net_of {
        Some(pid) => crate::ns::within(pid, &["net"], f),
        None => f(),
    }
}

impl Lock {
    /// Locks the connections of `pids` (root `root`; `own_net`: in a network namespace of
    /// its own) with `method`, as table `netlock::table(run_id)`. `None`: nothing to lock,
    /// or `--network-lock skip`.
    pub(crate) fn take(
        method: Method,
        root: &ProcDir,
        pids: &[Tid],
        run_id: &str,
        own_net: bool,
    ) -> Result<Option<Lock>> {
        if method == Method::Skip {
            return Ok(None);
        }
        let conns = connections(root, pids)?;
        if conns.is_empty() {
            return Ok(None);
        }
        if method == Method::Iptables {
            return Err(DumpError::NetworkLock {
                what: format!(
                    "{} connection(s) to lock: the iptables method is not supported by crs \
                     (use --network-lock nftables or skip)",
                    conns.len()
                ),
                source: std::io::Error::from(std::io::ErrorKind::Unsupported),
            });
        }
        let table = netlock::table(run_id);
        let net_of = own_net.then_some(root.pid());
        crs_compel::guard::record(&crs_compel::guard::Record::NetLocked {
            table: table.clone(),
            net_of: net_of.unwrap_or(0),
        });
        let lock = Lock {
            table,
            net_of,
            kept: false,
        };
        in_net(net_of, || {
            netlock::lock(&lock.table, &conns).map_err(|source| DumpError::NetworkLock {
                what: format!("locking {} connection(s) with nft", conns.len()),
                source,
            })
        })?;
        info!(table = %lock.table, connections = conns.len(), "network locked");
        Ok(Some(lock))
    }

    /// The tree is killed: the lock stays for the restore.
    pub(crate) fn keep(mut self) {
        self.kept = true;
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        let table = &self.table;
        let unlocked = in_net(self.net_of, || {
            netlock::unlock(table).map_err(|source| DumpError::NetworkLock {
                what: format!("removing table {table}"),
                source,
            })
        });
        match unlocked {
            Ok(_) => info!(%table, "network unlocked"),
            Err(e) => warn!(%table, error = %e, "unlocking the network"),
        }
    }
}
