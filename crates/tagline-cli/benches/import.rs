//! Email bridge import benchmark (issue: Email bridge, "Performance"): the
//! watchdog list's public-inbox epoch (../shared/corpus, 11,670 messages)
//! imported into a fresh data directory by the real `tagline bridge import`
//! (parse, group, record every mail with its raw bytes, write revisions and
//! reviews, sign, store in redb), beside, in the same run:
//!
//! - `git cat-file --batch` extracting the same messages (the floor: the
//!   import reads them that way);
//! - Python's `email` parser (the family b4 and Patchwork use) parsing the
//!   same messages, each walked for its text parts as they do.
//!
//! Run it with:
//!
//!     cargo bench -p tagline-cli --bench import
//!     TAGLINE_IMPORT_RUNS=5 cargo bench -p tagline-cli --bench import
//!
//! The import is then run again on the same data directory: nothing is new,
//! so its time is the start-up replay of the bridge's own feed.
//!
//! Each is run TAGLINE_IMPORT_RUNS times (default 3); the median is shown.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "benchmark code"
)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PYTHON_PARSE: &str = r#"
import email, email.policy, struct, sys, time
data = open(sys.argv[1], 'rb').read()
msgs, i = [], 0
while i < len(data):
    (n,) = struct.unpack('<I', data[i:i+4]); i += 4
    msgs.append(data[i:i+n]); i += n
t = time.perf_counter()
parts = 0
for raw in msgs:
    m = email.message_from_bytes(raw, policy=email.policy.default)
    m['subject'], m['from'], m['message-id'], m['in-reply-to'], m['references'], m['date']
    for p in m.walk():
        if p.get_content_maintype() == 'text':
            try:
                p.get_content()
            except Exception:
                pass
            parts += 1
print(len(msgs), time.perf_counter() - t, parts)
"#;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn tagline(home: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_tagline"))
        .args(args)
        .env("TAGLINE_HOME", home)
        .env("TAGLINE_STATE_DIR", home.join("state"))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "tagline {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn main() {
    let runs: usize = std::env::var("TAGLINE_IMPORT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let inbox = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/lore-linux-watchdog/public-inbox-v2/dev");
    let epochs = tagline_email::public_inbox::epochs(&inbox).unwrap();
    let epoch = tagline_email::public_inbox::Epoch::open(&epochs[0]).unwrap();
    let commits = epoch.commits_since(None).unwrap();

    // 1. git cat-file --batch.
    let mut raws = Vec::new();
    let mut extract = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        raws = epoch
            .messages(commits.clone())
            .unwrap()
            .map(|m| m.unwrap().1)
            .collect::<Vec<_>>();
        extract.push(t.elapsed());
    }
    let n = raws.len();
    let bytes: usize = raws.iter().map(Vec::len).sum();

    // 2. tagline bridge import into a fresh data directory.
    let mut import = Vec::new();
    let mut again = Vec::new();
    let mut summary = String::new();
    for _ in 0..runs {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().join("home");
        tagline(&home, &["init"]);
        let id = std::fs::read_to_string(home.join("identity")).unwrap();
        tagline(
            &home,
            &[
                "project",
                "create",
                "--name",
                "watchdog",
                "--bridge",
                id.trim(),
            ],
        );
        let t = Instant::now();
        summary = tagline(
            &home,
            &[
                "bridge",
                "import",
                inbox.to_str().unwrap(),
                "--project",
                "watchdog",
                "--json",
            ],
        );
        import.push(t.elapsed());
        // Again: nothing new, so the time is the start-up replay of the
        // bridge's feed (every recorded mail parsed and re-derived).
        let t = Instant::now();
        let s2 = tagline(
            &home,
            &["bridge", "import", inbox.to_str().unwrap(), "--json"],
        );
        again.push(t.elapsed());
        assert!(s2.contains("\"bridged\":0"), "{s2}");
    }
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(s["messages"].as_u64(), Some(n as u64), "{s}");

    // 3. Python's email parser on the same messages.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("messages.bin");
    let mut f = std::fs::File::create(&data).unwrap();
    for r in &raws {
        f.write_all(&(r.len() as u32).to_le_bytes()).unwrap();
        f.write_all(r).unwrap();
    }
    drop(f);
    let script = tmp.path().join("parse.py");
    std::fs::write(&script, PYTHON_PARSE).unwrap();
    let mut python = Vec::new();
    for _ in 0..runs {
        let out = Command::new("python3")
            .arg(&script)
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let secs: f64 = text.split_whitespace().nth(1).unwrap().parse().unwrap();
        python.push(Duration::from_secs_f64(secs));
    }

    let rate = |d: Duration| n as f64 / d.as_secs_f64();
    let (e, i, p, r) = (
        median(extract),
        median(import),
        median(python),
        median(again),
    );
    println!(
        "watchdog epoch: {n} messages, {:.1} MB, median of {runs} runs",
        bytes as f64 / 1e6
    );
    println!(
        "  git cat-file --batch extraction  {:>8.0} msg/s  ({:.2} s)",
        rate(e),
        e.as_secs_f64()
    );
    println!(
        "  tagline bridge import            {:>8.0} msg/s  ({:.2} s)  = {:.0}% of extraction",
        rate(i),
        i.as_secs_f64(),
        100.0 * e.as_secs_f64() / i.as_secs_f64()
    );
    println!(
        "  Python email parser (parse only) {:>8.0} msg/s  ({:.2} s)  import = {:.1}x Python",
        rate(p),
        p.as_secs_f64(),
        p.as_secs_f64() / i.as_secs_f64()
    );
    println!(
        "  import again (start-up replay of the bridge's feed, nothing new)  {:.2} s",
        r.as_secs_f64()
    );
    println!(
        "  import wrote {} revisions, {} reviews ({} trailers vouched, {} flagged)",
        s["revisions"], s["reviews"], s["trailers"], s["flagged"]
    );
}
