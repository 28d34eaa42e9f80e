//! The restore's loading and checking (`load_and_check`) on whole image sets whose images
//! are each well formed but say wrong things about each other: pids and tids that clash,
//! parent links in cycles, ids that dangle or repeat, VMAs that overlap or leave user space,
//! pagemap runs outside the VMAs or past the pages image, fds naming no file, counts that
//! claim huge amounts, images removed, emptied or swapped (`crs_testkit::imageset`).
//! Every mutated set must give a result without a panic, with a bounded heap, and, when it
//! is refused, an error that names the image (and the pid, id, fd or address concerned).
//! Nothing is created: only the images are read.
//!
//! The sets: CRIU 4.2's reference sets, and one crs dumps here (as root) of a python3
//! tree holding what they lack: a deleted file, a FIFO, flock and POSIX locks, a unix
//! listener with accepted and pending connections, a memfd, SysV shared memory, a zombie.
//!
//! Reproducible: the cases of a run follow from `SEED` (`CRS_MUTATE_SEED` overrides it,
//! `CRS_MUTATE_CASES` sets the cases per set); a failure prints its seed, its mutation and
//! `CRS_MUTATE_ONLY=<set>:<case>`, which runs that case alone. The crs-made set differs
//! run to run (pids, addresses): when one of its cases fails, it is kept and its path
//! printed; `CRS_MUTATE_CRS_SET=<dir>` runs on it again.

use std::alloc::System;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cap::Cap;
use crs_restore::{load_and_check, RestoreOptions};
use crs_testkit::imageset::{error_text, read_set, scratch_copy, Choices, ImageSet, Mutation};

/// Every allocation of this test binary goes through this counter; the limit turns a
/// runaway allocation into an immediate failure.
#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, 1 << 30);

const SEED: u64 = 0x5eed_0011_c0de_0001;
/// Peak heap allowed over the whole test: the sets as this test holds them, the crs dump
/// of the python3 tree (its copy buffers), one mutation and one load.
const PEAK_BUDGET: usize = 64 << 20;
/// Heap one load of a mutated CRIU set may take above what was held before it: a
/// mutated set's images are about 1 MiB at most.
const LOAD_BUDGET: usize = 16 << 20;
/// Cases per set by default: the whole test takes a few seconds in a debug build.
const CASES: u64 = 250;

/// A seeded generator (splitmix64): the same seed gives the same mutations.
struct SplitMix(u64);

impl Choices for SplitMix {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

/// A clear error names the image and what the mutation changed (for a removal, at least
/// the image and object it refuses: see `Mutation::clearly_refused_by`), or is the error
/// of the unmutated set (the mutation lies past what refuses it).
fn clear(text: &str, m: &Mutation, baseline: &Result<(), String>) -> bool {
    m.clearly_refused_by(text) || baseline.as_ref().err().is_some_and(|b| b == text)
}

/// The CRIU reference sets.
fn sets() -> Vec<PathBuf> {
    let root = crs_testkit::criu_images();
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("inventory.img").exists())
        .collect();
    v.sort();
    v
}

/// The python3 tree crs dumps: every object is made, then `ready` is written.
const WORKLOAD: &str = r#"
import ctypes, fcntl, mmap, os, signal, socket, sys, threading, time
os.chdir(sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
ghost = open("ghost", "w+b"); ghost.write(b"g" * 20000); ghost.flush(); os.unlink("ghost")
os.mkfifo("fifo"); fifo = os.open("fifo", os.O_RDWR); os.write(fifo, b"queued")
lk = open("flock", "w"); fcntl.flock(lk, fcntl.LOCK_EX)
pl = open("plock", "w"); pl.write("abcd"); pl.flush(); fcntl.lockf(pl, fcntl.LOCK_EX, 2, 1)
srv = socket.socket(socket.AF_UNIX); srv.bind("sock"); srv.listen(4)
cli = socket.socket(socket.AF_UNIX); cli.connect("sock"); acc, _ = srv.accept()
cli.send(b"to the accepted end"); acc.send(b"to the client")
pending = socket.socket(socket.AF_UNIX); pending.connect("sock")
da, db = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM); da.send(b"dgram")
mfd = os.memfd_create("crs-mutate"); os.write(mfd, b"m" * 10000); mm = mmap.mmap(mfd, 8192)
sh = mmap.mmap(-1, 3 * 4096, mmap.MAP_SHARED); sh[:5] = b"share"
shm = libc.shmget(0, 8192, 0o1600)
addr = libc.shmat(shm, None, 0)
assert shm >= 0 and addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
libc.shmctl(shm, 0, None)
ctypes.memset(addr, 0x5a, 4096)
heap = bytearray(b"h" * 300000)
r, w = os.pipe(); os.write(w, b"pipe data")
if os.fork() == 0:
    os.close(w)
    while True:
        time.sleep(1000)
zombie = os.fork()
if zombie == 0:
    os._exit(7)
os.waitid(os.P_PID, zombie, os.WEXITED | os.WNOWAIT)
threading.Thread(target=time.sleep, args=(100000,), daemon=True).start()
signal.signal(signal.SIGALRM, signal.SIG_IGN)
signal.setitimer(signal.ITIMER_REAL, 1000, 1000)
open("ready.tmp", "w").close(); os.rename("ready.tmp", "ready")
while True:
    time.sleep(1000)
"#;

/// Kills the workload's session and reaps its leader, even on panic.
struct Workload(Child);

impl Drop for Workload {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A set crs dumped (see [`WORKLOAD`]) into `<tmp>/crs-made`, or None after a SKIP line.
fn crs_made_set(test: &str) -> Option<tempfile::TempDir> {
    if !crs_testkit::root_or_skip(test) {
        return None;
    }
    let python = Path::new("/usr/bin/python3");
    if !python.exists() {
        crs_testkit::skip(test, "no /usr/bin/python3 for the crs-made set");
        return None;
    }
    let work = tempfile::tempdir().expect("a temporary directory");
    let mut w = Workload(
        Command::new("/usr/bin/setsid")
            .arg(python)
            .arg("-c")
            .arg(WORKLOAD)
            .arg(work.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !work.path().join("ready").exists() {
        if let Ok(Some(st)) = w.0.try_wait() {
            panic!("the python3 workload exited early: {st}");
        }
        assert!(
            Instant::now() < deadline,
            "the python3 workload never got ready"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("crs-made");
    std::fs::create_dir(&dir).expect("the images directory");
    let opts = crs_dump::DumpOptions {
        file_locks: true,
        ..crs_dump::DumpOptions::new(w.0.id() as i32, &dir)
    };
    crs_dump::dump(&opts).unwrap_or_else(|e| panic!("crs dump of the python3 tree: {e}"));
    drop(w);
    Some(tmp)
}

struct Outcome {
    cases: u64,
    refused: u64,
    loaded: u64,
    failures: Vec<String>,
    /// The most heap a load of a CRIU set may have taken above what was held before it
    /// (the peak so far less what was held: an upper bound), and that load. (The crs dump
    /// that makes the crs-made set sets a higher peak of its own.)
    peak_case: (usize, String),
}

/// Runs `cases` mutations of `set` (only case `only`, when given); returns whether they
/// all passed.
fn run_set(
    set: &ImageSet,
    set_index: u64,
    seed: u64,
    cases: u64,
    only: Option<u64>,
    out: &mut Outcome,
) -> bool {
    let failed_before = out.failures.len();
    let (refused_before, loaded_before) = (out.refused, out.loaded);
    let (_tmp, dir) = scratch_copy(set);
    let opts = RestoreOptions {
        images_dir: dir.clone(),
        shell_job: set.name() == "shell",
        file_locks: true,
        ..RestoreOptions::default()
    };
    let baseline = load_and_check(&opts)
        .map(|_| ())
        .map_err(|e| error_text(&e));
    let (mut mutating, mut loading) = (Duration::ZERO, Duration::ZERO);
    let t_set = Instant::now();
    for case in (0..cases).filter(|c| only.is_none_or(|o| o == *c)) {
        let case_seed = seed ^ (set_index << 48) ^ case;
        let t = Instant::now();
        let m = set.mutate(&mut SplitMix(case_seed));
        m.apply(&dir).expect("writing the mutated images");
        mutating += t.elapsed();
        let t = Instant::now();
        let held = ALLOC.allocated();
        let r = catch_unwind(AssertUnwindSafe(|| load_and_check(&opts)));
        // What the load took above what was held before it is at most the peak so far
        // less that (exactly that, when the load set the peak).
        let took = ALLOC.max_allocated() - held;
        loading += t.elapsed();
        m.revert(set, &dir).expect("putting the images back");
        out.cases += 1;
        let at = || {
            format!(
                "set {} case {case} (CRS_MUTATE_SEED={seed:#x} CRS_MUTATE_ONLY={}:{case}): {m}",
                set.name(),
                set.name()
            )
        };
        match r {
            Err(p) => {
                let msg = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                out.failures.push(format!("{}: PANIC {msg}", at()));
            }
            Ok(Ok(_)) => {
                out.loaded += 1;
                if m.must_fail {
                    out.failures
                        .push(format!("{}: loaded, but cannot be valid", at()));
                }
            }
            Ok(Err(e)) => {
                out.refused += 1;
                let text = error_text(&e);
                if !clear(&text, &m, &baseline) {
                    out.failures.push(format!(
                        "{}: unclear error: {text} (keys {:?})",
                        at(),
                        m.keys
                    ));
                }
            }
        }
        if took > out.peak_case.0 && set.name() != "crs-made" {
            out.peak_case = (took, at());
            assert!(
                took <= LOAD_BUDGET,
                "{}: the load took {took} bytes (budget {LOAD_BUDGET})",
                at()
            );
        }
        // The peak so far: the sets as this test holds them, plus one load.
        if ALLOC.max_allocated() > PEAK_BUDGET {
            panic!(
                "{}: the heap peaked at {} bytes (budget {PEAK_BUDGET})",
                at(),
                ALLOC.max_allocated()
            );
        }
    }
    eprintln!(
        "{}: {} KiB of images, unmutated {}; {} refused, {} loaded in {:.2?} \
         (mutating {mutating:.2?}, loading {loading:.2?})",
        set.name(),
        set.image_bytes() / 1024,
        match &baseline {
            Ok(()) => "loads".to_string(),
            Err(e) => format!("refused ({e})"),
        },
        out.refused - refused_before,
        out.loaded - loaded_before,
        t_set.elapsed()
    );
    out.failures.len() == failed_before
}

#[test]
fn mutated_image_sets_load_without_panic_with_clear_errors() {
    let test = "mutated_image_sets_load_without_panic_with_clear_errors";
    let paths = sets();
    if paths.is_empty() {
        crs_testkit::skip(test, "no CRIU reference sets");
        return;
    }
    let seed = env_u64("CRS_MUTATE_SEED").unwrap_or(SEED);
    let cases = env_u64("CRS_MUTATE_CASES").unwrap_or(CASES);
    // "set:case": that case of that set only.
    let only: Option<(String, u64)> = std::env::var("CRS_MUTATE_ONLY").ok().and_then(|v| {
        let (s, c) = v.rsplit_once(':')?;
        Some((s.to_string(), c.parse().ok()?))
    });
    let wanted = |name: &str| match &only {
        Some((s, c)) if s == name => Some(Some(*c)),
        Some(_) => None,
        None => Some(None),
    };
    let mut out = Outcome {
        cases: 0,
        refused: 0,
        loaded: 0,
        failures: Vec::new(),
        peak_case: (0, String::new()),
    };
    // The CRIU sets first, while the heap holds only the sets: the peak then shows what
    // a load takes. The crs dump of the python3 tree comes after (its copy buffers would
    // set a higher peak of their own).
    let sets: Vec<(ImageSet, Option<u64>)> = paths
        .iter()
        .map(|p| read_set(p))
        .filter_map(|s| wanted(s.name()).map(|c| (s, c)))
        .collect();
    let held = ALLOC.allocated();
    let peak_before = ALLOC.max_allocated();
    let t0 = Instant::now();
    for (i, (set, case)) in sets.iter().enumerate() {
        run_set(set, i as u64, seed, cases, *case, &mut out);
    }
    eprintln!(
        "heap: the test held {} KiB (peak {} KiB so far); the loads took it to {} KiB",
        held / 1024,
        peak_before / 1024,
        ALLOC.max_allocated() / 1024
    );
    if let Some(case) = wanted("crs-made") {
        let t_dump = Instant::now();
        let (set, kept) = match std::env::var_os("CRS_MUTATE_CRS_SET") {
            Some(d) => (Some(read_set(Path::new(&d))), None),
            None => match crs_made_set(test) {
                Some(tmp) => (Some(read_set(&tmp.path().join("crs-made"))), Some(tmp)),
                None => (None, None),
            },
        };
        if let Some(set) = set {
            eprintln!("crs-made set ready in {:.2?}", t_dump.elapsed());
            let passed = run_set(&set, paths.len() as u64, seed, cases, case, &mut out);
            if let (false, Some(tmp)) = (passed, kept) {
                eprintln!(
                    "the crs-made set is kept: CRS_MUTATE_CRS_SET={}",
                    tmp.keep().join("crs-made").display()
                );
            }
        }
    }
    eprintln!(
        "{} mutated sets in {:.2?}: {} refused, {} loaded; every load of a CRIU set took at most {} KiB \
         (the most: {})",
        out.cases,
        t0.elapsed(),
        out.refused,
        out.loaded,
        out.peak_case.0 / 1024,
        out.peak_case.1
    );
    for f in &out.failures {
        eprintln!("{f}");
    }
    assert!(
        out.failures.is_empty(),
        "{} of {} mutated sets failed (each above)",
        out.failures.len(),
        out.cases
    );
}
