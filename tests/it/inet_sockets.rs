//! Inet sockets crs does not dump (yet, or without the option that asks for them) are
//! refused by name, and the task runs on; the UDP and TCP sockets it dumps are the zoo's
//! `udp_sockets`, `raw_sockets`, `tcp_listeners`, `tcp_connections`, `tcp_half_closed`,
//! `netlink_sockets` and `packet_sockets`.

use std::process::Command;

use crs_tests::process::{skip_unless_root, ProcessGuard};

/// python3 running `setup`, then "ready", then answering one line of stdin with "got".
fn python(setup: &str) -> ProcessGuard {
    let script = format!(
        "import socket, sys\n{setup}\nprint('ready', flush=True)\nsys.stdin.readline()\nprint('got', flush=True)\n"
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    let mut g = ProcessGuard::spawn(cmd).expect("spawn python3");
    g.expect_line("ready");
    g
}

fn refused(g: &mut ProcessGuard, want: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(crs_tests::crs_bin())
        .args(["dump", "--shell-job", "-t", &g.pid().to_string(), "-D"])
        .arg(dir.path())
        .output()
        .expect("run crs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the dump succeeded: {err}");
    assert!(err.contains(want), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "a refused dump left images"
    );
    g.send_line("after").unwrap();
    g.expect_line("got");
}

#[test]
fn tcp_connection_is_refused_by_name_task_runs_on() {
    if skip_unless_root("tcp_connection_is_refused_by_name_task_runs_on") {
        return;
    }
    let mut g = python(
        "l = socket.socket()\nl.bind(('127.0.0.1', 0))\nl.listen()\n\
         c = socket.create_connection(l.getsockname())\ns, _ = l.accept()",
    );
    refused(
        &mut g,
        "is not supported yet: an established TCP connection (dump with --tcp-established,",
    );
}

#[test]
fn tcp_listener_with_a_connection_waiting_is_refused_by_name_task_runs_on() {
    if skip_unless_root("tcp_listener_with_a_connection_waiting_is_refused_by_name_task_runs_on") {
        return;
    }
    // The waiting connection's other end is held by another process (the test's python
    // is the dumped tree): a client socket of its own would be refused first.
    let mut g = python("l = socket.socket()\nl.bind(('127.0.0.1', 0))\nl.listen()\n\
         import subprocess\n\
         subprocess.run(['python3', '-c', 'import socket,sys; socket.create_connection(sys.argv[1:3] and (sys.argv[1], int(sys.argv[2])))', '127.0.0.1', str(l.getsockname()[1])])");
    refused(
        &mut g,
        "a TCP listener with connections waiting to be accepted",
    );
}

#[test]
fn raw_socket_with_a_queued_datagram_is_refused_by_name_task_runs_on() {
    if skip_unless_root("raw_socket_with_a_queued_datagram_is_refused_by_name_task_runs_on") {
        return;
    }
    // It pings itself (the kernel's echo reply, and the request itself, are queued on the
    // raw ICMP socket); the raw sockets crs dumps are the zoo's `raw_sockets`.
    let mut g = python(
        "s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n\
         s.sendto(b'\\x08\\x00\\xf7\\xff\\x00\\x00\\x00\\x00', ('127.0.0.1', 0))\n\
         import select\nselect.select([s], [], [])",
    );
    refused(
        &mut g,
        "a UDP, ICMP ping or raw socket with datagrams queued for reading",
    );
}

#[test]
fn udp_socket_with_a_queued_datagram_is_refused_by_name_task_runs_on() {
    if skip_unless_root("udp_socket_with_a_queued_datagram_is_refused_by_name_task_runs_on") {
        return;
    }
    let mut g = python(
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('127.0.0.1', 0))\n\
         s.sendto(b'x', s.getsockname())\n\
         import select\nselect.select([s], [], [])",
    );
    refused(
        &mut g,
        "a UDP, ICMP ping or raw socket with datagrams queued for reading",
    );
}

#[test]
fn half_closed_tcp_connection_without_the_option_is_refused_by_name_task_runs_on() {
    let test = "half_closed_tcp_connection_without_the_option_is_refused_by_name_task_runs_on";
    if skip_unless_root(test) {
        return;
    }
    // The client end has sent its FIN (FIN-WAIT-2), the server end has read it
    // (CLOSE-WAIT): dumped with --tcp-established (the zoo's `tcp_half_closed`), refused
    // without.
    let mut g = python(
        "l = socket.socket()\nl.bind(('127.0.0.1', 0))\nl.listen()\n\
         c = socket.create_connection(l.getsockname())\ns, _ = l.accept()\n\
         c.shutdown(socket.SHUT_WR)\nassert s.recv(1) == b''",
    );
    refused(
        &mut g,
        "an established TCP connection (dump with --tcp-established,",
    );
}

#[test]
fn corked_udp_socket_holding_data_is_refused_by_name_task_runs_on() {
    if skip_unless_root("corked_udp_socket_holding_data_is_refused_by_name_task_runs_on") {
        return;
    }
    // UDP_CORK (17, 1): what is sent waits in the socket until it is uncorked.
    let mut g = python(
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.setsockopt(17, 1, 1)\ns.sendto(b'corked', ('127.0.0.1', 9))",
    );
    refused(
        &mut g,
        "a corked UDP socket holding data not sent yet (UDP_CORK)",
    );
}

/// An ICMP ping socket (in a network namespace of its own, where ping_group_range lets
/// root make one), bound to its echo identifier: after the restore it has the same, and
/// its echo requests are answered; the namespace's ping_group_range comes back too.
#[test]
fn icmp_ping_socket_keeps_its_identifier_and_pings_after_restore() {
    if skip_unless_root("icmp_ping_socket_keeps_its_identifier_and_pings_after_restore") {
        return;
    }
    let script = "import socket, struct, subprocess, sys\n\
        open('/proc/sys/net/ipv4/ping_group_range', 'w').write('0 2147483647')\n\
        subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)\n\
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP)\n\
        s.bind(('127.0.0.1', 4242))\n\
        s.settimeout(60)\n\
        def ping(seq):\n\
        \x20   s.sendto(struct.pack('!BBHHH', 8, 0, 0, 0, seq) + b'crs', ('127.0.0.1', 0))\n\
        \x20   d = s.recv(64)\n\
        \x20   t, _, _, ident, sq = struct.unpack('!BBHHH', d[:8])\n\
        \x20   return '%d/%d/%d/%s' % (t, sq, ident, d[8:].decode())\n\
        print(ping(1), flush=True)\n\
        for _ in sys.stdin:\n\
        \x20   g = open('/proc/sys/net/ipv4/ping_group_range').read().split()\n\
        \x20   print(s.getsockname()[1], ping(2), ' '.join(g), flush=True)\n";
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "python3", "-c", script]);
    let mut g = ProcessGuard::spawn(cmd).expect("spawn unshare python3");
    // An echo reply (type 0) to our identifier.
    assert_eq!(g.read_line().unwrap(), "0/1/4242/crs");
    let pid = g.pid();
    let keys = crs_tests::stdio_pipe_keys(pid);
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().to_str().unwrap();
    crs_tests::crs_ok(&["dump", "--shell-job", "-t", &pid.to_string(), "-D", images]);
    g.wait().unwrap();
    let (mut stdin, mut stdout) = crs_tests::restore_with_new_stdio(images, &keys);
    let _kill = crs_tests::process::KillOnDrop(pid);
    use std::io::{BufRead, Write};
    stdin.write_all(b"check\n").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "4242 0/2/4242/crs 0 2147483647\n");
}

#[test]
fn sock_packet_socket_is_refused_by_name_task_runs_on() {
    if skip_unless_root("sock_packet_socket_is_refused_by_name_task_runs_on") {
        return;
    }
    // AF_PACKET, SOCK_PACKET (10), no protocol: it receives nothing.
    let mut g = python("s = socket.socket(socket.AF_PACKET, 10, 0)");
    refused(
        &mut g,
        "a packet socket of the obsolete SOCK_PACKET type (crs restores SOCK_RAW and \
         SOCK_DGRAM ones)",
    );
}
