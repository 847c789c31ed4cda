//! Registry credentials: the [`Credentials`] type, and the lookup in the files `docker login`
//! and `podman login` write (`config` parses them, `helper` runs credential helpers).
//!
//! Files, first one holding credentials for the registry wins (missing files are skipped):
//! 1. `$REGISTRY_AUTH_FILE` (podman / skopeo / buildah `auth.json`, same format);
//! 2. `$DOCKER_CONFIG/config.json`, or `~/.docker/config.json` when `DOCKER_CONFIG` is unset
//!    (docker never reads both);
//! 3. `$XDG_RUNTIME_DIR/containers/auth.json` (podman's default when `REGISTRY_AUTH_FILE` is unset).
//!
//! Inside a file, as docker does: `credHelpers[host]`, else `credsStore`, else the inline
//! `auths` entry (`identitytoken`, else `auth` = base64 `user:password`, else `username` /
//! `password`). Podman's repository-scoped keys (`quay.io/myorg`) apply to the repositories
//! below them and win over the others when the lookup names a repository. Keys match with or
//! without an `http(s)://` scheme and a trailing `/v1/` or `/v2/`; Docker Hub is
//! `https://index.docker.io/v1/` (also `docker.io`, `index.docker.io`, `registry-1.docker.io`).
//!

mod config;
mod helper;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::reference::Reference;
use config::{normalise_host, Lookup};

/// A username and password (or token). The password never appears in `Debug` output, so a
/// stray `{:?}` in an error or log cannot leak it.
///
/// An identity token (an OAuth2 refresh token: `identitytoken` in `config.json`) is kept as
/// docker's credential helpers hand it over: username [`IDENTITY_TOKEN_USER`], the token as
/// the password. It is only ever sent to a token server, in a `refresh_token` grant.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

/// The username docker's credential helpers answer for an identity token.
pub const IDENTITY_TOKEN_USER: &str = "<token>";

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// An identity token (OAuth2 refresh token).
    pub fn identity_token(token: impl Into<String>) -> Self {
        Credentials::new(IDENTITY_TOKEN_USER, token)
    }

    pub fn is_identity_token(&self) -> bool {
        self.username == IDENTITY_TOKEN_USER
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The key `docker login` uses for Docker Hub, and the server address its helpers get.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("reading credentials file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Syntax errors only: serde_json syntax messages carry a position, never file content.
    #[error("credentials file {} is not valid JSON: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("credentials file {}: {key}: {message}", path.display())]
    Entry {
        path: PathBuf,
        key: String,
        message: String,
    },
    #[error(
        "credentials file {}: the credential helper docker-credential-{helper} ({origin}) is not installed or not on PATH; it holds the credentials for {host}",
        path.display()
    )]
    HelperMissing {
        path: PathBuf,
        helper: String,
        origin: &'static str,
        host: String,
    },
    #[error(
        "credentials file {}: the credential helper docker-credential-{helper} ({origin}) failed for {host}: {message}",
        path.display()
    )]
    Helper {
        path: PathBuf,
        helper: String,
        origin: &'static str,
        host: String,
        message: String,
    },
}

impl DockerConfigError {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        None
    }
}

/// Credentials for `registry_host` (`quay.io`, `127.0.0.1:5000`, `docker.io`) from the
/// standard files, or `None` when no file has any.
pub fn lookup(registry_host: &str) -> Result<Option<Credentials>, DockerConfigError> {
    Lookup::process().find(registry_host, None)
}

/// Like [`lookup`], and also honours podman's repository-scoped entries for `reference`.
pub fn lookup_image(reference: &Reference) -> Result<Option<Credentials>, DockerConfigError> {
    Lookup::process().find(reference.registry(), Some(reference.repository()))
}

/// Credentials for `registry_host` from the one file `path` (which must exist).
pub fn lookup_in(
    path: &Path,
    registry_host: &str,
) -> Result<Option<Credentials>, DockerConfigError> {
    Lookup::process().in_file(path, &normalise_host(registry_host), None)
}

/// The files [`lookup`] reads, in order (some may not exist).
pub fn config_files() -> Vec<PathBuf> {
    Lookup::process().files()
}
