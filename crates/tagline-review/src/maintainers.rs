//! MAINTAINERS files (Linux and Xen format) and who must see a change, with
//! the semantics of `scripts/get_maintainer.pl --nogit --nogit-fallback
//! --nokeywords` (docs/maintainers.md lists the deliberate differences).
//!
//! Pure: the caller supplies the file contents and a predicate telling which
//! paths are directories of the tree (get_maintainer.pl asks the filesystem).

use std::collections::{BTreeMap, HashMap, HashSet};

use regex::Regex;

/// Flavour of get_maintainer.pl whose output to reproduce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flavor {
    /// Section names longer than this are cut to `maxlen - 3` characters plus "...".
    pub section_maxlen: usize,
    /// Whether a reviewer's role names the section (`reviewer:SECTION`) or is bare.
    pub reviewer_role_has_section: bool,
    /// Addresses dropped from the maintainer list unless asked for (Linux drops
    /// Linus Torvalds, the "chief penguin" of THE REST).
    pub penguin_chiefs: Vec<String>,
    /// `{a,b}` alternatives in F:/X: patterns (Xen).
    pub brace_patterns: bool,
    /// Skip a person already listed under another role (Linux's
    /// `--remove-duplicates`, on by default there, off in Xen).
    pub remove_duplicates: bool,
    /// Drop THE REST's supporters when a more specific section matched every
    /// file (Xen's `--drop_the_rest_supporter`, on by default).
    pub drop_the_rest: bool,
    /// Read `L: Team Name <list@example.org>` as the address in brackets (Xen).
    /// Linux's script takes the first word and prints an empty address there.
    pub list_names: bool,
}

impl Flavor {
    /// Linux's scripts/get_maintainer.pl.
    pub fn linux() -> Flavor {
        Flavor {
            section_maxlen: 50,
            reviewer_role_has_section: true,
            penguin_chiefs: vec!["Linus Torvalds <torvalds@linux-foundation.org>".into()],
            brace_patterns: false,
            remove_duplicates: true,
            drop_the_rest: false,
            list_names: false,
        }
    }
    /// Xen's scripts/get_maintainer.pl (an older fork).
    pub fn xen() -> Flavor {
        Flavor {
            section_maxlen: 20,
            reviewer_role_has_section: false,
            penguin_chiefs: Vec::new(),
            brace_patterns: true,
            remove_duplicates: false,
            drop_the_rest: true,
            list_names: true,
        }
    }
    /// The flavour whose script ships beside this MAINTAINERS text: Xen's
    /// carries `V: xen-maintainers-N` under THE REST; anything else is read
    /// as Linux's (docs/maintainers.md).
    pub fn detect(maintainers: &str) -> Flavor {
        if maintainers
            .lines()
            .any(|l| l.starts_with("V:") && l.contains("xen-maintainers-"))
        {
            Flavor::xen()
        } else {
            Flavor::linux()
        }
    }
}

/// One `X:\tvalue` line of a section. For `F:`/`X:` the value is the
/// get_maintainer.pl regex form (`.` → `\.`, `*` → `.*`, `?` → `.`, plus a `/`
/// after an existing directory).
#[derive(Debug, Clone)]
struct Line {
    tag: char,
    value: String,
    /// F:/X: (anchored) and N: (extended) patterns, compiled.
    re: Option<Regex>,
}

/// A section: its name line and its tagged lines.
#[derive(Debug, Clone)]
pub struct Section {
    pub name: String,
    lines: Vec<Line>,
}

impl Section {
    /// The values of lines with this tag, verbatim (F:/X: in their original form).
    pub fn values(&self, tag: char) -> Vec<String> {
        self.lines
            .iter()
            .filter(|l| l.tag == tag)
            .map(|l| restore_pattern(l.tag, &l.value))
            .collect()
    }
}

/// A parsed MAINTAINERS file.
#[derive(Debug, Clone)]
pub struct Maintainers {
    pub sections: Vec<Section>,
    /// Patterns that did not compile as regexes (N: lines mostly), as (section, line).
    pub bad_patterns: Vec<(String, String)>,
}

fn convert_pattern(v: &str) -> String {
    v.replace('.', "\\.").replace('*', ".*").replace('?', ".")
}

/// get_maintainer.pl's way back from the regex form, for `--sections` output,
/// with Perl's non-overlapping `s///g` scanning (so `pm8???-*` comes back as
/// `pm8?..-*`, exactly as the script prints it).
fn restore_pattern(tag: char, v: &str) -> String {
    if tag != 'F' && tag != 'X' {
        return v.to_string();
    }
    let chars: Vec<char> = v.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    // s/([^\\])\.([^\*])/$1\?$2/g
    let mut out: Vec<char> = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        match (at(i), at(i + 1), at(i + 2)) {
            (Some(a), Some('.'), Some(b)) if a != '\\' && b != '*' => {
                out.extend([a, '?', b]);
                i += 3;
            }
            (Some(a), _, _) => {
                out.push(a);
                i += 1;
            }
            _ => break,
        }
    }
    // s/([^\\])\.$/$1\?/g
    let n = out.len();
    if n >= 2
        && out.get(n - 1) == Some(&'.')
        && out.get(n - 2) != Some(&'\\')
        && let Some(last) = out.last_mut()
    {
        *last = '?';
    }
    let s: String = out.into_iter().collect();
    let s = s.replace("\\.", ".").replace(".*", "*");
    restore_braces(&s)
}

/// Xen's `{a,b}` patterns: expanded to `(a|b)` before the regex conversion,
/// and back for display. Groups are not nested.
fn expand_braces(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut prev: Option<char> = None;
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '{' && prev.is_some_and(|p| p != '\\') {
            let mut group = String::new();
            let mut closed = false;
            for g in chars.by_ref() {
                if g == '}' {
                    closed = true;
                    break;
                }
                group.push(g);
            }
            if closed && group.contains(',') && !group.contains('{') {
                out.push('(');
                out.push_str(&group.replace(',', "|"));
                out.push(')');
                prev = Some(')');
            } else {
                out.push('{');
                out.push_str(&group);
                if closed {
                    out.push('}');
                }
                prev = out.chars().last();
            }
            continue;
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

fn restore_braces(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut rest = v;
    while let Some(open) = rest.find('(') {
        let (before, after) = rest.split_at(open);
        out.push_str(before);
        match after.find(')') {
            Some(close)
                if close > 1
                    && after
                        .get(1..close)
                        .is_some_and(|g| g.contains('|') && !g.contains('(')) =>
            {
                out.push('{');
                out.push_str(&after.get(1..close).unwrap_or("").replace('|', ","));
                out.push('}');
                rest = after.get(close + 1..).unwrap_or("");
            }
            _ => {
                out.push('(');
                rest = after.get(1..).unwrap_or("");
            }
        }
    }
    out.push_str(rest);
    out
}

fn slashes(s: &str) -> usize {
    s.bytes().filter(|b| *b == b'/').count()
}

fn compile(pattern: &str) -> Option<Regex> {
    Regex::new(&format!("^(?:{pattern})")).ok()
}

impl Maintainers {
    /// Parses MAINTAINERS text. `is_dir(path)` says whether `path` is a
    /// directory of the tree (used, as get_maintainer.pl does, to add a `/` to
    /// F:/X: patterns naming a directory).
    pub fn parse(text: &str, flavor: &Flavor, is_dir: &dyn Fn(&str) -> bool) -> Maintainers {
        let mut sections: Vec<Section> = Vec::new();
        let mut bad = Vec::new();
        let mut current: Option<Section> = None;
        let mut seen_first_tag = false;
        // get_maintainer.pl keeps every non-blank untagged line; a section is
        // the untagged line just before a run of tagged lines.
        let mut last_untagged: Option<String> = None;
        for raw in text.lines() {
            let tagged = raw.len() >= 2
                && raw
                    .as_bytes()
                    .first()
                    .is_some_and(|b| b.is_ascii_uppercase())
                && raw.as_bytes().get(1) == Some(&b':');
            if tagged {
                seen_first_tag = true;
                let tag = raw.chars().next().unwrap_or('?');
                let mut value = raw.get(2..).unwrap_or("").trim_start().to_string();
                if tag == 'F' || tag == 'X' {
                    if flavor.brace_patterns {
                        value = expand_braces(&value);
                    }
                    value = convert_pattern(&value);
                    if is_dir(&value) && !value.ends_with('/') {
                        value.push('/');
                    }
                }
                if current.is_none() {
                    let name = last_untagged.take().unwrap_or_default();
                    current = Some(Section {
                        name,
                        lines: Vec::new(),
                    });
                }
                if let Some(sec) = current.as_mut() {
                    let re = match tag {
                        'F' | 'X' => compile(&value),
                        'N' => Regex::new(&format!("(?x){value}")).ok(),
                        _ => None,
                    };
                    if matches!(tag, 'F' | 'X' | 'N') && re.is_none() {
                        bad.push((sec.name.clone(), raw.to_string()));
                    }
                    sec.lines.push(Line { tag, value, re });
                }
            } else if !raw.trim().is_empty() {
                if let Some(sec) = current.take() {
                    sections.push(sec);
                }
                if seen_first_tag || last_untagged.is_some() || !raw.trim().is_empty() {
                    last_untagged = Some(raw.trim_end().to_string());
                }
            }
        }
        if let Some(sec) = current.take() {
            sections.push(sec);
        }
        Maintainers {
            sections,
            bad_patterns: bad,
        }
    }

    /// The sections matching `file`, most specific first, with their depth.
    pub fn matching(&self, file: &str) -> Vec<(usize, i64)> {
        let mut hits: Vec<(usize, i64)> = Vec::new();
        for (i, sec) in self.sections.iter().enumerate() {
            let excluded = sec
                .lines
                .iter()
                .any(|l| l.tag == 'X' && file_match(file, &l.value, l.re.as_ref()));
            if excluded {
                continue;
            }
            let mut depth: Option<i64> = None;
            // Later matches in a section overwrite earlier ones, as in the script's hash.
            for l in &sec.lines {
                match l.tag {
                    'F' if file_match(file, &l.value, l.re.as_ref()) => {
                        let mut value_pd = slashes(&l.value) as i64;
                        if !l.value.ends_with('/') {
                            value_pd += 1;
                        }
                        if l.value.starts_with(".*") {
                            value_pd = -1;
                        }
                        depth = Some(value_pd);
                    }
                    'N' if l.re.as_ref().is_some_and(|re| re.is_match(file)) => depth = Some(0),
                    _ => {}
                }
            }
            if let Some(d) = depth {
                hits.push((i, d));
            }
        }
        // Most specific first; ties keep MAINTAINERS order (get_maintainer.pl
        // leaves ties in Perl hash order, which varies from run to run).
        hits.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        hits
    }

    /// `get_maintainer.pl --sections` output for these files: each matching
    /// section's lines, then an empty line.
    pub fn sections_output(&self, files: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for f in files {
            for (i, _) in self.matching(f) {
                let Some(sec) = self.sections.get(i) else {
                    continue;
                };
                out.push(sec.name.clone());
                for l in &sec.lines {
                    out.push(format!("{}:\t{}", l.tag, restore_pattern(l.tag, &l.value)));
                }
                out.push(String::new());
            }
        }
        out
    }
}

/// get_maintainer.pl's file_match_pattern: a directory pattern (trailing `/`)
/// matches everything below; another pattern only at the same depth.
fn file_match(file: &str, pattern: &str, re: Option<&Regex>) -> bool {
    let Some(re) = re else { return false };
    re.is_match(file) && (pattern.ends_with('/') || slashes(file) == slashes(pattern))
}

/// `.mailmap` (git-shortlog format), as get_maintainer.pl reads it.
#[derive(Debug, Clone, Default)]
pub struct Mailmap {
    names: HashMap<String, String>,
    addresses: HashMap<String, String>,
}

/// Splits `Name <address>` (or a bare address) as get_maintainer.pl's parse_email.
pub fn parse_email(s: &str) -> (String, String) {
    let (mut name, mut address) = (String::new(), String::new());
    if let (Some(lt), Some(gt)) = (s.find('<'), s.rfind('>'))
        && lt > 0
        && gt > lt
        && s.get(lt + 1..gt).is_some_and(|a| a.contains('@'))
    {
        name = s.get(..lt).unwrap_or("").to_string();
        address = s.get(lt + 1..gt).unwrap_or("").to_string();
    } else if let Some(rest) = s.trim_start().strip_prefix('<') {
        address = rest.split('>').next().unwrap_or("").to_string();
    } else if s.contains('@') {
        address = s.split_whitespace().next().unwrap_or("").to_string();
    }
    let name = name.trim().trim_matches('"').to_string();
    (name, address.trim().to_string())
}

/// get_maintainer.pl's format_email: quotes names with characters other than
/// ASCII letters, digits, `_`, space and `-`.
pub fn format_email(name: &str, address: &str) -> String {
    let name = name.trim().trim_matches('"');
    let address = address.trim();
    if name.is_empty() {
        return address.to_string();
    }
    let needs_quotes = name
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == ' ' || c == '-'));
    if needs_quotes {
        let escaped = name.replace('"', "\\\"");
        format!("\"{escaped}\" <{address}>")
    } else {
        format!("{name} <{address}>")
    }
}

impl Mailmap {
    pub fn parse(text: &str) -> Mailmap {
        let mut m = Mailmap::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let parts: Vec<(String, String)> = {
                // Split into (name-before, address) pairs.
                let mut v = Vec::new();
                let mut rest = line;
                while let Some(lt) = rest.find('<') {
                    let Some(gt) = rest.get(lt..).and_then(|r| r.find('>')).map(|g| g + lt) else {
                        break;
                    };
                    v.push((
                        rest.get(..lt).unwrap_or("").trim().to_string(),
                        rest.get(lt + 1..gt).unwrap_or("").to_string(),
                    ));
                    rest = rest.get(gt + 1..).unwrap_or("");
                }
                v
            };
            match parts.as_slice() {
                [(name, addr)] if !name.is_empty() => {
                    let (n, a) = parse_email(&format!("{name} <{addr}>"));
                    m.names.insert(a, n);
                }
                [(n1, a1), (n2, a2)] if n1.is_empty() && n2.is_empty() => {
                    m.addresses.insert(a2.clone(), a1.clone());
                }
                [(n1, a1), (n2, a2)] if n2.is_empty() => {
                    let (n, a) = parse_email(&format!("{n1} <{a1}>"));
                    m.names.insert(a2.clone(), n);
                    m.addresses.insert(a2.clone(), a);
                }
                [(n1, a1), (n2, a2)] if !n1.is_empty() => {
                    let (rn, ra) = parse_email(&format!("{n1} <{a1}>"));
                    let (wn, wa) = parse_email(&format!("{n2} <{a2}>"));
                    let wrong = format_email(&wn, &wa);
                    m.names.insert(wrong.clone(), rn);
                    m.addresses.insert(wrong, ra);
                }
                _ => {}
            }
        }
        m
    }

    /// get_maintainer.pl's mailmap_email.
    pub fn map(&self, email: &str) -> String {
        let (name, address) = parse_email(email);
        let formatted = format_email(&name, &address);
        let (mut rn, mut ra) = (name.clone(), address.clone());
        if self.names.contains_key(&formatted) || self.addresses.contains_key(&formatted) {
            if let Some(n) = self.names.get(&formatted) {
                rn = n.clone();
            }
            if let Some(a) = self.addresses.get(&formatted) {
                ra = a.clone();
            }
        } else {
            if let Some(n) = self.names.get(&address) {
                rn = n.clone();
            }
            if let Some(a) = self.addresses.get(&address) {
                ra = a.clone();
            }
        }
        format_email(&rn, &ra)
    }
}

/// Options for [`who`] beyond the flavour.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub mailmap: Mailmap,
    /// Addresses from `.get_maintainer.ignore`.
    pub ignore: HashSet<String>,
}

impl Context {
    /// Reads `.get_maintainer.ignore`: one address per line, `#` comments.
    pub fn parse_ignore(text: &str) -> HashSet<String> {
        text.lines()
            .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (_, a) = parse_email(&l);
                if a.is_empty() { l } else { a }
            })
            .collect()
    }
}

/// One person or list to Cc, with its role as get_maintainer.pl prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub email: String,
    pub role: String,
}

impl std::fmt::Display for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.email, self.role)
    }
}

/// Who must see a change touching `files`: maintainers and reviewers with
/// their roles, then lists, as `get_maintainer.pl --nogit --nogit-fallback
/// --nokeywords` prints them.
pub fn who(m: &Maintainers, files: &[String], flavor: &Flavor, ctx: &Context) -> Vec<Recipient> {
    who_with_keywords(m, files, &[], flavor, ctx)
}

/// Who must see `patch` (format-patch or diff text): the files it touches,
/// plus, when `keywords` is set, sections whose `K:` patterns match the commit
/// message or an added/removed line (get_maintainer.pl's default).
pub fn who_for_patch(
    m: &Maintainers,
    patch: &str,
    keywords: bool,
    flavor: &Flavor,
    ctx: &Context,
) -> Vec<Recipient> {
    let files = files_of_patch(patch);
    let kw = if keywords {
        m.keyword_sections(patch)
    } else {
        Vec::new()
    };
    who_with_keywords(m, &files, &kw, flavor, ctx)
}

impl Maintainers {
    /// Sections (indices, ascending) whose `K:` patterns match the patch:
    /// anywhere in a line before the first `---`/`+++` file header, and only
    /// on `+`/`-` lines after it.
    pub fn keyword_sections(&self, patch: &str) -> Vec<usize> {
        let keywords: Vec<(usize, Regex)> = self
            .sections
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.lines
                    .iter()
                    .filter(|l| l.tag == 'K')
                    .filter_map(move |l| {
                        Regex::new(&format!("(?x){}", l.value))
                            .ok()
                            .map(|re| (i, re))
                    })
            })
            .collect();
        let mut hits: std::collections::BTreeSet<usize> = std::collections::BTreeSet::new();
        let mut in_diff = false;
        for line in patch.lines() {
            let header = (line.starts_with("+++") || line.starts_with("---"))
                && line.get(3..).is_some_and(|r| {
                    r.starts_with(|c: char| c.is_whitespace()) && !r.trim().is_empty()
                });
            if header {
                in_diff = true;
                continue;
            }
            if line.starts_with("@@ -") || line.starts_with("diff --git ") {
                continue;
            }
            let text = if in_diff {
                match line.strip_prefix('+').or_else(|| line.strip_prefix('-')) {
                    Some(t) => t,
                    None => continue,
                }
            } else {
                line
            };
            for (i, re) in &keywords {
                if re.is_match(text) {
                    hits.insert(*i);
                }
            }
        }
        hits.into_iter().collect()
    }
}

fn who_with_keywords(
    m: &Maintainers,
    files: &[String],
    keyword_sections: &[usize],
    flavor: &Flavor,
    ctx: &Context,
) -> Vec<Recipient> {
    let mut email_to: Vec<(String, String)> = Vec::new();
    let mut list_to: Vec<(String, String)> = Vec::new();
    let mut seen_names: HashSet<String> = HashSet::new();
    let mut seen_addresses: HashSet<String> = HashSet::new();
    let mut seen_lists: HashSet<String> = HashSet::new();
    let subsystem = |name: &str| -> String {
        if flavor.section_maxlen > 0 && name.chars().count() > flavor.section_maxlen {
            let cut: String = name.chars().take(flavor.section_maxlen - 3).collect();
            format!("{}...", cut.trim_end())
        } else {
            name.to_string()
        }
    };
    let mut suppress_the_rest = true;
    let mut visits: Vec<(Option<usize>, usize)> = Vec::new();
    for (fi, f) in files.iter().enumerate() {
        for (i, _) in m.matching(f) {
            visits.push((Some(fi), i));
        }
        visits.push((Some(fi), usize::MAX));
    }
    visits.extend(keyword_sections.iter().map(|i| (None, *i)));
    let mut only_the_rest = true;
    for (file, i) in visits {
        if i == usize::MAX {
            // End of one file's sections.
            if only_the_rest && file.is_some() {
                suppress_the_rest = false;
            }
            only_the_rest = true;
            continue;
        }
        {
            let Some(sec) = m.sections.get(i) else {
                continue;
            };
            let sub = subsystem(&sec.name);
            let status = sec
                .lines
                .iter()
                .rev()
                .find(|l| l.tag == 'S')
                .map(|l| l.value.to_lowercase());
            let role = match status.as_deref() {
                Some("supported") => "supporter".to_string(),
                Some("maintained") => "maintainer".to_string(),
                Some("odd fixes") => "odd fixer".to_string(),
                Some("orphan") => "orphan minder".to_string(),
                Some("obsolete") => "obsolete minder".to_string(),
                Some("buried alive in reporters") => "chief penguin".to_string(),
                Some(other) => other.to_string(),
                None => "unknown".to_string(),
            };
            // A section with no M: (only reviewers or lists) leaves the file to
            // THE REST, as Xen's script does.
            let has_maintainer = sec.lines.iter().any(|l| l.tag == 'M');
            if format!("{role}:{sub}") != "supporter:THE REST" && has_maintainer {
                only_the_rest = false;
            }
            for l in &sec.lines {
                match l.tag {
                    'L' => {
                        let (address, extra) = match (l.value.find('<'), l.value.find('>')) {
                            // "Team Name <list@example.org>": the address in brackets.
                            (Some(lt), Some(gt))
                                if flavor.list_names
                                    && gt > lt
                                    && l.value.get(lt..gt).is_some_and(|a| a.contains('@')) =>
                            {
                                (
                                    l.value.get(lt + 1..gt).unwrap_or("").to_string(),
                                    l.value.get(gt + 1..).unwrap_or("").trim().to_string(),
                                )
                            }
                            _ => {
                                let mut parts = l.value.splitn(2, char::is_whitespace);
                                (
                                    parts.next().unwrap_or("").to_string(),
                                    parts.next().unwrap_or("").trim().to_string(),
                                )
                            }
                        };
                        if extra.contains("subscribers-only") || address.is_empty() {
                            continue;
                        }
                        let list_role = if sec.name == "THE REST" {
                            String::new()
                        } else {
                            format!(":{sub}")
                        };
                        if seen_lists.insert(address.to_lowercase()) {
                            let kind = if extra.contains("moderated") {
                                "moderated list"
                            } else {
                                "open list"
                            };
                            list_to.push((address, format!("{kind}{list_role}")));
                        }
                    }
                    'M' | 'R' => {
                        let role = if l.tag == 'M' {
                            format!("{role}:{sub}")
                        } else if flavor.reviewer_role_has_section {
                            format!("reviewer:{sub}")
                        } else {
                            "reviewer".to_string()
                        };
                        let (name, address) = parse_email(&l.value);
                        if address.is_empty() || ctx.ignore.contains(&address) {
                            continue;
                        }
                        let name_used =
                            !name.is_empty() && seen_names.contains(&name.to_lowercase());
                        if flavor.remove_duplicates
                            && (name_used || seen_addresses.contains(&address.to_lowercase()))
                        {
                            continue;
                        }
                        if !name.is_empty() {
                            seen_names.insert(name.to_lowercase());
                        }
                        seen_addresses.insert(address.to_lowercase());
                        email_to.push((format_email(&name, &address), role));
                    }
                    _ => {}
                }
            }
        }
    }
    if flavor.drop_the_rest && suppress_the_rest && email_to.len() > 1 {
        let kept: Vec<(String, String)> = email_to
            .iter()
            .filter(|(_, r)| r != "supporter:THE REST")
            .cloned()
            .collect();
        if !kept.is_empty() {
            email_to = kept;
        }
    }
    // deduplicate_email with the mailmap.
    let mut by_name: HashMap<String, (String, String)> = HashMap::new();
    let mut by_addr: HashMap<String, (String, String)> = HashMap::new();
    let mut dedup = |email: &str| -> String {
        let (n, a) = parse_email(email);
        let e = ctx.mailmap.map(&format_email(&n, &a));
        if !flavor.remove_duplicates {
            return e;
        }
        let (mut n, mut a) = parse_email(&e);
        let hit = if !n.is_empty() {
            by_name.get(&n.to_lowercase()).cloned()
        } else {
            None
        }
        .or_else(|| by_addr.get(&a.to_lowercase()).cloned());
        match hit {
            Some((hn, ha)) => {
                n = hn;
                a = ha;
            }
            None => {
                by_name.insert(n.to_lowercase(), (n.clone(), a.clone()));
                by_addr.insert(a.to_lowercase(), (n.clone(), a.clone()));
            }
        }
        ctx.mailmap.map(&format_email(&n, &a))
    };
    for e in email_to.iter_mut().chain(list_to.iter_mut()) {
        e.0 = dedup(&e.0);
    }
    email_to.retain(|(e, _)| !flavor.penguin_chiefs.iter().any(|c| e.contains(c.as_str())));
    let mut seen: HashSet<String> = HashSet::new();
    email_to
        .into_iter()
        .chain(list_to)
        .filter(|(e, _)| seen.insert(e.clone()))
        .map(|(email, role)| Recipient { email, role })
        .collect()
}

/// The files a patch touches (`---`/`+++` lines, first path component
/// stripped), sorted and unique, as get_maintainer.pl reads a patch.
pub fn files_of_patch(patch: &str) -> Vec<String> {
    let mut files: BTreeMap<String, ()> = BTreeMap::new();
    for line in patch.lines() {
        if let Some(rest) = line.strip_prefix(" mode change ") {
            if let Some(path) = rest.split_whitespace().nth(3) {
                files.insert(path.to_string(), ());
            }
            continue;
        }
        if let Some(rest) = line
            .strip_prefix("rename from ")
            .or_else(|| line.strip_prefix("rename to "))
        {
            if let Some(path) = rest.split_whitespace().next() {
                files.insert(path.to_string(), ());
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("diff --git a/") {
            let mut parts = rest.split_whitespace();
            if let (Some(a), Some(b)) = (parts.next(), parts.next()) {
                files.insert(a.to_string(), ());
                if let Some(b) = b.strip_prefix("b/") {
                    files.insert(b.to_string(), ());
                }
            }
            continue;
        }
        let rest = line
            .strip_prefix("+++")
            .or_else(|| line.strip_prefix("---"));
        let Some(rest) = rest else { continue };
        if !rest.starts_with(|c: char| c.is_whitespace()) {
            continue;
        }
        let Some(path) = rest.split_whitespace().next() else {
            continue;
        };
        if path == "/dev/null" {
            continue;
        }
        let stripped = match path.find('/') {
            Some(i) => path.get(i + 1..).unwrap_or(""),
            None => path,
        };
        files.insert(stripped.to_string(), ());
    }
    files.into_keys().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Intro text\n\tM: not a section line\n\nDRIVERS\nM:\tAda Lovelace <ada@example.org>\nL:\tdrivers@lists.example.org\nS:\tMaintained\nF:\tdrivers/\nX:\tdrivers/secret/\n\nFOO DRIVER\nM:\tBob <bob@example.org>\nR:\tCarol Q. <carol@example.org>\nS:\tSupported\nF:\tdrivers/foo/foo-*.c\nN:\tbar\n\nTHE REST\nM:\tLinus Torvalds <torvalds@linux-foundation.org>\nL:\tlinux-kernel@vger.kernel.org\nS:\tBuried alive in reporters\nF:\t*\nF:\t*/\n";

    fn parsed() -> Maintainers {
        Maintainers::parse(SAMPLE, &Flavor::linux(), &|p| {
            p == "drivers" || p == "drivers/foo"
        })
    }

    #[test]
    fn sections_and_specificity() {
        let m = parsed();
        assert_eq!(
            m.sections
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>(),
            ["DRIVERS", "FOO DRIVER", "THE REST"]
        );
        let names = |f: &str| {
            m.matching(f)
                .iter()
                .map(|(i, _)| m.sections[*i].name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names("drivers/foo/foo-core.c"),
            ["FOO DRIVER", "DRIVERS", "THE REST"]
        );
        // `*` crosses `/`, but a non-directory pattern needs the same depth.
        assert_eq!(names("drivers/foo/sub/foo-x.c"), ["DRIVERS", "THE REST"]);
        // X: excludes; N: matches by regex anywhere in the path.
        assert_eq!(names("drivers/secret/x.c"), ["THE REST"]);
        assert_eq!(names("lib/bar.c"), ["FOO DRIVER", "THE REST"]);
        assert_eq!(names("README"), ["THE REST"]);
    }

    #[test]
    fn roles_quoting_and_penguins() {
        let m = parsed();
        let out: Vec<String> = who(
            &m,
            &["drivers/foo/foo-core.c".into()],
            &Flavor::linux(),
            &Context::default(),
        )
        .iter()
        .map(|r| r.to_string())
        .collect();
        assert_eq!(
            out,
            [
                "Bob <bob@example.org> (supporter:FOO DRIVER)",
                "\"Carol Q.\" <carol@example.org> (reviewer:FOO DRIVER)",
                "Ada Lovelace <ada@example.org> (maintainer:DRIVERS)",
                "drivers@lists.example.org (open list:DRIVERS)",
                "linux-kernel@vger.kernel.org (open list)",
            ]
        );
    }

    #[test]
    fn patterns_round_trip_for_display() {
        assert_eq!(
            restore_pattern('F', &convert_pattern("drivers/*/*/pm8???-*")),
            "drivers/*/*/pm8?..-*"
        );
        assert_eq!(restore_pattern('F', &convert_pattern("a/b.c")), "a/b.c");
        assert_eq!(
            expand_braces("xen/common/{kexec,kimage}.c"),
            "xen/common/(kexec|kimage).c"
        );
        assert_eq!(
            restore_pattern('F', &convert_pattern(&expand_braces("x/{a,b}.h"))),
            "x/{a,b}.h"
        );
    }

    #[test]
    fn mailmap_and_patch_files() {
        let mm = Mailmap::parse("Ada Lovelace <ada@example.org> <ada@old.example>\n");
        assert_eq!(
            mm.map("A L <ada@old.example>"),
            "Ada Lovelace <ada@example.org>"
        );
        let patch = "Subject: x\n---\ndiff --git a/x/y.c b/x/y.c\n--- a/x/y.c\n+++ b/x/y.c\n@@ -1 +1 @@\n-a\n+b\ndiff --git a/n.c b/n.c\nnew file mode 100644\n--- /dev/null\n+++ b/n.c\n";
        assert_eq!(files_of_patch(patch), ["n.c", "x/y.c"]);
    }
}
