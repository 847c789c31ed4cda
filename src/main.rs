//! The `airgap` binary: parse, call one library command, print its summary or its error.
//! Exit 0 on success, 1 on any failure, 2 on a usage error, 130 when interrupted.

mod cli;
mod docs;

use std::io::Write;
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;

use airgap::commands;
use airgap::progress::{Progress, Reporter};
use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    // Generated text needs no runtime.
    match &cli.command {
        Command::Completions(a) => {
            docs::completions(a, &mut std::io::stdout().lock());
            std::process::exit(0);
        }
        Command::Man(a) => {
            let code = match docs::man(a, &mut std::io::stdout().lock()) {
                Ok(()) => 0,
                Err(e) => {
                    report(&e);
                    1
                }
            };
            std::process::exit(code);
        }
        _ => {}
    }
    if matches!(cli.command, Command::Serve(_)) {
        airgap::serve::ops::limit_malloc_arenas();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async {
        tokio::select! {
            r = run(cli) => match r {
                Ok(()) => 0,
                Err(e) => {
                    report(&e);
                    1
                }
            },
            _ = tokio::signal::ctrl_c() => {
                // Dropping the pipeline removes temporary files; nothing partial is left.
                eprintln!("interrupted");
                130
            }
        }
    });
    // Do not wait for blocking workers that may sit in a read.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    std::process::exit(code);
}

/// `error: ` and the chain of causes, each once; then the library's advice, if any.
fn report(e: &anyhow::Error) {
    let root: &(dyn std::error::Error + 'static) = e.as_ref();
    eprintln!("error: {}", airgap::error::chain(root));
    if let Some(h) = airgap::error::hint(root) {
        eprintln!("hint: {h}");
    }
}

fn reporter(quiet: bool) -> Arc<dyn Progress> {
    Arc::new(Reporter::new(quiet))
}

/// Prints a summary on standard output unless `quiet`.
fn say(quiet: bool, text: &str) {
    if !quiet && !text.is_empty() {
        println!("{text}");
    }
}

/// `--json`: the report as one JSON document, the only thing on standard output (even with
/// `--quiet`, which then silences only the progress on standard error).
fn print_json(report: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(report)?)?;
    out.flush()?;
    Ok(())
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Pack(a) if a.list_images => {
            let r = commands::pack::list_images(&a.spec)?;
            if a.json {
                print_json(&r)?;
            } else {
                say(false, &r.render());
            }
        }
        Command::Pack(a) => {
            let r = commands::pack::pack(&a.command(), reporter(a.quiet)).await?;
            if a.json {
                print_json(&r)?;
            } else {
                say(a.quiet, &r.render());
            }
        }
        Command::Load(a) => {
            let r = commands::load::load(&a.command(), reporter(a.quiet)).await?;
            if a.json {
                print_json(&r)?;
            } else {
                say(a.quiet, &r.render());
            }
        }
        Command::Inspect(a) => {
            let r = commands::inspect::inspect_archive(&a.bundle, a.repository.as_deref())?;
            let mut out = std::io::stdout().lock();
            if a.metadata {
                out.write_all(&r.metadata_raw)?;
            } else if a.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
                out.flush()?;
            } else {
                writeln!(out, "{}", r.render())?;
            }
        }
        Command::Verify(a) => {
            let r = commands::verify::verify_archive(&a.bundle, &a.key, a.repository.as_deref())?;
            if a.json {
                print_json(&r)?;
            } else {
                say(a.quiet, &r.render());
            }
        }
        Command::Sign(a) => {
            let r = commands::sign::sign(&commands::sign::SignCommand {
                bundle: a.bundle.clone(),
                keys: a.key.clone(),
            })?;
            if a.json {
                print_json(&r)?;
            } else {
                println!("{}", r.render());
            }
        }
        Command::Export(a) => {
            let r = commands::export::export(&a.bundle, &a.to())?;
            say(a.quiet, &r.render());
        }
        Command::Rewrite(a) => {
            let r = commands::rewrite::rewrite(&a.command(), reporter(false).as_ref())?;
            if let Some(text) = &r.stdout {
                std::io::stdout().lock().write_all(text.as_bytes())?;
            }
            if let Some(line) = r.render() {
                eprintln!("{line}");
            }
        }
        Command::Cache(cli::CacheCommand::Info(a)) => {
            let r = commands::cache::info(&a.cache)?;
            if a.json {
                print_json(&r)?;
            } else {
                say(false, &commands::cache::render_info(&r));
            }
        }
        Command::Cache(cli::CacheCommand::Prune(a)) => {
            let r = commands::cache::prune(&a.dir.cache, a.max_size)?;
            if a.dir.json {
                print_json(&r)?;
            } else {
                say(false, &commands::cache::render_prune(&r));
            }
        }
        Command::Completions(_) | Command::Man(_) => unreachable!("handled before the runtime"),
        Command::Serve(a) => {
            let started = commands::serve::start(a.options(), &a.key, reporter(a.quiet)).await?;
            // The first line is the address, for scripts.
            println!("{}", started.banner.first_line());
            say(a.quiet, &started.banner.render());
            std::io::stdout().flush()?;
            started.server.run().await?;
        }
    }
    Ok(())
}
