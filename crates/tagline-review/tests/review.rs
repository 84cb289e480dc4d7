//! tagline-review integration tests: the MAINTAINERS matcher against
//! get_maintainer.pl's own output on real trees (../shared/corpus).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tagline_review::maintainers::{Context, Flavor, Mailmap, Maintainers, who, who_for_patch};

fn corpus() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    assert!(
        p.is_dir(),
        "the corpus is expected at {} (shared/ beside the project)",
        p.display()
    );
    p
}

fn dirs_of(filelist: &Path) -> HashSet<String> {
    let text = std::fs::read_to_string(filelist).unwrap();
    let mut dirs = HashSet::new();
    for line in text.lines() {
        let mut acc = String::new();
        let parts: Vec<&str> = line.trim().split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            dirs.insert(acc.clone());
        }
    }
    dirs
}

struct Tally {
    name: &'static str,
    total: usize,
    exact: usize,
    same_set: usize,
    /// Cases whose expected output has "(in file)" entries: maintainers listed
    /// inside the file itself (YAML bindings), which needs the file's contents;
    /// the corpus has only the tree's file list. Compared without those parts.
    in_file: usize,
    misses: Vec<String>,
}

impl Tally {
    fn new(name: &'static str) -> Tally {
        Tally {
            name,
            total: 0,
            exact: 0,
            same_set: 0,
            in_file: 0,
            misses: Vec::new(),
        }
    }
    fn check(&mut self, what: &str, ours: &[String], theirs: &[String]) {
        self.total += 1;
        let in_file = theirs
            .iter()
            .any(|l| l.ends_with("(in file)") || l.contains(",in file)"));
        let stripped: Vec<String>;
        let theirs = if in_file {
            self.in_file += 1;
            stripped = theirs
                .iter()
                .filter(|l| !l.ends_with(" (in file)"))
                .map(|l| l.replace(",in file)", ")"))
                .collect();
            &stripped[..]
        } else {
            theirs
        };
        if ours == theirs {
            self.exact += 1;
            self.same_set += 1;
            return;
        }
        let a: HashSet<&String> = ours.iter().collect();
        let b: HashSet<&String> = theirs.iter().collect();
        if a == b {
            self.same_set += 1;
        } else if self.misses.len() < 8 {
            self.misses
                .push(format!("{what}\n  ours:   {ours:?}\n  theirs: {theirs:?}"));
        }
    }
    fn report(&self) -> f64 {
        let rate = self.same_set as f64 / self.total.max(1) as f64;
        eprintln!(
            "{}: {} cases, {} identical, {} same lines in another order ({:.1}% agreement; {} cases compared without their in-file maintainers)",
            self.name,
            self.total,
            self.exact,
            self.same_set - self.exact,
            100.0 * rate,
            self.in_file
        );
        for m in &self.misses {
            eprintln!("  MISS {m}");
        }
        rate
    }
}

fn lines(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect()
}

/// Checks every file case of the corpus tree at `root`: our `who` against
/// get_maintainer.pl's output under `key` (its run with the same options),
/// and our `--sections` output against its own.
fn check_files(
    root: &Path,
    (m, flavor, ctx): (&Maintainers, &Flavor, &Context),
    (key, tally): (&str, &mut Tally),
    sections: &mut Tally,
) {
    let text =
        std::fs::read_to_string(root.join("expected/get_maintainer-files-dev.jsonl")).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let file = v["file"].as_str().unwrap().to_string();
        let files = vec![file.clone()];
        let ours: Vec<String> = who(m, &files, flavor, ctx)
            .iter()
            .map(|r| r.to_string())
            .collect();
        tally.check(&file, &ours, &lines(&v["get_maintainer"][key]["stdout"]));
        sections.check(
            &file,
            &m.sections_output(&files),
            &lines(&v["get_maintainer"]["sections"]["stdout"]),
        );
    }
}

#[test]
fn linux_maintainers_agree_with_get_maintainer() {
    let root = corpus().join("linux-6.12");
    let dirs = dirs_of(&root.join("linux-6.12-tree-filelist.txt"));
    let text = std::fs::read_to_string(root.join("MAINTAINERS")).unwrap();
    // The CLI picks the flavour from the file itself.
    let flavor = Flavor::detect(&text);
    assert_eq!(flavor, Flavor::linux());
    let m = Maintainers::parse(&text, &flavor, &|p| dirs.contains(p));
    let ctx = Context {
        mailmap: Mailmap::parse(&std::fs::read_to_string(root.join(".mailmap")).unwrap()),
        ignore: Context::parse_ignore(
            &std::fs::read_to_string(root.join(".get_maintainer.ignore")).unwrap(),
        ),
    };
    let mut default = Tally::new("linux -f (default)");
    let mut sections = Tally::new("linux -f --sections");
    check_files(
        &root,
        (&m, &flavor, &ctx),
        ("default", &mut default),
        &mut sections,
    );
    let (d, s) = (default.report(), sections.report());
    // Measured: 97.7% and 100%; the rest are ties in Perl hash order (docs/maintainers.md).
    assert!(
        d >= 0.97 && s >= 0.99,
        "agreement fell: default {d:.3}, sections {s:.3}"
    );
}

#[test]
fn xen_maintainers_agree_with_get_maintainer() {
    let root = corpus().join("xen");
    let dirs = dirs_of(&root.join("xen-tree-filelist.txt"));
    let text = std::fs::read_to_string(root.join("MAINTAINERS")).unwrap();
    // The CLI picks the flavour from the file itself.
    let flavor = Flavor::detect(&text);
    assert_eq!(flavor, Flavor::xen());
    let m = Maintainers::parse(&text, &flavor, &|p| dirs.contains(p));
    let ctx = Context::default();
    let mut roles = Tally::new("xen -f --roles");
    let mut sections = Tally::new("xen -f --sections");
    check_files(
        &root,
        (&m, &flavor, &ctx),
        ("roles", &mut roles),
        &mut sections,
    );
    let mut patches = Tally::new("xen patches --roles");
    let text = std::fs::read_to_string(root.join("expected/history-patches-dev.jsonl")).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let patch = std::fs::read_to_string(root.join(v["patch_file"].as_str().unwrap())).unwrap();
        // These runs used get_maintainer.pl's defaults, keywords included.
        let ours: Vec<String> = who_for_patch(&m, &patch, true, &flavor, &ctx)
            .iter()
            .map(|r| r.to_string())
            .collect();
        patches.check(
            v["patch_file"].as_str().unwrap(),
            &ours,
            &lines(&v["get_maintainer"]["roles"]["stdout"]),
        );
    }
    let (r, s, p) = (roles.report(), sections.report(), patches.report());
    assert!(
        r >= 0.95 && s >= 0.95 && p >= 0.90,
        "agreement below target"
    );
}

#[test]
fn trailers_agree_with_git_interpret_trailers() {
    let root = corpus().join("xen");
    let text = std::fs::read_to_string(root.join("expected/history-patches-dev.jsonl")).unwrap();
    let (mut total, mut same) = (0, 0);
    let mut misses = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let patch = std::fs::read_to_string(root.join(v["patch_file"].as_str().unwrap())).unwrap();
        let ours: Vec<String> = tagline_review::trailers::parse(&patch)
            .iter()
            .map(|t| t.to_string())
            .collect();
        let theirs = lines(&v["trailers_git_interpret_trailers_parse"]);
        total += 1;
        if ours == theirs {
            same += 1;
        } else if misses.len() < 5 {
            misses.push(format!(
                "{}\n  ours:   {ours:?}\n  theirs: {theirs:?}",
                v["patch_file"]
            ));
        }
    }
    eprintln!("trailers: {same}/{total} patches identical to git interpret-trailers --parse");
    for m in &misses {
        eprintln!("  MISS {m}");
    }
    assert_eq!(
        same, total,
        "every Xen history patch's trailers must match git's"
    );
}

/// Differential test: random messages through our parser and through the
/// real `git interpret-trailers --parse`.
#[test]
fn trailers_agree_with_real_git_on_generated_messages() {
    let scratch = tempfile::tempdir().unwrap();
    let pieces = [
        "Reviewed-by: Ada <ada@example.org>",
        "Signed-off-by: Bob <bob@example.org>",
        "Acked-by : Carol <carol@example.org>",
        "Link: https://example.org/x",
        "Fixes: 0123abcd (\"x: y\")",
        "  continued line",
        "\tcontinued with a tab",
        "plain prose line",
        "prose: with a colon inside words",
        "https://example.org/bare-url",
        "Not a trailer because of spaces: no",
        "(cherry picked from commit 0123)",
        "",
        "",
        "---",
        "# a comment",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut checked = 0;
    let rounds: usize = std::env::var("TAGLINE_TRAILER_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    for _ in 0..rounds {
        let mut msg = String::from("Title line\n");
        if next() % 3 != 0 {
            msg.push('\n');
        }
        for _ in 0..(next() % 9) {
            let i = (next() % pieces.len() as u64) as usize;
            msg.push_str(pieces[i]);
            msg.push('\n');
        }
        let out = tagline_e2e::git_with_input(
            scratch.path(),
            scratch.path(),
            &["-c", "core.commentChar=#", "interpret-trailers", "--parse"],
            Some(msg.as_bytes()),
        );
        let theirs: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        let ours: Vec<String> = tagline_review::trailers::parse(&msg)
            .iter()
            .map(|t| t.to_string())
            .collect();
        assert_eq!(ours, theirs, "message:\n{msg}");
        checked += 1;
    }
    assert_eq!(checked, rounds);
}

/// Differential test: patch ids of real `git format-patch` output, ours and
/// `git patch-id --stable`'s, on commits of random changes made with real git.
#[test]
fn patch_ids_agree_with_real_git() {
    let dir = tempfile::tempdir().unwrap();
    let git = |args: &[&str]| tagline_e2e::git(dir.path(), dir.path(), args);
    git(&["init", "-q", "-b", "main"]);
    let mut seed: u64 = 42;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        seed >> 33
    };
    let rounds: u64 = std::env::var("TAGLINE_PATCHID_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let names = ["a.c", "b.h", "dir/c.txt", "dir/sub/d.rs", "e.md"];
    for round in 0..rounds {
        for _ in 0..=(next() % 3) {
            let name = names[(next() % names.len() as u64) as usize];
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            if next() % 7 == 0 && path.exists() {
                std::fs::remove_file(&path).unwrap();
                continue;
            }
            let mut text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
            for _ in 0..=(next() % 6) {
                let at = if lines.is_empty() {
                    0
                } else {
                    (next() as usize) % (lines.len() + 1)
                };
                match next() % 3 {
                    0 if !lines.is_empty() && at < lines.len() => {
                        lines.remove(at);
                    }
                    1 => lines.insert(
                        at,
                        format!("\tline {}  with  spaces {}", next() % 100, round),
                    ),
                    _ => lines.insert(at, format!("x = {};", next() % 1000)),
                }
            }
            text = lines.join("\n");
            if next() % 2 == 0 {
                text.push('\n');
            }
            std::fs::write(&path, text).unwrap();
        }
        git(&["add", "-A"]);
        let status = git(&["status", "--porcelain"]);
        if status.is_empty() {
            continue;
        }
        git(&[
            "commit",
            "-q",
            "-m",
            &format!("change {round}\n\nbody\n\nSigned-off-by: T <t@example.org>"),
        ]);
        let patch = git(&["format-patch", "-1", "--stdout", "HEAD"]);
        let theirs = tagline_e2e::git_patch_id(dir.path(), &patch);
        let ours = tagline_review::patchid::stable(&String::from_utf8_lossy(&patch));
        assert_eq!(
            ours,
            theirs,
            "round {round}, patch:\n{}",
            String::from_utf8_lossy(&patch)
        );
    }
}

#[test]
fn patch_ids_of_real_xen_patches_agree_with_git() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = corpus().join("xen/patches-from-history");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let theirs = tagline_e2e::git_patch_id(scratch.path(), &bytes);
        assert_eq!(
            tagline_review::patchid::stable(&String::from_utf8_lossy(&bytes)),
            theirs,
            "{}",
            path.display()
        );
        n += 1;
    }
    assert_eq!(n, 140);
}

mod rules_scenario {
    use proptest::prelude::*;

    /// A random order of `0..n` (Fisher–Yates over proptest's generator).
    fn permutation(n: usize) -> impl Strategy<Value = Vec<usize>> {
        Just(()).prop_perturb(move |_, mut rng| {
            let mut v: Vec<usize> = (0..n).collect();
            for i in (1..v.len()).rev() {
                let j = (rng.next_u32() as usize) % (i + 1);
                v.swap(i, j);
            }
            v
        })
    }
    use tagline_format::entry::{Entry, Head, create_entry};
    use tagline_format::identity::{IdentityId, IdentityPayload};
    use tagline_format::lipmaa::{has_distinct_lipmaa, lipmaa};
    use tagline_format::review::*;
    use tagline_format::{EntryId, SecretKey};
    use tagline_review::policy::Policy;
    use tagline_review::rules::{Input, Outcome, ProjectContext, State, evaluate};

    struct Feed {
        key: SecretKey,
        entries: Vec<(Entry, Option<ReviewPayload>)>,
    }

    impl Feed {
        fn new(n: u8) -> Feed {
            Feed {
                key: SecretKey::from_seed(&[n; 32]),
                entries: Vec::new(),
            }
        }
        fn push_raw(
            &mut self,
            t: &str,
            payload: Vec<u8>,
            ts: u64,
            review: Option<ReviewPayload>,
        ) -> EntryId {
            let prev = self.entries.last().map(|(e, _)| Head::of(&e.signed));
            let seq = prev.map_or(1, |h| h.seq + 1);
            let target = has_distinct_lipmaa(seq)
                .then(|| self.entries[(lipmaa(seq) - 1) as usize].0.signed.id());
            let e = create_entry(&self.key, prev.as_ref(), target, ts, t, payload).unwrap();
            let id = e.signed.id();
            self.entries.push((e, review));
            id
        }
        fn id(&mut self, p: IdentityPayload) -> EntryId {
            self.push_raw(p.type_name(), p.encode(), 1, None)
        }
        fn post(&mut self, p: ReviewPayload, ts: u64) -> EntryId {
            self.push_raw(p.type_name(), p.encode(), ts, Some(p))
        }
    }

    /// A person: a root feed and one device, joined.
    struct Person {
        root: Feed,
        dev: Feed,
    }

    fn person(n: u8) -> Person {
        let mut root = Feed::new(n);
        let mut dev = Feed::new(n + 100);
        let id = IdentityId(root.key.public());
        root.id(IdentityPayload::Genesis);
        root.id(IdentityPayload::DeviceAdd {
            device: dev.key.public(),
            from_seq: 1,
        });
        dev.id(IdentityPayload::Join { identity: id });
        Person { root, dev }
    }

    impl Person {
        fn identity(&self) -> IdentityId {
            IdentityId(self.root.key.public())
        }
    }

    fn patch(subject: &str, body: &str, pid: &str) -> Patch {
        Patch {
            subject: subject.into(),
            message: format!("{body}\n\nSigned-off-by: Ada <ada@example.org>\n"),
            author: "Ada <ada@example.org>".into(),
            diff: format!(
                "diff --git a/xen/arch/x86/{subject}.c b/xen/arch/x86/{subject}.c\n--- a/xen/arch/x86/{subject}.c\n+++ b/xen/arch/x86/{subject}.c\n@@ -1 +1 @@\n-a\n+b\n"
            ),
            patch_id: pid.into(),
        }
    }

    fn review(rev: EntryId, patch: Option<u64>, key: &str, who: &str) -> ReviewPayload {
        ReviewPayload::Review(Review {
            revision: rev,
            patch,
            trailers: vec![(key.into(), who.into())],
            comment: None,
            inline: vec![],
            retracts: None,
            mail: None,
            flagged: Vec::new(),
        })
    }

    /// Every entry of these people's feeds.
    fn entries_of(people: &[Person]) -> Vec<&(Entry, Option<ReviewPayload>)> {
        people
            .iter()
            .flat_map(|p| p.root.entries.iter().chain(p.dev.entries.iter()))
            .collect()
    }

    /// The identities these entries resolve to.
    fn registry_of(all: &[&(Entry, Option<ReviewPayload>)]) -> tagline_identity::Registry {
        let id_inputs: Vec<tagline_identity::Input<'_>> = all
            .iter()
            .map(|(e, _)| tagline_identity::Input {
                signed: &e.signed,
                payload: e.payload.as_deref(),
            })
            .collect();
        tagline_identity::resolve(&id_inputs)
    }

    /// The review-model inputs among these entries.
    fn inputs_of<'a>(all: &[&'a (Entry, Option<ReviewPayload>)]) -> Vec<Input<'a>> {
        all.iter()
            .filter_map(|(e, p)| p.as_ref().map(|p| Input::new(&e.signed, p)))
            .collect()
    }

    struct World {
        people: Vec<Person>,
        project: Project,
        project_id: EntryId,
        series: EntryId,
        v2: EntryId,
    }

    /// lead (0), author Ada (1), reviewers B (2) and C (3), CI bot (4), gate (5).
    fn world(nack: bool, retract: bool, merge: bool) -> World {
        let mut people: Vec<Person> = (0..6).map(|i| person(10 + i)).collect();
        let project = Project {
            name: "xen".into(),
            branch: "staging".into(),
            policy: "[ci]\nrequired = [\"test\"]\n[review]\nmin_reviewed_by = 2\nreviewer_roles = [\"any\"]\nrequire_maintainer_ack = true\n".into(),
            maintainers: vec![people[0].identity()],
            ci: vec![CiRole { identity: people[4].identity(), contexts: vec!["test".into()] }],
            gates: vec![people[5].identity()],
            ..Project::default()
        };
        let project_id = people[0]
            .dev
            .post(ReviewPayload::Project(project.clone()), 100);
        let v1 = people[1].dev.post(
            ReviewPayload::Revision(Revision {
                project: project_id,
                series: None,
                version: 1,
                base_commit: None,
                cover: Some(Cover {
                    subject: "[PATCH 0/2] x86: two fixes".into(),
                    body: String::new(),
                }),
                changelog: None,
                patches: vec![
                    patch("one", "first", "aaaa"),
                    patch("two", "second", "bbbb"),
                ],
                change_id: None,
                mails: None,
            }),
            200,
        );
        let ci = |rev, status| {
            ReviewPayload::Ci(CiResult {
                revision: rev,
                context: "test".into(),
                status,
                summary: "ran".into(),
                log_excerpt: None,
                log_hash: None,
                runner: None,
                duration_ms: None,
                url: None,
            })
        };
        people[4].dev.post(ci(v1, CiStatus::Fail), 300);
        // B reviews both patches of v1; only patch 1 survives into v2.
        people[2]
            .dev
            .post(review(v1, Some(1), "Reviewed-by", "B <b@example.org>"), 310);
        people[2]
            .dev
            .post(review(v1, Some(2), "Reviewed-by", "B <b@example.org>"), 311);
        let v2 = people[1].dev.post(
            ReviewPayload::Revision(Revision {
                project: project_id,
                series: Some(v1),
                version: 2,
                base_commit: None,
                cover: Some(Cover {
                    subject: "[PATCH v2 0/2] x86: two fixes".into(),
                    body: String::new(),
                }),
                changelog: Some("v2: rework patch 2".into()),
                patches: vec![
                    patch("one", "first", "aaaa"),
                    patch("two", "second, reworked", "cccc"),
                ],
                change_id: None,
                mails: None,
            }),
            400,
        );
        people[4].dev.post(ci(v2, CiStatus::Pass), 500);
        people[2]
            .dev
            .post(review(v2, Some(2), "Reviewed-by", "B <b@example.org>"), 510);
        people[3]
            .dev
            .post(review(v2, None, "Reviewed-by", "C <c@example.org>"), 520);
        people[0]
            .dev
            .post(review(v2, None, "Acked-by", "Lead <lead@example.org>"), 530);
        if nack {
            let n = people[0].dev.post(
                review(v2, Some(2), "Nacked-by", "Lead <lead@example.org>"),
                540,
            );
            if retract {
                people[0].dev.post(
                    ReviewPayload::Review(Review {
                        revision: v2,
                        patch: None,
                        trailers: vec![],
                        comment: Some("ok after all".into()),
                        inline: vec![],
                        retracts: Some(n),
                        mail: None,
                        flagged: Vec::new(),
                    }),
                    550,
                );
            }
        }
        if merge {
            people[5].dev.post(
                ReviewPayload::Merge(Merge {
                    revision: v2,
                    commits: vec!["c0ffee".into()],
                    branch: "staging".into(),
                    cites: vec![],
                }),
                600,
            );
        }
        World {
            people,
            project,
            project_id,
            series: v1,
            v2,
        }
    }

    fn run(w: &World, order: Option<&[usize]>, dup: usize) -> tagline_review::rules::Evaluation {
        run_at(w, order, dup, 10_000)
    }

    fn run_at(
        w: &World,
        order: Option<&[usize]>,
        dup: usize,
        now: u64,
    ) -> tagline_review::rules::Evaluation {
        let all = entries_of(&w.people);
        let reg = registry_of(&all);
        let mut inputs = inputs_of(&all);
        if let Some(order) = order {
            let n = inputs.len();
            inputs = order
                .iter()
                .filter(|i| **i < n)
                .map(|i| inputs[*i])
                .collect();
        }
        for i in 0..dup {
            let x = inputs[i % inputs.len()];
            inputs.push(x);
        }
        let policy = Policy::parse(&w.project.policy).unwrap();
        let ctx = ProjectContext {
            id: w.project_id,
            lead: Some(w.people[0].identity()),
            decl: &w.project,
            policy: &policy,
            maintainers_file: None,
        };
        evaluate(w.series, &inputs, &ctx, &reg, now)
    }

    fn rule<'a>(
        e: &'a tagline_review::rules::Evaluation,
        name: &str,
    ) -> &'a tagline_review::rules::RuleResult {
        e.rules
            .iter()
            .find(|r| r.rule == name)
            .unwrap_or_else(|| panic!("no rule {name}: {:?}", e.rules))
    }

    #[test]
    fn one_series_from_posting_to_merge() {
        let w = world(false, false, false);
        let e = run(&w, None, 0);
        assert_eq!(e.latest().unwrap(), (2, w.v2));
        assert_eq!(e.state, State::Approved, "{:#?}", e.rules);
        // B's v1 review of patch 1 carried (same patch-id); of patch 2 not.
        let carried: Vec<_> = e
            .trailers
            .iter()
            .filter(|t| t.carried_from == Some(1))
            .collect();
        assert_eq!(carried.len(), 1);
        assert_eq!(carried[0].patch, 1);
        assert!(
            e.uncounted
                .iter()
                .any(|u| u.reason.contains("changed since")),
            "{:?}",
            e.uncounted
        );
        assert_eq!(rule(&e, "ci:test").outcome, Outcome::Held);
        assert_eq!(rule(&e, "reviewed-by").outcome, Outcome::Held);
        assert_eq!(rule(&e, "maintainer-ack").outcome, Outcome::Held);
        assert_eq!(rule(&e, "dco").outcome, Outcome::Held);

        let nacked = run(&world(true, false, false), None, 0);
        assert_eq!(nacked.state, State::ChangesRequested);
        assert_eq!(rule(&nacked, "no-nack").outcome, Outcome::Failed);
        assert_eq!(
            run(&world(true, true, false), None, 0).state,
            State::Approved
        );
        assert_eq!(
            run(&world(false, false, true), None, 0).state,
            State::Merged
        );
    }

    /// A merge is final: a policy amended afterwards does not unmerge it.
    #[test]
    fn a_merge_stays_merged_under_a_stricter_policy() {
        let mut w = world(false, false, true);
        w.project
            .policy
            .push_str("[gate]\nretest = true\n[consensus]\nquiet_period_hours = 1000\n");
        assert_eq!(run(&w, None, 0).state, State::Merged);
    }

    #[test]
    fn missing_pieces_are_named() {
        let mut w = world(false, false, false);
        // Drop C's review and the lead's ack: reviewed-by and maintainer-ack go missing.
        w.people[3]
            .dev
            .entries
            .retain(|(_, p)| !matches!(p, Some(ReviewPayload::Review(_))));
        w.people[0]
            .dev
            .entries
            .retain(|(_, p)| !matches!(p, Some(ReviewPayload::Review(_))));
        let e = run(&w, None, 0);
        assert_eq!(e.state, State::Posted);
        let r = rule(&e, "reviewed-by");
        assert_eq!(r.outcome, Outcome::Missing);
        assert!(
            r.message.contains("patch 1 needs 1 more")
                && r.message.contains("patch 2 needs 1 more"),
            "{}",
            r.message
        );
        assert!(
            rule(&e, "maintainer-ack")
                .message
                .contains("Acked-by from a project maintainer")
        );
    }

    #[test]
    fn keys_of_no_identity_never_count() {
        let mut w = world(false, false, false);
        let mut stranger = Feed::new(77);
        for _ in 0..3 {
            stranger.post(review(w.v2, None, "Reviewed-by", "X <x@example.org>"), 700);
        }
        w.people.push(Person {
            root: Feed::new(78),
            dev: stranger,
        });
        let e = run(&w, None, 0);
        assert!(
            e.uncounted
                .iter()
                .any(|u| u.reason.contains("no known identity"))
        );
        assert_eq!(
            e.trailers.iter().filter(|t| t.key == "Reviewed-by").count(),
            run(&world(false, false, false), None, 0)
                .trailers
                .iter()
                .filter(|t| t.key == "Reviewed-by")
                .count()
        );
    }

    /// A registry holding only the identities `evaluate` consults (owners of
    /// the entries' authors, the declared roles, the email closure) gives the
    /// same answer as the whole one; one missing an author's identity does not.
    #[test]
    fn a_partial_registry_of_the_consulted_identities_is_enough() {
        use tagline_review::rules::{consulted_keys, declared_identities};
        let w = world(false, false, false);
        let all = entries_of(&w.people);
        // Plus bystanders who matter to nobody here.
        let bystanders: Vec<Person> = (0..5).map(|i| person(80 + i)).collect();
        let mut with_bystanders = all.clone();
        with_bystanders.extend(entries_of(&bystanders));
        let reg = registry_of(&with_bystanders);
        let inputs = inputs_of(&all);
        let policy = Policy::parse(&w.project.policy).unwrap();
        let ctx = ProjectContext {
            id: w.project_id,
            lead: Some(w.people[0].identity()),
            decl: &w.project,
            policy: &policy,
            maintainers_file: None,
        };
        let mut keep: std::collections::BTreeSet<IdentityId> = consulted_keys(&inputs)
            .iter()
            .filter_map(|k| reg.owner_of(k))
            .collect();
        keep.extend(declared_identities(&w.project, ctx.lead));
        keep.extend(reg.email_closure());
        let part = reg.subset(&keep);
        assert!(part.identities.len() < reg.identities.len());
        let full = evaluate(w.series, &inputs, &ctx, &reg, 10_000);
        assert_eq!(evaluate(w.series, &inputs, &ctx, &part, 10_000), full);
        keep.remove(&w.people[2].identity());
        assert_ne!(
            evaluate(w.series, &inputs, &ctx, &reg.subset(&keep), 10_000),
            full,
            "a reviewer's identity is consulted"
        );
    }

    /// An evaluation holds, as it says, until its `valid_until`: with a
    /// freeze and a quiet period, any `now` before it gives the same answer,
    /// and the answer changes at it.
    #[test]
    fn an_evaluation_holds_until_it_says() {
        let mut w = world(false, false, false);
        // Quiet period of 1 hour after the last approval (t=530 ms); a
        // freeze from 1970-01-01T02:00 to 03:00 (7.2e6..1.08e7 ms).
        w.project.policy.push_str(
            "[consensus]\nquiet_period_hours = 1\n[[freeze]]\nname = \"rc\"\nstart = 1970-01-01T02:00:00Z\nend = 1970-01-01T03:00:00Z\n",
        );
        let mut now = 600;
        let mut changes = 0;
        let strip = |mut e: tagline_review::rules::Evaluation| {
            e.valid_until = None;
            e
        };
        while let Some(until) = run_at(&w, None, 0, now).valid_until {
            assert!(until > now);
            let e = strip(run_at(&w, None, 0, now));
            for t in [now + 1, (now + until) / 2, until - 1] {
                assert_eq!(
                    strip(run_at(&w, None, 0, t)),
                    e,
                    "at {t} (valid from {now} until {until})"
                );
            }
            assert_ne!(strip(run_at(&w, None, 0, until)), e, "changes at {until}");
            now = until;
            changes += 1;
        }
        // Quiet period ends, freeze starts, freeze ends.
        assert_eq!(changes, 3);
        assert_eq!(run_at(&w, None, 0, now).state, State::Approved);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]
        #[test]
        fn order_and_duplicates_do_not_matter(order in permutation(40), dup in 0usize..10, nack in any::<bool>(), merge in any::<bool>()) {
            let w = world(nack, false, merge);
            let reference = run(&w, None, 0);
            let shuffled = run(&w, Some(&order), dup);
            prop_assert_eq!(reference, shuffled);
        }
    }

    mod amendments {
        use super::*;
        use tagline_review::project::resolve;

        /// Lead (0), maintainers 1..=3, outsider 4. The declaration asks for
        /// `quorum` maintainers.
        struct Amend {
            people: Vec<Person>,
            decl: EntryId,
        }

        fn decl(quorum: u64, maintainers: &[IdentityId], branch: &str) -> Project {
            Project {
                name: "xen".into(),
                branch: branch.into(),
                policy: format!("[amend]\nmaintainer_quorum = {quorum}\n"),
                maintainers: maintainers.to_vec(),
                ..Project::default()
            }
        }

        fn setup(quorum: u64) -> Amend {
            let mut people: Vec<Person> = (0..5).map(|i| person(40 + i)).collect();
            let m: Vec<IdentityId> = people[1..=3].iter().map(Person::identity).collect();
            let d = people[0]
                .dev
                .post(ReviewPayload::Project(decl(quorum, &m, "staging")), 100);
            Amend { people, decl: d }
        }

        impl Amend {
            fn maintainers(&self) -> Vec<IdentityId> {
                self.people[1..=3].iter().map(Person::identity).collect()
            }
            fn propose(&mut self, who: usize, branch: &str, quorum: u64, ts: u64) -> EntryId {
                let mut p = decl(quorum, &self.maintainers(), branch);
                p.amends = Some(self.decl);
                self.people[who].dev.post(ReviewPayload::Project(p), ts)
            }
            /// (branch in force, applied, pending supporters, ignored) for
            /// the inputs taken in `order` (indices), with duplicates.
            fn resolve(
                &self,
                order: Option<&[usize]>,
            ) -> (String, Vec<EntryId>, Vec<usize>, usize) {
                let all = entries_of(&self.people);
                let reg = registry_of(&all);
                let mut inputs = inputs_of(&all);
                if let Some(order) = order {
                    let n = inputs.len();
                    let mut v: Vec<Input<'_>> = order
                        .iter()
                        .filter(|i| **i < n)
                        .map(|i| inputs[*i])
                        .collect();
                    assert_eq!(v.len(), n, "the order is a permutation of every input");
                    // And duplicates.
                    v.extend(inputs.iter().take(3).copied());
                    inputs = v;
                }
                let declaring = *inputs.iter().find(|i| i.id == self.decl).unwrap();
                let r = resolve(&declaring, &inputs, &reg).unwrap();
                (
                    r.decl.branch.clone(),
                    r.applied,
                    r.pending.iter().map(|p| p.supporters.len()).collect(),
                    r.ignored.len(),
                )
            }
        }

        #[test]
        fn a_quorum_of_maintainers_amends_and_others_do_not() {
            let mut a = setup(2);
            a.propose(1, "next", 2, 200);
            a.propose(4, "outsider", 2, 210);
            assert_eq!(
                a.resolve(None),
                ("staging".into(), vec![], vec![1], 1),
                "one maintainer is a proposal; an outsider counts for nothing"
            );
            // The same maintainer again does not make two.
            a.propose(1, "next", 2, 215);
            assert_eq!(a.resolve(None).2, vec![1]);
            // A different declaration is a different proposal.
            a.propose(3, "other", 2, 220);
            assert_eq!(a.resolve(None).2, vec![1, 1]);
            let second = a.propose(2, "next", 2, 230);
            assert_eq!(a.resolve(None), ("next".into(), vec![second], vec![], 1));
        }

        #[test]
        fn the_lead_always_amends_and_resets_proposals() {
            let mut a = setup(2);
            a.propose(1, "next", 2, 200);
            let lead = a.propose(0, "lead-branch", 2, 210);
            a.propose(2, "next", 2, 220);
            let (branch, applied, pending, _) = a.resolve(None);
            assert_eq!((branch.as_str(), applied), ("lead-branch", vec![lead]));
            assert_eq!(
                pending,
                vec![1],
                "support given before the lead's amendment is void"
            );
        }

        #[test]
        fn without_a_quorum_only_the_lead_amends() {
            let mut a = setup(0);
            a.propose(1, "next", 0, 200);
            a.propose(2, "next", 0, 210);
            a.propose(3, "next", 0, 220);
            assert_eq!(a.resolve(None), ("staging".into(), vec![], vec![], 3));
            // A quorum amendment that sets the quorum to 0 locks maintainers out.
            let mut a = setup(1);
            let first = a.propose(1, "next", 0, 200);
            a.propose(2, "again", 0, 210);
            assert_eq!(a.resolve(None), ("next".into(), vec![first], vec![], 1));
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 32, .. ProptestConfig::default() })]
            #[test]
            fn arrival_order_does_not_matter(order in permutation(12)) {
                let mut a = setup(2);
                a.propose(1, "next", 2, 200);
                a.propose(3, "other", 2, 205);
                a.propose(2, "next", 2, 210);
                a.propose(3, "third", 2, 220);
                prop_assert_eq!(a.resolve(None), a.resolve(Some(&order)));
            }
        }
    }
}
