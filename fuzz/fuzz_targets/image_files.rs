//! files.img and fdinfo-N.img through the typed reader.
#![no_main]
use crs_images::codec::ImageReader;
use crs_images::{frame, magic, pb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, body)) = data.split_first() else { return };
    let name = if sel & 1 == 0 { "FILES" } else { "FDINFO" };
    let mut img = Vec::new();
    frame::write_header(&mut img, magic::by_name(name).unwrap());
    img.extend_from_slice(body);
    if let Ok(mut r) = ImageReader::new("fuzz.img", &img, name) {
        if name == "FILES" {
            let _ = r.all::<pb::fdinfo::File_entry>();
        } else {
            let _ = r.all::<pb::fdinfo::Fdinfo_entry>();
        }
    }
});
