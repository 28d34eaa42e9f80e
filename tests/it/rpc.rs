//! crs driven through CRIU's RPC, as runc, podman and libcriu drive criu: the test is
//! the client. It makes a `SOCK_SEQPACKET` pair, runs `crs swrk <fd>` with one end
//! inherited, and speaks `criu_req`/`criu_resp` (crs_images's rpc.proto) on the other:
//! VERSION, FEATURE_CHECK and CHECK; a DUMP of the zoo's `tree` workload (a root, three
//! children, a grandchild, a zombie) with `images_dir_fd` an fd of the test, then a RESTORE
//! with `rst_sibling`, whose root must be the test's own child; options crs does not
//! honour refused by name with the task untouched; notify_scripts round trips, and a
//! notification answered false that stops a dump (the task runs on untouched) or a
//! restore (the half-restored tree is gone). With `$CRIU`, CRIU's answers to VERSION and
//! FEATURE_CHECK have the same shape as crs's.
//!
//! The workload's own checks are the verdict: after SIGTERM it checks its memory, ids
//! and children and exits 0 with `PASS: tree`. Every process a test starts (crs, the
//! workload, restored trees) is SIGKILLed and reaped by a guard, even on panic; the test
//! process is a child subreaper, so a dumped tree's children come back to it.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crs_images::pb::rpc::{
    Criu_cg_mode, Criu_features, Criu_opts, Criu_req, Criu_req_type, Criu_resp,
};
use crs_tests::{crs_bin, descendants, set_cloexec, wait_readable};
use nix::sys::signal::{killpg, Signal};
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use protobuf::{EnumOrUnknown, Message, MessageField};

/// How long one answer of crs (a whole dump or restore) may take.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a workload may take to get ready, or to exit after SIGTERM.
const WORKLOAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Held while a child is spawned with an fd made inheritable for it, so that no other
/// test's child inherits that fd meanwhile (one test binary, tests on threads).
static SPAWN: Mutex<()> = Mutex::new(());

fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The test process becomes a child subreaper (once): the children of a killed tree, and
/// a tree restored without rst_sibling once crs exits, come back to it.
fn become_subreaper() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
    });
}

/// A process the test started or restored: on drop, SIGKILLed (its process group too,
/// for a session leader), waited for, and reaped with the processes seen below it.
struct ProcGuard {
    pid: i32,
    pidfd: OwnedFd,
    group: bool,
    reaped: Option<WaitStatus>,
}

impl ProcGuard {
    fn open(pid: i32, group: bool) -> ProcGuard {
        let pidfd = crs_sys::pidfd::pidfd_open(pid, 0).unwrap_or_else(|e| {
            let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
            panic!("pidfd_open({pid}): {e}")
        });
        ProcGuard {
            pid,
            pidfd,
            group,
            reaped: None,
        }
    }

    fn signal(&self, sig: Signal) {
        crs_sys::pidfd::pidfd_send_signal(self.pidfd.as_fd(), sig as i32)
            .unwrap_or_else(|e| panic!("{sig} to {}: {e}", self.pid));
    }

    fn alive(&self) -> bool {
        wait_readable(&[self.pidfd.as_fd()], Duration::ZERO).is_none()
    }

    fn wait_exit(&self, timeout: Duration) -> bool {
        wait_readable(&[self.pidfd.as_fd()], timeout) == Some(0)
    }

    /// Reaps it (it must be the test's child by now).
    fn reap(&mut self) -> WaitStatus {
        if let Some(st) = self.reaped {
            return st;
        }
        let st = waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::__WALL))
            .unwrap_or_else(|e| panic!("waitpid({}): {e}", self.pid));
        self.reaped = Some(st);
        st
    }
}

impl Drop for ProcGuard {
    fn drop(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        let below = descendants(self.pid);
        if self.group {
            let _ = killpg(Pid::from_raw(self.pid), Signal::SIGKILL);
        }
        let _ = crs_sys::pidfd::pidfd_send_signal(self.pidfd.as_fd(), Signal::SIGKILL as i32);
        if self.wait_exit(Duration::from_secs(30)) {
            let _ = waitpid(Pid::from_raw(self.pid), Some(WaitPidFlag::__WALL));
        }
        for p in below {
            let _ = waitpid(Pid::from_raw(p), Some(WaitPidFlag::__WALL));
        }
    }
}

/// `crs swrk <fd>` (or `$CRIU swrk <fd>`) and the test's end of its socket.
struct Swrk {
    sk: OwnedFd,
    proc: ProcGuard,
}

impl Swrk {
    fn start(bin: &Path, out: &Path) -> Swrk {
        Swrk::start_with(bin, out, &[])
    }

    /// With extra environment variables (`CRS_FAULT`).
    fn start_with(bin: &Path, out: &Path, env: &[(&str, &str)]) -> Swrk {
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let out = File::create(out).expect("create the swrk output file");
        let child = {
            let _spawning = spawn_lock();
            set_cloexec(&theirs, false);
            let child = Command::new(bin)
                .arg("swrk")
                .arg(theirs.as_raw_fd().to_string())
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("dup"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {} swrk: {e}", bin.display()));
            set_cloexec(&theirs, true);
            child
        };
        drop(theirs);
        let proc = ProcGuard::open(child.id() as i32, false);
        drop(child);
        Swrk { sk: mine, proc }
    }

    fn send(&self, req: &Criu_req) {
        let bytes = req.write_to_bytes().expect("encode criu_req");
        let n = send(self.sk.as_raw_fd(), &bytes, MsgFlags::MSG_NOSIGNAL).expect("send");
        assert_eq!(n, bytes.len());
    }

    /// The next answer; panics if there is none in time or crs closed its end.
    fn recv(&self) -> Criu_resp {
        self.recv_or_eof()
            .expect("swrk closed the socket without answering")
    }

    /// The next answer, None when swrk closed its end (it exited).
    fn recv_or_eof(&self) -> Option<Criu_resp> {
        match wait_readable(&[self.sk.as_fd()], ANSWER_TIMEOUT) {
            Some(0) => {}
            _ => panic!("no answer from swrk in {ANSWER_TIMEOUT:?}"),
        }
        let mut buf = vec![0u8; 1 << 16];
        let n = recv(self.sk.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv");
        (n > 0).then(|| Criu_resp::parse_from_bytes(&buf[..n]).expect("decode criu_resp"))
    }

    /// Sends `req` and returns its answer (no notification may come first).
    fn call(&self, req: &Criu_req) -> Criu_resp {
        self.send(req);
        let r = self.recv();
        assert_ne!(
            r.type_(),
            Criu_req_type::NOTIFY,
            "unexpected notification {r:?}"
        );
        r
    }

    /// Answers a notification.
    fn answer_notify(&self, ok: bool) {
        self.send(&Criu_req {
            type_: Some(EnumOrUnknown::new(Criu_req_type::NOTIFY)),
            notify_success: Some(ok),
            ..Default::default()
        });
    }

    /// Waits for swrk to exit (after its last answer) and reaps it: its exit code.
    fn finish(self) -> i32 {
        match self.end() {
            WaitStatus::Exited(_, code) => code,
            st => panic!("swrk ended with {st:?}"),
        }
    }

    /// Waits for swrk to end and reaps it.
    fn end(mut self) -> WaitStatus {
        drop(self.sk);
        assert!(
            self.proc.wait_exit(ANSWER_TIMEOUT),
            "swrk did not exit after its last answer"
        );
        self.proc.reap()
    }
}

fn request(ty: Criu_req_type, opts: Option<Criu_opts>) -> Criu_req {
    Criu_req {
        type_: Some(EnumOrUnknown::new(ty)),
        opts: opts.map(MessageField::some).unwrap_or_default(),
        ..Default::default()
    }
}

/// The zoo's `tree` workload in a session of its own, and its directory: `work` (its
/// cwd), `images` (kept open: its fd is `images_dir_fd`), `workload.log` (its stdout and
/// stderr, where its verdict goes).
struct Tree {
    // Declared first: the processes die before their directory goes.
    root: Option<ProcGuard>,
    restored: Option<ProcGuard>,
    pid: i32,
    images: File,
    dir: tempfile::TempDir,
}

impl Tree {
    /// None (with a SKIP line) when not root.
    fn start(test: &str) -> Option<Tree> {
        if !crs_testkit::root_or_skip(test) {
            return None;
        }
        become_subreaper();
        let mut dir = tempfile::Builder::new()
            .prefix(&format!("rpc-{test}-"))
            .tempdir()
            .expect("temp dir");
        if std::env::var_os("ZOO_KEEP").is_some() {
            dir.disable_cleanup(true);
            println!("{test}: files kept in {}", dir.path().display());
        }
        let work = dir.path().join("work");
        std::fs::create_dir(&work).expect("work dir");
        std::fs::create_dir(dir.path().join("images")).expect("images dir");
        let images = File::open(dir.path().join("images")).expect("open the images dir");
        let fifo = dir.path().join("ready");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .expect("mkfifo");
        let mut ready = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .expect("open the ready fifo");
        let log = File::create(dir.path().join("workload.log")).expect("workload log");
        let zoo = PathBuf::from(env!("ZOO_DIR"));
        let child = {
            let _spawning = spawn_lock();
            Command::new(zoo.join("zoo_launch"))
                .arg(zoo.join("tree"))
                .current_dir(&work)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("ZOO_READY", &fifo)
                .env("ZOO_TMP", &work)
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup"))
                .stderr(log)
                .spawn()
                .expect("spawn zoo_launch tree")
        };
        let pid = child.id() as i32;
        drop(child);
        let root = ProcGuard::open(pid, true);
        // Until the workload wrote `ready` and closed the fifo.
        crs_tests::wait_ready(&mut ready, root.pidfd.as_fd(), WORKLOAD_TIMEOUT)
            .unwrap_or_else(|why| panic!("{why}"));
        Some(Tree {
            root: Some(root),
            restored: None,
            pid,
            images,
            dir,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn swrk(&self, name: &str) -> Swrk {
        Swrk::start(&crs_bin(), &self.path(&format!("{name}.out")))
    }

    /// The options runc would send (images_dir_fd is the test's fd on the images dir).
    fn opts(&self, log: &str) -> Criu_opts {
        Criu_opts {
            images_dir_fd: Some(self.images.as_raw_fd()),
            log_file: Some(log.into()),
            log_level: Some(4),
            // What runc sets in every request, asking nothing.
            lazy_pages: Some(false),
            auto_dedup: Some(false),
            empty_ns: Some(0),
            ..Default::default()
        }
    }

    fn dump_opts(&self) -> Criu_opts {
        Criu_opts {
            pid: Some(self.pid),
            ..self.opts("dump.log")
        }
    }

    /// The running workload's own verdict: SIGTERM, exit 0, `PASS: tree`, no `FAIL:`.
    fn expect_pass(&mut self) {
        let g = self
            .restored
            .as_mut()
            .or(self.root.as_mut())
            .expect("a running workload");
        g.signal(Signal::SIGTERM);
        assert!(
            g.wait_exit(WORKLOAD_TIMEOUT),
            "no exit {WORKLOAD_TIMEOUT:?} after SIGTERM"
        );
        let st = g.reap();
        let log = std::fs::read_to_string(self.path("workload.log")).unwrap_or_default();
        assert_eq!(
            st,
            WaitStatus::Exited(Pid::from_raw(self.pid), 0),
            "the workload's verdict; its log:\n{log}"
        );
        assert!(
            log.contains("PASS: tree") && !log.contains("FAIL:"),
            "workload log:\n{log}"
        );
    }

    /// After a dump that killed the tree: the root and everything below it reaped, and
    /// their pids free again.
    fn reap_dumped(&mut self, below: &[i32]) {
        let mut root = self.root.take().expect("the dumped root");
        assert!(
            root.wait_exit(WORKLOAD_TIMEOUT),
            "the dumped root still runs"
        );
        assert_eq!(
            root.reap(),
            WaitStatus::Signaled(Pid::from_raw(self.pid), Signal::SIGKILL, false)
        );
        // Reparented to this subreaper as their parents go: parents first.
        for &p in below {
            let _ = waitpid(Pid::from_raw(p), Some(WaitPidFlag::__WALL));
        }
        let mut ids = vec![self.pid];
        ids.extend_from_slice(below);
        wait_ids_free(&ids, &self.path("pid-free.out"));
    }

    fn images_listing(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path("images"))
            .expect("read the images dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

/// Waits until `ids` can be taken again (`workloads/zoo_pid_free.c`).
fn wait_ids_free(ids: &[i32], out: &Path) {
    let out = File::create(out).expect("pid-free output");
    let st = Command::new(PathBuf::from(env!("ZOO_DIR")).join("zoo_pid_free"))
        .args(ids.iter().map(i32::to_string))
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .status()
        .expect("run zoo_pid_free");
    assert!(st.success(), "the dumped pids {ids:?} stay taken");
}

/// The test process's children whose comm is `comm`.
fn children_named(comm: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
    {
        let kids = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for k in kids
            .split_whitespace()
            .filter_map(|k| k.parse::<i32>().ok())
        {
            let name = std::fs::read_to_string(format!("/proc/{k}/comm")).unwrap_or_default();
            if name.trim_end() == comm {
                out.push(k);
            }
        }
    }
    out
}

/// `/proc/PID/status` field `name`.
fn status_field(pid: i32, name: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:\t")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .trim()
        .to_string()
}

fn assert_success(r: &Criu_resp, ty: Criu_req_type, what: &str) {
    assert_eq!(r.type_(), ty, "{what}: {r:?}");
    assert!(
        r.success(),
        "{what} failed: {:?} (errno {})",
        r.cr_errmsg(),
        r.cr_errno()
    );
}

#[test]
fn version_feature_check_and_check_answer() {
    if !crs_testkit::root_or_skip("version_feature_check_and_check_answer") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Swrk::start(&crs_bin(), &dir.path().join("swrk.out"));
    let mut req = request(Criu_req_type::VERSION, None);
    req.keep_open = Some(true);
    let r = s.call(&req);
    assert_success(&r, Criu_req_type::VERSION, "VERSION");
    let v = r.version.as_ref().expect("a version");
    assert_eq!((v.major_number(), v.minor_number()), (4, 2));
    assert!(v.gitid().starts_with("crs-"), "{v:?}");

    let mut req = request(Criu_req_type::FEATURE_CHECK, None);
    req.keep_open = Some(true);
    req.features = MessageField::some(Criu_features {
        mem_track: Some(true),
        lazy_pages: Some(true),
        pidfd_store: Some(true),
        ..Default::default()
    });
    let r = s.call(&req);
    assert_success(&r, Criu_req_type::FEATURE_CHECK, "FEATURE_CHECK");
    let f = r.features.as_ref().expect("features");
    // crs neither tracks memory, nor restores lazily, nor keeps a pidfd store yet.
    assert_eq!(
        (f.mem_track, f.lazy_pages, f.pidfd_store),
        (Some(false), Some(false), Some(false))
    );

    // CHECK ends the session (it cannot keep it open).
    let r = s.call(&request(Criu_req_type::CHECK, None));
    assert_success(&r, Criu_req_type::CHECK, "CHECK");
    assert_eq!(s.finish(), 0);
}

#[test]
fn unserved_requests_are_refused_by_name() {
    if !crs_testkit::root_or_skip("unserved_requests_are_refused_by_name") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Swrk::start(&crs_bin(), &dir.path().join("swrk.out"));
    let opts = Criu_opts {
        images_dir_fd: Some(-1),
        ..Default::default()
    };
    let r = s.call(&request(Criu_req_type::PRE_DUMP, Some(opts)));
    assert_eq!(r.type_(), Criu_req_type::PRE_DUMP);
    assert!(!r.success());
    assert_eq!(r.cr_errno(), libc::EOPNOTSUPP);
    assert!(r.cr_errmsg().contains("PRE_DUMP"), "{:?}", r.cr_errmsg());
    assert_eq!(s.finish(), 1);

    let s = Swrk::start(&crs_bin(), &dir.path().join("swrk2.out"));
    let mut req = request(Criu_req_type::CHECK, None);
    req.keep_open = Some(true);
    let r = s.call(&req);
    assert!(!r.success());
    assert!(r.cr_errmsg().contains("keep_open"), "{:?}", r.cr_errmsg());
    assert_eq!(s.finish(), 1);
}

#[test]
fn dump_then_restore_as_the_callers_child_runs_on() {
    let Some(mut t) = Tree::start("dump_then_restore_as_the_callers_child_runs_on") else {
        return;
    };
    let below = descendants(t.pid);
    assert_eq!(below.len(), 4, "P's children A, B, Z and B's child G");

    let s = t.swrk("dump");
    let r = s.call(&request(Criu_req_type::DUMP, Some(t.dump_opts())));
    assert_success(&r, Criu_req_type::DUMP, "DUMP");
    assert_eq!(r.dump.restored, Some(false));
    assert_eq!(s.finish(), 0);
    // The log is where runc looks: in the work dir (here the images dir).
    let log = std::fs::read_to_string(t.path("images/dump.log")).expect("dump.log");
    assert!(log.contains("Dumping finished successfully"), "{log}");
    t.reap_dumped(&below);

    let s = t.swrk("restore");
    let opts = Criu_opts {
        rst_sibling: Some(true),
        ..t.opts("restore.log")
    };
    let r = s.call(&request(Criu_req_type::RESTORE, Some(opts)));
    assert_success(&r, Criu_req_type::RESTORE, "RESTORE");
    assert_eq!(r.restore.pid, Some(t.pid));
    // The restored root is the test's child: restored by crs as crs's sibling.
    t.restored = Some(ProcGuard::open(t.pid, true));
    assert_eq!(status_field(t.pid, "PPid"), std::process::id().to_string());
    assert_eq!(status_field(t.pid, "TracerPid"), "0");
    assert_eq!(s.finish(), 0);
    assert!(t.restored.as_ref().is_some_and(ProcGuard::alive));
    t.expect_pass();
}

#[test]
fn notify_scripts_round_trip() {
    let Some(mut t) = Tree::start("notify_scripts_round_trip") else {
        return;
    };
    let below = descendants(t.pid);
    let s = t.swrk("dump");
    let opts = Criu_opts {
        notify_scripts: Some(true),
        ..t.dump_opts()
    };
    s.send(&request(Criu_req_type::DUMP, Some(opts)));
    let mut seen = Vec::new();
    let r = loop {
        let r = s.recv();
        if r.type_() != Criu_req_type::NOTIFY {
            break r;
        }
        assert!(r.success());
        let n = r.notify.as_ref().expect("a notify message");
        seen.push((n.script().to_string(), n.pid));
        if n.script() == "post-dump" {
            // The tree is still held, its images complete.
            assert_eq!(status_field(t.pid, "State").chars().next(), Some('t'));
            assert!(t.path("images/inventory.img").exists());
        }
        s.answer_notify(true);
    };
    assert_success(&r, Criu_req_type::DUMP, "DUMP");
    // CRIU's order for a tree without namespaces; no pid with dump notifications.
    assert_eq!(
        seen,
        vec![
            ("pre-dump".to_string(), None),
            ("query-ext-files".to_string(), None),
            ("post-dump".to_string(), None),
        ]
    );
    assert_eq!(s.finish(), 0);
    t.reap_dumped(&below);

    // Restored without rst_sibling: crs's child, reparented to this subreaper when crs
    // exits.
    let s = t.swrk("restore");
    let opts = Criu_opts {
        notify_scripts: Some(true),
        ..t.opts("restore.log")
    };
    s.send(&request(Criu_req_type::RESTORE, Some(opts)));
    let mut seen = Vec::new();
    let r = loop {
        let r = s.recv();
        if r.type_() != Criu_req_type::NOTIFY {
            break r;
        }
        let n = r.notify.as_ref().expect("a notify message");
        seen.push((n.script().to_string(), n.pid));
        match n.script() {
            "pre-restore" => assert!(
                !Path::new(&format!("/proc/{}", t.pid)).exists(),
                "pre-restore comes before anything is created"
            ),
            // Every process exists, held by crs, none running.
            "post-restore" => assert_eq!(status_field(t.pid, "State").chars().next(), Some('t')),
            _ => {}
        }
        s.answer_notify(true);
    };
    assert_success(&r, Criu_req_type::RESTORE, "RESTORE");
    assert_eq!(r.restore.pid, Some(t.pid));
    assert_eq!(
        seen,
        vec![
            ("pre-restore".to_string(), None),
            ("post-restore".to_string(), Some(t.pid)),
            ("pre-resume".to_string(), None),
            ("post-resume".to_string(), None),
        ]
    );
    assert_eq!(s.finish(), 0);
    t.restored = Some(ProcGuard::open(t.pid, true));
    assert_eq!(status_field(t.pid, "PPid"), std::process::id().to_string());
    t.expect_pass();
}

#[test]
fn unsupported_options_are_refused_by_name_and_the_task_is_untouched() {
    let Some(mut t) =
        Tree::start("unsupported_options_are_refused_by_name_and_the_task_is_untouched")
    else {
        return;
    };
    let s = t.swrk("dump");
    let opts = Criu_opts {
        manage_cgroups_mode: Some(EnumOrUnknown::new(Criu_cg_mode::SOFT)),
        lazy_pages: Some(true),
        ..t.dump_opts()
    };
    let r = s.call(&request(Criu_req_type::DUMP, Some(opts)));
    assert_eq!(r.type_(), Criu_req_type::DUMP);
    assert!(!r.success(), "{r:?}");
    assert_eq!(r.cr_errno(), libc::EBADRQC);
    let msg = r.cr_errmsg();
    assert!(
        msg.contains("criu_opts.manage_cgroups_mode") && msg.contains("criu_opts.lazy_pages"),
        "{msg}"
    );
    assert_eq!(s.finish(), 1);
    // The refusal is in the log too, and nothing else was written.
    let log = std::fs::read_to_string(t.path("images/dump.log")).expect("dump.log");
    assert!(log.contains("criu_opts.lazy_pages"), "{log}");
    assert_eq!(t.images_listing(), vec!["dump.log".to_string()]);
    // Never seized: not stopped, not traced, and its own checks pass.
    assert_eq!(status_field(t.pid, "TracerPid"), "0");
    t.expect_pass();
}

#[test]
fn post_dump_answered_false_leaves_the_task_running() {
    let Some(mut t) = Tree::start("post_dump_answered_false_leaves_the_task_running") else {
        return;
    };
    let s = t.swrk("dump");
    let opts = Criu_opts {
        notify_scripts: Some(true),
        ..t.dump_opts()
    };
    s.send(&request(Criu_req_type::DUMP, Some(opts)));
    let r = loop {
        let r = s.recv();
        if r.type_() != Criu_req_type::NOTIFY {
            break r;
        }
        let script = r.notify.script().to_string();
        s.answer_notify(script != "post-dump");
    };
    assert_eq!(r.type_(), Criu_req_type::DUMP);
    assert!(!r.success(), "{r:?}");
    assert!(r.cr_errmsg().contains("post-dump"), "{:?}", r.cr_errmsg());
    assert_eq!(s.finish(), 1);
    // Released as it was (CRIU keeps the complete images; so does crs).
    assert!(t.root.as_ref().is_some_and(ProcGuard::alive));
    assert_eq!(status_field(t.pid, "TracerPid"), "0");
    assert!(t.path("images/inventory.img").exists());
    t.expect_pass();
}

#[test]
fn post_restore_answered_false_removes_the_restored_tree() {
    let Some(mut t) = Tree::start("post_restore_answered_false_removes_the_restored_tree") else {
        return;
    };
    let below = descendants(t.pid);
    let s = t.swrk("dump");
    let r = s.call(&request(Criu_req_type::DUMP, Some(t.dump_opts())));
    assert_success(&r, Criu_req_type::DUMP, "DUMP");
    assert_eq!(s.finish(), 0);
    t.reap_dumped(&below);

    let s = t.swrk("restore");
    let opts = Criu_opts {
        notify_scripts: Some(true),
        rst_sibling: Some(true),
        ..t.opts("restore.log")
    };
    s.send(&request(Criu_req_type::RESTORE, Some(opts)));
    let r = loop {
        let r = s.recv();
        if r.type_() != Criu_req_type::NOTIFY {
            break r;
        }
        s.answer_notify(r.notify.script() != "post-restore");
    };
    assert_eq!(r.type_(), Criu_req_type::RESTORE);
    assert!(!r.success(), "{r:?}");
    assert_eq!(r.restore.pid, Some(-1));
    assert!(
        r.cr_errmsg().contains("post-restore"),
        "{:?}",
        r.cr_errmsg()
    );
    assert_eq!(s.finish(), 1);
    // The root was the test's child: killed, left for the test to reap; the rest gone.
    let mut root = ProcGuard::open(t.pid, true);
    assert!(
        root.wait_exit(WORKLOAD_TIMEOUT),
        "the restored root outlives the failed restore"
    );
    let st = root.reap();
    assert_eq!(
        st,
        WaitStatus::Signaled(Pid::from_raw(t.pid), Signal::SIGKILL, false)
    );
    // Killed too; reparented to this subreaper as their parents go: parents first.
    for &p in &below {
        let _ = waitpid(Pid::from_raw(p), Some(WaitPidFlag::__WALL));
    }
    let mut ids = vec![t.pid];
    ids.extend_from_slice(&below);
    wait_ids_free(&ids, &t.path("pid-free-after.out"));
}

#[test]
fn crs_killed_before_it_holds_a_sibling_root_leaves_nothing() {
    let Some(mut t) = Tree::start("crs_killed_before_it_holds_a_sibling_root_leaves_nothing")
    else {
        return;
    };
    let below = descendants(t.pid);
    let s = t.swrk("dump");
    let r = s.call(&request(Criu_req_type::DUMP, Some(t.dump_opts())));
    assert_success(&r, Criu_req_type::DUMP, "DUMP");
    assert_eq!(s.finish(), 0);
    t.reap_dumped(&below);

    // The whole tree exists, parked, not yet seized: the root is the test's child, with no
    // parent-death signal from crs. It must see crs die and go, and the rest with it.
    let out = t.path("restore.out");
    let s = Swrk::start_with(&crs_bin(), &out, &[("CRS_FAULT", "3:kill")]);
    let opts = Criu_opts {
        rst_sibling: Some(true),
        ..t.opts("restore.log")
    };
    s.send(&request(Criu_req_type::RESTORE, Some(opts)));
    assert!(s.recv_or_eof().is_none(), "an answer from a killed crs");
    let st = s.end();
    assert!(
        matches!(st, WaitStatus::Signaled(_, Signal::SIGKILL, _)),
        "crs ended with {st:?}"
    );
    // crs's guardian outlives crs and comes to this subreaper: once it has finished, it
    // is reaped here.
    let guardians = children_named("crs-guardian");
    assert_eq!(guardians.len(), 1, "the killed crs's guardian");
    for pid in guardians {
        let mut g = ProcGuard::open(pid, false);
        assert!(
            g.wait_exit(WORKLOAD_TIMEOUT),
            "the guardian does not finish"
        );
        assert_eq!(g.reap(), WaitStatus::Exited(Pid::from_raw(pid), 0));
    }
    let said = std::fs::read_to_string(&out).unwrap_or_default();
    assert!(
        said.contains("fault point 3 (restore: making the shared objects)"),
        "crs was not killed where meant: {said}"
    );
    let mut root = ProcGuard::open(t.pid, true);
    assert!(
        root.wait_exit(WORKLOAD_TIMEOUT),
        "the restored root outlives the failed restore"
    );
    let st = root.reap();
    assert_eq!(st, WaitStatus::Exited(Pid::from_raw(t.pid), 1));
    for &p in &below {
        let _ = waitpid(Pid::from_raw(p), Some(WaitPidFlag::__WALL));
    }
    let mut ids = vec![t.pid];
    ids.extend_from_slice(&below);
    wait_ids_free(&ids, &t.path("pid-free-after.out"));
}

#[test]
fn criu_answers_version_and_feature_check_alike() {
    let Some(criu) = crs_testkit::hand_built_criu("criu_answers_version_and_feature_check_alike")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let ask = |bin: &Path, name: &str| {
        let s = Swrk::start(bin, &dir.path().join(format!("{name}.out")));
        let mut v = request(Criu_req_type::VERSION, None);
        v.keep_open = Some(true);
        let version = s.call(&v);
        let mut f = request(Criu_req_type::FEATURE_CHECK, None);
        f.features = MessageField::some(Criu_features {
            mem_track: Some(true),
            lazy_pages: Some(true),
            pidfd_store: Some(true),
            ..Default::default()
        });
        let features = s.call(&f);
        assert_eq!(s.finish(), 0, "{name} swrk exit code");
        (version, features)
    };
    let (crs_v, crs_f) = ask(&crs_bin(), "crs");
    let (criu_v, criu_f) = ask(&criu, "criu");
    // The shape: which fields are set (values aside: gitids, the kernel's features).
    let shape = |r: &Criu_resp| {
        let v = r.version.as_ref();
        let f = r.features.as_ref();
        (
            r.type_(),
            r.success(),
            r.cr_errno.is_some(),
            v.map(|v| (v.major_number, v.minor_number, v.gitid.is_some())),
            f.map(|f| {
                (
                    f.mem_track.is_some(),
                    f.lazy_pages.is_some(),
                    f.pidfd_store.is_some(),
                )
            }),
        )
    };
    assert_eq!(
        shape(&crs_v),
        shape(&criu_v),
        "VERSION: crs {crs_v:?}, criu {criu_v:?}"
    );
    assert_eq!(
        shape(&crs_f),
        shape(&criu_f),
        "FEATURE_CHECK: crs {crs_f:?}, criu {criu_f:?}"
    );
}
