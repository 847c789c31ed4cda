//! Reading `config.json` / `auth.json`: which files, and which entry of a file applies.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::helper::HelperResult;
use super::{Credentials, DockerConfigError, DOCKER_HUB_CONFIG_KEY};
use crate::reference::{DOCKER_HUB, DOCKER_HUB_API};

pub(super) type Env<'e> = &'e dyn Fn(&str) -> Option<OsString>;

pub(super) struct Lookup<'e> {
    pub(super) env: Env<'e>,
}

fn process_env(var: &str) -> Option<OsString> {
    std::env::var_os(var)
}

impl<'e> Lookup<'e> {
    pub(super) fn process() -> Lookup<'static> {
        Lookup { env: &process_env }
    }

    fn var(&self, name: &str) -> Option<OsString> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    pub(super) fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(f) = self.var("REGISTRY_AUTH_FILE") {
            out.push(PathBuf::from(f));
        }
        if let Some(d) = self.var("DOCKER_CONFIG") {
            out.push(PathBuf::from(d).join("config.json"));
        } else if let Some(h) = self.var("HOME") {
            out.push(PathBuf::from(h).join(".docker").join("config.json"));
        }
        if let Some(r) = self.var("XDG_RUNTIME_DIR") {
            out.push(PathBuf::from(r).join("containers").join("auth.json"));
        }
        out
    }

    pub(super) fn find(
        &self,
        host: &str,
        repository: Option<&str>,
    ) -> Result<Option<Credentials>, DockerConfigError> {
        let host = normalise_host(host);
        for file in self.files() {
            if !file.is_file() {
                continue;
            }
            if let Some(c) = self.in_file(&file, &host, repository)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    pub(super) fn in_file(
        &self,
        path: &Path,
        host: &str,
        repository: Option<&str>,
    ) -> Result<Option<Credentials>, DockerConfigError> {
        let text = std::fs::read(path).map_err(|source| DockerConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Value =
            serde_json::from_slice(&text).map_err(|e| DockerConfigError::Parse {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let Value::Object(config) = config else {
            return Err(entry_err(path, "(top level)", "expected a JSON object"));
        };
        let auths = match config.get("auths") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => return Err(entry_err(path, "auths", "expected an object")),
        };

        // 1. Podman's repository-scoped entries, most specific first.
        if let Some(repo) = repository {
            let scoped = auths
                .iter()
                .filter_map(|(k, v)| {
                    let key = ConfigKey::parse(k);
                    (key.host == host && !key.path.is_empty() && is_path_prefix(&key.path, repo))
                        .then_some((key.path.len(), k, v))
                })
                .max_by_key(|(len, _, _)| *len);
            if let Some((_, k, v)) = scoped {
                if let Some(c) = inline(path, k, v)? {
                    return Ok(Some(c));
                }
            }
        }

        // 2. A helper for this registry.
        let server = if host == DOCKER_HUB {
            DOCKER_HUB_CONFIG_KEY.to_string()
        } else {
            host.to_string()
        };
        if let Some(helpers) = config.get("credHelpers") {
            let Value::Object(helpers) = helpers else {
                return Err(entry_err(path, "credHelpers", "expected an object"));
            };
            let found = helpers.iter().find(|(k, _)| {
                let key = ConfigKey::parse(k);
                key.host == host && key.path.is_empty()
            });
            if let Some((k, name)) = found {
                let Value::String(name) = name else {
                    return Err(entry_err(
                        path,
                        &format!("credHelpers.{k}"),
                        "expected a helper name",
                    ));
                };
                return match self.helper(path, name, "credHelpers", host, &server)? {
                    HelperResult::Found(c) => Ok(Some(c)),
                    HelperResult::NotFound => Ok(None),
                    HelperResult::Missing => Err(DockerConfigError::HelperMissing {
                        path: path.to_path_buf(),
                        helper: name.clone(),
                        origin: "credHelpers",
                        host: host.to_string(),
                    }),
                };
            }
        }

        // Host-level inline entries: exact canonical key first, then file order.
        let canonical = server.as_str();
        let mut host_entries: Vec<(&String, &Value)> = auths
            .iter()
            .filter(|(k, _)| {
                let key = ConfigKey::parse(k);
                key.host == host && key.path.is_empty()
            })
            .collect();
        host_entries
            .sort_by_key(|(k, _)| k.as_str() != canonical && k.trim_end_matches('/') != host);

        // 3. The default store.
        if let Some(store) = config.get("credsStore") {
            let Value::String(name) = store else {
                return Err(entry_err(path, "credsStore", "expected a helper name"));
            };
            if !name.is_empty() {
                let mut addresses = vec![server.clone()];
                for (k, _) in &host_entries {
                    if !addresses.contains(k) {
                        addresses.push((*k).clone());
                    }
                }
                for address in &addresses {
                    match self.helper(path, name, "credsStore", host, address)? {
                        HelperResult::Found(c) => return Ok(Some(c)),
                        HelperResult::NotFound => {}
                        // A default store nobody logged in through must not break public pulls;
                        // when `auths` lists the host, the credentials are in that store.
                        HelperResult::Missing if host_entries.is_empty() => break,
                        HelperResult::Missing => {
                            if host_entries
                                .iter()
                                .any(|(k, v)| matches!(inline(path, k, v), Ok(Some(_))))
                            {
                                break;
                            }
                            return Err(DockerConfigError::HelperMissing {
                                path: path.to_path_buf(),
                                helper: name.clone(),
                                origin: "credsStore",
                                host: host.to_string(),
                            });
                        }
                    }
                }
            }
        }

        // 4. Inline entries.
        for (k, v) in host_entries {
            if let Some(c) = inline(path, k, v)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}

pub(super) fn entry_err(path: &Path, key: &str, message: &str) -> DockerConfigError {
    DockerConfigError::Entry {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// An inline `auths` entry: `identitytoken`, else `auth` (base64 `user:password`), else
/// `username` + `password`.
/// `{}` (what `docker login` leaves when a store holds the secret) is `None`.
pub(super) fn inline(
    path: &Path,
    key: &str,
    value: &Value,
) -> Result<Option<Credentials>, DockerConfigError> {
    let what = format!("auths.{key}");
    let Value::Object(entry) = value else {
        return Err(entry_err(path, &what, "expected an object"));
    };
    let text = |k: &str| -> Result<&str, DockerConfigError> {
        match entry.get(k) {
            None | Some(Value::Null) => Ok(""),
            Some(Value::String(s)) => Ok(s),
            Some(_) => Err(entry_err(path, &format!("{what}.{k}"), "expected a string")),
        }
    };
    // docker sends the identity token whenever an entry has one (`docker login` leaves the
    // password empty beside it).
    let identity = text("identitytoken")?;
    if !identity.is_empty() {
        return Ok(Some(Credentials::identity_token(identity)));
    }
    let auth = text("auth")?;
    if !auth.is_empty() {
        let engine = base64::engine::general_purpose::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = engine
            .decode(auth.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                entry_err(
                    path,
                    &format!("{what}.auth"),
                    "is not base64 of user:password",
                )
            })?;
        let Some((user, pass)) = decoded.split_once(':') else {
            return Err(entry_err(
                path,
                &format!("{what}.auth"),
                "does not decode to user:password",
            ));
        };
        if !user.is_empty() && !pass.is_empty() {
            return Ok(Some(Credentials::new(user, pass)));
        }
    }
    let (user, pass) = (text("username")?, text("password")?);
    if !user.is_empty() && !pass.is_empty() {
        return Ok(Some(Credentials::new(user, pass)));
    }
    Ok(None)
}

/// A config key split into normalised host and (podman) repository path.
pub(super) struct ConfigKey {
    pub(super) host: String,
    pub(super) path: String,
}

impl ConfigKey {
    pub(super) fn parse(key: &str) -> ConfigKey {
        let lower = key.to_ascii_lowercase();
        let (rest, had_scheme) = if lower.starts_with("https://") {
            (&key[8..], true)
        } else if lower.starts_with("http://") {
            (&key[7..], true)
        } else {
            (key, false)
        };
        let rest = rest.trim_end_matches('/');
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        // docker reduces URL keys to their host; podman's bare keys may name a repository.
        let path = if had_scheme || path == "v1" || path == "v2" {
            ""
        } else {
            path
        };
        ConfigKey {
            host: normalise_host(host),
            path: path.to_string(),
        }
    }
}

pub(super) fn normalise_host(host: &str) -> String {
    let lower = host.to_ascii_lowercase();
    let h = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .unwrap_or(&lower);
    let h = h.split('/').next().unwrap_or(h);
    if h == "index.docker.io" || h == DOCKER_HUB_API || h == DOCKER_HUB {
        DOCKER_HUB.to_string()
    } else {
        h.to_string()
    }
}

fn is_path_prefix(prefix: &str, repository: &str) -> bool {
    repository == prefix
        || repository
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}
