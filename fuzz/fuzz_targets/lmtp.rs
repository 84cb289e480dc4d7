//! Fuzz the bridge's LMTP/SMTP session (what a client on the socket can
//! send): `cargo fuzz run lmtp -s none` (stable Rust).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tagline_email::fuzzing::lmtp(data);
});
