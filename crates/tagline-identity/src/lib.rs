//! Identities: who stands behind a feed entry (SPEC.md §12).
//!
//! [`resolve`] takes the entries a node holds (any feeds, any order) and
//! computes, deterministically, every identity: its root keys, profile, email
//! claims and proofs, devices with the range of their sequence numbers that
//! count, and the problems found. Two nodes holding the same entries get the
//! same [`Registry`], whatever order the entries arrived in. Pure: no I/O.
//!
//! Rules, in short:
//! - an identity starts with a `tagline/identity/genesis` entry at seq 1 of a
//!   key's feed; that key is its id and first root;
//! - only the current root's feed speaks for the identity; a rotation (in the
//!   root's feed, countersigned by the new root) hands over to the new root,
//!   whose feed starts with `tagline/identity/continue`; entries of an old root
//!   after its rotation count for nothing;
//! - a device counts for an identity when the root authorised it
//!   (`device-add`, from a sequence number) and the device's own feed joined
//!   that identity (its first `tagline/device/join`); both are needed, so no
//!   identity can claim another's device;
//! - a revocation ends a device's range at a sequence number of the device's
//!   own feed: later entries count for nobody, on every node.

use std::collections::{BTreeMap, BTreeSet};

use tagline_format::identity::{IdentityId, IdentityPayload, rotation_message};
use tagline_format::{PublicKey, SignedHeader, verify};

/// Most root rotations followed for one identity.
pub const MAX_ROTATIONS: usize = 64;

/// One entry as the resolver needs it: the signed header and its payload
/// (identity entries without payloads are skipped until the payload arrives).
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub signed: &'a SignedHeader,
    pub payload: Option<&'a [u8]>,
}

/// What a problem was (stable codes for `--json` and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    /// An identity entry in a feed that is not the identity's current root.
    NotRoot,
    /// A device authorised by an identity it did not join.
    DeviceClaimed,
    /// A rotation whose countersignature does not verify.
    RotationNotCountersigned,
    /// A rotation to a key that already was a root of this identity.
    RotationLoop,
    /// A revocation of a device the identity never added.
    RevokeUnknownDevice,
    /// A payload of an identity type that does not decode.
    BadPayload,
    /// A second `tagline/device/join` in a device feed, naming another identity.
    SecondJoin,
    /// A rotated-to root whose feed does not start with `continue` for this identity.
    BadContinue,
}

impl ProblemKind {
    pub fn code(&self) -> &'static str {
        match self {
            ProblemKind::NotRoot => "not-root",
            ProblemKind::DeviceClaimed => "device-claimed",
            ProblemKind::RotationNotCountersigned => "rotation-not-countersigned",
            ProblemKind::RotationLoop => "rotation-loop",
            ProblemKind::RevokeUnknownDevice => "revoke-unknown-device",
            ProblemKind::BadPayload => "bad-payload",
            ProblemKind::SecondJoin => "second-join",
            ProblemKind::BadContinue => "bad-continue",
        }
    }
}

/// An identity entry that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem {
    pub kind: ProblemKind,
    /// The feed and seq of the entry.
    pub author: PublicKey,
    pub seq: u64,
    pub message: String,
}

/// A device of an identity and the range of its own sequence numbers that count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub key: PublicKey,
    /// First counting seq (from the authorisation).
    pub from_seq: u64,
    /// Last counting seq, if revoked.
    pub last_valid_seq: Option<u64>,
    /// Whether the device's feed has joined the identity (held here). A device
    /// that has not (yet) joined counts for nobody.
    pub joined: bool,
}

impl Device {
    pub fn counts(&self, seq: u64) -> bool {
        self.joined && seq >= self.from_seq && self.last_valid_seq.is_none_or(|last| seq <= last)
    }
}

/// Status of an email address of an identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub address: String,
    /// Proofs that the identity controls the address: (who wrote the proof,
    /// method, detail). Whether a prover is trusted is the project policy's
    /// decision (the rules engine); an address with no proof is only claimed.
    pub proofs: Vec<(PublicKey, String, String)>,
}

impl Email {
    pub fn verified(&self) -> bool {
        !self.proofs.is_empty()
    }
}

/// One resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub id: IdentityId,
    /// Root keys in order, each with the last seq of its feed that counts
    /// (`None` for the current root).
    pub roots: Vec<(PublicKey, Option<u64>)>,
    pub name: Option<String>,
    /// Currently claimed addresses (lowercase), in address order.
    pub emails: Vec<Email>,
    pub devices: Vec<Device>,
}

impl Identity {
    pub fn current_root(&self) -> Option<&PublicKey> {
        self.roots.last().map(|(k, _)| k)
    }
}

/// Everything [`resolve`] computed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registry {
    pub identities: BTreeMap<IdentityId, Identity>,
    pub problems: Vec<Problem>,
    /// key → (identity, first counting seq, last counting seq) for roots and
    /// joined devices.
    counting: BTreeMap<PublicKey, (IdentityId, u64, Option<u64>)>,
}

impl Registry {
    /// The identity an entry of feed `author` at `seq` counts for, if any.
    pub fn identity_of(&self, author: &PublicKey, seq: u64) -> Option<IdentityId> {
        let (id, from, last) = self.counting.get(author)?;
        (seq >= *from && last.is_none_or(|l| seq <= l)).then_some(*id)
    }

    /// The identity `key` belongs to (as root or device), regardless of seq.
    pub fn owner_of(&self, key: &PublicKey) -> Option<IdentityId> {
        self.counting.get(key).map(|(id, _, _)| *id)
    }

    /// Every key that counts for some identity, with its owner.
    pub fn owners(&self) -> impl Iterator<Item = (&PublicKey, &IdentityId)> {
        self.counting.iter().map(|(k, (id, _, _))| (k, id))
    }

    /// This registry restricted to the identities in `keep` and the keys that
    /// count for them (problems are dropped). For any key of a kept identity,
    /// [`Registry::identity_of`] and [`Registry::owner_of`] answer as before.
    pub fn subset(&self, keep: &BTreeSet<IdentityId>) -> Registry {
        Registry {
            identities: self
                .identities
                .iter()
                .filter(|(id, _)| keep.contains(id))
                .map(|(id, i)| (*id, i.clone()))
                .collect(),
            problems: Vec::new(),
            counting: self
                .counting
                .iter()
                .filter(|(_, (id, _, _))| keep.contains(id))
                .map(|(k, v)| (*k, *v))
                .collect(),
        }
    }

    /// Joins registries of disjoint identities (such as [`Registry::subset`]s
    /// of one registry) into one.
    pub fn merge(parts: impl IntoIterator<Item = Registry>) -> Registry {
        let mut out = Registry::default();
        for p in parts {
            out.identities.extend(p.identities);
            out.problems.extend(p.problems);
            out.counting.extend(p.counting);
        }
        out
    }

    /// The identities that email-address checks may consult: those with an
    /// address that has a proof, and the owners of the proofs' keys. A part
    /// of the registry that holds these answers every "which identity has
    /// this verified address, and who verified it" question as the whole does.
    pub fn email_closure(&self) -> BTreeSet<IdentityId> {
        let mut out = BTreeSet::new();
        for i in self.identities.values() {
            for e in &i.emails {
                if !e.proofs.is_empty() {
                    out.insert(i.id);
                }
                out.extend(e.proofs.iter().filter_map(|(by, _, _)| self.owner_of(by)));
            }
        }
        out
    }
}

struct Decoded {
    author: PublicKey,
    seq: u64,
    payload: IdentityPayload,
}

/// Resolves identities from `inputs`. Duplicates and order do not matter.
pub fn resolve(inputs: &[Input<'_>]) -> Registry {
    let mut reg = Registry::default();
    // Per feed, the identity entries in seq order (a BTreeMap dedups by seq).
    let mut feeds: BTreeMap<PublicKey, BTreeMap<u64, Decoded>> = BTreeMap::new();
    let mut bad: BTreeSet<Problem> = BTreeSet::new();
    for i in inputs {
        let h = i.signed.header();
        if !IdentityPayload::is_identity_type(&h.payload_type) {
            continue;
        }
        let Some(p) = i.payload else { continue };
        match IdentityPayload::decode(&h.payload_type, p) {
            Ok(Some(payload)) => {
                feeds.entry(h.author).or_default().insert(
                    h.seq,
                    Decoded {
                        author: h.author,
                        seq: h.seq,
                        payload,
                    },
                );
            }
            Ok(None) => {}
            Err(e) => {
                bad.insert(Problem {
                    kind: ProblemKind::BadPayload,
                    author: h.author,
                    seq: h.seq,
                    message: e.to_string(),
                });
            }
        }
    }

    // Joins: a device feed's first join decides; later joins naming another identity are problems.
    let mut joined: BTreeMap<PublicKey, (IdentityId, u64)> = BTreeMap::new();
    for (author, entries) in &feeds {
        for d in entries.values() {
            if let IdentityPayload::Join { identity } = d.payload {
                match joined.get(author) {
                    None => {
                        joined.insert(*author, (identity, d.seq));
                    }
                    Some((first, _)) if *first != identity => {
                        bad.insert(Problem {
                            kind: ProblemKind::SecondJoin,
                            author: *author,
                            seq: d.seq,
                            message: format!("this device already joined identity {first}"),
                        });
                    }
                    Some(_) => {}
                }
            }
        }
    }

    // Which feeds a walk consumed (root feeds in their counting range).
    let mut consumed: BTreeSet<(PublicKey, u64)> = BTreeSet::new();

    for (genesis, entries) in &feeds {
        let Some(first) = entries.get(&1) else {
            continue;
        };
        if first.payload != IdentityPayload::Genesis {
            continue;
        }
        let id = IdentityId(*genesis);
        let mut ident = Identity {
            id,
            roots: Vec::new(),
            name: None,
            emails: Vec::new(),
            devices: Vec::new(),
        };
        let mut claimed: BTreeMap<String, bool> = BTreeMap::new();
        let mut root = *genesis;
        let mut start_seq = 1u64;
        loop {
            let Some(root_entries) = feeds.get(&root) else {
                // Rotated to a root whose feed we do not hold yet.
                ident.roots.push((root, None));
                break;
            };
            let mut rotated: Option<(u64, PublicKey)> = None;
            for d in root_entries.values().filter(|d| d.seq >= start_seq) {
                consumed.insert((root, d.seq));
                match &d.payload {
                    IdentityPayload::Genesis | IdentityPayload::Continue { .. }
                        if d.seq == start_seq => {}
                    IdentityPayload::Profile { name } => ident.name = Some(name.clone()),
                    IdentityPayload::Email {
                        address,
                        claimed: c,
                    } => {
                        claimed.insert(address.clone(), *c);
                    }
                    IdentityPayload::DeviceAdd { device, from_seq } => match joined.get(device) {
                        Some((other, _)) if *other != id => {
                            bad.insert(Problem {
                                kind: ProblemKind::DeviceClaimed,
                                author: root,
                                seq: d.seq,
                                message: format!("device {device} belongs to identity {other}"),
                            });
                        }
                        j => {
                            if let Some(dev) = ident.devices.iter_mut().find(|x| x.key == *device) {
                                dev.from_seq = dev.from_seq.min(*from_seq);
                            } else {
                                ident.devices.push(Device {
                                    key: *device,
                                    from_seq: *from_seq,
                                    last_valid_seq: None,
                                    joined: j.is_some(),
                                });
                            }
                        }
                    },
                    IdentityPayload::DeviceRevoke {
                        device,
                        last_valid_seq,
                    } => match ident.devices.iter_mut().find(|x| x.key == *device) {
                        Some(dev) => {
                            dev.last_valid_seq = Some(
                                dev.last_valid_seq
                                    .map_or(*last_valid_seq, |l| l.min(*last_valid_seq)),
                            );
                        }
                        None => {
                            bad.insert(Problem {
                                kind: ProblemKind::RevokeUnknownDevice,
                                author: root,
                                seq: d.seq,
                                message: format!(
                                    "device {device} was never added to this identity"
                                ),
                            });
                        }
                    },
                    IdentityPayload::Rotate {
                        new_root,
                        countersignature,
                    } => {
                        let msg = rotation_message(&id, &root, new_root);
                        if verify::verify(new_root, &msg, countersignature).is_err() {
                            bad.insert(Problem {
                                kind: ProblemKind::RotationNotCountersigned,
                                author: root,
                                seq: d.seq,
                                message: format!("the new root {new_root} did not countersign"),
                            });
                        } else if ident.roots.iter().any(|(k, _)| k == new_root)
                            || *new_root == root
                        {
                            bad.insert(Problem {
                                kind: ProblemKind::RotationLoop,
                                author: root,
                                seq: d.seq,
                                message: format!("{new_root} already was a root of this identity"),
                            });
                        } else {
                            rotated = Some((d.seq, *new_root));
                            break;
                        }
                    }
                    // Joins are read in step 1, proofs in step 4 (a lead's root may attest).
                    IdentityPayload::Join { .. } | IdentityPayload::EmailProof { .. } => {}
                    _ => {
                        // A genesis or continue anywhere but entry 1.
                        bad.insert(Problem {
                            kind: ProblemKind::BadContinue,
                            author: root,
                            seq: d.seq,
                            message: format!(
                                "{} is out of place in an identity feed",
                                d.payload.type_name()
                            ),
                        });
                    }
                }
            }
            match rotated {
                Some((seq, new_root)) if ident.roots.len() < MAX_ROTATIONS => {
                    ident.roots.push((root, Some(seq)));
                    // The new root's feed must start by continuing this identity.
                    let continues = feeds
                        .get(&new_root)
                        .and_then(|e| e.get(&1))
                        .is_some_and(|d| d.payload == IdentityPayload::Continue { identity: id });
                    if feeds.contains_key(&new_root) && !continues {
                        bad.insert(Problem {
                            kind: ProblemKind::BadContinue,
                            author: new_root,
                            seq: 1,
                            message: format!("a new root's feed must start with tagline/identity/continue for {id}"),
                        });
                        ident.roots.push((new_root, Some(0)));
                        break;
                    }
                    root = new_root;
                    start_seq = 1;
                }
                _ => {
                    ident.roots.push((root, None));
                    break;
                }
            }
        }
        ident.emails = claimed
            .into_iter()
            .filter(|(_, c)| *c)
            .map(|(address, _)| Email {
                address,
                proofs: Vec::new(),
            })
            .collect();
        ident.devices.sort_by_key(|d| d.key);
        reg.identities.insert(id, ident);
    }

    // Identity entries in feeds that are not a root's counting range: forged
    // authorisations and the like.
    for (author, entries) in &feeds {
        for d in entries.values() {
            let root_kind = !matches!(
                d.payload,
                IdentityPayload::Join { .. } | IdentityPayload::EmailProof { .. }
            );
            let is_genesis_of_own = d.seq == 1 && matches!(d.payload, IdentityPayload::Genesis);
            let is_continue = d.seq == 1 && matches!(d.payload, IdentityPayload::Continue { .. });
            if root_kind
                && !is_genesis_of_own
                && !is_continue
                && !consumed.contains(&(*author, d.seq))
            {
                bad.insert(Problem {
                    kind: ProblemKind::NotRoot,
                    author: *author,
                    seq: d.seq,
                    message: format!(
                        "{} by a key that is not the identity's current root",
                        d.payload.type_name()
                    ),
                });
            }
        }
    }

    // Email proofs, from any feed.
    for entries in feeds.values() {
        for d in entries.values() {
            if let IdentityPayload::EmailProof {
                identity,
                address,
                method,
                detail,
            } = &d.payload
                && let Some(ident) = reg.identities.get_mut(identity)
                && let Some(e) = ident.emails.iter_mut().find(|e| e.address == *address)
            {
                e.proofs.push((d.author, method.clone(), detail.clone()));
            }
        }
    }

    // The counting map.
    for ident in reg.identities.values() {
        for (k, last) in &ident.roots {
            reg.counting.insert(*k, (ident.id, 1, *last));
        }
        for dev in &ident.devices {
            if dev.joined {
                reg.counting
                    .entry(dev.key)
                    .or_insert((ident.id, dev.from_seq, dev.last_valid_seq));
            }
        }
    }
    reg.problems = bad.into_iter().collect();
    reg
}

// ---- Encoding of a resolved registry, for caches ----

use ciborium::value::Value;
use tagline_format::cbor::{CborError, Pull};

fn uint(n: u64) -> Value {
    Value::Integer(n.into())
}
fn opt(n: Option<u64>) -> Value {
    n.map_or(Value::Null, uint)
}
fn key(k: &PublicKey) -> Value {
    Value::Bytes(k.as_bytes().to_vec())
}

const KINDS: [ProblemKind; 8] = [
    ProblemKind::NotRoot,
    ProblemKind::DeviceClaimed,
    ProblemKind::RotationNotCountersigned,
    ProblemKind::RotationLoop,
    ProblemKind::RevokeUnknownDevice,
    ProblemKind::BadPayload,
    ProblemKind::SecondJoin,
    ProblemKind::BadContinue,
];

impl Registry {
    /// A compact encoding of this registry (CBOR), for caches. Not a wire
    /// format: a cache keyed by its inputs, rebuilt when it does not decode.
    pub fn encode(&self) -> Vec<u8> {
        let identities = self
            .identities
            .values()
            .map(|i| {
                Value::Array(vec![
                    key(&i.id.0),
                    Value::Array(
                        i.roots
                            .iter()
                            .map(|(k, l)| Value::Array(vec![key(k), opt(*l)]))
                            .collect(),
                    ),
                    i.name.clone().map_or(Value::Null, Value::Text),
                    Value::Array(
                        i.emails
                            .iter()
                            .map(|e| {
                                Value::Array(vec![
                                    Value::Text(e.address.clone()),
                                    Value::Array(
                                        e.proofs
                                            .iter()
                                            .map(|(by, m, d)| {
                                                Value::Array(vec![
                                                    key(by),
                                                    Value::Text(m.clone()),
                                                    Value::Text(d.clone()),
                                                ])
                                            })
                                            .collect(),
                                    ),
                                ])
                            })
                            .collect(),
                    ),
                    Value::Array(
                        i.devices
                            .iter()
                            .map(|d| {
                                Value::Array(vec![
                                    key(&d.key),
                                    uint(d.from_seq),
                                    opt(d.last_valid_seq),
                                    Value::Bool(d.joined),
                                ])
                            })
                            .collect(),
                    ),
                ])
            })
            .collect();
        let problems = self
            .problems
            .iter()
            .map(|p| {
                let kind = KINDS.iter().position(|k| *k == p.kind).unwrap_or(0) as u64;
                Value::Array(vec![
                    uint(kind),
                    key(&p.author),
                    uint(p.seq),
                    Value::Text(p.message.clone()),
                ])
            })
            .collect();
        let counting = self
            .counting
            .iter()
            .map(|(k, (id, from, last))| {
                Value::Array(vec![key(k), key(&id.0), uint(*from), opt(*last)])
            })
            .collect();
        let mut out = Vec::new();
        let _ = ciborium::ser::into_writer(
            &Value::Array(vec![
                Value::Array(identities),
                Value::Array(problems),
                Value::Array(counting),
            ]),
            &mut out,
        );
        out
    }

    /// Decodes [`Registry::encode`]'s output; `None` if it does not decode.
    pub fn decode(bytes: &[u8]) -> Option<Registry> {
        Registry::pull(bytes).ok()?
    }

    /// [`Registry::decode`] with a pull reader (no intermediate value tree:
    /// `tagline status` decodes a dozen of these per call).
    fn pull(bytes: &[u8]) -> Result<Option<Registry>, CborError> {
        /// Keys in a cache were validated when the registry was resolved.
        fn key(p: &mut Pull<'_>) -> Result<Option<PublicKey>, CborError> {
            Ok(<[u8; 32]>::try_from(p.bytes()?)
                .ok()
                .map(|b| PublicKey::from_cached_bytes(&b)))
        }
        fn fixed(p: &mut Pull<'_>, n: usize) -> Result<bool, CborError> {
            Ok(p.array()? == n)
        }
        let p = &mut Pull::new(bytes);
        if !fixed(p, 3)? {
            return Ok(None);
        }
        let mut identities = BTreeMap::new();
        for _ in 0..p.array()? {
            if !fixed(p, 5)? {
                return Ok(None);
            }
            let Some(id) = key(p)? else { return Ok(None) };
            let id = IdentityId(id);
            let mut roots = Vec::new();
            for _ in 0..p.array()? {
                if !fixed(p, 2)? {
                    return Ok(None);
                }
                let Some(k) = key(p)? else { return Ok(None) };
                roots.push((k, p.opt_uint()?));
            }
            let name = p.opt_text()?.map(str::to_owned);
            let mut emails = Vec::new();
            for _ in 0..p.array()? {
                if !fixed(p, 2)? {
                    return Ok(None);
                }
                let address = p.text()?.to_owned();
                let mut proofs = Vec::new();
                for _ in 0..p.array()? {
                    if !fixed(p, 3)? {
                        return Ok(None);
                    }
                    let Some(by) = key(p)? else { return Ok(None) };
                    proofs.push((by, p.text()?.to_owned(), p.text()?.to_owned()));
                }
                emails.push(Email { address, proofs });
            }
            let mut devices = Vec::new();
            for _ in 0..p.array()? {
                if !fixed(p, 4)? {
                    return Ok(None);
                }
                let Some(key) = key(p)? else { return Ok(None) };
                devices.push(Device {
                    key,
                    from_seq: p.uint()?,
                    last_valid_seq: p.opt_uint()?,
                    joined: p.bool()?,
                });
            }
            identities.insert(
                id,
                Identity {
                    id,
                    roots,
                    name,
                    emails,
                    devices,
                },
            );
        }
        let mut problems = Vec::new();
        for _ in 0..p.array()? {
            if !fixed(p, 4)? {
                return Ok(None);
            }
            let Some(kind) = usize::try_from(p.uint()?).ok().and_then(|k| KINDS.get(k)) else {
                return Ok(None);
            };
            let Some(author) = key(p)? else {
                return Ok(None);
            };
            problems.push(Problem {
                kind: *kind,
                author,
                seq: p.uint()?,
                message: p.text()?.to_owned(),
            });
        }
        let mut counting = BTreeMap::new();
        for _ in 0..p.array()? {
            if !fixed(p, 4)? {
                return Ok(None);
            }
            let (Some(k), Some(id)) = (key(p)?, key(p)?) else {
                return Ok(None);
            };
            counting.insert(k, (IdentityId(id), p.uint()?, p.opt_uint()?));
        }
        p.finish()?;
        Ok(Some(Registry {
            identities,
            problems,
            counting,
        }))
    }
}
