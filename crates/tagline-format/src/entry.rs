//! Entries: the signed header and its payload (SPEC.md §4).

use ciborium::value::Value;

use crate::cbor::{self, ByteBuf, Bytes, CborError, FieldError, uint};
use crate::keys::{EntryId, KeyError, PayloadHash, PublicKey, SecretKey};
use crate::limits::{
    FORMAT_VERSION, MAX_HEADER_SIZE, MAX_PAYLOAD_SIZE, MAX_PAYLOAD_TYPE_LEN, MAX_SEQ,
    MAX_SIGNED_HEADER_SIZE,
};
use crate::lipmaa::{has_distinct_lipmaa, lipmaa};
use crate::verify::{self, SignatureError};

/// Domain-separation prefix of every entry signature: the signed message is
/// `SIGNATURE_CONTEXT ‖ header bytes`.
pub const SIGNATURE_CONTEXT: &[u8] = b"tagline/v1/entry\0";

/// Header map keys (SPEC.md §4.1).
pub mod key {
    pub const VERSION: u64 = 0;
    pub const AUTHOR: u64 = 1;
    pub const SEQ: u64 = 2;
    pub const BACKLINK: u64 = 3;
    pub const LIPMAA: u64 = 4;
    pub const TIMESTAMP: u64 = 5;
    pub const PAYLOAD_TYPE: u64 = 6;
    pub const PAYLOAD_SIZE: u64 = 7;
    pub const PAYLOAD_HASH: u64 = 8;
    pub const EXTENSIONS: u64 = 9;
}

/// An entry, header or payload is malformed on its own (before any feed context).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Cbor(#[from] CborError),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("signed header: expected [header bytes, 64-byte signature], found {0}")]
    SignedHeaderShape(String),
    #[error(
        "header format version {found} is not supported (this node reads version {FORMAT_VERSION})"
    )]
    UnsupportedVersion { found: u64 },
    #[error("author key: {0}")]
    Key(#[from] KeyError),
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("sequence number {found} is out of range 1..={MAX_SEQ}")]
    SeqOutOfRange { found: u64 },
    #[error("entry {seq}: backlink must be {}, found {}", if *.expected { "present" } else { "absent" }, if *.expected { "none" } else { "one" })]
    BacklinkPresence { seq: u64, expected: bool },
    #[error("entry {seq}: lipmaa link must be {} (lipmaa({seq}) = {target}), found {}", if *.expected { "present" } else { "absent" }, if *.expected { "none" } else { "one" })]
    LipmaaPresence {
        seq: u64,
        target: u64,
        expected: bool,
    },
    #[error(
        "payload type {found:?} is invalid: expected 1 to {MAX_PAYLOAD_TYPE_LEN} bytes of [a-z0-9._-] in `namespace/name` form"
    )]
    PayloadType { found: String },
    #[error("payload of {found} bytes exceeds the limit of {MAX_PAYLOAD_SIZE} bytes")]
    PayloadTooLarge { found: u64 },
    #[error("extensions: expected a non-empty map with text keys, found {0}")]
    Extensions(String),
    /// Local misuse, never a verdict on received data: [`Header::sign`] was
    /// given another key than the header's author.
    #[error("cannot sign: the header's author is {author} but the signing key is {key}")]
    WrongSigningKey { author: PublicKey, key: PublicKey },
    #[error("payload is {found} bytes but the header says {expected}")]
    PayloadSize { expected: u64, found: u64 },
    #[error("payload hash is {found} but the header says {expected}")]
    PayloadHash {
        expected: PayloadHash,
        found: PayloadHash,
    },
}

impl EntryError {
    /// Stable error code for vectors and `--json` output.
    pub fn code(&self) -> &'static str {
        match self {
            EntryError::Cbor(e) => e.code(),
            EntryError::Field(_) | EntryError::SignedHeaderShape(_) | EntryError::Extensions(_) => {
                "bad-field"
            }
            EntryError::UnsupportedVersion { .. } => "unsupported-version",
            EntryError::Key(e) => e.code(),
            EntryError::Signature(e) => e.code(),
            EntryError::SeqOutOfRange { .. } => "bad-seq",
            EntryError::BacklinkPresence { .. } => "backlink-presence",
            EntryError::LipmaaPresence { .. } => "lipmaa-presence",
            EntryError::PayloadType { .. } => "bad-payload-type",
            EntryError::PayloadTooLarge { .. } => "payload-too-large",
            EntryError::PayloadSize { .. } | EntryError::PayloadHash { .. } => "payload-mismatch",
            EntryError::WrongSigningKey { .. } => "wrong-signing-key",
        }
    }
}

/// Checks the payload type syntax: `namespace/name`, 1..=64 bytes of `[a-z0-9._-]`
/// plus one or more `/` separators, none empty.
pub fn check_payload_type(t: &str) -> Result<(), EntryError> {
    let ok = !t.is_empty()
        && t.len() <= MAX_PAYLOAD_TYPE_LEN
        && t.contains('/')
        && t.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        });
    if ok {
        Ok(())
    } else {
        Err(EntryError::PayloadType {
            found: t.chars().take(80).collect(),
        })
    }
}

/// The fields of a header (SPEC.md §4.1). The version is implicit: always
/// [`FORMAT_VERSION`].
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub author: PublicKey,
    pub seq: u64,
    pub backlink: Option<EntryId>,
    pub lipmaa: Option<EntryId>,
    /// Milliseconds since the Unix epoch, as claimed by the author.
    pub timestamp: u64,
    pub payload_type: String,
    pub payload_size: u64,
    pub payload_hash: PayloadHash,
    /// Extension fields, text keys in canonical order. Empty in this version.
    pub extensions: Vec<(String, Value)>,
}

impl Header {
    /// Checks the rules that concern the header alone (SPEC.md §4.1).
    pub fn check(&self) -> Result<(), EntryError> {
        if self.seq == 0 || self.seq > MAX_SEQ {
            return Err(EntryError::SeqOutOfRange { found: self.seq });
        }
        if self.backlink.is_some() != (self.seq > 1) {
            return Err(EntryError::BacklinkPresence {
                seq: self.seq,
                expected: self.seq > 1,
            });
        }
        let want_lipmaa = has_distinct_lipmaa(self.seq);
        if self.lipmaa.is_some() != want_lipmaa {
            return Err(EntryError::LipmaaPresence {
                seq: self.seq,
                target: lipmaa(self.seq),
                expected: want_lipmaa,
            });
        }
        check_payload_type(&self.payload_type)?;
        if self.payload_size > MAX_PAYLOAD_SIZE {
            return Err(EntryError::PayloadTooLarge {
                found: self.payload_size,
            });
        }
        Ok(())
    }

    /// The header as a CBOR map value (canonical key order).
    pub fn to_value(&self) -> Value {
        let mut m = vec![
            (uint(key::VERSION), uint(FORMAT_VERSION)),
            (
                uint(key::AUTHOR),
                Value::Bytes(self.author.as_bytes().to_vec()),
            ),
            (uint(key::SEQ), uint(self.seq)),
        ];
        if let Some(b) = &self.backlink {
            m.push((uint(key::BACKLINK), Value::Bytes(b.0.to_vec())));
        }
        if let Some(l) = &self.lipmaa {
            m.push((uint(key::LIPMAA), Value::Bytes(l.0.to_vec())));
        }
        m.push((uint(key::TIMESTAMP), uint(self.timestamp)));
        m.push((
            uint(key::PAYLOAD_TYPE),
            Value::Text(self.payload_type.clone()),
        ));
        m.push((uint(key::PAYLOAD_SIZE), uint(self.payload_size)));
        m.push((
            uint(key::PAYLOAD_HASH),
            Value::Bytes(self.payload_hash.0.to_vec()),
        ));
        if !self.extensions.is_empty() {
            let ext = self
                .extensions
                .iter()
                .map(|(k, v)| (Value::Text(k.clone()), v.clone()))
                .collect();
            m.push((uint(key::EXTENSIONS), Value::Map(ext)));
        }
        Value::Map(m)
    }

    /// The canonical bytes of this header (what is signed).
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        self.check()?;
        let mut out = Vec::with_capacity(200);
        ciborium::ser::into_writer(self, &mut out).map_err(|e| CborError::Encode(e.to_string()))?;
        cbor::check_canonical(&out, MAX_HEADER_SIZE)?;
        Ok(out)
    }

    /// Decodes header bytes: size limit, canonical profile, fields, header
    /// rules, and a byte comparison with the canonical re-encoding.
    pub fn decode(bytes: &[u8]) -> Result<Header, EntryError> {
        const W: &str = "header";
        let raw: RawHeader = match cbor::decode_typed(bytes, MAX_HEADER_SIZE) {
            Ok(r) => r,
            Err(CborError::Parse(detail)) => {
                return Err(FieldError::Invalid { what: W, detail }.into());
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(key) = raw.unknown {
            return Err(FieldError::Unexpected { what: W, key }.into());
        }
        let missing = |key| FieldError::Missing { what: W, key };
        let version = raw.version.ok_or(missing(key::VERSION))?;
        if version != FORMAT_VERSION {
            return Err(EntryError::UnsupportedVersion { found: version });
        }
        let author = crate::keys::validated_key(&raw.author.ok_or(missing(key::AUTHOR))?)?;
        let extensions = match raw.extensions {
            None => Vec::new(),
            Some(Value::Map(pairs)) if !pairs.is_empty() => pairs
                .into_iter()
                .map(|(k, v)| match k {
                    Value::Text(k) => Ok((k, v)),
                    other => Err(EntryError::Extensions(format!(
                        "a {} key",
                        cbor::kind(&other)
                    ))),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Map(_)) => return Err(EntryError::Extensions("an empty map".into())),
            Some(other) => return Err(EntryError::Extensions(cbor::kind(&other).into())),
        };
        let h = Header {
            author,
            seq: raw.seq.ok_or(missing(key::SEQ))?,
            backlink: raw.backlink.map(EntryId),
            lipmaa: raw.lipmaa.map(EntryId),
            timestamp: raw.timestamp.ok_or(missing(key::TIMESTAMP))?,
            payload_type: raw.payload_type.ok_or(missing(key::PAYLOAD_TYPE))?,
            payload_size: raw.payload_size.ok_or(missing(key::PAYLOAD_SIZE))?,
            payload_hash: PayloadHash(raw.payload_hash.ok_or(missing(key::PAYLOAD_HASH))?),
            extensions,
        };
        h.check()?;
        cbor::same_as_reencoding(&h, bytes)?;
        Ok(h)
    }

    /// Signs this header, producing the signed header.
    pub fn sign(self, key: &SecretKey) -> Result<SignedHeader, EntryError> {
        if key.public() != self.author {
            return Err(EntryError::WrongSigningKey {
                author: self.author,
                key: key.public(),
            });
        }
        let header_bytes = self.encode()?;
        let signature = key.sign(&signing_message(&header_bytes));
        let mut bytes = Vec::with_capacity(header_bytes.len() + 72);
        ciborium::ser::into_writer(&(Bytes(&header_bytes), Bytes(&signature)), &mut bytes)
            .map_err(|e| CborError::Encode(e.to_string()))?;
        let id = EntryId::of(&bytes);
        Ok(SignedHeader {
            bytes,
            header_bytes,
            signature,
            header: self,
            id,
        })
    }
}

/// `SIGNATURE_CONTEXT ‖ header_bytes`.
pub fn signing_message(header_bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(SIGNATURE_CONTEXT.len() + header_bytes.len());
    msg.extend_from_slice(SIGNATURE_CONTEXT);
    msg.extend_from_slice(header_bytes);
    msg
}

/// A decoded signed header, holding the exact bytes it was decoded from.
/// Its signature is not yet verified by [`SignedHeader::decode`]: call
/// [`SignedHeader::verify_signature`] or batch-verify [`SignedHeader::message`].
#[derive(Debug, Clone, PartialEq)]
pub struct SignedHeader {
    bytes: Vec<u8>,
    header_bytes: Vec<u8>,
    signature: [u8; 64],
    header: Header,
    id: EntryId,
}

impl SignedHeader {
    /// Decodes the bytes received: size, canonical form, shape, header rules.
    /// The id is the hash of exactly these bytes.
    pub fn decode(bytes: Vec<u8>) -> Result<SignedHeader, EntryError> {
        let (header_bytes, sig): (ByteBuf, ByteBuf) =
            match cbor::decode_typed(&bytes, MAX_SIGNED_HEADER_SIZE) {
                Ok(pair) => pair,
                Err(CborError::Parse(detail)) => return Err(EntryError::SignedHeaderShape(detail)),
                Err(e) => return Err(e.into()),
            };
        let (header_bytes, sig) = (header_bytes.0, sig.0);
        let signature = <[u8; 64]>::try_from(sig.as_slice()).map_err(|_| {
            EntryError::SignedHeaderShape(format!("a {}-byte signature", sig.len()))
        })?;
        cbor::same_as_reencoding(&(Bytes(&header_bytes), Bytes(&signature)), &bytes)?;
        let header = Header::decode(&header_bytes)?;
        verify::check_signature_encoding(&signature)?;
        let id = EntryId::of(&bytes);
        Ok(SignedHeader {
            bytes,
            header_bytes,
            signature,
            header,
            id,
        })
    }

    /// Decodes and verifies the signature (single verification).
    pub fn decode_verified(bytes: Vec<u8>) -> Result<SignedHeader, EntryError> {
        let sh = SignedHeader::decode(bytes)?;
        sh.verify_signature()?;
        Ok(sh)
    }

    pub fn verify_signature(&self) -> Result<(), EntryError> {
        Ok(verify::verify(
            &self.header.author,
            &self.message(),
            &self.signature,
        )?)
    }

    /// The message the signature covers.
    pub fn message(&self) -> Vec<u8> {
        signing_message(&self.header_bytes)
    }

    pub fn header(&self) -> &Header {
        &self.header
    }
    pub fn id(&self) -> EntryId {
        self.id
    }
    pub fn author(&self) -> &PublicKey {
        &self.header.author
    }
    pub fn seq(&self) -> u64 {
        self.header.seq
    }
    /// The signed header as received or produced: what is stored, sent and hashed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
    pub fn header_bytes(&self) -> &[u8] {
        &self.header_bytes
    }
    pub fn signature(&self) -> &[u8; 64] {
        &self.signature
    }
}

/// Checks a payload against its header: size, hash, and the canonical profile.
pub fn check_payload(header: &Header, payload: &[u8]) -> Result<(), EntryError> {
    let found = payload.len() as u64;
    if found != header.payload_size {
        return Err(EntryError::PayloadSize {
            expected: header.payload_size,
            found,
        });
    }
    let hash = PayloadHash::of(payload);
    if hash != header.payload_hash {
        return Err(EntryError::PayloadHash {
            expected: header.payload_hash,
            found: hash,
        });
    }
    cbor::check_canonical(payload, MAX_PAYLOAD_SIZE as usize)?;
    Ok(())
}

impl AsRef<SignedHeader> for SignedHeader {
    fn as_ref(&self) -> &SignedHeader {
        self
    }
}

impl AsRef<SignedHeader> for Entry {
    fn as_ref(&self) -> &SignedHeader {
        &self.signed
    }
}

/// An entry: signed header plus its payload when present.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub signed: SignedHeader,
    pub payload: Option<Vec<u8>>,
}

/// The head of a feed as far as chaining is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub id: EntryId,
    pub timestamp: u64,
}

impl Head {
    pub fn of(sh: &SignedHeader) -> Head {
        Head {
            seq: sh.seq(),
            id: sh.id(),
            timestamp: sh.header().timestamp,
        }
    }
}

/// Creates the next entry of a feed. `prev` is the current head (None for the
/// first entry); `lipmaa_target` is the id of entry `lipmaa(prev.seq + 1)` when
/// that differs from the backlink. The timestamp is raised to the previous
/// entry's if the clock went backwards, as SPEC.md §4.4 requires.
pub fn create_entry(
    key: &SecretKey,
    prev: Option<&Head>,
    lipmaa_target: Option<EntryId>,
    timestamp: u64,
    payload_type: &str,
    payload: Vec<u8>,
) -> Result<Entry, EntryError> {
    let size = payload.len() as u64;
    if size > MAX_PAYLOAD_SIZE {
        return Err(EntryError::PayloadTooLarge { found: size });
    }
    cbor::check_canonical(&payload, MAX_PAYLOAD_SIZE as usize)?;
    let seq = prev.map_or(1, |h| h.seq + 1);
    let header = Header {
        author: key.public(),
        seq,
        backlink: prev.map(|h| h.id),
        lipmaa: if has_distinct_lipmaa(seq) {
            lipmaa_target
        } else {
            None
        },
        timestamp: prev.map_or(timestamp, |h| timestamp.max(h.timestamp)),
        payload_type: payload_type.to_owned(),
        payload_size: size,
        payload_hash: PayloadHash::of(&payload),
        extensions: Vec::new(),
    };
    let signed = header.sign(key)?;
    Ok(Entry {
        signed,
        payload: Some(payload),
    })
}

/// The header's fields as read by serde, before the rules are applied.
#[derive(Default)]
struct RawHeader {
    version: Option<u64>,
    author: Option<[u8; 32]>,
    seq: Option<u64>,
    backlink: Option<[u8; 32]>,
    lipmaa: Option<[u8; 32]>,
    timestamp: Option<u64>,
    payload_type: Option<String>,
    payload_size: Option<u64>,
    payload_hash: Option<[u8; 32]>,
    extensions: Option<Value>,
    /// The first key this version does not define.
    unknown: Option<u64>,
}

fn bytes32<'de, A: serde::de::MapAccess<'de>>(
    map: &mut A,
    field: u64,
) -> Result<[u8; 32], A::Error> {
    let b: ByteBuf = map.next_value()?;
    let n = b.0.len();
    <[u8; 32]>::try_from(b.0).map_err(|_| {
        serde::de::Error::custom(format!(
            "field {field} should be a 32-byte byte string, found {n} bytes"
        ))
    })
}

impl<'de> serde::Deserialize<'de> for RawHeader {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawHeader;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a header map with integer keys")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawHeader, A::Error> {
                let mut h = RawHeader::default();
                while let Some(k) = map.next_key::<u64>()? {
                    match k {
                        key::VERSION => h.version = Some(map.next_value()?),
                        key::AUTHOR => h.author = Some(bytes32(&mut map, k)?),
                        key::SEQ => h.seq = Some(map.next_value()?),
                        key::BACKLINK => h.backlink = Some(bytes32(&mut map, k)?),
                        key::LIPMAA => h.lipmaa = Some(bytes32(&mut map, k)?),
                        key::TIMESTAMP => h.timestamp = Some(map.next_value()?),
                        key::PAYLOAD_TYPE => h.payload_type = Some(map.next_value()?),
                        key::PAYLOAD_SIZE => h.payload_size = Some(map.next_value()?),
                        key::PAYLOAD_HASH => h.payload_hash = Some(bytes32(&mut map, k)?),
                        key::EXTENSIONS => h.extensions = Some(map.next_value()?),
                        other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                            h.unknown = h.unknown.or(Some(other));
                        }
                    }
                }
                Ok(h)
            }
        }
        d.deserialize_map(V)
    }
}

/// The canonical encoding of a header: fields in key order, optional ones
/// omitted (SPEC.md §4.1).
impl serde::Serialize for Header {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let n = 7
            + usize::from(self.backlink.is_some())
            + usize::from(self.lipmaa.is_some())
            + usize::from(!self.extensions.is_empty());
        let mut m = s.serialize_map(Some(n))?;
        m.serialize_entry(&key::VERSION, &FORMAT_VERSION)?;
        m.serialize_entry(&key::AUTHOR, &Bytes(self.author.as_bytes()))?;
        m.serialize_entry(&key::SEQ, &self.seq)?;
        if let Some(b) = &self.backlink {
            m.serialize_entry(&key::BACKLINK, &Bytes(&b.0))?;
        }
        if let Some(l) = &self.lipmaa {
            m.serialize_entry(&key::LIPMAA, &Bytes(&l.0))?;
        }
        m.serialize_entry(&key::TIMESTAMP, &self.timestamp)?;
        m.serialize_entry(&key::PAYLOAD_TYPE, &self.payload_type)?;
        m.serialize_entry(&key::PAYLOAD_SIZE, &self.payload_size)?;
        m.serialize_entry(&key::PAYLOAD_HASH, &Bytes(&self.payload_hash.0))?;
        if !self.extensions.is_empty() {
            let mut ext = self.extensions.clone();
            // Text keys in canonical order: shorter first, then bytewise.
            ext.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
            let ext: Vec<(Value, Value)> =
                ext.into_iter().map(|(k, v)| (Value::Text(k), v)).collect();
            m.serialize_entry(&key::EXTENSIONS, &Value::Map(ext))?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::note;

    #[test]
    fn sign_decode_round_trip() {
        let k = SecretKey::from_seed(&[1; 32]);
        let e = create_entry(
            &k,
            None,
            None,
            1_700_000_000_000,
            "tagline/note",
            note("hi"),
        )
        .unwrap();
        let d = SignedHeader::decode_verified(e.signed.as_bytes().to_vec()).unwrap();
        assert_eq!(d, e.signed);
        check_payload(d.header(), e.payload.as_deref().unwrap()).unwrap();
        let e2 = create_entry(&k, Some(&Head::of(&d)), None, 5, "tagline/note", note("x")).unwrap();
        assert_eq!(e2.signed.header().backlink, Some(d.id()));
        // Clock went backwards: timestamp raised to the previous one.
        assert_eq!(e2.signed.header().timestamp, 1_700_000_000_000);
    }

    #[test]
    fn signing_with_another_key_than_the_author_is_refused() {
        let (ada, bob) = (
            SecretKey::from_seed(&[1; 32]),
            SecretKey::from_seed(&[2; 32]),
        );
        let e = create_entry(&ada, None, None, 1, "tagline/note", note("hi")).unwrap();
        let err = e.signed.header().clone().sign(&bob).unwrap_err();
        assert_eq!(
            err,
            EntryError::WrongSigningKey {
                author: ada.public(),
                key: bob.public()
            }
        );
        assert!(err.to_string().contains(&ada.public().to_string()), "{err}");
    }

    #[test]
    fn payload_types() {
        for ok in ["tagline/note", "a/b", "x-y.z/v1"] {
            check_payload_type(ok).unwrap();
        }
        for bad in [
            "",
            "note",
            "/a",
            "a/",
            "a//b",
            "Tagline/note",
            "a b/c",
            &"a/".repeat(40),
        ] {
            assert!(check_payload_type(bad).is_err(), "{bad}");
        }
    }
}
