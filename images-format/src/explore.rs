//! crit's `x DIR ps|fds|mems|rss`: quick views of a whole image directory.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use crate::codec::{decode_image, read_file, DecodeOptions};
use crate::error::{ImageError, Result};

struct Dir<'a> {
    dir: &'a Path,
    files: Option<Vec<Value>>,
    cache: HashMap<String, Vec<Value>>,
}

impl<'a> Dir<'a> {
    fn new(dir: &'a Path) -> Self {
        Dir {
            dir,
            files: None,
            cache: HashMap::new(),
        }
    }

    fn entries(&mut self, name: &str) -> Result<Vec<Value>> {
        if let Some(v) = self.cache.get(name) {
            return Ok(v.clone());
        }
        let path = self.dir.join(name);
        let bytes = read_file(&path)?;
        let v = decode_image(
            &path.display().to_string(),
            &bytes,
            DecodeOptions::default(),
        )?;
        let entries = v["entries"].as_array().cloned().unwrap_or_default();
        self.cache.insert(name.to_string(), entries.clone());
        Ok(entries)
    }

    fn first(&mut self, name: &str) -> Result<Value> {
        let path = self.dir.join(name).display().to_string();
        self.entries(name)?
            .into_iter()
            .next()
            .ok_or(ImageError::Invalid {
                image: path,
                entry: 0,
                offset: 0,
                what: "image has no entries".into(),
            })
    }

    /// A human name for file `id` of type `ty` ("REG", "PIPE", ...).
    fn file_str(&mut self, ty: &str, id: u64) -> String {
        if self.files.is_none() {
            self.files = Some(self.entries("files.img").unwrap_or_default());
        }
        let (field, img) = match ty {
            "REG" => ("reg", "reg-files.img"),
            "PIPE" => ("pipe", "pipes.img"),
            "UNIXSK" => ("usk", "unixsk.img"),
            _ => return format!("{ty}.{id}"),
        };
        let files = self.files.clone().unwrap_or_default();
        let found = if files.is_empty() {
            self.entries(img)
                .unwrap_or_default()
                .into_iter()
                .find(|f| f["id"].as_u64() == Some(id))
        } else {
            files
                .into_iter()
                .find(|f| f["id"].as_u64() == Some(id))
                .and_then(|f| f.get(field).cloned())
        };
        match (ty, found) {
            ("REG", Some(f)) => f["name"].as_str().unwrap_or("unknown path").to_string(),
            ("REG", None) => "unknown path".into(),
            ("PIPE", Some(p)) => format!("pipe[{}]", p["pipe_id"].as_u64().unwrap_or(0)),
            ("PIPE", None) => "pipe[?]".into(),
            ("UNIXSK", Some(u)) => {
                let name = u["name"].as_str().filter(|n| !n.is_empty());
                format!(
                    "unix[{} ({}){}]",
                    u["ino"].as_u64().unwrap_or(0),
                    u["peer"].as_u64().unwrap_or(0),
                    name.map(|n| format!(" {n}")).unwrap_or_default()
                )
            }
            _ => "unix[?]".into(),
        }
    }
}

/// A task id from a pstree entry: `pid` or the first of `ns_pid`.
fn task_id(p: &Value, what: &str) -> u64 {
    p.get(what)
        .and_then(Value::as_u64)
        .or_else(|| p.get(format!("ns_{what}")).and_then(|v| v[0].as_u64()))
        .unwrap_or(0)
}

/// `x DIR ps`: the process tree with pgid, sid and comm.
pub fn ps(dir: &Path) -> Result<String> {
    let mut d = Dir::new(dir);
    let tree = d.entries("pstree.img")?;
    let mut comm = BTreeMap::new();
    let mut kids: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut root = None;
    let mut rows = HashMap::new();
    for p in &tree {
        let pid = task_id(p, "pid");
        let core = d.first(&format!("core-{pid}.img"))?;
        comm.insert(pid, core["tc"]["comm"].as_str().unwrap_or("").to_string());
        rows.insert(pid, (task_id(p, "pgid"), task_id(p, "sid")));
        let ppid = p["ppid"].as_u64().unwrap_or(0);
        if ppid == 0 {
            root = Some(pid);
        } else {
            kids.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = format!("{:>7}{:>7}{:>7}   {}\n", "PID", "PGID", "SID", "COMM");
    fn show(
        out: &mut String,
        pid: u64,
        depth: usize,
        rows: &HashMap<u64, (u64, u64)>,
        comm: &BTreeMap<u64, String>,
        kids: &BTreeMap<u64, Vec<u64>>,
    ) {
        let (pgid, sid) = rows[&pid];
        let _ = writeln!(
            out,
            "{pid:>7}{pgid:>7}{sid:>7}   {}{}",
            " ".repeat(4 * depth),
            comm[&pid]
        );
        for k in kids.get(&pid).into_iter().flatten() {
            show(out, *k, depth + 1, rows, comm, kids);
        }
    }
    if let Some(r) = root {
        show(&mut out, r, 0, &rows, &comm, &kids);
    }
    Ok(out)
}

/// `x DIR fds`: each task's fds, cwd and root.
pub fn fds(dir: &Path) -> Result<String> {
    let mut d = Dir::new(dir);
    let mut out = String::new();
    for p in d.entries("pstree.img")? {
        let pid = task_id(&p, "pid");
        let ids = d.first(&format!("ids-{pid}.img"))?;
        let files_id = ids["files_id"].as_u64().unwrap_or(0);
        let _ = writeln!(out, "{pid}");
        for fd in d.entries(&format!("fdinfo-{files_id}.img"))? {
            let ty = fd["type"].as_str().unwrap_or("?").to_string();
            let s = d.file_str(&ty, fd["id"].as_u64().unwrap_or(0));
            let _ = writeln!(out, "\t{:>7}: {s}", fd["fd"].as_u64().unwrap_or(0));
        }
        let fs = d.first(&format!("fs-{pid}.img"))?;
        for (label, key) in [("cwd", "cwd_id"), ("root", "root_id")] {
            let s = d.file_str("REG", fs[key].as_u64().unwrap_or(0));
            let _ = writeln!(out, "\t{label:>7}: {s}");
        }
    }
    Ok(out)
}

/// `x DIR mems`: each task's exe and VMAs.
pub fn mems(dir: &Path) -> Result<String> {
    let mut d = Dir::new(dir);
    let mut out = String::new();
    let mut shm_ids: HashMap<u64, usize> = HashMap::new();
    let mut shm_id = |id: u64| {
        let n = shm_ids.len() + 1;
        *shm_ids.entry(id).or_insert(n)
    };
    for p in d.entries("pstree.img")? {
        let pid = task_id(&p, "pid");
        let mm = d.first(&format!("mm-{pid}.img"))?;
        let _ = writeln!(out, "{pid}");
        let exe = d.file_str("REG", mm["exe_file_id"].as_u64().unwrap_or(0));
        let _ = writeln!(out, "\t{:<36}    {exe}", "exe");
        for vma in mm["vmas"].as_array().into_iter().flatten() {
            let st = vma["status"].as_u64().unwrap_or(0);
            let shmid = vma["shmid"].as_u64().unwrap_or(0);
            let mut fname = if st & (1 << 10) != 0 {
                format!(" ips[{:x}]", shm_id(shmid))
            } else if st & (1 << 8) != 0 {
                format!(" shmem[{:x}]", shm_id(shmid))
            } else if st & (1 << 11) != 0 {
                format!(" packet[{:x}]", shm_id(shmid))
            } else if st & ((1 << 6) | (1 << 7)) != 0 {
                let mut s = format!(" {}", d.file_str("REG", shmid));
                let pgoff = vma["pgoff"].as_u64().unwrap_or(0);
                if pgoff != 0 {
                    let _ = write!(s, " + {pgoff:#x}");
                }
                if st & (1 << 7) != 0 {
                    s.push_str(" (s)");
                }
                s
            } else if st & (1 << 1) != 0 {
                " [stack]".into()
            } else if st & (1 << 2) != 0 {
                " [vsyscall]".into()
            } else if st & (1 << 3) != 0 {
                " [vdso]".into()
            } else if vma["flags"].as_u64().unwrap_or(0) & 0x100 != 0 {
                " [stack?]".into()
            } else {
                String::new()
            };
            if st & 1 == 0 {
                fname.push_str(" *");
            }
            let prot = vma["prot"].as_u64().unwrap_or(0);
            let perms: String = [(1, 'r'), (2, 'w'), (4, 'x')]
                .iter()
                .map(|(b, c)| if prot & b != 0 { *c } else { '-' })
                .collect();
            let range = format!(
                "{:08x}-{:08x}",
                vma["start"].as_u64().unwrap_or(0),
                vma["end"].as_u64().unwrap_or(0)
            );
            let _ = writeln!(out, "\t{range:<36}{perms}{fname}");
        }
    }
    Ok(out)
}

/// `x DIR rss`: each task's dumped page runs and the VMAs they fall in.
pub fn rss(dir: &Path) -> Result<String> {
    let mut d = Dir::new(dir);
    let mut out = String::new();
    for p in d.entries("pstree.img")? {
        let pid = task_id(&p, "pid");
        let vmas = d.first(&format!("mm-{pid}.img"))?["vmas"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let pms = d.entries(&format!("pagemap-{pid}.img"))?;
        let _ = writeln!(out, "{pid}");
        let u = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
        let mut vmi = 0usize;
        let mut pvmi: Option<usize> = None;
        for pm in pms.iter().skip(1) {
            let vaddr = u(pm, "vaddr");
            let nr = u(pm, "nr_pages");
            let pstr = format!("\t{vaddr:x} / {nr:<8}");
            while vmi < vmas.len() && u(&vmas[vmi], "end") <= vaddr {
                vmi += 1;
            }
            let pend = vaddr + (nr << 12);
            let mut vstr = String::new();
            while vmi < vmas.len() && u(&vmas[vmi], "start") < pend {
                let vma = &vmas[vmi];
                if pvmi == Some(vmi) {
                    vstr.push_str(" ~");
                } else {
                    let start = u(vma, "start");
                    let _ = write!(vstr, " {start:08x} / {:<8}", (u(vma, "end") - start) >> 12);
                    if u(vma, "status") & ((1 << 6) | (1 << 7)) != 0 {
                        let _ = write!(vstr, " {}", d.file_str("REG", u(vma, "shmid")));
                    }
                    pvmi = Some(vmi);
                }
                let _ = write!(vstr, "\n\t{:23}", "");
                vmi += 1;
            }
            vmi = vmi.saturating_sub(1);
            let _ = writeln!(out, "{pstr:<24}{vstr}");
        }
    }
    Ok(out)
}
