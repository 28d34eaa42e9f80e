//! `/proc/PID/stat` and `/proc/PID/task/TID/stat`.

use crate::error::ParseError;
use crate::util::{tokens, Ctx};
use crate::ProcFile;

/// Scheduler state letter of a task (field 3 of stat, `State:` of status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    /// `R`
    Running,
    /// `S`
    Sleeping,
    /// `D` (uninterruptible)
    DiskSleep,
    /// `T`
    Stopped,
    /// `t`
    TracingStop,
    /// `Z`
    Zombie,
    /// `X` or `x`
    Dead,
    /// `K`
    Wakekill,
    /// `W`
    Waking,
    /// `P`
    Parked,
    /// `I`
    Idle,
    /// Any other letter.
    Other(u8),
}

impl TaskState {
    /// Maps the kernel's state letter.
    pub fn from_letter(c: u8) -> Self {
        match c {
            b'R' => TaskState::Running,
            b'S' => TaskState::Sleeping,
            b'D' => TaskState::DiskSleep,
            b'T' => TaskState::Stopped,
            b't' => TaskState::TracingStop,
            b'Z' => TaskState::Zombie,
            b'X' | b'x' => TaskState::Dead,
            b'K' => TaskState::Wakekill,
            b'W' => TaskState::Waking,
            b'P' => TaskState::Parked,
            b'I' => TaskState::Idle,
            o => TaskState::Other(o),
        }
    }
}

/// Every field of `/proc/PID/stat` (proc_pid_stat(5)), in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    /// (1) pid (or tid for a task file).
    pub pid: i32,
    /// (2) comm, without the parentheses; raw bytes (may contain spaces and parentheses).
    pub comm: Vec<u8>,
    /// (3) state.
    pub state: TaskState,
    /// (4) parent pid.
    pub ppid: i32,
    /// (5) process group.
    pub pgrp: i32,
    /// (6) session.
    pub session: i32,
    /// (7) controlling terminal, encoded device number (0 if none).
    pub tty_nr: i32,
    /// (8) foreground process group of the terminal (-1 if none).
    pub tpgid: i32,
    /// (9) kernel PF_* flags.
    pub flags: u32,
    /// (10) minor faults.
    pub minflt: u64,
    /// (11) minor faults of waited-for children.
    pub cminflt: u64,
    /// (12) major faults.
    pub majflt: u64,
    /// (13) major faults of waited-for children.
    pub cmajflt: u64,
    /// (14) user time, clock ticks.
    pub utime: u64,
    /// (15) system time, clock ticks.
    pub stime: u64,
    /// (16) children's user time.
    pub cutime: i64,
    /// (17) children's system time.
    pub cstime: i64,
    /// (18) priority.
    pub priority: i64,
    /// (19) nice.
    pub nice: i64,
    /// (20) number of threads.
    pub num_threads: i64,
    /// (21) itrealvalue (always 0).
    pub itrealvalue: i64,
    /// (22) start time after boot, clock ticks.
    pub start_time: u64,
    /// (23) virtual size, bytes.
    pub vsize: u64,
    /// (24) resident set, pages.
    pub rss: i64,
    /// (25) RLIMIT_RSS soft limit.
    pub rsslim: u64,
    /// (26) start of text.
    pub start_code: u64,
    /// (27) end of text.
    pub end_code: u64,
    /// (28) start of stack.
    pub start_stack: u64,
    /// (29) kstkesp.
    pub kstkesp: u64,
    /// (30) kstkeip.
    pub kstkeip: u64,
    /// (31) pending signals (obsolete, decimal bitmap).
    pub signal: u64,
    /// (32) blocked signals (obsolete).
    pub blocked: u64,
    /// (33) ignored signals (obsolete).
    pub sigignore: u64,
    /// (34) caught signals (obsolete).
    pub sigcatch: u64,
    /// (35) wchan (0 or 1 since 4.x).
    pub wchan: u64,
    /// (36) nswap.
    pub nswap: u64,
    /// (37) cnswap.
    pub cnswap: u64,
    /// (38) signal sent to the parent on exit; -1 for a non-leader thread.
    pub exit_signal: i32,
    /// (39) last CPU.
    pub processor: i32,
    /// (40) real-time priority.
    pub rt_priority: u32,
    /// (41) scheduling policy.
    pub policy: u32,
    /// (42) aggregated block I/O delays, ticks.
    pub delayacct_blkio_ticks: u64,
    /// (43) guest time.
    pub guest_time: u64,
    /// (44) children's guest time.
    pub cguest_time: i64,
    /// (45) start of data.
    pub start_data: u64,
    /// (46) end of data.
    pub end_data: u64,
    /// (47) start of the heap (brk).
    pub start_brk: u64,
    /// (48) start of argv.
    pub arg_start: u64,
    /// (49) end of argv.
    pub arg_end: u64,
    /// (50) start of the environment.
    pub env_start: u64,
    /// (51) end of the environment.
    pub env_end: u64,
    /// (52) exit code as waitpid reports it.
    pub exit_code: i32,
}

impl Stat {
    /// comm as text (lossy UTF-8).
    pub fn comm_lossy(&self) -> String {
        String::from_utf8_lossy(&self.comm).into_owned()
    }
}

const FIELDS: [&str; 50] = [
    "state",
    "ppid",
    "pgrp",
    "session",
    "tty_nr",
    "tpgid",
    "flags",
    "minflt",
    "cminflt",
    "majflt",
    "cmajflt",
    "utime",
    "stime",
    "cutime",
    "cstime",
    "priority",
    "nice",
    "num_threads",
    "itrealvalue",
    "starttime",
    "vsize",
    "rss",
    "rsslim",
    "startcode",
    "endcode",
    "startstack",
    "kstkesp",
    "kstkeip",
    "signal",
    "blocked",
    "sigignore",
    "sigcatch",
    "wchan",
    "nswap",
    "cnswap",
    "exit_signal",
    "processor",
    "rt_priority",
    "policy",
    "delayacct_blkio_ticks",
    "guest_time",
    "cguest_time",
    "start_data",
    "end_data",
    "start_brk",
    "arg_start",
    "arg_end",
    "env_start",
    "env_end",
    "exit_code",
];

/// Parses `/proc/PID/stat`. comm runs from the first `(` to the last `)`, so a comm holding
/// spaces or parentheses is read whole. Fields after the 52nd (future kernels) are ignored.
pub fn parse_stat(bytes: &[u8]) -> Result<Stat, ParseError> {
    let ctx = Ctx::line(ProcFile::Stat, 1);
    let line = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if line.contains(&b'\n') && !has_comm_newline(line) {
        return Err(ctx.malformed("more than one line"));
    }
    let open = line
        .iter()
        .position(|&b| b == b'(')
        .ok_or_else(|| ctx.missing("'(' before comm"))?;
    let close = line
        .iter()
        .rposition(|&b| b == b')')
        .filter(|&c| c > open)
        .ok_or_else(|| ctx.missing("')' after comm"))?;
    let pid_tok = crate::util::trim(&line[..open]);
    let pid: i32 = ctx.sdec("pid", pid_tok)?;
    let comm = line[open + 1..close].to_vec();
    let rest: Vec<&[u8]> = tokens(&line[close + 1..]).collect();
    if rest.len() < FIELDS.len() {
        return Err(ctx.missing(FIELDS[rest.len()]));
    }
    let st = rest[0];
    if st.len() != 1 {
        return Err(ctx.invalid("state", st));
    }
    let u = |i: usize| ctx.dec::<u64>(FIELDS[i], rest[i]);
    let s = |i: usize| ctx.sdec::<i64>(FIELDS[i], rest[i]);
    let s32 = |i: usize| ctx.sdec::<i32>(FIELDS[i], rest[i]);
    let u32_ = |i: usize| ctx.dec::<u32>(FIELDS[i], rest[i]);
    Ok(Stat {
        pid,
        comm,
        state: TaskState::from_letter(st[0]),
        ppid: s32(1)?,
        pgrp: s32(2)?,
        session: s32(3)?,
        tty_nr: s32(4)?,
        tpgid: s32(5)?,
        flags: u32_(6)?,
        minflt: u(7)?,
        cminflt: u(8)?,
        majflt: u(9)?,
        cmajflt: u(10)?,
        utime: u(11)?,
        stime: u(12)?,
        cutime: s(13)?,
        cstime: s(14)?,
        priority: s(15)?,
        nice: s(16)?,
        num_threads: s(17)?,
        itrealvalue: s(18)?,
        start_time: u(19)?,
        vsize: u(20)?,
        rss: s(21)?,
        rsslim: u(22)?,
        start_code: u(23)?,
        end_code: u(24)?,
        start_stack: u(25)?,
        kstkesp: u(26)?,
        kstkeip: u(27)?,
        signal: u(28)?,
        blocked: u(29)?,
        sigignore: u(30)?,
        sigcatch: u(31)?,
        wchan: u(32)?,
        nswap: u(33)?,
        cnswap: u(34)?,
        exit_signal: s32(35)?,
        processor: s32(36)?,
        rt_priority: u32_(37)?,
        policy: u32_(38)?,
        delayacct_blkio_ticks: u(39)?,
        guest_time: u(40)?,
        cguest_time: s(41)?,
        start_data: u(42)?,
        end_data: u(43)?,
        start_brk: u(44)?,
        arg_start: u(45)?,
        arg_end: u(46)?,
        env_start: u(47)?,
        env_end: u(48)?,
        exit_code: s32(49)?,
    })
}

/// comm may hold a newline (prctl(PR_SET_NAME) takes any byte); stat then spans lines.
fn has_comm_newline(line: &[u8]) -> bool {
    match (
        line.iter().position(|&b| b == b'('),
        line.iter().rposition(|&b| b == b')'),
    ) {
        (Some(o), Some(c)) if o < c => !line[..o].contains(&b'\n') && !line[c..].contains(&b'\n'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ParseErrorKind;

    const ZOO: &[u8] = include_bytes!("../tests/fixtures/zoo/stat");
    const THREAD: &[u8] = include_bytes!("../tests/fixtures/zoo/thread_stat");
    const ZOMBIE: &[u8] = include_bytes!("../tests/fixtures/zoo/zombie_stat");
    const KTHREAD: &[u8] = include_bytes!("../tests/fixtures/zoo/kthread_stat");

    #[test]
    fn stat_comm_with_spaces_and_parens_parsed() {
        let s = parse_stat(ZOO).unwrap();
        assert_eq!(s.pid, 5876);
        assert_eq!(s.comm, b"a) (b c)");
        assert_eq!(s.state, TaskState::Sleeping);
        assert_eq!((s.ppid, s.pgrp, s.session), (1, 5866, 4170));
        assert_eq!((s.tty_nr, s.tpgid), (0, -1));
        assert_eq!(s.flags, 4194560);
        assert_eq!(s.num_threads, 2);
        assert_eq!(s.start_time, 30586);
        assert_eq!(s.rsslim, u64::MAX);
        assert_eq!(s.exit_signal, 17);
        assert_eq!(s.start_brk, 94043116347392);
        assert_eq!(s.env_end, 140730323709938);
        assert_eq!(s.exit_code, 0);
    }

    #[test]
    fn stat_thread_exit_signal_minus_one_parsed() {
        let s = parse_stat(THREAD).unwrap();
        assert_eq!(s.pid, 5878);
        assert_eq!(s.comm, b"zoo");
        assert_eq!(s.exit_signal, -1);
    }

    #[test]
    fn stat_zombie_exit_code_parsed() {
        let s = parse_stat(ZOMBIE).unwrap();
        assert_eq!(s.state, TaskState::Zombie);
        assert_eq!(s.exit_code, 768);
        assert_eq!(s.vsize, 0);
    }

    #[test]
    fn stat_kthread_parsed() {
        let s = parse_stat(KTHREAD).unwrap();
        assert_eq!(s.pid, 2);
        assert_eq!(s.comm, b"kthreadd");
        assert_eq!(s.ppid, 0);
    }

    #[test]
    fn stat_comm_with_newline_parsed() {
        let mut line = b"7 (a\nb) R".to_vec();
        line.extend(std::iter::repeat_n(&b" 0"[..], 49).flatten());
        let s = parse_stat(&line).unwrap();
        assert_eq!(s.comm, b"a\nb");
    }

    #[test]
    fn stat_truncated_names_missing_field() {
        let e = parse_stat(b"1 (init) S 0 1 1 0 -1 4194560 10").unwrap_err();
        assert_eq!(e.file, ProcFile::Stat);
        assert_eq!(e.kind, ParseErrorKind::Missing("cminflt"));
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn stat_without_parens_is_error() {
        assert!(parse_stat(b"1 init S 0").is_err());
        assert!(parse_stat(b"1 )init( S 0").is_err());
        assert!(parse_stat(b"").is_err());
    }

    #[test]
    fn stat_bad_number_is_invalid() {
        let mut line = b"1 (x) R x".to_vec();
        line.extend(std::iter::repeat_n(&b" 0"[..], 49).flatten());
        let e = parse_stat(&line).unwrap_err();
        assert!(
            matches!(e.kind, ParseErrorKind::Invalid { field: "ppid", .. }),
            "{e}"
        );
    }
}
