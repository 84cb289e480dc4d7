//! tagline-git on real repositories made by running real `git`: a revision
//! applied with `git am -3` in a throw-away worktree (trailers in the
//! commit messages, hooks not run, the worktree gone afterwards), a patch
//! that does not apply (the error names the command and git's words),
//! patch-ids equal to `git patch-id --stable`'s, the branch moved only from
//! where it was, and a push to a bare remote.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "test code"
)]

use std::path::Path;

use tagline_format::review::{Patch, Revision};
use tagline_git::mbox::am_mbox;
use tagline_git::{Committer, Git, GitError};

fn git(dir: &Path, args: &[&str]) -> String {
    String::from_utf8(tagline_e2e::git(dir, dir, args)).unwrap()
}

/// A repository with `a.c` at its base on `main`, and a revision of two
/// patches made with `git format-patch` on a branch (then dropped).
fn repo_and_revision(t: &Path) -> (std::path::PathBuf, Revision, String) {
    let repo = t.join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a.c"), "int a;\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    let base = git(&repo, &["rev-parse", "HEAD"]).trim().to_string();
    git(&repo, &["checkout", "-q", "-b", "topic"]);
    std::fs::write(repo.join("a.c"), "int a = 1;\n").unwrap();
    git(
        &repo,
        &[
            "commit",
            "-q",
            "-a",
            "-s",
            "-m",
            "a: initialise a\n\nTidier this way.",
        ],
    );
    std::fs::write(repo.join("b.c"), "int b;\n").unwrap();
    git(&repo, &["add", "b.c"]);
    git(&repo, &["commit", "-q", "-s", "-m", "b: add b"]);
    let mut patches = Vec::new();
    for rev in ["HEAD~1", "HEAD"] {
        let msg = git(&repo, &["log", "-1", "--format=%B", rev]);
        let (subject, body) = msg.split_once('\n').unwrap();
        let diff = git(&repo, &["show", "--format=", rev]);
        let id = tagline_e2e::git_patch_id(&repo, git(&repo, &["show", rev]).as_bytes()).unwrap();
        patches.push(Patch {
            subject: subject.to_string(),
            message: body.trim_start().to_string(),
            author: "Ada <ada@example.org>".into(),
            diff,
            patch_id: id,
        });
    }
    git(&repo, &["checkout", "-q", "main"]);
    git(&repo, &["branch", "-q", "-D", "topic"]);
    let rev = Revision {
        project: tagline_format::EntryId([1; 32]),
        series: None,
        version: 2,
        base_commit: Some(base.clone()),
        cover: None,
        changelog: None,
        patches,
        change_id: None,
        mails: None,
    };
    (repo, rev, base)
}

fn gate() -> Committer {
    Committer {
        name: "Tagline Gate".into(),
        email: "gate@example.org".into(),
    }
}

#[test]
fn a_revision_applies_with_its_trailers_in_a_worktree_that_goes_away() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, rev, base) = repo_and_revision(tmp.path());
    // A hook that would refuse every commit: not run.
    std::fs::write(
        repo.join(".git/hooks/applypatch-msg"),
        "#!/bin/sh\nexit 1\n",
    )
    .unwrap();
    std::fs::write(
        repo.join(".git/hooks/pre-applypatch"),
        "#!/bin/sh\nexit 1\n",
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        for h in ["applypatch-msg", "pre-applypatch"] {
            std::fs::set_permissions(
                repo.join(".git/hooks").join(h),
                std::fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
    }
    let g = Git::open(&repo, gate()).unwrap();
    let trailers = vec![
        vec![(
            "Reviewed-by".to_string(),
            "Bob <bob@example.org>".to_string(),
        )],
        vec![
            (
                "Reviewed-by".to_string(),
                "Bob <bob@example.org>".to_string(),
            ),
            (
                "Acked-by".to_string(),
                "Maya <maya@example.org>".to_string(),
            ),
        ],
    ];
    let mbox = am_mbox(&rev, &trailers, "Sun, 22 Nov 2026 10:00:00 +0000");
    let wt_path;
    let head;
    {
        let wt = g.worktree(&base).unwrap();
        wt_path = wt.path().to_path_buf();
        wt.am(mbox.as_bytes()).unwrap();
        head = wt.head().unwrap();
    }
    assert!(!wt_path.exists(), "the worktree was removed");
    let msgs = g.log_messages(&base, &head).unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(
        msgs[0].1.trim(),
        "a: initialise a\n\nTidier this way.\n\nSigned-off-by: Ada <ada@example.org>\nReviewed-by: Bob <bob@example.org>"
    );
    assert!(msgs[1].1.contains("Signed-off-by: Ada <ada@example.org>\nReviewed-by: Bob <bob@example.org>\nAcked-by: Maya <maya@example.org>"));
    let who = git(
        &repo,
        &["log", "-1", "--format=%an <%ae> / %cn <%ce>", &head],
    );
    assert_eq!(
        who.trim(),
        "Ada <ada@example.org> / Tagline Gate <gate@example.org>"
    );

    // Patch-ids as git computes them, from the commits made.
    let shown = git(&repo, &["show", &format!("{head}~1")]);
    assert_eq!(
        g.patch_ids(shown.as_bytes()).unwrap(),
        [rev.patches[0].patch_id.clone()]
    );

    // Not while it is checked out: that working tree would show the merge
    // undone (and the next commit there would undo it).
    let err = g.move_branch("main", &head, &base).unwrap_err();
    assert!(
        matches!(&err, GitError::CheckedOut { worktree, .. } if std::path::Path::new(worktree).ends_with(repo.file_name().unwrap())),
        "{err}"
    );
    assert_eq!(g.rev_parse("main").unwrap(), base);
    git(&repo, &["checkout", "-q", "--detach"]);
    // The branch moves from where it is, not from elsewhere.
    let err = g.move_branch("main", &head, &head).unwrap_err();
    assert!(matches!(err, GitError::Failed { .. }), "{err}");
    g.move_branch("main", &head, &base).unwrap();
    assert_eq!(g.rev_parse("main").unwrap(), head);

    // And to a bare remote, fast-forward only.
    let remote = tmp.path().join("remote.git");
    git(
        tmp.path(),
        &["init", "-q", "--bare", remote.to_str().unwrap()],
    );
    g.push(remote.to_str().unwrap(), &head, "main").unwrap();
    assert_eq!(git(&remote, &["rev-parse", "main"]).trim(), head);
    let err = g.push(remote.to_str().unwrap(), &base, "main").unwrap_err();
    assert!(err.to_string().contains("git push"), "{err}");
}

#[test]
fn a_patch_that_does_not_apply_says_which_and_why() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, rev, _) = repo_and_revision(tmp.path());
    // main moves on: a.c changed in a way patch 1 conflicts with.
    std::fs::write(repo.join("a.c"), "long a = 2;\n").unwrap();
    git(&repo, &["commit", "-q", "-a", "-m", "a: long"]);
    let g = Git::open(&repo, gate()).unwrap();
    let wt = g.worktree("main").unwrap();
    let before = wt.head().unwrap();
    let err = wt
        .am(am_mbox(&rev, &[], "Sun, 22 Nov 2026 10:00:00 +0000").as_bytes())
        .unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("`git am -3"), "{text}");
    assert!(text.contains("a: initialise a"), "{text}");
    // Aborted: the worktree is back where it was.
    assert_eq!(wt.head().unwrap(), before);
    assert!(wt.run(&["status", "--porcelain"], None).unwrap().is_empty());
}

#[test]
fn not_a_repository_and_a_missing_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Git::open(tmp.path(), gate()).unwrap_err();
    assert!(matches!(err, GitError::NotARepository { .. }), "{err}");
    let (repo, _, _) = repo_and_revision(tmp.path());
    let g = Git::open(&repo, gate()).unwrap();
    assert!(!g.has_commit("0123456789abcdef0123456789abcdef01234567"));
    assert!(g.has_commit("main"));
    let err = g.worktree("no-such-branch").unwrap_err();
    assert!(err.to_string().contains("worktree add"), "{err}");
}
