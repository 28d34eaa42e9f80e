//! The tree's own network namespace: its devices, addresses, routes and rules, over
//! rtnetlink (`crs_sys::rtnl`) by a thread of crs in the new namespace.
//!
//! ```text
//! load   : netdev-ID.img (the loopback, veth devices), ifaddr-ID.img, route-ID.img,
//!          route6-ID.img and rule-ID.img (`ip ... save`'s format: a magic word, then
//!          rtnetlink messages, each parsed here), iptables-ID.img / ip6tables-ID.img
//!          (iptables-save's text: refused unless it has no rule) and nftables-ID.img
//!          (`nft list ruleset`'s text); another kind of device is refused by name
//! set up : each veth made with its index, name, MAC address and MTU, its peer in crs's
//!          own namespace named by `--external veth[NAME]:OUTSIDE[@BRIDGE]` (CRIU's
//!          option), then put in BRIDGE and up; every device's flags (up) and the
//!          loopback's MTU; the nftables ruleset (`nft -f -`); then the addresses,
//!          routes and rules, each message sent again
//!          as `ip ... restore` sends it (one the kernel has already, EEXIST, is fine:
//!          the loopback's addresses, the routes an address brings)
//! ```
//! A failed restore needs no cleaning: the devices go with the namespace, the outside
//! peer of a veth with its pair.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use crs_compel::Tid;
use crs_images::codec::{read_file, ImageReader};
use crs_images::pb::netdev::{Nd_type, Net_device_entry, Netns_entry};
use crs_sys::rtnl::route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use crs_sys::rtnl::route::route::RouteProtocol;
use crs_sys::rtnl::route::rule::RuleAttribute;
use crs_sys::rtnl::{
    NetlinkPayload, RouteNetlinkMessage, Rtnl, IFADDR_MAGIC, NLM_F_CREATE, NLM_F_EXCL, ROUTE_MAGIC,
    RULE_MAGIC,
};
use tracing::debug;

use crate::error::{invalid, unsupported};
use crate::images::read_one;
use crate::ns::within;
use crate::RestoreError;

/// A network namespace's images.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct NetImages {
    pub devices: Vec<Net_device_entry>,
    /// netns-ID.img's sysctls set again: (path under /proc/sys/net, value).
    pub sysctls: Vec<(&'static str, String)>,
    /// nftables-ID.img: the namespace's nftables ruleset (`nft list ruleset`'s text).
    pub nftables: String,
    /// The raw rtnetlink messages of ifaddr-ID.img, route-ID.img and route6-ID.img,
    /// rule-ID.img, in order.
    pub addrs: Vec<Vec<u8>>,
    pub routes: Vec<Vec<u8>>,
    pub rules: Vec<Vec<u8>>,
}

/// The messages of `ip ... save` image `name` (absent: none) that `keep` keeps: it says
/// `None` of one of another kind than the image's (`RTM_NEWADDR`, ...), an error, and
/// `Some(false)` of one to leave out.
fn saved(
    dir: &Path,
    name: &str,
    magic: u32,
    keep: fn(&RouteNetlinkMessage) -> Option<bool>,
) -> Result<Vec<Vec<u8>>, RestoreError> {
    let path = dir.join(name);
    if !path.exists() {
        return Ok(Vec::new());
    }
    let bytes = read_file(&path)?;
    let Some(head) = bytes.get(..4) else {
        return Err(invalid(name, "shorter than its magic word"));
    };
    let got = u32::from_ne_bytes(head.try_into().expect("4 bytes"));
    if got != magic {
        return Err(invalid(
            name,
            format!("magic {got:#x}, want {magic:#x} (`ip ... save`'s)"),
        ));
    }
    let mut out = Vec::new();
    for m in crs_sys::rtnl::split(&bytes[4..]).map_err(|e| invalid(name, e.to_string()))? {
        let parsed = crs_sys::rtnl::parse(m).map_err(|e| invalid(name, e.to_string()))?;
        let kept = match &parsed.payload {
            NetlinkPayload::InnerMessage(p) => keep(p),
            _ => None,
        };
        match kept {
            Some(true) => out.push(m.to_vec()),
            Some(false) => {}
            None => {
                return Err(invalid(
                    name,
                    format!("a message of another kind: {:?}", parsed.payload),
                ))
            }
        }
    }
    Ok(out)
}

/// Reads the images of network namespace `id` (see the module's comment).
pub(crate) fn load(dir: &Path, id: u32) -> Result<NetImages, RestoreError> {
    for kind in ["iptables", "ip6tables"] {
        let name = format!("{kind}-{id}.img");
        let path = dir.join(&name);
        if path.exists() {
            let text = String::from_utf8_lossy(&read_file(&path)?).into_owned();
            if let Some(rule) = text.lines().find(|l| l.starts_with("-A ")) {
                return Err(unsupported(format!(
                    "{name}: firewall rules of a network namespace ({rule}; restore with \
                     --empty-ns net to have it made empty)"
                )));
            }
        }
    }
    // `nft list ruleset`'s text, given back to `nft -f -` in the namespace.
    let path = dir.join(format!("nftables-{id}.img"));
    let nftables = if path.exists() {
        String::from_utf8_lossy(&read_file(&path)?)
            .trim()
            .to_string()
    } else {
        String::new()
    };
    let name = format!("netdev-{id}.img");
    let path = dir.join(&name);
    if !path.exists() {
        return Err(unsupported(format!(
            "a network namespace without {name} (restore with --empty-ns net to have it \
             made empty)"
        )));
    }
    let bytes = read_file(&path)?;
    let devices: Vec<Net_device_entry> = ImageReader::new(&name, &bytes, "NETDEV")?.all()?;
    if !devices
        .iter()
        .any(|d| d.type_() == Nd_type::LOOPBACK && d.name() == "lo")
    {
        return Err(invalid(&name, "no loopback device"));
    }
    for d in &devices {
        match d.type_() {
            Nd_type::LOOPBACK if d.name() == "lo" => {}
            Nd_type::VETH if d.peer_nsid.is_none() => {}
            Nd_type::VETH => {
                return Err(unsupported(format!(
                    "{name}: veth device {} whose peer is in another namespace of the tree \
                     (crs restores veth devices whose peer is outside)",
                    d.name()
                )))
            }
            t => {
                return Err(unsupported(format!(
                    "{name}: device {} of type {t:?} (crs restores the loopback and veth \
                     devices)",
                    d.name()
                )))
            }
        }
    }
    // netns-ID.img: CRIU saves the namespace's ping_group_range and max_dgram_qlen there
    // (and its conf sysctls, which crs's dump refuses when they are not a new
    // namespace's).
    let mut sysctls = Vec::new();
    let name = format!("netns-{id}.img");
    if dir.join(&name).exists() {
        let e: Netns_entry = read_one(dir, &name, "NETNS")?;
        if let Some(v) = e.ipv4_sysctl.first().and_then(|s| s.sarg.clone()) {
            sysctls.push(("ipv4/ping_group_range", v));
        }
        if let Some(v) = e.unix_conf.first().and_then(|s| s.iarg) {
            sysctls.push(("unix/max_dgram_qlen", v.to_string()));
        }
    }
    let addr =
        |m: &RouteNetlinkMessage| matches!(m, RouteNetlinkMessage::NewAddress(_)).then_some(true);
    let route =
        |m: &RouteNetlinkMessage| matches!(m, RouteNetlinkMessage::NewRoute(_)).then_some(true);
    // A new namespace has the kernel's own rules already (the local, main and default
    // tables'): replayed, one without a priority would come back a second time.
    let rule = |m: &RouteNetlinkMessage| match m {
        RouteNetlinkMessage::NewRule(r) => Some(
            !r.attributes
                .iter()
                .any(|a| matches!(a, RuleAttribute::Protocol(RouteProtocol::Kernel))),
        ),
        _ => None,
    };
    let mut routes = saved(dir, &format!("route-{id}.img"), ROUTE_MAGIC, route)?;
    routes.extend(saved(dir, &format!("route6-{id}.img"), ROUTE_MAGIC, route)?);
    Ok(NetImages {
        devices,
        sysctls,
        nftables,
        addrs: saved(dir, &format!("ifaddr-{id}.img"), IFADDR_MAGIC, addr)?,
        routes,
        rules: saved(dir, &format!("rule-{id}.img"), RULE_MAGIC, rule)?,
    })
}

/// Runs `nft -f -` with `ruleset` from the calling thread (so in its network namespace).
fn nft_load(ruleset: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut child = std::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("running nft (the nftables package), which the ruleset needs: {e}"),
            )
        })?;
    let fed = child
        .stdin
        .take()
        .expect("piped")
        .write_all(ruleset.as_bytes());
    let out = child.wait_with_output()?;
    fed?;
    if !out.status.success() {
        return Err(std::io::Error::other(format!(
            "nft -f -: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// `--external veth[NAME]:OUTSIDE[@BRIDGE]` values: (NAME, OUTSIDE, BRIDGE).
pub fn parse_external_veth(v: &str) -> Option<(String, String, Option<String>)> {
    let rest = v.strip_prefix("veth[")?;
    let (inner, outer) = rest.split_once("]:")?;
    let (outer, bridge) = match outer.split_once('@') {
        Some((o, b)) => (o, Some(b.to_string())),
        None => (outer, None),
    };
    let ok = |n: &str| !n.is_empty() && n.len() < 16 && !n.contains(['/', ' ']);
    (ok(inner) && ok(outer) && bridge.as_deref().is_none_or(ok))
        .then(|| (inner.to_string(), outer.to_string(), bridge))
}

impl NetImages {
    /// Sets the new namespace of `root` up (see the module's comment); `external`: the
    /// `--external` values.
    pub(crate) fn set_up(&self, root: Tid, external: &[String]) -> Result<(), RestoreError> {
        let err = |what: String| {
            move |source| RestoreError::Namespace {
                pid: root,
                kind: "net",
                what,
                source,
            }
        };
        let peers = external
            .iter()
            .filter_map(|v| parse_external_veth(v))
            .collect::<Vec<_>>();
        let mut outside = Vec::new();
        for d in self.devices.iter().filter(|d| d.type_() == Nd_type::VETH) {
            let Some((_, out, bridge)) = peers.iter().find(|(i, _, _)| i == d.name()) else {
                return Err(unsupported(format!(
                    "veth device {} whose peer is outside the namespace: restore with \
                     --external veth[{}]:OUTSIDE_NAME[@BRIDGE] (CRIU's option)",
                    d.name(),
                    d.name()
                )));
            };
            outside.push((d, out.clone(), bridge.clone()));
        }
        // crs's own namespace, where the peers go.
        let own: OwnedFd = std::fs::File::open("/proc/self/ns/net")
            .map_err(err("opening crs's own".into()))?
            .into();
        within(root, &["net"], || {
            let mut rt = Rtnl::open().map_err(err("opening rtnetlink in".into()))?;
            for (d, out, _) in &outside {
                let mut peer = LinkMessage::default();
                peer.attributes.push(LinkAttribute::IfName(out.clone()));
                peer.attributes
                    .push(LinkAttribute::NetNsFd(own.as_raw_fd()));
                let mut l = LinkMessage::default();
                l.header.index = d.ifindex();
                l.attributes
                    .push(LinkAttribute::IfName(d.name().to_string()));
                l.attributes.push(LinkAttribute::Mtu(d.mtu()));
                if let Some(mac) = d.address.as_ref().filter(|a| !a.is_empty()) {
                    l.attributes.push(LinkAttribute::Address(mac.clone()));
                }
                l.attributes.push(LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
                ]));
                rt.apply(RouteNetlinkMessage::NewLink(l), NLM_F_CREATE | NLM_F_EXCL)
                    .map_err(err(format!(
                        "making veth {} (index {}, peer {out} outside) in",
                        d.name(),
                        d.ifindex()
                    )))?;
                debug!(name = d.name(), index = d.ifindex(), %out, "veth made");
            }
            for (f, v) in &self.sysctls {
                std::fs::write(format!("/proc/sys/net/{f}"), v).map_err(err(format!(
                    "setting net.{} to {v:?} in",
                    f.replace('/', ".")
                )))?;
            }
            for d in &self.devices {
                if d.type_() == Nd_type::LOOPBACK {
                    crs_sys::net::set_if_mtu(d.name(), d.mtu())
                        .map_err(err(format!("setting lo's MTU to {} in", d.mtu())))?;
                }
                crs_sys::net::set_if_flags(d.name(), d.flags()).map_err(err(format!(
                    "setting {}'s flags to {:#x} in",
                    d.name(),
                    d.flags()
                )))?;
            }
            if !self.nftables.is_empty() {
                nft_load(&self.nftables)
                    .map_err(err("loading the nftables ruleset into".into()))?;
            }
            for (what, msgs) in [
                ("an address", &self.addrs),
                ("a route", &self.routes),
                ("a routing rule", &self.rules),
            ] {
                for m in msgs {
                    rt.apply_raw(m, NLM_F_CREATE | NLM_F_EXCL)
                        .map_err(err(format!("restoring {what} in")))?;
                }
            }
            Ok(())
        })?;
        // The peers, outside: into their bridge, and up.
        let mut rt = Rtnl::open().map_err(err("opening rtnetlink in crs's namespace".into()))?;
        for (_, out, bridge) in outside {
            let Some(bridge) = bridge else { continue };
            let index = |name: &str| {
                crs_sys::net::if_index(name).map_err(err(format!("finding {name}, for")))
            };
            let mut l = LinkMessage::default();
            l.header.index = index(&out)?;
            l.header.flags = LinkFlags::Up;
            l.header.change_mask = LinkFlags::Up;
            l.attributes
                .push(LinkAttribute::Controller(index(&bridge)?));
            rt.apply(RouteNetlinkMessage::SetLink(l), 0)
                .map_err(err(format!("putting {out} in bridge {bridge} and up, for")))?;
            debug!(%out, %bridge, "veth peer in its bridge");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_veth_values_parsed() {
        assert_eq!(
            parse_external_veth("veth[eth0]:vh0@br0"),
            Some(("eth0".into(), "vh0".into(), Some("br0".into())))
        );
        assert_eq!(
            parse_external_veth("veth[eth0]:vh0"),
            Some(("eth0".into(), "vh0".into(), None))
        );
        assert_eq!(parse_external_veth("mnt[/a]:b"), None);
        assert_eq!(parse_external_veth("veth[]:x"), None);
        assert_eq!(
            parse_external_veth("veth[eth0]:averyveryverylongname"),
            None
        );
    }
}
