//! protocol/vectors: generated here (with TAGLINE_WRITE_VECTORS=1) and always
//! checked here. The JSON files are the language-neutral contract.

use std::path::PathBuf;

use ciborium::value::Value;
use serde_json::{Value as J, json};
use tagline_format::cbor::{self, uint};
use tagline_format::entry::{Head, Header, SignedHeader, create_entry, signing_message};
use tagline_format::lipmaa::{has_distinct_lipmaa, lipmaa};
use tagline_format::payload::note;
use tagline_format::{EntryId, PayloadHash, PublicKey, SecretKey, validate_received};

const T0: u64 = 1_700_000_000_000;
const NOW: u64 = 1_700_000_100_000;

fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../protocol/vectors")
}

fn seed(n: u8) -> [u8; 32] {
    let mut s = [0u8; 32];
    for (i, b) in s.iter_mut().enumerate() {
        *b = n.wrapping_mul(31).wrapping_add(i as u8);
    }
    s
}

struct Feed {
    name: &'static str,
    key: SecretKey,
    entries: Vec<(SignedHeader, Vec<u8>)>,
}

fn make_feed(name: &'static str, n: u8, len: u64) -> Feed {
    let key = SecretKey::from_seed(&seed(n));
    let mut entries: Vec<(SignedHeader, Vec<u8>)> = Vec::new();
    for seq in 1..=len {
        let prev = entries.last().map(|(s, _)| Head::of(s));
        let target = has_distinct_lipmaa(seq).then(|| entries[(lipmaa(seq) - 1) as usize].0.id());
        let (ptype, payload) = if seq % 5 == 0 {
            (
                "example/other",
                cbor::encode(&Value::Map(vec![(
                    Value::Text("k".into()),
                    Value::Bytes(vec![1, 2, 3]),
                )]))
                .unwrap(),
            )
        } else {
            ("tagline/note", note(&format!("{name} entry {seq}")))
        };
        let e = create_entry(&key, prev.as_ref(), target, T0 + seq * 1000, ptype, payload).unwrap();
        entries.push((e.signed, e.payload.unwrap()));
    }
    Feed { name, key, entries }
}

fn feeds() -> Vec<Feed> {
    vec![make_feed("alice", 1, 14), make_feed("bob", 2, 3)]
}

fn sign_raw(key: &SecretKey, header_bytes: &[u8]) -> Vec<u8> {
    let sig = key.sign(&signing_message(header_bytes));
    cbor::encode(&Value::Array(vec![
        Value::Bytes(header_bytes.to_vec()),
        Value::Bytes(sig.to_vec()),
    ]))
    .unwrap()
}

fn pairs(h: &Header) -> Vec<(Value, Value)> {
    match h.to_value() {
        Value::Map(p) => p,
        _ => unreachable!(),
    }
}

fn enc(p: Vec<(Value, Value)>) -> Vec<u8> {
    cbor::encode(&Value::Map(p)).unwrap()
}

fn set(p: &mut Vec<(Value, Value)>, key: u64, v: Option<Value>) {
    p.retain(|(k, _)| *k != uint(key));
    if let Some(v) = v {
        p.push((uint(key), v));
        let mut m = Value::Map(std::mem::take(p));
        cbor::canonicalize(&mut m).unwrap();
        if let Value::Map(x) = m {
            *p = x;
        }
    }
}

struct Case {
    name: &'static str,
    description: &'static str,
    context: (&'static str, usize),
    signed_header: Vec<u8>,
    payload: Option<Vec<u8>>,
    now_ms: u64,
    error: &'static str,
}

fn invalid_cases(f: &[Feed]) -> Vec<Case> {
    let alice = &f[0];
    let k = &alice.key;
    let e = |seq: usize| &alice.entries[seq - 1];
    let hdr = |seq: usize| e(seq).0.header().clone();
    let mut out = Vec::new();
    let mut case =
        |name, description, context, signed_header: Vec<u8>, payload: Option<Vec<u8>>, error| {
            out.push(Case {
                name,
                description,
                context,
                signed_header,
                payload,
                now_ms: NOW,
                error,
            });
        };

    // Signature and key.
    let mut bad_sig = e(3).0.as_bytes().to_vec();
    let n = bad_sig.len();
    bad_sig[n - 20] ^= 0x01; // inside S, stays canonical
    case(
        "bad-signature",
        "entry 3 with one bit of its signature's S flipped",
        ("alice", 2),
        bad_sig,
        None,
        "bad-signature",
    );

    let mut s_plus_l = e(3).0.as_bytes().to_vec();
    {
        const L: [u8; 32] = [
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
        ];
        let n = s_plus_l.len();
        let s = &mut s_plus_l[n - 32..];
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(s[i]) + u16::from(L[i]) + carry;
            s[i] = v as u8;
            carry = v >> 8;
        }
    }
    case(
        "non-canonical-s",
        "entry 3 with S replaced by S + L (verifies under lax rules)",
        ("alice", 2),
        s_plus_l,
        None,
        "non-canonical-s",
    );

    let mut small_r = e(3).0.as_bytes().to_vec();
    let n = small_r.len();
    small_r[n - 64..n - 32].copy_from_slice(&{
        let mut id = [0u8; 32];
        id[0] = 1;
        id
    });
    case(
        "small-order-r",
        "entry 3 with R replaced by the identity point",
        ("alice", 2),
        small_r,
        None,
        "small-order-r",
    );

    {
        // A small-order author key (the identity point) with R = identity, S = 0:
        // satisfies the verification equation for any message under lax rules.
        let mut p = pairs(&hdr(1));
        let mut weak = [0u8; 32];
        weak[0] = 1;
        set(&mut p, 1, Some(Value::Bytes(weak.to_vec())));
        let hb = enc(p);
        let mut sig = [0u8; 64];
        sig[0] = 1;
        let sh = cbor::encode(&Value::Array(vec![
            Value::Bytes(hb),
            Value::Bytes(sig.to_vec()),
        ]))
        .unwrap();
        case(
            "weak-key",
            "first entry by the small-order key 0100…00 with signature R = identity, S = 0",
            ("alice", 0),
            sh,
            None,
            "weak-key",
        );
    }
    {
        let mut p = pairs(&hdr(1));
        let mut y_eq_p = [0xffu8; 32];
        y_eq_p[0] = 0xed;
        y_eq_p[31] = 0x7f;
        set(&mut p, 1, Some(Value::Bytes(y_eq_p.to_vec())));
        let sh = sign_raw(k, &enc(p));
        case(
            "non-canonical-key",
            "author key encodes y = p (not reduced)",
            ("alice", 0),
            sh,
            None,
            "non-canonical-key",
        );
    }

    // Chain.
    case(
        "seq-gap",
        "entry 5 offered after entries 1..=3",
        ("alice", 3),
        e(5).0.as_bytes().to_vec(),
        None,
        "seq-gap",
    );
    {
        let mut h = hdr(4);
        h.backlink = Some(e(2).0.id());
        let sh = sign_raw(k, &h.encode().unwrap());
        case(
            "wrong-backlink",
            "entry 4 whose backlink names entry 2",
            ("alice", 3),
            sh,
            None,
            "wrong-backlink",
        );
    }
    {
        let mut h = hdr(4);
        h.lipmaa = Some(e(2).0.id());
        let sh = sign_raw(k, &h.encode().unwrap());
        case(
            "wrong-lipmaa",
            "entry 4 whose lipmaa link names entry 2 instead of lipmaa(4) = 1",
            ("alice", 3),
            sh,
            None,
            "wrong-lipmaa",
        );
    }
    {
        let mut p = pairs(&hdr(4));
        set(&mut p, 4, None);
        let sh = sign_raw(k, &enc(p));
        case(
            "lipmaa-missing",
            "entry 4 without the lipmaa link it must carry",
            ("alice", 3),
            sh,
            None,
            "lipmaa-presence",
        );
    }
    {
        let mut p = pairs(&hdr(3));
        set(&mut p, 4, Some(Value::Bytes(e(1).0.id().0.to_vec())));
        let sh = sign_raw(k, &enc(p));
        case(
            "lipmaa-redundant",
            "entry 3 with a lipmaa link although lipmaa(3) = 2 is the backlink",
            ("alice", 2),
            sh,
            None,
            "lipmaa-presence",
        );
    }
    {
        let mut p = pairs(&hdr(1));
        set(&mut p, 3, Some(Value::Bytes(vec![0; 32])));
        let sh = sign_raw(k, &enc(p));
        case(
            "backlink-on-first",
            "entry 1 with a backlink",
            ("alice", 0),
            sh,
            None,
            "backlink-presence",
        );
    }
    {
        let mut h = hdr(3);
        h.timestamp = NOW + 3 * 365 * 24 * 3600 * 1000;
        let sh = sign_raw(k, &h.encode().unwrap());
        case(
            "future-timestamp",
            "entry 3 dated three years after the receiver's clock",
            ("alice", 2),
            sh,
            None,
            "future-timestamp",
        );
    }
    {
        let mut h = hdr(3);
        h.timestamp = T0;
        let sh = sign_raw(k, &h.encode().unwrap());
        case(
            "timestamp-decreased",
            "entry 3 dated before entry 2",
            ("alice", 2),
            sh,
            None,
            "timestamp-decreased",
        );
    }
    case(
        "payload-mismatch",
        "entry 3 with the payload of entry 2",
        ("alice", 2),
        e(3).0.as_bytes().to_vec(),
        Some(e(2).1.clone()),
        "payload-mismatch",
    );
    {
        let mut h = hdr(1);
        let payload = vec![0xf9, 0x3c, 0x00]; // half-float 1.0
        h.payload_size = 3;
        h.payload_hash = PayloadHash::of(&payload);
        h.payload_type = "example/float".into();
        let sh = sign_raw(k, &h.encode().unwrap());
        case(
            "payload-float",
            "a payload that is a float (hash and size match)",
            ("alice", 0),
            sh,
            Some(payload),
            "float",
        );
    }

    // Canonical CBOR of the header (each signed, so only the profile rejects it).
    let h1 = e(1).0.header_bytes().to_vec();
    assert_eq!(&h1[..3], &[0xa7, 0x00, 0x01]);
    let mut nonshort = vec![0xa7, 0x00, 0x18, 0x01];
    nonshort.extend_from_slice(&h1[3..]);
    case(
        "non-shortest-integer",
        "header with version 1 encoded as 0x18 0x01",
        ("alice", 0),
        sign_raw(k, &nonshort),
        None,
        "non-shortest-integer",
    );
    let mut indef = vec![0xbf];
    indef.extend_from_slice(&h1[1..]);
    indef.push(0xff);
    case(
        "indefinite-length",
        "header map with indefinite length",
        ("alice", 0),
        sign_raw(k, &indef),
        None,
        "indefinite-length",
    );
    {
        let mut p = pairs(&hdr(1));
        p.swap(0, 1);
        case(
            "unsorted-keys",
            "header with keys 1 before 0",
            ("alice", 0),
            sign_raw(k, &enc(p)),
            None,
            "unsorted-keys",
        );
    }
    {
        let mut p = pairs(&hdr(1));
        p.insert(1, (uint(0), uint(1)));
        case(
            "duplicate-key",
            "header with key 0 twice",
            ("alice", 0),
            sign_raw(k, &enc(p)),
            None,
            "duplicate-key",
        );
    }
    {
        let mut p = pairs(&hdr(1));
        set(&mut p, 5, Some(Value::Float(1.5)));
        case(
            "float",
            "header with a float timestamp",
            ("alice", 0),
            sign_raw(k, &enc(p)),
            None,
            "float",
        );
    }
    {
        let mut p = pairs(&hdr(1));
        let author = p[1].1.clone();
        p[1].1 = Value::Tag(24, Box::new(author));
        case(
            "tag",
            "header whose author is wrapped in tag 24",
            ("alice", 0),
            sign_raw(k, &enc(p)),
            None,
            "tag",
        );
    }
    {
        let mut sh = e(1).0.as_bytes().to_vec();
        sh.push(0x00);
        case(
            "trailing-bytes",
            "signed header followed by one extra byte",
            ("alice", 0),
            sh,
            None,
            "trailing-bytes",
        );
    }
    {
        let mut h = hdr(1);
        h.extensions = vec![("x-big".into(), Value::Bytes(vec![0; 1100]))];
        let hb = cbor::encode(&h.to_value()).unwrap();
        case(
            "oversize",
            "header of more than 1024 bytes (a large extension)",
            ("alice", 0),
            sign_raw(k, &hb),
            None,
            "too-large",
        );
    }
    {
        let mut p = pairs(&hdr(1));
        set(&mut p, 0, Some(uint(2)));
        case(
            "unsupported-version",
            "header format version 2",
            ("alice", 0),
            sign_raw(k, &enc(p)),
            None,
            "unsupported-version",
        );
    }
    {
        let mut p = pairs(&hdr(1));
        set(&mut p, 8, None);
        case(
            "missing-field",
            "header without its payload hash",
            ("alice", 0),
            sign_raw(k, &enc(p)),
            None,
            "bad-field",
        );
    }
    {
        let mut p = pairs(&hdr(1));
        set(&mut p, 10, Some(uint(0)));
        case(
            "unknown-field",
            "header with field 10, which version 1 does not define",
            ("alice", 0),
            sign_raw(k, &enc(p)),
            None,
            "bad-field",
        );
    }
    {
        let mut h = hdr(1);
        h.payload_type = "Tagline/Note".into();
        let hb = cbor::encode(&h.to_value()).unwrap();
        case(
            "bad-payload-type",
            "payload type with capital letters",
            ("alice", 0),
            sign_raw(k, &hb),
            None,
            "bad-payload-type",
        );
    }
    {
        let mut h = hdr(1);
        h.payload_size = tagline_format::limits::MAX_PAYLOAD_SIZE + 1;
        let hb = cbor::encode(&h.to_value()).unwrap();
        case(
            "payload-too-large",
            "header announcing a payload one byte over the limit",
            ("alice", 0),
            sign_raw(k, &hb),
            None,
            "payload-too-large",
        );
    }
    out
}

fn hex(b: &[u8]) -> String {
    ::hex::encode(b)
}

fn valid_json(f: &[Feed]) -> J {
    json!({
        "description": "Valid feeds. For each entry: the fields, the exact header bytes, the signature and the signed header (CBOR [header bstr, signature bstr]), and the id = blake3(signed header). Signing is deterministic (RFC 8032), so an implementation given the seed and fields MUST produce these bytes.",
        "signature_context": hex(tagline_format::entry::SIGNATURE_CONTEXT),
        "feeds": f.iter().map(|feed| json!({
            "name": feed.name,
            "seed": hex(&*feed.key.seed()),
            "public_key": hex(feed.key.public().as_bytes()),
            "public_key_text": feed.key.public().to_string(),
            "entries": feed.entries.iter().map(|(s, p)| {
                let h = s.header();
                json!({
                    "seq": h.seq,
                    "timestamp": h.timestamp,
                    "backlink": h.backlink.map(|b| hex(&b.0)),
                    "lipmaa": h.lipmaa.map(|b| hex(&b.0)),
                    "lipmaa_seq": if has_distinct_lipmaa(h.seq) { Some(lipmaa(h.seq)) } else { None },
                    "payload_type": h.payload_type,
                    "payload": hex(p),
                    "payload_size": h.payload_size,
                    "payload_hash": hex(&h.payload_hash.0),
                    "header": hex(s.header_bytes()),
                    "signature": hex(s.signature()),
                    "signed_header": hex(s.as_bytes()),
                    "id": hex(&s.id().0),
                    "id_text": s.id().to_string(),
                })
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn invalid_json(f: &[Feed]) -> J {
    json!({
        "description": "Invalid entries. Take the first `context_len` entries of the named feed in entries-valid.json as already accepted; then `signed_header` (with `payload` if given), received at `now_ms`, MUST be refused with `error` (the codes are listed in SPEC.md §8).",
        "cases": invalid_cases(f).into_iter().map(|c| json!({
            "name": c.name,
            "description": c.description,
            "context_feed": c.context.0,
            "context_len": c.context.1,
            "signed_header": hex(&c.signed_header),
            "payload": c.payload.as_deref().map(hex),
            "now_ms": c.now_ms,
            "error": c.error,
        })).collect::<Vec<_>>(),
    })
}

fn cbor_json() -> J {
    let valid = [
        ("00", "0"),
        ("17", "23"),
        ("1818", "24"),
        ("1903e8", "1000"),
        ("1b0000000100000000", "2^32"),
        ("20", "-1"),
        ("4401020304", "4-byte byte string"),
        ("6161", "text \"a\""),
        ("820102", "[1, 2]"),
        ("a201020304", "{1: 2, 3: 4}"),
        (
            "a20001616101",
            "{0: 1, \"a\": 1}: integer keys sort before text keys",
        ),
        (
            "a261620162616102",
            "{\"b\": 1, \"aa\": 2}: shorter text keys first",
        ),
        ("f4", "false"),
        ("f5", "true"),
    ];
    let invalid = [
        ("1817", "non-shortest-integer", "23 in two bytes"),
        ("190017", "non-shortest-integer", "23 in three bytes"),
        (
            "5800",
            "non-shortest-integer",
            "empty byte string with a one-byte length",
        ),
        ("5f4100ff", "indefinite-length", "indefinite byte string"),
        ("9f01ff", "indefinite-length", "indefinite array"),
        ("bf0102ff", "indefinite-length", "indefinite map"),
        ("f93c00", "float", "half-precision 1.0"),
        ("fa3f800000", "float", "single-precision 1.0"),
        ("fb3ff8000000000000", "float", "double-precision 1.5"),
        (
            "c074323031332d30332d32315432303a30343a30305a",
            "tag",
            "tag 0 date string",
        ),
        ("d81840", "tag", "tag 24"),
        ("f6", "simple-value", "null"),
        ("f7", "simple-value", "undefined"),
        ("a203040102", "unsorted-keys", "keys 3 then 1"),
        ("a201020103", "duplicate-key", "key 1 twice"),
        ("a1f401", "invalid-key-type", "boolean key"),
        ("0000", "trailing-bytes", "two items"),
        ("5a00010000", "truncated", "declares 65,536 bytes, has none"),
        ("62c328", "invalid-utf8", "text string with invalid UTF-8"),
        ("1c", "malformed", "reserved additional information 28"),
        (
            "818181818181818181818181818181818100",
            "too-deep",
            "17 nested arrays",
        ),
        ("9a00010001", "too-many-items", "array of 65,537 elements"),
    ];
    json!({
        "description": "The canonical CBOR profile (SPEC.md §2) on small items. Valid items MUST be accepted; invalid ones MUST be refused with the given error code. No size limit applies beyond the input length here.",
        "valid": valid.iter().map(|(h, d)| json!({"hex": h, "description": d})).collect::<Vec<_>>(),
        "invalid": invalid.iter().map(|(h, e, d)| json!({"hex": h, "error": e, "description": d})).collect::<Vec<_>>(),
    })
}

fn misc_json() -> J {
    let k = SecretKey::from_seed(&seed(1));
    let id = EntryId::of(b"example");
    json!({
        "description": "Text forms (bech32m, BIP-350) and lipmaa values.",
        "text_forms": [
            {"kind": "public_key", "hrp": "tlk", "hex": hex(k.public().as_bytes()), "text": k.public().to_string()},
            {"kind": "entry_id", "hrp": "tle", "hex": hex(&id.0), "text": id.to_string()},
            {"kind": "payload_hash", "hrp": "tlp", "hex": hex(&PayloadHash::of(b"x").0), "text": PayloadHash::of(b"x").to_string()},
        ],
        "lipmaa": (1..=45u64).chain([121, 364, 1093, 100_000]).map(|n| json!([n, lipmaa(n)])).collect::<Vec<_>>(),
    })
}

fn write_or_compare(name: &str, value: &J) {
    let path = vectors_dir().join(name);
    let text = serde_json::to_string_pretty(value).unwrap() + "\n";
    if std::env::var_os("TAGLINE_WRITE_VECTORS").is_some() {
        std::fs::create_dir_all(vectors_dir()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with TAGLINE_WRITE_VECTORS=1)", path.display()));
    assert_eq!(
        on_disk,
        text,
        "{} differs from what this implementation produces",
        path.display()
    );
}

#[test]
fn vectors_are_what_this_implementation_produces() {
    let f = feeds();
    write_or_compare("entries-valid.json", &valid_json(&f));
    write_or_compare("entries-invalid.json", &invalid_json(&f));
    write_or_compare("cbor.json", &cbor_json());
    write_or_compare("text-and-lipmaa.json", &misc_json());
}

fn load(name: &str) -> J {
    serde_json::from_str(&std::fs::read_to_string(vectors_dir().join(name)).unwrap()).unwrap()
}

fn unhex(v: &J) -> Vec<u8> {
    ::hex::decode(v.as_str().unwrap()).unwrap()
}

/// Checks the files on their own terms, as another implementation would.
#[test]
fn valid_vectors_verify_and_reproduce() {
    let v = load("entries-valid.json");
    for feed in v["feeds"].as_array().unwrap() {
        let seed: [u8; 32] = unhex(&feed["seed"]).try_into().unwrap();
        let key = SecretKey::from_seed(&seed);
        assert_eq!(
            hex(key.public().as_bytes()),
            feed["public_key"].as_str().unwrap()
        );
        assert_eq!(
            feed["public_key_text"]
                .as_str()
                .unwrap()
                .parse::<PublicKey>()
                .unwrap(),
            key.public()
        );
        let mut head: Option<Head> = None;
        let mut ids: Vec<EntryId> = Vec::new();
        for e in feed["entries"].as_array().unwrap() {
            let sh_bytes = unhex(&e["signed_header"]);
            let payload = unhex(&e["payload"]);
            let seq = e["seq"].as_u64().unwrap();
            let target = has_distinct_lipmaa(seq).then(|| ids[(lipmaa(seq) - 1) as usize]);
            let sh =
                validate_received(head.as_ref(), target, &sh_bytes, Some(&payload), NOW).unwrap();
            // Every valid signature also passes ed25519-dalek's verify_strict.
            let vk = ed25519_dalek::VerifyingKey::from_bytes(key.public().as_bytes()).unwrap();
            vk.verify_strict(
                &sh.message(),
                &ed25519_dalek::Signature::from_bytes(sh.signature()),
            )
            .unwrap();
            assert_eq!(hex(sh.header_bytes()), e["header"].as_str().unwrap());
            assert_eq!(hex(sh.signature()), e["signature"].as_str().unwrap());
            assert_eq!(hex(&sh.id().0), e["id"].as_str().unwrap());
            assert_eq!(sh.id().to_string(), e["id_text"].as_str().unwrap());
            // Re-creating the entry from its fields gives the same bytes.
            let again = create_entry(
                &key,
                head.as_ref(),
                target,
                e["timestamp"].as_u64().unwrap(),
                e["payload_type"].as_str().unwrap(),
                payload,
            )
            .unwrap();
            assert_eq!(again.signed.as_bytes(), sh_bytes.as_slice());
            head = Some(Head::of(&sh));
            ids.push(sh.id());
        }
    }
}

#[test]
fn invalid_vectors_fail_with_their_code() {
    let valid = load("entries-valid.json");
    let v = load("entries-invalid.json");
    let mut seen = std::collections::BTreeSet::new();
    for c in v["cases"].as_array().unwrap() {
        let feed = valid["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == c["context_feed"])
            .unwrap();
        let n = c["context_len"].as_u64().unwrap() as usize;
        let context: Vec<SignedHeader> = feed["entries"].as_array().unwrap()[..n]
            .iter()
            .map(|e| SignedHeader::decode_verified(unhex(&e["signed_header"])).unwrap())
            .collect();
        let head = context.last().map(Head::of);
        let sh = unhex(&c["signed_header"]);
        let payload = c["payload"].as_str().map(|p| ::hex::decode(p).unwrap());
        // The lipmaa target for the claimed seq, if the context holds it.
        let claimed_seq = head.map_or(1, |h| h.seq + 1);
        let target = has_distinct_lipmaa(claimed_seq)
            .then(|| {
                context
                    .get((lipmaa(claimed_seq) - 1) as usize)
                    .map(|e| e.id())
            })
            .flatten();
        let err = validate_received(
            head.as_ref(),
            target,
            &sh,
            payload.as_deref(),
            c["now_ms"].as_u64().unwrap(),
        )
        .expect_err(c["name"].as_str().unwrap());
        assert_eq!(
            err.code(),
            c["error"].as_str().unwrap(),
            "case {}: {err}",
            c["name"]
        );
        seen.insert(err.code());
    }
    for needed in [
        "bad-signature",
        "wrong-backlink",
        "wrong-lipmaa",
        "seq-gap",
        "non-shortest-integer",
        "indefinite-length",
        "unsorted-keys",
        "duplicate-key",
        "float",
        "tag",
        "trailing-bytes",
        "too-large",
        "weak-key",
        "non-canonical-s",
        "future-timestamp",
    ] {
        assert!(seen.contains(needed), "no invalid vector for {needed}");
    }
}

#[test]
fn cbor_vectors() {
    let v = load("cbor.json");
    for c in v["valid"].as_array().unwrap() {
        let b = unhex(&c["hex"]);
        cbor::decode(&b, b.len()).unwrap_or_else(|e| panic!("{}: {e}", c["description"]));
    }
    for c in v["invalid"].as_array().unwrap() {
        let b = unhex(&c["hex"]);
        let err = cbor::decode(&b, b.len()).unwrap_err();
        assert_eq!(
            err.code(),
            c["error"].as_str().unwrap(),
            "{}: {err}",
            c["description"]
        );
    }
}

#[test]
fn text_and_lipmaa_vectors() {
    let v = load("text-and-lipmaa.json");
    for t in v["text_forms"].as_array().unwrap() {
        let bytes: [u8; 32] = unhex(&t["hex"]).try_into().unwrap();
        let text = t["text"].as_str().unwrap();
        match t["kind"].as_str().unwrap() {
            "public_key" => assert_eq!(text.parse::<PublicKey>().unwrap().as_bytes(), &bytes),
            "entry_id" => assert_eq!(text.parse::<EntryId>().unwrap().0, bytes),
            "payload_hash" => assert_eq!(text.parse::<PayloadHash>().unwrap().0, bytes),
            other => panic!("{other}"),
        }
    }
    for pair in v["lipmaa"].as_array().unwrap() {
        assert_eq!(lipmaa(pair[0].as_u64().unwrap()), pair[1].as_u64().unwrap());
    }
}

/// Seeds fuzz/corpus from the vectors (only with TAGLINE_WRITE_VECTORS=1).
fn seed_fuzz_corpus(f: &[Feed]) {
    if std::env::var_os("TAGLINE_WRITE_VECTORS").is_none() {
        return;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let ed = root.join("entry_decode");
    let im = root.join("import");
    std::fs::create_dir_all(&ed).unwrap();
    std::fs::create_dir_all(&im).unwrap();
    for feed in f {
        for (s, p) in &feed.entries {
            std::fs::write(
                ed.join(format!("valid-{}-{}", feed.name, s.seq())),
                s.as_bytes(),
            )
            .unwrap();
            std::fs::write(ed.join(format!("payload-{}-{}", feed.name, s.seq())), p).unwrap();
        }
        let mut stream = tagline_format::stream::STREAM_MAGIC.to_vec();
        for (s, p) in &feed.entries {
            stream.extend(tagline_format::stream::encode_record(s.as_bytes(), Some(p)));
        }
        std::fs::write(im.join(format!("stream-{}", feed.name)), &stream).unwrap();
        let mut headers_only = tagline_format::stream::STREAM_MAGIC.to_vec();
        for (s, _) in feed.entries.iter().rev() {
            headers_only.extend(tagline_format::stream::encode_record(s.as_bytes(), None));
        }
        std::fs::write(
            im.join(format!("stream-{}-reversed-no-payloads", feed.name)),
            &headers_only,
        )
        .unwrap();
        let mut truncated = stream.clone();
        truncated.truncate(stream.len() - 7);
        std::fs::write(
            im.join(format!("stream-{}-truncated", feed.name)),
            &truncated,
        )
        .unwrap();
        let mut flipped = stream.clone();
        let n = flipped.len();
        flipped[n / 2] ^= 0x10;
        std::fs::write(im.join(format!("stream-{}-flipped", feed.name)), &flipped).unwrap();
    }
    for c in invalid_cases(f) {
        std::fs::write(ed.join(format!("invalid-{}", c.name)), &c.signed_header).unwrap();
    }
    let cb = cbor_json();
    for (i, c) in cb["invalid"].as_array().unwrap().iter().enumerate() {
        std::fs::write(ed.join(format!("cbor-invalid-{i}")), unhex(&c["hex"])).unwrap();
    }
}

#[test]
fn fuzz_corpus_seeding() {
    // Writes only when regenerating; otherwise checks the corpus holds every valid vector.
    let f = feeds();
    seed_fuzz_corpus(&f);
    let ed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/entry_decode");
    for feed in &f {
        for (s, _) in &feed.entries {
            let p = ed.join(format!("valid-{}-{}", feed.name, s.seq()));
            assert_eq!(std::fs::read(&p).unwrap(), s.as_bytes(), "{}", p.display());
        }
    }
}

fn review_payloads() -> Vec<(&'static str, tagline_format::review::ReviewPayload)> {
    use tagline_format::identity::IdentityId;
    use tagline_format::review::*;
    let id = IdentityId(SecretKey::from_seed(&seed(1)).public());
    let e = |n: u8| EntryId([n; 32]);
    vec![
        (
            "project",
            ReviewPayload::Project(Project {
                name: "example".into(),
                repositories: vec!["https://git.example.org/example.git".into()],
                branch: "main".into(),
                policy: "[ci]\nrequired = [\"test\"]\n[review]\nmin_reviewed_by = 2\n".into(),
                maintainers: vec![id],
                committers: vec![],
                reviewers: vec![],
                maintainers_file: true,
                bridges: vec![],
                ci: vec![CiRole {
                    identity: id,
                    contexts: vec!["test".into()],
                }],
                gates: vec![id],
                lists: vec!["dev@lists.example.org".into()],
                amends: None,
            }),
        ),
        (
            "revision",
            ReviewPayload::Revision(Revision {
                project: e(1),
                series: None,
                version: 1,
                base_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                cover: Some(Cover {
                    subject: "[PATCH 0/1] Fix a thing".into(),
                    body: "Why.\n".into(),
                }),
                changelog: None,
                patches: vec![Patch {
                    subject: "x: fix a thing".into(),
                    message: "Longer text.\n\nSigned-off-by: Ada <ada@example.org>\n".into(),
                    author: "Ada <ada@example.org>".into(),
                    diff: "diff --git a/x.c b/x.c\n--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+b\n"
                        .into(),
                    patch_id: "89abcdef0123456789abcdef0123456789abcdef".into(),
                }],
                change_id: None,
                mails: None,
            }),
        ),
        (
            "review",
            ReviewPayload::Review(Review {
                revision: e(2),
                patch: Some(1),
                trailers: vec![("Reviewed-by".into(), "Bob <bob@example.org>".into())],
                comment: Some("Looks right.".into()),
                inline: vec![InlineComment {
                    file: "x.c".into(),
                    side: Side::New,
                    start_line: 1,
                    end_line: 1,
                    text: "nit".into(),
                }],
                retracts: None,
                mail: None,
                flagged: Vec::new(),
            }),
        ),
        (
            "ci",
            ReviewPayload::Ci(CiResult {
                revision: e(2),
                context: "test".into(),
                status: CiStatus::Pass,
                summary: "all 12 tests passed".into(),
                log_excerpt: None,
                log_hash: Some([7; 32]),
                runner: Some("ci-1".into()),
                duration_ms: Some(61_000),
                url: None,
            }),
        ),
        (
            "merge",
            ReviewPayload::Merge(Merge {
                revision: e(2),
                commits: vec!["fedcba9876543210fedcba9876543210fedcba98".into()],
                branch: "main".into(),
                cites: vec![e(3), e(4)],
            }),
        ),
        (
            "tag",
            ReviewPayload::Tag(Tag {
                target: e(2),
                label: "RFC".into(),
                add: true,
            }),
        ),
        ("withdraw", ReviewPayload::Withdraw(e(2))),
        (
            "revision-bridged",
            ReviewPayload::Revision(Revision {
                project: e(1),
                series: Some(e(2)),
                version: 2,
                base_commit: None,
                cover: None,
                changelog: None,
                patches: vec![Patch {
                    subject: "x: fix a thing".into(),
                    message: "Longer text.\n\nSigned-off-by: Ada <ada@example.org>\n".into(),
                    author: "Ada <ada@example.org>".into(),
                    diff: "diff --git a/x.c b/x.c\n--- a/x.c\n+++ b/x.c\n@@ -1 +1 @@\n-a\n+c\n"
                        .into(),
                    patch_id: "0123456789abcdef0123456789abcdef01234567".into(),
                }],
                change_id: None,
                mails: Some(RevisionMails {
                    cover: None,
                    patches: vec!["20261121.1-ada@example.org".into()],
                }),
            }),
        ),
        (
            "review-bridged",
            ReviewPayload::Review(Review {
                revision: e(2),
                patch: Some(1),
                trailers: vec![("Reviewed-by".into(), "Bob <bob@example.org>".into())],
                comment: Some("Looks right.".into()),
                inline: vec![],
                retracts: None,
                mail: Some(ReviewMail {
                    message_id: "reply.1-bob@example.org".into(),
                    from: "bob@example.org".into(),
                    dkim: "pass".into(),
                }),
                flagged: vec![FlaggedTrailer {
                    key: "Acked-by".into(),
                    value: "Carol <carol@example.org>".into(),
                    reason: "not the sender's address (bob@example.org)".into(),
                }],
            }),
        ),
    ]
}

#[test]
fn mail_payload_vectors() {
    use tagline_format::mail::{Dkim, MailRecord};
    let raw = b"From: Ada <ada@example.org>\r\nTo: dev@lists.example.org\r\nSubject: [PATCH] x: fix a thing\r\nMessage-ID: <20261121.1-ada@example.org>\r\nDate: Sat, 21 Nov 2026 10:00:00 +0000\r\n\r\nLonger text.\r\n".to_vec();
    let good = MailRecord {
        message_id: "20261121.1-ada@example.org".into(),
        from: "Ada <ada@example.org>".into(),
        date: Some(1_795_255_200),
        subject: "[PATCH] x: fix a thing".into(),
        in_reply_to: vec![],
        references: vec![],
        list: Some("dev@lists.example.org".into()),
        raw_hash: *blake3::hash(&raw).as_bytes(),
        raw: Some(raw.clone()),
        dkim: Dkim {
            result: "none".into(),
            domain: None,
            detail: None,
        },
        kind: "patch".into(),
    };
    let mut wrong_hash = good.clone();
    wrong_hash.raw_hash = [0; 32];
    let mut no_id = good.clone();
    no_id.message_id = String::new();
    let mut long_subject = good.clone();
    long_subject.subject = "x".repeat(1025);
    let valid = [
        ("mail", good.clone()),
        ("mail-without-raw", MailRecord { raw: None, ..good }),
    ];
    let invalid = [
        (
            "raw-hash-mismatch",
            wrong_hash,
            "the raw message does not hash to field 7",
        ),
        ("empty-message-id", no_id, "an empty Message-ID"),
        ("subject-too-long", long_subject, "more than 1024"),
    ];
    let show =
        |bytes: &[u8]| tagline_format::payload::to_json(&cbor::decode(bytes, bytes.len()).unwrap());
    let doc = json!({
        "description": "tagline/mail payloads (SPEC.md §15). valid: decoders MUST accept them and re-encode them to the same bytes; invalid: decoders MUST refuse them (the reason is this implementation's message).",
        "valid": valid.iter().map(|(name, r)| { let b = r.encode(); json!({"name": name, "payload": hex(&b), "fields": show(&b)}) }).collect::<Vec<_>>(),
        "invalid": invalid.iter().map(|(name, r, why)| { let b = r.encode(); json!({"name": name, "payload": hex(&b), "reason": why}) }).collect::<Vec<_>>(),
    });
    write_or_compare("mail-payloads.json", &doc);
    let on_disk = load("mail-payloads.json");
    for c in on_disk["valid"].as_array().unwrap() {
        let bytes = unhex(&c["payload"]);
        assert_eq!(
            MailRecord::decode(&bytes).unwrap().encode(),
            bytes,
            "{}",
            c["name"]
        );
    }
    for c in on_disk["invalid"].as_array().unwrap() {
        let bytes = unhex(&c["payload"]);
        let err = MailRecord::decode(&bytes).unwrap_err().to_string();
        assert!(
            err.contains(c["reason"].as_str().unwrap()),
            "{}: {err}",
            c["name"]
        );
    }
}

#[test]
fn review_payload_vectors() {
    let cases: Vec<J> = review_payloads()
        .into_iter()
        .map(|(name, p)| {
            let bytes = p.encode();
            let v = cbor::decode(&bytes, bytes.len()).unwrap();
            json!({"name": name, "type": p.type_name(), "payload": hex(&bytes), "fields": tagline_format::payload::to_json(&v)})
        })
        .collect();
    let doc = json!({
        "description": "Review payload types (SPEC.md §13): for each, the canonical payload bytes and the same map as JSON (integer keys as strings, byte strings as {\"$bytes\": hex}). Decoders MUST accept these and re-encode them to the same bytes.",
        "payloads": cases,
    });
    write_or_compare("review-payloads.json", &doc);
    let on_disk = load("review-payloads.json");
    for c in on_disk["payloads"].as_array().unwrap() {
        let bytes = unhex(&c["payload"]);
        let p = tagline_format::review::ReviewPayload::decode(c["type"].as_str().unwrap(), &bytes)
            .unwrap()
            .unwrap();
        assert_eq!(p.encode(), bytes, "{}", c["name"]);
    }
}
