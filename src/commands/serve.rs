//! `airgap serve`: open the bundle, bind, and say what is served; the caller runs the server.

use std::net::SocketAddr;
use std::sync::Arc;

use super::CommandError;
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
    pub bundle: std::path::PathBuf,
    pub images: usize,
    pub tls: bool,
    /// Every `repository:tag` (or `repository@digest`) a client can pull.
    pub names: Vec<String>,
    /// Verified with `--key`, else what is attached, not checked.
    pub signature: crate::sign::Status,
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
            self.bundle.display(),
            if self.tls { "HTTPS" } else { "plain HTTP" }
        )];
        out.push(self.signature.render());
        out.extend(self.names.iter().map(|n| format!("  {}/{n}", self.addr)));
        out.join("\n")
    }
}

/// `keys`: public keys (`--key`), any of which must have signed the bundle; checked before
/// the bundle is indexed or the port bound.
pub async fn start(
    mut opts: ServeOptions,
    keys: &[std::path::PathBuf],
    progress: Arc<dyn Progress>,
) -> Result<Started, CommandError> {
    let trust = super::sign::establish(&opts.bundle, keys)?;
    opts.expected_id = trust.checked.as_ref().map(|c| c.bundle_id.clone());
    let bundle = opts.bundle.clone();
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
        bundle,
        images: cat.metadata.images.len(),
        tls: server.is_tls(),
        names: cat.names.clone(),
        signature: trust.status,
    };
    Ok(Started { server, banner })
}
