//! A network interface's flags, MTU and IPv4 addresses through the `SIOC*IF*` ioctls on a
//! datagram socket, in the network namespace of the calling thread.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: socket takes integers only; a non-negative result is a new fd we own.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An `ifreq` naming interface `name` (the rest zero).
fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?}"),
        ));
    }
    // SAFETY: ifreq is a name array and a union of plain integers, sockaddrs and a
    // pointer; all-zero is a valid value of each.
    let mut r: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in r.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(r)
}

/// Runs interface ioctl `req` on `r`.
fn ioctl(req: libc::c_ulong, r: &mut libc::ifreq) -> io::Result<()> {
    let s = socket()?;
    // SAFETY: the SIOC[GS]IF* requests read and write one `struct ifreq`, which `r` is,
    // alive across the call.
    if unsafe { libc::ioctl(s.as_raw_fd(), req as _, r as *mut libc::ifreq) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `SIOCGIFINDEX`: the interface's index.
pub fn if_index(name: &str) -> io::Result<u32> {
    let mut r = ifreq(name)?;
    ioctl(libc::SIOCGIFINDEX, &mut r)?;
    // SAFETY: SIOCGIFINDEX filled the union's ifindex member.
    Ok(unsafe { r.ifr_ifru.ifru_ifindex } as u32)
}

/// `SIOCGIFFLAGS`: the interface's flags (IFF_UP, ...).
pub fn if_flags(name: &str) -> io::Result<u32> {
    let mut r = ifreq(name)?;
    ioctl(libc::SIOCGIFFLAGS, &mut r)?;
    // SAFETY: SIOCGIFFLAGS filled the union's flags member.
    Ok(u32::from(unsafe { r.ifr_ifru.ifru_flags } as u16))
}

/// `SIOCSIFFLAGS`: sets the interface's flags (the settable ones: IFF_UP, ...).
pub fn set_if_flags(name: &str, flags: u32) -> io::Result<()> {
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_flags = flags as u16 as libc::c_short;
    ioctl(libc::SIOCSIFFLAGS, &mut r)
}

/// `SIOCGIFMTU`.
pub fn if_mtu(name: &str) -> io::Result<u32> {
    let mut r = ifreq(name)?;
    ioctl(libc::SIOCGIFMTU, &mut r)?;
    // SAFETY: SIOCGIFMTU filled the union's mtu member.
    Ok(unsafe { r.ifr_ifru.ifru_mtu } as u32)
}

/// `SIOCSIFMTU`.
pub fn set_if_mtu(name: &str, mtu: u32) -> io::Result<()> {
    let mut r = ifreq(name)?;
    r.ifr_ifru.ifru_mtu = mtu as libc::c_int;
    ioctl(libc::SIOCSIFMTU, &mut r)
}

/// `SIOCGIFCONF`: every IPv4 address of every interface (labels such as `lo:1` as the
/// kernel names them), as (interface, address).
pub fn ipv4_addresses() -> io::Result<Vec<(String, std::net::Ipv4Addr)>> {
    let s = socket()?;
    let mut cap = 16usize;
    loop {
        // SAFETY: as in `ifreq`: all-zero ifreqs are valid.
        let mut reqs: Vec<libc::ifreq> = (0..cap).map(|_| unsafe { std::mem::zeroed() }).collect();
        let len = cap * std::mem::size_of::<libc::ifreq>();
        let mut conf = libc::ifconf {
            ifc_len: len as libc::c_int,
            ifc_ifcu: libc::__c_anonymous_ifc_ifcu {
                ifcu_req: reqs.as_mut_ptr(),
            },
        };
        // SAFETY: SIOCGIFCONF writes at most `ifc_len` bytes of ifreqs through `ifcu_req`,
        // which points at `cap` of them, and sets `ifc_len` to the bytes written.
        if unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCGIFCONF as _, &mut conf) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let n = conf.ifc_len as usize / std::mem::size_of::<libc::ifreq>();
        if n == cap {
            // Perhaps cut short: ask again with more room.
            cap *= 4;
            continue;
        }
        let mut out = Vec::with_capacity(n);
        for r in &reqs[..n] {
            // SAFETY: the kernel NUL-terminates each name within IFNAMSIZ.
            let name = unsafe { CStr::from_ptr(r.ifr_name.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            // SAFETY: SIOCGIFCONF fills `ifru_addr` with an AF_INET sockaddr, whose
            // layout is sockaddr_in's; it is read as such only after the family check.
            let addr = unsafe { r.ifr_ifru.ifru_addr };
            if addr.sa_family == libc::AF_INET as libc::sa_family_t {
                // SAFETY: an AF_INET sockaddr is a sockaddr_in (same size as sockaddr).
                let sin: libc::sockaddr_in = unsafe { std::mem::transmute_copy(&addr) };
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                out.push((name, ip));
            }
        }
        return Ok(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_up_with_its_address_and_an_mtu() {
        let flags = if_flags("lo").unwrap();
        assert_ne!(flags & libc::IFF_UP as u32, 0);
        assert!(if_mtu("lo").unwrap() >= 1280);
        let addrs = ipv4_addresses().unwrap();
        assert!(addrs.contains(&("lo".to_string(), std::net::Ipv4Addr::LOCALHOST)));
    }

    #[test]
    fn interface_name_too_long_is_refused() {
        let err = if_flags("a-very-long-interface-name").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
