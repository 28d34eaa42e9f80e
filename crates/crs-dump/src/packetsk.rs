//! AF_PACKET sockets: kind, protocol, device, the options they were given, multicast
//! memberships, ring settings and fanout, from packet_diag (in the socket's network
//! namespace), as CRIU's `packet_sock_entry` in files.img. Frames queued for reading are
//! not saved (CRIU saves none either): a packet socket captures, and a capture drops
//! frames whenever its reader is late. A ring mapped into the process is refused with
//! its mapping (a device mapping).

use std::fs::File;
use std::path::PathBuf;

use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::packet_sock::{Packet_mclist, Packet_ring, Packet_sock_entry};
use crs_proc::FdInfo;
use crs_sys::packetsk::{self as psk, Ring};
use protobuf::{EnumOrUnknown, MessageField};
use tracing::debug;

use super::unixsk::sk_opts;
use super::{FdEntry, FileTable};
use crate::error::{DumpError, Result};

fn ring(r: Ring) -> Packet_ring {
    Packet_ring {
        block_size: Some(r.block_size),
        block_nr: Some(r.block_nr),
        frame_size: Some(r.frame_size),
        frame_nr: Some(r.frame_nr),
        retire_tmo: Some(r.retire_tmo),
        sizeof_priv: Some(r.sizeof_priv),
        features: Some(r.features),
        ..Default::default()
    }
}

impl FileTable {
    /// Dumps packet socket fd `fd` of process `pid` (`file`, crs's copy of it).
    pub(super) fn packet_fd(
        &mut self,
        pid: i32,
        fd: i32,
        info: &FdInfo,
        link: &str,
        file: File,
        key: (u64, u64),
    ) -> Result<FdEntry> {
        let path = PathBuf::from(format!("/proc/{pid}/fd/{fd}"));
        let io_err = |what: &'static str| {
            let path = path.clone();
            move |source| DumpError::File { what, path, source }
        };
        let unsupported = |why| DumpError::UnsupportedFd {
            pid,
            fd,
            link: link.to_string(),
            why,
        };
        let id = match self.shared_with(pid, fd, key)?.map(|(_, id)| id) {
            Some(id) => id,
            None => {
                let ino = key.1 as u32;
                let d = crate::ns::within(pid, &["net"], || {
                    psk::diag(ino).map_err(io_err("asking packet_diag about"))
                })?
                .ok_or_else(|| unsupported("a packet socket packet_diag does not describe"))?;
                // SOCK_PACKET, the obsolete interface (bound by device name).
                if i32::from(d.kind) != libc::SOCK_RAW && i32::from(d.kind) != libc::SOCK_DGRAM {
                    return Err(unsupported(
                        "a packet socket of the obsolete SOCK_PACKET type (crs restores \
                         SOCK_RAW and SOCK_DGRAM ones)",
                    ));
                }
                if d.mclist.iter().any(|m| m.count > 1) {
                    return Err(unsupported(
                        "a packet socket holding a membership more than once (CRIU's images \
                         keep one of each)",
                    ));
                }
                let id = self.alloc();
                let fown = self.fown(&file, pid)?;
                let opts = sk_opts(&file).map_err(io_err("reading the options of"))?;
                debug!(
                    pid,
                    fd,
                    id,
                    kind = d.kind,
                    protocol = d.protocol,
                    ifindex = d.ifindex,
                    "packet socket"
                );
                self.entries.push(File_entry {
                    type_: Some(EnumOrUnknown::new(Fd_types::PACKETSK)),
                    id: Some(id),
                    psk: MessageField::some(Packet_sock_entry {
                        id: Some(id),
                        type_: Some(u32::from(d.kind)),
                        protocol: Some(u32::from(d.protocol)),
                        flags: Some(info.flags & !(libc::O_CLOEXEC as u32)),
                        ifindex: Some(d.ifindex),
                        fown: MessageField::some(fown),
                        opts: MessageField::some(opts),
                        version: Some(d.version),
                        reserve: Some(d.reserve),
                        aux_data: Some(d.flags & psk::PDI_AUXDATA != 0),
                        orig_dev: Some(d.flags & psk::PDI_ORIGDEV != 0),
                        vnet_hdr: Some(d.flags & psk::PDI_VNETHDR != 0),
                        loss: Some(d.flags & psk::PDI_LOSS != 0),
                        timestamp: Some(d.tstamp),
                        copy_thresh: Some(d.copy_thresh),
                        mclist: d
                            .mclist
                            .iter()
                            .map(|m| Packet_mclist {
                                index: Some(m.index),
                                type_: Some(u32::from(m.kind)),
                                addr: Some(m.addr.clone()),
                                ..Default::default()
                            })
                            .collect(),
                        fanout: d.fanout,
                        rx_ring: d.rx_ring.map(ring).into(),
                        tx_ring: d.tx_ring.map(ring).into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                id
            }
        };
        Ok(self.seen_fd((pid, fd), key, id, info.flags, Fd_types::PACKETSK))
    }
}
