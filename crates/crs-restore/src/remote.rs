//! Running syscalls inside the task being restored, through compel, from the trampoline.

use crs_compel::{RemoteAddr, SeizedTree, Tid};

use crate::RestoreError;

/// The held task and its trampoline: the first page holds `syscall`, the rest is scratch
/// memory for pointer arguments.
pub(crate) struct Remote<'t> {
    pub tree: &'t mut SeizedTree,
    pub pid: Tid,
    pub trampoline: u64,
    pub scratch: u64,
    pub scratch_len: usize,
    /// Injected syscalls run so far (for the stats and the design notes).
    pub calls: u64,
}

impl<'t> Remote<'t> {
    /// Runs syscall `nr`; an error return is `Syscall` described by `what`.
    pub fn call(
        &mut self,
        nr: i64,
        args: [u64; 6],
        what: impl FnOnce() -> String,
    ) -> Result<i64, RestoreError> {
        self.calls += 1;
        let ret = self
            .tree
            .syscall(self.pid, nr, args)
            .map_err(|source| RestoreError::Compel {
                pid: self.pid,
                what: what_now(nr),
                source,
            })?;
        if (-4095..0).contains(&ret) {
            return Err(RestoreError::Syscall {
                pid: self.pid,
                what: what(),
                errno: -ret,
            });
        }
        Ok(ret)
    }

    /// Copies `bytes` into the scratch area at offset `off`; returns their remote address.
    pub fn put(&mut self, off: usize, bytes: &[u8]) -> Result<u64, RestoreError> {
        if off + bytes.len() > self.scratch_len {
            return Err(RestoreError::Unsupported {
                what: format!("a syscall argument of {} bytes", bytes.len()),
            });
        }
        let addr = self.scratch + off as u64;
        self.tree
            .write_memory(self.pid, RemoteAddr(addr), bytes)
            .map_err(|source| RestoreError::Compel {
                pid: self.pid,
                what: format!("writing syscall arguments at {addr:#x}"),
                source,
            })?;
        Ok(addr)
    }

    /// Runs `f` with a `Remote` whose syscalls run in thread `tid` of the same process
    /// (same trampoline and scratch: the memory is shared).
    pub fn in_thread<T>(&mut self, tid: Tid, f: impl FnOnce(&mut Remote<'_>) -> T) -> T {
        let mut t = Remote {
            tree: &mut *self.tree,
            pid: tid,
            trampoline: self.trampoline,
            scratch: self.scratch,
            scratch_len: self.scratch_len,
            calls: 0,
        };
        let out = f(&mut t);
        self.calls += t.calls;
        out
    }

    /// Copies a NUL-terminated `s` into scratch at offset `off`.
    pub fn put_str(&mut self, off: usize, s: &str) -> Result<u64, RestoreError> {
        let mut b = Vec::with_capacity(s.len() + 1);
        b.extend_from_slice(s.as_bytes());
        b.push(0);
        self.put(off, &b)
    }
}

fn what_now(nr: i64) -> String {
    format!("running syscall {nr} in the task")
}
