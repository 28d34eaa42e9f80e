//! Workload for the compel tests: installs a seccomp filter that makes getppid fail with
//! EPERM, prints `ready`, sleeps in a loop until `stop`/EOF on stdin, then checks the
//! filter is still in force and exits 0 (1 on failure).
#![forbid(unsafe_code)]

use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::time::Duration;

use crs_sys::ptrace::SockFilter;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// The filter returns -EPERM, which is -1 whether or not libc turns it into errno.
fn getppid_fails() -> bool {
    nix::unistd::getppid().as_raw() == -1
}

fn main() {
    // offsetof(struct seccomp_data, nr) = 0, arch = 4
    let prog = [
        SockFilter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 4,
        },
        SockFilter {
            code: BPF_JEQ_K,
            jt: 1,
            jf: 0,
            k: AUDIT_ARCH_X86_64,
        },
        SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
        SockFilter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        SockFilter {
            code: BPF_JEQ_K,
            jt: 0,
            jf: 1,
            k: libc::SYS_getppid as u32,
        },
        SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ERRNO | libc::EPERM as u32,
        },
        SockFilter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: SECCOMP_RET_ALLOW,
        },
    ];
    nix::sys::prctl::set_no_new_privs().expect("no_new_privs");
    // TSYNC (1): the filter applies to every thread, including ones started below.
    crs_sys::seccomp::set_mode_filter(1, &prog).expect("seccomp");
    let mut ok = getppid_fails();

    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let sleeper = std::thread::spawn(move || {
        let mut fine = true;
        while !s.load(SeqCst) {
            let d = Duration::from_millis(10);
            fine &= crs_sys::time::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                crs_sys::time::Sleep::Relative(d),
            )
            .is_ok();
        }
        fine && getppid_fails()
    });
    println!("ready");
    io::stdout().flush().expect("stdout");
    let mut line = String::new();
    let _ = io::stdin().lock().read_line(&mut line);
    stop.store(true, SeqCst);
    ok &= sleeper.join().unwrap_or(false);
    ok &= getppid_fails();
    eprintln!("compel_seccomp: ok={ok}");
    std::process::exit(if ok { 0 } else { 1 });
}
