//! Mails of one list grouped into series and revisions as Patchwork groups
//! them, one mail at a time in arrival order: a cover letter or patch joins
//! the series its references point to, unless that series is of another
//! revision or already has a mail in that place; without references it
//! joins a series of the same author, revision and length begun within
//! [`MARKER_WINDOW_SECS`]; otherwise it begins a series. A patch without an
//! `n/N` marker is a series of its own. Replies are comments.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::mailinfo::MailInfo;
use crate::subject::{self, Subject};

/// A mail without references joins a series of the same author, revision
/// and length begun this close in time (Patchwork's window).
pub const MARKER_WINDOW_SECS: i64 = 60 * 60;
/// References of one mail looked at, at most.
pub const MAX_REFERENCES: usize = 256;

/// What a mail is to the grouping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Cover,
    Patch,
    /// A reply to a known cover letter, patch or comment.
    Comment,
    /// Neither, nor a reply to anything known.
    Other,
}

/// One series (one revision of a patch set).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Series {
    pub version: u32,
    /// `N` of `n/N` (1 for a lone patch).
    pub total: u32,
    pub author: String,
    /// When its first mail was sent (epoch seconds), if known.
    pub began: Option<i64>,
    /// Message-ID of its cover letter, if any.
    pub cover: Option<String>,
    /// Its patches: (place `n`, Message-ID), in arrival order.
    pub patches: Vec<(u32, String)>,
}

/// Groups the mails of one list.
#[derive(Debug, Default)]
pub struct Grouper {
    pub series: Vec<Series>,
    /// Message-ID → series, for every mail of a series and every reference
    /// its mails carried (so that a patch that arrives before the mail it
    /// answers still finds its series).
    by_ref: BTreeMap<String, usize>,
    /// Message-IDs of covers, patches and comments seen.
    known: BTreeMap<String, Kind>,
}

impl Grouper {
    pub fn new() -> Grouper {
        Grouper::default()
    }

    /// Takes the next mail; what it is, and its series for a cover or patch.
    pub fn add(&mut self, m: &MailInfo) -> (Kind, Option<usize>) {
        let s = subject::parse(&m.raw_subject);
        let refs: Vec<&String> = m
            .in_reply_to
            .iter()
            .chain(m.references.iter().rev())
            .take(MAX_REFERENCES)
            .collect();
        let has_diff = !m.patch.is_empty();
        let kind = if s.reply {
            if refs.iter().any(|r| self.known.contains_key(r.as_str())) {
                Kind::Comment
            } else {
                Kind::Other
            }
        } else if has_diff {
            Kind::Patch
        } else if s.patch && s.index == Some(0) {
            Kind::Cover
        } else if refs.iter().any(|r| self.known.contains_key(r.as_str())) {
            Kind::Comment
        } else {
            Kind::Other
        };
        if let Some(id) = &m.message_id {
            self.known.insert(id.clone(), kind);
        }
        if !matches!(kind, Kind::Cover | Kind::Patch) {
            return (kind, None);
        }
        let place = s.index.unwrap_or(1);
        let author = m.email.to_ascii_lowercase();
        let numbered = s.total.is_some();
        let found = if numbered {
            self.by_references(m, &refs, &s, kind, place)
                .or_else(|| self.by_markers(m, &s, &author, kind, place))
        } else {
            None
        };
        let idx = match found {
            Some(i) => i,
            None => {
                self.series.push(Series {
                    version: s.version,
                    total: s.total.unwrap_or(1),
                    author,
                    began: m.timestamp,
                    ..Series::default()
                });
                self.series.len() - 1
            }
        };
        if let Some(series) = self.series.get_mut(idx) {
            let id = m.message_id.clone().unwrap_or_default();
            match kind {
                Kind::Cover => series.cover = Some(id),
                _ => series.patches.push((place, id)),
            }
        }
        // Lone patches are not joined by later mails.
        if numbered {
            for r in refs
                .iter()
                .map(|r| r.to_string())
                .chain(m.message_id.clone())
            {
                self.by_ref.entry(r).or_insert(idx);
            }
        }
        (kind, Some(idx))
    }

    /// Whether series `i` can take this mail: same revision, place free.
    fn fits(&self, i: usize, s: &Subject, kind: Kind, place: u32) -> bool {
        self.series.get(i).is_some_and(|series| {
            series.version == s.version
                && match kind {
                    Kind::Cover => series.cover.is_none(),
                    _ => !series.patches.iter().any(|(n, _)| *n == place),
                }
        })
    }

    fn by_references(
        &self,
        m: &MailInfo,
        refs: &[&String],
        s: &Subject,
        kind: Kind,
        place: u32,
    ) -> Option<usize> {
        m.message_id
            .iter()
            .chain(refs.iter().copied())
            .filter_map(|r| self.by_ref.get(r).copied())
            .find(|i| self.fits(*i, s, kind, place))
    }

    fn by_markers(
        &self,
        m: &MailInfo,
        s: &Subject,
        author: &str,
        kind: Kind,
        place: u32,
    ) -> Option<usize> {
        let when = m.timestamp?;
        (0..self.series.len()).rev().find(|i| {
            self.series.get(*i).is_some_and(|series| {
                series.author == author
                    && Some(series.total) == s.total
                    && series
                        .began
                        .is_some_and(|b| (b - when).abs() <= MARKER_WINDOW_SECS)
            }) && self.fits(*i, s, kind, place)
        })
    }
}
