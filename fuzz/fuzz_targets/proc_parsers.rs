//! Every /proc parser: the first byte picks the file kind, the rest is its content.
#![no_main]
use crs_proc::{parse_any, ProcFile};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let kinds = ProcFile::ALL;
    let _ = parse_any(kinds[sel as usize % kinds.len()], body);
});
