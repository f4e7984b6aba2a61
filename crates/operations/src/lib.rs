//! Home of the operations layer's tests (`tests/`): `scripts/supervisor.sh` run under dash with
//! real and scripted steps, the `systemd/` units through `systemd-analyze`, and the server
//! set-up scripts run against a throwaway root; and the checks of what cannot read Rust against
//! the code: the declared binaries (`binaries.rs`), `docs/INTERFACES.md` (`interfaces.rs`) and
//! a second dataset (`datasets.rs`). The code under test is shell, unit files, docs and the
//! binaries, so this crate has no code of its own.
