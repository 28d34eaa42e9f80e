//! The dump/restore zoo: every workload of `workloads/` run seven ways (see
//! `zoo_harness.rs`):
//! - `control_passes::<workload>`: ready, SIGTERM, exit 0, no crs involved;
//! - `every_corrupted_item_fails::<workload>`: once for each item the workload checks, the
//!   workload breaks that item after ready; it must exit 1 with exactly that item failed;
//! - `dump_restore_passes::<workload>`: `crs dump`, `crs restore -d`, SIGTERM, exit 0;
//! - `leave_running_then_restore_passes::<workload>`: `crs dump -R`, the task runs on
//!   untouched, SIGTERM, exit 0; then its files are put back as they were at the dump and
//!   the images restored: SIGTERM, exit 0 again;
//! - `live_leave_running_then_restore_passes::<workload>`: the same with `crs dump -R
//!   --live` (the workload runs while its pages are copied);
//! - `criu_restores_crs_dump_passes::<workload>` and `crs_restores_criu_dump_passes::`:
//!   the same as `dump_restore_passes` with a CRIU 4.2 built by hand (`$CRIU`) restoring
//!   crs's images, or dumping the images crs restores; skipped when `$CRIU` is unset.
//!
//! One #[test] each, so nextest runs them in parallel processes.

// The harness also serves `page_server.rs`, whose modes this binary does not use.
#[allow(dead_code)]
#[path = "../zoo_harness.rs"]
mod zoo_harness;

use zoo_harness::{run, Mode, Workload};

macro_rules! zoo {
    ($($name:ident => $workload:expr,)*) => {
        mod control_passes {
            use super::*;
            $(
                #[test]
                fn $name() {
                    run($workload, Mode::Control);
                }
            )*
        }
        mod every_corrupted_item_fails {
            use super::*;
            $(
                #[test]
                fn $name() {
                    run($workload, Mode::Corrupt);
                }
            )*
        }
        mod dump_restore_passes {
            use super::*;
            $(
                #[test]
                fn $name() {
                    run($workload, Mode::DumpRestore);
                }
            )*
        }
        mod criu_restores_crs_dump_passes {
            use super::*;
            $(
                #[test]
                fn $name() {
                    run($workload, Mode::CriuRestoresCrs);
                }
            )*
        }
        mod crs_restores_criu_dump_passes {
            use super::*;
            $(
                #[test]
                fn $name() {
                    run($workload, Mode::CrsRestoresCriu);
                }
            )*
        }
        mod live_leave_running_then_restore_passes {
            use super::*;
            $(
                #[test]
                fn $name() {
                    run($workload, Mode::LiveLeaveRunning);
                }
            )*
        }
        mod leave_running_then_restore_passes {
            use super::*;
            $(
                #[test]
                fn $name() {
                    run($workload, Mode::LeaveRunning);
                }
            )*
        }
    };
}

zoo! {
    anon_fds => Workload::C("anonfds"),
    avx_registers => Workload::C("avx"),
    busy_loop => Workload::C("busyloop"),
    char_devices => Workload::C("chardev"),
    credentials => Workload::C("creds"),
    cwd_umask => Workload::C("cwd_umask"),
    deleted_file => Workload::C("deleted"),
    open_files => Workload::C("files"),
    guard_pages => Workload::C("guard"),
    heap_8m => Workload::C("heap"),
    itimers => Workload::C("itimer"),
    file_locks => Workload::CWithArgs("locks", &["-l"]),
    ofd_locks => Workload::CWithArgs("ofd_locks", &["-l"]),
    file_leases => Workload::CWithArgs("leases", &["-l"]),
    madvise_flags => Workload::C("madvise"),
    mm_fields => Workload::C("mm"),
    anon_64m => Workload::C("mmap64"),
    nanosleep => Workload::C("nanosleep"),
    personality => Workload::C("personality"),
    pipe_read => Workload::C("pipe"),
    pipeline3 => Workload::C("pipeline"),
    posix_timers => Workload::C("posix_timer"),
    prctl_values => Workload::C("prctl"),
    rlimits => Workload::C("rlimits"),
    shared_file_map => Workload::C("shmap"),
    sigaltstack => Workload::C("sigaltstack"),
    signals => Workload::C("signals"),
    tls => Workload::C("tls"),
    unix_socketpair => Workload::C("unixpair"),
    process_tree => Workload::C("tree"),
    threads16 => Workload::C("threads"),
    shared_anon => Workload::C("shmem"),
    memfds => Workload::C("memfd"),
    sysv_shm => Workload::C("sysv_shm"),
    uts_ipc_namespaces => Workload::C("uts_ipc_ns"),
    pid_namespace_init => Workload::CPidNs("pidns"),
    network_namespace_loopback => Workload::C("netns_lo"),
    seccomp_filters => Workload::C("seccomp_filters"),
    udp_sockets => Workload::C("udp"),
    netlink_sockets => Workload::C("netlink"),
    packet_sockets => Workload::C("packet"),
    shared_anon_fds => Workload::C("shared_anonfds"),
    tcp_listeners => Workload::C("tcp_listen"),
    tcp_connections => Workload::CWithArgs("tcp_conn", &["--tcp-established"]),
    tcp_half_closed => Workload::CWithArgs("tcp_halfclosed", &["--tcp-established"]),
    raw_sockets => Workload::C("raw"),
    socket_options => Workload::C("sock_opts"),
    deleted_directories => Workload::C("deleted_dirs"),
    deleted_fifo => Workload::C("deleted_fifo"),
    map_prot => Workload::C("map_prot"),
    stopped_child => Workload::C("stopped"),
    sched_per_thread => Workload::C("sched"),
    file_owner => Workload::C("fown"),
    membarrier => Workload::C("membarrier"),
    python3_generator => Workload::Python("generator.py"),
    bash_loop => Workload::Bash("loop.sh"),
    inotify_watches => Workload::C("inotify"),
    fifos => Workload::C("fifo"),
    opath_fds => Workload::C("opath"),
    pgrp_leader_gone => Workload::C("pgrp_gone"),
    pgrp_later_sibling => Workload::C("pgrp_later"),
    sess_setsid_child => Workload::C("sess_setsid"),
    sess_leader_gone => Workload::C("sess_gone"),
    clone_files => Workload::C("clone_files"),
    unix_server_clients => Workload::C("unix_server"),
    unix_cross_process_pair => Workload::C("unix_xpair"),
    unix_dgram => Workload::C("unix_dgram"),
    pgrp_zombie_leader => Workload::C("pgrp_zombie"),
    fdless_children => Workload::C("fdless"),
    pidfds => Workload::C("pidfd"),
    wide_tree => Workload::C("wide_tree"),
    fds_in_flight => Workload::C("scm"),
    deleted_mappings => Workload::C("deleted_maps"),
    memory_generations => Workload::C("memtrack"),
    memory_written_all_the_time => Workload::C("livewriter"),
    pty_pair => Workload::C("pty_pair"),
    pty_cooked => Workload::C("pty_cooked"),
    pty_session => Workload::C("pty_session"),
    pty_hungup => Workload::C("pty_hungup"),
    console_vt => Workload::CNeeds("console_vt", &["/dev/console", "/dev/tty5"]),
}
