//! `tagline gate`: merges the series the rules approve.
//!
//! For each approved series, oldest first: its latest revision is applied
//! with `git am -3` on the tip of the project's target branch in a
//! throw-away worktree (tagline-git), each commit message carrying the
//! counted trailers and a [`REVISION_TRAILER`] naming the revision; the
//! branch is moved (or pushed, fast-forward only) to the result; then a
//! `tagline/merge` entry records the commits and cites the entries the
//! decision used, so that every peer can check it.
//!
//! Restart-safe: a gate killed after moving the branch and before
//! publishing finds the revision's commits on the branch by their trailer
//! and publishes the merge entry for them, never merging twice.
//!
//! With `--batch N` and a check command (`-- CMD...`), up to N approved
//! series are applied together and the command run on the result; a batch
//! that fails is split in halves and each tried again on the branch as it
//! then is (as bors and Xen's push gate bisect), so the good series merge
//! and the one at fault is found. A series at fault (or one that does not
//! apply) gets a `tagline/ci` result of context [`GATE_CONTEXT`] from the
//! gate, which its author sees and the bridge mails to the list; the gate
//! does not try that revision again.
//!
//! With the policy's `[gate] retest`, the check command is required, and
//! its pass on the merge result is recorded (a `gate` CI result) before the
//! branch moves and cited by the merge entry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tagline_format::EntryId;
use tagline_format::review::{CiResult, CiStatus, Merge, ReviewPayload};
use tagline_git::{Committer, Git};

use crate::cilog::{CI_LOG_MAX_BYTES, LogSummary};
use crate::home;
use crate::reviewcmd::Approved;

/// The trailer that names, in each commit the gate made, the revision it
/// came from.
pub const REVISION_TRAILER: &str = "Tagline-Revision";
/// How far back on the branch the gate looks for its own commits.
pub const GATE_SCAN_COMMITS: usize = 1000;
/// How often the gate looks even when nothing was stored (time-based rules
/// such as a quiet period come due without a new entry), unless
/// `--interval`.
pub const GATE_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The CI context of the gate's own results: its tests of merge results
/// and its reports on series at fault.
pub const GATE_CONTEXT: &str = "gate";
/// For tests of the repair: the gate stops (exit 3) right after moving the
/// branch when this variable is `after-move`.
pub const FAILPOINT_ENV: &str = "TAGLINE_GATE_FAILPOINT";

/// Arguments of `tagline gate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GateArgs {
    /// The project (name or id)
    #[arg(long)]
    pub project: String,
    /// The repository whose target branch the gate moves (and whose
    /// MAINTAINERS the rules read when the project says so)
    #[arg(long, value_name = "PATH")]
    pub repo: PathBuf,
    /// Push the merged branch to this remote (fast-forward only) instead of
    /// only moving the local branch
    #[arg(long, value_name = "REMOTE")]
    pub push: Option<String>,
    /// Seconds between looks
    #[arg(long, default_value_t = GATE_POLL_INTERVAL.as_secs())]
    pub interval: u64,
    /// Merge what is approved now, then exit
    #[arg(long)]
    pub once: bool,
    /// Apply up to N approved series together and run the check command on
    /// the result (bisecting a failing batch)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// Time limit of the check command, e.g. 20m
    #[arg(long, value_parser = crate::cicmd::parse_duration, default_value = "1h")]
    pub check_timeout: Duration,
    /// A command run in the worktree with the series applied; exit 0 lets
    /// them merge (`-- make check`)
    #[arg(last = true, value_name = "CHECK")]
    pub check: Vec<String>,
}

/// Whether a commit message carries the trailer naming `revision`.
fn names_revision(message: &str, revision: &EntryId) -> bool {
    let needle = format!("{REVISION_TRAILER}: {revision}");
    message.lines().any(|l| l.trim() == needle)
}

/// The commits of `log` ((commit, message) pairs) whose message names
/// `revision`, in `log`'s order.
fn commits_of<'a>(
    log: impl Iterator<Item = &'a (String, String)>,
    revision: &EntryId,
) -> Vec<String> {
    log.filter(|(_, m)| names_revision(m, revision))
        .map(|(h, _)| h.clone())
        .collect()
}

fn publish_merge(
    home_dir: &Path,
    force: bool,
    revision: EntryId,
    commits: Vec<String>,
    branch: &str,
    cites: Vec<EntryId>,
) -> Result<EntryId> {
    let store = home::open_store(home_dir)?;
    crate::reviewcmd::publish(
        home_dir,
        &store,
        &ReviewPayload::Merge(Merge {
            revision,
            commits,
            branch: branch.to_string(),
            cites,
        }),
        force,
    )
}

/// The check command's summary and log, when it passed.
type Checked = (String, LogSummary);

/// Why a set of series did not make it.
enum Refusal {
    /// Series `0` (an index into the set) does not apply.
    Apply(usize, String),
    /// The check command failed on the whole set.
    Check(String, LogSummary),
}

/// What one look works with.
struct Look<'a> {
    home_dir: &'a Path,
    a: &'a GateArgs,
    force: bool,
    git: Git,
    branch: String,
    /// The policy asks for the merge result's test (`gate.retest`).
    retest: bool,
}

impl Look<'_> {
    /// `set` applied in order on `tip`, then the check: the result's head,
    /// and the check's summary and log when there is one.
    fn attempt(
        &self,
        tip: &str,
        set: &[&Approved],
    ) -> Result<std::result::Result<(String, Option<Checked>), Refusal>> {
        let wt = self.git.worktree(tip)?;
        for (i, ap) in set.iter().enumerate() {
            let trailers: Vec<Vec<(String, String)>> = ap
                .trailers
                .iter()
                .cloned()
                .chain(std::iter::repeat(Vec::new()))
                .take(ap.rev.patches.len())
                .map(|mut t| {
                    t.push((REVISION_TRAILER.to_string(), ap.revision.to_string()));
                    t
                })
                .collect();
            let mbox = tagline_git::mbox::am_mbox(&ap.rev, &trailers, &ap.date);
            if let Err(e) = wt.am(mbox.as_bytes()) {
                let said = match &e {
                    tagline_git::GitError::Failed { output, .. } => output.clone(),
                    other => other.to_string(),
                };
                return Ok(Err(Refusal::Apply(i, said)));
            }
        }
        let mut checked = None;
        if !self.a.check.is_empty() {
            let (status, summary, log) = crate::cicmd::run_command(
                wt.path(),
                &self.a.check,
                self.a.check_timeout,
                CI_LOG_MAX_BYTES,
                &[("TAGLINE_BASE", tip.to_string())],
            );
            if status != CiStatus::Pass {
                return Ok(Err(Refusal::Check(summary, log.summary)));
            }
            checked = Some((summary, log.summary));
        }
        Ok(Ok((wt.head()?, checked)))
    }

    /// Publishes a `gate` CI result on `ap`'s revision; its id.
    fn report(
        &self,
        ap: &Approved,
        status: CiStatus,
        summary: String,
        log: &LogSummary,
    ) -> Result<EntryId> {
        let excerpt = log.excerpt.clone();
        let store = home::open_store(self.home_dir)?;
        crate::reviewcmd::publish(
            self.home_dir,
            &store,
            &ReviewPayload::Ci(CiResult {
                revision: ap.revision,
                context: GATE_CONTEXT.to_string(),
                status,
                summary,
                log_excerpt: (!excerpt.is_empty()).then_some(excerpt),
                log_hash: (log.len > 0).then_some(log.hash),
                runner: Some("tagline gate".into()),
                duration_ms: None,
                url: None,
            }),
            self.force,
        )
    }

    /// Reports `ap` at fault with a `gate` CI result.
    fn refuse(
        &self,
        ap: &Approved,
        status: CiStatus,
        summary: String,
        log: &LogSummary,
    ) -> Result<()> {
        let id = self.report(ap, status, summary.clone(), log)?;
        println!(
            "{} v{}: not merged: {summary} ({id})",
            ap.series.short(),
            ap.rev.version
        );
        Ok(())
    }

    /// Merges what it can of `set` (in order), bisecting on failure.
    /// Returns how many merged.
    fn merge_set(&self, set: Vec<&Approved>) -> Result<usize> {
        if set.is_empty() {
            return Ok(0);
        }
        let branch = &self.branch;
        let tip = self.git.rev_parse(branch).with_context(|| {
            format!(
                "the target branch {branch} is not in {}",
                self.a.repo.display()
            )
        })?;
        match self.attempt(&tip, &set)? {
            Ok((head, checked)) => {
                // The merge result's test, recorded before the branch moves
                // (so that a merge found on the branch after a crash has
                // it), when the policy asks for it.
                let mut tested = Vec::new();
                if self.retest {
                    let (summary, log) = checked.unwrap_or_default();
                    for ap in &set {
                        tested.push(self.report(
                            ap,
                            CiStatus::Pass,
                            format!(
                                "merge result {} on {branch}: {summary}",
                                head.get(..12).unwrap_or(&head)
                            ),
                            &log,
                        )?);
                    }
                }
                let log = self.git.log_messages(&tip, &head)?;
                if let Some(remote) = &self.a.push {
                    self.git.push(remote, &head, branch)?;
                }
                self.git.move_branch(branch, &head, &tip)?;
                if std::env::var(FAILPOINT_ENV).as_deref() == Ok("after-move") {
                    eprintln!("{FAILPOINT_ENV}: stopping after moving {branch}");
                    std::process::exit(3);
                }
                for (i, ap) in set.iter().enumerate() {
                    let mut cites = ap.cites.clone();
                    cites.extend(tested.get(i));
                    let commits = commits_of(log.iter(), &ap.revision);
                    let id = publish_merge(
                        self.home_dir,
                        self.force,
                        ap.revision,
                        commits,
                        branch,
                        cites,
                    )?;
                    println!(
                        "{} v{}: merged into {branch} at {} ({id})",
                        ap.series.short(),
                        ap.rev.version,
                        head.get(..12).unwrap_or(&head)
                    );
                }
                Ok(set.len())
            }
            Err(Refusal::Apply(i, said)) => {
                let mut set = set;
                let culprit = set.remove(i.min(set.len().saturating_sub(1)));
                let on = if i == 0 {
                    branch.clone()
                } else {
                    format!("{branch} with the series before it in the batch")
                };
                self.refuse(
                    culprit,
                    CiStatus::Error,
                    format!("does not apply on {on}: {said}"),
                    &LogSummary::default(),
                )?;
                self.merge_set(set)
            }
            Err(Refusal::Check(summary, log)) if set.len() == 1 => {
                if let Some(ap) = set.first() {
                    self.refuse(
                        ap,
                        CiStatus::Fail,
                        format!("the gate's check on {branch}: {summary}"),
                        &log,
                    )?;
                }
                Ok(0)
            }
            Err(Refusal::Check(..)) => {
                let mut first = set;
                let second = first.split_off(first.len() / 2);
                let n = self.merge_set(first)?;
                Ok(n + self.merge_set(second)?)
            }
        }
    }
}

/// One look: merges every approved series not merged yet, in batches.
/// Returns how many merged (or were found merged).
fn look(home_dir: &Path, a: &GateArgs, force: bool) -> Result<usize> {
    let key = home::load_key(home_dir)?;
    let work = {
        let store = home::open_store(home_dir)?;
        crate::reviewcmd::gate_work(
            &store,
            &a.project,
            Some(&a.repo),
            &key.public(),
            GATE_CONTEXT,
            home::now_ms(),
        )?
    };
    let look = Look {
        home_dir,
        a,
        force,
        git: Git::open(
            &a.repo,
            Committer {
                name: "tagline gate".into(),
                email: "gate@tagline.invalid".into(),
            },
        )?,
        branch: work.branch.clone(),
        retest: work.retest,
    };
    anyhow::ensure!(
        !work.retest || !a.check.is_empty(),
        "the project's policy asks the gate to test each merge result ([gate] retest = true): give the test command after --, as in `tagline gate --project {} --repo {} -- make check`",
        a.project,
        a.repo.display()
    );
    let branch = &work.branch;
    let todo: Vec<&Approved> = work
        .approved
        .iter()
        .filter(|ap| !work.merged_by_me.contains(&ap.revision) && !work.refused(&ap.revision))
        .collect();
    if todo.is_empty() {
        return Ok(0);
    }
    // Before any work: `move_branch` would refuse at the end anyway.
    if let Some(worktree) = look.git.checked_out_at(branch)? {
        return Err(tagline_git::GitError::CheckedOut {
            branch: branch.clone(),
            worktree,
        }
        .into());
    }
    // The branch's recent commits, read once for every series' repair check.
    let recent = look.git.recent_messages(branch, GATE_SCAN_COMMITS)?;
    let mut merged = 0;
    let mut unmerged = Vec::new();
    for ap in todo {
        // Repair: already on the branch, the entry not published.
        // (`recent` is newest first; a merge lists its commits oldest first.)
        let on_branch = commits_of(recent.iter().rev(), &ap.revision);
        if !on_branch.is_empty() {
            let mut cites = ap.cites.clone();
            cites.extend(work.passes(&ap.revision));
            let id = publish_merge(home_dir, force, ap.revision, on_branch, branch, cites)?;
            println!(
                "{}: found on {branch} (a merge not recorded before): recorded ({id})",
                ap.series.short()
            );
            merged += 1;
            continue;
        }
        unmerged.push(ap);
    }
    let size = usize::try_from(a.batch).unwrap_or(1).max(1);
    for batch in unmerged.chunks(size) {
        merged += look.merge_set(batch.to_vec())?;
    }
    Ok(merged)
}

/// `tagline gate`: runs until killed; stopping at any point is safe. It
/// looks again as soon as the store was written and at least every
/// `--interval` seconds ([`home::watch`]).
pub fn run(home_dir: &Path, a: GateArgs, force: bool) -> Result<()> {
    let interval = Duration::from_secs(a.interval.max(1));
    home::watch(home_dir, interval, a.once, "nothing to merge", || {
        look(home_dir, &a, force)
    })
}
