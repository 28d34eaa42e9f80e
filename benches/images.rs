//! Decode/encode throughput of the image layer on a large core image (a task
//! with many POSIX timers, a full xsave area and every sigaction) and a large
//! pagemap image (100 000 entries), through the typed readers the restore
//! path uses and through crit's JSON form.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use crs_images::codec::{decode_image, encode_image, DecodeOptions, ImageReader, ImageWriter};
use crs_images::pb;
use std::hint::black_box;

fn big_core() -> Vec<u8> {
    let path = crs_benches::reference_image("tree", "core-72000.img");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut r = ImageReader::new("core", &bytes, "CORE").expect("reference core image");
    let mut core: pb::core::Core_entry = r.next().expect("decodes").expect("one entry");
    let tc = core.tc.mut_or_insert_default();
    let timers = tc.timers.mut_or_insert_default();
    let template = timers.posix.first().cloned().unwrap_or_default();
    for i in 0..2000 {
        let mut t = template.clone();
        t.set_it_id(i);
        timers.posix.push(t);
    }
    let mut w = ImageWriter::new("core-1.img", "CORE");
    w.push(&core).expect("encodes");
    w.into_bytes()
}

fn big_pagemap() -> Vec<u8> {
    let mut w = ImageWriter::new("pagemap-1.img", "PAGEMAP");
    let mut head = pb::pagemap::Pagemap_head::new();
    head.set_pages_id(1);
    w.push(&head).expect("encodes");
    for i in 0..100_000u64 {
        let mut e = pb::pagemap::Pagemap_entry::new();
        e.set_vaddr(0x7f00_0000_0000 + i * 0x10000);
        // CRIU fills the old 32-bit count too (it is required) and the 64-bit one.
        e.set_compat_nr_pages(1 + (i % 16) as u32);
        e.set_nr_pages(1 + i % 16);
        e.set_flags(4);
        w.push(&e).expect("encodes");
    }
    w.into_bytes()
}

fn bench(c: &mut Criterion) {
    let core = big_core();
    let pagemap = big_pagemap();
    let mut g = c.benchmark_group("images");
    for (name, bytes) in [("core", &core), ("pagemap", &pagemap)] {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(BenchmarkId::new("decode_typed", name), bytes, |b, bytes| {
            b.iter(|| {
                if name == "core" {
                    let mut r = ImageReader::new("x", bytes, "CORE").unwrap();
                    black_box(r.all::<pb::core::Core_entry>().unwrap());
                } else {
                    let mut r = ImageReader::new("x", bytes, "PAGEMAP").unwrap();
                    let _h: Option<pb::pagemap::Pagemap_head> = r.next().unwrap();
                    black_box(r.all::<pb::pagemap::Pagemap_entry>().unwrap());
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("decode_json", name), bytes, |b, bytes| {
            b.iter(|| {
                black_box(
                    decode_image(
                        "x",
                        bytes,
                        DecodeOptions {
                            pretty: true,
                            no_payload: false,
                        },
                    )
                    .unwrap(),
                )
            })
        });
        let json = decode_image(
            "x",
            bytes,
            DecodeOptions {
                pretty: true,
                no_payload: false,
            },
        )
        .unwrap();
        g.bench_with_input(BenchmarkId::new("encode_json", name), &json, |b, json| {
            b.iter(|| black_box(encode_image("x", json).unwrap()))
        });
    }
    // Typed encode of the pagemap, as the dumper writes it.
    g.throughput(Throughput::Bytes(pagemap.len() as u64));
    g.bench_function(BenchmarkId::new("encode_typed", "pagemap"), |b| {
        b.iter(|| black_box(big_pagemap()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
