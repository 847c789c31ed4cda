//! Registry credentials from the files `docker login` and `podman login` write.
//!
//! Files, first one holding credentials for the registry wins (missing files are skipped):
//! 1. `$REGISTRY_AUTH_FILE` (podman / skopeo / buildah `auth.json`, same format);
//! 2. `$DOCKER_CONFIG/config.json`, or `~/.docker/config.json` when `DOCKER_CONFIG` is unset
//!    (docker never reads both);
//! 3. `$XDG_RUNTIME_DIR/containers/auth.json` (podman's default when `REGISTRY_AUTH_FILE` is unset).
//!
//! Inside a file, as docker does: `credHelpers[host]`, else `credsStore`, else the inline
//! `auths` entry (`auth` = base64 `user:password`, or `username` / `password`). Podman's
//! repository-scoped keys (`quay.io/myorg`) apply to the repositories below them and win over
//! the others when the lookup names a repository. Keys match with or without an `http(s)://`
//! scheme and a trailing `/v1/` or `/v2/`; Docker Hub is `https://index.docker.io/v1/` (also
//! `docker.io`, `index.docker.io`, `registry-1.docker.io`).
//!
//! Errors name the file and the key, never a secret.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use crate::credentials::Credentials;
use crate::reference::{Reference, DOCKER_HUB, DOCKER_HUB_API};

/// The key `docker login` uses for Docker Hub, and the server address its helpers get.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

#[derive(Debug, thiserror::Error)]
pub enum DockerConfigError {
    #[error("cannot read credentials file {}: {source}", path.display())]
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
    #[error(
        "credentials file {}: the login for {host} is an identity token (OAuth), which airgap cannot use; give the source an `auth:` with a username and password or access token in the spec",
        path.display()
    )]
    IdentityToken { path: PathBuf, host: String },
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

type Env<'e> = &'e dyn Fn(&str) -> Option<OsString>;

struct Lookup<'e> {
    env: Env<'e>,
}

fn process_env(var: &str) -> Option<OsString> {
    std::env::var_os(var)
}

impl<'e> Lookup<'e> {
    fn process() -> Lookup<'static> {
        Lookup { env: &process_env }
    }

    fn var(&self, name: &str) -> Option<OsString> {
        (self.env)(name).filter(|v| !v.is_empty())
    }

    fn files(&self) -> Vec<PathBuf> {
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

    fn find(
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

    fn in_file(
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
                if let Some(c) = inline(path, k, v, host)? {
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
                                .any(|(k, v)| matches!(inline(path, k, v, host), Ok(Some(_))))
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
            if let Some(c) = inline(path, k, v, host)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    fn helper(
        &self,
        path: &Path,
        name: &str,
        origin: &'static str,
        host: &str,
        server: &str,
    ) -> Result<HelperResult, DockerConfigError> {
        let fail = |message: String| DockerConfigError::Helper {
            path: path.to_path_buf(),
            helper: name.to_string(),
            origin,
            host: host.to_string(),
            message,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(entry_err(
                path,
                origin,
                &format!("{name:?} is not a credential helper name"),
            ));
        }
        let mut cmd = Command::new(format!("docker-credential-{name}"));
        cmd.arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(p) = (self.env)("PATH") {
            cmd.env("PATH", p);
        }
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HelperResult::Missing),
            Err(e) => return Err(fail(format!("cannot run it: {e}"))),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading closes the pipe: its exit status tells.
            let _ = stdin.write_all(server.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("cannot run it: {e}")))?;
        if !out.status.success() {
            let text = format!(
                "{} {}",
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            let text = text.trim();
            if text.to_ascii_lowercase().contains("credentials not found") {
                return Ok(HelperResult::NotFound);
            }
            let mut message: String = text.chars().take(300).collect();
            if message.is_empty() {
                message = format!("it exited with {}", out.status);
            }
            return Err(fail(message));
        }
        let reply: Value = serde_json::from_slice(&out.stdout)
            .map_err(|_| fail("its answer is not the expected JSON".into()))?;
        let field = |k: &str| {
            reply
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let (user, secret) = (field("Username"), field("Secret"));
        if user == "<token>" {
            return Err(DockerConfigError::IdentityToken {
                path: path.to_path_buf(),
                host: host.to_string(),
            });
        }
        if secret.is_empty() {
            return Ok(HelperResult::NotFound);
        }
        Ok(HelperResult::Found(Credentials::new(user, secret)))
    }
}

enum HelperResult {
    Found(Credentials),
    NotFound,
    /// The helper program does not exist.
    Missing,
}

fn entry_err(path: &Path, key: &str, message: &str) -> DockerConfigError {
    DockerConfigError::Entry {
        path: path.to_path_buf(),
        key: key.to_string(),
        message: message.to_string(),
    }
}

/// An inline `auths` entry: `auth` (base64 `user:password`) or `username` + `password`.
/// `{}` (what `docker login` leaves when a store holds the secret) is `None`.
fn inline(
    path: &Path,
    key: &str,
    value: &Value,
    host: &str,
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
    if !text("identitytoken")?.is_empty() {
        return Err(DockerConfigError::IdentityToken {
            path: path.to_path_buf(),
            host: host.to_string(),
        });
    }
    Ok(None)
}

/// A config key split into normalised host and (podman) repository path.
struct ConfigKey {
    host: String,
    path: String,
}

impl ConfigKey {
    fn parse(key: &str) -> ConfigKey {
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

fn normalise_host(host: &str) -> String {
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

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Runs a lookup with exactly `vars` as the environment.
    fn with_env<T>(vars: &[(&str, &Path)], f: impl FnOnce(&Lookup) -> T) -> T {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
            .collect();
        let env = move |k: &str| map.get(k).cloned();
        f(&Lookup { env: &env })
    }

    /// `dir` first, then the system directories the fake helpers' `cat` lives in.
    fn path_with(dir: &Path) -> PathBuf {
        PathBuf::from(format!("{}:/usr/bin:/bin", dir.display()))
    }

    fn creds(user: &str, pass: &str) -> Option<Credentials> {
        Some(Credentials::new(user, pass))
    }

    /// A fake `docker-credential-NAME` in `dir` answering for `server` only.
    fn fake_helper(dir: &Path, name: &str, server: &str, user: &str, secret: &str) {
        let script = format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nserver=$(cat)\n\
             if [ \"$server\" = '{server}' ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$server\"\n\
             else\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n"
        );
        let p = write(dir, &format!("docker-credential-{name}"), &script);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn inline_auth_and_key_spellings() {
        let d = tempfile::tempdir().unwrap();
        let cfg = write(
            d.path(),
            "config.json",
            &format!(
                r#"{{"auths": {{
                    "https://index.docker.io/v1/": {{"auth": "{}"}},
                    "quay.io": {{"auth": "{}"}},
                    "http://127.0.0.1:5000/v2/": {{"username": "u3", "password": "p3"}},
                    "https://ghcr.io": {{"auth": "{}"}},
                    "registry.example.com/v1/": {{"auth": "{}"}}
                }}}}"#,
                b64("hubuser:hub:pass"),
                b64("quser:qpass"),
                b64("g:h"),
                // no padding: docker accepts it
                b64("ex:ample").trim_end_matches('=')
            ),
        );
        with_env(&[], |l| {
            let get = |h: &str| l.in_file(&cfg, &normalise_host(h), None).unwrap();
            assert_eq!(get("docker.io"), creds("hubuser", "hub:pass"));
            assert_eq!(get("index.docker.io"), creds("hubuser", "hub:pass"));
            assert_eq!(get("registry-1.docker.io"), creds("hubuser", "hub:pass"));
            assert_eq!(get("quay.io"), creds("quser", "qpass"));
            assert_eq!(get("127.0.0.1:5000"), creds("u3", "p3"));
            assert_eq!(get("ghcr.io"), creds("g", "h"));
            assert_eq!(get("registry.example.com"), creds("ex", "ample"));
            assert_eq!(get("gcr.io"), None);
            assert_eq!(get("127.0.0.1:5001"), None);
        });
    }

    #[test]
    fn files_in_order_and_docker_config_replaces_home() {
        let d = tempfile::tempdir().unwrap();
        let home = d.path().join("home");
        let dc = d.path().join("dc");
        let authfile = write(
            d.path(),
            "auth.json",
            &format!(
                r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}}}}"#,
                b64("podman:1")
            ),
        );
        write(
            &home,
            ".docker/config.json",
            &format!(
                r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "ghcr.io": {{"auth": "{}"}}}}}}"#,
                b64("home:1"),
                b64("home:2")
            ),
        );
        write(
            &dc,
            "config.json",
            &format!(
                r#"{{"auths": {{"gcr.io": {{"auth": "{}"}}}}}}"#,
                b64("dc:1")
            ),
        );
        with_env(&[("HOME", &home), ("REGISTRY_AUTH_FILE", &authfile)], |l| {
            assert_eq!(l.find("quay.io", None).unwrap(), creds("podman", "1"));
            assert_eq!(l.find("ghcr.io", None).unwrap(), creds("home", "2"));
        });
        with_env(&[("HOME", &home), ("DOCKER_CONFIG", &dc)], |l| {
            assert_eq!(l.find("gcr.io", None).unwrap(), creds("dc", "1"));
            assert_eq!(
                l.find("ghcr.io", None).unwrap(),
                None,
                "DOCKER_CONFIG replaces ~/.docker"
            );
        });
        // A missing file is skipped.
        let missing = d.path().join("nope.json");
        with_env(&[("HOME", &home), ("REGISTRY_AUTH_FILE", &missing)], |l| {
            assert_eq!(l.find("quay.io", None).unwrap(), creds("home", "1"));
        });
    }

    #[test]
    fn podman_repository_scoped_keys() {
        let d = tempfile::tempdir().unwrap();
        let cfg = write(
            d.path(),
            "auth.json",
            &format!(
                r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "quay.io/org": {{"auth": "{}"}}, "quay.io/org/team": {{"auth": "{}"}}}}}}"#,
                b64("host:1"),
                b64("org:1"),
                b64("team:1")
            ),
        );
        with_env(&[("REGISTRY_AUTH_FILE", &cfg)], |l| {
            assert_eq!(
                l.find("quay.io", Some("org/team/app")).unwrap(),
                creds("team", "1")
            );
            assert_eq!(
                l.find("quay.io", Some("org/app")).unwrap(),
                creds("org", "1")
            );
            assert_eq!(
                l.find("quay.io", Some("organisation/app")).unwrap(),
                creds("host", "1")
            );
            assert_eq!(l.find("quay.io", None).unwrap(), creds("host", "1"));
        });
    }

    #[test]
    fn cred_helpers_and_store() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        fake_helper(&bin, "fake", "quay.io", "helperuser", "helpersecret");
        fake_helper(&bin, "store", DOCKER_HUB_CONFIG_KEY, "hubstore", "s1");
        let cfg = write(
            d.path(),
            "config.json",
            &format!(
                r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "https://index.docker.io/v1/": {{}}, "gcr.io": {{"auth": "{}"}}}},
                    "credHelpers": {{"quay.io": "fake", "ghcr.io": "fake"}},
                    "credsStore": "store"}}"#,
                b64("inline:ignored"),
                b64("inline:gcr")
            ),
        );
        with_env(&[("PATH", &path_with(&bin))], |l| {
            let get = |h: &str| l.in_file(&cfg, &normalise_host(h), None);
            // credHelpers beats the inline entry
            assert_eq!(get("quay.io").unwrap(), creds("helperuser", "helpersecret"));
            // the helper knows nothing for ghcr.io: not found, no error
            assert_eq!(get("ghcr.io").unwrap(), None);
            // credsStore for Docker Hub, asked with docker's key
            assert_eq!(get("docker.io").unwrap(), creds("hubstore", "s1"));
            // the store has nothing for gcr.io: the inline entry is used
            assert_eq!(get("gcr.io").unwrap(), creds("inline", "gcr"));
        });
    }

    #[test]
    fn missing_helpers() {
        let d = tempfile::tempdir().unwrap();
        let empty_bin = d.path().join("emptybin");
        std::fs::create_dir_all(&empty_bin).unwrap();
        let cfg = write(
            d.path(),
            "config.json",
            r#"{"auths": {"quay.io": {}}, "credHelpers": {"gcr.io": "gone"}, "credsStore": "desktop"}"#,
        );
        with_env(&[("PATH", &empty_bin)], |l| {
            let get = |h: &str| l.in_file(&cfg, h, None);
            // A named helper that is not installed is an error naming the helper and the file.
            let e = get("gcr.io").unwrap_err().to_string();
            assert!(
                e.contains("docker-credential-gone") && e.contains("config.json"),
                "{e}"
            );
            // The default store is missing, and quay.io was logged in through it: error.
            let e = get("quay.io").unwrap_err().to_string();
            assert!(
                e.contains("docker-credential-desktop") && e.contains("credsStore"),
                "{e}"
            );
            // A registry nobody logged in to: a missing default store is no error.
            assert_eq!(get("registry.example.com").unwrap(), None);
        });
    }

    #[test]
    fn helper_failure_and_identity_token() {
        let d = tempfile::tempdir().unwrap();
        let bin = d.path().join("bin");
        let p = write(
            &bin,
            "docker-credential-broken",
            "#!/bin/sh\ncat >/dev/null\necho 'keychain locked' >&2\nexit 1\n",
        );
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        fake_helper(&bin, "oauth", "quay.io", "<token>", "refresh");
        let cfg = write(
            d.path(),
            "config.json",
            r#"{"credHelpers": {"ghcr.io": "broken", "quay.io": "oauth"},
                "auths": {"gcr.io": {"identitytoken": "tok"}}}"#,
        );
        with_env(&[("PATH", &path_with(&bin))], |l| {
            let e = l.in_file(&cfg, "ghcr.io", None).unwrap_err().to_string();
            assert!(
                e.contains("keychain locked") && e.contains("docker-credential-broken"),
                "{e}"
            );
            let e = l.in_file(&cfg, "quay.io", None).unwrap_err();
            assert!(matches!(e, DockerConfigError::IdentityToken { .. }), "{e}");
            assert!(!e.to_string().contains("refresh"), "{e}");
            let e = l.in_file(&cfg, "gcr.io", None).unwrap_err();
            assert!(matches!(e, DockerConfigError::IdentityToken { .. }), "{e}");
            assert!(!e.to_string().contains("tok\""), "{e}");
        });
    }

    #[test]
    fn unsafe_helper_names_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let cfg = write(d.path(), "config.json", r#"{"credsStore": "../../bin/sh"}"#);
        with_env(&[], |l| {
            let e = l.in_file(&cfg, "quay.io", None).unwrap_err().to_string();
            assert!(e.contains("not a credential helper name"), "{e}");
        });
    }

    #[test]
    fn errors_name_the_file_and_never_the_secret() {
        let d = tempfile::tempdir().unwrap();
        let bad_json = write(
            d.path(),
            "broken.json",
            r#"{"auths": {"quay.io": {"auth": "c2VjcmV0"}"#,
        );
        let e = lookup_in(&bad_json, "quay.io").unwrap_err().to_string();
        assert!(e.contains("broken.json"), "{e}");
        assert!(!e.contains("c2VjcmV0"), "{e}");

        let bad_b64 = write(
            d.path(),
            "b64.json",
            r#"{"auths": {"quay.io": {"auth": "%%%hunter2%%%"}}}"#,
        );
        let e = lookup_in(&bad_b64, "quay.io").unwrap_err().to_string();
        assert!(
            e.contains("b64.json") && e.contains("auths.quay.io.auth"),
            "{e}"
        );
        assert!(!e.contains("hunter2"), "{e}");

        let no_colon = write(
            d.path(),
            "nocolon.json",
            &format!(
                r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}}}}"#,
                b64("hunter2")
            ),
        );
        let e = lookup_in(&no_colon, "quay.io").unwrap_err().to_string();
        assert!(e.contains("user:password") && !e.contains("hunter2"), "{e}");

        let wrong_type = write(
            d.path(),
            "type.json",
            r#"{"auths": {"quay.io": "hunter2"}}"#,
        );
        let e = lookup_in(&wrong_type, "quay.io").unwrap_err().to_string();
        assert!(e.contains("type.json") && !e.contains("hunter2"), "{e}");

        let e = lookup_in(&d.path().join("absent.json"), "quay.io")
            .unwrap_err()
            .to_string();
        assert!(e.contains("absent.json"), "{e}");
    }

    #[test]
    fn key_parsing() {
        let k = ConfigKey::parse("https://index.docker.io/v1/");
        assert_eq!((k.host.as_str(), k.path.as_str()), ("docker.io", ""));
        let k = ConfigKey::parse("quay.io/org/team");
        assert_eq!((k.host.as_str(), k.path.as_str()), ("quay.io", "org/team"));
        let k = ConfigKey::parse("https://quay.io/org");
        assert_eq!((k.host.as_str(), k.path.as_str()), ("quay.io", ""));
        let k = ConfigKey::parse("localhost:5000/v2/");
        assert_eq!((k.host.as_str(), k.path.as_str()), ("localhost:5000", ""));
    }
}
