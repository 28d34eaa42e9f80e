//! Everything a restore can fail at.

use std::io;
use std::path::PathBuf;

use crs_compel::Tid;

/// A restore failed. The half-built task (if any) was killed and reaped.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Fault(#[from] crs_sys::fault::Injected),
    #[error("reading images")]
    Image(#[from] crs_images::ImageError),
    #[error("{image}: {what}")]
    Invalid { image: String, what: String },
    #[error("{path} is corrupt; restore refused (remove it to restore the images unchecked)")]
    ChecksumFile {
        path: PathBuf,
        #[source]
        source: crs_images::checksums::ChecksumFileError,
    },
    #[error("image {image} is listed in crs-checksums but missing (or not a regular file)")]
    ImageMissing { image: PathBuf },
    #[error("image {image} is not listed in crs-checksums: the directory mixes image sets")]
    ImageNotListed { image: PathBuf },
    #[error("image {image} has {found} bytes, crs-checksums recorded {expected}")]
    ImageSize {
        image: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("image {image} was changed: its {len} bytes at offset {offset:#x} do not match crs-checksums")]
    ImageChanged {
        image: PathBuf,
        offset: u64,
        len: u64,
    },
    #[error("{what} is not supported by crs restore yet")]
    Unsupported { what: String },
    #[error("the caller stopped the restore at {action}")]
    Notified {
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("filelocks.img holds {count} file lock(s): restore with --file-locks")]
    FileLocksNeedOption { count: usize },
    #[error("pid {pid}: breaking the lease of fd {fd} again by an open of {path}: {what}")]
    LeaseBreak {
        pid: Tid,
        fd: i32,
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Option<io::Error>,
    },
    #[error("{what} the {kind} namespace of process {pid}")]
    Namespace {
        pid: Tid,
        kind: &'static str,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("{what}")]
    AnonFile {
        id: u32,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("packet socket {id}: making it again ({what})")]
    PacketSocket {
        id: u32,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("netlink socket {id}: making it again ({what})")]
    NetlinkSocket {
        id: u32,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("inet socket {id}: {what}")]
    InetSocket {
        id: u32,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("--inherit-fd fd[{fd}]: not an open descriptor of crs")]
    InheritFd {
        fd: i32,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid} is taken")]
    PidTaken { pid: Tid },
    #[error("pid {pid} is above kernel.pid_max ({max}); raise /proc/sys/kernel/pid_max")]
    PidMax { pid: Tid, max: u64 },
    #[error("file {path} has size {found}, the image recorded {expected}")]
    FileChanged {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("{image}: its pages image {pages}")]
    PagesImage {
        image: String,
        pages: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("inspecting {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading /proc/{pid}/maps")]
    Maps {
        pid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("{what} of shared anonymous memory {shmid}")]
    SharedMemory {
        shmid: u64,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{what} memfd {name:?}")]
    Memfd {
        name: String,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("unix socket {id} ({at}): {what}")]
    UnixSocket {
        id: u32,
        at: String,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("pidfd file {id}: {what}")]
    Pidfd {
        id: u32,
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("lazy pages: {what}")]
    Lazy {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("no free address for the restore trampoline")]
    NoTrampolineRoom,
    #[error("creating the task with pid {pid}")]
    Spawn {
        pid: Tid,
        #[source]
        source: crs_sys::restore::SpawnError,
    },
    #[error("seizing the new task {pid}")]
    Seize {
        pid: Tid,
        #[source]
        source: crs_compel::Error,
    },
    #[error("pid {pid}: {what}")]
    Compel {
        pid: Tid,
        what: String,
        #[source]
        source: crs_compel::Error,
    },
    #[error("pid {pid}: {what} failed with errno {errno}")]
    Syscall { pid: Tid, what: String, errno: i64 },
    #[error("pid {pid}: clone3 asked for thread id {want} made thread {got}")]
    ThreadTid { pid: Tid, want: Tid, got: i64 },
    #[error("pid {pid}: vdso layout differs: image has {image:#x} bytes of vvar+vdso, this kernel {here:#x}")]
    VdsoMismatch { pid: Tid, image: u64, here: u64 },
    #[error("{image}: reading {len:#x} bytes at offset {offset:#x}")]
    ReadPages {
        image: PathBuf,
        offset: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: writing {len:#x} bytes of pages at {addr:#x}")]
    WritePages {
        pid: Tid,
        addr: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("pid {pid}: letting the task run")]
    Detach {
        pid: Tid,
        #[source]
        source: crs_compel::Error,
    },
    #[error("waiting for pid {pid} to exit")]
    Wait {
        pid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("fd {fd}: tty: restore with --shell-job")]
    TtyNeedsShellJob { fd: u32 },
    #[error("tty: {what}")]
    Tty {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An image whose contents crs refuses (it names the image).
pub(crate) fn invalid(image: &str, what: impl Into<String>) -> RestoreError {
    RestoreError::Invalid {
        image: image.to_string(),
        what: what.into(),
    }
}

/// Something the images hold that crs cannot restore yet.
pub(crate) fn unsupported(what: impl Into<String>) -> RestoreError {
    RestoreError::Unsupported { what: what.into() }
}
