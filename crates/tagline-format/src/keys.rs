//! Keys, hashes and their text forms (SPEC.md §3).
//!
//! Text forms are bech32m (BIP-350) strings whose human-readable part names the
//! type, so a key can never be mistaken for an entry id: the checksum covers
//! the prefix too.

use std::fmt;
use std::str::FromStr;

use bech32::{Bech32m, Hrp, primitives::decode::CheckedHrpstring};
use ed25519_dalek::{SigningKey, VerifyingKey};
use zeroize::Zeroizing;

/// Human-readable part of a public (feed) key.
pub const HRP_PUBLIC_KEY: &str = "tlk";
/// Human-readable part of an entry id.
pub const HRP_ENTRY_ID: &str = "tle";
/// Human-readable part of a payload hash.
pub const HRP_PAYLOAD_HASH: &str = "tlp";
/// Human-readable part of a secret key seed (key files only; never shown).
pub const HRP_SECRET_KEY: &str = "tlsec";

/// A key or hash could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a Tagline {expected}: {reason}")]
    Text {
        expected: &'static str,
        reason: String,
    },
    #[error("expected a {expected} (prefix `{want}1`), found one with prefix `{found}1`")]
    WrongType {
        expected: &'static str,
        want: &'static str,
        found: String,
    },
    #[error("expected 32 bytes, found {0}")]
    Length(usize),
    #[error("public key is not a canonical point encoding")]
    NonCanonicalKey,
    #[error("public key bytes are not a point on the curve")]
    InvalidKey,
    #[error("public key is weak (a point of small order)")]
    WeakKey,
}

impl KeyError {
    /// Stable error code for vectors.
    pub fn code(&self) -> &'static str {
        match self {
            KeyError::Text { .. } | KeyError::WrongType { .. } | KeyError::Length(_) => "bad-text",
            KeyError::NonCanonicalKey => "non-canonical-key",
            KeyError::InvalidKey => "invalid-key",
            KeyError::WeakKey => "weak-key",
        }
    }
}

/// The bech32m text form of 32 bytes under `hrp`.
pub fn text_form(hrp: &'static str, bytes: &[u8]) -> String {
    let hrp = Hrp::parse_unchecked(hrp);
    // Encoding 32 bytes under a short valid HRP cannot exceed bech32's length limit.
    bech32::encode_lower::<Bech32m>(hrp, bytes).unwrap_or_default()
}

/// See the id types' `prefix_range`.
fn prefix_range(hrp: &str, prefix: &str) -> Option<([u8; 32], [u8; 32])> {
    let data = prefix.to_ascii_lowercase();
    let data = data.strip_prefix(hrp)?.strip_prefix('1')?;
    let (mut lo, mut hi) = ([0u8; 32], [0xffu8; 32]);
    // 32 bytes are 51.2 characters: the 52nd and later (the checksum) say
    // nothing more about the bytes.
    for (i, c) in data.chars().enumerate() {
        let v = bech32::Fe32::from_char(c).ok()?.to_u8();
        for bit in 0..5 {
            let n = i * 5 + bit;
            if n >= 256 {
                break;
            }
            let set = v >> (4 - bit) & 1 == 1;
            let mask = 0x80u8 >> (n % 8);
            let (l, h) = (lo.get_mut(n / 8)?, hi.get_mut(n / 8)?);
            if set {
                *l |= mask;
            } else {
                *h &= !mask;
            }
        }
    }
    Some((lo, hi))
}

/// Parses a bech32m text form, checking its checksum and prefix.
pub fn parse_text_form(
    s: &str,
    hrp: &'static str,
    expected: &'static str,
) -> Result<[u8; 32], KeyError> {
    let checked = CheckedHrpstring::new::<Bech32m>(s.trim()).map_err(|e| KeyError::Text {
        expected,
        reason: e.to_string(),
    })?;
    let found = checked.hrp().to_lowercase();
    if found != hrp {
        return Err(KeyError::WrongType {
            expected,
            want: hrp,
            found,
        });
    }
    let bytes: Vec<u8> = checked.byte_iter().collect();
    let n = bytes.len();
    <[u8; 32]>::try_from(bytes).map_err(|_| KeyError::Length(n))
}

/// True when `bytes` is the canonical encoding of its y coordinate (y < p).
/// The only other non-canonical encodings (x = 0 with the sign bit set) are
/// of small-order points, which are rejected separately.
pub fn is_canonical_y(bytes: &[u8; 32]) -> bool {
    let [first, middle @ .., last] = bytes;
    // y >= p = 2^255 - 19 exactly when the low 255 bits are 0x7fff..ffed..0x7fff..ffff.
    !(last & 0x7f == 0x7f && middle.iter().all(|b| *b == 0xff) && *first >= 0xed)
}

/// An ed25519 public key that passed every check of SPEC.md §3.1: canonical
/// encoding, a point on the curve, not of small order.
///
/// Holds only the 32 bytes (the checks ran when it was made); the curve point
/// is decompressed again where single verification needs it.
#[derive(Clone, Copy)]
pub struct PublicKey {
    bytes: [u8; 32],
}

impl PublicKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
        if !is_canonical_y(bytes) {
            return Err(KeyError::NonCanonicalKey);
        }
        let vk = VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidKey)?;
        if vk.is_weak() {
            return Err(KeyError::WeakKey);
        }
        if vk.to_bytes() != *bytes {
            return Err(KeyError::NonCanonicalKey);
        }
        Ok(PublicKey { bytes: *bytes })
    }

    /// A key from this node's own cache, written from a key that passed
    /// [`PublicKey::from_bytes`] (a local, derived table). Skips the point
    /// checks. NEVER use it for bytes received from anyone: received keys go
    /// through `from_bytes`. Signatures are always verified against keys
    /// decoded from the signed headers themselves, never against cached ones.
    pub fn from_cached_bytes(bytes: &[u8; 32]) -> PublicKey {
        PublicKey { bytes: *bytes }
    }

    pub fn from_slice(bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let arr = <[u8; 32]>::try_from(bytes).map_err(|_| KeyError::Length(bytes.len()))?;
        PublicKey::from_bytes(&arr)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// The decompressed key (a point decompression).
    pub(crate) fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        VerifyingKey::from_bytes(&self.bytes).map_err(|_| KeyError::InvalidKey)
    }

    /// Short form for humans: the first 12 characters after the prefix.
    pub fn short(&self) -> String {
        let t = self.to_string();
        t.chars().take(16).collect()
    }
}

/// Sets in the per-thread memo of [`validated_key`] (a key's set is chosen by
/// two of its bytes).
pub const KEY_CACHE_SETS: usize = 256;
/// Keys remembered per set, most recently used first: with several ways, a
/// handful of keys that share a set (a series' dozen authors, say) do not
/// evict each other.
pub const KEY_CACHE_WAYS: usize = 4;

type KeySet = [Option<PublicKey>; KEY_CACHE_WAYS];

thread_local! {
    static KEY_CACHE: std::cell::RefCell<[KeySet; KEY_CACHE_SETS]> =
        const { std::cell::RefCell::new([[None; KEY_CACHE_WAYS]; KEY_CACHE_SETS]) };
}

/// [`PublicKey::from_bytes`] with a small per-thread memo of keys that passed:
/// a feed's entries all carry the same key, and validating it (a point
/// decompression) costs more than the rest of a header decode. A memo hit is
/// exact (the full 32 bytes match a key that passed every check), so results
/// are the same with or without it.
pub fn validated_key(bytes: &[u8; 32]) -> Result<PublicKey, KeyError> {
    let set = usize::from(bytes[0] ^ bytes[31]) % KEY_CACHE_SETS;
    let hit = KEY_CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let ways = c.get_mut(set)?;
        let way = ways
            .iter()
            .position(|k| k.is_some_and(|k| k.bytes == *bytes))?;
        // Move to the front: the least recently used key is evicted first.
        ways.get_mut(..=way)?.rotate_right(1);
        ways.first().copied().flatten()
    });
    if let Some(k) = hit {
        return Ok(k);
    }
    let k = PublicKey::from_bytes(bytes)?;
    KEY_CACHE.with(|c| {
        if let Some(ways) = c.borrow_mut().get_mut(set) {
            ways.rotate_right(1);
            if let Some(first) = ways.first_mut() {
                *first = Some(k);
            }
        }
    });
    Ok(k)
}

impl PartialEq for PublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}
impl Eq for PublicKey {}
impl PartialOrd for PublicKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for PublicKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.bytes.cmp(&other.bytes)
    }
}
impl std::hash::Hash for PublicKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&text_form(HRP_PUBLIC_KEY, &self.bytes))
    }
}
impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}
impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_bytes(&parse_text_form(s, HRP_PUBLIC_KEY, "public key")?)
    }
}

/// An ed25519 signing key (the 32-byte seed). Zeroised on drop.
pub struct SecretKey {
    sk: SigningKey,
    public: PublicKey,
}

impl SecretKey {
    /// Derives the key pair from a 32-byte seed (RFC 8032 private key). The
    /// caller supplies the randomness.
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        let sk = SigningKey::from_bytes(seed);
        let bytes = sk.verifying_key().to_bytes();
        // A key derived by the RFC 8032 procedure is a multiple of the base
        // point, hence canonical and never of small order.
        SecretKey {
            sk,
            public: PublicKey { bytes },
        }
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.sk.to_bytes())
    }

    /// Signs `msg` (deterministic RFC 8032 signature).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        self.sk.sign(msg).to_bytes()
    }

    /// The key file form: `tlsec1…`. Keep it secret.
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(text_form(HRP_SECRET_KEY, &*self.seed()))
    }

    pub fn from_text(s: &str) -> Result<SecretKey, KeyError> {
        let seed = Zeroizing::new(parse_text_form(s, HRP_SECRET_KEY, "secret key")?);
        Ok(SecretKey::from_seed(&seed))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public: {})", self.public)
    }
}

macro_rules! hash_type {
    ($name:ident, $hrp:expr, $what:expr, $doc:expr) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }
            /// Lowercase hex of the 32 bytes.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
            /// Short form for humans: prefix and the first 8 characters.
            pub fn short(&self) -> String {
                self.to_string().chars().take(12).collect()
            }
            /// The ids whose text form starts with `prefix` (at least the
            /// human-readable part and `1`), as an inclusive byte range
            /// `(lowest, highest)`, so a prefix is looked up by a range read.
            /// `None` if `prefix` cannot start such a text form.
            pub fn prefix_range(prefix: &str) -> Option<([u8; 32], [u8; 32])> {
                prefix_range($hrp, prefix)
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&text_form($hrp, &self.0))
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }
        impl FromStr for $name {
            type Err = KeyError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                parse_text_form(s, $hrp, $what).map($name)
            }
        }
    };
}

hash_type!(
    EntryId,
    HRP_ENTRY_ID,
    "entry id",
    "An entry id: blake3 of the signed header bytes."
);
hash_type!(
    PayloadHash,
    HRP_PAYLOAD_HASH,
    "payload hash",
    "blake3 of a payload's bytes."
);

impl EntryId {
    /// The id of a signed header: blake3 of exactly the bytes given.
    pub fn of(signed_header: &[u8]) -> EntryId {
        EntryId(*blake3::hash(signed_header).as_bytes())
    }
}

impl PayloadHash {
    pub fn of(payload: &[u8]) -> PayloadHash {
        PayloadHash(*blake3::hash(payload).as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// An id is in the range of every prefix of its text form, and an id
        /// in the range of a prefix has that prefix.
        #[test]
        fn prefix_ranges_match_text_prefixes(a in any::<[u8; 32]>(), b in any::<[u8; 32]>(), len in 4usize..70) {
            let (ta, tb) = (EntryId(a).to_string(), EntryId(b).to_string());
            let prefix: String = ta.chars().take(len).collect();
            let (lo, hi) = EntryId::prefix_range(&prefix).unwrap();
            prop_assert!(lo <= a && a <= hi);
            prop_assert_eq!(lo <= b && b <= hi, tb.starts_with(&prefix));
            // And b's own prefixes near a's.
            let common = ta.chars().zip(tb.chars()).take_while(|(x, y)| x == y).count();
            let p2: String = tb.chars().take(common.max(4) + 1).collect();
            let (lo, hi) = EntryId::prefix_range(&p2).unwrap();
            prop_assert!(lo <= b && b <= hi);
            prop_assert_eq!(lo <= a && a <= hi, ta.starts_with(&p2));
        }
    }

    proptest! {
        /// The memo never changes an answer: keys that share a set, valid or
        /// not, in any order and repeated, validate exactly as without it.
        #[test]
        fn key_memo_answers_as_the_full_check(
            seeds in proptest::collection::vec(any::<[u8; 32]>(), 1..12),
            order in proptest::collection::vec(any::<prop::sample::Index>(), 1..60),
        ) {
            // Force every key into one set so ways are evicted.
            let keys: Vec<[u8; 32]> = seeds
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut b = if i % 3 == 2 {
                        *s // mostly not a valid point, or weak
                    } else {
                        *SecretKey::from_seed(s).public().as_bytes()
                    };
                    b[0] = b[31] ^ 7;
                    b
                })
                .collect();
            for ix in order {
                let k = ix.get(&keys);
                let memo = validated_key(k).map(|p| p.bytes);
                let full = PublicKey::from_bytes(k).map(|p| p.bytes);
                prop_assert_eq!(memo, full);
            }
        }
    }

    #[test]
    fn prefix_ranges_refuse_other_forms() {
        assert!(EntryId::prefix_range("tlk1q").is_none());
        assert!(
            EntryId::prefix_range("tle1b").is_none(),
            "b is not in the alphabet"
        );
        assert_eq!(EntryId::prefix_range("tle1"), Some(([0; 32], [0xff; 32])));
        assert_eq!(EntryId::prefix_range("TLE1L").unwrap().0[0], 0xf8);
    }

    #[test]
    fn text_forms_round_trip_and_are_typed() {
        let sk = SecretKey::from_seed(&[7; 32]);
        let pk = sk.public();
        let text = pk.to_string();
        assert!(text.starts_with("tlk1"), "{text}");
        assert_eq!(text.parse::<PublicKey>().unwrap(), pk);
        // The same bytes as an entry id do not parse as a key, and vice versa.
        let id = EntryId(*pk.as_bytes());
        let id_text = id.to_string();
        assert!(id_text.starts_with("tle1"));
        assert_eq!(id_text.parse::<PublicKey>().unwrap_err().code(), "bad-text");
        assert!(text.parse::<EntryId>().is_err());
        // One changed character breaks the checksum.
        let mut broken: Vec<char> = text.chars().collect();
        let i = broken.len() - 3;
        broken[i] = if broken[i] == 'q' { 'p' } else { 'q' };
        let broken: String = broken.into_iter().collect();
        assert!(broken.parse::<PublicKey>().is_err());
        // Secret keys round-trip.
        let st = sk.to_text();
        assert!(st.starts_with("tlsec1"));
        assert_eq!(SecretKey::from_text(&st).unwrap().public(), pk);
    }

    #[test]
    fn small_order_and_non_canonical_keys_are_rejected() {
        for p in curve25519_dalek::constants::EIGHT_TORSION {
            let bytes = p.compress().to_bytes();
            assert_eq!(
                PublicKey::from_bytes(&bytes).unwrap_err(),
                KeyError::WeakKey,
                "{}",
                hex::encode(bytes)
            );
        }
        // y = p (non-canonical encoding of y = 0).
        let mut y_eq_p = [0xff; 32];
        y_eq_p[0] = 0xed;
        y_eq_p[31] = 0x7f;
        assert_eq!(
            PublicKey::from_bytes(&y_eq_p).unwrap_err(),
            KeyError::NonCanonicalKey
        );
        // A y with no matching x on the curve.
        let mut off = [0u8; 32];
        off[0] = 2;
        assert_eq!(
            PublicKey::from_bytes(&off).unwrap_err(),
            KeyError::InvalidKey
        );
    }
}
