//! The `kubernetes.io/dockerconfigjson` Secret that lets pods pull from the target registry.

use base64::Engine as _;

use crate::registry::credentials::Credentials;

/// A Secret named `name` holding `creds` for `registry`, in `namespace` when given (else in
/// the one it is applied to).
pub fn pull_secret_manifest(
    name: &str,
    registry: &str,
    creds: &Credentials,
    namespace: Option<&str>,
) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let auth = b64.encode(format!("{}:{}", creds.username, creds.password));
    let config = serde_json::json!({
        "auths": { registry: {
            "username": creds.username,
            "password": creds.password,
            "auth": auth,
        }}
    });
    let data = b64.encode(serde_json::to_vec(&config).expect("JSON"));
    format!(
        "# Written by airgap: pull credentials for {registry}. Keep this file private.\n\
         apiVersion: v1\n\
         kind: Secret\n\
         metadata:\n  name: {}\n{}\
         type: kubernetes.io/dockerconfigjson\n\
         data:\n  .dockerconfigjson: {data}\n",
        serde_json::to_string(name).expect("JSON string"),
        namespace.map_or(String::new(), |n| format!(
            "  namespace: {}\n",
            serde_json::to_string(n).expect("JSON string")
        )),
    )
}
