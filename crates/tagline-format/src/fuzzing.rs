//! The bodies of the cargo-fuzz targets in `fuzz/`, here so that the same code
//! runs under the fuzzer and in the corpus-replay test. Neither may panic on
//! any input.

use std::collections::BTreeMap;

use crate::entry::{Head, SignedHeader, check_payload};
use crate::keys::{EntryId, PublicKey};
use crate::{cbor, feed, payload, stream};

/// A signed header and its payload, if any.
type EntryParts = (SignedHeader, Option<Vec<u8>>);

/// Fixed clock for fuzzing: 2030-01-01.
const FUZZ_NOW_MS: u64 = 1_893_456_000_000;

/// Target `entry_decode`: a signed header, then its signature and payload rules.
pub fn entry_decode(data: &[u8]) {
    if let Ok(v) = cbor::decode(data, data.len()) {
        // The profile admits one encoding per value: what decodes re-encodes
        // to the same bytes.
        assert_eq!(cbor::encode(&v).ok().as_deref(), Some(data));
    }
    if let Ok(sh) = SignedHeader::decode(data.to_vec()) {
        // Decoding is canonical: the bytes are exactly what was given.
        assert_eq!(sh.as_bytes(), data);
        let _ = sh.verify_signature();
        let _ = feed::validate_next(None, None, &sh, FUZZ_NOW_MS);
        let _ = check_payload(sh.header(), data);
    }
    let _ = payload::decode_note(data);
    let _ = feed::ForkProof::decode(data);
}

/// Target `import`: an export stream, decoded and validated as `tagline import`
/// does (without the store): per feed, sorted, chained from seq 1, signatures
/// batched, payloads checked.
pub fn import(data: &[u8]) {
    let Ok(entries) = stream::decode_all(data) else {
        return;
    };
    let mut feeds: BTreeMap<PublicKey, Vec<EntryParts>> = BTreeMap::new();
    for e in entries {
        feeds
            .entry(*e.signed.author())
            .or_default()
            .push((e.signed, e.payload));
    }
    for (author, mut list) in feeds {
        list.sort_by_key(|(s, _)| s.seq());
        let run: Vec<SignedHeader> = list.iter().map(|(s, _)| s.clone()).collect();
        let ids: Vec<EntryId> = run.iter().map(|s| s.id()).collect();
        let mut lookup = |seq: u64| {
            ids.get(usize::try_from(seq).unwrap_or(usize::MAX).wrapping_sub(1))
                .copied()
        };
        let head: Option<Head> = None;
        let _ = feed::verify_run(&author, head, &run, &mut lookup, FUZZ_NOW_MS, [0; 32]);
        for (s, p) in &list {
            if let Some(p) = p {
                let _ = check_payload(s.header(), p);
            }
        }
    }
}
