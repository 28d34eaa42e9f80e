//! Any image, recognised by its magic: decode to JSON (both forms), and when
//! that works, encode back and check the bytes survive a second round trip.
#![no_main]
use crs_images::codec::{decode_image, encode_image, DecodeOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for pretty in [false, true] {
        let opts = DecodeOptions { pretty, no_payload: false };
        if let Ok(v) = decode_image("fuzz.img", data, opts) {
            if let Ok(bytes) = encode_image("fuzz.img", &v) {
                let again = decode_image("fuzz.img", &bytes, opts).expect("re-encoded image decodes");
                assert_eq!(again, v, "decode(encode(decode(x))) == decode(x)");
            }
        }
    }
});
