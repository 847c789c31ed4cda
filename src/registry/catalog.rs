//! The catalog (`/v2/_catalog`) and a repository's tag list (`/v2/<name>/tags/list`), followed
//! page by page.

use std::collections::HashSet;

use reqwest::header;

use super::client::{pull_scope, Client};
use super::error::RegistryError;

impl Client {
    /// The repositories the registry's catalog lists, following its pages, or `None` when
    /// the catalog gives no answer to rely on: no catalog API, not allowed for these
    /// credentials, not JSON, or more than `max_pages` pages. Only a refused connection is
    /// an error. Callers use it to know a repository is absent without asking about each
    /// image in it; a repository the catalog leaves out is only asked about less, never lost.
    pub async fn list_repositories(
        &self,
        max_pages: usize,
    ) -> Result<Option<HashSet<String>>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            repositories: Option<Vec<String>>,
        }
        let scopes = ["registry:catalog:*".to_string()];
        // No `n`: distribution answers 400 to an `n` above its configured maximum; without
        // it, each page is that maximum and a Link header names the next.
        let mut url = self.url("/v2/_catalog");
        let mut repos = HashSet::new();
        for _ in 0..max_pages {
            let resp = match self.send(&scopes, "", |h| h.get(&url)).await {
                Ok(r) => r,
                Err(e @ (RegistryError::Connect { .. } | RegistryError::Tls { .. })) => {
                    return Err(e)
                }
                Err(_) => return Ok(None),
            };
            if !resp.status().is_success() {
                return Ok(None);
            }
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let Ok(page) = resp.json::<Page>().await else {
                return Ok(None);
            };
            let Some(names) = page.repositories else {
                return Ok(None);
            };
            repos.extend(names);
            match next {
                None => return Ok(Some(repos)),
                // Credentials go only where they went for the first page.
                Some(n) if self.same_origin(&n) => url = self.resolve_location(&n),
                Some(_) => return Ok(None),
            }
        }
        Ok(None)
    }
}

impl Client {
    /// Every tag of `repo`, following its pages, or `None` when the list gives no answer to
    /// rely on: refused (any status but success), not JSON, or more than `max_pages` pages.
    /// Only a refused connection is an error. Pack reads it once per repository to learn
    /// which signature and referrer tags exist instead of asking about each one.
    pub async fn list_tags(
        &self,
        repo: &str,
        max_pages: usize,
    ) -> Result<Option<HashSet<String>>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct Page {
            name: Option<String>,
            tags: Option<Vec<String>>,
        }
        let scopes = [pull_scope(repo)];
        let mut url = self.url(&format!("/v2/{repo}/tags/list"));
        let mut tags = HashSet::new();
        for _ in 0..max_pages {
            let resp = match self.send(&scopes, repo, |h| h.get(&url)).await {
                Ok(r) => r,
                Err(e @ (RegistryError::Connect { .. } | RegistryError::Tls { .. })) => {
                    return Err(e)
                }
                Err(_) => return Ok(None),
            };
            if !resp.status().is_success() {
                return Ok(None);
            }
            let next = resp
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_link);
            let Ok(page) = resp.json::<Page>().await else {
                return Ok(None);
            };
            // distribution answers `"tags": null` for a repository without tags; an answer
            // with neither field is no tag list (a proxy's page), so nothing is concluded.
            if page.name.is_none() && page.tags.is_none() {
                return Ok(None);
            }
            tags.extend(page.tags.unwrap_or_default());
            match next {
                None => return Ok(Some(tags)),
                Some(n) if self.same_origin(&n) => url = self.resolve_location(&n),
                Some(_) => return Ok(None),
            }
        }
        Ok(None)
    }
}

/// The target of the `rel="next"` entry of a Link header (RFC 8288), as the catalog and tag
/// list pages name their successor: `</v2/_catalog?last=b&n=2>; rel="next"`.
pub(super) fn next_link(v: &str) -> Option<String> {
    v.split(',').find_map(|entry| {
        let (target, params) = entry.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            p.trim()
                .split_once('=')
                .is_some_and(|(k, v)| k.trim() == "rel" && v.trim().trim_matches('"') == "next")
        });
        is_next.then(|| target.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::next_link;

    #[test]
    fn the_next_page_is_read_from_the_link_header() {
        let next = |v| next_link(v).as_deref().map(str::to_string);
        assert_eq!(
            next(r#"</v2/_catalog?last=b%2Fy&n=2>; rel="next""#).as_deref(),
            Some("/v2/_catalog?last=b%2Fy&n=2")
        );
        assert_eq!(
            next(r#"<https://r.example/v2/_catalog?last=x>; rel=next"#).as_deref(),
            Some("https://r.example/v2/_catalog?last=x")
        );
        // Other relations, and several entries in one header.
        assert_eq!(next(r#"</a>; rel="prev""#), None);
        assert_eq!(
            next(r#"</a>; rel="prev", </b>; title="x"; rel="next""#).as_deref(),
            Some("/b")
        );
        assert_eq!(next("garbage"), None);
        assert_eq!(next(""), None);
    }
}
