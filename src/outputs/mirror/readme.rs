//! The README written into the directory: where each file goes, what to restart, and the
//! notes on what a format could not express.

use super::{containerd, k3s, openshift, registries_conf, Output, Plan, MIRROR_FORMAT_VERSION};

pub(crate) fn generate(plan: &Plan, out: &Output) -> String {
    let has = |p: &str| out.files.iter().any(|f| f.path == p);
    let to = match &plan.target.path {
        Some(p) => format!("{}/{p}", plan.target.host),
        None => plan.target.host.clone(),
    };
    let mut t = format!(
        "# Mirror configuration (airgap format {MIRROR_FORMAT_VERSION})\n\n\
         These files send the nodes' pulls of the bundle's source names (for example \
         `docker.io/library/redis:7`) to `{to}`, where `airgap load --mode {}` put the images, \
         digests unchanged. Copy the part for your runtime to every node.\n\n",
        plan.mode
    );
    t.push_str("Source registries:\n\n");
    for r in plan.registries {
        let how = match r.whole_location(plan.host()) {
            Some(loc) => format!("`{}/R` -> `{loc}/R`", r.host),
            None => format!("`{}`: repository by repository", r.host),
        };
        t.push_str(&format!("- {how}\n"));
    }
    let hosts: Vec<&str> = plan
        .redirected()
        .map(|r| r.host.as_str())
        .filter(|h| has(&containerd::hosts_toml_path(h)))
        .collect();
    t.push_str("\n## containerd (`containerd/certs.d/`)\n\n");
    if hosts.is_empty() {
        t.push_str("Nothing to install: no registry could be expressed (see the notes).\n");
    } else {
        t.push_str(
            "Copy each `containerd/certs.d/<host>/` directory to `/etc/containerd/certs.d/`. \
             The CRI plugin reads them when `/etc/containerd/config.toml` has\n\n\
             ```toml\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  \
             config_path = \"/etc/containerd/certs.d\"\n```\n\n\
             Restart containerd once after setting `config_path`; later changes to `hosts.toml` \
             are read at the next pull without a restart. `ctr` needs \
             `--hosts-dir /etc/containerd/certs.d`.\n",
        );
    }
    t.push_str(&format!(
        "\n## k3s and RKE2 (`{}`)\n\n\
         Copy it to `/etc/rancher/k3s/registries.yaml` (RKE2: `/etc/rancher/rke2/registries.yaml`) \
         on every server and agent, then restart `k3s` (or `k3s-agent`; RKE2: `rke2-server` or \
         `rke2-agent`).",
        k3s::PATH
    ));
    if plan.conn.ca_node_path.is_none() && plan.conn.ca_pem.is_some() && !plan.conn.plain_http {
        t.push_str(&format!(" Copy `ca.crt` to `{}`.", k3s::DEFAULT_CA));
    }
    if plan.conn.credentials.is_some() {
        t.push_str(" It holds the registry password: keep it mode 0600, owned by root.");
    }
    t.push_str(&format!(
        "\n\n## CRI-O, podman, skopeo, buildah (`{}`)\n\n\
         Copy it to `/etc/containers/registries.conf.d/50-airgap.conf` (or merge it into \
         `/etc/containers/registries.conf`), then `systemctl reload crio` for CRI-O; podman and \
         skopeo read it at every command.",
        registries_conf::PATH
    ));
    if has(&registries_conf::ca_path(plan.host())) {
        t.push_str(&format!(
            " Copy `containers/certs.d/{0}/` to `/etc/containers/certs.d/{0}/`.",
            plan.host()
        ));
    }
    if has(registries_conf::AUTH) {
        t.push_str(&format!(
            " `{}` holds the credentials (mode 0600): CRI-O reads it from `global_auth_file` \
             in `crio.conf`, podman from `REGISTRY_AUTH_FILE` or \
             `${{XDG_RUNTIME_DIR}}/containers/auth.json`.",
            registries_conf::AUTH
        ));
    }
    t.push_str(&format!(
        "\n\n## OpenShift (`{}`, `{}`)\n\n\
         `oc apply -f openshift/`. The Machine Config Operator writes the nodes' \
         `registries.conf` and updates them itself; no restart by hand.\n",
        openshift::IDMS,
        openshift::ITMS
    ));
    if !out.notes.is_empty() {
        t.push_str("\n## What the formats cannot express here\n\n");
        for n in &out.notes {
            t.push_str(&format!("- `{}` ({}): {}\n", n.file, n.registry, n.text));
        }
    }
    t
}
