//! Restores the CRIU 4.2 reference set `shared/criu-images/tree` (PIDs 72000-72004: three
//! processes, threads, a pipe, a unix socket pair across processes, shared anonymous
//! memory and a memfd as CRIU writes them, eventfd, epoll, timerfd, signalfd, inotify,
//! POSIX timer, itimer) and checks, from the workload's own log, that every task continued
//! with its state: the checks of the set's README.
//! Needs root.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crs_restore::{restore, RestoreOptions};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

const PIDS: [i32; 3] = [72000, 72001, 72002];

/// Kills the restored processes and reaps them (the root is our child, the others come
/// to us as the subreaper) even on panic.
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        for p in PIDS {
            if kill(Pid::from_raw(p), Signal::SIGKILL).is_ok() {
                let _ = waitpid(Pid::from_raw(p), Some(WaitPidFlag::__WALL));
            }
        }
    }
}

/// Reaps the set's processes once they are gone: the root is our child, the others were
/// reparented to this subreaper. Only these pids: other tests' children are not ours
/// to take.
fn reap_tree() {
    for p in PIDS {
        assert!(ends(p), "pid {p} still runs");
        let _ = waitpid(
            Pid::from_raw(p),
            Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
        );
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "pid {p} left behind"
        );
    }
}

/// The `key=value` fields of a log line.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    let pre = format!("{key}=");
    line.split(' ')
        .find_map(|w| w.strip_prefix(pre.as_str()))
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

fn num(line: &str, key: &str) -> u64 {
    field(line, key)
        .parse()
        .unwrap_or_else(|_| panic!("{key} of {line}"))
}

/// Lines of task `who` ("P", "A", "B") with their n, in log order.
fn lines_of(log: &str, who: &str) -> Vec<(u64, String)> {
    let pre = format!("{who} ");
    log.lines()
        .filter(|l| l.starts_with(&pre))
        .map(|l| (num(l, "n"), l.to_string()))
        .collect()
}

/// Waits until the log has a `who` line with n >= `n`; returns the whole log.
fn wait_for(log_path: &Path, who: &str, n: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = fs::read_to_string(log_path).unwrap_or_default();
        if lines_of(&log, who).iter().any(|(k, _)| *k >= n) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {who} line with n>={n}:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// For a test of the reference set: `None` (after a SKIP line) unless root and the set is
/// there; else the set ready to restore (workload installed, pids free, its lock held) and
/// a copy of its images to restore (or alter) in a fresh directory.
fn reference_copy(test: &str) -> Option<(crs_testkit::Reference, tempfile::TempDir)> {
    let set = crs_testkit::reference("tree", test)?;
    let dir = set.copy_images();
    Some((set, dir))
}

#[test]
fn restore_tree_reference_continues() {
    let Some((set, dir)) = reference_copy("restore_tree_reference_continues") else {
        return;
    };
    let log_path = set.work.join("tree.log");
    let _ = fs::remove_file(&log_path);

    // Orphans of the restored tree (after the crs dump kills it) come to us to reap.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let r = restore(&RestoreOptions {
        images_dir: dir.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    })
    .expect("restore of the tree set");
    let _g = Guard;
    assert_eq!(r.root_pid, 72000);

    let (p_last, ab_last) = check_continued(&log_path, 20, 20);

    // Round trip through crs: dump the restored tree with crs (it is killed), restore
    // crs's images, and it continues again from where crs froze it.
    let crs_dir = tempfile::tempdir().unwrap();
    crs_dump::dump(&crs_dump::DumpOptions::new(72000, crs_dir.path())).expect("crs dump");
    // The dump killed the tree (and, as their tracer, reaped what it could); what is left
    // is ours to reap: the root is our child, the others were reparented to us.
    reap_tree();
    let frozen = fs::read_to_string(&log_path).unwrap();
    let p_frozen = lines_of(&frozen, "P").last().unwrap().0;
    let ab_frozen = lines_of(&frozen, "A").last().unwrap().0;
    assert!(p_frozen >= p_last && ab_frozen >= ab_last);
    fs::remove_file(&log_path).unwrap();
    let r = restore(&RestoreOptions {
        images_dir: crs_dir.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    })
    .expect("restore of crs's dump of the tree");
    assert_eq!(r.root_pid, 72000);
    check_continued(&log_path, p_frozen, ab_frozen);
}

/// Checks that P continued from `p0` and A and B from `ab0` (their frozen counters) with
/// every piece of state intact; returns the last P and A/B counters seen.
fn check_continued(log_path: &Path, p0: u64, ab0: u64) -> (u64, u64) {
    // A and B log every fifth loop: 25 is their first line after the restore.
    wait_for(log_path, "A", ab0 + 5);
    wait_for(log_path, "B", ab0 + 5);
    // P logs every 200 ms: 8 lines are 1.6 s, past a tick of the 1 s timers.
    let log = wait_for(log_path, "P", p0 + 8);
    let p = lines_of(&log, "P");
    assert_eq!(p[0].0, p0 + 1, "P did not continue at n={}:\n{log}", p0 + 1);
    for (i, (n, l)) in p.iter().enumerate() {
        assert_eq!(*n, p0 + 1 + i as u64, "P lines not consecutive:\n{log}");
        assert_eq!(num(l, "efd"), 7 + n, "eventfd counter: {l}");
        for (k, v) in [
            ("ep", "2"),
            ("osig", "0"),
            ("pipe", "100"),
            ("skin", "48"),
            ("memfd", "afefcdaaaad71fc9"),
            ("shm", "7fc7d8863d839cf4"),
        ] {
            assert_eq!(field(l, k), v, "{k}: {l}");
        }
    }
    let (first, last) = (&p[0].1, &p[p.len() - 1].1);
    // The region is still shared by the three processes and both threads of B run.
    for k in ["A", "B", "T1", "T2"] {
        assert!(
            num(last, k) > num(first, k),
            "{k} stopped: {first} / {last}"
        );
    }
    assert!(num(first, "A") >= ab0 && num(first, "B") >= ab0, "{first}");
    // Timers and the inotify watch keep working.
    for k in ["tfd", "ptmr", "alrm", "ino"] {
        assert!(
            num(last, k) > num(first, k),
            "{k} stopped: {first} / {last}"
        );
    }
    for (who, rest) in [
        ("A", "pid=72001 pgid=72001 sid=72000 pipe=100"),
        ("B", "pid=72002 pgid=72000 skin=64"),
    ] {
        let ls = lines_of(&log, who);
        assert_eq!(
            ls[0].0,
            ab0 + 5,
            "{who} did not continue at n={}:\n{log}",
            ab0 + 5
        );
        for (_, l) in &ls {
            assert!(l.ends_with(rest), "{who}: {l}");
        }
    }
    (p[p.len() - 1].0, lines_of(&log, "A").last().unwrap().0)
}

/// Waits, on a pidfd, at most 10 s for process `pid` to end (a zombie has ended); true
/// when it has, or was already gone.
fn ends(pid: i32) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let Ok(fd) = crs_sys::pidfd::pidfd_open(pid, 0) else {
        return true;
    };
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::from(10_000u16)), Ok(1))
}

/// One process of the tree fails late in its build (an rseq area at an unmapped address:
/// the injected rseq() fails after its memory was rebuilt). Processes are built in
/// parallel, one part per CPU, each held by its own thread: the failure must still kill
/// every process of every part, and name the process that failed.
#[test]
fn restore_tree_failing_in_one_process_kills_every_process() {
    let Some((_set, dir)) =
        reference_copy("restore_tree_failing_in_one_process_kills_every_process")
    else {
        return;
    };
    let name = "core-72002.img";
    let path = dir.path().join(name);
    let bytes = crs_images::codec::read_file(&path).unwrap();
    let mut core: crs_images::pb::core::Core_entry =
        crs_images::codec::ImageReader::new(name, &bytes, "CORE")
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
    core.thread_core
        .mut_or_insert_default()
        .rseq_entry
        .mut_or_insert_default()
        .set_rseq_abi_pointer(0x1000);
    let mut w = crs_images::codec::ImageWriter::new(name, "CORE");
    w.push(&core).unwrap();
    fs::write(&path, w.into_bytes()).unwrap();

    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let _g = Guard;
    let err = restore(&RestoreOptions {
        images_dir: dir.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, crs_restore::RestoreError::Syscall { pid: 72002, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("rseq"), "{err}");
    // Orphans of the killed root come to this subreaper.
    reap_tree();
    for p in 72003..=72004 {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "thread {p} left behind by the failed restore"
        );
    }
}
