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

#[test]
fn lmtp_fuzz_corpus_replays_without_panic() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/lmtp");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let data = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| tagline_email::fuzzing::lmtp(&data));
        assert!(r.is_ok(), "{} made the session panic", p.display());
        n += 1;
    }
    assert!(n >= 4, "only {n} inputs in {}", dir.display());
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

/// A publisher that keeps what it is given; ids are hashes of the count and
/// the payload (any distinct ids do: the bridge only passes them on).
#[derive(Default)]
struct Published {
    entries: Vec<(tagline_format::EntryId, String, Vec<u8>)>,
}

impl tagline_email::bridge::Publish for Published {
    type Error = std::convert::Infallible;
    fn publish(
        &mut self,
        payload_type: &str,
        payload: Vec<u8>,
    ) -> Result<tagline_format::EntryId, Self::Error> {
        let mut h = blake3::Hasher::new();
        h.update(&(self.entries.len() as u64).to_le_bytes());
        h.update(&payload);
        let id = tagline_format::EntryId(*h.finalize().as_bytes());
        self.entries.push((id, payload_type.to_string(), payload));
        Ok(id)
    }
}

impl Published {
    fn of_type(
        &self,
        t: &str,
    ) -> Vec<(
        tagline_format::EntryId,
        tagline_format::review::ReviewPayload,
    )> {
        self.entries
            .iter()
            .filter(|(_, ty, _)| ty == t)
            .map(|(id, ty, p)| {
                (
                    *id,
                    tagline_format::review::ReviewPayload::decode(ty, p)
                        .unwrap()
                        .unwrap(),
                )
            })
            .collect()
    }
}

fn dkim(result: &str) -> tagline_format::mail::Dkim {
    tagline_format::mail::Dkim {
        result: result.into(),
        domain: Some("example.org".into()),
        detail: None,
    }
}

fn settings(accept_unsigned: bool) -> tagline_email::bridge::Settings {
    tagline_email::bridge::Settings {
        project: tagline_format::EntryId([1; 32]),
        list: Some("dev@lists.example.org".into()),
        accept_unsigned,
    }
}

/// A mail: From, Subject, Message-ID, In-Reply-To (may be empty), Date
/// (seconds after an hour of 2026-11-21), body.
fn mail(from: &str, subject: &str, id: &str, reply_to: &str, secs: u32, body: &str) -> Vec<u8> {
    let mut m = format!(
        "From: {from}\nTo: dev@lists.example.org\nSubject: {subject}\nMessage-ID: <{id}>\nDate: Sat, 21 Nov 2026 10:{:02}:{:02} +0000\n",
        secs / 60,
        secs % 60
    );
    if !reply_to.is_empty() {
        m.push_str(&format!(
            "In-Reply-To: <{reply_to}>\nReferences: <{reply_to}>\n"
        ));
    }
    m.push('\n');
    m.push_str(body);
    m.into_bytes()
}

fn patch_body(file: &str, line: &str) -> String {
    format!(
        "Change {file}.\n\nSigned-off-by: Ada Author <ada@example.org>\n---\n {file} | 2 +-\n\ndiff --git a/{file} b/{file}\n--- a/{file}\n+++ b/{file}\n@@ -1 +1 @@\n-old\n+{line}\n--\n2.47.0\n"
    )
}

/// A two-patch series with a cover letter, review replies (one vouched,
/// one naming someone else, one on the cover, one sent before the series
/// was complete), then v2 in reply to v1 with patch 1 unchanged: what the
/// bridge writes, and the same again on replay.
#[test]
fn bridge_writes_revisions_and_reviews_from_a_thread() {
    use tagline_email::bridge::{Bridge, Incoming, Outcome, Replay};
    use tagline_format::review::ReviewPayload;

    let ada = "Ada Author <ada@example.org>";
    let bob = "Bob Reviewer <bob@example.org>";
    let v2_2 = mail(
        ada,
        "[PATCH v2 2/2] x: second",
        "q2@x",
        "c2@x",
        12,
        &patch_body("b.c", "newest"),
    );
    let mails = vec![
        (
            mail(
                ada,
                "[PATCH 0/2] x: two fixes",
                "c1@x",
                "",
                0,
                "Why.\n\nbase-commit: 0123456789abcdef0123456789abcdef01234567\n",
            ),
            "pass",
        ),
        (
            mail(
                ada,
                "[PATCH 1/2] x: first",
                "p1@x",
                "c1@x",
                1,
                &patch_body("a.c", "new"),
            ),
            "pass",
        ),
        // A reply to patch 1 before patch 2 arrived: it waits.
        (
            mail(
                bob,
                "Re: [PATCH 1/2] x: first",
                "r1@x",
                "p1@x",
                2,
                "> quoted\nReviewed-by: Bob Reviewer <bob@example.org>\n",
            ),
            "pass",
        ),
        (
            mail(
                ada,
                "[PATCH 2/2] x: second",
                "p2@x",
                "c1@x",
                3,
                &patch_body("b.c", "newer"),
            ),
            "pass",
        ),
        // Bob gives a trailer for Carol on patch 2: flagged.
        (
            mail(
                bob,
                "Re: [PATCH 2/2] x: second",
                "r2@x",
                "p2@x",
                4,
                "Acked-by: Carol <carol@example.org>\n",
            ),
            "pass",
        ),
        // Bob on the cover letter, but with a failing DKIM signature: flagged.
        (
            mail(
                bob,
                "Re: [PATCH 0/2] x: two fixes",
                "r3@x",
                "c1@x",
                5,
                "Tested-by: Bob Reviewer <bob@example.org>\n",
            ),
            "fail",
        ),
        // v2, sent in reply to v1's cover, patch 1 unchanged.
        (
            mail(
                ada,
                "[PATCH v2 0/2] x: two fixes",
                "c2@x",
                "c1@x",
                10,
                "v2: second fix redone.\n",
            ),
            "pass",
        ),
        (
            mail(
                ada,
                "[PATCH v2 1/2] x: first",
                "q1@x",
                "c2@x",
                11,
                &patch_body("a.c", "new"),
            ),
            "pass",
        ),
        (v2_2.clone(), "pass"),
        // The same patch again (a list delivering it twice).
        (v2_2, "pass"),
        // A mail the bridge itself rendered: not bridged back.
        (
            format!("X-Tagline-Entry: {}\n", "ab".repeat(32))
                .into_bytes()
                .into_iter()
                .chain(mail(
                    bob,
                    "Re: [PATCH v2 1/2] x: first",
                    "out@x",
                    "q1@x",
                    13,
                    "Reviewed-by: Bob Reviewer <bob@example.org>\n",
                ))
                .collect(),
            "pass",
        ),
    ];
    let mut bridge = Bridge::new(settings(false));
    let mut out = Published::default();
    let outcomes: Vec<Outcome> = mails
        .iter()
        .map(|(raw, d)| {
            bridge
                .add(&Incoming { raw, dkim: dkim(d) }, &mut out)
                .unwrap()
        })
        .collect();
    assert!(matches!(&outcomes[9], Outcome::Duplicate { message_id } if message_id == "q2@x"));
    assert!(matches!(&outcomes[10], Outcome::Looped { .. }));
    let Outcome::Bridged(third) = &outcomes[3] else {
        panic!("{:?}", outcomes[3])
    };
    assert_eq!(
        (third.revisions.len(), third.reviews.len()),
        (1, 1),
        "patch 2 completes v1 and releases the waiting review"
    );
    let Outcome::Bridged(fifth) = &outcomes[5] else {
        panic!()
    };
    assert!(
        fifth.warnings.iter().any(|w| w.contains("DKIM fail")),
        "{:?}",
        fifth.warnings
    );

    let revisions = out.of_type(tagline_format::review::REVISION_TYPE);
    assert_eq!(revisions.len(), 2);
    let (v1_id, ReviewPayload::Revision(v1)) = &revisions[0] else {
        panic!()
    };
    let (_, ReviewPayload::Revision(v2)) = &revisions[1] else {
        panic!()
    };
    assert_eq!((v1.version, v1.series, v1.patches.len()), (1, None, 2));
    assert_eq!(
        v1.base_commit.as_deref(),
        Some("0123456789abcdef0123456789abcdef01234567")
    );
    assert_eq!(
        v1.cover.as_ref().unwrap().subject,
        "[PATCH 0/2] x: two fixes"
    );
    assert_eq!(v1.patches[0].author, ada);
    assert_eq!(v1.patches[0].subject, "x: first");
    assert_eq!(v1.mails.as_ref().unwrap().patches, vec!["p1@x", "p2@x"]);
    assert_eq!(
        (v2.version, v2.series),
        (2, Some(*v1_id)),
        "v2 joins v1's series"
    );
    assert_eq!(v2.patches[0].patch_id, v1.patches[0].patch_id);
    assert_ne!(v2.patches[1].patch_id, v1.patches[1].patch_id);

    let reviews: Vec<_> = out
        .of_type(tagline_format::review::REVIEW_TYPE)
        .into_iter()
        .map(|(_, p)| match p {
            ReviewPayload::Review(r) => r,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(reviews.len(), 3);
    assert_eq!(reviews[0].patch, Some(1));
    assert_eq!(
        reviews[0].trailers,
        vec![("Reviewed-by".to_string(), bob.to_string())]
    );
    assert_eq!(reviews[0].mail.as_ref().unwrap().message_id, "r1@x");
    assert_eq!(reviews[1].patch, Some(2));
    assert!(reviews[1].trailers.is_empty());
    assert!(
        reviews[1].flagged[0]
            .reason
            .contains("names carol@example.org"),
        "{:?}",
        reviews[1].flagged
    );
    assert_eq!(
        reviews[2].patch, None,
        "a reply to the cover letter reviews the whole revision"
    );
    assert!(reviews[2].flagged[0].reason.contains("DKIM result is fail"));

    // Replay: the same mails through a new bridge re-derive the same
    // entries, which the replay publisher checks one by one.
    let mut again = Bridge::new(settings(false));
    let mut replay = Replay::new(out.entries.clone());
    for (raw, d) in &mails {
        again
            .add(&Incoming { raw, dkim: dkim(d) }, &mut replay)
            .unwrap();
    }
    assert_eq!(replay.left(), 0);
    // Another bridge setting (accepting unsigned mail changes nothing here,
    // but another project does) is caught.
    let mut other = Bridge::new(tagline_email::bridge::Settings {
        project: tagline_format::EntryId([2; 32]),
        ..settings(false)
    });
    let mut replay = Replay::new(out.entries.clone());
    let err = mails.iter().find_map(|(raw, d)| {
        other
            .add(&Incoming { raw, dkim: dkim(d) }, &mut replay)
            .err()
    });
    assert!(err.is_some());
}

/// A series whose last patch never comes is written with what came once
/// the list's clock is a day past it; its late patch is then reported.
#[test]
fn an_incomplete_series_is_written_after_a_day_of_list_time() {
    use tagline_email::bridge::{Bridge, Incoming, Outcome};
    let ada = "Ada Author <ada@example.org>";
    let mut bridge = Bridge::new(settings(true));
    let mut out = Published::default();
    let mut add = |raw: Vec<u8>| {
        bridge
            .add(
                &Incoming {
                    raw: &raw,
                    dkim: dkim(tagline_email::bridge::DKIM_UNCHECKED),
                },
                &mut out,
            )
            .unwrap()
    };
    add(mail(
        ada,
        "[PATCH 1/3] x: one",
        "s1@x",
        "",
        0,
        &patch_body("a.c", "1"),
    ));
    add(mail(
        ada,
        "[PATCH 2/3] x: two",
        "s2@x",
        "s1@x",
        1,
        &patch_body("b.c", "2"),
    ));
    // Plain mails (no patch, no thread) dated `date`.
    let chatter = |n: usize, date: &str| {
        (0..n)
            .map(|i| {
                String::from_utf8(mail(
                    "Eve <eve@example.org>",
                    "hello",
                    &format!("{date}-{i}@x"),
                    "",
                    0,
                    "hi\n",
                ))
                .unwrap()
                .replace("Sat, 21 Nov 2026 10:00:00", date)
                .into_bytes()
            })
            .collect::<Vec<_>>()
    };
    // One mail from a sender whose clock is years ahead, among mails of the
    // same hour, moves the list's clock not: nothing is written.
    for m in chatter(1, "Mon, 1 Jan 2035 00:00:00")
        .into_iter()
        .chain(chatter(8, "Sat, 21 Nov 2026 11:00:00"))
    {
        let Outcome::Bridged(a) = add(m) else {
            panic!()
        };
        assert!(a.revisions.is_empty(), "written early: {a:?}");
    }
    // A day and a minute later by most mails: the series is written with
    // the two patches that came.
    let mut written = 0;
    for m in chatter(5, "Sun, 22 Nov 2026 10:01:00") {
        let Outcome::Bridged(a) = add(m) else {
            panic!()
        };
        written += a.revisions.len();
    }
    assert_eq!(written, 1);
    let Outcome::Bridged(late) = add(mail(
        ada,
        "[PATCH 3/3] x: three",
        "s3@x",
        "s1@x",
        2,
        &patch_body("d.c", "4"),
    )) else {
        panic!()
    };
    assert!(
        late.warnings[0].contains("after its series was written"),
        "{:?}",
        late.warnings
    );
    let revs = out.of_type(tagline_format::review::REVISION_TYPE);
    let tagline_format::review::ReviewPayload::Revision(r) = &revs[0].1 else {
        panic!()
    };
    assert_eq!(r.patches.len(), 2);
    assert_eq!(r.patches[0].subject, "x: one");
}

/// The watchdog list's public-inbox epoch through the bridge: every message
/// bridged or refused with a reason, series and reviews written, a second
/// pass adds nothing, and a replay re-derives every entry.
#[test]
fn watchdog_epoch_through_the_bridge() {
    use tagline_email::bridge::{Bridge, DKIM_UNCHECKED, Incoming, Outcome, Replay};
    use tagline_email::public_inbox::{Epoch, epochs};

    let inbox = corpus().join("lore-linux-watchdog/public-inbox-v2/dev");
    let epoch = Epoch::open(&epochs(&inbox).unwrap()[0]).unwrap();
    let raws: Vec<Vec<u8>> = epoch
        .messages(epoch.commits_since(None).unwrap())
        .unwrap()
        .map(|m| m.unwrap().1)
        .collect();
    let unchecked = dkim(DKIM_UNCHECKED);
    let mut bridge = Bridge::new(settings(true));
    let mut out = Published::default();
    let (mut bridged, mut dup, mut refused, mut trailers, mut flagged) = (0, 0, Vec::new(), 0, 0);
    for raw in &raws {
        match bridge
            .add(
                &Incoming {
                    raw,
                    dkim: unchecked.clone(),
                },
                &mut out,
            )
            .unwrap()
        {
            Outcome::Bridged(a) => {
                bridged += 1;
                trailers += a.trailers;
                flagged += a.flagged;
            }
            Outcome::Duplicate { .. } => dup += 1,
            Outcome::Refused { reason } => refused.push(reason),
            Outcome::Looped { .. } => panic!("no mail of the archive came from a bridge"),
        }
    }
    let revisions = out.of_type(tagline_format::review::REVISION_TYPE).len();
    let reviews = out.of_type(tagline_format::review::REVIEW_TYPE).len();
    eprintln!(
        "bridged {bridged}, duplicates {dup}, refused {}, revisions {revisions}, reviews {reviews}, trailers {trailers}, flagged {flagged}, waiting {:?}",
        refused.len(),
        bridge.waiting()
    );
    assert_eq!(bridged + dup + refused.len(), 11_670);
    assert!(refused.len() < 10, "{refused:?}");
    assert!(
        revisions > 1000 && reviews > 500,
        "{revisions} revisions, {reviews} reviews"
    );
    assert!(trailers > reviews / 2);
    // A second pass: every message is known.
    for raw in &raws {
        let o = bridge
            .add(
                &Incoming {
                    raw,
                    dkim: unchecked.clone(),
                },
                &mut out,
            )
            .unwrap();
        assert!(
            matches!(o, Outcome::Duplicate { .. } | Outcome::Refused { .. }),
            "{o:?}"
        );
    }
    // Replay on a fresh bridge.
    let mut again = Bridge::new(settings(true));
    let mut replay = Replay::new(out.entries.clone());
    for raw in &raws {
        again
            .add(
                &Incoming {
                    raw,
                    dkim: unchecked.clone(),
                },
                &mut replay,
            )
            .unwrap();
    }
    assert_eq!(replay.left(), 0);
}

/// Signs `raw` for `domain` with a fresh ed25519 key; returns the signed
/// mail and the key's DNS record line (`NAME RECORD`).
fn dkim_signed(raw: &[u8], domain: &str) -> (Vec<u8>, String) {
    use base64::Engine as _;
    use mail_auth::common::crypto::Ed25519Key;
    use mail_auth::common::headers::HeaderWriter as _;
    use mail_auth::dkim::DkimSigner;
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
    let sig = DkimSigner::<_, _>::from_key(key)
        .domain(domain)
        .selector("s1")
        .headers(["From", "To", "Subject", "Message-ID", "Date", "In-Reply-To"])
        .sign(raw)
        .unwrap();
    let mut signed = sig.to_header().into_bytes();
    signed.extend_from_slice(raw);
    (
        signed,
        format!("s1._domainkey.{domain} v=DKIM1; k=ed25519; p={public}"),
    )
}

/// DKIM through mail-auth with keys recorded in a file (offline): a good
/// signature passes, a body changed in transit does not, a key not recorded is
/// a temperror, a list's own signature is `none` for the sender.
#[test]
fn dkim_checked_offline_with_recorded_keys() {
    use tagline_email::dkim::DkimChecker;
    let raw = mail(
        "Bob Reviewer <bob@example.org>",
        "Re: [PATCH 1/2] a",
        "r1@example.org",
        "p1@example.org",
        5,
        "Reviewed-by: Bob Reviewer <bob@example.org>\n",
    );
    let (signed, record) = dkim_signed(&raw, "example.org");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let checker = DkimChecker::new(&format!("# test keys\n{record}\n"), true).unwrap();
    let d = rt.block_on(checker.check(&signed));
    assert_eq!(
        (d.result.as_str(), d.domain.as_deref()),
        ("pass", Some("example.org")),
        "{d:?}"
    );

    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replace("Reviewed-by: Bob", "Reviewed-by: Rob");
    // mail-auth's word for a body hash that does not match is `neutral`:
    // not a pass, and not unsigned either.
    let d = rt.block_on(checker.check(tampered.as_bytes()));
    assert_eq!(d.result, "neutral", "{d:?}");
    assert!(d.detail.unwrap_or_default().contains("body hash"));

    let d = rt.block_on(DkimChecker::new("", true).unwrap().check(&signed));
    assert_eq!(d.result, "temperror", "{d:?}");

    let (list_signed, list_record) = dkim_signed(&raw, "lists.example.net");
    let d = rt.block_on(
        DkimChecker::new(&list_record, true)
            .unwrap()
            .check(&list_signed),
    );
    assert_eq!(d.result, "none", "{d:?}");
    assert_eq!(rt.block_on(checker.check(&raw)).result, "none");
}

/// A native review rendered as mail and read back: it threads under the
/// bridged patch, quotes the hunk its inline comment is about, carries the
/// same trailers as the review (the inbound side's own trailer reader finds
/// them), and the bridge does not bridge it back.
#[test]
fn a_native_review_goes_out_as_mail_and_is_not_bridged_back() {
    use tagline_email::bridge::{Bridge, Incoming, Outcome};
    use tagline_email::outbound::{Envelope, Outgoing, Parent, review_mail, series_mails};
    use tagline_format::review::{InlineComment, Review, ReviewPayload, Revision, Side};
    let ada = "Ada Author <ada@example.org>";
    let mut bridge = Bridge::new(settings(false));
    let mut out = Published::default();
    for raw in [
        mail(
            ada,
            "[PATCH v2 1/2] x: first",
            "p1@x",
            "",
            1,
            &patch_body("a.c", "new"),
        ),
        mail(
            ada,
            "[PATCH v2 2/2] x: second",
            "p2@x",
            "p1@x",
            2,
            &patch_body("b.c", "newer"),
        ),
    ] {
        bridge
            .add(
                &Incoming {
                    raw: &raw,
                    dkim: dkim("pass"),
                },
                &mut out,
            )
            .unwrap();
    }
    let (rev_id, rev) = out
        .entries
        .iter()
        .find_map(|(id, t, p)| match ReviewPayload::decode(t, p) {
            Ok(Some(ReviewPayload::Revision(r))) => Some((*id, r)),
            _ => None,
        })
        .expect("the series was written");
    let review = Review {
        revision: tagline_format::EntryId([7; 32]),
        patch: Some(2),
        trailers: vec![
            (
                "Reviewed-by".into(),
                "Zoë Reviewer <zoe@example.org>".into(),
            ),
            ("Tested-by".into(), "Zoë Reviewer <zoe@example.org>".into()),
        ],
        comment: Some("Nice.".into()),
        inline: vec![InlineComment {
            file: "b.c".into(),
            side: Side::New,
            start_line: 1,
            end_line: 1,
            text: "Is \"newer\" the right word?".into(),
        }],
        retracts: None,
        mail: None,
        flagged: Vec::new(),
    };
    let entry = tagline_format::EntryId([9; 32]);
    let env = Envelope {
        author: "Zoë Reviewer".into(),
        sender: "tagline@lists.example.org".into(),
        list: "dev@lists.example.org".into(),
        cc: Vec::new(),
        date: "Sun, 22 Nov 2026 10:00:00 +0000".into(),
    };
    let parent = Parent {
        message_id: "p2@x".into(),
        subject: "[PATCH v2 2/2] x: second".into(),
        references: vec!["p1@x".into()],
    };
    let m = review_mail(&entry, &review, &rev, &parent, &env);
    let bytes = m.to_bytes();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.contains("Subject: Re: [PATCH v2 2/2] x: second\r\n"),
        "{text}"
    );
    assert!(
        text.contains("In-Reply-To: <p2@x>\r\nReferences: <p1@x> <p2@x>\r\n"),
        "{text}"
    );
    assert!(
        text.contains("> @@ -1 +1 @@\r\n> +newer\r\n\r\nIs \"newer\""),
        "{text}"
    );
    assert!(
        text.contains(&format!("X-Tagline-Entry: {entry}\r\n")),
        "{text}"
    );

    // Read back by the inbound side's parser: the same trailers, the
    // sender's display name decoded.
    let info = tagline_email::mailinfo::parse(&bytes, &Options::default()).unwrap();
    assert_eq!(info.sender_name, "Zoë Reviewer via Tagline");
    assert_eq!(
        tagline_email::thread::reply_trailers(&info.message),
        review.trailers
    );
    assert_eq!(info.in_reply_to, ["p2@x"]);
    // And not bridged back.
    let o = bridge
        .add(
            &Incoming {
                raw: &bytes,
                dkim: dkim("pass"),
            },
            &mut out,
        )
        .unwrap();
    assert!(
        matches!(&o, Outcome::Looped { entry: e } if *e == entry.to_string()),
        "{o:?}"
    );

    // The same revision as a native series: a cover letter and two patches,
    // threaded under it, each read back as the patch it carries.
    let mails = series_mails(&entry, &rev, &env);
    assert_eq!(mails.len(), 3);
    assert_eq!(
        mails[1].in_reply_to.as_deref(),
        Some(mails[0].message_id.as_str())
    );
    let p2 = tagline_email::mailinfo::parse(&mails[2].to_bytes(), &Options::default()).unwrap();
    assert_eq!(p2.subject, rev.patches[1].subject);
    assert_eq!(String::from_utf8_lossy(&p2.patch), rev.patches[1].diff);
    assert_eq!(
        p2.author, "Ada Author",
        "the in-body From names the patch's author"
    );

    // A list user answers mails the bridge rendered (and so never held):
    // the trailers go to the entries those mails render.
    let native = Revision {
        mails: None,
        ..rev.clone()
    };
    let native_review = review_mail(
        &tagline_format::EntryId([10; 32]),
        &review,
        &native,
        &tagline_email::outbound::parent(&entry, &native, Some(1)),
        &env,
    );
    let cases: [(&Outgoing, tagline_format::EntryId, Option<u64>); 4] = [
        // Zoë's review of the bridged patch 2: up its References to p2@x.
        (&m, rev_id, Some(2)),
        // The native series' patch 2 and cover letter.
        (&mails[2], entry, Some(2)),
        (&mails[0], entry, None),
        // A native review of native patch 1: the nearest rendered patch.
        (&native_review, entry, Some(1)),
    ];
    for (i, (to, revision, patch)) in cases.into_iter().enumerate() {
        let mut refs = to.references.clone();
        refs.push(to.message_id.clone());
        let refs: Vec<String> = refs.iter().map(|r| format!("<{r}>")).collect();
        let raw = format!(
            "From: Bob Reviewer <bob@example.org>\nSubject: {}\nMessage-ID: <answer{i}@example.org>\nDate: Sun, 22 Nov 2026 11:00:00 +0000\nIn-Reply-To: <{}>\nReferences: {}\n\nAgreed.\n\nReviewed-by: Bob Reviewer <bob@example.org>\n",
            tagline_email::outbound::reply_subject(&to.subject),
            to.message_id,
            refs.join(" ")
        );
        let before = out.entries.len();
        let o = bridge
            .add(
                &Incoming {
                    raw: raw.as_bytes(),
                    dkim: dkim("pass"),
                },
                &mut out,
            )
            .unwrap();
        assert!(matches!(o, Outcome::Bridged(_)), "case {i}: {o:?}");
        let reviews: Vec<Review> = out.entries[before..]
            .iter()
            .filter_map(|(_, t, p)| match ReviewPayload::decode(t, p) {
                Ok(Some(ReviewPayload::Review(r))) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(reviews.len(), 1, "case {i}: {reviews:?}");
        assert_eq!(
            (reviews[0].revision, reviews[0].patch),
            (revision, patch),
            "case {i}"
        );
        assert_eq!(
            reviews[0].trailers,
            [(
                "Reviewed-by".to_string(),
                "Bob Reviewer <bob@example.org>".to_string()
            )],
            "case {i}"
        );
    }
    // A Message-ID that only looks rendered names nothing.
    for id in ["nothing.1@tagline", "tle1x.1@tagline", "x@tagline"] {
        assert_eq!(tagline_email::outbound::rendered_id(id), None, "{id}");
    }
    assert_eq!(
        tagline_email::outbound::rendered_id(&tagline_email::outbound::message_id(&entry, 3)),
        Some((entry, 3))
    );
}
