//! protocol/SPEC.md §7 and src/limits.rs must agree.

use tagline_format::limits::*;

#[test]
fn limits_match_spec() {
    let spec = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../protocol/SPEC.md"
    ))
    .unwrap();
    let row = |name: &str| -> String {
        let line = spec
            .lines()
            .find(|l| l.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("SPEC.md §7 has no row for {name}"));
        line.split('|').nth(2).unwrap().trim().to_string()
    };
    let num = |name: &str| -> u64 {
        let cell = row(name);
        let digits: String = cell
            .split_whitespace()
            .next()
            .unwrap()
            .chars()
            .filter(|c| c.is_ascii_digit())
            .collect();
        digits.parse().unwrap_or_else(|_| panic!("{name}: {cell}"))
    };
    assert_eq!(num("FORMAT_VERSION"), FORMAT_VERSION);
    assert_eq!(num("MAX_HEADER_SIZE"), MAX_HEADER_SIZE as u64);
    assert_eq!(num("MAX_SIGNED_HEADER_SIZE"), MAX_SIGNED_HEADER_SIZE as u64);
    assert_eq!(num("MAX_PAYLOAD_SIZE"), MAX_PAYLOAD_SIZE);
    assert_eq!(num("MAX_PAYLOAD_TYPE_LEN"), MAX_PAYLOAD_TYPE_LEN as u64);
    assert_eq!(num("MAX_DEPTH"), MAX_DEPTH as u64);
    assert_eq!(num("MAX_COLLECTION_LEN"), MAX_COLLECTION_LEN);
    assert_eq!(num("MAX_NOTE_LEN"), MAX_NOTE_LEN as u64);
    assert_eq!(num("MAX_FUTURE_SKEW_MS"), MAX_FUTURE_SKEW_MS);
    assert_eq!(num("VERIFY_BATCH_SIZE"), VERIFY_BATCH_SIZE as u64);
    assert_eq!(row("MAX_SEQ"), "2^53 − 1");
    assert_eq!(MAX_SEQ, (1u64 << 53) - 1);
    assert_eq!(
        MAX_STREAM_RECORD_SIZE,
        MAX_SIGNED_HEADER_SIZE + MAX_PAYLOAD_SIZE as usize + 16
    );
}
