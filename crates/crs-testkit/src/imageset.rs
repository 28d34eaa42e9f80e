//! Whole image sets, decoded into their messages and mutated by meaning, for the tests and
//! the fuzz target of the restore's loading and checking (`crs_restore::load_and_check`).
//!
//! A mutation keeps every image well formed (crs's own writer encodes it again) and breaks
//! what the images say about each other: pids and tids that clash, parent links that make
//! cycles, ids that dangle or repeat, VMAs that overlap or leave user space, pagemap runs
//! outside the VMAs or past the pages image, fds that name no file, counts that claim huge
//! amounts, images removed, emptied, swapped or with entries duplicated. Every choice is
//! drawn from a [`Choices`], so a seeded generator (the property test) and a fuzzer's
//! bytes (the fuzz target) drive the same mutations.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crs_images::codec::{layout, Layout, Payload};
use crs_images::frame::{self, EntryCursor};
use crs_images::magic::{self, Magic};
use crs_images::registry;
use protobuf::reflect::{
    FieldDescriptor, ReflectValueBox, ReflectValueRef, RuntimeFieldType, RuntimeType,
};
use protobuf::{CodedOutputStream, MessageDyn};

/// Where every choice of a mutation comes from.
pub trait Choices {
    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64;
}

fn pick<'a, T>(c: &mut dyn Choices, v: &'a [T]) -> Option<&'a T> {
    if v.is_empty() {
        return None;
    }
    v.get(c.below(v.len() as u64) as usize)
}

fn chance(c: &mut dyn Choices, one_in: u64) -> bool {
    c.below(one_in) == 0
}

/// x86-64's user address space ends here (4-level paging).
const TASK_SIZE: u64 = 0x7fff_ffff_f000;
const PAGE: u64 = 4096;

/// Values that break sizes, addresses and ids at their edges.
const SPECIAL: &[u64] = &[
    0,
    1,
    2,
    0xfff,
    0x1000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    TASK_SIZE,
    TASK_SIZE + PAGE,
    1 << 47,
    1 << 52,
    0xffff_ffff_ffff_f000,
    i64::MAX as u64,
    1 << 63,
    u64::MAX,
];

/// How many elements or entries a "huge count" mutation adds at most (and at most
/// `BLOAT_BYTES` of them): enough for a check quadratic in the count to show.
const BLOAT: u64 = 5_000;
const BLOAT_BYTES: u64 = 512 << 10;

/// An image set as read: each image's bytes (raw images, such as pages, only by length),
/// and the values each family of fields takes across the set.
pub struct ImageSet {
    name: String,
    images: BTreeMap<String, Vec<u8>>,
    raw: BTreeMap<String, u64>,
    pools: BTreeMap<&'static str, Vec<u64>>,
    strings: Vec<String>,
}

/// One image decoded: its magic, entries (each a message and the raw bytes after it),
/// and what follows the last entry (a plain ghost file's contents).
struct Decoded {
    magic: &'static Magic,
    entries: Vec<Entry>,
    tail: Vec<u8>,
}

struct Entry {
    msg: Box<dyn MessageDyn>,
    payload: Vec<u8>,
}

/// What a mutation leaves of one image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The image now holds these bytes (it may be new).
    Bytes(Vec<u8>),
    /// The image is gone.
    Removed,
    /// A raw image cut or grown to this length.
    Len(u64),
}

/// A mutated set: what changed, and what a clear error about it names.
#[derive(Clone, Debug, Default)]
pub struct Mutation {
    /// One line per step.
    pub what: Vec<String>,
    /// The final state of every image a step touched.
    pub changes: BTreeMap<String, Change>,
    /// Strings a clear error names at least one of: the images touched, the values
    /// written and replaced, the pid/id/fd/address of the entry changed.
    pub keys: BTreeSet<String>,
    /// The set cannot be valid any more: loading it must fail.
    pub must_fail: bool,
    /// Something was removed or replaced (an entry, an element, an image): what refuses
    /// the set may be a consequence elsewhere (a socket no process holds once a process
    /// is gone), which names its own image and entry rather than what was removed.
    pub indirect: bool,
}

impl std::fmt::Display for Mutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.what.join("; "))
    }
}

impl Mutation {
    /// Writes the changed images into `dir`, which holds the set (see [`ImageSet::write`]).
    pub fn apply(&self, dir: &Path) -> io::Result<()> {
        for (name, c) in &self.changes {
            let path = dir.join(name);
            match c {
                Change::Bytes(b) => fs::write(&path, b)?,
                Change::Removed => remove_if_there(&path)?,
                Change::Len(n) => fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(*n)?,
            }
        }
        Ok(())
    }

    /// Puts `dir` back as [`ImageSet::write`] left it.
    pub fn revert(&self, set: &ImageSet, dir: &Path) -> io::Result<()> {
        for name in self.changes.keys() {
            set.write_one(dir, name)?;
        }
        Ok(())
    }

    /// Bytes of the images the mutation wrote.
    pub fn written(&self) -> u64 {
        self.changes
            .values()
            .map(|c| match c {
                Change::Bytes(b) => b.len() as u64,
                _ => 0,
            })
            .sum()
    }
}

impl Mutation {
    /// Whether `error` (as [`error_text`] gives it) is a clear refusal of this mutation:
    /// it names an image, and at least one of the things the mutation touched (an image,
    /// a value written or replaced, the pid/id/fd/address of the entry changed).
    pub fn explains(&self, error: &str) -> bool {
        error.contains(".img") && self.keys.iter().any(|k| error.contains(k.as_str()))
    }

    /// Whether `error` is a clear refusal of this set: it [`explains`](Self::explains)
    /// the mutation, or, for an [`indirect`](Self::indirect) one, it [`locates`] what is
    /// wrong.
    pub fn clearly_refused_by(&self, error: &str) -> bool {
        self.explains(error) || (self.indirect && locates(error))
    }
}

/// Whether `error` names an image and an object in it: a pid, thread, id, fd, entry,
/// socket, inode, VMA, segment, pipe or terminal with its number.
pub fn locates(error: &str) -> bool {
    const WHAT: &[&str] = &[
        "pid ",
        "thread ",
        "id ",
        "fd ",
        "entry ",
        "socket ",
        "inode ",
        "VMA ",
        "segment ",
        "pipe ",
        "terminal ",
    ];
    error.contains(".img")
        && WHAT.iter().any(|w| {
            error
                .match_indices(w)
                .any(|(at, _)| error[at + w.len()..].starts_with(|c: char| c.is_ascii_digit()))
        })
}

/// An error and its sources, as a user reads them.
pub fn error_text(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Which pool a field's values are drawn from: fields that name the same kind of thing
/// share one, so an id can be swapped for another object's id, a pid for another task's.
fn family(field: &str) -> &'static str {
    match field {
        "pid" | "ppid" | "pgid" | "sid" | "threads" | "notify_thread_id" | "tid" => "pid",
        "id" | "cwd_id" | "root_id" | "exe_file_id" | "regf_id" | "orig_id" | "remap_id"
        | "id_for" | "tty_info_id" | "files_id" | "inode_id" | "shmid" | "pipe_id" | "ino"
        | "peer" | "pages_id" | "fs_id" | "mnt_id" | "sighand_id" | "vm_id" => "id",
        "start" | "end" | "vaddr" | "mm_start_code" | "mm_end_code" | "mm_start_data"
        | "mm_end_data" | "mm_start_stack" | "mm_start_brk" | "mm_brk" | "mm_arg_start"
        | "mm_arg_end" | "mm_env_start" | "mm_env_end" => "addr",
        "fd" | "tfd" | "wd" => "fd",
        "nr_pages" | "compat_nr_pages" | "pgoff" | "size" | "bytes" | "length" | "off" | "len"
        | "pos" => "size",
        _ => "other",
    }
}

fn as_u64(v: &ReflectValueRef<'_>) -> Option<u64> {
    Some(match *v {
        ReflectValueRef::U32(x) => u64::from(x),
        ReflectValueRef::U64(x) => x,
        ReflectValueRef::I32(x) => x as i64 as u64,
        ReflectValueRef::I64(x) => x as u64,
        ReflectValueRef::Enum(_, x) => x as i64 as u64,
        ReflectValueRef::Bool(b) => u64::from(b),
        _ => return None,
    })
}

/// A value as an error would print it: decimal, and hex for addresses and sizes.
fn spellings(v: u64, out: &mut BTreeSet<String>) {
    out.insert(v.to_string());
    out.insert((v as i64).to_string());
    out.insert(format!("{v:#x}"));
    for h in [v, u64::from(v as u32)] {
        if h > 0xffff {
            // As image names spell ids (ghost-file-1f.img).
            out.insert(format!("{h:x}"));
        }
    }
    if v <= u64::from(u32::MAX) {
        out.insert((v as u32 as i32).to_string());
    } else {
        out.insert((v as u32).to_string());
    }
}

fn value_box(rt: &RuntimeType, v: u64) -> Option<ReflectValueBox> {
    Some(match rt {
        RuntimeType::U32 => ReflectValueBox::U32(v as u32),
        RuntimeType::U64 => ReflectValueBox::U64(v),
        RuntimeType::I32 => ReflectValueBox::I32(v as i32),
        RuntimeType::I64 => ReflectValueBox::I64(v as i64),
        RuntimeType::Bool => ReflectValueBox::Bool(v & 1 != 0),
        RuntimeType::Enum(e) => ReflectValueBox::Enum(e.clone(), v as i32),
        _ => return None,
    })
}

/// One step of the path from an entry's message to a field.
#[derive(Clone)]
enum Step {
    Field(FieldDescriptor),
    Elem(FieldDescriptor, usize),
}

impl Step {
    fn field(&self) -> &FieldDescriptor {
        match self {
            Step::Field(f) | Step::Elem(f, _) => f,
        }
    }
}

/// A place in an entry a mutation can change.
#[derive(Clone)]
struct Site {
    path: Vec<Step>,
    what: SiteKind,
}

#[derive(Clone)]
enum SiteKind {
    /// A scalar (set, or an element of a repeated scalar) and its value.
    Scalar(RuntimeType, Option<u64>),
    /// A string or bytes value.
    Text(RuntimeType),
    /// A (non-empty) repeated field as a whole.
    Repeated,
    /// A set message field.
    Message,
}

impl Site {
    fn name(&self) -> String {
        self.path
            .iter()
            .map(|s| match s {
                Step::Field(f) => f.name().to_string(),
                Step::Elem(f, i) => format!("{}[{i}]", f.name()),
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    fn leaf(&self) -> &FieldDescriptor {
        self.path.last().expect("a site has a path").field()
    }
}

/// Every site of `msg` (elements of long repeated fields sampled).
fn sites(msg: &dyn MessageDyn, prefix: &[Step], out: &mut Vec<Site>) {
    for f in msg.descriptor_dyn().fields() {
        let mut path = prefix.to_vec();
        match f.runtime_field_type() {
            RuntimeFieldType::Singular(rt) => {
                if !f.has_field(msg) {
                    continue;
                }
                path.push(Step::Field(f.clone()));
                match rt {
                    RuntimeType::Message(_) => {
                        let m = f.get_message(msg);
                        sites(&*m, &path, out);
                        out.push(Site {
                            path,
                            what: SiteKind::Message,
                        });
                    }
                    RuntimeType::String | RuntimeType::VecU8 => out.push(Site {
                        path,
                        what: SiteKind::Text(rt),
                    }),
                    RuntimeType::F32 | RuntimeType::F64 => {}
                    rt => {
                        let v = f.get_singular(msg).as_ref().and_then(as_u64);
                        out.push(Site {
                            path,
                            what: SiteKind::Scalar(rt, v),
                        })
                    }
                }
            }
            RuntimeFieldType::Repeated(rt) => {
                let r = f.get_repeated(msg);
                let n = r.len();
                if n == 0 {
                    continue;
                }
                // Long repeated fields (auxv, pagemap-sized lists) by a sample of elements.
                let step = (n / 16).max(1);
                for i in (0..n).step_by(step) {
                    let mut p = path.clone();
                    p.push(Step::Elem(f.clone(), i));
                    match (&rt, r.get(i)) {
                        (RuntimeType::Message(_), ReflectValueRef::Message(m)) => {
                            sites(&*m, &p, out);
                        }
                        (RuntimeType::String | RuntimeType::VecU8, _) => out.push(Site {
                            path: p,
                            what: SiteKind::Text(rt.clone()),
                        }),
                        (RuntimeType::F32 | RuntimeType::F64, _) => {}
                        (_, v) => out.push(Site {
                            path: p,
                            what: SiteKind::Scalar(rt.clone(), as_u64(&v)),
                        }),
                    }
                }
                path.push(Step::Field(f.clone()));
                out.push(Site {
                    path,
                    what: SiteKind::Repeated,
                });
            }
            RuntimeFieldType::Map(..) => {}
        }
    }
}

/// Runs `op` on the message that holds the last step of `path`, with that step.
fn at_path(
    msg: &mut dyn MessageDyn,
    path: &[Step],
    op: &mut dyn FnMut(&mut dyn MessageDyn, &Step),
) {
    let (first, rest) = path.split_first().expect("a non-empty path");
    if rest.is_empty() {
        op(msg, first);
        return;
    }
    match first {
        Step::Field(f) => at_path(f.mut_message(msg), rest, op),
        Step::Elem(f, i) => {
            let mut r = f.mut_repeated(msg);
            let ReflectValueRef::Message(m) = r.get(*i) else {
                return;
            };
            let mut elem = m.clone_box();
            at_path(&mut *elem, rest, op);
            r.set(*i, ReflectValueBox::Message(elem));
        }
    }
}

/// The elements of repeated field `f` of `msg`, owned.
fn elems(msg: &dyn MessageDyn, f: &FieldDescriptor) -> Vec<ReflectValueBox> {
    let r = f.get_repeated(msg);
    (0..r.len()).map(|i| r.get(i).to_box()).collect()
}

fn set_elems(msg: &mut dyn MessageDyn, f: &FieldDescriptor, v: Vec<ReflectValueBox>) {
    let mut r = f.mut_repeated(msg);
    r.clear();
    for e in v {
        r.push(e);
    }
}

fn clone_box(v: &ReflectValueBox) -> ReflectValueBox {
    match v {
        ReflectValueBox::Message(m) => ReflectValueBox::Message(m.clone_box()),
        other => other.as_value_ref().to_box(),
    }
}

fn uint_field(msg: &dyn MessageDyn, name: &str) -> Option<u64> {
    let f = msg.descriptor_dyn().field_by_name(name)?;
    f.get_singular(msg).as_ref().and_then(as_u64)
}

fn int_field(msg: &dyn MessageDyn, name: &str) -> Option<u64> {
    let f = msg.descriptor_dyn().field_by_name(name)?;
    let v = f.get_singular_field_or_default(msg);
    as_u64(&v)
}

fn set_int(msg: &mut dyn MessageDyn, name: &str, v: u64) {
    if let Some(f) = msg.descriptor_dyn().field_by_name(name) {
        if let RuntimeFieldType::Singular(rt) = f.runtime_field_type() {
            if let Some(b) = value_box(&rt, v) {
                f.set_singular_field(msg, b);
            }
        }
    }
}

fn decode(name: &str, bytes: &[u8]) -> Option<Decoded> {
    let (m, start) = frame::parse_header(name, bytes).ok()?;
    let lay = layout(m.name)?;
    let mut cur = EntryCursor::new(name, bytes, start);
    let mut entries = Vec::new();
    let mut tail = Vec::new();
    let descr = |n: &str| registry::message(n);
    match lay {
        Layout::Entries { message, payload } => {
            let d = descr(message)?;
            while let Some(e) = cur.next_entry().ok()? {
                let msg = d.parse_from_bytes(e.message).ok()?;
                let size = match payload {
                    Payload::None => 0,
                    Payload::Sized(field) => uint_field(&*msg, field).unwrap_or(0),
                    Payload::IpcShm => {
                        if int_field(&*msg, "in_pagemaps") == Some(1) {
                            0
                        } else {
                            uint_field(&*msg, "size").unwrap_or(0).next_multiple_of(4)
                        }
                    }
                    // TCP queues, BPF maps, semaphores, message queues: kept whole.
                    _ => return None,
                };
                let payload = cur.take_payload(size).ok()?.to_vec();
                entries.push(Entry { msg, payload });
            }
        }
        Layout::Pagemap => {
            let head = descr("pagemap_head")?;
            let entry = descr("pagemap_entry")?;
            while let Some(e) = cur.next_entry().ok()? {
                let d = if entries.is_empty() { &head } else { &entry };
                let msg = d.parse_from_bytes(e.message).ok()?;
                entries.push(Entry {
                    msg,
                    payload: Vec::new(),
                });
            }
        }
        Layout::GhostFile => {
            let head = descr("ghost_file_entry")?;
            let chunk = descr("ghost_chunk_entry")?;
            let e = cur.next_entry().ok()??;
            let msg = head.parse_from_bytes(e.message).ok()?;
            let chunks = int_field(&*msg, "chunks") == Some(1);
            entries.push(Entry {
                msg,
                payload: Vec::new(),
            });
            if chunks {
                while let Some(e) = cur.next_entry().ok()? {
                    let msg = chunk.parse_from_bytes(e.message).ok()?;
                    let len = uint_field(&*msg, "len").unwrap_or(0);
                    let payload = cur.take_payload(len).ok()?.to_vec();
                    entries.push(Entry { msg, payload });
                }
            } else {
                tail = cur.take_rest().to_vec();
            }
        }
    }
    Some(Decoded {
        magic: m,
        entries,
        tail,
    })
}

/// Encodes `d` with crs's framing (messages written even when a required field is
/// missing: the reader must refuse them).
fn encode(d: &Decoded) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_header(&mut out, d.magic);
    for e in &d.entries {
        encode_entry(e, &mut out);
    }
    out.extend_from_slice(&d.tail);
    out
}

/// Appends entry `e` (framed message, then its payload) to `out`.
fn encode_entry(e: &Entry, out: &mut Vec<u8>) {
    let mut body = Vec::new();
    e.msg.compute_size_dyn();
    {
        let mut os = CodedOutputStream::vec(&mut body);
        e.msg
            .write_to_with_cached_sizes_dyn(&mut os)
            .expect("writing to a Vec");
        os.flush().expect("writing to a Vec");
    }
    frame::write_entry(out, &body);
    out.extend_from_slice(&e.payload);
}

/// The pid in an image name such as `core-72001.img`.
fn pid_of(name: &str, prefix: &str) -> Option<u64> {
    name.strip_prefix(prefix)?
        .strip_suffix(".img")?
        .parse()
        .ok()
}

/// Images a restore of the set cannot do without.
fn required(name: &str) -> bool {
    name == "pstree.img" || name == "inventory.img" || pid_of(name, "core-").is_some()
}

/// Images that hold exactly one entry.
fn single_entry(name: &str) -> bool {
    name == "inventory.img"
        || ["core-", "mm-", "fs-", "ids-"]
            .iter()
            .any(|p| pid_of(name, p).is_some())
}

impl ImageSet {
    /// Reads every image of `dir` (files ending in `.img`; raw ones such as pages only
    /// by length).
    pub fn read(dir: &Path) -> io::Result<ImageSet> {
        let mut images = BTreeMap::new();
        let mut raw = BTreeMap::new();
        for e in fs::read_dir(dir)? {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".img") || !e.file_type()?.is_file() {
                continue;
            }
            if magic::raw_image_kind(&name).is_some() {
                raw.insert(name, e.metadata()?.len());
            } else {
                images.insert(name, fs::read(e.path())?);
            }
        }
        let mut set = ImageSet {
            name: dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            images,
            raw,
            pools: BTreeMap::new(),
            strings: Vec::new(),
        };
        let mut pools: BTreeMap<&'static str, BTreeSet<u64>> = BTreeMap::new();
        let mut strings = BTreeSet::new();
        for (name, bytes) in &set.images {
            let Some(d) = decode(name, bytes) else {
                continue;
            };
            for e in &d.entries {
                let mut all = Vec::new();
                sites(&*e.msg, &[], &mut all);
                for s in all {
                    match s.what {
                        SiteKind::Scalar(_, Some(v)) => {
                            pools.entry(family(s.leaf().name())).or_default().insert(v);
                        }
                        SiteKind::Text(RuntimeType::String) => {
                            let v = get_text(&*e.msg, &s.path);
                            if v.len() < 256 {
                                strings.insert(v);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        set.pools = pools
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().collect()))
            .collect();
        set.strings = strings.into_iter().collect();
        Ok(set)
    }

    /// The set's name (its directory's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The names of its images.
    pub fn image_names(&self) -> Vec<String> {
        self.images.keys().chain(self.raw.keys()).cloned().collect()
    }

    /// Total bytes of its non-raw images.
    pub fn image_bytes(&self) -> u64 {
        self.images.values().map(|b| b.len() as u64).sum()
    }

    /// Writes the set into `dir`: each image as read, raw images as sparse files of their
    /// length (a restore's loading reads only their size).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        for name in self.images.keys().chain(self.raw.keys()) {
            self.write_one(dir, name)?;
        }
        Ok(())
    }

    fn write_one(&self, dir: &Path, name: &str) -> io::Result<()> {
        let path = dir.join(name);
        if let Some(b) = self.images.get(name) {
            fs::write(path, b)
        } else if let Some(&len) = self.raw.get(name) {
            let f = fs::File::create(path)?;
            f.set_len(len)
        } else {
            remove_if_there(&path)
        }
    }

    /// One mutated set: usually one mutation, sometimes two or three in a row.
    pub fn mutate(&self, c: &mut dyn Choices) -> Mutation {
        let steps = match c.below(8) {
            0 => 3,
            1 | 2 => 2,
            _ => 1,
        };
        let mut m = Mutation::default();
        let mut work = Work {
            set: self,
            state: BTreeMap::new(),
        };
        for _ in 0..steps {
            let mut step = Mutation::default();
            work.one(c, &mut step);
            m.what.append(&mut step.what);
            m.keys.append(&mut step.keys);
            m.must_fail = steps == 1 && step.must_fail;
            m.indirect |= step.indirect;
        }
        m.changes = work.state;
        m
    }
}

fn get_text(msg: &dyn MessageDyn, path: &[Step]) -> String {
    let mut out = String::new();
    let mut msg = msg.clone_box();
    at_path(&mut *msg, path, &mut |m, step| {
        let v = match step {
            Step::Field(f) => f.get_singular(m).map(|v| v.to_box()),
            Step::Elem(f, i) => Some(f.get_repeated(m).get(*i).to_box()),
        };
        if let Some(ReflectValueBox::String(s)) = v {
            out = s;
        }
    });
    out
}

/// The images as the mutation steps leave them.
struct Work<'a> {
    set: &'a ImageSet,
    state: BTreeMap<String, Change>,
}

/// The kinds of mutation, in the order [`Work::one`] draws them.
const KINDS: u64 = 15;

impl Work<'_> {
    fn bytes(&self, name: &str) -> Option<&[u8]> {
        match self.state.get(name) {
            Some(Change::Bytes(b)) => Some(b),
            Some(_) => None,
            None => self.set.images.get(name).map(Vec::as_slice),
        }
    }

    fn names(&self) -> Vec<String> {
        let mut v: BTreeSet<String> = self.set.images.keys().cloned().collect();
        for (n, c) in &self.state {
            match c {
                Change::Bytes(_) => {
                    v.insert(n.clone());
                }
                Change::Removed => {
                    v.remove(n);
                }
                Change::Len(_) => {}
            }
        }
        v.into_iter().collect()
    }

    fn raw_names(&self) -> Vec<String> {
        self.set
            .raw
            .keys()
            .filter(|n| self.state.get(*n) != Some(&Change::Removed))
            .cloned()
            .collect()
    }

    fn decoded(&self, name: &str) -> Option<Decoded> {
        decode(name, self.bytes(name)?)
    }

    fn put(&mut self, name: &str, d: &Decoded) {
        self.state
            .insert(name.to_string(), Change::Bytes(encode(d)));
    }

    /// A decodable image whose name starts with `prefix` (any when empty).
    fn image(&self, c: &mut dyn Choices, prefix: &str) -> Option<(String, Decoded)> {
        let names: Vec<String> = self
            .names()
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect();
        let name = pick(c, &names)?.clone();
        let d = self.decoded(&name)?;
        Some((name, d))
    }

    /// Draws one mutation and records it in `m`; a draw that finds nothing to change
    /// falls back to a field change, then to removing an image.
    fn one(&mut self, c: &mut dyn Choices, m: &mut Mutation) {
        let done = match c.below(KINDS) {
            0..=3 => self.field(c, m),
            4 => self.pstree_links(c, m),
            5 => self.thread_clash(c, m),
            6 => self.vma(c, m),
            7 => self.pagemap(c, m),
            8 => self.fdinfo(c, m),
            9 => self.files(c, m),
            10 => self.entries(c, m),
            11 => self.bloat(c, m),
            12 => self.whole_image(c, m),
            13 => self.raw(c, m),
            _ => self.repeated(c, m),
        };
        if !done && !self.field(c, m) {
            self.whole_image(c, m);
        }
    }

    /// A value for a field now holding `old` (None: unset), drawn from its family's pool,
    /// the edge values, or arithmetic on the old value.
    fn value(&self, c: &mut dyn Choices, field: &str, old: Option<u64>) -> u64 {
        let pool = self
            .set
            .pools
            .get(family(field))
            .map_or(&[][..], Vec::as_slice);
        let old = old.unwrap_or(0);
        match c.below(4) {
            0 => pick(c, pool).copied().unwrap_or(old),
            1 => pool
                .last()
                .copied()
                .unwrap_or(old)
                .wrapping_add(1 + c.below(3)),
            2 => *pick(c, SPECIAL).expect("non-empty"),
            _ => match c.below(10) {
                0 => old.wrapping_add(1),
                1 => old.wrapping_sub(1),
                2 => old.wrapping_add(PAGE),
                3 => old.wrapping_sub(PAGE),
                4 => old.wrapping_mul(2),
                5 => old << 12,
                6 => old << 32,
                7 => !old,
                8 => old | 1,
                _ => old & !(PAGE - 1),
            },
        }
    }

    /// Sets, clears, or (for repeated fields) reorders one field of one entry.
    fn field(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let Some((name, mut d)) = self.image(c, "") else {
            return false;
        };
        if d.entries.is_empty() {
            return false;
        }
        let k = c.below(d.entries.len() as u64) as usize;
        let mut all = Vec::new();
        sites(&*d.entries[k].msg, &[], &mut all);
        let Some(site) = pick(c, &all).cloned() else {
            return false;
        };
        identity(&*d.entries[k].msg, &mut m.keys);
        m.keys.insert(name.clone());
        let field = site.leaf().name().to_string();
        let what = match site.what.clone() {
            SiteKind::Scalar(rt, old) if !chance(c, 8) => {
                let v = match &rt {
                    RuntimeType::Enum(e) if chance(c, 2) => {
                        let vals: Vec<i32> = e.values().map(|v| v.value()).collect();
                        *pick(c, &vals).expect("an enum has values") as i64 as u64
                    }
                    _ => self.value(c, &field, old),
                };
                let Some(b) = value_box(&rt, v) else {
                    return false;
                };
                if let Some(o) = old {
                    spellings(o, &mut m.keys);
                }
                spellings(v, &mut m.keys);
                let mut b = Some(b);
                at_path(&mut *d.entries[k].msg, &site.path, &mut |msg, step| {
                    let Some(b) = b.take() else { return };
                    match step {
                        Step::Field(f) => f.set_singular_field(msg, b),
                        Step::Elem(f, i) => f.mut_repeated(msg).set(*i, b),
                    }
                });
                format!("{name} entry {k}: {} = {v} ({v:#x})", site.name())
            }
            SiteKind::Text(rt) => {
                let v: ReflectValueBox = match rt {
                    RuntimeType::String => {
                        let s = match c.below(6) {
                            0 => String::new(),
                            1 => "relative/path".to_string(),
                            2 => "/no/such/crs/path".to_string(),
                            3 => "/a\0b".to_string(),
                            4 => "x".repeat(5000),
                            _ => pick(c, &self.set.strings).cloned().unwrap_or_default(),
                        };
                        if s.len() < 64 && !s.is_empty() {
                            m.keys.insert(s.replace('\0', "\\0"));
                        }
                        ReflectValueBox::String(s)
                    }
                    _ => ReflectValueBox::Bytes(vec![
                        0x41;
                        *pick(c, &[0, 1, 127, 129, 4096])
                            .expect("non-empty")
                    ]),
                };
                let mut v = Some(v);
                at_path(&mut *d.entries[k].msg, &site.path, &mut |msg, step| {
                    let Some(v) = v.take() else { return };
                    match step {
                        Step::Field(f) => f.set_singular_field(msg, v),
                        Step::Elem(f, i) => f.mut_repeated(msg).set(*i, v),
                    }
                });
                format!("{name} entry {k}: {} changed", site.name())
            }
            _ => {
                // Clear the field (a message, a repeated field, a scalar) or drop the element.
                at_path(
                    &mut *d.entries[k].msg,
                    &site.path,
                    &mut |msg, step| match step {
                        Step::Field(f) => f.clear_field(msg),
                        Step::Elem(f, i) => {
                            let mut v = elems(msg, f);
                            if *i < v.len() {
                                v.remove(*i);
                            }
                            set_elems(msg, f, v);
                        }
                    },
                );
                m.keys.insert(field.clone());
                m.indirect = true;
                format!("{name} entry {k}: {} cleared", site.name())
            }
        };
        self.put(&name, &d);
        m.what.push(what);
        true
    }

    /// Duplicates, removes, reverses, or swaps elements of one repeated field.
    fn repeated(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let Some((name, mut d)) = self.image(c, "") else {
            return false;
        };
        if d.entries.is_empty() {
            return false;
        }
        let k = c.below(d.entries.len() as u64) as usize;
        let mut all = Vec::new();
        sites(&*d.entries[k].msg, &[], &mut all);
        all.retain(|s| matches!(s.what, SiteKind::Repeated));
        let Some(site) = pick(c, &all).cloned() else {
            return false;
        };
        identity(&*d.entries[k].msg, &mut m.keys);
        m.keys.insert(name.clone());
        m.keys.insert(site.leaf().name().to_string());
        let how = c.below(4);
        m.indirect = how == 1;
        let (a, b) = (c.below(1 << 16), c.below(1 << 16));
        at_path(&mut *d.entries[k].msg, &site.path, &mut |msg, step| {
            let f = step.field();
            let mut v = elems(msg, f);
            if v.is_empty() {
                return;
            }
            let (i, j) = (a as usize % v.len(), b as usize % v.len());
            match how {
                0 => {
                    let e = clone_box(&v[i]);
                    v.insert(i, e);
                }
                1 => {
                    v.remove(i);
                }
                2 => v.reverse(),
                _ => v.swap(i, j),
            }
            set_elems(msg, f, v);
        });
        self.put(&name, &d);
        m.what.push(format!(
            "{name} entry {k}: {} {}",
            site.name(),
            [
                "element duplicated",
                "element removed",
                "reversed",
                "elements swapped"
            ][how as usize]
        ));
        true
    }

    /// pstree.img: a parent link into a cycle, onto itself, onto a later entry, or two
    /// entries swapped (a child before its parent).
    fn pstree_links(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let name = "pstree.img";
        let Some(mut d) = self.decoded(name) else {
            return false;
        };
        let n = d.entries.len();
        if n == 0 {
            return false;
        }
        let pids: Vec<u64> = d
            .entries
            .iter()
            .map(|e| int_field(&*e.msg, "pid").unwrap_or(0))
            .collect();
        m.keys.insert(name.to_string());
        let k = c.below(n as u64) as usize;
        let what = match c.below(4) {
            0 if n > 1 => {
                // The root's parent is one of its descendants.
                let p = pids[1 + c.below(n as u64 - 1) as usize];
                set_int(&mut *d.entries[0].msg, "ppid", p);
                spellings(p, &mut m.keys);
                m.must_fail = true;
                format!("{name}: root's ppid = {p} (a cycle)")
            }
            1 => {
                set_int(&mut *d.entries[k].msg, "ppid", pids[k]);
                spellings(pids[k], &mut m.keys);
                m.must_fail = k > 0;
                format!("{name}: entry {k} ppid = its own pid {}", pids[k])
            }
            2 if k + 1 < n => {
                let later = pids[k + 1 + c.below((n - k - 1) as u64) as usize];
                set_int(&mut *d.entries[k].msg, "ppid", later);
                spellings(pids[k], &mut m.keys);
                spellings(later, &mut m.keys);
                m.must_fail = k > 0;
                format!("{name}: entry {k} ppid = {later}, a later entry")
            }
            _ if n > 1 => {
                let j = 1 + c.below(n as u64 - 1) as usize;
                d.entries.swap(0, j);
                spellings(pids[0], &mut m.keys);
                spellings(pids[j], &mut m.keys);
                m.must_fail = true;
                format!("{name}: entries 0 and {j} swapped (a child first)")
            }
            _ => return false,
        };
        self.put(name, &d);
        m.what.push(what);
        true
    }

    /// pstree.img: a thread id that is another process's pid or thread, or twice in one
    /// thread list; or a thread list that does not start with the pid.
    fn thread_clash(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let name = "pstree.img";
        let Some(mut d) = self.decoded(name) else {
            return false;
        };
        let n = d.entries.len();
        if n == 0 {
            return false;
        }
        let Some(f) = d.entries[0].msg.descriptor_dyn().field_by_name("threads") else {
            return false;
        };
        let tids: Vec<Vec<u64>> = d
            .entries
            .iter()
            .map(|e| {
                elems(&*e.msg, &f)
                    .iter()
                    .filter_map(|v| as_u64(&v.as_value_ref()))
                    .collect()
            })
            .collect();
        let k = c.below(n as u64) as usize;
        let all: Vec<u64> = tids
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != k || n == 1)
            .flat_map(|(_, t)| t.iter().copied())
            .collect();
        let Some(&t) = pick(c, &all) else {
            return false;
        };
        let mut v = elems(&*d.entries[k].msg, &f);
        let what = if chance(c, 4) && v.len() > 1 {
            v.swap(0, 1);
            format!("{name}: entry {k}'s first thread is not its pid")
        } else {
            v.push(ReflectValueBox::U32(t as u32));
            format!("{name}: entry {k} gets thread {t}, taken already")
        };
        set_elems(&mut *d.entries[k].msg, &f, v);
        m.keys.insert(name.to_string());
        spellings(t, &mut m.keys);
        for x in &tids[k] {
            spellings(*x, &mut m.keys);
        }
        m.must_fail = true;
        self.put(name, &d);
        m.what.push(what);
        true
    }

    /// mm-PID.img: a VMA made to overlap its neighbour, unaligned, empty or inverted,
    /// huge, or beyond user space.
    fn vma(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let Some((name, mut d)) = self.image(c, "mm-") else {
            return false;
        };
        let Some(e) = d.entries.first_mut() else {
            return false;
        };
        let Some(f) = e.msg.descriptor_dyn().field_by_name("vmas") else {
            return false;
        };
        let mut vmas = elems(&*e.msg, &f);
        // Not the vsyscall page, which lives above user space.
        let candidates: Vec<usize> = (0..vmas.len())
            .filter(|&i| match &vmas[i] {
                ReflectValueBox::Message(v) => {
                    int_field(&**v, "end").is_some_and(|e| e <= TASK_SIZE)
                }
                _ => false,
            })
            .collect();
        let Some(&i) = pick(c, &candidates) else {
            return false;
        };
        let ReflectValueBox::Message(v) = &mut vmas[i] else {
            return false;
        };
        let (start, end) = (
            int_field(&**v, "start").unwrap_or(0),
            int_field(&**v, "end").unwrap_or(0),
        );
        spellings(start, &mut m.keys);
        spellings(end, &mut m.keys);
        let what = match c.below(5) {
            0 if i > 0 => {
                // Starts inside the VMA before it.
                let ReflectValueBox::Message(p) = &vmas[i - 1] else {
                    return false;
                };
                let ps = int_field(&**p, "start").unwrap_or(0);
                let ReflectValueBox::Message(v) = &mut vmas[i] else {
                    return false;
                };
                set_int(&mut **v, "start", ps);
                spellings(ps, &mut m.keys);
                format!("{name}: VMA {i} starts at {ps:#x}, inside the one before")
            }
            1 => {
                set_int(&mut **v, "start", start | 0x123);
                format!("{name}: VMA {i} starts unaligned")
            }
            2 => {
                set_int(&mut **v, "end", start);
                format!("{name}: VMA {i} is empty")
            }
            3 => {
                let e = 0xffff_ffff_ffff_f000;
                set_int(&mut **v, "end", e);
                spellings(e, &mut m.keys);
                format!("{name}: VMA {i} ends at {e:#x}")
            }
            _ => {
                let e = TASK_SIZE + PAGE;
                set_int(&mut **v, "end", e);
                spellings(e, &mut m.keys);
                format!("{name}: VMA {i} ends past user space")
            }
        };
        set_elems(&mut *e.msg, &f, vmas);
        m.keys.insert(name.clone());
        m.must_fail = true;
        self.put(&name, &d);
        m.what.push(what);
        true
    }

    /// pagemap-PID.img: a run at page 0 or unaligned (outside every VMA), of a huge
    /// number of pages, runs out of order, or a pages image that does not exist.
    fn pagemap(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let Some((name, mut d)) = self.image(c, "pagemap-") else {
            return false;
        };
        let n = d.entries.len();
        if n == 0 {
            return false;
        }
        m.keys.insert(name.clone());
        let what = if n == 1 || chance(c, 6) {
            let v = 900 + c.below(99);
            set_int(&mut *d.entries[0].msg, "pages_id", v);
            spellings(v, &mut m.keys);
            m.keys.insert(format!("pages-{v}.img"));
            // Only matters when a run is present.
            m.must_fail = d.entries[1..].iter().any(|e| {
                int_field(&*e.msg, "flags").is_none_or(|f| f & 4 != 0)
                    && int_field(&*e.msg, "nr_pages").unwrap_or(0) > 0
            }) && !name.starts_with("pagemap-shmem-");
            format!("{name}: pages_id = {v} (no such pages image)")
        } else {
            let k = 1 + c.below(n as u64 - 1) as usize;
            let e = &mut d.entries[k];
            let vaddr = int_field(&*e.msg, "vaddr").unwrap_or(0);
            let nr = int_field(&*e.msg, "nr_pages").unwrap_or(0);
            spellings(vaddr, &mut m.keys);
            spellings(nr, &mut m.keys);
            m.keys.insert(format!("entry {k}"));
            m.must_fail = true;
            match c.below(5) {
                0 => {
                    set_int(&mut *e.msg, "vaddr", 0);
                    m.must_fail = !name.starts_with("pagemap-shmem-");
                    format!("{name}: entry {k} at address 0")
                }
                1 => {
                    set_int(&mut *e.msg, "vaddr", vaddr | 0x10);
                    format!("{name}: entry {k} unaligned")
                }
                2 => {
                    let v = 1 << (30 + c.below(30));
                    set_int(&mut *e.msg, "nr_pages", v);
                    spellings(v, &mut m.keys);
                    format!("{name}: entry {k} of {v} pages")
                }
                3 if n > 2 => {
                    let j = if k + 1 < n { k + 1 } else { k - 1 };
                    d.entries.swap(k, j);
                    format!("{name}: entries {k} and {j} swapped")
                }
                _ => {
                    let pages: u64 = self.set.raw.values().sum::<u64>() / PAGE;
                    let v = nr + pages + 1;
                    set_int(&mut *e.msg, "nr_pages", v);
                    spellings(v, &mut m.keys);
                    format!("{name}: entry {k} of {v} pages, more than every pages image holds")
                }
            }
        };
        self.put(&name, &d);
        m.what.push(what);
        true
    }

    /// fdinfo-N.img: an fd naming a file id that does not exist, of another type, an fd
    /// number twice or huge.
    fn fdinfo(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let Some((name, mut d)) = self.image(c, "fdinfo-") else {
            return false;
        };
        let n = d.entries.len();
        if n == 0 {
            return false;
        }
        let k = c.below(n as u64) as usize;
        let fds: Vec<u64> = d
            .entries
            .iter()
            .map(|e| int_field(&*e.msg, "fd").unwrap_or(0))
            .collect();
        identity(&*d.entries[k].msg, &mut m.keys);
        m.keys.insert(name.clone());
        let e = &mut *d.entries[k].msg;
        let what = match c.below(4) {
            0 => {
                let ids = self.set.pools.get("id").map_or(&[][..], Vec::as_slice);
                let v = ids.last().copied().unwrap_or(0) as u32 as u64 + 1 + c.below(1000);
                let v = v & 0xffff_ffff;
                set_int(e, "id", v);
                spellings(v, &mut m.keys);
                m.must_fail = v != 0;
                format!(
                    "{name}: fd {} names file id {v}, which does not exist",
                    fds[k]
                )
            }
            1 if n > 1 => {
                let j = (k + 1 + c.below(n as u64 - 1) as usize) % n;
                set_int(e, "fd", fds[j]);
                spellings(fds[j], &mut m.keys);
                m.must_fail = true;
                format!("{name}: entry {k} takes fd {}, open already", fds[j])
            }
            2 => {
                let v = *pick(c, &[1 << 20, 1 << 31, u32::MAX as u64]).expect("non-empty");
                set_int(e, "fd", v);
                spellings(v, &mut m.keys);
                m.must_fail = true;
                format!("{name}: entry {k} at fd {v}")
            }
            _ => {
                let old = int_field(e, "type").unwrap_or(0);
                let v = (old + 1 + c.below(20)) % 22;
                set_int(e, "type", v);
                spellings(v, &mut m.keys);
                m.must_fail = v != old;
                format!("{name}: entry {k} of type {v} (was {old})")
            }
        };
        self.put(&name, &d);
        m.what.push(what);
        true
    }

    /// files.img: an entry twice, an id taken by two entries, or an entry removed.
    fn files(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let name = "files.img";
        let Some(mut d) = self.decoded(name) else {
            return false;
        };
        let n = d.entries.len();
        if n == 0 {
            return false;
        }
        let k = c.below(n as u64) as usize;
        identity(&*d.entries[k].msg, &mut m.keys);
        m.keys.insert(name.to_string());
        let what = match c.below(3) {
            0 => {
                let e = Entry {
                    msg: d.entries[k].msg.clone_box(),
                    payload: Vec::new(),
                };
                d.entries.insert(k, e);
                format!("{name}: entry {k} twice")
            }
            1 if n > 1 => {
                let j = (k + 1 + c.below(n as u64 - 1) as usize) % n;
                let id = int_field(&*d.entries[j].msg, "id").unwrap_or(0);
                set_int(&mut *d.entries[k].msg, "id", id);
                spellings(id, &mut m.keys);
                format!("{name}: entry {k} takes id {id} of entry {j}")
            }
            _ => {
                d.entries.remove(k);
                m.indirect = true;
                format!("{name}: entry {k} removed")
            }
        };
        // Used only when a process reads files.img; not every set has a file.
        m.must_fail = false;
        self.put(name, &d);
        m.what.push(what);
        true
    }

    /// Entries of one image: one duplicated, removed, moved first, or all removed.
    fn entries(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let Some((name, mut d)) = self.image(c, "") else {
            return false;
        };
        let n = d.entries.len();
        m.keys.insert(name.clone());
        let what = match c.below(4) {
            0 if n > 0 => {
                let k = c.below(n as u64) as usize;
                identity(&*d.entries[k].msg, &mut m.keys);
                let e = Entry {
                    msg: d.entries[k].msg.clone_box(),
                    payload: d.entries[k].payload.clone(),
                };
                d.entries.insert(k + 1, e);
                m.must_fail = single_entry(&name) || name == "pstree.img";
                format!("{name}: entry {k} twice")
            }
            1 if n > 0 => {
                let k = c.below(n as u64) as usize;
                identity(&*d.entries[k].msg, &mut m.keys);
                m.keys.extend(kind_of(&name).map(str::to_string));
                d.entries.remove(k);
                m.must_fail = single_entry(&name);
                m.indirect = true;
                format!("{name}: entry {k} removed")
            }
            2 if n > 1 => {
                let k = c.below(n as u64) as usize;
                let e = d.entries.remove(k);
                identity(&*e.msg, &mut m.keys);
                d.entries.insert(0, e);
                format!("{name}: entry {k} moved first")
            }
            _ => {
                for e in d.entries.iter().take(64) {
                    identity(&*e.msg, &mut m.keys);
                }
                m.keys.extend(kind_of(&name).map(str::to_string));
                d.entries.clear();
                d.tail.clear();
                m.must_fail = single_entry(&name) || name == "pstree.img";
                m.indirect = true;
                format!("{name}: emptied (header only)")
            }
        };
        self.put(&name, &d);
        m.what.push(what);
        true
    }

    /// A huge count: thousands of copies of one element of a repeated field, or of one
    /// entry.
    fn bloat(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let Some((name, mut d)) = self.image(c, "") else {
            return false;
        };
        let n = d.entries.len();
        if n == 0 {
            return false;
        }
        let k = c.below(n as u64) as usize;
        identity(&*d.entries[k].msg, &mut m.keys);
        m.keys.insert(name.clone());
        let copies = BLOAT / 4 + c.below(BLOAT);
        let mut all = Vec::new();
        sites(&*d.entries[k].msg, &[], &mut all);
        all.retain(|s| matches!(s.what, SiteKind::Repeated));
        let what = match pick(c, &all).cloned() {
            Some(site) if chance(c, 2) => {
                // Bounded by bytes: a big element is copied fewer times.
                at_path(&mut *d.entries[k].msg, &site.path, &mut |msg, step| {
                    let f = step.field();
                    let mut v = elems(msg, f);
                    let Some(first) = v.first().map(clone_box) else {
                        return;
                    };
                    let each = match &first {
                        ReflectValueBox::Message(x) => x.compute_size_dyn().max(1),
                        ReflectValueBox::String(s) => s.len().max(1) as u64,
                        ReflectValueBox::Bytes(b) => b.len().max(1) as u64,
                        _ => 1,
                    };
                    let copies = copies.min(BLOAT_BYTES / each);
                    v.extend((0..copies).map(|_| clone_box(&first)));
                    set_elems(msg, f, v);
                });
                m.keys.insert(site.leaf().name().to_string());
                format!("{name} entry {k}: {} + {copies} copies", site.name())
            }
            _ => {
                // Framed copies of the entry's bytes after the image (not as decoded
                // messages: the mutation's own heap stays below what a load takes).
                let mut one = Vec::new();
                encode_entry(&d.entries[k], &mut one);
                let copies = copies.min(BLOAT_BYTES / one.len().max(1) as u64);
                let mut bytes = encode(&d);
                for _ in 0..copies {
                    bytes.extend_from_slice(&one);
                }
                self.state.insert(name.clone(), Change::Bytes(bytes));
                m.must_fail = single_entry(&name) || name == "pstree.img";
                m.what.push(format!("{name}: entry {k} + {copies} copies"));
                return true;
            }
        };
        self.put(&name, &d);
        m.what.push(what);
        true
    }

    /// A whole image removed, or replaced by another image of the set.
    fn whole_image(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let names = self.names();
        let Some(name) = pick(c, &names).cloned() else {
            return false;
        };
        m.keys.insert(name.clone());
        m.indirect = true;
        let what = if chance(c, 3) {
            let other = pick(c, &names).cloned().unwrap_or_default();
            let Some(b) = self.bytes(&other).map(<[u8]>::to_vec) else {
                return false;
            };
            let differs = frame::parse_header(&other, &b).map(|(m, _)| m.name).ok()
                != self
                    .bytes(&name)
                    .and_then(|x| frame::parse_header(&name, x).ok())
                    .map(|(m, _)| m.name);
            m.must_fail = required(&name) && differs;
            m.keys.insert(other.clone());
            m.keys.extend(kind_of(&name).map(str::to_string));
            self.state.insert(name.clone(), Change::Bytes(b));
            format!("{name} replaced by {other}")
        } else {
            m.must_fail = required(&name);
            m.keys.extend(kind_of(&name).map(str::to_string));
            self.state.insert(name.clone(), Change::Removed);
            format!("{name} removed")
        };
        m.what.push(what);
        true
    }

    /// A raw image (pages) cut short, emptied or removed.
    fn raw(&mut self, c: &mut dyn Choices, m: &mut Mutation) -> bool {
        let names = self.raw_names();
        let Some(name) = pick(c, &names).cloned() else {
            return false;
        };
        let len = self.set.raw[&name];
        m.keys.insert(name.clone());
        let what = match c.below(3) {
            0 => {
                self.state.insert(name.clone(), Change::Removed);
                format!("{name} removed")
            }
            1 => {
                self.state.insert(name.clone(), Change::Len(0));
                format!("{name} emptied")
            }
            _ => {
                let cut = len.saturating_sub(PAGE * (1 + c.below(4)));
                self.state.insert(name.clone(), Change::Len(cut));
                format!("{name} cut to {cut:#x} bytes")
            }
        };
        m.what.push(what);
        true
    }
}

/// The kind of image `name` is, as errors about a missing one spell it (`ipcns-shm-` of
/// `ipcns-shm-3.img`), when it is numbered.
fn kind_of(name: &str) -> Option<&str> {
    let cut = name.find(|c: char| c.is_ascii_digit())?;
    (cut >= 4).then(|| &name[..cut])
}

/// Adds what identifies entry `msg` in an error (its pid, id, fd, address, pages id).
fn identity(msg: &dyn MessageDyn, keys: &mut BTreeSet<String>) {
    for f in [
        "pid", "id", "fd", "start", "vaddr", "pages_id", "inode_id", "pipe_id",
    ] {
        if let Some(v) = int_field(msg, f).filter(|_| {
            msg.descriptor_dyn()
                .field_by_name(f)
                .is_some_and(|d| d.has_field(msg))
        }) {
            spellings(v, keys);
        }
    }
}

/// Reads the set at `dir` (see [`ImageSet::read`]).
///
/// # Panics
/// When it cannot be read.
pub fn read_set(dir: &Path) -> ImageSet {
    ImageSet::read(dir).unwrap_or_else(|e| panic!("reading the image set {}: {e}", dir.display()))
}

/// A fresh directory holding a copy of `set` (see [`ImageSet::write`]), in memory
/// (`/dev/shm`) when there is one: mutated sets are written and read back many times.
///
/// # Panics
/// When it cannot be made.
pub fn scratch_copy(set: &ImageSet) -> (tempfile::TempDir, PathBuf) {
    let shm = Path::new("/dev/shm");
    let prefix = format!("crs-mutated-{}-", set.name());
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix);
    let tmp = if shm.is_dir() {
        b.tempdir_in(shm)
    } else {
        b.tempdir()
    }
    .expect("a temporary directory");
    let dir = tmp.path().to_path_buf();
    set.write(&dir)
        .unwrap_or_else(|e| panic!("writing {} into {}: {e}", set.name(), dir.display()));
    (tmp, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(u64);
    impl Choices for Counter {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    #[test]
    fn encode_decoded_reference_images_is_byte_identical() {
        let root = crate::criu_images();
        let Ok(sets) = fs::read_dir(&root) else {
            crate::skip(
                "encode_decoded_reference_images_is_byte_identical",
                "no CRIU reference sets",
            );
            return;
        };
        let mut checked = 0;
        for s in sets
            .flatten()
            .filter(|s| s.path().join("inventory.img").exists())
        {
            let set = ImageSet::read(&s.path()).unwrap();
            for (name, bytes) in &set.images {
                if let Some(d) = decode(name, bytes) {
                    assert_eq!(&encode(&d), bytes, "{}/{name}", set.name());
                    checked += 1;
                }
            }
        }
        assert!(checked > 20, "only {checked} images decoded");
    }

    #[test]
    fn locates_image_and_numbered_object_only() {
        assert!(locates(
            "files.img: unix socket 6 (pid 72000 fd 5) is connected"
        ));
        assert!(locates("mm-7.img: VMA 0x10000-0x20000 overlaps"));
        assert!(!locates("files.img: no such thing"));
        assert!(!locates("unix socket 6 is not supported"));
        assert!(!locates("pstree.img: the pid list"));
    }

    #[test]
    fn mutate_same_choices_same_mutation() {
        let dir = crate::criu_images().join("tree");
        if !dir.join("pstree.img").exists() {
            crate::skip("mutate_same_choices_same_mutation", "no CRIU reference set");
            return;
        }
        let set = ImageSet::read(&dir).unwrap();
        for seed in 0..50 {
            let a = set.mutate(&mut Counter(seed));
            let b = set.mutate(&mut Counter(seed));
            assert_eq!(a.what, b.what);
            assert_eq!(a.changes, b.changes);
            assert!(!a.changes.is_empty(), "{a}");
        }
    }
}
