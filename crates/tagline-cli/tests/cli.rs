//! Runs the real `tagline` binary in temporary homes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failure report"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn tagline(home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tagline"))
        .args(args)
        .env("TAGLINE_HOME", home)
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
    assert!(out.contains("feed tlk1"), "{out}");
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
        let out = ok(
            &a,
            &["publish", "--type", "tagline/note", "--json", "-"],
            Some(&format!(r#"{{"0": "note {i}"}}"#)),
        );
        assert!(out.starts_with(&format!("{} tle1", i + 1)), "{out}");
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
    assert_eq!(lines.len(), 6);
    assert_eq!(lines[5]["seq"], 6);
    assert_eq!(lines[5]["type"], "example/ci");
    assert_eq!(lines[5]["payload"]["context"], "build");
    assert_eq!(lines[1]["backlink"], lines[0]["id"]);

    let export = tmp.path().join("a.feed");
    ok(&a, &["export", "-o", export.to_str().unwrap()], None);
    ok(&b, &["init"], None);
    let out = ok(&b, &["import", export.to_str().unwrap()], None);
    assert!(out.contains("imported 6 entries"), "{out}");
    let again: serde_json::Value = serde_json::from_str(&ok(
        &b,
        &["import", "--json", export.to_str().unwrap()],
        None,
    ))
    .unwrap();
    assert_eq!(again["imported"], 0);
    assert_eq!(again["already_present"], 6);
    let log_b = ok(&b, &["log", &feed, "--json"], None);
    assert_eq!(log_b, ok(&a, &["log", "--json"], None));
    let v: serde_json::Value = serde_json::from_str(&ok(&b, &["verify", "--json"], None)).unwrap();
    assert_eq!(v["entries"], 6); // a's 6 entries; b has none of its own
    assert_eq!(v["problems"].as_array().unwrap().len(), 0);
}

#[test]
fn tampered_export_is_refused_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let c = tmp.path().join("c");
    ok(&a, &["init"], None);
    for i in 0..3 {
        ok(
            &a,
            &["publish", "--type", "tagline/note", "--json", "-"],
            Some(&format!(r#"{{"0": "n{i}"}}"#)),
        );
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
    assert_eq!(v["entries"], 0);
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
    assert!(err.contains("seq 3") && err.contains("signature"), "{err}");
}

#[test]
fn errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path().join("h");
    let err = fails(&h, &["log"], None);
    assert!(err.contains("tagline init"), "{err}");
    ok(&h, &["init"], None);
    let err = fails(
        &h,
        &["publish", "--type", "tagline/note", "--json", "-"],
        Some(r#"{"0": 1.5}"#),
    );
    assert!(err.contains("float"), "{err}");
    let err = fails(
        &h,
        &["publish", "--type", "Bad Type", "--json", "-"],
        Some(r#"{"0": "x"}"#),
    );
    assert!(err.contains("payload type"), "{err}");
    let err = fails(
        &h,
        &["publish", "--type", "tagline/note", "--json", "-"],
        Some(r#"{"1": "x"}"#),
    );
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
