//! A long-running `tagline` process (node, ci run, gate, bridge serve) in
//! a test: its stdout read line by line on a thread, kept for failure
//! reports; killed when dropped. Every wait is bounded.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest wait for a line.
pub(crate) const LINE_WAIT: Duration = Duration::from_secs(60);

pub(crate) struct Daemon {
    pub(crate) child: Child,
    said: Arc<Mutex<Vec<String>>>,
    lines: mpsc::Receiver<String>,
}

impl Daemon {
    /// Spawns `c` with its stdout piped (stdin and stderr as `c` says).
    pub(crate) fn spawn(mut c: Command) -> Daemon {
        let mut child = c.stdout(Stdio::piped()).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let said = Arc::new(Mutex::new(Vec::new()));
        let (tx, lines) = mpsc::channel();
        let keep = said.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                keep.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Daemon { child, said, lines }
    }

    /// The next line it prints.
    pub(crate) fn next_line(&self) -> String {
        self.lines
            .recv_timeout(LINE_WAIT)
            .unwrap_or_else(|_| panic!("no line after {:?}", self.said()))
    }

    /// For each prefix, the first line starting with it, without it (in
    /// any order; the lines before and between are passed over).
    pub(crate) fn wait_for_each(&self, prefixes: &[&str]) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; prefixes.len()];
        let t = Instant::now();
        while found.iter().any(Option::is_none) {
            let line = self
                .lines
                .recv_timeout(LINE_WAIT.saturating_sub(t.elapsed()))
                .unwrap_or_else(|_| panic!("no {prefixes:?} in {:?}", self.said()));
            for (p, f) in prefixes.iter().zip(found.iter_mut()) {
                if f.is_none()
                    && let Some(rest) = line.strip_prefix(p)
                {
                    *f = Some(rest.trim().to_string());
                }
            }
        }
        found.into_iter().flatten().collect()
    }

    /// The first line starting with `prefix`, without it.
    pub(crate) fn wait_for(&self, prefix: &str) -> String {
        self.wait_for_each(&[prefix]).remove(0)
    }

    /// Everything it printed so far.
    pub(crate) fn said(&self) -> Vec<String> {
        self.said.lock().unwrap().clone()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
