//! A revision as an mbox for `git am` (pure): each patch's commit message
//! with the trailers given for it appended, as b4 does for an am-ready
//! mbox.

use tagline_format::review::Revision;
use tagline_review::patchmail::{patch_body, patch_subject};

/// `message` with `add` (key, value) appended as trailers, after its own
/// trailers, skipping any it already carries (case-insensitively).
pub fn with_trailers(message: &str, add: &[(String, String)]) -> String {
    let mut out = message.trim_end().to_string();
    let existing = tagline_review::trailers::parse(&format!("x\n\n{out}"));
    let mut appended = false;
    for (key, value) in add {
        if existing
            .iter()
            .any(|t| t.is(key) && t.value.eq_ignore_ascii_case(value))
        {
            continue;
        }
        if !appended && existing.is_empty() {
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&format!("{key}: {value}"));
        appended = true;
    }
    out.push('\n');
    out
}

/// The mbox `git am` applies: one mail per patch of `rev`, its commit
/// message carrying `trailers[k]` for patch k+1 (missing entries: none).
/// `date` is an RFC 2822 date (the author date of every commit).
pub fn am_mbox(rev: &Revision, trailers: &[Vec<(String, String)>], date: &str) -> String {
    let mut mbox = String::new();
    for (i, p) in rev.patches.iter().enumerate() {
        let add = trailers.get(i).map(Vec::as_slice).unwrap_or_default();
        mbox.push_str("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n");
        mbox.push_str(&format!("From: {}\n", p.author));
        mbox.push_str(&format!("Date: {date}\n"));
        mbox.push_str(&format!("Subject: {}\n", patch_subject(rev, i as u64 + 1)));
        mbox.push_str(
            "MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\nContent-Transfer-Encoding: 8bit\n\n",
        );
        mbox.push_str(&patch_body(&with_trailers(&p.message, add), &p.diff));
        mbox.push_str("-- \ntagline\n\n");
    }
    mbox
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(k: &str, v: &str) -> (String, String) {
        (k.into(), v.into())
    }

    #[test]
    fn trailers_go_after_the_existing_block_once() {
        assert_eq!(
            with_trailers(
                "x: y\n\nBody.\n\nSigned-off-by: A <a@x>\n",
                &[t("Reviewed-by", "B <b@x>")]
            ),
            "x: y\n\nBody.\n\nSigned-off-by: A <a@x>\nReviewed-by: B <b@x>\n"
        );
        assert_eq!(
            with_trailers("Body only.", &[t("Acked-by", "C <c@x>")]),
            "Body only.\n\nAcked-by: C <c@x>\n"
        );
        assert_eq!(
            with_trailers(
                "Body.\n\nReviewed-by: B <B@x>\n",
                &[t("Reviewed-by", "B <b@x>"), t("Tested-by", "D <d@x>")]
            ),
            "Body.\n\nReviewed-by: B <B@x>\nTested-by: D <d@x>\n"
        );
    }
}
