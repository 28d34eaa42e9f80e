//! What every crs test crate shares, so that any test passes alone, first, on a fresh
//! machine, from a checkout at any path:
//!
//! - [`shared_dir`]: the one place shared data is found (`CRS_SHARED`, else `../shared`
//!   beside the workspace); no test names a path of the machine it was written on;
//! - [`skip`]: a test that cannot run says so, and under CI (`CI` set) that is a failure;
//! - [`reference`]: a CRIU reference set ready to restore: its workload installed at the
//!   absolute path its images name, `kernel.pid_max` raised, its PIDs free, and a lock held
//!   for the test's whole life, so tests of one set never overlap (under nextest or under
//!   plain `cargo test`, whose tests share a process);
//! - [`imageset`]: whole image sets decoded and mutated by meaning, for the tests and the
//!   fuzz target of the restore's loading and checking.

#![forbid(unsafe_code)]

pub mod imageset;

use std::fs::{self, File};
use std::io;
use std::ops::RangeInclusive;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

/// Where the reference sets' workloads live: their images name these absolute paths.
pub const REF_WORK: &str = "/tmp/crs-ref";

/// The workspace root (this crate is `crates/crs-testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crs-testkit lives two levels below the workspace root")
        .to_path_buf()
}

/// The shared data directory: `CRS_SHARED`, else `shared/` beside the workspace.
pub fn shared_dir() -> PathBuf {
    match std::env::var_os("CRS_SHARED") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root()
            .parent()
            .expect("the workspace has a parent directory")
            .join("shared"),
    }
}

/// The CRIU 4.2 reference image sets (`shared/criu-images`).
pub fn criu_images() -> PathBuf {
    shared_dir().join("criu-images")
}

/// Whether the tests run under CI, where a test that cannot run must fail.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Reports that `test` cannot run because of `why`: a visible `SKIP:` line, or, under CI,
/// a panic, so that a test that did not run is never counted as passed there.
///
/// # Panics
/// Under CI.
pub fn skip(test: &str, why: &str) {
    assert!(
        !in_ci(),
        "{test} cannot run: {why} (CI is set: a test that cannot run fails)"
    );
    println!("SKIP: {test}: {why}");
}

/// The CRIU built by hand that `$CRIU` names, for the tests that compare crs with CRIU
/// (the only tests that may skip under CI: CRIU is not part of this project and not
/// installed by it; Debian's 3.17 does not work on this kernel). `None`, with a `SKIP:`
/// line, when `$CRIU` is unset.
///
/// # Panics
/// When `$CRIU` names a binary that does not pass `criu check`: asked for, but broken.
pub fn hand_built_criu(test: &str) -> Option<PathBuf> {
    let Some(criu) = std::env::var_os("CRIU").filter(|v| !v.is_empty()) else {
        println!("SKIP: {test}: no $CRIU (a CRIU built by hand) to compare with");
        return None;
    };
    let criu = PathBuf::from(criu);
    let out = std::process::Command::new(&criu)
        .arg("check")
        .output()
        .unwrap_or_else(|e| panic!("{test}: running $CRIU {}: {e}", criu.display()));
    assert!(
        out.status.success(),
        "{test}: $CRIU {} fails `criu check`: {}",
        criu.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(criu)
}

/// True when the tests run as root; otherwise [`skip`]s `test`.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    skip(test, "needs root");
    false
}

/// A CRIU reference set, ready to restore (see [`reference`]). Holding it holds the set's
/// lock.
pub struct Reference {
    /// The set's name (`simple`, `tree`, ...).
    pub name: &'static str,
    /// The set as CRIU wrote it (read only: restore from [`Reference::copy_images`]).
    pub images: PathBuf,
    /// `/tmp/crs-ref/<name>`: the workload's directory (its binary, cwd, log).
    pub work: PathBuf,
    /// The PIDs (and TIDs) the set restores at.
    pub pids: RangeInclusive<i32>,
    prog: &'static str,
    _lock: Flock<File>,
}

/// The sets crs restores: name, workload binary, PIDs.
const SETS: &[(&str, &str, RangeInclusive<i32>)] = &[
    ("simple", "simple", 71000..=71000),
    ("tree", "tree", 72000..=72004),
    ("tcp", "tcp", 73000..=73000),
    ("shell", "shell", 74000..=74000),
];

/// How long a PID of a killed process may stay taken: PID 1 here reaps orphans late.
const PID_FREE_WAIT: Duration = Duration::from_secs(30);

/// Reference set `name` ready to restore for `test`: `None` after [`skip`] when not root
/// or when the set is missing. Takes the set's lock (held until the returned value is
/// dropped), raises `kernel.pid_max` above the set's PIDs, installs the workload binary
/// and the set's `files/` into `/tmp/crs-ref/<name>` (idempotent: left alone when already
/// identical), and waits for the set's PIDs to be free.
///
/// # Panics
/// On an unknown set, or when setting up fails.
pub fn reference(name: &str, test: &str) -> Option<Reference> {
    let (name, prog, pids) = SETS
        .iter()
        .find(|(n, ..)| *n == name)
        .cloned()
        .unwrap_or_else(|| panic!("no reference set {name} is known to crs-testkit"));
    if !root_or_skip(test) {
        return None;
    }
    let images = criu_images().join(name);
    if !images.join("inventory.img").is_file() {
        skip(
            test,
            &format!("reference set missing at {}", images.display()),
        );
        return None;
    }
    let work = Path::new(REF_WORK).join(name);
    fs::create_dir_all(&work).unwrap_or_else(|e| panic!("creating {}: {e}", work.display()));
    let lock = lock(&Path::new(REF_WORK).join(format!("{name}.lock")));
    raise_pid_max(*pids.end());
    install(&images.join("bin").join(prog), &work.join(prog), 0o755);
    let files = images.join("files");
    if files.is_dir() {
        for e in fs::read_dir(&files).unwrap_or_else(|e| panic!("{}: {e}", files.display())) {
            let e = e.expect("reading files/");
            install(&e.path(), &work.join(e.file_name()), 0o644);
        }
    }
    for pid in pids.clone() {
        wait_pid_free(pid);
    }
    Some(Reference {
        name,
        images,
        work,
        pids,
        prog,
        _lock: lock,
    })
}

impl Reference {
    /// The installed workload binary (the path the images name).
    pub fn bin(&self) -> PathBuf {
        self.work.join(self.prog)
    }

    /// A fresh copy of the set's image files (a restore writes its log into `-D`).
    pub fn copy_images(&self) -> tempfile::TempDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("crs-ref-{}-", self.name))
            .tempdir()
            .expect("temp dir");
        for e in fs::read_dir(&self.images).expect("reading the reference set") {
            let e = e.expect("dir entry");
            if e.file_type().expect("file type").is_file() {
                fs::copy(e.path(), dir.path().join(e.file_name()))
                    .unwrap_or_else(|err| panic!("copying {}: {err}", e.path().display()));
            }
        }
        dir
    }
}

/// An exclusive flock on `path` (created if needed). flock excludes other threads of this
/// process too, since each call opens its own file.
///
/// # Panics
/// When the file cannot be opened or locked.
pub fn lock(path: &Path) -> Flock<File> {
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    Flock::lock(f, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap_or_else(|e| panic!("locking {}: {e}", path.display()))
}

/// Raises `kernel.pid_max` so that `pid` can exist.
///
/// # Panics
/// When pid_max cannot be read or written.
pub fn raise_pid_max(pid: i32) {
    let path = "/proc/sys/kernel/pid_max";
    let max: i64 = fs::read_to_string(path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .expect("reading kernel.pid_max");
    if max <= i64::from(pid) {
        fs::write(path, "4194304").expect("raising kernel.pid_max");
    }
}

/// Waits until no process or thread has `pid` (a killed orphan's pid stays taken until
/// PID 1 reaps it, which it does late here).
///
/// # Panics
/// When it is still taken after 30 s.
pub fn wait_pid_free(pid: i32) {
    let deadline = Instant::now() + PID_FREE_WAIT;
    let path = format!("/proc/{pid}");
    while Path::new(&path).exists() {
        assert!(
            Instant::now() < deadline,
            "pid {pid} stays taken for {PID_FREE_WAIT:?}: {}",
            fs::read_to_string(format!("{path}/status")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Puts a copy of `src` at `dst` with `mode`, unless `dst` already has the same bytes and
/// mode. The copy goes to a temporary name first and is renamed in, so a process running
/// the old file keeps it and nobody sees a half-written one.
///
/// # Panics
/// When the copy fails.
pub fn install(src: &Path, dst: &Path, mode: u32) {
    let want = fs::read(src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
    let same = fs::read(dst).is_ok_and(|have| have == want)
        && fs::metadata(dst).is_ok_and(|m| m.permissions().mode() & 0o7777 == mode);
    if same {
        return;
    }
    let tmp = dst.with_extension(format!("install-{}", std::process::id()));
    let written = fs::write(&tmp, &want)
        .and_then(|()| fs::set_permissions(&tmp, fs::Permissions::from_mode(mode)))
        .and_then(|()| fs::rename(&tmp, dst));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        panic!("installing {} as {}: {e}", src.display(), dst.display());
    }
}

/// Removes what the tests keep under /tmp between runs (the reference sets' workloads and
/// their locks): `cargo xtask test` starts from this, as a fresh machine would.
pub fn wipe_tmp_state() -> io::Result<()> {
    match fs::remove_dir_all(REF_WORK) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_dir_default_is_beside_the_workspace() {
        // Arrange: CRS_SHARED may be set by whoever runs the tests.
        if std::env::var_os("CRS_SHARED").is_some() {
            return;
        }
        // Act
        let shared = shared_dir();
        // Assert
        assert_eq!(shared.parent(), workspace_root().parent());
        assert_eq!(shared.file_name().unwrap(), "shared");
        assert!(workspace_root().join("Cargo.toml").is_file());
    }

    #[test]
    fn install_same_bytes_twice_keeps_the_file() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("a"), d.path().join("b"));
        fs::write(&src, b"x").unwrap();
        install(&src, &dst, 0o755);
        let ino = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&dst).unwrap());
        install(&src, &dst, 0o755);
        let again = std::os::unix::fs::MetadataExt::ino(&fs::metadata(&dst).unwrap());
        assert_eq!((ino, fs::read(&dst).unwrap()), (again, b"x".to_vec()));
    }

    #[test]
    fn install_changed_bytes_replaces_the_file() {
        let d = tempfile::tempdir().unwrap();
        let (src, dst) = (d.path().join("a"), d.path().join("b"));
        fs::write(&src, b"new").unwrap();
        fs::write(&dst, b"old").unwrap();
        install(&src, &dst, 0o644);
        assert_eq!(fs::read(&dst).unwrap(), b"new");
        assert_eq!(
            fs::metadata(&dst).unwrap().permissions().mode() & 0o777,
            0o644
        );
    }
}
