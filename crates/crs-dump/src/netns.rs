//! The tree's own network namespace: its devices (the loopback; veth devices whose peer
//! is outside the namespace, which a restore recreates with `--external
//! veth[NAME]:OUTSIDE[@BRIDGE]`), their addresses and the main routing tables, read over
//! rtnetlink (`crs_sys::rtnl`) by a thread of crs in the namespace.
//!
//! Images, CRIU's: `netdev-ID.img` (a `net_device_entry` per device), `netns-ID.img`,
//! and `ifaddr-ID.img`, `route-ID.img`, `route6-ID.img`, which CRIU fills with `ip addr
//! save`, `ip route save` and `ip -6 route save`: a magic word, then the kernel's
//! RTM_NEWADDR / RTM_NEWROUTE messages as a dump gives them, which crs writes itself.
//!
//! The routing rules go to `rule-ID.img` (`ip rule save`'s format, as CRIU's), the
//! nftables ruleset to `nftables-ID.img` (`nft list ruleset`'s text, as CRIU's).
//!
//! Refused by name, as a restore would lose them: another kind of device, a veth pair
//! with both ends inside, a route in a table other than main and local, iptables tables, and a sysctl of
//! `net.ipv4.conf.*`, `net.ipv6.conf.*` and a few per-namespace others whose value differs
//! from a new namespace's (a device's from the namespace's `default`, which a new device
//! takes); `net.ipv4.ping_group_range` and `net.unix.max_dgram_qlen` are saved in
//! `netns-ID.img`, as CRIU saves them. `--empty-ns net` skips all of it (nothing of the namespace is saved).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crs_images::codec::ImageWriter;
use crs_images::pb::netdev::{Nd_type, Net_device_entry, Netns_entry};
use crs_images::pb::sysctl::{SysctlType, Sysctl_entry};
use crs_sys::rtnl::route::address::AddressMessage;
use crs_sys::rtnl::route::link::{InfoKind, LinkAttribute, LinkInfo, LinkLayerType, LinkMessage};
use crs_sys::rtnl::route::route::{RouteAttribute, RouteHeader, RouteMessage};
use crs_sys::rtnl::route::rule::RuleMessage;
use crs_sys::rtnl::route::AddressFamily;
use crs_sys::rtnl::{
    save, NetlinkPayload, RouteNetlinkMessage, Rtnl, IFADDR_MAGIC, ROUTE_MAGIC, RULE_MAGIC,
};
use protobuf::EnumOrUnknown;

use crate::error::{DumpError, Result};
use crate::files::image_err;
use crate::imgdir::ImageDir;

/// The main routing table, and the local one (the kernel's own routes).
const RT_TABLE_MAIN: u32 = 254;
const RT_TABLE_LOCAL: u32 = 255;

/// The network namespace as dumped.
#[derive(Debug)]
pub(crate) struct NetNs {
    devices: Vec<Net_device_entry>,
    /// netns-ID.img: the sysctls CRIU saves of a namespace, `net.ipv4.ping_group_range`
    /// and `net.unix.max_dgram_qlen`.
    entry: Netns_entry,
    /// ifaddr-ID.img, route-ID.img and route6-ID.img, each whole.
    ifaddr: Vec<u8>,
    route: Vec<u8>,
    route6: Vec<u8>,
    /// rule-ID.img.
    rule: Vec<u8>,
    /// nftables-ID.img: `nft list ruleset`'s text.
    nftables: String,
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

/// The payloads of raw messages `raw` (a dump's).
fn payloads(pid: i32, raw: &[Vec<u8>]) -> Result<Vec<RouteNetlinkMessage>> {
    raw.iter()
        .map(|m| match crs_sys::rtnl::parse(m) {
            Ok(msg) => match msg.payload {
                NetlinkPayload::InnerMessage(p) => Ok(p),
                other => Err(io_err(pid, "reading an rtnetlink dump of")(
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{other:?}")),
                )),
            },
            Err(e) => Err(io_err(pid, "reading an rtnetlink dump of")(e)),
        })
        .collect()
}

/// The table of route `r` (RTA_TABLE when the header's byte cannot hold it).
fn route_table(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table))
}

/// Reads the network namespace the calling thread is in (that of process `pid`), refusing
/// what a restore would lose (see the module's comment).
pub(crate) fn read(pid: i32) -> Result<NetNs> {
    let mut rt = Rtnl::open().map_err(io_err(pid, "opening rtnetlink in"))?;
    let dump = |rt: &mut Rtnl, msg| rt.dump(msg).map_err(io_err(pid, "an rtnetlink dump of"));
    let mut devices = Vec::new();
    let links = dump(
        &mut rt,
        RouteNetlinkMessage::GetLink(LinkMessage::default()),
    )?;
    for msg in payloads(pid, &links)? {
        let RouteNetlinkMessage::NewLink(l) = msg else {
            continue;
        };
        devices.push(device(pid, &l)?);
    }
    devices.sort_by_key(|d| d.ifindex());
    for d in devices.iter().filter(|d| d.type_() != Nd_type::LOOPBACK) {
        device_sysctls(pid, d.name())?;
    }
    let addrs = dump(
        &mut rt,
        RouteNetlinkMessage::GetAddress(AddressMessage::default()),
    )?;
    payloads(pid, &addrs)?;
    let mut routes = [Vec::new(), Vec::new()];
    for (i, family) in [AddressFamily::Inet, AddressFamily::Inet6]
        .into_iter()
        .enumerate()
    {
        let mut req = RouteMessage::default();
        req.header = RouteHeader {
            address_family: family,
            ..RouteHeader::default()
        };
        let raw = dump(&mut rt, RouteNetlinkMessage::GetRoute(req))?;
        for (m, msg) in raw.iter().zip(payloads(pid, &raw)?) {
            let RouteNetlinkMessage::NewRoute(r) = msg else {
                continue;
            };
            match route_table(&r) {
                RT_TABLE_MAIN => routes[i].push(m.clone()),
                RT_TABLE_LOCAL => {}
                t => return Err(refuse(pid, format!("a route in table {t}"))),
            }
        }
    }
    let rule = rules(pid, &mut rt)?;
    let nftables = firewall(pid)?;
    namespace_sysctls(pid)?;
    let [route, route6] = routes;
    let read = |f: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/{f}"))
            .map(|s| s.trim().to_string())
            .map_err(io_err(pid, "reading a sysctl of"))
    };
    let qlen = read("unix/max_dgram_qlen")?;
    let entry =
        Netns_entry {
            ipv4_sysctl: vec![Sysctl_entry {
                type_: Some(EnumOrUnknown::new(SysctlType::CTL_STR)),
                sarg: Some(read("ipv4/ping_group_range")?),
                ..Default::default()
            }],
            unix_conf: vec![Sysctl_entry {
                type_: Some(EnumOrUnknown::new(SysctlType::CTL_32)),
                iarg: Some(qlen.parse().map_err(|_| {
                    refuse(pid, format!("sysctl net.unix.max_dgram_qlen = {qlen:?}"))
                })?),
                ..Default::default()
            }],
            ..Default::default()
        };
    Ok(NetNs {
        devices,
        entry,
        ifaddr: save(IFADDR_MAGIC, &addrs),
        route: save(ROUTE_MAGIC, &route),
        route6: save(ROUTE_MAGIC, &route6),
        rule: save(RULE_MAGIC, &rule),
        nftables,
    })
}

/// The `net_device_entry` of link `l`: the loopback or a veth device.
fn device(pid: i32, l: &LinkMessage) -> Result<Net_device_entry> {
    let mut name = None;
    let mut mtu = 0;
    let mut address = None;
    let mut kind = None;
    let mut peer = None;
    let mut peer_netns = None;
    for a in &l.attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::Address(a) => address = Some(a.clone()),
            LinkAttribute::Link(p) => peer = Some(*p),
            LinkAttribute::LinkNetNsId(n) => peer_netns = Some(*n),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let LinkInfo::Kind(k) = i {
                        kind = Some(k.clone());
                    }
                }
            }
            _ => {}
        }
    }
    let name = name.unwrap_or_default();
    let loopback = l.header.link_layer_type == LinkLayerType::Loopback;
    let nd_type = match (&kind, loopback) {
        (None, true) => Nd_type::LOOPBACK,
        (Some(InfoKind::Veth), _) => Nd_type::VETH,
        (k, _) => {
            let kind = k
                .as_ref()
                .map_or("none".to_string(), |k| format!("{k:?}").to_lowercase());
            return Err(refuse(pid, format!("device {name} (kind {kind})")));
        }
    };
    let veth = nd_type == Nd_type::VETH;
    // A veth whose peer is in this namespace has no other namespace's id.
    if veth && peer_netns.is_none() {
        return Err(refuse(
            pid,
            format!("a veth pair with both ends inside ({name})"),
        ));
    }
    Ok(Net_device_entry {
        type_: Some(EnumOrUnknown::new(nd_type)),
        ifindex: Some(l.header.index),
        mtu: Some(mtu),
        flags: Some(l.header.flags.bits()),
        name: Some(name),
        address: address.filter(|_| veth),
        // The peer's index in its own namespace, which is not one of the tree's: CRIU's
        // images then name no peer namespace.
        peer_ifindex: peer.filter(|_| veth),
        ..Default::default()
    })
}

/// The routing rules, IPv4 then IPv6, as `ip rule save` writes them (a new namespace's
/// too: a restore finds those there already).
fn rules(pid: i32, rt: &mut Rtnl) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for family in [AddressFamily::Inet, AddressFamily::Inet6] {
        let mut req = RuleMessage::default();
        req.header.family = family;
        let raw = rt
            .dump(RouteNetlinkMessage::GetRule(req))
            .map_err(io_err(pid, "an rtnetlink dump of"))?;
        payloads(pid, &raw)?;
        out.extend(raw);
    }
    Ok(out)
}

/// The namespace's nftables ruleset (`nft list ruleset`, run from this thread, so in the
/// namespace), without the dump's own network lock (`table inet CRIU-*`): CRIU's
/// nftables-ID.img. Without nft none can have been made here by it: empty. iptables
/// tables are refused (iptables-restore would be needed to put them back).
fn firewall(pid: i32) -> Result<String> {
    for f in ["ip_tables_names", "ip6_tables_names"] {
        let names = std::fs::read_to_string(format!("/proc/self/net/{f}")).unwrap_or_default();
        if let Some(t) = names.lines().next() {
            return Err(refuse(pid, format!("iptables table {t} ({f})")));
        }
    }
    let Ok(out) = std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
    else {
        return Ok(String::new());
    };
    if !out.status.success() {
        return Err(refuse(
            pid,
            format!(
                "an nftables ruleset nft cannot list ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(without_lock(&String::from_utf8_lossy(&out.stdout)))
}

/// `nft list ruleset`'s text without the top-level `table inet CRIU-*` blocks (the dump's
/// own network lock, gone with the dump).
pub(crate) fn without_lock(ruleset: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in ruleset.lines() {
        if !skipping && line.starts_with("table inet CRIU-") {
            skipping = true;
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
        if skipping && line == "}" {
            skipping = false;
        }
    }
    out
}

/// A device's sysctls (`net.ipv4.conf.NAME.*`, `net.ipv6.conf.NAME.*`) differing from the
/// namespace's `default` ones, which a new device takes, are refused (they are not
/// saved).
fn device_sysctls(pid: i32, name: &str) -> Result<()> {
    for v in ["ipv4", "ipv6"] {
        let dir = PathBuf::from(format!("/proc/sys/net/{v}/conf/{name}"));
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let file = e.file_name();
            if file == "mtu" {
                continue;
            }
            let read = |p: &Path| {
                std::fs::read_to_string(p)
                    .ok()
                    .map(|s| s.trim().to_string())
            };
            let (Some(mine), Some(def)) = (
                read(&e.path()),
                read(&Path::new(&format!("/proc/sys/net/{v}/conf/default")).join(&file)),
            ) else {
                continue;
            };
            if mine != def {
                return Err(refuse(
                    pid,
                    format!(
                        "sysctl net.{v}.conf.{name}.{} = {mine:?} (the namespace's default is \
                         {def:?})",
                        file.to_string_lossy()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The namespace's sysctls differing from a new namespace's are refused (they are not
/// saved).
fn namespace_sysctls(pid: i32) -> Result<()> {
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
    Ok(())
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
        "ipv4/ip_local_port_range",
        "ipv4/ip_unprivileged_port_start",
        "core/somaxconn",
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

/// `netdev-ID.img`, `netns-ID.img`, `ifaddr-ID.img`, `route-ID.img`, `route6-ID.img`,
/// `rule-ID.img`.
pub(crate) fn write(dir: &mut ImageDir, id: u32, ns: &NetNs) -> Result<()> {
    let name = format!("netdev-{id}.img");
    let mut img = ImageWriter::new(name.clone(), "NETDEV");
    for d in &ns.devices {
        img.push(d).map_err(image_err(&name))?;
    }
    dir.write(img)?;
    let name = format!("netns-{id}.img");
    let mut img = ImageWriter::new(name.clone(), "NETNS");
    img.push(&ns.entry).map_err(image_err(&name))?;
    dir.write(img)?;
    dir.write_bytes(&format!("ifaddr-{id}.img"), &ns.ifaddr)?;
    dir.write_bytes(&format!("route-{id}.img"), &ns.route)?;
    dir.write_bytes(&format!("route6-{id}.img"), &ns.route6)?;
    dir.write_bytes(&format!("rule-{id}.img"), &ns.rule)?;
    dir.write_bytes(&format!("nftables-{id}.img"), ns.nftables.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_lock_drops_only_the_lock_tables() {
        let r = "table inet CRIU-abc {\n\tset conns4 {\n\t}\n}\ntable inet t {\n\tchain c {\n\t}\n}\ntable inet CRIU-def {\n}\n";
        assert_eq!(without_lock(r), "table inet t {\n\tchain c {\n\t}\n}\n");
    }
}
