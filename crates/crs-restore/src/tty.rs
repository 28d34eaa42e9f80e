//! Terminals of a shell job (`--shell-job`), restored the way CRIU does it.
//!
//! The dumped pty slave is not recreated: its master stayed with the terminal emulator or
//! shell that ran the job. The task's terminal fds are connected to crs's own terminal
//! instead (the tty on crs's stdin, which must be crs's controlling terminal): the new
//! task opens it through `/proc/<crs>/fd/0` with the dumped flags, before the memory swap.
//! Before that, the dumped owner, locked termios, termios and window size are applied to
//! crs's terminal. The task is created in crs's session (it is crs's child), in its own
//! process group when it led one, else in crs's group; once it is rebuilt, that group
//! becomes the terminal's foreground group, so keys and job control reach the job.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::os::fd::AsFd;

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::fdinfo::{Fd_types, File_entry};
use crs_images::pb::tty::{Termios_entry, TtyType, Tty_file_entry, Tty_info_entry};
use crs_sys::tty::{self, Termios, Winsize, KERNEL_NCC};
use tracing::{debug, info};

use crate::images::Images;
use crate::RestoreError;

fn invalid(what: impl Into<String>) -> RestoreError {
    RestoreError::Invalid {
        image: "tty-info.img".into(),
        what: what.into(),
    }
}

fn tty_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Tty { what, source }
}

/// Reads tty-info.img (absent when the dump had no terminal) and checks every TTY file of
/// files.img against it: a known terminal, a pty, a regular-file entry for its path.
pub(crate) fn load(
    dir: &std::path::Path,
    files: &BTreeMap<u32, File_entry>,
) -> Result<BTreeMap<u32, Tty_info_entry>, RestoreError> {
    let mut infos = BTreeMap::new();
    let path = dir.join("tty-info.img");
    if path.exists() {
        let bytes = read_file(&path)?;
        let label = path.display().to_string();
        let all: Vec<Tty_info_entry> = ImageReader::new(&label, &bytes, "TTY_INFO")?.all()?;
        for e in all {
            if infos.insert(e.id(), e).is_some() {
                return Err(invalid("a terminal id twice"));
            }
        }
    }
    for f in files.values().filter(|f| f.type_() == Fd_types::TTY) {
        let t = tty_of(f)?;
        let info = infos.get(&t.tty_info_id()).ok_or_else(|| {
            invalid(format!(
                "file id {} names terminal {}, which is absent",
                f.id(),
                t.tty_info_id()
            ))
        })?;
        if info.type_() != TtyType::PTY || t.tty_info_id() & 1 != 0 {
            return Err(RestoreError::Unsupported {
                what: format!(
                    "tty-info.img: terminal {} of type {:?} (only the pty slave of a shell job)",
                    t.tty_info_id(),
                    info.type_()
                ),
            });
        }
        let reg_ok = t
            .regf_id
            .and_then(|id| files.get(&id))
            .is_some_and(|r| r.type_() == Fd_types::REG && r.reg.is_some());
        if !reg_ok {
            return Err(RestoreError::Invalid {
                image: "files.img".into(),
                what: format!("tty file {} has no regular-file entry for its path", f.id()),
            });
        }
    }
    Ok(infos)
}

/// The tty_file_entry of a TTY file.
pub(crate) fn tty_of(f: &File_entry) -> Result<&Tty_file_entry, RestoreError> {
    f.tty.as_ref().ok_or_else(|| RestoreError::Invalid {
        image: "files.img".into(),
        what: format!("file id {} has no tty entry", f.id()),
    })
}

/// The first terminal the task's fds use, if any: (fd, its terminal).
fn first_terminal(images: &Images) -> Option<(u32, &Tty_info_entry)> {
    images
        .fdinfo
        .iter()
        .find(|e| e.type_() == Fd_types::TTY)
        .and_then(|e| {
            let t = images.files.get(&e.id())?.tty.as_ref()?;
            Some((e.fd(), images.file_images.ttys.get(&t.tty_info_id())?))
        })
}

/// Refuses terminal fds without `--shell-job`; the path the new task opens crs's
/// terminal by.
pub(crate) fn own_terminal_path(images: &Images, shell_job: bool) -> Result<String, RestoreError> {
    if let Some((fd, _)) = first_terminal(images) {
        if !shell_job {
            return Err(RestoreError::TtyNeedsShellJob { fd });
        }
    }
    Ok(format!("/proc/{}/fd/0", std::process::id()))
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

/// When the task has terminal fds: checks that crs has a terminal and applies the dumped
/// owner and settings to it (CRIU's restore_tty_params: locked termios, refused without
/// CAP_SYS_ADMIN unless unchanged, then termios and window size). Returns whether the
/// task has a terminal.
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
    tty::with_sigttou_blocked(|| -> Result<(), RestoreError> {
        if let Some(tl) = info.termios_locked.as_ref() {
            let tl = termios_of(tl);
            if let Err(e) = tty::set_locked_termios(term, &tl) {
                let same = e.raw_os_error() == Some(libc::EPERM)
                    && tty::get_locked_termios(term).is_ok_and(|now| now == tl);
                if !same {
                    return Err(tty_err("setting the locked termios of crs's terminal")(e));
                }
            }
        }
        if let Some(t) = info.termios.as_ref() {
            tty::set_termios(term, &termios_of(t))
                .map_err(tty_err("setting the termios of crs's terminal"))?;
        }
        if let Some(w) = info.winsize.as_ref() {
            let w = Winsize {
                row: w.ws_row() as u16,
                col: w.ws_col() as u16,
                xpixel: w.ws_xpixel() as u16,
                ypixel: w.ws_ypixel() as u16,
            };
            tty::set_winsize(term, &w)
                .map_err(tty_err("setting the window size of crs's terminal"))?;
        }
        Ok(())
    })
    .map_err(tty_err("blocking SIGTTOU"))??;
    info!(
        fd,
        index = info.pty.index(),
        "terminal fds connected to crs's terminal"
    );
    Ok(true)
}

/// Makes the restored job the foreground of crs's terminal, as CRIU does for a job that
/// does not lead its session: its own group when it led one, else crs's group.
pub(crate) fn make_foreground(images: &Images, pid: i32) -> Result<(), RestoreError> {
    if images.pstree.sid() == pid as u32 {
        return Ok(());
    }
    let pgrp = if images.pstree.pgid() == pid as u32 {
        pid
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
    // getpgrp() through /proc (this crate has no nix): the third field after the
    // parenthesised comm of /proc/self/stat.
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
}
