//! DKIM at the bridge's edge: checks a mail's signatures for its `From:`
//! domain with mail-auth and says what it found as a [`Dkim`] for the pure
//! bridge.
//!
//! Keys come from DNS (the system resolver), from keys recorded in a file
//! (`--dkim-keys`, served through mail-auth's resolver cache, so tests and
//! air-gapped hosts verify offline), or both. Offline, a key neither
//! recorded nor cached is a `temperror`, never a guess.
//!
//! Which verdict counts ([`judge`]) is pure: a signature counts for the
//! `From:` address when its `d=` is the address's domain or a parent of it
//! (DMARC's relaxed alignment, RFC 7489 §3.1.1). A passing aligned signature
//! wins; else the first aligned signature's result; a mail signed only by
//! other domains (a list's own signature) is `none` for the sender.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
};
use tagline_format::mail::Dkim;

/// Most DNS answers kept in memory; when full, the cache starts afresh, so
/// a flood of mails signed by made-up domains cannot grow it.
pub const MAX_CACHED_KEYS: usize = 4096;

/// Longest `--dkim-keys` file read.
pub const MAX_KEYS_FILE: u64 = 1024 * 1024;

/// Longest detail kept from a verifier's error.
const MAX_DETAIL: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum DkimSetupError {
    #[error(
        "line {line} of the DKIM key file: expected `SELECTOR._domainkey.DOMAIN TXT-RECORD`, found {found:?}"
    )]
    KeyLine { line: usize, found: String },
    #[error("line {line} of the DKIM key file: the record for {name} does not parse ({detail})")]
    KeyRecord {
        line: usize,
        name: String,
        detail: String,
    },
    #[error("the system's DNS resolver configuration: {0}")]
    Resolver(String),
}

/// One signature's verdict, as [`judge`] weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// RFC 8601's word: `pass`, `fail`, `neutral`, `temperror`, `permerror`.
    pub result: &'static str,
    /// The signature's `d=`, when it parsed.
    pub domain: Option<String>,
    pub detail: Option<String>,
}

/// Whether `d=` `signer` speaks for `from_domain` (relaxed alignment).
pub fn aligned(signer: &str, from_domain: &str) -> bool {
    let (s, f) = (
        signer.trim_end_matches('.').to_ascii_lowercase(),
        from_domain.trim_end_matches('.').to_ascii_lowercase(),
    );
    !s.is_empty() && (f == s || f.ends_with(&format!(".{s}")))
}

/// The result for the sender at `from_domain`, from every signature's verdict.
pub fn judge(from_domain: Option<&str>, verdicts: &[Verdict]) -> Dkim {
    let Some(from_domain) = from_domain else {
        return Dkim {
            result: "permerror".into(),
            domain: None,
            detail: Some("no From: address to check the signatures against".into()),
        };
    };
    let is_aligned = |v: &&Verdict| v.domain.as_deref().is_some_and(|d| aligned(d, from_domain));
    if let Some(v) = verdicts
        .iter()
        .filter(is_aligned)
        .find(|v| v.result == "pass")
    {
        return Dkim {
            result: "pass".into(),
            domain: v.domain.clone(),
            detail: None,
        };
    }
    if let Some(v) = verdicts.iter().find(is_aligned) {
        return Dkim {
            result: v.result.into(),
            domain: v.domain.clone(),
            detail: v.detail.clone(),
        };
    }
    let others: Vec<&str> = verdicts
        .iter()
        .filter_map(|v| v.domain.as_deref())
        .collect();
    Dkim {
        result: "none".into(),
        domain: None,
        detail: (!verdicts.is_empty()).then(|| {
            if others.is_empty() {
                "no signature that parses".to_string()
            } else {
                format!("signed by {} only, not by {from_domain}", others.join(", "))
            }
        }),
    }
}

/// Keys by DNS name: recorded ones (never expire) and answers from DNS.
#[derive(Default)]
struct KeyCache {
    recorded: HashMap<Box<str>, Txt>,
    fetched: Mutex<HashMap<Box<str>, (Txt, Instant)>>,
    offline: bool,
}

impl ResolverCache<Box<str>, Txt> for KeyCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(t) = self.recorded.get(name) {
            return Some(t.clone());
        }
        if let Ok(fetched) = self.fetched.lock()
            && let Some((t, until)) = fetched.get(name)
            && *until > Instant::now()
        {
            return Some(t.clone());
        }
        // Offline: a key not recorded is not looked up.
        self.offline.then(|| {
            Txt::Error(mail_auth::Error::Dns(mail_auth::DnsError::Resolver(
                "offline, and no key recorded under this name".into(),
            )))
        })
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.fetched
            .lock()
            .ok()
            .and_then(|mut f| f.remove(name))
            .map(|(t, _)| t)
    }

    fn insert(&self, name: Box<str>, value: Txt, valid_until: Instant) {
        if let Ok(mut fetched) = self.fetched.lock() {
            if fetched.len() >= MAX_CACHED_KEYS {
                fetched.clear();
            }
            fetched.insert(name, (value, valid_until));
        }
    }
}

/// Checks mails' DKIM signatures.
#[derive(Clone)]
pub struct DkimChecker {
    auth: MessageAuthenticator,
    keys: Arc<KeyCache>,
}

impl std::fmt::Debug for DkimChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DkimChecker")
            .field("recorded", &self.keys.recorded.len())
            .field("offline", &self.keys.offline)
            .finish()
    }
}

impl DkimChecker {
    /// `keys`: the text of a key file, one `NAME RECORD` per line (`#`
    /// starts a comment), e.g. `s1._domainkey.example.org v=DKIM1; k=ed25519;
    /// p=...`. `offline`: never ask DNS.
    pub fn new(keys: &str, offline: bool) -> Result<DkimChecker, DkimSetupError> {
        let mut recorded = HashMap::new();
        for (n, line) in keys.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((name, record)) = line.split_once(char::is_whitespace) else {
                return Err(DkimSetupError::KeyLine {
                    line: n + 1,
                    found: line.chars().take(80).collect(),
                });
            };
            let record = record.trim().trim_matches('"');
            let key =
                DomainKey::parse(record.as_bytes()).map_err(|e| DkimSetupError::KeyRecord {
                    line: n + 1,
                    name: name.to_string(),
                    detail: e.to_string(),
                })?;
            let mut fqdn = name.to_ascii_lowercase();
            if !fqdn.ends_with('.') {
                fqdn.push('.');
            }
            recorded.insert(fqdn.into_boxed_str(), Txt::from(key));
        }
        // Offline, the resolver is never asked; Google's addresses only fill
        // the configuration without reading the system's.
        let (config, opts) = if offline {
            (
                ResolverConfig::udp_and_tcp(&mail_auth::hickory_resolver::config::GOOGLE),
                ResolverOpts::default(),
            )
        } else {
            mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| DkimSetupError::Resolver(e.to_string()))?
        };
        let auth = MessageAuthenticator::new(config, opts)
            .map_err(|e| DkimSetupError::Resolver(e.to_string()))?;
        Ok(DkimChecker {
            auth,
            keys: Arc::new(KeyCache {
                recorded,
                fetched: Mutex::new(HashMap::new()),
                offline,
            }),
        })
    }

    /// The DKIM result for `raw`'s sender. Needs a tokio runtime.
    pub async fn check(&self, raw: &[u8]) -> Dkim {
        let Some(message) = AuthenticatedMessage::parse(raw) else {
            return Dkim {
                result: "permerror".into(),
                domain: None,
                detail: Some("the message's headers do not parse".into()),
            };
        };
        let from_domain = message
            .from
            .first()
            .and_then(|a| a.rsplit_once('@'))
            .map(|(_, d)| d.to_string());
        if message.dkim_headers.is_empty() && !message.has_dkim_errors {
            return judge(from_domain.as_deref(), &[]);
        }
        let outputs = self
            .auth
            .verify_dkim(Parameters::new(&message).with_txt_cache(&*self.keys))
            .await;
        let verdicts: Vec<Verdict> = outputs
            .iter()
            .map(|o| {
                let (result, err) = match o.result() {
                    DkimResult::Pass => ("pass", None),
                    DkimResult::Neutral(e) => ("neutral", Some(e)),
                    DkimResult::Fail(e) => ("fail", Some(e)),
                    DkimResult::PermError(e) => ("permerror", Some(e)),
                    DkimResult::TempError(e) => ("temperror", Some(e)),
                    DkimResult::None => ("none", None),
                };
                Verdict {
                    result,
                    domain: o.signature().map(|s| s.d.to_ascii_lowercase()),
                    detail: err.map(|e| e.to_string().chars().take(MAX_DETAIL).collect()),
                }
            })
            .collect();
        judge(from_domain.as_deref(), &verdicts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(result: &'static str, domain: &str) -> Verdict {
        Verdict {
            result,
            domain: Some(domain.into()),
            detail: Some(format!("{result} detail")),
        }
    }

    #[test]
    fn alignment_is_relaxed_but_not_sideways() {
        assert!(aligned("example.org", "example.org"));
        assert!(aligned("example.org", "mail.example.org"));
        assert!(aligned("Example.ORG.", "example.org"));
        assert!(!aligned("mail.example.org", "example.org"));
        assert!(!aligned("ample.org", "example.org"));
        assert!(!aligned("", "example.org"));
    }

    #[test]
    fn a_passing_aligned_signature_wins() {
        let d = judge(
            Some("example.org"),
            &[v("fail", "example.org"), v("pass", "example.org")],
        );
        assert_eq!(
            (d.result.as_str(), d.domain.as_deref()),
            ("pass", Some("example.org"))
        );
        let d = judge(Some("example.org"), &[v("pass", "lists.example.net")]);
        assert_eq!(d.result, "none");
        assert!(d.detail.unwrap_or_default().contains("lists.example.net"));
        let d = judge(
            Some("example.org"),
            &[v("pass", "lists.example.net"), v("fail", "example.org")],
        );
        assert_eq!(d.result, "fail");
        assert_eq!(judge(Some("example.org"), &[]).result, "none");
        assert_eq!(judge(None, &[v("pass", "example.org")]).result, "permerror");
    }

    #[test]
    fn a_bad_key_line_is_refused_with_its_line() {
        let e = DkimChecker::new("# keys\ns1._domainkey.example.org\n", true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("line 2"), "{e}");
        let e = DkimChecker::new("s1._domainkey.example.org v=DKIM1; k=rsa; p=!!", true)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("does not parse"), "{e}");
    }
}
