//! Restores the CRIU 4.2 reference set `shared/criu-images/simple` (PID 71000) and checks
//! that the workload continues; and that failed restores leave nothing behind.
//! Needs root. The tests share PID 71000, so they take a lock.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crs_images::codec::{read_file, ImageReader, ImageWriter};
use crs_images::pb::core::Core_entry;
use crs_images::pb::fs::Fs_entry;
use crs_restore::{restore, restore_with_stats, RestoreError, RestoreOptions};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

const PID: i32 = 71000;
/// The workload's directory: the images name paths in it.
const WORK: &str = "/tmp/crs-ref/simple";

/// Kills and reaps the restored task (our child) even on panic.
struct Guard(i32);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(self.0), None);
    }
}

/// The `simple` set ready to restore (workload and data.bin installed, pid 71000 free, the
/// set's lock held: crs-dump's tests run the same binary in the same directory) and a copy
/// of its images; `None` after a SKIP line when the test cannot run.
fn setup(test: &str) -> Option<(crs_testkit::Reference, tempfile::TempDir)> {
    let set = crs_testkit::reference("simple", test)?;
    let dir = set.copy_images();
    Some((set, dir))
}

fn opts(dir: &Path) -> RestoreOptions {
    RestoreOptions {
        images_dir: dir.to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    }
}

fn log_path() -> PathBuf {
    PathBuf::from(format!("{WORK}/simple.log"))
}

/// Waits until the log has a line with `n=<n> `, returns that line.
fn wait_line(n: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    let key = format!(" n={n} ");
    loop {
        let log = fs::read_to_string(log_path()).unwrap_or_default();
        if let Some(l) = log.lines().find(|l| l.contains(&key)) {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no line n={n} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn expected(n: u64, usr1: u32) -> String {
    format!(
        "simple n={n} heap=baa5f700e50e491d usr1={usr1} pend_usr2=1 blk_usr2=1 fdpos=8224 cwd={WORK} pid={PID}"
    )
}

fn assert_gone() {
    assert!(
        !Path::new(&format!("/proc/{PID}")).exists(),
        "pid {PID} left behind"
    );
}

#[test]
fn restore_simple_reference_continues() {
    let Some((_set, dir)) = setup("restore_simple_reference_continues") else {
        return;
    };
    let _ = fs::remove_file(log_path());
    let before: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), fs::read(&p).unwrap()))
        .collect();

    let t = Instant::now();
    let (r, stats) = restore_with_stats(&opts(dir.path())).expect("restore");
    let took = t.elapsed();
    let _g = Guard(r.root_pid);
    eprintln!("restore took {took:?}: {stats:?}");
    // The address space is the dumped one (vvar+vvar_vclock are one VMA in the image).
    let maps = fs::read_to_string(format!("/proc/{PID}/maps")).unwrap();
    for want in [
        "00400000-00401000 r--p 00000000",
        "00401000-0047a000 r-xp 00001000",
        "004a6000-004a9000 rw-p 000a5000",
        "004a9000-004ae000 rw-p 00000000 00:00 0",
        "39f76000-3a798000 rw-p 00000000 00:00 0",
        "7f62e95f0000-7f62e95f2000 r-xp 00000000 00:00 0                          [vdso]",
        "7ffcc9672000-7ffcc9693000 rw-p 00000000 00:00 0",
    ] {
        assert!(maps.contains(want), "{want} missing from\n{maps}");
    }
    assert_eq!(maps.lines().count(), 12, "{maps}");
    assert_eq!(
        fs::read_link(format!("/proc/{PID}/exe")).unwrap(),
        Path::new(&format!("{WORK}/simple"))
    );
    assert_eq!(r.root_pid, PID);
    assert_eq!(r.exit_status, None);

    assert_eq!(wait_line(21), expected(21, 2));
    assert_eq!(wait_line(22), expected(22, 2));
    kill(Pid::from_raw(PID), Signal::SIGUSR1).unwrap();
    let log = fs::read_to_string(log_path()).unwrap();
    let last: u64 = log.lines().count() as u64 + 20;
    assert_eq!(wait_line(last + 1), expected(last + 1, 3));
    // Lines are consecutive from 21.
    let log = fs::read_to_string(log_path()).unwrap();
    for (i, l) in log.lines().enumerate() {
        assert!(
            l.starts_with(&format!("simple n={} ", 21 + i)),
            "line {i}: {l}"
        );
    }
    // The images were only read (stats-restore is new).
    for (p, bytes) in before {
        assert_eq!(fs::read(&p).unwrap(), bytes, "{} changed", p.display());
    }

    // A second restore of the same set: the pid is taken.
    let again = restore(&opts(dir.path()));
    assert!(
        matches!(again, Err(RestoreError::PidTaken { pid: PID })),
        "{again:?}"
    );
    assert_eq!(
        again.unwrap_err().to_string(),
        format!("pid {PID} is taken")
    );
}

fn rewrite<M: protobuf::MessageFull>(
    dir: &Path,
    name: &str,
    magic: &'static str,
    f: impl FnOnce(&mut M),
) {
    let path = dir.join(name);
    let bytes = read_file(&path).unwrap();
    let mut m: M = ImageReader::new(name, &bytes, magic)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    f(&mut m);
    let mut w = ImageWriter::new(name, magic);
    w.push(&m).unwrap();
    fs::write(&path, w.into_bytes()).unwrap();
}

#[test]
fn restore_truncated_core_fails_before_creating_task() {
    let Some((_set, dir)) = setup("restore_truncated_core_fails_before_creating_task") else {
        return;
    };
    let core = dir.path().join(format!("core-{PID}.img"));
    let bytes = fs::read(&core).unwrap();
    fs::write(&core, &bytes[..bytes.len() / 2]).unwrap();
    let err = restore(&opts(dir.path())).unwrap_err();
    assert!(matches!(err, RestoreError::Image(_)), "{err:?}");
    assert!(format!("{:#}", err).contains("reading images"));
    assert_gone();
}

#[test]
fn restore_bad_cwd_kills_new_task() {
    let Some((_set, dir)) = setup("restore_bad_cwd_kills_new_task") else {
        return;
    };
    // cwd -> data.bin (file id 3): the new task's chdir fails with ENOTDIR.
    rewrite::<Fs_entry>(dir.path(), &format!("fs-{PID}.img"), "FS", |fs| {
        fs.set_cwd_id(3)
    });
    let err = restore(&opts(dir.path())).unwrap_err();
    assert!(
        err.to_string().contains("creating the task with pid 71000"),
        "{err}: {:?}",
        std::error::Error::source(&err).map(|s| s.to_string())
    );
    assert_gone();
}

#[test]
fn restore_bad_rseq_kills_half_built_task() {
    let Some((_set, dir)) = setup("restore_bad_rseq_kills_half_built_task") else {
        return;
    };
    // An rseq area at an unmapped address: the injected rseq() fails after the memory
    // was rebuilt, and the task must be killed.
    rewrite::<Core_entry>(dir.path(), &format!("core-{PID}.img"), "CORE", |c| {
        c.thread_core
            .mut_or_insert_default()
            .rseq_entry
            .mut_or_insert_default()
            .set_rseq_abi_pointer(0x1000);
    });
    let err = restore(&opts(dir.path())).unwrap_err();
    assert!(
        matches!(err, RestoreError::Syscall { pid: PID, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("rseq"), "{err}");
    assert_gone();
}

#[test]
fn restore_attached_returns_exit_status_and_writes_pidfile() {
    let Some((_set, dir)) = setup("restore_attached_returns_exit_status_and_writes_pidfile") else {
        return;
    };
    let _ = fs::remove_file(log_path());
    let pidfile = dir.path().join("restored.pid");
    let o = RestoreOptions {
        detach: false,
        pidfile: Some(pidfile.clone()),
        ..opts(dir.path())
    };
    let _g = Guard(PID);
    let waiter = std::thread::spawn(move || restore(&o));
    wait_line(21);
    assert_eq!(fs::read_to_string(&pidfile).unwrap(), PID.to_string());
    kill(Pid::from_raw(PID), Signal::SIGTERM).unwrap();
    let r = waiter.join().unwrap().expect("restore");
    assert_eq!(r.exit_status, Some(128 + libc::SIGTERM));
    assert_gone();
}
