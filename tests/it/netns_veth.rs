//! A server in a network namespace of its own, reached from the host through a veth whose
//! outside end is in a bridge of the host (as LXC and podman wire containers): dumped,
//! killed (its namespace, the veth and its outside end go with it, in the kernel's own
//! time), restored with `--external veth[eth0]:OUTSIDE2@BRIDGE`. Its address, MAC address and routes come back,
//! a connection the host kept open across the dump (`--tcp-established`) goes on, and a
//! new one is served. The bridge and everything in it are removed at the end.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crs_tests::process::{skip_unless_root, KillOnDrop, ProcessGuard};

const PORT: u16 = 7777;

/// Runs `ip ARGS` (in `pid`'s network namespace when given); its stdout.
fn ip(pid: Option<i32>, args: &[&str]) -> std::io::Result<String> {
    let mut cmd = match pid {
        Some(p) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net=/proc/{p}/ns/net")).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    let out = cmd.args(args).output()?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "ip {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The host's bridge (with its address) and the outside end's names, before and after
/// the restore; removed on drop.
struct HostSide {
    bridge: String,
    outside: String,
    outside2: String,
}

impl HostSide {
    /// A veth pair: `outside` here, `eth0` in the network namespace of `pid`.
    fn veth_into(&self, pid: i32) {
        let pid = pid.to_string();
        let args = [
            "link",
            "add",
            &self.outside,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
        ];
        ip(None, &[&args[..], &["netns", &pid]].concat()).unwrap();
    }
}

impl Drop for HostSide {
    fn drop(&mut self) {
        let _ = ip(None, &["link", "del", &self.outside]);
        let _ = ip(None, &["link", "del", &self.outside2]);
        let _ = ip(None, &["link", "del", &self.bridge]);
    }
}

/// Python, in a network namespace of its own (unshare): once told (a line on stdin) that
/// its network is there, it serves PORT on every address, a thread per connection, each
/// line `ping N` answered `pong N`.
fn server() -> ProcessGuard {
    let script = format!(
        "import socket, sys, threading\n\
         print('started', flush=True)\n\
         sys.stdin.readline()\n\
         l = socket.socket()\nl.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         l.bind(('0.0.0.0', {PORT}))\nl.listen(4)\n\
         def serve(s):\n\
         \x20   for line in s.makefile('rb'):\n\
         \x20       s.sendall(b'pong ' + line[5:])\n\
         print('listening', flush=True)\n\
         while True:\n\
         \x20   s, _ = l.accept()\n\
         \x20   threading.Thread(target=serve, args=(s,), daemon=True).start()\n"
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "python3", "-c", &script]);
    let mut g = ProcessGuard::spawn(cmd).expect("spawn unshare python3");
    // Python itself runs (not a launcher that execs it).
    g.expect_line("started");
    g
}

/// Sends `ping N` on `c` and returns the answer line.
fn ping(c: &mut TcpStream, r: &mut BufReader<TcpStream>, n: u32) -> std::io::Result<String> {
    c.write_all(format!("ping {n}\n").as_bytes())?;
    let mut line = String::new();
    r.read_line(&mut line)?;
    Ok(line)
}

#[test]
fn server_behind_a_veth_in_a_bridge_is_reached_again_after_restore() {
    if skip_unless_root("server_behind_a_veth_in_a_bridge_is_reached_again_after_restore") {
        return;
    }
    let tag = std::process::id() % 100_000;
    let net = (tag % 250) as u8 + 1;
    let host = HostSide {
        bridge: format!("crsbr{tag}"),
        outside: format!("crsvh{tag}"),
        outside2: format!("crsvr{tag}"),
    };
    let (host_ip, inside_ip) = (format!("10.213.{net}.1"), format!("10.213.{net}.2"));
    // Ports forward at once (as LXC's and docker's bridges), not after STP's 15 s.
    ip(
        None,
        &[
            "link",
            "add",
            &host.bridge,
            "type",
            "bridge",
            "forward_delay",
            "0",
        ],
    )
    .unwrap();
    ip(
        None,
        &["addr", "add", &format!("{host_ip}/24"), "dev", &host.bridge],
    )
    .unwrap();
    ip(None, &["link", "set", &host.bridge, "up"]).unwrap();

    let mut g = server();
    let pid = g.pid();
    let pid_s = pid.to_string();
    host.veth_into(pid);
    ip(
        None,
        &["link", "set", &host.outside, "master", &host.bridge, "up"],
    )
    .unwrap();
    let inside = |args: &[&str]| ip(Some(pid), args).unwrap();
    inside(&["link", "set", "lo", "up"]);
    inside(&["addr", "add", &format!("{inside_ip}/24"), "dev", "eth0"]);
    inside(&["link", "set", "eth0", "up"]);
    inside(&["route", "add", "default", "via", &host_ip]);
    g.send_line("go").unwrap();
    g.expect_line("listening");

    let mut c = TcpStream::connect((inside_ip.as_str(), PORT)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    assert_eq!(ping(&mut c, &mut r, 1).unwrap(), "pong 1\n");
    let before = (
        inside(&["-4", "addr", "show", "dev", "eth0"]),
        inside(&["route", "show"]),
        inside(&["link", "show", "eth0"]),
    );

    let keys = crs_tests::stdio_pipe_keys(pid);
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().to_str().unwrap().to_owned();
    crs_tests::crs_ok(&[
        "dump",
        "--shell-job",
        "--tcp-established",
        "-t",
        &pid_s,
        "-D",
        &images,
    ]);
    g.wait().unwrap();
    // Sent while the server is gone: retransmitted until it is back.
    c.write_all(b"ping 2\n").unwrap();

    // The kernel takes the dead namespace apart on its own time, the veth with it: the
    // outside end gets another name, which cannot be in use still.
    let external = format!("--external=veth[eth0]:{}@{}", host.outside2, host.bridge);
    let _stdio = crs_tests::restore_with_new_stdio_via(
        &[],
        &["--tcp-established", &external],
        &images,
        &keys,
    );
    let _kill = KillOnDrop(pid);
    let after = (
        inside(&["-4", "addr", "show", "dev", "eth0"]),
        inside(&["route", "show"]),
        inside(&["link", "show", "eth0"]),
    );
    // The outside end is a new device: its index (`eth0@ifN`) is new.
    let strip = |s: &str| {
        s.split_whitespace()
            .map(|w| w.split_once("@if").map_or(w, |(name, _)| name))
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(strip(&after.0), strip(&before.0), "eth0's addresses");
    assert_eq!(after.1, before.1, "the routes");
    assert_eq!(
        strip(&after.2),
        strip(&before.2),
        "eth0 (index, MAC address, MTU)"
    );
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "pong 2\n", "the connection kept across the dump");
    assert_eq!(ping(&mut c, &mut r, 3).unwrap(), "pong 3\n");
    let mut c2 = TcpStream::connect((inside_ip.as_str(), PORT)).unwrap();
    c2.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut r2 = BufReader::new(c2.try_clone().unwrap());
    assert_eq!(ping(&mut c2, &mut r2, 4).unwrap(), "pong 4\n");
}

#[test]
fn restore_of_a_veth_without_its_outside_name_is_refused_by_name() {
    if skip_unless_root("restore_of_a_veth_without_its_outside_name_is_refused_by_name") {
        return;
    }
    let tag = std::process::id() % 100_000;
    let host = HostSide {
        bridge: format!("crsbq{tag}"),
        outside: format!("crsvi{tag}"),
        outside2: format!("crsvj{tag}"),
    };
    let mut g = server();
    let pid = g.pid();
    let pid_s = pid.to_string();
    host.veth_into(pid);
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().to_str().unwrap().to_owned();
    crs_tests::crs_ok(&["dump", "--shell-job", "-t", &pid_s, "-D", &images]);
    g.wait().unwrap();
    let out = Command::new(crs_tests::crs_bin())
        .args(["restore", "--shell-job", "-d", "-D", &images])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(
                "veth device eth0 whose peer is outside the namespace: restore with --external \
                 veth[eth0]:OUTSIDE_NAME[@BRIDGE]"
            ),
        "{err}"
    );
    // Nothing of it is left: no process, no device.
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    let out = Command::new(crs_tests::crs_bin())
        .args(["restore", "--external", "mnt[/x]:y", "-D", &images])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("crs takes --external veth[IFNAME]:OUTNAME[@BRIDGE] only"),
        "{err}"
    );
}
