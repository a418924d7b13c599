//! One MQTT connection, 3.1.1 or 5, behind one set of types.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{Filter, Packet as Packet5, PublishProperties};
use rumqttc::{Outgoing, Transport};
use weir_core::{Metadata, Property, QoS};

use super::config::{ConnectionConfig, Protocol};
use super::tls;

/// The client half: publish, subscribe, acknowledge.
#[derive(Clone)]
pub enum Client {
    V311(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// The event loop half: must be polled for anything to happen.
pub enum EventLoop {
    V311(Box<rumqttc::EventLoop>),
    V5(Box<rumqttc::v5::EventLoop>),
}

/// A received publish.
#[derive(Debug, Clone)]
pub enum Received {
    V311(rumqttc::Publish),
    V5(rumqttc::v5::mqttbytes::v5::Publish),
}

/// What acknowledging a received publish takes: its packet id and QoS. Kept instead of the
/// publish itself, so a message waiting in the pipeline does not also hold its topic and
/// properties a second time.
#[derive(Debug, Clone, Copy)]
pub struct AckToken {
    pkid: u16,
    qos: QoS,
}

impl AckToken {
    /// The packet id of a QoS 2 message (what the broker's resent copy and PUBREL carry).
    pub fn exactly_once(&self) -> Option<u16> {
        (self.qos == QoS::ExactlyOnce).then_some(self.pkid)
    }
}

/// What the event loop reports, the same for both protocol versions.
pub enum Event {
    Connected {
        session_present: bool,
        /// The largest packet the broker takes (MQTT 5 CONNACK), if it says.
        max_packet_size: Option<u32>,
    },
    Publish(Box<Received>),
    /// A publish left for the broker with this packet id (0 for QoS 0).
    Sent(u16),
    /// The broker acknowledged (PUBACK or PUBCOMP) this packet id.
    Acknowledged(u16),
    /// The broker released (PUBREL) the incoming QoS 2 message with this packet id.
    Released(u16),
    /// The broker answered a subscription: the filters it refused (by their place in the
    /// request) with its reason; empty when it granted all.
    Subscribed {
        refused: Vec<(usize, String)>,
    },
    Other,
}

fn qos4(qos: QoS) -> rumqttc::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(qos: QoS) -> rumqttc::v5::mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// Where a broker listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `mqtt://host:port` (1883 by default) or `mqtts://host:port` (TLS, 8883 by default).
    Tcp { host: String, port: u16, tls: bool },
    /// `mqtt+unix:///path/to/socket`: a broker on this machine through a Unix domain socket
    /// (Mosquitto: `listener 0 /path/to/socket`). No TCP stack between weir and the broker,
    /// so no Nagle or delayed-ACK stalls either (docs/benchmarks.md, R8).
    Unix(std::path::PathBuf),
}

/// The broker endpoint of an `mqtt://`, `mqtts://` or `mqtt+unix://` URL.
pub fn parse_url(url: &str) -> anyhow::Result<Endpoint> {
    if let Some(path) = url.strip_prefix("mqtt+unix://").or_else(|| url.strip_prefix("unix://")) {
        if !path.starts_with('/') {
            bail!("`{url}` needs an absolute socket path: mqtt+unix:///run/mosquitto/mosquitto.sock");
        }
        return Ok(Endpoint::Unix(path.into()));
    }
    let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtts://").or_else(|| url.strip_prefix("ssl://")) {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("tcp://")) {
        (false, rest)
    } else {
        bail!("`{url}` is not an MQTT URL: write mqtt://host:port, mqtts://host:port or mqtt+unix:///path/to/socket");
    };
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().with_context(|| format!("`{port}` in `{url}` is not a port number"))?),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        bail!("`{url}` has no host");
    }
    Ok(Endpoint::Tcp { host: host.to_owned(), port, tls })
}

/// What to check when the broker at `url` cannot be reached.
pub fn what_to_check(url: &str) -> String {
    match parse_url(url) {
        Ok(Endpoint::Unix(path)) => format!(
            "is the broker running with a Unix socket listener at {} (Mosquitto: `listener 0 {}`), and may this user open it?",
            path.display(),
            path.display()
        ),
        _ => "is the broker running and reachable?".to_owned(),
    }
}

/// Open a connection (lazily: nothing happens until the event loop is polled).
///
/// The client id is the configured one, or `default_client_id`; `role` is appended to a
/// configured id (`""` for the subscriber, `-out` for publishers …) because one broker
/// connection config serves several connections, and two connections with one id would
/// keep disconnecting each other.
pub fn connect(config: &ConnectionConfig, default_client_id: &str, role: &str, base: &Path, manual_acks: bool) -> anyhow::Result<(Client, EventLoop)> {
    let endpoint = parse_url(&config.url)?;
    let client_id = match &config.client_id {
        Some(id) => format!("{id}{role}"),
        None => default_client_id.to_owned(),
    };
    let password = match &config.password_provider {
        Some(provider) => Some((provider.make)().context("making the MQTT password")?),
        None => config.password.as_ref().map(|secret| secret.reveal(base)).transpose().context("MQTT password")?,
    };
    let (host, port, transport) = match endpoint {
        Endpoint::Unix(path) => {
            if config.tls.is_some() {
                bail!("`{}` is a Unix socket: [broker.tls] does not apply to it (remove one of them)", config.url);
            }
            (path.to_string_lossy().into_owned(), 0, Some(Transport::Unix))
        }
        Endpoint::Tcp { host, port, tls } if tls || config.tls.is_some() => {
            (host, port, Some(Transport::tls_with_config(rumqttc::TlsConfiguration::Rustls(tls::client_config(config.tls.as_ref(), base)?))))
        }
        Endpoint::Tcp { host, port, .. } => (host, port, None),
    };
    let keep_alive = Duration::from_secs(config.keep_alive_secs.max(5));
    let capacity = usize::from(config.max_inflight).max(10) * 2;
    Ok(match config.protocol {
        Protocol::V311 => {
            let mut options = rumqttc::MqttOptions::new(client_id, host, port);
            options
                .set_keep_alive(keep_alive)
                .set_clean_session(config.clean_session)
                .set_manual_acks(manual_acks)
                .set_inflight(config.max_inflight.max(1))
                // A larger PUBLISH is not refused (the broker would send it again on every
                // new connection): its payload is dropped as it arrives (WEIR-PATCH.md,
                // change 6) and the pipeline dead-letters it.
                .set_max_packet_size(config.max_incoming_bytes.unwrap_or(256 << 20), 256 << 20)
                .set_request_channel_capacity(capacity);
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            if let Some(user) = &config.username {
                options.set_credentials(user.clone(), password.unwrap_or_default());
            }
            let (client, mut eventloop) = rumqttc::AsyncClient::new(options, capacity);
            eventloop.set_network_options(network_options());
            (Client::V311(client), EventLoop::V311(Box::new(eventloop)))
        }
        Protocol::V5 => {
            let mut options = rumqttc::v5::MqttOptions::new(client_id, host, port);
            options
                .set_keep_alive(keep_alive)
                .set_clean_start(config.clean_session)
                .set_manual_acks(manual_acks)
                .set_receive_maximum(Some(config.max_inflight.max(1)))
                // rumqttc sizes its table of unacknowledged publishes by this limit; without
                // it the table has 65,536 slots (14 MB, every byte touched) per connection.
                .set_outgoing_inflight_upper_limit(config.max_inflight.max(1))
                .set_max_packet_size(Some(config.max_incoming_bytes.map_or(256 << 20, |bytes| u32::try_from(bytes).unwrap_or(u32::MAX))))
                .set_request_channel_capacity(capacity);
            if !config.clean_session {
                options.set_session_expiry_interval(Some(config.session_expiry_secs));
            }
            options.set_network_options(network_options());
            if let Some(transport) = transport {
                options.set_transport(transport);
            }
            if let Some(user) = &config.username {
                options.set_credentials(user.clone(), password.unwrap_or_default());
            }
            let (client, eventloop) = rumqttc::v5::AsyncClient::new(options, capacity);
            (Client::V5(client), EventLoop::V5(Box::new(eventloop)))
        }
    })
}

/// TCP_NODELAY: a publisher that waits for its acknowledgements before the next batch
/// would otherwise wait for Nagle's algorithm and the peer's delayed ACK (tens of ms).
/// Quick acknowledgements (the vendored rumqttc's addition,
/// connectors/vendor/rumqttc/WEIR-PATCH.md): the same the other way round, a broker that
/// uses Nagle (Mosquitto's default) holding its PUBACKs and forwarded publishes until this
/// machine's delayed ACK, 40 ms, while weir has nothing to send back on that connection.
fn network_options() -> rumqttc::NetworkOptions {
    let mut network = rumqttc::NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_tcp_quickack(true);
    network
}

impl EventLoop {
    /// Credentials for the next connect (a renewed token).
    pub fn set_credentials(&mut self, user: &str, password: String) {
        match self {
            EventLoop::V311(eventloop) => {
                eventloop.mqtt_options.set_credentials(user, password);
            }
            EventLoop::V5(eventloop) => {
                eventloop.options.set_credentials(user, password);
            }
        }
    }

    /// The next event; `Err` is a connection error (the next poll reconnects). Try
    /// [`EventLoop::buffered`] first on a hot path.
    pub async fn poll(&mut self) -> Result<Event, String> {
        match self {
            EventLoop::V311(eventloop) => eventloop.poll().await.map(Event::from).map_err(|err| err.to_string()),
            EventLoop::V5(eventloop) => eventloop.poll().await.map(Event::from).map_err(|err| err.to_string()),
        }
    }

    /// An event already read from the network, if any: what [`EventLoop::poll`] would return
    /// next, without building its future. rumqttc's is 2.7 KB, moved into place on every call,
    /// and one network read often holds many packets.
    pub fn buffered(&mut self) -> Option<Event> {
        match self {
            // 3.1.1's poll answers a reconnect with its CONNACK before what is buffered.
            EventLoop::V311(eventloop) if eventloop.network.is_some() => eventloop.state.events.pop_front().map(Event::from),
            EventLoop::V311(_) => None,
            EventLoop::V5(eventloop) => eventloop.state.events.pop_front().map(Event::from),
        }
    }
}

/// The places and reasons of the refused filters of a SUBACK.
fn refused(codes: impl Iterator<Item = Option<String>>) -> Vec<(usize, String)> {
    codes.enumerate().filter_map(|(at, refused)| refused.map(|reason| (at, reason))).collect()
}

impl From<rumqttc::Event> for Event {
    fn from(event: rumqttc::Event) -> Self {
        match event {
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) => Event::Connected { session_present: ack.session_present, max_packet_size: None },
            rumqttc::Event::Incoming(rumqttc::Packet::Publish(publish)) => Event::Publish(Box::new(Received::V311(publish))),
            rumqttc::Event::Incoming(rumqttc::Packet::PubAck(ack)) => Event::Acknowledged(ack.pkid),
            rumqttc::Event::Incoming(rumqttc::Packet::PubComp(ack)) => Event::Acknowledged(ack.pkid),
            rumqttc::Event::Incoming(rumqttc::Packet::PubRel(rel)) => Event::Released(rel.pkid),
            rumqttc::Event::Outgoing(Outgoing::Publish(pkid)) => Event::Sent(pkid),
            rumqttc::Event::Incoming(rumqttc::Packet::SubAck(ack)) => Event::Subscribed {
                refused: refused(ack.return_codes.iter().map(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure).then(|| format!("{code:?}")))),
            },
            _ => Event::Other,
        }
    }
}

impl From<rumqttc::v5::Event> for Event {
    fn from(event: rumqttc::v5::Event) -> Self {
        match event {
            rumqttc::v5::Event::Incoming(Packet5::ConnAck(ack)) => {
                Event::Connected { session_present: ack.session_present, max_packet_size: ack.properties.as_ref().and_then(|p| p.max_packet_size) }
            }
            rumqttc::v5::Event::Incoming(Packet5::Publish(publish)) => Event::Publish(Box::new(Received::V5(publish))),
            rumqttc::v5::Event::Incoming(Packet5::PubAck(ack)) => Event::Acknowledged(ack.pkid),
            rumqttc::v5::Event::Incoming(Packet5::PubComp(ack)) => Event::Acknowledged(ack.pkid),
            rumqttc::v5::Event::Incoming(Packet5::PubRel(rel)) => Event::Released(rel.pkid),
            rumqttc::v5::Event::Outgoing(Outgoing::Publish(pkid)) => Event::Sent(pkid),
            rumqttc::v5::Event::Incoming(Packet5::SubAck(ack)) => Event::Subscribed {
                refused: refused(
                    ack.return_codes
                        .iter()
                        .map(|code| (!matches!(code, rumqttc::v5::mqttbytes::v5::SubscribeReasonCode::Success(_))).then(|| format!("{code:?}"))),
                ),
            },
            _ => Event::Other,
        }
    }
}

impl Client {
    pub async fn subscribe(&self, topics: &[String], qos: QoS) -> anyhow::Result<()> {
        if topics.is_empty() {
            return Ok(());
        }
        match self {
            Client::V311(client) => client.subscribe_many(topics.iter().map(|t| rumqttc::SubscribeFilter::new(t.clone(), qos4(qos)))).await?,
            Client::V5(client) => client.subscribe_many(topics.iter().map(|t| Filter::new(t.clone(), qos5(qos)))).await?,
        }
        Ok(())
    }

    /// Acknowledge a publish received on this connection (PUBACK or PUBREC by its QoS).
    /// Like every request here, tried first without waiting (no send future to build) and
    /// awaited only when the event loop's request channel is full (or gone: the awaited
    /// send then reports it).
    pub async fn ack(&self, token: AckToken) -> anyhow::Result<()> {
        // rumqttc builds the acknowledgement from the publish's QoS and packet id alone.
        match self {
            Client::V311(client) => {
                let mut publish = rumqttc::Publish::new("", qos4(token.qos), Vec::new());
                publish.pkid = token.pkid;
                if client.try_ack(&publish).is_err() {
                    client.ack(&publish).await?
                }
            }
            Client::V5(client) => {
                let mut publish = rumqttc::v5::mqttbytes::v5::Publish::new("", qos5(token.qos), Bytes::new(), None);
                publish.pkid = token.pkid;
                if client.try_ack(&publish).is_err() {
                    client.ack(&publish).await?
                }
            }
        }
        Ok(())
    }

    /// Queue a publish of `payload` to `topic` with the message's metadata (MQTT 5 properties;
    /// 3.1.1 has nowhere to put them). MQTT 5 tries without waiting first, as [`Client::ack`]
    /// does (3.1.1's `try_publish` would copy the payload).
    pub async fn publish(&self, topic: &str, payload: Bytes, meta: &Metadata, qos: QoS, retain: bool) -> anyhow::Result<()> {
        match self {
            Client::V311(client) => client.publish_bytes(topic, qos4(qos), retain, payload).await?,
            Client::V5(client) => {
                let tried = match publish_properties(meta) {
                    Some(properties) => client.try_publish_with_properties(topic, qos5(qos), retain, payload, properties),
                    None => client.try_publish(topic, qos5(qos), retain, payload),
                };
                match tried {
                    Ok(()) => {}
                    // Not queued: sent again, awaited, from the same parts.
                    Err(rumqttc::v5::ClientError::TryRequest(rumqttc::v5::Request::Publish(publish))) => match publish.properties {
                        Some(properties) => client.publish_with_properties(topic, qos5(qos), retain, publish.payload, *properties).await?,
                        None => client.publish(topic, qos5(qos), retain, publish.payload).await?,
                    },
                    Err(err) => return Err(err.into()),
                }
            }
        }
        Ok(())
    }

    /// Whether this connection speaks MQTT 5 (which carries a message's properties).
    pub fn is_v5(&self) -> bool {
        matches!(self, Client::V5(_))
    }

    pub async fn disconnect(&self) {
        let _ = match self {
            Client::V311(client) => client.disconnect().await.map_err(drop),
            Client::V5(client) => client.disconnect().await.map_err(drop),
        };
    }
}

/// The MQTT 5 properties a message's metadata asks for; `None` when it asks for none (the
/// usual case: nothing to encode, clone for a retransmission, or drop).
fn publish_properties(meta: &Metadata) -> Option<PublishProperties> {
    let none = meta.expiry_secs.is_none()
        && meta.response_topic.is_none()
        && meta.correlation_data.is_none()
        && meta.properties.is_empty()
        && meta.content_type.is_none();
    (!none).then(|| PublishProperties {
        payload_format_indicator: None,
        message_expiry_interval: meta.expiry_secs,
        topic_alias: None,
        response_topic: meta.response_topic.clone(),
        correlation_data: meta.correlation_data.clone(),
        user_properties: meta.properties.iter().map(|p| (p.name.clone(), p.value.clone())).collect(),
        subscription_identifiers: Vec::new(),
        content_type: meta.content_type.clone(),
    })
}

impl Received {
    pub fn ack_token(&self) -> AckToken {
        let pkid = match self {
            Received::V311(p) => p.pkid,
            Received::V5(p) => p.pkid,
        };
        AckToken { pkid, qos: self.qos() }
    }

    /// The payload's size in bytes.
    pub fn payload_len(&self) -> usize {
        match self {
            Received::V311(p) => p.payload.len(),
            Received::V5(p) => p.payload.len(),
        }
    }

    pub fn qos(&self) -> QoS {
        let level = match self {
            Received::V311(p) => p.qos as u8,
            Received::V5(p) => p.qos as u8,
        };
        QoS::try_from(level).unwrap_or(QoS::AtLeastOnce)
    }

    /// Payload and metadata for the pipeline (the payload buffer is shared, not copied).
    pub fn to_parts(&self, source: std::sync::Arc<str>) -> (Bytes, Metadata) {
        match self {
            Received::V311(publish) => {
                let mut meta = Metadata::new(source, publish.topic.clone());
                meta.qos = self.qos();
                meta.retain = publish.retain;
                if publish.dropped_payload > 0 {
                    // Over the largest packet weir reads (WEIR-PATCH.md, change 6).
                    meta.properties.push(Property::new(weir_core::message::DROPPED_PAYLOAD, publish.dropped_payload.to_string()));
                }
                (publish.payload.clone(), meta)
            }
            Received::V5(publish) => {
                let mut meta = Metadata::new(source, String::from_utf8_lossy(&publish.topic).into_owned());
                meta.qos = self.qos();
                meta.retain = publish.retain;
                if let Some(props) = &publish.properties {
                    meta.properties = props.user_properties.iter().map(|(k, v)| Property::new(k.clone(), v.clone())).collect();
                    meta.content_type = props.content_type.clone();
                    meta.correlation_data = props.correlation_data.clone();
                    meta.response_topic = props.response_topic.clone();
                    meta.expiry_secs = props.message_expiry_interval;
                }
                (publish.payload.clone(), meta)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let tcp = |host: &str, port, tls| Endpoint::Tcp { host: host.into(), port, tls };
        assert_eq!(parse_url("mqtt://127.0.0.1:1884").unwrap(), tcp("127.0.0.1", 1884, false));
        assert_eq!(parse_url("mqtts://broker.example").unwrap(), tcp("broker.example", 8883, true));
        assert_eq!(parse_url("mqtt+unix:///run/mosquitto/m.sock").unwrap(), Endpoint::Unix("/run/mosquitto/m.sock".into()));
        assert!(parse_url("mqtt+unix://relative.sock").unwrap_err().to_string().contains("absolute socket path"));
        assert!(parse_url("http://x").unwrap_err().to_string().contains("not an MQTT URL"));
    }

    #[test]
    fn what_to_check_names_the_socket_listener() {
        assert!(what_to_check("mqtt+unix:///run/m.sock").contains("`listener 0 /run/m.sock`"));
        assert_eq!(what_to_check("mqtt://127.0.0.1:1883"), "is the broker running and reachable?");
    }

    /// The vendored rumqttc boxes large, rare packet parts (WEIR-PATCH.md, change 4) so that the
    /// values moved per message stay within what the compiler copies inline (8 stores of 16
    /// bytes) instead of calling `memcpy`: 392 bytes before, a quarter of weir's instructions.
    #[test]
    fn mqtt5_packets_move_without_memcpy() {
        use std::mem::size_of;
        for (name, size) in [
            ("Event", size_of::<rumqttc::v5::Event>()),
            ("Request", size_of::<rumqttc::v5::Request>()),
            ("Publish", size_of::<rumqttc::v5::mqttbytes::v5::Publish>()),
        ] {
            assert!(size <= 128, "rumqttc's MQTT 5 {name} is {size} bytes; box what made it grow (WEIR-PATCH.md, change 4)");
        }
    }
}
