//! The bridge proper: list mails in, feed entries out (SPEC.md §15).
//!
//! Pure: a [`Bridge`] takes one raw mail at a time, with the DKIM result the
//! caller found, and hands what it derives to a [`Publish`] (the store, in
//! the CLI; a vector, in tests). Each mail becomes a `tagline/mail` record;
//! a series becomes a `tagline/revision` once all its patches have arrived
//! (or [`INCOMPLETE_SERIES_WAIT_SECS`] of list time after it began, with the
//! patches that came; the list's time is the median date of its latest
//! mails); a reply with trailers becomes a `tagline/review` of
//! the revision it answers, holding the trailers the bridge vouches for and
//! flagging the others.
//!
//! What the bridge derives is a function of the mails in order, so its
//! state is its feed: on restart the caller feeds the recorded mails again
//! through a publisher that checks each derived entry against the one
//! already written ([`Replay`]), and then goes on with new mail.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;
use tagline_format::EntryId;
use tagline_format::limits::MAX_PAYLOAD_SIZE;
use tagline_format::mail::{Dkim, MAIL_TYPE, MAX_RAW_MAIL, MailRecord};
use tagline_format::review::{
    Cover, FlaggedTrailer, MAX_LONG_TEXT, MAX_SHORT_TEXT, MAX_TRAILERS, Patch, Review, ReviewMail,
    ReviewPayload, Revision, RevisionMails,
};
use tagline_review::maintainers::{format_email, parse_email};

use crate::kind::{self, MailKind};
use crate::mailinfo::{self, MailInfo};
use crate::outbound;
use crate::series::{Grouper, Kind};
use crate::subject;
use crate::thread::{MAX_THREAD_DEPTH, reply_trailers};

/// The header every mail rendered from a feed entry carries (its value: the
/// entry id in hex); such a mail is never bridged back.
pub const LOOP_HEADER: &str = "X-Tagline-Entry";
/// A series whose patches have not all arrived is written with those that
/// did once the list's clock (the median date of its latest mails) is this
/// far past its first mail.
pub const INCOMPLETE_SERIES_WAIT_SECS: i64 = 24 * 60 * 60;
/// The list's clock is the median `Date:` of this many latest mails, so
/// that one mail with a wrong date (a sender's clock years off) moves it not.
pub const CLOCK_WINDOW: usize = 9;
/// Replies with trailers held, in all, while their series waits for patches.
pub const MAX_WAITING_REPLIES: usize = 16_384;
/// Longest reply text kept as a review's comment.
pub const MAX_COMMENT_LEN: usize = 64 * 1024;

/// The DKIM result of a mail that could not be checked (an archive).
pub const DKIM_UNCHECKED: &str = "unchecked";

/// Publishes a payload on the bridge's feed and returns its entry id.
pub trait Publish {
    type Error;
    fn publish(&mut self, payload_type: &str, payload: Vec<u8>) -> Result<EntryId, Self::Error>;
}

/// How the bridge is set up.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The project revisions are posted to (its declaring entry).
    pub project: EntryId,
    /// The list's posting address, recorded with each mail.
    pub list: Option<String>,
    /// Vouch for trailers of mails without a DKIM signature (or not
    /// checked), for a list behind an MTA that already enforces DMARC. A
    /// failing signature is never accepted.
    pub accept_unsigned: bool,
}

/// One mail handed to the bridge.
#[derive(Debug, Clone)]
pub struct Incoming<'a> {
    pub raw: &'a [u8],
    pub dkim: Dkim,
}

/// What became of one mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "outcome")]
pub enum Outcome {
    Bridged(Added),
    /// A mail with this Message-ID was bridged before.
    Duplicate {
        message_id: String,
    },
    /// A mail rendered from a feed entry (it carries [`LOOP_HEADER`]).
    Looped {
        entry: String,
    },
    /// Not bridged, and why.
    Refused {
        reason: String,
    },
}

/// What one bridged mail added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Added {
    pub message_id: String,
    pub kind: MailKind,
    /// Revisions written (this mail completed a series, or the list's
    /// clock passed a waiting one).
    pub revisions: Vec<String>,
    /// Reviews written (this reply's, or replies that waited for a series).
    pub reviews: Vec<String>,
    /// Trailers vouched for and flagged in those reviews.
    pub trailers: usize,
    pub flagged: usize,
    /// Things the user should know (a failing DKIM signature, a series too
    /// large for one entry, ...).
    pub warnings: Vec<String>,
    /// An email challenge this mail carries, when its DKIM signature passed
    /// for the sender's domain: the bridge's owner checks it against the
    /// identities claiming the address and writes the proof (SPEC.md §12.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub challenge: Option<Challenge>,
}

/// A challenge token found in a DKIM-verified mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Challenge {
    /// The sender's address (lowercase).
    pub address: String,
    /// `tagline-email-proof-` and 32 hex digits, as found.
    pub token: String,
    /// The `d=` of the signature that passed.
    pub domain: String,
}

/// What an email challenge token starts with (SPEC.md §12.4).
pub const CHALLENGE_PREFIX: &str = "tagline-email-proof-";

/// The first challenge token in `text`, if any.
pub fn find_challenge_token(text: &str) -> Option<&str> {
    let mut at = 0;
    while let Some(i) = text.get(at..)?.find(CHALLENGE_PREFIX) {
        let start = at + i;
        let end = start + CHALLENGE_PREFIX.len() + 32;
        if let Some(tok) = text.get(start..end)
            && tok.get(CHALLENGE_PREFIX.len()..).is_some_and(|h| {
                h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            })
            && !text
                .get(end..)
                .and_then(|r| r.bytes().next())
                .is_some_and(|b| b.is_ascii_alphanumeric())
        {
            return Some(tok);
        }
        at = start + CHALLENGE_PREFIX.len();
    }
    None
}

/// A mail parsed, or what becomes of it if it cannot be: the part of
/// [`Bridge::add`] that depends on the mail alone.
#[derive(Debug)]
pub struct Prepared(Result<MailInfo, Outcome>);

impl Prepared {
    /// Whether the mail carries an email challenge token (SPEC.md §12.4), so
    /// that its owner can load identities before bridging it.
    pub fn has_challenge_token(&self) -> bool {
        self.0.as_ref().is_ok_and(|i| {
            find_challenge_token(&i.raw_subject).is_some()
                || find_challenge_token(&i.message).is_some()
        })
    }
}

/// Parses a mail for [`Bridge::add_prepared`].
pub fn prepare(raw: &[u8]) -> Prepared {
    if let Some(entry) = loop_header(raw) {
        return Prepared(Err(Outcome::Looped { entry }));
    }
    if raw.len() > MAX_RAW_MAIL {
        return Prepared(Err(Outcome::Refused {
            reason: format!(
                "a mail of {} bytes, more than the {MAX_RAW_MAIL} bytes a record keeps",
                raw.len()
            ),
        }));
    }
    Prepared(
        mailinfo::parse(raw, &mailinfo::Options::default()).map_err(|e| Outcome::Refused {
            reason: e.to_string(),
        }),
    )
}

/// Where a bridged mail sits in its thread.
#[derive(Debug, Clone)]
struct Slot {
    kind: Kind,
    /// The series (index into the grouper's) of a cover or patch.
    series: Option<usize>,
    parent: Option<String>,
}

/// A reply with trailers waiting for its series' revision.
#[derive(Debug, Clone)]
struct WaitingReply {
    target: String,
    review: Review,
}

#[derive(Debug, Default)]
struct SeriesState {
    /// The revision written for it, and the first revision of its series.
    revision: Option<EntryId>,
    first: Option<EntryId>,
    /// Message-IDs of the patches in the revision, in order.
    patch_ids: Vec<String>,
    /// Mails held until the revision is written.
    cover: Option<Box<MailInfo>>,
    patches: BTreeMap<u32, Box<MailInfo>>,
    waiting: Vec<WaitingReply>,
    /// Linking: b4's change-id, the subject, the author.
    change_id: Option<String>,
    subject_key: String,
}

/// The bridge's state (see the module docs).
#[derive(Debug)]
pub struct Bridge {
    settings: Settings,
    grouper: Grouper,
    slots: HashMap<String, Slot>,
    series: Vec<SeriesState>,
    /// Series not written yet, by when they began. Replies wait only in
    /// these.
    open: BTreeSet<(i64, usize)>,
    /// The latest mails' dates; their median is the list's clock.
    dates: VecDeque<i64>,
}

impl Bridge {
    pub fn new(settings: Settings) -> Bridge {
        Bridge {
            settings,
            grouper: Grouper::new(),
            slots: HashMap::new(),
            series: Vec::new(),
            open: BTreeSet::new(),
            dates: VecDeque::with_capacity(CLOCK_WINDOW),
        }
    }

    /// Whether a mail with this Message-ID was bridged.
    pub fn has(&self, message_id: &str) -> bool {
        self.slots.contains_key(message_id)
    }

    /// Mails bridged so far.
    pub fn mails(&self) -> usize {
        self.slots.len()
    }

    /// Series still waiting for patches, and replies waiting for them.
    pub fn waiting(&self) -> (usize, usize) {
        (self.open.len(), self.waiting_replies())
    }

    /// Takes one mail. Errors are the publisher's; everything about the
    /// mail itself is in the [`Outcome`].
    pub fn add<P: Publish>(
        &mut self,
        mail: &Incoming<'_>,
        out: &mut P,
    ) -> Result<Outcome, P::Error> {
        self.add_prepared(mail, prepare(mail.raw), out)
    }

    /// [`Bridge::add`] with the mail already [`prepare`]d (on another
    /// thread, say: preparing is the costly, order-free part).
    pub fn add_prepared<P: Publish>(
        &mut self,
        mail: &Incoming<'_>,
        prepared: Prepared,
        out: &mut P,
    ) -> Result<Outcome, P::Error> {
        let info = match prepared.0 {
            Ok(i) => i,
            Err(o) => return Ok(o),
        };
        let Some(message_id) = info.message_id.clone().filter(|m| !m.is_empty()) else {
            return Ok(Outcome::Refused {
                reason: "no Message-ID: it could be neither deduplicated nor answered".into(),
            });
        };
        if message_id.len() > MAX_SHORT_TEXT {
            return Ok(Outcome::Refused {
                reason: format!(
                    "a Message-ID of {} bytes, more than {MAX_SHORT_TEXT}",
                    message_id.len()
                ),
            });
        }
        if self.slots.contains_key(&message_id) {
            return Ok(Outcome::Duplicate { message_id });
        }
        let subj = subject::parse(&info.raw_subject);
        let mail_kind = kind::classify(&info, &subj);
        let mut added = Added {
            message_id: message_id.clone(),
            kind: mail_kind,
            revisions: Vec::new(),
            reviews: Vec::new(),
            trailers: 0,
            flagged: 0,
            warnings: Vec::new(),
            challenge: None,
        };
        let dkim = &mail.dkim;
        if dkim.result == "pass"
            && let Some(domain) = &dkim.domain
            && let Some((_, sender_domain)) = info.sender.rsplit_once('@')
            && crate::dkim::aligned(domain, sender_domain)
            && let Some(token) = find_challenge_token(&info.raw_subject)
                .or_else(|| find_challenge_token(&info.message))
        {
            added.challenge = Some(Challenge {
                address: info.sender.to_lowercase(),
                token: token.to_string(),
                domain: domain.clone(),
            });
        }
        if !matches!(dkim.result.as_str(), "pass" | "none" | DKIM_UNCHECKED) {
            added.warnings.push(format!(
                "DKIM {}{}{}: its trailers are not vouched for",
                dkim.result,
                dkim.domain
                    .as_deref()
                    .map(|d| format!(" for {d}"))
                    .unwrap_or_default(),
                dkim.detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
            ));
        }
        let record = MailRecord {
            message_id: message_id.clone(),
            from: short(&format_email(&info.sender_name, &info.sender)),
            date: info.timestamp.and_then(|t| u64::try_from(t).ok()),
            subject: short(&info.raw_subject),
            in_reply_to: ids(&info.in_reply_to),
            references: ids(&info.references),
            list: self.settings.list.clone(),
            raw_hash: *blake3::hash(mail.raw).as_bytes(),
            raw: Some(mail.raw.to_vec()),
            dkim: dkim.clone(),
            kind: mail_kind.as_str().to_string(),
        };
        out.publish(MAIL_TYPE, record.encode())?;

        let (gkind, series) = self.grouper.add(&info);
        // One state per series of the grouper's.
        self.series
            .resize_with(self.grouper.series.len(), SeriesState::default);
        let parent = info.in_reply_to.first().or(info.references.last()).cloned();
        let place = if gkind == Kind::Cover {
            0
        } else {
            subj.index.unwrap_or(1)
        };
        self.slots.insert(
            message_id.clone(),
            Slot {
                kind: gkind,
                series,
                parent,
            },
        );
        if let Some(t) = info.timestamp {
            if self.dates.len() == CLOCK_WINDOW {
                self.dates.pop_front();
            }
            self.dates.push_back(t);
        }
        match (gkind, series) {
            (Kind::Cover | Kind::Patch, Some(idx)) => {
                self.take_series_mail(idx, gkind, place, info, &mut added, out)?;
            }
            _ => {
                self.take_reply(&message_id, &info, dkim, &mut added, out)?;
            }
        }
        self.flush_incomplete(&mut added, out)?;
        Ok(Outcome::Bridged(added))
    }

    fn take_series_mail<P: Publish>(
        &mut self,
        idx: usize,
        gkind: Kind,
        place: u32,
        info: MailInfo,
        added: &mut Added,
        out: &mut P,
    ) -> Result<(), P::Error> {
        let began = self.began(idx);
        let Some(st) = self.series.get_mut(idx) else {
            return Ok(());
        };
        if st.revision.is_some() {
            // A late cover letter is still found through the grouper.
            if gkind != Kind::Cover {
                added.warnings.push(format!(
                    "patch {place} came after its series was written without it"
                ));
            }
            return Ok(());
        }
        let fresh = st.cover.is_none() && st.patches.is_empty();
        match gkind {
            Kind::Cover => {
                st.cover = Some(Box::new(info));
            }
            _ => {
                st.patches.insert(place, Box::new(info));
            }
        }
        if fresh {
            self.open.insert((began, idx));
        }
        if self.complete(idx) {
            self.open.remove(&(began, idx));
            self.write_revision(idx, added, out)?;
        }
        Ok(())
    }

    /// When series `idx` began (its key in `open`; undated ones never
    /// time out).
    fn began(&self, idx: usize) -> i64 {
        self.grouper
            .series
            .get(idx)
            .and_then(|s| s.began)
            .unwrap_or(i64::MAX)
    }

    /// Replies waiting for their series.
    fn waiting_replies(&self) -> usize {
        self.open
            .iter()
            .filter_map(|(_, i)| self.series.get(*i))
            .map(|s| s.waiting.len())
            .sum()
    }

    /// The list's clock: the median date of the latest [`CLOCK_WINDOW`]
    /// mails (none until that many came).
    fn clock(&self) -> Option<i64> {
        if self.dates.len() < CLOCK_WINDOW {
            return None;
        }
        let mut d: Vec<i64> = self.dates.iter().copied().collect();
        d.sort_unstable();
        d.get(CLOCK_WINDOW / 2).copied()
    }

    /// Whether series `idx` has all its patches.
    fn complete(&self, idx: usize) -> bool {
        let (Some(g), Some(st)) = (self.grouper.series.get(idx), self.series.get(idx)) else {
            return false;
        };
        g.total >= 1 && (1..=g.total).all(|n| st.patches.contains_key(&n))
    }

    /// Writes waiting series the list's clock has passed.
    fn flush_incomplete<P: Publish>(
        &mut self,
        added: &mut Added,
        out: &mut P,
    ) -> Result<(), P::Error> {
        let Some(clock) = self.clock() else {
            return Ok(());
        };
        while let Some(&(began, idx)) = self.open.first() {
            if began.saturating_add(INCOMPLETE_SERIES_WAIT_SECS) > clock {
                break;
            }
            self.open.remove(&(began, idx));
            let has_patches = self.series.get(idx).is_some_and(|s| !s.patches.is_empty());
            if has_patches {
                self.write_revision(idx, added, out)?;
            } else if let Some(st) = self.series.get_mut(idx) {
                // A cover letter whose patches never came.
                st.cover = None;
                st.waiting.clear();
            }
        }
        Ok(())
    }

    fn write_revision<P: Publish>(
        &mut self,
        idx: usize,
        added: &mut Added,
        out: &mut P,
    ) -> Result<(), P::Error> {
        let version = self.grouper.series.get(idx).map_or(1, |g| g.version);
        let author = self
            .grouper
            .series
            .get(idx)
            .map(|g| g.author.clone())
            .unwrap_or_default();
        let Some(st) = self.series.get_mut(idx) else {
            return Ok(());
        };
        let cover = st.cover.take();
        let patches = std::mem::take(&mut st.patches);
        let head_mail = cover
            .as_deref()
            .or_else(|| patches.values().next().map(|b| &**b));
        let lines_of = |key: &str| -> Option<String> {
            head_mail
                .into_iter()
                .chain(patches.values().map(|b| &**b))
                .find_map(|m| {
                    tagged_line(m.message.as_bytes(), key).or_else(|| tagged_line(&m.patch, key))
                })
        };
        let base_commit = lines_of("base-commit:")
            .filter(|c| (7..=64).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_hexdigit()));
        let change_id = lines_of("change-id:").map(|c| short(&c));
        let subject_key = head_mail
            .map(|m| subject::parse(&m.raw_subject).text.to_lowercase())
            .unwrap_or_default();
        let head_refs: Vec<String> = head_mail
            .map(|m| {
                m.in_reply_to
                    .iter()
                    .chain(m.references.iter())
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        st.change_id = change_id.clone();
        st.subject_key = subject_key.clone();
        let patch_ids: Vec<String> = patches
            .keys()
            .filter_map(|n| {
                self.grouper
                    .series
                    .get(idx)
                    .and_then(|g| g.patches.iter().find(|(p, _)| p == n))
                    .map(|(_, id)| id.clone())
            })
            .collect();
        let first = if version > 1 {
            self.earlier_revision(
                idx,
                version,
                &author,
                change_id.as_deref(),
                &subject_key,
                &head_refs,
            )
        } else {
            None
        };
        let revision = Revision {
            project: self.settings.project,
            series: first,
            version: u64::from(version),
            base_commit,
            cover: cover.as_ref().map(|c| Cover {
                subject: short(&c.raw_subject),
                body: long(&c.message),
            }),
            changelog: None,
            patches: patches
                .values()
                .map(|m| {
                    let diff = String::from_utf8_lossy(&m.patch).into_owned();
                    Patch {
                        subject: short(&m.subject),
                        message: long(&m.message),
                        author: short(&format_email(&m.author, &m.email)),
                        patch_id: tagline_review::patchid::stable(&diff).unwrap_or_default(),
                        diff,
                    }
                })
                .collect(),
            change_id,
            mails: Some(RevisionMails {
                cover: self.grouper.series.get(idx).and_then(|g| g.cover.clone()),
                patches: patch_ids.clone(),
            }),
        };
        let payload = ReviewPayload::Revision(revision).encode();
        if payload.len() as u64 > MAX_PAYLOAD_SIZE {
            added.warnings.push(format!(
                "a series of {} bytes, more than one entry holds ({MAX_PAYLOAD_SIZE}): not written",
                payload.len()
            ));
            return Ok(());
        }
        let id = out.publish(tagline_format::review::REVISION_TYPE, payload)?;
        added.revisions.push(id.to_string());
        let waiting = match self.series.get_mut(idx) {
            Some(st) => {
                st.revision = Some(id);
                st.first = Some(first.unwrap_or(id));
                st.patch_ids = patch_ids;
                std::mem::take(&mut st.waiting)
            }
            None => Vec::new(),
        };
        for w in waiting {
            self.write_review(idx, &w.target, w.review, added, out)?;
        }
        Ok(())
    }

    /// The first revision of the series an earlier revision of which is
    /// `idx`'s predecessor: same change-id, or answered by this one's head
    /// mail (v2 sent in reply to v1), or same author and subject.
    fn earlier_revision(
        &self,
        idx: usize,
        version: u32,
        author: &str,
        change_id: Option<&str>,
        subject_key: &str,
        head_refs: &[String],
    ) -> Option<EntryId> {
        let written = |i: usize| -> Option<(&SeriesState, u32, &str)> {
            let st = self.series.get(i)?;
            st.first?;
            let g = self.grouper.series.get(i)?;
            (i != idx && g.version < version).then_some((st, g.version, g.author.as_str()))
        };
        let candidates = (0..self.series.len())
            .rev()
            .filter_map(|i| written(i).map(|w| (i, w)));
        if let Some(c) = change_id
            && let Some((_, (st, _, _))) = candidates
                .clone()
                .find(|(_, (st, _, _))| st.change_id.as_deref() == Some(c))
        {
            return st.first;
        }
        for r in head_refs {
            if let Some(i) = self.slots.get(r).and_then(|s| s.series)
                && let Some((st, _, _)) = written(i)
            {
                return st.first;
            }
        }
        candidates
            .clone()
            .find(|(_, (st, _, a))| {
                *a == author && !subject_key.is_empty() && st.subject_key == subject_key
            })
            .and_then(|(_, (st, _, _))| st.first)
    }

    fn take_reply<P: Publish>(
        &mut self,
        message_id: &str,
        info: &MailInfo,
        dkim: &Dkim,
        added: &mut Added,
        out: &mut P,
    ) -> Result<(), P::Error> {
        let found = reply_trailers(&info.message);
        if found.is_empty() {
            return Ok(());
        }
        // Up the thread to a cover letter or patch the bridge holds: through
        // the parents it knows, then through the reply's own In-Reply-To and
        // References, nearest first (a reply to a mail the bridge rendered,
        // and so never held, still names the series' mails there); else a
        // series the bridge rendered from a native revision.
        let own = self.slots.get(message_id).and_then(|s| s.parent.clone());
        let held = self.series_mail_above(own).or_else(|| {
            nearest_first(info).find_map(|id| self.series_mail_above(Some(id.clone())))
        });
        let answers = match held {
            Some((idx, target)) => Answers::Held(idx, target),
            None => match native_target(info) {
                Some((revision, patch)) => Answers::Rendered(revision, patch),
                None => return Ok(()),
            },
        };
        // The sender, not an in-body `From:` (a patch's author): DKIM
        // speaks for the header alone.
        let from = info.sender.to_lowercase();
        let vouched_dkim = dkim.result == "pass"
            || (self.settings.accept_unsigned
                && matches!(dkim.result.as_str(), "none" | DKIM_UNCHECKED));
        let mut trailers = Vec::new();
        let mut flagged = Vec::new();
        for (key, value) in found.into_iter().take(MAX_TRAILERS) {
            let (key, value) = (short(&key), short(&value));
            if !key.to_ascii_lowercase().ends_with("-by") {
                trailers.push((key, value));
                continue;
            }
            let (_, addr) = parse_email(&value);
            let reason = if !addr.eq_ignore_ascii_case(&from) {
                Some(format!("names {addr}, but the reply is from {from}"))
            } else if !vouched_dkim {
                Some(format!(
                    "the reply's DKIM result is {}{}",
                    dkim.result,
                    dkim.domain
                        .as_deref()
                        .map(|d| format!(" for {d}"))
                        .unwrap_or_default()
                ))
            } else {
                None
            };
            match reason {
                Some(reason) => flagged.push(FlaggedTrailer {
                    key,
                    value,
                    reason: short(&reason),
                }),
                None => trailers.push((key, value)),
            }
        }
        let mut review = Review {
            revision: EntryId([0; 32]),
            patch: None,
            trailers,
            comment: Some(truncate(&info.message, MAX_COMMENT_LEN).to_string()),
            inline: Vec::new(),
            retracts: None,
            mail: Some(ReviewMail {
                message_id: message_id.to_string(),
                from: short(&from),
                dkim: short(&dkim.result),
            }),
            flagged,
        };
        let (idx, target) = match answers {
            Answers::Held(idx, target) => (idx, target),
            Answers::Rendered(revision, patch) => {
                review.revision = revision;
                review.patch = patch;
                return self.publish_review(review, added, out);
            }
        };
        let written = self.series.get(idx).is_some_and(|s| s.revision.is_some());
        if written {
            self.write_review(idx, &target, review, added, out)
        } else if !self.open.contains(&(self.began(idx), idx)) {
            // A cover letter whose patches never came: nothing to review.
            Ok(())
        } else if self.waiting_replies() < MAX_WAITING_REPLIES {
            if let Some(st) = self.series.get_mut(idx) {
                st.waiting.push(WaitingReply { target, review });
            }
            Ok(())
        } else {
            added.warnings.push(format!(
                "more than {MAX_WAITING_REPLIES} replies wait for their series: this one's trailers are dropped"
            ));
            Ok(())
        }
    }

    fn write_review<P: Publish>(
        &mut self,
        idx: usize,
        target: &str,
        mut review: Review,
        added: &mut Added,
        out: &mut P,
    ) -> Result<(), P::Error> {
        let Some(st) = self.series.get(idx) else {
            return Ok(());
        };
        let Some(revision) = st.revision else {
            return Ok(());
        };
        let is_cover = self
            .slots
            .get(target)
            .is_some_and(|s| s.kind == Kind::Cover);
        review.revision = revision;
        review.patch = if is_cover {
            None
        } else {
            match st.patch_ids.iter().position(|p| p == target) {
                Some(k) => Some(k as u64 + 1),
                None => {
                    added.warnings.push(format!(
                        "a reply to <{target}>, a patch its series was written without: not bridged as a review"
                    ));
                    return Ok(());
                }
            }
        };
        self.publish_review(review, added, out)
    }

    fn publish_review<P: Publish>(
        &self,
        review: Review,
        added: &mut Added,
        out: &mut P,
    ) -> Result<(), P::Error> {
        added.trailers += review.trailers.len();
        added.flagged += review.flagged.len();
        let id = out.publish(
            tagline_format::review::REVIEW_TYPE,
            ReviewPayload::Review(review).encode(),
        )?;
        added.reviews.push(id.to_string());
        Ok(())
    }

    /// The cover letter or patch the bridge holds at or above `start` in
    /// its thread, and its series.
    fn series_mail_above(&self, start: Option<String>) -> Option<(usize, String)> {
        let mut at = start;
        for _ in 0..MAX_THREAD_DEPTH {
            let id = at?;
            let slot = self.slots.get(&id)?;
            if matches!(slot.kind, Kind::Cover | Kind::Patch) {
                return slot.series.map(|s| (s, id));
            }
            at = slot.parent.clone();
        }
        None
    }
}

/// What a reply with trailers answers.
enum Answers {
    /// A cover letter or patch the bridge holds: its series and Message-ID.
    Held(usize, String),
    /// A revision (and patch) the bridge rendered from an entry.
    Rendered(EntryId, Option<u64>),
}

/// The Message-IDs above a reply in its thread, nearest first: its
/// In-Reply-To, then its References from the last (at most
/// [`MAX_THREAD_DEPTH`]).
fn nearest_first(info: &MailInfo) -> impl Iterator<Item = &String> {
    info.in_reply_to
        .iter()
        .chain(info.references.iter().rev())
        .take(MAX_THREAD_DEPTH)
}

/// The native revision (and patch) a reply answers when its thread is one
/// the bridge's outbound side rendered ([`outbound::message_id`]): the
/// nearest rendered patch mail among its In-Reply-To and References, else
/// the thread's root if rendered, which is a series' cover letter (a
/// rendered thread starts with a revision's mail; the mail of a review, a
/// CI result or a merge always answers another). Decided from the mail
/// alone, so that replaying the bridge's feed decides it again the same.
fn native_target(info: &MailInfo) -> Option<(EntryId, Option<u64>)> {
    let patch = nearest_first(info)
        .filter_map(|id| outbound::rendered_id(id))
        .find(|(_, part)| *part > 0);
    if let Some((entry, part)) = patch {
        return Some((entry, Some(part)));
    }
    let root = info.references.first().or(info.in_reply_to.first())?;
    outbound::rendered_id(root).map(|(entry, _)| (entry, None))
}

/// The value of [`LOOP_HEADER`] in the mail's header block, if any.
pub fn loop_header(raw: &[u8]) -> Option<String> {
    let name = LOOP_HEADER.as_bytes();
    for line in raw.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None; // the end of the header block
        }
        if line.len() > name.len()
            && line
                .get(..name.len())
                .is_some_and(|n| n.eq_ignore_ascii_case(name))
            && line.get(name.len()) == Some(&b':')
        {
            let value = line.get(name.len() + 1..).unwrap_or_default();
            return Some(String::from_utf8_lossy(value).trim().to_string());
        }
    }
    None
}

/// The value of a `key: value` line (b4's `base-commit:`, `change-id:`) in
/// a message or patch, found without decoding it all.
fn tagged_line(text: &[u8], key: &str) -> Option<String> {
    text.split(|c| *c == b'\n').find_map(|l| {
        let v = l.strip_prefix(key.as_bytes())?;
        let v = std::str::from_utf8(v).ok()?.trim();
        (!v.is_empty() && !v.contains(' ')).then(|| v.to_string())
    })
}

fn truncate(s: &str, max: usize) -> &str {
    s.get(..s.floor_char_boundary(max)).unwrap_or_default()
}

fn short(s: &str) -> String {
    truncate(s, MAX_SHORT_TEXT).to_string()
}

fn long(s: &str) -> String {
    truncate(s, MAX_LONG_TEXT).to_string()
}

fn ids(v: &[String]) -> Vec<String> {
    v.iter()
        .filter(|i| i.len() <= MAX_SHORT_TEXT)
        .take(tagline_format::review::MAX_LIST)
        .cloned()
        .collect()
}

/// Entries of the bridge's own feed, fed back on restart: each publish must
/// equal the next one (SPEC.md §15.2: derived entries are a function of the
/// mails in order, and are never written twice).
#[derive(Debug)]
pub struct Replay {
    expected: VecDeque<(EntryId, String, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    #[error(
        "the bridge would now write a {found} where its feed holds {expected}: the feed was written by another version of the bridge"
    )]
    Differs { expected: String, found: String },
    #[error("the bridge would write a {found} that its feed does not hold")]
    Missing { found: String },
}

impl Replay {
    /// `entries`: the feed's mail, revision and review entries in order.
    pub fn new(entries: impl IntoIterator<Item = (EntryId, String, Vec<u8>)>) -> Replay {
        Replay {
            expected: entries.into_iter().collect(),
        }
    }

    /// Expects one more entry (to stream a feed: the entries a mail led to
    /// follow its record, so they are pushed before the next mail is fed).
    pub fn push(&mut self, id: EntryId, payload_type: String, payload: Vec<u8>) {
        self.expected.push_back((id, payload_type, payload));
    }

    /// Entries not re-derived (should be none once every mail was fed).
    pub fn left(&self) -> usize {
        self.expected.len()
    }
}

impl Publish for Replay {
    type Error = ReplayError;
    fn publish(&mut self, payload_type: &str, payload: Vec<u8>) -> Result<EntryId, ReplayError> {
        match self.expected.pop_front() {
            Some((id, t, p)) if t == payload_type && p == payload => Ok(id),
            Some((id, t, _)) => Err(ReplayError::Differs {
                expected: format!("{t} ({})", id.short()),
                found: payload_type.to_string(),
            }),
            None => Err(ReplayError::Missing {
                found: payload_type.to_string(),
            }),
        }
    }
}

/// Whether an entry of this type is one a bridge derives (and replays).
pub fn is_bridge_type(payload_type: &str, payload: &[u8]) -> bool {
    match payload_type {
        MAIL_TYPE => true,
        tagline_format::review::REVISION_TYPE | tagline_format::review::REVIEW_TYPE => {
            matches!(
                ReviewPayload::decode(payload_type, payload),
                Ok(Some(ReviewPayload::Revision(Revision {
                    mails: Some(_),
                    ..
                }))) | Ok(Some(ReviewPayload::Review(Review { mail: Some(_), .. })))
            )
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_tokens_are_found_whole() {
        let t = "tagline-email-proof-0123456789abcdef0123456789abcdef";
        assert_eq!(find_challenge_token(&format!("please: {t}\n")), Some(t));
        assert_eq!(find_challenge_token(&format!("({t})")), Some(t));
        // Too short, too long, upper case, not hex: none.
        assert_eq!(find_challenge_token(&t[..t.len() - 1]), None);
        assert_eq!(find_challenge_token(&format!("{t}0")), None);
        assert_eq!(find_challenge_token(&t.to_uppercase()), None);
        assert_eq!(
            find_challenge_token("tagline-email-proof-0123456789abcdef0123456789abcdeg"),
            None
        );
        // A false start before the real one.
        assert_eq!(
            find_challenge_token(&format!("tagline-email-proof-xyz {t}")),
            Some(t)
        );
        assert_eq!(find_challenge_token("tagline-email-proof-é"), None);
    }
}
