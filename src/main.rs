//! The `airgap` binary: parse, run a library pipeline, print. Exit 0 on success, 1 on any
//! failure, 2 on a usage error, 130 when interrupted.

mod cli;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Parser;

use airgap::bundle;
use airgap::credentials::Credentials;
use airgap::image_map::ImageMap;
use airgap::k8s::{self, K8sOptions};
use airgap::load::{self, LoadOptions};
use airgap::naming::Target;
use airgap::pack::{self, ImageRequest, K8sFile, PackOptions};
use airgap::platform::Platform;
use airgap::progress::{human_bytes, Progress, Reporter};
use airgap::registry::{parse_mirror, ConnectOptions};
use airgap::rewrite::RewriteOptions;
use airgap::spec::Spec;
use cli::{
    Cli, Command, InspectArgs, LoadArgs, PackArgs, RewriteArgs, RewriteFlags, ServeArgs, TlsArgs,
    VerifyArgs,
};

fn main() {
    let cli = Cli::parse();
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
                    eprintln!("error: {}", error_chain(&e));
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

/// The error and its causes on one line, leaving out a cause whose text the message before
/// it already includes (library errors often quote their source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if msg.contains(&s) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&s);
    }
    msg
}

async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Pack(a) => run_pack(a).await,
        Command::Load(a) => run_load(a).await,
        Command::Inspect(a) => run_inspect(a),
        Command::Verify(a) => run_verify(a),
        Command::Rewrite(a) => run_rewrite(a),
        Command::Serve(a) => run_serve(a).await,
    }
}

async fn run_serve(a: ServeArgs) -> Result<()> {
    let progress: Arc<dyn Progress> = Arc::new(Reporter::new(a.quiet));
    let opts = airgap::serve::ServeOptions {
        bundle: a.bundle.clone(),
        listen: a.listen,
        mode: a.mode,
        path: a.path.clone(),
        access_log: !a.quiet,
        tls: match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => Some(airgap::serve::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
    };
    // The errors name the bundle or the address already.
    let server = airgap::serve::serve(opts, progress).await?;
    let addr = server.local_addr()?;
    // The first line is the address, for scripts (and `--listen 127.0.0.1:0`).
    println!("listening on {addr}");
    if !a.quiet {
        let cat = server.catalog();
        println!(
            "serving {} image(s) from {} read-only over {}; pull them as:",
            cat.metadata.images.len(),
            a.bundle.display(),
            if server.is_tls() {
                "HTTPS"
            } else {
                "plain HTTP"
            }
        );
        for n in &cat.names {
            println!("  {addr}/{n}");
        }
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.run().await?;
    Ok(())
}

fn connect_options(t: &TlsArgs, progress: &dyn Progress) -> ConnectOptions {
    if t.insecure_skip_tls_verify {
        progress.warn("TLS certificate verification is disabled (--insecure-skip-tls-verify)");
    }
    ConnectOptions {
        ca_file: t.ca_file.clone(),
        insecure_skip_tls_verify: t.insecure_skip_tls_verify,
        retries: t.retries,
        ..ConnectOptions::default()
    }
}

async fn run_pack(a: PackArgs) -> Result<()> {
    let progress: Arc<dyn Progress> = Arc::new(Reporter::new(a.quiet));
    let spec = Spec::load(&a.spec)?;
    for w in &spec.warnings {
        progress.warn(w);
    }
    let mut mirrors: BTreeMap<String, url::Url> = spec.mirrors.clone();
    for m in &a.mirrors {
        let (host, url) = parse_mirror(m)?;
        mirrors.insert(host, url);
    }
    let platforms = if a.platforms.is_empty() {
        spec.platforms.clone()
    } else {
        a.platforms
            .iter()
            .map(|p| Platform::parse(p))
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut images = Vec::new();
    for e in &spec.images {
        let credentials = e.credentials_or_docker_config().with_context(|| {
            format!(
                "credentials for {} ({}:{})",
                e.reference,
                spec.path.display(),
                e.line
            )
        })?;
        images.push(ImageRequest {
            reference: e.reference.clone(),
            source: e.source.clone(),
            credentials,
        });
    }
    let mut k8s = Vec::new();
    for f in spec.manifest_files()? {
        let content = std::fs::read(&f.path)
            .with_context(|| format!("reading manifest {}", f.path.display()))?;
        let path = f
            .relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        k8s.push(K8sFile { path, content });
    }
    let opts = PackOptions {
        output: a.output.clone(),
        platforms,
        mirrors,
        connect: connect_options(&a.tls, progress.as_ref()),
        concurrency: a.concurrency.max(1),
        level: a.level,
        threads: a.threads.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(2)
        }),
        allow_missing_images: a.allow_missing,
        split: match &a.split {
            Some(s) => Some(airgap::volume::parse_size(s).context("--split")?),
            None => None,
        },
        base: match &a.base {
            Some(p) => Some(read_base(p)?),
            None => None,
        },
        spec_name: a.spec.file_name().map(|n| n.to_string_lossy().into_owned()),
    };
    let started = std::time::Instant::now();
    let s = pack::pack(images, k8s, &opts, progress.clone()).await?;
    if !a.quiet {
        println!(
            "packed {} image(s), {} blob(s), {} into {} ({} compressed) in {:.1}s",
            s.images,
            s.blobs,
            human_bytes(s.bytes),
            a.output.display(),
            human_bytes(s.compressed),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn read_password_stdin() -> Result<String> {
    let mut s = String::new();
    std::io::stdin()
        .read_to_string(&mut s)
        .context("reading the password from standard input")?;
    let p = s.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        bail!("--password-stdin: standard input was empty");
    }
    Ok(p)
}

async fn run_load(a: LoadArgs) -> Result<()> {
    let progress: Arc<dyn Progress> = Arc::new(Reporter::new(a.quiet));
    let target = Target::parse(&a.registry)?;
    if a.plain_http {
        progress.warn(&format!(
            "talking plain HTTP to {} (--plain-http)",
            target.host
        ));
    }
    let credentials = match &a.username {
        Some(u) => Some(Credentials::new(u.clone(), read_password_stdin()?)),
        None => airgap::docker_config::lookup(&target.host)
            .with_context(|| format!("reading docker credentials for {}", target.host))?,
    };
    // Fail on a missing bundle before talking to the registry.
    drop(bundle::open_input(&a.bundle).with_context(|| format!("bundle {}", a.bundle.display()))?);
    // Rewrite the carried manifests before pushing anything: a manifest that would fail in
    // the cluster stops the load while nothing has changed.
    let k8s_opts = k8s_options(&a.rewrite);
    let rewritten = match &a.manifests_out {
        None => None,
        Some(_) => {
            let (map, files) = bundle_names(&a.bundle, &target, a.mode)?;
            let set = k8s::rewrite_all(&files, &map, &k8s_opts)?;
            for m in &set.missing {
                progress.warn(&format!("{m}: image is not in the bundle; left as it is"));
            }
            Some(set)
        }
    };
    let opts = LoadOptions {
        bundle: a.bundle.clone(),
        target,
        mode: a.mode,
        plain_http: a.plain_http,
        connect: connect_options(&a.tls, progress.as_ref()),
        credentials,
        concurrency: a.concurrency.max(1),
    };
    let s = load::load(&opts, progress.clone()).await?;
    if let Some(path) = &a.image_map {
        write_atomic(path, &serde_json::to_vec_pretty(&s.image_map)?)
            .with_context(|| format!("writing image map {}", path.display()))?;
    }
    if let (Some(dir), Some(set)) = (&a.manifests_out, rewritten) {
        let files: Vec<(String, String)> =
            set.files.into_iter().map(|(n, r)| (n, r.text)).collect();
        let mut secrets = Vec::new();
        if let (Some(name), Some(creds)) = (&a.rewrite.pull_secret, &opts.credentials) {
            secrets.push((
                format!("{name}-pull-secret.yaml"),
                k8s::pull_secret_manifest(name, &opts.target.host, creds),
            ));
        }
        let written = k8s::write_out(dir, &files, &secrets)?;
        if !a.quiet {
            println!(
                "wrote {} manifest file(s) to {}",
                written.len(),
                dir.display()
            );
        }
    }
    if !a.quiet {
        println!(
            "loaded {} image(s) into {} ({} already present): {} blob(s) uploaded ({}), {} mounted, {} skipped, {} manifest(s) pushed, in {:.1}s",
            s.images,
            opts.target.host,
            s.images_unchanged,
            s.blobs_uploaded,
            human_bytes(s.bytes_uploaded),
            s.blobs_mounted,
            s.blobs_skipped,
            s.manifests_pushed,
            s.elapsed.as_secs_f64()
        );
    }
    Ok(())
}

/// The base of a delta: a bundle (only its head is read) or a saved `airgap.json`.
fn read_base(path: &Path) -> Result<pack::BaseBundle> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let mut f =
        std::fs::File::open(path).with_context(|| format!("opening base {}", path.display()))?;
    let mut first = [0u8; 1];
    let n = f.read(&mut first)?;
    if n == 1 && first[0] == b'{' {
        let raw =
            std::fs::read(path).with_context(|| format!("reading base {}", path.display()))?;
        let metadata: bundle::Metadata = serde_json::from_slice(&raw)
            .with_context(|| format!("base {}: not an airgap.json", path.display()))?;
        return Ok(pack::BaseBundle {
            id: airgap::digest::Digest::of(&raw),
            name,
            metadata,
        });
    }
    let i = bundle::inspect(open_bundle(path)?)
        .with_context(|| format!("base bundle {}", path.display()))?;
    Ok(pack::BaseBundle {
        id: i.id,
        name,
        metadata: i.metadata,
    })
}

fn k8s_options(f: &RewriteFlags) -> K8sOptions {
    K8sOptions {
        rewrite: RewriteOptions {
            pin_digests: f.pin_digests,
            pull_secret: f.pull_secret.clone(),
        },
        allow_missing: f.allow_missing,
    }
}

/// The image map a load of `bundle` into `target` would produce, and the bundle's
/// Kubernetes files; reads only the bundle's head.
fn bundle_names(
    bundle: &Path,
    target: &Target,
    mode: airgap::naming::Mode,
) -> Result<(ImageMap, Vec<k8s::NamedFile>)> {
    let i = bundle::inspect_with_files(open_bundle(bundle)?)
        .with_context(|| format!("bundle {}", bundle.display()))?;
    let placements = load::placements(&i.metadata, target, mode)?;
    Ok((load::image_map(&placements), i.k8s))
}

/// Collects YAML inputs: files as named, directories walked for .yaml/.yml files (names
/// relative to the directory), `-` for standard input.
fn collect_yaml(paths: &[std::path::PathBuf]) -> Result<Vec<k8s::NamedFile>> {
    let mut out = Vec::new();
    for p in paths {
        if p.as_os_str() == "-" {
            let mut buf = Vec::new();
            std::io::stdin()
                .read_to_end(&mut buf)
                .context("reading standard input")?;
            out.push(("-".to_string(), buf));
        } else if p.is_dir() {
            let mut found = Vec::new();
            walk_yaml(p, p, &mut found)?;
            if found.is_empty() {
                bail!("{}: no .yaml or .yml files in this directory", p.display());
            }
            found.sort();
            for (rel, full) in found {
                let bytes =
                    std::fs::read(&full).with_context(|| format!("reading {}", full.display()))?;
                out.push((rel, bytes));
            }
        } else {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| p.display().to_string());
            out.push((name, bytes));
        }
    }
    Ok(out)
}

fn walk_yaml(root: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        if e.file_type()?.is_dir() {
            walk_yaml(root, &path, out)?;
        } else if name.ends_with(".yaml") || name.ends_with(".yml") {
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
    Ok(())
}

fn run_rewrite(a: RewriteArgs) -> Result<()> {
    let map = match (&a.image_map, &a.bundle, &a.registry) {
        (Some(p), _, _) => ImageMap::read(p)?,
        (None, Some(b), Some(r)) => bundle_names(b, &Target::parse(r)?, a.mode)?.0,
        _ => bail!("give --image-map FILE, or --bundle BUNDLE with --registry REG"),
    };
    let files = collect_yaml(&a.paths)?;
    if a.output.is_none() && files.len() != 1 {
        bail!(
            "{} input files: give -o DIR to write them (standard output takes a single input)",
            files.len()
        );
    }
    let set = k8s::rewrite_all(&files, &map, &k8s_options(&a.rewrite))?;
    for m in &set.missing {
        eprintln!("warning: {m}: image is not in the image map; left as it is");
    }
    let changed: usize = set.files.iter().map(|(_, r)| r.changes.len()).sum();
    match &a.output {
        None => {
            let (_, r) = &set.files[0];
            std::io::Write::write_all(&mut std::io::stdout(), r.text.as_bytes())?;
        }
        Some(dir) => {
            if set.files.iter().any(|(n, _)| n == "-") {
                bail!("standard input cannot go to -o DIR; redirect standard output instead");
            }
            let files: Vec<(String, String)> =
                set.files.into_iter().map(|(n, r)| (n, r.text)).collect();
            let written = k8s::write_out(dir, &files, &[])?;
            eprintln!(
                "rewrote {} file(s) into {} ({changed} change(s))",
                written.len(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// Writes to a temporary file beside `path`, then renames: never a half-written file.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)?;
    std::io::Write::write_all(&mut tmp, bytes)?;
    tmp.persist(path)?;
    Ok(())
}

fn open_bundle(path: &Path) -> Result<Box<dyn std::io::Read + Send>> {
    bundle::open_input(path).with_context(|| format!("opening bundle {}", path.display()))
}

fn run_inspect(a: InspectArgs) -> Result<()> {
    let i = bundle::inspect(open_bundle(&a.bundle)?)
        .with_context(|| format!("bundle {}", a.bundle.display()))?;
    let md = &i.metadata;
    if a.metadata {
        std::io::Write::write_all(&mut std::io::stdout(), &i.metadata_raw)?;
        return Ok(());
    }
    if a.json {
        let images: Vec<serde_json::Value> = md
            .images
            .iter()
            .map(|img| {
                let mut v = serde_json::json!({
                    "reference": img.reference,
                    "digest": img.digest,
                    "mediaType": img.media_type,
                    "platforms": img.platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    "size": img.total_size,
                    "source": img.source,
                });
                if let Some(sd) = &img.source_digest {
                    v["sourceDigest"] = serde_json::json!(sd);
                }
                v
            })
            .collect();
        let out = serde_json::json!({
            "formatVersion": md.format_version,
            "id": i.id,
            "base": md.base.as_ref().map(|b| serde_json::json!({
                "id": b.id,
                "name": b.name,
                "blobs": b.blobs.len(),
                "size": b.blobs.iter().map(|r| r.size).sum::<u64>(),
            })),
            "tool": md.tool,
            "platforms": md.platforms.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
            "images": images,
            "manifests": i.k8s_files,
            "totals": { "images": md.images.len(), "blobs": md.blobs.len(), "size": md.total_size },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!(
        "bundle {} (format {}, {})",
        a.bundle.display(),
        md.format_version,
        md.tool
    );
    println!("  id {}", i.id);
    if let Some(b) = &md.base {
        println!(
            "  delta of {} ({}): {} blob(s), {}, left out; load it into a registry that already has that bundle",
            b.name.as_deref().unwrap_or("an earlier bundle"),
            b.id,
            b.blobs.len(),
            human_bytes(b.blobs.iter().map(|r| r.size).sum())
        );
    }
    for img in &md.images {
        let plats = if img.platforms.is_empty() {
            "-".to_string()
        } else {
            img.platforms
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        println!("  {}", img.reference);
        println!("    digest    {}", img.digest);
        if let Some(sd) = &img.source_digest {
            println!("    source    {sd} (index filtered to the platforms above)");
        }
        println!("    type      {}", img.media_type);
        println!("    platforms {plats}");
        println!("    size      {}", human_bytes(img.total_size));
    }
    for f in &i.k8s_files {
        println!("  manifest {f}");
    }
    println!(
        "total: {} image(s), {} blob(s), {}",
        md.images.len(),
        md.blobs.len(),
        human_bytes(md.total_size)
    );
    Ok(())
}

fn run_verify(a: VerifyArgs) -> Result<()> {
    if airgap::volume::is_split(&a.bundle) {
        // Each part on its own first, so a bad part is named even when the stream breaks.
        let set = airgap::volume::open_set(&a.bundle)?;
        let problems = airgap::volume::check_parts(&set);
        if !problems.is_empty() {
            let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            bail!(
                "split bundle {} failed verification:\n  {}",
                a.bundle.display(),
                list.join("\n  ")
            );
        }
        if !a.quiet {
            let checked = if set.parts.iter().all(|p| p.sha256.is_some()) {
                "each checked against its sidecar checksum"
            } else {
                "no sidecar: part checksums unknown, content still verified below"
            };
            println!("{} part(s), {checked}", set.parts.len());
        }
    }
    let r = bundle::verify_path(&a.bundle)
        .with_context(|| format!("bundle {} failed verification", a.bundle.display()))?;
    if !a.quiet {
        if let Some(b) = &r.base {
            println!(
                "delta of {} ({}): {} blob(s) it leaves out must already be at the target",
                b.name.as_deref().unwrap_or("an earlier bundle"),
                b.id,
                b.blobs.len()
            );
        }
        println!(
            "bundle {} is intact: {} image(s), {} blob(s), {} verified, {} manifest file(s)",
            a.bundle.display(),
            r.images,
            r.blobs,
            human_bytes(r.bytes),
            r.k8s_files
        );
        if !r.seekable {
            println!("no seek table (packed by an older airgap or recompressed): `serve` must decompress from the start for each read");
        }
    }
    Ok(())
}
