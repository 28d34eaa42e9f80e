//! Fault injection at every step (`CRS_FAULT`, see `crs_sys::fault`): a dump or a restore
//! of a tree with threads, a pipe, a socket pair, shared anonymous memory, a deleted file
//! and a SysV segment (`workloads/fault_tree.c`) is made to fail, or crs is killed with
//! SIGKILL, at each of its fault points in turn.
//!
//! - dump: the tree runs on exactly as before (every thread's CPU mask, signal mask and
//!   state, every process's mappings, no tracer) and keeps making progress, and the images
//!   directory holds no set that looks complete unless the set is complete;
//! - restore: no process of the tree, no ghost file and no SysV segment is left, and the
//!   error names the step.
//!
//! Killed at any point, crs leaves the undoing to its guardian (`crs_compel::guard`); the
//! `without_guardian` tests show that these checks catch what is left when nobody undoes.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crs_tests::{crs_bin, descendants};

/// Images of the tree a dump writes only when there is data to keep: pipes-data.img and
/// sk-queues.img.
const DATA_IMAGES: usize = 2;

/// How long a tree may take to show progress (a round of every part) on a loaded machine.
const PROGRESS: Duration = Duration::from_secs(30);

/// One fault_tree: root, its two children, their pids; killed and reaped when dropped.
struct Tree {
    dir: tempfile::TempDir,
    root: i32,
    pids: Vec<i32>,
}

impl Tree {
    fn start() -> Tree {
        Tree::start_with(0)
    }

    /// A tree whose root also fills `mem_mb` MiB of memory, checked at its verdict.
    fn start_with(mem_mb: u32) -> Tree {
        let dir = tempfile::Builder::new()
            .prefix("fault-tree-")
            .tempdir()
            .expect("temp dir");
        let fifo = dir.path().join("ready");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let mut ready = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("open the ready fifo");
        File::create(dir.path().join("status")).expect("status file");
        fs::create_dir(dir.path().join("files")).expect("files dir");
        let log = File::create(dir.path().join("log")).expect("log");
        let child = Command::new(PathBuf::from(env!("ZOO_DIR")).join("fault_tree"))
            .env("FT_READY", &fifo)
            .env("FT_STATUS", dir.path().join("status"))
            .env("FT_DIR", dir.path().join("files"))
            .env("FT_MEM_MB", mem_mb.to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn fault_tree");
        let root = child.id() as i32;
        drop(child); // reaped by pid
        let mut tree = Tree {
            dir,
            root,
            pids: vec![root],
        };
        let deadline = Instant::now() + PROGRESS;
        let mut got = Vec::new();
        loop {
            let mut buf = [0u8; 64];
            match ready.read(&mut buf) {
                Ok(0) if !got.is_empty() => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading the ready fifo: {e}"),
            }
            assert!(
                Instant::now() < deadline,
                "fault_tree not ready: {}",
                tree.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, b"ready\n");
        tree.pids.extend(descendants(root));
        assert_eq!(tree.pids.len(), 3, "root and two children: {:?}", tree.pids);
        tree
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// (round, fails) from the status file.
    fn status(&self) -> (u64, u64) {
        let text = fs::read_to_string(self.dir.path().join("status")).unwrap_or_default();
        let num = |key: &str| {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (num("round="), num("fails="))
    }

    /// Waits for two more rounds (every part made progress twice) and no failed check.
    fn progresses(&self, what: &str) {
        let (start, _) = self.status();
        let deadline = Instant::now() + PROGRESS;
        loop {
            let (round, fails) = self.status();
            assert_eq!(
                fails,
                0,
                "{what}: the tree's checks failed:\n{}",
                self.log()
            );
            if round >= start + 2 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no progress (round {round}) in {PROGRESS:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGTERM: the root checks everything once more (its memory too), stops its children
    /// and must exit 0.
    fn verdict(&self, what: &str) {
        kill(Pid::from_raw(self.root), Signal::SIGTERM).expect("SIGTERM to the root");
        let st = waitpid(Pid::from_raw(self.root), None).expect("waiting for the root");
        assert_eq!(
            st,
            WaitStatus::Exited(Pid::from_raw(self.root), 0),
            "{what}: the tree's verdict:\n{}",
            self.log()
        );
    }

    /// Kills the tree and reaps it (the root is our child, its children come to this
    /// subreaper); the pids are free afterwards.
    fn kill(&self) {
        for &p in &self.pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        reap(&self.pids);
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Reaps `pids` once they are gone (ours as their parent or as the subreaper), waiting at
/// most [`PROGRESS`] for each; panics if one still runs.
fn reap(pids: &[i32]) {
    for &p in pids {
        let deadline = Instant::now() + PROGRESS;
        loop {
            match waitpid(
                Pid::from_raw(p),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(_) => continue,
                Err(_) if !Path::new(&format!("/proc/{p}")).exists() => break,
                Err(_) => {}
            }
            if !Path::new(&format!("/proc/{p}")).exists() {
                break;
            }
            assert!(Instant::now() < deadline, "pid {p} does not end");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// What crs may change in a live tree, per thread and per process: it must all be back.
fn snapshot(pids: &[i32]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for &p in pids {
        let maps = fs::read_to_string(format!("/proc/{p}/maps")).unwrap_or_default();
        out.insert(format!("{p} maps"), maps);
        for t in fs::read_dir(format!("/proc/{p}/task"))
            .expect("task dir")
            .flatten()
        {
            let tid = t.file_name().to_string_lossy().into_owned();
            let status = fs::read_to_string(t.path().join("status")).unwrap_or_default();
            for line in status.lines() {
                let Some((k, v)) = line.split_once(':') else {
                    continue;
                };
                let v = v.trim();
                let v = match k {
                    // Running or sleeping is the tree's business; stopped or traced is not.
                    "State" if matches!(v.chars().next(), Some('R' | 'S' | 'D')) => "live",
                    "State" | "TracerPid" | "SigBlk" | "SigPnd" | "Cpus_allowed_list" => v,
                    _ => continue,
                };
                out.insert(format!("{p}/{tid} {k}"), v.to_string());
            }
        }
    }
    out
}

fn differences(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| format!("{k}: {:?} -> {:?}", a.get(k), b.get(k)))
        .collect()
}

/// Runs crs with `args` and `CRS_FAULT=fault` (none when empty), then reaps the guardian
/// it left (a child of this subreaper once crs is gone).
fn crs(args: &[&str], fault: &str, guardian: bool) -> Output {
    let mut cmd = Command::new(crs_bin());
    cmd.args(args).stdin(Stdio::null());
    if !fault.is_empty() {
        cmd.env("CRS_FAULT", fault);
    }
    if !guardian {
        cmd.env(crs_compel::guard::DISABLE_ENV, "0");
    }
    let out = cmd.output().expect("running crs");
    reap_guardians();
    out
}

/// Waits for every guardian that crs left to this subreaper: it is done undoing then.
fn reap_guardians() {
    let me = std::process::id();
    let Ok(tasks) = fs::read_dir(format!("/proc/{me}/task")) else {
        return;
    };
    for t in tasks.flatten() {
        let kids = fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for k in kids
            .split_whitespace()
            .filter_map(|k| k.parse::<i32>().ok())
        {
            let comm = fs::read_to_string(format!("/proc/{k}/comm")).unwrap_or_default();
            if comm.trim_end() == crs_compel::guard::NAME {
                let _ = waitpid(Pid::from_raw(k), None);
            }
        }
    }
}

/// The fault points of a run of crs with `args`: `list` or `list:kill`. The run itself
/// must succeed (its outcome is returned with the points).
fn points(args: &[&str], kill: bool) -> (Vec<String>, Output) {
    let out = crs(args, if kill { "list:kill" } else { "list" }, true);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "listing fault points: {err}");
    let list: Vec<String> = err
        .lines()
        .filter_map(|l| l.strip_prefix("crs-fault-point "))
        .map(str::to_string)
        .collect();
    assert!(!list.is_empty(), "no fault points listed: {err}");
    (list, out)
}

fn setup(test: &str) -> bool {
    if !crs_testkit::root_or_skip(test) {
        return false;
    }
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    true
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Dumps a live tree with `-R`, failing (or killed) at each fault point in turn.
fn dump_walk(test: &str, kill: bool) {
    if !setup(test) {
        return;
    }
    let tree = Tree::start();
    let before = snapshot(&tree.pids);
    let root = tree.root.to_string();
    let listing = tempfile::tempdir().expect("tempdir");
    let dir_s = listing.path().to_str().expect("utf-8").to_owned();
    let args = ["dump", "-t", &root, "-D", &dir_s, "-R", "--tcp-established"];
    let (list, _) = points(&args, kill);
    assert_complete(listing.path(), "the listing dump");
    tree.progresses("after the listing dump");
    println!("{test}: {} fault points", list.len());
    for (i, point) in list.iter().enumerate() {
        let n = i + 1;
        let images = tempfile::tempdir().expect("tempdir");
        let dir_s = images.path().to_str().expect("utf-8").to_owned();
        let args = ["dump", "-t", &root, "-D", &dir_s, "-R", "--tcp-established"];
        let fault = if kill {
            format!("{n}:kill")
        } else {
            n.to_string()
        };
        let out = crs(&args, &fault, true);
        let at = fault_at(&out, n, point);
        if out.status.success() {
            // The images of queued pipe and socket data are written only when some is
            // queued: a run may have up to two points fewer than the listing's.
            assert!(n + DATA_IMAGES > list.len(), "{at}: crs did not fail");
            assert_complete(images.path(), &at);
        } else if kill {
            assert_eq!(out.status.code(), None, "{at}: crs was not killed");
        } else {
            assert_eq!(out.status.code(), Some(1), "{at}: {}", stderr(&out));
            let want = format!("fault injected at point {n} (");
            assert!(stderr(&out).contains(&want), "{at}: {}", stderr(&out));
        }
        let after = snapshot(&tree.pids);
        let diff = differences(&before, &after);
        assert!(
            diff.is_empty(),
            "{at}: the tree changed:\n{}",
            diff.join("\n")
        );
        // A set that looks complete must be complete; an unfinished one is removed.
        if images.path().join("inventory.img").exists() {
            assert_complete(images.path(), &at);
        } else {
            let left: Vec<_> = fs::read_dir(images.path())
                .expect("images")
                .flatten()
                .map(|e| e.file_name())
                .collect();
            assert!(left.is_empty(), "{at}: unfinished images left: {left:?}");
        }
        tree.progresses(&at);
    }
    tree.verdict(test);
}

/// A dump of a process with 256 MiB of memory, crs killed while it copies the pages (at
/// the first, a middle and the last batch written): the process runs on with its memory
/// intact and its CPU masks back.
#[test]
fn dump_killed_while_copying_pages_leaves_the_tree_as_it_was() {
    let test = "dump_killed_while_copying_pages_leaves_the_tree_as_it_was";
    if !setup(test) {
        return;
    }
    let tree = Tree::start_with(256);
    let before = snapshot(&tree.pids);
    let root = tree.root.to_string();
    let listing = tempfile::tempdir().expect("tempdir");
    let dir_s = listing.path().to_str().expect("utf-8").to_owned();
    let (list, _) = points(
        &["dump", "-t", &root, "-D", &dir_s, "-R", "--tcp-established"],
        true,
    );
    let copying: Vec<usize> = (0..list.len())
        .filter(|&i| list[i].contains("pages-1.img: pages written at"))
        .collect();
    assert!(copying.len() > 8, "256 MiB is copied in batches: {list:?}");
    for i in [
        copying[0],
        copying[copying.len() / 2],
        copying[copying.len() - 1],
    ] {
        let images = tempfile::tempdir().expect("tempdir");
        let dir_s = images.path().to_str().expect("utf-8").to_owned();
        let args = ["dump", "-t", &root, "-D", &dir_s, "-R", "--tcp-established"];
        let out = crs(&args, &format!("{}:kill", i + 1), true);
        let at = fault_at(&out, i + 1, &list[i]);
        assert_eq!(out.status.code(), None, "{at}: crs was not killed");
        let diff = differences(&before, &snapshot(&tree.pids));
        assert!(
            diff.is_empty(),
            "{at}: the tree changed:\n{}",
            diff.join("\n")
        );
        assert!(
            !images.path().join("inventory.img").exists(),
            "{at}: an unfinished set has inventory.img"
        );
        let left: Vec<_> = fs::read_dir(images.path())
            .expect("images")
            .flatten()
            .collect();
        assert!(left.is_empty(), "{at}: unfinished images left: {left:?}");
        tree.progresses(&at);
    }
    tree.verdict(test);
}

#[test]
fn dump_failing_at_every_fault_point_leaves_the_tree_as_it_was() {
    dump_walk(
        "dump_failing_at_every_fault_point_leaves_the_tree_as_it_was",
        false,
    );
}

#[test]
fn dump_killed_at_every_fault_point_leaves_the_tree_as_it_was() {
    dump_walk(
        "dump_killed_at_every_fault_point_leaves_the_tree_as_it_was",
        true,
    );
}

/// What a restore of the tree may leave behind: its processes, ghost files, the SysV
/// segment.
struct Leftovers {
    pids: Vec<i32>,
    files: PathBuf,
    /// The tree's SysV segment: removed with the dumped tree, made again by a restore.
    shmid: String,
}

impl Leftovers {
    fn check(&self, at: &str) {
        reap(&self.pids);
        let ghosts: Vec<String> = fs::read_dir(&self.files)
            .expect("files dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert!(ghosts.is_empty(), "{at}: files left: {ghosts:?}");
        assert!(
            !shmids().contains(&self.shmid),
            "{at}: SysV segment {} left",
            self.shmid
        );
    }
}

/// The ids of the SysV segments of this IPC namespace.
fn shmids() -> Vec<String> {
    let text = fs::read_to_string("/proc/sysvipc/shm").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}

/// The id of the SysV segment `pid` has attached (the inode `maps` shows for it).
fn attached_shmid(pid: i32) -> String {
    let maps = fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    maps.lines()
        .find(|l| l.contains("/SYSV"))
        .and_then(|l| l.split_whitespace().nth(4))
        .expect("a SysV attach in the root")
        .to_string()
}

/// Dumps a tree (killing it), then restores the images failing (or killed) at each fault
/// point of the restore in turn; at the end a restore without faults must bring the tree
/// back and running.
fn restore_walk(test: &str, kill: bool) {
    if !setup(test) {
        return;
    }
    let tree = Tree::start();
    let images = tempfile::tempdir().expect("tempdir");
    let images_s = images.path().to_str().expect("utf-8").to_owned();
    let root = tree.root.to_string();
    let shmid = attached_shmid(tree.root);
    let out = crs(
        &["dump", "-t", &root, "-D", &images_s, "--tcp-established"],
        "",
        true,
    );
    assert!(out.status.success(), "dump: {}", stderr(&out));
    reap(&tree.pids);
    let left = Leftovers {
        pids: tree.pids.clone(),
        files: tree.dir.path().join("files"),
        shmid,
    };
    left.check("after the dump");
    let copy = copy_images(images.path());
    let args = restore_args(&copy);
    let (list, _) = points(&args, kill);
    tree.progresses("restored to list the fault points");
    tree.kill();
    // Nothing can fail after the commit: the last point is before it.
    assert!(list
        .last()
        .is_some_and(|p| p.ends_with(": restore: committing")));
    println!("{test}: {} fault points", list.len());
    for (i, point) in list.iter().enumerate() {
        let n = i + 1;
        let copy = copy_images(images.path());
        let args = restore_args(&copy);
        let fault = if kill {
            format!("{n}:kill")
        } else {
            n.to_string()
        };
        let out = crs(&args, &fault, true);
        let at = fault_at(&out, n, point);
        if kill {
            assert_eq!(
                out.status.code(),
                None,
                "{at}: crs was not killed: {}",
                stderr(&out)
            );
        } else {
            assert_eq!(out.status.code(), Some(1), "{at}: {}", stderr(&out));
            let want = format!("fault injected at point {n} (");
            assert!(stderr(&out).contains(&want), "{at}: {}", stderr(&out));
        }
        left.check(&at);
        assert_eq!(
            tree.log(),
            "",
            "{at}: the tree wrote to its log; crs said:\n{}",
            stderr(&out)
        );
    }
    // And without a fault, the tree comes back.
    let copy = copy_images(images.path());
    let args = restore_args(&copy);
    let out = crs(&args, "", true);
    assert!(out.status.success(), "restore: {}", stderr(&out));
    tree.progresses("restored");
}

/// Which fault point a run stopped at, as crs said it (the numbering of a run depends on
/// the tree's state: an image of queued pipe data is written only when there is some),
/// else as the listing run named it.
fn fault_at(out: &Output, n: usize, listed: &str) -> String {
    let said = stderr(out);
    let actual = said.lines().find_map(|l| {
        l.strip_prefix("crs: killing crs at fault point ")
            .or_else(|| l.split_once("fault injected at point ").map(|(_, p)| p))
    });
    match actual {
        Some(a) => format!("fault point {a} (listed as {listed})"),
        None => format!("fault point {n} (listed as {listed}), not reached"),
    }
}

/// A set with inventory.img is complete: every image decodes and the process tree reads.
fn assert_complete(dir: &Path, at: &str) {
    for e in fs::read_dir(dir).expect("images").flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".img") || crs_images::magic::raw_image_kind(&name).is_some() {
            continue;
        }
        let bytes = fs::read(e.path()).expect("image");
        let decoded = crs_images::codec::decode_image(
            &name,
            &bytes,
            crs_images::codec::DecodeOptions::default(),
        );
        assert!(
            decoded.is_ok(),
            "{at}: {name} of a set with inventory.img: {decoded:?}"
        );
    }
    let ps = crs_images::explore::ps(dir);
    assert!(
        ps.is_ok(),
        "{at}: the tree of a set with inventory.img: {ps:?}"
    );
}

/// `crs restore` of the images in `dir`, detached.
fn restore_args(dir: &tempfile::TempDir) -> [&str; 5] {
    [
        "restore",
        "-D",
        dir.path().to_str().expect("utf-8"),
        "-d",
        "--tcp-established",
    ]
}

fn copy_images(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    for e in fs::read_dir(from).expect("images").flatten() {
        fs::copy(e.path(), to.path().join(e.file_name())).expect("copy image");
    }
    to
}

#[test]
fn restore_failing_at_every_fault_point_leaves_nothing() {
    restore_walk("restore_failing_at_every_fault_point_leaves_nothing", false);
}

#[test]
fn restore_killed_at_every_fault_point_leaves_nothing() {
    restore_walk("restore_killed_at_every_fault_point_leaves_nothing", true);
}

/// Without the guardian, a crs killed while a batch runs in the tree leaves it changed:
/// the checks above see it (they can fail).
#[test]
fn dump_killed_without_guardian_leaves_the_tree_changed() {
    let test = "dump_killed_without_guardian_leaves_the_tree_changed";
    if !setup(test) {
        return;
    }
    let tree = Tree::start();
    let before = snapshot(&tree.pids);
    let root = tree.root.to_string();
    let images = tempfile::tempdir().expect("tempdir");
    let dir_s = images.path().to_str().expect("utf-8").to_owned();
    // No network lock: without a guardian it would stay too, and nothing of a test may.
    let args = [
        "dump",
        "-t",
        &root,
        "-D",
        &dir_s,
        "-R",
        "--tcp-established",
        "--network-lock",
        "skip",
    ];
    let (list, _) = points(&args, true);
    let n = 1 + list
        .iter()
        .position(|p| p.contains(": mask set (kill only)"))
        .expect("a batch's mask point");
    let out = crs(&args, &format!("{n}:kill"), false);
    assert_eq!(out.status.code(), None, "crs was not killed");
    let diff = differences(&before, &snapshot(&tree.pids));
    assert!(
        !diff.is_empty(),
        "without a guardian, a crs killed mid-batch left no trace"
    );
}

/// Without the guardian, a crs killed once every process is built (each with the dumped
/// parent-death signal, none any more with crs's SIGKILL) leaves processes behind.
#[test]
fn restore_killed_without_guardian_leaves_processes() {
    let test = "restore_killed_without_guardian_leaves_processes";
    if !setup(test) {
        return;
    }
    let tree = Tree::start();
    // The root's SysV segment (a `/SYSV` mapping whose inode is its id): the killed
    // restore makes it again with that id and, without a guardian, leaves it; removed
    // below, as nothing of the test may stay.
    let maps = fs::read_to_string(format!("/proc/{}/maps", tree.root)).expect("maps");
    let shmid: i32 = maps
        .lines()
        .find(|l| l.contains("/SYSV"))
        .and_then(|l| l.split_whitespace().nth(4)?.parse().ok())
        .expect("the root's SysV segment");
    let images = tempfile::tempdir().expect("tempdir");
    let images_s = images.path().to_str().expect("utf-8").to_owned();
    let root = tree.root.to_string();
    let out = crs(
        &["dump", "-t", &root, "-D", &images_s, "--tcp-established"],
        "",
        true,
    );
    assert!(out.status.success(), "dump: {}", stderr(&out));
    reap(&tree.pids);
    let copy = copy_images(images.path());
    let args = restore_args(&copy);
    let (list, _) = points(&args, true);
    tree.kill();
    // Every process is built and held, none is released yet.
    let n = 1 + list
        .iter()
        .position(|p| p.ends_with(": restore: committing"))
        .expect("the commit stage");
    let copy = copy_images(images.path());
    let args = restore_args(&copy);
    let out = crs(&args, &format!("{n}:kill"), false);
    assert_eq!(out.status.code(), None, "crs was not killed");
    let alive: Vec<i32> = tree
        .pids
        .iter()
        .copied()
        .filter(|p| {
            fs::read_to_string(format!("/proc/{p}/status")).is_ok_and(|s| !s.contains("State:\tZ"))
        })
        .collect();
    let _ = crs_sys::sysv::shm_remove(shmid);
    assert!(
        !alive.is_empty(),
        "without a guardian, a crs killed mid-restore left no process; crs said:\n{}\nlog:\n{}",
        stderr(&out),
        tree.log()
    );
}

/// From a caller with threads (a library user, this test), the guardian is `crs
/// __guardian`, started from the crs binary, and undoes what the journal lists once the
/// journal ends without Done: here a CPU mask.
#[test]
fn guardian_spawned_from_a_threaded_caller_puts_a_mask_back() {
    let test = "guardian_spawned_from_a_threaded_caller_puts_a_mask_back";
    if !setup(test) {
        return;
    }
    use crs_compel::guard::{self, Record};
    let cpus = crs_compel::allowed_cpus();
    if cpus.len() < 2 {
        crs_testkit::skip(test, "needs two CPUs to change a mask");
        return;
    }
    let tree = Tree::start();
    let tid = tree.root;
    let before = snapshot(&tree.pids);
    // The test harness runs tests on a thread of their own: more than one thread.
    guard::start(Some(&crs_bin())).expect("starting the guardian");
    assert!(guard::active(), "no guardian started");
    let pidfd = crs_sys::pidfd::pidfd_open(tid, 0).expect("pidfd");
    guard::record_with_fd(&Record::Held { pid: tid }, std::os::fd::AsFd::as_fd(&pidfd));
    let old = nix::sched::sched_getaffinity(Pid::from_raw(tid)).expect("mask");
    guard::record(&Record::Mask {
        pid: tid,
        tid,
        cpus: guard::mask_words(&old),
    });
    let mut one = nix::sched::CpuSet::new();
    one.set(cpus[0]).expect("cpu");
    nix::sched::sched_setaffinity(Pid::from_raw(tid), &one).expect("pinning");
    assert!(!differences(&before, &snapshot(&tree.pids)).is_empty());
    // Ends the journal without Done and waits for the guardian to be done.
    guard::abandon();
    let diff = differences(&before, &snapshot(&tree.pids));
    assert!(
        diff.is_empty(),
        "the mask was not put back:\n{}",
        diff.join("\n")
    );
    tree.verdict(test);
}
