//! `crs check --feature NAME` answers for the kernel, for every CRIU 4.2 feature name, the
//! way `criu check --feature NAME` does (zdtm chooses its tests by these answers):
//!
//! - the answer's form: `NAME is supported` on stdout and exit 0, or an `Error: NAME ...`
//!   line on stderr and exit 1; an unknown name is an error; `crs check` alone says
//!   "Looks good.";
//! - each answer agrees with what the test sees of the kernel by other means, where that
//!   is cheap (a /proc file, /proc/filesystems, the kernel's config when readable);
//! - asking for every feature leaves no mount, network device or process behind;
//! - with `CRIU` naming a CRIU 4.2 binary, crs and `$CRIU check --feature NAME` give the
//!   same answer for every name, but for the few where crs answers for what crs would run
//!   and CRIU for how it was built (listed in [`DIFFERENT_QUESTION`]).

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use crs_testkit::root_or_skip;
use crs_tests::crs_bin;
use nix::fcntl::{Flock, FlockArg};

/// CRIU 4.2's `check --feature` names (criu/cr-check.c, `feature_list`).
const FEATURES: &[&str] = &[
    "mnt_id",
    "mem_dirty_track",
    "aio_remap",
    "timerfd",
    "tun",
    "tun_ns",
    "userns",
    "fdinfo_lock",
    "seccomp_suspend",
    "seccomp_filters",
    "loginuid",
    "cgroupns",
    "autofs",
    "tcp_half_closed",
    "compat_cr",
    "uffd",
    "uffd-noncoop",
    "can_map_vdso",
    "sk_ns",
    "sk_unix_file",
    "net_diag_raw",
    "nsid",
    "link_nsid",
    "kcmp_epoll",
    "timens",
    "external_net_ns",
    "clone3_set_tid",
    "newifindex",
    "nftables",
    "has_ipt_legacy",
    "pidfd_store",
    "ns_pid",
    "apparmor_stacking",
    "network_lock_nftables",
    "sockopt_buf_lock",
    "memfd_hugetlb",
    "move_mount_set_group",
    "openat2",
    "get_rseq_conf",
    "ipv6_freebind",
    "pagemap_scan",
    "timer_cr_ids",
    "overlayfs_maps",
    "breakpoints",
    "pagemap_scan_guard_pages",
];

/// Names where CRIU and crs answer different questions, so their answers may differ:
/// (name, when they may differ, why).
const DIFFERENT_QUESTION: &[(&str, Differs, &str)] = &[
    (
        "external_net_ns",
        Differs::CrsNo,
        "CRIU answers yes for itself (no kernel side); crs takes --external veth[...] only",
    ),
    (
        "nftables",
        Differs::Any,
        "CRIU answers for its build (libnftables); crs for the nft binary",
    ),
    (
        "network_lock_nftables",
        Differs::Any,
        "CRIU needs libnftables in its build; crs the nft binary",
    ),
    (
        "net_diag_raw",
        Differs::CrsNo,
        "CRIU 4.2 says yes without raw sock_diag (it takes the kernel's ENOENT for raw \
         sockets as success); crs asks the kernel",
    ),
];

#[derive(Clone, Copy)]
enum Differs {
    /// Only with crs saying no and CRIU yes.
    CrsNo,
    /// Either way.
    Any,
}

/// Serializes the tests that run crs (the leftover check counts crs's processes).
fn lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn crs_check(features: &[&str]) -> Output {
    let mut cmd = Command::new(crs_bin());
    cmd.arg("check");
    for f in features {
        cmd.args(["--feature", f]);
    }
    cmd.output().expect("running crs check")
}

/// crs's answer for `name`, after checking the answer's form.
fn crs_answer(name: &str) -> bool {
    let out = crs_check(&[name]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {
            assert_eq!(
                stdout.trim(),
                format!("{name} is supported"),
                "stdout of crs check --feature {name}"
            );
            true
        }
        Some(1) => {
            assert!(
                stdout.is_empty() && stderr.starts_with(&format!("Error: {name} ")),
                "crs check --feature {name} failed without its error line:\n{stdout}{stderr}"
            );
            false
        }
        other => panic!("crs check --feature {name} exited with {other:?}:\n{stdout}{stderr}"),
    }
}

fn all_answers() -> BTreeMap<&'static str, bool> {
    FEATURES.iter().map(|&f| (f, crs_answer(f))).collect()
}

fn has_line(text: &str, prefix: &str) -> bool {
    text.lines().any(|l| l.starts_with(prefix))
}

fn exists(path: &str) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Whether `bin` is a file in a PATH directory.
fn in_path(bin: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

/// The kernel's build configuration (/proc/config.gz, through zcat), when readable.
fn kernel_config() -> Option<String> {
    if !Path::new("/proc/config.gz").exists() {
        return None;
    }
    let out = Command::new("zcat").arg("/proc/config.gz").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A kernel option as the config says: Some("y"), Some("m"), or None when not set.
fn config_value<'a>(config: &'a str, option: &str) -> Option<&'a str> {
    config
        .lines()
        .find_map(|l| l.strip_prefix(option)?.strip_prefix('='))
}

/// What the test sees of the kernel for some names: `(name, expected answer, how seen)`.
fn observations() -> Vec<(&'static str, bool, String)> {
    let mut seen = Vec::new();
    let mut iff = |name, yes: bool, how: &str| seen.push((name, yes, how.to_string()));

    let f = File::open("/").expect("opening /");
    let fdinfo =
        fs::read_to_string(format!("/proc/self/fdinfo/{}", f.as_raw_fd())).expect("reading fdinfo");
    iff("mnt_id", has_line(&fdinfo, "mnt_id:"), "fdinfo has mnt_id:");

    let smaps = fs::read_to_string("/proc/self/smaps").expect("reading smaps");
    let soft_dirty = smaps
        .lines()
        .filter_map(|l| l.strip_prefix("VmFlags:"))
        .any(|flags| flags.split_whitespace().any(|f| f == "sd"));
    iff("mem_dirty_track", soft_dirty, "smaps VmFlags show sd");

    let tmp = tempfile::tempfile().expect("temp file");
    let locked = Flock::lock(tmp, FlockArg::LockExclusiveNonblock).expect("flock");
    let fdinfo = fs::read_to_string(format!("/proc/self/fdinfo/{}", locked.as_raw_fd()))
        .expect("reading fdinfo");
    iff(
        "fdinfo_lock",
        has_line(&fdinfo, "lock:"),
        "fdinfo of a flocked file has lock:",
    );

    iff(
        "cgroupns",
        exists("/proc/self/ns/cgroup"),
        "/proc/self/ns/cgroup",
    );
    iff("timens", exists("/proc/self/ns/time"), "/proc/self/ns/time");
    let status = fs::read_to_string("/proc/self/status").expect("reading status");
    iff("ns_pid", has_line(&status, "NSpid:"), "status has NSpid:");

    let filesystems = fs::read_to_string("/proc/filesystems").expect("/proc/filesystems");
    let fs_known = |name: &str| {
        filesystems
            .lines()
            .any(|l| l.split_whitespace().last() == Some(name))
    };
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let no_modules = !Path::new("/lib/modules").join(release.trim()).exists();
    if fs_known("autofs") {
        iff("autofs", true, "autofs in /proc/filesystems");
    } else if no_modules {
        iff(
            "autofs",
            false,
            "no autofs in /proc/filesystems, no modules",
        );
    }
    // One-way: the answer needs a filesystem the kernel lacks (and cannot load).
    for (name, fs_type) in [
        ("overlayfs_maps", "overlay"),
        ("memfd_hugetlb", "hugetlbfs"),
    ] {
        if no_modules && !fs_known(fs_type) {
            iff(
                name,
                false,
                &format!("no {fs_type} in /proc/filesystems, no modules"),
            );
        }
    }

    // One-way: the answer needs what the test sees missing.
    for (name, path) in [
        ("userns", "/proc/self/ns/user"),
        ("tun", "/dev/net/tun"),
        ("tun_ns", "/dev/net/tun"),
        ("loginuid", "/proc/self/loginuid"),
        ("ipv6_freebind", "/proc/sys/net/ipv6"),
        ("apparmor_stacking", "/sys/kernel/security/apparmor"),
    ] {
        if !exists(path) {
            iff(name, false, &format!("no {path}"));
        }
    }
    if !in_path("nft") {
        iff("nftables", false, "no nft in PATH");
        iff("network_lock_nftables", false, "no nft in PATH");
    }
    if !in_path("iptables-save") && !in_path("iptables-legacy-save") {
        iff("has_ipt_legacy", false, "no iptables-save in PATH");
    }

    if let Some(config) = kernel_config() {
        let mut by_config = |name, option: &str, yes_if_y: bool| match config_value(&config, option)
        {
            None => iff(name, false, &format!("{option} is not set")),
            Some("y") if yes_if_y => iff(name, true, &format!("{option}=y")),
            _ => {}
        };
        by_config("mem_dirty_track", "CONFIG_MEM_SOFT_DIRTY", true);
        by_config("net_diag_raw", "CONFIG_INET_RAW_DIAG", true);
        by_config("autofs", "CONFIG_AUTOFS_FS", true);
        by_config("timens", "CONFIG_TIME_NS", true);
        by_config("overlayfs_maps", "CONFIG_OVERLAY_FS", false);
        by_config("tun", "CONFIG_TUN", false);
        by_config("link_nsid", "CONFIG_VETH", false);
        by_config("can_map_vdso", "CONFIG_IA32_EMULATION", false);
        by_config("compat_cr", "CONFIG_IA32_EMULATION", false);
        by_config("breakpoints", "CONFIG_HAVE_HW_BREAKPOINT", false);
        by_config("loginuid", "CONFIG_AUDITSYSCALL", false);
        by_config("memfd_hugetlb", "CONFIG_HUGETLBFS", false);
    }
    seen
}

#[test]
fn check_without_feature_looks_good() {
    let _l = lock();
    let out = crs_check(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "Looks good.",
        "crs check: {:?}\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_unknown_feature_refused() {
    let _l = lock();
    let out = crs_check(&["no_such_feature"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown feature \"no_such_feature\""),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn check_feature_answers_match_kernel_observations() {
    if !root_or_skip("check_feature_answers_match_kernel_observations") {
        return;
    }
    let _l = lock();
    let answers = all_answers();
    let mut wrong = Vec::new();
    for (name, want, how) in observations() {
        let got = answers[name];
        println!("{name}: crs {got}, observed {want} ({how})");
        if got != want {
            wrong.push(format!("{name}: crs says {got}, but {how} says {want}"));
        }
    }
    // Implications between answers.
    for (a, b) in [
        ("uffd-noncoop", "uffd"),
        ("compat_cr", "can_map_vdso"),
        ("pagemap_scan_guard_pages", "pagemap_scan"),
        ("network_lock_nftables", "nftables"),
        ("seccomp_filters", "seccomp_suspend"),
    ] {
        if answers[a] && !answers[b] {
            wrong.push(format!("{a} is supported but {b} is not"));
        }
    }
    // What `crs check` itself needs is among the names.
    for name in ["clone3_set_tid", "pagemap_scan"] {
        if !answers[name] {
            wrong.push(format!("{name} is not supported, yet crs check looks good"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn check_every_feature_leaves_nothing_behind() {
    if !root_or_skip("check_every_feature_leaves_nothing_behind") {
        return;
    }
    let _l = lock();
    // A child crs forked and failed to reap would come to the test, a subreaper.
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    let out = crs_check(FEATURES);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "crs check with every feature: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let answered = String::from_utf8_lossy(&out.stdout).lines().count()
        + String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| l.starts_with("Error: "))
            .count();
    assert_eq!(answered, FEATURES.len(), "one answer per feature");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mounts: Vec<&str> = mountinfo
        .lines()
        .filter(|l| l.contains("crs-probe"))
        .collect();
    assert!(mounts.is_empty(), "probe mounts left: {mounts:?}");
    let links: Vec<String> = fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.starts_with("crs-probe"))
        .collect();
    assert!(links.is_empty(), "probe network devices left: {links:?}");
    let me = std::process::id();
    let mut left = Vec::new();
    for task in fs::read_dir(format!("/proc/{me}/task"))
        .expect("tasks")
        .flatten()
    {
        let kids = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for kid in kids.split_whitespace() {
            let comm = fs::read_to_string(format!("/proc/{kid}/comm")).unwrap_or_default();
            if comm.trim() == "crs" {
                left.push(kid.to_string());
            }
        }
    }
    assert!(left.is_empty(), "crs processes left: {left:?}");
}

#[test]
fn check_feature_answers_match_criu() {
    if !root_or_skip("check_feature_answers_match_criu") {
        return;
    }
    let Some(criu) = crs_testkit::hand_built_criu("check_feature_answers_match_criu") else {
        return;
    };
    let _l = lock();
    let answers = all_answers();
    let mut wrong = Vec::new();
    for &name in FEATURES {
        let out = Command::new(&criu)
            .args(["check", "--no-default-config", "--feature", name])
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", criu.to_string_lossy()));
        let theirs = out.status.success();
        let ours = answers[name];
        println!("{name}: crs {ours}, criu {theirs}");
        if ours == theirs {
            continue;
        }
        match DIFFERENT_QUESTION.iter().find(|(n, ..)| *n == name) {
            Some((_, Differs::Any, why)) => println!("  differs as it may: {why}"),
            Some((_, Differs::CrsNo, why)) if !ours => println!("  differs as it may: {why}"),
            _ => wrong.push(format!("{name}: crs says {ours}, criu {theirs}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
