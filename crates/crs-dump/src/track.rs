//! Tracking what a tree writes between dumps (`crs pre-dump`, `--track-mem`), without
//! soft-dirty bits (this kernel has none): each process's private anonymous memory is
//! registered with a userfaultfd for write-protection in async mode and protected; a write
//! then unprotects its page with no fault handler, and the next dump asks `PAGEMAP_SCAN`
//! which pages were written (see `pages::written`).
//!
//! The userfaultfd is made inside the process (an injected `userfaultfd(2)`: it belongs to
//! the process's mm), taken out with pidfd_getfd and closed in the process again: the
//! process never sees an fd of it. Tracking lasts as long as someone holds it, so crs hands
//! the fds to a keeper process (`crs __track-keeper NAME`, listening on the abstract unix
//! socket NAME, `crs-track-<root pid>-<root start time>`), which holds them until every
//! tracked process has ended or a dump that does not track any more tells it to stop
//! (closing them ends the registration: the memory is as if never tracked). A later dump
//! takes the fds back from the keeper to register memory mapped since and to protect
//! everything again.
//!
//! Keeper protocol, one request per connection (SOCK_STREAM): a 8-byte header (`u32`
//! request, `u32` count) then `count` pids (`i32`); `ADD` passes one userfaultfd per pid
//! with the header; `GET` is answered with the same shape, every fd held; `STOP` ends the
//! keeper.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use crs_compel::{SeizedTree, Tid};
use crs_sys::{uffd, unixsk as sk};
use tracing::{debug, info, warn};

use crate::error::{DumpError, Result};

const ADD: u32 = 1;
const GET: u32 = 2;
const STOP: u32 = 3;

/// How long a keeper that was never given anything to hold waits before it ends.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// The keeper's socket name for the tree whose root is `root` (its start time in clock
/// ticks, from /proc/PID/stat, tells a reused pid apart).
pub(crate) fn socket_name(root: Tid, start_time: u64) -> String {
    format!("crs-track-{root}-{start_time}")
}

fn track_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DumpError {
    let what = what.into();
    move |source| DumpError::Track { what, source }
}

fn connect(name: &str) -> Option<UnixStream> {
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
    UnixStream::connect_addr(&addr).ok()
}

fn header(kind: u32, pids: &[Tid]) -> Vec<u8> {
    let mut b = Vec::with_capacity(8 + 4 * pids.len());
    b.extend_from_slice(&kind.to_ne_bytes());
    b.extend_from_slice(&(pids.len() as u32).to_ne_bytes());
    for p in pids {
        b.extend_from_slice(&p.to_ne_bytes());
    }
    b
}

/// Reads one message: its kind, pids and the fds passed with it.
fn read_message(s: &mut UnixStream) -> std::io::Result<(u32, Vec<Tid>, Vec<OwnedFd>)> {
    let mut head = [0u8; 8];
    let (n, fds) = sk::recv_with_fds(s.as_fd(), &mut head)?;
    if n == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
    }
    s.read_exact(&mut head[n..])?;
    let kind = u32::from_ne_bytes(head[..4].try_into().expect("4 bytes"));
    let count = u32::from_ne_bytes(head[4..].try_into().expect("4 bytes")) as usize;
    if count > 4096 {
        return Err(std::io::Error::from_raw_os_error(libc::EMSGSIZE));
    }
    let mut body = vec![0u8; 4 * count];
    s.read_exact(&mut body)?;
    let pids = body
        .chunks_exact(4)
        .map(|c| i32::from_ne_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Ok((kind, pids, fds))
}

fn send_message(
    s: &UnixStream,
    kind: u32,
    pids: &[Tid],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let msg = header(kind, pids);
    let sent = sk::send_blocking_with_fds(s.as_fd(), &msg, fds)?;
    if sent < msg.len() {
        (&*s).write_all(&msg[sent..])?;
    }
    Ok(())
}

/// The userfaultfds a running keeper holds for the tree, by pid (empty without a keeper).
pub(crate) fn fetch(name: &str) -> Result<HashMap<Tid, OwnedFd>> {
    let Some(mut s) = connect(name) else {
        return Ok(HashMap::new());
    };
    send_message(&s, GET, &[], &[]).map_err(track_err("asking the keeper for its fds"))?;
    let (_, pids, fds) = read_message(&mut s).map_err(track_err("the keeper's fds"))?;
    if pids.len() != fds.len() {
        return Err(DumpError::Track {
            what: format!("the keeper sent {} fds for {} pids", fds.len(), pids.len()),
            source: std::io::Error::from_raw_os_error(libc::EPROTO),
        });
    }
    Ok(pids.into_iter().zip(fds).collect())
}

/// Tells the tree's keeper (if any) to end: the tracking stops.
pub(crate) fn stop(name: &str) {
    if let Some(s) = connect(name) {
        if let Err(e) = send_message(&s, STOP, &[], &[]) {
            warn!(error = %e, "telling the memory-tracking keeper to stop");
        }
    }
}

/// Gives `uffds` to the tree's keeper, started first (from `exe`) when there is none.
pub(crate) fn hand_over(name: &str, exe: &Path, uffds: &[(Tid, OwnedFd)]) -> Result<()> {
    if uffds.is_empty() {
        return Ok(());
    }
    let s = match connect(name) {
        Some(s) => s,
        None => {
            start_keeper(name, exe)?;
            connect(name).ok_or_else(|| DumpError::Track {
                what: "connecting to the keeper just started".into(),
                source: std::io::Error::from_raw_os_error(libc::ECONNREFUSED),
            })?
        }
    };
    let pids: Vec<Tid> = uffds.iter().map(|(p, _)| *p).collect();
    let fds: Vec<BorrowedFd<'_>> = uffds.iter().map(|(_, f)| f.as_fd()).collect();
    for (chunk_pids, chunk_fds) in pids.chunks(200).zip(fds.chunks(200)) {
        send_message(&s, ADD, chunk_pids, chunk_fds)
            .map_err(track_err("handing the userfaultfds to the keeper"))?;
    }
    debug!(processes = pids.len(), "userfaultfds handed to the keeper");
    Ok(())
}

/// Runs `exe __track-keeper NAME` and waits until it listens (it writes one byte to its
/// stdout then).
fn start_keeper(name: &str, exe: &Path) -> Result<()> {
    let mut child = std::process::Command::new(exe)
        .args(["__track-keeper", name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(track_err(format!(
            "starting {} __track-keeper",
            exe.display()
        )))?;
    let mut out = child.stdout.take().expect("piped");
    let mut ready = [0u8; 1];
    let got = out.read(&mut ready);
    // The keeper lives on by itself (a new session); it is reaped by whoever inherits it.
    drop(child);
    match got {
        Ok(1) => Ok(()),
        Ok(_) => Err(DumpError::Track {
            what: "the keeper ended before it listened".into(),
            source: std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
        }),
        Err(e) => Err(track_err("waiting for the keeper")(e)),
    }
}

/// The keeper (`crs __track-keeper NAME`): see the module comment. Returns its exit code.
pub fn keeper_main(name: &str) -> i32 {
    let _ = nix::unistd::setsid();
    let listener = match SocketAddr::from_abstract_name(name.as_bytes())
        .and_then(|a| UnixListener::bind_addr(&a))
    {
        Ok(l) => l,
        Err(e) => {
            eprintln!("crs track keeper: binding {name}: {e}");
            return 1;
        }
    };
    // Ready: the starter waits for this byte; stdout is then closed.
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&[1]);
        let _ = out.flush();
    }
    // stdout becomes /dev/null: the starter sees its pipe end.
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null);
    }
    // pid -> (pidfd, userfaultfd)
    let mut held: HashMap<Tid, (OwnedFd, OwnedFd)> = HashMap::new();
    let mut ever = false;
    loop {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let pids: Vec<Tid> = held.keys().copied().collect();
        let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
        for p in &pids {
            fds.push(PollFd::new(held[p].0.as_fd(), PollFlags::POLLIN));
        }
        let timeout = if held.is_empty() && !ever {
            PollTimeout::try_from(IDLE_LIMIT).unwrap_or(PollTimeout::MAX)
        } else {
            PollTimeout::NONE
        };
        match poll(&mut fds, timeout) {
            Ok(0) => return 0, // never given anything: nothing to keep
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("crs track keeper: poll: {e}");
                return 1;
            }
        }
        let gone: Vec<Tid> = pids
            .iter()
            .zip(&fds[1..])
            .filter(|(_, f)| f.revents().is_some_and(|r| !r.is_empty()))
            .map(|(p, _)| *p)
            .collect();
        let listening = fds[0]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN));
        drop(fds);
        for p in gone {
            held.remove(&p);
        }
        if ever && held.is_empty() {
            return 0; // every tracked process has ended
        }
        if !listening {
            continue;
        }
        let Ok((mut s, _)) = listener.accept() else {
            continue;
        };
        let Ok((kind, pids, fds)) = read_message(&mut s) else {
            continue;
        };
        match kind {
            ADD => {
                for (p, f) in pids.into_iter().zip(fds) {
                    // A process already gone is not held.
                    if let Ok(pidfd) = crs_sys::pidfd::pidfd_open(p, 0) {
                        held.insert(p, (pidfd, f));
                        ever = true;
                    }
                }
            }
            GET => {
                let pids: Vec<Tid> = held.keys().copied().collect();
                let fds: Vec<BorrowedFd<'_>> = pids.iter().map(|p| held[p].1.as_fd()).collect();
                let _ = send_message(&s, GET, &pids, &fds);
            }
            STOP => return 0,
            _ => {}
        }
    }
}

/// Starts or renews tracking for each process of `procs` (pid, its trackable ranges):
/// its userfaultfd is taken from `have` (the keeper's) or made in the process, every range
/// is registered (again: a range registered with the same userfaultfd is accepted) and
/// write-protected. Returns the userfaultfds made now, for the keeper. A range the kernel
/// will not register (EINVAL, EBUSY: memory another userfaultfd tracks) stays untracked:
/// all of its pages count as written at the next dump.
pub(crate) fn arm(
    tree: &mut SeizedTree,
    procs: &[(Tid, Vec<(u64, u64)>)],
    have: &mut HashMap<Tid, OwnedFd>,
) -> Result<Vec<(Tid, OwnedFd)>> {
    let mut made = Vec::new();
    for (pid, ranges) in procs {
        let pid = *pid;
        if ranges.is_empty() {
            continue;
        }
        let new;
        let fd = match have.get(&pid) {
            Some(fd) => fd.as_fd(),
            None => {
                let want = uffd::FEATURE_WP_ASYNC | uffd::FEATURE_WP_UNPOPULATED;
                new = make_in(
                    tree,
                    pid,
                    uffd::USER_MODE_ONLY,
                    want,
                    uffd::FEATURE_WP_ASYNC,
                )?;
                made.push((pid, new));
                made.last().expect("pushed").1.as_fd()
            }
        };
        let mut tracked = 0u64;
        for &(start, end) in ranges {
            let len = end - start;
            match uffd::register_wp(fd, start, len)
                .and_then(|()| uffd::write_protect(fd, start, len, true))
            {
                Ok(()) => tracked += len,
                Err(e) => debug!(pid, start, end, error = %e, "range not tracked"),
            }
        }
        debug!(pid, bytes = tracked, "memory tracked");
    }
    info!(
        processes = procs.len(),
        "writes tracked until the next dump"
    );
    Ok(made)
}

/// A userfaultfd made in process `pid` (its mm; `mode`: `uffd::USER_MODE_ONLY` or 0),
/// owned by crs, with the API handshake done asking for features `want` (of which `need`
/// must be granted); the process's own fd of it is closed again.
pub(crate) fn make_in(
    tree: &mut SeizedTree,
    pid: Tid,
    mode: i32,
    want: u64,
    need: u64,
) -> Result<OwnedFd> {
    let flags = (libc::O_CLOEXEC | libc::O_NONBLOCK | mode) as u64;
    let fd = tree
        .syscall(pid, libc::SYS_userfaultfd, [flags, 0, 0, 0, 0, 0])
        .map_err(crate::error::compel_err(pid, "making a userfaultfd"))?;
    if fd < 0 {
        return Err(DumpError::Track {
            what: format!("userfaultfd in pid {pid}"),
            source: std::io::Error::from_raw_os_error(-fd as i32),
        });
    }
    let taken = tree.take_fd(pid, fd as i32);
    let closed = tree.syscall(pid, libc::SYS_close, [fd as u64, 0, 0, 0, 0, 0]);
    let taken = taken.map_err(crate::error::compel_err(pid, "taking the userfaultfd"))?;
    closed.map_err(crate::error::compel_err(pid, "closing the userfaultfd"))?;
    let got = uffd::api(taken.as_fd(), want).map_err(track_err(format!(
        "UFFDIO_API (features {want:#x}) in pid {pid}"
    )))?;
    if got & need != need {
        return Err(DumpError::Track {
            what: format!(
                "this kernel's userfaultfd lacks features {:#x}",
                need & !got
            ),
            source: std::io::Error::from_raw_os_error(libc::EOPNOTSUPP),
        });
    }
    Ok(taken)
}
