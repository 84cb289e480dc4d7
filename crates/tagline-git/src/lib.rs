//! Git at the edge, as b4 does it: the `git` command line for what gitoxide
//! cannot do yet (am, apply, merge, push), run with fixed, isolating
//! options, in throw-away worktrees.
//!
//! Every git run here ignores the system and global configuration, runs no
//! hooks, signs nothing, speaks the C locale and never prompts or pages
//! (see [`Git::command`]). A failure comes back as [`GitError::Failed`]
//! with the command and what git said, for the user to read.
//!
//! [`mbox`] is pure: a revision as the mbox `git am` applies, with counted
//! trailers in its commit messages.

pub mod mbox;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Longest part of git's output kept in an error.
pub const MAX_ERROR_OUTPUT: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run git: {0} (is git installed and on PATH?)")]
    Spawn(String),
    #[error("{dir} is not a git repository: {output}")]
    NotARepository { dir: String, output: String },
    #[error("`git {command}` in {dir} failed (exit {code}): {output}")]
    Failed {
        command: String,
        dir: String,
        code: i32,
        output: String,
    },
    #[error(
        "the branch {branch} is checked out in {worktree}: moving it there would leave that working tree showing the merge undone (use a bare clone, `git clone --bare`, or check out another branch there)"
    )]
    CheckedOut { branch: String, worktree: String },
    #[error("{0}")]
    Io(String),
}

/// Who commits (the committer of applied patches; authors come from the
/// patches).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committer {
    pub name: String,
    pub email: String,
}

impl Default for Committer {
    /// For a repository only read from.
    fn default() -> Self {
        Committer {
            name: "tagline".into(),
            email: "tagline@localhost".into(),
        }
    }
}

/// A repository, driven through the `git` command line.
#[derive(Debug, Clone)]
pub struct Git {
    repo: PathBuf,
    committer: Committer,
}

fn clip(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    if s.len() <= MAX_ERROR_OUTPUT {
        return s.to_string();
    }
    format!(
        "{}…",
        s.get(..s.floor_char_boundary(MAX_ERROR_OUTPUT))
            .unwrap_or_default()
    )
}

impl Git {
    /// The repository at `repo` (a work tree or a bare repository).
    pub fn open(repo: &Path, committer: Committer) -> Result<Git, GitError> {
        let g = Git {
            repo: repo.to_path_buf(),
            committer,
        };
        match g.run(repo, &["rev-parse", "--git-dir"], None) {
            Ok(_) => Ok(g),
            Err(GitError::Failed { output, .. }) => Err(GitError::NotARepository {
                dir: repo.display().to_string(),
                output,
            }),
            Err(e) => Err(e),
        }
    }

    pub fn repo(&self) -> &Path {
        &self.repo
    }

    /// `git` with the isolating options, to run in `dir`.
    pub fn command(&self, dir: &Path) -> Command {
        let mut c = Command::new("git");
        c.current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("LC_ALL", "C")
            .env("LANG", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_PAGER", "cat")
            .env("GIT_EDITOR", "true")
            .env("GIT_COMMITTER_NAME", &self.committer.name)
            .env("GIT_COMMITTER_EMAIL", &self.committer.email)
            .env_remove("GIT_DIR")
            .env_remove("GIT_WORK_TREE")
            .env_remove("GIT_INDEX_FILE")
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "commit.gpgSign=false",
                "-c",
                "tag.gpgSign=false",
                "-c",
                "core.autocrlf=false",
                "-c",
                "am.keepcr=false",
                "-c",
                &format!("user.name={}", self.committer.name),
                "-c",
                &format!("user.email={}", self.committer.email),
            ]);
        c
    }

    /// Runs `git ARGS` in `dir` with `input` on its standard input; its
    /// standard output, or the failure with git's words.
    pub fn run(
        &self,
        dir: &Path,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>, GitError> {
        let mut c = self.command(dir);
        c.args(args)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().map_err(|e| GitError::Spawn(e.to_string()))?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write as _;
            // A git that exits early closes its end: its own error says why.
            let _ = stdin.write_all(data);
        }
        let out = child
            .wait_with_output()
            .map_err(|e| GitError::Spawn(e.to_string()))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        // What git said on both streams (`git am` names the failed patch
        // on stdout), without its advice lines.
        let said: Vec<u8> = [out.stdout, out.stderr]
            .concat()
            .split(|b| *b == b'\n')
            .filter(|l| !l.starts_with(b"hint:") && !l.iter().all(u8::is_ascii_whitespace))
            .collect::<Vec<_>>()
            .join(&b'\n');
        Err(GitError::Failed {
            command: args.join(" "),
            dir: dir.display().to_string(),
            code: out.status.code().unwrap_or(-1),
            output: clip(&said),
        })
    }

    /// Runs `git ARGS` in the repository; its output as text.
    pub fn read(&self, args: &[&str]) -> Result<String, GitError> {
        Ok(String::from_utf8_lossy(&self.run(&self.repo, args, None)?).into_owned())
    }

    fn text(&self, dir: &Path, args: &[&str]) -> Result<String, GitError> {
        Ok(String::from_utf8_lossy(&self.run(dir, args, None)?)
            .trim()
            .to_string())
    }

    /// The commit `rev` names.
    pub fn rev_parse(&self, rev: &str) -> Result<String, GitError> {
        self.text(
            &self.repo,
            &[
                "rev-parse",
                "--verify",
                "--end-of-options",
                &format!("{rev}^{{commit}}"),
            ],
        )
    }

    /// Whether `rev` names a commit here.
    pub fn has_commit(&self, rev: &str) -> bool {
        self.rev_parse(rev).is_ok()
    }

    /// A detached worktree at `rev` in a temporary directory, removed when
    /// dropped.
    pub fn worktree(&self, rev: &str) -> Result<Worktree<'_>, GitError> {
        let dir = tempfile::Builder::new()
            .prefix("tagline-wt-")
            .tempdir()
            .map_err(|e| GitError::Io(format!("cannot create a temporary directory: {e}")))?;
        let path = dir.path().join("wt");
        let p = path.display().to_string();
        self.run(
            &self.repo,
            &["worktree", "add", "--detach", "--quiet", &p, rev],
            None,
        )?;
        Ok(Worktree {
            git: self,
            path,
            _dir: dir,
        })
    }

    /// The stable patch-ids (`git patch-id --stable`) of the patches in
    /// `patch` text, in order.
    pub fn patch_ids(&self, patch: &[u8]) -> Result<Vec<String>, GitError> {
        let out = self.run(&self.repo, &["patch-id", "--stable"], Some(patch))?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect())
    }

    /// Commit messages of `base..tip`, oldest first: (commit, message).
    pub fn log_messages(&self, base: &str, tip: &str) -> Result<Vec<(String, String)>, GitError> {
        self.messages(&["--reverse", &format!("{base}..{tip}")])
    }

    /// The messages of the last `n` commits of `rev`, newest first.
    pub fn recent_messages(&self, rev: &str, n: usize) -> Result<Vec<(String, String)>, GitError> {
        self.messages(&[&format!("-n{n}"), rev])
    }

    /// `git log ARGS` as (commit, message) pairs.
    fn messages(&self, args: &[&str]) -> Result<Vec<(String, String)>, GitError> {
        let mut all = vec!["log", "--format=%H%x00%B%x00"];
        all.extend_from_slice(args);
        let out = self.run(&self.repo, &all, None)?;
        let text = String::from_utf8_lossy(&out);
        let mut parts = text.split('\0');
        let mut v = Vec::new();
        while let (Some(h), Some(m)) = (parts.next(), parts.next()) {
            let h = h.trim();
            if !h.is_empty() {
                v.push((h.to_string(), m.to_string()));
            }
        }
        Ok(v)
    }

    /// The working tree where `branch` is checked out, if any (`git
    /// worktree list`; a bare repository's own entry has no branch).
    pub fn checked_out_at(&self, branch: &str) -> Result<Option<String>, GitError> {
        let out = self.run(&self.repo, &["worktree", "list", "--porcelain"], None)?;
        let text = String::from_utf8_lossy(&out);
        let wanted = format!("branch refs/heads/{branch}");
        Ok(text.split("\n\n").find_map(|block| {
            let mut lines = block.lines();
            let path = lines.next()?.strip_prefix("worktree ")?;
            lines.any(|l| l == wanted).then(|| path.to_string())
        }))
    }

    /// Moves `branch` (a local branch of the repository) from `old` to
    /// `new`, refusing if it moved meanwhile or is checked out in a working
    /// tree (which would then show the move undone, as `git branch -f`
    /// refuses too).
    pub fn move_branch(&self, branch: &str, new: &str, old: &str) -> Result<(), GitError> {
        if let Some(worktree) = self.checked_out_at(branch)? {
            return Err(GitError::CheckedOut {
                branch: branch.to_string(),
                worktree,
            });
        }
        self.run(
            &self.repo,
            &[
                "update-ref",
                "-m",
                "tagline gate",
                &format!("refs/heads/{branch}"),
                new,
                old,
            ],
            None,
        )
        .map(|_| ())
    }

    /// Pushes `commit` to `branch` of `remote`, only as a fast-forward.
    pub fn push(&self, remote: &str, commit: &str, branch: &str) -> Result<(), GitError> {
        self.run(
            &self.repo,
            &[
                "push",
                "--quiet",
                "--porcelain",
                remote,
                &format!("{commit}:refs/heads/{branch}"),
            ],
            None,
        )
        .map(|_| ())
    }
}

/// A throw-away worktree; removed (with `git worktree remove --force`) when
/// dropped.
#[derive(Debug)]
pub struct Worktree<'g> {
    git: &'g Git,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Worktree<'_> {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `git am -3` of `mbox` here; on failure the am is aborted and the
    /// error says which patch failed and why.
    pub fn am(&self, mbox: &[u8]) -> Result<(), GitError> {
        match self
            .git
            .run(&self.path, &["am", "-3", "--no-gpg-sign"], Some(mbox))
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let _ = self.git.run(&self.path, &["am", "--abort"], None);
                Err(e)
            }
        }
    }

    /// The commit checked out here.
    pub fn head(&self) -> Result<String, GitError> {
        self.git.text(&self.path, &["rev-parse", "HEAD"])
    }

    /// Runs git here.
    pub fn run(&self, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>, GitError> {
        self.git.run(&self.path, args, input)
    }
}

impl Drop for Worktree<'_> {
    fn drop(&mut self) {
        let p = self.path.display().to_string();
        let _ = self
            .git
            .run(&self.git.repo, &["worktree", "remove", "--force", &p], None);
        let _ = self.git.run(&self.git.repo, &["worktree", "prune"], None);
    }
}
