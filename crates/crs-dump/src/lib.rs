//! Walks a frozen process tree and writes CRIU 4.2 images.
//!
//! ```text
//! dump(&DumpOptions { pid, images_dir, .. })
//!   seize (compel) the tree below pid; then per process, depth first (pstree.img order):
//!                   ->  VMAs, mapped files, exe      (before anything is mapped in the task)
//!                   ->  per-thread state: registers, xsave, signals, TLS, creds, sched ...
//!                      (ptrace reads, /proc, and syscalls injected in the task)
//!                   ->  fds, cwd, root
//!                   ->  pages: PAGEMAP_SCAN, parallel process_vm_readv -> pwrite
//!   zombies: a pstree entry and a core with task_state Dead and the wait status
//!   shared anonymous memory: VMA_ANON_SHARED with shmid = the shmem inode; its contents
//!   once per object, after every process (pagemap-shmem-<shmid>.img, see `shmem`)
//!   files.img and seccomp.img are shared by all processes; an open file description held
//!   by several processes (kcmp KCMP_FILE) is one file entry their fdinfo entries share;
//!   processes sharing one fd table (kcmp KCMP_FILES, CLONE_FILES) have one files_id in
//!   their ids-PID.img and one fdinfo-N.img, written by the first of them
//!   pstree.img records each process's pgid and sid as they are, also when the group's or
//!   session's leader is gone (restore stands in for it with a helper)
//!   images written into DIR (staged in DIR/.crs-dump-* when it held a set), each hashed
//!   (pages by the copy's readers), crs-checksums then inventory.img last
//!   release: kill (default) or detach (leave_running); any error before the images are
//!   in place detaches the task untouched and removes what was written
//! ```
#![forbid(unsafe_code)]

mod core;
mod error;
mod files;
mod imgdir;
mod live;
mod memfd;
mod mm;
mod netlock;
mod netns;
mod ns;
pub mod page_server;
mod pages;
mod shmem;
mod sysv;
mod task;
pub mod track;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crs_compel::{CpuPin, Release, SeizeOptions, SeizedTree, Tid};
use crs_images::codec::ImageWriter;
use crs_images::pb::core::core_entry::March;
use crs_images::pb::core::{Core_entry, Task_core_entry, Task_rlimits_entry};
use crs_images::pb::fs::Fs_entry;
use crs_images::pb::inventory::{Inventory_entry, Lsmtype, Plugins_entry};
use crs_images::pb::mm::Mm_entry;
use crs_images::pb::pagemap::{Pagemap_entry, Pagemap_head};
use crs_images::pb::pstree::Pstree_entry;
use crs_images::pb::rlimit::Rlimit_entry;
use crs_images::pb::sa::Sa_entry;
use crs_images::pb::seccomp::{Seccomp_entry, Seccomp_filter};
use crs_images::pb::stats::{Dump_stats_entry, Stats_entry};
use crs_images::pb::timens::{Timens_entry, Timespec};
use crs_images::pb::timer::{Itimer_entry, Task_timers_entry};
use crs_proc::ProcDir;
use protobuf::{EnumOrUnknown, MessageField};
use rayon::prelude::*;
use tracing::{debug, info, info_span, warn};

pub use error::DumpError;
use error::{compel_err, proc_err, Result};
use files::{image_err, FileTable};
use imgdir::ImageDir;
pub use netlock::Method as NetworkLock;
use pages::PAGE_SIZE;
use task::Remote;

/// What to dump and how (criu dump's options).
#[derive(Clone, Debug)]
pub struct DumpOptions {
    /// `-t`: the root of the tree.
    pub pid: i32,
    /// `-D`: where the images go (must exist, like criu).
    pub images_dir: PathBuf,
    /// `-R`: leave the tree running after the dump instead of killing it.
    pub leave_running: bool,
    /// `-j`: the tree is a shell job (need not be a session leader).
    pub shell_job: bool,
    /// `-l`: dump file locks.
    pub file_locks: bool,
    /// `--tcp-established`.
    pub tcp_established: bool,
    /// `--tcp-close`: connections are saved without their state (no repair mode, no
    /// lock), to be restored closed.
    pub tcp_close: bool,
    /// `--skip-in-flight`: connections waiting in a listener's queue for a peer outside
    /// the tree are left out (lost) instead of refused.
    pub skip_in_flight: bool,
    /// `--network-lock`: how the connections are locked while dumped.
    pub network_lock: netlock::Method,
    /// `--ext-unix-sk`.
    pub ext_unix_sk: bool,
    /// `--freeze-cgroup`: freeze this cgroup while seizing.
    pub freeze_cgroup: Option<PathBuf>,
    /// `--timeout`: how long freezing may take (criu's default is 10 s).
    pub timeout: Duration,
    /// Write `crs-checksums`, the checksum of every image (on by default; the binary turns
    /// it off with `CRS_IMAGE_CHECKSUMS=0`, the bench's baseline).
    pub image_checksums: bool,
    /// `--page-server`: send the pages to a page server over this connection (see
    /// [`page_server::ship`]) instead of keeping them in `images_dir`.
    pub page_server: Option<PageServerLink>,
    /// `--prev-images-dir`: the images of an earlier (pre-)dump of this tree, as given
    /// (relative to `images_dir`, like CRIU's `parent` link): pages not written since are
    /// left to them (see [`track`]).
    pub prev_images_dir: Option<PathBuf>,
    /// `--track-mem`: keep tracking writes for a later dump (with `-R`).
    pub track_mem: bool,
    /// `--live` (with `-R`; crs's own option): the tree runs on while its pages are
    /// copied, the images still the memory at the freeze (see [`live`]).
    pub live: bool,
    /// `--ghost-limit`: the largest deleted file (bytes on disk) saved as a ghost file;
    /// a larger one fails the dump.
    pub ghost_limit: u64,
    /// `--empty-ns net`: the tree's own network namespace is not dumped (the caller makes
    /// one again on restore), as CRIU's option.
    pub empty_ns_net: bool,
}

impl DumpOptions {
    /// The parent image directory, resolved (a relative `--prev-images-dir` is relative to
    /// the images directory, as the `parent` link in it is).
    pub fn parent_dir(&self) -> Option<PathBuf> {
        self.prev_images_dir
            .as_ref()
            .map(|p| self.images_dir.join(p))
    }
}

/// Links `parent` in the images directory to `--prev-images-dir` (CRIU's name and
/// meaning), after checking it is a readable image directory.
fn link_parent(opts: &DumpOptions) -> Result<()> {
    let (Some(rel), Some(dir)) = (&opts.prev_images_dir, opts.parent_dir()) else {
        return Ok(());
    };
    if !dir.join("inventory.img").exists() {
        return Err(DumpError::ImagesDir {
            path: dir,
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "--prev-images-dir: no image set there (no inventory.img)",
            ),
        });
    }
    let link = opts.images_dir.join("parent");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(rel, &link).map_err(|source| DumpError::Write { path: link, source })
}

/// The points of a dump where the caller is told, and may stop it: CRIU's action scripts
/// that apply to a tree without namespaces of its own (`network-lock`/`network-unlock`
/// come only with a network namespace, which crs does not dump).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpStage {
    /// Before anything is done to the tree: a refusal ends the dump.
    PreDump,
    /// The tree is held and nothing is read from it yet (where CRIU asks its RPC client
    /// for external files): a refusal releases the tree untouched.
    QueryExtFiles,
    /// The images are complete and the tree is still held: a refusal releases it
    /// untouched and fails the dump; the complete images stay, as CRIU leaves them.
    PostDump,
}

impl DumpStage {
    /// CRIU's name for this action (`CRTOOLS_SCRIPT_ACTION`, `criu_notify.script`).
    pub fn action(self) -> &'static str {
        match self {
            DumpStage::PreDump => "pre-dump",
            DumpStage::QueryExtFiles => "query-ext-files",
            DumpStage::PostDump => "post-dump",
        }
    }
}

/// Why the caller stopped a dump at a [`DumpStage`].
pub type NotifyError = Box<dyn std::error::Error + Send + Sync>;

/// Told of each [`DumpStage`] in turn; an error stops the dump there.
pub type Notify<'a> = &'a dyn Fn(DumpStage) -> Result<(), NotifyError>;

fn tell(notify: Notify<'_>, stage: DumpStage) -> Result<(), DumpError> {
    notify(stage).map_err(|source| DumpError::Notified {
        action: stage.action(),
        source,
    })
}

/// The connection to a page server, and how it was made.
#[derive(Clone, Debug)]
pub struct PageServerLink {
    pub socket: std::sync::Arc<std::os::fd::OwnedFd>,
    /// Passed in with `--ps-socket` (the server is told to end with the session).
    pub passed_in: bool,
}

impl DumpOptions {
    /// Options for dumping `pid` into `images_dir`, everything else as criu's defaults.
    pub fn new(pid: i32, images_dir: impl Into<PathBuf>) -> DumpOptions {
        DumpOptions {
            pid,
            images_dir: images_dir.into(),
            leave_running: false,
            shell_job: false,
            file_locks: false,
            tcp_established: false,
            tcp_close: false,
            skip_in_flight: false,
            network_lock: netlock::Method::default(),
            ext_unix_sk: false,
            freeze_cgroup: None,
            timeout: Duration::from_secs(10),
            image_checksums: true,
            page_server: None,
            prev_images_dir: None,
            track_mem: false,
            live: false,
            ghost_limit: files::GHOST_LIMIT,
            empty_ns_net: false,
        }
    }
}

/// What a dump measured (also written to `stats-dump`).
#[derive(Clone, Debug, Default)]
pub struct DumpStats {
    /// Seizing the tree.
    pub freezing_time: Duration,
    /// From frozen until the images were in place.
    pub frozen_time: Duration,
    /// Finding the pages to save.
    pub memdump_time: Duration,
    /// Copying them into pages-N.img.
    pub memwrite_time: Duration,
    pub pages_scanned: u64,
    pub pages_written: u64,
    pub pages_skipped_parent: u64,
}

const TASK_ALIVE: u32 = 1;
const TASK_STOPPED: u32 = 3;
/// Resources of `struct rlimit` the kernel knows (RLIM_NLIMITS).
const RLIM_NLIMITS: usize = 16;

/// Dumps process `opts.pid` and every process below it into `opts.images_dir`.
pub fn dump(opts: &DumpOptions) -> Result<DumpStats, DumpError> {
    dump_notified(opts, &|_| Ok(()))
}

/// [`dump`], telling `notify` of each [`DumpStage`] it reaches.
pub fn dump_notified(opts: &DumpOptions, notify: Notify<'_>) -> Result<DumpStats, DumpError> {
    let pid = opts.pid;
    let _span = info_span!("dump", pid).entered();
    tell(notify, DumpStage::PreDump)?;
    ImageDir::check(&opts.images_dir)?;
    let proc_dir = ProcDir::open(pid).map_err(proc_err(pid, "the /proc directory"))?;
    let stat = proc_dir.stat().map_err(proc_err(pid, "stat"))?;
    if !opts.shell_job && stat.session != pid {
        return Err(DumpError::NotSessionLeader {
            pid,
            sid: stat.session,
        });
    }
    // crs's own ids come first, as criu registers itself before the tree.
    let mut ns_ids = ns::NsIds::new();
    let me = ProcDir::open(std::process::id() as i32)
        .map_err(proc_err(std::process::id() as i32, "the /proc directory"))?;
    let root_ids = ns_ids.ids(&me)?;

    let Frozen {
        mut tree,
        mut stats,
        frozen_at,
        // Held until the tree is released.
        pin: _pin,
    } = freeze(opts)?;

    let live = if opts.live && opts.leave_running {
        match live::Session::start() {
            Ok(s) => Some(s),
            Err(e) => {
                let _ = tree.release(Release::Detach);
                crs_compel::guard::finish();
                return Err(e);
            }
        }
    } else {
        None
    };
    let mut out = Outputs {
        live,
        run_id: std::fs::read_to_string("/proc/sys/kernel/random/uuid")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        ..Outputs::default()
    };
    let keeper = track::socket_name(pid, stat.start_time);
    let staged = tell(notify, DumpStage::QueryExtFiles)
        .and_then(|()| {
            dump_seized(
                &mut tree,
                &proc_dir,
                opts,
                &mut ns_ids,
                root_ids,
                &mut stats,
                &mut out,
            )
        })
        .and_then(|dir| {
            // Writes tracked on for the next dump (the tree runs on): renewed while frozen,
            // before the images count as done.
            let new_uffds = if opts.track_mem && opts.leave_running {
                let mut have = track::fetch(&keeper)?;
                track::arm(&mut tree, &out.trackable, &mut have)?
            } else {
                Vec::new()
            };
            if !out.live_jobs.is_empty() {
                // The pages are copied once the tree runs: committed after that.
                return Ok((new_uffds, Some(dir)));
            }
            finish_images(opts, pid, dir)?;
            // Complete and shipped: the caller may still keep the tree from being killed.
            tell(notify, DumpStage::PostDump)?;
            Ok((new_uffds, None))
        });
    let (new_uffds, unfinished) = match staged {
        Ok(u) => u,
        Err(e) => {
            // Before the point of no return: let the task go exactly as it was.
            match tree.release(Release::Detach) {
                // Put back by crs itself: the guardian has nothing to do.
                Ok(()) => crs_compel::guard::finish(),
                // The guardian (when there is one) tries once more when crs exits.
                Err(re) => warn!(pid, error = %re, "detaching after a failed dump"),
            }
            return Err(e);
        }
    };
    stats.frozen_time = frozen_at.elapsed();
    let how = if opts.leave_running {
        Release::Detach
    } else {
        // Its connections close silently.
        out.repaired.arm();
        Release::Kill
    };
    tree.release(how)
        .map_err(|source| DumpError::Release { pid, source })?;
    // Killed, the tree's connections close in repair mode, sending nothing, and stay
    // locked until they are restored.
    std::mem::take(&mut out.repaired).leave();
    match out.net_lock.take() {
        Some(lock) if !opts.leave_running => lock.keep(),
        // -R: the tree runs on, its connections unlocked now.
        lock => drop(lock),
    }
    if let Some(mut dir) = unfinished {
        // --live: the tree runs; its pages are copied now, each page a thread is about
        // to write first. Until the images are complete the guardian still removes them
        // if crs dies (the tree is unblocked by the kernel then: the userfaultfds close).
        let t = Instant::now();
        let session = out.live.take().expect("live jobs come from a live session");
        session.copy(&out.live_jobs)?;
        let on_fault = session.finish()?;
        for j in &out.live_jobs {
            let segs = if dir.checksums() {
                vec![live::segment_of(j)?]
            } else {
                Vec::new()
            };
            dir.raw_written(&j.pages_name, j.pages_len, segs)?;
        }
        // The protection ends with the userfaultfds.
        drop(std::mem::take(&mut out.live_jobs));
        if let Some(img) = out.inventory.take() {
            dir.write(img)?;
        }
        stats.memwrite_time += t.elapsed();
        info!(
            pid,
            on_fault,
            ms = t.elapsed().as_millis() as u64,
            "pages copied live"
        );
        finish_images(opts, pid, dir)?;
        // The tree runs already: a refusal only fails the dump.
        tell(notify, DumpStage::PostDump)?;
    }
    crs_compel::guard::finish();
    if opts.track_mem && opts.leave_running {
        track::hand_over(&keeper, std::path::Path::new("/proc/self/exe"), &new_uffds)?;
    } else {
        // No dump follows this one: the tracking (if any) ends.
        track::stop(&keeper);
    }
    write_stats(&opts.images_dir, &stats)?;
    info!(
        pid,
        pages = stats.pages_written,
        frozen_ms = stats.frozen_time.as_millis() as u64,
        "dump done"
    );
    Ok(stats)
}

/// Commits the images, then sends the pages to the page server if there is one (while the
/// tree is still frozen, unless `--live`: a page server that fails the dump fails it
/// before the tree is killed, and the complete images stay in the local directory).
fn finish_images(opts: &DumpOptions, pid: Tid, dir: ImageDir) -> Result<()> {
    let t = Instant::now();
    dir.commit()?;
    debug!(pid, ms = t.elapsed().as_millis() as u64, "images committed");
    if let Some(link) = &opts.page_server {
        let mut sk =
            std::os::unix::net::UnixStream::from(link.socket.try_clone().map_err(|source| {
                DumpError::Write {
                    path: opts.images_dir.clone(),
                    source,
                }
            })?);
        page_server::ship(&opts.images_dir, &mut sk, link.passed_in)?;
    }
    Ok(())
}

/// A tree held for a (pre-)dump.
struct Frozen {
    tree: SeizedTree,
    stats: DumpStats,
    frozen_at: Instant,
    pin: Option<CpuPin>,
}

/// Seizes the tree of `opts.pid` (through its cgroup's freezer with `--freeze-cgroup`),
/// with this thread and the held threads on one CPU while crs drives them (see
/// `crs_compel::pin`; the page-copy pool is started first, so its threads are not).
fn freeze(opts: &DumpOptions) -> Result<Frozen> {
    let pid = opts.pid;
    let t0 = Instant::now();
    let seize = SeizeOptions {
        freeze_cgroup: opts.freeze_cgroup.clone(),
        freeze_timeout: opts.timeout,
        ..SeizeOptions::default()
    };
    let mut tree =
        SeizedTree::seize(pid, &seize).map_err(|source| DumpError::Seize { pid, source })?;
    let stats = DumpStats {
        freezing_time: t0.elapsed(),
        ..Default::default()
    };
    let frozen_at = Instant::now();
    info!(pid, threads = tree.thread_count(), "tree seized");
    rayon::current_num_threads();
    let pin = CpuPin::here();
    if let Some(p) = &pin {
        tree.pin_to_cpu(p.cpu(), None);
    }
    Ok(Frozen {
        tree,
        stats,
        frozen_at,
        pin,
    })
}

/// `crs pre-dump`: the memory of every process of the tree (pagemaps and pages, and an
/// inventory), with the tree frozen only for that; writes are then tracked (see [`track`])
/// so that the next dump with `--prev-images-dir` here copies only what was written since.
/// The tree is always left running. With `prev_images_dir`, this pre-dump is itself
/// incremental.
pub fn pre_dump(opts: &DumpOptions) -> Result<DumpStats, DumpError> {
    let pid = opts.pid;
    let _span = info_span!("pre-dump", pid).entered();
    ImageDir::check(&opts.images_dir)?;
    let proc_dir = ProcDir::open(pid).map_err(proc_err(pid, "the /proc directory"))?;
    let stat = proc_dir.stat().map_err(proc_err(pid, "stat"))?;
    let Frozen {
        mut tree,
        mut stats,
        frozen_at,
        pin,
    } = freeze(opts)?;
    let keeper = track::socket_name(pid, stat.start_time);
    let done = (|| -> Result<Vec<(Tid, std::os::fd::OwnedFd)>> {
        let order = tree_order(&tree, pid)?;
        let vpids = ns::Vpids::read(&tree, &order)?;
        let mut dir = ImageDir::create(&opts.images_dir, pid, opts.image_checksums)?;
        link_parent(opts)?;
        // Mapped files are looked at as a dump does; their entries are not written.
        let mut files = FileTable::new(opts.ghost_limit);
        let parent = opts.parent_dir();
        let mut trackable = Vec::new();
        let mut pages_id = 0u32;
        for &(p, _, zombie) in &order {
            if zombie {
                continue;
            }
            pages_id += 1;
            let pdir = ProcDir::open(p).map_err(proc_err(p, "the /proc directory"))?;
            let vmas = mm::collect_vmas(&pdir, &mut files)?;
            dump_memory(
                (p, vpids.tree(p)),
                &pdir,
                &vmas,
                &mut dir,
                pages_id,
                parent.as_deref(),
                &mut stats,
                None,
            )?;
            trackable.push((p, vmas.iter().filter_map(|v| v.trackable()).collect()));
        }
        let mut img = ImageWriter::new(imgdir::INVENTORY, "INVENTORY");
        push(
            &mut img,
            &Inventory_entry {
                img_version: Some(2),
                fdinfo_per_id: Some(true),
                ns_per_id: Some(true),
                ..Default::default()
            },
        )?;
        dir.write(img)?;
        let mut have = track::fetch(&keeper)?;
        let made = track::arm(&mut tree, &trackable, &mut have)?;
        dir.commit()?;
        Ok(made)
    })();
    stats.frozen_time = frozen_at.elapsed();
    let released = tree.release(Release::Detach);
    let made = match (done, released) {
        (Ok(m), Ok(())) => {
            crs_compel::guard::finish();
            m
        }
        (Err(e), r) => {
            if r.is_ok() {
                crs_compel::guard::finish();
            }
            return Err(e);
        }
        (Ok(_), Err(source)) => return Err(DumpError::Release { pid, source }),
    };
    drop(pin);
    track::hand_over(&keeper, std::path::Path::new("/proc/self/exe"), &made)?;
    write_stats(&opts.images_dir, &stats)?;
    info!(
        pid,
        pages = stats.pages_written,
        in_parent = stats.pages_skipped_parent,
        frozen_ms = stats.frozen_time.as_millis() as u64,
        "pre-dump done"
    );
    Ok(stats)
}

fn write_stats(dir: &std::path::Path, s: &DumpStats) -> Result<()> {
    let us = |d: Duration| d.as_micros().min(u32::MAX as u128) as u32;
    let mut img = ImageWriter::new("stats-dump", "STATS");
    img.push(&Stats_entry {
        dump: MessageField::some(Dump_stats_entry {
            freezing_time: Some(us(s.freezing_time)),
            frozen_time: Some(us(s.frozen_time)),
            memdump_time: Some(us(s.memdump_time)),
            memwrite_time: Some(us(s.memwrite_time)),
            pages_scanned: Some(s.pages_scanned),
            pages_skipped_parent: Some(s.pages_skipped_parent),
            pages_written: Some(s.pages_written),
            irmap_resolve: Some(0),
            pages_lazy: Some(0),
            page_pipes: Some(0),
            page_pipe_bufs: Some(0),
            shpages_scanned: Some(0),
            shpages_skipped_parent: Some(0),
            shpages_written: Some(0),
            ..Default::default()
        }),
        ..Default::default()
    })
    .map_err(image_err("stats-dump"))?;
    let tmp = dir.join(".stats-dump.tmp");
    let path = dir.join("stats-dump");
    std::fs::write(&tmp, img.into_bytes()).map_err(|source| DumpError::Write {
        path: tmp.clone(),
        source,
    })?;
    std::fs::rename(&tmp, &path).map_err(|source| DumpError::Write { path, source })
}

fn push<M: protobuf::Message>(img: &mut ImageWriter, m: &M) -> Result<()> {
    let name = img.name().to_string();
    img.push(m).map_err(image_err(&name))?;
    Ok(())
}

/// Everything between seize and commit: returns the staged images.
fn dump_seized(
    tree: &mut SeizedTree,
    proc_dir: &ProcDir,
    opts: &DumpOptions,
    ns_ids: &mut ns::NsIds,
    root_ids: crs_images::pb::core::Task_kobj_ids_entry,
    stats: &mut DumpStats,
    out: &mut Outputs,
) -> Result<ImageDir> {
    let Outputs {
        trackable,
        live_jobs,
        inventory: deferred_inventory,
        live: live_session,
        repaired,
        run_id,
        net_lock,
    } = out;
    let run_id = run_id.as_str();
    let live_session = live_session.as_ref();
    let root = proc_dir.pid();
    let order = tree_order(tree, root)?;
    // The pids the images record: inside the tree's own pid namespace, if it has one.
    let vpids = ns::Vpids::read(tree, &order)?;
    // The connections are locked before any socket is read (without --tcp-established a
    // connection is refused, and with --tcp-close it is not kept: nothing to lock).
    if opts.tcp_established && !opts.tcp_close {
        let net = |d: &ProcDir| {
            d.ns_link("net")
                .map_err(proc_err(d.pid(), "the net namespace"))
        };
        let me = ProcDir::open(std::process::id() as i32)
            .map_err(proc_err(std::process::id() as i32, "the /proc directory"))?;
        let own_net = net(proc_dir)? != net(&me)?;
        let live: Vec<Tid> = order
            .iter()
            .filter(|(_, _, zombie)| !zombie)
            .map(|&(pid, _, _)| pid)
            .collect();
        *net_lock = netlock::Lock::take(opts.network_lock, proc_dir, &live, run_id, own_net)?;
    }
    let mut dir = ImageDir::create(&opts.images_dir, root, opts.image_checksums)?;
    link_parent(opts)?;
    let mut files = FileTable::new(opts.ghost_limit);
    files.set_inner_pids(vpids.map());
    files.tcp_established = opts.tcp_established;
    files.tcp_close = opts.tcp_close;
    files.skip_in_flight = opts.skip_in_flight;
    let mut seccomp = Seccomp_entry::default();
    let mut pstree = Vec::with_capacity(order.len());
    let mut pages_id = 0u32;
    let mut shmem = shmem::ShmemObjects::default();
    let mut fd_tables = Vec::new();
    // What /proc tells of the live processes is read ahead, on every CPU, a window of
    // processes at a time (two fds per open /proc directory: a window bounds them whatever
    // the tree's size): each process is stopped and nothing has been injected yet, so these
    // are the bytes the one-by-one pass below would read (each is handed out once, see
    // `ProcDir::prefetch`).
    const WINDOW: usize = 64;
    for (w, window) in order.chunks(WINDOW).enumerate() {
        let pdirs = window
            .iter()
            .map(|&(pid, _, _)| ProcDir::open(pid).map_err(proc_err(pid, "the /proc directory")))
            .collect::<Result<Vec<_>>>()?;
        let ahead: Vec<Vec<String>> = window
            .iter()
            .map(|&(pid, _, zombie)| {
                let mut rels = vec!["stat".to_string()];
                if !zombie {
                    rels.extend(PREFETCHED.iter().map(|s| s.to_string()));
                    for t in tree.process(pid).map_or(&[][..], |p| p.threads()) {
                        rels.push(format!("task/{}/status", t.tid()));
                    }
                }
                rels
            })
            .collect();
        pdirs
            .par_iter()
            .zip(&ahead)
            .for_each(|(pdir, rels)| pdir.prefetch(rels));
        for (j, (&(pid, ppid, zombie), pdir)) in window.iter().zip(&pdirs).enumerate() {
            let stat = pdir.stat().map_err(proc_err(pid, "stat"))?;
            let inner = vpids.process(pid, &stat);
            let threads = if zombie {
                dump_zombie(&mut dir, inner.pid, &stat)?;
                vec![pid as u32]
            } else {
                pages_id += 1;
                let mut ctx = ProcessCtx {
                    opts,
                    ns_ids,
                    files: &mut files,
                    dir: &mut dir,
                    seccomp: &mut seccomp,
                    pages_id,
                    stats: &mut *stats,
                    shmem: &mut shmem,
                    fd_tables: &mut fd_tables,
                    trackable: &mut *trackable,
                    live_jobs: &mut *live_jobs,
                    live: live_session,
                    vpids: &vpids,
                };
                dump_process(tree, pdir, &stat, &mut ctx)?
            };
            let root = w == 0 && j == 0;
            pstree.push(Pstree_entry {
                pid: Some(inner.pid),
                ppid: Some(if root { 0 } else { vpids.tree(ppid) }),
                pgid: Some(inner.pgid),
                sid: Some(inner.sid),
                threads: threads.iter().map(|&t| vpids.tree(t as i32)).collect(),
                ..Default::default()
            });
        }
    }
    // Shared anonymous memory, once per object (every process is still frozen).
    let t = Instant::now();
    stats.pages_written += shmem.write(&mut dir, &mut pages_id)?;
    stats.pages_written += files.write_memfds(&mut dir, &mut pages_id)?;
    // SysV segments: with its own IPC namespace, every segment of it (read from inside);
    // else those the tree attached.
    // With its own IPC namespace, its semaphore sets and message queues too.
    let own_ns = ns_ids.own();
    let (ipc_ns, segments) = match own_ns.iter().find(|(kind, _)| *kind == "ipc") {
        Some(&(_, id)) => {
            let (segments, sems, queues) = ns::within(root, &["ipc"], || {
                let (sems, queues) = sysv::read_sems_and_queues()?;
                Ok((sysv::open_all()?, sems, queues))
            })?;
            sysv::write_sems_and_queues(&mut dir, id, &sems, &queues)?;
            (id, segments)
        }
        None => (root_ids.ipc_ns_id.unwrap_or(0), files.open_sysv()?),
    };
    stats.pages_written += sysv::write(&segments, &mut dir, ipc_ns, &mut pages_id)?;
    drop(segments);
    stats.memwrite_time += t.elapsed();
    let mut img = ImageWriter::new("seccomp.img", "SECCOMP");
    push(&mut img, &seccomp)?;
    dir.write(img)?;
    let leaders: Vec<Tid> = order
        .iter()
        .zip(&pstree)
        .filter(|((_, _, zombie), e)| !zombie && e.pid() == e.sid())
        .map(|((pid, _, _), _)| *pid)
        .collect();
    *repaired = files.take_repaired();
    files.write(&mut dir, &leaders, opts.shell_job)?;
    let mut img = ImageWriter::new("pstree.img", "PSTREE");
    for e in &pstree {
        push(&mut img, e)?;
    }
    dir.write(img)?;

    // The tree's own namespaces (of the kinds `ns::NsIds` lets through).
    ns::write_own(&mut dir, root, &own_ns, opts.empty_ns_net)?;

    // timens-0.img: the clocks now, so a restore can keep them continuous (with a time
    // namespace of the tree's own, its timens-ID.img instead, as CRIU).
    if !own_ns.iter().any(|(kind, _)| *kind == "time") {
        let now = |c| crs_sys::time::now(c).unwrap_or_default();
        let ts = |d: Duration| Timespec {
            tv_sec: Some(d.as_secs()),
            tv_nsec: Some(d.subsec_nanos() as u64),
            ..Default::default()
        };
        let mut img = ImageWriter::new("timens-0.img", "TIMENS");
        push(
            &mut img,
            &Timens_entry {
                monotonic: MessageField::some(ts(now(libc::CLOCK_MONOTONIC))),
                boottime: MessageField::some(ts(now(libc::CLOCK_BOOTTIME))),
                ..Default::default()
            },
        )?;
        dir.write(img)?;
    }

    // inventory.img
    let lsm = std::fs::read_to_string("/sys/kernel/security/lsm").unwrap_or_default();
    let lsmtype = if lsm.split(',').any(|l| l.trim() == "selinux") {
        Lsmtype::SELINUX
    } else if lsm.split(',').any(|l| l.trim() == "apparmor") {
        Lsmtype::APPARMOR
    } else {
        Lsmtype::NO_LSM
    };
    let mut img = ImageWriter::new(imgdir::INVENTORY, "INVENTORY");
    push(
        &mut img,
        &Inventory_entry {
            img_version: Some(2),
            fdinfo_per_id: Some(true),
            root_ids: MessageField::some(root_ids),
            ns_per_id: Some(true),
            root_cg_set: Some(1),
            lsmtype: Some(EnumOrUnknown::new(lsmtype)),
            network_lock_method: Some(opts.network_lock.inventory_value()),
            plugins_entry: MessageField::some(Plugins_entry::default()),
            dump_criu_run_id: Some(run_id.to_string()),
            // CRIU's mark: a restore must say --tcp-close too.
            tcp_close: opts.tcp_close.then_some(true),
            ..Default::default()
        },
    )?;
    if live_jobs.is_empty() {
        dir.write(img)?;
    } else {
        // The set is complete (inventory, checksums) only once the live copy is done.
        *deferred_inventory = Some(img);
    }
    Ok(dir)
}

/// What a dump hands back besides its images: the memory writes can be tracked in, by
/// process; with `--live`, the pages still to copy and the inventory held back until then.
#[derive(Default)]
struct Outputs {
    trackable: Vec<(Tid, Vec<(u64, u64)>)>,
    live_jobs: Vec<live::Job>,
    inventory: Option<ImageWriter>,
    /// `--live`: faults on protected memory are served from the first protection on.
    live: Option<live::Session>,
    /// Established TCP connections read in repair mode (see `files::Repaired`).
    repaired: files::Repaired,
    /// This dump's id (inventory's `dump_criu_run_id`; it names the network lock).
    run_id: String,
    /// The network lock: removed when dropped, unless the tree was killed.
    net_lock: Option<netlock::Lock>,
}

/// What the processes of one dump share while each is dumped.
struct ProcessCtx<'a> {
    opts: &'a DumpOptions,
    /// The pids the images record.
    vpids: &'a ns::Vpids,
    ns_ids: &'a mut ns::NsIds,
    files: &'a mut FileTable,
    dir: &'a mut ImageDir,
    seccomp: &'a mut Seccomp_entry,
    /// The N of this process's pages-N.img.
    pages_id: u32,
    stats: &'a mut DumpStats,
    /// Shared anonymous objects met so far (their contents are saved after all processes).
    shmem: &'a mut shmem::ShmemObjects,
    /// The fd table of each live process dumped so far: (pid, files_id).
    fd_tables: &'a mut Vec<(Tid, u32)>,
    /// The memory writes can be tracked in, by process (see `track`).
    trackable: &'a mut Vec<(Tid, Vec<(u64, u64)>)>,
    /// Pages copied after the tree runs again (`--live`).
    live_jobs: &'a mut Vec<live::Job>,
    live: Option<&'a live::Session>,
}

/// The pages of process `pid` (VMAs `vmas`): pages-`pages_id`.img and pagemap-PID.img.
/// With a `parent` image directory, pages not written since it was dumped (see `track`)
/// and held by it are left to it (`PE_PARENT` entries) instead of copied.
// Each argument is one thing the memory of a process goes into or comes from.
#[allow(clippy::too_many_arguments)]
fn dump_memory(
    (pid, vpid): (Tid, u32),
    proc_dir: &ProcDir,
    vmas: &[mm::DumpVma],
    dir: &mut ImageDir,
    pages_id: u32,
    parent: Option<&std::path::Path>,
    stats: &mut DumpStats,
    live: Option<Vec<(u64, u64)>>,
) -> Result<Option<live::Job>> {
    let t = Instant::now();
    let scan: Vec<pages::ScanVma> = vmas.iter().filter_map(|v| v.scan()).collect();
    let (runs, scanned) = pages::scan(proc_dir, &scan)?;
    let (runs, from_parent) = match parent {
        Some(p) => {
            let written = pages::written(proc_dir, &scan)?;
            let cover = parent_cover(p, vpid)?;
            pages::split_parent(&runs, &written, &cover)
        }
        None => (runs, Vec::new()),
    };
    stats.memdump_time += t.elapsed();
    let total_pages: u64 = runs.iter().map(|r| r.pages).sum();
    let t = Instant::now();
    let pages_name = format!("pages-{pages_id}.img");
    let pages_len = total_pages * PAGE_SIZE;
    let (pages_file, pages_path) = dir.create_raw(&pages_name, pages_len)?;
    let hash = dir.checksums();
    let mut job = None;
    let copied = match live {
        None => {
            let c = pages::copy(pid, &runs, &pages_file, &pages_path, hash)?;
            dir.raw_written(&pages_name, pages_len, c.segments)?;
            pages::CopyStats {
                segments: Vec::new(),
                ..c
            }
        }
        Some(protected) => {
            // Pages of protected memory are copied once the tree runs again; the others
            // now, at their offsets.
            let (later, now) = live::split(&runs, &protected);
            live::copy_now(pid, &now, &pages_file, &pages_path)?;
            job = Some(live::Job {
                pid,
                runs: later,
                pages_name: pages_name.clone(),
                pages_file: pages_file.try_clone().map_err(|source| DumpError::Write {
                    path: pages_path.clone(),
                    source,
                })?,
                pages_path: pages_path.clone(),
                pages_len,
            });
            pages::CopyStats {
                bytes: now.iter().map(|r| r.1 * PAGE_SIZE).sum(),
                batches: now.len(),
                segments: Vec::new(),
            }
        }
    };
    stats.memwrite_time += t.elapsed();
    stats.pages_scanned += scanned;
    stats.pages_written += total_pages;
    let in_parent: u64 = from_parent.iter().map(|(s, e)| (e - s) / PAGE_SIZE).sum();
    stats.pages_skipped_parent += in_parent;
    debug!(
        pid,
        pages = total_pages,
        in_parent,
        batches = copied.batches,
        bytes = copied.bytes,
        ms = stats.memwrite_time.as_millis() as u64,
        "pages copied"
    );
    let mut img = ImageWriter::new(format!("pagemap-{vpid}.img"), "PAGEMAP");
    push(
        &mut img,
        &Pagemap_head {
            pages_id: Some(pages_id),
            ..Default::default()
        },
    )?;
    const PE_PARENT: u32 = 1 << 0;
    const PE_LAZY: u32 = 1 << 1;
    const PE_PRESENT: u32 = 1 << 2;
    let mut entries: Vec<(u64, u64, u32)> = pages::pagemap_entries(&runs)
        .into_iter()
        .map(|(vaddr, n, lazy)| {
            let f = if lazy {
                PE_LAZY | PE_PRESENT
            } else {
                PE_PRESENT
            };
            (vaddr, n, f)
        })
        .chain(
            from_parent
                .iter()
                .map(|&(s, e)| (s, (e - s) / PAGE_SIZE, PE_PARENT)),
        )
        .collect();
    entries.sort_unstable_by_key(|e| e.0);
    for (vaddr, n, flags) in entries {
        push(
            &mut img,
            &Pagemap_entry {
                vaddr: Some(vaddr),
                compat_nr_pages: Some(0),
                flags: Some(flags),
                nr_pages: Some(n),
                ..Default::default()
            },
        )?;
    }
    dir.write(img)?;
    Ok(job)
}

/// The address ranges the parent images hold pages of for process `pid` (present or, in
/// turn, in their own parent), merged; none when the parent has no pagemap for it.
fn parent_cover(parent: &std::path::Path, vpid: u32) -> Result<Vec<(u64, u64)>> {
    let name = format!("pagemap-{vpid}.img");
    let path = parent.join(&name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(DumpError::Write { path, source }),
    };
    let label = path.display().to_string();
    let mut r = crs_images::codec::ImageReader::new(&label, &bytes, "PAGEMAP")
        .map_err(files::image_err(&name))?;
    let _head: Option<Pagemap_head> = r.next().map_err(files::image_err(&name))?;
    let entries: Vec<Pagemap_entry> = r.all().map_err(files::image_err(&name))?;
    let mut out: Vec<(u64, u64)> = Vec::new();
    for e in entries {
        let n = if e.has_nr_pages() {
            e.nr_pages()
        } else {
            u64::from(e.compat_nr_pages())
        };
        let f = e.flags.unwrap_or(if e.in_parent() { 1 } else { 4 });
        if f & (1 | 4) == 0 || n == 0 {
            continue;
        }
        let (s, end) = (e.vaddr(), e.vaddr().saturating_add(n * PAGE_SIZE));
        match out.last_mut() {
            Some(last) if last.1 == s => last.1 = end,
            _ => out.push((s, end)),
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// The processes below `root`, depth first (children by pid): (pid, ppid, zombie).
fn tree_order(tree: &SeizedTree, root: Tid) -> Result<Vec<(Tid, Tid, bool)>> {
    let mut all: Vec<(Tid, Tid, bool)> = tree
        .processes()
        .map(|p| (p.pid(), p.ppid(), false))
        .collect();
    for z in tree.zombies() {
        let stat = ProcDir::open(z)
            .and_then(|d| d.stat())
            .map_err(proc_err(z, "stat of a zombie"))?;
        all.push((z, stat.ppid, true));
    }
    all.sort_unstable();
    let mut out = Vec::with_capacity(all.len());
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        let Some(&me) = all.iter().find(|p| p.0 == pid) else {
            continue;
        };
        out.push(me);
        // Reversed onto the stack: the lowest pid comes out first.
        todo.extend(
            all.iter()
                .rev()
                .filter(|p| p.1 == pid && p.0 != root)
                .map(|p| p.0),
        );
    }
    check_closed(&all, &out)?;
    Ok(out)
}

/// The images describe a tree: every child of a held process must be in it, and every
/// process in it must hang from the root. compel walks until nothing changes; this checks
/// it once more from /proc, while everything is stopped, so a tree that changed under the
/// walk is refused rather than written with a process missing.
fn check_closed(all: &[(Tid, Tid, bool)], ordered: &[(Tid, Tid, bool)]) -> Result<()> {
    let known: std::collections::HashSet<Tid> = all.iter().map(|p| p.0).collect();
    for &(pid, _, zombie) in all {
        if zombie {
            continue;
        }
        let kids = ProcDir::open(pid)
            .and_then(|d| d.children())
            .map_err(proc_err(pid, "the children"))?;
        if let Some(&child) = kids.iter().find(|c| !known.contains(c)) {
            return Err(DumpError::TreeChanged {
                pid: child,
                why: format!("a child of process {pid}, it was not held"),
            });
        }
    }
    if ordered.len() != all.len() {
        let reached: std::collections::HashSet<Tid> = ordered.iter().map(|p| p.0).collect();
        if let Some(&(pid, ppid, _)) = all.iter().find(|p| !reached.contains(&p.0)) {
            return Err(DumpError::TreeChanged {
                pid,
                why: format!("held, its parent {ppid} is not in the tree"),
            });
        }
    }
    Ok(())
}

/// The files_id of the process of `tables` whose fd table `pid` shares (kcmp KCMP_FILES).
fn shared_fd_table(pid: Tid, tables: &[(Tid, u32)]) -> Result<Option<u32>> {
    for &(other, files_id) in tables {
        let same = crs_sys::dump::kcmp(pid, other, crs_sys::dump::kcmp_type::FILES, 0, 0).map_err(
            |source| DumpError::Kcmp {
                pid,
                what: "fd tables",
                source,
            },
        )?;
        if same == 0 {
            return Ok(Some(files_id));
        }
    }
    Ok(None)
}

/// core-PID.img of a zombie: its state and wait status, nothing else (as CRIU).
/// `pid`: as the images record it.
fn dump_zombie(dir: &mut ImageDir, pid: u32, stat: &crs_proc::Stat) -> Result<()> {
    const TASK_DEAD: u32 = 2;
    let mut img = ImageWriter::new(format!("core-{pid}.img"), "CORE");
    push(
        &mut img,
        &Core_entry {
            mtype: Some(EnumOrUnknown::new(March::X86_64)),
            tc: MessageField::some(Task_core_entry {
                task_state: Some(TASK_DEAD),
                exit_code: Some(stat.exit_code as u32),
                personality: Some(0),
                flags: Some(stat.flags),
                blk_sigset: Some(0),
                comm: Some(String::from_utf8_lossy(&stat.comm).into_owned()),
                ..Default::default()
            }),
            ..Default::default()
        },
    )?;
    dir.write(img)
}

/// The files of a live process that [`dump_process`] reads before it injects anything
/// (besides `stat` and each thread's `status`), read ahead for every process.
const PREFETCHED: &[&str] = &[
    "smaps",
    "auxv",
    "limits",
    "timers",
    "personality",
    "loginuid",
    "oom_score_adj",
    "cgroup",
];

/// Every image of one live process; returns its thread ids (the leader first).
fn dump_process(
    tree: &mut SeizedTree,
    proc_dir: &ProcDir,
    stat: &crs_proc::Stat,
    ctx: &mut ProcessCtx<'_>,
) -> Result<Vec<u32>> {
    let pid = proc_dir.pid();
    let opts = ctx.opts;
    let proc_ = tree.process(pid).ok_or(DumpError::Seize {
        pid,
        source: crs_compel::Error::NotSeized { tid: pid },
    })?;
    let stopped = proc_.was_stopped();
    // The job-control signal that stopped it (SIGTSTP from a terminal, ...), restored as is.
    let stop_signo = proc_.stop_signal().unwrap_or(libc::SIGSTOP);
    let mut tids: Vec<Tid> = proc_.threads().iter().map(|t| t.tid()).collect();
    tids.sort_by_key(|&t| (t != pid, t));

    // /proc first, while the task's address space is exactly as it was (nothing mapped).
    let vmas = mm::collect_vmas(proc_dir, ctx.files)?;
    for v in &vmas {
        if let Some(shmid) = v.anon_shared() {
            ctx.shmem.saw(
                shmid,
                pid,
                v.entry.start.unwrap_or(0),
                v.entry.end.unwrap_or(0),
            );
        }
    }
    let exe_file_id = mm::exe_file_id(proc_dir, ctx.files)?;
    let saved_auxv = mm::saved_auxv(proc_dir)?;
    let limits = proc_dir.limits().map_err(proc_err(pid, "limits"))?;
    let timers = proc_dir.timers().map_err(proc_err(pid, "timers"))?;
    let personality = proc_dir
        .personality()
        .map_err(proc_err(pid, "personality"))?;
    let loginuid = proc_dir.loginuid().map_err(proc_err(pid, "loginuid"))?;
    let oom_score_adj: i32 = String::from_utf8_lossy(
        &proc_dir
            .read("oom_score_adj")
            .map_err(proc_err(pid, "oom_score_adj"))?,
    )
    .trim()
    .parse()
    .unwrap_or(0);
    let mut ids = ctx.ns_ids.ids(proc_dir)?;
    // An fd table shared with a process dumped before (CLONE_FILES) keeps that one's id
    // and fdinfo image; its fds are not dumped again.
    let shared_table = shared_fd_table(pid, ctx.fd_tables)?;
    match shared_table {
        Some(files_id) => ids.files_id = Some(files_id),
        None => ctx.fd_tables.push((pid, ids.files_id.unwrap_or(1))),
    }
    let same_cgroup = proc_dir.read("cgroup").ok() == std::fs::read("/proc/self/cgroup").ok();
    if !same_cgroup {
        warn!(
            pid,
            "task is in other cgroups than crs; cgroup.img is not written yet"
        );
    }
    let cg_set = if same_cgroup { 1 } else { 2 };

    // Thread state: ptrace reads, then what only the task can tell.
    let mut states = Vec::new();
    for &tid in &tids {
        let mut st = tree
            .thread_state(tid)
            .map_err(compel_err(tid, "reading the thread state"))?;
        core::fill_legacy_fpu(tid, &mut st.xstate)?;
        let status = proc_dir
            .task(tid)
            .and_then(|t| t.status())
            .map_err(proc_err(pid, "task status"))?;
        states.push((tid, st, status));
    }
    let mut remote = Remote::new(tree, pid)?;
    // Only the signals with a handler or ignored, and SIGCHLD (whose SA_NOCLDSTOP and
    // SA_NOCLDWAIT act even at SIG_DFL), are asked for: at SIG_DFL the rest have no
    // behaviour to save (flags left on a default action do nothing): 3 questions instead of
    // 62 for a plain process.
    let leader_status = &states[0].2;
    let asked = leader_status.sig_cgt.0 | leader_status.sig_ign.0 | 1 << (libc::SIGCHLD - 1);
    // /proc lists the newest timer first; CRIU's images (and its restore, which creates
    // them in id order) have them oldest first.
    let timer_ids: Vec<i32> = timers.iter().rev().map(|t| t.id).collect();
    // One batch of injected syscalls for the process and its leader, one per other thread.
    let (answers, leader_extra) = remote.process(asked, &timer_ids)?;
    let membarrier = remote.membarrier_registrations()?;
    let sigactions = answers.sigactions;
    let itimers = answers.itimers;
    let posix: Vec<_> = timers
        .iter()
        .rev()
        .zip(&answers.posix)
        .map(|(t, (val, overrun))| {
            // The thread it signals, as the images record pids.
            let t = crs_proc::PosixTimer {
                notify_pid: ctx.vpids.tree(t.notify_pid) as i32,
                ..t.clone()
            };
            core::posix_timer(&t, val, *overrun)
        })
        .collect();
    let child_subreaper = answers.child_subreaper;
    let dumpable = answers.dumpable;
    let thp_disabled = answers.thp_disabled;
    let brk = answers.brk;
    let mut extras = vec![leader_extra];
    for &tid in &tids[1..] {
        extras.push(remote.thread(tid)?);
    }

    // Files: fds, then cwd and root (ids in the order CRIU gives them).
    let fds = if shared_table.is_some() {
        Vec::new()
    } else {
        ctx.files.dump_fds(tree, proc_dir, opts.file_locks)?
    };
    let cwd_link = proc_dir.cwd().map_err(proc_err(pid, "cwd link"))?;
    let cwd = files::open_link(&proc_dir.path().join("cwd"), pid)?;
    let cwd_id = ctx.files.special(&cwd_link, &cwd, 0)?;
    let root_link = proc_dir.root().map_err(proc_err(pid, "root link"))?;
    let root = files::open_link(&proc_dir.path().join("root"), pid)?;
    let root_id = ctx.files.special(&root_link, &root, 0)?;

    // Memory.
    let parent = opts.parent_dir();
    let trackable: Vec<(u64, u64)> = vmas.iter().filter_map(|v| v.trackable()).collect();
    let live = match ctx.live {
        Some(session) => Some(session.arm(tree, pid, &trackable)?),
        None => None,
    };
    if let Some(job) = dump_memory(
        (pid, ctx.vpids.tree(pid)),
        proc_dir,
        &vmas,
        ctx.dir,
        ctx.pages_id,
        parent.as_deref(),
        ctx.stats,
        live,
    )? {
        ctx.live_jobs.push(job);
    }
    ctx.trackable.push((pid, trackable));

    // mm-PID.img
    let mut img = ImageWriter::new(format!("mm-{}.img", ctx.vpids.tree(pid)), "MM");
    push(
        &mut img,
        &Mm_entry {
            mm_start_code: Some(stat.start_code),
            mm_end_code: Some(stat.end_code),
            mm_start_data: Some(stat.start_data),
            mm_end_data: Some(stat.end_data),
            mm_start_stack: Some(stat.start_stack),
            mm_start_brk: Some(stat.start_brk),
            mm_brk: Some(brk),
            mm_arg_start: Some(stat.arg_start),
            mm_arg_end: Some(stat.arg_end),
            mm_env_start: Some(stat.env_start),
            mm_env_end: Some(stat.env_end),
            exe_file_id: Some(exe_file_id),
            mm_saved_auxv: saved_auxv,
            vmas: vmas.iter().map(|v| v.entry.clone()).collect(),
            dumpable: Some(dumpable),
            thp_disabled: Some(thp_disabled),
            ..Default::default()
        },
    )?;
    ctx.dir.write(img)?;

    // seccomp.img: every thread's filter chain, oldest filter first.
    let seccomp = &mut *ctx.seccomp;
    let mut filter_pos = Vec::new();
    for (_, st, _) in &states {
        if st.seccomp_filters.is_empty() {
            filter_pos.push(None);
            continue;
        }
        let base = seccomp.seccomp_filters.len();
        for (i, f) in st.seccomp_filters.iter().rev().enumerate() {
            let bytes: Vec<u8> = f
                .program
                .iter()
                .flat_map(|ins| {
                    let mut b = Vec::with_capacity(8);
                    b.extend_from_slice(&ins.code.to_ne_bytes());
                    b.push(ins.jt);
                    b.push(ins.jf);
                    b.extend_from_slice(&ins.k.to_ne_bytes());
                    b
                })
                .collect();
            seccomp.seccomp_filters.push(Seccomp_filter {
                filter: Some(bytes),
                prev: (i > 0).then(|| (base + i - 1) as u32),
                flags: Some(f.flags as u32),
                ..Default::default()
            });
        }
        filter_pos.push(Some((seccomp.seccomp_filters.len() - 1) as u32));
    }
    // core-TID.img
    let comm = String::from_utf8_lossy(&stat.comm).into_owned();
    for (i, ((tid, st, status), extra)) in states.iter().zip(&extras).enumerate() {
        let leader = *tid == pid;
        let thread_comm = proc_dir
            .task(*tid)
            .and_then(|t| t.stat())
            .map(|s| String::from_utf8_lossy(&s.comm).into_owned())
            .unwrap_or_else(|_| comm.clone());
        let mut core = Core_entry {
            mtype: Some(EnumOrUnknown::new(March::X86_64)),
            thread_info: MessageField::some(core::thread_info(
                st,
                &extra.tls,
                extra.clear_tid_addr,
            )),
            thread_core: MessageField::some(core::thread_core(
                st,
                extra,
                status,
                &thread_comm,
                leader,
                filter_pos[i],
                cg_set,
            )),
            ..Default::default()
        };
        if leader {
            let itimer = |t: &task::TimerVal| Itimer_entry {
                isec: Some(t.interval.0),
                iusec: Some(t.interval.1),
                vsec: Some(t.value.0),
                vusec: Some(t.value.1),
                ..Default::default()
            };
            let rlimits = (0..RLIM_NLIMITS)
                .map(|r| {
                    let (cur, max) = limits.limits[r]
                        .map(|l| l.as_raw())
                        .unwrap_or((u64::MAX, u64::MAX));
                    Rlimit_entry {
                        cur: Some(cur),
                        max: Some(max),
                        ..Default::default()
                    }
                })
                .collect();
            let sigactions = sigactions
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    *i + 1 != libc::SIGKILL as usize && *i + 1 != libc::SIGSTOP as usize
                })
                .map(|(_, a)| Sa_entry {
                    sigaction: Some(a.handler),
                    flags: Some(a.flags),
                    restorer: Some(a.restorer),
                    mask: Some(a.mask),
                    compat_sigaction: Some(false),
                    ..Default::default()
                })
                .collect();
            core.tc = MessageField::some(Task_core_entry {
                task_state: Some(if stopped { TASK_STOPPED } else { TASK_ALIVE }),
                membarrier_registration_mask: (membarrier != 0).then_some(membarrier),
                exit_code: Some(0),
                personality: Some(personality),
                flags: Some(stat.flags),
                blk_sigset: Some(st.sigmask),
                comm: Some(comm.clone()),
                timers: MessageField::some(Task_timers_entry {
                    real: MessageField::some(itimer(&itimers[0])),
                    virt: MessageField::some(itimer(&itimers[1])),
                    prof: MessageField::some(itimer(&itimers[2])),
                    posix: posix.clone(),
                    ..Default::default()
                }),
                rlimits: MessageField::some(Task_rlimits_entry {
                    rlimits,
                    ..Default::default()
                }),
                signals_s: MessageField::some(core::signal_queue(&st.shared_pending)),
                loginuid: Some(loginuid),
                oom_score_adj: Some(oom_score_adj),
                sigactions,
                child_subreaper: Some(child_subreaper),
                stop_signo: stopped.then_some(stop_signo as u32),
                ..Default::default()
            });
        }
        let mut img = ImageWriter::new(format!("core-{}.img", ctx.vpids.tree(*tid)), "CORE");
        push(&mut img, &core)?;
        ctx.dir.write(img)?;
    }

    // ids, files, fdinfo, fs
    let files_id = ids.files_id.unwrap_or(1);
    let vpid = ctx.vpids.tree(pid);
    let mut img = ImageWriter::new(format!("ids-{vpid}.img"), "IDS");
    push(&mut img, &ids)?;
    ctx.dir.write(img)?;
    if shared_table.is_none() {
        ctx.dir.write(files::fdinfo_image(files_id, &fds)?)?;
    }
    let status = &states[0].2;
    let mut img = ImageWriter::new(format!("fs-{vpid}.img"), "FS");
    push(
        &mut img,
        &Fs_entry {
            cwd_id: Some(cwd_id),
            root_id: Some(root_id),
            umask: status.umask,
            ..Default::default()
        },
    )?;
    ctx.dir.write(img)?;

    Ok(tids.iter().map(|&t| t as u32).collect())
}
