//! Shared helpers for the integration tests: process guards, workload discovery,
//! reference-image locations.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

pub mod process;

pub use crs_testkit::shared_dir;

/// The CRIU 4.2 reference image sets (`simple`, `tree`, `tcp`, `shell`, `container`).
///
/// # Panics
/// When the directory is missing: the compatibility tests cannot run without it,
/// and a silent pass would hide that.
pub fn reference_sets() -> Vec<PathBuf> {
    let root = crs_testkit::criu_images();
    let mut sets: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reference images not found at {}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("inventory.img").exists())
        .collect();
    sets.sort();
    sets
}

/// The crs binary next to the test executable (target/<profile>/crs); `CRS_BIN` overrides.
/// `cargo xtask test` builds it before the tests run.
///
/// # Panics
/// When it is missing.
pub fn crs_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("CRS_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/crs
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .map(|d| d.join("crs"))
        .expect("test executable has no grandparent directory");
    assert!(
        bin.exists(),
        "crs binary not found at {}: run `cargo build -p crs` first (or set CRS_BIN)",
        bin.display()
    );
    bin
}

/// The processes below `pid`, parents before their children (from
/// /proc/PID/task/TID/children; callers use it once the tree is quiet).
pub fn descendants(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        if p != pid {
            out.push(p);
        }
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            todo.extend(
                kids.split_whitespace()
                    .filter_map(|k| k.parse::<i32>().ok()),
            );
        }
    }
    out
}

/// `Cpus_allowed_list` of every thread of `pid` and of the processes below it, by tid (crs
/// pins the threads it drives to one CPU while it holds them: each must have its own mask
/// back afterwards).
pub fn cpu_masks(pid: i32) -> std::collections::BTreeMap<i32, String> {
    let mut out = std::collections::BTreeMap::new();
    for p in std::iter::once(pid).chain(descendants(pid)) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for t in tasks.flatten() {
            let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
            if let Some(mask) = cpus_allowed(&status) {
                out.insert(tid, mask);
            }
        }
    }
    out
}

/// The calling thread's `Cpus_allowed_list` (what a process it starts inherits).
pub fn own_cpu_mask() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
    cpus_allowed(&status).unwrap_or_default()
}

/// The `Cpus_allowed_list` value of a /proc status file.
fn cpus_allowed(status: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

/// Polls `fds` for input: the index of the first readable (or hung-up) one, None when
/// `timeout` passes first.
///
/// # Panics
/// When poll fails other than with EINTR.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> Option<usize> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
        let mut pfds: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        match poll(&mut pfds, ms) {
            Ok(0) => return None,
            Ok(_) => {
                return pfds.iter().position(|p| {
                    p.revents()
                        .is_some_and(|r| r.intersects(PollFlags::POLLIN | PollFlags::POLLHUP))
                })
            }
            Err(Errno::EINTR) => continue,
            Err(e) => panic!("poll: {e}"),
        }
    }
}

/// Sets or clears close-on-exec on `fd` (to hand it to the next child only).
///
/// # Panics
/// When fcntl fails.
pub fn set_cloexec(fd: &OwnedFd, on: bool) {
    use nix::fcntl::{fcntl, FcntlArg, FdFlag};
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).expect("F_SETFD");
}

/// Runs `crs ARGS` and panics, with its stderr, unless it exits 0.
pub fn crs_ok(args: &[&str]) {
    let out = std::process::Command::new(crs_bin())
        .args(args)
        .output()
        .expect("run crs");
    assert!(
        out.status.success(),
        "crs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A shell that answers each line it reads with "got LINE", started under `prefix` (an
/// `unshare` or `nsenter` command line; empty: none); ready once it printed "ready".
pub fn answering_shell(prefix: &[&str]) -> process::ProcessGuard {
    let script = [
        "sh",
        "-c",
        "echo ready; while read x; do echo \"got $x\"; done",
    ];
    let argv: Vec<&str> = prefix.iter().chain(script.iter()).copied().collect();
    let mut cmd = std::process::Command::new(argv[0]);
    cmd.args(&argv[1..]);
    let mut g = process::ProcessGuard::spawn(cmd).expect("spawn the answering shell");
    g.expect_line("ready");
    g
}

/// The keys (`pipe:[INODE]`) of the pipes at fds 0 and 1 of process `pid`.
pub fn stdio_pipe_keys(pid: i32) -> (String, String) {
    let key = |fd| {
        let k = std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
            .expect("readlink")
            .to_string_lossy()
            .into_owned();
        assert!(k.starts_with("pipe:["), "fd {fd} of {pid}: {k}");
        k
    };
    (key(0), key(1))
}

/// `crs restore --shell-job -d -D images` of a tree whose root's stdin and stdout were
/// the pipes `keys` (see [`stdio_pipe_keys`]), given new pipes in their place with
/// `--inherit-fd` (as runc gives a container new stdio). Returns the ends to write to
/// its stdin and read from its stdout.
pub fn restore_with_new_stdio(
    images: &str,
    keys: &(String, String),
) -> (std::fs::File, std::io::BufReader<std::fs::File>) {
    restore_with_new_stdio_via(&[], &[], images, keys)
}

/// [`restore_with_new_stdio`] with crs run by the command `via` (`nsenter ...`; empty:
/// crs itself) and given the options `extra` too.
pub fn restore_with_new_stdio_via(
    via: &[&str],
    extra: &[&str],
    images: &str,
    (stdin_key, stdout_key): &(String, String),
) -> (std::fs::File, std::io::BufReader<std::fs::File>) {
    use std::process::Stdio;
    let (in_r, in_w) = nix::unistd::pipe().expect("pipe");
    let (out_r, out_w) = nix::unistd::pipe().expect("pipe");
    let crs = crs_bin();
    let mut cmd = match via.split_first() {
        Some((first, rest)) => {
            let mut c = std::process::Command::new(first);
            c.args(rest).arg(&crs);
            c
        }
        None => std::process::Command::new(&crs),
    };
    let out = cmd
        .args(["restore", "--shell-job", "-d", "-D", images])
        .args(extra)
        .arg(format!("--inherit-fd=fd[0]:{stdin_key}"))
        .arg(format!("--inherit-fd=fd[1]:{stdout_key}"))
        .stdin(Stdio::from(in_r))
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::piped())
        .output()
        .expect("run crs restore");
    assert!(
        out.status.success(),
        "crs restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        std::fs::File::from(in_w),
        std::io::BufReader::new(std::fs::File::from(out_r)),
    )
}

/// Reads the ready fifo `ready` (opened non-blocking) of a workload (`pidfd`) until EOF:
/// EOF means the workload has closed its end, so the fifo is not among the fds a dump
/// sees (before any writer opened it, poll does not report the fifo, so an early EOF
/// cannot be mistaken for this). `Err` says why the workload is not ready: it exited,
/// `timeout` passed, or it wrote something other than `ready`.
pub fn wait_ready(
    ready: &mut std::fs::File,
    pidfd: BorrowedFd<'_>,
    timeout: Duration,
) -> Result<(), String> {
    use std::io::{ErrorKind, Read};
    use std::os::fd::AsFd;
    let mut got = Vec::new();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match wait_readable(&[ready.as_fd(), pidfd], left) {
            Some(0) => {}
            Some(_) => return Err("the workload exited before it was ready".into()),
            None => {
                return Err(format!(
                    "the workload was not ready (or did not close the fifo) in {timeout:?}"
                ))
            }
        }
        let mut buf = [0u8; 64];
        match ready.read(&mut buf) {
            Ok(0) if got.is_empty() => return Err("the ready fifo closed without `ready`".into()),
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("reading the ready fifo: {e}")),
        }
    }
    if got != b"ready\n" {
        return Err(format!(
            "the workload wrote {:?}, not ready",
            String::from_utf8_lossy(&got)
        ));
    }
    Ok(())
}
