//! `tagline bridge`: the email bridge's commands. Now: `parse`, the parsed
//! form of one mail without storing anything (as `git mailinfo` shows it),
//! for a user debugging why a mail was read as it was.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::json;
use tagline_email::bridge::{Bridge, Incoming, Outcome, Prepared, Replay, Settings, prepare};
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

/// Reads one mail file, refusing one larger than a mail may be before
/// reading it.
fn read_mail_file(path: &Path) -> Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    anyhow::ensure!(
        len <= MAX_MAIL_SIZE as u64,
        "{} is {len} bytes, more than the {MAX_MAIL_SIZE} bytes a mail may have",
        path.display()
    );
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
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
}

impl BridgeConfig {
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
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let c: BridgeConfig =
            toml::from_str(&text).with_context(|| format!("{} is damaged", path.display()))?;
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
    };
    std::fs::write(
        &path,
        toml::to_string(&c).context("cannot write the bridge settings")?,
    )
    .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(c)
}

/// A bridge brought up to date with its own feed: every recorded mail fed
/// again, every derived entry checked (SPEC.md §15.2). The feed is read a
/// page at a time: a mail is fed once the entries it led to (which follow
/// its record) are queued.
pub fn replayed_bridge(store: &Store, key: &SecretKey, settings: Settings) -> Result<Bridge> {
    let mut bridge = Bridge::new(settings);
    let author = key.public();
    let Some(head) = store.feed(&author)?.map(|m| m.head.seq) else {
        return Ok(bridge);
    };
    let mut replay = Replay::new([]);
    let feed = |bridge: &mut Bridge, replay: &mut Replay, mail: Option<(Vec<u8>, Dkim)>| match mail
    {
        Some((raw, dkim)) => bridge
            .add(&Incoming { raw: &raw, dkim }, replay)
            .map(|_| ())
            .context("replaying the bridge's feed"),
        None => Ok(()),
    };
    let mut pending = None;
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
                    format!("the bridge's mail record {} does not decode", e.signed.id())
                })?;
                let raw = r.raw.with_context(|| {
                    format!(
                        "the bridge's mail record {} does not keep its mail",
                        e.signed.id()
                    )
                })?;
                feed(&mut bridge, &mut replay, pending.replace((raw, r.dkim)))?;
            }
            replay.push(e.signed.id(), t, p);
        }
    }
    feed(&mut bridge, &mut replay, pending)?;
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

/// Arguments of `tagline bridge import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// An mbox file, a Maildir or a public-inbox v2 archive (detected)
    pub path: PathBuf,
    /// The project the list's series are posted to (needed on the first
    /// import; fixed for this data directory afterwards)
    #[arg(long)]
    pub project: Option<String>,
    /// The list's posting address, recorded with each mail
    #[arg(long)]
    pub list: Option<String>,
    /// Vouch for trailers of unsigned (or, as in archives, unchecked) mail;
    /// only for a list whose MTA already enforces DMARC
    #[arg(long)]
    pub accept_unsigned: bool,
    /// Read an mbox as mboxo (`>From ` lines not unquoted) instead of mboxrd
    #[arg(long)]
    pub mboxo: bool,
    /// Print the summary as JSON
    #[arg(long)]
    pub json: bool,
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
}

#[derive(Debug, serde::Serialize)]
pub struct Skipped {
    /// The message's place in its source (mbox index, Maildir file, commit).
    pub source: String,
    pub reason: String,
}

impl Summary {
    fn take(&mut self, source: &str, o: Outcome) {
        self.messages += 1;
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

impl Importer<'_> {
    /// Bridges `it` in batches of [`IMPORT_BATCH`] mails, one transaction
    /// each; after each, the archive's resume point is saved.
    /// Mails are read and parsed on a second thread while this one
    /// bridges and stores the batch before.
    fn run(
        &mut self,
        it: &mut (dyn Iterator<Item = SourceMail> + Send),
        bar: &indicatif::ProgressBar,
    ) -> Result<()> {
        std::thread::scope(|scope| {
            let (tx, rx) =
                std::sync::mpsc::sync_channel::<(SourceMail, Option<Prepared>)>(IMPORT_BATCH);
            scope.spawn(move || {
                for m in it {
                    let p = m.1.as_ref().ok().map(|raw| prepare(raw));
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

    fn batch(&mut self, batch: Vec<(SourceMail, Option<Prepared>)>) -> Result<()> {
        let bridge = &mut self.bridge;
        let mut resume = None;
        let outcomes = crate::ident::append_own_with(
            self.home_dir,
            self.store,
            self.key,
            self.force,
            |app| {
                let mut out = ToStore(app);
                let mut outcomes = Vec::with_capacity(batch.len());
                for ((source, raw, at), prepared) in batch {
                    let o = match (raw, prepared) {
                        (Ok(raw), Some(prepared)) => bridge.add_prepared(
                            &Incoming {
                                raw: &raw,
                                dkim: unchecked(),
                            },
                            prepared,
                            &mut out,
                        )?,
                        (Err(e), _) => Outcome::Refused { reason: e },
                        (Ok(_), None) => continue,
                    };
                    outcomes.push((source, o));
                    if let Some(at) = at {
                        resume = Some(at);
                    }
                }
                Ok(outcomes)
            },
        )?;
        for (source, o) in outcomes {
            self.summary.take(&source, o);
        }
        if let Some((epoch, commit)) = resume {
            self.state.epochs.insert(epoch, commit);
            write_state(self.home_dir, &self.state)?;
        }
        Ok(())
    }
}

pub fn import(home_dir: &Path, a: ImportArgs, force: bool) -> Result<()> {
    let key = crate::home::load_key(home_dir)?;
    let store = crate::home::open_store(home_dir)?;
    let project = a
        .project
        .as_deref()
        .map(|p| crate::reviewcmd::project_id_in(&store, p))
        .transpose()?;
    let config = bridge_config(home_dir, project, a.list.as_deref(), a.accept_unsigned)?;
    let mut im = Importer {
        home_dir,
        store: &store,
        key: &key,
        force,
        bridge: replayed_bridge(&store, &key, config.settings()?)?,
        summary: Summary::default(),
        state: read_state(home_dir),
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
            im.run(&mut it, &bar)?;
            bar.finish_and_clear();
        }
    } else {
        let (mut it, len) = sources(&a.path, a.mboxo)?;
        let bar = progress(len);
        im.run(&mut *it, &bar)?;
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
