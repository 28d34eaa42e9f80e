//! Shared helpers of the crs-dump tests: a guard that kills and reaps the workload, and
//! image decoding.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Kills and reaps its process on drop, even on panic.
pub struct Guard {
    pub child: Child,
}

impl Guard {
    pub fn spawn(cmd: &mut Command) -> Guard {
        Guard {
            child: cmd.spawn().expect("spawning the workload"),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[allow(unused_imports)] // not every test binary that includes this module uses it
pub use crs_testkit::root_or_skip;

/// Waits until `cond` holds for the contents of `path` (the workload's own log), up to
/// `limit`. The workload writes its log on its own schedule; this waits for a state, it
/// does not guess a time.
pub fn wait_for_log(path: &Path, limit: Duration, cond: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if cond(&text) {
            return text;
        }
        assert!(
            start.elapsed() < limit,
            "workload log {} never reached the expected state:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads one line of the workload's stdout.
pub fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut s = String::new();
    out.read_line(&mut s).expect("reading the workload");
    s
}

/// Decodes an image the way `crit decode --pretty` shows it.
pub fn decode(path: &Path) -> Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    crs_images::codec::decode_image(
        &path.display().to_string(),
        &bytes,
        crs_images::codec::DecodeOptions {
            pretty: true,
            no_payload: false,
        },
    )
    .unwrap_or_else(|e| panic!("decoding {}: {e}", path.display()))
}

/// Reads all of a child's stdout pipe line (for python workloads).
pub fn piped(cmd: &mut Command) -> &mut Command {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped())
}

pub fn read_all(r: &mut impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}
