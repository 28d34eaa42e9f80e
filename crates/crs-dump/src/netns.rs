//! The tree's own network namespace, as far as crs restores one: its loopback device.
//!
//! A namespace holding anything a restore of the loopback alone would lose is refused by
//! name: another device, an IPv4 or IPv6 address other than 127.0.0.1 and ::1 on `lo`, an
//! IPv4 route of the main table, or a sysctl of `net.ipv4.conf.{all,default,lo}`,
//! `net.ipv6.conf.{all,default,lo}` and a few per-namespace others whose value differs
//! from a new namespace's (read by a thread of crs in a new one). `--empty-ns net` skips
//! all of it (nothing of the namespace is saved). Images: `netdev-ID.img` (the loopback,
//! CRIU's `net_device_entry`) and an empty `netns-ID.img`, which CRIU 4.2 restores.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crs_images::codec::ImageWriter;
use crs_images::pb::netdev::{Nd_type, Net_device_entry, Netns_entry};
use protobuf::EnumOrUnknown;

use crate::error::{DumpError, Result};
use crate::files::image_err;
use crate::imgdir::ImageDir;

/// The loopback device as dumped.
#[derive(Debug)]
pub(crate) struct Loopback {
    flags: u32,
    mtu: u32,
}

fn refuse(pid: i32, what: String) -> DumpError {
    DumpError::NetNamespace { pid, what }
}

fn io_err(pid: i32, what: &'static str) -> impl FnOnce(std::io::Error) -> DumpError {
    move |source| DumpError::Namespace {
        pid,
        kind: "network",
        what,
        source,
    }
}

/// Checks the network namespace the calling thread is in (that of process `pid`) holds
/// nothing but its loopback device, and reads that.
pub(crate) fn loopback_only(pid: i32) -> Result<Loopback> {
    let proc_net = |f: &str| -> Result<String> {
        std::fs::read_to_string(format!("/proc/{pid}/net/{f}"))
            .map_err(io_err(pid, "reading /proc/PID/net of"))
    };
    // /proc/PID/net/dev: two header lines, then "  name: counters".
    for line in proc_net("dev")?.lines().skip(2) {
        let name = line.split(':').next().unwrap_or("").trim();
        if !name.is_empty() && name != "lo" {
            return Err(refuse(pid, format!("device {name}")));
        }
    }
    for (dev, addr) in
        crs_sys::net::ipv4_addresses().map_err(io_err(pid, "listing the IPv4 addresses of"))?
    {
        if dev != "lo" || addr != std::net::Ipv4Addr::LOCALHOST {
            return Err(refuse(pid, format!("IPv4 address {addr} on {dev}")));
        }
    }
    // if_inet6: "address-hex ifindex prefix scope flags name".
    for line in proc_net("if_inet6").unwrap_or_default().lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(dev)) = (f.first(), f.last()) else {
            continue;
        };
        if *addr != "00000000000000000000000000000001" || *dev != "lo" {
            return Err(refuse(pid, format!("IPv6 address {addr} on {dev}")));
        }
    }
    // route: a header line, then the main table's IPv4 routes.
    if let Some(route) = proc_net("route")?.lines().nth(1) {
        return Err(refuse(
            pid,
            format!(
                "IPv4 route {}",
                route.split_whitespace().collect::<Vec<_>>().join(" ")
            ),
        ));
    }
    let ours = sysctls();
    let fresh = std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| io_err(pid, "making a new namespace to compare with")(e.into()))?;
            Ok::<_, DumpError>(sysctls())
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })?;
    for (name, v) in &ours {
        if fresh.get(name).is_some_and(|f| f != v) {
            return Err(refuse(
                pid,
                format!(
                    "sysctl {name} = {v:?} (a new namespace has {:?})",
                    fresh[name]
                ),
            ));
        }
    }
    Ok(Loopback {
        flags: crs_sys::net::if_flags("lo").map_err(io_err(pid, "reading lo's flags in"))?,
        mtu: crs_sys::net::if_mtu("lo").map_err(io_err(pid, "reading lo's MTU in"))?,
    })
}

/// The per-namespace sysctls checked against a new namespace's, of the calling thread's
/// network namespace, by dotted name (unreadable ones left out).
fn sysctls() -> BTreeMap<String, String> {
    let base = Path::new("/proc/sys/net");
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [
        "ipv4/conf/all",
        "ipv4/conf/default",
        "ipv4/conf/lo",
        "ipv6/conf/all",
        "ipv6/conf/default",
        "ipv6/conf/lo",
    ] {
        if let Ok(rd) = std::fs::read_dir(base.join(dir)) {
            // `mtu` follows the device's, which is restored.
            files.extend(
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| !p.ends_with("mtu")),
            );
        }
    }
    for f in [
        "ipv4/ip_forward",
        "ipv4/ping_group_range",
        "ipv4/ip_local_port_range",
        "ipv4/ip_unprivileged_port_start",
        "core/somaxconn",
        "unix/max_dgram_qlen",
    ] {
        files.push(base.join(f));
    }
    files
        .into_iter()
        .filter_map(|p| {
            let v = std::fs::read_to_string(&p).ok()?;
            let name = p
                .strip_prefix("/proc/sys")
                .ok()?
                .to_string_lossy()
                .replace('/', ".");
            Some((name, v.trim().to_string()))
        })
        .collect()
}

/// `netdev-ID.img` with the loopback device and `netns-ID.img`.
pub(crate) fn write(dir: &mut ImageDir, id: u32, lo: &Loopback) -> Result<()> {
    let name = format!("netdev-{id}.img");
    let mut img = ImageWriter::new(name.clone(), "NETDEV");
    img.push(&Net_device_entry {
        type_: Some(EnumOrUnknown::new(Nd_type::LOOPBACK)),
        ifindex: Some(1),
        mtu: Some(lo.mtu),
        flags: Some(lo.flags),
        name: Some("lo".into()),
        ..Default::default()
    })
    .map_err(image_err(&name))?;
    dir.write(img)?;
    let name = format!("netns-{id}.img");
    let mut img = ImageWriter::new(name.clone(), "NETNS");
    img.push(&Netns_entry::default())
        .map_err(image_err(&name))?;
    dir.write(img)?;
    Ok(())
}
