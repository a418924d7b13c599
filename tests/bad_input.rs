//! Bad input gets a clear error and loses nothing: configuration mistakes are reported with
//! file, line, column and key; misbehaving modules send their messages to `$deadletter` with
//! a reason while weir and its other routes keep running.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use rumqttc::v5::mqttbytes::v5::{Publish, PublishProperties};
use weir::config::ConfigErrors;
use weir_tests::{Mosquitto, RunningPipeline, Subscriber, WeirProcess, free_port, metric, module, publish_v5, scrape_metrics, toml_path, wait_for_lines};

/// `weir check` on `toml`; the errors it reports.
fn check_errors(toml: &str) -> ConfigErrors {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, toml).unwrap();
    match weir::cli::check::check(&path) {
        Ok(_) => panic!("accepted:\n{toml}"),
        Err(err) => err.downcast::<ConfigErrors>().unwrap_or_else(|err| panic!("not a config error: {err:#}")),
    }
}

fn one(errors: &ConfigErrors) -> &weir::config::ConfigError {
    assert_eq!(errors.0.len(), 1, "{errors}");
    &errors.0[0]
}

#[test]
fn malformed_toml_names_line_and_column() {
    let errors = check_errors("[routes]\nr = 'FROM /* INTO $upstream\n");
    let error = one(&errors);
    assert_eq!(error.line, 2, "{error}");
    assert!(error.file.ends_with("bad.toml"));
    assert!(errors.to_string().starts_with("error: "), "{errors}");
}

#[test]
fn unknown_key_names_the_key_where_it_is() {
    let toml = format!("[modules.m]\npath = {}\nkind = \"filter\"\nmemroy = \"8MiB\"\n", toml_path(&module("threshold")));
    let error = one(&check_errors(&toml)).clone();
    assert_eq!((error.line, error.column, error.key.as_str()), (4, 1, "modules.m.memroy"), "{error}");
    assert!(error.message.contains("unknown field `memroy`") && error.message.contains("memory"), "{error}");
}

#[test]
fn unknown_key_in_a_connector_table() {
    let errors = check_errors("[sinks.out]\ntype = \"file\"\npath = \"x.jsonl\"\nfsink = true\n");
    let error = one(&errors);
    assert_eq!((error.line, error.key.as_str()), (4, "sinks.out.fsink"), "{error}");
}

#[test]
fn missing_module_file() {
    let errors = check_errors("[modules.m]\npath = \"nowhere/gone.wasm\"\n");
    let error = one(&errors);
    assert_eq!((error.line, error.column, error.key.as_str()), (2, 1, "modules.m.path"), "{error}");
    assert!(error.message.contains("does not exist"), "{error}");
}

#[test]
fn module_that_does_not_export_its_kind() {
    let toml = format!("[modules.m]\npath = {}\nkind = \"filter\"\n", toml_path(&module("json_map")));
    let error = one(&check_errors(&toml)).clone();
    assert_eq!(error.key, "modules.m.kind", "{error}");
    assert!(error.message.contains("does not export `weir:module/filter") && error.message.contains("Set kind = \"map\""), "{error}");
}

#[test]
fn module_config_that_does_not_fit() {
    let toml = format!("[modules.m]\npath = {}\nconfig = {{ field = \"t\" }}\n", toml_path(&module("threshold")));
    let error = one(&check_errors(&toml)).clone();
    assert_eq!(error.key, "modules.m.config", "{error}");
    assert!(error.message.contains("missing field `limit`"), "{error}");
}

#[test]
fn bad_route_points_a_caret_at_the_column() {
    let errors =
        check_errors("upstream = \"out\"\n[sinks.out]\ntype = \"file\"\npath = \"x.jsonl\"\n[routes]\nr = \"FROM /* WHERE $body.t >> 5 INTO $upstream\"\n");
    let error = one(&errors);
    assert_eq!((error.line, error.column, error.key.as_str()), (6, 29, "routes.r"), "{error}");
    assert_eq!(error.detail.as_deref(), Some("    FROM /* WHERE $body.t >> 5 INTO $upstream\n                           ^"));
}

#[test]
fn route_to_an_undeclared_sink_and_every_error_at_once() {
    let errors =
        check_errors("upstream = \"nope\"\n[routes]\na = \"FROM /* INTO archive\"\nb = 'FROM /* INTO BrokeredEndpoint(\"/modules/ghost/inputs/i\")'\n");
    let text = errors.to_string();
    assert_eq!(errors.0.len(), 3, "{text}");
    assert!(text.contains("bad.toml:1:1: upstream: no sink named `nope`"), "{text}");
    assert!(text.contains("bad.toml:3:"), "{text}");
    assert!(text.contains("no sink named `archive`"), "{text}");
    assert!(text.contains("no module named `ghost`"), "{text}");
}

#[test]
fn a_broker_url_that_is_not_one_is_named_where_it_is() {
    for (url, says) in [("http://broker:1883", "not an MQTT URL"), ("mqtt+unix://relative.sock", "absolute socket path")] {
        let errors = check_errors(&format!("[broker]\nclient_id = \"w\"\nurl = \"{url}\"\n"));
        let error = one(&errors);
        assert_eq!((error.line, error.key.as_str()), (3, "broker.url"), "{error}");
        assert!(error.message.contains(says), "{error}");
    }
}

#[test]
fn clear_text_secret_is_refused() {
    let errors = check_errors("[broker]\nurl = \"mqtt://127.0.0.1:1\"\nusername = \"u\"\npassword = \"hunter2\"\n");
    let error = one(&errors);
    assert_eq!(error.line, 4, "{error}");
    assert!(error.message.contains("never written in clear text"), "{error}");
    assert!(!errors.to_string().contains("hunter2"), "the secret leaked into the error: {errors}");
}

fn dead_letters(path: &Path) -> Vec<(String, String, String)> {
    weir_tests::json_lines(path)
        .into_iter()
        .map(|line| {
            let property = |name: &str| {
                line["properties"].as_array().unwrap().iter().find(|p| p["name"] == name).map(|p| p["value"].as_str().unwrap().to_owned()).unwrap_or_default()
            };
            let payload = line["payload_text"].as_str().map(str::to_owned).unwrap_or_else(|| line["payload"].to_string());
            (payload, property("weir-dl-reason"), property("weir-dl-detail"))
        })
        .collect()
}

/// A trapping, a looping and a memory-hungry call each dead-letter their batch and recycle
/// the instance; a non-JSON payload is dead-lettered alone; the other route keeps flowing
/// and the misbehaving module keeps working for good input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_modules_dead_letter_and_weir_stays_up() {
    // Its loops spin a core until their deadline: not beside the tests that time calls.
    let _one_at_a_time = TIMED.lock().await;
    let broker = Mosquitto::start();
    let toml = format!(
        r#"
deadletter = "dlq"

[broker]
url = "mqtt://127.0.0.1:{port}"

[modules.chaos]
path = {chaos}
deadline = "300ms"
memory = "16MiB"
batch_size = 1

[modules.hot]
path = {threshold}
config = {{ field = "temperature", limit = 10 }}

[sinks.dlq]
type = "file"
path = "deadletter.jsonl"

[routes]
chaos_in = 'FROM /topics/chaos INTO BrokeredEndpoint("/modules/chaos/inputs/in")'
chaos_out = 'FROM /messages/modules/chaos/outputs/* INTO /topics/survived'
json_in = 'FROM /topics/readings INTO BrokeredEndpoint("/modules/hot/inputs/in")'
json_out = 'FROM /messages/modules/hot/outputs/* INTO /topics/hot'
"#,
        port = broker.port,
        chaos = toml_path(&module("chaos")),
        threshold = toml_path(&module("threshold")),
    );
    let pipeline = RunningPipeline::start(&toml).await;
    let mut survived = Subscriber::connect(broker.port, &["survived"]).await;
    let mut hot = Subscriber::connect(broker.port, &["hot"]).await;
    let plain = PublishProperties::default;
    publish_v5(
        broker.port,
        vec![
            ("chaos".into(), b"first".to_vec(), plain()),
            ("chaos".into(), b"trap".to_vec(), plain()),
            ("readings".into(), br#"{"temperature": 20}"#.to_vec(), plain()),
            ("chaos".into(), b"loop".to_vec(), plain()),
            ("readings".into(), b"not json".to_vec(), plain()),
            ("chaos".into(), b"hog".to_vec(), plain()),
            ("readings".into(), br#"{"temperature": 30}"#.to_vec(), plain()),
            ("chaos".into(), b"after".to_vec(), plain()),
        ],
    )
    .await;
    let kept: Vec<_> = survived.take(2, Duration::from_secs(20)).await.into_iter().map(|p| p.payload).collect();
    assert_eq!(kept, vec![&b"first"[..], &b"after"[..]]);
    let readings = hot.take(2, Duration::from_secs(20)).await;
    assert_eq!(&readings[1].payload[..], br#"{"temperature": 30}"#);

    wait_for_lines(&pipeline.dir.path().join("deadletter.jsonl"), 4, Duration::from_secs(10)).await;
    let mut letters = dead_letters(&pipeline.dir.path().join("deadletter.jsonl"));
    letters.sort();
    let summary: Vec<(&str, &str)> = letters.iter().map(|(p, r, _)| (p.as_str(), r.as_str())).collect();
    assert_eq!(summary, vec![("hog", "memory-cap"), ("loop", "deadline"), ("not json", "rejected"), ("trap", "trap")]);
    let detail = |payload: &str| letters.iter().find(|l| l.0 == payload).unwrap().2.clone();
    assert!(detail("hog").contains("memory cap of 16777216 bytes"), "{}", detail("hog"));
    assert!(detail("loop").contains("deadline"), "{}", detail("loop"));
    assert!(detail("trap").contains("unreachable"), "{}", detail("trap"));
    assert!(detail("not json").contains("not the JSON expected"), "{}", detail("not json"));
    let modules: Vec<String> = weir_tests::json_lines(&pipeline.dir.path().join("deadletter.jsonl"))
        .iter()
        .map(|l| l["properties"].as_array().unwrap().iter().find(|p| p["name"] == "weir-dl-module").unwrap()["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(modules.iter().filter(|m| *m == "chaos").count(), 3);
    pipeline.stop().await.unwrap();
}

/// `weir run` on `pipeline` followed by a `[broker]` table for `broker` and a `[runtime]`
/// table that serves metrics on a free port and has the keys in `runtime`, in a directory of
/// its own; the process, that directory and the metrics port.
fn run_with_metrics(broker: &Mosquitto, runtime: &str, pipeline: &str) -> (WeirProcess, tempfile::TempDir, u16) {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let path = dir.path().join("pipeline.toml");
    let tables = format!("[broker]\nurl = \"mqtt://127.0.0.1:{}\"\n[runtime]\nhttp_listen = \"127.0.0.1:{metrics_port}\"\n{runtime}\n", broker.port);
    std::fs::write(&path, format!("{pipeline}\n{tables}")).unwrap();
    (WeirProcess::start(&path), dir, metrics_port)
}

/// `weir_module_inline` of `module`, from weir's metrics on `metrics_port`.
fn inline_gauge(metrics_port: u16, module: &str) -> Option<f64> {
    metric(&scrape_metrics(metrics_port), "weir_module_inline", &[&format!("module=\"{module}\"")])
}

/// Plain MQTT 5 messages to `topic`, one per payload.
fn on_topic<S: AsRef<str>>(topic: &str, payloads: &[S]) -> Vec<(String, Vec<u8>, PublishProperties)> {
    payloads.iter().map(|p| (topic.to_owned(), p.as_ref().as_bytes().to_vec(), PublishProperties::default())).collect()
}

/// `prefix-0` … `prefix-{n-1}`.
fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// The payloads of `messages`, as text.
fn texts(messages: Vec<Publish>) -> Vec<String> {
    messages.into_iter().map(|p| String::from_utf8(p.payload.to_vec()).unwrap()).collect()
}

/// The tests that judge how long module calls take run one at a time (and the one whose
/// loops spin a core): each starts Mosquitto and weir and sends traffic, and together they
/// load a small machine enough to make short calls look long.
static TIMED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// weir running the chaos filter, already called inline (it started on its own thread; short
/// calls, in order, made it inline).
struct ChaosInline {
    weir: WeirProcess,
    dir: tempfile::TempDir,
    metrics_port: u16,
    /// What the filter lets through.
    survived: Subscriber,
}

/// Start weir with the chaos filter (`deadline` per call, a batch per message, dead letters
/// to `deadletter.jsonl`) and `more` routes (then any further tables), and make the filter
/// inline.
async fn chaos_made_inline(broker: &Mosquitto, deadline: &str, more: &str) -> ChaosInline {
    let toml = format!(
        r#"
deadletter = "dlq"

[modules.chaos]
path = {chaos}
deadline = "{deadline}"
batch_size = 1

[sinks.dlq]
type = "file"
path = "deadletter.jsonl"

[routes]
chaos_in = 'FROM /topics/chaos INTO BrokeredEndpoint("/modules/chaos/inputs/in")'
chaos_out = 'FROM /messages/modules/chaos/outputs/* INTO /topics/survived'
{more}
"#,
        chaos = toml_path(&module("chaos")),
    );
    let (weir, dir, metrics_port) = run_with_metrics(broker, "", &toml);
    let mut survived = Subscriber::connect(broker.port, &["survived"]).await;
    assert_eq!(inline_gauge(metrics_port, "chaos"), Some(0.0), "a module starts on its own thread");
    // Short calls, twenty at a time, until it is inline: sixteen in a row do it, but on a
    // loaded machine a call can look long and start the count again. Every round comes out
    // whole and in order, across the move.
    for round in 0..10 {
        let shorts = numbered(&format!("short{round}"), 20);
        publish_v5(broker.port, on_topic("chaos", &shorts)).await;
        assert_eq!(texts(survived.take(20, Duration::from_secs(20)).await), shorts, "in order across the move from its thread to inline");
        if inline_gauge(metrics_port, "chaos") == Some(1.0) {
            return ChaosInline { weir, dir, metrics_port, survived };
        }
    }
    panic!("200 short calls did not make the module inline:\n{}", weir.log_text());
}

/// A module whose calls are short is called where its messages arrive, not on its thread;
/// the first call that runs long there (a loop stopped by the deadline) dead-letters its
/// message, sends the module back to its own thread for good, and everything else keeps
/// flowing, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_module_that_runs_long_goes_back_to_its_own_thread() {
    let _one_at_a_time = TIMED.lock().await;
    let broker = Mosquitto::start();
    let more = format!(
        r#"steady_in = 'FROM /topics/steady INTO BrokeredEndpoint("/modules/steady/inputs/in")'
steady_out = 'FROM /messages/modules/steady/outputs/* INTO /topics/survived'
direct = 'FROM /topics/direct INTO /topics/passed'

[modules.steady]
path = {pass}
own_thread = true
batch_size = 1
"#,
        pass = toml_path(&module("pass_through")),
    );
    let ChaosInline { mut weir, dir, metrics_port, mut survived } = chaos_made_inline(&broker, "300ms", &more).await;
    let mut passed = Subscriber::connect(broker.port, &["passed"]).await;
    let inline = || inline_gauge(metrics_port, "chaos");
    // `own_thread = true`: as many short calls, and still only its thread calls it.
    publish_v5(broker.port, on_topic("steady", &numbered("steady", 40))).await;
    assert_eq!(texts(survived.take(40, Duration::from_secs(20)).await), numbered("steady", 40));
    assert_eq!(inline_gauge(metrics_port, "steady"), Some(0.0), "own_thread keeps a module on its thread");

    // A trap made inline (its panic message goes to weir's stderr): dead-lettered, the
    // module recycled and still inline.
    let mut trap = on_topic("chaos", &["trap"]);
    trap.extend(on_topic("chaos", &numbered("recycled", 3)));
    publish_v5(broker.port, trap).await;
    let got = texts(survived.take(3, Duration::from_secs(20)).await);
    assert_eq!(got, numbered("recycled", 3));
    wait_for_lines(&dir.path().join("deadletter.jsonl"), 1, Duration::from_secs(10)).await;
    assert_eq!(inline(), Some(1.0), "a trap is not a long call: the module stays inline\n{}", weir.log_text());

    let mut after = on_topic("chaos", &["loop"]);
    after.extend(on_topic("chaos", &numbered("after", 10)));
    after.extend(on_topic("direct", &["meanwhile"]));
    publish_v5(broker.port, after).await;
    let got = texts(survived.take(10, Duration::from_secs(20)).await);
    assert_eq!(got, numbered("after", 10));
    assert_eq!(&passed.take(1, Duration::from_secs(10)).await[0].payload[..], b"meanwhile");
    wait_for_lines(&dir.path().join("deadletter.jsonl"), 2, Duration::from_secs(10)).await;
    let letters = dead_letters(&dir.path().join("deadletter.jsonl"));
    let summary: Vec<(&str, &str)> = letters.iter().map(|(p, r, _)| (p.as_str(), r.as_str())).collect();
    assert_eq!(summary, vec![("trap", "trap"), ("loop", "deadline")]);
    assert_eq!(inline(), Some(0.0), "the long call sent the module back to its own thread");
    let log = weir.log_text();
    assert!(log.contains("a module call where its messages arrive ran long"), "{log}");
    weir.stop();
}

/// `inline_call_budget = "0s"`: short calls or not, every module stays on its own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_inline_budget_keeps_every_module_on_its_thread() {
    let broker = Mosquitto::start();
    let toml = format!(
        r#"
[modules.pass]
path = {pass}
batch_size = 1

[routes]
in = 'FROM /topics/in/# INTO BrokeredEndpoint("/modules/pass/inputs/in")'
out = 'FROM /messages/modules/pass/outputs/* INTO /topics/out/{{$topic[1]}}'
"#,
        pass = toml_path(&module("pass_through")),
    );
    let (mut weir, _dir, metrics_port) = run_with_metrics(&broker, r#"inline_call_budget = "0s""#, &toml);
    let mut out = Subscriber::connect(broker.port, &["out/#"]).await;
    publish_v5(broker.port, on_topic("in/a", &numbered("reading", 40))).await;
    assert_eq!(out.take(40, Duration::from_secs(20)).await.len(), 40);
    assert_eq!(inline_gauge(metrics_port, "pass"), Some(0.0), "{}", weir.log_text());
    weir.stop();
}

/// One call that looks long (the system may have given the CPU to someone else meanwhile)
/// does not send an inline module back to its thread; three in a row do, and every message
/// is still kept, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_long_calls_in_a_row_send_an_inline_module_back_to_its_thread() {
    let _one_at_a_time = TIMED.lock().await;
    let broker = Mosquitto::start();
    let ChaosInline { mut weir, dir: _dir, metrics_port, mut survived } = chaos_made_inline(&broker, "1s", "").await;
    let inline = || inline_gauge(metrics_port, "chaos");
    let send = |payloads: &[&str]| on_topic("chaos", payloads);

    // `slow` spins for 2 ms: over the 1 ms budget, under ten times it.
    let twice = ["slow", "slow", "between", "slow", "slow"];
    publish_v5(broker.port, send(&twice)).await;
    assert_eq!(texts(survived.take(5, Duration::from_secs(20)).await), twice);
    assert_eq!(inline(), Some(1.0), "two long calls in a row are not enough:\n{}", weir.log_text());

    publish_v5(broker.port, send(&["slow", "after"])).await;
    assert_eq!(texts(survived.take(2, Duration::from_secs(20)).await), ["slow", "after"]);
    assert_eq!(inline(), Some(0.0), "the third long call in a row sent it back:\n{}", weir.log_text());
    // Made inline, or on its thread when a slow call before it was set aside and it queued.
    assert!(weir.log_text().contains("ran long; the module is called only on its own thread from now on"), "{}", weir.log_text());
    weir.stop();
}

/// A call that runs long while the module is inline is set aside once it outlives the
/// budget and finished on another thread: while it runs (a loop, until its 4 s deadline),
/// messages of the same source and of another one keep flowing through weir, and what comes
/// for the module meanwhile waits its turn behind the call, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_inline_call_does_not_hold_up_other_messages() {
    let _one_at_a_time = TIMED.lock().await;
    let broker = Mosquitto::start();
    let plant = Mosquitto::start();
    let more = format!(
        r#"direct = 'FROM /topics/direct INTO /topics/passed'
plant = "FROM /topics/line/# WHERE $source = 'plant' INTO /topics/relayed"

[sources.plant]
type = "mqtt"
connection = {{ url = "mqtt://127.0.0.1:{}" }}
topics = ["line/#"]
"#,
        plant.port
    );
    let ChaosInline { mut weir, dir, metrics_port, mut survived } = chaos_made_inline(&broker, "4s", &more).await;
    let letters = dir.path().join("deadletter.jsonl");
    let mut passed = Subscriber::connect(broker.port, &["passed"]).await;
    let mut relayed = Subscriber::connect(broker.port, &["relayed"]).await;

    let mut meanwhile = on_topic("chaos", &["loop"]);
    meanwhile.extend(on_topic("chaos", &numbered("queued", 3)));
    meanwhile.extend(on_topic("direct", &numbered("same-source", 5)));
    publish_v5(broker.port, meanwhile).await;
    publish_v5(plant.port, on_topic("line/3", &numbered("other-source", 5))).await;
    assert_eq!(texts(passed.take(5, Duration::from_secs(20)).await), numbered("same-source", 5));
    assert_eq!(texts(relayed.take(5, Duration::from_secs(20)).await), numbered("other-source", 5));
    assert!(
        weir_tests::json_lines(&letters).is_empty(),
        "the other messages waited for the long call to end (its dead letter is written):\n{}",
        weir.log_text()
    );

    wait_for_lines(&letters, 1, Duration::from_secs(20)).await;
    let summary: Vec<(String, String)> = dead_letters(&letters).into_iter().map(|(payload, reason, _)| (payload, reason)).collect();
    assert_eq!(summary, [("loop".to_owned(), "deadline".to_owned())]);
    assert_eq!(texts(survived.take(3, Duration::from_secs(20)).await), numbered("queued", 3));
    assert_eq!(inline_gauge(metrics_port, "chaos"), Some(0.0), "the deadline sent the module back to its thread");
    let set_aside = metric(&scrape_metrics(metrics_port), "weir_module_set_aside_total", &["module=\"chaos\""]);
    assert_eq!(set_aside, Some(1.0), "one call set aside");
    publish_v5(broker.port, on_topic("chaos", &numbered("after", 5))).await;
    assert_eq!(texts(survived.take(5, Duration::from_secs(20)).await), numbered("after", 5));
    weir.stop();
}

/// Stopping weir while a set-aside call still runs loses nothing: its message is in flight
/// until the call ends, so the source's drain waits for it, and it is dead-lettered at its
/// deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_during_a_set_aside_call_loses_nothing() {
    let _one_at_a_time = TIMED.lock().await;
    let broker = Mosquitto::start();
    let more = "direct = 'FROM /topics/direct INTO /topics/passed'";
    let ChaosInline { mut weir, dir, .. } = chaos_made_inline(&broker, "2s", more).await;
    let mut passed = Subscriber::connect(broker.port, &["passed"]).await;

    let mut burst = on_topic("chaos", &["loop"]);
    burst.extend(on_topic("direct", &["marker"]));
    publish_v5(broker.port, burst).await;
    // The marker came after the loop: once it is through, the loop's call was set aside.
    assert_eq!(texts(passed.take(1, Duration::from_secs(20)).await), ["marker"]);
    weir.stop();

    let letters = dead_letters(&dir.path().join("deadletter.jsonl"));
    let summary: Vec<(&str, &str)> = letters.iter().map(|(payload, reason, _)| (payload.as_str(), reason.as_str())).collect();
    assert_eq!(summary, [("loop", "deadline")], "{}", weir.log_text());
}

/// Two modules in a chain, both moving from their threads to inline while messages flow:
/// every message comes out once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_modules_moving_inline_keeps_order() {
    let _one_at_a_time = TIMED.lock().await;
    let broker = Mosquitto::start();
    let toml = format!(
        r#"
[modules.first]
path = {pass}
batch_size = 1

[modules.second]
path = {pass}
batch_size = 1

[routes]
in = 'FROM /topics/chain INTO BrokeredEndpoint("/modules/first/inputs/in")'
middle = 'FROM /messages/modules/first/outputs/* INTO BrokeredEndpoint("/modules/second/inputs/in")'
out = 'FROM /messages/modules/second/outputs/* INTO /topics/chained'
"#,
        pass = toml_path(&module("pass_through")),
    );
    let (mut weir, _dir, metrics_port) = run_with_metrics(&broker, "", &toml);
    let mut chained = Subscriber::connect(broker.port, &["chained"]).await;
    let sent = numbered("m", 300);
    // In a few bursts, so the modules move inline while earlier messages are still queued.
    for burst in sent.chunks(60) {
        publish_v5(broker.port, on_topic("chain", burst)).await;
    }
    assert_eq!(texts(chained.take(300, Duration::from_secs(30)).await), sent);
    chained.assert_quiet(Duration::from_millis(300)).await;
    for name in ["first", "second"] {
        assert_eq!(inline_gauge(metrics_port, name), Some(1.0), "{name}:\n{}", weir.log_text());
    }
    weir.stop();
}
