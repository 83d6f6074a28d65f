//! JSON for the benchmark: serde_json, plus the object builder the reports use everywhere.

use anyhow::{Context, Result};
pub use serde_json::Value;

/// An object from `(key, value)` pairs, keys in the given order.
pub fn obj<const N: usize>(members: [(&str, Value); N]) -> Value {
    Value::Object(
        members
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    )
}

pub fn parse(text: &str) -> Result<Value> {
    serde_json::from_str(text).context("not a JSON document")
}

/// Indented text (serializing a `Value` cannot fail).
pub fn pretty(value: &Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// The elements of a JSON array (none for anything else).
pub fn elements(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}
