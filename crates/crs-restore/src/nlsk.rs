//! AF_NETLINK sockets: made in crs (in the tree's network namespace when it has one) and
//! handed to their holders (`handoff`), as CRIU makes them: a SOCK_RAW socket of the
//! protocol, its options, bound to its port id and first 32 groups, every other group
//! joined, connected to its peer's port id or group, O_NONBLOCK.

use std::os::fd::{AsFd, OwnedFd};

use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::sk_netlink::Netlink_sk_entry;
use crs_sys::nlsk;
use crs_sys::unixsk as sk;
use tracing::debug;

use crate::error::invalid;
use crate::handoff::CrsFiles;
use crate::images::Tree;
use crate::RestoreError;

/// CRIU's state of a connected netlink socket.
const NETLINK_CONNECTED: u32 = 1;

fn nlsk_of(f: &File_entry) -> Result<&Netlink_sk_entry, RestoreError> {
    f.nlsk
        .as_ref()
        .ok_or_else(|| invalid("files.img", format!("file id {} has no nlsk entry", f.id())))
}

/// Checks file entry `f` (a NETLINKSK) is one crs restores.
pub(crate) fn check(f: &File_entry) -> Result<(), RestoreError> {
    let e = nlsk_of(f)?;
    if e.dst_group() > 1024 || e.groups.len() > 32 {
        return Err(invalid(
            "files.img",
            format!(
                "netlink socket {}: group {} and {} words of groups (at most 1024)",
                f.id(),
                e.dst_group(),
                e.groups.len()
            ),
        ));
    }
    Ok(())
}

fn make(e: &Netlink_sk_entry) -> std::io::Result<OwnedFd> {
    let s = nlsk::socket(libc::SOCK_RAW, e.protocol() as i32)?;
    let fd = s.as_fd();
    if let Some(o) = e.opts.as_ref() {
        crate::unixsk::set_sk_opts(fd, o)?;
    }
    let first = e.groups.first().copied().unwrap_or(0);
    if e.portid() != 0 || first != 0 {
        nlsk::bind(fd, e.portid(), first)?;
    }
    for (i, &w) in e.groups.iter().enumerate().skip(1) {
        for bit in (0..32).filter(|b| w & (1 << b) != 0) {
            nlsk::add_membership(fd, i as u32 * 32 + bit + 1)?;
        }
    }
    if e.state() == NETLINK_CONNECTED {
        let mask = match e.dst_group() {
            0 => 0,
            g => 1u32.checked_shl(g - 1).unwrap_or(0),
        };
        nlsk::connect(fd, e.dst_portid(), mask)?;
    }
    if e.flags() & libc::O_NONBLOCK as u32 != 0 {
        sk::set_nonblock(fd, true)?;
    }
    Ok(s)
}

/// Makes every netlink socket the tree holds, in crs (in the tree's network namespace
/// when it has one: `net_of`, the process to take it from), for the holders to take.
pub(crate) fn create_in_crs(
    tree: &Tree,
    net_of: Option<crs_sys::Tid>,
    out: &mut CrsFiles,
) -> Result<(), RestoreError> {
    out.make_held(tree, Fd_types::NETLINKSK, net_of, |id, f| {
        let e = nlsk_of(f)?;
        let s = make(e).map_err(|source| RestoreError::NetlinkSocket {
            id,
            what: format!(
                "protocol {}, port id {}, peer {}/{}",
                e.protocol(),
                e.portid(),
                e.dst_portid(),
                e.dst_group()
            ),
            source,
        })?;
        debug!(
            id,
            protocol = e.protocol(),
            portid = e.portid(),
            "netlink socket made"
        );
        Ok(s)
    })
}
