//! The network lock: a server in the dumped tree, its client outside it. While the server
//! is dumped and until it is restored, the client's packets are dropped (nftables, the
//! default `--network-lock`), so a line the client sends in between is not answered with
//! a RST but retransmitted, and answered once the restored server runs. With
//! `--network-lock skip` the same line gets the client a reset. Every lock is gone at the
//! end.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crs_tests::process::{skip_unless_root, KillOnDrop, ProcessGuard};

/// python3 serving one connection on 127.0.0.1: each line `ping N` is answered `pong N`.
/// It prints its port once listening.
fn server() -> (ProcessGuard, u16) {
    let script = "import socket\n\
        l = socket.socket()\nl.bind(('127.0.0.1', 0))\nl.listen(1)\n\
        print(l.getsockname()[1], flush=True)\n\
        s, _ = l.accept()\n\
        for line in s.makefile('rb'):\n    s.sendall(b'pong ' + line[5:])\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]);
    let mut g = ProcessGuard::spawn(cmd).expect("spawn python3");
    let port = g.read_line().unwrap().trim().parse().unwrap();
    (g, port)
}

/// Whether nftables has the lock table of the dump in `images` (named after its run id).
fn locked(images: &str) -> bool {
    let bytes = std::fs::read(format!("{images}/inventory.img")).unwrap();
    let inv: crs_images::pb::inventory::Inventory_entry =
        crs_images::codec::ImageReader::new("inventory.img", &bytes, "INVENTORY")
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
    let table = format!("table inet CRIU-{}", inv.dump_criu_run_id());
    let out = Command::new("nft")
        .args(["list", "tables", "inet"])
        .output()
        .expect("run nft (the nftables package)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == table)
}

/// Dumps the server with `lock` options, sends `ping 2` while it is gone, restores it;
/// returns what the client reads then (the client's view of the connection).
fn ping_across_a_dump(lock: &[&str]) -> std::io::Result<String> {
    let (mut g, port) = server();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    c.write_all(b"ping 1\n").unwrap();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "pong 1\n");
    let pid = g.pid();
    let keys = crs_tests::stdio_pipe_keys(pid);
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().to_str().unwrap().to_owned();
    let mut args = vec!["dump", "--shell-job", "--tcp-established", "-t"];
    let pid_s = pid.to_string();
    args.extend([pid_s.as_str(), "-D", &images]);
    args.extend_from_slice(lock);
    crs_tests::crs_ok(&args);
    g.wait().unwrap();
    assert_eq!(locked(&images), lock.is_empty(), "locked while dumped");
    // The server is gone: this line meets its lock, or no socket at all.
    c.write_all(b"ping 2\n").unwrap();
    let _stdio = crs_tests::restore_with_new_stdio_via(&[], &["--tcp-established"], &images, &keys);
    let _kill = KillOnDrop(pid);
    line.clear();
    let got = r.read_line(&mut line).map(|_| line.clone());
    assert!(!locked(&images), "the network lock was left behind");
    got
}

#[test]
fn client_outside_sees_no_reset_and_goes_on_after_restore() {
    if skip_unless_root("client_outside_sees_no_reset_and_goes_on_after_restore") {
        return;
    }
    let got = ping_across_a_dump(&[]).expect("the client's connection");
    assert_eq!(got, "pong 2\n");
}

#[test]
fn without_the_lock_the_client_is_reset() {
    if skip_unless_root("without_the_lock_the_client_is_reset") {
        return;
    }
    let got = ping_across_a_dump(&["--network-lock", "skip"]);
    let err = got.expect_err("answered without a lock");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
}
