//! AF_PACKET sockets: made in crs (in the tree's network namespace when it has one) and
//! handed to their holders (`handoff`): the socket of its kind and protocol, its
//! options, the packet options it was given (version and reserve before the rings),
//! bound to its device, its memberships, rings and fanout, O_NONBLOCK.

use std::os::fd::{AsFd, OwnedFd};

use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::packet_sock::{Packet_ring, Packet_sock_entry};
use crs_sys::packetsk::{self as psk, Membership, Ring};
use crs_sys::unixsk as sk;
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::handoff::CrsFiles;
use crate::images::Tree;
use crate::RestoreError;

fn psk_of(f: &File_entry) -> Result<&Packet_sock_entry, RestoreError> {
    f.psk
        .as_ref()
        .ok_or_else(|| invalid("files.img", format!("file id {} has no psk entry", f.id())))
}

/// Checks file entry `f` (a PACKETSK) is one crs restores.
pub(crate) fn check(f: &File_entry) -> Result<(), RestoreError> {
    let e = psk_of(f)?;
    // SOCK_PACKET (10), the old interface of AF_INET sockets, is not made again.
    let kind = e.type_() as i32;
    if kind != libc::SOCK_RAW && kind != libc::SOCK_DGRAM {
        return Err(unsupported(format!(
            "files.img: packet socket {} of type {kind} (crs restores SOCK_RAW and SOCK_DGRAM \
             ones)",
            f.id()
        )));
    }
    if e.protocol() > u32::from(u16::MAX) || e.mclist.iter().any(|m| m.addr().len() > 8) {
        return Err(invalid(
            "files.img",
            format!(
                "packet socket {}: protocol {:#x}, or a membership address longer than 8 bytes",
                f.id(),
                e.protocol()
            ),
        ));
    }
    Ok(())
}

fn ring(r: &Packet_ring) -> Ring {
    Ring {
        block_size: r.block_size(),
        block_nr: r.block_nr(),
        frame_size: r.frame_size(),
        frame_nr: r.frame_nr(),
        retire_tmo: r.retire_tmo(),
        sizeof_priv: r.sizeof_priv(),
        features: r.features(),
    }
}

fn make(e: &Packet_sock_entry) -> Result<OwnedFd, (String, std::io::Error)> {
    let at = |what: &str| {
        let what = what.to_string();
        move |err| (what, err)
    };
    let protocol = e.protocol() as u16;
    let s = psk::socket(e.type_() as i32, protocol).map_err(at("socket"))?;
    let fd = s.as_fd();
    if let Some(o) = e.opts.as_ref() {
        crate::unixsk::set_sk_opts(fd, o).map_err(at("the socket options"))?;
    }
    let int = |name, v: u32, what| {
        sk::setsockopt_int(fd, psk::SOL_PACKET, name, v as i32).map_err(at(what))
    };
    // Version and reserve first: the rings' layout follows them.
    for (set, name, v, what) in [
        (
            e.version() != 0,
            psk::PACKET_VERSION,
            e.version(),
            "PACKET_VERSION",
        ),
        (
            e.reserve() != 0,
            psk::PACKET_RESERVE,
            e.reserve(),
            "PACKET_RESERVE",
        ),
        (e.aux_data(), psk::PACKET_AUXDATA, 1, "PACKET_AUXDATA"),
        (e.orig_dev(), psk::PACKET_ORIGDEV, 1, "PACKET_ORIGDEV"),
        (e.vnet_hdr(), psk::PACKET_VNET_HDR, 1, "PACKET_VNET_HDR"),
        (e.loss(), psk::PACKET_LOSS, 1, "PACKET_LOSS"),
        (
            e.timestamp() != 0,
            psk::PACKET_TIMESTAMP,
            e.timestamp(),
            "PACKET_TIMESTAMP",
        ),
        (
            e.copy_thresh() != 0,
            psk::PACKET_COPY_THRESH,
            e.copy_thresh(),
            "PACKET_COPY_THRESH",
        ),
    ] {
        if set {
            int(name, v, what)?;
        }
    }
    psk::bind(fd, e.ifindex(), protocol).map_err(at(&format!("bind to device {}", e.ifindex())))?;
    for m in &e.mclist {
        let m = Membership {
            index: m.index(),
            count: 1,
            kind: m.type_() as u16,
            addr: m.addr().to_vec(),
        };
        psk::add_membership(fd, &m).map_err(at("PACKET_ADD_MEMBERSHIP"))?;
    }
    for (r, opt, what) in [
        (&e.rx_ring, psk::PACKET_RX_RING, "PACKET_RX_RING"),
        (&e.tx_ring, psk::PACKET_TX_RING, "PACKET_TX_RING"),
    ] {
        if let Some(r) = r.as_ref() {
            psk::set_ring(fd, opt, &ring(r), e.version()).map_err(at(what))?;
        }
    }
    if let Some(f) = e.fanout.filter(|&f| f != u32::MAX) {
        int(psk::PACKET_FANOUT, f, "PACKET_FANOUT")?;
    }
    if e.flags() & libc::O_NONBLOCK as u32 != 0 {
        sk::set_nonblock(fd, true).map_err(at("O_NONBLOCK"))?;
    }
    Ok(s)
}

/// Makes every packet socket the tree holds, in crs (in the tree's network namespace
/// when it has one: `net_of`, the process to take it from), for the holders to take.
pub(crate) fn create_in_crs(
    tree: &Tree,
    net_of: Option<crs_sys::Tid>,
    out: &mut CrsFiles,
) -> Result<(), RestoreError> {
    out.make_held(tree, Fd_types::PACKETSK, net_of, |id, f| {
        let e = psk_of(f)?;
        let s =
            make(e).map_err(|(what, source)| RestoreError::PacketSocket { id, what, source })?;
        debug!(
            id,
            kind = e.type_(),
            protocol = e.protocol(),
            "packet socket made"
        );
        Ok(s)
    })
}
