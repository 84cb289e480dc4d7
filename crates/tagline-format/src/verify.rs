//! Signature verification (SPEC.md §3.2).
//!
//! A signature `(R, S)` by key `A` over message `M` is valid when:
//! 1. `A` passed [`PublicKey::from_bytes`] (canonical, on the curve, not small order);
//! 2. `S < L` (canonical scalar);
//! 3. `R` is a canonical encoding (`y < p`) and not one of the 8 points of small order;
//! 4. `[8]([S]B − R − [k]A) = 0` with `k = SHA-512(R ‖ A ‖ M) mod L`.
//!
//! Every signature an RFC 8032 signer produces also passes ed25519-dalek's
//! `verify_strict`, which single verification tries first. Equation 4 is the
//! cofactored one so that batch verification (random linear combinations, which
//! cannot tell the torsion part apart) and single verification accept exactly the
//! same set: otherwise a key holder could craft an entry that some nodes accept
//! and others reject (see "Security considerations" in SPEC.md).

use std::convert::Infallible;

use ed25519_zebra::{
    Signature as ZSig, VerificationKey as ZKey, VerificationKeyBytes as ZKeyBytes,
};

use crate::keys::{PublicKey, is_canonical_y};

/// Why a signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature scalar S is not below the group order L (non-canonical S)")]
    NonCanonicalS,
    #[error("signature point R is not a canonical encoding")]
    NonCanonicalR,
    #[error("signature point R has small order")]
    SmallOrderR,
    #[error("signature does not verify under the author's key")]
    Invalid,
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::NonCanonicalS => "non-canonical-s",
            SignatureError::NonCanonicalR => "non-canonical-r",
            SignatureError::SmallOrderR => "small-order-r",
            SignatureError::Invalid => "bad-signature",
        }
    }
}

/// The group order L, little-endian.
const L: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

/// The canonical encodings of the 8 points of small order (the 8-torsion
/// subgroup). A test checks this list against curve25519-dalek's.
pub const SMALL_ORDER_POINTS: [[u8; 32]; 8] = [
    hex32("0100000000000000000000000000000000000000000000000000000000000000"),
    hex32("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"),
    hex32("0000000000000000000000000000000000000000000000000000000000000000"),
    hex32("0000000000000000000000000000000000000000000000000000000000000080"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    hex32("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa"),
];

#[allow(
    clippy::indexing_slicing,
    reason = "evaluated at compile time on constants; a bad index fails the build"
)]
const fn hex32(s: &str) -> [u8; 32] {
    const fn nib(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => panic!("bad hex"),
        }
    }
    let b = s.as_bytes();
    assert!(b.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nib(b[2 * i]) << 4) | nib(b[2 * i + 1]);
        i += 1;
    }
    out
}

fn s_is_canonical(s: &[u8; 32]) -> bool {
    // Compare as little-endian integers: S < L.
    for i in (0..32).rev() {
        let (a, b) = (s.get(i), L.get(i));
        if a < b {
            return true;
        }
        if a > b {
            return false;
        }
    }
    false
}

fn split(sig: &[u8; 64]) -> ([u8; 32], [u8; 32]) {
    let mut r = [0u8; 32];
    let mut s = [0u8; 32];
    r.copy_from_slice(sig.get(..32).unwrap_or(&[0; 32]));
    s.copy_from_slice(sig.get(32..).unwrap_or(&[0; 32]));
    (r, s)
}

/// Rules 2 and 3: byte-level checks, no curve arithmetic.
pub fn check_signature_encoding(sig: &[u8; 64]) -> Result<(), SignatureError> {
    let (r, s) = split(sig);
    if !s_is_canonical(&s) {
        return Err(SignatureError::NonCanonicalS);
    }
    if !is_canonical_y(&r) {
        return Err(SignatureError::NonCanonicalR);
    }
    if SMALL_ORDER_POINTS.contains(&r) {
        return Err(SignatureError::SmallOrderR);
    }
    Ok(())
}

/// Verifies one signature under all four rules.
pub fn verify(key: &PublicKey, msg: &[u8], sig: &[u8; 64]) -> Result<(), SignatureError> {
    check_signature_encoding(sig)?;
    let dsig = ed25519_dalek::Signature::from_bytes(sig);
    let vk = key.verifying_key().map_err(|_| SignatureError::Invalid)?;
    if vk.verify_strict(msg, &dsig).is_ok() {
        return Ok(());
    }
    // Not valid under the cofactorless equation; the cofactored one decides
    // (differs only for signatures crafted with a torsion component).
    let zkey = ZKey::try_from(*key.as_bytes()).map_err(|_| SignatureError::Invalid)?;
    zkey.verify(&ZSig::from_bytes(sig), msg)
        .map_err(|_| SignatureError::Invalid)
}

/// A deterministic CSPRNG from a 32-byte seed (blake3 in XOF mode), so callers
/// pass randomness in rather than this crate reaching for the OS.
#[derive(Debug)]
struct SeededRng(blake3::OutputReader);

impl rand_core::TryRng for SeededRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.0.fill(&mut b);
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.0.fill(&mut b);
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}
impl rand_core::TryCryptoRng for SeededRng {}

/// Batch verification of many signatures (SPEC.md §3.2): the same acceptance
/// set as [`verify`], about twice as fast per signature, and faster still when
/// many signatures share a key (as a feed's entries do).
pub struct BatchVerifier<'a> {
    items: Vec<(&'a PublicKey, &'a [u8], [u8; 64])>,
}

impl std::fmt::Debug for BatchVerifier<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchVerifier({} items)", self.items.len())
    }
}

impl<'a> Default for BatchVerifier<'a> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> BatchVerifier<'a> {
    pub fn new() -> Self {
        BatchVerifier { items: Vec::new() }
    }

    pub fn with_capacity(n: usize) -> Self {
        BatchVerifier {
            items: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn push(&mut self, key: &'a PublicKey, msg: &'a [u8], sig: [u8; 64]) {
        self.items.push((key, msg, sig));
    }

    /// Verifies every queued signature. `seed` must be fresh randomness that
    /// the signers cannot predict. On failure returns, for each item in order,
    /// its own result (found by verifying the items one by one).
    pub fn verify(self, seed: [u8; 32]) -> Result<(), Vec<Result<(), SignatureError>>> {
        let mut encoding_ok = true;
        let mut batch = ed25519_zebra::batch::Verifier::new();
        for (key, msg, sig) in &self.items {
            if check_signature_encoding(sig).is_err() {
                encoding_ok = false;
                break;
            }
            batch.queue((
                ZKeyBytes::from(*key.as_bytes()),
                ZSig::from_bytes(sig),
                *msg,
            ));
        }
        if encoding_ok {
            let rng = SeededRng(blake3::Hasher::new_keyed(&seed).finalize_xof());
            if batch.verify(rng).is_ok() {
                return Ok(());
            }
        }
        Err(self.items.iter().map(|(k, m, s)| verify(k, m, s)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    #[test]
    fn small_order_list_matches_dalek() {
        let mut ours: Vec<[u8; 32]> = SMALL_ORDER_POINTS.to_vec();
        let mut theirs: Vec<[u8; 32]> = curve25519_dalek::constants::EIGHT_TORSION
            .iter()
            .map(|p| p.compress().to_bytes())
            .collect();
        ours.sort();
        theirs.sort();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn s_comparison() {
        assert!(!s_is_canonical(&L));
        let mut below = L;
        below[0] -= 1;
        assert!(s_is_canonical(&below));
        assert!(s_is_canonical(&[0; 32]));
        assert!(!s_is_canonical(&[0xff; 32]));
    }

    #[test]
    fn batch_agrees_with_single() {
        let keys: Vec<SecretKey> = (0..4u8).map(|i| SecretKey::from_seed(&[i; 32])).collect();
        let pubs: Vec<PublicKey> = keys.iter().map(|k| k.public()).collect();
        let msgs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 40]).collect();
        let sigs: Vec<[u8; 64]> = msgs
            .iter()
            .enumerate()
            .map(|(i, m)| keys[i % 4].sign(m))
            .collect();
        let mut b = BatchVerifier::new();
        for (i, m) in msgs.iter().enumerate() {
            b.push(&pubs[i % 4], m, sigs[i]);
        }
        b.verify([1; 32]).unwrap();

        let mut bad = sigs.clone();
        bad[5][40] ^= 1;
        let mut b = BatchVerifier::new();
        for (i, m) in msgs.iter().enumerate() {
            b.push(&pubs[i % 4], m, bad[i]);
        }
        let results = b.verify([2; 32]).unwrap_err();
        for (i, r) in results.iter().enumerate() {
            assert_eq!(r.is_err(), i == 5);
        }
    }

    #[test]
    fn s_plus_l_is_rejected() {
        let k = SecretKey::from_seed(&[9; 32]);
        let mut sig = k.sign(b"hello");
        // S + L: the same residue, a different (non-canonical) encoding.
        let mut carry = 0u16;
        for i in 0..32 {
            let v = u16::from(sig[32 + i]) + u16::from(L[i]) + carry;
            sig[32 + i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(
            verify(&k.public(), b"hello", &sig),
            Err(SignatureError::NonCanonicalS)
        );
    }
}
