//! Malformed images never panic and never make crs allocate what a corrupt
//! length field claims: truncations, bit flips and oversized lengths of every
//! reference image, and random bytes behind every known magic, go through the
//! same readers the restore path and `crs decode` use.

use std::alloc::System;

use cap::Cap;
use crs_images::codec::{decode_image, encode_image, DecodeOptions, ImageReader};
use crs_images::frame;
use crs_images::magic;
use crs_images::pb;
use crs_tests::reference_sets;

/// Every allocation of this test binary goes through this counter. The limit
/// turns a runaway allocation into an immediate, visible failure.
#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, 1 << 30);

/// Peak heap use allowed while decoding a mutated image of at most ~10 MiB.
const PEAK_BUDGET: usize = 16 << 20;

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs every reader over `bytes`; errors are expected, panics are bugs.
fn exercise(name: &str, bytes: &[u8]) -> bool {
    let ok = exercise_inner(name, bytes);
    if ALLOC.max_allocated() > PEAK_BUDGET {
        let dump = std::env::temp_dir().join("crs-malformed-input.bin");
        let _ = std::fs::write(&dump, bytes);
        panic!(
            "{name}: a {}-byte malformed input took the heap to {} bytes (input saved to {})",
            bytes.len(),
            ALLOC.max_allocated(),
            dump.display()
        );
    }
    ok
}

fn exercise_inner(name: &str, bytes: &[u8]) -> bool {
    let mut ok = false;
    for pretty in [false, true] {
        if let Ok(v) = decode_image(
            name,
            bytes,
            DecodeOptions {
                pretty,
                no_payload: false,
            },
        ) {
            ok = true;
            let _ = encode_image(name, &v);
        }
    }
    // The typed readers the restore path uses.
    if let Ok((m, _)) = frame::parse_header(name, bytes) {
        macro_rules! typed {
            ($magic:literal, $ty:ty) => {
                if m.name == $magic {
                    if let Ok(mut r) = ImageReader::new(name, bytes, $magic) {
                        let _ = r.all::<$ty>();
                    }
                }
            };
        }
        typed!("CORE", pb::core::Core_entry);
        typed!("MM", pb::mm::Mm_entry);
        typed!("PSTREE", pb::pstree::Pstree_entry);
        typed!("FILES", pb::fdinfo::File_entry);
        typed!("FDINFO", pb::fdinfo::Fdinfo_entry);
        typed!("INVENTORY", pb::inventory::Inventory_entry);
        if m.name == "PAGEMAP" {
            if let Ok(mut r) = ImageReader::new(name, bytes, "PAGEMAP") {
                if let Ok(Some(_)) = r.next::<pb::pagemap::Pagemap_head>() {
                    let _ = r.all::<pb::pagemap::Pagemap_entry>();
                }
            }
        }
    }
    ok
}

/// Offsets of each entry's length field, found by walking the intact image.
fn length_offsets(name: &str, bytes: &[u8]) -> Vec<usize> {
    let Ok((_, start)) = frame::parse_header(name, bytes) else {
        return Vec::new();
    };
    let mut c = frame::EntryCursor::new(name, bytes, start);
    let mut v = Vec::new();
    while let Ok(Some(e)) = c.next_entry() {
        v.push(e.offset);
    }
    v
}

// One test function: the allocator's counters are process-wide, so a second
// test running in parallel would disturb the measurement.
#[test]
fn malformed_images_error_without_panic_or_huge_allocation() {
    let mut rng = XorShift(0x5eed_cafe_f00d_0001);
    let mut inputs = 0usize;
    for set in reference_sets() {
        let mut files: Vec<_> = std::fs::read_dir(&set)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for path in files {
            let fname = path.file_name().unwrap().to_string_lossy().into_owned();
            if !(fname.ends_with(".img") || fname == "stats-dump") || fname.starts_with("pages-") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let name = format!("{}/{fname}", set.file_name().unwrap().to_string_lossy());

            // Truncations: every length for small images, a sample for large ones.
            let step = (bytes.len() / 512).max(1);
            for len in (0..bytes.len()).step_by(step) {
                exercise(&name, &bytes[..len]);
                inputs += 1;
            }
            // Single bit flips.
            let mut m = bytes.clone();
            for _ in 0..300 {
                let bit = (rng.next() as usize) % (m.len() * 8);
                m[bit / 8] ^= 1 << (bit % 8);
                exercise(&name, &m);
                m[bit / 8] ^= 1 << (bit % 8);
                inputs += 1;
            }
            // Oversized and off-by-one entry lengths.
            for off in length_offsets(&name, &bytes) {
                let orig = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
                for bad in [
                    u32::MAX,
                    0x7fff_ffff,
                    orig.wrapping_add(1),
                    orig.saturating_sub(1),
                    0,
                ] {
                    let mut m = bytes.clone();
                    m[off..off + 4].copy_from_slice(&bad.to_le_bytes());
                    exercise(&name, &m);
                    inputs += 1;
                }
            }
        }
    }
    // Random bodies behind every known magic, including huge varint lengths.
    for mg in magic::ALL {
        for round in 0..50 {
            let mut v = Vec::new();
            frame::write_header(&mut v, mg);
            let body = 1024;
            let n = rng.next() as usize % body;
            v.extend_from_slice(&(n as u32).to_le_bytes());
            for i in 0..n {
                let b = if round % 2 == 0 && i % 7 == 1 {
                    0xff
                } else {
                    rng.next() as u8
                };
                v.push(b);
            }
            exercise(mg.name, &v);
            inputs += 1;
        }
    }
    one_kib_image_with_huge_claims_allocates_little();
    let peak = ALLOC.max_allocated();
    eprintln!("{inputs} malformed inputs, peak heap {} KiB", peak / 1024);
    assert!(inputs > 10_000, "only {inputs} inputs were generated");
    assert!(
        peak < PEAK_BUDGET,
        "peak heap {peak} bytes exceeds {PEAK_BUDGET}"
    );
}

fn one_kib_image_with_huge_claims_allocates_little() {
    // A 1 KiB pipes-data image whose entry claims 4 GiB of payload and whose
    // message claims a 2 GiB bytes field.
    let mut v = Vec::new();
    frame::write_header(&mut v, magic::by_name("PIPES_DATA").unwrap());
    // pipe_data_entry: pipe_id=1 (field 1), bytes=0xffffffff (field 2)
    let msg = [0x08, 0x01, 0x10, 0xff, 0xff, 0xff, 0xff, 0x0f];
    v.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    v.extend_from_slice(&msg);
    v.resize(1024, 0x41);
    let before = ALLOC.allocated();
    let err = decode_image("pipes-data.img", &v, DecodeOptions::default()).unwrap_err();
    assert!(
        matches!(
            err,
            crs_images::ImageError::PayloadTooLarge {
                size: 0xffff_ffff,
                ..
            }
        ),
        "{err}"
    );
    assert!(ALLOC.allocated() <= before + (1 << 20));
    // A CORE entry holding a length-delimited field that claims 2 GiB.
    let mut v = Vec::new();
    frame::write_header(&mut v, magic::by_name("CORE").unwrap());
    let msg = [0x1a, 0xff, 0xff, 0xff, 0xff, 0x07, 0x00];
    v.extend_from_slice(&(msg.len() as u32).to_le_bytes());
    v.extend_from_slice(&msg);
    v.resize(1024, 0);
    let err = decode_image("core-1.img", &v, DecodeOptions::default()).unwrap_err();
    assert!(
        err.to_string().contains("core-1.img: entry 0 at offset 8"),
        "{err}"
    );
}
