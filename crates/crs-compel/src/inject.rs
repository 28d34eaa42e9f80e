//! Running syscalls inside a held thread, and reaching its memory and files.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crs_sys::ptrace::{self, Stop};
use crs_sys::remote::{self, RemoteRange};
use crs_sys::{pidfd, RemoteAddr, Tid};
use tracing::{debug, trace};

use crate::arch::{Arch, Host};
use crate::batch::{self, BatchSite};
use crate::guard;
use crate::tree::{SeizedThread, SeizedTree};
use crate::{procfs, Error, Result};

/// Size of the scratch area mapped on demand in a process for pointer arguments.
pub const SCRATCH_SIZE: usize = 64 * 1024;

/// Bytes of the batch table compel maps with the scratch area (256 entries).
const BATCH_TABLE: usize = 16 * 1024;

const PAGE: usize = 4096;

/// Bytes of compel's code at the start of its area (the batch loop and the park stub).
pub(crate) const CODE_PAGE: usize = PAGE;

/// Bytes at the end of the vDSO that the first mmap of compel's area runs from: the vDSO
/// ends in zero padding after its last section; for the length of one syscall it holds
/// `syscall; jmp .`, so that a thread left there by a crs that died parks (see `guard`).
const VDSO_STUB_ROOM: usize = 8;

/// Every signal blocked (the kernel keeps SIGKILL and SIGSTOP deliverable).
const BLOCK_ALL: u64 = !0;

/// How much of an executable mapping is read at a time while looking for a syscall
/// instruction.
const SCAN_CHUNK: usize = 64 * 1024;

impl SeizedTree {
    /// Runs syscall `nr` with `args` in held thread `tid`, in the thread's own context, and
    /// returns the raw result (`-errno` on failure). The thread's registers and signal mask
    /// are put back exactly afterwards.
    pub fn syscall(&mut self, tid: Tid, nr: i64, args: [u64; 6]) -> Result<i64> {
        let pid = self.pid_of(tid)?;
        let site = self.syscall_site(pid)?;
        let thread = self.thread_mut(tid)?;
        let ret = inject(thread, site, nr, &args)?;
        trace!(tid, nr, ret, "injected syscall");
        Ok(ret)
    }

    /// [`SeizedTree::syscall`], run from a `syscall; jmp .` stub written for the time of the
    /// call into the zero padding at the end of the process's vDSO: for a syscall that
    /// unmaps the code injected syscalls normally return into (a thread left there by a crs
    /// that died then parks instead of faulting). Without such room in the vDSO, it runs as
    /// [`SeizedTree::syscall`] does.
    pub fn syscall_outside(&mut self, tid: Tid, nr: i64, args: [u64; 6]) -> Result<i64> {
        let pid = self.pid_of(tid)?;
        match self.via_vdso_stub(pid, tid, nr, &args)? {
            Some(ret) => Ok(ret),
            None => self.syscall(tid, nr, args),
        }
    }

    /// The address of a `syscall` instruction in process `pid` that injected syscalls run
    /// from: found once (the vDSO first, then any readable executable mapping) and cached.
    pub fn syscall_site(&mut self, pid: Tid) -> Result<RemoteAddr> {
        let proc_ = self.procs.get(&pid).ok_or(Error::NotSeized { tid: pid })?;
        if let Some(site) = proc_.syscall_site {
            return Ok(site);
        }
        let site = find_syscall_site(pid)?;
        debug!(pid, %site, "syscall site");
        self.procs
            .get_mut(&pid)
            .expect("checked above")
            .syscall_site = Some(site);
        Ok(site)
    }

    /// Makes injected syscalls of process `pid` run from the `syscall` instruction at `site`
    /// (the caller vouches that it is one, and executable).
    pub fn set_syscall_site(&mut self, pid: Tid, site: RemoteAddr) -> Result<()> {
        let proc_ = self
            .procs
            .get_mut(&pid)
            .ok_or(Error::NotSeized { tid: pid })?;
        proc_.syscall_site = Some(site);
        Ok(())
    }

    /// A private read-write area of [`SCRATCH_SIZE`] bytes in process `pid`, for syscall
    /// arguments that are pointers. Mapped on first use, with the process's batch site
    /// (see [`SeizedTree::syscalls`]); unmapped at release.
    ///
    /// ```text
    /// [code page R-X: BATCH_CODE][scratch RW: SCRATCH_SIZE][batch table RW: BATCH_TABLE]
    /// ```
    /// One mmap read+exec, the code written through /proc/PID/mem, then one mprotect to
    /// read+write of the rest: no mapping is ever writable and executable, so this works
    /// under PR_SET_MDWE too.
    pub fn scratch(&mut self, pid: Tid) -> Result<RemoteRange> {
        let proc_ = self.procs.get(&pid).ok_or(Error::NotSeized { tid: pid })?;
        if let Some(s) = proc_.scratch {
            return Ok(s);
        }
        let tid = proc_
            .threads
            .first()
            .ok_or(Error::NotSeized { tid: pid })?
            .tid;
        let total = PAGE + SCRATCH_SIZE + BATCH_TABLE;
        let mmap = [
            0,
            total as u64,
            (libc::PROT_READ | libc::PROT_EXEC) as u64,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64,
            u64::MAX,
            0,
        ];
        guard::record(&guard::Record::MapIntent {
            pid,
            tid,
            len: total as u64,
        });
        let ret = match self.via_vdso_stub(pid, tid, libc::SYS_mmap, &mmap)? {
            Some(ret) => ret,
            None => self.syscall(tid, libc::SYS_mmap, mmap)?,
        };
        if (-4095..0).contains(&ret) {
            return Err(Error::ScratchMap { pid, errno: -ret });
        }
        let base = ret as u64;
        guard::record(&guard::Record::Mapped {
            pid,
            addr: base,
            len: total as u64,
        });
        self.procs.get_mut(&pid).expect("checked above").own_map = Some(RemoteRange {
            addr: RemoteAddr(base),
            len: total,
        });
        // From here on single injections return into the park stub of compel's code.
        self.poke(pid, RemoteAddr(base), &batch::code())?;
        self.procs
            .get_mut(&pid)
            .expect("checked above")
            .syscall_site = Some(RemoteAddr(base + batch::STUB_AT as u64));
        let ret = self.syscall(
            tid,
            libc::SYS_mprotect,
            [
                base + PAGE as u64,
                (SCRATCH_SIZE + BATCH_TABLE) as u64,
                (libc::PROT_READ | libc::PROT_WRITE) as u64,
                0,
                0,
                0,
            ],
        )?;
        if (-4095..0).contains(&ret) {
            return Err(Error::ScratchMap { pid, errno: -ret });
        }
        let range = RemoteRange {
            addr: RemoteAddr(base + PAGE as u64),
            len: SCRATCH_SIZE,
        };
        let p = self.procs.get_mut(&pid).expect("checked above");
        p.scratch = Some(range);
        // The code is written already.
        p.batch = Some(BatchSite {
            code: RemoteAddr(base),
            table: RemoteRange {
                addr: RemoteAddr(base + (PAGE + SCRATCH_SIZE) as u64),
                len: BATCH_TABLE,
            },
        });
        debug!(pid, addr = %range.addr, "scratch and batch site mapped");
        Ok(range)
    }

    pub(crate) fn unmap_scratch(&mut self, pid: Tid) -> Result<()> {
        let Some(proc_) = self.procs.get_mut(&pid) else {
            return Ok(());
        };
        proc_.scratch = None;
        proc_.batch = None;
        let Some(range) = proc_.own_map.take() else {
            return Ok(());
        };
        let Some(tid) = proc_.threads.first().map(|t| t.tid) else {
            return Ok(());
        };
        // Not from compel's own code, which this unmaps.
        let args = [range.addr.get(), range.len as u64, 0, 0, 0, 0];
        let ret = match self.via_vdso_stub(pid, tid, libc::SYS_munmap, &args)? {
            Some(ret) => ret,
            None => {
                let site = find_syscall_site(pid)?;
                inject(self.thread_mut(tid)?, site, libc::SYS_munmap, &args)?
            }
        };
        if ret != 0 {
            debug!(pid, ret, "munmap of the scratch area failed");
        } else {
            guard::record(&guard::Record::Unmapped { pid });
        }
        Ok(())
    }

    /// Runs syscall `nr` in `tid` from a park stub written into the zero padding at the end
    /// of `pid`'s vDSO (see [`VDSO_STUB_ROOM`]), for the syscalls that map and unmap
    /// compel's own code; `None` when the vDSO has no such room. The padding is zero again
    /// afterwards (the page stays the process's own copy of the vDSO page: identical bytes).
    fn via_vdso_stub(
        &mut self,
        pid: Tid,
        tid: Tid,
        nr: i64,
        args: &[u64; 6],
    ) -> Result<Option<i64>> {
        let Some(at) = self.vdso_stub(pid)? else {
            return Ok(None);
        };
        let ret = inject(self.thread_mut(tid)?, at, nr, args);
        let back = self.poke(pid, at, &[0; batch::PARK_STUB.len()]);
        if back.is_ok() {
            guard::record(&guard::Record::Unpatched { pid });
        }
        let ret = ret?;
        back?;
        Ok(Some(ret))
    }

    /// Makes `range` the compel area of held process `pid` (the guardian's, for an area
    /// a dead crs left): it is unmapped at release.
    pub(crate) fn adopt_area(&mut self, pid: Tid, range: RemoteRange) -> Result<()> {
        let p = self
            .procs
            .get_mut(&pid)
            .ok_or(Error::NotSeized { tid: pid })?;
        p.own_map = Some(range);
        Ok(())
    }

    /// Reads `buf.len()` bytes at `addr` of process `pid` (process_vm_readv).
    pub fn read_memory(&self, pid: Tid, addr: RemoteAddr, buf: &mut [u8]) -> Result<()> {
        let len = buf.len();
        remote::read_exact(pid, addr, buf).map_err(|source| Error::RemoteRead {
            pid,
            addr,
            len,
            source,
        })
    }

    /// Writes `buf` at `addr` of process `pid` (process_vm_writev; honours protections).
    pub fn write_memory(&self, pid: Tid, addr: RemoteAddr, buf: &[u8]) -> Result<()> {
        remote::write_all(pid, addr, buf).map_err(|source| Error::RemoteWrite {
            pid,
            addr,
            len: buf.len(),
            source,
        })
    }

    /// A duplicate in crs of file descriptor `fd` of process `pid` (pidfd_getfd).
    pub fn take_fd(&self, pid: Tid, fd: i32) -> Result<OwnedFd> {
        let proc_ = self.procs.get(&pid).ok_or(Error::NotSeized { tid: pid })?;
        let opened;
        let pfd = match &proc_.pidfd {
            Some(p) => p.as_fd(),
            None => {
                opened =
                    pidfd::pidfd_open(pid, 0).map_err(|source| Error::PidfdOpen { pid, source })?;
                opened.as_fd()
            }
        };
        pidfd::pidfd_getfd(pfd, fd).map_err(|source| Error::GetFd { pid, fd, source })
    }
}

fn find_syscall_site(pid: Tid) -> Result<RemoteAddr> {
    let mut maps = procfs::exec_mappings(pid).map_err(|source| Error::Maps { pid, source })?;
    // The vDSO first: small, always there, identical in every task.
    maps.sort_by_key(|&(_, _, vdso)| !vdso);
    let insn = Host::SYSCALL_INSN;
    let mut buf = vec![0u8; SCAN_CHUNK];
    for (start, end, _) in maps {
        let mut at = start;
        while at < end {
            let len = ((end - at) as usize).min(SCAN_CHUNK);
            let Ok(n) = remote::process_vm_readv(
                pid,
                &mut [io::IoSliceMut::new(&mut buf[..len])],
                &[RemoteRange {
                    addr: RemoteAddr(at),
                    len,
                }],
            ) else {
                break;
            };
            if n == 0 {
                break;
            }
            if let Some(off) = buf[..n].windows(insn.len()).position(|w| w == insn) {
                return Ok(RemoteAddr(at + off as u64));
            }
            // Overlap so an instruction across the chunk border is not missed.
            at += (n - (insn.len() - 1)).max(1) as u64;
        }
    }
    Err(Error::NoSyscallSite { pid })
}

/// Runs one syscall in `thread` and puts it back as it was.
pub(crate) fn inject(
    thread: &mut SeizedThread,
    site: RemoteAddr,
    nr: i64,
    args: &[u64; 6],
) -> Result<i64> {
    let tid = thread.tid;
    let saved = thread.regs;
    Host::check_native(&saved).map_err(|cs| Error::CompatMode { tid, cs })?;
    let run = run_syscall(thread, site, nr, args);
    let back = put_back(thread);
    match (run, back) {
        (Ok(ret), Ok(())) => Ok(ret),
        (Err(e), _) | (Ok(_), Err(e)) => Err(e),
    }
}

fn run_syscall(
    thread: &mut SeizedThread,
    site: RemoteAddr,
    nr: i64,
    args: &[u64; 6],
) -> Result<i64> {
    let tid = thread.tid;
    let regs = Host::syscall_regs(&thread.regs, site, nr, args);
    // Registers first, then the mask: the mask is changed only while the instruction
    // pointer is in compel's code (see `guard`).
    Host::set_regs(tid, &regs).map_err(|source| Error::SetRegs { tid, source })?;
    crs_sys::fault::kill_point(|| format!("syscall {nr} in thread {tid}: registers set"));
    ptrace::set_sigmask(tid, BLOCK_ALL).map_err(|source| Error::SetSigmask { tid, source })?;
    // Entry stop, then exit stop.
    for _ in 0..2 {
        crs_sys::fault::kill_point(|| format!("syscall {nr} in thread {tid}: at a stop"));
        ptrace::syscall(tid, 0).map_err(|source| Error::Resume { tid, source })?;
        wait_for(thread, Want::Syscall)?;
    }
    let out = Host::get_regs(tid).map_err(|source| Error::GetRegs { tid, source })?;
    Ok(Host::syscall_result(&out))
}

/// Restores the saved mask, then the registers. A thread that the kernel must restart a
/// syscall in is first brought back to a stop inside signal handling, where the restart
/// happens.
fn put_back(thread: &mut SeizedThread) -> Result<()> {
    let tid = thread.tid;
    crs_sys::fault::kill_point(|| format!("injection in thread {tid}: done"));
    if Host::pending_restart(&thread.regs).is_some() {
        ptrace::interrupt(tid).map_err(|source| Error::Interrupt { tid, source })?;
        ptrace::cont(tid, 0).map_err(|source| Error::Resume { tid, source })?;
        wait_for(thread, Want::Trap)?;
    }
    ptrace::set_sigmask(tid, thread.sigmask).map_err(|source| Error::SetSigmask { tid, source })?;
    crs_sys::fault::kill_point(|| format!("injection in thread {tid}: mask back"));
    Host::set_regs(tid, &thread.regs).map_err(|source| Error::SetRegs { tid, source })
}

impl SeizedTree {
    /// Tells compel where held process `pid`'s vDSO ends (a restore that moved it), so
    /// that [`SeizedTree::syscall_outside`] need not look it up.
    pub fn set_vdso_end(&mut self, pid: Tid, end: Option<u64>) -> Result<()> {
        let p = self
            .procs
            .get_mut(&pid)
            .ok_or(Error::NotSeized { tid: pid })?;
        p.vdso_end = Some(end);
        Ok(())
    }

    /// Where `pid`'s vDSO ends, from /proc/PID/maps the first time.
    fn vdso_end(&mut self, pid: Tid) -> Result<Option<u64>> {
        let p = self
            .procs
            .get_mut(&pid)
            .ok_or(Error::NotSeized { tid: pid })?;
        if let Some(end) = p.vdso_end {
            return Ok(end);
        }
        let maps = procfs::exec_mappings(pid).map_err(|source| Error::Maps { pid, source })?;
        let end = maps.iter().find(|m| m.2).map(|m| m.1);
        p.vdso_end = Some(end);
        Ok(end)
    }

    /// Where in `pid`'s vDSO a syscall that maps or unmaps compel's own code can run from,
    /// with the stub written there (and recorded for the guardian); `None` without a vDSO
    /// ending in [`VDSO_STUB_ROOM`] zero bytes.
    fn vdso_stub(&mut self, pid: Tid) -> Result<Option<RemoteAddr>> {
        let Some(end) = self.vdso_end(pid)? else {
            return Ok(None);
        };
        let Some(at) = vdso_tail_room(pid, end) else {
            debug!(pid, "no room for a stub at the end of the vDSO");
            return Ok(None);
        };
        guard::record(&guard::Record::Patched {
            pid,
            addr: at.get(),
            orig: vec![0; batch::PARK_STUB.len()],
        });
        self.poke(pid, at, &batch::PARK_STUB)?;
        Ok(Some(at))
    }
}

/// The start of the last [`VDSO_STUB_ROOM`] bytes of a vDSO ending at `end` in `pid`, if
/// they are all zero.
fn vdso_tail_room(pid: Tid, end: u64) -> Option<RemoteAddr> {
    let at = RemoteAddr(end - VDSO_STUB_ROOM as u64);
    let mut tail = [0xffu8; VDSO_STUB_ROOM];
    let read = remote::process_vm_readv(
        pid,
        &mut [io::IoSliceMut::new(&mut tail)],
        &[RemoteRange {
            addr: at,
            len: VDSO_STUB_ROOM,
        }],
    );
    (read.ok() == Some(VDSO_STUB_ROOM) && tail.iter().all(|&b| b == 0)).then_some(at)
}

/// Whether `[addr, addr + len)` of `pid` is still compel's area: anonymous mappings that
/// cover it exactly, starting with compel's code (or the zeros of a fresh mapping, when
/// crs died before writing it).
pub(crate) fn is_compel_area(pid: Tid, addr: u64, len: u64) -> bool {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return false;
    };
    let end = addr + len;
    let mut covered = addr;
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let Some((a, b)) = f.next().and_then(|r| r.split_once('-')) else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        if b <= addr || a >= end {
            continue;
        }
        let inode = f.nth(3);
        let anonymous = inode == Some("0") && f.next().is_none();
        if a != covered || b > end || !anonymous {
            return false;
        }
        covered = b;
    }
    if covered != end {
        return false;
    }
    let code = batch::code();
    let mut head = vec![0u8; code.len()];
    let Ok(f) = std::fs::File::open(format!("/proc/{pid}/mem")) else {
        return false;
    };
    use std::os::unix::fs::FileExt;
    if f.read_exact_at(&mut head, addr).is_err() {
        return false;
    }
    head == code || head.iter().all(|&b| b == 0)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Want {
    Syscall,
    Trap,
}

fn is_stop_signal(sig: i32) -> bool {
    matches!(
        sig,
        libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
    )
}

/// Waits until `thread` reaches the wanted stop, passing through group-stops and
/// stop signals the way the kernel would.
fn wait_for(thread: &mut SeizedThread, want: Want) -> Result<()> {
    let tid = thread.tid;
    let resume = |sig: i32| match want {
        Want::Syscall => ptrace::syscall(tid, sig),
        Want::Trap => ptrace::cont(tid, sig),
    };
    loop {
        let st = match ptrace::wait(tid) {
            Ok(st) => st,
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                return Err(Error::ThreadGone { tid })
            }
            Err(source) => return Err(Error::Wait { tid, source }),
        };
        let sig = match st {
            Stop::Syscall if want == Want::Syscall => return Ok(()),
            Stop::EventStop(_) if want == Want::Trap => return Ok(()),
            Stop::EventStop(sig) => {
                // A group-stop began while we ran the thread; the kernel reinstates it
                // at detach.
                if sig != libc::SIGTRAP {
                    thread.stopped = true;
                    thread.stop_signo = sig;
                }
                0
            }
            Stop::Signal(sig) if is_stop_signal(sig) => sig,
            Stop::Signal(signo) => return Err(Error::UnexpectedSignal { tid, signo }),
            Stop::Syscall => 0,
            Stop::Exited(_) | Stop::Signaled(_) | Stop::Event(ptrace::event::EXIT, _) => {
                return Err(Error::ThreadGone { tid })
            }
            Stop::Event(..) => 0,
        };
        resume(sig).map_err(|source| Error::Resume { tid, source })?;
    }
}
