//! What crs-checksums costs per byte: XXH3-64 of a 4 MiB buffer hot in cache (the size of a
//! dump's copy batch, hashed by the reader right after it fills it) against a memcpy of the
//! same buffer, one thread. Prints the ratio of the two medians measured in the same run.
//! The end-to-end cost (a 1 GiB dump with and without `CRS_IMAGE_CHECKSUMS=0`) is measured
//! by the dumprestore matrix.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use crs_images::checksums;

const LEN: usize = 4 << 20;

fn buffer() -> Vec<u8> {
    (0..LEN as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// Median time of `f` over `n` runs (after a few to warm up).
fn median(n: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..10 {
        f();
    }
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    v.sort();
    v[n / 2]
}

fn gib_s(d: Duration) -> f64 {
    LEN as f64 / d.as_secs_f64() / f64::from(1u32 << 30)
}

fn bench(c: &mut Criterion) {
    let src = buffer();
    let mut dst = vec![0u8; LEN];

    let hash = median(301, || {
        black_box(checksums::hash(black_box(&src)));
    });
    let copy = median(301, || {
        dst.copy_from_slice(black_box(&src));
        black_box(&dst);
    });
    println!(
        "checksum: xxh3-64 {:.1} GiB/s, memcpy {:.1} GiB/s, on 4 MiB hot: hashing costs {:.2}x a copy",
        gib_s(hash),
        gib_s(copy),
        hash.as_secs_f64() / copy.as_secs_f64()
    );

    let mut g = c.benchmark_group("checksum");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.bench_function("xxh3_64/4MiB", |b| {
        b.iter(|| black_box(checksums::hash(black_box(&src))))
    });
    g.bench_function("memcpy/4MiB", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
