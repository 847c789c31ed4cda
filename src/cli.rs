//! Command-line definitions, and their translation into the library's command options.
//! Everything here is parsing; `main.rs` runs and prints.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use airgap::commands::load::{LoadCommand, Login};
use airgap::commands::pack::PackCommand;
use airgap::commands::rewrite::{Names, RewriteCommand};
use airgap::image_rules::{ImageField, ImageRules};
use airgap::naming::{Mode, Target};
use airgap::outputs::{MirrorOptions, OutputOptions};
use airgap::platform::Platform;
use airgap::registry::{parse_mirror, parse_rate, ConnectOptions, RateLimit};
use airgap::rewrite::{K8sOptions, RewriteOptions};

#[derive(Parser, Debug)]
#[command(
    name = "airgap",
    version,
    about = "Move container images and their Kubernetes manifests into air-gapped networks",
    long_about = "Move container images and their Kubernetes manifests into air-gapped networks.\n\n\
On the connected side, `airgap pack` reads an airgap.yaml image list, resolves every image to its \
digest and writes one verifiable bundle.tar.zst. Carry it across; on the isolated side, \
`airgap load bundle.tar.zst --registry 10.0.0.5:5000` pushes every image into the local \
registry under its new name, with every digest unchanged.",
    after_help = "Examples:\n  airgap pack airgap.yaml -o bundle.tar.zst\n  airgap verify bundle.tar.zst\n  airgap inspect bundle.tar.zst\n  airgap load bundle.tar.zst --registry 10.10.254.254:8000 --image-map images.json\n  airgap serve bundle.tar.zst --listen 0.0.0.0:5000"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Resolve the images of a spec file and write a bundle (connected side)
    #[command(
        after_help = "Proxies: HTTPS_PROXY (for https:// registries, a CONNECT tunnel), HTTP_PROXY (for http:// ones), ALL_PROXY (either, when the other is unset) and NO_PROXY (hosts, domains, IPs/CIDRs or *, comma-separated, that go direct) are honoured, uppercase or lowercase; credentials go in the URL (http://USER:PASSWORD@HOST:PORT) and are never printed."
    )]
    Pack(PackArgs),
    /// Push a bundle's images into a registry (isolated side)
    #[command(
        after_help = "Proxies: HTTPS_PROXY (for https:// registries, a CONNECT tunnel), HTTP_PROXY (for http:// ones), ALL_PROXY (either, when the other is unset) and NO_PROXY (hosts, domains, IPs/CIDRs or *, comma-separated, that go direct) are honoured, uppercase or lowercase; credentials go in the URL (http://USER:PASSWORD@HOST:PORT) and are never printed."
    )]
    Load(LoadArgs),
    /// Show a bundle's images, digests, platforms and sizes (reads only its head)
    Inspect(InspectArgs),
    /// Check a whole bundle offline: every digest and size, every manifest's children
    Verify(VerifyArgs),
    /// Sign an existing bundle or split set into BUNDLE.sig.json beside it (not rewritten)
    #[command(
        after_help = "Keys: PKCS#8 PEM from openssl (ECDSA P-256 or Ed25519), or a cosign key (password from $COSIGN_PASSWORD).\n\nExamples:\n  openssl genpkey -algorithm ed25519 -out vendor.pem\n  openssl pkey -in vendor.pem -pubout -out vendor.pub\n  airgap sign bundle.tar.zst --key vendor.pem\n  COSIGN_PASSWORD=… airgap sign bundle.tar.zst --key cosign.key"
    )]
    Sign(SignArgs),
    /// Rewrite image references in Kubernetes YAML to their names in the target registry
    Rewrite(RewriteArgs),
    /// Write a bundle's images as a plain OCI image layout (directory or oci-archive tar)
    Export(ExportArgs),
    /// Answer the read-only registry API straight from a bundle (no registry needed)
    #[command(
        long_about = "Answer the read-only OCI distribution API (/v2/, manifests and blobs by tag and \
digest, HEAD, ranges, _catalog, tags/list) straight from a bundle, under the names `load` would \
give. Nothing is extracted: each blob is read from the frame that holds it. Clients, or a \
registry configured as a pull-through cache, pull from it as from any registry. With \
--tls-cert/--tls-key it speaks HTTPS (clients must trust the certificate's CA); without, plain \
HTTP, and clients must be told the registry is insecure (containerd: a hosts.toml with \
`[host.\"http://HOST:PORT\"]`; docker: \"insecure-registries\")."
    )]
    Serve(ServeArgs),
    /// Show or prune the connected side's blob cache (pack --cache DIR)
    #[command(
        subcommand,
        after_help = "Examples:\n  airgap cache info --cache ~/.cache/airgap\n  AIRGAP_CACHE=/var/cache/airgap airgap cache prune --max-size 50G"
    )]
    Cache(CacheCommand),
    /// Print a shell completion script to standard output
    #[command(
        after_help = "Install:\n  bash: airgap completions bash > ~/.local/share/bash-completion/completions/airgap\n  zsh:  airgap completions zsh > ~/.zfunc/_airgap   (with fpath+=(~/.zfunc) before compinit)\n  fish: airgap completions fish > ~/.config/fish/completions/airgap.fish"
    )]
    Completions(CompletionsArgs),
    /// Print the manual page (roff) to standard output, or write every page to a directory
    #[command(
        after_help = "Examples:\n  airgap man | man -l -\n  airgap man load | man -l -\n  airgap man --dir /usr/local/share/man/man1"
    )]
    Man(ManArgs),
}

#[derive(Subcommand, Debug)]
pub enum CacheCommand {
    /// Count the cache's blobs and partial downloads, and their bytes
    Info(CacheDirArgs),
    /// Remove the least recently used blobs until the cache holds at most --max-size
    Prune(CachePruneArgs),
}

#[derive(Args, Debug)]
pub struct CacheDirArgs {
    /// The cache directory (as given to pack --cache)
    #[arg(long, env = "AIRGAP_CACHE", value_name = "DIR")]
    pub cache: PathBuf,
    /// Print the summary as one JSON document on standard output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CachePruneArgs {
    #[command(flatten)]
    pub dir: CacheDirArgs,
    /// The most the cache may hold afterwards, e.g. 50G, 500M
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: u64,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// The page of this subcommand (airgap-SUBCOMMAND(1)) instead of airgap(1)
    #[arg(conflicts_with = "dir")]
    pub subcommand: Option<String>,
    /// Write airgap.1 and one airgap-SUBCOMMAND.1 per subcommand into this directory
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// How Kubernetes manifests are rewritten (`load --manifests-out` and `rewrite`).
#[derive(Args, Debug, Clone)]
pub struct RewriteFlags {
    /// Write `target:tag@sha256:…`, so a moved tag cannot change what runs
    #[arg(long)]
    pub pin_digests: bool,
    /// Add this pull secret to every pod spec's and ServiceAccount's imagePullSecrets
    #[arg(long, value_name = "NAME")]
    pub pull_secret: Option<String>,
    /// Warn, instead of failing, when a manifest uses an image the bundle does not have
    #[arg(long)]
    pub allow_missing: bool,
    /// Another place holding a full image reference, besides pod specs:
    /// KIND[.GROUP]:PATH[,tag=KEY][,pullPolicy=KEY][,pullSecrets=PATH], e.g.
    /// Prometheus.monitoring.coreos.com:spec.image,pullPolicy=imagePullPolicy (repeatable;
    /// added to the bundle's imageFields)
    #[arg(long = "image-field", value_name = "KIND[.GROUP]:PATH", value_parser = ImageField::parse_flag)]
    pub image_fields: Vec<ImageField>,
    /// Container env variables whose values are image references, `*` a wildcard (repeatable;
    /// replaces the bundle's relatedImageEnv, default RELATED_IMAGE_*)
    #[arg(long = "related-image-env", value_name = "PATTERN")]
    pub related_image_env: Vec<String>,
}

/// Runtime mirror configuration (`load` and `rewrite`).
#[derive(Args, Debug, Clone)]
pub struct MirrorFlags {
    /// Write containerd hosts.toml, k3s/RKE2 registries.yaml, CRI-O/podman registries.conf and
    /// OpenShift ImageDigestMirrorSet/ImageTagMirrorSet files here, sending the nodes' pulls of
    /// the source names to the target (with a README saying where each goes)
    #[arg(long, value_name = "DIR")]
    pub mirror_config: Option<PathBuf>,
    /// Put the target credentials into the mirror files that can hold them (written 0600)
    #[arg(long, requires = "mirror_config")]
    pub mirror_credentials: bool,
    /// Where the target's CA certificate is on the nodes (default: copied into DIR as ca.crt)
    #[arg(long, value_name = "PATH", requires = "mirror_config")]
    pub mirror_ca_path: Option<String>,
}

impl MirrorFlags {
    pub fn options(&self) -> Option<MirrorOptions> {
        self.mirror_config.as_ref().map(|dir| MirrorOptions {
            dir: dir.clone(),
            include_credentials: self.mirror_credentials,
            ca_node_path: self.mirror_ca_path.clone(),
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct TlsArgs {
    /// Trust this CA certificate (PEM) in addition to the system roots
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Do not verify TLS certificates (dangerous; for testing only)
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// Retries for transient network failures (connection reset, 429, 5xx)
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,
}

#[derive(Args, Debug)]
pub struct PackArgs {
    /// The spec file listing the images and Helm charts
    #[arg(default_value = "airgap.yaml")]
    pub spec: PathBuf,
    /// Where to write the bundle (written to a temporary name first, renamed when complete)
    #[arg(
        short,
        long,
        value_name = "BUNDLE",
        required_unless_present = "list_images"
    )]
    pub output: Option<PathBuf>,
    /// Print every image the pack would take, each with where it comes from (the spec's
    /// images: line, or a manifest's file:line and field with imagesFromManifests), and stop:
    /// nothing is downloaded
    #[arg(long)]
    pub list_images: bool,
    /// Send requests for a registry to another endpoint: HOST=URL, e.g.
    /// docker.io=https://mirror.internal; the URL's scheme says http or https (repeatable)
    #[arg(long = "mirror", value_name = "HOST=URL", value_parser = parse_mirror)]
    pub mirrors: Vec<(String, url::Url)>,
    /// Keep only these platforms of multi-platform images: os/arch[/variant] (repeatable;
    /// overrides the spec's `platforms:`)
    #[arg(long = "platform", value_name = "OS/ARCH[/VARIANT]", value_parser = Platform::parse)]
    pub platforms: Vec<Platform>,
    /// Blobs downloaded at once
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
    /// Cap network traffic at RATE bytes (not bits) per second, all connections together
    /// (as curl --limit-rate): e.g. 10M, 500K, 1.5M (K/M/G binary as for --split; KB/MB/GB
    /// decimal)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
    /// zstd compression level (1-19); layers are usually compressed already, so low is fast
    #[arg(long, default_value_t = 3, value_name = "N", value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
    /// Compression threads (default: the number of CPUs)
    #[arg(long, value_name = "N")]
    pub threads: Option<u32>,
    /// Ship the spec's manifests even if they use images the bundle lacks (a warning each)
    #[arg(long)]
    pub allow_missing: bool,
    /// Leave out what refers to the images: cosign signatures, attestations and SBOMs
    /// (tags sha256-<hex>.sig/.att/.sbom) and OCI 1.1 referrers, carried by default
    #[arg(long)]
    pub no_referrers: bool,
    /// Write the bundle in parts of at most SIZE (BUNDLE.001, .002, … plus BUNDLE.parts.json
    /// with each part's checksum), e.g. 4G, 700MB, or fat32 (4 GiB - 1) for USB sticks
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub split: Option<u64>,
    /// Make a delta bundle: leave out every layer and config this earlier bundle carries.
    /// Give the old bundle, or its airgap.json saved with `airgap inspect --metadata`
    #[arg(long, value_name = "BUNDLE|airgap.json")]
    pub base: Option<PathBuf>,
    /// Sign the bundle with this private key into OUTPUT.sig.json (PEM: PKCS#8 P-256 or
    /// Ed25519, or a cosign key with its password in $COSIGN_PASSWORD); repeatable
    #[arg(long, value_name = "KEY")]
    pub sign_key: Vec<PathBuf>,
    /// Keep every downloaded blob in this content-addressed cache and take blobs from it
    /// when they are there (verified again): a re-run after an interruption, or the next
    /// release, downloads only what the cache lacks. Prune with `airgap cache prune`
    #[arg(long, env = "AIRGAP_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Print the summary as one JSON document on standard output (progress stays on standard
    /// error; schema: bundle-spec/schemas/pack.schema.json)
    #[arg(long)]
    pub json: bool,
    /// Print only warnings and errors
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct LoadArgs {
    /// The bundle to load (for a split bundle: any part, its .parts.json, or the base name),
    /// or an OCI image layout from another tool: a directory, or a tar (.gz, .zst) such as
    /// skopeo oci-archive:, docker save, Hauler's haul.tar.zst or a Zarf package
    pub bundle: PathBuf,
    /// For an OCI layout or archive from another tool whose index.json names images by a bare
    /// tag (org.opencontainers.image.ref.name: v1): the repository they belong to, e.g.
    /// docker.io/library/app
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,
    /// The target registry: HOST[:PORT][/PATH]
    #[arg(long, value_name = "HOST[:PORT][/PATH]", value_parser = Target::parse)]
    pub registry: Target,
    /// How images are named in the target registry
    #[arg(long, value_enum, default_value_t = Mode::Replace)]
    pub mode: Mode,
    /// Talk plain HTTP to the target registry
    #[arg(long)]
    pub plain_http: bool,
    /// User name for the target registry (with --password-stdin); default: docker
    /// config.json credentials (identity tokens included), else anonymous
    #[arg(long, short = 'u', requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the target registry password from standard input
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Require a signature by this public key (PEM) before anything is pushed; repeat: any
    /// of them suffices
    #[arg(long, value_name = "PUB")]
    pub key: Vec<PathBuf>,
    /// Write a JSON map of every image's source reference, target reference and digest
    #[arg(long, value_name = "FILE")]
    pub image_map: Option<PathBuf>,
    /// Write the bundle's Kubernetes manifests here, rewritten to the target names with
    /// imagePullPolicy: IfNotPresent (checked before anything is pushed)
    #[arg(long, value_name = "DIR")]
    pub manifests_out: Option<PathBuf>,
    #[command(flatten)]
    pub rewrite: RewriteFlags,
    #[command(flatten)]
    pub mirror: MirrorFlags,
    /// Blobs uploaded at once
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub concurrency: usize,
    /// Cap network traffic at RATE bytes (not bits) per second, all connections together
    /// (as curl --limit-rate): e.g. 10M, 500K, 1.5M (K/M/G binary as for --split; KB/MB/GB
    /// decimal)
    #[arg(long, value_name = "RATE", value_parser = parse_rate)]
    pub limit_rate: Option<u64>,
    /// Upload blobs in chunks of at most SIZE (e.g. 512M), for a registry or proxy that caps
    /// request bodies (nginx client_max_body_size); also the PATCH size for a bundle read as
    /// a stream. Default: one request per blob, falling back to 64 MiB chunks for a registry
    /// that refuses that (smaller after a 413)
    #[arg(long, value_name = "SIZE", value_parser = parse_chunk_size)]
    pub chunk_size: Option<u64>,
    /// Remember unfinished chunked uploads in DIR, so a load run again after an interruption
    /// continues a big layer where the registry has it instead of sending it again (one small
    /// file per upload, no credentials). Default: $XDG_STATE_HOME/airgap, else
    /// ~/.local/state/airgap
    #[arg(long, env = "AIRGAP_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Print the summary as one JSON document on standard output (progress stays on standard
    /// error; schema: bundle-spec/schemas/load.schema.json)
    #[arg(long)]
    pub json: bool,
    /// Print only warnings and errors
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// A bundle, or an OCI image layout from another tool (see load)
    pub bundle: PathBuf,
    /// For an OCI layout or archive from another tool whose index.json names images by a bare
    /// tag (org.opencontainers.image.ref.name: v1): the repository they belong to, e.g.
    /// docker.io/library/app
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,
    /// Print JSON for scripts (schema: bundle-spec/schemas/inspect.schema.json)
    #[arg(long, conflicts_with = "metadata")]
    pub json: bool,
    /// Print the bundle's airgap.json as stored (keep it to make deltas against this bundle
    /// without keeping the bundle)
    #[arg(long)]
    pub metadata: bool,
}

#[derive(Args, Debug)]
pub struct SignArgs {
    /// The bundle (for a split bundle: any part, its .parts.json, or the base name)
    pub bundle: PathBuf,
    /// Private key (PEM: PKCS#8 P-256 or Ed25519, or a cosign key with its password in
    /// $COSIGN_PASSWORD); repeat to sign with several
    #[arg(long, value_name = "KEY", required = true)]
    pub key: Vec<PathBuf>,
    /// Print the summary as JSON on standard output
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("to").required(true).args(["oci", "oci_archive"])))]
pub struct ExportArgs {
    pub bundle: PathBuf,
    /// Write an OCI layout directory (index.json naming every image by its full reference in
    /// org.opencontainers.image.ref.name, oci-layout, blobs/sha256/); skopeo reads it as oci:DIR:REF
    #[arg(long, value_name = "DIR")]
    pub oci: Option<PathBuf>,
    /// Write the layout as one uncompressed tar (skopeo: oci-archive:FILE:REF)
    #[arg(long, value_name = "FILE")]
    pub oci_archive: Option<PathBuf>,
    /// Print only errors
    #[arg(short, long)]
    pub quiet: bool,
}

impl ExportArgs {
    pub fn to(&self) -> airgap::commands::export::ExportTo {
        use airgap::commands::export::ExportTo;
        match (&self.oci, &self.oci_archive) {
            (Some(d), _) => ExportTo::Dir(d.clone()),
            (None, Some(f)) => ExportTo::Tar(f.clone()),
            (None, None) => unreachable!("clap requires --oci or --oci-archive"),
        }
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// A bundle, or an OCI image layout from another tool (see load)
    pub bundle: PathBuf,
    /// Require a signature by this public key (PEM, from `openssl pkey -pubout` or
    /// cosign.pub) before anything else; repeat: any of them suffices
    #[arg(long, value_name = "PUB")]
    pub key: Vec<PathBuf>,
    /// For an OCI layout or archive from another tool whose index.json names images by a bare
    /// tag (org.opencontainers.image.ref.name: v1): the repository they belong to, e.g.
    /// docker.io/library/app
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,
    /// Print the summary as one JSON document on standard output (progress stays on standard
    /// error; schema: bundle-spec/schemas/verify.schema.json)
    #[arg(long)]
    pub json: bool,
    /// Print only errors
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  airgap serve bundle.tar.zst --listen 0.0.0.0:5000\n  airgap serve bundle.tar.zst --path mirror --mode prefix\n  skopeo copy --src-tls-verify=false docker://127.0.0.1:5000/library/redis:7 dir:/tmp/redis"
)]
pub struct ServeArgs {
    /// The bundles (or the first part of a split set), served in one namespace, or a
    /// directory of them (e.g. a release and its deltas); a name two bundles give different
    /// digests is an error. An OCI image layout from another tool (directory or tar) is
    /// served too
    #[arg(required = true, value_name = "BUNDLE|DIR")]
    pub bundles: Vec<PathBuf>,
    /// Address and port to listen on (port 0: any free port)
    #[arg(long, default_value = "127.0.0.1:5000", value_name = "ADDR:PORT")]
    pub listen: std::net::SocketAddr,
    /// How images are named, as for `load --mode`
    #[arg(long, value_enum, default_value_t = Mode::Replace)]
    pub mode: Mode,
    /// Repository prefix, as PATH in `load --registry HOST/PATH`
    #[arg(long, value_name = "PATH")]
    pub path: Option<String>,
    /// For an OCI layout from another tool whose index.json names images only by a bare
    /// tag: the repository they belong to, e.g. docker.io/library/app
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM; with --tls-key)
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require a user of this htpasswd file (bcrypt entries, as `htpasswd -B` writes them)
    /// for every pull; /healthz and /metrics stay open. Without it, pulls are anonymous (a
    /// warning when listening beyond loopback)
    #[arg(long, value_name = "FILE")]
    pub htpasswd: Option<PathBuf>,
    /// Answer connections beyond this many with 503 and Retry-After
    #[arg(long, default_value_t = 512, value_name = "N")]
    pub max_connections: usize,
    /// Buffer memory for blob reads in total, e.g. 64M: a quarter holds decoded frames of a
    /// seekable bundle shared by clients reading them at once, the rest is counted as 6 MiB
    /// per blob read at once; more clients wait their turn instead of growing the server
    #[arg(long, default_value = "64M", value_name = "SIZE", value_parser = parse_size)]
    pub memory: u64,
    /// Of --memory, how much holds decoded frames shared by clients reading the same blob
    /// at once (default: a quarter; at most half; 0: every read decodes its own), e.g. 16M
    #[arg(long, value_name = "SIZE", value_parser = parse_size_or_zero)]
    pub frame_cache: Option<u64>,
    /// On SIGTERM or Ctrl-C, stop accepting and let responses in flight finish for up to
    /// this many seconds
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub shutdown_timeout: u64,
    /// Refuse to start unless the bundle is signed by this public key (PEM); repeat: any of
    /// them suffices
    #[arg(long, value_name = "PUB")]
    pub key: Vec<PathBuf>,
    /// Print no startup listing and no request log (errors only)
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  airgap rewrite k8s/ --image-map images.json -o out/\n  helm template app ./chart | airgap rewrite - --image-map images.json | kubectl apply -f -\n  airgap rewrite deploy.yaml --bundle bundle.tar.zst --registry 10.0.0.5:5000"
)]
pub struct RewriteArgs {
    /// YAML files or directories (every .yaml/.yml below), or - for standard input
    #[arg(required_unless_present = "mirror_config")]
    pub paths: Vec<PathBuf>,
    /// The JSON image map `airgap load --image-map` wrote
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "bundle",
        required_unless_present = "bundle"
    )]
    pub image_map: Option<PathBuf>,
    /// Compute the names from a bundle instead, without pushing (needs --registry)
    #[arg(long, value_name = "BUNDLE", requires = "registry")]
    pub bundle: Option<PathBuf>,
    /// The target registry the bundle is (or will be) loaded into: HOST[:PORT][/PATH]
    #[arg(long, value_name = "HOST[:PORT][/PATH]", requires = "bundle", value_parser = Target::parse)]
    pub registry: Option<Target>,
    /// Naming mode, as for load
    #[arg(long, value_enum, default_value_t = Mode::Replace)]
    pub mode: Mode,
    /// Output directory (same relative names); default: standard output, for a single input
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub rewrite: RewriteFlags,
    #[command(flatten)]
    pub mirror: MirrorFlags,
    /// The target speaks plain HTTP (for --mirror-config)
    #[arg(long)]
    pub plain_http: bool,
    /// The CA certificate of the target (PEM; for --mirror-config)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// `--split SIZE`: clap shows only the error's text, so the advice goes with it.
/// A size where 0 means "none" (`--frame-cache 0`).
fn parse_size_or_zero(s: &str) -> Result<u64, String> {
    match s.trim() {
        "0" => Ok(0),
        other => parse_size(other),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    airgap::bundle::volume::parse_size(s).map_err(|e| match e.hint() {
        Some(h) => format!("{e} ({h})"),
        None => e.to_string(),
    })
}

/// `--chunk-size SIZE`: as `--split`, but not `fat32` nor zero.
/// `$XDG_STATE_HOME/airgap`, else `~/.local/state/airgap` (the XDG base directory rule).
fn default_state_dir() -> Option<PathBuf> {
    let non_empty = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    non_empty("XDG_STATE_HOME")
        .or_else(|| non_empty("HOME").map(|h| h.join(".local/state")))
        .map(|d| d.join("airgap"))
}

fn parse_chunk_size(s: &str) -> Result<u64, String> {
    match parse_size(s)? {
        0 => Err("a chunk size must be at least 1 byte".into()),
        n => Ok(n),
    }
}

impl TlsArgs {
    /// [`Self::connect`] with `--limit-rate`.
    pub fn connect_limited(&self, limit_rate: Option<u64>) -> ConnectOptions {
        ConnectOptions {
            limit_rate: limit_rate.map(RateLimit::new),
            ..self.connect()
        }
    }

    pub fn connect(&self) -> ConnectOptions {
        ConnectOptions {
            ca_file: self.ca_file.clone(),
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            retries: self.retries,
            ..ConnectOptions::default()
        }
    }
}

impl RewriteFlags {
    pub fn options(&self) -> K8sOptions {
        K8sOptions {
            rewrite: RewriteOptions {
                pin_digests: self.pin_digests,
                pull_secret: self.pull_secret.clone(),
                // Merged with the bundle's rules by the command (empty patterns: the bundle's).
                rules: ImageRules {
                    fields: self.image_fields.clone(),
                    related_image_env: self.related_image_env.clone(),
                },
            },
            allow_missing: self.allow_missing,
        }
    }
}

impl PackArgs {
    pub fn command(&self) -> PackCommand {
        PackCommand {
            spec: self.spec.clone(),
            output: self.output.clone().unwrap_or_default(),
            mirrors: self.mirrors.clone(),
            platforms: self.platforms.clone(),
            connect: self.tls.connect_limited(self.limit_rate),
            concurrency: self.concurrency,
            level: self.level,
            threads: self.threads,
            allow_missing: self.allow_missing,
            no_referrers: self.no_referrers,
            split: self.split,
            base: self.base.clone(),
            sign_keys: self.sign_key.clone(),
            cache: self.cache.clone(),
        }
    }
}

impl LoadArgs {
    pub fn command(&self) -> LoadCommand {
        LoadCommand {
            bundle: self.bundle.clone(),
            target: self.registry.clone(),
            mode: self.mode,
            plain_http: self.plain_http,
            connect: self.tls.connect_limited(self.limit_rate),
            login: match &self.username {
                Some(u) => Login::PasswordStdin {
                    username: u.clone(),
                },
                None => Login::DockerConfig,
            },
            concurrency: self.concurrency,
            chunk_size: self.chunk_size,
            state_dir: self.state_dir.clone().or_else(default_state_dir),
            keys: self.key.clone(),
            outputs: OutputOptions {
                image_map: self.image_map.clone(),
                manifests_out: self.manifests_out.clone(),
                rewrite: self.rewrite.options(),
                mirror: self.mirror.options(),
            },
            repository: self.repository.clone(),
        }
    }
}

impl RewriteArgs {
    pub fn command(&self) -> RewriteCommand {
        RewriteCommand {
            paths: self.paths.clone(),
            names: match (&self.image_map, &self.bundle, &self.registry) {
                (Some(p), _, _) => Names::ImageMap(p.clone()),
                // clap requires --registry with --bundle, and one of --image-map/--bundle.
                (None, Some(b), Some(r)) => Names::Bundle {
                    bundle: b.clone(),
                    target: r.clone(),
                    mode: self.mode,
                },
                _ => unreachable!("clap enforces --image-map or --bundle with --registry"),
            },
            output: self.output.clone(),
            rewrite: self.rewrite.options(),
            mirror: self.mirror.options(),
            plain_http: self.plain_http,
            ca_file: self.ca_file.clone(),
        }
    }
}

impl ServeArgs {
    pub fn options(&self) -> airgap::serve::ServeOptions {
        airgap::serve::ServeOptions {
            bundles: self.bundles.clone(),
            listen: self.listen,
            mode: self.mode,
            path: self.path.clone(),
            access_log: !self.quiet,
            tls: match (&self.tls_cert, &self.tls_key) {
                (Some(cert), Some(key)) => Some(airgap::serve::TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            htpasswd: self.htpasswd.clone(),
            max_connections: self.max_connections,
            shutdown_timeout: std::time::Duration::from_secs(self.shutdown_timeout),
            memory: self.memory,
            frame_cache: self.frame_cache,
            repository: self.repository.clone(),
            expected_ids: Vec::new(),
        }
    }
}
