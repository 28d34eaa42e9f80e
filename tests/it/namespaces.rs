//! A tree with namespaces of its own that crs cannot dump yet is refused by name, and the
//! task runs on untouched; the kinds crs does dump are the zoo's `uts_ipc_namespaces`,
//! `pid_namespace_init` and `network_namespace_loopback`.

use std::process::{Command, Output};

use crs_tests::process::{skip_unless_root, KillOnDrop, ProcessGuard};

/// The only child of `pid` (unshare --fork's namespace init, once it runs its shell).
fn only_child(pid: i32) -> i32 {
    let kids = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
    let kids: Vec<i32> = kids
        .split_whitespace()
        .map(|k| k.parse().unwrap())
        .collect();
    assert_eq!(kids.len(), 1, "children of {pid}: {kids:?}");
    kids[0]
}

/// `crs dump -t PID --shell-job` into a fresh directory; the directory is empty after.
fn dump_refused(pid: i32) -> String {
    let dir = tempfile::tempdir().unwrap();
    let Output { status, stderr, .. } = Command::new(crs_tests::crs_bin())
        .args(["dump", "--shell-job", "-t", &pid.to_string(), "-D"])
        .arg(dir.path())
        .output()
        .expect("run crs");
    let err = String::from_utf8_lossy(&stderr).into_owned();
    assert!(!status.success(), "the dump of {pid} succeeded: {err}");
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(left.is_empty(), "a refused dump left {left:?}");
    err
}

/// The shell still answers: it was neither killed nor left stopped.
fn answers(g: &mut ProcessGuard) {
    g.send_line("after").unwrap();
    g.expect_line("got after");
}

#[test]
fn dump_own_mount_namespace_is_refused_by_name_task_runs_on() {
    if skip_unless_root("dump_own_mount_namespace_is_refused_by_name_task_runs_on") {
        return;
    }
    let mut g = crs_tests::answering_shell(&["unshare", "--mount"]);
    let err = dump_refused(g.pid());
    assert!(
        err.contains(&format!(
            "process {} (the tree's root) has its own mount namespace: crs cannot dump mount \
             namespaces yet",
            g.pid()
        )),
        "{err}"
    );
    answers(&mut g);
}

/// `ip ARGS` inside the network namespace of `pid`; its stdout.
fn ip_in(pid: i32, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("ip")
        .args(args)
        .output()
        .expect("run nsenter ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {args:?} in the namespace of {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `nft ARGS` inside the network namespace of `pid` (the nftables package); its stdout.
fn nft_in(pid: i32, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net=/proc/{pid}/ns/net"))
        .arg("nft")
        .args(args)
        .output()
        .expect("run nsenter nft (nftables)");
    assert!(
        out.status.success(),
        "nft {args:?} in the namespace of {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace made by `workloads/netns_extra.c` in mode `mode`, then given more
/// with each `ip` command of `setup` run inside.
fn netns_extra(mode: &str, setup: &[&[&str]]) -> ProcessGuard {
    let mut cmd = Command::new(std::path::Path::new(env!("ZOO_DIR")).join("netns_extra"));
    cmd.arg(mode);
    let mut g = ProcessGuard::spawn(cmd).expect("spawn netns_extra");
    g.expect_line("ready");
    for args in setup {
        ip_in(g.pid(), args);
    }
    g
}

/// A network namespace holding what `mode` and `setup` make, which crs does not restore:
/// the dump is refused naming it (`want`), and the task runs on.
fn netns_extra_is_refused(mode: &str, setup: &[&[&str]], want: &str) {
    let mut g = netns_extra(mode, setup);
    let err = dump_refused(g.pid());
    assert!(
        err.contains(&format!(
            "the network namespace of process {} holds {want}",
            g.pid()
        )),
        "{err}"
    );
    assert!(err.contains("use --empty-ns net"), "{err}");
    answers(&mut g);
    // With --empty-ns net the namespace is not looked at: the dump succeeds.
    let dir = tempfile::tempdir().unwrap();
    let pid = g.pid().to_string();
    let images = dir.path().to_str().unwrap();
    crs_tests::crs_ok(&[
        "dump",
        "-R",
        "--shell-job",
        "--empty-ns",
        "net",
        "-t",
        &pid,
        "-D",
        images,
    ]);
    let net_images: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("netdev") || n.starts_with("netns"))
        .collect();
    assert!(net_images.is_empty(), "{net_images:?}");
    answers(&mut g);
}

#[test]
fn dump_network_namespace_with_a_bridge_is_refused_by_name() {
    if skip_unless_root("dump_network_namespace_with_a_bridge_is_refused_by_name") {
        return;
    }
    netns_extra_is_refused(
        "plain",
        &[&["link", "add", "crsb0", "type", "bridge"]],
        "device crsb0 (kind bridge)",
    );
}

#[test]
fn dump_network_namespace_with_a_route_in_another_table_is_refused_by_name() {
    if skip_unless_root("dump_network_namespace_with_a_route_in_another_table_is_refused_by_name") {
        return;
    }
    netns_extra_is_refused(
        "plain",
        &[&["route", "add", "10.9.9.0/24", "dev", "lo", "table", "100"]],
        "a route in table 100",
    );
}

#[test]
fn dump_network_namespace_with_a_sysctl_changed_is_refused_by_name() {
    if skip_unless_root("dump_network_namespace_with_a_sysctl_changed_is_refused_by_name") {
        return;
    }
    netns_extra_is_refused("sysctl", &[], "sysctl net.core.somaxconn = \"1234\"");
}

/// The namespace's addresses, routes and rules come back: 127.0.0.2 on lo (`addr`), a
/// route of 10/8 through lo (`route`), a route of the test's own through it, an IPv4 and
/// an IPv6 routing rule, and an nftables table with a rule.
#[test]
fn network_namespace_addresses_and_routes_are_restored() {
    if skip_unless_root("network_namespace_addresses_and_routes_are_restored") {
        return;
    }
    for mode in ["addr", "route"] {
        let mut g = netns_extra(
            mode,
            &[
                &["route", "add", "192.0.2.0/24", "dev", "lo"],
                &["rule", "add", "from", "10.1.2.3", "table", "100"],
                &["-6", "rule", "add", "from", "2001:db8::1", "table", "100"],
            ],
        );
        let pid = g.pid();
        nft_in(pid, &["add", "table", "inet", "crstest"]);
        nft_in(
            pid,
            &[
                "add", "chain", "inet", "crstest", "input", "{", "type", "filter", "hook", "input",
                "priority", "0", ";", "}",
            ],
        );
        nft_in(
            pid,
            &[
                "add", "rule", "inet", "crstest", "input", "tcp", "dport", "9", "drop",
            ],
        );
        let state = || {
            (
                ip_in(pid, &["-4", "addr", "show"]),
                ip_in(pid, &["route", "show"]),
                ip_in(pid, &["rule", "show"]) + &ip_in(pid, &["-6", "rule", "show"]),
                nft_in(pid, &["list", "ruleset"]),
            )
        };
        let before = state();
        let keys = crs_tests::stdio_pipe_keys(pid);
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().to_str().unwrap();
        let pid_s = pid.to_string();
        crs_tests::crs_ok(&["dump", "--shell-job", "-t", &pid_s, "-D", images]);
        g.wait().unwrap();
        for f in ["ifaddr", "route", "route6", "rule", "nftables"] {
            assert!(
                dir.path()
                    .join(format!("{f}-{}.img", net_ns_id(images)))
                    .exists(),
                "{f}"
            );
        }
        let (mut stdin, mut stdout) = crs_tests::restore_with_new_stdio(images, &keys);
        let _kill = crs_tests::process::KillOnDrop(pid);
        let after = state();
        assert_eq!(
            after, before,
            "{mode}: the addresses, routes, rules and nftables ruleset"
        );
        assert!(before.2.contains("from 10.1.2.3 lookup 100"), "{before:?}");
        assert!(before.3.contains("tcp dport 9 drop"), "{before:?}");
        assert!(
            before.0.contains("127.0.0.2") || before.1.contains("10.0.0.0/8 dev lo"),
            "{mode}: {before:?}"
        );
        assert!(before.1.contains("192.0.2.0/24 dev lo"), "{before:?}");
        use std::io::{BufRead, Write};
        stdin.write_all(b"x\n").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "got x\n");
    }
}

/// The network namespace id of the images in `dir` (inventory.img's root ids name the
/// dumper's; the root's ids image the tree's).
fn net_ns_id(dir: &str) -> u32 {
    let netdev = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.strip_prefix("netdev-")?
                .strip_suffix(".img")?
                .parse()
                .ok()
        })
        .next();
    netdev.expect("a netdev image")
}

/// A pid namespace is dumped from its init (the zoo's `pid_namespace_init`); a tree
/// rooted below it is refused.
#[test]
fn dump_below_a_pid_namespace_init_is_refused_by_name_task_runs_on() {
    if skip_unless_root("dump_below_a_pid_namespace_init_is_refused_by_name_task_runs_on") {
        return;
    }
    // The namespace's init is a shell that runs the answering one as its child (pid 2).
    let mut cmd = Command::new("unshare");
    cmd.args(["--pid", "--fork", "--kill-child", "sh", "-c"])
        .arg("sh -c 'echo ready; while read x; do echo \"got $x\"; done'; true");
    let mut g = ProcessGuard::spawn(cmd).expect("spawn unshare");
    g.expect_line("ready");
    let init = only_child(g.pid());
    let inner = only_child(init);
    let err = dump_refused(inner);
    assert!(
        err.contains(&format!(
            "process {inner} (the tree's root) is pid 2 of its own pid namespace: crs dumps a \
             pid namespace from its init (pid 1) only"
        )),
        "{err}"
    );
    answers(&mut g);
}

#[test]
fn dump_nested_pid_namespace_is_refused_by_name_task_runs_on() {
    if skip_unless_root("dump_nested_pid_namespace_is_refused_by_name_task_runs_on") {
        return;
    }
    let mut g = crs_tests::answering_shell(&["unshare", "--pid", "--fork", "--kill-child"]);
    let init = only_child(g.pid());
    let err = dump_refused(g.pid());
    assert!(
        err.contains(&format!(
            "process {init} is in another pid namespace than the tree's root: crs cannot dump \
             nested pid namespaces"
        )),
        "{err}"
    );
    answers(&mut g);
}

/// `--empty-ns net` on dump and restore: nothing of the namespace is saved, the restored
/// tree gets a new one, empty (lo down, so no ::1), as CRIU makes it.
#[test]
fn empty_ns_net_restores_in_a_new_empty_network_namespace() {
    let test = "empty_ns_net_restores_in_a_new_empty_network_namespace";
    if skip_unless_root(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("ready");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut child = Command::new(std::path::Path::new(env!("ZOO_DIR")).join("netns_extra"))
        .arg("detached")
        .arg(&fifo)
        .stdin(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut guard = KillOnDrop(pid);
    // Blocks until the workload has opened, written and closed the fifo.
    let ready = std::fs::read_to_string(&fifo).unwrap();
    assert_eq!(ready, "ready");
    let inet6 = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/net/if_inet6")).unwrap();
    assert!(
        inet6(pid).contains("00000000000000000000000000000001"),
        "lo is not up"
    );
    let images = tmp.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let crs = crs_tests::crs_ok;
    let images_s = images.to_str().unwrap();
    crs(&[
        "dump",
        "--empty-ns",
        "net",
        "-t",
        &pid.to_string(),
        "-D",
        images_s,
    ]);
    child.wait().unwrap();
    let names: Vec<String> = std::fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("netdev") || n.starts_with("netns")),
        "{names:?}"
    );
    // The restored task is reparented to this test when `crs restore -d` exits.
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    crs(&["restore", "--empty-ns", "net", "-d", "-D", images_s]);
    let fresh_net = std::fs::metadata(format!("/proc/{pid}/ns/net")).unwrap();
    let ours = std::fs::metadata("/proc/self/ns/net").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        fresh_net.ino(),
        ours.ino(),
        "restored in the test's network namespace"
    );
    assert!(
        !inet6(pid).contains("00000000000000000000000000000001"),
        "lo is up"
    );
    guard.kill();
    let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    assert_eq!(
        st,
        nix::sys::wait::WaitStatus::Signaled(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
            false
        )
    );
}

/// A python3 that answers each line with its CLOCK_MONOTONIC in nanoseconds, restored
/// with new stdio pipes (`--inherit-fd`); the test's own CLOCK_MONOTONIC when it asked.
struct Clock {
    to: std::fs::File,
    from: std::io::BufReader<std::fs::File>,
}

impl Clock {
    fn ask(&mut self) -> (i128, i128) {
        use std::io::{BufRead, Write};
        let ours = monotonic_ns();
        writeln!(self.to, "t").unwrap();
        let mut line = String::new();
        self.from.read_line(&mut line).unwrap();
        (ours, line.trim().parse().expect("a number of nanoseconds"))
    }
}

fn monotonic_ns() -> i128 {
    crs_sys::time::now(libc::CLOCK_MONOTONIC)
        .unwrap()
        .as_nanos() as i128
}

/// Dumps `pid` (a shell job whose stdin and stdout are pipes) into `dir`, reaps it
/// (`reap`), lets `gap` pass, and restores it with new stdio pipes.
fn dump_and_restore_with_a_gap(
    pid: i32,
    dir: &std::path::Path,
    gap: std::time::Duration,
    reap: impl FnOnce(),
) -> Clock {
    let keys = crs_tests::stdio_pipe_keys(pid);
    let images = dir.to_str().unwrap();
    crs_tests::crs_ok(&["dump", "--shell-job", "-t", &pid.to_string(), "-D", images]);
    reap();
    // The downtime the restored clock must not show (not a synchronisation).
    std::thread::sleep(gap);
    let (to, from) = crs_tests::restore_with_new_stdio(images, &keys);
    Clock { to, from }
}

/// As CRIU does, a restored tree gets a time namespace of its own in which
/// CLOCK_MONOTONIC goes on from the dump: the downtime does not show. Dumped again, its
/// time namespace is saved (timens-ID.img) and restored with both downtimes hidden.
#[test]
fn restored_monotonic_clock_goes_on_from_the_dump_twice() {
    let test = "restored_monotonic_clock_goes_on_from_the_dump_twice";
    if skip_unless_root(test) {
        return;
    }
    let script = "import sys, time\nprint('ready', flush=True)\n\
                  for _ in sys.stdin:\n    print(time.monotonic_ns(), flush=True)\n";
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]);
    let mut g = ProcessGuard::spawn(cmd).expect("spawn python3");
    g.expect_line("ready");
    let pid = g.pid();
    g.send_line("t").unwrap();
    let before = (
        monotonic_ns(),
        g.read_line().unwrap().parse::<i128>().unwrap(),
    );
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let gap = std::time::Duration::from_millis(400);
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first");
    std::fs::create_dir(&first).unwrap();
    // The dump kills it: reaped (its pid free again) before the restore.
    let mut clock = dump_and_restore_with_a_gap(pid, &first, gap, || {
        g.wait().unwrap();
    });
    let _kill = KillOnDrop(pid);
    let after = clock.ask();
    let hidden = |(w1, t1): (i128, i128), (w2, t2): (i128, i128)| (w2 - w1) - (t2 - t1);
    let gap_ns = gap.as_nanos() as i128;
    assert!(
        hidden(before, after) >= gap_ns * 3 / 4,
        "the restored clock shows the downtime: {} ns of {} hidden",
        hidden(before, after),
        gap_ns
    );
    let ours = std::fs::metadata("/proc/self/ns/time").unwrap();
    let theirs = std::fs::metadata(format!("/proc/{pid}/ns/time")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(
        ours.ino(),
        theirs.ino(),
        "restored in the test's time namespace"
    );

    // Again, from its own time namespace.
    let second = tmp.path().join("second");
    std::fs::create_dir(&second).unwrap();
    // Restored, it is this subreaper's child.
    let mut clock = dump_and_restore_with_a_gap(pid, &second, gap, || {
        nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    });
    assert!(
        std::fs::read_dir(&second).unwrap().any(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            n.starts_with("timens-") && n != "timens-0.img"
        }),
        "no timens-ID.img for the tree's own time namespace"
    );
    let again = clock.ask();
    assert!(
        hidden(before, again) >= 2 * gap_ns * 3 / 4,
        "the second downtime shows: {} ns hidden",
        hidden(before, again)
    );
    drop(clock);
    let st = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
    assert!(
        matches!(st, nix::sys::wait::WaitStatus::Exited(_, 0)),
        "{st:?}"
    );
}
