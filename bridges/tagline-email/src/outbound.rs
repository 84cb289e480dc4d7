//! Feed entries rendered as list mail (pure: values in, bytes out).
//!
//! A native review becomes a plain-text reply in the series' thread
//! (`In-Reply-To`/`References` to the bridged Message-IDs, `Subject: Re:`
//! the mail it answers), its inline comments under the quoted lines of the
//! hunk they are about, its trailers at the end the way a list user writes
//! them. A CI result and a merge become replies to the cover letter (or the
//! first patch). A series submitted natively becomes a format-patch series:
//! a cover letter and one mail per patch, threaded under the cover.
//!
//! Every mail carries [`LOOP_HEADER`] with its entry id, so the inbound side
//! does not bridge it back, and a Message-ID derived from the entry id, so a
//! mail sent twice (a crash between sending and recording it) is one mail to
//! every archive and client.

use tagline_format::EntryId;
use tagline_format::review::{CiResult, Merge, Review, Revision, Side};
use tagline_review::patchmail::{has_cover, patch_body, patch_subject};

use crate::bridge::LOOP_HEADER;

/// Longest header line before folding (RFC 5322 §2.1.1 recommends 78).
const FOLD_AT: usize = 78;
/// Most lines quoted above one inline comment.
pub const MAX_QUOTED_LINES: usize = 20;
/// Lines of a CI log excerpt put into a mail (its tail).
pub const CI_LOG_LINES: usize = 30;

/// A mail ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The entry it renders.
    pub entry: EntryId,
    /// Without angle brackets.
    pub message_id: String,
    pub from: String,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// RFC 5322 date.
    pub date: String,
    pub body: String,
}

/// The mail a reply answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    pub message_id: String,
    /// Its subject as sent.
    pub subject: String,
    /// Its thread above it (its `References`), oldest first.
    pub references: Vec<String>,
}

/// Who a rendered mail speaks for, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The author's name (an identity's, or a key's short form).
    pub author: String,
    /// The bridge's own sending address: mail cannot be sent as the author
    /// (their domain's DKIM would not pass), so it is `Author via Tagline
    /// <sender>`, as lists rewrite From for DMARC.
    pub sender: String,
    /// The list's posting address.
    pub list: String,
    /// Extra recipients (maintainers of the touched files for a series).
    pub cc: Vec<String>,
    pub date: String,
}

/// The Message-ID of the mail rendering `entry` (part `part` of it: 0 for
/// the entry's only mail or a series' cover letter, k for patch k).
pub fn message_id(entry: &EntryId, part: u64) -> String {
    format!("{entry}.{part}@tagline")
}

/// The entry and part a Message-ID made by [`message_id`] names, if it is
/// one: how a list user's reply to a rendered mail finds the native entry
/// it answers.
pub fn rendered_id(message_id: &str) -> Option<(EntryId, u64)> {
    let local = message_id.strip_suffix("@tagline")?;
    let (entry, part) = local.rsplit_once('.')?;
    if part.is_empty() || part.len() > 6 || !part.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((entry.parse().ok()?, part.parse().ok()?))
}

/// `Re: ` and the subject, unless it already starts so.
pub fn reply_subject(subject: &str) -> String {
    let s = subject.trim();
    if s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:")) {
        s.to_string()
    } else {
        format!("Re: {s}")
    }
}

/// The mail a reply about patch `patch` (or, with `None` or a patch it
/// does not have, the whole revision) of `rev`, entry `id`, answers: the
/// bridged mail of that patch or else the cover letter (or first patch),
/// or for a native revision the mail the bridge rendered of it.
pub fn parent(id: &EntryId, rev: &Revision, patch: Option<u64>) -> Parent {
    let n = rev.patches.len() as u64;
    let k = patch.filter(|k| *k >= 1 && *k <= n);
    match &rev.mails {
        Some(m) => {
            let patch_mail = k.and_then(|k| m.patches.get(usize::try_from(k - 1).ok()?).cloned());
            let (message_id, part) = match (patch_mail, &m.cover) {
                (Some(p), _) => (p, k.unwrap_or(1)),
                (None, Some(c)) => (c.clone(), 0),
                (None, None) => (m.patches.first().cloned().unwrap_or_default(), 1),
            };
            let references = match &m.cover {
                Some(c) if part > 0 && *c != message_id => vec![c.clone()],
                _ => Vec::new(),
            };
            Parent {
                message_id,
                subject: patch_subject(rev, part),
                references,
            }
        }
        None => {
            let with_cover = has_cover(rev);
            let part = k.unwrap_or(if with_cover { 0 } else { 1 });
            Parent {
                message_id: message_id(id, part),
                subject: patch_subject(rev, part),
                references: if with_cover && part > 0 {
                    vec![message_id(id, 0)]
                } else {
                    Vec::new()
                },
            }
        }
    }
}

fn reply_to(entry: &EntryId, parent: &Parent, env: &Envelope, body: String) -> Outgoing {
    let mut references = parent.references.clone();
    references.retain(|r| *r != parent.message_id);
    references.push(parent.message_id.clone());
    Outgoing {
        entry: *entry,
        message_id: message_id(entry, 0),
        from: via(&env.author, &env.sender),
        to: vec![env.list.clone()],
        cc: env.cc.clone(),
        subject: reply_subject(&parent.subject),
        in_reply_to: Some(parent.message_id.clone()),
        references,
        date: env.date.clone(),
        body,
    }
}

fn via(author: &str, sender: &str) -> String {
    let name: String = author
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\\' | '<' | '>'))
        .collect();
    format!("\"{name} via Tagline\" <{sender}>")
}

/// The lines of `diff` that `file`'s lines `start..=end` on `side` fall in,
/// with the header of their hunk: what a reviewer quotes above a comment.
pub fn quoted_lines(diff: &str, file: &str, side: Side, start: u64, end: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_file = false;
    let (mut old, mut new) = (0u64, 0u64);
    // The hunk header not yet quoted, and whether a hunk is being read.
    let mut hunk: Option<String> = None;
    let mut in_hunk = false;
    for line in diff.lines() {
        if let Some(rest) = line.strip_prefix("diff --git ") {
            in_file =
                rest.ends_with(&format!(" b/{file}")) || rest.starts_with(&format!("a/{file} "));
            hunk = None;
            in_hunk = false;
            continue;
        }
        if !in_file {
            continue;
        }
        if let Some(h) = line.strip_prefix("@@ ") {
            let mut parts = h.split_whitespace();
            let num = |s: Option<&str>, sign: char| {
                s.and_then(|s| s.strip_prefix(sign))
                    .and_then(|s| s.split(',').next())
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            old = num(parts.next(), '-');
            new = num(parts.next(), '+');
            hunk = Some(line.to_string());
            in_hunk = true;
            continue;
        }
        if !in_hunk || line.starts_with("--- ") || line.starts_with("+++ ") {
            continue;
        }
        let (on_old, on_new) = match line.chars().next() {
            Some('+') => (None, Some(new)),
            Some('-') => (Some(old), None),
            Some('\\') => (None, None),
            _ => (Some(old), Some(new)),
        };
        let at = match side {
            Side::Old => on_old,
            Side::New => on_new,
        };
        if at.is_some_and(|n| n >= start && n <= end) && out.len() < MAX_QUOTED_LINES {
            if let Some(h) = hunk.take() {
                if out.is_empty() {
                    out.push(format!("diff --git a/{file} b/{file}"));
                }
                out.push(h);
            }
            out.push(line.to_string());
        }
        if on_old.is_some() {
            old += 1;
        }
        if on_new.is_some() {
            new += 1;
        }
    }
    out
}

/// A native review as a reply to `parent` (the patch it is about, or the
/// cover letter).
pub fn review_mail(
    entry: &EntryId,
    review: &Review,
    revision: &Revision,
    parent: &Parent,
    env: &Envelope,
) -> Outgoing {
    let mut body = String::new();
    if let Some(c) = review.comment.as_deref().filter(|c| !c.trim().is_empty()) {
        body.push_str(c.trim_end());
        body.push_str("\n\n");
    }
    let diff_of = |k: Option<u64>| -> String {
        match k {
            Some(k) => revision
                .patches
                .get(usize::try_from(k.saturating_sub(1)).unwrap_or(usize::MAX))
                .map(|p| p.diff.clone())
                .unwrap_or_default(),
            None => revision
                .patches
                .iter()
                .map(|p| p.diff.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    };
    let diff = diff_of(review.patch);
    for c in &review.inline {
        let quoted = quoted_lines(&diff, &c.file, c.side, c.start_line, c.end_line);
        if quoted.is_empty() {
            let side = match c.side {
                Side::Old => " (old side)",
                Side::New => "",
            };
            body.push_str(&format!(
                "On {} line {}{side}:\n",
                c.file,
                if c.start_line == c.end_line {
                    c.start_line.to_string()
                } else {
                    format!("{}-{}", c.start_line, c.end_line)
                }
            ));
        } else {
            for q in quoted {
                body.push_str(&format!("> {q}\n"));
            }
        }
        body.push('\n');
        body.push_str(c.text.trim_end());
        body.push_str("\n\n");
    }
    if review.retracts.is_some() {
        body.push_str("Please disregard my earlier review of this.\n\n");
    }
    for (k, v) in &review.trailers {
        body.push_str(&format!("{k}: {v}\n"));
    }
    reply_to(entry, parent, env, body.trim_end().to_string() + "\n")
}

/// A CI result as a reply to the revision's cover letter or first patch.
pub fn ci_mail(entry: &EntryId, ci: &CiResult, parent: &Parent, env: &Envelope) -> Outgoing {
    let mut body = format!(
        "CI context {}: {}\n\n{}\n",
        ci.context,
        ci.status.as_str(),
        ci.summary.trim_end()
    );
    if let Some(runner) = &ci.runner {
        body.push_str(&format!("\nRunner: {runner}\n"));
    }
    if let Some(ms) = ci.duration_ms {
        body.push_str(&format!("Duration: {}.{:03} s\n", ms / 1000, ms % 1000));
    }
    if let Some(url) = &ci.url {
        body.push_str(&format!("Details: {url}\n"));
    }
    if let Some(log) = &ci.log_excerpt {
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines
            .get(lines.len().saturating_sub(CI_LOG_LINES)..)
            .unwrap_or_default();
        body.push_str("\nLog (last lines):\n\n");
        for l in tail {
            body.push_str(&format!("  {l}\n"));
        }
    }
    reply_to(entry, parent, env, body)
}

/// A merge as the "applied, thanks" reply.
pub fn merge_mail(entry: &EntryId, merge: &Merge, parent: &Parent, env: &Envelope) -> Outgoing {
    let mut body = format!("Applied to {}, thanks.\n\n", merge.branch);
    for c in &merge.commits {
        body.push_str(&format!("  {c}\n"));
    }
    if !merge.cites.is_empty() {
        body.push_str(&format!(
            "\nThe decision cites {} entries (tagline status shows them).\n",
            merge.cites.len()
        ));
    }
    reply_to(entry, parent, env, body)
}

/// A natively submitted revision as a format-patch series: a cover letter
/// (when it has one, or more than one patch) and its patches threaded
/// under it.
pub fn series_mails(entry: &EntryId, rev: &Revision, env: &Envelope) -> Vec<Outgoing> {
    let mut out = Vec::new();
    let with_cover = has_cover(rev);
    let mut thread: Vec<String> = Vec::new();
    let mut parent: Option<String> = None;
    let from = via(&env.author, &env.sender);
    let mail =
        |part: u64, subject: String, body: String, parent: &Option<String>, refs: &Vec<String>| {
            Outgoing {
                entry: *entry,
                message_id: message_id(entry, part),
                from: from.clone(),
                to: vec![env.list.clone()],
                cc: env.cc.clone(),
                subject,
                in_reply_to: parent.clone(),
                references: refs.clone(),
                date: env.date.clone(),
                body,
            }
        };
    if with_cover {
        let mut body = rev
            .cover
            .as_ref()
            .map(|c| c.body.trim_end().to_string())
            .unwrap_or_default();
        if let Some(log) = rev.changelog.as_deref().filter(|l| !l.trim().is_empty()) {
            body.push_str(&format!(
                "\n\nChanges in v{}:\n{}",
                rev.version,
                log.trim_end()
            ));
        }
        body.push_str("\n\n");
        for p in &rev.patches {
            body.push_str(&format!("  {}\n", p.subject));
        }
        if let Some(base) = &rev.base_commit {
            body.push_str(&format!("\nbase-commit: {base}\n"));
        }
        if let Some(c) = &rev.change_id {
            body.push_str(&format!("change-id: {c}\n"));
        }
        out.push(mail(
            0,
            patch_subject(rev, 0),
            body.trim_start().to_string(),
            &parent,
            &thread,
        ));
        thread.push(message_id(entry, 0));
        parent = Some(message_id(entry, 0));
    }
    for (i, p) in rev.patches.iter().enumerate() {
        let k = i as u64 + 1;
        let mut body = String::new();
        if !p.author.is_empty() {
            body.push_str(&format!("From: {}\n\n", p.author));
        }
        body.push_str(&patch_body(&p.message, &p.diff));
        if !with_cover && let Some(base) = &rev.base_commit {
            body.push_str(&format!("\nbase-commit: {base}\n"));
        }
        out.push(mail(k, patch_subject(rev, k), body, &parent, &thread));
    }
    out
}

/// RFC 2047 encoded-word for a header value with non-ASCII characters.
fn encode_word(s: &str) -> String {
    if s.is_ascii() {
        return s.to_string();
    }
    // Base64 of UTF-8, in words of at most 45 bytes of text.
    let mut out = Vec::new();
    let mut chunk = String::new();
    for c in s.chars() {
        if chunk.len() + c.len_utf8() > 45 {
            out.push(format!("=?UTF-8?B?{}?=", b64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        out.push(format!("=?UTF-8?B?{}?=", b64(chunk.as_bytes())));
    }
    out.join(" ")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `Name: value`, folded at white space to lines of at most [`FOLD_AT`].
fn header(out: &mut String, name: &str, value: &str) {
    let value: String = value
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut line = format!("{name}:");
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        if line.len() + 1 + word.len() > FOLD_AT && line.len() > name.len() + 1 {
            out.push_str(&line);
            out.push_str("\r\n");
            line = String::new();
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push_str("\r\n");
}

/// The From: header's display name encoded (RFC 2047) when it is not ASCII.
fn encode_from(from: &str) -> String {
    match from.rsplit_once(" <") {
        Some((name, addr)) if !name.is_ascii() => {
            format!("{} <{addr}", encode_word(name.trim_matches('"')))
        }
        _ => from.to_string(),
    }
}

impl Outgoing {
    /// The mail as sent: CRLF line ends, UTF-8 text in 8 bits.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut m = String::new();
        header(&mut m, "From", &encode_from(&self.from));
        header(&mut m, "To", &self.to.join(", "));
        if !self.cc.is_empty() {
            header(&mut m, "Cc", &self.cc.join(", "));
        }
        header(&mut m, "Subject", &encode_word(&self.subject));
        header(&mut m, "Date", &self.date);
        header(&mut m, "Message-ID", &format!("<{}>", self.message_id));
        if let Some(p) = &self.in_reply_to {
            header(&mut m, "In-Reply-To", &format!("<{p}>"));
        }
        if !self.references.is_empty() {
            let refs: Vec<String> = self.references.iter().map(|r| format!("<{r}>")).collect();
            header(&mut m, "References", &refs.join(" "));
        }
        header(&mut m, LOOP_HEADER, &self.entry.to_string());
        header(&mut m, "MIME-Version", "1.0");
        header(&mut m, "Content-Type", "text/plain; charset=UTF-8");
        header(&mut m, "Content-Transfer-Encoding", "8bit");
        m.push_str("\r\n");
        for line in self.body.lines() {
            m.push_str(line);
            m.push_str("\r\n");
        }
        m.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_encoded_words() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
        assert_eq!(encode_word("plain"), "plain");
        assert_eq!(encode_word("Zoë"), "=?UTF-8?B?Wm/Dqw==?=");
    }

    #[test]
    fn quoted_lines_follow_hunk_numbers() {
        let diff = "diff --git a/x.c b/x.c\n--- a/x.c\n+++ b/x.c\n@@ -10,3 +10,4 @@ fn f\n a\n-b\n+c\n+d\n e\ndiff --git a/y.c b/y.c\n--- a/y.c\n+++ b/y.c\n@@ -1 +1 @@\n-y\n+z\n";
        assert_eq!(
            quoted_lines(diff, "x.c", Side::New, 11, 12),
            [
                "diff --git a/x.c b/x.c",
                "@@ -10,3 +10,4 @@ fn f",
                "+c",
                "+d"
            ]
        );
        assert_eq!(
            quoted_lines(diff, "x.c", Side::Old, 11, 11),
            ["diff --git a/x.c b/x.c", "@@ -10,3 +10,4 @@ fn f", "-b"]
        );
        assert_eq!(
            quoted_lines(diff, "y.c", Side::New, 1, 1),
            ["diff --git a/y.c b/y.c", "@@ -1 +1 @@", "+z"]
        );
        assert!(quoted_lines(diff, "z.c", Side::New, 1, 9).is_empty());
    }

    #[test]
    fn headers_fold_and_subjects_reply_once() {
        let mut m = String::new();
        header(
            &mut m,
            "References",
            &["<aaaaaaaaaaaaaaaaaaaa@example.org>"; 4].join(" "),
        );
        assert!(m.lines().all(|l| l.len() <= FOLD_AT), "{m}");
        assert!(m.lines().count() > 1, "{m}");
        assert_eq!(reply_subject("[PATCH] x"), "Re: [PATCH] x");
        assert_eq!(reply_subject("RE: [PATCH] x"), "RE: [PATCH] x");
    }
}
