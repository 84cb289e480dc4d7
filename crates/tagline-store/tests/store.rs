//! Integration tests of the redb store: appends, ingest, forks, locking, and
//! durability under SIGKILL.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test and benchmark code: a panic is a failure report"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tagline_format::payload::note;
use tagline_format::{Entry, EntryId, SecretKey};
use tagline_store::{IngestMode, RejectReason, Store, StoreError};

const NOW: u64 = 1_800_000_000_000;

fn notes(n: usize, tag: &str) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| ("tagline/note".to_string(), note(&format!("{tag} {i}"))))
        .collect()
}

/// A store in a fresh temporary directory (removed when the guard drops).
fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    (dir, store)
}

fn all_entries(store: &Store, key: &SecretKey) -> Vec<Entry> {
    store
        .range(&key.public(), 1, u64::MAX)
        .unwrap()
        .into_iter()
        .map(|e| Entry {
            signed: e.signed,
            payload: e.payload,
        })
        .collect()
}

/// `range_bytes` gives what `range` does, as bytes, for `key`'s feed.
fn assert_range_bytes_agree(store: &Store, key: &SecretKey) {
    let decoded: Vec<(Vec<u8>, Option<Vec<u8>>)> = store
        .range(&key.public(), 1, u64::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.signed.as_bytes().to_vec(), e.payload))
        .collect();
    let raw: Vec<(Vec<u8>, Option<Vec<u8>>)> = store
        .range_bytes(&key.public(), 1, u64::MAX)
        .unwrap()
        .into_iter()
        .map(|e| (e.signed, e.payload))
        .collect();
    assert!(!raw.is_empty());
    assert_eq!(raw, decoded);
}

/// A review-model payload as `Store::append_local` takes it.
fn item(p: &tagline_format::review::ReviewPayload) -> (String, Vec<u8>) {
    (p.type_name().to_string(), p.encode())
}

/// The first revision of a series of project `[1; 32]`, with `patches`.
fn first_revision(
    patches: Vec<tagline_format::review::Patch>,
) -> tagline_format::review::ReviewPayload {
    tagline_format::review::ReviewPayload::Revision(tagline_format::review::Revision {
        project: tagline_format::EntryId([1; 32]),
        series: None,
        version: 1,
        base_commit: None,
        cover: None,
        changelog: None,
        patches,
        change_id: None,
        mails: None,
    })
}

/// A review of `revision` with these trailers and comment.
fn review_of(
    revision: tagline_format::EntryId,
    trailers: &[(&str, &str)],
    comment: Option<&str>,
) -> tagline_format::review::ReviewPayload {
    tagline_format::review::ReviewPayload::Review(tagline_format::review::Review {
        revision,
        patch: None,
        trailers: trailers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        comment: comment.map(str::to_string),
        inline: vec![],
        retracts: None,
        mail: None,
        flagged: Vec::new(),
    })
}

#[test]
fn append_read_and_lookup() {
    let (_dir, store) = temp_store();
    let key = SecretKey::from_seed(&[1; 32]);
    let first = store.append_local(&key, notes(3, "a"), NOW).unwrap();
    let more = store.append_local(&key, notes(200, "b"), NOW + 1).unwrap();
    assert_eq!(more.last().unwrap().signed.seq(), 203);
    let meta = store.feed(&key.public()).unwrap().unwrap();
    assert_eq!(meta.head.seq, 203);
    assert_eq!(meta.head.id, more.last().unwrap().signed.id());
    let got = store.get(&first[1].signed.id()).unwrap().unwrap();
    assert_eq!(got.signed, first[1].signed);
    assert_eq!(got.payload.as_deref(), first[1].payload.as_deref());
    assert_eq!(store.range(&key.public(), 10, 19).unwrap().len(), 10);
    let report = store.verify_all([0; 32]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.entries, 203);
}

#[test]
fn append_with_names_earlier_entries_and_stores_nothing_on_failure() {
    let (_dir, store) = temp_store();
    let key = SecretKey::from_seed(&[3; 32]);
    store.append_local(&key, notes(5, "a"), NOW).unwrap();
    // Entries appended one by one inside one transaction, each naming the
    // previous one's id in its payload; across lipmaa links to stored ones.
    let (ids, head) = store
        .append_local_with(&key, NOW + 1, |a| {
            let mut ids = Vec::new();
            for i in 0..300u32 {
                let text = format!("{i} after {:?}", ids.last().map(|e: &EntryId| e.short()));
                ids.push(
                    a.append("tagline/note", tagline_format::payload::note(&text))?
                        .signed
                        .id(),
                );
            }
            Ok::<_, tagline_store::StoreError>(ids)
        })
        .unwrap();
    assert_eq!(head.unwrap().seq, 305);
    assert_eq!(
        store.feed(&key.public()).unwrap().unwrap().head.id,
        *ids.last().unwrap()
    );
    let failed: Result<((), _), tagline_store::StoreError> =
        store.append_local_with(&key, NOW + 2, |a| {
            a.append("tagline/note", tagline_format::payload::note("lost"))?;
            Err(tagline_store::StoreError::Forked {
                author: key.public(),
                seq: 0,
            })
        });
    assert!(failed.is_err());
    assert_eq!(store.feed(&key.public()).unwrap().unwrap().head.seq, 305);
    let report = store.verify_all([0; 32]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.entries, 305);
}

#[test]
fn ingest_copies_a_feed_and_is_idempotent() {
    let (_a, src) = temp_store();
    let (_b, dst) = temp_store();
    let key = SecretKey::from_seed(&[2; 32]);
    src.append_local(&key, notes(500, "x"), NOW).unwrap();
    let mut entries = all_entries(&src, &key);
    entries.reverse(); // order does not matter
    let r = dst
        .ingest(entries.clone(), NOW, [7; 32], IngestMode::AllOrNothing)
        .unwrap();
    assert_eq!((r.appended, r.duplicates), (500, 0));
    let r = dst
        .ingest(entries, NOW, [8; 32], IngestMode::AllOrNothing)
        .unwrap();
    assert_eq!((r.appended, r.duplicates), (0, 500));
    assert_eq!(
        dst.feed(&key.public()).unwrap(),
        src.feed(&key.public()).unwrap()
    );
}

#[test]
fn tampered_entries_are_refused_and_valid_prefix_kept_in_best_effort() {
    let (_a, src) = temp_store();
    let (_b, dst) = temp_store();
    let key = SecretKey::from_seed(&[3; 32]);
    src.append_local(&key, notes(10, "x"), NOW).unwrap();
    let mut entries = all_entries(&src, &key);
    // Swap entry 6's payload for another valid note: hash mismatch.
    entries[5].payload = Some(note("forged"));
    let err = dst
        .ingest(entries.clone(), NOW, [1; 32], IngestMode::AllOrNothing)
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Rejected(ref r) if r.seq == 6 && r.reason.code() == "payload-mismatch"),
        "{err}"
    );
    assert_eq!(
        dst.entry_count().unwrap(),
        0,
        "all-or-nothing stored something"
    );
    let r = dst
        .ingest(entries, NOW, [1; 32], IngestMode::BestEffort)
        .unwrap();
    assert_eq!(r.appended, 5);
    assert_eq!(r.rejected.len(), 1);
}

#[test]
fn a_fork_is_proven_kept_and_stops_the_feed() {
    let (_a, one) = temp_store();
    let (_b, two) = temp_store();
    let (_c, dst) = temp_store();
    let key = SecretKey::from_seed(&[4; 32]);
    // Same key used in two places (a restored backup): both write seq 1..=3.
    one.append_local(&key, notes(3, "one"), NOW).unwrap();
    two.append_local(&key, notes(5, "two"), NOW).unwrap();
    dst.ingest(
        all_entries(&one, &key),
        NOW,
        [0; 32],
        IngestMode::BestEffort,
    )
    .unwrap();
    let r = dst
        .ingest(
            all_entries(&two, &key),
            NOW,
            [0; 32],
            IngestMode::BestEffort,
        )
        .unwrap();
    assert_eq!(r.appended, 0);
    assert_eq!(r.forks.len(), 3);
    assert!(
        r.rejected
            .iter()
            .any(|x| x.reason == RejectReason::ForkDetected)
    );
    let meta = dst.feed(&key.public()).unwrap().unwrap();
    assert_eq!(meta.forked_at, Some(1));
    assert_eq!(dst.fork_proofs().unwrap().len(), 3);
    // Later entries of either branch are refused.
    one.append_local(&key, notes(1, "later"), NOW).unwrap();
    let r = dst
        .ingest(
            all_entries(&one, &key),
            NOW,
            [0; 32],
            IngestMode::BestEffort,
        )
        .unwrap();
    assert_eq!(r.appended, 0);
    assert!(
        r.rejected
            .iter()
            .any(|x| matches!(x.reason, RejectReason::Forked(1)))
    );
}

#[test]
fn future_timestamps_are_refused() {
    let (_a, src) = temp_store();
    let (_b, dst) = temp_store();
    let key = SecretKey::from_seed(&[5; 32]);
    let years = 3 * 365 * 24 * 3600 * 1000;
    src.append_local(&key, notes(2, "x"), NOW + years).unwrap();
    let err = dst
        .ingest(
            all_entries(&src, &key),
            NOW,
            [0; 32],
            IngestMode::AllOrNothing,
        )
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Rejected(ref r) if r.reason.code() == "future-timestamp"),
        "{err}"
    );
}

/// Set in a process this test binary starts on itself: the test it runs (by
/// name) plays the child's part on the store in this directory.
const CHILD_DIR_ENV: &str = "TAGLINE_CHILD_DIR";

/// This test binary, running only `test` as a child on the store in `dir`.
fn child(test: &str, dir: &Path) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir);
    c
}

#[test]
fn a_second_open_gets_a_clear_error() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        // The child's part.
        match Store::open(Path::new(&dir)) {
            Err(StoreError::Locked { .. }) => println!("CHILD-LOCKED"),
            other => println!("CHILD-UNEXPECTED {other:?}"),
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let _first = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }));
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    // And from another process.
    let out = child("a_second_open_gets_a_clear_error", dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("CHILD-LOCKED"), "child said: {stdout}");
}

/// The child's part in the kill test: appends batches of varying size until
/// killed, printing `begin N` before each commit (N = the head it will reach)
/// and `acked N` after the commit returned.
fn append_until_killed(dir: &Path) -> ! {
    let store = Store::open(dir).unwrap();
    let key = SecretKey::from_seed(&[9; 32]);
    let mut head = store.feed(&key.public()).unwrap().map_or(0, |m| m.head.seq);
    let mut out = std::io::stdout();
    for round in 0u64.. {
        let n = 1 + (round * 37 % 150) as usize;
        writeln!(out, "begin {}", head + n as u64).unwrap();
        out.flush().unwrap();
        store.append_local(&key, notes(n, "k"), NOW).unwrap();
        head += n as u64;
        writeln!(out, "acked {head}").unwrap();
        out.flush().unwrap();
    }
    unreachable!("appends until killed")
}

#[test]
fn killed_appender_reopens_consistent() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        append_until_killed(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::from_seed(&[9; 32]);
    let rounds: u64 = std::env::var("TAGLINE_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    for round in 0..rounds {
        let mut child = child("killed_appender_reopens_consistent", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Let it run for a varying time (after its first ack), then SIGKILL.
        let run_for = Duration::from_millis(30 + (round * 53) % 250);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut lines = Vec::new();
        let mut started: Option<Instant> = None;
        while Instant::now() < deadline {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(l) => {
                    if started.is_none() && l.starts_with("acked") {
                        started = Some(Instant::now());
                    }
                    lines.push(l);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(_) => break,
            }
            if started.is_some_and(|s| s.elapsed() >= run_for) {
                break;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        let acked = lines
            .iter()
            .filter_map(|l| l.strip_prefix("acked "))
            .filter_map(|n| n.parse::<u64>().ok())
            .max();
        let begun = lines
            .iter()
            .filter_map(|l| l.strip_prefix("begin "))
            .filter_map(|n| n.parse::<u64>().ok())
            .max();
        let acked = acked.expect("the child acknowledged nothing");

        let store = Store::open(dir.path()).unwrap();
        let head = store.feed(&key.public()).unwrap().unwrap().head.seq;
        // Every acknowledged entry is there; an unacknowledged batch is there whole or not at all.
        assert!(
            head == acked || Some(head) == begun,
            "round {round}: head {head}, acked {acked}, begun {begun:?}"
        );
        let report = store.verify_all([round as u8; 32]).unwrap();
        assert!(
            report.problems.is_empty(),
            "round {round}: {:?}",
            report.problems
        );
        assert_eq!(report.entries, head);
        assert_eq!(store.entry_count().unwrap(), head);
    }
}

#[test]
fn series_index_holds_a_series_whatever_the_arrival_order() {
    use tagline_format::review::*;
    let (_a, ada_store) = temp_store();
    let (_b, bob_store) = temp_store();
    let (_c, dst) = temp_store();
    let (ada, bob) = (
        SecretKey::from_seed(&[21; 32]),
        SecretKey::from_seed(&[22; 32]),
    );
    let patch = Patch {
        subject: "x".into(),
        message: "m\n".into(),
        author: "A <a@x.org>".into(),
        diff: "d\n".into(),
        patch_id: "p".into(),
    };
    let v1 = first_revision(vec![patch]);
    let v1_id = ada_store.append_local(&ada, vec![item(&v1)], NOW).unwrap()[0]
        .signed
        .id();
    let v2 = ReviewPayload::Revision(Revision {
        series: Some(v1_id),
        version: 2,
        ..match v1.clone() {
            ReviewPayload::Revision(r) => r,
            _ => unreachable!(),
        }
    });
    let v2_id = ada_store.append_local(&ada, vec![item(&v2)], NOW).unwrap()[0]
        .signed
        .id();
    let review = |rev| review_of(rev, &[("Reviewed-by", "B <b@x.org>")], None);
    bob_store
        .append_local(&bob, vec![item(&review(v1_id)), item(&review(v2_id))], NOW)
        .unwrap();
    // Bob's reviews arrive before Ada's revisions, in another import.
    dst.ingest(
        all_entries(&bob_store, &bob),
        NOW,
        [1; 32],
        IngestMode::AllOrNothing,
    )
    .unwrap();
    assert!(dst.series_ids().unwrap().is_empty());
    dst.ingest(
        all_entries(&ada_store, &ada),
        NOW,
        [2; 32],
        IngestMode::AllOrNothing,
    )
    .unwrap();
    assert_eq!(dst.series_ids().unwrap(), vec![v1_id]);
    let got = dst.series_entries(&v1_id).unwrap();
    assert_eq!(got.len(), 4, "two revisions and two reviews");
    // Unrelated series read nothing.
    assert!(
        dst.series_entries(&tagline_format::EntryId([9; 32]))
            .unwrap()
            .is_empty()
    );

    // Summaries: stored at the generation they were computed at, dropped by
    // any entry that points at the series or one of its revisions.
    let (generation, rows) = dst.series_summaries().unwrap();
    assert_eq!(rows, vec![(v1_id, None)]);
    assert!(
        dst.put_series_summaries(generation, &[(v1_id, b"s1".to_vec())])
            .unwrap()
    );
    let (generation, rows) = dst.series_summaries().unwrap();
    assert_eq!(rows, vec![(v1_id, Some(b"s1".to_vec()))]);
    // A note changes no series: the summary stays.
    let carol = SecretKey::from_seed(&[23; 32]);
    dst.append_local(&carol, notes(1, "n"), NOW).unwrap();
    assert_eq!(
        dst.series_summaries().unwrap().1[0].1.as_deref(),
        Some(&b"s1"[..])
    );
    // A tag on v2 (a revision, not the series id) makes it stale.
    let tag = ReviewPayload::Tag(Tag {
        target: v2_id,
        label: "for-next".into(),
        add: true,
    });
    dst.append_local(&carol, vec![item(&tag)], NOW).unwrap();
    assert_eq!(dst.series_summaries().unwrap().1, vec![(v1_id, None)]);
    // A summary computed before that write is refused.
    assert!(
        !dst.put_series_summaries(generation, &[(v1_id, b"old".to_vec())])
            .unwrap()
    );
    assert_eq!(dst.series_summaries().unwrap().1, vec![(v1_id, None)]);

    // Status views are kept the same way, per series.
    let st = dst.series_status(&v1_id).unwrap();
    assert_eq!(st.view, None);
    assert!(dst.put_series_status(st.generation, &v1_id, b"v").unwrap());
    assert_eq!(
        dst.series_status(&v1_id).unwrap().view.as_deref(),
        Some(&b"v"[..])
    );
    dst.append_local(&carol, notes(1, "n"), NOW).unwrap();
    assert!(dst.series_status(&v1_id).unwrap().view.is_some(), "a note");
    let mark = dst.references_mark(&v2_id).unwrap();
    assert_eq!(mark, dst.references_mark(&v2_id).unwrap());
    let untag = ReviewPayload::Tag(Tag {
        target: v2_id,
        label: "for-next".into(),
        add: false,
    });
    dst.append_local(&carol, vec![item(&untag)], NOW).unwrap();
    assert_eq!(dst.series_status(&v1_id).unwrap().view, None, "a tag on v2");
    assert_ne!(
        dst.references_mark(&v2_id).unwrap(),
        mark,
        "the entries pointing at v2 changed"
    );
    assert!(
        !dst.put_series_status(st.generation, &v1_id, b"old")
            .unwrap(),
        "computed before the tag"
    );
    assert_eq!(dst.series_status(&v1_id).unwrap().view, None);
    // A rebuild starts without views.
    let st = dst.series_status(&v1_id).unwrap();
    assert!(dst.put_series_status(st.generation, &v1_id, b"v").unwrap());
    dst.rebuild_indexes().unwrap();
    assert_eq!(dst.series_status(&v1_id).unwrap().view, None);
}

/// `ingest_verified` skips only the signatures its `VerifiedIds` lists: an
/// entry forged after its batch was checked is still refused, and what was
/// checked is stored as `ingest` would store it.
#[test]
fn ingest_verified_checks_every_signature_it_was_not_given() {
    let (_a, src) = temp_store();
    let key = SecretKey::from_seed(&[26; 32]);
    src.append_local(&key, notes(100, "v"), NOW).unwrap();
    let good = all_entries(&src, &key);
    let verified = tagline_format::check_signatures(&good, [1; 32]);
    assert_eq!(verified.len(), 100);
    // The last entry's signature forged (nothing links to it).
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    let mut bytes = last.signed.as_bytes().to_vec();
    let n = bytes.len() - 1;
    bytes[n] ^= 1;
    forged.push(Entry {
        signed: tagline_format::SignedHeader::decode(bytes).unwrap(),
        payload: last.payload.clone(),
    });
    let (_b, dst) = temp_store();
    let report = dst
        .ingest_verified(forged, &verified, NOW, [2; 32], IngestMode::BestEffort)
        .unwrap();
    assert_eq!(report.appended, 99);
    assert_eq!(report.rejected.len(), 1, "{:?}", report.rejected);
    assert_eq!(report.rejected[0].seq, 100);
    assert_eq!(report.rejected[0].reason.code(), "bad-signature");
    // The genuine entry then extends the feed.
    let report = dst
        .ingest_verified(
            vec![last],
            &verified,
            NOW,
            [3; 32],
            IngestMode::AllOrNothing,
        )
        .unwrap();
    assert_eq!(report.appended, 1);
    assert_eq!(all_entries(&dst, &key), good);
}

/// A version-1 store (every payload kept by hash, no `entry_payloads_v1`)
/// is upgraded in place when opened: its payloads are still found, new
/// entries keep theirs by position, and an unknown later version is refused.
#[test]
fn a_version_1_store_is_upgraded_in_place() {
    use redb::ReadableTable;
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::from_seed(&[25; 32]);
    Store::open(dir.path())
        .unwrap()
        .append_local(&key, notes(3, "old"), NOW)
        .unwrap();
    let meta = redb::TableDefinition::<&str, &[u8]>::new("meta_v1");
    let by_pos = redb::TableDefinition::<&[u8; 40], &[u8]>::new("entry_payloads_v1");
    let by_hash = redb::TableDefinition::<&[u8; 32], &[u8]>::new("payloads_v1");
    let set_schema = |v: u32| {
        let db = redb::Database::open(dir.path().join("store.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(meta)
            .unwrap()
            .insert("schema", v.to_be_bytes().as_slice())
            .unwrap();
        tx.commit().unwrap();
    };
    {
        // Rewrite it as version 1 wrote it.
        let db = redb::Database::open(dir.path().join("store.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let rows: Vec<Vec<u8>> = {
                let t = tx.open_table(by_pos).unwrap();
                t.iter()
                    .unwrap()
                    .map(|r| r.unwrap().1.value().to_vec())
                    .collect()
            };
            assert_eq!(rows.len(), 3, "payloads are kept by position");
            let mut h = tx.open_table(by_hash).unwrap();
            for p in rows {
                h.insert(blake3::hash(&p).as_bytes(), p.as_slice()).unwrap();
            }
        }
        assert!(tx.delete_table(by_pos).unwrap());
        tx.commit().unwrap();
    }
    set_schema(1);
    {
        let store = Store::open(dir.path()).unwrap();
        let old = store.range(&key.public(), 1, 3).unwrap();
        assert!(old.iter().all(|e| e.payload.is_some()), "found by hash");
        store.append_local(&key, notes(1, "new"), NOW).unwrap();
        assert_eq!(store.range(&key.public(), 1, 4).unwrap().len(), 4);
        let report = store.verify_all([1; 32]).unwrap();
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert_eq!((report.payloads_checked, report.payloads_missing), (4, 0));
    }
    set_schema(3);
    match Store::open(dir.path()) {
        Err(StoreError::Schema { found: 3 }) => {}
        other => panic!("expected a schema refusal, got {other:?}"),
    }
}

/// A store whose derived tables are of an older version (here: written before
/// the summary tables existed) is re-indexed when opened.
#[test]
fn an_older_index_version_is_rebuilt_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::from_seed(&[24; 32]);
    let rev = first_revision(vec![]);
    let first = {
        let store = Store::open(dir.path()).unwrap();
        store.append_local(&key, vec![item(&rev)], NOW).unwrap()[0]
            .signed
            .id()
    };
    {
        // Make it look like a version-1 store: no index version, no new tables.
        let db = redb::Database::open(dir.path().join("store.redb")).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta_v1"))
                .unwrap();
            meta.remove("indexes").unwrap();
        }
        for t in ["revision_series_v1", "series_summary_v1", "series_v1"] {
            assert!(
                tx.delete_table(redb::TableDefinition::<&[u8; 32], &[u8]>::new(t))
                    .unwrap()
            );
        }
        tx.commit().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.series_ids().unwrap(), vec![first], "SERIES rebuilt");
    let (generation, _) = store.series_summaries().unwrap();
    assert!(
        store
            .put_series_summaries(generation, &[(first, vec![1])])
            .unwrap()
    );
    let review = review_of(first, &[], Some("ok"));
    store.append_local(&key, vec![item(&review)], NOW).unwrap();
    assert_eq!(
        store.series_summaries().unwrap().1,
        vec![(first, None)],
        "REVISION_SERIES rebuilt: the review finds its series"
    );
}

#[test]
fn indexes_rebuild_from_the_entries() {
    let (_dir, store) = temp_store();
    let key = SecretKey::from_seed(&[31; 32]);
    let rev = first_revision(vec![]);
    let first = store
        .append_local(&key, vec![(rev.type_name().into(), rev.encode())], NOW)
        .unwrap()[0]
        .signed
        .id();
    let review = review_of(first, &[], Some("ok"));
    store
        .append_local(
            &key,
            vec![(review.type_name().into(), review.encode())],
            NOW,
        )
        .unwrap();
    store.append_local(&key, notes(50, "n"), NOW).unwrap();
    let before = (
        store.series_ids().unwrap(),
        store.series_entries(&first).unwrap().len(),
        store.review_entries().unwrap().len(),
    );
    assert_eq!(before.1, 2);
    let n = store.rebuild_indexes().unwrap();
    assert_eq!(n, 52);
    assert_eq!(
        (
            store.series_ids().unwrap(),
            store.series_entries(&first).unwrap().len(),
            store.review_entries().unwrap().len()
        ),
        before
    );
    assert!(store.get(&first).unwrap().is_some());
    let report = store.verify_all([0; 32]).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn the_identity_digest_follows_identity_entries_and_gates_the_cache() {
    use tagline_format::identity::IdentityPayload;
    let (_dir, store) = temp_store();
    let root = SecretKey::from_seed(&[41; 32]);
    let empty = store.identity_digest().unwrap();
    store
        .append_local(
            &root,
            vec![(
                IdentityPayload::Genesis.type_name().into(),
                IdentityPayload::Genesis.encode(),
            )],
            NOW,
        )
        .unwrap();
    let d1 = store.identity_digest().unwrap();
    assert_ne!(d1, empty);
    // Notes do not change it.
    store.append_local(&root, notes(3, "n"), NOW).unwrap();
    assert_eq!(store.identity_digest().unwrap(), d1);
    store.put_identity_cache(&d1, b"cached").unwrap();
    assert_eq!(
        store.identity_cache().unwrap().as_deref(),
        Some(&b"cached"[..])
    );
    // Per-identity parts: by key owner, by id, plus the always-loaded ones.
    assert_eq!(store.identity_parts(&[], &[]).unwrap(), None, "never made");
    let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    let key = [9u8; 32];
    store
        .put_identity_parts(
            &d1,
            &[c],
            &[(a, b"A".to_vec()), (b, b"B".to_vec()), (c, b"C".to_vec())],
            &[(key, a)],
        )
        .unwrap();
    assert_eq!(
        store.identity_parts(&[key, [8; 32]], &[]).unwrap(),
        Some(vec![b"A".to_vec(), b"C".to_vec()])
    );
    assert_eq!(
        store.identity_parts(&[key], &[b, a]).unwrap(),
        Some(vec![b"A".to_vec(), b"B".to_vec(), b"C".to_vec()]),
        "each once"
    );
    let p = IdentityPayload::Profile { name: "Ada".into() };
    store
        .append_local(&root, vec![(p.type_name().into(), p.encode())], NOW)
        .unwrap();
    assert_ne!(store.identity_digest().unwrap(), d1);
    assert_eq!(
        store.identity_cache().unwrap(),
        None,
        "a stale cache is not returned"
    );
    assert_eq!(
        store.identity_parts(&[key], &[]).unwrap(),
        None,
        "nor stale parts"
    );
    // A rebuild reaches the same digest.
    let d2 = store.identity_digest().unwrap();
    store.rebuild_indexes().unwrap();
    assert_eq!(store.identity_digest().unwrap(), d2);
    // The caches are emptied, and still readable and writable.
    assert_eq!(store.identity_cache().unwrap(), None);
    assert_eq!(store.identity_parts(&[key], &[]).unwrap(), None);
    store.put_identity_cache(&d2, b"again").unwrap();
    assert_eq!(
        store.identity_cache().unwrap().as_deref(),
        Some(&b"again"[..])
    );
}

/// Payloads are shared by hash: an identity or review entry stored without its
/// payload is indexed in full once any entry brings that payload, whichever
/// arrives first, and the incremental indexes equal rebuilt ones.
#[test]
fn an_entry_stored_without_payload_is_indexed_when_any_entry_brings_it() {
    use tagline_format::identity::IdentityPayload;
    let (_a, ada_store) = temp_store();
    let (_b, bob_store) = temp_store();
    let (_c, dst) = temp_store();
    let (ada, bob) = (
        SecretKey::from_seed(&[51; 32]),
        SecretKey::from_seed(&[52; 32]),
    );
    let genesis = (
        IdentityPayload::Genesis.type_name().to_string(),
        IdentityPayload::Genesis.encode(),
    );
    let series = tagline_format::EntryId([7; 32]);
    let ack = item(&review_of(
        series,
        &[("Acked-by", "Lead <lead@x.org>")],
        None,
    ));
    // Both feeds hold byte-identical payloads: a genesis and the same ack.
    ada_store
        .append_local(&ada, vec![genesis.clone(), ack.clone()], NOW)
        .unwrap();
    bob_store
        .append_local(&bob, vec![genesis, ack], NOW)
        .unwrap();
    let headers_only = |store: &Store, key: &SecretKey| -> Vec<Entry> {
        all_entries(store, key)
            .into_iter()
            .map(|e| Entry {
                signed: e.signed,
                payload: None,
            })
            .collect()
    };
    let empty = dst.identity_digest().unwrap();
    dst.ingest(
        headers_only(&ada_store, &ada),
        NOW,
        [1; 32],
        IngestMode::AllOrNothing,
    )
    .unwrap();
    assert_eq!(
        dst.identity_digest().unwrap(),
        empty,
        "no payload, no input"
    );
    assert!(dst.entries_referencing(&series).unwrap().is_empty());
    // Bob's entries bring the same payloads: Ada's entries count now too.
    dst.ingest(
        all_entries(&bob_store, &bob),
        NOW,
        [2; 32],
        IngestMode::AllOrNothing,
    )
    .unwrap();
    assert_eq!(dst.entries_referencing(&series).unwrap().len(), 2);
    // Ada's payloads are held by hash only now: served all the same.
    assert_range_bytes_agree(&dst, &ada);
    assert!(
        dst.range_bytes(&ada.public(), 1, 2)
            .unwrap()
            .iter()
            .all(|e| e.payload.is_some())
    );
    let both = dst.identity_digest().unwrap();
    // Ada's payloads arriving late change nothing more (no double count).
    let report = dst
        .ingest(
            all_entries(&ada_store, &ada),
            NOW,
            [3; 32],
            IngestMode::AllOrNothing,
        )
        .unwrap();
    assert_eq!((report.duplicates, report.payloads_added), (2, 0));
    assert_eq!(dst.identity_digest().unwrap(), both);
    dst.rebuild_indexes().unwrap();
    assert_eq!(dst.identity_digest().unwrap(), both);
    assert_eq!(dst.entries_referencing(&series).unwrap().len(), 2);

    // The other order: the same payload was stored with another entry before
    // the header-only entry came. Payloads stored with their entries are
    // kept by position, not looked up by hash (that would cost a randomly
    // keyed insert per entry), so the header-only entry waits for its own
    // payload, which the sync fetches again by position (SPEC.md §14).
    let (_d, dst) = temp_store();
    dst.ingest(
        all_entries(&bob_store, &bob),
        NOW,
        [4; 32],
        IngestMode::AllOrNothing,
    )
    .unwrap();
    let bobs = dst.identity_digest().unwrap();
    dst.ingest(
        headers_only(&ada_store, &ada),
        NOW,
        [5; 32],
        IngestMode::AllOrNothing,
    )
    .unwrap();
    assert_eq!(dst.identity_digest().unwrap(), bobs, "Ada's wait");
    assert_eq!(dst.entries_referencing(&series).unwrap().len(), 1);
    assert_range_bytes_agree(&dst, &ada);
    assert_range_bytes_agree(&dst, &bob);
    assert!(
        dst.range(&ada.public(), 1, 2)
            .unwrap()
            .iter()
            .all(|e| e.payload.is_none())
    );
    let report = dst
        .ingest(
            all_entries(&ada_store, &ada),
            NOW,
            [8; 32],
            IngestMode::AllOrNothing,
        )
        .unwrap();
    assert_eq!(report.payloads_added, 2);
    assert_eq!(dst.identity_digest().unwrap(), both);
    assert_eq!(dst.entries_referencing(&series).unwrap().len(), 2);
    assert!(
        dst.range(&ada.public(), 1, 2)
            .unwrap()
            .iter()
            .all(|e| e.payload.is_some())
    );

    // And a header-only entry whose own payload comes later, with nobody else's.
    let (_e, dst) = temp_store();
    dst.ingest(
        headers_only(&ada_store, &ada),
        NOW,
        [6; 32],
        IngestMode::AllOrNothing,
    )
    .unwrap();
    let report = dst
        .ingest(
            all_entries(&ada_store, &ada),
            NOW,
            [7; 32],
            IngestMode::AllOrNothing,
        )
        .unwrap();
    assert_eq!(report.payloads_added, 2);
    assert_eq!(dst.entries_referencing(&series).unwrap().len(), 1);
    let ada_only = dst.identity_digest().unwrap();
    assert_ne!(ada_only, empty);
    dst.rebuild_indexes().unwrap();
    assert_eq!(dst.identity_digest().unwrap(), ada_only);
}
