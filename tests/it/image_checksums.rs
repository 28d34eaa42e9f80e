//! `crs-checksums` end to end: a real workload (the zoo's `heap`: 8 MiB of checksummed heap
//! and 2000 small blocks) is dumped by the crs binary, the image set damaged one way, and
//! `crs restore` must fail naming the damaged file, leaving the workload's pid free (no
//! process was created). The same set, put back as it was dumped, must then restore and
//! the workload pass its own check: so each failure is the damage's doing, not the set's.
//!
//! Also: a dump with `CRS_IMAGE_CHECKSUMS=0` writes no checksum file and restores as
//! before (CRIU's reference sets, which have none, are restored by other tests), and a
//! second dump into a directory holding an older set leaves only the new set.
//!
//! The workload runs through `zoo_launch` (its own session, no leaked fds) with the zoo's
//! protocol (see `zoo_harness.rs`); the test is a child subreaper, so the restored workload
//! is its child. Every process is SIGKILLed and reaped by a guard, even on panic.

use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crs_tests::{crs_bin, wait_readable};
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

const CHECKSUMS: &str = "crs-checksums";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);
const CRS_TIMEOUT: Duration = Duration::from_secs(300);

/// A process of the test (started, or restored and reparented to it): SIGKILLed and reaped
/// on drop unless reaped.
struct Proc {
    pid: i32,
    pidfd: OwnedFd,
    reaped: Option<WaitStatus>,
}

impl Proc {
    fn open(pid: i32) -> std::io::Result<Proc> {
        Ok(Proc {
            pid,
            pidfd: crs_sys::pidfd::pidfd_open(pid, 0)?,
            reaped: None,
        })
    }

    fn signal(&self, sig: Signal) {
        crs_sys::pidfd::pidfd_send_signal(self.pidfd.as_fd(), sig as i32)
            .unwrap_or_else(|e| panic!("signal {sig} to {}: {e}", self.pid));
    }

    /// Waits for the exit and reaps it.
    fn wait(&mut self, timeout: Duration) -> WaitStatus {
        assert_eq!(
            wait_readable(&[self.pidfd.as_fd()], timeout),
            Some(0),
            "pid {} did not exit in {timeout:?}",
            self.pid
        );
        let st = waitpid(Pid::from_raw(self.pid), None)
            .unwrap_or_else(|e| panic!("waitpid {}: {e}", self.pid));
        self.reaped = Some(st);
        st
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        let _ = crs_sys::pidfd::pidfd_send_signal(self.pidfd.as_fd(), Signal::SIGKILL as i32);
        if wait_readable(&[self.pidfd.as_fd()], Duration::from_secs(30)).is_some() {
            let _ = waitpid(Pid::from_raw(self.pid), None);
        }
    }
}

/// One test's directory: the workload's scratch dir, logs and images.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(test: &str) -> Option<Case> {
        if !crs_testkit::root_or_skip(test) {
            return None;
        }
        crs_bin(); // fails clearly when the binary is not built
        static SUBREAPER: std::sync::Once = std::sync::Once::new();
        SUBREAPER.call_once(|| {
            nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
        });
        let dir = tempfile::Builder::new()
            .prefix(&format!("{test}-"))
            .tempdir()
            .expect("temp dir");
        Some(Case { dir })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the zoo's `heap` workload and waits for its `ready`.
    fn start(&self, tag: &str) -> Proc {
        let work = self.path(&format!("work-{tag}"));
        fs::create_dir(&work).expect("work dir");
        let fifo = self.path(&format!("ready-{tag}"));
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let mut ready = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("open the ready fifo");
        let log = File::create(self.path(&format!("workload-{tag}.log"))).expect("log");
        let zoo = PathBuf::from(env!("ZOO_DIR"));
        let child = Command::new(zoo.join("zoo_launch"))
            .arg(zoo.join("heap"))
            .current_dir(&work)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("ZOO_READY", &fifo)
            .env("ZOO_TMP", &work)
            .env("ZOO_CORRUPT", "0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup"))
            .stderr(log)
            .spawn()
            .expect("spawn zoo_launch");
        let pid = child.id() as i32;
        drop(child); // reaped through the guard
        let p = match Proc::open(pid) {
            Ok(p) => p,
            Err(e) => {
                let _ = waitpid(Pid::from_raw(pid), None);
                panic!("pidfd_open({pid}): {e}");
            }
        };
        // Until EOF: then the workload has closed the fifo, which is not dumped.
        crs_tests::wait_ready(&mut ready, p.pidfd.as_fd(), READY_TIMEOUT)
            .unwrap_or_else(|why| panic!("{why}"));
        p
    }

    /// Runs `crs ARGS` (with extra environment) to the end.
    fn crs(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(crs_bin());
        cmd.args(args).stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn crs");
        let mut g = Proc::open(child.id() as i32).expect("pidfd_open(crs)");
        // Read the pipes to the end first: crs exits then, and is reaped below.
        let out = {
            let mut child = child;
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let (mut o, mut e) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
            let t = std::thread::spawn(move || {
                let _ = o.read_to_end(&mut stdout);
                stdout
            });
            let _ = e.read_to_end(&mut stderr);
            (t.join().unwrap(), stderr)
        };
        let st = g.wait(CRS_TIMEOUT);
        let code = match st {
            WaitStatus::Exited(_, c) => c,
            other => panic!("`crs {}` ended with {other:?}", args.join(" ")),
        };
        use std::os::unix::process::ExitStatusExt;
        Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: out.0,
            stderr: out.1,
        }
    }

    /// Dumps `p` into `images` (the workload is killed) and reaps it; its pid is free after.
    fn dump(&self, p: &mut Proc, images: &Path, env: &[(&str, &str)]) {
        fs::create_dir_all(images).expect("images dir");
        let pid = p.pid.to_string();
        let out = self.crs(
            &["dump", "-t", &pid, "-D", images.to_str().unwrap(), "-v4"],
            env,
        );
        assert!(
            out.status.success(),
            "crs dump failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        match p.wait(EXIT_TIMEOUT) {
            WaitStatus::Signaled(_, Signal::SIGKILL, _) => {}
            other => panic!("the dumped workload ended with {other:?}, not SIGKILL"),
        }
        assert!(!Path::new(&format!("/proc/{}", p.pid)).exists());
    }

    /// `crs restore -d` of `images`: the restored workload, or crs's stderr on failure.
    fn restore(&self, images: &Path, pid: i32) -> Result<Proc, String> {
        let pidfile = self.path("restore.pid");
        let _ = fs::remove_file(&pidfile);
        let out = self.crs(
            &[
                "restore",
                "-D",
                images.to_str().unwrap(),
                "-d",
                "--pidfile",
                pidfile.to_str().unwrap(),
                "-v4",
            ],
            &[],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !out.status.success() {
            return Err(stderr);
        }
        let p = Proc::open(pid).unwrap_or_else(|e| panic!("no pid {pid} after restore: {e}"));
        assert_eq!(
            fs::read_to_string(&pidfile).unwrap().trim(),
            pid.to_string()
        );
        Ok(p)
    }

    /// SIGTERM: the restored workload checks its state; exit 0 is its pass.
    fn verdict(&self, mut p: Proc, tag: &str) {
        p.signal(Signal::SIGTERM);
        let st = p.wait(EXIT_TIMEOUT);
        let log = fs::read_to_string(self.path(&format!("workload-{tag}.log"))).unwrap_or_default();
        assert!(
            matches!(st, WaitStatus::Exited(_, 0)),
            "restored workload: {st:?}\n{log}"
        );
    }
}

/// Copies every file of `from` into a new directory `to`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir(to).expect("create copy dir");
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// The one image of `images` whose name starts with `prefix`.
fn image(images: &Path, prefix: &str) -> String {
    let mut v: Vec<String> = fs::read_dir(images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".img"))
        .collect();
    assert_eq!(v.len(), 1, "images starting with {prefix}: {v:?}");
    v.remove(0)
}

fn flip_byte(path: &Path, at: impl FnOnce(u64) -> u64) {
    let mut bytes = fs::read(path).unwrap();
    let i = at(bytes.len() as u64) as usize;
    bytes[i] ^= 0x01;
    fs::write(path, bytes).unwrap();
}

/// Dumps the workload, damages the set with `damage` (which returns the file it damaged),
/// checks the restore fails naming it with the pid left free, then restores the set as
/// dumped and checks the workload's verdict.
fn refused_then_restored(test: &str, damage: impl FnOnce(&Path, i32) -> String) {
    let Some(case) = Case::new(test) else {
        return;
    };
    let mut p = case.start("a");
    let pid = p.pid;
    let images = case.path("images");
    case.dump(&mut p, &images, &[]);
    assert!(
        images.join(CHECKSUMS).exists(),
        "the dump wrote no {CHECKSUMS}"
    );
    let pristine = case.path("pristine");
    copy_dir(&images, &pristine);

    let named = damage(&images, pid);
    match case.restore(&images, pid) {
        Ok(_restored) => panic!("the damaged set ({named}) was restored"),
        Err(stderr) => {
            eprintln!("{}", stderr.lines().last().unwrap_or(""));
            assert!(
                stderr.contains(&named),
                "the error does not name {named}:\n{stderr}"
            );
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "a failed restore left pid {pid} taken"
            );
        }
    }

    fs::remove_dir_all(&images).unwrap();
    copy_dir(&pristine, &images);
    let restored = case
        .restore(&images, pid)
        .unwrap_or_else(|e| panic!("the set as dumped did not restore:\n{e}"));
    case.verdict(restored, "a");
}

#[test]
fn flipped_byte_in_pages_is_refused() {
    refused_then_restored("flipped_byte_in_pages_is_refused", |images, _| {
        let name = image(images, "pages-");
        flip_byte(&images.join(&name), |len| len / 2 + 123);
        name
    });
}

#[test]
fn flipped_byte_in_core_is_refused() {
    refused_then_restored("flipped_byte_in_core_is_refused", |images, pid| {
        // A change the image reader cannot see: the task's name "heap" becomes "ieap".
        let name = format!("core-{pid}.img");
        let path = images.join(&name);
        let bytes = fs::read(&path).unwrap();
        let at = bytes
            .windows(4)
            .position(|w| w == b"heap")
            .expect("the comm in the core image");
        flip_byte(&path, |_| at as u64);
        name
    });
}

#[test]
fn truncated_fdinfo_is_refused() {
    refused_then_restored("truncated_fdinfo_is_refused", |images, _| {
        let name = image(images, "fdinfo-");
        let f = OpenOptions::new()
            .write(true)
            .open(images.join(&name))
            .unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - 1).unwrap();
        name
    });
}

#[test]
fn removed_image_is_refused() {
    refused_then_restored("removed_image_is_refused", |images, pid| {
        let name = format!("mm-{pid}.img");
        fs::remove_file(images.join(&name)).unwrap();
        name
    });
}

#[test]
fn flipped_byte_in_checksum_file_is_refused() {
    refused_then_restored("flipped_byte_in_checksum_file_is_refused", |images, _| {
        flip_byte(&images.join(CHECKSUMS), |len| len / 2);
        CHECKSUMS.to_string()
    });
}

#[test]
fn unlisted_image_is_refused() {
    refused_then_restored("unlisted_image_is_refused", |images, _| {
        // A well-formed image of another set, which the restore would read: file locks
        // (none here, so without the check the restore would go through).
        let img = crs_images::codec::ImageWriter::new("filelocks.img", "FILE_LOCKS");
        fs::write(images.join("filelocks.img"), img.into_bytes()).unwrap();
        "filelocks.img".to_string()
    });
}

#[test]
fn dump_without_checksums_restores() {
    let Some(case) = Case::new("dump_without_checksums_restores") else {
        return;
    };
    let mut p = case.start("a");
    let pid = p.pid;
    let images = case.path("images");
    case.dump(&mut p, &images, &[("CRS_IMAGE_CHECKSUMS", "0")]);
    assert!(images.join("inventory.img").exists());
    assert!(
        !images.join(CHECKSUMS).exists(),
        "CRS_IMAGE_CHECKSUMS=0 wrote {CHECKSUMS}"
    );
    let restored = case
        .restore(&images, pid)
        .unwrap_or_else(|e| panic!("restore without checksums failed:\n{e}"));
    case.verdict(restored, "a");
}

#[test]
fn second_dump_into_same_dir_replaces_the_set() {
    let Some(case) = Case::new("second_dump_into_same_dir_replaces_the_set") else {
        return;
    };
    let images = case.path("images");
    let mut a = case.start("a");
    let pid_a = a.pid;
    case.dump(&mut a, &images, &[]);
    let mut b = case.start("b");
    let pid_b = b.pid;
    case.dump(&mut b, &images, &[]);
    // Only the second set: a's core image went, so nothing of it is left to mix in.
    assert!(images.join(format!("core-{pid_b}.img")).exists());
    if pid_a != pid_b {
        assert!(!images.join(format!("core-{pid_a}.img")).exists());
    }
    let restored = case
        .restore(&images, pid_b)
        .unwrap_or_else(|e| panic!("restore of the second set failed:\n{e}"));
    case.verdict(restored, "b");
}
