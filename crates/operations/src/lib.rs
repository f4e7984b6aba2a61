//! Home of the operations layer's tests (`tests/`): `scripts/supervisor.sh` run under dash with
//! real and scripted steps, the `systemd/` units through `systemd-analyze`, and the server
//! set-up scripts run against a throwaway root. The code under test is shell and unit files, so
//! this crate has no code of its own.
