//! Image references: parsing, validation and Docker Hub normalisation.
//!
//! Follows the grammar of distribution's `reference` package: an optional registry host
//! (with port, `localhost`, or a bracketed IPv6 literal), a lower-case path, an optional tag
//! and an optional digest. `redis` normalises to `docker.io/library/redis`.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry host Docker Hub images are named under.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that actually serves the Docker Hub API.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// A fully normalised image reference: registry and repository are always present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `input` (`redis`, `quay.io/a/b:1`, `x@sha256:…`).
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(err("it is empty"));
        }
        if input.len() > 4096 {
            return Err(err("it is longer than 4096 characters"));
        }
        if input.chars().any(|c| c.is_whitespace()) {
            return Err(err("it contains white space"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((r, d)) => {
                let digest = Digest::parse(d).map_err(|e| err(&format!("bad digest: {e}")))?;
                (r, Some(digest))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/');
        let (name, tag) = match rest.rfind(':') {
            Some(i) if last_slash.is_none_or(|s| i > s) && !rest[..i].ends_with('[') => {
                // `[::1]` alone: the colon belongs to the IPv6 literal, not a tag.
                if rest[..=i].contains('[') && !rest[..=i].contains(']') {
                    (rest, None)
                } else {
                    (&rest[..i], Some(&rest[i + 1..]))
                }
            }
            _ => (rest, None),
        };
        if let Some(t) = tag {
            validate_tag(t).map_err(|r| err(&r))?;
        }
        if name.is_empty() {
            return Err(err("the repository name is empty"));
        }
        let (registry, path) = split_domain(name);
        if let Some(r) = &registry {
            validate_registry(r).map_err(|r| err(&r))?;
        }
        validate_path(path).map_err(|r| err(&r))?;
        let mut registry = registry.unwrap_or(DOCKER_HUB).to_string();
        if registry == "index.docker.io" || registry == DOCKER_HUB_API {
            registry = DOCKER_HUB.to_string();
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + repository.len() > 255 {
            return Err(err("the name is longer than 255 characters"));
        }
        Ok(Reference {
            registry,
            repository,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// Builds a reference from parts that are validated again.
    pub fn from_parts(
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&Digest>,
    ) -> Result<Self, ReferenceError> {
        let mut s = format!("{registry}/{repository}");
        if let Some(t) = tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        Self::parse(&s)
    }

    /// The registry host as written in the name (`docker.io`, `quay.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }
    /// The repository path inside the registry (`library/redis`).
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
    /// The tag if any, else the digest: what a manifest GET is addressed by.
    /// A reference with neither means `latest`.
    pub fn selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }
    pub fn with_tag(&self, tag: Option<&str>) -> Self {
        Reference {
            tag: tag.map(str::to_string),
            ..self.clone()
        }
    }
    pub fn with_digest(&self, digest: Option<Digest>) -> Self {
        Reference {
            digest,
            ..self.clone()
        }
    }
    /// True when the reference names the `latest` tag, written or implied, without a digest.
    pub fn is_latest(&self) -> bool {
        self.digest.is_none() && self.tag.as_deref().is_none_or(|t| t == "latest")
    }
    /// The same reference with an implied `latest` tag made explicit (digest-only stays so).
    pub fn with_default_tag(&self) -> Self {
        if self.tag.is_none() && self.digest.is_none() {
            self.with_tag(Some("latest"))
        } else {
            self.clone()
        }
    }
    /// The last path component (`redis` for `docker.io/library/redis`).
    pub fn basename(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// Splits `host/path` when the first component looks like a host, as Docker does:
/// it contains a '.' or ':', is `localhost`, or is a bracketed IPv6 literal.
fn split_domain(name: &str) -> (Option<&str>, &str) {
    if let Some((first, rest)) = name.split_once('/') {
        if first.contains('.')
            || first.contains(':')
            || first == "localhost"
            || first.starts_with('[')
        {
            return (Some(first), rest);
        }
    }
    (None, name)
}

/// Validates a registry host, optionally with a port: a DNS name, an IPv4 address or `[IPv6]`.
pub fn validate_registry(host: &str) -> Result<(), String> {
    let (h, port) = if let Some(stripped) = host.strip_prefix('[') {
        let end = stripped
            .find(']')
            .ok_or_else(|| format!("registry {host:?} has an unclosed '['"))?;
        let ip = &stripped[..end];
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("registry {host:?} is not a valid IPv6 literal"));
        }
        let after = &stripped[end + 1..];
        let port = match after {
            "" => None,
            p if p.starts_with(':') => Some(&p[1..]),
            _ => return Err(format!("registry {host:?} has junk after ']'")),
        };
        (None, port)
    } else {
        match host.split_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(host), None),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_digit()) || p.parse::<u16>().is_err() {
            return Err(format!("registry {host:?} has an invalid port {p:?}"));
        }
    }
    if let Some(h) = h {
        if h.is_empty() {
            return Err("the registry host is empty".into());
        }
        for label in h.split('.') {
            let ok = !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!("registry host {h:?} is not a valid host name"));
            }
        }
    }
    Ok(())
}

/// Path components: lower-case alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn validate_path(path: &str) -> Result<(), String> {
    for comp in path.split('/') {
        if comp.is_empty() {
            return Err("the repository path has an empty component".into());
        }
        if comp.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(format!(
                "repository component {comp:?} must be lower case (Docker names are lower case)"
            ));
        }
        let bytes = comp.as_bytes();
        let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
            return Err(format!(
                "repository component {comp:?} must start and end with a letter or digit"
            ));
        }
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if alnum(b) {
                i += 1;
                continue;
            }
            // a separator run
            let start = i;
            while i < bytes.len() && !alnum(bytes[i]) {
                i += 1;
            }
            let sep = &comp[start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
            if !ok {
                return Err(format!(
                    "repository component {comp:?} has an invalid separator {sep:?}"
                ));
            }
        }
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), String> {
    if tag.is_empty() {
        return Err("the tag is empty".into());
    }
    if tag.len() > 128 {
        return Err("the tag is longer than 128 characters".into());
    }
    let mut chars = tag.chars();
    let first = chars.next().unwrap_or('-');
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(format!(
            "tag {tag:?} must start with a letter, digit or '_'"
        ));
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
        return Err(format!(
            "tag {tag:?} may only contain letters, digits, '_', '.' and '-'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_hub_normalisation() {
        assert_eq!(n("redis"), "docker.io/library/redis");
        assert_eq!(n("redis:7"), "docker.io/library/redis:7");
        assert_eq!(n("bitnami/redis:7"), "docker.io/bitnami/redis:7");
        assert_eq!(n("docker.io/redis:7"), "docker.io/library/redis:7");
        assert_eq!(n("index.docker.io/redis"), "docker.io/library/redis");
        assert_eq!(n("registry-1.docker.io/a/b"), "docker.io/a/b");
    }

    #[test]
    fn hosts_ports_and_nested_paths() {
        let r = Reference::parse("localhost:5000/a/b/c:1.0").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "a/b/c");
        assert_eq!(r.tag(), Some("1.0"));
        let r = Reference::parse("localhost/x").unwrap();
        assert_eq!(r.registry(), "localhost");
        let r = Reference::parse("[::1]:5000/x/y:t").unwrap();
        assert_eq!(r.registry(), "[::1]:5000");
        assert_eq!(r.repository(), "x/y");
        assert_eq!(r.tag(), Some("t"));
        let r = Reference::parse("[fe80::1]/x").unwrap();
        assert_eq!(r.registry(), "[fe80::1]");
        let r = Reference::parse("quay.io/kairos/core-ubuntu-20-lts-rke2:v1.25.2-rke2r1").unwrap();
        assert_eq!(r.repository(), "kairos/core-ubuntu-20-lts-rke2");
        assert_eq!(r.basename(), "core-ubuntu-20-lts-rke2");
    }

    #[test]
    fn tag_and_digest_together() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("quay.io/x/y:1@{d}")).unwrap();
        assert_eq!(r.tag(), Some("1"));
        assert_eq!(r.digest().unwrap().as_str(), d);
        assert_eq!(r.selector(), d);
        let r = Reference::parse(&format!("busybox@{d}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{d}"));
        assert!(!r.is_latest());
    }

    #[test]
    fn latest_detection() {
        assert!(Reference::parse("redis").unwrap().is_latest());
        assert!(Reference::parse("redis:latest").unwrap().is_latest());
        assert!(!Reference::parse("redis:7").unwrap().is_latest());
        assert_eq!(
            Reference::parse("redis")
                .unwrap()
                .with_default_tag()
                .to_string(),
            "docker.io/library/redis:latest"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "UPPER/case",
            "a::b",
            "redis:",
            "redis:-x",
            "a//b",
            "a/b/",
            "/a",
            "a b",
            "redis@sha256:abc",
            "redis@md5:abc",
            "quay.io:99999/x",
            "quay.io:/x",
            "[::zz]/x",
            "[::1/x",
            "-a/b",
            "a/-b",
            "a/b..c",
        ] {
            let e = Reference::parse(bad);
            assert!(e.is_err(), "{bad:?} should be rejected, got {e:?}");
        }
        let e = Reference::parse("UPPER/case").unwrap_err();
        assert!(e.to_string().contains("UPPER/case"), "{e}");
    }

    #[test]
    fn round_trip_display() {
        for s in [
            "docker.io/library/redis:7",
            "quay.io/a/b",
            "127.0.0.1:5000/x/y:z",
            "[::1]:5000/a:b",
        ] {
            assert_eq!(n(s), s);
            assert_eq!(n(&n(s)), s);
        }
    }
}
