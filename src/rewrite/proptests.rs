//! Property tests over generated manifests: random kinds, indentation, sequence style,
//! quoting, flow or block containers, comments (with non-ASCII text), line endings and
//! document markers. A small model renders both the input and the output the rewriter must
//! produce, so every byte of the output is checked, not only the image lines.

use proptest::prelude::*;

use super::{image_references, rewrite, RewriteOptions};
use crate::digest::Digest;
use crate::image_map::{ImageMap, ImageMapEntry};
use crate::reference::Reference;

const SHA: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// Images as written in manifests, and what they become with [`relocating_map`] (`None`:
/// not in the map). The first three are written exactly as they display, for
/// [`identity_map`].
fn images() -> Vec<(String, Option<String>)> {
    vec![
        (
            "docker.io/library/redis:7".into(),
            Some("reg.local:5000/library/redis:7".into()),
        ),
        (
            "quay.io/org/app:1.0".into(),
            Some("reg.local:5000/org/app:1.0".into()),
        ),
        (
            format!("quay.io/org/app@{SHA}"),
            Some(format!("reg.local:5000/org/app@{SHA}")),
        ),
        ("ghcr.io/not/mapped:2".into(), None),
        (
            "redis:7".into(),
            Some("reg.local:5000/library/redis:7".into()),
        ),
        (
            "nginx".into(),
            Some("reg.local:5000/library/nginx:latest".into()),
        ),
    ]
}
const IDENTITY_IMAGES: usize = 4;

fn map_entry(source: &str, target: &str) -> ImageMapEntry {
    ImageMapEntry {
        source: Reference::parse(source).unwrap(),
        target: Reference::parse(target).unwrap(),
        digest: Digest::parse(SHA).unwrap(),
        source_digest: None,
        chart: None,
    }
}

fn relocating_map() -> ImageMap {
    ImageMap::new(vec![
        map_entry("redis:7", "reg.local:5000/library/redis:7"),
        map_entry("quay.io/org/app:1.0", "reg.local:5000/org/app:1.0"),
        map_entry(&format!("quay.io/org/app@{SHA}"), "reg.local:5000/org/app"),
        map_entry("nginx:latest", "reg.local:5000/library/nginx:latest"),
    ])
}

/// Every mapped image goes where it already is.
fn identity_map() -> ImageMap {
    ImageMap::new(vec![
        map_entry("redis:7", "docker.io/library/redis:7"),
        map_entry("quay.io/org/app:1.0", "quay.io/org/app:1.0"),
        map_entry(&format!("quay.io/org/app@{SHA}"), "quay.io/org/app"),
    ])
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Quote {
    Plain,
    Single,
    Double,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Policy {
    Absent,
    Always,
    IfNotPresent,
    Never,
}

#[derive(Debug, Clone)]
struct Ctr {
    image: usize,
    quote: Quote,
    policy: Policy,
    policy_quote: Quote,
    flow: bool,
    comment: bool,
    extra: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Secrets {
    Absent,
    /// A block list, `other` first, ours too when true.
    Block(bool),
    Flow(bool),
}

#[derive(Debug, Clone)]
struct Workload {
    kind: usize,
    containers: Vec<Ctr>,
    init: Vec<Ctr>,
    secrets: Secrets,
    restart_policy: bool,
    trailing: bool,
}

#[derive(Debug, Clone)]
enum Doc {
    Workload(Workload),
    ConfigMap(usize),
    ServiceAccount(Secrets, bool),
}

#[derive(Debug, Clone)]
struct Style {
    indent: usize,
    seq_indented: bool,
    crlf: bool,
    comments: bool,
    explicit_start: bool,
    doc_end: bool,
}

/// What the rewriter is expected to do; `None` renders the input.
struct Expect<'a> {
    secret: Option<&'a str>,
    /// The block-sequence offset the rewriter infers from the file.
    new_seq_offset: usize,
}

struct Writer<'a> {
    style: &'a Style,
    images: &'a [(String, Option<String>)],
    expect: Option<&'a Expect<'a>>,
    lines: Vec<String>,
    block_seq: bool,
}

fn quoted(q: Quote, s: &str) -> String {
    match q {
        Quote::Plain => s.to_string(),
        Quote::Single => format!("'{s}'"),
        Quote::Double => format!("\"{s}\""),
    }
}

impl Writer<'_> {
    fn line(&mut self, col: usize, s: &str) {
        self.lines.push(format!("{}{s}", " ".repeat(col)));
    }

    fn comment(&mut self, col: usize, on: bool, s: &str) {
        if on && self.style.comments {
            self.line(col, &format!("# {s}"));
        }
    }

    fn inline(&self, on: bool, s: &str) -> String {
        if on && self.style.comments {
            format!(" # {s}")
        } else {
            String::new()
        }
    }

    fn seq(&self) -> usize {
        if self.style.seq_indented {
            self.style.indent
        } else {
            0
        }
    }

    fn image_text(&self, i: usize) -> String {
        let (written, mapped) = &self.images[i];
        match (self.expect, mapped) {
            (Some(_), Some(new)) => new.clone(),
            _ => written.clone(),
        }
    }

    /// The policy as rendered, or `None` when absent.
    fn policy_text(&self, c: &Ctr, rewritten: bool) -> Option<String> {
        let fix = self.expect.is_some() && rewritten;
        match c.policy {
            Policy::Absent if fix => Some("IfNotPresent".into()),
            Policy::Absent => None,
            Policy::Always if fix => Some(quoted(c.policy_quote, "IfNotPresent")),
            Policy::Always => Some(quoted(c.policy_quote, "Always")),
            Policy::IfNotPresent => Some(quoted(c.policy_quote, "IfNotPresent")),
            Policy::Never => Some(quoted(c.policy_quote, "Never")),
        }
    }

    fn containers(&mut self, col: usize, key: &str, ctrs: &[Ctr], rewritten: bool) {
        if ctrs.is_empty() {
            self.line(col, &format!("{key}: []"));
            return;
        }
        self.line(col, &format!("{key}:"));
        self.block_seq = true;
        let item = col + self.seq();
        for (n, c) in ctrs.iter().enumerate() {
            let image = quoted(c.quote, &self.image_text(c.image));
            let policy = self.policy_text(c, rewritten);
            self.comment(item, c.comment && n % 2 == 0, "container ✓");
            if c.flow {
                let mut s = format!("- {{name: c{n}, image: {image}");
                if let Some(p) = policy {
                    s += &format!(", imagePullPolicy: {p}");
                }
                if c.extra {
                    s += ", args: [a, 'b c']";
                }
                s += "}";
                s += &self.inline(c.comment, "flow ünï");
                self.line(item, &s);
            } else {
                let name = format!("- name: c{n}{}", self.inline(c.comment, "名前"));
                self.line(item, &name);
                let image = format!("image: {image}{}", self.inline(c.comment, "pinned 🚀"));
                self.line(item + 2, &image);
                if let Some(p) = policy {
                    self.line(item + 2, &format!("imagePullPolicy: {p}"));
                }
                if c.extra {
                    self.comment(item + 2, c.comment, "args");
                    self.line(item + 2, "args: [\"--x\", 'y']");
                }
            }
        }
    }

    fn secrets(&mut self, col: usize, secrets: Secrets) {
        let add = self.expect.and_then(|e| e.secret).is_some();
        match secrets {
            Secrets::Absent => {
                if add {
                    let offset = self.expect.unwrap().new_seq_offset;
                    self.line(col, "imagePullSecrets:");
                    self.line(col + offset, "- name: regcred");
                }
            }
            Secrets::Block(ours) => {
                self.line(col, "imagePullSecrets:");
                self.block_seq = true;
                let item = col + self.seq();
                self.line(item, "- name: other");
                if ours || add {
                    self.line(item, "- name: regcred");
                }
            }
            Secrets::Flow(ours) => {
                let mut items = vec!["{name: other}"];
                if ours || add {
                    items.push("{name: regcred}");
                }
                self.line(col, &format!("imagePullSecrets: [{}]", items.join(", ")));
            }
        }
    }

    fn pod_spec(&mut self, col: usize, w: &Workload) {
        let images = self.images;
        let rewritten = w
            .containers
            .iter()
            .chain(&w.init)
            .any(|c| images[c.image].1.is_some());
        if w.secrets != Secrets::Absent {
            self.secrets(col, w.secrets);
        }
        self.comment(col, true, "the containers");
        self.containers(col, "containers", &w.containers, rewritten);
        if !w.init.is_empty() {
            self.containers(col, "initContainers", &w.init, rewritten);
        }
        if w.restart_policy {
            self.line(col, "restartPolicy: Always # not an image pull policy");
        }
        if w.secrets == Secrets::Absent {
            self.secrets(col, Secrets::Absent);
        }
    }

    fn doc(&mut self, doc: &Doc) {
        let i = self.style.indent;
        self.comment(0, true, "document ✓ 日本");
        match doc {
            Doc::Workload(w) => {
                let (kind, path, trailing): (&str, &[&str], (usize, &str)) = match w.kind {
                    0 => ("Pod", &["spec:"], (0, "status: {}")),
                    1 => (
                        "Deployment",
                        &["spec:", "template:", "spec:"],
                        (i, "paused: false"),
                    ),
                    _ => (
                        "CronJob",
                        &["spec:", "jobTemplate:", "spec:", "template:", "spec:"],
                        (i, "suspend: false"),
                    ),
                };
                self.line(0, &format!("kind: {kind}"));
                self.line(0, "metadata:");
                self.line(i, &format!("name: w{}", self.inline(true, "ñame")));
                for (depth, key) in path.iter().enumerate() {
                    self.line(depth * i, key);
                }
                self.pod_spec(path.len() * i, w);
                if w.trailing {
                    self.comment(trailing.0, true, "after the pod spec");
                    self.line(trailing.0, trailing.1);
                }
            }
            Doc::ConfigMap(image) => {
                self.line(0, "kind: ConfigMap");
                self.line(0, "data:");
                let text = self.images[*image].0.clone();
                self.line(i, &format!("image: {text}"));
            }
            Doc::ServiceAccount(secrets, automount) => {
                self.line(0, "kind: ServiceAccount");
                self.line(0, "metadata: {name: sa}");
                if *secrets != Secrets::Absent {
                    self.secrets(0, *secrets);
                }
                if *automount {
                    self.line(0, "automountServiceAccountToken: false");
                }
                if *secrets == Secrets::Absent {
                    self.secrets(0, Secrets::Absent);
                }
            }
        }
    }
}

/// Renders the stream; returns the text and whether it has a block sequence.
fn render(
    docs: &[Doc],
    style: &Style,
    images: &[(String, Option<String>)],
    expect: Option<&Expect>,
) -> (String, bool) {
    let mut w = Writer {
        style,
        images,
        expect,
        lines: Vec::new(),
        block_seq: false,
    };
    for (n, doc) in docs.iter().enumerate() {
        if n > 0 || style.explicit_start {
            w.line(0, "---");
        }
        w.doc(doc);
        if style.doc_end {
            w.line(0, "...");
        }
    }
    let eol = if style.crlf { "\r\n" } else { "\n" };
    let mut text = w.lines.join(eol);
    text.push_str(eol);
    (text, w.block_seq)
}

fn quote() -> impl Strategy<Value = Quote> {
    prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double)]
}

fn ctr(n_images: usize, policies: Vec<Policy>) -> impl Strategy<Value = Ctr> {
    (
        0..n_images,
        quote(),
        prop::sample::select(policies),
        quote(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(image, quote, policy, policy_quote, flow, comment, extra)| Ctr {
                image,
                quote,
                policy,
                policy_quote,
                flow,
                comment,
                extra,
            },
        )
}

fn secrets() -> impl Strategy<Value = Secrets> {
    prop_oneof![
        Just(Secrets::Absent),
        any::<bool>().prop_map(Secrets::Block),
        any::<bool>().prop_map(Secrets::Flow),
    ]
}

fn docs(n_images: usize, policies: Vec<Policy>) -> impl Strategy<Value = Vec<Doc>> {
    let workload = (
        0..3usize,
        prop::collection::vec(ctr(n_images, policies.clone()), 0..4),
        prop::collection::vec(ctr(n_images, policies), 0..2),
        secrets(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(kind, containers, init, secrets, restart_policy, trailing)| {
                Doc::Workload(Workload {
                    kind,
                    containers,
                    init,
                    secrets,
                    restart_policy,
                    trailing,
                })
            },
        );
    let doc = prop_oneof![
        4 => workload,
        1 => (0..n_images).prop_map(Doc::ConfigMap),
        1 => (secrets(), any::<bool>()).prop_map(|(s, a)| Doc::ServiceAccount(s, a)),
    ];
    prop::collection::vec(doc, 1..5)
}

fn style() -> impl Strategy<Value = Style> {
    (
        2..5usize,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(indent, seq_indented, crlf, comments, explicit_start, doc_end)| Style {
                indent,
                seq_indented,
                crlf,
                comments,
                explicit_start,
                doc_end,
            },
        )
}

fn all_policies() -> Vec<Policy> {
    vec![
        Policy::Absent,
        Policy::Always,
        Policy::IfNotPresent,
        Policy::Never,
    ]
}

proptest! {
    /// No image needs a new name and no policy needs changing: the output is the input,
    /// byte for byte, whatever the comments, quoting, indentation and line endings.
    #[test]
    fn unchanged_when_nothing_to_do(
        docs in docs(IDENTITY_IMAGES, vec![Policy::IfNotPresent, Policy::Never]),
        style in style(),
        identity in any::<bool>(),
    ) {
        let images = images();
        let (input, _) = render(&docs, &style, &images, None);
        let map = if identity { identity_map() } else { ImageMap::default() };
        let out = rewrite(&input, &map, &RewriteOptions::default()).unwrap();
        prop_assert_eq!(&out.text, &input);
        prop_assert!(out.changes.is_empty());
    }

    /// The output is exactly what the model renders: new names in the same quotes, policies
    /// set on rewritten pod specs only, secrets added where missing; nothing else differs.
    #[test]
    fn output_matches_the_model(
        docs in docs(images().len(), all_policies()),
        style in style(),
        add_secret in any::<bool>(),
    ) {
        let images = images();
        let (input, block_seq) = render(&docs, &style, &images, None);
        let secret = add_secret.then_some("regcred");
        let expect = Expect {
            secret,
            new_seq_offset: if block_seq && style.seq_indented { style.indent } else { 0 },
        };
        let (want, _) = render(&docs, &style, &images, Some(&expect));
        let opts = RewriteOptions { pin_digests: false, pull_secret: secret.map(str::to_string), ..Default::default() };
        let out = rewrite(&input, &relocating_map(), &opts).unwrap();
        prop_assert_eq!(&out.text, &want);

        // Every container image is found, in order, and only unmapped ones are missing.
        let used = image_references(&input, &Default::default()).unwrap();
        let n_containers: usize = docs.iter().map(|d| match d {
            Doc::Workload(w) => w.containers.len() + w.init.len(),
            _ => 0,
        }).sum();
        prop_assert_eq!(used.len(), n_containers);
        let unmapped = used.iter().filter(|u| u.text == images[3].0).count();
        prop_assert_eq!(out.missing.len(), unmapped);

        // Running again changes nothing.
        let again = rewrite(&out.text, &relocating_map(), &opts).unwrap();
        prop_assert_eq!(&again.text, &out.text);
        prop_assert!(again.changes.is_empty());
    }
}
