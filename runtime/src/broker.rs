//! The embedded MQTT broker (rumqttd, in-process) for pipelines that name no broker, so
//! `weir run` works on a machine with nothing else installed.
//!
//! It speaks MQTT 3.1.1 on `listen` (what most command-line clients use by default); weir
//! connects to it with 3.1.1 too. For a plant's real traffic, run a full broker (Mosquitto,
//! EMQX, HiveMQ) and set `[broker] url`.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Start the broker on `listen` and wait until it accepts connections.
pub fn start(listen: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = listen.parse().with_context(|| format!("embedded_broker.listen `{listen}` is not an address like 127.0.0.1:1883"))?;
    // Fail with advice rather than from inside the broker's thread.
    match TcpListener::bind(addr) {
        Ok(probe) => drop(probe),
        Err(err) => bail!(
            "the embedded broker cannot listen on {addr}: {err}. Another broker (Mosquitto?) may be running there: \
             point [broker] url at it, or set [embedded_broker] listen to a free address"
        ),
    }
    let server = ServerSettings {
        name: "weir-embedded".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 16 << 20,
            max_inflight_count: 1000,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 1000,
            max_segment_size: 100 << 20,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("weir-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(err) = broker.start() {
                tracing::error!(%err, "embedded broker stopped");
            }
        })
        .context("starting the embedded broker thread")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_err() {
        if Instant::now() > deadline {
            bail!("the embedded broker did not start listening on {addr} within 5 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tracing::info!(%addr, "embedded MQTT broker listening (MQTT 3.1.1)");
    Ok(addr)
}
