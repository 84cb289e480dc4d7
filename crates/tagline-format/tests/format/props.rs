//! Property tests of the format's invariants.

use ciborium::value::{Integer, Value};
use proptest::prelude::*;
use tagline_format::cbor;
use tagline_format::entry::{Head, SignedHeader, create_entry};
use tagline_format::lipmaa::{has_distinct_lipmaa, lipmaa};
use tagline_format::payload::note;
use tagline_format::{SecretKey, check_payload, validate_received};

const NOW: u64 = 1_800_000_000_000;

/// Arbitrary values of the canonical profile (maps canonicalised later).
fn arb_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(|n| Value::Integer(Integer::from(n))),
        any::<i64>().prop_map(|n| Value::Integer(Integer::from(n))),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Bytes),
        ".{0,20}".prop_map(Value::Text),
        any::<bool>().prop_map(Value::Bool),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            proptest::collection::btree_map(any::<u32>(), inner.clone(), 0..6).prop_map(|m| {
                Value::Map(
                    m.into_iter()
                        .map(|(k, v)| (cbor::uint(u64::from(k)), v))
                        .collect(),
                )
            }),
            proptest::collection::btree_map("[a-z]{0,6}", inner, 0..6).prop_map(|m| Value::Map(
                m.into_iter().map(|(k, v)| (Value::Text(k), v)).collect()
            )),
        ]
    })
}

/// A feed of `len` entries with arbitrary payloads.
fn arb_feed() -> impl Strategy<Value = (SecretKey, Vec<(SignedHeader, Vec<u8>)>)> {
    (
        any::<[u8; 32]>(),
        proptest::collection::vec((arb_value(), 0u64..5_000), 1..20),
    )
        .prop_map(|(seed, items)| {
            let key = SecretKey::from_seed(&seed);
            let mut out: Vec<(SignedHeader, Vec<u8>)> = Vec::new();
            let mut ts = 1_700_000_000_000u64;
            for (v, dt) in items {
                let mut v = v;
                cbor::canonicalize(&mut v).unwrap();
                let payload = cbor::encode(&v).unwrap();
                ts += dt;
                let prev = out.last().map(|(s, _)| Head::of(s));
                let seq = prev.map_or(1, |h| h.seq + 1);
                let target =
                    has_distinct_lipmaa(seq).then(|| out[(lipmaa(seq) - 1) as usize].0.id());
                let e = create_entry(&key, prev.as_ref(), target, ts, "test/any", payload).unwrap();
                out.push((e.signed, e.payload.unwrap()));
            }
            (key, out)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, .. ProptestConfig::default() })]

    #[test]
    fn value_encode_decode_encode_is_identical(v in arb_value()) {
        let mut v = v;
        cbor::canonicalize(&mut v).unwrap();
        let a = cbor::encode(&v).unwrap();
        let d = cbor::decode(&a, a.len()).unwrap();
        let b = cbor::encode(&d).unwrap();
        prop_assert_eq!(a, b);
    }

    #[test]
    fn decoded_bytes_are_the_reencoding(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        // Whatever the one-pass decoder accepts is canonical: ciborium reads
        // the same value and writes the same bytes back.
        if let Ok(v) = cbor::decode(&bytes, bytes.len()) {
            prop_assert_eq!(cbor::encode(&v).unwrap(), bytes.clone());
            let theirs: ciborium::value::Value = ciborium::de::from_reader(bytes.as_slice()).unwrap();
            prop_assert_eq!(theirs, v);
        }
    }

    #[test]
    fn mutated_encodings_decode_only_canonically(v in arb_value(), at in any::<usize>(), byte in any::<u8>()) {
        let mut v = v;
        cbor::canonicalize(&mut v).unwrap();
        let mut a = cbor::encode(&v).unwrap();
        let i = at % a.len();
        a[i] = byte;
        if let Ok(d) = cbor::decode(&a, a.len()) {
            prop_assert_eq!(cbor::encode(&d).unwrap(), a);
        }
    }

    #[test]
    fn entries_round_trip_exactly((_, feed) in arb_feed()) {
        let mut head: Option<Head> = None;
        let mut ids = Vec::new();
        for (s, p) in &feed {
            let bytes = s.as_bytes().to_vec();
            let seq = s.seq();
            let target = has_distinct_lipmaa(seq).then(|| ids[(lipmaa(seq) - 1) as usize]);
            let d = validate_received(head.as_ref(), target, &bytes, Some(p), NOW).unwrap();
            prop_assert_eq!(d.as_bytes(), bytes.as_slice());
            prop_assert_eq!(&d, s);
            prop_assert_eq!(d.header().encode().unwrap(), s.header_bytes().to_vec());
            head = Some(Head::of(&d));
            ids.push(d.id());
        }
    }

    #[test]
    fn any_single_bit_flip_is_rejected(seed in any::<[u8; 32]>(), text in ".{0,40}", bit in any::<prop::sample::Index>()) {
        let key = SecretKey::from_seed(&seed);
        let e = create_entry(&key, None, None, 1_700_000_000_000, "tagline/note", note(&text)).unwrap();
        let sh = e.signed.as_bytes().to_vec();
        let payload = e.payload.unwrap();
        let total_bits = (sh.len() + payload.len()) * 8;
        let b = bit.index(total_bits);
        let (mut sh2, mut p2) = (sh.clone(), payload.clone());
        if b < sh.len() * 8 {
            sh2[b / 8] ^= 1 << (b % 8);
        } else {
            let b = b - sh.len() * 8;
            p2[b / 8] ^= 1 << (b % 8);
        }
        prop_assert!(validate_received(None, None, &sh2, Some(&p2), NOW).is_err());
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        tagline_format::fuzzing::entry_decode(&data);
        let _ = SignedHeader::decode(data.clone());
        let mut stream = tagline_format::stream::STREAM_MAGIC.to_vec();
        stream.extend_from_slice(&data);
        tagline_format::fuzzing::import(&stream);
    }

    #[test]
    fn random_mutations_of_valid_entries_never_panic(
        seed in any::<[u8; 32]>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let key = SecretKey::from_seed(&seed);
        let e = create_entry(&key, None, None, 1_700_000_000_000, "tagline/note", note("x")).unwrap();
        let mut b = e.signed.as_bytes().to_vec();
        for (i, v) in edits {
            let n = b.len();
            b[i.index(n)] = v;
        }
        if let Ok(sh) = SignedHeader::decode(b.clone()) {
            // If it still decodes, it is canonical: same bytes; and unless it is the
            // original, the signature must fail.
            prop_assert_eq!(sh.as_bytes(), b.as_slice());
            if b != e.signed.as_bytes() {
                prop_assert!(sh.verify_signature().is_err());
            }
        }
        let _ = check_payload(e.signed.header(), &b);
    }
}
