//! `tagline bridge outbox`: feed entries going out to the list as mail.
//!
//! Native reviews, CI results and merges of the bridged project, and series
//! submitted natively, are rendered (tagline-email's `outbound`) into a
//! queue of files in the data directory: `outbox/pending/` holds what is
//! to be sent, `outbox/sent/` what was. A mail is queued once (an entry
//! with a file in either is never rendered again) and moved to `sent/` as
//! soon as the relay (or the mbox) took it, so a restart never sends it
//! again; a crash between the relay's answer and the move sends it twice at
//! worst, with the same Message-ID, which archives and clients fold into
//! one. Only entries whose key counts for an identity are rendered.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use tagline_email::outbound::{self, Envelope, Outgoing};
use tagline_format::review::{ReviewPayload, Revision};
use tagline_format::{EntryId, PublicKey};
use tagline_store::Store;

/// The queue's directory in the data directory.
pub const OUTBOX_DIR: &str = "outbox";

/// Arguments of `tagline bridge outbox`.
#[derive(Debug, Clone, clap::Args)]
pub struct OutboxArgs {
    /// Send the queued mail through the SMTP relay
    #[arg(long, conflicts_with = "mbox")]
    pub send: bool,
    /// Append the queued mail to this mbox instead (for inspection, or for
    /// a mail client to send)
    #[arg(long, value_name = "FILE", conflicts_with = "maildir")]
    pub mbox: Option<PathBuf>,
    /// Deliver the queued mail into this Maildir instead (created if need
    /// be; each mail in new/)
    #[arg(long, value_name = "DIR", conflicts_with = "send")]
    pub maildir: Option<PathBuf>,
    #[command(flatten)]
    pub out: OutArgs,
}

/// How mail goes out (defaults from `bridge.toml`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutArgs {
    /// The SMTP relay: `smtp://HOST:PORT` (plain, for a local MTA),
    /// `smtp://HOST:587?tls=required` or `smtps://HOST:465`, with
    /// `USER:PASSWORD@` before the host if it asks
    #[arg(long, value_name = "URL")]
    pub smtp_relay: Option<String>,
    /// The address mail is sent from (`Name via Tagline <ADDRESS>`)
    #[arg(long, value_name = "ADDRESS")]
    pub from: Option<String>,
    /// A git repository of the project: a natively submitted series is Cc'd
    /// to the maintainers and reviewers its MAINTAINERS names for the
    /// touched files (at the series' base, or HEAD)
    #[arg(long, value_name = "PATH")]
    pub repo: Option<PathBuf>,
}

fn dirs(home_dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let base = home_dir.join(OUTBOX_DIR);
    let (pending, sent) = (base.join("pending"), base.join("sent"));
    for d in [&pending, &sent] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    Ok((pending, sent))
}

/// Entries with a mail in the queue (pending or sent).
fn queued(pending: &Path, sent: &Path) -> Result<HashSet<String>> {
    let mut seen = HashSet::new();
    for d in [pending, sent] {
        for e in std::fs::read_dir(d).with_context(|| format!("cannot read {}", d.display()))? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Some((entry, _)) = name.split_once('.') {
                seen.insert(entry.to_string());
            }
        }
    }
    Ok(seen)
}

/// The pending mails, oldest first (by name: entry time, then part).
fn pending_files(pending: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(pending)
        .with_context(|| format!("cannot read {}", pending.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    Ok(files)
}

/// The Cc of a native series: whom get_maintainer.pl would name for its
/// files (tagline-review's port, MAINTAINERS at the series' base), other
/// than the list itself.
fn series_cc(repo: &Path, rev: &Revision, list: &str) -> Result<Vec<String>> {
    use tagline_review::maintainers::{Context, files_of_patch, parse_email, who};
    let (m, flavor) = crate::reviewcmd::maintainers_at(repo, rev.base_commit.as_deref())?;
    let mut files: Vec<String> = rev
        .patches
        .iter()
        .flat_map(|p| files_of_patch(&p.diff))
        .collect();
    files.sort();
    files.dedup();
    Ok(who(&m, &files, &flavor, &Context::default())
        .into_iter()
        .map(|r| r.email)
        .filter(|e| !parse_email(e).1.eq_ignore_ascii_case(list))
        .collect())
}

/// Renders the entries not queued yet into `outbox/pending/`. Returns the
/// files written.
pub fn queue(
    home_dir: &Path,
    store: &Store,
    bridge_key: &PublicKey,
    project: &EntryId,
    list: &str,
    out: &OutArgs,
) -> Result<Vec<PathBuf>> {
    let (pending, sent) = dirs(home_dir)?;
    let seen = queued(&pending, &sent)?;
    let sender = out.from.clone().context(
        "say which address mail goes out from: --from ADDRESS (or `from` in bridge.toml)",
    )?;
    let entries = crate::reviewcmd::decode_review(store.review_entries()?);
    let revisions: HashMap<EntryId, &Revision> = entries
        .iter()
        .filter_map(|(e, p)| match p {
            ReviewPayload::Revision(r) if r.project == *project => Some((e.signed.id(), r)),
            _ => None,
        })
        .collect();
    let mut registry = None;
    let mut written = Vec::new();
    for (e, p) in &entries {
        let h = e.signed.header();
        let id = e.signed.id();
        if h.author == *bridge_key || seen.contains(&id.to_string()) {
            continue;
        }
        let target = match p {
            ReviewPayload::Review(r) if r.mail.is_none() => r.revision,
            ReviewPayload::Ci(c) => c.revision,
            ReviewPayload::Merge(m) => m.revision,
            ReviewPayload::Revision(r) if r.mails.is_none() && r.project == *project => id,
            _ => continue,
        };
        let Some(rev) = revisions.get(&target) else {
            continue;
        };
        let reg = match &mut registry {
            Some(r) => r,
            None => registry.insert(crate::ident::registry(store)?),
        };
        // Only people: an entry whose key counts for no identity is not
        // sent (the bridge's address would carry anyone's spam).
        let Some(ident) = reg.identity_of(&h.author, h.seq) else {
            continue;
        };
        let author = reg
            .identities
            .get(&ident)
            .and_then(|i| i.name.clone())
            .unwrap_or_else(|| ident.short());
        let env = Envelope {
            author,
            sender: sender.clone(),
            list: list.to_string(),
            cc: Vec::new(),
            date: crate::reviewcmd::rfc2822(h.timestamp),
        };
        let mails: Vec<Outgoing> = match p {
            ReviewPayload::Review(r) => {
                vec![outbound::review_mail(
                    &id,
                    r,
                    rev,
                    &outbound::parent(&target, rev, r.patch),
                    &env,
                )]
            }
            ReviewPayload::Ci(c) => {
                vec![outbound::ci_mail(
                    &id,
                    c,
                    &outbound::parent(&target, rev, None),
                    &env,
                )]
            }
            ReviewPayload::Merge(m) => {
                vec![outbound::merge_mail(
                    &id,
                    m,
                    &outbound::parent(&target, rev, None),
                    &env,
                )]
            }
            ReviewPayload::Revision(r) => {
                let mut env = env;
                if let Some(repo) = &out.repo {
                    env.cc = series_cc(repo, r, list)?;
                }
                outbound::series_mails(&id, r, &env)
            }
            _ => continue,
        };
        for (part, m) in mails.iter().enumerate() {
            // Named so that the queue sorts in entry time, then part.
            let name = format!("{id}.{:013}.{part:04}.eml", h.timestamp);
            let path = pending.join(&name);
            let tmp = pending.join(format!(".{name}.tmp"));
            std::fs::write(&tmp, m.to_bytes())
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            std::fs::rename(&tmp, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// Envelope recipients of a queued mail: its To and Cc addresses.
fn recipients_of(raw: &[u8]) -> Vec<String> {
    let Some(m) = mail_parser::MessageParser::new().parse_headers(raw) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for list in [m.to(), m.cc()].into_iter().flatten() {
        for a in list.iter() {
            if let Some(addr) = a.address() {
                out.push(addr.to_string());
            }
        }
    }
    out
}

/// Hands each pending mail, oldest first, to `deliver`, and moves it to
/// `sent/` as soon as `deliver` took it; stops at the first failure (the
/// rest wait). Returns the names of the mails delivered.
fn deliver_pending(
    home_dir: &Path,
    mut deliver: impl FnMut(&Path, &[u8]) -> Result<()>,
) -> Result<Vec<String>> {
    let (pending, sent) = dirs(home_dir)?;
    let mut done = Vec::new();
    for p in pending_files(&pending)? {
        let raw = std::fs::read(&p).with_context(|| format!("cannot read {}", p.display()))?;
        deliver(&p, &raw)?;
        let name = p.file_name().unwrap_or_default();
        let to = sent.join(name);
        std::fs::rename(&p, &to)
            .with_context(|| format!("cannot move {} to {}", p.display(), to.display()))?;
        done.push(name.to_string_lossy().into_owned());
    }
    Ok(done)
}

/// Sends the pending mail through `relay` (lettre).
pub fn send(home_dir: &Path, relay: &str, from: &str) -> Result<Vec<String>> {
    use lettre::Transport as _;
    let (pending, _) = dirs(home_dir)?;
    if pending_files(&pending)?.is_empty() {
        return Ok(Vec::new());
    }
    let url = if relay.contains("://") {
        relay.to_string()
    } else {
        format!("smtp://{relay}")
    };
    let transport = lettre::SmtpTransport::from_url(&url)
        .with_context(|| {
            format!("the SMTP relay {relay:?}: expected smtp://HOST:PORT or smtps://HOST:PORT")
        })?
        .timeout(Some(SEND_TIMEOUT))
        .build();
    let sender: lettre::Address = from
        .parse()
        .with_context(|| format!("{from:?} is not an email address"))?;
    deliver_pending(home_dir, |f, raw| {
        let to: Vec<lettre::Address> = recipients_of(raw)
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        let envelope = lettre::address::Envelope::new(Some(sender.clone()), to)
            .with_context(|| format!("{} has no recipient", f.display()))?;
        transport
            .send_raw(&envelope, raw)
            .with_context(|| format!("sending {} through {relay}", f.display()))?;
        Ok(())
    })
}

/// Longest wait for the relay's answer to one command.
pub const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Delivers the pending mail into the Maildir `dir` (written in tmp/,
/// renamed into new/, as Maildir readers expect).
fn to_maildir(home_dir: &Path, dir: &Path) -> Result<Vec<String>> {
    for sub in ["tmp", "new", "cur"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    deliver_pending(home_dir, |p, raw| {
        // Unique per mail: its queue name holds the entry id and part.
        let stem = p.file_stem().unwrap_or_default().to_string_lossy();
        let unique = format!("{stem}.tagline");
        let (tmp, new) = (dir.join("tmp").join(&unique), dir.join("new").join(&unique));
        std::fs::write(&tmp, raw).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &new).with_context(|| format!("cannot write {}", new.display()))
    })
}

/// Appends the pending mail to `mbox` (mboxrd).
fn to_mbox(home_dir: &Path, mbox: &Path) -> Result<Vec<String>> {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(mbox)
        .with_context(|| format!("cannot open {}", mbox.display()))?;
    deliver_pending(home_dir, |_, raw| {
        f.write_all(&tagline_email::mbox::mboxrd_message(raw))
            .and_then(|()| f.flush())
            .with_context(|| format!("cannot write {}", mbox.display()))
    })
}

/// `tagline bridge outbox`.
pub fn outbox(home_dir: &Path, a: OutboxArgs) -> Result<()> {
    let config = crate::bridgecmd::read_bridge_config(home_dir)?.context(
        "this data directory bridges no list yet (run `tagline bridge import` or `serve` first)",
    )?;
    let out = config.out_args(&a.out);
    let list = config
        .list
        .clone()
        .context("the bridge has no list address (set --list on its first run)")?;
    let key = crate::home::load_key(home_dir)?;
    let written = {
        let store = crate::home::open_store(home_dir)?;
        let project = config.settings()?.project;
        queue(home_dir, &store, &key.public(), &project, &list, &out)?
    };
    println!("{} mails queued", written.len());
    let done = if a.send {
        let relay = out
            .smtp_relay
            .as_deref()
            .context("say where to send: --smtp-relay URL (or `smtp_relay` in bridge.toml)")?;
        send(home_dir, relay, out.from.as_deref().unwrap_or_default())?
    } else if let Some(mbox) = &a.mbox {
        to_mbox(home_dir, mbox)?
    } else if let Some(dir) = &a.maildir {
        to_maildir(home_dir, dir)?
    } else {
        Vec::new()
    };
    for d in &done {
        println!("sent     {d}");
    }
    let (pending, _) = dirs(home_dir)?;
    for p in pending_files(&pending)? {
        println!(
            "pending  {}",
            p.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    Ok(())
}
