//! Connections waiting in a listener's queue, and what becomes of connections a dump does
//! not keep. A connection waiting to be accepted whose client is in the tree waits again
//! after the restore (accepted then, it carries bytes both ways; one whose client shut
//! down reads EOF); one whose client already sent bytes is refused by name. With
//! `--tcp-close` (connections dumped without their state, or with it) they come back
//! closed: their holder reads EOF and cannot send, while its listener serves on. With
//! `--skip-in-flight` a connection waiting for a peer outside the tree is left out: the
//! restored listener has none waiting and serves new ones.

use std::io::{BufRead, Write};
use std::net::TcpStream;
use std::process::Command;

use crs_tests::process::{skip_unless_root, KillOnDrop, ProcessGuard};

/// Python: a listener on 127.0.0.1 and a connection to it (`c` and `s`, with "queued"
/// sent from c and not read), or with `pending` none accepted yet: it prints its port,
/// then `ready`; each line it reads then is answered with, for c and s, their TCP state,
/// what a non-blocking recv gives and what a non-blocking send gives; whether a
/// connection is waiting to be accepted; and whether a new connection is served.
fn workload(pending: bool) -> (ProcessGuard, u16) {
    let script = format!(
        "import errno, select, socket, sys\n\
         l = socket.socket()\nl.bind(('127.0.0.1', 0))\nl.listen(4)\n\
         print(l.getsockname()[1], flush=True)\n\
         pending = {pending}\n\
         if pending:\n    sys.stdin.readline()\n\
         else:\n\
         \x20   c = socket.create_connection(l.getsockname())\n\
         \x20   s, _ = l.accept()\n\
         \x20   c.sendall(b'queued')\n\
         def state(x):\n\
         \x20   st = x.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]\n\
         \x20   try:\n        r = repr(x.recv(16, socket.MSG_DONTWAIT))\n\
         \x20   except OSError as e:\n        r = errno.errorcode[e.errno]\n\
         \x20   try:\n        x.send(b'1', socket.MSG_DONTWAIT)\n        w = 'sent'\n\
         \x20   except OSError as e:\n        w = errno.errorcode[e.errno]\n\
         \x20   return '%d/%s/%s' % (st, r, w)\n\
         print('ready', flush=True)\n\
         for _ in sys.stdin:\n\
         \x20   out = [] if pending else [state(c), state(s)]\n\
         \x20   waiting = select.select([l], [], [], 0)[0]\n\
         \x20   out.append('waiting' if waiting else 'none-waiting')\n\
         \x20   if waiting:\n        l.accept()\n\
         \x20   n = socket.create_connection(l.getsockname())\n\
         \x20   a, _ = l.accept()\n\
         \x20   n.sendall(b'new')\n\
         \x20   out.append(a.recv(3).decode())\n\
         \x20   print(' '.join(out), flush=True)\n",
        pending = if pending { "True" } else { "False" },
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    let mut g = ProcessGuard::spawn(cmd).expect("spawn python3");
    let port = g.read_line().unwrap().trim().parse().unwrap();
    (g, port)
}

/// Python: a listener on 127.0.0.1 and two connections to it from the same process that
/// it has not accepted, c1 and c2 (shut down for writing), and with `sent` c1 has sent
/// "early". It prints `ready`; each line it reads then is answered with what the
/// accepted ends of c1 and c2 read, what c1 reads back, and whether another is waiting.
fn waiting_workload(sent: bool) -> ProcessGuard {
    let script = format!(
        "import select, socket, sys\n\
         l = socket.socket()\nl.bind(('127.0.0.1', 0))\nl.listen(4)\n\
         c1 = socket.create_connection(l.getsockname())\n\
         c2 = socket.create_connection(l.getsockname())\n\
         c2.shutdown(socket.SHUT_WR)\n\
         if {sent}:\n    c1.sendall(b'early')\n\
         print('ready', flush=True)\n\
         for _ in sys.stdin:\n\
         \x20   l.settimeout(60)\n\
         \x20   a = dict(l.accept()[::-1] for _ in range(2))\n\
         \x20   s1, s2 = a[c1.getsockname()], a[c2.getsockname()]\n\
         \x20   c1.sendall(b'hello')\n\
         \x20   got1 = s1.recv(5)\n\
         \x20   got2 = s2.recv(5)\n\
         \x20   s1.sendall(b'back')\n\
         \x20   back = c1.recv(4)\n\
         \x20   more = select.select([l], [], [], 0)[0]\n\
         \x20   print(got1, got2, back, 'waiting' if more else 'none-waiting', flush=True)\n",
        sent = if sent { "True" } else { "False" },
    );
    let mut cmd = Command::new("python3");
    cmd.args(["-c", &script]);
    let mut g = ProcessGuard::spawn(cmd).expect("spawn python3");
    g.expect_line("ready");
    g
}

/// What the waiting workload answers when its connections waited as they should.
const WAITED: &str = "b'hello' b'' b'back' none-waiting";

#[test]
fn without_a_dump_the_waiting_connections_are_accepted() {
    if skip_unless_root("without_a_dump_the_waiting_connections_are_accepted") {
        return;
    }
    let mut g = waiting_workload(false);
    g.send_line("check").unwrap();
    assert_eq!(g.read_line().unwrap(), WAITED);
}

#[test]
fn connections_waiting_for_clients_in_the_tree_wait_again_after_restore() {
    if skip_unless_root("connections_waiting_for_clients_in_the_tree_wait_again_after_restore") {
        return;
    }
    let mut g = waiting_workload(false);
    let line = across_a_dump(&mut g, &["--tcp-established"], &["--tcp-established"], None);
    assert_eq!(line, WAITED);
}

#[test]
fn connection_waiting_with_bytes_its_client_sent_is_refused_by_name() {
    if skip_unless_root("connection_waiting_with_bytes_its_client_sent_is_refused_by_name") {
        return;
    }
    let mut g = waiting_workload(true);
    let pid_s = g.pid().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let (err, ok) = crs(&[
        "dump",
        "--shell-job",
        "--tcp-established",
        "-t",
        &pid_s,
        "-D",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains(
            "a TCP listener with a connection waiting to be accepted that holds bytes its \
             client sent"
        ),
        "{err}"
    );
    // The task runs on, untouched: its connections still wait, c1's bytes first.
    g.send_line("check").unwrap();
    assert_eq!(g.read_line().unwrap(), "b'early' b'' b'back' none-waiting");
}

/// Runs `crs ARGS`: its stderr, whether it exited 0.
fn crs(args: &[&str]) -> (String, bool) {
    let out = Command::new(crs_tests::crs_bin())
        .args(args)
        .output()
        .expect("run crs");
    (
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// Dumps workload `g` with `dump_opts`, restores it with `restore_opts` (new stdio), asks
/// it for its line and returns it.
fn across_a_dump(
    g: &mut ProcessGuard,
    dump_opts: &[&str],
    restore_opts: &[&str],
    refused_without: Option<&str>,
) -> String {
    let pid = g.pid();
    let keys = crs_tests::stdio_pipe_keys(pid);
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().to_str().unwrap().to_owned();
    let pid_s = pid.to_string();
    let mut args = vec!["dump", "--shell-job", "-t", &pid_s, "-D", &images];
    args.extend_from_slice(dump_opts);
    crs_tests::crs_ok(&args);
    g.wait().unwrap();
    if let Some(want) = refused_without {
        let (err, ok) = crs(&["restore", "--shell-job", "-d", "-D", &images]);
        assert!(
            !ok && err.contains(want),
            "restore without {restore_opts:?}: {err}"
        );
    }
    let (mut stdin, mut stdout) =
        crs_tests::restore_with_new_stdio_via(&[], restore_opts, &images, &keys);
    let _kill = KillOnDrop(pid);
    stdin.write_all(b"check\n").unwrap();
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

/// Both ends closed: TCP_CLOSE (7), EOF, EPIPE; the listener serves a new connection.
const CLOSED: &str = "7/b''/EPIPE 7/b''/EPIPE none-waiting new";

#[test]
fn without_a_dump_the_connection_is_open() {
    if skip_unless_root("without_a_dump_the_connection_is_open") {
        return;
    }
    // What the other tests' lines differ from: the check is not blind.
    let (mut g, _) = workload(false);
    g.expect_line("ready");
    g.send_line("check").unwrap();
    assert_eq!(
        g.read_line().unwrap(),
        "1/EAGAIN/sent 1/b'queued1'/sent none-waiting new"
    );
}

#[test]
fn tcp_close_dump_restores_connections_closed() {
    if skip_unless_root("tcp_close_dump_restores_connections_closed") {
        return;
    }
    let (mut g, _) = workload(false);
    g.expect_line("ready");
    let line = across_a_dump(
        &mut g,
        &["--tcp-close"],
        &["--tcp-close"],
        Some("the images were dumped with --tcp-close (no connection's state is saved): restore with --tcp-close"),
    );
    assert_eq!(line, CLOSED);
}

#[test]
fn tcp_established_dump_restored_with_tcp_close_is_closed() {
    if skip_unless_root("tcp_established_dump_restored_with_tcp_close_is_closed") {
        return;
    }
    let (mut g, _) = workload(false);
    g.expect_line("ready");
    let line = across_a_dump(
        &mut g,
        &["--tcp-established"],
        &["--tcp-close"],
        Some("established TCP connection(s) in the images (restore with --tcp-established, or --tcp-close"),
    );
    assert_eq!(line, CLOSED);
}

#[test]
fn skip_in_flight_leaves_out_a_connection_waiting_from_outside() {
    if skip_unless_root("skip_in_flight_leaves_out_a_connection_waiting_from_outside") {
        return;
    }
    let (mut g, port) = workload(true);
    let waiting = TcpStream::connect(("127.0.0.1", port)).unwrap();
    // Connected (the kernel answered the handshake): it waits in the listener's queue.
    g.send_line("go").unwrap();
    g.expect_line("ready");
    let pid_s = g.pid().to_string();
    let tmp = tempfile::tempdir().unwrap();
    let (err, ok) = crs(&[
        "dump",
        "--shell-job",
        "-t",
        &pid_s,
        "-D",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(
        !ok && err.contains("a TCP listener with connections waiting to be accepted from a peer outside the tree (--skip-in-flight leaves them out)"),
        "{err}"
    );
    let line = across_a_dump(&mut g, &["--skip-in-flight"], &[], None);
    assert_eq!(line, "none-waiting new");
    drop(waiting);
}
