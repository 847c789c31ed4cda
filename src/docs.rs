//! `airgap completions` and `airgap man`: generated from the clap definitions in `cli.rs`,
//! so they cannot drift from what the parser accepts.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Result};
use clap::CommandFactory;

use airgap::fsutil::FileError;

use crate::cli::{Cli, CompletionsArgs, ManArgs};

pub fn completions(a: &CompletionsArgs, out: &mut dyn Write) {
    clap_complete::generate(a.shell, &mut Cli::command(), "airgap", out);
}

pub fn man(a: &ManArgs, out: &mut dyn Write) -> Result<()> {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    // Built, subcommands carry their full names (`airgap-pack`) for their pages' titles.
    cmd.build();
    if let Some(dir) = &a.dir {
        return write_pages(&cmd, dir);
    }
    let page = match &a.subcommand {
        None => cmd,
        Some(name) => match cmd.find_subcommand(name) {
            Some(sub) => sub.clone(),
            None => bail!(
                "no subcommand {name}; there are: {}",
                names(&cmd).join(", ")
            ),
        },
    };
    page_of(page).render(out)?;
    Ok(())
}

/// Every page says which airgap it documents (clap gives subcommands no version).
fn page_of(cmd: clap::Command) -> clap_mangen::Man {
    clap_mangen::Man::new(cmd).source(concat!("airgap ", env!("CARGO_PKG_VERSION")))
}

fn names(cmd: &clap::Command) -> Vec<String> {
    cmd.get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect()
}

/// airgap.1 and airgap-SUBCOMMAND.1 for each subcommand.
fn write_pages(cmd: &clap::Command, dir: &Path) -> Result<()> {
    let pages = std::iter::once(cmd).chain(cmd.get_subcommands());
    for page in pages {
        let man = page_of(page.clone());
        let path = dir.join(man.get_filename());
        let mut roff = Vec::new();
        man.render(&mut roff)?;
        std::fs::write(&path, roff).map_err(FileError::with("writing", &path))?;
    }
    Ok(())
}
