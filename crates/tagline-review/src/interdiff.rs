//! What changed between two revisions of a series, patch by patch, in the
//! spirit of `git range-diff` and `b4 diff`: patches are paired (same
//! patch-id first, then same subject, then same position), unchanged pairs are
//! named, changed ones shown as a diff of their diffs and messages.

use similar::TextDiff;
use tagline_format::review::{Patch, Revision};

/// How a patch of the newer revision relates to the older one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pairing {
    /// Same patch-id: the same change.
    Unchanged { old: usize, new: usize },
    /// Paired by subject or position, but the change differs.
    Changed { old: usize, new: usize },
    /// Only in the newer revision.
    Added { new: usize },
    /// Only in the older revision.
    Removed { old: usize },
}

/// Pairs the patches of `old` and `new` (0-based indices), in `new`'s order,
/// removed ones last.
pub fn pair(old: &Revision, new: &Revision) -> Vec<Pairing> {
    let mut used = vec![false; old.patches.len()];
    let mut out = Vec::new();
    let take = |pred: &dyn Fn(&Patch) -> bool, used: &mut Vec<bool>| -> Option<usize> {
        let i = old
            .patches
            .iter()
            .enumerate()
            .position(|(i, p)| !used.get(i).copied().unwrap_or(true) && pred(p))?;
        if let Some(u) = used.get_mut(i) {
            *u = true;
        }
        Some(i)
    };
    let mut pending = Vec::new();
    for (n, p) in new.patches.iter().enumerate() {
        match take(&|o: &Patch| o.patch_id == p.patch_id, &mut used) {
            Some(o) => out.push((n, Some(Pairing::Unchanged { old: o, new: n }))),
            None => {
                out.push((n, None));
                pending.push(n);
            }
        }
    }
    for n in pending {
        let Some(p) = new.patches.get(n) else {
            continue;
        };
        let mut found = take(&|o: &Patch| o.subject == p.subject, &mut used);
        if found.is_none()
            && let Some(u) = used.get_mut(n)
            && !*u
        {
            *u = true;
            found = Some(n);
        }
        if let Some(slot) = out.iter_mut().find(|(k, _)| *k == n) {
            slot.1 = Some(match found {
                Some(o) => Pairing::Changed { old: o, new: n },
                None => Pairing::Added { new: n },
            });
        }
    }
    let mut result: Vec<Pairing> = out.into_iter().filter_map(|(_, p)| p).collect();
    result.extend(
        used.iter()
            .enumerate()
            .filter(|(_, u)| !**u)
            .map(|(o, _)| Pairing::Removed { old: o }),
    );
    result
}

/// The interdiff as text.
pub fn render(old: &Revision, new: &Revision) -> String {
    let mut out = format!("v{} -> v{}\n", old.version, new.version);
    if let Some(c) = &new.changelog {
        out.push_str(&format!("changelog:\n{}\n", c.trim_end()));
    }
    for pairing in pair(old, new) {
        match pairing {
            Pairing::Unchanged { old: o, new: n } => {
                out.push_str(&format!(
                    "{}: {} = {}: {}\n",
                    o + 1,
                    subject(old, o),
                    n + 1,
                    subject(new, n)
                ));
            }
            Pairing::Added { new: n } => {
                out.push_str(&format!("-: ----- > {}: {}\n", n + 1, subject(new, n)))
            }
            Pairing::Removed { old: o } => {
                out.push_str(&format!("{}: {} < -: -----\n", o + 1, subject(old, o)))
            }
            Pairing::Changed { old: o, new: n } => {
                out.push_str(&format!(
                    "{}: {} ! {}: {}\n",
                    o + 1,
                    subject(old, o),
                    n + 1,
                    subject(new, n)
                ));
                let (Some(a), Some(b)) = (old.patches.get(o), new.patches.get(n)) else {
                    continue;
                };
                let before = format!("{}\n{}\n{}", a.subject, a.message, a.diff);
                let after = format!("{}\n{}\n{}", b.subject, b.message, b.diff);
                let d = TextDiff::from_lines(&before, &after);
                for line in d.unified_diff().context_radius(3).to_string().lines() {
                    out.push_str("    ");
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
    }
    out
}

fn subject(r: &Revision, i: usize) -> &str {
    r.patches.get(i).map_or("", |p| p.subject.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tagline_format::EntryId;

    fn patch(subject: &str, pid: &str, diff: &str) -> Patch {
        Patch {
            subject: subject.into(),
            message: "m\n".into(),
            author: "A <a@x.org>".into(),
            diff: diff.into(),
            patch_id: pid.into(),
        }
    }

    fn rev(version: u64, patches: Vec<Patch>) -> Revision {
        Revision {
            project: EntryId([0; 32]),
            series: None,
            version,
            base_commit: None,
            cover: None,
            changelog: None,
            patches,
            change_id: None,
            mails: None,
        }
    }

    #[test]
    fn pairs_by_id_then_subject_then_position() {
        let v1 = rev(
            1,
            vec![
                patch("a", "1", "+a\n"),
                patch("b", "2", "+b\n"),
                patch("c", "3", "+c\n"),
            ],
        );
        let v2 = rev(
            2,
            vec![
                patch("b", "2", "+b\n"),
                patch("a", "9", "+a2\n"),
                patch("new", "7", "+n\n"),
            ],
        );
        assert_eq!(
            pair(&v1, &v2),
            vec![
                Pairing::Unchanged { old: 1, new: 0 },
                Pairing::Changed { old: 0, new: 1 },
                Pairing::Changed { old: 2, new: 2 },
            ]
        );
        let text = render(&v1, &v2);
        assert!(text.contains("2: b = 1: b"), "{text}");
        assert!(text.contains("-+a") && text.contains("++a2"), "{text}");
    }
}
