//! Terminals, as CRIU 4.2 saves them: pty masters (`/dev/ptmx`) and slaves
//! (`/dev/pts/N`, also once deleted), `/dev/tty`, the console and the virtual terminals.
//!
//! Each open description of a terminal is a TTY file entry naming a regular-file entry of
//! its path (allocated after the TTY file's id, written before it) and a tty_info_entry
//! (tty-info.img), saved once per terminal: a pty's master and slave are two terminals
//! (ids `index << 1 | 1` and `index << 1`), the console, the virtual terminals and
//! `/dev/tty` one each (CRIU's fixed indices). The info holds the termios, locked termios
//! and window size, the exclusive, packet-mode and lock flags, and the session and
//! foreground group the terminal is the controlling terminal of. A hung-up terminal (its
//! master closed: the slave's `/dev/pts/N` is deleted and its ioctls fail with EIO) gets
//! only its identity, as CRIU does.
//!
//! A pty whose master and slave are both held by the tree also gets the bytes queued in it
//! (tty-data.img, CRIU's format): what a read of the master would return (the slave's
//! output) and what a read of the slave would return (its input, in canonical mode with
//! its lines, end-of-file lines and last partial line). They are read from crs, then put
//! back exactly at once (`crs_sys::tty::insert_input`, `queue_output`), so the task keeps
//! them whether it is killed or left running. CRIU reads them the same way but keeps the
//! packet-mode header bytes in the data and puts them back with echo and output
//! processing on; crs's data is the bytes alone.
//!
//! What cannot be restored is refused here, by fd: a pty slave whose master the tree does
//! not hold (allowed once with `--shell-job`: the job's terminal), the controlling terminal
//! of a session whose leader is not dumped, a `/dev/tty` that is no pty of the dump, and
//! the terminals CRIU 4.2 has no image for (serial ports, `tty0`, BSD ptys). The console
//! and the virtual terminals are saved only when no session has them as controlling
//! terminal.
//!
//! A child module of `files`: the file ids, the shared-description lookup and files.img
//! are the file table's.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crs_compel::Tid;
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::fown::Fown_entry;
use crs_images::pb::tty::{
    Termios_entry, TtyType, Tty_data_entry, Tty_file_entry, Tty_info_entry, Tty_pty_entry,
    Winsize_entry,
};
use crs_proc::ProcDir;
use crs_sys::tty::{self, Termios, TtyFlag};
use protobuf::{EnumOrUnknown, MessageField};
use tracing::debug;

use super::FileTable;
use crate::error::{proc_err, DumpError, Result};

/// CRIU's fixed indices of the terminals that are no ptys (criu/tty.c); their tty_info
/// id is the index shifted left by one.
const CONSOLE_INDEX: u32 = 1002;
const VT_INDEX: u32 = 1004;
const CTTY_INDEX: u32 = 1006;
/// The largest pty index CRIU 4.2 images may hold (its MAX_PTY_INDEX).
const MAX_PTY_INDEX: u32 = 1000;
/// The most bytes read from one end of a pty (its line discipline holds 4095, the queue
/// behind it a few KiB more).
const MAX_QUEUED: usize = 64 * 1024;

/// What kind of terminal a device is (CRIU's tty drivers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Driver {
    /// A pty master (`/dev/ptmx`).
    Master,
    /// A pty slave (`/dev/pts/N`).
    Slave,
    /// `/dev/console`.
    Console,
    /// A virtual terminal, `/dev/tty1` to `/dev/tty63`.
    Vt,
    /// `/dev/tty`, the caller's controlling terminal.
    Ctty,
}

impl Driver {
    fn tty_type(self) -> TtyType {
        match self {
            Driver::Master | Driver::Slave => TtyType::PTY,
            Driver::Console => TtyType::CONSOLE,
            Driver::Vt => TtyType::VT,
            Driver::Ctty => TtyType::CTTY,
        }
    }

    /// The tty_info id of terminal `index` of this driver (a pty's index; unused for the
    /// others, which have CRIU's fixed index).
    fn info_id(self, index: u32) -> u32 {
        match self {
            Driver::Master => index << 1 | 1,
            Driver::Slave => index << 1,
            Driver::Console => CONSOLE_INDEX << 1,
            Driver::Vt => VT_INDEX << 1,
            Driver::Ctty => CTTY_INDEX << 1,
        }
    }
}

/// Sorts a character device by its number: `Ok(Some(_))` a terminal crs saves, `Ok(None)`
/// no terminal, `Err(why)` a terminal crs refuses.
pub(super) fn driver_of(rdev: u64) -> std::result::Result<Option<Driver>, &'static str> {
    let major = nix::sys::stat::major(rdev);
    let minor = nix::sys::stat::minor(rdev);
    Ok(Some(match (major, minor) {
        (5, 0) => Driver::Ctty,
        (5, 1) => Driver::Console,
        (5, 2) | (128..=135, _) => Driver::Master,
        (136..=143, _) => Driver::Slave,
        (4, 1..=63) => Driver::Vt,
        (4, 0) => return Err("tty0 (the current virtual terminal): CRIU 4.2 has no image for it"),
        (4, _) => {
            return Err("a serial port (/dev/ttyS*): CRIU 4.2 has no image for it");
        }
        (5, _) => return Err("a terminal of major 5 other than /dev/tty, console and ptmx"),
        (188 | 204, _) => {
            return Err(
                "a USB or low-density serial port: not supported (no such port to test with)",
            );
        }
        (2 | 3, _) => return Err("a BSD pty: CRIU 4.2 cannot save one either"),
        _ => return Ok(None),
    }))
}

/// The first place an open description of a terminal was found.
struct Held {
    pid: Tid,
    fd: i32,
    link: String,
    /// The description itself (taken from the task).
    file: File,
    driver: Driver,
    info_id: u32,
    /// For `/dev/tty`: the terminal behind it, and whether that is still the holder's
    /// controlling terminal.
    real: u64,
    is_ctty: bool,
}

/// Every terminal of the dump: tty-info.img and what is needed to check and drain them.
#[derive(Default)]
pub(super) struct Terminals {
    infos: Vec<Tty_info_entry>,
    held: Vec<Held>,
}

/// A termios as CRIU stores it: glibc's 32 control characters copied byte for byte into
/// the first 8 of the 19 `c_cc` words (little-endian, four per word). CRIU leaves the
/// other 11 words uninitialised; crs writes zeros there.
pub(super) fn termios_entry(t: &Termios) -> Termios_entry {
    let mut cc: Vec<u32> =
        t.cc.chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().expect("32 is a multiple of 4")))
            .collect();
    cc.resize(tty::KERNEL_NCC, 0);
    Termios_entry {
        c_iflag: Some(t.iflag),
        c_oflag: Some(t.oflag),
        c_cflag: Some(t.cflag),
        c_lflag: Some(t.lflag),
        c_line: Some(u32::from(t.line)),
        c_ispeed: Some(t.ispeed),
        c_ospeed: Some(t.ospeed),
        c_cc: cc,
        ..Default::default()
    }
}

/// Where an fd is, for errors.
struct At<'a> {
    pid: Tid,
    fd: i32,
    link: &'a str,
}

/// Where `h` was found.
fn at(h: &Held) -> At<'_> {
    At {
        pid: h.pid,
        fd: h.fd,
        link: &h.link,
    }
}

impl At<'_> {
    fn err(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> DumpError {
        let path = PathBuf::from(format!("/proc/{}/fd/{} ({})", self.pid, self.fd, self.link));
        move |source| DumpError::File { what, path, source }
    }

    fn unsupported(&self, why: &'static str) -> DumpError {
        DumpError::UnsupportedFd {
            pid: self.pid,
            fd: self.fd,
            link: self.link.to_string(),
            why,
        }
    }
}

/// The tty_info_entry of terminal `info_id`, as CRIU 4.2 fills it from inside the task:
/// the session and foreground group (on a pty master they are the slave's and answer from
/// anywhere; any other terminal reports them only to a process it is the controlling
/// terminal of, which crs tells from `tty_nr` in /proc/PID/stat), the exclusive flag, for
/// a pty master its packet-mode and lock flags (an ioctl the terminal does not answer
/// counts as clear), termios, locked termios and window size. A hung-up terminal gets only
/// its identity. Also returns the terminal behind the fd and whether it is the holder's
/// controlling terminal.
fn tty_info(
    info_id: u32,
    driver: Driver,
    index: u32,
    at: &At<'_>,
    fd: BorrowedFd<'_>,
    md: &std::fs::Metadata,
    proc_dir: &ProcDir,
) -> Result<(Tty_info_entry, u64, bool)> {
    let mut info = Tty_info_entry {
        id: Some(info_id),
        type_: Some(EnumOrUnknown::new(driver.tty_type())),
        locked: Some(false),
        exclusive: Some(false),
        packet_mode: Some(false),
        sid: Some(0),
        pgrp: Some(0),
        rdev: Some(md.rdev() as u32),
        dev: Some(md.dev() as u32),
        uid: Some(md.uid()),
        gid: Some(md.gid()),
        ..Default::default()
    };
    if matches!(driver, Driver::Master | Driver::Slave) {
        info.pty = MessageField::some(Tty_pty_entry {
            index: Some(index),
            ..Default::default()
        });
    }
    let is_eio = |e: &std::io::Error| e.raw_os_error() == Some(libc::EIO);
    let mut flags = vec![(TtyFlag::Exclusive, &mut info.exclusive)];
    if driver == Driver::Master {
        flags.push((TtyFlag::Packet, &mut info.packet_mode));
        flags.push((TtyFlag::Locked, &mut info.locked));
    }
    for (flag, slot) in flags {
        match tty::get_flag(fd, flag) {
            Ok(v) => *slot = Some(v),
            Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {}
            Err(e) if is_eio(&e) => return Ok((info, md.rdev(), false)),
            Err(e) => return Err(at.err("reading the state flags of the terminal")(e)),
        }
    }
    let real = match driver {
        Driver::Slave | Driver::Vt => md.rdev(),
        _ => match tty::device(fd) {
            Ok(d) => d,
            Err(e) if is_eio(&e) => return Ok((info, md.rdev(), false)),
            Err(e) => return Err(at.err("reading the device behind the terminal")(e)),
        },
    };
    let (sid, pgrp, is_ctty) = if driver == Driver::Master {
        let sid = tty::session(fd).map_err(at.err("reading the session of the terminal"))?;
        let pgrp = match sid {
            Some(_) => tty::foreground(fd)
                .map_err(at.err("reading the foreground group of the terminal"))?,
            None => None,
        };
        (sid.unwrap_or(0), pgrp.unwrap_or(0), false)
    } else {
        let stat = proc_dir.stat().map_err(proc_err(at.pid, "stat"))?;
        if stat.tty_nr != 0 && stat.tty_nr as u32 == real as u32 {
            (stat.session, stat.tpgid.max(0), true)
        } else {
            (0, 0, false)
        }
    };
    info.sid = Some(sid.max(0) as u32);
    info.pgrp = Some(pgrp.max(0) as u32);
    let t = match tty::get_termios(fd) {
        Ok(t) => t,
        Err(e) if is_eio(&e) => return Ok((info, real, false)),
        Err(e) => return Err(at.err("reading the termios of")(e)),
    };
    let tl = tty::get_locked_termios(fd).map_err(at.err("reading the locked termios of"))?;
    let w = tty::get_winsize(fd).map_err(at.err("reading the window size of"))?;
    info.termios = MessageField::some(termios_entry(&t));
    info.termios_locked = MessageField::some(termios_entry(&tl));
    info.winsize = MessageField::some(Winsize_entry {
        ws_row: Some(u32::from(w.row)),
        ws_col: Some(u32::from(w.col)),
        ws_xpixel: Some(u32::from(w.xpixel)),
        ws_ypixel: Some(u32::from(w.ypixel)),
        ..Default::default()
    });
    Ok((info, real, is_ctty))
}

/// Whether the pty master `fd` in packet mode has a status byte waiting (a read would
/// return it instead of data).
fn packet_status_pending(fd: BorrowedFd<'_>) -> std::io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut p = [PollFd::new(fd, PollFlags::POLLPRI)];
    let n = poll(&mut p, PollTimeout::ZERO)?;
    Ok(n > 0
        && p[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLPRI)))
}

/// Runs `f` with the description `fd` is on made non-blocking; its flags are put back.
fn nonblocking<T>(
    fd: BorrowedFd<'_>,
    f: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let out = f();
    fcntl(fd, FcntlArg::F_SETFL(flags))?;
    out
}

/// One non-blocking read of `fd` into `buf`: `Some(n)` bytes (0: end of file, or in
/// canonical mode an end-of-file line), `None` when nothing is left (EAGAIN, or EIO once
/// the other end is closed).
fn read_some(fd: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    loop {
        match nix::unistd::read(fd, buf) {
            Ok(n) => return Ok(Some(n)),
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EIO) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

fn too_much() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::EMSGSIZE)
}

/// Reads what the pty master `fd` has queued (the slave's output), leaving the packet-mode
/// header byte of each read out when `packet`.
fn drain_master(fd: BorrowedFd<'_>, packet: bool) -> std::io::Result<Vec<u8>> {
    nonblocking(fd, || {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        while let Some(n @ 1..) = read_some(fd, &mut buf)? {
            let skip = usize::from(packet);
            out.extend_from_slice(&buf[skip.min(n)..n]);
            if out.len() > MAX_QUEUED {
                return Err(too_much());
            }
        }
        Ok(out)
    })
}

/// Reads what the pty slave `fd` (settings `t`) has queued as input, as the bytes that
/// typed again give the same queue: in canonical mode each line as read, an end-of-file
/// character after a line that ended with one (or alone, for an empty end-of-file line),
/// then the last partial line, which a canonical read does not return: it is read with
/// canonical mode off for a moment (no line is left then, so turning it back on leaves
/// the queue empty and clean).
fn drain_slave(fd: BorrowedFd<'_>, t: &Termios) -> std::io::Result<Vec<u8>> {
    let canonical = t.lflag & libc::ICANON != 0 && t.lflag & libc::EXTPROC == 0;
    let eof = t.cc[libc::VEOF];
    let ends: Vec<u8> = [b'\n', t.cc[libc::VEOL], t.cc[libc::VEOL2]]
        .into_iter()
        .filter(|&c| c != 0)
        .collect();
    nonblocking(fd, || {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        if canonical {
            while let Some(n) = read_some(fd, &mut buf)? {
                out.extend_from_slice(&buf[..n]);
                if (n == 0 || !ends.contains(&buf[n - 1])) && eof != 0 {
                    out.push(eof);
                }
                if out.len() > MAX_QUEUED {
                    return Err(too_much());
                }
            }
            let mut raw = *t;
            raw.lflag &= !libc::ICANON;
            raw.cc[libc::VMIN] = 1;
            raw.cc[libc::VTIME] = 0;
            tty::set_termios(fd, &raw)?;
            let rest = (|| {
                while let Some(n @ 1..) = read_some(fd, &mut buf)? {
                    out.extend_from_slice(&buf[..n]);
                    if out.len() > MAX_QUEUED {
                        return Err(too_much());
                    }
                }
                Ok(())
            })();
            tty::set_termios(fd, t)?;
            rest?;
        } else {
            while let Some(n @ 1..) = read_some(fd, &mut buf)? {
                out.extend_from_slice(&buf[..n]);
                if out.len() > MAX_QUEUED {
                    return Err(too_much());
                }
            }
        }
        Ok(out)
    })
}

impl FileTable {
    /// A terminal fd (`driver`): a regular-file entry of its path (for a pty slave whose
    /// master is gone, without the " (deleted)" the kernel shows, as CRIU does), the TTY
    /// file entry, and the terminal's tty_info_entry the first time it is seen.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tty(
        &mut self,
        id: u32,
        (pid, fd): (Tid, i32),
        link: &str,
        file: &File,
        md: &std::fs::Metadata,
        flags: u32,
        fown: Fown_entry,
        proc_dir: &ProcDir,
        driver: Driver,
    ) -> Result<()> {
        let at = At { pid, fd, link };
        let index = match driver {
            Driver::Master => {
                tty::pty_index(file.as_fd()).map_err(at.err("reading the pty index of"))?
            }
            Driver::Slave => nix::sys::stat::minor(md.rdev()) as u32,
            _ => 0,
        };
        if matches!(driver, Driver::Master | Driver::Slave) && index > MAX_PTY_INDEX {
            return Err(at.unsupported("a pty whose index is above 1000 (CRIU 4.2's limit)"));
        }
        let path = link.strip_suffix(super::DELETED_SUFFIX).unwrap_or(link);
        let info_id = driver.info_id(index);
        let regf_id = self.alloc();
        let reg = self.reg_entry(regf_id, Path::new(path), file, md, flags, 0, fown.clone())?;
        self.push_reg(regf_id, reg);
        let known = self.ttys.infos.iter().any(|t| t.id() == info_id);
        let (real, is_ctty) = if known && driver != Driver::Ctty {
            (md.rdev(), false)
        } else {
            let (mut info, real, is_ctty) =
                tty_info(info_id, driver, index, &at, file.as_fd(), md, proc_dir)?;
            // The session and foreground group as the images record pids (`ns::Vpids`).
            for v in [&mut info.sid, &mut info.pgrp] {
                if let Some(p) = v.filter(|&p| p != 0) {
                    *v = Some(self.vpid(p as i32).ok_or(DumpError::OutsidePidNs {
                        pid,
                        what: "the session or foreground group of its terminal",
                    })?);
                }
            }
            if !known {
                debug!(
                    id,
                    info_id,
                    ?driver,
                    index,
                    sid = info.sid(),
                    pgrp = info.pgrp(),
                    hung_up = info.termios.is_none(),
                    "terminal"
                );
                self.ttys.infos.push(info);
            }
            (real, is_ctty)
        };
        self.ttys.held.push(Held {
            pid,
            fd,
            link: link.to_string(),
            file: file
                .try_clone()
                .map_err(at.err("duplicating the fd of the terminal"))?,
            driver,
            info_id,
            real,
            is_ctty,
        });
        self.entries.push(File_entry {
            type_: Some(EnumOrUnknown::new(Fd_types::TTY)),
            id: Some(id),
            tty: MessageField::some(Tty_file_entry {
                id: Some(id),
                tty_info_id: Some(info_id),
                flags: Some(flags),
                fown: MessageField::some(fown),
                regf_id: Some(regf_id),
                ..Default::default()
            }),
            ..Default::default()
        });
        Ok(())
    }
}

impl Terminals {
    /// tty-info.img, in the order the terminals were found.
    pub(super) fn infos(&self) -> &[Tty_info_entry] {
        &self.infos
    }

    fn info(&self, id: u32) -> Option<&Tty_info_entry> {
        self.infos.iter().find(|t| t.id() == id)
    }

    fn first_held(&self, info_id: u32) -> Option<&Held> {
        self.held.iter().find(|h| h.info_id == info_id)
    }

    /// Refuses what a restore could not rebuild (see the module's doc). `leaders`: the
    /// live processes of the tree that lead their session.
    pub(super) fn check(&self, leaders: &[Tid], shell_job: bool) -> Result<()> {
        // Pty slaves whose master the tree does not hold.
        let mut unpaired = None;
        for info in &self.infos {
            let id = info.id();
            if info.type_() != TtyType::PTY || id & 1 == 1 || info.termios.is_none() {
                continue;
            }
            if self.info(id | 1).is_some() {
                continue;
            }
            let h = self.first_held(id).expect("a terminal comes from an fd");
            if !shell_job {
                return Err(at(h).unsupported(
                    "a pty slave whose master no process of the tree holds (--shell-job \
                     restores one such terminal: a job's, on crs's own terminal)",
                ));
            }
            if unpaired.replace(id).is_some() {
                return Err(at(h).unsupported(
                    "a second pty slave whose master is not dumped (only one is allowed)",
                ));
            }
        }
        for info in &self.infos {
            let h = self
                .first_held(info.id())
                .expect("a terminal comes from an fd");
            let sid = info.sid() as Tid;
            if sid == 0 || Some(info.id()) == unpaired {
                continue;
            }
            if matches!(info.type_(), TtyType::CONSOLE | TtyType::VT) {
                return Err(at(h).unsupported(
                    "a console or virtual terminal that is the controlling terminal of a \
                     session",
                ));
            }
            if info.type_() == TtyType::PTY && !leaders.contains(&sid) {
                return Err(DumpError::TtySession {
                    pid: h.pid,
                    fd: h.fd,
                    link: h.link.clone(),
                    sid,
                });
            }
        }
        for h in self.held.iter().filter(|h| h.driver == Driver::Ctty) {
            if !h.is_ctty {
                return Err(at(h).unsupported(
                    "/dev/tty opened on a terminal that is no longer the process's \
                     controlling terminal",
                ));
            }
            let major = nix::sys::stat::major(h.real);
            let index = nix::sys::stat::minor(h.real) as u32;
            let slave = Driver::Slave.info_id(index);
            let in_dump = (136..=143).contains(&major)
                && (self.info(slave | 1).is_some()
                    || self.info(slave).is_some_and(|s| s.termios.is_some()));
            if !in_dump {
                return Err(at(h).unsupported(
                    "/dev/tty whose terminal is no pty of the dumped tree (neither end held)",
                ));
            }
        }
        Ok(())
    }

    /// The bytes queued in each pty whose master and slave the tree both hold
    /// (tty-data.img entries, the first end found first), read and put back at once. A
    /// master held alone must have nothing queued.
    pub(super) fn queued_data(&self) -> Result<Vec<Tty_data_entry>> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        for h in &self.held {
            if !matches!(h.driver, Driver::Master | Driver::Slave)
                || done.contains(&(h.info_id >> 1))
            {
                continue;
            }
            let index = h.info_id >> 1;
            done.push(index);
            let master = self.first_held(index << 1 | 1);
            let slave = self.first_held(index << 1);
            let (Some(master), Some(slave)) = (master, slave) else {
                if let Some(m) = master {
                    self.check_nothing_queued(m)?;
                }
                continue;
            };
            let hung = self.info(slave.info_id).is_none_or(|i| i.termios.is_none());
            if hung {
                continue;
            }
            let packet = self.info(master.info_id).is_some_and(|i| i.packet_mode());
            let (m_at, s_at) = (at(master), at(slave));
            let (mfd, sfd) = (master.file.as_fd(), slave.file.as_fd());
            if packet && packet_status_pending(mfd).map_err(m_at.err("polling"))? {
                return Err(
                    m_at.unsupported("a pty master in packet mode with a status byte not read yet")
                );
            }
            let queued_in = tty::readable_bytes(sfd).map_err(s_at.err("sizing the input of"))?;
            if queued_in >= tty::LINE_BUFFER {
                return Err(s_at
                    .unsupported("a pty with a full input queue: crs cannot put it back exactly"));
            }
            let t = tty::get_termios(sfd).map_err(s_at.err("reading the termios of"))?;
            let output =
                drain_master(mfd, packet).map_err(m_at.err("reading the output queued at"));
            let input = drain_slave(sfd, &t).map_err(s_at.err("reading the input queued at"));
            // Put back whatever was read, before any error is returned.
            let put_back = tty::with_sigttou_blocked(|| {
                let o = match &output {
                    Ok(d) => tty::queue_output(sfd, d, &t),
                    Err(_) => Ok(()),
                };
                let i = match &input {
                    Ok(d) => tty::insert_input(sfd, d, &t),
                    Err(_) => Ok(()),
                };
                o.and(i)
            })
            .and_then(|r| r)
            .map_err(s_at.err("putting back the bytes queued in"));
            let (output, input) = (output?, input?);
            put_back?;
            debug!(
                index,
                output = output.len(),
                input = input.len(),
                "bytes queued in the pty saved"
            );
            let first_is_master = h.driver == Driver::Master;
            let mut pair = [(master.info_id, output), (slave.info_id, input)];
            if !first_is_master {
                pair.swap(0, 1);
            }
            for (id, data) in pair {
                if !data.is_empty() {
                    out.push(Tty_data_entry {
                        tty_id: Some(id),
                        data: Some(data),
                        ..Default::default()
                    });
                }
            }
        }
        Ok(out)
    }

    /// Refuses a pty master held without its slave that has output queued: nothing in the
    /// tree could read it back at the slave's end.
    fn check_nothing_queued(&self, m: &Held) -> Result<()> {
        let at = at(m);
        if self.info(m.info_id).is_some_and(|i| i.termios.is_none()) {
            return Ok(());
        }
        let n = tty::readable_bytes(m.file.as_fd()).map_err(at.err("sizing the output of"))?;
        if n > 0 {
            return Err(at.unsupported(
                "a pty master with output queued whose slave no process of the tree holds",
            ));
        }
        Ok(())
    }
}
