//! Real `tagline node` processes on 127.0.0.1: two nodes find each other by
//! an explicit address and sync; the CLI works while a node holds the store
//! (the local API lends it); `tagline sync status` shows the peer; a node
//! killed with SIGKILL and restarted resumes without loss or duplicates;
//! `tagline node --once` exits 0 when synced and non-zero with the reason
//! when no peer answers. Every wait is bounded; children are killed on drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::Daemon;
use super::tagline_bin;

/// Longest wait for anything in these tests.
pub(crate) const WAIT: Duration = Duration::from_secs(60);
/// Longest wait for what must travel live, not at the next periodic resync
/// (`RESYNC_INTERVAL_MS`, 60 s).
pub(crate) const LIVE: Duration = Duration::from_secs(30);

pub(crate) fn cmd(home: &Path) -> Command {
    let mut c = Command::new(tagline_bin());
    c.env("TAGLINE_HOME", home)
        .env("TAGLINE_STATE_DIR", home.join("state"))
        .env("RUST_LOG", "warn,tagline_net=info,tagline_node=info");
    c
}

pub(crate) fn ok(home: &Path, args: &[&str]) -> String {
    let out = cmd(home).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "tagline {args:?} in {}: {}",
        home.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A running `tagline node`, killed when dropped.
pub(crate) struct Node {
    daemon: Daemon,
    pub(crate) addr: String,
    pub(crate) peer_id: String,
}

impl Node {
    pub(crate) fn start(home: &Path, extra: &[&str]) -> Node {
        let mut c = cmd(home);
        c.args(["node", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
            .args(extra)
            .stderr(Stdio::null());
        let daemon = Daemon::spawn(c);
        let mut said = daemon.wait_for_each(&["listening  ", "peer id    "]);
        let peer_id = said.pop().unwrap();
        let addr = said.pop().unwrap();
        Node {
            daemon,
            addr,
            peer_id,
        }
    }

    /// SIGTERM, and the exit status.
    pub(crate) fn stop(mut self) -> std::process::ExitStatus {
        let child = &mut self.daemon.child;
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let t = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                return s;
            }
            assert!(t.elapsed() < WAIT, "node did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: no clean shutdown at all.
    fn kill9(mut self) {
        self.daemon.child.kill().unwrap();
        self.daemon.child.wait().unwrap();
    }
}

pub(crate) fn until(what: &str, f: impl FnMut() -> bool) {
    until_within(what, WAIT, f);
}

pub(crate) fn until_within(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The head of `feed` in `home` (0 when none), read through the CLI.
fn head(home: &Path, feed: &str) -> u64 {
    let out = cmd(home)
        .args(["log", feed, "--json", "--limit", "1"])
        .output()
        .unwrap();
    if !out.status.success() {
        return 0;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v["seq"].as_u64())
        .unwrap_or(0)
}

fn publish(home: &Path, text: &str) {
    let mut c = cmd(home)
        .args(["publish", "--type", "tagline/note", "--json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    let j = serde_json::json!({ "0": text }).to_string();
    c.stdin.take().unwrap().write_all(j.as_bytes()).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "publish: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn homes() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    ok(&a, &["init"]);
    ok(&b, &["init"]);
    (d, a, b)
}

pub(crate) fn json_of(s: &str) -> serde_json::Value {
    serde_json::from_str(s.trim()).unwrap()
}

/// One field of `tagline id --json` (feed, identity, peer_id).
pub(crate) fn id_field(home: &Path, field: &str) -> String {
    json_of(&ok(home, &["id", "--json"]))[field]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn two_nodes_sync_live_and_the_cli_works_beside_them() {
    let (_d, a, b) = homes();
    let (feed_a, identity_a) = (id_field(&a, "feed"), id_field(&a, "identity"));
    let node_a = Node::start(&a, &[]);
    // The node's key is the one `id --json` reports, separate from the feed key.
    assert_eq!(id_field(&a, "peer_id"), node_a.peer_id);
    // Appending while the node runs: the CLI borrows the store.
    for i in 0..3 {
        publish(&a, &format!("before {i}"));
    }
    let head_a = head(&a, &feed_a);
    assert!(head_a >= 4, "join entry and three notes, found {head_a}");

    ok(&b, &["follow", &identity_a]);
    ok(&b, &["peers", "add", &node_a.addr]);
    let node_b = Node::start(&b, &[]);
    until("B to hold A's entries", || head(&b, &feed_a) == head_a);
    // Live: a new entry at A reaches B without a restart.
    publish(&a, "after");
    until_within("B to hold A's new entry", LIVE, || {
        head(&b, &feed_a) == head_a + 1
    });

    let st = json_of(&ok(&b, &["sync", "status", "--json"]));
    assert_eq!(st["running"], true);
    let peers: Vec<&str> = st["connected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer"].as_str().unwrap())
        .collect();
    assert_eq!(peers, vec![node_a.peer_id.as_str()]);
    let text = ok(&b, &["sync", "status"]);
    assert!(text.contains(&node_a.peer_id), "{text}");
    let text = ok(&b, &["peers"]);
    assert!(
        text.contains("connected") && text.contains(&node_a.peer_id),
        "{text}"
    );
    // What B stored verifies in full.
    ok(&b, &["verify"]);

    assert!(node_b.stop().success());
    assert!(node_a.stop().success());
    assert!(
        !a.join("node.sock").exists(),
        "the API socket is removed on stop"
    );
    let st = json_of(&ok(&b, &["sync", "status", "--json"]));
    assert_eq!(st["running"], false);
}

#[test]
fn a_node_killed_with_sigkill_resumes_without_loss_or_duplicates() {
    let (_d, a, b) = homes();
    let feed_a = id_field(&a, "feed");
    let node_a = Node::start(&a, &[]);
    ok(&b, &["follow", &feed_a]);
    ok(&b, &["peers", "add", &node_a.addr]);
    let node_b = Node::start(&b, &[]);
    publish(&a, "one");
    until("B to hold A's first note", || head(&b, &feed_a) >= 2);
    node_b.kill9();
    // A goes on while B is down.
    for i in 0..20 {
        publish(&a, &format!("while B was down {i}"));
    }
    let head_a = head(&a, &feed_a);
    let node_b = Node::start(&b, &[]);
    until("B to catch up after the restart", || {
        head(&b, &feed_a) == head_a
    });
    let log = ok(&b, &["log", &feed_a, "--json"]);
    let seqs: Vec<u64> = log
        .lines()
        .map(|l| json_of(l)["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=head_a).collect::<Vec<_>>(),
        "each entry once, in order"
    );
    ok(&b, &["verify"]);
    drop(node_b);
    drop(node_a);
}

#[test]
fn node_once_syncs_and_exits_or_says_why_not() {
    let (_d, a, b) = homes();
    let feed_a = id_field(&a, "feed");
    // No peer known: a clear error, non-zero exit.
    let out = cmd(&b).args(["node", "--once"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no peers to sync with"), "{err}");
    // A peer nobody listens on: non-zero, and the reason.
    let out = cmd(&b)
        .args(["node", "--once", "--peer", "/ip4/127.0.0.1/tcp/9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("could not reach any of the 1 known peers"),
        "{err}"
    );

    let node_a = Node::start(&a, &[]);
    for i in 0..5 {
        publish(&a, &format!("note {i}"));
    }
    let head_a = head(&a, &feed_a);
    ok(&b, &["follow", &feed_a]);
    ok(&b, &["peers", "add", &node_a.addr]);
    let out = ok(&b, &["node", "--once", "--timeout", "60"]);
    assert!(out.contains("synced with 1 peers"), "{out}");
    assert_eq!(head(&b, &feed_a), head_a);
    // Nothing new: still done, and nothing changed.
    let out = ok(&b, &["node", "--once", "--timeout", "60"]);
    assert!(out.contains("0 feeds updated"), "{out}");
    drop(node_a);
}

/// Runs real git in `dir`, isolated from the user's configuration.
fn git(dir: &Path, args: &[&str]) {
    tagline_e2e::git(dir, dir, args);
}

#[test]
fn a_newcomers_series_reaches_a_subscriber_through_the_leads_node() {
    let d = tempfile::tempdir().unwrap();
    let (lead, ada, carol) = (
        d.path().join("lead"),
        d.path().join("ada"),
        d.path().join("carol"),
    );
    for h in [&lead, &ada, &carol] {
        ok(h, &["init"]);
    }
    ok(&lead, &["project", "create", "--name", "demo"]);
    let project = json_of(&ok(&lead, &["project", "show", "--json"]))["project"]
        .as_str()
        .unwrap()
        .to_owned();
    let lead_identity = id_field(&lead, "identity");
    // The lead's node follows its own project without being told.
    let node_lead = Node::start(&lead, &[]);

    // Ada, a newcomer nobody follows, fetches the project once and posts.
    ok(&ada, &["follow", &lead_identity]);
    ok(&ada, &["peers", "add", &node_lead.addr]);
    ok(&ada, &["node", "--once", "--timeout", "60"]);
    let repo = d.path().join("repo");
    tagline_e2e::repo_with(&repo, &repo, &[("a.c", "int a;\n")]);
    std::fs::write(repo.join("a.c"), "int a = 1;\n").unwrap();
    git(&repo, &["commit", "-q", "-a", "-m", "a: initialise"]);
    git(&repo, &["format-patch", "-q", "-1", "-o", "../v1"]);
    let patch = std::fs::read_dir(d.path().join("v1"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    ok(
        &ada,
        &["submit", "--project", "demo", patch.to_str().unwrap()],
    );

    // Carol subscribes to the project and knows only the lead's node; she
    // is synced with it before Ada's node comes up, so Ada's series must
    // travel live (Ada -> lead -> Carol), not in Carol's first exchange.
    ok(&carol, &["subscribe", &project]);
    ok(&carol, &["peers", "add", &node_lead.addr]);
    let node_carol = Node::start(&carol, &[]);
    until("Carol to hold the project", || {
        let st = json_of(&ok(&carol, &["sync", "status", "--json"]));
        st["idle"] == true && st["connected"].as_array().is_some_and(|a| !a.is_empty())
    });
    // Past the replication sets' refresh (2 s), so nothing but the live
    // path is left to carry Ada's series.
    std::thread::sleep(Duration::from_secs(5));
    let node_ada = Node::start(&ada, &[]);
    // Well within the 60 s resync, which would carry it anyway.
    until_within("Carol to see Ada's series", LIVE, || {
        let out = cmd(&carol).args(["series", "--json"]).output().unwrap();
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .ok()
                .and_then(|v| v.as_array().map(|a| a.len()))
                == Some(1)
    });
    let st = json_of(&ok(&carol, &["sync", "status", "--json"]));
    assert_eq!(st["topics"], 1, "{st}");
    drop((node_carol, node_ada, node_lead));
}
