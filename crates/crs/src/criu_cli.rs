//! criu's command line: `crs [OPTIONS] COMMAND [OPTIONS]` with criu 4.2's option
//! names, parsed with getopt_long's rules (options before or after the command,
//! `-t PID`/`-tPID`, `--tree=PID`/`--tree PID`, optional arguments only attached:
//! `-v4`, `--verbosity=4`; repeated `-v` raises the level; `--no-X` clears a
//! boolean option). Options that crs does not implement yet are recognised by
//! name and refused with a clear error, never ignored.

use std::collections::BTreeMap;
use std::fmt;

/// How an option takes its argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arg {
    None,
    Required,
    Optional,
}

/// One criu option: long name, short letter, argument kind, whether it is a
/// BOOL_OPT (has a `no-` twin), and whether crs implements it.
struct Spec {
    long: &'static str,
    short: Option<char>,
    arg: Arg,
    boolean: bool,
    supported: bool,
}

const fn o(
    long: &'static str,
    short: Option<char>,
    arg: Arg,
    boolean: bool,
    supported: bool,
) -> Spec {
    Spec {
        long,
        short,
        arg,
        boolean,
        supported,
    }
}

use Arg::{None as N, Optional as O, Required as R};

/// criu 4.2's options (criu/config.c).
const SPECS: &[Spec] = &[
    o("tree", Some('t'), R, false, true),
    // crs's own (not criu's): `dump -R --live`, see crs_dump::DumpOptions::live.
    o("live", None, N, false, true),
    o("leave-stopped", Some('s'), N, false, false),
    o("leave-running", Some('R'), N, false, true),
    o("restore-detached", Some('d'), N, true, true),
    o("restore-sibling", Some('S'), N, true, true),
    o("daemon", None, N, true, true),
    o("images-dir", Some('D'), R, false, true),
    o("work-dir", Some('W'), R, false, true),
    o("log-file", Some('o'), R, false, true),
    o("join-ns", Some('J'), R, false, false),
    o("root", Some('r'), R, false, false),
    o("help", Some('h'), N, false, true),
    o("tcp-established", None, N, true, true),
    o("ext-unix-sk", Some('x'), O, false, true),
    o("close", None, R, false, false),
    o("log-pid", None, N, true, false),
    o("version", Some('V'), N, false, true),
    o("evasive-devices", None, N, true, false),
    o("pidfile", None, R, false, true),
    o("veth-pair", None, R, false, false),
    o("action-script", None, R, false, false),
    o("link-remap", None, N, true, false),
    o("shell-job", Some('j'), N, true, true),
    o("file-locks", Some('l'), N, true, true),
    o("page-server", None, N, true, true),
    o("address", None, R, false, true),
    o("port", None, R, false, true),
    o("prev-images-dir", None, R, false, true),
    o("ms", None, N, false, false),
    o("track-mem", None, N, true, true),
    o("auto-dedup", None, N, true, false),
    o("libdir", Some('L'), R, false, false),
    o("cpu-cap", None, O, false, true),
    o("force-irmap", None, N, true, false),
    o("ext-mount-map", Some('M'), R, false, false),
    o("exec-cmd", None, N, false, false),
    o("manage-cgroups", None, O, false, true),
    o("cgroup-root", None, R, false, false),
    o("inherit-fd", None, R, false, true),
    o("feature", None, R, false, true),
    o("skip-mnt", None, R, false, false),
    o("enable-fs", None, R, false, false),
    o("enable-external-sharing", None, N, false, false),
    o("enable-external-masters", None, N, false, false),
    o("freeze-cgroup", None, R, false, true),
    o("ghost-limit", None, R, false, true),
    o("irmap-scan-path", None, R, false, false),
    o("lsm-profile", None, R, false, false),
    o("timeout", None, R, false, true),
    o("external", None, R, false, true),
    o("empty-ns", None, R, false, true),
    o("lazy-pages", None, N, false, true),
    o("extra", None, N, true, true),
    o("experimental", None, N, true, true),
    o("all", None, N, false, true),
    o("cgroup-props", None, R, false, false),
    o("cgroup-props-file", None, R, false, false),
    o("cgroup-dump-controller", None, R, false, false),
    o("skip-in-flight", None, N, true, true),
    o("deprecated", None, N, true, true),
    o("display-stats", None, N, true, true),
    o("weak-sysctls", None, N, true, false),
    o("status-fd", None, R, false, true),
    o("tcp-close", None, N, true, true),
    o("verbosity", Some('v'), O, false, true),
    o("ps-socket", None, R, false, true),
    o("stream", None, N, true, false),
    o("config", None, R, false, false),
    o("no-default-config", None, N, false, true),
    o("tls-cacert", None, R, false, false),
    o("tls-cacrl", None, R, false, false),
    o("tls-cert", None, R, false, false),
    o("tls-key", None, R, false, false),
    o("tls", None, N, true, false),
    o("tls-no-cn-verify", None, N, false, false),
    o("cgroup-yard", None, R, false, false),
    o("pre-dump-mode", None, R, false, true),
    o("file-validation", None, R, false, true),
    o("skip-file-rwx-check", None, N, true, true),
    o("lsm-mount-context", None, R, false, false),
    o("network-lock", None, R, false, true),
    o("mntns-compat-mode", None, N, true, false),
    o("unprivileged", None, N, true, false),
    o("ghost-fiemap", None, N, true, false),
    o("allow-uprobes", None, N, true, false),
];

/// criu's commands.
pub const COMMANDS: &[&str] = &[
    "dump",
    "pre-dump",
    "restore",
    "show",
    "check",
    "page-server",
    "service",
    "swrk",
    "dedup",
    "lazy-pages",
    "cpuinfo",
    "exec",
];

/// A parsed criu command line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CriuArgs {
    /// The command (`dump`, `restore`, ...), if one was given.
    pub command: Option<String>,
    /// Arguments after the command that are not options (e.g. `swrk 3`).
    pub operands: Vec<String>,
    /// Option values by long name; flags have `"1"` (or `"0"` for `--no-X`).
    /// Options given several times keep every value, in order.
    pub values: BTreeMap<&'static str, Vec<String>>,
    /// The verbosity level (criu's default is 2).
    pub verbosity: u32,
}

/// A command line criu would refuse, or one crs cannot honour yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CliError {
    Unknown(String),
    MissingArgument(String),
    UnexpectedArgument(String),
    Unsupported(String),
    /// Supported, but not with this value (or not for this command).
    Refused {
        option: String,
        value: String,
        why: &'static str,
    },
    BadValue {
        option: String,
        value: String,
        what: &'static str,
    },
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Unknown(o) => write!(f, "unknown option {o}"),
            CliError::MissingArgument(o) => write!(f, "option {o} requires an argument"),
            CliError::UnexpectedArgument(o) => write!(f, "option {o} takes no argument"),
            CliError::Unsupported(o) => write!(
                f,
                "option --{o} is a criu option that crs does not support yet"
            ),
            CliError::Refused { option, value, why } if value.is_empty() => {
                write!(f, "option --{option}: {why}")
            }
            CliError::Refused { option, value, why } => {
                write!(f, "option --{option} {value:?}: {why}")
            }
            CliError::BadValue {
                option,
                value,
                what,
            } => write!(f, "--{option} {value:?}: {what}"),
        }
    }
}

impl std::error::Error for CliError {}

impl CriuArgs {
    /// Whether a flag option is set (last occurrence wins, `--no-X` clears it).
    pub fn flag(&self, long: &str) -> bool {
        self.values
            .get(long)
            .and_then(|v| v.last())
            .is_some_and(|v| v != "0")
    }

    /// The last value of an option.
    pub fn value(&self, long: &str) -> Option<&str> {
        self.values
            .get(long)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Every value of a repeatable option.
    pub fn all(&self, long: &str) -> &[String] {
        self.values.get(long).map_or(&[], Vec::as_slice)
    }

    /// An integer option.
    pub fn int<T: std::str::FromStr>(&self, long: &'static str) -> Result<Option<T>, CliError> {
        self.value(long)
            .map(|v| {
                v.parse().map_err(|_| CliError::BadValue {
                    option: long.to_string(),
                    value: v.to_string(),
                    what: "not a number",
                })
            })
            .transpose()
    }

    /// Refuses every option given that crs does not implement, or not with the value
    /// given (see [`check_option`]).
    pub fn check_supported(&self) -> Result<(), CliError> {
        for (name, values) in &self.values {
            // A `--no-X` of an unsupported boolean asks for the default: harmless. The
            // last occurrence of a boolean is the one that counts.
            let spec = SPECS.iter().find(|s| s.long == *name);
            let values = match spec {
                Some(s) if s.boolean => &values[values.len().saturating_sub(1)..],
                _ => &values[..],
            };
            for v in values {
                check_option(self.command.as_deref(), name, v)?;
            }
        }
        Ok(())
    }
}

/// Whether crs takes criu's option `--long` with `value` (`"1"`/`"0"` for a flag) for
/// `command`: what the command line checks for every option it is given, and the RPC
/// service for every `criu_opts` field that stands for an option, so that the two cannot
/// disagree.
pub fn check_option(command: Option<&str>, long: &str, value: &str) -> Result<(), CliError> {
    let spec = SPECS
        .iter()
        .find(|s| s.long == long)
        .ok_or_else(|| CliError::Unknown(format!("--{long}")))?;
    if !spec.supported {
        if spec.boolean && value == "0" {
            return Ok(());
        }
        return Err(CliError::Unsupported(long.to_string()));
    }
    let refuse = |why| {
        Err(CliError::Refused {
            option: long.to_string(),
            value: value.to_string(),
            why,
        })
    };
    match long {
        // The outside peers of a network namespace's veth devices; crs knows no other kind
        // of external resource yet.
        "external" if crs_restore::parse_external_veth(value).is_none() => refuse(
            "crs takes --external veth[IFNAME]:OUTNAME[@BRIDGE] only (the outside peer of a \
             veth device of the tree's network namespace)",
        ),
        // It only shapes pre-dumps (which crs refuses); a dump takes it and ignores it.
        "pre-dump-mode" if value != "splice" && value != "read" => refuse("must be splice or read"),
        // crs neither dumps nor restores cgroups: CRIU's `ignore` mode. Without a value
        // criu means `soft`.
        "manage-cgroups" if value != "ignore" => refuse(
            "crs neither dumps nor restores cgroups: only --manage-cgroups=ignore is supported",
        ),
        // crs dumps no network namespace and no TCP connection, so there is nothing for
        // any method to lock: each is honoured by doing nothing, as CRIU does for such a tree.
        "network-lock" if !matches!(value, "iptables" | "nftables" | "skip") => {
            refuse("must be iptables, nftables or skip")
        }
        "status-fd" if command != Some("page-server") => {
            refuse("is supported by crs for page-server only")
        }
        "ghost-limit" if parse_size(value).is_none() => {
            refuse("not a size (a number, optionally with K, M or G)")
        }
        _ => Ok(()),
    }
}

/// criu's sizes (`--ghost-limit`): a number of bytes, or of KiB, MiB or GiB when the
/// value holds a `K`, `M` or `G` after its digits.
pub fn parse_size(value: &str) -> Option<u64> {
    let digits = value.trim_end_matches(['K', 'M', 'G']);
    let n: u64 = digits.parse().ok()?;
    let shift = match &value[digits.len()..] {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

fn find_long(name: &str) -> Option<(&'static Spec, bool)> {
    if let Some(s) = SPECS.iter().find(|s| s.long == name) {
        return Some((s, true));
    }
    let base = name.strip_prefix("no-")?;
    SPECS
        .iter()
        .find(|s| s.long == base && s.boolean)
        .map(|s| (s, false))
}

/// Parses criu's command line (without the program name).
pub fn parse(args: &[String]) -> Result<CriuArgs, CliError> {
    let mut out = CriuArgs {
        verbosity: 2,
        ..Default::default()
    };
    let mut i = 0;
    let mut only_operands = false;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if only_operands || a == "-" || !a.starts_with('-') {
            if out.command.is_none() {
                out.command = Some(a.clone());
            } else {
                out.operands.push(a.clone());
            }
            continue;
        }
        if a == "--" {
            only_operands = true;
            continue;
        }
        if let Some(long) = a.strip_prefix("--") {
            let (name, attached) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let (spec, positive) =
                find_long(name).ok_or_else(|| CliError::Unknown(format!("--{name}")))?;
            let value = match spec.arg {
                Arg::None => {
                    if attached.is_some() {
                        return Err(CliError::UnexpectedArgument(format!("--{name}")));
                    }
                    if positive { "1" } else { "0" }.to_string()
                }
                Arg::Optional => attached.unwrap_or_default(),
                Arg::Required => match attached {
                    Some(v) => v,
                    None => {
                        let v = args
                            .get(i)
                            .ok_or_else(|| CliError::MissingArgument(format!("--{name}")))?;
                        i += 1;
                        v.clone()
                    }
                },
            };
            record(&mut out, spec, value)?;
            continue;
        }
        // A cluster of short options: -dR, -t123, -v4, -vvv.
        let chars: Vec<char> = a[1..].chars().collect();
        let mut j = 0;
        while j < chars.len() {
            let c = chars[j];
            j += 1;
            let spec = SPECS
                .iter()
                .find(|s| s.short == Some(c))
                .ok_or_else(|| CliError::Unknown(format!("-{c}")))?;
            let rest: String = chars[j..].iter().collect();
            let value = match spec.arg {
                Arg::None => "1".to_string(),
                Arg::Optional => {
                    j = chars.len();
                    rest
                }
                Arg::Required => {
                    j = chars.len();
                    if !rest.is_empty() {
                        rest
                    } else {
                        let v = args
                            .get(i)
                            .ok_or_else(|| CliError::MissingArgument(format!("-{c}")))?;
                        i += 1;
                        v.clone()
                    }
                }
            };
            record(&mut out, spec, value)?;
        }
    }
    Ok(out)
}

fn record(out: &mut CriuArgs, spec: &'static Spec, value: String) -> Result<(), CliError> {
    if spec.long == "verbosity" {
        if value.is_empty() {
            out.verbosity += 1;
        } else if value.starts_with('v') {
            // -vvv arrives as -v with "vv" attached (criu counts the characters)
            out.verbosity += 1 + value.len() as u32;
        } else {
            // criu reads the level with atoi(): leading digits, anything else is 0. zdtm
            // relies on it: its "-verbosity=0" is -v with "erbosity=0" attached.
            let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
            out.verbosity = digits.parse().unwrap_or(0);
        }
    }
    out.values.entry(spec.long).or_default().push(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<CriuArgs, CliError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn parse_dump_short_and_long_forms_ok() {
        let a = p("dump -t 42 -D /tmp/d -o dump.log -v4 --leave-running").unwrap();
        assert_eq!(a.command.as_deref(), Some("dump"));
        assert_eq!(a.value("tree"), Some("42"));
        assert_eq!(a.value("images-dir"), Some("/tmp/d"));
        assert_eq!(a.value("log-file"), Some("dump.log"));
        assert_eq!(a.verbosity, 4);
        assert!(a.flag("leave-running"));
    }

    #[test]
    fn parse_options_before_command_and_attached_values_ok() {
        let a = p("-t42 --images-dir=/d -vvv restore -dj").unwrap();
        assert_eq!(a.command.as_deref(), Some("restore"));
        assert_eq!(a.value("tree"), Some("42"));
        assert_eq!(a.value("images-dir"), Some("/d"));
        assert_eq!(a.verbosity, 5);
        assert!(a.flag("restore-detached") && a.flag("shell-job"));
    }

    #[test]
    fn parse_verbosity_reads_level_like_atoi() {
        // zdtm passes "-verbosity=0": -v with "erbosity=0" attached, level 0 for criu.
        assert_eq!(p("check -verbosity=0").unwrap().verbosity, 0);
        assert_eq!(p("check --verbosity=3").unwrap().verbosity, 3);
        assert_eq!(p("check -v4x").unwrap().verbosity, 4);
        assert_eq!(p("check -v").unwrap().verbosity, 3);
    }

    #[test]
    fn parse_no_prefix_clears_boolean() {
        let a = p("dump --shell-job --no-shell-job").unwrap();
        assert!(!a.flag("shell-job"));
    }

    #[test]
    fn parse_unknown_option_errors() {
        assert_eq!(
            p("dump --frobnicate").unwrap_err(),
            CliError::Unknown("--frobnicate".into())
        );
        assert_eq!(p("dump -q").unwrap_err(), CliError::Unknown("-q".into()));
    }

    #[test]
    fn parse_missing_argument_errors() {
        assert_eq!(
            p("dump -t").unwrap_err(),
            CliError::MissingArgument("-t".into())
        );
    }

    #[test]
    fn check_supported_refuses_known_unimplemented() {
        let a = p("dump -t 1 -D d --ext-mount-map /a:/b").unwrap();
        assert_eq!(
            a.check_supported().unwrap_err(),
            CliError::Unsupported("ext-mount-map".into())
        );
        let a = p("dump -t 1 -D d --no-link-remap").unwrap();
        assert!(a.check_supported().is_ok());
    }

    #[test]
    fn check_supported_refuses_values_crs_cannot_honour() {
        let refused = |cmd: &str| p(cmd).unwrap().check_supported().unwrap_err();
        assert!(matches!(
            refused("dump -t 1 --manage-cgroups=soft"),
            CliError::Refused { option, .. } if option == "manage-cgroups"
        ));
        assert!(matches!(
            refused("dump -t 1 --manage-cgroups"),
            CliError::Refused { option, .. } if option == "manage-cgroups"
        ));
        assert!(matches!(
            refused("dump -t 1 --status-fd 3"),
            CliError::Refused { option, .. } if option == "status-fd"
        ));
        assert!(matches!(
            refused("dump -t 1 --pre-dump-mode=mmap"),
            CliError::Refused { option, .. } if option == "pre-dump-mode"
        ));
        assert!(matches!(
            refused("dump -t 1 --ghost-limit 1X"),
            CliError::Refused { option, .. } if option == "ghost-limit"
        ));
        for ok in [
            "dump -t 1 --manage-cgroups=ignore --network-lock skip --ghost-limit 2M",
            "page-server --status-fd 3",
            "restore --restore-sibling",
        ] {
            p(ok).unwrap().check_supported().unwrap();
        }
    }

    #[test]
    fn parse_size_takes_criu_suffixes() {
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("2K"), Some(2048));
        assert_eq!(parse_size("1M"), Some(1 << 20));
        assert_eq!(parse_size("3G"), Some(3 << 30));
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("1KB"), None);
    }

    #[test]
    fn parse_operands_after_command_kept() {
        let a = p("swrk 3").unwrap();
        assert_eq!(a.command.as_deref(), Some("swrk"));
        assert_eq!(a.operands, vec!["3".to_string()]);
    }
}
