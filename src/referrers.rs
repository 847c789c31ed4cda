//! What refers to an image (signatures, attestations, SBOMs): the cosign tag names, the OCI
//! 1.1 referrer descriptor, and the referrers tag-schema index. Shared by pack (discovery),
//! load (pushing, the tag-schema index) and serve (the referrers API).

use serde_json::Value;

use crate::digest::Digest;
use crate::manifest::OCI_INDEX;

/// The suffixes of cosign's tag-scheme attachments: `sha256-<hex>.sig` and so on.
pub const COSIGN_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// `sha256-<hex>`: the referrers tag schema's tag for `subject` (and cosign's tag prefix).
pub fn schema_tag(subject: &Digest) -> String {
    subject.as_str().replacen(':', "-", 1)
}

/// `sha256-<hex>.<suffix>`: a cosign attachment tag.
pub fn cosign_tag(subject: &Digest, suffix: &str) -> String {
    format!("{}.{suffix}", schema_tag(subject))
}

/// What a manifest says about itself as a referrer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferrerFacts {
    /// The manifest's `subject` digest, when it names one.
    pub subject: Option<Digest>,
    /// `artifactType`, else the config's media type (the OCI 1.1 rule for descriptors).
    pub artifact_type: Option<String>,
    pub annotations: Option<Value>,
}

/// Reads `subject`, `artifactType` (or the config media type) and `annotations`.
pub fn facts(bytes: &[u8]) -> ReferrerFacts {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return ReferrerFacts::default();
    };
    let subject = v
        .pointer("/subject/digest")
        .and_then(Value::as_str)
        .and_then(|s| Digest::parse(s).ok());
    let artifact_type = v
        .get("artifactType")
        .and_then(Value::as_str)
        .or_else(|| v.pointer("/config/mediaType").and_then(Value::as_str))
        .map(str::to_string);
    let annotations = v
        .get("annotations")
        .filter(|a| a.as_object().is_some_and(|o| !o.is_empty()))
        .cloned();
    ReferrerFacts {
        subject,
        artifact_type,
        annotations,
    }
}

/// The descriptor of a referrer as a referrers index lists it: media type, digest, size,
/// artifactType and the manifest's annotations.
pub fn descriptor(media_type: &str, digest: &Digest, bytes: &[u8]) -> Value {
    let f = facts(bytes);
    let mut d = serde_json::json!({
        "mediaType": media_type,
        "digest": digest,
        "size": bytes.len(),
    });
    if let Some(t) = f.artifact_type {
        d["artifactType"] = Value::String(t);
    }
    if let Some(a) = f.annotations {
        d["annotations"] = a;
    }
    d
}

/// An OCI image index of `descriptors` (the referrers API's answer, the tag-schema index).
pub fn index(descriptors: Vec<Value>) -> Vec<u8> {
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": descriptors,
    });
    serde_json::to_vec(&v).expect("an index serialises")
}

/// The descriptors of an index's `manifests` (empty for anything else).
pub fn index_descriptors(bytes: &[u8]) -> Vec<Value> {
    serde_json::from_slice::<Value>(bytes)
        .ok()
        .and_then(|v| v.get("manifests").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// The digest a descriptor names.
pub fn descriptor_digest(d: &Value) -> Option<Digest> {
    d.get("digest")
        .and_then(Value::as_str)
        .and_then(|s| Digest::parse(s).ok())
}

/// `existing` (a tag-schema index's descriptors, kept as they are) with those of `ours` it
/// lacks appended; `None` when it lacks none (nothing to write).
pub fn merge(existing: &[Value], ours: &[Value]) -> Option<Vec<Value>> {
    let have: Vec<Digest> = existing.iter().filter_map(descriptor_digest).collect();
    let new: Vec<Value> = ours
        .iter()
        .filter(|d| descriptor_digest(d).is_some_and(|x| !have.contains(&x)))
        .cloned()
        .collect();
    if new.is_empty() {
        return None;
    }
    Some(existing.iter().cloned().chain(new).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_descriptors() {
        let d = Digest::of(b"x");
        assert_eq!(schema_tag(&d), format!("sha256-{}", d.hex()));
        assert_eq!(cosign_tag(&d, "sig"), format!("sha256-{}.sig", d.hex()));
        let m = br#"{"schemaVersion":2,"artifactType":"application/spdx+json","config":{"mediaType":"application/vnd.oci.empty.v1+json"},"annotations":{"a":"b"},"subject":{"digest":"sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"}}"#;
        let f = facts(m);
        assert_eq!(f.artifact_type.as_deref(), Some("application/spdx+json"));
        assert_eq!(f.subject, Some(d.clone()));
        let desc = descriptor("application/vnd.oci.image.manifest.v1+json", &d, m);
        assert_eq!(desc["annotations"]["a"], "b");
        let cosign = br#"{"config":{"mediaType":"application/vnd.oci.image.config.v1+json"}}"#;
        assert_eq!(
            facts(cosign).artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(facts(cosign).subject, None);
    }

    #[test]
    fn merge_keeps_what_is_there_and_adds_only_the_missing() {
        let a = serde_json::json!({"digest": Digest::of(b"a"), "x": 1});
        let b = serde_json::json!({"digest": Digest::of(b"b")});
        let one = std::slice::from_ref(&a);
        assert_eq!(merge(one, one), None);
        assert_eq!(
            merge(one, &[b.clone(), a.clone()]),
            Some(vec![a.clone(), b])
        );
    }
}
