//! Where manifests hold image references besides pod specs: fields a user declares (by kind,
//! API group and path) and the container `env` variables that hold related images.
//!
//! The rules come from the spec (`imageFields:`, `relatedImageEnv:`), travel in the bundle's
//! `airgap.json` (`imageRules`), and can be added to with `--image-field` on `rewrite` and
//! `load`. Shared by spec parsing, the bundle metadata and the rewriter, so it depends on
//! nothing.

use serde::{Deserialize, Serialize};

/// The OpenShift operator convention: `RELATED_IMAGE_*` variables hold the images an
/// operator deploys.
pub const DEFAULT_RELATED_IMAGE_ENV: &str = "RELATED_IMAGE_*";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRules {
    /// Declared fields holding full image references.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<ImageField>,
    /// Patterns (`*` matches any characters) of container `env` names whose values are image
    /// references.
    #[serde(default = "default_env")]
    pub related_image_env: Vec<String>,
}

fn default_env() -> Vec<String> {
    vec![DEFAULT_RELATED_IMAGE_ENV.to_string()]
}

impl Default for ImageRules {
    fn default() -> Self {
        ImageRules {
            fields: Vec::new(),
            related_image_env: default_env(),
        }
    }
}

impl ImageRules {
    pub fn is_default(&self) -> bool {
        *self == ImageRules::default()
    }

    /// Whether a container `env` variable of this name holds an image reference.
    pub fn is_related_image_env(&self, name: &str) -> bool {
        self.related_image_env.iter().any(|p| glob(p, name))
    }

    /// The rules in force when a command's flags (`--image-field`, `--related-image-env`)
    /// meet a bundle's (or the defaults): the fields of both; the flags' variable patterns
    /// when they give any, else the base's.
    pub fn merged(base: &ImageRules, flags: &ImageRules) -> ImageRules {
        let mut out = base.clone().with_fields(&flags.fields);
        if !flags.related_image_env.is_empty() {
            out.related_image_env = flags.related_image_env.clone();
        }
        out
    }

    /// These rules with `more` fields added (duplicates dropped).
    pub fn with_fields(mut self, more: &[ImageField]) -> Self {
        for f in more {
            if !self.fields.contains(f) {
                self.fields.push(f.clone());
            }
        }
        self
    }
}

/// A declared place holding an image reference: every object of `kind` (in API group
/// `group`, any when absent) has one at `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageField {
    pub kind: String,
    /// The API group (`monitoring.coreos.com`); `""` is the core group; absent: any group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Dotted keys from the object's root, `[]` after a key for every item of a list:
    /// `spec.image`, `spec.sidecars[].image`.
    pub path: String,
    /// A sibling key holding the tag (or `sha256:` digest) when the reference is split in
    /// two (`ArgoCD` `spec.image` + `spec.version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// A sibling key set to `IfNotPresent` when the image is rewritten.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    /// Where the pull secret goes (`--pull-secret`): dotted keys to a list of `{name: …}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secrets: Option<String>,
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    /// Every item of the list reached so far.
    Each,
}

impl ImageField {
    /// Parses `--image-field KIND[.GROUP]:PATH[,tag=KEY][,pullPolicy=KEY][,pullSecrets=PATH]`.
    pub fn parse_flag(text: &str) -> Result<ImageField, String> {
        let (selector, rest) = text.split_once(':').ok_or(
            "expected KIND[.GROUP]:PATH, e.g. Prometheus.monitoring.coreos.com:spec.image",
        )?;
        let (kind, group) = match selector.split_once('.') {
            Some((k, g)) => (k, Some(g.to_string())),
            None => (selector, None),
        };
        let mut parts = rest.split(',');
        let mut field = ImageField {
            kind: kind.to_string(),
            group,
            path: parts.next().unwrap_or("").to_string(),
            tag: None,
            pull_policy: None,
            pull_secrets: None,
        };
        for option in parts {
            let (k, v) = option.split_once('=').ok_or_else(|| {
                format!("{option:?}: expected tag=KEY, pullPolicy=KEY or pullSecrets=PATH")
            })?;
            let slot = match k {
                "tag" => &mut field.tag,
                "pullPolicy" => &mut field.pull_policy,
                "pullSecrets" => &mut field.pull_secrets,
                other => {
                    return Err(format!(
                        "unknown option {other:?}: expected tag, pullPolicy or pullSecrets"
                    ))
                }
            };
            *slot = Some(v.to_string());
        }
        field.validate()?;
        Ok(field)
    }

    /// Checks every part; the message says which one is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.kind.is_empty() || !self.kind.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!(
                "kind {:?}: expected a Kubernetes kind such as Prometheus",
                self.kind
            ));
        }
        parse_path(&self.path).map_err(|e| format!("path {:?}: {e}", self.path))?;
        if matches!(parse_path(&self.path)?.last(), Some(Step::Each)) {
            return Err(format!("path {:?}: must end with a key, not []", self.path));
        }
        for (what, key) in [("tag", &self.tag), ("pullPolicy", &self.pull_policy)] {
            if let Some(k) = key {
                if k.is_empty() || k.contains(['.', '[', ']']) {
                    return Err(format!(
                        "{what} {k:?}: expected one key, a sibling of the image field"
                    ));
                }
            }
        }
        if let Some(p) = &self.pull_secrets {
            let steps = parse_path(p).map_err(|e| format!("pullSecrets {p:?}: {e}"))?;
            if steps.contains(&Step::Each) {
                return Err(format!("pullSecrets {p:?}: expected keys only, no []"));
            }
        }
        Ok(())
    }

    /// The path's steps (validated when the field was made).
    pub fn steps(&self) -> Vec<Step> {
        parse_path(&self.path).unwrap_or_default()
    }

    /// Whether an object with this `kind` and `apiVersion` has the field.
    pub fn applies_to(&self, kind: &str, api_version: Option<&str>) -> bool {
        if kind != self.kind {
            return false;
        }
        let Some(group) = &self.group else {
            return true;
        };
        let actual = match api_version.and_then(|v| v.split_once('/')) {
            Some((g, _)) => g,
            None => "",
        };
        actual == group || (group == "core" && actual.is_empty())
    }

    /// `Kind.group spec.image`, for messages.
    pub fn describe(&self) -> String {
        match &self.group {
            Some(g) if !g.is_empty() => format!("{}.{} {}", self.kind, g, self.path),
            _ => format!("{} {}", self.kind, self.path),
        }
    }
}

/// `spec.containers[].image` → keys and `[]` steps.
pub fn parse_path(text: &str) -> Result<Vec<Step>, String> {
    if text.is_empty() {
        return Err("empty".to_string());
    }
    let mut steps = Vec::new();
    for part in text.split('.') {
        let (key, each) = match part.strip_suffix("[]") {
            Some(k) => (k, true),
            None => (part, false),
        };
        if key.is_empty() || key.contains(['[', ']']) {
            return Err(format!("{part:?} is not a key (write a.b[].c)"));
        }
        steps.push(Step::Key(key.to_string()));
        if each {
            steps.push(Step::Each);
        }
    }
    Ok(steps)
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_syntax() {
        let f = ImageField::parse_flag(
            "Prometheus.monitoring.coreos.com:spec.image,pullPolicy=imagePullPolicy,pullSecrets=spec.imagePullSecrets",
        )
        .unwrap();
        assert_eq!(f.kind, "Prometheus");
        assert_eq!(f.group.as_deref(), Some("monitoring.coreos.com"));
        assert_eq!(f.path, "spec.image");
        assert_eq!(f.pull_policy.as_deref(), Some("imagePullPolicy"));
        assert_eq!(f.pull_secrets.as_deref(), Some("spec.imagePullSecrets"));
        let a = ImageField::parse_flag("ArgoCD:spec.image,tag=version").unwrap();
        assert_eq!((a.group, a.tag.as_deref()), (None, Some("version")));
        assert_eq!(
            ImageField::parse_flag("X:spec.sidecars[].image")
                .unwrap()
                .steps(),
            [
                Step::Key("spec".into()),
                Step::Key("sidecars".into()),
                Step::Each,
                Step::Key("image".into())
            ]
        );
    }

    #[test]
    fn bad_flags_say_what_is_wrong() {
        for (flag, needle) in [
            ("Prometheus", "expected KIND[.GROUP]:PATH"),
            ("Prometheus:", "path \"\": empty"),
            ("Prometheus:spec..image", "is not a key"),
            ("Prometheus:spec.images[]", "must end with a key"),
            ("Prom-etheus:spec.image", "kind \"Prom-etheus\""),
            ("P:spec.image,color=red", "unknown option \"color\""),
            ("P:spec.image,tag", "expected tag=KEY"),
            ("P:spec.image,tag=a.b", "tag \"a.b\": expected one key"),
            ("P:spec.image,pullSecrets=spec.s[]", "expected keys only"),
        ] {
            let e = ImageField::parse_flag(flag).unwrap_err();
            assert!(e.contains(needle), "{flag}: {e}");
        }
    }

    #[test]
    fn groups_and_kinds() {
        let f = ImageField::parse_flag("Prometheus.monitoring.coreos.com:spec.image").unwrap();
        assert!(f.applies_to("Prometheus", Some("monitoring.coreos.com/v1")));
        assert!(!f.applies_to("Prometheus", Some("example.com/v1")));
        assert!(!f.applies_to("Alertmanager", Some("monitoring.coreos.com/v1")));
        let any = ImageField::parse_flag("Prometheus:spec.image").unwrap();
        assert!(any.applies_to("Prometheus", Some("example.com/v1")));
        let core = ImageField::parse_flag("ConfigMap.core:data.image").unwrap();
        assert!(core.applies_to("ConfigMap", Some("v1")));
        assert!(!core.applies_to("ConfigMap", Some("example.com/v1")));
    }

    #[test]
    fn env_patterns() {
        let r = ImageRules::default();
        assert!(r.is_related_image_env("RELATED_IMAGE_FOO"));
        assert!(!r.is_related_image_env("IMAGE_FOO"));
        let custom = ImageRules {
            related_image_env: vec!["*_IMAGE".into(), "OPERAND_*_REF".into()],
            ..ImageRules::default()
        };
        assert!(custom.is_related_image_env("AGENT_IMAGE"));
        assert!(custom.is_related_image_env("OPERAND_DB_REF"));
        assert!(!custom.is_related_image_env("RELATED_IMAGE_FOO"));
        assert!(!custom.is_related_image_env("OPERAND_REF"));
        assert!(glob("A*", "A") && glob("*", "") && !glob("AB*B", "AB"));
    }

    #[test]
    fn default_rules_are_left_out_of_json() {
        let json = serde_json::to_string(&ImageRules::default()).unwrap();
        let back: ImageRules = serde_json::from_str(&json).unwrap();
        assert!(back.is_default());
        let none: ImageRules = serde_json::from_str("{}").unwrap();
        assert!(none.is_default());
    }
}
