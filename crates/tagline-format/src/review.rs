//! Review payload types (SPEC.md §13): projects, revisions of a patch series,
//! reviews with trailers, CI results, merges, tags and withdrawals. Wire
//! codecs only; what they mean together is computed by `tagline-review`.

use ciborium::value::Value;

use crate::cbor::{self, FieldError, IntMap, uint};
use crate::identity::IdentityId;
use crate::keys::EntryId;
use crate::limits::MAX_PAYLOAD_SIZE;
use crate::payload::PayloadError;

pub const PROJECT_TYPE: &str = "tagline/project";
pub const REVISION_TYPE: &str = "tagline/revision";
pub const REVIEW_TYPE: &str = "tagline/review";
pub const CI_TYPE: &str = "tagline/ci";
pub const MERGE_TYPE: &str = "tagline/merge";
pub const TAG_TYPE: &str = "tagline/tag";
pub const WITHDRAW_TYPE: &str = "tagline/withdraw";

/// Longest short text field (names, subjects, contexts, labels), in bytes.
pub const MAX_SHORT_TEXT: usize = 1024;
/// Longest long text field (bodies, comments, policies, log excerpts), in bytes.
pub const MAX_LONG_TEXT: usize = 1024 * 1024;
/// Most patches in one revision.
pub const MAX_PATCHES: usize = 1000;
/// Most trailers in one review.
pub const MAX_TRAILERS: usize = 256;
/// Most inline comments in one review.
pub const MAX_INLINE_COMMENTS: usize = 4096;
/// Most identities in one role list, URLs, commits or cited entries.
pub const MAX_LIST: usize = 4096;

/// A CI result state (Patchwork's check states plus `error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CiStatus {
    Pending,
    Pass,
    Warning,
    Fail,
    /// The run itself failed (the series did not apply, the runner broke).
    Error,
}

impl CiStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            CiStatus::Pending => "pending",
            CiStatus::Pass => "pass",
            CiStatus::Warning => "warning",
            CiStatus::Fail => "fail",
            CiStatus::Error => "error",
        }
    }
    pub fn parse(s: &str) -> Option<CiStatus> {
        Some(match s {
            "pending" => CiStatus::Pending,
            "pass" | "success" => CiStatus::Pass,
            "warning" => CiStatus::Warning,
            "fail" | "failure" => CiStatus::Fail,
            "error" => CiStatus::Error,
            _ => return None,
        })
    }
}

/// A CI identity and the contexts it reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiRole {
    pub identity: IdentityId,
    pub contexts: Vec<String>,
}

/// `tagline/project`: declared by its lead; later entries by the lead amend it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Project {
    pub name: String,
    pub repositories: Vec<String>,
    pub branch: String,
    /// The merge policy, TOML (tagline-review defines the keys).
    pub policy: String,
    pub maintainers: Vec<IdentityId>,
    pub committers: Vec<IdentityId>,
    pub reviewers: Vec<IdentityId>,
    /// Take maintainers from the MAINTAINERS file at the series' base.
    pub maintainers_file: bool,
    pub bridges: Vec<IdentityId>,
    pub ci: Vec<CiRole>,
    pub gates: Vec<IdentityId>,
    pub lists: Vec<String>,
    /// For an amendment: the id of the project's declaring entry.
    pub amends: Option<EntryId>,
}

/// The cover letter of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cover {
    pub subject: String,
    pub body: String,
}

/// One patch of a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Patch {
    pub subject: String,
    /// The commit message body (after the subject line), trailers included.
    pub message: String,
    /// `Name <address>`.
    pub author: String,
    /// The diff as `git format-patch` writes it.
    pub diff: String,
    /// `git patch-id --stable` of the diff (40 hex digits).
    pub patch_id: String,
}

/// `tagline/revision`: version N of a patch series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The project's declaring entry.
    pub project: EntryId,
    /// The series' first revision; absent on the first revision itself.
    pub series: Option<EntryId>,
    pub version: u64,
    pub base_commit: Option<String>,
    pub cover: Option<Cover>,
    pub changelog: Option<String>,
    pub patches: Vec<Patch>,
    /// A b4-style change-id, when the author's tooling has one.
    pub change_id: Option<String>,
    /// For a revision an email bridge read from a list: its mails.
    pub mails: Option<RevisionMails>,
}

/// The Message-IDs of a bridged revision's mails, so that replies (bridged
/// or rendered back to the list) find their thread.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RevisionMails {
    pub cover: Option<String>,
    /// One per patch, in the revision's patch order.
    pub patches: Vec<String>,
}

/// Where a bridged review came from: the reply mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewMail {
    pub message_id: String,
    /// The reply's `From:` address.
    pub from: String,
    /// The bridge's DKIM result for that address's domain (`pass`, `fail`,
    /// `none`, ...; see the email bridge).
    pub dkim: String,
}

/// A trailer a reply carried that its bridge does not vouch for, and why
/// (another person's address, no valid DKIM signature, ...). Shown, never
/// counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlaggedTrailer {
    pub key: String,
    pub value: String,
    pub reason: String,
}

/// A line of a file in an inline comment's anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Old,
    New,
}

/// An inline comment anchored to lines of one file of one patch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InlineComment {
    pub file: String,
    pub side: Side,
    pub start_line: u64,
    pub end_line: u64,
    pub text: String,
}

/// `tagline/review`: trailers and comments on a revision or one of its patches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    pub revision: EntryId,
    /// 1-based patch number; absent: the whole revision (cover letter).
    pub patch: Option<u64>,
    /// `(key, value)`, e.g. `("Reviewed-by", "Ada <ada@example.org>")`.
    pub trailers: Vec<(String, String)>,
    pub comment: Option<String>,
    pub inline: Vec<InlineComment>,
    /// An earlier review by the same identity that this one retracts.
    pub retracts: Option<EntryId>,
    /// For a review an email bridge read from a reply: the reply.
    pub mail: Option<ReviewMail>,
    /// Trailers the reply carried that the bridge does not vouch for.
    pub flagged: Vec<FlaggedTrailer>,
}

/// `tagline/ci`: a CI result for a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiResult {
    pub revision: EntryId,
    pub context: String,
    pub status: CiStatus,
    pub summary: String,
    pub log_excerpt: Option<String>,
    /// blake3 of the full log (kept as a payload or elsewhere).
    pub log_hash: Option<[u8; 32]>,
    pub runner: Option<String>,
    pub duration_ms: Option<u64>,
    pub url: Option<String>,
}

/// `tagline/merge`: a gate merged a revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub revision: EntryId,
    pub commits: Vec<String>,
    pub branch: String,
    /// The entries whose state made the revision mergeable.
    pub cites: Vec<EntryId>,
}

/// `tagline/tag`: add or remove a label on a series or revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub target: EntryId,
    pub label: String,
    pub add: bool,
}

/// A decoded review-model payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewPayload {
    Project(Project),
    Revision(Revision),
    Review(Review),
    Ci(CiResult),
    Merge(Merge),
    Tag(Tag),
    /// The series (its first revision's id) is withdrawn by its author.
    Withdraw(EntryId),
}

fn text(t: &str) -> Value {
    Value::Text(t.to_owned())
}
fn bytes(b: &[u8]) -> Value {
    Value::Bytes(b.to_vec())
}
fn ids(v: &[IdentityId]) -> Value {
    Value::Array(v.iter().map(|i| bytes(i.0.as_bytes())).collect())
}
fn texts(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| text(s)).collect())
}

/// Builds a map, leaving out `None` values (absent optional fields).
fn map(fields: Vec<(u64, Option<Value>)>) -> Value {
    Value::Map(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (uint(k), v)))
            .collect(),
    )
}

impl ReviewPayload {
    pub fn type_name(&self) -> &'static str {
        match self {
            ReviewPayload::Project(_) => PROJECT_TYPE,
            ReviewPayload::Revision(_) => REVISION_TYPE,
            ReviewPayload::Review(_) => REVIEW_TYPE,
            ReviewPayload::Ci(_) => CI_TYPE,
            ReviewPayload::Merge(_) => MERGE_TYPE,
            ReviewPayload::Tag(_) => TAG_TYPE,
            ReviewPayload::Withdraw(_) => WITHDRAW_TYPE,
        }
    }

    pub fn is_review_type(t: &str) -> bool {
        [
            PROJECT_TYPE,
            REVISION_TYPE,
            REVIEW_TYPE,
            CI_TYPE,
            MERGE_TYPE,
            TAG_TYPE,
            WITHDRAW_TYPE,
        ]
        .contains(&t)
    }

    /// Canonical CBOR bytes.
    pub fn encode(&self) -> Vec<u8> {
        let v = match self {
            ReviewPayload::Project(p) => map(vec![
                (0, Some(text(&p.name))),
                (1, Some(texts(&p.repositories))),
                (2, Some(text(&p.branch))),
                (3, Some(text(&p.policy))),
                (4, Some(ids(&p.maintainers))),
                (5, Some(ids(&p.committers))),
                (6, Some(ids(&p.reviewers))),
                (7, Some(Value::Bool(p.maintainers_file))),
                (8, Some(ids(&p.bridges))),
                (
                    9,
                    Some(Value::Array(
                        p.ci.iter()
                            .map(|c| {
                                map(vec![
                                    (0, Some(bytes(c.identity.0.as_bytes()))),
                                    (1, Some(texts(&c.contexts))),
                                ])
                            })
                            .collect(),
                    )),
                ),
                (10, Some(ids(&p.gates))),
                (11, Some(texts(&p.lists))),
                (12, p.amends.map(|a| bytes(&a.0))),
            ]),
            ReviewPayload::Revision(r) => map(vec![
                (0, Some(bytes(&r.project.0))),
                (1, r.series.map(|s| bytes(&s.0))),
                (2, Some(uint(r.version))),
                (3, r.base_commit.as_deref().map(text)),
                (
                    4,
                    r.cover
                        .as_ref()
                        .map(|c| map(vec![(0, Some(text(&c.subject))), (1, Some(text(&c.body)))])),
                ),
                (5, r.changelog.as_deref().map(text)),
                (
                    6,
                    Some(Value::Array(
                        r.patches
                            .iter()
                            .map(|p| {
                                map(vec![
                                    (0, Some(text(&p.subject))),
                                    (1, Some(text(&p.message))),
                                    (2, Some(text(&p.author))),
                                    (3, Some(text(&p.diff))),
                                    (4, Some(text(&p.patch_id))),
                                ])
                            })
                            .collect(),
                    )),
                ),
                (7, r.change_id.as_deref().map(text)),
                (
                    8,
                    r.mails.as_ref().map(|m| {
                        map(vec![
                            (0, m.cover.as_deref().map(text)),
                            (1, Some(texts(&m.patches))),
                        ])
                    }),
                ),
            ]),
            ReviewPayload::Review(r) => map(vec![
                (0, Some(bytes(&r.revision.0))),
                (1, r.patch.map(uint)),
                (
                    2,
                    Some(Value::Array(
                        r.trailers
                            .iter()
                            .map(|(k, v)| Value::Array(vec![text(k), text(v)]))
                            .collect(),
                    )),
                ),
                (3, r.comment.as_deref().map(text)),
                (
                    4,
                    (!r.inline.is_empty()).then(|| {
                        Value::Array(
                            r.inline
                                .iter()
                                .map(|c| {
                                    map(vec![
                                        (0, Some(text(&c.file))),
                                        (1, Some(uint(if c.side == Side::Old { 0 } else { 1 }))),
                                        (2, Some(uint(c.start_line))),
                                        (3, Some(uint(c.end_line))),
                                        (4, Some(text(&c.text))),
                                    ])
                                })
                                .collect(),
                        )
                    }),
                ),
                (5, r.retracts.map(|e| bytes(&e.0))),
                (
                    6,
                    r.mail.as_ref().map(|m| {
                        map(vec![
                            (0, Some(text(&m.message_id))),
                            (1, Some(text(&m.from))),
                            (2, Some(text(&m.dkim))),
                        ])
                    }),
                ),
                (
                    7,
                    (!r.flagged.is_empty()).then(|| {
                        Value::Array(
                            r.flagged
                                .iter()
                                .map(|f| {
                                    Value::Array(vec![
                                        text(&f.key),
                                        text(&f.value),
                                        text(&f.reason),
                                    ])
                                })
                                .collect(),
                        )
                    }),
                ),
            ]),
            ReviewPayload::Ci(c) => map(vec![
                (0, Some(bytes(&c.revision.0))),
                (1, Some(text(&c.context))),
                (2, Some(text(c.status.as_str()))),
                (3, Some(text(&c.summary))),
                (4, c.log_excerpt.as_deref().map(text)),
                (5, c.log_hash.map(|h| bytes(&h))),
                (6, c.runner.as_deref().map(text)),
                (7, c.duration_ms.map(uint)),
                (8, c.url.as_deref().map(text)),
            ]),
            ReviewPayload::Merge(m) => map(vec![
                (0, Some(bytes(&m.revision.0))),
                (1, Some(texts(&m.commits))),
                (2, Some(text(&m.branch))),
                (
                    3,
                    Some(Value::Array(m.cites.iter().map(|e| bytes(&e.0)).collect())),
                ),
            ]),
            ReviewPayload::Tag(t) => map(vec![
                (0, Some(bytes(&t.target.0))),
                (1, Some(text(&t.label))),
                (2, Some(Value::Bool(t.add))),
            ]),
            ReviewPayload::Withdraw(s) => map(vec![(0, Some(bytes(&s.0)))]),
        };
        cbor::encode(&v).unwrap_or_default()
    }

    /// Decodes a payload of one of these types; `Ok(None)` for other types.
    pub fn decode(payload_type: &str, data: &[u8]) -> Result<Option<ReviewPayload>, PayloadError> {
        let what: &'static str = match payload_type {
            PROJECT_TYPE => PROJECT_TYPE,
            REVISION_TYPE => REVISION_TYPE,
            REVIEW_TYPE => REVIEW_TYPE,
            CI_TYPE => CI_TYPE,
            MERGE_TYPE => MERGE_TYPE,
            TAG_TYPE => TAG_TYPE,
            WITHDRAW_TYPE => WITHDRAW_TYPE,
            _ => return Ok(None),
        };
        let v = cbor::decode(data, MAX_PAYLOAD_SIZE as usize)?;
        let mut m = IntMap::from_value(what, v)?;
        let r = Reader { what };
        let p = match what {
            PROJECT_TYPE => ReviewPayload::Project(Project {
                name: r.short(m.req(what, 0)?, 0)?,
                repositories: r.list(m.req(what, 1)?, 1, |v| r.short(v, 1))?,
                branch: r.short(m.req(what, 2)?, 2)?,
                policy: r.long(m.req(what, 3)?, 3)?,
                maintainers: r.list(m.req(what, 4)?, 4, |v| r.identity(v, 4))?,
                committers: r.list(m.req(what, 5)?, 5, |v| r.identity(v, 5))?,
                reviewers: r.list(m.req(what, 6)?, 6, |v| r.identity(v, 6))?,
                maintainers_file: r.boolean(m.req(what, 7)?, 7)?,
                bridges: r.list(m.req(what, 8)?, 8, |v| r.identity(v, 8))?,
                ci: r.list(m.req(what, 9)?, 9, |v| {
                    let mut c = IntMap::from_value(what, v)?;
                    let role = CiRole {
                        identity: r.identity(c.req(what, 0)?, 9)?,
                        contexts: r.list(c.req(what, 1)?, 9, |v| r.short(v, 9))?,
                    };
                    c.finish(what)?;
                    Ok(role)
                })?,
                gates: r.list(m.req(what, 10)?, 10, |v| r.identity(v, 10))?,
                lists: r.list(m.req(what, 11)?, 11, |v| r.short(v, 11))?,
                amends: m.take(12).map(|v| r.entry(v, 12)).transpose()?,
            }),
            REVISION_TYPE => ReviewPayload::Revision(Revision {
                project: r.entry(m.req(what, 0)?, 0)?,
                series: m.take(1).map(|v| r.entry(v, 1)).transpose()?,
                version: m.uint(what, 2)?,
                base_commit: m.take(3).map(|v| r.short(v, 3)).transpose()?,
                cover: m
                    .take(4)
                    .map(|v| {
                        let mut c = IntMap::from_value(what, v)?;
                        let cover = Cover {
                            subject: r.short(c.req(what, 0)?, 4)?,
                            body: r.long(c.req(what, 1)?, 4)?,
                        };
                        c.finish(what)?;
                        Ok::<_, PayloadError>(cover)
                    })
                    .transpose()?,
                changelog: m.take(5).map(|v| r.long(v, 5)).transpose()?,
                patches: {
                    let list = r.list(m.req(what, 6)?, 6, |v| {
                        let mut p = IntMap::from_value(what, v)?;
                        let patch = Patch {
                            subject: r.short(p.req(what, 0)?, 6)?,
                            message: r.long(p.req(what, 1)?, 6)?,
                            author: r.short(p.req(what, 2)?, 6)?,
                            diff: r.any_text(p.req(what, 3)?, 6)?,
                            patch_id: r.short(p.req(what, 4)?, 6)?,
                        };
                        p.finish(what)?;
                        Ok(patch)
                    })?;
                    if list.len() > MAX_PATCHES {
                        return Err(r.invalid(
                            6,
                            format!("{} patches, more than {MAX_PATCHES}", list.len()),
                        ));
                    }
                    list
                },
                change_id: m.take(7).map(|v| r.short(v, 7)).transpose()?,
                mails: m
                    .take(8)
                    .map(|v| {
                        let mut c = IntMap::from_value(what, v)?;
                        let mails = RevisionMails {
                            cover: c.take(0).map(|v| r.short(v, 8)).transpose()?,
                            patches: r.list(c.req(what, 1)?, 8, |v| r.short(v, 8))?,
                        };
                        c.finish(what)?;
                        Ok::<_, PayloadError>(mails)
                    })
                    .transpose()?,
            }),
            REVIEW_TYPE => ReviewPayload::Review(Review {
                revision: r.entry(m.req(what, 0)?, 0)?,
                patch: m.take(1).map(|v| cbor::as_uint(what, 1, v)).transpose()?,
                trailers: {
                    let t = r.list(m.req(what, 2)?, 2, |v| match v {
                        Value::Array(pair) if pair.len() == 2 => {
                            let mut it = pair.into_iter();
                            let k = r.short(it.next().unwrap_or(Value::Null), 2)?;
                            let v = r.short(it.next().unwrap_or(Value::Null), 2)?;
                            Ok((k, v))
                        }
                        other => Err(r.invalid(
                            2,
                            format!(
                                "a trailer should be [key, value], found {}",
                                cbor::kind(&other)
                            ),
                        )),
                    })?;
                    if t.len() > MAX_TRAILERS {
                        return Err(r.invalid(
                            2,
                            format!("{} trailers, more than {MAX_TRAILERS}", t.len()),
                        ));
                    }
                    t
                },
                comment: m.take(3).map(|v| r.long(v, 3)).transpose()?,
                inline: m
                    .take(4)
                    .map(|v| {
                        r.list(v, 4, |v| {
                            let mut c = IntMap::from_value(what, v)?;
                            let side = match c.uint(what, 1)? {
                                0 => Side::Old,
                                1 => Side::New,
                                n => {
                                    return Err(r.invalid(
                                        4,
                                        format!("side {n}, expected 0 (old) or 1 (new)"),
                                    ));
                                }
                            };
                            let ic = InlineComment {
                                file: r.short(c.req(what, 0)?, 4)?,
                                side,
                                start_line: c.uint(what, 2)?,
                                end_line: c.uint(what, 3)?,
                                text: r.long(c.req(what, 4)?, 4)?,
                            };
                            c.finish(what)?;
                            Ok(ic)
                        })
                    })
                    .transpose()?
                    .unwrap_or_default(),
                retracts: m.take(5).map(|v| r.entry(v, 5)).transpose()?,
                mail: m
                    .take(6)
                    .map(|v| {
                        let mut c = IntMap::from_value(what, v)?;
                        let mail = ReviewMail {
                            message_id: r.short(c.req(what, 0)?, 6)?,
                            from: r.short(c.req(what, 1)?, 6)?,
                            dkim: r.short(c.req(what, 2)?, 6)?,
                        };
                        c.finish(what)?;
                        Ok::<_, PayloadError>(mail)
                    })
                    .transpose()?,
                flagged: {
                    let f = m
                        .take(7)
                        .map(|v| {
                            r.list(v, 7, |v| match v {
                                Value::Array(t) if t.len() == 3 => {
                                    let mut it = t.into_iter();
                                    let mut next = || r.short(it.next().unwrap_or(Value::Null), 7);
                                    Ok(FlaggedTrailer {
                                        key: next()?,
                                        value: next()?,
                                        reason: next()?,
                                    })
                                }
                                other => Err(r.invalid(
                                    7,
                                    format!(
                                        "a flagged trailer should be [key, value, reason], found {}",
                                        cbor::kind(&other)
                                    ),
                                )),
                            })
                        })
                        .transpose()?
                        .unwrap_or_default();
                    if f.len() > MAX_TRAILERS {
                        return Err(r.invalid(
                            7,
                            format!("{} flagged trailers, more than {MAX_TRAILERS}", f.len()),
                        ));
                    }
                    f
                },
            }),
            CI_TYPE => ReviewPayload::Ci(CiResult {
                revision: r.entry(m.req(what, 0)?, 0)?,
                context: r.short(m.req(what, 1)?, 1)?,
                status: {
                    let s = r.short(m.req(what, 2)?, 2)?;
                    CiStatus::parse(&s)
                        .ok_or_else(|| r.invalid(2, format!("unknown CI status {s:?}")))?
                },
                summary: r.long(m.req(what, 3)?, 3)?,
                log_excerpt: m.take(4).map(|v| r.long(v, 4)).transpose()?,
                log_hash: m.opt_bytes32(what, 5)?,
                runner: m.take(6).map(|v| r.short(v, 6)).transpose()?,
                duration_ms: m.take(7).map(|v| cbor::as_uint(what, 7, v)).transpose()?,
                url: m.take(8).map(|v| r.short(v, 8)).transpose()?,
            }),
            MERGE_TYPE => ReviewPayload::Merge(Merge {
                revision: r.entry(m.req(what, 0)?, 0)?,
                commits: r.list(m.req(what, 1)?, 1, |v| r.short(v, 1))?,
                branch: r.short(m.req(what, 2)?, 2)?,
                cites: r.list(m.req(what, 3)?, 3, |v| r.entry(v, 3))?,
            }),
            TAG_TYPE => ReviewPayload::Tag(Tag {
                target: r.entry(m.req(what, 0)?, 0)?,
                label: r.short(m.req(what, 1)?, 1)?,
                add: r.boolean(m.req(what, 2)?, 2)?,
            }),
            _ => ReviewPayload::Withdraw(r.entry(m.req(what, 0)?, 0)?),
        };
        m.finish(what)?;
        if let ReviewPayload::Revision(rev) = &p
            && let Some(mails) = &rev.mails
            && mails.patches.len() != rev.patches.len()
        {
            return Err(r.invalid(
                8,
                format!(
                    "{} patch Message-IDs for {} patches",
                    mails.patches.len(),
                    rev.patches.len()
                ),
            ));
        }
        Ok(Some(p))
    }
}

/// Typed field readers with bounds, for one payload type.
struct Reader {
    what: &'static str,
}

impl Reader {
    fn invalid(&self, key: u64, detail: String) -> PayloadError {
        FieldError::Invalid {
            what: self.what,
            detail: format!("field {key}: {detail}"),
        }
        .into()
    }
    fn bounded(&self, v: Value, key: u64, max: usize) -> Result<String, PayloadError> {
        let s = cbor::as_text(self.what, key, v)?;
        if s.len() > max {
            return Err(self.invalid(key, format!("{} bytes, more than {max}", s.len())));
        }
        Ok(s)
    }
    fn short(&self, v: Value, key: u64) -> Result<String, PayloadError> {
        self.bounded(v, key, MAX_SHORT_TEXT)
    }
    fn long(&self, v: Value, key: u64) -> Result<String, PayloadError> {
        self.bounded(v, key, MAX_LONG_TEXT)
    }
    /// Text bounded only by the payload size (diffs).
    fn any_text(&self, v: Value, key: u64) -> Result<String, PayloadError> {
        Ok(cbor::as_text(self.what, key, v)?)
    }
    fn boolean(&self, v: Value, key: u64) -> Result<bool, PayloadError> {
        match v {
            Value::Bool(b) => Ok(b),
            other => Err(self.invalid(
                key,
                format!("expected a boolean, found {}", cbor::kind(&other)),
            )),
        }
    }
    fn entry(&self, v: Value, key: u64) -> Result<EntryId, PayloadError> {
        Ok(EntryId(cbor::as_bytes32(self.what, key, v)?))
    }
    fn identity(&self, v: Value, key: u64) -> Result<IdentityId, PayloadError> {
        let b = cbor::as_bytes32(self.what, key, v)?;
        crate::keys::validated_key(&b)
            .map(IdentityId)
            .map_err(|e| self.invalid(key, e.to_string()))
    }
    fn list<T>(
        &self,
        v: Value,
        key: u64,
        mut each: impl FnMut(Value) -> Result<T, PayloadError>,
    ) -> Result<Vec<T>, PayloadError> {
        match v {
            Value::Array(items) if items.len() <= MAX_LIST.max(MAX_INLINE_COMMENTS) => {
                items.into_iter().map(&mut each).collect()
            }
            Value::Array(items) => {
                Err(self.invalid(key, format!("{} items, more than {MAX_LIST}", items.len())))
            }
            other => Err(self.invalid(
                key,
                format!("expected an array, found {}", cbor::kind(&other)),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;

    fn e(n: u8) -> EntryId {
        EntryId([n; 32])
    }

    #[test]
    fn every_type_round_trips() {
        let id = IdentityId(SecretKey::from_seed(&[1; 32]).public());
        let all = vec![
            ReviewPayload::Project(Project {
                name: "xen".into(),
                repositories: vec!["https://xenbits.example/xen.git".into()],
                branch: "staging".into(),
                policy: "[review]\nmin_reviewed_by = 2\n".into(),
                maintainers: vec![id],
                maintainers_file: true,
                ci: vec![CiRole {
                    identity: id,
                    contexts: vec!["build".into(), "test".into()],
                }],
                gates: vec![id],
                lists: vec!["xen-devel@lists.example.org".into()],
                ..Project::default()
            }),
            ReviewPayload::Revision(Revision {
                project: e(1),
                series: Some(e(2)),
                version: 3,
                base_commit: Some("a".repeat(40)),
                cover: Some(Cover {
                    subject: "[PATCH v3 0/1] x".into(),
                    body: "why".into(),
                }),
                changelog: Some("v3: fix".into()),
                patches: vec![Patch {
                    subject: "x: fix".into(),
                    message: "body\n\nSigned-off-by: A <a@example.org>\n".into(),
                    author: "A <a@example.org>".into(),
                    diff: "diff --git a/x b/x\n".into(),
                    patch_id: "b".repeat(40),
                }],
                change_id: Some("20261121-x-abc".into()),
                mails: None,
            }),
            ReviewPayload::Review(Review {
                revision: e(3),
                patch: Some(1),
                trailers: vec![("Reviewed-by".into(), "B <b@example.org>".into())],
                comment: Some("looks good".into()),
                inline: vec![InlineComment {
                    file: "x".into(),
                    side: Side::New,
                    start_line: 3,
                    end_line: 4,
                    text: "nit".into(),
                }],
                retracts: None,
                mail: None,
                flagged: Vec::new(),
            }),
            ReviewPayload::Ci(CiResult {
                revision: e(3),
                context: "build".into(),
                status: CiStatus::Fail,
                summary: "2 errors".into(),
                log_excerpt: Some("error: x".into()),
                log_hash: Some([9; 32]),
                runner: Some("ci-1".into()),
                duration_ms: Some(1234),
                url: None,
            }),
            ReviewPayload::Merge(Merge {
                revision: e(3),
                commits: vec!["c".repeat(40)],
                branch: "staging".into(),
                cites: vec![e(4), e(5)],
            }),
            ReviewPayload::Tag(Tag {
                target: e(2),
                label: "RFC".into(),
                add: true,
            }),
            ReviewPayload::Withdraw(e(2)),
        ];
        for p in all {
            let bytes = p.encode();
            crate::cbor::check_canonical(&bytes, bytes.len()).unwrap();
            assert_eq!(
                ReviewPayload::decode(p.type_name(), &bytes).unwrap(),
                Some(p.clone()),
                "{}",
                p.type_name()
            );
        }
    }

    #[test]
    fn bad_payloads_are_refused() {
        let ci = ReviewPayload::Ci(CiResult {
            revision: e(1),
            context: "c".into(),
            status: CiStatus::Pass,
            summary: String::new(),
            log_excerpt: None,
            log_hash: None,
            runner: None,
            duration_ms: None,
            url: None,
        })
        .encode();
        // Status replaced by an unknown word of the same length.
        let bad = String::from_utf8_lossy(&ci)
            .replace("pass", "meh!")
            .into_bytes();
        assert!(ReviewPayload::decode(CI_TYPE, &bad).is_err());
        assert!(ReviewPayload::decode(REVIEW_TYPE, &ci).is_err());
        assert_eq!(ReviewPayload::decode("tagline/note", &ci).unwrap(), None);
    }
}
