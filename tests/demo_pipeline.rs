//! The demo pipeline runs end to end on the embedded broker (nothing else installed):
//! simulated machines publish telemetry, alerts come back on local topics, and what was
//! kept lands in the upstream file.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use weir_tests::{RunningPipeline, Subscriber, free_port, repo_root, wait_for_lines};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_pipeline_on_the_embedded_broker() {
    let root = repo_root();
    let port = free_port();
    // The demo as shipped, on a free port, with its paths made absolute and its output in a temp dir.
    let out = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string(root.join("pipelines/demo.toml")).unwrap();
    let toml = demo
        .replace("../filters/", &format!("{}/filters/", root.display()))
        .replace("../out/upstream.jsonl", &out.path().join("upstream.jsonl").display().to_string())
        + &format!("\n[embedded_broker]\nlisten = \"127.0.0.1:{port}\"\n");
    let pipeline = RunningPipeline::start(&toml).await;
    let mut alerts = Subscriber::connect_v311(port, &["alerts/#"]).await;

    // The simulator's readings cross 70 °C every 13th reading at least (a spike of +25).
    let args = weir::cli::simulate_args(port, 3, 200.0, 39);
    weir::cli::simulate(&args).await.unwrap();
    let got = alerts.take(3, Duration::from_secs(20)).await;
    for publish in &got {
        let body: serde_json::Value = serde_json::from_slice(&publish.payload).unwrap();
        assert!(body["temperature_c"].as_f64().unwrap() > 70.0, "{body}");
        assert_eq!(body["alert"], "over-temperature");
        assert_eq!(publish.topic, format!("alerts/{}", body["machine"].as_str().unwrap()).as_bytes());
    }
    let lines = wait_for_lines(&out.path().join("upstream.jsonl"), got.len(), Duration::from_secs(10)).await;
    assert!(lines.iter().all(|l| l["payload"]["temperature_c"].as_f64().unwrap() > 70.0));
    pipeline.stop().await.unwrap();
}
