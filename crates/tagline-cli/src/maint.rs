//! `tagline maintainers`: who must see a change, as get_maintainer.pl says.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use serde_json::json;
use tagline_review::maintainers::{
    Context, Flavor, Mailmap, Maintainers, files_of_patch, who, who_for_patch,
};

/// Arguments of `tagline maintainers`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The MAINTAINERS file [default: ./MAINTAINERS]; .mailmap and
    /// .get_maintainer.ignore are read beside it
    #[arg(long, value_name = "MAINTAINERS")]
    pub file: Option<PathBuf>,
    /// Print the matching sections instead
    #[arg(long)]
    pub sections: bool,
    /// Machine-readable output
    #[arg(long)]
    pub json: bool,
    /// Also match K: keywords against the patch (get_maintainer.pl's default)
    #[arg(long)]
    pub keywords: bool,
    /// The inputs are paths in the tree, not patch files
    #[arg(short = 'f', long = "paths")]
    pub paths: bool,
    /// Patch files (or paths with -f)
    #[arg(required = true)]
    pub inputs: Vec<String>,
}

pub fn run(a: Args) -> Result<()> {
    let file = a.file.unwrap_or_else(|| PathBuf::from("MAINTAINERS"));
    let text = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "cannot read {} (run in the tree's top directory or pass --file)",
            file.display()
        )
    })?;
    let root: PathBuf = file
        .parent()
        .map(Path::to_path_buf)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| PathBuf::from("."));
    let flavor = Flavor::detect(&text);
    let m = Maintainers::parse(&text, &flavor, &|p| root.join(p).is_dir());
    let ctx = Context {
        mailmap: std::fs::read_to_string(root.join(".mailmap"))
            .map(|t| Mailmap::parse(&t))
            .unwrap_or_default(),
        ignore: std::fs::read_to_string(root.join(".get_maintainer.ignore"))
            .map(|t| Context::parse_ignore(&t))
            .unwrap_or_default(),
    };
    if a.inputs.is_empty() {
        bail!("give paths with -f, or patch files");
    }
    let (files, recipients) = if a.paths {
        let files: Vec<String> = a
            .inputs
            .iter()
            .map(|p| p.trim_start_matches("./").to_string())
            .collect();
        let r = who(&m, &files, &flavor, &ctx);
        (files, r)
    } else {
        let mut text = String::new();
        for p in &a.inputs {
            text.push_str(
                &std::fs::read_to_string(p).with_context(|| format!("cannot read patch {p}"))?,
            );
            text.push('\n');
        }
        let files = files_of_patch(&text);
        if files.is_empty() {
            bail!(
                "{} does not look like a patch (no ---/+++ lines); use -f for paths",
                a.inputs.join(" ")
            );
        }
        let r = who_for_patch(&m, &text, a.keywords, &flavor, &ctx);
        (files, r)
    };
    if a.sections {
        let out = m.sections_output(&files);
        if a.json {
            println!("{}", json!(out));
        } else {
            for l in out {
                println!("{l}");
            }
        }
        return Ok(());
    }
    if a.json {
        let v: Vec<serde_json::Value> = recipients
            .iter()
            .map(|r| json!({"email": r.email, "role": r.role}))
            .collect();
        println!("{}", json!(v));
    } else {
        for r in recipients {
            println!("{r}");
        }
    }
    Ok(())
}
