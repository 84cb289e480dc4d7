//! Payload types defined by this version (SPEC.md §5) and JSON conversion.
//!
//! Payload types are open: any type string that passes
//! [`crate::entry::check_payload_type`] is stored and replicated; only the
//! types a node knows are interpreted.

use ciborium::value::{Integer, Value};

use crate::cbor::{self, CborError, FieldError, IntMap};
use crate::limits::{MAX_NOTE_LEN, MAX_PAYLOAD_SIZE};

/// The payload type of a free-text note.
pub const NOTE_TYPE: &str = "tagline/note";

/// A known payload type's body does not follow its definition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error(transparent)]
    Cbor(#[from] CborError),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("note text is {found} bytes, more than the limit of {MAX_NOTE_LEN}")]
    NoteTooLong { found: usize },
    #[error("JSON number {0} is not an integer: Tagline payloads have no floats")]
    JsonFloat(String),
    #[error("JSON null is not allowed in Tagline payloads: leave the key out instead")]
    JsonNull,
}

/// Encodes a `tagline/note` payload: `{0: text}`.
pub fn note(text: &str) -> Vec<u8> {
    let v = Value::Map(vec![(cbor::uint(0), Value::Text(text.to_owned()))]);
    cbor::encode(&v).unwrap_or_default()
}

/// Decodes and checks a `tagline/note` payload, returning its text.
pub fn decode_note(bytes: &[u8]) -> Result<String, PayloadError> {
    const W: &str = "tagline/note";
    let v = cbor::decode(bytes, MAX_PAYLOAD_SIZE as usize)?;
    let mut m = IntMap::from_value(W, v)?;
    let text = m.text(W, 0)?;
    m.finish(W)?;
    if text.len() > MAX_NOTE_LEN {
        return Err(PayloadError::NoteTooLong { found: text.len() });
    }
    Ok(text)
}

/// Checks a payload of a type this version defines. Unknown types pass.
pub fn check_known(payload_type: &str, bytes: &[u8]) -> Result<(), PayloadError> {
    match payload_type {
        NOTE_TYPE => decode_note(bytes).map(|_| ()),
        t if crate::identity::IdentityPayload::is_identity_type(t) => {
            crate::identity::IdentityPayload::decode(t, bytes).map(|_| ())
        }
        crate::mail::MAIL_TYPE => crate::mail::MailRecord::decode(bytes).map(|_| ()),
        t if crate::review::ReviewPayload::is_review_type(t) => {
            crate::review::ReviewPayload::decode(t, bytes).map(|_| ())
        }
        _ => Ok(()),
    }
}

/// Converts JSON to a canonical CBOR value: objects become maps (keys that are
/// canonical decimal integers become integer keys, others text keys), integers
/// stay integers; floats and null are refused.
pub fn from_json(j: &serde_json::Value) -> Result<Value, PayloadError> {
    let mut v = from_json_inner(j)?;
    cbor::canonicalize(&mut v)?;
    Ok(v)
}

fn from_json_inner(j: &serde_json::Value) -> Result<Value, PayloadError> {
    use serde_json::Value as J;
    Ok(match j {
        J::Null => return Err(PayloadError::JsonNull),
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::Integer(Integer::from(u))
            } else if let Some(i) = n.as_i64() {
                Value::Integer(Integer::from(i))
            } else {
                return Err(PayloadError::JsonFloat(n.to_string()));
            }
        }
        J::String(s) => Value::Text(s.clone()),
        J::Array(a) => Value::Array(a.iter().map(from_json_inner).collect::<Result<_, _>>()?),
        J::Object(o) => Value::Map(
            o.iter()
                .map(|(k, v)| {
                    let key = match k.parse::<u64>() {
                        Ok(n) if n.to_string() == *k => cbor::uint(n),
                        _ => Value::Text(k.clone()),
                    };
                    Ok((key, from_json_inner(v)?))
                })
                .collect::<Result<_, PayloadError>>()?,
        ),
    })
}

/// Converts a decoded payload to JSON for display: integer keys become decimal
/// strings, byte strings become `{"$bytes": "<hex>"}`.
pub fn to_json(v: &Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        Value::Integer(i) => {
            let n: i128 = (*i).into();
            if let Ok(u) = u64::try_from(n) {
                J::from(u)
            } else if let Ok(s) = i64::try_from(n) {
                J::from(s)
            } else {
                J::String(n.to_string())
            }
        }
        Value::Bytes(b) => serde_json::json!({ "$bytes": hex::encode(b) }),
        Value::Text(s) => J::String(s.clone()),
        Value::Bool(b) => J::Bool(*b),
        Value::Array(a) => J::Array(a.iter().map(to_json).collect()),
        Value::Map(m) => J::Object(
            m.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Value::Text(s) => s.clone(),
                        Value::Integer(i) => i128::from(*i).to_string(),
                        other => format!("{other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        _ => J::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_round_trip() {
        assert_eq!(decode_note(&note("hello")).unwrap(), "hello");
        assert!(decode_note(&cbor::encode(&cbor::uint(1)).unwrap()).is_err());
    }

    #[test]
    fn json_conversion() {
        let j: serde_json::Value =
            serde_json::from_str(r#"{"b": [1, -2, true], "0": "x", "a": "y"}"#).unwrap();
        let v = from_json(&j).unwrap();
        let bytes = cbor::encode_canonical(&v, 1000).unwrap();
        let back = to_json(&cbor::decode(&bytes, 1000).unwrap());
        assert_eq!(back, j);
        assert!(matches!(
            from_json(&serde_json::json!({"x": 1.5})),
            Err(PayloadError::JsonFloat(_))
        ));
        assert!(matches!(
            from_json(&serde_json::json!([null])),
            Err(PayloadError::JsonNull)
        ));
    }
}
