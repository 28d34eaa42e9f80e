//! The magic numbers that open CRIU image files (v1.1 images).
//!
//! A v1.1 image starts with a 32-bit "first" magic, [`IMG_COMMON`] for ordinary
//! images or [`IMG_SERVICE`] for service files (stats, irmap-cache), followed by
//! the image's own magic. `inventory.img` carries only its own magic. Raw
//! images (pages, tarballs, ip tool dumps) have no magic at all.

/// First magic of every ordinary v1.1 image.
pub const IMG_COMMON: u32 = 0x5456_4319;
/// First magic of service files (stats, irmap-cache).
pub const IMG_SERVICE: u32 = 0x5510_5940;
/// Magic of images that carry raw data with no header.
pub const RAW: u32 = 0;

/// What precedes the entries of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// `IMG_COMMON` then the image magic.
    Common,
    /// `IMG_SERVICE` then the image magic.
    Service,
    /// Only the image magic (inventory).
    Single,
}

impl Header {
    /// Bytes the header occupies.
    pub fn len(self) -> usize {
        match self {
            Header::Common | Header::Service => 8,
            Header::Single => 4,
        }
    }

    /// Always false: a header is never empty.
    pub fn is_empty(self) -> bool {
        false
    }
}

/// One known image magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Magic {
    /// crit's name for it (the `"magic"` key of the JSON form).
    pub name: &'static str,
    /// The 32-bit value stored after the first magic.
    pub value: u32,
    /// What precedes it in the file.
    pub header: Header,
}

macro_rules! magics {
    ($($name:literal = $value:literal $(, $hdr:ident)?;)*) => {
        /// Every image magic crs knows, by crit's names.
        pub const ALL: &[Magic] = &[
            $(Magic { name: $name, value: $value, header: magics!(@hdr $($hdr)?) },)*
        ];
    };
    (@hdr) => { Header::Common };
    (@hdr $hdr:ident) => { Header::$hdr };
}

// Values as CRIU 4.2 writes them (criu/include/magic.h).
magics! {
    "INVENTORY" = 0x5831_3116, Single;
    "PSTREE" = 0x5027_3030;
    "FDINFO" = 0x5621_3732;
    "PAGEMAP" = 0x5608_4025;
    "CORE" = 0x5505_3847;
    "IDS" = 0x5443_2030;
    "VMAS" = 0x5412_3737;
    "PIPES" = 0x5651_3555;
    "PIPES_DATA" = 0x5645_3709;
    "FIFO" = 0x5836_4939;
    "FIFO_DATA" = 0x5933_3054;
    "SIGACT" = 0x5534_4201;
    "UNIXSK" = 0x5437_3943;
    "INETSK" = 0x5644_3851;
    "PACKETSK" = 0x6045_4618;
    "ITIMERS" = 0x5746_4056;
    "POSIX_TIMERS" = 0x5260_3957;
    "SK_QUEUES" = 0x5626_4026;
    "UTSNS" = 0x5447_3203;
    "CREDS" = 0x5402_3547;
    "IPC_VAR" = 0x5311_5007;
    "IPCNS_SHM" = 0x4628_3044;
    "IPCNS_MSG" = 0x5545_3737;
    "IPCNS_SEM" = 0x5957_3019;
    "REG_FILES" = 0x5036_3636;
    "EXT_FILES" = 0x5925_5641;
    "FS" = 0x5140_3912;
    "MM" = 0x5749_2820;
    "REMAP_FPATH" = 0x5913_3954;
    "GHOST_FILE" = 0x5258_3605;
    "TCP_STREAM" = 0x5146_5506;
    "EVENTFD_FILE" = 0x4452_3722;
    "EVENTPOLL_FILE" = 0x4502_3858;
    "EVENTPOLL_TFD" = 0x4443_3746;
    "SIGNALFD" = 0x5732_3820;
    "INOTIFY_FILE" = 0x4842_4431;
    "INOTIFY_WD" = 0x5456_2009;
    "MNTS" = 0x5556_3928;
    "NETDEV" = 0x5737_3951;
    "NETNS" = 0x5593_3752;
    "TTY_FILES" = 0x5943_3025;
    "TTY_INFO" = 0x5945_3036;
    "TTY_DATA" = 0x5941_3026;
    "FILE_LOCKS" = 0x5432_3616;
    "RLIMIT" = 0x5711_3925;
    "FANOTIFY_FILE" = 0x5509_6122;
    "FANOTIFY_MARK" = 0x5650_6035;
    "SIGNAL" = 0x5925_5647;
    "NETLINK_SK" = 0x5800_5614;
    "NS_FILES" = 0x6139_4011;
    "TUNFILE" = 0x5714_3751;
    "CGROUP" = 0x5938_3330;
    "TIMERFD" = 0x5049_3712;
    "CPUINFO" = 0x6140_4013;
    "USERNS" = 0x5547_4906;
    "SECCOMP" = 0x6441_3049;
    "BINFMT_MISC" = 0x6734_3323;
    "AUTOFS" = 0x4935_3943;
    "FILES" = 0x5630_3138;
    "MEMFD_INODE" = 0x4845_3499;
    "TIMENS" = 0x4311_4433;
    "PIDNS" = 0x6115_7326;
    "BPFMAP_FILE" = 0x5750_6142;
    "BPFMAP_DATA" = 0x6432_4033;
    "APPARMOR" = 0x5942_3047;
    "STATS" = 0x5709_3306, Service;
    "IRMAP_CACHE" = 0x5700_4059, Service;
}

/// Looks a magic up by crit's name.
pub fn by_name(name: &str) -> Option<&'static Magic> {
    ALL.iter().find(|m| m.name == name)
}

/// Looks a magic up by its value. `SIGNAL` and the shared-memory pagemap share
/// values with other names in CRIU; the first name in the table wins, as in crit.
pub fn by_value(value: u32) -> Option<&'static Magic> {
    ALL.iter().find(|m| m.value == value)
}

/// Image files that hold raw data with no magic, recognised by file name.
/// Returns a short description of what the raw data is.
pub fn raw_image_kind(file_name: &str) -> Option<&'static str> {
    const RAW_PREFIXES: &[(&str, &str)] = &[
        ("pages-", "page contents"),
        ("tmpfs-dev-", "gzip'ed tar of a tmpfs"),
        ("tmpfs-", "gzip'ed tar of a tmpfs"),
        ("ifaddr-", "ip addr dump"),
        ("route-", "ip route dump"),
        ("route6-", "ip -6 route dump"),
        ("rule-", "ip rule dump"),
        ("iptables-", "iptables-save output"),
        ("ip6tables-", "ip6tables-save output"),
        ("nftables-", "nft ruleset"),
        ("netns-ct-", "conntrack dump"),
        ("netns-exp-", "conntrack expectations dump"),
    ];
    RAW_PREFIXES
        .iter()
        .find(|(p, _)| file_name.starts_with(p))
        .map(|(_, d)| *d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_table_values_unique_except_aliases() {
        let mut seen = std::collections::HashMap::new();
        for m in ALL {
            assert!(
                seen.insert(m.value, m.name).is_none(),
                "duplicate {}",
                m.name
            );
        }
    }

    #[test]
    fn by_value_inventory_single_header() {
        let m = by_value(0x5831_3116).unwrap();
        assert_eq!(m.name, "INVENTORY");
        assert_eq!(m.header, Header::Single);
    }

    #[test]
    fn raw_image_kind_pages_recognised() {
        assert_eq!(raw_image_kind("pages-1.img"), Some("page contents"));
        assert_eq!(raw_image_kind("core-1.img"), None);
    }
}
