//! public-inbox v2 archives (as lore.kernel.org mirrors serve them): epochs
//! `git/0.git`, `git/1.git`, …, one commit per message, the raw message in
//! the commit's blob `m` (a deleted message has `d` instead). Read with the
//! `git` command line (`rev-list`, `cat-file --batch`) with no system or
//! global configuration, so a run can resume after the last commit taken.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::mailinfo::MAX_MAIL_SIZE;
use crate::mbox::SourceError;

/// One epoch's repository, ready to read.
#[derive(Debug)]
pub struct Epoch {
    /// The repository git reads (the epoch itself, or a shadow of it).
    git_dir: PathBuf,
    /// A shadow repository, removed on drop: for an epoch copied without
    /// its (empty) `refs` directory, which git does not take as a
    /// repository; the shadow borrows the epoch's objects.
    _shadow: Option<tempfile::TempDir>,
    /// The commit the epoch's HEAD names.
    pub tip: String,
    pub path: PathBuf,
}

fn io(path: &Path, e: impl std::fmt::Display) -> SourceError {
    SourceError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// `git` with no system or global configuration and a fixed locale.
fn git() -> Command {
    let mut c = Command::new("git");
    c.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("LC_ALL", "C");
    c
}

/// [`git`] on the repository `git_dir`.
fn git_at(git_dir: &Path) -> Command {
    let mut c = git();
    c.arg("--git-dir").arg(git_dir);
    c
}

fn run(mut c: Command, what: &Path) -> Result<String, SourceError> {
    let out = c.stderr(Stdio::piped()).output().map_err(|e| io(what, e))?;
    if !out.status.success() {
        return Err(io(
            what,
            format!(
                "git failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The epochs of an inbox directory in order (`git/0.git`, `git/1.git`, …),
/// or the directory itself when it is one epoch.
pub fn epochs(inbox: &Path) -> Result<Vec<PathBuf>, SourceError> {
    if inbox.join("objects").is_dir() && inbox.join("HEAD").is_file() {
        return Ok(vec![inbox.to_path_buf()]);
    }
    let dir = inbox.join("git");
    let rd = std::fs::read_dir(&dir).map_err(|e| io(&dir, e))?;
    let mut out: Vec<(u64, PathBuf)> = Vec::new();
    for e in rd {
        let p = e.map_err(|e| io(&dir, e))?.path();
        let n = p
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".git"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = n {
            out.push((n, p));
        }
    }
    out.sort();
    Ok(out.into_iter().map(|(_, p)| p).collect())
}

/// Whether `dir` is a public-inbox (an epoch, or a directory of them).
pub fn is_public_inbox(dir: &Path) -> bool {
    (dir.join("objects").is_dir() && dir.join("HEAD").is_file()) || dir.join("git/0.git").is_dir()
}

impl Epoch {
    pub fn open(path: &Path) -> Result<Epoch, SourceError> {
        let (git_dir, shadow) = if path.join("refs").is_dir() {
            (path.to_path_buf(), None)
        } else {
            let shadow = tempfile::Builder::new()
                .prefix("tagline-epoch-")
                .tempdir()
                .map_err(|e| io(path, e))?;
            let mut init = git();
            init.args(["init", "--bare", "-q"]).arg(shadow.path());
            run(init, path)?;
            let objects = std::fs::canonicalize(path.join("objects")).map_err(|e| io(path, e))?;
            std::fs::write(
                shadow.path().join("objects/info/alternates"),
                format!("{}\n", objects.display()),
            )
            .map_err(|e| io(shadow.path(), e))?;
            (shadow.path().to_path_buf(), Some(shadow))
        };
        let tip = resolve_head(path).or_else(|_| {
            let mut c = git_at(&git_dir);
            c.args(["rev-parse", "HEAD"]);
            run(c, path).map(|s| s.trim().to_string())
        })?;
        Ok(Epoch {
            git_dir,
            _shadow: shadow,
            tip,
            path: path.to_path_buf(),
        })
    }

    /// The commits after `since` (all when `None`) up to the tip, oldest
    /// first.
    pub fn commits_since(&self, since: Option<&str>) -> Result<Vec<String>, SourceError> {
        let mut c = git_at(&self.git_dir);
        c.args(["rev-list", "--reverse"]);
        match since {
            Some(s) => c.arg(format!("{s}..{}", self.tip)),
            None => c.arg(&self.tip),
        };
        Ok(run(c, &self.path)?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// The raw messages of `commits`, in order: (commit, bytes). A commit
    /// without a message (a deletion) is skipped; a message over
    /// [`MAX_MAIL_SIZE`] is an error for that commit only.
    pub fn messages(
        &self,
        commits: Vec<String>,
    ) -> Result<impl Iterator<Item = Result<(String, Vec<u8>), SourceError>>, SourceError> {
        let mut child = git_at(&self.git_dir)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| io(&self.path, e))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| io(&self.path, "no stdin for git cat-file"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io(&self.path, "no stdout for git cat-file"))?;
        let asked = commits.clone();
        // Written on a thread: git answers while it reads.
        let writer = std::thread::spawn(move || {
            for c in &asked {
                if writeln!(stdin, "{c}:m").is_err() {
                    break;
                }
            }
        });
        Ok(Batch {
            path: self.path.clone(),
            out: BufReader::new(stdout),
            commits: commits.into_iter(),
            taken: 0,
            child: Some(child),
            writer: Some(writer),
        })
    }
}

/// The commit HEAD names, from `HEAD` and `packed-refs` (or `refs/`).
fn resolve_head(path: &Path) -> Result<String, SourceError> {
    let head = std::fs::read_to_string(path.join("HEAD")).map_err(|e| io(path, e))?;
    let head = head.trim();
    let Some(name) = head.strip_prefix("ref: ") else {
        return Ok(head.to_string());
    };
    if let Ok(s) = std::fs::read_to_string(path.join(name)) {
        return Ok(s.trim().to_string());
    }
    let packed = std::fs::read_to_string(path.join("packed-refs")).map_err(|e| io(path, e))?;
    packed
        .lines()
        .find_map(|l| {
            let (sha, r) = l.split_once(' ')?;
            (r == name).then(|| sha.to_string())
        })
        .ok_or_else(|| {
            io(
                path,
                format!("HEAD names {name}, which is not in packed-refs"),
            )
        })
}

struct Batch {
    path: PathBuf,
    out: BufReader<std::process::ChildStdout>,
    commits: std::vec::IntoIter<String>,
    /// Commits read so far (the index a refusal names).
    taken: usize,
    child: Option<std::process::Child>,
    writer: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

impl Iterator for Batch {
    type Item = Result<(String, Vec<u8>), SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let commit = self.commits.next()?;
            self.taken += 1;
            let mut header = String::new();
            match self.out.read_line(&mut header) {
                Ok(0) => return Some(Err(io(&self.path, "git cat-file stopped early"))),
                Ok(_) => {}
                Err(e) => return Some(Err(io(&self.path, e))),
            }
            let mut parts = header.split_whitespace();
            let (_, kind, size) = (parts.next(), parts.next(), parts.next());
            if kind == Some("missing") || kind == Some("ambiguous") {
                continue; // a deleted message
            }
            let Some(size) = size.and_then(|s| s.parse::<usize>().ok()) else {
                return Some(Err(io(
                    &self.path,
                    format!("unexpected git answer {header:?}"),
                )));
            };
            if size > MAX_MAIL_SIZE {
                // Skip its bytes and the newline after them.
                let skipped = std::io::copy(
                    &mut (&mut self.out).take(size as u64 + 1),
                    &mut std::io::sink(),
                );
                if let Err(e) = skipped {
                    return Some(Err(io(&self.path, e)));
                }
                return Some(Err(SourceError::TooLarge {
                    index: self.taken,
                    max: MAX_MAIL_SIZE,
                }));
            }
            let mut buf = vec![0u8; size + 1];
            if let Err(e) = self.out.read_exact(&mut buf) {
                return Some(Err(io(&self.path, e)));
            }
            buf.pop();
            return Some(Ok((commit, buf)));
        }
    }
}
