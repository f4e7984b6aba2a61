//! The real `materia-web` starting and stopping: SIGTERM lets a response being read finish and
//! exits 0; under socket activation it serves the socket it is given; a restart on a held
//! socket (what materia-web.socket does during a deploy) refuses no connection; kill -9 loses
//! nothing, since nothing is ever written.

mod support;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use sha2::Digest;
use support::{Conn, Server, run_bounded, site, tests_dir};

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn sigterm_lets_a_response_being_read_finish_then_exits_zero() {
    let mut s = Server::start(&site().serving(), &site().state_db(), &[]);
    let page = s.get("/").text();
    let echarts = support::echarts_name(&page);
    let mut c = Conn::open(s.addr);
    c.stream
        .write_all(format!("GET /static/{echarts} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    // Read the first bytes only, then ask the server to stop while the rest is on its way.
    let mut first = [0u8; 4096];
    let n = c.stream.read(&mut first).unwrap();
    assert!(n > 0);
    s.terminate_async();
    std::thread::sleep(Duration::from_millis(300));
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).unwrap();
    let mut all = first[..n].to_vec();
    all.extend_from_slice(&rest);
    let text = String::from_utf8_lossy(&all);
    let (head, _) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let header_len = head.len() + 4;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    let body = &all[header_len..];
    assert_eq!(body.len(), length, "the whole body arrived");
    let lock = std::fs::read_to_string(test_support::repo_root().join("third-party/echarts.lock"))
        .unwrap();
    assert!(lock.contains(&sha256_hex(body)), "and it is intact");
    let status = support::wait_exit(&mut s.child, Duration::from_secs(40));
    assert_eq!(status.code(), Some(0), "{}", s.log_text());
    assert!(s.log_text().contains("shutting down"));
    assert!(
        std::net::TcpStream::connect_timeout(&s.addr, Duration::from_secs(5)).is_err(),
        "no longer listening"
    );
}

#[test]
fn under_socket_activation_it_serves_the_socket_it_is_given() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new("systemd-socket-activate")
        .env_clear()
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg("--setenv=MATERIA_LOG=info")
        .arg(support::bin())
        // Its own address is ignored: the passed socket wins.
        .args(["--listen", "127.0.0.1:1"])
        .arg("--serving")
        .arg(site().serving())
        .arg("--state-db")
        .arg(site().state_db())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("systemd-socket-activate (package systemd) is needed: make deps");
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    // systemd-socket-activate starts the program on the first connection.
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        match Conn::try_open(addr) {
            Ok(mut c) => break c.get("/healthz").unwrap(),
            Err(_) => {
                assert!(Instant::now() < deadline, "nothing listens on {addr}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    assert_eq!(r.status, 200, "{}", r.text());
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("(socket passed by systemd)"), "{text}");
}

#[test]
fn a_restart_on_a_held_socket_refuses_no_connection() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("servers.log");
    let out = run_bounded(
        Command::new(support::python())
            .env_clear()
            .env("RESTART_LOG", &log)
            .arg(tests_dir().join("restart.py"))
            .arg(support::bin())
            .arg(site().serving())
            .arg(site().state_db())
            .arg("4"),
        Duration::from_secs(240),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let servers = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        out.status.success(),
        "{stdout}{}\n{servers}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{stdout}");
    assert_eq!(
        servers.matches("(socket passed by systemd)").count(),
        2,
        "{servers}"
    );
}

#[test]
fn kill_9_under_load_loses_nothing_and_a_new_process_answers() {
    let dir = tempfile::tempdir().unwrap();
    let serving = dir.path().join("analytics.duckdb");
    std::fs::copy(site().serving(), &serving).unwrap();
    let before = sha256_hex(&std::fs::read(&serving).unwrap());
    let s = Server::start(&serving, &site().state_db(), &[]);
    let addr = s.addr;
    let load = std::thread::spawn(move || {
        let mut answered = 0;
        for _ in 0..2_000 {
            match Conn::try_open(addr).and_then(|mut c| c.get("/api/v1/commodities")) {
                Ok(r) if r.status == 200 => answered += 1,
                _ => break,
            }
        }
        answered
    });
    std::thread::sleep(Duration::from_millis(300));
    support::signal(s.pid(), "KILL");
    let answered = load.join().unwrap();
    assert!(answered > 0);
    drop(s);
    assert_eq!(sha256_hex(&std::fs::read(&serving).unwrap()), before);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["analytics.duckdb"], "nothing left behind");
    let s = Server::start(&serving, &site().state_db(), &[]);
    assert_eq!(s.get("/healthz").status, 200);
    assert_eq!(s.get("/api/v1/commodities").status, 200);
}

#[test]
fn a_passed_descriptor_that_is_no_socket_is_exit_2_and_a_taken_address_exit_1() {
    // LISTEN_FDS says fd 3 is a socket, but the child has no fd 3 at all.
    let out = run_bounded(
        Command::new(support::bin())
            .env_clear()
            .env("LISTEN_FDS", "1")
            .arg("--serving")
            .arg(site().serving()),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(2), "{}", test_support::stderr(&out));
    assert!(test_support::stderr(&out).contains("LISTEN_FDS"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_bounded(
        Command::new(support::bin())
            .env_clear()
            .args(["--listen", &addr, "--serving"])
            .arg(site().serving()),
        Duration::from_secs(60),
    );
    assert_eq!(out.status.code(), Some(1), "{}", test_support::stderr(&out));
    assert!(test_support::stderr(&out).contains("cannot listen on"));
}
