//! The `weir` binary as a user runs it: exit codes, error output, and a graceful stop on
//! SIGTERM with the embedded broker.
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use weir_tests::{free_port, module, toml_path};

use weir_tests::weir_binary as weir;

#[test]
fn check_reports_every_error_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[modules.m]\npath = \"missing.wasm\"\n[routes]\nr = 'FROM /nowhere INTO $upstream'\n").unwrap();
    let output = Command::new(weir()).arg("check").arg(&path).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml:2:1: modules.m.path: module file"), "{stderr}");
    assert!(stderr.contains("bad.toml:4:11: routes.r: unknown source `/nowhere`"), "{stderr}");
}

/// Exit codes scripts rely on: 0 yes, 1 no, 2 the input cannot be used.
#[test]
fn route_explain_and_check_exit_0_for_yes_1_for_no_2_for_unusable_input() {
    let dir = tempfile::tempdir().unwrap();
    let message = dir.path().join("m.json");
    std::fs::write(&message, r#"{"topic": "factory/m1/telemetry", "payload": {"temperature": 71}}"#).unwrap();
    let explain = |route: &str, message: &std::path::Path| {
        let output = Command::new(weir()).args(["route", "explain", route, "--message"]).arg(message).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr))
    };
    let takes = "FROM /topics/factory/# WHERE $body.temperature > 50 INTO $upstream";
    assert_eq!(explain(takes, &message).0, Some(0), "{}", explain(takes, &message).1);
    let declines = "FROM /topics/factory/# WHERE $body.temperature > 90 INTO $upstream";
    assert_eq!(explain(declines, &message).0, Some(1), "{}", explain(declines, &message).1);
    let (code, text) = explain("FROM /topics/factory/# WHERE $body.temperature >> 90 INTO $upstream", &message);
    assert_eq!(code, Some(2), "a route that does not parse: {text}");
    assert!(text.contains("the route does not parse"), "{text}");
    assert_eq!(explain(takes, &dir.path().join("missing.json")).0, Some(2), "a message file that cannot be read");

    let check = |path: &std::path::Path| Command::new(weir()).arg("check").arg(path).output().unwrap().status.code();
    let valid = dir.path().join("valid.toml");
    std::fs::write(&valid, "upstream = \"out\"\n[broker]\nurl = \"mqtt://127.0.0.1:1883\"\n[sinks.out]\ntype = \"file\"\npath = \"out.jsonl\"\n[routes]\nup = \"FROM /topics/# INTO $upstream\"\n").unwrap();
    assert_eq!(check(&valid), Some(0));
    let invalid = dir.path().join("invalid.toml");
    std::fs::write(&invalid, "[routes]\nr = 'FROM /nowhere INTO $upstream'\n").unwrap();
    assert_eq!(check(&invalid), Some(1));
    assert_eq!(check(&dir.path().join("missing.toml")), Some(2));
}

#[test]
fn check_accepts_every_example_pipeline() {
    let mut checked = 0;
    for entry in std::fs::read_dir(weir_tests::repo_root().join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let output = Command::new(weir()).arg("check").arg(&path).output().unwrap();
            assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
            checked += 1;
        }
    }
    assert!(checked >= 5, "the demo and one example per cloud connector: {checked}");
}

/// The embedded broker acknowledges a publisher before weir has the message and keeps it in
/// memory: a pipeline that relies on a queue says, at `weir check` and `weir run`, what that
/// costs and what to run in production; one on a real broker does not.
#[test]
fn a_queued_pipeline_on_the_embedded_broker_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let sink = "upstream = \"cloud\"\n[sinks.cloud]\ntype = \"file\"\npath = \"out.jsonl\"\n[routes]\nup = 'FROM /topics/data/# INTO $upstream'\n";
    let check = |name: &str, toml: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, toml).unwrap();
        let output = Command::new(weir()).arg("check").arg(&path).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    let embedded = check("embedded.toml", sink.to_owned());
    assert!(embedded.contains("warning: this pipeline takes its messages from weir's embedded broker"), "{embedded}");
    assert!(embedded.contains("a crash, kill -9 or power loss loses what it holds") && embedded.contains("persistence true"), "{embedded}");
    let broker = check("broker.toml", format!("{sink}[broker]\nurl = \"mqtt://127.0.0.1:1883\"\n"));
    assert!(!broker.contains("warning"), "{broker}");
}

#[test]
fn run_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    let port = free_port();
    let toml = format!(
        "[embedded_broker]\nlisten = \"127.0.0.1:{port}\"\n[modules.pass]\npath = {}\n[routes]\nin = 'FROM /topics/in INTO BrokeredEndpoint(\"/modules/pass/inputs/in\")'\n",
        toml_path(&module("pass_through"))
    );
    std::fs::write(&path, toml).unwrap();
    let mut child = Command::new(weir()).arg("run").arg(&path).env("RUST_LOG", "info").stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "weir run did not start its broker");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "weir did not stop within 30 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut log = String::new();
    child.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    assert!(status.success(), "exit {status}: {log}");
    assert!(log.contains("shutting down") && log.contains("stopped"), "{log}");
}

#[test]
fn queue_inspect_shows_depth_and_verify_finds_damage() {
    use weir::queue::{Fsync, Item, QueueSettings, SinkQueue, WhenFull, lane_dir, segment};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "upstream = \"cloud\"\ndeadletter = \"cloud\"\n[store]\ndir = \"q\"\n[sinks.cloud]\ntype = \"file\"\npath = \"out.jsonl\"\n")
        .unwrap();
    let settings = QueueSettings {
        dir: dir.path().join("q/cloud"),
        max_bytes: 1 << 30,
        when_full: WhenFull::Block,
        fsync: Fsync::Batch,
        time_to_live: Duration::from_secs(7200),
    };
    {
        let queue = SinkQueue::open("cloud", settings.clone()).unwrap();
        let items = (0..100)
            .map(|i| {
                let message = weir_core::Message::new(format!("{{\"n\":{i}}}").into_bytes(), weir_core::Metadata::new("s".into(), "t"), weir_core::Ack::none());
                Item { message, priority: 3, expires_ms: 0 }
            })
            .collect();
        queue.enqueue(items, &|| false).unwrap();
        queue.close().unwrap();
    }
    let run = |verb: &str| Command::new(weir()).args(["queue", verb]).arg(&path).output().unwrap();

    let inspect = run("inspect");
    let text = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success(), "{text}{}", String::from_utf8_lossy(&inspect.stderr));
    assert!(text.contains("sink `cloud`: 100 messages") && text.contains("priority 3: 100 messages"), "{text}");
    let verify = run("verify");
    assert!(verify.status.success() && String::from_utf8_lossy(&verify.stdout).contains("no damage found"));

    // Rot in the middle of the segment: verify says where, and fails.
    let lane = lane_dir(&settings.dir, 3);
    let segment = segment::path(&lane, segment::list(&lane).unwrap()[0]);
    let mut bytes = std::fs::read(&segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&segment, bytes).unwrap();
    let verify = run("verify");
    let text = String::from_utf8_lossy(&verify.stdout);
    assert_eq!(verify.status.code(), Some(1), "{text}");
    assert!(text.contains("damage in segment") && text.contains("checksum mismatch") && text.contains("99 messages"), "{text}");

    // weir starts on the damaged queue, quarantines the bad record and delivers the rest.
    let mut weir = weir_tests::WeirProcess::start(&path);
    let out = dir.path().join("out.jsonl");
    let deadline = Instant::now() + Duration::from_secs(30);
    while weir_tests::json_lines(&out).len() < 99 {
        assert!(Instant::now() < deadline, "{} of 99 delivered:\n{}", weir_tests::json_lines(&out).len(), weir.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    weir.stop();
    assert!(weir.log_text().contains("damaged queue data"), "{}", weir.log_text());
    assert_eq!(std::fs::read_dir(settings.dir.join("quarantine")).unwrap().count(), 1);
}

#[test]
fn check_points_at_a_blob_name_that_would_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(&path, "upstream = \"lake\"\n[sinks.lake]\ntype = \"blob\"\nurl = \"lake\"\nname = \"{yyyy}/{MM}/data.jsonl\"\n").unwrap();
    let output = Command::new(weir()).arg("check").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("p.toml:5:1: sinks.lake.name: name `{yyyy}/{MM}/data.jsonl` has no {seq}"), "{stderr}");
}
