//! The CLI conventions of issue 19: shell completions that a real bash uses, a man page naming
//! every subcommand, and `--json` documents that validate against bundle-spec/schemas/.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

/// The subcommands `airgap --help` lists (so a new one is covered without editing this test).
fn subcommands() -> Vec<String> {
    let out = airgap(["--help"], &[]);
    assert_success(&out);
    let help = stdout_of(&out);
    let list = help
        .split("Commands:")
        .nth(1)
        .expect("--help has a Commands: section");
    let names: Vec<String> = list
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        // A long description wraps onto lines indented past the name column.
        .filter(|l| !l[2..].starts_with(' '))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(String::from)
        .collect();
    assert!(names.len() >= 8, "too few subcommands parsed: {names:?}");
    names
}

/// Installs `airgap completions bash` where bash-completion looks for it, in a temp dir.
fn install_bash_completion(dir: &Path) -> PathBuf {
    let out = airgap(["completions", "bash"], &[]);
    assert_success(&out);
    let path = dir.join("share/bash-completion/completions/airgap");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &out.stdout).unwrap();
    path
}

/// What a real bash offers for the command line `words` (the last word being completed):
/// the script is sourced, the function it registered for `airgap` (`complete -p`) is called as
/// readline would, with COMP_WORDS/COMP_CWORD/COMP_LINE/COMP_POINT set.
fn complete(script: &Path, words: &[&str]) -> Vec<String> {
    const DRIVER: &str = r#"
set -u
source "$1"; shift
spec=$(complete -p airgap) || { echo "no completion registered for airgap" >&2; exit 3; }
func=$(sed -E 's/.* -F ([^ ]+) .*/\1/' <<<"$spec")
COMP_WORDS=("$@")
COMP_CWORD=$(( $# - 1 ))
COMP_LINE="$*"
COMP_POINT=${#COMP_LINE}
COMPREPLY=()
prev=""
if [ "$COMP_CWORD" -gt 0 ]; then prev=${COMP_WORDS[COMP_CWORD-1]}; fi
"$func" airgap "${COMP_WORDS[COMP_CWORD]}" "$prev"
printf '%s\n' "${COMPREPLY[@]}"
"#;
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", DRIVER, "bash"])
        .arg(script)
        .args(words)
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash completion of {words:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    v.sort();
    v
}

#[test]
fn bash_completion_completes_subcommands_and_flags() {
    let dir = tempdir();
    let script = install_bash_completion(dir.path());
    assert_eq!(complete(&script, &["airgap", "lo"]), ["load"]);
    assert_eq!(complete(&script, &["airgap", "ver"]), ["verify"]);
    assert_eq!(
        complete(&script, &["airgap", "load", "--reg"]),
        ["--registry"]
    );
    assert_eq!(complete(&script, &["airgap", "pack", "--js"]), ["--json"]);
    assert_eq!(
        complete(&script, &["airgap", "load", "bundle.tar.zst", "--mode", ""]),
        ["flatten", "prefix", "replace"]
    );
    // Every subcommand is offered after `airgap `.
    let all = complete(&script, &["airgap", ""]);
    for name in subcommands() {
        assert!(all.contains(&name), "{name} not offered: {all:?}");
    }
    let shells = complete(&script, &["airgap", "completions", ""]);
    for sh in ["bash", "fish", "zsh"] {
        assert!(
            shells.contains(&sh.to_string()),
            "{sh} not offered: {shells:?}"
        );
    }
}

#[test]
fn zsh_and_fish_completions_are_generated() {
    let zsh = airgap(["completions", "zsh"], &[]);
    assert_success(&zsh);
    assert!(stdout_of(&zsh).starts_with("#compdef airgap"));
    let fish = airgap(["completions", "fish"], &[]);
    assert_success(&fish);
    assert!(stdout_of(&fish).contains("complete -c airgap"));
    assert!(stdout_of(&fish).contains("-l registry"));
}

#[test]
fn man_page_is_roff_naming_every_subcommand() {
    let out = airgap(["man"], &[]);
    assert_success(&out);
    let page = stdout_of(&out);
    assert!(page.contains("\n.TH airgap 1 "), "no .TH title:\n{page}");
    for section in [
        ".SH NAME",
        ".SH SYNOPSIS",
        ".SH DESCRIPTION",
        ".SH SUBCOMMANDS",
    ] {
        assert!(page.contains(section), "no {section}:\n{page}");
    }
    let names = subcommands();
    for name in &names {
        // roff escapes the hyphen: airgap\-pack(1)
        let entry = format!("airgap\\-{name}(1)");
        assert!(page.contains(&entry), "{entry} missing:\n{page}");
    }

    // One page per subcommand, with its flags.
    let load = stdout_of(&airgap(["man", "load"], &[]));
    assert!(load.contains(".TH airgap-load 1 "), "{load}");
    assert!(load.contains("\\-\\-registry"), "{load}");
    assert!(load.contains("\\-\\-json"), "{load}");
    let dir = tempdir();
    assert_success(&airgap(args!["man", "--dir", dir.path()], &[]));
    let mut want: Vec<String> = names.iter().map(|n| format!("airgap-{n}.1")).collect();
    want.push("airgap.1".into());
    want.sort();
    assert_eq!(dir_names(dir.path()), want);
    assert_failure_contains(&airgap(["man", "nope"], &[]), &["no subcommand nope"]);

    // groff reads the page without a warning, where it is installed (-k: UTF-8 through
    // preconv, as man-db does: the help text has … and →).
    if Command::new("groff").arg("-v").output().is_ok() {
        for page in dir_names(dir.path()) {
            let out = Command::new("groff")
                .args(["-k", "-man", "-Tutf8", "-ww", "-z"])
                .arg(dir.path().join(&page))
                .output()
                .unwrap();
            assert!(out.status.success(), "groff {page}");
            let warnings = String::from_utf8_lossy(&out.stderr);
            assert_eq!(warnings, "", "groff warnings for {page}");
        }
    } else {
        eprintln!("groff not installed: the roff is not rendered");
    }
}
