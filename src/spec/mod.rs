//! The `airgap.yaml` spec file: which images to pack, from where, with which credentials,
//! for which platforms, plus the Kubernetes manifests carried in the bundle.
//!
//! The format is documented for users in `bundle-spec/SPEC.md` (JSON Schema:
//! `bundle-spec/airgap.schema.json`). Every error names `file:line:col` (1-based).
//!
//! ```text
//! sources:   { NAME: {registry: host[:port][/prefix], auth: {usernameEnv, passwordEnv}} }
//! images:    [ {source?, name, tag?, digest?} | {image: REF} ]
//! charts:    [ {oci, version} | {repo, name, version} | {path, name?, version?} ] (optional)
//! platforms: [ os/arch[/variant] ]          (optional)
//! manifests: [ path | dir | glob ]          (optional)
//! registries: { host: http(s)://mirror }    (optional)
//! imageFields: [ {kind, group?, path, tag?, pullPolicy?, pullSecrets?} ] (optional)
//! relatedImageEnv: [ PATTERN ]              (optional, default [RELATED_IMAGE_*])
//! imagesFromManifests: bool                 (optional; then images: may be left out)
//! version: 1                                (optional)
//! ```

mod charts;
mod manifests;
mod parse;
mod rules;
#[cfg(test)]
mod tests;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::image_rules::ImageRules;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::registry::credentials::{self, Credentials, DockerConfigError};

pub use charts::{chart_tag, CHART_SOURCE, LOCAL_CHART_HOST};
pub use manifests::ManifestFile;

/// The only spec version this airgap understands.
pub const SPEC_VERSION: i64 = 1;
/// The built-in source: Docker Hub normalisation of `name` (`redis` → `docker.io/library/redis`).
pub const PUBLIC_SOURCE: &str = "public";
/// [`ImageEntry::source`] of entries written as `image: REF`.
pub const IMAGE_SOURCE: &str = "image";
/// [`ImageEntry::source`] of entries written with `archive: PATH`.
pub const ARCHIVE_SOURCE: &str = "archive";

/// A parsed and validated spec file.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The spec file as given (relative paths in `manifests` are relative to its directory).
    pub path: PathBuf,
    /// The sources declared under `sources:`, in file order (`public` is built in, not listed).
    pub sources: Vec<Source>,
    /// The images, in file order, duplicates removed (see [`Spec::warnings`]).
    pub images: Vec<ImageEntry>,
    /// `platforms:`; empty means every platform each image has.
    pub platforms: Vec<Platform>,
    /// `manifests:` patterns; expand them with [`Spec::manifest_files`].
    pub manifests: Vec<ManifestSource>,
    /// `registries:`: requests for a registry host (normalised, `docker.io` for Docker Hub)
    /// go to this URL; its scheme says HTTP or HTTPS.
    pub mirrors: BTreeMap<String, url::Url>,
    /// `imageFields:` and `relatedImageEnv:`: where the manifests hold images besides pod specs.
    pub rules: ImageRules,
    /// `imagesFromManifests: true` (where it is written): pack adds every image the manifests
    /// use to `images`.
    pub images_from_manifests: Option<Location>,
    /// Non-fatal problems, each `FILE:LINE:COL: message` (print them as `warning: …`).
    pub warnings: Vec<String>,
}

/// A named source from `sources:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    /// The registry host (with port), Docker Hub spelled `docker.io`.
    pub host: String,
    /// The path prefix inside the registry (`myapp` for `registry.replicated.com/myapp`), or "".
    pub prefix: String,
    /// Where the credentials come from, if the source has `auth:`. Never the secrets.
    pub auth: Option<AuthEnv>,
    pub line: usize,
    pub column: usize,
}

/// `auth: {usernameEnv, passwordEnv}`: the names of the environment variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEnv {
    pub username_env: String,
    pub password_env: String,
    /// Where each variable name is written, for errors about the variables.
    pub username_at: Location,
    pub password_at: Location,
}

impl Source {
    /// `host[/prefix]`, as the image names under this source start.
    pub fn registry(&self) -> String {
        if self.prefix.is_empty() {
            self.host.clone()
        } else {
            format!("{}/{}", self.host, self.prefix)
        }
    }

    /// Whether `reference` lives under this source's host and path prefix.
    fn contains(&self, reference: &Reference) -> bool {
        reference.registry() == self.host
            && (self.prefix.is_empty()
                || reference.repository() == self.prefix
                || reference
                    .repository()
                    .strip_prefix(&self.prefix)
                    .is_some_and(|rest| rest.starts_with('/')))
    }
}

/// One image to pack.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// Normalised (`docker.io/library/redis:7`); an implied `latest` tag is made explicit,
    /// a digest-only reference stays digest-only.
    pub reference: Reference,
    /// The source name the entry was written with: a `sources:` name, `public`, or `image`
    /// for `image: REF` entries.
    pub source: String,
    /// `archive:`: the image comes from this OCI layout or archive, not from a registry.
    pub archive: Option<ArchiveSource>,
    /// Set for a `charts:` entry.
    pub chart: Option<ChartSource>,
    /// Credentials from the `auth:` of the matching source (see SPEC.md), if any.
    pub credentials: Option<Credentials>,
    /// The source whose `auth:` gave [`ImageEntry::credentials`].
    pub credentials_source: Option<String>,
    pub line: usize,
    pub column: usize,
}

/// `archive: PATH` (and `ref:`) of an image entry: an OCI layout (directory or tar, plain,
/// gzip or zstd), `docker save` output, or a Hauler or Zarf archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSource {
    /// As written; relative paths are relative to the spec's directory ([`Spec::base_dir`]).
    pub path: PathBuf,
    /// `ref:`: which of the archive's images (its name there, or a bare tag); needed only
    /// when the archive holds more than one.
    pub select: Option<String>,
    pub at: Location,
}

/// Where a `charts:` entry's chart comes from, and where the entry is in the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSource {
    pub source: ChartWhere,
    pub at: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChartWhere {
    /// `oci:`: already an OCI artifact in a registry; packed like an image.
    Oci,
    /// `repo:` + `name:` + `version:`: a classic chart repository (`index.yaml` + `.tgz`).
    Repo {
        url: url::Url,
        name: String,
        version: String,
    },
    /// `path:`: a chart package on disk (relative to the spec's directory); a `.prov` file
    /// beside it is carried too. `name`/`version` as the spec gives them or the file name
    /// implies; pack checks them against its Chart.yaml.
    Path {
        path: PathBuf,
        name: String,
        version: String,
    },
}

impl ChartSource {
    /// Pack makes the artifact itself (nothing is pulled from a registry).
    pub fn is_package(&self) -> bool {
        !matches!(self.source, ChartWhere::Oci)
    }
}

impl ImageEntry {
    /// The credentials to pull this image with: the spec's own, else those of the docker /
    /// podman credential files and helpers for the image's registry (see [`credentials`]).
    /// None for an image from an archive: nothing is pulled.
    pub fn credentials_or_docker_config(&self) -> Result<Option<Credentials>, DockerConfigError> {
        if self.archive.is_some() || self.chart.as_ref().is_some_and(|c| c.is_package()) {
            return Ok(None);
        }
        match &self.credentials {
            Some(c) => Ok(Some(c.clone())),
            None => credentials::lookup_image(&self.reference),
        }
    }
}

/// One entry of `manifests:`: a file, a directory or a glob, relative to the spec's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSource {
    pub pattern: String,
    pub line: usize,
    pub column: usize,
}

/// A position in the spec file. Displays as `FILE:LINE:COL`, both 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path.display(), self.line, self.column)
    }
}

/// What kind of mistake a [`SpecError::Invalid`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A key the format does not have.
    UnknownKey,
    /// A value of the wrong YAML type (`images: 5`).
    WrongType,
    /// A required key is missing.
    Missing,
    /// `source:` names no source.
    UnknownSource,
    /// An image name, tag, digest or reference that does not parse.
    BadReference,
    /// A platform that is not `os/arch[/variant]`.
    BadPlatform,
    /// `images:` is empty.
    EmptyImages,
    /// `version:` is not 1.
    UnsupportedVersion,
    /// Keys that cannot be used together (`image:` with `name:`).
    Conflict,
    /// Any other bad value (registry, URL, source name, pattern…).
    BadValue,
}

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("{}: cannot read the spec file: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: invalid YAML: {message}")]
    Yaml { at: Location, message: String },
    #[error("{at}: {message}")]
    Invalid {
        at: Location,
        kind: ErrorKind,
        message: String,
    },
    #[error(
        "{at}: environment variable {var} is not set or is empty (auth.{field} of source `{source_name}`)"
    )]
    MissingEnv {
        at: Location,
        var: String,
        source_name: String,
        field: &'static str,
    },
    #[error("{at}: {message}")]
    Manifests { at: Location, message: String },
}

impl SpecError {
    /// Where in the spec file the problem is (every variant but [`SpecError::Read`]).
    pub fn location(&self) -> Option<&Location> {
        match self {
            SpecError::Read { .. } => None,
            SpecError::Yaml { at, .. }
            | SpecError::Invalid { at, .. }
            | SpecError::MissingEnv { at, .. }
            | SpecError::Manifests { at, .. } => Some(at),
        }
    }

    /// The kind of an [`SpecError::Invalid`] error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            SpecError::Invalid { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}

impl Spec {
    /// Reads and parses the spec at `path`; credentials come from the process environment.
    pub fn load(path: &Path) -> Result<Spec, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Spec::parse(&text, path, &|var| std::env::var(var).ok())
    }

    /// Parses spec `text`; `path` is used in messages and to resolve `manifests:`;
    /// `env` looks up the environment variables named by `auth:`.
    pub fn parse(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Spec, SpecError> {
        parse::parse(text, path, env)
    }

    /// The directory `manifests:` patterns are relative to.
    pub fn base_dir(&self) -> PathBuf {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// Expands `manifests:` into YAML files, sorted by relative name, each once.
    /// A pattern that matches nothing is an error.
    pub fn manifest_files(&self) -> Result<Vec<ManifestFile>, SpecError> {
        manifests::expand_all(&self.manifests, &self.path, &self.base_dir())
    }

    /// The entry for an image found in the manifests (`imagesFromManifests`): the reference
    /// form, with the credentials of the declared source that contains it, as for `image:`
    /// entries (see SPEC.md, Credentials). `env` looks up the variables `auth:` names.
    pub fn found_image(
        &self,
        reference: Reference,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ImageEntry, SpecError> {
        let at = self.images_from_manifests.clone().unwrap_or(Location {
            path: self.path.clone(),
            line: 1,
            column: 1,
        });
        let source = self
            .sources
            .iter()
            .rev()
            .filter(|s| s.auth.is_some() && s.contains(&reference))
            .max_by_key(|s| s.prefix.len())
            .or_else(|| {
                self.sources
                    .iter()
                    .find(|s| s.auth.is_some() && s.host == reference.registry())
            });
        let mut credentials = None;
        if let Some(src) = source {
            let auth = src.auth.as_ref().expect("filtered on auth");
            let read = |var: &str, at: &Location, field: &'static str| {
                env(var)
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| SpecError::MissingEnv {
                        at: at.clone(),
                        var: var.to_string(),
                        source_name: src.name.clone(),
                        field,
                    })
            };
            let user = read(&auth.username_env, &auth.username_at, "usernameEnv")?;
            let pass = read(&auth.password_env, &auth.password_at, "passwordEnv")?;
            credentials = Some(Credentials::new(user, pass));
        }
        Ok(ImageEntry {
            reference: reference.with_default_tag(),
            source: IMAGE_SOURCE.to_string(),
            archive: None,
            chart: None,
            credentials,
            credentials_source: source.map(|s| s.name.clone()),
            line: at.line,
            column: at.column,
        })
    }

    /// The source named `name`, if declared under `sources:`.
    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }
}
