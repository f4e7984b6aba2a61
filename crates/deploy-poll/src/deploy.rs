//! One poll: fetch tags, pick the newest good one, build it in its own directory, switch
//! `current` atomically, restart, check health; on failure switch back and remember the tag.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, anyhow};
use run_ledger::{Ledger, RunOutcome, RunStatus};
use serde::Serialize;
use step_runtime::{Metric, Report, ResultExt, StepContext, StepError, iso8601, run_recorded};

use crate::Args;
use crate::limits::{
    BUILD_TIMEOUT, FETCH_TIMEOUT, GIT_TIMEOUT, HEALTH_TIMEOUT, RESTART_TIMEOUT, SOPS_TIMEOUT,
};
use crate::pending::{self, BUILD_ATTEMPTS_MAX, Pending, Phase};
use crate::run::{self, shell};
use crate::version::Version;

/// The step's name in the ledger, locks and metrics.
pub const STEP: &str = "deploy-poll";
/// A release directory is complete once this file exists in it.
const BUILT_MARKER: &str = ".materia-built";
/// The encrypted environment of a release, and where it is decrypted.
const SECRETS: &str = ".env.prod.sops";
const DECRYPTED: &str = ".env";
// materia-deploy.service's TimeoutStartSec= is longer than all of limits.rs's command
// bounds together (tested below), so systemd never kills a poll that the code would still end
// itself.

/// How a poll ended (`status` of `--json`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeployStatus {
    /// A newer tag is now current and healthy.
    Deployed,
    /// The current release is the newest good one (or no tag matches).
    UpToDate,
    /// The new release failed its restart or health check; the previous one is current again.
    RolledBack,
    #[default]
    Failed,
}

impl DeployStatus {
    /// As in `--json` and the ledger's detail.
    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::Deployed => "deployed",
            DeployStatus::UpToDate => "up-to-date",
            DeployStatus::RolledBack => "rolled-back",
            DeployStatus::Failed => "failed",
        }
    }
}

impl From<DeployStatus> for RunStatus {
    fn from(status: DeployStatus) -> RunStatus {
        match status {
            DeployStatus::Deployed => RunStatus::Success,
            DeployStatus::UpToDate => RunStatus::Unchanged,
            DeployStatus::RolledBack | DeployStatus::Failed => RunStatus::Failed,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct DeployReport {
    pub status: DeployStatus,
    /// The tag deployed, current, or that failed.
    pub tag: Option<String>,
    /// The release current before this deploy.
    pub previous: Option<String>,
    pub error: Option<String>,
}

impl Report for DeployReport {
    fn failed(error: String) -> Self {
        DeployReport {
            status: DeployStatus::Failed,
            error: Some(error),
            ..Default::default()
        }
    }

    fn failure(&self) -> Option<String> {
        matches!(self.status, DeployStatus::Failed | DeployStatus::RolledBack).then(|| {
            self.error
                .clone()
                .unwrap_or_else(|| self.status.as_str().to_owned())
        })
    }

    fn metrics(&self) -> Vec<Metric> {
        vec![Metric::new(
            "rolled_back",
            "1 if the last poll rolled a deploy back (ops/alerts.yml: MateriaDeployRolledBack)",
            f64::from(u8::from(self.status == DeployStatus::RolledBack)),
        )]
    }

    fn outcome(&self) -> RunOutcome {
        RunOutcome {
            detail: Some(format!(
                "{} {} (previous {})",
                self.status.as_str(),
                self.tag.as_deref().unwrap_or("-"),
                self.previous.as_deref().unwrap_or("-")
            )),
            error: self.failure(),
            ..RunOutcome::new(self.status.into())
        }
    }
}

pub fn run(ctx: &StepContext, args: &Args) -> Result<DeployReport, StepError> {
    let root = std::path::absolute(&args.root)
        .context("cannot resolve --root")
        .or_usage()?;
    let layout = Layout::new(&root);
    if !layout.repo.join(".git").exists() {
        return Err(StepError::usage(anyhow!(
            "{} is not a git clone; bootstrap the server first (scripts/bootstrap_supervisor.sh)",
            layout.repo.display()
        )));
    }
    let ledger = Ledger::open(&ctx.config.state_db)?;
    loop {
        let result = run_recorded(ctx, &ledger, || poll(args, &layout, &ledger));
        let Some(secs) = args.interval_secs.filter(|_| !args.once) else {
            return result;
        };
        match &result {
            Ok(r) => log::info!("{} {}", r.status.as_str(), r.tag.as_deref().unwrap_or("")),
            Err(e) => log::error!("{}", e.message()),
        }
        std::thread::sleep(Duration::from_secs(secs));
    }
}

pub struct Layout {
    pub root: PathBuf,
    pub repo: PathBuf,
    pub releases: PathBuf,
    pub current: PathBuf,
}

impl Layout {
    fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            repo: root.join("repo"),
            releases: root.join("releases"),
            current: root.join("current"),
        }
    }

    /// The tag `current` points at, if any.
    fn current_tag(&self) -> Option<String> {
        let target = fs::read_link(&self.current).ok()?;
        Some(target.file_name()?.to_string_lossy().into_owned())
    }

    /// Points `current` at `releases/<tag>` (or removes it) by one rename.
    fn switch(&self, tag: Option<&str>) -> anyhow::Result<()> {
        match tag {
            Some(tag) => {
                let next = self.root.join("current.next");
                let _ = fs::remove_file(&next);
                std::os::unix::fs::symlink(Path::new("releases").join(tag), &next)
                    .with_context(|| format!("cannot create {}", next.display()))?;
                durable_fs::rename_durably(&next, &self.current)
                    .with_context(|| format!("cannot switch {}", self.current.display()))
            }
            None => {
                match fs::remove_file(&self.current) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(e).context("cannot remove current");
                    }
                    _ => {}
                }
                durable_fs::sync_dir(&self.root)
                    .with_context(|| format!("cannot fsync {}", self.root.display()))
            }
        }
    }
}

fn git(layout: &Layout, args: &[&str], timeout: Duration) -> anyhow::Result<String> {
    let what = format!("git {}", args.first().unwrap_or(&""));
    run::run(&what, Path::new("git"), args, &layout.repo, timeout).map(|f| f.stdout)
}

/// A tag that can name a release directory: one plain path component (`v3/hotfix` would be
/// directory `v3/` and read back as `hotfix`), not hidden, not an option, printable.
pub fn plain_tag(tag: &str) -> bool {
    !tag.is_empty()
        && !tag.starts_with(['.', '-'])
        && tag
            .chars()
            .all(|c| c != '/' && c != '\\' && !c.is_whitespace() && !c.is_control())
}

fn poll(args: &Args, layout: &Layout, ledger: &Ledger) -> Result<DeployReport, StepError> {
    // A deploy that was killed half-way is settled before anything else, and ends this poll.
    if let Some(report) = settle_pending(args, layout, ledger)? {
        return Ok(report);
    }
    git(
        layout,
        &[
            "fetch",
            "--quiet",
            "--force",
            "--tags",
            "--prune",
            "--prune-tags",
            "origin",
        ],
        FETCH_TIMEOUT,
    )
    .context("cannot fetch release tags from origin; nothing changed")?;
    // git matches the pattern itself, exactly as an operator's `git tag --list` would; after
    // `--` a pattern that starts with `-` is a pattern, never an option.
    let listed = git(
        layout,
        &["tag", "--list", "--", &args.tag_pattern],
        GIT_TIMEOUT,
    )?;
    let bad = ledger.bad_tags()?;
    let current = layout.current_tag();
    let newest = listed
        .lines()
        .map(str::trim)
        .filter(|t| !t.is_empty() && !bad.iter().any(|b| b == t))
        .filter(|t| {
            let plain = plain_tag(t);
            if !plain {
                log::warn!("ignoring tag {t:?}: a release tag must be one plain path component");
            }
            plain
        })
        .map(Version::parse)
        .max();
    let Some(newest) = newest else {
        log::info!("no release tag matches {:?}", args.tag_pattern);
        return Ok(DeployReport {
            status: DeployStatus::UpToDate,
            tag: current,
            ..Default::default()
        });
    };
    if current
        .as_deref()
        .is_some_and(|c| Version::parse(c) >= newest)
    {
        log::info!(
            "{} is current and the newest good release",
            current.as_deref().unwrap_or("")
        );
        return Ok(DeployReport {
            status: DeployStatus::UpToDate,
            tag: current,
            ..Default::default()
        });
    }
    let tag = newest.tag;
    log::info!(
        "deploying {tag} (current: {})",
        current.as_deref().unwrap_or("none")
    );
    let mut report = DeployReport {
        tag: Some(tag.clone()),
        previous: current.clone(),
        ..Default::default()
    };

    // Up to the switch, nothing in service changes: a failure leaves `current` as it was.
    let attempts = match pending::read(&layout.root)? {
        Some(p) if p.tag == tag && p.phase == Phase::Building => p.attempts + 1,
        _ => 1,
    };
    let mut record = Pending {
        tag: tag.clone(),
        previous: current,
        phase: Phase::Building,
        attempts,
    };
    pending::write(&layout.root, &record)?;
    if let Err(e) = prepare(args, layout, &tag) {
        mark_bad(ledger, &tag, &e)?;
        pending::clear(&layout.root)?;
        report.status = DeployStatus::Failed;
        report.error = Some(format!("{e:#}"));
        return Ok(report);
    }

    record.phase = Phase::Switched;
    pending::write(&layout.root, &record)?;
    layout.switch(Some(&tag))?;
    verify_or_roll_back(args, layout, ledger, &record, report)
}

/// Restarts the release `record.tag` (already current) and checks its health; on failure
/// makes `record.previous` current again, restarts it and records the tag as bad.
fn verify_or_roll_back(
    args: &Args,
    layout: &Layout,
    ledger: &Ledger,
    record: &Pending,
    mut report: DeployReport,
) -> Result<DeployReport, StepError> {
    let tag = &record.tag;
    let release = layout.releases.join(tag);
    let started = shell("restart", &args.restart_cmd, &release, RESTART_TIMEOUT)
        .and_then(|_| shell("health check", &args.health_cmd, &release, HEALTH_TIMEOUT));
    let Err(e) = started else {
        log::info!("{tag} deployed");
        pending::clear(&layout.root)?;
        report.status = DeployStatus::Deployed;
        // Old releases (each with its own virtualenv) would fill the disk over the years.
        if let Err(e) = prune(layout, tag, record.previous.as_deref(), args.keep_releases) {
            log::warn!("cannot remove old releases: {e:#}");
        }
        return Ok(report);
    };
    log::error!(
        "{e:#}; rolling back to {}",
        record.previous.as_deref().unwrap_or("nothing")
    );
    let rolling_back = Pending {
        phase: Phase::RollingBack,
        ..record.clone()
    };
    pending::write(&layout.root, &rolling_back)?;
    roll_back(args, layout, ledger, &rolling_back, &e)?;
    report.status = DeployStatus::RolledBack;
    report.error = Some(format!("{e:#}"));
    Ok(report)
}

/// Makes the previous release current again, restarts it, records the tag as bad, and only
/// then forgets the pending deploy (so a kill anywhere in here is finished by the next poll).
fn roll_back(
    args: &Args,
    layout: &Layout,
    ledger: &Ledger,
    record: &Pending,
    reason: &anyhow::Error,
) -> Result<(), StepError> {
    layout.switch(record.previous.as_deref())?;
    if let Some(previous) = &record.previous {
        let dir = layout.releases.join(previous);
        if let Err(restart) = shell("restart", &args.restart_cmd, &dir, RESTART_TIMEOUT) {
            log::error!("restarting {previous} after the rollback failed: {restart:#}");
        }
    }
    mark_bad(ledger, &record.tag, reason)?;
    pending::clear(&layout.root)?;
    Ok(())
}

fn mark_bad(ledger: &Ledger, tag: &str, reason: &anyhow::Error) -> Result<(), StepError> {
    let reason = format!("{reason:#}");
    ledger.mark_bad_tag(tag, &reason, &iso8601(SystemTime::now()))?;
    log::error!("{tag} is recorded as bad and will not be tried again");
    Ok(())
}

/// Finishes a deploy that an earlier poll left half-done (killed, or stopped by systemd).
/// `None`: nothing to settle here, the poll goes on.
fn settle_pending(
    args: &Args,
    layout: &Layout,
    ledger: &Ledger,
) -> Result<Option<DeployReport>, StepError> {
    let Some(record) = pending::read(&layout.root)? else {
        return Ok(None);
    };
    let tag = record.tag.clone();
    let report = DeployReport {
        tag: Some(tag.clone()),
        previous: record.previous.clone(),
        ..Default::default()
    };
    match record.phase {
        Phase::Building if record.attempts >= BUILD_ATTEMPTS_MAX => {
            let e = anyhow!(
                "the deploy of {tag} was interrupted {} times before it was built and switched \
                 (killed, or stopped by systemd); not trying it again",
                record.attempts
            );
            log::error!("{e}");
            mark_bad(ledger, &tag, &e)?;
            pending::clear(&layout.root)?;
            Ok(Some(DeployReport {
                status: DeployStatus::Failed,
                error: Some(format!("{e:#}")),
                ..report
            }))
        }
        // Nothing in service changed; the poll builds it again (counted).
        Phase::Building => {
            log::warn!(
                "the deploy of {tag} was interrupted before the switch (attempt {} of {BUILD_ATTEMPTS_MAX})",
                record.attempts
            );
            Ok(None)
        }
        Phase::Switched if layout.current_tag().as_deref() != Some(tag.as_str()) => {
            // Killed between writing the record and the rename: nothing in service changed.
            log::warn!("the deploy of {tag} was interrupted just before the switch");
            pending::clear(&layout.root)?;
            Ok(None)
        }
        Phase::Switched => {
            log::warn!(
                "the deploy of {tag} was interrupted after the switch, before its health check \
                 passed; restarting and checking it now"
            );
            verify_or_roll_back(args, layout, ledger, &record, report).map(Some)
        }
        Phase::RollingBack => {
            let e = anyhow!("the deploy of {tag} failed and its rollback was interrupted");
            log::warn!("{e}; finishing the rollback");
            roll_back(args, layout, ledger, &record, &e)?;
            Ok(Some(DeployReport {
                status: DeployStatus::RolledBack,
                error: Some(format!("{e:#}")),
                ..report
            }))
        }
    }
}

/// Removes release directories beyond the newest `keep` by version, never the current or the
/// previous one (the rollback target).
fn prune(layout: &Layout, current: &str, previous: Option<&str>, keep: u32) -> anyhow::Result<()> {
    let mut releases: Vec<Version> = fs::read_dir(&layout.releases)
        .with_context(|| format!("cannot list {}", layout.releases.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| Version::parse(&e.file_name().to_string_lossy()))
        .collect();
    releases.sort();
    releases.reverse();
    for old in releases.iter().skip(keep as usize) {
        if old.tag == current || Some(old.tag.as_str()) == previous {
            continue;
        }
        let dir = layout.releases.join(&old.tag);
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        log::info!("removed old release {}", old.tag);
    }
    Ok(())
}

/// Checks the tag's signature if required, checks it out into `releases/<tag>`, builds it
/// there and decrypts its secrets. A directory without the built marker is a leftover of a
/// failed or killed attempt and is redone from scratch.
fn prepare(args: &Args, layout: &Layout, tag: &str) -> anyhow::Result<()> {
    let tag_ref = format!("refs/tags/{tag}");
    if args.require_signed {
        verify_signed(layout, tag, &args.allowed_signers)?;
    }
    // The commit the tag names: a release directory is only reused when it was built from it.
    let commit = git(
        layout,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("{tag_ref}^{{commit}}"),
        ],
        GIT_TIMEOUT,
    )?
    .trim()
    .to_owned();
    let release = layout.releases.join(tag);
    if !built_from(&release, &commit) {
        if release.exists() {
            fs::remove_dir_all(&release)
                .with_context(|| format!("cannot remove the incomplete {}", release.display()))?;
        }
        fs::create_dir_all(&layout.releases)
            .with_context(|| format!("cannot create {}", layout.releases.display()))?;
        let dest = release.display().to_string();
        git(
            layout,
            &["clone", "--quiet", "--no-checkout", ".", &dest],
            GIT_TIMEOUT,
        )?;
        run::run(
            "git checkout",
            Path::new("git"),
            &[
                "checkout",
                "--quiet",
                "--detach",
                &format!("refs/tags/{tag}"),
            ],
            &release,
            GIT_TIMEOUT,
        )?;
        shell("build", &args.build_cmd, &release, BUILD_TIMEOUT)
            .with_context(|| format!("building {tag} failed"))?;
        fs::write(release.join(BUILT_MARKER), &commit)
            .with_context(|| format!("cannot mark {} built", release.display()))?;
    }
    decrypt(args, &release).with_context(|| format!("cannot decrypt the secrets of {tag}"))
}

/// Whether `release` is a finished build of `commit`: its marker names that commit and its
/// checkout is at it. A marker planted in a directory that was never built (or built from
/// another commit) does not skip the build.
fn built_from(release: &Path, commit: &str) -> bool {
    let marker = fs::read_to_string(release.join(BUILT_MARKER)).unwrap_or_default();
    if marker.trim() != commit {
        return false;
    }
    run::run(
        "git rev-parse",
        Path::new("git"),
        &["rev-parse", "--verify", "--quiet", "HEAD"],
        release,
        GIT_TIMEOUT,
    )
    .is_ok_and(|head| head.stdout.trim() == commit)
}

/// The tag carries an SSH signature that a key of `allowed_signers` made, and its signed tag
/// object names the tag itself. The clone's git configuration is overridden for everything
/// the check reads (format, signers file, program): whoever can write the clone cannot widen
/// the trust. GPG signatures are refused (`git verify-tag` accepts any key of a keyring).
pub fn verify_signed(layout: &Layout, tag: &str, allowed_signers: &Path) -> anyhow::Result<()> {
    let tag_ref = format!("refs/tags/{tag}");
    let meta = fs::metadata(allowed_signers).with_context(|| {
        format!(
            "tag {tag} cannot be verified: cannot read the allowed signers file {}",
            allowed_signers.display()
        )
    })?;
    if !meta.is_file() {
        return Err(anyhow!(
            "tag {tag} cannot be verified: {} is not a file",
            allowed_signers.display()
        ));
    }
    let object = git(layout, &["cat-file", "tag", &tag_ref], GIT_TIMEOUT).with_context(|| {
        format!("tag {tag} has no signature git verify-tag accepts (not an annotated tag)")
    })?;
    if !object.contains("-----BEGIN SSH SIGNATURE-----") {
        return Err(anyhow!(
            "tag {tag} has no signature git verify-tag accepts: only SSH signatures by a key of {} are trusted",
            allowed_signers.display()
        ));
    }
    let signers = format!("gpg.ssh.allowedSignersFile={}", allowed_signers.display());
    git(
        layout,
        &[
            "-c",
            "gpg.format=ssh",
            "-c",
            &signers,
            "-c",
            "gpg.ssh.program=ssh-keygen",
            "-c",
            "gpg.program=false",
            "verify-tag",
            &tag_ref,
        ],
        GIT_TIMEOUT,
    )
    .with_context(|| format!("tag {tag} has no signature git verify-tag accepts"))?;
    // The signature covers the tag object, whose own `tag` header names it; the ref's name
    // is not signed. An old signed tag republished as `refs/tags/v999` names itself v1.
    let signed_name = object
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("tag "));
    if signed_name != Some(tag) {
        return Err(anyhow!(
            "tag {tag} is a signed tag object named {}: a signed tag published under \
             another name is refused",
            signed_name.map_or_else(|| "nothing".to_owned(), |n| format!("{n:?}"))
        ));
    }
    Ok(())
}

/// `sops -d .env.prod.sops` into the release's `.env`, mode 0600, replaced by rename only
/// once decryption succeeded.
fn decrypt(args: &Args, release: &Path) -> anyhow::Result<()> {
    let source = release.join(SECRETS);
    if !source.is_file() {
        return Err(anyhow!("the release has no {SECRETS}"));
    }
    let out = run::run(
        "sops",
        &args.sops,
        &[
            "--decrypt",
            "--input-type",
            "dotenv",
            "--output-type",
            "dotenv",
            SECRETS,
        ],
        release,
        SOPS_TIMEOUT,
    )?;
    let tmp = release.join(".env.decrypting");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(out.stdout.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
    }
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
    fs::rename(&tmp, release.join(DECRYPTED)).context("cannot put .env in place")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tags_are_one_path_component() {
        for good in ["v1", "v2.0.0-rc1", "release-10", "v1_2"] {
            assert!(plain_tag(good), "{good}");
        }
        for bad in [
            "",
            "v20/hotfix",
            "../v1",
            ".hidden",
            "-x",
            "v 1",
            "v\t1",
            "a\\b",
        ] {
            assert!(!plain_tag(bad), "{bad:?}");
        }
    }

    /// git commands of one deploy: tag list, cat-file, verify-tag, rev-parse, clone, checkout,
    /// rev-parse in the release.
    const GIT_CALLS_MAX: u64 = 7;

    /// The longest one poll can take by the bounds of its commands: a deploy whose restart,
    /// health check and rollback restart all run to their bound (a poll that settles an
    /// interrupted deploy ends there, so it is shorter).
    const POLL_TIMEOUT_MAX: Duration = Duration::from_secs(
        FETCH_TIMEOUT.as_secs()
            + GIT_CALLS_MAX * GIT_TIMEOUT.as_secs()
            + BUILD_TIMEOUT.as_secs()
            + SOPS_TIMEOUT.as_secs()
            + 2 * RESTART_TIMEOUT.as_secs()
            + HEALTH_TIMEOUT.as_secs(),
    );

    #[test]
    fn regression_the_deploy_unit_outlasts_every_bound_of_a_poll() {
        // systemd killing a poll the code would still end itself leaves its work half-done.
        let unit = std::fs::read_to_string(
            test_support::repo_root().join("systemd/materia-deploy.service"),
        )
        .unwrap();
        let value = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStartSec="))
            .expect("materia-deploy.service sets TimeoutStartSec=");
        let secs: u64 = match value.strip_suffix('h') {
            Some(hours) => hours.parse::<u64>().unwrap() * 3600,
            None => value.strip_suffix('s').unwrap_or(value).parse().unwrap(),
        };
        assert!(
            secs > POLL_TIMEOUT_MAX.as_secs(),
            "TimeoutStartSec={value} is shorter than a poll may take ({}s)",
            POLL_TIMEOUT_MAX.as_secs()
        );
    }

    #[test]
    fn statuses_keep_their_strings_on_the_wire_and_in_the_ledger() {
        let all = [
            (DeployStatus::Deployed, "deployed", "success"),
            (DeployStatus::UpToDate, "up-to-date", "unchanged"),
            (DeployStatus::RolledBack, "rolled-back", "failed"),
            (DeployStatus::Failed, "failed", "failed"),
        ];
        for (status, wire, ledger) in all {
            assert_eq!(serde_json::to_value(status).unwrap(), wire);
            assert_eq!(status.as_str(), wire);
            assert_eq!(RunStatus::from(status).as_str(), ledger);
        }
    }
}
