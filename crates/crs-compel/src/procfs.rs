//! The little /proc reading compel needs to walk a tree (crs-proc has the full parsers).

use std::fs;
use std::io;

use crs_sys::Tid;

/// Thread ids of process `pid`, ascending.
pub(crate) fn list_tids(pid: Tid) -> io::Result<Vec<Tid>> {
    let mut out = Vec::new();
    for ent in fs::read_dir(format!("/proc/{pid}/task"))? {
        let ent = ent?;
        if let Some(tid) = ent.file_name().to_str().and_then(|s| s.parse().ok()) {
            out.push(tid);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Children of thread `tid` of process `pid` (processes it forked and has not reaped).
pub(crate) fn children(pid: Tid, tid: Tid) -> io::Result<Vec<Tid>> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/children"))?;
    Ok(parse_children(&text))
}

pub(crate) fn parse_children(text: &str) -> Vec<Tid> {
    text.split_ascii_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The fields of /proc/<tid>/status compel looks at.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Status {
    pub state: char,
    pub tgid: Tid,
    pub ppid: Tid,
    pub tracer: Tid,
    pub seccomp: u32,
    /// Signals the process ignores (SIG_IGN), bit n-1 = signal n.
    pub sig_ign: u64,
    /// Signals the process catches with a handler.
    pub sig_cgt: u64,
    /// The thread group id and thread id in the task's own pid namespace (the last
    /// `NStgid` and `NSpid` values; the same as crs's when it shares crs's namespace).
    pub ns_tgid: Tid,
    pub ns_pid: Tid,
    /// How many pid namespaces the task has an id in (1: crs's alone).
    pub ns_levels: usize,
}

pub(crate) fn status(tid: Tid) -> io::Result<Status> {
    parse_status(&fs::read_to_string(format!("/proc/{tid}/status"))?)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed status"))
}

pub(crate) fn parse_status(text: &str) -> Option<Status> {
    let mut st = Status::default();
    let mut have_state = false;
    for line in text.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let val = val.trim();
        match key {
            "State" => {
                st.state = val.chars().next()?;
                have_state = true;
            }
            "Tgid" => st.tgid = val.parse().ok()?,
            "PPid" => st.ppid = val.parse().ok()?,
            "TracerPid" => st.tracer = val.parse().ok()?,
            "Seccomp" => st.seccomp = val.parse().ok()?,
            "SigIgn" => st.sig_ign = u64::from_str_radix(val, 16).ok()?,
            "SigCgt" => st.sig_cgt = u64::from_str_radix(val, 16).ok()?,
            "NStgid" => st.ns_tgid = val.split_ascii_whitespace().last()?.parse().ok()?,
            "NSpid" => {
                st.ns_levels = val.split_ascii_whitespace().count();
                st.ns_pid = val.split_ascii_whitespace().last()?.parse().ok()?;
            }
            _ => {}
        }
    }
    have_state.then_some(st)
}

/// Executable mappings of `pid` as (start, end, is_vdso), in address order.
pub(crate) fn exec_mappings(pid: Tid) -> io::Result<Vec<(u64, u64, bool)>> {
    Ok(parse_exec_mappings(&fs::read_to_string(format!(
        "/proc/{pid}/maps"
    ))?))
}

pub(crate) fn parse_exec_mappings(text: &str) -> Vec<(u64, u64, bool)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_ascii_whitespace();
        let (Some(range), Some(perms)) = (it.next(), it.next()) else {
            continue;
        };
        let perms = perms.as_bytes();
        if perms.len() < 3 || perms[0] != b'r' || perms[2] != b'x' {
            continue;
        }
        let Some((a, b)) = range.split_once('-') else {
            continue;
        };
        let (Ok(a), Ok(b)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) else {
            continue;
        };
        let vdso = line.trim_end().ends_with("[vdso]");
        out.push((a, b, vdso));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_status_stopped_task_reads_fields() {
        let text = "Name:\tx\nState:\tT (stopped)\nTgid:\t10\nPid:\t11\nPPid:\t1\n\
                    TracerPid:\t0\nSeccomp:\t2\nSigIgn:\t0000000000001000\n\
                    SigCgt:\t0000000180000000\n";
        let st = parse_status(text).unwrap();
        assert_eq!(
            st,
            Status {
                state: 'T',
                tgid: 10,
                ppid: 1,
                tracer: 0,
                seccomp: 2,
                sig_ign: 0x1000,
                sig_cgt: 0x1_8000_0000,
                ns_tgid: 0,
                ns_pid: 0,
                ns_levels: 0,
            }
        );
    }

    #[test]
    fn parse_status_nested_pid_namespace_takes_innermost_ids() {
        let text = "State:\tS (sleeping)\nTgid:\t4000\nNStgid:\t4000\t7\t1\n\
                    NSpid:\t4002\t9\t3\n";
        let st = parse_status(text).unwrap();
        assert_eq!((st.ns_tgid, st.ns_pid, st.ns_levels), (1, 3, 3));
    }

    #[test]
    fn parse_status_without_state_is_none() {
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn parse_children_trailing_space_reads_all() {
        assert_eq!(parse_children("12 34 \n"), vec![12, 34]);
    }

    #[test]
    fn parse_exec_mappings_vdso_and_text_found() {
        let text = "55d0-55e0 r-xp 00000000 08:01 1 /bin/x\n\
                    7ff0-7ff2 r-xp 00000000 00:00 0                  [vdso]\n\
                    7ff2-7ff3 rw-p 00000000 00:00 0\n\
                    8000-9000 --xp 00000000 00:00 0\n";
        assert_eq!(
            parse_exec_mappings(text),
            vec![(0x55d0, 0x55e0, false), (0x7ff0, 0x7ff2, true)]
        );
    }
}
