//! `tagline ci run`: a CI runner. It watches a project's revisions through
//! the store (borrowed from a running node for each look), applies each new
//! latest revision in a fresh worktree (tagline-git), runs the command with
//! a time limit and a clean environment, and publishes `tagline/ci`
//! entries: `pending`, then `pass`, `fail` or `error` with a summary and the
//! log's tail; the whole log is kept in the data directory under its hash.
//!
//! Restart-safe: what this runner published is in its feed. A revision with
//! its final result for the context is never tested again; one left
//! `pending` (the runner was killed while testing it) is tested again
//! without a second `pending`, so no result is published twice.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tagline_format::EntryId;
use tagline_format::review::{CiResult, CiStatus, ReviewPayload, Revision};
use tagline_git::{Committer, Git, GitError};

use crate::home;

/// Where full CI logs are kept in the data directory, by blake3 hash.
pub const CI_LOG_DIR: &str = "ci-logs";
/// How often the runner looks even when the store was not written, unless
/// `--interval` (it looks at once when the store is written).
pub const CI_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The command's time limit, unless `--timeout`.
pub const CI_DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest last line of a failing command's output quoted in its summary.
pub const SUMMARY_LINE_MAX: usize = 200;
/// How often a running command is checked for its end or its time limit.
const CI_WAIT_STEP: Duration = Duration::from_millis(50);

/// Arguments of `tagline ci run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The project whose revisions are tested (name or id)
    #[arg(long)]
    pub project: String,
    /// A clone of the project's repository (worktrees are made in it)
    #[arg(long, value_name = "PATH")]
    pub repo: PathBuf,
    /// The CI context this runner reports (the project names it for this
    /// identity)
    #[arg(long)]
    pub context: String,
    /// Time limit of one run, e.g. 90s, 20m, 2h
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub timeout: Duration,
    /// Seconds between looks for new revisions
    #[arg(long, default_value_t = CI_POLL_INTERVAL.as_secs())]
    pub interval: u64,
    /// Test what is waiting now, then exit
    #[arg(long)]
    pub once: bool,
    /// The command, run in the worktree with the revision applied; exit 0
    /// passes
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `90`, `90s`, `20m`, `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (s.get(..i).unwrap_or(""), s.get(i..).unwrap_or("")),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number with s, m or h, such as 90s or 20m"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{s:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

/// What a test of one revision came to.
struct Outcome {
    status: CiStatus,
    summary: String,
    log: Vec<u8>,
    duration: Duration,
}

fn outcome(status: CiStatus, summary: String, log: Vec<u8>, started: Instant) -> Outcome {
    Outcome {
        status,
        summary,
        log,
        duration: started.elapsed(),
    }
}

/// Applies `rev` at its base (or the target branch, or HEAD) in a fresh
/// worktree and runs the command there.
fn test(git: &Git, rev: &Revision, branch: &str, a: &RunArgs, id: &EntryId) -> Outcome {
    let started = Instant::now();
    let base = rev
        .base_commit
        .as_deref()
        .filter(|b| git.has_commit(b))
        .map(str::to_string)
        .or_else(|| git.rev_parse(branch).ok())
        .or_else(|| git.rev_parse("HEAD").ok());
    let Some(base) = base else {
        return outcome(
            CiStatus::Error,
            format!(
                "no commit to apply on: neither the base nor {branch} nor HEAD is in the repository"
            ),
            Vec::new(),
            started,
        );
    };
    let wt = match git.worktree(&base) {
        Ok(w) => w,
        Err(e) => return outcome(CiStatus::Error, e.to_string(), Vec::new(), started),
    };
    let mbox = tagline_git::mbox::am_mbox(rev, &[], "Thu, 1 Jan 1970 00:00:00 +0000");
    if let Err(e) = wt.am(mbox.as_bytes()) {
        let said = match &e {
            GitError::Failed { output, .. } => output.clone(),
            other => other.to_string(),
        };
        return outcome(
            CiStatus::Error,
            format!("does not apply on {}: {said}", short(&base)),
            e.to_string().into_bytes(),
            started,
        );
    }
    let (status, summary, bytes) = run_command(
        wt.path(),
        &a.command,
        a.timeout,
        &[
            ("TAGLINE_REVISION", id.to_string()),
            ("TAGLINE_BASE", base.clone()),
        ],
    );
    outcome(status, summary, bytes, started)
}

/// Runs `command` in `dir` with a clean environment (`PATH`, `LANG`, a
/// scratch `HOME` and `TMPDIR`, and `env`), its output in one log, killed
/// with its process group after `timeout`: pass (exit 0), fail or error
/// (could not run, timed out), a summary, and the log.
pub(crate) fn run_command(
    dir: &Path,
    command: &[String],
    timeout: Duration,
    env: &[(&str, String)],
) -> (CiStatus, String, Vec<u8>) {
    let Some((program, args)) = command.split_first() else {
        return (CiStatus::Error, "no command".into(), Vec::new());
    };
    let shown = command.join(" ");
    let log = match tempfile::tempfile() {
        Ok(f) => f,
        Err(e) => {
            return (
                CiStatus::Error,
                format!("cannot create the log: {e}"),
                Vec::new(),
            );
        }
    };
    let (out, err) = match (log.try_clone(), log.try_clone()) {
        (Ok(o), Ok(e)) => (o, e),
        _ => {
            return (
                CiStatus::Error,
                "cannot share the log file".into(),
                Vec::new(),
            );
        }
    };
    let scratch = tempfile::tempdir().ok();
    let mut c = Command::new(program);
    c.args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LANG", "C.UTF-8")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err);
    for (k, v) in env {
        c.env(k, v);
    }
    if let Some(d) = &scratch {
        c.env("HOME", d.path()).env("TMPDIR", d.path());
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        // Its own process group, so that a time-out stops its children too.
        c.process_group(0);
    }
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => {
            return (
                CiStatus::Error,
                format!("cannot run {program}: {e}"),
                Vec::new(),
            );
        }
    };
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                // The whole group (the command's children too), then the
                // command itself should it have left the group.
                if let Ok(pid) = i32::try_from(child.id())
                    && pid > 1
                {
                    let _ = nix::sys::signal::killpg(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(CI_WAIT_STEP),
            Err(_) => break None,
        }
    };
    let mut bytes = Vec::new();
    let mut log = log;
    let _ = std::io::Seek::rewind(&mut log);
    let _ = log.read_to_end(&mut bytes);
    match status {
        Some(s) if s.success() => (CiStatus::Pass, format!("{shown} passed"), bytes),
        Some(s) => (
            CiStatus::Fail,
            format!(
                "{shown} failed ({}){}",
                s.code()
                    .map_or("killed by a signal".to_string(), |c| format!("exit {c}")),
                last_line(&bytes)
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            ),
            bytes,
        ),
        None => (
            CiStatus::Error,
            format!("{shown} timed out after {} s", timeout.as_secs()),
            bytes,
        ),
    }
}

/// The last non-empty line of a log, at most [`SUMMARY_LINE_MAX`] bytes:
/// what a failing command said last, usually why, put in its summary.
fn last_line(log: &[u8]) -> Option<String> {
    let line = log
        .split(|b| *b == b'\n')
        .map(|l| l.trim_ascii())
        .rfind(|l| !l.is_empty())?;
    let text = String::from_utf8_lossy(line);
    let end = text.floor_char_boundary(SUMMARY_LINE_MAX);
    Some(text.get(..end).unwrap_or_default().to_string())
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// One look: tests every latest revision this runner has no final result
/// for. Returns how many were tested.
fn look(home_dir: &Path, a: &RunArgs, force: bool) -> Result<usize> {
    let key = home::load_key(home_dir)?;
    let me = key.public();
    let work = {
        let store = home::open_store(home_dir)?;
        crate::reviewcmd::ci_work(&store, &a.project, &me, &a.context)?
    };
    let name = crate::home::identity(home_dir)?
        .map(|i| i.short())
        .unwrap_or_else(|| me.to_string());
    let git = Git::open(
        &a.repo,
        Committer {
            name: format!("tagline ci {}", a.context),
            email: "ci@tagline.invalid".into(),
        },
    )
    .with_context(|| format!("the repository for {}", work.name))?;
    let mut tested = 0;
    for (id, rev) in &work.revisions {
        let mine = work.mine.get(id).map(Vec::as_slice).unwrap_or_default();
        if mine.iter().any(|(_, s)| *s != CiStatus::Pending) {
            continue;
        }
        let publish = |p: CiResult| -> Result<EntryId> {
            let store = home::open_store(home_dir)?;
            crate::reviewcmd::publish(home_dir, &store, &ReviewPayload::Ci(p), force)
        };
        let base = CiResult {
            revision: *id,
            context: a.context.clone(),
            status: CiStatus::Pending,
            summary: String::new(),
            log_excerpt: None,
            log_hash: None,
            runner: Some(name.clone()),
            duration_ms: None,
            url: None,
        };
        if mine.is_empty() {
            publish(CiResult {
                summary: format!("testing v{} ({} patches)", rev.version, rev.patches.len()),
                ..base.clone()
            })?;
        } else {
            println!(
                "{}: was under test when the runner stopped; testing again",
                id.short()
            );
        }
        let o = test(&git, rev, &work.branch, a, id);
        let (excerpt, hash) = crate::reviewcmd::log_excerpt(&o.log);
        let dir = home_dir.join(CI_LOG_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{hash}.log"));
        std::fs::write(&path, &o.log)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let entry = publish(CiResult {
            status: o.status,
            summary: o.summary.clone(),
            log_excerpt: (!excerpt.is_empty()).then_some(excerpt),
            log_hash: Some(*hash.as_bytes()),
            duration_ms: Some(u64::try_from(o.duration.as_millis()).unwrap_or(u64::MAX)),
            ..base
        })?;
        println!(
            "{} v{}: {} {}: {} ({entry})",
            id.short(),
            rev.version,
            a.context,
            o.status.as_str(),
            o.summary
        );
        tested += 1;
    }
    Ok(tested)
}

/// `tagline ci run`: runs until killed (Ctrl-C, SIGTERM); being stopped at
/// any point is safe. It looks again as soon as the store was written (a
/// revision arrived) and at least every `--interval` seconds
/// ([`home::watch`]).
pub fn run(home_dir: &Path, a: RunArgs, force: bool) -> Result<()> {
    let interval = Duration::from_secs(a.interval.max(1));
    home::watch(home_dir, interval, a.once, "nothing to test", || {
        look(home_dir, &a, force)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failures_summary_quotes_its_last_line() {
        assert_eq!(
            last_line(b"building\nundefined: helper\n\n").as_deref(),
            Some("undefined: helper")
        );
        assert_eq!(last_line(b"\n  \n"), None);
        let long = "\u{e9}".repeat(SUMMARY_LINE_MAX);
        let cut = last_line(long.as_bytes()).unwrap();
        assert!(
            cut.len() <= SUMMARY_LINE_MAX && long.starts_with(&cut),
            "{cut}"
        );
        let (status, summary, _) = run_command(
            Path::new("."),
            &[
                "sh".into(),
                "-c".into(),
                "echo no; echo undefined: x >&2; exit 2".into(),
            ],
            Duration::from_secs(60),
            &[],
        );
        assert_eq!(status, CiStatus::Fail);
        assert!(
            summary.ends_with("failed (exit 2): undefined: x"),
            "{summary}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("20m"), Ok(Duration::from_secs(1200)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("2d").is_err());
        assert!(parse_duration("m").is_err());
    }
}
