//! The typed reader the restore path uses, on PSTREE images: a fixed header plus
//! fuzzed entries.
#![no_main]
use crs_images::codec::ImageReader;
use crs_images::{frame, magic, pb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut img = Vec::new();
    frame::write_header(&mut img, magic::by_name("PSTREE").unwrap());
    img.extend_from_slice(data);
    if let Ok(mut r) = ImageReader::new("fuzz.img", &img, "PSTREE") {
        let _ = r.all::<pb::pstree::Pstree_entry>();
    }
});
