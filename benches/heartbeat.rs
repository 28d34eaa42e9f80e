//! Frozen time measured from outside the tools, the same way for crs and criu: the
//! heartbeat file's layout and the arithmetic of the frozen span (the bench's
//! `dumprestore/frozen.rs` does the I/O).
//!
//! The workload beats: each of its processes stores the CLOCK_MONOTONIC time into its slot
//! of a small shared file every period (`memfill.c` has the layout). A process stops beating
//! when the tool stops it, and beats again at once when it is thawed (its sleep has an
//! absolute deadline, long passed). The bench watches every process's pidfd from a thread
//! at real-time priority and timestamps each death.
//!
//! - Start: the root's last beat (it beats every [`ROOT_PERIOD`]), or, if earlier, the
//!   moment a child missed its second beat (last beat + 2 x [`CHILD_PERIOD`]): a child that
//!   was not starved cannot have been frozen later than that, so a tool that froze a child
//!   well before the root is caught. Both tools stop the root first (its children can only
//!   be listed once it cannot fork), so the start is the root's last beat, at most one
//!   root period (plus its wake-up delay) before the freeze.
//! - End of a dump that kills: the last death seen, at most one watcher wake-up after it.
//!   End of a `-R` dump: the last process's first beat after its longest silence during
//!   the dump.
//!
//! Children beat slowly because a beat costs: on this VM a timer wake-up takes about 15-20
//! µs of CPU, so 49 children at 100 µs would need several CPUs. Beats happen only while a
//! process runs, from arming (just before the tool starts) to its freeze; the bench stops
//! them (control word 0) before a restored tree runs.

use std::time::Duration;

/// Heartbeat period of the root process of a workload.
pub const ROOT_PERIOD: Duration = Duration::from_micros(100);
/// Heartbeat period of the children of a tree workload.
pub const CHILD_PERIOD: Duration = Duration::from_millis(5);

/// Slots in the file: processes of one workload at most (as `memfill.c`'s HB_SLOTS).
pub const SLOTS: usize = 63;
pub const SLOT_BYTES: usize = 256;
pub const HEADER_BYTES: usize = 64;
pub const FILE_BYTES: usize = HEADER_BYTES + SLOTS * SLOT_BYTES;
/// Silences remembered per slot (as `memfill.c`'s HB_RING).
const RING: usize = 12;

/// The header: the control word (1: beat, 0: stop) and the two periods.
pub fn header(control: u64) -> [u8; 24] {
    let mut h = [0u8; 24];
    h[..8].copy_from_slice(&control.to_le_bytes());
    h[8..16].copy_from_slice(&(ROOT_PERIOD.as_nanos() as u64).to_le_bytes());
    h[16..].copy_from_slice(&(CHILD_PERIOD.as_nanos() as u64).to_le_bytes());
    h
}

/// One process's slot, as last written.
#[derive(Clone, Debug, Default)]
pub struct Slot {
    pub pid: i32,
    pub period_ns: u64,
    pub beats: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub max_gap_ns: u64,
    /// (start, end) of the last gaps longer than two periods, oldest first.
    pub gaps: Vec<(u64, u64)>,
}

impl Slot {
    /// A slot from its bytes, with its sequence word (odd while it is being written).
    fn parse(b: &[u8]) -> (u64, Slot) {
        let w = |i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let ngaps = w(7) as usize;
        let gaps = (ngaps.saturating_sub(RING)..ngaps)
            .map(|k| {
                let i = 8 + 2 * (k % RING);
                (w(i), w(i + 1))
            })
            .collect();
        let s = Slot {
            pid: w(1) as i32,
            period_ns: w(2),
            beats: w(3),
            first_ns: w(4),
            last_ns: w(5),
            max_gap_ns: w(6),
            gaps,
        };
        (w(0), s)
    }

    /// Mean time between beats before the freeze, in ns.
    pub fn mean_gap_ns(&self) -> f64 {
        if self.beats < 2 {
            return f64::NAN;
        }
        (self.last_ns - self.first_ns) as f64 / (self.beats - 1) as f64
    }
}

/// The first `n` slots of a file's bytes, or None if one of them was being written.
pub fn parse_slots(file: &[u8], n: usize) -> Option<Vec<Slot>> {
    let parsed: Vec<(u64, Slot)> = file[HEADER_BYTES..HEADER_BYTES + n * SLOT_BYTES]
        .chunks(SLOT_BYTES)
        .map(Slot::parse)
        .collect();
    if parsed.iter().any(|(seq, _)| seq % 2 == 1) {
        return None;
    }
    Some(parsed.into_iter().map(|(_, s)| s).collect())
}

/// One frozen span, and how it was found.
#[derive(Clone, Copy, Debug)]
pub struct Frozen {
    pub secs: f64,
    /// The start came from a child's missed beat, not from the root's last beat.
    pub child_first: bool,
    /// The root's largest gap between beats before the freeze (its error bar), in s.
    pub root_max_gap: f64,
    /// The root's mean gap between beats before the freeze, in s.
    pub root_mean_gap: f64,
}

/// The start of the frozen span: the root's last beat before the freeze, or a child's
/// second missed beat (its last beat before the freeze + two periods: one is often missed
/// on a loaded machine) if earlier. `children` are (last beat before the freeze, period)
/// pairs.
fn start_ns(root_last: u64, children: impl Iterator<Item = (u64, u64)>) -> (u64, bool) {
    let child = children.map(|(l, p)| l + 2 * p).min().unwrap_or(u64::MAX);
    if child < root_last {
        (child, true)
    } else {
        (root_last, false)
    }
}

/// A dump that killed the tree (slot 0 the root's): from the start to the last death of
/// `deaths`, (pid, CLOCK_MONOTONIC ns).
pub fn killed(slots: &[Slot], deaths: &[(i32, u64)]) -> Result<Frozen, String> {
    if let Some(s) = slots.iter().find(|s| !deaths.iter().any(|d| d.0 == s.pid)) {
        return Err(format!("no death seen for pid {}", s.pid));
    }
    let root = slots.first().ok_or("no slots")?;
    if root.beats == 0 {
        return Err("the root never beat".into());
    }
    let end = deaths.iter().map(|d| d.1).max().ok_or("no deaths")?;
    let (start, child_first) = start_ns(
        root.last_ns,
        slots[1..].iter().map(|s| (s.last_ns, s.period_ns)),
    );
    if end <= start {
        return Err(format!(
            "death at {end} ns, not after the last beat at {start} ns"
        ));
    }
    Ok(Frozen {
        secs: (end - start) as f64 / 1e9,
        child_first,
        root_max_gap: root.max_gap_ns as f64 / 1e9,
        root_mean_gap: root.mean_gap_ns() / 1e9,
    })
}

/// A `-R` dump that ran from `t0` to `t1` (ns): each process's longest silence that
/// overlaps the dump is its freeze; from the start to the last first beat after one. A
/// child frozen for less than about two of its periods shows no silence and is left out
/// (its freeze cannot have been much longer than that).
pub fn left_running(slots: &[Slot], t0: u64, t1: u64) -> Result<Frozen, String> {
    let freeze = |s: &Slot| {
        s.gaps
            .iter()
            .copied()
            .filter(|&(a, b)| a < t1 && b > t0)
            .max_by_key(|&(a, b)| b - a)
    };
    let root = slots
        .first()
        .and_then(freeze)
        .ok_or("the root never stopped beating during the dump")?;
    let children: Vec<(u64, u64, u64)> = slots[1..]
        .iter()
        .filter_map(|s| freeze(s).map(|g| (g.0, g.1, s.period_ns)))
        .collect();
    let (start, child_first) = start_ns(root.0, children.iter().map(|c| (c.0, c.2)));
    let end = children.iter().map(|c| c.1).fold(root.1, u64::max);
    Ok(Frozen {
        secs: (end - start) as f64 / 1e9,
        child_first,
        root_max_gap: f64::NAN,
        root_mean_gap: f64::NAN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (seq, pid, period, beats, first, last, max_gap, gaps) of one slot.
    type Spec<'a> = (u64, i32, u64, u64, u64, u64, u64, &'a [(u64, u64)]);

    /// A file image with `slots`, the ring written as memfill.c writes it.
    fn file(slots: &[Spec<'_>]) -> Vec<u8> {
        let mut b = vec![0u8; FILE_BYTES];
        b[..24].copy_from_slice(&header(1));
        for (i, s) in slots.iter().enumerate() {
            let at = HEADER_BYTES + i * SLOT_BYTES;
            let mut put =
                |w: usize, v: u64| b[at + w * 8..at + w * 8 + 8].copy_from_slice(&v.to_le_bytes());
            put(0, s.0);
            put(1, s.1 as u64);
            put(2, s.2);
            put(3, s.3);
            put(4, s.4);
            put(5, s.5);
            put(6, s.6);
            put(7, s.7.len() as u64);
            for (k, g) in s.7.iter().enumerate() {
                put(8 + 2 * (k % RING), g.0);
                put(9 + 2 * (k % RING), g.1);
            }
        }
        b
    }

    #[test]
    fn parse_slots_reads_fields_and_the_ring_oldest_first() {
        let gaps: Vec<(u64, u64)> = (0..14).map(|k| (k * 10, k * 10 + 5)).collect();
        let b = file(&[(2, 42, 100_000, 11, 1_000, 2_000, 300, &gaps)]);
        let s = &parse_slots(&b, 1).unwrap()[0];
        assert_eq!((s.pid, s.period_ns, s.beats), (42, 100_000, 11));
        assert_eq!((s.first_ns, s.last_ns, s.max_gap_ns), (1_000, 2_000, 300));
        assert_eq!(s.mean_gap_ns(), 100.0);
        // 14 gaps written, the ring keeps the last 12: gaps 2..14.
        assert_eq!(s.gaps, gaps[2..].to_vec());
    }

    #[test]
    fn parse_slots_slot_being_written_is_none() {
        let b = file(&[(2, 1, 1, 2, 0, 1, 1, &[]), (3, 2, 1, 2, 0, 1, 1, &[])]);
        assert!(parse_slots(&b, 2).is_none());
        assert!(parse_slots(&b, 1).is_some());
    }

    fn slot(pid: i32, period: u64, last: u64, gaps: &[(u64, u64)]) -> Slot {
        Slot {
            pid,
            period_ns: period,
            beats: 10,
            first_ns: 0,
            last_ns: last,
            max_gap_ns: period,
            gaps: gaps.to_vec(),
        }
    }

    #[test]
    fn killed_spans_root_last_beat_to_last_death() {
        let slots = [slot(1, 100, 1_000, &[]), slot(2, 5_000, 900, &[])];
        let f = killed(&slots, &[(2, 3_000), (1, 4_000)]).unwrap();
        assert_eq!(f.secs, 3_000e-9);
        assert!(!f.child_first);
    }

    #[test]
    fn killed_child_silent_two_periods_before_the_root_starts_the_span() {
        // The child last beat at 100 with a 200 ns period: frozen by 500 at the latest.
        let slots = [slot(1, 100, 1_000, &[]), slot(2, 200, 100, &[])];
        let f = killed(&slots, &[(1, 2_000), (2, 1_500)]).unwrap();
        assert_eq!(f.secs, 1_500e-9);
        assert!(f.child_first);
    }

    #[test]
    fn killed_missing_death_is_an_error() {
        let slots = [slot(1, 100, 1_000, &[]), slot(2, 200, 900, &[])];
        assert!(killed(&slots, &[(1, 2_000)]).is_err());
        assert!(killed(&slots[..1], &[(1, 500)]).is_err());
    }

    #[test]
    fn left_running_longest_silence_inside_the_dump() {
        // Dump from 1_000 to 10_000; the root was silent 2_000..6_000 (the freeze) and
        // 7_000..7_500 (a hiccup after the thaw), the child 2_500..6_500.
        let slots = [
            slot(1, 100, 9_000, &[(100, 400), (2_000, 6_000), (7_000, 7_500)]),
            slot(2, 1_000, 9_000, &[(2_500, 6_500)]),
        ];
        let f = left_running(&slots, 1_000, 10_000).unwrap();
        assert_eq!(f.secs, 4_500e-9);
    }

    #[test]
    fn left_running_root_never_silent_is_an_error() {
        let slots = [slot(1, 100, 9_000, &[(100, 400)])];
        assert!(left_running(&slots, 1_000, 10_000).is_err());
    }
}
