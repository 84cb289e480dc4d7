//! Subject lines of patch mails: the bracketed prefix split into what it says
//! (`[PATCH net-next v3 02/07]`, `[RFC PATCH]`, `[PATCH RESEND]`, Mercurial's
//! `[PATCH 0 of 2]`, `[GIT PULL]`, list tags such as `[Navy-patches]`), and
//! the subject proper, cleaned as `git mailinfo` cleans it.

use serde::Serialize;

/// Longest subject looked at; the rest is kept as text but not parsed.
pub const MAX_SUBJECT_LEN: usize = 4096;

/// What a subject line says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Subject {
    /// The subject proper: prefixes, `Re:` and brackets removed as `git
    /// mailinfo` does (the commit's subject line).
    pub text: String,
    /// The revision (`v3`); 1 when none is given.
    pub version: u32,
    /// Whether the subject gave the revision (a patch without one, in a
    /// thread whose cover letter says `v2`, is of that revision).
    pub versioned: bool,
    /// `02` of `02/07`.
    pub index: Option<u32>,
    /// `07` of `02/07`.
    pub total: Option<u32>,
    /// Whether a bracket names a patch (`PATCH`, `RFC`, `PATCHv2`, ...).
    pub patch: bool,
    pub rfc: bool,
    pub resend: bool,
    /// `[GIT PULL]` (or `[PULL]`, `[GIT PULL REQUEST]`).
    pub pull: bool,
    /// A reply: `Re:` (any case, also `RE:`/`Aw:`) before the brackets.
    pub reply: bool,
    /// Other words in the patch bracket (`net-next`, `for-6.13`, `bpf`).
    pub tags: Vec<String>,
    /// Brackets without a patch keyword (mailing-list tags such as
    /// `[Navy-patches]`, `[Xen-devel]`).
    pub lists: Vec<String>,
}

/// Parses a (decoded, unfolded) subject line.
pub fn parse(raw: &str) -> Subject {
    let mut s = Subject {
        version: 1,
        ..Subject::default()
    };
    let line: String = raw
        .chars()
        .take(MAX_SUBJECT_LEN)
        .map(|c| {
            if c == '\t' || c == '\n' || c == '\r' {
                ' '
            } else {
                c
            }
        })
        .collect();
    let mut rest = line.trim_start();
    loop {
        rest = rest.trim_start_matches([' ', ':']);
        if let Some(after) = strip_reply(rest) {
            s.reply = true;
            rest = after;
            continue;
        }
        if let Some(inner_end) = rest.strip_prefix('[').and_then(|r| r.find(']')) {
            let inner = rest.get(1..1 + inner_end).unwrap_or_default();
            bracket(inner, &mut s);
            rest = rest.get(inner_end + 2..).unwrap_or_default();
            continue;
        }
        break;
    }
    s.text = collapse_spaces(rest.trim());
    s
}

/// `Re:`, `RE:`, `re:`, `Aw:` (German), `Fwd:` is not a reply.
fn strip_reply(s: &str) -> Option<&str> {
    let head = s.get(..3)?;
    if head.eq_ignore_ascii_case("re:") || head.eq_ignore_ascii_case("aw:") {
        return s.get(3..);
    }
    None
}

fn collapse_spaces(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split(' ').filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
    }
    out
}

/// One bracket's words: patch keywords, `vN`, `N/M`, `N of M`, the rest tags.
fn bracket(inner: &str, s: &mut Subject) {
    let words: Vec<&str> = inner.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
    let is_patch = upper.iter().any(|w| {
        w == "PATCH"
            || w == "RFC"
            || w == "PULL"
            || w.starts_with("PATCHV")
            || (w.starts_with("PATCH") && w.len() > 5)
    });
    // "[net,v2,1/2]": a version or an n/N marker makes a patch bracket too.
    let is_patch = is_patch
        || upper.iter().any(|w| version_of(w).is_some())
        || words.iter().any(|w| fraction(w).is_some());
    if !is_patch {
        // A list tag, or text in brackets: a subject such as "[PATCH]"-less
        // "[Xen-devel] foo" keeps no bracket; git mailinfo drops them too.
        s.lists.push(inner.trim().to_string());
        return;
    }
    s.patch = true;
    let mut i = 0;
    while let Some(w) = words.get(i) {
        let u = upper.get(i).map(String::as_str).unwrap_or_default();
        i += 1;
        match u {
            "PATCH" => s.patch = true,
            "RFC" => {
                s.rfc = true;
                s.patch = true;
            }
            "RESEND" => s.resend = true,
            "GIT" if upper.get(i).map(String::as_str) == Some("PULL") => {}
            "PULL" => s.pull = true,
            // "[GIT PULL REQUEST]"
            "REQUEST" if s.pull => {}
            _ => {
                if let Some(v) = version_of(u) {
                    s.version = v;
                    s.versioned = true;
                    if u.starts_with("PATCH") {
                        s.patch = true;
                    }
                } else if let Some((n, m)) = fraction(w) {
                    s.index = Some(n);
                    s.total = Some(m);
                } else if let (Ok(n), Some("of"), Some(m)) = (
                    w.parse::<u32>(),
                    words.get(i).copied(),
                    words.get(i + 1).and_then(|m| m.parse::<u32>().ok()),
                ) {
                    // Mercurial: "0 of 2".
                    s.index = Some(n);
                    s.total = Some(m);
                    i += 2;
                } else {
                    s.tags.push((*w).to_string());
                }
            }
        }
    }
}

/// `V3`, `PATCHV3` (already upper case) → 3.
fn version_of(u: &str) -> Option<u32> {
    let digits = u.strip_prefix("PATCHV").or_else(|| u.strip_prefix('V'))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|v| *v >= 1)
}

/// `02/07` → (2, 7).
fn fraction(w: &str) -> Option<(u32, u32)> {
    let (a, b) = w.split_once('/')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_prefixes() {
        let s = parse("[PATCH v3 02/07] watchdog: add a driver");
        assert_eq!(
            (s.version, s.index, s.total, s.patch),
            (3, Some(2), Some(7), true)
        );
        assert_eq!(s.text, "watchdog: add a driver");

        let s = parse("[PATCH net-next v2 1/3] net: fix");
        assert_eq!((s.version, s.index, s.total), (2, Some(1), Some(3)));
        assert_eq!(s.tags, vec!["net-next"]);

        let s = parse("[RFC PATCH] idea");
        assert!(s.rfc && s.patch);
        assert_eq!(s.version, 1);

        let s = parse("[PATCH RESEND v4 0/5] series");
        assert!(s.resend);
        assert_eq!((s.version, s.index), (4, Some(0)));

        let s = parse("[PATCH 0 of 2] hg series");
        assert_eq!((s.index, s.total), (Some(0), Some(2)));
        assert_eq!(s.text, "hg series");

        let s = parse("[PATCHv2 3/4] squashed version");
        assert_eq!((s.version, s.index), (2, Some(3)));

        let s = parse("[PATCH 3/3 v2] Xyzzy");
        assert_eq!((s.version, s.index, s.total), (2, Some(3), Some(3)));
        assert_eq!(s.text, "Xyzzy");

        let s = parse("[net,v2,1/2] net: ieee802154: fix");
        assert_eq!((s.version, s.index, s.total), (2, Some(1), Some(2)));
        assert_eq!(s.tags, vec!["net"]);
        assert!(s.lists.is_empty());

        let s = parse("[GIT PULL] watchdog updates for 6.13");
        assert!(s.pull);
        assert!(!s.tags.iter().any(|t| t == "GIT"));
    }

    #[test]
    fn replies_and_list_tags() {
        let s = parse("Re: [PATCH v2 1/2] foo: bar");
        assert!(s.reply);
        assert_eq!((s.version, s.index), (2, Some(1)));
        assert_eq!(s.text, "foo: bar");

        let s = parse("re: [PATCH] another patch");
        assert!(s.reply && s.patch);
        assert_eq!(s.text, "another patch");

        let s = parse("[Navy-patches] [PATCH] Изменён список");
        assert_eq!(s.lists, vec!["Navy-patches"]);
        assert!(s.patch);
        assert_eq!(s.text, "Изменён список");

        let s = parse("Re: discussion that lead to this patch");
        assert!(s.reply && !s.patch);
        assert_eq!(s.text, "discussion that lead to this patch");
    }

    #[test]
    fn odd_input_does_not_panic() {
        for raw in [
            "",
            "[",
            "]",
            "[]",
            "[PATCH",
            "[PATCH v/3]",
            "Re:",
            "[PATCH 9999999999/1] x",
        ] {
            let _ = parse(raw);
        }
        let long = "[PATCH] ".to_string() + &"x".repeat(MAX_SUBJECT_LEN * 2);
        assert!(parse(&long).text.len() <= MAX_SUBJECT_LEN);
    }
}
