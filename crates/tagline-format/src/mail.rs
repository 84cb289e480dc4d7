//! `tagline/mail` (SPEC.md §15): one list mail as an email bridge received
//! it, with its provenance. The bridge's interpretation of the mail (a
//! revision, a review) is written as separate review payloads that name the
//! mail by Message-ID; this record keeps the mail itself, so that it can be
//! read again by a later version of the bridge.

use ciborium::value::Value;

use crate::cbor::{self, IntMap, uint};
use crate::limits::MAX_PAYLOAD_SIZE;
use crate::payload::PayloadError;
use crate::review::{MAX_LIST, MAX_SHORT_TEXT};

pub const MAIL_TYPE: &str = "tagline/mail";

/// Largest raw mail kept inside the record; a larger one is recorded by
/// its hash alone. Leaves room for the headers copied beside it.
pub const MAX_RAW_MAIL: usize = MAX_PAYLOAD_SIZE as usize - 1024 * 1024;

/// What a bridge found when it checked a mail's DKIM signatures for the
/// `From:` address's domain (RFC 8601's words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dkim {
    /// `pass`, `fail`, `neutral`, `none`, `temperror`, `permerror`.
    pub result: String,
    /// The signing domain (`d=`) of the signature that decided it.
    pub domain: Option<String>,
    /// Why, in words (the verifier's error), when it did not pass.
    pub detail: Option<String>,
}

/// A mail as bridged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailRecord {
    pub message_id: String,
    /// `Name <address>` as the `From:` header gave it (decoded).
    pub from: String,
    /// The `Date:` header in seconds since the epoch, when it parses and is
    /// not before 1970.
    pub date: Option<u64>,
    /// The subject as sent (decoded, unfolded).
    pub subject: String,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// The list it came through (its posting address), when known.
    pub list: Option<String>,
    /// blake3 of the raw message, as received.
    pub raw_hash: [u8; 32],
    /// The raw message, when at most [`MAX_RAW_MAIL`] bytes.
    pub raw: Option<Vec<u8>>,
    pub dkim: Dkim,
    /// What the bridge read it as: `patch`, `cover`, `reply`,
    /// `pull-request`, `applied`, `merged`, `ci-report`, `other`.
    pub kind: String,
}

fn text(t: &str) -> Value {
    Value::Text(t.to_owned())
}

fn opt(k: u64, v: Option<Value>) -> Option<(Value, Value)> {
    v.map(|v| (uint(k), v))
}

impl MailRecord {
    /// Canonical CBOR bytes.
    pub fn encode(&self) -> Vec<u8> {
        let texts = |v: &[String]| Value::Array(v.iter().map(|s| text(s)).collect());
        let dkim = Value::Map(
            [
                opt(0, Some(text(&self.dkim.result))),
                opt(1, self.dkim.domain.as_deref().map(text)),
                opt(2, self.dkim.detail.as_deref().map(text)),
            ]
            .into_iter()
            .flatten()
            .collect(),
        );
        let v = Value::Map(
            [
                opt(0, Some(text(&self.message_id))),
                opt(1, Some(text(&self.from))),
                opt(2, self.date.map(uint)),
                opt(3, Some(text(&self.subject))),
                opt(4, Some(texts(&self.in_reply_to))),
                opt(5, Some(texts(&self.references))),
                opt(6, self.list.as_deref().map(text)),
                opt(7, Some(Value::Bytes(self.raw_hash.to_vec()))),
                opt(8, self.raw.as_ref().map(|r| Value::Bytes(r.clone()))),
                opt(9, Some(dkim)),
                opt(10, Some(text(&self.kind))),
            ]
            .into_iter()
            .flatten()
            .collect(),
        );
        cbor::encode(&v).unwrap_or_default()
    }

    /// Decodes and checks a `tagline/mail` payload. A record whose raw
    /// message does not hash to its `raw_hash` is refused.
    pub fn decode(data: &[u8]) -> Result<MailRecord, PayloadError> {
        const W: &str = MAIL_TYPE;
        let v = cbor::decode(data, MAX_PAYLOAD_SIZE as usize)?;
        let mut m = IntMap::from_value(W, v)?;
        let invalid = |key: u64, detail: String| -> PayloadError {
            cbor::FieldError::Invalid {
                what: W,
                detail: format!("field {key}: {detail}"),
            }
            .into()
        };
        let short = |v: Value, key: u64| -> Result<String, PayloadError> {
            let s = cbor::as_text(W, key, v)?;
            if s.len() > MAX_SHORT_TEXT {
                return Err(invalid(
                    key,
                    format!("{} bytes, more than {MAX_SHORT_TEXT}", s.len()),
                ));
            }
            Ok(s)
        };
        let list = |v: Value, key: u64| -> Result<Vec<String>, PayloadError> {
            match v {
                Value::Array(items) if items.len() <= MAX_LIST => {
                    items.into_iter().map(|v| short(v, key)).collect()
                }
                other => Err(invalid(
                    key,
                    format!(
                        "expected an array of at most {MAX_LIST} texts, found {}",
                        cbor::kind(&other)
                    ),
                )),
            }
        };
        let message_id = short(m.req(W, 0)?, 0)?;
        let from = short(m.req(W, 1)?, 1)?;
        let date = m.take(2).map(|v| cbor::as_uint(W, 2, v)).transpose()?;
        let subject = short(m.req(W, 3)?, 3)?;
        let in_reply_to = list(m.req(W, 4)?, 4)?;
        let references = list(m.req(W, 5)?, 5)?;
        let list_addr = m.take(6).map(|v| short(v, 6)).transpose()?;
        let raw_hash = m.bytes32(W, 7)?;
        let raw = match m.take(8) {
            None => None,
            Some(Value::Bytes(b)) => {
                if b.len() > MAX_RAW_MAIL {
                    return Err(invalid(
                        8,
                        format!("{} bytes, more than {MAX_RAW_MAIL}", b.len()),
                    ));
                }
                if *blake3::hash(&b).as_bytes() != raw_hash {
                    return Err(invalid(
                        8,
                        "the raw message does not hash to field 7".to_string(),
                    ));
                }
                Some(b)
            }
            Some(other) => {
                return Err(invalid(
                    8,
                    format!("expected a byte string, found {}", cbor::kind(&other)),
                ));
            }
        };
        let mut d = IntMap::from_value(W, m.req(W, 9)?)?;
        let dkim = Dkim {
            result: short(d.req(W, 0)?, 9)?,
            domain: d.take(1).map(|v| short(v, 9)).transpose()?,
            detail: d.take(2).map(|v| short(v, 9)).transpose()?,
        };
        d.finish(W)?;
        let kind = short(m.req(W, 10)?, 10)?;
        m.finish(W)?;
        if message_id.is_empty() {
            return Err(invalid(0, "an empty Message-ID".to_string()));
        }
        Ok(MailRecord {
            message_id,
            from,
            date,
            subject,
            in_reply_to,
            references,
            list: list_addr,
            raw_hash,
            raw,
            dkim,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> MailRecord {
        let raw = b"From: Ada <ada@example.org>\r\nSubject: hi\r\n\r\nbody\r\n".to_vec();
        MailRecord {
            message_id: "1@example.org".into(),
            from: "Ada <ada@example.org>".into(),
            date: Some(1_700_000_000),
            subject: "hi".into(),
            in_reply_to: vec![],
            references: vec![],
            list: Some("dev@lists.example.org".into()),
            raw_hash: *blake3::hash(&raw).as_bytes(),
            raw: Some(raw),
            dkim: Dkim {
                result: "none".into(),
                domain: None,
                detail: None,
            },
            kind: "other".into(),
        }
    }

    #[test]
    fn round_trip_and_hash_check() {
        let r = sample();
        let bytes = r.encode();
        crate::cbor::check_canonical(&bytes, bytes.len()).unwrap();
        assert_eq!(MailRecord::decode(&bytes).unwrap(), r);
        let mut bad = r.clone();
        bad.raw_hash = [0; 32];
        assert!(MailRecord::decode(&bad.encode()).is_err());
        let mut no_raw = r;
        no_raw.raw = None;
        assert_eq!(MailRecord::decode(&no_raw.encode()).unwrap(), no_raw);
    }
}
