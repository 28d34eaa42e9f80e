//! Every fixture parses with its own parser, and no parser panics on any fixture, its
//! truncations or byte mutations (a cheap deterministic stand-in for the fuzz target).

use crs_proc::{parse_any, ProcFile};

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/zoo");
    let mut out = Vec::new();
    for sub in [dir.to_string(), format!("{dir}/fdinfo")] {
        for e in std::fs::read_dir(&sub).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn kind_of(name: &str) -> Option<ProcFile> {
    let base = name.rsplit('/').next().unwrap();
    Some(match base {
        "stat" | "thread_stat" | "zombie_stat" | "kthread_stat" => ProcFile::Stat,
        "status" | "thread_status" | "zombie_status" => ProcFile::Status,
        "maps" => ProcFile::Maps,
        "smaps" => ProcFile::Smaps,
        "limits" => ProcFile::Limits,
        "mountinfo" | "mountinfo_ns" => ProcFile::Mountinfo,
        "locks" => ProcFile::Locks,
        "cgroup" => ProcFile::Cgroup,
        "auxv" => ProcFile::Auxv,
        "pagemap" => ProcFile::Pagemap,
        "timers" => ProcFile::Timers,
        "personality" => ProcFile::Personality,
        "loginuid" => ProcFile::Loginuid,
        "net_unix" => ProcFile::NetUnix,
        "net_tcp" => ProcFile::NetTcp,
        "net_tcp6" => ProcFile::NetTcp6,
        "net_udp" => ProcFile::NetUdp,
        _ if base.starts_with("children_") => ProcFile::Children,
        _ if name.contains("/fdinfo/") => ProcFile::Fdinfo,
        _ => return None,
    })
}

#[test]
fn parse_any_every_fixture_parses_with_its_kind() {
    let mut n = 0;
    for (name, bytes) in fixtures() {
        if let Some(kind) = kind_of(&name) {
            parse_any(kind, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            n += 1;
        }
    }
    assert!(n > 40, "only {n} fixtures recognised");
}

#[test]
fn parse_any_truncated_and_mutated_inputs_never_panic() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (_, bytes) in fixtures() {
        let cut_step = (bytes.len() / 64).max(1);
        for kind in ProcFile::ALL {
            for cut in (0..bytes.len()).step_by(cut_step) {
                let _ = parse_any(kind, &bytes[..cut]);
            }
            for _ in 0..32 {
                let mut m = bytes.clone();
                if m.is_empty() {
                    break;
                }
                for _ in 0..4 {
                    let i = (next() as usize) % m.len();
                    m[i] = match next() % 5 {
                        0 => b'\n',
                        1 => b' ',
                        2 => b':',
                        3 => b'(',
                        _ => next() as u8,
                    };
                }
                let _ = parse_any(kind, &m);
            }
        }
    }
}

#[test]
fn parse_error_names_file_and_line() {
    let e = parse_any(ProcFile::Maps, b"1000-2000 r--p 0 00:00 0\nbad\n").unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("/proc/PID/maps line 2:"), "{s}");
}
