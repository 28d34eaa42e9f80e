//! Dumps the `simple` reference workload with crs and compares the images with what
//! CRIU 4.2 wrote for the same program (shared/criu-images/simple).

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{decode, wait_for_log, Guard};
use crs_dump::{dump, DumpOptions};
use serde_json::Value;

const REF_PID: &str = "71000";

/// Closes every inherited fd above 2 (the test harness leaks some), puts stdio on one
/// /dev/null description, and execs `$0 $1` as a session leader (same pid).
const CLOSE_FDS_AND_EXEC: &str = r#"for f in /proc/$$/fd/*; do n=${f##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done; exec setsid "$0" "$1" <>/dev/null >&0 2>&0"#;

/// Every key path of a JSON value, list indices collapsed.
fn shape(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{prefix}.{k}");
                out.insert(p.clone());
                shape(v, &p, out);
            }
        }
        Value::Array(a) => {
            for v in a {
                shape(v, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn shape_of(v: &Value) -> BTreeSet<String> {
    let mut s = BTreeSet::new();
    shape(v, "", &mut s);
    s
}

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn entries(v: &Value) -> &Vec<Value> {
    v["entries"].as_array().expect("entries")
}

/// Starts simple as a session leader with stdio on one /dev/null description, sends
/// SIGUSR1 twice, and waits until it logged both.
fn start_simple(set: &crs_testkit::Reference, work: &Path) -> (Guard, PathBuf) {
    let bin = work.join("simple");
    fs::copy(set.images.join("bin/simple"), &bin).unwrap();
    fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
    let log = work.join("simple.log");
    let guard = Guard::spawn(
        Command::new("/bin/bash")
            .arg("-c")
            .arg(CLOSE_FDS_AND_EXEC)
            .arg(&bin)
            .arg(&log),
    );
    let pid = guard.pid();
    let long = Duration::from_secs(20);
    wait_for_log(&log, long, |t| t.contains("usr1=0"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGUSR1).unwrap();
    wait_for_log(&log, long, |t| t.contains("usr1=1"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGUSR1).unwrap();
    wait_for_log(&log, long, |t| t.contains("usr1=2"));
    (guard, log)
}

fn ref_json(set: &crs_testkit::Reference, name: &str) -> Value {
    let text = fs::read_to_string(set.images.join("json").join(format!("{name}.json")))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// The fields, less those whose presence depends on the CPU rather than on the dump:
/// CRIU records the shadow-stack state (`xsave.cet`) only on CPUs with shadow stacks, and
/// the reference was written on one; this machine's CPU may lack them.
fn cpu_independent(mut shape: BTreeSet<String>) -> BTreeSet<String> {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let shstk = cpuinfo.lines().filter(|l| l.starts_with("flags")).any(|l| {
        l.split_whitespace()
            .any(|f| f == "shstk" || f == "user_shstk")
    });
    if !shstk {
        shape.retain(|k| !k.contains(".xsave.cet"));
    }
    shape
}

#[test]
fn dump_simple_matches_criu_reference() {
    // The set's lock: crs-restore's tests run the same binary in /tmp/crs-ref/simple.
    let Some(set) = crs_testkit::reference("simple", "dump_simple_matches_criu_reference") else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let (guard, log) = start_simple(&set, work.path());
    let pid = guard.pid();
    let images = work.path().join("images");
    fs::create_dir(&images).unwrap();

    let mut opts = DumpOptions::new(pid, &images);
    opts.leave_running = true;
    let stats = dump(&opts).expect("dump");
    assert!(stats.pages_written >= 2048, "{stats:?}");

    // Still running after -R: the log keeps counting.
    let before = fs::read_to_string(&log).unwrap().lines().count();
    wait_for_log(&log, Duration::from_secs(10), |t| {
        t.lines().count() > before + 1
    });
    let last = fs::read_to_string(&log).unwrap();
    let last = last.lines().last().unwrap().to_string();
    assert!(
        last.contains("usr1=2 pend_usr2=1 blk_usr2=1 fdpos=8224"),
        "{last}"
    );

    // Same image files, with our pid in place of the reference pid.
    let pid_s = pid.to_string();
    let mut want: BTreeSet<String> = fs::read_dir(&set.images)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            (n.ends_with(".img") || n == "stats-dump").then(|| n.replace(REF_PID, &pid_s))
        })
        .collect();
    let got: BTreeSet<String> = fs::read_dir(&images)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    want.remove("dump.log");
    // And crs's checksums of them, which CRIU does not write (nor read).
    want.insert(crs_images::checksums::FILE_NAME.to_string());
    assert_eq!(got, want, "image files differ from CRIU's");

    // Same fields in every image.
    let mut ours = std::collections::BTreeMap::new();
    for name in &got {
        if name.starts_with("pages-") || name == crs_images::checksums::FILE_NAME {
            continue;
        }
        let key = name.trim_end_matches(".img").replace(&pid_s, REF_PID);
        let mine = decode(&images.join(name));
        let theirs = ref_json(&set, &key);
        assert_eq!(
            cpu_independent(shape_of(&mine)),
            cpu_independent(shape_of(&theirs)),
            "fields of {name} differ from CRIU's"
        );
        ours.insert(key, mine);
    }

    // Values that must not differ.
    let core = &entries(&ours["core-71000"])[0];
    let rcore_img = ref_json(&set, "core-71000");
    let rcore = &entries(&rcore_img)[0];
    assert_eq!(core["mtype"], rcore["mtype"]);
    let (tc, rtc) = (&core["tc"], &rcore["tc"]);
    for k in [
        "task_state",
        "exit_code",
        "personality",
        "blk_sigset",
        "comm",
        "timers",
    ] {
        assert_eq!(tc[k], rtc[k], "tc.{k}");
    }
    let (sa, rsa) = (
        tc["sigactions"].as_array().unwrap(),
        rtc["sigactions"].as_array().unwrap(),
    );
    assert_eq!(sa.len(), rsa.len(), "sigaction count");
    // Ignored dispositions are inherited from whoever started the workload; the handler
    // of SIGUSR1 (index 8: the list skips SIGKILL and SIGSTOP) is the workload's own.
    assert_eq!(sa[8], rsa[8], "SIGUSR1 sigaction");
    assert_eq!(tc["sigactions"][8]["flags"], "0x14000004");
    assert_eq!(tc["sigactions"][8]["mask"], "0x800");
    assert_eq!(tc["signals_s"], rtc["signals_s"]);
    let (th, rth) = (&core["thread_core"], &rcore["thread_core"]);
    for k in [
        "sched_nice",
        "sched_policy",
        "sas",
        "creds",
        "comm",
        "futex_rla_len",
        "cg_set",
    ] {
        assert_eq!(th[k], rth[k], "thread_core.{k}");
    }
    let sigs = th["signals_p"]["signals"].as_array().unwrap();
    assert_eq!(sigs.len(), 1);
    let info = sigs[0]["siginfo"].as_str().unwrap().replace('\n', "");
    let rinfo = rth["signals_p"]["signals"][0]["siginfo"]
        .as_str()
        .unwrap()
        .replace('\n', "");
    // si_signo, si_errno, si_code: SIGUSR2 sent by tgkill (the pid/uid that follow differ).
    assert_eq!(&info[..16], &rinfo[..16], "pending SIGUSR2 siginfo");
    let (ti, rti) = (&core["thread_info"], &rcore["thread_info"]);
    assert_eq!(ti["tls"], rti["tls"]);
    for k in ["cs", "ss", "mode", "orig_ax", "ax"] {
        assert_eq!(ti["gpregs"][k], rti["gpregs"][k], "gpregs.{k}");
    }
    for k in ["cwd", "mxcsr"] {
        assert_eq!(ti["fpregs"][k], rti["fpregs"][k], "fpregs.{k}");
    }

    // mm: the static non-PIE binary maps at the same addresses; every VMA has the same
    // protection, flags, status bits, madvise bits.
    let mm = &entries(&ours["mm-71000"])[0];
    let rmm_img = ref_json(&set, "mm-71000");
    let rmm = &entries(&rmm_img)[0];
    let (v, rv) = (
        mm["vmas"].as_array().unwrap(),
        rmm["vmas"].as_array().unwrap(),
    );
    assert_eq!(v.len(), rv.len(), "vma count");
    for (a, b) in v.iter().zip(rv) {
        for k in [
            "prot", "flags", "status", "pgoff", "shmid", "fd", "fdflags", "madv",
        ] {
            assert_eq!(a[k], b[k], "vma {} {k}", a["start"]);
        }
        if hex(&b["start"]) < 0x4ae000 {
            assert_eq!((&a["start"], &a["end"]), (&b["start"], &b["end"]));
        }
    }
    for k in [
        "mm_start_code",
        "mm_end_code",
        "mm_start_data",
        "mm_end_data",
        "exe_file_id",
        "dumpable",
        "thp_disabled",
    ] {
        assert_eq!(mm[k], rmm[k], "mm.{k}");
    }

    // Files: exe (same build-id), /dev/null, data.bin at 8224, cwd, root.
    let f = entries(&ours["files"]);
    let rf_img = ref_json(&set, "files");
    let rf = entries(&rf_img);
    assert_eq!(f.len(), rf.len(), "file count");
    for (a, b) in f.iter().zip(rf) {
        for k in ["flags", "pos", "fown", "size", "mode", "build_id"] {
            // data.bin keeps the mode of whoever created it first in /tmp/crs-ref/simple.
            if k == "mode" && a["reg"]["name"] == "/tmp/crs-ref/simple/data.bin" {
                assert_eq!(a["reg"][k].as_u64().unwrap() & 0o170000, 0o100000);
                continue;
            }
            assert_eq!(a["reg"][k], b["reg"][k], "file {} {k}", a["id"]);
        }
    }
    assert_eq!(f[2]["reg"]["name"], "/tmp/crs-ref/simple/data.bin");
    assert_eq!(f[2]["reg"]["pos"], 8224);
    for name in ["fdinfo-2", "fs-71000", "ids-71000", "seccomp"] {
        assert_eq!(ours[name], ref_json(&set, name), "{name}");
    }
    let mut inv = ours["inventory"].clone();
    let mut rinv = ref_json(&set, "inventory");
    inv["entries"][0]["dump_criu_run_id"] = Value::Null;
    rinv["entries"][0]["dump_criu_run_id"] = Value::Null;
    // The lock method is each tool's default: CRIU 4.2's iptables (0), crs's nftables (1).
    assert_eq!(inv["entries"][0]["network_lock_method"], 1);
    assert_eq!(rinv["entries"][0]["network_lock_method"], 0);
    inv["entries"][0]["network_lock_method"] = Value::Null;
    rinv["entries"][0]["network_lock_method"] = Value::Null;
    assert_eq!(inv, rinv, "inventory");
    let ps = &entries(&ours["pstree"])[0];
    assert_eq!(
        (&ps["pid"], &ps["pgid"], &ps["sid"]),
        (&ps["pid"], &ps["pid"], &ps["pid"])
    );
    assert_eq!(ps["pid"], pid);
    assert_eq!(ps["ppid"], 0);

    // Pagemap: the pages of the binary's own mappings are the ones CRIU saved.
    let low = |v: &Value| -> Vec<(String, String, u64)> {
        entries(v)[1..]
            .iter()
            .filter(|e| hex(&e["vaddr"]) < 0x4ae000)
            .map(|e| {
                (
                    e["vaddr"].as_str().unwrap().to_string(),
                    e["flags"].as_str().unwrap().to_string(),
                    e["nr_pages"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    // CRIU's own text page at 0x401000 is in its set only because CRIU patched a syscall
    // instruction there to run its parasite (the write made the page anonymous); crs runs
    // injected syscalls from an existing instruction and leaves the text untouched.
    let mut theirs = low(&ref_json(&set, "pagemap-71000"));
    theirs.retain(|e| e.0 != "0x401000");
    assert_eq!(low(&ours["pagemap-71000"]), theirs);
}
