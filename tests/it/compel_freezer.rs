//! Seizing with the cgroup freezer (v1 `freezer.state`, v2 `cgroup.freeze`): the tree is
//! frozen while it is walked, thawed once held, and left running after release.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crs_compel::{Release, SeizeOptions, SeizedTree};
use crs_tests::process::{skip_unless_root, ProcessGuard};

/// A cgroup directory made for one test, removed on drop (after its processes are gone).
struct CgroupDir(PathBuf);

impl CgroupDir {
    fn create(hierarchy: &str, name: &str) -> Option<CgroupDir> {
        let base = Path::new(hierarchy);
        if !base.join("cgroup.procs").exists() {
            return None;
        }
        let dir = base.join(format!("{name}-{}", std::process::id()));
        fs::create_dir(&dir).ok()?;
        Some(CgroupDir(dir))
    }
}

impl Drop for CgroupDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.0);
    }
}

fn frozen_seize(hierarchy: &str, test: &str) {
    if skip_unless_root(test) {
        return;
    }
    let Some(cg) = CgroupDir::create(hierarchy, "crs-compel-freezer") else {
        crs_testkit::skip(test, &format!("no usable cgroup hierarchy at {hierarchy}"));
        return;
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_compel_tree"));
    cmd.args(["--children", "0"]);
    let mut wl = ProcessGuard::spawn(cmd).expect("spawn");
    wl.expect_line("ready");
    fs::write(cg.0.join("cgroup.procs"), wl.pid().to_string()).expect("move into cgroup");

    let opts = SeizeOptions {
        freeze_cgroup: Some(cg.0.clone()),
        freeze_timeout: Duration::from_secs(10),
        ..SeizeOptions::default()
    };
    let mut tree = SeizedTree::seize(wl.pid(), &opts).expect("seize frozen");
    assert_eq!(tree.thread_count(), 8);
    for tid in tree.tids().collect::<Vec<_>>() {
        assert_eq!(
            tree.syscall(tid, libc::SYS_getpid, [0; 6]).expect("getpid"),
            i64::from(wl.pid())
        );
    }
    tree.release(Release::Detach).expect("release");

    // Thawed: the v2 file reads 0, the v1 one THAWED.
    let state = fs::read_to_string(cg.0.join("cgroup.freeze"))
        .or_else(|_| fs::read_to_string(cg.0.join("freezer.state")))
        .expect("freezer state");
    assert!(
        matches!(state.trim(), "0" | "THAWED"),
        "cgroup left {state:?}"
    );

    wl.send_line("stop").expect("stop");
    let st = wl.wait().expect("wait");
    assert!(st.success(), "workload verdict: {st}");
    drop(wl);
    drop(cg);
}

#[test]
fn compel_freezer_v2_frozen_tree_is_seized_and_thawed() {
    frozen_seize(
        "/sys/fs/cgroup/unified",
        "compel_freezer_v2_frozen_tree_is_seized_and_thawed",
    );
}

#[test]
fn compel_freezer_v1_frozen_tree_is_seized_and_thawed() {
    frozen_seize(
        "/sys/fs/cgroup/freezer",
        "compel_freezer_v1_frozen_tree_is_seized_and_thawed",
    );
}
