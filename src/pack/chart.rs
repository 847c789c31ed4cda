//! A Helm chart package (`.tgz`, from a chart repository or a local file) made into the OCI
//! artifact `helm push` writes, byte for byte, so its digests are the ones a registry would
//! show after `helm push` (followed: helm v4 main at e9b85e4, `pkg/registry/client.go` Push,
//! `chart.go`, `pkg/pusher/ocipusher.go`; the same code as Helm v3.18 to v3.21, which
//! moved to oras-go v2; earlier 3.x releases were not compared).
//!
//! - config: the chart's `Chart.yaml` as Go's `encoding/json` writes `chart.Metadata`
//!   (field order, omitempty, map keys sorted, `<>&` escaped), media type
//!   [`CONFIG_MEDIA_TYPE`];
//! - layers: the `.tgz` as is ([`CHART_MEDIA_TYPE`]) and the `.prov` file beside it when there
//!   is one ([`PROV_MEDIA_TYPE`]), sorted by digest;
//! - manifest: `{"schemaVersion":2,"config":…,"layers":[…],"annotations":{…}}` with no
//!   `mediaType` field (Helm leaves it out) and the `org.opencontainers.image.*` annotations
//!   from the metadata, then the chart's own annotations.
//!
//! Deliberate difference: Helm's `created` annotation is the `.tgz` file's modification time
//! in the local time zone; here it is in UTC (`Z`), and for a chart from a repository it is
//! the `created` time of its `index.yaml` entry, so the artifact does not depend on when it
//! was downloaded.

use std::io::Read;

use bytes::Bytes;
use saphyr::{LoadableYamlNode, Scalar, Yaml};

use crate::digest::Digest;

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.helm.config.v1+json";
pub const CHART_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.content.v1.tar+gzip";
pub const PROV_MEDIA_TYPE: &str = "application/vnd.cncf.helm.chart.provenance.v1.prov";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Helm itself refuses charts bigger than this; a chart is held in memory while packing.
pub const MAX_CHART: u64 = 100 << 20;

/// A chart ready to be packed: the synthesised manifest and config, the package and its
/// provenance file.
#[derive(Debug)]
pub struct ChartArtifact {
    pub name: String,
    pub version: String,
    pub manifest: Bytes,
    pub manifest_digest: Digest,
    pub config: Bytes,
    pub tgz: Bytes,
    pub prov: Option<Bytes>,
}

impl ChartArtifact {
    /// The blob with this digest: config, package or provenance.
    pub fn blob(&self, digest: &Digest) -> Option<&Bytes> {
        [Some(&self.config), Some(&self.tgz), self.prov.as_ref()]
            .into_iter()
            .flatten()
            .find(|b| Digest::of(b) == *digest)
    }
}

/// Builds the artifact from a chart package. `created` is RFC 3339 (`2024-01-02T03:04:05Z`).
pub fn build(tgz: Bytes, prov: Option<Bytes>, created: &str) -> Result<ChartArtifact, String> {
    let chart_yaml = chart_yaml(&tgz)?;
    let meta = Metadata::parse(&chart_yaml)?;
    if meta.name.is_empty() {
        return Err("its Chart.yaml has no `name`".into());
    }
    if meta.version.is_empty() {
        return Err("its Chart.yaml has no `version`".into());
    }
    let config = Bytes::from(meta.to_go_json());
    let mut layers = vec![(CHART_MEDIA_TYPE, &tgz)];
    if let Some(p) = &prov {
        layers.push((PROV_MEDIA_TYPE, p));
    }
    layers.sort_by_key(|(_, b)| Digest::of(b).to_string());
    let mut m = String::from("{\"schemaVersion\":2,\"config\":");
    m.push_str(&descriptor(CONFIG_MEDIA_TYPE, &config));
    m.push_str(",\"layers\":[");
    let ls: Vec<String> = layers.iter().map(|(t, b)| descriptor(t, b)).collect();
    m.push_str(&ls.join(","));
    m.push_str("],\"annotations\":");
    m.push_str(&go_map(&meta.annotations_for_manifest(created)));
    m.push('}');
    let manifest = Bytes::from(m.into_bytes());
    Ok(ChartArtifact {
        name: meta.name.clone(),
        version: meta.version.clone(),
        manifest_digest: Digest::of(&manifest),
        manifest,
        config,
        tgz,
        prov,
    })
}

fn descriptor(media_type: &str, content: &[u8]) -> String {
    format!(
        "{{\"mediaType\":{},\"digest\":{},\"size\":{}}}",
        go_str(media_type),
        go_str(&Digest::of(content).to_string()),
        content.len()
    )
}

/// `NAME/Chart.yaml` from the package (the first top-level directory's, as Helm's loader
/// takes it).
fn chart_yaml(tgz: &[u8]) -> Result<String, String> {
    let gz = flate2::read::GzDecoder::new(tgz);
    let mut ar = tar::Archive::new(gz);
    let entries = ar
        .entries()
        .map_err(|e| format!("it is not a gzip-compressed tar: {e}"))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("it is not a gzip-compressed tar: {e}"))?;
        let path = entry
            .path()
            .map_err(|e| format!("bad entry name: {e}"))?
            .to_string_lossy()
            .into_owned();
        let parts: Vec<&str> = path.trim_start_matches("./").split('/').collect();
        if parts.len() == 2 && parts[1] == "Chart.yaml" {
            let mut s = String::new();
            entry
                .by_ref()
                .take(1 << 20)
                .read_to_string(&mut s)
                .map_err(|e| format!("reading {path}: {e}"))?;
            return Ok(s);
        }
    }
    Err("it is not a Helm chart: it has no Chart.yaml".into())
}

/// `chart.Metadata` (helm `pkg/chart/v2/metadata.go`), the fields Helm's JSON has.
#[derive(Debug, Default)]
struct Metadata {
    name: String,
    home: String,
    sources: Vec<String>,
    version: String,
    description: String,
    keywords: Vec<String>,
    maintainers: Vec<[String; 3]>,
    icon: String,
    api_version: String,
    condition: String,
    tags: String,
    app_version: String,
    deprecated: bool,
    annotations: Vec<(String, String)>,
    kube_version: String,
    dependencies: Vec<Yaml<'static>>,
    kind: String,
}

impl Metadata {
    fn parse(text: &str) -> Result<Metadata, String> {
        let docs = Yaml::load_from_str(text).map_err(|e| format!("its Chart.yaml: {e}"))?;
        let root = docs.into_iter().next().unwrap_or(Yaml::Value(Scalar::Null));
        let Yaml::Mapping(map) = root else {
            return Err("its Chart.yaml is not a mapping".into());
        };
        let get = |k: &str| {
            map.iter()
                .find(|(key, _)| scalar(key).as_deref() == Some(k))
                .map(|(_, v)| v)
        };
        let s = |k: &str| get(k).and_then(scalar).unwrap_or_default();
        let list = |k: &str| match get(k) {
            Some(Yaml::Sequence(items)) => items.iter().filter_map(scalar).collect(),
            _ => Vec::new(),
        };
        let mut m = Metadata {
            name: sanitize(&s("name")),
            home: sanitize(&s("home")),
            sources: list("sources").iter().map(|x| sanitize(x)).collect(),
            version: s("version"),
            description: sanitize(&s("description")),
            keywords: list("keywords").iter().map(|x| sanitize(x)).collect(),
            icon: sanitize(&s("icon")),
            api_version: s("apiVersion"),
            condition: sanitize(&s("condition")),
            tags: sanitize(&s("tags")),
            app_version: sanitize(&s("appVersion")),
            deprecated: matches!(get("deprecated"), Some(Yaml::Value(Scalar::Boolean(true)))),
            kube_version: sanitize(&s("kubeVersion")),
            kind: s("type"),
            ..Metadata::default()
        };
        if m.api_version.is_empty() {
            // Helm's loader: a chart without apiVersion is a v1 chart.
            m.api_version = "v1".into();
        }
        if let Some(Yaml::Sequence(items)) = get("maintainers") {
            for it in items {
                let f = |k: &str| match it {
                    Yaml::Mapping(mm) => mm
                        .iter()
                        .find(|(key, _)| scalar(key).as_deref() == Some(k))
                        .and_then(|(_, v)| scalar(v))
                        .map(|v| sanitize(&v))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                m.maintainers.push([f("name"), f("email"), f("url")]);
            }
        }
        if let Some(Yaml::Mapping(a)) = get("annotations") {
            let mut v: Vec<(String, String)> = a
                .iter()
                .filter_map(|(k, v)| Some((scalar(k)?, scalar(v).unwrap_or_default())))
                .collect();
            v.sort();
            m.annotations = v;
        }
        if let Some(Yaml::Sequence(items)) = get("dependencies") {
            m.dependencies = items.iter().map(owned).collect();
        }
        Ok(m)
    }

    /// `json.Marshal(meta)`: struct fields in declaration order, empty ones left out.
    fn to_go_json(&self) -> String {
        let mut f: Vec<String> = Vec::new();
        let str_field = |f: &mut Vec<String>, k: &str, v: &str| {
            if !v.is_empty() {
                f.push(format!("{}:{}", go_str(k), go_str(v)));
            }
        };
        let list = |v: &[String]| {
            let items: Vec<String> = v.iter().map(|s| go_str(s)).collect();
            format!("[{}]", items.join(","))
        };
        str_field(&mut f, "name", &self.name);
        str_field(&mut f, "home", &self.home);
        if !self.sources.is_empty() {
            f.push(format!("\"sources\":{}", list(&self.sources)));
        }
        str_field(&mut f, "version", &self.version);
        str_field(&mut f, "description", &self.description);
        if !self.keywords.is_empty() {
            f.push(format!("\"keywords\":{}", list(&self.keywords)));
        }
        if !self.maintainers.is_empty() {
            let ms: Vec<String> = self
                .maintainers
                .iter()
                .map(|[n, e, u]| {
                    let mut mf = Vec::new();
                    str_field(&mut mf, "name", n);
                    str_field(&mut mf, "email", e);
                    str_field(&mut mf, "url", u);
                    format!("{{{}}}", mf.join(","))
                })
                .collect();
            f.push(format!("\"maintainers\":[{}]", ms.join(",")));
        }
        str_field(&mut f, "icon", &self.icon);
        str_field(&mut f, "apiVersion", &self.api_version);
        str_field(&mut f, "condition", &self.condition);
        str_field(&mut f, "tags", &self.tags);
        str_field(&mut f, "appVersion", &self.app_version);
        if self.deprecated {
            f.push("\"deprecated\":true".into());
        }
        if !self.annotations.is_empty() {
            f.push(format!("\"annotations\":{}", go_map(&self.annotations)));
        }
        str_field(&mut f, "kubeVersion", &self.kube_version);
        if !self.dependencies.is_empty() {
            let ds: Vec<String> = self.dependencies.iter().map(dependency).collect();
            f.push(format!("\"dependencies\":[{}]", ds.join(",")));
        }
        str_field(&mut f, "type", &self.kind);
        format!("{{{}}}", f.join(","))
    }

    /// `generateOCIAnnotations`: description, title, version, url, created, source, authors,
    /// then the chart's annotations except title and version; Go writes the map sorted.
    fn annotations_for_manifest(&self, created: &str) -> Vec<(String, String)> {
        let mut a: std::collections::BTreeMap<String, String> = Default::default();
        let mut add = |k: &str, v: &str| {
            if !v.trim().is_empty() {
                a.insert(format!("org.opencontainers.image.{k}"), v.to_string());
            }
        };
        add("description", &self.description);
        add("title", &self.name);
        add("version", &self.version);
        add("url", &self.home);
        add("created", created);
        if let Some(s) = self.sources.first() {
            add("source", s);
        }
        if !self.maintainers.is_empty() {
            let authors: Vec<String> = self
                .maintainers
                .iter()
                .map(|[n, e, _]| {
                    let mut s = n.clone();
                    if !e.is_empty() {
                        s.push_str(&format!(" ({e})"));
                    }
                    s
                })
                .collect();
            add("authors", &authors.join(", "));
        }
        for (k, v) in &self.annotations {
            if k != "org.opencontainers.image.version" && k != "org.opencontainers.image.title" {
                a.insert(k.clone(), v.clone());
            }
        }
        a.into_iter().collect()
    }
}

/// One `chart.Dependency`: name, version, repository (always written), condition, tags,
/// enabled, import-values, alias.
fn dependency(d: &Yaml) -> String {
    let get = |k: &str| match d {
        Yaml::Mapping(m) => m
            .iter()
            .find(|(key, _)| scalar(key).as_deref() == Some(k))
            .map(|(_, v)| v),
        _ => None,
    };
    let s = |k: &str| get(k).and_then(scalar).unwrap_or_default();
    let mut f = vec![format!("\"name\":{}", go_str(&s("name")))];
    if !s("version").is_empty() {
        f.push(format!("\"version\":{}", go_str(&s("version"))));
    }
    f.push(format!("\"repository\":{}", go_str(&s("repository"))));
    if !s("condition").is_empty() {
        f.push(format!("\"condition\":{}", go_str(&s("condition"))));
    }
    if let Some(Yaml::Sequence(t)) = get("tags") {
        if !t.is_empty() {
            let items: Vec<String> = t.iter().filter_map(scalar).map(|x| go_str(&x)).collect();
            f.push(format!("\"tags\":[{}]", items.join(",")));
        }
    }
    if matches!(get("enabled"), Some(Yaml::Value(Scalar::Boolean(true)))) {
        f.push("\"enabled\":true".into());
    }
    if let Some(Yaml::Sequence(iv)) = get("import-values") {
        if !iv.is_empty() {
            let items: Vec<String> = iv.iter().map(go_any).collect();
            f.push(format!("\"import-values\":[{}]", items.join(",")));
        }
    }
    if !s("alias").is_empty() {
        f.push(format!("\"alias\":{}", go_str(&s("alias"))));
    }
    format!("{{{}}}", f.join(","))
}

/// Any YAML value as Go writes an `any` decoded from it (maps with sorted keys).
fn go_any(v: &Yaml) -> String {
    match v {
        Yaml::Sequence(items) => {
            let xs: Vec<String> = items.iter().map(go_any).collect();
            format!("[{}]", xs.join(","))
        }
        Yaml::Mapping(m) => {
            let mut kv: Vec<(String, String)> = m
                .iter()
                .map(|(k, v)| (scalar(k).unwrap_or_default(), go_any(v)))
                .collect();
            kv.sort();
            let xs: Vec<String> = kv
                .iter()
                .map(|(k, v)| format!("{}:{v}", go_str(k)))
                .collect();
            format!("{{{}}}", xs.join(","))
        }
        Yaml::Value(Scalar::Null) => "null".into(),
        Yaml::Value(Scalar::Boolean(b)) => b.to_string(),
        Yaml::Value(Scalar::Integer(i)) => i.to_string(),
        Yaml::Value(Scalar::FloatingPoint(f)) => f.to_string(),
        other => go_str(&scalar(other).unwrap_or_default()),
    }
}

fn owned(v: &Yaml) -> Yaml<'static> {
    match v {
        Yaml::Sequence(items) => Yaml::Sequence(items.iter().map(owned).collect()),
        Yaml::Mapping(m) => Yaml::Mapping(m.iter().map(|(k, v)| (owned(k), owned(v))).collect()),
        Yaml::Value(Scalar::String(s)) => Yaml::Value(Scalar::String(s.to_string().into())),
        Yaml::Value(Scalar::Null) => Yaml::Value(Scalar::Null),
        Yaml::Value(Scalar::Boolean(b)) => Yaml::Value(Scalar::Boolean(*b)),
        Yaml::Value(Scalar::Integer(i)) => Yaml::Value(Scalar::Integer(*i)),
        Yaml::Value(Scalar::FloatingPoint(f)) => Yaml::Value(Scalar::FloatingPoint(*f)),
        _ => Yaml::Value(Scalar::Null),
    }
}

/// A scalar as the string a Go string field gets from it.
fn scalar(v: &Yaml) -> Option<String> {
    match v {
        Yaml::Value(Scalar::String(s)) => Some(s.to_string()),
        Yaml::Value(Scalar::Integer(i)) => Some(i.to_string()),
        Yaml::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        Yaml::Value(Scalar::Boolean(b)) => Some(b.to_string()),
        Yaml::Representation(s, _, _) => Some(s.to_string()),
        _ => None,
    }
}

/// Helm's `sanitizeString`: white space becomes a space, other unprintable characters go.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter_map(|c| {
            if c.is_whitespace() {
                Some(' ')
            } else if c.is_control() {
                None
            } else {
                Some(c)
            }
        })
        .collect()
}

/// A `map[string]string` as Go writes it: keys sorted.
fn go_map(kv: &[(String, String)]) -> String {
    let mut kv = kv.to_vec();
    kv.sort();
    let xs: Vec<String> = kv
        .iter()
        .map(|(k, v)| format!("{}:{}", go_str(k), go_str(v)))
        .collect();
    format!("{{{}}}", xs.join(","))
}

/// A string as Go's `encoding/json` writes it: HTML-safe (`<`, `>`, `&` as `\u003c` …),
/// U+2028/U+2029 escaped, control characters as `\n`, `\r`, `\t` or `\u00XX`.
pub fn go_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tgz(files: &[(&str, &str)]) -> Bytes {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, body.as_bytes()).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        Bytes::from(gz.finish().unwrap())
    }

    /// The expected bytes are written out by hand from Helm's Go structs (see the module doc):
    /// independent of the code that builds them.
    #[test]
    fn config_and_manifest_are_helms_bytes() {
        let chart =
            "apiVersion: v2\nname: demo\nversion: 1.2.3+build.4\ndescription: A <demo> & co\n\
                     type: application\nappVersion: \"2.0\"\nhome: https://example.com\n\
                     sources: [https://git.example.com/demo]\nkeywords: [a, b]\n\
                     maintainers:\n  - name: Ann\n    email: ann@example.com\n  - name: Bob\n\
                     annotations:\n  z.example/x: \"1\"\n  org.opencontainers.image.title: nope\n\
                     dependencies:\n  - name: dep\n    version: 0.1.0\n    repository: oci://r/x\n";
        let pkg = tgz(&[("demo/Chart.yaml", chart), ("demo/values.yaml", "a: 1\n")]);
        let a = build(pkg.clone(), None, "2024-01-02T03:04:05Z").unwrap();
        let config = r#"{"name":"demo","home":"https://example.com","sources":["https://git.example.com/demo"],"version":"1.2.3+build.4","description":"A \u003cdemo\u003e \u0026 co","keywords":["a","b"],"maintainers":[{"name":"Ann","email":"ann@example.com"},{"name":"Bob"}],"apiVersion":"v2","appVersion":"2.0","annotations":{"org.opencontainers.image.title":"nope","z.example/x":"1"},"dependencies":[{"name":"dep","version":"0.1.0","repository":"oci://r/x"}],"type":"application"}"#;
        assert_eq!(std::str::from_utf8(&a.config).unwrap(), config);
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","digest":"{}","size":{}}}],"annotations":{{"org.opencontainers.image.authors":"Ann (ann@example.com), Bob","org.opencontainers.image.created":"2024-01-02T03:04:05Z","org.opencontainers.image.description":"A \u003cdemo\u003e \u0026 co","org.opencontainers.image.source":"https://git.example.com/demo","org.opencontainers.image.title":"demo","org.opencontainers.image.url":"https://example.com","org.opencontainers.image.version":"1.2.3+build.4","z.example/x":"1"}}}}"#,
            Digest::of(config.as_bytes()),
            config.len(),
            Digest::of(&pkg),
            pkg.len()
        );
        assert_eq!(std::str::from_utf8(&a.manifest).unwrap(), manifest);
        assert_eq!(crate::spec::chart_tag(&a.version), "1.2.3_build.4");
    }

    #[test]
    fn a_tgz_without_chart_yaml_is_refused() {
        let pkg = tgz(&[("demo/values.yaml", "a: 1\n")]);
        let e = build(pkg, None, "2024-01-02T03:04:05Z").unwrap_err();
        assert!(e.contains("no Chart.yaml"), "{e}");
        let e = build(Bytes::from_static(b"not gzip"), None, "x").unwrap_err();
        assert!(e.contains("not a gzip"), "{e}");
    }

    #[test]
    fn provenance_is_a_second_layer_sorted_by_digest() {
        let pkg = tgz(&[("demo/Chart.yaml", "name: demo\nversion: 1.0.0\n")]);
        let prov = Bytes::from_static(b"-----BEGIN PGP SIGNED MESSAGE-----\n");
        let a = build(pkg.clone(), Some(prov.clone()), "2024-01-02T03:04:05Z").unwrap();
        let m: serde_json::Value = serde_json::from_slice(&a.manifest).unwrap();
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        let mut want = [Digest::of(&pkg).to_string(), Digest::of(&prov).to_string()];
        want.sort();
        assert_eq!(layers[0]["digest"], want[0]);
        assert_eq!(layers[1]["digest"], want[1]);
        // A chart without apiVersion is a v1 chart to Helm.
        assert!(std::str::from_utf8(&a.config)
            .unwrap()
            .contains("\"apiVersion\":\"v1\""));
    }
}
