//! Loading and validating every image of a dump (every process of the tree) before
//! anything is touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::core::{core_entry::March, Core_entry, Task_kobj_ids_entry, Thread_core_entry};
use crs_images::pb::core_x86::{Thread_info_x86, User_x86_regs_mode};
use crs_images::pb::fdinfo::{Fd_types, Fdinfo_entry, File_entry};
use crs_images::pb::fs::Fs_entry;
use crs_images::pb::inventory::Inventory_entry;
use crs_images::pb::mm::Mm_entry;
use crs_images::pb::pagemap::{Pagemap_entry, Pagemap_head};
use crs_images::pb::pstree::Pstree_entry;
use crs_images::pb::regfile::Reg_file_entry;
use protobuf::MessageFull;

use crate::error::{invalid, unsupported};
use crate::files::{self, FileImages};
use crate::vma::{self, Vma};
use crate::RestoreError;

pub(crate) const PAGE: u64 = 4096;
/// Most auxv words an mm image may hold (64 pairs; the kernel's own vector is shorter).
pub(crate) const AUXV_WORDS: usize = 2 * 64;
/// Highest user address of x86_64 with 4-level paging.
pub(crate) const TASK_SIZE: u64 = 0x7fff_ffff_f000;

/// pagemap_entry flags.
const PE_PARENT: u32 = 1;
const PE_PRESENT: u32 = 4;

/// A run of pages to copy from the pages image into the task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageRun {
    pub addr: u64,
    pub len: u64,
    /// Offset in the pages image.
    pub offset: u64,
}

/// Every image of one live process of the dump, decoded and checked.
#[derive(Debug)]
pub(crate) struct Images {
    pub pid: i32,
    pub pstree: Pstree_entry,
    pub core: Core_entry,
    /// The other threads, in pstree order (the leader is `core`).
    pub threads: Vec<ThreadImage>,
    pub mm: Mm_entry,
    pub vmas: Vec<Vma>,
    pub runs: Vec<PageRun>,
    pub pages_path: PathBuf,
    /// Pages left to the parent image sets of an incremental dump: runs by pages file.
    pub parent_pages: Vec<(PathBuf, Vec<PageRun>)>,
    pub fs: Fs_entry,
    /// files.img by id, one for the whole tree.
    pub files: Arc<BTreeMap<u32, File_entry>>,
    pub fdinfo: Vec<Fdinfo_entry>,
    /// Ghost files, remaps and pipe data, one for the whole tree.
    pub file_images: Arc<FileImages>,
    /// Messages queued on the unix sockets (sk-queues.img), by receiving file id.
    pub unix_queues: crate::unixsk::Queues,
    /// The whole queues of its unix sockets on which a message passes fds, queued once
    /// every process holds its fds (`unixsk::queue_passing`).
    pub unix_passing: crate::unixsk::Passing,
    /// Its fd table's id (ids-PID.img): processes with the same one share one table
    /// (CLONE_FILES). Only the first of them in pstree order has `fdinfo` and
    /// `unix_queues`; the others' are empty, their fds are its fds.
    pub files_id: u32,
    /// Its fd table is an earlier process's (CLONE_FILES): that one places the fds.
    pub shares_fd_table: bool,
    /// Its ids (ids-PID.img): namespaces and shared kernel objects.
    pub ids: Task_kobj_ids_entry,
    /// Its pid in crs's pid namespace, once it exists (see [`HostPid`]).
    pub host: HostPid,
    /// In a pid namespace of the tree's own (`ns`): its pids inside are not crs's.
    pub own_pid_ns: bool,
}

/// The pid crs knows a restored task by. The images hold the pids the tree sees: in a pid
/// namespace of the tree's own those differ from crs's, which are known only once the
/// task exists (`ns::find_hosts`, `threads`). Until set it is the image's pid. Everything
/// crs does to a task from outside (ptrace, /proc, pidfds, signals, CPU masks) uses this;
/// what the task is told to do inside (clone3 `set_tid`, setpgid, fcntl owners, timers)
/// uses the image's.
#[derive(Debug)]
pub(crate) struct HostPid(std::sync::atomic::AtomicI32);

impl HostPid {
    pub fn new(pid: i32) -> HostPid {
        HostPid(std::sync::atomic::AtomicI32::new(pid))
    }

    pub fn get(&self) -> i32 {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set(&self, pid: i32) {
        self.0.store(pid, std::sync::atomic::Ordering::Relaxed)
    }
}

/// task_state of a zombie in core.tc.
const TASK_DEAD: u32 = 2;

/// Every process of a dump.
#[derive(Debug)]
pub(crate) struct Tree {
    /// pstree.img, parents before children.
    pub entries: Vec<Pstree_entry>,
    /// The live processes, in pstree order (the root first).
    pub procs: Vec<Images>,
    /// The zombies.
    pub zombies: Vec<Zombie>,
    /// inventory.img's `root_ids`: the namespaces of the dumping crs or criu (a process
    /// in others has its own, see `ns`).
    pub root_ids: Option<Task_kobj_ids_entry>,
    /// inventory.img's network lock: CRIU's method number (0 iptables, 1 nftables, 2 none)
    /// and the dump's run id (which names an nftables lock).
    pub net_lock: (u32, String),
    /// inventory.img's `tcp_close`: dumped with --tcp-close (connections without their
    /// state, to restore closed).
    pub tcp_close: bool,
}

impl Tree {
    /// The ids of the files of type `kind` some process holds.
    pub fn held(&self, kind: Fd_types) -> std::collections::BTreeSet<u32> {
        self.procs
            .iter()
            .flat_map(|p| p.fdinfo.iter())
            .filter(|e| e.type_() == kind)
            .map(|e| e.id())
            .collect()
    }

    /// crs's pid of process or zombie `pid` of the images (see [`HostPid`]).
    pub fn host_of(&self, pid: i32) -> Option<i32> {
        self.procs
            .iter()
            .find(|p| p.pid == pid)
            .map(|p| p.host.get())
            .or_else(|| {
                self.zombies
                    .iter()
                    .find(|z| z.pid == pid)
                    .map(|z| z.host.get())
            })
    }
}

/// A dumped zombie: only its wait status is left.
#[derive(Debug)]
pub(crate) struct Zombie {
    pub pid: i32,
    /// Its pid in crs's pid namespace (see [`HostPid`]).
    pub host: HostPid,
    pub wait_status: i32,
}

/// The core image of one non-leader thread.
#[derive(Debug)]
pub(crate) struct ThreadImage {
    pub tid: i32,
    /// Its tid in crs's pid namespace (see [`HostPid`]).
    pub host: HostPid,
    pub core: Core_entry,
}

impl ThreadImage {
    /// Its thread_core (checked at load).
    pub fn thread_core(&self) -> &Thread_core_entry {
        self.core.thread_core.as_ref().expect("checked at load")
    }

    /// Its thread_info (checked at load).
    pub fn thread_info(&self) -> &Thread_info_x86 {
        self.core.thread_info.as_ref().expect("checked at load")
    }
}

fn read_all<M: MessageFull>(
    dir: &Path,
    name: &str,
    magic: &'static str,
) -> Result<Vec<M>, RestoreError> {
    let path = dir.join(name);
    let bytes = read_file(&path)?;
    let label = path.display().to_string();
    let mut r = ImageReader::new(&label, &bytes, magic)?;
    Ok(r.all::<M>()?)
}

/// [`read_all`] of an image CRIU leaves out when it would be empty (fdinfo of a process
/// without fds): a missing file is no entries, as CRIU reads it.
fn read_all_or_none<M: MessageFull>(
    dir: &Path,
    name: &str,
    magic: &'static str,
) -> Result<Vec<M>, RestoreError> {
    if !dir.join(name).exists() {
        return Ok(Vec::new());
    }
    read_all(dir, name, magic)
}

pub(crate) fn read_one<M: MessageFull>(
    dir: &Path,
    name: &str,
    magic: &'static str,
) -> Result<M, RestoreError> {
    let path = dir.join(name);
    let bytes = read_file(&path)?;
    let label = path.display().to_string();
    let mut r = ImageReader::new(&label, &bytes, magic)?;
    // The first entry, and no other (not decoding every copy of a bloated image).
    match (r.next::<M>()?, r.next::<M>()?) {
        (Some(m), None) => Ok(m),
        (None, _) => Err(invalid(name, "no entry, expected 1")),
        (Some(_), Some(_)) => Err(invalid(name, "more than one entry, expected 1")),
    }
}

impl Images {
    /// Reads and validates the images of every process in `dir`: the processes in pstree
    /// order (the root first), the zombies apart.
    pub fn load_tree(dir: &Path) -> Result<Tree, RestoreError> {
        let inv: Inventory_entry = read_one(dir, "inventory.img", "INVENTORY")?;
        if inv.img_version() != 2 {
            return Err(invalid(
                "inventory.img",
                format!("image version {}", inv.img_version()),
            ));
        }
        let entries: Vec<Pstree_entry> = read_all(dir, "pstree.img", "PSTREE")?;
        if entries.is_empty() {
            return Err(invalid("pstree.img", "no process"));
        }
        check_pstree(&entries)?;
        // files.img and what it names (ghost files, pipe data, terminals): read once, for
        // every process.
        let files = Arc::new(load_files(dir)?);
        let file_images = Arc::new(files::load(dir, &files, inv.tcp_close())?);
        let mut procs = Vec::new();
        let mut zombies = Vec::new();
        for e in &entries {
            let name = format!("core-{}.img", e.pid());
            let core: Core_entry = read_one(dir, &name, "CORE")?;
            match core.tc.as_ref().map(|tc| tc.task_state()) {
                Some(TASK_DEAD) => {
                    if e.pid() == entries[0].pid() {
                        return Err(invalid(&name, "the root is a zombie"));
                    }
                    zombies.push(Zombie {
                        pid: e.pid() as i32,
                        host: HostPid::new(e.pid() as i32),
                        wait_status: core.tc.exit_code() as i32,
                    })
                }
                _ => {
                    let shared = (&files, &file_images);
                    let mut p = Images::load_one(dir, e.clone(), core, shared)?;
                    // A table shared with an earlier process (CLONE_FILES): its fds are
                    // placed once, by that process.
                    if procs.iter().any(|q: &Images| q.files_id == p.files_id) {
                        p.shares_fd_table = true;
                        p.fdinfo.clear();
                        p.unix_queues = Default::default();
                        p.unix_passing = Default::default();
                    }
                    procs.push(p)
                }
            }
        }
        Ok(Tree {
            entries,
            procs,
            zombies,
            net_lock: (
                inv.network_lock_method(),
                inv.dump_criu_run_id().to_string(),
            ),
            tcp_close: inv.tcp_close(),
            root_ids: inv.root_ids.into_option(),
        })
    }

    /// Reads and validates the images of one live process of `dir` (its leader's core
    /// image `core` read already, the tree's files.img and file images `files`).
    fn load_one(
        dir: &Path,
        pstree: Pstree_entry,
        core: Core_entry,
        (files, file_images): (&Arc<BTreeMap<u32, File_entry>>, &Arc<FileImages>),
    ) -> Result<Images, RestoreError> {
        let pid = pstree.pid();
        if pid == 0 || pid > i32::MAX as u32 {
            return Err(invalid("pstree.img", format!("pid {pid}")));
        }
        if pstree.threads.first() != Some(&pid) {
            return Err(invalid(
                "pstree.img",
                format!(
                    "thread list {:?} does not start with pid {pid}",
                    pstree.threads
                ),
            ));
        }
        let core_name = format!("core-{pid}.img");
        check_core(&core_name, &core)?;
        let mut threads = Vec::with_capacity(pstree.threads.len() - 1);
        let mut seen_tids = BTreeSet::from([pid]);
        for &tid in &pstree.threads[1..] {
            if tid == 0 || tid > i32::MAX as u32 || !seen_tids.insert(tid) {
                return Err(invalid(
                    "pstree.img",
                    format!("thread {tid} of pid {pid}: zero, too large or twice"),
                ));
            }
            let name = format!("core-{tid}.img");
            let core: Core_entry = read_one(dir, &name, "CORE")?;
            check_thread(&name, &core)?;
            threads.push(ThreadImage {
                tid: tid as i32,
                host: HostPid::new(tid as i32),
                core,
            });
        }
        let ids_name = format!("ids-{pid}.img");
        let ids: Task_kobj_ids_entry = if dir.join(&ids_name).exists() {
            read_one(dir, &ids_name, "IDS")?
        } else {
            core.ids
                .clone()
                .into_option()
                .ok_or_else(|| invalid(&core_name, format!("no ids, and no {ids_name} either")))?
        };

        let mm_name = format!("mm-{pid}.img");
        let mm: Mm_entry = read_one(dir, &mm_name, "MM")?;
        let vmas = vma::parse(&mm_name, &mm)?;
        if !mm.aios.is_empty() {
            return Err(unsupported(format!("{mm_name}: AIO rings")));
        }
        if mm.mm_saved_auxv.len() > AUXV_WORDS {
            return Err(invalid(
                &mm_name,
                format!("{} auxv words", mm.mm_saved_auxv.len()),
            ));
        }

        let pm_name = format!("pagemap-{pid}.img");
        let pm_path = dir.join(&pm_name);
        let pm_bytes = read_file(&pm_path)?;
        let label = pm_path.display().to_string();
        let mut r = ImageReader::new(&label, &pm_bytes, "PAGEMAP")?;
        let head: Pagemap_head = r
            .next()?
            .ok_or_else(|| invalid(&pm_name, "no pagemap_head"))?;
        let entries: Vec<Pagemap_entry> = r.all()?;
        let pages_name = format!("pages-{}.img", head.pages_id());
        let pages_path = dir.join(&pages_name);
        let pages_len = std::fs::metadata(&pages_path)
            .map_err(|source| RestoreError::PagesImage {
                image: pm_name.clone(),
                pages: pages_path.clone(),
                source,
            })?
            .len();
        let (runs, in_parent) = page_runs_split(
            &pm_name,
            &entries,
            (&mm_name, &vmas),
            (&pages_name, pages_len),
        )?;
        let parent_pages = parent_runs(dir, pid, &in_parent)?;

        let fs: Fs_entry = read_one(dir, &format!("fs-{pid}.img"), "FS")?;
        let fdinfo_name = format!("fdinfo-{}.img", ids.files_id());
        let fdinfo: Vec<Fdinfo_entry> = read_all_or_none(dir, &fdinfo_name, "FDINFO")?;
        let mut seen = BTreeSet::new();
        for e in &fdinfo {
            if !seen.insert(e.fd()) || e.fd() >= 1 << 20 {
                return Err(invalid(
                    &fdinfo_name,
                    format!("fd {} twice or too large", e.fd()),
                ));
            }
            let f = files.get(&e.id()).ok_or_else(|| {
                invalid(
                    &fdinfo_name,
                    format!(
                        "fd {} names file id {} absent from files.img",
                        e.fd(),
                        e.id()
                    ),
                )
            })?;
            match (f.type_(), e.type_()) {
                (Fd_types::REG, Fd_types::REG) => {
                    reg_of(f)?;
                }
                (Fd_types::PIPE, Fd_types::PIPE) => {
                    files::pipe_of(f)?;
                }
                (Fd_types::TTY, Fd_types::TTY) => {
                    crate::tty::tty_of(f)?;
                }
                (Fd_types::MEMFD, Fd_types::MEMFD) => {
                    if f.memfd.is_none() {
                        return Err(invalid(
                            "files.img",
                            format!("file id {} has no memfd entry", e.id()),
                        ));
                    }
                }
                (Fd_types::UNIXSK, Fd_types::UNIXSK) => {
                    crate::unixsk::check(f)?;
                }
                (Fd_types::PIDFD, Fd_types::PIDFD) => {
                    crate::pidfd::check(f)?;
                }
                (Fd_types::INETSK, Fd_types::INETSK) => {
                    crate::inetsk::check(f)?;
                }
                (Fd_types::NETLINKSK, Fd_types::NETLINKSK) => {
                    crate::nlsk::check(f)?;
                }
                (Fd_types::PACKETSK, Fd_types::PACKETSK) => {
                    crate::packetsk::check(f)?;
                }
                (ft, et) if ft == et && crate::anonfd::is_anon(ft) => {
                    crate::anonfd::check(f, files, &fdinfo, &fdinfo_name)?;
                }
                (ft, et) if ft != et => {
                    return Err(invalid(
                        &fdinfo_name,
                        format!(
                            "fd {} of type {et:?} names file id {} of type {ft:?}",
                            e.fd(),
                            e.id()
                        ),
                    ))
                }
                (_, et) => {
                    return Err(unsupported(format!(
                        "{fdinfo_name}: fd {} of type {et:?}",
                        e.fd()
                    )));
                }
            }
        }
        let (unix_queues, unix_passing) = crate::unixsk::load(dir, files, &fdinfo)?;
        let deleted = |id: u32, what: &str| {
            if file_images.ghost_of.contains_key(&id) {
                Err(unsupported(format!(
                    "files.img: file id {id}: {what} that was deleted (ghost file {})",
                    shown(files[&id].reg.name())
                )))
            } else {
                Ok(())
            }
        };
        for (id, what) in [
            // A deleted cwd comes back as its ghost directory (see `files::child_plan`).
            (fs.cwd_id(), None),
            (fs.root_id(), Some("a root directory")),
            // A deleted executable comes back as its ghost file (see `files::open_path`).
            (mm.exe_file_id(), None),
        ] {
            reg_of(
                files.get(&id).ok_or_else(|| {
                    invalid("fs/mm", format!("file id {id} absent from files.img"))
                })?,
            )?;
            if let Some(what) = what {
                deleted(id, what)?;
            }
        }
        for v in &vmas {
            if let Some(id) = v.file_id {
                reg_of(files.get(&id).ok_or_else(|| {
                    invalid(
                        &mm_name,
                        format!(
                            "VMA {:#x}-{:#x} maps file id {id} absent from files.img",
                            v.start, v.end
                        ),
                    )
                })?)?;
            }
        }
        Ok(Images {
            pid: pid as i32,
            pstree,
            core,
            threads,
            mm,
            vmas,
            runs,
            pages_path,
            parent_pages,
            fs,
            files: Arc::clone(files),
            fdinfo,
            file_images: Arc::clone(file_images),
            unix_queues,
            unix_passing,
            files_id: ids.files_id(),
            shares_fd_table: false,
            ids,
            host: HostPid::new(pid as i32),
            own_pid_ns: false,
        })
    }

    /// The regular-file entry with id `id` (checked to exist at load).
    pub fn reg(&self, id: u32) -> &Reg_file_entry {
        self.files[&id].reg.as_ref().expect("checked at load")
    }
}

/// files.img by id (absent: no files).
fn load_files(dir: &Path) -> Result<BTreeMap<u32, File_entry>, RestoreError> {
    let mut files = BTreeMap::new();
    let path = dir.join("files.img");
    if !path.exists() {
        return Ok(files);
    }
    let bytes = read_file(&path)?;
    let label = path.display().to_string();
    let mut r = ImageReader::new(&label, &bytes, "FILES")?;
    // Entry by entry: an id twice is refused before the rest is decoded.
    while let Some(f) = r.next::<File_entry>()? {
        let id = f.id();
        if files.insert(id, f).is_some() {
            return Err(invalid("files.img", format!("file id {id} twice")));
        }
    }
    Ok(files)
}

fn reg_of(f: &File_entry) -> Result<&Reg_file_entry, RestoreError> {
    let id = f.id();
    let reg = f
        .reg
        .as_ref()
        .ok_or_else(|| invalid("files.img", format!("file id {id} has no reg entry")))?;
    let name = reg.name();
    if reg.ext() {
        return Err(unsupported(format!(
            "files.img: file id {id}: external file {}",
            shown(name)
        )));
    }
    if name.len() >= PATH_MAX || name.contains('\0') {
        return Err(invalid(
            "files.img",
            format!(
                "file id {id}: path {} of {} bytes, or with a NUL byte",
                shown(name),
                name.len()
            ),
        ));
    }
    if !name.starts_with('/') {
        return Err(unsupported(format!(
            "files.img: file id {id}: path {} relative to another mount",
            shown(name)
        )));
    }
    Ok(reg)
}

/// The longest path the kernel takes, with its NUL.
const PATH_MAX: usize = 4096;

/// A name from an image as an error shows it: quoted, cut after 100 characters.
pub(crate) fn shown(name: &str) -> String {
    match name.char_indices().nth(100) {
        Some((at, _)) => format!("{:?}... ({} bytes)", &name[..at], name.len()),
        None => format!("{name:?}"),
    }
}

/// Checks pstree.img as a whole: every pid once, parents before their children (CRIU
/// writes the tree depth first, so no cycle), the root's parent outside the tree, sessions
/// and groups that can be pids or are 0 (a leader the dumper's pid namespace does not see,
/// as when crs runs in a container and the tree's session began outside it; such a
/// session is outside the tree), and every thread id distinct from every other pid and
/// thread id of the tree.
fn check_pstree(entries: &[Pstree_entry]) -> Result<(), RestoreError> {
    const IMAGE: &str = "pstree.img";
    let pid_like = |v: u32| v != 0 && v <= i32::MAX as u32;
    let mut seen = BTreeSet::new();
    for (k, e) in entries.iter().enumerate() {
        let pid = e.pid();
        if !pid_like(pid) || seen.contains(&pid) {
            return Err(invalid(
                IMAGE,
                format!("pid {pid}: zero, too large or twice"),
            ));
        }
        if k > 0 && !seen.contains(&e.ppid()) {
            return Err(invalid(
                IMAGE,
                format!("pid {pid}: parent {} not listed before it", e.ppid()),
            ));
        }
        for (what, v) in [("session", e.sid()), ("group", e.pgid())] {
            if v != 0 && !pid_like(v) {
                return Err(invalid(IMAGE, format!("pid {pid}: {what} {v}")));
            }
        }
        seen.insert(pid);
    }
    let root = &entries[0];
    if seen.contains(&root.ppid()) {
        return Err(invalid(
            IMAGE,
            format!(
                "root {}: its parent {} is a process of the tree (a cycle)",
                root.pid(),
                root.ppid()
            ),
        ));
    }
    // Thread ids: the leader's is its pid (checked with its images); every other one is
    // nobody else's pid or thread.
    let mut owner: BTreeMap<u32, u32> = entries.iter().map(|e| (e.pid(), e.pid())).collect();
    for e in entries {
        for &tid in e.threads.iter().skip(1) {
            if let Some(other) = owner.insert(tid, e.pid()) {
                return Err(invalid(
                    IMAGE,
                    if other == tid {
                        format!("thread {tid} of pid {}: the pid of a process", e.pid())
                    } else {
                        format!("thread {tid} of pid {}: a thread of pid {other}", e.pid())
                    },
                ));
            }
        }
    }
    Ok(())
}

/// task_state of a live task in core.tc.
const TASK_ALIVE: u32 = 1;
/// task_state of a task stopped by a job-control signal (its `stop_signo`).
pub(crate) const TASK_STOPPED: u32 = 3;

fn check_core(name: &str, core: &Core_entry) -> Result<(), RestoreError> {
    check_thread(name, core)?;
    let tc = core.tc.as_ref().ok_or_else(|| invalid(name, "no tc"))?;
    // Alive, or stopped by a job-control signal (stopped again before it is let go).
    match tc.task_state() {
        TASK_ALIVE => {}
        TASK_STOPPED => {
            if !matches!(
                tc.stop_signo() as i32,
                0 | libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
            ) {
                return Err(invalid(
                    name,
                    format!("stopped by signal {}, not a stop signal", tc.stop_signo()),
                ));
            }
        }
        other => {
            return Err(unsupported(format!(
                "{name}: task state {other} (only alive and stopped tasks)"
            )))
        }
    }
    let unknown = tc.membarrier_registration_mask() & !crate::task::MEMBARRIER_REGISTER_BITS;
    if unknown != 0 {
        return Err(unsupported(format!(
            "{name}: membarrier registrations {unknown:#x} (not a MEMBARRIER_CMD_REGISTER_* command)"
        )));
    }
    if tc.sigactions.len() > 64 {
        return Err(invalid(name, format!("{} sigactions", tc.sigactions.len())));
    }
    if tc.sigactions.iter().any(|sa| sa.compat_sigaction()) {
        return Err(unsupported(format!("{name}: compat sigactions")));
    }
    if let Some(rl) = tc.rlimits.as_ref() {
        if rl.rlimits.len() > 64 {
            return Err(invalid(
                name,
                format!("{} resource limits", rl.rlimits.len()),
            ));
        }
    }
    check_siginfo(name, tc.signals_s.iter().flat_map(|q| q.signals.iter()))
}

/// What every thread's core image needs: registers of a native task, a thread_core, a
/// known seccomp mode, well-formed queued signals.
fn check_thread(name: &str, core: &Core_entry) -> Result<(), RestoreError> {
    if core.mtype() != March::X86_64 {
        return Err(unsupported(format!(
            "{name}: machine type {:?}",
            core.mtype()
        )));
    }
    let ti = core
        .thread_info
        .as_ref()
        .ok_or_else(|| invalid(name, "no thread_info"))?;
    if ti.gpregs.mode() != User_x86_regs_mode::NATIVE {
        return Err(unsupported(format!("{name}: 32-bit (compat) tasks")));
    }
    let th = core
        .thread_core
        .as_ref()
        .ok_or_else(|| invalid(name, "no thread_core"))?;
    if th.seccomp_mode.is_some_and(|m| m.enum_value().is_err()) {
        return Err(invalid(
            name,
            format!("seccomp mode {}", th.seccomp_mode.map_or(0, |m| m.value())),
        ));
    }
    check_siginfo(name, th.signals_p.iter().flat_map(|q| q.signals.iter()))
}

fn check_siginfo<'a>(
    name: &str,
    signals: impl Iterator<Item = &'a crs_images::pb::siginfo::Siginfo_entry>,
) -> Result<(), RestoreError> {
    for s in signals {
        if s.siginfo().len() != 128 {
            return Err(invalid(
                name,
                format!("siginfo of {} bytes", s.siginfo().len()),
            ));
        }
    }
    Ok(())
}

/// Turns pagemap entries into runs with their pages-image offsets, checking that each lies
/// inside dumped VMAs (`vmas`, of image `mm`), that they are sorted and disjoint, and that
/// the pages image (`pages`, of `pages_len` bytes) holds them.
pub(crate) fn page_runs(
    image: &str,
    entries: &[Pagemap_entry],
    vmas: (&str, &[Vma]),
    pages: (&str, u64),
) -> Result<Vec<PageRun>, RestoreError> {
    let (runs, parent) = page_runs_split(image, entries, vmas, pages)?;
    if !parent.is_empty() {
        return Err(unsupported(format!(
            "{image}: pages in a parent image set (incremental dumps of this memory)"
        )));
    }
    Ok(runs)
}

/// Address ranges `[start, end)`.
pub(crate) type Ranges = Vec<(u64, u64)>;

/// [`page_runs`], and the ranges the entries leave to the parent image set (`PE_PARENT`),
/// merged, in address order.
pub(crate) fn page_runs_split(
    image: &str,
    entries: &[Pagemap_entry],
    (mm, vmas): (&str, &[Vma]),
    (pages, pages_len): (&str, u64),
) -> Result<(Vec<PageRun>, Ranges), RestoreError> {
    let mut parent: Vec<(u64, u64)> = Vec::new();
    let mut runs = Vec::with_capacity(entries.len());
    let mut offset = 0u64;
    let mut prev_end = 0u64;
    for (i, e) in entries.iter().enumerate() {
        let (nr, flags) = pages_and_flags(e);
        let addr = e.vaddr();
        let len = nr.checked_mul(PAGE).filter(|&l| l > 0 && l <= TASK_SIZE);
        let Some(len) = len else {
            return Err(invalid(
                image,
                format!("entry {} at {addr:#x}: {nr} pages", i + 1),
            ));
        };
        if addr % PAGE != 0
            || addr < prev_end
            || addr.checked_add(len).is_none_or(|e| e > TASK_SIZE)
        {
            return Err(invalid(
                image,
                format!(
                    "entry {} at {addr:#x}: unaligned, unsorted or out of range",
                    i + 1
                ),
            ));
        }
        prev_end = addr + len;
        if !vma::covered(vmas, addr, addr + len) {
            return Err(invalid(
                image,
                format!(
                    "entry {}: pages {addr:#x}-{prev_end:#x} outside the VMAs of {mm}",
                    i + 1
                ),
            ));
        }
        if flags & PE_PARENT != 0 {
            if flags & PE_PRESENT != 0 {
                return Err(invalid(
                    image,
                    format!(
                        "entry {} at {addr:#x}: both present and in the parent",
                        i + 1
                    ),
                ));
            }
            match parent.last_mut() {
                Some(last) if last.1 == addr => last.1 = addr + len,
                _ => parent.push((addr, addr + len)),
            }
            continue;
        }
        if flags & PE_PRESENT == 0 {
            continue;
        }
        runs.push(PageRun { addr, len, offset });
        offset += len;
    }
    if offset > pages_len {
        return Err(invalid(
            image,
            format!("pagemap needs {offset:#x} bytes of pages, {pages} has {pages_len:#x}"),
        ));
    }
    Ok((runs, parent))
}

/// A pagemap entry's page count and flags, as old images (no `nr_pages`, no `flags`, the
/// `in_parent` bool) say them too.
fn pages_and_flags(e: &Pagemap_entry) -> (u64, u32) {
    let nr = if e.has_nr_pages() {
        e.nr_pages()
    } else {
        u64::from(e.compat_nr_pages())
    };
    let flags = if e.has_flags() {
        e.flags()
    } else if e.in_parent() {
        PE_PARENT
    } else {
        PE_PRESENT
    };
    (nr, flags)
}

/// How many parent links a restore follows at most.
const MAX_PARENTS: usize = 64;

/// Where the pages of `ranges` (sorted) of process `pid`, left by `dir`'s pagemap to its
/// parent image set, are: the `parent` link of `dir` (CRIU's), then its own, each parent's
/// pagemap giving the pages it holds and leaving the rest to its parent. Runs by pages
/// file, nearest parent first. A page no image of the chain holds is an error.
fn parent_runs(
    dir: &Path,
    pid: u32,
    ranges: &[(u64, u64)],
) -> Result<Vec<(PathBuf, Vec<PageRun>)>, RestoreError> {
    let mut out = Vec::new();
    let mut want = ranges.to_vec();
    let mut at = dir.to_path_buf();
    for _ in 0..MAX_PARENTS {
        if want.is_empty() {
            return Ok(out);
        }
        let here = at.join("parent");
        let pm_name = format!("{}/pagemap-{pid}.img", here.display());
        if !here.is_dir() {
            return Err(invalid(
                &format!("pagemap-{pid}.img"),
                format!(
                    "pages {:#x}-{:#x} are in a parent image set, but {} has no parent link",
                    want[0].0,
                    want[0].1,
                    at.display()
                ),
            ));
        }
        let bytes = read_file(&here.join(format!("pagemap-{pid}.img")))?;
        let mut r = ImageReader::new(&pm_name, &bytes, "PAGEMAP")?;
        let head: Pagemap_head = r
            .next()?
            .ok_or_else(|| invalid(&pm_name, "no pagemap head"))?;
        let entries: Vec<Pagemap_entry> = r.all()?;
        let pages_path = here.join(format!("pages-{}.img", head.pages_id()));
        let pages_len = std::fs::metadata(&pages_path)
            .map_err(|source| RestoreError::PagesImage {
                image: pm_name.clone(),
                pages: pages_path.clone(),
                source,
            })?
            .len();
        let mut runs = Vec::new();
        let mut next = Vec::new();
        let mut covered: Vec<(u64, u64)> = Vec::new();
        let mut offset = 0u64;
        for e in &entries {
            let (nr, flags) = pages_and_flags(e);
            let (es, ee) = (e.vaddr(), e.vaddr().saturating_add(nr.saturating_mul(PAGE)));
            for &(ws, we) in &want {
                let (s, t) = (ws.max(es), we.min(ee));
                if s >= t {
                    continue;
                }
                if flags & PE_PRESENT != 0 {
                    runs.push(PageRun {
                        addr: s,
                        len: t - s,
                        offset: offset + (s - es),
                    });
                    covered.push((s, t));
                } else if flags & PE_PARENT != 0 {
                    next.push((s, t));
                    covered.push((s, t));
                }
            }
            if flags & PE_PRESENT != 0 {
                offset += ee - es;
            }
        }
        if offset > pages_len {
            return Err(invalid(
                &pm_name,
                format!(
                    "pagemap needs {offset:#x} bytes of pages, {} has {pages_len:#x}",
                    pages_path.display()
                ),
            ));
        }
        covered.sort_unstable();
        let wanted: u64 = want.iter().map(|(s, e)| e - s).sum();
        let got: u64 = covered.iter().map(|(s, e)| e - s).sum();
        if got != wanted {
            return Err(invalid(
                &pm_name,
                format!(
                    "pages left to it by {} are not all in it ({got:#x} of {wanted:#x} bytes)",
                    at.display()
                ),
            ));
        }
        next.sort_unstable();
        out.push((pages_path, runs));
        want = next;
        at = here;
    }
    Err(invalid(
        &format!("pagemap-{pid}.img"),
        format!("more than {MAX_PARENTS} parent image sets"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsets;

    fn vma(start: u64, end: u64) -> Vma {
        Vma {
            start,
            end,
            prot: 3,
            flags: (libc_consts::MAP_PRIVATE | libc_consts::MAP_ANONYMOUS) as u32,
            kind: vma::Kind::Anon,
            file_id: None,
            pgoff: 0,
            fdflags: 0,
            madv: 0,
        }
    }

    mod libc_consts {
        pub const MAP_PRIVATE: i32 = 2;
        pub const MAP_ANONYMOUS: i32 = 0x20;
    }

    fn entry(vaddr: u64, nr: u64, flags: u32) -> Pagemap_entry {
        let mut e = Pagemap_entry::new();
        e.set_vaddr(vaddr);
        e.set_compat_nr_pages(0);
        e.set_nr_pages(nr);
        e.set_flags(flags);
        e
    }

    fn pstree(pid: u32, ppid: u32, threads: &[u32]) -> Pstree_entry {
        Pstree_entry {
            pid: Some(pid),
            ppid: Some(ppid),
            pgid: Some(pid),
            sid: Some(pid),
            threads: threads.to_vec(),
            ..Default::default()
        }
    }

    fn pstree_err(entries: &[Pstree_entry]) -> String {
        match check_pstree(entries) {
            Err(e @ RestoreError::Invalid { .. }) => e.to_string(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn check_pstree_processes_with_threads_are_ok() {
        let e = [pstree(10, 0, &[10, 13]), pstree(11, 10, &[11, 14, 15])];
        check_pstree(&e).unwrap();
    }

    #[test]
    fn check_pstree_thread_of_another_process_is_invalid() {
        let e = [pstree(10, 0, &[10, 12]), pstree(11, 10, &[11, 12])];
        let err = pstree_err(&e);
        assert!(
            err.contains("pstree.img") && err.contains("thread 12 of pid 11: a thread of pid 10"),
            "{err}"
        );
    }

    #[test]
    fn check_pstree_thread_that_is_a_pid_is_invalid() {
        let e = [pstree(10, 0, &[10, 11]), pstree(11, 10, &[11])];
        let err = pstree_err(&e);
        assert!(err.contains("thread 11 of pid 10"), "{err}");
    }

    #[test]
    fn check_pstree_thread_twice_is_invalid() {
        let e = [pstree(10, 0, &[10, 12, 12])];
        let err = pstree_err(&e);
        assert!(err.contains("thread 12 of pid 10"), "{err}");
    }

    #[test]
    fn check_pstree_root_parent_in_the_tree_is_invalid() {
        let e = [pstree(10, 11, &[10]), pstree(11, 10, &[11])];
        let err = pstree_err(&e);
        assert!(err.contains("root 10") && err.contains("cycle"), "{err}");
    }

    #[test]
    fn check_pstree_own_parent_is_invalid() {
        let e = [pstree(10, 0, &[10]), pstree(11, 11, &[11])];
        let err = pstree_err(&e);
        assert!(
            err.contains("pid 11: parent 11 not listed before it"),
            "{err}"
        );
    }

    #[test]
    fn check_pstree_parent_after_its_child_is_invalid() {
        let e = [
            pstree(10, 0, &[10]),
            pstree(11, 12, &[11]),
            pstree(12, 10, &[12]),
        ];
        let err = pstree_err(&e);
        assert!(err.contains("pid 11: parent 12"), "{err}");
    }

    #[test]
    fn check_pstree_session_or_group_too_large_is_invalid() {
        for v in [1 << 31, u32::MAX] {
            let mut e = [pstree(10, 0, &[10])];
            e[0].sid = Some(v);
            assert!(pstree_err(&e).contains(&format!("session {v}")));
            let mut e = [pstree(10, 0, &[10])];
            e[0].pgid = Some(v);
            assert!(pstree_err(&e).contains(&format!("group {v}")));
        }
    }

    #[test]
    fn check_pstree_session_and_group_zero_are_leaders_out_of_sight() {
        let mut e = [pstree(10, 0, &[10]), pstree(11, 10, &[11])];
        for x in &mut e {
            x.sid = Some(0);
            x.pgid = Some(0);
        }
        check_pstree(&e).unwrap();
    }

    #[test]
    fn reg_of_path_with_nul_or_too_long_is_invalid() {
        for name in ["/a\0b".to_string(), format!("/{}", "x".repeat(5000))] {
            let f = File_entry {
                id: Some(7),
                reg: protobuf::MessageField::some(Reg_file_entry {
                    name: Some(name),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let err = reg_of(&f).unwrap_err();
            assert!(matches!(err, RestoreError::Invalid { .. }), "{err}");
            let err = err.to_string();
            assert!(
                err.contains("files.img: file id 7") && err.len() < 400,
                "{err}"
            );
        }
    }

    #[test]
    fn reg_of_relative_path_is_unsupported_naming_the_file() {
        let f = File_entry {
            id: Some(7),
            reg: protobuf::MessageField::some(Reg_file_entry {
                name: Some("etc/passwd".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let err = reg_of(&f).unwrap_err();
        assert!(matches!(err, RestoreError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("files.img: file id 7"), "{err}");
    }

    #[test]
    fn load_criu_reference_simple_is_accepted() {
        let Some(t) = testsets::copy("simple", "load_criu_reference_simple_is_accepted") else {
            return;
        };
        let l = testsets::load(t.path()).unwrap();
        assert_eq!(l.pids(), [71000]);
    }

    #[test]
    fn load_auxv_too_long_is_invalid_naming_mm() {
        let Some(t) = testsets::copy("simple", "load_auxv_too_long_is_invalid_naming_mm") else {
            return;
        };
        testsets::rewrite(t.path(), "mm-71000.img", "MM", |v: &mut Vec<Mm_entry>| {
            v[0].mm_saved_auxv.resize(200, 0);
        });
        let err = testsets::load_err(t.path());
        assert!(err.contains("mm-71000.img: 200 auxv words"), "{err}");
    }

    #[test]
    fn load_compat_sigaction_is_unsupported_naming_core() {
        let test = "load_compat_sigaction_is_unsupported_naming_core";
        let Some(t) = testsets::copy("simple", test) else {
            return;
        };
        testsets::rewrite(
            t.path(),
            "core-71000.img",
            "CORE",
            |v: &mut Vec<Core_entry>| {
                v[0].tc.mut_or_insert_default().sigactions[3].compat_sigaction = Some(true);
            },
        );
        let err = testsets::load_err(t.path());
        assert!(err.contains("core-71000.img: compat sigactions"), "{err}");
    }

    #[test]
    fn load_too_many_rlimits_is_invalid_naming_core() {
        let test = "load_too_many_rlimits_is_invalid_naming_core";
        let Some(t) = testsets::copy("simple", test) else {
            return;
        };
        testsets::rewrite(
            t.path(),
            "core-71000.img",
            "CORE",
            |v: &mut Vec<Core_entry>| {
                let rl = v[0]
                    .tc
                    .mut_or_insert_default()
                    .rlimits
                    .mut_or_insert_default();
                let one = rl.rlimits[0].clone();
                rl.rlimits.resize(5000, one);
            },
        );
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("core-71000.img: 5000 resource limits"),
            "{err}"
        );
    }

    #[test]
    fn load_seccomp_filter_missing_names_core_and_image() {
        let test = "load_seccomp_filter_missing_names_core_and_image";
        let Some(t) = testsets::copy("simple", test) else {
            return;
        };
        let mode = |m: i32| {
            testsets::rewrite(
                t.path(),
                "core-71000.img",
                "CORE",
                |v: &mut Vec<Core_entry>| {
                    v[0].thread_core.mut_or_insert_default().seccomp_mode =
                        Some(protobuf::EnumOrUnknown::from_i32(m));
                },
            )
        };
        mode(2);
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("core-71000.img: seccomp filter 0, and seccomp.img has 0"),
            "{err}"
        );
        mode(7);
        let err = testsets::load_err(t.path());
        assert!(err.contains("core-71000.img: seccomp mode 7"), "{err}");
    }

    #[test]
    fn load_missing_pages_image_names_its_pagemap() {
        let test = "load_missing_pages_image_names_its_pagemap";
        let Some(t) = testsets::copy("simple", test) else {
            return;
        };
        std::fs::remove_file(t.path().join("pages-1.img")).unwrap();
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("pagemap-71000.img: its pages image") && err.contains("pages-1.img"),
            "{err}"
        );
    }

    #[test]
    fn load_short_pages_image_names_both_images() {
        let test = "load_short_pages_image_names_both_images";
        let Some(t) = testsets::copy("simple", test) else {
            return;
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(t.path().join("pages-1.img"))
            .unwrap();
        f.set_len(4096).unwrap();
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("pagemap-71000.img") && err.contains("pages-1.img has 0x1000"),
            "{err}"
        );
    }

    #[test]
    fn load_own_namespace_is_unsupported_naming_ids_and_inventory() {
        let test = "load_own_namespace_is_unsupported_naming_ids_and_inventory";
        let Some(t) = testsets::copy("simple", test) else {
            return;
        };
        testsets::rewrite(
            t.path(),
            "ids-71000.img",
            "IDS",
            |v: &mut Vec<Task_kobj_ids_entry>| {
                v[0].mnt_ns_id = Some(999);
            },
        );
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("ids-71000.img: a process in its own mnt namespace (999, inventory.img"),
            "{err}"
        );
    }

    #[test]
    fn load_thread_clashing_with_a_pid_is_invalid() {
        let test = "load_thread_clashing_with_a_pid_is_invalid";
        let Some(t) = testsets::copy("tree", test) else {
            return;
        };
        testsets::rewrite(
            t.path(),
            "pstree.img",
            "PSTREE",
            |v: &mut Vec<Pstree_entry>| {
                v[1].threads.push(72003);
            },
        );
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("pstree.img: thread 72003 of pid 72002: a thread of pid 72001"),
            "{err}"
        );
    }

    #[test]
    fn page_runs_offsets_accumulate_over_present_entries() {
        let vmas = [vma(0x1000, 0x9000)];
        let e = [
            entry(0x1000, 2, PE_PRESENT),
            entry(0x4000, 1, 0),
            entry(0x6000, 3, PE_PRESENT | 2),
        ];
        let runs = page_runs("pm", &e, ("mm", &vmas), ("pages", 5 * PAGE)).unwrap();
        assert_eq!(
            runs,
            [
                PageRun {
                    addr: 0x1000,
                    len: 0x2000,
                    offset: 0
                },
                PageRun {
                    addr: 0x6000,
                    len: 0x3000,
                    offset: 0x2000
                }
            ]
        );
    }

    #[test]
    fn page_runs_outside_vmas_is_invalid() {
        let vmas = [vma(0x1000, 0x2000)];
        let e = [entry(0x1000, 2, PE_PRESENT)];
        assert!(matches!(
            page_runs("pm", &e, ("mm", &vmas), ("pages", 2 * PAGE)),
            Err(RestoreError::Invalid { .. })
        ));
    }

    #[test]
    fn page_runs_short_pages_image_is_invalid() {
        let vmas = [vma(0x1000, 0x9000)];
        let e = [entry(0x1000, 4, PE_PRESENT)];
        assert!(matches!(
            page_runs("pm", &e, ("mm", &vmas), ("pages", 3 * PAGE)),
            Err(RestoreError::Invalid { .. })
        ));
    }

    #[test]
    fn page_runs_overlapping_entries_are_invalid() {
        let vmas = [vma(0x1000, 0x9000)];
        let e = [entry(0x2000, 2, PE_PRESENT), entry(0x3000, 1, PE_PRESENT)];
        assert!(matches!(
            page_runs("pm", &e, ("mm", &vmas), ("pages", 3 * PAGE)),
            Err(RestoreError::Invalid { .. })
        ));
    }

    #[test]
    fn page_runs_parent_pages_are_unsupported() {
        let vmas = [vma(0x1000, 0x9000)];
        let e = [entry(0x2000, 2, PE_PARENT)];
        assert!(matches!(
            page_runs("pm", &e, ("mm", &vmas), ("pages", 0)),
            Err(RestoreError::Unsupported { .. })
        ));
    }
}
