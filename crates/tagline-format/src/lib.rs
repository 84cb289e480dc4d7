//! Tagline protocol v1: the signed feed format.
//!
//! Everything here is pure: no I/O, no clock, no randomness of its own. Time
//! (`now_ms`) and randomness (batch-verification seeds) are parameters.
//! `protocol/SPEC.md` is the normative description; section numbers in the
//! docs below refer to it.
//!
//! A feed is the append-only log of one ed25519 key. Each [`entry::Entry`] is a
//! signed header (canonical CBOR, see [`cbor`]) that commits to a payload by
//! size and blake3 hash, chained by backlinks and [`lipmaa`] skip links.

pub mod cbor;
pub mod entry;
pub mod feed;
#[doc(hidden)]
pub mod fuzzing;
pub mod identity;
pub mod keys;
pub mod limits;
pub mod lipmaa;
pub mod mail;
pub mod payload;
pub mod review;
pub mod stream;
pub mod verify;

pub use entry::{Entry, EntryError, Head, Header, SignedHeader, check_payload, create_entry};
pub use feed::{
    FeedError, ForkProof, ForkProofError, ValidationError, VerifiedIds, check_signatures,
    validate_next, validate_received, verify_run, verify_run_with,
};
pub use keys::{EntryId, KeyError, PayloadHash, PublicKey, SecretKey};
