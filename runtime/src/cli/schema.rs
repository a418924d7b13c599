//! `weir schema`: the pipeline format as JSON Schema, with every registered connector's
//! config under its `type`.

use std::collections::BTreeMap;

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::config::Pipeline;

pub fn schema() -> Value {
    let mut generator = SchemaSettings::draft2020_12().into_generator();
    let registry = weir_connectors::registry();
    let (sinks, sources) = registry.schemas(&mut generator);
    let mut root = generator.into_root_schema_for::<Pipeline>().to_value();
    let sinks = variants(&mut root, sinks);
    let sources = variants(&mut root, sources);
    if let Some(properties) = root.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert("sinks".into(), json!({ "type": "object", "additionalProperties": { "oneOf": sinks } }));
        properties.insert("sources".into(), json!({ "type": "object", "additionalProperties": { "oneOf": sources } }));
    }
    root
}

/// Each connector config with its `type` key added (connector configs reject unknown keys,
/// so `type` has to be part of each).
fn variants(root: &mut Value, schemas: BTreeMap<&'static str, schemars::Schema>) -> Vec<Value> {
    let mut out = Vec::new();
    for (kind, schema) in schemas {
        let schema = schema.to_value();
        let definition = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix("#/$defs/")).map(str::to_owned);
        let target = match definition {
            Some(name) => root.pointer_mut(&format!("/$defs/{name}")).cloned(),
            None => Some(schema.clone()),
        };
        let Some(mut target) = target else { continue };
        if let Some(object) = target.as_object_mut() {
            object.entry("properties").or_insert_with(|| json!({}))["type"] = json!({ "const": kind, "description": "The connector type." });
            let required = object.entry("required").or_insert_with(|| json!([]));
            if let Some(list) = required.as_array_mut() {
                list.push(json!("type"));
            }
        }
        out.push(target);
    }
    out
}

pub fn print() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&schema())?);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn schema_lists_connectors_and_documents_fields() {
        let schema = super::schema();
        let text = schema.to_string();
        assert!(text.contains("\"const\":\"file\""), "file sink missing");
        assert!(text.contains("\"const\":\"mqtt\""), "mqtt missing");
        assert!(text.contains("Linear memory cap per instance"), "field docs missing");
    }

    #[test]
    fn the_committed_schema_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/pipeline.schema.json");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let current = serde_json::to_string_pretty(&super::schema()).unwrap() + "\n";
        assert!(committed == current, "docs/pipeline.schema.json is out of date: regenerate it with `weir schema > docs/pipeline.schema.json`");
    }
}
