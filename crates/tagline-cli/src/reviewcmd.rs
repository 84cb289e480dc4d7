//! The review commands: `project create`, `submit`, `review`, `ci report`,
//! `status`, `series`.

use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tagline_format::EntryId;
use tagline_format::identity::IdentityId;
use tagline_format::review::{
    CiResult, CiRole, CiStatus, Cover, Patch, Project, Review, ReviewPayload, Revision,
};
use tagline_identity::Registry;
use tagline_review::policy::Policy;
use tagline_review::rules::{Evaluation, Input, Outcome, ProjectContext, evaluate};
use tagline_store::{Store, StoredEntry};

use crate::{home, ident};

/// The review entries a node holds, decoded, and the identities.
struct World {
    entries: Vec<(StoredEntry, ReviewPayload)>,
    registry: Rc<Registry>,
    /// Short series numbers local to this node (`series.numbers` in the data dir).
    numbers: Vec<(u64, EntryId)>,
}

/// File in the data directory holding this node's short series numbers, one
/// `NUMBER ID` per line; numbers are never reused.
const SERIES_NUMBERS_FILE: &str = "series.numbers";

fn read_numbers(home_dir: &Path) -> Vec<(u64, EntryId)> {
    std::fs::read_to_string(home_dir.join(SERIES_NUMBERS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (n, id) = l.split_once(' ')?;
            Some((n.parse().ok()?, id.trim().parse().ok()?))
        })
        .collect()
}

/// Numbers the series in `ids` (in that order) that have no number yet, and
/// writes the file if any was added.
fn add_numbers(
    home_dir: &Path,
    numbers: &mut Vec<(u64, EntryId)>,
    ids: impl IntoIterator<Item = EntryId>,
) -> Result<()> {
    let mut next = numbers.iter().map(|(n, _)| *n).max().unwrap_or(0) + 1;
    let mut added = false;
    for id in ids {
        if !numbers.iter().any(|(_, x)| *x == id) {
            numbers.push((next, id));
            next += 1;
            added = true;
        }
    }
    if added {
        let text: String = numbers
            .iter()
            .map(|(n, id)| format!("{n} {id}\n"))
            .collect();
        let path = home_dir.join(SERIES_NUMBERS_FILE);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Every review entry and identity this node holds, with every known series
/// numbered (oldest first).
fn world(store: &Store) -> Result<World> {
    let mut w = world_of(store, store.review_entries()?)?;
    w.numbers = number_series(store)?;
    Ok(w)
}

/// This node's series numbers, numbering the series that have none yet
/// (oldest first). Reads the series index, and the first revision of each
/// series not numbered yet.
fn number_series(store: &Store) -> Result<Vec<(u64, EntryId)>> {
    let home_dir = store.dir();
    let mut numbers = read_numbers(home_dir);
    let known: std::collections::HashSet<EntryId> = numbers.iter().map(|(_, id)| *id).collect();
    let mut list = Vec::new();
    for id in store.series_ids()? {
        if !known.contains(&id)
            && let Some(e) = store.get(&id)?
        {
            list.push((e.signed.header().timestamp, id));
        }
    }
    list.sort();
    add_numbers(home_dir, &mut numbers, list.into_iter().map(|(_, id)| id))?;
    Ok(numbers)
}

/// A world of just these review entries (and every identity).
fn world_of(store: &Store, stored: Vec<StoredEntry>) -> Result<World> {
    Ok(world_with(stored, Rc::new(ident::registry(store)?)))
}

/// A world of these review entries and this resolution of the identities.
fn world_with(stored: Vec<StoredEntry>, registry: Rc<Registry>) -> World {
    World {
        entries: decode_review(stored),
        registry,
        numbers: Vec::new(),
    }
}

/// The entries whose review payload is held and decodes, with it decoded.
pub(crate) fn decode_review(stored: Vec<StoredEntry>) -> Vec<(StoredEntry, ReviewPayload)> {
    let mut entries = Vec::new();
    for e in stored {
        let Some(p) = e.payload.as_deref() else {
            continue;
        };
        if let Ok(Some(d)) = ReviewPayload::decode(&e.signed.header().payload_type, p) {
            entries.push((e, d));
        }
    }
    entries
}

/// A project's declaring entry and its amendments, read through the indexes.
fn project_entries(store: &Store, pid: &EntryId) -> Result<Vec<StoredEntry>> {
    let mut stored: Vec<StoredEntry> = store.get(pid)?.into_iter().collect();
    stored.extend(store.entries_referencing(pid)?);
    Ok(stored)
}

impl World {
    fn number_of(&self, id: EntryId) -> u64 {
        self.numbers
            .iter()
            .find(|(_, x)| *x == id)
            .map_or(0, |(n, _)| *n)
    }

    fn inputs(&self) -> Vec<Input<'_>> {
        self.entries
            .iter()
            .map(|(e, p)| Input::new(&e.signed, p))
            .collect()
    }

    fn identity_of(&self, e: &StoredEntry) -> Option<IdentityId> {
        self.registry.identity_of(e.signed.author(), e.signed.seq())
    }

    /// Projects: (declaring entry id, declaration in force, lead), resolved
    /// as every node resolves them (tagline-review's `project::resolve`: the
    /// lead's amendments, or a maintainer quorum's when the policy allows).
    fn projects(&self) -> Vec<(EntryId, &Project, Option<IdentityId>)> {
        self.resolved_projects()
            .into_iter()
            .map(|r| (r.id, r.decl, r.lead))
            .collect()
    }

    fn resolved_projects(&self) -> Vec<tagline_review::project::ResolvedProject<'_>> {
        let inputs = self.inputs();
        inputs
            .iter()
            .filter_map(|i| tagline_review::project::resolve(i, &inputs, &self.registry))
            .collect()
    }

    fn project(&self, arg: Option<&str>) -> Result<(EntryId, &Project, Option<IdentityId>)> {
        let all = self.projects();
        let found: Vec<_> = match arg {
            None => all,
            Some(a) => all
                .into_iter()
                .filter(|(id, decl, _)| decl.name == a || id.to_string().starts_with(a))
                .collect(),
        };
        match found.as_slice() {
            [one] => Ok(*one),
            [] => match arg {
                Some(a) => bail!(
                    "no project named or with id {a:?} is known here (import its lead's feed, or `tagline project create`)"
                ),
                None => bail!(
                    "no project is known here (create one with `tagline project create`, or import its lead's feed)"
                ),
            },
            many => bail!(
                "{} projects match; name one with --project: {}",
                many.len(),
                many.iter()
                    .map(|(id, d, _)| format!("{} ({})", d.name, id.short()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// First revisions (series), newest first.
    fn series_list(&self) -> Vec<(EntryId, &Revision, &StoredEntry)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter_map(|(e, p)| match p {
                ReviewPayload::Revision(r) if r.series.is_none() => Some((e.signed.id(), r, e)),
                _ => None,
            })
            .collect();
        v.sort_by_key(|(id, _, e)| (std::cmp::Reverse(e.signed.header().timestamp), *id));
        v
    }

    fn series(&self, arg: &str) -> Result<(EntryId, &Revision)> {
        let number = arg.trim_start_matches('#');
        if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
            let id = self
                .numbers
                .iter()
                .find(|(n, _)| n.to_string() == number)
                .map(|(_, id)| *id);
            let Some(id) = id else {
                bail!("no series is numbered {number} on this node (see `tagline series`)")
            };
            return self
                .series_list()
                .into_iter()
                .find(|(s, _, _)| *s == id)
                .map(|(s, r, _)| (s, r))
                .with_context(|| format!("series #{number} is not held here"));
        }
        let found: Vec<_> = self
            .series_list()
            .into_iter()
            .filter(|(id, _, _)| id.to_string().starts_with(arg))
            .collect();
        match found.as_slice() {
            [(id, r, _)] => Ok((*id, r)),
            [] => bail!(
                "no series with an id starting with {arg:?} is known here (see `tagline series`)"
            ),
            many => bail!(
                "{} series ids start with {arg:?}; give more characters",
                many.len()
            ),
        }
    }

    /// The series of project `pid` (their first revisions), oldest first.
    fn project_series(&self, pid: EntryId) -> Vec<EntryId> {
        let mut v: Vec<EntryId> = self
            .series_list()
            .into_iter()
            .filter(|(_, r, _)| r.project == pid)
            .map(|(id, _, _)| id)
            .collect();
        v.reverse();
        v
    }

    /// The CI results `author` published on each revision in `context`:
    /// (entry, status) each.
    fn ci_by(
        &self,
        author: &tagline_format::PublicKey,
        context: &str,
    ) -> std::collections::BTreeMap<EntryId, Vec<(EntryId, CiStatus)>> {
        let mut out: std::collections::BTreeMap<EntryId, Vec<(EntryId, CiStatus)>> =
            Default::default();
        for (e, p) in &self.entries {
            if let ReviewPayload::Ci(c) = p
                && e.signed.author() == author
                && c.context == context
            {
                out.entry(c.revision)
                    .or_default()
                    .push((e.signed.id(), c.status));
            }
        }
        out
    }

    /// The latest revision of a series (by version, then time, then id).
    fn latest(&self, series: EntryId) -> Option<(EntryId, &Revision)> {
        self.entries
            .iter()
            .filter_map(|(e, p)| match p {
                ReviewPayload::Revision(r)
                    if e.signed.id() == series || r.series == Some(series) =>
                {
                    Some(((r.version, e.signed.header().timestamp, e.signed.id()), r))
                }
                _ => None,
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|((_, _, id), r)| (id, r))
    }

    fn timestamp_of(&self, id: &EntryId) -> u64 {
        self.entries
            .iter()
            .find(|(x, _)| x.signed.id() == *id)
            .map_or(0, |(x, _)| x.signed.header().timestamp)
    }

    /// The trailers `git am` puts into each of `n` patches: every counted
    /// Reviewed-by, Acked-by and Tested-by, as written, in the order they
    /// were given, without duplicates.
    fn am_trailers(&self, e: &Evaluation, n: usize) -> Vec<Vec<(String, String)>> {
        let value_of = |entry: &EntryId, key: &str| -> Option<String> {
            self.entries
                .iter()
                .find(|(x, _)| x.signed.id() == *entry)
                .and_then(|(_, p)| match p {
                    ReviewPayload::Review(r) => r
                        .trailers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(key))
                        .map(|(_, v)| v.clone()),
                    _ => None,
                })
        };
        (1..=n as u64)
            .map(|k| {
                let mut add: Vec<(u64, String, String)> = e
                    .trailers
                    .iter()
                    .filter(|t| t.patch == k && AM_TRAILERS.contains(&t.key.as_str()))
                    .filter_map(|t| {
                        value_of(&t.entry, &t.key)
                            .map(|v| (self.timestamp_of(&t.entry), t.key.clone(), v))
                    })
                    .collect();
                add.sort();
                add.dedup_by(|a, b| a.1 == b.1 && a.2.eq_ignore_ascii_case(&b.2));
                add.into_iter().map(|(_, k, v)| (k, v)).collect()
            })
            .collect()
    }

    /// The latest revision's cover subject, or its first patch's.
    fn subject(&self, series: EntryId) -> String {
        self.latest(series)
            .and_then(|(_, r)| {
                r.cover
                    .as_ref()
                    .map(|c| c.subject.clone())
                    .or_else(|| r.patches.first().map(|p| p.subject.clone()))
            })
            .unwrap_or_default()
    }

    fn evaluate_with(
        &self,
        series: EntryId,
        project: (EntryId, &Project, Option<IdentityId>),
        maintainers: Option<&tagline_review::maintainers::Maintainers>,
        now: u64,
    ) -> Result<Evaluation> {
        let policy = Policy::parse(&project.1.policy)
            .with_context(|| format!("project {}", project.1.name))?;
        let ctx = ProjectContext {
            id: project.0,
            lead: project.2,
            decl: project.1,
            policy: &policy,
            maintainers_file: maintainers,
        };
        Ok(evaluate(series, &self.inputs(), &ctx, &self.registry, now))
    }
}

pub(crate) fn publish(
    home_dir: &Path,
    store: &Store,
    p: &ReviewPayload,
    force: bool,
) -> Result<EntryId> {
    let key = home::load_key(home_dir)?;
    let entries = ident::append_own(
        home_dir,
        store,
        &key,
        vec![(p.type_name().to_string(), p.encode())],
        force,
    )?;
    entries
        .first()
        .map(|e| e.signed.id())
        .context("nothing was appended")
}

fn identities(list: &[String]) -> Result<Vec<IdentityId>> {
    list.iter()
        .map(|s| {
            s.parse::<IdentityId>()
                .with_context(|| format!("{s:?} is not an identity id (tli1…)"))
        })
        .collect()
}

/// Options of `tagline project create`.
#[derive(Debug)]
pub struct ProjectArgs {
    pub name: String,
    pub branch: String,
    pub repositories: Vec<String>,
    pub policy: Option<std::path::PathBuf>,
    pub maintainers: Vec<String>,
    pub reviewers: Vec<String>,
    pub committers: Vec<String>,
    pub ci: Vec<String>,
    pub gates: Vec<String>,
    pub bridges: Vec<String>,
    pub lists: Vec<String>,
    pub maintainers_file: bool,
}

pub fn project_create(
    home_dir: &Path,
    a: ProjectArgs,
    amends: Option<&str>,
    force: bool,
) -> Result<()> {
    let policy = match &a.policy {
        Some(p) => {
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?
        }
        None => String::new(),
    };
    Policy::parse(&policy).with_context(|| {
        format!(
            "refusing the policy in {}",
            a.policy
                .as_ref()
                .map_or("(none)".into(), |p| p.display().to_string())
        )
    })?;
    let ci =
        a.ci.iter()
            .map(|s| {
                let (id, contexts) = s
                    .split_once(':')
                    .with_context(|| format!("--ci {s:?}: expected IDENTITY:CONTEXT[,CONTEXT…]"))?;
                Ok(CiRole {
                    identity: id
                        .parse()
                        .with_context(|| format!("--ci {s:?}: {id:?} is not an identity id"))?,
                    contexts: contexts.split(',').map(str::to_string).collect(),
                })
            })
            .collect::<Result<Vec<_>>>()?;
    let decl = Project {
        name: a.name,
        repositories: a.repositories,
        branch: a.branch,
        policy,
        maintainers: identities(&a.maintainers)?,
        committers: identities(&a.committers)?,
        reviewers: identities(&a.reviewers)?,
        maintainers_file: a.maintainers_file,
        bridges: identities(&a.bridges)?,
        ci,
        gates: identities(&a.gates)?,
        lists: a.lists,
        amends: None,
    };
    let store = home::open_store(home_dir)?;
    let mut decl = decl;
    let mut as_maintainer = false;
    if let Some(p) = amends {
        let w = world(&store)?;
        let (id, current, lead) = w.project(Some(p))?;
        let me = home::identity(home_dir)?;
        if lead.is_none() || lead != me {
            let quorum = tagline_review::project::quorum_of(current);
            let maintainer = me.is_some_and(|m| current.maintainers.contains(&m));
            if !maintainer || quorum == 0 {
                bail!(
                    "only the project's lead can amend it (or {} declared maintainers together, when the policy's [amend] maintainer_quorum allows; it is {quorum})",
                    if quorum == 0 {
                        "N".to_string()
                    } else {
                        quorum.to_string()
                    }
                );
            }
            as_maintainer = true;
        }
        decl.amends = Some(id);
    }
    let id = publish(
        home_dir,
        &store,
        &ReviewPayload::Project(decl.clone()),
        force,
    )?;
    match amends {
        Some(_) if as_maintainer => {
            // Only the project's own entries: no second scan of every review entry.
            let pid = decl.amends.context("an amendment names its project")?;
            let w = world_of(&store, project_entries(&store, &pid)?)?;
            let r = w
                .resolved_projects()
                .into_iter()
                .find(|r| Some(r.id) == decl.amends)
                .context("the project vanished while amending it")?;
            if r.applied.last() == Some(&id) {
                println!(
                    "amended project {} ({id}): the maintainers' quorum is reached",
                    decl.name
                );
            } else if let Some(p) = r.pending.iter().find(|p| p.entries.contains(&id)) {
                println!(
                    "proposed an amendment of project {} ({id}): {} of {} maintainers support it",
                    decl.name,
                    p.supporters.len(),
                    p.needed
                );
            } else {
                println!(
                    "published {id}, but it does not amend project {}",
                    decl.name
                );
            }
        }
        Some(_) => println!("amended project {} ({id})", decl.name),
        None => println!("project {} {id}", decl.name),
    }
    Ok(())
}

/// A project's id from its full id, its name or an id prefix this node knows.
pub fn project_id(home_dir: &Path, arg: &str) -> Result<EntryId> {
    project_id_in(&*home::open_store(home_dir)?, arg)
}

/// [`project_id`] in a store already open.
pub fn project_id_in(store: &Store, arg: &str) -> Result<EntryId> {
    let w = world_of(store, store.review_entries()?)?;
    Ok(w.project(Some(arg))?.0)
}

pub fn project_show(home_dir: &Path, project: Option<&str>, as_json: bool) -> Result<()> {
    let store = home::open_store(home_dir)?;
    let w = world(&store)?;
    let (id, _, _) = w.project(project)?;
    let r = w
        .resolved_projects()
        .into_iter()
        .find(|r| r.id == id)
        .context("the project vanished")?;
    let d = r.decl;
    let ids = |v: &[IdentityId]| v.iter().map(|i| i.to_string()).collect::<Vec<_>>();
    if as_json {
        println!(
            "{}",
            json!({
                "project": id.to_string(),
                "name": d.name,
                "lead": r.lead.map(|l| l.to_string()),
                "branch": d.branch,
                "repositories": d.repositories,
                "lists": d.lists,
                "policy": d.policy,
                "maintainers": ids(&d.maintainers),
                "reviewers": ids(&d.reviewers),
                "committers": ids(&d.committers),
                "maintainers_file": d.maintainers_file,
                "bridges": ids(&d.bridges),
                "gates": ids(&d.gates),
                "ci": d.ci.iter().map(|c| json!({"identity": c.identity.to_string(), "contexts": c.contexts})).collect::<Vec<_>>(),
                "applied": r.applied.iter().map(|x| x.to_string()).collect::<Vec<_>>(),
                "pending": r.pending.iter().map(|p| json!({"entries": p.entries.iter().map(|x| x.to_string()).collect::<Vec<_>>(), "supporters": p.supporters.iter().map(|x| x.to_string()).collect::<Vec<_>>(), "needed": p.needed})).collect::<Vec<_>>(),
                "ignored": r.ignored.iter().map(|(x, why)| json!({"entry": x.to_string(), "reason": why})).collect::<Vec<_>>(),
            })
        );
        return Ok(());
    }
    let name = |i: &IdentityId| {
        w.registry
            .identities
            .get(i)
            .and_then(|x| x.name.clone())
            .map_or_else(|| i.to_string(), |n| format!("{n} ({})", i.short()))
    };
    let names = |v: &[IdentityId]| v.iter().map(name).collect::<Vec<_>>().join(", ");
    println!("project {}  {id}", d.name);
    println!(
        "lead        {}",
        r.lead.as_ref().map_or("(unknown)".into(), name)
    );
    println!("branch      {}", d.branch);
    for (label, v) in [("repository", &d.repositories), ("list", &d.lists)] {
        for x in v {
            println!("{label:<11} {x}");
        }
    }
    for (label, v) in [
        ("maintainers", &d.maintainers),
        ("reviewers", &d.reviewers),
        ("committers", &d.committers),
        ("bridges", &d.bridges),
        ("gates", &d.gates),
    ] {
        if !v.is_empty() {
            println!("{label:<11} {}", names(v));
        }
    }
    if d.maintainers_file {
        println!("maintainers also from the MAINTAINERS file at each series' base");
    }
    for c in &d.ci {
        println!(
            "ci          {}: {}",
            name(&c.identity),
            c.contexts.join(", ")
        );
    }
    println!("amendments  {} applied", r.applied.len());
    for p in &r.pending {
        println!(
            "proposal    {} of {} maintainers ({}): {}",
            p.supporters.len(),
            p.needed,
            p.supporters.iter().map(name).collect::<Vec<_>>().join(", "),
            p.entries.first().map(|e| e.short()).unwrap_or_default()
        );
    }
    for (x, why) in &r.ignored {
        println!("ignored     {}: {why}", x.short());
    }
    if d.policy.trim().is_empty() {
        println!("policy      (the default policy: docs/policy.md)");
    } else {
        println!("policy:");
        for l in d.policy.lines() {
            println!("    {l}");
        }
    }
    Ok(())
}

/// A parsed `git format-patch` mail.
struct PatchMail {
    subject: String,
    version: Option<u64>,
    index: Option<(u64, u64)>,
    author: String,
    message: String,
    diff: String,
    raw: String,
}

/// Splits `[PATCH v2 1/3] subject` into its tags and the subject.
fn split_subject(s: &str) -> (Option<u64>, Option<(u64, u64)>, String) {
    let mut rest = s.trim();
    let (mut version, mut index) = (None, None);
    while let Some(inner) = rest.strip_prefix('[') {
        let Some(end) = inner.find(']') else { break };
        for word in inner.get(..end).unwrap_or("").split_whitespace() {
            if let Some(v) = word.strip_prefix(['v', 'V']).and_then(|v| v.parse().ok()) {
                version = Some(v);
            } else if let Some((k, n)) = word.split_once('/')
                && let (Ok(k), Ok(n)) = (k.parse(), n.parse())
            {
                index = Some((k, n));
            }
        }
        rest = inner.get(end + 1..).unwrap_or("").trim_start();
    }
    (version, index, rest.to_string())
}

fn parse_patch_mail(path: &str) -> Result<PatchMail> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
    let msg = mail_parser::MessageParser::default()
        .parse(&bytes)
        .with_context(|| format!("{path} is not a mail"))?;
    let subject = msg
        .subject()
        .with_context(|| format!("{path} has no Subject"))?;
    let from = msg
        .from()
        .and_then(|a| a.first())
        .with_context(|| format!("{path} has no From"))?;
    let author = match from.name() {
        Some(n) => format!("{n} <{}>", from.address().unwrap_or("")),
        None => from.address().unwrap_or("").to_string(),
    };
    let body = msg.body_text(0).map(|b| b.into_owned()).unwrap_or_default();
    let (message, after) = match body.find("\n---\n") {
        Some(i) => (
            body.get(..i).unwrap_or("").to_string(),
            body.get(i + 5..).unwrap_or("").to_string(),
        ),
        None => (body.clone(), String::new()),
    };
    let diff_start = after
        .find("diff --git ")
        .or_else(|| after.find("--- "))
        .unwrap_or(after.len());
    let mut diff = after.get(diff_start..).unwrap_or("").to_string();
    if let Some(sig) = diff.rfind("\n-- \n") {
        diff.truncate(sig + 1);
    }
    let (version, index, subject) = split_subject(subject);
    Ok(PatchMail {
        subject,
        version,
        index,
        author,
        message: message.trim_end().to_string() + "\n",
        diff,
        raw: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

/// Options of `tagline submit`.
#[derive(Debug, Default, clap::Args)]
pub struct SubmitArgs {
    /// Project name or id [default: the only project known]
    #[arg(long)]
    pub project: Option<String>,
    /// Version [default: from the subjects, else 1]
    #[arg(long)]
    pub version: Option<u64>,
    /// The series this revises (id prefix; see `tagline series`), for v2 and later
    #[arg(long)]
    pub series: Option<String>,
    /// A git repository to take a RANGE from [default: the current directory]
    #[arg(long, value_name = "PATH")]
    pub repo: Option<std::path::PathBuf>,
    /// A cover letter: its first line is the subject, the rest the body
    #[arg(long, value_name = "FILE")]
    pub cover: Option<std::path::PathBuf>,
}

/// Turns a revision range into format-patch files (with `--base`), in a
/// temporary directory that lives as long as the returned guard.
fn format_range(repo: &Path, range: &str) -> Result<(tempfile::TempDir, Vec<String>)> {
    let dir = tempfile::Builder::new()
        .prefix("tagline-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let git = tagline_git::Git::open(repo, tagline_git::Committer::default())?;
    let out = dir.path().display().to_string();
    let format_patch = |base: &[&str]| {
        git.run(
            repo,
            &[&["format-patch", "-q"], base, &["-o", &out, range]].concat(),
            None,
        )
    };
    let files = || -> Result<Vec<String>> {
        let mut files: Vec<String> = std::fs::read_dir(dir.path())?
            .filter_map(|e| e.ok())
            .map(|e| e.path().display().to_string())
            .collect();
        files.sort();
        Ok(files)
    };
    // --base=auto needs an upstream. Without one, the base is the parent
    // of the range's first commit (named on the first patch's "From SHA"
    // line), so that maintainers and the CI runner still know where the
    // series applies; a series that starts at a root commit has none.
    if format_patch(&["--base=auto"]).is_err() {
        format_patch(&[])?;
        let parent = files()?
            .first()
            .and_then(|f| first_commit(Path::new(f)))
            .and_then(|c| git.rev_parse(&format!("{c}^")).ok());
        if let Some(base) = parent {
            for f in files()? {
                std::fs::remove_file(&f).with_context(|| format!("cannot remove {f}"))?;
            }
            format_patch(&[&format!("--base={base}")])?;
        }
    }
    let files = files()?;
    if files.is_empty() {
        bail!("the range {range} holds no commits");
    }
    Ok((dir, files))
}

/// The commit a `git format-patch` file was made from: the hash on its
/// first line, `From SHA Mon Sep 17 00:00:00 2001`.
fn first_commit(patch: &Path) -> Option<String> {
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(std::fs::File::open(patch).ok()?),
        &mut line,
    )
    .ok()?;
    let sha = line.strip_prefix("From ")?.split(' ').next()?;
    (sha.len() >= 40 && sha.bytes().all(|b| b.is_ascii_hexdigit())).then(|| sha.to_string())
}

pub fn submit(home_dir: &Path, a: SubmitArgs, inputs: &[String], force: bool) -> Result<()> {
    let (project, version, series) = (a.project.as_deref(), a.version, a.series.as_deref());
    let store = home::open_store(home_dir)?;
    let mut w = world(&store)?;
    let (project_id, decl, _) = w.project(project)?;
    let decl = decl.clone();
    // One argument that is not a file: a revision range.
    let mut _guard = None;
    let files: Vec<String> = match inputs {
        [one] if !Path::new(one).exists() => {
            let repo = a
                .repo
                .clone()
                .unwrap_or_else(|| std::path::PathBuf::from("."));
            let (dir, files) = format_range(&repo, one)?;
            _guard = Some(dir);
            files
        }
        _ => inputs.to_vec(),
    };
    let files = &files[..];
    let mut mails = files
        .iter()
        .map(|f| parse_patch_mail(f))
        .collect::<Result<Vec<_>>>()?;
    mails.sort_by_key(|m| m.index.map_or(u64::MAX, |(k, _)| k));
    let (covers, patches): (Vec<PatchMail>, Vec<PatchMail>) = mails
        .into_iter()
        .partition(|m| m.index.is_some_and(|(k, _)| k == 0));
    if patches.is_empty() {
        bail!(
            "no patches among {} (a cover letter alone is not a series)",
            files.join(" ")
        );
    }
    let revised = series.map(|s| w.series(s)).transpose()?.map(|(id, _)| id);
    // A revision of a series whose subjects carry no version follows the
    // latest one held.
    let version = version
        .or_else(|| patches.first().and_then(|p| p.version))
        .or_else(|| {
            revised
                .and_then(|id| w.latest(id))
                .map(|(_, r)| r.version + 1)
        })
        .unwrap_or(1);
    let series_id = match (revised, version) {
        (Some(s), _) => Some(s),
        (None, 1) => None,
        (None, v) => {
            bail!("this is v{v}: name the series it revises with --series (see `tagline series`)")
        }
    };
    let mut out = Vec::new();
    for p in &patches {
        let patch_id = tagline_review::patchid::stable(&p.raw)
            .with_context(|| format!("no diff in the patch {:?}", p.subject))?;
        out.push(Patch {
            subject: p.subject.clone(),
            message: p.message.clone(),
            author: p.author.clone(),
            diff: p.diff.clone(),
            patch_id,
        });
    }
    let cover = match &a.cover {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            let (subject, body) = text.split_once('\n').unwrap_or((text.as_str(), ""));
            Some(Cover {
                subject: subject.trim().to_string(),
                body: body.trim_start_matches('\n').to_string(),
            })
        }
        None => covers.first().map(|c| Cover {
            subject: c.subject.clone(),
            body: c.message.clone(),
        }),
    };
    // `git format-patch --base` writes "base-commit: SHA" after the patches.
    let base_commit = covers.iter().chain(patches.iter()).find_map(|m| {
        m.raw
            .lines()
            .find_map(|l| {
                l.strip_prefix("base-commit: ")
                    .map(|b| b.trim().to_string())
            })
            .filter(|b| b.len() >= 7 && b.bytes().all(|c| c.is_ascii_hexdigit()))
    });
    let rev = Revision {
        project: project_id,
        series: series_id,
        version,
        base_commit,
        cover,
        changelog: None,
        patches: out,
        change_id: None,
        mails: None,
    };
    let id = publish(home_dir, &store, &ReviewPayload::Revision(rev), force)?;
    // Every other series is numbered already (by `world`): number the new one.
    add_numbers(home_dir, &mut w.numbers, [series_id.unwrap_or(id)])?;
    let number = w.number_of(series_id.unwrap_or(id));
    println!(
        "series {} v{version} ({} patches) in {}",
        series_id.unwrap_or(id),
        patches.len(),
        decl.name
    );
    println!("revision {id}");
    println!("number #{number} (`tagline status {number}`)");
    Ok(())
}

/// `Name <first claimed address>` of this device's identity, for trailers.
fn signature(home_dir: &Path, w: &World) -> Result<String> {
    let id =
        home::identity(home_dir)?.context("this device has no identity (run `tagline init`)")?;
    let ident = w.registry.identities.get(&id);
    let name = ident
        .and_then(|i| i.name.clone())
        .unwrap_or_else(|| id.short());
    Ok(match ident.and_then(|i| i.emails.first()) {
        Some(e) => format!("{name} <{}>", e.address),
        None => name,
    })
}

/// Options of `tagline review`.
#[derive(Debug)]
pub struct ReviewArgs {
    pub series: String,
    pub patch: Option<u64>,
    pub trailers: Vec<&'static str>,
    pub comment: Option<String>,
    pub retract: Option<String>,
}

pub fn review(home_dir: &Path, a: ReviewArgs, force: bool) -> Result<()> {
    let store = home::open_store(home_dir)?;
    let w = world(&store)?;
    let (series, _) = w.series(&a.series)?;
    let (latest, rev) = w
        .latest(series)
        .context("the series has no revision here")?;
    if let Some(k) = a.patch
        && (k == 0 || k > rev.patches.len() as u64)
    {
        bail!(
            "patch {k} does not exist: v{} has patches 1 to {}",
            rev.version,
            rev.patches.len()
        );
    }
    if a.trailers.is_empty() && a.comment.is_none() && a.retract.is_none() {
        bail!(
            "nothing to say: give --reviewed-by, --acked-by, --tested-by, --nacked-by, --comment or --retract"
        );
    }
    let sig = signature(home_dir, &w)?;
    let retracts = match &a.retract {
        Some(r) => Some(
            w.entries
                .iter()
                .map(|(e, _)| e.signed.id())
                .find(|id| id.to_string().starts_with(r.as_str()))
                .with_context(|| format!("no review {r:?} is known here"))?,
        ),
        None => None,
    };
    let p = Review {
        revision: latest,
        patch: a.patch,
        trailers: a
            .trailers
            .iter()
            .map(|k| (k.to_string(), sig.clone()))
            .collect(),
        comment: a.comment,
        inline: Vec::new(),
        retracts,
        mail: None,
        flagged: Vec::new(),
    };
    let id = publish(home_dir, &store, &ReviewPayload::Review(p), force)?;
    println!(
        "review {id} on v{}{}",
        rev.version,
        a.patch.map(|k| format!(" patch {k}")).unwrap_or_default()
    );
    Ok(())
}

pub fn ci_report(
    home_dir: &Path,
    series: &str,
    context: &str,
    status: &str,
    summary: Option<String>,
    log: Option<&Path>,
    force: bool,
) -> Result<()> {
    let status = CiStatus::parse(status).with_context(|| {
        format!("{status:?} is not a CI status (pending, pass, warning, fail, error)")
    })?;
    let store = home::open_store(home_dir)?;
    let w = world(&store)?;
    let (series, _) = w.series(series)?;
    let (latest, rev) = w
        .latest(series)
        .context("the series has no revision here")?;
    let (excerpt, hash) = match log {
        Some(p) => {
            let file =
                std::fs::File::open(p).with_context(|| format!("cannot read {}", p.display()))?;
            let log = crate::cilog::LogSummary::read(file)
                .with_context(|| format!("cannot read {}", p.display()))?;
            (Some(log.excerpt), Some(log.hash))
        }
        None => (None, None),
    };
    let p = CiResult {
        revision: latest,
        context: context.to_string(),
        status,
        summary: summary.unwrap_or_default(),
        log_excerpt: excerpt,
        log_hash: hash,
        runner: None,
        duration_ms: None,
        url: None,
    };
    let id = publish(home_dir, &store, &ReviewPayload::Ci(p), force)?;
    println!(
        "ci {context}: {} on v{} ({id})",
        status.as_str(),
        rev.version
    );
    Ok(())
}

/// What a CI runner needs of a project: its name, target branch, the
/// latest revision of each of its series, and the statuses the runner
/// already published in its context.
pub(crate) struct CiWork {
    pub name: String,
    pub branch: String,
    /// (revision id, revision), oldest series first.
    pub revisions: Vec<(EntryId, Revision)>,
    /// Per revision, the results `me` published in the context: (entry,
    /// status) each.
    pub mine: std::collections::BTreeMap<EntryId, Vec<(EntryId, CiStatus)>>,
}

pub(crate) fn ci_work(
    store: &Store,
    project: &str,
    me: &tagline_format::PublicKey,
    context: &str,
) -> Result<CiWork> {
    let w = world(store)?;
    let (pid, decl, _) = w.project(Some(project))?;
    let revisions = w
        .project_series(pid)
        .into_iter()
        .filter_map(|s| w.latest(s).map(|(id, r)| (id, r.clone())))
        .collect();
    Ok(CiWork {
        name: decl.name.clone(),
        branch: decl.branch.clone(),
        revisions,
        mine: w.ci_by(me, context),
    })
}

/// A series the gate may merge: its latest revision, approved by the rules.
pub(crate) struct Approved {
    pub series: EntryId,
    pub revision: EntryId,
    pub rev: Revision,
    /// Per patch, the counted trailers to put into its commit message.
    pub trailers: Vec<Vec<(String, String)>>,
    /// The entries the decision used: the revision, every counted trailer's
    /// review and every rule's entries.
    pub cites: Vec<EntryId>,
    /// When the revision was written (its commits' author date).
    pub date: String,
}

/// What the gate needs of a project: its target branch, the series the
/// rules approve (oldest first), and the revisions `me` recorded merges of.
pub(crate) struct GateWork {
    pub branch: String,
    pub approved: Vec<Approved>,
    pub merged_by_me: std::collections::BTreeSet<EntryId>,
    /// `me`'s CI results of context `gate_context` by revision, (entry,
    /// status) each: passes are its tests of merge results, anything but
    /// `pending` or `pass` a series found at fault or not applying.
    pub reported_by_me: std::collections::BTreeMap<EntryId, Vec<(EntryId, CiStatus)>>,
    /// The policy asks the gate to test the merge result (`gate.retest`).
    pub retest: bool,
}

impl GateWork {
    /// Whether `me` reported `revision` at fault (it is not tried again).
    pub fn refused(&self, revision: &EntryId) -> bool {
        self.reported_by_me.get(revision).is_some_and(|rs| {
            rs.iter()
                .any(|(_, s)| !matches!(s, CiStatus::Pending | CiStatus::Pass))
        })
    }

    /// `me`'s passing results on `revision`: its tests of merge results.
    pub fn passes(&self, revision: &EntryId) -> impl Iterator<Item = EntryId> + '_ {
        self.reported_by_me
            .get(revision)
            .into_iter()
            .flatten()
            .filter(|(_, s)| *s == CiStatus::Pass)
            .map(|(e, _)| *e)
    }
}

pub(crate) fn gate_work(
    store: &Store,
    project: &str,
    repo: Option<&Path>,
    me: &tagline_format::PublicKey,
    gate_context: &str,
    now: u64,
) -> Result<GateWork> {
    let w = world(store)?;
    let project = w.project(Some(project))?;
    let series = w.project_series(project.0);
    let merged_by_me = w
        .entries
        .iter()
        .filter_map(|(e, p)| match p {
            ReviewPayload::Merge(m) if e.signed.author() == me => Some(m.revision),
            _ => None,
        })
        .collect();
    let reported_by_me = w.ci_by(me, gate_context);
    let retest =
        tagline_review::policy::Policy::parse(&project.1.policy).is_ok_and(|p| p.gate.retest);
    let mut approved = Vec::new();
    for s in series {
        let Some((revision, rev)) = w.latest(s) else {
            continue;
        };
        let maintainers = match (repo, project.1.maintainers_file) {
            (Some(r), true) => Some(maintainers_at(r, rev.base_commit.as_deref())?.0),
            _ => None,
        };
        let e = w.evaluate_with(s, project, maintainers.as_ref(), now)?;
        if e.state != tagline_review::rules::State::Approved {
            continue;
        }
        let mut cites: Vec<EntryId> = vec![revision];
        cites.extend(e.trailers.iter().map(|t| t.entry));
        cites.extend(e.rules.iter().flat_map(|r| r.entries.iter().copied()));
        let mut seen = std::collections::HashSet::new();
        cites.retain(|c| seen.insert(*c));
        approved.push(Approved {
            series: s,
            revision,
            trailers: w.am_trailers(&e, rev.patches.len()),
            rev: rev.clone(),
            cites,
            date: rfc2822(w.timestamp_of(&revision)),
        });
    }
    Ok(GateWork {
        branch: project.1.branch.clone(),
        approved,
        merged_by_me,
        reported_by_me,
        retest,
    })
}

/// MAINTAINERS at `base` (or `HEAD`) of the repository at `repo`, read with
/// git, with the tree's directories for get_maintainer.pl's directory rule,
/// and the flavour its text shows.
pub(crate) fn maintainers_at(
    repo: &Path,
    base: Option<&str>,
) -> Result<(
    tagline_review::maintainers::Maintainers,
    tagline_review::maintainers::Flavor,
)> {
    let rev = base.unwrap_or("HEAD");
    let git = tagline_git::Git::open(repo, tagline_git::Committer::default())?;
    let text = git.read(&["show", &format!("{rev}:MAINTAINERS")])?;
    let dirs: std::collections::HashSet<String> = git
        .read(&["ls-tree", "-r", "-d", "--name-only", rev])?
        .lines()
        .map(str::to_string)
        .collect();
    let flavor = tagline_review::maintainers::Flavor::detect(&text);
    let m = tagline_review::maintainers::Maintainers::parse(&text, &flavor, &|p| dirs.contains(p));
    Ok((m, flavor))
}

/// The series `arg` names: a short number local to this node, or an id prefix.
fn resolve_series(store: &Store, home_dir: &Path, arg: &str) -> Result<EntryId> {
    let number = arg.trim_start_matches('#');
    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
        let find = || {
            read_numbers(home_dir)
                .into_iter()
                .find(|(n, _)| n.to_string() == number)
                .map(|(_, id)| id)
        };
        let found = match find() {
            Some(id) => Some(id),
            None => {
                // Number series this node has not numbered yet, then look again.
                number_series(store)?;
                find()
            }
        };
        return found.with_context(|| {
            format!("no series is numbered {number} on this node (see `tagline series`)")
        });
    }
    // A prefix is a range of the series index: no scan.
    let found: Vec<EntryId> = match EntryId::prefix_range(arg) {
        Some((lo, hi)) => store.series_in_range(&lo, &hi, usize::MAX)?,
        None => Vec::new(),
    };
    match found.as_slice() {
        [one] => Ok(*one),
        [] => {
            bail!("no series with an id starting with {arg:?} is known here (see `tagline series`)")
        }
        many => bail!(
            "{} series ids start with {arg:?}; give more characters",
            many.len()
        ),
    }
}

/// The world `status` needs, read through the series index: the series'
/// entries, its project's declaration and amendments, and the identities.
fn series_world(store: &Store, series: EntryId) -> Result<World> {
    // Each payload is decoded once: the project's id, the identities its
    // declarations name and the evaluation all read the decoded entries.
    let mut entries = decode_review(store.series_entries(&series)?);
    let pid = entries.iter().find_map(|(e, p)| match p {
        ReviewPayload::Revision(r) if e.signed.id() == series => Some(r.project),
        _ => None,
    });
    if let Some(pid) = pid {
        entries.extend(decode_review(project_entries(store, &pid)?));
    }
    let registry = partial_registry(store, &entries)?;
    Ok(World {
        entries,
        registry,
        numbers: Vec::new(),
    })
}

/// The part of the registry that evaluating these entries consults: the
/// owners of their authors, every identity a project entry among them names,
/// and the email closure (tagline-review's `consulted_keys`).
fn partial_registry(
    store: &Store,
    entries: &[(StoredEntry, ReviewPayload)],
) -> Result<Rc<Registry>> {
    let keys: std::collections::BTreeSet<tagline_format::PublicKey> =
        entries.iter().map(|(e, _)| *e.signed.author()).collect();
    let mut ids = std::collections::BTreeSet::new();
    for (_, p) in entries {
        if let ReviewPayload::Project(decl) = p {
            ids.extend(tagline_review::rules::declared_identities(decl, None));
        }
    }
    Ok(Rc::new(ident::registry_for(store, &keys, &ids)?))
}

pub fn status(
    home_dir: &Path,
    series: &str,
    project: Option<&str>,
    repo: Option<&Path>,
    as_json: bool,
) -> Result<()> {
    let store = home::open_store(home_dir)?;
    status_in(
        &store,
        series,
        project,
        repo,
        as_json,
        &mut std::io::stdout().lock(),
    )
}

/// Format of [`StatusView`] rows; a row of another format is recomputed.
const STATUS_FORMAT: u32 = 2;

/// What `tagline status` prints about a series, both ways, and what it was
/// computed from. The store keeps one per series (tagline-store's
/// `SERIES_STATUS`) and drops it when the series' entries change; the other
/// inputs are recorded here and checked before it is used
/// ([`StatusView::fresh`]), so a warm `status` reads one row instead of the
/// series' entries, its project and the identities.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct StatusView {
    format: u32,
    /// The store's identity digest (hex) when computed.
    identities: String,
    /// The series' project, and the mark of its amendments
    /// (`Store::references_mark`, hex).
    project: String,
    project_mark: String,
    /// The evaluation holds until then (ms; `None`: for ever).
    valid_until: Option<u64>,
    /// The project takes maintainers from MAINTAINERS (a view is computed
    /// without them; with `--repo` it is computed afresh).
    maintainers_file: bool,
    /// What `status --json` prints.
    json: String,
    /// What `status` prints.
    text: String,
}

impl StatusView {
    /// Still what computing it now would give: same format, identities and
    /// project amendments, within its validity, and computed as this call
    /// would compute it (no MAINTAINERS file to read).
    fn fresh(&self, identities: &str, now: u64, repo: bool, store: &Store) -> bool {
        self.format == STATUS_FORMAT
            && self.identities == identities
            && self.valid_until.is_none_or(|u| now < u)
            && !(self.maintainers_file && repo)
            && self.project.parse::<EntryId>().is_ok_and(|p| {
                store
                    .references_mark(&p)
                    .is_ok_and(|m| hex::encode(m) == self.project_mark)
            })
    }
}

/// The note `status` gives when it cannot read the maintainers MAINTAINERS names.
fn note_no_repo() {
    eprintln!(
        "note: the project takes maintainers from MAINTAINERS; pass --repo PATH to read it (project maintainers only meanwhile)"
    );
}

/// `tagline status` on an open store, writing to `out`.
///
/// A series' status is kept as a view in the store and used while it is
/// fresh (see [`StatusView`]): a `--project` other than the series' own is
/// always computed.
pub fn status_in(
    store: &Store,
    series: &str,
    project: Option<&str>,
    repo: Option<&Path>,
    as_json: bool,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let series = resolve_series(store, store.dir(), series)?;
    let now = home::now_ms();
    let stored = store.series_status(&series)?;
    let identities = hex::encode(stored.identity_digest);
    let view = match stored
        .view
        .and_then(|b| serde_json::from_slice::<StatusView>(&b).ok())
    {
        Some(v) if project.is_none() && v.fresh(&identities, now, repo.is_some(), store) => {
            if v.maintainers_file {
                note_no_repo();
            }
            v
        }
        _ => {
            let v = compute_status(store, series, project, repo, &identities, now)?;
            if project.is_none() && !(v.maintainers_file && repo.is_some()) {
                // Refused (and computed next time) if entries arrived meanwhile.
                store.put_series_status(stored.generation, &series, &serde_json::to_vec(&v)?)?;
            }
            v
        }
    };
    out.write_all(if as_json { &view.json } else { &view.text }.as_bytes())?;
    Ok(())
}

/// What `tagline status SERIES` costs when its stored view is stale: the
/// status computed from the entries, neither reading nor writing the view
/// (for the benchmarks).
pub fn status_computed_in(
    store: &Store,
    series: &str,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let series = resolve_series(store, store.dir(), series)?;
    let identities = hex::encode(store.identity_digest()?);
    let view = compute_status(store, series, None, None, &identities, home::now_ms())?;
    out.write_all(view.text.as_bytes())?;
    Ok(())
}

/// Computes a series' status from its entries, its project and the
/// identities, as of `now`. `identities` is the identity digest read before
/// (identities arriving meanwhile can only make the view look stale).
fn compute_status(
    store: &Store,
    series: EntryId,
    project: Option<&str>,
    repo: Option<&Path>,
    identities: &str,
    now: u64,
) -> Result<StatusView> {
    let w = series_world(store, series)?;
    let (series, first) = w.series(&series.to_string())?;
    // The mark before the declaration is resolved: an amendment arriving
    // meanwhile can only make the view look stale.
    let project_mark = hex::encode(store.references_mark(&first.project)?);
    let project = match project {
        Some(p) => w.project(Some(p))?,
        None => w
            .projects()
            .into_iter()
            .find(|(id, _, _)| *id == first.project)
            .context("the series' project is not known here (import its lead's feed)")?,
    };
    let maintainers = match (repo, project.1.maintainers_file) {
        (Some(r), true) => {
            let base = w
                .latest(series)
                .and_then(|(_, rev)| rev.base_commit.clone());
            Some(maintainers_at(r, base.as_deref())?.0)
        }
        (None, true) => {
            note_no_repo();
            None
        }
        _ => None,
    };
    let e = w.evaluate_with(series, project, maintainers.as_ref(), now)?;
    // CI results on the latest revision in contexts the policy does not
    // require (a gate's report on a series at fault, advisory bots): the
    // latest per context and author.
    let required: std::collections::HashSet<&str> = e
        .rules
        .iter()
        .filter_map(|r| r.rule.strip_prefix("ci:"))
        .collect();
    let latest_id = e.latest().map(|(_, id)| id);
    let mut other_ci: std::collections::BTreeMap<
        (String, tagline_format::PublicKey),
        (u64, EntryId, &CiResult),
    > = std::collections::BTreeMap::new();
    for (x, p) in &w.entries {
        if let ReviewPayload::Ci(c) = p
            && Some(c.revision) == latest_id
            && !required.contains(c.context.as_str())
        {
            let at = x.signed.header().timestamp;
            let slot = other_ci
                .entry((c.context.clone(), *x.signed.author()))
                .or_insert((at, x.signed.id(), c));
            if at >= slot.0 {
                *slot = (at, x.signed.id(), c);
            }
        }
    }
    let by_name = |key: &tagline_format::PublicKey| -> String {
        w.registry
            .owner_of(key)
            .map(|i| {
                w.registry
                    .identities
                    .get(&i)
                    .and_then(|x| x.name.clone())
                    .unwrap_or_else(|| i.short())
            })
            .unwrap_or_else(|| key.short())
    };
    // Addresses MAINTAINERS lists, by the id the rules count them under
    // when the policy counts such addresses.
    let listed: HashMap<IdentityId, String> = maintainers
        .iter()
        .flat_map(|m| &m.sections)
        .flat_map(|s| s.values('M').into_iter().chain(s.values('R')))
        .map(|v| {
            tagline_review::maintainers::parse_email(&v)
                .1
                .to_lowercase()
        })
        .map(|a| (tagline_review::rules::address_person(&a), a))
        .collect();
    let names = |i: &IdentityId| {
        w.registry
            .identities
            .get(i)
            .and_then(|x| x.name.clone())
            .or_else(|| {
                listed
                    .get(i)
                    .map(|a| format!("{a} (as MAINTAINERS lists it)"))
            })
            .unwrap_or_else(|| i.short())
    };
    let subject = w.subject(series);
    let json = json!({
        "series": series.to_string(),
        "project": project.0.to_string(),
        "state": e.state.as_str(),
        "version": e.latest().map(|(v, _)| v),
        "revision": latest_id.map(|id| id.to_string()),
        "subject": subject,
        "rules": e.rules.iter().map(|r| json!({"rule": r.rule, "outcome": r.outcome.as_str(), "message": r.message, "entries": r.entries.iter().map(|x| x.to_string()).collect::<Vec<_>>()})).collect::<Vec<_>>(),
        "trailers": e.trailers.iter().map(|t| json!({"patch": t.patch, "key": t.key, "identity": t.identity.to_string(), "entry": t.entry.to_string(), "carried_from": t.carried_from})).collect::<Vec<_>>(),
        "uncounted": e.uncounted.iter().map(|u| json!({"entry": u.entry.to_string(), "trailer": u.trailer, "reason": u.reason})).collect::<Vec<_>>(),
        "other_ci": other_ci.iter().map(|((context, by), (_, id, c))| json!({"context": context, "status": c.status.as_str(), "summary": c.summary, "by": by_name(by), "entry": id.to_string()})).collect::<Vec<_>>(),
    });
    let mut text = String::new();
    use std::fmt::Write as _;
    writeln!(text, "series {}  {}", series.short(), subject)?;
    writeln!(
        text,
        "project {}  v{}  state: {}",
        project.1.name,
        e.latest().map_or(0, |(v, _)| v),
        e.state.as_str()
    )?;
    for r in &e.rules {
        let mark = match r.outcome {
            Outcome::Held => "  ok     ",
            Outcome::Missing => "  MISSING",
            Outcome::Failed => "  FAILED ",
        };
        writeln!(text, "{mark} {:<15} {}", r.rule, r.message)?;
    }
    for t in &e.trailers {
        let carried = t
            .carried_from
            .map(|v| format!(" (carried from v{v}: patch unchanged)"))
            .unwrap_or_default();
        writeln!(
            text,
            "  patch {}: {}: {}{carried}",
            t.patch,
            t.key,
            names(&t.identity)
        )?;
    }
    for u in &e.uncounted {
        writeln!(text, "  not counted: {} ({})", u.trailer, u.reason)?;
    }
    for ((context, by), (_, _, c)) in &other_ci {
        writeln!(
            text,
            "  ci {context} (not required): {}: {} (by {})",
            c.status.as_str(),
            c.summary,
            by_name(by)
        )?;
    }
    Ok(StatusView {
        format: STATUS_FORMAT,
        identities: identities.to_string(),
        project: project.0.to_string(),
        project_mark,
        valid_until: e.valid_until,
        maintainers_file: project.1.maintainers_file,
        json: format!("{json}\n"),
        text,
    })
}

/// The maintainer's pre-filters of `tagline series`.
#[derive(Debug, Default, clap::Args)]
pub struct SeriesFilter {
    #[arg(long)]
    pub project: Option<String>,
    /// Only series in this state (posted, ci-failed, approved, merged, …)
    #[arg(long)]
    pub state: Option<String>,
    /// Only series touching a path matching GLOB (repeatable)
    #[arg(long, value_name = "GLOB")]
    pub path: Vec<String>,
    /// Only series by this author (name, address or identity id prefix)
    #[arg(long)]
    pub author: Option<String>,
    /// Only series whose subjects or messages mention K
    #[arg(long, value_name = "K")]
    pub keyword: Option<String>,
    /// Only series with this counted trailer, e.g. Tested-by or Tested-by:ci-bot (repeatable)
    #[arg(long, value_name = "TRAILER[:WHO]")]
    pub has: Vec<String>,
    /// Only series without it, e.g. "ignore until the build bot tested" (repeatable)
    #[arg(long, value_name = "TRAILER[:WHO]")]
    pub lacks: Vec<String>,
    /// Open series by others that you have not reviewed or acked yet
    #[arg(long)]
    pub needs_my_review: bool,
}

/// Format of [`Summary`] rows; a row of another format is recomputed.
const SUMMARY_FORMAT: u32 = 1;

/// What `tagline series` keeps per series in the store's summary table
/// (tagline-store's `SERIES_SUMMARY`), so that listing and filtering read one
/// small row per series instead of every entry. The store drops a row when
/// the series' entries change; the row itself records the other inputs of the
/// evaluation, and is used only while they are unchanged.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Summary {
    format: u32,
    /// The store's identity digest (hex) when computed.
    identities: String,
    /// The project and a hash of its declaration in force and lead.
    project: String,
    project_hash: String,
    /// The evaluation holds until then (ms; `None`: for ever).
    valid_until: Option<u64>,
    /// The first revision's timestamp.
    timestamp: u64,
    /// The series author's identity.
    author: Option<String>,
    version: u64,
    state: String,
    subject: String,
    /// Files the latest revision touches.
    files: Vec<String>,
    /// Counted trailers: (key, identity).
    trailers: Vec<(String, String)>,
}

/// A project as the summaries need it: the declaration in force, its lead,
/// and the hash that summaries record.
struct ProjectInfo {
    id: EntryId,
    decl: Project,
    lead: Option<IdentityId>,
    hash: String,
}

/// Resolves project `pid` from its declaration and amendments in the store.
fn load_project(
    store: &Store,
    registry: &Rc<Registry>,
    pid: EntryId,
) -> Result<Option<ProjectInfo>> {
    let w = world_with(project_entries(store, &pid)?, registry.clone());
    Ok(w.resolved_projects()
        .into_iter()
        .find(|r| r.id == pid)
        .map(|r| {
            let mut h = blake3::Hasher::new();
            h.update(&ReviewPayload::Project(r.decl.clone()).encode());
            h.update(r.lead.map_or([0u8; 32], |l| *l.0.as_bytes()).as_slice());
            ProjectInfo {
                id: pid,
                decl: r.decl.clone(),
                lead: r.lead,
                hash: h.finalize().to_hex().to_string(),
            }
        }))
}

/// Computes a series' summary from its entries (read through the indexes).
fn summarize(
    store: &Store,
    registry: &Rc<Registry>,
    projects: &mut HashMap<EntryId, Option<ProjectInfo>>,
    identities: &str,
    series: EntryId,
    now: u64,
) -> Result<Option<(EntryId, Summary)>> {
    // The project comes from `projects`: only the series' own entries are read.
    let w = world_with(store.series_entries(&series)?, registry.clone());
    let Some((first_entry, first)) = w.entries.iter().find_map(|(e, p)| match p {
        ReviewPayload::Revision(r) if e.signed.id() == series && r.series.is_none() => Some((e, r)),
        _ => None,
    }) else {
        return Ok(None);
    };
    let pid = first.project;
    if let std::collections::hash_map::Entry::Vacant(slot) = projects.entry(pid) {
        slot.insert(load_project(store, registry, pid)?);
    }
    let Some(Some(project)) = projects.get(&pid) else {
        return Ok(None);
    };
    let e = w.evaluate_with(series, (pid, &project.decl, project.lead), None, now)?;
    let latest = w.latest(series).map(|(_, r)| r);
    let mut files: Vec<String> = latest
        .iter()
        .flat_map(|r| r.patches.iter())
        .flat_map(|p| tagline_review::maintainers::files_of_patch(&p.diff))
        .collect();
    files.sort();
    files.dedup();
    Ok(Some((
        pid,
        Summary {
            format: SUMMARY_FORMAT,
            identities: identities.to_string(),
            project: pid.to_string(),
            project_hash: project.hash.clone(),
            valid_until: e.valid_until,
            timestamp: first_entry.signed.header().timestamp,
            author: w.identity_of(first_entry).map(|i| i.to_string()),
            version: e.latest().map_or(0, |(v, _)| v),
            state: e.state.as_str().to_string(),
            subject: w.subject(series),
            files,
            trailers: e
                .trailers
                .iter()
                .map(|t| (t.key.clone(), t.identity.to_string()))
                .collect(),
        },
    )))
}

/// Does identity `i` (text form) match `who` (a name, an address or an id prefix)?
fn summary_who(registry: &Registry, i: &str, who: &str) -> bool {
    let who = who.to_lowercase();
    if i.starts_with(&who) {
        return true;
    }
    i.parse::<IdentityId>().is_ok_and(|i| {
        registry.identities.get(&i).is_some_and(|x| {
            x.name
                .as_ref()
                .is_some_and(|n| n.to_lowercase().contains(&who))
                || x.emails.iter().any(|e| e.address.contains(&who))
        })
    })
}

/// `TRAILER[:WHO]` among a summary's counted trailers?
fn summary_has(registry: &Registry, s: &Summary, spec: &str) -> bool {
    let (key, who) = match spec.split_once(':') {
        Some((k, w)) => (k, Some(w)),
        None => (spec, None),
    };
    s.trailers.iter().any(|(k, i)| {
        k.eq_ignore_ascii_case(key) && who.is_none_or(|x| summary_who(registry, i, x))
    })
}

/// Does the series' latest revision mention `k` (lowercase) in a subject or message?
fn mentions(store: &Store, series: EntryId, k: &str) -> Result<bool> {
    let w = world_with(store.series_entries(&series)?, Rc::new(Registry::default()));
    Ok(w.latest(series).is_some_and(|(_, r)| {
        r.cover.as_ref().is_some_and(|c| {
            c.subject.to_lowercase().contains(k) || c.body.to_lowercase().contains(k)
        }) || r
            .patches
            .iter()
            .any(|p| p.subject.to_lowercase().contains(k) || p.message.to_lowercase().contains(k))
    }))
}

pub fn series_list(home_dir: &Path, f: SeriesFilter, as_json: bool) -> Result<()> {
    let store = home::open_store(home_dir)?;
    series_list_in(&store, &f, as_json, &mut std::io::stdout().lock())
}

/// `tagline series` on an open store, writing to `out`.
pub fn series_list_in(
    store: &Store,
    f: &SeriesFilter,
    as_json: bool,
    out: &mut impl std::io::Write,
) -> Result<()> {
    let home_dir = store.dir();
    let globs = {
        let mut b = globset::GlobSetBuilder::new();
        for g in &f.path {
            b.add(globset::Glob::new(g).with_context(|| format!("--path {g:?} is not a glob"))?);
        }
        b.build().context("cannot build the --path globs")?
    };
    let me = if f.needs_my_review {
        Some(
            home::identity(home_dir)?
                .context("--needs-my-review: this device has no identity")?
                .to_string(),
        )
    } else {
        None
    };
    // The digest first: identities changing meanwhile can only make the
    // summaries computed now look stale, never fresh.
    let identities = hex::encode(store.identity_digest()?);
    let registry = Rc::new(ident::registry(store)?);
    let now = home::now_ms();
    let (generation, rows) = store.series_summaries()?;
    let mut projects: HashMap<EntryId, Option<ProjectInfo>> = HashMap::new();
    // (series, project, summary)
    let mut summaries: Vec<(EntryId, EntryId, Summary)> = Vec::with_capacity(rows.len());
    let mut computed: Vec<(EntryId, Vec<u8>)> = Vec::new();
    for (id, bytes) in rows {
        let cached = bytes
            .and_then(|b| serde_json::from_slice::<Summary>(&b).ok())
            .filter(|s| {
                s.format == SUMMARY_FORMAT
                    && s.identities == identities
                    && s.valid_until.is_none_or(|u| now < u)
            });
        let fresh = match cached {
            Some(s) => {
                let pid: EntryId = s.project.parse().context("a stored summary's project id")?;
                if let std::collections::hash_map::Entry::Vacant(slot) = projects.entry(pid) {
                    slot.insert(load_project(store, &registry, pid)?);
                }
                let same = matches!(projects.get(&pid), Some(Some(p)) if p.hash == s.project_hash);
                same.then_some((pid, s))
            }
            None => None,
        };
        let (pid, summary) = match fresh {
            Some(x) => x,
            None => {
                let Some((pid, s)) =
                    summarize(store, &registry, &mut projects, &identities, id, now)?
                else {
                    continue;
                };
                computed.push((id, serde_json::to_vec(&s)?));
                (pid, s)
            }
        };
        summaries.push((id, pid, summary));
    }
    if !computed.is_empty() {
        // Refused (and recomputed next time) if entries arrived meanwhile.
        store.put_series_summaries(generation, &computed)?;
    }
    let numbers = number_series(store)?;
    let number_of = |id: EntryId| {
        numbers
            .iter()
            .find(|(_, x)| *x == id)
            .map_or(0, |(n, _)| *n)
    };
    let wanted: Option<Vec<EntryId>> = match f.project.as_deref() {
        Some(p) => {
            let ids: Vec<EntryId> = projects
                .values()
                .flatten()
                .filter(|x| x.decl.name == p || x.id.to_string().starts_with(p))
                .map(|x| x.id)
                .collect();
            if ids.is_empty() {
                bail!("no project named or with id {p:?} has series here");
            }
            Some(ids)
        }
        None => None,
    };
    let keyword = f.keyword.as_deref().map(str::to_lowercase);
    summaries.sort_by_key(|(id, _, s)| (std::cmp::Reverse(s.timestamp), *id));
    let mut rows = Vec::new();
    for (id, pid, s) in &summaries {
        if wanted.as_ref().is_some_and(|w| !w.contains(pid))
            || f.state.as_deref().is_some_and(|st| st != s.state)
            || (!f.path.is_empty() && !s.files.iter().any(|file| globs.is_match(file)))
        {
            continue;
        }
        if let Some(a) = &f.author
            && !s
                .author
                .as_deref()
                .is_some_and(|i| summary_who(&registry, i, a))
        {
            continue;
        }
        if !f.has.iter().all(|h| summary_has(&registry, s, h))
            || f.lacks.iter().any(|l| summary_has(&registry, s, l))
        {
            continue;
        }
        if let Some(me) = &me {
            let open = s.state == "posted" || s.state == "ci-failed";
            let mine = s
                .trailers
                .iter()
                .any(|(k, i)| i == me && (k == "Reviewed-by" || k == "Acked-by"));
            if !open || mine || s.author.as_ref() == Some(me) {
                continue;
            }
        }
        if let Some(k) = &keyword
            && !mentions(store, *id, k)?
        {
            continue;
        }
        let name = match projects.get(pid) {
            Some(Some(p)) => p.decl.name.clone(),
            _ => String::new(),
        };
        rows.push((*id, name, s));
    }
    if as_json {
        let v: Vec<_> = rows.iter().map(|(id, p, s)| json!({"number": number_of(*id), "series": id.to_string(), "project": p, "version": s.version, "state": s.state, "subject": s.subject})).collect();
        writeln!(out, "{}", json!(v))?;
    } else {
        for (id, p, s) in rows {
            writeln!(
                out,
                "#{:<4} {}  {:<10} v{:<3} {:<18} {}",
                number_of(id),
                id.short(),
                p,
                s.version,
                s.state,
                s.subject
            )?;
        }
    }
    Ok(())
}

/// A revision of a series by version (the latest when `None`).
fn revision(w: &World, series: EntryId, version: Option<u64>) -> Result<&Revision> {
    let mut revs: Vec<(u64, u64, EntryId, &Revision)> = w
        .entries
        .iter()
        .filter_map(|(e, p)| match p {
            ReviewPayload::Revision(r) if e.signed.id() == series || r.series == Some(series) => {
                Some((r.version, e.signed.header().timestamp, e.signed.id(), r))
            }
            _ => None,
        })
        .collect();
    revs.sort_by_key(|r| (r.0, r.1, r.2));
    match version {
        None => revs
            .last()
            .map(|r| r.3)
            .context("the series has no revision here"),
        Some(v) => revs
            .iter()
            .rev()
            .find(|r| r.0 == v)
            .map(|r| r.3)
            .with_context(|| {
                format!(
                    "no v{v} of this series is known here (versions: {})",
                    revs.iter()
                        .map(|r| format!("v{}", r.0))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
    }
}

/// `tagline show SERIES [--version N] [--full]`.
pub fn show(home_dir: &Path, series: &str, version: Option<u64>, full: bool) -> Result<()> {
    let store = home::open_store(home_dir)?;
    let w = world(&store)?;
    let (series, _) = w.series(series)?;
    let rev = revision(&w, series, version)?;
    println!(
        "series {}  v{}  {} patches",
        series.short(),
        rev.version,
        rev.patches.len()
    );
    if let Some(c) = &rev.cover {
        println!("\n{}\n\n{}", c.subject, c.body.trim_end());
    }
    if let Some(c) = &rev.changelog {
        println!("\nchangelog:\n{}", c.trim_end());
    }
    println!();
    for (k, p) in rev.patches.iter().enumerate() {
        let files = tagline_review::maintainers::files_of_patch(&p.diff);
        println!(
            "{:>3}  {}  ({}, patch-id {}, {} files)",
            k + 1,
            p.subject,
            p.author,
            p.patch_id.get(..12).unwrap_or(&p.patch_id),
            files.len()
        );
        if full {
            println!("\n{}\n---\n{}", p.message.trim_end(), p.diff);
        }
    }
    Ok(())
}

/// `tagline interdiff SERIES V1 V2`.
pub fn interdiff(home_dir: &Path, series: &str, v1: u64, v2: u64) -> Result<()> {
    let store = home::open_store(home_dir)?;
    let w = world(&store)?;
    let (series, _) = w.series(series)?;
    let old = revision(&w, series, Some(v1))?;
    let new = revision(&w, series, Some(v2))?;
    print!("{}", tagline_review::interdiff::render(old, new));
    Ok(())
}

/// RFC 2822 date of a timestamp in milliseconds (UTC).
pub(crate) fn rfc2822(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = home::civil(ms);
    let wd = DAYS
        .get(usize::try_from(c.days_since_epoch.rem_euclid(7)).unwrap_or(0))
        .unwrap_or(&"Thu");
    let mon = MONTHS
        .get(usize::try_from(c.month - 1).unwrap_or(0))
        .unwrap_or(&"Jan");
    format!(
        "{wd}, {} {mon} {} {:02}:{:02}:{:02} +0000",
        c.day, c.year, c.hour, c.minute, c.second
    )
}

/// Trailer keys `am` inserts (Nacked-by blocks a merge, it is not applied).
const AM_TRAILERS: [&str; 3] = ["Reviewed-by", "Acked-by", "Tested-by"];

/// `tagline am SERIES`: the latest revision as an mbox for `git am`, each
/// commit message carrying every counted trailer (after its own trailers, in
/// the order they were given, without duplicates).
pub fn am(home_dir: &Path, series: &str, output: Option<&Path>) -> Result<()> {
    let store = home::open_store(home_dir)?;
    let w = world(&store)?;
    let (series, first) = w.series(series)?;
    let project = w
        .projects()
        .into_iter()
        .find(|(id, _, _)| *id == first.project)
        .context("the series' project is not known here")?;
    let e = w.evaluate_with(series, project, None, home::now_ms())?;
    let (_, rev) = w
        .latest(series)
        .context("the series has no revision here")?;
    let (_, latest_entry) = e.latest().context("the series has no revision here")?;
    let n = rev.patches.len();
    let trailers = w.am_trailers(&e, n);
    let mbox = tagline_git::mbox::am_mbox(rev, &trailers, &rfc2822(w.timestamp_of(&latest_entry)));
    match output {
        Some(path) => {
            std::fs::write(path, &mbox)
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote {n} patches of v{} to {} ({} state)",
                rev.version,
                path.display(),
                e.state.as_str()
            );
        }
        None => print!("{mbox}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects() {
        assert_eq!(
            split_subject("[PATCH v3 02/07] x86: fix"),
            (Some(3), Some((2, 7)), "x86: fix".to_string())
        );
        assert_eq!(split_subject("[PATCH] x"), (None, None, "x".to_string()));
        assert_eq!(
            split_subject("[RFC PATCH net-next v2 1/3] y"),
            (Some(2), Some((1, 3)), "y".to_string())
        );
        assert_eq!(
            split_subject("[PATCH 0/2] cover"),
            (None, Some((0, 2)), "cover".to_string())
        );
    }
}
