//! `/proc/PID/cgroup`: cgroup v1 hierarchies and the v2 `0::` line.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::error::ParseError;
use crate::util::{lines, lossy, Ctx};
use crate::ProcFile;

/// One line `hierarchy-ID:controller-list:path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupEntry {
    /// Hierarchy id; 0 for the v2 unified hierarchy.
    pub hierarchy: u32,
    /// Controllers bound to the hierarchy (`cpu`, `cpuacct`, `name=systemd`); empty for v2.
    pub controllers: Vec<String>,
    /// Path of the cgroup relative to the hierarchy's root (may contain `:`).
    pub path: PathBuf,
}

impl CgroupEntry {
    /// True for the cgroup v2 line (`0::/path`).
    pub fn is_v2(&self) -> bool {
        self.hierarchy == 0 && self.controllers.is_empty()
    }
}

/// Parses `/proc/PID/cgroup`.
pub fn parse_cgroup(bytes: &[u8]) -> Result<Vec<CgroupEntry>, ParseError> {
    let mut out = Vec::new();
    for (n, line) in lines(bytes) {
        let ctx = Ctx::line(ProcFile::Cgroup, n);
        if line.is_empty() {
            continue;
        }
        let c1 = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| ctx.missing("':' after the hierarchy id"))?;
        let rest = &line[c1 + 1..];
        let c2 = rest
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| ctx.missing("':' after the controller list"))?;
        let controllers = if c2 == 0 {
            Vec::new()
        } else {
            rest[..c2].split(|&b| b == b',').map(lossy).collect()
        };
        out.push(CgroupEntry {
            hierarchy: ctx.dec("hierarchy id", &line[..c1])?,
            controllers,
            path: PathBuf::from(OsString::from_vec(rest[c2 + 1..].to_vec())),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;

    #[test]
    fn cgroup_hybrid_v1_and_v2_parsed() {
        let v = parse_cgroup(include_bytes!("../tests/fixtures/zoo/cgroup")).unwrap();
        assert_eq!(v.len(), 10);
        assert_eq!(v[0].controllers, vec!["name=systemd".to_string()]);
        let mem = v.iter().find(|e| e.controllers == ["memory"]).unwrap();
        assert_eq!(mem.hierarchy, 4);
        assert_eq!(
            mem.path,
            PathBuf::from("/process_api/420385cb0a8599fbe2f625ffedaf4d7b")
        );
        let v2 = v.last().unwrap();
        assert!(v2.is_v2());
        assert_eq!(v2.path, PathBuf::from("/"));
    }

    #[test]
    fn cgroup_multiple_controllers_and_colon_in_path_parsed() {
        let v = parse_cgroup(b"3:cpu,cpuacct:/a:b\n").unwrap();
        assert_eq!(
            v[0].controllers,
            vec!["cpu".to_string(), "cpuacct".to_string()]
        );
        assert_eq!(v[0].path, PathBuf::from("/a:b"));
    }

    #[test]
    fn cgroup_malformed_names_line() {
        let e = parse_cgroup(b"0::/\nx:cpu:/\n").unwrap_err();
        assert_eq!(e.location, Location::Line(2));
        assert!(parse_cgroup(b"1:cpu\n").is_err());
        assert!(parse_cgroup(b"1\n").is_err());
    }
}
