//! Reads CRIU images and rebuilds the process tree, driven from outside through compel.
//!
//! ```text
//! check crs-checksums, if any ──► load + validate every image ──► plan the tree (`plan_tree`: who forks whom before or
//!   after its setsid, siblings ordered so a group's leader exists before its members
//!   join, helpers with the pids of gone group/session leaders, CLONE_FILES children)
//! ──► clone3(set_tid = pid) of the root; each process, depth first: setsid / setpgid,
//!   the shared files and pipes it is the nearest common ancestor of (at stash fds its
//!   children inherit), its children (clone3 set_tid from inside, one after the other:
//!   zombies exit with their code and stay unreaped, helpers exit and are reaped), umask,
//!   cwd, inherited descriptions dup'ed to their fds, own files at their fds, trampoline
//!   page, pause()   (plain syscalls, no allocation)
//! ──► crs seizes the tree and, per process, runs syscalls in it from the trampoline:
//!   unmap crs, move the vDSO, mmap every VMA (shared anonymous ones from the object crs
//!   created and filled once for the tree, see `shmem`), process_vm_writev the pages (rayon),
//!   mprotect, PR_SET_MM_MAP, prctls, sigactions, sigaltstack, rseq, the other threads
//!   (clone3 with set_tid from inside, each seized and given its own state: see
//!   `threads`), POSIX timers, pending signals, creds of every thread, timers armed
//! ──► registers + xstate + sigmask of every thread set, trampoline unmapped, detach all
//!   threads of all processes together: they run on from the frozen instructions.
//! ```
//! On any error the half-built tree is SIGKILLed (the root reaped, the others die with it);
//! the images are only read.
#![forbid(unsafe_code)]

mod anonfd;
mod arch;
mod checksums;
mod creds;
mod error;
mod files;
mod fown;
mod handoff;
mod images;
mod inetsk;
pub mod lazy;
mod locks;
mod memfd;
mod netns;
mod nlsk;
mod packetsk;
pub use netns::parse_external_veth;
mod ns;
mod pages;
mod pidfd;
mod remote;
mod seccomp;
mod shmem;
mod sysv;
mod task;
#[cfg(test)]
mod testsets;
mod threads;
mod timers;
mod tty;
mod unixsk;
mod vma;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crs_compel::{CpuPin, Release, RemoteAddr, SeizeOptions, SeizedTree, Tid};
use crs_images::codec::ImageWriter;
use crs_images::pb::pstree::Pstree_entry;
use crs_images::pb::stats::{Restore_stats_entry, Stats_entry};
use crs_sys::restore::{
    spawn_tree_as, ChildStep, NodeKind, RootParent, SpawnError, Spawned, TreeNode,
};
use tracing::{debug, info, info_span, warn};

pub use error::RestoreError;

use crate::images::{Images, Tree, PAGE, TASK_SIZE};
use crate::remote::Remote;

/// Length of the trampoline region: one code page and three scratch pages.
const TRAMPOLINE_LEN: usize = 4 * 4096;

/// How to restore (criu restore's options).
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// -D: the images directory.
    pub images_dir: PathBuf,
    /// -d: return once the tree runs; else wait for the root to exit.
    pub detach: bool,
    /// -j: the task may belong to crs's session (shell job).
    pub shell_job: bool,
    /// --pidfile: the root pid is written there.
    pub pidfile: Option<PathBuf>,
    /// -l: take the file locks of filelocks.img again (without it, locks are refused).
    pub file_locks: bool,
    /// --tcp-established: established TCP connections are restored (else refused).
    pub tcp_established: bool,
    /// --external values: `veth[NAME]:OUTSIDE[@BRIDGE]`, the outside peer of each veth
    /// device of the tree's network namespace (others are refused by the command line).
    pub external: Vec<String>,
    /// --tcp-close: every connection is restored closed (a socket shut down both ways);
    /// required when the images were dumped with it.
    pub tcp_close: bool,
    /// --ext-unix-sk (not supported yet: refused when set).
    pub ext_unix_sk: bool,
    /// --lazy-pages: private anonymous memory is filled on first touch and in the
    /// background by a lazy-pages server, after the tree runs (see [`lazy`]).
    pub lazy_pages: bool,
    /// The root is created as crs's sibling, a child of the program that ran crs
    /// (CLONE_PARENT; CRIU's RPC `rst_sibling`), so that program can wait for it. crs
    /// cannot wait for it then: implies `detach`.
    pub sibling: bool,
    /// `--empty-ns net`: the tree's own network namespace is made empty (lo down, nothing
    /// restored in it: the caller sets it up), as CRIU's option.
    pub empty_ns_net: bool,
    /// `--inherit-fd fd[N]:KEY`: crs's fd N stands for the file KEY names (see
    /// `files::inherited`), as (N, KEY).
    pub inherit_fds: Vec<(i32, String)>,
}

/// The points of a restore where the caller is told, and may stop it: CRIU's action
/// scripts that apply to a tree without namespaces of its own (CRIU's `setup-namespaces`
/// and `post-setup-namespaces` come only with namespaces, which crs does not restore;
/// `network-unlock` only with a network namespace).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestoreStage {
    /// The images are read and checked, nothing is created yet: a refusal ends the
    /// restore.
    PreRestore,
    /// Every process is rebuilt and none runs yet (nothing committed): a refusal kills the
    /// tree.
    PostRestore { root: Tid },
    /// Committed, about to be let go: a refusal is only logged, as CRIU does.
    PreResume,
    /// The tree runs: a refusal is only logged, as CRIU does.
    PostResume,
}

impl RestoreStage {
    /// CRIU's name for this action (`CRTOOLS_SCRIPT_ACTION`, `criu_notify.script`).
    pub fn action(self) -> &'static str {
        match self {
            RestoreStage::PreRestore => "pre-restore",
            RestoreStage::PostRestore { .. } => "post-restore",
            RestoreStage::PreResume => "pre-resume",
            RestoreStage::PostResume => "post-resume",
        }
    }
}

/// Why the caller stopped a restore at a [`RestoreStage`].
pub type NotifyError = Box<dyn std::error::Error + Send + Sync>;

/// Told of each [`RestoreStage`] in turn; an error stops the restore where
/// [`RestoreStage`] says it does.
pub type Notify<'a> = &'a dyn Fn(RestoreStage) -> Result<(), NotifyError>;

/// A finished restore.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The root task's pid.
    pub root_pid: i32,
    /// Without `detach`: the root's exit code, or 128 + the signal that killed it.
    pub exit_status: Option<i32>,
}

/// Timings and counts of one restore (the content of `stats-restore`).
#[derive(Clone, Debug, Default)]
pub struct RestoreStats {
    /// clone3 and the child's own setup.
    pub forking_time: Duration,
    /// Everything from reading the images to the task running.
    pub restore_time: Duration,
    /// Of which, checking the images against crs-checksums.
    pub verify_time: Duration,
    /// Pages copied into the task.
    pub pages_restored: u64,
    /// Of which, the time spent copying pages.
    pub pages_time: Duration,
    /// Syscalls injected into the task.
    pub injected_syscalls: u64,
}

impl RestoreStats {
    /// Adds what building processes counted (pages, their time, injected syscalls).
    fn add_built(&mut self, other: &RestoreStats) {
        self.pages_restored += other.pages_restored;
        self.pages_time += other.pages_time;
        self.injected_syscalls += other.injected_syscalls;
    }
}

/// Every image of a dump, read and checked before anything is created (against its
/// crs-checksums first, when it has one): the tree, its
/// processes' images, the objects they share (shared anonymous memory, memfds, SysV
/// segments), file locks, credentials and timers, the order that rebuilds its sessions and
/// groups, and how its unix sockets are made. [`load_and_check`] makes it; [`restore`]
/// builds from it.
#[derive(Debug)]
pub struct Loaded {
    tree: Tree,
    shm: BTreeMap<u64, shmem::Image>,
    memfds: memfd::Memfds,
    sysv: BTreeMap<u32, sysv::Segment>,
    file_locks: locks::FileLocks,
    /// The tree's own namespaces.
    ns: ns::Own,
    /// seccomp filters.
    seccomp: seccomp::Filters,
    /// How long checking crs-checksums took.
    verify_time: Duration,
}

impl Loaded {
    /// The root process's pid.
    pub fn root_pid(&self) -> Tid {
        self.tree.procs[0].pid
    }

    /// The live processes' pids, in pstree order (the root first).
    pub fn pids(&self) -> Vec<Tid> {
        self.tree.procs.iter().map(|p| p.pid).collect()
    }

    /// The zombies' pids.
    pub fn zombies(&self) -> Vec<Tid> {
        self.tree.zombies.iter().map(|z| z.pid).collect()
    }
}

/// Reads and checks every image of `opts.images_dir` as [`restore`] does before it creates
/// anything (it reads only the images: not whether pids are free or the files they name
/// are unchanged). An image crs refuses is an error that names it.
pub fn load_and_check(opts: &RestoreOptions) -> Result<Loaded, RestoreError> {
    if opts.ext_unix_sk {
        return Err(RestoreError::Unsupported {
            what: "--ext-unix-sk".into(),
        });
    }
    let dir = &opts.images_dir;
    // The checksums first: a changed byte is refused by name before any parser reads it.
    let t_verify = Instant::now();
    match checksums::verify(dir)? {
        checksums::Verified::Images { count, bytes } => {
            info!(count, bytes, elapsed = ?t_verify.elapsed(), "images match crs-checksums")
        }
        checksums::Verified::NoChecksums => {
            info!("no crs-checksums: the images are not checked (not a crs dump, or dumped with CRS_IMAGE_CHECKSUMS=0)")
        }
    }
    let verify_time = t_verify.elapsed();
    let mut tree = Images::load_tree(dir)?;
    let shm = shmem::load(dir, &tree.procs)?;
    let memfds = memfd::load(dir, &tree)?;
    let ns = ns::load(dir, &tree, opts.empty_ns_net)?;
    for p in &mut tree.procs {
        p.own_pid_ns = ns.pid;
    }
    let sysv = sysv::load(dir, &tree, ns.ipc.as_ref().map(|ipc| ipc.id))?;
    let file_locks = locks::load(dir, opts.file_locks, &tree)?;
    let seccomp = seccomp::load(dir, &tree)?;
    for p in &tree.procs {
        creds::check(p)?;
        timers::check(p)?;
    }
    plan_of(&tree, opts.shell_job)?;
    unixsk::check_tree(&tree)?;
    pidfd::check_tree(&tree)?;
    inetsk::check_tree(&tree, opts.tcp_established, opts.tcp_close)?;
    Ok(Loaded {
        tree,
        shm,
        memfds,
        sysv,
        file_locks,
        ns,
        seccomp,
        verify_time,
    })
}

/// Restores the process tree (processes possibly multi-threaded, zombies) dumped in
/// `opts.images_dir` and lets it run.
pub fn restore(opts: &RestoreOptions) -> Result<Restored, RestoreError> {
    restore_with_stats(opts).map(|(r, _)| r)
}

/// [`restore`], also returning the timings.
pub fn restore_with_stats(opts: &RestoreOptions) -> Result<(Restored, RestoreStats), RestoreError> {
    restore_notified(opts, &|_| Ok(()))
}

/// [`restore_with_stats`], telling `notify` of each [`RestoreStage`] it reaches.
pub fn restore_notified(
    opts: &RestoreOptions,
    notify: Notify<'_>,
) -> Result<(Restored, RestoreStats), RestoreError> {
    let r = restore_inner(opts, notify);
    // Whatever crs made is in place (committed) or gone (undone by the drops above).
    crs_compel::guard::finish();
    r
}

/// A fault point of the restore (see `crs_sys::fault`) at stage `what`.
fn stage(what: impl FnOnce() -> String) -> Result<(), RestoreError> {
    crs_sys::fault::point(|| format!("restore: {}", what()))?;
    Ok(())
}

/// Tells `notify` of `stage`: its refusal as an error.
fn tell(notify: Notify<'_>, stage: RestoreStage) -> Result<(), RestoreError> {
    notify(stage).map_err(|source| RestoreError::Notified {
        action: stage.action(),
        source,
    })
}

/// Tells `notify` of `stage` once nothing can be stopped any more: a refusal is logged.
fn tell_late(notify: Notify<'_>, stage: RestoreStage) {
    if let Err(e) = tell(notify, stage) {
        warn!(error = %e, "carrying on: the tree is restored");
    }
}

fn restore_inner(
    opts: &RestoreOptions,
    notify: Notify<'_>,
) -> Result<(Restored, RestoreStats), RestoreError> {
    let t0 = Instant::now();
    let Loaded {
        tree: loaded,
        shm: shm_images,
        memfds: memfd_images,
        sysv: sysv_images,
        file_locks,
        ns,
        seccomp,
        verify_time,
    } = load_and_check(opts)?;
    let images = &loaded.procs[0];
    let pid = images.pid;
    let _span = info_span!("restore", pid).entered();
    info!(dir = %opts.images_dir.display(), processes = loaded.procs.len(), zombies = loaded.zombies.len(), elapsed = ?t0.elapsed(), "images read and checked");
    // In a new pid namespace of the tree's own every pid is free.
    let free = |pid| if ns.pid { Ok(()) } else { preflight(pid) };
    for p in &loaded.procs {
        free(p.pid)?;
        files::check_sizes(p)?;
    }
    for z in &loaded.zombies {
        free(z.pid)?;
    }
    stage(|| "images read and checked".into())?;
    tell(notify, RestoreStage::PreRestore)?;
    let tramp = choose_trampoline(&loaded.procs)?;
    let mut plans = BTreeMap::new();
    // Files the caller passes in (--inherit-fd), each open in crs: dup'ed now, so a bad
    // fd fails before anything is created.
    let inherited = files::inherited(&loaded, &opts.inherit_fds)?;
    let mut inherited_fds = BTreeMap::new();
    for (&id, &fd) in &inherited {
        let dup = crs_sys::inherited::dup_inherited(fd)
            .map_err(|source| RestoreError::InheritFd { fd, source })?;
        inherited_fds.insert(id, dup);
    }
    let (shared, shared_ghosts) = files::shared(&loaded, &inherited.keys().copied().collect())?;
    let cttys = tty::controlling(&loaded)?;
    // Sessions whose processes will have a controlling terminal: those whose leader takes
    // a pty of the images, and a shell job's (crs's session, crs's terminal).
    let mut ctty_sessions: BTreeSet<Tid> = cttys.keys().copied().collect();
    if opts.shell_job && images.pstree.sid() != images.pstree.pid() {
        ctty_sessions.insert(images.pstree.sid() as Tid);
    }
    let mut ghosts = vec![shared_ghosts];
    for p in &loaded.procs {
        let (plan, g) = files::child_plan(
            p,
            opts.shell_job,
            &shared,
            &ctty_sessions,
            tramp,
            TRAMPOLINE_LEN,
        )?;
        plans.insert(p.pid, plan);
        ghosts.push(g);
    }
    // The ghost files of deleted files that are mapped or run: their mappings and exe
    // links are made while the processes are built, after which every ghost file goes
    // (the tasks hold them deleted).
    ghosts.push(files::mapped_ghosts(&loaded, &ghosts)?);
    let nodes = tree_nodes(&loaded, opts.shell_job, plans, shared.creates, cttys)?;
    for n in nodes.iter().filter(|n| matches!(n.kind, NodeKind::Helper)) {
        free(n.pid)?;
    }
    let has_terminal = tty::connect(images)?;
    // The tree's ptys exist before it does: its session leaders take them as their
    // controlling terminals while the tree is created.
    let mut terminals = tty::Made::create(&loaded)?;
    stage(|| "creating the tree".into())?;
    // From here on what crs makes is the guardian's to remove if crs dies.
    crs_compel::guard::record(&crs_compel::guard::Record::Restore);

    // crs and the tasks it drives on one CPU per driving thread (see `crs_compel::pin`):
    // the tree is created on this thread's CPU, each part of it is then built on its
    // builder's. The tasks get crs's mask back at release. The page-fill pool is started
    // first, so its threads are not pinned.
    rayon::current_num_threads();
    let cpus = crs_compel::allowed_cpus();
    let pin = CpuPin::here();
    let t_fork = Instant::now();
    let parent = if opts.sibling {
        RootParent::CrsParent
    } else {
        RootParent::Crs
    };
    let time_offsets = ns.time_offsets()?;
    let spawned = spawn_tree_as(&nodes, parent, ns.clone_flags(), time_offsets.as_deref())
        .map_err(|source| match source {
            SpawnError::Clone(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                RestoreError::PidTaken { pid }
            }
            SpawnError::Setup {
                step: ChildStep::Clone,
                index,
                errno: libc::EEXIST,
                ..
            } => RestoreError::PidTaken {
                pid: nodes.get(index as usize).map_or(pid, |n| n.pid),
            },
            source => RestoreError::Spawn { pid, source },
        })?;
    let root_host = spawned.pid;
    let mut guard = TaskGuard(Some(spawned));
    // From here on crs knows each task by its pid in crs's namespace (`HostPid`).
    if ns.pid {
        ns::find_hosts(root_host, &loaded)?;
    }

    // Zombies are never held (nothing puts their mask back at release): they get crs's
    // mask now, as they would have had without the pin.
    if let Some(p) = &pin {
        for z in &loaded.zombies {
            if let Err(e) = crs_compel::pin::set_mask(z.host.get(), p.saved()) {
                warn!(pid = z.pid, error = %e, "setting the CPU mask of a zombie");
            }
        }
    }
    terminals.after_tree()?;
    let forking_time = t_fork.elapsed();
    debug!(?forking_time, "tree created");

    let mut stats = RestoreStats {
        forking_time,
        verify_time,
        ..RestoreStats::default()
    };
    // Objects crs makes once for the whole tree, then maps or hands to each process that
    // had them: shared anonymous memory, memfd inodes, SysV segments (removed again if the
    // restore fails before `commit`), sockets and pidfds made in crs (see `handoff`). crs's fds on
    // them close when every process is built.
    let mut crs_files = handoff::CrsFiles::default();
    crs_files.by_id.append(&mut terminals.by_id);
    crs_files.by_id.append(&mut inherited_fds);
    stage(|| "making the shared objects".into())?;
    let (objects, shm_pages) = shmem::Objects::create(&shm_images)?;
    let (memfds, memfd_pages) = memfd::Objects::create(&memfd_images, &mut crs_files)?;
    ns.set_up(root_host, &opts.external)?;
    let own_ipc = ns.ipc.is_some().then_some(root_host);
    let (segments, sysv_pages) = sysv::Segments::create(&sysv_images, own_ipc)?;
    ns.finish(root_host)?;
    unixsk::create_in_crs(&loaded, &mut crs_files)?;
    inetsk::create_in_crs(
        &loaded,
        ns.net.is_some().then_some(root_host),
        opts.tcp_close,
        &mut crs_files,
    )?;
    nlsk::create_in_crs(
        &loaded,
        ns.net.is_some().then_some(root_host),
        &mut crs_files,
    )?;
    packetsk::create_in_crs(
        &loaded,
        ns.net.is_some().then_some(root_host),
        &mut crs_files,
    )?;
    anonfd::create_in_crs(&loaded, &mut crs_files)?;
    // Every process and zombie exists now: pidfds of them, and of gone ones.
    pidfd::create_in_crs(&loaded, &mut crs_files)?;
    stats.pages_restored += shm_pages + memfd_pages + sysv_pages;
    let sysv_sizes = sysv_images
        .iter()
        .map(|(&id, s)| (id, s.entry.size()))
        .collect();
    let made = Made {
        shmem: &objects,
        memfds: &memfds,
        sysv_sizes: &sysv_sizes,
        seccomp: &seccomp,
        crs_files: &crs_files,
        fifos_filled: Default::default(),
        lazy: if opts.lazy_pages {
            Some(lazy::Link::start(Path::new("/proc/self/exe"))?)
        } else {
            None
        },
    };
    let parts = partition(
        &loaded.procs,
        cpus.len().min(loaded.procs.len()).clamp(1, 8),
    );
    let built = build_parts(
        &parts,
        tramp,
        &made,
        &file_locks,
        &cpus,
        pin.as_ref(),
        Ending {
            finish: || {
                // Last chance to stop: nothing is committed yet.
                tell(notify, RestoreStage::PostRestore { root: root_host })?;
                // Every mapping and exe link is made: the ghost files go before the tree runs.
                drop(ghosts);
                segments.commit()?;
                if has_terminal {
                    tty::make_foreground(images, root_host)?;
                }
                write_pidfile(opts.pidfile.as_deref(), root_host)?;
                queue_stop_signals(&loaded)
            },
            resume: || tell_late(notify, RestoreStage::PreResume),
        },
    );
    drop(pin);
    let built = match built {
        Ok(b) => b,
        Err(e) => {
            drop(guard);
            return Err(e);
        }
    };
    stats.add_built(&built);
    stats.restore_time = t0.elapsed();
    let spawned = guard.disarm();
    crs_compel::guard::finish();
    info!(restore_time = ?stats.restore_time, pages = stats.pages_restored, "restored, running");
    write_stats(&opts.images_dir, &stats);
    inetsk::unlock(&loaded, ns.net.is_some());
    tell_late(notify, RestoreStage::PostResume);
    if opts.detach || opts.sibling {
        // The task stays our child until we exit (or is our parent's); its pidfd is
        // closed here.
        drop(spawned);
        return Ok((
            Restored {
                root_pid: root_host,
                exit_status: None,
            },
            stats,
        ));
    }
    let status = crs_sys::restore::reap(root_host).map_err(|source| RestoreError::Wait {
        pid: root_host,
        source,
    })?;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((
        Restored {
            root_pid: root_host,
            exit_status: Some(code),
        },
        stats,
    ))
}

/// Kills and reaps the new task when dropped armed.
struct TaskGuard(Option<Spawned>);

impl TaskGuard {
    fn disarm(&mut self) -> Spawned {
        self.0.take().expect("armed")
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.kill();
        }
    }
}

/// The processes to create: the dump's in pstree order (`nodes[i]` is `loaded.entries[i]`,
/// the root first), then the helpers; each with its steps: who creates whom and when,
/// who starts a session, who makes or joins which process group, who shares its parent's
/// fd table (see [`plan_tree`]).
fn tree_nodes(
    loaded: &Tree,
    shell_job: bool,
    mut plans: BTreeMap<Tid, crs_sys::restore::ChildPlan>,
    mut creates: BTreeMap<Tid, crs_sys::restore::SharedCreates>,
    mut cttys: BTreeMap<Tid, crs_sys::restore::Ctty>,
) -> Result<Vec<TreeNode>, RestoreError> {
    let planned = plan_of(loaded, shell_job)?;
    for p in &planned {
        if p.kind == PlanKind::Helper {
            debug!(
                pid = p.pid,
                sid = p.sid,
                "helper for a gone group or session leader"
            );
        }
        if p.share_files {
            debug!(pid = p.pid, "shares its parent's fd table (CLONE_FILES)");
        }
    }
    Ok(planned
        .into_iter()
        .map(|p| TreeNode {
            pid: p.pid,
            steps: p.steps,
            kind: match p.kind {
                PlanKind::Live => {
                    NodeKind::Live(plans.remove(&p.pid).expect("a plan per live process"))
                }
                PlanKind::Zombie(wait_status) => NodeKind::Zombie { wait_status },
                PlanKind::Helper => NodeKind::Helper,
            },
            creates: match p.kind {
                PlanKind::Helper => Default::default(),
                _ => creates.remove(&p.pid).unwrap_or_default(),
            },
            share_files: p.share_files,
            parent_death_signal: p.parent_death_signal,
            ctty: match p.kind {
                PlanKind::Live => cttys.remove(&p.pid),
                _ => None,
            },
        })
        .collect())
}

/// The restore plan of the tree (see [`plan_tree`]); a tree it cannot rebuild is refused
/// naming pstree.img.
fn plan_of(tree: &Tree, shell_job: bool) -> Result<Vec<Planned>, RestoreError> {
    let zombies: BTreeMap<Tid, i32> = tree
        .zombies
        .iter()
        .map(|z| (z.pid, z.wait_status))
        .collect();
    let files_ids: BTreeMap<Tid, u32> = tree.procs.iter().map(|p| (p.pid, p.files_id)).collect();
    plan_tree(&tree.entries, &zombies, &files_ids, shell_job).map_err(|e| match e {
        RestoreError::Unsupported { what } => RestoreError::Unsupported {
            what: format!("pstree.img: {what}"),
        },
        e => e,
    })
}

/// What a planned process is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PlanKind {
    Live,
    Zombie(i32),
    /// Holds the pid of a gone group or session leader while the others join, then exits
    /// and is reaped by its parent before the tree runs (CRIU's helper tasks).
    Helper,
}

/// One process of the restore plan.
#[derive(Clone, Debug)]
struct Planned {
    pid: Tid,
    /// Its session and group once the tree is built.
    sid: Tid,
    pgid: Tid,
    /// The node that creates it (None: the root, created by crs).
    parent: Option<usize>,
    kind: PlanKind,
    /// For a session leader that forks children before its setsid: the session they are
    /// in (it is born in that session).
    born: Option<Tid>,
    /// Created before its parent's setsid (in the parent's birth session).
    early: bool,
    /// Created with CLONE_FILES (the same fd table as its parent).
    share_files: bool,
    parent_death_signal: bool,
    /// The helper children it creates first in its birth session (early) or its own.
    helpers: Vec<usize>,
    /// Its setpgid waits until this child (whose subtree holds the group's leader) exists.
    join_after: Option<usize>,
    /// A session helper it creates: it is a subreaper while creating the tree.
    subreaper: bool,
    steps: Vec<crs_sys::restore::Step>,
}

fn unsupported(what: String) -> RestoreError {
    RestoreError::Unsupported { what }
}

/// The restore plan of a process tree (CRIU's rules, pstree.c/cr-restore.c):
/// - a process of another session than its parent, not a leader, was forked before one of
///   its ancestors (a leader) called setsid: that ancestor forks it (its subtree) before its
///   own setsid, and so on up to the session's leader;
/// - a session whose leader is gone: a helper with the leader's pid, created by the dumped
///   parent of its members (a subreaper while it creates the tree), calls setsid and forks
///   them, then exits: they come back to that parent;
/// - a process group whose leader is gone (not in the dump): a helper with the leader's pid,
///   created by the nearest common ancestor of the members before them, calls setpgid and
///   exits; it is reaped once every member joined;
/// - a member joins its group after the group's leader exists: siblings are created in an
///   order where the subtree holding a leader comes before the subtrees of the members (a
///   member above its leader joins after creating the child it descends from);
/// - a process whose fd table is its parent's (same `files_id`) is created with
///   CLONE_FILES; another sharing is refused.
///
/// The plan is then checked by simulating it (sessions, groups, setsid/setpgid rules of
/// the kernel): every process ends in its dumped session and group, or it is refused.
fn plan_tree(
    entries: &[Pstree_entry],
    zombies: &BTreeMap<Tid, i32>,
    files_ids: &BTreeMap<Tid, u32>,
    shell_job: bool,
) -> Result<Vec<Planned>, RestoreError> {
    use crs_sys::restore::Step;
    let index: BTreeMap<Tid, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.pid() as Tid, i))
        .collect();
    let mut ps: Vec<Planned> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let pid = e.pid() as Tid;
            Planned {
                pid,
                sid: e.sid() as Tid,
                pgid: e.pgid() as Tid,
                parent: (i > 0).then(|| index[&(e.ppid() as Tid)]),
                kind: zombies
                    .get(&pid)
                    .map_or(PlanKind::Live, |&w| PlanKind::Zombie(w)),
                born: None,
                early: false,
                share_files: false,
                parent_death_signal: true,
                helpers: Vec::new(),
                join_after: None,
                subreaper: false,
                steps: Vec::new(),
            }
        })
        .collect();
    let helper = |pid: Tid, sid: Tid, parent: usize| Planned {
        pid,
        sid,
        pgid: pid,
        parent: Some(parent),
        kind: PlanKind::Helper,
        born: None,
        early: false,
        share_files: false,
        parent_death_signal: true,
        helpers: Vec::new(),
        join_after: None,
        subreaper: false,
        steps: Vec::new(),
    };
    let leads_session = |p: &Planned| p.sid == p.pid;

    // Sessions: where each process is born.
    let mut session_helpers: BTreeMap<Tid, usize> = BTreeMap::new();
    for i in 1..entries.len() {
        if leads_session(&ps[i]) {
            continue;
        }
        let s = ps[i].sid;
        let mut cur = i;
        loop {
            let x = ps[cur].parent.expect("not the root");
            if ps[x].sid == s {
                break;
            }
            if leads_session(&ps[x]) && x != 0 && ps[x].kind != PlanKind::Helper {
                match ps[x].born {
                    Some(b) if b != s => {
                        return Err(unsupported(format!(
                            "process {} forked children of sessions {b} and {s} before its setsid",
                            ps[x].pid
                        )))
                    }
                    _ => ps[x].born = Some(s),
                }
                ps[cur].early = true;
                cur = x;
                continue;
            }
            // No ancestor is in session s when it forks: its leader is gone (a helper
            // leads it), or elsewhere in the tree (refused).
            if let Some(&l) = index.get(&s) {
                return Err(unsupported(format!(
                    "process {} of session {s} whose leader {} is not its ancestor",
                    ps[cur].pid, ps[l].pid
                )));
            }
            if ps[cur].early {
                return Err(unsupported(format!(
                    "process {} born in session {s} whose leader is gone, before a setsid",
                    ps[cur].pid
                )));
            }
            let h = match session_helpers.get(&s) {
                Some(&h) if ps[h].parent == Some(x) => h,
                Some(&h) => {
                    let other = ps[h].parent.expect("a helper has a parent");
                    return Err(unsupported(format!(
                        "session {s} whose leader is gone has members under {} and {}",
                        ps[other].pid, ps[x].pid
                    )));
                }
                None => {
                    ps.push(helper(s, s, x));
                    session_helpers.insert(s, ps.len() - 1);
                    ps[x].subreaper = true;
                    ps.len() - 1
                }
            };
            ps[cur].parent = Some(h);
            ps[cur].parent_death_signal = false;
            break;
        }
    }

    // Groups: who founds each one.
    let root_keeps_group = ps[0].pgid != ps[0].pid;
    let mut group_helpers: BTreeMap<Tid, usize> = BTreeMap::new();
    let mut founders: BTreeMap<Tid, usize> = BTreeMap::new();
    for (i, p) in ps.iter().enumerate() {
        if p.pgid == p.pid {
            founders.insert(p.pid, i);
        }
    }
    for i in 0..entries.len() {
        let g = ps[i].pgid;
        if g == ps[i].pid || founders.contains_key(&g) || (root_keeps_group && g == ps[0].pgid) {
            if let (Some(&f), false) = (founders.get(&g), g == ps[i].pid) {
                if ps[f].sid != ps[i].sid {
                    return Err(unsupported(format!(
                        "process {} of session {} in group {g} of session {}",
                        ps[i].pid, ps[i].sid, ps[f].sid
                    )));
                }
            }
            continue;
        }
        if let Some(&p) = index.get(&g) {
            return Err(unsupported(format!(
                "process {} in group {g} whose leader went to group {}",
                ps[i].pid, ps[p].pgid
            )));
        }
        if group_helpers.contains_key(&g) {
            continue;
        }
        // A helper with the leader's pid, forked by the nearest common ancestor of the
        // members while it is in their session.
        let members: Vec<usize> = (0..entries.len()).filter(|&j| ps[j].pgid == g).collect();
        let a = members
            .iter()
            .skip(1)
            .fold(members[0], |a, &m| nearest_common(&ps, a, m));
        let s = ps[i].sid;
        let early = if ps[a].sid == s {
            false
        } else if leads_session(&ps[a]) && a != 0 && born_session(&ps, a) == Some(s) {
            ps[a].born = Some(s);
            true
        } else {
            return Err(unsupported(format!(
                "group {g} whose leader is gone: no process of its session {s} above its members"
            )));
        };
        let mut h = helper(g, s, a);
        h.pgid = g;
        h.early = early;
        ps.push(h);
        let h = ps.len() - 1;
        ps[a].helpers.push(h);
        group_helpers.insert(g, h);
        founders.insert(g, h);
    }

    // fd tables shared with CLONE_FILES: with the parent only.
    let mut by_files: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, p) in ps.iter().enumerate().take(entries.len()) {
        if let Some(&f) = files_ids.get(&p.pid) {
            by_files.entry(f).or_default().push(i);
        }
    }
    for (files_id, sharing) in by_files.iter().filter(|(_, v)| v.len() > 1) {
        for &m in &sharing[1..] {
            let parent = ps[m].parent.expect("the root comes first");
            if !sharing.contains(&parent) {
                let (a, b) = (ps[sharing[0]].pid, ps[m].pid);
                return Err(unsupported(format!(
                    "processes {a} and {b} share fd table {files_id} (ids-{a}.img, \
                     ids-{b}.img), {b} not as a child of the other"
                )));
            }
            ps[m].share_files = true;
        }
    }

    // Joins: the founder first.
    let mut kids: Vec<Vec<usize>> = vec![Vec::new(); ps.len()];
    for (i, p) in ps.iter().enumerate() {
        if let Some(x) = p.parent {
            if !ps[x].helpers.contains(&i) {
                kids[x].push(i);
            }
        }
    }
    // Sibling -> the siblings that must be created before it.
    let mut before: BTreeMap<usize, BTreeSet<usize>> = BTreeMap::new();
    for i in 0..entries.len() {
        let g = ps[i].pgid;
        let Some(&f) = founders.get(&g) else { continue };
        // A group helper is forked first by the members' common ancestor.
        if f == i || group_helpers.get(&g) == Some(&f) {
            continue;
        }
        let a = nearest_common(&ps, f, i);
        if a == f {
            continue;
        }
        let towards_f = child_towards(&ps, a, f);
        if a == i {
            ps[i].join_after = Some(towards_f);
            continue;
        }
        let towards_i = child_towards(&ps, a, i);
        if towards_f != towards_i {
            before.entry(towards_i).or_default().insert(towards_f);
        }
    }
    let mut order: Vec<Vec<usize>> = vec![Vec::new(); ps.len()];
    for x in 0..ps.len() {
        order[x] = order_children(&ps, &kids[x], &before)?;
    }

    // Steps.
    for x in 0..ps.len() {
        let mut steps = Vec::new();
        if ps[x].subreaper {
            steps.push(Step::Subreaper(true));
        }
        let early_helpers: Vec<usize> = ps[x]
            .helpers
            .iter()
            .copied()
            .filter(|&h| ps[h].early)
            .collect();
        let late_helpers: Vec<usize> = ps[x]
            .helpers
            .iter()
            .copied()
            .filter(|&h| !ps[h].early)
            .collect();
        let early: Vec<usize> = order[x].iter().copied().filter(|&c| ps[c].early).collect();
        let late: Vec<usize> = order[x].iter().copied().filter(|&c| !ps[c].early).collect();
        if ps[x].kind == PlanKind::Helper {
            if ps[x].sid == ps[x].pid {
                steps.push(Step::Setsid);
            } else {
                steps.push(Step::Setpgid(ps[x].pid));
            }
            steps.extend(late_helpers.iter().map(|&c| Step::Child(c)));
            steps.extend(late.iter().map(|&c| Step::Child(c)));
        } else if leads_session(&ps[x]) {
            if !early.is_empty() || !early_helpers.is_empty() {
                steps.push(Step::Creates);
                steps.extend(early_helpers.iter().map(|&c| Step::Child(c)));
                steps.extend(early.iter().map(|&c| Step::Child(c)));
                steps.push(Step::Setsid);
            } else {
                steps.push(Step::Setsid);
                steps.push(Step::Creates);
            }
            steps.extend(late_helpers.iter().map(|&c| Step::Child(c)));
            steps.extend(late.iter().map(|&c| Step::Child(c)));
        } else {
            let g = ps[x].pgid;
            if g == ps[x].pid {
                steps.push(Step::Setpgid(g));
            }
            steps.push(Step::Creates);
            steps.extend(late_helpers.iter().map(|&c| Step::Child(c)));
            let join_at = steps.len()
                + ps[x].join_after.map_or(0, |c| {
                    late.iter().position(|&k| k == c).expect("a late child") + 1
                });
            steps.extend(late.iter().map(|&c| Step::Child(c)));
            if g != ps[x].pid {
                steps.insert(join_at, Step::Setpgid(g));
            }
        }
        steps.extend(
            ps[x]
                .helpers
                .iter()
                .chain(order[x].iter().filter(|&&c| ps[c].kind == PlanKind::Helper))
                .map(|&h| Step::Reap(h)),
        );
        if ps[x].subreaper {
            steps.push(Step::Subreaper(false));
        }
        ps[x].steps = steps;
    }
    simulate(&mut ps, entries, shell_job)?;
    Ok(ps)
}

/// The session process `i` is born in, as far as the plan knows it (None: crs's).
fn born_session(ps: &[Planned], i: usize) -> Option<Tid> {
    if let Some(b) = ps[i].born {
        return Some(b);
    }
    let p = ps[i].parent?;
    if ps[i].early {
        born_session(ps, p)
    } else {
        Some(ps[p].sid)
    }
}

fn depth(ps: &[Planned], mut i: usize) -> usize {
    let mut d = 0;
    while let Some(p) = ps[i].parent {
        i = p;
        d += 1;
    }
    d
}

/// The nearest common ancestor of `a` and `b` in the creation tree (one of them if it is
/// above the other).
fn nearest_common(ps: &[Planned], mut a: usize, mut b: usize) -> usize {
    let (mut da, mut db) = (depth(ps, a), depth(ps, b));
    while da > db {
        a = ps[a].parent.expect("deeper");
        da -= 1;
    }
    while db > da {
        b = ps[b].parent.expect("deeper");
        db -= 1;
    }
    while a != b {
        a = ps[a].parent.expect("common root");
        b = ps[b].parent.expect("common root");
    }
    a
}

/// The child of `a` on the way down to its descendant `d`.
fn child_towards(ps: &[Planned], a: usize, mut d: usize) -> usize {
    while ps[d].parent != Some(a) {
        d = ps[d].parent.expect("a descendant");
    }
    d
}

/// `kids` in pstree order, except that a sibling holding a group leader comes before the
/// siblings holding members of that group (`before`: sibling -> siblings to create first).
fn order_children(
    ps: &[Planned],
    kids: &[usize],
    before: &BTreeMap<usize, BTreeSet<usize>>,
) -> Result<Vec<usize>, RestoreError> {
    let pos: BTreeMap<usize, usize> = kids.iter().enumerate().map(|(p, &k)| (k, p)).collect();
    let mut waiting: BTreeMap<usize, usize> = BTreeMap::new();
    let mut unblocks: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &k in kids {
        let firsts = before.get(&k).into_iter().flatten();
        for &f in firsts.filter(|f| pos.contains_key(f)) {
            *waiting.entry(k).or_default() += 1;
            unblocks.entry(f).or_default().push(k);
        }
    }
    let mut ready: BTreeSet<(usize, usize)> = kids
        .iter()
        .filter(|k| !waiting.contains_key(k))
        .map(|&k| (pos[&k], k))
        .collect();
    let mut out = Vec::with_capacity(kids.len());
    while let Some((_, k)) = ready.pop_first() {
        out.push(k);
        for &t in unblocks.get(&k).into_iter().flatten() {
            let w = waiting.get_mut(&t).expect("counted");
            *w -= 1;
            if *w == 0 {
                ready.insert((pos[&t], t));
            }
        }
    }
    if out.len() < kids.len() {
        let pids: Vec<Tid> = kids
            .iter()
            .filter(|k| !out.contains(k))
            .map(|&k| ps[k].pid)
            .collect();
        return Err(unsupported(format!(
            "process groups whose leaders and members cross between the subtrees of {pids:?}"
        )));
    }
    Ok(out)
}

/// Runs the plan on a model of the kernel's sessions and groups: checks that every setsid
/// and setpgid would succeed and that every process ends in its dumped session and group;
/// drops the setpgid calls that change nothing.
fn simulate(
    ps: &mut [Planned],
    entries: &[Pstree_entry],
    shell_job: bool,
) -> Result<(), RestoreError> {
    use crs_sys::restore::Step;
    /// crs's own session and group (not a pid of the tree).
    const CRS: Tid = -1;
    /// The processes that exist (zombies and helpers until reaped): pid -> (sid, pgid),
    /// with the member counts of each (sid, pgid) group and of each pgid.
    #[derive(Default)]
    struct Model {
        procs: BTreeMap<Tid, (Tid, Tid)>,
        reaped: BTreeSet<Tid>,
        groups: BTreeMap<(Tid, Tid), usize>,
        pgids: BTreeMap<Tid, usize>,
    }
    impl Model {
        fn set(&mut self, pid: Tid, ids: Option<(Tid, Tid)>) {
            if let Some((sid, pgid)) = self.procs.remove(&pid) {
                for n in [self.groups.get_mut(&(sid, pgid)), self.pgids.get_mut(&pgid)]
                    .into_iter()
                    .flatten()
                {
                    *n -= 1;
                }
            }
            if let Some((sid, pgid)) = ids {
                self.procs.insert(pid, (sid, pgid));
                *self.groups.entry((sid, pgid)).or_default() += 1;
                *self.pgids.entry(pgid).or_default() += 1;
            }
        }
    }
    fn run(
        ps: &mut [Planned],
        x: usize,
        m: &mut Model,
        external: (Tid, Tid),
    ) -> Result<(), RestoreError> {
        let pid = ps[x].pid;
        let steps = std::mem::take(&mut ps[x].steps);
        let mut kept = Vec::with_capacity(steps.len());
        let bad = |what: String| unsupported(format!("restore plan of process {pid}: {what}"));
        for step in steps {
            let (sid, pgid) = m.procs[&pid];
            match step {
                Step::Setsid => {
                    if m.pgids.get(&pid).is_some_and(|&n| n > 0) {
                        return Err(bad("setsid of a group leader".into()));
                    }
                    m.set(pid, Some((pid, pid)));
                }
                Step::Setpgid(g) => {
                    if pgid == g {
                        continue;
                    }
                    if sid == pid {
                        return Err(bad("setpgid of a session leader".into()));
                    }
                    let there = g == pid
                        || external == (sid, g)
                        || m.groups.get(&(sid, g)).is_some_and(|&n| n > 0);
                    if !there {
                        return Err(bad(format!("joins group {g}, absent from its session")));
                    }
                    m.set(pid, Some((sid, g)));
                }
                Step::Child(c) => {
                    m.set(ps[c].pid, Some((sid, pgid)));
                    run(ps, c, m, external)?;
                }
                Step::Reap(c) => {
                    let h = ps[c].pid;
                    if !m.procs.contains_key(&h) {
                        return Err(bad(format!("reaps {h}, not its child")));
                    }
                    m.set(h, None);
                    m.reaped.insert(h);
                }
                Step::Creates | Step::Subreaper(_) => {}
            }
            kept.push(step);
        }
        ps[x].steps = kept;
        Ok(())
    }
    let root = &entries[0];
    // A shell job's root starts in crs's session and group (its dumped ones unless it led
    // them).
    let external = if root.sid() != root.pid() && shell_job {
        let pgid = if root.pgid() != root.pid() {
            root.pgid() as Tid
        } else {
            CRS
        };
        (root.sid() as Tid, pgid)
    } else {
        (CRS, CRS)
    };
    let mut m = Model::default();
    m.set(ps[0].pid, Some(external));
    run(ps, 0, &mut m, external)?;
    for (i, p) in ps.iter().enumerate() {
        let ids = m.procs.get(&p.pid);
        match (p.kind, ids) {
            (PlanKind::Helper, None) if m.reaped.contains(&p.pid) => {}
            (PlanKind::Helper, _) => {
                return Err(unsupported(format!(
                    "restore plan: helper {} is not reaped",
                    p.pid
                )))
            }
            (_, Some(&ids)) if ids == (p.sid, p.pgid) => {}
            // A root of crs's session without --shell-job is refused later.
            (_, Some(_)) if i == 0 && !shell_job => {}
            _ => {
                return Err(unsupported(format!(
                    "process {} of session {} and group {}: no restore order gives it both",
                    p.pid, p.sid, p.pgid
                )))
            }
        }
    }
    Ok(())
}

fn preflight(pid: Tid) -> Result<(), RestoreError> {
    let max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX);
    if pid as u64 >= max {
        return Err(RestoreError::PidMax { pid, max });
    }
    if Path::new(&format!("/proc/{pid}")).exists() {
        return Err(RestoreError::PidTaken { pid });
    }
    Ok(())
}

/// An address range free in crs now (so in the new task, a copy of crs) and in the dumped
/// layout, with a guard page on each side, above 4 GiB when possible.
fn choose_trampoline(procs: &[Images]) -> Result<u64, RestoreError> {
    let own = std::fs::read("/proc/self/maps").map_err(|source| RestoreError::Maps {
        pid: std::process::id() as Tid,
        source,
    })?;
    let own = crs_proc::parse_maps(&own).map_err(|e| RestoreError::Maps {
        pid: std::process::id() as Tid,
        source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    })?;
    let mut used: Vec<(u64, u64)> = own.iter().map(|m| (m.start, m.end)).collect();
    used.extend(
        procs
            .iter()
            .flat_map(|p| p.vmas.iter().map(|v| (v.start, v.end))),
    );
    used.retain(|&(s, _)| s < TASK_SIZE);
    used.sort_unstable();
    let need = TRAMPOLINE_LEN as u64 + 2 * PAGE;
    for floor in [1u64 << 32, 1 << 24] {
        let mut at = floor;
        for &(s, e) in used.iter().chain([(TASK_SIZE, TASK_SIZE)].iter()) {
            if s >= at.saturating_add(need) {
                return Ok(at + PAGE);
            }
            at = at.max(e);
        }
    }
    Err(RestoreError::NoTrampolineRoom)
}

/// Stopped tasks get their stop signal last: pending while they are held, it stops them
/// as soon as they are let go, before they run a single instruction.
fn queue_stop_signals(loaded: &Tree) -> Result<(), RestoreError> {
    for p in &loaded.procs {
        let Some(tc) = p.core.tc.as_ref() else {
            continue;
        };
        if tc.task_state() != images::TASK_STOPPED {
            continue;
        }
        let sig = match tc.stop_signo() {
            0 => libc::SIGSTOP,
            s => s as i32,
        };
        let sig = nix::sys::signal::Signal::try_from(sig).expect("checked at load");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.host.get()), sig).map_err(|e| {
            RestoreError::Syscall {
                pid: p.pid,
                what: format!("kill({sig}) to leave the task stopped as it was"),
                errno: e as i64,
            }
        })?;
    }
    Ok(())
}

/// What crs made for the whole tree before building its processes.
struct Made<'a> {
    /// Shared anonymous memory objects.
    shmem: &'a shmem::Objects,
    /// memfd inodes.
    memfds: &'a memfd::Objects,
    /// The dumped size of each SysV segment, by id.
    sysv_sizes: &'a BTreeMap<u32, u64>,
    /// seccomp filters.
    seccomp: &'a seccomp::Filters,
    /// Files handed to the tasks that hold them.
    crs_files: &'a handoff::CrsFiles,
    /// FIFOs whose saved bytes are queued already.
    fifos_filled: anonfd::FifosFilled,
    /// --lazy-pages: the lazy-pages server each process's lazy memory goes to.
    lazy: Option<lazy::Link>,
}

/// Splits the processes into `n` parts (one per CPU crs may use, at most one per process:
/// each part is held and built by its own thread, because ptrace binds a tracee to the
/// thread that seized it) of about equal work (pages to fill, plus a fixed
/// cost per process for its injected syscalls), largest first onto the lightest part;
/// within a part, in pstree order. Processes that share one fd table (CLONE_FILES) go to
/// the same part: the fds one opens and closes while it is built (those of its mappings,
/// say) are in the others' table too, so they are built one after the other. Parts are
/// never empty.
fn partition(procs: &[Images], n: usize) -> Vec<Vec<&Images>> {
    const PER_PROCESS: u64 = 256;
    let work = |p: &Images| p.runs.iter().map(|r| r.len / PAGE).sum::<u64>() + PER_PROCESS;
    // Units placed whole: the processes of one fd table.
    let mut units: BTreeMap<u32, (u64, Vec<&Images>)> = BTreeMap::new();
    for p in procs {
        let unit = units.entry(p.files_id).or_default();
        unit.0 += work(p);
        unit.1.push(p);
    }
    let mut order: Vec<(u64, Vec<&Images>)> = units.into_values().collect();
    order.sort_by_key(|u| std::cmp::Reverse(u.0));
    let mut parts: Vec<(u64, Vec<&Images>)> = vec![(0, Vec::new()); n.max(1)];
    for (w, unit) in order {
        let lightest = parts
            .iter_mut()
            .min_by_key(|(w, _)| *w)
            .expect("at least one part");
        lightest.0 += w;
        lightest.1.extend(unit);
    }
    let pos: BTreeMap<Tid, usize> = procs.iter().enumerate().map(|(i, p)| (p.pid, i)).collect();
    parts
        .into_iter()
        .map(|(_, mut v)| {
            v.sort_by_key(|p| pos[&p.pid]);
            v
        })
        .filter(|v| !v.is_empty())
        .collect()
}

/// What a builder is told once every part reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    /// Every process is built: give each its final state (still held).
    Finalize,
    /// Everything is final and committed: let the tree run.
    Detach,
    /// Something failed: kill the tree.
    Kill,
}

/// Builds every process, each part seized and built by its own thread (the first part by
/// the calling thread); once every part is built, each part finalizes its processes
/// (their final registers: see [`finalize`]); then runs `finish` while every process is
/// still held, and releases them all: detached when every step succeeded, else killed.
///
/// Until the last process is final no process is: a crs that dies before leaves every
/// thread parked in its trampoline (or compel's code), where the kernel's detach lets it
/// spin until the guardian kills the tree, rather than running restored code among half
/// built peers.
fn build_parts(
    parts: &[Vec<&Images>],
    tramp: u64,
    made: &Made<'_>,
    file_locks: &locks::FileLocks,
    cpus: &[usize],
    pin: Option<&CpuPin>,
    ending: Ending<impl FnOnce() -> Result<(), RestoreError>, impl FnOnce()>,
) -> Result<RestoreStats, RestoreError> {
    let Ending { finish, resume } = ending;
    // Part k is built on the k-th of `cpus` after the calling thread's (which is pinned
    // already when `pin` is given), with its tasks pinned there too.
    let cpu_of = |k: usize| {
        let p = pin?;
        let first = cpus.iter().position(|&c| c == p.cpu()).unwrap_or(0);
        Some(*cpus.get((first + k) % cpus.len().max(1))?)
    };
    let restore_to = pin.map(|p| *p.saved());
    let build_part = |tree: &mut SeizedTree, part: &[&Images], built: &mut Vec<Built>| {
        let mut total = RestoreStats::default();
        for p in part {
            let _span = info_span!("process", pid = p.pid).entered();
            let mut one = RestoreStats::default();
            built.push(build(tree, p, tramp, made, file_locks, &mut one)?);
            total.add_built(&one);
        }
        Ok::<_, RestoreError>(total)
    };
    let finalize_part = |tree: &mut SeizedTree, part: &[&Images], built: &[Built]| {
        let mut calls = 0;
        for (p, b) in part.iter().zip(built) {
            let _span = info_span!("process", pid = p.pid).entered();
            calls += finalize(tree, p, tramp, b)?;
        }
        Ok::<_, RestoreError>(calls)
    };
    let seize_part = |part: &[&Images], cpu: Option<usize>| {
        let pids: Vec<Tid> = part.iter().map(|p| p.host.get()).collect();
        if let Some(cpu) = cpu {
            // Parked single-threaded tasks of crs's own: moved before the seize, they
            // get `restore_to` back at release.
            for &pid in &pids {
                crs_compel::pin::pin_thread(pid, cpu);
            }
        }
        let mut tree =
            SeizedTree::seize_processes(&pids, &SeizeOptions::default()).map_err(|source| {
                RestoreError::Seize {
                    pid: pids[0],
                    source,
                }
            })?;
        if let Some(cpu) = cpu {
            tree.pin_to_cpu(cpu, restore_to);
        }
        Ok(tree)
    };
    let lost = || {
        Err(RestoreError::Unsupported {
            what: "a restore thread that stopped without a result".into(),
        })
    };
    std::thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel::<Result<RestoreStats, RestoreError>>();
        let mut verdicts = Vec::new();
        let mut workers = Vec::new();
        for (k, part) in parts.iter().enumerate().skip(1) {
            let (verdict_tx, verdict_rx) = mpsc::channel::<Verdict>();
            verdicts.push(verdict_tx);
            let done_tx = done_tx.clone();
            let span = tracing::Span::current();
            workers.push(s.spawn(move || {
                let _span = span.enter();
                let cpu = cpu_of(k);
                let _pin = cpu.and_then(CpuPin::to);
                let cpu = _pin.as_ref().map(CpuPin::cpu);
                let mut held = None;
                let mut built = Vec::new();
                let r = seize_part(part, cpu)
                    .and_then(|t| build_part(held.insert(t), part, &mut built));
                // Sent, then waited on: a worker that panics drops its sender and cannot
                // leave the caller waiting.
                let _ = done_tx.send(r);
                let mut how = verdict_rx.recv().unwrap_or(Verdict::Kill);
                if how == Verdict::Finalize {
                    let tree = held.as_mut().expect("built parts are held");
                    let r = finalize_part(tree, part, &built).map(|calls| RestoreStats {
                        injected_syscalls: calls,
                        ..RestoreStats::default()
                    });
                    let _ = done_tx.send(r);
                    how = verdict_rx.recv().unwrap_or(Verdict::Kill);
                }
                drop(done_tx);
                release_part(held, how, part[0].host.get())
            }));
        }
        drop(done_tx);
        // Every part's results of one phase, the caller's own first.
        let gather = |mine: Result<RestoreStats, RestoreError>, total: &mut RestoreStats| {
            let mut first_err = mine.err();
            for _ in 1..parts.len() {
                match done_rx.recv().unwrap_or_else(|_| lost()) {
                    Ok(st) => total.add_built(&st),
                    Err(e) => {
                        first_err.get_or_insert(e);
                    }
                }
            }
            first_err
        };
        let tell = |how: Verdict| {
            for v in &verdicts {
                let _ = v.send(how);
            }
        };
        let mut total = RestoreStats::default();
        let mut held = None;
        let mut built = Vec::new();
        let mine = seize_part(&parts[0], pin.map(CpuPin::cpu))
            .and_then(|t| build_part(held.insert(t), &parts[0], &mut built));
        if let Ok(st) = &mine {
            total.add_built(st);
        }
        let mut first_err = gather(mine, &mut total);
        if first_err.is_none() {
            // Every process holds its fds now: the queues that pass fds can be filled.
            let all: Vec<&Images> = parts.iter().flatten().copied().collect();
            if let Err(e) = unixsk::queue_passing(&all) {
                first_err = Some(e);
            }
        }
        if first_err.is_none() {
            tell(Verdict::Finalize);
            let tree = held.as_mut().expect("built parts are held");
            let mine = finalize_part(tree, &parts[0], &built).map(|calls| RestoreStats {
                injected_syscalls: calls,
                ..RestoreStats::default()
            });
            if let Ok(st) = &mine {
                total.add_built(st);
            }
            first_err = gather(mine, &mut total);
        }
        if first_err.is_none() {
            if let Err(e) = stage(|| "committing".into()).and_then(|()| finish()) {
                first_err = Some(e);
            }
        }
        let how = if first_err.is_none() {
            // The tree runs from here on, even if crs dies before detaching it.
            crs_compel::guard::commit();
            resume();
            Verdict::Detach
        } else {
            Verdict::Kill
        };
        tell(how);
        let mut released = release_part(held, how, parts[0][0].host.get());
        for w in workers {
            let r = w.join().unwrap_or_else(|_| {
                Err(RestoreError::Unsupported {
                    what: "a restore thread that panicked".into(),
                })
            });
            released = released.and(r);
        }
        match first_err {
            Some(e) => Err(e),
            None => released.map(|()| total),
        }
    })
}

/// What [`build_parts`] runs once every process is final: `finish` (a failure kills the
/// tree), then, the tree committed, `resume` just before it is let go.
struct Ending<F, R> {
    finish: F,
    resume: R,
}

/// Lets one part go. Killing is best effort (a failure is only logged: the restore has
/// already failed); a failed detach is an error.
fn release_part(held: Option<SeizedTree>, how: Verdict, pid: Tid) -> Result<(), RestoreError> {
    let Some(tree) = held else {
        return Ok(());
    };
    match how {
        Verdict::Detach => {
            inetsk::silence(true);
            tree.release(Release::Detach)
                .map_err(|source| RestoreError::Detach { pid, source })
        }
        Verdict::Kill | Verdict::Finalize => {
            inetsk::silence(false);
            if let Err(k) = tree.release(Release::Kill) {
                warn!(error = %k, "killing the half-restored tree");
            }
            Ok(())
        }
    }
}

/// Everything between seize and detach.
fn build(
    tree: &mut SeizedTree,
    images: &Images,
    tramp: u64,
    made: &Made<'_>,
    file_locks: &locks::FileLocks,
    stats: &mut RestoreStats,
) -> Result<Built, RestoreError> {
    // crs's pid of the task (the images' differs in a pid namespace of the tree's own).
    let pid = images.host.get();
    let compel = |what: &str| {
        let what = what.to_string();
        move |source| RestoreError::Compel { pid, what, source }
    };
    let step = |what: &str| stage(|| format!("pid {pid}: {what}"));
    step("seized")?;
    // The task sits in pause(), in crs's code, which is about to be unmapped: between
    // injections it rests on the trampoline's `jmp .` instead, every signal blocked (the
    // signals queued for it stay queued), with no syscall to restart. If crs dies before
    // the task is final, it spins there until the guardian kills it, rather than faulting
    // or taking a signal among half-built peers.
    let mut regs = *tree
        .thread(pid)
        .map_err(compel("reading the registers"))?
        .regs();
    regs.orig_rax = u64::MAX;
    regs.rip = tramp + crs_sys::restore::TRAMPOLINE_PARK;
    tree.set_regs(pid, &regs)
        .map_err(compel("parking the task on the trampoline"))?;
    tree.set_sigmask(pid, !0)
        .map_err(compel("blocking every signal"))?;
    tree.set_syscall_site(pid, RemoteAddr(tramp))
        .map_err(compel("using the trampoline"))?;
    let base_xstate = tree.xstate(pid).map_err(compel("reading the FPU state"))?;

    let maps = std::fs::read(format!("/proc/{pid}/maps"))
        .map_err(|source| RestoreError::Maps { pid, source })?;
    let maps = crs_proc::parse_maps(&maps).map_err(|e| RestoreError::Maps {
        pid,
        source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    })?;

    let mut r = Remote::on_trampoline(tree, pid, tramp, TRAMPOLINE_LEN);
    task::drop_inherited_rseq(&mut r)?;
    step("address space")?;
    let t = Instant::now();
    vma::unmap_crs(&mut r, &maps, TRAMPOLINE_LEN as u64)?;
    vma::move_vdso(&mut r, images, &maps, TRAMPOLINE_LEN as u64)?;
    vma::map_all(&mut r, images, made.shmem, made.memfds, made.sysv_sizes)?;
    debug!(elapsed = ?t.elapsed(), calls = r.calls, "address space rebuilt");
    step("pages")?;
    let t = Instant::now();
    stats.pages_restored = match &made.lazy {
        None => pages::fill(pid, images)?,
        Some(link) => {
            let (job, eager) = make_lazy(&mut r, images)?;
            // Served from now on: the rest of the build touches that memory too.
            link.send(job)?;
            pages::fill_only(pid, images, &eager)?
        }
    };
    stats.pages_time = t.elapsed();
    debug!(pages = stats.pages_restored, elapsed = ?stats.pages_time, "pages filled");
    step("memory state")?;
    vma::finish_prot(&mut r, images)?;
    task::set_mm(&mut r, images)?;
    task::set_membarrier(&mut r, images)?;
    step("files")?;
    handoff::install_held(&mut r, images, made.crs_files)?;
    unixsk::create(&mut r, images, made.crs_files)?;
    anonfd::create(&mut r, images, &made.fifos_filled, made.crs_files)?;
    locks::take(&mut r, file_locks.of(images.pid))?;
    fown::restore(&mut r, images, &file_locks.owner_set_elsewhere(images.pid))?;
    task::close_unlisted_fds(&mut r, images)?;
    step("task state")?;
    task::set_misc(&mut r, images)?;
    task::set_rlimits(pid, images);
    // The other threads, once the memory they run in is there, before the timers that
    // may signal them and before the credentials (clone3 set_tid needs CAP_SYS_ADMIN).
    step("threads")?;
    let t = Instant::now();
    threads::create(&mut r, images)?;
    threads::set_misc(&mut r, images)?;
    task::set_sched(images)?;
    debug!(threads = images.threads.len(), elapsed = ?t.elapsed(), "threads created");
    step("timers and signals")?;
    let posix_timers = timers::posix_timers(images)?;
    timers::create_posix_timers(&mut r, &posix_timers)?;
    let queued = task::queue_signals(&mut r, images)?;
    debug!(queued, "pending signals queued");
    // seccomp filters while the task may still install them (CAP_SYS_ADMIN), each
    // thread's own; the syscalls injected after them are not filtered (compel suspends
    // seccomp for its tracees).
    step("seccomp")?;
    let tc = images.core.thread_core.as_ref().expect("checked at load");
    seccomp::install(&mut r, tc, made.seccomp)?;
    for t in &images.threads {
        r.in_thread(t.host.get(), |r| {
            seccomp::install(r, t.thread_core(), made.seccomp)
        })?;
    }
    // Credentials last (they may take away what the steps above needed), every thread's
    // own; the timers are armed in `finalize`, right before the registers.
    step("credentials")?;
    threads::set_creds(&mut r, images)?;
    creds::restore(&mut r, images)?;
    stats.injected_syscalls = r.calls;
    Ok(Built {
        base_xstate,
        posix_timers,
    })
}

/// What [`finalize`] needs of a built process.
struct Built {
    /// The FPU state the task had when seized (the layout the final one is built on).
    base_xstate: Vec<u8>,
    posix_timers: Vec<timers::PosixTimer>,
}

/// Page runs of one pages image.
type ByFile = (PathBuf, Vec<images::PageRun>);

/// --lazy-pages: registers the private anonymous memory of the process being built with
/// a userfaultfd made in it (missing pages; forks, mremap, munmap and discards reported)
/// and returns it with the runs to fill lazily, and the runs to fill now (by file).
fn make_lazy(
    r: &mut Remote<'_>,
    images: &Images,
) -> Result<(lazy::LazyJob, Vec<ByFile>), RestoreError> {
    let pid = images.host.get();
    let ranges: Vec<(u64, u64)> = images
        .vmas
        .iter()
        .filter(|v| {
            v.kind == vma::Kind::Anon
                && v.flags & libc::MAP_PRIVATE as u32 != 0
                && v.flags & libc::MAP_HUGETLB as u32 == 0
        })
        .map(|v| (v.start, v.end))
        .collect();
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK) as u64;
    let fd = r.call(libc::SYS_userfaultfd, [flags, 0, 0, 0, 0, 0], || {
        "userfaultfd (lazy pages)".into()
    })?;
    let taken = r
        .tree
        .take_fd(pid, fd as i32)
        .map_err(|source| RestoreError::Compel {
            pid,
            what: "taking the userfaultfd".into(),
            source,
        });
    r.call(libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0], || {
        "closing the userfaultfd".into()
    })?;
    let uffd = taken?;
    let want = crs_sys::uffd::FEATURE_EVENT_FORK
        | crs_sys::uffd::FEATURE_EVENT_REMAP
        | crs_sys::uffd::FEATURE_EVENT_REMOVE
        | crs_sys::uffd::FEATURE_EVENT_UNMAP;
    let lazy_err = |what: String| move |source| RestoreError::Lazy { what, source };
    let got = crs_sys::uffd::api(std::os::fd::AsFd::as_fd(&uffd), want)
        .map_err(lazy_err(format!("UFFDIO_API in pid {pid}")))?;
    if got & want != want {
        return Err(RestoreError::Lazy {
            what: format!(
                "userfaultfd without the events lazy pages need ({:#x})",
                want & !got
            ),
            source: io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        });
    }
    let mut registered = Vec::new();
    for &(s, e) in &ranges {
        crs_sys::uffd::register_missing(std::os::fd::AsFd::as_fd(&uffd), s, e - s)
            .map_err(lazy_err(format!("registering {s:#x}-{e:#x} of pid {pid}")))?;
        registered.push((s, e));
    }
    let mut runs = lazy::runs_within(&images.runs, &images.pages_path, &registered);
    let mut eager = vec![(
        images.pages_path.clone(),
        lazy::runs_outside(&images.runs, &registered),
    )];
    for (path, pr) in &images.parent_pages {
        runs.extend(lazy::runs_within(pr, path, &registered));
        eager.push((path.clone(), lazy::runs_outside(pr, &registered)));
    }
    debug!(
        pid,
        ranges = registered.len(),
        runs = runs.len(),
        "lazy memory registered"
    );
    Ok((lazy::LazyJob { pid, uffd, runs }, eager))
}

/// The last steps of a built process, once every process of the tree is built: timers
/// armed (so the restore's own time does not eat into them), then every thread's final
/// xstate, signal mask and registers, and the munmap of the trampoline. Returns the
/// syscalls it injected.
fn finalize(
    tree: &mut SeizedTree,
    images: &Images,
    tramp: u64,
    built: &Built,
) -> Result<u64, RestoreError> {
    let pid = images.host.get();
    let compel = |what: &str| {
        let what = what.to_string();
        move |source| RestoreError::Compel { pid, what, source }
    };
    stage(|| format!("pid {pid}: final state"))?;
    let mut r = Remote::on_trampoline(tree, pid, tramp, TRAMPOLINE_LEN);
    timers::arm(&mut r, images, &built.posix_timers)?;
    anonfd::arm(&mut r, images)?;
    threads::set_final(&mut r, images)?;

    let ti = images.core.thread_info.as_ref().expect("checked at load");
    let tree_ref = &*r.tree;
    let final_regs = arch::final_regs(&ti.gpregs, |ip| {
        let mut insn = [0u8; 2];
        tree_ref.read_memory(pid, RemoteAddr(ip), &mut insn).is_ok() && insn == [0x0f, 0x05]
    });
    let mut xstate = built.base_xstate.clone();
    arch::build_xstate(&ti.fpregs, &mut xstate).map_err(|what| RestoreError::Invalid {
        image: format!("core-{pid}.img"),
        what,
    })?;
    r.tree
        .set_xstate(pid, &xstate)
        .map_err(compel("writing the FPU state"))?;
    let tc = images.core.tc.as_ref().expect("checked at load");
    let th = images.core.thread_core.as_ref().expect("checked at load");
    let mask = th.blk_sigset.unwrap_or(tc.blk_sigset());
    r.tree
        .set_sigmask(pid, mask)
        .map_err(compel("setting the signal mask"))?;
    r.tree
        .set_regs(pid, &final_regs)
        .map_err(compel("setting the registers"))?;
    // Last injected syscall: the trampoline goes; the registers set above take over. It
    // runs from outside the trampoline (a stub in the vDSO, which is where the images put
    // it), so that a thread crs leaves there parks.
    let vdso_end = images
        .vmas
        .iter()
        .find(|v| v.kind == vma::Kind::Vdso)
        .map(|v| v.end);
    r.tree
        .set_vdso_end(pid, vdso_end)
        .map_err(compel("placing the vDSO"))?;
    r.call_outside(
        libc::SYS_munmap,
        [tramp, TRAMPOLINE_LEN as u64, 0, 0, 0, 0],
        || "munmap of the trampoline".into(),
    )?;
    Ok(r.calls)
}

fn write_pidfile(path: Option<&Path>, pid: Tid) -> Result<(), RestoreError> {
    let Some(path) = path else { return Ok(()) };
    std::fs::write(path, pid.to_string()).map_err(|source| RestoreError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// `stats-restore` in the images dir, as CRIU writes it. Best effort: the images dir may
/// be read-only.
fn write_stats(dir: &Path, stats: &RestoreStats) {
    let mut rs = Restore_stats_entry::new();
    rs.set_pages_compared(0);
    rs.set_pages_skipped_cow(0);
    rs.set_forking_time(stats.forking_time.as_micros() as u32);
    rs.set_restore_time(stats.restore_time.as_micros() as u32);
    rs.set_pages_restored(stats.pages_restored);
    let mut se = Stats_entry::new();
    se.restore = Some(rs).into();
    let mut w = ImageWriter::new("stats-restore", "STATS");
    let path = dir.join("stats-restore");
    if let Err(e) = w.push(&se) {
        warn!(error = %e, "stats-restore not encoded");
        return;
    }
    if let Err(e) = std::fs::write(&path, w.into_bytes()) {
        warn!(path = %path.display(), error = %e, "stats-restore not written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::Zombie;
    use crs_images::pb::pstree::Pstree_entry;
    use crs_sys::restore::ChildPlan;

    fn entry(pid: u32, ppid: u32, pgid: u32, sid: u32) -> Pstree_entry {
        Pstree_entry {
            pid: Some(pid),
            ppid: Some(ppid),
            pgid: Some(pgid),
            sid: Some(sid),
            threads: vec![pid],
            ..Default::default()
        }
    }

    fn plan() -> ChildPlan {
        ChildPlan {
            umask: 0o22,
            cwd: c"/".into(),
            root: None,
            files: Vec::new(),
            pipes: Vec::new(),
            inherited: Vec::new(),
            trampoline: 1 << 32,
            trampoline_len: TRAMPOLINE_LEN,
        }
    }

    fn nodes_of(
        entries: Vec<Pstree_entry>,
        zombies: Vec<Zombie>,
    ) -> Result<Vec<TreeNode>, RestoreError> {
        let plans = entries
            .iter()
            .filter(|e| !zombies.iter().any(|z| z.pid == e.pid() as Tid))
            .map(|e| (e.pid() as Tid, plan()))
            .collect();
        let tree = Tree {
            entries,
            procs: Vec::new(),
            zombies,
            root_ids: None,
            net_lock: (2, String::new()),
            tcp_close: false,
        };
        tree_nodes(&tree, false, plans, BTreeMap::new(), BTreeMap::new())
    }

    use crs_sys::restore::Step::{self, Child, Creates, Reap, Setpgid, Setsid, Subreaper};

    fn steps(nodes: &[TreeNode]) -> Vec<(Tid, Vec<Step>)> {
        nodes.iter().map(|n| (n.pid, n.steps.clone())).collect()
    }

    #[test]
    fn tree_nodes_sessions_groups_and_zombies_mapped() {
        // P leads the session; A its own group; B in P's group with G; Z a zombie; C joins
        // A's group.
        let nodes = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 101, 100),
                entry(102, 100, 100, 100),
                entry(104, 102, 100, 100),
                entry(103, 100, 100, 100),
                entry(105, 100, 101, 100),
            ],
            vec![Zombie {
                host: images::HostPid::new(0),
                pid: 103,
                wait_status: 7 << 8,
            }],
        )
        .unwrap();
        assert_eq!(
            steps(&nodes),
            [
                (
                    100,
                    vec![Setsid, Creates, Child(1), Child(2), Child(4), Child(5)]
                ),
                (101, vec![Setpgid(101), Creates]),
                (102, vec![Creates, Child(3)]),
                (104, vec![Creates]),
                (103, vec![Creates]),
                (105, vec![Creates, Setpgid(101)]),
            ]
        );
        assert!(matches!(
            nodes[4].kind,
            NodeKind::Zombie { wait_status: 0x700 }
        ));
        assert!(matches!(nodes[3].kind, NodeKind::Live(_)));
        assert!(nodes
            .iter()
            .all(|n| n.parent_death_signal && !n.share_files));
    }

    #[test]
    fn tree_nodes_group_of_later_sibling_creates_leader_first() {
        // 101 joins the group of 102, its younger sibling.
        let nodes = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 102, 100),
                entry(102, 100, 102, 100),
            ],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(nodes[0].steps, [Setsid, Creates, Child(2), Child(1)]);
        assert_eq!(nodes[1].steps, [Creates, Setpgid(102)]);
        assert_eq!(nodes[2].steps, [Setpgid(102), Creates]);
    }

    #[test]
    fn tree_nodes_group_of_later_cousin_orders_subtrees() {
        // 103 (under 101) joins the group of 104 (under 102).
        let nodes = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 100, 100),
                entry(103, 101, 104, 100),
                entry(102, 100, 100, 100),
                entry(104, 102, 104, 100),
            ],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(nodes[0].steps, [Setsid, Creates, Child(3), Child(1)]);
    }

    #[test]
    fn tree_nodes_member_above_its_leader_joins_after_creating_it() {
        let nodes = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 102, 100),
                entry(102, 101, 102, 100),
            ],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(nodes[1].steps, [Creates, Child(2), Setpgid(102)]);
    }

    #[test]
    fn tree_nodes_zombie_group_leader_is_created_first() {
        let nodes = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 102, 100),
                entry(102, 100, 102, 100),
            ],
            vec![Zombie {
                host: images::HostPid::new(0),
                pid: 102,
                wait_status: 0,
            }],
        )
        .unwrap();
        assert_eq!(nodes[0].steps, [Setsid, Creates, Child(2), Child(1)]);
    }

    #[test]
    fn tree_nodes_group_leader_gone_gets_a_reaped_helper() {
        // Group 150's leader is gone; 101 and 103 (under 102) are in it.
        let nodes = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 150, 100),
                entry(102, 100, 100, 100),
                entry(103, 102, 150, 100),
            ],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(nodes.len(), 5);
        assert_eq!(nodes[4].pid, 150);
        assert!(matches!(nodes[4].kind, NodeKind::Helper));
        assert_eq!(nodes[4].steps, [Setpgid(150)]);
        assert_eq!(
            nodes[0].steps,
            [Setsid, Creates, Child(4), Child(1), Child(2), Reap(4)]
        );
        assert_eq!(nodes[1].steps, [Creates, Setpgid(150)]);
        assert_eq!(nodes[3].steps, [Creates, Setpgid(150)]);
    }

    #[test]
    fn tree_nodes_group_leader_gone_member_is_the_helpers_parent() {
        // 101 and its child 102 are in group 150 (gone): 101 forks the helper, then joins.
        let nodes = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 150, 100),
                entry(102, 101, 150, 100),
            ],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(
            nodes[1].steps,
            [Creates, Child(3), Setpgid(150), Child(2), Reap(3)]
        );
        assert_eq!(nodes[2].steps, [Creates]);
    }

    #[test]
    fn tree_nodes_child_forked_before_setsid_is_created_before_it() {
        // 101 forked 102 (stays in 100's session and group), then called setsid and forked
        // 103 in its own session.
        let nodes = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 101, 101),
                entry(102, 101, 100, 100),
                entry(103, 101, 101, 101),
            ],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(nodes[1].steps, [Creates, Child(2), Setsid, Child(3)]);
        assert_eq!(nodes[2].steps, [Creates]);
    }

    #[test]
    fn tree_nodes_session_leader_gone_gets_a_helper_parent() {
        // 101 is of session 50, whose leader is gone; 102 leads a group of it.
        let nodes = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 50, 50),
                entry(102, 100, 102, 50),
            ],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(nodes[3].pid, 50);
        assert!(matches!(nodes[3].kind, NodeKind::Helper));
        assert_eq!(nodes[3].steps, [Setsid, Child(1), Child(2)]);
        assert_eq!(
            nodes[0].steps,
            [
                Subreaper(true),
                Setsid,
                Creates,
                Child(3),
                Reap(3),
                Subreaper(false)
            ]
        );
        assert_eq!(nodes[1].steps, [Creates]);
        assert_eq!(nodes[2].steps, [Setpgid(102), Creates]);
        assert!(!nodes[1].parent_death_signal && !nodes[2].parent_death_signal);
        assert!(nodes[0].parent_death_signal && nodes[3].parent_death_signal);
    }

    #[test]
    fn tree_nodes_group_and_session_leaders_gone_nest_helpers() {
        // 101 and 102 are of session 50 and group 60, both leaders gone.
        let nodes = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 60, 50),
                entry(102, 100, 60, 50),
            ],
            Vec::new(),
        )
        .unwrap();
        let pids: Vec<Tid> = nodes.iter().map(|n| n.pid).collect();
        assert_eq!(pids, [100, 101, 102, 50, 60]);
        assert_eq!(
            nodes[3].steps,
            [Setsid, Child(4), Child(1), Child(2), Reap(4)]
        );
        assert_eq!(nodes[4].steps, [Setpgid(60)]);
        assert_eq!(nodes[1].steps, [Creates, Setpgid(60)]);
    }

    #[test]
    fn tree_nodes_many_siblings_joining_the_last_leads_with_it() {
        // 3000 children of 100, all in the group of the last one.
        let last = 100 + 3000;
        let mut entries = vec![entry(100, 0, 100, 100)];
        entries.extend((101..=last).map(|p| entry(p, 100, last, 100)));
        let nodes = nodes_of(entries, Vec::new()).unwrap();
        assert_eq!(nodes[0].steps[2], Child(3000));
        assert_eq!(nodes[0].steps[3], Child(1));
        assert_eq!(nodes[0].steps.len(), 3002);
    }

    #[test]
    fn tree_nodes_session_leader_elsewhere_is_unsupported() {
        // 103 is of 101's session but under 102.
        let err = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 101, 101),
                entry(102, 100, 100, 100),
                entry(103, 102, 101, 101),
            ],
            Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, RestoreError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn tree_nodes_crossing_groups_are_unsupported() {
        // 104 (under 101) joins 105's group (under 102), 106 (under 102) joins 103's
        // (under 101).
        let err = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 100, 100),
                entry(103, 101, 103, 100),
                entry(104, 101, 105, 100),
                entry(102, 100, 100, 100),
                entry(105, 102, 105, 100),
                entry(106, 102, 103, 100),
            ],
            Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, RestoreError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn tree_nodes_group_whose_leader_moved_is_unsupported() {
        // 101 is in group 102, but 102 went to group 100.
        let err = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 102, 100),
                entry(102, 100, 100, 100),
            ],
            Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, RestoreError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn tree_nodes_shell_job_root_keeps_crs_group_and_session() {
        let tree = Tree {
            entries: vec![entry(100, 0, 40, 30), entry(101, 100, 40, 30)],
            procs: Vec::new(),
            zombies: Vec::new(),
            root_ids: None,
            net_lock: (2, String::new()),
            tcp_close: false,
        };
        let plans = [100, 101].into_iter().map(|p| (p, plan())).collect();
        let nodes = tree_nodes(&tree, true, plans, BTreeMap::new(), BTreeMap::new()).unwrap();
        assert_eq!(
            steps(&nodes),
            [(100, vec![Creates, Child(1)]), (101, vec![Creates])]
        );
    }

    #[test]
    fn plan_tree_fd_table_of_parent_is_shared() {
        let entries = vec![
            entry(100, 0, 100, 100),
            entry(101, 100, 100, 100),
            entry(102, 100, 100, 100),
        ];
        let files = BTreeMap::from([(100, 1), (101, 1), (102, 2)]);
        let ps = plan_tree(&entries, &BTreeMap::new(), &files, false).unwrap();
        let shared: Vec<bool> = ps.iter().map(|p| p.share_files).collect();
        assert_eq!(shared, [false, true, false]);
    }

    #[test]
    fn load_and_check_criu_reference_tree_is_accepted() {
        let test = "load_and_check_criu_reference_tree_is_accepted";
        let Some(t) = crate::testsets::copy("tree", test) else {
            return;
        };
        let l = crate::testsets::load(t.path()).unwrap();
        assert_eq!(l.root_pid(), 72000);
        assert_eq!(l.pids(), [72000, 72001, 72002]);
        assert!(l.zombies().is_empty());
    }

    #[test]
    fn load_and_check_plan_refusal_names_pstree_and_ids() {
        let test = "load_and_check_plan_refusal_names_pstree_and_ids";
        let Some(t) = crate::testsets::copy("tree", test) else {
            return;
        };
        crate::testsets::rewrite(
            t.path(),
            "ids-72002.img",
            "IDS",
            |v: &mut Vec<crs_images::pb::core::Task_kobj_ids_entry>| {
                v[0].files_id = Some(3);
            },
        );
        let err = crate::testsets::load_err(t.path());
        assert!(
            err.starts_with(
                "pstree.img: processes 72001 and 72002 share fd table 3 (ids-72001.img, \
                 ids-72002.img)"
            ),
            "{err}"
        );
    }

    #[test]
    fn plan_tree_fd_table_of_sibling_is_unsupported() {
        let entries = vec![
            entry(100, 0, 100, 100),
            entry(101, 100, 100, 100),
            entry(102, 100, 100, 100),
        ];
        let files = BTreeMap::from([(100, 1), (101, 2), (102, 2)]);
        let err = plan_tree(&entries, &BTreeMap::new(), &files, false).unwrap_err();
        assert!(
            err.to_string().contains("101") && err.to_string().contains("102"),
            "{err}"
        );
    }
}
