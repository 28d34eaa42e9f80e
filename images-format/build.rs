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

    wire_schema(&proto_dir, &protos, &out);
}

/// Writes `wire_schema.rs`: for every message of `proto/` (nested ones included, by full
/// name), its fields of message type as (field number, index of that message). The wire
/// check reads images with it, so a restore never builds protobuf's reflection
/// descriptors (measured: about half the time of restoring a small process).
fn wire_schema(proto_dir: &std::path::Path, protos: &[PathBuf], out: &std::path::Path) {
    let parsed = protobuf_parse::Parser::new()
        .pure()
        .include(proto_dir)
        .inputs(protos)
        .parse_and_typecheck()
        .expect("parsing proto/ for the wire schema");
    // Full name (with a leading dot, as type_name has it) -> fields of message type.
    let mut messages: Vec<(String, Vec<(i32, String)>)> = Vec::new();
    fn walk(
        prefix: &str,
        m: &protobuf::descriptor::DescriptorProto,
        out: &mut Vec<(String, Vec<(i32, String)>)>,
    ) {
        let name = format!("{prefix}.{}", m.name());
        let fields = m
            .field
            .iter()
            .filter(|f| {
                f.type_() == protobuf::descriptor::field_descriptor_proto::Type::TYPE_MESSAGE
            })
            .map(|f| (f.number(), f.type_name().to_string()))
            .collect();
        out.push((name.clone(), fields));
        for n in &m.nested_type {
            walk(&name, n, out);
        }
    }
    for f in &parsed.file_descriptors {
        let prefix = if f.package().is_empty() {
            String::new()
        } else {
            format!(".{}", f.package())
        };
        for m in &f.message_type {
            walk(&prefix, m, &mut messages);
        }
    }
    messages.sort_by(|a, b| a.0.cmp(&b.0));
    let index = |name: &str| {
        messages
            .iter()
            .position(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("message type {name} not found"))
    };
    let mut code = String::from(
        "/// Generated from proto/: per message (sorted by full name), its message-typed\n\
         /// fields as (number, index of their message in this table).\n\
         pub(crate) static WIRE_MESSAGES: &[(&str, &[(u32, u16)])] = &[\n",
    );
    for (name, fields) in &messages {
        let fs: Vec<String> = fields
            .iter()
            .map(|(n, t)| format!("({n}, {})", index(t)))
            .collect();
        code.push_str(&format!(
            "    ({:?}, &[{}]),\n",
            name.trim_start_matches('.'),
            fs.join(", ")
        ));
    }
    code.push_str("];\n");
    std::fs::write(out.join("wire_schema.rs"), code).expect("writing wire_schema.rs");
}
