//! Ingest and append throughput, beside the raw operations they rest on,
//! measured in the same run (docs/performance.md):
//!
//!     cargo bench -p tagline-store --bench store
//!
//! - `baseline/sign`: ed25519-dalek signing of a 200-byte message (the ceiling
//!   for appends: a feed's entries must be signed one after another).
//! - `baseline/verify_strict`: ed25519-dalek `verify_strict`, one signature per call.
//! - `baseline/verify_batch_64`: ed25519-dalek `verify_batch` over 64 signatures.
//! - `baseline/redb_insert_1000`: 1,000 raw redb inserts (40-byte key, 250-byte
//!   value) in one durable transaction.
//! - `ingest/stream_100k`: an exported stream of 100,000 entries of one feed
//!   into a fresh store: decode, hash, chain and lipmaa checks, batched
//!   signature verification, payload checks, durable append.
//! - `append/local_1000`: sign and store 1,000 notes in one transaction.
//! - `lookup/get_with_runs`: `Store::get` of a stored entry by id in a store
//!   of 200,000 entries appended 4,000 at a time (as a sync writes them),
//!   whose ids are in 8 sorted runs: 6 of level 1 and 2 of level 0
//!   (`ID_RUN_FANIN` 8); `lookup/get_after_compaction`: the
//!   same store after `compact_id_runs` (one run); `lookup/get_without_runs`:
//!   then after `rebuild_indexes`, which puts every id into `ID_INDEX`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failure report"
)]

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tagline_format::payload::note;
use tagline_format::stream;
use tagline_format::{Entry, SecretKey};
use tagline_store::{IngestMode, Store};

const NOW: u64 = 1_800_000_000_000;
const INGEST_ENTRIES: u64 = 100_000;

fn notes(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                "tagline/note".to_string(),
                note(&format!("benchmark note number {i} with some text")),
            )
        })
        .collect()
}

fn baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline");
    let keys: Vec<ed25519_dalek::SigningKey> = (0..64u8)
        .map(|i| ed25519_dalek::SigningKey::from_bytes(&[i.wrapping_add(1); 32]))
        .collect();
    let msgs: Vec<Vec<u8>> = (0..64u8).map(|i| vec![i; 200]).collect();
    let sigs: Vec<ed25519_dalek::Signature> = {
        use ed25519_dalek::Signer;
        keys.iter().zip(&msgs).map(|(k, m)| k.sign(m)).collect()
    };
    let vks: Vec<ed25519_dalek::VerifyingKey> = keys.iter().map(|k| k.verifying_key()).collect();
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign", |b| {
        use ed25519_dalek::Signer;
        b.iter(|| keys[1].sign(&msgs[1]))
    });
    g.bench_function("verify_strict", |b| {
        b.iter(|| vks[0].verify_strict(&msgs[0], &sigs[0]).unwrap())
    });
    g.throughput(Throughput::Elements(64));
    let mrefs: Vec<&[u8]> = msgs.iter().map(|m| m.as_slice()).collect();
    g.bench_function("verify_batch_64", |b| {
        b.iter(|| ed25519_dalek::verify_batch(&mrefs, &sigs, &vks).unwrap())
    });

    const T: redb::TableDefinition<&[u8; 40], &[u8]> = redb::TableDefinition::new("raw");
    let dir = tempfile::tempdir().unwrap();
    let db = redb::Database::create(dir.path().join("raw.redb")).unwrap();
    let value = vec![7u8; 250];
    let mut next = 0u64;
    g.throughput(Throughput::Elements(1000));
    g.bench_function("redb_insert_1000", |b| {
        b.iter(|| {
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(T).unwrap();
                for _ in 0..1000 {
                    let mut k = [0u8; 40];
                    k[32..].copy_from_slice(&next.to_be_bytes());
                    next += 1;
                    t.insert(&k, value.as_slice()).unwrap();
                }
            }
            tx.commit().unwrap();
        })
    });
    g.finish();
}

/// An export stream of `n` entries of one feed, made once.
fn make_stream(n: u64) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = SecretKey::from_seed(&[42; 32]);
    for _ in 0..n / 10_000 {
        store.append_local(&key, notes(10_000), NOW).unwrap();
    }
    let mut out = stream::STREAM_MAGIC.to_vec();
    let mut seq = 1;
    while seq <= n {
        for e in store.range(&key.public(), seq, seq + 9_999).unwrap() {
            out.extend(stream::encode_record(
                e.signed.as_bytes(),
                e.payload.as_deref(),
            ));
        }
        seq += 10_000;
    }
    out
}

fn ingest(c: &mut Criterion) {
    let bytes = make_stream(INGEST_ENTRIES);
    let mut g = c.benchmark_group("ingest");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(40));
    g.throughput(Throughput::Elements(INGEST_ENTRIES));
    g.bench_function("stream_100k", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open(dir.path()).unwrap();
                (dir, store)
            },
            |(dir, store)| {
                let entries: Vec<Entry> = stream::decode_all(&bytes).unwrap();
                let r = store
                    .ingest(entries, NOW, [9; 32], IngestMode::AllOrNothing)
                    .unwrap();
                assert_eq!(r.appended, INGEST_ENTRIES);
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = SecretKey::from_seed(&[43; 32]);
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("local_1000", |b| {
        b.iter_batched(
            || notes(1000),
            |items| store.append_local(&key, items, NOW).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let key = SecretKey::from_seed(&[44; 32]);
    let mut ids = Vec::new();
    // Written as a sync writes: 4,000 entries per transaction.
    for _ in 0..50 {
        let new = store.append_local(&key, notes(4_000), NOW).unwrap();
        ids.extend(new.iter().map(|e| e.signed.id()));
    }
    let mut g = c.benchmark_group("lookup");
    for name in ["get_with_runs", "get_after_compaction", "get_without_runs"] {
        match name {
            "get_after_compaction" => {
                assert_eq!(store.compact_id_runs().unwrap(), 8);
            }
            "get_without_runs" => {
                store.rebuild_indexes().unwrap();
            }
            _ => {}
        }
        let mut next = 0usize;
        g.bench_function(name, |b| {
            b.iter(|| {
                next = (next + 7_919) % ids.len();
                store.get(&ids[next]).unwrap().unwrap()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, baseline, ingest, append, lookup);
criterion_main!(benches);
