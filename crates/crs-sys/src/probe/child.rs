//! Where probes put what they must not leave behind: a forked child, killed and reaped
//! when dropped, and a short-lived thread in namespaces of its own.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::ptrace::{self, Stop};
use crate::{cvt, Tid};

/// A child process forked for a probe. Dropping it SIGKILLs and reaps it, so it never
/// outlives the probe; it also dies if the forking thread does (PR_SET_PDEATHSIG).
pub(crate) struct Child {
    pid: Tid,
    reaped: bool,
}

impl Child {
    /// Forks; the child runs `body` and `_exit`s with the code it returns.
    ///
    /// # Safety
    ///
    /// `body` runs in a copy of a process that may have other threads, frozen wherever
    /// they were (holding the allocator's or stdio's locks, say): it may only make
    /// async-signal-safe calls (plain system calls), and must not allocate, lock, print
    /// or panic.
    pub(crate) unsafe fn fork(body: impl FnOnce() -> i32) -> io::Result<Child> {
        // SAFETY: getpid takes no arguments.
        let parent = unsafe { libc::getpid() };
        // SAFETY: fork itself has no memory-safety preconditions; the child only runs the
        // calls below and `body`, which the caller guarantees are async-signal-safe, and
        // leaves by `_exit`, never returning into the parent's code.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                // SAFETY: prctl(PR_SET_PDEATHSIG) and getppid take integers only.
                let orphan = unsafe {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
                    libc::getppid() != parent
                };
                let code = if orphan { 1 } else { body() };
                // SAFETY: _exit ends the child at once, running none of the parent's
                // destructors or atexit handlers.
                unsafe { libc::_exit(code) }
            }
            pid => Ok(Child { pid, reaped: false }),
        }
    }

    pub(crate) fn pid(&self) -> Tid {
        self.pid
    }

    /// Waits for the child's next stop or its end.
    pub(crate) fn wait(&mut self) -> io::Result<Stop> {
        let s = ptrace::wait(self.pid)?;
        if matches!(s, Stop::Exited(_) | Stop::Signaled(_)) {
            self.reaped = true;
        }
        Ok(s)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: kill takes integers only; `pid` is our unreaped child, so it cannot have
        // been recycled for another process.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        while let Ok(s) = self.wait() {
            if matches!(s, Stop::Exited(_) | Stop::Signaled(_)) {
                break;
            }
        }
    }
}

/// Forks a child that runs `setup`, becomes crs's tracee (PTRACE_TRACEME) and stops with
/// SIGSTOP; once continued, it runs `then` and exits with 1. Returns it stopped.
///
/// # Safety
///
/// As for [`Child::fork`]: `setup` and `then` must be async-signal-safe.
pub(crate) unsafe fn traced_child(
    setup: impl FnOnce() -> bool,
    then: impl FnOnce(),
) -> Result<Child, String> {
    let body = || {
        if !setup() {
            return 2;
        }
        // SAFETY: PTRACE_TRACEME takes no pointers; kill and getpid take integers.
        let ok = unsafe {
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) == 0
                && libc::kill(libc::getpid(), libc::SIGSTOP) == 0
        };
        if !ok {
            return 3;
        }
        then();
        1
    };
    // SAFETY: `body` makes only system calls, and runs `setup` and `then`, which the
    // caller guarantees are async-signal-safe.
    let mut child = unsafe { Child::fork(body) }.map_err(|e| format!("fork: {e}"))?;
    match child.wait() {
        Ok(Stop::Signal(libc::SIGSTOP)) => Ok(child),
        Ok(s) => Err(format!(
            "the probe's child did not stop for its tracer: {s:?}"
        )),
        Err(e) => Err(format!("waiting for the probe's child: {e}")),
    }
}

/// `unshare(flags)` for the calling thread.
///
/// Only for a thread made by [`in_new_namespaces`]: on any other thread of crs it would
/// move crs itself.
pub(crate) fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes an integer; it changes only the calling thread's namespaces.
    cvt(unsafe { libc::unshare(flags) }.into()).map(drop)
}

/// Runs `f` on a short-lived thread that first moves to new namespaces (`flags`:
/// CLONE_NEWNS and/or CLONE_NEWNET), so that what `f` mounts or configures is seen by no
/// one else and goes away with the thread: nothing else holds those namespaces, provided
/// `f` closes what it opens (owned fds do). With CLONE_NEWNS every mount is first made
/// private, so that nothing mounted later propagates back to crs's namespace; the thread
/// also gets its own working directory (CLONE_FS), so `f` may change it.
pub(crate) fn in_new_namespaces<T: Send>(
    flags: libc::c_int,
    f: impl FnOnce() -> Result<T, String> + Send,
) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            unshare(flags).map_err(|e| format!("unshare({flags:#x}): {e}"))?;
            if flags & libc::CLONE_NEWNS != 0 {
                mount(
                    None,
                    Path::new("/"),
                    None,
                    libc::MS_REC | libc::MS_PRIVATE,
                    None,
                )
                .map_err(|e| format!("making the probe's mounts private: {e}"))?;
            }
            f()
        })
        .join()
        .unwrap_or_else(|_| Err("the probe's thread panicked".to_string()))
    })
}

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// `mount(2)`. Only for a thread in its own mount namespace (see [`in_new_namespaces`]).
pub(crate) fn mount(
    source: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = source.map(|s| cstr(s.as_os_str().as_bytes())).transpose()?;
    let target = cstr(target.as_os_str().as_bytes())?;
    let fstype = fstype.map(|s| cstr(s.as_bytes())).transpose()?;
    let data = data.map(|s| cstr(s.as_bytes())).transpose()?;
    let ptr = |c: &Option<CString>| c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr());
    // SAFETY: every pointer is either null (allowed for source, fstype and data) or points
    // at a NUL-terminated string owned by a local that outlives the call; the kernel copies
    // them before returning.
    let ret = unsafe {
        libc::mount(
            ptr(&source),
            target.as_ptr(),
            ptr(&fstype),
            flags,
            ptr(&data).cast(),
        )
    };
    cvt(ret.into()).map(drop)
}

/// Mounts a fresh tmpfs over the temporary directory (`$TMPDIR`, else /tmp) in the
/// calling thread's mount namespace and returns its path: scratch space that needs no
/// cleaning. Only for a thread of [`in_new_namespaces`] with CLONE_NEWNS.
pub(crate) fn scratch_tmpfs() -> Result<PathBuf, String> {
    let mut dir = std::env::temp_dir();
    if !dir.is_dir() {
        dir = PathBuf::from("/tmp");
    }
    mount(Some(Path::new("crs-probe")), &dir, Some("tmpfs"), 0, None)
        .map_err(|e| format!("mounting a tmpfs on {}: {e}", dir.display()))?;
    Ok(dir)
}
