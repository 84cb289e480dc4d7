//! A revision's patches as mail, the way `git format-patch` writes them:
//! the subject with its `[PATCH v2 3/7]` prefix and the body (commit
//! message, `---`, diff). Shared by the am-ready mbox (tagline-git) and the
//! mail the bridge sends (tagline-email). Pure.

use tagline_format::review::Revision;

/// Whether `rev` goes out with a cover letter: it has one, or more than one
/// patch (as `git format-patch --cover-letter` is used for series).
pub fn has_cover(rev: &Revision) -> bool {
    rev.cover.is_some() || rev.patches.len() > 1
}

/// The subject patch `k` of `rev` is sent with (`k` = 0: the cover
/// letter): `[PATCH v2 3/7] subject`, `[PATCH] subject` for a lone patch.
pub fn patch_subject(rev: &Revision, k: u64) -> String {
    let n = rev.patches.len() as u64;
    let v = if rev.version > 1 {
        format!(" v{}", rev.version)
    } else {
        String::new()
    };
    let subject = if k == 0 {
        rev.cover
            .as_ref()
            .map_or("(no cover letter)", |c| c.subject.as_str())
    } else {
        rev.patches
            .get(usize::try_from(k - 1).unwrap_or(usize::MAX))
            .map_or("", |p| p.subject.as_str())
    };
    if n <= 1 && k != 0 {
        format!("[PATCH{v}] {subject}")
    } else {
        format!("[PATCH{v} {k}/{n}] {subject}")
    }
}

/// A patch mail's body: the commit message, `---`, the diff (a bridged
/// patch's diff starts at its own `---` line), ending in a newline.
pub fn patch_body(message: &str, diff: &str) -> String {
    let mut body = message.trim_end().to_string();
    body.push('\n');
    if !diff.starts_with("---") {
        body.push_str("---\n");
    }
    body.push_str(diff);
    if !body.ends_with('\n') {
        body.push('\n');
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagline_format::EntryId;
    use tagline_format::review::{Cover, Patch};

    fn rev(n: usize, version: u64, cover: bool) -> Revision {
        Revision {
            project: EntryId([1; 32]),
            series: None,
            version,
            base_commit: None,
            cover: cover.then(|| Cover {
                subject: "the series".into(),
                body: String::new(),
            }),
            changelog: None,
            patches: (1..=n)
                .map(|k| Patch {
                    subject: format!("p{k}"),
                    message: String::new(),
                    author: String::new(),
                    diff: String::new(),
                    patch_id: String::new(),
                })
                .collect(),
            change_id: None,
            mails: None,
        }
    }

    #[test]
    fn subjects_as_format_patch_writes_them() {
        assert_eq!(patch_subject(&rev(1, 1, false), 1), "[PATCH] p1");
        assert_eq!(patch_subject(&rev(1, 3, false), 1), "[PATCH v3] p1");
        assert_eq!(patch_subject(&rev(3, 2, true), 2), "[PATCH v2 2/3] p2");
        assert_eq!(patch_subject(&rev(3, 1, true), 0), "[PATCH 0/3] the series");
        assert!(has_cover(&rev(2, 1, false)) && !has_cover(&rev(1, 1, false)));
    }

    #[test]
    fn bodies_break_before_the_diff_once() {
        assert_eq!(
            patch_body("m\n\nS-o-b: a\n\n", "diff --git a b\n"),
            "m\n\nS-o-b: a\n---\ndiff --git a b\n"
        );
        assert_eq!(patch_body("m", "---\n a | 1 +\n"), "m\n---\n a | 1 +\n");
        assert_eq!(patch_body("m", "diff"), "m\n---\ndiff\n");
    }
}
