//! x86_64 facts read from the CPU.

/// Size in bytes of the XSAVE area the kernel transfers for `NT_X86_XSTATE`, from CPUID
/// leaf 0xD sub-leaf 0: the larger of EBX (size for the features enabled in XCR0) and ECX
/// (size for every feature XCR0 may enable). Never below the 512-byte legacy area plus the
/// 64-byte XSAVE header.
pub fn xstate_size() -> usize {
    // CPUID is available on every x86_64 CPU; leaf 0xD exists when XSAVE does, and reads as
    // zeros otherwise, which the max() below turns into the legacy size.
    let leaf = std::arch::x86_64::__cpuid_count(0xd, 0);
    (leaf.ebx.max(leaf.ecx) as usize).max(512 + 64)
}
