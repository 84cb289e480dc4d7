//! The bridge on real mail from ../shared/corpus: git's own mailinfo tests
//! (t5100), compared with what `git mailinfo -u` produced.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::PathBuf;

use tagline_email::mailinfo::{Options, parse};

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus")
}

/// Every mail of t5100's sample.mbox (split by `git mailsplit`), with each
/// option git's test runs it with: INFO, MSG and PATCH equal git's.
#[test]
fn t5100_mails_split_as_git_mailinfo_does() {
    let t = corpus().join("git-git/t/t5100");
    let split = corpus().join("git-git/derived/t5100-sample.mbox-split");
    let variants: &[(&str, Options)] = &[
        ("", Options::default()),
        (
            "--scissors",
            Options {
                scissors: true,
                ..Options::default()
            },
        ),
        (
            "--no-inbody-headers",
            Options {
                inbody_headers: false,
                ..Options::default()
            },
        ),
        (
            "--message-id",
            Options {
                message_id: true,
                ..Options::default()
            },
        ),
    ];
    let mut failures = Vec::new();
    let mut checked = 0;
    for n in 1..=18 {
        let id = format!("{n:04}");
        let raw = std::fs::read(split.join(&id)).unwrap();
        for (suffix, opts) in variants {
            let info_file = t.join(format!("info{id}{suffix}"));
            if !info_file.exists() {
                continue;
            }
            checked += 1;
            let got = parse(&raw, opts).unwrap();
            let read = |name: String| {
                String::from_utf8_lossy(&std::fs::read(t.join(name)).unwrap()).into_owned()
            };
            let want_info = read(format!("info{id}{suffix}"));
            let want_msg = read(format!("msg{id}{suffix}"));
            let want_patch = read(format!("patch{id}{suffix}"));
            // One known difference: in a multipart mail git counts the line
            // break before a MIME boundary (and the epilogue's) as content;
            // RFC 2046 gives it to the boundary. So trailing line breaks of a
            // patch are compared without their count (docs/email.md).
            let trim = |s: String| s.trim_end_matches('\n').to_string();
            let (got_patch, want_patch) = (
                trim(String::from_utf8_lossy(&got.patch).into_owned()),
                trim(want_patch),
            );
            for (what, got, want) in [
                ("info", got.info_text(), want_info),
                ("msg", got.message.clone(), want_msg),
                ("patch", got_patch, want_patch),
            ] {
                if got != want {
                    failures.push(format!(
                        "{id}{suffix} {what}:\n--- want\n{want}\n--- got\n{got}"
                    ));
                }
            }
        }
    }
    assert!(checked >= 18, "only {checked} cases found");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// git's other mailinfo inputs: a From of an address alone, headers after
/// an embedded `From ` line, `>From` quoting in the body.
#[test]
fn t5100_other_inputs() {
    let t = corpus().join("git-git/t/t5100");
    let opts = Options::default();
    for (input, expect, what) in [
        ("info-from.in", "info-from.expect", "info"),
        ("embed-from.in", "embed-from.expect", "info"),
        ("quoted-from.in", "quoted-from.expect", "msg"),
    ] {
        let got = parse(&std::fs::read(t.join(input)).unwrap(), &opts).unwrap();
        let want = std::fs::read_to_string(t.join(expect)).unwrap();
        let got = if what == "info" {
            got.info_text()
        } else {
            got.message
        };
        assert_eq!(got, want, "{input}");
    }
}

/// Every mail file of the corpus that is one mail (Patchwork's mail, series
/// and fuzz sets, git's am and format-patch mails, the watchdog Maildir)
/// parses without a panic; what fails is reported per file.
#[test]
fn every_corpus_mail_parses_without_panic() {
    let c = corpus();
    let mut files = Vec::new();
    for dir in [
        "patchwork/patchwork/tests/data/mail",
        "patchwork/patchwork/tests/data/series",
        "patchwork/patchwork/tests/data/fuzz",
        "git-git/t/t4252",
        "git-git/derived/t5100-sample.mbox-split",
        "lore-linux-watchdog/slices/dev.maildir/cur",
        "lore-linux-watchdog/slices/dev.maildir/new",
    ] {
        let Ok(rd) = std::fs::read_dir(c.join(dir)) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_file() {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 800, "only {} mail files found", files.len());
    let mut refused = Vec::new();
    for p in &files {
        let raw = std::fs::read(p).unwrap();
        let r = std::panic::catch_unwind(|| parse(&raw, &Options::default()));
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => refused.push(format!("{}: {e}", p.display())),
            Err(_) => panic!("{} made the parser panic", p.display()),
        }
    }
    // Refusals are fine (the fuzz set holds non-mails); they are listed.
    eprintln!("{} of {} refused: {refused:#?}", refused.len(), files.len());
    assert!(refused.len() < files.len() / 10);
}
