//! Cost of compel's basic operations on a live target:
//!
//! - `injected_syscall/*`: one getpid run inside a held thread, for a thread blocked in a
//!   restartable syscall (read: needs the extra trap that keeps the restart right) and for
//!   one running user code; baseline `ptrace_stop_roundtrip`: one PTRACE_INTERRUPT +
//!   PTRACE_CONT + wait on a held thread, the unit an injected syscall is made of.
//! - `seize_release/N`: seize (PTRACE_SEIZE + INTERRUPT + wait for each thread, tree walk
//!   included) and detach of a process with N threads; criterion reports per-thread
//!   throughput.
//!
//! The target is this same binary, re-run with `CRS_BENCH_COMPEL_TARGET=blocked:N|busy:N`.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use criterion::{criterion_group, Criterion, Throughput};
use crs_compel::{Release, SeizeOptions, SeizedTree};
use crs_sys::ptrace;

const TARGET_ENV: &str = "CRS_BENCH_COMPEL_TARGET";

/// The target: N extra threads blocked in read(2) or spinning, the main thread in read(2)
/// on stdin until EOF.
fn run_target(spec: &str) -> ! {
    let (kind, n) = spec.split_once(':').expect("kind:N");
    let n: usize = n.parse().expect("N");
    let (r, _w) = nix::unistd::pipe().expect("pipe");
    let r = std::sync::Arc::new(std::fs::File::from(r));
    for _ in 0..n {
        let r = r.clone();
        let busy = kind == "busy";
        std::thread::spawn(move || {
            if busy {
                let mut x = 1u64;
                loop {
                    x = black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            } else {
                let _ = (&*r).read(&mut [0u8; 1]);
            }
        });
    }
    println!("ready");
    std::io::stdout().flush().expect("stdout");
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    std::process::exit(0);
}

struct Target(Child);

impl Target {
    fn start(spec: &str) -> Target {
        let mut child = Command::new(std::env::current_exe().expect("current_exe"))
            .env(TARGET_ENV, spec)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn target");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready");
        assert_eq!(line.trim(), "ready");
        Target(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn injected_syscall(c: &mut Criterion) {
    let mut g = c.benchmark_group("injected_syscall");
    for (name, spec) in [
        ("blocked_in_read", "blocked:1"),
        ("running_user_code", "busy:1"),
    ] {
        let target = Target::start(spec);
        let mut tree = SeizedTree::seize(target.pid(), &SeizeOptions::default()).expect("seize");
        // The extra thread: blocked in read, or spinning.
        let tid = tree
            .tids()
            .find(|&t| t != target.pid())
            .expect("worker thread");
        g.bench_function(name, |b| {
            b.iter(|| black_box(tree.syscall(tid, libc::SYS_getpid, [0; 6]).expect("getpid")))
        });
        tree.release(Release::Detach).expect("release");
    }

    // Baseline: one stop round trip on a thread held with raw ptrace (registers untouched,
    // so the thread stays consistent whatever it was doing).
    let target = Target::start("blocked:1");
    let tid = std::fs::read_dir(format!("/proc/{}/task", target.pid()))
        .expect("task dir")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .find(|&t| t != target.pid())
        .expect("worker thread");
    ptrace::seize(tid, ptrace::opt::TRACESYSGOOD).expect("seize");
    ptrace::interrupt(tid).expect("interrupt");
    ptrace::wait(tid).expect("wait");
    g.bench_function("ptrace_stop_roundtrip", |b| {
        b.iter(|| {
            ptrace::interrupt(tid).expect("interrupt");
            ptrace::cont(tid, 0).expect("cont");
            black_box(ptrace::wait(tid).expect("wait"))
        })
    });
    ptrace::detach(tid, 0).expect("detach");
    g.finish();
}

fn seize_release(c: &mut Criterion) {
    let mut g = c.benchmark_group("seize_release");
    g.measurement_time(Duration::from_secs(5));
    for threads in [1usize, 8, 64] {
        for kind in ["blocked", "busy"] {
            // `threads` counts the main thread too.
            let target = Target::start(&format!("{kind}:{}", threads - 1));
            g.throughput(Throughput::Elements(threads as u64));
            g.bench_function(format!("{kind}/{threads}"), |b| {
                b.iter(|| {
                    let tree =
                        SeizedTree::seize(target.pid(), &SeizeOptions::default()).expect("seize");
                    assert_eq!(tree.thread_count(), threads);
                    tree.release(Release::Detach).expect("release");
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, injected_syscall, seize_release);

fn main() {
    if let Ok(spec) = std::env::var(TARGET_ENV) {
        run_target(&spec);
    }
    if !nix::unistd::geteuid().is_root() {
        println!(
            "SKIP: compel bench: needs root (ptrace of a child with PTRACE_O_SUSPEND_SECCOMP)"
        );
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
