//! Mail sources on disk: an mbox (mboxrd, as public-inbox and lore serve
//! it, or mboxo), read as a stream of messages, and a Maildir. Each message
//! comes back as its raw bytes (the mbox `From ` line removed, `>From`
//! quoting undone), bounded by [`MAX_MAIL_SIZE`].

use std::io::BufRead;
use std::path::{Path, PathBuf};

pub use crate::mailinfo::MAX_MAIL_SIZE;

/// How body lines that begin with `From ` were quoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Quoting {
    /// mboxrd: every `>*From ` line got one more `>`; one is removed.
    #[default]
    Rd,
    /// mboxo: only `From ` lines were quoted; `>From ` loses its `>`,
    /// `>>From ` stays (the format cannot tell them apart).
    O,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot read {path}: {reason}")]
    Io { path: String, reason: String },
    #[error("message {index} is over {max} bytes; skipped up to the next message")]
    TooLarge { index: usize, max: usize },
    #[error("{path} does not start with an mbox \"From \" line")]
    NotAnMbox { path: String },
}

/// Messages of an mbox, one at a time.
#[derive(Debug)]
pub struct Mbox<R> {
    input: R,
    quoting: Quoting,
    /// The separator line of the next message, once read.
    started: bool,
    done: bool,
    index: usize,
    line: Vec<u8>,
}

impl<R: BufRead> Mbox<R> {
    pub fn new(input: R, quoting: Quoting) -> Mbox<R> {
        Mbox {
            input,
            quoting,
            started: false,
            done: false,
            index: 0,
            line: Vec::new(),
        }
    }

    fn read_line(&mut self) -> std::io::Result<bool> {
        self.line.clear();
        Ok(self.input.read_until(b'\n', &mut self.line)? > 0)
    }

    fn unquote<'a>(&self, line: &'a [u8]) -> &'a [u8] {
        let gts = line.iter().take_while(|b| **b == b'>').count();
        if gts == 0 || !line.get(gts..).is_some_and(|r| r.starts_with(b"From ")) {
            return line;
        }
        match self.quoting {
            Quoting::Rd => line.get(1..).unwrap_or(line),
            Quoting::O if gts == 1 => line.get(1..).unwrap_or(line),
            Quoting::O => line,
        }
    }
}

/// Whether an mbox line separates messages.
fn is_separator(line: &[u8]) -> bool {
    line.starts_with(b"From ")
}

impl<R: BufRead> Iterator for Mbox<R> {
    type Item = Result<Vec<u8>, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let io = |e: std::io::Error| SourceError::Io {
            path: "mbox".into(),
            reason: e.to_string(),
        };
        // Find the first separator (only before the first message).
        while !self.started {
            match self.read_line() {
                Ok(true) if is_separator(&self.line) => self.started = true,
                Ok(true) if self.line.iter().all(u8::is_ascii_whitespace) => {}
                Ok(true) => {
                    self.done = true;
                    return Some(Err(SourceError::NotAnMbox {
                        path: "mbox".into(),
                    }));
                }
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(io(e)));
                }
            }
        }
        self.index += 1;
        let mut msg = Vec::new();
        let mut too_large = false;
        loop {
            match self.read_line() {
                Ok(true) if is_separator(&self.line) => break,
                Ok(true) => {
                    if too_large {
                        continue;
                    }
                    let l = self.unquote(&self.line).to_vec();
                    if msg.len() + l.len() > MAX_MAIL_SIZE {
                        too_large = true;
                        msg = Vec::new();
                        continue;
                    }
                    msg.extend_from_slice(&l);
                }
                Ok(false) => {
                    self.done = true;
                    break;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(io(e)));
                }
            }
        }
        if too_large {
            return Some(Err(SourceError::TooLarge {
                index: self.index,
                max: MAX_MAIL_SIZE,
            }));
        }
        // The blank line that ends a message before the next separator
        // belongs to the mbox, not to the message.
        if msg.ends_with(b"\n\n") {
            msg.pop();
        }
        Some(Ok(msg))
    }
}

/// One message as an mboxrd entry, the inverse of [`Mbox`] with
/// [`Quoting::Rd`]: a `From ` separator line, the message with CRLF line
/// ends made LF and every `>*From ` line given one more `>`, and the blank
/// line that ends it.
pub fn mboxrd_message(raw: &[u8]) -> Vec<u8> {
    let mut out = b"From tagline@localhost Thu Jan  1 00:00:00 1970\n".to_vec();
    for line in raw.split_inclusive(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let gts = line.iter().take_while(|b| **b == b'>').count();
        if line.get(gts..).is_some_and(|r| r.starts_with(b"From ")) {
            out.push(b'>');
        }
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// The message files of a Maildir (`cur` and `new`, not `tmp`), in name
/// order (delivery order for the usual `time.unique` names).
pub fn maildir_files(dir: &Path) -> Result<Vec<PathBuf>, SourceError> {
    let mut out = Vec::new();
    for sub in ["cur", "new"] {
        let d = dir.join(sub);
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(SourceError::Io {
                    path: d.display().to_string(),
                    reason: e.to_string(),
                });
            }
        };
        for e in rd {
            let e = e.map_err(|e| SourceError::Io {
                path: d.display().to_string(),
                reason: e.to_string(),
            })?;
            let p = e.path();
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Whether `dir` looks like a Maildir (has `cur` or `new`).
pub fn is_maildir(dir: &Path) -> bool {
    dir.join("cur").is_dir() || dir.join("new").is_dir()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const MBOX: &[u8] = b"From a@b Mon Jan  1 00:00:00 2024\n\
Subject: one\n\
\n\
>From the start\n\
>>From twice\n\
\n\
From c@d Mon Jan  1 00:00:00 2024\n\
Subject: two\n\
\n\
body\n";

    #[test]
    fn mboxrd_and_mboxo() {
        let rd: Vec<Vec<u8>> = Mbox::new(MBOX, Quoting::Rd).map(Result::unwrap).collect();
        assert_eq!(rd.len(), 2);
        assert_eq!(
            rd[0],
            b"Subject: one\n\nFrom the start\n>From twice\n".to_vec()
        );
        assert_eq!(rd[1], b"Subject: two\n\nbody\n".to_vec());
        let o: Vec<Vec<u8>> = Mbox::new(MBOX, Quoting::O).map(Result::unwrap).collect();
        assert_eq!(
            o[0],
            b"Subject: one\n\nFrom the start\n>>From twice\n".to_vec()
        );
    }

    #[test]
    fn mboxrd_written_reads_back() {
        let raw = b"Subject: one\r\n\r\nFrom the start\r\n>From once\r\n>>From twice\r\nend\r\n";
        let mut mbox = mboxrd_message(raw);
        mbox.extend(mboxrd_message(b"Subject: two\n\nbody\n"));
        let back: Vec<Vec<u8>> = Mbox::new(&mbox[..], Quoting::Rd)
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            back,
            [
                b"Subject: one\n\nFrom the start\n>From once\n>>From twice\nend\n".to_vec(),
                b"Subject: two\n\nbody\n".to_vec()
            ]
        );
    }

    #[test]
    fn not_an_mbox_and_empty() {
        let mut m = Mbox::new(&b"Subject: x\n\nhello\n"[..], Quoting::Rd);
        assert!(matches!(m.next(), Some(Err(SourceError::NotAnMbox { .. }))));
        assert!(m.next().is_none());
        assert!(Mbox::new(&b""[..], Quoting::Rd).next().is_none());
    }
}
