//! seccomp: each thread's filters (seccomp.img), or strict mode, put back.
//!
//! ```text
//! load    : seccomp.img's filters; every thread in filter mode names its newest filter
//!           (thread_core.seccomp_filter), whose `prev` links lead to older ones (each to
//!           a lower index: the chain ends); a filter that returned a listener fd
//!           (NEW_LISTENER) is refused
//! install : per thread, oldest filter first, seccomp(SET_MODE_FILTER, flags, &prog)
//!           injected into that thread (flags as dumped, without TSYNC: each thread gets
//!           its own chain, as it had); strict mode: seccomp(SET_MODE_STRICT)
//! ```
//! Installed once the threads exist and before the credentials change (installing a
//! filter needs CAP_SYS_ADMIN or no_new_privs, which the credentials set later). compel
//! seizes with PTRACE_O_SUSPEND_SECCOMP, so the syscalls injected afterwards are not
//! filtered; the filters act once the tree is let go. Threads made later by the tree
//! inherit their creator's, as in the kernel.

use std::path::Path;

use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::core::{Seccomp_mode, Thread_core_entry};
use crs_images::pb::seccomp::{Seccomp_entry, Seccomp_filter};
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::images::Tree;
use crate::remote::Remote;
use crate::RestoreError;

const IMAGE: &str = "seccomp.img";
/// SECCOMP_SET_MODE_* and SECCOMP_FILTER_FLAG_* of <linux/seccomp.h>.
const SET_MODE_STRICT: u64 = 0;
const SET_MODE_FILTER: u64 = 1;
const FLAG_TSYNC: u32 = 1;
const FLAG_NEW_LISTENER: u32 = 1 << 3;
const FLAG_TSYNC_ESRCH: u32 = 1 << 4;
/// A sock_filter instruction: u16 code, u8 jt, u8 jf, u32 k.
const INSN: usize = 8;
/// BPF_MAXINSNS.
const MAX_INSNS: usize = 4096;

/// The filters of seccomp.img, by index.
#[derive(Debug, Default)]
pub(crate) struct Filters {
    filters: Vec<Seccomp_filter>,
}

/// Reads seccomp.img (when some thread of `tree` is in filter mode) and checks that every
/// such thread's chain is there.
pub(crate) fn load(dir: &Path, tree: &Tree) -> Result<Filters, RestoreError> {
    let cores = tree.procs.iter().flat_map(|p| {
        std::iter::once((p.pid, p.core.thread_core.as_ref())).chain(
            p.threads
                .iter()
                .map(|t| (t.tid, t.core.thread_core.as_ref())),
        )
    });
    let wanted: Vec<(i32, u32)> = cores
        .filter_map(|(tid, tc)| {
            let tc = tc?;
            (mode(tc) == Seccomp_mode::filter).then(|| (tid, tc.seccomp_filter()))
        })
        .collect();
    if wanted.is_empty() {
        return Ok(Filters::default());
    }
    let bytes = read_file(&dir.join(IMAGE))?;
    let label = dir.join(IMAGE).display().to_string();
    let entry: Seccomp_entry = ImageReader::new(&label, &bytes, "SECCOMP")?
        .next()?
        .ok_or_else(|| invalid(IMAGE, "no entry"))?;
    for (i, f) in entry.seccomp_filters.iter().enumerate() {
        let len = f.filter().len();
        if len == 0 || len % INSN != 0 || len / INSN > MAX_INSNS {
            return Err(invalid(IMAGE, format!("filter {i}: {len} bytes")));
        }
        if f.prev.is_some_and(|p| p as usize >= i) {
            return Err(invalid(
                IMAGE,
                format!("filter {i}: previous filter {} is not older", f.prev()),
            ));
        }
        if f.flags() & FLAG_NEW_LISTENER != 0 {
            return Err(unsupported(format!(
                "{IMAGE}: filter {i} with a user-space listener (SECCOMP_FILTER_FLAG_NEW_LISTENER)"
            )));
        }
    }
    for (tid, leaf) in wanted {
        if leaf as usize >= entry.seccomp_filters.len() {
            return Err(invalid(
                &format!("core-{tid}.img"),
                format!(
                    "seccomp filter {leaf}, and {IMAGE} has {}",
                    entry.seccomp_filters.len()
                ),
            ));
        }
    }
    Ok(Filters {
        filters: entry.seccomp_filters,
    })
}

fn mode(tc: &Thread_core_entry) -> Seccomp_mode {
    tc.seccomp_mode
        .and_then(|m| m.enum_value().ok())
        .unwrap_or(Seccomp_mode::disabled)
}

impl Filters {
    /// The chain ending with filter `leaf`, oldest first.
    fn chain(&self, leaf: u32) -> Vec<&Seccomp_filter> {
        let mut out = Vec::new();
        let mut at = Some(leaf);
        while let Some(i) = at {
            let f = &self.filters[i as usize];
            out.push(f);
            at = f.prev;
        }
        out.reverse();
        out
    }
}

/// Puts back the seccomp state `tc` records on the thread `r` injects into.
pub(crate) fn install(
    r: &mut Remote<'_>,
    tc: &Thread_core_entry,
    filters: &Filters,
) -> Result<(), RestoreError> {
    match mode(tc) {
        Seccomp_mode::disabled => Ok(()),
        Seccomp_mode::strict => {
            r.call(libc::SYS_seccomp, [SET_MODE_STRICT, 0, 0, 0, 0, 0], || {
                "seccomp(SECCOMP_SET_MODE_STRICT)".into()
            })?;
            Ok(())
        }
        Seccomp_mode::filter => {
            let chain = filters.chain(tc.seccomp_filter());
            for (i, f) in chain.iter().enumerate() {
                let prog = f.filter();
                // struct sock_fprog: u16 len, padding, the pointer; the program after it.
                let code = r.put(16, prog)?;
                let mut fprog = [0u8; 16];
                fprog[..2].copy_from_slice(&((prog.len() / INSN) as u16).to_ne_bytes());
                fprog[8..].copy_from_slice(&code.to_ne_bytes());
                let at = r.put(0, &fprog)?;
                let flags = f.flags() & !(FLAG_TSYNC | FLAG_TSYNC_ESRCH);
                r.call(
                    libc::SYS_seccomp,
                    [SET_MODE_FILTER, u64::from(flags), at, 0, 0, 0],
                    || {
                        format!(
                            "seccomp(SECCOMP_SET_MODE_FILTER) of filter {} of {} ({} instructions)",
                            i + 1,
                            chain.len(),
                            prog.len() / INSN
                        )
                    },
                )?;
            }
            debug!(
                tid = r.pid,
                filters = chain.len(),
                "seccomp filters installed"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testsets;
    use crs_images::codec::ImageWriter;
    use crs_images::pb::core::Core_entry;
    use crs_images::pb::seccomp::{Seccomp_entry, Seccomp_filter};

    /// The simple set with its thread in filter mode at filter `leaf` and seccomp.img
    /// holding `filters` (prev, flags), each a one-instruction program.
    fn with_filters(
        test: &str,
        leaf: u32,
        filters: &[(Option<u32>, u32)],
    ) -> Option<tempfile::TempDir> {
        let t = testsets::copy("simple", test)?;
        testsets::rewrite(
            t.path(),
            "core-71000.img",
            "CORE",
            |v: &mut Vec<Core_entry>| {
                let tc = v[0].thread_core.mut_or_insert_default();
                tc.seccomp_mode = Some(protobuf::EnumOrUnknown::from_i32(2));
                tc.seccomp_filter = Some(leaf);
            },
        );
        let mut w = ImageWriter::new("seccomp.img", "SECCOMP");
        w.push(&Seccomp_entry {
            seccomp_filters: filters
                .iter()
                .map(|&(prev, flags)| Seccomp_filter {
                    filter: Some(vec![6, 0, 0, 0, 0, 0, 0xff, 0x7f]),
                    prev,
                    flags: Some(flags),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
        .unwrap();
        std::fs::write(t.path().join("seccomp.img"), w.into_bytes()).unwrap();
        Some(t)
    }

    #[test]
    fn load_chain_of_two_is_installed_oldest_first() {
        let Some(t) = with_filters(
            "load_chain_of_two_is_installed_oldest_first",
            1,
            &[(None, 0), (Some(0), 2)],
        ) else {
            return;
        };
        let loaded = testsets::load(t.path()).unwrap();
        let chain = loaded.seccomp.chain(1);
        assert_eq!(
            chain.iter().map(|f| f.flags()).collect::<Vec<_>>(),
            vec![0, 2]
        );
    }

    #[test]
    fn load_filter_pointing_at_a_newer_one_is_invalid() {
        let Some(t) = with_filters(
            "load_filter_pointing_at_a_newer_one_is_invalid",
            0,
            &[(Some(1), 0), (None, 0)],
        ) else {
            return;
        };
        let err = testsets::load_err(t.path());
        assert!(
            err.contains("seccomp.img: filter 0: previous filter 1 is not older"),
            "{err}"
        );
    }

    #[test]
    fn load_filter_with_a_listener_is_unsupported() {
        let Some(t) = with_filters(
            "load_filter_with_a_listener_is_unsupported",
            0,
            &[(None, 8)],
        ) else {
            return;
        };
        let err = testsets::load_err(t.path());
        assert!(err.contains("filter 0 with a user-space listener"), "{err}");
    }
}
