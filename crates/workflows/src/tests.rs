use super::*;

const REGISTRY: &str = r#"# test registry
[psd]
binary = "extract-psd"
dataset = "psd"
every = "1d"
days = [9, 10, 11, 12]
days_every = "1h"

[prices]
binary = "extract-prices"
dataset = "prices"
every = "1d"
required = false
"#;

/// 2026-12-08T00:00:00Z plus `h` hours.
fn dec8(h: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_796_688_000 + h * 3600)
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * 3600)
}

#[test]
fn the_registry_parses_in_file_order() {
    let w = parse(REGISTRY, "workflows.toml").unwrap();
    let names: Vec<&str> = w.iter().map(|w| w.binary.as_str()).collect();
    assert_eq!(names, ["extract-psd", "extract-prices"]);
    assert_eq!(w[0].schedule.every, hours(24));
    assert_eq!(w[0].schedule.days_every, Some(hours(1)));
    assert_eq!(w[0].schedule.days.len(), 4);
    assert_eq!(w[1].schedule.days_every, None);
    assert!(w[0].required, "required by default");
    assert!(!w[1].required);
}

#[test]
fn required_must_be_a_boolean() {
    let text = REGISTRY.replace("required = false", "required = \"no\"");
    let e = parse(&text, "workflows.toml").unwrap_err().to_string();
    assert!(e.contains("workflows.toml line 13"), "{e}");
}

#[test]
fn the_days_of_the_month_are_utc() {
    assert_eq!(utc_day_of_month(UNIX_EPOCH), 1);
    assert_eq!(utc_day_of_month(dec8(0)), 8);
    assert_eq!(utc_day_of_month(dec8(23)), 8);
    assert_eq!(utc_day_of_month(dec8(24)), 9);
    // 2024-02-29 (leap day) and 2024-03-01.
    assert_eq!(
        utc_day_of_month(UNIX_EPOCH + Duration::from_secs(1_709_164_800)),
        29
    );
    assert_eq!(
        utc_day_of_month(UNIX_EPOCH + Duration::from_secs(1_709_251_200)),
        1
    );
}

#[test]
fn due_and_not_due_at_chosen_times() {
    let w = parse(REGISTRY, "workflows.toml").unwrap();
    let psd = &w[0].schedule;
    let prices = &w[1].schedule;
    // Never ran: due.
    assert!(prices.is_due(dec8(0), None, None));
    // Interval: good run 3 h ago is not due for a daily schedule, 24 h ago is.
    assert!(!prices.is_due(dec8(10), Some(dec8(7)), Some((dec8(7), false))));
    assert!(prices.is_due(dec8(31), Some(dec8(7)), Some((dec8(7), false))));
    // Within the slack before the interval: due (an hourly supervisor does not slip).
    assert!(prices.is_due(dec8(31) - Duration::from_secs(120), Some(dec8(7)), None));
    // Calendar days: on the 8th PSD is daily; on the 9th (WASDE days) hourly.
    assert!(!psd.is_due(dec8(5), Some(dec8(3)), None));
    assert!(psd.is_due(dec8(26), Some(dec8(24) + Duration::from_secs(600)), None));
    assert!(!psd.is_due(dec8(26), Some(dec8(25) + Duration::from_secs(1800)), None));
    // The 13th is an ordinary day again.
    assert!(!psd.is_due(dec8(5 * 24 + 5), Some(dec8(5 * 24 + 1)), None));
}

#[test]
fn a_missed_run_after_downtime_is_due_once_not_n_times() {
    let w = parse(REGISTRY, "workflows.toml").unwrap();
    let prices = &w[1].schedule;
    // Down for ten days: due now, once.
    let last = dec8(0);
    let back = dec8(240);
    assert!(prices.is_due(back, Some(last), Some((last, false))));
    // It ran at once: not due again until a day later, however many days were missed.
    let ran = back + Duration::from_secs(30);
    for later in [1, 2, 12, 23] {
        assert!(
            !prices.is_due(back + hours(later), Some(ran), Some((back, false))),
            "{later}h"
        );
    }
    assert!(prices.is_due(back + hours(24), Some(ran), Some((back, false))));
}

#[test]
fn a_failed_run_rests_before_it_is_tried_again() {
    let w = parse(REGISTRY, "workflows.toml").unwrap();
    let prices = &w[1].schedule;
    let good = dec8(0);
    let failed = dec8(30);
    assert!(!prices.is_due(
        failed + Duration::from_secs(600),
        Some(good),
        Some((failed, true))
    ));
    assert!(prices.is_due(failed + hours(1), Some(good), Some((failed, true))));
}

#[test]
fn malformed_and_unknown_entries_are_refused_naming_the_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"1d\"\ncron = \"* * *\"\n",
            5,
            "unknown field `cron`",
        ),
        (
            "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"soon\"\n",
            4,
            "[psd] every = \"soon\": not a duration",
        ),
        (
            "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"10s\"\n",
            4,
            "shorter than 60s",
        ),
        (
            "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\n",
            1,
            "missing field `every`",
        ),
        (
            "[psd]\nbinary = \"extract-psv\"\ndataset = \"psd\"\nevery = \"1d\"\n",
            2,
            "is \"extract-psd\"",
        ),
        (
            "[psd]\nbinary = \"extract-PSD\"\ndataset = \"PSD\"\nevery = \"1d\"\n",
            3,
            "lowercase letters",
        ),
        (
            "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"1d\"\ndays = [9, 32]\ndays_every = \"1h\"\n",
            5,
            "32 is not a day of the month",
        ),
        (
            "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"1d\"\ndays = [9]\n",
            5,
            "days without days_every",
        ),
        (
            "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"1d\"\ndays_every = \"1h\"\n",
            5,
            "days_every without days",
        ),
        (
            "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"1d\"\n\n[psd2]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"1h\"\n",
            6,
            "one extractor per dataset",
        ),
        (
            "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = 1\n",
            4,
            "invalid type: integer",
        ),
        (
            "[psd]\nbinary = \"extract-psd\"\ndataset = \"psd\"\nevery = \"1d\n",
            4,
            "",
        ),
        ("every = \"1d\"\n", 1, "invalid type"),
    ];
    for (text, line, message) in cases {
        let e = parse(text, "workflows.toml").expect_err(text);
        assert_eq!(e.line, Some(*line), "{text:?}: {e}");
        assert!(
            e.to_string()
                .starts_with(&format!("workflows.toml line {line}: ")),
            "{e}"
        );
        assert!(e.message.contains(message), "{text:?}: {e}");
    }
    let e = parse("# nothing\n", "workflows.toml").unwrap_err();
    assert!(e.message.contains("no extractor"), "{e}");
}

#[test]
fn the_repository_registry_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(FILE_NAME);
    let w = load(&path).unwrap();
    assert!(w.iter().any(|w| w.binary == "extract-psd"));
    assert!(w.iter().any(|w| w.binary == "extract-prices"));
}
