//! Credentials, put back last before the registers, in the order CRIU's restorer uses:
//! groups, then the ids (with SECBIT_NO_SETUID_FIXUP so the capabilities survive a change
//! away from uid 0), securebits, bounding-set drops, capset, ambient raises,
//! no_new_privs. Then the dumpable flag and the parent-death signal, which a change of
//! ids resets.
//!
//! The steps are planned from the image and the new task's current credentials (read
//! from /proc, it is a copy of crs's own) by a pure function, then run in the task.

use crs_images::pb::core::Thread_core_entry;
use crs_images::pb::creds::Creds_entry;
use crs_proc::Status;
use tracing::{debug, warn};

use crate::images::Images;
use crate::remote::{Batch, Remote};
use crate::RestoreError;

const PR_SET_SECUREBITS: u64 = 28;
const PR_GET_SECUREBITS: u64 = 27;
const PR_CAPBSET_DROP: u64 = 24;
const PR_CAP_AMBIENT: u64 = 47;
const PR_CAP_AMBIENT_RAISE: u64 = 2;
const PR_SET_NO_NEW_PRIVS: u64 = 38;
const PR_GET_DUMPABLE: u64 = 3;
const PR_SET_DUMPABLE: u64 = 4;
const SECBIT_NO_SETUID_FIXUP: u32 = 1 << 2;
const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
/// Capability words in an image (CRIU's CR_CAP_SIZE).
const CAP_WORDS: usize = 2;
/// NGROUPS_MAX.
const NGROUPS_MAX: usize = 65536;
/// `-1` for setfsuid/setfsgid: only report the current value.
const QUERY_ID: u64 = u32::MAX as u64;

/// One step of putting the credentials back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CredStep {
    SetGroups(Vec<u32>),
    /// PR_SET_SECUREBITS, skipped when the task already has these bits.
    Securebits(u32),
    SetResUid([u32; 3]),
    SetFsUid(u32),
    SetResGid([u32; 3]),
    SetFsGid(u32),
    /// PR_CAPBSET_DROP; `may_fail` when no_new_privs will keep the capability out anyway
    /// (it is not permitted), as CRIU tolerates.
    BsetDrop {
        cap: u32,
        may_fail: bool,
    },
    Capset {
        eff: u64,
        prm: u64,
        inh: u64,
    },
    AmbientRaise(u32),
    NoNewPrivs,
}

fn caps(words: &[u32]) -> u64 {
    words
        .iter()
        .take(CAP_WORDS)
        .enumerate()
        .fold(0, |acc, (i, w)| acc | (u64::from(*w) << (32 * i)))
}

fn bit(set: u64, cap: u32) -> bool {
    cap < 64 && set & (1 << cap) != 0
}

/// Checks the credentials of the image before anything is created.
pub(crate) fn check(images: &Images) -> Result<(), RestoreError> {
    let th = images.core.thread_core.as_ref().expect("checked at load");
    check_thread(images.pid, th)?;
    for t in &images.threads {
        check_thread(t.tid, t.thread_core())?;
    }
    Ok(())
}

fn check_thread(tid: i32, th: &Thread_core_entry) -> Result<(), RestoreError> {
    let Some(c) = th.creds.as_ref() else {
        return Ok(());
    };
    let image = format!("core-{tid}.img");
    let invalid = |what: String| RestoreError::Invalid {
        image: image.clone(),
        what,
    };
    for (name, words) in [
        ("cap_inh", &c.cap_inh),
        ("cap_prm", &c.cap_prm),
        ("cap_eff", &c.cap_eff),
        ("cap_bnd", &c.cap_bnd),
        ("cap_amb", &c.cap_amb),
    ] {
        if words.len() > CAP_WORDS {
            return Err(invalid(format!("{name} has {} words", words.len())));
        }
    }
    if c.groups.len() > NGROUPS_MAX {
        return Err(invalid(format!("{} supplementary groups", c.groups.len())));
    }
    if c.lsm_profile.is_some() || c.lsm_sockcreate.is_some() || c.apparmor_data.is_some() {
        return Err(RestoreError::Unsupported {
            what: format!("{image}: LSM labels (lsm_profile, lsm_sockcreate, apparmor_data)"),
        });
    }
    Ok(())
}

/// The steps that turn credentials `now` into those of the image. `cap_last_cap` is the
/// kernel's highest capability number.
pub(crate) fn plan(
    c: &Creds_entry,
    now: &Status,
    cap_last_cap: u32,
) -> Result<Vec<CredStep>, RestoreError> {
    let mut steps = Vec::new();
    let mut groups = c.groups.clone();
    groups.sort_unstable();
    let mut have = now.groups.clone();
    have.sort_unstable();
    if groups != have {
        steps.push(CredStep::SetGroups(c.groups.clone()));
    }

    let want = [
        c.uid(),
        c.euid(),
        c.suid(),
        c.fsuid(),
        c.gid(),
        c.egid(),
        c.sgid(),
        c.fsgid(),
    ];
    let (u, g) = (&now.uid, &now.gid);
    let cur = [
        u.real,
        u.effective,
        u.saved,
        u.fs,
        g.real,
        g.effective,
        g.saved,
        g.fs,
    ];
    if want != cur {
        if u.effective == 0 {
            // Keep the capabilities across setresuid away from 0.
            steps.push(CredStep::Securebits(SECBIT_NO_SETUID_FIXUP));
        }
        steps.push(CredStep::SetResUid([c.uid(), c.euid(), c.suid()]));
        steps.push(CredStep::SetFsUid(c.fsuid()));
        steps.push(CredStep::SetResGid([c.gid(), c.egid(), c.sgid()]));
        steps.push(CredStep::SetFsGid(c.fsgid()));
    }
    steps.push(CredStep::Securebits(c.secbits()));

    let (bnd, prm, amb) = (caps(&c.cap_bnd), caps(&c.cap_prm), caps(&c.cap_amb));
    let nnp = c.no_new_privs() != 0;
    for cap in 0..=cap_last_cap.min(63) {
        if !bit(bnd, cap) && now.cap_bnd.contains(cap) {
            steps.push(CredStep::BsetDrop {
                cap,
                may_fail: nnp && !bit(prm, cap),
            });
        }
    }
    steps.push(CredStep::Capset {
        eff: caps(&c.cap_eff),
        prm,
        inh: caps(&c.cap_inh),
    });
    for cap in 0..=cap_last_cap.min(63) {
        if bit(amb, cap) {
            steps.push(CredStep::AmbientRaise(cap));
        }
    }
    match (nnp, now.no_new_privs) {
        (true, false) => steps.push(CredStep::NoNewPrivs),
        (false, true) => {
            return Err(RestoreError::Unsupported {
                what: "restoring a task without no_new_privs from a crs that has it".into(),
            })
        }
        _ => {}
    }
    Ok(steps)
}

fn cap_last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

pub(crate) fn status(pid: i32) -> Result<Status, RestoreError> {
    let path = format!("/proc/{pid}/status");
    let bytes = std::fs::read(&path).map_err(|source| RestoreError::Stat {
        path: path.clone().into(),
        source,
    })?;
    crs_proc::parse_status(&bytes).map_err(|e| RestoreError::Stat {
        path: path.into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
    })
}

/// Puts the credentials of the image on the task, then its dumpable flag and
/// parent-death signal.
pub(crate) fn restore(r: &mut Remote<'_>, images: &Images) -> Result<(), RestoreError> {
    let th = images.core.thread_core.as_ref().expect("checked at load");
    let mut b = CredBatch::default();
    set_ids(r, &mut b, th)?;
    // A dumpable flag prctl cannot set is asked once the credentials (which change it)
    // are in place.
    let now = if dumpable_query(images) {
        b.flush(r)?;
        Some(
            r.call(libc::SYS_prctl, [PR_GET_DUMPABLE, 0, 0, 0, 0, 0], || {
                "prctl(PR_GET_DUMPABLE)".into()
            })?,
        )
    } else {
        None
    };
    restore_dumpable(&mut b, images, now);
    set_pdeathsig(&mut b, th);
    b.flush(r)
}

/// The credentials and parent-death signal of one thread that is not the leader (both
/// are per thread in Linux; the dumpable flag belongs to the mm, set with the leader's).
pub(crate) fn restore_thread(
    r: &mut Remote<'_>,
    th: &Thread_core_entry,
) -> Result<(), RestoreError> {
    let mut b = CredBatch::default();
    set_ids(r, &mut b, th)?;
    set_pdeathsig(&mut b, th);
    b.flush(r)
}

/// Calls gathered into one batch, with their scratch arguments from offset 0 and the
/// answers to check once it ran.
#[derive(Default)]
struct CredBatch {
    batch: Batch<'static>,
    off: usize,
    /// setfsuid/setfsgid queries: (index of the query, name, id that must be there).
    fs_checks: Vec<(usize, &'static str, u32)>,
}

impl CredBatch {
    fn push(&mut self, nr: i64, args: [u64; 6], what: impl FnOnce() -> String + 'static) {
        self.batch.push(nr, args, what);
    }

    /// Puts `bytes` in scratch for a call of this batch (running what is gathered first
    /// when they do not fit).
    fn put(&mut self, r: &mut Remote<'_>, bytes: &[u8]) -> Result<u64, RestoreError> {
        if self.off + bytes.len() > r.batch_room() {
            self.flush(r)?;
        }
        let p = r.put_for_batch(self.off, bytes)?;
        self.off += bytes.len().next_multiple_of(8);
        Ok(p)
    }

    /// Runs what is gathered and checks the answers.
    fn flush(&mut self, r: &mut Remote<'_>) -> Result<(), RestoreError> {
        let batch = std::mem::take(&mut self.batch);
        let checks = std::mem::take(&mut self.fs_checks);
        self.off = 0;
        let results = r.run(batch)?;
        for (i, name, id) in checks {
            let now = results[i];
            if now != i64::from(id) {
                return Err(RestoreError::Syscall {
                    pid: r.pid,
                    what: format!("{name}({id}) (the task has {now})"),
                    errno: libc::EPERM as i64,
                });
            }
        }
        Ok(())
    }
}

/// Whether the dumpable flag needs asking (a value prctl cannot set).
fn dumpable_query(images: &Images) -> bool {
    images.mm.dumpable.is_some_and(|w| w != 0 && w != 1)
}

/// Adds the credential steps to `b`; the securebits they depend on are asked first.
fn set_ids(
    r: &mut Remote<'_>,
    b: &mut CredBatch,
    th: &Thread_core_entry,
) -> Result<(), RestoreError> {
    let steps = match th.creds.as_ref() {
        Some(c) => {
            let now = status(r.pid)?;
            plan(c, &now, cap_last_cap())?
        }
        None => Vec::new(),
    };
    debug!(tid = r.pid, steps = steps.len(), "credentials");
    // Only Securebits steps change the securebits, so the value asked before them all
    // is followed through them.
    let mut secbits = None;
    if steps.iter().any(|s| matches!(s, CredStep::Securebits(_))) {
        b.flush(r)?;
        secbits = Some(
            r.call(libc::SYS_prctl, [PR_GET_SECUREBITS, 0, 0, 0, 0, 0], || {
                "prctl(PR_GET_SECUREBITS)".into()
            })?,
        );
    }
    for step in &steps {
        add(r, b, step, &mut secbits)?;
    }
    Ok(())
}

fn set_pdeathsig(b: &mut CredBatch, th: &Thread_core_entry) {
    // Always: a zero clears the SIGKILL the new task was given for crs's death.
    let sig = th.pdeath_sig();
    b.push(
        libc::SYS_prctl,
        [libc::PR_SET_PDEATHSIG as u64, u64::from(sig), 0, 0, 0, 0],
        move || format!("prctl(PR_SET_PDEATHSIG, {sig})"),
    );
}

fn add(
    r: &mut Remote<'_>,
    b: &mut CredBatch,
    step: &CredStep,
    secbits: &mut Option<i64>,
) -> Result<(), RestoreError> {
    match step {
        CredStep::SetGroups(g) => {
            let bytes: Vec<u8> = g.iter().flat_map(|x| x.to_le_bytes()).collect();
            let n = g.len() as u64;
            let what = format!("setgroups({g:?})");
            if bytes.len() <= r.batch_room() {
                let p = b.put(r, &bytes)?;
                b.push(libc::SYS_setgroups, [n, p, 0, 0, 0, 0], move || what);
            } else if bytes.len() <= r.scratch_len {
                // Too long to share the scratch with a batch: alone.
                b.flush(r)?;
                let p = r.put(0, &bytes)?;
                r.call(libc::SYS_setgroups, [n, p, 0, 0, 0, 0], move || what)?;
            } else {
                return Err(RestoreError::Unsupported {
                    what: format!("{} supplementary groups", g.len()),
                });
            }
        }
        CredStep::Securebits(bits) => {
            if *secbits != Some(i64::from(*bits)) {
                let bits = *bits;
                b.push(
                    libc::SYS_prctl,
                    [PR_SET_SECUREBITS, u64::from(bits), 0, 0, 0, 0],
                    move || format!("prctl(PR_SET_SECUREBITS, {bits:#x})"),
                );
                *secbits = Some(i64::from(bits));
            }
        }
        CredStep::SetResUid(ids) => {
            let [a, bb, c] = ids.map(u64::from);
            b.push(libc::SYS_setresuid, [a, bb, c, 0, 0, 0], move || {
                format!("setresuid({a}, {bb}, {c})")
            });
        }
        CredStep::SetResGid(ids) => {
            let [a, bb, c] = ids.map(u64::from);
            b.push(libc::SYS_setresgid, [a, bb, c, 0, 0, 0], move || {
                format!("setresgid({a}, {bb}, {c})")
            });
        }
        CredStep::SetFsUid(id) => set_fs_id(b, libc::SYS_setfsuid, "setfsuid", *id),
        CredStep::SetFsGid(id) => set_fs_id(b, libc::SYS_setfsgid, "setfsgid", *id),
        CredStep::BsetDrop { cap, may_fail } => {
            let cap = *cap;
            if !*may_fail {
                b.push(
                    libc::SYS_prctl,
                    [PR_CAPBSET_DROP, u64::from(cap), 0, 0, 0, 0],
                    move || format!("prctl(PR_CAPBSET_DROP, {cap})"),
                );
                return Ok(());
            }
            // May fail: alone, after what is gathered.
            b.flush(r)?;
            let ret = r.call(
                libc::SYS_prctl,
                [PR_CAPBSET_DROP, u64::from(cap), 0, 0, 0, 0],
                || format!("prctl(PR_CAPBSET_DROP, {cap})"),
            );
            match ret {
                Err(RestoreError::Syscall { errno, .. }) => {
                    warn!(
                        cap,
                        errno, "capability left in the bounding set (no_new_privs keeps it out)"
                    );
                }
                other => {
                    other?;
                }
            }
        }
        CredStep::Capset { eff, prm, inh } => {
            let mut bytes = Vec::with_capacity(8 + 24);
            bytes.extend_from_slice(&LINUX_CAPABILITY_VERSION_3.to_le_bytes());
            bytes.extend_from_slice(&0i32.to_le_bytes());
            for shift in [0, 32] {
                for set in [eff, prm, inh] {
                    bytes.extend_from_slice(&((set >> shift) as u32).to_le_bytes());
                }
            }
            let hdr = b.put(r, &bytes)?;
            let (eff, prm, inh) = (*eff, *prm, *inh);
            b.push(libc::SYS_capset, [hdr, hdr + 8, 0, 0, 0, 0], move || {
                format!("capset(eff {eff:#x}, prm {prm:#x}, inh {inh:#x})")
            });
        }
        CredStep::AmbientRaise(cap) => {
            let cap = *cap;
            b.push(
                libc::SYS_prctl,
                [
                    PR_CAP_AMBIENT,
                    PR_CAP_AMBIENT_RAISE,
                    u64::from(cap),
                    0,
                    0,
                    0,
                ],
                move || format!("prctl(PR_CAP_AMBIENT_RAISE, {cap})"),
            );
        }
        CredStep::NoNewPrivs => {
            b.push(
                libc::SYS_prctl,
                [PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0],
                || "prctl(PR_SET_NO_NEW_PRIVS)".into(),
            );
        }
    }
    Ok(())
}

/// setfsuid/setfsgid report the old value, never an error: asked again in the same
/// batch, checked once it ran.
fn set_fs_id(b: &mut CredBatch, nr: i64, name: &'static str, id: u32) {
    b.push(nr, [u64::from(id), 0, 0, 0, 0, 0], move || {
        format!("{name}({id})")
    });
    b.fs_checks.push((b.batch.len(), name, id));
    b.push(nr, [QUERY_ID, 0, 0, 0, 0, 0], move || format!("{name}(-1)"));
}

/// PR_SET_DUMPABLE from the mm image; a value prctl cannot set (2, suid_dumpable) is
/// kept when the task already has it (`now`, asked after the credentials), else the task
/// is made not dumpable (CRIU's fallback).
fn restore_dumpable(b: &mut CredBatch, images: &Images, now: Option<i64>) {
    let Some(want) = images.mm.dumpable else {
        debug!("no dumpable flag in the mm image");
        return;
    };
    let value = if want == 0 || want == 1 {
        want as u64
    } else {
        let cur = now.unwrap_or(-1);
        if cur == i64::from(want) {
            return;
        }
        warn!(
            want,
            cur, "dumpable flag cannot be set back; making the task not dumpable"
        );
        0
    };
    b.push(
        libc::SYS_prctl,
        [PR_SET_DUMPABLE, value, 0, 0, 0, 0],
        move || format!("prctl(PR_SET_DUMPABLE, {value})"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: u64 = (1 << 41) - 1;

    fn status_text(groups: &str, gid: &str, bnd: u64, nnp: u8) -> String {
        format!(
            "Name:\tx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t7\nNgid:\t0\nPid:\t7\n\
             PPid:\t1\nTracerPid:\t0\nUid:\t0\t0\t0\t0\nGid:\t{gid}\nFDSize:\t64\n\
             Groups:\t{groups}\nNStgid:\t7\nNSpid:\t7\nNSpgid:\t7\nNSsid:\t7\n\
             Threads:\t1\nSigQ:\t0/100\nSigPnd:\t0000000000000000\n\
             ShdPnd:\t0000000000000000\nSigBlk:\t0000000000000000\n\
             SigIgn:\t0000000000000000\nSigCgt:\t0000000000000000\n\
             CapInh:\t0000000000000000\nCapPrm:\t{FULL:016x}\nCapEff:\t{FULL:016x}\n\
             CapBnd:\t{bnd:016x}\nCapAmb:\t0000000000000000\nNoNewPrivs:\t{nnp}\n\
             Seccomp:\t0\nSeccomp_filters:\t0\n"
        )
    }

    fn now(groups: &str, gid: &str, bnd: u64, nnp: u8) -> Status {
        crs_proc::parse_status(status_text(groups, gid, bnd, nnp).as_bytes()).unwrap()
    }

    fn words(c: u64) -> Vec<u32> {
        vec![c as u32, (c >> 32) as u32]
    }

    fn entry(gid: u32, egid: u32, bnd: u64, prm: u64) -> Creds_entry {
        Creds_entry {
            uid: Some(0),
            gid: Some(gid),
            euid: Some(0),
            egid: Some(egid),
            suid: Some(0),
            sgid: Some(gid),
            fsuid: Some(0),
            fsgid: Some(egid),
            cap_inh: words(0),
            cap_prm: words(prm),
            cap_eff: words(prm),
            cap_bnd: words(bnd),
            cap_amb: words(0),
            secbits: Some(0),
            ..Default::default()
        }
    }

    #[test]
    fn plan_same_creds_only_capset_and_securebits() {
        let steps = plan(
            &entry(0, 0, FULL, FULL),
            &now("", "0\t0\t0\t0", FULL, 0),
            40,
        )
        .unwrap();
        assert_eq!(
            steps,
            vec![
                CredStep::Securebits(0),
                CredStep::Capset {
                    eff: FULL,
                    prm: FULL,
                    inh: 0
                }
            ]
        );
    }

    #[test]
    fn plan_changed_egid_keeps_caps_then_sets_ids_in_criu_order() {
        let mut c = entry(0, 4242, FULL, FULL);
        c.groups = vec![10, 20];
        c.secbits = Some(0x14);
        let steps = plan(&c, &now("", "0\t0\t0\t0", FULL, 0), 40).unwrap();
        assert_eq!(
            &steps[..7],
            &[
                CredStep::SetGroups(vec![10, 20]),
                CredStep::Securebits(SECBIT_NO_SETUID_FIXUP),
                CredStep::SetResUid([0, 0, 0]),
                CredStep::SetFsUid(0),
                CredStep::SetResGid([0, 4242, 0]),
                CredStep::SetFsGid(4242),
                CredStep::Securebits(0x14),
            ]
        );
    }

    #[test]
    fn plan_bounding_set_drops_only_missing_caps() {
        // Capability 13 out of the image's set; 24 already out of the task's.
        let bnd = FULL & !(1 << 13) & !(1 << 24);
        let steps = plan(
            &entry(0, 0, bnd, FULL & !(1 << 13)),
            &now("", "0\t0\t0\t0", FULL & !(1 << 24), 0),
            40,
        )
        .unwrap();
        let drops: Vec<_> = steps
            .iter()
            .filter(|s| matches!(s, CredStep::BsetDrop { .. }))
            .collect();
        assert_eq!(
            drops,
            vec![&CredStep::BsetDrop {
                cap: 13,
                may_fail: false
            }]
        );
    }

    #[test]
    fn plan_no_new_privs_last_and_drop_may_fail() {
        let mut c = entry(0, 0, FULL & !(1 << 21), FULL & !(1 << 21));
        c.no_new_privs = Some(1);
        c.cap_amb = words(1 << 12);
        let steps = plan(&c, &now("", "0\t0\t0\t0", FULL, 0), 40).unwrap();
        assert!(steps.contains(&CredStep::BsetDrop {
            cap: 21,
            may_fail: true
        }));
        let n = steps.len();
        assert_eq!(steps[n - 2], CredStep::AmbientRaise(12));
        assert_eq!(steps[n - 1], CredStep::NoNewPrivs);
    }

    #[test]
    fn plan_no_new_privs_cannot_be_cleared_is_unsupported() {
        let e = plan(
            &entry(0, 0, FULL, FULL),
            &now("", "0\t0\t0\t0", FULL, 1),
            40,
        );
        assert!(matches!(e, Err(RestoreError::Unsupported { .. })));
    }

    #[test]
    fn plan_same_groups_in_other_order_not_set() {
        let mut c = entry(0, 0, FULL, FULL);
        c.groups = vec![30, 10];
        let steps = plan(&c, &now("10 30", "0\t0\t0\t0", FULL, 0), 40).unwrap();
        assert!(!steps.iter().any(|s| matches!(s, CredStep::SetGroups(_))));
    }
}
