//! The `crs-checksums` parser restore runs first, on any bytes: never a panic, and what it
//! accepts renders back to the same bytes.
#![no_main]
use crs_images::checksums;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(images) = checksums::parse(data) {
        let again = checksums::render(&images).expect("a parsed file renders");
        assert_eq!(again, data, "parse and render disagree");
    }
});
