//! Reads real processes through the I/O layer: this test process itself, and a child it
//! starts (killed and reaped by a guard, even on panic).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crs_proc::{
    Error, LockClass, ProcDir, ProcFile, Resource, TaskState, VmFlag, VmaName, AT_NULL,
};
use rustix::process::{getrlimit, waitid, WaitId, WaitIdOptions};

const AT_PAGESZ: u64 = 6;

/// Kills and reaps the child on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_sleeper() -> ChildGuard {
    ChildGuard(
        Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning sleep"),
    )
}

fn me() -> ProcDir {
    ProcDir::open(std::process::id() as i32).expect("opening /proc/self through ProcDir")
}

#[test]
fn procdir_self_stat_and_status_agree() {
    let p = me();
    let stat = p.stat().unwrap();
    let status = p.status().unwrap();
    assert_eq!(stat.pid, p.pid());
    assert_eq!(status.tgid, p.pid());
    assert_eq!(stat.ppid, status.ppid);
    assert_eq!(stat.comm, status.name);
    assert_eq!(status.ns_pid.last().copied(), Some(p.pid()));
    assert!(p.is_alive().unwrap());
    assert_eq!(p.path(), PathBuf::from(format!("/proc/{}", p.pid())));
}

#[test]
fn procdir_self_maps_and_smaps_have_special_vmas() {
    let p = me();
    let maps = p.maps().unwrap();
    assert!(maps.iter().any(|v| v.name == VmaName::Stack));
    assert!(maps.iter().any(|v| v.name == VmaName::Vdso));
    let smaps = p.smaps().unwrap();
    let stack = smaps.iter().find(|e| e.vma.name == VmaName::Stack).unwrap();
    assert!(stack.vm_flags.contains(VmFlag::GrowsDown));
    assert!(stack.sizes.rss > 0);
}

#[test]
fn procdir_self_links_match_std() {
    let p = me();
    assert_eq!(p.exe().unwrap(), std::env::current_exe().unwrap());
    assert_eq!(p.cwd().unwrap(), std::env::current_dir().unwrap());
    assert_eq!(p.root().unwrap(), PathBuf::from("/"));
    // The executable is mapped; map_files names the same file.
    let exe = p.exe().unwrap();
    let vma = p
        .maps()
        .unwrap()
        .into_iter()
        .find(|v| matches!(&v.name, VmaName::File { path, .. } if *path == exe))
        .unwrap();
    assert_eq!(p.map_file_link(vma.start, vma.end).unwrap(), exe);
    let fd = p.open_map_file(vma.start, vma.end, true).unwrap();
    let meta = std::fs::File::from(fd).metadata().unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::ino(&meta), vma.inode);
}

#[test]
fn procdir_self_fd_link_and_fdinfo_read() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let p = me();
    let path = std::env::current_exe().unwrap();
    let mut f = std::fs::File::open(&path).unwrap();
    let mut buf = [0u8; 100];
    f.read_exact(&mut buf).unwrap();
    let fd = f.as_raw_fd();
    assert!(p.fds().unwrap().contains(&fd));
    assert_eq!(p.fd_link(fd).unwrap(), path);
    let info = p.fdinfo(fd).unwrap();
    assert_eq!(info.pos, 100);
    assert_eq!(
        info.flags & 0o2000000,
        0o2000000,
        "std opens with O_CLOEXEC"
    );
    // The pidfd the ProcDir holds is a pidfd naming us.
    let pinfo = p.fdinfo(p.pidfd().as_raw_fd()).unwrap();
    assert_eq!(pinfo.pidfd.unwrap().pid, p.pid());
}

#[test]
fn procdir_self_limits_match_getrlimit() {
    let p = me();
    let l = p.limits().unwrap().get(Resource::Nofile).unwrap();
    let r = getrlimit(rustix::process::Resource::Nofile);
    assert_eq!((l.soft, l.hard), (r.current, r.maximum));
}

#[test]
fn procdir_self_misc_files_parse() {
    let p = me();
    let auxv = p.auxv().unwrap();
    assert_eq!(auxv.get(AT_PAGESZ), Some(4096));
    assert_eq!(auxv.to_words().last(), Some(&AT_NULL));
    assert!(!p.cgroup().unwrap().is_empty());
    assert!(p
        .mountinfo()
        .unwrap()
        .iter()
        .any(|m| m.mount_point.as_path() == std::path::Path::new("/")));
    p.timers().unwrap();
    p.personality().unwrap();
    p.loginuid().unwrap();
    p.net_unix().unwrap();
    for kind in [
        ProcFile::NetTcp,
        ProcFile::NetTcp6,
        ProcFile::NetUdp,
        ProcFile::NetUdp6,
    ] {
        p.net_inet(kind).unwrap();
    }
    let ns = p.ns_links().unwrap();
    let net = ns.iter().find(|(n, _)| n == "net").unwrap();
    assert_eq!(net.1.kind, "net");
    assert_eq!(p.ns_link("mnt").unwrap().kind, "mnt");
    for l in crs_proc::read_locks().unwrap() {
        assert_ne!(l.class, LockClass::Other(String::new()));
    }
}

#[test]
fn procdir_self_tasks_include_leader() {
    let p = me();
    let tasks = p.tasks().unwrap();
    assert!(tasks.contains(&p.pid()));
    let t = p.task(p.pid()).unwrap();
    assert_eq!(t.tid(), p.pid());
    assert_eq!(t.stat().unwrap().pid, p.pid());
    assert_eq!(t.status().unwrap().pid, p.pid());
    t.children().unwrap();
    assert_eq!(t.ns_link("pid").unwrap().kind, "pid");
}

#[test]
fn procdir_self_pagemap_shows_touched_page_present() {
    let p = me();
    let mut buf = vec![0u8; 3 * 4096];
    for b in buf.iter_mut().step_by(512) {
        *b = 1;
    }
    let addr = (buf.as_ptr() as u64).next_multiple_of(4096);
    let e = p.pagemap().unwrap().read(addr, 1).unwrap();
    assert!(e[0].present(), "{:#x}", e[0].0);
    assert!(!e[0].file_or_shared());
    std::hint::black_box(&buf);
}

#[test]
fn procdir_child_listed_zombie_then_gone() {
    let me = me();
    let mut child = spawn_sleeper();
    let cpid = child.0.id() as i32;
    assert!(me.children().unwrap().contains(&cpid));
    let c = ProcDir::open(cpid).unwrap();
    assert_eq!(c.stat().unwrap().ppid, me.pid());

    child.0.kill().unwrap();
    // Wait for the exit without reaping: the child is now a zombie.
    waitid(
        WaitId::PidFd(c.pidfd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
    )
    .unwrap();
    assert!(c.is_alive().unwrap(), "a zombie is not reaped yet");
    assert_eq!(c.stat().unwrap().state, TaskState::Zombie);

    child.0.wait().unwrap();
    assert!(!c.is_alive().unwrap());
    // The directory stays bound to the dead process: reads fail, they never reach a new
    // process that reuses the pid.
    assert!(matches!(c.stat(), Err(Error::Read { .. })));
}

#[test]
fn procdir_pidfd_of_other_process_is_mismatch() {
    let child = spawn_sleeper();
    let cpid = child.0.id() as i32;
    let pidfd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(cpid).unwrap(),
        rustix::process::PidfdFlags::empty(),
    )
    .unwrap();
    let me = std::process::id() as i32;
    let e = ProcDir::open_with_pidfd(me, pidfd).unwrap_err();
    assert!(
        matches!(e, Error::PidfdMismatch { pid, found } if pid == me && found == cpid),
        "{e}"
    );
    drop(child);
}

#[test]
fn procdir_bad_pid_is_error() {
    assert!(matches!(ProcDir::open(0), Err(Error::PidfdOpen { .. })));
    assert!(matches!(ProcDir::open(-5), Err(Error::PidfdOpen { .. })));
    let p = me();
    assert!(matches!(p.task(i32::MAX), Err(Error::OpenDir { .. })));
    let e = p.fdinfo(1 << 30).unwrap_err();
    assert!(e.to_string().contains("fdinfo/1073741824"), "{e}");
}

/// This thread's id, from /proc/thread-self.
fn my_tid() -> i32 {
    std::fs::read_link("/proc/thread-self")
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn prefetched_file_is_read_once_then_fresh() {
    let tid = my_tid();
    let comm = "/proc/thread-self/comm";
    std::fs::write(comm, "crs-before").unwrap();
    let p = me();
    p.prefetch(&[format!("task/{tid}/comm"), "no-such-file".to_string()]);
    std::fs::write(comm, "crs-after").unwrap();
    // Prefetched bytes move with the thread's directory and are handed out once.
    let t = p.task(tid).unwrap();
    assert_eq!(t.read("comm").unwrap(), b"crs-before\n");
    assert_eq!(t.read("comm").unwrap(), b"crs-after\n");
    // A second task() finds nothing left to hand out.
    assert_eq!(p.task(tid).unwrap().read("comm").unwrap(), b"crs-after\n");
    // What could not be read then is an error now, as without the prefetch.
    assert!(p.read("no-such-file").is_err());
}
