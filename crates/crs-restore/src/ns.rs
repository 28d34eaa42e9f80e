//! The tree's own namespaces.
//!
//! ```text
//! load   : the root's namespaces against inventory.img's `root_ids` (the dumper's): a kind
//!          that differs is the tree's own. UTS (utsns-ID.img) and IPC (ipcns-var-ID.img,
//!          and every segment of ipcns-shm-ID.img) are restored; another kind of its own,
//!          or a process in another namespace than the root's, is refused by name
//! create : the root is cloned with CLONE_NEWUTS / CLONE_NEWIPC (`clone_flags`); its
//!          processes inherit them
//! set up : a thread of crs joins the new namespaces (`within`): hostname and domain name,
//!          the IPC sysctls, then the SysV segments are made inside (`sysv`); the
//!          `*_next_id` values last, since making the segments uses shm_next_id
//! ```
//! A failed restore needs no cleaning of these: the namespaces go with the killed tree.

use std::path::Path;

use crs_compel::Tid;
use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::core::Task_kobj_ids_entry;
use crs_images::pb::ipc_desc::Ipc_desc_entry;
use crs_images::pb::ipc_msg::{Ipc_msg, Ipc_msg_entry};
use crs_images::pb::ipc_sem::Ipc_sem_entry;
use crs_images::pb::ipc_var::Ipc_var_entry;
use crs_images::pb::timens::Timens_entry;
use crs_images::pb::utsns::Utsns_entry;
use crs_sys::sysv;
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::images::{read_one, Tree};
use crate::RestoreError;

/// The tree's own namespaces, as dumped.
#[derive(Debug, Default)]
pub(crate) struct Own {
    /// A pid namespace, whose init is the root (pid 1).
    pub pid: bool,
    /// A network namespace: its devices, addresses, routes and rules (`None`:
    /// `--empty-ns net`, made empty).
    pub net: Option<Option<crate::netns::NetImages>>,
    pub uts: Option<Utsns_entry>,
    pub ipc: Option<IpcNs>,
    /// The clocks the tree saw at the dump: its own time namespace's (`timens-ID.img`),
    /// else crs's (`timens-0.img`). The restored tree gets a new time namespace in which
    /// they go on from there, as CRIU does, also without one of its own.
    pub clocks: Option<Timens_entry>,
}

/// The tree's own IPC namespace (its shared memory segments are `sysv`'s).
#[derive(Debug)]
pub(crate) struct IpcNs {
    /// Its id in the images.
    pub id: u32,
    /// Its sysctls.
    pub var: Ipc_var_entry,
    /// Semaphore sets, each with its values.
    pub sems: Vec<SemSet>,
    /// Message queues, each with its messages in queue order.
    pub queues: Vec<MsgQueue>,
}

/// A semaphore set and its values.
type SemSet = (Ipc_sem_entry, Vec<u16>);
/// A message queue and its messages (type, text).
type MsgQueue = (Ipc_msg_entry, Vec<(i64, Vec<u8>)>);

/// Semaphores in a set at most (the kernel's SEMMSL limit is 32000).
const MAX_NSEMS: u32 = 65536;

/// `ipcns-sem-ID.img` and `ipcns-msg-ID.img`, when there are any.
fn load_sems_and_queues(dir: &Path, id: u32) -> Result<IpcNsObjects, RestoreError> {
    let pad = |n: u64| n.next_multiple_of(8) - n;
    let mut sems = Vec::new();
    let name = format!("ipcns-sem-{id}.img");
    let path = dir.join(&name);
    if path.exists() {
        let bytes = read_file(&path)?;
        let mut r = ImageReader::new(&name, &bytes, "IPCNS_SEM")?;
        while let Some(e) = r.next::<Ipc_sem_entry>()? {
            if e.nsems() == 0 || e.nsems() > MAX_NSEMS {
                return Err(invalid(
                    &name,
                    format!("semaphore set {}: {} semaphores", e.desc.id(), e.nsems()),
                ));
            }
            let size = u64::from(e.nsems()) * 2;
            let values = r
                .payload(size)?
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            r.payload(pad(size))?;
            sems.push((e, values));
        }
    }
    let mut queues = Vec::new();
    let name = format!("ipcns-msg-{id}.img");
    let path = dir.join(&name);
    if path.exists() {
        let bytes = read_file(&path)?;
        let mut r = ImageReader::new(&name, &bytes, "IPCNS_MSG")?;
        while let Some(e) = r.next::<Ipc_msg_entry>()? {
            let mut messages = Vec::new();
            for i in 0..e.qnum() {
                let m: Ipc_msg = r.next()?.ok_or_else(|| {
                    invalid(
                        &name,
                        format!("queue {}: message {i} of {} missing", e.desc.id(), e.qnum()),
                    )
                })?;
                let size = u64::from(m.msize());
                let text = r.payload(size)?.to_vec();
                r.payload(pad(size))?;
                messages.push((m.mtype() as i64, text));
            }
            queues.push((e, messages));
        }
    }
    Ok((sems, queues))
}

type IpcNsObjects = (Vec<SemSet>, Vec<MsgQueue>);

/// A namespace id of each kind, in the order of `ids`' fields, with the kind's name.
fn kinds(ids: &Task_kobj_ids_entry) -> [(&'static str, Option<u32>); 8] {
    [
        ("pid", ids.pid_ns_id),
        ("net", ids.net_ns_id),
        ("ipc", ids.ipc_ns_id),
        ("uts", ids.uts_ns_id),
        ("mnt", ids.mnt_ns_id),
        ("user", ids.user_ns_id),
        ("cgroup", ids.cgroup_ns_id),
        ("time", ids.time_ns_id),
    ]
}

/// Finds and reads the tree's own namespaces (see the module's comment); `empty_net`:
/// `--empty-ns net`.
pub(crate) fn load(dir: &Path, tree: &Tree, empty_net: bool) -> Result<Own, RestoreError> {
    let mut own = Own::default();
    let Some(root) = tree.procs.first() else {
        return Ok(own);
    };
    let root_name = format!("ids-{}.img", root.pid);
    if let Some(dumper) = &tree.root_ids {
        for ((kind, d), (_, r)) in kinds(dumper).into_iter().zip(kinds(&root.ids)) {
            let (Some(d), Some(r)) = (d, r) else { continue };
            if d == r {
                continue;
            }
            match kind {
                "pid" if root.pid == 1 => own.pid = true,
                "pid" => {
                    return Err(unsupported(format!(
                        "{root_name}: a pid namespace of the tree's own whose root is pid {}, \
                         not its init (pid 1)",
                        root.pid
                    )))
                }
                "time" => own.clocks = Some(read_one(dir, &format!("timens-{r}.img"), "TIMENS")?),
                "net" if empty_net => own.net = Some(None),
                "net" => own.net = Some(Some(crate::netns::load(dir, r)?)),
                "uts" => own.uts = Some(read_one(dir, &format!("utsns-{r}.img"), "UTSNS")?),
                "ipc" => {
                    let var = read_one(dir, &format!("ipcns-var-{r}.img"), "IPC_VAR")?;
                    let (sems, queues) = load_sems_and_queues(dir, r)?;
                    own.ipc = Some(IpcNs {
                        id: r,
                        var,
                        sems,
                        queues,
                    });
                }
                _ => {
                    return Err(unsupported(format!(
                        "{root_name}: a process in its own {kind} namespace ({r}, \
                         inventory.img's is {d})"
                    )))
                }
            }
        }
    }
    if own.clocks.is_none() && dir.join("timens-0.img").exists() {
        own.clocks = Some(read_one(dir, "timens-0.img", "TIMENS")?);
    }
    for p in &tree.procs[1..] {
        for ((kind, r), (_, n)) in kinds(&root.ids).into_iter().zip(kinds(&p.ids)) {
            if let (Some(r), Some(n)) = (r, n) {
                if r != n {
                    return Err(unsupported(format!(
                        "ids-{}.img: a {kind} namespace ({n}) nested below the root's ({r}, \
                         {root_name})",
                        p.pid
                    )));
                }
            }
        }
    }
    Ok(own)
}

impl Own {
    /// The clone flags that give the root its new namespaces.
    pub fn clone_flags(&self) -> u64 {
        let mut flags = 0;
        if self.pid {
            flags |= libc::CLONE_NEWPID as u64;
        }
        if self.net.is_some() {
            flags |= libc::CLONE_NEWNET as u64;
        }
        if self.uts.is_some() {
            flags |= libc::CLONE_NEWUTS as u64;
        }
        if self.ipc.is_some() {
            flags |= libc::CLONE_NEWIPC as u64;
        }
        flags
    }

    /// The offsets of the tree's new time namespace (the text `/proc/self/timens_offsets`
    /// takes): the dumped clocks less crs's now (less crs's own offsets: offsets count from
    /// the first time namespace). `None` without dumped clocks, or on a kernel without
    /// time namespaces.
    pub fn time_offsets(&self) -> Result<Option<std::ffi::CString>, RestoreError> {
        let Some(c) = &self.clocks else {
            return Ok(None);
        };
        if !Path::new("/proc/self/ns/time").exists() {
            return Ok(None);
        }
        let me = std::process::id() as Tid;
        let err = |what: &str, source| RestoreError::Namespace {
            pid: me,
            kind: "time",
            what: what.to_string(),
            source,
        };
        let bytes = std::fs::read("/proc/self/timens_offsets")
            .map_err(|e| err("reading the offsets of", e))?;
        let ours = crs_proc::parse_timens_offsets(&bytes).map_err(|e| {
            err(
                "parsing the offsets of",
                std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            )
        })?;
        let now = |clock| {
            crs_sys::time::now(clock)
                .map(|d| d.as_nanos() as i128)
                .map_err(|e| err("reading the clocks of", e))
        };
        let dumped = |t: &crs_images::pb::timens::Timespec| {
            i128::from(t.tv_sec()) * 1_000_000_000 + i128::from(t.tv_nsec())
        };
        let line = |name: &str, off: i128| {
            format!(
                "{name} {} {}\n",
                off.div_euclid(1_000_000_000),
                off.rem_euclid(1_000_000_000)
            )
        };
        let mono = dumped(&c.monotonic) - (now(libc::CLOCK_MONOTONIC)? - ours.monotonic_ns);
        let boot = dumped(&c.boottime) - (now(libc::CLOCK_BOOTTIME)? - ours.boottime_ns);
        let text = line("monotonic", mono) + &line("boottime", boot);
        debug!(text = %text.trim_end(), "offsets of the tree's time namespace");
        Ok(Some(
            std::ffi::CString::new(text).expect("no NUL in numbers"),
        ))
    }

    /// Sets the new UTS namespace's names, the new IPC namespace's limits (all but the
    /// `*_next_id` values, see [`Own::finish`]) and the new network namespace (`netns`;
    /// `external`: the `--external` values) from inside, `root` being the new root.
    pub fn set_up(&self, root: Tid, external: &[String]) -> Result<(), RestoreError> {
        if let Some(uts) = &self.uts {
            within(root, &["uts"], || {
                write(root, "uts", "/proc/sys/kernel/hostname", uts.nodename())?;
                write(root, "uts", "/proc/sys/kernel/domainname", uts.domainname())
            })?;
            debug!(hostname = uts.nodename(), "UTS namespace set up");
        }
        if let Some(ipc) = &self.ipc {
            within(root, &["ipc"], || ipc_limits(root, &ipc.var))?;
        }
        if let Some(Some(net)) = &self.net {
            net.set_up(root, external)?;
            debug!(devices = net.devices.len(), "network namespace set up");
        }
        Ok(())
    }

    /// Makes the IPC namespace's semaphore sets and message queues, each with its id
    /// (through `kernel.sem_next_id` / `msg_next_id`), then sets its `*_next_id` values:
    /// after its shared memory segments are made (`sysv`), which use `shm_next_id`.
    pub fn finish(&self, root: Tid) -> Result<(), RestoreError> {
        let Some(ipc) = &self.ipc else {
            return Ok(());
        };
        within(root, &["ipc"], || {
            for (e, values) in &ipc.sems {
                let id = make_sem(root, e, values)?;
                debug!(id, nsems = values.len(), "SysV semaphore set made");
            }
            for (e, messages) in &ipc.queues {
                let id = make_queue(root, e, messages)?;
                debug!(id, messages = messages.len(), "SysV message queue made");
            }
            let var = &ipc.var;
            for (name, v) in [
                ("msg_next_id", var.msg_next_id),
                ("sem_next_id", var.sem_next_id),
                ("shm_next_id", var.shm_next_id),
            ] {
                if let Some(v) = v {
                    write(
                        root,
                        "ipc",
                        &format!("/proc/sys/kernel/{name}"),
                        &v.to_string(),
                    )?;
                }
            }
            Ok(())
        })
    }
}

/// An error about SysV object `what` `id` of the new IPC namespace.
fn ipc_err(root: Tid, what: String) -> impl FnOnce(std::io::Error) -> RestoreError {
    move |source| RestoreError::Namespace {
        pid: root,
        kind: "ipc",
        what,
        source,
    }
}

/// The id the kernel gave matches the dumped one.
fn same_id(root: Tid, what: &str, want: u32, got: i32) -> Result<u32, RestoreError> {
    if got as u32 == want {
        return Ok(want);
    }
    Err(ipc_err(
        root,
        format!("making {what} {want} (the kernel gave id {got}) in"),
    )(std::io::ErrorKind::AlreadyExists.into()))
}

/// Makes SysV object `d` (a `what`, made by `get(key, flags)`) with its id, through
/// `kernel.<next_id>`.
fn make_with_id(
    root: Tid,
    d: &Ipc_desc_entry,
    (what, next_id): (&str, &str),
    get: impl FnOnce(i32, i32) -> std::io::Result<i32>,
) -> Result<i32, RestoreError> {
    let id = d.id();
    write(
        root,
        "ipc",
        &format!("/proc/sys/kernel/{next_id}"),
        &id.to_string(),
    )?;
    let flags = libc::IPC_CREAT | libc::IPC_EXCL | (d.mode() & 0o777) as i32;
    let got =
        get(d.key() as i32, flags).map_err(ipc_err(root, format!("making {what} {id} of")))?;
    same_id(root, what, id, got)?;
    Ok(got)
}

fn make_sem(root: Tid, e: &Ipc_sem_entry, values: &[u16]) -> Result<u32, RestoreError> {
    let d = &e.desc;
    let id = d.id();
    let what = |w: &str| format!("{w} semaphore set {id} of");
    let got = make_with_id(root, d, ("semaphore set", "sem_next_id"), |key, flags| {
        sysv::sem_get(key, values.len(), flags)
    })?;
    sysv::sem_set_values(got, values).map_err(ipc_err(root, what("setting the values of")))?;
    sysv::sem_set_owner(got, d.uid(), d.gid(), d.mode())
        .map_err(ipc_err(root, what("setting owner and mode of")))?;
    Ok(id)
}

fn make_queue(
    root: Tid,
    e: &Ipc_msg_entry,
    messages: &[(i64, Vec<u8>)],
) -> Result<u32, RestoreError> {
    let d = &e.desc;
    let id = d.id();
    let what = |w: &str| format!("{w} message queue {id} of");
    let got = make_with_id(root, d, ("message queue", "msg_next_id"), sysv::msg_get)?;
    // The byte limit first: the messages must fit in it.
    sysv::msg_set(got, d.uid(), d.gid(), d.mode(), u64::from(e.qbytes()))
        .map_err(ipc_err(root, what("setting owner, mode and byte limit of")))?;
    for (mtype, text) in messages {
        sysv::msg_send(got, *mtype, text).map_err(ipc_err(root, what("queueing a message on")))?;
    }
    Ok(id)
}

fn ipc_limits(root: Tid, var: &Ipc_var_entry) -> Result<(), RestoreError> {
    let sem = var
        .sem_ctls
        .iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join("\t");
    let k = |n: &str| format!("/proc/sys/kernel/{n}");
    let mq = |n: &str| format!("/proc/sys/fs/mqueue/{n}");
    let mut values = vec![
        (k("msgmax"), var.msg_ctlmax().to_string()),
        (k("msgmnb"), var.msg_ctlmnb().to_string()),
        (k("msgmni"), var.msg_ctlmni().to_string()),
        (k("shmmax"), var.shm_ctlmax().to_string()),
        (k("shmall"), var.shm_ctlall().to_string()),
        (k("shmmni"), var.shm_ctlmni().to_string()),
        (k("shm_rmid_forced"), var.shm_rmid_forced().to_string()),
        (mq("queues_max"), var.mq_queues_max().to_string()),
        (mq("msg_max"), var.mq_msg_max().to_string()),
        (mq("msgsize_max"), var.mq_msgsize_max().to_string()),
    ];
    if !sem.is_empty() {
        values.push((k("sem"), sem));
    }
    if let Some(v) = var.mq_msg_default {
        values.push((mq("msg_default"), v.to_string()));
    }
    if let Some(v) = var.mq_msgsize_default {
        values.push((mq("msgsize_default"), v.to_string()));
    }
    for (path, v) in values {
        write(root, "ipc", &path, &v)?;
    }
    Ok(())
}

/// Writes sysctl `path` of the namespace the calling thread is in.
fn write(root: Tid, kind: &'static str, path: &str, value: &str) -> Result<(), RestoreError> {
    std::fs::write(path, value).map_err(|source| RestoreError::Namespace {
        pid: root,
        kind,
        what: format!("setting {path} to {value:?} in"),
        source,
    })
}

/// In a pid namespace of the tree's own, the pid crs knows each process and zombie of
/// `tree` by: read from the new tree, below its root (`root`, crs's pid of it), each
/// process's pid inside (the last of `NSpid`) naming it in the images. Threads are found
/// as they are made (`threads`).
pub(crate) fn find_hosts(root: Tid, tree: &Tree) -> Result<(), RestoreError> {
    let mut by_inner = std::collections::BTreeMap::new();
    let mut todo = vec![root];
    while let Some(host) = todo.pop() {
        let err = |what: &'static str| {
            move |e: crs_proc::Error| RestoreError::Namespace {
                pid: host,
                kind: "pid",
                what: format!("reading {what} of a new process in"),
                source: std::io::Error::other(e.to_string()),
            }
        };
        let dir = crs_proc::ProcDir::open(host).map_err(err("/proc"))?;
        let st = dir.status().map_err(err("status"))?;
        let inner = st.ns_pid.last().copied().unwrap_or(0);
        by_inner.insert(inner, host);
        todo.extend(dir.children().map_err(err("the children"))?);
    }
    let find = |pid: Tid| {
        by_inner.get(&pid).copied().ok_or_else(|| {
            unsupported(format!(
                "finding process {pid} of the new pid namespace: it is not below its init"
            ))
        })
    };
    for p in &tree.procs {
        p.host.set(find(p.pid)?);
    }
    for z in &tree.zombies {
        z.host.set(find(z.pid)?);
    }
    debug!(
        processes = by_inner.len(),
        "pids of the new pid namespace found"
    );
    Ok(())
}

/// The tid crs knows thread `tid` (inside) of process `pid` (crs's pid) by.
pub(crate) fn host_tid(pid: Tid, tid: Tid) -> Result<Tid, RestoreError> {
    let err = |e: crs_proc::Error| RestoreError::Namespace {
        pid,
        kind: "pid",
        what: format!("finding thread {tid} in"),
        source: std::io::Error::other(e.to_string()),
    };
    let dir = crs_proc::ProcDir::open(pid).map_err(err)?;
    for t in dir.tasks().map_err(err)? {
        let st = dir.task(t).and_then(|d| d.status()).map_err(err)?;
        if st.ns_pid.last() == Some(&tid) {
            return Ok(t);
        }
    }
    Err(unsupported(format!(
        "finding thread {tid} of process {pid} in its pid namespace"
    )))
}

/// Runs `f` on a thread of crs that joined process `pid`'s namespaces `kinds`.
pub(crate) fn within<R: Send>(
    pid: Tid,
    kinds: &[&'static str],
    f: impl FnOnce() -> Result<R, RestoreError> + Send,
) -> Result<R, RestoreError> {
    crs_sys::ns::within(pid, kinds, f).map_err(|e| RestoreError::Namespace {
        pid,
        kind: e.kind,
        what: e.what.to_string(),
        source: e.source,
    })?
}

#[cfg(test)]
mod tests {
    use crate::testsets;
    use crs_images::codec::ImageWriter;
    use crs_images::pb::core::Task_kobj_ids_entry;
    use crs_images::pb::utsns::Utsns_entry;

    /// The `tree` set with the ids of processes `pids` changed by `change`.
    fn tree_with_ids(
        test: &str,
        pids: &[u32],
        change: impl Fn(&mut Task_kobj_ids_entry),
    ) -> Option<tempfile::TempDir> {
        let t = testsets::copy("tree", test)?;
        for pid in pids {
            testsets::rewrite(
                t.path(),
                &format!("ids-{pid}.img"),
                "IDS",
                |v: &mut Vec<Task_kobj_ids_entry>| change(&mut v[0]),
            );
        }
        Some(t)
    }

    const ALL: [u32; 3] = [72000, 72001, 72002];

    /// The `tree` set with ids-`pid`.img's UTS namespace changed to 900.
    fn uts_900(test: &str, pid: u32) -> Option<tempfile::TempDir> {
        tree_with_ids(test, &[pid], |ids| ids.uts_ns_id = Some(900))
    }

    #[test]
    fn load_own_uts_namespace_reads_its_image_and_needs_it() {
        let test = "load_own_uts_namespace_reads_its_image_and_needs_it";
        // Every process is in the root's namespace.
        let Some(t) = tree_with_ids(test, &ALL, |ids| ids.uts_ns_id = Some(900)) else {
            return;
        };
        let err = testsets::load_err(t.path());
        assert!(err.contains("utsns-900.img"), "{err}");
        let mut w = ImageWriter::new("utsns-900.img", "UTSNS");
        w.push(&Utsns_entry {
            nodename: Some("inner".into()),
            domainname: Some("(none)".into()),
            ..Default::default()
        })
        .unwrap();
        std::fs::write(t.path().join("utsns-900.img"), w.into_bytes()).unwrap();
        let loaded = testsets::load(t.path()).unwrap();
        assert_eq!(loaded.ns.uts.as_ref().unwrap().nodename(), "inner");
        assert_eq!(loaded.ns.clone_flags(), libc::CLONE_NEWUTS as u64);
    }

    #[test]
    fn load_namespace_nested_below_the_roots_is_unsupported() {
        let test = "load_namespace_nested_below_the_roots_is_unsupported";
        let Some(t) = uts_900(test, 72001) else {
            return;
        };
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("ids-72001.img: a uts namespace (900) nested below the root's"),
            "{err}"
        );
    }

    #[test]
    fn load_own_pid_namespace_rooted_below_its_init_is_unsupported() {
        let test = "load_own_pid_namespace_rooted_below_its_init_is_unsupported";
        let Some(t) = tree_with_ids(test, &ALL, |ids| ids.pid_ns_id = Some(901)) else {
            return;
        };
        let err = testsets::load_err(t.path());
        assert!(
            err.contains(
                "ids-72000.img: a pid namespace of the tree's own whose root is pid 72000, not \
                 its init (pid 1)"
            ),
            "{err}"
        );
    }

    #[test]
    fn load_network_namespace_takes_the_loopback_and_veth_devices() {
        use crs_images::pb::netdev::{Nd_type, Net_device_entry};
        let test = "load_network_namespace_takes_the_loopback_and_veth_devices";
        let Some(t) = tree_with_ids(test, &ALL, |ids| ids.net_ns_id = Some(902)) else {
            return;
        };
        let write = |devices: &[(Nd_type, &str)]| {
            let mut w = ImageWriter::new("netdev-902.img", "NETDEV");
            for (i, (ty, name)) in devices.iter().enumerate() {
                w.push(&Net_device_entry {
                    type_: Some(protobuf::EnumOrUnknown::new(*ty)),
                    ifindex: Some(i as u32 + 1),
                    mtu: Some(9000),
                    flags: Some(0x49),
                    name: Some(name.to_string()),
                    ..Default::default()
                })
                .unwrap();
            }
            std::fs::write(t.path().join("netdev-902.img"), w.into_bytes()).unwrap();
        };
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("a network namespace without netdev-902.img"),
            "{err}"
        );
        write(&[(Nd_type::LOOPBACK, "lo"), (Nd_type::TUN, "tun0")]);
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("netdev-902.img: device tun0 of type TUN"),
            "{err}"
        );
        write(&[(Nd_type::LOOPBACK, "lo"), (Nd_type::VETH, "eth0")]);
        let loaded = testsets::load(t.path()).unwrap();
        let net = loaded.ns.net.as_ref().unwrap().as_ref().unwrap();
        assert_eq!(net.devices.len(), 2);
        assert!(net.addrs.is_empty() && net.routes.is_empty());
        std::fs::write(t.path().join("ifaddr-902.img"), b"\x22\x12\x36").unwrap();
        let err = testsets::load_err(t.path());
        assert!(err.contains("ifaddr-902.img"), "{err}");
        std::fs::write(
            t.path().join("ifaddr-902.img"),
            0x4531_1224u32.to_ne_bytes(),
        )
        .unwrap();
        let err = testsets::load_err(t.path());
        assert!(err.contains("magic 0x45311224, want 0x47361222"), "{err}");
        std::fs::write(
            t.path().join("ifaddr-902.img"),
            0x4736_1222u32.to_ne_bytes(),
        )
        .unwrap();
        std::fs::write(
            t.path().join("iptables-902.img"),
            "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j DROP\nCOMMIT\n",
        )
        .unwrap();
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("iptables-902.img: firewall rules of a network namespace (-A INPUT"),
            "{err}"
        );
        // `--empty-ns net` looks at none of it.
        let opts = crate::RestoreOptions {
            images_dir: t.path().to_path_buf(),
            empty_ns_net: true,
            ..Default::default()
        };
        let loaded = crate::load_and_check(&opts).unwrap();
        assert_eq!(loaded.ns.net, Some(None));
    }
}
