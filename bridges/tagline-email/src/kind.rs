//! What kind of mail a list message is, from its subject, author and
//! unquoted text: a patch, a cover letter, a pull request, a review reply,
//! a maintainer's "applied, thanks", a merge notice for a pull request, or
//! a CI bot's report.

use serde::Serialize;

use crate::mailinfo::MailInfo;
use crate::subject::Subject;

/// Addresses of CI bots whose replies are test reports (more can be added
/// per project; these are the ones on the Linux lists).
pub const CI_BOT_ADDRESSES: &[&str] = &["lkp@intel.com", "patchwork-bot@kernel.org"];
/// Unquoted lines read at most when looking for "applied" or "merged".
pub const MAX_SCANNED_LINES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MailKind {
    Patch,
    CoverLetter,
    PullRequest,
    /// A reply saying the series was applied ("Applied, thanks").
    Applied,
    /// A bot's notice that a pull request was merged (pr-tracker-bot).
    Merged,
    /// A CI bot's report on a patch (kernel test robot).
    CiReport,
    Reply,
    Other,
}

impl MailKind {
    /// Its name, as serialised, in `bridge parse` and in mail records
    /// (SPEC.md §15.1).
    pub fn as_str(&self) -> &'static str {
        match self {
            MailKind::Patch => "patch",
            MailKind::CoverLetter => "cover-letter",
            MailKind::PullRequest => "pull-request",
            MailKind::Applied => "applied",
            MailKind::Merged => "merged",
            MailKind::CiReport => "ci-report",
            MailKind::Reply => "reply",
            MailKind::Other => "other",
        }
    }
}

/// Classifies one mail.
pub fn classify(info: &MailInfo, s: &Subject) -> MailKind {
    if s.reply {
        // The sender: a bot's report may carry a patch with an in-body From.
        let email = info.sender.to_ascii_lowercase();
        if CI_BOT_ADDRESSES.contains(&email.as_str()) {
            return MailKind::CiReport;
        }
        let unquoted = || {
            info.message
                .lines()
                .take(MAX_SCANNED_LINES)
                .filter(|l| !l.starts_with('>'))
                .map(str::trim)
        };
        if unquoted().any(|l| l.starts_with("has been merged into")) {
            return MailKind::Merged;
        }
        if unquoted().any(is_applied_line) {
            return MailKind::Applied;
        }
        return MailKind::Reply;
    }
    if s.pull {
        MailKind::PullRequest
    } else if s.patch && s.index == Some(0) {
        MailKind::CoverLetter
    } else if !info.patch.is_empty() {
        MailKind::Patch
    } else {
        MailKind::Other
    }
}

/// "Applied, thanks.", "Applied, thank you!", "Applied to net-next, thanks",
/// "Applied to my watchdog-next tree.": a line that starts with "applied"
/// and is short (not a sentence about something else being applied).
fn is_applied_line(l: &str) -> bool {
    let lower = l.to_ascii_lowercase();
    lower.starts_with("applied") && lower.len() <= 80 && !lower.contains('?')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialised_ones() {
        use MailKind::*;
        for k in [
            Patch,
            CoverLetter,
            PullRequest,
            Applied,
            Merged,
            CiReport,
            Reply,
            Other,
        ] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn applied_lines() {
        for l in [
            "Applied, thanks.",
            "Applied, thank you!",
            "Applied to watchdog-next.",
        ] {
            assert!(is_applied_line(l), "{l}");
        }
        for l in [
            "Applied?",
            "This was never applied to anything, as far as I can tell from the history of the tree",
        ] {
            assert!(!is_applied_line(l), "{l}");
        }
    }
}
