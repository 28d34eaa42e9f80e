//! Pure parsers over the /proc and /sys texts the probes read, tested on bytes.

/// Whether a `key: value` text (fdinfo, status) has a line for `key`.
pub(crate) fn has_field(text: &[u8], key: &str) -> bool {
    text.split(|&b| b == b'\n').any(|line| {
        line.strip_prefix(key.as_bytes())
            .is_some_and(|rest| rest.first() == Some(&b':'))
    })
}

/// One line of /proc/PID/maps, as far as the probes need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapsEntry<'a> {
    pub start: u64,
    pub end: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub inode: u64,
    /// The path column, empty for an anonymous mapping.
    pub path: &'a [u8],
}

/// The line of `maps` whose mapping starts at `start`.
pub(crate) fn maps_entry(maps: &[u8], start: u64) -> Option<MapsEntry<'_>> {
    maps.split(|&b| b == b'\n')
        .filter_map(maps_line)
        .find(|e| e.start == start)
}

fn maps_line(line: &[u8]) -> Option<MapsEntry<'_>> {
    // start-end perms offset major:minor inode   path
    let mut rest = line;
    let mut field = || -> Option<&[u8]> {
        let t = rest.trim_ascii_start();
        let n = t.iter().position(|&b| b == b' ').unwrap_or(t.len());
        let (f, r) = t.split_at(n);
        rest = r;
        (!f.is_empty()).then_some(f)
    };
    let range = field()?;
    let _perms = field()?;
    let _offset = field()?;
    let dev = field()?;
    let inode = field()?;
    let (s, e) = split_once(range, b'-')?;
    let (maj, min) = split_once(dev, b':')?;
    Some(MapsEntry {
        start: hex(s)?,
        end: hex(e)?,
        dev_major: u32::try_from(hex(maj)?).ok()?,
        dev_minor: u32::try_from(hex(min)?).ok()?,
        inode: std::str::from_utf8(inode).ok()?.parse().ok()?,
        path: rest.trim_ascii(),
    })
}

fn split_once(s: &[u8], sep: u8) -> Option<(&[u8], &[u8])> {
    let i = s.iter().position(|&b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

fn hex(s: &[u8]) -> Option<u64> {
    u64::from_str_radix(std::str::from_utf8(s).ok()?, 16).ok()
}

/// What /proc/PID/mountinfo says of autofs: `None` when it shows no autofs mount, else
/// whether the first one shows its `pipe_ino=` option (kernels that do let autofs mounts
/// be dumped).
pub(crate) fn autofs_pipe_ino(mountinfo: &[u8]) -> Option<bool> {
    mountinfo.split(|&b| b == b'\n').find_map(|line| {
        // ... optional fields - fstype source super-options
        let tail = find(line, b" - ").map(|i| &line[i + 3..])?;
        let mut f = tail.split(|&b| b == b' ');
        if f.next()? != b"autofs" {
            return None;
        }
        let _source = f.next();
        let opts = f.next().unwrap_or_default();
        Some(
            opts.split(|&b| b == b',')
                .any(|o| o.starts_with(b"pipe_ino=")),
        )
    })
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether AppArmor's securityfs allows stacked profiles as CRIU dumps them: the
/// `features/domain/stack` file says `yes` and `features/domain/version` is 1.2 or later.
pub(crate) fn apparmor_stacking(stack: &[u8], version: &[u8]) -> bool {
    if stack.trim_ascii() != b"yes" {
        return false;
    }
    let Ok(v) = std::str::from_utf8(version.trim_ascii()) else {
        return false;
    };
    let mut parts = v.split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= (1, 2),
        _ => false,
    }
}

/// The major number of a `dev_t` (glibc's `gnu_dev_major` encoding).
pub(crate) fn dev_major(dev: u64) -> u32 {
    (((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff)) as u32
}

/// The minor number of a `dev_t`.
pub(crate) fn dev_minor(dev: u64) -> u32 {
    ((dev & 0xff) | ((dev >> 12) & !0xff)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_field_fdinfo_mnt_id_found() {
        let fdinfo = b"pos:\t0\nflags:\t02100000\nmnt_id:\t25\nino:\t2\n";
        assert!(has_field(fdinfo, "mnt_id"));
        assert!(has_field(fdinfo, "pos"));
    }

    #[test]
    fn has_field_prefix_of_other_key_not_found() {
        let fdinfo = b"pos:\t0\nmnt_id_x:\t25\nlock:1: FLOCK ADVISORY READ 12 00:05:4 0 EOF\n";
        assert!(!has_field(fdinfo, "mnt_id"));
        assert!(!has_field(fdinfo, "mnt"));
        assert!(has_field(fdinfo, "lock"));
    }

    #[test]
    fn has_field_status_nspid_found() {
        let status = b"Name:\tcat\nTgid:\t12\nNSpid:\t12\nNSpgid:\t12\n";
        assert!(has_field(status, "NSpid"));
        assert!(!has_field(b"Name:\tcat\nPid:\t1\n", "NSpid"));
    }

    const MAPS: &[u8] = b"\
55d0c0a00000-55d0c0a21000 r--p 00000000 fd:01 1311 /usr/bin/cat
7f12a0000000-7f12a0001000 rw-s 00000000 00:12 7 /[aio] (deleted)
7f12a0002000-7f12a0003000 rw-s 00000000 00:2f 103 /tmp/test file
7ffd1e9f0000-7ffd1ea11000 rw-p 00000000 00:00 0                          [stack]
7f12a0004000-7f12a0006000 rw-p 00000000 00:00 0 
";

    #[test]
    fn maps_entry_aio_ring_found() {
        let e = maps_entry(MAPS, 0x7f12a0000000).unwrap();
        assert_eq!(e.end - e.start, 0x1000);
        assert_eq!(e.path, b"/[aio] (deleted)");
        assert_eq!((e.dev_major, e.dev_minor, e.inode), (0, 0x12, 7));
    }

    #[test]
    fn maps_entry_path_with_space_and_anon_parsed() {
        let e = maps_entry(MAPS, 0x7f12a0002000).unwrap();
        assert_eq!((e.dev_major, e.dev_minor, e.inode), (0, 0x2f, 103));
        assert_eq!(e.path, b"/tmp/test file");
        let anon = maps_entry(MAPS, 0x7f12a0004000).unwrap();
        assert_eq!(anon.end, 0x7f12a0006000);
        assert_eq!(anon.path, b"");
        assert_eq!(maps_entry(MAPS, 0x7ffd1e9f0000).unwrap().path, b"[stack]");
    }

    #[test]
    fn maps_entry_unknown_start_none() {
        assert_eq!(maps_entry(MAPS, 0x1000), None);
        assert_eq!(maps_entry(b"garbage\n\n", 0), None);
    }

    #[test]
    fn autofs_pipe_ino_mount_with_option_true() {
        let mi = b"\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:35 / /tmp/a rw,relatime shared:20 - autofs crs rw,fd=5,pgrp=1,timeout=300,minproto=5,maxproto=5,direct,pipe_ino=1234
";
        assert_eq!(autofs_pipe_ino(mi), Some(true));
    }

    #[test]
    fn autofs_pipe_ino_mount_without_option_false() {
        let mi = b"40 22 0:35 / /net rw - autofs systemd-1 rw,fd=5,pgrp=1,direct\n";
        assert_eq!(autofs_pipe_ino(mi), Some(false));
    }

    #[test]
    fn autofs_pipe_ino_no_autofs_none() {
        // A mount point named autofs is not an autofs mount.
        let mi = b"22 1 0:21 / /autofs rw - tmpfs autofs rw,pipe_ino=3\n";
        assert_eq!(autofs_pipe_ino(mi), None);
        assert_eq!(autofs_pipe_ino(b""), None);
    }

    #[test]
    fn apparmor_stacking_yes_and_new_version_true() {
        assert!(apparmor_stacking(b"yes\n", b"1.2\n"));
        assert!(apparmor_stacking(b"yes\n", b"1.10\n"));
        assert!(apparmor_stacking(b"yes", b"2.0"));
    }

    #[test]
    fn apparmor_stacking_old_or_disabled_false() {
        assert!(!apparmor_stacking(b"yes\n", b"1.1\n"));
        assert!(!apparmor_stacking(b"no\n", b"1.2\n"));
        assert!(!apparmor_stacking(b"yes\n", b"garbage\n"));
        assert!(!apparmor_stacking(b"", b""));
    }

    #[test]
    fn dev_major_minor_split_like_glibc() {
        // makedev(0xfd, 0x01), makedev(0x103, 0x12345)
        assert_eq!((dev_major(0xfd01), dev_minor(0xfd01)), (0xfd, 1));
        let dev = (0x12345u64 & 0xff) | ((0x103u64 & 0xfff) << 8) | ((0x12345u64 & !0xff) << 12);
        assert_eq!((dev_major(dev), dev_minor(dev)), (0x103, 0x12345));
    }
}
