//! SysV shared memory segments the tree has attached: each once, in
//! `ipcns-shm-<ipc ns id>.img` (CRIU's `ipc_shm_entry`, contents `in_pagemaps`: saved like
//! shared anonymous memory, in pagemap-shmem-<shm id> + pages), whatever the number of
//! attaches. A VMA of a segment is `VMA_AREA_SYSVIPC` with the segment id as `shmid`.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::PathBuf;

use crs_images::codec::ImageWriter;
use crs_images::pb::ipc_desc::Ipc_desc_entry;
use crs_images::pb::ipc_msg::{Ipc_msg, Ipc_msg_entry};
use crs_images::pb::ipc_sem::Ipc_sem_entry;
use crs_images::pb::ipc_shm::Ipc_shm_entry;
use crs_sys::sysv::{IpcPerm, ShmStat};
use protobuf::MessageField;
use tracing::debug;

use crate::error::{DumpError, Result};
use crate::files::image_err;
use crate::imgdir::ImageDir;
use crate::pages::PAGE_SIZE;

/// The segments attached somewhere in the tree, by id.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    ids: BTreeSet<u32>,
}

impl Segments {
    pub(crate) fn saw(&mut self, id: u32) {
        self.ids.insert(id);
    }

    /// The segments attached in the tree (in crs's IPC namespace), opened.
    pub(crate) fn open(&self) -> Result<Vec<Opened>> {
        self.ids.iter().map(|&id| Opened::open(id)).collect()
    }
}

/// A segment to save: its id, what `IPC_STAT` says, a file on its contents.
pub(crate) struct Opened {
    id: u32,
    st: ShmStat,
    file: File,
}

impl Opened {
    fn open(id: u32) -> Result<Opened> {
        let st = crs_sys::sysv::shm_stat(id as i32).map_err(err(id, "shmctl(IPC_STAT) of"))?;
        let file = crs_sys::sysv::shm_file(id as i32).map_err(err(id, "opening"))?;
        Ok(Opened { id, st, file })
    }
}

fn label(id: u32) -> PathBuf {
    PathBuf::from(format!("SysV shared memory segment {id}"))
}

fn err(id: u32, what: &'static str) -> impl FnOnce(std::io::Error) -> DumpError {
    move |source| DumpError::File {
        what,
        path: label(id),
        source,
    }
}

/// Every segment of the IPC namespace the calling thread is in, opened (the ids that
/// `/proc/sysvipc/shm` lists, which shows the namespace of the thread that opens it).
pub(crate) fn open_all() -> Result<Vec<Opened>> {
    list("shm")?.into_iter().map(Opened::open).collect()
}

/// A semaphore set: its id, owner and mode, the value of each semaphore.
pub(crate) struct SemSet {
    id: u32,
    perm: IpcPerm,
    values: Vec<u16>,
}

/// A message queue: its id, owner and mode, byte limit, and messages (type, text) in
/// queue order.
pub(crate) struct MsgQueue {
    id: u32,
    perm: IpcPerm,
    qbytes: u64,
    messages: Vec<(i64, Vec<u8>)>,
}

/// Every semaphore set and message queue of the IPC namespace the calling thread is in;
/// messages are copied (`MSG_COPY`), the queues keep them.
pub(crate) fn read_sems_and_queues() -> Result<(Vec<SemSet>, Vec<MsgQueue>)> {
    let mut sems = Vec::new();
    for id in list("sem")? {
        let label = || PathBuf::from(format!("SysV semaphore set {id}"));
        let e = |what| {
            move |source| DumpError::File {
                what,
                path: label(),
                source,
            }
        };
        let (perm, n) = crs_sys::sysv::sem_stat(id as i32).map_err(e("semctl(IPC_STAT) of"))?;
        let values = crs_sys::sysv::sem_values(id as i32, n).map_err(e("semctl(GETALL) of"))?;
        sems.push(SemSet { id, perm, values });
    }
    let mut queues = Vec::new();
    for id in list("msg")? {
        let label = || PathBuf::from(format!("SysV message queue {id}"));
        let e = |what| {
            move |source| DumpError::File {
                what,
                path: label(),
                source,
            }
        };
        let (perm, qbytes, qnum) =
            crs_sys::sysv::msg_stat(id as i32).map_err(e("msgctl(IPC_STAT) of"))?;
        // No message is longer than the queue's byte limit.
        let max = qbytes.min(1 << 30) as usize;
        let messages = (0..qnum)
            .map(|i| crs_sys::sysv::msg_copy(id as i32, i, max))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(e("copying the messages (msgrcv MSG_COPY) of"))?;
        queues.push(MsgQueue {
            id,
            perm,
            qbytes,
            messages,
        });
    }
    Ok((sems, queues))
}

fn desc(id: u32, p: &IpcPerm) -> MessageField<Ipc_desc_entry> {
    MessageField::some(Ipc_desc_entry {
        key: Some(p.key as u32),
        uid: Some(p.uid),
        gid: Some(p.gid),
        cuid: Some(p.cuid),
        cgid: Some(p.cgid),
        mode: Some(p.mode),
        id: Some(id),
        ..Default::default()
    })
}

/// `bytes` and zeros up to the next multiple of 8, as CRIU pads IPC payloads.
fn padded(img: &mut ImageWriter, bytes: &[u8]) {
    img.payload(bytes);
    img.payload(&[0u8; 8][..bytes.len().next_multiple_of(8) - bytes.len()]);
}

/// Writes ipcns-sem-<ipc_ns>.img and ipcns-msg-<ipc_ns>.img (when there is something to
/// write), in CRIU's layout: each set's values as u16 after its entry; each queue's
/// messages as an `ipc_msg` entry and the text after it.
pub(crate) fn write_sems_and_queues(
    dir: &mut ImageDir,
    ipc_ns: u32,
    sems: &[SemSet],
    queues: &[MsgQueue],
) -> Result<()> {
    if !sems.is_empty() {
        let name = format!("ipcns-sem-{ipc_ns}.img");
        let mut img = ImageWriter::new(name.clone(), "IPCNS_SEM");
        for s in sems {
            img.push(&Ipc_sem_entry {
                desc: desc(s.id, &s.perm),
                nsems: Some(s.values.len() as u32),
                ..Default::default()
            })
            .map_err(image_err(&name))?;
            let bytes: Vec<u8> = s.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            padded(&mut img, &bytes);
            debug!(
                id = s.id,
                nsems = s.values.len(),
                "SysV semaphore set saved"
            );
        }
        dir.write(img)?;
    }
    if !queues.is_empty() {
        let name = format!("ipcns-msg-{ipc_ns}.img");
        let mut img = ImageWriter::new(name.clone(), "IPCNS_MSG");
        for q in queues {
            img.push(&Ipc_msg_entry {
                desc: desc(q.id, &q.perm),
                qbytes: Some(q.qbytes as u32),
                qnum: Some(q.messages.len() as u32),
                ..Default::default()
            })
            .map_err(image_err(&name))?;
            for (mtype, text) in &q.messages {
                img.push(&Ipc_msg {
                    mtype: Some(*mtype as u64),
                    msize: Some(text.len() as u32),
                    ..Default::default()
                })
                .map_err(image_err(&name))?;
                padded(&mut img, text);
            }
            debug!(
                id = q.id,
                messages = q.messages.len(),
                "SysV message queue saved"
            );
        }
        dir.write(img)?;
    }
    Ok(())
}

/// The ids `/proc/sysvipc/KIND` lists (the second column), in the caller's namespace.
fn list(kind: &str) -> Result<Vec<u32>> {
    let path = PathBuf::from(format!("/proc/sysvipc/{kind}"));
    let text = std::fs::read_to_string(&path).map_err(|source| DumpError::File {
        what: "reading",
        path: path.clone(),
        source,
    })?;
    parse_ids(&text).ok_or_else(|| DumpError::File {
        what: "parsing",
        path,
        source: std::io::Error::from(std::io::ErrorKind::InvalidData),
    })
}

fn parse_ids(text: &str) -> Option<Vec<u32>> {
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_ascii_whitespace().nth(1)?.parse().ok())
        .collect()
}

/// Writes ipcns-shm-<ipc_ns>.img and every segment's contents; pages ids from `next_id`
/// on. Returns the pages written.
pub(crate) fn write(
    segs: &[Opened],
    dir: &mut ImageDir,
    ipc_ns: u32,
    next_id: &mut u32,
) -> Result<u64> {
    if segs.is_empty() {
        return Ok(0);
    }
    let name = format!("ipcns-shm-{ipc_ns}.img");
    let mut img = ImageWriter::new(name.clone(), "IPCNS_SHM");
    let mut pages = 0;
    for Opened { id, st, file } in segs {
        let id = *id;
        let perm = IpcPerm {
            key: st.key,
            uid: st.uid,
            gid: st.gid,
            cuid: st.cuid,
            cgid: st.cgid,
            mode: st.mode,
        };
        img.push(&Ipc_shm_entry {
            desc: desc(id, &perm),
            size: Some(st.size),
            in_pagemaps: Some(true),
            ..Default::default()
        })
        .map_err(image_err(&name))?;
        *next_id += 1;
        let bytes = crate::shmem::write_contents(dir, u64::from(id), file, &label(id), *next_id)?;
        debug!(
            id,
            key = st.key,
            size = st.size,
            bytes,
            "SysV shared memory saved"
        );
        pages += bytes / PAGE_SIZE;
    }
    dir.write(img)?;
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_ids_reads_the_second_column_after_the_header() {
        let text = "       key      shmid perms       size\n\
                    \x20        0      32768   600       4096\n\
                    \x20 2055      98305   644       8192\n";
        assert_eq!(parse_ids(text), Some(vec![32768, 98305]));
        assert_eq!(parse_ids("   key  semid\n"), Some(vec![]));
        assert_eq!(parse_ids("h\n1 x\n"), None);
    }
}
