//! Restores the CRIU 4.2 reference set `shared/criu-images/tcp` (PID 73000: a listener, an
//! established loopback connection with bytes queued both ways and unacknowledged, a UDP
//! socket; dumped with `--tcp-established`) and checks that the exchange goes on where it
//! stopped. Without `--tcp-established` the restore is refused by name. Needs root.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crs_restore::{restore, RestoreOptions};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

const PID: i32 = 73000;

/// Kills and reaps the restored task (our child) even on panic.
struct Guard(i32);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        let _ = waitpid(Pid::from_raw(self.0), None);
    }
}

/// The `tcp n=<n> ...` line of the log, waiting (the workload logs every 200 ms).
fn wait_line(log: &Path, n: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    let key = format!("tcp n={n} ");
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        // The first line restored follows a hole where the earlier lines were.
        if let Some(l) = text
            .lines()
            .map(|l| l.trim_start_matches('\0'))
            .find(|l| l.starts_with(&key))
        {
            return l.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no line n={n} in the log:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn tcp_reference_connection_goes_on_after_restore() {
    let test = "tcp_reference_connection_goes_on_after_restore";
    let Some(set) = crs_testkit::reference("tcp", test) else {
        return;
    };
    let dir = set.copy_images();
    let log = set.work.join("tcp.log");
    // The workload writes its log from the start at its saved offset; a log of an
    // earlier run must not answer for this one.
    fs::write(&log, "").unwrap();
    let mut opts = RestoreOptions {
        images_dir: dir.path().to_path_buf(),
        detach: true,
        ..RestoreOptions::default()
    };
    let err = restore(&opts).expect_err("restored without --tcp-established");
    assert!(
        err.to_string().contains("restore with --tcp-established"),
        "{err}"
    );
    assert!(
        !Path::new(&format!("/proc/{PID}")).exists(),
        "pid {PID} left behind"
    );

    opts.tcp_established = true;
    let _guard = Guard(PID);
    let r = restore(&opts).unwrap_or_else(|e| panic!("restore: {e}"));
    assert_eq!(r.root_pid, PID);
    // The last line before the dump was n=21: the record stream, the queued bytes and the
    // UDP exchange go on from there.
    for n in [22, 25] {
        let line = wait_line(&log, n);
        assert_eq!(
            line,
            format!(
                "tcp n={n} srv_seq={} bad=0 c_unread=500 s_unread=16 udp_tx={n} udp_rx={n} pid={PID}",
                n - 1
            )
        );
    }
}
