//! An independent MQTT client (rumqttc, MQTT 5 or 3.1.1) to drive and observe weir from
//! outside: a subscriber that collects what arrives, and publishers that wait for the broker.

use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, Publish, PublishProperties};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use tokio::sync::mpsc;

use super::free_port;

/// What a test client's event loop saw.
#[allow(clippy::large_enum_variant)] // one per event, moved straight into a channel
enum Seen {
    Publish(Publish),
    Subscribed,
    Other,
    Error,
}

/// An MQTT 5 or 3.1.1 event loop, seen the same way.
trait TestEventLoop: Send + 'static {
    fn next(&mut self) -> impl std::future::Future<Output = Seen> + Send;
}

impl TestEventLoop for rumqttc::v5::EventLoop {
    async fn next(&mut self) -> Seen {
        match self.poll().await {
            Ok(Event::Incoming(Packet::Publish(publish))) => Seen::Publish(publish),
            Ok(Event::Incoming(Packet::SubAck(_))) => Seen::Subscribed,
            Ok(_) => Seen::Other,
            Err(_) => Seen::Error,
        }
    }
}

impl TestEventLoop for rumqttc::EventLoop {
    async fn next(&mut self) -> Seen {
        match self.poll().await {
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => Seen::Publish(Publish::new(p.topic, QoS::AtLeastOnce, p.payload, None)),
            Ok(rumqttc::Event::Incoming(rumqttc::Packet::SubAck(_))) => Seen::Subscribed,
            Ok(_) => Seen::Other,
            Err(_) => Seen::Error,
        }
    }
}

/// Drive a client's event loop, forwarding publishes and signalling once `wanted`
/// subscriptions are acknowledged.
fn collect(
    wanted: usize,
    subscribed: mpsc::Sender<()>,
    publishes: mpsc::UnboundedSender<Publish>,
    mut eventloop: impl TestEventLoop,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        let mut acks = 0;
        loop {
            match eventloop.next().await {
                Seen::Publish(publish) => {
                    let _ = publishes.send(publish);
                }
                Seen::Subscribed => {
                    acks += 1;
                    if acks == wanted {
                        let _ = subscribed.send(()).await;
                    }
                }
                Seen::Other => {}
                Seen::Error => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .abort_handle()
}

/// The topics of these messages, sorted.
pub fn sorted_topics(messages: &[Publish]) -> Vec<String> {
    let mut topics: Vec<String> = messages.iter().map(|p| String::from_utf8_lossy(&p.topic).into_owned()).collect();
    topics.sort();
    topics
}

/// An MQTT 5 client subscribed to topics, collecting what arrives.
pub struct Subscriber {
    rx: mpsc::UnboundedReceiver<Publish>,
    /// Keeps the connection open (an MQTT 5 or 3.1.1 client).
    _client: Box<dyn std::any::Any + Send>,
    /// The task driving the connection: stopped on drop, so a dropped subscriber does not
    /// reconnect behind the test's back and take over its session.
    connection: tokio::task::AbortHandle,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Subscriber {
    pub async fn connect(port: u16, topics: &[&str]) -> Subscriber {
        Self::connect_as(port, topics, None).await
    }

    /// Subscribe with a user name and password.
    pub async fn connect_with_credentials(port: u16, topics: &[&str], user: &str, password: &str) -> Subscriber {
        Self::connect_as(port, topics, Some((user, password))).await
    }

    /// Subscribe with a persistent session under `client_id`: after a broker restart (with
    /// persistence) or a reconnect, what was queued for it arrives.
    pub async fn connect_persistent(port: u16, topics: &[&str], client_id: &str) -> Subscriber {
        Self::connect_with(port, topics, None, Some(client_id)).await
    }

    async fn connect_as(port: u16, topics: &[&str], credentials: Option<(&str, &str)>) -> Subscriber {
        Self::connect_with(port, topics, credentials, None).await
    }

    async fn connect_with(port: u16, topics: &[&str], credentials: Option<(&str, &str)>, persistent_id: Option<&str>) -> Subscriber {
        let id = persistent_id.map(str::to_owned).unwrap_or_else(|| format!("test-sub-{}", free_port()));
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_max_packet_size(Some(16 << 20));
        if persistent_id.is_some() {
            options.set_clean_start(false);
            options.set_session_expiry_interval(Some(3600));
        }
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, eventloop) = AsyncClient::new(options, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::channel(1);
        for topic in topics {
            client.subscribe(*topic, QoS::AtLeastOnce).await.unwrap();
        }
        let connection = collect(topics.len(), subscribed_tx, tx, eventloop);
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx.recv()).await.expect("subscription not acknowledged");
        Subscriber { rx, _client: Box::new(client), connection }
    }

    /// The same over MQTT 3.1.1 (the embedded broker's protocol); messages arrive in the
    /// MQTT 5 type with no properties.
    pub async fn connect_v311(port: u16, topics: &[&str]) -> Subscriber {
        let mut options = rumqttc::MqttOptions::new(format!("test-sub-{}", free_port()), "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(10));
        let (client, eventloop) = rumqttc::AsyncClient::new(options, 100);
        let (tx, rx) = mpsc::unbounded_channel();
        let (subscribed_tx, mut subscribed_rx) = mpsc::channel(1);
        for topic in topics {
            client.subscribe(*topic, rumqttc::QoS::AtLeastOnce).await.unwrap();
        }
        let connection = collect(topics.len(), subscribed_tx, tx, eventloop);
        tokio::time::timeout(Duration::from_secs(10), subscribed_rx.recv()).await.expect("subscription not acknowledged");
        Subscriber { rx, _client: Box::new(client), connection }
    }

    /// The next message (`None` if the connection task ended).
    pub async fn next(&mut self) -> Option<Publish> {
        self.rx.recv().await
    }

    /// The next `n` messages, or fail after `timeout` saying how many came.
    pub async fn take(&mut self, n: usize, timeout: Duration) -> Vec<Publish> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < n {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(publish)) => out.push(publish),
                _ => panic!("expected {n} messages, got {} within {timeout:?}: {out:?}", out.len()),
            }
        }
        out
    }

    /// Assert nothing more arrives within `wait`.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        if let Ok(Some(extra)) = tokio::time::timeout(wait, self.rx.recv()).await {
            panic!("unexpected message: {extra:?}");
        }
    }
}

/// Publish messages with MQTT 5 properties at QoS 1 and wait until the broker has them.
pub async fn publish_v5(port: u16, messages: Vec<(String, Vec<u8>, PublishProperties)>) {
    publish_v5_as(port, messages, None, QoS::AtLeastOnce).await
}

/// [`publish_v5`] at another QoS: waits for PUBCOMP at QoS 2, for the packets to leave at QoS 0.
pub async fn publish_v5_qos(port: u16, messages: Vec<(String, Vec<u8>, PublishProperties)>, qos: QoS) {
    publish_v5_as(port, messages, None, qos).await
}

/// [`publish_v5`] with a user name and password.
pub async fn publish_v5_with_credentials(port: u16, messages: Vec<(String, Vec<u8>, PublishProperties)>, user: &str, password: &str) {
    publish_v5_as(port, messages, Some((user, password)), QoS::AtLeastOnce).await
}

async fn publish_v5_as(port: u16, messages: Vec<(String, Vec<u8>, PublishProperties)>, credentials: Option<(&str, &str)>, qos: QoS) {
    let mut options = MqttOptions::new(format!("test-pub-{}", free_port()), "127.0.0.1", port);
    if let Some((user, password)) = credentials {
        options.set_credentials(user, password);
    }
    let (client, mut eventloop) = AsyncClient::new(options, 1000);
    let total = messages.len();
    let driver = tokio::spawn(async move {
        let mut acked = 0;
        while acked < total {
            match (eventloop.poll().await, qos) {
                (Ok(Event::Incoming(Packet::PubAck(_))), QoS::AtLeastOnce) => acked += 1,
                (Ok(Event::Incoming(Packet::PubComp(_))), QoS::ExactlyOnce) => acked += 1,
                (Ok(Event::Outgoing(rumqttc::Outgoing::Publish(_))), QoS::AtMostOnce) => acked += 1,
                (Ok(_), _) => {}
                (Err(err), _) => panic!("publisher: {err}"),
            }
        }
    });
    for (topic, payload, properties) in messages {
        client.publish_with_properties(topic, qos, false, payload, properties).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), driver).await.expect("broker did not acknowledge the publishes").unwrap();
    // Give QoS 0 packets time to leave the socket before the client is dropped.
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// User properties of a received publish.
pub fn user_properties(publish: &Publish) -> Vec<(String, String)> {
    publish.properties.as_ref().map(|p| p.user_properties.clone()).unwrap_or_default()
}
