//! Every binary of the workspace, declared once: its name (its crate is `crates/<name>/`) and
//! how it runs. A new binary goes here, in its place: a step of the supervisor's cycle in the
//! order the cycle runs it (a new extractor before `transform`), a step with a timer of its
//! own, a long-running service (the web app), or a tool.
//!
//! `materia-status` lists the steps from here. The Makefile's `BINARIES`, the supervisor's
//! cycle, the systemd units and `docs/INTERFACES.md` cannot read Rust, so
//! `crates/operations/tests/binaries.rs` and `interfaces.rs` fail until they agree with this
//! list (and until every crate with a `main.rs` is in it).

/// How a binary runs, which decides who starts it and whether it records runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
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
        matches!(self, Role::Cycle | Role::Timer)
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
        role: Role::Cycle,
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

/// The supervisor's cycle, in order.
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
    fn names_are_unique_and_the_cycle_extracts_first_and_exports_last() {
        let mut names: Vec<&str> = BINARIES.iter().map(|b| b.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), BINARIES.len(), "a binary is declared twice");
        let cycle: Vec<&str> = cycle().collect();
        let transform = cycle.iter().position(|s| *s == "transform").unwrap();
        assert!(
            cycle[..transform]
                .iter()
                .all(|s| run_ledger::dataset_of_step(s).is_some()),
            "only extractors run before transform: {cycle:?}"
        );
        assert_eq!(cycle.last(), Some(&"export-serving"));
    }
}
