//! Incremental dumps: three `crs pre-dump`s of a live tree, each on top of the one before,
//! then a dump on top of the last and a restore (see `zoo_harness.rs`, `PreDumpChain`).
//! `memtrack` rewrites a quarter of its 16 MiB and maps new memory after each pre-dump,
//! so its final memory comes from every image of the chain; a process tree and a
//! multi-threaded process are chained without changing anything.

// The harness serves every zoo mode; this binary uses the pre-dump ones.
#[allow(dead_code)]
#[path = "../zoo_harness.rs"]
mod zoo_harness;

use zoo_harness::{run, Mode, Workload};

#[test]
fn memory_changing_between_pre_dumps_restores_from_the_chain() {
    run(Workload::C("memtrack"), Mode::PreDumpChain);
}

#[test]
fn process_tree_restores_from_a_pre_dump_chain() {
    run(Workload::C("tree"), Mode::PreDumpChainQuiet);
}

#[test]
fn threads_restore_from_a_pre_dump_chain() {
    run(Workload::C("threads"), Mode::PreDumpChainQuiet);
}
