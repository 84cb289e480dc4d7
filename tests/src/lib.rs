//! Test support shared by the end-to-end tests in `tests/` and the crates'
//! own integration tests: real `git`, isolated from the user's and the
//! system's configuration, and reading `tagline status --json`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test support: a panic is a failure report"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs real `git` in `dir` with `home` as HOME, no system configuration, a
/// fixed author (Ada <ada@example.org>) and no signing, feeding `input` on
/// stdin when given; asserts it succeeds and returns its stdout.
pub fn git_with_input(dir: &Path, home: &Path, args: &[&str], input: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("git")
        .args([
            "-c",
            "user.name=Ada",
            "-c",
            "user.email=ada@example.org",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("git is needed for this test");
    if let Some(bytes) = input {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// [`git_with_input`] without input.
pub fn git(dir: &Path, home: &Path, args: &[&str]) -> Vec<u8> {
    git_with_input(dir, home, args, None)
}

/// Makes a git repository at `dir` (HOME `home`, as [`git`]) on branch
/// `main` with one commit, "base", holding `files` (path, text).
pub fn repo_with(dir: &Path, home: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, home, &["init", "-q", "-b", "main"]);
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    git(dir, home, &["add", "."]);
    git(dir, home, &["commit", "-q", "--allow-empty", "-m", "base"]);
}

/// `git patch-id --stable` of a patch: the id, if the patch has a diff.
pub fn git_patch_id(dir: &Path, patch: &[u8]) -> Option<String> {
    let out = git_with_input(dir, dir, &["patch-id", "--stable"], Some(patch));
    String::from_utf8(out)
        .unwrap()
        .split_whitespace()
        .next()
        .map(str::to_string)
}

/// The outcome and message of rule `name` in `tagline status --json` output.
pub fn rule(status: &serde_json::Value, name: &str) -> (String, String) {
    let r = status["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == name)
        .unwrap_or_else(|| panic!("no rule {name} in {status}"));
    (
        r["outcome"].as_str().unwrap().to_string(),
        r["message"].as_str().unwrap().to_string(),
    )
}

/// The counted trailers of `tagline status --json` output, one
/// `PATCH "KEY" "IDENTITY"` string each, in output order.
pub fn counted_trailers(status: &serde_json::Value) -> Vec<String> {
    status["trailers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| format!("{} {} {}", t["patch"], t["key"], t["identity"]))
        .collect()
}

/// Copies `from`'s device feed and its identity's root feed into `to`, as
/// replication would, with `tagline export` and `tagline import` through
/// files in `scratch`. `run(home, args)` runs the real binary in `home` and
/// returns its stdout.
pub fn copy_feeds(run: &dyn Fn(&Path, &[&str]) -> String, from: &Path, to: &Path, scratch: &Path) {
    let json =
        |args: &[&str]| -> serde_json::Value { serde_json::from_str(&run(from, args)).unwrap() };
    let device = json(&["id", "--json"])["feed"]
        .as_str()
        .unwrap()
        .to_string();
    let root = json(&["identity", "show", "--json"])["roots"][0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    for feed in [device, root] {
        let file = scratch.join(format!("{feed}.feed"));
        run(from, &["export", &feed, "-o", file.to_str().unwrap()]);
        run(to, &["import", file.to_str().unwrap()]);
    }
}
