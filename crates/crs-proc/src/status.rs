//! `/proc/PID/status` and `/proc/PID/task/TID/status`.

use crate::error::ParseError;
use crate::stat::TaskState;
use crate::util::{lines, lossy, split_key, tokens, Ctx};
use crate::ProcFile;

/// A set of signals as the kernel prints it: bit `n - 1` is signal `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct SigSet(pub u64);

impl SigSet {
    /// True if signal `signo` (1..=64) is in the set.
    pub fn contains(self, signo: u32) -> bool {
        (1..=64).contains(&signo) && self.0 & (1u64 << (signo - 1)) != 0
    }

    /// The signal numbers in the set, ascending.
    pub fn signals(self) -> impl Iterator<Item = u32> {
        (1..=64u32).filter(move |&s| self.contains(s))
    }
}

/// A capability set: bit `n` is capability `n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct CapSet(pub u64);

impl CapSet {
    /// True if capability number `cap` is in the set.
    pub fn contains(self, cap: u32) -> bool {
        cap < 64 && self.0 & (1u64 << cap) != 0
    }
}

/// `Seccomp:` mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompMode {
    /// 0
    Disabled,
    /// 1 (SECCOMP_MODE_STRICT)
    Strict,
    /// 2 (SECCOMP_MODE_FILTER)
    Filter,
    /// Any other value.
    Other(u32),
}

/// The value of `Speculation_Store_Bypass:` or `SpeculationIndirectBranch:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Speculation {
    /// "unknown"
    Unknown,
    /// "not vulnerable"
    NotVulnerable,
    /// "not affected"
    NotAffected,
    /// "vulnerable"
    Vulnerable,
    /// "thread vulnerable"
    ThreadVulnerable,
    /// "thread mitigated"
    ThreadMitigated,
    /// "thread force mitigated"
    ThreadForceMitigated,
    /// "globally mitigated"
    GloballyMitigated,
    /// "conditional enabled"
    ConditionalEnabled,
    /// "conditional disabled"
    ConditionalDisabled,
    /// "conditional force disabled"
    ConditionalForceDisabled,
    /// "always enabled"
    AlwaysEnabled,
    /// "always disabled"
    AlwaysDisabled,
    /// Any other text, kept verbatim.
    Other(String),
}

impl Speculation {
    fn from_text(s: &str) -> Self {
        match s {
            "unknown" => Speculation::Unknown,
            "not vulnerable" => Speculation::NotVulnerable,
            "not affected" => Speculation::NotAffected,
            "vulnerable" => Speculation::Vulnerable,
            "thread vulnerable" => Speculation::ThreadVulnerable,
            "thread mitigated" => Speculation::ThreadMitigated,
            "thread force mitigated" => Speculation::ThreadForceMitigated,
            "globally mitigated" => Speculation::GloballyMitigated,
            "conditional enabled" => Speculation::ConditionalEnabled,
            "conditional disabled" => Speculation::ConditionalDisabled,
            "conditional force disabled" => Speculation::ConditionalForceDisabled,
            "always enabled" => Speculation::AlwaysEnabled,
            "always disabled" => Speculation::AlwaysDisabled,
            o => Speculation::Other(o.to_owned()),
        }
    }
}

/// Real, effective, saved and filesystem ids (`Uid:` / `Gid:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ids {
    /// Real.
    pub real: u32,
    /// Effective.
    pub effective: u32,
    /// Saved set-id.
    pub saved: u32,
    /// Filesystem.
    pub fs: u32,
}

/// Memory sizes of `status` (`Vm*`, `Rss*`), in bytes; absent for zombies and kernel threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusMem {
    /// VmPeak
    pub vm_peak: Option<u64>,
    /// VmSize
    pub vm_size: Option<u64>,
    /// VmLck
    pub vm_lck: Option<u64>,
    /// VmPin
    pub vm_pin: Option<u64>,
    /// VmHWM
    pub vm_hwm: Option<u64>,
    /// VmRSS
    pub vm_rss: Option<u64>,
    /// RssAnon
    pub rss_anon: Option<u64>,
    /// RssFile
    pub rss_file: Option<u64>,
    /// RssShmem
    pub rss_shmem: Option<u64>,
    /// VmData
    pub vm_data: Option<u64>,
    /// VmStk
    pub vm_stk: Option<u64>,
    /// VmExe
    pub vm_exe: Option<u64>,
    /// VmLib
    pub vm_lib: Option<u64>,
    /// VmPTE
    pub vm_pte: Option<u64>,
    /// VmSwap
    pub vm_swap: Option<u64>,
    /// HugetlbPages
    pub hugetlb_pages: Option<u64>,
}

/// `/proc/PID/status`, typed; lines this parser does not know are kept in `unknown`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Name: (comm, with the kernel's escapes `\n` and `\\` decoded).
    pub name: Vec<u8>,
    /// Umask: (absent for zombies and kernel threads).
    pub umask: Option<u32>,
    /// State:
    pub state: TaskState,
    /// Tgid:
    pub tgid: i32,
    /// Ngid: (NUMA group)
    pub ngid: Option<i32>,
    /// Pid:
    pub pid: i32,
    /// PPid:
    pub ppid: i32,
    /// TracerPid:
    pub tracer_pid: i32,
    /// Uid:
    pub uid: Ids,
    /// Gid:
    pub gid: Ids,
    /// FDSize:
    pub fd_size: Option<u32>,
    /// Groups: (supplementary groups)
    pub groups: Vec<u32>,
    /// NStgid: thread-group id in each pid namespace, outermost first.
    pub ns_tgid: Vec<i32>,
    /// NSpid:
    pub ns_pid: Vec<i32>,
    /// NSpgid:
    pub ns_pgid: Vec<i32>,
    /// NSsid:
    pub ns_sid: Vec<i32>,
    /// Kthread:
    pub kthread: Option<bool>,
    /// Memory sizes.
    pub mem: StatusMem,
    /// CoreDumping:
    pub core_dumping: Option<bool>,
    /// THP_enabled:
    pub thp_enabled: Option<bool>,
    /// untag_mask:
    pub untag_mask: Option<u64>,
    /// Threads:
    pub threads: Option<u32>,
    /// SigQ: (queued, limit)
    pub sigq: Option<(u64, u64)>,
    /// SigPnd: pending for this thread.
    pub sig_pnd: SigSet,
    /// ShdPnd: pending for the whole thread group.
    pub shd_pnd: SigSet,
    /// SigBlk:
    pub sig_blk: SigSet,
    /// SigIgn:
    pub sig_ign: SigSet,
    /// SigCgt:
    pub sig_cgt: SigSet,
    /// CapInh:
    pub cap_inh: CapSet,
    /// CapPrm:
    pub cap_prm: CapSet,
    /// CapEff:
    pub cap_eff: CapSet,
    /// CapBnd:
    pub cap_bnd: CapSet,
    /// CapAmb:
    pub cap_amb: CapSet,
    /// NoNewPrivs:
    pub no_new_privs: bool,
    /// Seccomp:
    pub seccomp: SeccompMode,
    /// Seccomp_filters:
    pub seccomp_filters: Option<u32>,
    /// Speculation_Store_Bypass:
    pub speculation_store_bypass: Option<Speculation>,
    /// SpeculationIndirectBranch:
    pub speculation_indirect_branch: Option<Speculation>,
    /// Cpus_allowed_list:
    pub cpus_allowed_list: Option<String>,
    /// Mems_allowed_list:
    pub mems_allowed_list: Option<String>,
    /// voluntary_ctxt_switches:
    pub voluntary_ctxt_switches: Option<u64>,
    /// nonvoluntary_ctxt_switches:
    pub nonvoluntary_ctxt_switches: Option<u64>,
    /// Every other `Key:\tvalue` line, in file order (e.g. Cpus_allowed, x86_Thread_features).
    pub unknown: Vec<(String, String)>,
}

/// Decodes the escapes `seq_escape_str(ESCAPE_SPACE | ESCAPE_SPECIAL)` writes in `Name:`.
fn unescape_name(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter().copied();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'v') => out.push(0x0b),
            Some(b'f') => out.push(0x0c),
            Some(b'a') => out.push(0x07),
            Some(b'e') => out.push(0x1b),
            Some(b'\\') => out.push(b'\\'),
            Some(b'"') => out.push(b'"'),
            Some(o) => out.extend_from_slice(&[b'\\', o]),
            None => out.push(b'\\'),
        }
    }
    out
}

fn ids(ctx: &Ctx, field: &'static str, v: &[u8]) -> Result<Ids, ParseError> {
    let t: Vec<&[u8]> = tokens(v).collect();
    if t.len() != 4 {
        return Err(ctx.invalid(field, v));
    }
    Ok(Ids {
        real: ctx.dec(field, t[0])?,
        effective: ctx.dec(field, t[1])?,
        saved: ctx.dec(field, t[2])?,
        fs: ctx.dec(field, t[3])?,
    })
}

fn pid_list(ctx: &Ctx, field: &'static str, v: &[u8]) -> Result<Vec<i32>, ParseError> {
    tokens(v).map(|t| ctx.sdec(field, t)).collect()
}

fn kb(ctx: &Ctx, field: &'static str, v: &[u8]) -> Result<u64, ParseError> {
    let mut t = tokens(v);
    let n: u64 = ctx.dec(field, t.next().unwrap_or(&[]))?;
    match (t.next(), t.next()) {
        (Some(b"kB"), None) => n.checked_mul(1024).ok_or_else(|| ctx.invalid(field, v)),
        _ => Err(ctx.invalid(field, v)),
    }
}

fn flag(ctx: &Ctx, field: &'static str, v: &[u8]) -> Result<bool, ParseError> {
    match v {
        b"0" => Ok(false),
        b"1" => Ok(true),
        _ => Err(ctx.invalid(field, v)),
    }
}

/// Parses `/proc/PID/status`.
pub fn parse_status(bytes: &[u8]) -> Result<Status, ParseError> {
    let file = ProcFile::Status;
    let whole = Ctx::new(file);
    let mut name = None;
    let mut umask = None;
    let mut state = None;
    let mut tgid = None;
    let mut ngid = None;
    let mut pid = None;
    let mut ppid = None;
    let mut tracer_pid = None;
    let mut uid = None;
    let mut gid = None;
    let mut fd_size = None;
    let mut groups = Vec::new();
    let (mut ns_tgid, mut ns_pid, mut ns_pgid, mut ns_sid) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut kthread = None;
    let mut mem = StatusMem::default();
    let mut core_dumping = None;
    let mut thp_enabled = None;
    let mut untag_mask = None;
    let mut threads = None;
    let mut sigq = None;
    let mut sigs: [Option<SigSet>; 5] = [None; 5];
    let mut caps: [Option<CapSet>; 5] = [None; 5];
    let mut no_new_privs = None;
    let mut seccomp = None;
    let mut seccomp_filters = None;
    let mut ssb = None;
    let mut ib = None;
    let mut cpus_allowed_list = None;
    let mut mems_allowed_list = None;
    let mut vol = None;
    let mut nonvol = None;
    let mut unknown = Vec::new();

    for (n, line) in lines(bytes) {
        let ctx = Ctx::line(file, n);
        if line.is_empty() {
            continue;
        }
        let (key, v) = split_key(line).ok_or_else(|| ctx.malformed("no ':' after the key"))?;
        match key {
            b"Name" => {
                // Name keeps its exact bytes after the tab (a comm may end in spaces).
                let p = line.iter().position(|&b| b == b':').unwrap_or(0);
                let raw = line[p + 1..].strip_prefix(b"\t").unwrap_or(&line[p + 1..]);
                name = Some(unescape_name(raw));
            }
            b"Umask" => umask = Some(ctx.oct("Umask", v)?),
            b"State" => {
                let c = *v.first().ok_or_else(|| ctx.invalid("State", v))?;
                state = Some(TaskState::from_letter(c));
            }
            b"Tgid" => tgid = Some(ctx.sdec("Tgid", v)?),
            b"Ngid" => ngid = Some(ctx.sdec("Ngid", v)?),
            b"Pid" => pid = Some(ctx.sdec("Pid", v)?),
            b"PPid" => ppid = Some(ctx.sdec("PPid", v)?),
            b"TracerPid" => tracer_pid = Some(ctx.sdec("TracerPid", v)?),
            b"Uid" => uid = Some(ids(&ctx, "Uid", v)?),
            b"Gid" => gid = Some(ids(&ctx, "Gid", v)?),
            b"FDSize" => fd_size = Some(ctx.dec("FDSize", v)?),
            b"Groups" => {
                groups = tokens(v)
                    .map(|t| ctx.dec("Groups", t))
                    .collect::<Result<_, _>>()?
            }
            b"NStgid" => ns_tgid = pid_list(&ctx, "NStgid", v)?,
            b"NSpid" => ns_pid = pid_list(&ctx, "NSpid", v)?,
            b"NSpgid" => ns_pgid = pid_list(&ctx, "NSpgid", v)?,
            b"NSsid" => ns_sid = pid_list(&ctx, "NSsid", v)?,
            b"Kthread" => kthread = Some(flag(&ctx, "Kthread", v)?),
            b"VmPeak" => mem.vm_peak = Some(kb(&ctx, "VmPeak", v)?),
            b"VmSize" => mem.vm_size = Some(kb(&ctx, "VmSize", v)?),
            b"VmLck" => mem.vm_lck = Some(kb(&ctx, "VmLck", v)?),
            b"VmPin" => mem.vm_pin = Some(kb(&ctx, "VmPin", v)?),
            b"VmHWM" => mem.vm_hwm = Some(kb(&ctx, "VmHWM", v)?),
            b"VmRSS" => mem.vm_rss = Some(kb(&ctx, "VmRSS", v)?),
            b"RssAnon" => mem.rss_anon = Some(kb(&ctx, "RssAnon", v)?),
            b"RssFile" => mem.rss_file = Some(kb(&ctx, "RssFile", v)?),
            b"RssShmem" => mem.rss_shmem = Some(kb(&ctx, "RssShmem", v)?),
            b"VmData" => mem.vm_data = Some(kb(&ctx, "VmData", v)?),
            b"VmStk" => mem.vm_stk = Some(kb(&ctx, "VmStk", v)?),
            b"VmExe" => mem.vm_exe = Some(kb(&ctx, "VmExe", v)?),
            b"VmLib" => mem.vm_lib = Some(kb(&ctx, "VmLib", v)?),
            b"VmPTE" => mem.vm_pte = Some(kb(&ctx, "VmPTE", v)?),
            b"VmSwap" => mem.vm_swap = Some(kb(&ctx, "VmSwap", v)?),
            b"HugetlbPages" => mem.hugetlb_pages = Some(kb(&ctx, "HugetlbPages", v)?),
            b"CoreDumping" => core_dumping = Some(flag(&ctx, "CoreDumping", v)?),
            b"THP_enabled" => thp_enabled = Some(flag(&ctx, "THP_enabled", v)?),
            b"untag_mask" => untag_mask = Some(ctx.hex("untag_mask", v)?),
            b"Threads" => threads = Some(ctx.dec("Threads", v)?),
            b"SigQ" => {
                let p = v
                    .iter()
                    .position(|&b| b == b'/')
                    .ok_or_else(|| ctx.invalid("SigQ", v))?;
                sigq = Some((ctx.dec("SigQ", &v[..p])?, ctx.dec("SigQ", &v[p + 1..])?));
            }
            b"SigPnd" => sigs[0] = Some(SigSet(ctx.hex("SigPnd", v)?)),
            b"ShdPnd" => sigs[1] = Some(SigSet(ctx.hex("ShdPnd", v)?)),
            b"SigBlk" => sigs[2] = Some(SigSet(ctx.hex("SigBlk", v)?)),
            b"SigIgn" => sigs[3] = Some(SigSet(ctx.hex("SigIgn", v)?)),
            b"SigCgt" => sigs[4] = Some(SigSet(ctx.hex("SigCgt", v)?)),
            b"CapInh" => caps[0] = Some(CapSet(ctx.hex("CapInh", v)?)),
            b"CapPrm" => caps[1] = Some(CapSet(ctx.hex("CapPrm", v)?)),
            b"CapEff" => caps[2] = Some(CapSet(ctx.hex("CapEff", v)?)),
            b"CapBnd" => caps[3] = Some(CapSet(ctx.hex("CapBnd", v)?)),
            b"CapAmb" => caps[4] = Some(CapSet(ctx.hex("CapAmb", v)?)),
            b"NoNewPrivs" => no_new_privs = Some(flag(&ctx, "NoNewPrivs", v)?),
            b"Seccomp" => {
                seccomp = Some(match ctx.dec::<u32>("Seccomp", v)? {
                    0 => SeccompMode::Disabled,
                    1 => SeccompMode::Strict,
                    2 => SeccompMode::Filter,
                    o => SeccompMode::Other(o),
                })
            }
            b"Seccomp_filters" => seccomp_filters = Some(ctx.dec("Seccomp_filters", v)?),
            b"Speculation_Store_Bypass" => {
                ssb = Some(Speculation::from_text(
                    ctx.text("Speculation_Store_Bypass", v)?,
                ))
            }
            b"SpeculationIndirectBranch" => {
                ib = Some(Speculation::from_text(
                    ctx.text("SpeculationIndirectBranch", v)?,
                ))
            }
            b"Cpus_allowed_list" => cpus_allowed_list = Some(lossy(v)),
            b"Mems_allowed_list" => mems_allowed_list = Some(lossy(v)),
            b"voluntary_ctxt_switches" => vol = Some(ctx.dec("voluntary_ctxt_switches", v)?),
            b"nonvoluntary_ctxt_switches" => {
                nonvol = Some(ctx.dec("nonvoluntary_ctxt_switches", v)?)
            }
            _ => unknown.push((lossy(key), lossy(v))),
        }
    }

    let need = |o: Option<SigSet>, what| o.ok_or_else(|| whole.missing(what));
    let needc = |o: Option<CapSet>, what| o.ok_or_else(|| whole.missing(what));
    Ok(Status {
        name: name.ok_or_else(|| whole.missing("Name:"))?,
        umask,
        state: state.ok_or_else(|| whole.missing("State:"))?,
        tgid: tgid.ok_or_else(|| whole.missing("Tgid:"))?,
        ngid,
        pid: pid.ok_or_else(|| whole.missing("Pid:"))?,
        ppid: ppid.ok_or_else(|| whole.missing("PPid:"))?,
        tracer_pid: tracer_pid.ok_or_else(|| whole.missing("TracerPid:"))?,
        uid: uid.ok_or_else(|| whole.missing("Uid:"))?,
        gid: gid.ok_or_else(|| whole.missing("Gid:"))?,
        fd_size,
        groups,
        ns_tgid,
        ns_pid,
        ns_pgid,
        ns_sid,
        kthread,
        mem,
        core_dumping,
        thp_enabled,
        untag_mask,
        threads,
        sigq,
        sig_pnd: need(sigs[0], "SigPnd:")?,
        shd_pnd: need(sigs[1], "ShdPnd:")?,
        sig_blk: need(sigs[2], "SigBlk:")?,
        sig_ign: need(sigs[3], "SigIgn:")?,
        sig_cgt: need(sigs[4], "SigCgt:")?,
        cap_inh: needc(caps[0], "CapInh:")?,
        cap_prm: needc(caps[1], "CapPrm:")?,
        cap_eff: needc(caps[2], "CapEff:")?,
        cap_bnd: needc(caps[3], "CapBnd:")?,
        cap_amb: needc(caps[4], "CapAmb:")?,
        no_new_privs: no_new_privs.ok_or_else(|| whole.missing("NoNewPrivs:"))?,
        seccomp: seccomp.ok_or_else(|| whole.missing("Seccomp:"))?,
        seccomp_filters,
        speculation_store_bypass: ssb,
        speculation_indirect_branch: ib,
        cpus_allowed_list,
        mems_allowed_list,
        voluntary_ctxt_switches: vol,
        nonvoluntary_ctxt_switches: nonvol,
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Location, ParseErrorKind};

    const ZOO: &[u8] = include_bytes!("../tests/fixtures/zoo/status");
    const THREAD: &[u8] = include_bytes!("../tests/fixtures/zoo/thread_status");
    const ZOMBIE: &[u8] = include_bytes!("../tests/fixtures/zoo/zombie_status");

    #[test]
    fn status_zoo_all_typed_fields_parsed() {
        let s = parse_status(ZOO).unwrap();
        assert_eq!(s.name, b"a) (b c)");
        assert_eq!(s.umask, Some(0o022));
        assert_eq!(s.state, TaskState::Sleeping);
        assert_eq!((s.tgid, s.pid, s.ppid, s.tracer_pid), (5876, 5876, 1, 0));
        assert_eq!(s.uid, Ids::default());
        assert!(s.groups.is_empty());
        assert_eq!(s.ns_pid, vec![5876]);
        assert_eq!(s.ns_pgid, vec![5866]);
        assert_eq!(s.ns_sid, vec![4170]);
        assert_eq!(s.mem.vm_lck, Some(4 * 1024));
        assert_eq!(s.mem.rss_shmem, Some(8 * 1024));
        assert_eq!(s.threads, Some(2));
        assert_eq!(s.sigq, Some((4, 96551)));
        assert!(s.shd_pnd.contains(12)); // SIGUSR2 raised while blocked
        assert_eq!(s.sig_blk.signals().collect::<Vec<_>>(), vec![10, 12, 36]);
        assert!(s.sig_ign.contains(13));
        assert!(s.sig_cgt.contains(10));
        assert_eq!(s.cap_eff, CapSet(0x1fffeffffff));
        assert!(!s.cap_bnd.contains(24)); // CAP_SYS_RESOURCE is not in the bounding set here
        assert!(!s.no_new_privs);
        assert_eq!(s.seccomp, SeccompMode::Disabled);
        assert_eq!(s.seccomp_filters, Some(0));
        assert_eq!(
            s.speculation_store_bypass,
            Some(Speculation::ThreadVulnerable)
        );
        assert_eq!(
            s.speculation_indirect_branch,
            Some(Speculation::ConditionalEnabled)
        );
        assert_eq!(s.untag_mask, Some(u64::MAX));
        assert_eq!(s.cpus_allowed_list.as_deref(), Some("0-1"));
        assert!(s
            .unknown
            .iter()
            .any(|(k, v)| k == "Cpus_allowed" && v == "3"));
    }

    #[test]
    fn status_thread_pid_differs_from_tgid() {
        let s = parse_status(THREAD).unwrap();
        assert_eq!((s.tgid, s.pid), (5876, 5878));
    }

    #[test]
    fn status_zombie_without_vm_fields_parsed() {
        let s = parse_status(ZOMBIE).unwrap();
        assert_eq!(s.state, TaskState::Zombie);
        assert_eq!(s.umask, None);
        assert_eq!(s.mem, StatusMem::default());
    }

    #[test]
    fn status_nested_pid_namespaces_and_groups_parsed() {
        let text = b"Name:\tsh\nState:\tS (sleeping)\nTgid:\t40\nPid:\t40\nPPid:\t1\n\
TracerPid:\t0\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\t6\t7\t8\nGroups:\t4 24 27 \n\
NStgid:\t40\t7\t1\nNSpid:\t40\t7\t1\nSigPnd:\t0\nShdPnd:\t0\nSigBlk:\t0\nSigIgn:\t0\n\
SigCgt:\t0\nCapInh:\t0\nCapPrm:\t0\nCapEff:\t0\nCapBnd:\t0\nCapAmb:\t0\nNoNewPrivs:\t1\n\
Seccomp:\t2\nSeccomp_filters:\t3\nx86_Thread_features:\tshstk\n";
        let s = parse_status(text).unwrap();
        assert_eq!(s.uid.effective, 1001);
        assert_eq!(s.gid.fs, 8);
        assert_eq!(s.groups, vec![4, 24, 27]);
        assert_eq!(s.ns_pid, vec![40, 7, 1]);
        assert!(s.no_new_privs);
        assert_eq!(s.seccomp, SeccompMode::Filter);
        assert_eq!(
            s.unknown,
            vec![("x86_Thread_features".into(), "shstk".into())]
        );
    }

    #[test]
    fn status_escaped_name_decoded() {
        let mut text = b"Name:\ta\\nb\\\\c".to_vec();
        text.extend_from_slice(&ZOO[14..]);
        let s = parse_status(&text).unwrap();
        assert_eq!(s.name, b"a\nb\\c");
    }

    #[test]
    fn status_missing_sigblk_names_field() {
        let text: Vec<u8> = lines(ZOO)
            .filter(|(_, l)| !l.starts_with(b"SigBlk"))
            .flat_map(|(_, l)| l.iter().copied().chain([b'\n']))
            .collect();
        let e = parse_status(&text).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::Missing("SigBlk:"));
        assert_eq!(e.location, Location::File);
    }

    #[test]
    fn status_bad_uid_count_is_invalid_with_line() {
        let e = parse_status(b"Name:\tx\nUid:\t0\t0\t0\n").unwrap_err();
        assert_eq!(e.location, Location::Line(2));
        assert!(matches!(
            e.kind,
            ParseErrorKind::Invalid { field: "Uid", .. }
        ));
    }

    #[test]
    fn status_line_without_colon_is_malformed() {
        let e = parse_status(b"Name:\tx\ngarbage\n").unwrap_err();
        assert_eq!(e.location, Location::Line(2));
    }
}
