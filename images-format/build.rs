//! Generates Rust code for every `.proto` under `proto/` with protobuf-codegen's
//! pure-Rust parser (no protoc needed).
use std::path::PathBuf;

fn main() {
    let proto_dir = PathBuf::from("proto");
    let mut protos: Vec<PathBuf> = std::fs::read_dir(&proto_dir)
        .expect("reading proto/")
        .map(|e| e.expect("proto/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "proto"))
        .collect();
    protos.sort();
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-changed=proto");
    protobuf_codegen::Codegen::new()
        .pure()
        .include(&proto_dir)
        .inputs(&protos)
        .cargo_out_dir("pb")
        .run_from_script();

    // A registry of every generated file descriptor, for lookups by message name.
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let mut registry = String::from(
        "/// Every file descriptor generated from `proto/`.\n\
         pub fn file_descriptors() -> Vec<::protobuf::reflect::FileDescriptor> {\n    vec![\n",
    );
    for p in &protos {
        let stem = p.file_stem().expect("file stem").to_string_lossy();
        let module = stem.replace(['-', '.'], "_");
        registry.push_str(&format!(
            "        crate::pb::{module}::file_descriptor().clone(),\n"
        ));
    }
    registry.push_str("    ]\n}\n");
    std::fs::write(out.join("registry.rs"), registry).expect("writing registry.rs");
}
