//! Fuzz the import path (stream framing, decoding, chain and signature
//! validation): `cargo fuzz run import -s none` (stable Rust).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tagline_format::fuzzing::import(data);
});
