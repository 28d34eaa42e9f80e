//! Every image CRIU 4.2 wrote in shared/criu-images: crs decodes it to the same
//! JSON as crit, encodes crit's JSON back to the same bytes, and re-encodes its
//! own JSON to the same bytes.

use std::path::{Path, PathBuf};

use crs_images::codec::{decode_image, encode_image, DecodeOptions};
use crs_tests::reference_sets;
use serde_json::Value;

/// The first path at which two JSON values differ, for a readable failure.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    None => return Some(format!("{path}.{k}: only in crs ({va})")),
                    Some(vb) => {
                        if let Some(d) = first_difference(va, vb, &format!("{path}.{k}")) {
                            return Some(d);
                        }
                    }
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{path}.{k}: only in crit ({})", y[k]))
        }
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Some(format!(
                    "{path}: {} items in crs, {} in crit",
                    x.len(),
                    y.len()
                ));
            }
            x.iter()
                .zip(y)
                .enumerate()
                .find_map(|(i, (va, vb))| first_difference(va, vb, &format!("{path}[{i}]")))
        }
        _ if a == b => None,
        _ => Some(format!("{path}: crs {a} != crit {b}")),
    }
}

fn image_files(set: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(set)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.ends_with(".img") || n == "stats-dump"
        })
        .collect();
    v.sort();
    v
}

#[test]
fn reference_images_match_crit_both_ways() {
    let sets = reference_sets();
    let mut checked = 0;
    let mut raw = 0;
    let mut failures = Vec::new();
    for set in &sets {
        for img in image_files(set) {
            let name = img.file_name().unwrap().to_string_lossy().into_owned();
            let stem = name.trim_end_matches(".img");
            let json_path = set.join("json").join(format!("{stem}.json"));
            let bytes = std::fs::read(&img).unwrap();
            let label = format!("{}/{}", set.file_name().unwrap().to_string_lossy(), name);
            if !json_path.exists() {
                // crit refuses exactly the raw images; crs must say it is raw.
                match decode_image(
                    &label,
                    &bytes,
                    DecodeOptions {
                        pretty: true,
                        no_payload: false,
                    },
                ) {
                    Err(crs_images::ImageError::RawImage { .. }) => raw += 1,
                    other => failures.push(format!("{label}: no crit JSON, crs said {other:?}")),
                }
                continue;
            }
            let crit: Value = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
            checked += 1;
            match decode_image(
                &label,
                &bytes,
                DecodeOptions {
                    pretty: true,
                    no_payload: false,
                },
            ) {
                Ok(ours) => {
                    if let Some(d) = first_difference(&ours, &crit, "") {
                        failures.push(format!("{label}: decode differs at {d}"));
                    }
                    match encode_image(&label, &ours) {
                        Ok(b) if b == bytes => {}
                        Ok(b) => failures.push(format!(
                            "{label}: re-encode of crs JSON gives {} bytes, image has {}",
                            b.len(),
                            bytes.len()
                        )),
                        Err(e) => failures.push(format!("{label}: encode of crs JSON: {e}")),
                    }
                }
                Err(e) => failures.push(format!("{label}: decode: {e}")),
            }
            match encode_image(&label, &crit) {
                Ok(b) if b == bytes => {}
                Ok(b) => failures.push(format!(
                    "{label}: encode of crit JSON gives {} bytes, image has {} (first difference at byte {:?})",
                    b.len(),
                    bytes.len(),
                    b.iter().zip(&bytes).position(|(x, y)| x != y)
                )),
                Err(e) => failures.push(format!("{label}: encode of crit JSON: {e}")),
            }
            // The non-pretty form must round-trip too.
            match decode_image(&label, &bytes, DecodeOptions::default())
                .and_then(|v| encode_image(&label, &v))
            {
                Ok(b) if b == bytes => {}
                Ok(_) => failures.push(format!("{label}: non-pretty round trip differs")),
                Err(e) => failures.push(format!("{label}: non-pretty round trip: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        checked >= 80,
        "only {checked} images with crit JSON were found in {sets:?}"
    );
    assert!(raw >= 5, "only {raw} raw images were found");
    eprintln!("{checked} images match crit both ways; {raw} raw images recognised");
}
