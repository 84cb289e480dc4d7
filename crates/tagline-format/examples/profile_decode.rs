//! Profiling aid: decodes one signed header many times.
//! `cargo run --release -p tagline-format --example profile_decode`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failure report"
)]
use tagline_format::SecretKey;
use tagline_format::entry::{SignedHeader, create_entry};
use tagline_format::payload::note;

fn main() {
    let key = SecretKey::from_seed(&[5; 32]);
    let e = create_entry(&key, None, None, 1, "tagline/note", note("x"))
        .map(|e| e.signed.into_bytes())
        .unwrap_or_default();
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let t = std::time::Instant::now();
    for _ in 0..n {
        let _ = SignedHeader::decode(e.clone());
    }
    let per = t.elapsed() / n;
    let t = std::time::Instant::now();
    for _ in 0..n / 10 {
        let _ = tagline_format::PublicKey::from_slice(&e[4 + 4..4 + 36]);
    }
    println!(
        "decode: {per:?} per signed header; key validation {:?}",
        t.elapsed() / (n / 10)
    );
    let t = std::time::Instant::now();
    for i in 0..n / 10 {
        let _ = key.sign(&i.to_le_bytes());
    }
    println!("raw sign: {:?}", t.elapsed() / (n / 10));
}
