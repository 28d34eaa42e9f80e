//! Compiles every C workload of the dump/restore zoo (`workloads/*.c`) with gcc into
//! `$OUT_DIR/zoo/<name>`, statically linked where the toolchain allows it, and tells the
//! tests where they are with `ZOO_DIR`. `CC` overrides the compiler.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

fn compile(cc: &str, src: &Path, out: &Path, static_link: bool) -> std::io::Result<Child> {
    let mut cmd = Command::new(cc);
    cmd.args(["-O2", "-Wall", "-Wextra", "-std=gnu11"]);
    if static_link {
        cmd.arg("-static");
    }
    cmd.arg("-o").arg(out).arg(src).spawn()
}

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let src_dir = manifest.join("workloads");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("zoo");
    std::fs::create_dir_all(&out_dir).expect("create $OUT_DIR/zoo");
    let cc = env::var("CC").unwrap_or_else(|_| "gcc".to_owned());

    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rerun-if-changed={}", src_dir.display());
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&src_dir)
        .expect("read workloads/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("c" | "h")))
        .collect();
    sources.sort();
    for p in &sources {
        println!("cargo:rerun-if-changed={}", p.display());
    }

    // Start every compile at once, then collect; retry dynamically linked on failure.
    let jobs: Vec<(PathBuf, PathBuf, Child)> = sources
        .iter()
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("c"))
        .map(|src| {
            let name = src.file_stem().expect("file stem");
            let out = out_dir.join(name);
            let child = compile(&cc, src, &out, true)
                .unwrap_or_else(|e| panic!("running {cc} (needed for the zoo workloads): {e}"));
            (src.clone(), out, child)
        })
        .collect();
    for (src, out, mut child) in jobs {
        let st = child.wait().expect("wait for the compiler");
        if st.success() {
            continue;
        }
        println!(
            "cargo:warning=static link of {} failed; linking it dynamically",
            src.display()
        );
        let st = compile(&cc, &src, &out, false)
            .and_then(|mut c| c.wait())
            .unwrap_or_else(|e| panic!("running {cc}: {e}"));
        assert!(st.success(), "{cc} failed on {}", src.display());
    }
    println!("cargo:rustc-env=ZOO_DIR={}", out_dir.display());
}
