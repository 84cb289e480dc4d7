//! The whole loop on real processes, each person and bot with its own
//! `tagline node` on 127.0.0.1, a real upstream repository and real git:
//!
//! - the lead declares a project whose policy needs CI context `test` to
//!   pass, two Reviewed-by and the Acked-by of the maintainer MAINTAINERS
//!   names for the touched files (the lead); the lead's home also runs the
//!   gate (pushing to the upstream repository) and the email bridge;
//! - Ada submits a 3-patch series; the CI runner (`tagline ci run`, its own
//!   home and node) fails v1; Ada posts v2; CI passes; Bob reviews
//!   natively, Carol by email (a reply to the mail the bridge rendered of
//!   v2, delivered over LMTP); the lead acks; the gate merges: upstream's
//!   branch holds the 3 commits with the trailers, and every node's
//!   `tagline status` says merged;
//! - a second series, touching the file Carol maintains, with her
//!   Acked-by and then her Nacked-by, is held, every other rule holding,
//!   until she retracts the nack;
//! - a batch of two approved series, one of which breaks the build only on
//!   top of the branch, merges the good one and names the bad one.
//!
//! Every wait is bounded; every child is killed on drop.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::daemon::Daemon;
use super::nodes::{LIVE, Node, WAIT, cmd, id_field, json_of, ok, until_within};

/// The build check of the project: no `BUG` in `src/`, and every `uses X`
/// has a `def X` in `src/`. The CI runner and the gate run it.
const CHECK: &str = r#"! grep -rq BUG src && for n in $(grep -rhoE 'uses [a-z0-9]+' src | cut -d' ' -f2); do grep -rqE "def $n\b" src || { echo "undefined: $n"; exit 1; }; done"#;

/// How long a held series is watched for a merge that must not happen:
/// many times the gate's reaction (`WATCH_STEP`, 100 ms, plus git).
const HOLD: Duration = Duration::from_secs(4);

/// A long-running `tagline` command in `home` (ci run, gate, bridge
/// serve), its errors on the test's stderr.
fn daemon(home: &Path, args: &[&str]) -> Daemon {
    let mut c = cmd(home);
    c.args(args).stderr(Stdio::inherit());
    Daemon::spawn(c)
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

struct Repo {
    dir: PathBuf,
    home: PathBuf,
}

impl Repo {
    fn git(&self, args: &[&str]) -> String {
        String::from_utf8(tagline_e2e::git(&self.dir, &self.home, args)).unwrap()
    }

    /// Commits `changes` (file, text) one per commit on a new branch from
    /// `from`, and returns the patch files of them (with a cover letter when
    /// `cover`) as `git format-patch` writes them, `--base` set.
    fn series(
        &self,
        name: &str,
        from: &str,
        version: u32,
        changes: &[(&str, &str, &str)],
        cover: bool,
    ) -> Vec<String> {
        self.git(&["checkout", "-q", "-B", name, from]);
        for (file, text, subject) in changes {
            write(&self.dir.join(file), text);
            self.git(&["add", file]);
            self.git(&["commit", "-q", "-s", "-m", subject]);
        }
        let out = self.dir.parent().unwrap().join(name);
        let n = format!("-{}", changes.len());
        let v = format!("-v{version}");
        let base = format!("--base={from}");
        let mut args = vec!["format-patch", "-q", &n, &v, &base, "-o"];
        let o = out.to_str().unwrap();
        args.push(o);
        if cover {
            args.push("--cover-letter");
        }
        self.git(&args);
        let mut files: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        files.sort();
        files
    }
}

/// `tagline status SERIES --json` in `home`, if it answers.
fn status(home: &Path, series: &str, repo: Option<&Path>) -> Option<serde_json::Value> {
    let mut args = vec!["status", series, "--json"];
    let r;
    if let Some(repo) = repo {
        r = repo.display().to_string();
        args.extend(["--repo", &r]);
    }
    let out = cmd(home).args(&args).output().unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

/// Waits (at most [`LIVE`]) until `home`'s status of `series` satisfies `f`,
/// and returns it.
fn until_status(
    what: &str,
    home: &Path,
    series: &str,
    repo: Option<&Path>,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let mut last = None;
    let t = Instant::now();
    loop {
        if let Some(st) = status(home, series, repo) {
            if f(&st) {
                return st;
            }
            last = Some(st);
        }
        assert!(
            t.elapsed() < LIVE,
            "timed out waiting for {what} at {}: {last:?}",
            home.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rule_is(st: &serde_json::Value, name: &str, outcome: &str) -> bool {
    st["rules"].as_array().is_some_and(|rs| {
        rs.iter()
            .any(|r| r["rule"] == name && r["outcome"] == outcome)
    })
}

/// The series ids `home` knows.
fn series_ids(home: &Path) -> Vec<String> {
    let out = cmd(home).args(["series", "--json"]).output().unwrap();
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s["series"].as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Ada submits `patches`; returns the new series' id.
fn submit(ada: &Path, patches: &[String], series: Option<&str>) -> String {
    let known = series_ids(ada);
    let mut args = vec!["submit"];
    if let Some(s) = series {
        args.extend(["--series", s]);
    } else {
        args.extend(["--project", "demo"]);
    }
    args.extend(patches.iter().map(String::as_str));
    ok(ada, &args);
    match series {
        Some(s) => s.to_string(),
        None => series_ids(ada)
            .into_iter()
            .find(|s| !known.contains(s))
            .unwrap(),
    }
}

#[test]
fn developers_ci_and_gate_on_their_own_nodes_take_a_series_to_merged() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let [ada, bob, carol, ci, lead] = ["ada", "bob", "carol", "ci", "lead"].map(|h| t.join(h));
    let everyone = [&ada, &bob, &carol, &ci, &lead];
    for h in everyone {
        ok(h, &["init"]);
    }
    for (h, name) in [
        (&ada, "Ada"),
        (&bob, "Bob"),
        (&carol, "Carol"),
        (&lead, "Lead"),
    ] {
        ok(h, &["identity", "set-name", name]);
    }
    ok(&lead, &["identity", "add-email", "lead@example.org"]);
    ok(&carol, &["identity", "add-email", "carol@example.org"]);
    let [ci_id, lead_id, carol_id] = [&ci, &lead, &carol].map(|h| id_field(h, "identity"));

    // Upstream: a bare repository; the lead's gate pushes to it, Ada and
    // the CI runner clone it.
    let upstream = t.join("upstream.git");
    let seed = Repo {
        dir: t.join("seed"),
        home: t.to_path_buf(),
    };
    tagline_e2e::repo_with(
        &seed.dir,
        t,
        &[
            (
                "MAINTAINERS",
                "THE CORE\nM:\tLead <lead@example.org>\nS:\tSupported\nF:\tsrc/\n\nTHE D DRIVER\nM:\tCarol <carol@example.org>\nS:\tMaintained\nF:\tsrc/d.c\n",
            ),
            ("src/lib.c", "def helper\n"),
            ("src/a.c", "int a;\n"),
        ],
    );
    tagline_e2e::git(
        t,
        t,
        &[
            "clone",
            "-q",
            "--bare",
            seed.dir.to_str().unwrap(),
            upstream.to_str().unwrap(),
        ],
    );
    let clone = |home: &Path| -> Repo {
        let dir = home.join("repo");
        tagline_e2e::git(
            t,
            t,
            &[
                "clone",
                "-q",
                upstream.to_str().unwrap(),
                dir.to_str().unwrap(),
            ],
        );
        Repo {
            dir,
            home: t.to_path_buf(),
        }
    };
    let (ada_repo, ci_repo) = (clone(&ada), clone(&ci));
    // The gate's: bare, as the gate moves its branch (and pushes it).
    let gate_repo = Repo {
        dir: lead.join("repo.git"),
        home: t.to_path_buf(),
    };
    tagline_e2e::git(
        t,
        t,
        &[
            "clone",
            "-q",
            "--bare",
            upstream.to_str().unwrap(),
            gate_repo.dir.to_str().unwrap(),
        ],
    );
    let upstream_log = || {
        String::from_utf8(tagline_e2e::git(
            &upstream,
            t,
            &["log", "--format=%H%n%B%n----", "main"],
        ))
        .unwrap()
    };
    let base = ada_repo.git(&["rev-parse", "main"]).trim().to_string();

    // The project.
    let policy = t.join("policy.toml");
    write(
        &policy,
        "[ci]\nrequired = [\"test\"]\n[review]\nmin_reviewed_by = 2\nreviewer_roles = [\"any\"]\nrequire_maintainer_ack = true\n",
    );
    let ci_role = format!("{ci_id}:test");
    ok(&lead, &["identity", "vouch", &lead_id, "lead@example.org"]);
    ok(
        &lead,
        &[
            "project",
            "create",
            "--name",
            "demo",
            "--branch",
            "main",
            "--maintainers-file",
            "--policy",
            policy.to_str().unwrap(),
            "--ci",
            &ci_role,
            "--gate",
            &lead_id,
            "--bridge",
            &lead_id,
        ],
    );
    let project = json_of(&ok(&lead, &["project", "show", "--json"]))["project"]
        .as_str()
        .unwrap()
        .to_owned();

    // The nodes: everyone knows the lead's; everyone but the lead
    // subscribes to the project (the lead's node follows its own). The lead
    // follows Carol to vouch for her address.
    let node_lead = Node::start(&lead, &[]);
    ok(&lead, &["follow", &carol_id]);
    let mut nodes = vec![node_lead];
    for h in [&ada, &bob, &carol, &ci] {
        ok(h, &["subscribe", &project]);
        ok(h, &["peers", "add", &nodes[0].addr]);
        nodes.push(Node::start(h, &[]));
    }
    until_within("the lead to hold Carol's address claim", WAIT, || {
        cmd(&lead)
            .args(["identity", "vouch", &carol_id, "carol@example.org"])
            .output()
            .unwrap()
            .status
            .success()
    });
    until_within("everyone to hold the project", WAIT, || {
        everyone.iter().all(|h| {
            cmd(h)
                .args(["project", "show", "--project", "demo", "--json"])
                .output()
                .unwrap()
                .status
                .success()
        })
    });

    // The bots: the CI runner, the gate, the bridge.
    let ci_run = daemon(
        &ci,
        &[
            "ci",
            "run",
            "--project",
            "demo",
            "--repo",
            ci_repo.dir.to_str().unwrap(),
            "--context",
            "test",
            "--timeout",
            "60s",
            "--",
            "sh",
            "-c",
            CHECK,
        ],
    );
    let gate_args = [
        "gate",
        "--project",
        "demo",
        "--repo",
        gate_repo.dir.to_str().unwrap(),
        "--push",
        "origin",
    ];
    let gate = daemon(&lead, &gate_args);
    let bridge = daemon(
        &lead,
        &[
            "bridge",
            "serve",
            "--lmtp",
            "127.0.0.1:0",
            "--project",
            "demo",
            "--list",
            "dev@lists.example.org",
            "--accept-unsigned",
        ],
    );
    let lmtp = bridge.wait_for("listening  lmtp ");

    // v1: patch 2 leaves a BUG in; CI fails it.
    let three = |version: u32, second: &str| -> Vec<String> {
        ada_repo.series(
            &format!("s1v{version}"),
            "main",
            version,
            &[
                ("src/a.c", "int a = 1;\nuses helper\n", "a: use the helper"),
                ("src/b.c", second, "b: add b"),
                ("src/c.c", "int c;\n", "c: add c"),
            ],
            true,
        )
    };
    let s1 = submit(&ada, &three(1, "int b; /* BUG */\n"), None);
    let st = until_status("CI to fail v1", &ada, &s1, None, |st| {
        rule_is(st, "ci:test", "failed")
    });
    assert_eq!(st["state"], "ci-failed", "{st}");

    // v2 fixes it; CI passes.
    submit(&ada, &three(2, "int b;\n"), Some(&s1));
    until_status("CI to pass v2", &ada, &s1, None, |st| {
        st["version"] == 2 && rule_is(st, "ci:test", "held")
    });

    // Bob reviews natively.
    until_status("Bob to hold v2", &bob, &s1, None, |st| st["version"] == 2);
    ok(&bob, &["review", &s1, "--reviewed-by"]);

    // Carol by email: the bridge renders v2 to the list; she answers its
    // cover letter from her mail client.
    let v2 = until_status("the lead to hold v2", &lead, &s1, None, |st| {
        st["version"] == 2
    })["revision"]
        .as_str()
        .unwrap()
        .to_string();
    let list = t.join("list.mbox");
    ok(
        &lead,
        &[
            "bridge",
            "outbox",
            "--mbox",
            list.to_str().unwrap(),
            "--from",
            "tagline@lists.example.org",
        ],
    );
    let cover_id = format!("{v2}.0@tagline");
    let rendered = std::fs::read_to_string(&list).unwrap();
    assert!(
        rendered.contains(&format!("Message-ID: <{cover_id}>")),
        "{rendered}"
    );
    let reply = t.join("carol.eml");
    write(
        &reply,
        &format!(
            "From: Carol <carol@example.org>\r\nTo: dev@lists.example.org\r\nSubject: Re: [PATCH v2 0/3] the series\r\nMessage-ID: <carol-1@example.org>\r\nIn-Reply-To: <{cover_id}>\r\nReferences: <{cover_id}>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n\r\nAll three look right to me.\r\n\r\nReviewed-by: Carol <carol@example.org>\r\n"
        ),
    );
    super::mail::deliver(&lmtp, &[reply]);
    let said = bridge.wait_for("bridged <carol-1@example.org>");
    assert!(said.contains("1 trailers vouched for"), "{said}");

    // The lead (MAINTAINERS' maintainer of src/) acks; the gate merges.
    until_status("the lead to count both reviews", &lead, &s1, None, |st| {
        rule_is(st, "reviewed-by", "held")
    });
    ok(&lead, &["review", &s1, "--acked-by"]);
    for h in everyone {
        until_status("the merge to reach every node", h, &s1, None, |st| {
            st["state"] == "merged"
        });
    }
    let log = upstream_log();
    let commits: Vec<&str> = log.split("----").filter(|c| !c.trim().is_empty()).collect();
    assert_eq!(commits.len(), 4, "base and the 3 patches: {log}");
    for c in &commits[..3] {
        for trailer in [
            "Reviewed-by: Bob",
            "Reviewed-by: Carol <carol@example.org>",
            "Acked-by: Lead",
            "Signed-off-by: Ada",
        ] {
            assert!(c.contains(trailer), "{trailer} missing in {c}");
        }
    }
    assert!(log.contains("a: use the helper") && log.contains("c: add c"));
    assert!(
        gate.said().iter().any(|l| l.contains("merged into main")),
        "{:?}",
        gate.said()
    );

    // A Nacked-by holds the gate while everything else holds.
    let main_now = ada_repo.git(&["ls-remote", "origin", "main"]);
    ada_repo.git(&["fetch", "-q", "origin"]);
    let s2 = submit(
        &ada,
        &ada_repo.series(
            "s2",
            "origin/main",
            1,
            &[("src/d.c", "int d;\n", "d: add d")],
            false,
        ),
        None,
    );
    until_status("Bob and Carol to hold s2", &carol, &s2, None, |_| true);
    until_status("Bob to hold s2", &bob, &s2, None, |_| true);
    ok(&carol, &["review", &s2, "--acked-by"]);
    let nack = ok(
        &carol,
        &[
            "review",
            &s2,
            "--nacked-by",
            "--comment",
            "on second look, no",
        ],
    );
    let nack = nack.split_whitespace().nth(1).unwrap().to_string();
    ok(&bob, &["review", &s2, "--reviewed-by"]);
    until_status("the lead to hold s2", &lead, &s2, None, |_| true);
    ok(&lead, &["review", &s2, "--reviewed-by", "--acked-by"]);
    let held = until_status(
        "s2 to be held by the nack alone",
        &lead,
        &s2,
        Some(&gate_repo.dir),
        |st| {
            rule_is(st, "ci:test", "held")
                && rule_is(st, "reviewed-by", "held")
                && rule_is(st, "maintainer-ack", "held")
                && rule_is(st, "no-nack", "failed")
        },
    );
    assert_ne!(held["state"], "merged", "{held}");
    std::thread::sleep(HOLD);
    assert_eq!(
        ada_repo.git(&["ls-remote", "origin", "main"]),
        main_now,
        "the gate merged a nacked series: {:?}",
        gate.said()
    );
    // Carol retracts her nack; the gate merges.
    ok(&carol, &["review", &s2, "--retract", &nack]);
    until_status("s2 merged", &ada, &s2, None, |st| st["state"] == "merged");

    // A batch: s3 is good; s4 (made on the old base, where nothing used the
    // helper) drops the helper, which passes its CI but breaks the build on
    // the branch. The gate is stopped while both are approved, then run once
    // with a batch of two and the check.
    drop(gate);
    let s3 = submit(
        &ada,
        &ada_repo.series(
            "s3",
            "origin/main",
            1,
            &[("src/e.c", "int e;\n", "e: add e")],
            false,
        ),
        None,
    );
    let s4 = submit(
        &ada,
        &ada_repo.series(
            "s4",
            &base,
            1,
            &[("src/lib.c", "def other\n", "lib: drop the helper")],
            false,
        ),
        None,
    );
    for s in [&s3, &s4] {
        until_status("CI to pass", &ada, s, None, |st| {
            rule_is(st, "ci:test", "held")
        });
        until_status("Bob to hold it", &bob, s, None, |_| true);
        ok(&bob, &["review", s, "--reviewed-by"]);
        until_status("Carol to hold it", &carol, s, None, |_| true);
        ok(&carol, &["review", s, "--reviewed-by"]);
        until_status("the lead to hold it", &lead, s, None, |_| true);
        ok(&lead, &["review", s, "--acked-by"]);
    }
    for s in [&s3, &s4] {
        until_status(
            "approved at the gate",
            &lead,
            s,
            Some(&gate_repo.dir),
            |st| st["state"] == "approved",
        );
    }
    let mut once = gate_args.to_vec();
    once.extend(["--once", "--batch", "2", "--", "sh", "-c", CHECK]);
    let said = ok(&lead, &once);
    assert!(
        said.contains(&format!("{} v1: merged into main", &s3[..12])),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "{} v1: not merged: the gate's check on main",
            &s4[..12]
        )) && said.contains("undefined: helper"),
        "{said}"
    );
    let files = String::from_utf8(tagline_e2e::git(
        &upstream,
        t,
        &["ls-tree", "-r", "--name-only", "main"],
    ))
    .unwrap();
    assert!(files.contains("src/e.c"), "{files}");
    let lib =
        String::from_utf8(tagline_e2e::git(&upstream, t, &["show", "main:src/lib.c"])).unwrap();
    assert_eq!(lib, "def helper\n");
    // Ada sees which series broke it, and why.
    let st = until_status("Ada to see the gate's report", &ada, &s4, None, |st| {
        st["other_ci"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c["context"] == "gate"))
    });
    assert_ne!(st["state"], "merged", "{st}");
    until_status("s3 merged at Ada's", &ada, &s3, None, |st| {
        st["state"] == "merged"
    });

    assert!(
        ci_run
            .said()
            .iter()
            .any(|l| l.starts_with(&format!("{} v1: test fail", &s1[..12]))),
        "{:?}",
        ci_run.said()
    );
    drop((ci_run, bridge, nodes));
}
