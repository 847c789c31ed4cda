use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use base64::Engine as _;

use super::config::{normalise_host, ConfigKey, Lookup};
use super::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs a lookup with exactly `vars` as the environment.
fn with_env<T>(vars: &[(&str, &Path)], f: impl FnOnce(&Lookup) -> T) -> T {
    let map: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_os_str().to_owned()))
        .collect();
    let env = move |k: &str| map.get(k).cloned();
    f(&Lookup { env: &env })
}

/// `dir` first, then the system directories the fake helpers' `cat` lives in.
fn path_with(dir: &Path) -> PathBuf {
    PathBuf::from(format!("{}:/usr/bin:/bin", dir.display()))
}

fn creds(user: &str, pass: &str) -> Option<Credentials> {
    Some(Credentials::new(user, pass))
}

/// A fake `docker-credential-NAME` in `dir` answering for `server` only.
fn fake_helper(dir: &Path, name: &str, server: &str, user: &str, secret: &str) {
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nserver=$(cat)\n\
         if [ \"$server\" = '{server}' ]; then\n  printf '{{\"ServerURL\":\"%s\",\"Username\":\"{user}\",\"Secret\":\"{secret}\"}}' \"$server\"\n\
         else\n  echo 'credentials not found in native keychain'\n  exit 1\nfi\n"
    );
    let p = write(dir, &format!("docker-credential-{name}"), &script);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn inline_auth_and_key_spellings() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "config.json",
        &format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{}"}},
                "quay.io": {{"auth": "{}"}},
                "http://127.0.0.1:5000/v2/": {{"username": "u3", "password": "p3"}},
                "https://ghcr.io": {{"auth": "{}"}},
                "registry.example.com/v1/": {{"auth": "{}"}}
            }}}}"#,
            b64("hubuser:hub:pass"),
            b64("quser:qpass"),
            b64("g:h"),
            // no padding: docker accepts it
            b64("ex:ample").trim_end_matches('=')
        ),
    );
    with_env(&[], |l| {
        let get = |h: &str| l.in_file(&cfg, &normalise_host(h), None).unwrap();
        assert_eq!(get("docker.io"), creds("hubuser", "hub:pass"));
        assert_eq!(get("index.docker.io"), creds("hubuser", "hub:pass"));
        assert_eq!(get("registry-1.docker.io"), creds("hubuser", "hub:pass"));
        assert_eq!(get("quay.io"), creds("quser", "qpass"));
        assert_eq!(get("127.0.0.1:5000"), creds("u3", "p3"));
        assert_eq!(get("ghcr.io"), creds("g", "h"));
        assert_eq!(get("registry.example.com"), creds("ex", "ample"));
        assert_eq!(get("gcr.io"), None);
        assert_eq!(get("127.0.0.1:5001"), None);
    });
}

#[test]
fn files_in_order_and_docker_config_replaces_home() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("home");
    let dc = d.path().join("dc");
    let authfile = write(
        d.path(),
        "auth.json",
        &format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}}}}"#,
            b64("podman:1")
        ),
    );
    write(
        &home,
        ".docker/config.json",
        &format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "ghcr.io": {{"auth": "{}"}}}}}}"#,
            b64("home:1"),
            b64("home:2")
        ),
    );
    write(
        &dc,
        "config.json",
        &format!(
            r#"{{"auths": {{"gcr.io": {{"auth": "{}"}}}}}}"#,
            b64("dc:1")
        ),
    );
    with_env(&[("HOME", &home), ("REGISTRY_AUTH_FILE", &authfile)], |l| {
        assert_eq!(l.find("quay.io", None).unwrap(), creds("podman", "1"));
        assert_eq!(l.find("ghcr.io", None).unwrap(), creds("home", "2"));
    });
    with_env(&[("HOME", &home), ("DOCKER_CONFIG", &dc)], |l| {
        assert_eq!(l.find("gcr.io", None).unwrap(), creds("dc", "1"));
        assert_eq!(
            l.find("ghcr.io", None).unwrap(),
            None,
            "DOCKER_CONFIG replaces ~/.docker"
        );
    });
    // A missing file is skipped.
    let missing = d.path().join("nope.json");
    with_env(&[("HOME", &home), ("REGISTRY_AUTH_FILE", &missing)], |l| {
        assert_eq!(l.find("quay.io", None).unwrap(), creds("home", "1"));
    });
}

#[test]
fn podman_repository_scoped_keys() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(
        d.path(),
        "auth.json",
        &format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "quay.io/org": {{"auth": "{}"}}, "quay.io/org/team": {{"auth": "{}"}}}}}}"#,
            b64("host:1"),
            b64("org:1"),
            b64("team:1")
        ),
    );
    with_env(&[("REGISTRY_AUTH_FILE", &cfg)], |l| {
        assert_eq!(
            l.find("quay.io", Some("org/team/app")).unwrap(),
            creds("team", "1")
        );
        assert_eq!(
            l.find("quay.io", Some("org/app")).unwrap(),
            creds("org", "1")
        );
        assert_eq!(
            l.find("quay.io", Some("organisation/app")).unwrap(),
            creds("host", "1")
        );
        assert_eq!(l.find("quay.io", None).unwrap(), creds("host", "1"));
    });
}

#[test]
fn cred_helpers_and_store() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    fake_helper(&bin, "fake", "quay.io", "helperuser", "helpersecret");
    fake_helper(&bin, "store", DOCKER_HUB_CONFIG_KEY, "hubstore", "s1");
    let cfg = write(
        d.path(),
        "config.json",
        &format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{}"}}, "https://index.docker.io/v1/": {{}}, "gcr.io": {{"auth": "{}"}}}},
                "credHelpers": {{"quay.io": "fake", "ghcr.io": "fake"}},
                "credsStore": "store"}}"#,
            b64("inline:ignored"),
            b64("inline:gcr")
        ),
    );
    with_env(&[("PATH", &path_with(&bin))], |l| {
        let get = |h: &str| l.in_file(&cfg, &normalise_host(h), None);
        // credHelpers beats the inline entry
        assert_eq!(get("quay.io").unwrap(), creds("helperuser", "helpersecret"));
        // the helper knows nothing for ghcr.io: not found, no error
        assert_eq!(get("ghcr.io").unwrap(), None);
        // credsStore for Docker Hub, asked with docker's key
        assert_eq!(get("docker.io").unwrap(), creds("hubstore", "s1"));
        // the store has nothing for gcr.io: the inline entry is used
        assert_eq!(get("gcr.io").unwrap(), creds("inline", "gcr"));
    });
}

#[test]
fn missing_helpers() {
    let d = tempfile::tempdir().unwrap();
    let empty_bin = d.path().join("emptybin");
    std::fs::create_dir_all(&empty_bin).unwrap();
    let cfg = write(
        d.path(),
        "config.json",
        r#"{"auths": {"quay.io": {}}, "credHelpers": {"gcr.io": "gone"}, "credsStore": "desktop"}"#,
    );
    with_env(&[("PATH", &empty_bin)], |l| {
        let get = |h: &str| l.in_file(&cfg, h, None);
        // A named helper that is not installed is an error naming the helper and the file.
        let e = get("gcr.io").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-gone") && e.contains("config.json"),
            "{e}"
        );
        // The default store is missing, and quay.io was logged in through it: error.
        let e = get("quay.io").unwrap_err().to_string();
        assert!(
            e.contains("docker-credential-desktop") && e.contains("credsStore"),
            "{e}"
        );
        // A registry nobody logged in to: a missing default store is no error.
        assert_eq!(get("registry.example.com").unwrap(), None);
    });
}

#[test]
fn helper_failure_and_identity_token() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("bin");
    let p = write(
        &bin,
        "docker-credential-broken",
        "#!/bin/sh\ncat >/dev/null\necho 'keychain locked' >&2\nexit 1\n",
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    fake_helper(&bin, "oauth", "quay.io", "<token>", "refresh");
    let cfg = write(
        d.path(),
        "config.json",
        r#"{"credHelpers": {"ghcr.io": "broken", "quay.io": "oauth"},
            "auths": {"gcr.io": {"identitytoken": "tok"},
                      "docker.io": {"auth": "dXNlcjo=", "identitytoken": "hub-refresh"},
                      "reg.example": {"username": "u", "password": "p", "identitytoken": "wins"}}}"#,
    );
    with_env(&[("PATH", &path_with(&bin))], |l| {
        let e = l.in_file(&cfg, "ghcr.io", None).unwrap_err().to_string();
        assert!(
            e.contains("keychain locked") && e.contains("docker-credential-broken"),
            "{e}"
        );
        // A helper's `<token>` answer and an inline `identitytoken` are identity tokens.
        let c = l.in_file(&cfg, "quay.io", None).unwrap().unwrap();
        assert!(c.is_identity_token());
        assert_eq!(c.password, "refresh");
        assert!(!format!("{c:?}").contains("refresh"), "{c:?}");
        let c = l.in_file(&cfg, "gcr.io", None).unwrap().unwrap();
        assert_eq!(c, Credentials::identity_token("tok"));
        // What `docker login` writes (`auth` of `user:` beside the token), and an entry with
        // both: the identity token is what docker sends.
        let c = l.in_file(&cfg, "docker.io", None).unwrap().unwrap();
        assert_eq!(c, Credentials::identity_token("hub-refresh"));
        let c = l.in_file(&cfg, "reg.example", None).unwrap().unwrap();
        assert_eq!(c, Credentials::identity_token("wins"));
    });
}

#[test]
fn unsafe_helper_names_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let cfg = write(d.path(), "config.json", r#"{"credsStore": "../../bin/sh"}"#);
    with_env(&[], |l| {
        let e = l.in_file(&cfg, "quay.io", None).unwrap_err().to_string();
        assert!(e.contains("not a credential helper name"), "{e}");
    });
}

#[test]
fn errors_name_the_file_and_never_the_secret() {
    let d = tempfile::tempdir().unwrap();
    let bad_json = write(
        d.path(),
        "broken.json",
        r#"{"auths": {"quay.io": {"auth": "c2VjcmV0"}"#,
    );
    let e = lookup_in(&bad_json, "quay.io").unwrap_err().to_string();
    assert!(e.contains("broken.json"), "{e}");
    assert!(!e.contains("c2VjcmV0"), "{e}");

    let bad_b64 = write(
        d.path(),
        "b64.json",
        r#"{"auths": {"quay.io": {"auth": "%%%hunter2%%%"}}}"#,
    );
    let e = lookup_in(&bad_b64, "quay.io").unwrap_err().to_string();
    assert!(
        e.contains("b64.json") && e.contains("auths.quay.io.auth"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");

    let no_colon = write(
        d.path(),
        "nocolon.json",
        &format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{}"}}}}}}"#,
            b64("hunter2")
        ),
    );
    let e = lookup_in(&no_colon, "quay.io").unwrap_err().to_string();
    assert!(e.contains("user:password") && !e.contains("hunter2"), "{e}");

    let wrong_type = write(
        d.path(),
        "type.json",
        r#"{"auths": {"quay.io": "hunter2"}}"#,
    );
    let e = lookup_in(&wrong_type, "quay.io").unwrap_err().to_string();
    assert!(e.contains("type.json") && !e.contains("hunter2"), "{e}");

    let e = lookup_in(&d.path().join("absent.json"), "quay.io")
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent.json"), "{e}");
}

#[test]
fn key_parsing() {
    let k = ConfigKey::parse("https://index.docker.io/v1/");
    assert_eq!((k.host.as_str(), k.path.as_str()), ("docker.io", ""));
    let k = ConfigKey::parse("quay.io/org/team");
    assert_eq!((k.host.as_str(), k.path.as_str()), ("quay.io", "org/team"));
    let k = ConfigKey::parse("https://quay.io/org");
    assert_eq!((k.host.as_str(), k.path.as_str()), ("quay.io", ""));
    let k = ConfigKey::parse("localhost:5000/v2/");
    assert_eq!((k.host.as_str(), k.path.as_str()), ("localhost:5000", ""));
}

#[test]
fn debug_redacts_password() {
    let c = Credentials::new("u", "hunter2");
    assert!(!format!("{c:?}").contains("hunter2"));
}
