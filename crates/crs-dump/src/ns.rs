//! Object ids of ids-PID.img and inventory.img: namespaces by inode, and the vm / files /
//! fs / sighand ids. crs's own task is registered first, as CRIU registers itself, so a
//! task sharing crs's namespaces gets the same ids as the inventory's `root_ids`; the
//! tree's root second.
//!
//! The tree's own namespaces. Where the root's namespace of a kind differs from crs's, the
//! tree has its own namespace of that kind (restore makes a new one for it); the other
//! processes must all be in the root's (a namespace nested below the root's is refused).
//! UTS and IPC namespaces are dumped (`utsns-ID.img`, `ipcns-var-ID.img`, every SysV
//! segment of the namespace in `ipcns-shm-ID.img`), read by a thread of crs that joins
//! them; any other kind of its own makes the dump fail naming it, rather than be restored
//! silently in crs's namespace.

use std::collections::HashMap;

use crs_images::pb::core::Task_kobj_ids_entry;
use crs_images::pb::ipc_var::Ipc_var_entry;
use crs_proc::ProcDir;

use crate::error::{proc_err, DumpError, Result};

/// Namespace kinds in the order CRIU registers them, with their /proc/PID/ns link names.
const KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "time", "mnt", "user", "cgroup"];

/// A namespace kind as users name it.
fn word(kind: &'static str) -> &'static str {
    match kind {
        "mnt" => "mount",
        "net" => "network",
        "uts" => "UTS",
        "ipc" => "IPC",
        other => other,
    }
}

/// The kinds a tree may have its own namespace of.
const OWN_SUPPORTED: [&str; 5] = ["ipc", "net", "pid", "time", "uts"];

pub(crate) struct NsIds {
    next: u32,
    by_inode: HashMap<(&'static str, u64), u32>,
    next_obj: u32,
    /// The namespace ids (in `KINDS` order) of crs, then of the tree's root.
    crs: Option<[u32; 8]>,
    root: Option<[u32; 8]>,
}

impl NsIds {
    pub(crate) fn new() -> NsIds {
        NsIds {
            next: 1,
            by_inode: HashMap::new(),
            next_obj: 1,
            crs: None,
            root: None,
        }
    }

    /// The kinds of namespace the tree has its own of, with the root's id.
    pub(crate) fn own(&self) -> Vec<(&'static str, u32)> {
        match (self.crs, self.root) {
            (Some(crs), Some(root)) => KINDS
                .iter()
                .zip(crs.iter().zip(root))
                .filter(|(_, (c, r))| *c != r)
                .map(|(&k, (_, r))| (k, r))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Checks the namespaces of a process: the root may have its own of the kinds crs
    /// dumps, the others must be in the root's.
    fn check(&mut self, pid: i32, ns: [u32; 8]) -> Result<()> {
        let Some(crs) = self.crs else {
            self.crs = Some(ns);
            return Ok(());
        };
        let Some(root) = self.root else {
            self.root = Some(ns);
            for ((kind, c), r) in KINDS.iter().zip(crs).zip(ns) {
                if c != r && !OWN_SUPPORTED.contains(kind) {
                    let kind = word(kind);
                    return Err(DumpError::OwnNamespace { pid, kind });
                }
            }
            return Ok(());
        };
        for ((kind, r), n) in KINDS.iter().zip(root).zip(ns) {
            if r != n {
                let kind = word(kind);
                return Err(DumpError::NestedNamespace { pid, kind });
            }
        }
        Ok(())
    }

    /// The ids of process `dir`: namespaces looked up (new ones numbered), and fresh
    /// vm/files/fs/sighand ids (a single process shares none of them with crs). crs's own
    /// first, then the root's, then the other processes' (see [`NsIds::check`]).
    pub(crate) fn ids(&mut self, dir: &ProcDir) -> Result<Task_kobj_ids_entry> {
        let pid = dir.pid();
        let mut ns = [0u32; 8];
        for (slot, kind) in ns.iter_mut().zip(KINDS) {
            let link = match dir.ns_link(kind) {
                Ok(l) => l,
                // A kernel without this namespace kind.
                Err(_) if kind == "time" || kind == "cgroup" => continue,
                Err(e) => return Err(proc_err(pid, "namespace link")(e)),
            };
            let next = &mut self.next;
            *slot = *self.by_inode.entry((kind, link.inode)).or_insert_with(|| {
                let id = *next;
                *next += 1;
                id
            });
        }
        self.check(pid, ns)?;
        let obj = self.next_obj;
        self.next_obj += 1;
        let opt = |v: u32| (v != 0).then_some(v);
        Ok(Task_kobj_ids_entry {
            vm_id: Some(obj),
            files_id: Some(obj),
            fs_id: Some(obj),
            sighand_id: Some(obj),
            pid_ns_id: opt(ns[0]),
            net_ns_id: opt(ns[1]),
            ipc_ns_id: opt(ns[2]),
            uts_ns_id: opt(ns[3]),
            time_ns_id: opt(ns[4]),
            mnt_ns_id: opt(ns[5]),
            user_ns_id: opt(ns[6]),
            cgroup_ns_id: opt(ns[7]),
            ..Default::default()
        })
    }
}

/// Runs `f` on a thread of crs that joined process `pid`'s namespaces `kinds`.
pub(crate) fn within<R: Send>(
    pid: i32,
    kinds: &[&'static str],
    f: impl FnOnce() -> Result<R> + Send,
) -> Result<R> {
    crs_sys::ns::within(pid, kinds, f).map_err(|e| DumpError::Namespace {
        pid,
        kind: e.kind,
        what: e.what,
        source: e.source,
    })?
}

/// A sysctl of the namespace the calling thread is in, trimmed.
fn sysctl(pid: i32, kind: &'static str, path: &str) -> Result<String> {
    std::fs::read_to_string(path)
        .map(|s| s.trim_end_matches('\n').to_string())
        .map_err(|source| DumpError::Namespace {
            pid,
            kind,
            what: "reading a sysctl",
            source,
        })
}

fn number<T: std::str::FromStr>(pid: i32, kind: &'static str, path: &str) -> Result<T> {
    let text = sysctl(pid, kind, path)?;
    text.trim().parse().map_err(|_| DumpError::Namespace {
        pid,
        kind,
        what: "parsing a sysctl",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{path}: {text:?}")),
    })
}

/// `utsns-ID.img` and `ipcns-var-ID.img` of the tree's own UTS and IPC namespaces, the
/// network namespace's images (`netns`) (`own`, from [`NsIds::own`]), read in them;
/// `root` is the tree's root.
pub(crate) fn write_own(
    dir: &mut crate::imgdir::ImageDir,
    root: i32,
    own: &[(&'static str, u32)],
    empty_net: bool,
) -> Result<()> {
    use crs_images::codec::ImageWriter;
    use crs_images::pb::utsns::Utsns_entry;

    for &(kind, id) in own {
        match kind {
            "uts" => {
                let e = within(root, &["uts"], || {
                    Ok(Utsns_entry {
                        nodename: Some(sysctl(root, kind, "/proc/sys/kernel/hostname")?),
                        domainname: Some(sysctl(root, kind, "/proc/sys/kernel/domainname")?),
                        ..Default::default()
                    })
                })?;
                let name = format!("utsns-{id}.img");
                let mut img = ImageWriter::new(name.clone(), "UTSNS");
                img.push(&e).map_err(crate::files::image_err(&name))?;
                dir.write(img)?;
            }
            "ipc" => {
                let e = within(root, &["ipc"], || ipc_var(root))?;
                let name = format!("ipcns-var-{id}.img");
                let mut img = ImageWriter::new(name.clone(), "IPC_VAR");
                img.push(&e).map_err(crate::files::image_err(&name))?;
                dir.write(img)?;
            }
            // Nothing but the pids of the images (`Vpids`).
            "pid" => {}
            "time" => {
                let e = tree_clocks(root)?;
                let name = format!("timens-{id}.img");
                let mut img = ImageWriter::new(name.clone(), "TIMENS");
                img.push(&e).map_err(crate::files::image_err(&name))?;
                dir.write(img)?;
            }
            // `--empty-ns net`: the caller makes it again.
            "net" if empty_net => {}
            "net" => {
                let net = within(root, &["net"], || crate::netns::read(root))?;
                crate::netns::write(dir, id, &net)?;
            }
            // Refused by `NsIds::check`.
            _ => return Err(DumpError::OwnNamespace { pid: root, kind }),
        }
    }
    Ok(())
}

/// The offsets of the time namespace process `pid`'s children get.
fn offsets(pid: i32) -> Result<crs_proc::TimensOffsets> {
    let path = format!("/proc/{pid}/timens_offsets");
    let bytes = std::fs::read(&path).map_err(|source| DumpError::Namespace {
        pid,
        kind: "time",
        what: "reading the offsets of",
        source,
    })?;
    crs_proc::parse_timens_offsets(&bytes).map_err(|e| DumpError::Namespace {
        pid,
        kind: "time",
        what: "parsing the offsets of",
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })
}

/// The clocks now as the tree in its own time namespace sees them (crs's, less crs's
/// offsets, plus the tree's: `timens-ID.img`, as CRIU writes it from inside). The root must
/// be in the namespace its children get (not one it unshared for them only).
pub(crate) fn tree_clocks(root: i32) -> Result<crs_images::pb::timens::Timens_entry> {
    let dir = ProcDir::open(root).map_err(proc_err(root, "the /proc directory"))?;
    let own = dir
        .ns_link("time")
        .map_err(proc_err(root, "time namespace link"))?;
    let children = dir
        .ns_link("time_for_children")
        .map_err(proc_err(root, "time namespace link"))?;
    if own.inode != children.inode {
        return Err(DumpError::OwnNamespace {
            pid: root,
            kind: "time (for its children only)",
        });
    }
    let me = std::process::id() as i32;
    let (ours, theirs) = (offsets(me)?, offsets(root)?);
    let now = |c| i128::from(crs_sys::time::now(c).unwrap_or_default().as_nanos() as i64);
    let ts = |ns: i128| crs_images::pb::timens::Timespec {
        tv_sec: Some(ns.div_euclid(1_000_000_000) as u64),
        tv_nsec: Some(ns.rem_euclid(1_000_000_000) as u64),
        ..Default::default()
    };
    let mono = now(libc::CLOCK_MONOTONIC) - ours.monotonic_ns + theirs.monotonic_ns;
    let boot = now(libc::CLOCK_BOOTTIME) - ours.boottime_ns + theirs.boottime_ns;
    Ok(crs_images::pb::timens::Timens_entry {
        monotonic: protobuf::MessageField::some(ts(mono)),
        boottime: protobuf::MessageField::some(ts(boot)),
        ..Default::default()
    })
}

/// The IPC namespace's sysctls, as CRIU's `ipc_var_entry` holds them (the `*_next_id`
/// values only when set).
fn ipc_var(pid: i32) -> Result<Ipc_var_entry> {
    const K: &str = "/proc/sys/kernel/";
    const MQ: &str = "/proc/sys/fs/mqueue/";
    let kind = "ipc";
    let k = |name: &str| format!("{K}{name}");
    let mq = |name: &str| format!("{MQ}{name}");
    let sem = sysctl(pid, kind, &k("sem"))?
        .split_ascii_whitespace()
        .map(|v| v.parse::<u32>())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|_| DumpError::Namespace {
            pid,
            kind,
            what: "parsing kernel.sem",
            source: std::io::ErrorKind::InvalidData.into(),
        })?;
    let next = |name: &str| -> Result<Option<u32>> {
        let v: i64 = number(pid, kind, &k(name))?;
        Ok((v >= 0).then_some(v as u32))
    };
    Ok(Ipc_var_entry {
        sem_ctls: sem,
        msg_ctlmax: Some(number(pid, kind, &k("msgmax"))?),
        msg_ctlmnb: Some(number(pid, kind, &k("msgmnb"))?),
        msg_ctlmni: Some(number(pid, kind, &k("msgmni"))?),
        auto_msgmni: Some(number(pid, kind, &k("auto_msgmni")).unwrap_or(0)),
        shm_ctlmax: Some(number(pid, kind, &k("shmmax"))?),
        shm_ctlall: Some(number(pid, kind, &k("shmall"))?),
        shm_ctlmni: Some(number(pid, kind, &k("shmmni"))?),
        shm_rmid_forced: Some(number(pid, kind, &k("shm_rmid_forced"))?),
        mq_queues_max: Some(number(pid, kind, &mq("queues_max"))?),
        mq_msg_max: Some(number(pid, kind, &mq("msg_max"))?),
        mq_msgsize_max: Some(number(pid, kind, &mq("msgsize_max"))?),
        mq_msg_default: Some(number(pid, kind, &mq("msg_default"))?),
        mq_msgsize_default: Some(number(pid, kind, &mq("msgsize_default"))?),
        msg_next_id: next("msg_next_id")?,
        sem_next_id: next("sem_next_id")?,
        shm_next_id: next("shm_next_id")?,
        ..Default::default()
    })
}

/// The ids of a process as the tree's own pid namespace numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Inner {
    pub pid: u32,
    pub pgid: u32,
    pub sid: u32,
}

/// Pids as the images record them: as the tree's own pid namespace numbers them when the
/// root is the init of one (CRIU's images hold the pids the tree sees), else crs's.
#[derive(Debug, Default)]
pub(crate) struct Vpids {
    /// crs's pid of every process and thread -> its pid inside; `None` without a pid
    /// namespace of the tree's own.
    inner: Option<HashMap<i32, u32>>,
    /// Group and session of each process, inside.
    groups: HashMap<i32, (u32, u32)>,
}

impl Vpids {
    /// Reads the ids inside of every process and thread of `order` (pid, ppid, zombie)
    /// when the root (the first) is in another pid namespace than crs: it must be that
    /// namespace's init, and every group and session must be inside it.
    pub(crate) fn read(tree: &crs_compel::SeizedTree, order: &[(i32, i32, bool)]) -> Result<Vpids> {
        let Some(&(root, _, _)) = order.first() else {
            return Ok(Vpids::default());
        };
        let me = std::process::id() as i32;
        let link = |pid: i32| {
            ProcDir::open(pid)
                .and_then(|d| d.ns_link("pid"))
                .map(|l| l.inode)
                .map_err(proc_err(pid, "pid namespace link"))
        };
        if link(root)? == link(me)? {
            return Ok(Vpids::default());
        }
        let last = |v: &[i32]| v.last().copied().unwrap_or(0);
        let mut inner = HashMap::new();
        let mut groups = HashMap::new();
        for &(pid, _, zombie) in order {
            let dir = ProcDir::open(pid).map_err(proc_err(pid, "the /proc directory"))?;
            let st = dir.status().map_err(proc_err(pid, "status"))?;
            let (vpid, vpgid, vsid) = (last(&st.ns_pid), last(&st.ns_pgid), last(&st.ns_sid));
            if pid == root && vpid != 1 {
                return Err(DumpError::NotPidNsInit { pid, vpid });
            }
            if vpgid == 0 || vsid == 0 {
                return Err(DumpError::OutsidePidNs {
                    pid,
                    what: "its process group or session",
                });
            }
            inner.insert(pid, vpid as u32);
            groups.insert(pid, (vpgid as u32, vsid as u32));
            let threads = if zombie {
                Vec::new()
            } else {
                tree.process(pid)
                    .map_or(&[][..], |p| p.threads())
                    .iter()
                    .map(|t| t.tid())
                    .filter(|&t| t != pid)
                    .collect()
            };
            for tid in threads {
                let st = dir
                    .task(tid)
                    .and_then(|t| t.status())
                    .map_err(proc_err(tid, "thread status"))?;
                inner.insert(tid, last(&st.ns_pid) as u32);
            }
        }
        Ok(Vpids {
            inner: Some(inner),
            groups,
        })
    }

    /// crs's pids -> the pids inside, when the tree has a pid namespace of its own.
    pub(crate) fn map(&self) -> Option<HashMap<i32, u32>> {
        self.inner.clone()
    }

    /// The pid inside of process or thread `pid` of the tree (crs's pid without a pid
    /// namespace of the tree's own); `None` for one outside the tree's namespace.
    pub(crate) fn of(&self, pid: i32) -> Option<u32> {
        match &self.inner {
            None => Some(pid as u32),
            Some(m) => m.get(&pid).copied(),
        }
    }

    /// [`Vpids::of`] for a process or thread of the tree, which has one.
    pub(crate) fn tree(&self, pid: i32) -> u32 {
        self.of(pid).unwrap_or(pid as u32)
    }

    /// Pid, group and session of process `pid` as pstree.img records them (`stat` its
    /// stat: crs's view, used without a pid namespace of the tree's own).
    pub(crate) fn process(&self, pid: i32, stat: &crs_proc::Stat) -> Inner {
        match self.groups.get(&pid) {
            Some(&(pgid, sid)) => Inner {
                pid: self.tree(pid),
                pgid,
                sid,
            },
            None => Inner {
                pid: pid as u32,
                pgid: stat.pgrp as u32,
                sid: stat.session as u32,
            },
        }
    }
}
