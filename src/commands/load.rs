//! `airgap load`: the bundle into a registry, then everything derived from where the images
//! went (image map, rewritten manifests, pull secret).
//!
//! The order matters: the outputs are computed from the bundle's head before anything is
//! pushed (a manifest that would fail in the cluster stops the load while nothing changed),
//! and written only after every image landed.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

use super::{warn_connect, CommandError, CommandErrorKind};
use crate::bundle;
use crate::image_rules::ImageRules;
use crate::load::{LoadError, LoadOptions};
use crate::naming::{Mode, Target};
use crate::outputs::{self, OutputOptions, Written};
use crate::progress::{human_bytes, Progress};
use crate::registry::credentials::Credentials;
use crate::registry::ConnectOptions;

/// Where the target registry's credentials come from.
#[derive(Debug, Clone, Default)]
pub enum Login {
    /// docker `config.json` (and its credential helpers) for the target host, else anonymous.
    #[default]
    DockerConfig,
    /// This user, with the password read from standard input.
    PasswordStdin {
        username: String,
    },
    Given(Credentials),
}

#[derive(Debug, Clone)]
pub struct LoadCommand {
    pub bundle: PathBuf,
    pub target: Target,
    pub mode: Mode,
    pub plain_http: bool,
    pub connect: ConnectOptions,
    pub login: Login,
    pub concurrency: usize,
    /// `--chunk-size`: see [`LoadOptions::chunk_size`].
    pub chunk_size: Option<u64>,
    /// `--state-dir`: see [`LoadOptions::state_dir`].
    pub state_dir: Option<PathBuf>,
    pub outputs: OutputOptions,
    /// `--key`: public keys, any of which must have signed the bundle (checked first).
    pub keys: Vec<PathBuf>,
    /// `--repository`: the repository a foreign archive's bare tags belong to.
    pub repository: Option<String>,
}

/// What a load did.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    /// [`REPORT_VERSION`](super::REPORT_VERSION).
    pub report_version: u32,
    pub registry: String,
    pub images: usize,
    pub images_unchanged: usize,
    /// Every image: where it went and whether it was pushed.
    pub image_list: Vec<LoadedImage>,
    pub blobs_uploaded: u64,
    pub bytes_uploaded: u64,
    pub blobs_mounted: u64,
    pub blobs_skipped: u64,
    pub manifests_pushed: u64,
    pub seconds: f64,
    pub image_map: crate::image_map::ImageMap,
    pub written: Written,
    /// Verified with `--key`, else what is attached, not checked.
    pub signature: crate::sign::Status,
    /// With `--key`, for a delta: its base's signature, when the base is beside it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_signature: Option<super::sign::BaseTrust>,
}

/// One image of a load, as `--json` prints it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadedImage {
    pub source: String,
    pub target: String,
    pub digest: crate::digest::Digest,
    /// `pushed`, or `unchanged` when the target already had it (manifest and tag).
    pub status: &'static str,
}

impl LoadReport {
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.signature.render());
        out.push('\n');
        if let Some(b) = &self.base_signature {
            out.push_str(&b.render());
            out.push('\n');
        }
        if let Some(dir) = &self.written.manifests_dir {
            out.push_str(&format!(
                "wrote {} manifest file(s) to {}\n",
                self.written.manifests.len(),
                dir.display()
            ));
        }
        if let Some(dir) = &self.written.mirror_dir {
            out.push_str(&format!(
                "wrote {} runtime mirror file(s) to {} (see its README.md)\n",
                self.written.mirror_files.len(),
                dir.display()
            ));
            for n in &self.written.mirror_notes {
                out.push_str(&format!("  note: {n}\n"));
            }
        }
        out.push_str(&format!(
            "loaded {} image(s) into {} ({} already present): {} blob(s) uploaded ({}), {} mounted, {} skipped, {} manifest(s) pushed, in {:.1}s",
            self.images,
            self.registry,
            self.images_unchanged,
            self.blobs_uploaded,
            human_bytes(self.bytes_uploaded),
            self.blobs_mounted,
            self.blobs_skipped,
            self.manifests_pushed,
            self.seconds
        ));
        out
    }
}

fn password_from_stdin() -> Result<String, CommandError> {
    let mut s = String::new();
    std::io::stdin().read_to_string(&mut s).map_err(|e| {
        CommandError::invalid(format!("--password-stdin: cannot read standard input: {e}"))
    })?;
    let p = s.trim_end_matches(['\n', '\r']).to_string();
    if p.is_empty() {
        return Err(CommandError::invalid(
            "--password-stdin: standard input was empty",
        ));
    }
    Ok(p)
}

impl Login {
    fn credentials(&self, host: &str) -> Result<Option<Credentials>, CommandError> {
        match self {
            Login::Given(c) => Ok(Some(c.clone())),
            Login::PasswordStdin { username } => Ok(Some(Credentials::new(
                username.clone(),
                password_from_stdin()?,
            ))),
            Login::DockerConfig => crate::registry::credentials::lookup(host).map_err(|source| {
                CommandErrorKind::DockerConfig {
                    registry: host.to_string(),
                    source,
                }
                .into()
            }),
        }
    }
}

pub async fn load(
    cmd: &LoadCommand,
    progress: Arc<dyn Progress>,
) -> Result<LoadReport, CommandError> {
    if cmd.plain_http {
        progress.warn(&format!(
            "talking plain HTTP to {} (--plain-http)",
            cmd.target.host
        ));
    }
    warn_connect(&cmd.connect, progress.as_ref());
    // The signature before anything else: nothing is asked of the registry for a bundle
    // that is refused.
    let trust = super::sign::establish(&cmd.bundle, &cmd.keys)?;
    let credentials = cmd.login.credentials(&cmd.target.host)?;
    // The bundle's head gives the placements, and from them every output, before any push.
    // A foreign archive (an OCI layout from another tool) is read once here for its plan.
    let source = crate::archive::open(&cmd.bundle, cmd.repository.as_deref())
        .map_err(CommandError::bundle(&cmd.bundle))?;
    let head = match source.foreign() {
        Some(f) => bundle::InspectionWithFiles {
            metadata: f.head.metadata.clone(),
            k8s: Vec::new(),
        },
        None => bundle::inspect_with_files(
            bundle::open_input(&cmd.bundle).map_err(CommandError::bundle(&cmd.bundle))?,
        )
        .map_err(CommandError::bundle(&cmd.bundle))?,
    };
    let base_signature = head
        .metadata
        .base
        .as_ref()
        .and_then(|b| super::sign::base_trust(&cmd.bundle, b, &cmd.keys));
    let placements = crate::load::placements(&head.metadata, &cmd.target, cmd.mode)?;
    // The cluster's side (kubelet pull secrets, runtime mirror files) takes a username and
    // password; an identity token only works at a token server.
    let cluster_credentials = match &credentials {
        Some(c) if c.is_identity_token() => {
            let wanted = cmd.outputs.rewrite.rewrite.pull_secret.is_some()
                || cmd
                    .outputs
                    .mirror
                    .as_ref()
                    .is_some_and(|m| m.include_credentials);
            if wanted {
                progress.warn(&format!(
                    "the login for {} is an identity token (OAuth2), which pull secrets and mirror files cannot hold: none written (give --username and --password-stdin for them)",
                    cmd.target.host
                ));
            }
            None
        }
        c => c.clone(),
    };
    let access = outputs::TargetAccess {
        target: Some(cmd.target.clone()),
        mode: cmd.mode,
        plain_http: cmd.plain_http,
        insecure_skip_tls_verify: cmd.connect.insecure_skip_tls_verify,
        ca_file: cmd.connect.ca_file.clone(),
        credentials: cluster_credentials,
    };
    let mut outputs_opts = cmd.outputs.clone();
    let rules = &mut outputs_opts.rewrite.rewrite.rules;
    *rules = ImageRules::merged(&head.metadata.image_rules, rules);
    let planned = outputs::plan(&placements, &head.k8s, &access, &outputs_opts)?;
    for m in planned.missing() {
        progress.warn(&format!("{m}: image is not in the bundle; left as it is"));
    }
    for n in planned.notes() {
        progress.warn(&n);
    }
    let opts = LoadOptions {
        bundle: cmd.bundle.clone(),
        target: cmd.target.clone(),
        mode: cmd.mode,
        plain_http: cmd.plain_http,
        connect: cmd.connect.clone(),
        credentials,
        concurrency: cmd.concurrency.max(1),
        chunk_size: cmd.chunk_size,
        state_dir: cmd.state_dir.clone(),
        expected_id: trust.checked.as_ref().map(|c| c.bundle_id.clone()),
        repository: cmd.repository.clone(),
        source: Some(source),
    };
    let s = crate::load::load(&opts, progress).await?;
    // Load names the images from the head it streams; had the file changed in between, the
    // outputs would describe another bundle.
    if s.placements != placements {
        return Err(LoadError::Inconsistent {
            path: cmd.bundle.clone(),
            reason: "the bundle changed while it was being loaded".into(),
        }
        .into());
    }
    let written = planned.write()?;
    Ok(LoadReport {
        report_version: super::REPORT_VERSION,
        registry: cmd.target.host.clone(),
        images: s.images,
        images_unchanged: s.images_unchanged,
        image_list: s
            .placements
            .iter()
            .zip(&s.unchanged)
            .map(|(p, unchanged)| LoadedImage {
                source: p.source.to_string(),
                target: p.target.to_string(),
                digest: p.digest.clone(),
                status: if *unchanged { "unchanged" } else { "pushed" },
            })
            .collect(),
        blobs_uploaded: s.blobs_uploaded,
        bytes_uploaded: s.bytes_uploaded,
        blobs_mounted: s.blobs_mounted,
        blobs_skipped: s.blobs_skipped,
        manifests_pushed: s.manifests_pushed,
        seconds: s.elapsed.as_secs_f64(),
        image_map: planned.image_map.clone(),
        written,
        signature: trust.status,
        base_signature,
    })
}
