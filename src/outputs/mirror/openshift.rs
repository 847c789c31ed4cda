//! OpenShift `config.openshift.io/v1` `ImageDigestMirrorSet` (pulls by digest) and
//! `ImageTagMirrorSet` (pulls by tag). A `source` may be a registry or a repository, so
//! `flatten` is expressed repository by repository. Trust, plain HTTP and credentials live in
//! cluster-wide objects (`image.config.openshift.io/cluster`, the global pull secret) that a
//! file of its own would overwrite, so they are notes.

use super::{header, quote, HostMapping, Output, Plan};

pub(crate) const IDMS: &str = "openshift/imagedigestmirrorset.yaml";
pub(crate) const ITMS: &str = "openshift/imagetagmirrorset.yaml";
pub(crate) const NAME: &str = "airgap";

fn document(plan: &Plan, kind: &str, list: &str, entries: &[(String, String)]) -> Vec<u8> {
    let mut t = header("#", plan);
    t.push_str(&format!(
        "apiVersion: config.openshift.io/v1\nkind: {kind}\nmetadata:\n  name: {NAME}\nspec:\n"
    ));
    if entries.is_empty() {
        t.push_str(&format!("  {list}: []\n"));
    } else {
        t.push_str(&format!("  {list}:\n"));
        for (source, mirror) in entries {
            t.push_str(&format!(
                "    - source: {}\n      mirrors:\n        - {}\n",
                quote(source),
                quote(mirror)
            ));
        }
    }
    t.into_bytes()
}

pub(crate) fn generate(plan: &Plan, out: &mut Output) {
    let mut entries = Vec::new();
    for reg in plan.redirected() {
        match &reg.mapping {
            HostMapping::Repositories(repos) => {
                for (s, t) in repos {
                    entries.push((format!("{}/{s}", reg.host), format!("{}/{t}", plan.host())));
                }
            }
            HostMapping::Whole { .. } => entries.push((
                reg.host.clone(),
                reg.whole_location(plan.host())
                    .expect("a whole mapping has a location"),
            )),
        }
    }
    out.file(
        IDMS,
        document(plan, "ImageDigestMirrorSet", "imageDigestMirrors", &entries),
        false,
    );
    out.file(
        ITMS,
        document(plan, "ImageTagMirrorSet", "imageTagMirrors", &entries),
        false,
    );
    let host = plan.host();
    if plan.conn.plain_http || plan.conn.insecure_skip_tls_verify {
        out.note(
            IDMS,
            host,
            format!(
                "mirror sets cannot say a registry is insecure: add {host} to \
                 spec.registrySources.insecureRegistries of image.config.openshift.io/cluster"
            ),
        );
    }
    if !plan.conn.plain_http && (plan.conn.ca_pem.is_some() || plan.conn.ca_node_path.is_some()) {
        out.note(
            IDMS,
            host,
            format!(
                "mirror sets cannot name a CA: put it in a ConfigMap in openshift-config under \
                 the key {:?} and name it in spec.additionalTrustedCA of \
                 image.config.openshift.io/cluster",
                host.replace(':', "..")
            ),
        );
    }
    if plan.conn.credentials.is_some() {
        out.note(
            IDMS,
            host,
            format!(
                "mirror sets cannot hold credentials: add {host} to the global pull secret \
                 (secret/pull-secret in openshift-config)"
            ),
        );
    }
}
