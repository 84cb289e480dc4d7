//! `tagline`: the command-line interface of a Tagline node.
//!
//! Errors reach the user as one line on stderr (`tagline: error: …`) and a
//! non-zero exit status; `--json` outputs are documented in docs/json.md.

use tagline_cli::home::civil;

use tagline_cli::netcmd::{self, List};
use tagline_cli::{bridgecmd, guard, home, ident, maint, reviewcmd};

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser, Subcommand};
use serde_json::json;
use tagline_format::payload;
use tagline_format::stream::{self, STREAM_MAGIC};
use tagline_format::{Entry, PublicKey};
use tagline_store::{IngestMode, StoreError, StoredEntry};

/// Bytes of records an import hands to the store in one transaction. An
/// export smaller than this is imported atomically; a larger one in
/// transactions of this size, each whole or not at all.
const IMPORT_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Entries read from the store per step of `export` and `log`.
const READ_CHUNK: u64 = 10_000;

#[derive(Parser, Debug)]
#[command(name = "tagline", version, about = "Peer-to-peer review for mailing-list projects", long_about = None)]
struct Cli {
    /// Data directory [default: the platform data directory + /tagline]
    #[arg(long, global = true, env = "TAGLINE_HOME", value_name = "DIR")]
    home: Option<PathBuf>,

    /// Append even if another copy of this data directory wrote further
    /// (risks forking your feed; see docs/identities.md)
    #[arg(long = "i-know-this-is-the-only-copy", global = true)]
    force: bool,

    /// The identity root key file, when it is not in the data directory
    #[arg(long, global = true, value_name = "FILE")]
    root_key: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum IdentityCmd {
    /// Show an identity (yours by default): name, roots, emails, devices
    Show {
        /// Identity id (tli1…)
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Set your display name
    SetName { name: String },
    /// Claim an email address and print the challenge that verifies it
    AddEmail { address: String },
    /// Withdraw an email address
    RemoveEmail { address: String },
    /// Attest that IDENTITY controls ADDRESS (as a project lead would)
    Vouch { identity: String, address: String },
    /// Replace the root key by a new one (the new root countersigns)
    Rotate,
    /// Write the root key to FILE (mode 0600), to keep it offline
    ExportRoot { file: PathBuf },
    /// Delete the root key from the data directory (after export-root)
    ForgetRoot,
}

#[derive(Subcommand, Debug)]
enum DeviceCmd {
    /// Authorise a device key (printed by `tagline device request` on that machine)
    Add {
        key: String,
        /// First sequence number of the device's feed that counts
        #[arg(long, default_value_t = 1)]
        from: u64,
    },
    /// List your identity's devices
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device: its entries after SEQ count for nobody
    Revoke {
        key: String,
        #[arg(long, value_name = "SEQ")]
        after: u64,
    },
    /// On a new machine (`init --no-identity`): join IDENTITY and print the key to authorise
    Request { identity: String },
    /// Revoke this machine's device key and continue with a new one (after a fork)
    Replace {
        /// Last seq of the old device that counts [default: before the fork point, or its head]
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
    },
}

/// A project's declaration, as `project create` and `project amend` take it.
#[derive(clap::Args, Debug)]
struct ProjectFields {
    #[arg(long)]
    name: String,
    #[arg(long, default_value = "main")]
    branch: String,
    #[arg(long = "repository")]
    repositories: Vec<String>,
    /// Merge policy, TOML (see docs/policy.md)
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    #[arg(long = "maintainer", value_name = "IDENTITY")]
    maintainers: Vec<String>,
    #[arg(long = "reviewer", value_name = "IDENTITY")]
    reviewers: Vec<String>,
    #[arg(long = "committer", value_name = "IDENTITY")]
    committers: Vec<String>,
    /// A CI identity and its contexts: IDENTITY:CONTEXT[,CONTEXT…]
    #[arg(long = "ci", value_name = "IDENTITY:CONTEXTS")]
    ci: Vec<String>,
    #[arg(long = "gate", value_name = "IDENTITY")]
    gates: Vec<String>,
    #[arg(long = "bridge", value_name = "IDENTITY")]
    bridges: Vec<String>,
    #[arg(long = "list", value_name = "ADDRESS")]
    lists: Vec<String>,
    /// Also take maintainers from the MAINTAINERS file
    #[arg(long)]
    maintainers_file: bool,
}

impl ProjectFields {
    fn into_args(self) -> reviewcmd::ProjectArgs {
        reviewcmd::ProjectArgs {
            name: self.name,
            branch: self.branch,
            repositories: self.repositories,
            policy: self.policy,
            maintainers: self.maintainers,
            reviewers: self.reviewers,
            committers: self.committers,
            ci: self.ci,
            gates: self.gates,
            bridges: self.bridges,
            lists: self.lists,
            maintainers_file: self.maintainers_file,
        }
    }
}

#[derive(Subcommand, Debug)]
enum BridgeCmd {
    /// Show how one mail is read (author, subject prefix, ids, message,
    /// patch, trailers, kind), storing nothing: for a user debugging why a
    /// mail was read as it was, like `git mailinfo`
    Parse(bridgecmd::ParseArgs),
    /// Bridge an mbox, a Maildir or a public-inbox v2 archive into this
    /// data directory's feed: each mail recorded once, series written as
    /// revisions and replies with trailers as reviews; a re-run resumes an
    /// archive where it stopped and never bridges a Message-ID twice
    Import(bridgecmd::ImportArgs),
    /// Take list mail live over LMTP (or SMTP) on a loopback port, as an
    /// MTA delivers it: each message bridged as it comes, DKIM checked
    Serve(bridgecmd::ServeArgs),
    /// Render native reviews, CI results, merges and series of the bridged
    /// project as list mail into a queue, and send it (--send) or write it
    /// to an mbox (--mbox); without either, show what is queued
    Outbox(tagline_cli::outboxcmd::OutboxArgs),
}

#[derive(Subcommand, Debug)]
enum ProjectCmd {
    /// Declare a project, with you (this identity) as its lead
    Create(ProjectFields),
    /// Replace a project's declaration: the whole declaration is given again,
    /// as for create. The lead's amendment takes effect at once; a declared
    /// maintainer's is a proposal that takes effect when the policy's `[amend]
    /// maintainer_quorum` maintainers have published the same declaration
    Amend {
        /// The project (name or id)
        #[arg(long = "project", value_name = "PROJECT")]
        project: String,
        #[command(flatten)]
        fields: ProjectFields,
    },
    /// Show a project's declaration in force: roles, policy, the amendments
    /// that took effect and maintainer proposals still short of their quorum
    Show {
        /// The project (name or id) [default: the only one known]
        #[arg(long = "project", value_name = "PROJECT")]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum CiCmd {
    /// Report a CI result for the latest revision of a series
    Report {
        series: String,
        #[arg(long)]
        context: String,
        /// pending, pass, warning, fail or error
        #[arg(long)]
        status: String,
        #[arg(long)]
        summary: Option<String>,
        /// The full log: its tail goes into the entry, its hash too
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
    },
    /// Run a CI runner: test each new revision of a project in a fresh
    /// worktree and publish the results (pending, then pass, fail or error)
    Run(tagline_cli::cicmd::RunArgs),
}

#[derive(Subcommand, Debug)]
enum PeersCmd {
    /// Remember a peer (MULTIADDR, with or without /p2p/PEER_ID) and dial it
    /// now if a node runs
    Add { addr: String },
    /// Forget a peer added with `peers add`
    Remove { addr: String },
}

#[derive(Subcommand, Debug)]
enum SyncCmd {
    /// Per peer and per feed: how far behind this node is (needs a running node)
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the local node in the foreground: sync feeds with peers, serve the
    /// local API (creates the data directory and an identity on first run)
    Node {
        #[command(flatten)]
        args: netcmd::NodeArgs,
    },
    /// Known and connected peers; `peers add MULTIADDR` to add one
    Peers {
        #[command(subcommand)]
        cmd: Option<PeersCmd>,
        #[arg(long)]
        json: bool,
    },
    /// Replication state
    #[command(subcommand)]
    Sync(SyncCmd),
    /// Replicate a feed (tlk1…) or an identity's feeds (tli1…); without an
    /// argument, list what is followed, subscribed to and blocked
    Follow {
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Stop replicating a feed or identity (what is stored stays)
    Unfollow {
        id: String,
    },
    /// Replicate a project: the feeds publishing to it and the identities it names
    Subscribe {
        /// Project id, or the name of a project known here
        project: String,
    },
    Unsubscribe {
        project: String,
    },
    /// Never fetch nor serve a feed or an identity's feeds
    Block {
        id: String,
    },
    Unblock {
        id: String,
    },
    /// Create the data directory, an identity (root key) and a first device
    Init {
        /// Only a device key: for a second machine of an existing identity
        /// (then `tagline device request IDENTITY`)
        #[arg(long)]
        no_identity: bool,
    },
    /// Your identity: name, email addresses, root key
    #[command(subcommand)]
    Identity(IdentityCmd),
    /// The devices (machines) of your identity
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Show this node's feed key
    Id {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Append one entry to your feed (low level)
    Publish {
        /// Payload type, e.g. tagline/note
        #[arg(long = "type", value_name = "TYPE")]
        payload_type: String,
        /// The payload as JSON: a file, or - for standard input
        #[arg(long, value_name = "FILE")]
        json: String,
    },
    /// List the entries of a feed (yours by default)
    Log {
        /// Feed key (tlk1…)
        feed: Option<String>,
        /// One JSON object per line
        #[arg(long)]
        json: bool,
        /// Show only the last N entries
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Re-verify every stored entry: signatures, chains, payload hashes
    Verify {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
        /// Also rebuild every index from the stored entries
        #[arg(long)]
        rebuild_indexes: bool,
    },
    /// Write a feed as a stream of signed entries (to standard output by default)
    Export {
        /// Feed key (tlk1…); yours by default
        feed: Option<String>,
        /// Write to FILE instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read an export stream, verify everything and store it (idempotent)
    Import {
        /// Export file, or - for standard input
        file: String,
        /// Machine-readable summary
        #[arg(long)]
        json: bool,
    },
    /// Who must see a change: maintainers, reviewers and lists from MAINTAINERS
    /// (as `get_maintainer.pl --nogit --nogit-fallback --nokeywords`)
    Maintainers {
        #[command(flatten)]
        args: maint::Args,
    },
    /// Merge the series the rules approve into the project's target branch,
    /// recording each merge with the entries it rests on
    Gate(tagline_cli::gatecmd::GateArgs),
    /// The email bridge: mailing-list mail into feeds and back
    #[command(subcommand)]
    Bridge(BridgeCmd),
    /// Projects (a project's lead declares it and its merge policy)
    #[command(subcommand)]
    Project(ProjectCmd),
    /// Post a revision of a patch series from `git format-patch` files
    Submit {
        #[command(flatten)]
        args: reviewcmd::SubmitArgs,
        /// Patch files (a `0/N` cover letter among them is used as the cover),
        /// or one git revision range such as `origin/staging..HEAD`
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Review the latest revision of a series
    Review {
        /// Series id prefix
        series: String,
        /// Only this patch (1-based) [default: the whole series]
        #[arg(long)]
        patch: Option<u64>,
        #[arg(long)]
        reviewed_by: bool,
        #[arg(long)]
        acked_by: bool,
        #[arg(long)]
        tested_by: bool,
        #[arg(long)]
        nacked_by: bool,
        #[arg(long)]
        comment: Option<String>,
        /// The comment, from a file (- for standard input)
        #[arg(long, value_name = "FILE", conflicts_with = "comment")]
        file: Option<String>,
        /// Retract an earlier review of yours (its id prefix)
        #[arg(long, value_name = "REVIEW")]
        retract: Option<String>,
    },
    /// CI results
    #[command(subcommand)]
    Ci(CiCmd),
    /// Where a series stands, and what is missing
    Status {
        /// Series id prefix, or its short number
        series: String,
        #[arg(long)]
        project: Option<String>,
        /// The project's repository, to read MAINTAINERS at the series' base
        #[arg(long, value_name = "PATH")]
        repo: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// The latest revision as an mbox for `git am`, with every counted trailer
    Am {
        /// Series id prefix
        series: String,
        /// Write to FILE instead of standard output
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// A revision of a series: cover, changelog, patches
    Show {
        series: String,
        /// This version [default: the latest]
        #[arg(long)]
        version: Option<u64>,
        /// Also print each patch's message and diff
        #[arg(long)]
        full: bool,
    },
    /// What changed between two versions of a series, patch by patch
    Interdiff {
        series: String,
        v1: u64,
        v2: u64,
    },
    /// List series with their state, with a maintainer's pre-filters
    Series {
        #[command(flatten)]
        filter: reviewcmd::SeriesFilter,
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes.
            let msg = format!("{e:#}").replace('\n', " ");
            let _ = writeln!(io::stderr(), "tagline: error: {msg}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "tagline", &mut io::stdout());
        return Ok(());
    }
    // Commands that need no data directory.
    if let Command::Maintainers { args } = cli.command {
        return maint::run(args);
    }
    let cli = match cli.command {
        Command::Bridge(BridgeCmd::Parse(args)) => return bridgecmd::parse(args),
        _ => cli,
    };
    let home = home::resolve(cli.home)?;
    if let Command::Node { args } = cli.command {
        init_logging();
        return netcmd::node(&home, args);
    }
    let opts = ident::AppendOpts {
        force: cli.force,
        root_key: cli.root_key.as_deref(),
    };
    match cli.command {
        Command::Init { no_identity } => ident::init(&home, no_identity),
        Command::Identity(cmd) => match cmd {
            IdentityCmd::Show { id, json } => ident::show(&home, id.as_deref(), json),
            IdentityCmd::SetName { name } => ident::set_name(&home, &name, opts),
            IdentityCmd::AddEmail { address } => ident::add_email(&home, &address, opts),
            IdentityCmd::RemoveEmail { address } => ident::remove_email(&home, &address, opts),
            IdentityCmd::Vouch { identity, address } => {
                ident::vouch(&home, &identity, &address, opts.force)
            }
            IdentityCmd::Rotate => ident::rotate(&home, opts),
            IdentityCmd::ExportRoot { file } => ident::export_root(&home, &file, opts),
            IdentityCmd::ForgetRoot => ident::forget_root(&home),
        },
        Command::Device(cmd) => match cmd {
            DeviceCmd::Add { key, from } => ident::device_add(&home, &key, from, opts),
            DeviceCmd::List { json } => ident::device_list(&home, json),
            DeviceCmd::Revoke { key, after } => ident::device_revoke(&home, &key, after, opts),
            DeviceCmd::Request { identity } => ident::device_request(&home, &identity, opts.force),
            DeviceCmd::Replace { after } => ident::device_replace(&home, after, opts),
        },
        Command::Id { json } => {
            let key = home::load_key(&home)?;
            let identity = home::identity(&home)?;
            if json {
                let node = tagline_node::files::node_key(&home)?;
                println!(
                    "{}",
                    json!({
                        "feed": key.public().to_string(),
                        "identity": identity.map(|i| i.to_string()),
                        "peer_id": node.public().to_peer_id().to_string(),
                        "home": home.display().to_string(),
                    })
                );
            } else {
                println!("{}", key.public());
            }
            Ok(())
        }
        Command::Publish { payload_type, json } => publish(&home, &payload_type, &json, opts.force),
        Command::Log { feed, json, limit } => log(&home, feed.as_deref(), json, limit),
        Command::Verify {
            json,
            rebuild_indexes,
        } => verify(&home, json, rebuild_indexes),
        Command::Export { feed, output } => export(&home, feed.as_deref(), output),
        Command::Import { file, json } => import(&home, &file, json),
        Command::Project(ProjectCmd::Create(fields)) => {
            reviewcmd::project_create(&home, fields.into_args(), None, opts.force)
        }
        Command::Project(ProjectCmd::Amend { project, fields }) => {
            reviewcmd::project_create(&home, fields.into_args(), Some(&project), opts.force)
        }
        Command::Project(ProjectCmd::Show { project, json }) => {
            reviewcmd::project_show(&home, project.as_deref(), json)
        }
        Command::Submit { args, files } => reviewcmd::submit(&home, args, &files, opts.force),
        Command::Review {
            series,
            patch,
            reviewed_by,
            acked_by,
            tested_by,
            nacked_by,
            comment,
            file,
            retract,
        } => {
            let comment = match file {
                Some(f) => Some(read_input(&f).map(|b| String::from_utf8_lossy(&b).into_owned())?),
                None => comment,
            };
            let trailers = [
                (reviewed_by, "Reviewed-by"),
                (acked_by, "Acked-by"),
                (tested_by, "Tested-by"),
                (nacked_by, "Nacked-by"),
            ]
            .into_iter()
            .filter_map(|(on, k)| on.then_some(k))
            .collect();
            reviewcmd::review(
                &home,
                reviewcmd::ReviewArgs {
                    series,
                    patch,
                    trailers,
                    comment,
                    retract,
                },
                opts.force,
            )
        }
        Command::Ci(CiCmd::Run(args)) => tagline_cli::cicmd::run(&home, args, cli.force),
        Command::Ci(CiCmd::Report {
            series,
            context,
            status,
            summary,
            log,
        }) => reviewcmd::ci_report(
            &home,
            &series,
            &context,
            &status,
            summary,
            log.as_deref(),
            opts.force,
        ),
        Command::Show {
            series,
            version,
            full,
        } => reviewcmd::show(&home, &series, version, full),
        Command::Interdiff { series, v1, v2 } => reviewcmd::interdiff(&home, &series, v1, v2),
        Command::Am { series, output } => reviewcmd::am(&home, &series, output.as_deref()),
        Command::Status {
            series,
            project,
            repo,
            json,
        } => reviewcmd::status(&home, &series, project.as_deref(), repo.as_deref(), json),
        Command::Series { filter, json } => reviewcmd::series_list(&home, filter, json),
        Command::Peers { cmd: None, json } => netcmd::peers_list(&home, json),
        Command::Peers {
            cmd: Some(PeersCmd::Add { addr }),
            ..
        } => netcmd::peers_add(&home, &addr),
        Command::Peers {
            cmd: Some(PeersCmd::Remove { addr }),
            ..
        } => netcmd::peers_remove(&home, &addr),
        Command::Sync(SyncCmd::Status { json }) => netcmd::sync_status(&home, json),
        Command::Follow { id: None, json } => netcmd::show_replication(&home, json),
        Command::Follow { id: Some(id), .. } => netcmd::edit(&home, List::Follow, &id, true),
        Command::Unfollow { id } => netcmd::edit(&home, List::Follow, &id, false),
        Command::Subscribe { project } => netcmd::edit(&home, List::Subscribe, &project, true),
        Command::Unsubscribe { project } => netcmd::edit(&home, List::Subscribe, &project, false),
        Command::Block { id } => netcmd::edit(&home, List::Block, &id, true),
        Command::Unblock { id } => netcmd::edit(&home, List::Block, &id, false),
        Command::Maintainers { .. }
        | Command::Completions { .. }
        | Command::Node { .. }
        | Command::Bridge(BridgeCmd::Parse(_)) => Ok(()), // handled above
        Command::Bridge(BridgeCmd::Import(args)) => bridgecmd::import(&home, args, cli.force),
        Command::Gate(args) => tagline_cli::gatecmd::run(&home, args, cli.force),
        Command::Bridge(BridgeCmd::Outbox(args)) => tagline_cli::outboxcmd::outbox(&home, args),
        Command::Bridge(BridgeCmd::Serve(args)) => {
            init_logging();
            bridgecmd::serve(&home, args, cli.force)
        }
    }
}

/// Logs of `tagline node` go to stderr, filtered by `RUST_LOG` (default:
/// info for Tagline's crates, warnings for the rest).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,tagline_node=info,tagline_net=info")
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .try_init();
}

fn read_input(arg: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    if arg == "-" {
        io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
    } else {
        File::open(arg)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .with_context(|| format!("cannot read {arg}"))?;
    }
    Ok(buf)
}

fn publish(home: &std::path::Path, payload_type: &str, json_arg: &str, force: bool) -> Result<()> {
    tagline_format::entry::check_payload_type(payload_type)?;
    let key = home::load_key(home)?;
    let raw = read_input(json_arg)?;
    let j: serde_json::Value = serde_json::from_slice(&raw).with_context(|| {
        format!(
            "{} is not valid JSON",
            if json_arg == "-" {
                "standard input"
            } else {
                json_arg
            }
        )
    })?;
    let value = payload::from_json(&j)?;
    let bytes = tagline_format::cbor::encode_canonical(
        &value,
        tagline_format::limits::MAX_PAYLOAD_SIZE as usize,
    )?;
    payload::check_known(payload_type, &bytes)
        .with_context(|| format!("not a valid {payload_type} payload"))?;
    let store = home::open_store(home)?;
    let entries = ident::append_own(
        home,
        &store,
        &key,
        vec![(payload_type.to_owned(), bytes)],
        force,
    )?;
    for e in entries {
        println!("{} {}", e.signed.seq(), e.signed.id());
    }
    Ok(())
}

fn feed_or_self(home: &std::path::Path, feed: Option<&str>) -> Result<PublicKey> {
    match feed {
        Some(f) => f
            .parse::<PublicKey>()
            .with_context(|| format!("{f:?} is not a feed key")),
        None => Ok(home::load_key(home)?.public()),
    }
}

fn log(home: &std::path::Path, feed: Option<&str>, json: bool, limit: Option<u64>) -> Result<()> {
    let author = feed_or_self(home, feed)?;
    let store = home::open_store(home)?;
    let Some(meta) = store.feed(&author)? else {
        bail!("no entries of feed {author} are stored here");
    };
    let from = limit
        .map_or(1, |n| meta.head.seq.saturating_sub(n) + 1)
        .max(1);
    let mut out = BufWriter::new(io::stdout().lock());
    if !json {
        writeln!(
            out,
            "feed {author}{}",
            meta.forked_at
                .map(|s| format!(" (FORKED at seq {s})"))
                .unwrap_or_default()
        )?;
    }
    let mut seq = from;
    while seq <= meta.head.seq {
        let chunk = store.range(&author, seq, seq + READ_CHUNK - 1)?;
        if chunk.is_empty() {
            break;
        }
        for e in &chunk {
            if json {
                writeln!(out, "{}", entry_json(e))?;
            } else {
                writeln!(out, "{}", entry_line(e))?;
            }
        }
        seq += chunk.len() as u64;
    }
    out.flush()?;
    Ok(())
}

fn entry_json(e: &StoredEntry) -> serde_json::Value {
    let h = e.signed.header();
    let payload_json = e
        .payload
        .as_deref()
        .and_then(|p| {
            tagline_format::cbor::decode(p, tagline_format::limits::MAX_PAYLOAD_SIZE as usize).ok()
        })
        .map(|v| payload::to_json(&v));
    json!({
        "id": e.signed.id().to_string(),
        "author": h.author.to_string(),
        "seq": h.seq,
        "backlink": h.backlink.map(|b| b.to_string()),
        "lipmaa": h.lipmaa.map(|b| b.to_string()),
        "timestamp_ms": h.timestamp,
        "type": h.payload_type,
        "payload_size": h.payload_size,
        "payload_hash": h.payload_hash.to_string(),
        "payload": payload_json,
    })
}

fn entry_line(e: &StoredEntry) -> String {
    let h = e.signed.header();
    let summary = match (&e.payload, h.payload_type.as_str()) {
        (None, _) => "(payload not held)".to_string(),
        (Some(p), payload::NOTE_TYPE) => match payload::decode_note(p) {
            Ok(t) => {
                let first = t.lines().next().unwrap_or("");
                let cut: String = first.chars().take(60).collect();
                format!("{cut:?}")
            }
            Err(_) => "(invalid note)".to_string(),
        },
        (Some(_), _) => format!("{} bytes", h.payload_size),
    };
    format!(
        "{:>6}  {}  {}  {:<16} {}",
        h.seq,
        e.signed.id().short(),
        format_time(h.timestamp),
        h.payload_type,
        summary
    )
}

/// `YYYY-MM-DD HH:MM:SSZ` in UTC.
fn format_time(ms: u64) -> String {
    let c = civil(ms);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

fn verify(home: &std::path::Path, json: bool, rebuild_indexes: bool) -> Result<()> {
    let store = home::open_store(home)?;
    if rebuild_indexes {
        let n = store.rebuild_indexes()?;
        if !json {
            println!("rebuilt the indexes of {n} entries");
        }
    }
    let report = store.verify_all(home::random32()?)?;
    let forks = store.fork_proofs()?;
    if json {
        println!(
            "{}",
            json!({
                "feeds": report.feeds,
                "entries": report.entries,
                "payloads_checked": report.payloads_checked,
                "payloads_missing": report.payloads_missing,
                "forks": forks.iter().map(|f| json!({"author": f.author().to_string(), "seq": f.seq()})).collect::<Vec<_>>(),
                "problems": report.problems,
            })
        );
    } else {
        println!(
            "verified {} entries in {} feeds ({} payloads checked, {} not held)",
            report.entries, report.feeds, report.payloads_checked, report.payloads_missing
        );
        for f in &forks {
            println!(
                "fork: feed {} forked at seq {} (proof kept)",
                f.author(),
                f.seq()
            );
        }
        for p in &report.problems {
            println!("problem: {p}");
        }
    }
    if !report.problems.is_empty() {
        bail!(
            "{} problems found in {}",
            report.problems.len(),
            store.dir().display()
        );
    }
    Ok(())
}

fn export(home: &std::path::Path, feed: Option<&str>, output: Option<PathBuf>) -> Result<()> {
    let author = feed_or_self(home, feed)?;
    let store = home::open_store(home)?;
    let Some(meta) = store.feed(&author)? else {
        bail!("no entries of feed {author} are stored here");
    };
    let sink: Box<dyn Write> = match &output {
        Some(p) => {
            Box::new(File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        None => Box::new(io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    out.write_all(STREAM_MAGIC)?;
    let mut seq = 1;
    while seq <= meta.head.seq {
        let chunk = store.range(&author, seq, seq + READ_CHUNK - 1)?;
        if chunk.is_empty() {
            break;
        }
        for e in &chunk {
            out.write_all(&stream::encode_record(
                e.signed.as_bytes(),
                e.payload.as_deref(),
            ))?;
        }
        seq += chunk.len() as u64;
    }
    out.flush().context("cannot write the export")?;
    Ok(())
}

/// Reads one record; `Ok(None)` at a clean end of stream.
fn read_record(r: &mut impl BufRead, index: u64) -> Result<Option<(Entry, usize)>> {
    let mut prefix = [0u8; 4];
    if r.fill_buf()?.is_empty() {
        return Ok(None);
    }
    r.read_exact(&mut prefix)
        .map_err(|_| stream::StreamError::Truncated { index })?;
    let n = stream::record_len(prefix, index)?;
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)
        .map_err(|_| stream::StreamError::Truncated { index })?;
    Ok(Some((stream::decode_record(&body, index)?, n)))
}

fn import(home: &std::path::Path, file: &str, json: bool) -> Result<()> {
    let store = home::open_store(home)?;
    let name = if file == "-" {
        "standard input".to_string()
    } else {
        file.to_string()
    };
    let source: Box<dyn Read> = if file == "-" {
        Box::new(io::stdin().lock())
    } else {
        Box::new(File::open(file).with_context(|| format!("cannot open {file}"))?)
    };
    let mut r = BufReader::new(source);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)
        .map_err(|_| anyhow::anyhow!("{name} is too short to be a Tagline export"))?;
    stream::check_magic(&magic).with_context(|| format!("refusing {name}"))?;
    let (mut appended, mut duplicates, mut records) = (0u64, 0u64, 0u64);
    let mut batch = Vec::new();
    let mut batch_bytes = 0usize;
    let mut feeds = std::collections::BTreeSet::new();
    loop {
        let next = read_record(&mut r, records).with_context(|| format!("refusing {name}"))?;
        let done = next.is_none();
        if let Some((entry, n)) = next {
            records += 1;
            feeds.insert(*entry.signed.author());
            batch.push(entry);
            batch_bytes += n;
        }
        if (done || batch_bytes >= IMPORT_BATCH_BYTES) && !batch.is_empty() {
            let report = store
                .ingest(
                    std::mem::take(&mut batch),
                    home::now_ms(),
                    home::random32()?,
                    IngestMode::AllOrNothing,
                )
                .map_err(|e| match e {
                    StoreError::Rejected(r) => anyhow::anyhow!(
                        "refusing {name}: {r}{}{}",
                        if r.reason.code() == "fork" {
                            " (the fork proof is kept: see `tagline verify`)"
                        } else {
                            ""
                        },
                        if appended > 0 {
                            format!(" ({appended} earlier entries were imported)")
                        } else {
                            String::new()
                        }
                    ),
                    other => other.into(),
                })?;
            appended += report.appended;
            duplicates += report.duplicates;
            batch_bytes = 0;
        }
        if done {
            break;
        }
    }
    // A newer copy of one of our own feeds (from a backup or another copy of
    // this data directory) confirms our head: record it for the restore guard.
    // (A data directory without readable keys has none of its own.)
    let own = home::own_feeds(home).unwrap_or_default();
    for key in own.intersection(&feeds) {
        if let Some(meta) = store.feed(key)? {
            store.set_confirmed(key, meta.head.seq)?;
            guard::record(home, key, &meta.head)?;
        }
    }
    if json {
        println!(
            "{}",
            json!({ "records": records, "feeds": feeds.len(), "imported": appended, "already_present": duplicates })
        );
    } else {
        println!(
            "imported {appended} entries ({duplicates} already present) from {} feeds in {name}",
            feeds.len()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(1_763_747_087_000), "2025-11-21 17:44:47Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00Z");
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }
}
