//! The demo's workload: counts forever, one line every 300 ms, appending each
//! line to the log file named by argv[1] (opened and closed per line, so the
//! log is not an open file of the checkpointed process). Each line also shows
//! a running checksum of the sequence, so a restore that loses state shows.

use std::io::Write;
use std::time::Duration;

/// Closes every fd above stderr, as daemons do: whatever the starting shell
/// leaked (a pipe, say) is not state the demo means to checkpoint.
fn close_inherited_fds() {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|fd| *fd > 2)
                .collect()
        })
        .unwrap_or_default();
    for fd in fds {
        // The fd of the read_dir handle itself is already closed: EBADF is fine.
        let _ = nix::unistd::close(fd);
    }
}

fn main() {
    close_inherited_fds();
    let log = std::env::args().nth(1).expect("usage: demo_counter LOG");
    let mut n: u64 = 0;
    let mut sum: u64 = 0;
    loop {
        n += 1;
        sum = sum.wrapping_mul(31).wrapping_add(n);
        let line = format!("counter n={n} sum={sum:016x} pid={}\n", std::process::id());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
        {
            let _ = f.write_all(line.as_bytes());
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
