//! A thread of list mail read as one series: which mails are the patches,
//! which is the cover letter, and which trailers the follow-up replies give
//! each patch, as b4 collects them: only unquoted `*-by:` lines with an
//! address; a trailer on the cover letter goes to every patch; a trailer
//! whose address is not the replier's is kept but flagged (b4 drops it
//! unless told to be sloppy).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::mailinfo::MailInfo;
use crate::subject::{self, Subject};
use tagline_review::maintainers::parse_email;

/// Replies followed up the In-Reply-To chain at most, to find their patch.
pub const MAX_THREAD_DEPTH: usize = 64;

/// One trailer a follow-up gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FollowUp {
    pub key: String,
    pub value: String,
    /// The reply it came from.
    pub message_id: Option<String>,
    pub from_name: String,
    pub from_email: String,
    /// Its address is not the replier's (neither the address nor the name
    /// matches): recorded, shown, not counted by default.
    pub flagged: bool,
    /// Given on the cover letter, so to every patch.
    pub from_cover: bool,
}

/// A patch of the thread with what replies gave it.
#[derive(Debug, Clone, Serialize)]
pub struct CollectedPatch {
    pub message_id: Option<String>,
    pub subject: Subject,
    /// The trailers in the patch itself, in order.
    pub own: Vec<(String, String)>,
    /// Follow-up trailers: replies to the patch first, then to the cover
    /// letter, each in thread order, without repeating a trailer already
    /// there.
    pub followups: Vec<FollowUp>,
}

impl CollectedPatch {
    /// The trailers as an am-ready patch would carry them: its own, then
    /// the counted follow-ups (all follow-ups when `sloppy`).
    pub fn trailers(&self, sloppy: bool) -> Vec<(String, String)> {
        let mut out = self.own.clone();
        for f in &self.followups {
            if sloppy || !f.flagged {
                out.push((f.key.clone(), f.value.clone()));
            }
        }
        out
    }
}

/// Unquoted `Key-by: value` lines with an address (a remark after the
/// address dropped), and `Fixes: <hash> ("subject")` lines, in order.
pub fn reply_trailers(message: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut previous_taken = false;
    for line in message.lines() {
        let line = line.trim_end();
        // A folded trailer (an indented line, or the rest of a value whose
        // parenthesis a mail client wrapped): its continuation joins it.
        let unclosed = out
            .last()
            .is_some_and(|(_, v)| v.matches('(').count() > v.matches(')').count());
        if previous_taken && (line.starts_with([' ', '\t']) || unclosed) && !line.trim().is_empty()
        {
            if let Some((_, v)) = out.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        let before = out.len();
        previous_taken = false;
        if line.starts_with('>') {
            continue;
        }
        let Some((key, value)) = line.trim_start().split_once(':') else {
            continue;
        };
        let value = value.trim();
        let key_ok = key.len() >= 4
            && key.ends_with("-by")
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && key.bytes().next().is_some_and(|b| b.is_ascii_alphabetic());
        if key_ok && value.contains('@') {
            // "Name <addr> (for watchdog)": the remark after the address goes,
            // as b4 drops it.
            out.push((normalise_key(key), without_remark(value).to_string()));
        } else if key.eq_ignore_ascii_case("fixes")
            && value.len() >= 12
            && value.bytes().take(12).all(|b| b.is_ascii_hexdigit())
        {
            out.push(("Fixes".to_string(), value.to_string()));
        }
        previous_taken = out.len() > before;
    }
    out
}

/// "Name <addr> (for watchdog)" → "Name <addr>": b4 drops the remark.
fn without_remark(value: &str) -> &str {
    match value.rfind('>') {
        Some(end)
            if value
                .get(end + 1..)
                .is_some_and(|r| r.trim().starts_with('(')) =>
        {
            value.get(..=end).unwrap_or(value)
        }
        _ => value,
    }
}

/// `reviewed-by` → `Reviewed-by`: each dash-separated word capitalised as
/// the common spellings are (`Acked-by`, `Tested-by`).
fn normalise_key(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    for (i, part) in k.split('-').enumerate() {
        if i > 0 {
            out.push('-');
        }
        let mut chars = part.chars();
        if let Some(c) = chars.next() {
            if i == 0 {
                out.extend(c.to_uppercase());
            } else {
                out.extend(c.to_lowercase());
            }
            out.extend(chars.map(|c| c.to_ascii_lowercase()));
        }
    }
    out
}

/// Reads a thread (mails in arrival order) as one series: the patches of
/// its latest revision (the highest `vN`), with the trailers replies gave
/// them and that revision's cover letter. Replies to other revisions do not
/// count (b4 also carries them over when the patch-id is unchanged; not
/// yet here).
pub fn collect(mails: &[MailInfo]) -> Vec<CollectedPatch> {
    let subjects: Vec<Subject> = mails
        .iter()
        .map(|m| subject::parse(&m.raw_subject))
        .collect();
    let by_id: BTreeMap<&str, usize> = mails
        .iter()
        .enumerate()
        .filter_map(|(i, m)| m.message_id.as_deref().map(|id| (id, i)))
        .collect();
    let parent = |i: usize| -> Option<usize> {
        let m = mails.get(i)?;
        m.in_reply_to
            .first()
            .or(m.references.last())
            .and_then(|id| by_id.get(id.as_str()).copied())
    };
    let is_patch = |i: usize| {
        let (Some(m), Some(s)) = (mails.get(i), subjects.get(i)) else {
            return false;
        };
        !s.reply && s.index != Some(0) && !m.patch.is_empty()
    };
    let all_patches: Vec<usize> = (0..mails.len()).filter(|i| is_patch(*i)).collect();
    // A patch that does not give its revision takes its cover letter's.
    let version_of = |i: usize| {
        let Some(s) = subjects.get(i) else {
            return 1;
        };
        if s.versioned {
            return s.version;
        }
        parent(i)
            .and_then(|p| subjects.get(p))
            .filter(|c| c.index == Some(0) && c.versioned)
            .map_or(s.version, |c| c.version)
    };
    let latest = all_patches
        .iter()
        .map(|i| version_of(*i))
        .max()
        .unwrap_or(1);
    let covers: Vec<usize> = (0..mails.len())
        .filter(|i| {
            subjects
                .get(*i)
                .is_some_and(|s| !s.reply && s.patch && s.index == Some(0))
        })
        .collect();
    let patches: Vec<usize> = all_patches
        .iter()
        .copied()
        .filter(|i| version_of(*i) == latest)
        .collect();
    // The cover letter: the latest revision's `0/N` mail, or (naked) the
    // non-reply mail without a patch that its patches answer.
    let cover = covers
        .iter()
        .copied()
        .find(|i| version_of(*i) == latest)
        .or_else(|| {
            patches.iter().find_map(|p| {
                parent(*p).filter(|c| !is_patch(*c) && subjects.get(*c).is_some_and(|s| !s.reply))
            })
        });
    // Each reply's patch (or the cover), up the chain.
    let mut given: BTreeMap<usize, Vec<FollowUp>> = BTreeMap::new();
    // Every revision's patches and covers stop the walk up; only the latest
    // revision's collect.
    let roots: BTreeSet<usize> = all_patches
        .iter()
        .copied()
        .chain(covers.iter().copied())
        .chain(cover)
        .collect();
    let collecting: BTreeSet<usize> = patches.iter().copied().chain(cover).collect();
    for (i, m) in mails.iter().enumerate() {
        if roots.contains(&i) {
            continue;
        }
        let mut at = i;
        let mut target = None;
        for _ in 0..MAX_THREAD_DEPTH {
            let Some(p) = parent(at) else {
                break;
            };
            if roots.contains(&p) {
                target = Some(p);
                break;
            }
            at = p;
        }
        let Some(target) = target.filter(|t| collecting.contains(t)) else {
            continue;
        };
        let (from_name, from_email) = (m.author.clone(), m.email.clone());
        for (key, value) in reply_trailers(&m.message) {
            let (t_name, t_email) = parse_email(&value);
            // Only a trailer naming a person can name someone else.
            let flagged = !t_email.is_empty()
                && !t_email.eq_ignore_ascii_case(&from_email)
                && !t_name.eq_ignore_ascii_case(&from_name);
            given.entry(target).or_default().push(FollowUp {
                key,
                value,
                message_id: m.message_id.clone(),
                from_name: from_name.clone(),
                from_email: from_email.clone(),
                flagged,
                from_cover: Some(target) == cover,
            });
        }
    }
    let cover_followups = cover
        .and_then(|c| given.get(&c))
        .cloned()
        .unwrap_or_default();
    patches
        .iter()
        .filter_map(|p| {
            let m = mails.get(*p)?;
            let own: Vec<(String, String)> = own_trailers(&m.message);
            let mut followups: Vec<FollowUp> = Vec::new();
            let mine = given.get(p).cloned().unwrap_or_default();
            for f in mine.into_iter().chain(cover_followups.iter().cloned()) {
                let dup = own
                    .iter()
                    .any(|(k, v)| k.eq_ignore_ascii_case(&f.key) && *v == f.value)
                    || followups
                        .iter()
                        .any(|g| g.key.eq_ignore_ascii_case(&f.key) && g.value == f.value);
                if !dup {
                    followups.push(f);
                }
            }
            Some(CollectedPatch {
                message_id: m.message_id.clone(),
                subject: subjects.get(*p).cloned().unwrap_or_default(),
                own,
                followups,
            })
        })
        .collect()
}

/// The trailers of a patch's own commit message (git's rules, as
/// tagline-review reads them).
fn own_trailers(message: &str) -> Vec<(String, String)> {
    tagline_review::trailers::parse(message)
        .into_iter()
        .map(|t| {
            let value = if t.key.to_ascii_lowercase().ends_with("-by") {
                without_remark(&t.value).to_string()
            } else {
                t.value
            };
            (t.key, value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_trailers_skip_quotes_and_non_addresses() {
        let m = "Looks good.\n\
> Reviewed-by: Quoted <q@example.com>\n\
Reviewed-by: Real One <real@example.com>\n\
Fixes: abcdef\n\
acked-by: lower <l@example.com>\n\
Reviewed-by: nobody\n";
        assert_eq!(
            reply_trailers(m),
            vec![
                (
                    "Reviewed-by".to_string(),
                    "Real One <real@example.com>".to_string()
                ),
                ("Acked-by".to_string(), "lower <l@example.com>".to_string()),
            ]
        );
    }
}
