//! Kernel feature probes for `crs check`.
//!
//! Two sets:
//!
//! - [`REQUIRED`]: what crs itself needs; `crs check` runs them all and says "Looks good."
//!   when every one passes. Each calls the interface with harmless arguments and tells
//!   "present" from "absent" by the errno (ENOSYS / ENOTTY mean absent; EINVAL, EFAULT,
//!   EPERM mean the kernel knows it).
//! - One probe per CRIU 4.2 `check --feature` name (`crs check --feature NAME` runs the
//!   ones asked for): each asks the kernel the question CRIU 4.2 asks for that name (see
//!   `criu/cr-check.c` and `criu/kerndat.c`), so that tools that choose what to run by the
//!   answer (CRIU's zdtm) get the kernel's answer. The few names that are about a program
//!   CRIU links or runs rather than the kernel (`nftables`, `network_lock_nftables`,
//!   `has_ipt_legacy`) are answered by the program crs would run: the `nft` binary, the
//!   `iptables-save` binaries.
//!
//! Probes leave nothing behind: what they create is closed or unmapped before they
//! return, a child process they fork is killed and reaped (see `child::Child`), and
//! mounts and network devices are made on a short-lived thread in namespaces of its own,
//! which vanish with it (see `child::in_new_namespaces`). One probe changes crs's own
//! state: `mem_dirty_track` clears crs's soft-dirty bits, which crs does not use.

mod child;
#[cfg(target_arch = "x86_64")]
mod ia32;
mod netlink;
mod parse;

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::net::{Ipv4Addr, Ipv6Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use nix::fcntl::{Flock, FlockArg};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockProtocol, SockType};

use crate::ptrace::{self, Stop};
use crate::{cvt, unixsk};
use child::{in_new_namespaces, traced_child, Child};
use netlink::Msg;

/// Outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The kernel has it.
    Present,
    /// The kernel lacks it (or refuses it to us), with what was seen.
    Absent(String),
}

impl From<Result<(), String>> for Probe {
    fn from(r: Result<(), String>) -> Probe {
        match r {
            Ok(()) => Probe::Present,
            Err(why) => Probe::Absent(why),
        }
    }
}

fn judge(ret: libc::c_long, absent: &[i32]) -> Probe {
    if ret >= 0 {
        return Probe::Present;
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(e) if absent.contains(&e) => Probe::Absent(err.to_string()),
        _ => Probe::Present,
    }
}

/// A probe written as a check that says why it failed.
fn run(check: impl FnOnce() -> Result<(), String>) -> Probe {
    check().into()
}

/// A formatter of an error into "what: error", for `map_err`.
fn ctx<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> String + '_ {
    move |e| format!("{what}: {e}")
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn exists(path: &str) -> Result<(), String> {
    fs::symlink_metadata(path)
        .map(drop)
        .map_err(ctx(&format!("no {path}")))
}

/// Takes ownership of a descriptor a system call just returned.
///
/// # Safety
///
/// `raw` must be -1 (the error is taken from errno) or a new descriptor nothing else owns.
unsafe fn owned(raw: libc::c_long) -> io::Result<OwnedFd> {
    let fd = cvt(raw)? as RawFd;
    // SAFETY: by the caller's guarantee, a non-negative `raw` is a new descriptor that
    // nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn page_size() -> usize {
    // SAFETY: sysconf takes an integer.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// A mapping the probe made; unmapped on drop. Only its address is handed out, never a
/// reference into it.
struct Mapping {
    addr: usize,
    len: usize,
}

impl Mapping {
    /// `mmap(NULL, len, prot, flags, fd, 0)`.
    fn new(len: usize, prot: i32, flags: i32, fd: Option<BorrowedFd<'_>>) -> io::Result<Mapping> {
        let fd = fd.map_or(-1, |f| f.as_raw_fd());
        // SAFETY: without MAP_FIXED the kernel picks an address where nothing is mapped,
        // so no existing memory changes; the descriptor, if any, is borrowed for the call.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, 0) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            addr: p as usize,
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `new` made; nothing refers into it.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

// ---------------------------------------------------------------------------------------
// crs's own requirements
// ---------------------------------------------------------------------------------------

/// A named probe.
pub type Named = (&'static str, fn() -> Probe);

/// What crs needs, by crs's names: `crs check` without `--feature` runs them all.
pub const REQUIRED: &[Named] = &[
    ("clone3_set_tid", clone3_set_tid),
    ("pidfd_getfd", pidfd_getfd),
    ("process_vm_readv", process_vm_readv),
    ("userfaultfd", userfaultfd),
    ("kcmp", kcmp),
    ("prctl_mm_map", prctl_mm_map),
    ("pagemap_scan", pagemap_scan),
];

/// Every probe of [`REQUIRED`], run.
pub fn all() -> Vec<(&'static str, Probe)> {
    REQUIRED.iter().map(|(n, p)| (*n, p())).collect()
}

/// `pidfd_getfd`, used to take a task's file descriptors.
pub fn pidfd_getfd() -> Probe {
    // SAFETY: -1 is not a pidfd; the kernel fails with EBADF when the syscall
    // exists and ENOSYS otherwise. No memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_getfd, -1, 0, 0) };
    judge(ret, &[libc::ENOSYS])
}

/// `process_vm_readv`, the page-copy path of the dump.
pub fn process_vm_readv() -> Probe {
    // SAFETY: zero iovecs (NULL pointers with count 0) are valid arguments; the
    // call reads nothing and returns 0 for our own pid.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_process_vm_readv,
            libc::getpid(),
            std::ptr::null::<libc::iovec>(),
            0,
            std::ptr::null::<libc::iovec>(),
            0,
            0,
        )
    };
    judge(ret, &[libc::ENOSYS])
}

/// `userfaultfd`, for lazy pages and write-protect tracking.
pub fn userfaultfd() -> Probe {
    // SAFETY: an invalid flag bit makes the kernel return EINVAL before it
    // creates anything; ENOSYS means the syscall is absent. No memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_userfaultfd, 0x8000_0000u32 as libc::c_int) };
    judge(ret, &[libc::ENOSYS])
}

/// `kcmp`, to tell whether two tasks share a file or an fd table.
pub fn kcmp() -> Probe {
    // SAFETY: comparing our own pid with itself for KCMP_VM (type 1) takes no
    // pointers and changes nothing.
    let ret = unsafe {
        let me = libc::getpid();
        libc::syscall(libc::SYS_kcmp, me, me, 1, 0, 0)
    };
    judge(ret, &[libc::ENOSYS])
}

/// `PR_SET_MM` with `PR_SET_MM_MAP_SIZE`, to restore mm fields without CAP_SYS_RESOURCE.
pub fn prctl_mm_map() -> Probe {
    const PR_SET_MM: libc::c_int = 35;
    const PR_SET_MM_MAP_SIZE: libc::c_ulong = 15;
    let mut size: libc::c_uint = 0;
    // SAFETY: PR_SET_MM_MAP_SIZE writes one `unsigned int` to the pointer we
    // pass, which points to `size`, a live local of that type.
    let ret = unsafe {
        libc::prctl(
            PR_SET_MM,
            PR_SET_MM_MAP_SIZE,
            &mut size as *mut libc::c_uint as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    judge(ret.into(), &[libc::EINVAL, libc::ENOSYS])
}

// ---------------------------------------------------------------------------------------
// CRIU 4.2's `check --feature` names
// ---------------------------------------------------------------------------------------

/// `mnt_id`: /proc/PID/fdinfo shows the mount of each open file.
pub fn mnt_id() -> Probe {
    run(|| {
        let f = File::open("/").map_err(ctx("opening /"))?;
        let path = format!("/proc/thread-self/fdinfo/{}", f.as_raw_fd());
        let info = fs::read(&path).map_err(ctx(&path))?;
        if parse::has_field(&info, "mnt_id") {
            Ok(())
        } else {
            Err("fdinfo shows no mnt_id".into())
        }
    })
}

/// `mem_dirty_track`: soft-dirty page tracking (CONFIG_MEM_SOFT_DIRTY): after crs's
/// soft-dirty bits are cleared (/proc/self/clear_refs 4), a page crs writes shows bit 55
/// in /proc/self/pagemap.
pub fn mem_dirty_track() -> Probe {
    const PM_SOFT_DIRTY: u64 = 1 << 55;
    run(|| {
        let page = page_size();
        let m = Mapping::new(
            page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            None,
        )
        .map_err(ctx("mmap"))?;
        fs::write("/proc/self/clear_refs", "4").map_err(ctx("clearing soft-dirty bits"))?;
        // SAFETY: `m.addr` starts a live, writable, private anonymous mapping of a page,
        // which nothing else accesses.
        unsafe { std::ptr::write_volatile(m.addr as *mut u8, 1) };
        let pagemap = File::open("/proc/self/pagemap").map_err(ctx("/proc/self/pagemap"))?;
        let mut entry = [0u8; 8];
        pagemap
            .read_exact_at(&mut entry, (m.addr / page * 8) as u64)
            .map_err(ctx("reading /proc/self/pagemap"))?;
        if u64::from_ne_bytes(entry) & PM_SOFT_DIRTY != 0 {
            Ok(())
        } else {
            Err("a written page shows no soft-dirty bit: no CONFIG_MEM_SOFT_DIRTY".into())
        }
    })
}

/// An AIO context; destroyed on drop (which also unmaps its ring).
struct AioContext(libc::c_ulong);

impl Drop for AioContext {
    fn drop(&mut self) {
        // SAFETY: io_destroy takes the context's id; the kernel unmaps the ring, which no
        // Rust reference points into.
        unsafe { libc::syscall(libc::SYS_io_destroy, self.0) };
    }
}

/// `aio_remap`: an AIO ring moved with mremap still works (the kernel follows the move).
pub fn aio_remap() -> Probe {
    run(|| {
        let mut id: libc::c_ulong = 0;
        // SAFETY: io_setup writes one aio_context_t (an unsigned long) to the pointer,
        // which points at `id`, a live local of that type.
        let ret = unsafe { libc::syscall(libc::SYS_io_setup, 16, &mut id as *mut libc::c_ulong) };
        cvt(ret).map_err(ctx("io_setup"))?;
        let mut aio = AioContext(id);
        let maps = fs::read("/proc/self/maps").map_err(ctx("/proc/self/maps"))?;
        let len = match parse::maps_entry(&maps, id as u64) {
            Some(e) if e.path.windows(5).any(|w| w == b"[aio]") => (e.end - e.start) as usize,
            _ => return Err("no AIO ring at the context's address in /proc/self/maps".into()),
        };
        let dest = Mapping::new(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            None,
        )
        .map_err(ctx("mmap"))?;
        // SAFETY: moves the ring (crs's own mapping of `len` bytes at `id`) over `dest`, an
        // anonymous mapping of `len` bytes made above that nothing uses; no Rust reference
        // points into either.
        let moved = unsafe {
            libc::mremap(
                id as *mut libc::c_void,
                len,
                len,
                libc::MREMAP_FIXED | libc::MREMAP_MAYMOVE,
                dest.addr as *mut libc::c_void,
            )
        };
        if moved == libc::MAP_FAILED {
            return Err(format!(
                "mremap of the AIO ring: {}",
                io::Error::last_os_error()
            ));
        }
        // The ring now occupies `dest`: io_destroy unmaps it, not `dest`'s drop.
        aio.0 = dest.addr as libc::c_ulong;
        std::mem::forget(dest);
        // SAFETY: asking for no events with null event and timeout pointers reads and
        // writes no memory of ours.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_io_getevents,
                aio.0,
                0,
                1,
                std::ptr::null_mut::<u8>(),
                std::ptr::null::<u8>(),
            )
        };
        cvt(ret).map_err(ctx("io_getevents on the moved AIO ring"))?;
        Ok(())
    })
}

/// `timerfd`: TFD_IOC_SET_TICKS, to restore a timerfd's expiration count.
pub fn timerfd() -> Probe {
    // _IOW('T', 0, u64)
    const TFD_IOC_SET_TICKS: libc::c_ulong = 0x4008_5400;
    run(|| {
        // SAFETY: timerfd_create takes integers and returns a new descriptor or -1.
        let fd =
            unsafe { owned(libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC).into()) }
                .map_err(ctx("timerfd_create"))?;
        // SAFETY: a null argument makes the kernel fail with EFAULT when it knows the
        // ioctl (ENOTTY otherwise) before anything is read.
        let ret = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                TFD_IOC_SET_TICKS,
                std::ptr::null_mut::<u64>(),
            )
        };
        match cvt(ret.into()) {
            Err(e) if errno(&e) != libc::EFAULT => Err(format!("TFD_IOC_SET_TICKS: {e}")),
            _ => Ok(()),
        }
    })
}

fn open_tun(write: bool) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(write)
        .open("/dev/net/tun")
        .map_err(ctx("opening /dev/net/tun"))
}

/// `tun`: /dev/net/tun opens and takes TUNSETIFINDEX (the index of a restored device).
/// On a file not attached to a device that only sets the index for a later TUNSETIFF.
pub fn tun() -> Probe {
    // _IOW('T', 218, unsigned int)
    const TUNSETIFINDEX: libc::c_ulong = 0x4004_54da;
    run(|| {
        let tun = open_tun(true)?;
        let index: libc::c_uint = 13;
        // SAFETY: TUNSETIFINDEX reads one unsigned int from the pointer, which points at
        // `index`, a live local of that type.
        let ret = unsafe {
            libc::ioctl(
                tun.as_raw_fd(),
                TUNSETIFINDEX,
                &index as *const libc::c_uint,
            )
        };
        cvt(ret.into()).map(drop).map_err(ctx("TUNSETIFINDEX"))
    })
}

/// SIOCGSKNS: a descriptor of the network namespace of socket (or tun file) `fd`.
fn netns_of(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    const SIOCGSKNS: libc::c_ulong = 0x894c;
    // SAFETY: SIOCGSKNS takes no argument and returns a new descriptor, owned right away.
    unsafe { owned(libc::ioctl(fd.as_raw_fd(), SIOCGSKNS).into()) }
}

/// `tun_ns`: a tun file tells its network namespace (SIOCGSKNS).
pub fn tun_ns() -> Probe {
    run(|| {
        let tun = open_tun(false)?;
        netns_of(tun.as_fd())
            .map(drop)
            .map_err(ctx("SIOCGSKNS on a tun file"))
    })
}

/// `userns`: user namespaces, and PR_SET_MM_MAP to restore a task's mm fields in one.
pub fn userns() -> Probe {
    run(|| {
        exists("/proc/self/ns/user")?;
        match prctl_mm_map() {
            Probe::Present => Ok(()),
            Probe::Absent(why) => Err(format!("PR_SET_MM_MAP_SIZE: {why}")),
        }
    })
}

/// `fdinfo_lock`: /proc/PID/fdinfo shows the file locks a descriptor holds.
pub fn fdinfo_lock() -> Probe {
    run(|| {
        let f = File::open("/proc/locks").map_err(ctx("opening /proc/locks"))?;
        let locked =
            Flock::lock(f, FlockArg::LockSharedNonblock).map_err(|(_, e)| format!("flock: {e}"))?;
        let path = format!("/proc/thread-self/fdinfo/{}", locked.as_raw_fd());
        let info = fs::read(&path).map_err(ctx(&path))?;
        if parse::has_field(&info, "lock") {
            Ok(())
        } else {
            Err("fdinfo of a locked file shows no lock".into())
        }
    })
}

/// A stopped tracee that does nothing once continued.
fn idle_tracee() -> Result<Child, String> {
    // SAFETY: the child's setup and continuation do nothing.
    unsafe { traced_child(|| true, || {}) }
}

/// `seccomp_suspend`: a tracer may suspend its tracee's seccomp filters
/// (PTRACE_O_SUSPEND_SECCOMP, CONFIG_CHECKPOINT_RESTORE).
pub fn seccomp_suspend() -> Probe {
    run(|| {
        let child = idle_tracee()?;
        ptrace::set_options(child.pid(), ptrace::opt::SUSPEND_SECCOMP)
            .map_err(ctx("PTRACE_O_SUSPEND_SECCOMP"))
    })
}

/// A seccomp program of one instruction: allow every call.
static ALLOW_ALL: [ptrace::SockFilter; 1] = [ptrace::SockFilter {
    code: 0x06, // BPF_RET | BPF_K
    jt: 0,
    jf: 0,
    k: 0x7fff_0000, // SECCOMP_RET_ALLOW
}];

/// `seccomp_filters`: a tracer may read its tracee's seccomp filters
/// (PTRACE_SECCOMP_GET_FILTER).
pub fn seccomp_filters() -> Probe {
    run(|| {
        let with_filter = || {
            // SAFETY: PR_SET_NO_NEW_PRIVS takes integers; it binds only this child.
            let nnp = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
            nnp == 0 && crate::seccomp::set_mode_filter(0, &ALLOW_ALL).is_ok()
        };
        // SAFETY: the setup makes two system calls (prctl, seccomp) on a program that is a
        // static; it allocates nothing. The continuation does nothing.
        let child = unsafe { traced_child(with_filter, || {}) }?;
        ptrace::seccomp_get_filter(child.pid(), 0)
            .map(drop)
            .map_err(ctx("PTRACE_SECCOMP_GET_FILTER"))
    })
}

/// `loginuid`: a task's audit login uid can be read, unset and set again (what a restore
/// does). Done in a child, whose login uid dies with it.
pub fn loginuid() -> Probe {
    const PATH: &std::ffi::CStr = c"/proc/self/loginuid";
    const UNSET: &[u8] = b"4294967295";
    run(|| {
        let saved = fs::read("/proc/self/loginuid")
            .map_err(ctx("no /proc/self/loginuid (CONFIG_AUDITSYSCALL)"))?;
        let saved = saved.trim_ascii().to_vec();
        let body = || {
            // SAFETY: PATH is a NUL-terminated literal; open returns a descriptor or -1.
            let fd = unsafe { libc::open(PATH.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if fd < 0 {
                return 1;
            }
            // SAFETY: each pwrite reads the given number of bytes of a live buffer (a
            // literal, or `saved`, allocated before the fork); `fd` is open.
            let ok = unsafe {
                libc::pwrite(fd, UNSET.as_ptr().cast(), UNSET.len(), 0) == UNSET.len() as isize
                    && libc::pwrite(fd, saved.as_ptr().cast(), saved.len(), 0)
                        == saved.len() as isize
            };
            i32::from(!ok)
        };
        // SAFETY: the child makes system calls only (open, pwrite) on buffers made before
        // the fork.
        let mut child = unsafe { Child::fork(body) }.map_err(ctx("fork"))?;
        match child.wait() {
            Ok(Stop::Exited(0)) => Ok(()),
            Ok(s) => Err(format!("a task cannot unset and set its loginuid: {s:?}")),
            Err(e) => Err(format!("waiting for the probe's child: {e}")),
        }
    })
}

/// `cgroupns`: cgroup namespaces.
pub fn cgroupns() -> Probe {
    run(|| exists("/proc/self/ns/cgroup"))
}

/// `autofs`: autofs mounts show the inode of their daemon's pipe (`pipe_ino=`), which a
/// dump needs. Judged on an existing autofs mount if there is one, else on one made in a
/// private mount namespace.
pub fn autofs() -> Probe {
    run(|| {
        let mi = fs::read("/proc/self/mountinfo").map_err(ctx("/proc/self/mountinfo"))?;
        let shown = match parse::autofs_pipe_ino(&mi) {
            Some(shown) => shown,
            None => in_new_namespaces(libc::CLONE_NEWNS, || {
                let dir = child::scratch_tmpfs()?.join("autofs");
                fs::create_dir(&dir).map_err(ctx("mkdir"))?;
                let (_rd, wr) = nix::unistd::pipe().map_err(ctx("pipe"))?;
                let opts = format!(
                    "fd={},pgrp={},minproto=5,maxproto=5,direct",
                    wr.as_raw_fd(),
                    nix::unistd::getpgrp()
                );
                child::mount(
                    Some(Path::new("crs-probe")),
                    &dir,
                    Some("autofs"),
                    0,
                    Some(&opts),
                )
                .map_err(ctx("mounting autofs"))?;
                let mi = fs::read("/proc/thread-self/mountinfo")
                    .map_err(ctx("/proc/thread-self/mountinfo"))?;
                Ok(parse::autofs_pipe_ino(&mi).unwrap_or(false))
            })?,
        };
        if shown {
            Ok(())
        } else {
            Err("autofs mounts do not show pipe_ino".into())
        }
    })
}

/// `tcp_half_closed`: TCP repair mode on a socket that has sent its FIN (loopback).
pub fn tcp_half_closed() -> Probe {
    run(|| {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .or_else(|_| TcpListener::bind((Ipv6Addr::LOCALHOST, 0)))
            .map_err(ctx("listening on loopback"))?;
        let addr = listener.local_addr().map_err(ctx("getsockname"))?;
        let client = TcpStream::connect(addr).map_err(ctx("connecting on loopback"))?;
        client.shutdown(Shutdown::Write).map_err(ctx("shutdown"))?;
        unixsk::setsockopt_int(client.as_fd(), libc::SOL_TCP, libc::TCP_REPAIR, 1)
            .map_err(ctx("TCP_REPAIR on a half-closed socket"))
    })
}

/// `compat_cr`: 32-bit tasks can be restored: the 32-bit vDSO can be mapped on demand
/// ([`can_map_vdso`]) and a 32-bit mmap from a 64-bit task returns a 32-bit address
/// (Linux 4.12 fixed it), tried in a child through `int 0x80`.
pub fn compat_cr() -> Probe {
    run(|| {
        if let Probe::Absent(why) = can_map_vdso() {
            return Err(why);
        }
        compat_mmap_ok()
    })
}

#[cfg(target_arch = "x86_64")]
fn compat_mmap_ok() -> Result<(), String> {
    let page = page_size() as u32;
    let body = || i32::from(!ia32::mmap_reuses_address(page));
    // SAFETY: the child makes system calls only (32-bit mmap2 through int 0x80, munmap).
    let mut child = unsafe { Child::fork(body) }.map_err(ctx("fork"))?;
    match child.wait() {
        Ok(Stop::Exited(0)) => Ok(()),
        Ok(s) => Err(format!(
            "32-bit mmap from a 64-bit task does not work (ia32 emulation off, or before Linux 4.12): {s:?}"
        )),
        Err(e) => Err(format!("waiting for the probe's child: {e}")),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn compat_mmap_ok() -> Result<(), String> {
    Err("crs probes 32-bit compatibility on x86_64 only".into())
}

/// The UFFD_FEATURE_* bits the kernel offers (UFFDIO_API on a new userfaultfd).
fn uffd_features() -> Result<u64, String> {
    // _IOWR(0xAA, 0x3F, struct uffdio_api)
    const UFFDIO_API: libc::c_ulong = 0xc018_aa3f;
    const UFFD_API: u64 = 0xaa;
    #[repr(C)]
    struct UffdioApi {
        api: u64,
        features: u64,
        ioctls: u64,
    }
    // SAFETY: userfaultfd takes flags and returns a new descriptor or -1.
    let fd = unsafe { owned(libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC)) }
        .map_err(ctx("userfaultfd"))?;
    let mut api = UffdioApi {
        api: UFFD_API,
        features: 0,
        ioctls: 0,
    };
    // SAFETY: UFFDIO_API reads and writes one uffdio_api at the pointer, which points at
    // `api`, a live local of that layout.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), UFFDIO_API, &mut api as *mut UffdioApi) };
    cvt(ret.into()).map_err(ctx("UFFDIO_API"))?;
    if api.api != UFFD_API {
        return Err(format!("UFFDIO_API answered API {:#x}", api.api));
    }
    Ok(api.features)
}

/// `uffd`: userfaultfd with its API handshake (lazy pages).
pub fn uffd() -> Probe {
    run(|| uffd_features().map(drop))
}

/// `uffd-noncoop`: userfaultfd reports fork, mremap, munmap and MADV_DONTNEED of the
/// tracked memory (what lazy restore of a live tree needs).
pub fn uffd_noncoop() -> Probe {
    // UFFD_FEATURE_EVENT_FORK | _REMAP | _REMOVE | _UNMAP
    const NONCOOP: u64 = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 6);
    run(|| {
        let have = uffd_features()?;
        if have & NONCOOP == NONCOOP {
            Ok(())
        } else {
            Err(format!(
                "userfaultfd lacks non-cooperative events (features {have:#x})"
            ))
        }
    })
}

/// `can_map_vdso`: the 32-bit vDSO can be mapped on request (ARCH_MAP_VDSO_32), tried in
/// a child, which already has a vDSO, so the kernel answers EEXIST without mapping one.
pub fn can_map_vdso() -> Probe {
    run(can_map_vdso_check)
}

#[cfg(target_arch = "x86_64")]
fn can_map_vdso_check() -> Result<(), String> {
    const ARCH_MAP_VDSO_32: libc::c_long = 0x2002;
    let body = || {
        // SAFETY: arch_prctl takes integers; a mapping it made would be in this
        // throwaway child only.
        let r = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_MAP_VDSO_32, 0) };
        let known = r == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EEXIST);
        i32::from(!known)
    };
    // SAFETY: the child makes one system call and reads errno.
    let mut child = unsafe { Child::fork(body) }.map_err(ctx("fork"))?;
    match child.wait() {
        Ok(Stop::Exited(0)) => Ok(()),
        Ok(s) => Err(format!("ARCH_MAP_VDSO_32 is refused: {s:?}")),
        Err(e) => Err(format!("waiting for the probe's child: {e}")),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn can_map_vdso_check() -> Result<(), String> {
    Err("crs probes vDSO mapping on x86_64 only".into())
}

fn unix_dgram() -> Result<OwnedFd, String> {
    unixsk::socket(libc::SOCK_DGRAM).map_err(ctx("socket"))
}

/// `sk_ns`: a socket tells its network namespace (SIOCGSKNS).
pub fn sk_ns() -> Probe {
    run(|| {
        let sk = unix_dgram()?;
        netns_of(sk.as_fd()).map(drop).map_err(ctx("SIOCGSKNS"))
    })
}

/// `sk_unix_file`: a unix socket gives an O_PATH descriptor of its bound file
/// (SIOCUNIXFILE); an unbound one answers ENOENT.
pub fn sk_unix_file() -> Probe {
    const SIOCUNIXFILE: libc::c_ulong = 0x89e0; // SIOCPROTOPRIVATE
    run(|| {
        let sk = unix_dgram()?;
        // SAFETY: SIOCUNIXFILE takes no argument and returns a new descriptor or -1.
        match unsafe { owned(libc::ioctl(sk.as_raw_fd(), SIOCUNIXFILE).into()) } {
            Ok(_) => Ok(()),
            Err(e) if errno(&e) == libc::ENOENT => Ok(()),
            Err(e) => Err(format!("SIOCUNIXFILE: {e}")),
        }
    })
}

/// `net_diag_raw`: sock_diag dumps raw IPv4 and IPv6 sockets (CONFIG_INET_RAW_DIAG).
pub fn net_diag_raw() -> Probe {
    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    run(|| {
        for (family, name) in [(libc::AF_INET, "IPv4"), (libc::AF_INET6, "IPv6")] {
            // struct inet_diag_req_v2: family, protocol, ext, pad, states, sockid (48 bytes)
            let mut req = [0u8; 56];
            req[0] = family as u8;
            req[1] = libc::IPPROTO_RAW as u8;
            req[4..8].copy_from_slice(&u32::MAX.to_ne_bytes());
            let msg = Msg::new(
                SOCK_DIAG_BY_FAMILY,
                netlink::NLM_F_REQUEST | netlink::NLM_F_DUMP,
            )
            .push(&req)
            .finish();
            let replies = netlink::talk(SockProtocol::NetlinkSockDiag, &msg)
                .map_err(ctx(&format!("sock_diag dump of raw {name} sockets")))?;
            if let Some(e) = netlink::first_error(&replies) {
                return Err(format!(
                    "sock_diag of raw {name} sockets: {}",
                    io::Error::from_raw_os_error(e)
                ));
            }
        }
        Ok(())
    })
}

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_NEW_IFINDEX: u16 = 49;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const VETH_INFO_PEER: u16 = 1;
const NETNSA_NSID: u16 = 1;
const NETNSA_PID: u16 = 2;
/// `struct ifinfomsg`, all zero (AF_UNSPEC, no index).
const IFINFOMSG: [u8; 16] = [0; 16];

/// An rtnetlink exchange whose only expected reply is an error or acknowledgement: the
/// errno (0 for an acknowledgement).
fn rtnl_status(msg: &[u8]) -> Result<i32, String> {
    let replies = netlink::talk(SockProtocol::NetlinkRoute, msg).map_err(ctx("rtnetlink"))?;
    Ok(netlink::first_error(&replies).unwrap_or(0))
}

/// `nsid`: rtnetlink names the network namespace of a pid (RTM_GETNSID).
pub fn nsid() -> Probe {
    run(|| {
        let pid = std::process::id();
        let msg = Msg::new(RTM_GETNSID, netlink::NLM_F_REQUEST | netlink::NLM_F_ACK)
            .push(&[0]) // struct rtgenmsg
            .attr(NETNSA_PID, &pid.to_ne_bytes())
            .finish();
        let replies =
            netlink::talk(SockProtocol::NetlinkRoute, &msg).map_err(ctx("RTM_GETNSID"))?;
        if let Some(e) = netlink::first_error(&replies) {
            return Err(format!("RTM_GETNSID: {}", io::Error::from_raw_os_error(e)));
        }
        let named = netlink::messages(&replies).any(|(kind, payload)| {
            kind == RTM_NEWNSID
                && netlink::attrs(payload.get(4..).unwrap_or_default())
                    .any(|(a, _)| a == NETNSA_NSID)
        });
        if named {
            Ok(())
        } else {
            Err("RTM_GETNSID answered without an NSID".into())
        }
    })
}

/// `link_nsid`: rtnetlink names the peer namespace of a link (IFLA_LINK_NETNSID), seen on
/// a veth pair made across two new network namespaces of a probe thread.
pub fn link_nsid() -> Probe {
    run(|| {
        in_new_namespaces(libc::CLONE_NEWNET, || {
            let peer_ns = File::open("/proc/thread-self/ns/net").map_err(ctx("opening a netns"))?;
            child::unshare(libc::CLONE_NEWNET).map_err(ctx("unshare(CLONE_NEWNET)"))?;
            let peer_fd = peer_ns.as_raw_fd() as u32;
            let create = Msg::new(
                RTM_NEWLINK,
                netlink::NLM_F_REQUEST
                    | netlink::NLM_F_ACK
                    | netlink::NLM_F_CREATE
                    | netlink::NLM_F_EXCL,
            )
            .push(&IFINFOMSG)
            .attr(IFLA_IFNAME, b"crs-probe0\0")
            .nest(IFLA_LINKINFO, |m| {
                m.attr(IFLA_INFO_KIND, b"veth");
                m.nest(IFLA_INFO_DATA, |m| {
                    m.nest(VETH_INFO_PEER, |m| {
                        m.push(&IFINFOMSG);
                        m.attr(IFLA_IFNAME, b"crs-probe1\0");
                        m.attr(IFLA_NET_NS_FD, &peer_fd.to_ne_bytes());
                    });
                });
            })
            .finish();
            match rtnl_status(&create)? {
                0 => {}
                e => {
                    return Err(format!(
                        "creating a veth pair: {}",
                        io::Error::from_raw_os_error(e)
                    ))
                }
            }
            let dump = Msg::new(RTM_GETLINK, netlink::NLM_F_REQUEST | netlink::NLM_F_DUMP)
                .push(&IFINFOMSG)
                .finish();
            let replies =
                netlink::talk(SockProtocol::NetlinkRoute, &dump).map_err(ctx("RTM_GETLINK"))?;
            let named = netlink::messages(&replies).any(|(kind, payload)| {
                kind == RTM_NEWLINK
                    && netlink::attrs(payload.get(16..).unwrap_or_default())
                        .any(|(a, _)| a == IFLA_LINK_NETNSID)
            });
            if named {
                Ok(())
            } else {
                Err("a veth whose peer is in another netns shows no IFLA_LINK_NETNSID".into())
            }
        })
    })
}

/// `kcmp_epoll`: kcmp compares a file with one an epoll watches (KCMP_EPOLL_TFD).
pub fn kcmp_epoll() -> Probe {
    const KCMP_EPOLL_TFD: libc::c_int = 7;
    #[repr(C)]
    struct KcmpEpollSlot {
        efd: u32,
        tfd: u32,
        toff: u32,
    }
    run(|| {
        let ep = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(ctx("epoll_create"))?;
        let (rd, _wr) = nix::unistd::pipe().map_err(ctx("pipe"))?;
        ep.add(&rd, EpollEvent::new(EpollFlags::EPOLLIN, 0))
            .map_err(ctx("epoll_ctl"))?;
        let slot = KcmpEpollSlot {
            efd: ep.0.as_raw_fd() as u32,
            tfd: rd.as_raw_fd() as u32,
            toff: 0,
        };
        let me = std::process::id() as libc::pid_t;
        // SAFETY: KCMP_EPOLL_TFD reads one kcmp_epoll_slot from the last argument, which
        // points at `slot`, a live local of that layout; the rest are integers.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_kcmp,
                me,
                me,
                KCMP_EPOLL_TFD,
                rd.as_raw_fd(),
                &slot as *const KcmpEpollSlot,
            )
        };
        match cvt(ret) {
            Ok(0) => Ok(()),
            Ok(r) => Err(format!("KCMP_EPOLL_TFD says a watched file differs ({r})")),
            Err(e) => Err(format!("KCMP_EPOLL_TFD: {e}")),
        }
    })
}

/// `timens`: time namespaces.
pub fn timens() -> Probe {
    run(|| exists("/proc/self/timens_offsets"))
}

/// `clone3_set_tid`: clone3 creates a task with a chosen pid (`set_tid`). Asked with a
/// `set_tid` but no `set_tid_size`, which a kernel that knows `set_tid` refuses with
/// EINVAL (before creating anything), one that does not with E2BIG, and one without
/// clone3 with ENOSYS.
pub fn clone3_set_tid() -> Probe {
    use crate::restore::CloneArgs;
    let args = CloneArgs {
        set_tid: u64::MAX,
        ..CloneArgs::default()
    };
    // SAFETY: the kernel reads `size_of::<CloneArgs>()` bytes of `args`, a live local of
    // clone_args' layout. A set_tid without a set_tid_size is refused before a task is
    // created; should a kernel ever create one, the child leaves at once below.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match ret {
        // SAFETY: we are an unexpected child of clone3; _exit leaves without running
        // anything of the parent's.
        0 => unsafe { libc::_exit(0) },
        pid if pid > 0 => {
            let _ = ptrace::wait(pid as crate::Tid);
            Probe::Absent("clone3 accepted an invalid set_tid".into())
        }
        _ => {
            let e = io::Error::last_os_error();
            match errno(&e) {
                libc::EINVAL => Probe::Present,
                _ => Probe::Absent(format!("clone3 with set_tid: {e}")),
            }
        }
    }
}

/// `newifindex`: RTM_SETLINK takes IFLA_NEW_IFINDEX. Asked with an invalid index (-1)
/// for a device that does not exist: a kernel that knows the attribute refuses the
/// value (ERANGE), one that does not looks for the device (ENODEV). Changes nothing.
pub fn newifindex() -> Probe {
    run(|| {
        let msg = Msg::new(
            RTM_SETLINK,
            netlink::NLM_F_REQUEST | netlink::NLM_F_ACK | netlink::NLM_F_CREATE,
        )
        .push(&IFINFOMSG)
        .attr(IFLA_NEW_IFINDEX, &(-1i32).to_ne_bytes())
        .attr(IFLA_IFNAME, b"crs-probe\0")
        .finish();
        match rtnl_status(&msg)? {
            libc::ERANGE => Ok(()),
            0 => Err("RTM_SETLINK accepted a negative IFLA_NEW_IFINDEX".into()),
            e => Err(format!(
                "RTM_SETLINK with IFLA_NEW_IFINDEX: {}",
                io::Error::from_raw_os_error(e)
            )),
        }
    })
}

/// Runs `bin args...` (found in PATH) and returns its output if it succeeded.
fn tool(bin: &str, args: &[&str]) -> Result<Output, String> {
    let out = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(ctx(&format!("running {bin}")))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "{bin} {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `nftables`: what crs would use to save and restore nftables rules, the `nft` binary,
/// runs. (CRIU answers whether it was built with libnftables; crs links no such library.)
pub fn nftables() -> Probe {
    run(|| tool("nft", &["--version"]).map(drop))
}

/// `network_lock_nftables`: `nft` runs and the kernel's nf_tables has set concatenations,
/// which a network lock keyed on address and port needs; tried in a new network
/// namespace of a probe thread, where the table made goes with the namespace.
pub fn network_lock_nftables() -> Probe {
    run(|| {
        tool("nft", &["--version"])?;
        in_new_namespaces(libc::CLONE_NEWNET, || {
            tool(
                "nft",
                &["create table inet crs_probe; \
                   add set inet crs_probe conn { type ipv4_addr . inet_service ; }"],
            )
            .map(drop)
        })
    })
}

/// The first of `candidates` that runs (`-V`) and is not the nf_tables flavour.
fn legacy_iptables(candidates: [&str; 2]) -> Result<(), String> {
    for bin in candidates {
        if let Ok(out) = tool(bin, &["-V"]) {
            if !out.stdout.windows(9).any(|w| w == b"nf_tables") {
                return Ok(());
            }
        }
    }
    Err(format!(
        "neither {} nor {} runs with the legacy iptables backend",
        candidates[0], candidates[1]
    ))
}

/// `has_ipt_legacy`: what crs would use to save and restore iptables rules, an
/// `iptables-save` (and, with IPv6, `ip6tables-save`) of the legacy backend, runs.
pub fn ipt_legacy() -> Probe {
    run(|| {
        legacy_iptables(["iptables-save", "iptables-legacy-save"])?;
        if Path::new("/proc/sys/net/ipv6").exists() {
            legacy_iptables(["ip6tables-save", "ip6tables-legacy-save"])?;
        }
        Ok(())
    })
}

/// `pidfd_store`: pidfd_open and pidfd_getfd work: crs takes a descriptor of its own
/// through a pidfd of itself and reads what was sent to it.
pub fn pidfd_store() -> Probe {
    run(|| {
        let me = crate::pidfd::pidfd_open(std::process::id() as crate::Tid, 0)
            .map_err(ctx("pidfd_open"))?;
        let (a, b) = unixsk::socketpair(libc::SOCK_DGRAM).map_err(ctx("socketpair"))?;
        unixsk::send(a.as_fd(), b"crs!", None).map_err(ctx("send"))?;
        let taken =
            crate::pidfd::pidfd_getfd(me.as_fd(), b.as_raw_fd()).map_err(ctx("pidfd_getfd"))?;
        let mut buf = [0u8; 8];
        let n = File::from(taken).read(&mut buf).map_err(ctx("recv"))?;
        if &buf[..n] == b"crs!" {
            Ok(())
        } else {
            Err("the descriptor pidfd_getfd gave is not the one asked for".into())
        }
    })
}

/// `ns_pid`: /proc/PID/status shows a task's pid in each pid namespace (NSpid).
pub fn ns_pid() -> Probe {
    run(|| {
        let status = fs::read("/proc/self/status").map_err(ctx("/proc/self/status"))?;
        if parse::has_field(&status, "NSpid") {
            Ok(())
        } else {
            Err("/proc/self/status shows no NSpid".into())
        }
    })
}

/// `apparmor_stacking`: AppArmor with stacked profiles (domain version 1.2 or later).
pub fn apparmor_stacking() -> Probe {
    const AA: &str = "/sys/kernel/security/apparmor";
    run(|| {
        exists(AA)?;
        let read = |f: &str| {
            let path = format!("{AA}/features/domain/{f}");
            fs::read(&path).map_err(ctx(&path))
        };
        if parse::apparmor_stacking(&read("stack")?, &read("version")?) {
            Ok(())
        } else {
            Err("AppArmor does not stack profiles (domain version before 1.2)".into())
        }
    })
}

fn tcp_socket() -> Result<OwnedFd, String> {
    let tcp = |af| {
        socket(
            af,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Tcp,
        )
    };
    tcp(AddressFamily::Inet)
        .or_else(|_| tcp(AddressFamily::Inet6))
        .map_err(ctx("socket"))
}

/// `sockopt_buf_lock`: SO_BUF_LOCK (socket buffer sizes pinned by the user).
pub fn sockopt_buf_lock() -> Probe {
    const SO_BUF_LOCK: i32 = 72;
    run(|| {
        let sk = tcp_socket()?;
        unixsk::getsockopt_int(sk.as_fd(), libc::SOL_SOCKET, SO_BUF_LOCK)
            .map(drop)
            .map_err(ctx("SO_BUF_LOCK"))
    })
}

/// `memfd_hugetlb`: memfd_create with MFD_HUGETLB.
pub fn memfd_hugetlb() -> Probe {
    run(|| {
        memfd_create(c"crs-probe", MFdFlags::MFD_HUGETLB | MFdFlags::MFD_CLOEXEC)
            .map(drop)
            .map_err(ctx("memfd_create(MFD_HUGETLB)"))
    })
}

/// `move_mount(2)` with MOVE_MOUNT_SET_GROUP: `to` joins the peer group of `from`.
fn move_mount_set_group_at(from: &Path, to: &Path) -> io::Result<()> {
    const MOVE_MOUNT_SET_GROUP: libc::c_uint = 0x100;
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both paths are NUL-terminated strings owned by locals that outlive the call;
    // the rest are integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_SET_GROUP,
        )
    };
    cvt(ret).map(drop)
}

/// `move_mount_set_group`: a mount can be put in another's peer group
/// (MOVE_MOUNT_SET_GROUP), tried in a private mount namespace of a probe thread.
pub fn move_mount_set_group() -> Probe {
    run(|| {
        in_new_namespaces(libc::CLONE_NEWNS, || {
            let base = child::scratch_tmpfs()?;
            let sub = base.join("sub");
            fs::create_dir(&sub).map_err(ctx("mkdir"))?;
            child::mount(None, &base, None, libc::MS_PRIVATE, None)
                .map_err(ctx("making the tmpfs private"))?;
            child::mount(Some(&sub), &sub, None, libc::MS_BIND, None).map_err(ctx("bind mount"))?;
            child::mount(None, &base, None, libc::MS_SHARED, None)
                .map_err(ctx("making the tmpfs shared"))?;
            move_mount_set_group_at(&base, &sub).map_err(ctx("MOVE_MOUNT_SET_GROUP"))
        })
    })
}

/// `openat2`: the openat2 system call (asked with a null `open_how` of size 0, which it
/// refuses with EINVAL; ENOSYS without it).
pub fn openat2() -> Probe {
    // SAFETY: the path is a NUL-terminated literal; a null open_how with size 0 is refused
    // before anything is read. Should a kernel open the file anyway, the descriptor is
    // owned and closed below.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            c".".as_ptr(),
            std::ptr::null::<u8>(),
            0usize,
        )
    };
    // SAFETY: a non-negative return is a new descriptor nothing else owns.
    match unsafe { owned(ret) } {
        Err(e) if errno(&e) == libc::ENOSYS => Probe::Absent(format!("openat2: {e}")),
        _ => Probe::Present,
    }
}

/// `get_rseq_conf`: a tracer reads its tracee's rseq registration
/// (PTRACE_GET_RSEQ_CONFIGURATION).
pub fn get_rseq_conf() -> Probe {
    run(|| {
        let child = idle_tracee()?;
        let conf = ptrace::get_rseq_configuration(child.pid())
            .map_err(ctx("PTRACE_GET_RSEQ_CONFIGURATION"))?;
        if conf.flags == 0 {
            Ok(())
        } else {
            Err(format!(
                "PTRACE_GET_RSEQ_CONFIGURATION: unknown flags {:#x}",
                conf.flags
            ))
        }
    })
}

/// `ipv6_freebind`: IPV6_FREEBIND (binding to an address not yet configured).
pub fn ipv6_freebind() -> Probe {
    run(|| {
        exists("/proc/sys/net/ipv6")?;
        let sk = socket(
            AddressFamily::Inet6,
            SockType::Datagram,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::Udp,
        )
        .map_err(ctx("socket"))?;
        unixsk::setsockopt_int(sk.as_fd(), libc::SOL_IPV6, libc::IPV6_FREEBIND, 1)
            .map_err(ctx("IPV6_FREEBIND"))
    })
}

/// A PAGEMAP_SCAN of crs's own empty range [0, 0) with the categories a dump asks for,
/// plus `extra` in the return mask: the kernel checks the arguments and scans nothing.
fn pagemap_scan_with(extra: u64) -> Result<(), String> {
    use crate::dump::{page_is, pagemap_scan, PageRegion, ScanQuery};
    let file = File::open("/proc/self/pagemap").map_err(ctx("/proc/self/pagemap"))?;
    let query = ScanQuery {
        category_inverted: page_is::PFNZERO | page_is::FILE,
        category_mask: page_is::PFNZERO | page_is::FILE,
        category_anyof_mask: page_is::PRESENT | page_is::SWAPPED,
        return_mask: page_is::PRESENT | page_is::SWAPPED | page_is::SOFT_DIRTY | extra,
    };
    let mut out = [PageRegion::default()];
    pagemap_scan(file.as_fd(), 0, 0, &query, &mut out)
        .map(drop)
        .map_err(ctx("PAGEMAP_SCAN"))
}

/// `pagemap_scan`: the PAGEMAP_SCAN ioctl on /proc/PID/pagemap, the fast present-page
/// scan.
pub fn pagemap_scan() -> Probe {
    run(|| pagemap_scan_with(0))
}

/// `pagemap_scan_guard_pages`: PAGEMAP_SCAN reports guard pages (PAGE_IS_GUARD).
pub fn pagemap_scan_guard_pages() -> Probe {
    run(|| pagemap_scan_with(crate::dump::page_is::GUARD))
}

/// `timer_cr_ids`: POSIX timers can be created with chosen ids
/// (PR_TIMER_CREATE_RESTORE_IDS).
pub fn timer_cr_ids() -> Probe {
    const PR_TIMER_CREATE_RESTORE_IDS: libc::c_int = 77;
    const PR_TIMER_CREATE_RESTORE_IDS_GET: libc::c_ulong = 2;
    // SAFETY: the GET form takes and returns integers only and changes nothing.
    let ret = unsafe {
        libc::prctl(
            PR_TIMER_CREATE_RESTORE_IDS,
            PR_TIMER_CREATE_RESTORE_IDS_GET,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    run(|| {
        cvt(ret.into())
            .map(drop)
            .map_err(ctx("PR_TIMER_CREATE_RESTORE_IDS"))
    })
}

/// `overlayfs_maps`: /proc/PID/maps shows a mapped overlayfs file with the device and
/// inode that stat gives, tried on an overlay of tmpfs directories in a private mount
/// namespace of a probe thread.
pub fn overlayfs_maps() -> Probe {
    run(|| {
        in_new_namespaces(libc::CLONE_NEWNS, || {
            let base = child::scratch_tmpfs()?;
            std::env::set_current_dir(&base).map_err(ctx("chdir"))?;
            for d in ["lower", "upper", "work", "merged"] {
                fs::create_dir(d).map_err(ctx("mkdir"))?;
            }
            child::mount(
                Some(Path::new("crs-probe")),
                Path::new("merged"),
                Some("overlay"),
                0,
                Some("lowerdir=lower,upperdir=upper,workdir=work"),
            )
            .map_err(ctx("mounting overlayfs"))?;
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open("merged/test")
                .map_err(ctx("creating a file on overlayfs"))?;
            let m = Mapping::new(
                page_size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                Some(f.as_fd()),
            )
            .map_err(ctx("mmap"))?;
            let maps = fs::read("/proc/self/maps").map_err(ctx("/proc/self/maps"))?;
            let e = parse::maps_entry(&maps, m.addr as u64)
                .ok_or("the overlayfs file's mapping is missing from /proc/self/maps")?;
            let st = f.metadata().map_err(ctx("fstat"))?;
            let want = (
                parse::dev_major(st.dev()),
                parse::dev_minor(st.dev()),
                st.ino(),
            );
            let seen = (e.dev_major, e.dev_minor, e.inode);
            if seen == want {
                Ok(())
            } else {
                Err(format!(
                    "maps shows {:x}:{:x} inode {} for a file stat shows as {:x}:{:x} inode {}",
                    seen.0, seen.1, seen.2, want.0, want.1, want.2
                ))
            }
        })
    })
}

/// `breakpoints`: hardware breakpoints fire (some hypervisors do not virtualize debug
/// registers): a tracee given an execute breakpoint on a function it then calls must stop
/// with SIGTRAP.
pub fn breakpoints() -> Probe {
    run(breakpoints_check)
}

#[cfg(target_arch = "x86_64")]
fn breakpoints_check() -> Result<(), String> {
    #[inline(never)]
    extern "C" fn target() {
        std::hint::black_box(());
    }
    let target: extern "C" fn() = target;
    let call = || std::hint::black_box(target)();
    // SAFETY: the setup does nothing; the continuation calls `target`, which does
    // nothing, through a pointer.
    let mut child = unsafe { traced_child(|| true, call) }?;
    let pid = child.pid();
    let dr = std::mem::offset_of!(libc::user, u_debugreg) as u64;
    ptrace::poke_user(pid, dr, target as usize as u64).map_err(ctx("setting DR0"))?;
    // DR7: locally enable DR0, an execute breakpoint of length 1.
    ptrace::poke_user(pid, dr + 7 * 8, 1).map_err(ctx("setting DR7"))?;
    ptrace::cont(pid, 0).map_err(ctx("PTRACE_CONT"))?;
    match child.wait() {
        Ok(Stop::Signal(libc::SIGTRAP)) => Ok(()),
        Ok(s) => Err(format!("a hardware breakpoint did not fire: {s:?}")),
        Err(e) => Err(format!("waiting for the probe's child: {e}")),
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn breakpoints_check() -> Result<(), String> {
    Err("crs probes hardware breakpoints on x86_64 only".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_on_this_kernel_all_present() {
        // The development and CI machines run Linux 6.18 with every one of these.
        for (name, p) in all() {
            assert_eq!(p, Probe::Present, "{name}");
        }
    }
}
