use crate::digest::Digest;

/// Errors from talking to a registry. Every variant names the registry; none ever holds a
/// password or token.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("authentication failed at registry {registry}{} (HTTP {status}): {message}. Check the credentials for {registry} (spec usernameEnv/passwordEnv, --username/--password-stdin, or docker config.json)", in_repo(" for", .repository))]
    Auth {
        registry: String,
        repository: String,
        status: u16,
        message: String,
    },
    #[error("registry {registry} refused {action}{} (HTTP {status}: permission denied; the credentials were accepted but lack the right to do this): {message}", in_repo(" on", .repository))]
    Denied {
        registry: String,
        repository: String,
        action: String,
        /// 403, or 401 when a token was refused for lack of scope (`insufficient_scope`).
        status: u16,
        message: String,
    },
    #[error("{what} not found at registry {registry}{}: {message}", in_repo(" in", .repository))]
    NotFound {
        registry: String,
        repository: String,
        what: String,
        message: String,
    },
    #[error("registry {registry} answered HTTP {status} to {action}{}: {message}", in_repo(" on", .repository))]
    Status {
        registry: String,
        repository: String,
        action: String,
        status: u16,
        message: String,
    },
    /// A manifest PUT refused because the registry does not see blobs (or child manifests)
    /// it references in the repository; `missing` holds the digests it named.
    #[error("registry {registry} refused manifest {reference}{} (HTTP {status}): it does not see {} in the repository: {message}", in_repo(" on", .repository), join_digests(.missing))]
    ManifestBlobUnknown {
        registry: String,
        repository: String,
        reference: String,
        missing: Vec<Digest>,
        status: u16,
        message: String,
    },
    #[error("cannot reach registry {registry} at {url}: {reason}")]
    Connect {
        registry: String,
        url: String,
        reason: String,
    },
    #[error("registry {registry} served {what} whose content does not match digest {expected} (got {actual})")]
    DigestMismatch {
        registry: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("registry {registry} served {what} of {actual} bytes, expected {expected}")]
    SizeMismatch {
        registry: String,
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("registry {registry} served manifest {what} larger than the {limit}-byte limit")]
    ManifestTooLarge {
        registry: String,
        what: String,
        limit: u64,
    },
    #[error("registry {registry}: {message}")]
    Protocol { registry: String, message: String },
    #[error("TLS/client set-up failed: {0}")]
    Setup(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// `" for REPO"` (with `word`), or nothing for requests outside any repository (`/v2/`).
fn in_repo(word: &str, repository: &str) -> String {
    if repository.is_empty() {
        String::new()
    } else {
        format!("{word} {repository}")
    }
}

fn join_digests(d: &[Digest]) -> String {
    d.iter().map(Digest::as_str).collect::<Vec<_>>().join(", ")
}

impl RegistryError {
    /// Advice for the user (the registry helper moves the advice out of the messages).
    pub fn hint(&self) -> Option<String> {
        None
    }

    /// Worth another attempt: the network or the server hiccuped.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Connect { .. } => true,
            RegistryError::Status { status, .. } => matches!(status, 429 | 500 | 502 | 503 | 504),
            _ => false,
        }
    }
}

/// Describes a reqwest error without its URL query (upload URLs can carry state tokens) and
/// with the underlying cause, which reqwest hides behind "error sending request".
pub(crate) fn describe(e: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = e.source();
    let mut seen = Vec::new();
    while let Some(s) = src {
        let text = s.to_string();
        if !seen.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
            seen.push(text);
        }
        src = s.source();
    }
    msg
}

/// Pulls the human part out of a registry error body (`{"errors":[{"message":…}]}`), or a
/// short, single-line excerpt when it is HTML or something else.
pub(crate) fn body_message(body: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(body) {
        let parts: Vec<String> = e
            .errors
            .iter()
            .map(|i| format!("{} {}", i.code, i.message).trim().to_string())
            .collect();
        if !parts.is_empty() {
            return parts.join("; ");
        }
    }
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return "no details".to_string();
    }
    if trimmed.starts_with('<') {
        return "the server returned an HTML page, not a registry API answer (is this URL a registry?)".into();
    }
    let one_line: String = trimmed.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}

/// The digests a manifest PUT's error body names as unknown (`MANIFEST_BLOB_UNKNOWN`, or
/// `BLOB_UNKNOWN` from some registries). Distribution puts the digest string in `detail`;
/// others nest it in an object, so every digest-shaped string in `detail` counts.
pub(crate) fn unknown_blobs(body: &str) -> Vec<Digest> {
    fn collect(v: &serde_json::Value, out: &mut Vec<Digest>) {
        match v {
            serde_json::Value::String(s) => {
                if let Ok(d) = Digest::parse(s.trim()) {
                    if !out.contains(&d) {
                        out.push(d);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            serde_json::Value::Object(m) => m.values().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return out;
    };
    for e in v["errors"].as_array().into_iter().flatten() {
        if matches!(
            e["code"].as_str(),
            Some("MANIFEST_BLOB_UNKNOWN" | "BLOB_UNKNOWN")
        ) {
            collect(&e["detail"], &mut out);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "sha256:fa5c69c06d0b7a22d7a2bc763fa454c189f06521744a551657113271788b2eba";
    const B: &str = "sha256:63f545fd62955f0fe0a34365e2cd64fb172e30693b1fb5ba6a01de5ea11c9059";

    #[test]
    fn unknown_blobs_from_error_bodies() {
        // distribution 2.8 after a torn read of a link file: DIGEST_INVALID beside the digest.
        let body = format!(
            r#"{{"errors":[{{"code":"DIGEST_INVALID","message":"provided digest did not match uploaded content"}},{{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"{A}"}},{{"code":"MANIFEST_BLOB_UNKNOWN","message":"blob unknown to registry","detail":"{B}"}},{{"code":"MANIFEST_BLOB_UNKNOWN","detail":"{A}"}}]}}"#
        );
        let want = vec![Digest::parse(A).unwrap(), Digest::parse(B).unwrap()];
        assert_eq!(unknown_blobs(&body), want);
        let nested =
            format!(r#"{{"errors":[{{"code":"BLOB_UNKNOWN","detail":{{"digest":"{A}"}}}}]}}"#);
        assert_eq!(unknown_blobs(&nested), want[..1].to_vec());
        // Other codes, digests outside `detail`, and non-JSON bodies name nothing.
        let other = format!(
            r#"{{"errors":[{{"code":"MANIFEST_INVALID","detail":"{A}","message":"{B}"}}]}}"#
        );
        assert!(unknown_blobs(&other).is_empty());
        assert!(unknown_blobs("<html>bad gateway</html>").is_empty());
        assert!(unknown_blobs(r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN"}]}"#).is_empty());
    }
}
