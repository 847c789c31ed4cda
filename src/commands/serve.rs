//! `airgap serve`: open the bundle, bind, and say what is served; the caller runs the server.

use std::net::SocketAddr;
use std::sync::Arc;

use std::path::PathBuf;

use super::CommandError;
use crate::fsutil::FileError;
use crate::progress::Progress;
use crate::serve::{serve, ServeOptions, Server};

/// A bound server and what it serves.
pub struct Started {
    pub server: Server,
    pub banner: Banner,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Banner {
    pub addr: SocketAddr,
    pub bundles: Vec<std::path::PathBuf>,
    pub images: usize,
    pub tls: bool,
    /// Every `repository:tag` (or `repository@digest`) a client can pull.
    pub names: Vec<String>,
    /// Verified with `--key`, else what is attached, not checked.
    /// Per bundle: verified with `--key`, else what is attached, not checked.
    pub signatures: Vec<crate::sign::Status>,
}

impl Banner {
    /// The first line, for scripts (and `--listen 127.0.0.1:0`).
    pub fn first_line(&self) -> String {
        format!("listening on {}", self.addr)
    }

    pub fn render(&self) -> String {
        let mut out = vec![format!(
            "serving {} image(s) from {} read-only over {}; pull them as:",
            self.images,
            self.bundles
                .iter()
                .map(|b| b.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if self.tls { "HTTPS" } else { "plain HTTP" }
        )];
        out.extend(self.signatures.iter().map(|s| s.render()));
        out.extend(self.names.iter().map(|n| format!("  {}/{n}", self.addr)));
        out.join("\n")
    }
}

/// The bundles named: files as they are, and for a directory every bundle in it (`*.tar.zst`,
/// `*.tar`, a split set's `*.parts.json`), sorted by name.
pub fn expand_bundles(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CommandError> {
    let mut out = Vec::new();
    for p in paths {
        // A directory with an index.json is an OCI layout to serve, not a directory of bundles.
        if !p.is_dir() || p.join("index.json").is_file() {
            out.push(p.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(p)
            .map_err(FileError::with("reading directory", p))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|f| {
                let n = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
                !n.starts_with('.')
                    && (n.ends_with(".tar.zst")
                        || n.ends_with(".tar")
                        || n.ends_with(".parts.json"))
            })
            .collect();
        found.sort();
        if found.is_empty() {
            return Err(CommandError::invalid(format!(
                "{}: no bundle in it (*.tar.zst, *.tar, *.parts.json)",
                p.display()
            )));
        }
        out.extend(found);
    }
    Ok(out)
}

/// `keys`: public keys (`--key`), any of which must have signed each bundle; checked before
/// the bundles are indexed or the port bound.
pub async fn start(
    mut opts: ServeOptions,
    keys: &[std::path::PathBuf],
    progress: Arc<dyn Progress>,
) -> Result<Started, CommandError> {
    opts.bundles = expand_bundles(&opts.bundles)?;
    let mut signatures = Vec::new();
    opts.expected_ids.clear();
    for b in &opts.bundles {
        let trust = super::sign::establish(b, keys)?;
        opts.expected_ids
            .push(trust.checked.as_ref().map(|c| c.bundle_id.clone()));
        signatures.push(trust.status);
    }
    let bundles = opts.bundles.clone();
    let listen = opts.listen;
    let server = serve(opts, progress).await?;
    let addr = server
        .local_addr()
        .map_err(|source| crate::serve::ServeError::Listen {
            addr: listen,
            source,
        })?;
    let cat = server.catalog();
    let banner = Banner {
        addr,
        bundles,
        images: cat.image_count(),
        tls: server.is_tls(),
        names: cat.names.clone(),
        signatures,
    };
    Ok(Started { server, banner })
}
