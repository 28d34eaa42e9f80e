//! criu's commands.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crs_sys::probe::{self, Named, Probe};

use crate::criu_cli::{CriuArgs, COMMANDS};
use crate::logging;

/// The criu version crs is compatible with, as `criu --version` prints it.
/// runc, podman and LXC parse `Version: X.Y` and compare it to their minimum.
pub const CRIU_VERSION: &str = "4.2";

const USAGE: &str = "\
Usage:
  crs dump -t PID [<options>]
  crs pre-dump -t PID -D DIR [--prev-images-dir PREV]
  crs restore [<options>]
  crs check [--feature FEAT]
  crs page-server -D DIR [--port PORT] [--address ADDR] [--ps-socket FD]
  crs swrk FD         (criu's RPC on an inherited SOCK_SEQPACKET socket)
  crs decode|encode|show|info|x ...   (crit's commands)

Commands:
  dump           checkpoint a process/tree identified by pid
  pre-dump       save the memory only, leave the tree running, track its writes
  restore        restore a process/tree
  check          checks whether the kernel supports what crs needs
  page-server    receive the pages of a dump (`dump --page-server` on the other end)
  swrk           serve criu_req messages (runc, podman, LXC drive criu this way)
  decode/encode  convert images to/from crit's JSON
  show, info, x  look at an image or an image directory

Options are criu's (e.g. -t/--tree, -D/--images-dir, -o/--log-file, -v4,
-R/--leave-running, -d/--restore-detached, -j/--shell-job, --pidfile).
";

pub fn run(a: &CriuArgs) -> ExitCode {
    match run_inner(a) {
        Ok(code) => code,
        Err(e) => {
            // With a log file the error goes there too (runc reads it); without
            // one the log is stderr already, so say it once.
            if a.value("log-file").is_some_and(|f| f != "-") {
                tracing::error!("{e:#}");
            }
            eprintln!("crs: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run_inner(a: &CriuArgs) -> Result<ExitCode> {
    if a.flag("version") {
        println!("Version: {CRIU_VERSION}");
        println!("GitID: crs-{}", env!("CARGO_PKG_VERSION"));
        return Ok(ExitCode::SUCCESS);
    }
    if a.flag("help") {
        print!("{USAGE}");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(cmd) = a.command.as_deref() else {
        eprint!("{USAGE}");
        bail!("a command is needed");
    };
    if !COMMANDS.contains(&cmd) {
        bail!("unknown command {cmd:?}");
    }
    if cmd == "swrk" {
        // Options come in each request, with their own log.
        return crate::rpc::swrk(a);
    }
    let images_dir = a.value("images-dir").map(PathBuf::from);
    let work_dir = a
        .value("work-dir")
        .map(PathBuf::from)
        .or_else(|| images_dir.clone());
    let log = logging::log_path(a.value("log-file"), work_dir.as_deref());
    logging::init(a.verbosity, log.as_deref())?;
    // After the log is set up: a refused option is then in the log too, where tools that
    // drive criu (zdtm, runc) look for the reason.
    a.check_supported()?;
    match cmd {
        "check" => check(a),
        "dump" => guarded(|| dump(a, images_dir, &|_| Ok(()))).map(|_| ExitCode::SUCCESS),
        "pre-dump" => guarded(|| pre_dump(a, images_dir)).map(|_| ExitCode::SUCCESS),
        "restore" => {
            let restored = guarded(|| restore(a, images_dir, &|_| Ok(())))?;
            match restored.exit_status {
                Some(code) => Ok(ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1))),
                None => Ok(ExitCode::SUCCESS),
            }
        }
        "page-server" => page_server(a, images_dir),
        other => bail!("the {other} command is not supported by crs yet"),
    }
}

/// Runs a dump or restore under a guardian that undoes crs's changes to the tree if crs
/// dies holding it (see `crs_compel::guard`): a fork of crs while it has one thread, else
/// this binary again, as `crs __guardian <pid>`. One per crs process.
pub fn guarded<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    if let Err(e) = crs_compel::guard::start(Some(Path::new("/proc/self/exe"))) {
        tracing::warn!("{e:#}: crs's changes to the tree cannot be undone if crs dies");
    }
    let r = work();
    // A dump or restore that did not put everything back (or commit it) itself leaves the
    // rest to the guardian, which is done when this returns.
    crs_compel::guard::abandon();
    r
}

fn images_dir_or_cwd(dir: Option<PathBuf>) -> Result<PathBuf> {
    match dir {
        Some(d) => Ok(d),
        None => {
            std::env::current_dir().context("no -D given and the current directory is unreadable")
        }
    }
}

/// CRIU 4.2's `check --feature` names, each with the probe that answers it. Like CRIU,
/// crs answers for the kernel (see `crs_sys::probe`), not for what crs implements: tools
/// that choose what to run by the answer (CRIU's zdtm picks tests and flavours this way)
/// then run what the kernel allows, and those tests pass or fail on their merits. The
/// names that are about CRIU's own build or tools are answered by what crs would use
/// (`nftables`, `network_lock_nftables`, `has_ipt_legacy`) or does (`external_net_ns`).
const CRIU_FEATURES: &[Named] = &[
    ("mnt_id", probe::mnt_id),
    ("mem_dirty_track", probe::mem_dirty_track),
    ("aio_remap", probe::aio_remap),
    ("timerfd", probe::timerfd),
    ("tun", probe::tun),
    ("tun_ns", probe::tun_ns),
    ("userns", probe::userns),
    ("fdinfo_lock", probe::fdinfo_lock),
    ("seccomp_suspend", probe::seccomp_suspend),
    ("seccomp_filters", probe::seccomp_filters),
    ("loginuid", probe::loginuid),
    ("cgroupns", probe::cgroupns),
    ("autofs", probe::autofs),
    ("tcp_half_closed", probe::tcp_half_closed),
    ("compat_cr", probe::compat_cr),
    ("uffd", probe::uffd),
    ("uffd-noncoop", probe::uffd_noncoop),
    ("can_map_vdso", probe::can_map_vdso),
    ("sk_ns", probe::sk_ns),
    ("sk_unix_file", probe::sk_unix_file),
    ("net_diag_raw", probe::net_diag_raw),
    ("nsid", probe::nsid),
    ("link_nsid", probe::link_nsid),
    ("kcmp_epoll", probe::kcmp_epoll),
    ("timens", probe::timens),
    ("external_net_ns", external_net_ns),
    ("clone3_set_tid", probe::clone3_set_tid),
    ("newifindex", probe::newifindex),
    ("nftables", probe::nftables),
    ("has_ipt_legacy", probe::ipt_legacy),
    ("pidfd_store", probe::pidfd_store),
    ("ns_pid", probe::ns_pid),
    ("apparmor_stacking", probe::apparmor_stacking),
    ("network_lock_nftables", probe::network_lock_nftables),
    ("sockopt_buf_lock", probe::sockopt_buf_lock),
    ("memfd_hugetlb", probe::memfd_hugetlb),
    ("move_mount_set_group", probe::move_mount_set_group),
    ("openat2", probe::openat2),
    ("get_rseq_conf", probe::get_rseq_conf),
    ("ipv6_freebind", probe::ipv6_freebind),
    ("pagemap_scan", probe::pagemap_scan),
    ("timer_cr_ids", probe::timer_cr_ids),
    ("overlayfs_maps", probe::overlayfs_maps),
    ("breakpoints", probe::breakpoints),
    ("pagemap_scan_guard_pages", probe::pagemap_scan_guard_pages),
];

/// `external_net_ns` asks whether the C/R program takes `--external net[...]` (CRIU
/// answers yes for itself; there is no kernel side), so crs answers for crs: it takes
/// `--external veth[...]` only.
fn external_net_ns() -> Probe {
    Probe::Absent("crs takes --external veth[IFNAME]:OUTNAME[@BRIDGE] only, not net[...]".into())
}

/// The features `crs check` without `--feature` requires that the kernel lacks, each with
/// why.
pub fn missing_required() -> Vec<(&'static str, String)> {
    probe::REQUIRED
        .iter()
        .filter_map(|(name, probe)| match probe() {
            Probe::Absent(why) => Some((*name, why)),
            Probe::Present => None,
        })
        .collect()
}

fn check(a: &CriuArgs) -> Result<ExitCode> {
    let wanted: Vec<&str> = a.all("feature").iter().map(String::as_str).collect();
    let names = |t: &[Named]| t.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
    let find = |w: &str| {
        CRIU_FEATURES
            .iter()
            .chain(probe::REQUIRED)
            .find(|(n, _)| *n == w)
            .copied()
    };
    let asked: Vec<Named> = if wanted.is_empty() {
        probe::REQUIRED.to_vec()
    } else {
        let mut asked = Vec::new();
        for w in &wanted {
            match find(w) {
                Some(f) => asked.push(f),
                None => bail!(
                    "unknown feature {w:?}; known: {}, and criu's: {}",
                    names(probe::REQUIRED),
                    names(CRIU_FEATURES)
                ),
            }
        }
        asked
    };
    let mut bad = 0;
    for (name, probe) in asked {
        match probe() {
            Probe::Absent(why) => {
                eprintln!("Error: {name} is not supported: {why}");
                bad += 1;
            }
            Probe::Present if !wanted.is_empty() => println!("{name} is supported"),
            Probe::Present => {}
        }
    }
    if bad > 0 {
        return Ok(ExitCode::from(1));
    }
    if wanted.is_empty() {
        println!("Looks good.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `--page-server` of a dump: the connection to the server, from `--ps-socket FD` or
/// `--address A --port P`.
fn page_server_link(a: &CriuArgs) -> Result<Option<crs_dump::PageServerLink>> {
    if !a.flag("page-server") {
        for o in ["address", "port", "ps-socket"] {
            if a.value(o).is_some() {
                bail!("--{o} is for a page server: give --page-server too");
            }
        }
        return Ok(None);
    }
    let link = if let Some(fd) = a.int::<i32>("ps-socket")? {
        let socket = crs_sys::inherited::dup_inherited(fd)
            .with_context(|| format!("--ps-socket {fd}: not an open file descriptor"))?;
        crs_dump::PageServerLink {
            socket: std::sync::Arc::new(socket),
            passed_in: true,
        }
    } else {
        let addr = a
            .value("address")
            .ok_or_else(|| anyhow::anyhow!("--page-server needs --address (or --ps-socket)"))?;
        let port: u16 = a
            .int("port")?
            .ok_or_else(|| anyhow::anyhow!("--page-server needs --port (or --ps-socket)"))?;
        let sk = std::net::TcpStream::connect((addr, port))
            .with_context(|| format!("connecting to the page server at {addr}:{port}"))?;
        sk.set_nodelay(true)
            .context("TCP_NODELAY on the page server connection")?;
        crs_dump::PageServerLink {
            socket: std::sync::Arc::new(sk.into()),
            passed_in: false,
        }
    };
    Ok(Some(link))
}

/// `crs page-server -D DIR`: receives the pages of one dump (crs's or CRIU's) into DIR, on
/// `--ps-socket FD` or on a TCP connection it accepts at `--address` (default all) and
/// `--port` (0: any free port, logged). `--status-fd FD` gets one zero byte once it
/// listens.
fn page_server(a: &CriuArgs, images_dir: Option<PathBuf>) -> Result<ExitCode> {
    let dir = images_dir_or_cwd(images_dir)?;
    if a.flag("daemon") {
        bail!("crs page-server --daemon is not supported yet: run it in the background");
    }
    let status = a
        .int::<i32>("status-fd")?
        .map(|fd| {
            crs_sys::inherited::dup_inherited(fd)
                .with_context(|| format!("--status-fd {fd}: not an open file descriptor"))
        })
        .transpose()?;
    let ready = |status: Option<std::os::fd::OwnedFd>| -> Result<()> {
        if let Some(fd) = status {
            let mut f = std::fs::File::from(fd);
            std::io::Write::write_all(&mut f, &[0]).context("writing to --status-fd")?;
        }
        Ok(())
    };
    let served = if let Some(fd) = a.int::<i32>("ps-socket")? {
        let sk = crs_sys::inherited::dup_inherited(fd)
            .with_context(|| format!("--ps-socket {fd}: not an open file descriptor"))?;
        ready(status)?;
        let mut sk = std::os::unix::net::UnixStream::from(sk);
        crs_dump::page_server::serve(&dir, &mut sk, true)?
    } else {
        let addr = a.value("address").unwrap_or("0.0.0.0");
        let port: u16 = a.int("port")?.unwrap_or(0);
        let listener = std::net::TcpListener::bind((addr, port))
            .with_context(|| format!("binding the page server to {addr}:{port}"))?;
        let port = listener
            .local_addr()
            .context("the page server's address")?
            .port();
        tracing::info!("Using {port} port");
        if let Some(p) = a.value("pidfile") {
            write_pidfile(Path::new(p), std::process::id() as i32)?;
        }
        ready(status)?;
        let (mut sk, peer) = listener.accept().context("accepting a dumper")?;
        drop(listener);
        tracing::info!(%peer, "a dumper connected");
        sk.set_nodelay(true)
            .context("TCP_NODELAY on the page server connection")?;
        crs_dump::page_server::serve(&dir, &mut sk, false)?
    };
    tracing::info!(
        pagemaps = served.pagemaps,
        pages = served.pages,
        "page server done"
    );
    Ok(ExitCode::SUCCESS)
}

fn write_pidfile(path: &Path, pid: i32) -> Result<()> {
    std::fs::write(path, format!("{pid}"))
        .with_context(|| format!("writing pidfile {}", path.display()))
}

/// The dump's options from criu's (the command line's, or those an RPC request stands
/// for).
fn dump_options(a: &CriuArgs, images_dir: Option<PathBuf>) -> Result<crs_dump::DumpOptions> {
    let pid: i32 = a
        .int("tree")?
        .ok_or_else(|| anyhow::anyhow!("dump needs the pid of the tree's root: -t PID"))?;
    let timeout = a.int::<u64>("timeout")?.unwrap_or(10);
    if a.flag("lazy-pages") {
        bail!(
            "crs dump --lazy-pages is not supported yet (a dump's images restore lazily \
             with `crs restore --lazy-pages`)"
        );
    }
    let ghost_limit = match a.value("ghost-limit") {
        Some(v) => crate::criu_cli::parse_size(v)
            .ok_or_else(|| anyhow::anyhow!("--ghost-limit {v:?}: not a size"))?,
        None => crs_dump::DumpOptions::new(pid, "").ghost_limit,
    };
    let page_server = page_server_link(a)?;
    Ok(crs_dump::DumpOptions {
        pid,
        images_dir: images_dir_or_cwd(images_dir)?,
        leave_running: a.flag("leave-running"),
        shell_job: a.flag("shell-job"),
        file_locks: a.flag("file-locks"),
        tcp_established: a.flag("tcp-established"),
        tcp_close: a.flag("tcp-close"),
        skip_in_flight: a.flag("skip-in-flight"),
        network_lock: match a.value("network-lock") {
            Some("iptables") => crs_dump::NetworkLock::Iptables,
            Some("skip") => crs_dump::NetworkLock::Skip,
            _ => crs_dump::NetworkLock::Nftables,
        },
        ext_unix_sk: a.values.contains_key("ext-unix-sk"),
        freeze_cgroup: a.value("freeze-cgroup").map(PathBuf::from),
        timeout: Duration::from_secs(timeout),
        // Hidden switch, not a criu option: `CRS_IMAGE_CHECKSUMS=0` writes no
        // crs-checksums (the bench's same-run baseline for what checksums cost).
        // With a page server the set is split across two hosts: no crs-checksums, whose
        // list the pages received elsewhere would not match.
        image_checksums: page_server.is_none()
            && std::env::var_os("CRS_IMAGE_CHECKSUMS").is_none_or(|v| v != "0"),
        page_server,
        ghost_limit,
        prev_images_dir: a.value("prev-images-dir").map(PathBuf::from),
        track_mem: a.flag("track-mem"),
        live: a.flag("live"),
        empty_ns_net: empty_ns_net(a)?,
    })
}

/// Every `--inherit-fd fd[N]:KEY`, as (N, KEY).
fn inherit_fds(a: &CriuArgs) -> Result<Vec<(i32, String)>> {
    let mut out = Vec::new();
    for v in a.values.get("inherit-fd").into_iter().flatten() {
        let parsed = v.strip_prefix("fd[").and_then(|rest| {
            let (n, key) = rest.split_once("]:")?;
            Some((n.parse::<i32>().ok()?, key))
        });
        match parsed {
            Some((n, key)) if n >= 0 && !key.is_empty() => out.push((n, key.to_string())),
            _ => bail!("--inherit-fd {v:?}: want fd[N]:KEY"),
        }
    }
    Ok(out)
}

/// `--empty-ns net` (the only kind CRIU takes).
fn empty_ns_net(a: &CriuArgs) -> Result<bool> {
    match a.value("empty-ns") {
        None => Ok(false),
        Some("net") => Ok(true),
        Some(v) => bail!("--empty-ns {v:?}: only `net` is supported (as by criu)"),
    }
}

/// `crs pre-dump`: the memory only, the tree left running, its writes tracked (see
/// `crs_dump::pre_dump`).
fn pre_dump(a: &CriuArgs, images_dir: Option<PathBuf>) -> Result<crs_dump::DumpStats> {
    let mut opts = dump_options(a, images_dir)?;
    // A pre-dump always tracks, as CRIU's does.
    opts.track_mem = true;
    if opts.live {
        bail!("--live is for `dump -R` (the tree runs on while its pages are copied)");
    }
    if opts.page_server.is_some() {
        bail!("crs pre-dump --page-server is not supported yet");
    }
    let stats = crs_dump::pre_dump(&opts)?;
    tracing::info!("Pre-dumping finished successfully");
    if a.flag("display-stats") {
        println!("Pages written: {}", stats.pages_written);
        println!("Pages in the parent images: {}", stats.pages_skipped_parent);
    }
    Ok(stats)
}

/// `crs dump`, telling `notify` of each stage (the RPC service's notify_scripts).
pub fn dump(
    a: &CriuArgs,
    images_dir: Option<PathBuf>,
    notify: crs_dump::Notify<'_>,
) -> Result<crs_dump::DumpStats> {
    let opts = dump_options(a, images_dir)?;
    if opts.live && !opts.leave_running {
        bail!("--live is for `dump -R` (the tree runs on while its pages are copied)");
    }
    let stats = crs_dump::dump_notified(&opts, notify)?;
    tracing::info!("Dumping finished successfully");
    if a.flag("display-stats") {
        println!("Displaying dump stats:");
        println!("Freezing time: {} us", stats.frozen_time.as_micros());
        println!("Memory dump time: {} us", stats.memdump_time.as_micros());
        println!("Memory write time: {} us", stats.memwrite_time.as_micros());
        println!("Pages scanned: {}", stats.pages_scanned);
        println!("Pages written: {}", stats.pages_written);
    }
    Ok(stats)
}

/// The restore's options from criu's.
fn restore_options(
    a: &CriuArgs,
    images_dir: Option<PathBuf>,
) -> Result<crs_restore::RestoreOptions> {
    let detach = a.flag("restore-detached") || a.flag("daemon");
    Ok(crs_restore::RestoreOptions {
        images_dir: images_dir_or_cwd(images_dir)?,
        detach,
        shell_job: a.flag("shell-job"),
        pidfile: a.value("pidfile").map(PathBuf::from),
        file_locks: a.flag("file-locks"),
        tcp_established: a.flag("tcp-established"),
        tcp_close: a.flag("tcp-close"),
        external: a.all("external").to_vec(),
        ext_unix_sk: a.values.contains_key("ext-unix-sk"),
        lazy_pages: a.flag("lazy-pages"),
        sibling: a.flag("restore-sibling"),
        empty_ns_net: empty_ns_net(a)?,
        inherit_fds: inherit_fds(a)?,
    })
}

/// `crs restore`, telling `notify` of each stage (the RPC service's notify_scripts).
pub fn restore(
    a: &CriuArgs,
    images_dir: Option<PathBuf>,
    notify: crs_restore::Notify<'_>,
) -> Result<crs_restore::Restored> {
    let opts = restore_options(a, images_dir)?;
    let (restored, _) = crs_restore::restore_notified(&opts, notify)?;
    if let Some(p) = &opts.pidfile {
        // The restorer may already have written it; writing the same pid again is harmless.
        write_pidfile(p, restored.root_pid)?;
    }
    tracing::info!(
        "Restore finished successfully, root pid {}",
        restored.root_pid
    );
    Ok(restored)
}
