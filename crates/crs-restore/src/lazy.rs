//! Lazy restore (`crs restore --lazy-pages`): the tree runs as soon as everything but its
//! private anonymous memory is rebuilt; that memory is registered with a userfaultfd made
//! in each process (missing-page mode), and a lazy-pages server (`crs __lazy-server`,
//! started by the restore, outliving it) fills each page on its first touch from the
//! images, and the rest in the background, then ends.
//!
//! The server also follows what the tree does meanwhile: a page discarded or unmapped
//! (MADV_DONTNEED, munmap) is not filled again from the images (a touch gets zeros, as
//! the kernel would give); memory moved (mremap) takes its pages to the new address; a
//! fork hands the server the child's userfaultfd, and the child's missing pages are the
//! parent's (both are as at the restore until touched).
//!
//! Restore to server: one message on a stream socket, a header (`u32` count of fds,
//! `u32` length of the text) with one userfaultfd per process passed along, then the text:
//! `file IDX PATH`, then per process `proc PID` followed by its `run ADDR LEN FILE OFFSET`
//! lines (pages to fill, from pages image FILE at OFFSET).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crs_sys::uffd::{self, Event};
use crs_sys::unixsk as sk;
use tracing::debug;

use crate::images::{PageRun, PAGE};
use crate::RestoreError;

/// Pages filled at a time in the background.
const PUSH_PAGES: u64 = 64;

/// A page run to fill lazily: address, length, pages image, offset in it.
#[derive(Clone, Debug)]
pub(crate) struct LazyRun {
    pub addr: u64,
    pub len: u64,
    pub file: PathBuf,
    pub offset: u64,
}

/// One process's lazy memory: its userfaultfd (taken out of it) and the runs to fill.
pub(crate) struct LazyJob {
    pub pid: i32,
    pub uffd: OwnedFd,
    pub runs: Vec<LazyRun>,
}

/// The runs of `runs` (read from `file`) inside `ranges` (sorted), split at their edges.
pub(crate) fn runs_within(runs: &[PageRun], file: &Path, ranges: &[(u64, u64)]) -> Vec<LazyRun> {
    let mut out = Vec::new();
    for r in runs {
        for &(s, e) in ranges {
            let (a, b) = (r.addr.max(s), (r.addr + r.len).min(e));
            if a < b {
                out.push(LazyRun {
                    addr: a,
                    len: b - a,
                    file: file.to_path_buf(),
                    offset: r.offset + (a - r.addr),
                });
            }
        }
    }
    out
}

fn lazy_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RestoreError {
    let what = what.into();
    move |source| RestoreError::Lazy { what, source }
}

/// The restore's connection to its lazy-pages server: each process's lazy memory is
/// handed over as soon as it is registered, so that the server serves its faults while the
/// rest of the tree is rebuilt (the build itself touches that memory: stacks, rseq).
pub(crate) struct Link {
    sock: std::sync::Mutex<std::os::unix::net::UnixStream>,
}

impl Link {
    /// Starts the lazy-pages server (`exe __lazy-server`), which outlives the restore.
    pub(crate) fn start(exe: &Path) -> Result<Link, RestoreError> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(lazy_err("a socket pair for the lazy-pages server"))?;
        let child = std::process::Command::new(exe)
            .arg("__lazy-server")
            .stdin(std::process::Stdio::from(OwnedFd::from(theirs)))
            .stdout(std::process::Stdio::null())
            // Its errors go where the restore's own go.
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .map_err(lazy_err(format!(
                "starting {} __lazy-server",
                exe.display()
            )))?;
        // It lives on by itself (a new session); whoever inherits it reaps it.
        drop(child);
        Ok(Link {
            sock: std::sync::Mutex::new(ours),
        })
    }

    /// Hands `job` to the server, which holds it when this returns.
    pub(crate) fn send(&self, job: LazyJob) -> Result<(), RestoreError> {
        let mut files: Vec<PathBuf> = Vec::new();
        let mut text = String::new();
        for r in &job.runs {
            if !files.contains(&r.file) {
                text += &format!("file {} {}\n", files.len(), r.file.display());
                files.push(r.file.clone());
            }
        }
        text += &format!("proc {}\n", job.pid);
        for r in &job.runs {
            let f = files
                .iter()
                .position(|p| *p == r.file)
                .expect("listed above");
            text += &format!("run {} {} {f} {}\n", r.addr, r.len, r.offset);
        }
        let mut head = Vec::with_capacity(8);
        head.extend_from_slice(&1u32.to_ne_bytes());
        head.extend_from_slice(&(text.len() as u32).to_ne_bytes());
        let mut s = self.sock.lock().unwrap_or_else(|p| p.into_inner());
        let sent = sk::send_blocking_with_fds(s.as_fd(), &head, &[job.uffd.as_fd()])
            .map_err(lazy_err("handing a userfaultfd to the lazy-pages server"))?;
        s.write_all(&head[sent..])
            .and_then(|()| s.write_all(text.as_bytes()))
            .map_err(lazy_err("telling the lazy-pages server what to fill"))?;
        let mut ok = [0u8; 1];
        match s.read(&mut ok) {
            Ok(1) => {}
            _ => {
                return Err(RestoreError::Lazy {
                    what: format!("the lazy-pages server did not take pid {}", job.pid),
                    source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
                })
            }
        }
        debug!(
            pid = job.pid,
            runs = job.runs.len(),
            "lazy memory handed to the server"
        );
        Ok(())
    }
}

/// One process the server fills.
struct Served {
    uffd: OwnedFd,
    /// Pages whose fill met EAGAIN: filled again once the events are read.
    retry: Vec<u64>,
    pending: VecDeque<(u64, u64, usize, u64)>,
    /// Every run it started with (a fault outside them, or in `removed`, gets zeros).
    all: Vec<(u64, u64, usize, u64)>,
    removed: Vec<(u64, u64)>,
}

impl Served {
    fn is_removed(&self, a: u64) -> bool {
        self.removed.iter().any(|&(s, e)| a >= s && a < e)
    }

    fn source(&self, page: u64) -> Option<(usize, u64)> {
        if self.is_removed(page) {
            return None;
        }
        self.all
            .iter()
            .find(|&&(a, l, _, _)| page >= a && page < a + l)
            .map(|&(a, _, f, off)| (f, off + (page - a)))
    }
}

/// The server (`crs __lazy-server`, its socket on stdin). Returns its exit code.
pub fn server_main() -> i32 {
    let _ = nix::unistd::setsid();
    match serve() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("crs lazy-pages server: {e}");
            1
        }
    }
}

fn serve() -> Result<(), RestoreError> {
    let sock = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(lazy_err("its socket"))?;
    let mut control = Some(std::os::unix::net::UnixStream::from(sock));
    let mut files: Vec<File> = Vec::new();
    let mut procs: Vec<Served> = Vec::new();
    run(&mut control, &mut files, &mut procs)
}

/// Reads one process from the restore: false once the restore closed its end.
fn take_job(
    s: &mut std::os::unix::net::UnixStream,
    files: &mut Vec<File>,
    procs: &mut Vec<Served>,
) -> Result<bool, RestoreError> {
    let mut head = [0u8; 8];
    let (n, fds) = sk::recv_with_fds(s.as_fd(), &mut head).map_err(lazy_err("a header"))?;
    if n == 0 {
        return Ok(false);
    }
    s.read_exact(&mut head[n..]).map_err(lazy_err("a header"))?;
    let len = u32::from_ne_bytes(head[4..].try_into().expect("4 bytes")) as usize;
    let mut text = vec![0u8; len];
    s.read_exact(&mut text).map_err(lazy_err("the runs"))?;
    let Some(uffd) = fds.into_iter().next() else {
        return Err(RestoreError::Lazy {
            what: "a process without its userfaultfd".into(),
            source: std::io::Error::from_raw_os_error(libc::EPROTO),
        });
    };
    let mut local: Vec<usize> = Vec::new();
    let mut p = Served {
        uffd,
        pending: VecDeque::new(),
        all: Vec::new(),
        removed: Vec::new(),
        retry: Vec::new(),
    };
    for line in String::from_utf8_lossy(&text).lines() {
        let w: Vec<&str> = line.split(' ').collect();
        let num = |i: usize| w.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        match w.first().copied() {
            Some("file") => {
                let path = line.splitn(3, ' ').nth(2).unwrap_or_default();
                files.push(File::open(path).map_err(lazy_err(format!("opening {path}")))?);
                local.push(files.len() - 1);
            }
            Some("run") => {
                let f = local.get(num(3) as usize).copied().unwrap_or(0);
                let r = (num(1), num(2), f, num(4));
                p.pending.push_back(r);
                p.all.push(r);
            }
            _ => {}
        }
    }
    procs.push(p);
    s.write_all(&[1])
        .map_err(lazy_err("answering the restore"))?;
    Ok(true)
}

fn run(
    control: &mut Option<std::os::unix::net::UnixStream>,
    files: &mut Vec<File>,
    procs: &mut Vec<Served>,
) -> Result<(), RestoreError> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut events = Vec::new();
    let mut buf = vec![0u8; (PUSH_PAGES * PAGE) as usize];
    loop {
        let pushing = procs
            .iter()
            .any(|p| !p.pending.is_empty() || !p.retry.is_empty());
        if !pushing && control.is_none() {
            return Ok(()); // every page is in: the userfaultfds close, the memory is plain
        }
        let mut fds: Vec<PollFd<'_>> = procs
            .iter()
            .map(|p| PollFd::new(p.uffd.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Some(c) = control.as_ref() {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
        let timeout = if pushing {
            PollTimeout::ZERO
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(lazy_err("poll")(e.into())),
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut forked = Vec::new();
        for (i, p) in procs.iter_mut().enumerate() {
            if ready[i] {
                events.clear();
                if uffd::read_events(p.uffd.as_fd(), &mut events).is_err() {
                    // The process is gone: nothing more to fill in it.
                    p.pending.clear();
                    continue;
                }
                for &e in &events {
                    if let Some(child) = event(files, p, e, &mut buf)? {
                        forked.push(child);
                    }
                }
            }
        }
        let n = procs.len();
        procs.extend(forked);
        if control.is_some() && ready.get(n).copied().unwrap_or(false) {
            let c = control.as_mut().expect("checked");
            match take_job(c, files, procs) {
                Ok(true) => {}
                // The restore is done (or gone): no more processes come.
                Ok(false) | Err(_) => *control = None,
            }
        }
        // Faults that met a changing address space, then a piece of the background push.
        for p in procs.iter_mut() {
            for page in std::mem::take(&mut p.retry) {
                fill(files, p, page, PAGE, &mut buf[..PAGE as usize])?;
            }
        }
        if let Some(p) = procs.iter_mut().find(|p| !p.pending.is_empty()) {
            push(files, p, &mut buf)?;
        }
    }
}

/// Serves one event; a fork gives the child's process to serve.
fn event(
    files: &[File],
    p: &mut Served,
    e: Event,
    buf: &mut [u8],
) -> Result<Option<Served>, RestoreError> {
    match e {
        Event::PageFault { address, .. } => {
            let page = address & !(PAGE - 1);
            fill(files, p, page, PAGE, &mut buf[..PAGE as usize])?;
        }
        Event::Removed { start, end } => p.removed.push((start, end)),
        Event::Remapped { from, to, len } => {
            // Pages not filled yet move with the memory.
            let moved: Vec<_> = p
                .all
                .iter()
                .filter_map(|&(a, l, f, off)| {
                    let (s, t) = (a.max(from), (a + l).min(from + len));
                    (s < t).then_some((s - from + to, t - s, f, off + (s - a)))
                })
                .collect();
            p.removed.push((from, from + len));
            p.removed.retain(|&(s, e)| !(s < to + len && e > to));
            for r in moved {
                p.pending.push_back(r);
                p.all.push(r);
            }
        }
        Event::Fork { ufd } => {
            let owned = crs_sys::inherited::dup_inherited(ufd)
                .map_err(lazy_err("taking a child's userfaultfd"))?;
            let _ = nix::unistd::close(ufd);
            return Ok(Some(Served {
                uffd: owned,
                retry: Vec::new(),
                pending: p.pending.clone(),
                all: p.all.clone(),
                removed: p.removed.clone(),
            }));
        }
        Event::Other(_) => {}
    }
    Ok(None)
}

/// Fills `[addr, addr + len)` (inside one run, or one page) from the images or zeros.
/// EAGAIN (the address space is changing: an event not read yet) leaves it to a retry.
fn fill(
    files: &[File],
    p: &mut Served,
    addr: u64,
    len: u64,
    buf: &mut [u8],
) -> Result<(), RestoreError> {
    let done = match p.source(addr) {
        Some((f, off)) => {
            files[f]
                .read_exact_at(&mut buf[..len as usize], off)
                .map_err(lazy_err("reading a pages image"))?;
            uffd::copy(p.uffd.as_fd(), addr, &buf[..len as usize])
        }
        None => uffd::zeropage(p.uffd.as_fd(), addr, len),
    };
    match done {
        Ok(()) => Ok(()),
        // Present already (touched, or filled by a fork's parent), or not registered any
        // more (unmapped): nothing to do.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EEXIST | libc::ENOENT | libc::ESRCH)
            ) =>
        {
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
            p.retry.push(addr);
            Ok(())
        }
        Err(e) => Err(lazy_err(format!("filling {addr:#x}"))(e)),
    }
}

/// Fills the next piece of `p`'s pending runs, page by page where a piece meets pages
/// present already or discarded.
fn push(files: &[File], p: &mut Served, buf: &mut [u8]) -> Result<(), RestoreError> {
    let Some((a, l, f, off)) = p.pending.pop_front() else {
        return Ok(());
    };
    let n = l.min(PUSH_PAGES * PAGE);
    if n < l {
        p.pending.push_front((a + n, l - n, f, off + n));
    }
    let clean = !p.removed.iter().any(|&(s, e)| s < a + n && e > a);
    if clean {
        files[f]
            .read_exact_at(&mut buf[..n as usize], off)
            .map_err(lazy_err("reading a pages image"))?;
        match uffd::copy(p.uffd.as_fd(), a, &buf[..n as usize]) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                // Partly filled maybe: the whole piece again, page by page, later.
                p.pending.push_back((a, n, f, off));
                return Ok(());
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST)) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH)) => return Ok(()),
            Err(e) => return Err(lazy_err(format!("filling {a:#x}"))(e)),
        }
    }
    let mut at = a;
    while at < a + n {
        if !p.is_removed(at) {
            fill(files, p, at, PAGE, &mut buf[..PAGE as usize])?;
        }
        at += PAGE;
    }
    Ok(())
}

/// The parts of `runs` outside `ranges` (sorted, non-overlapping).
pub(crate) fn runs_outside(runs: &[PageRun], ranges: &[(u64, u64)]) -> Vec<PageRun> {
    let mut out = Vec::new();
    for r in runs {
        let end = r.addr + r.len;
        let mut at = r.addr;
        for &(s, e) in ranges {
            if e <= at || s >= end {
                continue;
            }
            if s > at {
                out.push(PageRun {
                    addr: at,
                    len: s - at,
                    offset: r.offset + (at - r.addr),
                });
            }
            at = e.min(end);
        }
        if at < end {
            out.push(PageRun {
                addr: at,
                len: end - at,
                offset: r.offset + (at - r.addr),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(addr: u64, len: u64, offset: u64) -> PageRun {
        PageRun { addr, len, offset }
    }

    #[test]
    fn runs_split_between_lazy_and_eager_keep_their_offsets() {
        let runs = [run(0x1000, 0x4000, 0), run(0x8000, 0x1000, 0x4000)];
        let lazy = [(0x2000, 0x4000), (0x8000, 0x9000)];
        assert_eq!(
            runs_outside(&runs, &lazy),
            vec![run(0x1000, 0x1000, 0), run(0x4000, 0x1000, 0x3000)]
        );
        let l = runs_within(&runs, Path::new("p"), &lazy);
        let got: Vec<(u64, u64, u64)> = l.iter().map(|r| (r.addr, r.len, r.offset)).collect();
        assert_eq!(
            got,
            vec![(0x2000, 0x2000, 0x1000), (0x8000, 0x1000, 0x4000)]
        );
    }
}
