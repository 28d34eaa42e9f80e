//! The restore's loading and checking (`crs_restore::load_and_check`) on whole image sets
//! mutated by meaning (`crs_testkit::imageset`: clashing pids and tids, parent cycles,
//! dangling or repeated ids, overlapping or huge VMAs, pagemap runs outside the VMAs or
//! past the pages image, fds naming no file, bloated counts, images removed or swapped),
//! driven by the fuzzer's bytes: the first picks a CRIU reference set, the rest are the
//! mutation's choices. A panic, a set that loads though it cannot be valid, or a refusal
//! that names neither an image nor what was changed is a finding. Nothing is created:
//! only the images are read.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crs_restore::{load_and_check, RestoreOptions};
use crs_testkit::imageset::{error_text, read_set, Choices, ImageSet};
use libfuzzer_sys::fuzz_target;

/// The fuzzer's bytes as choices: as many bytes as `n` needs, little-endian; zeros once
/// they run out.
struct Bytes<'a>(&'a [u8]);

impl Choices for Bytes<'_> {
    fn below(&mut self, n: u64) -> u64 {
        let width = (64 - (n.max(2) - 1).leading_zeros()).div_ceil(8) as usize;
        let take = width.min(self.0.len());
        let (now, rest) = self.0.split_at(take);
        self.0 = rest;
        let mut v = 0u64;
        for (i, b) in now.iter().enumerate() {
            v |= u64::from(*b) << (8 * i);
        }
        v % n
    }
}

/// A set written once into a scratch directory, and how its unmutated copy loads.
struct Prepared {
    set: ImageSet,
    dir: PathBuf,
    opts: RestoreOptions,
    baseline: Result<(), String>,
}

const SCRATCH: &str = "crs-fuzz-restore-load-";

/// This process's scratch directory (in memory when /dev/shm exists). The sets live in a
/// static, never dropped: the directories of fuzzing processes that are gone are removed
/// here instead.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let base = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    for e in std::fs::read_dir(&base).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(SCRATCH) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    base.join(format!("{SCRATCH}{}", std::process::id()))
}

fn prepare() -> Vec<Prepared> {
    let scratch = scratch();
    let root = crs_testkit::criu_images();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("the CRIU reference sets at {}: {e}", root.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("inventory.img").exists())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let set = read_set(p);
            let dir = scratch.join(set.name());
            std::fs::create_dir_all(&dir).expect("the scratch directory");
            set.write(&dir).expect("writing the set");
            let opts = RestoreOptions {
                images_dir: dir.clone(),
                shell_job: set.name() == "shell",
                file_locks: true,
                ..RestoreOptions::default()
            };
            let baseline = load_and_check(&opts)
                .map(|_| ())
                .map_err(|e| error_text(&e));
            Prepared {
                set,
                dir,
                opts,
                baseline,
            }
        })
        .collect()
}

static SETS: OnceLock<Vec<Prepared>> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let sets = SETS.get_or_init(prepare);
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let p = &sets[usize::from(pick) % sets.len()];
    let m = p.set.mutate(&mut Bytes(rest));
    m.apply(&p.dir).expect("writing the mutated images");
    let r = load_and_check(&p.opts);
    m.revert(&p.set, &p.dir).expect("putting the images back");
    match r {
        Ok(_) => assert!(
            !m.must_fail,
            "{}: {m}: loaded, but cannot be valid",
            p.set.name()
        ),
        Err(e) => {
            let text = error_text(&e);
            assert!(
                m.clearly_refused_by(&text) || p.baseline.as_ref().err() == Some(&text),
                "{}: {m}: unclear error: {text} (keys {:?})",
                p.set.name(),
                m.keys
            );
        }
    }
});
