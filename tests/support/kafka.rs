//! tansu, a Kafka-compatible broker, on a free loopback port, and an independent Kafka
//! client (rdkafka) to create topics and read records back.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as _};

use super::{free_port, tools_dir, wait_for_port};

/// tansu, a Kafka-compatible broker, on a free loopback port with in-memory storage.
pub struct Tansu {
    pub port: u16,
    child: Child,
}

impl Tansu {
    pub fn start() -> Tansu {
        let bin = tools_dir().join("tansu/bin/tansu");
        assert!(
            bin.is_file(),
            "{} is missing: install it with scripts/test.sh (cargo install tansu --features dynostore --root $WEIR_TOOLS/tansu, ~18 min once)",
            bin.display()
        );
        let port = free_port();
        let listener = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &listener, "--advertised-listener-url", &listener, "--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", bin.display()));
        wait_for_port(port, "tansu");
        Tansu { port, child }
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A record as read back: key, payload and headers as text.
pub type KafkaRecord = (String, String, BTreeMap<String, String>);

impl Tansu {
    /// Create a topic with one partition.
    pub async fn create_topic(&self, topic: &str) {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new().set("bootstrap.servers", self.bootstrap()).create().unwrap();
        let results = admin.create_topics(&[NewTopic::new(topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new()).await.unwrap();
        for result in results {
            result.unwrap();
        }
    }

    /// The first `n` records of `topic`, or fail after 60 s saying how many came.
    pub async fn read(&self, topic: &str, n: usize) -> Vec<KafkaRecord> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("group.id", format!("weir-test-reader-{topic}"))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let mut records = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while records.len() < n {
            let message = tokio::time::timeout_at(deadline, consumer.recv())
                .await
                .unwrap_or_else(|_| panic!("{} of {n} records read from {topic}", records.len()))
                .unwrap();
            let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            let headers = message.headers().map(|headers| headers.iter().map(|h| (h.key.to_owned(), text(h.value))).collect()).unwrap_or_default();
            records.push((text(message.key()), text(message.payload()), headers));
        }
        records
    }
}
