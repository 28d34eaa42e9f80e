//! Workload for the compel tests: a tree that never stops changing. Threads of the root
//! create and join short-lived threads in a tight loop; two spawner threads keep starting
//! copies of this program (`--leaf`), each of which starts one more copy and a few threads
//! before exiting.
//!
//! Prints `ready` once every loop went round; on `stop` or EOF on stdin, stops, checks that
//! every loop made progress, and exits 0 (1 on failure).
#![forbid(unsafe_code)]

use std::io::{self, BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Barrier};

fn leaf(depth: u32) -> i32 {
    let threads: Vec<_> = (0..3).map(|i| std::thread::spawn(move || i * 2)).collect();
    let mut ok = true;
    if depth > 0 {
        match Command::new(std::env::current_exe().expect("current_exe"))
            .args(["--leaf", &(depth - 1).to_string()])
            .stdin(Stdio::null())
            .status()
        {
            Ok(st) if st.success() => {}
            _ => ok = false,
        }
    }
    for (i, t) in threads.into_iter().enumerate() {
        ok &= t.join().ok() == Some(i * 2);
    }
    if ok {
        0
    } else {
        1
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--leaf") {
        let depth = args.get(2).and_then(|d| d.parse().ok()).unwrap_or(0);
        std::process::exit(leaf(depth));
    }

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
    let failed = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(6));
    let mut handles = Vec::new();
    for k in 0..3 {
        let (stop, counts, barrier, failed) = (
            stop.clone(),
            counts.clone(),
            barrier.clone(),
            failed.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let mut first = true;
            while !stop.load(SeqCst) {
                let t = std::thread::spawn(move || k + 1);
                if t.join().ok() != Some(k + 1) {
                    failed.store(true, SeqCst);
                }
                counts[k].fetch_add(1, SeqCst);
                if first {
                    barrier.wait();
                    first = false;
                }
            }
        }));
    }
    for k in 3..5 {
        let (stop, counts, barrier, failed) = (
            stop.clone(),
            counts.clone(),
            barrier.clone(),
            failed.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let mut first = true;
            while !stop.load(SeqCst) {
                match Command::new(std::env::current_exe().expect("current_exe"))
                    .args(["--leaf", "1"])
                    .stdin(Stdio::null())
                    .status()
                {
                    Ok(st) if st.success() => {}
                    _ => failed.store(true, SeqCst),
                }
                counts[k].fetch_add(1, SeqCst);
                if first {
                    barrier.wait();
                    first = false;
                }
            }
        }));
    }
    barrier.wait();
    println!("ready");
    io::stdout().flush().expect("stdout");
    let mut line = String::new();
    let _ = io::stdin().lock().read_line(&mut line);
    stop.store(true, SeqCst);
    for h in handles {
        if h.join().is_err() {
            failed.store(true, SeqCst);
        }
    }
    let c: Vec<u64> = counts.iter().map(|c| c.load(SeqCst)).collect();
    eprintln!("compel_forker: rounds {c:?}");
    let ok = !failed.load(SeqCst) && c.iter().all(|&n| n > 0);
    std::process::exit(if ok { 0 } else { 1 });
}
