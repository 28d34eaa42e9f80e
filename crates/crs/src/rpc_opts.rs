//! `criu_opts`, the options of an RPC request, turned into criu's command-line options
//! ([`CriuArgs`]): a field that stands for an option becomes that option and is checked
//! by the same rule the command line uses ([`criu_cli::check_option`]), so the two cannot
//! disagree about what crs honours. The few fields with no option (the caller's fds, the
//! log, notifications) are read here. Every field is taken or refused by name, never
//! ignored: the struct is destructured without `..`, so a field added to `rpc.proto`
//! does not build until it is decided, and fields unknown to crs's `rpc.proto` are
//! refused by number.
//!
//! As on the command line, an option that does not apply to the request (`leave_running`
//! on a restore, `rst_sibling` on a dump) is taken and has no effect, as in CRIU; a
//! boolean that is false, a list that is empty and a string that is empty ask for
//! nothing and are taken whatever crs supports (runc sets `lazy_pages: false`,
//! `auto_dedup: false`, `empty_ns: 0` in every request).

use std::fmt;
use std::path::PathBuf;

use crs_images::pb::rpc::{Criu_cg_mode, Criu_network_lock_method, Criu_opts, Criu_pre_dump_mode};
use protobuf::EnumOrUnknown;

use crate::criu_cli::{self, CliError, CriuArgs};

/// The request the options came with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dump,
    Restore,
    Check,
}

impl Kind {
    fn command(self) -> &'static str {
        match self {
            Kind::Dump => "dump",
            Kind::Restore => "restore",
            Kind::Check => "check",
        }
    }
}

/// A field crs does not honour (or not with the value given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The `criu_opts` field (`"field 99"` for one unknown to crs).
    pub field: String,
    pub why: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "criu_opts.{}: {}", self.field, self.why)
    }
}

/// Every field refused in one request, in field order.
#[derive(Debug, PartialEq, Eq)]
pub struct RefusedAll(pub Vec<Refused>);

impl fmt::Display for RefusedAll {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl std::error::Error for RefusedAll {}

/// Where a request's images, work directory and log are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dirs {
    /// `/proc/<caller>/fd/<images_dir_fd>`, else `images_dir` (None only for CHECK).
    pub images_dir: Option<PathBuf>,
    /// `/proc/<caller>/fd/<work_dir_fd>`, else the images directory.
    pub work_dir: Option<PathBuf>,
    /// The log file (`log_file` in the work directory, `criu.log` there by default, as
    /// CRIU); None: stderr (`log_to_stderr`, or a CHECK without `log_file`).
    pub log: Option<PathBuf>,
    /// criu's `-v` level (`log_level`, 2 by default).
    pub verbosity: u32,
}

/// Reads where the images, work directory and log of a `kind` request are: the caller's
/// fds are reached through `/proc/<caller>/fd/N`, as CRIU does.
pub fn dirs(o: &Criu_opts, kind: Kind, caller: i32) -> Result<Dirs, Refused> {
    let refuse = |field: &str, why: &str| Refused {
        field: field.into(),
        why: why.into(),
    };
    let fd_path = |fd: i32| PathBuf::from(format!("/proc/{caller}/fd/{fd}"));
    let images_dir = match (o.images_dir_fd(), o.images_dir.as_deref()) {
        (fd, _) if fd >= 0 => Some(fd_path(fd)),
        (-1, Some(dir)) if !dir.is_empty() => Some(PathBuf::from(dir)),
        (-1, _) if kind == Kind::Check => None,
        (-1, _) => {
            return Err(refuse(
                "images_dir_fd",
                "-1 and no images_dir: where are the images?",
            ))
        }
        (fd, _) => return Err(refuse("images_dir_fd", &format!("{fd} is no fd"))),
    };
    let work_dir = match o.work_dir_fd {
        Some(fd) if fd >= 0 => Some(fd_path(fd)),
        Some(fd) => return Err(refuse("work_dir_fd", &format!("{fd} is no fd"))),
        None => images_dir.clone(),
    };
    let to_stderr = o.log_to_stderr == Some(true);
    let log = match o.log_file.as_deref() {
        Some(f) if f.contains('/') => {
            return Err(refuse(
                "log_file",
                "a name in the work directory, without '/' (as CRIU)",
            ))
        }
        _ if to_stderr => None,
        Some(f) if !f.is_empty() => Some(f),
        // CRIU answers CHECK without a log unless one is named.
        _ if kind == Kind::Check => None,
        _ => Some("criu.log"),
    };
    let log = match (log, &work_dir) {
        (Some(name), Some(w)) => Some(w.join(name)),
        (Some(_), None) => {
            return Err(refuse(
                "log_file",
                "needs a work directory: give images_dir_fd, images_dir or work_dir_fd",
            ))
        }
        (None, _) => None,
    };
    Ok(Dirs {
        images_dir,
        work_dir,
        log,
        verbosity: o.log_level().max(0) as u32,
    })
}

/// What a request asks for, as criu's command line would say it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    /// The command and the options the fields stand for (checked by
    /// [`CriuArgs::check_supported`]).
    pub args: CriuArgs,
    /// `notify_scripts`: tell the caller of each action-script point and wait for its
    /// answer.
    pub notify: bool,
}

/// Turns the options of a `kind` request into criu's command line, or refuses every field
/// crs does not honour (all of them, by name). The directories and the log are
/// [`dirs`]'s.
pub fn convert(o: &Criu_opts, kind: Kind) -> Result<Converted, RefusedAll> {
    let mut c = Conv {
        kind,
        args: CriuArgs {
            command: Some(kind.command().to_string()),
            verbosity: o.log_level().max(0) as u32,
            ..CriuArgs::default()
        },
        refused: Vec::new(),
        notify: false,
    };
    let Criu_opts {
        // Read by `dirs`.
        images_dir_fd: _,
        work_dir_fd: _,
        images_dir: _,
        log_level: _,
        log_file: _,
        log_to_stderr: _,
        pid,
        leave_running,
        ext_unix_sk,
        tcp_established,
        evasive_devices,
        shell_job,
        file_locks,
        ps,
        notify_scripts,
        root,
        parent_img,
        track_mem,
        auto_dedup,
        link_remap,
        veths,
        cpu_cap,
        force_irmap,
        exec_cmd,
        ext_mnt,
        manage_cgroups,
        cg_root,
        rst_sibling,
        inherit_fd,
        auto_ext_mnt,
        ext_sharing,
        ext_masters,
        skip_mnt,
        enable_fs,
        unix_sk_ino,
        manage_cgroups_mode,
        ghost_limit,
        irmap_scan_paths,
        external,
        empty_ns,
        join_ns,
        cgroup_props,
        cgroup_props_file,
        cgroup_dump_controller,
        freeze_cgroup,
        timeout,
        tcp_skip_in_flight,
        weak_sysctls,
        lazy_pages,
        status_fd,
        orphan_pts_master,
        config_file,
        tcp_close,
        lsm_profile,
        tls_cacert,
        tls_cacrl,
        tls_cert,
        tls_key,
        tls,
        tls_no_cn_verify,
        cgroup_yard,
        pre_dump_mode,
        pidfd_store_sk,
        lsm_mount_context,
        network_lock,
        mntns_compat_mode,
        skip_file_rwx_check,
        unprivileged,
        leave_stopped,
        display_stats,
        special_fields,
    } = o;

    // The fields crs reads itself.
    match (kind, pid) {
        (Kind::Dump, Some(pid)) => c.opt("pid", "tree", pid.to_string()),
        (Kind::Dump, None) => c.refuse(
            "pid",
            "unset: the caller asks to be dumped itself, which crs does not support",
        ),
        // CRIU reads it only for dumps.
        _ => {}
    }
    if orphan_pts_master == &Some(true) {
        c.refuse(
            "orphan_pts_master",
            "crs does not hand a new pty master to the caller: restore a terminal with shell_job",
        );
    }
    if pidfd_store_sk.is_some() {
        c.refuse(
            "pidfd_store_sk",
            "crs keeps no pidfds between pre-dumps (it does not pre-dump)",
        );
    }

    // The fields that stand for criu's options, in field order.
    c.flag("leave_running", "leave-running", leave_running);
    if ext_unix_sk == &Some(true) {
        c.opt("ext_unix_sk", "ext-unix-sk", String::new());
    }
    c.flag("tcp_established", "tcp-established", tcp_established);
    c.flag("evasive_devices", "evasive-devices", evasive_devices);
    c.flag("shell_job", "shell-job", shell_job);
    c.flag("file_locks", "file-locks", file_locks);
    if let Some(ps) = ps.as_ref() {
        // A dump's page server; CRIU ignores it on a restore without lazy pages, as the
        // command line does.
        c.opt("ps", "page-server", "1".into());
        if let Some(fd) = ps.fd {
            c.opt("ps.fd", "ps-socket", fd.to_string());
        } else {
            if let Some(a) = ps.address.as_deref() {
                c.opt("ps.address", "address", a.to_string());
            }
            if let Some(p) = ps.port {
                c.opt("ps.port", "port", p.to_string());
            }
        }
    }
    if notify_scripts == &Some(true) {
        c.notify = true;
    }
    if let Some(r) = root.as_deref().filter(|r| !r.is_empty()) {
        // `/` is no change of root.
        if std::path::Path::new(r) != std::path::Path::new("/") {
            c.opt("root", "root", r.to_string());
        }
    }
    c.string("parent_img", "prev-images-dir", parent_img);
    c.flag("track_mem", "track-mem", track_mem);
    c.flag("auto_dedup", "auto-dedup", auto_dedup);
    c.flag("link_remap", "link-remap", link_remap);
    for v in veths {
        c.opt(
            "veths",
            "veth-pair",
            format!("{}={}", v.if_in(), v.if_out()),
        );
    }
    if let Some(cap) = cpu_cap {
        c.opt("cpu_cap", "cpu-cap", format!("{cap:#x}"));
    }
    c.flag("force_irmap", "force-irmap", force_irmap);
    if !exec_cmd.is_empty() {
        c.opt("exec_cmd", "exec-cmd", exec_cmd.join(" "));
    }
    for m in ext_mnt {
        c.opt(
            "ext_mnt",
            "ext-mount-map",
            format!("{}:{}", m.key(), m.val()),
        );
    }
    // manage_cgroups_mode overrides manage_cgroups (old clients), as in CRIU.
    match (manage_cgroups_mode, manage_cgroups) {
        (Some(mode), _) => {
            let value = match mode.enum_value() {
                Ok(Criu_cg_mode::IGNORE) => "ignore",
                Ok(Criu_cg_mode::CG_NONE) => "none",
                Ok(Criu_cg_mode::PROPS) => "props",
                Ok(Criu_cg_mode::SOFT) => "soft",
                Ok(Criu_cg_mode::FULL) => "full",
                Ok(Criu_cg_mode::STRICT) => "strict",
                // CRIU's default mode is soft.
                Ok(Criu_cg_mode::DEFAULT) => "soft",
                Err(n) => {
                    c.refuse("manage_cgroups_mode", &format!("unknown mode {n}"));
                    ""
                }
            };
            if !value.is_empty() {
                c.opt("manage_cgroups_mode", "manage-cgroups", value.into());
            }
        }
        (None, Some(on)) => {
            let value = if *on { "soft" } else { "ignore" };
            c.opt("manage_cgroups", "manage-cgroups", value.into());
        }
        (None, None) => {}
    }
    for r in cg_root {
        let value = match r.ctrl.as_deref() {
            Some(ctrl) => format!("{ctrl}:{}", r.path()),
            None => r.path().to_string(),
        };
        c.opt("cg_root", "cgroup-root", value);
    }
    c.flag("rst_sibling", "restore-sibling", rst_sibling);
    for i in inherit_fd {
        c.opt(
            "inherit_fd",
            "inherit-fd",
            format!("fd[{}]:{}", i.fd(), i.key()),
        );
    }
    if auto_ext_mnt == &Some(true) {
        c.opt("auto_ext_mnt", "ext-mount-map", "auto".into());
    }
    c.flag("ext_sharing", "enable-external-sharing", ext_sharing);
    c.flag("ext_masters", "enable-external-masters", ext_masters);
    c.list("skip_mnt", "skip-mnt", skip_mnt);
    c.list("enable_fs", "enable-fs", enable_fs);
    for u in unix_sk_ino {
        c.opt("unix_sk_ino", "ext-unix-sk", u.inode().to_string());
    }
    if let Some(limit) = ghost_limit {
        c.opt("ghost_limit", "ghost-limit", limit.to_string());
    }
    c.list("irmap_scan_paths", "irmap-scan-path", irmap_scan_paths);
    c.list("external", "external", external);
    match empty_ns {
        None | Some(0) => {}
        Some(x) if *x == libc::CLONE_NEWNET as u32 => c.opt("empty_ns", "empty-ns", "net".into()),
        Some(x) => c.refuse(
            "empty_ns",
            &format!("{x:#x}: CRIU takes only CLONE_NEWNET here"),
        ),
    }
    for j in join_ns {
        let mut value = format!("{}:{}", j.ns(), j.ns_file());
        if let Some(extra) = j.extra_opt.as_deref() {
            value = format!("{value},{extra}");
        }
        c.opt("join_ns", "join-ns", value);
    }
    c.string("cgroup_props", "cgroup-props", cgroup_props);
    c.string("cgroup_props_file", "cgroup-props-file", cgroup_props_file);
    c.list(
        "cgroup_dump_controller",
        "cgroup-dump-controller",
        cgroup_dump_controller,
    );
    c.string("freeze_cgroup", "freeze-cgroup", freeze_cgroup);
    if let Some(t) = timeout {
        c.opt("timeout", "timeout", t.to_string());
    }
    c.flag("tcp_skip_in_flight", "skip-in-flight", tcp_skip_in_flight);
    c.flag("weak_sysctls", "weak-sysctls", weak_sysctls);
    if kind == Kind::Restore {
        c.flag("lazy_pages", "lazy-pages", lazy_pages);
    } else if lazy_pages == &Some(true) {
        c.refuse(
            "lazy_pages",
            "crs dump --lazy-pages is not supported yet (crs restore --lazy-pages is)",
        );
    }
    if let Some(fd) = status_fd {
        c.opt("status_fd", "status-fd", fd.to_string());
    }
    c.string("config_file", "config", config_file);
    c.flag("tcp_close", "tcp-close", tcp_close);
    c.string("lsm_profile", "lsm-profile", lsm_profile);
    c.string("tls_cacert", "tls-cacert", tls_cacert);
    c.string("tls_cacrl", "tls-cacrl", tls_cacrl);
    c.string("tls_cert", "tls-cert", tls_cert);
    c.string("tls_key", "tls-key", tls_key);
    c.flag("tls", "tls", tls);
    c.flag("tls_no_cn_verify", "tls-no-cn-verify", tls_no_cn_verify);
    c.string("cgroup_yard", "cgroup-yard", cgroup_yard);
    if let Some(mode) = pre_dump_mode {
        match enum_value(mode) {
            Ok(Criu_pre_dump_mode::SPLICE) => {
                c.opt("pre_dump_mode", "pre-dump-mode", "splice".into())
            }
            Ok(Criu_pre_dump_mode::VM_READ) => {
                c.opt("pre_dump_mode", "pre-dump-mode", "read".into())
            }
            Err(n) => c.refuse("pre_dump_mode", &format!("unknown mode {n}")),
        }
    }
    c.string("lsm_mount_context", "lsm-mount-context", lsm_mount_context);
    if let Some(method) = network_lock {
        match enum_value(method) {
            Ok(Criu_network_lock_method::IPTABLES) => {
                c.opt("network_lock", "network-lock", "iptables".into())
            }
            Ok(Criu_network_lock_method::NFTABLES) => {
                c.opt("network_lock", "network-lock", "nftables".into())
            }
            Ok(Criu_network_lock_method::SKIP) => {
                c.opt("network_lock", "network-lock", "skip".into())
            }
            Err(n) => c.refuse("network_lock", &format!("unknown method {n}")),
        }
    }
    c.flag("mntns_compat_mode", "mntns-compat-mode", mntns_compat_mode);
    c.flag(
        "skip_file_rwx_check",
        "skip-file-rwx-check",
        skip_file_rwx_check,
    );
    c.flag("unprivileged", "unprivileged", unprivileged);
    c.flag("leave_stopped", "leave-stopped", leave_stopped);
    c.flag("display_stats", "display-stats", display_stats);
    if c.kind == Kind::Restore {
        // CRIU's RPC restores detached, always.
        c.args
            .values
            .entry("restore-detached")
            .or_default()
            .push("1".into());
    }

    for f in special_fields.unknown_fields().iter() {
        c.refuse(
            &format!("field {}", f.0),
            "not a field of CRIU 4.2's rpc.proto, unknown to crs",
        );
    }
    if c.refused.is_empty() {
        Ok(Converted {
            args: c.args,
            notify: c.notify,
        })
    } else {
        Err(RefusedAll(c.refused))
    }
}

fn enum_value<E: protobuf::Enum>(v: &EnumOrUnknown<E>) -> Result<E, i32> {
    v.enum_value()
}

/// A conversion under way.
struct Conv {
    kind: Kind,
    args: CriuArgs,
    refused: Vec<Refused>,
    notify: bool,
}

impl Conv {
    fn refuse(&mut self, field: &str, why: &str) {
        self.refused.push(Refused {
            field: field.into(),
            why: why.into(),
        });
    }

    /// Field `field` stands for option `--long` with `value`: taken if the command line
    /// takes it, else refused naming the field and the option.
    fn opt(&mut self, field: &str, long: &'static str, value: String) {
        match criu_cli::check_option(Some(self.kind.command()), long, &value) {
            Ok(()) => self.args.values.entry(long).or_default().push(value),
            Err(CliError::Unsupported(_)) => self.refuse(
                field,
                &format!("crs does not support it yet (criu's --{long})"),
            ),
            Err(e) => self.refuse(field, &e.to_string()),
        }
    }

    /// A boolean that asks for something only when true.
    fn flag(&mut self, field: &str, long: &'static str, v: &Option<bool>) {
        if v == &Some(true) {
            self.opt(field, long, "1".into());
        }
    }

    /// A string that asks for something only when not empty.
    fn string(&mut self, field: &str, long: &'static str, v: &Option<String>) {
        if let Some(s) = v.as_deref().filter(|s| !s.is_empty()) {
            self.opt(field, long, s.to_string());
        }
    }

    /// A list, one option per element.
    fn list(&mut self, field: &str, long: &'static str, v: &[String]) {
        for s in v {
            self.opt(field, long, s.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crs_images::pb::rpc::Criu_page_server_info;
    use protobuf::Message;

    fn dump_opts() -> Criu_opts {
        Criu_opts {
            images_dir_fd: Some(7),
            pid: Some(42),
            ..Default::default()
        }
    }

    #[test]
    fn convert_dump_maps_fields_to_options() {
        let o = Criu_opts {
            leave_running: Some(true),
            shell_job: Some(true),
            file_locks: Some(true),
            log_level: Some(4),
            timeout: Some(3),
            ghost_limit: Some(1 << 21),
            freeze_cgroup: Some("/sys/fs/cgroup/x".into()),
            manage_cgroups: Some(false),
            network_lock: Some(EnumOrUnknown::new(Criu_network_lock_method::SKIP)),
            ..dump_opts()
        };
        let c = convert(&o, Kind::Dump).unwrap();
        let a = &c.args;
        assert_eq!(a.command.as_deref(), Some("dump"));
        assert_eq!(a.value("tree"), Some("42"));
        assert!(a.flag("leave-running") && a.flag("shell-job") && a.flag("file-locks"));
        assert_eq!(a.value("timeout"), Some("3"));
        assert_eq!(a.value("ghost-limit"), Some("2097152"));
        assert_eq!(a.value("freeze-cgroup"), Some("/sys/fs/cgroup/x"));
        assert_eq!(a.value("manage-cgroups"), Some("ignore"));
        assert_eq!(a.value("network-lock"), Some("skip"));
        assert_eq!(a.verbosity, 4);
        assert!(!c.notify);
        a.check_supported().unwrap();
    }

    #[test]
    fn convert_false_and_empty_fields_ask_nothing() {
        // What runc sets in every dump request.
        let o = Criu_opts {
            lazy_pages: Some(false),
            auto_dedup: Some(false),
            track_mem: Some(false),
            empty_ns: Some(0),
            leave_stopped: Some(false),
            tcp_close: Some(false),
            parent_img: Some(String::new()),
            root: Some("/".into()),
            ..dump_opts()
        };
        let c = convert(&o, Kind::Dump).unwrap();
        assert_eq!(c.args.values.keys().collect::<Vec<_>>(), vec![&"tree"]);
    }

    #[test]
    fn convert_refuses_every_unsupported_field_by_name() {
        let o = Criu_opts {
            auto_dedup: Some(true),
            manage_cgroups_mode: Some(EnumOrUnknown::new(Criu_cg_mode::SOFT)),
            external: vec!["mnt[]:m".into()],
            orphan_pts_master: Some(true),
            status_fd: Some(3),
            ..dump_opts()
        };
        let e = convert(&o, Kind::Dump).unwrap_err();
        let fields: Vec<&str> = e.0.iter().map(|r| r.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "orphan_pts_master",
                "auto_dedup",
                "manage_cgroups_mode",
                "external",
                "status_fd"
            ]
        );
        let text = e.to_string();
        assert!(
            text.contains(
                "criu_opts.auto_dedup: crs does not support it yet (criu's --auto-dedup)"
            ),
            "{text}"
        );
        assert!(text.contains("criu_opts.manage_cgroups_mode"), "{text}");
    }

    #[test]
    fn convert_dump_without_pid_is_refused() {
        let o = Criu_opts {
            pid: None,
            ..dump_opts()
        };
        let e = convert(&o, Kind::Dump).unwrap_err();
        assert_eq!(e.0[0].field, "pid");
    }

    #[test]
    fn convert_restore_is_detached_and_takes_sibling() {
        let o = Criu_opts {
            images_dir_fd: Some(5),
            rst_sibling: Some(true),
            notify_scripts: Some(true),
            ..Default::default()
        };
        let c = convert(&o, Kind::Restore).unwrap();
        assert!(c.args.flag("restore-detached") && c.args.flag("restore-sibling"));
        assert!(c.notify);
        c.args.check_supported().unwrap();
    }

    #[test]
    fn convert_page_server_fd_becomes_ps_socket() {
        let o = Criu_opts {
            ps: protobuf::MessageField::some(Criu_page_server_info {
                fd: Some(9),
                ..Default::default()
            }),
            ..dump_opts()
        };
        let c = convert(&o, Kind::Dump).unwrap();
        assert!(c.args.flag("page-server"));
        assert_eq!(c.args.value("ps-socket"), Some("9"));
    }

    #[test]
    fn convert_unknown_field_is_refused_by_number() {
        let mut bytes = dump_opts().write_to_bytes().unwrap();
        // Field 99, varint 1: from a newer client.
        bytes.extend_from_slice(&[0x98, 0x06, 0x01]);
        let o = Criu_opts::parse_from_bytes(&bytes).unwrap();
        let e = convert(&o, Kind::Dump).unwrap_err();
        assert_eq!(e.0[0].field, "field 99");
    }

    #[test]
    fn dirs_use_the_callers_fds_and_criu_log_default() {
        let o = Criu_opts {
            work_dir_fd: Some(8),
            ..dump_opts()
        };
        let d = dirs(&o, Kind::Dump, 1234).unwrap();
        assert_eq!(d.images_dir, Some(PathBuf::from("/proc/1234/fd/7")));
        assert_eq!(d.work_dir, Some(PathBuf::from("/proc/1234/fd/8")));
        assert_eq!(d.log, Some(PathBuf::from("/proc/1234/fd/8/criu.log")));
        assert_eq!(d.verbosity, 2);
        let o = Criu_opts {
            log_file: Some("dump.log".into()),
            ..dump_opts()
        };
        let d = dirs(&o, Kind::Dump, 1234).unwrap();
        assert_eq!(d.log, Some(PathBuf::from("/proc/1234/fd/7/dump.log")));
        let o = Criu_opts {
            log_to_stderr: Some(true),
            ..dump_opts()
        };
        assert_eq!(dirs(&o, Kind::Dump, 1).unwrap().log, None);
    }

    #[test]
    fn dirs_refuse_a_log_path_and_missing_images() {
        let o = Criu_opts {
            log_file: Some("../x.log".into()),
            ..dump_opts()
        };
        assert_eq!(dirs(&o, Kind::Dump, 1).unwrap_err().field, "log_file");
        let o = Criu_opts {
            images_dir_fd: Some(-1),
            ..dump_opts()
        };
        assert_eq!(dirs(&o, Kind::Dump, 1).unwrap_err().field, "images_dir_fd");
        let d = dirs(&o, Kind::Check, 1).unwrap();
        assert_eq!((d.images_dir, d.log), (None, None));
        let o = Criu_opts {
            images_dir_fd: Some(-1),
            images_dir: Some("/srv/img".into()),
            ..dump_opts()
        };
        assert_eq!(
            dirs(&o, Kind::Dump, 1).unwrap().images_dir,
            Some(PathBuf::from("/srv/img"))
        );
    }
}
