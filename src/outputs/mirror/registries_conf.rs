//! CRI-O/podman/skopeo `registries.conf` v2 (`containers-registries.conf(5)`): one
//! `[[registry]]` per source registry (or per repository, for `flatten`) with a
//! `[[registry.mirror]]` whose location replaces the matched prefix. The format has no place
//! for a CA file or credentials: containers read CAs from `certs.d/<host>/*.crt` and
//! credentials from `auth.json`, which are written beside it.

use base64::Engine as _;

use super::{header, quote, HostMapping, Output, Plan};

pub(crate) const PATH: &str = "containers/registries.conf";
pub(crate) const AUTH: &str = "containers/auth.json";

pub(crate) fn ca_path(target: &str) -> String {
    format!("containers/certs.d/{target}/ca.crt")
}

fn entry(t: &mut String, prefix: &str, mirror: &str, insecure: bool) {
    t.push_str(&format!(
        "\n[[registry]]\nprefix = {}\nlocation = {}\n\n[[registry.mirror]]\nlocation = {}\n",
        quote(prefix),
        quote(prefix),
        quote(mirror)
    ));
    if insecure {
        t.push_str("insecure = true\n");
    }
}

pub(crate) fn generate(plan: &Plan, out: &mut Output) {
    let insecure = plan.conn.plain_http || plan.conn.insecure_skip_tls_verify;
    let mut t = header("#", plan);
    for reg in plan.redirected() {
        match &reg.mapping {
            HostMapping::Repositories(repos) => {
                // A prefix matches whole path components only, so `docker.io/library/redis`
                // does not catch `docker.io/library/redis-x`.
                for (s, tr) in repos {
                    entry(
                        &mut t,
                        &format!("{}/{s}", reg.host),
                        &format!("{}/{tr}", plan.host()),
                        insecure,
                    );
                }
            }
            HostMapping::Whole { .. } => {
                let loc = reg
                    .whole_location(plan.host())
                    .expect("a whole mapping has a location");
                entry(&mut t, &reg.host, &loc, insecure);
            }
        }
    }
    out.file(PATH, t.into_bytes(), false);
    if !plan.conn.plain_http {
        if let Some(pem) = &plan.conn.ca_pem {
            out.file(&ca_path(plan.host()), pem.clone(), false);
        } else if let Some(p) = &plan.conn.ca_node_path {
            out.note(
                PATH,
                plan.host(),
                format!(
                    "registries.conf cannot name a CA file: containers trust the *.crt files in \
                     /etc/containers/certs.d/{}/; put {p} there",
                    plan.host()
                ),
            );
        }
    }
    if let Some(c) = &plan.conn.credentials {
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", c.username, c.password));
        let json = serde_json::json!({ "auths": { plan.host(): { "auth": auth } } });
        let mut bytes = serde_json::to_vec_pretty(&json).expect("JSON serialises");
        bytes.push(b'\n');
        out.file(AUTH, bytes, true);
    }
}
