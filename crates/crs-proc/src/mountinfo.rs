//! `/proc/PID/mountinfo`.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::error::ParseError;
use crate::util::{lines, lossy, tokens, unescape_octal, Ctx};
use crate::ProcFile;

/// One mountinfo line (proc_pid_mountinfo(5)); paths and the source have the kernel's octal
/// escapes (`\040` for space, `\011`, `\012`, `\134`) decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// (1) mount id.
    pub mount_id: u32,
    /// (2) parent mount id.
    pub parent_id: u32,
    /// (3) device major.
    pub major: u32,
    /// (3) device minor.
    pub minor: u32,
    /// (4) root of the mount inside its filesystem.
    pub root: PathBuf,
    /// (5) mount point relative to the reader's root.
    pub mount_point: PathBuf,
    /// (6) per-mount options (`rw,nosuid,relatime`).
    pub mount_options: String,
    /// (7) `shared:N` peer group.
    pub shared: Option<u32>,
    /// (7) `master:N` peer group this mount receives from.
    pub master: Option<u32>,
    /// (7) `propagate_from:N` nearest dominant peer group visible here.
    pub propagate_from: Option<u32>,
    /// (7) `unbindable`.
    pub unbindable: bool,
    /// (7) optional fields this crate does not know, verbatim.
    pub other_optional: Vec<String>,
    /// (9) filesystem type, with subtype (`fuse.sshfs`).
    pub fs_type: String,
    /// (10) mount source.
    pub source: OsString,
    /// (11) per-superblock options.
    pub super_options: String,
}

fn path(b: &[u8]) -> PathBuf {
    PathBuf::from(OsString::from_vec(unescape_octal(b)))
}

fn parse_line(ctx: &Ctx, line: &[u8]) -> Result<MountInfo, ParseError> {
    let t: Vec<&[u8]> = tokens(line).collect();
    let sep = t
        .iter()
        .position(|x| *x == b"-")
        .ok_or_else(|| ctx.missing("\" - \" separator"))?;
    if sep < 6 {
        return Err(ctx.missing("mount options before the separator"));
    }
    if t.len() < sep + 3 {
        return Err(ctx.missing("filesystem type, source or super options"));
    }
    let dev = t[2];
    let colon = dev
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| ctx.invalid("major:minor", dev))?;
    let mut m = MountInfo {
        mount_id: ctx.dec("mount id", t[0])?,
        parent_id: ctx.dec("parent id", t[1])?,
        major: ctx.dec("major", &dev[..colon])?,
        minor: ctx.dec("minor", &dev[colon + 1..])?,
        root: path(t[3]),
        mount_point: path(t[4]),
        mount_options: ctx.text("mount options", t[5])?.to_owned(),
        shared: None,
        master: None,
        propagate_from: None,
        unbindable: false,
        other_optional: Vec::new(),
        fs_type: lossy(&unescape_octal(t[sep + 1])),
        source: OsString::from_vec(unescape_octal(t[sep + 2])),
        // Super options can be absent in principle; the kernel always prints at least rw/ro.
        super_options: lossy(t[sep + 3..].first().copied().unwrap_or(&[])),
    };
    for opt in &t[6..sep] {
        if let Some(v) = opt.strip_prefix(b"shared:") {
            m.shared = Some(ctx.dec("shared", v)?);
        } else if let Some(v) = opt.strip_prefix(b"master:") {
            m.master = Some(ctx.dec("master", v)?);
        } else if let Some(v) = opt.strip_prefix(b"propagate_from:") {
            m.propagate_from = Some(ctx.dec("propagate_from", v)?);
        } else if *opt == b"unbindable" {
            m.unbindable = true;
        } else {
            m.other_optional.push(lossy(opt));
        }
    }
    Ok(m)
}

/// Parses `/proc/PID/mountinfo`.
pub fn parse_mountinfo(bytes: &[u8]) -> Result<Vec<MountInfo>, ParseError> {
    lines(bytes)
        .filter(|(_, l)| !l.is_empty())
        .map(|(n, l)| parse_line(&Ctx::line(ProcFile::Mountinfo, n), l))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;

    const ZOO: &[u8] = include_bytes!("../tests/fixtures/zoo/mountinfo");
    const NS: &[u8] = include_bytes!("../tests/fixtures/zoo/mountinfo_ns");

    #[test]
    fn mountinfo_zoo_parsed() {
        let v = parse_mountinfo(ZOO).unwrap();
        assert_eq!(v.len(), 20);
        let root = v
            .iter()
            .find(|m| m.mount_point.as_path() == std::path::Path::new("/"))
            .unwrap();
        assert_eq!(
            (root.mount_id, root.parent_id, root.major, root.minor),
            (27, 1, 254, 0)
        );
        assert_eq!(root.fs_type, "ext4");
        assert_eq!(root.source, "/dev/vda");
        assert!(root.super_options.starts_with("rw,discard"));
        let cg2 = v.last().unwrap();
        assert_eq!(cg2.fs_type, "cgroup2");
        assert_eq!(cg2.mount_point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert!(v.iter().all(|m| m.shared.is_none() && !m.unbindable));
    }

    #[test]
    fn mountinfo_propagation_and_escapes_parsed() {
        let v = parse_mountinfo(NS).unwrap();
        let a = v
            .iter()
            .find(|m| m.mount_point.as_path() == std::path::Path::new("/tmp/crsproc/mnt a"))
            .unwrap();
        assert_eq!(a.shared, Some(1));
        assert_eq!(a.source, "x y");
        let b = v
            .iter()
            .find(|m| m.mount_point.as_path() == std::path::Path::new("/tmp/crsproc/mb"))
            .unwrap();
        assert_eq!((b.shared, b.master), (Some(2), Some(1)));
        let c = v
            .iter()
            .find(|m| m.mount_point.as_path() == std::path::Path::new("/tmp/crsproc/mc"))
            .unwrap();
        assert!(c.unbindable);
        let d = v
            .iter()
            .find(|m| m.mount_point.as_path() == std::path::Path::new("/tmp/crsproc/md"))
            .unwrap();
        assert_eq!(d.mount_options, "ro,relatime");
    }

    #[test]
    fn mountinfo_propagate_from_and_unknown_optional_kept() {
        let line = b"70 60 0:50 /sub\\134dir /mnt/x rw master:3 propagate_from:2 future:9 - fuse.sshfs u@h:/p rw,user_id=0\n";
        let m = &parse_mountinfo(line).unwrap()[0];
        assert_eq!(m.root, PathBuf::from("/sub\\dir"));
        assert_eq!((m.master, m.propagate_from), (Some(3), Some(2)));
        assert_eq!(m.other_optional, vec!["future:9".to_string()]);
        assert_eq!(m.fs_type, "fuse.sshfs");
        assert_eq!(m.source, "u@h:/p");
    }

    #[test]
    fn mountinfo_malformed_names_line() {
        let mut text = ZOO.to_vec();
        text.extend_from_slice(b"99 1 0:1 / /x rw shared:1\n");
        let e = parse_mountinfo(&text).unwrap_err();
        assert_eq!(e.location, Location::Line(21));
        assert!(parse_mountinfo(b"1 2 3 / /x rw - t s o").is_err());
        assert!(parse_mountinfo(b"1 2 0:3 / /x rw shared:x - t s o").is_err());
        assert!(parse_mountinfo(b"1 2 0:3 / - t s o").is_err());
        assert!(parse_mountinfo(b"1 2 0:3 / /x rw - t").is_err());
    }
}
