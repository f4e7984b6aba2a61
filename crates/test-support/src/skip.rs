//! Skipping a test visibly. libtest has no "skipped" outcome at run time, so a test that
//! cannot run here calls [`skip`] and returns: a `SKIPPED` line goes straight to the terminal
//! (past the output capture that hides a passing test's prints), and a line is appended to the
//! file named by `MATERIA_SKIPPED_FILE`, which `make test` summarises at the end.

use std::io::Write;
use std::path::Path;

/// The environment variable naming the file skipped tests are recorded in.
pub const SKIPPED_FILE_ENV: &str = "MATERIA_SKIPPED_FILE";

/// Records that the running test is skipped, and why; the caller returns right after.
pub fn skip(reason: &str) {
    let file = std::env::var_os(SKIPPED_FILE_ENV).filter(|p| !p.is_empty());
    // Written to the file descriptor, not through `eprint!`, which libtest captures.
    skip_into(
        reason,
        file.as_deref().map(Path::new),
        &mut std::io::stderr().lock(),
    );
}

fn skip_into(reason: &str, file: Option<&Path>, terminal: &mut dyn Write) {
    // libtest names the thread of each test after it.
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("<unnamed test>");
    let line = format!("SKIPPED {test}: {reason}\n");
    let _ = terminal.write_all(line.as_bytes());
    if let Some(path) = file {
        let recorded = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        // A skip that cannot be recorded must not pass unnoticed.
        if let Err(e) = recorded {
            panic!(
                "cannot record the skip in {} ({SKIPPED_FILE_ENV}): {e}",
                path.display()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_skip_is_recorded_with_the_tests_name_and_its_reason() {
        let dir = std::env::temp_dir().join(format!("materia-skip-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("skipped.txt");
        let mut shown = Vec::new();
        skip_into("needs a thing", Some(&file), &mut shown);
        skip_into("needs another", Some(&file), &mut shown);
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(String::from_utf8(shown).unwrap(), text, "shown as recorded");
        std::fs::remove_dir_all(&dir).unwrap();
        let name = "skip::tests::a_skip_is_recorded_with_the_tests_name_and_its_reason";
        assert_eq!(
            text,
            format!("SKIPPED {name}: needs a thing\nSKIPPED {name}: needs another\n")
        );
    }

    #[test]
    #[should_panic(expected = "cannot record the skip")]
    fn a_skip_that_cannot_be_recorded_fails_the_test() {
        skip_into(
            "x",
            Some(Path::new("/nonexistent/dir/skipped.txt")),
            &mut Vec::new(),
        );
    }
}
