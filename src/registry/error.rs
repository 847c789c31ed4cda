use crate::digest::Digest;
use crate::fsutil::FileError;

/// Errors from talking to a registry. Every variant names the registry; none ever holds a
/// password or token. Advice for the user is in [`RegistryError::hint`], not the messages.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("authentication failed at registry {registry}{} (HTTP {status}): {message}", in_repo(" for", .repository))]
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
    #[error("registry {registry} answered HTTP {status} to {action}{}: {message}{}", in_repo(" on", .repository), after(*.attempts))]
    Status {
        registry: String,
        repository: String,
        action: String,
        status: u16,
        message: String,
        /// Requests made, retries included.
        attempts: u32,
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
    #[error("cannot reach registry {registry} at {url}: {reason}{}", after(*.attempts))]
    Connect {
        registry: String,
        url: String,
        reason: String,
        /// Requests made, retries included.
        attempts: u32,
    },
    /// A proxy between us and the registry refused to forward (407: it wants credentials,
    /// or the ones in the proxy URL are wrong).
    #[error("proxy {proxy} refused to forward requests to registry {registry} (HTTP {status}): {message}")]
    ProxyRefused {
        registry: String,
        /// The proxy URL with its password masked.
        proxy: String,
        status: u16,
        message: String,
    },
    /// A proxy variable of the environment that is not a usable proxy URL.
    #[error("{variable}={value:?} is not a usable proxy: {reason}")]
    ProxyConfig {
        variable: String,
        /// The value, any password masked.
        value: String,
        reason: String,
    },
    /// The TLS handshake failed (an unknown CA, a name mismatch, a plain-HTTP server…):
    /// told by the error's type, never retried.
    #[error("TLS failure with registry {registry} at {url}: {reason}")]
    Tls {
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
    /// The connection failed while a blob's body was being sent, before any answer came.
    #[error("registry {registry} closed the connection while blob {digest} was being sent to {repository} ({request}): {reason}")]
    BodyCut {
        registry: String,
        repository: String,
        digest: Digest,
        request: String,
        reason: String,
    },
    /// A push refused because the repository (a Harbor project, an ECR repository, a GitLab
    /// group) must be created first.
    #[error("registry {registry} has no repository {repository} to push into (HTTP {status}): {message}")]
    RepositoryMissing {
        registry: String,
        repository: String,
        status: u16,
        message: String,
    },
    #[error("registry {registry}: {message}")]
    Protocol { registry: String, message: String },
    #[error("TLS/client set-up failed: {0}")]
    Setup(String),
    /// The `--ca-file` could not be read.
    #[error(transparent)]
    CaFile(#[from] FileError),
    /// The caller's sink refused a downloaded chunk (a full disk, a writer that stopped).
    #[error("storing {what} downloaded from registry {registry}")]
    Sink {
        registry: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// `" for REPO"` (with `word`), or nothing for requests outside any repository (`/v2/`).
fn in_repo(word: &str, repository: &str) -> String {
    if repository.is_empty() {
        String::new()
    } else {
        format!("{word} {repository}")
    }
}

/// `" (after N attempts)"` when there were retries.
fn after(attempts: u32) -> String {
    if attempts > 1 {
        format!(" (after {attempts} attempts)")
    } else {
        String::new()
    }
}

fn join_digests(d: &[Digest]) -> String {
    d.iter().map(Digest::as_str).collect::<Vec<_>>().join(", ")
}

impl RegistryError {
    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            RegistryError::Auth { registry, .. } => Some(format!(
                "check the credentials for {registry} (spec usernameEnv/passwordEnv, --username/--password-stdin, or docker config.json)"
            )),
            RegistryError::ProxyRefused { .. } => Some(
                "give the proxy's credentials in the proxy URL (HTTPS_PROXY=http://USER:PASSWORD@HOST:PORT), or list the registry in NO_PROXY".into(),
            ),
            RegistryError::ProxyConfig { .. } => Some(
                "set it to http://[USER:PASSWORD@]HOST:PORT, or unset it".into(),
            ),
            RegistryError::Tls { .. } => Some(
                "pass --ca-file with the registry's CA, or --insecure-skip-tls-verify; for a plain-HTTP registry use --plain-http or an http:// mirror".into(),
            ),
            RegistryError::RepositoryMissing {
                registry,
                repository,
                ..
            } => {
                let project = repository.split('/').next().unwrap_or(repository);
                Some(format!(
                    "create it on {registry} before loading: on Harbor the project {project:?}, on ECR the repository {repository:?}, on GitLab the group and project of {repository:?}; or load under another name with --registry {registry}/PATH or --mode"
                ))
            }
            _ => None,
        }
    }

    /// Records that `attempts` requests were made (retries included) on the variants that
    /// say so; keeps the larger count when one is already recorded.
    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        if let RegistryError::Connect { attempts, .. } | RegistryError::Status { attempts, .. } =
            &mut self
        {
            *attempts = (*attempts).max(n);
        }
        self
    }
}

/// Whether a TLS failure is among the causes of `e`: a `rustls::Error`, itself or as the
/// inner error of an `io::Error` (how the TLS stream reports a failed handshake).
pub(crate) fn is_tls(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<rustls::Error>() {
            return true;
        }
        // `io::Error::source` skips its inner error, so look at it directly.
        if let Some(inner) = c
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if is_tls(inner) {
                return true;
            }
        }
        cause = c.source();
    }
    false
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
    // An OAuth2 error (RFC 6749 5.2), as token servers answer a refused grant.
    #[derive(serde::Deserialize)]
    struct OAuth {
        error: String,
        #[serde(default)]
        error_description: String,
    }
    if let Ok(e) = serde_json::from_str::<OAuth>(body) {
        return format!("{} {}", e.error, e.error_description)
            .trim()
            .to_string();
    }
    let trimmed = body.trim();
    if trimmed.is_empty() {
        return "no details".to_string();
    }
    if trimmed.starts_with('<') {
        // A proxy's own page (nginx's 413 for client_max_body_size, a balancer's 502) names
        // the trouble in its title; the rest of the page is markup.
        return match html_title(trimmed) {
            Some(t) => format!("the server returned an HTML page \"{t}\", not a registry API answer (from a proxy in front of the registry, or not a registry at all)"),
            None => "the server returned an HTML page, not a registry API answer (is this URL a registry?)".into(),
        };
    }
    let one_line: String = trimmed.split_whitespace().collect::<Vec<_>>().join(" ");
    one_line.chars().take(200).collect()
}

fn html_title(page: &str) -> Option<String> {
    let lower = page.to_ascii_lowercase();
    let start = lower.find("<title>")? + "<title>".len();
    let end = start + lower[start..].find("</title>")?;
    let t: String = page[start..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (!t.is_empty() && !t.contains('<')).then(|| t.chars().take(100).collect())
}

/// Whether a refused upload POST says the repository itself is missing: `NAME_UNKNOWN`
/// (ECR, GitLab, distribution), Harbor's 403/404 `project … not found`, or (`plain`: a POST
/// without a mount request, which names nothing else that could be missing) a 404 without
/// an OCI error code.
pub(crate) fn repository_missing(status: u16, body: &str, plain: bool) -> bool {
    if status != 404 && status != 403 {
        return false;
    }
    let lower = body.to_ascii_lowercase();
    body.contains("NAME_UNKNOWN")
        || (lower.contains("project") && lower.contains("not found"))
        || (plain && status == 404 && !body.contains("\"code\""))
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
    fn oauth_errors_read_as_code_and_description() {
        let body = r#"{"error":"invalid_grant","error_description":"refresh token expired"}"#;
        assert_eq!(body_message(body), "invalid_grant refresh token expired");
        assert_eq!(
            body_message(r#"{"error":"invalid_client"}"#),
            "invalid_client"
        );
        // OCI errors keep their own reading.
        let oci = r#"{"errors":[{"code":"UNAUTHORIZED","message":"no"}]}"#;
        assert_eq!(body_message(oci), "UNAUTHORIZED no");
    }

    #[test]
    fn an_html_page_is_named_by_its_title_and_never_dumped() {
        let nginx = "<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 Request Entity Too Large</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";
        let m = body_message(nginx);
        assert!(m.contains("\"413 Request Entity Too Large\""), "{m}");
        assert!(m.contains("not a registry API answer"), "{m}");
        assert!(!m.contains("nginx/1.22.1") && !m.contains('<'), "{m}");
        let untitled = body_message("<html><body>hello</body></html>");
        assert!(
            untitled.contains("HTML page, not a registry API answer"),
            "{untitled}"
        );
        let odd = body_message("<html><title><b>x</b></title></html>");
        assert!(!odd.contains('<'), "{odd}");
    }

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

    /// An error with `source` as its cause, as hyper and reqwest wrap what the TLS stream said.
    #[derive(Debug, thiserror::Error)]
    #[error("client error (Connect)")]
    struct Wrapper(#[source] Box<dyn std::error::Error + Send + Sync>);

    #[test]
    fn tls_failures_are_told_by_type_not_by_words() {
        let rustls_err = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // Directly, and as the inner error of an io::Error (what a TLS stream returns).
        assert!(is_tls(&rustls_err));
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, rustls_err.clone());
        assert!(is_tls(&io));
        assert!(is_tls(&Wrapper(Box::new(io))));
        let nested = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::DecryptError,
        ));
        assert!(is_tls(&Wrapper(Box::new(nested))));
        // Words are not enough.
        let words = std::io::Error::other("tls handshake failed: bad certificate");
        assert!(!is_tls(&Wrapper(Box::new(words))));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_tls(&Wrapper(Box::new(refused))));
    }

    #[test]
    fn advice_is_a_hint_not_part_of_the_message() {
        let auth = RegistryError::Auth {
            registry: "quay.io".into(),
            repository: "org/app".into(),
            status: 401,
            message: "UNAUTHORIZED authentication required".into(),
        };
        let text = auth.to_string();
        assert_eq!(
            text,
            "authentication failed at registry quay.io for org/app (HTTP 401): UNAUTHORIZED authentication required"
        );
        let hint = auth.hint().unwrap();
        for source in ["quay.io", "usernameEnv", "--password-stdin", "config.json"] {
            assert!(hint.contains(source), "{hint}");
        }
        let tls = RegistryError::Tls {
            registry: "10.0.0.1:5000".into(),
            url: "https://10.0.0.1:5000/".into(),
            reason: "invalid peer certificate: UnknownIssuer".into(),
        };
        assert!(!tls.to_string().contains("--"), "{tls}");
        let hint = tls.hint().unwrap();
        for flag in ["--ca-file", "--insecure-skip-tls-verify", "--plain-http"] {
            assert!(hint.contains(flag), "{hint}");
        }
        assert!(!tls.is_transient());
        let nf = RegistryError::NotFound {
            registry: "r".into(),
            repository: "a".into(),
            what: "manifest a:1".into(),
            message: "MANIFEST_UNKNOWN".into(),
        };
        assert_eq!(nf.hint(), None);
    }

    #[test]
    fn attempts_are_said_after_retries_only() {
        let connect = |attempts| RegistryError::Connect {
            registry: "r".into(),
            url: "https://r/".into(),
            reason: "connection failed: Connection refused (os error 111)".into(),
            attempts,
        };
        assert_eq!(
            connect(1).to_string(),
            "cannot reach registry r at https://r/: connection failed: Connection refused (os error 111)"
        );
        assert!(connect(1)
            .with_attempts(4)
            .to_string()
            .ends_with("(os error 111) (after 4 attempts)"));
        // The larger count wins; variants without a count are unchanged.
        assert!(connect(4)
            .with_attempts(2)
            .to_string()
            .ends_with("(after 4 attempts)"));
        let sink = RegistryError::Sink {
            registry: "r".into(),
            what: "blob sha256:x of a".into(),
            source: std::io::Error::other("the bundle writer stopped"),
        };
        let text = sink.with_attempts(3).to_string();
        assert_eq!(
            text,
            "storing blob sha256:x of a downloaded from registry r"
        );
    }
}
