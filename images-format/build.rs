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
}
