//! Entry points for the fuzz target `mail_parse` (fuzz/) and for the test
//! that replays its corpus on every `cargo test`. Each must return (not
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
