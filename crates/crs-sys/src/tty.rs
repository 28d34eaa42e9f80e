//! Terminal ioctls: termios (plain and locked) and window size read and set the way CRIU
//! does it, the pty state flags (exclusive, packet mode, locked), a pty's index, the
//! session and foreground group of a terminal, and the bytes queued in a pty put back
//! exactly ([`insert_input`], [`queue_output`]).
//!
//! [`Termios`] is what the raw `TCGETS` ioctl writes into a zeroed glibc `struct termios`:
//! the kernel fills the flags, the line discipline and the first 19 control characters;
//! the other 13 control characters and both speeds stay zero (glibc's `tcgetattr` would
//! derive the speeds from `c_cflag`, CRIU's raw ioctl does not, and its images show zeros).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use crate::cvt;

/// Control characters the kernel has (`NCC` of its `struct termios`).
pub const KERNEL_NCC: usize = 19;
/// Control characters of glibc's `struct termios` (`NCCS`).
pub const NCCS: usize = 32;

/// A terminal's settings, as glibc lays `struct termios` out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Termios {
    pub iflag: u32,
    pub oflag: u32,
    pub cflag: u32,
    pub lflag: u32,
    pub line: u8,
    pub cc: [u8; NCCS],
    pub ispeed: u32,
    pub ospeed: u32,
}

impl Termios {
    fn to_libc(self) -> libc::termios {
        libc::termios {
            c_iflag: self.iflag,
            c_oflag: self.oflag,
            c_cflag: self.cflag,
            c_lflag: self.lflag,
            c_line: self.line,
            c_cc: self.cc,
            c_ispeed: self.ispeed,
            c_ospeed: self.ospeed,
        }
    }

    fn from_libc(t: &libc::termios) -> Termios {
        Termios {
            iflag: t.c_iflag,
            oflag: t.c_oflag,
            cflag: t.c_cflag,
            lflag: t.c_lflag,
            line: t.c_line,
            cc: t.c_cc,
            ispeed: t.c_ispeed,
            ospeed: t.c_ospeed,
        }
    }
}

/// A terminal's window size (`struct winsize`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Winsize {
    pub row: u16,
    pub col: u16,
    pub xpixel: u16,
    pub ypixel: u16,
}

fn get_termios_req(fd: BorrowedFd<'_>, req: libc::Ioctl) -> io::Result<Termios> {
    let mut t = Termios::default().to_libc();
    // SAFETY: `t` is a live, fully initialised glibc termios (60 bytes); TCGETS and
    // TIOCGLCKTRMIOS write the kernel's struct termios (36 bytes, the same layout as its
    // prefix) into it and nothing else. `fd` is borrowed for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut t as *mut libc::termios) };
    cvt(ret as libc::c_long)?;
    Ok(Termios::from_libc(&t))
}

fn set_termios_req(fd: BorrowedFd<'_>, req: libc::Ioctl, t: &Termios) -> io::Result<()> {
    let t = t.to_libc();
    // SAFETY: `t` is a live glibc termios whose 36-byte prefix is the kernel's struct
    // termios, which TCSETS and TIOCSLCKTRMIOS only read. `fd` is borrowed for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, &t as *const libc::termios) };
    cvt(ret as libc::c_long).map(drop)
}

/// `ioctl(TCGETS)`.
pub fn get_termios(fd: BorrowedFd<'_>) -> io::Result<Termios> {
    get_termios_req(fd, libc::TCGETS)
}

/// `ioctl(TIOCGLCKTRMIOS)`: the locked bits of the settings.
pub fn get_locked_termios(fd: BorrowedFd<'_>) -> io::Result<Termios> {
    get_termios_req(fd, libc::TIOCGLCKTRMIOS)
}

/// `ioctl(TCSETS)` (takes effect at once).
pub fn set_termios(fd: BorrowedFd<'_>, t: &Termios) -> io::Result<()> {
    set_termios_req(fd, libc::TCSETS, t)
}

/// `ioctl(TIOCSLCKTRMIOS)`: needs CAP_SYS_ADMIN (EPERM otherwise).
pub fn set_locked_termios(fd: BorrowedFd<'_>, t: &Termios) -> io::Result<()> {
    set_termios_req(fd, libc::TIOCSLCKTRMIOS, t)
}

/// `ioctl(TIOCGWINSZ)`.
pub fn get_winsize(fd: BorrowedFd<'_>) -> io::Result<Winsize> {
    let mut w = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: `w` is a live struct winsize the kernel writes; `fd` is borrowed.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut w as *mut _) };
    cvt(ret as libc::c_long)?;
    Ok(Winsize {
        row: w.ws_row,
        col: w.ws_col,
        xpixel: w.ws_xpixel,
        ypixel: w.ws_ypixel,
    })
}

/// `ioctl(TIOCSWINSZ)`.
pub fn set_winsize(fd: BorrowedFd<'_>, w: &Winsize) -> io::Result<()> {
    let w = libc::winsize {
        ws_row: w.row,
        ws_col: w.col,
        ws_xpixel: w.xpixel,
        ws_ypixel: w.ypixel,
    };
    // SAFETY: `w` is a live struct winsize the kernel only reads; `fd` is borrowed.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &w as *const _) };
    cvt(ret as libc::c_long).map(drop)
}

/// A pty state flag read with an `int`-returning ioctl.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TtyFlag {
    /// TIOCGEXCL: exclusive mode (TIOCEXCL).
    Exclusive,
    /// TIOCGPKT: packet mode.
    Packet,
    /// TIOCGPTLCK: the pty is locked (unlockpt not called).
    Locked,
}

/// Reads `flag` of the terminal `fd` is open on.
pub fn get_flag(fd: BorrowedFd<'_>, flag: TtyFlag) -> io::Result<bool> {
    let req = match flag {
        TtyFlag::Exclusive => libc::TIOCGEXCL,
        TtyFlag::Packet => libc::TIOCGPKT,
        TtyFlag::Locked => libc::TIOCGPTLCK,
    };
    let mut v: libc::c_int = 0;
    // SAFETY: `v` is a live int the kernel writes; `fd` is borrowed for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut libc::c_int) };
    cvt(ret as libc::c_long)?;
    Ok(v != 0)
}

/// An ioctl whose argument points at one int the kernel writes.
fn get_int(fd: BorrowedFd<'_>, req: libc::Ioctl) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    // SAFETY: `v` is a live int the kernel writes (every request passed here writes one
    // int and nothing else); `fd` is borrowed for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, &mut v as *mut libc::c_int) };
    cvt(ret as libc::c_long)?;
    Ok(v)
}

/// An ioctl whose argument points at one int the kernel reads.
fn set_int(fd: BorrowedFd<'_>, req: libc::Ioctl, v: libc::c_int) -> io::Result<()> {
    // SAFETY: `v` is a live int the kernel only reads (every request passed here reads one
    // int); `fd` is borrowed for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, &v as *const libc::c_int) };
    cvt(ret as libc::c_long).map(drop)
}

/// An ioctl without an argument.
fn no_arg(fd: BorrowedFd<'_>, req: libc::Ioctl) -> io::Result<()> {
    // SAFETY: the requests passed here (TIOCEXCL, TIOCNXCL) take no argument and touch
    // no memory of ours; `fd` is borrowed for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), req, 0 as libc::c_ulong) };
    cvt(ret as libc::c_long).map(drop)
}

/// `ioctl(TIOCGPTN)`: the index of the pty whose master `fd` is (N of `/dev/pts/N`).
pub fn pty_index(fd: BorrowedFd<'_>) -> io::Result<u32> {
    get_int(fd, libc::TIOCGPTN).map(|v| v as u32)
}

/// ENOTTY as "none".
fn none_if_enotty(r: io::Result<libc::c_int>) -> io::Result<Option<libc::pid_t>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `ioctl(TIOCGSID)`: the session whose controlling terminal this is. On a pty master it
/// answers for the slave, from any process; on any other terminal only for a process it
/// is the controlling terminal of. `None`: no session (or not the caller's terminal).
pub fn session(fd: BorrowedFd<'_>) -> io::Result<Option<libc::pid_t>> {
    none_if_enotty(get_int(fd, libc::TIOCGSID))
}

/// `ioctl(TIOCGPGRP)`: the terminal's foreground process group (0: none), with the same
/// reach as [`session`].
pub fn foreground(fd: BorrowedFd<'_>) -> io::Result<Option<libc::pid_t>> {
    none_if_enotty(get_int(fd, libc::TIOCGPGRP))
}

/// `ioctl(TIOCGDEV)`: the device number of the terminal `fd` really is on (`/dev/tty`
/// and `/dev/console` answer with the terminal behind them; a pty master with its
/// slave's), as a `dev_t`.
pub fn device(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let v = get_int(fd, libc::TIOCGDEV)? as u32;
    // The kernel's new_encode_dev: minor bits 0-7 and 20-31, major bits 8-19.
    let major = (v >> 8) & 0xfff;
    let minor = (v & 0xff) | ((v >> 12) & 0xfff00);
    Ok(libc::makedev(major, minor))
}

/// `ioctl(TIOCPKT)`: packet mode on the pty master `fd`.
pub fn set_packet_mode(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    set_int(fd, libc::TIOCPKT, on as libc::c_int)
}

/// `ioctl(TIOCSPTLCK)`: locks (the slave cannot be opened) or unlocks the pty master `fd`.
pub fn set_pty_locked(fd: BorrowedFd<'_>, locked: bool) -> io::Result<()> {
    set_int(fd, libc::TIOCSPTLCK, locked as libc::c_int)
}

/// `ioctl(TIOCEXCL)` / `ioctl(TIOCNXCL)`: exclusive mode (further opens need
/// CAP_SYS_ADMIN) on the terminal `fd` is open on.
pub fn set_exclusive(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    no_arg(fd, if on { libc::TIOCEXCL } else { libc::TIOCNXCL })
}

/// `ioctl(FIONREAD)`: the bytes a read could take now (in canonical mode, the complete
/// lines only).
pub fn readable_bytes(fd: BorrowedFd<'_>) -> io::Result<usize> {
    get_int(fd, libc::FIONREAD).map(|v| v.max(0) as usize)
}

/// `ioctl(TIOCSTI)`: `byte` received by the terminal as if it had come from its other end
/// (processed by its line discipline at once, under its current settings). Needs
/// CAP_SYS_ADMIN unless the terminal is the caller's controlling terminal.
fn simulate_input(fd: BorrowedFd<'_>, byte: u8) -> io::Result<()> {
    // SAFETY: `byte` is a live byte the kernel only reads; `fd` is borrowed for the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSTI, &byte as *const u8) };
    cvt(ret as libc::c_long).map(drop)
}

/// What a pty's line discipline holds at most (N_TTY_BUF_SIZE - 1).
pub const LINE_BUFFER: usize = 4095;

/// Puts `data` back as unread input of the terminal `slave` (the bytes a read of it would
/// return, lines and a last partial line as they were in canonical mode), byte for byte:
/// each byte goes through the line discipline at once ([`simulate_input`]) while the
/// settings that would act on it a second time are off: echo (it was echoed when it first
/// came), signal characters, and input mapping (CR/NL translation, upper to lower case,
/// parity marks). The settings `t` (the terminal's own) are then set again. At most
/// [`LINE_BUFFER`] bytes: more would be dropped by the line discipline (refused with
/// EMSGSIZE before anything is written). Run with SIGTTOU blocked.
pub fn insert_input(slave: BorrowedFd<'_>, data: &[u8], t: &Termios) -> io::Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    if data.len() > LINE_BUFFER {
        return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    let mut quiet = *t;
    quiet.lflag &= !(libc::ECHO | libc::ECHONL | libc::ISIG);
    quiet.iflag &= !(libc::INLCR | libc::IGNCR | libc::ICRNL | libc::IUCLC | libc::PARMRK);
    set_termios(slave, &quiet)?;
    let sent = data.iter().try_for_each(|&b| simulate_input(slave, b));
    let back = set_termios(slave, t);
    sent.and(back)
}

/// Queues `data` as unread output at the master of the pty whose slave is `slave` (what
/// a read of the master would return), byte for byte: it is written at the slave with
/// output processing off (`t` without OPOST: no NL to CR-NL and the like a second time),
/// then `t` (the terminal's own settings) is set again. The master's own line discipline
/// is raw. The slave's description is made non-blocking for the write (its flags are put
/// back): bytes that do not fit fail with EAGAIN rather than wait. Run with SIGTTOU
/// blocked.
pub fn queue_output(slave: BorrowedFd<'_>, data: &[u8], t: &Termios) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if data.is_empty() {
        return Ok(());
    }
    let flags = OFlag::from_bits_retain(fcntl(slave, FcntlArg::F_GETFL)?);
    fcntl(slave, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    let mut raw = *t;
    raw.oflag &= !libc::OPOST;
    let written = set_termios(slave, &raw).and_then(|()| {
        let mut off = 0;
        while off < data.len() {
            match nix::unistd::write(slave, &data[off..]) {
                Ok(0) => return Err(io::Error::from_raw_os_error(libc::EAGAIN)),
                Ok(n) => off += n,
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    });
    let back = set_termios(slave, t);
    let flags_back = fcntl(slave, FcntlArg::F_SETFL(flags)).map(drop);
    written.and(back).and(flags_back.map_err(io::Error::from))
}

/// Runs `f` with SIGTTOU blocked in the calling thread: a terminal then accepts settings
/// (TCSETS, TIOCSWINSZ) and a new foreground group from a process of a background group
/// instead of stopping it, as it does for CRIU's restored task (all signals blocked).
pub fn with_sigttou_blocked<T>(f: impl FnOnce() -> T) -> io::Result<T> {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut block = SigSet::empty();
    block.add(Signal::SIGTTOU);
    let mut old = SigSet::empty();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&block), Some(&mut old))?;
    let out = f();
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None)?;
    Ok(out)
}

/// `tcsetpgrp`: makes `pgrp` the foreground process group of the terminal (the caller's
/// controlling terminal), with SIGTTOU blocked.
pub fn set_foreground(fd: BorrowedFd<'_>, pgrp: libc::pid_t) -> io::Result<()> {
    with_sigttou_blocked(|| nix::unistd::tcsetpgrp(fd, nix::unistd::Pid::from_raw(pgrp)))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn termios_of_new_pty_round_trips_and_speeds_stay_zero() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let fd = pty.slave.as_fd();
        let mut t = get_termios(fd).unwrap();
        assert_eq!((t.ispeed, t.ospeed), (0, 0));
        assert!(t.cc[KERNEL_NCC..].iter().all(|&c| c == 0));
        t.lflag ^= libc::ECHO;
        set_termios(fd, &t).unwrap();
        assert_eq!(get_termios(fd).unwrap(), t);
    }

    #[test]
    fn winsize_set_is_read_back() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let w = Winsize {
            row: 33,
            col: 101,
            xpixel: 0,
            ypixel: 0,
        };
        set_winsize(pty.slave.as_fd(), &w).unwrap();
        assert_eq!(get_winsize(pty.master.as_fd()).unwrap(), w);
    }

    #[test]
    fn pty_index_is_the_slave_number_and_device_is_the_slave() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let n = pty_index(pty.master.as_fd()).unwrap();
        let name = std::fs::read_link(format!("/proc/self/fd/{}", pty.slave.as_raw_fd())).unwrap();
        assert_eq!(name, std::path::PathBuf::from(format!("/dev/pts/{n}")));
        let rdev = std::os::unix::fs::MetadataExt::rdev(
            &std::fs::File::from(pty.slave.try_clone().unwrap())
                .metadata()
                .unwrap(),
        );
        assert_eq!(device(pty.slave.as_fd()).unwrap(), rdev);
        assert_eq!(device(pty.master.as_fd()).unwrap(), rdev);
    }

    #[test]
    fn session_of_pty_that_is_no_controlling_terminal_is_none() {
        let pty = nix::pty::openpty(None, None).unwrap();
        assert_eq!(session(pty.master.as_fd()).unwrap(), None);
        assert_eq!(session(pty.slave.as_fd()).unwrap(), None);
    }

    fn read_all(fd: BorrowedFd<'_>) -> Vec<u8> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        let fl = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).unwrap());
        fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK)).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = nix::unistd::read(fd, &mut buf) {
            out.extend_from_slice(&buf[..n]);
        }
        out
    }

    #[test]
    fn insert_input_is_not_echoed_and_keeps_the_partial_line() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let (m, s) = (pty.master.as_fd(), pty.slave.as_fd());
        let t = get_termios(s).unwrap();
        assert_ne!(t.lflag & libc::ICANON, 0);
        insert_input(s, b"one\rtwo\npart", &t).unwrap();
        assert_eq!(get_termios(s).unwrap(), t);
        assert_eq!(read_all(m), b"", "nothing echoed");
        // The complete line is readable, the partial one only once it is ended.
        assert_eq!(readable_bytes(s).unwrap(), 8);
        nix::unistd::write(pty.master.try_clone().unwrap(), b"\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(read_all(s), b"one\rtwo\npart\n");
    }

    #[test]
    fn queue_output_is_read_at_the_master_unprocessed() {
        let pty = nix::pty::openpty(None, None).unwrap();
        let (m, s) = (pty.master.as_fd(), pty.slave.as_fd());
        let t = get_termios(s).unwrap();
        assert_ne!(t.oflag & libc::OPOST, 0);
        queue_output(s, b"a\nb\r\n", &t).unwrap();
        assert_eq!(get_termios(s).unwrap(), t);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(read_all(m), b"a\nb\r\n");
    }

    #[test]
    fn get_flag_of_new_pty_slave_is_clear() {
        let pty = nix::pty::openpty(None, None).unwrap();
        assert!(!get_flag(pty.slave.as_fd(), TtyFlag::Exclusive).unwrap());
    }
}
