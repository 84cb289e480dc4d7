//! Live delivery: LMTP (RFC 2033) and plain SMTP (RFC 5321), so that an MTA
//! such as Postfix (`mailbox_transport = lmtp:inet:127.0.0.1:PORT`) or a
//! list's own delivery hands mail to the bridge as it arrives.
//!
//! [`Session`] is the protocol, sans-IO: bytes in, replies and deliveries
//! out (commands parsed by smtp-proto). [`serve`] drives sessions over tokio
//! TCP with the limits below. The server is a local delivery agent: it
//! accepts every recipient, offers no relaying and no authentication, and is
//! meant to listen on a loopback address only.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use smtp_proto::request::receiver::{DataReceiver, RequestReceiver};
use smtp_proto::{Error as ProtoError, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Largest message accepted (advertised as `SIZE`); matches the largest
/// mail the bridge keeps whole.
pub const MAX_MESSAGE_SIZE: usize = tagline_format::mail::MAX_RAW_MAIL;
/// Most recipients of one transaction.
pub const MAX_RECIPIENTS: usize = 100;
/// Most sessions at once; more wait to be accepted.
pub const MAX_SESSIONS: usize = 32;
/// A session that sends nothing for this long is closed (RFC 5321 §4.5.3.2
/// suggests 5 minutes for commands).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Most commands that fail in a row before the session is closed.
pub const MAX_BAD_COMMANDS: usize = 20;

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// RFC 2033: `LHLO`, one reply per recipient after the data.
    Lmtp,
    /// RFC 5321: `EHLO`/`HELO`, one reply per transaction.
    Smtp,
}

/// One message handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// The message as received (dot-stuffing undone, CRLF kept).
    pub data: Vec<u8>,
}

/// What became of a delivery, for the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    /// Taken (bridged, or recorded as not bridged: either way it must not
    /// come again). The text ends the `250` reply.
    Accepted(String),
    /// Not now (the store is busy or failed): the client should retry.
    Later(String),
}

/// What a session asks of its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes.
    Reply(Vec<u8>),
    /// Deliver this message, then call [`Session::delivered`]; until then
    /// the session reads no further commands.
    Deliver(Envelope),
    /// Close the connection (after sending what came before).
    Close,
}

enum Phase {
    Command,
    Data(DataReceiver),
    Delivering,
    Closed,
}

/// One client's session.
pub struct Session {
    protocol: Protocol,
    hostname: String,
    greeted: bool,
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    phase: Phase,
    requests: RequestReceiver,
    data: Vec<u8>,
    too_large: bool,
    /// Bytes received but not yet read (after a delivery began).
    pending: Vec<u8>,
    bad: usize,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("protocol", &self.protocol)
            .field("phase", &self.phase)
            .field("rcpt_to", &self.rcpt_to.len())
            .finish()
    }
}

impl std::fmt::Debug for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::Command => "command",
            Phase::Data(_) => "data",
            Phase::Delivering => "delivering",
            Phase::Closed => "closed",
        })
    }
}

fn reply(out: &mut Vec<Output>, text: &str) {
    out.push(Output::Reply(format!("{text}\r\n").into_bytes()));
}

impl Session {
    /// A session and its greeting.
    pub fn new(protocol: Protocol, hostname: &str) -> (Session, Output) {
        let kind = match protocol {
            Protocol::Lmtp => "LMTP",
            Protocol::Smtp => "ESMTP",
        };
        (
            Session {
                protocol,
                hostname: hostname.to_string(),
                greeted: false,
                mail_from: None,
                rcpt_to: Vec::new(),
                phase: Phase::Command,
                requests: RequestReceiver::default(),
                data: Vec::new(),
                too_large: false,
                pending: Vec::new(),
                bad: 0,
            },
            Output::Reply(format!("220 {hostname} {kind} tagline bridge ready\r\n").into_bytes()),
        )
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Reads `bytes`; what to do comes out in `out`.
    pub fn ingest(&mut self, bytes: &[u8], out: &mut Vec<Output>) {
        if matches!(self.phase, Phase::Delivering | Phase::Closed) {
            self.pending.extend_from_slice(bytes);
            return;
        }
        let mut it = bytes.iter();
        loop {
            if it.as_slice().is_empty() {
                return;
            }
            match &mut self.phase {
                Phase::Delivering => {
                    self.pending.extend_from_slice(it.as_slice());
                    return;
                }
                Phase::Closed => return,
                Phase::Data(rx) => {
                    let done = rx.ingest(&mut it, &mut self.data);
                    if self.data.len() > MAX_MESSAGE_SIZE {
                        // Read on to the end, keeping nothing.
                        self.too_large = true;
                        self.data = Vec::new();
                    }
                    if done {
                        self.end_data(out);
                    }
                }
                Phase::Command => match self.requests.ingest(&mut it) {
                    Ok(req) => {
                        let req = req.into_owned();
                        self.command(req, out);
                    }
                    Err(ProtoError::NeedsMoreData { .. }) => return,
                    Err(e) => self.error(e, out),
                },
            }
        }
    }

    /// The delivery asked for finished: replies, then reads what waited.
    pub fn delivered(&mut self, result: &Delivered, out: &mut Vec<Output>) {
        let line = match result {
            Delivered::Accepted(text) => format!("250 2.0.0 {text}"),
            Delivered::Later(text) => format!("451 4.3.0 {text}"),
        };
        let n = match self.protocol {
            Protocol::Lmtp => self.rcpt_to.len().max(1),
            Protocol::Smtp => 1,
        };
        for _ in 0..n {
            reply(out, &line);
        }
        self.reset();
        self.phase = Phase::Command;
        let pending = std::mem::take(&mut self.pending);
        self.ingest(&pending, out);
    }

    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
        self.data = Vec::new();
        self.too_large = false;
    }

    fn error(&mut self, e: ProtoError, out: &mut Vec<Output>) {
        self.bad += 1;
        let text = match e {
            ProtoError::UnknownCommand => "500 5.5.1 command not recognised".to_string(),
            ProtoError::ResponseTooLong => "500 5.5.2 line too long".to_string(),
            ProtoError::InvalidSenderAddress => "501 5.1.7 bad sender address".to_string(),
            ProtoError::InvalidRecipientAddress => "501 5.1.3 bad recipient address".to_string(),
            ProtoError::SyntaxError { syntax } => format!("501 5.5.2 syntax: {syntax}"),
            ProtoError::InvalidParameter { param } => format!("501 5.5.4 bad parameter {param}"),
            ProtoError::UnsupportedParameter { param } => {
                format!("504 5.5.4 parameter {param} not supported")
            }
            ProtoError::NeedsMoreData { .. } | ProtoError::InvalidResponse { .. } => {
                "500 5.5.2 syntax error".to_string()
            }
        };
        reply(out, &text);
        if self.bad >= MAX_BAD_COMMANDS {
            reply(out, "421 4.7.0 too many errors, closing");
            self.close(out);
        }
    }

    fn close(&mut self, out: &mut Vec<Output>) {
        self.phase = Phase::Closed;
        out.push(Output::Close);
    }

    fn command(&mut self, req: Request<String>, out: &mut Vec<Output>) {
        let hello = |s: &mut Session, out: &mut Vec<Output>, extended: bool| {
            s.greeted = true;
            s.reset();
            if extended {
                let h = &s.hostname;
                reply(out, &format!("250-{h}"));
                reply(out, "250-PIPELINING");
                reply(out, "250-8BITMIME");
                reply(out, "250-ENHANCEDSTATUSCODES");
                reply(out, &format!("250 SIZE {MAX_MESSAGE_SIZE}"));
            } else {
                reply(out, &format!("250 {}", s.hostname));
            }
        };
        match (req, self.protocol) {
            (Request::Lhlo { .. }, Protocol::Lmtp) => hello(self, out, true),
            (Request::Ehlo { .. }, Protocol::Smtp) => hello(self, out, true),
            (Request::Helo { .. }, Protocol::Smtp) => hello(self, out, false),
            (Request::Lhlo { .. } | Request::Ehlo { .. } | Request::Helo { .. }, p) => {
                self.bad += 1;
                let want = if p == Protocol::Lmtp { "LHLO" } else { "EHLO" };
                reply(
                    out,
                    &format!("500 5.5.1 this server speaks {p:?}: say {want}"),
                );
            }
            (Request::Mail { from }, _) => {
                if !self.greeted {
                    reply(out, "503 5.5.1 say hello first");
                } else if self.mail_from.is_some() {
                    reply(out, "503 5.5.1 nested MAIL command");
                } else if from.size > MAX_MESSAGE_SIZE {
                    reply(
                        out,
                        &format!(
                            "552 5.3.4 a message of {} bytes is larger than {MAX_MESSAGE_SIZE}",
                            from.size
                        ),
                    );
                } else {
                    self.mail_from = Some(from.address);
                    reply(out, "250 2.1.0 sender ok");
                }
            }
            (Request::Rcpt { to }, _) => {
                if self.mail_from.is_none() {
                    reply(out, "503 5.5.1 need MAIL first");
                } else if self.rcpt_to.len() >= MAX_RECIPIENTS {
                    reply(
                        out,
                        &format!("452 4.5.3 more than {MAX_RECIPIENTS} recipients"),
                    );
                } else {
                    self.rcpt_to.push(to.address);
                    reply(out, "250 2.1.5 recipient ok");
                }
            }
            (Request::Data, _) => {
                if self.rcpt_to.is_empty() {
                    reply(out, "503 5.5.1 need RCPT first");
                } else {
                    reply(out, "354 end data with <CR><LF>.<CR><LF>");
                    let mut rx = DataReceiver::new();
                    // The data starts at a line's start: a leading "." is
                    // stuffed there too.
                    rx.ingest(&mut b"\r\n".iter(), &mut Vec::new());
                    self.data = Vec::new();
                    self.phase = Phase::Data(rx);
                }
            }
            (Request::Bdat { .. }, _) => {
                reply(out, "502 5.5.1 BDAT is not offered");
            }
            (Request::Rset, _) => {
                self.reset();
                reply(out, "250 2.0.0 reset");
            }
            (Request::Noop { .. }, _) => reply(out, "250 2.0.0 ok"),
            (Request::Vrfy { .. }, _) => reply(out, "252 2.1.5 cannot verify, will accept"),
            (Request::Quit, _) => {
                reply(out, &format!("221 2.0.0 {} closing", self.hostname));
                self.close(out);
            }
            (Request::StartTls, _) => reply(
                out,
                "502 5.5.1 STARTTLS is not offered (listen on loopback)",
            ),
            (Request::Auth { .. }, _) => reply(out, "502 5.5.1 AUTH is not offered"),
            (req, _) => reply(out, &format!("502 5.5.1 {} is not offered", req.name())),
        }
    }

    fn end_data(&mut self, out: &mut Vec<Output>) {
        if self.too_large {
            let line = format!("552 5.3.4 the message is larger than {MAX_MESSAGE_SIZE} bytes");
            let n = match self.protocol {
                Protocol::Lmtp => self.rcpt_to.len(),
                Protocol::Smtp => 1,
            };
            for _ in 0..n {
                reply(out, &line);
            }
            self.reset();
            self.phase = Phase::Command;
            return;
        }
        self.phase = Phase::Delivering;
        out.push(Output::Deliver(Envelope {
            mail_from: self.mail_from.clone().unwrap_or_default(),
            rcpt_to: self.rcpt_to.clone(),
            data: std::mem::take(&mut self.data),
        }));
    }
}

/// Serves sessions on `listener` until it fails: each message goes to
/// `deliver`, whose answer goes back to the client.
pub async fn serve<D, F>(
    listener: TcpListener,
    protocol: Protocol,
    hostname: String,
    deliver: D,
) -> std::io::Result<()>
where
    D: Fn(Envelope) -> F + Send + Sync + 'static,
    F: Future<Output = Delivered> + Send,
{
    let deliver = Arc::new(deliver);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_SESSIONS));
    loop {
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .map_err(std::io::Error::other)?;
        let (stream, peer) = listener.accept().await?;
        let (deliver, hostname) = (deliver.clone(), hostname.clone());
        tokio::spawn(async move {
            if let Err(e) = session(stream, protocol, &hostname, &*deliver).await {
                tracing::debug!(%peer, "session ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn session<D, F>(
    mut stream: TcpStream,
    protocol: Protocol,
    hostname: &str,
    deliver: &D,
) -> std::io::Result<()>
where
    D: Fn(Envelope) -> F,
    F: Future<Output = Delivered>,
{
    let (mut s, greeting) = Session::new(protocol, hostname);
    let mut out = vec![greeting];
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // Act on the outputs; a delivery may produce more.
        while !out.is_empty() {
            let mut next = Vec::new();
            for o in out.drain(..) {
                match o {
                    Output::Reply(bytes) => stream.write_all(&bytes).await?,
                    Output::Close => {
                        stream.flush().await?;
                        return Ok(());
                    }
                    Output::Deliver(env) => {
                        let result = deliver(env).await;
                        s.delivered(&result, &mut next);
                    }
                }
            }
            out = next;
        }
        stream.flush().await?;
        let n = match tokio::time::timeout(IDLE_TIMEOUT, stream.read(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => {
                stream
                    .write_all(b"421 4.4.2 idle for too long, closing\r\n")
                    .await?;
                return Ok(());
            }
        };
        if n == 0 {
            return Ok(());
        }
        s.ingest(buf.get(..n).unwrap_or_default(), &mut out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replies(out: &[Output]) -> String {
        out.iter()
            .filter_map(|o| match o {
                Output::Reply(b) => Some(String::from_utf8_lossy(b).into_owned()),
                _ => None,
            })
            .collect()
    }

    fn delivery(out: &[Output]) -> Option<&Envelope> {
        out.iter().find_map(|o| match o {
            Output::Deliver(e) => Some(e),
            _ => None,
        })
    }

    #[test]
    fn an_lmtp_transaction_pipelined_in_one_write() {
        let (mut s, _) = Session::new(Protocol::Lmtp, "bridge.test");
        let mut out = Vec::new();
        s.ingest(
            b"LHLO mta\r\nMAIL FROM:<list@example.org>\r\nRCPT TO:<a@x>\r\nRCPT TO:<b@x>\r\nDATA\r\n\
              Subject: hi\r\n\r\n..leading dot\r\nbody\r\n.\r\nNOOP\r\nQUIT\r\n",
            &mut out,
        );
        let r = replies(&out);
        assert!(r.starts_with("250-bridge.test\r\n"), "{r}");
        assert!(r.contains("250 SIZE"), "{r}");
        assert!(r.contains("354 "), "{r}");
        let env = delivery(&out)
            .cloned()
            .unwrap_or_else(|| panic!("no delivery: {r}"));
        assert_eq!(env.mail_from, "list@example.org");
        assert_eq!(env.rcpt_to, ["a@x", "b@x"]);
        assert_eq!(env.data, b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n");
        // Nothing after DATA is read before the delivery is answered.
        assert!(!r.contains("221"), "{r}");
        let mut out = Vec::new();
        s.delivered(&Delivered::Accepted("bridged".into()), &mut out);
        let r = replies(&out);
        // One reply per recipient, then the pipelined NOOP and QUIT.
        assert_eq!(
            r,
            "250 2.0.0 bridged\r\n250 2.0.0 bridged\r\n250 2.0.0 ok\r\n221 2.0.0 bridge.test closing\r\n"
        );
        assert!(matches!(out.last(), Some(Output::Close)));
        assert!(s.is_closed());
    }

    #[test]
    fn bytes_split_anywhere_give_the_same_session() {
        let input: &[u8] = b"EHLO c\r\nMAIL FROM:<a@b.c> SIZE=10\r\nRCPT TO:<l@x>\r\nDATA\r\nA: b\r\n\r\nx\r\n.\r\nQUIT\r\n";
        for cut in 1..input.len() {
            let (mut s, _) = Session::new(Protocol::Smtp, "h");
            let mut out = Vec::new();
            s.ingest(input.get(..cut).unwrap_or_default(), &mut out);
            s.ingest(input.get(cut..).unwrap_or_default(), &mut out);
            let env = delivery(&out)
                .cloned()
                .unwrap_or_else(|| panic!("cut {cut}"));
            assert_eq!(env.data, b"A: b\r\n\r\nx\r\n", "cut {cut}");
            let mut out = Vec::new();
            s.delivered(&Delivered::Later("busy".into()), &mut out);
            assert_eq!(
                replies(&out),
                "451 4.3.0 busy\r\n221 2.0.0 h closing\r\n",
                "cut {cut}"
            );
        }
    }

    #[test]
    fn out_of_order_and_oversized_and_hostile_input() {
        let (mut s, _) = Session::new(Protocol::Lmtp, "h");
        let mut out = Vec::new();
        s.ingest(b"MAIL FROM:<a@b.c>\r\n", &mut out);
        assert!(replies(&out).starts_with("503"), "{}", replies(&out));
        out.clear();
        s.ingest(b"EHLO x\r\n", &mut out);
        assert!(replies(&out).starts_with("500"), "LMTP refuses EHLO");
        out.clear();
        s.ingest(b"LHLO x\r\nDATA\r\nRCPT TO:<a@b>\r\n", &mut out);
        let r = replies(&out);
        assert!(
            r.contains("503 5.5.1 need RCPT") && r.contains("503 5.5.1 need MAIL"),
            "{r}"
        );
        out.clear();
        s.ingest(
            format!("MAIL FROM:<a@b.c> SIZE={}\r\n", MAX_MESSAGE_SIZE + 1).as_bytes(),
            &mut out,
        );
        assert!(replies(&out).starts_with("552"), "{}", replies(&out));
        out.clear();
        let long = vec![b'A'; 10_000];
        s.ingest(&long, &mut out);
        s.ingest(b"\r\n", &mut out);
        assert!(replies(&out).starts_with("500"), "{}", replies(&out));
        // A flood of junk closes the session.
        out.clear();
        for _ in 0..MAX_BAD_COMMANDS {
            s.ingest(b"XYZZY\r\n", &mut out);
        }
        assert!(s.is_closed());
        assert!(replies(&out).contains("421"));
    }

    #[test]
    fn a_message_over_the_limit_is_refused_after_its_end() {
        let (mut s, _) = Session::new(Protocol::Smtp, "h");
        let mut out = Vec::new();
        s.ingest(
            b"HELO x\r\nMAIL FROM:<>\r\nRCPT TO:<l@x>\r\nDATA\r\n",
            &mut out,
        );
        let chunk = vec![b'x'; 1024 * 1024];
        for _ in 0..=MAX_MESSAGE_SIZE / chunk.len() {
            s.ingest(&chunk, &mut out);
        }
        out.clear();
        s.ingest(b"\r\n.\r\nQUIT\r\n", &mut out);
        assert!(delivery(&out).is_none());
        let r = replies(&out);
        assert!(r.starts_with("552 5.3.4"), "{r}");
        assert!(r.ends_with("221 2.0.0 h closing\r\n"), "{r}");
    }
}
