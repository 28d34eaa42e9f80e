//! /proc parsing: pure parsers over bytes, plus a pid-directory reader.
//!
//! Every parser is a pure function over `&[u8]` returning typed structs; it never panics
//! on malformed input and its errors ([`ParseError`]) name the file kind and the line (or
//! byte offset). [`ProcDir`] is the I/O layer: an `O_PATH` handle on `/proc/<pid>` bound to
//! a pidfd, so a recycled pid is never read by mistake, reading files relative to it.
//! [`parse_any`] runs any parser by [`ProcFile`] kind (one fuzz target covers them all).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;

mod auxv;
mod cgroup;
mod error;
mod fdinfo;
mod limits;
mod locks;
mod maps;
mod misc;
mod mountinfo;
mod net;
mod pagemap;
mod procdir;
mod stat;
mod status;
mod timers;
mod util;

pub use auxv::{parse_auxv, Auxv, AuxvEntry, AT_NULL};
pub use cgroup::{parse_cgroup, CgroupEntry};
pub use error::{Error, Location, ParseError, ParseErrorKind};
pub use fdinfo::{
    parse_fdinfo, EpollTarget, EventfdInfo, FanotifyInfo, FanotifyMark, FdInfo, FileHandle,
    InotifyWatch, PidfdInfo, TimerfdInfo,
};
pub use limits::{parse_limits, Limit, LimitValue, Limits, Resource, RESOURCES};
pub use locks::{parse_locks, FileLock, LockClass, LockKind, LockedFile};
pub use maps::{
    parse_maps, parse_smaps, Perms, SmapsEntry, SmapsSizes, VmFlag, VmFlags, Vma, VmaName,
};
pub use misc::{
    parse_children, parse_loginuid, parse_ns_link, parse_personality, parse_timens_offsets, NsLink,
    TimensOffsets,
};
pub use mountinfo::{parse_mountinfo, MountInfo};
pub use net::{parse_net_inet, parse_net_unix, InetSocketLine, UnixSocketLine};
pub use pagemap::{parse_pagemap, PagemapEntry};
pub use procdir::{read_locks, Pagemap, ProcDir, TaskDir, PAGE_SIZE};
pub use stat::{parse_stat, Stat, TaskState};
pub use status::{parse_status, CapSet, Ids, SeccompMode, SigSet, Speculation, Status, StatusMem};
pub use timers::{parse_timers, PosixTimer, TimerNotify};

/// The kinds of /proc file this crate parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProcFile {
    /// `/proc/PID/stat`
    Stat,
    /// `/proc/PID/status`
    Status,
    /// `/proc/PID/maps`
    Maps,
    /// `/proc/PID/smaps`
    Smaps,
    /// `/proc/PID/limits`
    Limits,
    /// `/proc/PID/fdinfo/N`
    Fdinfo,
    /// `/proc/PID/mountinfo`
    Mountinfo,
    /// `/proc/locks`
    Locks,
    /// `/proc/PID/cgroup`
    Cgroup,
    /// `/proc/PID/task/TID/children`
    Children,
    /// `/proc/PID/auxv`
    Auxv,
    /// `/proc/PID/pagemap`
    Pagemap,
    /// `/proc/PID/timers`
    Timers,
    /// `/proc/PID/net/unix`
    NetUnix,
    /// `/proc/PID/net/tcp`
    NetTcp,
    /// `/proc/PID/net/tcp6`
    NetTcp6,
    /// `/proc/PID/net/udp`
    NetUdp,
    /// `/proc/PID/net/udp6`
    NetUdp6,
    /// `/proc/PID/personality`
    Personality,
    /// `/proc/PID/loginuid`
    Loginuid,
    /// the value of a `/proc/PID/ns/NAME` link
    NsLink,
    /// `/proc/PID/timens_offsets`
    TimensOffsets,
}

impl ProcFile {
    /// Every kind, for fuzzing (pick one with the first input byte).
    pub const ALL: [ProcFile; 22] = [
        ProcFile::Stat,
        ProcFile::Status,
        ProcFile::Maps,
        ProcFile::Smaps,
        ProcFile::Limits,
        ProcFile::Fdinfo,
        ProcFile::Mountinfo,
        ProcFile::Locks,
        ProcFile::Cgroup,
        ProcFile::Children,
        ProcFile::Auxv,
        ProcFile::Pagemap,
        ProcFile::Timers,
        ProcFile::NetUnix,
        ProcFile::NetTcp,
        ProcFile::NetTcp6,
        ProcFile::NetUdp,
        ProcFile::NetUdp6,
        ProcFile::Personality,
        ProcFile::Loginuid,
        ProcFile::NsLink,
        ProcFile::TimensOffsets,
    ];

    /// The file's path pattern, as shown in errors.
    pub fn pattern(self) -> &'static str {
        match self {
            ProcFile::Stat => "/proc/PID/stat",
            ProcFile::Status => "/proc/PID/status",
            ProcFile::Maps => "/proc/PID/maps",
            ProcFile::Smaps => "/proc/PID/smaps",
            ProcFile::Limits => "/proc/PID/limits",
            ProcFile::Fdinfo => "/proc/PID/fdinfo/N",
            ProcFile::Mountinfo => "/proc/PID/mountinfo",
            ProcFile::Locks => "/proc/locks",
            ProcFile::Cgroup => "/proc/PID/cgroup",
            ProcFile::Children => "/proc/PID/task/TID/children",
            ProcFile::Auxv => "/proc/PID/auxv",
            ProcFile::Pagemap => "/proc/PID/pagemap",
            ProcFile::Timers => "/proc/PID/timers",
            ProcFile::NetUnix => "/proc/PID/net/unix",
            ProcFile::NetTcp => "/proc/PID/net/tcp",
            ProcFile::NetTcp6 => "/proc/PID/net/tcp6",
            ProcFile::NetUdp => "/proc/PID/net/udp",
            ProcFile::NetUdp6 => "/proc/PID/net/udp6",
            ProcFile::Personality => "/proc/PID/personality",
            ProcFile::Loginuid => "/proc/PID/loginuid",
            ProcFile::NsLink => "/proc/PID/ns/NAME link",
            ProcFile::TimensOffsets => "/proc/PID/timens_offsets",
        }
    }
}

impl fmt::Display for ProcFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.pattern())
    }
}

/// The result of [`parse_any`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// [`parse_stat`]
    Stat(Box<Stat>),
    /// [`parse_status`]
    Status(Box<Status>),
    /// [`parse_maps`]
    Maps(Vec<Vma>),
    /// [`parse_smaps`]
    Smaps(Vec<SmapsEntry>),
    /// [`parse_limits`]
    Limits(Box<Limits>),
    /// [`parse_fdinfo`]
    Fdinfo(Box<FdInfo>),
    /// [`parse_mountinfo`]
    Mountinfo(Vec<MountInfo>),
    /// [`parse_locks`]
    Locks(Vec<FileLock>),
    /// [`parse_cgroup`]
    Cgroup(Vec<CgroupEntry>),
    /// [`parse_children`]
    Children(Vec<i32>),
    /// [`parse_auxv`]
    Auxv(Auxv),
    /// [`parse_pagemap`]
    Pagemap(Vec<PagemapEntry>),
    /// [`parse_timers`]
    Timers(Vec<PosixTimer>),
    /// [`parse_net_unix`]
    NetUnix(Vec<UnixSocketLine>),
    /// [`parse_net_inet`]
    NetInet(Vec<InetSocketLine>),
    /// [`parse_personality`]
    Personality(u32),
    /// [`parse_loginuid`]
    Loginuid(u32),
    /// [`parse_ns_link`]
    NsLink(NsLink),
    /// [`parse_timens_offsets`]
    TimensOffsets(TimensOffsets),
}

/// Runs the parser for `kind` on `bytes`: the single entry point for fuzzing every parser.
pub fn parse_any(kind: ProcFile, bytes: &[u8]) -> Result<Parsed, ParseError> {
    Ok(match kind {
        ProcFile::Stat => Parsed::Stat(Box::new(parse_stat(bytes)?)),
        ProcFile::Status => Parsed::Status(Box::new(parse_status(bytes)?)),
        ProcFile::Maps => Parsed::Maps(parse_maps(bytes)?),
        ProcFile::Smaps => Parsed::Smaps(parse_smaps(bytes)?),
        ProcFile::Limits => Parsed::Limits(Box::new(parse_limits(bytes)?)),
        ProcFile::Fdinfo => Parsed::Fdinfo(Box::new(parse_fdinfo(bytes)?)),
        ProcFile::Mountinfo => Parsed::Mountinfo(parse_mountinfo(bytes)?),
        ProcFile::Locks => Parsed::Locks(parse_locks(bytes)?),
        ProcFile::Cgroup => Parsed::Cgroup(parse_cgroup(bytes)?),
        ProcFile::Children => Parsed::Children(parse_children(bytes)?),
        ProcFile::Auxv => Parsed::Auxv(parse_auxv(bytes)?),
        ProcFile::Pagemap => Parsed::Pagemap(parse_pagemap(bytes)?),
        ProcFile::Timers => Parsed::Timers(parse_timers(bytes)?),
        ProcFile::NetUnix => Parsed::NetUnix(parse_net_unix(bytes)?),
        ProcFile::NetTcp | ProcFile::NetTcp6 | ProcFile::NetUdp | ProcFile::NetUdp6 => {
            Parsed::NetInet(parse_net_inet(kind, bytes)?)
        }
        ProcFile::Personality => Parsed::Personality(parse_personality(bytes)?),
        ProcFile::Loginuid => Parsed::Loginuid(parse_loginuid(bytes)?),
        ProcFile::NsLink => Parsed::NsLink(parse_ns_link(bytes)?),
        ProcFile::TimensOffsets => Parsed::TimensOffsets(parse_timens_offsets(bytes)?),
    })
}
