//! One patch mail split as `git mailinfo -u` splits it: author, email,
//! subject and date (in-body `From:`/`Subject:`/`Date:` overriding the
//! mail's), the commit message, and the patch. MIME (RFC 2047 words,
//! charsets, quoted-printable, base64, multipart) is decoded by mail-parser;
//! what git does with the decoded text is done here, line by line, after
//! git's `mailinfo.c`.

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::charsets::DecoderFnc;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{HeaderForm, HeaderValue, MessageParser, MimeHeaders, PartType};
use serde::Serialize;

/// Largest mail parsed; bigger ones are refused before parsing.
pub const MAX_MAIL_SIZE: usize = 32 * 1024 * 1024;
/// In-body header lines (folded continuations included) read at most.
pub const MAX_INBODY_HEADER_LINES: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MailError {
    #[error("a mail of {found} bytes, more than the {max} bytes accepted")]
    TooLarge { found: usize, max: usize },
    #[error("not a mail: no header could be parsed")]
    NotAMail,
}

/// How to read the body, as `git mailinfo`'s options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Honour `-- >8 --` scissors lines (`--scissors`): the text above the
    /// last one is dropped.
    pub scissors: bool,
    /// Take `From:`/`Subject:`/`Date:` at the top of the body as headers
    /// (git's default; `--no-inbody-headers` turns it off).
    pub inbody_headers: bool,
    /// Append `Message-ID: <id>` to the message (`--message-id`).
    pub message_id: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scissors: false,
            inbody_headers: true,
            message_id: false,
        }
    }
}

/// A mail, split.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MailInfo {
    pub author: String,
    /// The author's address: an in-body `From:` when the mail carries a
    /// patch and has one, else the header's.
    pub email: String,
    /// The `From:` header's address, as sent: who sent the mail (what DKIM
    /// speaks for), whatever the body says about the patch's author.
    pub sender: String,
    /// The `From:` header's display name.
    pub sender_name: String,
    /// The subject as `git mailinfo` prints it (prefixes removed).
    pub subject: String,
    /// The subject as sent (decoded, unfolded).
    pub raw_subject: String,
    pub date: String,
    /// The mail's `Date:` header as seconds since the epoch (UTC), when it
    /// parses.
    pub timestamp: Option<i64>,
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// The commit message (what `git mailinfo` writes to MSG).
    pub message: String,
    /// The patch (what it writes to PATCH), from the first `---`, `diff -`
    /// or `Index: ` line on: bytes as sent (transfer encoding undone, the
    /// charset kept, as `git am` needs them for files in other encodings).
    #[serde(serialize_with = "lossy")]
    pub patch: Vec<u8>,
}

fn lossy<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(b))
}

impl MailInfo {
    /// The INFO file of `git mailinfo`.
    pub fn info_text(&self) -> String {
        let mut out = format!("Author: {}\nEmail: {}\n", self.author, self.email);
        out.push_str(&format!("Subject: {}\n", self.subject));
        if !self.date.is_empty() {
            out.push_str(&format!("Date: {}\n", self.date));
        }
        out.push('\n');
        out
    }
}

/// Splits one raw mail (headers and body, as delivered).
pub fn parse(raw: &[u8], opts: &Options) -> Result<MailInfo, MailError> {
    if raw.len() > MAX_MAIL_SIZE {
        return Err(MailError::TooLarge {
            found: raw.len(),
            max: MAX_MAIL_SIZE,
        });
    }
    let raw = strip_mbox_from_line(raw);
    // Only the headers read here are parsed; others (Received: above all,
    // costly and unused) are kept raw.
    let msg = MessageParser::new()
        .with_mime_headers()
        .with_date_headers()
        .with_address_headers()
        .with_message_ids()
        .header_text(mail_parser::HeaderName::Subject)
        .parse(raw)
        .ok_or(MailError::NotAMail)?;
    if msg.headers().is_empty() {
        return Err(MailError::NotAMail);
    }
    let text_header = |name: &str| -> Option<String> {
        msg.header_as(name.to_string(), HeaderForm::Text)
            .into_iter()
            .find_map(|v| match v {
                HeaderValue::Text(t) => Some(unfold(&t)),
                _ => None,
            })
    };
    let mut info = MailInfo::default();
    let from = text_header("From").unwrap_or_default();
    let raw_subject = text_header("Subject").unwrap_or_default();
    let date = text_header("Date").unwrap_or_default();
    info.message_id = msg.message_id().map(str::to_string);
    info.timestamp = msg.date().map(mail_parser::DateTime::to_timestamp);
    info.in_reply_to = ids(msg.in_reply_to());
    info.references = ids(msg.references());
    info.raw_subject = raw_subject.clone();

    let mut state = Body {
        opts: *opts,
        header_stage: true,
        accum: String::new(),
        inbody: Inbody::default(),
        message: String::new(),
        patch: Vec::new(),
        in_patch: false,
        header_lines: 0,
    };
    for (bytes, decoder) in body_parts(&msg) {
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r\n").map_or(line.to_vec(), |l| {
                let mut l = l.to_vec();
                l.push(b'\n');
                l
            });
            state.line(&line, decoder);
        }
        if !bytes.ends_with(b"\n") && !bytes.is_empty() {
            // A part that does not end its last line: git ends it.
            if state.in_patch {
                state.patch.push(b'\n');
            } else {
                state.message.push('\n');
            }
        }
    }
    state.flush_accum();

    // git takes in-body headers only from a mail that carries a patch.
    if state.patch.is_empty() {
        state.inbody = Inbody::default();
    }
    (info.sender_name, info.sender) = split_from(&from);
    let from = state.inbody.from.take().unwrap_or(from);
    let (author, email) = split_from(&from);
    info.author = author;
    info.email = email;
    let subject = state.inbody.subject.take().unwrap_or(raw_subject);
    info.subject = cleanup_subject(&subject);
    info.date = state.inbody.date.take().unwrap_or(date);
    if opts.message_id
        && let Some(id) = &info.message_id
    {
        state.message.push_str(&format!("Message-ID: <{id}>\n"));
    }
    info.message = state.message;
    info.patch = state.patch;
    Ok(info)
}

/// An mbox's `From ` separator line, if the mail starts with one.
fn strip_mbox_from_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ")
        && let Some(nl) = raw.iter().position(|b| *b == b'\n')
    {
        return raw.get(nl + 1..).unwrap_or_default();
    }
    raw
}

fn ids(v: &HeaderValue<'_>) -> Vec<String> {
    match v {
        HeaderValue::Text(t) => vec![t.to_string()],
        HeaderValue::TextList(l) => l.iter().map(|t| t.to_string()).collect(),
        _ => Vec::new(),
    }
}

fn unfold(s: &str) -> String {
    s.replace(['\r', '\n'], "").trim().to_string()
}

/// The body's text parts in order, transfer encoding undone, each with the
/// decoder of its charset: a single-part mail's body, or every text part
/// (HTML excepted) of a multipart one (a patch attached inline follows the
/// message).
fn body_parts(msg: &mail_parser::Message<'_>) -> Vec<(Vec<u8>, Option<DecoderFnc>)> {
    let mut out = Vec::new();
    for part in msg.parts.iter() {
        if matches!(part.body, PartType::Multipart(_) | PartType::Message(_)) {
            continue;
        }
        let (is_text, charset) = match part.content_type() {
            None => (true, None),
            Some(ct) => (
                ct.ctype().eq_ignore_ascii_case("text")
                    && ct.subtype().is_none_or(|s| !s.eq_ignore_ascii_case("html")),
                ct.attribute("charset"),
            ),
        };
        if !is_text {
            continue;
        }
        let raw = msg
            .raw_message
            .get(part.offset_body as usize..part.offset_end as usize)
            .unwrap_or_default();
        let cte = part
            .content_transfer_encoding()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let bytes = match cte.as_str() {
            "quoted-printable" => quoted_printable_decode(raw).unwrap_or_else(|| raw.to_vec()),
            "base64" => {
                let compact: Vec<u8> = raw
                    .iter()
                    .copied()
                    .filter(|b| !b.is_ascii_whitespace())
                    .collect();
                base64_decode(&compact).unwrap_or_else(|| raw.to_vec())
            }
            _ => raw.to_vec(),
        };
        let decoder = charset
            .filter(|c| {
                !c.eq_ignore_ascii_case("utf-8")
                    && !c.eq_ignore_ascii_case("us-ascii")
                    && !c.is_empty()
            })
            .and_then(|c| charset_decoder(c.as_bytes()));
        out.push((bytes, decoder));
    }
    out
}

#[derive(Debug, Default)]
struct Inbody {
    from: Option<String>,
    subject: Option<String>,
    date: Option<String>,
}

/// The body, line by line, as `handle_commit_msg` and `handle_patch` read it.
struct Body {
    opts: Options,
    header_stage: bool,
    /// An in-body header being read (continuation lines join it).
    accum: String,
    inbody: Inbody,
    message: String,
    patch: Vec<u8>,
    in_patch: bool,
    header_lines: usize,
}

impl Body {
    fn line(&mut self, bytes: &[u8], decoder: Option<DecoderFnc>) {
        if self.in_patch {
            self.patch.extend_from_slice(bytes);
            return;
        }
        // The message is re-encoded to UTF-8 (`git mailinfo -u`).
        let text = match decoder {
            Some(d) => d(bytes),
            None => String::from_utf8_lossy(bytes).into_owned(),
        };
        let line = text.as_str();
        if self.header_stage && (line.is_empty() || line == "\n") {
            if !self.accum.is_empty() {
                self.flush_accum();
                self.header_stage = false;
            }
            return;
        }
        if self.opts.inbody_headers && self.header_stage {
            self.header_stage = self.inbody_header(line);
            if self.header_stage {
                return;
            }
        } else {
            self.header_stage = false;
        }
        if self.opts.scissors && is_scissors_line(line) {
            self.message.clear();
            self.header_stage = true;
            self.inbody = Inbody::default();
            return;
        }
        if patchbreak(line) {
            self.in_patch = true;
            self.patch.extend_from_slice(bytes);
            return;
        }
        self.message.push_str(line);
    }

    /// Whether `line` is (part of) an in-body header; takes it if so.
    fn inbody_header(&mut self, line: &str) -> bool {
        self.header_lines += 1;
        if self.header_lines > MAX_INBODY_HEADER_LINES {
            self.flush_accum();
            return false;
        }
        if !self.accum.is_empty() && (line.starts_with(' ') || line.starts_with('\t')) {
            if self.opts.scissors && is_scissors_line(line) {
                self.flush_accum();
                return false;
            }
            if self.accum.ends_with('\n') {
                self.accum.pop();
            }
            self.accum.push_str(line);
            return true;
        }
        self.flush_accum();
        if let Some(rest) = line.strip_prefix(">From")
            && rest.starts_with(|c: char| c.is_ascii_whitespace())
        {
            return is_format_patch_separator(line.get(1..).unwrap_or_default());
        }
        if let Some(rest) = line.strip_prefix("[PATCH]")
            && rest.starts_with(|c: char| c.is_ascii_whitespace())
        {
            self.inbody.subject = Some(line.trim_end().to_string());
            return true;
        }
        if ["From", "Subject", "Date"]
            .iter()
            .any(|h| header_name_is(line, h))
        {
            self.accum.push_str(line);
            return true;
        }
        false
    }

    fn flush_accum(&mut self) {
        if self.accum.is_empty() {
            return;
        }
        let h = std::mem::take(&mut self.accum);
        let Some((name, value)) = h.split_once(':') else {
            return;
        };
        // As git: leading space goes, each run of white space (the final
        // line break included) becomes one space ("Date: bogus" → "bogus ").
        let mut value_out = String::with_capacity(value.len());
        let mut in_space = false;
        for c in value.trim_start().chars() {
            if c.is_whitespace() {
                if !in_space {
                    value_out.push(' ');
                }
                in_space = true;
            } else {
                value_out.push(c);
                in_space = false;
            }
        }
        let value = value_out;
        match name.to_ascii_lowercase().as_str() {
            "from" => self.inbody.from = Some(value),
            "subject" => self.inbody.subject = Some(value),
            "date" => self.inbody.date = Some(value),
            _ => {}
        }
    }
}

/// `Name: ` (case-insensitive name, a colon, then white space).
fn header_name_is(line: &str, name: &str) -> bool {
    line.get(..name.len())
        .is_some_and(|h| h.eq_ignore_ascii_case(name))
        && line.get(name.len()..name.len() + 1) == Some(":")
        && line
            .get(name.len() + 1..)
            .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_whitespace()))
}

/// `From <40 hex> Mon Sep 17 00:00:00 2001`: format-patch's separator.
fn is_format_patch_separator(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("From ") else {
        return false;
    };
    let (hash, date) = rest.split_at(rest.len().min(40));
    hash.len() == 40
        && hash.bytes().all(|b| b.is_ascii_hexdigit())
        && date.trim_end() == " Mon Sep 17 00:00:00 2001"
}

/// Where the patch starts: `diff -`, `Index: `, `--- name`, or a `---`
/// line of nothing but white space after it.
pub fn patchbreak(line: &str) -> bool {
    if line.starts_with("diff -") || line.starts_with("Index: ") {
        return true;
    }
    if line.len() < 4 {
        return false;
    }
    if let Some(rest) = line.strip_prefix("---") {
        let mut chars = rest.chars();
        let first = chars.next();
        let second = chars.next();
        if first == Some(' ') && second.is_some_and(|c| !c.is_whitespace()) {
            return true;
        }
        for c in rest.chars() {
            if c == '\n' {
                return true;
            }
            if !c.is_whitespace() {
                return false;
            }
        }
        return false;
    }
    false
}

/// A "-- >8 --" line, as git judges it: scissors (`>8`, `8<`, `>%`, `%<`)
/// in a perforation of dashes that makes up most of the line.
pub fn is_scissors_line(line: &str) -> bool {
    let b = line.as_bytes();
    let (mut scissors, mut gap, mut perforation) = (0usize, 0usize, 0usize);
    let mut in_perforation = false;
    let (mut first, mut last) = (None, None);
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c.is_ascii_whitespace() {
            if in_perforation {
                perforation += 1;
                gap += 1;
            }
            i += 1;
            continue;
        }
        last = Some(i);
        if first.is_none() {
            first = Some(i);
        }
        if c == b'-' {
            in_perforation = true;
            perforation += 1;
            i += 1;
            continue;
        }
        let pair = b.get(i..i + 2);
        if matches!(pair, Some(b">8" | b"8<" | b">%" | b"%<")) {
            in_perforation = true;
            perforation += 2;
            scissors += 2;
            last = Some(i + 1);
            i += 2;
            continue;
        }
        in_perforation = false;
        i += 1;
    }
    let visible = match (first, last) {
        (Some(f), Some(l)) => l - f + 1,
        _ => 0,
    };
    scissors > 0 && 8 <= visible && visible < perforation * 3 && gap * 2 < perforation
}

/// The author's name and address from a `From:` value, as git's
/// `handle_from`: the address is the word around `@` (inside `<>` if so);
/// the name is what remains, spaces squeezed, an outer `()` pair removed;
/// a name that is empty, longer than 60 bytes or holds `@<>` is replaced by
/// the address.
pub fn split_from(from: &str) -> (String, String) {
    let f = unquote_quoted_pairs(from);
    let Some(at) = f.find('@') else {
        // No address: only "Name <something>" gives one (git's
        // parse_bogus_from); otherwise there is no author.
        if let Some((name, rest)) = f.split_once('<')
            && let Some((email, _)) = rest.split_once('>')
        {
            let name = name.trim();
            let name = if name.is_empty() || name.len() > 60 || name.contains(['@', '<', '>']) {
                email
            } else {
                name
            };
            return (name.to_string(), email.to_string());
        }
        return (String::new(), String::new());
    };
    let bytes = f.as_bytes();
    let mut start = at;
    let mut open_angle = None;
    while start > 0 {
        let c = bytes.get(start - 1).copied().unwrap_or(b' ');
        if c.is_ascii_whitespace() {
            break;
        }
        if c == b'<' {
            open_angle = Some(start - 1);
            break;
        }
        start -= 1;
    }
    let len = f
        .get(start..)
        .unwrap_or_default()
        .find([' ', '\n', '\t', '\r', '\x0b', '\x0c', '>'])
        .unwrap_or(f.len() - start);
    let email = f.get(start..start + len).unwrap_or_default().to_string();
    let mut rest = String::new();
    let cut_from = open_angle.unwrap_or(start);
    rest.push_str(f.get(..cut_from).unwrap_or_default());
    if open_angle.is_some() {
        rest.push(' ');
    }
    let after = start + len;
    // The delimiter after the address (a `>` or a space) goes with it.
    let skip = usize::from(after < f.len());
    rest.push_str(f.get(after + skip..).unwrap_or_default());
    let mut name = squeeze(rest.trim());
    if name.starts_with('(') && name.ends_with(')') && name.len() >= 2 {
        name = name.get(1..name.len() - 1).unwrap_or_default().to_string();
    }
    if name.is_empty() || name.len() > 60 || name.contains(['@', '<', '>']) {
        name = email.clone();
    }
    (name, email)
}

/// `"A \"B\" C"` → `A "B" C`: quoted strings lose their quotes, quoted
/// pairs their backslash (git's `unquote_quoted_pair`, which also keeps
/// comments as they are).
fn unquote_quoted_pairs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => in_quotes = !in_quotes,
            '\\' if in_quotes => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            _ => out.push(c),
        }
    }
    out
}

fn squeeze(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The subject as `git mailinfo` leaves it: leading `Re:`, spaces, colons
/// and bracketed prefixes removed, white space squeezed.
pub fn cleanup_subject(s: &str) -> String {
    let mut s: String = s.replace(['\n', '\r'], " ");
    loop {
        let t = s.trim_start_matches([' ', '\t', ':']);
        if t.len() != s.len() {
            s = t.to_string();
            continue;
        }
        if s.get(..3).is_some_and(|h| h.eq_ignore_ascii_case("re:")) {
            s = s.get(3..).unwrap_or_default().to_string();
            continue;
        }
        if s.starts_with('[')
            && let Some(end) = s.find(']')
        {
            s = s.get(end + 1..).unwrap_or_default().to_string();
            continue;
        }
        break;
    }
    squeeze(&s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_forms() {
        assert_eq!(
            split_from("A (zzz) U Thor <a.u.thor@example.com> (Comment)"),
            (
                "A (zzz) U Thor (Comment)".into(),
                "a.u.thor@example.com".into()
            )
        );
        assert_eq!(
            split_from("<a.u.thor@example.com> (A U Thor)"),
            ("A U Thor".into(), "a.u.thor@example.com".into())
        );
        assert_eq!(
            split_from("bogosity - a list - of stuff"),
            (String::new(), String::new())
        );
        assert_eq!(
            split_from("bare@example.com"),
            ("bare@example.com".into(), "bare@example.com".into())
        );
        assert_eq!(
            split_from("\"Doe, John\" <jd@example.org>"),
            ("Doe, John".into(), "jd@example.org".into())
        );
    }

    #[test]
    fn scissors_and_breaks() {
        assert!(is_scissors_line("-- >8 --\n"));
        assert!(is_scissors_line(
            "------------------ 8< ------------------\n"
        ));
        assert!(!is_scissors_line("-- >8\n"));
        assert!(!is_scissors_line("this is >8 text with words\n"));
        assert!(patchbreak("---\n"));
        assert!(patchbreak("--- a/file\n"));
        assert!(patchbreak("diff --git a/x b/x\n"));
        assert!(!patchbreak("----- Original message -----\n"));
        assert!(!patchbreak("--\n"));
    }

    #[test]
    fn subjects_as_git_cleans_them() {
        assert_eq!(
            cleanup_subject("re: [PATCH] another patch"),
            "another patch"
        );
        assert_eq!(cleanup_subject("[PATCH 3/3 v2] Xyzzy"), "Xyzzy");
        assert_eq!(cleanup_subject("Re: discussion"), "discussion");
        assert_eq!(cleanup_subject("[a] [b] c  d"), "c d");
    }
}
