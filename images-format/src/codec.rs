//! Whole images: which message each magic holds, the raw payloads some entries
//! carry, and conversion of a whole image to and from crit's JSON form.

use protobuf::reflect::{MessageDescriptor, ReflectValueRef};
use protobuf::{Message, MessageDyn, MessageFull};
use serde_json::{json, Map, Value};

use crate::error::{ImageError, Result};
use crate::frame::{self, EntryCursor};
use crate::json::{message_from_json, message_to_json, JsonError};
use crate::magic::{self, Magic};
use crate::registry;
use crate::textcodec::{base64_decode, base64_encode};

/// The raw data that follows an entry's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// Nothing follows.
    None,
    /// As many bytes as the named integer field says (pipe/fifo data: `bytes`,
    /// socket queues: `length`), shown as base64.
    Sized(&'static str),
    /// TCP queues: `inq_len` then `outq_len` bytes, shown as `{"inq", "outq"}`.
    TcpStream,
    /// BPF map data: `keys_bytes + values_bytes`.
    BpfmapData,
    /// SysV shared memory: `size` bytes padded to 4.
    IpcShm,
    /// SysV semaphores: `nsems` u16 values padded to 8 bytes, shown as a list.
    IpcSem,
    /// SysV message queue: `qnum` framed `ipc_msg` entries, each followed by
    /// `msize` bytes padded to 8, shown as `[msg, data, msg, data, ...]`.
    IpcMsg,
}

/// How the entries of an image are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Every entry is one message of this type, with an optional payload.
    Entries {
        /// CRIU's message name.
        message: &'static str,
        /// What follows each message.
        payload: Payload,
    },
    /// `pagemap_head` then `pagemap_entry` messages.
    Pagemap,
    /// `ghost_file_entry`, then either `ghost_chunk_entry` + data pairs (when
    /// `chunks` is set) or the file contents up to the end.
    GhostFile,
}

/// The layout of images with the magic named `magic` (crit's names).
pub fn layout(magic: &str) -> Option<Layout> {
    use Payload as P;
    let (message, payload) = match magic {
        "PAGEMAP" => return Some(Layout::Pagemap),
        "GHOST_FILE" => return Some(Layout::GhostFile),
        "INVENTORY" => ("inventory_entry", P::None),
        "CORE" => ("core_entry", P::None),
        "IDS" => ("task_kobj_ids_entry", P::None),
        "CREDS" => ("creds_entry", P::None),
        "UTSNS" => ("utsns_entry", P::None),
        "TIMENS" => ("timens_entry", P::None),
        "PIDNS" => ("pidns_entry", P::None),
        "IPC_VAR" => ("ipc_var_entry", P::None),
        "FS" => ("fs_entry", P::None),
        "MM" => ("mm_entry", P::None),
        "CGROUP" => ("cgroup_entry", P::None),
        "TCP_STREAM" => ("tcp_stream_entry", P::TcpStream),
        "STATS" => ("stats_entry", P::None),
        "PSTREE" => ("pstree_entry", P::None),
        "REG_FILES" => ("reg_file_entry", P::None),
        "NS_FILES" => ("ns_file_entry", P::None),
        "EVENTFD_FILE" => ("eventfd_file_entry", P::None),
        "EVENTPOLL_FILE" => ("eventpoll_file_entry", P::None),
        "EVENTPOLL_TFD" => ("eventpoll_tfd_entry", P::None),
        "SIGNALFD" => ("signalfd_entry", P::None),
        "TIMERFD" => ("timerfd_entry", P::None),
        "INOTIFY_FILE" => ("inotify_file_entry", P::None),
        "INOTIFY_WD" => ("inotify_wd_entry", P::None),
        "FANOTIFY_FILE" => ("fanotify_file_entry", P::None),
        "FANOTIFY_MARK" => ("fanotify_mark_entry", P::None),
        "VMAS" => ("vma_entry", P::None),
        "PIPES" => ("pipe_entry", P::None),
        "FIFO" => ("fifo_entry", P::None),
        "SIGACT" => ("sa_entry", P::None),
        "NETLINK_SK" => ("netlink_sk_entry", P::None),
        "REMAP_FPATH" => ("remap_file_path_entry", P::None),
        "MNTS" => ("mnt_entry", P::None),
        "TTY_FILES" => ("tty_file_entry", P::None),
        "TTY_INFO" => ("tty_info_entry", P::None),
        "TTY_DATA" => ("tty_data_entry", P::None),
        "RLIMIT" => ("rlimit_entry", P::None),
        "TUNFILE" => ("tunfile_entry", P::None),
        "EXT_FILES" => ("ext_file_entry", P::None),
        "IRMAP_CACHE" => ("irmap_cache_entry", P::None),
        "FILE_LOCKS" => ("file_lock_entry", P::None),
        "FDINFO" => ("fdinfo_entry", P::None),
        "UNIXSK" => ("unix_sk_entry", P::None),
        "INETSK" => ("inet_sk_entry", P::None),
        "PACKETSK" => ("packet_sock_entry", P::None),
        "ITIMERS" => ("itimer_entry", P::None),
        "POSIX_TIMERS" => ("posix_timer_entry", P::None),
        "NETDEV" => ("net_device_entry", P::None),
        "PIPES_DATA" => ("pipe_data_entry", P::Sized("bytes")),
        "FIFO_DATA" => ("pipe_data_entry", P::Sized("bytes")),
        "SK_QUEUES" => ("sk_packet_entry", P::Sized("length")),
        "IPCNS_SHM" => ("ipc_shm_entry", P::IpcShm),
        "IPCNS_SEM" => ("ipc_sem_entry", P::IpcSem),
        "IPCNS_MSG" => ("ipc_msg_entry", P::IpcMsg),
        "NETNS" => ("netns_entry", P::None),
        "USERNS" => ("userns_entry", P::None),
        "SECCOMP" => ("seccomp_entry", P::None),
        "AUTOFS" => ("autofs_entry", P::None),
        "FILES" => ("file_entry", P::None),
        "CPUINFO" => ("cpuinfo_entry", P::None),
        "MEMFD_INODE" => ("memfd_inode_entry", P::None),
        "BPFMAP_FILE" => ("bpfmap_file_entry", P::None),
        "BPFMAP_DATA" => ("bpfmap_data_entry", P::BpfmapData),
        "APPARMOR" => ("apparmor_entry", P::None),
        "BINFMT_MISC" => ("binfmt_misc_entry", P::None),
        _ => return None,
    };
    Some(Layout::Entries { message, payload })
}

fn descriptor(image: &str, magic: &'static Magic, name: &str) -> Result<MessageDescriptor> {
    registry::message(name).ok_or(ImageError::NoHandler {
        image: image.to_string(),
        magic: magic.name,
    })
}

/// Options of [`decode_image`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DecodeOptions {
    /// crit's `--pretty`: hex, flags, devices and addresses in readable form.
    pub pretty: bool,
    /// crit's `--nopl`: show payload sizes instead of payloads.
    pub no_payload: bool,
}

fn decode_msg(
    cur: &EntryCursor<'_>,
    md: &MessageDescriptor,
    e: &frame::RawEntry<'_>,
) -> Result<Box<dyn MessageDyn>> {
    crate::wire::check(md, e.message).map_err(|source| ImageError::Wire {
        image: cur.image().to_string(),
        entry: e.index,
        offset: e.offset,
        message: md.name().to_string(),
        source,
    })?;
    md.parse_from_bytes(e.message)
        .map_err(|source| ImageError::Decode {
            image: cur.image().to_string(),
            entry: e.index,
            offset: e.offset,
            message: md.name().to_string(),
            source,
        })
}

/// Reads a boolean field of a message (false when unset).
fn bool_field(msg: &dyn MessageDyn, name: &str) -> bool {
    msg.descriptor_dyn().field_by_name(name).is_some_and(|f| {
        matches!(
            f.get_singular_field_or_default(msg),
            ReflectValueRef::Bool(true)
        )
    })
}

/// Reads an unsigned integer field of a message (0 when unset).
fn uint_field(msg: &dyn MessageDyn, name: &str) -> u64 {
    let Some(f) = msg.descriptor_dyn().field_by_name(name) else {
        return 0;
    };
    match f.get_singular_field_or_default(msg) {
        ReflectValueRef::U32(x) => u64::from(x),
        ReflectValueRef::U64(x) => x,
        ReflectValueRef::I32(x) => x.max(0) as u64,
        ReflectValueRef::I64(x) => x.max(0) as u64,
        _ => 0,
    }
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

fn human_size(n: u64) -> String {
    let mut v = n as f64;
    for unit in ["", "K", "M", "G", "T", "P", "E", "Z"] {
        if v < 1024.0 {
            return if v.fract() == 0.0 {
                format!("{v:.0}{unit}B")
            } else {
                format!("{v:.1}{unit}B")
            };
        }
        v /= 1024.0;
    }
    format!("{v:.1}YB")
}

/// Decodes a whole image into crit's JSON form: `{"magic": .., "entries": [..]}`.
pub fn decode_image(image: &str, bytes: &[u8], opts: DecodeOptions) -> Result<Value> {
    let (magic, start) = match frame::parse_header(image, bytes) {
        Ok(x) => x,
        Err(e) => {
            let file = std::path::Path::new(image)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default();
            if let Some(kind) = magic::raw_image_kind(&file) {
                return Err(ImageError::RawImage {
                    image: image.to_string(),
                    what: file,
                    kind,
                });
            }
            return Err(e);
        }
    };
    let layout = layout(magic.name).ok_or(ImageError::NoHandler {
        image: image.to_string(),
        magic: magic.name,
    })?;
    let mut cur = EntryCursor::new(image, bytes, start);
    let mut entries = Vec::new();
    match layout {
        Layout::Pagemap => {
            let head = descriptor(image, magic, "pagemap_head")?;
            let ent = descriptor(image, magic, "pagemap_entry")?;
            while let Some(e) = cur.next_entry()? {
                let md = if e.index == 0 { &head } else { &ent };
                entries.push(message_to_json(&*decode_msg(&cur, md, &e)?, opts.pretty));
            }
        }
        Layout::GhostFile => {
            let gf = descriptor(image, magic, "ghost_file_entry")?;
            let gc = descriptor(image, magic, "ghost_chunk_entry")?;
            let Some(e) = cur.next_entry()? else {
                return Err(ImageError::Invalid {
                    image: image.to_string(),
                    entry: 0,
                    offset: start,
                    what: "ghost file image without a ghost_file_entry".into(),
                });
            };
            let head = decode_msg(&cur, &gf, &e)?;
            let mut head_json = message_to_json(&*head, opts.pretty);
            if bool_field(&*head, "chunks") {
                entries.push(head_json);
                while let Some(e) = cur.next_entry()? {
                    let chunk = decode_msg(&cur, &gc, &e)?;
                    let mut cj = message_to_json(&*chunk, opts.pretty);
                    let len = uint_field(&*chunk, "len");
                    let data = cur.take_payload(len)?;
                    cj["extra"] = payload_json(data, opts);
                    entries.push(cj);
                }
            } else {
                let data = cur.take_rest();
                head_json["extra"] = payload_json(data, opts);
                entries.push(head_json);
            }
        }
        Layout::Entries { message, payload } => {
            let md = descriptor(image, magic, message)?;
            while let Some(e) = cur.next_entry()? {
                let msg = decode_msg(&cur, &md, &e)?;
                let mut j = message_to_json(&*msg, opts.pretty);
                if payload != Payload::None {
                    let extra = read_payload(&mut cur, magic, payload, &*msg, &e, opts)?;
                    if !extra.is_null() {
                        j["extra"] = extra;
                    }
                }
                entries.push(j);
            }
        }
    }
    Ok(json!({ "magic": magic.name, "entries": entries }))
}

fn payload_json(data: &[u8], opts: DecodeOptions) -> Value {
    if opts.no_payload {
        Value::String(format!("... <{}>", human_size(data.len() as u64)))
    } else {
        Value::String(base64_encode(data))
    }
}

fn read_payload(
    cur: &mut EntryCursor<'_>,
    magic: &'static Magic,
    payload: Payload,
    msg: &dyn MessageDyn,
    e: &frame::RawEntry<'_>,
    opts: DecodeOptions,
) -> Result<Value> {
    let image = cur.image().to_string();
    Ok(match payload {
        Payload::None => Value::Null,
        Payload::Sized(field) => payload_json(cur.take_payload(uint_field(msg, field))?, opts),
        Payload::BpfmapData => {
            let n = uint_field(msg, "keys_bytes") + uint_field(msg, "values_bytes");
            payload_json(cur.take_payload(n)?, opts)
        }
        Payload::TcpStream => {
            let inq = cur.take_payload(uint_field(msg, "inq_len"))?;
            let outq = cur.take_payload(uint_field(msg, "outq_len"))?;
            if opts.no_payload {
                Value::String(format!(
                    "... <{}>",
                    human_size((inq.len() + outq.len()) as u64)
                ))
            } else {
                json!({ "inq": base64_encode(inq), "outq": base64_encode(outq) })
            }
        }
        // CRIU 4.2 keeps a segment's contents in pagemap-shmem images when it says
        // `in_pagemaps`: then no bytes follow the entry.
        Payload::IpcShm if bool_field(msg, "in_pagemaps") => Value::Null,
        Payload::IpcShm => {
            let size = uint_field(msg, "size");
            let data = cur.take_payload(size)?;
            cur.take_payload(round_up(size, 4) - size)?;
            payload_json(data, opts)
        }
        Payload::IpcSem => {
            let n = uint_field(msg, "nsems");
            let size = n.saturating_mul(2);
            let data = cur.take_payload(size)?;
            cur.take_payload(round_up(size, 8) - size)?;
            if opts.no_payload {
                Value::String(format!("... <{}>", human_size(size)))
            } else {
                Value::Array(
                    data.chunks_exact(2)
                        .map(|c| json!(u16::from_le_bytes([c[0], c[1]])))
                        .collect(),
                )
            }
        }
        Payload::IpcMsg => {
            let md = descriptor(&image, magic, "ipc_msg")?;
            let qnum = uint_field(msg, "qnum");
            let mut out = Vec::new();
            let mut total = 0u64;
            for _ in 0..qnum {
                let Some(m) = cur.next_entry()? else { break };
                let im = decode_msg(cur, &md, &m)?;
                let msize = uint_field(&*im, "msize");
                let data = cur.take_payload(msize)?;
                cur.take_payload(round_up(msize, 8) - msize)?;
                total += m.message.len() as u64 + msize;
                out.push(message_to_json(&*im, false));
                out.push(Value::String(base64_encode(data)));
            }
            let _ = e;
            if opts.no_payload {
                Value::String(format!("... <{}>", human_size(total)))
            } else {
                Value::Array(out)
            }
        }
    })
}

fn json_err(image: &str, entry: usize, e: JsonError) -> ImageError {
    ImageError::Json {
        image: image.to_string(),
        path: format!(
            "entries[{entry}]{}{}",
            if e.path.is_empty() { "" } else { "." },
            e.path
        ),
        what: e.what,
    }
}

fn bad_json(image: &str, path: &str, what: &str) -> ImageError {
    ImageError::Json {
        image: image.to_string(),
        path: path.to_string(),
        what: what.to_string(),
    }
}

fn encode_msg(
    image: &str,
    entry: usize,
    md: &MessageDescriptor,
    v: &Value,
    out: &mut Vec<u8>,
) -> Result<Box<dyn MessageDyn>> {
    let msg = message_from_json(md, v, &["extra"]).map_err(|e| json_err(image, entry, e))?;
    let bytes = msg
        .write_to_bytes_dyn()
        .map_err(|source| ImageError::Encode {
            image: image.to_string(),
            entry,
            message: md.name().to_string(),
            source,
        })?;
    frame::write_entry(out, &bytes);
    Ok(msg)
}

fn extra_bytes(image: &str, entry: usize, v: &Value) -> Result<Vec<u8>> {
    match v.get("extra") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => base64_decode(s)
            .ok_or_else(|| bad_json(image, &format!("entries[{entry}].extra"), "bad base64")),
        Some(_) => Err(bad_json(
            image,
            &format!("entries[{entry}].extra"),
            "expected a base64 string",
        )),
    }
}

/// Encodes crit's JSON form of an image back into the image bytes.
pub fn encode_image(image: &str, value: &Value) -> Result<Vec<u8>> {
    let name = value
        .get("magic")
        .and_then(Value::as_str)
        .ok_or_else(|| bad_json(image, "magic", "missing or not a string"))?;
    let magic = magic::by_name(name)
        .ok_or_else(|| bad_json(image, "magic", &format!("unknown magic {name:?}")))?;
    let entries = value
        .get("entries")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_json(image, "entries", "missing or not an array"))?;
    let layout = layout(magic.name).ok_or(ImageError::NoHandler {
        image: image.to_string(),
        magic: magic.name,
    })?;
    let mut out = Vec::new();
    frame::write_header(&mut out, magic);
    match layout {
        Layout::Pagemap => {
            let head = descriptor(image, magic, "pagemap_head")?;
            let ent = descriptor(image, magic, "pagemap_entry")?;
            for (i, v) in entries.iter().enumerate() {
                encode_msg(image, i, if i == 0 { &head } else { &ent }, v, &mut out)?;
            }
        }
        Layout::GhostFile => {
            let gf = descriptor(image, magic, "ghost_file_entry")?;
            let gc = descriptor(image, magic, "ghost_chunk_entry")?;
            let Some(first) = entries.first() else {
                return Err(bad_json(
                    image,
                    "entries",
                    "a ghost file image needs a ghost_file_entry",
                ));
            };
            let head = encode_msg(image, 0, &gf, first, &mut out)?;
            if bool_field(&*head, "chunks") {
                for (i, v) in entries.iter().enumerate().skip(1) {
                    encode_msg(image, i, &gc, v, &mut out)?;
                    out.extend_from_slice(&extra_bytes(image, i, v)?);
                }
            } else {
                out.extend_from_slice(&extra_bytes(image, 0, first)?);
            }
        }
        Layout::Entries { message, payload } => {
            let md = descriptor(image, magic, message)?;
            for (i, v) in entries.iter().enumerate() {
                let msg = encode_msg(image, i, &md, v, &mut out)?;
                write_payload(image, magic, i, payload, &*msg, v, &mut out)?;
            }
        }
    }
    Ok(out)
}

fn write_payload(
    image: &str,
    magic: &'static Magic,
    i: usize,
    payload: Payload,
    msg: &dyn MessageDyn,
    v: &Value,
    out: &mut Vec<u8>,
) -> Result<()> {
    let extra_path = format!("entries[{i}].extra");
    let b64 = |v: Option<&Value>, what: &str| -> Result<Vec<u8>> {
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => {
                base64_decode(s).ok_or_else(|| bad_json(image, what, "bad base64"))
            }
            Some(_) => Err(bad_json(image, what, "expected a base64 string")),
        }
    };
    match payload {
        Payload::None => {}
        Payload::Sized(_) | Payload::BpfmapData => {
            out.extend_from_slice(&b64(v.get("extra"), &extra_path)?)
        }
        Payload::TcpStream => {
            if let Some(extra) = v.get("extra").filter(|e| !e.is_null()) {
                out.extend_from_slice(&b64(extra.get("inq"), &format!("{extra_path}.inq"))?);
                out.extend_from_slice(&b64(extra.get("outq"), &format!("{extra_path}.outq"))?);
            }
        }
        Payload::IpcShm if bool_field(msg, "in_pagemaps") => {}
        Payload::IpcShm => {
            let size = uint_field(msg, "size") as usize;
            let mut data = b64(v.get("extra"), &extra_path)?;
            data.resize(size, 0);
            data.resize(round_up(size as u64, 4) as usize, 0);
            out.extend_from_slice(&data);
        }
        Payload::IpcSem => {
            let n = uint_field(msg, "nsems");
            let list = v
                .get("extra")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if list.len() as u64 != n {
                return Err(bad_json(
                    image,
                    &extra_path,
                    "number of semaphores does not match nsems",
                ));
            }
            let mut data = Vec::new();
            for s in &list {
                let x = s
                    .as_u64()
                    .and_then(|x| u16::try_from(x).ok())
                    .ok_or_else(|| bad_json(image, &extra_path, "semaphore value is not a u16"))?;
                data.extend_from_slice(&x.to_le_bytes());
            }
            data.resize(round_up(data.len() as u64, 8) as usize, 0);
            out.extend_from_slice(&data);
        }
        Payload::IpcMsg => {
            let md = descriptor(image, magic, "ipc_msg")?;
            let list = v
                .get("extra")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for pair in list.chunks(2) {
                let m = message_from_json(&md, &pair[0], &[]).map_err(|e| json_err(image, i, e))?;
                let bytes = m
                    .write_to_bytes_dyn()
                    .map_err(|source| ImageError::Encode {
                        image: image.to_string(),
                        entry: i,
                        message: "ipc_msg".into(),
                        source,
                    })?;
                frame::write_entry(out, &bytes);
                let msize = uint_field(&*m, "msize") as usize;
                let mut data = b64(pair.get(1), &extra_path)?;
                data.resize(msize, 0);
                data.resize(round_up(msize as u64, 8) as usize, 0);
                out.extend_from_slice(&data);
            }
        }
    }
    Ok(())
}

/// A typed reader over one image, for the dump and restore code.
pub struct ImageReader<'a> {
    magic: &'static Magic,
    cursor: EntryCursor<'a>,
}

impl<'a> ImageReader<'a> {
    /// Checks the header is `expected` (crit's name) and positions on the first entry.
    pub fn new(image: &'a str, bytes: &'a [u8], expected: &'static str) -> Result<Self> {
        let (magic, start) = frame::parse_header(image, bytes)?;
        if magic.name != expected {
            return Err(ImageError::WrongImage {
                image: image.to_string(),
                expected,
                found: magic.name,
            });
        }
        Ok(ImageReader {
            magic,
            cursor: EntryCursor::new(image, bytes, start),
        })
    }

    /// The image's magic.
    pub fn magic(&self) -> &'static Magic {
        self.magic
    }

    /// Decodes the next entry as `M`, or `None` at the end.
    // Not an Iterator: each call picks the message type of the entry it reads.
    #[allow(clippy::should_implement_trait)]
    pub fn next<M: MessageFull>(&mut self) -> Result<Option<M>> {
        let Some(e) = self.cursor.next_entry()? else {
            return Ok(None);
        };
        // The generated schema, not M::descriptor(): building protobuf's reflection
        // descriptors costs milliseconds per run.
        let checked = match crate::wire::schema_index(M::NAME) {
            Some(i) => crate::wire::check_indexed(i, e.message),
            None => crate::wire::check(&M::descriptor(), e.message),
        };
        checked.map_err(|source| ImageError::Wire {
            image: self.cursor.image().to_string(),
            entry: e.index,
            offset: e.offset,
            message: M::NAME.to_string(),
            source,
        })?;
        M::parse_from_bytes(e.message)
            .map(Some)
            .map_err(|source| ImageError::Decode {
                image: self.cursor.image().to_string(),
                entry: e.index,
                offset: e.offset,
                message: std::any::type_name::<M>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("")
                    .to_string(),
                source,
            })
    }

    /// Decodes every remaining entry as `M`.
    pub fn all<M: MessageFull>(&mut self) -> Result<Vec<M>> {
        let mut v = Vec::new();
        while let Some(m) = self.next()? {
            v.push(m);
        }
        Ok(v)
    }

    /// Takes the `size` payload bytes after the last entry.
    pub fn payload(&mut self, size: u64) -> Result<&'a [u8]> {
        self.cursor.take_payload(size)
    }

    /// Takes every byte after the last entry (a non-chunked ghost file's contents).
    pub fn rest(&mut self) -> &'a [u8] {
        self.cursor.take_rest()
    }
}

/// Builds an image in memory, for the dump code.
pub struct ImageWriter {
    name: String,
    buf: Vec<u8>,
    entries: usize,
}

impl ImageWriter {
    /// Starts an image with the magic crit calls `magic`.
    ///
    /// # Panics
    /// If `magic` is not in the table: that is a bug in the caller.
    pub fn new(name: impl Into<String>, magic: &'static str) -> Self {
        let m = magic::by_name(magic).unwrap_or_else(|| panic!("unknown magic {magic}"));
        let mut buf = Vec::new();
        frame::write_header(&mut buf, m);
        ImageWriter {
            name: name.into(),
            buf,
            entries: 0,
        }
    }

    /// Appends one entry.
    pub fn push<M: Message>(&mut self, msg: &M) -> Result<&mut Self> {
        let bytes = msg.write_to_bytes().map_err(|source| ImageError::Encode {
            image: self.name.clone(),
            entry: self.entries,
            message: std::any::type_name::<M>()
                .rsplit("::")
                .next()
                .unwrap_or("")
                .to_string(),
            source,
        })?;
        frame::write_entry(&mut self.buf, &bytes);
        self.entries += 1;
        Ok(self)
    }

    /// Appends raw payload bytes after the last entry.
    pub fn payload(&mut self, data: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(data);
        self
    }

    /// The image's file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The finished image.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads an image file into memory, naming it in errors.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| ImageError::Io {
        image: path.display().to_string(),
        source,
    })
}

/// Every layout's message names, for tests and fuzzing.
pub fn all_layout_messages() -> Vec<&'static str> {
    let mut v = vec![
        "pagemap_head",
        "pagemap_entry",
        "ghost_file_entry",
        "ghost_chunk_entry",
        "ipc_msg",
    ];
    for m in magic::ALL {
        if let Some(Layout::Entries { message, .. }) = layout(m.name) {
            v.push(message);
        }
    }
    v
}

#[allow(dead_code)]
fn _assert_map_type(_: Map<String, Value>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipc_shm_in_pagemaps_has_no_payload_and_round_trips() {
        // Arrange: a segment whose contents are in pagemap-shmem images (CRIU 4.2, crs).
        let mut e = crate::pb::ipc_shm::Ipc_shm_entry::new();
        e.desc.mut_or_insert_default().set_key(0);
        e.desc.mut_or_insert_default().set_uid(0);
        e.desc.mut_or_insert_default().set_gid(0);
        e.desc.mut_or_insert_default().set_cuid(0);
        e.desc.mut_or_insert_default().set_cgid(0);
        e.desc.mut_or_insert_default().set_mode(0o600);
        e.desc.mut_or_insert_default().set_id(3);
        e.set_size(4096);
        e.set_in_pagemaps(true);
        let mut w = ImageWriter::new("ipcns-shm-1.img", "IPCNS_SHM");
        w.push(&e).unwrap();
        let bytes = w.into_bytes();
        // Act
        let json = decode_image("ipcns-shm-1.img", &bytes, DecodeOptions::default()).unwrap();
        let back = encode_image("ipcns-shm-1.img", &json).unwrap();
        // Assert
        assert!(json["entries"][0].get("extra").is_none(), "{json}");
        assert_eq!(back, bytes);
    }

    #[test]
    fn every_layout_message_is_defined() {
        // Each magic crit decodes must have its message in our .proto files,
        // including images no reference set holds (netns, sockets, ipc, ...).
        let missing: Vec<&str> = all_layout_messages()
            .into_iter()
            .filter(|m| registry::message(m).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "messages without a definition: {missing:?}"
        );
    }

    #[test]
    fn every_magic_has_a_layout() {
        let missing: Vec<&str> = magic::ALL
            .iter()
            .filter(|m| layout(m.name).is_none())
            .map(|m| m.name)
            .collect();
        // These magics exist in CRIU's table but crit has no decoder for them either.
        let known_without: &[&str] = &["SIGNAL", "BINFMT_MISC"];
        let unexpected: Vec<&&str> = missing
            .iter()
            .filter(|m| !known_without.contains(m))
            .collect();
        assert!(
            unexpected.is_empty(),
            "magics without a layout: {unexpected:?}"
        );
    }
}
