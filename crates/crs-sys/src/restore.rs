//! Restore's raw calls: creating a process tree with chosen PIDs (clone3 `set_tid`), each
//! process setting up its session, group and process-level state with plain syscalls
//! before crs takes it over with ptrace, and `prlimit` on another process.
//!
//! The root is a copy of the calling thread of crs (no `CLONE_VM`), every other process a
//! copy of its parent. Between clone3 and the point where it parks, each runs only the code
//! in this file: raw syscalls on data that was prepared before the first clone
//! ([`TreeNode`], [`ChildPlan`]), no allocation, no locks, no libc state.
//!
//! Fd numbers: every fd any process places is below a tree-wide `stash` number; the
//! descriptions shared by several processes wait at `stash + slot` from the node that
//! creates them (their nearest common ancestor) down to every process below it, which
//! keeps that range when it closes what it inherited, dups its own to their fds, then
//! closes the range; report pipes and temporary pipe ends live above it.
//!
//! Sessions and groups: each process runs its [`Step`]s in order, so the plan decides who
//! is forked before or after a setsid, and that a group exists before anyone joins it. A
//! gone group or session leader is stood in for by a helper process with its pid
//! ([`NodeKind::Helper`]) that makes the group or session, forks the processes that must
//! be born in it (a session helper), exits, and is reaped by its parent before the tree
//! runs. A child created with CLONE_FILES shares its parent's fd table and touches no fd.

use std::ffi::{CStr, CString};
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::{cvt, Tid};

/// One open file description the new task gets, installed at one or more fd numbers.
#[derive(Debug)]
pub struct PlannedFile {
    /// Path to open.
    pub path: CString,
    /// open(2) flags (without O_CREAT/O_TRUNC/O_EXCL/O_CLOEXEC: the caller strips them).
    pub flags: i32,
    /// File position to seek to (skipped when 0).
    pub pos: u64,
    /// The fd numbers it goes to, each with its close-on-exec flag.
    pub fds: Vec<(RawFd, bool)>,
}

/// One end of a [`PlannedPipe`].
#[derive(Debug, Default)]
pub struct PipeEnd {
    /// Its file status flags (O_NONBLOCK, ...), set with F_SETFL; the access mode is
    /// ignored.
    pub flags: i32,
    /// The fd numbers it goes to, each with its close-on-exec flag; empty: the end is
    /// closed once the pipe is filled.
    pub fds: Vec<(RawFd, bool)>,
}

/// One pipe the new task creates, with the bytes that were queued in it.
#[derive(Debug, Default)]
pub struct PlannedPipe {
    /// Pipe size to set (F_SETPIPE_SZ), if recorded.
    pub size: Option<i32>,
    /// Bytes to queue in it (at most `size`).
    pub data: Vec<u8>,
    /// The read end.
    pub read: PipeEnd,
    /// The write end.
    pub write: PipeEnd,
}

/// An open file description shared by several processes of the tree: created once by
/// their nearest common ancestor (see [`SharedCreates`]) at stash slot `slot`, inherited
/// across clone, and put at `fd` by each process that holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InheritedFd {
    /// The stash slot the description waits in.
    pub slot: usize,
    /// The fd number it goes to.
    pub fd: RawFd,
    /// Its close-on-exec flag.
    pub cloexec: bool,
}

/// A regular file a node opens for the processes below it, at stash slot `slot`.
#[derive(Debug)]
pub struct SharedFile {
    /// Path, flags and position (`fds` is ignored).
    pub file: PlannedFile,
    pub slot: usize,
}

/// A pipe a node creates for the processes below it: each end that someone holds waits
/// at its stash slot (`None`: nobody holds that end, it is closed once the pipe is filled).
#[derive(Debug)]
pub struct SharedPipe {
    /// Size, data and each end's flags (the ends' `fds` are ignored).
    pub pipe: PlannedPipe,
    pub read_slot: Option<usize>,
    pub write_slot: Option<usize>,
}

/// The shared open file descriptions a node creates before its children, so that they
/// inherit them: every process holding one then has the same description.
#[derive(Debug, Default)]
pub struct SharedCreates {
    pub files: Vec<SharedFile>,
    pub pipes: Vec<SharedPipe>,
}

/// What the new task does to itself before it parks.
#[derive(Debug)]
pub struct ChildPlan {
    /// umask to set.
    pub umask: u32,
    /// Directory to chdir to.
    pub cwd: CString,
    /// Directory to chroot to (after the chdir), when not `/`.
    pub root: Option<CString>,
    /// Files to open at their fd numbers.
    pub files: Vec<PlannedFile>,
    /// Pipes to create, fill and put at their fd numbers (after `files`).
    pub pipes: Vec<PlannedPipe>,
    /// Descriptions created by an ancestor (or this process) before its children, put
    /// at their fd numbers first; then every stash slot is closed.
    pub inherited: Vec<InheritedFd>,
    /// Address of the trampoline region (page aligned, free in crs at the time of the
    /// clone). Its first page becomes read+exec and holds [`TRAMPOLINE_CODE`]; the rest is
    /// read+write scratch.
    pub trampoline: u64,
    /// Length of the trampoline region (a multiple of the page size, at least two pages).
    pub trampoline_len: usize,
}

/// One process of the tree [`spawn_tree`] creates.
#[derive(Debug)]
pub struct TreeNode {
    /// Its pid.
    pub pid: Tid,
    /// What it does, in order, once its inherited fds are closed: its session and group,
    /// the shared descriptions it creates, the children it creates (each waited for until
    /// it reported, so a group or session exists before anyone joins it), helpers reaped.
    pub steps: Vec<Step>,
    /// A live process, a zombie or a helper.
    pub kind: NodeKind,
    /// Shared descriptions it creates at its [`Step::Creates`], for itself and the
    /// processes below it.
    pub creates: SharedCreates,
    /// Created with CLONE_FILES: it shares its parent's fd table, so it touches no fd of
    /// it (its parent places them all); its plan's files, pipes and inherited fds are
    /// ignored.
    pub share_files: bool,
    /// Sets PR_SET_PDEATHSIG(SIGKILL). Off for the children of a session helper: they
    /// outlive it (reparented to the nearest subreaper).
    pub parent_death_signal: bool,
    /// For a live session leader whose session had a controlling terminal: the terminal
    /// it takes as such right after its [`Step::Setsid`] (so that the processes it
    /// creates next have it too), and the foreground group it gives it after its last
    /// step (when every group of the session exists).
    pub ctty: Option<Ctty>,
}

/// The controlling terminal of a session leader's session (see [`TreeNode::ctty`]).
#[derive(Debug)]
pub struct Ctty {
    /// The terminal's path (a pty slave: `/dev/pts/N`), opened with O_NOCTTY and closed
    /// again each time it is used.
    pub path: CString,
    /// The foreground process group to give it (`TIOCSPGRP`); None leaves the leader's
    /// own group there, as `TIOCSCTTY` put it.
    pub foreground: Option<Tid>,
}

/// One step of a [`TreeNode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// setsid(): a new session and process group led by this process.
    Setsid,
    /// setpgid(0, pgid): its own pid makes it a group leader, another pid joins that
    /// (existing) group of its session.
    Setpgid(Tid),
    /// Create [`TreeNode::creates`] at their stash slots.
    Creates,
    /// Create node `nodes[i]` (one of its children) and wait for its report.
    Child(usize),
    /// Reap helper `nodes[i]`, a child created earlier, once it exited.
    Reap(usize),
    /// PR_SET_CHILD_SUBREAPER: on (true) while the children of a session helper are to
    /// come back to it, off (false) once they did (the dumped value is set later).
    Subreaper(bool),
}

/// What a [`TreeNode`] becomes.
#[derive(Debug)]
pub enum NodeKind {
    /// A process that sets itself up with the plan and parks to be seized.
    Live(ChildPlan),
    /// A zombie: exits with this wait status (exit code << 8, or a signal number) right
    /// after its steps, and is left unreaped by its parent.
    Zombie { wait_status: i32 },
    /// A helper holding a pid that is no process of the dump (a gone group or session
    /// leader): it makes the group or session, creates its children, exits with 0 and is
    /// reaped by its parent ([`Step::Reap`]) before the tree runs.
    Helper,
}

/// The code at the start of the trampoline: `syscall; jmp .`. While crs holds the task it
/// always stops the thread at the syscall's exit; a thread that goes past it (a new thread
/// made by an injected clone3, or any thread once crs is dead) spins on the `jmp .` instead
/// of running on with foreign registers, until it is seized or killed.
pub const TRAMPOLINE_CODE: [u8; 4] = [0x0f, 0x05, 0xeb, 0xfe];

/// Offset of the trampoline's `jmp .`.
pub const TRAMPOLINE_PARK: u64 = 2;

const PAGE: usize = 4096;

/// The step of [`ChildPlan`] the new task failed at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildStep {
    PdeathSig,
    MovePipe,
    CloseFds,
    Setsid,
    Setpgid,
    Chdir,
    Chroot,
    Open,
    Seek,
    Dup,
    SetCloexec,
    CloseTemp,
    MapTrampoline,
    ProtectTrampoline,
    Pipe,
    MovePipeEnd,
    PipeSize,
    PipeFill,
    PipeFlags,
    Clone,
    ChildDied,
    WaitZombie,
    Inherit,
    Reap,
    Subreaper,
    WatchCrs,
    Ctty,
    Foreground,
    TimeNs,
    Unknown(u32),
}

impl ChildStep {
    fn code(self) -> u32 {
        match self {
            ChildStep::PdeathSig => 1,
            ChildStep::MovePipe => 2,
            ChildStep::CloseFds => 3,
            ChildStep::Setsid => 4,
            ChildStep::Setpgid => 5,
            ChildStep::Chdir => 6,
            ChildStep::Chroot => 7,
            ChildStep::Open => 8,
            ChildStep::Seek => 9,
            ChildStep::Dup => 10,
            ChildStep::SetCloexec => 11,
            ChildStep::CloseTemp => 12,
            ChildStep::MapTrampoline => 13,
            ChildStep::ProtectTrampoline => 14,
            ChildStep::Pipe => 15,
            ChildStep::MovePipeEnd => 16,
            ChildStep::PipeSize => 17,
            ChildStep::PipeFill => 18,
            ChildStep::PipeFlags => 19,
            ChildStep::Clone => 20,
            ChildStep::ChildDied => 21,
            ChildStep::WaitZombie => 22,
            ChildStep::Inherit => 23,
            ChildStep::Reap => 24,
            ChildStep::Subreaper => 25,
            ChildStep::WatchCrs => 26,
            ChildStep::Ctty => 27,
            ChildStep::Foreground => 28,
            ChildStep::TimeNs => 29,
            ChildStep::Unknown(c) => c,
        }
    }

    fn from_code(c: u32) -> ChildStep {
        [
            ChildStep::PdeathSig,
            ChildStep::MovePipe,
            ChildStep::CloseFds,
            ChildStep::Setsid,
            ChildStep::Setpgid,
            ChildStep::Chdir,
            ChildStep::Chroot,
            ChildStep::Open,
            ChildStep::Seek,
            ChildStep::Dup,
            ChildStep::SetCloexec,
            ChildStep::CloseTemp,
            ChildStep::MapTrampoline,
            ChildStep::ProtectTrampoline,
            ChildStep::Pipe,
            ChildStep::MovePipeEnd,
            ChildStep::PipeSize,
            ChildStep::PipeFill,
            ChildStep::PipeFlags,
            ChildStep::Clone,
            ChildStep::ChildDied,
            ChildStep::WaitZombie,
            ChildStep::Inherit,
            ChildStep::Reap,
            ChildStep::Subreaper,
            ChildStep::WatchCrs,
            ChildStep::Ctty,
            ChildStep::Foreground,
            ChildStep::TimeNs,
        ]
        .into_iter()
        .find(|s| s.code() == c)
        .unwrap_or(ChildStep::Unknown(c))
    }
}

impl fmt::Display for ChildStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ChildStep::PdeathSig => "prctl(PR_SET_PDEATHSIG)",
            ChildStep::MovePipe => "moving the report pipe",
            ChildStep::CloseFds => "closing inherited fds",
            ChildStep::Setsid => "setsid",
            ChildStep::Setpgid => "setpgid",
            ChildStep::Chdir => "chdir to the cwd",
            ChildStep::Chroot => "chroot to the root",
            ChildStep::Open => "opening a file",
            ChildStep::Seek => "seeking a file",
            ChildStep::Dup => "placing a file at its fd",
            ChildStep::SetCloexec => "setting FD_CLOEXEC",
            ChildStep::CloseTemp => "closing a temporary fd",
            ChildStep::MapTrampoline => "mapping the trampoline",
            ChildStep::ProtectTrampoline => "protecting the trampoline",
            ChildStep::Pipe => "creating a pipe",
            ChildStep::MovePipeEnd => "moving a pipe end above the fds in use",
            ChildStep::PipeSize => "setting a pipe's size",
            ChildStep::PipeFill => "refilling a pipe's data",
            ChildStep::PipeFlags => "setting a pipe end's flags",
            ChildStep::Clone => "clone3 of a child with set_tid",
            ChildStep::ChildDied => "waiting for a child's report (it died)",
            ChildStep::WaitZombie => "waiting for a zombie child to exit",
            ChildStep::Inherit => "placing an inherited shared file at its fd",
            ChildStep::Reap => "reaping a helper child",
            ChildStep::Subreaper => "prctl(PR_SET_CHILD_SUBREAPER)",
            ChildStep::WatchCrs => "opening a pidfd of crs (a root made crs's sibling)",
            ChildStep::Ctty => "taking its terminal as controlling terminal (TIOCSCTTY)",
            ChildStep::Foreground => "setting its terminal's foreground group (TIOCSPGRP)",
            ChildStep::TimeNs => "making and entering a time namespace with the dumped clocks",
            ChildStep::Unknown(c) => return write!(f, "unknown step {c}"),
        };
        f.write_str(s)
    }
}

/// Why [`spawn_with_pid`] failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("creating the report pipe")]
    Pipe(#[source] io::Error),
    #[error("clone3 with set_tid")]
    Clone(#[source] io::Error),
    #[error("new task {pid} failed at {step} (file, pipe or child {index}): errno {errno}")]
    Setup {
        pid: Tid,
        step: ChildStep,
        index: u32,
        errno: i32,
    },
    #[error("new task died during setup ({})", died(*status))]
    Died {
        /// Its wait status; None for a root made crs's sibling, which crs cannot reap.
        status: Option<i32>,
    },
    #[error("reading the new task's report")]
    Report(#[source] io::Error),
}

fn died(status: Option<i32>) -> String {
    match status {
        Some(s) => format!("wait status {s:#x}"),
        None => "not crs's child: its parent reaps it".into(),
    }
}

/// Whose child the root of the tree [`spawn_tree_as`] creates is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RootParent {
    /// crs's: crs reaps it, or it is reparented when crs exits first.
    #[default]
    Crs,
    /// crs's parent's (`CLONE_PARENT`): the root is crs's sibling, so the program that
    /// ran crs can wait for it (CRIU's `rst_sibling`). Its exit signal goes to that
    /// program, and crs cannot reap it.
    CrsParent,
}

/// The new, parked task.
#[derive(Debug)]
pub struct Spawned {
    /// Its pid (the one asked for).
    pub pid: Tid,
    /// A pidfd for it (CLONE_PIDFD).
    pub pidfd: OwnedFd,
    /// Whose child it is.
    pub parent: RootParent,
}

impl Spawned {
    /// SIGKILLs the root and waits until it is dead: reaped (its wait status returned)
    /// when it is crs's child, else only waited for on its pidfd, its zombie left to its
    /// parent.
    pub fn kill(&self) -> Option<i32> {
        kill_root(self.pid, &self.pidfd, self.parent)
    }
}

fn kill_root(pid: Tid, pidfd: &OwnedFd, parent: RootParent) -> Option<i32> {
    match parent {
        RootParent::Crs => Some(kill_and_reap(pid, pidfd)),
        RootParent::CrsParent => {
            let _ = crate::pidfd::pidfd_send_signal(std::os::fd::AsFd::as_fd(pidfd), libc::SIGKILL);
            wait_gone(pidfd);
            None
        }
    }
}

/// Waits until the process behind `pidfd` has exited (its pidfd polls readable).
fn wait_gone(pidfd: &OwnedFd) {
    let mut fds = [libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    loop {
        // SAFETY: `fds` is a live array of one pollfd the kernel reads and writes, and its
        // length is passed; no other memory is touched.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) };
        if n > 0 || (n < 0 && errno() != libc::EINTR) {
            return;
        }
    }
}

/// `struct clone_args` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
pub(crate) struct CloneArgs {
    pub(crate) flags: u64,
    pub(crate) pidfd: u64,
    pub(crate) child_tid: u64,
    pub(crate) parent_tid: u64,
    pub(crate) exit_signal: u64,
    pub(crate) stack: u64,
    pub(crate) stack_size: u64,
    pub(crate) tls: u64,
    pub(crate) set_tid: u64,
    pub(crate) set_tid_size: u64,
    pub(crate) cgroup: u64,
}

/// Report written by a new task: step (0 = ready), file index, errno, its pid.
const REPORT_LEN: usize = 16;

/// The fd number above every fd `plan` places (3 for none).
fn fd_floor(plan: &ChildPlan) -> RawFd {
    plan.files
        .iter()
        .flat_map(|f| f.fds.iter().map(|&(fd, _)| fd))
        .chain(plan.pipes.iter().flat_map(|p| {
            p.read
                .fds
                .iter()
                .chain(p.write.fds.iter())
                .map(|&(fd, _)| fd)
        }))
        .chain(plan.inherited.iter().map(|i| i.fd))
        .max()
        .map_or(3, |m| m + 1)
}

/// Fd numbers of the whole tree: every fd any process places is below `stash`; stash slot
/// k is fd `stash + k`; the report pipe and the temporary pipe ends go at `top` or above.
#[derive(Clone, Copy, Debug)]
struct Layout {
    stash: RawFd,
    top: RawFd,
}

impl Layout {
    fn of(nodes: &[TreeNode]) -> Layout {
        let mut stash = 3;
        let mut slots = 0usize;
        for n in nodes {
            if let NodeKind::Live(plan) = &n.kind {
                assert!(
                    plan.trampoline_len >= 2 * PAGE && plan.trampoline_len.is_multiple_of(PAGE)
                );
                stash = stash.max(fd_floor(plan));
                for i in &plan.inherited {
                    slots = slots.max(i.slot + 1);
                }
            }
            for f in &n.creates.files {
                slots = slots.max(f.slot + 1);
            }
            for p in &n.creates.pipes {
                for s in [p.read_slot, p.write_slot].into_iter().flatten() {
                    slots = slots.max(s + 1);
                }
            }
        }
        Layout {
            stash,
            top: stash + slots as RawFd,
        }
    }

    fn slot(&self, slot: usize) -> RawFd {
        self.stash + slot as RawFd
    }
}

/// Creates the process tree `nodes` (`nodes[0]` is the root, a child of the calling
/// thread; every other node is created by its parent node at its [`Step::Child`]) with
/// their pids (in crs's pid namespace). Each process: sets PR_SET_PDEATHSIG(SIGKILL)
/// (unless told not to), closes what it inherited (unless it shares its parent's fd
/// table), runs its steps in order (session, group, shared creates, children one after
/// the other, each waited for until it reported, so a group leader or helper exists
/// before anyone joins its group, helpers reaped), then either exits (a zombie or a
/// helper, once reported) or carries out its plan and waits in `pause()` to be seized.
/// Returns once the root reported, so every live node is parked, every zombie has exited
/// and every helper is reaped. On a failure the root has exited and been reaped, and the
/// rest of the tree dies with it (parent-death signal).
///
/// A taken pid fails with `Clone` (the root) or `Setup` at step `Clone` with EEXIST.
///
/// # Panics
/// When the root is not a live node or shares files, or a node's trampoline is not page
/// aligned.
pub fn spawn_tree(nodes: &[TreeNode]) -> Result<Spawned, SpawnError> {
    spawn_tree_as(nodes, RootParent::Crs, 0, None)
}

/// [`spawn_tree`], with the root created as the child of `parent`. A root that is crs's
/// sibling ([`RootParent::CrsParent`]) gets no parent-death signal from crs (its parent is
/// the program that ran crs), so it watches crs itself: it opens a pidfd of crs first
/// (failing if crs is gone already) and, once it reported, waits on it instead of
/// `pause()`, exiting if crs dies before taking it over. Until crs seizes it, a crs that
/// dies leaves nothing of the tree behind, as with [`RootParent::Crs`].
///
/// `namespaces`: `CLONE_NEW*` flags of the namespaces the root is created in (new ones,
/// which the whole tree inherits). `time_offsets`: the root, first thing, makes a new time
/// namespace with these offsets (the text `/proc/self/timens_offsets` takes) and enters
/// it, so that the whole tree is in it.
pub fn spawn_tree_as(
    nodes: &[TreeNode],
    parent: RootParent,
    namespaces: u64,
    time_offsets: Option<&CStr>,
) -> Result<Spawned, SpawnError> {
    let layout = Layout::of(nodes);
    assert!(
        matches!(nodes[0].kind, NodeKind::Live(_)),
        "a zombie or helper root"
    );
    assert!(!nodes[0].share_files, "the root shares crs's fd table");
    let (rfd, wfd) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| SpawnError::Pipe(e.into()))?;
    let set_tid = [nodes[0].pid];
    let mut pidfd: RawFd = -1;
    // With CLONE_PARENT clone3 takes no exit signal: the child gets crs's own (the one
    // crs's parent chose, SIGCHLD when it forked crs).
    let (flags, exit_signal, watch) = match parent {
        RootParent::Crs => (libc::CLONE_PIDFD as u64, libc::SIGCHLD as u64, 0),
        RootParent::CrsParent => (
            (libc::CLONE_PIDFD | libc::CLONE_PARENT) as u64,
            0,
            std::process::id() as Tid,
        ),
    };
    let args = CloneArgs {
        flags: flags | namespaces,
        pidfd: &mut pidfd as *mut RawFd as u64,
        exit_signal,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    // SAFETY: `args` is a live clone_args of the size passed, its `pidfd`/`set_tid` point at
    // live locals of the right types. Without CLONE_VM the child runs on a copy of this memory
    // and stack, like fork(), only in `node_main`, which never returns and makes only raw
    // syscalls on data prepared before the call, so no lock copied from other threads is used.
    // CLONE_PARENT only changes whose child the new task is (and who gets its exit
    // signal): nothing of this process's memory or fds depends on it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == 0 {
        node_main(
            nodes,
            layout,
            0,
            (rfd.as_raw_fd(), wfd.as_raw_fd()),
            watch,
            time_offsets,
        );
    }
    let child = cvt(ret).map_err(SpawnError::Clone)? as Tid;
    drop(wfd);
    // SAFETY: clone3 succeeded with CLONE_PIDFD, so the kernel stored a new descriptor in
    // `pidfd` that nothing else owns.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let mut report = [0u8; REPORT_LEN];
    let mut pipe = File::from(rfd);
    let mut got = 0;
    while got < REPORT_LEN {
        match pipe.read(&mut report[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                kill_root(child, &pidfd, parent);
                return Err(SpawnError::Report(e));
            }
        }
    }
    if got < REPORT_LEN {
        let status = kill_root(child, &pidfd, parent);
        return Err(SpawnError::Died { status });
    }
    let word = |i: usize| u32::from_ne_bytes(report[i * 4..i * 4 + 4].try_into().expect("4"));
    let step = word(0);
    if step != 0 {
        kill_root(child, &pidfd, parent);
        return Err(SpawnError::Setup {
            pid: word(3) as Tid,
            step: ChildStep::from_code(step),
            index: word(1),
            errno: word(2) as i32,
        });
    }
    Ok(Spawned {
        pid: child,
        pidfd,
        parent,
    })
}

/// SIGKILLs the child behind `pidfd` and reaps it; returns its wait status.
pub fn kill_and_reap(pid: Tid, pidfd: &OwnedFd) -> i32 {
    let _ = crate::pidfd::pidfd_send_signal(std::os::fd::AsFd::as_fd(pidfd), libc::SIGKILL);
    reap(pid).unwrap_or(0)
}

/// Blocking `waitpid(pid, __WALL)` of a child, retried on EINTR; the raw wait status.
pub fn reap(pid: Tid) -> io::Result<i32> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: `status` is a live int the kernel writes; no other memory is touched.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(err);
        }
        return Ok(status);
    }
}

/// In a new task: a close-on-exec pidfd of `pid` at the lowest free fd from `floor`. A
/// failure is reported as `step` on `wfd` and ends the task. Raw syscalls only.
fn pidfd_from(pid: libc::c_long, floor: RawFd, wfd: RawFd, step: ChildStep) -> libc::c_long {
    // SAFETY: pidfd_open, fcntl(F_DUPFD_CLOEXEC) and close take integers only.
    unsafe {
        let fd = sys(libc::SYS_pidfd_open, [pid as u64, 0, 0, 0]);
        if fd < 0 {
            fail(wfd, step, 0, errno());
        }
        let moved = sys(
            libc::SYS_fcntl,
            [fd as u64, libc::F_DUPFD_CLOEXEC as u64, floor as u64, 0],
        );
        if moved < 0 {
            fail(wfd, step, 0, errno());
        }
        sys(libc::SYS_close, [fd as u64, 0, 0, 0]);
        moved
    }
}

/// One raw syscall; returns the raw result (-1 with errno on failure).
///
/// # Safety
/// Pointer arguments must be valid for what syscall `nr` does with them.
#[inline(always)]
unsafe fn sys(nr: libc::c_long, a: [u64; 4]) -> libc::c_long {
    // SAFETY: forwarded to the caller.
    unsafe { libc::syscall(nr, a[0], a[1], a[2], a[3]) }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Creates child node `c` from inside its parent node (whose report fd is `wfd`), waits
/// for its report, and forwards a failure report up (then exits). Runs in a new task: raw
/// syscalls only.
fn spawn_child(nodes: &[TreeNode], layout: Layout, c: usize, wfd: RawFd) {
    let mut ends: [libc::c_int; 2] = [-1, -1];
    let set_tid = [nodes[c].pid];
    let share = nodes[c].share_files;
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        // A child sharing this fd table cannot see its report pipe close when it dies
        // (this task holds the write end in the same table): its pidfd tells instead.
        flags: if share {
            (libc::CLONE_FILES | libc::CLONE_PIDFD) as u64
        } else {
            0
        },
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        set_tid: set_tid.as_ptr() as u64,
        set_tid_size: 1,
        ..CloneArgs::default()
    };
    let mut report = [0u8; REPORT_LEN];
    // SAFETY: `ends`, `report`, `pidfd`, `polls`, `args` and `set_tid` are live locals of the
    // sizes passed (the kernel writes `ends`, `report`, `pidfd` and `polls`, reads `args` and
    // `set_tid`); `info` below likewise. clone3 without CLONE_VM: the child runs on a copy of
    // this stack and only calls `node_main`, which never returns (see `spawn_tree`).
    unsafe {
        if sys(
            libc::SYS_pipe2,
            [ends.as_mut_ptr() as u64, libc::O_CLOEXEC as u64, 0, 0],
        ) < 0
        {
            fail(wfd, ChildStep::Pipe, c, errno());
        }
        let ret = libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        );
        if ret == 0 {
            node_main(nodes, layout, c, (ends[0], ends[1]), 0, None);
        }
        if ret < 0 {
            fail(wfd, ChildStep::Clone, c, errno());
        }
        if share {
            // Until the report can be read, or the child is gone.
            let mut polls = [
                libc::pollfd {
                    fd: ends[0],
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: pidfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            loop {
                let n = sys(libc::SYS_poll, [polls.as_mut_ptr() as u64, 2, u64::MAX, 0]);
                if n > 0 {
                    break;
                }
                if n < 0 && errno() != libc::EINTR {
                    fail(wfd, ChildStep::ChildDied, c, errno());
                }
            }
            if polls[0].revents & libc::POLLIN == 0 {
                fail(wfd, ChildStep::ChildDied, c, 0);
            }
            sys(libc::SYS_close, [pidfd as u64, 0, 0, 0]);
        }
        // Shared table: the child's write end is this one, closed once the report is read.
        if !share {
            sys(libc::SYS_close, [ends[1] as u64, 0, 0, 0]);
        }
        let mut got = 0usize;
        while got < REPORT_LEN {
            let n = sys(
                libc::SYS_read,
                [
                    ends[0] as u64,
                    report.as_mut_ptr().add(got) as u64,
                    (REPORT_LEN - got) as u64,
                    0,
                ],
            );
            if n < 0 && errno() == libc::EINTR {
                continue;
            }
            if n <= 0 {
                break;
            }
            got += n as usize;
        }
        sys(libc::SYS_close, [ends[0] as u64, 0, 0, 0]);
        if share {
            sys(libc::SYS_close, [ends[1] as u64, 0, 0, 0]);
        }
        if got < REPORT_LEN {
            fail(wfd, ChildStep::ChildDied, c, 0);
        }
        if report[0..4] != [0; 4] {
            // The child's own failure: pass it up unchanged (16 bytes: one atomic write).
            sys(
                libc::SYS_write,
                [wfd as u64, report.as_ptr() as u64, REPORT_LEN as u64, 0],
            );
            exit_now(1);
        }
        if matches!(nodes[c].kind, NodeKind::Zombie { .. }) {
            // Wait until it has really exited (without reaping it), so that it is a zombie
            // when the tree is seized.
            let mut info = [0u8; 128];
            loop {
                // Five arguments: the rusage pointer must be null, not whatever is in r8.
                let r = libc::syscall(
                    libc::SYS_waitid,
                    libc::P_PID,
                    ret,
                    info.as_mut_ptr(),
                    libc::WEXITED | libc::WNOWAIT,
                    std::ptr::null_mut::<libc::rusage>(),
                );
                if r == 0 {
                    break;
                }
                if errno() != libc::EINTR {
                    fail(wfd, ChildStep::WaitZombie, c, errno());
                }
            }
        }
    }
}

/// The code of new task `nodes[i]`, with `rfd`/`wfd` the ends of its report pipe; `watch`
/// (not 0) is crs's pid, for a root that is crs's sibling (see [`spawn_tree_as`]). Never
/// returns.
fn node_main(
    nodes: &[TreeNode],
    layout: Layout,
    i: usize,
    (rfd, wfd): (RawFd, RawFd),
    watch: Tid,
    time_offsets: Option<&CStr>,
) -> ! {
    let node = &nodes[i];
    let floor = layout.top;
    let mut wfd = wfd;
    // SAFETY: each `sys` call passes integers, NUL-terminated strings (static ones, or of
    // `nodes` and `time_offsets`) or buffers of `nodes` with their exact lengths (alive:
    // this task runs on a copy of its parent's memory taken while `nodes` and
    // `time_offsets` were borrowed), a live local the kernel writes (`gone`, one pollfd) or
    // reads (`pgrp`, one pid_t for TIOCSPGRP), or the trampoline this task just mapped,
    // with the length it mapped.
    unsafe {
        if node.parent_death_signal
            && sys(
                libc::SYS_prctl,
                [libc::PR_SET_PDEATHSIG as u64, libc::SIGKILL as u64, 0, 0],
            ) < 0
        {
            fail(wfd, ChildStep::PdeathSig, 0, errno());
        }
        // A child sharing its parent's fd table touches none of its fds: the report pipe
        // stays where it is (the parent closes both ends), nothing is closed.
        if !node.share_files {
            sys(libc::SYS_close, [rfd as u64, 0, 0, 0]);
            let moved = sys(
                libc::SYS_fcntl,
                [wfd as u64, libc::F_DUPFD_CLOEXEC as u64, floor as u64, 0],
            );
            if moved < 0 {
                fail(wfd, ChildStep::MovePipe, 0, errno());
            }
            sys(libc::SYS_close, [wfd as u64, 0, 0, 0]);
            wfd = moved as RawFd;
            // Everything below the report fd goes, except (below the root) the stash slots:
            // the shared descriptions the ancestors created.
            let keep_stash = i != 0 && layout.top > layout.stash;
            let ranges = if keep_stash {
                [(0, layout.stash - 1), (layout.top, wfd - 1)]
            } else {
                [(0, wfd - 1), (1, 0)]
            };
            for (lo, hi) in ranges {
                if lo <= hi && sys(libc::SYS_close_range, [lo as u64, hi as u64, 0, 0]) < 0 {
                    fail(wfd, ChildStep::CloseFds, 0, errno());
                }
            }
            if sys(
                libc::SYS_close_range,
                [(wfd + 1) as u64, u32::MAX as u64, 0, 0],
            ) < 0
            {
                fail(wfd, ChildStep::CloseFds, 0, errno());
            }
        }
        // The root's new time namespace, before any child is made (they are all made in
        // it): unshare one for the children, give it its offsets while nothing is in it,
        // and enter it (this task is single-threaded, as setns requires).
        if let Some(text) = time_offsets {
            if sys(libc::SYS_unshare, [libc::CLONE_NEWTIME as u64, 0, 0, 0]) < 0 {
                fail(wfd, ChildStep::TimeNs, 0, errno());
            }
            let fd = sys(
                libc::SYS_openat,
                [
                    libc::AT_FDCWD as u64,
                    c"/proc/self/timens_offsets".as_ptr() as u64,
                    (libc::O_WRONLY | libc::O_CLOEXEC) as u64,
                    0,
                ],
            );
            let len = text.to_bytes().len();
            if fd < 0
                || sys(
                    libc::SYS_write,
                    [fd as u64, text.as_ptr() as u64, len as u64, 0],
                ) != len as libc::c_long
            {
                fail(wfd, ChildStep::TimeNs, 1, errno());
            }
            sys(libc::SYS_close, [fd as u64, 0, 0, 0]);
            let fd = sys(
                libc::SYS_openat,
                [
                    libc::AT_FDCWD as u64,
                    c"/proc/self/ns/time_for_children".as_ptr() as u64,
                    (libc::O_RDONLY | libc::O_CLOEXEC) as u64,
                    0,
                ],
            );
            if fd < 0
                || sys(
                    libc::SYS_setns,
                    [fd as u64, libc::CLONE_NEWTIME as u64, 0, 0],
                ) < 0
            {
                fail(wfd, ChildStep::TimeNs, 2, errno());
            }
            sys(libc::SYS_close, [fd as u64, 0, 0, 0]);
        }
        // A child of a session helper takes its parent-death signal once it is back to
        // its grandparent (the helper exits after this task reported): a pidfd of the
        // helper tells when.
        let mut helper_fd: libc::c_long = -1;
        if !node.parent_death_signal {
            let ppid = sys(libc::SYS_getppid, [0; 4]);
            helper_fd = pidfd_from(ppid, floor, wfd, ChildStep::PdeathSig);
        }
        // A root that is crs's sibling: a pidfd of crs, waited on once reported.
        let mut crs_fd: libc::c_long = -1;
        if watch != 0 {
            crs_fd = pidfd_from(watch.into(), floor, wfd, ChildStep::WatchCrs);
        }
        for &step in &node.steps {
            run_step(nodes, layout, node, step, wfd);
        }
        if let Some(Ctty {
            path,
            foreground: Some(pgrp),
        }) = &node.ctty
        {
            let pgrp: libc::pid_t = *pgrp;
            let fd = open_terminal(wfd, path, ChildStep::Foreground);
            let ret = sys(
                libc::SYS_ioctl,
                [
                    fd as u64,
                    libc::TIOCSPGRP,
                    &pgrp as *const libc::pid_t as u64,
                    0,
                ],
            );
            if ret < 0 {
                fail(wfd, ChildStep::Foreground, pgrp as usize, errno());
            }
            sys(libc::SYS_close, [fd as u64, 0, 0, 0]);
        }
        let plan = match &node.kind {
            NodeKind::Live(plan) => plan,
            NodeKind::Helper => {
                report(wfd, 0, 0, 0);
                exit_now(0);
            }
            NodeKind::Zombie { wait_status } => {
                report(wfd, 0, 0, 0);
                if !node.share_files {
                    sys(libc::SYS_close, [wfd as u64, 0, 0, 0]);
                }
                let sig = wait_status & 0x7f;
                if sig != 0 {
                    // crs's handlers were inherited: back to the default action first.
                    let dfl = [0u64; 4];
                    sys(
                        libc::SYS_rt_sigaction,
                        [sig as u64, dfl.as_ptr() as u64, 0, 8],
                    );
                    let mut none = [0u64; 1];
                    sys(
                        libc::SYS_rt_sigprocmask,
                        [libc::SIG_SETMASK as u64, none.as_mut_ptr() as u64, 0, 8],
                    );
                    sys(
                        libc::SYS_kill,
                        [sys(libc::SYS_getpid, [0; 4]) as u64, sig as u64, 0, 0],
                    );
                }
                exit_now((wait_status >> 8) & 0xff);
            }
        };
        sys(libc::SYS_umask, [plan.umask as u64, 0, 0, 0]);
        let plan_fds = !node.share_files;
        if sys(libc::SYS_chdir, [plan.cwd.as_ptr() as u64, 0, 0, 0]) < 0 {
            fail(wfd, ChildStep::Chdir, 0, errno());
        }
        if let Some(root) = &plan.root {
            if sys(libc::SYS_chroot, [root.as_ptr() as u64, 0, 0, 0]) < 0 {
                fail(wfd, ChildStep::Chroot, 0, errno());
            }
        }
        let inherited = if plan_fds { &plan.inherited[..] } else { &[] };
        for (k, f) in inherited.iter().enumerate() {
            let fl = if f.cloexec { libc::O_CLOEXEC } else { 0 };
            let from = layout.slot(f.slot);
            if sys(libc::SYS_dup3, [from as u64, f.fd as u64, fl as u64, 0]) < 0 {
                fail(wfd, ChildStep::Inherit, k, errno());
            }
        }
        if plan_fds
            && layout.top > layout.stash
            && sys(
                libc::SYS_close_range,
                [layout.stash as u64, (layout.top - 1) as u64, 0, 0],
            ) < 0
        {
            fail(wfd, ChildStep::CloseFds, 0, errno());
        }
        if plan_fds {
            for (i, f) in plan.files.iter().enumerate() {
                open_planned(wfd, i, f, &f.fds);
            }
            for (i, p) in plan.pipes.iter().enumerate() {
                make_pipe(wfd, i, p, floor, &p.read.fds, &p.write.fds);
            }
        }
        let at = libc::syscall(
            libc::SYS_mmap,
            plan.trampoline,
            plan.trampoline_len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
            -1,
            0,
        );
        if at as u64 != plan.trampoline {
            fail(wfd, ChildStep::MapTrampoline, 0, errno());
        }
        // The region was just mapped read+write by this task, PAGE >= the code length.
        std::ptr::copy_nonoverlapping(
            TRAMPOLINE_CODE.as_ptr(),
            plan.trampoline as usize as *mut u8,
            TRAMPOLINE_CODE.len(),
        );
        if sys(
            libc::SYS_mprotect,
            [
                plan.trampoline,
                PAGE as u64,
                (libc::PROT_READ | libc::PROT_EXEC) as u64,
                0,
            ],
        ) < 0
        {
            fail(wfd, ChildStep::ProtectTrampoline, 0, errno());
        }
        report(wfd, 0, 0, 0);
        if !node.share_files {
            sys(libc::SYS_close, [wfd as u64, 0, 0, 0]);
        }
        if helper_fd >= 0 {
            // Nothing can be reported any more: on a failure the task stays without its
            // parent-death signal (crs kills every seized task when the restore fails).
            let mut gone = [libc::pollfd {
                fd: helper_fd as RawFd,
                events: libc::POLLIN,
                revents: 0,
            }];
            while sys(libc::SYS_poll, [gone.as_mut_ptr() as u64, 1, u64::MAX, 0]) < 0
                && errno() == libc::EINTR
            {}
            sys(
                libc::SYS_prctl,
                [libc::PR_SET_PDEATHSIG as u64, libc::SIGKILL as u64, 0, 0],
            );
            sys(libc::SYS_close, [helper_fd as u64, 0, 0, 0]);
        }
        if crs_fd >= 0 {
            // Until crs takes this task over (its registers are then replaced and this
            // code never goes on), or dies: then nothing will, and the task leaves.
            let mut gone = [libc::pollfd {
                fd: crs_fd as RawFd,
                events: libc::POLLIN,
                revents: 0,
            }];
            loop {
                let n = sys(libc::SYS_poll, [gone.as_mut_ptr() as u64, 1, u64::MAX, 0]);
                if n > 0 || (n < 0 && errno() != libc::EINTR) {
                    exit_now(1);
                }
            }
        }
        loop {
            sys(libc::SYS_pause, [0; 4]);
        }
    }
}

/// Step `step` of new task `node`, whose report fd is `wfd`. Runs in the new task: raw
/// syscalls only.
fn run_step(nodes: &[TreeNode], layout: Layout, node: &TreeNode, step: Step, wfd: RawFd) {
    // SAFETY: see `node_main`: integers only (TIOCSCTTY takes an int by value), except
    // `info`, a live local buffer of 128 bytes (a siginfo_t) the kernel writes, and a null
    // rusage pointer.
    unsafe {
        match step {
            Step::Setsid => {
                if sys(libc::SYS_setsid, [0; 4]) < 0 {
                    fail(wfd, ChildStep::Setsid, 0, errno());
                }
                if let Some(c) = &node.ctty {
                    // A new session leader without a terminal takes this one; the group
                    // it leads becomes the terminal's foreground group.
                    let fd = open_terminal(wfd, &c.path, ChildStep::Ctty);
                    if sys(libc::SYS_ioctl, [fd as u64, libc::TIOCSCTTY, 0, 0]) < 0 {
                        fail(wfd, ChildStep::Ctty, 0, errno());
                    }
                    sys(libc::SYS_close, [fd as u64, 0, 0, 0]);
                }
            }
            Step::Setpgid(pgid) => {
                if sys(libc::SYS_setpgid, [0, pgid as u64, 0, 0]) < 0 {
                    fail(wfd, ChildStep::Setpgid, pgid as usize, errno());
                }
            }
            Step::Creates => {
                for (k, f) in node.creates.files.iter().enumerate() {
                    open_planned(wfd, k, &f.file, &[(layout.slot(f.slot), true)]);
                }
                for (k, p) in node.creates.pipes.iter().enumerate() {
                    let r = p.read_slot.map(|s| [(layout.slot(s), true)]);
                    let w = p.write_slot.map(|s| [(layout.slot(s), true)]);
                    make_pipe(
                        wfd,
                        k,
                        &p.pipe,
                        layout.top,
                        r.as_ref().map_or(&[][..], |a| &a[..]),
                        w.as_ref().map_or(&[][..], |a| &a[..]),
                    );
                }
            }
            Step::Child(c) => spawn_child(nodes, layout, c, wfd),
            Step::Reap(c) => {
                let mut info = [0u8; 128];
                loop {
                    // Five arguments: the rusage pointer must be null, not whatever is in r8.
                    let r = libc::syscall(
                        libc::SYS_waitid,
                        libc::P_PID,
                        nodes[c].pid,
                        info.as_mut_ptr(),
                        libc::WEXITED | libc::__WALL,
                        std::ptr::null_mut::<libc::rusage>(),
                    );
                    if r == 0 {
                        break;
                    }
                    if errno() != libc::EINTR {
                        fail(wfd, ChildStep::Reap, c, errno());
                    }
                }
            }
            Step::Subreaper(on) => {
                if sys(
                    libc::SYS_prctl,
                    [libc::PR_SET_CHILD_SUBREAPER as u64, on as u64, 0, 0],
                ) < 0
                {
                    fail(wfd, ChildStep::Subreaper, 0, errno());
                }
            }
        }
    }
}

/// Opens terminal `path` (O_RDWR | O_NOCTTY) in the new task for step `step`; the fd.
/// Runs in the new task: raw syscalls only.
fn open_terminal(wfd: RawFd, path: &CString, step: ChildStep) -> libc::c_long {
    // SAFETY: see `node_main`: `path` is a NUL-terminated string alive for the call.
    let fd = unsafe {
        sys(
            libc::SYS_openat,
            [
                libc::AT_FDCWD as u64,
                path.as_ptr() as u64,
                (libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) as u64,
                0,
            ],
        )
    };
    if fd < 0 {
        fail(wfd, step, 0, errno());
    }
    fd
}

/// Opens file `f` in the new task, seeks it, and puts it at `targets` (the temporary fd
/// closed unless it is one of them). Runs in the new task: raw syscalls only.
fn open_planned(wfd: RawFd, i: usize, f: &PlannedFile, targets: &[(RawFd, bool)]) {
    // SAFETY: see `node_main`: `f.path` is a NUL-terminated string alive for the call;
    // every other argument is an integer.
    unsafe {
        let fd = sys(
            libc::SYS_openat,
            [
                libc::AT_FDCWD as u64,
                f.path.as_ptr() as u64,
                f.flags as u32 as u64,
                0,
            ],
        );
        if fd < 0 {
            fail(wfd, ChildStep::Open, i, errno());
        }
        if f.pos != 0
            && sys(
                libc::SYS_lseek,
                [fd as u64, f.pos, libc::SEEK_SET as u64, 0],
            ) < 0
        {
            fail(wfd, ChildStep::Seek, i, errno());
        }
        let mut kept = false;
        for &(target, cloexec) in targets {
            if target as libc::c_long == fd {
                kept = true;
                let fl = if cloexec { libc::FD_CLOEXEC } else { 0 };
                if sys(
                    libc::SYS_fcntl,
                    [fd as u64, libc::F_SETFD as u64, fl as u64, 0],
                ) < 0
                {
                    fail(wfd, ChildStep::SetCloexec, i, errno());
                }
            } else {
                let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
                if sys(libc::SYS_dup3, [fd as u64, target as u64, fl as u64, 0]) < 0 {
                    fail(wfd, ChildStep::Dup, i, errno());
                }
            }
        }
        if !kept && sys(libc::SYS_close, [fd as u64, 0, 0, 0]) < 0 {
            fail(wfd, ChildStep::CloseTemp, i, errno());
        }
    }
}

/// Creates pipe `p` in the new task: both ends above every target fd, sized, filled, then
/// each end at its targets (`read`, `write`) with its flags. Runs in the new task: raw
/// syscalls only.
fn make_pipe(
    wfd: RawFd,
    i: usize,
    p: &PlannedPipe,
    fd_floor: RawFd,
    read: &[(RawFd, bool)],
    write: &[(RawFd, bool)],
) {
    let mut ends: [libc::c_int; 2] = [-1, -1];
    // SAFETY: see `child_main`: `ends` is a live local array of two ints the kernel writes;
    // `p.data` is a live buffer of `p.data.len()` bytes the kernel only reads; every other
    // argument is an integer.
    unsafe {
        if sys(
            libc::SYS_pipe2,
            [
                ends.as_mut_ptr() as u64,
                (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64,
                0,
                0,
            ],
        ) < 0
        {
            fail(wfd, ChildStep::Pipe, i, errno());
        }
        // Move both ends above every fd number that is a target, so placing one end can
        // never overwrite the other.
        for end in ends.iter_mut() {
            let moved = sys(
                libc::SYS_fcntl,
                [
                    *end as u64,
                    libc::F_DUPFD_CLOEXEC as u64,
                    fd_floor as u64,
                    0,
                ],
            );
            if moved < 0 {
                fail(wfd, ChildStep::MovePipeEnd, i, errno());
            }
            sys(libc::SYS_close, [*end as u64, 0, 0, 0]);
            *end = moved as libc::c_int;
        }
        let [r, w] = ends;
        if let Some(size) = p.size {
            if sys(
                libc::SYS_fcntl,
                [w as u64, libc::F_SETPIPE_SZ as u64, size as u64, 0],
            ) < 0
            {
                fail(wfd, ChildStep::PipeSize, i, errno());
            }
        }
        let mut off = 0usize;
        while off < p.data.len() {
            let n = sys(
                libc::SYS_write,
                [
                    w as u64,
                    p.data.as_ptr().add(off) as u64,
                    (p.data.len() - off) as u64,
                    0,
                ],
            );
            if n <= 0 {
                // The pipe is non-blocking: a full pipe is EAGAIN, never a hang.
                let err = if n < 0 { errno() } else { libc::ENOSPC };
                fail(wfd, ChildStep::PipeFill, i, err);
            }
            off += n as usize;
        }
        for (fd, end, targets) in [(r, &p.read, read), (w, &p.write, write)] {
            if sys(
                libc::SYS_fcntl,
                [fd as u64, libc::F_SETFL as u64, end.flags as u32 as u64, 0],
            ) < 0
            {
                fail(wfd, ChildStep::PipeFlags, i, errno());
            }
            for &(target, cloexec) in targets {
                let fl = if cloexec { libc::O_CLOEXEC } else { 0 };
                if sys(libc::SYS_dup3, [fd as u64, target as u64, fl as u64, 0]) < 0 {
                    fail(wfd, ChildStep::Dup, i, errno());
                }
            }
            if sys(libc::SYS_close, [fd as u64, 0, 0, 0]) < 0 {
                fail(wfd, ChildStep::CloseTemp, i, errno());
            }
        }
    }
}

fn fail(wfd: RawFd, step: ChildStep, index: usize, err: i32) -> ! {
    report(wfd, step.code(), index as u32, err);
    exit_now(1)
}

fn report(wfd: RawFd, step: u32, index: u32, err: i32) {
    let mut buf = [0u8; REPORT_LEN];
    buf[0..4].copy_from_slice(&step.to_ne_bytes());
    buf[4..8].copy_from_slice(&index.to_ne_bytes());
    buf[8..12].copy_from_slice(&err.to_ne_bytes());
    // SAFETY: getpid takes no arguments; `buf` is a live local of REPORT_LEN bytes the
    // kernel only reads. A pipe write of 16 bytes is atomic.
    unsafe {
        let pid = sys(libc::SYS_getpid, [0; 4]) as i32;
        buf[12..16].copy_from_slice(&pid.to_ne_bytes());
        sys(
            libc::SYS_write,
            [wfd as u64, buf.as_ptr() as u64, REPORT_LEN as u64, 0],
        )
    };
}

fn exit_now(code: i32) -> ! {
    loop {
        // SAFETY: exit_group takes an integer and does not return.
        unsafe { sys(libc::SYS_exit_group, [code as u64, 0, 0, 0]) };
    }
}

/// `signalfd4(-1, mask, flags)`: a new signalfd of the signals of `mask` (bit n-1 =
/// signal n, real-time signals included, as the kernel's sigset).
pub fn signalfd(mask: u64, flags: i32) -> io::Result<OwnedFd> {
    // SAFETY: signalfd4 reads 8 bytes of mask from the pointer, a live local of that size.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            std::mem::size_of::<u64>(),
            flags,
        )
    })?;
    // SAFETY: signalfd4 returned a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `prlimit(pid, resource, {cur, max}, NULL)`.
pub fn prlimit(pid: Tid, resource: u32, cur: u64, max: u64) -> io::Result<()> {
    let new = libc::rlimit64 {
        rlim_cur: cur,
        rlim_max: max,
    };
    // SAFETY: `new` is a live rlimit64 the kernel only reads; the old-limit pointer is null.
    let ret = unsafe {
        libc::prlimit64(
            pid,
            resource as libc::__rlimit_resource_t,
            &new,
            std::ptr::null_mut(),
        )
    };
    cvt(ret as libc::c_long).map(drop)
}
