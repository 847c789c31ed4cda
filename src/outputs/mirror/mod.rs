//! Runtime mirror configuration (format 1, `bundle-spec/MIRRORS.md`): files that send a
//! node's pulls of the *source* names (`docker.io/library/redis:7`) to the target registry,
//! where `load` put the images. Derived from the same (source, target) pairs as the image map,
//! so the two can never disagree.
//!
//! Pure: [`generate`] returns the files and notes as values; only [`MirrorConfig::write`]
//! touches the disk.

mod containerd;
mod k3s;
mod openshift;
mod readme;
mod registries_conf;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::fsutil::{write_atomic, FileError};
use crate::image_map::ImageMapEntry;
use crate::load::Placement;
use crate::naming::{Mode, NamingError, Target};
use crate::reference::Reference;
use crate::registry::credentials::Credentials;

/// The version of the layout and contents of the mirror configuration directory.
pub const MIRROR_FORMAT_VERSION: u32 = 1;

/// How the nodes reach the target registry.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// The target speaks plain HTTP.
    pub plain_http: bool,
    /// TLS without verifying the target's certificate.
    pub insecure_skip_tls_verify: bool,
    /// Where the CA certificate that signed the target's certificate is on the nodes,
    /// written into the files that need an absolute path (containerd `ca`, k3s `ca_file`).
    pub ca_node_path: Option<String>,
    /// The CA certificate itself (PEM): copied into the directory (`ca.crt`, and beside the
    /// files that can refer to it relatively).
    pub ca_pem: Option<Vec<u8>>,
    /// Target credentials, written only when given (files holding them are secret: 0600).
    pub credentials: Option<Credentials>,
}

/// One file of the mirror configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative to the directory, `/`-separated (`containerd/certs.d/docker.io/hosts.toml`).
    pub path: String,
    pub contents: Vec<u8>,
    /// Holds a credential: written with mode 0600.
    pub secret: bool,
}

/// Something a file's format cannot express (or expresses only partly) for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The file (or, when no file could be written, the file that would have been).
    pub file: String,
    /// The source registry (or the target, for connection settings) the note is about.
    pub registry: String,
    pub text: String,
}

/// Where one source registry's repositories landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMapping {
    /// Every repository `R` of the host is at `TARGET/[prefix/]R` (`replace`, `prefix`, and
    /// `flatten` when every repository is one component).
    Whole { prefix: Option<String> },
    /// Repository by repository, source repository -> target repository (`flatten`).
    Repositories(BTreeMap<String, String>),
}

/// A source registry of the bundle and where its images went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRegistry {
    pub host: String,
    pub mapping: HostMapping,
}

impl SourceRegistry {
    /// `TARGET[/prefix]`, what a whole-host mirror points at.
    fn whole_location(&self, target: &str) -> Option<String> {
        match &self.mapping {
            HostMapping::Whole { prefix: Some(p) } => Some(format!("{target}/{p}")),
            HostMapping::Whole { prefix: None } => Some(target.to_string()),
            HostMapping::Repositories(_) => None,
        }
    }
}

/// The generated configuration: files to write and notes on what could not be expressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    pub registries: Vec<SourceRegistry>,
    pub files: Vec<OutputFile>,
    pub notes: Vec<Note>,
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("image {source_ref} is named {actual}, not {expected} as --registry {registry} --mode {mode} names it")]
    NotFromTarget {
        source_ref: String,
        actual: String,
        expected: String,
        registry: String,
        mode: Mode,
    },
    #[error("image map entries name no target registry")]
    Empty,
    #[error("images are in several target registries ({a}, {b})")]
    SeveralTargets { a: String, b: String },
    #[error("no --registry and --mode reproduce the target name of {source_ref} ({actual}) and every other image's")]
    NoTarget { source_ref: String, actual: String },
    #[error(transparent)]
    Naming(#[from] NamingError),
}

impl MirrorError {
    pub fn hint(&self) -> Option<String> {
        match self {
            MirrorError::NotFromTarget { .. } | MirrorError::NoTarget { .. } => {
                Some("the image map was written by a load with another --registry or --mode".into())
            }
            _ => None,
        }
    }
}

/// (source, target) pairs of `load`'s placements.
pub fn pairs_of_placements(placements: &[Placement]) -> Vec<(&Reference, &Reference)> {
    placements.iter().map(|p| (&p.source, &p.target)).collect()
}

/// (source, target) pairs of an image map.
pub fn pairs_of_image_map(entries: &[ImageMapEntry]) -> Vec<(&Reference, &Reference)> {
    entries.iter().map(|e| (&e.source, &e.target)).collect()
}

/// The repository prefix `target`/`mode` put before `source`'s repository, if the name keeps
/// the repository whole (always in `replace` and `prefix`).
fn prefix_of(target_repo: &str, source_repo: &str) -> Option<Option<String>> {
    if target_repo == source_repo {
        return Some(None);
    }
    target_repo
        .strip_suffix(source_repo)
        .and_then(|p| p.strip_suffix('/'))
        .map(|p| Some(p.to_string()))
}

/// Which `--registry`/`--mode` produced every target name of `pairs` (for an image map,
/// which records neither). Where several do (only single-component repositories, or only one
/// source registry), they produce the same files.
pub fn infer_target(pairs: &[(&Reference, &Reference)]) -> Result<(Target, Mode), MirrorError> {
    let (s0, t0) = pairs.first().ok_or(MirrorError::Empty)?;
    let host = t0.registry();
    if let Some((_, t)) = pairs.iter().find(|(_, t)| t.registry() != host) {
        return Err(MirrorError::SeveralTargets {
            a: host.to_string(),
            b: t.registry().to_string(),
        });
    }
    // Candidate paths from the first image: whatever precedes the part each mode keeps.
    let repo = t0.repository();
    let mut candidates = Vec::new();
    for mode in [Mode::Replace, Mode::Prefix, Mode::Flatten] {
        let bare = Target {
            host: host.to_string(),
            path: None,
        };
        let kept = bare.name_for(s0, mode)?.repository().to_string();
        if let Some(path) = prefix_of(repo, &kept) {
            candidates.push((
                Target {
                    host: host.to_string(),
                    path,
                },
                mode,
            ));
        }
    }
    candidates
        .into_iter()
        .find(|(target, mode)| {
            pairs.iter().all(|(s, t)| {
                target
                    .name_for(s, *mode)
                    .is_ok_and(|n| n.repository() == t.repository())
            })
        })
        .ok_or_else(|| MirrorError::NoTarget {
            source_ref: s0.to_string(),
            actual: t0.to_string(),
        })
}

/// Where each source registry's repositories went, checked against `target`/`mode`: every
/// pair's target must be what naming gives its source.
pub fn source_registries(
    target: &Target,
    mode: Mode,
    pairs: &[(&Reference, &Reference)],
) -> Result<Vec<SourceRegistry>, MirrorError> {
    let mut by_host: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for (source, actual) in pairs {
        let expected = target.name_for(source, mode)?;
        if expected.name() != actual.name() {
            return Err(MirrorError::NotFromTarget {
                source_ref: source.to_string(),
                actual: actual.to_string(),
                expected: expected.to_string(),
                registry: match &target.path {
                    Some(p) => format!("{}/{p}", target.host),
                    None => target.host.clone(),
                },
                mode,
            });
        }
        by_host
            .entry(source.registry())
            .or_default()
            .insert(source.repository().into(), actual.repository().into());
    }
    Ok(by_host
        .into_iter()
        .map(|(host, repos)| {
            // flatten keeps a repository whole only when it is one component; a host-wide
            // mirror is exact then, since flatten never makes a name with more components.
            let whole = mode != Mode::Flatten || repos.keys().all(|r| !r.contains('/'));
            let prefixes: Vec<Option<Option<String>>> =
                repos.iter().map(|(s, t)| prefix_of(t, s)).collect();
            let mapping = match prefixes.first() {
                Some(Some(p)) if whole && prefixes.iter().all(|q| q.as_ref() == Some(p)) => {
                    HostMapping::Whole { prefix: p.clone() }
                }
                _ => HostMapping::Repositories(repos),
            };
            SourceRegistry {
                host: host.to_string(),
                mapping,
            }
        })
        .collect())
}

/// What every generator sees.
pub(crate) struct Plan<'a> {
    pub target: &'a Target,
    pub mode: Mode,
    pub conn: &'a Connection,
    pub registries: &'a [SourceRegistry],
}

impl Plan<'_> {
    /// The target's `HOST[:PORT]`.
    pub fn host(&self) -> &str {
        &self.target.host
    }
    pub fn scheme(&self) -> &'static str {
        if self.conn.plain_http {
            "http"
        } else {
            "https"
        }
    }
    /// Skip certificate checks (only meaningful over TLS).
    pub fn skip_verify(&self) -> bool {
        !self.conn.plain_http && self.conn.insecure_skip_tls_verify
    }
    /// The registries that need a redirect (a source that is the target itself, under the
    /// same names, needs none).
    pub fn redirected(&self) -> impl Iterator<Item = &SourceRegistry> {
        self.registries.iter().filter(|r| {
            !(r.host == self.target.host && r.mapping == HostMapping::Whole { prefix: None })
        })
    }
}

/// Generates every file for `pairs` (from [`pairs_of_placements`] or [`pairs_of_image_map`])
/// loaded into `target` with `mode`.
pub fn generate(
    target: &Target,
    mode: Mode,
    pairs: &[(&Reference, &Reference)],
    conn: &Connection,
) -> Result<MirrorConfig, MirrorError> {
    let registries = source_registries(target, mode, pairs)?;
    let plan = Plan {
        target,
        mode,
        conn,
        registries: &registries,
    };
    let mut out = Output::default();
    if let Some(pem) = &conn.ca_pem {
        out.file("ca.crt", pem.clone(), false);
    }
    containerd::generate(&plan, &mut out);
    k3s::generate(&plan, &mut out);
    registries_conf::generate(&plan, &mut out);
    openshift::generate(&plan, &mut out);
    let readme = readme::generate(&plan, &out);
    out.file("README.md", readme.into_bytes(), false);
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(MirrorConfig {
        registries,
        files: out.files,
        notes: out.notes,
    })
}

/// Files and notes as the generators add them.
#[derive(Default)]
pub(crate) struct Output {
    pub files: Vec<OutputFile>,
    pub notes: Vec<Note>,
}

impl Output {
    pub fn file(&mut self, path: &str, contents: Vec<u8>, secret: bool) {
        self.files.push(OutputFile {
            path: path.to_string(),
            contents,
            secret,
        });
    }
    pub fn note(&mut self, file: &str, registry: &str, text: String) {
        self.notes.push(Note {
            file: file.to_string(),
            registry: registry.to_string(),
            text,
        });
    }
}

/// A double-quoted string as both TOML basic strings and YAML double-quoted scalars read it
/// (JSON's escapes are a subset of both).
pub(crate) fn quote(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// The first line of every generated file.
pub(crate) fn header(comment: &str, plan: &Plan) -> String {
    let to = match &plan.target.path {
        Some(p) => format!("{}/{p}", plan.target.host),
        None => plan.target.host.clone(),
    };
    format!(
        "{comment} airgap mirror configuration, format {MIRROR_FORMAT_VERSION}: pulls of the \
         bundle's source names go to {to} (--mode {}).\n",
        plan.mode
    )
}

impl MirrorConfig {
    pub fn file(&self, path: &str) -> Option<&OutputFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Writes every file under `dir` (created if missing), each atomically; secret files with
    /// mode 0600, the others 0644. Returns the paths written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, FileError> {
        let mut written = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let dest = f.path.split('/').fold(dir.to_path_buf(), |p, c| p.join(c));
            let parent = crate::fsutil::parent_dir(&dest);
            std::fs::create_dir_all(parent).map_err(FileError::with("creating", parent))?;
            let mode = if f.secret { 0o600 } else { 0o644 };
            written.push(write_atomic(&dest, &f.contents, mode)?);
        }
        Ok(written)
    }
}
