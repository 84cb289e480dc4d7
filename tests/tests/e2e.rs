//! One series through its whole review, with the real `tagline` binary in
//! separate homes (one per person and bot) and a real git repository:
//! v1 posted, CI fails, v2 posted (interdiff), CI passes, two Reviewed-by and
//! the Acked-by of the maintainer MAINTAINERS names for the touched files; a
//! carried trailer counts on the unchanged patch and not on the changed one;
//! `tagline status` prints the checklist at each step; `tagline am` applies with
//! `git am` and the commits carry the trailers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use tagline_e2e::rule;

mod daemon;
mod gate;
mod mail;
mod nodes;

/// The `tagline` binary cargo built beside this test.
fn tagline_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("tagline");
    assert!(
        bin.exists(),
        "{} is missing: build the workspace (cargo test --workspace builds it)",
        bin.display()
    );
    bin
}

struct World {
    dir: tempfile::TempDir,
}

impl World {
    fn home(&self, who: &str) -> PathBuf {
        self.dir.path().join(who)
    }

    fn ok(&self, who: &str, args: &[&str]) -> String {
        self.ok_in(&self.home(who), args)
    }

    fn ok_in(&self, home: &Path, args: &[&str]) -> String {
        let out = Command::new(tagline_bin())
            .args(args)
            .env("TAGLINE_HOME", home)
            .env("TAGLINE_STATE_DIR", self.dir.path().join("state"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: tagline {args:?}: {}",
            home.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, who: &str, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(who, args)).unwrap()
    }

    /// Copies `from`'s device and identity feeds into `to` (offline sync).
    fn sync(&self, from: &str, to: &str) {
        tagline_e2e::copy_feeds(
            &|h, a| self.ok_in(h, a),
            &self.home(from),
            &self.home(to),
            self.dir.path(),
        );
    }

    fn sync_all(&self, people: &[&str]) {
        for a in people {
            for b in people {
                if a != b {
                    self.sync(a, b);
                }
            }
        }
    }

    fn git(&self, args: &[&str]) -> String {
        let repo = self.dir.path().join("repo");
        String::from_utf8(tagline_e2e::git(&repo, self.dir.path(), args)).unwrap()
    }

    fn patches(&self, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join(dir))
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        v.sort();
        v
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

#[test]
fn a_series_is_reviewed_tested_approved_and_applied() {
    let w = World {
        dir: tempfile::tempdir().unwrap(),
    };
    let repo = w.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    write(
        &repo.join("MAINTAINERS"),
        "X86 ARCHITECTURE\nM:\tMaria <maria@example.org>\nS:\tSupported\nF:\txen/arch/x86/\n\nTHE REST\nM:\tLead <lead@example.org>\nS:\tSupported\nF:\t*\nF:\t*/\n",
    );
    write(&repo.join("xen/arch/x86/setup.c"), "int setup;\n");
    write(&repo.join("xen/arch/x86/irq.c"), "int irq;\n");
    w.git(&["init", "-q", "-b", "staging"]);
    w.git(&["add", "."]);
    w.git(&["commit", "-q", "-m", "base"]);
    write(&repo.join("xen/arch/x86/setup.c"), "int setup = 1;\n");
    w.git(&["commit", "-q", "-a", "-s", "-m", "x86/setup: initialise"]);
    write(&repo.join("xen/arch/x86/irq.c"), "int irq = 1;\n");
    w.git(&["commit", "-q", "-a", "-s", "-m", "x86/irq: initialise"]);
    w.git(&[
        "format-patch",
        "-q",
        "--cover-letter",
        "--base=HEAD~2",
        "-2",
        "-o",
        "../v1",
    ]);

    let people = ["lead", "ada", "bob", "carol", "maria", "ci"];
    for p in people {
        w.ok(p, &["init"]);
    }
    let id = |p: &str| {
        w.json(p, &["id", "--json"])["identity"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (lead, maria, ci) = (id("lead"), id("maria"), id("ci"));
    w.ok("maria", &["identity", "add-email", "maria@example.org"]);
    w.ok("lead", &["identity", "vouch", &maria, "maria@example.org"]);
    for p in people {
        w.ok(p, &["identity", "set-name", p]);
    }
    let policy = w.dir.path().join("policy.toml");
    write(
        &policy,
        "[ci]\nrequired = [\"test\"]\n[review]\nmin_reviewed_by = 2\nreviewer_roles = [\"any\"]\nrequire_maintainer_ack = true\n",
    );
    let ci_role = format!("{ci}:test");
    w.ok(
        "lead",
        &[
            "project",
            "create",
            "--name",
            "xen",
            "--branch",
            "staging",
            "--maintainers-file",
            "--policy",
            policy.to_str().unwrap(),
            "--ci",
            &ci_role,
            "--maintainer",
            &lead,
        ],
    );
    w.sync_all(&people);

    // v1, and CI fails.
    let mut args = vec!["submit"];
    let v1 = w.patches("v1");
    args.extend(v1.iter().map(String::as_str));
    w.ok("ada", &args);
    w.sync_all(&people);
    let series = w.json("ada", &["series", "--json"])[0]["series"]
        .as_str()
        .unwrap()
        .to_string();
    let s = &series[..16];
    w.ok(
        "ci",
        &[
            "ci",
            "report",
            s,
            "--context",
            "test",
            "--status",
            "fail",
            "--summary",
            "irq test crashed",
        ],
    );
    w.ok("bob", &["review", s, "--reviewed-by"]);
    w.sync_all(&people);
    let repo_arg = repo.to_str().unwrap();
    let st = w.json("ada", &["status", s, "--repo", repo_arg, "--json"]);
    assert_eq!(st["state"], "ci-failed", "{st}");
    assert!(rule(&st, "ci:test").1.contains("irq test crashed"));
    let checklist = w.ok("ada", &["status", s, "--repo", repo_arg]);
    assert!(
        checklist.contains("FAILED  ci:test") && checklist.contains("MISSING reviewed-by"),
        "{checklist}"
    );

    // v2 reworks patch 2; patch 1 is unchanged.
    w.git(&["checkout", "-q", "HEAD~1"]);
    w.git(&["checkout", "-q", "-b", "v2"]);
    write(&repo.join("xen/arch/x86/irq.c"), "int irq = 2;\n");
    w.git(&["commit", "-q", "-a", "-s", "-m", "x86/irq: initialise"]);
    w.git(&[
        "format-patch",
        "-q",
        "--cover-letter",
        "-v2",
        "--base=HEAD~2",
        "-2",
        "-o",
        "../v2",
    ]);
    let mut args = vec!["submit", "--series", s];
    let v2 = w.patches("v2");
    args.extend(v2.iter().map(String::as_str));
    w.ok("ada", &args);
    w.sync_all(&people);
    let inter = w.ok("ada", &["interdiff", s, "1", "2"]);
    assert!(
        inter.contains("1: x86/setup: initialise = 1: x86/setup: initialise"),
        "{inter}"
    );
    assert!(
        inter.contains("! 2: x86/irq: initialise") && inter.contains("+int irq = 2;"),
        "{inter}"
    );
    let st = w.json("ada", &["status", s, "--repo", repo_arg, "--json"]);
    // Bob's v1 review: carried to patch 1 (unchanged), not to patch 2 (changed).
    let carried: Vec<&serde_json::Value> = st["trailers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["carried_from"] == 1)
        .collect();
    assert_eq!(carried.len(), 1, "{st}");
    assert_eq!(carried[0]["patch"], 1);
    assert!(
        st["uncounted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["reason"]
                .as_str()
                .unwrap()
                .contains("not carried for patch 2")),
        "{st}"
    );
    assert_eq!(rule(&st, "ci:test").0, "missing", "no result for v2 yet");

    // CI passes on v2; Bob and Carol review; Maria (X86 per MAINTAINERS) acks.
    w.ok(
        "ci",
        &["ci", "report", s, "--context", "test", "--status", "pass"],
    );
    w.ok("bob", &["review", s, "--reviewed-by"]);
    w.ok("carol", &["review", s, "--reviewed-by"]);
    w.sync_all(&people);
    let st = w.json("ada", &["status", s, "--repo", repo_arg, "--json"]);
    let (outcome, msg) = rule(&st, "maintainer-ack");
    assert_eq!(outcome, "missing");
    assert!(msg.contains("X86 ARCHITECTURE"), "{msg}");
    w.ok("maria", &["review", s, "--acked-by"]);
    w.sync_all(&people);
    let st = w.json("ada", &["status", s, "--repo", repo_arg, "--json"]);
    assert_eq!(
        st["state"],
        "approved",
        "{}",
        w.ok("ada", &["status", s, "--repo", repo_arg])
    );
    let checklist = w.ok("ada", &["status", s, "--repo", repo_arg]);
    assert!(checklist.contains("state: approved"), "{checklist}");

    // The mbox applies with git am; the commits carry the trailers.
    let mbox = w.dir.path().join("v2.mbox");
    w.ok("ada", &["am", s, "-o", mbox.to_str().unwrap()]);
    w.git(&["checkout", "-q", "-b", "applied", "staging~2"]);
    w.git(&["am", "-q", mbox.to_str().unwrap()]);
    let log = w.git(&["log", "--format=%B%n----", "-2"]);
    assert_eq!(log.matches("Reviewed-by: bob").count(), 2, "{log}");
    assert_eq!(log.matches("Reviewed-by: carol").count(), 2, "{log}");
    assert_eq!(
        log.matches("Acked-by: maria <maria@example.org>").count(),
        2,
        "{log}"
    );
    assert!(
        w.git(&["diff", "v2", "applied"]).is_empty(),
        "the applied tree differs from v2"
    );
}
