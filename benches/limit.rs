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
    parse_output(&String::from_utf8_lossy(&out.stdout), ways)
        .unwrap_or_else(|e| panic!("copylimit: {e}"))
}

/// copylimit's output for `ways`: one "WAY ok SECONDS" or "WAY unsupported WHY" line each,
/// in order.
pub fn parse_output(text: &str, ways: &[String]) -> Result<Vec<(String, Outcome)>, String> {
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != ways.len() {
        return Err(format!(
            "{} lines for {} ways: {text:?}",
            lines.len(),
            ways.len()
        ));
    }
    lines
        .iter()
        .zip(ways)
        .map(|(l, want)| {
            let mut f = l.splitn(3, ' ');
            let way = f.next().unwrap_or_default();
            if way != want {
                return Err(format!("{l:?} where {want} was due"));
            }
            let o = match (f.next(), f.next()) {
                (Some("ok"), Some(s)) => {
                    Outcome::Secs(s.parse().map_err(|e| format!("{l:?}: {e}"))?)
                }
                (Some("unsupported"), why) => Outcome::Unsupported(why.unwrap_or("").into()),
                _ => return Err(format!("unexpected line {l:?}")),
            };
            Ok((way.to_string(), o))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ways(w: &[&str]) -> Vec<String> {
        w.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn candidates_two_cpus_both_thread_counts_and_the_refusable_ways() {
        let c = candidates(2);
        assert!(c.contains(&"pvr:4M:256K:1".to_string()));
        assert!(c.contains(&"pvr:4M:4M:2".to_string()));
        assert!(c.contains(&"mmap-pop:4M:2".to_string()));
        assert!(c.contains(&"splice:1M".to_string()));
        assert_eq!(
            candidates(1).iter().filter(|w| w.ends_with(":2")).count(),
            0
        );
    }

    #[test]
    fn label_each_kind_names_its_way() {
        assert_eq!(label("pvr:4M:1M:2"), "pvr+pwrite 1 MiB x2");
        assert_eq!(label("mem:4M:1M:1"), "/proc/mem+pwrite 1 MiB x1");
        assert_eq!(label("direct:4M:2"), "pvr+O_DIRECT 4 MiB x2");
        assert_eq!(label("mmap-pop:4M:1"), "pvr into mmap+populate x1");
        assert_eq!(label("splice:1M"), "splice 1 MiB");
    }

    #[test]
    fn parse_output_ok_and_refused_lines_in_order() {
        let w = ways(&["pvr:4M:256K:1", "splice:1M"]);
        let got = parse_output(
            "pvr:4M:256K:1 ok 0.250000\nsplice:1M unsupported splice: Invalid argument\n",
            &w,
        )
        .unwrap();
        assert!(matches!(got[0].1, Outcome::Secs(s) if s == 0.25));
        assert!(
            matches!(&got[1].1, Outcome::Unsupported(why) if why == "splice: Invalid argument")
        );
    }

    #[test]
    fn parse_output_missing_or_reordered_line_is_an_error() {
        let w = ways(&["pvr:4M:256K:1", "mmap:4M:1"]);
        assert!(parse_output("pvr:4M:256K:1 ok 0.2\n", &w).is_err());
        assert!(parse_output("mmap:4M:1 ok 0.2\npvr:4M:256K:1 ok 0.2\n", &w).is_err());
        assert!(parse_output("pvr:4M:256K:1 ok x\nmmap:4M:1 ok 0.2\n", &w).is_err());
    }

    #[test]
    fn fastest_skips_refused_ways() {
        let screen = vec![
            ("a".to_string(), Outcome::Secs(0.3)),
            ("b".to_string(), Outcome::Unsupported("no".into())),
            ("c".to_string(), Outcome::Secs(0.1)),
            ("d".to_string(), Outcome::Secs(0.2)),
        ];
        assert_eq!(fastest(&screen, 2), ways(&["c", "d"]));
    }

    #[test]
    fn best_is_the_lowest_median() {
        let mut s = Samples::default();
        s.push(vec![
            ("a".into(), Outcome::Secs(0.1)),
            ("b".into(), Outcome::Secs(0.2)),
        ]);
        s.push(vec![
            ("a".into(), Outcome::Secs(0.5)),
            ("b".into(), Outcome::Secs(0.2)),
        ]);
        s.push(vec![
            ("a".into(), Outcome::Secs(0.5)),
            ("b".into(), Outcome::Secs(0.3)),
        ]);
        let median = |v: &[f64]| {
            let mut v = v.to_vec();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        assert_eq!(s.best(median), ("b".to_string(), 0.2));
    }
}
