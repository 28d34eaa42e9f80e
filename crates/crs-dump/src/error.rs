use std::io;
use std::path::PathBuf;

use crs_compel::Tid;

/// Everything that can make a dump fail. Until the images are committed the tree is
/// released untouched and nothing that looks like an image set is left behind.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Fault(#[from] crs_sys::fault::Injected),
    #[error(transparent)]
    PageServer(#[from] crate::page_server::PageServerError),
    #[error("live snapshot: {what}")]
    Live {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("memory tracking: {what}")]
    Track {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("images directory {path}")]
    ImagesDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "process {pid} (the tree's root) has its own {kind} namespace: crs cannot dump \
         {kind} namespaces yet"
    )]
    OwnNamespace { pid: Tid, kind: &'static str },
    #[error(
        "process {pid} is in another {kind} namespace than the tree's root: crs cannot dump \
         nested {kind} namespaces"
    )]
    NestedNamespace { pid: Tid, kind: &'static str },
    #[error("{what} of the {kind} namespace of process {pid}")]
    Namespace {
        pid: Tid,
        kind: &'static str,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error(
        "process {pid} (the tree's root) is pid {vpid} of its own pid namespace: crs dumps a \
         pid namespace from its init (pid 1) only"
    )]
    NotPidNsInit { pid: Tid, vpid: i32 },
    #[error("process {pid}: {what} is outside the tree's pid namespace")]
    OutsidePidNs { pid: Tid, what: &'static str },
    #[error(
        "the network namespace of process {pid} holds {what}, which crs does not restore \
         yet (it restores the loopback, veth devices whose peer is outside, their \
         addresses, the main table's routes, routing rules and nftables rules; use \
         --empty-ns net to have the namespace made empty)"
    )]
    NetNamespace { pid: Tid, what: String },
    #[error("network lock ({what})")]
    NetworkLock {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("process {pid} is not a session leader (sid {sid}); use --shell-job")]
    NotSessionLeader { pid: Tid, sid: i32 },
    #[error("seizing process {pid}")]
    Seize {
        pid: Tid,
        #[source]
        source: crs_compel::Error,
    },
    #[error("reading {what} of process {pid}")]
    Proc {
        pid: Tid,
        what: &'static str,
        #[source]
        source: crs_proc::Error,
    },
    #[error("{what} of thread {tid}")]
    Compel {
        tid: Tid,
        what: &'static str,
        #[source]
        source: crs_compel::Error,
    },
    #[error("{call} run inside thread {tid} failed with errno {errno}")]
    Remote {
        tid: Tid,
        call: &'static str,
        errno: i64,
    },
    #[error("fd {fd} of process {pid} ({link}) is not supported yet: {why}")]
    UnsupportedFd {
        pid: Tid,
        fd: i32,
        link: String,
        why: &'static str,
    },
    #[error(
        "fd {fd} of process {pid} is a pidfd of process {target}, which is not in the dumped \
         tree: only pidfds of the tree's processes, or of processes that have exited, can be \
         restored"
    )]
    PidfdOutsideTree { pid: Tid, fd: i32, target: i32 },
    #[error(
        "fd {fd} of process {pid} is a pidfd of thread {tid} of process {leader} \
         (PIDFD_THREAD on a thread other than the leader): not supported yet"
    )]
    PidfdOfThread {
        pid: Tid,
        fd: i32,
        tid: Tid,
        leader: Tid,
    },
    #[error(
        "fd {fd} of process {pid} ({link}) holds a lease being broken, and process {other} also \
         holds a lease on that file: not supported (the restore could not take the second \
         lease while the first is being broken)"
    )]
    BreakingLeaseShared {
        pid: Tid,
        fd: i32,
        link: String,
        other: Tid,
    },
    #[error(
        "fd {fd} of process {pid} ({link}) is the controlling terminal of session {sid}, \
         whose leader is not in the dumped tree"
    )]
    TtySession {
        pid: Tid,
        fd: i32,
        link: String,
        sid: Tid,
    },
    #[error("process {pid} holds a file lock through fd {fd} ({link}): use --file-locks")]
    FileLocked { pid: Tid, fd: i32, link: String },
    #[error("mapping {start:#x}-{end:#x} of process {pid} is not supported yet: {why}")]
    UnsupportedVma {
        pid: Tid,
        start: u64,
        end: u64,
        why: &'static str,
    },
    #[error("{what} {path}")]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "deleted file {path} has {size} bytes on disk, more than the ghost file limit of {limit}"
    )]
    GhostTooBig {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("the caller stopped the dump at {action}")]
    Notified {
        action: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("process {pid} ({why}): the tree changed while it was being seized; try again")]
    TreeChanged { pid: Tid, why: String },
    #[error("comparing {what} of process {pid} (kcmp)")]
    Kcmp {
        pid: Tid,
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("encoding image {image}")]
    Image {
        image: String,
        #[source]
        source: crs_images::ImageError,
    },
    #[error("writing image {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("checksums of the images")]
    Checksums {
        #[source]
        source: crs_images::checksums::SegmentError,
    },
    #[error("scanning the pagemap of process {pid} at {addr:#x}")]
    PageScan {
        pid: Tid,
        addr: u64,
        #[source]
        source: io::Error,
    },
    #[error("reading {len:#x} bytes at {addr:#x} of process {pid}")]
    PageRead {
        pid: Tid,
        addr: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("writing {len:#x} bytes of pages at offset {offset:#x} of {path}")]
    PageWrite {
        path: PathBuf,
        offset: u64,
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("releasing process {pid} after the dump")]
    Release {
        pid: Tid,
        #[source]
        source: crs_compel::Error,
    },
}

pub(crate) type Result<T, E = DumpError> = std::result::Result<T, E>;

pub(crate) fn proc_err(pid: Tid, what: &'static str) -> impl FnOnce(crs_proc::Error) -> DumpError {
    move |source| DumpError::Proc { pid, what, source }
}

pub(crate) fn compel_err(
    tid: Tid,
    what: &'static str,
) -> impl FnOnce(crs_compel::Error) -> DumpError {
    move |source| DumpError::Compel { tid, what, source }
}
