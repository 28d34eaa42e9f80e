//! Lazy restore: `crs dump`, then `crs restore --lazy-pages`, for workloads whose private
//! memory is large (64 MiB, a heap), spread over threads and processes, or written all the
//! time after the restore (`livewriter`: faults while the server is still filling): each
//! must pass its own checks (see `zoo_harness.rs`, `LazyRestore`).

// The harness serves every zoo mode; this binary uses the lazy one.
#[allow(dead_code)]
#[path = "../zoo_harness.rs"]
mod zoo_harness;

use zoo_harness::{run, Mode, Workload};

macro_rules! lazy {
    ($($name:ident => $workload:expr,)*) => {
        $(
            #[test]
            fn $name() {
                run($workload, Mode::LazyRestore);
            }
        )*
    };
}

lazy! {
    anon_64m => Workload::C("mmap64"),
    heap_8m => Workload::C("heap"),
    threads16 => Workload::C("threads"),
    process_tree => Workload::C("tree"),
    wide_tree => Workload::C("wide_tree"),
    memory_generations => Workload::C("memtrack"),
    memory_written_all_the_time => Workload::C("livewriter"),
    deleted_mappings => Workload::C("deleted_maps"),
    shared_anon => Workload::C("shmem"),
    guard_pages => Workload::C("guard"),
    madvise_flags => Workload::C("madvise"),
}
