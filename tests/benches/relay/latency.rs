//! Latency at a fixed rate (R8, and R6's p99): an MQTT 5 publisher paced at `rate` messages per
//! second and a subscriber on its own connection, both rumqttc in this process on one
//! thread, so a message's latency is its arrival `Instant` minus its publish `Instant` on one
//! clock. The path between them is whatever listens: the broker alone (the baseline), or
//! the broker → weir (or Node-RED, or [`BareRelay`]) → the broker.

use std::time::{Duration, Instant};

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use weir_tests::free_port;

/// One run's latencies, sorted, and how many of the messages arrived.
pub struct Latencies {
    pub sent: usize,
    sorted: Vec<Duration>,
}

impl Latencies {
    pub fn received(&self) -> usize {
        self.sorted.len()
    }

    /// The `p`-th percentile (0–100); zero when nothing arrived.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.sorted.len() - 1) as f64).round() as usize;
        self.sorted[rank.min(self.sorted.len() - 1)]
    }
}

/// The message's sequence number, from the `"seq":N` the payloads start with.
pub fn sequence_number(payload: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(payload).ok()?;
    let digits = text.split_once("\"seq\":")?.1;
    let end = digits.find(|c: char| !c.is_ascii_digit()).unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// A client on a no-delay socket, as latency-sensitive clients are: what is timed is the path
/// between them, not Nagle's algorithm in the clients themselves.
fn client(port: u16, role: &str) -> (AsyncClient, rumqttc::v5::EventLoop) {
    let mut options = MqttOptions::new(format!("bench-{role}-{}", free_port()), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_network_options(no_delay());
    AsyncClient::new(options, 10_000)
}

fn no_delay() -> rumqttc::NetworkOptions {
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network
}

/// Publish `payloads` to `topic` at `rate` per second (QoS 1) and time their arrival on
/// `watch`. Each payload must carry its index as `"seq":N`. Waits up to 3 s after the last
/// publish for stragglers.
pub fn measure(port: u16, topic: &str, watch: &str, payloads: &[Vec<u8>], rate: f64) -> Latencies {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let (subscriber, mut arrivals) = client(port, "watch");
        subscriber.subscribe(watch, QoS::AtLeastOnce).await.expect("subscribe");
        loop {
            if let Ok(Event::Incoming(Packet::SubAck(_))) = arrivals.poll().await {
                break;
            }
        }
        let (publisher, mut outgoing) = client(port, "send");
        let driver = tokio::spawn(async move { while outgoing.poll().await.is_ok() {} });

        let mut sent_at: Vec<Option<Instant>> = vec![None; payloads.len()];
        let mut latencies = Vec::with_capacity(payloads.len());
        let started = Instant::now();
        let mut next = 0usize;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut quiet_since: Option<Instant> = None;
        loop {
            tokio::select! {
                biased;
                event = arrivals.poll() => {
                    if let Ok(Event::Incoming(Packet::Publish(publish))) = event {
                        let now = Instant::now();
                        // `take`: a duplicate (QoS 1 redelivery) counts once.
                        if let Some(at) = sequence_number(&publish.payload).and_then(|seq| sent_at.get_mut(seq)?.take()) {
                            latencies.push(now - at);
                        }
                        quiet_since = None;
                    }
                }
                _ = tick.tick() => {
                    // Publish what the schedule says is due by now.
                    let due = ((started.elapsed().as_secs_f64() * rate) as usize + 1).min(payloads.len());
                    while next < due {
                        sent_at[next] = Some(Instant::now());
                        publisher.publish(topic, QoS::AtLeastOnce, false, payloads[next].clone()).await.expect("publish");
                        next += 1;
                    }
                    if next == payloads.len() {
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if latencies.len() == payloads.len() || since.elapsed() > Duration::from_secs(3) {
                            break;
                        }
                    }
                }
            }
        }
        driver.abort();
        latencies.sort_unstable();
        Latencies { sent: payloads.len(), sorted: latencies }
    })
}

/// The least any relay can add: an rumqttc client on its own thread that republishes each
/// message the moment it arrives (QoS 1, no-delay socket, acknowledging on arrival), doing
/// nothing else. What it adds is one more trip through the broker and the loopback sockets,
/// the floor under what weir adds (R8).
pub struct BareRelay {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BareRelay {
    /// Relay `from` (a topic filter) to the topic `to`; returns once subscribed.
    pub fn start(port: u16, from: &str, to: &str) -> BareRelay {
        let (from, to) = (from.to_owned(), to.to_owned());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, subscribed) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            runtime.block_on(async move {
                let mut options = MqttOptions::new(format!("bench-relay-{}", free_port()), "127.0.0.1", port);
                options.set_keep_alive(Duration::from_secs(30));
                options.set_network_options(no_delay());
                let (client, mut events) = AsyncClient::new(options, 10_000);
                client.subscribe(from, QoS::AtLeastOnce).await.expect("subscribe");
                // Republished with `try_publish`, keeping what does not fit: awaiting a full
                // request queue here would stop the event loop that empties it (the relay hung
                // that way once it fell 10,000 messages behind).
                let mut waiting = std::collections::VecDeque::new();
                loop {
                    while let Some(payload) = waiting.pop_front() {
                        match client.try_publish(to.as_str(), QoS::AtLeastOnce, false, payload) {
                            Ok(()) => {}
                            Err(rumqttc::v5::ClientError::TryRequest(rumqttc::v5::Request::Publish(publish))) => {
                                waiting.push_front(publish.payload);
                                break;
                            }
                            Err(err) => panic!("bare relay: republish: {err}"),
                        }
                    }
                    tokio::select! {
                        _ = &mut stopped => break,
                        event = events.poll() => match event {
                            Ok(Event::Incoming(Packet::SubAck(_))) => { let _ = ready.send(()); }
                            Ok(Event::Incoming(Packet::Publish(publish))) => waiting.push_back(publish.payload),
                            Ok(_) => {}
                            Err(err) => panic!("bare relay: {err}"),
                        },
                    }
                }
            });
        });
        subscribed.recv_timeout(Duration::from_secs(10)).expect("the bare relay subscribed");
        BareRelay { stop: Some(stop), thread: Some(thread) }
    }
}

impl Drop for BareRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
