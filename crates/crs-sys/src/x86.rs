//! x86_64 facts read from the CPU.

use std::arch::x86_64::{__cpuid_count, CpuidResult};
use std::sync::Mutex;

/// CPUID `leaf`/`sub_leaf`, asked of the CPU once per process and remembered: in a VM
/// every CPUID is a trap to the hypervisor (about 6 µs on this machine's VM), and a dump
/// asks about a dozen per thread.
pub fn cpuid(leaf: u32, sub_leaf: u32) -> CpuidResult {
    static SEEN: Mutex<Vec<((u32, u32), CpuidResult)>> = Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&(_, r)) = seen.iter().find(|(k, _)| *k == (leaf, sub_leaf)) {
        return r;
    }
    let r = __cpuid_count(leaf, sub_leaf);
    seen.push(((leaf, sub_leaf), r));
    r
}

/// Size in bytes of the XSAVE area the kernel transfers for `NT_X86_XSTATE`, from CPUID
/// leaf 0xD sub-leaf 0: the larger of EBX (size for the features enabled in XCR0) and ECX
/// (size for every feature XCR0 may enable). Never below the 512-byte legacy area plus the
/// 64-byte XSAVE header.
pub fn xstate_size() -> usize {
    // CPUID is available on every x86_64 CPU; leaf 0xD exists when XSAVE does, and reads as
    // zeros otherwise, which the max() below turns into the legacy size.
    let leaf = cpuid(0xd, 0);
    (leaf.ebx.max(leaf.ecx) as usize).max(512 + 64)
}

/// CPUID leaf 0xD sub-leaf `component`: (offset, size) of that XSAVE component in the
/// standard (non-compacted) format; (0, 0) when the CPU lacks it.
pub fn xsave_component(component: u32) -> (usize, usize) {
    let leaf = cpuid(0xd, component);
    (leaf.ebx as usize, leaf.eax as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_answers_match_the_cpu() {
        for (leaf, sub) in [(0xd, 0), (0xd, 2), (1, 0), (7, 0), (0xd, 0)] {
            let r = cpuid(leaf, sub);
            let c = __cpuid_count(leaf, sub);
            assert_eq!((r.eax, r.ebx, r.ecx, r.edx), (c.eax, c.ebx, c.ecx, c.edx));
        }
    }
}
