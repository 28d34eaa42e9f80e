//! Object ids of ids-PID.img and inventory.img: namespaces by inode, and the vm / files /
//! fs / sighand ids. crs's own task is registered first, as CRIU registers itself, so a
//! task sharing crs's namespaces gets the same ids as the inventory's `root_ids`.

use std::collections::HashMap;

use crs_images::pb::core::Task_kobj_ids_entry;
use crs_proc::ProcDir;

use crate::error::{proc_err, Result};

/// Namespace kinds in the order CRIU registers them, with their /proc/PID/ns link names.
const KINDS: [&str; 8] = ["pid", "net", "ipc", "uts", "time", "mnt", "user", "cgroup"];

pub(crate) struct NsIds {
    next: u32,
    by_inode: HashMap<(&'static str, u64), u32>,
    next_obj: u32,
}

impl NsIds {
    pub(crate) fn new() -> NsIds {
        NsIds {
            next: 1,
            by_inode: HashMap::new(),
            next_obj: 1,
        }
    }

    /// The ids of process `dir`: namespaces looked up (new ones numbered), and fresh
    /// vm/files/fs/sighand ids (a single process shares none of them with crs).
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
