//! Terminal ioctls for shell jobs: termios (plain and locked) and window size read and set
//! the way CRIU does it, and the pty state flags (exclusive, packet mode, locked).
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
    fn get_flag_of_new_pty_slave_is_clear() {
        let pty = nix::pty::openpty(None, None).unwrap();
        assert!(!get_flag(pty.slave.as_fd(), TtyFlag::Exclusive).unwrap());
    }
}
