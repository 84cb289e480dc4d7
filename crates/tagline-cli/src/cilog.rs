//! CI logs, read as streams: what a CI result entry keeps of a log (its
//! tail and the hash of the whole), and the log of a command the CI runner
//! or the gate ran, kept in a file, never whole in memory. A command under
//! test is the project's test suite with a contributor's patches applied:
//! whatever it prints, the runner holds at most a few chunks of it.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use tagline_format::PayloadHash;

/// Lines of a CI log kept in the entry itself.
pub const LOG_EXCERPT_LINES: usize = 50;
/// Bytes of a CI log kept in the entry itself.
pub const LOG_EXCERPT_BYTES: usize = 64 * 1024;
/// Longest last line of a failing command's output quoted in its summary.
pub const SUMMARY_LINE_MAX: usize = 200;
/// A command's log may grow to this size; past it the command is stopped
/// (its result an error), so that endless output cannot fill the disk.
pub const CI_LOG_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// Bytes read at a time when a log is hashed.
const LOG_READ_CHUNK: usize = 64 * 1024;
/// Bytes of a log's end kept while it is read: the excerpt's bytes, with
/// room for lines that end in CRLF (a byte longer than in the excerpt,
/// whose lines end in LF) and for a character cut at the start.
const LOG_TAIL_BYTES: usize = 2 * LOG_EXCERPT_BYTES + 8;

/// What is kept of a log: the excerpt (its last [`LOG_EXCERPT_LINES`]
/// lines, at most [`LOG_EXCERPT_BYTES`] bytes), the blake3 hash and length
/// of the whole, and its last non-empty line (at most
/// [`SUMMARY_LINE_MAX`] bytes).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSummary {
    pub excerpt: String,
    pub hash: [u8; 32],
    pub len: u64,
    pub last_line: Option<String>,
}

impl LogSummary {
    /// Reads `r` to its end in chunks: memory stays bounded whatever its
    /// length.
    pub fn read(mut r: impl Read) -> io::Result<LogSummary> {
        let mut hasher = blake3::Hasher::new();
        let mut tail: Vec<u8> = Vec::with_capacity(2 * LOG_TAIL_BYTES + LOG_READ_CHUNK);
        let mut buf = vec![0u8; LOG_READ_CHUNK];
        let mut len = 0u64;
        loop {
            let n = match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            hasher.update(chunk);
            len += n as u64;
            tail.extend_from_slice(chunk);
            if tail.len() > 2 * LOG_TAIL_BYTES {
                tail.drain(..tail.len() - LOG_TAIL_BYTES);
            }
        }
        let cut = tail.len().saturating_sub(LOG_TAIL_BYTES);
        let tail = tail.get(cut..).unwrap_or_default();
        Ok(LogSummary {
            excerpt: excerpt(tail),
            hash: *hasher.finalize().as_bytes(),
            len,
            last_line: last_line(tail),
        })
    }

    /// The summary of a log held in memory.
    pub fn of(bytes: &[u8]) -> LogSummary {
        // Reading from a slice cannot fail.
        LogSummary::read(bytes).unwrap_or_default()
    }

    pub fn payload_hash(&self) -> PayloadHash {
        PayloadHash(self.hash)
    }
}

/// The last [`LOG_EXCERPT_LINES`] lines of `log`, then at most its last
/// [`LOG_EXCERPT_BYTES`] bytes (cut at a character boundary).
pub fn excerpt(log: &[u8]) -> String {
    let text = String::from_utf8_lossy(log);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines
        .get(lines.len().saturating_sub(LOG_EXCERPT_LINES)..)
        .unwrap_or(&[])
        .join("\n");
    let start = tail.len().saturating_sub(LOG_EXCERPT_BYTES);
    let start = (start..tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(tail.len());
    tail.get(start..).unwrap_or("").to_string()
}

/// The last non-empty line of a log, at most [`SUMMARY_LINE_MAX`] bytes:
/// what a failing command said last, usually why, put in its summary.
pub fn last_line(log: &[u8]) -> Option<String> {
    let line = log
        .split(|b| *b == b'\n')
        .map(|l| l.trim_ascii())
        .rfind(|l| !l.is_empty())?;
    let text = String::from_utf8_lossy(line);
    let end = text.floor_char_boundary(SUMMARY_LINE_MAX);
    Some(text.get(..end).unwrap_or_default().to_string())
}

/// `n` bytes for people: in MiB or KiB when whole, else in bytes.
pub fn size_text(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

/// The log of a command that ran, or of a step that failed before it: its
/// summary, and the whole log to keep (a file for a command's output).
#[derive(Debug)]
pub struct RunLog {
    pub summary: LogSummary,
    body: Body,
}

#[derive(Debug)]
enum Body {
    File(File),
    Bytes(Vec<u8>),
}

impl Default for RunLog {
    fn default() -> Self {
        RunLog::from_bytes(Vec::new())
    }
}

impl RunLog {
    /// A short log held in memory (a step's error message).
    pub fn from_bytes(bytes: Vec<u8>) -> RunLog {
        RunLog {
            summary: LogSummary::of(&bytes),
            body: Body::Bytes(bytes),
        }
    }

    /// A command's output, in `file`, read from its start.
    pub fn from_file(mut file: File) -> io::Result<RunLog> {
        file.rewind()?;
        let summary = LogSummary::read(&mut file)?;
        Ok(RunLog {
            summary,
            body: Body::File(file),
        })
    }

    /// Writes the whole log to `path`, copying it in chunks.
    pub fn save(&mut self, path: &Path) -> io::Result<()> {
        let mut out = File::create(path)?;
        match &mut self.body {
            Body::File(f) => {
                f.rewind()?;
                io::copy(f, &mut out)?;
            }
            Body::Bytes(b) => out.write_all(b)?,
        }
        out.sync_all()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "test code")]

    use super::*;
    use proptest::prelude::*;

    #[test]
    fn last_lines() {
        assert_eq!(
            last_line(b"building\nundefined: helper\n\n").as_deref(),
            Some("undefined: helper")
        );
        assert_eq!(last_line(b"\n  \n"), None);
        let long = "\u{e9}".repeat(SUMMARY_LINE_MAX);
        let cut = last_line(long.as_bytes()).unwrap();
        assert!(
            cut.len() <= SUMMARY_LINE_MAX && long.starts_with(&cut),
            "{cut}"
        );
    }

    /// A log far larger than the excerpt: read in chunks, the summary is
    /// what the whole log in memory gives.
    #[test]
    fn a_large_log_is_summarised_as_a_whole() {
        let mut log = Vec::new();
        for i in 0..200_000u32 {
            writeln!(log, "line {i}: {}", "é".repeat((i % 7) as usize)).unwrap();
        }
        log.extend_from_slice(b"error: the last word\n");
        let s = LogSummary::read(&log[..]).unwrap();
        assert_eq!(s.excerpt, excerpt(&log));
        assert_eq!(s.hash, *blake3::hash(&log).as_bytes());
        assert_eq!(s.len, log.len() as u64);
        assert_eq!(s.last_line.as_deref(), Some("error: the last word"));
        assert_eq!(s.excerpt.lines().count(), LOG_EXCERPT_LINES);
    }

    /// Lines ending in CRLF are a byte shorter in the excerpt (LF): the
    /// kept tail still holds a full excerpt's worth.
    #[test]
    fn crlf_logs_keep_a_full_excerpt() {
        for line in ["x".repeat(2000), "\u{e9}".repeat(1000), "ab\r".repeat(700)] {
            let log = format!("{line}\r\n").repeat(100).into_bytes();
            let s = LogSummary::of(&log);
            assert_eq!(s.excerpt.len(), LOG_EXCERPT_BYTES);
            assert_eq!(s.excerpt, excerpt(&log));
        }
    }

    #[test]
    fn a_file_log_is_saved_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = tempfile::tempfile().unwrap();
        let body: Vec<u8> = (0..300_000u32).flat_map(|i| i.to_le_bytes()).collect();
        f.write_all(&body).unwrap();
        let mut log = RunLog::from_file(f).unwrap();
        assert_eq!(log.summary.hash, *blake3::hash(&body).as_bytes());
        let path = dir.path().join("saved.log");
        log.save(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), body);
        let mut small = RunLog::from_bytes(b"does not apply\n".to_vec());
        small.save(&path).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"does not apply\n");
        assert_eq!(small.summary.last_line.as_deref(), Some("does not apply"));
    }

    /// A reader that gives at most `.1` bytes per read.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(self.1).min(buf.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Lines of any length and characters, long runs without a newline and
    /// CRLF endings among them.
    fn log_text() -> impl Strategy<Value = Vec<u8>> {
        let line = prop_oneof![
            4 => "[a-z é€\u{1F600}\r]{0,40}",
            1 => (prop::sample::select(vec!["x", "\u{e9}", "\r", "\u{20ac}"]), 0usize..30_000)
                .prop_map(|(c, n)| c.repeat(n)),
        ];
        prop::collection::vec(line, 0..200).prop_map(|ls| ls.join("\n").into_bytes())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Streaming gives the excerpt, hash and length of the whole log in
        /// memory, and its last line unless that line is longer than the
        /// kept tail (then the tail's part of it).
        #[test]
        fn streaming_agrees_with_the_whole(log in log_text(), chunk in prop_oneof![1usize..8, 1000usize..70_000]) {
            let s = LogSummary::read(Trickle(&log, chunk)).unwrap();
            prop_assert_eq!(&s.excerpt, &excerpt(&log));
            prop_assert_eq!(s.hash, *blake3::hash(&log).as_bytes());
            prop_assert_eq!(s.len, log.len() as u64);
            // Where the whole log's last non-empty line starts.
            let mut start = None;
            let mut at = 0;
            for l in log.split(|b| *b == b'\n') {
                if !l.trim_ascii().is_empty() {
                    start = Some(at);
                }
                at += l.len() + 1;
            }
            if start.is_none_or(|p| p >= log.len().saturating_sub(LOG_TAIL_BYTES)) {
                prop_assert_eq!(s.last_line, last_line(&log));
            }
        }
    }
}
