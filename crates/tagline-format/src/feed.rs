//! Validation of entries against their feed (SPEC.md §4.4) and the batch
//! pipeline used by ingest: decode, hash, chain check, batched signatures.

use crate::entry::{EntryError, Head, SignedHeader};
use crate::keys::{EntryId, PublicKey};
use crate::limits::{MAX_FUTURE_SKEW_MS, VERIFY_BATCH_SIZE};
use crate::lipmaa::{has_distinct_lipmaa, lipmaa};
use crate::verify::{BatchVerifier, SignatureError};

/// An entry does not fit the feed it claims to extend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("entry is by {found}, expected an entry of feed {expected}")]
    WrongAuthor { expected: String, found: String },
    #[error("sequence gap: expected seq {expected}, found {found}")]
    SeqGap { expected: u64, found: u64 },
    #[error("entry {seq}: backlink is {found}, expected the id of entry {} ({expected})", seq - 1)]
    WrongBacklink {
        seq: u64,
        expected: EntryId,
        found: EntryId,
    },
    #[error("entry {seq}: lipmaa link is {found}, expected the id of entry {target} ({expected})")]
    WrongLipmaa {
        seq: u64,
        target: u64,
        expected: EntryId,
        found: EntryId,
    },
    #[error("entry {seq}: lipmaa target entry {target} is not available to check the link")]
    LipmaaUnavailable { seq: u64, target: u64 },
    #[error(
        "entry {seq}: timestamp {found} ms is more than {MAX_FUTURE_SKEW_MS} ms ahead of this node's clock ({now} ms)"
    )]
    TimestampInFuture { seq: u64, found: u64, now: u64 },
    #[error("entry {seq}: timestamp {found} ms is before the previous entry's {previous} ms")]
    TimestampDecreased { seq: u64, previous: u64, found: u64 },
    #[error("entry {seq}: {source}")]
    Entry {
        seq: u64,
        #[source]
        source: EntryError,
    },
}

impl FeedError {
    pub fn code(&self) -> &'static str {
        match self {
            FeedError::WrongAuthor { .. } => "wrong-author",
            FeedError::SeqGap { .. } => "seq-gap",
            FeedError::WrongBacklink { .. } => "wrong-backlink",
            FeedError::WrongLipmaa { .. } => "wrong-lipmaa",
            FeedError::LipmaaUnavailable { .. } => "lipmaa-unavailable",
            FeedError::TimestampInFuture { .. } => "future-timestamp",
            FeedError::TimestampDecreased { .. } => "timestamp-decreased",
            FeedError::Entry { source, .. } => source.code(),
        }
    }
}

/// Checks that `entry` may follow `head` in its feed (everything but the
/// signature and the payload). `lipmaa_target` is the id of entry
/// `lipmaa(entry.seq)`, needed only when that differs from the backlink.
/// `now_ms` is the receiver's clock.
pub fn validate_next(
    head: Option<&Head>,
    lipmaa_target: Option<EntryId>,
    entry: &SignedHeader,
    now_ms: u64,
) -> Result<(), FeedError> {
    let h = entry.header();
    let expected_seq = head.map_or(1, |x| x.seq + 1);
    if h.seq != expected_seq {
        return Err(FeedError::SeqGap {
            expected: expected_seq,
            found: h.seq,
        });
    }
    if let Some(head) = head {
        // Header::check guarantees a backlink for seq > 1.
        let found = h.backlink.unwrap_or(EntryId([0; 32]));
        if found != head.id {
            return Err(FeedError::WrongBacklink {
                seq: h.seq,
                expected: head.id,
                found,
            });
        }
        if h.timestamp < head.timestamp {
            return Err(FeedError::TimestampDecreased {
                seq: h.seq,
                previous: head.timestamp,
                found: h.timestamp,
            });
        }
    }
    if has_distinct_lipmaa(h.seq) {
        let target = lipmaa(h.seq);
        let expected = lipmaa_target.ok_or(FeedError::LipmaaUnavailable { seq: h.seq, target })?;
        let found = h.lipmaa.unwrap_or(EntryId([0; 32]));
        if found != expected {
            return Err(FeedError::WrongLipmaa {
                seq: h.seq,
                target,
                expected,
                found,
            });
        }
    }
    if h.timestamp > now_ms.saturating_add(MAX_FUTURE_SKEW_MS) {
        return Err(FeedError::TimestampInFuture {
            seq: h.seq,
            found: h.timestamp,
            now: now_ms,
        });
    }
    Ok(())
}

/// Entry ids whose signatures [`check_signatures`] verified: only it makes
/// one, so holding one proves each id in it was verified. An entry id is the
/// hash of the signed header, signature included, so an entry with a listed
/// id carries the very signature that was verified.
///
/// It lets a receiver verify the signatures of one batch (which needs no
/// store) while the previous batch is checked against its feeds and written
/// (which does): [`verify_run_with`] skips the signatures it lists.
#[derive(Debug, Clone, Default)]
pub struct VerifiedIds(std::collections::HashSet<EntryId>);

impl VerifiedIds {
    pub fn contains(&self, id: &EntryId) -> bool {
        self.0.contains(id)
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Verifies the signatures of `entries` (any feeds, any order) in batches of
/// [`VERIFY_BATCH_SIZE`] and returns the ids of those whose signature is
/// valid; the others are left for [`verify_run_with`] to find and report.
/// `seed` must be fresh randomness the signers cannot predict.
pub fn check_signatures<T: AsRef<SignedHeader>>(entries: &[T], seed: [u8; 32]) -> VerifiedIds {
    let headers: Vec<&SignedHeader> = entries.iter().map(AsRef::as_ref).collect();
    let mut ids = std::collections::HashSet::with_capacity(headers.len());
    for (chunk, result) in batches(&headers, seed) {
        match result {
            Ok(()) => ids.extend(chunk.iter().map(|e| e.id())),
            Err(each) => ids.extend(
                chunk
                    .iter()
                    .zip(each)
                    .filter(|(_, r)| r.is_ok())
                    .map(|(e, _)| e.id()),
            ),
        }
    }
    VerifiedIds(ids)
}

/// The outcome of one batch: `Ok`, or each signature's own result.
type BatchOutcome = Result<(), Vec<Result<(), SignatureError>>>;

/// Verifies `headers`' signatures batch by batch, [`VERIFY_BATCH_SIZE`] at a
/// time, each batch with its own seed drawn from `seed`; lazily, so a
/// caller may stop at the first batch that fails.
fn batches<'h, 'a>(
    headers: &'h [&'a SignedHeader],
    seed: [u8; 32],
) -> impl Iterator<Item = (&'h [&'a SignedHeader], BatchOutcome)> {
    let seeds = std::iter::successors(Some(seed), |s| {
        Some(*blake3::keyed_hash(s, b"next").as_bytes())
    });
    headers
        .chunks(VERIFY_BATCH_SIZE)
        .zip(seeds)
        .map(|(chunk, seed)| {
            // Messages are built once per batch.
            let msgs: Vec<Vec<u8>> = chunk.iter().map(|e| e.message()).collect();
            let mut b = BatchVerifier::with_capacity(chunk.len());
            for (e, m) in chunk.iter().zip(&msgs) {
                b.push(e.author(), m, *e.signature());
            }
            (chunk, b.verify(seed))
        })
}

/// Verifies a run of consecutive entries of one feed that extends `head`:
/// chain rules entry by entry, signatures in batches of [`VERIFY_BATCH_SIZE`].
/// `lookup(seq)` returns the id of an already-stored entry of this feed (for
/// lipmaa links that reach before the run). Returns the new head, or the index
/// of the first bad entry and why. Entries before that index are valid.
pub fn verify_run<T: AsRef<SignedHeader>>(
    author: &PublicKey,
    head: Option<Head>,
    run: &[T],
    lookup: &mut dyn FnMut(u64) -> Option<EntryId>,
    now_ms: u64,
    seed: [u8; 32],
) -> Result<Option<Head>, (usize, FeedError)> {
    verify_run_with(author, head, run, lookup, now_ms, seed, None)
}

/// [`verify_run`], skipping the signatures `verified` lists (verified
/// beforehand by [`check_signatures`]); every other rule is checked as
/// always.
pub fn verify_run_with<T: AsRef<SignedHeader>>(
    author: &PublicKey,
    head: Option<Head>,
    run: &[T],
    lookup: &mut dyn FnMut(u64) -> Option<EntryId>,
    now_ms: u64,
    seed: [u8; 32],
    verified: Option<&VerifiedIds>,
) -> Result<Option<Head>, (usize, FeedError)> {
    let mut cur = head;
    let first_seq = head.map_or(1, |h| h.seq + 1);
    // Chain rules first; the first entry that breaks them ends the run, and
    // the signatures of the entries before it are still verified below, so
    // that "entries before the index are valid" holds either way.
    let mut chain_err: Option<(usize, FeedError)> = None;
    for (i, e) in run.iter().enumerate() {
        let e = e.as_ref();
        if e.author() != author {
            chain_err = Some((
                i,
                FeedError::WrongAuthor {
                    expected: author.to_string(),
                    found: e.author().to_string(),
                },
            ));
            break;
        }
        let target = if has_distinct_lipmaa(e.seq()) {
            let t = lipmaa(e.seq());
            if t >= first_seq {
                usize::try_from(t - first_seq)
                    .ok()
                    .and_then(|j| run.get(j))
                    .map(|x| x.as_ref().id())
            } else {
                lookup(t)
            }
        } else {
            None
        };
        if let Err(err) = validate_next(cur.as_ref(), target, e, now_ms) {
            chain_err = Some((i, err));
            break;
        }
        cur = Some(Head::of(e));
    }
    let checked = run
        .get(..chain_err.as_ref().map_or(run.len(), |(i, _)| *i))
        .unwrap_or_default();
    // Signatures not verified beforehand, in run order (so the first
    // failure found is the first bad entry): (index in the run, header).
    let (idxs, pending): (Vec<usize>, Vec<&SignedHeader>) = checked
        .iter()
        .map(AsRef::as_ref)
        .enumerate()
        .filter(|(_, e)| verified.is_none_or(|v| !v.contains(&e.id())))
        .unzip();
    for (c, (_, result)) in batches(&pending, seed).enumerate() {
        if let Err(each) = result
            && let Some((j, err)) = each
                .into_iter()
                .enumerate()
                .find_map(|(j, r)| r.err().map(|e| (j, e)))
        {
            let i = idxs.get(c * VERIFY_BATCH_SIZE + j).copied().unwrap_or(0);
            let seq = run.get(i).map_or(0, |e| e.as_ref().seq());
            return Err((
                i,
                FeedError::Entry {
                    seq,
                    source: EntryError::Signature(err),
                },
            ));
        }
    }
    match chain_err {
        Some(e) => Err(e),
        None => Ok(cur),
    }
}

/// Two validly signed headers by the same author with the same sequence number
/// and different ids: proof that the author forked the feed (SPEC.md §4.5).
#[derive(Debug, Clone, PartialEq)]
pub struct ForkProof {
    a: SignedHeader,
    b: SignedHeader,
}

/// A pair of headers that does not prove a fork.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForkProofError {
    #[error("fork proof: headers are by different authors")]
    DifferentAuthors,
    #[error("fork proof: headers have different sequence numbers ({0} and {1})")]
    DifferentSeq(u64, u64),
    #[error("fork proof: both headers are the same entry")]
    SameEntry,
    #[error("fork proof: {0}")]
    Entry(#[from] EntryError),
    #[error("fork proof: expected [signed header, signed header] in id order")]
    Shape,
}

impl ForkProof {
    /// Builds a proof from two headers; verifies both signatures.
    pub fn new(x: SignedHeader, y: SignedHeader) -> Result<ForkProof, ForkProofError> {
        if x.author() != y.author() {
            return Err(ForkProofError::DifferentAuthors);
        }
        if x.seq() != y.seq() {
            return Err(ForkProofError::DifferentSeq(x.seq(), y.seq()));
        }
        if x.id() == y.id() {
            return Err(ForkProofError::SameEntry);
        }
        x.verify_signature()?;
        y.verify_signature()?;
        let (a, b) = if x.id() < y.id() { (x, y) } else { (y, x) };
        Ok(ForkProof { a, b })
    }

    pub fn author(&self) -> &PublicKey {
        self.a.author()
    }
    pub fn seq(&self) -> u64 {
        self.a.seq()
    }
    pub fn headers(&self) -> (&SignedHeader, &SignedHeader) {
        (&self.a, &self.b)
    }

    /// Canonical encoding: `[bstr a, bstr b]` with `id(a) < id(b)`.
    pub fn encode(&self) -> Vec<u8> {
        use ciborium::value::Value;
        let v = Value::Array(vec![
            Value::Bytes(self.a.as_bytes().to_vec()),
            Value::Bytes(self.b.as_bytes().to_vec()),
        ]);
        crate::cbor::encode(&v).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<ForkProof, ForkProofError> {
        use ciborium::value::Value;
        let v = crate::cbor::decode(bytes, 2 * crate::limits::MAX_SIGNED_HEADER_SIZE + 8)
            .map_err(|e| ForkProofError::Entry(e.into()))?;
        let Value::Array(items) = v else {
            return Err(ForkProofError::Shape);
        };
        let mut it = items.into_iter();
        let (Some(Value::Bytes(a)), Some(Value::Bytes(b)), None) =
            (it.next(), it.next(), it.next())
        else {
            return Err(ForkProofError::Shape);
        };
        let a = SignedHeader::decode(a)?;
        let b = SignedHeader::decode(b)?;
        if a.id() >= b.id() {
            return Err(ForkProofError::Shape);
        }
        ForkProof::new(a, b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::create_entry;
    use crate::keys::SecretKey;
    use crate::payload::note;

    fn feed(k: &SecretKey, n: u64) -> Vec<SignedHeader> {
        let mut out: Vec<SignedHeader> = Vec::new();
        for i in 1..=n {
            let prev = out.last().map(Head::of);
            let target = if has_distinct_lipmaa(i) {
                Some(out[(lipmaa(i) - 1) as usize].id())
            } else {
                None
            };
            let e = create_entry(
                k,
                prev.as_ref(),
                target,
                1000 + i,
                "tagline/note",
                note(&format!("{i}")),
            )
            .unwrap();
            out.push(e.signed);
        }
        out
    }

    #[test]
    fn run_verifies_and_reports_first_bad_entry() {
        let k = SecretKey::from_seed(&[3; 32]);
        let f = feed(&k, 150);
        let head = verify_run(&k.public(), None, &f, &mut |_| None, 10_000, [0; 32]).unwrap();
        assert_eq!(head.unwrap().seq, 150);
        // Resume from a head in the middle; lipmaa lookups reach back.
        let mid = Head::of(&f[99]);
        let ids: Vec<EntryId> = f.iter().map(|e| e.id()).collect();
        verify_run(
            &k.public(),
            Some(mid),
            &f[100..],
            &mut |s| ids.get((s - 1) as usize).copied(),
            10_000,
            [0; 32],
        )
        .unwrap();
        // A gap.
        let mut gapped = f.clone();
        gapped.remove(70);
        let (i, e) =
            verify_run(&k.public(), None, &gapped, &mut |_| None, 10_000, [0; 32]).unwrap_err();
        assert_eq!((i, e.code()), (70, "seq-gap"));
        // A forged signature before the gap is reported first: the entries
        // before a chain error are verified too, never passed as valid.
        let mut bytes = gapped[0].as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        gapped[0] = SignedHeader::decode(bytes).unwrap();
        let (i, e) =
            verify_run(&k.public(), None, &gapped, &mut |_| None, 10_000, [0; 32]).unwrap_err();
        assert_eq!(i, 0, "{e}");
        assert!(matches!(
            e,
            FeedError::Entry {
                source: EntryError::Signature(_),
                ..
            }
        ));
    }

    #[test]
    fn signatures_verified_beforehand_are_skipped_and_no_others() {
        let k = SecretKey::from_seed(&[6; 32]);
        let good = feed(&k, 150);
        let all = check_signatures(&good, [1; 32]);
        assert_eq!(all.len(), 150);
        verify_run_with(
            &k.public(),
            None,
            &good,
            &mut |_| None,
            10_000,
            [0; 32],
            Some(&all),
        )
        .unwrap();
        // The last entry forged (nothing links to it, so only its signature
        // is wrong): check_signatures leaves it out, and verify_run_with
        // finds it whether given that set or the good feed's.
        let mut forged = good.clone();
        let mut bytes = forged[149].as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        forged[149] = SignedHeader::decode(bytes).unwrap();
        let checked = check_signatures(&forged, [2; 32]);
        assert_eq!(checked.len(), 149);
        assert!(!checked.contains(&forged[149].id()));
        for known in [&checked, &all] {
            let (i, e) = verify_run_with(
                &k.public(),
                None,
                &forged,
                &mut |_| None,
                10_000,
                [0; 32],
                Some(known),
            )
            .unwrap_err();
            assert_eq!(i, 149, "{e}");
            assert!(matches!(
                e,
                FeedError::Entry {
                    source: EntryError::Signature(_),
                    ..
                }
            ));
        }
    }

    #[test]
    fn fork_proofs() {
        let k = SecretKey::from_seed(&[4; 32]);
        let a = create_entry(&k, None, None, 1, "tagline/note", note("a"))
            .unwrap()
            .signed;
        let b = create_entry(&k, None, None, 1, "tagline/note", note("b"))
            .unwrap()
            .signed;
        let p = ForkProof::new(a.clone(), b.clone()).unwrap();
        let q = ForkProof::decode(&p.encode()).unwrap();
        assert_eq!(p, q);
        assert_eq!(
            ForkProof::new(a.clone(), a.clone()).unwrap_err(),
            ForkProofError::SameEntry
        );
        let other = create_entry(
            &SecretKey::from_seed(&[5; 32]),
            None,
            None,
            1,
            "tagline/note",
            note("a"),
        )
        .unwrap();
        assert_eq!(
            ForkProof::new(a, other.signed).unwrap_err(),
            ForkProofError::DifferentAuthors
        );
    }
}

/// Any reason a received entry is refused, with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error(transparent)]
    Feed(#[from] FeedError),
}

impl ValidationError {
    pub fn code(&self) -> &'static str {
        match self {
            ValidationError::Entry(e) => e.code(),
            ValidationError::Feed(e) => e.code(),
        }
    }
}

/// Full validation of one received entry, in the order SPEC.md §4.6 gives:
/// decode (size, canonical form, fields, key, signature encoding), signature,
/// feed rules, then the payload if present.
pub fn validate_received(
    head: Option<&Head>,
    lipmaa_target: Option<EntryId>,
    signed_header: &[u8],
    payload: Option<&[u8]>,
    now_ms: u64,
) -> Result<SignedHeader, ValidationError> {
    let sh = SignedHeader::decode(signed_header.to_vec())?;
    sh.verify_signature()?;
    validate_next(head, lipmaa_target, &sh, now_ms)?;
    if let Some(p) = payload {
        crate::entry::check_payload(sh.header(), p)?;
    }
    Ok(sh)
}
