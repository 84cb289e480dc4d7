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

/// Every message of an mboxrd file, split as git does.
fn mbox_mails(path: &std::path::Path) -> Vec<tagline_email::mailinfo::MailInfo> {
    use tagline_email::mbox::{Mbox, Quoting};
    let f = std::fs::File::open(path).unwrap();
    Mbox::new(std::io::BufReader::new(f), Quoting::Rd)
        .map(|m| parse(&m.unwrap(), &Options::default()).unwrap())
        .collect()
}

/// The trailers of a mail's commit message, as (key, value).
fn trailers_of(m: &tagline_email::mailinfo::MailInfo) -> Vec<(String, String)> {
    tagline_review::trailers::parse(&m.message)
        .into_iter()
        .map(|t| (t.key, t.value))
        .collect()
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

/// The watchdog list's slice as mboxrd and as Maildir: the same 844
/// messages (by Message-ID), and every one parses.
#[test]
fn the_same_slice_as_mbox_and_maildir() {
    use std::collections::BTreeMap;
    use tagline_email::mbox::{Mbox, Quoting, is_maildir, maildir_files};

    let slices = corpus().join("lore-linux-watchdog/slices");
    let ids = |mails: Vec<Vec<u8>>| -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for raw in mails {
            let info = parse(&raw, &Options::default()).unwrap();
            *m.entry(info.message_id.unwrap_or_default()).or_default() += 1;
        }
        m
    };
    let f = std::fs::File::open(slices.join("dev.mbox")).unwrap();
    let from_mbox: Vec<Vec<u8>> = Mbox::new(std::io::BufReader::new(f), Quoting::Rd)
        .map(Result::unwrap)
        .collect();
    let dir = slices.join("dev.maildir");
    assert!(is_maildir(&dir));
    let from_maildir: Vec<Vec<u8>> = maildir_files(&dir)
        .unwrap()
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(from_mbox.len(), 844);
    assert_eq!(from_maildir.len(), 844);
    assert_eq!(ids(from_mbox), ids(from_maildir));
}

/// b4's trailer-collection samples: the trailers each patch ends up with
/// (its own, then the follow-ups counted) equal those in b4's am-ready
/// output, the applier's own Signed-off-by aside (b4's test adds it).
#[test]
fn followup_trailers_as_b4_collects_them() {
    use tagline_email::thread::collect;

    let samples = corpus().join("b4/src/tests/samples");
    let read_mbox = |name: &str| mbox_mails(&samples.join(name));
    let applier = "Test Override <test-override@example.com>";
    let mut checked = 0;
    for (src, reference, sloppy) in [
        ("single", "defaults", false),
        ("single", "sloppy", true),
        ("with-cover", "defaults", false),
        ("nore", "defaults", false),
        ("non-git-patch", "defaults", false),
        ("with-diffstat", "defaults", false),
        ("bare-address", "defaults", false),
    ] {
        let thread = read_mbox(&format!("trailers-followup-{src}.mbox"));
        let got = collect(&thread);
        let want: Vec<_> = read_mbox(&format!("trailers-followup-{src}-ref-{reference}.txt"));
        assert_eq!(got.len(), want.len(), "{src}: patches");
        for (g, w) in got.iter().zip(&want) {
            let want_trailers: Vec<(String, String)> = trailers_of(w)
                .into_iter()
                .filter(|(k, v)| !(k == "Signed-off-by" && v == applier))
                .collect();
            assert_eq!(
                g.trailers(sloppy),
                want_trailers,
                "{src} ({reference}): {}",
                g.subject.text
            );
            checked += 1;
        }
    }
    assert!(checked >= 8);
}

/// The watchdog list's threads that b4 0.16 turned into am-ready mboxes
/// (`b4 am`, 118 threads): per patch of the revision b4 picked, the trailers
/// equal b4's (all 306 patches; a difference is printed before failing).
#[test]
fn watchdog_threads_trailers_as_b4_am() {
    use std::collections::BTreeMap;
    use tagline_email::thread::collect;

    let root = corpus().join("lore-linux-watchdog");
    let index = std::fs::read_to_string(root.join("slices/dev-index.tsv")).unwrap();
    let mut file_of: BTreeMap<String, String> = BTreeMap::new();
    for line in index.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.len() >= 14 {
            file_of.insert(cols[2].to_string(), cols[13].to_string());
        }
    }
    let expected = root.join("expected/b4-am-dev");
    let jsonl = std::fs::read_to_string(expected.join("index.jsonl")).unwrap();
    let (mut patches, mut equal) = (0, 0);
    let mut diffs = Vec::new();
    for line in jsonl.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let dir = expected.join(v["dir"].as_str().unwrap());
        if !dir.join("am.mbx").exists() {
            continue;
        }
        let want = mbox_mails(&dir.join("am.mbx"));
        let thread: Vec<_> = v["thread_message_ids"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|id| file_of.get(id.as_str().unwrap()))
            .map(|f| {
                let raw = std::fs::read(root.join("slices/dev.maildir").join(f)).unwrap();
                parse(&raw, &Options::default()).unwrap()
            })
            .collect();
        let got = collect(&thread);
        for w in &want {
            patches += 1;
            let want_trailers = trailers_of(w);
            let mine = got
                .iter()
                .find(|g| g.message_id.is_some() && g.message_id == w.message_id)
                .or_else(|| got.iter().find(|g| g.subject.text == w.subject));
            let mine = mine.map(|g| g.trailers(false)).unwrap_or_default();
            if mine == want_trailers {
                equal += 1;
            } else {
                diffs.push(format!(
                    "{} {}: b4 {:?}\n  ours {:?}",
                    v["dir"], w.subject, want_trailers, mine
                ));
            }
        }
    }
    eprintln!(
        "{equal} of {patches} patches with b4's trailers; differences:\n{}",
        diffs.join("\n")
    );
    assert!(patches > 100, "only {patches} patches in b4's output");
    assert_eq!(equal, patches, "patches whose trailers differ from b4's");
}

/// Patchwork's series tests (tests/data/series, expectations restated in
/// the corpus's EXPECTED-series-dev.md): covers, patches and comments
/// counted, and patches (and covers) per series in order of creation.
#[test]
fn series_grouped_as_patchwork_groups_them() {
    use tagline_email::series::{Grouper, Kind};

    let dir = corpus().join("patchwork/patchwork/tests/data/series");
    let read = |name: &str| mbox_mails(&dir.join(name));
    type Case = (
        &'static str,
        [usize; 3],
        &'static [usize],
        Option<&'static [usize]>,
    );
    let cases: &[Case] = &[
        ("base-single-patch.mbox", [0, 1, 0], &[1], None),
        ("base-cover-letter.mbox", [1, 2, 0], &[2], Some(&[1])),
        ("base-no-cover-letter.mbox", [0, 2, 0], &[2], None),
        ("base-deep-threaded.mbox", [1, 2, 0], &[2], Some(&[1])),
        ("base-out-of-order.mbox", [1, 2, 0], &[2], Some(&[1])),
        ("bugs-multiple-references.mbox", [1, 4, 0], &[4], Some(&[1])),
        ("base-no-references.mbox", [0, 2, 0], &[2], None),
        (
            "base-no-references-no-cover.mbox",
            [1, 2, 0],
            &[2],
            Some(&[1]),
        ),
        ("bugs-multiple-content-types.mbox", [0, 1, 1], &[1], None),
        ("revision-basic.mbox", [2, 4, 0], &[2, 2], Some(&[1, 1])),
        (
            "revision-threaded-to-single-patch.mbox",
            [0, 2, 0],
            &[1, 1],
            None,
        ),
        (
            "revision-threaded-to-cover.mbox",
            [2, 4, 0],
            &[2, 2],
            Some(&[1, 1]),
        ),
        (
            "revision-no-cover-letter.mbox",
            [1, 4, 0],
            &[2, 2],
            Some(&[1, 0]),
        ),
        ("revision-unlabeled.mbox", [2, 4, 0], &[2, 2], Some(&[1, 1])),
        ("bugs-unnumbered.mbox", [1, 2, 0], &[1, 1], Some(&[1, 0])),
        ("bugs-nocover.mbox", [0, 4, 0], &[2, 2], None),
        ("base-incomplete.mbox", [1, 1, 0], &[1], Some(&[1])),
        ("mercurial-cover-letter.mbox", [1, 2, 0], &[2], Some(&[1])),
    ];
    let mut failures = Vec::new();
    for (file, counts, patches, covers) in cases {
        let mut g = Grouper::new();
        let mut got = [0usize; 3];
        for m in read(file) {
            match g.add(&m).0 {
                Kind::Cover => got[0] += 1,
                Kind::Patch => got[1] += 1,
                Kind::Comment => got[2] += 1,
                Kind::Other => {}
            }
        }
        let with_patches: Vec<_> = g.series.iter().filter(|s| !s.patches.is_empty()).collect();
        let got_patches: Vec<usize> = with_patches.iter().map(|s| s.patches.len()).collect();
        let got_covers: Vec<usize> = with_patches
            .iter()
            .map(|s| usize::from(s.cover.is_some()))
            .collect();
        if got != *counts || got_patches != *patches || covers.is_some_and(|c| got_covers != c) {
            failures.push(format!(
                "{file}: counts {got:?} (want {counts:?}), patches {got_patches:?} (want {patches:?}), covers {got_covers:?} (want {covers:?})"
            ));
        }
    }
    // The same mails on two lists are two series each (Patchwork's
    // test_duplicated): a Grouper is per list.
    let mails = read("base-no-cover-letter.mbox");
    let (mut a, mut b) = (Grouper::new(), Grouper::new());
    for m in &mails {
        a.add(m);
        b.add(m);
    }
    assert_eq!((a.series.len(), b.series.len()), (1, 1));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The fuzz target's corpus (fuzz/corpus/mail_parse, seeded from the
/// corpus's mails and grown by `cargo fuzz run mail_parse -s none`),
/// replayed: every input goes through every reader without a panic.
#[test]
fn fuzz_corpus_replays_without_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mail_parse");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| tagline_email::fuzzing::mail(&data));
        assert!(r.is_ok(), "{} made a reader panic", p.display());
        n += 1;
    }
    assert!(n > 100, "only {n} inputs in {}", dir.display());
}

/// Bad input the issue names: a 10 MB body, deeply nested MIME, a mail over
/// the size limit, garbage: a result or a clear error, never a panic.
#[test]
fn hostile_mails_are_refused_or_read_never_a_panic() {
    use tagline_email::mailinfo::{MAX_MAIL_SIZE, MailError};

    let opts = Options::default();
    // 10 MB of body after a patch.
    let mut big = b"From: A <a@example.org>\nSubject: [PATCH] big\n\nmsg\n---\n".to_vec();
    big.extend(std::iter::repeat_n(b"+line of a very long patch\n".as_slice(), 400_000).flatten());
    assert!(big.len() > 10_000_000);
    let info = parse(&big, &opts).unwrap();
    assert!(info.patch.len() > 10_000_000);
    // MIME nested 10,000 deep.
    let mut nested = b"From: A <a@example.org>\nSubject: nested\n".to_vec();
    for i in 0..10_000 {
        nested.extend(
            format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n").as_bytes(),
        );
    }
    nested.extend(b"Content-Type: text/plain\n\nhello\n");
    let _ = parse(&nested, &opts);
    // Over the limit: refused before parsing.
    let huge = vec![b'a'; MAX_MAIL_SIZE + 1];
    assert!(matches!(
        parse(&huge, &opts),
        Err(MailError::TooLarge { .. })
    ));
    // Not a mail at all: no header.
    assert_eq!(parse(b"", &opts).unwrap_err(), MailError::NotAMail);
}

/// Every message of the watchdog slice gets a kind; the known cases of each
/// kind in it are found: the kernel test robot's reports, pr-tracker-bot's
/// merge notices, maintainers' "Applied, thanks", pull requests, covers.
#[test]
fn watchdog_mails_are_classified() {
    use std::collections::BTreeMap;
    use tagline_email::kind::{MailKind, classify};
    use tagline_email::mbox::maildir_files;
    use tagline_email::subject;

    let dir = corpus().join("lore-linux-watchdog/slices/dev.maildir");
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for p in maildir_files(&dir).unwrap() {
        let raw = std::fs::read(&p).unwrap();
        let info = parse(&raw, &Options::default()).unwrap();
        let s = subject::parse(&info.raw_subject);
        let k = classify(&info, &s);
        if info.email == "lkp@intel.com" {
            assert_eq!(k, MailKind::CiReport, "{}", p.display());
        }
        if info.email == "pr-tracker-bot@kernel.org" {
            assert_eq!(k, MailKind::Merged, "{}", p.display());
        }
        *counts.entry(format!("{k:?}")).or_default() += 1;
    }
    eprintln!("{counts:?}");
    for k in [
        "Patch",
        "CoverLetter",
        "Reply",
        "Applied",
        "CiReport",
        "Merged",
    ] {
        assert!(
            counts.get(k).copied().unwrap_or(0) > 0,
            "no {k} in {counts:?}"
        );
    }
}

/// The watchdog list's public-inbox v2 epoch (11,670 messages, read with
/// git): every message comes out and parses; a second read from the last
/// commit taken brings nothing, and a read from an earlier commit brings
/// exactly the rest.
#[test]
fn public_inbox_epoch_reads_whole_and_resumes() {
    use tagline_email::public_inbox::{Epoch, epochs, is_public_inbox};

    let inbox = corpus().join("lore-linux-watchdog/public-inbox-v2/dev");
    assert!(is_public_inbox(&inbox));
    let paths = epochs(&inbox).unwrap();
    assert_eq!(paths.len(), 1);
    let epoch = Epoch::open(&paths[0]).unwrap();
    let commits = epoch.commits_since(None).unwrap();
    let mut n = 0;
    let mut refused = 0;
    for m in epoch.messages(commits.clone()).unwrap() {
        let (_, raw) = m.unwrap();
        if parse(&raw, &Options::default()).is_err() {
            refused += 1;
        }
        n += 1;
    }
    assert_eq!(n, 11_670);
    assert!(refused < 10, "{refused} messages refused");
    let last = commits.last().unwrap();
    assert!(epoch.commits_since(Some(last)).unwrap().is_empty());
    let rest = epoch.commits_since(Some(&commits[99])).unwrap();
    assert_eq!(rest.len(), commits.len() - 100);
    assert_eq!(rest[0], commits[100]);
}
