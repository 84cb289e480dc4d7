//! The sync protocol's messages and their encoding (protocol/SPEC.md §14).
//!
//! Every message is one canonical CBOR array whose first element is its type.
//! Decoding checks the frame size first, then reads positionally with the
//! strict pull reader, so every length is checked against the bytes that
//! remain before anything is allocated, and only the canonical encoding of a
//! message is accepted.

use tagline_format::PublicKey;
use tagline_format::cbor::write::{array, bytes, text, uint};
use tagline_format::cbor::{CborError, Pull};
use tagline_format::keys::KeyError;
use tagline_format::limits::{MAX_PAYLOAD_SIZE, MAX_SIGNED_HEADER_SIZE};

/// Most `(feed, seq)` pairs in one clock or have message. A node that wants
/// more feeds sends several clock requests.
pub const MAX_CLOCK_HEADS: usize = 4096;
/// Most project topics in one clock request.
pub const MAX_TOPICS: usize = 64;
/// Most entries a fetch may ask for, and a response may carry.
pub const MAX_FETCH_ENTRIES: u32 = 1024;
/// A responder stops adding entries to a response once it holds this many
/// bytes (but always sends at least one entry, whatever its size).
pub const SOFT_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// Largest frame (one encoded message) a node accepts: a full response plus
/// one entry of the largest size, and framing.
pub const MAX_FRAME_SIZE: usize =
    SOFT_RESPONSE_BYTES + MAX_SIGNED_HEADER_SIZE + MAX_PAYLOAD_SIZE as usize + 1024;
/// Fork proofs in one `Forks` request.
pub const MAX_FORK_PROOFS: usize = 16;
/// Largest encoded fork proof: two signed headers and the array around them.
pub const MAX_FORK_PROOF_SIZE: usize = 2 * MAX_SIGNED_HEADER_SIZE + 16;
/// Longest text in a refusal.
pub const MAX_REASON_LEN: usize = 256;

/// A project topic: the project's id (its declaration entry's id).
pub type Topic = [u8; 32];

/// A feed and the highest sequence number a node holds of it (0: none).
pub type FeedHead = (PublicKey, u64);

/// One entry as carried on the wire: its signed header bytes and, when the
/// sender holds it, the payload bytes. Not decoded here: the receiver decodes
/// and verifies the bytes as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub signed: Vec<u8>,
    pub payload: Option<Vec<u8>>,
}

/// Framing bytes a record adds at most: an array head and two byte-string
/// heads of up to 5 bytes each (payloads are under 2^32 bytes).
pub const RECORD_OVERHEAD: usize = 1 + 5 + 5;

impl Record {
    /// Bytes this record takes in a frame, at most (for response budgets).
    pub fn wire_size(&self) -> usize {
        self.signed.len() + self.payload.as_ref().map_or(0, Vec::len) + RECORD_OVERHEAD
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// "These are the feeds I want, and how far I have them; and these are
    /// the projects I follow." Type 1.
    Clock {
        heads: Vec<FeedHead>,
        topics: Vec<Topic>,
    },
    /// "Send me entries of `feed` from `from` on, at most `max`." Type 2.
    Fetch {
        feed: PublicKey,
        from: u64,
        max: u32,
    },
    /// "I now hold these feeds this far." Sent to peers that want them. Type 3.
    Have { heads: Vec<FeedHead> },
    /// "These feeds forked": encoded fork proofs (two signed headers of one
    /// author at one seq, SPEC.md §4.5), at most [`MAX_FORK_PROOFS`]. Type 4.
    Forks { proofs: Vec<Vec<u8>> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// The responder's heads among the feeds asked about, plus feeds it holds
    /// that publish to the topics asked about. Type 1.
    Clock { heads: Vec<FeedHead> },
    /// Consecutive entries of the feed asked for, from `from` on. Type 2.
    Entries { records: Vec<Record> },
    /// A `Have` was received. Type 3.
    Ack,
    /// The request was not served (rate limit, unknown type). Type 4.
    Refused { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("sync frame of {found} bytes exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize, found: usize },
    #[error("sync message: {0}")]
    Cbor(#[from] CborError),
    #[error("sync message: expected type {expected}, found type {found}")]
    UnknownType { expected: &'static str, found: u64 },
    #[error("sync message of type {kind}: expected {expected} elements, found {found}")]
    Shape {
        kind: u64,
        expected: usize,
        found: usize,
    },
    #[error("sync message: {what} holds {found} items, more than the limit of {limit}")]
    TooMany {
        what: &'static str,
        limit: usize,
        found: usize,
    },
    #[error("sync message: feed key: {0}")]
    Key(#[from] KeyError),
    #[error("sync message: expected a 32-byte {what}, found {found} bytes")]
    Length { what: &'static str, found: usize },
    #[error("sync message: {0}")]
    Invalid(&'static str),
}

impl WireError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            WireError::TooLarge { .. } => "frame-too-large",
            WireError::Cbor(_) => "malformed",
            WireError::UnknownType { .. } => "unknown-type",
            WireError::Shape { .. } => "shape",
            WireError::TooMany { .. } => "too-many",
            WireError::Key(_) => "bad-key",
            WireError::Length { .. } => "bad-length",
            WireError::Invalid(_) => "invalid",
        }
    }
}

fn heads(out: &mut Vec<u8>, hs: &[FeedHead]) {
    array(out, hs.len());
    for (k, s) in hs {
        array(out, 2);
        bytes(out, k.as_bytes());
        uint(out, *s);
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Request::Clock { heads: h, topics } => {
                array(&mut out, 3);
                uint(&mut out, 1);
                heads(&mut out, h);
                array(&mut out, topics.len());
                for t in topics {
                    bytes(&mut out, t);
                }
            }
            Request::Fetch { feed, from, max } => {
                array(&mut out, 4);
                uint(&mut out, 2);
                bytes(&mut out, feed.as_bytes());
                uint(&mut out, *from);
                uint(&mut out, u64::from(*max));
            }
            Request::Have { heads: h } => {
                array(&mut out, 2);
                uint(&mut out, 3);
                heads(&mut out, h);
            }
            Request::Forks { proofs } => {
                array(&mut out, 2);
                uint(&mut out, 4);
                array(&mut out, proofs.len());
                for pr in proofs {
                    bytes(&mut out, pr);
                }
            }
        }
        out
    }

    pub fn decode(frame: &[u8]) -> Result<Request, WireError> {
        let p = &mut start(frame)?;
        let n = p.array()?;
        let kind = p.uint()?;
        let r = match kind {
            1 => {
                shape(kind, 3, n)?;
                let heads = read_heads(p)?;
                let count = bounded(p.array()?, MAX_TOPICS, "topics")?;
                let mut topics = Vec::with_capacity(count);
                for _ in 0..count {
                    topics.push(b32(p.bytes()?, "topic")?);
                }
                Request::Clock { heads, topics }
            }
            2 => {
                shape(kind, 4, n)?;
                let feed = key(p)?;
                let from = p.uint()?;
                let max = p.uint()?;
                if from == 0 {
                    return Err(WireError::Invalid("fetch from seq 0 (seqs start at 1)"));
                }
                if max == 0 || max > u64::from(MAX_FETCH_ENTRIES) {
                    return Err(WireError::Invalid(
                        "fetch max must be 1..=MAX_FETCH_ENTRIES",
                    ));
                }
                Request::Fetch {
                    feed,
                    from,
                    max: max as u32,
                }
            }
            3 => {
                shape(kind, 2, n)?;
                Request::Have {
                    heads: read_heads(p)?,
                }
            }
            4 => {
                shape(kind, 2, n)?;
                let count = bounded(p.array()?, MAX_FORK_PROOFS, "fork proofs")?;
                let mut proofs = Vec::with_capacity(count);
                for _ in 0..count {
                    let b = p.bytes()?;
                    if b.len() > MAX_FORK_PROOF_SIZE {
                        return Err(WireError::TooLarge {
                            limit: MAX_FORK_PROOF_SIZE,
                            found: b.len(),
                        });
                    }
                    proofs.push(b.to_vec());
                }
                Request::Forks { proofs }
            }
            found => {
                return Err(WireError::UnknownType {
                    expected: "1 (clock), 2 (fetch), 3 (have) or 4 (forks)",
                    found,
                });
            }
        };
        p.finish()?;
        Ok(r)
    }
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Response::Clock { heads: h } => {
                array(&mut out, 2);
                uint(&mut out, 1);
                heads(&mut out, h);
            }
            Response::Entries { records } => {
                let size: usize = records.iter().map(Record::wire_size).sum();
                out.reserve(size + 16);
                array(&mut out, 2);
                uint(&mut out, 2);
                array(&mut out, records.len());
                for r in records {
                    match &r.payload {
                        Some(pl) => {
                            array(&mut out, 2);
                            bytes(&mut out, &r.signed);
                            bytes(&mut out, pl);
                        }
                        None => {
                            array(&mut out, 1);
                            bytes(&mut out, &r.signed);
                        }
                    }
                }
            }
            Response::Ack => {
                array(&mut out, 1);
                uint(&mut out, 3);
            }
            Response::Refused { reason } => {
                array(&mut out, 2);
                uint(&mut out, 4);
                let mut end = reason.len().min(MAX_REASON_LEN);
                while !reason.is_char_boundary(end) {
                    end -= 1;
                }
                text(&mut out, reason.get(..end).unwrap_or_default());
            }
        }
        out
    }

    pub fn decode(frame: &[u8]) -> Result<Response, WireError> {
        let p = &mut start(frame)?;
        let n = p.array()?;
        let kind = p.uint()?;
        let r = match kind {
            1 => {
                shape(kind, 2, n)?;
                Response::Clock {
                    heads: read_heads(p)?,
                }
            }
            2 => {
                shape(kind, 2, n)?;
                let count = bounded(p.array()?, MAX_FETCH_ENTRIES as usize, "entries")?;
                let mut records = Vec::with_capacity(count);
                for _ in 0..count {
                    let parts = p.array()?;
                    if !(1..=2).contains(&parts) {
                        return Err(WireError::Invalid(
                            "an entry record is [signed header] or [signed header, payload]",
                        ));
                    }
                    let signed = p.bytes()?;
                    if signed.len() > MAX_SIGNED_HEADER_SIZE {
                        return Err(WireError::TooLarge {
                            limit: MAX_SIGNED_HEADER_SIZE,
                            found: signed.len(),
                        });
                    }
                    let payload = if parts == 2 {
                        let b = p.bytes()?;
                        if b.len() as u64 > MAX_PAYLOAD_SIZE {
                            return Err(WireError::TooLarge {
                                limit: MAX_PAYLOAD_SIZE as usize,
                                found: b.len(),
                            });
                        }
                        Some(b.to_vec())
                    } else {
                        None
                    };
                    records.push(Record {
                        signed: signed.to_vec(),
                        payload,
                    });
                }
                Response::Entries { records }
            }
            3 => {
                shape(kind, 1, n)?;
                Response::Ack
            }
            4 => {
                shape(kind, 2, n)?;
                let t = p.text()?;
                if t.len() > MAX_REASON_LEN {
                    return Err(WireError::TooMany {
                        what: "refusal reason bytes",
                        limit: MAX_REASON_LEN,
                        found: t.len(),
                    });
                }
                Response::Refused {
                    reason: t.to_owned(),
                }
            }
            found => {
                return Err(WireError::UnknownType {
                    expected: "1 (clock), 2 (entries), 3 (ack) or 4 (refused)",
                    found,
                });
            }
        };
        p.finish()?;
        Ok(r)
    }
}

fn start(frame: &[u8]) -> Result<Pull<'_>, WireError> {
    if frame.len() > MAX_FRAME_SIZE {
        return Err(WireError::TooLarge {
            limit: MAX_FRAME_SIZE,
            found: frame.len(),
        });
    }
    Ok(Pull::strict(frame))
}

fn shape(kind: u64, expected: usize, found: usize) -> Result<(), WireError> {
    if expected != found {
        return Err(WireError::Shape {
            kind,
            expected,
            found,
        });
    }
    Ok(())
}

fn bounded(n: usize, limit: usize, what: &'static str) -> Result<usize, WireError> {
    if n > limit {
        return Err(WireError::TooMany {
            what,
            limit,
            found: n,
        });
    }
    Ok(n)
}

fn b32(b: &[u8], what: &'static str) -> Result<[u8; 32], WireError> {
    <[u8; 32]>::try_from(b).map_err(|_| WireError::Length {
        what,
        found: b.len(),
    })
}

fn key(p: &mut Pull<'_>) -> Result<PublicKey, WireError> {
    Ok(tagline_format::keys::validated_key(&b32(
        p.bytes()?,
        "feed key",
    )?)?)
}

fn read_heads(p: &mut Pull<'_>) -> Result<Vec<FeedHead>, WireError> {
    let count = bounded(p.array()?, MAX_CLOCK_HEADS, "heads")?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        if p.array()? != 2 {
            return Err(WireError::Invalid("a head is [feed key, seq]"));
        }
        let k = key(p)?;
        let s = p.uint()?;
        if s > tagline_format::limits::MAX_SEQ {
            return Err(WireError::Invalid("a head's seq exceeds MAX_SEQ"));
        }
        out.push((k, s));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use proptest::prelude::*;
    use tagline_format::SecretKey;

    fn k(n: u8) -> PublicKey {
        SecretKey::from_seed(&[n; 32]).public()
    }

    fn samples() -> (Vec<Request>, Vec<Response>) {
        (
            vec![
                Request::Clock {
                    heads: vec![(k(1), 0), (k(2), 300)],
                    topics: vec![[7; 32]],
                },
                Request::Fetch {
                    feed: k(3),
                    from: 1,
                    max: MAX_FETCH_ENTRIES,
                },
                Request::Have {
                    heads: vec![(k(4), 1 << 40)],
                },
                Request::Forks {
                    proofs: vec![vec![0x82, 0x40, 0x40], vec![1; 40]],
                },
            ],
            vec![
                Response::Clock {
                    heads: vec![(k(1), 9)],
                },
                Response::Entries {
                    records: vec![
                        Record {
                            signed: vec![1, 2, 3],
                            payload: Some(vec![9; 300]),
                        },
                        Record {
                            signed: vec![4],
                            payload: None,
                        },
                    ],
                },
                Response::Ack,
                Response::Refused {
                    reason: "rate limited".into(),
                },
            ],
        )
    }

    #[test]
    fn messages_round_trip_and_encode_canonically() {
        let (reqs, resps) = samples();
        for r in reqs {
            let b = r.encode();
            tagline_format::cbor::check_canonical(&b, MAX_FRAME_SIZE).unwrap();
            assert_eq!(Request::decode(&b).unwrap(), r);
        }
        for r in resps {
            let b = r.encode();
            if let Response::Entries { records } = &r {
                // The budget's estimate bounds the real size (5 bytes: the
                // message's array, type and records' array heads).
                let budget: usize = records.iter().map(Record::wire_size).sum();
                assert!(b.len() <= budget + 5, "{} > {budget} + 5", b.len());
            }
            tagline_format::cbor::check_canonical(&b, MAX_FRAME_SIZE).unwrap();
            assert_eq!(Response::decode(&b).unwrap(), r);
        }
    }

    #[test]
    fn bad_messages_are_refused_with_their_reason() {
        let fetch = |from: u64, max: u64| {
            let mut out = Vec::new();
            array(&mut out, 4);
            uint(&mut out, 2);
            bytes(&mut out, k(1).as_bytes());
            uint(&mut out, from);
            uint(&mut out, max);
            out
        };
        assert_eq!(Request::decode(&fetch(0, 5)).unwrap_err().code(), "invalid");
        assert_eq!(Request::decode(&fetch(1, 0)).unwrap_err().code(), "invalid");
        assert_eq!(
            Request::decode(&fetch(1, u64::from(MAX_FETCH_ENTRIES) + 1))
                .unwrap_err()
                .code(),
            "invalid"
        );
        // A weak key (the identity point) is not a feed.
        let mut weak = Vec::new();
        array(&mut weak, 4);
        uint(&mut weak, 2);
        let mut id = [0u8; 32];
        id[0] = 1;
        bytes(&mut weak, &id);
        uint(&mut weak, 1);
        uint(&mut weak, 1);
        assert_eq!(Request::decode(&weak).unwrap_err().code(), "bad-key");
        // Non-canonical: a uint in a longer form than needed.
        let mut long = fetch(1, 5);
        let n = long.len();
        long.truncate(n - 1);
        long.extend_from_slice(&[0x18, 5]);
        assert_eq!(Request::decode(&long).unwrap_err().code(), "malformed");
        // Trailing bytes, unknown type, wrong arity.
        let mut trailing = fetch(1, 5);
        trailing.push(0);
        assert_eq!(Request::decode(&trailing).unwrap_err().code(), "malformed");
        assert_eq!(
            Request::decode(&[0x81, 0x09]).unwrap_err().code(),
            "unknown-type"
        );
        assert_eq!(
            Request::decode(&[0x82, 0x02, 0x00]).unwrap_err().code(),
            "shape"
        );
        // A count larger than the bytes left is refused before allocating.
        let mut many = vec![0x82, 0x02, 0x99, 0x04, 0x01];
        many.extend(std::iter::repeat_n(0x80, 1025));
        assert_eq!(Response::decode(&many).unwrap_err().code(), "too-many");
        assert_eq!(
            Response::decode(&[0x82, 0x02, 0x99, 0x04, 0x01])
                .unwrap_err()
                .code(),
            "malformed",
            "a count beyond the bytes left"
        );
        assert_eq!(
            Response::decode(&[0x82, 0x02, 0x99, 0x00, 0xff])
                .unwrap_err()
                .code(),
            "malformed"
        );
        let huge = vec![0u8; MAX_FRAME_SIZE + 1];
        assert_eq!(
            Response::decode(&huge).unwrap_err().code(),
            "frame-too-large"
        );
    }

    proptest! {
        /// No input makes the decoders panic, and what decodes re-encodes to
        /// the same bytes (one encoding per message).
        #[test]
        fn decoding_is_total_and_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(r) = Request::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes.clone());
            }
            if let Ok(r) = Response::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }

        #[test]
        fn mutated_messages_decode_only_canonically(which in 0usize..7, at in any::<usize>(), byte in any::<u8>()) {
            let (reqs, resps) = samples();
            let mut b = if which < 3 { reqs[which].encode() } else { resps[which - 3].encode() };
            let i = at % b.len();
            b[i] = byte;
            if let Ok(r) = Request::decode(&b) {
                prop_assert_eq!(r.encode(), b.clone());
            }
            if let Ok(r) = Response::decode(&b) {
                prop_assert_eq!(r.encode(), b);
            }
        }
    }
}
