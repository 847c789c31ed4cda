//! k3s/RKE2 `registries.yaml`: `mirrors.<source>.endpoint` is the target's bare URL, and the
//! path mapping is done by `rewrite` (a Go regular expression on the repository, applied to
//! mirror endpoints only), so no endpoint carries a path. `configs.<target>` holds TLS and,
//! when asked for, credentials.

use super::{header, quote, HostMapping, Output, Plan};

pub(crate) const PATH: &str = "k3s/registries.yaml";
/// Where the README tells to put `ca.crt` when no node path for the CA was given.
pub(crate) const DEFAULT_CA: &str = "/etc/rancher/k3s/airgap-ca.crt";

/// A repository name as a literal in a Go regular expression (`.` is the only metacharacter
/// a repository may contain).
fn literal(repo: &str) -> String {
    repo.replace('.', "\\.")
}

pub(crate) fn generate(plan: &Plan, out: &mut Output) {
    let mut t = header("#", plan);
    let endpoint = format!("{}://{}", plan.scheme(), plan.host());
    t.push_str("mirrors:\n");
    let mut any = false;
    for reg in plan.redirected() {
        any = true;
        t.push_str(&format!("  {}:\n", quote(&reg.host)));
        t.push_str(&format!("    endpoint:\n      - {}\n", quote(&endpoint)));
        let rules: Vec<(String, String)> = match &reg.mapping {
            HostMapping::Whole { prefix: None } => vec![],
            HostMapping::Whole { prefix: Some(p) } => {
                vec![("^(.*)$".into(), format!("{p}/${{1}}"))]
            }
            // Anchored literals: at most one rule matches any repository, so the order of the
            // map does not matter.
            HostMapping::Repositories(repos) => repos
                .iter()
                .map(|(s, t)| (format!("^{}$", literal(s)), t.clone()))
                .collect(),
        };
        if !rules.is_empty() {
            t.push_str("    rewrite:\n");
            for (re, to) in rules {
                t.push_str(&format!("      {}: {}\n", quote(&re), quote(&to)));
            }
        }
    }
    if !any {
        t.push_str("  {}\n");
    }
    let mut config = String::new();
    if !plan.conn.plain_http {
        let ca = match (&plan.conn.ca_node_path, &plan.conn.ca_pem) {
            (Some(p), _) => Some(p.as_str()),
            (None, Some(_)) => Some(DEFAULT_CA),
            (None, None) => None,
        };
        if ca.is_some() || plan.skip_verify() {
            config.push_str("    tls:\n");
            if let Some(ca) = ca {
                config.push_str(&format!("      ca_file: {}\n", quote(ca)));
            }
            if plan.skip_verify() {
                config.push_str("      insecure_skip_verify: true\n");
            }
        }
    }
    let secret = plan.conn.credentials.is_some();
    if let Some(c) = &plan.conn.credentials {
        config.push_str(&format!(
            "    auth:\n      username: {}\n      password: {}\n",
            quote(&c.username),
            quote(&c.password)
        ));
    }
    if !config.is_empty() {
        t.push_str(&format!("configs:\n  {}:\n{config}", quote(plan.host())));
    }
    out.file(PATH, t.into_bytes(), secret);
}
