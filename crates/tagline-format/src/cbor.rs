//! The canonical CBOR profile of protocol v1 (SPEC.md §2).
//!
//! Encoding goes through serde with ciborium. Decoding into a [`Value`]
//! ([`decode`]) is one pass of this module's own scanner: it rejects anything
//! outside the profile with a precise, typed error before allocating for it
//! (every length is checked against the bytes that remain) and builds the
//! value as it goes. The profile admits exactly one encoding per value, so
//! the value re-encodes to the input (a property test and the fuzz target
//! check this). Typed decoding through serde ([`decode_typed`]) checks the
//! profile first and the caller compares its re-encoding
//! ([`same_as_reencoding`]), since serde may skip or coerce fields.
//!
//! Callers hash and verify the bytes they received, never a re-encoding.

use ciborium::value::{Integer, Value};

use crate::limits::{MAX_COLLECTION_LEN, MAX_DEPTH};

/// A violation of the canonical CBOR profile. `offset` is the byte offset of
/// the offending item's head in the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    #[error("CBOR input of {found} bytes exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize, found: usize },
    #[error("CBOR input ends early at byte {offset}: expected {needed} more bytes")]
    Truncated { offset: usize, needed: u64 },
    #[error(
        "CBOR item ends at byte {end} but the input has {len} bytes: trailing bytes are not allowed"
    )]
    TrailingBytes { end: usize, len: usize },
    #[error(
        "CBOR head at byte {offset} uses a longer form than needed for value {value}: shortest form required"
    )]
    NonShortestInteger { offset: usize, value: u64 },
    #[error("CBOR item at byte {offset} has an indefinite length: definite lengths required")]
    IndefiniteLength { offset: usize },
    #[error("CBOR item at byte {offset} is a floating-point number: floats are not allowed")]
    Float { offset: usize },
    #[error("CBOR item at byte {offset} is a tag ({tag}): tags are not allowed")]
    Tag { offset: usize, tag: u64 },
    #[error("CBOR item at byte {offset} is simple value {value}: only false and true are allowed")]
    SimpleValue { offset: usize, value: u64 },
    #[error("CBOR head at byte {offset} has reserved additional information {info}")]
    Reserved { offset: usize, info: u8 },
    #[error(
        "CBOR map key at byte {offset} sorts before or equal to the previous key: keys must be in ascending bytewise order"
    )]
    UnsortedKeys { offset: usize },
    #[error("CBOR map key at byte {offset} repeats the previous key")]
    DuplicateKey { offset: usize },
    #[error(
        "CBOR map key at byte {offset} has major type {major}: only unsigned integers and text strings are allowed"
    )]
    InvalidKeyType { offset: usize, major: u8 },
    #[error("CBOR text string at byte {offset} is not valid UTF-8")]
    InvalidUtf8 { offset: usize },
    #[error("CBOR nesting at byte {offset} exceeds the depth limit of {limit}")]
    TooDeep { offset: usize, limit: usize },
    #[error(
        "CBOR collection at byte {offset} has {found} elements, more than the limit of {limit}"
    )]
    TooManyItems {
        offset: usize,
        limit: u64,
        found: u64,
    },
    #[error("CBOR parser failed: {0}")]
    Parse(String),
    #[error("CBOR input differs from its canonical re-encoding")]
    NotCanonical,
    #[error("CBOR encoding failed: {0}")]
    Encode(String),
}

impl CborError {
    /// Stable, language-neutral error code used in `protocol/vectors`.
    pub fn code(&self) -> &'static str {
        match self {
            CborError::TooLarge { .. } => "too-large",
            CborError::Truncated { .. } => "truncated",
            CborError::TrailingBytes { .. } => "trailing-bytes",
            CborError::NonShortestInteger { .. } => "non-shortest-integer",
            CborError::IndefiniteLength { .. } => "indefinite-length",
            CborError::Float { .. } => "float",
            CborError::Tag { .. } => "tag",
            CborError::SimpleValue { .. } => "simple-value",
            CborError::Reserved { .. } => "malformed",
            CborError::UnsortedKeys { .. } => "unsorted-keys",
            CborError::DuplicateKey { .. } => "duplicate-key",
            CborError::InvalidKeyType { .. } => "invalid-key-type",
            CborError::InvalidUtf8 { .. } => "invalid-utf8",
            CborError::TooDeep { .. } => "too-deep",
            CborError::TooManyItems { .. } => "too-many-items",
            CborError::Parse(_) => "malformed",
            CborError::NotCanonical => "not-canonical",
            CborError::Encode(_) => "encode",
        }
    }
}

struct Head {
    major: u8,
    info: u8,
    /// The argument; for indefinite lengths (info 31) unused.
    arg: u64,
}

#[derive(Debug)]
struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Accept `null` (simple value 22): only for local caches, never on the wire.
    allow_null: bool,
}

impl<'a> Scanner<'a> {
    fn new(buf: &'a [u8], allow_null: bool) -> Scanner<'a> {
        Scanner {
            buf,
            pos: 0,
            allow_null,
        }
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CborError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or(CborError::Truncated {
                offset: self.pos,
                needed: (n - self.remaining().min(n)) as u64,
            })?;
        let s = self.buf.get(self.pos..end).ok_or(CborError::Truncated {
            offset: self.pos,
            needed: n as u64,
        })?;
        self.pos = end;
        Ok(s)
    }

    fn head(&mut self) -> Result<Head, CborError> {
        let offset = self.pos;
        let ib = *self
            .take(1)?
            .first()
            .ok_or(CborError::Truncated { offset, needed: 1 })?;
        let major = ib >> 5;
        let info = ib & 0x1f;
        let (arg, min) = match info {
            0..=23 => (u64::from(info), 0),
            24 => (self.be(1)?, 24),
            25 => (self.be(2)?, 0x100),
            26 => (self.be(4)?, 0x1_0000),
            27 => (self.be(8)?, 0x1_0000_0000),
            28..=30 => return Err(CborError::Reserved { offset, info }),
            _ => {
                return match major {
                    2..=5 => Err(CborError::IndefiniteLength { offset }),
                    7 => Err(CborError::Parse(format!(
                        "unexpected break at byte {offset}"
                    ))),
                    _ => Err(CborError::Reserved { offset, info }),
                };
            }
        };
        // Floats (major 7, info 25..27) are not integers: report them as floats
        // before checking the shortest form.
        if major == 7 && (25..=27).contains(&info) {
            return Err(CborError::Float { offset });
        }
        if arg < min {
            return Err(CborError::NonShortestInteger { offset, value: arg });
        }
        Ok(Head { major, info, arg })
    }

    fn be(&mut self, n: usize) -> Result<u64, CborError> {
        let bytes = self.take(n)?;
        Ok(bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn len_checked(&self, arg: u64, offset: usize) -> Result<usize, CborError> {
        if arg > self.remaining() as u64 {
            return Err(CborError::Truncated {
                offset,
                needed: arg - self.remaining() as u64,
            });
        }
        usize::try_from(arg).map_err(|_| CborError::Truncated {
            offset,
            needed: arg,
        })
    }

    fn item(&mut self, depth: usize) -> Result<(), CborError> {
        self.node::<false>(depth).map(|_| ())
    }

    /// Scans one item; when `BUILD`, also returns it as a [`Value`] (else
    /// `None`, allocating nothing). Every check happens before the
    /// allocation it guards.
    fn node<const BUILD: bool>(&mut self, depth: usize) -> Result<Option<Value>, CborError> {
        let offset = self.pos;
        let head = self.head()?;
        match head.major {
            0 => Ok(BUILD.then(|| Value::Integer(head.arg.into()))),
            1 => Ok(if BUILD {
                let n = Integer::try_from(-1 - i128::from(head.arg))
                    .map_err(|e| CborError::Parse(e.to_string()))?;
                Some(Value::Integer(n))
            } else {
                None
            }),
            2 => {
                let n = self.len_checked(head.arg, offset)?;
                let b = self.take(n)?;
                Ok(BUILD.then(|| Value::Bytes(b.to_vec())))
            }
            3 => {
                let n = self.len_checked(head.arg, offset)?;
                let s = self.take(n)?;
                let t = std::str::from_utf8(s).map_err(|_| CborError::InvalidUtf8 { offset })?;
                Ok(BUILD.then(|| Value::Text(t.to_owned())))
            }
            4 | 5 => {
                if depth >= MAX_DEPTH {
                    return Err(CborError::TooDeep {
                        offset,
                        limit: MAX_DEPTH,
                    });
                }
                if head.arg > MAX_COLLECTION_LEN {
                    return Err(CborError::TooManyItems {
                        offset,
                        limit: MAX_COLLECTION_LEN,
                        found: head.arg,
                    });
                }
                let items = if head.major == 5 {
                    head.arg * 2
                } else {
                    head.arg
                };
                // Every item takes at least one byte: refuse impossible counts
                // early (this also bounds the capacity reserved below).
                if items > self.remaining() as u64 {
                    return Err(CborError::Truncated {
                        offset,
                        needed: items - self.remaining() as u64,
                    });
                }
                let count = usize::try_from(head.arg).unwrap_or(0);
                if head.major == 4 {
                    let mut out = Vec::with_capacity(if BUILD { count } else { 0 });
                    for _ in 0..head.arg {
                        if let Some(v) = self.node::<BUILD>(depth + 1)? {
                            out.push(v);
                        }
                    }
                    Ok(BUILD.then_some(Value::Array(out)))
                } else {
                    let mut out = Vec::with_capacity(if BUILD { count } else { 0 });
                    let mut prev: Option<&[u8]> = None;
                    for _ in 0..head.arg {
                        let key_start = self.pos;
                        let key_major = self.buf.get(key_start).map(|b| b >> 5).unwrap_or(0);
                        if key_major != 0 && key_major != 3 {
                            // Report tags and floats as such, not as bad keys.
                            if key_major == 6 || key_major == 7 {
                                self.item(depth + 1)?;
                            }
                            return Err(CborError::InvalidKeyType {
                                offset: key_start,
                                major: key_major,
                            });
                        }
                        let k = self.node::<BUILD>(depth + 1)?;
                        let key = self.buf.get(key_start..self.pos).unwrap_or_default();
                        if let Some(p) = prev {
                            match p.cmp(key) {
                                std::cmp::Ordering::Less => {}
                                std::cmp::Ordering::Equal => {
                                    return Err(CborError::DuplicateKey { offset: key_start });
                                }
                                std::cmp::Ordering::Greater => {
                                    return Err(CborError::UnsortedKeys { offset: key_start });
                                }
                            }
                        }
                        prev = Some(key);
                        let v = self.node::<BUILD>(depth + 1)?;
                        if let (Some(k), Some(v)) = (k, v) {
                            out.push((k, v));
                        }
                    }
                    Ok(BUILD.then_some(Value::Map(out)))
                }
            }
            6 => Err(CborError::Tag {
                offset,
                tag: head.arg,
            }),
            _ => match head.info {
                20 => Ok(BUILD.then_some(Value::Bool(false))),
                21 => Ok(BUILD.then_some(Value::Bool(true))),
                22 if self.allow_null => Ok(BUILD.then_some(Value::Null)),
                _ => Err(CborError::SimpleValue {
                    offset,
                    value: head.arg,
                }),
            },
        }
    }
}

/// Checks that `bytes` is exactly one item of the canonical profile and at most
/// `limit` bytes long. Allocates nothing.
pub fn check_canonical(bytes: &[u8], limit: usize) -> Result<(), CborError> {
    scan::<false>(bytes, limit, false).map(|_| ())
}

/// Scans exactly one item filling `bytes`, of at most `limit` bytes.
fn scan<const BUILD: bool>(
    bytes: &[u8],
    limit: usize,
    allow_null: bool,
) -> Result<Option<Value>, CborError> {
    if bytes.len() > limit {
        return Err(CborError::TooLarge {
            limit,
            found: bytes.len(),
        });
    }
    let mut s = Scanner::new(bytes, allow_null);
    let v = s.node::<BUILD>(0)?;
    if s.pos != bytes.len() {
        return Err(CborError::TrailingBytes {
            end: s.pos,
            len: bytes.len(),
        });
    }
    Ok(v)
}

/// Decodes one canonical item of at most `limit` bytes in one pass: the
/// profile check and the parse are the same walk.
pub fn decode(bytes: &[u8], limit: usize) -> Result<Value, CborError> {
    scan::<true>(bytes, limit, false)?.ok_or(CborError::NotCanonical)
}

/// Decodes a local cache's bytes: the canonical profile plus `null`. Never
/// for bytes from the wire, where `null` is not part of the profile.
pub fn decode_local(bytes: &[u8]) -> Result<Value, CborError> {
    scan::<true>(bytes, usize::MAX, true)?.ok_or(CborError::NotCanonical)
}

/// A pull reader for local caches written by this code base (arrays of
/// integers, strings, byte strings, booleans and `null`): reads items in
/// order without building a [`Value`] tree. Heads are checked as
/// [`decode`] checks them (shortest form, lengths within the input).
#[derive(Debug)]
pub struct Pull<'a> {
    s: Scanner<'a>,
}

impl<'a> Pull<'a> {
    /// A reader for a local cache: `null` is accepted.
    pub fn new(bytes: &'a [u8]) -> Pull<'a> {
        Pull {
            s: Scanner::new(bytes, true),
        }
    }

    /// A reader for bytes from the wire: the canonical profile only (no
    /// `null`). Reading positional arrays of integers and strings this way
    /// accepts exactly their canonical encoding.
    pub fn strict(bytes: &'a [u8]) -> Pull<'a> {
        Pull {
            s: Scanner::new(bytes, false),
        }
    }

    fn expect(&mut self, major: u8, what: &str) -> Result<Head, CborError> {
        let offset = self.s.pos;
        let head = self.s.head()?;
        if head.major != major {
            return Err(CborError::Parse(format!(
                "expected {what} at byte {offset}, found major type {}",
                head.major
            )));
        }
        Ok(head)
    }

    /// An array's length. Each element takes at least one byte, so the
    /// length is bounded by the input.
    pub fn array(&mut self) -> Result<usize, CborError> {
        let offset = self.s.pos;
        let head = self.expect(4, "an array")?;
        self.s.len_checked(head.arg, offset)
    }

    pub fn uint(&mut self) -> Result<u64, CborError> {
        Ok(self.expect(0, "an unsigned integer")?.arg)
    }

    fn is_null(&mut self) -> bool {
        if self.s.allow_null && self.s.buf.get(self.s.pos) == Some(&0xf6) {
            self.s.pos += 1;
            true
        } else {
            false
        }
    }

    /// `null` or an unsigned integer.
    pub fn opt_uint(&mut self) -> Result<Option<u64>, CborError> {
        if self.is_null() {
            return Ok(None);
        }
        self.uint().map(Some)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let offset = self.s.pos;
        let head = self.expect(2, "a byte string")?;
        let n = self.s.len_checked(head.arg, offset)?;
        self.s.take(n)
    }

    pub fn text(&mut self) -> Result<&'a str, CborError> {
        let offset = self.s.pos;
        let head = self.expect(3, "a text string")?;
        let n = self.s.len_checked(head.arg, offset)?;
        std::str::from_utf8(self.s.take(n)?).map_err(|_| CborError::InvalidUtf8 { offset })
    }

    /// `null` or a text string.
    pub fn opt_text(&mut self) -> Result<Option<&'a str>, CborError> {
        if self.is_null() {
            return Ok(None);
        }
        self.text().map(Some)
    }

    pub fn bool(&mut self) -> Result<bool, CborError> {
        let offset = self.s.pos;
        match self.s.head()? {
            Head {
                major: 7, info: 20, ..
            } => Ok(false),
            Head {
                major: 7, info: 21, ..
            } => Ok(true),
            _ => Err(CborError::Parse(format!(
                "expected a boolean at byte {offset}"
            ))),
        }
    }

    /// Checks that the input is used up.
    pub fn finish(&self) -> Result<(), CborError> {
        if self.s.pos != self.s.buf.len() {
            return Err(CborError::TrailingBytes {
                end: self.s.pos,
                len: self.s.buf.len(),
            });
        }
        Ok(())
    }
}

/// Canonical heads written straight into a buffer: the counterpart of
/// [`Pull`] for positional arrays of integers and strings (the sync
/// protocol's messages), without building a [`Value`] or copying payloads
/// into one.
pub mod write {
    /// A head of major type `major` with argument `n`, in the shortest form.
    pub fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            out.push(m | n as u8);
        } else if n <= 0xff {
            out.extend_from_slice(&[m | 24, n as u8]);
        } else if n <= 0xffff {
            out.push(m | 25);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(m | 26);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        } else {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    pub fn uint(out: &mut Vec<u8>, n: u64) {
        head(out, 0, n);
    }
    pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
        head(out, 2, b.len() as u64);
        out.extend_from_slice(b);
    }
    pub fn text(out: &mut Vec<u8>, t: &str) {
        head(out, 3, t.len() as u64);
        out.extend_from_slice(t.as_bytes());
    }
    /// The head of an array of `n` items (written next by the caller).
    pub fn array(out: &mut Vec<u8>, n: usize) {
        head(out, 4, n as u64);
    }
}

/// Encodes a value. The caller builds values in canonical form (sorted map keys,
/// no floats, no tags); [`encode_canonical`] also checks the result.
pub fn encode(value: &Value) -> Result<Vec<u8>, CborError> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).map_err(|e| CborError::Encode(e.to_string()))?;
    Ok(out)
}

/// Encodes a value and checks that the result is in the canonical profile.
pub fn encode_canonical(value: &Value, limit: usize) -> Result<Vec<u8>, CborError> {
    let out = encode(value)?;
    check_canonical(&out, limit)?;
    Ok(out)
}

/// Sorts every map in `value` (recursively) into canonical key order, so that
/// values built from other sources (JSON) encode canonically.
pub fn canonicalize(value: &mut Value) -> Result<(), CborError> {
    match value {
        Value::Array(items) => items.iter_mut().try_for_each(canonicalize),
        Value::Map(pairs) => {
            let mut keyed = Vec::with_capacity(pairs.len());
            for (mut k, mut v) in std::mem::take(pairs) {
                canonicalize(&mut k)?;
                canonicalize(&mut v)?;
                keyed.push((encode(&k)?, k, v));
            }
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            *pairs = keyed.into_iter().map(|(_, k, v)| (k, v)).collect();
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A map with unsigned-integer keys, as tagline-defined structures use.
/// Built from a decoded [`Value::Map`]; keys are known to be sorted and unique.
#[derive(Debug)]
pub struct IntMap {
    fields: Vec<(u64, Value)>,
}

/// A field of a tagline-defined map is missing, unexpected, or of the wrong type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("{what}: expected a CBOR map with integer keys, found {found}")]
    NotAMap {
        what: &'static str,
        found: &'static str,
    },
    #[error("{what}: required field {key} is missing")]
    Missing { what: &'static str, key: u64 },
    #[error("{what}: field {key} is not defined in this version")]
    Unexpected { what: &'static str, key: u64 },
    #[error("{what}: field {key} should be {expected}, found {found}")]
    WrongType {
        what: &'static str,
        key: u64,
        expected: &'static str,
        found: String,
    },
    #[error("{what}: {detail}")]
    Invalid { what: &'static str, detail: String },
}

/// A short name for the kind of a value, for error messages.
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Integer(_) => "integer",
        Value::Bytes(_) => "byte string",
        Value::Text(_) => "text string",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
        Value::Tag(..) => "tag",
        Value::Float(_) => "float",
        _ => "other",
    }
}

impl IntMap {
    /// Reads a map whose keys are all unsigned integers.
    pub fn from_value(what: &'static str, v: Value) -> Result<IntMap, FieldError> {
        let Value::Map(pairs) = v else {
            return Err(FieldError::NotAMap {
                what,
                found: kind(&v),
            });
        };
        let mut fields = Vec::with_capacity(pairs.len());
        for (k, v) in pairs {
            let key = match k {
                Value::Integer(i) => u64::try_from(i).ok(),
                _ => None,
            }
            .ok_or(FieldError::NotAMap {
                what,
                found: "a map with a non-integer key",
            })?;
            fields.push((key, v));
        }
        Ok(IntMap { fields })
    }

    /// Removes and returns the field `key`, if present.
    pub fn take(&mut self, key: u64) -> Option<Value> {
        let i = self.fields.iter().position(|(k, _)| *k == key)?;
        Some(self.fields.remove(i).1)
    }

    /// Fails if any field is left that the reader did not take.
    pub fn finish(self, what: &'static str) -> Result<(), FieldError> {
        match self.fields.first() {
            Some((key, _)) => Err(FieldError::Unexpected { what, key: *key }),
            None => Ok(()),
        }
    }

    pub fn req(&mut self, what: &'static str, key: u64) -> Result<Value, FieldError> {
        self.take(key).ok_or(FieldError::Missing { what, key })
    }

    pub fn uint(&mut self, what: &'static str, key: u64) -> Result<u64, FieldError> {
        as_uint(what, key, self.req(what, key)?)
    }

    pub fn text(&mut self, what: &'static str, key: u64) -> Result<String, FieldError> {
        as_text(what, key, self.req(what, key)?)
    }

    pub fn bytes32(&mut self, what: &'static str, key: u64) -> Result<[u8; 32], FieldError> {
        as_bytes32(what, key, self.req(what, key)?)
    }

    pub fn opt_bytes32(
        &mut self,
        what: &'static str,
        key: u64,
    ) -> Result<Option<[u8; 32]>, FieldError> {
        self.take(key).map(|v| as_bytes32(what, key, v)).transpose()
    }
}

pub fn as_uint(what: &'static str, key: u64, v: Value) -> Result<u64, FieldError> {
    match v {
        Value::Integer(i) => u64::try_from(i).map_err(|_| FieldError::WrongType {
            what,
            key,
            expected: "an unsigned integer",
            found: "a negative integer".into(),
        }),
        other => Err(FieldError::WrongType {
            what,
            key,
            expected: "an unsigned integer",
            found: kind(&other).into(),
        }),
    }
}

pub fn as_text(what: &'static str, key: u64, v: Value) -> Result<String, FieldError> {
    match v {
        Value::Text(s) => Ok(s),
        other => Err(FieldError::WrongType {
            what,
            key,
            expected: "a text string",
            found: kind(&other).into(),
        }),
    }
}

pub fn as_bytes32(what: &'static str, key: u64, v: Value) -> Result<[u8; 32], FieldError> {
    match v {
        Value::Bytes(b) => {
            let n = b.len();
            <[u8; 32]>::try_from(b).map_err(|_| FieldError::WrongType {
                what,
                key,
                expected: "a 32-byte byte string",
                found: format!("a {n}-byte byte string"),
            })
        }
        other => Err(FieldError::WrongType {
            what,
            key,
            expected: "a 32-byte byte string",
            found: kind(&other).into(),
        }),
    }
}

/// Shorthand for an unsigned integer value.
pub fn uint(n: u64) -> Value {
    Value::Integer(Integer::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn accepts_canonical_items() {
        for s in [
            "00",
            "17",
            "1818",
            "190100",
            "1a00010000",
            "1b0000000100000000",
            "20",
            "40",
            "60",
            "80",
            "a0",
            "f4",
            "f5",
            "a201020363616263",
            "a20001616100",
        ] {
            check_canonical(&h(s), 100).unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    }

    #[test]
    fn rejects_each_violation_with_its_own_error() {
        let cases = [
            ("1817", "non-shortest-integer"),
            ("1900ff", "non-shortest-integer"),
            ("5f4100ff", "indefinite-length"),
            ("9fff", "indefinite-length"),
            ("f93c00", "float"),
            ("fb3ff0000000000000", "float"),
            ("c11a00000000", "tag"),
            ("f6", "simple-value"),
            ("f7", "simple-value"),
            ("a202010102", "unsorted-keys"),
            ("a201010102", "duplicate-key"),
            ("a1410001", "invalid-key-type"),
            ("0000", "trailing-bytes"),
            ("5a00010000", "truncated"),
            ("9b0000000100000000", "too-many-items"),
            ("62c328", "invalid-utf8"),
            ("1c", "malformed"),
        ];
        for (s, code) in cases {
            let err = check_canonical(&h(s), 100).unwrap_err();
            assert_eq!(err.code(), code, "{s}: {err}");
        }
    }

    #[test]
    fn text_keys_sort_by_encoded_bytes() {
        // "b" (6162) sorts before "aa" (626161): shorter first.
        check_canonical(&h("a261620162616102"), 100).unwrap();
        assert_eq!(
            check_canonical(&h("a262616102616201"), 100)
                .unwrap_err()
                .code(),
            "unsorted-keys"
        );
        // Integer keys sort before text keys.
        check_canonical(&h("a2000161610a"), 100).unwrap();
    }

    #[test]
    fn depth_is_bounded() {
        let mut deep = vec![0x81u8; MAX_DEPTH];
        deep.push(0);
        check_canonical(&deep, 100).unwrap();
        let mut deeper = vec![0x81u8; MAX_DEPTH + 1];
        deeper.push(0);
        assert_eq!(
            check_canonical(&deeper, 100).unwrap_err().code(),
            "too-deep"
        );
    }

    #[test]
    fn written_heads_are_canonical_and_read_back() {
        for n in [
            0,
            23,
            24,
            255,
            256,
            65_535,
            65_536,
            u32::MAX as u64,
            1 << 32,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            write::array(&mut out, 3);
            write::uint(&mut out, n);
            write::bytes(&mut out, &[7; 30]);
            write::text(&mut out, "é");
            check_canonical(&out, out.len()).unwrap_or_else(|e| panic!("{n}: {e}"));
            let mut p = Pull::strict(&out);
            assert_eq!(p.array().unwrap(), 3);
            assert_eq!(p.uint().unwrap(), n);
            assert_eq!(p.bytes().unwrap(), &[7; 30]);
            assert_eq!(p.text().unwrap(), "é");
            p.finish().unwrap();
        }
    }

    #[test]
    fn size_limit_is_checked_first() {
        assert_eq!(
            check_canonical(&[0; 11], 10).unwrap_err().code(),
            "too-large"
        );
    }

    #[test]
    fn canonicalize_sorts_maps() {
        let mut v = Value::Map(vec![
            (Value::Text("bb".into()), uint(1)),
            (Value::Text("a".into()), uint(2)),
            (uint(7), uint(3)),
        ]);
        canonicalize(&mut v).unwrap();
        let bytes = encode_canonical(&v, 100).unwrap();
        assert_eq!(decode(&bytes, 100).unwrap(), v);
    }
}

/// Decodes one canonical item straight into a typed value through serde
/// (no intermediate [`Value`] tree): size limit, profile check, parse.
/// The caller re-encodes its typed value and compares bytes with
/// [`same_as_reencoding`].
pub fn decode_typed<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    limit: usize,
) -> Result<T, CborError> {
    check_canonical(bytes, limit)?;
    ciborium::de::from_reader_with_recursion_limit(bytes, MAX_DEPTH + 1)
        .map_err(|e| CborError::Parse(e.to_string()))
}

/// Encodes `value` with ciborium and checks that the result equals `bytes`.
pub fn same_as_reencoding<T: serde::Serialize + ?Sized>(
    value: &T,
    bytes: &[u8],
) -> Result<(), CborError> {
    let mut out = Vec::with_capacity(bytes.len());
    ciborium::ser::into_writer(value, &mut out).map_err(|e| CborError::Encode(e.to_string()))?;
    if out != bytes {
        return Err(CborError::NotCanonical);
    }
    Ok(())
}

/// A byte string for serde: deserialises only from a CBOR byte string and
/// serialises as one.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ByteBuf(pub Vec<u8>);

impl serde::Serialize for ByteBuf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ByteBuf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ByteBuf;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<ByteBuf, E> {
                Ok(ByteBuf(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A borrowed byte string for serialisation.
#[derive(Debug, Clone, Copy)]
pub struct Bytes<'a>(pub &'a [u8]);

impl serde::Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}
