//! A tree with namespaces of its own that crs cannot dump yet is refused by name, and the
//! task runs on untouched; the kinds crs does dump are the zoo's `uts_ipc_namespaces` and
//! `pid_namespace_init`.

use std::process::{Command, Output};

use crs_tests::process::{skip_unless_root, ProcessGuard};

/// A shell that answers each line it reads with "got LINE", started under `prefix`
/// (an `unshare` command line); ready once it printed "ready".
fn answering(prefix: &[&str]) -> ProcessGuard {
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..]).args([
        "sh",
        "-c",
        "echo ready; while read x; do echo \"got $x\"; done",
    ]);
    let mut g = ProcessGuard::spawn(cmd).expect("spawn unshare");
    g.expect_line("ready");
    g
}

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
    let mut g = answering(&["unshare", "--mount"]);
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

#[test]
fn dump_own_network_namespace_is_refused_by_name_task_runs_on() {
    if skip_unless_root("dump_own_network_namespace_is_refused_by_name_task_runs_on") {
        return;
    }
    let mut g = answering(&["unshare", "--net"]);
    let err = dump_refused(g.pid());
    assert!(err.contains("has its own network namespace"), "{err}");
    answers(&mut g);
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
    let mut g = answering(&["unshare", "--pid", "--fork", "--kill-child"]);
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
