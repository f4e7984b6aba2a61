//! `scripts/secrets.sh` (what `make secrets-decrypt-dev` runs) with real sops and age: the
//! committed dev key decrypts `.env.dev.sops` into a 0600 file; a wrong key fails clearly and
//! leaves the previous file untouched; `.env.prod.sops` is encrypted dotenv.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use test_support::{CommandExt, repo_root, tool};

/// Bound on every child process of these tests: a hang fails the test instead of the run.
const CHILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

fn decrypt(key: &Path, out: &Path) -> Output {
    Command::new("dash")
        .arg(repo_root().join("scripts/secrets.sh"))
        .args(["decrypt", ".env.dev.sops"])
        .arg(out)
        .current_dir(repo_root())
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("SOPS", tool("sops"))
        .env("SOPS_AGE_KEY_FILE", key)
        .output_within(CHILD_LIMIT)
        .unwrap()
}

#[test]
fn the_dev_key_decrypts_into_a_private_file_and_a_wrong_key_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join(".env.dev");
    let ok = decrypt(&repo_root().join("secrets/dev.agekey"), &out);
    let log = String::from_utf8_lossy(&ok.stderr).to_string();
    assert!(ok.status.success(), "{log}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("BACKUP_REMOTE=data/backup"), "{text}");
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !log.contains("dev-not-a-secret"),
        "a value was printed: {log}"
    );

    let wrong = dir.path().join("wrong.agekey");
    let keygen = Command::new("age-keygen")
        .arg("-o")
        .arg(&wrong)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(keygen.status.success());
    std::fs::write(&out, "PREVIOUS=kept\n").unwrap();
    let failed = decrypt(&wrong, &out);
    let log = String::from_utf8_lossy(&failed.stderr).to_string();
    assert_eq!(failed.status.code(), Some(1), "{log}");
    assert!(log.contains("cannot decrypt .env.dev.sops"), "{log}");
    assert!(log.contains("left as it was"), "{log}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "PREVIOUS=kept\n");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn prod_secrets_are_encrypted_dotenv_for_the_recipients_of_sops_yaml() {
    let text = std::fs::read_to_string(repo_root().join(".env.prod.sops")).unwrap();
    for line in text
        .lines()
        .filter(|l| !l.starts_with("sops_") && !l.starts_with('#'))
    {
        let (_, value) = line.split_once('=').unwrap();
        assert!(
            value.starts_with("ENC[AES256_GCM,"),
            "a plain value: {line}"
        );
    }
    let rules = std::fs::read_to_string(repo_root().join(".sops.yaml")).unwrap();
    let recipient = rules
        .lines()
        .skip_while(|l| !l.contains(r"\.env\.prod\.sops"))
        .find_map(|l| l.trim().strip_prefix("age: "))
        .unwrap();
    assert!(
        text.contains(&format!("sops_age__list_0__map_recipient={recipient}")),
        "{recipient}"
    );
}
