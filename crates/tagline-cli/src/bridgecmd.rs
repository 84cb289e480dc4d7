//! `tagline bridge`: the email bridge's commands. Now: `parse`, the parsed
//! form of one mail without storing anything (as `git mailinfo` shows it),
//! for a user debugging why a mail was read as it was.

use std::io::Read as _;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use serde_json::json;
use tagline_email::mailinfo::{self, MAX_MAIL_SIZE, Options};
use tagline_email::subject;

/// Arguments of `tagline bridge parse`.
#[derive(Debug, clap::Args)]
pub struct ParseArgs {
    /// The mail (one message, as delivered or as an mbox of one); - reads
    /// standard input
    pub mail: PathBuf,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
    /// Drop what is above a `-- >8 --` scissors line (`git mailinfo --scissors`)
    #[arg(long)]
    pub scissors: bool,
    /// Do not take From:/Subject:/Date: at the top of the body as headers
    #[arg(long)]
    pub no_inbody_headers: bool,
}

pub fn parse(a: ParseArgs) -> Result<()> {
    let raw = if a.mail.as_os_str() == "-" {
        let mut b = Vec::new();
        std::io::stdin()
            .take(MAX_MAIL_SIZE as u64 + 1)
            .read_to_end(&mut b)
            .context("cannot read the mail from standard input")?;
        b
    } else {
        let len = std::fs::metadata(&a.mail)
            .with_context(|| format!("cannot read {}", a.mail.display()))?
            .len();
        anyhow::ensure!(
            len <= MAX_MAIL_SIZE as u64,
            "{} is {len} bytes, more than the {MAX_MAIL_SIZE} bytes a mail may have",
            a.mail.display()
        );
        std::fs::read(&a.mail).with_context(|| format!("cannot read {}", a.mail.display()))?
    };
    let opts = Options {
        scissors: a.scissors,
        inbody_headers: !a.no_inbody_headers,
        message_id: false,
    };
    let info = mailinfo::parse(&raw, &opts)
        .with_context(|| format!("cannot parse {}", a.mail.display()))?;
    let subj = subject::parse(&info.raw_subject);
    let kind = tagline_email::kind::classify(&info, &subj);
    // A reply's trailers are its unquoted `*-by:` lines (as b4 collects
    // them); a patch's are the trailer block of its commit message.
    let trailers: Vec<(String, String)> = if subj.reply {
        tagline_email::thread::reply_trailers(&info.message)
    } else {
        tagline_review::trailers::parse(&info.message)
            .into_iter()
            .map(|t| (t.key, t.value))
            .collect()
    };
    if a.json {
        let v = json!({
            "kind": kind,
            "author": info.author,
            "email": info.email,
            "date": info.date,
            "subject": info.subject,
            "raw_subject": info.raw_subject,
            "prefix": subj,
            "message_id": info.message_id,
            "in_reply_to": info.in_reply_to,
            "references": info.references,
            "message": info.message,
            "patch": String::from_utf8_lossy(&info.patch),
            "trailers": trailers.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
        });
        println!("{v}");
        return Ok(());
    }
    println!(
        "kind         {}",
        serde_json::to_value(kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    );
    println!("author       {} <{}>", info.author, info.email);
    println!("date         {}", info.date);
    println!("subject      {}", info.subject);
    let mut prefix = vec![format!("v{}", subj.version)];
    if let (Some(i), Some(n)) = (subj.index, subj.total) {
        prefix.push(format!("{i}/{n}"));
    }
    for (flag, name) in [
        (subj.rfc, "RFC"),
        (subj.resend, "RESEND"),
        (subj.pull, "PULL"),
        (subj.reply, "reply"),
    ] {
        if flag {
            prefix.push(name.to_string());
        }
    }
    prefix.extend(subj.tags.iter().cloned());
    prefix.extend(subj.lists.iter().map(|l| format!("list:{l}")));
    println!("prefix       {}", prefix.join(" "));
    if let Some(id) = &info.message_id {
        println!("message-id   <{id}>");
    }
    for id in &info.in_reply_to {
        println!("in-reply-to  <{id}>");
    }
    println!("references   {}", info.references.len());
    for (k, v) in &trailers {
        println!("trailer      {k}: {v}");
    }
    println!("message      {} lines", info.message.lines().count());
    println!(
        "patch        {} lines",
        info.patch
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
    );
    Ok(())
}
