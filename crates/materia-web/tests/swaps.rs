//! Generations swapped under load: concurrent keep-alive clients run against the real
//! `materia-web` while the real `export-serving` publishes 26 generations, alternating between
//! two lakehouses built from different data. Zero 5xx, zero connection errors, every answer
//! equal to the answer of the one generation its `X-Materia-Exported-At` names, and the open
//! file descriptors back to where they were.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{Conn, Server, Site, other_site, site};

const GENERATIONS: usize = 26;
const CLIENTS: usize = 4;
const TARGETS: [&str; 5] = [
    "/api/v1/global-balance?commodity=0711100",
    "/api/v1/commodities",
    "/api/v1/commodity-balance?commodity=0711100&country=NA",
    "/api/v1/revisions?commodity=0711100",
    "/commodity/0711100",
];

/// The `exported_at` of the generation at `serving`, as the server writes it.
fn exported_at(serving: &Path) -> String {
    let conn = lakehouse::open_read_only(serving, Duration::from_secs(10)).unwrap();
    conn.query_row(
        "SELECT strftime(max(exported_at), '%Y-%m-%dT%H:%M:%S.%gZ') FROM serving._materia_export",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

/// A page's footer names its generation; without it, every answer of one dataset is the same.
/// Answers are compared by this digest (the clients keep no bodies).
fn normalised(body: &[u8], exported_at: &str) -> [u8; 32] {
    use sha2::Digest;
    let text = String::from_utf8_lossy(body).replace(exported_at, "EXPORTED_AT");
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// The answers of a server on `lakehouse`'s data alone, by target.
fn reference(lakehouse: &Path) -> BTreeMap<&'static str, [u8; 32]> {
    let dir = tempfile::tempdir().unwrap();
    let site = Site {
        dir: dir.path().to_path_buf(),
    };
    std::fs::create_dir_all(site.landing()).unwrap();
    site.export_from(lakehouse);
    let at = exported_at(&site.serving());
    let s = Server::start(&site.serving(), &site.state_db(), &[]);
    TARGETS
        .iter()
        .map(|t| {
            let r = s.get(t);
            assert_eq!(r.status, 200, "{t}");
            (*t, normalised(&r.body, &at))
        })
        .collect()
}

struct Seen {
    target: &'static str,
    status: u16,
    exported_at: String,
    digest: [u8; 32],
}

#[test]
fn answers_stay_whole_while_26_generations_are_published_under_load() {
    let lakehouses = [site().lakehouse(), other_site().lakehouse()];
    let references = [reference(&lakehouses[0]), reference(&lakehouses[1])];
    for t in TARGETS {
        assert_ne!(
            references[0][t], references[1][t],
            "the datasets differ at {t}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let live = Site {
        dir: dir.path().to_path_buf(),
    };
    std::fs::create_dir_all(live.landing()).unwrap();
    live.export_from(&lakehouses[0]);
    let mut dataset_of: BTreeMap<String, usize> = BTreeMap::new();
    dataset_of.insert(exported_at(&live.serving()), 0);
    let s = Server::start(&live.serving(), &live.state_db(), &[]);
    assert_eq!(s.get("/healthz").status, 200);
    let fds_before = s.fds();

    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::new(Mutex::new(Vec::new()));
    let errors: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|k| {
            let (stop, seen, errors, addr) = (stop.clone(), seen.clone(), errors.clone(), s.addr);
            std::thread::spawn(move || {
                let mut conn = Conn::open(addr);
                let mut i = k;
                while !stop.load(Ordering::Relaxed) {
                    let target = TARGETS[i % TARGETS.len()];
                    i += 1;
                    match conn.get(target) {
                        Ok(r) => {
                            let exported_at =
                                r.header("x-materia-exported-at").unwrap_or("").to_owned();
                            let digest = normalised(&r.body, &exported_at);
                            seen.lock().unwrap().push(Seen {
                                target,
                                status: r.status,
                                exported_at,
                                digest,
                            });
                        }
                        Err(e) => {
                            errors.lock().unwrap().push(format!("{target}: {e}"));
                            // Keep loading on a new connection; the error is already counted.
                            conn = Conn::open(addr);
                        }
                    }
                }
            })
        })
        .collect();

    for g in 1..=GENERATIONS {
        let dataset = g % 2;
        live.export_from(&lakehouses[dataset]);
        dataset_of.insert(exported_at(&live.serving()), dataset);
    }
    let last = exported_at(&live.serving());
    // The last generation is served soon after its publication.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = s.get("/healthz").json();
        if h["exported_at"] == last.as_str() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still serving {h} after the last publication"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }

    let errors = errors.lock().unwrap();
    assert!(errors.is_empty(), "connection errors: {errors:?}");
    let seen = seen.lock().unwrap();
    assert!(seen.len() > 100, "only {} answers", seen.len());
    let mut generations = BTreeSet::new();
    for r in seen.iter() {
        assert!(r.status < 500, "{} answered {}", r.target, r.status);
        assert_eq!(r.status, 200, "{}", r.target);
        let dataset = *dataset_of.get(&r.exported_at).unwrap_or_else(|| {
            panic!(
                "{} names no published generation: {:?}",
                r.target, r.exported_at
            )
        });
        generations.insert(r.exported_at.clone());
        assert!(
            r.digest == references[dataset][r.target],
            "{} from the generation of {} is not that generation's answer",
            r.target,
            r.exported_at
        );
    }
    println!(
        "{} answers from {} of {} generations, 0 errors",
        seen.len(),
        generations.len(),
        GENERATIONS + 1
    );
    assert!(
        generations.len() > GENERATIONS / 2,
        "answers came from only {} generations",
        generations.len()
    );

    // The clients' connections are closed and every old generation is dropped: the server
    // holds the descriptors it held before the load.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = s.fds();
        if now <= fds_before {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "file descriptors: {fds_before} before, {now} after"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.get("/healthz").status, 200);
}
