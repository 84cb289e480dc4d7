//! Gate decision benchmark (issue: Git, the CI runner and the gate,
//! "Performance"): the time from the last required entry being stored at
//! the gate's data directory (a CI pass, after two reviews) to the merge
//! entry being published, by the real `tagline gate --once` (process start,
//! store, rules, git worktree, `git am -3` of a 3-patch series with its
//! trailers, branch moved, merge entry signed and stored), beside, in the
//! same run, git's own time for the same work: `git worktree add`, `git am
//! -3` of the same three patches, `git update-ref`, `git worktree remove`.
//!
//!     cargo bench -p tagline-cli --bench gate
//!     TAGLINE_GATE_RUNS=9 cargo bench -p tagline-cli --bench gate
//!
//! Each is run TAGLINE_GATE_RUNS times (default 5), a new series each time;
//! the median is shown. A running gate polls (`--interval`, default 5 s):
//! its latency is this time plus the wait for its next look.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark code"
)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn tagline(home: &Path, state: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tagline"))
        .args(args)
        .env("TAGLINE_HOME", home)
        .env("TAGLINE_STATE_DIR", state)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "tagline {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn git(dir: &Path, args: &[&str], input: Option<&[u8]>) -> String {
    String::from_utf8(tagline_e2e::git_with_input(dir, dir, args, input)).unwrap()
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

fn main() {
    let runs: usize = std::env::var("TAGLINE_GATE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let state = t.join("state");
    let repo = t.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"], None);
    std::fs::write(repo.join("README"), "demo\n").unwrap();
    git(&repo, &["add", "."], None);
    git(&repo, &["commit", "-q", "-m", "base"], None);
    let (lead, ada, bob, carol) = (
        t.join("lead"),
        t.join("ada"),
        t.join("bob"),
        t.join("carol"),
    );
    let mut ids = Vec::new();
    for h in [&lead, &ada, &bob, &carol] {
        tagline(h, &state, &["init"]);
        ids.push(
            json(&tagline(h, &state, &["id", "--json"]))["identity"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let policy = t.join("policy.toml");
    std::fs::write(
        &policy,
        "[ci]\nrequired = [\"test\"]\n[review]\nmin_reviewed_by = 2\nreviewer_roles = [\"any\"]\n",
    )
    .unwrap();
    let ci = format!("{}:test", ids[0]);
    tagline(
        &lead,
        &state,
        &[
            "project",
            "create",
            "--name",
            "demo",
            "--policy",
            policy.to_str().unwrap(),
            "--maintainer",
            &ids[0],
            "--ci",
            &ci,
            "--gate",
            &ids[0],
        ],
    );
    // Feeds copied between homes as replication would.
    let run = |h: &Path, args: &[&str]| tagline(h, &state, args);
    let sync = |from: &Path, to: &Path| tagline_e2e::copy_feeds(&run, from, to, t);
    for h in [&ada, &bob, &carol] {
        sync(&lead, h);
    }

    let mut gate = Vec::new();
    let mut raw_git = Vec::new();
    let mut known: Vec<String> = Vec::new();
    for run in 0..runs {
        // A 3-patch series from Ada, made with git format-patch.
        git(
            &repo,
            &["checkout", "-q", "-b", &format!("s{run}"), "main"],
            None,
        );
        for k in 0..3 {
            let f = format!("f{run}_{k}.c");
            std::fs::write(repo.join(&f), format!("int f{run}_{k};\n")).unwrap();
            git(&repo, &["add", &f], None);
            git(
                &repo,
                &["commit", "-q", "-s", "-m", &format!("{f}: add")],
                None,
            );
        }
        let dir = t.join(format!("p{run}"));
        git(
            &repo,
            &["format-patch", "-q", "-3", "-o", dir.to_str().unwrap()],
            None,
        );
        // Detached: the gate does not move a branch checked out in a
        // working tree.
        git(&repo, &["checkout", "-q", "--detach", "main"], None);
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        files.sort();
        let mut args = vec!["submit"];
        args.extend(files.iter().map(String::as_str));
        tagline(&ada, &state, &args);
        let series = json(&tagline(&ada, &state, &["series", "--json"]))
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["series"].as_str().unwrap().to_string())
            .find(|s| !known.contains(s))
            .unwrap();
        known.push(series.clone());
        for r in [&bob, &carol] {
            sync(&ada, r);
            tagline(r, &state, &["review", &series[..16], "--reviewed-by"]);
            sync(r, &lead);
        }
        sync(&ada, &lead);
        // The last required entry: the CI pass, stored at the gate's home.
        tagline(
            &lead,
            &state,
            &[
                "ci",
                "report",
                &series[..16],
                "--context",
                "test",
                "--status",
                "pass",
            ],
        );
        let tip = git(&repo, &["rev-parse", "main"], None).trim().to_string();
        let t0 = Instant::now();
        let out = tagline(
            &lead,
            &state,
            &[
                "gate",
                "--once",
                "--project",
                "demo",
                "--repo",
                repo.to_str().unwrap(),
            ],
        );
        gate.push(t0.elapsed());
        assert!(out.contains("merged into main"), "{out}");

        // git's own time for the same work, on the same three patches.
        let mbox = git(
            &repo,
            &["format-patch", "--stdout", &format!("{tip}..main")],
            None,
        );
        let wt = t.join(format!("wt{run}"));
        let t0 = Instant::now();
        git(
            &repo,
            &[
                "worktree",
                "add",
                "--detach",
                "--quiet",
                wt.to_str().unwrap(),
                &tip,
            ],
            None,
        );
        git(&wt, &["am", "-3", "--quiet"], Some(mbox.as_bytes()));
        let head = git(&wt, &["rev-parse", "HEAD"], None).trim().to_string();
        git(
            &repo,
            &["update-ref", &format!("refs/heads/bench{run}"), &head],
            None,
        );
        git(
            &repo,
            &["worktree", "remove", "--force", wt.to_str().unwrap()],
            None,
        );
        raw_git.push(t0.elapsed());
    }
    let (g, r) = (median(gate), median(raw_git));
    println!("gate decision: 3-patch series, median of {runs} runs");
    println!(
        "  tagline gate --once (stored CI pass to merge entry)  {:>7.1} ms",
        g.as_secs_f64() * 1e3
    );
    println!(
        "  git's own work (worktree, am -3, update-ref, remove)  {:>7.1} ms",
        r.as_secs_f64() * 1e3
    );
    println!(
        "  tagline's own share                                  {:>7.1} ms  (target < 1000 ms plus git's time)",
        g.saturating_sub(r).as_secs_f64() * 1e3
    );
}
