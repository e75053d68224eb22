//! `Record`: a row as a streaming source delivers it (fields plus key, partition, offset, headers).

use std::sync::Arc;

use crate::value::Value;

/// One row with the metadata a streaming record carries.
///
/// Fields keep their insertion order; lookup by name is linear, which is fastest for the
/// handful of fields a record usually has, and [`Record::field_at`] lets a converter that
/// knows the layout skip the search.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    fields: Vec<(Arc<str>, Value)>,
    /// Event time in milliseconds since the Unix epoch, if the source set one.
    pub event_time_ms: Option<i64>,
    /// Message key (e.g. a Kafka key).
    pub key: Option<Vec<u8>>,
    /// Source partition.
    pub partition: Option<i32>,
    /// Offset within the partition.
    pub offset: Option<i64>,
    /// Message headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Record {
    /// An empty record.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty record with room for `capacity` fields.
    pub fn with_capacity(capacity: usize) -> Self {
        Record {
            fields: Vec::with_capacity(capacity),
            ..Self::default()
        }
    }

    /// Builder-style [`Record::set`].
    pub fn with(mut self, name: impl Into<Arc<str>>, value: impl Into<Value>) -> Self {
        self.set(name, value);
        self
    }

    /// Builder-style event time.
    pub fn with_event_time_ms(mut self, event_time_ms: i64) -> Self {
        self.event_time_ms = Some(event_time_ms);
        self
    }

    /// Sets a field, replacing an earlier value of the same name.
    pub fn set(&mut self, name: impl Into<Arc<str>>, value: impl Into<Value>) {
        let name = name.into();
        let value = value.into();
        match self.fields.iter_mut().find(|(n, _)| **n == *name) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((name, value)),
        }
    }

    /// The value of field `name`, if present.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, v)| v)
    }

    /// The field at position `index`, as `(name, value)`.
    pub fn field_at(&self, index: usize) -> Option<(&str, &Value)> {
        self.fields.get(index).map(|(n, v)| (&**n, v))
    }

    /// The field at position `index` with its shared name, so callers can match names by
    /// pointer before comparing bytes.
    pub fn entry_at(&self, index: usize) -> Option<(&Arc<str>, &Value)> {
        self.fields.get(index).map(|(n, v)| (n, v))
    }

    /// Fields in insertion order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.fields.iter().map(|(n, v)| (&**n, v))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when the record has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_and_keeps_order() {
        let mut record = Record::new().with("a", 1_i64).with("b", "x");
        record.set("a", 2_i64);
        assert_eq!(record.get("a"), Some(&Value::Int64(2)));
        assert_eq!(record.field_at(1), Some(("b", &Value::Utf8("x".into()))));
        assert_eq!(record.len(), 2);
        assert_eq!(record.get("missing"), None);
    }
}
