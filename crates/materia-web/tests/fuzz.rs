//! The API fuzzed by schemathesis (tools virtualenv) from its own OpenAPI document
//! (`/api/v1/openapi.json`): no 5xx, and every answer matches the document (status codes,
//! content types, headers, bodies), for generated valid and invalid parameters.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{Server, run_bounded, site};

#[test]
fn schemathesis_finds_no_5xx_and_no_answer_outside_the_schema() {
    let st = test_support::tool("st");
    let s = Server::start(&site().serving(), &site().state_db(), &[]);
    let home = tempfile::tempdir().unwrap();
    let out = run_bounded(
        Command::new(st)
            // schemathesis keeps a cache in its working directory: not in the repository.
            .current_dir(home.path())
            .env_clear()
            .env("HOME", home.path())
            .env("PATH", "/usr/bin:/bin")
            .env("SCHEMATHESIS_HOOKS", "")
            .args(["run", &format!("http://{}/api/v1/openapi.json", s.addr)])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance,\
                 negative_data_rejection,unsupported_method",
                "--phases",
                "examples,coverage,fuzzing",
                "--max-examples",
                "60",
                "--workers",
                "2",
                "--request-timeout",
                "10",
                "--max-time",
                "45",
                "--seed",
                "14",
                "--no-color",
            ]),
        Duration::from_secs(400),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.log_text()
    );
    println!("{stdout}");
    assert!(s.get("/healthz").status == 200);
}
