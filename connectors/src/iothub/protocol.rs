//! IoT Hub's MQTT conventions: connection strings, SAS tokens, user names, topics and
//! property bags.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::Sha256;
use weir_core::Message;

use crate::azure::connection_string_field;

/// What `encodeURIComponent` leaves alone: letters, digits and `-_.!~*'()`.
const COMPONENT: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'!').remove(b'~').remove(b'*').remove(b'\'').remove(b'(').remove(b')');

/// The API version IoT Hub's MQTT user name names.
pub const API_VERSION: &str = "2021-04-12";

/// A device connection string's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceConnection {
    pub host: String,
    pub device: String,
    /// Base64 device key.
    pub key: String,
}

impl DeviceConnection {
    /// Parse `HostName=…;DeviceId=…;SharedAccessKey=…` (other fields are ignored).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let field = |name: &str| {
            connection_string_field(text, name)
                .ok_or_else(|| anyhow::anyhow!("the IoT Hub connection string has no {name}= (expected HostName=…;DeviceId=…;SharedAccessKey=…)"))
        };
        Ok(DeviceConnection { host: field("HostName")?, device: field("DeviceId")?, key: field("SharedAccessKey")? })
    }

    /// `{hub}.azure-devices.net/{device}/?api-version=…`.
    pub fn username(&self) -> String {
        format!("{}/{}/?api-version={API_VERSION}", self.host, self.device)
    }

    /// A SAS token for this device valid until `expiry` (Unix seconds).
    pub fn token(&self, expiry: u64) -> anyhow::Result<String> {
        sas_token(&format!("{}/devices/{}", self.host, self.device), &self.key, expiry)
    }
}

/// `SharedAccessSignature sr={uri}&sig={sig}&se={expiry}`, where `sig` is the base64
/// HMAC-SHA256, keyed with the base64-decoded key, of the URL-encoded resource URI, a newline
/// and the expiry.
pub fn sas_token(resource_uri: &str, key_base64: &str, expiry: u64) -> anyhow::Result<String> {
    let key = base64::engine::general_purpose::STANDARD.decode(key_base64.trim()).map_err(|err| anyhow::anyhow!("SharedAccessKey is not base64: {err}"))?;
    let resource = encode(resource_uri);
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|err| anyhow::anyhow!("SharedAccessKey: {err}"))?;
    mac.update(format!("{resource}\n{expiry}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Ok(format!("SharedAccessSignature sr={resource}&sig={}&se={expiry}", encode(&signature)))
}

/// The URL-encoded property bag of a message: its properties, then `$.ct` and `$.ce`
/// (content type: the message's, else `application/json` for a JSON body).
pub fn property_bag(message: &Message) -> String {
    let meta = message.meta();
    let mut pairs: Vec<String> = meta.properties.iter().map(|p| format!("{}={}", encode(&p.name), encode(&p.value))).collect();
    let content_type = meta.content_type.clone().or_else(|| message.json_body().map(|_| "application/json".to_owned()));
    if let Some(content_type) = content_type {
        pairs.push(format!("$.ct={}", encode(&content_type)));
        if std::str::from_utf8(&message.payload).is_ok() {
            pairs.push("$.ce=utf-8".to_owned());
        }
    }
    pairs.join("&")
}

/// `devices/{device}/messages/events/{property bag}`.
pub fn telemetry_topic(device: &str, message: &Message) -> String {
    format!("devices/{device}/messages/events/{}", property_bag(message))
}

/// `devices/{device}/messages/devicebound/#`: where IoT Hub sends cloud-to-device messages.
pub fn c2d_filter(device: &str) -> String {
    format!("devices/{device}/messages/devicebound/#")
}

/// A cloud-to-device topic's property bag, decoded: `(name, value)` in order. System
/// properties keep their names (`$.mid` message id, `$.cid` correlation id, `$.to`, `$.ct`,
/// `$.ce` …).
pub fn parse_property_bag(topic: &str) -> Vec<(String, String)> {
    let Some((_, bag)) = topic.split_once("/messages/devicebound/") else { return Vec::new() };
    bag.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned()
}

fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_core::{Ack, Metadata, Property};

    #[test]
    fn parses_a_device_connection_string() {
        let parsed = DeviceConnection::parse("HostName=hub1.azure-devices.net;DeviceId=press-7;SharedAccessKey=c2VjcmV0").expect("parses");
        assert_eq!(parsed.username(), "hub1.azure-devices.net/press-7/?api-version=2021-04-12");
        assert!(DeviceConnection::parse("HostName=x;DeviceId=y").unwrap_err().to_string().contains("SharedAccessKey"));
    }

    #[test]
    fn cloud_to_device_property_bags_decode() {
        let topic =
            "devices/press-7/messages/devicebound/%24.mid=7f3a&%24.to=%2Fdevices%2Fpress-7%2Fmessages%2FdeviceBound&%24.ct=application%2Fjson&mode=stop%20now";
        assert_eq!(
            parse_property_bag(topic),
            [("$.mid", "7f3a"), ("$.to", "/devices/press-7/messages/deviceBound"), ("$.ct", "application/json"), ("mode", "stop now")]
                .map(|(n, v)| (n.to_owned(), v.to_owned()))
        );
        assert!(parse_property_bag("devices/press-7/messages/devicebound/").is_empty());
    }

    #[test]
    fn property_bag_encodes_properties_and_content_type() {
        let mut meta = Metadata::new("s".into(), "t");
        meta.properties = vec![Property::new("unit", "°C"), Property::new("line", "a&b=c")];
        let message = Message::new(&b"{\"t\":1}"[..], meta, Ack::none());
        assert_eq!(property_bag(&message), "unit=%C2%B0C&line=a%26b%3Dc&$.ct=application%2Fjson&$.ce=utf-8");
        assert_eq!(telemetry_topic("d1", &message), "devices/d1/messages/events/unit=%C2%B0C&line=a%26b%3Dc&$.ct=application%2Fjson&$.ce=utf-8");
    }
}
