//! CRIU 4.2's page-server protocol, both ends: [`serve`] receives the pages of a dump and
//! writes them as `pagemap-*.img` and `pages-N.img` into its own directory (`crs
//! page-server`), [`ship`] sends the pages of a finished dump to a page server and
//! removes them from the local directory (`crs dump --page-server`). crs and CRIU
//! interoperate both ways.
//!
//! The protocol, over a TCP connection or a connected socket passed in (`--ps-socket`): a
//! stream of 32-byte commands (`u32 cmd` with flags in its upper 16 bits, 4 bytes of
//! padding, `u64 nr_pages`, `u64 vaddr`, `u64 dst_id`, native byte order; `dst_id` is the
//! image id shifted left by 8 over the image type, 1 for a process's pagemap, 2 for shared
//! memory's). `OPEN2` starts the pagemap of `dst_id` and is answered with one byte, whether
//! the server has a parent image set (never, here: no pre-dump chains yet); `ADD_F` adds a
//! pagemap entry with its flags and, when the flags say `PE_PRESENT`, is followed by its
//! `nr_pages * 4096` bytes; `CLOSE` (or `FORCE_CLOSE` on a socket passed in) ends the
//! session and is answered with an `i32` status. A server numbers the pages images it
//! writes from 1, in the order the pagemaps are opened.
//!
//! `ship` sends what the dump already wrote to its directory, one pagemap after another,
//! the pages straight from their file (sendfile by `std::io::copy`): the dump's page
//! pipeline is unchanged, and its images are complete before anything leaves the host.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crs_images::codec::{read_file, ImageReader, ImageWriter};
use crs_images::pb::pagemap::{Pagemap_entry, Pagemap_head};
use tracing::{debug, info};

/// Bytes of one command on the wire.
pub const PSI_LEN: usize = 32;
const PAGE_SIZE: u64 = 4096;

/// Commands (the low 16 bits of `cmd`).
pub mod cmd {
    pub const ADD: u32 = 1;
    pub const HOLE: u32 = 2;
    pub const OPEN: u32 = 3;
    pub const OPEN2: u32 = 4;
    pub const PARENT: u32 = 5;
    pub const ADD_F: u32 = 6;
    pub const GET: u32 = 7;
    pub const CLOSE: u32 = 0x1023;
    pub const FORCE_CLOSE: u32 = 0x1024;
}

/// Pagemap entry flags.
pub const PE_PARENT: u32 = 1 << 0;
pub const PE_LAZY: u32 = 1 << 1;
pub const PE_PRESENT: u32 = 1 << 2;

/// Image types of `dst_id`.
const TYPE_PID: u64 = 1;
const TYPE_SHMEM: u64 = 2;

/// What went wrong on either end.
#[derive(Debug, thiserror::Error)]
pub enum PageServerError {
    #[error("page server connection: {what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("page server protocol: {0}")]
    Protocol(String),
    #[error("page server: {0} is not supported by crs yet")]
    Unsupported(&'static str),
    #[error("page server image {path}")]
    Image {
        path: PathBuf,
        #[source]
        source: crs_images::ImageError,
    },
    #[error("the page server answered status {0}")]
    Status(i32),
}

type Result<T> = std::result::Result<T, PageServerError>;

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PageServerError {
    let what = what.into();
    move |source| PageServerError::Io { what, source }
}

/// One command (CRIU's `struct page_server_iov`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Psi {
    pub cmd: u32,
    pub nr_pages: u64,
    pub vaddr: u64,
    pub dst_id: u64,
}

impl Psi {
    /// The wire form.
    pub fn to_bytes(self) -> [u8; PSI_LEN] {
        let mut b = [0u8; PSI_LEN];
        b[0..4].copy_from_slice(&self.cmd.to_ne_bytes());
        b[8..16].copy_from_slice(&self.nr_pages.to_ne_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_ne_bytes());
        b[24..32].copy_from_slice(&self.dst_id.to_ne_bytes());
        b
    }

    /// Parses the wire form.
    pub fn parse(b: &[u8; PSI_LEN]) -> Psi {
        let u64_at = |o: usize| u64::from_ne_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        Psi {
            cmd: u32::from_ne_bytes(b[0..4].try_into().expect("4 bytes")),
            nr_pages: u64_at(8),
            vaddr: u64_at(16),
            dst_id: u64_at(24),
        }
    }

    /// The command without its flags.
    pub fn command(self) -> u32 {
        self.cmd & 0xffff
    }

    /// The flags carried by `ADD_F`.
    pub fn flags(self) -> u32 {
        self.cmd >> 16
    }
}

/// The `dst_id` of a pagemap image.
fn dst_id(kind: Pagemap, id: u64) -> u64 {
    let t = match kind {
        Pagemap::Process => TYPE_PID,
        Pagemap::Shmem => TYPE_SHMEM,
    };
    (id << 8) | t
}

/// Which pagemap image a `dst_id` names: `pagemap-<id>.img` or `pagemap-shmem-<id>.img`.
pub fn image_of(dst_id: u64) -> Result<String> {
    let id = dst_id >> 8;
    match dst_id & 0xff {
        TYPE_PID => Ok(format!("pagemap-{id}.img")),
        TYPE_SHMEM => Ok(format!("pagemap-shmem-{id}.img")),
        t => Err(PageServerError::Protocol(format!(
            "unknown pagemap type {t} in dst_id {dst_id:#x}"
        ))),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pagemap {
    Process,
    Shmem,
}

/// The pagemap images of a directory, with their kind and id: processes first, then
/// shared memory, each by id.
fn pagemaps(dir: &Path) -> Result<Vec<(Pagemap, u64, String)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))? {
        let e = e.map_err(io_err(format!("listing {}", dir.display())))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name
            .strip_prefix("pagemap-")
            .and_then(|s| s.strip_suffix(".img"))
        else {
            continue;
        };
        let (kind, id) = match stem.strip_prefix("shmem-") {
            Some(id) => (Pagemap::Shmem, id),
            None => (Pagemap::Process, stem),
        };
        let Ok(id) = id.parse::<u64>() else { continue };
        out.push((kind, id, name));
    }
    out.sort_by_key(|(k, id, _)| (*k == Pagemap::Shmem, *id));
    Ok(out)
}

fn send(sk: &mut impl Write, p: Psi) -> Result<()> {
    sk.write_all(&p.to_bytes())
        .map_err(io_err(format!("sending command {:#x}", p.cmd)))
}

/// What [`ship`] sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Shipped {
    pub pagemaps: usize,
    pub pages: u64,
}

/// Sends every pagemap of the dump in `dir` with its pages to the page server at the
/// other end of `sk`, then removes them from `dir` (as a CRIU dump with a page server
/// leaves none locally). `force_close`: the socket was passed in, so the server is told to
/// end (CRIU's `FORCE_CLOSE`) rather than waiting for the connection to close.
pub fn ship(dir: &Path, sk: &mut (impl Read + Write), force_close: bool) -> Result<Shipped> {
    let mut done = Shipped::default();
    let mut sent_files = Vec::new();
    for (kind, id, name) in pagemaps(dir)? {
        let path = dir.join(&name);
        let bytes = read_file(&path).map_err(|source| PageServerError::Image {
            path: path.clone(),
            source,
        })?;
        let image_err = |source| PageServerError::Image {
            path: path.clone(),
            source,
        };
        let mut r = ImageReader::new(&name, &bytes, "PAGEMAP").map_err(image_err)?;
        let head: Pagemap_head = r
            .next()
            .map_err(image_err)?
            .ok_or_else(|| PageServerError::Protocol(format!("{name} has no pagemap head")))?;
        let entries: Vec<Pagemap_entry> = r.all().map_err(image_err)?;
        let pages_path = dir.join(format!("pages-{}.img", head.pages_id()));
        let mut pages =
            File::open(&pages_path).map_err(io_err(format!("opening {}", pages_path.display())))?;
        let dst = dst_id(kind, id);
        send(
            sk,
            Psi {
                cmd: cmd::OPEN2,
                dst_id: dst,
                ..Default::default()
            },
        )?;
        let mut has_parent = [0u8; 1];
        sk.read_exact(&mut has_parent)
            .map_err(io_err(format!("the answer to opening {name}")))?;
        for e in &entries {
            let flags = e.flags.unwrap_or(PE_PRESENT);
            if e.in_parent() || flags & PE_PARENT != 0 {
                return Err(PageServerError::Unsupported("pages in a parent image set"));
            }
            send(
                sk,
                Psi {
                    cmd: (flags << 16) | cmd::ADD_F,
                    nr_pages: e.nr_pages(),
                    vaddr: e.vaddr(),
                    dst_id: dst,
                },
            )?;
            if flags & PE_PRESENT != 0 {
                let len = e.nr_pages() * PAGE_SIZE;
                let n = io::copy(&mut (&mut pages).take(len), sk)
                    .map_err(io_err(format!("sending the pages of {name}")))?;
                if n != len {
                    return Err(PageServerError::Protocol(format!(
                        "{} ends {} bytes short of {name}'s entries",
                        pages_path.display(),
                        len - n
                    )));
                }
                done.pages += e.nr_pages();
            }
        }
        debug!(image = %name, entries = entries.len(), "pagemap sent to the page server");
        done.pagemaps += 1;
        sent_files.push(path);
        sent_files.push(pages_path);
    }
    send(
        sk,
        Psi {
            cmd: if force_close {
                cmd::FORCE_CLOSE
            } else {
                cmd::CLOSE
            },
            ..Default::default()
        },
    )?;
    let mut status = [0u8; 4];
    sk.read_exact(&mut status)
        .map_err(io_err("the page server's final status"))?;
    let status = i32::from_ne_bytes(status);
    if status != 0 {
        return Err(PageServerError::Status(status));
    }
    for f in sent_files {
        fs::remove_file(&f).map_err(io_err(format!("removing {}", f.display())))?;
    }
    info!(
        pagemaps = done.pagemaps,
        pages = done.pages,
        "pages sent to the page server"
    );
    Ok(done)
}

/// The pagemap being received.
struct Receiving {
    dst_id: u64,
    image: String,
    pagemap: ImageWriter,
    pages_name: String,
    pages: File,
}

/// What [`serve`] received.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Served {
    pub pagemaps: usize,
    pub pages: u64,
}

/// Serves one dump on `sk`: writes each pagemap it is sent, with its pages, into `dir`,
/// until the dumper closes the session. Returns once the session is closed (and, unless
/// `passed_in`, the connection too).
pub fn serve(dir: &Path, sk: &mut (impl Read + Write), passed_in: bool) -> Result<Served> {
    let mut served = Served::default();
    let mut next_pages_id = 1u32;
    let mut cur: Option<Receiving> = None;
    let mut closed = false;
    loop {
        let mut b = [0u8; PSI_LEN];
        if !read_command(sk, &mut b)? {
            break;
        }
        let p = Psi::parse(&b);
        match p.command() {
            cmd::OPEN | cmd::OPEN2 => {
                finish(dir, cur.take())?;
                cur = Some(open(dir, p.dst_id, &mut next_pages_id)?);
                served.pagemaps += 1;
                if p.command() == cmd::OPEN2 {
                    sk.write_all(&[0])
                        .map_err(io_err("answering an open (no parent images)"))?;
                }
            }
            cmd::ADD_F | cmd::ADD | cmd::HOLE => {
                let flags = match p.command() {
                    cmd::ADD_F => p.flags(),
                    cmd::ADD => PE_PRESENT,
                    _ => PE_PARENT,
                };
                if flags & PE_PARENT != 0 {
                    return Err(PageServerError::Unsupported("pages in a parent image set"));
                }
                if cur.as_ref().is_none_or(|c| c.dst_id != p.dst_id) {
                    // An add without an open (old CRIUs): opens implicitly.
                    finish(dir, cur.take())?;
                    cur = Some(open(dir, p.dst_id, &mut next_pages_id)?);
                    served.pagemaps += 1;
                }
                let c = cur.as_mut().expect("opened above");
                c.pagemap
                    .push(&Pagemap_entry {
                        vaddr: Some(p.vaddr),
                        compat_nr_pages: Some(0),
                        flags: Some(flags),
                        nr_pages: Some(p.nr_pages),
                        ..Default::default()
                    })
                    .map_err(|source| PageServerError::Image {
                        path: dir.join(&c.image),
                        source,
                    })?;
                if flags & PE_PRESENT != 0 {
                    let len = p.nr_pages.checked_mul(PAGE_SIZE).ok_or_else(|| {
                        PageServerError::Protocol(format!("{} pages", p.nr_pages))
                    })?;
                    let n = io::copy(&mut Read::by_ref(sk).take(len), &mut c.pages)
                        .map_err(io_err(format!("receiving pages into {}", c.pages_name)))?;
                    if n != len {
                        return Err(PageServerError::Protocol(format!(
                            "the connection closed {} bytes into {} bytes of pages at {:#x}",
                            n, len, p.vaddr
                        )));
                    }
                    served.pages += p.nr_pages;
                }
            }
            cmd::CLOSE | cmd::FORCE_CLOSE => {
                finish(dir, cur.take())?;
                sk.write_all(&0i32.to_ne_bytes())
                    .map_err(io_err("sending the final status"))?;
                closed = true;
                if p.command() == cmd::FORCE_CLOSE || passed_in {
                    break;
                }
                // The dumper closes the connection once it has the status.
                let mut rest = Vec::new();
                let _ = sk.read_to_end(&mut rest);
                break;
            }
            cmd::PARENT => {
                return Err(PageServerError::Unsupported(
                    "parent image sets (pre-dump chains)",
                ))
            }
            cmd::GET => return Err(PageServerError::Unsupported("lazy pages (PS_IOV_GET)")),
            other => {
                return Err(PageServerError::Protocol(format!(
                    "unknown command {other:#x}"
                )))
            }
        }
    }
    if !closed {
        return Err(PageServerError::Protocol(
            "the connection ended before the dumper closed the session: the pages are \
             incomplete"
                .into(),
        ));
    }
    info!(
        pagemaps = served.pagemaps,
        pages = served.pages,
        "page server session done"
    );
    Ok(served)
}

/// Reads one command; false at a clean end of the stream (before any byte of it).
fn read_command(sk: &mut impl Read, b: &mut [u8; PSI_LEN]) -> Result<bool> {
    let mut got = 0;
    while got < PSI_LEN {
        match sk.read(&mut b[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(PageServerError::Protocol(format!(
                    "the connection closed {got} bytes into a command"
                )))
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err("reading a command")(e)),
        }
    }
    Ok(true)
}

fn open(dir: &Path, dst_id: u64, next_pages_id: &mut u32) -> Result<Receiving> {
    let image = image_of(dst_id)?;
    let pages_id = *next_pages_id;
    *next_pages_id += 1;
    let pages_name = format!("pages-{pages_id}.img");
    let pages_path = dir.join(&pages_name);
    let pages =
        File::create(&pages_path).map_err(io_err(format!("creating {}", pages_path.display())))?;
    let mut pagemap = ImageWriter::new(image.clone(), "PAGEMAP");
    pagemap
        .push(&Pagemap_head {
            pages_id: Some(pages_id),
            ..Default::default()
        })
        .map_err(|source| PageServerError::Image {
            path: dir.join(&image),
            source,
        })?;
    debug!(%image, pages = %pages_name, "receiving a pagemap");
    Ok(Receiving {
        dst_id,
        image,
        pagemap,
        pages_name,
        pages,
    })
}

/// Writes the pagemap image of a finished pagemap (its pages are in their file already).
fn finish(dir: &Path, r: Option<Receiving>) -> Result<()> {
    let Some(r) = r else { return Ok(()) };
    r.pages
        .sync_data()
        .map_err(io_err(format!("writing {}", r.pages_name)))?;
    let path = dir.join(&r.image);
    let tmp = dir.join(format!(".{}.tmp", r.image));
    fs::write(&tmp, r.pagemap.into_bytes())
        .map_err(io_err(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, &path).map_err(io_err(format!("renaming to {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_32_bytes_with_criu_layout() {
        let p = Psi {
            cmd: (PE_PRESENT << 16) | cmd::ADD_F,
            nr_pages: 3,
            vaddr: 0x7f00_0000_1000,
            dst_id: (1234 << 8) | TYPE_PID,
        };
        let b = p.to_bytes();
        assert_eq!(&b[0..4], &((4u32 << 16) | 6).to_ne_bytes());
        assert_eq!(&b[4..8], &[0; 4], "padding after cmd");
        assert_eq!(&b[8..16], &3u64.to_ne_bytes());
        assert_eq!(Psi::parse(&b), p);
        assert_eq!(p.command(), cmd::ADD_F);
        assert_eq!(p.flags(), PE_PRESENT);
    }

    #[test]
    fn dst_id_names_the_image() {
        assert_eq!(
            image_of(dst_id(Pagemap::Process, 71000)).unwrap(),
            "pagemap-71000.img"
        );
        assert_eq!(
            image_of(dst_id(Pagemap::Shmem, 9)).unwrap(),
            "pagemap-shmem-9.img"
        );
        assert!(image_of(3).is_err());
    }

    /// A dump directory with one process's pagemap (two entries, one lazy) and pages.
    fn dump_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let mut pm = ImageWriter::new("pagemap-42.img", "PAGEMAP");
        pm.push(&Pagemap_head {
            pages_id: Some(1),
            ..Default::default()
        })
        .unwrap();
        for (vaddr, n, flags) in [
            (0x1000u64, 2u64, PE_PRESENT),
            (0x9000, 1, PE_LAZY | PE_PRESENT),
        ] {
            pm.push(&Pagemap_entry {
                vaddr: Some(vaddr),
                compat_nr_pages: Some(0),
                flags: Some(flags),
                nr_pages: Some(n),
                ..Default::default()
            })
            .unwrap();
        }
        fs::write(d.path().join("pagemap-42.img"), pm.into_bytes()).unwrap();
        let pages: Vec<u8> = (0..3 * PAGE_SIZE).map(|i| (i % 251) as u8).collect();
        fs::write(d.path().join("pages-1.img"), pages).unwrap();
        fs::write(d.path().join("core-42.img"), b"not shipped").unwrap();
        d
    }

    #[test]
    fn ship_then_serve_reproduces_the_images_and_removes_them_locally() {
        let from = dump_dir();
        let before_pm = fs::read(from.path().join("pagemap-42.img")).unwrap();
        let before_pages = fs::read(from.path().join("pages-1.img")).unwrap();
        let to = tempfile::tempdir().unwrap();
        let (mut a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
        let to_path = to.path().to_path_buf();
        let server = std::thread::spawn(move || serve(&to_path, &mut b, true));
        let shipped = ship(from.path(), &mut a, true).unwrap();
        let served = server.join().unwrap().unwrap();
        assert_eq!(
            shipped,
            Shipped {
                pagemaps: 1,
                pages: 3
            }
        );
        assert_eq!(
            served,
            Served {
                pagemaps: 1,
                pages: 3
            }
        );
        assert_eq!(
            fs::read(to.path().join("pagemap-42.img")).unwrap(),
            before_pm
        );
        assert_eq!(
            fs::read(to.path().join("pages-1.img")).unwrap(),
            before_pages
        );
        assert!(!from.path().join("pagemap-42.img").exists());
        assert!(!from.path().join("pages-1.img").exists());
        assert!(from.path().join("core-42.img").exists());
    }

    #[test]
    fn serve_refuses_a_connection_that_ends_before_close() {
        let to = tempfile::tempdir().unwrap();
        let open = Psi {
            cmd: cmd::OPEN,
            dst_id: (7 << 8) | TYPE_PID,
            ..Default::default()
        };
        let mut wire = io::Cursor::new(open.to_bytes().to_vec());
        let mut sk = ReadWrite(&mut wire, Vec::new());
        let e = serve(to.path(), &mut sk, true).unwrap_err();
        assert!(e.to_string().contains("before the dumper closed"), "{e}");
    }

    #[test]
    fn serve_refuses_lazy_and_parent_requests_by_name() {
        for (c, what) in [(cmd::GET, "lazy pages"), (cmd::PARENT, "parent image sets")] {
            let to = tempfile::tempdir().unwrap();
            let p = Psi {
                cmd: c,
                ..Default::default()
            };
            let mut wire = io::Cursor::new(p.to_bytes().to_vec());
            let mut sk = ReadWrite(&mut wire, Vec::new());
            let e = serve(to.path(), &mut sk, true).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        }
    }

    /// Reads from one side, writes into a buffer.
    struct ReadWrite<'a>(&'a mut io::Cursor<Vec<u8>>, Vec<u8>);
    impl Read for ReadWrite<'_> {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            self.0.read(b)
        }
    }
    impl Write for ReadWrite<'_> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.1.write(b)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
