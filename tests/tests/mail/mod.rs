//! Live delivery: Python's smtplib (a real LMTP client, from the standard
//! library) hands a series and review replies to `tagline bridge serve` on
//! 127.0.0.1. Bob proves his address with a challenge mail signed with DKIM
//! (a generated ed25519 key, served from a recorded-keys file, offline); his
//! Reviewed-by then counts in `tagline status`, while a reply forged in his
//! name (its signature broken in transit) is listed but not counted, and a
//! second delivery of the same mail adds nothing. Every wait is bounded; the
//! server is killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::daemon::Daemon;
use super::tagline_bin;

fn cmd(home: &Path, state: &Path) -> Command {
    let mut c = Command::new(tagline_bin());
    c.env("TAGLINE_HOME", home)
        .env("TAGLINE_STATE_DIR", state)
        .env("RUST_LOG", "warn");
    c
}

fn ok(home: &Path, state: &Path, args: &[&str]) -> String {
    let out = cmd(home, state).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "tagline {args:?} in {}: {}",
        home.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(home: &Path, state: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(home, state, args)).unwrap()
}

/// Signs `raw` for `domain` (selector `s1`) with the key `pkcs8`.
fn signed(raw: &str, domain: &str, pkcs8: &[u8]) -> Vec<u8> {
    use mail_auth::common::headers::HeaderWriter as _;
    let key = mail_auth::common::crypto::Ed25519Key::from_pkcs8_der(pkcs8).unwrap();
    let sig = mail_auth::dkim::DkimSigner::from_key(key)
        .domain(domain)
        .selector("s1")
        .headers(["From", "To", "Subject", "Message-ID", "Date", "In-Reply-To"])
        .sign(raw.as_bytes())
        .unwrap();
    let mut m = sig.to_header().into_bytes();
    m.extend_from_slice(raw.as_bytes());
    m
}

fn mail(from: &str, subject: &str, id: &str, reply: &str, body: &str) -> String {
    let mut m = format!(
        "From: {from}\r\nTo: dev@lists.example.org\r\nSubject: {subject}\r\nMessage-ID: <{id}>\r\nDate: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
    );
    if !reply.is_empty() {
        m.push_str(&format!(
            "In-Reply-To: <{reply}>\r\nReferences: <{reply}>\r\n"
        ));
    }
    m + "\r\n" + &body.replace('\n', "\r\n")
}

fn patch(f: &str) -> String {
    format!(
        "Change {f}.\n\nSigned-off-by: Ada <ada@example.net>\n---\ndiff --git a/{f} b/{f}\n--- a/{f}\n+++ b/{f}\n@@ -1 +1 @@\n-a\n+b\n"
    )
}

/// Delivers each file over LMTP with smtplib; returns what it printed (one
/// line per mail: the server's reply).
pub(crate) fn deliver(addr: &str, files: &[PathBuf]) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap();
    let script = r#"
import smtplib, sys
host, port, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
with smtplib.LMTP(host, port, timeout=30) as s:
    for f in files:
        data = open(f, 'rb').read()
        refused = s.sendmail('list-bounces@lists.example.org', ['bridge@localhost'], data)
        print('ok', f, refused)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(host)
        .arg(port)
        .args(files)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "smtplib: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn lmtp_delivery_counts_the_reviewer_verified_by_a_challenge_mail() {
    use base64::Engine as _;
    use mail_auth::common::crypto::Ed25519Key;
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let state = t.join("state");
    let (bridge, bob) = (t.join("bridge"), t.join("bob"));
    for h in [&bridge, &bob] {
        ok(h, &state, &["init"]);
    }
    let bridge_id = json(&bridge, &state, &["id", "--json"])["identity"]
        .as_str()
        .unwrap()
        .to_string();
    let claimed = ok(&bob, &state, &["identity", "add-email", "bob@example.org"]);
    let token = claimed
        .split_whitespace()
        .find(|w| w.starts_with("tagline-email-proof-"))
        .unwrap_or_else(|| panic!("no challenge in {claimed}"))
        .to_string();
    let bob_id = json(&bob, &state, &["id", "--json"])["identity"]
        .as_str()
        .unwrap()
        .to_string();
    // Bob's feeds reach the bridge (as replication would bring them).
    let run = |h: &Path, args: &[&str]| ok(h, &state, args);
    tagline_e2e::copy_feeds(&run, &bob, &bridge, t);
    ok(
        &bridge,
        &state,
        &[
            "project", "create", "--name", "demo", "--bridge", &bridge_id,
        ],
    );

    // example.org's DKIM key, recorded for the bridge (no DNS).
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let keys = t.join("dkim-keys");
    std::fs::write(
        &keys,
        format!(
            "# example.org's key\ns1._domainkey.example.org v=DKIM1; k=ed25519; p={}\n",
            base64::engine::general_purpose::STANDARD.encode(key.public_key())
        ),
    )
    .unwrap();

    let mut c = cmd(&bridge, &state);
    c.args([
        "bridge",
        "serve",
        "--lmtp",
        "127.0.0.1:0",
        "--smtp",
        "127.0.0.1:0",
        "--project",
        "demo",
        "--list",
        "dev@lists.example.org",
        "--dkim-keys",
        keys.to_str().unwrap(),
        "--dkim-offline",
    ])
    .stderr(Stdio::inherit());
    let server = Daemon::spawn(c);
    let [addr, smtp]: [String; 2] = server
        .wait_for_each(&["listening  lmtp ", "listening  smtp "])
        .try_into()
        .unwrap();

    let bob_from = "Bob Reviewer <bob@example.org>";
    let mails: Vec<(&str, Vec<u8>)> = vec![
        (
            "challenge",
            signed(
                &mail(
                    bob_from,
                    "tagline address check",
                    "c1@example.org",
                    "",
                    &format!("{token}\n"),
                ),
                "example.org",
                &pkcs8,
            ),
        ),
        (
            "cover",
            mail(
                "Ada <ada@example.net>",
                "[PATCH 0/2] x: two changes",
                "s0@example.net",
                "",
                "Two changes.\n",
            )
            .into_bytes(),
        ),
        (
            "patch1",
            mail(
                "Ada <ada@example.net>",
                "[PATCH 1/2] x: one",
                "s1@example.net",
                "s0@example.net",
                &patch("a.c"),
            )
            .into_bytes(),
        ),
        (
            "patch2",
            mail(
                "Ada <ada@example.net>",
                "[PATCH 2/2] x: two",
                "s2@example.net",
                "s0@example.net",
                &patch("b.c"),
            )
            .into_bytes(),
        ),
        (
            "review",
            signed(
                &mail(
                    bob_from,
                    "Re: [PATCH 0/2] x: two changes",
                    "r1@example.org",
                    "s0@example.net",
                    "Looks good.\n\nReviewed-by: Bob Reviewer <bob@example.org>\n",
                ),
                "example.org",
                &pkcs8,
            ),
        ),
        (
            "forged",
            String::from_utf8(signed(
                &mail(
                    bob_from,
                    "Re: [PATCH 2/2] x: two",
                    "f1@example.org",
                    "s2@example.net",
                    "Fine.\n\nAcked-by: Bob Reviewer <bob@example.org>\n",
                ),
                "example.org",
                &pkcs8,
            ))
            .unwrap()
            .replace("Fine.", "Fine!")
            .into_bytes(),
        ),
    ];
    let mut files = Vec::new();
    for (name, bytes) in &mails {
        let f = t.join(format!("{name}.eml"));
        std::fs::write(&f, bytes).unwrap();
        files.push(f);
    }
    let said = deliver(&addr, &files);
    assert_eq!(said.lines().count(), mails.len(), "{said}");
    // The same review once more: taken, nothing added.
    deliver(&addr, &files[4..5]);

    let mut told = Vec::new();
    while told.len() < mails.len() + 1 {
        told.push(server.next_line());
    }
    assert!(
        told[0].contains(&format!("verified {bob_id} bob@example.org")),
        "{told:?}"
    );
    assert!(told[3].contains("1 revisions"), "{told:?}");
    assert!(
        told[4].contains("1 reviews, 1 trailers vouched for, 0 flagged"),
        "{told:?}"
    );
    assert!(
        told[5].contains("0 trailers vouched for, 1 flagged"),
        "{told:?}"
    );
    assert!(told[6].contains("was bridged before"), "{told:?}");

    // While the server runs (it holds the store only per delivery).
    let st = json(&bridge, &state, &["status", "1", "--json"]);
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
        uncounted.contains("Acked-by: Bob") && uncounted.contains("DKIM result is neutral"),
        "{uncounted}"
    );

    // Round trip: Bob reviews patch 2 natively; the bridge's outbox renders
    // it as a reply in the thread and sends it with lettre to an SMTP relay
    // (here the bridge's own SMTP port, standing in for the list that would
    // echo it back); the inbound side recognises it and does not bridge it.
    let feed = json(&bridge, &state, &["id", "--json"])["feed"]
        .as_str()
        .unwrap()
        .to_string();
    let file = t.join("bridge.feed");
    ok(
        &bridge,
        &state,
        &["export", &feed, "-o", file.to_str().unwrap()],
    );
    ok(&bob, &state, &["import", file.to_str().unwrap()]);
    ok(&bob, &state, &["identity", "set-name", "Bob Reviewer"]);
    ok(
        &bob,
        &state,
        &[
            "review",
            "1",
            "--patch",
            "2",
            "--acked-by",
            "--comment",
            "Fine now.",
        ],
    );
    tagline_e2e::copy_feeds(&run, &bob, &bridge, t);
    let relay = format!("smtp://{smtp}");
    let send = || {
        ok(
            &bridge,
            &state,
            &[
                "bridge",
                "outbox",
                "--send",
                "--smtp-relay",
                &relay,
                "--from",
                "tagline@lists.example.org",
            ],
        )
    };
    let sent = send();
    assert!(
        sent.contains("1 mails queued") && sent.contains("sent "),
        "{sent}"
    );
    assert!(!sent.contains("pending"), "{sent}");
    let echoed = server.next_line();
    assert!(echoed.contains("not bridged back"), "{echoed}");
    let mail = std::fs::read_dir(bridge.join("outbox/sent"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .next()
        .unwrap();
    assert!(mail.contains("In-Reply-To: <s2@example.net>\r\n"), "{mail}");
    assert!(
        mail.contains("Subject: Re: [PATCH 2/2] x: two\r\n"),
        "{mail}"
    );
    assert!(
        mail.contains("Fine now.\r\n\r\nAcked-by: Bob Reviewer <bob@example.org>\r\n"),
        "{mail}"
    );
    assert!(
        mail.contains("From: \"Bob Reviewer via Tagline\" <tagline@lists.example.org>"),
        "{mail}"
    );
    // Never twice.
    let again = send();
    assert_eq!(again.trim(), "0 mails queued", "{again}");
    drop(server);
}
