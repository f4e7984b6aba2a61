//! rclone as a child process: the remote's credentials only in its environment (never argv,
//! never a file), nothing inherited by accident (the machine's AWS_CA_BUNDLE makes rclone 1.60's
//! S3 backend refuse to start), every call bounded in time, and secrets scrubbed from whatever
//! it prints before we show it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use step_runtime::child::{self, Options, Stdout};

use crate::limits::{
    CONNECT_TIMEOUT, IDLE_TIMEOUT, LOW_LEVEL_RETRIES, RETRIES, STDERR_TAIL_LINES, STDOUT_MAX_BYTES,
};

/// Where backups go: Cloudflare R2 through rclone's S3 backend, or a local directory.
#[derive(Debug, Clone)]
pub enum Remote {
    R2 {
        /// `BUCKET/PREFIX`, without a trailing slash.
        path: String,
        access_key_id: String,
        secret_access_key: String,
        endpoint: String,
    },
    Local(PathBuf),
}

/// Credentials of the `r2:` remote, read from the environment by the caller.
pub struct R2Credentials {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub endpoint: Option<String>,
}

impl Remote {
    /// `r2:BUCKET/PREFIX` or a local path. Other rclone remotes are refused: their
    /// credentials would have to come from somewhere this step does not control.
    pub fn parse(spec: &str, r2: R2Credentials) -> anyhow::Result<Remote> {
        if let Some(path) = spec.strip_prefix("r2:") {
            let path = path.trim_matches('/').to_owned();
            if path.is_empty() {
                bail!("{spec:?} names no bucket; use r2:BUCKET/PREFIX");
            }
            let need = |v: Option<String>, name: &str| {
                v.filter(|s| !s.is_empty())
                    .ok_or_else(|| anyhow!("{name} must be set for the r2: remote"))
            };
            return Ok(Remote::R2 {
                path,
                access_key_id: need(r2.access_key_id, "R2_ACCESS_KEY_ID")?,
                secret_access_key: need(r2.secret_access_key, "R2_SECRET_ACCESS_KEY")?,
                endpoint: need(r2.endpoint, "R2_ENDPOINT")?,
            });
        }
        if spec.is_empty() {
            bail!("no remote: set --remote or BACKUP_REMOTE (r2:BUCKET/PREFIX or a directory)");
        }
        if let Some((name, _)) = spec.split_once(':')
            && !name.contains('/')
        {
            bail!("remote {spec:?}: only r2:BUCKET/PREFIX or a local directory are supported");
        }
        Ok(Remote::Local(
            std::path::absolute(spec).context("cannot resolve the remote path")?,
        ))
    }

    /// The rclone path of `relative` (`psd/2026/11/x.csv.gzip`, or "" for the root).
    pub fn join(&self, relative: &str) -> String {
        let base = match self {
            Remote::R2 { path, .. } => format!("r2:{path}"),
            Remote::Local(dir) => dir.display().to_string(),
        };
        if relative.is_empty() {
            base
        } else {
            format!("{base}/{relative}")
        }
    }

    /// For logs and reports: never a credential.
    pub fn display(&self) -> String {
        self.join("")
    }

    fn secrets(&self) -> Vec<&str> {
        match self {
            Remote::R2 {
                access_key_id,
                secret_access_key,
                ..
            } => vec![access_key_id.as_str(), secret_access_key.as_str()],
            Remote::Local(_) => Vec::new(),
        }
    }
}

pub struct Rclone {
    pub program: PathBuf,
    pub remote: Remote,
    pub timeout: Duration,
    /// rclone's own config file: an empty one, so a stray ~/.config/rclone is never read.
    pub config: PathBuf,
}

/// What an rclone call printed.
pub struct Outcome {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Rclone {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", self.config.parent().unwrap_or(Path::new("/")))
            .env("RCLONE_CONFIG", &self.config)
            .args([
                "--contimeout",
                CONNECT_TIMEOUT,
                "--timeout",
                IDLE_TIMEOUT,
                "--retries",
                RETRIES,
                "--low-level-retries",
                LOW_LEVEL_RETRIES,
                "--use-json-log",
                "--log-level",
                "NOTICE",
            ])
            .args(args);
        if let Remote::R2 {
            access_key_id,
            secret_access_key,
            endpoint,
            ..
        } = &self.remote
        {
            cmd.env("RCLONE_CONFIG_R2_TYPE", "s3")
                .env("RCLONE_CONFIG_R2_PROVIDER", "Cloudflare")
                .env("RCLONE_CONFIG_R2_ACCESS_KEY_ID", access_key_id)
                .env("RCLONE_CONFIG_R2_SECRET_ACCESS_KEY", secret_access_key)
                .env("RCLONE_CONFIG_R2_ENDPOINT", endpoint)
                .env("RCLONE_CONFIG_R2_REGION", "auto")
                // The bucket exists; the key may not be allowed to create or list buckets.
                .env("RCLONE_CONFIG_R2_NO_CHECK_BUCKET", "true");
        }
        cmd
    }

    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in self.remote.secrets() {
            if !secret.is_empty() {
                out = out.replace(secret, "***");
            }
        }
        out
    }

    /// Runs `rclone <args>` within the time bound; returns what it printed, whatever its exit.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<Outcome> {
        let shown = format!("rclone {}", args.first().unwrap_or(&""));
        let finished = child::run(
            self.command(args),
            Options {
                timeout: self.timeout,
                stdout: Stdout::Capture {
                    max_bytes: STDOUT_MAX_BYTES,
                },
                tail_lines: STDERR_TAIL_LINES,
                own_process_group: false,
            },
        )
        .with_context(|| format!("cannot run {}", self.program.display()))?;
        let stderr = self.scrub(&messages(&finished.tail_text()));
        let Some(status) = finished.status else {
            bail!(
                "{shown} did not finish within {}s (--timeout-secs) and was killed: {stderr}",
                self.timeout.as_secs()
            );
        };
        if finished.stdout_overflow {
            bail!("{shown} printed more than {STDOUT_MAX_BYTES} bytes");
        }
        Ok(Outcome {
            code: status.code(),
            stdout: finished.stdout,
            stderr,
        })
    }

    /// Runs `rclone <args>` and fails unless it exits 0.
    pub fn run_ok(&self, args: &[&str]) -> anyhow::Result<Outcome> {
        let out = self.run(args)?;
        if out.code != Some(0) {
            bail!(
                "rclone {} failed (exit {}): {}",
                args.first().unwrap_or(&""),
                out.code
                    .map_or_else(|| "signal".to_owned(), |c| c.to_string()),
                out.stderr.trim()
            );
        }
        Ok(out)
    }
}

/// rclone's JSON log lines reduced to their messages, one per line.
fn messages(stderr: &str) -> String {
    stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| {
                    let msg = v.get("msg")?.as_str()?.trim().to_owned();
                    let object = v.get("object").and_then(|o| o.as_str());
                    Some(match object {
                        Some(o) => format!("{o}: {msg}"),
                        None => msg,
                    })
                })
                .unwrap_or_else(|| l.trim().to_owned())
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One object of an `rclone lsjson` listing.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Listed {
    #[serde(rename = "Path")]
    pub path: String,
    #[serde(rename = "Size")]
    pub size: i64,
    #[serde(rename = "Hashes", default)]
    pub hashes: Option<std::collections::BTreeMap<String, String>>,
}

impl Listed {
    /// The object's MD5 if the remote knows it (an S3 ETag of a single-part upload, or the MD5
    /// rclone stores in metadata for its multipart uploads); None when it does not.
    pub fn md5(&self) -> Option<&str> {
        self.hashes
            .as_ref()?
            .get("md5")
            .map(String::as_str)
            .filter(|h| h.len() == 32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(a: &str, s: &str, e: &str) -> R2Credentials {
        R2Credentials {
            access_key_id: Some(a.into()),
            secret_access_key: Some(s.into()),
            endpoint: Some(e.into()),
        }
    }

    #[test]
    fn remotes_are_r2_or_a_directory() {
        let r = Remote::parse("r2:bucket/materia/", creds("a", "s", "https://x")).unwrap();
        assert_eq!(r.join("psd/x"), "r2:bucket/materia/psd/x");
        assert_eq!(r.display(), "r2:bucket/materia");
        let l = Remote::parse("/srv/backup", creds("", "", "")).unwrap();
        assert_eq!(l.join("state"), "/srv/backup/state");
        assert!(Remote::parse("s3:bucket", creds("a", "s", "e")).is_err());
        assert!(Remote::parse("r2:", creds("a", "s", "e")).is_err());
        let missing = Remote::parse("r2:b", creds("a", "", "e")).unwrap_err();
        assert!(
            missing.to_string().contains("R2_SECRET_ACCESS_KEY"),
            "{missing}"
        );
    }

    #[test]
    fn json_logs_become_messages_without_secrets() {
        // A stand-in rclone that prints, the way rclone does, JSON log lines and a plain line
        // that repeat both credentials it was given in its environment.
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("rclone");
        std::fs::write(
            &program,
            r#"#!/bin/sh
printf '{"level":"error","msg":"Failed to copy: key %s rejected","object":"psd/x","source":"x"}\n' "$RCLONE_CONFIG_R2_SECRET_ACCESS_KEY" >&2
printf 'plain line naming %s\n' "$RCLONE_CONFIG_R2_ACCESS_KEY_ID" >&2
exit 3
"#,
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let rclone = Rclone {
            program,
            remote: Remote::parse(
                "r2:bucket/materia",
                creds("akid-x1", "sekrit-y2", "https://e"),
            )
            .unwrap(),
            timeout: Duration::from_secs(30),
            config: dir.path().join("rclone.conf"),
        };
        let out = rclone.run(&["copy"]).unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(
            out.stderr,
            "psd/x: Failed to copy: key *** rejected; plain line naming ***"
        );
        let Err(err) = rclone.run_ok(&["copy"]) else {
            panic!("rclone exited 3, run_ok must fail");
        };
        let err = format!("{err:#}");
        assert!(
            !err.contains("sekrit-y2") && !err.contains("akid-x1"),
            "{err}"
        );
        assert!(err.contains("key *** rejected"), "{err}");
    }
}
