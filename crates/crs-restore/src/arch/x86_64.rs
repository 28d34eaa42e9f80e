//! x86_64: general registers from the image (with syscall restart), and the XSAVE area.

use crs_compel::Regs;
use crs_images::pb::core_x86::{User_x86_fpregs_entry, User_x86_regs_entry};

const ERESTARTSYS: i64 = 512;
const ERESTARTNOINTR: i64 = 513;
const ERESTARTNOHAND: i64 = 514;
const ERESTART_RESTARTBLOCK: i64 = 516;
const NR_RESTART_SYSCALL: u64 = 219;
const EINTR: i64 = 4;
const SYSCALL_LEN: u64 = 2;

/// The registers the restored thread resumes with. `at_ip` tells whether the two bytes at
/// an address are a `syscall` instruction.
///
/// A thread stopped inside a syscall resumes the way the kernel would have resumed it:
/// -ERESTARTSYS/-ERESTARTNOINTR/-ERESTARTNOHAND re-execute the syscall, a
/// -ERESTART_RESTARTBLOCK one returns -EINTR (its restart data died with the old task),
/// as CRIU does. Images written by CRIU already hold the restarted form, which passes
/// through unchanged. `orig_rax` is always -1 so the kernel applies nothing on resume.
pub(crate) fn final_regs(g: &User_x86_regs_entry, at_ip: impl Fn(u64) -> bool) -> Regs {
    let mut r = Regs {
        r15: g.r15(),
        r14: g.r14(),
        r13: g.r13(),
        r12: g.r12(),
        rbp: g.bp(),
        rbx: g.bx(),
        r11: g.r11(),
        r10: g.r10(),
        r9: g.r9(),
        r8: g.r8(),
        rax: g.ax(),
        rcx: g.cx(),
        rdx: g.dx(),
        rsi: g.si(),
        rdi: g.di(),
        orig_rax: g.orig_ax(),
        rip: g.ip(),
        cs: g.cs(),
        eflags: g.flags(),
        rsp: g.sp(),
        ss: g.ss(),
        fs_base: g.fs_base(),
        gs_base: g.gs_base(),
        ds: g.ds(),
        es: g.es(),
        fs: g.fs(),
        gs: g.gs(),
    };
    if (r.orig_rax as i64) >= 0 {
        match -(r.rax as i64) {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                r.rax = r.orig_rax;
                r.rip = r.rip.wrapping_sub(SYSCALL_LEN);
            }
            ERESTART_RESTARTBLOCK => r.rax = (-EINTR) as u64,
            _ if r.rax == NR_RESTART_SYSCALL
                && r.orig_rax != NR_RESTART_SYSCALL
                && at_ip(r.rip) =>
            {
                // Already rewound to restart_syscall by the dumper.
                r.rax = (-EINTR) as u64;
                r.rip = r.rip.wrapping_add(SYSCALL_LEN);
            }
            _ => {}
        }
    }
    r.orig_rax = u64::MAX;
    r
}

/// Standard-format XSAVE components: (feature bit, bytes in the image).
fn components(fp: &User_x86_fpregs_entry) -> Vec<(u32, Vec<u8>)> {
    let Some(x) = fp.xsave.as_ref() else {
        return Vec::new();
    };
    let u32s = |v: &[u32]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let u64s = |v: &[u64]| v.iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    vec![
        (2, u32s(&x.ymmh_space)),
        (3, u64s(&x.bndreg_state)),
        (4, u64s(&x.bndcsr_state)),
        (5, u64s(&x.opmask_reg)),
        (6, u64s(&x.zmm_upper)),
        (7, u64s(&x.hi16_zmm)),
        (9, u32s(&x.pkru)),
    ]
}

/// Overwrites `buf` (an NT_X86_XSTATE buffer read from the thread, so of the size and
/// layout the kernel wants) with the image's FPU state. Errors name what does not fit.
pub(crate) fn build_xstate(fp: &User_x86_fpregs_entry, buf: &mut [u8]) -> Result<(), String> {
    if buf.len() < 576 {
        return Err(format!("xstate buffer of {} bytes", buf.len()));
    }
    let put = |buf: &mut [u8], off: usize, b: &[u8]| buf[off..off + b.len()].copy_from_slice(b);
    put(buf, 0, &(fp.cwd() as u16).to_le_bytes());
    put(buf, 2, &(fp.swd() as u16).to_le_bytes());
    put(buf, 4, &(fp.twd() as u16).to_le_bytes());
    put(buf, 6, &(fp.fop() as u16).to_le_bytes());
    put(buf, 8, &fp.rip().to_le_bytes());
    put(buf, 16, &fp.rdp().to_le_bytes());
    put(buf, 24, &fp.mxcsr().to_le_bytes());
    put(buf, 28, &fp.mxcsr_mask().to_le_bytes());
    if fp.st_space.len() > 32 || fp.xmm_space.len() > 64 {
        return Err("oversized st/xmm space".into());
    }
    for (i, w) in fp.st_space.iter().enumerate() {
        put(buf, 32 + 4 * i, &w.to_le_bytes());
    }
    for (i, w) in fp.xmm_space.iter().enumerate() {
        put(buf, 160 + 4 * i, &w.to_le_bytes());
    }
    // The kernel reports the features it supports in the software-reserved bytes.
    let supported = u64::from_le_bytes(buf[472..480].try_into().expect("8 bytes"));
    let bv = fp.xsave.as_ref().map_or(3, |x| x.xstate_bv());
    if supported != 0 && bv & !supported != 0 {
        return Err(format!(
            "xsave features {:#x} not supported here",
            bv & !supported
        ));
    }
    put(buf, 512, &bv.to_le_bytes());
    put(buf, 520, &0u64.to_le_bytes());
    for (bit, bytes) in components(fp) {
        if bytes.is_empty() {
            continue;
        }
        let (off, size) = crs_sys::x86::xsave_component(bit);
        if size == 0 || bytes.len() > size || off + bytes.len() > buf.len() {
            return Err(format!(
                "xsave component {bit} ({} bytes) does not fit this CPU (offset {off}, size {size})",
                bytes.len()
            ));
        }
        put(buf, off, &bytes);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gp(ax: u64, orig: u64, ip: u64) -> User_x86_regs_entry {
        let mut g = User_x86_regs_entry::new();
        g.set_ax(ax);
        g.set_orig_ax(orig);
        g.set_ip(ip);
        g.set_cs(0x33);
        g
    }

    #[test]
    fn final_regs_criu_eintr_passes_through() {
        let r = final_regs(&gp((-EINTR) as u64, 230, 0x45ef73), |_| false);
        assert_eq!(
            (r.rax, r.rip, r.orig_rax),
            ((-EINTR) as u64, 0x45ef73, u64::MAX)
        );
    }

    #[test]
    fn final_regs_raw_erestartsys_reexecutes() {
        let r = final_regs(&gp((-ERESTARTSYS) as u64, 7, 0x1002), |_| false);
        assert_eq!((r.rax, r.rip, r.orig_rax), (7, 0x1000, u64::MAX));
    }

    #[test]
    fn final_regs_restart_block_returns_eintr() {
        let r = final_regs(&gp((-ERESTART_RESTARTBLOCK) as u64, 230, 0x1002), |_| false);
        assert_eq!((r.rax, r.rip), ((-EINTR) as u64, 0x1002));
    }

    #[test]
    fn final_regs_rewound_restart_syscall_returns_eintr() {
        let r = final_regs(&gp(NR_RESTART_SYSCALL, 230, 0x1000), |ip| ip == 0x1000);
        assert_eq!((r.rax, r.rip), ((-EINTR) as u64, 0x1002));
    }

    #[test]
    fn final_regs_read_of_219_bytes_is_kept() {
        let r = final_regs(&gp(NR_RESTART_SYSCALL, 0, 0x1002), |_| false);
        assert_eq!((r.rax, r.rip), (NR_RESTART_SYSCALL, 0x1002));
    }
}
