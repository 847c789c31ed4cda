//! HTTP(S) proxies from the environment, made explicit: `HTTPS_PROXY` for https:// registries
//! (a `CONNECT` tunnel), `HTTP_PROXY` for http:// ones (absolute-URI requests), `ALL_PROXY`
//! for either when the specific one is unset, `NO_PROXY` for hosts that bypass them; each
//! also lowercase (the uppercase one wins when both are set). This is what reqwest does by
//! default; doing it here means a bad value is an error naming the variable, and errors name
//! the proxy a registry was reached through (its password masked).
//!
//! `NO_PROXY`: comma-separated; `*` bypasses every host; an IP or CIDR (`10.0.0.0/8`)
//! matches addresses; any other entry is a domain matching itself and its subdomains
//! (`example.com`, `.example.com`). Loopback is not bypassed unless listed.

use hyper_util::client::proxy::matcher::Matcher;
use url::Url;

use super::error::RegistryError;

/// The proxies one run uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxies {
    pub http: Option<Url>,
    pub https: Option<Url>,
    /// The `NO_PROXY` list as given.
    pub no_proxy: String,
}

impl Proxies {
    /// No proxy at all, whatever the environment says.
    pub fn none() -> Proxies {
        Proxies::default()
    }

    /// From the process environment.
    pub fn from_env() -> Result<Proxies, RegistryError> {
        Proxies::from_vars(|k| std::env::var(k).ok())
    }

    /// From variables looked up by `get` (uppercase name first, then lowercase).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Proxies, RegistryError> {
        let first = |names: [&'static str; 2]| -> Option<(&'static str, String)> {
            names
                .into_iter()
                .find_map(|n| get(n).filter(|v| !v.trim().is_empty()).map(|v| (n, v)))
        };
        let all = first(["ALL_PROXY", "all_proxy"]);
        let pick = |names: [&'static str; 2]| -> Result<Option<Url>, RegistryError> {
            match first(names).or_else(|| all.clone()) {
                Some((var, value)) => parse_proxy(var, &value).map(Some),
                None => Ok(None),
            }
        };
        Ok(Proxies {
            http: pick(["HTTP_PROXY", "http_proxy"])?,
            https: pick(["HTTPS_PROXY", "https_proxy"])?,
            no_proxy: first(["NO_PROXY", "no_proxy"])
                .map(|(_, v)| v)
                .unwrap_or_default(),
        })
    }

    fn matcher(&self) -> Matcher {
        let mut b = Matcher::builder();
        if let Some(u) = &self.http {
            b = b.http(u.as_str().to_string());
        }
        if let Some(u) = &self.https {
            b = b.https(u.as_str().to_string());
        }
        b.no(self.no_proxy.clone()).build()
    }

    /// The proxy requests to `url` go through, if any.
    pub fn for_url(&self, url: &Url) -> Option<&Url> {
        let uri: hyper::Uri = url.as_str().parse().ok()?;
        self.matcher().intercept(&uri)?;
        match url.scheme() {
            "https" => self.https.as_ref(),
            _ => self.http.as_ref(),
        }
    }

    /// Configures `b` with exactly these proxies (reqwest's own reading of the environment
    /// is switched off).
    pub(super) fn apply(
        &self,
        mut b: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, RegistryError> {
        b = b.no_proxy();
        let no = reqwest::NoProxy::from_string(&self.no_proxy);
        let err =
            |u: &Url, e: reqwest::Error| RegistryError::Setup(format!("proxy {}: {e}", masked(u)));
        if let Some(u) = &self.http {
            b = b.proxy(
                reqwest::Proxy::http(u.as_str())
                    .map_err(|e| err(u, e))?
                    .no_proxy(no.clone()),
            );
        }
        if let Some(u) = &self.https {
            b = b.proxy(
                reqwest::Proxy::https(u.as_str())
                    .map_err(|e| err(u, e))?
                    .no_proxy(no),
            );
        }
        Ok(b)
    }
}

/// A proxy URL as a variable gives it; `host:port` alone means `http://host:port`.
fn parse_proxy(var: &str, value: &str) -> Result<Url, RegistryError> {
    let v = value.trim();
    let with_scheme = if v.contains("://") {
        v.to_string()
    } else {
        format!("http://{v}")
    };
    let bad = |reason: String| RegistryError::ProxyConfig {
        variable: var.to_string(),
        value: mask_text(v),
        reason,
    };
    let url = Url::parse(&with_scheme).map_err(|e| bad(format!("not a URL: {e}")))?;
    match url.scheme() {
        "http" | "https" => {}
        s => {
            return Err(bad(format!(
                "{s}:// proxies are not supported (use an http:// or https:// proxy)"
            )))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host".into()));
    }
    Ok(url)
}

/// `url` with its password (if any) replaced by `***`.
pub fn masked(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.as_str().trim_end_matches('/').to_string()
}

/// A proxy value that did not parse, with anything between `://` and `@` that follows a
/// `:` masked (it may be a password).
fn mask_text(v: &str) -> String {
    let Some(at) = v.rfind('@') else {
        return v.to_string();
    };
    let start = v.find("://").map_or(0, |i| i + 3);
    if start > at {
        return v.to_string();
    }
    match v[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &v[..start + colon], &v[at..]),
        None => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(list: &[(&str, &str)]) -> Result<Proxies, RegistryError> {
        let list: Vec<(String, String)> = list
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Proxies::from_vars(move |k| list.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn variables_and_precedence() {
        let p = vars(&[
            ("HTTPS_PROXY", "http://up:3128"),
            ("https_proxy", "http://low:3128"),
            ("http_proxy", "proxy.corp:8080"),
            ("NO_PROXY", "internal.example,10.0.0.0/8"),
        ])
        .unwrap();
        assert_eq!(p.https.as_ref().unwrap().as_str(), "http://up:3128/");
        assert_eq!(p.http.as_ref().unwrap().as_str(), "http://proxy.corp:8080/");
        let u = |s: &str| Url::parse(s).unwrap();
        assert_eq!(p.for_url(&u("https://quay.io/v2/")), p.https.as_ref());
        assert_eq!(p.for_url(&u("http://10.1.2.3:5000/v2/")), None);
        assert_eq!(p.for_url(&u("https://reg.internal.example/")), None);
        assert_eq!(p.for_url(&u("http://127.0.0.1:5000/")), p.http.as_ref());
        let all = vars(&[("all_proxy", "http://a:1"), ("HTTP_PROXY", "http://h:2")]).unwrap();
        assert_eq!(all.https.unwrap().as_str(), "http://a:1/");
        assert_eq!(all.http.unwrap().as_str(), "http://h:2/");
        assert_eq!(vars(&[]).unwrap(), Proxies::none());
        let star = vars(&[("HTTPS_PROXY", "http://p:1"), ("no_proxy", "*")]).unwrap();
        assert_eq!(star.for_url(&u("https://quay.io/")), None);
    }

    #[test]
    fn bad_values_name_the_variable_and_hide_the_password() {
        let e = vars(&[("HTTPS_PROXY", "socks5://bob:hunter2@p:1080")]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("HTTPS_PROXY"), "{text}");
        assert!(text.contains("socks5"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        let e = vars(&[("http_proxy", "http://bob:hunter2@[::1")]).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.to_string().contains("http_proxy"), "{e}");
        let u = Url::parse("http://bob:hunter2@p:3128").unwrap();
        assert_eq!(masked(&u), "http://bob:***@p:3128");
    }
}
