//! The network lock: while a tree's TCP connections are dumped and until they are
//! restored, the packets of each connection are dropped, in both directions, so that a
//! peer outside the tree sees silence (it retransmits) rather than a RST from a socket
//! that is gone.
//!
//! ```text
//! table inet CRIU-<dump's run id>                        (CRIU 4's name: either tool's
//!   set conns4 { ipv4_addr . inet_service . ipv4_addr . inet_service }   restore removes
//!   set conns6 { ipv6_addr . ... }                         the other's lock)
//!   chain input  (hook input,  priority filter): saddr . sport . daddr . dport in a set,
//!                                                 not marked 0xc114: drop
//!   chain output (hook output, priority filter): the same
//! ```
//! Each connection is in its set both ways round (local . peer and peer . local), so one
//! rule per chain and family covers both directions. A v4-mapped IPv6 connection's packets
//! are IPv4: it goes into `conns4`. The table is made in one `nft -f -` run (Debian's
//! nftables package), whatever the number of connections; it is made in the network
//! namespace of the calling thread.

use std::io::{self, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

/// The packet mark the lock lets through: the segments a restore makes up itself to put a
/// connection's FINs back (`tcp_repair::send_segment`), as CRIU marks its own (SOCCR_MARK).
pub const MARK: u32 = 0xc114;

/// inventory.img's `network_lock_method`, as CRIU numbers it.
pub mod method {
    /// iptables rules (CRIU 4.2's default).
    pub const IPTABLES: u32 = 0;
    /// An nftables table named by [`super::table`].
    pub const NFTABLES: u32 = 1;
    /// No lock.
    pub const SKIP: u32 = 2;
}

/// The lock table of the dump whose inventory has run id `run_id`.
pub fn table(run_id: &str) -> String {
    format!("CRIU-{run_id}")
}

/// The `nft` script that makes table `table` dropping the packets of `conns` (local,
/// peer).
pub fn script(table: &str, conns: &[(SocketAddr, SocketAddr)]) -> String {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for &(a, b) in conns {
        for (x, y) in [(a, b), (b, a)] {
            let (xi, yi) = (x.ip().to_canonical(), y.ip().to_canonical());
            let e = format!("{xi} . {} . {yi} . {}", x.port(), y.port());
            if xi.is_ipv4() {
                v4.push(e);
            } else {
                v6.push(e);
            }
        }
    }
    let mut s = format!("table inet {table} {{\n");
    for (set, kind, list) in [("conns4", "ipv4_addr", &v4), ("conns6", "ipv6_addr", &v6)] {
        s += &format!("\tset {set} {{\n\t\ttype {kind} . inet_service . {kind} . inet_service\n");
        if !list.is_empty() {
            s += &format!("\t\telements = {{ {} }}\n", list.join(", "));
        }
        s += "\t}\n";
    }
    for hook in ["input", "output"] {
        s += &format!(
            "\tchain {hook} {{\n\t\ttype filter hook {hook} priority filter; policy accept;\n\
             \t\tip saddr . tcp sport . ip daddr . tcp dport @conns4 meta mark != {MARK:#x} drop\n\
             \t\tip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 meta mark != {MARK:#x} drop\n\t}}\n"
        );
    }
    s += "}\n";
    s
}

fn nft(args: &[&str], stdin: Option<&str>) -> io::Result<std::process::Output> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                io::Error::new(
                    e.kind(),
                    "nft not found (the nftables package; or --network-lock skip)",
                )
            } else {
                e
            }
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    child.wait_with_output()
}

/// Drops the packets of `conns` from now on (table `table`, made anew).
pub fn lock(table: &str, conns: &[(SocketAddr, SocketAddr)]) -> io::Result<()> {
    // An older table of the same name (none, normally) would merge with this one.
    unlock(table)?;
    let out = nft(&["-f", "-"], Some(&script(table, conns)))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft -f - (table {table}): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Removes table `table`; `false` when there was none.
pub fn unlock(table: &str) -> io::Result<bool> {
    let out = nft(&["list", "tables", "inet"], None)?;
    let listed = String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == format!("table inet {table}"));
    if !listed {
        return Ok(false);
    }
    let out = nft(&["delete", "table", "inet", table], None)?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "nft delete table inet {table}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_puts_each_connection_both_ways_and_mapped_ones_as_ipv4() {
        let s = script(
            "CRIU-x",
            &[
                (
                    "127.0.0.1:5000".parse().unwrap(),
                    "127.0.0.1:80".parse().unwrap(),
                ),
                ("[::1]:7".parse().unwrap(), "[::1]:9".parse().unwrap()),
                (
                    "[::ffff:127.0.0.1]:6".parse().unwrap(),
                    "[::ffff:127.0.0.1]:8".parse().unwrap(),
                ),
            ],
        );
        assert!(s.starts_with("table inet CRIU-x {\n"), "{s}");
        assert!(s.contains(
            "elements = { 127.0.0.1 . 5000 . 127.0.0.1 . 80, 127.0.0.1 . 80 . 127.0.0.1 . 5000, \
             127.0.0.1 . 6 . 127.0.0.1 . 8, 127.0.0.1 . 8 . 127.0.0.1 . 6 }"
        ), "{s}");
        assert!(
            s.contains("elements = { ::1 . 7 . ::1 . 9, ::1 . 9 . ::1 . 7 }"),
            "{s}"
        );
        assert_eq!(s.matches("@conns4 meta mark != 0xc114 drop").count(), 2);
    }

    #[test]
    fn lock_drops_a_connection_and_unlock_lets_it_go_on() {
        let test = "lock_drops_a_connection_and_unlock_lets_it_go_on";
        if !crs_testkit::root_or_skip(test) {
            return;
        }
        use std::io::Read;
        use std::net::{TcpListener, TcpStream};
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut s, _) = l.accept().unwrap();
        let t = table(&format!("test-{}", std::process::id()));
        lock(&t, &[(c.local_addr().unwrap(), c.peer_addr().unwrap())]).unwrap();
        // Dropped: nothing arrives while the lock holds (a lock that let it through
        // would deliver it at once, on loopback).
        c.write_all(b"x").unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_millis(300)))
            .unwrap();
        let mut b = [0u8; 1];
        let early = s.read(&mut b);
        let removed = unlock(&t).unwrap();
        assert!(early.is_err(), "a byte went through the lock: {early:?}");
        assert!(removed, "unlock found no table");
        // Retransmitted once the lock is gone.
        s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        s.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        assert!(!unlock(&t).unwrap(), "a second unlock finds no table");
    }
}
