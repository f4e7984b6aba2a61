//! `scripts/secrets.sh` (what `make secrets-decrypt-dev` runs) with real sops and age: the
//! committed dev key decrypts `.env.dev.sops` into a 0600 file; a wrong key fails clearly and
//! leaves the previous file untouched; `.env.prod.sops` is encrypted dotenv to every recipient of
//! `.sops.yaml` (one or more); `secrets.sh init` and `add-recipient` for a new owner.

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

/// The recipients of the `.env.prod.sops` rule of a `.sops.yaml`: one or more, comma-separated.
fn prod_recipients(rules: &str) -> Vec<String> {
    rules
        .lines()
        .skip_while(|l| !l.contains(r"\.env\.prod\.sops"))
        .find_map(|l| l.trim().strip_prefix("age: "))
        .unwrap()
        .split(',')
        .map(|r| r.trim().to_owned())
        .collect()
}

/// `encrypted` is sops dotenv whose every value is encrypted, to exactly `recipients`.
fn assert_encrypted_to(encrypted: &str, recipients: &[String]) {
    for line in encrypted
        .lines()
        .filter(|l| !l.starts_with("sops_") && !l.starts_with('#'))
    {
        let (_, value) = line.split_once('=').unwrap();
        assert!(
            value.starts_with("ENC[AES256_GCM,"),
            "a plain value: {line}"
        );
    }
    let mut listed: Vec<String> = encrypted
        .lines()
        .filter(|l| l.starts_with("sops_age__list_") && l.contains("__map_recipient="))
        .map(|l| l.split_once('=').unwrap().1.to_owned())
        .collect();
    listed.sort();
    let mut wanted = recipients.to_vec();
    wanted.sort();
    assert_eq!(listed, wanted, "the file's recipients are not the rule's");
}

/// Issue 23: any number of recipients (the server's and each operator's), not exactly one.
#[test]
fn prod_secrets_are_encrypted_dotenv_for_the_recipients_of_sops_yaml() {
    let text = std::fs::read_to_string(repo_root().join(".env.prod.sops")).unwrap();
    let rules = std::fs::read_to_string(repo_root().join(".sops.yaml")).unwrap();
    let recipients = prod_recipients(&rules);
    assert!(!recipients.is_empty());
    assert_encrypted_to(&text, &recipients);
}

/// Every variable the committed production secrets set is listed in `.env.prod.example`.
#[test]
fn the_example_lists_every_production_variable() {
    let example = std::fs::read_to_string(repo_root().join(".env.prod.example")).unwrap();
    let listed = |name: &str| {
        example.lines().any(|l| {
            l.trim_start_matches(['#', ' '])
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('='))
        })
    };
    let text = std::fs::read_to_string(repo_root().join(".env.prod.sops")).unwrap();
    for line in text
        .lines()
        .filter(|l| !l.starts_with("sops_") && !l.starts_with('#'))
    {
        let name = line.split_once('=').unwrap().0;
        assert!(listed(name), ".env.prod.example does not list {name}");
    }
    for name in [
        "R2_SECRET_ACCESS_KEY",
        "MATERIA_ALERT_URL",
        "PSD_URL",
        "MATERIA_WEB_MAX_SERVING_AGE",
    ] {
        assert!(listed(name), ".env.prod.example does not list {name}");
    }
}

fn keygen(path: &Path) -> String {
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(path)
        .output_within(CHILD_LIMIT)
        .unwrap();
    assert!(out.status.success());
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(path)
        .output_within(CHILD_LIMIT)
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `scripts/secrets.sh` in `dir` (a copy of the repository's secrets files), HOME `dir/home`.
fn secrets(dir: &Path, args: &[&str], key: Option<&Path>) -> Output {
    let mut cmd = Command::new("dash");
    cmd.arg(repo_root().join("scripts/secrets.sh"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", dir.join("home"))
        .env("SOPS", tool("sops"));
    if let Some(key) = key {
        cmd.env("SOPS_AGE_KEY_FILE", key);
    }
    cmd.output_within(CHILD_LIMIT).unwrap()
}

fn decrypts_with(dir: &Path, key: &Path) -> Option<String> {
    let out = Command::new(tool("sops"))
        .args([
            "-d",
            "--input-type",
            "dotenv",
            "--output-type",
            "dotenv",
            ".env.prod.sops",
        ])
        .current_dir(dir)
        .env_clear()
        .env("SOPS_AGE_KEY_FILE", key)
        .output_within(CHILD_LIMIT)
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

/// Issue 23: a new owner creates an operator key and encrypts the production secrets to it and
/// the server (`make secrets-init SERVER=...`); an existing key is never overwritten; another
/// recipient is added later (`make secrets-add-recipient`), and a bad one changes nothing.
#[test]
fn secrets_init_makes_a_key_and_encrypts_to_the_operator_and_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for f in [".sops.yaml", ".env.prod.sops", ".env.prod.example"] {
        std::fs::copy(repo_root().join(f), d.join(f)).unwrap();
    }
    let server_key = d.join("server.key");
    let server = keygen(&server_key);

    let out = secrets(d, &["init", &server], None);
    let log = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{log}");
    let key = d.join("home/.config/sops/age/keys.txt");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let rules = std::fs::read_to_string(d.join(".sops.yaml")).unwrap();
    let recipients = prod_recipients(&rules);
    assert_eq!(recipients.len(), 2, "{rules}");
    assert_eq!(recipients[1], server);
    assert!(
        rules.contains("age18n9n9au7df7mwzc6jlwaww4szv6cq88fslceasjzht3jzka8k9csjqjj64"),
        "the dev rule is kept: {rules}"
    );
    let encrypted = std::fs::read_to_string(d.join(".env.prod.sops")).unwrap();
    assert_encrypted_to(&encrypted, &recipients);
    for k in [&key, &server_key] {
        let plain = decrypts_with(d, k).unwrap_or_else(|| panic!("{} cannot decrypt", k.display()));
        assert!(
            plain.contains("LANDING_DIR=/data/materia/landing"),
            "{plain}"
        );
        assert!(plain.contains("R2_SECRET_ACCESS_KEY=set-me"), "{plain}");
    }
    assert!(!log.contains("set-me"), "a value was printed: {log}");

    // Again: the key exists, nothing changes.
    let before: Vec<Vec<u8>> = [&key, &d.join(".sops.yaml"), &d.join(".env.prod.sops")]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let out = secrets(d, &["init"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("exists; not overwritten"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after: Vec<Vec<u8>> = [&key, &d.join(".sops.yaml"), &d.join(".env.prod.sops")]
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    assert_eq!(before, after, "a refused init changed something");

    // A third recipient, added with the operator's key.
    let third_key = d.join("third.key");
    let third = keygen(&third_key);
    let out = secrets(d, &["add-recipient", &third], Some(&key));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = std::fs::read_to_string(d.join(".sops.yaml")).unwrap();
    assert_eq!(prod_recipients(&rules).len(), 3);
    assert!(decrypts_with(d, &third_key).is_some());
    assert!(decrypts_with(d, &server_key).is_some());

    // Not a recipient, or a key that cannot decrypt: refused, .sops.yaml as it was.
    let rules_before = std::fs::read(d.join(".sops.yaml")).unwrap();
    let out = secrets(d, &["add-recipient", "age1notakey"], Some(&key));
    assert_eq!(out.status.code(), Some(2));
    // (sops also looks in ~/.config/sops/age/keys.txt: move the operator's key out of its way.)
    std::fs::rename(&key, d.join("operator.key")).unwrap();
    let stranger_key = d.join("stranger.key");
    keygen(&stranger_key);
    let fourth = keygen(&d.join("fourth.key"));
    let out = secrets(d, &["add-recipient", &fourth], Some(&stranger_key));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("put back"));
    assert_eq!(std::fs::read(d.join(".sops.yaml")).unwrap(), rules_before);
}
