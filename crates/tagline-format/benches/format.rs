//! Micro-benchmarks of the format: `cargo bench -p tagline-format --bench format`.
//! Signature verification is measured beside the raw ed25519-dalek calls.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failure report"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tagline_format::entry::{Head, SignedHeader, create_entry};
use tagline_format::lipmaa::{has_distinct_lipmaa, lipmaa};
use tagline_format::payload::note;
use tagline_format::verify::{BatchVerifier, verify};
use tagline_format::{SecretKey, verify_run};

fn feed(n: u64) -> (SecretKey, Vec<SignedHeader>) {
    let key = SecretKey::from_seed(&[5; 32]);
    let mut out: Vec<SignedHeader> = Vec::new();
    for seq in 1..=n {
        let prev = out.last().map(Head::of);
        let target = has_distinct_lipmaa(seq).then(|| out[(lipmaa(seq) - 1) as usize].id());
        let e = create_entry(
            &key,
            prev.as_ref(),
            target,
            1_700_000_000_000 + seq,
            "tagline/note",
            note("bench"),
        )
        .unwrap();
        out.push(e.signed);
    }
    (key, out)
}

fn benches(c: &mut Criterion) {
    let (key, entries) = feed(1024);
    let msgs: Vec<Vec<u8>> = entries.iter().map(|e| e.message()).collect();
    let public = key.public();
    let mut g = c.benchmark_group("format");
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode_signed_header", |b| {
        b.iter(|| SignedHeader::decode(entries[700].as_bytes().to_vec()).unwrap())
    });
    g.bench_function("verify_single", |b| {
        b.iter(|| verify(&public, &msgs[3], entries[3].signature()).unwrap())
    });
    g.bench_function("sign_entry", |b| {
        b.iter(|| create_entry(&key, None, None, 1, "tagline/note", note("bench")).unwrap())
    });
    g.throughput(Throughput::Elements(64));
    g.bench_function("verify_batch_64_one_key", |b| {
        b.iter(|| {
            let mut v = BatchVerifier::with_capacity(64);
            for (e, m) in entries.iter().zip(&msgs).take(64) {
                v.push(&public, m, *e.signature());
            }
            v.verify([1; 32]).unwrap()
        })
    });
    g.throughput(Throughput::Elements(1024));
    g.bench_function("verify_run_1024", |b| {
        b.iter(|| {
            verify_run(
                &public,
                None,
                &entries,
                &mut |_| None,
                1_800_000_000_000,
                [2; 32],
            )
            .unwrap()
        })
    });
    g.finish();
}

criterion_group!(format, benches);
criterion_main!(format);
