//! Installing seccomp filters.

use std::io;

use crate::cvt;
use crate::ptrace::SockFilter;

const SECCOMP_SET_MODE_FILTER: u32 = 1;

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)` for the calling thread. Needs
/// no_new_privs or CAP_SYS_ADMIN.
pub fn set_mode_filter(flags: u32, program: &[SockFilter]) -> io::Result<()> {
    let len =
        u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let prog = SockFprog {
        len,
        filter: program.as_ptr(),
    };
    // SAFETY: `prog` is a live sock_fprog whose `filter` points at `len` instructions of
    // `program`, which outlives the call; the kernel copies the program before returning.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_SET_MODE_FILTER,
            flags,
            &prog as *const SockFprog,
        )
    };
    cvt(ret).map(drop)
}
