//! Where a series stands: [`evaluate`] computes, from the entries alone, a
//! series' state and every rule of the project's policy with what holds, what
//! is missing and which entries it used. Pure and deterministic: the same set
//! of entries, in any order and with duplicates, gives the same answer on
//! every node.

use std::collections::{BTreeMap, BTreeSet};

use tagline_format::identity::IdentityId;
use tagline_format::review::{CiStatus, Project as ProjectDecl, ReviewPayload, Revision};
use tagline_format::{EntryId, PublicKey, SignedHeader};
use tagline_identity::Registry;

use crate::maintainers::{Maintainers, files_of_patch, parse_email};
use crate::policy::{Policy, Role};
use crate::trailers;

/// Milliseconds in an hour (policy periods are given in hours).
const MS_PER_HOUR: u64 = 3_600_000;

/// One review-model entry, as the rules need it.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub id: EntryId,
    pub author: PublicKey,
    pub seq: u64,
    pub timestamp: u64,
    pub payload: &'a ReviewPayload,
}

impl<'a> Input<'a> {
    /// The input for a stored entry and its decoded payload.
    pub fn new(signed: &SignedHeader, payload: &'a ReviewPayload) -> Input<'a> {
        Input {
            id: signed.id(),
            author: *signed.author(),
            seq: signed.seq(),
            timestamp: signed.header().timestamp,
            payload,
        }
    }
}

/// The project a series belongs to, resolved by the caller.
#[derive(Debug, Clone, Copy)]
pub struct ProjectContext<'a> {
    /// The project's declaring entry.
    pub id: EntryId,
    /// The lead identity (author of the declaration).
    pub lead: Option<IdentityId>,
    pub decl: &'a ProjectDecl,
    pub policy: &'a Policy,
    /// The MAINTAINERS file at the series' base, when the project uses one.
    pub maintainers_file: Option<&'a Maintainers>,
}

/// A series' state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum State {
    Posted,
    ChangesRequested,
    CiFailed,
    Approved,
    Merged,
    Withdrawn,
    Rejected,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Posted => "posted",
            State::ChangesRequested => "changes-requested",
            State::CiFailed => "ci-failed",
            State::Approved => "approved",
            State::Merged => "merged",
            State::Withdrawn => "withdrawn",
            State::Rejected => "rejected",
        }
    }
}

/// How a rule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Held,
    Missing,
    Failed,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Held => "held",
            Outcome::Missing => "missing",
            Outcome::Failed => "failed",
        }
    }
}

/// One rule's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleResult {
    /// Stable rule name: `dco`, `ci:CONTEXT`, `reviewed-by`, `maintainer-ack`,
    /// `no-nack`, `rfc`, `freeze`, `quiet-period`.
    pub rule: String,
    pub outcome: Outcome,
    /// For people: what holds or what is still missing.
    pub message: String,
    /// The entries the rule used.
    pub entries: Vec<EntryId>,
}

impl RuleResult {
    /// A rule's result from its verdict: `Ok(message)` when it holds, else
    /// `Err((outcome, message))` saying what fails or is missing.
    fn of(rule: &str, verdict: Result<String, (Outcome, String)>, entries: Vec<EntryId>) -> Self {
        let (outcome, message) = match verdict {
            Ok(m) => (Outcome::Held, m),
            Err(x) => x,
        };
        RuleResult {
            rule: rule.into(),
            outcome,
            message,
            entries,
        }
    }
}

/// A trailer that counts for the latest revision.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CountedTrailer {
    /// 1-based patch number in the latest revision.
    pub patch: u64,
    pub key: String,
    pub identity: IdentityId,
    /// The review entry that gave it.
    pub entry: EntryId,
    /// The version it was given on, when carried from an earlier one.
    pub carried_from: Option<u64>,
}

/// A trailer that is shown but does not count, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UncountedTrailer {
    pub entry: EntryId,
    pub trailer: String,
    pub reason: String,
}

/// Everything [`evaluate`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub state: State,
    /// Revisions in version order: (version, entry id); all but the last are superseded.
    pub revisions: Vec<(u64, EntryId)>,
    pub rules: Vec<RuleResult>,
    pub trailers: Vec<CountedTrailer>,
    pub uncounted: Vec<UncountedTrailer>,
    /// The evaluation holds for every `now` from the one given up to (not
    /// including) this time, as long as the entries do not change: the next
    /// freeze boundary or the end of a quiet period. `None`: for all later
    /// times. Lets readers cache an evaluation.
    pub valid_until: Option<u64>,
}

impl Evaluation {
    pub fn latest(&self) -> Option<(u64, EntryId)> {
        self.revisions.last().copied()
    }
}

const REVIEWED_BY: &str = "Reviewed-by";
const ACKED_BY: &str = "Acked-by";
const TESTED_BY: &str = "Tested-by";
const NACKED_BY: &str = "Nacked-by";

fn canonical_key(k: &str) -> Option<&'static str> {
    [REVIEWED_BY, ACKED_BY, TESTED_BY, NACKED_BY]
        .into_iter()
        .find(|c| c.eq_ignore_ascii_case(k.trim()))
}

/// Who holds which role in a project.
struct Roles {
    maintainers: BTreeSet<IdentityId>,
    reviewers: BTreeSet<IdentityId>,
    committers: BTreeSet<IdentityId>,
    /// MAINTAINERS addresses (lowercase) → identities verified for them.
    by_address: BTreeMap<String, BTreeSet<IdentityId>>,
}

/// Domain separation of [`address_person`].
const ADDRESS_PERSON_CONTEXT: &str = "tagline/v1/maintainers-address";

/// The person behind an address the MAINTAINERS file lists, when the
/// policy counts such addresses (`review.maintainers_file_addresses`) and
/// no identity has verified it: an id derived from the address (blake3
/// keyed by [`ADDRESS_PERSON_CONTEXT`]), never a real identity's. It is
/// not a public key and stands for nothing outside these rules.
pub fn address_person(address: &str) -> IdentityId {
    let h = blake3::derive_key(
        ADDRESS_PERSON_CONTEXT,
        address.trim().to_lowercase().as_bytes(),
    );
    IdentityId(tagline_format::PublicKey::from_cached_bytes(&h))
}

fn verified_addresses(
    reg: &Registry,
    trusted: &BTreeSet<IdentityId>,
) -> BTreeMap<String, BTreeSet<IdentityId>> {
    let mut out: BTreeMap<String, BTreeSet<IdentityId>> = BTreeMap::new();
    for ident in reg.identities.values() {
        for e in &ident.emails {
            let ok = e
                .proofs
                .iter()
                .any(|(by, _, _)| reg.owner_of(by).is_some_and(|p| trusted.contains(&p)));
            if ok {
                out.entry(e.address.to_lowercase())
                    .or_default()
                    .insert(ident.id);
            }
        }
    }
    out
}

fn latest_by<'a, T>(items: impl Iterator<Item = (&'a Input<'a>, T)>) -> Option<(&'a Input<'a>, T)> {
    items.max_by(|(a, _), (b, _)| (a.timestamp, a.id).cmp(&(b.timestamp, b.id)))
}

/// The keys whose owners [`evaluate`] (and project resolution) look up for
/// these entries: their authors. With [`declared_identities`] and the
/// registry's `email_closure`, the identities a partial registry must hold
/// for `evaluate` to answer as with the whole one.
pub fn consulted_keys(entries: &[Input<'_>]) -> BTreeSet<PublicKey> {
    entries.iter().map(|e| e.author).collect()
}

/// The identities a project declaration names (lead and every role).
pub fn declared_identities(decl: &ProjectDecl, lead: Option<IdentityId>) -> BTreeSet<IdentityId> {
    let mut out: BTreeSet<IdentityId> = lead.into_iter().collect();
    out.extend(decl.maintainers.iter().copied());
    out.extend(decl.reviewers.iter().copied());
    out.extend(decl.committers.iter().copied());
    out.extend(decl.bridges.iter().copied());
    out.extend(decl.gates.iter().copied());
    out.extend(decl.ci.iter().map(|c| c.identity));
    out
}

/// Evaluates series `series` (its first revision's id) of `project` from
/// `entries` (any order, duplicates allowed), with identities `reg`, at `now_ms`.
pub fn evaluate(
    series: EntryId,
    entries: &[Input<'_>],
    project: &ProjectContext<'_>,
    reg: &Registry,
    now_ms: u64,
) -> Evaluation {
    let policy = project.policy;
    // Dedup by id, keep a stable order.
    let mut by_id: BTreeMap<EntryId, &Input<'_>> = BTreeMap::new();
    for e in entries {
        by_id.entry(e.id).or_insert(e);
    }
    let all: Vec<&Input<'_>> = by_id.values().copied().collect();
    let who = |e: &Input<'_>| reg.identity_of(&e.author, e.seq);

    // Revisions of the series, by its author.
    let first = all.iter().find(|e| {
        e.id == series && matches!(e.payload, ReviewPayload::Revision(r) if r.series.is_none())
    });
    let Some(first) = first.copied() else {
        return Evaluation {
            state: State::Posted,
            revisions: Vec::new(),
            rules: vec![RuleResult::of(
                "series",
                Err((
                    Outcome::Missing,
                    format!("the first revision {} is not held here", series.short()),
                )),
                Vec::new(),
            )],
            trailers: Vec::new(),
            uncounted: Vec::new(),
            valid_until: None,
        };
    };
    let author_id = who(first);
    let same_author = |e: &Input<'_>| match author_id {
        Some(a) => who(e) == Some(a),
        None => e.author == first.author,
    };
    let mut revisions: Vec<(&Input<'_>, &Revision)> = all
        .iter()
        .filter_map(|e| match e.payload {
            ReviewPayload::Revision(r)
                if r.project == project.id
                    && (e.id == series || r.series == Some(series))
                    && same_author(e) =>
            {
                Some((*e, r))
            }
            _ => None,
        })
        .collect();
    revisions.sort_by(|(a, ra), (b, rb)| {
        (ra.version, a.timestamp, a.id).cmp(&(rb.version, b.timestamp, b.id))
    });
    let Some((latest_entry, latest)) = revisions.last().copied() else {
        return Evaluation {
            state: State::Posted,
            revisions: Vec::new(),
            rules: Vec::new(),
            trailers: Vec::new(),
            uncounted: Vec::new(),
            valid_until: None,
        };
    };
    let revision_ids: BTreeMap<EntryId, &Revision> =
        revisions.iter().map(|(e, r)| (e.id, *r)).collect();
    let version_of: BTreeMap<EntryId, u64> =
        revisions.iter().map(|(e, r)| (e.id, r.version)).collect();

    // Roles.
    let mut trusted: BTreeSet<IdentityId> = project.decl.bridges.iter().copied().collect();
    trusted.extend(project.lead);
    let by_address = verified_addresses(reg, &trusted);
    let mut roles = Roles {
        maintainers: project.decl.maintainers.iter().copied().collect(),
        reviewers: project.decl.reviewers.iter().copied().collect(),
        committers: project.decl.committers.iter().copied().collect(),
        by_address,
    };
    roles.maintainers.extend(project.lead);
    // With the policy's consent, addresses MAINTAINERS lists stand for a
    // person of their own when no identity has verified them.
    if policy.review.maintainers_file_addresses
        && project.decl.maintainers_file
        && let Some(m) = project.maintainers_file
    {
        for sec in &m.sections {
            for v in sec.values('M').into_iter().chain(sec.values('R')) {
                let addr = parse_email(&v).1.to_lowercase();
                if !addr.is_empty() && !roles.by_address.contains_key(&addr) {
                    roles
                        .by_address
                        .insert(addr.clone(), [address_person(&addr)].into());
                }
            }
        }
    }
    let section_people = |tag: char| -> BTreeSet<IdentityId> {
        let mut out = BTreeSet::new();
        if let Some(m) = project.maintainers_file {
            for sec in &m.sections {
                for v in sec.values(tag) {
                    let (_, addr) = parse_email(&v);
                    if let Some(ids) = roles.by_address.get(&addr.to_lowercase()) {
                        out.extend(ids.iter().copied());
                    }
                }
            }
        }
        out
    };
    if project.decl.maintainers_file {
        let m = section_people('M');
        let r = section_people('R');
        roles.maintainers.extend(m);
        roles.reviewers.extend(r);
    }
    let is_maintainer = |i: &IdentityId| roles.maintainers.contains(i);
    // The one identity an address is verified for, if exactly one.
    let verified_one = |addr: &str| {
        roles
            .by_address
            .get(&addr.to_lowercase())
            .and_then(|s| (s.len() == 1).then(|| s.iter().next().copied()).flatten())
    };
    // The person behind the series: its author's identity, or for a series a
    // trusted bridge read from a list, the one identity verified for the
    // address its first patch was sent from.
    let person_id = match (author_id, latest.patches.first()) {
        (Some(a), Some(p)) if project.decl.bridges.contains(&a) => {
            verified_one(&parse_email(&p.author).1)
        }
        (a, _) => a,
    };

    // Reviews: retractions first.
    let reviews: Vec<(&Input<'_>, &tagline_format::review::Review)> = all
        .iter()
        .filter_map(|e| match e.payload {
            ReviewPayload::Review(r) if revision_ids.contains_key(&r.revision) => Some((*e, r)),
            _ => None,
        })
        .collect();
    let retracted: BTreeSet<EntryId> = all
        .iter()
        .filter_map(|e| match e.payload {
            ReviewPayload::Review(r) => r.retracts.and_then(|target| {
                let t = by_id.get(&target)?;
                (who(e).is_some() && who(e) == who(t)).then_some(target)
            }),
            _ => None,
        })
        .collect();

    // Counted trailers, mapped onto the latest revision by patch-id.
    let mut counted: BTreeSet<CountedTrailer> = BTreeSet::new();
    let mut uncounted: BTreeSet<UncountedTrailer> = BTreeSet::new();
    for (e, r) in &reviews {
        if retracted.contains(&e.id) {
            continue;
        }
        let Some(rev) = revision_ids.get(&r.revision) else {
            continue;
        };
        let version = version_of.get(&r.revision).copied().unwrap_or(0);
        let author = who(e);
        let bridged = author.is_some_and(|a| project.decl.bridges.contains(&a));
        for f in &r.flagged {
            uncounted.insert(UncountedTrailer {
                entry: e.id,
                trailer: format!("{}: {}", f.key, f.value),
                reason: format!("flagged by the bridge: {}", f.reason),
            });
        }
        // The patch ids the review covers.
        let covered: Vec<&str> = match r.patch {
            Some(k) => rev
                .patches
                .get(usize::try_from(k).unwrap_or(usize::MAX).wrapping_sub(1))
                .map(|p| p.patch_id.as_str())
                .into_iter()
                .collect(),
            None => rev.patches.iter().map(|p| p.patch_id.as_str()).collect(),
        };
        for (key, value) in &r.trailers {
            let Some(key) = canonical_key(key) else {
                continue;
            };
            let shown = format!("{key}: {value}");
            let identity = if bridged {
                let (_, addr) = parse_email(value);
                match verified_one(&addr) {
                    Some(i) => Some(i),
                    None => {
                        uncounted.insert(UncountedTrailer {
                            entry: e.id,
                            trailer: shown,
                            reason: format!("{addr} is not verified for any identity"),
                        });
                        continue;
                    }
                }
            } else {
                author
            };
            let Some(identity) = identity else {
                uncounted.insert(UncountedTrailer {
                    entry: e.id,
                    trailer: shown,
                    reason: "written by a key of no known identity".into(),
                });
                continue;
            };
            if Some(identity) == person_id && key != TESTED_BY {
                uncounted.insert(UncountedTrailer {
                    entry: e.id,
                    trailer: shown,
                    reason: "the series author's own".into(),
                });
                continue;
            }
            for (k, p) in latest.patches.iter().enumerate() {
                if covered.contains(&p.patch_id.as_str()) {
                    counted.insert(CountedTrailer {
                        patch: k as u64 + 1,
                        key: key.to_string(),
                        identity,
                        entry: e.id,
                        carried_from: (version != latest.version).then_some(version),
                    });
                }
            }
            // The reviewed patches with no unchanged counterpart now.
            let changed: Vec<u64> = rev
                .patches
                .iter()
                .enumerate()
                .filter(|(j, p)| {
                    (r.patch.is_none() || r.patch == Some(*j as u64 + 1))
                        && !latest.patches.iter().any(|l| l.patch_id == p.patch_id)
                })
                .map(|(j, _)| j as u64 + 1)
                .collect();
            if !changed.is_empty() {
                uncounted.insert(UncountedTrailer {
                    entry: e.id,
                    trailer: shown,
                    reason: format!("given on v{version}; not carried for patch {} of v{version}, which changed since", join(&changed)),
                });
            }
        }
    }
    let counted: Vec<CountedTrailer> = counted.into_iter().collect();
    let n_patches = latest.patches.len() as u64;
    let with = |key: &str, patch: u64| -> BTreeMap<IdentityId, EntryId> {
        counted
            .iter()
            .filter(|t| t.key == key && t.patch == patch)
            .map(|t| (t.identity, t.entry))
            .collect()
    };

    let mut rules = Vec::new();

    // DCO.
    if policy.dco.require_signed_off_by {
        let missing: Vec<u64> = latest
            .patches
            .iter()
            .enumerate()
            .filter(|(_, p)| {
                let (_, author_addr) = parse_email(&p.author);
                !trailers::parse(&format!("x\n\n{}", p.message))
                    .iter()
                    .any(|t| {
                        t.is("Signed-off-by")
                            && parse_email(&t.value).1.eq_ignore_ascii_case(&author_addr)
                    })
            })
            .map(|(k, _)| k as u64 + 1)
            .collect();
        let verdict = if missing.is_empty() {
            Ok("every patch carries its author's Signed-off-by".into())
        } else {
            Err((
                Outcome::Failed,
                format!("patch {} lacks its author's Signed-off-by", join(&missing)),
            ))
        };
        rules.push(RuleResult::of("dco", verdict, vec![latest_entry.id]));
    }

    // CI.
    for context in &policy.ci.required {
        let allowed: BTreeSet<IdentityId> = project
            .decl
            .ci
            .iter()
            .filter(|c| c.contexts.contains(context))
            .map(|c| c.identity)
            .collect();
        let result = latest_by(all.iter().filter_map(|e| match e.payload {
            ReviewPayload::Ci(c)
                if c.revision == latest_entry.id
                    && &c.context == context
                    && who(e).is_some_and(|i| allowed.contains(&i)) =>
            {
                Some((*e, c))
            }
            _ => None,
        }));
        let (outcome, message, used) = match result {
            None => (
                Outcome::Missing,
                format!("ci {context}: no result yet for v{}", latest.version),
                Vec::new(),
            ),
            Some((e, c)) => match c.status {
                CiStatus::Pass | CiStatus::Warning => (
                    Outcome::Held,
                    format!("ci {context}: {}", c.status.as_str()),
                    vec![e.id],
                ),
                CiStatus::Pending => (
                    Outcome::Missing,
                    format!("ci {context}: pending"),
                    vec![e.id],
                ),
                CiStatus::Fail | CiStatus::Error => (
                    Outcome::Failed,
                    format!(
                        "ci {context}: {}: {}",
                        c.status.as_str(),
                        first_line(&c.summary)
                    ),
                    vec![e.id],
                ),
            },
        };
        rules.push(RuleResult {
            rule: format!("ci:{context}"),
            outcome,
            message,
            entries: used,
        });
    }

    // Reviewed-by.
    let min = u64::from(policy.review.min_reviewed_by);
    if min > 0 {
        let counts_for_review = |i: &IdentityId| {
            policy.review.reviewer_roles.iter().any(|r| match r {
                Role::Any => true,
                Role::Maintainer => roles.maintainers.contains(i),
                Role::Reviewer => roles.reviewers.contains(i),
                Role::Committer => roles.committers.contains(i),
            })
        };
        let mut short: Vec<String> = Vec::new();
        let mut used: BTreeSet<EntryId> = BTreeSet::new();
        for k in 1..=n_patches {
            let ok: Vec<(IdentityId, EntryId)> = with(REVIEWED_BY, k)
                .into_iter()
                .filter(|(i, _)| counts_for_review(i))
                .collect();
            used.extend(ok.iter().map(|(_, e)| *e));
            if (ok.len() as u64) < min {
                short.push(format!("patch {k} needs {} more", min - ok.len() as u64));
            }
        }
        let verdict = if short.is_empty() {
            Ok(format!("{min} Reviewed-by on every patch"))
        } else {
            Err((
                Outcome::Missing,
                format!(
                    "Reviewed-by ({} of the roles {}): {}",
                    min,
                    role_names(&policy.review.reviewer_roles),
                    short.join("; ")
                ),
            ))
        };
        rules.push(RuleResult::of(
            "reviewed-by",
            verdict,
            used.into_iter().collect(),
        ));
    }

    // Maintainer acks: every file of every patch covered by an Acked-by or
    // Reviewed-by from a maintainer of a section matching it (or of the project).
    if policy.review.require_maintainer_ack {
        let mut needs: Vec<String> = Vec::new();
        let mut used: BTreeSet<EntryId> = BTreeSet::new();
        for (k, p) in latest.patches.iter().enumerate() {
            let k = k as u64 + 1;
            let mut approvers: BTreeMap<IdentityId, EntryId> = with(ACKED_BY, k);
            approvers.extend(with(REVIEWED_BY, k));
            // Maintainers the project declares cover all code (like Xen's THE REST);
            // the lead does not implicitly.
            let project_ok: Vec<EntryId> = approvers
                .iter()
                .filter(|(i, _)| project.decl.maintainers.contains(i))
                .map(|(_, e)| *e)
                .collect();
            match project
                .maintainers_file
                .filter(|_| project.decl.maintainers_file)
            {
                Some(m) => {
                    for f in files_of_patch(&p.diff) {
                        let sections = m.matching(&f);
                        let section_maintainers: BTreeSet<IdentityId> = sections
                            .iter()
                            .filter_map(|(i, _)| m.sections.get(*i))
                            .flat_map(|s| s.values('M'))
                            .filter_map(|v| {
                                roles
                                    .by_address
                                    .get(&parse_email(&v).1.to_lowercase())
                                    .cloned()
                            })
                            .flatten()
                            .collect();
                        let ok: Vec<EntryId> = approvers
                            .iter()
                            .filter(|(i, _)| section_maintainers.contains(i))
                            .map(|(_, e)| *e)
                            .collect();
                        if ok.is_empty() && project_ok.is_empty() {
                            let most_specific = sections
                                .iter()
                                .filter_map(|(i, _)| m.sections.get(*i))
                                .find(|s| !s.values('M').is_empty())
                                .map_or("the project".to_string(), |s| s.name.clone());
                            needs.push(format!(
                                "patch {k}: Acked-by from a maintainer of {most_specific} ({f})"
                            ));
                        }
                        used.extend(ok);
                    }
                }
                None => {
                    if project_ok.is_empty() {
                        needs.push(format!("patch {k}: Acked-by from a project maintainer"));
                    }
                }
            }
            used.extend(project_ok);
        }
        needs.dedup();
        let verdict = if needs.is_empty() {
            Ok("acked by the maintainers of all touched code".into())
        } else {
            Err((Outcome::Missing, format!("needs {}", needs.join("; "))))
        };
        rules.push(RuleResult::of(
            "maintainer-ack",
            verdict,
            used.into_iter().collect(),
        ));
    }

    // Nacks.
    let nacks: BTreeSet<EntryId> = counted
        .iter()
        .filter(|t| t.key == NACKED_BY && is_maintainer(&t.identity))
        .map(|t| t.entry)
        .collect();
    if policy.review.nack_blocks {
        let verdict = if nacks.is_empty() {
            Ok("no maintainer objects".into())
        } else {
            Err((
                Outcome::Failed,
                "a maintainer's Nacked-by blocks until retracted".into(),
            ))
        };
        rules.push(RuleResult::of(
            "no-nack",
            verdict,
            nacks.iter().copied().collect(),
        ));
    }

    // Labels: latest add/remove per label, from the series author or maintainers.
    let label_on = |label: &str, may: &dyn Fn(Option<IdentityId>) -> bool| -> Option<EntryId> {
        latest_by(all.iter().filter_map(|e| match e.payload {
            ReviewPayload::Tag(t)
                if t.label.eq_ignore_ascii_case(label)
                    && (t.target == series || revision_ids.contains_key(&t.target))
                    && may(who(e)) =>
            {
                Some((*e, t.add))
            }
            _ => None,
        }))
        .and_then(|(e, add)| add.then_some(e.id))
    };
    let maintainer_or_lead =
        |i: Option<IdentityId>| i.is_some_and(|i| is_maintainer(&i) || Some(i) == project.lead);
    let author_or_maintainer = |i: Option<IdentityId>| {
        maintainer_or_lead(i) || (i.is_some() && (i == author_id || i == person_id))
    };
    let rfc_subject = latest
        .cover
        .as_ref()
        .is_some_and(|c| c.subject.to_ascii_uppercase().contains("RFC"))
        && latest
            .cover
            .as_ref()
            .is_some_and(|c| c.subject.starts_with('['));
    let rfc = label_on(&policy.labels.rfc, &author_or_maintainer);
    let verdict = if rfc.is_some() || rfc_subject {
        Err((Outcome::Failed, "an RFC never merges".into()))
    } else {
        Ok("not an RFC".into())
    };
    rules.push(RuleResult::of("rfc", verdict, rfc.into_iter().collect()));
    // Freezes start and end at fixed times: the evaluation holds until the next.
    let mut valid_until = policy
        .freezes
        .iter()
        .flat_map(|f| [f.start_ms, f.end_ms])
        .filter(|t| *t > now_ms)
        .min();
    if let Some(f) = policy.freeze_at(now_ms) {
        let exception = label_on(&policy.labels.freeze_exception, &maintainer_or_lead);
        let verdict = match exception {
            Some(_) => Ok(format!("{}: exception granted", f.name)),
            None => Err((
                Outcome::Missing,
                format!(
                    "{} in force: needs the {:?} label from a maintainer",
                    f.name, policy.labels.freeze_exception
                ),
            )),
        };
        rules.push(RuleResult::of(
            "freeze",
            verdict,
            exception.into_iter().collect(),
        ));
    }

    // Lazy consensus: quiet for the period after the last entry the decision rests on.
    if policy.consensus.quiet_period_hours > 0 && rules.iter().all(|r| r.outcome == Outcome::Held) {
        let used: BTreeSet<EntryId> = rules
            .iter()
            .flat_map(|r| r.entries.iter().copied())
            .chain([latest_entry.id])
            .collect();
        let last = used
            .iter()
            .filter_map(|id| by_id.get(id))
            .map(|e| e.timestamp)
            .max()
            .unwrap_or(0);
        let until = last.saturating_add(
            policy
                .consensus
                .quiet_period_hours
                .saturating_mul(MS_PER_HOUR),
        );
        let hours = policy.consensus.quiet_period_hours;
        let verdict = if now_ms >= until {
            Ok(format!("no objection for {hours} hours"))
        } else {
            valid_until = Some(valid_until.map_or(until, |v| v.min(until)));
            Err((
                Outcome::Missing,
                format!(
                    "lazy consensus: mergeable {hours} hours after the last approval, at {until} ms"
                ),
            ))
        };
        rules.push(RuleResult::of("quiet-period", verdict, Vec::new()));
    }

    // State.
    let withdrawn = all
        .iter()
        .any(|e| matches!(e.payload, ReviewPayload::Withdraw(s) if *s == series) && same_author(e));
    let gates: BTreeSet<IdentityId> = project.decl.gates.iter().copied().collect();
    // A gate's merge is final: a policy amended later (a stricter rule,
    // `gate.retest`) does not unmerge what the branch holds.
    let merged = all.iter().any(|e| {
        matches!(e.payload, ReviewPayload::Merge(m) if revision_ids.contains_key(&m.revision))
            && who(e).is_some_and(|i| gates.contains(&i))
    });
    let rejected = label_on(&policy.labels.rejected, &maintainer_or_lead).is_some();
    let state = if withdrawn {
        State::Withdrawn
    } else if merged {
        State::Merged
    } else if rejected {
        State::Rejected
    } else if rules
        .iter()
        .any(|r| r.rule == "no-nack" && r.outcome == Outcome::Failed)
    {
        State::ChangesRequested
    } else if rules
        .iter()
        .any(|r| r.rule.starts_with("ci:") && r.outcome == Outcome::Failed)
    {
        State::CiFailed
    } else if rules.iter().all(|r| r.outcome == Outcome::Held) {
        State::Approved
    } else {
        State::Posted
    };
    Evaluation {
        state,
        revisions: revisions.iter().map(|(e, r)| (r.version, e.id)).collect(),
        rules,
        trailers: counted,
        uncounted: uncounted.into_iter().collect(),
        valid_until,
    }
}

fn join(v: &[u64]) -> String {
    v.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn role_names(r: &[Role]) -> String {
    r.iter()
        .map(|r| match r {
            Role::Any => "any",
            Role::Maintainer => "maintainer",
            Role::Reviewer => "reviewer",
            Role::Committer => "committer",
        })
        .collect::<Vec<_>>()
        .join("/")
}
