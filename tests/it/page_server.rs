//! Dumps whose pages go to a page server (CRIU 4.2's protocol, over a socket pair passed
//! with `--ps-socket`): the dump's directory keeps every image but the pagemaps and pages,
//! the server's directory gets those, and the two brought together restore (see
//! `zoo_harness.rs`). Workloads with private memory (64 MiB), shared anonymous memory, a
//! memfd, threads and a process tree, so that process and shared-memory pagemaps both
//! travel. With `$CRIU` (a CRIU 4.2 built by hand) crs also dumps into CRIU's page server
//! and CRIU dumps into crs's.

// The harness serves every zoo mode; this binary uses the page-server ones.
#[allow(dead_code)]
#[path = "../zoo_harness.rs"]
mod zoo_harness;

use zoo_harness::{run, Mode, Workload};

macro_rules! page_server {
    ($($name:ident => $workload:expr,)*) => {
        mod crs_to_crs {
            use super::*;
            $(
                #[test]
                fn $name() {
                    run($workload, Mode::PageServer);
                }
            )*
        }
        mod crs_to_criu_page_server {
            use super::*;
            $(
                #[test]
                fn $name() {
                    run($workload, Mode::CriuPageServer);
                }
            )*
        }
        mod criu_to_crs_page_server {
            use super::*;
            $(
                #[test]
                fn $name() {
                    run($workload, Mode::CriuDumpsToCrsPageServer);
                }
            )*
        }
    };
}

page_server! {
    anon_64m => Workload::C("mmap64"),
    shared_anon => Workload::C("shmem"),
    memfds => Workload::C("memfd"),
    threads16 => Workload::C("threads"),
    process_tree => Workload::C("tree"),
}
