//! AF_NETLINK sockets: protocol, own port id and groups, peer (port id, group), as
//! CRIU's `netlink_sk_entry` in files.img. One with messages queued for reading is
//! refused by name (they would be lost; CRIU's images keep none either).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::PathBuf;

use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::sk_netlink::Netlink_sk_entry;
use crs_proc::FdInfo;
use crs_sys::unixsk as sk;
use protobuf::{EnumOrUnknown, MessageField};
use tracing::debug;

use super::unixsk::sk_opts;
use super::{FdEntry, FileTable};
use crate::error::{DumpError, Result};

/// CRIU's netlink socket states (its `NETLINK_CONNECTED` is the kernel's).
const NETLINK_UNCONNECTED: u32 = 0;
const NETLINK_CONNECTED: u32 = 1;

impl FileTable {
    /// Dumps netlink socket fd `fd` of process `pid` (`file`, crs's copy of it).
    pub(super) fn netlink_fd(
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
        let id = match self.shared_with(pid, fd, key)?.map(|(_, id)| id) {
            Some(id) => id,
            None => {
                let s = file.as_fd();
                let kind = sk::getsockopt_int(s, libc::SOL_SOCKET, libc::SO_TYPE)
                    .map_err(io_err("reading SO_TYPE of"))?;
                let protocol = sk::getsockopt_int(s, libc::SOL_SOCKET, libc::SO_PROTOCOL)
                    .map_err(io_err("reading SO_PROTOCOL of"))?;
                if kind != libc::SOCK_RAW && kind != libc::SOCK_DGRAM {
                    return Err(DumpError::UnsupportedFd {
                        pid,
                        fd,
                        link: link.to_string(),
                        why: "a netlink socket of a type other than SOCK_RAW and SOCK_DGRAM",
                    });
                }
                if crs_sys::inetsk::datagram_queued(s).map_err(io_err("polling"))? {
                    return Err(DumpError::UnsupportedFd {
                        pid,
                        fd,
                        link: link.to_string(),
                        why: "a netlink socket with messages queued for reading",
                    });
                }
                let ((portid, _), (dst_portid, dst_groups)) =
                    crs_sys::nlsk::names(s).map_err(io_err("reading the addresses of"))?;
                let groups =
                    crs_sys::nlsk::memberships(s).map_err(io_err("reading the groups of"))?;
                // The peer's group as its number (getpeername gives it as a mask).
                let dst_group = if dst_groups == 0 {
                    0
                } else {
                    dst_groups.trailing_zeros() + 1
                };
                let state = if dst_portid != 0 || dst_group != 0 {
                    NETLINK_CONNECTED
                } else {
                    NETLINK_UNCONNECTED
                };
                let id = self.alloc();
                let fown = self.fown(&file, pid)?;
                let opts = sk_opts(&file).map_err(io_err("reading the options of"))?;
                debug!(
                    pid,
                    fd, id, kind, protocol, portid, dst_portid, dst_group, "netlink socket"
                );
                self.entries.push(File_entry {
                    type_: Some(EnumOrUnknown::new(Fd_types::NETLINKSK)),
                    id: Some(id),
                    nlsk: MessageField::some(Netlink_sk_entry {
                        id: Some(id),
                        ino: Some(key.1 as u32),
                        protocol: Some(protocol as u32),
                        state: Some(state),
                        flags: Some(info.flags & !(libc::O_CLOEXEC as u32)),
                        portid: Some(portid),
                        groups,
                        dst_portid: Some(dst_portid),
                        dst_group: Some(dst_group),
                        fown: MessageField::some(fown),
                        opts: MessageField::some(opts),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
                id
            }
        };
        Ok(self.seen_fd((pid, fd), key, id, info.flags, Fd_types::NETLINKSK))
    }
}
