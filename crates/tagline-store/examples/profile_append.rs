//! Profiling aid: `cargo run --release -p tagline-store --example profile_append`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failure report"
)]
use tagline_format::SecretKey;
use tagline_format::payload::note;
use tagline_store::Store;

fn main() {
    let dir = std::env::temp_dir().join(format!("tagline-profile-{}", std::process::id()));
    let store = Store::open(&dir).unwrap_or_else(|e| panic!("{e}"));
    let key = SecretKey::from_seed(&[1; 32]);
    let batches: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    let t = std::time::Instant::now();
    for _ in 0..batches {
        let items = (0..1000)
            .map(|i| {
                (
                    "tagline/note".to_string(),
                    note(&format!("benchmark note number {i}")),
                )
            })
            .collect();
        store
            .append_local(&key, items, 1_800_000_000_000)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let el = t.elapsed();
    println!(
        "append: {:.0} entries/s",
        f64::from(batches * 1000) / el.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
