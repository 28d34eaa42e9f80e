//! `crs encode`: arbitrary JSON must give an image or an error, never a panic.
#![no_main]
use crs_images::codec::encode_image;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = encode_image("fuzz.json", &v);
    }
});
