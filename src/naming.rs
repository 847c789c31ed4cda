//! Target names in the local registry: `replace`, `prefix` or `flatten`, and the checks that
//! two different images never land on the same name.

use std::collections::HashMap;
use std::fmt;

use crate::digest::Digest;
use crate::reference::{validate_registry, Reference};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Mode {
    /// `docker.io/library/redis:7` -> `REG[/PATH]/library/redis:7` (source host dropped)
    #[default]
    Replace,
    /// `docker.io/library/redis:7` -> `REG[/PATH]/docker.io/library/redis:7`
    Prefix,
    /// `docker.io/library/redis:7` -> `REG[/PATH]/redis:7` (last path component only)
    Flatten,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Replace => "replace",
            Mode::Prefix => "prefix",
            Mode::Flatten => "flatten",
        })
    }
}

/// `HOST[:PORT][/PATH]` as given to `--registry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub path: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NamingError {
    #[error("invalid --registry {input:?}: {reason}")]
    BadTarget { input: String, reason: String },
    #[error("image {source_ref}: cannot form a target name: {reason}")]
    BadName { source_ref: String, reason: String },
    #[error("images {a} and {b} would both be pushed as {target} (with different content)")]
    Collision {
        a: String,
        b: String,
        target: String,
    },
}

impl NamingError {
    pub fn hint(&self) -> Option<String> {
        match self {
            NamingError::Collision { .. } => {
                Some("use --mode prefix or replace, which keep more of the name".into())
            }
            _ => None,
        }
    }
}

impl Target {
    pub fn parse(input: &str) -> Result<Target, NamingError> {
        let bad = |reason: String| NamingError::BadTarget {
            input: input.to_string(),
            reason,
        };
        let s = input
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        if s.is_empty() {
            return Err(bad("it is empty".into()));
        }
        let (host, path) = match s.split_once('/') {
            Some((h, p)) => (h, Some(p.to_string())),
            None => (s, None),
        };
        validate_registry(host).map_err(bad)?;
        if let Some(p) = &path {
            // Validate the path as a repository would be.
            Reference::parse(&format!("{host}/{p}")).map_err(|e| bad(e.reason))?;
        }
        Ok(Target {
            host: host.to_string(),
            path,
        })
    }

    /// The target reference for `source` under `mode`: tag and digest-only-ness kept.
    pub fn name_for(&self, source: &Reference, mode: Mode) -> Result<Reference, NamingError> {
        let repo = match mode {
            Mode::Replace => source.repository().to_string(),
            Mode::Prefix => format!(
                "{}/{}",
                registry_as_path(source.registry()),
                source.repository()
            ),
            Mode::Flatten => source.basename().to_string(),
        };
        let repo = match &self.path {
            Some(p) => format!("{p}/{repo}"),
            None => repo,
        };
        let digest = if source.tag().is_none() {
            source.digest()
        } else {
            None
        };
        Reference::from_parts(&self.host, &repo, source.tag(), digest).map_err(|e| {
            NamingError::BadName {
                source_ref: source.to_string(),
                reason: e.reason,
            }
        })
    }
}

/// A registry host as a path component: `localhost:5000` -> `localhost_5000`, since ':' may
/// not appear in a repository path.
fn registry_as_path(host: &str) -> String {
    host.replace([':', '[', ']'], "_")
        .trim_matches('_')
        .to_string()
}

/// Names every image and refuses when two with different digests get the same target.
pub fn plan(
    target: &Target,
    mode: Mode,
    images: &[(Reference, Digest)],
) -> Result<Vec<Reference>, NamingError> {
    let mut seen: HashMap<String, (String, Digest)> = HashMap::new();
    let mut out = Vec::with_capacity(images.len());
    for (source, digest) in images {
        let t = target.name_for(source, mode)?;
        let key = t.to_string();
        if let Some((other, d)) = seen.get(&key) {
            if d != digest {
                return Err(NamingError::Collision {
                    a: other.clone(),
                    b: source.to_string(),
                    target: key,
                });
            }
        } else {
            seen.insert(key, (source.to_string(), digest.clone()));
        }
        out.push(t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> Reference {
        Reference::parse(s).unwrap()
    }

    #[test]
    fn modes() {
        let t = Target::parse("10.10.254.254:8000").unwrap();
        let src = r("redis:7");
        assert_eq!(
            t.name_for(&src, Mode::Replace).unwrap().to_string(),
            "10.10.254.254:8000/library/redis:7"
        );
        assert_eq!(
            t.name_for(&src, Mode::Prefix).unwrap().to_string(),
            "10.10.254.254:8000/docker.io/library/redis:7"
        );
        assert_eq!(
            t.name_for(&src, Mode::Flatten).unwrap().to_string(),
            "10.10.254.254:8000/redis:7"
        );
        let t = Target::parse("reg.local:5000/mirror/x").unwrap();
        assert_eq!(
            t.name_for(&r("quay.io/a/b:1"), Mode::Replace)
                .unwrap()
                .to_string(),
            "reg.local:5000/mirror/x/a/b:1"
        );
        assert_eq!(
            t.name_for(&r("localhost:5000/a:1"), Mode::Prefix)
                .unwrap()
                .to_string(),
            "reg.local:5000/mirror/x/localhost_5000/a:1"
        );
    }

    #[test]
    fn digest_only_keeps_digest_and_tag_wins() {
        let t = Target::parse("reg:5000").unwrap();
        let d = format!("sha256:{}", "a".repeat(64));
        let n = t
            .name_for(&r(&format!("busybox@{d}")), Mode::Replace)
            .unwrap();
        assert_eq!(n.to_string(), format!("reg:5000/library/busybox@{d}"));
        let n = t
            .name_for(&r(&format!("busybox:1@{d}")), Mode::Replace)
            .unwrap();
        assert_eq!(n.to_string(), "reg:5000/library/busybox:1");
    }

    #[test]
    fn collisions() {
        let t = Target::parse("reg:5000").unwrap();
        let a = (r("docker.io/x/app:1"), Digest::of(b"a"));
        let b = (r("ghcr.io/y/app:1"), Digest::of(b"b"));
        let e = plan(&t, Mode::Flatten, &[a.clone(), b.clone()]).unwrap_err();
        assert!(e.to_string().contains("docker.io/x/app:1"), "{e}");
        assert!(e.to_string().contains("ghcr.io/y/app:1"), "{e}");
        assert!(plan(&t, Mode::Replace, &[a.clone(), b.clone()]).is_ok());
        // replace drops the host: same path from two registries collides
        let c = (r("ghcr.io/x/app:1"), Digest::of(b"c"));
        assert!(plan(&t, Mode::Replace, &[a.clone(), c.clone()]).is_err());
        assert!(plan(&t, Mode::Prefix, &[a.clone(), c]).is_ok());
        // the same content under the same name twice is fine
        assert!(plan(&t, Mode::Flatten, &[a.clone(), a]).is_ok());
    }

    #[test]
    fn bad_targets() {
        for bad in ["", "reg:xx", "reg:5000/UPPER", "reg:5000//x"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
