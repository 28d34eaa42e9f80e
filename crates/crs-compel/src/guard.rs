//! The guardian: a small process that puts a tree back as it was when crs dies holding it.
//!
//! ```text
//! crs ── spawn(program) ──► `program __guardian <crs pid>` (the crs binary), fd 0 = one end
//!  │                         of a SOCK_SEQPACKET pair; it waits on the socket and a pidfd
//!  │  journal records        of crs
//!  ├── Held{pid}+pidfd, Thread{regs, mask}, Mask{tid, cpus}, Patched, MapIntent, Mapped,
//!  │   Unmapped, Frozen, Thawed, Images, ImagesComplete, Killing, File, FileGone, SysvShm,
//!  │   SysvKept, Restore
//!  └── Done (crs put everything back itself, or the restored tree is committed)
//!
//! socket closed or crs gone without Done ──► undo:
//!   thaw a cgroup crs froze; kill what a restore created (or, once a complete dump
//!   started killing its tree, the dumped processes); put back CPU masks; seize each held
//!   process crs injected into, give every thread parked in compel's code its saved
//!   registers and mask, unmap compel's area, put back patched vDSO bytes, detach;
//!   remove an unfinished image set, ghost files, SysV segments crs made
//! ```
//!
//! Each record is written *before* the change it allows to undo (a mask before the pin, a
//! mapping's intent before the mmap), so a record too many is harmless and a change
//! without its record cannot happen. Registers need more: the kernel detaches tracees the
//! moment crs dies and they run on with whatever registers they had. compel therefore
//! never leaves a thread where running on would do harm: every injected syscall returns
//! into `jmp .` in compel's own code (or a vDSO stub for the very first mmap), the batch's
//! stop signal is one the task ignores, and a thread's signal mask is changed only while
//! its instruction pointer is in compel's code. The guardian seizes such a parked thread
//! and gives it back its registers and mask; a thread anywhere else is left alone.
//!
//! The journal is process-wide ([`spawn`] installs it, [`finish`] ends it): one dump or
//! restore per crs process. Without a guardian every record is a no-op.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;

use crs_sys::remote::RemoteRange;
use crs_sys::{pidfd, RemoteAddr, Tid};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CpuSet;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType, UnixAddr,
};
use tracing::{debug, info, warn};

use crate::arch::{Arch, Host};
use crate::tree::{Release, SeizeOptions, SeizedTree};
use crate::{Error, Result};

/// The hidden command of the crs binary that runs the guardian.
pub const COMMAND: &str = "__guardian";

/// The guardian's name (its `comm`, what `ps` shows).
pub const NAME: &str = "crs-guardian";

/// Environment variable that, set to `0`, stops [`spawn`] from starting a guardian (for the
/// tests that show what is left behind without one).
pub const DISABLE_ENV: &str = "CRS_GUARDIAN";

/// One journal record (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A process crs holds; its pidfd travels with the record.
    Held { pid: Tid },
    /// A held thread's registers (as words, [`Arch::regs_to_words`]) and signal mask, as
    /// seized.
    Thread {
        pid: Tid,
        tid: Tid,
        sigmask: u64,
        regs: Vec<u64>,
    },
    /// A thread's CPU mask before crs pinned it (bitmap words, CPU n = bit n % 64 of word
    /// n / 64).
    Mask { pid: Tid, tid: Tid, cpus: Vec<u64> },
    /// Bytes of `pid`'s vDSO at `addr` are about to be overwritten with compel's bootstrap
    /// stub; `orig` is what was there.
    Patched { pid: Tid, addr: u64, orig: Vec<u8> },
    /// The vDSO bytes are back.
    Unpatched { pid: Tid },
    /// Thread `tid` is about to map compel's area of `len` bytes in `pid`; the address
    /// comes back in its result register.
    MapIntent { pid: Tid, tid: Tid, len: u64 },
    /// compel's area in `pid`.
    Mapped { pid: Tid, addr: u64, len: u64 },
    /// compel's area in `pid` is gone.
    Unmapped { pid: Tid },
    /// crs froze this cgroup.
    Frozen { path: PathBuf },
    /// ... and thawed it.
    Thawed,
    /// A dump writes images into `staging` (`dir` itself when it held no images).
    Images { dir: PathBuf, staging: PathBuf },
    /// The image set is complete (inventory.img in place): keep it.
    ImagesComplete,
    /// A complete dump is killing its tree: finish the kill if crs dies.
    Killing,
    /// The held processes are ones a restore created: kill them if crs dies.
    Restore,
    /// A file crs created that must not outlive a failed run (a restore's ghost file).
    File { path: PathBuf },
    /// ... removed by crs (or handed over).
    FileGone { path: PathBuf },
    /// A SysV shared memory segment a restore created.
    SysvShm { id: i32 },
    /// ... kept (the restore committed it).
    SysvKept { id: i32 },
    /// A dump put a TCP socket (it travels with the record) in repair mode: out of it
    /// again, with SO_REUSEADDR `reuseaddr`, unless the dump was killing its tree.
    TcpRepair { reuseaddr: bool },
    /// A dump is about to lock the network with nftables table `table` (in the network
    /// namespace of process `net_of`, 0: crs's): unlocked unless the dump was killing
    /// its tree (then the lock is the restore's to remove).
    NetLocked { table: String, net_of: Tid },
    /// Nothing to undo: crs put everything back itself, or the restore committed.
    Done,
    /// crs lives on but holds nothing any more: undo the rest now (without this, the end
    /// of the journal means crs is dying, and the guardian waits until it is dead, when
    /// the kernel has detached every tracee).
    Released,
    /// The first record: the eventfd that wakes the guardian travels with it.
    Hello,
}

/// Record tags on the wire.
mod tag {
    pub const HELD: u8 = 1;
    pub const THREAD: u8 = 2;
    pub const MASK: u8 = 3;
    pub const PATCHED: u8 = 4;
    pub const UNPATCHED: u8 = 5;
    pub const MAP_INTENT: u8 = 6;
    pub const MAPPED: u8 = 7;
    pub const UNMAPPED: u8 = 8;
    pub const FROZEN: u8 = 9;
    pub const THAWED: u8 = 10;
    pub const IMAGES: u8 = 11;
    pub const IMAGES_COMPLETE: u8 = 12;
    pub const KILLING: u8 = 13;
    pub const RESTORE: u8 = 14;
    pub const FILE: u8 = 15;
    pub const FILE_GONE: u8 = 16;
    pub const SYSV_SHM: u8 = 17;
    pub const SYSV_KEPT: u8 = 18;
    pub const DONE: u8 = 19;
    pub const RELEASED: u8 = 20;
    pub const HELLO: u8 = 21;
    pub const TCP_REPAIR: u8 = 22;
    pub const NET_LOCKED: u8 = 23;
}

/// Largest record on the wire (a path is at most PATH_MAX).
const MAX_RECORD: usize = 16 * 1024;

struct Out(Vec<u8>);

impl Out {
    fn new(t: u8) -> Out {
        Out(vec![t])
    }
    fn i32(mut self, v: i32) -> Out {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Out {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Out {
        self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
        self
    }
    fn words(self, w: &[u64]) -> Out {
        let b: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.bytes(&b)
    }
    fn path(self, p: &Path) -> Out {
        self.bytes(p.as_os_str().as_bytes())
    }
}

struct In<'a>(&'a [u8]);

impl In<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        Some(self.take(n)?.to_vec())
    }
    fn words(&mut self) -> Option<Vec<u64>> {
        let b = self.bytes()?;
        if b.len() % 8 != 0 {
            return None;
        }
        Some(
            b.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
        )
    }
    fn path(&mut self) -> Option<PathBuf> {
        Some(PathBuf::from(OsString::from_vec(self.bytes()?)))
    }
}

impl Record {
    /// The record's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        use tag::*;
        let o = match self {
            Record::Held { pid } => Out::new(HELD).i32(*pid),
            Record::Thread {
                pid,
                tid,
                sigmask,
                regs,
            } => Out::new(THREAD)
                .i32(*pid)
                .i32(*tid)
                .u64(*sigmask)
                .words(regs),
            Record::Mask { pid, tid, cpus } => Out::new(MASK).i32(*pid).i32(*tid).words(cpus),
            Record::Patched { pid, addr, orig } => {
                Out::new(PATCHED).i32(*pid).u64(*addr).bytes(orig)
            }
            Record::Unpatched { pid } => Out::new(UNPATCHED).i32(*pid),
            Record::MapIntent { pid, tid, len } => {
                Out::new(MAP_INTENT).i32(*pid).i32(*tid).u64(*len)
            }
            Record::Mapped { pid, addr, len } => Out::new(MAPPED).i32(*pid).u64(*addr).u64(*len),
            Record::Unmapped { pid } => Out::new(UNMAPPED).i32(*pid),
            Record::Frozen { path } => Out::new(FROZEN).path(path),
            Record::Thawed => Out::new(THAWED),
            Record::Images { dir, staging } => Out::new(IMAGES).path(dir).path(staging),
            Record::ImagesComplete => Out::new(IMAGES_COMPLETE),
            Record::Killing => Out::new(KILLING),
            Record::Restore => Out::new(RESTORE),
            Record::File { path } => Out::new(FILE).path(path),
            Record::FileGone { path } => Out::new(FILE_GONE).path(path),
            Record::SysvShm { id } => Out::new(SYSV_SHM).i32(*id),
            Record::SysvKept { id } => Out::new(SYSV_KEPT).i32(*id),
            Record::TcpRepair { reuseaddr } => Out::new(TCP_REPAIR).i32(i32::from(*reuseaddr)),
            Record::NetLocked { table, net_of } => {
                Out::new(NET_LOCKED).i32(*net_of).bytes(table.as_bytes())
            }
            Record::Done => Out::new(DONE),
            Record::Released => Out::new(RELEASED),
            Record::Hello => Out::new(HELLO),
        };
        o.0
    }

    /// A record from its bytes; `None` when malformed (trailing bytes included).
    pub fn decode(b: &[u8]) -> Option<Record> {
        use tag::*;
        let (&t, rest) = b.split_first()?;
        let mut i = In(rest);
        let r = match t {
            HELD => Record::Held { pid: i.i32()? },
            THREAD => Record::Thread {
                pid: i.i32()?,
                tid: i.i32()?,
                sigmask: i.u64()?,
                regs: i.words()?,
            },
            MASK => Record::Mask {
                pid: i.i32()?,
                tid: i.i32()?,
                cpus: i.words()?,
            },
            PATCHED => Record::Patched {
                pid: i.i32()?,
                addr: i.u64()?,
                orig: i.bytes()?,
            },
            UNPATCHED => Record::Unpatched { pid: i.i32()? },
            MAP_INTENT => Record::MapIntent {
                pid: i.i32()?,
                tid: i.i32()?,
                len: i.u64()?,
            },
            MAPPED => Record::Mapped {
                pid: i.i32()?,
                addr: i.u64()?,
                len: i.u64()?,
            },
            UNMAPPED => Record::Unmapped { pid: i.i32()? },
            FROZEN => Record::Frozen { path: i.path()? },
            THAWED => Record::Thawed,
            IMAGES => Record::Images {
                dir: i.path()?,
                staging: i.path()?,
            },
            IMAGES_COMPLETE => Record::ImagesComplete,
            KILLING => Record::Killing,
            RESTORE => Record::Restore,
            FILE => Record::File { path: i.path()? },
            FILE_GONE => Record::FileGone { path: i.path()? },
            SYSV_SHM => Record::SysvShm { id: i.i32()? },
            SYSV_KEPT => Record::SysvKept { id: i.i32()? },
            TCP_REPAIR => Record::TcpRepair {
                reuseaddr: i.i32()? != 0,
            },
            NET_LOCKED => {
                let net_of = i.i32()?;
                Record::NetLocked {
                    net_of,
                    table: String::from_utf8(i.bytes()?).ok()?,
                }
            }
            DONE => Record::Done,
            RELEASED => Record::Released,
            HELLO => Record::Hello,
            _ => return None,
        };
        i.0.is_empty().then_some(r)
    }
}

/// A CPU mask as the bitmap words of [`Record::Mask`].
pub fn mask_words(set: &CpuSet) -> Vec<u64> {
    let n = CpuSet::count();
    let mut w = vec![0u64; n.div_ceil(64)];
    for cpu in 0..n {
        if set.is_set(cpu).unwrap_or(false) {
            w[cpu / 64] |= 1 << (cpu % 64);
        }
    }
    w
}

fn mask_from_words(w: &[u64]) -> CpuSet {
    let mut set = CpuSet::new();
    for (i, word) in w.iter().enumerate() {
        for bit in 0..64 {
            if word & (1 << bit) != 0 {
                let _ = set.set(i * 64 + bit);
            }
        }
    }
    set
}

/// The sending end, held by crs.
struct Journal {
    sock: OwnedFd,
    /// An eventfd the guardian polls: records wait in the socket unread, and crs wakes
    /// the guardian only to end the journal or when the socket is full.
    wake: OwnedFd,
    /// The guardian, a child of crs.
    child: Guardian,
    /// Sends failed: the guardian is gone.
    broken: bool,
    /// Done was sent: the guardian exits, nothing more is recorded.
    done: bool,
}

static JOURNAL: Mutex<Option<Journal>> = Mutex::new(None);

fn with_journal(f: impl FnOnce(&mut Journal)) {
    let mut g = JOURNAL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(j) = g.as_mut() {
        f(j);
    }
}

fn send(j: &mut Journal, bytes: &[u8], fd: Option<BorrowedFd<'_>>) {
    if j.broken || j.done {
        return;
    }
    let raw: Vec<RawFd> = fd.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg: Vec<ControlMessage<'_>> = if raw.is_empty() {
        Vec::new()
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let once = |flags| {
        sendmsg::<UnixAddr>(
            j.sock.as_raw_fd(),
            &[IoSlice::new(bytes)],
            &cmsg,
            MsgFlags::MSG_NOSIGNAL | flags,
            None,
        )
    };
    // Queued without waking the guardian (a wakeup per record cost about 15 us); a full
    // socket wakes it to drain, then the send waits for the room.
    let sent = match once(MsgFlags::MSG_DONTWAIT) {
        Err(nix::errno::Errno::EAGAIN) => {
            wake(&j.wake);
            once(MsgFlags::empty())
        }
        other => other,
    };
    if let Err(e) = sent {
        // The safety net is gone; the dump or restore itself goes on.
        warn!(error = %e, "the guardian does not listen any more: crs's changes to the tree can no longer be undone if crs dies");
        j.broken = true;
    }
}

/// Wakes the guardian (it then reads what the socket holds).
fn wake(fd: &OwnedFd) {
    let _ = nix::unistd::write(fd, &1u64.to_ne_bytes());
}

/// Whether a guardian is running for this process.
pub fn active() -> bool {
    JOURNAL.lock().map(|g| g.is_some()).unwrap_or(false)
}

/// Writes `rec` to the journal (a no-op without a guardian).
pub fn record(rec: &Record) {
    with_journal(|j| send(j, &rec.encode(), None));
}

/// Writes `rec` with the descriptor `fd` attached (a pidfd).
pub fn record_with_fd(rec: &Record, fd: BorrowedFd<'_>) {
    with_journal(|j| send(j, &rec.encode(), Some(fd)));
}

/// How crs started its guardian.
enum Guardian {
    /// A fork of crs, made while crs had one thread.
    Forked(nix::unistd::Pid),
    /// `program __guardian <pid>`.
    Spawned(Child),
}

impl Guardian {
    fn wait(self) -> io::Result<()> {
        match self {
            Guardian::Forked(pid) => nix::sys::wait::waitpid(pid, None)
                .map(drop)
                .map_err(io::Error::from),
            Guardian::Spawned(mut c) => c.wait().map(drop),
        }
    }
}

/// Starts the guardian and installs the journal; does nothing when `CRS_GUARDIAN=0` or
/// one is running. While the calling process has a single thread (crs's command line,
/// before any work), the guardian is a fork of it: about 0.1 ms, ready at once. Otherwise
/// (a library caller with threads) it is `program __guardian <crs pid>` with one end of
/// the socket pair on its stdin, when a program is given, and no guardian without one.
pub fn start(program: Option<&Path>) -> Result<()> {
    if std::env::var_os(DISABLE_ENV).is_some_and(|v| v == "0") || active() {
        return Ok(());
    }
    let err = |what: &str| {
        let what = what.to_string();
        move |source: io::Error| Error::Guardian { what, source }
    };
    let (mine, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| err("creating its socket")(e.into()))?;
    // Room for the records of a large tree before the guardian has to drain them
    // (SO_SNDBUFFORCE needs CAP_NET_ADMIN; else the system's maximum).
    let room = JOURNAL_ROOM as usize;
    if nix::sys::socket::setsockopt(&mine, nix::sys::socket::sockopt::SndBufForce, &room).is_err() {
        let _ = nix::sys::socket::setsockopt(&mine, nix::sys::socket::sockopt::SndBuf, &room);
    }
    let wake_fd = nix::sys::eventfd::EventFd::from_value_and_flags(
        0,
        nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
    )
    .map_err(|e| err("creating its eventfd")(e.into()))?;
    let wake_fd = OwnedFd::from(wake_fd);
    let crs = std::process::id() as Tid;
    let child = if single_threaded() {
        // SAFETY: the process has one thread (just checked, and only this thread could
        // start another), so no lock (allocator, stdio, tracing) can be held by a thread
        // that does not exist in the child: the child may run any code. It never returns
        // from this block: it serves and exits.
        match unsafe { nix::unistd::fork() }.map_err(|e| err("forking it")(e.into()))? {
            nix::unistd::ForkResult::Child => {
                drop(mine);
                crs_sys::fault::disable();
                let code = match serve(theirs, crs) {
                    Ok(()) => 0,
                    Err(e) => {
                        warn!(error = %e, "the guardian failed");
                        1
                    }
                };
                std::process::exit(code)
            }
            nix::unistd::ForkResult::Parent { child } => Guardian::Forked(child),
        }
    } else if let Some(program) = program {
        Guardian::Spawned(
            spawn(program, theirs).map_err(err(&format!("starting {}", program.display())))?,
        )
    } else {
        return Ok(());
    };
    debug!("guardian started");
    let mut j = Journal {
        sock: mine,
        wake: wake_fd,
        child,
        broken: false,
        done: false,
    };
    let hello = Record::Hello.encode();
    let wake_dup = j.wake.try_clone().map_err(err("sharing its eventfd"))?;
    send(&mut j, &hello, Some(wake_dup.as_fd()));
    drop(wake_dup);
    *JOURNAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(j);
    Ok(())
}

/// Bytes of records the socket holds before the guardian has to read them.
const JOURNAL_ROOM: u32 = 64 << 20;

/// Whether this process has one thread (/proc/self/status).
fn single_threaded() -> bool {
    fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l == "Threads:\t1"))
}

/// `program __guardian <crs pid>`, the socket on its stdin.
fn spawn(program: &Path, sock: OwnedFd) -> io::Result<Child> {
    Command::new(program)
        .arg(COMMAND)
        .arg(std::process::id().to_string())
        // Faults are injected into crs, never into what undoes them.
        .env_remove("CRS_FAULT")
        .stdin(Stdio::from(sock))
        .stdout(Stdio::null())
        .spawn()
}

/// Nothing is left to undo from here on (a restore's tree is committed): the guardian
/// exits without undoing anything, whatever crs does next.
pub fn commit() {
    with_journal(|j| {
        send(j, &Record::Done.encode(), None);
        wake(&j.wake);
        j.done = true;
    });
}

/// Ends the journal: nothing is left to undo. The guardian exits; crs waits for it.
pub fn finish() {
    end(true);
}

/// Ends the journal without saying Done: the guardian undoes what the journal lists (for
/// a crs that exits without having put the tree back itself). Returns once it has.
pub fn abandon() {
    end(false);
}

fn end(done: bool) {
    let j = JOURNAL.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(mut j) = j {
        let last = if done { Record::Done } else { Record::Released };
        send(&mut j, &last.encode(), None);
        wake(&j.wake);
        drop(j.sock);
        if let Err(e) = j.child.wait() {
            warn!(error = %e, "waiting for the guardian");
        }
    }
}

/// What the guardian knows of one process.
#[derive(Debug, Default)]
struct Proc {
    pidfd: Option<OwnedFd>,
    threads: BTreeMap<Tid, (u64, Vec<u64>)>,
    masks: BTreeMap<Tid, Vec<u64>>,
    patch: Option<(u64, Vec<u8>)>,
    map_intent: Option<(Tid, u64)>,
    map: Option<(u64, u64)>,
}

/// Everything the journal said, folded.
#[derive(Debug, Default)]
struct Undo {
    procs: BTreeMap<Tid, Proc>,
    frozen: Option<PathBuf>,
    images: Option<(PathBuf, PathBuf)>,
    killing: bool,
    restore: bool,
    files: BTreeSet<PathBuf>,
    sysv: BTreeSet<i32>,
    /// TCP sockets in repair mode, with their SO_REUSEADDR.
    tcp: Vec<(OwnedFd, bool)>,
    /// The network lock's table, and the process whose network namespace has it.
    net_lock: Option<(String, Tid)>,
    done: bool,
    released: bool,
}

impl Undo {
    fn apply(&mut self, rec: Record, fd: Option<OwnedFd>) {
        match rec {
            Record::Held { pid } => self.procs.entry(pid).or_default().pidfd = fd,
            Record::Thread {
                pid,
                tid,
                sigmask,
                regs,
            } => {
                self.procs
                    .entry(pid)
                    .or_default()
                    .threads
                    .insert(tid, (sigmask, regs));
            }
            Record::Mask { pid, tid, cpus } => {
                self.procs
                    .entry(pid)
                    .or_default()
                    .masks
                    .entry(tid)
                    .or_insert(cpus);
            }
            Record::Patched { pid, addr, orig } => {
                self.procs.entry(pid).or_default().patch = Some((addr, orig))
            }
            Record::Unpatched { pid } => self.procs.entry(pid).or_default().patch = None,
            Record::MapIntent { pid, tid, len } => {
                self.procs.entry(pid).or_default().map_intent = Some((tid, len))
            }
            Record::Mapped { pid, addr, len } => {
                let p = self.procs.entry(pid).or_default();
                p.map_intent = None;
                p.map = Some((addr, len));
            }
            Record::Unmapped { pid } => {
                let p = self.procs.entry(pid).or_default();
                p.map_intent = None;
                p.map = None;
            }
            Record::Frozen { path } => self.frozen = Some(path),
            Record::Thawed => self.frozen = None,
            Record::Images { dir, staging } => self.images = Some((dir, staging)),
            Record::ImagesComplete => self.images = None,
            Record::Killing => self.killing = true,
            Record::Restore => self.restore = true,
            Record::File { path } => {
                self.files.insert(path);
            }
            Record::FileGone { path } => {
                self.files.remove(&path);
            }
            Record::SysvShm { id } => {
                self.sysv.insert(id);
            }
            Record::SysvKept { id } => {
                self.sysv.remove(&id);
            }
            Record::TcpRepair { reuseaddr } => {
                if let Some(fd) = fd {
                    self.tcp.push((fd, reuseaddr));
                }
            }
            Record::NetLocked { table, net_of } => self.net_lock = Some((table, net_of)),
            Record::Done => self.done = true,
            Record::Released => self.released = true,
            Record::Hello => {}
        }
    }
}

/// Runs the guardian on `sock` (its stdin) for crs process `crs`: returns once crs said
/// Done, or once crs is gone and everything the journal lists was undone.
pub fn serve(sock: OwnedFd, crs: Tid) -> Result<()> {
    let _ = nix::sys::prctl::set_name(&std::ffi::CString::new(NAME).expect("no NUL"));
    let crs_fd = pidfd::pidfd_open(crs, 0).ok();
    // Opened after crs may already have died: if crs is not our parent any more, it has.
    let crs_alive = crs_fd.is_some() && nix::unistd::getppid().as_raw() == crs;
    // crs's terminal signals are not the guardian's: it must outlive a ^C of crs.
    use nix::sys::signal::{signal, SigHandler, Signal};
    for sig in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGPIPE,
        Signal::SIGQUIT,
    ] {
        // SAFETY: SIG_IGN installs no handler, so no code of this process runs in signal
        // context and nothing needs to be async-signal-safe.
        let _ = unsafe { signal(sig, SigHandler::SigIgn) };
    }
    let mut undo = Undo::default();
    let mut buf = vec![0u8; MAX_RECORD];
    // The first record carries the eventfd crs wakes us with.
    let wake = match receive(&sock, &mut buf, false)? {
        Got::Record(Record::Hello, Some(fd)) => Some(fd),
        Got::Record(rec, fd) => {
            warn!(?rec, "the journal does not start with its eventfd");
            undo.apply(rec, fd);
            None
        }
        _ => None,
    };
    // Records wait in the socket: it is read when crs wakes us (the journal's end, or a
    // full socket), and to the end once crs is gone.
    let mut gone = !crs_alive;
    let mut ended = false;
    while !undo.done && !undo.released && !ended {
        if !gone {
            let mut fds = Vec::new();
            if let Some(w) = &wake {
                fds.push(PollFd::new(w.as_fd(), PollFlags::POLLIN));
            } else {
                fds.push(PollFd::new(sock.as_fd(), PollFlags::POLLIN));
            }
            if let Some(p) = &crs_fd {
                fds.push(PollFd::new(p.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    return Err(Error::Guardian {
                        what: "waiting for crs".into(),
                        source: e.into(),
                    })
                }
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            if ready(1) {
                gone = true;
            }
            if ready(0) {
                if let Some(w) = &wake {
                    let mut n = [0u8; 8];
                    let _ = nix::unistd::read(w, &mut n);
                }
            } else if !gone {
                continue;
            }
        }
        // Drain what the socket holds.
        loop {
            match receive(&sock, &mut buf, true)? {
                Got::Record(rec, fd) => undo.apply(rec, fd),
                Got::Malformed => {}
                Got::Empty => break,
                Got::End => {
                    ended = true;
                    break;
                }
            }
        }
        if gone {
            break;
        }
    }
    if undo.done {
        debug!("crs is done: nothing to undo");
        return Ok(());
    }
    if !undo.released {
        // The journal ends as crs dies, before the kernel has detached crs's tracees:
        // wait until crs is gone entirely.
        if let Some(p) = &crs_fd {
            let mut fds = [PollFd::new(p.as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::NONE).map_err(|e| Error::Guardian {
                what: "waiting for crs to end".into(),
                source: e.into(),
            })?;
        }
    }
    info!(
        crs,
        "crs ended without putting the tree back: undoing its changes"
    );
    undo_all(&mut undo);
    Ok(())
}

/// What one read of the socket gave.
enum Got {
    Record(Record, Option<OwnedFd>),
    /// A record the guardian cannot read: skipped.
    Malformed,
    /// Nothing waiting (non-blocking read).
    Empty,
    /// crs closed its end.
    End,
}

fn receive(sock: &OwnedFd, buf: &mut [u8], nonblocking: bool) -> Result<Got> {
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let flags = if nonblocking {
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC
    } else {
        MsgFlags::MSG_CMSG_CLOEXEC
    };
    let mut iov = [IoSliceMut::new(buf)];
    let msg = match recvmsg::<UnixAddr>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
        Ok(m) => m,
        Err(nix::errno::Errno::EAGAIN) => return Ok(Got::Empty),
        Err(e) => {
            return Err(Error::Guardian {
                what: "reading the journal".into(),
                source: e.into(),
            })
        }
    };
    let mut fd = None;
    for c in msg.cmsgs().into_iter().flatten() {
        if let ControlMessageOwned::ScmRights(fds) = c {
            for raw in fds {
                // SAFETY: every descriptor SCM_RIGHTS delivered is a new descriptor of this
                // process, open, and owned by nothing else: it is owned from here on.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                fd.get_or_insert(owned);
            }
        }
    }
    let n = msg.bytes;
    if n == 0 {
        return Ok(Got::End);
    }
    match Record::decode(&iov[0][..n]) {
        Some(r) => Ok(Got::Record(r, fd)),
        None => {
            warn!(len = n, "a malformed journal record is skipped");
            Ok(Got::Malformed)
        }
    }
}

fn alive(p: &Proc) -> bool {
    let Some(fd) = &p.pidfd else {
        return false;
    };
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(0))
}

fn kill(pid: Tid, p: &Proc) {
    if let Some(fd) = &p.pidfd {
        match pidfd::pidfd_send_signal(fd.as_fd(), libc::SIGKILL) {
            Ok(()) => info!(pid, "killed"),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
            Err(e) => warn!(pid, error = %e, "killing"),
        }
    }
}

fn undo_all(u: &mut Undo) {
    if let Some(path) = u.frozen.take() {
        match crate::freezer::Freezer::thaw_path(&path) {
            Ok(()) => info!(path = %path.display(), "cgroup thawed"),
            Err(e) => warn!(path = %path.display(), error = %e, "thawing the cgroup"),
        }
    }
    let kill_all = u.restore || u.killing;
    // A tree that goes on gets its connections back working. (A killed tree's close in
    // repair mode, below.)
    let tcp = std::mem::take(&mut u.tcp);
    if !kill_all {
        for (s, reuseaddr) in &tcp {
            match crs_sys::tcp_repair::resume(s.as_fd(), *reuseaddr) {
                Ok(()) => info!("TCP socket out of repair mode"),
                Err(e) => warn!(error = %e, "taking a TCP socket out of repair mode"),
            }
        }
    }
    // A killed tree's network lock is the restore's to remove.
    if let Some((table, net_of)) = u.net_lock.take().filter(|_| !kill_all) {
        let unlocked = if net_of == 0 {
            crs_sys::netlock::unlock(&table)
        } else {
            crs_sys::ns::within(net_of, &["net"], || crs_sys::netlock::unlock(&table))
                .map_err(io::Error::other)
                .and_then(|r| r)
        };
        match unlocked {
            Ok(_) => info!(table, "network unlocked"),
            Err(e) => warn!(table, error = %e, "unlocking the network"),
        }
    }
    for (&pid, p) in &u.procs {
        if kill_all {
            kill(pid, p);
        }
    }
    // A killed tree's connections close in repair mode, silently (a dump's are in it
    // already; a restore's are put in it now that the tree, killed, cannot see it: the
    // guardian's copies keep the sockets open until they are dropped here).
    if kill_all {
        for (s, _) in &tcp {
            if let Err(e) = crs_sys::tcp_repair::set_repair(s.as_fd(), true) {
                warn!(error = %e, "putting a TCP socket in repair mode");
            }
        }
    }
    drop(tcp);
    if !kill_all {
        for (&pid, p) in &u.procs {
            if !alive(p) {
                continue;
            }
            put_masks_back(pid, p);
            if p.patch.is_some() || p.map.is_some() || p.map_intent.is_some() {
                if let Err(e) = put_back_process(pid, p) {
                    warn!(pid, error = %e, "putting the process back");
                }
            }
        }
    }
    if let Some((dir, staging)) = u.images.take() {
        remove_images(&dir, &staging);
    }
    for f in std::mem::take(&mut u.files) {
        // A ghost file, or a ghost directory (a deleted cwd), empty as restore made it.
        let removed = match fs::remove_file(&f) {
            Err(e) if e.raw_os_error() == Some(libc::EISDIR) => fs::remove_dir(&f),
            r => r,
        };
        match removed {
            Ok(()) => info!(path = %f.display(), "removed"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(path = %f.display(), error = %e, "removing"),
        }
    }
    for id in std::mem::take(&mut u.sysv) {
        match crs_sys::sysv::shm_remove(id) {
            Ok(()) => info!(id, "SysV segment removed"),
            Err(e) => warn!(id, error = %e, "removing a SysV segment"),
        }
    }
}

/// Every thread of `pid` gets its saved mask; one the journal does not know (started after
/// crs died, from a pinned thread) gets the mask of the first thread it knows.
fn put_masks_back(pid: Tid, p: &Proc) {
    let Some(first) = p.masks.values().next() else {
        return;
    };
    let tids = crate::procfs::list_tids(pid).unwrap_or_default();
    for tid in tids {
        let words = p.masks.get(&tid).unwrap_or(first);
        if let Err(e) = crate::pin::set_mask(tid, &mask_from_words(words)) {
            warn!(tid, error = %e, "putting the CPU mask back");
        }
    }
    debug!(pid, "CPU masks put back");
}

/// Seizes `pid`, gives each thread parked in compel's code its saved registers and mask,
/// unmaps compel's area, puts the vDSO bytes back, and detaches.
fn put_back_process(pid: Tid, p: &Proc) -> Result<()> {
    let mut tree = SeizedTree::seize_processes(&[pid], &SeizeOptions::default())?;
    let tids: Vec<Tid> = tree.tids().collect();
    let stub = p
        .patch
        .as_ref()
        .map(|(addr, orig)| (*addr, *addr + orig.len() as u64));
    // The area's address: recorded, or still in the result register of the thread that
    // mapped it (parked right after the mmap).
    let mut map = p.map;
    if let (None, Some((tid, len)), Some((lo, hi))) = (map, p.map_intent, stub) {
        if let Ok(t) = tree.thread(tid) {
            let ip = Host::ip(t.regs()).get();
            let ret = Host::result_reg(t.regs());
            if (lo..hi).contains(&ip) && !(-4095..0).contains(&(ret as i64)) {
                map = Some((ret, len));
            }
        }
    }
    let code = map.map(|(addr, _)| (addr, addr + crate::inject::CODE_PAGE as u64));
    for tid in tids {
        let ip = Host::ip(tree.thread(tid)?.regs()).get();
        let parked = [code, stub]
            .into_iter()
            .flatten()
            .any(|(lo, hi)| (lo..hi).contains(&ip));
        if !parked {
            continue;
        }
        let Some((sigmask, words)) = p.threads.get(&tid) else {
            warn!(tid, ip, "a thread in compel's code that crs never recorded");
            continue;
        };
        let Some(regs) = Host::regs_from_words(words) else {
            warn!(tid, "recorded registers of the wrong size");
            continue;
        };
        tree.reset_thread(tid, &regs, *sigmask)?;
        info!(pid, tid, ip, "registers and signal mask put back");
    }
    if let Some((addr, len)) = map {
        if crate::inject::is_compel_area(pid, addr, len) {
            tree.adopt_area(
                pid,
                RemoteRange {
                    addr: RemoteAddr(addr),
                    len: len as usize,
                },
            )?;
        } else {
            debug!(pid, addr, "compel's area is not there any more");
        }
    }
    if let Some((addr, orig)) = &p.patch {
        tree.poke(pid, RemoteAddr(*addr), orig)?;
        debug!(pid, addr, "vDSO bytes put back");
    }
    tree.release(Release::Detach)?;
    info!(pid, "put back and detached");
    Ok(())
}

/// Removes an unfinished image set: the staging directory, or, when images went straight
/// into `dir` (which held none before), the images in it.
fn remove_images(dir: &Path, staging: &Path) {
    if dir != staging {
        match fs::remove_dir_all(staging) {
            Ok(()) => info!(dir = %staging.display(), "unfinished images removed"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(dir = %staging.display(), error = %e, "removing unfinished images"),
        }
        return;
    }
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut n = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        // The images and their checksums (`crs-checksums`, written just before the
        // inventory: a dump killed in between leaves it without a set).
        let image = name.as_bytes().ends_with(b".img") || name == "crs-checksums";
        if image && fs::remove_file(e.path()).is_ok() {
            n += 1;
        }
    }
    info!(dir = %dir.display(), images = n, "unfinished images removed");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Record> {
        vec![
            Record::Held { pid: 7 },
            Record::Thread {
                pid: 7,
                tid: 8,
                sigmask: 1 << 9,
                regs: (0..27).collect(),
            },
            Record::Mask {
                pid: 7,
                tid: 8,
                cpus: vec![3, 0],
            },
            Record::Patched {
                pid: 7,
                addr: 0x7fff_1000,
                orig: vec![0, 0, 0, 0],
            },
            Record::Unpatched { pid: 7 },
            Record::MapIntent {
                pid: 7,
                tid: 7,
                len: 86016,
            },
            Record::Mapped {
                pid: 7,
                addr: 0x7f00_0000,
                len: 86016,
            },
            Record::Unmapped { pid: 7 },
            Record::Frozen {
                path: "/sys/fs/cgroup/freezer/x".into(),
            },
            Record::Thawed,
            Record::Images {
                dir: "/d".into(),
                staging: "/d/.crs-dump-1.2".into(),
            },
            Record::ImagesComplete,
            Record::Killing,
            Record::Restore,
            Record::File {
                path: "/tmp/a.cr.1.ghost".into(),
            },
            Record::FileGone {
                path: "/tmp/a.cr.1.ghost".into(),
            },
            Record::SysvShm { id: 3 },
            Record::SysvKept { id: 3 },
            Record::TcpRepair { reuseaddr: true },
            Record::NetLocked {
                table: "CRIU-x".into(),
                net_of: 7,
            },
            Record::Done,
            Record::Released,
            Record::Hello,
        ]
    }

    #[test]
    fn record_every_kind_round_trips() {
        for r in all() {
            assert_eq!(Record::decode(&r.encode()), Some(r.clone()), "{r:?}");
        }
    }

    #[test]
    fn record_truncated_or_extended_is_refused() {
        for r in all() {
            let b = r.encode();
            for cut in 0..b.len() {
                assert_eq!(Record::decode(&b[..cut]), None, "{r:?} cut at {cut}");
            }
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(Record::decode(&longer), None, "{r:?} with a byte more");
        }
    }

    #[test]
    fn record_unknown_tag_is_refused() {
        assert_eq!(Record::decode(&[0]), None);
        assert_eq!(Record::decode(&[200, 1, 2]), None);
    }

    #[test]
    fn undo_fold_later_records_cancel_earlier_ones() {
        let mut u = Undo::default();
        for r in all() {
            u.apply(r, None);
        }
        let p = &u.procs[&7];
        assert_eq!((p.patch.is_none(), p.map, p.map_intent), (true, None, None));
        assert_eq!(p.threads[&8].0, 1 << 9);
        assert!(u.frozen.is_none() && u.images.is_none());
        assert!(u.files.is_empty() && u.sysv.is_empty());
        assert!(u.killing && u.restore && u.done && u.released);
    }

    #[test]
    fn mask_words_round_trip() {
        let mut set = CpuSet::new();
        set.set(0).unwrap();
        set.set(65).unwrap();
        let w = mask_words(&set);
        assert_eq!((w[0], w[1]), (1, 2));
        let back = mask_from_words(&w);
        assert!(back.is_set(0).unwrap() && back.is_set(65).unwrap());
        assert!(!back.is_set(1).unwrap());
    }
}
