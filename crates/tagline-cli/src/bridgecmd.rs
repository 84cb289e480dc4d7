//! `tagline bridge`: the email bridge's commands. `parse` shows one mail as
//! the bridge reads it, storing nothing (as `git mailinfo` would); `import`
//! bridges an mbox, Maildir or public-inbox archive; `serve` takes live
//! delivery over LMTP/SMTP. All of them store through [`bridge_batch`]. The
//! outbox is `outboxcmd.rs`.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::json;
use tagline_email::bridge::{Bridge, Incoming, Outcome, Prepared, Replay, Settings, prepare};
use tagline_email::dkim::DkimChecker;
use tagline_email::mailinfo::{self, MAX_MAIL_SIZE, Options};
use tagline_email::subject;
use tagline_format::mail::{Dkim, MAIL_TYPE, MailRecord};
use tagline_format::{EntryId, SecretKey};
use tagline_store::Store;

/// Arguments of `tagline bridge parse`.
#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// The mail (one message, as delivered or as an mbox of one); - reads
    /// standard input
    pub mail: PathBuf,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
    /// Drop what is above a `-- >8 --` scissors line (`git mailinfo --scissors`)
    #[arg(long)]
    pub scissors: bool,
    /// Do not take From:/Subject:/Date: at the top of the body as headers
    #[arg(long)]
    pub no_inbody_headers: bool,
}

/// Reads a file of at most `max` bytes (`what` it is, for the error),
/// refusing a larger one before reading it.
fn read_bounded(path: &Path, max: u64, what: &str) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= max,
        "{} is {len} bytes, more than the {max} bytes {what} may have",
        path.display()
    );
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Reads one mail file, refusing one larger than a mail may be.
fn read_mail_file(path: &Path) -> Result<Vec<u8>> {
    read_bounded(path, MAX_MAIL_SIZE as u64, "a mail")
}

pub fn parse(a: ParseArgs) -> Result<()> {
    let raw = if a.mail.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .take(MAX_MAIL_SIZE as u64 + 1)
            .read_to_end(&mut b)
            .context("cannot read the mail from standard input")?;
        b
    } else {
        read_mail_file(&a.mail)?
    };
    let opts = Options {
        scissors: a.scissors,
        inbody_headers: !a.no_inbody_headers,
        message_id: false,
    };
    let info = mailinfo::parse(&raw, &opts)
        .with_context(|| format!("cannot parse {}", a.mail.display()))?;
    let subj = subject::parse(&info.raw_subject);
    let kind = tagline_email::kind::classify(&info, &subj);
    // A reply's trailers are its unquoted `*-by:` lines (as b4 collects
    // them); a patch's are the trailer block of its commit message.
    let trailers: Vec<(String, String)> = if subj.reply {
        tagline_email::thread::reply_trailers(&info.message)
    } else {
        tagline_review::trailers::parse(&info.message)
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect()
    };
    if a.json {
        let v = json!({
            "kind": kind,
            "author": info.author,
            "email": info.email,
            "date": info.date,
            "subject": info.subject,
            "raw_subject": info.raw_subject,
            "prefix": subj,
            "message_id": info.message_id,
            "in_reply_to": info.in_reply_to,
            "references": info.references,
            "message": info.message,
            "patch": String::from_utf8_lossy(&info.patch),
            "trailers": trailers.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!("kind         {}", kind.as_str());
    println!("author       {} <{}>", info.author, info.email);
    println!("date         {}", info.date);
    println!("subject      {}", info.subject);
    let mut prefix = vec![format!("v{}", subj.version)];
    if let (Some(i), Some(n)) = (subj.index, subj.total) {
        prefix.push(format!("{i}/{n}"));
    }
    for (flag, name) in [
        (subj.rfc, "RFC"),
        (subj.resend, "RESEND"),
        (subj.pull, "PULL"),
        (subj.reply, "reply"),
    ] {
        if flag {
            prefix.push(name.to_string());
        }
    }
    prefix.extend(subj.tags.iter().cloned());
    prefix.extend(subj.lists.iter().map(|l| format!("list:{l}")));
    println!("prefix       {}", prefix.join(" "));
    if let Some(id) = &info.message_id {
        println!("message-id   <{id}>");
    }
    for id in &info.in_reply_to {
        println!("in-reply-to  <{id}>");
    }
    println!("references   {}", info.references.len());
    for (k, v) in &trailers {
        println!("trailer      {k}: {v}");
    }
    println!("message      {} lines", info.message.lines().count());
    println!(
        "patch        {} lines",
        info.patch
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
    );
    Ok(())
}

/// The bridge's settings in a data directory (fixed at its first import:
/// what the bridge derives depends on them, and its feed is replayed with
/// them on every start).
pub const BRIDGE_CONFIG_FILE: &str = "bridge.toml";
/// Where `bridge import` resumes each archive (an optimisation only: a
/// mail read again is a duplicate and skipped).
pub const IMPORT_STATE_FILE: &str = "bridge-import.toml";
/// Mails bridged per store transaction.
pub const IMPORT_BATCH: usize = 512;
/// Own-feed entries read per store read while replaying.
const REPLAY_PAGE: u64 = 1024;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BridgeConfig {
    /// The project's id (its declaring entry), hex.
    pub project: String,
    /// The list's posting address, recorded with each mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<String>,
    /// Vouch for trailers of mail without a DKIM signature.
    #[serde(default)]
    pub accept_unsigned: bool,
    /// Outbound mail: the address it goes out from (may be changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Outbound mail: the SMTP relay's URL (may be changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_relay: Option<String>,
    /// Outbound mail: a repository whose MAINTAINERS names the Cc of a
    /// native series (may be changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<PathBuf>,
}

/// The bridge's settings, if it has been set up.
pub fn read_bridge_config(home_dir: &Path) -> Result<Option<BridgeConfig>> {
    let path = home_dir.join(BRIDGE_CONFIG_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(Some(toml::from_str(&text).with_context(|| {
        format!("{} is damaged", path.display())
    })?))
}

impl BridgeConfig {
    /// How mail goes out: the flags, else the settings.
    pub fn out_args(&self, given: &crate::outboxcmd::OutArgs) -> crate::outboxcmd::OutArgs {
        crate::outboxcmd::OutArgs {
            smtp_relay: given.smtp_relay.clone().or_else(|| self.smtp_relay.clone()),
            from: given.from.clone().or_else(|| self.from.clone()),
            repo: given.repo.clone().or_else(|| self.repo.clone()),
        }
    }

    pub fn settings(&self) -> Result<Settings> {
        Ok(Settings {
            project: self.project.parse().with_context(|| {
                format!(
                    "{BRIDGE_CONFIG_FILE}: project {:?} is not an entry id",
                    self.project
                )
            })?,
            list: self.list.clone(),
            accept_unsigned: self.accept_unsigned,
        })
    }
}

/// Reads the bridge's settings, or fixes them from the command line on the
/// first run. A later run may repeat them but not change them.
pub fn bridge_config(
    home_dir: &Path,
    given_project: Option<EntryId>,
    list: Option<&str>,
    accept_unsigned: bool,
) -> Result<BridgeConfig> {
    let path = home_dir.join(BRIDGE_CONFIG_FILE);
    if let Some(c) = read_bridge_config(home_dir)? {
        if let Some(p) = given_project
            && p.to_string() != c.project
        {
            anyhow::bail!(
                "this data directory bridges for project {}, not {p} (a bridge serves one project; use another --home)",
                c.project
            );
        }
        if let Some(l) = list
            && Some(l) != c.list.as_deref()
        {
            anyhow::bail!(
                "this bridge records its mails as from list {} ({}), not {l}",
                c.list.as_deref().unwrap_or("(none)"),
                path.display()
            );
        }
        if accept_unsigned && !c.accept_unsigned {
            anyhow::bail!(
                "this bridge was set up without --accept-unsigned ({}); it cannot change, since its feed was derived without it",
                path.display()
            );
        }
        return Ok(c);
    }
    let project = given_project.context(
        "the first import needs --project PROJECT (the project the list's series are posted to)",
    )?;
    let c = BridgeConfig {
        project: project.to_string(),
        list: list.map(str::to_string),
        accept_unsigned,
        from: None,
        smtp_relay: None,
        repo: None,
    };
    std::fs::write(
        &path,
        toml::to_string(&c).context("cannot write the bridge settings")?,
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(c)
}

/// The bridge's settings (fixed on its first run: `project` names the
/// project by name or id) and the bridge brought up to date with its feed.
fn open_bridge(
    home_dir: &Path,
    store: &Store,
    key: &SecretKey,
    args: &ListArgs,
) -> Result<(BridgeConfig, Bridge)> {
    let project = args
        .project
        .as_deref()
        .map(|p| crate::reviewcmd::project_id_in(store, p))
        .transpose()?;
    let config = bridge_config(
        home_dir,
        project,
        args.list.as_deref(),
        args.accept_unsigned,
    )?;
    let bridge = replayed_bridge(store, key, config.settings()?)?;
    Ok((config, bridge))
}

/// A bridge brought up to date with its own feed: every recorded mail fed
/// again, every derived entry checked (SPEC.md §15.2). The feed is read a
/// page at a time, and its mails decoded and parsed, on a second thread; a
/// mail is fed once the entries it led to (which follow its record) are
/// queued.
pub fn replayed_bridge(store: &Store, key: &SecretKey, settings: Settings) -> Result<Bridge> {
    /// What the reading thread hands over, in feed order.
    enum Item {
        Mail(Box<(Vec<u8>, Dkim, Prepared)>),
        Derived(EntryId, String, Vec<u8>),
    }
    let mut bridge = Bridge::new(settings);
    let author = key.public();
    let Some(head) = store.feed(&author)?.map(|m| m.head.seq) else {
        return Ok(bridge);
    };
    let mut replay = Replay::new([]);
    let feed = |bridge: &mut Bridge,
                replay: &mut Replay,
                mail: Option<(Vec<u8>, Dkim, Prepared)>| match mail {
        Some((raw, dkim, prepared)) => bridge
            .add_prepared(&Incoming { raw: &raw, dkim }, prepared, replay)
            .map(|_| ())
            .context("replaying the bridge's feed"),
        None => Ok(()),
    };
    std::thread::scope(|scope| -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Item>>(
            usize::try_from(REPLAY_PAGE).unwrap_or(1024),
        );
        scope.spawn(move || {
            let read = || -> Result<()> {
                let mut from = 1;
                while from <= head {
                    let page = store.range(&author, from, (from + REPLAY_PAGE - 1).min(head))?;
                    if page.is_empty() {
                        break;
                    }
                    from += page.len() as u64;
                    for e in page {
                        let t = e.signed.header().payload_type.clone();
                        let Some(p) = e.payload else { continue };
                        if !tagline_email::bridge::is_bridge_type(&t, &p) {
                            continue;
                        }
                        if t == MAIL_TYPE {
                            let r = MailRecord::decode(&p).with_context(|| {
                                format!(
                                    "the bridge's mail record {} does not decode",
                                    e.signed.id()
                                )
                            })?;
                            let raw = r.raw.with_context(|| {
                                format!(
                                    "the bridge's mail record {} does not keep its mail",
                                    e.signed.id()
                                )
                            })?;
                            let prepared = prepare(&raw);
                            if tx
                                .send(Ok(Item::Mail(Box::new((raw, r.dkim, prepared)))))
                                .is_err()
                            {
                                return Ok(());
                            }
                        }
                        if tx.send(Ok(Item::Derived(e.signed.id(), t, p))).is_err() {
                            return Ok(());
                        }
                    }
                }
                Ok(())
            };
            if let Err(e) = read() {
                let _ = tx.send(Err(e));
            }
        });
        let mut pending = None;
        for item in rx {
            match item? {
                Item::Mail(mail) => {
                    feed(&mut bridge, &mut replay, pending.replace(*mail))?;
                }
                Item::Derived(id, t, p) => replay.push(id, t, p),
            }
        }
        feed(&mut bridge, &mut replay, pending)
    })?;
    anyhow::ensure!(
        replay.left() == 0,
        "replaying the bridge's feed left {} entries it did not derive again: the feed was written by another version of the bridge",
        replay.left()
    );
    Ok(bridge)
}

/// Publishes into an open store transaction.
struct ToStore<'a, 'w, 't>(&'a mut tagline_store::LocalAppender<'w, 't>);

impl tagline_email::bridge::Publish for ToStore<'_, '_, '_> {
    type Error = tagline_store::StoreError;
    fn publish(&mut self, payload_type: &str, payload: Vec<u8>) -> Result<EntryId, Self::Error> {
        Ok(self.0.append(payload_type, payload)?.signed.id())
    }
}

/// The list a bridge serves, for `import` and `serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ListArgs {
    /// The project the list's series are posted to (needed the first time;
    /// fixed for this data directory afterwards)
    #[arg(long)]
    pub project: Option<String>,
    /// The list's posting address, recorded with each mail
    #[arg(long)]
    pub list: Option<String>,
    /// Vouch for trailers of unsigned (or, as in archives, unchecked) mail,
    /// only for a list whose MTA already enforces DMARC; a failing
    /// signature never passes
    #[arg(long)]
    pub accept_unsigned: bool,
}

/// Arguments of `tagline bridge import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// An mbox file, a Maildir or a public-inbox v2 archive (detected)
    pub path: PathBuf,
    #[command(flatten)]
    pub list: ListArgs,
    /// Read an mbox as mboxo (`>From ` lines not unquoted) instead of mboxrd
    #[arg(long)]
    pub mboxo: bool,
    /// Check each mail's DKIM signatures (archived mail is recorded as
    /// unchecked otherwise: its keys are often gone from DNS)
    #[arg(long)]
    pub check_dkim: bool,
    #[command(flatten)]
    pub dkim: DkimArgs,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
}

/// Where DKIM keys come from.
#[derive(Debug, Clone, clap::Args)]
pub struct DkimArgs {
    /// DKIM keys to use before DNS: one `SELECTOR._domainkey.DOMAIN
    /// RECORD` per line, `#` comments
    #[arg(long, value_name = "FILE")]
    pub dkim_keys: Option<PathBuf>,
    /// Never ask DNS: a key not in --dkim-keys is a temperror
    #[arg(long)]
    pub dkim_offline: bool,
}

impl DkimArgs {
    pub fn checker(&self) -> Result<DkimChecker> {
        let keys = match &self.dkim_keys {
            Some(path) => String::from_utf8(read_bounded(
                path,
                tagline_email::dkim::MAX_KEYS_FILE,
                "a DKIM key file",
            )?)
            .with_context(|| format!("{} is not UTF-8 text", path.display()))?,
            None => String::new(),
        };
        DkimChecker::new(&keys, self.dkim_offline).with_context(|| match &self.dkim_keys {
            Some(p) => format!("DKIM keys from {}", p.display()),
            None => "DKIM".to_string(),
        })
    }
}

/// What an import did.
#[derive(Debug, Default, serde::Serialize)]
pub struct Summary {
    pub messages: u64,
    pub bridged: u64,
    pub duplicates: u64,
    pub looped: u64,
    pub revisions: u64,
    pub reviews: u64,
    pub trailers: u64,
    pub flagged: u64,
    /// Series still waiting for patches, and replies waiting for them.
    pub waiting_series: usize,
    pub waiting_replies: usize,
    /// Per message not bridged or bridged with a warning: where, and why.
    pub skipped: Vec<Skipped>,
    pub warnings: Vec<Skipped>,
    /// Email proofs written from challenge mails: `identity address`.
    pub proofs: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct Skipped {
    /// The message's place in its source (mbox index, Maildir file, commit).
    pub source: String,
    pub reason: String,
}

impl Summary {
    fn take(&mut self, source: &str, o: Outcome, proofs: &[String]) {
        self.messages += 1;
        self.proofs.extend(proofs.iter().cloned());
        match o {
            Outcome::Bridged(a) => {
                self.bridged += 1;
                self.revisions += a.revisions.len() as u64;
                self.reviews += a.reviews.len() as u64;
                self.trailers += a.trailers as u64;
                self.flagged += a.flagged as u64;
                for w in a.warnings {
                    self.warnings.push(Skipped {
                        source: format!("{source} <{}>", a.message_id),
                        reason: w,
                    });
                }
            }
            Outcome::Duplicate { .. } => self.duplicates += 1,
            Outcome::Looped { .. } => self.looped += 1,
            Outcome::Refused { reason } => self.skipped.push(Skipped {
                source: source.to_string(),
                reason,
            }),
        }
    }
}

/// Resume points of archives: epoch path → last commit bridged.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct ImportState {
    #[serde(default)]
    epochs: std::collections::BTreeMap<String, String>,
}

fn read_state(home_dir: &Path) -> ImportState {
    std::fs::read_to_string(home_dir.join(IMPORT_STATE_FILE))
        .ok()
        .and_then(|t| toml::from_str(&t).ok())
        .unwrap_or_default()
}

fn write_state(home_dir: &Path, s: &ImportState) -> Result<()> {
    let path = home_dir.join(IMPORT_STATE_FILE);
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        toml::to_string(s).context("cannot encode the import state")?,
    )
    .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

/// One message of a source: where it is (for the summary), its bytes or
/// why it could not be read, and for a public-inbox archive the (epoch,
/// commit) to resume after.
type SourceMail = (String, Result<Vec<u8>, String>, Option<(String, String)>);
type Source = Box<dyn Iterator<Item = SourceMail> + Send>;

fn sources(path: &Path, mboxo: bool) -> Result<(Source, Option<u64>)> {
    use tagline_email::mbox::{Mbox, Quoting, is_maildir, maildir_files};
    if path.is_dir() && is_maildir(path) {
        let files = maildir_files(path)?;
        let n = files.len() as u64;
        let it = files.into_iter().map(|f| {
            let r = read_mail_file(&f).map_err(|e| format!("{e:#}"));
            (f.display().to_string(), r, None)
        });
        return Ok((Box::new(it), Some(n)));
    }
    if path.is_dir() {
        anyhow::bail!(
            "{} is a directory but neither a Maildir (cur/, new/) nor a public-inbox v2 archive (git/N.git)",
            path.display()
        );
    }
    let f = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let quoting = if mboxo { Quoting::O } else { Quoting::Rd };
    let name = path.display().to_string();
    let it = Mbox::new(std::io::BufReader::new(f), quoting)
        .enumerate()
        .map(move |(i, m)| {
            (
                format!("{name} message {}", i + 1),
                m.map_err(|e| e.to_string()),
                None,
            )
        });
    Ok((Box::new(it), None))
}

/// An import in progress: the bridge, what it did, where archives resume.
struct Importer<'a> {
    home_dir: &'a Path,
    store: &'a Store,
    key: &'a SecretKey,
    force: bool,
    bridge: Bridge,
    summary: Summary,
    state: ImportState,
}

/// With `--check-dkim`: the checker and a runtime for its lookups.
type ImportDkim = (DkimChecker, tokio::runtime::Runtime);

impl Importer<'_> {
    /// Bridges `it` in batches of [`IMPORT_BATCH`] mails, one transaction
    /// each; after each, the archive's resume point is saved.
    /// Mails are read, parsed and (with `dkim`) their signatures checked
    /// on a second thread while this one bridges and stores the batch
    /// before.
    fn run(
        &mut self,
        it: &mut (dyn Iterator<Item = SourceMail> + Send),
        bar: &indicatif::ProgressBar,
        dkim: Option<&ImportDkim>,
    ) -> Result<()> {
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<(SourceMail, Option<(Prepared, Dkim)>)>(
                IMPORT_BATCH,
            );
            scope.spawn(move || {
                for m in it {
                    let p = m.1.as_ref().ok().map(|raw| {
                        let d = match dkim {
                            Some((checker, rt)) => rt.block_on(checker.check(raw)),
                            None => unchecked(),
                        };
                        (prepare(raw), d)
                    });
                    if tx.send((m, p)).is_err() {
                        return; // the import stopped
                    }
                }
            });
            loop {
                let mut batch = Vec::with_capacity(IMPORT_BATCH);
                while batch.len() < IMPORT_BATCH {
                    match rx.recv() {
                        Ok(x) => batch.push(x),
                        Err(_) => break,
                    }
                }
                if batch.is_empty() {
                    return Ok(());
                }
                let n = batch.len() as u64;
                self.batch(batch)?;
                bar.inc(n);
            }
        })
    }

    fn batch(&mut self, batch: Vec<(SourceMail, Option<(Prepared, Dkim)>)>) -> Result<()> {
        let mut resume = None;
        let mut places = Vec::with_capacity(batch.len());
        let mut mails = Vec::with_capacity(batch.len());
        for ((source, raw, at), prepared) in batch {
            match (raw, prepared) {
                (Ok(raw), Some((prepared, dkim))) => {
                    places.push(source);
                    mails.push(Mail {
                        raw,
                        dkim,
                        prepared,
                    });
                }
                (Err(e), _) => self
                    .summary
                    .take(&source, Outcome::Refused { reason: e }, &[]),
                (Ok(_), None) => continue,
            }
            if let Some(at) = at {
                resume = Some(at);
            }
        }
        let done = bridge_batch(
            self.home_dir,
            self.store,
            self.key,
            self.force,
            &mut self.bridge,
            mails,
        )?;
        for (source, b) in places.iter().zip(done) {
            self.summary.take(source, b.outcome, &b.proofs);
        }
        if let Some((epoch, commit)) = resume {
            self.state.epochs.insert(epoch, commit);
            write_state(self.home_dir, &self.state)?;
        }
        Ok(())
    }
}

/// One mail for [`bridge_batch`]: its bytes, what its DKIM signatures
/// gave, and its parse.
#[derive(Debug)]
pub struct Mail {
    pub raw: Vec<u8>,
    pub dkim: Dkim,
    pub prepared: Prepared,
}

/// What became of one mail, with the email proofs it led to (`identity
/// address` each).
#[derive(Debug)]
pub struct Bridged {
    pub outcome: Outcome,
    pub proofs: Vec<String>,
}

/// Bridges `mails` in one transaction of the bridge's feed. A mail with an
/// email challenge (SPEC.md §12.4) whose DKIM signature passed for its
/// sender proves the address for every identity that claims it and whose
/// token it carries: the proof (method `dkim`) is written in the same
/// transaction, so a mail is never bridged without the proof it carries.
/// On an error the bridge may be ahead of its feed: replay it again.
pub fn bridge_batch(
    home_dir: &Path,
    store: &Store,
    key: &SecretKey,
    force: bool,
    bridge: &mut Bridge,
    mails: Vec<Mail>,
) -> Result<Vec<Bridged>> {
    let registry = if mails.iter().any(|m| m.prepared.has_challenge_token()) {
        Some(crate::ident::registry(store)?)
    } else {
        None
    };
    let me = key.public();
    crate::ident::append_own_with(home_dir, store, key, force, |app| {
        let mut out = ToStore(app);
        let mut done = Vec::with_capacity(mails.len());
        for m in mails {
            let outcome = bridge.add_prepared(
                &Incoming {
                    raw: &m.raw,
                    dkim: m.dkim,
                },
                m.prepared,
                &mut out,
            )?;
            let mut proofs = Vec::new();
            if let (Outcome::Bridged(added), Some(reg)) = (&outcome, &registry)
                && let Some(ch) = &added.challenge
            {
                for (id, ident) in &reg.identities {
                    let claimed = ident.emails.iter().find(|e| e.address == ch.address);
                    let Some(email) = claimed else { continue };
                    if tagline_format::identity::email_challenge(id, &ch.address) != ch.token
                        || email
                            .proofs
                            .iter()
                            .any(|(by, method, _)| *by == me && method == "dkim")
                    {
                        continue;
                    }
                    let p = tagline_format::identity::IdentityPayload::EmailProof {
                        identity: *id,
                        address: ch.address.clone(),
                        method: "dkim".into(),
                        detail: format!("DKIM pass for d={} on <{}>", ch.domain, added.message_id),
                    };
                    tagline_email::bridge::Publish::publish(&mut out, p.type_name(), p.encode())?;
                    proofs.push(format!("{id} {}", ch.address));
                }
            }
            done.push(Bridged { outcome, proofs });
        }
        Ok(done)
    })
}

pub fn import(home_dir: &Path, a: ImportArgs, force: bool) -> Result<()> {
    let key = crate::home::load_key(home_dir)?;
    let store = crate::home::open_store(home_dir)?;
    let (_, bridge) = open_bridge(home_dir, &store, &key, &a.list)?;
    let mut im = Importer {
        home_dir,
        store: &store,
        key: &key,
        force,
        bridge,
        summary: Summary::default(),
        state: read_state(home_dir),
    };
    let dkim: Option<ImportDkim> = if a.check_dkim {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the DKIM resolver's runtime")?;
        Some((a.dkim.checker()?, rt))
    } else {
        None
    };
    let progress = |len: Option<u64>| {
        let bar = match len {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::no_length(),
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {pos}/{len} messages  {per_sec}  {elapsed_precise} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        if a.json {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        bar
    };
    if a.path.is_dir() && tagline_email::public_inbox::is_public_inbox(&a.path) {
        for epoch_path in tagline_email::public_inbox::epochs(&a.path)? {
            let key_name = epoch_path
                .canonicalize()
                .unwrap_or_else(|_| epoch_path.clone())
                .display()
                .to_string();
            let epoch = tagline_email::public_inbox::Epoch::open(&epoch_path)?;
            let commits =
                epoch.commits_since(im.state.epochs.get(&key_name).map(String::as_str))?;
            let bar = progress(Some(commits.len() as u64));
            bar.set_message(epoch_path.display().to_string());
            let k = key_name.clone();
            let mut it = epoch.messages(commits)?.map(move |m| match m {
                Ok((commit, raw)) => (format!("{k} {commit}"), Ok(raw), Some((k.clone(), commit))),
                Err(e) => (k.clone(), Err(e.to_string()), None),
            });
            im.run(&mut it, &bar, dkim.as_ref())?;
            bar.finish_and_clear();
        }
    } else {
        let (mut it, len) = sources(&a.path, a.mboxo)?;
        let bar = progress(len);
        im.run(&mut *it, &bar, dkim.as_ref())?;
        bar.finish_and_clear();
    }
    let mut summary = im.summary;
    (summary.waiting_series, summary.waiting_replies) = im.bridge.waiting();
    if a.json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    println!(
        "{} messages: {} bridged, {} already bridged, {} rendered from feeds (not bridged back), {} skipped",
        summary.messages,
        summary.bridged,
        summary.duplicates,
        summary.looped,
        summary.skipped.len()
    );
    println!(
        "{} revisions, {} reviews with {} trailers vouched for and {} flagged",
        summary.revisions, summary.reviews, summary.trailers, summary.flagged
    );
    if summary.waiting_series > 0 {
        println!(
            "{} series wait for patches (written with what came once the list is a day past them), {} replies wait for them",
            summary.waiting_series, summary.waiting_replies
        );
    }
    for p in &summary.proofs {
        println!("verified {p} (a challenge mail with a passing DKIM signature)");
    }
    for s in &summary.skipped {
        println!("skipped  {}: {}", s.source, s.reason);
    }
    for s in &summary.warnings {
        println!("warning  {}: {}", s.source, s.reason);
    }
    Ok(())
}

/// The DKIM result of archived mail: its signatures are not checked (their
/// keys are often gone from DNS).
fn unchecked() -> Dkim {
    Dkim {
        result: tagline_email::bridge::DKIM_UNCHECKED.to_string(),
        domain: None,
        detail: None,
    }
}

/// Arguments of `tagline bridge serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Accept LMTP on this loopback address (port 0: any free port), for an
    /// MTA such as Postfix (`lmtp:inet:127.0.0.1:PORT`)
    #[arg(long, value_name = "ADDR")]
    pub lmtp: Option<std::net::SocketAddr>,
    /// Accept SMTP on this loopback address
    #[arg(long, value_name = "ADDR")]
    pub smtp: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub list: ListArgs,
    #[command(flatten)]
    pub dkim: DkimArgs,
    /// With a relay and a from address (flags or bridge.toml), the outbox
    /// is rendered and sent every OUTBOX_INTERVAL while serving
    #[command(flatten)]
    pub out: crate::outboxcmd::OutArgs,
}

/// How often `serve` renders and sends the outbox.
pub const OUTBOX_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Most deliveries bridged in one transaction (and one store lease).
pub const SERVE_BATCH: usize = 64;

/// Longest reply text after the status code.
const MAX_REPLY_TEXT: usize = 200;

/// One delivery for the bridging thread.
struct Job {
    raw: Vec<u8>,
    dkim: Dkim,
    reply: tokio::sync::oneshot::Sender<tagline_email::lmtp::Delivered>,
}

/// One line for the client: what became of its mail.
fn told(b: &Bridged) -> String {
    let mut t = match &b.outcome {
        Outcome::Bridged(a) => format!(
            "bridged <{}> as {}: {} revisions, {} reviews, {} trailers vouched for, {} flagged",
            a.message_id,
            a.kind.as_str(),
            a.revisions.len(),
            a.reviews.len(),
            a.trailers,
            a.flagged
        ),
        Outcome::Duplicate { message_id } => format!("<{message_id}> was bridged before"),
        Outcome::Looped { entry } => format!("rendered from entry {entry}: not bridged back"),
        Outcome::Refused { reason } => format!("taken, not bridged: {reason}"),
    };
    for p in &b.proofs {
        t.push_str(&format!("; verified {p}"));
    }
    t.retain(|c| !c.is_control());
    t.chars().take(MAX_REPLY_TEXT).collect()
}

/// `tagline bridge serve`: bridges mail as an MTA delivers it. Each batch
/// of deliveries borrows the store for one transaction (from a running
/// node, through its local API), so the node keeps replicating between.
pub fn serve(home_dir: &Path, a: ServeArgs, force: bool) -> Result<()> {
    use tagline_email::lmtp::{self, Delivered, Protocol};
    anyhow::ensure!(
        a.lmtp.is_some() || a.smtp.is_some(),
        "say where to listen: --lmtp 127.0.0.1:PORT and/or --smtp 127.0.0.1:PORT"
    );
    for addr in [a.lmtp, a.smtp].into_iter().flatten() {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "{addr} is not a loopback address: the bridge takes mail without authentication, so it listens on 127.0.0.1 or ::1 only (put an MTA in front of it)"
        );
    }
    let key = crate::home::load_key(home_dir)?;
    let (config, bridge) = open_bridge(
        home_dir,
        &*crate::home::open_store(home_dir)?,
        &key,
        &a.list,
    )?;
    let settings = config.settings()?;
    let checker = a.dkim.checker()?;
    // One store opening at a time in this process (the bridging thread's
    // and the outbox's).
    let store_lock = std::sync::Arc::new(std::sync::Mutex::new(()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let out = config.out_args(&a.out);
    let outbox = match (&out.smtp_relay, &out.from, &config.list) {
        (Some(relay), Some(from), Some(list)) => {
            println!(
                "outbox     every {}s through {relay}",
                OUTBOX_INTERVAL.as_secs()
            );
            let (home, lock, stop) = (home_dir.to_path_buf(), store_lock.clone(), stop.clone());
            let (relay, from, list, project) =
                (relay.clone(), from.clone(), list.clone(), settings.project);
            let me = key.public();
            Some(std::thread::spawn(move || {
                let mut next = std::time::Instant::now();
                // The store as it was at the last rendering: unchanged, it
                // holds nothing new to render (only what waits to be sent).
                let mut rendered = None;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if std::time::Instant::now() >= next {
                        let stamp = crate::home::store_stamp(&home);
                        let queued = if rendered == Some(stamp) {
                            Ok(Vec::new())
                        } else {
                            lock.lock()
                                .map_err(|_| anyhow::anyhow!("the store lock was poisoned"))
                                .and_then(|_g| {
                                    let store = crate::home::open_store(&home)?;
                                    crate::outboxcmd::queue(
                                        &home, &store, &me, &project, &list, &out,
                                    )
                                })
                                .inspect(|_| rendered = Some(stamp))
                        };
                        match queued.and_then(|_| crate::outboxcmd::send(&home, &relay, &from)) {
                            Ok(sent) => {
                                for s in sent {
                                    println!("sent       {s}");
                                }
                            }
                            Err(e) => eprintln!(
                                "outbox: {e:#} (tried again in {}s)",
                                OUTBOX_INTERVAL.as_secs()
                            ),
                        }
                        let _ = std::io::Write::flush(&mut std::io::stdout());
                        next = std::time::Instant::now() + OUTBOX_INTERVAL;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
            }))
        }
        _ => None,
    };

    let (tx, rx) = std::sync::mpsc::channel::<Job>();
    let home = home_dir.to_path_buf();
    let worker_lock = store_lock.clone();
    let worker = std::thread::spawn(move || {
        let mut bridge = bridge;
        while let Ok(first) = rx.recv() {
            let mut jobs = vec![first];
            while jobs.len() < SERVE_BATCH {
                match rx.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
            let (mut mails, mut replies) = (Vec::new(), Vec::new());
            for j in jobs {
                let prepared = prepare(&j.raw);
                mails.push(Mail {
                    raw: j.raw,
                    dkim: j.dkim,
                    prepared,
                });
                replies.push(j.reply);
            }
            let result = worker_lock
                .lock()
                .map_err(|_| anyhow::anyhow!("the store lock was poisoned"))
                .and_then(|_g| {
                    let store = crate::home::open_store(home.as_path())?;
                    bridge_batch(home.as_path(), &store, &key, force, &mut bridge, mails)
                });
            match result {
                Ok(done) => {
                    for (b, reply) in done.iter().zip(replies) {
                        let text = told(b);
                        println!("{text}");
                        let _ = reply.send(Delivered::Accepted(text));
                    }
                }
                Err(e) => {
                    eprintln!("bridging failed (the MTA will retry): {e:#}");
                    let text: String = format!("{e:#}")
                        .chars()
                        .filter(|c| !c.is_control())
                        .take(MAX_REPLY_TEXT)
                        .collect();
                    for reply in replies {
                        let _ = reply.send(Delivered::Later(text.clone()));
                    }
                    // The bridge may be ahead of its feed: derive it again.
                    let _g = worker_lock.lock();
                    match crate::home::open_store(home.as_path())
                        .and_then(|store| replayed_bridge(&store, &key, settings.clone()))
                    {
                        Ok(b) => bridge = b,
                        Err(e) => return Err(e),
                    }
                }
            }
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        Ok(())
    });

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let served = rt.block_on(async move {
        let deliver = move |env: lmtp::Envelope| {
            let (tx, checker) = (tx.clone(), checker.clone());
            async move {
                let dkim = checker.check(&env.data).await;
                let (reply, answer) = tokio::sync::oneshot::channel();
                if tx
                    .send(Job {
                        raw: env.data,
                        dkim,
                        reply,
                    })
                    .is_err()
                {
                    return Delivered::Later("the bridge stopped".into());
                }
                answer
                    .await
                    .unwrap_or_else(|_| Delivered::Later("the bridge stopped".into()))
            }
        };
        let deliver = std::sync::Arc::new(deliver);
        let mut tasks = tokio::task::JoinSet::new();
        for (addr, protocol, name) in [
            (a.lmtp, Protocol::Lmtp, "lmtp"),
            (a.smtp, Protocol::Smtp, "smtp"),
        ] {
            let Some(addr) = addr else { continue };
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            println!("listening  {name} {}", listener.local_addr()?);
            let d = deliver.clone();
            tasks.spawn(lmtp::serve(
                listener,
                protocol,
                "localhost".to_string(),
                move |env| d(env),
            ));
        }
        let _ = std::io::Write::flush(&mut std::io::stdout());
        drop(deliver);
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot watch for SIGTERM")?;
        tokio::select! {
            r = tasks.join_next() => match r {
                Some(Ok(Err(e))) => Err(anyhow::Error::new(e).context("the listener failed")),
                Some(Err(e)) => Err(anyhow::Error::new(e).context("the listener stopped")),
                _ => Ok(()),
            },
            _ = tokio::signal::ctrl_c() => { eprintln!("interrupted: stopping"); Ok(()) }
            _ = sigterm.recv() => { eprintln!("terminated: stopping"); Ok(()) }
        }
    });
    // Dropping the runtime drops the sessions and the last sender: the
    // bridging thread finishes its batch and stops.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    let worked = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the bridging thread panicked"))?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(o) = outbox {
        o.join()
            .map_err(|_| anyhow::anyhow!("the outbox thread panicked"))?;
    }
    served.and(worked)
}
