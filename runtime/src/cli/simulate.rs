//! `weir simulate`: machines publishing telemetry, for the demo and for trying pipelines.

use std::time::Duration;

use anyhow::Context;
use rumqttc::{AsyncClient, MqttOptions, QoS};

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// How many machines.
    #[arg(long, default_value_t = 5)]
    pub machines: u32,
    /// Readings per second per machine.
    #[arg(long, default_value_t = 2.0)]
    pub rate: f64,
    /// Stop after this many readings in total (default: run until interrupted).
    #[arg(long)]
    pub count: Option<u64>,
    /// Topic template; {machine} is replaced.
    #[arg(long, default_value = "factory/{machine}/telemetry")]
    pub topic: String,
}

pub async fn run(args: &SimulateArgs) -> anyhow::Result<()> {
    let mut options = MqttOptions::new(format!("weir-simulator-{}", std::process::id()), args.host.clone(), args.port);
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    tokio::spawn(async move {
        loop {
            if let Err(err) = eventloop.poll().await {
                tracing::warn!(%err, "simulator connection error; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    });
    let interval = Duration::from_secs_f64(1.0 / (args.rate.max(0.001) * f64::from(args.machines.max(1))));
    let mut ticker = tokio::time::interval(interval);
    let mut sent = 0u64;
    tracing::info!(machines = args.machines, rate = args.rate, host = %args.host, port = args.port, "simulating machines");
    loop {
        ticker.tick().await;
        let machine = format!("m{}", sent % u64::from(args.machines.max(1)) + 1);
        // A slow sine per machine with an occasional spike: some readings cross a 70 °C limit.
        let phase = sent as f64 / 20.0 + (sent % 7) as f64;
        let spike = if sent.is_multiple_of(13) { 25.0 } else { 0.0 };
        let temperature = 55.0 + 12.0 * phase.sin() + spike;
        let payload = serde_json::json!({
            "machine": machine,
            "temperature": (temperature * 10.0).round() / 10.0,
            "pressure": 1.0 + (phase.cos() * 0.2),
            "seq": sent,
            "ts": weir_core::message::now_ms(),
        });
        let topic = args.topic.replace("{machine}", &machine);
        client.publish(topic, QoS::AtLeastOnce, false, payload.to_string()).await.context("publishing")?;
        sent += 1;
        if args.count.is_some_and(|count| sent >= count) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            return Ok(());
        }
    }
}
