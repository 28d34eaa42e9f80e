//! Kernel feature probes for `crs check`: each calls the interface with
//! arguments that are harmless, and tells "present" from "absent" by the errno
//! (ENOSYS / ENOTTY mean absent; EINVAL, EFAULT, EPERM mean the kernel knows it).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// Outcome of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The kernel has it.
    Present,
    /// The kernel lacks it (or refuses it to us), with the errno seen.
    Absent(String),
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

/// `clone3`, needed to create tasks with their dumped PIDs (`set_tid`).
pub fn clone3() -> Probe {
    // SAFETY: a NULL `clone_args` with size 0 is rejected by the kernel before
    // anything is read or any task is created (EINVAL when clone3 exists,
    // ENOSYS otherwise); no memory is passed.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) };
    judge(ret, &[libc::ENOSYS])
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

/// The `PAGEMAP_SCAN` ioctl on /proc/self/pagemap, the fast present-page scan.
pub fn pagemap_scan() -> Probe {
    // _IOWR('f', 16, struct pm_scan_arg)
    const PAGEMAP_SCAN: libc::c_ulong = 0xc060_6610;
    let file = match File::open("/proc/self/pagemap") {
        Ok(f) => f,
        Err(e) => return Probe::Absent(e.to_string()),
    };
    // SAFETY: a NULL argument makes the kernel fail with EFAULT when it knows
    // the ioctl (ENOTTY otherwise) before anything is read or written.
    let ret = unsafe { libc::ioctl(file.as_raw_fd(), PAGEMAP_SCAN, std::ptr::null_mut::<u8>()) };
    judge(ret.into(), &[libc::ENOTTY, libc::EINVAL])
}

/// Every probe, by crs's feature names.
pub fn all() -> Vec<(&'static str, Probe)> {
    vec![
        ("clone3_set_tid", clone3()),
        ("pidfd_getfd", pidfd_getfd()),
        ("process_vm_readv", process_vm_readv()),
        ("userfaultfd", userfaultfd()),
        ("kcmp", kcmp()),
        ("prctl_mm_map", prctl_mm_map()),
        ("pagemap_scan", pagemap_scan()),
    ]
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
