use bytes::Bytes;
use weir_core::{Ack, Message, Metadata, ModuleOutput, Property};

use super::*;

fn message(topic: &str, body: &str, properties: &[(&str, &str)]) -> Message {
    let mut meta = Metadata::new("local".into(), topic);
    meta.properties = properties.iter().map(|(k, v)| Property::new(*k, *v)).collect();
    Message::new(Bytes::copy_from_slice(body.as_bytes()), meta, Ack::none())
}

fn from_module(module: &str, output: &str) -> Message {
    let mut msg = message("t", "{}", &[]);
    msg.meta_mut().origin = Some(ModuleOutput { module: module.into(), output: output.into() });
    msg
}

#[test]
fn iot_edge_route_forms_parse() {
    // From the Azure IoT Edge documentation, "Declare routes" (module-composition).
    let route = parse("FROM /messages/* INTO $upstream").unwrap();
    assert_eq!((route.source, route.sink), (RouteSource::All, RouteSink::Upstream));
    let route = parse(r#"FROM /messages/modules/tempSensor/outputs/temperatureOutput INTO BrokeredEndpoint("/modules/filtermodule/inputs/input1")"#).unwrap();
    assert_eq!(route.source, RouteSource::Module { id: "tempSensor".into(), output: Some("temperatureOutput".into()) });
    assert_eq!(route.sink, RouteSink::Module { id: "filtermodule".into(), input: "input1".into() });
    let route = parse("SELECT * FROM /messages/modules/filtermodule/outputs/* WHERE $body.machine.temperature > 25 INTO $upstream").unwrap();
    assert!(route.condition.is_some());
    let route = parse("from /messages/modules/m/* where NOT is_defined($connectionModuleId) into $upstream").unwrap();
    assert_eq!(route.source, RouteSource::Module { id: "m".into(), output: None });
}

#[test]
fn sources_match_as_documented() {
    let module = from_module("m", "alerts");
    assert!(parse("FROM /messages/modules/m/outputs/alerts INTO $upstream").unwrap().accepts(&module));
    assert!(!parse("FROM /messages/modules/m/outputs/other INTO $upstream").unwrap().accepts(&module));
    assert!(parse("FROM /messages/modules/* INTO $upstream").unwrap().accepts(&module));
    assert!(!parse("FROM /topics/# INTO $upstream").unwrap().accepts(&module), "module outputs are not broker topics");
    let topic = message("factory/m1/telemetry", "{}", &[]);
    assert!(parse("FROM /topics/factory/+/telemetry INTO $upstream").unwrap().accepts(&topic));
    assert!(!parse("FROM /topics/factory/+ INTO $upstream").unwrap().accepts(&topic));
    assert!(parse("FROM /* INTO $upstream").unwrap().accepts(&topic));
}

#[test]
fn conditions_follow_iot_hub_semantics() {
    let msg = message("factory/m1/telemetry", r#"{"temperature": 71, "machine": "m1", "tags": ["a", "b"]}"#, &[("alert", "true")]);
    let yes = |cond: &str| parse(&format!("FROM /* WHERE {cond} INTO $upstream")).unwrap().accepts(&msg);
    assert!(yes("$body.temperature > 50 AND $body.machine = 'm1'"));
    assert!(yes("alert = 'true'"));
    assert!(yes("$body.tags[1] = \"b\""));
    assert!(yes("$topic[1] = 'm1' OR $body.missing > 1"));
    assert!(!yes("$body.missing > 1"), "undefined does not match");
    assert!(!yes("NOT ($body.missing > 1)"), "NOT undefined is undefined");
    assert!(yes("NOT is_defined($body.missing)"));
    assert!(yes("$body.temperature * 2 - 2 = 140"));
    assert!(yes("upper($body.machine) || '-x' = 'M1-x'"));
    assert!(yes("($body.missing ?? 5) = 5"));
    assert!(yes("length($body.tags) = 2 AND starts_with($topic, 'factory/')"));
    assert!(!yes("$body.temperature = '71'"), "no conversion between types");
}

#[test]
fn errors_point_at_the_column() {
    let err = parse("FROM /messages/* WHERE $body.t >> 5 INTO $upstream").unwrap_err();
    assert_eq!(err.column, 32, "{}", err.render("FROM /messages/* WHERE $body.t >> 5 INTO $upstream"));
    let err = parse("FROM /message/* INTO $upstream").unwrap_err();
    assert_eq!(err.column, 5);
    let err = parse("FROM /* INTO $nowhere").unwrap_err();
    assert_eq!(err.column, 13);
    assert!(err.message.contains("unknown sink"));
    let err = parse("FROM /* WHERE frob(1) INTO $upstream").unwrap_err();
    assert!(err.message.contains("unknown function `frob`"));
    let err = parse("FROM /* INTO BrokeredEndpoint(\"/modules/x/outputs/y\")").unwrap_err();
    assert!(err.message.contains("is not /modules/{id}/inputs/{input}"), "{}", err.message);
    assert_eq!(parse("FROM /*").unwrap_err().message, "expected `INTO <sink>` at the end of the route");
}

#[test]
fn topic_templates_render_or_explain() {
    let route = parse("FROM /* INTO /topics/alerts/{$body.machine}/{$topic[2]}").unwrap();
    let RouteSink::Topic(template) = route.sink else { panic!("not a topic sink") };
    let msg = message("factory/m1/telemetry", r#"{"machine": "press-4"}"#, &[]);
    assert_eq!(template.render(&msg).unwrap(), "alerts/press-4/telemetry");
    let err = template.render(&message("x", "not json", &[])).unwrap_err();
    assert!(err.contains("undefined"), "{err}");
}

#[test]
fn multi_byte_characters_where_keywords_would_be_are_errors_not_panics() {
    // Found by the fuzz target (runtime/fuzz): byte slicing inside a multi-byte character.
    assert!(parse("FROM\u{e9} /topics/a INTO $upstream").is_err());
    assert!(parse("FROM\u{a0}/topics/a INTO $upstream").is_ok(), "a no-break space is white space");
    assert!(parse("SELEC\u{e9} * FROM /* INTO $upstream").is_err());
    assert!(parse("FROM /* INTO BrokeredEndpoin\u{e9}(\"/modules/x/inputs/y\")").is_err());
    assert!(parse("FROM /* WHERE $body.\u{e9}t\u{e9} = '\u{e9}' INTO /topics/\u{e9}/{$body.a}").is_ok());
}

#[test]
fn filters_cover_what_they_match() {
    let covers = |a: &str, b: &str| TopicFilter::new(a).covers(&TopicFilter::new(b));
    assert!(covers("factory/#", "factory/+/telemetry"));
    assert!(covers("factory/#", "factory"), "`#` also matches the parent level");
    assert!(covers("factory/+/telemetry", "factory/m1/telemetry"));
    assert!(covers("+/+/telemetry", "factory/+/telemetry"));
    assert!(!covers("factory/+/telemetry", "factory/#"));
    assert!(!covers("factory/+", "factory/m1/telemetry"));
    assert!(!covers("#", "$SYS/broker/load"), "wildcards at the first level skip $ topics");
    let filters = ["factory/#", "factory/+/telemetry", "factory/+/alarm", "hall/m1", "$SYS/#"].map(String::from).into_iter().collect();
    assert_eq!(crate::config::validate::minimal_subscriptions(&filters), ["$SYS/#", "factory/#", "hall/m1"]);
}

#[test]
fn a_route_can_read_the_body_as_iot_edge_does_or_not_at_all() {
    let text = "FROM /* WHERE $body.temperature > 50 INTO $upstream";
    let with = |decode: BodyDecode| Route { decode, ..parse(text).expect("parses") };
    let undeclared = message("factory/m1/telemetry", r#"{"temperature":71}"#, &[]);
    let mut declared = undeclared.clone();
    declared.meta_mut().content_type = Some("application/json; charset=utf-8".into());
    let mut latin1 = declared.clone();
    latin1.meta_mut().properties.push(Property::new("contentEncoding", "iso-8859-1"));
    assert!(with(BodyDecode::Json).condition_holds(&undeclared), "weir reads JSON whatever was declared");
    assert!(!with(BodyDecode::IotEdge).condition_holds(&undeclared), "IoT Edge needs the content type");
    assert!(with(BodyDecode::IotEdge).condition_holds(&declared));
    assert!(!with(BodyDecode::IotEdge).condition_holds(&latin1), "and UTF-8 when an encoding is declared");
    assert!(!with(BodyDecode::None).condition_holds(&declared), "no decoding: $body is undefined");
    let not_body = Route { decode: BodyDecode::None, ..parse("FROM /* WHERE NOT is_defined($body.temperature) INTO $upstream").expect("parses") };
    assert!(not_body.condition_holds(&declared));
}

#[test]
fn topic_levels_split_as_str_split_does() {
    for topic in ["", "/", "a", "a/b", "a//b", "/a/", "factory/m1/telemetry", "é/ü/x", "a/+/#"] {
        let ours: Vec<&str> = super::topic_levels(topic).collect();
        let std: Vec<&str> = topic.split('/').collect();
        assert_eq!(ours, std, "{topic:?}");
    }
}
