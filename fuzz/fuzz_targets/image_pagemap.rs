//! Pagemap images as the restore path reads them: a pagemap_head, then
//! pagemap_entry messages.
#![no_main]
use crs_images::codec::ImageReader;
use crs_images::{frame, magic, pb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut img = Vec::new();
    frame::write_header(&mut img, magic::by_name("PAGEMAP").unwrap());
    img.extend_from_slice(data);
    if let Ok(mut r) = ImageReader::new("fuzz.img", &img, "PAGEMAP") {
        if let Ok(Some(_)) = r.next::<pb::pagemap::Pagemap_head>() {
            let _ = r.all::<pb::pagemap::Pagemap_entry>();
        }
    }
});
