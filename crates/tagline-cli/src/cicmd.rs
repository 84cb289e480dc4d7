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

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use tagline_format::EntryId;
use tagline_format::review::{CiResult, CiStatus, ReviewPayload, Revision};
use tagline_git::{Committer, Git, GitError};

use crate::cilog::{CI_LOG_MAX_BYTES, RunLog};
use crate::home;

/// Where full CI logs are kept in the data directory, by blake3 hash.
pub const CI_LOG_DIR: &str = "ci-logs";
/// How often the runner looks even when the store was not written, unless
/// `--interval` (it looks at once when the store is written).
pub const CI_POLL_INTERVAL: Duration = Duration::from_secs(60);
/// The command's time limit, unless `--timeout`.
pub const CI_DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
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
    log: RunLog,
    duration: Duration,
}

fn outcome(status: CiStatus, summary: String, log: RunLog, started: Instant) -> Outcome {
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
            RunLog::default(),
            started,
        );
    };
    let wt = match git.worktree(&base) {
        Ok(w) => w,
        Err(e) => return outcome(CiStatus::Error, e.to_string(), RunLog::default(), started),
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
            RunLog::from_bytes(e.to_string().into_bytes()),
            started,
        );
    }
    let (status, summary, bytes) = run_command(
        wt.path(),
        &a.command,
        a.timeout,
        CI_LOG_MAX_BYTES,
        &[
            ("TAGLINE_REVISION", id.to_string()),
            ("TAGLINE_BASE", base.clone()),
        ],
    );
    outcome(status, summary, bytes, started)
}

/// Kills `child`'s process group (the command started it as its leader).
/// The group outlives its leader while a member runs, so its id is not
/// reused meanwhile.
fn kill_group(child: &std::process::Child) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(child.id())
        && pid > 1
    {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    #[cfg(not(unix))]
    let _ = child;
}

/// Runs `command` in `dir` with a clean environment (`PATH`, `LANG`, a
/// scratch `HOME` and `TMPDIR`, and `env`), its output in one log file,
/// killed with its process group after `timeout` or once its log passes
/// `max_log` bytes ([`CI_LOG_MAX_BYTES`] for the runner and the gate), and
/// what it leaves running in its group killed when it ends: pass (exit 0),
/// fail or error (could not run, timed out, too much output), a summary,
/// and the log.
pub(crate) fn run_command(
    dir: &Path,
    command: &[String],
    timeout: Duration,
    max_log: u64,
    env: &[(&str, String)],
) -> (CiStatus, String, RunLog) {
    let Some((program, args)) = command.split_first() else {
        return (CiStatus::Error, "no command".into(), RunLog::default());
    };
    let shown = command.join(" ");
    let log = match tempfile::tempfile() {
        Ok(f) => f,
        Err(e) => {
            return (
                CiStatus::Error,
                format!("cannot create the log: {e}"),
                RunLog::default(),
            );
        }
    };
    let (out, err) = match (log.try_clone(), log.try_clone()) {
        (Ok(o), Ok(e)) => (o, e),
        _ => {
            return (
                CiStatus::Error,
                "cannot share the log file".into(),
                RunLog::default(),
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
                RunLog::default(),
            );
        }
    };
    let deadline = Instant::now() + timeout;
    // Why the command was stopped, if it was.
    let mut stopped = None;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => {
                // What it left running (a daemon a test started) goes too:
                // it would outlive the run and write on to the log.
                kill_group(&child);
                break Some(s);
            }
            Ok(None) => {
                if Instant::now() >= deadline {
                    stopped = Some(format!("timed out after {} s", timeout.as_secs()));
                } else if log.metadata().map_or(0, |m| m.len()) > max_log {
                    stopped = Some(format!(
                        "stopped: its output passed {}",
                        crate::cilog::size_text(max_log)
                    ));
                } else {
                    std::thread::sleep(CI_WAIT_STEP);
                    continue;
                }
                // The whole group (the command's children too), then the
                // command itself should it have left the group.
                kill_group(&child);
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Err(_) => break None,
        }
    };
    let log = match RunLog::from_file(log) {
        Ok(l) => l,
        Err(e) => {
            return (
                CiStatus::Error,
                format!("cannot read the log of {shown}: {e}"),
                RunLog::default(),
            );
        }
    };
    match status {
        Some(s) if s.success() => (CiStatus::Pass, format!("{shown} passed"), log),
        Some(s) => (
            CiStatus::Fail,
            format!(
                "{shown} failed ({}){}",
                s.code()
                    .map_or("killed by a signal".to_string(), |c| format!("exit {c}")),
                log.summary
                    .last_line
                    .as_ref()
                    .map(|l| format!(": {l}"))
                    .unwrap_or_default()
            ),
            log,
        ),
        None => (
            CiStatus::Error,
            format!(
                "{shown} {}",
                stopped.unwrap_or_else(|| "could not be waited for".into())
            ),
            log,
        ),
    }
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
        let mut o = test(&git, rev, &work.branch, a, id);
        let dir = home_dir.join(CI_LOG_DIR);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{}.log", o.log.summary.payload_hash()));
        o.log
            .save(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let excerpt = o.log.summary.excerpt.clone();
        let entry = publish(CiResult {
            status: o.status,
            summary: o.summary.clone(),
            log_excerpt: (!excerpt.is_empty()).then_some(excerpt),
            log_hash: Some(o.log.summary.hash),
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
        let (status, summary, log) = run_command(
            Path::new("."),
            &[
                "sh".into(),
                "-c".into(),
                "echo no; echo undefined: x >&2; exit 2".into(),
            ],
            Duration::from_secs(60),
            CI_LOG_MAX_BYTES,
            &[],
        );
        assert_eq!(status, CiStatus::Fail);
        assert!(
            summary.ends_with("failed (exit 2): undefined: x"),
            "{summary}"
        );
        assert_eq!(log.summary.excerpt, "no\nundefined: x");
    }

    /// What the command leaves running in its group is killed when it ends.
    #[cfg(target_os = "linux")]
    #[test]
    fn what_a_command_leaves_running_is_stopped() {
        let (status, summary, log) = run_command(
            Path::new("."),
            &["sh".into(), "-c".into(), "sleep 300 & echo $!".into()],
            Duration::from_secs(60),
            CI_LOG_MAX_BYTES,
            &[],
        );
        assert_eq!(status, CiStatus::Pass, "{summary}");
        let pid: i32 = log.summary.excerpt.trim().parse().unwrap();
        // Gone, or a zombie until its new parent reaps it.
        let gone = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|r| r.trim_start().starts_with('Z'))
            })
        };
        let until = Instant::now() + Duration::from_secs(10);
        while !gone() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(), "the background sleep {pid} still runs");
    }

    /// Endless output is stopped at the log's bound, with its group, and
    /// the log kept is about that size, not more.
    #[test]
    fn endless_output_is_stopped_at_the_bound() {
        let max = 256 * 1024;
        let (status, summary, log) = run_command(
            Path::new("."),
            &[
                "sh".into(),
                "-c".into(),
                "while :; do echo all is well; done".into(),
            ],
            Duration::from_secs(60),
            max,
            &[],
        );
        assert_eq!(status, CiStatus::Error, "{summary}");
        assert!(summary.contains("its output passed 256 KiB"), "{summary}");
        assert!(log.summary.len > max, "{}", log.summary.len);
        // The bound plus what the loop writes in a wait step or so.
        assert!(
            log.summary.len < max + 64 * 1024 * 1024,
            "{}",
            log.summary.len
        );
        assert_eq!(
            log.summary
                .last_line
                .as_deref()
                .map(|l| l.starts_with("all")),
            Some(true)
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
