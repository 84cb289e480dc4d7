//! Every limit of protocol v1, as named constants. `protocol/SPEC.md` §Limits
//! lists the same values; the `limits_match_spec` test keeps the two in step.

/// The only header format version this implementation reads and writes.
pub const FORMAT_VERSION: u64 = 1;

/// Largest encoded header (the CBOR map that is signed), in bytes.
/// A typical header is about 190 bytes; the rest is room for extensions.
pub const MAX_HEADER_SIZE: usize = 1024;

/// Largest encoded signed header: `[header bstr, signature bstr]`.
/// 1 (array head) + 3 (bstr head) + header + 2 (bstr head) + 64.
pub const MAX_SIGNED_HEADER_SIZE: usize = MAX_HEADER_SIZE + 70;

/// Largest payload, in bytes (16 MiB). A 100-patch series of ordinary kernel
/// patches (median ~4 KiB, long tail to a few hundred KiB) fits with a wide
/// margin. An author's node refuses to create an entry above it
/// (`PayloadTooLarge`); receivers reject such headers before fetching the payload.
pub const MAX_PAYLOAD_SIZE: u64 = 16 * 1024 * 1024;

/// Longest payload type string, in bytes.
pub const MAX_PAYLOAD_TYPE_LEN: usize = 64;

/// Deepest nesting of arrays and maps in any CBOR item (the top level is depth 1).
pub const MAX_DEPTH: usize = 16;

/// Most elements in one array, or pairs in one map.
pub const MAX_COLLECTION_LEN: u64 = 65_536;

/// Longest text string inside a `tagline/note` payload, in bytes.
pub const MAX_NOTE_LEN: usize = 64 * 1024;

/// Highest sequence number: 2^53 - 1, so that every sequence number is exactly
/// representable in JSON and JavaScript numbers.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// How far an entry's timestamp may lie in the future of the receiver's clock
/// (10 minutes, in milliseconds). Beyond that the entry is refused for now
/// (`TimestampInFuture`) and may be offered again later.
pub const MAX_FUTURE_SKEW_MS: u64 = 10 * 60 * 1000;

/// Largest record in an export stream: a signed header plus a full payload plus framing.
pub const MAX_STREAM_RECORD_SIZE: usize = MAX_SIGNED_HEADER_SIZE + MAX_PAYLOAD_SIZE as usize + 16;

/// Signatures verified together in one batch by [`crate::verify::BatchVerifier`] users.
pub const VERIFY_BATCH_SIZE: usize = 64;
