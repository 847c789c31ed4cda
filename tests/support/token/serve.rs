//! One token request: read it, decide who asks (Basic user, refresh token, or nobody), and
//! answer a signed JWT granting what that identity may do, or the refusal a real token
//! server gives.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;

use base64::Engine as _;

use super::{
    b64url, now_secs, Grant, ServerState, TokenRequest, User, IO_TIMEOUT, ISSUER, SERVICE,
};

fn respond(s: &mut TcpStream, status: u16, extra: &str, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        _ => "Error",
    };
    let resp = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(resp.as_bytes())?;
    s.flush()
}

/// The request line, headers and body (by `Content-Length`) of one request.
struct Request {
    method: String,
    path: String,
    query: String,
    authorization: Option<String>,
    body: Vec<u8>,
}

fn read_request(s: &mut TcpStream) -> std::io::Result<Option<Request>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return Ok(None);
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let text = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or_default().to_string();
    let (mut authorization, mut length) = (None, 0usize);
    for l in lines {
        if let Some((n, v)) = l.split_once(':') {
            let n = n.trim();
            if n.eq_ignore_ascii_case("authorization") {
                authorization = Some(v.trim().to_string());
            } else if n.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    if length > 64 * 1024 {
        return Ok(None);
    }
    let mut body = buf[end..].to_vec();
    while body.len() < length {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    let mut parts = first.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let target = parts.next().unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Request {
        method,
        path: path.to_string(),
        query: query.to_string(),
        authorization,
        body,
    }))
}

fn basic_user(auth: Option<&str>) -> Option<(String, String)> {
    let b = auth?
        .strip_prefix("Basic ")
        .or_else(|| auth?.strip_prefix("basic "))?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b.trim())
        .ok()?;
    let up = String::from_utf8(raw).ok()?;
    up.split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))
}

/// Who asks, as far as the request says.
enum Identity {
    Known(User),
    Anonymous(Grant),
    Refused {
        status: u16,
        extra: &'static str,
        body: String,
    },
}

const BASIC_REFUSED: &str =
    "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"invalid username or password\"}]}";
const ANONYMOUS_REFUSED: &str = "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"authentication required: this registry has no anonymous access\"}]}";
const CHALLENGE: &str = "WWW-Authenticate: Basic realm=\"airgap-test-token\"\r\n";

pub(super) fn serve(mut s: TcpStream, st: &ServerState) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.set_write_timeout(Some(IO_TIMEOUT))?;
    let Some(req) = read_request(&mut s)? else {
        return Ok(());
    };
    if !matches!(req.method.as_str(), "GET" | "POST") || req.path != "/token" {
        return respond(&mut s, 404, "", "{\"errors\":[{\"code\":\"NOT_FOUND\"}]}");
    }
    // GET: the query; POST: the form body (application/x-www-form-urlencoded).
    let params = if req.method == "POST" {
        req.body.clone()
    } else {
        req.query.clone().into_bytes()
    };
    let (mut service, mut scopes, mut grant_type, mut client_id, mut refresh) =
        (None, Vec::new(), None, None, None);
    for (k, v) in url::form_urlencoded::parse(&params) {
        match &*k {
            "service" => service = Some(v.into_owned()),
            // A scope parameter may hold several scopes separated by spaces (always so in a POST).
            "scope" => scopes.extend(v.split(' ').filter(|x| !x.is_empty()).map(String::from)),
            "grant_type" => grant_type = Some(v.into_owned()),
            "client_id" => client_id = Some(v.into_owned()),
            "refresh_token" => refresh = Some(v.into_owned()),
            _ => {}
        }
    }
    let claimed = (req.method == "GET")
        .then(|| basic_user(req.authorization.as_deref()).map(|(u, _)| u))
        .flatten();
    let identity = if req.method == "POST" {
        oauth_identity(
            st,
            grant_type.as_deref(),
            client_id.as_deref(),
            refresh.as_deref(),
        )
    } else {
        match basic_user(req.authorization.as_deref()) {
            Some((u, p)) => st
                .users
                .iter()
                .find(|x| x.name == u && x.password == p)
                .cloned()
                .map_or(
                    Identity::Refused {
                        status: 401,
                        extra: CHALLENGE,
                        body: BASIC_REFUSED.into(),
                    },
                    Identity::Known,
                ),
            None if req.authorization.is_none() => match st.anonymous {
                Some(g) => Identity::Anonymous(g),
                None => Identity::Refused {
                    status: 401,
                    extra: CHALLENGE,
                    body: ANONYMOUS_REFUSED.into(),
                },
            },
            None => Identity::Refused {
                status: 401,
                extra: CHALLENGE,
                body: BASIC_REFUSED.into(),
            },
        }
    };
    let record = |user: Option<String>, status: u16, granted: Vec<String>| {
        st.requests.lock().unwrap().push(TokenRequest {
            method: req.method.clone(),
            authorization: req.authorization.is_some(),
            user,
            grant_type: grant_type.clone(),
            client_id: client_id.clone(),
            service: service.clone(),
            scopes: scopes.clone(),
            status,
            granted,
        });
    };
    let (subject, grant) = match identity {
        Identity::Known(u) => (Some(u.name), u.grant),
        Identity::Anonymous(g) => (None, g),
        Identity::Refused {
            status,
            extra,
            body,
        } => {
            record(claimed, status, vec![]);
            return respond(&mut s, status, extra, &body);
        }
    };
    if service.as_deref() != Some(SERVICE) {
        record(subject, 400, vec![]);
        return respond(
            &mut s,
            400,
            "",
            "{\"errors\":[{\"code\":\"UNSUPPORTED\",\"message\":\"unknown service\"}]}",
        );
    }
    let (token, granted) = issue(st, subject.as_deref().unwrap_or(""), grant, &scopes);
    record(subject, 200, granted);
    let body = if req.method == "POST" {
        // The OAuth2 answer: `access_token` only, as docker/distribution's spec has it.
        serde_json::json!({"access_token": token, "expires_in": 600, "scope": scopes.join(" ")})
    } else {
        serde_json::json!({"token": token, "access_token": token, "expires_in": 600})
    };
    respond(&mut s, 200, "", &body.to_string())
}

/// The user a `refresh_token` grant names, or the OAuth2 error a real server answers.
fn oauth_identity(
    st: &ServerState,
    grant_type: Option<&str>,
    client_id: Option<&str>,
    refresh: Option<&str>,
) -> Identity {
    let bad = |body: &str| Identity::Refused {
        status: 400,
        extra: "",
        body: body.to_string(),
    };
    if grant_type != Some("refresh_token") {
        return bad("{\"error\":\"unsupported_grant_type\",\"error_description\":\"only refresh_token grants\"}");
    }
    if client_id.is_none_or(str::is_empty) {
        return bad("{\"error\":\"invalid_request\",\"error_description\":\"missing client_id\"}");
    }
    let user = refresh.and_then(|r| {
        st.users
            .iter()
            .find(|u| u.refresh_token.as_deref() == Some(r))
    });
    match user {
        Some(u) => Identity::Known(u.clone()),
        // Echoing the token, as some servers do: the client must not print it on.
        None => bad(
            &serde_json::json!({
                "error": "invalid_grant",
                "error_description": format!("refresh token {} is unknown or expired", refresh.unwrap_or("")),
            })
            .to_string(),
        ),
    }
}

/// A JWT for `sub` granting the asked actions that `grant` allows; and the grants as
/// `type:name:actions`.
fn issue(st: &ServerState, sub: &str, grant: Grant, scopes: &[String]) -> (String, Vec<String>) {
    let mut access = Vec::new();
    let mut granted = Vec::new();
    for scope in scopes {
        // type:name:actions, where the name may itself hold ':' (a host with a port).
        let Some((kind, rest)) = scope.split_once(':') else {
            continue;
        };
        let Some((name, actions)) = rest.rsplit_once(':') else {
            continue;
        };
        let allowed: Vec<&str> = actions
            .split(',')
            .filter(|a| match grant {
                Grant::All => !a.is_empty(),
                Grant::PullOnly => *a == "pull",
            })
            .collect();
        granted.push(format!("{kind}:{name}:{}", allowed.join(",")));
        access.push(serde_json::json!({"type": kind, "name": name, "actions": allowed}));
    }
    let now = now_secs();
    let header = serde_json::json!({
        "typ": "JWT",
        "alg": "RS256",
        "x5c": [st.keys.cert_b64_der],
    });
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": sub,
        "aud": SERVICE,
        "exp": now + 600,
        "nbf": now - 30,
        "iat": now,
        "jti": format!("airgap-test-{}-{}", now, st.serial.fetch_add(1, Ordering::SeqCst)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let sig = st.keys.sign(signing_input.as_bytes());
    let token = format!("{signing_input}.{}", b64url(&sig));
    st.issued.lock().unwrap().push(token.clone());
    (token, granted)
}
