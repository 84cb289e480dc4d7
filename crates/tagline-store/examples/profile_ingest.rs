//! Profiling aid: `cargo run --release -p tagline-store --example profile_ingest`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failure report"
)]
use tagline_format::payload::note;
use tagline_format::{SecretKey, stream};
use tagline_store::{IngestMode, Store};

fn main() {
    let base = std::env::temp_dir().join(format!("tagline-profile-ingest-{}", std::process::id()));
    let src = Store::open(&base.join("src")).unwrap_or_else(|e| panic!("{e}"));
    let key = SecretKey::from_seed(&[1; 32]);
    for _ in 0..10 {
        let items = (0..10_000)
            .map(|i| {
                (
                    "tagline/note".to_string(),
                    note(&format!("benchmark note number {i}")),
                )
            })
            .collect();
        src.append_local(&key, items, 1_800_000_000_000)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut bytes = stream::STREAM_MAGIC.to_vec();
    for e in src.range(&key.public(), 1, 100_000).unwrap_or_default() {
        bytes.extend(stream::encode_record(
            e.signed.as_bytes(),
            e.payload.as_deref(),
        ));
    }
    let dst = Store::open(&base.join("dst")).unwrap_or_else(|e| panic!("{e}"));
    let t = std::time::Instant::now();
    let entries = stream::decode_all(&bytes).unwrap_or_default();
    let t_decode = t.elapsed();
    let r = dst
        .ingest(
            entries,
            1_800_000_000_000,
            [3; 32],
            IngestMode::AllOrNothing,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let el = t.elapsed();
    println!(
        "ingest: {:.0} entries/s ({} appended; decode {:?} of {:?})",
        r.appended as f64 / el.as_secs_f64(),
        r.appended,
        t_decode,
        el
    );
    let _ = std::fs::remove_dir_all(&base);
}
