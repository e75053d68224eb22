//! `HAVING` over a changelog (`EMIT CHANGES`, or corrections of closed windows): keeps which
//! (window, group) rows the consumer currently holds, so the filtered output still applies as
//! a changelog equal to the filtered final result.
//!
//! A change whose new value passes `HAVING` is an `insert` when the consumer holds no row for
//! its key (it never passed, or stopped passing) and an `update` otherwise; one that fails it
//! is a `delete` of the held row, or nothing when none is held; a `delete` from the operator
//! (a session merged away) passes through only for a held row.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringArray, UInt32Array};
use arrow::compute::{cast, take};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use hashbrown::HashMap;
use quiver_core::{QuiverError, Result};

use crate::window::ChangeKind;

/// Held keys are pruned once there are this many, and then each time their number doubles.
const FIRST_PRUNE_KEYS: usize = 4096;

/// Which (window, group) keys passed `HAVING` at their last change.
pub(crate) struct HavingChangelog {
    /// `window_start`, `window_end` (when windowed), then the group keys: the leading columns
    /// of the operator's output.
    key_columns: usize,
    windowed: bool,
    /// None without keys.
    converter: Option<RowConverter>,
    /// Held keys (row-format bytes) with their window's end in milliseconds (`i64::MAX`
    /// without a window: groups of a running GROUP BY never close).
    held: HashMap<Box<[u8]>, i64>,
    /// How long after the watermark passes a window's end it may still change (allowed
    /// lateness plus any update horizon).
    changes_after_end_ms: i64,
    prune_at: usize,
}

impl HavingChangelog {
    /// For output batches whose first `key_columns` columns (of `key_types`) key a change,
    /// the first two being the window's bounds when `windowed`.
    pub(crate) fn try_new(
        key_types: &[DataType],
        windowed: bool,
        changes_after_end_ms: i64,
    ) -> Result<Self> {
        let converter = if key_types.is_empty() {
            None
        } else {
            Some(RowConverter::new(
                key_types
                    .iter()
                    .map(|t| SortField::new(t.clone()))
                    .collect(),
            )?)
        };
        Ok(HavingChangelog {
            key_columns: key_types.len(),
            windowed,
            converter,
            held: HashMap::new(),
            changes_after_end_ms,
            prune_at: FIRST_PRUNE_KEYS,
        })
    }

    /// The rows of `batch` (last column `change`) the consumer must see, given which rows
    /// pass `HAVING`; their `change` column rewritten as above. `watermark_ms` lets keys of
    /// windows that can no longer change be forgotten.
    pub(crate) fn apply(
        &mut self,
        batch: &RecordBatch,
        passes: &BooleanArray,
        watermark_ms: Option<i64>,
    ) -> Result<RecordBatch> {
        let change_index = batch
            .num_columns()
            .checked_sub(1)
            .ok_or_else(|| QuiverError::Internal("a changelog batch without columns".into()))?;
        let changes = batch
            .column(change_index)
            .as_string_opt::<i32>()
            .ok_or_else(|| {
                QuiverError::Internal("the change column of a changelog is not text".into())
            })?;
        if self.key_columns > change_index {
            return Err(QuiverError::Internal(format!(
                "{} key columns in a changelog of {} columns",
                self.key_columns,
                batch.num_columns()
            )));
        }
        // No keys (a running aggregate without GROUP BY): one row, keyed by nothing.
        let keys = match &self.converter {
            Some(converter) => {
                Some(converter.convert_columns(&batch.columns()[..self.key_columns])?)
            }
            None => None,
        };
        let ends = if self.windowed {
            Some(cast(batch.column(1), &DataType::Int64)?)
        } else {
            None
        };
        let ends = ends
            .as_ref()
            .map(|e| e.as_primitive::<arrow::datatypes::Int64Type>());
        let mut rows: Vec<u32> = Vec::new();
        let mut kinds: Vec<&'static str> = Vec::new();
        for row in 0..batch.num_rows() {
            let key = keys.as_ref().map(|k| k.row(row));
            let key: &[u8] = key.as_ref().map_or(&[], |k| k.as_ref());
            let passed = passes.is_valid(row) && passes.value(row);
            let kind = if changes.value(row) == ChangeKind::Delete.as_str() || !passed {
                self.held.remove(key).map(|_| ChangeKind::Delete)
            } else {
                let end = ends
                    .filter(|e| e.is_valid(row))
                    .map_or(i64::MAX, |e| e.value(row));
                match self.held.insert(key.into(), end) {
                    Some(_) => Some(ChangeKind::Update),
                    None => Some(ChangeKind::Insert),
                }
            };
            if let Some(kind) = kind {
                rows.push(row as u32);
                kinds.push(kind.as_str());
            }
        }
        if let Some(watermark) = watermark_ms {
            self.prune(watermark);
        }
        let indices = UInt32Array::from(rows);
        let mut columns = batch.columns()[..change_index]
            .iter()
            .map(|c| take(c.as_ref(), &indices, None))
            .collect::<std::result::Result<Vec<ArrayRef>, _>>()?;
        columns.push(Arc::new(StringArray::from(kinds)));
        Ok(RecordBatch::try_new(batch.schema(), columns)?)
    }

    /// Forgets keys of windows the watermark has passed for good.
    fn prune(&mut self, watermark_ms: i64) {
        if self.held.len() < self.prune_at {
            return;
        }
        let delay = self.changes_after_end_ms;
        self.held
            .retain(|_, end| end.saturating_add(delay) >= watermark_ms);
        self.prune_at = (self.held.len() * 2).max(FIRST_PRUNE_KEYS);
    }

    /// Keys held now (for tests).
    #[cfg(test)]
    fn held_keys(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;
    use arrow::datatypes::{Field, Schema};

    fn changelog(keys: &[&str], values: &[i64], changes: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("total", DataType::Int64, true),
            Field::new("change", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(keys.to_vec())),
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(StringArray::from(changes.to_vec())),
            ],
        )
        .unwrap()
    }

    fn rows(batch: &RecordBatch) -> Vec<(String, i64, String)> {
        (0..batch.num_rows())
            .map(|i| {
                (
                    batch.column(0).as_string::<i32>().value(i).to_string(),
                    batch
                        .column(1)
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .value(i),
                    batch.column(2).as_string::<i32>().value(i).to_string(),
                )
            })
            .collect()
    }

    /// `HAVING total > 0` applied to a running changelog.
    fn step(
        state: &mut HavingChangelog,
        keys: &[&str],
        values: &[i64],
        changes: &[&str],
    ) -> Vec<(String, i64, String)> {
        let batch = changelog(keys, values, changes);
        let passes: BooleanArray = values.iter().map(|v| Some(*v > 0)).collect();
        rows(&state.apply(&batch, &passes, None).unwrap())
    }

    #[test]
    fn rows_entering_and_leaving_having_are_inserts_and_deletes() {
        let mut state = HavingChangelog::try_new(&[DataType::Utf8], false, 0).unwrap();
        let row = |k: &str, v: i64, c: &str| (k.to_string(), v, c.to_string());
        // `b` fails at first: nothing; `a` passes: insert.
        assert_eq!(
            step(&mut state, &["a", "b"], &[5, -1], &["insert", "insert"]),
            vec![row("a", 5, "insert")]
        );
        // `a` still passes: update; `b` passes for the first time: insert, not update.
        assert_eq!(
            step(&mut state, &["a", "b"], &[3, 2], &["update", "update"]),
            vec![row("a", 3, "update"), row("b", 2, "insert")]
        );
        // `a` stops passing: delete; again failing: nothing.
        assert_eq!(
            step(&mut state, &["a"], &[-4], &["update"]),
            vec![row("a", -4, "delete")]
        );
        assert_eq!(step(&mut state, &["a"], &[-9], &["update"]), vec![]);
        // An operator delete passes only for a held key.
        assert_eq!(
            step(&mut state, &["a", "b"], &[1, 2], &["delete", "delete"]),
            vec![row("b", 2, "delete")]
        );
        assert_eq!(state.held_keys(), 0);
    }

    #[test]
    fn an_aggregate_without_keys_is_one_row() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("change", DataType::Utf8, false),
        ]));
        let mut state = HavingChangelog::try_new(&[], false, 0).unwrap();
        let mut step = |n: i64, change: &str| {
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(vec![n])),
                    Arc::new(StringArray::from(vec![change])),
                ],
            )
            .unwrap();
            let passes = BooleanArray::from(vec![n > 1]);
            let out = state.apply(&batch, &passes, None).unwrap();
            let changes = out.column(1).as_string::<i32>();
            (0..out.num_rows())
                .map(|i| changes.value(i).to_string())
                .collect::<Vec<_>>()
        };
        assert!(step(1, "insert").is_empty());
        assert_eq!(step(2, "update"), vec!["insert"]);
        assert_eq!(step(3, "update"), vec!["update"]);
    }

    #[test]
    fn keys_of_windows_past_the_watermark_are_forgotten() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("window_start", DataType::Int64, true),
            Field::new("window_end", DataType::Int64, true),
            Field::new("change", DataType::Utf8, false),
        ]));
        let mut state =
            HavingChangelog::try_new(&[DataType::Int64, DataType::Int64], true, 10).unwrap();
        let windows = FIRST_PRUNE_KEYS as i64;
        let starts: Vec<i64> = (0..windows).map(|w| w * 100).collect();
        let ends: Vec<i64> = starts.iter().map(|s| s + 100).collect();
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(starts)),
                Arc::new(Int64Array::from(ends)),
                Arc::new(StringArray::from(vec!["insert"; windows as usize])),
            ],
        )
        .unwrap();
        let passes = BooleanArray::from(vec![true; windows as usize]);
        // Watermark 1010: windows ending at 100..=900 (+10 ms of lateness) are done.
        state.apply(&batch, &passes, Some(1010)).unwrap();
        assert_eq!(state.held_keys(), FIRST_PRUNE_KEYS - 9);
    }
}
