//! containerd `certs.d/<host>/hosts.toml` (containerd 1.5 and later; `docs/hosts.md`).
//!
//! containerd builds a request path as `/` + the host entry's path + `/` + the repository of
//! the name being pulled (`remotes/docker/resolver.go`), and a host URL's path gets `/v2`
//! appended unless `override_path = true` (`remotes/docker/config/hosts.go`). So a target
//! that keeps a prefix is written as `[host."SCHEME://TARGET/v2/PREFIX"]` with
//! `override_path = true`; one without as `[host."SCHEME://TARGET"]`. containerd 1.6 refuses a
//! file without any `[host]` table, so there is always one. Only whole hosts can be mapped:
//! the repository is always appended as it is.

use super::{header, quote, HostMapping, Output, Plan};
use crate::reference::{DOCKER_HUB, DOCKER_HUB_API};

pub(crate) fn hosts_toml_path(host: &str) -> String {
    format!("containerd/certs.d/{host}/hosts.toml")
}

/// The upstream as containerd itself would reach it: tried last, after the mirror.
fn server(host: &str) -> String {
    if host == DOCKER_HUB {
        format!("https://{DOCKER_HUB_API}")
    } else {
        format!("https://{host}")
    }
}

pub(crate) fn generate(plan: &Plan, out: &mut Output) {
    for reg in plan.redirected() {
        let path = hosts_toml_path(&reg.host);
        let url = match &reg.mapping {
            HostMapping::Whole { prefix: Some(p) } => {
                format!("{}://{}/v2/{p}", plan.scheme(), plan.host())
            }
            HostMapping::Whole { prefix: None } => format!("{}://{}", plan.scheme(), plan.host()),
            HostMapping::Repositories(repos) => {
                out.note(
                    &path,
                    &reg.host,
                    format!(
                        "not written: containerd maps a whole registry host and keeps the \
                         repository path, but --mode {} moved {} of {}'s repositories to other \
                         paths ({}); pull them by their target names or rewrite the manifests",
                        plan.mode,
                        repos.len(),
                        reg.host,
                        repos
                            .iter()
                            .map(|(s, t)| format!("{s} -> {t}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            }
        };
        let mut t = header("#", plan);
        t.push_str(&format!("server = {}\n\n", quote(&server(&reg.host))));
        t.push_str(&format!("[host.{}]\n", quote(&url)));
        t.push_str("  capabilities = [\"pull\", \"resolve\"]\n");
        if matches!(&reg.mapping, HostMapping::Whole { prefix: Some(_) }) {
            t.push_str("  override_path = true\n");
        }
        if !plan.conn.plain_http {
            // A relative `ca` is read from this host's directory.
            let ca = match (&plan.conn.ca_node_path, &plan.conn.ca_pem) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(pem)) => {
                    out.file(
                        &format!("containerd/certs.d/{}/ca.crt", reg.host),
                        pem.clone(),
                        false,
                    );
                    Some("ca.crt".to_string())
                }
                (None, None) => None,
            };
            if let Some(ca) = ca {
                t.push_str(&format!("  ca = {}\n", quote(&ca)));
            }
        }
        if plan.skip_verify() {
            t.push_str("  skip_verify = true\n");
        }
        out.file(&path, t.into_bytes(), false);
        if plan.conn.credentials.is_some() {
            out.note(
                &path,
                &reg.host,
                format!(
                    "hosts.toml cannot hold credentials: the kubelet passes the pod's \
                     imagePullSecrets for {} to containerd; ctr takes --user",
                    plan.host()
                ),
            );
            if matches!(&reg.mapping, HostMapping::Whole { prefix: Some(_) }) {
                out.note(
                    &path,
                    &reg.host,
                    "with token authentication containerd asks for a token scoped to the \
                     source repository name, not to the prefixed name on the target; basic \
                     authentication is not affected"
                        .into(),
                );
            }
        }
    }
}
