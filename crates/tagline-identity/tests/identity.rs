//! Identity resolution: scenarios and order-independence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

use proptest::prelude::*;
use tagline_format::entry::{Entry, Head, create_entry};
use tagline_format::identity::{IdentityId, IdentityPayload, rotation};
use tagline_format::lipmaa::{has_distinct_lipmaa, lipmaa};
use tagline_format::payload::note;
use tagline_format::{PublicKey, SecretKey};
use tagline_identity::{Input, ProblemKind, Registry, resolve};

struct Feed {
    key: SecretKey,
    entries: Vec<Entry>,
}

impl Feed {
    fn new(n: u8) -> Feed {
        Feed {
            key: SecretKey::from_seed(&[n; 32]),
            entries: Vec::new(),
        }
    }
    fn public(&self) -> PublicKey {
        self.key.public()
    }
    fn push(&mut self, t: &str, payload: Vec<u8>) -> u64 {
        let prev = self.entries.last().map(|e| Head::of(&e.signed));
        let seq = prev.map_or(1, |h| h.seq + 1);
        let target =
            has_distinct_lipmaa(seq).then(|| self.entries[(lipmaa(seq) - 1) as usize].signed.id());
        let e = create_entry(
            &self.key,
            prev.as_ref(),
            target,
            1_700_000_000_000 + seq,
            t,
            payload,
        )
        .unwrap();
        self.entries.push(e);
        seq
    }
    fn id(&mut self, p: IdentityPayload) -> u64 {
        self.push(p.type_name(), p.encode())
    }
    fn note(&mut self) -> u64 {
        self.push("tagline/note", note("work"))
    }
    /// Authorises `device` from its first entry on.
    fn add_device(&mut self, device: &Feed) -> u64 {
        self.id(IdentityPayload::DeviceAdd {
            device: device.public(),
            from_seq: 1,
        })
    }
    /// Joins this device's feed to `identity`.
    fn join(&mut self, identity: IdentityId) -> u64 {
        self.id(IdentityPayload::Join { identity })
    }
}

fn run(feeds: &[&Feed]) -> Registry {
    let inputs: Vec<Input<'_>> = feeds
        .iter()
        .flat_map(|f| f.entries.iter())
        .map(|e| Input {
            signed: &e.signed,
            payload: e.payload.as_deref(),
        })
        .collect();
    resolve(&inputs)
}

fn kinds(r: &Registry) -> Vec<ProblemKind> {
    r.problems.iter().map(|p| p.kind).collect()
}

/// Root R with devices D1 and D2, both joined; each publishes notes.
fn two_devices() -> (Feed, Feed, Feed) {
    let mut r = Feed::new(1);
    let mut d1 = Feed::new(2);
    let mut d2 = Feed::new(3);
    let id = IdentityId(r.public());
    r.id(IdentityPayload::Genesis);
    r.id(IdentityPayload::Profile {
        name: "Ada Lovelace".into(),
    });
    r.id(IdentityPayload::Email {
        address: "ada@example.org".into(),
        claimed: true,
    });
    r.id(IdentityPayload::Email {
        address: "ada@old.example".into(),
        claimed: true,
    });
    r.id(IdentityPayload::Email {
        address: "ada@old.example".into(),
        claimed: false,
    });
    r.add_device(&d1);
    r.add_device(&d2);
    d1.join(id);
    d2.join(id);
    for _ in 0..5 {
        d1.note();
        d2.note();
    }
    (r, d1, d2)
}

#[test]
fn registries_encode_and_decode_exactly() {
    let (mut r, d1, d2) = two_devices();
    let id = IdentityId(r.public());
    r.id(IdentityPayload::DeviceRevoke {
        device: d1.public(),
        last_valid_seq: 2,
    });
    let mut bridge = Feed::new(40);
    bridge.id(IdentityPayload::EmailProof {
        identity: id,
        address: "ada@example.org".into(),
        method: "dkim".into(),
        detail: "d".into(),
    });
    let mut evil = Feed::new(41);
    evil.add_device(&d2);
    let reg = run(&[&r, &d1, &d2, &bridge, &evil]);
    assert!(!reg.problems.is_empty());
    let back = Registry::decode(&reg.encode()).unwrap();
    assert_eq!(back, reg);
    assert_eq!(back.identity_of(&d1.public(), 3), None);
    assert_eq!(Registry::decode(b"\x01\x02"), None);
    // A cut or extended cache is refused, never half read.
    let bytes = reg.encode();
    for n in 0..bytes.len() {
        assert_eq!(Registry::decode(&bytes[..n]), None, "prefix of {n} bytes");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(Registry::decode(&longer), None);
}

#[test]
fn two_devices_publish_for_one_identity() {
    let (r, d1, d2) = two_devices();
    let reg = run(&[&r, &d1, &d2]);
    assert!(reg.problems.is_empty(), "{:?}", reg.problems);
    let id = IdentityId(r.public());
    let ident = &reg.identities[&id];
    assert_eq!(ident.name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        ident
            .emails
            .iter()
            .map(|e| e.address.as_str())
            .collect::<Vec<_>>(),
        ["ada@example.org"]
    );
    assert!(!ident.emails[0].verified());
    assert_eq!(ident.devices.len(), 2);
    for seq in 1..=6 {
        assert_eq!(reg.identity_of(&d1.public(), seq), Some(id));
        assert_eq!(reg.identity_of(&d2.public(), seq), Some(id));
    }
}

#[test]
fn a_device_counts_only_once_it_joined() {
    let (r, _, d2) = two_devices();
    let mut d3 = Feed::new(9);
    d3.note();
    let mut r = r;
    r.add_device(&d3);
    let reg = run(&[&r, &d2, &d3]);
    assert_eq!(reg.identity_of(&d3.public(), 1), None);
    let dev = reg.identities[&IdentityId(r.public())]
        .devices
        .iter()
        .find(|d| d.key == d3.public())
        .cloned()
        .unwrap();
    assert!(!dev.joined);
}

#[test]
fn revoked_device_entries_after_n_count_for_nobody() {
    let (mut r, d1, d2) = two_devices();
    r.id(IdentityPayload::DeviceRevoke {
        device: d1.public(),
        last_valid_seq: 3,
    });
    let reg = run(&[&r, &d1, &d2]);
    let id = IdentityId(r.public());
    assert_eq!(reg.identity_of(&d1.public(), 3), Some(id));
    assert_eq!(reg.identity_of(&d1.public(), 4), None);
    assert_eq!(reg.identity_of(&d2.public(), 6), Some(id));
}

#[test]
fn forged_authorisation_by_a_non_root_key_is_rejected() {
    let (r, mut d1, d2) = two_devices();
    let mut evil = Feed::new(7);
    evil.note();
    // A device (not the root) tries to authorise another key.
    d1.add_device(&evil);
    let reg = run(&[&r, &d1, &d2, &evil]);
    assert_eq!(kinds(&reg), [ProblemKind::NotRoot]);
    assert_eq!(reg.identity_of(&evil.public(), 1), None);
    // Nothing else lost.
    assert_eq!(
        reg.identity_of(&d1.public(), 2),
        Some(IdentityId(r.public()))
    );
}

#[test]
fn a_device_claimed_by_two_identities_counts_for_the_one_it_joined() {
    let (r, d1, d2) = two_devices();
    let mut mallory = Feed::new(8);
    mallory.id(IdentityPayload::Genesis);
    mallory.add_device(&d1);
    let reg = run(&[&r, &d1, &d2, &mallory]);
    assert_eq!(kinds(&reg), [ProblemKind::DeviceClaimed]);
    assert_eq!(
        reg.identity_of(&d1.public(), 2),
        Some(IdentityId(r.public()))
    );
}

#[test]
fn rotation_chain_hands_over_and_old_root_stops_counting() {
    let (mut r, d1, d2) = two_devices();
    let id = IdentityId(r.public());
    let mut r2 = Feed::new(20);
    let mut r3 = Feed::new(21);
    let rot = r.id(rotation(&id, &r.public(), &r2.key));
    // The old root keeps writing after its rotation: ignored and reported.
    r.id(IdentityPayload::Profile {
        name: "Not me".into(),
    });
    r2.id(IdentityPayload::Continue { identity: id });
    r2.id(IdentityPayload::Profile {
        name: "Ada K.".into(),
    });
    r2.id(rotation(&id, &r2.public(), &r3.key));
    r3.id(IdentityPayload::Continue { identity: id });
    r3.id(IdentityPayload::DeviceRevoke {
        device: d2.public(),
        last_valid_seq: 2,
    });
    let reg = run(&[&r, &r2, &r3, &d1, &d2]);
    let ident = &reg.identities[&id];
    assert_eq!(
        ident.roots.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        [r.public(), r2.public(), r3.public()]
    );
    assert_eq!(ident.roots[0].1, Some(rot));
    assert_eq!(ident.name.as_deref(), Some("Ada K."));
    assert_eq!(kinds(&reg), [ProblemKind::NotRoot]);
    assert_eq!(reg.identity_of(&d2.public(), 3), None);
    assert_eq!(reg.identity_of(&d1.public(), 3), Some(id));
    assert_eq!(reg.identity_of(&r.public(), rot + 1), None);
}

#[test]
fn rotation_without_countersignature_is_rejected() {
    let (mut r, d1, d2) = two_devices();
    let id = IdentityId(r.public());
    let r2 = Feed::new(20);
    let other = SecretKey::from_seed(&[99; 32]);
    // Signed by the wrong key.
    let bad = match rotation(&id, &r.public(), &other) {
        IdentityPayload::Rotate {
            countersignature, ..
        } => IdentityPayload::Rotate {
            new_root: r2.public(),
            countersignature,
        },
        _ => unreachable!(),
    };
    r.id(bad);
    r.id(IdentityPayload::Profile {
        name: "Still Ada".into(),
    });
    let reg = run(&[&r, &r2, &d1, &d2]);
    assert_eq!(kinds(&reg), [ProblemKind::RotationNotCountersigned]);
    let ident = &reg.identities[&id];
    assert_eq!(ident.roots, vec![(r.public(), None)]);
    assert_eq!(ident.name.as_deref(), Some("Still Ada"));
}

#[test]
fn rotation_loop_is_rejected() {
    let (mut r, d1, d2) = two_devices();
    let id = IdentityId(r.public());
    let mut r2 = Feed::new(20);
    r.id(rotation(&id, &r.public(), &r2.key));
    r2.id(IdentityPayload::Continue { identity: id });
    r2.id(rotation(&id, &r2.public(), &r.key));
    r2.id(IdentityPayload::Profile {
        name: "After loop".into(),
    });
    let reg = run(&[&r, &r2, &d1, &d2]);
    assert_eq!(kinds(&reg), [ProblemKind::RotationLoop]);
    assert_eq!(reg.identities[&id].current_root(), Some(&r2.public()));
    assert_eq!(reg.identities[&id].name.as_deref(), Some("After loop"));
}

#[test]
fn revocation_of_unknown_device_is_rejected() {
    let (mut r, d1, d2) = two_devices();
    let stranger = Feed::new(30);
    r.id(IdentityPayload::DeviceRevoke {
        device: stranger.public(),
        last_valid_seq: 0,
    });
    let reg = run(&[&r, &d1, &d2]);
    assert_eq!(kinds(&reg), [ProblemKind::RevokeUnknownDevice]);
    assert_eq!(reg.identities[&IdentityId(r.public())].devices.len(), 2);
}

#[test]
fn email_proofs_verify_claimed_addresses() {
    let (r, d1, d2) = two_devices();
    let id = IdentityId(r.public());
    let mut bridge = Feed::new(40);
    bridge.id(IdentityPayload::EmailProof {
        identity: id,
        address: "ada@example.org".into(),
        method: "dkim".into(),
        detail: "d=example.org".into(),
    });
    // A proof for an address that is not claimed changes nothing.
    bridge.id(IdentityPayload::EmailProof {
        identity: id,
        address: "x@example.org".into(),
        method: "dkim".into(),
        detail: "".into(),
    });
    let reg = run(&[&r, &d1, &d2, &bridge]);
    let e = &reg.identities[&id].emails[0];
    assert!(e.verified());
    assert_eq!(e.proofs[0].0, bridge.public());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// The same entry set in any order, with duplicates, gives the same registry.
    #[test]
    fn any_arrival_order_gives_the_same_result(order in Just(()).prop_perturb(|_, mut rng| {
        let mut v: Vec<usize> = (0..200).collect();
        for i in (1..v.len()).rev() {
            let j = (rng.next_u32() as usize) % (i + 1);
            v.swap(i, j);
        }
        v
    }), dup in 0usize..40, cut in 0usize..200) {
        let (mut r, d1, d2) = two_devices();
        r.id(IdentityPayload::DeviceRevoke { device: d1.public(), last_valid_seq: 4 });
        let mut mallory = Feed::new(8);
        mallory.id(IdentityPayload::Genesis);
        mallory.id(IdentityPayload::DeviceAdd { device: d2.public(), from_seq: 1 });
        let all: Vec<&Entry> = [&r, &d1, &d2, &mallory].iter().flat_map(|f| f.entries.iter()).collect();
        let reference = run(&[&r, &d1, &d2, &mallory]);
        let mut shuffled: Vec<&Entry> = order.iter().filter(|i| **i < all.len()).map(|i| all[*i]).collect();
        for i in 0..dup {
            shuffled.push(all[i % all.len()]);
        }
        let inputs: Vec<Input<'_>> = shuffled.iter().map(|e| Input { signed: &e.signed, payload: e.payload.as_deref() }).collect();
        let got = resolve(&inputs);
        prop_assert_eq!(&got, &reference);
        // The revoked device's late entries count for nobody.
        for seq in 5..=6 {
            prop_assert_eq!(got.identity_of(&d1.public(), seq), None);
        }
        // A subset never makes an entry count for a different identity.
        let subset: Vec<Input<'_>> = inputs.iter().take(cut).cloned().collect();
        let partial = resolve(&subset);
        for f in [&d1, &d2] {
            for seq in 1..=6 {
                // (A node that has not received the revocation yet still counts the
                // revoked device's late entries: eventual, not instant. What must
                // never happen is counting them for someone else.)
                if let (Some(p), Some(r)) = (partial.identity_of(&f.public(), seq), reference.identity_of(&f.public(), seq)) {
                    prop_assert_eq!(p, r);
                }
            }
        }
    }
}

// ---- protocol/vectors/identities.json ----

struct Scenario {
    name: &'static str,
    description: &'static str,
    feeds: Vec<Feed>,
    /// (feed index, seq) pairs to report what they count for.
    probes: Vec<(usize, u64)>,
}

fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    {
        let mut r = Feed::new(101);
        let mut d1 = Feed::new(102);
        let mut d2 = Feed::new(103);
        let id = IdentityId(r.public());
        r.id(IdentityPayload::Genesis);
        r.add_device(&d1);
        r.add_device(&d2);
        d1.join(id);
        d2.join(id);
        d1.note();
        d2.note();
        d1.note();
        d1.note();
        r.id(IdentityPayload::DeviceRevoke {
            device: d1.public(),
            last_valid_seq: 3,
        });
        out.push(Scenario {
            name: "revoked-device",
            description: "root adds D1 and D2; D1 is revoked after its seq 3; D1's entry 4 counts for nobody, D2 is unaffected",
            feeds: vec![r, d1, d2],
            probes: vec![(1, 2), (1, 3), (1, 4), (2, 2)],
        });
    }
    {
        let mut r = Feed::new(111);
        let mut r2 = Feed::new(112);
        let mut r3 = Feed::new(113);
        let mut d = Feed::new(114);
        let id = IdentityId(r.public());
        r.id(IdentityPayload::Genesis);
        r.id(IdentityPayload::Profile {
            name: "First".into(),
        });
        r.id(rotation(&id, &r.public(), &r2.key));
        r.id(IdentityPayload::Profile {
            name: "Written by the old root after rotating".into(),
        });
        r2.id(IdentityPayload::Continue { identity: id });
        r2.id(rotation(&id, &r2.public(), &r3.key));
        r3.id(IdentityPayload::Continue { identity: id });
        r3.id(IdentityPayload::Profile {
            name: "Third root".into(),
        });
        r3.add_device(&d);
        d.join(id);
        d.note();
        out.push(Scenario {
            name: "rotation-chain",
            description: "root R rotates to R2, R2 to R3 (each countersigned, each new root's feed starts with continue); R's entry after its rotation is refused (not-root); R3 authorises a device",
            feeds: vec![r, r2, r3, d],
            probes: vec![(0, 3), (0, 4), (3, 2)],
        });
    }
    {
        let mut r = Feed::new(121);
        let mut d = Feed::new(122);
        let mut e = Feed::new(123);
        let id = IdentityId(r.public());
        r.id(IdentityPayload::Genesis);
        r.add_device(&d);
        d.join(id);
        // A device (not the root) tries to authorise E, which joined.
        d.add_device(&e);
        e.join(id);
        e.note();
        out.push(Scenario {
            name: "forged-authorisation",
            description: "a device key (not the root) writes a device-add for E; E joined the identity but is not authorised, so E counts for nobody (not-root)",
            feeds: vec![r, d, e],
            probes: vec![(1, 1), (2, 2)],
        });
    }
    {
        let mut r = Feed::new(131);
        let mut r2 = Feed::new(132);
        let other = SecretKey::from_seed(&[133; 32]);
        let id = IdentityId(r.public());
        r.id(IdentityPayload::Genesis);
        let sig = match rotation(&id, &r.public(), &other) {
            IdentityPayload::Rotate {
                countersignature, ..
            } => countersignature,
            _ => unreachable!(),
        };
        r.id(IdentityPayload::Rotate {
            new_root: r2.public(),
            countersignature: sig,
        });
        r2.id(IdentityPayload::Continue { identity: id });
        out.push(Scenario {
            name: "rotation-not-countersigned",
            description: "a rotation to R2 countersigned by another key is refused; R stays the root",
            feeds: vec![r, r2],
            probes: vec![(0, 2), (1, 1)],
        });
    }
    {
        let mut x = Feed::new(141);
        let mut y = Feed::new(142);
        let mut d = Feed::new(143);
        x.id(IdentityPayload::Genesis);
        x.add_device(&d);
        y.id(IdentityPayload::Genesis);
        y.add_device(&d);
        d.id(IdentityPayload::Join {
            identity: IdentityId(x.public()),
        });
        d.note();
        out.push(Scenario {
            name: "device-claimed-twice",
            description: "identities X and Y both authorise D; D joined X, so it counts for X and Y's claim is refused (device-claimed)",
            feeds: vec![x, y, d],
            probes: vec![(2, 2)],
        });
    }
    out
}

fn scenario_json(s: &Scenario) -> serde_json::Value {
    let reg = run(&s.feeds.iter().collect::<Vec<_>>());
    let feeds: Vec<serde_json::Value> = s
        .feeds
        .iter()
        .map(|f| {
            serde_json::json!({
                "key": f.public().to_string(),
                "entries": f.entries.iter().map(|e| serde_json::json!({
                    "seq": e.signed.seq(),
                    "type": e.signed.header().payload_type,
                    "signed_header": hex::encode(e.signed.as_bytes()),
                    "payload": hex::encode(e.payload.as_deref().unwrap()),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({
        "name": s.name,
        "description": s.description,
        "feeds": feeds,
        "expected": {
            "identities": reg.identities.values().map(|i| serde_json::json!({
                "id": i.id.to_string(),
                "name": i.name,
                "roots": i.roots.iter().map(|(k, last)| serde_json::json!({"key": k.to_string(), "last_seq": last})).collect::<Vec<_>>(),
                "devices": i.devices.iter().map(|d| serde_json::json!({"key": d.key.to_string(), "from_seq": d.from_seq, "last_valid_seq": d.last_valid_seq, "joined": d.joined})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "problems": reg.problems.iter().map(|p| serde_json::json!({"code": p.kind.code(), "feed": p.author.to_string(), "seq": p.seq})).collect::<Vec<_>>(),
            "counts_for": s.probes.iter().map(|(f, seq)| serde_json::json!({
                "feed": s.feeds[*f].public().to_string(),
                "seq": seq,
                "identity": reg.identity_of(&s.feeds[*f].public(), *seq).map(|i| i.to_string()),
            })).collect::<Vec<_>>(),
        },
    })
}

#[test]
fn identity_vectors() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../protocol/vectors/identities.json");
    let doc = serde_json::json!({
        "description": "Identity resolution (SPEC.md §12). For each scenario: the feeds (signed headers and payloads, in hex), and what a node holding exactly these entries MUST compute: identities, problems (codes), and which identity chosen entries count for (null: nobody). Entries may be processed in any order.",
        "scenarios": scenarios().iter().map(scenario_json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&doc).unwrap() + "\n";
    if std::env::var_os("TAGLINE_WRITE_VECTORS").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        on_disk,
        text,
        "{} differs (TAGLINE_WRITE_VECTORS=1 regenerates)",
        path.display()
    );

    // And check the file on its own terms: decode every entry, resolve, compare.
    let v: serde_json::Value = serde_json::from_str(&on_disk).unwrap();
    for sc in v["scenarios"].as_array().unwrap() {
        let mut held = Vec::new();
        for f in sc["feeds"].as_array().unwrap() {
            for e in f["entries"].as_array().unwrap() {
                let sh = tagline_format::SignedHeader::decode_verified(
                    hex::decode(e["signed_header"].as_str().unwrap()).unwrap(),
                )
                .unwrap();
                let p = hex::decode(e["payload"].as_str().unwrap()).unwrap();
                tagline_format::check_payload(sh.header(), &p).unwrap();
                held.push((sh, p));
            }
        }
        held.reverse();
        let inputs: Vec<Input<'_>> = held
            .iter()
            .map(|(s, p)| Input {
                signed: s,
                payload: Some(p),
            })
            .collect();
        let reg = resolve(&inputs);
        let codes: Vec<&str> = reg.problems.iter().map(|p| p.kind.code()).collect();
        let want: Vec<&str> = sc["expected"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, want, "{}", sc["name"]);
        for probe in sc["expected"]["counts_for"].as_array().unwrap() {
            let feed: PublicKey = probe["feed"].as_str().unwrap().parse().unwrap();
            let got = reg
                .identity_of(&feed, probe["seq"].as_u64().unwrap())
                .map(|i| i.to_string());
            assert_eq!(
                got.as_deref(),
                probe["identity"].as_str(),
                "{} {probe}",
                sc["name"]
            );
        }
    }
}

/// Split per identity (as the store caches it), each part encoded and
/// decoded, and merged back: the same identities and the same answers for
/// every key, in every scenario.
#[test]
fn per_identity_parts_merge_back_to_the_registry() {
    for s in scenarios() {
        let feeds: Vec<&Feed> = s.feeds.iter().collect();
        let reg = run(&feeds);
        let parts: Vec<Registry> = reg
            .identities
            .keys()
            .map(|id| {
                let one: std::collections::BTreeSet<IdentityId> = [*id].into();
                Registry::decode(&reg.subset(&one).encode()).unwrap()
            })
            .collect();
        let merged = Registry::merge(parts);
        assert_eq!(merged.identities, reg.identities, "{}", s.name);
        for f in &s.feeds {
            for seq in 0..=8 {
                assert_eq!(
                    merged.identity_of(&f.public(), seq),
                    reg.identity_of(&f.public(), seq),
                    "{}: key {} seq {seq}",
                    s.name,
                    f.public()
                );
            }
        }
        let closure = reg.email_closure();
        for i in reg.identities.values() {
            if i.emails.iter().any(|e| e.verified()) {
                assert!(closure.contains(&i.id), "{}", s.name);
            }
        }
    }
}
