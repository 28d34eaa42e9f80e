//! Files of the restored task: regular files, deleted files (ghost files, recreated from
//! their saved contents), pipes with the bytes queued in them. Loading and checking their
//! images, and the plan of fds the new task sets up for itself before crs takes it over.
//!
//! Ghost files are recreated by crs as `<path>.cr.<id>.ghost` (CRIU's name, so the path of
//! the deleted file may have been reused meanwhile), opened by the new task like any file,
//! and unlinked once the task has opened them: the task sees a deleted file with the same
//! contents, mode, owner and position. Pipes are created by the new task itself, filled
//! with their queued bytes, sized, and each end placed at its fds with its flags.
//!
//! A description several processes hold (the same file id in their fdinfo; for a pipe,
//! the same pipe id) is created once, by their nearest common ancestor before it creates
//! its children, and reaches them by inheritance (see [`Shared`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::fs::{File, FileTimes, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::ghost_file::{Ghost_chunk_entry, Ghost_file_entry};
use crs_images::pb::pipe::Pipe_entry;
use crs_images::pb::pipe_data::Pipe_data_entry;
use crs_images::pb::remap_file_path::{Remap_file_path_entry, Remap_type};
use crs_images::pb::time::Timeval;
use crs_sys::restore::{
    ChildPlan, InheritedFd, PlannedFile, PlannedPipe, SharedCreates, SharedFile, SharedPipe,
};
use tracing::{debug, warn};

use crate::error::{invalid, unsupported};
use crate::images::{Images, Tree};
use crate::RestoreError;

/// Open flags that must not be replayed.
const STRIP: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC;
/// The flags to open a regular file with, from its dumped status flags: without the
/// creation flags, and without O_TMPFILE (which carries O_DIRECTORY) for a file made with
/// `open(dir, O_TMPFILE)`: it comes back as its ghost file, which is no directory.
fn open_flags(dumped: u32) -> i32 {
    const TMPFILE_BIT: i32 = libc::O_TMPFILE & !libc::O_DIRECTORY;
    let mut f = dumped as i32 & !STRIP;
    if f & TMPFILE_BIT != 0 {
        f &= !libc::O_TMPFILE;
    }
    f | libc::O_LARGEFILE
}

/// Old CRIU marked a ghost remap with this bit of `remap_id` instead of `remap_type`.
const REMAP_GHOST: u32 = 1 << 31;

/// A deleted file's saved contents (ghost-file-N.img).
#[derive(Debug)]
pub(crate) struct Ghost {
    pub entry: Ghost_file_entry,
    /// File size.
    pub size: u64,
    /// (offset, bytes) runs of data; the rest of the file is a hole.
    pub chunks: Vec<(u64, Vec<u8>)>,
}

/// The bytes queued in one pipe (pipes-data.img).
#[derive(Debug)]
pub(crate) struct PipeData {
    pub size: Option<u32>,
    pub data: Vec<u8>,
}

/// Everything the file images add to files.img: remaps, ghost files, pipe data.
#[derive(Debug, Default)]
pub(crate) struct FileImages {
    /// File id (of a deleted file) -> ghost file id.
    pub ghost_of: BTreeMap<u32, u32>,
    pub ghosts: BTreeMap<u32, Ghost>,
    /// Pipe id (inode) -> queued data.
    pub pipe_data: BTreeMap<u32, PipeData>,
    /// FIFO id (inode) -> queued data (fifo-data.img).
    pub fifo_data: BTreeMap<u32, PipeData>,
    /// Terminals: tty-info.img, tty-data.img, how each TTY file is restored.
    pub ttys: crate::tty::Terminals,
    /// Established TCP connection (file id) -> tcp-stream-INO.img.
    pub tcp_streams: BTreeMap<u32, crate::inetsk::Stream>,
}

/// Reads and checks remap-fpath.img, the ghost files it names, pipes-data.img (each
/// optional: CRIU does not write empty images) and each connection's tcp-stream-INO.img. `files` is files.img by id.
pub(crate) fn load(
    dir: &Path,
    files: &BTreeMap<u32, File_entry>,
    tcp_close: bool,
) -> Result<FileImages, RestoreError> {
    let mut out = FileImages {
        ttys: crate::tty::load(dir, files)?,
        // Dumped with --tcp-close, a connection has no tcp-stream image.
        tcp_streams: if tcp_close {
            BTreeMap::new()
        } else {
            crate::inetsk::load_streams(dir, files)?
        },
        ..FileImages::default()
    };
    let remap_path = dir.join("remap-fpath.img");
    if remap_path.exists() {
        let bytes = read_file(&remap_path)?;
        let label = remap_path.display().to_string();
        let remaps: Vec<Remap_file_path_entry> =
            ImageReader::new(&label, &bytes, "REMAP_FPATH")?.all()?;
        for r in remaps {
            let (kind, gid) = if r.has_remap_type() {
                (r.remap_type(), r.remap_id())
            } else if r.remap_id() & REMAP_GHOST != 0 {
                (Remap_type::GHOST, r.remap_id() & !REMAP_GHOST)
            } else {
                (Remap_type::LINKED, r.remap_id())
            };
            if kind != Remap_type::GHOST {
                return Err(unsupported(format!(
                    "remap-fpath.img: {kind:?} remap of file id {}",
                    r.orig_id()
                )));
            }
            let reg = files
                .get(&r.orig_id())
                .ok_or_else(|| {
                    invalid(
                        "remap-fpath.img",
                        format!("remap of file id {}, absent from files.img", r.orig_id()),
                    )
                })?
                .reg
                .as_ref()
                .ok_or_else(|| {
                    invalid(
                        "remap-fpath.img",
                        format!("remap of file id {}, not a regular file", r.orig_id()),
                    )
                })?;
            if out.ghost_of.insert(r.orig_id(), gid).is_some() {
                return Err(invalid(
                    "remap-fpath.img",
                    format!("file id {} remapped twice", r.orig_id()),
                ));
            }
            let ghost = match out.ghosts.entry(gid) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => {
                    let image = format!("ghost-file-{gid:x}.img");
                    if !dir.join(&image).exists() {
                        return Err(invalid(
                            "remap-fpath.img",
                            format!(
                                "file id {} is remapped to ghost file {gid:#x}: no {image}",
                                r.orig_id()
                            ),
                        ));
                    }
                    e.insert(load_ghost(dir, gid)?)
                }
            };
            if reg.has_size() && reg.size() != ghost.size {
                return Err(invalid(
                    &format!("ghost-file-{gid:x}.img"),
                    format!(
                        "{} bytes, files.img recorded {} for {}",
                        ghost.size,
                        reg.size(),
                        reg.name()
                    ),
                ));
            }
        }
    }
    out.pipe_data = load_pipe_data(dir, "pipes-data.img", "PIPES_DATA")?;
    out.fifo_data = load_pipe_data(dir, "fifo-data.img", "FIFO_DATA")?;
    Ok(out)
}

/// Reads pipes-data.img or fifo-data.img (`name`, of magic `magic`; absent: no data): the
/// queued bytes of each pipe by pipe id.
fn load_pipe_data(
    dir: &Path,
    name: &str,
    magic: &'static str,
) -> Result<BTreeMap<u32, PipeData>, RestoreError> {
    let mut out = BTreeMap::new();
    let pd_path = dir.join(name);
    if !pd_path.exists() {
        return Ok(out);
    }
    let bytes = read_file(&pd_path)?;
    let label = pd_path.display().to_string();
    let mut r = ImageReader::new(&label, &bytes, magic)?;
    while let Some(e) = r.next::<Pipe_data_entry>()? {
        if e.has_size() && (e.size() == 0 || e.bytes() > e.size()) {
            return Err(invalid(
                name,
                format!(
                    "pipe {}: {} bytes in a pipe of {}",
                    e.pipe_id(),
                    e.bytes(),
                    e.size()
                ),
            ));
        }
        let data = r.payload(u64::from(e.bytes()))?.to_vec();
        let pd = PipeData { size: e.size, data };
        if out.insert(e.pipe_id(), pd).is_some() {
            return Err(invalid(name, format!("pipe {} twice", e.pipe_id())));
        }
    }
    Ok(out)
}

fn load_ghost(dir: &Path, gid: u32) -> Result<Ghost, RestoreError> {
    let name = format!("ghost-file-{gid:x}.img");
    let path = dir.join(&name);
    let bytes = read_file(&path)?;
    let label = path.display().to_string();
    let mut r = ImageReader::new(&label, &bytes, "GHOST_FILE")?;
    let entry: Ghost_file_entry = r
        .next()?
        .ok_or_else(|| invalid(&name, "no ghost_file_entry"))?;
    let kind = entry.mode() & libc::S_IFMT;
    if ![libc::S_IFREG, libc::S_IFDIR, libc::S_IFIFO].contains(&kind) {
        return Err(unsupported(format!(
            "{name}: deleted files other than regular files, directories and FIFOs (mode {:o})",
            entry.mode()
        )));
    }
    for (which, t) in [("atime", &entry.atim), ("mtime", &entry.mtim)] {
        if let Some(t) = t.as_ref().filter(|t| timeval(t).is_none()) {
            return Err(invalid(
                &name,
                format!("{which} {}.{:06} is no time", t.tv_sec(), t.tv_usec()),
            ));
        }
    }
    if !entry.chunks() {
        let data = r.rest().to_vec();
        return Ok(Ghost {
            entry,
            size: data.len() as u64,
            chunks: vec![(0, data)],
        });
    }
    if !entry.has_size() {
        return Err(invalid(&name, "chunked ghost file without a size"));
    }
    let size = entry.size();
    let mut chunks = Vec::new();
    while let Some(c) = r.next::<Ghost_chunk_entry>()? {
        if c.off().checked_add(c.len()).is_none_or(|end| end > size) {
            return Err(invalid(
                &name,
                format!(
                    "chunk of {} bytes at {} past the file size {size}",
                    c.len(),
                    c.off()
                ),
            ));
        }
        chunks.push((c.off(), r.payload(c.len())?.to_vec()));
    }
    Ok(Ghost {
        entry,
        size,
        chunks,
    })
}

/// The files of `tree` that `--inherit-fd fd[N]:KEY` options (`inherit`: N, KEY) name,
/// by file id, with crs's descriptor N of each: a pipe by `pipe:[ID]` (its pipe id, the
/// dumped inode: what runc's descriptors.json records), a regular file by its path (with
/// or without the leading `/`), as CRIU matches them. A key no file has is left unused.
pub(crate) fn inherited(
    tree: &Tree,
    inherit: &[(i32, String)],
) -> Result<BTreeMap<u32, i32>, RestoreError> {
    let mut out = BTreeMap::new();
    let Some(first) = tree.procs.first() else {
        return Ok(out);
    };
    for (&id, f) in first.files.iter() {
        let key = match f.type_() {
            Fd_types::PIPE => format!("pipe:[{}]", pipe_of(f)?.pipe_id()),
            Fd_types::REG => match f.reg.as_ref() {
                Some(r) => r.name().to_string(),
                None => continue,
            },
            _ => continue,
        };
        let found = inherit
            .iter()
            .find(|(_, k)| *k == key || (f.type_() == Fd_types::REG && format!("/{k}") == key));
        if let Some(&(fd, _)) = found {
            out.insert(id, fd);
        }
    }
    for (fd, key) in inherit {
        if !out.values().any(|v| v == fd) {
            tracing::warn!(fd, key, "--inherit-fd: no file of the images has this key");
        }
    }
    Ok(out)
}

/// A pipe end as files.img describes it, checked.
pub(crate) fn pipe_of(f: &File_entry) -> Result<&Pipe_entry, RestoreError> {
    let p = f
        .pipe
        .as_ref()
        .ok_or_else(|| invalid("files.img", format!("file id {} has no pipe entry", f.id())))?;
    let acc = p.flags() as i32 & libc::O_ACCMODE;
    if acc != libc::O_RDONLY && acc != libc::O_WRONLY {
        return Err(unsupported(format!(
            "files.img: pipe end {} opened read-write (flags {:#o})",
            f.id(),
            p.flags()
        )));
    }
    if p.flags() as i32 & libc::O_DIRECT != 0 {
        return Err(unsupported(format!(
            "files.img: pipe end {}: packetized pipes (O_DIRECT)",
            f.id()
        )));
    }
    Ok(p)
}

fn cstring(s: &str) -> Result<CString, RestoreError> {
    CString::new(s).map_err(|_| RestoreError::Invalid {
        image: "files.img".into(),
        what: format!("path {s:?} contains a NUL byte"),
    })
}

/// Checks that every regular file the images name and recorded a size for still has it
/// (like CRIU, a changed file is refused). Deleted files are checked against their ghost
/// image at load instead.
pub(crate) fn check_sizes(images: &Images) -> Result<(), RestoreError> {
    let mut ids: Vec<u32> = images
        .fdinfo
        .iter()
        .filter(|e| e.type_() == Fd_types::REG)
        .map(|e| e.id())
        .collect();
    ids.push(images.mm.exe_file_id());
    ids.extend(images.vmas.iter().filter_map(|v| v.file_id));
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        if images.file_images.ghost_of.contains_key(&id) {
            continue;
        }
        let reg = images.reg(id);
        if !reg.has_size() {
            continue;
        }
        let path = PathBuf::from(reg.name());
        let md = std::fs::metadata(&path).map_err(|source| RestoreError::Stat {
            path: path.clone(),
            source,
        })?;
        if md.len() != reg.size() {
            return Err(RestoreError::FileChanged {
                path,
                expected: reg.size(),
                found: md.len(),
            });
        }
    }
    Ok(())
}

/// Ghost files crs created for the new task to open; unlinked when dropped (once the task
/// has opened them, or when the restore failed before).
#[derive(Debug, Default)]
pub(crate) struct GhostFiles {
    paths: Vec<PathBuf>,
}

impl GhostFiles {
    fn has(&self, path: &Path) -> bool {
        self.paths.iter().any(|p| p == path)
    }
}

/// The path a task opens file id `id` of `images` by (relative to its root): its own, or
/// its ghost file's when it was deleted (`<path>.cr.<ghost id>.ghost`, CRIU's name).
pub(crate) fn open_path(images: &Images, id: u32) -> String {
    let reg = images.reg(id);
    match images.file_images.ghost_of.get(&id) {
        Some(&gid) => format!("{}.cr.{gid:x}.ghost", reg.name()),
        None => reg.name().to_string(),
    }
}

/// The ghost files of deleted files the tasks map or run (a mapping of a deleted file, a
/// deleted executable) or open once seized (a deleted FIFO) that no fd plan created: made
/// now, to live (with the others in `made`) until every process is built, since mappings,
/// the exe link and FIFOs are set up then.
pub(crate) fn mapped_ghosts(tree: &Tree, made: &[GhostFiles]) -> Result<GhostFiles, RestoreError> {
    let mut out = GhostFiles::default();
    for images in &tree.procs {
        let fi = &images.file_images;
        let root = images.reg(images.fs.root_id()).name();
        // A FIFO's path is its regular-file entry's (`regf_id`).
        let fifos = images
            .fdinfo
            .iter()
            .filter(|e| e.type_() == Fd_types::FIFO)
            .filter_map(|e| images.files.get(&e.id())?.fifo.as_ref()?.regf_id);
        let ids = images
            .vmas
            .iter()
            .filter_map(|v| v.file_id)
            .chain([images.mm.exe_file_id()])
            .chain(fifos);
        for id in ids {
            let Some(&gid) = fi.ghost_of.get(&id) else {
                continue;
            };
            let p = open_path(images, id);
            let at = if root == "/" {
                PathBuf::from(&p)
            } else {
                Path::new(root).join(p.trim_start_matches('/'))
            };
            if out.has(&at) || made.iter().any(|g| g.has(&at)) {
                continue;
            }
            create_ghost(&at, &fi.ghosts[&gid], &mut out)?;
            debug!(id, ghost = gid, path = %at.display(), "ghost file created for a mapping");
        }
    }
    Ok(out)
}

impl Drop for GhostFiles {
    fn drop(&mut self) {
        // Files before directories (a ghost file may lie in a ghost directory).
        self.paths.sort_by_key(|p| p.is_dir());
        for p in self.paths.drain(..) {
            let removed = if p.is_dir() {
                std::fs::remove_dir(&p)
            } else {
                std::fs::remove_file(&p)
            };
            match removed {
                Ok(()) => crs_compel::guard::record(&crs_compel::guard::Record::FileGone {
                    path: p.clone(),
                }),
                Err(e) => warn!(path = %p.display(), error = %e, "removing a ghost file"),
            }
        }
    }
}

/// A file time from an image; None when it is no time (microseconds past a second, or
/// seconds past what `SystemTime` holds).
fn timeval(t: &Timeval) -> Option<SystemTime> {
    if t.tv_usec() >= 1_000_000 {
        return None;
    }
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(t.tv_sec()))?
        .checked_add(Duration::from_micros(t.tv_usec()))
}

/// Creates ghost file `g` at `path` (which must not exist), with its contents, mode,
/// owner and times; records it in `created` as soon as it exists.
fn create_ghost(path: &Path, g: &Ghost, created: &mut GhostFiles) -> Result<(), RestoreError> {
    let err = |source| RestoreError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mode = g.entry.mode() & 0o7777;
    crs_compel::guard::record(&crs_compel::guard::Record::File {
        path: path.to_path_buf(),
    });
    if g.entry.mode() & libc::S_IFMT == libc::S_IFIFO {
        // A deleted FIFO: a new one (its queued bytes are fifo-data.img's), its mode and
        // owner.
        nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(mode))
            .map_err(|e| err(e.into()))?;
        created.paths.push(path.to_path_buf());
        std::os::unix::fs::chown(path, Some(g.entry.uid()), Some(g.entry.gid())).map_err(err)?;
        std::fs::set_permissions(path, Permissions::from_mode(mode)).map_err(err)?;
        return Ok(());
    }
    if g.entry.mode() & libc::S_IFMT == libc::S_IFDIR {
        // A deleted directory (a cwd, an open directory): empty, its mode, owner, times.
        std::fs::DirBuilder::new()
            .mode(mode)
            .create(path)
            .map_err(err)?;
        created.paths.push(path.to_path_buf());
        std::os::unix::fs::chown(path, Some(g.entry.uid()), Some(g.entry.gid())).map_err(err)?;
        std::fs::set_permissions(path, Permissions::from_mode(mode)).map_err(err)?;
        let a = g.entry.atim.as_ref().and_then(timeval);
        let m = g.entry.mtim.as_ref().and_then(timeval);
        if let (Some(a), Some(m)) = (a, m) {
            File::open(path)
                .and_then(|d| d.set_times(FileTimes::new().set_accessed(a).set_modified(m)))
                .map_err(err)?;
        }
        return Ok(());
    }
    let f: File = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(err)?;
    created.paths.push(path.to_path_buf());
    f.set_len(g.size).map_err(err)?;
    for (off, data) in &g.chunks {
        f.write_all_at(data, *off).map_err(err)?;
    }
    std::os::unix::fs::fchown(&f, Some(g.entry.uid()), Some(g.entry.gid())).map_err(err)?;
    // After the chown, which clears set-id bits; the umask applied at creation too.
    f.set_permissions(Permissions::from_mode(mode))
        .map_err(err)?;
    let a = g.entry.atim.as_ref().and_then(timeval);
    let m = g.entry.mtim.as_ref().and_then(timeval);
    if let (Some(a), Some(m)) = (a, m) {
        f.set_times(FileTimes::new().set_accessed(a).set_modified(m))
            .map_err(err)?;
    }
    Ok(())
}

/// Regular file `id` of `images` as the task opens it (no fds yet): its path (a ghost
/// file is created on first use, at a path relative to `root`), flags and position.
fn reg_file(
    images: &Images,
    id: u32,
    root: &str,
    ghost_paths: &mut BTreeMap<u32, String>,
    ghosts: &mut GhostFiles,
) -> Result<PlannedFile, RestoreError> {
    let fi = &images.file_images;
    let reg = images.reg(id);
    let path = match fi.ghost_of.get(&id) {
        None => reg.name().to_string(),
        Some(&gid) => match ghost_paths.get(&gid) {
            Some(p) => p.clone(),
            None => {
                let under_root = |p: &str| {
                    if root == "/" {
                        PathBuf::from(p)
                    } else {
                        Path::new(root).join(p.trim_start_matches('/'))
                    }
                };
                // A deleted directory comes back at its own path while that is free, so
                // that its name (`/proc/PID/cwd`: "NAME (deleted)") is the dumped one.
                let dir = fi.ghosts[&gid].entry.mode() & libc::S_IFMT == libc::S_IFDIR;
                let p = if dir && !under_root(reg.name()).exists() {
                    reg.name().to_string()
                } else {
                    format!("{}.cr.{gid:x}.ghost", reg.name())
                };
                let at = under_root(&p);
                create_ghost(&at, &fi.ghosts[&gid], ghosts)?;
                debug!(id, ghost = gid, path = %at.display(), "ghost file created");
                ghost_paths.insert(gid, p.clone());
                p
            }
        },
    };
    Ok(PlannedFile {
        path: cstring(&path)?,
        flags: open_flags(reg.flags()),
        // An O_PATH fd has no position (lseek on it is EBADF).
        pos: if reg.flags() as i32 & libc::O_PATH != 0 {
            0
        } else {
            reg.pos()
        },
        fds: Vec::new(),
    })
}

/// Open file descriptions held by several processes of the tree (the same file id in
/// their fdinfo; for pipes, the same pipe). Each is created once, by the nearest common
/// ancestor of its holders before it creates its children, at a stash slot; every holder
/// inherits it across clone and puts it at its fds ([`InheritedFd`]), so after restore
/// they share one description (one position, one pipe).
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// File id -> its stash slot.
    pub slots: BTreeMap<u32, usize>,
    /// Files the caller passes in (`--inherit-fd`): crs hands its descriptor to every
    /// holder, no process creates them.
    pub external: BTreeSet<u32>,
    /// Pid -> what it creates for the processes below it.
    pub creates: BTreeMap<i32, SharedCreates>,
}

/// What is shared in `tree` and who creates it; ghost files of shared files are created
/// here and live as long as the returned [`GhostFiles`]. Terminals are left out: crs makes
/// the ptys, consoles and virtual terminals and hands each description to all its holders,
/// and each process opens its own description of `/dev/tty` or of crs's terminal.
pub(crate) fn shared(
    tree: &Tree,
    external: &BTreeSet<u32>,
) -> Result<(Shared, GhostFiles), RestoreError> {
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Key {
        Reg(u32),
        Pipe(u32),
    }
    let mut holders: BTreeMap<Key, BTreeSet<i32>> = BTreeMap::new();
    // Pipe id -> (read end file id, write end file id), checked across the tree.
    let mut ends: BTreeMap<u32, (Option<u32>, Option<u32>)> = BTreeMap::new();
    for p in &tree.procs {
        for e in p.fdinfo.iter().filter(|e| !external.contains(&e.id())) {
            let key = match e.type_() {
                Fd_types::REG => Key::Reg(e.id()),
                Fd_types::PIPE => {
                    let pe = pipe_of(&p.files[&e.id()])?;
                    let (r, w) = ends.entry(pe.pipe_id()).or_default();
                    let slot = if pe.flags() as i32 & libc::O_ACCMODE == libc::O_WRONLY {
                        w
                    } else {
                        r
                    };
                    match *slot {
                        Some(id) if id != e.id() => {
                            return Err(unsupported(format!(
                                "two open descriptions ({id} and {}) of one end of pipe {}",
                                e.id(),
                                pe.pipe_id()
                            )))
                        }
                        _ => *slot = Some(e.id()),
                    }
                    Key::Pipe(pe.pipe_id())
                }
                _ => continue,
            };
            holders.entry(key).or_default().insert(p.pid);
        }
    }
    let parent: BTreeMap<i32, i32> = tree
        .entries
        .iter()
        .map(|e| (e.pid() as i32, e.ppid() as i32))
        .collect();
    let mut out = Shared {
        external: external.clone(),
        ..Shared::default()
    };
    let mut ghosts = GhostFiles::default();
    let mut ghost_paths = BTreeMap::new();
    let mut next_slot = 0usize;
    let mut slot = || {
        next_slot += 1;
        next_slot - 1
    };
    for (key, pids) in holders {
        if pids.len() < 2 {
            continue;
        }
        let owner = nearest_common_ancestor(&parent, &pids).ok_or_else(|| {
            invalid(
                "pstree.img",
                format!("processes {pids:?} have no common ancestor"),
            )
        })?;
        let images = tree
            .procs
            .iter()
            .find(|p| p.pid == *pids.first().expect("two"))
            .expect("a holder is a live process");
        match key {
            Key::Reg(id) => {
                if images.reg(images.fs.root_id()).name() != "/" {
                    return Err(unsupported(format!(
                        "file {id} shared by processes {pids:?} of a chroot"
                    )));
                }
                let file = reg_file(images, id, "/", &mut ghost_paths, &mut ghosts)?;
                let s = slot();
                out.slots.insert(id, s);
                debug!(id, owner, ?pids, slot = s, "shared file");
                let creates = out.creates.entry(owner).or_default();
                creates.files.push(SharedFile { file, slot: s });
            }
            Key::Pipe(pipe_id) => {
                let (r, w) = ends[&pipe_id];
                let mut pipe = PlannedPipe::default();
                let mut slots = [None, None];
                for (k, (id, end)) in [(r, &mut pipe.read), (w, &mut pipe.write)]
                    .into_iter()
                    .enumerate()
                {
                    let Some(id) = id else { continue };
                    let entry = file_entry(tree, id);
                    end.flags = pipe_of(&entry)?.flags() as i32 & !STRIP;
                    let s = slot();
                    out.slots.insert(id, s);
                    slots[k] = Some(s);
                }
                let [read_slot, write_slot] = slots;
                if let Some(d) = images.file_images.pipe_data.get(&pipe_id) {
                    pipe.size = d.size.map(|s| s as i32);
                    pipe.data = d.data.clone();
                }
                debug!(
                    pipe_id,
                    owner,
                    ?pids,
                    ?read_slot,
                    ?write_slot,
                    "shared pipe"
                );
                out.creates
                    .entry(owner)
                    .or_default()
                    .pipes
                    .push(SharedPipe {
                        pipe,
                        read_slot,
                        write_slot,
                    });
            }
        }
    }
    Ok((out, ghosts))
}

/// The nearest common ancestor of `pids` (one of them if it is above the others), in the
/// tree given by `parent` (pid -> ppid, 0 for the root).
fn nearest_common_ancestor(parent: &BTreeMap<i32, i32>, pids: &BTreeSet<i32>) -> Option<i32> {
    // The chain root..=pid (bounded: a cycle in a bad image does not loop).
    let chain = |pid: i32| {
        let mut c = vec![pid];
        while let Some(&pp) = parent.get(c.last().expect("non-empty")) {
            if pp == 0 || c.len() > parent.len() {
                break;
            }
            c.push(pp);
        }
        c.reverse();
        c
    };
    let mut common = chain(*pids.first()?);
    for &p in pids {
        let c = chain(p);
        let n = common.iter().zip(&c).take_while(|(a, b)| a == b).count();
        common.truncate(n);
    }
    common.last().copied()
}

/// The files.img entry of `id` (every process has the whole files.img).
fn file_entry(tree: &Tree, id: u32) -> File_entry {
    tree.procs
        .iter()
        .find_map(|p| p.files.get(&id))
        .cloned()
        .expect("an id from an fdinfo entry is in files.img")
}

/// What the new task does to itself: session, umask, cwd/root, files and pipes at their
/// fds. The ghost files the plan opens are created here and live as long as the returned
/// [`GhostFiles`]. `ctty_sessions`: the sessions whose processes will have a controlling
/// terminal (a `/dev/tty` fd needs one).
pub(crate) fn child_plan(
    images: &Images,
    shell_job: bool,
    shared: &Shared,
    ctty_sessions: &BTreeSet<i32>,
    trampoline: u64,
    trampoline_len: usize,
) -> Result<(ChildPlan, GhostFiles), RestoreError> {
    let pid = images.pstree.pid();
    let new_session = images.pstree.sid() == pid;
    let terminal = crate::tty::own_terminal_path(images, shell_job)?;
    // Only the root can be of another session than its parent (crs's, with --shell-job).
    if !new_session && !shell_job && images.pstree.ppid() == 0 {
        return Err(RestoreError::Unsupported {
            what: format!(
                "restoring a process of another session (sid {}) without --shell-job",
                images.pstree.sid()
            ),
        });
    }
    let root = images.reg(images.fs.root_id()).name();
    let fi = &images.file_images;
    let mut ghosts = GhostFiles::default();
    // Ghost id -> the path the task opens it by (relative to its root).
    let mut ghost_paths: BTreeMap<u32, String> = BTreeMap::new();
    let mut by_id: BTreeMap<u32, PlannedFile> = BTreeMap::new();
    // Pipe id -> (read end file id, write end file id, plan).
    let mut pipes: BTreeMap<u32, (Option<u32>, Option<u32>, PlannedPipe)> = BTreeMap::new();
    let mut inherited = Vec::new();
    for e in &images.fdinfo {
        if crate::anonfd::is_anon(e.type_())
            || matches!(
                e.type_(),
                Fd_types::UNIXSK
                    | Fd_types::INETSK
                    | Fd_types::NETLINKSK
                    | Fd_types::PACKETSK
                    | Fd_types::MEMFD
                    | Fd_types::PIDFD
            )
            || shared.external.contains(&e.id())
        {
            continue; // created once the task is seized, or passed in by the caller
        }
        let cloexec = e.flags() & libc::FD_CLOEXEC as u32 != 0;
        if let Some(&slot) = shared.slots.get(&e.id()) {
            inherited.push(InheritedFd {
                slot,
                fd: e.fd() as i32,
                cloexec,
            });
            continue;
        }
        if e.type_() == Fd_types::PIPE {
            let p = pipe_of(&images.files[&e.id()])?;
            let (r, w, plan) = pipes.entry(p.pipe_id()).or_default();
            let write_end = p.flags() as i32 & libc::O_ACCMODE == libc::O_WRONLY;
            let (slot, end) = if write_end {
                (w, &mut plan.write)
            } else {
                (r, &mut plan.read)
            };
            match *slot {
                Some(id) if id != e.id() => {
                    return Err(unsupported(format!(
                        "two open descriptions ({id} and {}) of one end of pipe {}",
                        e.id(),
                        p.pipe_id()
                    )))
                }
                Some(_) => {}
                None => {
                    *slot = Some(e.id());
                    end.flags = p.flags() as i32 & !STRIP;
                }
            }
            end.fds.push((e.fd() as i32, cloexec));
            continue;
        }
        if let Some(f) = by_id.get_mut(&e.id()) {
            f.fds.push((e.fd() as i32, cloexec));
            continue;
        }
        if e.type_() == Fd_types::TTY {
            use crate::tty::Kind;
            let t = crate::tty::tty_of(&images.files[&e.id()])?;
            let path = match fi.ttys.kinds.get(&e.id()) {
                // A new description of crs's own terminal, with the dumped flags.
                Some(Kind::ShellJob) => terminal.clone(),
                Some(Kind::DevTty) => {
                    let sid = images.pstree.sid() as i32;
                    if !ctty_sessions.contains(&sid) {
                        return Err(unsupported(format!(
                            "fd {} of pid {pid}: /dev/tty of a process whose session {sid} \
                             gets no controlling terminal from the images",
                            e.fd()
                        )));
                    }
                    images.reg(t.regf_id()).name().to_string()
                }
                // Made by crs, handed over once the task is seized.
                _ => continue,
            };
            by_id.insert(
                e.id(),
                PlannedFile {
                    path: cstring(&path)?,
                    flags: (t.flags() as i32 & !STRIP) | libc::O_NOCTTY,
                    pos: 0,
                    fds: vec![(e.fd() as i32, cloexec)],
                },
            );
            continue;
        }
        let mut file = reg_file(images, e.id(), root, &mut ghost_paths, &mut ghosts)?;
        file.fds.push((e.fd() as i32, cloexec));
        by_id.insert(e.id(), file);
    }
    let pipes = pipes
        .into_iter()
        .map(|(pipe_id, (_, _, mut plan))| {
            if let Some(d) = fi.pipe_data.get(&pipe_id) {
                plan.size = d.size.map(|s| s as i32);
                plan.data = d.data.clone();
            }
            plan
        })
        .collect();
    // A deleted cwd is its ghost directory, removed once the tree is built.
    let cwd = reg_file(
        images,
        images.fs.cwd_id(),
        root,
        &mut ghost_paths,
        &mut ghosts,
    )?
    .path;
    let plan = ChildPlan {
        umask: images.fs.umask.unwrap_or(0o022),
        cwd,
        root: if root == "/" {
            None
        } else {
            Some(cstring(root)?)
        },
        files: by_id.into_values().collect(),
        pipes,
        inherited,
        trampoline,
        trampoline_len,
    };
    Ok((plan, ghosts))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crs_images::codec::ImageWriter;

    /// Writes ghost-file-`gid`.img: `head`, then each (offset, data) as a chunk when
    /// `head` says chunks, else the data as the plain contents.
    fn ghost_image(dir: &Path, gid: u32, head: &Ghost_file_entry, body: &[(u64, &[u8])]) {
        let mut w = ImageWriter::new(format!("ghost-file-{gid:x}.img"), "GHOST_FILE");
        w.push(head).unwrap();
        for (off, data) in body {
            if head.chunks() {
                w.push(&Ghost_chunk_entry {
                    off: Some(*off),
                    len: Some(data.len() as u64),
                    ..Default::default()
                })
                .unwrap();
            }
            w.payload(data);
        }
        std::fs::write(dir.join(format!("ghost-file-{gid:x}.img")), w.into_bytes()).unwrap();
    }

    fn head(chunks: bool, size: Option<u64>) -> Ghost_file_entry {
        Ghost_file_entry {
            uid: Some(0),
            gid: Some(0),
            mode: Some(libc::S_IFREG | 0o600),
            chunks: chunks.then_some(true),
            size,
            ..Default::default()
        }
    }

    #[test]
    fn load_criu_reference_tree_pipe_is_read() {
        let dir = crs_testkit::criu_images().join("tree");
        if !dir.join("pipes-data.img").exists() {
            crs_testkit::skip(
                "load_criu_reference_tree_pipe_is_read",
                "no CRIU reference set",
            );
            return;
        }
        let dir = dir.as_path();
        let bytes = read_file(&dir.join("files.img")).unwrap();
        let files: BTreeMap<u32, File_entry> = ImageReader::new("files.img", &bytes, "FILES")
            .unwrap()
            .all::<File_entry>()
            .unwrap()
            .into_iter()
            .map(|f| (f.id(), f))
            .collect();
        let fi = load(dir, &files, false).unwrap();
        let pd = &fi.pipe_data[&2296329];
        assert_eq!(pd.size, Some(65536));
        assert_eq!(pd.data.len(), 100);
        assert!(pd.data.starts_with(b"A->P pipe data"));
        for id in [4, 14] {
            assert_eq!(pipe_of(&files[&id]).unwrap().pipe_id(), 2296329);
        }
    }

    #[test]
    fn open_flags_drop_tmpfile_and_creation_bits() {
        let tmpfile = (libc::O_RDWR | libc::O_TMPFILE | libc::O_LARGEFILE) as u32;
        assert_eq!(open_flags(tmpfile), libc::O_RDWR | libc::O_LARGEFILE);
        let dir = (libc::O_RDONLY | libc::O_DIRECTORY) as u32;
        assert_eq!(open_flags(dir), libc::O_DIRECTORY | libc::O_LARGEFILE);
        let created = (libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND) as u32;
        assert_eq!(
            open_flags(created),
            libc::O_WRONLY | libc::O_APPEND | libc::O_LARGEFILE
        );
    }

    #[test]
    fn nearest_common_ancestor_of_siblings_cousins_and_line_is_found() {
        // 1 -> {2 -> {4, 5}, 3 -> 6}
        let parent: BTreeMap<i32, i32> = [(1, 0), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3)].into();
        let nca = |p: &[i32]| nearest_common_ancestor(&parent, &p.iter().copied().collect());
        assert_eq!(nca(&[4, 5]), Some(2));
        assert_eq!(nca(&[4, 6]), Some(1));
        assert_eq!(nca(&[2, 5]), Some(2));
        assert_eq!(nca(&[4, 5, 6]), Some(1));
        assert_eq!(nca(&[6]), Some(6));
        assert_eq!(nca(&[]), None);
    }

    #[test]
    fn load_remap_to_missing_ghost_image_names_the_remap() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ImageWriter::new("remap-fpath.img", "REMAP_FPATH");
        w.push(&Remap_file_path_entry {
            orig_id: Some(3),
            remap_id: Some(0xf),
            remap_type: Some(protobuf::EnumOrUnknown::new(Remap_type::GHOST)),
            ..Default::default()
        })
        .unwrap();
        std::fs::write(dir.path().join("remap-fpath.img"), w.into_bytes()).unwrap();
        let files: BTreeMap<u32, File_entry> = [(
            3,
            File_entry {
                id: Some(3),
                reg: protobuf::MessageField::some(crs_images::pb::regfile::Reg_file_entry {
                    name: Some("/tmp/x".into()),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )]
        .into();
        let err = load(dir.path(), &files, false).unwrap_err().to_string();
        assert!(
            err.contains(
                "remap-fpath.img: file id 3 is remapped to ghost file 0xf: no ghost-file-f.img"
            ),
            "{err}"
        );
    }

    #[test]
    fn load_ghost_plain_contents_are_the_rest_of_the_image() {
        let dir = tempfile::tempdir().unwrap();
        ghost_image(dir.path(), 1, &head(false, None), &[(0, b"hello ghost")]);
        let g = load_ghost(dir.path(), 1).unwrap();
        assert_eq!(g.size, 11);
        assert_eq!(g.chunks, vec![(0, b"hello ghost".to_vec())]);
    }

    #[test]
    fn load_ghost_chunks_keep_offsets() {
        let dir = tempfile::tempdir().unwrap();
        ghost_image(
            dir.path(),
            2,
            &head(true, Some(100)),
            &[(0, b"abc"), (90, b"yz")],
        );
        let g = load_ghost(dir.path(), 2).unwrap();
        assert_eq!(g.size, 100);
        assert_eq!(g.chunks, vec![(0, b"abc".to_vec()), (90, b"yz".to_vec())]);
    }

    #[test]
    fn load_ghost_chunk_past_size_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        ghost_image(dir.path(), 3, &head(true, Some(10)), &[(8, b"abcd")]);
        assert!(matches!(
            load_ghost(dir.path(), 3),
            Err(RestoreError::Invalid { .. })
        ));
    }

    #[test]
    fn load_ghost_time_past_what_a_system_time_holds_is_invalid() {
        // create_ghost added these seconds to the epoch, which panicked.
        for (sec, usec) in [(u64::MAX, 0), (1, 1_000_000), (1 << 63, 0)] {
            let dir = tempfile::tempdir().unwrap();
            let mut h = head(false, None);
            h.mtim = protobuf::MessageField::some(Timeval {
                tv_sec: Some(sec),
                tv_usec: Some(usec),
                ..Default::default()
            });
            ghost_image(dir.path(), 5, &h, &[(0, b"x")]);
            let err = load_ghost(dir.path(), 5).unwrap_err();
            assert!(matches!(err, RestoreError::Invalid { .. }), "{err}");
            assert!(err.to_string().contains("ghost-file-5.img: mtime"), "{err}");
        }
    }

    #[test]
    fn load_ghost_directory_is_created_empty_and_socket_is_unsupported() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = head(false, None);
        h.mode = Some(libc::S_IFDIR | 0o710);
        ghost_image(dir.path(), 4, &h, &[]);
        let g = load_ghost(dir.path(), 4).unwrap();
        let at = dir.path().join("gone");
        let mut made = GhostFiles::default();
        create_ghost(&at, &g, &mut made).unwrap();
        let md = std::fs::metadata(&at).unwrap();
        assert!(md.is_dir());
        assert_eq!(md.permissions().mode() & 0o7777, 0o710);
        drop(made);
        assert!(
            !at.exists(),
            "the ghost directory is removed with its GhostFiles"
        );
        h.mode = Some(libc::S_IFSOCK | 0o600);
        ghost_image(dir.path(), 5, &h, &[]);
        assert!(matches!(
            load_ghost(dir.path(), 5),
            Err(RestoreError::Unsupported { .. })
        ));
    }

    #[test]
    fn create_ghost_restores_contents_mode_and_hole() {
        let dir = tempfile::tempdir().unwrap();
        let g = Ghost {
            entry: Ghost_file_entry {
                mtim: protobuf::MessageField::some(Timeval {
                    tv_sec: Some(1_000_000),
                    tv_usec: Some(5),
                    ..Default::default()
                }),
                atim: protobuf::MessageField::some(Timeval {
                    tv_sec: Some(2_000_000),
                    tv_usec: Some(0),
                    ..Default::default()
                }),
                ..head(true, Some(8192))
            },
            size: 8192,
            chunks: vec![(4096, b"tail".to_vec())],
        };
        let path = dir.path().join("x.cr.1.ghost");
        let mut created = GhostFiles::default();
        create_ghost(&path, &g, &mut created).unwrap();
        let data = std::fs::read(&path).unwrap();
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(data.len(), 8192);
        assert!(data[..4096].iter().all(|&b| b == 0));
        assert_eq!(&data[4096..4100], b"tail");
        assert_eq!(md.permissions().mode() & 0o7777, 0o600);
        assert_eq!(
            md.modified().unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000) + Duration::from_micros(5)
        );
        drop(created);
        assert!(!path.exists());
    }

    #[test]
    fn create_ghost_existing_path_is_an_error_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("y.cr.1.ghost");
        std::fs::write(&path, b"keep").unwrap();
        let g = Ghost {
            entry: head(false, None),
            size: 1,
            chunks: vec![(0, b"z".to_vec())],
        };
        let mut created = GhostFiles::default();
        assert!(create_ghost(&path, &g, &mut created).is_err());
        drop(created);
        assert_eq!(std::fs::read(&path).unwrap(), b"keep");
    }
}
