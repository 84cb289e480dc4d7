//! Entry points for the fuzz targets `mail_parse` and `lmtp` (fuzz/) and for the test
//! that replays their corpora on every `cargo test`. Each must return (not
//! panic) whatever the input.

use crate::mailinfo::{self, Options};
use crate::mbox::{Mbox, Quoting};
use crate::{series, subject, thread};

/// Feeds `data` to every reader of the bridge: as one mail (each option
/// set), as a subject line, as an mbox (both quotings), and the mails of
/// that mbox to the thread and series readers.
pub fn mail(data: &[u8]) {
    for opts in [
        Options::default(),
        Options {
            scissors: true,
            inbody_headers: false,
            message_id: true,
        },
    ] {
        if let Ok(info) = mailinfo::parse(data, &opts) {
            let s = subject::parse(&info.raw_subject);
            let _ = crate::kind::classify(&info, &s);
            let _ = thread::reply_trailers(&info.message);
            let _ = mailinfo::split_from(&info.author);
        }
    }
    let _ = subject::parse(&String::from_utf8_lossy(data));
    for q in [Quoting::Rd, Quoting::O] {
        let mails: Vec<mailinfo::MailInfo> = Mbox::new(data, q)
            .take(64)
            .filter_map(Result::ok)
            .filter_map(|m| mailinfo::parse(&m, &Options::default()).ok())
            .collect();
        let _ = thread::collect(&mails);
        let mut g = series::Grouper::new();
        for m in &mails {
            let _ = g.add(m);
        }
    }
}

/// Feeds `data` to an LMTP and an SMTP session as a client would, cut into
/// writes at the positions its first byte picks; every delivery asked for
/// is answered, alternately accepted and deferred. Checks that a session
/// never asks to deliver more than the size limit.
pub fn lmtp(data: &[u8]) {
    use crate::lmtp::{Delivered, MAX_MESSAGE_SIZE, Output, Protocol, Session};
    let step = usize::from(data.first().copied().unwrap_or(0)).max(1);
    for protocol in [Protocol::Lmtp, Protocol::Smtp] {
        let (mut s, _) = Session::new(protocol, "fuzz");
        let mut n = 0usize;
        for chunk in data.chunks(step) {
            let mut out = Vec::new();
            s.ingest(chunk, &mut out);
            // Answer deliveries until none is asked for.
            while let Some(env) = out.iter().find_map(|o| match o {
                Output::Deliver(e) => Some(e.clone()),
                _ => None,
            }) {
                assert!(env.data.len() <= MAX_MESSAGE_SIZE);
                out.clear();
                n += 1;
                let answer = if n.is_multiple_of(2) {
                    Delivered::Accepted("ok".into())
                } else {
                    Delivered::Later("later".into())
                };
                s.delivered(&answer, &mut out);
            }
            if s.is_closed() {
                break;
            }
        }
    }
}
