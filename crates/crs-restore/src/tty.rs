//! Terminals: pty pairs, hung-up pty slaves, `/dev/tty`, the console and virtual
//! terminals, and the pty slave of a shell job.
//!
//! **Ptys of the tree** are made by crs before the tree is created: the master is opened
//! (`/dev/ptmx`, as dumped) until the kernel hands out the dumped index, with every lower
//! index it hands out meanwhile held and closed afterwards (as CRIU does; an index in use
//! elsewhere is an error), under a lock file so that two crs restores do not take each
//! other's indices. It is unlocked, each dumped slave description is opened (O_NOCTTY),
//! the slave gets its owner and mode, the terminal its locked termios, termios and window
//! size, then the bytes that were queued in it, exactly (see `crs_sys::tty::insert_input`
//! and `queue_output`), then packet mode. The descriptions are handed to the tasks like
//! the other files crs makes (`handoff`), so descriptions shared by processes stay shared.
//! Once the tree exists, a pty that was locked is locked again and the exclusive flags are
//! set. A hung-up slave (its master was closed before the dump, its `/dev/pts/N` deleted)
//! is opened on a master crs makes and closes at once, so it is hung up again.
//!
//! **Controlling terminals.** A pty that was the controlling terminal of a session is
//! taken again by the session's leader (`TIOCSCTTY`) right after its `setsid()`, before it
//! creates the rest of its session, so every process it creates has it too; after its
//! last child, the leader sets the terminal's foreground group (`TIOCSPGRP`), when every
//! group of the session exists (see `crs_sys::restore::Ctty`). CRIU sets the controlling
//! terminal after the leader's children are made, so they have none.
//!
//! **`/dev/tty`** is opened by the task itself, with its other files, once its session's
//! leader took the controlling terminal. **The console and virtual terminals** are opened
//! by crs at their paths; the dumped settings are applied to the device they were read
//! from, only where they differ from the device's own. Each gets its own description per
//! file.
//!
//! **A shell job's terminal** (`--shell-job`, one pty slave whose master the tree did not
//! hold) is not rebuilt, it is reconnected, as CRIU does: the task's terminal fds are
//! opened on crs's own terminal (the tty on crs's stdin, which must be crs's controlling
//! terminal) through `/proc/<crs>/fd/0` with the dumped flags, before the memory swap.
//! Before that, the dumped owner, locked termios, termios and window size are applied to
//! crs's terminal. The task is created in crs's session (it is crs's child), in its own
//! process group when it led one, else in crs's group; once it is rebuilt, that group
//! becomes the terminal's foreground group, so keys and job control reach the job.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::IsTerminal;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::tty::{Termios_entry, TtyType, Tty_data_entry, Tty_file_entry, Tty_info_entry};
use crs_sys::restore::Ctty;
use crs_sys::tty::{self, Termios, Winsize, KERNEL_NCC};
use crs_sys::Tid;
use tracing::{debug, info};

use crate::error::{invalid, unsupported};
use crate::images::{Images, Tree};
use crate::RestoreError;

/// The largest pty index CRIU 4.2 images may hold (its MAX_PTY_INDEX).
const MAX_PTY_INDEX: u32 = 1000;

/// How a TTY file of the images is restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A pty master, made by crs at its index.
    Master { index: u32 },
    /// A pty slave whose master is in the images, opened by crs.
    Slave { index: u32 },
    /// A hung-up pty slave without its master, opened by crs on a master it closes again.
    HungUp { index: u32 },
    /// The pty slave of a shell job: the task opens crs's own terminal.
    ShellJob,
    /// `/dev/tty`: the task opens it.
    DevTty,
    /// The console or a virtual terminal, opened by crs at its path.
    Device,
}

/// tty-info.img, tty-data.img and how each TTY file is restored.
#[derive(Debug, Default)]
pub(crate) struct Terminals {
    pub infos: BTreeMap<u32, Tty_info_entry>,
    /// Bytes queued at a terminal (tty-data.img) by its id: a read of that end returned
    /// them.
    pub data: BTreeMap<u32, Vec<u8>>,
    /// TTY file id -> how it is restored.
    pub kinds: BTreeMap<u32, Kind>,
}

fn invalid_tty(what: impl Into<String>) -> RestoreError {
    invalid("tty-info.img", what)
}

fn tty_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Tty { what, source }
}

/// Reads tty-info.img and tty-data.img (each absent when there is nothing in it) and
/// sorts every TTY file of files.img (see [`Kind`]), checking it names a known terminal
/// and a regular-file entry for its path.
pub(crate) fn load(
    dir: &Path,
    files: &BTreeMap<u32, File_entry>,
) -> Result<Terminals, RestoreError> {
    let mut out = Terminals::default();
    let path = dir.join("tty-info.img");
    if path.exists() {
        let bytes = read_file(&path)?;
        let label = path.display().to_string();
        let all: Vec<Tty_info_entry> = ImageReader::new(&label, &bytes, "TTY_INFO")?.all()?;
        for e in all {
            check_info(&e)?;
            if out.infos.insert(e.id(), e).is_some() {
                return Err(invalid_tty("a terminal id twice"));
            }
        }
    }
    let path = dir.join("tty-data.img");
    if path.exists() {
        let bytes = read_file(&path)?;
        let label = path.display().to_string();
        let all: Vec<Tty_data_entry> = ImageReader::new(&label, &bytes, "TTY_DATA")?.all()?;
        for e in all {
            let id = e.tty_id();
            if out.infos.get(&id).is_none_or(|i| i.type_() != TtyType::PTY) {
                return Err(invalid(
                    "tty-data.img",
                    format!("data of terminal {id}, which is no pty of tty-info.img"),
                ));
            }
            if out.data.insert(id, e.data().to_vec()).is_some() {
                return Err(invalid("tty-data.img", format!("terminal {id} twice")));
            }
        }
    }
    let mut masters = BTreeMap::new();
    for f in files.values().filter(|f| f.type_() == Fd_types::TTY) {
        let t = tty_of(f)?;
        let id = t.tty_info_id();
        let info = out.infos.get(&id).ok_or_else(|| {
            invalid_tty(format!(
                "file id {} names terminal {id}, which is absent",
                f.id()
            ))
        })?;
        let kind = match info.type_() {
            TtyType::PTY => {
                let index = info.pty.index();
                if id & 1 == 1 {
                    if let Some(other) = masters.insert(index, f.id()) {
                        return Err(invalid(
                            "files.img",
                            format!(
                                "two masters ({other} and {}) of pty {index}: a master is \
                                 opened once",
                                f.id()
                            ),
                        ));
                    }
                    Kind::Master { index }
                } else if out.infos.contains_key(&(id | 1)) {
                    Kind::Slave { index }
                } else if info.termios.is_none() {
                    Kind::HungUp { index }
                } else {
                    Kind::ShellJob
                }
            }
            TtyType::CTTY => Kind::DevTty,
            TtyType::CONSOLE | TtyType::VT => Kind::Device,
            TtyType::SERIAL => {
                return Err(unsupported(format!(
                    "tty-info.img: terminal {id}, a serial port (no such port to test with)"
                )))
            }
            other => {
                return Err(unsupported(format!(
                    "tty-info.img: terminal {id} of type {other:?} (an external terminal \
                     needs --inherit-fd)"
                )))
            }
        };
        let reg_ok = t
            .regf_id
            .and_then(|id| files.get(&id))
            .is_some_and(|r| r.type_() == Fd_types::REG && r.reg.is_some());
        if !reg_ok {
            return Err(invalid(
                "files.img",
                format!("tty file {} has no regular-file entry for its path", f.id()),
            ));
        }
        out.kinds.insert(f.id(), kind);
    }
    Ok(out)
}

/// What CRIU's restore checks of one tty_info_entry: a pty has its index (matching its
/// id) and the others have none; a terminal either has all its settings or, hung up,
/// none; a pty master has them all; `c_cc` has the kernel's 19 characters.
fn check_info(e: &Tty_info_entry) -> Result<(), RestoreError> {
    let id = e.id();
    match e.type_() {
        TtyType::PTY => {
            let index = e
                .pty
                .as_ref()
                .ok_or_else(|| invalid_tty(format!("pty {id} without its index")))?
                .index();
            if index > MAX_PTY_INDEX || index != id >> 1 {
                return Err(invalid_tty(format!("pty {id} with index {index}")));
            }
        }
        _ if e.pty.is_some() => {
            return Err(invalid_tty(format!(
                "terminal {id}, no pty, with a pty index"
            )))
        }
        _ => {}
    }
    let present = [
        e.termios.is_some(),
        e.termios_locked.is_some(),
        e.winsize.is_some(),
    ];
    let master = e.type_() == TtyType::PTY && id & 1 == 1;
    if present.contains(&false) && (master || present.contains(&true)) {
        return Err(invalid_tty(format!(
            "terminal {id} with only part of its settings"
        )));
    }
    for t in [e.termios.as_ref(), e.termios_locked.as_ref()]
        .into_iter()
        .flatten()
    {
        if t.c_cc.len() < KERNEL_NCC {
            return Err(invalid_tty(format!(
                "terminal {id}: {} control characters, want {KERNEL_NCC}",
                t.c_cc.len()
            )));
        }
    }
    Ok(())
}

/// The tty_file_entry of a TTY file.
pub(crate) fn tty_of(f: &File_entry) -> Result<&Tty_file_entry, RestoreError> {
    f.tty.as_ref().ok_or_else(|| RestoreError::Invalid {
        image: "files.img".into(),
        what: format!("file id {} has no tty entry", f.id()),
    })
}

/// CRIU's termios from an image: the first 32 bytes of the `c_cc` words (little-endian,
/// four per word) are glibc's control characters; the kernel takes the first 19.
fn termios_of(e: &Termios_entry) -> Termios {
    let mut cc = [0u8; tty::NCCS];
    let bytes: Vec<u8> = e.c_cc.iter().flat_map(|w| w.to_le_bytes()).collect();
    let n = bytes.len().min(tty::NCCS);
    cc[..n].copy_from_slice(&bytes[..n]);
    // Bytes past the kernel's 19 never reach it; keep them zero as CRIU's memzero does.
    cc[KERNEL_NCC..].fill(0);
    Termios {
        iflag: e.c_iflag(),
        oflag: e.c_oflag(),
        cflag: e.c_cflag(),
        lflag: e.c_lflag(),
        line: e.c_line() as u8,
        cc,
        ispeed: e.c_ispeed(),
        ospeed: e.c_ospeed(),
    }
}

fn winsize_of(info: &Tty_info_entry) -> Option<Winsize> {
    info.winsize.as_ref().map(|w| Winsize {
        row: w.ws_row() as u16,
        col: w.ws_col() as u16,
        xpixel: w.ws_xpixel() as u16,
        ypixel: w.ws_ypixel() as u16,
    })
}

/// Applies `info`'s locked termios, termios and window size to the terminal `fd` is on,
/// in CRIU's order, with SIGTTOU blocked. Locked termios need CAP_SYS_ADMIN: without it
/// an unchanged value is accepted. `only_changes`: a setting equal to the terminal's own
/// is left alone (for shared devices). Returns the termios set, if any.
fn apply_settings(
    fd: BorrowedFd<'_>,
    info: &Tty_info_entry,
    what: &str,
    only_changes: bool,
) -> Result<Option<Termios>, RestoreError> {
    tty::with_sigttou_blocked(|| -> Result<Option<Termios>, RestoreError> {
        if let Some(tl) = info.termios_locked.as_ref() {
            let tl = termios_of(tl);
            let now = tty::get_locked_termios(fd).ok();
            if !(only_changes && now == Some(tl)) {
                if let Err(e) = tty::set_locked_termios(fd, &tl) {
                    let same = e.raw_os_error() == Some(libc::EPERM) && now == Some(tl);
                    if !same {
                        return Err(tty_err(format!("setting the locked termios of {what}"))(e));
                    }
                }
            }
        }
        let t = info.termios.as_ref().map(termios_of);
        if let Some(t) = &t {
            if !(only_changes && tty::get_termios(fd).ok().as_ref() == Some(t)) {
                tty::set_termios(fd, t)
                    .map_err(tty_err(format!("setting the termios of {what}")))?;
            }
        }
        if let Some(w) = winsize_of(info) {
            if !(only_changes && tty::get_winsize(fd).ok() == Some(w)) {
                tty::set_winsize(fd, &w)
                    .map_err(tty_err(format!("setting the window size of {what}")))?;
            }
        }
        Ok(t)
    })
    .map_err(tty_err("blocking SIGTTOU"))?
}

/// Opens `path` with open flags `flags` (O_NOCTTY added): an fd of crs.
fn open_path(path: &str, flags: u32) -> Result<OwnedFd, RestoreError> {
    let flags = (flags as i32 & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC | libc::O_CLOEXEC))
        | libc::O_NOCTTY
        | libc::O_CLOEXEC;
    nix::fcntl::open(
        path,
        nix::fcntl::OFlag::from_bits_retain(flags),
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| RestoreError::Tty {
        what: format!("opening {path}"),
        source: e.into(),
    })
}

/// A lock file that keeps two crs restores from hunting pty indices at once (held until
/// dropped).
fn ptmx_lock() -> Result<nix::fcntl::Flock<std::fs::File>, RestoreError> {
    let path = std::env::temp_dir().join("crs-ptmx.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(tty_err(format!("opening {}", path.display())))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| {
        RestoreError::Tty {
            what: format!("locking {}", path.display()),
            source: e.into(),
        }
    })
}

/// Opens the pty master `path` (flags `flags`) until the kernel hands out index `want`;
/// the lower indices handed out meanwhile are held until then (CRIU's way: the kernel
/// always gives the lowest free index).
fn open_ptmx_index(path: &str, flags: u32, want: u32) -> Result<OwnedFd, RestoreError> {
    let mut spare = Vec::new();
    loop {
        let fd = open_path(path, flags)?;
        let got = tty::pty_index(fd.as_fd())
            .map_err(tty_err(format!("reading the index of a pty from {path}")))?;
        if got == want {
            debug!(index = want, spare = spare.len(), "pty master opened");
            return Ok(fd);
        }
        if got > want || spare.len() > MAX_PTY_INDEX as usize {
            return Err(RestoreError::Tty {
                what: format!("pty {want}: the index is in use (the kernel handed out {got})"),
                source: std::io::Error::from_raw_os_error(libc::EBUSY),
            });
        }
        spare.push(fd);
    }
}

/// The path of pty `index`'s slave next to its master's path (CRIU's rule): `/dev/pts/N`
/// beside `/dev/pts/ptmx`, else in `pts/` beside it (`/dev/ptmx`).
fn slave_path_of(master: &str, index: u32) -> String {
    let dir = Path::new(master).parent().unwrap_or(Path::new("/dev"));
    if dir.ends_with("pts") {
        dir.join(index.to_string()).display().to_string()
    } else {
        dir.join("pts")
            .join(index.to_string())
            .display()
            .to_string()
    }
}

/// The TTY files of the tree by id, with their entry: every file id some process's
/// fdinfo names (one pass over the whole tree).
fn tree_ttys(tree: &Tree) -> BTreeMap<u32, &File_entry> {
    let mut out = BTreeMap::new();
    for p in &tree.procs {
        for e in p.fdinfo.iter().filter(|e| e.type_() == Fd_types::TTY) {
            if let Some(f) = p.files.get(&e.id()) {
                out.insert(e.id(), f);
            }
        }
    }
    out
}

/// The terminals crs made for the tree: the descriptions to hand over by file id, and
/// what is left to do once the tree exists.
#[derive(Default)]
pub(crate) struct Made {
    pub by_id: BTreeMap<u32, OwnedFd>,
    /// Pty masters to lock again.
    lock: Vec<(u32, OwnedFd)>,
    /// Terminals (a description of each) to put in exclusive mode.
    exclusive: Vec<(u32, OwnedFd)>,
}

impl Made {
    /// Makes every pty, hung-up slave, console and virtual terminal of the tree (see the
    /// module's doc), before the tree is created.
    pub(crate) fn create(tree: &Tree) -> Result<Made, RestoreError> {
        let mut made = Made::default();
        let Some(first) = tree.procs.first() else {
            return Ok(made);
        };
        let terms = &first.file_images.ttys;
        let files = tree_ttys(tree);
        // Pty index -> (master file, slave files).
        let mut ptys: BTreeMap<u32, (Option<u32>, Vec<u32>)> = BTreeMap::new();
        let mut devices = Vec::new();
        for &id in files.keys() {
            match terms.kinds.get(&id) {
                Some(Kind::Master { index }) => ptys.entry(*index).or_default().0 = Some(id),
                Some(Kind::Slave { index } | Kind::HungUp { index }) => {
                    ptys.entry(*index).or_default().1.push(id)
                }
                Some(Kind::Device) => devices.push(id),
                _ => {}
            }
        }
        if !ptys.is_empty() {
            let _lock = ptmx_lock()?;
            for (index, (master, slaves)) in ptys {
                made.pty(terms, &files, first, index, master, &slaves)?;
            }
        }
        let mut applied = BTreeSet::new();
        for id in devices {
            let t = tty_of(files[&id])?;
            let path = first.reg(t.regf_id()).name().to_string();
            let fd = open_path(&path, t.flags())?;
            let info = &terms.infos[&t.tty_info_id()];
            let rdev = std::fs::File::from(fd.try_clone().map_err(tty_err("dup"))?)
                .metadata()
                .map(|m| m.rdev())
                .map_err(tty_err(format!("stat of {path}")))?;
            // One info per kind of device: it was read from the device of its rdev.
            if rdev as u32 == info.rdev() && applied.insert(info.id()) {
                apply_settings(fd.as_fd(), info, &path, true)?;
            }
            debug!(id, path, "terminal device opened");
            made.by_id.insert(id, fd);
        }
        Ok(made)
    }

    /// Makes pty `index`: its master (the dumped one, `master`, or one closed at once for
    /// hung-up slaves), its slave descriptions (`slaves`), settings, queued bytes, packet
    /// mode.
    fn pty(
        &mut self,
        terms: &Terminals,
        files: &BTreeMap<u32, &File_entry>,
        images: &Images,
        index: u32,
        master: Option<u32>,
        slaves: &[u32],
    ) -> Result<(), RestoreError> {
        let what = format!("pty {index}");
        let master_tty = master.map(|id| tty_of(files[&id])).transpose()?;
        let (mpath, mflags) = match master_tty {
            Some(t) => (images.reg(t.regf_id()).name().to_string(), t.flags()),
            None => ("/dev/ptmx".to_string(), libc::O_RDWR as u32),
        };
        let mfd = open_ptmx_index(&mpath, mflags, index)?;
        tty::set_pty_locked(mfd.as_fd(), false).map_err(tty_err(format!("unlocking {what}")))?;
        let master_info = terms.infos.get(&(index << 1 | 1));
        let slave_info = terms.infos.get(&(index << 1));
        let mut slave_fds = Vec::new();
        for &id in slaves {
            let t = tty_of(files[&id])?;
            let reg = images.reg(t.regf_id());
            let fd = open_path(reg.name(), t.flags())?;
            slave_fds.push((id, fd, reg.mode()));
        }
        if let (Some((_, fd, mode)), Some(info)) = (slave_fds.first(), slave_info) {
            if let (Some(uid), Some(gid)) = (info.uid, info.gid) {
                std::os::unix::fs::fchown(fd, Some(uid), Some(gid))
                    .map_err(tty_err(format!("giving {what} to uid {uid} gid {gid}")))?;
            }
            if *mode != 0 {
                nix::sys::stat::fchmod(fd, nix::sys::stat::Mode::from_bits_truncate(mode & 0o7777))
                    .map_err(|e| RestoreError::Tty {
                        what: format!("setting the mode of {what}"),
                        source: e.into(),
                    })?;
            }
        }
        let settings = slave_info
            .filter(|i| i.termios.is_some())
            .or(master_info.filter(|i| i.termios.is_some()));
        let Some(settings) = settings else {
            // Hung-up slaves: their master goes, they are hung up again.
            debug!(index, slaves = slave_fds.len(), "hung-up pty slaves opened");
            drop(mfd);
            for (id, fd, _) in slave_fds {
                self.by_id.insert(id, fd);
            }
            return Ok(());
        };
        let t = apply_settings(mfd.as_fd(), settings, &what, false)?;
        let input = terms.data.get(&(index << 1)).map_or(&[][..], Vec::as_slice);
        let output = terms
            .data
            .get(&(index << 1 | 1))
            .map_or(&[][..], Vec::as_slice);
        if !input.is_empty() || !output.is_empty() {
            let t = t.expect("settings with a termios");
            let temp;
            let slave = match slave_fds.first() {
                Some((_, fd, _)) => fd.as_fd(),
                None => {
                    temp = open_path(&slave_path_of(&mpath, index), libc::O_RDWR as u32)?;
                    temp.as_fd()
                }
            };
            tty::with_sigttou_blocked(|| {
                tty::insert_input(slave, input, &t)?;
                tty::queue_output(slave, output, &t)
            })
            .and_then(|r| r)
            .map_err(tty_err(format!(
                "queueing the {} input and {} output bytes of {what}",
                input.len(),
                output.len()
            )))?;
        }
        if let Some(m) = master_info {
            if m.packet_mode() {
                tty::set_packet_mode(mfd.as_fd(), true)
                    .map_err(tty_err(format!("packet mode of {what}")))?;
            }
            if m.exclusive() {
                self.exclusive
                    .push((index, mfd.try_clone().map_err(tty_err("dup"))?));
            }
            if m.locked() {
                self.lock
                    .push((index, mfd.try_clone().map_err(tty_err("dup"))?));
            }
        }
        if let (Some((_, fd, _)), Some(s)) = (slave_fds.first(), slave_info) {
            if s.exclusive() {
                self.exclusive
                    .push((index, fd.try_clone().map_err(tty_err("dup"))?));
            }
        }
        info!(
            index,
            slaves = slave_fds.len(),
            input = input.len(),
            output = output.len(),
            "pty made"
        );
        if let Some(id) = master {
            self.by_id.insert(id, mfd);
        }
        for (id, fd, _) in slave_fds {
            self.by_id.insert(id, fd);
        }
        Ok(())
    }

    /// Once the tree exists (its session leaders have taken their terminals): locks the
    /// ptys that were locked and sets exclusive mode where it was set.
    pub(crate) fn after_tree(&mut self) -> Result<(), RestoreError> {
        for (index, fd) in self.lock.drain(..) {
            tty::set_pty_locked(fd.as_fd(), true)
                .map_err(tty_err(format!("locking pty {index}")))?;
        }
        for (index, fd) in self.exclusive.drain(..) {
            tty::set_exclusive(fd.as_fd(), true)
                .map_err(tty_err(format!("exclusive mode of pty {index}")))?;
        }
        Ok(())
    }
}

/// The controlling terminal of each session that had a pty of the tree as one, by the
/// session leader's pid (see [`Ctty`]); checked: the leader is a live process of the tree
/// that leads its session, the foreground group has a process in that session, and a
/// session has one terminal.
pub(crate) fn controlling(tree: &Tree) -> Result<BTreeMap<Tid, Ctty>, RestoreError> {
    let mut out = BTreeMap::new();
    let Some(first) = tree.procs.first() else {
        return Ok(out);
    };
    let terms = &first.file_images.ttys;
    let files = tree_ttys(tree);
    let mut indices = BTreeSet::new();
    for id in files.keys() {
        if let Some(Kind::Master { index } | Kind::Slave { index }) = terms.kinds.get(id) {
            indices.insert(*index);
        }
    }
    for index in indices {
        let master = terms.infos.get(&(index << 1 | 1));
        let slave = terms.infos.get(&(index << 1));
        let Some(info) = master
            .filter(|i| i.sid() != 0)
            .or(slave.filter(|i| i.sid() != 0 && i.termios.is_some()))
        else {
            continue;
        };
        let (sid, pgrp) = (info.sid() as Tid, info.pgrp() as Tid);
        let leader = tree.entries.iter().find(|e| e.pid() as Tid == sid);
        let live = tree.procs.iter().any(|p| p.pid == sid);
        if !live || leader.is_none_or(|e| e.sid() as Tid != sid) {
            return Err(unsupported(format!(
                "tty-info.img: pty {index}, the controlling terminal of session {sid}, whose \
                 leader is no live process of the images"
            )));
        }
        let foreground = if pgrp > 0 && pgrp != sid {
            let exists = tree
                .entries
                .iter()
                .any(|e| e.pgid() as Tid == pgrp && e.sid() as Tid == sid);
            if !exists {
                return Err(unsupported(format!(
                    "tty-info.img: pty {index}, whose foreground group {pgrp} has no process \
                     in session {sid}"
                )));
            }
            Some(pgrp)
        } else {
            None
        };
        let path = slave_path(terms, &files, first, index);
        let path = CString::new(path).map_err(|_| invalid("files.img", "a path with a NUL"))?;
        debug!(index, sid, ?foreground, "controlling terminal of a session");
        if out.insert(sid, Ctty { path, foreground }).is_some() {
            return Err(invalid_tty(format!(
                "two controlling terminals of session {sid}"
            )));
        }
    }
    Ok(out)
}

/// The path of pty `index`'s slave: a dumped slave file's, else beside its master's.
fn slave_path(
    terms: &Terminals,
    files: &BTreeMap<u32, &File_entry>,
    images: &Images,
    index: u32,
) -> String {
    let of = |want: fn(u32) -> Kind| {
        files.iter().find_map(|(id, f)| {
            (terms.kinds.get(id) == Some(&want(index)))
                .then(|| {
                    f.tty
                        .as_ref()
                        .map(|t| images.reg(t.regf_id()).name().to_string())
                })
                .flatten()
        })
    };
    if let Some(p) = of(|index| Kind::Slave { index }) {
        return p;
    }
    let master = of(|index| Kind::Master { index }).unwrap_or_else(|| "/dev/ptmx".into());
    slave_path_of(&master, index)
}

/// The first terminal of a shell job the task's fds use, if any: (fd, its terminal).
fn first_terminal(images: &Images) -> Option<(u32, &Tty_info_entry)> {
    let terms = &images.file_images.ttys;
    images
        .fdinfo
        .iter()
        .find(|e| e.type_() == Fd_types::TTY && terms.kinds.get(&e.id()) == Some(&Kind::ShellJob))
        .and_then(|e| {
            let t = images.files.get(&e.id())?.tty.as_ref()?;
            Some((e.fd(), terms.infos.get(&t.tty_info_id())?))
        })
}

/// Refuses a shell job's terminal fds without `--shell-job`; the path the new task opens
/// crs's terminal by.
pub(crate) fn own_terminal_path(images: &Images, shell_job: bool) -> Result<String, RestoreError> {
    if let Some((fd, _)) = first_terminal(images) {
        if !shell_job {
            return Err(RestoreError::TtyNeedsShellJob { fd });
        }
    }
    Ok(format!("/proc/{}/fd/0", std::process::id()))
}

/// crs's terminal (its stdin), checked to be a terminal.
fn own_terminal() -> Result<std::io::Stdin, RestoreError> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(RestoreError::Tty {
            what: "no terminal on crs's stdin to give the shell job".into(),
            source: std::io::Error::from_raw_os_error(libc::ENOTTY),
        });
    }
    Ok(stdin)
}

/// When the task has a shell job's terminal fds: checks that crs has a terminal and
/// applies the dumped owner and settings to it (CRIU's restore_tty_params: locked
/// termios, refused without CAP_SYS_ADMIN unless unchanged, then termios and window
/// size). Returns whether the task has such a terminal.
pub(crate) fn connect(images: &Images) -> Result<bool, RestoreError> {
    let Some((fd, info)) = first_terminal(images) else {
        return Ok(false);
    };
    let stdin = own_terminal()?;
    let term = stdin.as_fd();
    if let (Some(uid), Some(gid)) = (info.uid, info.gid) {
        std::os::unix::fs::fchown(term, Some(uid), Some(gid)).map_err(tty_err(format!(
            "giving crs's terminal to uid {uid} gid {gid}"
        )))?;
    }
    apply_settings(term, info, "crs's terminal", false)?;
    info!(
        fd,
        index = info.pty.index(),
        "terminal fds connected to crs's terminal"
    );
    Ok(true)
}

/// Makes the restored job the foreground of crs's terminal, as CRIU does for a job that
/// does not lead its session: its own group when it led one, else crs's group.
pub(crate) fn make_foreground(images: &Images, host: i32) -> Result<(), RestoreError> {
    let pid = images.pid;
    if images.pstree.sid() == pid as u32 {
        return Ok(());
    }
    let pgrp = if images.pstree.pgid() == pid as u32 {
        host
    } else {
        own_pgrp()
    };
    let stdin = own_terminal()?;
    tty::set_foreground(stdin.as_fd(), pgrp).map_err(tty_err(format!(
        "making group {pgrp} the terminal's foreground"
    )))?;
    debug!(pgrp, "foreground group of crs's terminal");
    Ok(())
}

fn own_pgrp() -> i32 {
    // getpgrp() through /proc: the third field after the parenthesised comm of
    // /proc/self/stat.
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = &s[s.rfind(')')? + 2..];
            rest.split(' ').nth(2)?.parse().ok()
        })
        .unwrap_or(std::process::id() as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn termios_of_criu_reference_unpacks_control_chars() {
        // tty-info.img of the CRIU 4.2 shell set: ^C ^\ DEL ^U packed in word 0, heap
        // garbage from word 8 on.
        let mut cc = vec![360651779u32, 65540, 1708817, 370609938, 0, 0, 0, 0];
        cc.extend([3465906432u32, 21873, 49, 0, 3776654528, 32709, 3465907824]);
        cc.extend([21873u32, 3465906464, 21873, 3465906464]);
        let e = Termios_entry {
            c_iflag: Some(1280),
            c_oflag: Some(5),
            c_cflag: Some(191),
            c_lflag: Some(35387),
            c_line: Some(0),
            c_ispeed: Some(0),
            c_ospeed: Some(0),
            c_cc: cc,
            ..Default::default()
        };
        let t = termios_of(&e);
        assert_eq!(&t.cc[..4], &[0x03, 0x1c, 0x7f, 0x15]);
        assert!(t.cc[KERNEL_NCC..].iter().all(|&c| c == 0));
        assert_eq!((t.iflag, t.lflag, t.cflag), (1280, 35387, 191));
    }

    #[test]
    fn own_pgrp_is_getpgrp() {
        assert_eq!(own_pgrp(), nix::unistd::getpgrp().as_raw());
    }

    #[test]
    fn slave_path_of_master_is_beside_it_in_pts() {
        assert_eq!(slave_path_of("/dev/ptmx", 7), "/dev/pts/7");
        assert_eq!(slave_path_of("/dev/pts/ptmx", 12), "/dev/pts/12");
    }

    fn pty_info(id: u32, termios: bool) -> Tty_info_entry {
        let t = termios.then(|| Termios_entry {
            c_cc: vec![0; KERNEL_NCC],
            ..Default::default()
        });
        Tty_info_entry {
            id: Some(id),
            type_: Some(protobuf::EnumOrUnknown::new(TtyType::PTY)),
            pty: protobuf::MessageField::some(crs_images::pb::tty::Tty_pty_entry {
                index: Some(id >> 1),
                ..Default::default()
            }),
            termios: t.clone().into(),
            termios_locked: t.into(),
            winsize: if termios {
                protobuf::MessageField::some(Default::default())
            } else {
                protobuf::MessageField::none()
            },
            ..Default::default()
        }
    }

    #[test]
    fn check_info_accepts_criu_shapes_and_refuses_broken_ones() {
        assert!(check_info(&pty_info(6, true)).is_ok());
        assert!(check_info(&pty_info(7, true)).is_ok());
        // A hung-up slave has no settings; a master always has them.
        assert!(check_info(&pty_info(6, false)).is_ok());
        assert!(check_info(&pty_info(7, false)).is_err());
        let mut wrong_index = pty_info(6, true);
        wrong_index.pty.mut_or_insert_default().index = Some(4);
        assert!(check_info(&wrong_index).is_err());
        let mut part = pty_info(6, true);
        part.winsize = protobuf::MessageField::none();
        assert!(check_info(&part).is_err());
        let mut short = pty_info(6, true);
        short.termios.mut_or_insert_default().c_cc.truncate(8);
        assert!(check_info(&short).is_err());
    }
}
