//! The export stream: a feed (or several) as a file of signed entries, for
//! offline transfer (SPEC.md §6). Pure framing; the reader and writer live at
//! the edges.
//!
//! ```text
//! stream  = MAGIC record*
//! record  = u32 big-endian length ‖ CBOR [bstr signed_header, ? bstr payload]
//! ```

use ciborium::value::Value;

use crate::cbor::{self, ByteBuf, Bytes, CborError};
use crate::entry::{Entry, EntryError, SignedHeader};
use crate::limits::MAX_STREAM_RECORD_SIZE;

/// The first 8 bytes of an export stream.
pub const STREAM_MAGIC: &[u8; 8] = b"TLFEED\x00\x01";

/// A stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("not a Tagline export stream: expected the magic bytes {expected:?}, found {found:?}")]
    BadMagic { expected: String, found: String },
    #[error("record {index}: length {found} exceeds the limit of {MAX_STREAM_RECORD_SIZE} bytes")]
    RecordTooLarge { index: u64, found: u64 },
    #[error("record {index}: {source}")]
    Cbor {
        index: u64,
        #[source]
        source: CborError,
    },
    #[error("record {index}: expected [signed header, optional payload], found another shape")]
    Shape { index: u64 },
    #[error("record {index}: {source}")]
    Entry {
        index: u64,
        #[source]
        source: EntryError,
    },
    #[error("stream ends inside record {index}")]
    Truncated { index: u64 },
}

/// Checks the magic bytes.
pub fn check_magic(first: &[u8]) -> Result<(), StreamError> {
    if first == STREAM_MAGIC {
        Ok(())
    } else {
        Err(StreamError::BadMagic {
            expected: String::from_utf8_lossy(STREAM_MAGIC).into_owned(),
            found: String::from_utf8_lossy(first).into_owned(),
        })
    }
}

/// Reads a record length prefix and checks it against the limit before the
/// caller allocates for the record.
pub fn record_len(prefix: [u8; 4], index: u64) -> Result<usize, StreamError> {
    let n = u64::from(u32::from_be_bytes(prefix));
    if n > MAX_STREAM_RECORD_SIZE as u64 {
        return Err(StreamError::RecordTooLarge { index, found: n });
    }
    usize::try_from(n).map_err(|_| StreamError::RecordTooLarge { index, found: n })
}

/// Encodes one record with its length prefix.
pub fn encode_record(signed_header: &[u8], payload: Option<&[u8]>) -> Vec<u8> {
    let mut items = vec![Value::Bytes(signed_header.to_vec())];
    if let Some(p) = payload {
        items.push(Value::Bytes(p.to_vec()));
    }
    let body = cbor::encode(&Value::Array(items)).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Decodes a record body (without the length prefix). The signature is not
/// verified here and the payload is not checked against the header: the
/// caller batches those.
pub fn decode_record(body: &[u8], index: u64) -> Result<Entry, StreamError> {
    let record: Record =
        cbor::decode_typed(body, MAX_STREAM_RECORD_SIZE).map_err(|source| match source {
            CborError::Parse(_) => StreamError::Shape { index },
            source => StreamError::Cbor { index, source },
        })?;
    let check = match &record.payload {
        Some(p) => cbor::same_as_reencoding(&(Bytes(&record.signed.0), Bytes(&p.0)), body),
        None => cbor::same_as_reencoding(&(Bytes(&record.signed.0),), body),
    };
    check.map_err(|source| StreamError::Cbor { index, source })?;
    let signed = SignedHeader::decode(record.signed.0)
        .map_err(|source| StreamError::Entry { index, source })?;
    Ok(Entry {
        signed,
        payload: record.payload.map(|p| p.0),
    })
}

/// A record body: `[signed_header]` or `[signed_header, payload]`.
struct Record {
    signed: ByteBuf,
    payload: Option<ByteBuf>,
}

impl<'de> serde::Deserialize<'de> for Record {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Record;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("[signed header, optional payload]")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Record, A::Error> {
                let signed: ByteBuf = seq
                    .next_element()?
                    .ok_or_else(|| serde::de::Error::invalid_length(0, &self))?;
                let payload: Option<ByteBuf> = seq.next_element()?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(serde::de::Error::invalid_length(3, &self));
                }
                Ok(Record { signed, payload })
            }
        }
        d.deserialize_seq(V)
    }
}

/// Splits a whole in-memory stream into entries (for tests and small files).
pub fn decode_all(bytes: &[u8]) -> Result<Vec<Entry>, StreamError> {
    let magic = bytes.get(..STREAM_MAGIC.len()).unwrap_or(bytes);
    check_magic(magic)?;
    let mut pos = STREAM_MAGIC.len();
    let mut out = Vec::new();
    let mut index = 0u64;
    while pos < bytes.len() {
        let prefix = bytes
            .get(pos..pos + 4)
            .and_then(|p| <[u8; 4]>::try_from(p).ok())
            .ok_or(StreamError::Truncated { index })?;
        let n = record_len(prefix, index)?;
        let body = bytes
            .get(pos + 4..pos + 4 + n)
            .ok_or(StreamError::Truncated { index })?;
        out.push(decode_record(body, index)?);
        pos += 4 + n;
        index += 1;
    }
    Ok(out)
}
