//! `cargo xtask demo`: start a counter, dump it with crs, kill it, restore it,
//! and show it counting on from where it was frozen.
//!
//! Usage: crs-demo PATH-TO-CRS

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn last_line(log: &Path) -> Option<String> {
    let f = std::fs::File::open(log).ok()?;
    BufReader::new(f).lines().map_while(Result::ok).last()
}

fn counter_of(line: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Polls the log until `pred` holds for its last line (the log grows every 300 ms).
fn wait_for(log: &Path, what: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(l) = last_line(log).filter(|l| pred(l)) {
            return l;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what} in {}", log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn alive(pid: i32) -> bool {
    // A zombie still has a /proc entry; only count running states as alive.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(") ").next().unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

fn crs(crs: &Path, args: &[&str]) {
    println!("$ crs {}", args.join(" "));
    let st = Command::new(crs).args(args).status().expect("running crs");
    if !st.success() {
        panic!("crs {} failed: {st}", args.join(" "));
    }
}

fn main() {
    let crs_bin = PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: crs-demo PATH-TO-CRS"),
    );
    let counter = std::env::current_exe()
        .expect("own path")
        .with_file_name("demo_counter");
    let dir = std::env::temp_dir().join(format!("crs-demo-{}", std::process::id()));
    let images = dir.join("images");
    std::fs::create_dir_all(&images).expect("creating the demo directory");
    let log = dir.join("counter.log");

    println!(
        "1. start a counter: {} {}",
        counter.display(),
        log.display()
    );
    // The counter runs in its own session, as a daemon would (crs, like criu,
    // dumps session leaders unless --shell-job). setsid forks it off, and as a
    // child subreaper the demo becomes its parent, so it can reap it.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let mut setsid = Command::new("setsid")
        .arg(&counter)
        .arg(&log)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the counter");
    let _ = setsid.wait();
    let first = wait_for(&log, "the counter's third line", |l| counter_of(l) >= 3);
    let pid: i32 = first
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .expect("pid in the log");
    println!("   running as pid {pid}: {first}");

    println!("2. dump it (crs kills it once the images are written)");
    let before = wait_for(&log, "another line", |l| counter_of(l) > counter_of(&first));
    crs(
        &crs_bin,
        &[
            "dump",
            "-t",
            &pid.to_string(),
            "-D",
            images.to_str().unwrap(),
            "-o",
            "dump.log",
            "-v4",
        ],
    );
    let frozen = last_line(&log).unwrap_or(before);
    println!("   last line before the dump: {frozen}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!alive(pid), "pid {pid} still runs after the dump");
    println!("   pid {pid} is gone; images in {}:", images.display());
    let mut names: Vec<String> = std::fs::read_dir(&images)
        .expect("listing images")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    println!("   {}", names.join(" "));

    println!("3. restore it");
    // Reap the killed counter so its pid is free again.
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    crs(
        &crs_bin,
        &[
            "restore",
            "-D",
            images.to_str().unwrap(),
            "-d",
            "-o",
            "restore.log",
            "-v4",
        ],
    );
    let n = counter_of(&frozen);
    let after = wait_for(&log, "the restored counter", |l| counter_of(l) >= n + 3);
    println!("   the restored counter goes on:");
    let f = std::fs::File::open(&log).expect("log");
    for l in BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter(|l| counter_of(l) + 1 >= n)
    {
        println!("     {l}");
    }
    assert!(
        after.contains(&format!("pid={pid}")),
        "restored with another pid: {after}"
    );
    println!("4. done; killing pid {pid}");
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    let _ = nix::sys::wait::waitpid(p, None);
}
