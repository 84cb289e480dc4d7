//! Identity payload types (SPEC.md §12): the wire codecs only. What they
//! mean together (which device counts for whom, at which sequence numbers) is
//! computed by `tagline-identity`.
//!
//! An identity is named by its genesis root key. Its root keys write the
//! identity feed: profile, email claims, device authorisations and
//! revocations, root rotation. Each device writes its own feed, whose
//! `tagline/device/join` entry names the identity it belongs to.

use std::fmt;
use std::str::FromStr;

use ciborium::value::Value;

use crate::cbor::{self, FieldError, IntMap, uint};
use crate::keys::{KeyError, PublicKey, SecretKey};
use crate::limits::MAX_PAYLOAD_SIZE;
use crate::payload::PayloadError;

/// First entry of a genesis root key's feed: `{}`.
pub const GENESIS_TYPE: &str = "tagline/identity/genesis";
/// First entry of a rotated-to root key's feed: `{0: identity id}`.
pub const CONTINUE_TYPE: &str = "tagline/identity/continue";
/// Display name: `{0: name}`.
pub const PROFILE_TYPE: &str = "tagline/identity/profile";
/// Email claim or withdrawal: `{0: address, 1: claimed (bool)}`.
pub const EMAIL_TYPE: &str = "tagline/identity/email";
/// Device authorisation: `{0: device key, 1: from seq}`.
pub const DEVICE_ADD_TYPE: &str = "tagline/identity/device-add";
/// Device revocation: `{0: device key, 1: last valid seq}`.
pub const DEVICE_REVOKE_TYPE: &str = "tagline/identity/device-revoke";
/// Root rotation: `{0: new root key, 1: countersignature}`.
pub const ROTATE_TYPE: &str = "tagline/identity/rotate";
/// In a device's own feed: `{0: identity id}`.
pub const JOIN_TYPE: &str = "tagline/device/join";
/// Evidence that an identity controls an address: `{0: identity id, 1: address,
/// 2: method, 3: detail}`, written by whoever checked it (a bridge, a lead).
pub const EMAIL_PROOF_TYPE: &str = "tagline/identity/email-proof";

/// Domain-separation prefix of a rotation countersignature: the new root signs
/// `ROTATE_CONTEXT ‖ identity id ‖ old root ‖ new root`.
pub const ROTATE_CONTEXT: &[u8] = b"tagline/v1/rotate\0";
/// Domain-separation prefix of an email challenge token.
pub const EMAIL_CHALLENGE_CONTEXT: &[u8] = b"tagline/v1/email-challenge\0";
/// Human-readable part of an identity id's text form.
pub const HRP_IDENTITY: &str = "tli";

/// Longest display name, in bytes.
pub const MAX_NAME_LEN: usize = 256;
/// Longest email address, in bytes (RFC 5321's path limit).
pub const MAX_EMAIL_LEN: usize = 254;
/// Longest proof method or detail string, in bytes.
pub const MAX_PROOF_TEXT_LEN: usize = 4096;

/// An identity: its genesis root key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IdentityId(pub PublicKey);

impl IdentityId {
    pub fn key(&self) -> &PublicKey {
        &self.0
    }
    pub fn short(&self) -> String {
        self.to_string().chars().take(16).collect()
    }
}

impl fmt::Display for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::keys::text_form(HRP_IDENTITY, self.0.as_bytes()))
    }
}
impl fmt::Debug for IdentityId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityId({self})")
    }
}
impl FromStr for IdentityId {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = crate::keys::parse_text_form(s, HRP_IDENTITY, "identity id")?;
        Ok(IdentityId(crate::keys::validated_key(&bytes)?))
    }
}

/// A decoded identity-related payload.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityPayload {
    Genesis,
    Continue {
        identity: IdentityId,
    },
    Profile {
        name: String,
    },
    Email {
        address: String,
        claimed: bool,
    },
    DeviceAdd {
        device: PublicKey,
        from_seq: u64,
    },
    DeviceRevoke {
        device: PublicKey,
        last_valid_seq: u64,
    },
    Rotate {
        new_root: PublicKey,
        countersignature: [u8; 64],
    },
    Join {
        identity: IdentityId,
    },
    EmailProof {
        identity: IdentityId,
        address: String,
        method: String,
        detail: String,
    },
}

fn key_field(m: &mut IntMap, what: &'static str, k: u64) -> Result<PublicKey, PayloadError> {
    let b = m.bytes32(what, k)?;
    crate::keys::validated_key(&b).map_err(|e| {
        FieldError::Invalid {
            what,
            detail: format!("field {k}: {e}"),
        }
        .into()
    })
}

fn bounded_text(
    m: &mut IntMap,
    what: &'static str,
    k: u64,
    max: usize,
) -> Result<String, PayloadError> {
    let t = m.text(what, k)?;
    if t.len() > max {
        return Err(FieldError::Invalid {
            what,
            detail: format!("field {k} is {} bytes, more than {max}", t.len()),
        }
        .into());
    }
    Ok(t)
}

/// Checks an email address's shape: one `@`, non-empty local part and domain,
/// no spaces or angle brackets, at most [`MAX_EMAIL_LEN`] bytes. Addresses are
/// compared in lowercase.
pub fn normalize_email(address: &str) -> Option<String> {
    let a = address.trim();
    let (local, domain) = a.split_once('@')?;
    let ok = !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && a.len() <= MAX_EMAIL_LEN
        && !a
            .chars()
            .any(|c| c.is_whitespace() || c == '<' || c == '>' || c.is_control());
    ok.then(|| a.to_lowercase())
}

impl IdentityPayload {
    /// The payload type string.
    pub fn type_name(&self) -> &'static str {
        match self {
            IdentityPayload::Genesis => GENESIS_TYPE,
            IdentityPayload::Continue { .. } => CONTINUE_TYPE,
            IdentityPayload::Profile { .. } => PROFILE_TYPE,
            IdentityPayload::Email { .. } => EMAIL_TYPE,
            IdentityPayload::DeviceAdd { .. } => DEVICE_ADD_TYPE,
            IdentityPayload::DeviceRevoke { .. } => DEVICE_REVOKE_TYPE,
            IdentityPayload::Rotate { .. } => ROTATE_TYPE,
            IdentityPayload::Join { .. } => JOIN_TYPE,
            IdentityPayload::EmailProof { .. } => EMAIL_PROOF_TYPE,
        }
    }

    /// Whether `t` is one of the types this module defines.
    pub fn is_identity_type(t: &str) -> bool {
        [
            GENESIS_TYPE,
            CONTINUE_TYPE,
            PROFILE_TYPE,
            EMAIL_TYPE,
            DEVICE_ADD_TYPE,
            DEVICE_REVOKE_TYPE,
            ROTATE_TYPE,
            JOIN_TYPE,
            EMAIL_PROOF_TYPE,
        ]
        .contains(&t)
    }

    /// Canonical CBOR bytes of this payload.
    pub fn encode(&self) -> Vec<u8> {
        let b = |k: &PublicKey| Value::Bytes(k.as_bytes().to_vec());
        let pairs: Vec<(Value, Value)> = match self {
            IdentityPayload::Genesis => vec![],
            IdentityPayload::Continue { identity } | IdentityPayload::Join { identity } => {
                vec![(uint(0), b(&identity.0))]
            }
            IdentityPayload::Profile { name } => vec![(uint(0), Value::Text(name.clone()))],
            IdentityPayload::Email { address, claimed } => {
                vec![
                    (uint(0), Value::Text(address.clone())),
                    (uint(1), Value::Bool(*claimed)),
                ]
            }
            IdentityPayload::DeviceAdd { device, from_seq } => {
                vec![(uint(0), b(device)), (uint(1), uint(*from_seq))]
            }
            IdentityPayload::DeviceRevoke {
                device,
                last_valid_seq,
            } => {
                vec![(uint(0), b(device)), (uint(1), uint(*last_valid_seq))]
            }
            IdentityPayload::Rotate {
                new_root,
                countersignature,
            } => {
                vec![
                    (uint(0), b(new_root)),
                    (uint(1), Value::Bytes(countersignature.to_vec())),
                ]
            }
            IdentityPayload::EmailProof {
                identity,
                address,
                method,
                detail,
            } => vec![
                (uint(0), b(&identity.0)),
                (uint(1), Value::Text(address.clone())),
                (uint(2), Value::Text(method.clone())),
                (uint(3), Value::Text(detail.clone())),
            ],
        };
        cbor::encode(&Value::Map(pairs)).unwrap_or_default()
    }

    /// Decodes a payload of one of these types. `Ok(None)` for other types.
    pub fn decode(
        payload_type: &str,
        bytes: &[u8],
    ) -> Result<Option<IdentityPayload>, PayloadError> {
        if !Self::is_identity_type(payload_type) {
            return Ok(None);
        }
        let what: &'static str = match payload_type {
            GENESIS_TYPE => GENESIS_TYPE,
            CONTINUE_TYPE => CONTINUE_TYPE,
            PROFILE_TYPE => PROFILE_TYPE,
            EMAIL_TYPE => EMAIL_TYPE,
            DEVICE_ADD_TYPE => DEVICE_ADD_TYPE,
            DEVICE_REVOKE_TYPE => DEVICE_REVOKE_TYPE,
            ROTATE_TYPE => ROTATE_TYPE,
            JOIN_TYPE => JOIN_TYPE,
            _ => EMAIL_PROOF_TYPE,
        };
        let v = cbor::decode(bytes, MAX_PAYLOAD_SIZE as usize)?;
        let mut m = IntMap::from_value(what, v)?;
        let p = match what {
            GENESIS_TYPE => IdentityPayload::Genesis,
            CONTINUE_TYPE => IdentityPayload::Continue {
                identity: IdentityId(key_field(&mut m, what, 0)?),
            },
            JOIN_TYPE => IdentityPayload::Join {
                identity: IdentityId(key_field(&mut m, what, 0)?),
            },
            PROFILE_TYPE => IdentityPayload::Profile {
                name: bounded_text(&mut m, what, 0, MAX_NAME_LEN)?,
            },
            EMAIL_TYPE => {
                let address = bounded_text(&mut m, what, 0, MAX_EMAIL_LEN)?;
                let claimed = match m.req(what, 1)? {
                    Value::Bool(b) => b,
                    other => {
                        return Err(FieldError::WrongType {
                            what,
                            key: 1,
                            expected: "a boolean",
                            found: cbor::kind(&other).into(),
                        }
                        .into());
                    }
                };
                let address = normalize_email(&address).ok_or(FieldError::Invalid {
                    what,
                    detail: format!("{address:?} is not an email address"),
                })?;
                IdentityPayload::Email { address, claimed }
            }
            DEVICE_ADD_TYPE => IdentityPayload::DeviceAdd {
                device: key_field(&mut m, what, 0)?,
                from_seq: m.uint(what, 1)?.max(1),
            },
            DEVICE_REVOKE_TYPE => IdentityPayload::DeviceRevoke {
                device: key_field(&mut m, what, 0)?,
                last_valid_seq: m.uint(what, 1)?,
            },
            ROTATE_TYPE => {
                let new_root = key_field(&mut m, what, 0)?;
                let sig = match m.req(what, 1)? {
                    Value::Bytes(b) => {
                        <[u8; 64]>::try_from(b.as_slice()).map_err(|_| FieldError::WrongType {
                            what,
                            key: 1,
                            expected: "a 64-byte signature",
                            found: format!("{} bytes", b.len()),
                        })?
                    }
                    other => {
                        return Err(FieldError::WrongType {
                            what,
                            key: 1,
                            expected: "a byte string",
                            found: cbor::kind(&other).into(),
                        }
                        .into());
                    }
                };
                IdentityPayload::Rotate {
                    new_root,
                    countersignature: sig,
                }
            }
            _ => {
                let identity = IdentityId(key_field(&mut m, what, 0)?);
                let address = bounded_text(&mut m, what, 1, MAX_EMAIL_LEN)?;
                let address = normalize_email(&address).ok_or(FieldError::Invalid {
                    what,
                    detail: format!("{address:?} is not an email address"),
                })?;
                IdentityPayload::EmailProof {
                    identity,
                    address,
                    method: bounded_text(&mut m, what, 2, MAX_PROOF_TEXT_LEN)?,
                    detail: bounded_text(&mut m, what, 3, MAX_PROOF_TEXT_LEN)?,
                }
            }
        };
        m.finish(what)?;
        Ok(Some(p))
    }
}

/// The message a new root signs to accept a rotation.
pub fn rotation_message(
    identity: &IdentityId,
    old_root: &PublicKey,
    new_root: &PublicKey,
) -> Vec<u8> {
    let mut m = ROTATE_CONTEXT.to_vec();
    m.extend_from_slice(identity.0.as_bytes());
    m.extend_from_slice(old_root.as_bytes());
    m.extend_from_slice(new_root.as_bytes());
    m
}

/// Builds a rotation payload: `new_root` countersigns.
pub fn rotation(
    identity: &IdentityId,
    old_root: &PublicKey,
    new_root: &SecretKey,
) -> IdentityPayload {
    let sig = new_root.sign(&rotation_message(identity, old_root, &new_root.public()));
    IdentityPayload::Rotate {
        new_root: new_root.public(),
        countersignature: sig,
    }
}

/// The challenge token for proving control of `address`: the user sends a mail
/// from the address containing it; a bridge that checks the mail's DKIM
/// signature records a `tagline/identity/email-proof`.
pub fn email_challenge(identity: &IdentityId, address: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(EMAIL_CHALLENGE_CONTEXT);
    h.update(identity.0.as_bytes());
    h.update(address.trim().to_lowercase().as_bytes());
    let digest = h.finalize();
    let short = digest.as_bytes().get(..16).unwrap_or_default();
    format!("tagline-email-proof-{}", hex::encode(short))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let a = SecretKey::from_seed(&[1; 32]);
        let b = SecretKey::from_seed(&[2; 32]);
        let id = IdentityId(a.public());
        let all = vec![
            IdentityPayload::Genesis,
            IdentityPayload::Continue { identity: id },
            IdentityPayload::Profile { name: "Ada".into() },
            IdentityPayload::Email {
                address: "ada@example.org".into(),
                claimed: true,
            },
            IdentityPayload::DeviceAdd {
                device: b.public(),
                from_seq: 1,
            },
            IdentityPayload::DeviceRevoke {
                device: b.public(),
                last_valid_seq: 7,
            },
            rotation(&id, &a.public(), &b),
            IdentityPayload::Join { identity: id },
            IdentityPayload::EmailProof {
                identity: id,
                address: "ada@example.org".into(),
                method: "dkim".into(),
                detail: "d=example.org".into(),
            },
        ];
        for p in all {
            let bytes = p.encode();
            assert_eq!(
                IdentityPayload::decode(p.type_name(), &bytes).unwrap(),
                Some(p.clone())
            );
        }
        assert_eq!(
            IdentityPayload::decode("tagline/note", b"\xa0").unwrap(),
            None
        );
        assert!(
            IdentityPayload::decode(
                EMAIL_TYPE,
                &IdentityPayload::Email {
                    address: "nope".into(),
                    claimed: true
                }
                .encode()
            )
            .is_err()
        );
        let text = id.to_string();
        assert!(text.starts_with("tli1"));
        assert_eq!(text.parse::<IdentityId>().unwrap(), id);
        assert!(a.public().to_string().parse::<IdentityId>().is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email(" Ada@Example.ORG ").as_deref(),
            Some("ada@example.org")
        );
        for bad in [
            "", "a", "a@", "@b.c", "a@b", "a b@c.d", "<a@b.c>", "a@b@c.d",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
        let id = IdentityId(SecretKey::from_seed(&[1; 32]).public());
        assert_eq!(
            email_challenge(&id, "Ada@example.org"),
            email_challenge(&id, "ada@example.org")
        );
    }
}
