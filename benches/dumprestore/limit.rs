//! The copy limit: the fastest of several ways to copy the workload's memory from outside
//! into a fresh file on the images' file system (`benches/workloads/copylimit.c` copies,
//! one way after the other, on one live workload; no fsync, the file is removed after
//! each).
//!
//! Before a memory case's timed iterations, one untimed screening run tries every way of
//! [`candidates`] on the first [`SCREEN_BYTES`] at most (the kernel refuses some: reported,
//! not assumed); the timed iterations then copy everything the [`KEEP`] fastest ways,
//! taking turns at going first, and the case's limit is the lowest median among them,
//! labelled with its way.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

/// Ways kept from the screening run for the timed iterations.
pub const KEEP: usize = 3;
/// Bytes the screening run copies at most: enough to rank the ways, and the 4 GiB case's
/// screening takes a quarter of the time.
pub const SCREEN_BYTES: u64 = 1 << 30;

/// Every way tried, for `cpus` threads at most (see copylimit.c for the syntax).
pub fn candidates(cpus: usize) -> Vec<String> {
    let mut threads = vec![1];
    if cpus > 1 {
        threads.push(cpus);
    }
    let mut v = Vec::new();
    for &t in &threads {
        for piece in ["256K", "1M", "4M"] {
            v.push(format!("pvr:4M:{piece}:{t}"));
        }
        v.push(format!("mem:4M:1M:{t}"));
        v.push(format!("mmap:4M:{t}"));
        v.push(format!("mmap-pop:4M:{t}"));
        v.push(format!("direct:4M:{t}"));
    }
    for w in ["splice:1M", "sendfile:1M", "cfr:1M"] {
        v.push(w.to_string());
    }
    v
}

fn size(s: &str) -> String {
    s.replace('K', " KiB").replace('M', " MiB")
}

/// A way's name for people: `pvr+pwrite 1 MiB x2`.
pub fn label(way: &str) -> String {
    let f: Vec<&str> = way.split(':').collect();
    let x = |t: &str| format!("x{t}");
    match f.as_slice() {
        ["pvr", _, piece, t] => format!("pvr+pwrite {} {}", size(piece), x(t)),
        ["mem", _, piece, t] => format!("/proc/mem+pwrite {} {}", size(piece), x(t)),
        ["direct", chunk, t] => format!("pvr+O_DIRECT {} {}", size(chunk), x(t)),
        ["mmap", _, t] => format!("pvr into mmap {}", x(t)),
        ["mmap-pop", _, t] => format!("pvr into mmap+populate {}", x(t)),
        [kind, piece] => format!("{kind} {}", size(piece)),
        _ => way.to_string(),
    }
}

/// What one way did.
#[derive(Clone, Debug)]
pub enum Outcome {
    Secs(f64),
    Unsupported(String),
}

/// Copies `len` bytes at `addr` of `pid` into `dir` once per way, in the order given.
pub fn run(
    copylimit: &Path,
    pid: i32,
    addr: u64,
    len: u64,
    dir: &Path,
    ways: &[String],
) -> Vec<(String, Outcome)> {
    let out = Command::new(copylimit)
        .arg(pid.to_string())
        .arg(format!("{addr:#x}"))
        .arg(len.to_string())
        .arg(dir)
        .args(ways)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .expect("run copylimit");
    assert!(out.status.success(), "copylimit failed: {:?}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    let got: Vec<(String, Outcome)> = text
        .lines()
        .map(|l| {
            let mut f = l.splitn(3, ' ');
            let way = f.next().unwrap_or_default().to_string();
            let o = match (f.next(), f.next()) {
                (Some("ok"), Some(s)) => Outcome::Secs(s.parse().expect("copylimit seconds")),
                (Some("unsupported"), why) => Outcome::Unsupported(why.unwrap_or("").into()),
                _ => panic!("copylimit printed {l:?}"),
            };
            (way, o)
        })
        .collect();
    assert_eq!(got.len(), ways.len(), "copylimit printed {text:?}");
    got
}

/// The `n` fastest ways of a screening run.
pub fn fastest(screen: &[(String, Outcome)], n: usize) -> Vec<String> {
    let mut ok: Vec<(&String, f64)> = screen
        .iter()
        .filter_map(|(w, o)| match o {
            Outcome::Secs(s) => Some((w, *s)),
            Outcome::Unsupported(_) => None,
        })
        .collect();
    ok.sort_by(|a, b| a.1.total_cmp(&b.1));
    ok.into_iter().take(n).map(|(w, _)| w.clone()).collect()
}

/// The timed samples of a case, per way.
#[derive(Default)]
pub struct Samples {
    pub by_way: BTreeMap<String, Vec<f64>>,
}

impl Samples {
    pub fn push(&mut self, got: Vec<(String, Outcome)>) {
        for (w, o) in got {
            match o {
                Outcome::Secs(s) => self.by_way.entry(w).or_default().push(s),
                Outcome::Unsupported(why) => panic!("copy way {w} failed after screening: {why}"),
            }
        }
    }

    /// The way with the lowest median, and that median (NaN and "" if none ran).
    pub fn best(&self, median: impl Fn(&[f64]) -> f64) -> (String, f64) {
        self.by_way
            .iter()
            .map(|(w, s)| (w.clone(), median(s)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap_or((String::new(), f64::NAN))
    }
}
