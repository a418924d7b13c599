//! Azure connection strings (`Key=value;Key=value;…`), as IoT Hub and Event Hubs give them.

/// The value of `name` (case-insensitive) in a connection string.
pub fn connection_string_field(text: &str, name: &str) -> Option<String> {
    text.split(';').filter_map(|part| part.trim().split_once('=')).find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_may_contain_equals_signs() {
        let text = "HostName=h.azure-devices.net;DeviceId=d;SharedAccessKey=abc==";
        assert_eq!(super::connection_string_field(text, "sharedaccesskey").as_deref(), Some("abc=="));
        assert_eq!(super::connection_string_field(text, "EntityPath"), None);
    }
}
