//! 32-bit system calls from a 64-bit task (`int 0x80`), for the `compat_cr` probe.

use std::arch::asm;

/// The 32-bit `mmap2(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)`: the
/// address of the new mapping, or a negative errno as a u32. Without ia32 emulation the
/// task gets SIGSEGV.
fn mmap2_none(len: u32) -> u32 {
    const NR_MMAP2_32: u32 = 192;
    let ret: u32;
    // The call makes a PROT_NONE anonymous mapping at an address the kernel picks. Its
    // arguments go in ebx, ecx, edx, esi, edi and ebp; Rust reserves rbx and rbp, so they
    // are saved in r12 and r13 (declared clobbered) and put back before the block ends.
    // Kernels before 4.17 zero r8-r11 on int 0x80: declared clobbered too.
    // SAFETY: no memory, mapping or stack of ours is touched; every register is restored.
    unsafe {
        asm!(
            "mov r12, rbx",
            "mov r13, rbp",
            "xor ebx, ebx",
            "xor ebp, ebp",
            "int 0x80",
            "mov rbx, r12",
            "mov rbp, r13",
            inlateout("eax") NR_MMAP2_32 => ret,
            in("ecx") len,
            in("edx") libc::PROT_NONE as u32,
            in("esi") (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u32,
            in("edi") u32::MAX,
            out("r8") _,
            out("r9") _,
            out("r10") _,
            out("r11") _,
            out("r12") _,
            out("r13") _,
            options(nostack),
        );
    }
    ret
}

/// Whether a 32-bit mmap from this 64-bit task gives a 32-bit address that munmap frees:
/// mapping, unmapping and mapping again must give the same address. Before Linux 4.12 the
/// kernel mapped at a 64-bit address and returned it truncated, so the unmap missed and
/// the second mapping landed elsewhere. Maps below 4 GiB and may leave a mapping there:
/// for a throwaway child only. Makes system calls only (async-signal-safe).
pub(crate) fn mmap_reuses_address(page: u32) -> bool {
    let first = mmap2_none(page);
    if !first.is_multiple_of(page) {
        return false;
    }
    // SAFETY: unmaps the PROT_NONE mapping just made at `first`, which nothing refers to.
    if unsafe { libc::munmap(first as usize as *mut libc::c_void, page as usize) } != 0 {
        return false;
    }
    let second = mmap2_none(page);
    second.is_multiple_of(page) && second == first
}
