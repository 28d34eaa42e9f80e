//! Reads CRIU images and rebuilds the process tree, driven from outside through compel.
//!
//! ```text
//! load + validate every image ──► clone3(set_tid = pid) of the root; each process, depth
//!   first: setsid / setpgid, the shared files and pipes it is the nearest common
//!   ancestor of (at stash fds its children inherit), its children (clone3 set_tid from
//!   inside, one after the other: zombies exit with their code and stay unreaped), umask,
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
mod creds;
mod error;
mod files;
mod images;
mod locks;
mod pages;
mod remote;
mod shmem;
mod task;
mod threads;
mod timers;
mod tty;
mod unixsk;
mod vma;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crs_compel::{Release, RemoteAddr, SeizeOptions, SeizedTree, Tid};
use crs_images::codec::ImageWriter;
use crs_images::pb::stats::{Restore_stats_entry, Stats_entry};
use crs_sys::restore::{spawn_tree, ChildStep, NodeKind, SpawnError, Spawned, TreeNode};
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
    /// --tcp-established (not supported yet: refused when set).
    pub tcp_established: bool,
    /// --ext-unix-sk (not supported yet: refused when set).
    pub ext_unix_sk: bool,
}

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
    /// Pages copied into the task.
    pub pages_restored: u64,
    /// Of which, the time spent copying pages.
    pub pages_time: Duration,
    /// Syscalls injected into the task.
    pub injected_syscalls: u64,
}

/// Restores the process tree (processes possibly multi-threaded, zombies) dumped in
/// `opts.images_dir` and lets it run.
pub fn restore(opts: &RestoreOptions) -> Result<Restored, RestoreError> {
    restore_with_stats(opts).map(|(r, _)| r)
}

/// [`restore`], also returning the timings.
pub fn restore_with_stats(opts: &RestoreOptions) -> Result<(Restored, RestoreStats), RestoreError> {
    let t0 = Instant::now();
    for (set, what) in [
        (opts.tcp_established, "--tcp-established"),
        (opts.ext_unix_sk, "--ext-unix-sk"),
    ] {
        if set {
            return Err(RestoreError::Unsupported { what: what.into() });
        }
    }
    let loaded = Images::load_tree(&opts.images_dir)?;
    let shm_images = shmem::load(&opts.images_dir, &loaded.procs)?;
    let file_locks = locks::load(&opts.images_dir, opts.file_locks, &loaded)?;
    let images = &loaded.procs[0];
    let pid = images.pid;
    let _span = info_span!("restore", pid).entered();
    info!(dir = %opts.images_dir.display(), processes = loaded.procs.len(), zombies = loaded.zombies.len(), "images read and checked");
    for p in &loaded.procs {
        preflight(p.pid)?;
        files::check_sizes(p)?;
        creds::check(p)?;
        timers::check(p)?;
    }
    for z in &loaded.zombies {
        preflight(z.pid)?;
    }
    let tramp = choose_trampoline(&loaded.procs)?;
    let mut plans = BTreeMap::new();
    let (shared, shared_ghosts) = files::shared(&loaded)?;
    let mut ghosts = vec![shared_ghosts];
    for p in &loaded.procs {
        let (plan, g) = files::child_plan(p, opts.shell_job, &shared, tramp, TRAMPOLINE_LEN)?;
        plans.insert(p.pid, plan);
        ghosts.push(g);
    }
    let nodes = tree_nodes(&loaded, opts.shell_job, plans, shared.creates)?;
    let has_terminal = tty::connect(images)?;

    let t_fork = Instant::now();
    let spawned = spawn_tree(&nodes).map_err(|source| match source {
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
    // The tasks have opened their ghost files: unlink them, they hold them deleted.
    drop(ghosts);
    let mut guard = TaskGuard(Some(spawned));
    let forking_time = t_fork.elapsed();
    debug!(?forking_time, "tree created");

    let mut tree = SeizedTree::seize(pid, &SeizeOptions::default())
        .map_err(|source| RestoreError::Seize { pid, source })?;
    let mut stats = RestoreStats {
        forking_time,
        ..RestoreStats::default()
    };
    // Shared anonymous objects: created and filled once, here, then mapped by each
    // process that had them; crs's fds on them close when every process is built.
    let built = shmem::Objects::create(&shm_images).and_then(|(objects, pages)| {
        let mut proc_stats = RestoreStats::default();
        loaded.procs.iter().try_for_each(|p| {
            let _span = info_span!("process", pid = p.pid).entered();
            let held = file_locks.get(&p.pid).map_or(&[][..], Vec::as_slice);
            build(&mut tree, p, p.pid, tramp, &objects, held, &mut proc_stats)?;
            stats.pages_restored += proc_stats.pages_restored;
            stats.pages_time += proc_stats.pages_time;
            stats.injected_syscalls += proc_stats.injected_syscalls;
            Ok::<(), RestoreError>(())
        })?;
        stats.pages_restored += pages;
        Ok(())
    });
    let built = built
        .and_then(|()| {
            if has_terminal {
                tty::make_foreground(images, pid)
            } else {
                Ok(())
            }
        })
        .and_then(|()| write_pidfile(opts.pidfile.as_deref(), pid));
    if let Err(e) = built {
        if let Err(k) = tree.release(Release::Kill) {
            warn!(error = %k, "killing the half-restored tree");
        }
        drop(guard);
        return Err(e);
    }
    tree.release(Release::Detach)
        .map_err(|source| RestoreError::Detach { pid, source })?;
    stats.restore_time = t0.elapsed();
    let spawned = guard.disarm();
    info!(restore_time = ?stats.restore_time, pages = stats.pages_restored, "restored, running");
    write_stats(&opts.images_dir, &stats);
    if opts.detach {
        // The task stays our child until we exit; its pidfd is closed here.
        drop(spawned);
        return Ok((
            Restored {
                root_pid: pid,
                exit_status: None,
            },
            stats,
        ));
    }
    let status =
        crs_sys::restore::reap(pid).map_err(|source| RestoreError::Wait { pid, source })?;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    Ok((
        Restored {
            root_pid: pid,
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
            crs_sys::restore::kill_and_reap(s.pid, &s.pidfd);
        }
    }
}

/// The processes to create, root first, each with its children in pstree order: who
/// creates whom, who starts a session, who makes or joins which process group.
fn tree_nodes(
    loaded: &Tree,
    shell_job: bool,
    mut plans: BTreeMap<Tid, crs_sys::restore::ChildPlan>,
    mut creates: BTreeMap<Tid, crs_sys::restore::SharedCreates>,
) -> Result<Vec<TreeNode>, RestoreError> {
    let entries = &loaded.entries;
    let index: BTreeMap<u32, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.pid(), i))
        .collect();
    let zombie: BTreeMap<Tid, i32> = loaded
        .zombies
        .iter()
        .map(|z| (z.pid, z.wait_status))
        .collect();
    let mut nodes = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let pid = e.pid() as Tid;
        let new_session = e.sid() == e.pid();
        let unsupported = |what: String| RestoreError::Unsupported { what };
        let (parent_pgid, parent_sid) = if i == 0 {
            // The root: crs's own group and session (a shell job) or its own.
            (0, if shell_job { e.sid() } else { 0 })
        } else {
            let p = &entries[index[&e.ppid()]];
            (p.pgid(), p.sid())
        };
        if !new_session && i > 0 && e.sid() != parent_sid {
            return Err(unsupported(format!(
                "process {pid} of session {} under a parent of session {parent_sid}",
                e.sid()
            )));
        }
        // The root of a shell job stays in crs's group unless it led its own.
        let keeps_group = e.pgid() == parent_pgid || (i == 0 && e.pgid() != e.pid());
        let pgid = if new_session || keeps_group {
            None
        } else if e.pgid() == e.pid() {
            Some(pid)
        } else {
            // Joining another group: its leader must exist by then, in the same session:
            // created earlier in depth-first order, which is pstree order.
            let leader = index.get(&e.pgid()).copied();
            match leader {
                Some(l)
                    if l < i
                        && entries[l].sid() == e.sid()
                        && !zombie.contains_key(&(e.pgid() as Tid)) =>
                {
                    Some(e.pgid() as Tid)
                }
                _ => {
                    return Err(unsupported(format!(
                        "process {pid} in process group {} whose leader is gone or created later",
                        e.pgid()
                    )))
                }
            }
        };
        let kind = match zombie.get(&pid) {
            Some(&wait_status) => NodeKind::Zombie { wait_status },
            None => NodeKind::Live(plans.remove(&pid).expect("a plan per live process")),
        };
        nodes.push(TreeNode {
            pid,
            children: Vec::new(),
            new_session,
            pgid,
            kind,
            creates: creates.remove(&pid).unwrap_or_default(),
        });
        if i > 0 {
            nodes[index[&e.ppid()]].children.push(i);
        }
    }
    Ok(nodes)
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
            if s >= at + need {
                return Ok(at + PAGE);
            }
            at = at.max(e);
        }
    }
    Err(RestoreError::NoTrampolineRoom)
}

/// Everything between seize and detach.
fn build(
    tree: &mut SeizedTree,
    images: &Images,
    pid: Tid,
    tramp: u64,
    shmem: &shmem::Objects,
    file_locks: &[crs_images::pb::file_lock::File_lock_entry],
    stats: &mut RestoreStats,
) -> Result<(), RestoreError> {
    let compel = |what: &str| {
        let what = what.to_string();
        move |source| RestoreError::Compel { pid, what, source }
    };
    // The task sits in pause(); forget that syscall so injections need no restart dance.
    let mut regs = *tree
        .thread(pid)
        .map_err(compel("reading the registers"))?
        .regs();
    regs.orig_rax = u64::MAX;
    tree.set_regs(pid, &regs)
        .map_err(compel("clearing the pending syscall"))?;
    tree.set_syscall_site(pid, RemoteAddr(tramp))
        .map_err(compel("using the trampoline"))?;
    let base_xstate = tree.xstate(pid).map_err(compel("reading the FPU state"))?;

    let maps = std::fs::read(format!("/proc/{pid}/maps"))
        .map_err(|source| RestoreError::Maps { pid, source })?;
    let maps = crs_proc::parse_maps(&maps).map_err(|e| RestoreError::Maps {
        pid,
        source: io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    })?;

    let mut r = Remote {
        tree,
        pid,
        trampoline: tramp,
        scratch: tramp + 4096,
        scratch_len: TRAMPOLINE_LEN - 4096,
        calls: 0,
    };
    task::drop_inherited_rseq(&mut r)?;
    let t = Instant::now();
    vma::unmap_crs(&mut r, &maps, TRAMPOLINE_LEN as u64)?;
    vma::move_vdso(&mut r, images, &maps, TRAMPOLINE_LEN as u64)?;
    vma::map_all(&mut r, images, shmem)?;
    debug!(elapsed = ?t.elapsed(), calls = r.calls, "address space rebuilt");
    let t = Instant::now();
    stats.pages_restored = pages::fill(pid, images)?;
    stats.pages_time = t.elapsed();
    debug!(pages = stats.pages_restored, elapsed = ?stats.pages_time, "pages filled");
    vma::finish_prot(&mut r, images)?;
    task::set_mm(&mut r, images)?;
    unixsk::create(&mut r, images)?;
    anonfd::create(&mut r, images)?;
    locks::take(&mut r, file_locks)?;
    task::set_misc(&mut r, images)?;
    task::set_rlimits(pid, images);
    // The other threads, once the memory they run in is there, before the timers that
    // may signal them and before the credentials (clone3 set_tid needs CAP_SYS_ADMIN).
    let t = Instant::now();
    threads::create(&mut r, images)?;
    threads::set_misc(&mut r, images)?;
    debug!(threads = images.threads.len(), elapsed = ?t.elapsed(), "threads created");
    let posix_timers = timers::posix_timers(images)?;
    timers::create_posix_timers(&mut r, &posix_timers)?;
    let queued = task::queue_signals(&mut r, images)?;
    debug!(queued, "pending signals queued");
    // Credentials last (they may take away what the steps above needed), every thread's
    // own, then the timers are armed, right before the registers.
    threads::set_creds(&mut r, images)?;
    creds::restore(&mut r, images)?;
    timers::arm(&mut r, images, &posix_timers)?;
    anonfd::arm(&mut r, images)?;
    threads::set_final(&mut r, images)?;

    let ti = images.core.thread_info.as_ref().expect("checked at load");
    let tree_ref = &*r.tree;
    let final_regs = arch::final_regs(&ti.gpregs, |ip| {
        let mut insn = [0u8; 2];
        tree_ref.read_memory(pid, RemoteAddr(ip), &mut insn).is_ok() && insn == [0x0f, 0x05]
    });
    let mut xstate = base_xstate;
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
    // Last injected syscall: the trampoline goes; the registers set above take over.
    r.call(
        libc::SYS_munmap,
        [tramp, TRAMPOLINE_LEN as u64, 0, 0, 0, 0],
        || "munmap of the trampoline".into(),
    )?;
    stats.injected_syscalls = r.calls;
    Ok(())
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
        };
        tree_nodes(&tree, false, plans, BTreeMap::new())
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
                pid: 103,
                wait_status: 7 << 8,
            }],
        )
        .unwrap();
        let pids: Vec<Tid> = nodes.iter().map(|n| n.pid).collect();
        assert_eq!(pids, [100, 101, 102, 104, 103, 105]);
        assert_eq!(nodes[0].children, [1, 2, 4, 5]);
        assert_eq!(nodes[2].children, [3]);
        assert!(nodes[0].new_session && nodes.iter().skip(1).all(|n| !n.new_session));
        let pgids: Vec<Option<Tid>> = nodes.iter().map(|n| n.pgid).collect();
        assert_eq!(pgids, [None, Some(101), None, None, None, Some(101)]);
        assert!(matches!(
            nodes[4].kind,
            NodeKind::Zombie { wait_status: 0x700 }
        ));
        assert!(matches!(nodes[3].kind, NodeKind::Live(_)));
    }

    #[test]
    fn tree_nodes_group_of_later_process_is_unsupported() {
        // 101 joins the group of 102, which is created after it.
        let err = nodes_of(
            vec![
                entry(100, 0, 100, 100),
                entry(101, 100, 102, 100),
                entry(102, 100, 102, 100),
            ],
            Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, RestoreError::Unsupported { .. }), "{err}");
    }

    #[test]
    fn tree_nodes_other_session_than_parent_is_unsupported() {
        let err = nodes_of(
            vec![entry(100, 0, 100, 100), entry(101, 100, 50, 50)],
            Vec::new(),
        )
        .unwrap_err();
        assert!(matches!(err, RestoreError::Unsupported { .. }), "{err}");
    }
}
