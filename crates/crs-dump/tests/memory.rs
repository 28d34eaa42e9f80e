//! The pages image and pagemap reproduce the target's memory, including a PROT_NONE area,
//! and a failed dump leaves the target running untouched with no complete-looking images.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{decode, root_or_skip, wait_for_log, Guard};
use crs_dump::{dump, DumpError, DumpOptions};

/// Python workload: `mb` MiB of random bytes, a PROT_NONE page area with known contents,
/// then blocked in pause() (its memory does not change while blocked); each SIGUSR1 makes
/// it print one "echo N" line. stdout is a regular file (pipes are not dumpable yet).
const WORKLOAD: &str = r#"
import ctypes, mmap, os, signal, sys
os.closerange(3, 4096)
mb = int(sys.argv[1])
data = bytearray(os.urandom(1 << 20)) * mb
m = mmap.mmap(-1, 4 << 12, flags=mmap.MAP_PRIVATE)
m.write(b"crs-prot-none" * 100)
addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
assert libc.mprotect(addr, 4 << 12, 0) == 0
n = [0]
def on_usr1(sig, frame):
    n[0] += 1
    print("echo %d" % n[0], flush=True)
signal.signal(signal.SIGUSR1, on_usr1)
print("ready %x" % addr, flush=True)
while True:
    signal.pause()
"#;

struct Py {
    guard: Guard,
    _dir: tempfile::TempDir,
    log: std::path::PathBuf,
    prot_none: u64,
    echoes: usize,
}

fn start(mb: usize) -> Py {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.log");
    let out = File::create(&log).unwrap();
    let guard = Guard::spawn(
        Command::new("/usr/bin/setsid")
            .arg("/usr/bin/python3.11")
            .arg("-c")
            .arg(WORKLOAD)
            .arg(mb.to_string())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null()),
    );
    let text = wait_for_log(&log, Duration::from_secs(60), |t| t.contains('\n'));
    let line = text.lines().next().unwrap();
    let prot_none = u64::from_str_radix(line.trim().strip_prefix("ready ").unwrap(), 16).unwrap();
    Py {
        guard,
        _dir: dir,
        log,
        prot_none,
        echoes: 0,
    }
}

impl Py {
    /// The workload is alive and handles signals: SIGUSR1 makes it log the next echo.
    fn echo(&mut self) {
        self.echoes += 1;
        let want = format!("echo {}", self.echoes);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.guard.pid()),
            nix::sys::signal::SIGUSR1,
        )
        .unwrap();
        wait_for_log(&self.log, Duration::from_secs(10), |t| t.contains(&want));
    }
}

fn hex(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn status_field(pid: i32, key: &str) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn dump_pages_match_live_memory() {
    if !root_or_skip("dump_pages_match_live_memory") {
        return;
    }
    let mb: usize = std::env::var("CRS_DUMP_TEST_MB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let mut py = start(mb);
    let pid = py.guard.pid();
    let images = tempfile::tempdir().unwrap();
    let mut opts = DumpOptions::new(pid, images.path());
    opts.leave_running = true;
    let t = Instant::now();
    let stats = dump(&opts).expect("dump");
    let total = t.elapsed();
    let bytes = stats.pages_written * 4096;
    eprintln!(
        "dumped {} MiB in {:?} (frozen {:?}, scan {:?}, copy {:?}: {:.2} GiB/s)",
        bytes >> 20,
        total,
        stats.frozen_time,
        stats.memdump_time,
        stats.memwrite_time,
        bytes as f64 / stats.memwrite_time.as_secs_f64() / (1u64 << 30) as f64
    );
    assert!(bytes >= (mb as u64) << 20);

    // Every saved page equals the live page (the workload has not run since: it is
    // blocked in read again, and reading /proc/PID/mem does not need it stopped).
    let pagemap = decode(&images.path().join(format!("pagemap-{pid}.img")));
    let core = decode(&images.path().join(format!("core-{pid}.img")));
    let rseq = core["entries"][0]["thread_core"]["rseq_entry"]["rseq_abi_pointer"]
        .as_u64()
        .unwrap_or(0);
    let entries = pagemap["entries"].as_array().unwrap();
    let pages = File::open(images.path().join("pages-1.img")).unwrap();
    let mem = File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut off = 0u64;
    let mut saw_prot_none = false;
    let (mut a, mut b) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    for e in &entries[1..] {
        let vaddr = hex(&e["vaddr"]);
        let len = e["nr_pages"].as_u64().unwrap() * 4096;
        if vaddr <= py.prot_none && py.prot_none < vaddr + len {
            saw_prot_none = true;
        }
        let mut done = 0;
        while done < len {
            let n = ((len - done) as usize).min(a.len());
            pages.read_exact_at(&mut a[..n], off + done).unwrap();
            mem.read_exact_at(&mut b[..n], vaddr + done).unwrap();
            for (i, (x, y)) in a[..n].iter().zip(&b[..n]).enumerate() {
                let at = vaddr + done + i as u64;
                // The kernel rewrites the rseq area (cpu_id, mm_cid) each time the task
                // resumes, which it did when left running.
                assert!(
                    x == y || (rseq..rseq + 32).contains(&at),
                    "page contents differ at {at:#x}"
                );
            }
            done += n as u64;
        }
        off += len;
    }
    assert_eq!(off, pages.metadata().unwrap().len(), "pages image size");
    assert!(saw_prot_none, "the PROT_NONE area was not saved");
    let mut marker = [0u8; 13];
    mem.read_exact_at(&mut marker, py.prot_none).unwrap();
    assert_eq!(&marker, b"crs-prot-none");
    // Left running: it still handles signals.
    py.echo();
}

#[test]
fn dump_missing_pid_fails_without_images() {
    if !root_or_skip("dump_missing_pid_fails_without_images") {
        return;
    }
    let mut child = Command::new("/bin/true").spawn().unwrap();
    let pid = child.id() as i32;
    child.wait().unwrap();
    let images = tempfile::tempdir().unwrap();
    let err = dump(&DumpOptions::new(pid, images.path())).unwrap_err();
    assert!(matches!(err, DumpError::Proc { .. }), "{err:?}");
    assert_eq!(fs::read_dir(images.path()).unwrap().count(), 0);
}

fn mount(args: &[&str]) -> bool {
    Command::new("mount")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0).status();
    }
}

#[test]
fn dump_readonly_dir_leaves_task_untouched() {
    if !root_or_skip("dump_readonly_dir_leaves_task_untouched") {
        return;
    }
    let mut py = start(4);
    let pid = py.guard.pid();
    let sig_before = (status_field(pid, "SigBlk"), status_field(pid, "SigPnd"));
    let maps_before = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let images = tempfile::tempdir().unwrap();
    let dir = images.path();
    if !mount(&["--bind", dir.to_str().unwrap(), dir.to_str().unwrap()]) {
        crs_testkit::skip(
            "dump_readonly_dir_leaves_task_untouched",
            "bind mount failed",
        );
        return;
    }
    let _unmount = Unmount(dir);
    assert!(mount(&["-o", "remount,bind,ro", dir.to_str().unwrap()]));

    let err = dump(&DumpOptions::new(pid, dir)).unwrap_err();
    assert!(matches!(err, DumpError::ImagesDir { .. }), "{err:?}");

    // Untouched: not traced, same signal state, still answering.
    assert_eq!(status_field(pid, "TracerPid"), "TracerPid:\t0");
    assert_eq!(
        (status_field(pid, "SigBlk"), status_field(pid, "SigPnd")),
        sig_before
    );
    py.echo();
    assert_eq!(fs::read_dir(dir).unwrap().count(), 0, "images left behind");
    let maps_after = fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    assert_eq!(
        maps_after, maps_before,
        "address space changed by the failed dump"
    );
}
