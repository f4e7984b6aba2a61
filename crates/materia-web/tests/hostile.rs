//! Hostile clients against the real `materia-web`: slowloris, oversized headers, 10,000
//! unknown paths, and more connections than it serves. The server stays up, answers everyone
//! else, and its memory stays bounded.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::{Conn, Server, site};

#[test]
fn slowloris_connections_are_closed_and_others_are_answered_meanwhile() {
    let s = Server::start(&site().serving(), &site().state_db(), &[]);
    let mut slow: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let c = Conn::open(s.addr);
            let mut stream = c.stream;
            stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap();
            stream
        })
        .collect();
    // Drip one header byte a second; the server must give up on them after its header time-out
    // (10 s) while answering everyone else.
    let started = Instant::now();
    let mut closed = vec![false; slow.len()];
    while closed.iter().any(|c| !c) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "slow connections still open after 60 s"
        );
        for (i, stream) in slow.iter_mut().enumerate() {
            if closed[i] {
                continue;
            }
            if stream.write_all(b"X").is_err() {
                closed[i] = true;
                continue;
            }
            stream
                .set_read_timeout(Some(Duration::from_millis(10)))
                .unwrap();
            let mut buf = [0u8; 512];
            match stream.read(&mut buf) {
                Ok(_) => closed[i] = true,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => closed[i] = true,
            }
        }
        assert_eq!(s.get("/healthz").status, 200, "answered meanwhile");
        std::thread::sleep(Duration::from_millis(1000));
    }
    assert_eq!(s.get("/api/v1/commodities").status, 200);
}

#[test]
fn oversized_headers_are_431_and_the_server_stays_up() {
    let s = Server::start(&site().serving(), &site().state_db(), &[]);
    let big = "a".repeat(64 * 1024);
    let r = s.request(&format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\nConnection: close\r\n\r\n"
    ));
    assert_eq!(r.status, 431);
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = s.request(&format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{many}Connection: close\r\n\r\n"
    ));
    assert_eq!(r.status, 431);
    // Garbage instead of HTTP.
    let mut c = Conn::open(s.addr);
    c.stream
        .write_all(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not http\r\n\r\n")
        .unwrap();
    let mut rest = Vec::new();
    let _ = c.stream.read_to_end(&mut rest);
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn ten_thousand_unknown_paths_are_404_and_memory_stays_bounded() {
    let s = Server::start(&site().serving(), &site().state_db(), &[]);
    // Warm up what every answer needs, then measure.
    for _ in 0..50 {
        assert_eq!(s.get("/api/v1/commodities").status, 200);
        assert_eq!(s.get("/nope").status, 404);
    }
    let before = s.rss_kib();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                for i in 0..2_500 {
                    let target = match i % 4 {
                        0 => format!("/no/such/{w}/{i}"),
                        1 => format!("/commodity/X{w}{i}"),
                        2 => format!("/api/v1/global-balance?commodity=Z{w}{i}"),
                        _ => format!("/static/{w}-{i}-{}", "q".repeat(i % 500)),
                    };
                    let r = c.get(&target).unwrap();
                    assert_eq!(r.status, 404, "{target}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let after = s.rss_kib();
    println!("RSS before {before} KiB, after 10,000 unknown paths {after} KiB");
    assert!(
        after < before + 16 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
    assert_eq!(s.get("/healthz").status, 200);
}

#[test]
fn past_max_connections_new_ones_get_503_with_retry_after() {
    let s = Server::start(
        &site().serving(),
        &site().state_db(),
        &["--max-connections", "4"],
    );
    let mut held: Vec<Conn> = (0..4).map(|_| Conn::open(s.addr)).collect();
    for c in &mut held {
        assert_eq!(c.get("/healthz").unwrap().status, 200);
    }
    let r = s.get("/api/v1/commodities");
    assert_eq!(r.status, 503);
    assert!(r.header("retry-after").is_some());
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("connection limit")
    );
    let r = s.get("/");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("<h1>"));
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = s.get("/api/v1/commodities");
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no room again after the held connections closed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Regression: every answer is cached now, and a fresh gzip state per cached answer (about
/// 300 KB, freed while the answer stayed) fragmented the heap by that much per answer: 1,000
/// distinct `/revisions?limit=N` pages grew the process by about 300 MiB.
#[test]
fn thousands_of_distinct_cached_answers_keep_memory_bounded() {
    let s = Server::start(&site().serving(), &site().state_db(), &[]);
    for _ in 0..20 {
        assert_eq!(s.get("/revisions").status, 200);
    }
    let before = s.rss_kib();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let addr = s.addr;
            std::thread::spawn(move || {
                let mut c = Conn::open(addr);
                for i in 0..750 {
                    let target = format!("/revisions?limit={}", 1000 + w * 750 + i);
                    let r = c.get(&target).unwrap();
                    assert_eq!(r.status, 200, "{target}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let after = s.rss_kib();
    println!("RSS before {before} KiB, after 3,000 distinct pages {after} KiB");
    // The cache's bound (32 MiB of bodies and gzip forms) plus the allocator's slack for
    // bodies freed by eviction (about 70 MiB measured in all); a fresh gzip state per answer
    // took about 300 KiB per cached answer on top, about 900 MiB here.
    assert!(
        after < before + 128 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
}
