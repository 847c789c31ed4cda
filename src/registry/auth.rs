//! The distribution auth flows: Basic, and Bearer tokens from a `WWW-Authenticate` realm:
//! asked with Basic credentials (`GET`), anonymously (`GET` without `Authorization`), or with
//! an identity token (`POST`, an OAuth2 `refresh_token` grant, as docker does).

use std::collections::HashMap;

use base64::Engine as _;

use reqwest::{header, RequestBuilder, Response};

use super::client::Client;
use super::credentials::Credentials;
use super::error::{body_message, describe, RegistryError};
use super::retry::is_transient_status;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// Parses `Basic realm="x"` or `Bearer realm="…",service="…",scope="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, rest) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parse_params(rest);
            Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
            })
        }
        _ => None,
    }
}

fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(q) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = q.char_indices();
            let mut end = q.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            value.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &q[end..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

pub fn basic_header(c: &Credentials) -> String {
    let raw = format!("{}:{}", c.username, c.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[derive(serde::Deserialize)]
pub struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
}

impl TokenResponse {
    pub fn into_token(self) -> Option<String> {
        self.token
            .filter(|t| !t.is_empty())
            .or(self.access_token.filter(|t| !t.is_empty()))
    }
}

#[derive(Default)]
pub(super) struct AuthState {
    challenge: Option<Challenge>,
    /// Bearer tokens by scope set.
    tokens: HashMap<String, String>,
}

impl Client {
    pub(super) fn learn_challenge(&self, resp: &Response, scopes: &[String]) {
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_challenge);
        let mut st = self.inner.auth.lock().expect("auth lock");
        st.tokens.remove(&scopes.join(" "));
        st.challenge = challenge;
    }

    pub(super) async fn authorize(
        &self,
        req: RequestBuilder,
        scopes: &[String],
        repo: &str,
    ) -> Result<RequestBuilder, RegistryError> {
        let (challenge, cached) = {
            let st = self.inner.auth.lock().expect("auth lock");
            (
                st.challenge.clone(),
                st.tokens.get(&scopes.join(" ")).cloned(),
            )
        };
        match challenge {
            None => Ok(req),
            Some(Challenge::Basic) => match &self.inner.credentials {
                // A refresh token is for a token server only: never sent as a password.
                Some(c) if c.is_identity_token() => Err(RegistryError::Auth {
                    registry: self.registry().to_string(),
                    repository: repo.to_string(),
                    status: 401,
                    message: "the registry asks for a username and password (Basic), and the login for it is an identity token (OAuth2), which only a token server takes".into(),
                }),
                Some(c) => Ok(req.header(header::AUTHORIZATION, basic_header(c))),
                None => Ok(req),
            },
            Some(Challenge::Bearer { realm, service }) => {
                let token = match cached {
                    Some(t) => t,
                    None => self.token_for(&realm, service.as_deref(), scopes, repo).await?,
                };
                Ok(req.bearer_auth(token))
            }
        }
    }

    /// The token for `scopes`, fetched once however many tasks ask at the same time (they
    /// wait for the first one's answer, then read it from the cache).
    async fn token_for(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        repo: &str,
    ) -> Result<String, RegistryError> {
        let key = scopes.join(" ");
        let _gate = self.inner.token_gate.lock().await;
        if let Some(t) = self.inner.auth.lock().expect("auth lock").tokens.get(&key) {
            return Ok(t.clone());
        }
        let t = self.fetch_token(realm, service, scopes, repo).await?;
        self.inner
            .auth
            .lock()
            .expect("auth lock")
            .tokens
            .insert(key, t.clone());
        Ok(t)
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        repo: &str,
    ) -> Result<String, RegistryError> {
        let creds = self.inner.credentials.as_ref();
        let (req, asked) = match creds {
            Some(c) if c.is_identity_token() => {
                // docker/distribution's token spec, "OAuth2 token": the scopes in one field,
                // space-separated.
                let scope = scopes.join(" ");
                let mut form = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", c.password.as_str()),
                    ("client_id", CLIENT_ID),
                ];
                if let Some(s) = service {
                    form.push(("service", s));
                }
                if !scopes.is_empty() {
                    form.push(("scope", &scope));
                }
                (
                    self.inner.http.post(realm).form(&form),
                    "the identity token (OAuth2 refresh_token grant)",
                )
            }
            _ => {
                let mut query: Vec<(&str, &str)> = Vec::new();
                if let Some(s) = service {
                    query.push(("service", s));
                }
                for s in scopes {
                    query.push(("scope", s));
                }
                let req = self.inner.http.get(realm).query(&query);
                match creds {
                    Some(c) => (
                        req.header(header::AUTHORIZATION, basic_header(c)),
                        "the credentials",
                    ),
                    None => (
                        req,
                        "an anonymous token request (no credentials were given)",
                    ),
                }
            }
        };
        let resp = req.send().await.map_err(|e| {
            let reason = format!("token server: {}", describe(&e));
            self.network_error(realm_without_query(realm), reason, &e)
        })?;
        let status = resp.status();
        // The server's own words, minus any secret it might echo back.
        let message = |body: &str| {
            let m = body_message(body);
            match creds {
                Some(c) if !c.password.is_empty() => m.replace(&c.password, "<redacted>"),
                _ => m,
            }
        };
        if is_transient_status(status.as_u16()) {
            let body = resp.text().await.unwrap_or_default();
            return Err(RegistryError::Status {
                registry: self.registry().to_string(),
                repository: repo.to_string(),
                action: format!("a token request to {}", realm_without_query(realm)),
                status: status.as_u16(),
                message: message(&body),
                attempts: 1,
            });
        }
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(RegistryError::Auth {
                registry: self.registry().to_string(),
                repository: repo.to_string(),
                status: status.as_u16(),
                message: format!(
                    "the token server at {} refused {asked}: {}",
                    realm_without_query(realm),
                    message(&body)
                ),
            });
        }
        let tr: TokenResponse = resp.json().await.map_err(|e| RegistryError::Protocol {
            registry: self.registry().to_string(),
            message: format!(
                "token server at {} answered something that is not a token: {e}",
                realm_without_query(realm)
            ),
        })?;
        tr.into_token().ok_or_else(|| RegistryError::Protocol {
            registry: self.registry().to_string(),
            message: format!(
                "token server at {} answered without a token",
                realm_without_query(realm)
            ),
        })
    }
}

/// The `client_id` of an OAuth2 grant: who is asking (docker sends `docker`).
const CLIENT_ID: &str = "airgap";

fn realm_without_query(realm: &str) -> String {
    realm.split('?').next().unwrap_or(realm).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        assert_eq!(
            parse_challenge("Basic realm=\"Registry\""),
            Some(Challenge::Basic)
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into())
            })
        );
        assert_eq!(parse_challenge("Bearer service=\"x\""), None);
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn basic_is_base64() {
        assert_eq!(basic_header(&Credentials::new("a", "b")), "Basic YTpi");
    }
}
