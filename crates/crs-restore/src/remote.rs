//! Running syscalls inside the task being restored, through compel, from the trampoline.

use crs_compel::{BatchSite, Call, RemoteAddr, RemoteRange, SeizedTree, Tid};

use crate::RestoreError;

/// Where the batch code goes in the trampoline's code page (after its `syscall; jmp .`).
const BATCH_CODE_OFF: u64 = 0x40;
/// The batch table takes the last this many bytes of the scratch area (64 entries).
const BATCH_TABLE: usize = 4096;

/// Syscalls to run in one go ([`Remote::run`]), each with what it is for its error.
#[derive(Default)]
pub(crate) struct Batch<'w> {
    calls: Vec<Call>,
    what: Vec<Box<dyn FnOnce() -> String + 'w>>,
}

impl<'w> Batch<'w> {
    pub fn push(&mut self, nr: i64, args: [u64; 6], what: impl FnOnce() -> String + 'w) {
        self.calls.push(Call::new(nr, args));
        self.what.push(Box::new(what));
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }
}

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
    /// Injections into held process `pid` from its trampoline of `len` bytes at `tramp`:
    /// the code page first, the rest scratch.
    pub fn on_trampoline(tree: &'t mut SeizedTree, pid: Tid, tramp: u64, len: usize) -> Self {
        Remote {
            tree,
            pid,
            trampoline: tramp,
            scratch: tramp + 4096,
            scratch_len: len - 4096,
            calls: 0,
        }
    }

    /// Runs syscall `nr`; an error return is `Syscall` described by `what`.
    pub fn call(
        &mut self,
        nr: i64,
        args: [u64; 6],
        what: impl FnOnce() -> String,
    ) -> Result<i64, RestoreError> {
        self.call_from(false, nr, args, what)
    }

    /// [`Remote::call`] from outside the trampoline (compel's `syscall_outside`): for the
    /// munmap of the trampoline itself.
    pub fn call_outside(
        &mut self,
        nr: i64,
        args: [u64; 6],
        what: impl FnOnce() -> String,
    ) -> Result<i64, RestoreError> {
        self.call_from(true, nr, args, what)
    }

    fn call_from(
        &mut self,
        outside: bool,
        nr: i64,
        args: [u64; 6],
        what: impl FnOnce() -> String,
    ) -> Result<i64, RestoreError> {
        self.calls += 1;
        let ret = if outside {
            self.tree.syscall_outside(self.pid, nr, args)
        } else {
            self.tree.syscall(self.pid, nr, args)
        };
        let ret = ret.map_err(|source| RestoreError::Compel {
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

    /// Runs the calls of `batch` in order with one stop of the task (see compel's
    /// `SeizedTree::syscalls`), and returns their results. The first call that fails is the
    /// same `Syscall` error it would be alone, and the calls after it do not run. Pointer
    /// arguments must lie below [`Remote::batch_room`] of the scratch area.
    pub fn run(&mut self, batch: Batch<'_>) -> Result<Vec<i64>, RestoreError> {
        if batch.calls.is_empty() {
            return Ok(Vec::new());
        }
        self.batch_site()?;
        self.calls += batch.calls.len() as u64;
        let pid = self.pid;
        let results =
            self.tree
                .syscalls(pid, &batch.calls)
                .map_err(|source| RestoreError::Compel {
                    pid,
                    what: format!("running a batch of {} injected syscalls", batch.calls.len()),
                    source,
                })?;
        for (ret, what) in results.iter().zip(batch.what) {
            if (-4095..0).contains(ret) {
                return Err(RestoreError::Syscall {
                    pid,
                    what: what(),
                    errno: -ret,
                });
            }
        }
        if results.len() != batch.calls.len() {
            return Err(RestoreError::Syscall {
                pid,
                what: format!(
                    "a batch of {} injected syscalls that ran {}",
                    batch.calls.len(),
                    results.len()
                ),
                errno: 0,
            });
        }
        Ok(results)
    }

    /// Bytes at the start of the scratch area that batch arguments may use (the batch
    /// table is above).
    pub fn batch_room(&self) -> usize {
        self.scratch_len.saturating_sub(BATCH_TABLE)
    }

    /// Copies `bytes` for a batched call into the scratch area at offset `off`, below the
    /// batch table; returns their remote address.
    pub fn put_for_batch(&mut self, off: usize, bytes: &[u8]) -> Result<u64, RestoreError> {
        if off + bytes.len() > self.batch_room() {
            return Err(RestoreError::Unsupported {
                what: format!("batched syscall arguments of {} bytes", off + bytes.len()),
            });
        }
        self.put(off, bytes)
    }

    /// Installs the batch code in the trampoline the first time a batch runs.
    fn batch_site(&mut self) -> Result<(), RestoreError> {
        if self.tree.batch_site(self.pid).is_some() || self.scratch_len <= BATCH_TABLE {
            return Ok(());
        }
        let site = BatchSite {
            code: RemoteAddr(self.trampoline + BATCH_CODE_OFF),
            table: RemoteRange {
                addr: RemoteAddr(self.scratch + self.batch_room() as u64),
                len: BATCH_TABLE,
            },
        };
        let pid = self.pid;
        self.tree
            .set_batch_site(pid, site)
            .map_err(|source| RestoreError::Compel {
                pid,
                what: "writing the batch code into the trampoline".into(),
                source,
            })
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
