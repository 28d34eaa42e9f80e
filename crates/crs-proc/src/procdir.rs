//! The I/O layer: a `/proc/<pid>` directory handle bound to a pidfd, reading files relative
//! to it with `openat`, so every read names the process that was opened, never a process that
//! later reused its pid.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{openat, readlinkat, Dir, Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::process::{pidfd_open, Pid, PidfdFlags};

use crate::error::{Error, ParseError};
use crate::{
    parse_auxv, parse_cgroup, parse_children, parse_fdinfo, parse_limits, parse_locks,
    parse_loginuid, parse_maps, parse_mountinfo, parse_net_inet, parse_net_unix, parse_ns_link,
    parse_pagemap, parse_personality, parse_smaps, parse_stat, parse_status, parse_timers, Auxv,
    CgroupEntry, FdInfo, FileLock, InetSocketLine, Limits, MountInfo, NsLink, PagemapEntry,
    PosixTimer, ProcFile, SmapsEntry, Stat, Status, UnixSocketLine, Vma,
};

/// Page size on x86_64 (pagemap has one entry per page of this size).
pub const PAGE_SIZE: u64 = 4096;

/// A directory below /proc opened with `O_PATH`, plus its path for messages.
#[derive(Debug)]
struct Dir0 {
    fd: OwnedFd,
    path: PathBuf,
    /// Files read ahead of time (see [`ProcDir::prefetch`]): (relative path, bytes). Each
    /// is handed out once, to the first read of that path; later reads go to /proc.
    prefetched: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Dir0 {
    fn open_at(base: BorrowedFd<'_>, rel: &str, shown: PathBuf) -> Result<Dir0, Error> {
        let fd = openat(
            base,
            rel,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::OpenDir {
            path: shown.clone(),
            source: e.into(),
        })?;
        Ok(Dir0 {
            fd,
            path: shown,
            prefetched: Mutex::new(Vec::new()),
        })
    }

    fn take_prefetched(&self, rel: &str) -> Option<Vec<u8>> {
        let mut p = self.prefetched.lock().unwrap_or_else(|e| e.into_inner());
        let i = p.iter().position(|(r, _)| r == rel)?;
        Some(p.swap_remove(i).1)
    }

    fn sub(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    fn open_file(&self, rel: &str, flags: OFlags) -> Result<OwnedFd, Error> {
        openat(
            &self.fd,
            rel,
            flags | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| Error::Read {
            path: self.sub(rel),
            source: e.into(),
        })
    }

    fn read(&self, rel: &str) -> Result<Vec<u8>, Error> {
        if let Some(bytes) = self.take_prefetched(rel) {
            return Ok(bytes);
        }
        let fd = self.open_file(rel, OFlags::RDONLY)?;
        let mut buf = Vec::new();
        File::from(fd)
            .read_to_end(&mut buf)
            .map_err(|source| Error::Read {
                path: self.sub(rel),
                source,
            })?;
        Ok(buf)
    }

    fn parse<T>(
        &self,
        rel: &str,
        parser: impl FnOnce(&[u8]) -> Result<T, ParseError>,
    ) -> Result<T, Error> {
        let bytes = self.read(rel)?;
        parser(&bytes).map_err(|source| Error::Parse {
            path: self.sub(rel),
            source,
        })
    }

    fn readlink(&self, rel: &str) -> Result<PathBuf, Error> {
        let target = readlinkat(&self.fd, rel, Vec::new()).map_err(|e| Error::ReadLink {
            path: self.sub(rel),
            source: e.into(),
        })?;
        Ok(PathBuf::from(OsString::from_vec(target.into_bytes())))
    }

    /// The mode bits of the symlink `rel` itself (not followed).
    fn link_mode(&self, rel: &str) -> Result<u32, Error> {
        let st = rustix::fs::statat(&self.fd, rel, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).map_err(
            |e| Error::Read {
                path: self.sub(rel),
                source: e.into(),
            },
        )?;
        Ok(st.st_mode)
    }

    /// Names in directory `rel` (without `.` and `..`).
    fn list(&self, rel: &str) -> Result<Vec<Vec<u8>>, Error> {
        let err = |e: rustix::io::Errno| Error::ListDir {
            path: self.sub(rel),
            source: e.into(),
        };
        let fd = openat(
            &self.fd,
            rel,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(err)?;
        let dir = Dir::new(fd).map_err(err)?;
        let mut out = Vec::new();
        for ent in dir {
            let ent = ent.map_err(err)?;
            let name = ent.file_name().to_bytes();
            if name != b"." && name != b".." {
                out.push(name.to_vec());
            }
        }
        Ok(out)
    }

    /// Numeric entries of directory `rel`, ascending.
    fn list_numbers(&self, rel: &str) -> Result<Vec<i32>, Error> {
        let mut out = self
            .list(rel)?
            .into_iter()
            .map(|n| {
                std::str::from_utf8(&n)
                    .ok()
                    .and_then(|s| s.parse::<i32>().ok())
                    .ok_or_else(|| Error::BadEntry {
                        path: self.sub(rel),
                        name: String::from_utf8_lossy(&n).into_owned(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_unstable();
        Ok(out)
    }
}

/// ENOENT or ESRCH: the thread or process went away.
fn is_gone(e: &io::Error) -> bool {
    let code = e.raw_os_error();
    code == Some(Errno::NOENT.raw_os_error()) || code == Some(Errno::SRCH.raw_os_error())
}

/// A `/proc/<pid>` directory bound to the process: see [`ProcDir::open`].
#[derive(Debug)]
pub struct ProcDir {
    pid: i32,
    pidfd: OwnedFd,
    dir: Dir0,
}

/// A `/proc/<pid>/task/<tid>` directory of one thread of a [`ProcDir`].
#[derive(Debug)]
pub struct TaskDir {
    tid: i32,
    dir: Dir0,
}

/// Reads the `Pid:` line of `/proc/thread-self/fdinfo/<pidfd>`: the pid the pidfd refers to in
/// this /proc's namespace, or -1 once the process has been reaped.
fn pidfd_pid(pid: i32, pidfd: BorrowedFd<'_>) -> Result<i32, Error> {
    let path = PathBuf::from(format!("/proc/thread-self/fdinfo/{}", pidfd.as_raw_fd()));
    let bytes = std::fs::read(&path).map_err(|e| Error::PidfdCheck {
        pid,
        path: path.clone(),
        source: Box::new(e),
    })?;
    let info = parse_fdinfo(&bytes).map_err(|e| Error::PidfdCheck {
        pid,
        path: path.clone(),
        source: Box::new(e),
    })?;
    let p = info.pidfd.ok_or_else(|| Error::PidfdCheck {
        pid,
        path,
        source: "not a pidfd (no Pid: line)".into(),
    })?;
    Ok(p.pid)
}

impl ProcDir {
    /// Opens `/proc/<pid>` bound to the process: a pidfd is opened first, then the
    /// directory, then the pidfd is checked to still name a live (or zombie, not yet reaped)
    /// process with that pid. A pid cannot be reused before its process is reaped, so a
    /// directory opened while the check holds belongs to the pidfd's process; reads through
    /// it after the process dies fail (ESRCH) rather than reaching a new process.
    ///
    /// `pid` must be a thread-group leader (pidfd_open's rule); use [`ProcDir::task`] for
    /// other threads.
    pub fn open(pid: i32) -> Result<ProcDir, Error> {
        // Pid::from_raw asserts on negative values: reject them (and 0) first.
        let raw = (pid > 0)
            .then(|| Pid::from_raw(pid))
            .flatten()
            .ok_or_else(|| Error::PidfdOpen {
                pid,
                source: io::Error::from(io::ErrorKind::InvalidInput),
            })?;
        let pidfd = pidfd_open(raw, PidfdFlags::empty()).map_err(|e| Error::PidfdOpen {
            pid,
            source: e.into(),
        })?;
        ProcDir::open_with_pidfd(pid, pidfd)
    }

    /// Like [`ProcDir::open`] with a pidfd the caller already holds (e.g. from clone3 or
    /// pidfd_open done elsewhere). Fails with [`Error::PidfdMismatch`] if the pidfd is for
    /// another pid.
    pub fn open_with_pidfd(pid: i32, pidfd: OwnedFd) -> Result<ProcDir, Error> {
        let dir = Dir0::open_at(
            CWD,
            &format!("/proc/{pid}"),
            PathBuf::from(format!("/proc/{pid}")),
        )?;
        match pidfd_pid(pid, pidfd.as_fd())? {
            -1 => Err(Error::Vanished { pid }),
            p if p == pid => Ok(ProcDir { pid, pidfd, dir }),
            found => Err(Error::PidfdMismatch { pid, found }),
        }
    }

    /// The pid.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The pidfd the directory is bound to (for pidfd_getfd, pidfd_send_signal, waitid).
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.pidfd.as_fd()
    }

    /// The `O_PATH` directory fd of `/proc/<pid>`.
    pub fn dir_fd(&self) -> BorrowedFd<'_> {
        self.dir.fd.as_fd()
    }

    /// The directory's path, for messages.
    pub fn path(&self) -> &Path {
        &self.dir.path
    }

    /// True while the process has not been reaped (a zombie counts as alive here).
    pub fn is_alive(&self) -> Result<bool, Error> {
        Ok(pidfd_pid(self.pid, self.pidfd.as_fd())? != -1)
    }

    /// Reads any file below the directory, raw (`rel` such as `"environ"`, `"net/unix"`).
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, Error> {
        self.dir.read(rel)
    }

    /// Opens `task/<tid>` (the lookup is relative to this process, so only its own threads
    /// are found). Files prefetched below it move to the returned directory.
    pub fn task(&self, tid: i32) -> Result<TaskDir, Error> {
        let rel = format!("task/{tid}");
        let dir = Dir0::open_at(self.dir.fd.as_fd(), &rel, self.dir.sub(&rel))?;
        let prefix = format!("{rel}/");
        let mut mine = self
            .dir
            .prefetched
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let (theirs, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut *mine)
            .into_iter()
            .partition(|(r, _)| r.starts_with(&prefix));
        *mine = keep;
        *dir.prefetched.lock().unwrap_or_else(|e| e.into_inner()) = theirs
            .into_iter()
            .map(|(r, b)| (r[prefix.len()..].to_string(), b))
            .collect();
        Ok(TaskDir { tid, dir })
    }

    /// Reads the files `rels` (relative paths such as `"smaps"`, `"task/7/status"`) now,
    /// and keeps their bytes for the first later read of each (through [`ProcDir::read`],
    /// a parsing accessor, or the [`TaskDir`] of that thread), which then costs nothing.
    /// For a caller that reads many stopped processes and can read them in parallel
    /// before it works on them one by one. A file that cannot be read now is left out:
    /// the later read reports the error.
    pub fn prefetch(&self, rels: &[String]) {
        let mut got = Vec::with_capacity(rels.len());
        for rel in rels {
            if let Ok(bytes) = self.dir.read(rel) {
                got.push((rel.clone(), bytes));
            }
        }
        self.dir
            .prefetched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(got);
    }

    /// Thread ids in `task/`, ascending.
    pub fn tasks(&self) -> Result<Vec<i32>, Error> {
        self.dir.list_numbers("task")
    }

    /// Children of every thread (union of `task/*/children`), ascending. A thread that
    /// exits while this runs is skipped.
    pub fn children(&self) -> Result<Vec<i32>, Error> {
        let mut out = Vec::new();
        for tid in self.tasks()? {
            let rel = format!("task/{tid}/children");
            match self.dir.parse(&rel, parse_children) {
                Ok(mut c) => out.append(&mut c),
                Err(Error::Read { source, .. }) if is_gone(&source) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Open fd numbers (`fd/`), ascending.
    pub fn fds(&self) -> Result<Vec<i32>, Error> {
        self.dir.list_numbers("fd")
    }

    /// Target of `fd/<fd>` (`/path`, `pipe:[N]`, `socket:[N]`, `anon_inode:[eventfd]`, ...).
    pub fn fd_link(&self, fd: i32) -> Result<PathBuf, Error> {
        self.dir.readlink(&format!("fd/{fd}"))
    }

    /// `fdinfo/<fd>`.
    pub fn fdinfo(&self, fd: i32) -> Result<FdInfo, Error> {
        self.dir.parse(&format!("fdinfo/{fd}"), parse_fdinfo)
    }

    /// Target of `exe`.
    pub fn exe(&self) -> Result<PathBuf, Error> {
        self.dir.readlink("exe")
    }

    /// Target of `cwd`.
    pub fn cwd(&self) -> Result<PathBuf, Error> {
        self.dir.readlink("cwd")
    }

    /// Target of `root`.
    pub fn root(&self) -> Result<PathBuf, Error> {
        self.dir.readlink("root")
    }

    fn map_file_name(start: u64, end: u64) -> String {
        format!("map_files/{start:x}-{end:x}")
    }

    /// Target of `map_files/<start>-<end>` (needs CAP_SYS_ADMIN).
    pub fn map_file_link(&self, start: u64, end: u64) -> Result<PathBuf, Error> {
        self.dir.readlink(&Self::map_file_name(start, end))
    }

    /// How the file behind a mapping was opened: the `map_files/` link's owner read/write
    /// bits are its open mode (0o400 read, 0o200 write), as O_RDONLY / O_WRONLY / O_RDWR.
    pub fn map_file_access(&self, start: u64, end: u64) -> Result<i32, Error> {
        let mode = self.dir.link_mode(&Self::map_file_name(start, end))?;
        Ok(match mode & 0o600 {
            0o600 => 2, // O_RDWR
            0o200 => 1, // O_WRONLY
            _ => 0,     // O_RDONLY
        })
    }

    /// Opens the file behind a mapping through `map_files/` (works for deleted files and
    /// memfds). `readable` opens it O_RDONLY (to copy contents), otherwise O_PATH (enough
    /// to fstat it).
    pub fn open_map_file(&self, start: u64, end: u64, readable: bool) -> Result<OwnedFd, Error> {
        let flags = if readable {
            OFlags::RDONLY
        } else {
            OFlags::PATH
        };
        self.dir.open_file(&Self::map_file_name(start, end), flags)
    }

    /// Value of `ns/<name>` (`mnt`, `net`, `pid`, `pid_for_children`, `user`, ...).
    pub fn ns_link(&self, name: &str) -> Result<NsLink, Error> {
        let rel = format!("ns/{name}");
        let target = self.dir.readlink(&rel)?;
        parse_ns_link(target.as_os_str().as_encoded_bytes()).map_err(|source| Error::Parse {
            path: self.dir.sub(&rel),
            source,
        })
    }

    /// Every `ns/*` link, by name, sorted by name.
    pub fn ns_links(&self) -> Result<Vec<(String, NsLink)>, Error> {
        let mut names: Vec<String> = self
            .dir
            .list("ns")?
            .into_iter()
            .map(|n| String::from_utf8_lossy(&n).into_owned())
            .collect();
        names.sort();
        names
            .into_iter()
            .map(|n| self.ns_link(&n).map(|l| (n, l)))
            .collect()
    }

    /// `stat` (of the thread-group leader).
    pub fn stat(&self) -> Result<Stat, Error> {
        self.dir.parse("stat", parse_stat)
    }

    /// `status` (of the thread-group leader).
    pub fn status(&self) -> Result<Status, Error> {
        self.dir.parse("status", parse_status)
    }

    /// `maps`.
    pub fn maps(&self) -> Result<Vec<Vma>, Error> {
        self.dir.parse("maps", parse_maps)
    }

    /// `smaps`.
    pub fn smaps(&self) -> Result<Vec<SmapsEntry>, Error> {
        self.dir.parse("smaps", parse_smaps)
    }

    /// `limits`.
    pub fn limits(&self) -> Result<Limits, Error> {
        self.dir.parse("limits", parse_limits)
    }

    /// `mountinfo`.
    pub fn mountinfo(&self) -> Result<Vec<MountInfo>, Error> {
        self.dir.parse("mountinfo", parse_mountinfo)
    }

    /// `cgroup`.
    pub fn cgroup(&self) -> Result<Vec<CgroupEntry>, Error> {
        self.dir.parse("cgroup", parse_cgroup)
    }

    /// `auxv`.
    pub fn auxv(&self) -> Result<Auxv, Error> {
        self.dir.parse("auxv", parse_auxv)
    }

    /// `timers` (POSIX timers).
    pub fn timers(&self) -> Result<Vec<PosixTimer>, Error> {
        self.dir.parse("timers", parse_timers)
    }

    /// `personality`.
    pub fn personality(&self) -> Result<u32, Error> {
        self.dir.parse("personality", parse_personality)
    }

    /// `loginuid`.
    pub fn loginuid(&self) -> Result<u32, Error> {
        self.dir.parse("loginuid", parse_loginuid)
    }

    /// `net/unix` of the process's network namespace.
    pub fn net_unix(&self) -> Result<Vec<UnixSocketLine>, Error> {
        self.dir.parse("net/unix", parse_net_unix)
    }

    /// `net/tcp`, `net/tcp6`, `net/udp` or `net/udp6` (`kind` is one of those [`ProcFile`]s).
    pub fn net_inet(&self, kind: ProcFile) -> Result<Vec<InetSocketLine>, Error> {
        let rel = match kind {
            ProcFile::NetTcp6 => "net/tcp6",
            ProcFile::NetUdp => "net/udp",
            ProcFile::NetUdp6 => "net/udp6",
            _ => "net/tcp",
        };
        self.dir.parse(rel, |b| parse_net_inet(kind, b))
    }

    /// Opens `pagemap` for reading entries by address.
    pub fn pagemap(&self) -> Result<Pagemap, Error> {
        let fd = self.dir.open_file("pagemap", OFlags::RDONLY)?;
        Ok(Pagemap {
            file: File::from(fd),
            path: self.dir.sub("pagemap"),
        })
    }
}

impl TaskDir {
    /// The thread id.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Reads any file below the task directory, raw.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>, Error> {
        self.dir.read(rel)
    }

    /// `stat` of the thread.
    pub fn stat(&self) -> Result<Stat, Error> {
        self.dir.parse("stat", parse_stat)
    }

    /// `status` of the thread (its own SigPnd, SigBlk, credentials).
    pub fn status(&self) -> Result<Status, Error> {
        self.dir.parse("status", parse_status)
    }

    /// `children` of the thread.
    pub fn children(&self) -> Result<Vec<i32>, Error> {
        self.dir.parse("children", parse_children)
    }

    /// Value of the thread's `ns/<name>` link.
    pub fn ns_link(&self, name: &str) -> Result<NsLink, Error> {
        let rel = format!("ns/{name}");
        let target = self.dir.readlink(&rel)?;
        parse_ns_link(target.as_os_str().as_encoded_bytes()).map_err(|source| Error::Parse {
            path: self.dir.sub(&rel),
            source,
        })
    }
}

/// An open `/proc/<pid>/pagemap`.
#[derive(Debug)]
pub struct Pagemap {
    file: File,
    path: PathBuf,
}

impl Pagemap {
    /// Entries for `pages` pages starting at the page containing `vaddr`.
    pub fn read(&self, vaddr: u64, pages: usize) -> Result<Vec<PagemapEntry>, Error> {
        let offset = (vaddr / PAGE_SIZE) * 8;
        let len = pages.checked_mul(8).ok_or_else(|| Error::Read {
            path: self.path.clone(),
            source: io::Error::from(io::ErrorKind::InvalidInput),
        })?;
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| Error::Read {
                path: self.path.clone(),
                source,
            })?;
        parse_pagemap(&buf).map_err(|source| Error::Parse {
            path: self.path.clone(),
            source,
        })
    }

    /// The underlying file (for PAGEMAP_SCAN ioctls done elsewhere).
    pub fn file(&self) -> &File {
        &self.file
    }
}

/// Reads `/proc/locks` (all locks of the system, in this /proc's pid namespace).
pub fn read_locks() -> Result<Vec<FileLock>, Error> {
    let path = PathBuf::from("/proc/locks");
    let bytes = std::fs::read(&path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    parse_locks(&bytes).map_err(|source| Error::Parse { path, source })
}
