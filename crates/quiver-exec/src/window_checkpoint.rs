//! Checkpoints of the window operator as Arrow IPC: the aggregation state (keys and partial
//! accumulator states, exactly what two-phase aggregation merges), open and retained windows,
//! sessions, watermark and counters. Restoring one into an operator of the same configuration
//! gives identical behaviour from then on.
//!
//! Layout: the bytes `QVWCKPT1`, then sections, each a little-endian `u64` length followed by one
//! Arrow IPC stream: state, progress, windows, sessions, session keys.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int64Array, Int64Builder, ListArray, ListBuilder,
    RecordBatch, RecordBatchOptions, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, UInt32Type, UInt64Type};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use quiver_core::{QuiverError, Result};
use quiver_kernels::EmitTo;

use super::{Session, WindowAggregator};

const MAGIC: &[u8; 8] = b"QVWCKPT1";

fn write_section(out: &mut Vec<u8>, batch: &RecordBatch) -> Result<()> {
    let mut bytes = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
    }
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&bytes);
    Ok(())
}

fn corrupt(what: &str) -> QuiverError {
    QuiverError::Config(format!("window checkpoint is not valid: {what}"))
}

fn read_section(bytes: &[u8], at: &mut usize) -> Result<RecordBatch> {
    let length_bytes: [u8; 8] = bytes
        .get(*at..*at + 8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("truncated section length"))?;
    let length =
        usize::try_from(u64::from_le_bytes(length_bytes)).map_err(|_| corrupt("section length"))?;
    let start = *at + 8;
    let body = bytes
        .get(start..start.saturating_add(length))
        .ok_or_else(|| corrupt("truncated section"))?;
    *at = start + length;
    let mut reader = StreamReader::try_new(Cursor::new(body), None)?;
    reader
        .next()
        .transpose()?
        .ok_or_else(|| corrupt("empty section"))
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &options,
    )?)
}

fn list(values: impl Iterator<Item = Vec<i64>>) -> ListArray {
    let mut builder = ListBuilder::new(Int64Builder::new());
    for items in values {
        builder.values().append_slice(&items);
        builder.append(true);
    }
    builder.finish()
}

fn list_values(array: &ListArray, row: usize) -> Vec<i64> {
    array
        .value(row)
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| corrupt(&format!("column {name} missing")))
}

impl WindowAggregator {
    /// Serialises the operator's state (see the module docs); the operator goes on unchanged.
    pub fn checkpoint(&mut self) -> Result<Vec<u8>> {
        let mut out = MAGIC.to_vec();
        // The state, without losing it: emit everything, then merge it back in the same order.
        let (state, first_batch) = if self.panes.is_some() {
            // The pane path does not track first batches.
            let state = self.pane_state_batch()?;
            let first_batch = vec![0; state.num_rows()];
            (state, first_batch)
        } else {
            let state = self.state.state(EmitTo::All)?;
            let all_rows: Vec<u32> = (0..state.num_rows() as u32).collect();
            self.keep_state(&state, &all_rows)?;
            (state, self.first_batch.clone())
        };
        let mut fields: Vec<Field> = state
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let mut columns = state.columns().to_vec();
        fields.push(Field::new("__first_batch", DataType::UInt64, false));
        columns.push(Arc::new(UInt64Array::from(first_batch)));
        write_section(&mut out, &batch(fields, columns, state.num_rows())?)?;

        let m = &self.metrics;
        let progress: Vec<(&str, i64)> = vec![
            ("batch_number", self.batch_number as i64),
            ("watermark_ms", self.watermark_ms),
            ("max_time_ms", self.max_time_ms),
            ("next_slot", self.sessions.next_slot),
            ("rows_in", m.rows_in as i64),
            ("rows_aggregated", m.rows_aggregated as i64),
            ("rows_late_updated", m.rows_late_updated as i64),
            ("rows_late_dropped", m.rows_late_dropped as i64),
            ("rows_dead_lettered", m.rows_dead_lettered as i64),
            ("rows_emitted", m.rows_emitted as i64),
            ("has_watermark", i64::from(m.watermark_ms.is_some())),
        ];
        let fields = progress
            .iter()
            .map(|(name, _)| Field::new(*name, DataType::Int64, false))
            .collect();
        let columns = progress
            .iter()
            .map(|(_, v)| Arc::new(Int64Array::from(vec![*v])) as ArrayRef)
            .collect();
        write_section(&mut out, &batch(fields, columns, 1)?)?;

        let starts: Vec<i64> = self
            .open_windows
            .iter()
            .chain(&self.retained_windows)
            .copied()
            .collect();
        let retained: Vec<bool> = self
            .open_windows
            .iter()
            .map(|_| false)
            .chain(self.retained_windows.iter().map(|_| true))
            .collect();
        let rows = starts.len();
        write_section(
            &mut out,
            &batch(
                vec![
                    Field::new("start", DataType::Int64, false),
                    Field::new("retained", DataType::Boolean, false),
                ],
                vec![
                    Arc::new(Int64Array::from(starts)),
                    Arc::new(BooleanArray::from(retained)),
                ],
                rows,
            )?,
        )?;

        let sessions: Vec<(&i64, &Session)> = self.sessions.live.iter().collect();
        let rows = sessions.len();
        let int = |f: &dyn Fn(&Session) -> i64| -> ArrayRef {
            Arc::new(Int64Array::from_iter_values(
                sessions.iter().map(|(_, s)| f(s)),
            ))
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from_iter_values(
                sessions.iter().map(|(id, _)| **id),
            )),
            Arc::new(UInt32Array::from_iter_values(
                sessions.iter().map(|(_, s)| s.key),
            )),
            int(&|s| s.start),
            int(&|s| s.last),
            int(&|s| s.touched_batch as i64),
            Arc::new(Int64Array::from_iter(
                sessions.iter().map(|(_, s)| s.emitted.map(|e| e.0)),
            )),
            Arc::new(Int64Array::from_iter(
                sessions.iter().map(|(_, s)| s.emitted.map(|e| e.1)),
            )),
            Arc::new(list(sessions.iter().map(|(_, s)| s.slots.clone()))),
            Arc::new(list(sessions.iter().map(|(_, s)| {
                s.absorbed_emitted
                    .iter()
                    .flat_map(|&(a, b)| [a, b])
                    .collect()
            }))),
        ];
        let list_field = |name: &str| {
            Field::new(
                name,
                DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
                true,
            )
        };
        let fields = vec![
            Field::new("id", DataType::Int64, false),
            Field::new("key", DataType::UInt32, false),
            Field::new("start", DataType::Int64, false),
            Field::new("last", DataType::Int64, false),
            Field::new("touched_batch", DataType::Int64, false),
            Field::new("emitted_start", DataType::Int64, true),
            Field::new("emitted_end", DataType::Int64, true),
            list_field("slots"),
            list_field("absorbed_emitted"),
        ];
        write_section(&mut out, &batch(fields, columns, rows)?)?;

        // Session keys in id order; re-interning them in order restores the same ids.
        let key_columns = match &mut self.sessions.keys {
            Some(keys) => {
                let columns = keys.emit(EmitTo::All)?;
                let mut ids = Vec::new();
                keys.intern(&columns, &mut ids)?;
                columns
            }
            None => Vec::new(),
        };
        let rows = key_columns.first().map_or(0, |c| c.len());
        let fields = key_columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("k{i}"), c.data_type().clone(), true))
            .collect();
        write_section(&mut out, &batch(fields, key_columns, rows)?)?;
        Ok(out)
    }

    /// Loads a checkpoint written by [`WindowAggregator::checkpoint`] of an operator with the
    /// same configuration, replacing this operator's state. A damaged checkpoint is an error;
    /// restore into a fresh operator, since one that failed midway holds partial state.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
            return Err(corrupt("wrong header"));
        }
        let mut at = MAGIC.len();
        let state = read_section(bytes, &mut at)?;
        let progress = read_section(bytes, &mut at)?;
        let windows = read_section(bytes, &mut at)?;
        let sessions = read_section(bytes, &mut at)?;
        let keys = read_section(bytes, &mut at)?;

        let width = state.num_columns().saturating_sub(1);
        let first_batch = column(&state, "__first_batch")?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| corrupt("__first_batch type"))?
            .values()
            .to_vec();
        let options = RecordBatchOptions::new().with_row_count(Some(state.num_rows()));
        let fields: Vec<Field> = state.schema().fields()[..width]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let state = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            state.columns()[..width].to_vec(),
            &options,
        )?;
        let mut fresh = self.empty_aggregator()?;
        if state.schema().fields() != fresh.state_schema().fields() {
            return Err(corrupt(
                "its state schema does not match this operator's aggregates",
            ));
        }
        if self.panes.is_some() {
            self.restore_panes(&state)?;
            self.first_batch = Vec::new();
        } else {
            fresh.merge(&state)?;
            self.state = fresh;
            self.first_batch = first_batch;
        }

        if progress.num_rows() != 1 {
            return Err(corrupt("progress section must have one row"));
        }
        let value = |name: &str| -> Result<i64> {
            Ok(column(&progress, name)?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| corrupt(name))?
                .value(0))
        };
        self.batch_number = value("batch_number")? as u64;
        self.watermark_ms = value("watermark_ms")?;
        self.max_time_ms = value("max_time_ms")?;
        self.sessions.next_slot = value("next_slot")?;
        self.metrics.rows_in = value("rows_in")? as u64;
        self.metrics.rows_aggregated = value("rows_aggregated")? as u64;
        self.metrics.rows_late_updated = value("rows_late_updated")? as u64;
        self.metrics.rows_late_dropped = value("rows_late_dropped")? as u64;
        self.metrics.rows_dead_lettered = value("rows_dead_lettered")? as u64;
        self.metrics.rows_emitted = value("rows_emitted")? as u64;
        self.metrics.watermark_ms = (value("has_watermark")? != 0).then_some(self.watermark_ms);

        self.open_windows.clear();
        self.retained_windows.clear();
        let starts = column(&windows, "start")?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| corrupt("window starts"))?;
        let retained = column(&windows, "retained")?
            .as_boolean_opt()
            .ok_or_else(|| corrupt("window flags"))?;
        for i in 0..starts.len() {
            if retained.value(i) {
                self.retained_windows.insert(starts.value(i));
            } else {
                self.open_windows.insert(starts.value(i));
            }
        }

        let int = |name: &str| -> Result<Int64Array> {
            Ok(column(&sessions, name)?
                .as_primitive_opt::<Int64Type>()
                .ok_or_else(|| corrupt(name))?
                .clone())
        };
        let (ids, starts, lasts, touched) = (
            int("id")?,
            int("start")?,
            int("last")?,
            int("touched_batch")?,
        );
        let (emitted_start, emitted_end) = (int("emitted_start")?, int("emitted_end")?);
        let key_ids = column(&sessions, "key")?
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(|| corrupt("session keys"))?
            .clone();
        let slots = column(&sessions, "slots")?
            .as_list_opt::<i32>()
            .ok_or_else(|| corrupt("session slots"))?
            .clone();
        let absorbed = column(&sessions, "absorbed_emitted")?
            .as_list_opt::<i32>()
            .ok_or_else(|| corrupt("absorbed sessions"))?
            .clone();
        self.sessions.live.clear();
        self.sessions.slot_owner.clear();
        self.sessions.by_key.clear();
        if let Some(groups) = &mut self.sessions.keys {
            let mut restored = quiver_kernels::group_values::new_group_values(
                &keys
                    .columns()
                    .iter()
                    .map(|c| c.data_type().clone())
                    .collect::<Vec<_>>(),
            )?;
            let mut ids_out = Vec::new();
            restored.intern(keys.columns(), &mut ids_out)?;
            *groups = restored;
            self.sessions.by_key.resize(groups.len(), Vec::new());
        } else {
            self.sessions.by_key.resize(1, Vec::new());
        }
        for row in 0..ids.len() {
            let id = ids.value(row);
            let key = key_ids.value(row);
            let session_slots = list_values(&slots, row);
            for &slot in &session_slots {
                self.sessions.slot_owner.insert(slot, id);
            }
            let pairs = list_values(&absorbed, row);
            let session = Session {
                key,
                start: starts.value(row),
                last: lasts.value(row),
                slots: session_slots,
                touched_batch: touched.value(row) as u64,
                emitted: emitted_start
                    .is_valid(row)
                    .then(|| (emitted_start.value(row), emitted_end.value(row))),
                absorbed_emitted: pairs.chunks_exact(2).map(|p| (p[0], p[1])).collect(),
            };
            let list = self
                .sessions
                .by_key
                .get_mut(key as usize)
                .ok_or_else(|| corrupt("session key out of range"))?;
            list.push(id);
            self.sessions.live.insert(id, session);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{LatePolicy, WindowOptions};
    use arrow::array::StringArray;
    use quiver_kernels::window::{EmitMode, WindowSpec};
    use quiver_kernels::{AggregateExpr, AggregateFunction};

    fn operator(spec: WindowSpec) -> WindowAggregator {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        WindowAggregator::try_new(
            WindowOptions {
                spec,
                max_out_of_orderness_ms: 5,
                allowed_lateness_ms: 0,
                late_policy: LatePolicy::DeadLetter,
                emit: EmitMode::Changes,
            },
            schema,
            1,
            vec![AggregateExpr::new(AggregateFunction::Sum, Some(1), "s")],
            &DataType::Int64,
        )
        .unwrap()
    }

    #[test]
    fn damaged_checkpoints_are_errors_not_panics() {
        for spec in [
            WindowSpec::Session { gap_ms: 10 },
            WindowSpec::Tumbling {
                size_ms: 10,
                offset_ms: 0,
            },
        ] {
            let mut source = operator(spec);
            let batch = RecordBatch::try_new(
                Arc::new(Schema::new(vec![
                    Field::new("k", DataType::Utf8, true),
                    Field::new("v", DataType::Int64, true),
                ])),
                vec![
                    Arc::new(StringArray::from(vec!["a", "b", "a"])),
                    Arc::new(Int64Array::from(vec![1, 2, 3])),
                ],
            )
            .unwrap();
            let times: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 30]));
            source.push(&batch, &times).unwrap();
            let bytes = source.checkpoint().unwrap();
            let mut restored = operator(spec);
            restored.restore(&bytes).unwrap();
            assert_eq!(restored.state_groups(), source.state_groups());
            for cut in (0..bytes.len()).step_by(7) {
                let mut target = operator(spec);
                assert!(target.restore(&bytes[..cut]).is_err(), "cut at {cut}");
            }
            let mut flipped = bytes.clone();
            flipped[0] ^= 1;
            assert!(operator(spec).restore(&flipped).is_err());
        }
    }
}
