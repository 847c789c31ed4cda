//! A classic Helm chart repository: `GET <repo>/index.yaml`, find the chart version, `GET`
//! its package (a URL relative to the repository or absolute). Charts are small (Helm
//! refuses more than 100 MiB), so a package is read into memory: its digest must be known
//! before the manifest that names it is written.

use std::time::Duration;

use bytes::Bytes;
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use url::Url;

use super::ConnectOptions;

/// A chart version found in a repository's index.
#[derive(Debug)]
pub struct RepoChart {
    pub package_url: Url,
    pub tgz: Bytes,
    /// `<package>.prov` (its provenance file), when the repository has one beside it.
    pub prov: Option<Bytes>,
    /// The index entry's `created`, when it has one.
    pub created: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChartRepoError {
    #[error("GET {url}: {reason}")]
    Http { url: Url, reason: String },
    #[error("{url}: {reason}")]
    Index { url: Url, reason: String },
    #[error("{url} has no version {version} of chart {name} (it has: {available})")]
    NoVersion {
        url: Url,
        name: String,
        version: String,
        available: String,
    },
}

fn http_client(opts: &ConnectOptions) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .timeout(Duration::from_secs(300))
        .danger_accept_invalid_certs(opts.insecure_skip_tls_verify);
    if let Some(ca) = &opts.ca_file {
        let pem = std::fs::read(ca).map_err(|e| format!("reading {}: {e}", ca.display()))?;
        for c in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| e.to_string())? {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| e.to_string())
}

async fn get(client: &reqwest::Client, url: &Url, limit: u64) -> Result<Bytes, ChartRepoError> {
    let err = |reason: String| ChartRepoError::Http {
        url: url.clone(),
        reason,
    };
    let resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| err(crate::error::chain(&e)))?;
    if !resp.status().is_success() {
        return Err(err(format!("the server answered {}", resp.status())));
    }
    if resp.content_length().is_some_and(|n| n > limit) {
        return Err(err(format!("it is bigger than {limit} bytes")));
    }
    let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
    if body.len() as u64 > limit {
        return Err(err(format!("it is bigger than {limit} bytes")));
    }
    Ok(body)
}

fn field<'a>(m: &Yaml<'a>, k: &str) -> Option<Yaml<'a>> {
    let Yaml::Mapping(map) = m else { return None };
    map.iter()
        .find(|(key, _)| matches!(key, Yaml::Value(Scalar::String(s)) if s == k))
        .map(|(_, v)| v.clone())
}

/// Fetches chart `name` at exactly `version` from the repository at `repo`.
pub async fn fetch(
    repo: &Url,
    name: &str,
    version: &str,
    opts: &ConnectOptions,
    limit: u64,
) -> Result<RepoChart, ChartRepoError> {
    let base = Url::parse(&format!("{}/", repo.as_str().trim_end_matches('/'))).expect("a URL");
    let index_url = base.join("index.yaml").expect("a URL");
    let client = http_client(opts).map_err(|reason| ChartRepoError::Http {
        url: index_url.clone(),
        reason,
    })?;
    let body = get(&client, &index_url, 64 << 20).await?;
    let bad = |reason: String| ChartRepoError::Index {
        url: index_url.clone(),
        reason,
    };
    let text = std::str::from_utf8(&body).map_err(|_| bad("index.yaml is not UTF-8".into()))?;
    let docs = Yaml::load_from_str(text).map_err(|e| bad(format!("index.yaml: {e}")))?;
    let text_of = |y: &Yaml| match y {
        Yaml::Value(Scalar::String(s)) => Some(s.to_string()),
        Yaml::Value(Scalar::Integer(i)) => Some(i.to_string()),
        Yaml::Value(Scalar::FloatingPoint(f)) => Some(f.to_string()),
        _ => None,
    };
    let root = docs
        .first()
        .ok_or_else(|| bad("index.yaml is empty".into()))?;
    let entries =
        field(root, "entries").ok_or_else(|| bad("index.yaml has no `entries`".into()))?;
    let versions = match field(&entries, name) {
        Some(Yaml::Sequence(v)) => v,
        _ => {
            return Err(ChartRepoError::NoVersion {
                url: index_url.clone(),
                name: name.into(),
                version: version.into(),
                available: "no versions of it".into(),
            })
        }
    };
    let found = versions
        .iter()
        .find(|v| field(v, "version").and_then(|x| text_of(&x)).as_deref() == Some(version));
    let Some(entry) = found else {
        let available: Vec<String> = versions
            .iter()
            .filter_map(|v| field(v, "version").and_then(|x| text_of(&x)))
            .collect();
        return Err(ChartRepoError::NoVersion {
            url: index_url.clone(),
            name: name.into(),
            version: version.into(),
            available: available.join(", "),
        });
    };
    let url = match field(entry, "urls") {
        Some(Yaml::Sequence(u)) => u.first().and_then(text_of),
        _ => None,
    }
    .ok_or_else(|| bad(format!("{name} {version} has no `urls`")))?;
    let package_url = base
        .join(&url)
        .map_err(|e| bad(format!("{name} {version}: url {url:?}: {e}")))?;
    let created = field(entry, "created").and_then(|c| text_of(&c));
    let tgz = get(&client, &package_url, limit).await?;
    let prov = provenance(&client, &package_url).await?;
    Ok(RepoChart {
        package_url,
        tgz,
        prov,
        created,
    })
}

/// The provenance file beside a package (`helm package --sign` writes `NAME-V.tgz.prov`, and
/// `helm pull --verify` fetches it from there): None when the repository answers 404 (or
/// 403, as object stores do for a missing key); any other failure is an error.
async fn provenance(
    client: &reqwest::Client,
    package: &Url,
) -> Result<Option<Bytes>, ChartRepoError> {
    let url = Url::parse(&format!("{package}.prov")).expect("a URL");
    let resp = client
        .get(url.clone())
        .send()
        .await
        .map_err(|e| ChartRepoError::Http {
            url: url.clone(),
            reason: crate::error::chain(&e),
        })?;
    if matches!(resp.status().as_u16(), 404 | 403) {
        return Ok(None);
    }
    drop(resp);
    // Provenance files are a few KiB.
    get(client, &url, 1 << 20).await.map(Some)
}
