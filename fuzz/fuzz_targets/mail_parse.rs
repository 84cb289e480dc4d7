//! Fuzz the email bridge's readers (one mail, subject lines, mboxes,
//! threads, series): `cargo fuzz run mail_parse -s none` (stable Rust).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    tagline_email::fuzzing::mail(data);
});
