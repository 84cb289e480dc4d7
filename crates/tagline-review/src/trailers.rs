//! Trailers (`Reviewed-by: Name <address>`) in commit messages and mails, found
//! the way `git interpret-trailers --parse` finds them.
//!
//! The trailer block is the last paragraph of the message (before a `---`
//! patch divider), and only if it is all trailers, or it holds a line git
//! itself writes (`Signed-off-by: `, `(cherry picked from commit `) and at
//! least a quarter of its lines are trailers. The first paragraph (the title)
//! never is. A trailer line is a token of letters, digits and `-`, optional
//! white space, `:`, then the value; lines starting with white space continue
//! the previous trailer.

/// Lines git writes itself; their presence lets a mixed paragraph count.
const GIT_GENERATED_PREFIXES: [&str; 2] = ["Signed-off-by: ", "(cherry picked from commit "];

/// One trailer: the key as written and the value, unfolded and trimmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trailer {
    pub key: String,
    pub value: String,
}

impl std::fmt::Display for Trailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.value)
    }
}

impl Trailer {
    /// Case-insensitive key comparison (`reviewed-by` is `Reviewed-by`).
    pub fn is(&self, key: &str) -> bool {
        self.key.eq_ignore_ascii_case(key)
    }
}

/// The position of the separator if `line` starts with a trailer token.
fn separator(line: &str) -> Option<usize> {
    let mut seen_space = false;
    for (i, c) in line.char_indices() {
        if c == ':' {
            return (i > 0).then_some(i);
        }
        if !seen_space && (c.is_ascii_alphanumeric() || c == '-') {
            continue;
        }
        if i > 0 && (c == ' ' || c == '\t') {
            seen_space = true;
            continue;
        }
        return None;
    }
    None
}

/// The end of the log message: the first `---` divider line, if any.
fn message_end(lines: &[&str]) -> usize {
    lines
        .iter()
        .position(|l| {
            l.strip_prefix("---")
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(char::is_whitespace))
        })
        .unwrap_or(lines.len())
}

/// The trailers of `message` (a commit message, or a whole format-patch mail).
pub fn parse(message: &str) -> Vec<Trailer> {
    let all: Vec<&str> = message.lines().collect();
    let lines = all.get(..message_end(&all)).unwrap_or(&[]);
    let blank = |l: &str| l.trim().is_empty();
    let comment = |l: &str| l.starts_with('#');
    // The first paragraph is the title (comment lines skipped when finding its end).
    let title_end = lines
        .iter()
        .position(|l| !comment(l) && blank(l))
        .unwrap_or(lines.len());
    // Scan backwards from the end, as git's find_trailer_block_start does.
    let (mut trailer_lines, mut non_trailer_lines, mut possible_continuation) =
        (0usize, 0usize, 0usize);
    let mut recognized = false;
    let mut only_spaces = true;
    let mut start: Option<usize> = None;
    let mut end = lines.len();
    for i in (title_end..lines.len()).rev() {
        let l = lines.get(i).copied().unwrap_or("");
        if comment(l) {
            non_trailer_lines += possible_continuation;
            possible_continuation = 0;
            continue;
        }
        if blank(l) {
            if only_spaces {
                end = i;
                continue;
            }
            non_trailer_lines += possible_continuation;
            if (recognized && trailer_lines * 3 >= non_trailer_lines)
                || (trailer_lines > 0 && non_trailer_lines == 0)
            {
                start = Some(i + 1);
            }
            break;
        }
        only_spaces = false;
        if GIT_GENERATED_PREFIXES.iter().any(|p| l.starts_with(p)) {
            trailer_lines += 1;
            possible_continuation = 0;
            recognized = true;
            continue;
        }
        if separator(l).is_some() && !l.starts_with(char::is_whitespace) {
            trailer_lines += 1;
            possible_continuation = 0;
        } else if l.starts_with(char::is_whitespace) {
            possible_continuation += 1;
        } else {
            non_trailer_lines += 1 + possible_continuation;
            possible_continuation = 0;
        }
    }
    let Some(start) = start else {
        return Vec::new();
    };
    let block = lines.get(start..end).unwrap_or(&[]);
    // Parse the block: continuation lines join the trailer above them.
    let mut out: Vec<Trailer> = Vec::new();
    let mut last_is_trailer = false;
    for l in block {
        if comment(l) {
            // A comment line ends the trailer above it (as git does).
            last_is_trailer = false;
            continue;
        }
        if last_is_trailer && l.starts_with(char::is_whitespace) {
            if let Some(t) = out.last_mut() {
                let more = l.trim();
                if !more.is_empty() {
                    if !t.value.is_empty() {
                        t.value.push(' ');
                    }
                    t.value.push_str(more);
                }
            }
            continue;
        }
        match separator(l).filter(|_| !l.starts_with(char::is_whitespace)) {
            Some(i) => {
                out.push(Trailer {
                    key: l.get(..i).unwrap_or("").trim().to_string(),
                    value: l.get(i + 1..).unwrap_or("").trim().to_string(),
                });
                last_is_trailer = true;
            }
            None => last_is_trailer = false,
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(m: &str) -> Vec<String> {
        parse(m).iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn last_paragraph_only() {
        let m = "title\n\nbody text\nNot-a: trailer in body\n\nReviewed-by: A <a@x.org>\nSigned-off-by: B <b@x.org>\n---\n diffstat\n";
        assert_eq!(
            keys(m),
            ["Reviewed-by: A <a@x.org>", "Signed-off-by: B <b@x.org>"]
        );
    }

    #[test]
    fn mixed_paragraph_needs_a_git_line_and_a_quarter() {
        let m = "t\n\nsome prose here\nmore prose\nSigned-off-by: B <b@x.org>\n";
        assert_eq!(keys(m), ["Signed-off-by: B <b@x.org>"]);
        let m = "t\n\nsome prose here\nmore prose\nAcked-by: B <b@x.org>\n";
        assert!(keys(m).is_empty());
        let m = "t\n\np1\np2\np3\np4\nSigned-off-by: B <b@x.org>\n";
        assert!(
            keys(m).is_empty(),
            "1 trailer vs 4 prose lines is under a quarter"
        );
    }

    #[test]
    fn title_and_continuations() {
        assert!(keys("Fixes: only a title\n").is_empty());
        let m = "t\n\nLink: https://example.org/a\n  /continued\nAcked-by : C <c@x.org>\n";
        assert_eq!(
            keys(m),
            [
                "Link: https://example.org/a /continued",
                "Acked-by: C <c@x.org>"
            ]
        );
    }
}
