//! Every binary of the workspace, declared once: its name (its crate is `crates/<name>/`) and
//! how it runs. A new binary goes here, in its place: an extractor (also an entry of the
//! workflow registry `workflows.toml`, which says when it is due), a step of the supervisor's
//! cycle in the order the cycle runs it, a step with a timer of its own, a long-running service
//! (the web app), or a tool.
//!
//! `materia-status` lists the steps from here. The Makefile's `BINARIES`, the supervisor's
//! cycle, the systemd units and `docs/INTERFACES.md` cannot read Rust, so
//! `crates/operations/tests/binaries.rs` and `interfaces.rs` fail until they agree with this
//! list (and until every crate with a `main.rs` is in it).

/// How a binary runs, which decides who starts it and whether it records runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An extractor, `extract-<dataset>`: the supervisor runs it when `workflows.toml` says it
    /// is due, before the cycle's steps; records its runs in the ledger.
    Extractor,
    /// A pipeline step that `scripts/supervisor.sh` runs every cycle, in declaration order;
    /// records its runs in the ledger.
    Cycle,
    /// A step started by a systemd timer of its own; records its runs in the ledger.
    Timer,
    /// A long-running service with a systemd unit of its own; records no runs.
    Service,
    /// A command for operators, tests and benchmarks; records no runs.
    Tool,
}

impl Role {
    /// Steps record every run in the ledger and appear in `materia-status`.
    pub fn is_step(self) -> bool {
        matches!(self, Role::Extractor | Role::Cycle | Role::Timer)
    }
}

/// A binary of the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binary {
    /// The binary's name, which is its crate's (`crates/<name>/src/main.rs`) and, for a step,
    /// its name in the ledger, locks and metrics.
    pub name: &'static str,
    pub role: Role,
}

/// Every binary, steps of the cycle in the order the cycle runs them.
pub const BINARIES: &[Binary] = &[
    Binary {
        name: "extract-psd",
        role: Role::Extractor,
    },
    Binary {
        name: "extract-prices",
        role: Role::Extractor,
    },
    Binary {
        name: "transform",
        role: Role::Cycle,
    },
    Binary {
        name: "export-serving",
        role: Role::Cycle,
    },
    Binary {
        name: "backup-sync",
        role: Role::Timer,
    },
    Binary {
        name: "deploy-poll",
        role: Role::Timer,
    },
    Binary {
        name: "materia-web",
        role: Role::Service,
    },
    Binary {
        name: "materia-status",
        role: Role::Tool,
    },
    Binary {
        name: "psd-gen",
        role: Role::Tool,
    },
];

/// The steps (binaries that record runs), in declaration order.
pub fn steps() -> impl Iterator<Item = &'static str> {
    BINARIES.iter().filter(|b| b.role.is_step()).map(|b| b.name)
}

/// The extractors, which `workflows.toml` must list (checked by
/// `crates/operations/tests/binaries.rs`).
pub fn extractors() -> impl Iterator<Item = &'static str> {
    BINARIES
        .iter()
        .filter(|b| b.role == Role::Extractor)
        .map(|b| b.name)
}

/// The supervisor's cycle after the due extractors, in order.
pub fn cycle() -> impl Iterator<Item = &'static str> {
    BINARIES
        .iter()
        .filter(|b| b.role == Role::Cycle)
        .map(|b| b.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_extractors_are_extract_dataset_and_the_cycle_exports_last() {
        let mut names: Vec<&str> = BINARIES.iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BINARIES.len(), "a binary is declared twice");
        for b in BINARIES {
            assert_eq!(
                b.role == Role::Extractor,
                run_ledger::dataset_of_step(b.name).is_some(),
                "{}: extractors, and only they, are extract-<dataset>",
                b.name
            );
        }
        let cycle: Vec<&str> = cycle().collect();
        assert_eq!(cycle.first(), Some(&"transform"));
        assert_eq!(cycle.last(), Some(&"export-serving"));
    }
}
