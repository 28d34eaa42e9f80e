use std::io;
use std::path::PathBuf;

use crs_sys::{RemoteAddr, Tid};

/// Everything that can fail while holding a tree.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("process {pid} does not exist")]
    NoSuchProcess { pid: Tid },
    #[error(transparent)]
    Fault(#[from] crs_sys::fault::Injected),
    #[error("the guardian: {what}")]
    Guardian {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("process {pid} is crs itself")]
    SelfInTree { pid: Tid },
    #[error("listing the threads of process {pid}")]
    ListThreads {
        pid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("reading the children of thread {tid}")]
    ListChildren {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("reading /proc/{tid}/status")]
    Status {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("seizing thread {tid}")]
    Seize {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} refused PTRACE_SEIZE (EPERM) for {waited_ms} ms although nothing traces it: it is \
         stuck exiting or in an execve, or a security module forbids tracing it",
        if tid == pid { format!("process {pid}") } else { format!("thread {tid} of process {pid}") }
    )]
    SeizeDenied { tid: Tid, pid: Tid, waited_ms: u64 },
    #[error("putting back the CPU mask of thread {tid}")]
    Affinity {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error(
        "{} is already traced by {tracer_name} (pid {tracer_pid}{}): a task has one tracer at a \
         time (a debugger, strace, another crs); detach it or let it finish first",
        if tid == pid { format!("process {pid}") } else { format!("thread {tid} of process {pid}") },
        if tracer == tracer_pid { String::new() } else { format!(", thread {tracer}") }
    )]
    AlreadyTraced {
        tid: Tid,
        pid: Tid,
        /// TracerPid: the tracing thread.
        tracer: Tid,
        /// The process of the tracing thread.
        tracer_pid: Tid,
        /// The command name of that process (/proc/PID/comm).
        tracer_name: String,
    },
    #[error("interrupting thread {tid}")]
    Interrupt {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("waiting for thread {tid} to stop")]
    Wait {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("resuming thread {tid}")]
    Resume {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("thread {tid} is not held by this tree")]
    NotSeized { tid: Tid },
    #[error("thread {tid} exited while held")]
    ThreadGone { tid: Tid },
    #[error(
        "thread {tid} got signal {signo} while running an injected syscall (the signal is lost)"
    )]
    UnexpectedSignal { tid: Tid, signo: i32 },
    #[error(
        "thread {tid} runs in compat mode (cs {cs:#x}); only native 64-bit tasks are supported"
    )]
    CompatMode { tid: Tid, cs: u64 },
    #[error("reading the registers of thread {tid}")]
    GetRegs {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("writing the registers of thread {tid}")]
    SetRegs {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("reading the extended FPU state of thread {tid}")]
    GetXstate {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("writing the extended FPU state of thread {tid}")]
    SetXstate {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("reading the signal mask of thread {tid}")]
    GetSigmask {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("writing the signal mask of thread {tid}")]
    SetSigmask {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("peeking the {} signal queue of thread {tid}", if *.shared { "shared" } else { "private" })]
    PeekSiginfo {
        tid: Tid,
        shared: bool,
        #[source]
        source: io::Error,
    },
    #[error("reading seccomp filter {index} of thread {tid}")]
    SeccompFilter {
        tid: Tid,
        index: u64,
        #[source]
        source: io::Error,
    },
    #[error("reading the rseq configuration of thread {tid}")]
    Rseq {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("reading /proc/{pid}/maps")]
    Maps {
        pid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("reading the signal thread {tid} is stopped with")]
    GetSiginfo {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("thread {tid} has every signal a syscall batch can stop with queued")]
    NoStopSignal { tid: Tid },
    #[error("a syscall batch in thread {tid} stopped with its entry pointer at {at:#x}, outside its table")]
    BatchLost { tid: Tid, at: u64 },
    #[error("no executable syscall instruction found in process {pid}")]
    NoSyscallSite { pid: Tid },
    #[error("mapping the scratch area in process {pid} failed with errno {errno}")]
    ScratchMap { pid: Tid, errno: i64 },
    #[error("reading {len:#x} bytes at {addr} of process {pid}")]
    RemoteRead {
        pid: Tid,
        addr: RemoteAddr,
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("writing {len:#x} bytes at {addr} of process {pid}")]
    RemoteWrite {
        pid: Tid,
        addr: RemoteAddr,
        len: usize,
        #[source]
        source: io::Error,
    },
    #[error("opening a pidfd for process {pid}")]
    PidfdOpen {
        pid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("taking fd {fd} of process {pid}")]
    GetFd {
        pid: Tid,
        fd: i32,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path} has no freezer (neither cgroup.freeze nor freezer.state)")]
    NoFreezer { path: PathBuf },
    #[error("writing the freezer state of cgroup {path}")]
    Freeze {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cgroup {path} did not reach the frozen state within {timeout_ms} ms")]
    FreezeTimeout { path: PathBuf, timeout_ms: u64 },
    #[error("detaching thread {tid}")]
    Detach {
        tid: Tid,
        #[source]
        source: io::Error,
    },
    #[error("killing process {pid}")]
    Kill {
        pid: Tid,
        #[source]
        source: io::Error,
    },
}
