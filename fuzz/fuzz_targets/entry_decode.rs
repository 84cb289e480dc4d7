//! Fuzz the entry decoder: `cargo fuzz run entry_decode -s none` (stable Rust).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tagline_format::fuzzing::entry_decode(data);
});
