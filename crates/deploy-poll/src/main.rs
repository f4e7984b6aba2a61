//! `deploy-poll`: deploys the newest release tag of the repository's origin, pull-based: one
//! directory per tag, built where it sits, one atomic `current` switch, health-gated, with
//! rollback and a memory of bad tags.

mod deploy;
mod limits;
mod pending;
mod run;
mod version;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use step_runtime::{CommonArgs, env_vars};

/// Restarts what runs a release. Plain `systemctl` calls, allowed to the service user by the
/// polkit rule of `scripts/setup_server.sh`. `materia-units.service` (root's, installed by
/// setup_server.sh) first installs the units and per-unit environment files of the release
/// `current` points to, read from its verified tag (`scripts/install_units.sh`).
const DEFAULT_RESTART_CMD: &str = "systemctl start materia-units.service && \
     systemctl restart materia-supervisor.service && \
     if systemctl is-enabled --quiet materia-web.socket 2>/dev/null; then \
     systemctl restart materia-web.service; fi";
/// Proves the new release does its job (its steps succeed), not only that a unit is active.
const DEFAULT_HEALTH_CMD: &str = "sh scripts/health-check.sh";

/// Deploy the newest release tag: build it in its own directory, switch `current`, restart,
/// check health, roll back on failure
///
/// Layout under --root: `repo/` (a clone whose origin is the release remote), `releases/<tag>/`
/// (one built release per tag), `current` (symlink to the release in service). Exit codes: 0
/// deployed or up to date; 1 failed or rolled back (the tag is then never tried again); 2 usage;
/// 75 another deploy-poll is running.
#[derive(Debug, Parser)]
#[command(version)]
pub struct Args {
    #[command(flatten)]
    pub common: CommonArgs,

    /// The deploy root holding repo/, releases/ and current
    #[arg(long, env = env_vars::MATERIA_ROOT, value_name = "DIR", default_value = "/opt/materia")]
    pub root: PathBuf,

    /// Which tags are releases (a glob, matched by `git tag --list`; one that starts with `-`
    /// is still a pattern)
    #[arg(
        long,
        value_name = "GLOB",
        default_value = "v*",
        allow_hyphen_values = true
    )]
    pub tag_pattern: String,

    /// Poll once and exit (the default unless --interval-secs is given)
    #[arg(long, conflicts_with = "interval_secs")]
    pub once: bool,

    /// Poll forever, this many seconds apart
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(limits::INTERVAL_SECS_MIN..=limits::INTERVAL_SECS_MAX))]
    pub interval_secs: Option<u64>,

    /// Build command, run by `sh -c` in the new release directory
    #[arg(long, value_name = "CMD", default_value = "make release")]
    pub build_cmd: String,

    /// Restart command, run by `sh -c` in the release directory made current (also the
    /// previous one on a rollback, so it must not need a file of the new release). The default
    /// restarts the supervisor, and the web app when its socket unit is enabled
    #[arg(long, value_name = "CMD", default_value = DEFAULT_RESTART_CMD)]
    pub restart_cmd: String,

    /// Health command, run by `sh -c` in the new release directory after the restart. The
    /// default, `scripts/health-check.sh`, passes once every pipeline step has succeeded since
    /// the restart (and the web app's /healthz answers 200 when its socket unit is enabled)
    #[arg(long, value_name = "CMD", default_value = DEFAULT_HEALTH_CMD)]
    pub health_cmd: String,

    /// Release directories kept after a deploy (the newest by version; the current and the
    /// previous one are always kept)
    #[arg(long, value_name = "N", default_value_t = limits::KEEP_RELEASES_DEFAULT,
          value_parser = clap::value_parser!(u32).range(limits::KEEP_RELEASES_MIN as i64..=limits::KEEP_RELEASES_MAX as i64))]
    pub keep_releases: u32,

    /// Deploy only tags with an SSH signature by a key of --allowed-signers, whose signed tag
    /// object carries the tag's own name (GPG signatures are refused). The shipped
    /// materia-deploy.service sets MATERIA_REQUIRE_SIGNED=true
    #[arg(long, env = env_vars::MATERIA_REQUIRE_SIGNED, value_parser = clap::builder::FalseyValueParser::new())]
    pub require_signed: bool,

    /// Who may sign release tags (ssh-keygen's allowed_signers format), root-owned on the
    /// server; the clone's own git configuration is never trusted for this
    #[arg(long, env = env_vars::MATERIA_ALLOWED_SIGNERS, value_name = "FILE",
          default_value = "/etc/materia/allowed_signers")]
    pub allowed_signers: PathBuf,

    /// The sops executable that decrypts the release's .env.prod.sops
    #[arg(long, env = env_vars::MATERIA_SOPS, value_name = "PATH", default_value = "sops")]
    pub sops: PathBuf,
}

fn main() -> ExitCode {
    let args: Args = match step_runtime::parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    step_runtime::run_step(deploy::STEP, &args.common, |ctx| deploy::run(ctx, &args))
}
