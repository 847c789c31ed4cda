//! From the YAML tree to a validated [`Spec`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use saphyr::{MarkedYaml, Scalar, YamlData};

use super::yaml::{Doc, Entries};
use super::{
    ArchiveSource, AuthEnv, ErrorKind, ImageEntry, Location, ManifestSource, Source, Spec,
    SpecError, ARCHIVE_SOURCE, IMAGE_SOURCE, PUBLIC_SOURCE, SPEC_VERSION,
};
use crate::digest::Digest;
use crate::platform::Platform;
use crate::reference::{validate_registry, Reference, DOCKER_HUB, DOCKER_HUB_API};
use crate::registry::credentials::Credentials;

pub(super) const TOP_KEYS: &[&str] = &[
    "version",
    "sources",
    "images",
    "platforms",
    "manifests",
    "registries",
    "imageFields",
    "relatedImageEnv",
    "imagesFromManifests",
    "charts",
];
pub(super) const SOURCE_KEYS: &[&str] = &["registry", "auth"];
pub(super) const AUTH_KEYS: &[&str] = &["usernameEnv", "passwordEnv"];
pub(super) const IMAGE_KEYS: &[&str] =
    &["image", "source", "name", "tag", "digest", "archive", "ref"];

type Env<'e> = &'e dyn Fn(&str) -> Option<String>;

pub(super) fn parse(text: &str, path: &Path, env: Env<'_>) -> Result<Spec, SpecError> {
    let doc = Doc { text, path };
    let Some(root) = doc.load()? else {
        return Err(SpecError::Invalid {
            at: doc.location(1, 0),
            kind: ErrorKind::Missing,
            message: "the spec is empty: it needs at least `images:`".into(),
        });
    };
    let top = doc.mapping(&root, "the spec", "a mapping with `images:` and optional `sources:`, `platforms:`, `manifests:`, `registries:`, `version:`")?;
    doc.check_keys(&top, TOP_KEYS, "the spec", None)?;
    let get = |k: &str| top.iter().find(|(key, _, _)| *key == k).map(|(_, _, v)| *v);

    let mut p = Parser {
        doc: &doc,
        warnings: Vec::new(),
    };
    if let Some(v) = get("version") {
        p.version(v)?;
    }
    let sources = match get("sources") {
        Some(v) => p.sources(v)?,
        None => Vec::new(),
    };
    let from_manifests = match get("imagesFromManifests") {
        Some(v) => super::rules::boolean(&doc, v, "imagesFromManifests")?,
        None => false,
    };
    let images = match get("images") {
        Some(node)
            if from_manifests && matches!(&node.data, YamlData::Sequence(s) if s.is_empty()) =>
        {
            Vec::new()
        }
        Some(node) => p.images(node, &sources)?,
        None if from_manifests || get("charts").is_some() => Vec::new(),
        None => {
            return Err(doc.invalid(&root, ErrorKind::Missing, "the spec has no `images:` list"))
        }
    };
    let mut images = images;
    if let Some(node) = get("charts") {
        for entry in super::charts::charts(&doc, node)? {
            let key = entry.reference.to_string();
            if images
                .iter()
                .any(|i: &Parsed| i.entry.reference.to_string() == key)
            {
                return Err(doc.invalid(
                    node,
                    ErrorKind::Conflict,
                    format!("{key} is listed twice (a chart is named <host>/charts/NAME:VERSION)"),
                ));
            }
            images.push(Parsed {
                entry,
                named_source: None,
                latest_warning: None,
            });
        }
    }
    let platforms = match get("platforms") {
        Some(v) => p.platforms(v)?,
        None => Vec::new(),
    };
    let manifests = match get("manifests") {
        Some(v) => p.manifests(v)?,
        None => Vec::new(),
    };
    let mirrors = match get("registries") {
        Some(v) => p.mirrors(v)?,
        None => BTreeMap::new(),
    };
    if from_manifests && manifests.is_empty() {
        let node = get("imagesFromManifests").unwrap_or(&root);
        return Err(doc.invalid(
            node,
            ErrorKind::Missing,
            "imagesFromManifests: true needs `manifests:` to find the images in",
        ));
    }
    let fields = match get("imageFields") {
        Some(v) => super::rules::image_fields(&doc, v)?,
        None => Vec::new(),
    };
    let env_patterns = match get("relatedImageEnv") {
        Some(v) => Some(super::rules::related_env(&doc, v)?),
        None => None,
    };
    let images = p.attach_credentials(images, &sources, env)?;
    Ok(Spec {
        path: path.to_path_buf(),
        sources,
        images,
        platforms,
        manifests,
        mirrors,
        rules: super::rules::rules(fields, env_patterns),
        images_from_manifests: from_manifests
            .then(|| get("imagesFromManifests").map(|v| doc.at(v)))
            .flatten(),
        warnings: p.warnings,
    })
}

struct Parser<'d, 'a> {
    doc: &'d Doc<'a>,
    warnings: Vec<String>,
}

/// An image entry before credentials are attached.
struct Parsed {
    entry: ImageEntry,
    /// Set for `source: NAME` entries (not `public`, not `image:`).
    named_source: Option<String>,
    /// The `latest` warning, given only if the entry is not a duplicate.
    latest_warning: Option<String>,
}

impl<'a> Parser<'_, 'a> {
    fn warn(&mut self, node: &MarkedYaml, message: impl AsRef<str>) {
        self.warnings
            .push(format!("{}: {}", self.doc.at(node), message.as_ref()));
    }

    fn version(&mut self, node: &MarkedYaml<'a>) -> Result<(), SpecError> {
        match &node.data {
            YamlData::Value(Scalar::Integer(SPEC_VERSION)) => Ok(()),
            YamlData::Value(Scalar::Integer(n)) => Err(self.doc.invalid(
                node,
                ErrorKind::UnsupportedVersion,
                format!(
                    "unsupported spec version {n}: this airgap understands version {SPEC_VERSION}"
                ),
            )),
            _ => Err(self.doc.invalid(
                node,
                ErrorKind::UnsupportedVersion,
                format!(
                    "version: expected the number {SPEC_VERSION}, found {}",
                    self.doc.describe(node)
                ),
            )),
        }
    }

    fn sources(&mut self, node: &MarkedYaml<'a>) -> Result<Vec<Source>, SpecError> {
        let doc = self.doc;
        let entries = doc.mapping(
            node,
            "sources",
            "a mapping of source names to {registry, auth}",
        )?;
        let mut out = Vec::with_capacity(entries.len());
        for (name, knode, value) in entries {
            if name == PUBLIC_SOURCE {
                return Err(doc.invalid(
                    knode,
                    ErrorKind::BadValue,
                    "`public` is a built-in source (Docker Hub names); give this source another name",
                ));
            }
            if name == IMAGE_SOURCE {
                return Err(doc.invalid(
                    knode,
                    ErrorKind::BadValue,
                    "`image` is reserved (it marks `image:` entries); give this source another name",
                ));
            }
            let name_ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            if !name_ok {
                return Err(doc.invalid(
                    knode,
                    ErrorKind::BadValue,
                    format!(
                        "source name {name:?} may only contain letters, digits, '-', '_' and '.'"
                    ),
                ));
            }
            let what = format!("source `{name}`");
            let fields = doc.mapping(
                value,
                &what,
                "a mapping with `registry:` and optional `auth:`",
            )?;
            doc.check_keys(&fields, SOURCE_KEYS, &what, None)?;
            let Some((_, _, reg_node)) = fields.iter().find(|(k, _, _)| *k == "registry") else {
                return Err(doc.invalid(
                    value,
                    ErrorKind::Missing,
                    format!("{what} has no `registry:` (host[:port][/path-prefix])"),
                ));
            };
            let (host, prefix) = self.registry(reg_node, &what)?;
            let auth = match fields.iter().find(|(k, _, _)| *k == "auth") {
                Some((_, _, a)) => Some(self.auth(a, &what)?),
                None => None,
            };
            let at = doc.at(knode);
            out.push(Source {
                name: name.to_string(),
                host,
                prefix,
                auth,
                line: at.line,
                column: at.column,
            });
        }
        Ok(out)
    }

    /// `host[:port][/path-prefix]` → (normalised host, prefix).
    fn registry(&self, node: &MarkedYaml<'a>, what: &str) -> Result<(String, String), SpecError> {
        let doc = self.doc;
        let raw = doc.string(node, &format!("{what}: registry"))?;
        let bad = |msg: String| doc.invalid(node, ErrorKind::BadValue, format!("{what}: {msg}"));
        if let Some((scheme, _)) = raw.split_once("://") {
            return Err(bad(format!(
                "registry {raw:?} must be host[:port][/path-prefix] without the {scheme}:// scheme \
                 (to reach a registry over plain HTTP, add it under `registries:`)"
            )));
        }
        let trimmed = raw.trim_end_matches('/');
        let (host, prefix) = trimmed.split_once('/').unwrap_or((trimmed, ""));
        validate_registry(host).map_err(|e| bad(format!("registry {raw:?}: {e}")))?;
        let looks_like_host = host.contains('.')
            || host.contains(':')
            || host == "localhost"
            || host.starts_with('[');
        if !looks_like_host {
            return Err(bad(format!(
                "registry host {host:?} would be read as a Docker Hub namespace in image names; \
                 use a name with a dot, a port, or `localhost`"
            )));
        }
        let host = if host == "index.docker.io" || host == DOCKER_HUB_API {
            DOCKER_HUB
        } else {
            host
        };
        if !prefix.is_empty() {
            Reference::parse(&format!("{host}/{prefix}")).map_err(|e| {
                bad(format!(
                    "registry path prefix {prefix:?} is invalid: {}",
                    e.reason
                ))
            })?;
        }
        Ok((host.to_string(), prefix.to_string()))
    }

    fn auth(&self, node: &MarkedYaml<'a>, what: &str) -> Result<AuthEnv, SpecError> {
        let doc = self.doc;
        let what = format!("{what}: auth");
        let fields = doc.mapping(node, &what, "{usernameEnv: VAR, passwordEnv: VAR}")?;
        let hint = |k: &str| {
            matches!(k, "username" | "password" | "user" | "pass" | "token").then(|| {
                "credentials are read from environment variables: use `usernameEnv` and `passwordEnv`"
                    .to_string()
            })
        };
        doc.check_keys(&fields, AUTH_KEYS, &what, Some(&hint))?;
        let var = |key: &str| -> Result<(String, Location), SpecError> {
            let Some((_, _, v)) = fields.iter().find(|(k, _, _)| *k == key) else {
                return Err(doc.invalid(
                    node,
                    ErrorKind::Missing,
                    format!("{what} needs `{key}` (the name of an environment variable)"),
                ));
            };
            let name = doc.string(v, &format!("{what}.{key}"))?;
            if name.is_empty()
                || name.contains(['=', '\0'])
                || name.chars().any(char::is_whitespace)
            {
                return Err(doc.invalid(
                    v,
                    ErrorKind::BadValue,
                    format!("{what}.{key}: {name:?} is not an environment variable name"),
                ));
            }
            Ok((name, doc.at(v)))
        };
        let (username_env, username_at) = var("usernameEnv")?;
        let (password_env, password_at) = var("passwordEnv")?;
        Ok(AuthEnv {
            username_env,
            password_env,
            username_at,
            password_at,
        })
    }

    fn images(
        &mut self,
        node: &MarkedYaml<'a>,
        sources: &[Source],
    ) -> Result<Vec<Parsed>, SpecError> {
        let doc = self.doc;
        let items = doc.sequence(node, "images", "a list of images")?;
        if items.is_empty() {
            return Err(doc.invalid(
                node,
                ErrorKind::EmptyImages,
                "images: the list is empty; a bundle needs at least one image",
            ));
        }
        let mut out: Vec<Parsed> = Vec::with_capacity(items.len());
        let mut seen: HashMap<String, usize> = HashMap::new();
        for item in items {
            let parsed = self.image(item, sources)?;
            let key = parsed.entry.reference.to_string();
            if let Some(&first) = seen.get(&key) {
                self.warn(
                    item,
                    format!("{key} is listed twice (first on line {first}); this entry is ignored"),
                );
                continue;
            }
            seen.insert(key, parsed.entry.line);
            self.warnings.extend(parsed.latest_warning.clone());
            out.push(parsed);
        }
        Ok(out)
    }

    fn image(&mut self, node: &MarkedYaml<'a>, sources: &[Source]) -> Result<Parsed, SpecError> {
        let doc = self.doc;
        let expected = "a mapping: {source, name, tag, digest} or {image: REF}";
        if let YamlData::Value(Scalar::String(s)) = &node.data {
            return Err(doc.invalid(
                node,
                ErrorKind::WrongType,
                format!(
                    "images: expected {expected}, found the string {s:?} (write `- image: {s}`)"
                ),
            ));
        }
        let fields = doc.mapping(node, "images", expected)?;
        doc.check_keys(&fields, IMAGE_KEYS, "an image entry", None)?;
        let get = |k: &str| {
            fields
                .iter()
                .find(|(key, _, _)| *key == k)
                .map(|(_, kn, v)| (*kn, *v))
        };
        let at = doc.at(node);

        let archive = self.archive(&get("archive"), &get("ref"), get("image").is_some())?;
        let (reference, source, named_source, at_node) = if let Some((_, image)) = get("image") {
            if let Some((kn, _)) = get("name") {
                return Err(doc.invalid(
                    kn,
                    ErrorKind::Conflict,
                    "an image entry has either `image:` or `name:`, not both",
                ));
            }
            for key in ["source", "tag", "digest"] {
                if let Some((kn, _)) = get(key) {
                    return Err(doc.invalid(
                        kn,
                        ErrorKind::Conflict,
                        format!(
                            "`{key}` cannot be used with `image:`; `image:` takes a complete reference \
                             (registry/name:tag@digest), `{key}` goes with `name:`"
                        ),
                    ));
                }
            }
            let text = doc.string(image, "image")?;
            let reference = Reference::parse(&text)
                .map_err(|e| doc.invalid(image, ErrorKind::BadReference, e.to_string()))?;
            (reference, IMAGE_SOURCE.to_string(), None, image)
        } else {
            let Some((_, name_node)) = get("name") else {
                return Err(doc.invalid(
                    node,
                    ErrorKind::Missing,
                    "an image entry needs `name:` (with optional `source:`, `tag:`, `digest:`) or `image:`",
                ));
            };
            let source_name = match get("source") {
                Some((_, s)) => {
                    let name = doc.string(s, "source")?;
                    if name != PUBLIC_SOURCE && !sources.iter().any(|src| src.name == name) {
                        let mut known: Vec<String> = vec![format!("`{PUBLIC_SOURCE}`")];
                        known.extend(sources.iter().map(|s| format!("`{}`", s.name)));
                        return Err(doc.invalid(
                            s,
                            ErrorKind::UnknownSource,
                            format!("unknown source `{name}` (known: {})", known.join(", ")),
                        ));
                    }
                    name
                }
                None => PUBLIC_SOURCE.to_string(),
            };
            let name = doc.string(name_node, "name")?;
            let bad_name = |msg: String| doc.invalid(name_node, ErrorKind::BadReference, msg);
            let base = if source_name == PUBLIC_SOURCE {
                let r = Reference::parse(&name).map_err(|e| bad_name(e.to_string()))?;
                if r.tag().is_some() || r.digest().is_some() {
                    return Err(bad_name(format!(
                        "name {name:?} must not carry a tag or digest; use `tag:` / `digest:`"
                    )));
                }
                r
            } else {
                let src = sources
                    .iter()
                    .find(|s| s.name == source_name)
                    .expect("checked above");
                if name.contains([':', '@']) {
                    return Err(bad_name(format!(
                        "name {name:?} must be a path inside source `{source_name}` ({}), without tag, digest or port; use `tag:` / `digest:`",
                        src.registry()
                    )));
                }
                if name
                    .split('/')
                    .next()
                    .is_some_and(|first| first.contains('.'))
                    && name.contains('/')
                {
                    self.warn(
                        name_node,
                        format!(
                            "name {name:?} starts with what looks like a registry host, but under source `{source_name}` it is a path: the image is {}/{name}",
                            src.registry()
                        ),
                    );
                }
                Reference::parse(&format!("{}/{name}", src.registry()))
                    .map_err(|e| bad_name(e.to_string()))?
            };
            let mut reference = base;
            if let Some((_, tag_node)) = get("tag") {
                let tag = self.tag_or_digest(tag_node, "tag")?;
                reference =
                    Reference::parse(&format!("{}:{tag}", reference.name())).map_err(|e| {
                        doc.invalid(
                            tag_node,
                            ErrorKind::BadReference,
                            format!("tag {tag:?}: {}", e.reason),
                        )
                    })?;
            }
            if let Some((_, digest_node)) = get("digest") {
                let text = self.tag_or_digest(digest_node, "digest")?;
                let digest = Digest::parse(&text).map_err(|e| {
                    doc.invalid(digest_node, ErrorKind::BadReference, format!("digest: {e}"))
                })?;
                reference = reference.with_digest(Some(digest));
            }
            let named = (source_name != PUBLIC_SOURCE).then(|| source_name.clone());
            (reference, source_name, named, name_node)
        };

        // Kubernetes defaults imagePullPolicy to Always when the tag is `latest`, written or
        // implied, even with a digest (`x:latest@sha256:…`); a digest alone is fine.
        let latest_warning = (reference.tag() == Some("latest")
            || (reference.tag().is_none() && reference.digest().is_none()))
        .then(|| {
            let how = if reference.tag().is_some() {
                "is tagged"
            } else {
                "has no tag or digest, so it means"
            };
            format!(
                "{}: {} {how} `latest`: Kubernetes pulls `latest` images again on every start \
                 (imagePullPolicy defaults to Always), which fails in an air-gapped network; \
                 pin a version tag or a digest",
                doc.at(at_node),
                reference.name()
            )
        });
        Ok(Parsed {
            entry: ImageEntry {
                reference: reference.with_default_tag(),
                source: if archive.is_some() {
                    ARCHIVE_SOURCE.to_string()
                } else {
                    source
                },
                archive,
                chart: None,
                credentials: None,
                credentials_source: None,
                line: at.line,
                column: at.column,
            },
            named_source,
            latest_warning,
        })
    }

    /// `archive: PATH` with optional `ref: NAME`, which only go with `image:` (the name the
    /// image gets in the bundle).
    fn archive(
        &self,
        archive: &Option<(&MarkedYaml<'a>, &MarkedYaml<'a>)>,
        select: &Option<(&MarkedYaml<'a>, &MarkedYaml<'a>)>,
        has_image: bool,
    ) -> Result<Option<ArchiveSource>, SpecError> {
        let doc = self.doc;
        let Some((kn, value)) = archive else {
            if let Some((kn, _)) = select {
                return Err(doc.invalid(
                    kn,
                    ErrorKind::Conflict,
                    "`ref:` chooses an image inside an `archive:`; this entry has no `archive:`",
                ));
            }
            return Ok(None);
        };
        if !has_image {
            return Err(doc.invalid(
                kn,
                ErrorKind::Missing,
                "an `archive:` entry needs `image:`: the full reference the image gets in the bundle \
                 (e.g. `image: registry.example.com/team/app:1.2`)",
            ));
        }
        let path = doc.string(value, "archive")?;
        if path.is_empty() {
            return Err(doc.invalid(value, ErrorKind::BadValue, "`archive:` is empty"));
        }
        let select = match select {
            Some((_, v)) => Some(doc.string(v, "ref")?).filter(|s| !s.is_empty()),
            None => None,
        };
        Ok(Some(ArchiveSource {
            path: PathBuf::from(path),
            select,
            at: doc.at(value),
        }))
    }

    /// `tag:` / `digest:` values: a string, never empty or null.
    fn tag_or_digest(&self, node: &MarkedYaml<'a>, key: &str) -> Result<String, SpecError> {
        let doc = self.doc;
        let empty = || {
            doc.invalid(
                node,
                ErrorKind::BadReference,
                format!("`{key}` is empty (leave the key out: an image with neither tag nor digest means `latest`)"),
            )
        };
        if matches!(node.data, YamlData::Value(Scalar::Null)) {
            return Err(empty());
        }
        let s = doc.string(node, key)?;
        if s.is_empty() {
            return Err(empty());
        }
        Ok(s)
    }

    fn platforms(&mut self, node: &MarkedYaml<'a>) -> Result<Vec<Platform>, SpecError> {
        let doc = self.doc;
        let items = doc.sequence(
            node,
            "platforms",
            "a list such as [linux/amd64, linux/arm64]",
        )?;
        if items.is_empty() {
            return Err(doc.invalid(
                node,
                ErrorKind::BadPlatform,
                "platforms: the list is empty; leave `platforms:` out to keep every platform",
            ));
        }
        let mut out: Vec<Platform> = Vec::new();
        for item in items {
            let text = doc.string(item, "platforms")?;
            let p = Platform::parse(&text)
                .map_err(|e| doc.invalid(item, ErrorKind::BadPlatform, e.to_string()))?;
            if out.contains(&p) {
                self.warn(item, format!("platform {p} is listed twice"));
            } else {
                out.push(p);
            }
        }
        Ok(out)
    }

    fn manifests(&mut self, node: &MarkedYaml<'a>) -> Result<Vec<ManifestSource>, SpecError> {
        let doc = self.doc;
        let items = doc.sequence(
            node,
            "manifests",
            "a list of files, directories or globs, such as [k8s/]",
        )?;
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            let pattern = doc.string(item, "manifests")?;
            let bad =
                |msg: String| doc.invalid(item, ErrorKind::BadValue, format!("manifests: {msg}"));
            if pattern.is_empty() {
                return Err(bad("empty path".into()));
            }
            if pattern.starts_with('/') || pattern.starts_with('\\') {
                return Err(bad(format!(
                    "{pattern:?} is absolute; paths are relative to the spec file's directory"
                )));
            }
            if pattern.split(['/', '\\']).any(|c| c == "..") {
                return Err(bad(format!(
                    "{pattern:?} leaves the spec file's directory (`..`); keep the spec file above its manifests"
                )));
            }
            let at = doc.at(item);
            out.push(ManifestSource {
                pattern,
                line: at.line,
                column: at.column,
            });
        }
        Ok(out)
    }

    fn mirrors(&mut self, node: &MarkedYaml<'a>) -> Result<BTreeMap<String, url::Url>, SpecError> {
        let doc = self.doc;
        let entries: Entries<'_, 'a> = doc.mapping(
            node,
            "registries",
            "a mapping of registry hosts to mirror URLs",
        )?;
        let mut out = BTreeMap::new();
        for (host, knode, value) in entries {
            let bad_key =
                |msg: String| doc.invalid(knode, ErrorKind::BadValue, format!("registries: {msg}"));
            if host.contains('/') {
                return Err(bad_key(format!(
                    "{host:?} must be a registry host[:port], without scheme or path"
                )));
            }
            validate_registry(host).map_err(bad_key)?;
            let host = if host == "index.docker.io" || host == DOCKER_HUB_API {
                DOCKER_HUB
            } else {
                host
            };
            let text = doc.string(value, &format!("registries.{host}"))?;
            let bad = |msg: String| {
                doc.invalid(
                    value,
                    ErrorKind::BadValue,
                    format!("registries.{host}: {msg}"),
                )
            };
            let url = url::Url::parse(&text).map_err(|e| {
                bad(format!(
                    "{text:?} is not a URL ({e}); write http://host:port or https://host"
                ))
            })?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad(format!("{text:?}: the scheme must be http or https")));
            }
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad(
                    "the URL must not contain credentials; use `sources:` with `auth:` or docker login"
                        .into(),
                ));
            }
            if url.host_str().is_none()
                || url.path() != "/"
                || url.query().is_some()
                || url.fragment().is_some()
            {
                return Err(bad(format!(
                    "{text:?} must be just scheme://host[:port] (registries serve /v2/ at their root)"
                )));
            }
            if out.insert(host.to_string(), url).is_some() {
                return Err(doc.invalid(
                    knode,
                    ErrorKind::BadValue,
                    format!("registries: {host} is listed twice (index.docker.io and registry-1.docker.io are docker.io)"),
                ));
            }
        }
        Ok(out)
    }

    /// Gives each image the credentials of its source, or of the first source with `auth:`
    /// on the same host (longest matching path prefix first). Only the environment variables
    /// of sources that some image uses are read.
    fn attach_credentials(
        &mut self,
        parsed: Vec<Parsed>,
        sources: &[Source],
        env: Env<'_>,
    ) -> Result<Vec<ImageEntry>, SpecError> {
        let doc = self.doc;
        let mut resolved: HashMap<&str, Credentials> = HashMap::new();
        let mut used: Vec<&str> = Vec::new();
        let mut out = Vec::with_capacity(parsed.len());
        for Parsed {
            mut entry,
            named_source,
            ..
        } in parsed
        {
            // Nothing is pulled for an image from an archive.
            if entry.archive.is_some() || entry.chart.as_ref().is_some_and(|c| c.is_package()) {
                out.push(entry);
                continue;
            }
            if let Some(n) = &named_source {
                if !used.contains(&n.as_str()) {
                    if let Some(s) = sources.iter().find(|s| &s.name == n) {
                        used.push(&s.name);
                    }
                }
            }
            let own = named_source
                .as_deref()
                .and_then(|n| sources.iter().find(|s| s.name == n && s.auth.is_some()));
            let by_host = || {
                // `rev`: `max_by_key` keeps the last of equals, and the first in the file wins.
                sources
                    .iter()
                    .rev()
                    .filter(|s| s.auth.is_some() && s.contains(&entry.reference))
                    .max_by_key(|s| s.prefix.len())
                    .or_else(|| {
                        sources
                            .iter()
                            .find(|s| s.auth.is_some() && s.host == entry.reference.registry())
                    })
            };
            if let Some(src) = own.or_else(by_host) {
                if !used.contains(&src.name.as_str()) {
                    used.push(&src.name);
                }
                let auth = src.auth.as_ref().expect("filtered on auth");
                if !resolved.contains_key(src.name.as_str()) {
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
                    resolved.insert(&src.name, Credentials::new(user, pass));
                }
                entry.credentials = resolved.get(src.name.as_str()).cloned();
                entry.credentials_source = Some(src.name.clone());
            }
            out.push(entry);
        }
        for s in sources {
            if !used.contains(&s.name.as_str()) {
                let at = doc.location(s.line, s.column - 1);
                self.warnings.push(format!(
                    "{at}: source `{}` is not used by any image",
                    s.name
                ));
            }
        }
        Ok(out)
    }
}
