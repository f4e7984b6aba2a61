//! The systemd units: `systemd-analyze verify` accepts them, `systemd-analyze security` rates
//! them, and they keep the properties docs/INTERFACES.md (section 9) and the README ask for.

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use test_support::CommandExt;

/// Bound on every child process of these tests: a hang fails the test instead of the run.
const CHILD_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

const UNITS: [&str; 8] = [
    "materia-supervisor.service",
    "materia-backup.service",
    "materia-backup.timer",
    "materia-deploy.service",
    "materia-deploy.timer",
    "materia-web.socket",
    "materia-web.service",
    "materia-alert@.service",
];

fn units_dir() -> PathBuf {
    test_support::repo_root().join("systemd")
}

fn unit(name: &str) -> String {
    std::fs::read_to_string(units_dir().join(name)).unwrap()
}

/// Copies of the units with /opt/materia moved under `root`, where their executables exist.
fn relocated(root: &Path) -> Vec<PathBuf> {
    let prefix = root.join("opt/materia");
    for b in ["backup-sync", "deploy-poll", "materia-web"] {
        let path = prefix.join("current/bin").join(b);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::create_dir_all(prefix.join("current/scripts")).unwrap();
    std::fs::write(prefix.join(".env"), "").unwrap();
    let dir = root.join("units");
    std::fs::create_dir_all(&dir).unwrap();
    UNITS
        .iter()
        .map(|name| {
            let text = unit(name).replace("/opt/materia", &prefix.display().to_string());
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

#[test]
fn systemd_analyze_verify_accepts_every_unit() {
    let root = tempfile::tempdir().unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(relocated(root.path()))
        .output_within(CHILD_LIMIT)
        .expect("systemd-analyze (package systemd) is needed: make deps");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.trim().is_empty(), "warnings: {text}");
}

#[test]
fn services_are_hardened_and_report_their_exposure() {
    for name in UNITS.iter().filter(|n| n.ends_with(".service")) {
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(units_dir().join(name))
            .output_within(CHILD_LIMIT)
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let exposure: f64 = text
            .lines()
            .find_map(|l| l.split("Overall exposure level for ").nth(1))
            .and_then(|rest| rest.split(": ").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {name}: {text}"));
        println!("{name}: exposure {exposure}");
        assert!(exposure <= 2.0, "{name} exposure {exposure}:\n{text}");
    }
}

#[test]
fn units_run_as_the_service_user_with_their_own_env_file_and_the_contract_settings() {
    for name in UNITS.iter().filter(|n| n.ends_with(".service")) {
        let text = unit(name);
        // Each unit its own root-owned file (scripts/install_units.sh), never the whole .env.
        let own = format!(
            "EnvironmentFile=/etc/materia/env/current/{}.env",
            name.trim_start_matches("materia-")
                .trim_end_matches(".service")
                // A template (`materia-alert@.service`) shares one file: `alert.env`.
                .trim_end_matches('@')
        );
        assert!(text.lines().any(|l| l == own), "{name} lacks {own}");
        assert!(
            !text.contains("/opt/materia/.env"),
            "{name} loads the whole .env"
        );
        if *name != "materia-deploy.service" {
            assert!(
                text.lines().any(|l| l
                    == "InaccessiblePaths=-/opt/materia/.ssh -/opt/materia/.config -/etc/materia/env"),
                "{name} can see the keys"
            );
        }
        for line in [
            "User=materia",
            "Group=materia",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "RestartPreventExitStatus=2",
        ] {
            assert!(text.lines().any(|l| l == line), "{name} lacks {line}");
        }
    }
    let timer = unit("materia-backup.timer");
    assert!(timer.contains("OnCalendar=*-*-* 00/6:00:00"));
    assert!(timer.contains("Persistent=true"), "catch up after downtime");
    assert!(unit("materia-supervisor.service").contains("Restart=on-failure"));
    // Production deploys only signed tags.
    assert!(
        unit("materia-deploy.service")
            .lines()
            .any(|l| l == "Environment=MATERIA_REQUIRE_SIGNED=true")
    );
}

#[test]
fn the_web_app_is_socket_activated_and_reads_the_data_read_only() {
    let socket = unit("materia-web.socket");
    assert!(socket.lines().any(|l| l == "ListenStream=127.0.0.1:8080"));
    assert!(socket.contains("WantedBy=sockets.target"));
    let service = unit("materia-web.service");
    for line in [
        "Requires=materia-web.socket",
        "After=materia-web.socket",
        "ExecStart=/opt/materia/current/bin/materia-web",
        "ReadOnlyPaths=/data/materia",
        "PrivateNetwork=yes",
        "Restart=on-failure",
    ] {
        assert!(
            service.lines().any(|l| l == line),
            "materia-web.service lacks {line}"
        );
    }
    assert!(
        !service.contains("ReadWritePaths"),
        "the web app writes nothing"
    );
    // Its stop time-out outlasts the graceful shutdown (20 s for in-flight requests).
    assert!(service.lines().any(|l| l == "TimeoutStopSec=30s"));
}
