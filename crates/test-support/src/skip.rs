//! Skipping a test visibly. libtest has no "skipped" outcome at run time, so a test that
//! cannot run here calls [`skip`] and returns: a `SKIPPED` line goes straight to the terminal
//! (past the output capture that hides a passing test's prints), and a line is appended to the
//! file named by `MATERIA_SKIPPED_FILE`, which `make test` summarises at the end.

use std::io::Write;

/// The environment variable naming the file skipped tests are recorded in.
pub const SKIPPED_FILE_ENV: &str = "MATERIA_SKIPPED_FILE";

/// Records that the running test is skipped, and why; the caller returns right after.
pub fn skip(reason: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    let line = format!("SKIPPED {test}: {reason}\n");
    // Written to the file descriptor, not through `eprint!`, which libtest captures.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(SKIPPED_FILE_ENV).filter(|p| !p.is_empty()) {
        let recorded = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        // A skip that cannot be recorded must not pass unnoticed.
        if let Err(e) = recorded {
            panic!(
                "cannot record the skip in {} ({SKIPPED_FILE_ENV}): {e}",
                std::path::Path::new(&path).display()
            );
        }
    }
}
