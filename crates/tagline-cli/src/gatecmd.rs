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
//! Not yet: batches tested together and bisected, and CI re-run on the
//! merge result.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use tagline_format::EntryId;
use tagline_format::review::{Merge, ReviewPayload};
use tagline_git::{Committer, Git};

use crate::home;

/// The trailer that names, in each commit the gate made, the revision it
/// came from.
pub const REVISION_TRAILER: &str = "Tagline-Revision";
/// How far back on the branch the gate looks for its own commits.
pub const GATE_SCAN_COMMITS: usize = 1000;
/// How often the gate looks even when nothing was stored (time-based rules
/// such as a quiet period come due without a new entry), unless
/// `--interval`.
pub const GATE_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// How often the gate checks whether the store was written (its file's
/// size and modification time), to look again at once when it was.
pub const GATE_WATCH_STEP: Duration = Duration::from_millis(100);
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
}

/// The commits on `branch` (newest first, at most [`GATE_SCAN_COMMITS`])
/// whose message names `revision`, oldest first.
fn commits_of(git: &Git, branch: &str, revision: &EntryId) -> Result<Vec<String>> {
    let out = git.run(
        git.repo(),
        &[
            "log",
            &format!("-n{GATE_SCAN_COMMITS}"),
            "--format=%H%x00%B%x00",
            branch,
        ],
        None,
    )?;
    let text = String::from_utf8_lossy(&out);
    let mut parts = text.split('\0');
    let needle = format!("{REVISION_TRAILER}: {revision}");
    let mut found = Vec::new();
    while let (Some(h), Some(m)) = (parts.next(), parts.next()) {
        if m.lines().any(|l| l.trim() == needle) {
            found.push(h.trim().to_string());
        }
    }
    found.reverse();
    Ok(found)
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

/// One look: merges every approved series not merged yet. Returns how many.
fn look(home_dir: &Path, a: &GateArgs, force: bool) -> Result<usize> {
    let key = home::load_key(home_dir)?;
    let work = {
        let store = home::open_store(home_dir)?;
        crate::reviewcmd::gate_work(
            &store,
            &a.project,
            Some(&a.repo),
            &key.public(),
            home::now_ms(),
        )?
    };
    let git = Git::open(
        &a.repo,
        Committer {
            name: "tagline gate".into(),
            email: "gate@tagline.invalid".into(),
        },
    )?;
    let branch = &work.branch;
    let mut merged = 0;
    for ap in work.approved {
        if work.merged_by_me.contains(&ap.revision) {
            continue;
        }
        // Repair: already on the branch, the entry not published.
        let on_branch = commits_of(&git, branch, &ap.revision)?;
        if !on_branch.is_empty() {
            let id = publish_merge(home_dir, force, ap.revision, on_branch, branch, ap.cites)?;
            println!(
                "{}: found on {branch} (a merge not recorded before): recorded ({id})",
                ap.series.short()
            );
            merged += 1;
            continue;
        }
        let tip = git.rev_parse(branch).with_context(|| {
            format!("the target branch {branch} is not in {}", a.repo.display())
        })?;
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
        let head = {
            let wt = git.worktree(&tip)?;
            if let Err(e) = wt.am(mbox.as_bytes()) {
                eprintln!(
                    "{} v{}: does not apply on {branch}: {e}",
                    ap.series.short(),
                    ap.rev.version
                );
                continue;
            }
            wt.head()?
        };
        let commits: Vec<String> = git
            .log_messages(&tip, &head)?
            .into_iter()
            .map(|(h, _)| h)
            .collect();
        if let Some(remote) = &a.push {
            git.push(remote, &head, branch)?;
        }
        git.move_branch(branch, &head, &tip)?;
        if std::env::var(FAILPOINT_ENV).as_deref() == Ok("after-move") {
            eprintln!("{FAILPOINT_ENV}: stopping after moving {branch}");
            std::process::exit(3);
        }
        let id = publish_merge(home_dir, force, ap.revision, commits, branch, ap.cites)?;
        println!(
            "{} v{}: merged into {branch} at {} ({id})",
            ap.series.short(),
            ap.rev.version,
            head.get(..12).unwrap_or(&head)
        );
        merged += 1;
    }
    Ok(merged)
}

/// `tagline gate`: runs until killed; stopping at any point is safe. It
/// looks again as soon as the store was written (an entry arrived, from a
/// peer through the node or from a local command; checked every
/// [`GATE_WATCH_STEP`]), and at least every `--interval` seconds.
pub fn run(home_dir: &Path, a: GateArgs, force: bool) -> Result<()> {
    let db = home_dir.join(tagline_store::DB_FILE);
    let stamp = || {
        std::fs::metadata(&db)
            .ok()
            .map(|m| (m.len(), m.modified().ok()))
    };
    let mut first = true;
    loop {
        // The first look's errors (a wrong project, no repository) stop the
        // gate; later ones (the store busy, a push refused) are reported and
        // tried again.
        let n = match look(home_dir, &a, force) {
            Ok(n) => n,
            Err(e) if !first => {
                eprintln!("gate: {e:#} (trying again)");
                std::thread::sleep(GATE_WATCH_STEP * 10);
                continue;
            }
            Err(e) => return Err(e),
        };
        first = false;
        if a.once {
            if n == 0 {
                println!("nothing to merge");
            }
            return Ok(());
        }
        if n > 0 {
            continue; // merging may have made the next series mergeable
        }
        // Taken after the look, so that the look's own opening of the store
        // does not count as a change.
        let seen = stamp();
        let deadline = std::time::Instant::now() + Duration::from_secs(a.interval.max(1));
        while std::time::Instant::now() < deadline && stamp() == seen {
            std::thread::sleep(GATE_WATCH_STEP);
        }
    }
}
