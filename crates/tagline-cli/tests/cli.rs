//! Runs the real `tagline` binary in temporary homes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failure report"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tagline_e2e::rule;

fn tagline(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tagline"))
        .args(args)
        .env("TAGLINE_HOME", home)
        .env("TAGLINE_STATE_DIR", home.parent().unwrap().join("state"))
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        pipe.write_all(s.as_bytes()).unwrap();
    }
    drop(pipe);
    child.wait_with_output().unwrap()
}

fn ok(home: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = tagline(home, args, stdin);
    assert!(
        out.status.success(),
        "tagline {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(home: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let out = tagline(home, args, stdin);
    assert!(
        !out.status.success(),
        "tagline {args:?} unexpectedly succeeded"
    );
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "expected one line on stderr, got {err:?}"
    );
    assert!(err.starts_with("tagline: error: "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    err
}

#[test]
fn init_publish_log_export_import_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let out = ok(&a, &["init"], None);
    assert!(
        out.contains("device   tlk1") && out.contains("identity tli1"),
        "{out}"
    );
    // The key file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(a.join("keys/device.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    fails(&a, &["init"], None);

    let id: serde_json::Value = serde_json::from_str(&ok(&a, &["id", "--json"], None)).unwrap();
    let feed = id["feed"].as_str().unwrap().to_string();
    assert!(feed.starts_with("tlk1"));

    for i in 0..5 {
        let out = ok(&a, PUBLISH_NOTE, Some(&format!(r#"{{"0": "note {i}"}}"#)));
        // seq 1 of the device feed is its join entry (written by init).
        assert!(out.starts_with(&format!("{} tle1", i + 2)), "{out}");
    }
    let file = tmp.path().join("payload.json");
    std::fs::write(&file, r#"{"context": "build", "ok": true}"#).unwrap();
    ok(
        &a,
        &[
            "publish",
            "--type",
            "example/ci",
            "--json",
            file.to_str().unwrap(),
        ],
        None,
    );

    let log = ok(&a, &["log"], None);
    assert!(log.contains("\"note 3\""), "{log}");
    let lines: Vec<serde_json::Value> = ok(&a, &["log", "--json"], None)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0]["type"], "tagline/device/join");
    assert_eq!(lines[6]["seq"], 7);
    assert_eq!(lines[6]["type"], "example/ci");
    assert_eq!(lines[6]["payload"]["context"], "build");
    assert_eq!(lines[1]["backlink"], lines[0]["id"]);

    let export = tmp.path().join("a.feed");
    ok(&a, &["export", "-o", export.to_str().unwrap()], None);
    ok(&b, &["init"], None);
    let out = ok(&b, &["import", export.to_str().unwrap()], None);
    assert!(out.contains("imported 7 entries"), "{out}");
    let again: serde_json::Value = serde_json::from_str(&ok(
        &b,
        &["import", "--json", export.to_str().unwrap()],
        None,
    ))
    .unwrap();
    assert_eq!(again["imported"], 0);
    assert_eq!(again["already_present"], 7);
    let log_b = ok(&b, &["log", &feed, "--json"], None);
    assert_eq!(log_b, ok(&a, &["log", "--json"], None));
    let out = ok(&b, &["verify", "--rebuild-indexes"], None);
    assert!(out.contains("rebuilt the indexes of 10 entries"), "{out}");
    let v: serde_json::Value = serde_json::from_str(&ok(&b, &["verify", "--json"], None)).unwrap();
    // a's 7 device-feed entries, plus b's own 3 (root: genesis, device-add; device: join).
    assert_eq!(v["entries"], 10);
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn tampered_export_is_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let c = tmp.path().join("c");
    ok(&a, &["init"], None);
    for i in 0..3 {
        ok(&a, PUBLISH_NOTE, Some(&format!(r#"{{"0": "n{i}"}}"#)));
    }
    let export = tmp.path().join("a.feed");
    ok(&a, &["export", "-o", export.to_str().unwrap()], None);
    let good = std::fs::read(&export).unwrap();
    ok(&c, &["init"], None);
    // Flip one bit in each region of the file in turn: nothing is ever imported.
    let mut refused = 0;
    for pos in (8..good.len()).step_by(17) {
        let mut bad = good.clone();
        bad[pos] ^= 0x04;
        let path = tmp.path().join("bad.feed");
        std::fs::write(&path, &bad).unwrap();
        let err = fails(&c, &["import", path.to_str().unwrap()], None);
        assert!(err.contains("refusing"), "{err}");
        refused += 1;
    }
    assert!(refused > 10);
    let v: serde_json::Value = serde_json::from_str(&ok(&c, &["verify", "--json"], None)).unwrap();
    assert_eq!(v["entries"], 3, "only c's own identity entries");
    // A signature error names the entry.
    let mut bad = good.clone();
    let n = bad.len();
    // The last record ends with its payload; the signature sits before it. Find the
    // last signature by searching for the 0x58 0x40 head.
    let sig_at = bad.windows(2).rposition(|w| w == [0x58, 0x40]).unwrap() + 2;
    assert!(sig_at < n);
    bad[sig_at + 40] ^= 1;
    let path = tmp.path().join("badsig.feed");
    std::fs::write(&path, &bad).unwrap();
    let err = fails(&c, &["import", path.to_str().unwrap()], None);
    assert!(err.contains("seq 4") && err.contains("signature"), "{err}");
}

#[test]
fn errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().join("h");
    let err = fails(&h, &["log"], None);
    assert!(err.contains("tagline init"), "{err}");
    ok(&h, &["init"], None);
    let err = fails(&h, PUBLISH_NOTE, Some(r#"{"0": 1.5}"#));
    assert!(err.contains("float"), "{err}");
    let err = fails(
        &h,
        &["publish", "--type", "Bad Type", "--json", "-"],
        Some(r#"{"0": "x"}"#),
    );
    assert!(err.contains("payload type"), "{err}");
    let err = fails(&h, PUBLISH_NOTE, Some(r#"{"1": "x"}"#));
    assert!(err.contains("tagline/note"), "{err}");
    let err = fails(&h, &["log", "tle1qqqq"], None);
    assert!(err.contains("not a feed key"), "{err}");
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, b"hello there, not a feed").unwrap();
    let err = fails(&h, &["import", junk.to_str().unwrap()], None);
    assert!(err.contains("magic"), "{err}");
    // A key file readable by others is refused, as ssh does.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        h.join("keys/device.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = fails(&h, &["id"], None);
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn completions_are_generated() {
    let tmp = tempfile::tempdir().unwrap();
    let out = ok(tmp.path(), &["completions", "bash"], None);
    assert!(out.contains("tagline") && out.contains("publish"));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The identity id of a home.
fn identity_of(h: &Path) -> String {
    json_of(&ok(h, &["id", "--json"], None))["identity"]
        .as_str()
        .unwrap()
        .to_string()
}

fn json_of(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap()
}

#[test]
fn identity_with_two_devices_rotation_and_offline_root() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let out = ok(&a, &["init"], None);
    assert!(out.contains("identity tli1"), "{out}");
    let id = json_of(&ok(&a, &["id", "--json"], None))["identity"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&a, &["identity", "set-name", "Ada Lovelace"], None);
    let out = ok(&a, &["identity", "add-email", "Ada@Example.org"], None);
    assert!(out.contains("tagline-email-proof-"), "{out}");

    // A second machine joins.
    ok(&b, &["init", "--no-identity"], None);
    let out = ok(&b, &["device", "request", &id], None);
    let b_dev = json_of(&ok(&b, &["id", "--json"], None))["feed"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        out.contains(&format!("tagline device add {b_dev}")),
        "{out}"
    );
    ok(&a, &["device", "add", &b_dev], None);
    ok(&b, PUBLISH_NOTE, Some(r#"{"0": "from b"}"#));

    // Exchange feeds by export/import: b's device feed to a, a's identity feed to b.
    transfer(tmp.path(), &b, &a, &b_dev);
    let root = json_of(&ok(&a, &["identity", "show", "--json"], None))["roots"][0]["key"]
        .as_str()
        .unwrap()
        .to_string();
    transfer(tmp.path(), &a, &b, &root);
    let a_dev = json_of(&ok(&a, &["id", "--json"], None))["feed"]
        .as_str()
        .unwrap()
        .to_string();
    transfer(tmp.path(), &a, &b, &a_dev);

    // A second address, vouched for by b (as a project lead would): verified.
    ok(
        &a,
        &["identity", "add-email", "ada@lists.example.org"],
        None,
    );
    ok(
        &b,
        &["identity", "vouch", &id, "ada@lists.example.org"],
        None,
    );
    transfer(tmp.path(), &b, &a, &b_dev);
    let show = json_of(&ok(&a, &["identity", "show", "--json"], None));
    let emails = show["emails"].as_array().unwrap();
    let vouched = emails
        .iter()
        .find(|e| e["address"] == "ada@lists.example.org")
        .unwrap();
    assert_eq!(vouched["verified"], true, "{show}");
    assert_eq!(vouched["proofs"][0]["by"], b_dev.as_str());
    let human = ok(&a, &["identity", "show"], None);
    assert!(
        human.contains("ada@example.org  claimed, not verified"),
        "{human}"
    );
    assert!(
        human.contains("ada@lists.example.org  verified (attestation by"),
        "{human}"
    );
    ok(
        &a,
        &["identity", "remove-email", "ada@lists.example.org"],
        None,
    );

    for home in [&a, &b] {
        let show = json_of(&ok(home, &["identity", "show", "--json"], None));
        assert_eq!(show["name"], "Ada Lovelace");
        assert_eq!(show["emails"][0]["address"], "ada@example.org");
        assert_eq!(show["emails"][0]["verified"], false);
        let devices = show["devices"].as_array().unwrap();
        assert_eq!(devices.len(), 2, "{show}");
        assert!(devices.iter().all(|d| d["joined"] == true), "{show}");
        assert_eq!(
            devices.iter().filter(|d| d["this_device"] == true).count(),
            1
        );
    }

    // Revoke b's device after its seq 1: the note at seq 2 counts for nobody.
    ok(&a, &["device", "revoke", &b_dev, "--after", "1"], None);
    let show = json_of(&ok(&a, &["identity", "show", "--json"], None));
    let bd = show["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == b_dev.as_str())
        .unwrap()
        .clone();
    assert_eq!(bd["last_valid_seq"], 1);
    let err = fails(
        &a,
        &[
            "device",
            "revoke",
            "tlk1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
            "--after",
            "1",
        ],
        None,
    );
    assert!(err.contains("device key"), "{err}");

    // The root key kept offline.
    let offline = tmp.path().join("root.offline");
    ok(
        &a,
        &["identity", "export-root", offline.to_str().unwrap()],
        None,
    );
    ok(&a, &["identity", "forget-root"], None);
    let err = fails(&a, &["identity", "set-name", "X"], None);
    assert!(err.contains("--root-key"), "{err}");
    ok(
        &a,
        &[
            "identity",
            "set-name",
            "Ada L.",
            "--root-key",
            offline.to_str().unwrap(),
        ],
        None,
    );

    // Rotation: the new root countersigns; the identity keeps its id.
    std::fs::copy(&offline, a.join("keys/root.key")).unwrap();
    ok(&a, &["identity", "rotate"], None);
    let show = json_of(&ok(&a, &["identity", "show", "--json"], None));
    assert_eq!(show["id"], id.as_str());
    assert_eq!(show["roots"].as_array().unwrap().len(), 2);
    assert_eq!(show["roots"][0]["key"], root.as_str());
    assert!(show["roots"][0]["last_seq"].is_u64());
    // The old root no longer works.
    let err = fails(
        &a,
        &[
            "identity",
            "set-name",
            "Old root",
            "--root-key",
            offline.to_str().unwrap(),
        ],
        None,
    );
    assert!(err.contains("not the current root"), "{err}");
    ok(&a, &["identity", "set-name", "Ada, rotated"], None);
    assert_eq!(
        json_of(&ok(&a, &["identity", "show", "--json"], None))["name"],
        "Ada, rotated"
    );
}

/// `tagline publish` of one note, as JSON on stdin.
const PUBLISH_NOTE: &[&str] = &["publish", "--type", "tagline/note", "--json", "-"];

/// A data dir `a` and a copy of it that appended first: returns both, the
/// device feed they share, and the error the original gets on its next append.
fn diverged_copy(tmp: &Path) -> (PathBuf, PathBuf, String, String) {
    let a = tmp.join("a");
    let copy = tmp.join("a-copy");
    ok(&a, &["init"], None);
    let dev = json_of(&ok(&a, &["id", "--json"], None))["feed"]
        .as_str()
        .unwrap()
        .to_string();
    copy_dir(&a, &copy);
    ok(&copy, PUBLISH_NOTE, Some(r#"{"0": "on the copy"}"#));
    let err = fails(&a, PUBLISH_NOTE, Some(r#"{"0": "on the original"}"#));
    (a, copy, dev, err)
}

#[test]
fn a_copied_data_dir_cannot_fork_silently_and_recovers_with_a_new_device() {
    let tmp = tempfile::tempdir().unwrap();
    // The copy appends first; then the original is refused.
    let (a, copy, dev, err) = diverged_copy(tmp.path());
    assert!(
        err.contains("--i-know-this-is-the-only-copy") && err.contains("fork"),
        "{err}"
    );

    // Forced: the feed forks. Importing the copy's feed yields a fork proof.
    ok(
        &a,
        &[
            "publish",
            "--i-know-this-is-the-only-copy",
            "--type",
            "tagline/note",
            "--json",
            "-",
        ],
        Some(r#"{"0": "forced"}"#),
    );
    let copy_feed = tmp.path().join("copy.feed");
    ok(
        &copy,
        &["export", &dev, "-o", copy_feed.to_str().unwrap()],
        None,
    );
    let err = fails(&a, &["import", copy_feed.to_str().unwrap()], None);
    assert!(err.contains("fork"), "{err}");
    let v = json_of(&ok(&a, &["verify", "--json"], None));
    assert_eq!(v["forks"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["forks"][0]["seq"], 2);

    // The forked device can write no more; replacing it revokes it at the fork point.
    let err = fails(&a, PUBLISH_NOTE, Some(r#"{"0": "x"}"#));
    assert!(err.contains("device replace"), "{err}");
    ok(&a, &["device", "replace"], None);
    let out = ok(&a, PUBLISH_NOTE, Some(r#"{"0": "new device"}"#));
    assert!(out.starts_with("2 tle1"), "{out}");
    let show = json_of(&ok(&a, &["identity", "show", "--json"], None));
    let old = show["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == dev.as_str())
        .unwrap()
        .clone();
    assert_eq!(old["last_valid_seq"], 1);
    let new = show["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["this_device"] == true)
        .unwrap()
        .clone();
    assert_ne!(new["key"], dev.as_str());
    assert_eq!(new["last_valid_seq"], serde_json::Value::Null);
    ok(&a, &["verify"], None);
}

#[test]
fn importing_the_newer_copy_resolves_the_guard() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, copy, dev, err) = diverged_copy(tmp.path());
    assert!(err.contains("would fork"), "{err}");
    transfer(tmp.path(), &copy, &a, &dev);
    let out = ok(&a, PUBLISH_NOTE, Some(r#"{"0": "after catching up"}"#));
    assert!(out.starts_with("3 tle1"), "{out}");
    // Now the copy is behind, and is refused in turn.
    let err = fails(&copy, PUBLISH_NOTE, Some(r#"{"0": "stale"}"#));
    assert!(err.contains("would fork"), "{err}");
    ok(&a, &["verify"], None);
}

#[test]
fn maintainers_prints_what_get_maintainer_prints() {
    // A real Xen patch from the corpus, compared with get_maintainer.pl's output.
    let xen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/xen");
    assert!(xen.is_dir(), "corpus missing at {}", xen.display());
    let expected = std::fs::read_to_string(xen.join("expected/history-patches-dev.jsonl")).unwrap();
    let first: serde_json::Value = serde_json::from_str(expected.lines().next().unwrap()).unwrap();
    let patch = xen.join(first["patch_file"].as_str().unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_tagline"))
        .args(["maintainers", "--keywords", "--file"])
        .arg(xen.join("MAINTAINERS"))
        .arg(&patch)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let theirs: Vec<String> = first["get_maintainer"]["roles"]["stdout"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(ours, theirs);

    // --json and --sections on a small tree of our own; a missing file is one clear error.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join("drivers/foo")).unwrap();
    std::fs::write(
        tmp.path().join("MAINTAINERS"),
        "FOO\nM:\tAda <ada@example.org>\nL:\tfoo@lists.example.org\nS:\tMaintained\nF:\tdrivers/foo\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tagline"))
            .current_dir(tmp.path())
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["maintainers", "--json", "-f", "drivers/foo/a.c"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["email"], "Ada <ada@example.org>");
    assert_eq!(v[0]["role"], "maintainer:FOO");
    assert_eq!(v[1]["role"], "open list:FOO");
    let out = run(&["maintainers", "--sections", "-f", "drivers/foo/a.c"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("F:\tdrivers/foo/"),
        "a directory pattern gains its slash"
    );
    let out = run(&["maintainers", "--file", "nope/MAINTAINERS", "-f", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("tagline: error: cannot read nope/MAINTAINERS")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
}

/// Copies `feed` from one home into another through an export file in `tmp`.
fn transfer(tmp: &Path, from: &Path, to: &Path, feed: &str) {
    let file = tmp.join(format!("{feed}.feed"));
    ok(from, &["export", feed, "-o", file.to_str().unwrap()], None);
    ok(to, &["import", file.to_str().unwrap()], None);
}

/// Exchanges one home's device and identity feeds into another (offline
/// sync), so the device counts for its identity there.
fn sync_feed(tmp: &Path, from: &Path, to: &Path) {
    tagline_e2e::copy_feeds(&|h, a| ok(h, a, None), from, to, tmp);
}

#[test]
fn a_series_from_format_patch_to_approved() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let git = |args: &[&str]| tagline_e2e::git(&t.join("repo"), t, args);
    tagline_e2e::repo_with(&t.join("repo"), t, &[]);
    std::fs::write(t.join("repo/a.c"), "int a;\n").unwrap();
    git(&["add", "a.c"]);
    git(&["commit", "-q", "-s", "-m", "a: add a"]);
    std::fs::write(t.join("repo/b.c"), "int b;\n").unwrap();
    git(&["add", "b.c"]);
    git(&["commit", "-q", "-s", "-m", "b: add b"]);
    git(&["format-patch", "-q", "-2", "-o", "../v1"]);

    let (lead, ada, bob) = (t.join("lead"), t.join("ada"), t.join("bob"));
    for h in [&lead, &ada, &bob] {
        ok(h, &["init"], None);
    }
    let lead_id = json_of(&ok(&lead, &["id", "--json"], None))["identity"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(
        t.join("policy.toml"),
        "[ci]\nrequired = [\"test\"]\n[review]\nmin_reviewed_by = 1\nreviewer_roles = [\"any\"]\n",
    )
    .unwrap();
    let bad = t.join("bad.toml");
    std::fs::write(&bad, "[review]\nmin_reviewd_by = 1\n").unwrap();
    let err = fails(
        &lead,
        &[
            "project",
            "create",
            "--name",
            "demo",
            "--policy",
            bad.to_str().unwrap(),
        ],
        None,
    );
    assert!(err.contains("min_reviewd_by"), "{err}");
    let ci = format!("{lead_id}:test");
    ok(
        &lead,
        &[
            "project",
            "create",
            "--name",
            "demo",
            "--policy",
            t.join("policy.toml").to_str().unwrap(),
            "--maintainer",
            &lead_id,
            "--ci",
            &ci,
        ],
        None,
    );

    sync_feed(t, &lead, &ada);
    let mut patches: Vec<String> = std::fs::read_dir(t.join("v1"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    patches.sort();
    let mut args = vec!["submit"];
    args.extend(patches.iter().map(String::as_str));
    let out = ok(&ada, &args, None);
    assert!(out.contains("v1 (2 patches) in demo"), "{out}");
    let series = json_of(&ok(&ada, &["series", "--json"], None))[0]["series"]
        .as_str()
        .unwrap()
        .to_string();
    let prefix = &series[..16];
    let st = json_of(&ok(&ada, &["status", prefix, "--json"], None));
    assert_eq!(st["state"], "posted");

    // Bob reviews; the lead's CI reports a pass.
    sync_feed(t, &ada, &bob);
    sync_feed(t, &lead, &bob);
    ok(&bob, &["review", prefix, "--reviewed-by"], None);
    let err = fails(
        &bob,
        &["review", prefix, "--patch", "9", "--acked-by"],
        None,
    );
    assert!(err.contains("patch 9 does not exist"), "{err}");
    sync_feed(t, &ada, &lead);
    ok(
        &lead,
        &[
            "ci",
            "report",
            prefix,
            "--context",
            "test",
            "--status",
            "pass",
            "--summary",
            "ok",
        ],
        None,
    );

    sync_feed(t, &bob, &ada);
    sync_feed(t, &lead, &ada);
    let st = json_of(&ok(&ada, &["status", prefix, "--json"], None));
    assert_eq!(st["state"], "approved", "{st}");
    let human = ok(&ada, &["status", prefix], None);
    assert!(
        human.contains("state: approved") && human.contains("Reviewed-by"),
        "{human}"
    );
    assert_eq!(
        json_of(&ok(
            &ada,
            &["series", "--state", "approved", "--json"],
            None
        ))
        .as_array()
        .unwrap()
        .len(),
        1
    );

    // `tagline am` applies with real `git am`, and the commits carry the trailers.
    let mbox = t.join("series.mbox");
    ok(&ada, &["am", prefix, "-o", mbox.to_str().unwrap()], None);
    git(&["checkout", "-q", "-b", "apply", "HEAD~2"]);
    git(&["am", "-q", mbox.to_str().unwrap()]);
    let log = Command::new("git")
        .args(["log", "--format=%B%n---", "-2"])
        .current_dir(t.join("repo"))
        .output()
        .unwrap();
    let log = String::from_utf8(log.stdout).unwrap();
    assert_eq!(log.matches("Reviewed-by: ").count(), 2, "{log}");
    assert_eq!(
        log.matches("Signed-off-by: Ada <ada@example.org>").count(),
        2,
        "{log}"
    );
    let same = Command::new("git")
        .args(["diff", "--quiet", "main", "apply"])
        .current_dir(t.join("repo"))
        .status()
        .unwrap();
    assert!(
        same.success(),
        "the applied series differs from the original commits"
    );

    // v2: patch 2 reworked. Bob's Reviewed-by carries to patch 1 only.
    git(&["checkout", "-q", "main"]);
    std::fs::write(t.join("repo/b.c"), "int b = 2;\n").unwrap();
    git(&["commit", "-q", "-a", "--amend", "--no-edit"]);
    git(&["format-patch", "-q", "-v2", "-2", "-o", "../v2"]);
    let mut v2: Vec<String> = std::fs::read_dir(t.join("v2"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    v2.sort();
    let mut args = vec!["submit", "--series", prefix];
    args.extend(v2.iter().map(String::as_str));
    let out = ok(&ada, &args, None);
    assert!(out.contains(" v2 (2 patches)"), "{out}");
    let inter = ok(&ada, &["interdiff", prefix, "1", "2"], None);
    assert!(inter.contains("1: a: add a = 1: a: add a"), "{inter}");
    assert!(
        inter.contains("2: b: add b ! 2: b: add b") && inter.contains("+int b = 2;"),
        "{inter}"
    );
    let st = json_of(&ok(&ada, &["status", prefix, "--json"], None));
    assert_eq!(st["version"], 2);
    let trailers = st["trailers"].as_array().unwrap();
    assert_eq!(trailers.len(), 1, "{st}");
    assert_eq!(trailers[0]["patch"], 1);
    assert_eq!(trailers[0]["carried_from"], 1);
    assert_eq!(st["state"], "posted");
    assert!(
        st["uncounted"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["reason"].as_str().unwrap().contains("changed since")),
        "{st}"
    );
    let show = ok(&ada, &["show", prefix, "--version", "1"], None);
    assert!(show.contains("v1  2 patches"), "{show}");
    let err = fails(&ada, &["show", prefix, "--version", "7"], None);
    assert!(err.contains("no v7") && err.contains("v1, v2"), "{err}");

    // The maintainer's pre-filters.
    let count = |home: &Path, args: &[&str]| -> usize {
        let mut a = vec!["series", "--json"];
        a.extend_from_slice(args);
        json_of(&ok(home, &a, None)).as_array().unwrap().len()
    };
    // The listing read a cached summary of the series while it was approved;
    // v2 made it stale.
    assert_eq!(count(&ada, &["--state", "approved"]), 0);
    assert_eq!(count(&ada, &["--state", "posted"]), 1);
    assert_eq!(count(&ada, &["--path", "b*"]), 1);
    assert_eq!(count(&ada, &["--path", "docs/**"]), 0);
    assert_eq!(count(&ada, &["--has", "Reviewed-by"]), 1);
    assert_eq!(count(&ada, &["--has", "Tested-by"]), 0);
    assert_eq!(
        count(&ada, &["--lacks", "Tested-by", "--keyword", "add b"]),
        1
    );
    assert_eq!(count(&ada, &["--keyword", "no such words"]), 0);
    assert_eq!(
        count(&ada, &["--needs-my-review"]),
        0,
        "the author's own series"
    );
    sync_feed(t, &ada, &lead);
    sync_feed(t, &bob, &lead);
    assert_eq!(
        count(&lead, &["--needs-my-review"]),
        1,
        "the lead has not reviewed it"
    );
    assert_eq!(count(&bob, &["--needs-my-review"]), 0, "bob reviewed it");
    let err = fails(&ada, &["series", "--path", "a[b"], None);
    assert!(err.contains("not a glob"), "{err}");
    // Short numbers local to the node name series too.
    assert_eq!(
        json_of(&ok(&ada, &["series", "--json"], None))[0]["number"],
        1
    );
    assert_eq!(
        json_of(&ok(&ada, &["status", "1", "--json"], None))["series"],
        series.as_str()
    );
    assert_eq!(
        json_of(&ok(&ada, &["status", "#1", "--json"], None))["series"],
        series.as_str()
    );
    let err = fails(&ada, &["status", "42"], None);
    assert!(err.contains("no series is numbered 42"), "{err}");
}

#[test]
fn maintainers_file_decides_whose_acks_are_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = t.join("repo");
    std::fs::create_dir_all(repo.join("drivers/b")).unwrap();
    let git = |args: &[&str]| tagline_e2e::git(&repo, t, args);
    tagline_e2e::repo_with(
        &repo,
        t,
        &[(
            "MAINTAINERS",
            "A CORE\nM:\tLead <lead@example.org>\nS:\tMaintained\nF:\ta.c\n\nB DRIVER\nM:\tCarol <carol@example.org>\nS:\tMaintained\nF:\tdrivers/b/\n",
        )],
    );
    std::fs::write(repo.join("a.c"), "int a;\n").unwrap();
    std::fs::write(repo.join("drivers/b/b.c"), "int b;\n").unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-s", "-m", "a, b: add"]);
    git(&["format-patch", "-q", "--base=HEAD~1", "-1", "-o", "../v1"]);

    let (lead, ada, carol) = (t.join("lead"), t.join("ada"), t.join("carol"));
    for h in [&lead, &ada, &carol] {
        ok(h, &["init"], None);
    }
    let (lead_id, carol_id) = (identity_of(&lead), identity_of(&carol));
    ok(&lead, &["identity", "add-email", "lead@example.org"], None);
    ok(
        &carol,
        &["identity", "add-email", "carol@example.org"],
        None,
    );
    ok(
        &lead,
        &["identity", "vouch", &lead_id, "lead@example.org"],
        None,
    );
    ok(
        &lead,
        &["identity", "vouch", &carol_id, "carol@example.org"],
        None,
    );
    std::fs::write(
        t.join("policy.toml"),
        "[review]\nrequire_maintainer_ack = true\n",
    )
    .unwrap();
    ok(
        &lead,
        &[
            "project",
            "create",
            "--name",
            "p",
            "--maintainers-file",
            "--policy",
            t.join("policy.toml").to_str().unwrap(),
        ],
        None,
    );

    for (from, to) in [(&lead, &ada), (&carol, &ada)] {
        sync_feed(t, from, to);
    }
    let patch: Vec<String> = std::fs::read_dir(t.join("v1"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    ok(&ada, &["submit", &patch[0]], None);
    let repo_arg = repo.to_str().unwrap();
    let status = || {
        json_of(&ok(
            &ada,
            &["status", "1", "--repo", repo_arg, "--json"],
            None,
        ))
    };
    let (outcome, msg) = rule(&status(), "maintainer-ack");
    assert_eq!(outcome, "missing");
    assert!(
        msg.contains("A CORE (a.c)") && msg.contains("B DRIVER (drivers/b/b.c)"),
        "{msg}"
    );

    // The lead acks: a.c is covered, drivers/b still needs Carol.
    sync_feed(t, &ada, &lead);
    ok(&lead, &["review", "1", "--acked-by"], None);
    sync_feed(t, &lead, &ada);
    let (_, msg) = rule(&status(), "maintainer-ack");
    assert!(!msg.contains("A CORE") && msg.contains("B DRIVER"), "{msg}");

    sync_feed(t, &ada, &carol);
    sync_feed(t, &lead, &carol);
    ok(&carol, &["review", "1", "--acked-by"], None);
    sync_feed(t, &carol, &ada);
    let st = status();
    assert_eq!(st["state"], "approved", "{st}");

    // v2 straight from a git range, with a cover letter file.
    std::fs::write(repo.join("a.c"), "int a = 2;\n").unwrap();
    git(&["commit", "-q", "-a", "--amend", "--no-edit"]);
    let cover = t.join("cover.txt");
    std::fs::write(&cover, "a, b: add them\n\nWhy this series exists.\n").unwrap();
    let out = ok(
        &ada,
        &[
            "submit",
            "--repo",
            repo_arg,
            "--series",
            "1",
            "--version",
            "2",
            "--cover",
            cover.to_str().unwrap(),
            "HEAD~1..HEAD",
        ],
        None,
    );
    assert!(out.contains(" v2 (1 patches)"), "{out}");
    // No upstream here: the base is the range's first commit's parent.
    let log = ok(&ada, &["log", "--json"], None);
    let v2 = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .rfind(|e| e["type"] == "tagline/revision")
        .unwrap();
    let parent = String::from_utf8(git(&["rev-parse", "HEAD~1"])).unwrap();
    assert_eq!(v2["payload"]["3"].as_str(), Some(parent.trim()), "{v2}");
    let show = ok(&ada, &["show", "1"], None);
    assert!(
        show.contains("v2  1 patches") && show.contains("Why this series exists."),
        "{show}"
    );
    let err = fails(
        &ada,
        &[
            "submit",
            "--repo",
            repo_arg,
            "--series",
            "1",
            "nosuchref..HEAD",
        ],
        None,
    );
    assert!(err.contains("git format-patch"), "{err}");

    // A review comment from a file.
    let note = t.join("note.txt");
    std::fs::write(&note, "Looks fine, one nit in a.c.\n").unwrap();
    sync_feed(t, &ada, &carol);
    ok(
        &carol,
        &["review", "1", "--file", note.to_str().unwrap()],
        None,
    );
    let log = ok(&carol, &["log", "--json"], None);
    let last: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "tagline/review");
    assert_eq!(last["payload"]["3"], "Looks fine, one nit in a.c.\n");
}

/// A one-patch series by `author` as `git format-patch` writes it (adding
/// file `x`), in `dir`; its path.
fn one_patch(dir: &Path, author: &str) -> String {
    let patch = dir.join("x.patch");
    std::fs::write(
        &patch,
        format!("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\nFrom: {author}\nDate: Sat, 21 Nov 2026 10:00:00 +0000\nSubject: [PATCH] x: y\n\nBody.\n---\n x | 1 +\n\ndiff --git a/x b/x\nnew file mode 100644\n--- /dev/null\n+++ b/x\n@@ -0,0 +1 @@\n+x\n-- \n2.47.0\n"),
    )
    .unwrap();
    patch.display().to_string()
}

#[test]
fn the_lead_amends_a_project_and_status_follows() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (lead, ada) = (t.join("lead"), t.join("ada"));
    ok(&lead, &["init"], None);
    ok(&ada, &["init"], None);
    let p1 = t.join("p1.toml");
    std::fs::write(&p1, "[review]\nmin_reviewed_by = 1\nreviewer_roles = [\"any\"]\n[dco]\nrequire_signed_off_by = false\n").unwrap();
    let p3 = t.join("p3.toml");
    std::fs::write(&p3, "[review]\nmin_reviewed_by = 3\nreviewer_roles = [\"any\"]\n[dco]\nrequire_signed_off_by = false\n").unwrap();
    ok(
        &lead,
        &[
            "project",
            "create",
            "--name",
            "demo",
            "--policy",
            p1.to_str().unwrap(),
        ],
        None,
    );
    let amend = |policy: &Path| {
        ok(
            &lead,
            &[
                "project",
                "amend",
                "--project",
                "demo",
                "--name",
                "demo",
                "--policy",
                policy.to_str().unwrap(),
            ],
            None,
        )
    };
    amend(&p3);
    sync_feed(t, &lead, &ada);
    let err = fails(
        &ada,
        &["project", "amend", "--project", "demo", "--name", "demo"],
        None,
    );
    assert!(err.contains("only the project's lead"), "{err}");
    ok(
        &ada,
        &["submit", &one_patch(t, "Ada <ada@example.org>")],
        None,
    );
    let reviewed_by = || {
        rule(
            &json_of(&ok(&ada, &["status", "1", "--json"], None)),
            "reviewed-by",
        )
        .1
    };
    let msg = reviewed_by();
    assert!(
        msg.contains("needs 3 more"),
        "the amended policy applies: {msg}"
    );

    // What `status` printed is kept as a view in the store; each of its
    // inputs changing shows at once. A review (an entry of the series):
    let bob = t.join("bob");
    ok(&bob, &["init"], None);
    sync_feed(t, &lead, &bob);
    sync_feed(t, &ada, &bob);
    // (Bob's identity first, so that only the review changes below.)
    sync_feed(t, &bob, &ada);
    let msg = reviewed_by();
    assert!(msg.contains("needs 3 more"), "{msg}");
    ok(&bob, &["review", "1", "--reviewed-by"], None);
    sync_feed(t, &bob, &ada);
    let msg = reviewed_by();
    assert!(msg.contains("needs 2 more"), "the review counts: {msg}");
    // The reviewer names their identity (an identity entry):
    ok(&bob, &["identity", "set-name", "Bob Reviewer"], None);
    sync_feed(t, &bob, &ada);
    let human = ok(&ada, &["status", "1"], None);
    assert!(
        human.contains("Reviewed-by: Bob Reviewer"),
        "the new name shows: {human}"
    );
    // The lead amends the policy again (an entry of the project, not of the series):
    amend(&p1);
    sync_feed(t, &lead, &ada);
    let st = json_of(&ok(&ada, &["status", "1", "--json"], None));
    assert_eq!(
        st["state"], "approved",
        "the second amendment applies: {st}"
    );
    // While nothing changes the answer comes from the stored view, and is
    // the one computed.
    assert_eq!(json_of(&ok(&ada, &["status", "1", "--json"], None)), st);
}

/// A freeze that ends: `status` answers from its stored view only while
/// that view is valid, so the series becomes mergeable when the freeze ends
/// with no new entry anywhere.
#[test]
fn status_follows_the_clock_when_a_freeze_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let lead = t.join("lead");
    ok(&lead, &["init"], None);
    let rfc3339 = |at: u64| {
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{at}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // Ends on the second boundary 2 to 3 s from now.
    let end = now + 3;
    let policy = t.join("p.toml");
    std::fs::write(
        &policy,
        format!(
            "[review]\nmin_reviewed_by = 0\n[dco]\nrequire_signed_off_by = false\n[[freeze]]\nname = \"code freeze\"\nstart = {}\nend = {}\n",
            rfc3339(now - 3600),
            rfc3339(end)
        ),
    )
    .unwrap();
    ok(
        &lead,
        &[
            "project",
            "create",
            "--name",
            "demo",
            "--policy",
            policy.to_str().unwrap(),
        ],
        None,
    );
    ok(
        &lead,
        &["submit", &one_patch(t, "Lead <lead@example.org>")],
        None,
    );
    let st = json_of(&ok(&lead, &["status", "1", "--json"], None));
    assert_ne!(st["state"], "approved", "frozen: {st}");
    // `status` stored its answer as the series' view; the second answer
    // comes from it.
    {
        let store = tagline_store::Store::open(&lead).unwrap();
        let series: tagline_format::EntryId = st["series"].as_str().unwrap().parse().unwrap();
        assert!(store.series_status(&series).unwrap().view.is_some());
    }
    assert_eq!(json_of(&ok(&lead, &["status", "1", "--json"], None)), st);
    while std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        <= end
    {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let st = json_of(&ok(&lead, &["status", "1", "--json"], None));
    assert_eq!(st["state"], "approved", "the freeze is over: {st}");
}

#[test]
fn a_quorum_of_maintainers_amends_a_project() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (lead, m1, m2) = (t.join("lead"), t.join("m1"), t.join("m2"));
    let mut ids = Vec::new();
    for h in [&lead, &m1, &m2] {
        ok(h, &["init"], None);
        ids.push(identity_of(h));
    }
    let policy = t.join("p.toml");
    std::fs::write(&policy, "[amend]\nmaintainer_quorum = 2\n").unwrap();
    let fields = |branch: &'static str| -> Vec<String> {
        [
            "--name",
            "demo",
            "--branch",
            branch,
            "--policy",
            policy.to_str().unwrap(),
            "--maintainer",
            &ids[1],
            "--maintainer",
            &ids[2],
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = |head: &[&str], branch| {
        let mut v: Vec<String> = head.iter().map(|s| s.to_string()).collect();
        v.extend(fields(branch));
        v
    };
    let run = |h: &Path, v: Vec<String>| {
        let refs: Vec<&str> = v.iter().map(String::as_str).collect();
        ok(h, &refs, None)
    };
    let branch_of = |h: &Path| {
        json_of(&ok(
            h,
            &["project", "show", "--project", "demo", "--json"],
            None,
        ))["branch"]
            .as_str()
            .unwrap()
            .to_string()
    };
    run(&lead, args(&["project", "create"], "staging"));
    sync_feed(t, &lead, &m1);
    let amend = ["project", "amend", "--project", "demo"];
    let out = run(&m1, args(&amend, "next"));
    assert!(out.contains("1 of 2 maintainers support it"), "{out}");
    assert_eq!(branch_of(&m1), "staging", "one maintainer is not a quorum");
    sync_feed(t, &lead, &m2);
    sync_feed(t, &m1, &m2);
    let out = run(&m2, args(&amend, "next"));
    assert!(out.contains("quorum is reached"), "{out}");
    assert_eq!(branch_of(&m2), "next");
    // Every node holding the same entries agrees.
    sync_feed(t, &m1, &lead);
    sync_feed(t, &m2, &lead);
    assert_eq!(branch_of(&lead), "next");
    // Someone who is not a maintainer is refused before publishing.
    let outsider = t.join("outsider");
    ok(&outsider, &["init"], None);
    sync_feed(t, &lead, &outsider);
    let refs: Vec<String> = args(&amend, "mine");
    let refs: Vec<&str> = refs.iter().map(String::as_str).collect();
    let err = fails(&outsider, &refs, None);
    assert!(err.contains("only the project's lead"), "{err}");
}

/// `tagline bridge parse` on real list mail: a patch of a v2 series from
/// git's tests, and a bot's reply to a pull request from the watchdog list;
/// a missing file is one clear line and a non-zero exit.
#[test]
fn bridge_parse_shows_how_a_mail_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("h");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus");
    let mail = corpus.join("git-git/derived/t5100-sample.mbox-split/0011");
    let v = json_of(&ok(
        &home,
        &["bridge", "parse", "--json", mail.to_str().unwrap()],
        None,
    ));
    assert_eq!(v["kind"], "patch");
    assert_eq!(v["author"], "A U Thor");
    assert_eq!(v["email"], "a.u.thor@example.com");
    assert_eq!(v["subject"], "Xyzzy");
    assert_eq!(v["prefix"]["version"], 2);
    assert_eq!(v["prefix"]["index"], 3);
    assert_eq!(v["prefix"]["total"], 3);
    assert!(
        v["patch"]
            .as_str()
            .unwrap()
            .contains("diff --git a/builtin-mailinfo.c")
    );
    // A bot's notice that a pull request was merged, from standard input.
    let dir = corpus.join("lore-linux-watchdog/slices/dev.maildir/cur");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    let reply = names
        .iter()
        .find(|p| {
            let t = std::fs::read_to_string(p).unwrap_or_default();
            t.contains("\nSubject: Re: [GIT PULL") && t.contains("pr-tracker-bot")
        })
        .expect("a pr-tracker-bot reply in the slice");
    let text = std::fs::read_to_string(reply).unwrap();
    let v = json_of(&ok(&home, &["bridge", "parse", "--json", "-"], Some(&text)));
    assert_eq!(v["kind"], "merged");
    assert_eq!(v["prefix"]["pull"], true);
    assert!(v["in_reply_to"].as_array().unwrap().len() == 1);
    let err = fails(&home, &["bridge", "parse", "/nonexistent/mail"], None);
    assert!(err.contains("cannot read /nonexistent/mail"), "{err}");
}

/// A bridge's home that leads project `demo` (trusting itself as its
/// bridge), and Bob, whose address bob@example.org it verified (as a lead
/// would; a DKIM-checked challenge mail would do the same). Returns the
/// bridge's home and Bob's identity.
fn bridge_and_verified_bob(t: &Path) -> (PathBuf, String) {
    let (bridge, bob) = (t.join("bridge"), t.join("bob"));
    for h in [&bridge, &bob] {
        ok(h, &["init"], None);
    }
    let (bridge_id, bob_id) = (identity_of(&bridge), identity_of(&bob));
    ok(&bob, &["identity", "add-email", "bob@example.org"], None);
    sync_feed(t, &bob, &bridge);
    ok(
        &bridge,
        &["identity", "vouch", &bob_id, "bob@example.org"],
        None,
    );
    ok(
        &bridge,
        &[
            "project", "create", "--name", "demo", "--bridge", &bridge_id,
        ],
        None,
    );
    (bridge, bob_id)
}

/// One mboxrd message of a list.
fn list_mail(from: &str, subject: &str, id: &str, reply: &str, body: &str) -> String {
    let mut m = format!(
        "From mboxrd@z Thu Jan  1 00:00:00 1970\nFrom: {from}\nSubject: {subject}\nMessage-ID: <{id}>\nDate: Sat, 21 Nov 2026 10:00:00 +0000\n"
    );
    if !reply.is_empty() {
        m.push_str(&format!("In-Reply-To: <{reply}>\nReferences: <{reply}>\n"));
    }
    m + "\n" + body + "\n"
}

/// A patch mail's body changing file `f`.
fn list_patch(f: &str) -> String {
    format!(
        "Change {f}.\n\nSigned-off-by: Ada <ada@example.org>\n---\ndiff --git a/{f} b/{f}\n--- a/{f}\n+++ b/{f}\n@@ -1 +1 @@\n-a\n+b\n"
    )
}

/// A series Bob mailed himself: his own Reviewed-by, bridged, counts not
/// (the person behind a bridged series is the identity verified for its
/// patches' address).
#[test]
fn bridge_import_does_not_count_the_authors_own_review() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (bridge, _) = bridge_and_verified_bob(t);
    let mbox = [
        list_mail(
            "Bob <bob@example.org>",
            "[PATCH] x: one",
            "b1@x",
            "",
            &list_patch("a.c"),
        ),
        list_mail(
            "Bob <bob@example.org>",
            "Re: [PATCH] x: one",
            "b2@x",
            "b1@x",
            "Reviewed-by: Bob <bob@example.org>",
        ),
    ]
    .concat();
    let path = t.join("list.mbox");
    std::fs::write(&path, mbox).unwrap();
    ok(
        &bridge,
        &[
            "bridge",
            "import",
            path.to_str().unwrap(),
            "--project",
            "demo",
            "--accept-unsigned",
        ],
        None,
    );
    let st = json_of(&ok(&bridge, &["status", "1", "--json"], None));
    assert_eq!(st["trailers"], serde_json::json!([]), "{st}");
    let uncounted = st["uncounted"].to_string();
    assert!(uncounted.contains("the series author's own"), "{uncounted}");
}

/// `tagline bridge import`: an mbox with a series and review replies into a
/// bridge's data directory. The reviewer whose address the lead verified is
/// counted; a trailer naming someone else is shown, flagged, not counted; a
/// second import adds nothing; the bridge serves one project.
#[test]
fn bridge_import_counts_the_verified_reviewer() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let (bridge, bob_id) = bridge_and_verified_bob(t);
    let (mail, patch) = (list_mail, list_patch);
    let mbox = [
        mail(
            "Ada <ada@example.org>",
            "[PATCH 1/2] x: one",
            "p1@x",
            "",
            &patch("a.c"),
        ),
        mail(
            "Ada <ada@example.org>",
            "[PATCH 2/2] x: two",
            "p2@x",
            "p1@x",
            &patch("b.c"),
        ),
        mail(
            "Bob <bob@example.org>",
            "Re: [PATCH 1/2] x: one",
            "r1@x",
            "p1@x",
            "> x\nReviewed-by: Bob <bob@example.org>",
        ),
        mail(
            "Bob <bob@example.org>",
            "Re: [PATCH 2/2] x: two",
            "r2@x",
            "p2@x",
            "Reviewed-by: Bob <bob@example.org>\nAcked-by: Carol <carol@example.org>",
        ),
    ]
    .concat();
    let path = t.join("list.mbox");
    std::fs::write(&path, mbox).unwrap();
    let p = path.to_str().unwrap();
    let err = fails(&bridge, &["bridge", "import", p], None);
    assert!(err.contains("needs --project"), "{err}");
    let out = ok(
        &bridge,
        &[
            "bridge",
            "import",
            p,
            "--project",
            "demo",
            "--accept-unsigned",
        ],
        None,
    );
    assert!(out.contains("4 messages: 4 bridged"), "{out}");
    assert!(
        out.contains("1 revisions, 2 reviews with 2 trailers vouched for and 1 flagged"),
        "{out}"
    );
    let again = json_of(&ok(&bridge, &["bridge", "import", p, "--json"], None));
    assert_eq!(
        (again["bridged"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(4)),
        "{again}"
    );
    ok(&bridge, &["project", "create", "--name", "other"], None);
    let err = fails(
        &bridge,
        &["bridge", "import", p, "--project", "other"],
        None,
    );
    assert!(err.contains("bridges for project"), "{err}");

    let st = json_of(&ok(&bridge, &["status", "1", "--json"], None));
    assert_eq!(
        tagline_e2e::counted_trailers(&st),
        vec![
            format!("1 \"Reviewed-by\" \"{bob_id}\""),
            format!("2 \"Reviewed-by\" \"{bob_id}\"")
        ],
        "{st}"
    );
    let uncounted = st["uncounted"].to_string();
    assert!(
        uncounted.contains("Acked-by: Carol") && uncounted.contains("names carol@example.org"),
        "{uncounted}"
    );
}

/// `tagline bridge outbox`: Bob's native review of a bridged series and his
/// natively submitted patch go out as list mail; the patch is Cc'd to the
/// maintainer and reviewer MAINTAINERS names for its file; written to an
/// mbox, the queue is empty afterwards, and the mbox read back by the
/// bridge is recognised as its own rendering, not bridged.
#[test]
fn bridge_outbox_renders_native_entries_and_never_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let git = |args: &[&str]| tagline_e2e::git(&t.join("repo"), t, args);
    tagline_e2e::repo_with(
        &t.join("repo"),
        t,
        &[
            (
                "MAINTAINERS",
                "A CORE\nM:\tMaya Maintainer <maya@example.org>\nR:\tRex Reviewer <rex@example.org>\nL:\tdev@lists.example.org\nS:\tMaintained\nF:\ta.c\n",
            ),
            ("a.c", "int a;\n"),
        ],
    );
    std::fs::write(t.join("repo/a.c"), "int a = 1;\n").unwrap();
    git(&["commit", "-q", "-a", "-s", "-m", "a: initialise a"]);
    git(&["format-patch", "-q", "-1", "-o", "../v1"]);

    let (bridge, _) = bridge_and_verified_bob(t);
    let bob = t.join("bob");
    let path = t.join("list.mbox");
    std::fs::write(
        &path,
        list_mail(
            "Ada <ada@example.org>",
            "[PATCH] x: one",
            "b1@x",
            "",
            &list_patch("x.c"),
        ),
    )
    .unwrap();
    ok(
        &bridge,
        &[
            "bridge",
            "import",
            path.to_str().unwrap(),
            "--project",
            "demo",
            "--list",
            "dev@lists.example.org",
        ],
        None,
    );
    sync_feed(t, &bridge, &bob);
    ok(&bob, &["identity", "set-name", "Bob"], None);
    ok(
        &bob,
        &["review", "1", "--reviewed-by", "--comment", "Good."],
        None,
    );
    let patch = std::fs::read_dir(t.join("v1"))
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .next()
        .unwrap();
    ok(&bob, &["submit", &patch], None);
    sync_feed(t, &bob, &bridge);

    let from = "tagline@lists.example.org";
    let repo = t.join("repo");
    let out = ok(
        &bridge,
        &[
            "bridge",
            "outbox",
            "--from",
            from,
            "--repo",
            repo.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.starts_with("2 mails queued"), "{out}");
    assert_eq!(out.matches("pending ").count(), 2, "{out}");
    let mbox = t.join("out.mbox");
    let out = ok(
        &bridge,
        &[
            "bridge",
            "outbox",
            "--from",
            from,
            "--mbox",
            mbox.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.starts_with("0 mails queued"), "{out}");
    assert_eq!(out.matches("sent ").count(), 2, "{out}");
    assert!(!out.contains("pending"), "{out}");
    let text = std::fs::read_to_string(&mbox).unwrap();
    assert!(
        text.contains("In-Reply-To: <b1@x>")
            && text.contains("Good.\n\nReviewed-by: Bob <bob@example.org>"),
        "{text}"
    );
    assert!(text.contains("Subject: [PATCH] a: initialise a"), "{text}");
    // The Cc header, unfolded: the maintainer and the reviewer; the list is
    // already in To.
    let cc: String = text
        .split("\nCc: ")
        .nth(1)
        .and_then(|r| r.split("\nSubject:").next())
        .unwrap_or_else(|| panic!("no Cc: {text}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(
        cc,
        "Maya Maintainer <maya@example.org>, Rex Reviewer <rex@example.org>"
    );
    let out = ok(&bridge, &["bridge", "import", mbox.to_str().unwrap()], None);
    assert!(
        out.contains("2 messages: 0 bridged, 0 already bridged, 2 rendered from feeds"),
        "{out}"
    );
    let out = ok(&bridge, &["bridge", "outbox", "--from", from], None);
    assert_eq!(out.trim(), "0 mails queued", "{out}");

    // Bob reviews again: this one goes to a Maildir, which the bridge (as
    // an importer of Maildirs) also recognises as its own.
    ok(&bob, &["review", "1", "--tested-by"], None);
    sync_feed(t, &bob, &bridge);
    let md = t.join("out.maildir");
    let out = ok(
        &bridge,
        &[
            "bridge",
            "outbox",
            "--from",
            from,
            "--maildir",
            md.to_str().unwrap(),
        ],
        None,
    );
    assert!(
        out.starts_with("1 mails queued") && out.contains("sent "),
        "{out}"
    );
    assert_eq!(std::fs::read_dir(md.join("new")).unwrap().count(), 1);
    let out = ok(&bridge, &["bridge", "import", md.to_str().unwrap()], None);
    assert!(
        out.contains("1 messages: 0 bridged, 0 already bridged, 1 rendered"),
        "{out}"
    );
}

/// With `review.maintainers_file_addresses`, an Acked-by the bridge vouched
/// for from an address MAINTAINERS lists counts as that maintainer's ack,
/// though no identity verified the address; `status` names the address.
#[test]
fn bridged_ack_from_a_maintainers_address_counts_when_the_policy_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    tagline_e2e::repo_with(
        &t.join("repo"),
        t,
        &[(
            "MAINTAINERS",
            "A CORE\nM:\tMaya Maintainer <maya@example.org>\nS:\tMaintained\nF:\ta.c\n",
        )],
    );
    let bridge = t.join("bridge");
    ok(&bridge, &["init"], None);
    let bridge_id = identity_of(&bridge);
    let policy = t.join("policy.toml");
    std::fs::write(
        &policy,
        "[review]\nrequire_maintainer_ack = true\nmaintainers_file_addresses = true\n",
    )
    .unwrap();
    ok(
        &bridge,
        &[
            "project",
            "create",
            "--name",
            "demo",
            "--bridge",
            &bridge_id,
            "--maintainers-file",
            "--policy",
            policy.to_str().unwrap(),
        ],
        None,
    );
    let mbox = [
        list_mail(
            "Ada <ada@example.org>",
            "[PATCH] a: one",
            "a1@x",
            "",
            &list_patch("a.c"),
        ),
        list_mail(
            "Maya Maintainer <maya@example.org>",
            "Re: [PATCH] a: one",
            "m1@x",
            "a1@x",
            "Acked-by: Maya Maintainer <maya@example.org>",
        ),
    ]
    .concat();
    let path = t.join("list.mbox");
    std::fs::write(&path, mbox).unwrap();
    ok(
        &bridge,
        &[
            "bridge",
            "import",
            path.to_str().unwrap(),
            "--project",
            "demo",
            "--accept-unsigned",
        ],
        None,
    );
    let repo = t.join("repo");
    let st = json_of(&ok(
        &bridge,
        &["status", "1", "--repo", repo.to_str().unwrap(), "--json"],
        None,
    ));
    let maya = tagline_review::rules::address_person("maya@example.org").to_string();
    assert_eq!(st["trailers"][0]["identity"], maya.as_str(), "{st}");
    assert_eq!(rule(&st, "maintainer-ack").0, "held", "{st}");
    let human = ok(
        &bridge,
        &["status", "1", "--repo", repo.to_str().unwrap()],
        None,
    );
    assert!(
        human.contains("Acked-by: maya@example.org (as MAINTAINERS lists it)"),
        "{human}"
    );
}

/// `tagline ci run` on a real repository: v1 fails the command, v2 passes
/// (each tested once: a second look finds nothing), a revision left
/// `pending` by a runner that was stopped is tested again without a second
/// `pending`, a revision that does not apply is an `error` naming git's
/// complaint, and a command over its time limit is an `error` too.
#[test]
fn ci_run_tests_each_revision_once() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = t.join("repo");
    let git = |args: &[&str]| tagline_e2e::git(&repo, t, args);
    tagline_e2e::repo_with(&repo, t, &[("a.c", "int a;\n")]);
    // A patch file of `a.c` set to `text`, made on a throw-away branch.
    let patch_of = |name: &str, text: &str| -> String {
        git(&["checkout", "-q", "-b", name, "main"]);
        std::fs::write(repo.join("a.c"), text).unwrap();
        git(&["commit", "-q", "-a", "-s", "-m", "a: set a"]);
        let out = t.join(name);
        git(&["format-patch", "-q", "-1", "-o", out.to_str().unwrap()]);
        git(&["checkout", "-q", "main"]);
        std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .next()
            .unwrap()
    };
    let (lead, ada, ci) = (t.join("lead"), t.join("ada"), t.join("ci"));
    for h in [&lead, &ada, &ci] {
        ok(h, &["init"], None);
    }
    std::fs::write(t.join("policy.toml"), "[ci]\nrequired = [\"test\"]\n").unwrap();
    let ci_role = format!("{}:test", identity_of(&ci));
    ok(
        &lead,
        &[
            "project",
            "create",
            "--name",
            "demo",
            "--policy",
            t.join("policy.toml").to_str().unwrap(),
            "--ci",
            &ci_role,
        ],
        None,
    );
    sync_feed(t, &lead, &ada);
    sync_feed(t, &lead, &ci);
    let run = |extra: &[&str], cmd: &[&str]| -> String {
        let mut args = vec![
            "ci",
            "run",
            "--once",
            "--project",
            "demo",
            "--repo",
            repo.to_str().unwrap(),
            "--context",
            "test",
        ];
        args.extend(extra);
        args.push("--");
        args.extend(cmd);
        ok(&ci, &args, None)
    };
    let check = ["sh", "-c", "grep -q 'a = 1' a.c"];

    ok(&ada, &["submit", &patch_of("v1", "int a = 0;\n")], None);
    sync_feed(t, &ada, &ci);
    let out = run(&[], &check);
    assert!(
        out.contains("v1: test fail: sh -c grep -q 'a = 1' a.c failed (exit 1)"),
        "{out}"
    );
    assert_eq!(run(&[], &check).trim(), "nothing to test");

    // v2, and a runner stopped while testing it: its pending is there.
    let series = json_of(&ok(&ada, &["series", "--json"], None))[0]["series"]
        .as_str()
        .unwrap()
        .to_string();
    ok(
        &ada,
        // No version in the subject: the one after the latest held.
        &[
            "submit",
            "--series",
            &series[..16],
            &patch_of("v2", "int a = 1;\n"),
        ],
        None,
    );
    sync_feed(t, &ada, &ci);
    ok(
        &ci,
        &[
            "ci",
            "report",
            &series[..16],
            "--context",
            "test",
            "--status",
            "pending",
        ],
        None,
    );
    let out = run(&[], &check);
    assert!(
        out.contains("testing again") && out.contains("v2: test pass"),
        "{out}"
    );
    let ci_feed = json_of(&ok(&ci, &["id", "--json"], None))["feed"]
        .as_str()
        .unwrap()
        .to_string();
    let log = ok(&ci, &["log", &ci_feed, "--json"], None);
    let pendings = log.matches("\"pending\"").count();
    assert_eq!(
        pendings, 2,
        "one pending for v1, one (the stopped runner's) for v2: {log}"
    );
    sync_feed(t, &ci, &ada);
    let st = json_of(&ok(&ada, &["status", &series[..16], "--json"], None));
    assert!(st["rules"].to_string().contains("ci test: pass"), "{st}");

    // main moves on so that v3 (made on the old main) conflicts.
    let v3 = patch_of("v3", "int a = 3;\n");
    std::fs::write(repo.join("a.c"), "long a;\n").unwrap();
    git(&["commit", "-q", "-a", "-m", "a: long"]);
    ok(
        &ada,
        &["submit", "--version", "3", "--series", &series[..16], &v3],
        None,
    );
    sync_feed(t, &ada, &ci);
    let out = run(&[], &check);
    assert!(out.contains("v3: test error: does not apply on"), "{out}");
    assert!(out.contains("a: set a"), "git names the patch: {out}");

    // v4 applies, but the command outlives its limit.
    ok(
        &ada,
        &[
            "submit",
            "--version",
            "4",
            "--series",
            &series[..16],
            &patch_of("v4", "long a = 1;\n"),
        ],
        None,
    );
    sync_feed(t, &ada, &ci);
    let out = run(&["--timeout", "1s"], &["sh", "-c", "sleep 30"]);
    assert!(
        out.contains("v4: test error: sh -c sleep 30 timed out after 1 s"),
        "{out}"
    );
}

/// `tagline gate` on a real repository: an approved two-patch series is
/// applied on the target branch with its counted trailers, the branch
/// moves, a merge entry records it and `status` says merged; nothing is
/// merged twice; a gate stopped between moving the branch and recording
/// the merge records it on restart without applying again.
#[test]
fn gate_merges_approved_series_once_and_repairs_after_a_crash() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let repo = t.join("repo");
    let git = |args: &[&str]| String::from_utf8(tagline_e2e::git(&repo, t, args)).unwrap();
    tagline_e2e::repo_with(&repo, t, &[("a.c", "int a;\n")]);
    // Patches made on a throw-away branch from main: (file, text) each.
    let patches_of = |name: &str, changes: &[(&str, &str)]| -> Vec<String> {
        git(&["checkout", "-q", "-b", name, "main"]);
        for (f, text) in changes {
            std::fs::write(repo.join(f), text).unwrap();
            git(&["add", f]);
            git(&["commit", "-q", "-s", "-m", &format!("{f}: change")]);
        }
        let out = t.join(name);
        git(&[
            "format-patch",
            "-q",
            &format!("-{}", changes.len()),
            "-o",
            out.to_str().unwrap(),
        ]);
        // Detached: the gate moves main, which it refuses to do under a
        // working tree that has it checked out.
        git(&["checkout", "-q", "--detach", "main"]);
        let mut v: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        v.sort();
        v
    };
    let (lead, ada, bob) = (t.join("lead"), t.join("ada"), t.join("bob"));
    for h in [&lead, &ada, &bob] {
        ok(h, &["init"], None);
    }
    ok(&bob, &["identity", "set-name", "Bob"], None);
    ok(&bob, &["identity", "add-email", "bob@example.org"], None);
    let lead_id = identity_of(&lead);
    std::fs::write(
        t.join("policy.toml"),
        "[ci]\nrequired = [\"test\"]\n[review]\nmin_reviewed_by = 1\nreviewer_roles = [\"any\"]\n",
    )
    .unwrap();
    let ci = format!("{lead_id}:test");
    ok(
        &lead,
        &[
            "project",
            "create",
            "--name",
            "demo",
            "--policy",
            t.join("policy.toml").to_str().unwrap(),
            "--maintainer",
            &lead_id,
            "--ci",
            &ci,
            "--gate",
            &lead_id,
        ],
        None,
    );
    sync_feed(t, &lead, &ada);
    sync_feed(t, &lead, &bob);
    let gate = |env: Option<(&str, &str)>| -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tagline"));
        c.args([
            "gate",
            "--once",
            "--project",
            "demo",
            "--repo",
            repo.to_str().unwrap(),
        ])
        .env("TAGLINE_HOME", &lead)
        .env("TAGLINE_STATE_DIR", t.join("state"));
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // A series: submitted by Ada, reviewed by Bob, tested by the lead's CI.
    let approve = |patches: Vec<String>, known: &[&str]| -> String {
        let mut args = vec!["submit"];
        args.extend(patches.iter().map(String::as_str));
        ok(&ada, &args, None);
        let series = json_of(&ok(&ada, &["series", "--json"], None))
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["series"].as_str().unwrap().to_string())
            .find(|s| !known.contains(&s.as_str()))
            .unwrap();
        sync_feed(t, &ada, &bob);
        ok(&bob, &["review", &series[..16], "--reviewed-by"], None);
        sync_feed(t, &ada, &lead);
        sync_feed(t, &bob, &lead);
        ok(
            &lead,
            &[
                "ci",
                "report",
                &series[..16],
                "--context",
                "test",
                "--status",
                "pass",
            ],
            None,
        );
        series
    };

    let s1 = approve(
        patches_of("s1", &[("a.c", "int a = 1;\n"), ("b.c", "int b;\n")]),
        &[],
    );
    // Not while main is checked out in the repository's working tree.
    git(&["checkout", "-q", "main"]);
    let out = gate(None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("the branch main is checked out in"),
        "{err}"
    );
    git(&["checkout", "-q", "--detach", "main"]);
    let out = gate(None);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("merged into main"), "{said}");
    let log = git(&["log", "--format=%s%n%b", "main"]);
    assert_eq!(
        log.matches("Reviewed-by: Bob <bob@example.org>").count(),
        2,
        "{log}"
    );
    assert_eq!(log.matches("Tagline-Revision: ").count(), 2, "{log}");
    assert_eq!(git(&["show", "main:b.c"]), "int b;\n");
    let st = json_of(&ok(&lead, &["status", &s1[..16], "--json"], None));
    assert_eq!(st["state"], "merged", "{st}");
    let again = gate(None);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout).trim(),
        "nothing to merge"
    );

    // The second series; the gate stops right after moving the branch.
    let s2 = approve(patches_of("s2", &[("c.c", "int c;\n")]), &[&s1]);
    let crashed = gate(Some(("TAGLINE_GATE_FAILPOINT", "after-move")));
    assert_eq!(crashed.status.code(), Some(3));
    let tip = git(&["rev-parse", "main"]);
    assert_eq!(
        json_of(&ok(&lead, &["status", &s2[..16], "--json"], None))["state"],
        "approved"
    );
    let out = gate(None);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("found on main"), "{said}");
    assert_eq!(git(&["rev-parse", "main"]), tip, "not applied twice");
    assert_eq!(
        json_of(&ok(&lead, &["status", &s2[..16], "--json"], None))["state"],
        "merged"
    );

    // A batch of two where one breaks the check: bisected, the good one
    // merges, the bad one is named (a `gate` CI result) and not retried.
    let s3 = approve(patches_of("s3", &[("good.c", "int good;\n")]), &[&s1, &s2]);
    let s4 = approve(patches_of("s4", &[("bad.c", "broken\n")]), &[&s1, &s2, &s3]);
    let batch = || {
        ok(
            &lead,
            &[
                "gate",
                "--once",
                "--project",
                "demo",
                "--repo",
                repo.to_str().unwrap(),
                "--batch",
                "2",
                "--",
                "sh",
                "-c",
                "! grep -rq broken --include=*.c .",
            ],
            None,
        )
    };
    let said = batch();
    assert!(
        said.contains(&format!("{} v1: merged into main", &s3[..12])),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "{} v1: not merged: the gate's check on main: sh -c",
            &s4[..12]
        )) && said.contains("failed (exit 1)"),
        "{said}"
    );
    assert_eq!(git(&["show", "main:good.c"]), "int good;\n");
    assert!(!git(&["ls-tree", "--name-only", "main"]).contains("bad.c"));
    assert_eq!(batch().trim(), "nothing to merge");
    // The author sees it in status.
    let st = json_of(&ok(&lead, &["status", &s4[..16], "--json"], None));
    assert_eq!(st["other_ci"][0]["context"], "gate", "{st}");
    assert_eq!(st["other_ci"][0]["status"], "fail", "{st}");
    let human = ok(&lead, &["status", &s4[..16]], None);
    assert!(
        human.contains("ci gate (not required): fail: the gate's check on main"),
        "{human}"
    );

    // The lead amends the policy: the gate tests each merge result. Without
    // a test command it says so; with one, the pass is recorded (and cited
    // by the merge) before the branch moves.
    std::fs::write(
        t.join("retest.toml"),
        "[ci]\nrequired = [\"test\"]\n[review]\nmin_reviewed_by = 1\nreviewer_roles = [\"any\"]\n[gate]\nretest = true\n",
    )
    .unwrap();
    ok(
        &lead,
        &[
            "project",
            "amend",
            "--project",
            "demo",
            "--name",
            "demo",
            "--policy",
            t.join("retest.toml").to_str().unwrap(),
            "--maintainer",
            &lead_id,
            "--ci",
            &ci,
            "--gate",
            &lead_id,
        ],
        None,
    );
    sync_feed(t, &lead, &ada);
    sync_feed(t, &lead, &bob);
    assert_eq!(
        json_of(&ok(&lead, &["status", &s1[..16], "--json"], None))["state"],
        "merged",
        "an earlier merge stays merged"
    );
    let s5 = approve(
        patches_of("s5", &[("f.c", "int f;\n")]),
        &[&s1, &s2, &s3, &s4],
    );
    let out = gate(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[gate] retest = true"), "{err}");
    let said = ok(
        &lead,
        &[
            "gate",
            "--once",
            "--project",
            "demo",
            "--repo",
            repo.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "test -f f.c && test -f good.c && test -f b.c",
        ],
        None,
    );
    assert!(
        said.contains(&format!("{} v1: merged into main", &s5[..12])),
        "{said}"
    );
    let st = json_of(&ok(&lead, &["status", &s5[..16], "--json"], None));
    assert_eq!(st["state"], "merged", "{st}");
    let pass = &st["other_ci"][0];
    assert_eq!(
        (&pass["context"], &pass["status"]),
        (&"gate".into(), &"pass".into()),
        "{st}"
    );
    let tip = git(&["rev-parse", "main"]);
    assert!(
        pass["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("merge result {} on main: sh -c", &tip[..12])),
        "{st}"
    );
    let lead_feed = json_of(&ok(&lead, &["id", "--json"], None))["feed"]
        .as_str()
        .unwrap()
        .to_string();
    let merge = ok(&lead, &["log", &lead_feed, "--json", "--limit", "1"], None);
    assert!(
        merge.contains(pass["entry"].as_str().unwrap()),
        "the merge cites the pass: {merge}"
    );
}
