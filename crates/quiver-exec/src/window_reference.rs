//! A naive windowed aggregation, the oracle for the window operator: it keeps every row,
//! decides lateness row by row, lists each window's rows, and aggregates each window from
//! scratch with the row-at-a-time reference. It favours obviousness over speed.

use std::collections::BTreeMap;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat, concat_batches, take_record_batch};
use arrow::datatypes::SchemaRef;
use quiver_core::{QuiverError, Result};
use quiver_kernels::reference::{self, RefRow, RefValue};
use quiver_kernels::window::{event_times_ms, WindowSpec};
use quiver_kernels::AggregateExpr;

use crate::window::{LatePolicy, WindowOptions};

/// One step of an input stream.
#[derive(Debug, Clone)]
pub enum StreamEvent {
    /// A batch of the input schema and its event-time column.
    Rows(RecordBatch, ArrayRef),
    /// An explicit watermark.
    Watermark(i64),
}

/// The reference's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceResult {
    /// One row per (window, group): keys are `[window_start, window_end, group keys...]` (no
    /// window columns for global aggregation), sorted.
    pub rows: Vec<RefRow>,
    /// Rows aggregated.
    pub aggregated: u64,
    /// Late rows aggregated into closed windows.
    pub late_updated: u64,
    /// Late rows dropped.
    pub late_dropped: u64,
    /// Rows dead-lettered, as (event number, row in that batch).
    pub dead_lettered: Vec<(usize, usize)>,
}

/// Windowed aggregation of `events` by the naive method.
pub fn window_aggregate(
    options: &WindowOptions,
    input_schema: &SchemaRef,
    group_count: usize,
    aggregates: &[AggregateExpr],
    events: &[StreamEvent],
) -> Result<ReferenceResult> {
    let lateness = i128::from(options.allowed_lateness_ms);
    let delay = i128::from(options.max_out_of_orderness_ms);
    let mut watermark = i128::from(i64::MIN);
    let mut max_time: Option<i128> = None;
    let mut result = ReferenceResult {
        rows: Vec::new(),
        aggregated: 0,
        late_updated: 0,
        late_dropped: 0,
        dead_lettered: Vec::new(),
    };
    // Accepted rows: (batch, row, time) in arrival order.
    let mut accepted: Vec<(usize, usize, i64)> = Vec::new();
    let mut batches: Vec<RecordBatch> = Vec::new();
    // Session windows: per key, sessions as (start, last, rows).
    type Sessions = Vec<(i64, i64, Vec<usize>)>;
    let mut sessions: BTreeMap<Vec<u8>, Sessions> = BTreeMap::new();
    let mut times = Vec::new();
    for (event_number, event) in events.iter().enumerate() {
        let (batch, event_time) = match event {
            StreamEvent::Watermark(mark) => {
                watermark = watermark.max(i128::from(*mark));
                continue;
            }
            StreamEvent::Rows(batch, event_time) => (batch, event_time),
        };
        let batch_index = batches.len();
        batches.push(batch.clone());
        event_times_ms(event_time, &mut times)?;
        for (row, time) in times.iter().enumerate() {
            let Some(time) = *time else {
                result.dead_lettered.push((event_number, row));
                continue;
            };
            let row_watermark = match max_time {
                Some(max) => watermark.max(max - delay),
                None => watermark,
            };
            let t = i128::from(time);
            // When the row's (earliest) window closes; sessions may join an open session.
            let closes_at = match options.spec {
                WindowSpec::Global => None,
                WindowSpec::Session { gap_ms } => {
                    let key = key_bytes(batch, group_count, row)?;
                    let gap = i128::from(gap_ms);
                    let joins_open = sessions.get(&key).is_some_and(|list| {
                        list.iter().any(|&(start, last, _)| {
                            let end = i128::from(last) + gap;
                            end + lateness > row_watermark && i128::from(start) < t + gap && t < end
                        })
                    });
                    if joins_open {
                        None
                    } else {
                        Some(t + gap + lateness)
                    }
                }
                spec => {
                    let windows = windows_containing(&spec, time);
                    let earliest = windows.iter().min().copied().unwrap_or(time);
                    let size = spec.size_ms().unwrap_or(0);
                    Some(i128::from(earliest) + i128::from(size) + lateness)
                }
            };
            if let Some(closes_at) = closes_at {
                if closes_at <= row_watermark {
                    match options.late_policy {
                        LatePolicy::Drop => {
                            result.late_dropped += 1;
                            continue;
                        }
                        LatePolicy::DeadLetter => {
                            result.dead_lettered.push((event_number, row));
                            continue;
                        }
                        LatePolicy::UpdateClosed { horizon_ms } => {
                            if closes_at + i128::from(horizon_ms) > row_watermark {
                                result.late_updated += 1;
                            } else {
                                result.late_dropped += 1;
                                continue;
                            }
                        }
                    }
                }
            }
            if let WindowSpec::Session { gap_ms } = options.spec {
                let key = key_bytes(batch, group_count, row)?;
                let list = sessions.entry(key).or_default();
                let gap = i128::from(gap_ms);
                let (mut start, mut last, mut rows) = (time, time, vec![accepted.len()]);
                let mut kept = Vec::new();
                for (s, l, r) in list.drain(..) {
                    let end = i128::from(l) + gap;
                    let open = end + lateness > row_watermark;
                    if open && i128::from(s) < t + gap && t < end {
                        start = start.min(s);
                        last = last.max(l);
                        rows.extend(r);
                    } else {
                        kept.push((s, l, r));
                    }
                }
                kept.push((start, last, rows));
                *list = kept;
            }
            accepted.push((batch_index, row, time));
            max_time = Some(max_time.map_or(t, |m| m.max(t)));
        }
    }
    result.aggregated = accepted.len() as u64;
    // Every window's rows, by window bounds.
    let mut windows: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
    match options.spec {
        WindowSpec::Global => {
            windows.insert((0, 0), (0..accepted.len()).collect());
        }
        WindowSpec::Session { gap_ms } => {
            for list in sessions.values() {
                for (start, last, rows) in list {
                    windows
                        .entry((*start, last.saturating_add(gap_ms)))
                        .or_default()
                        .extend(rows);
                }
            }
        }
        spec => {
            let size = spec.size_ms().unwrap_or(0);
            for (i, &(_, _, time)) in accepted.iter().enumerate() {
                for start in windows_containing(&spec, time) {
                    windows
                        .entry((start, start.saturating_add(size)))
                        .or_default()
                        .push(i);
                }
            }
        }
    }
    let all = if batches.is_empty() {
        RecordBatch::new_empty(input_schema.clone())
    } else {
        concat_batches(input_schema, &batches)?
    };
    let mut offsets = Vec::with_capacity(batches.len());
    let mut total = 0_u32;
    for batch in &batches {
        offsets.push(total);
        total += batch.num_rows() as u32;
    }
    let group_by: Vec<usize> = (0..group_count).collect();
    for ((start, end), rows) in windows {
        if rows.is_empty() {
            continue;
        }
        let indices: Vec<u32> = rows
            .iter()
            .map(|&i| {
                let (batch, row, _) = accepted[i];
                offsets[batch] + row as u32
            })
            .collect();
        let window_rows = take_record_batch(&all, &UInt32Array::from(indices))?;
        for (keys, values) in reference::aggregate(&[window_rows], &group_by, aggregates)? {
            let mut full_keys = Vec::new();
            if options.spec != WindowSpec::Global {
                full_keys.push(RefValue::Int(i128::from(start)));
                full_keys.push(RefValue::Int(i128::from(end)));
            }
            full_keys.extend(keys);
            result.rows.push((full_keys, values));
        }
    }
    reference::sort_rows(&mut result.rows);
    Ok(result)
}

/// Starts of the time windows containing `time`, found by walking the grid.
fn windows_containing(spec: &WindowSpec, time: i64) -> Vec<i64> {
    let (size, advance, offset) = match *spec {
        WindowSpec::Tumbling { size_ms, offset_ms } => (size_ms, size_ms, offset_ms),
        WindowSpec::Hopping {
            size_ms,
            advance_ms,
            offset_ms,
        } => (size_ms, advance_ms, offset_ms),
        _ => return Vec::new(),
    };
    let (t, size, advance, offset) = (
        i128::from(time),
        i128::from(size),
        i128::from(advance),
        i128::from(offset),
    );
    let mut start = offset + (t - offset).div_euclid(advance) * advance;
    let mut out = Vec::new();
    while start > t - size {
        if let Ok(s) = i64::try_from(start) {
            out.push(s);
        }
        start -= advance;
    }
    out
}

/// The group key of one row, as comparable bytes.
fn key_bytes(batch: &RecordBatch, group_count: usize, row: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    for column in &batch.columns()[..group_count] {
        let value = reference::value_at(column, row)?;
        bytes.extend(format!("{value:?}|").into_bytes());
    }
    Ok(bytes)
}

/// Applies windowed output batches as a changelog keyed by (window_start, window_end, group
/// keys): inserts
/// and updates set the row, deletes remove it. Rows come back in the reference's form, sorted.
/// Without a `change` column every row is an insert, and a repeated key is an error.
pub fn apply_changelog(
    batches: &[RecordBatch],
    windowed: bool,
    group_count: usize,
) -> Result<Vec<RefRow>> {
    apply_changelog_checked(batches, windowed, group_count, false)
}

/// [`apply_changelog`], optionally failing on an `update` identical to the row it replaces (a
/// spurious emission, when the aggregates include `COUNT(*)`, which every new row changes).
pub fn apply_changelog_checked(
    batches: &[RecordBatch],
    windowed: bool,
    group_count: usize,
    reject_repeated_updates: bool,
) -> Result<Vec<RefRow>> {
    let mut table: BTreeMap<String, RefRow> = BTreeMap::new();
    for batch in batches {
        let schema = batch.schema();
        let change = schema.index_of("change").ok();
        let window_columns = if windowed { 2 } else { 0 };
        let key_count = window_columns + group_count;
        let value_end = change.unwrap_or(batch.num_columns());
        for row in 0..batch.num_rows() {
            let mut values = Vec::with_capacity(value_end);
            for column in &batch.columns()[..value_end] {
                values.push(reference::value_at(column, row)?);
            }
            let aggregates = values.split_off(key_count);
            let identity = format!("{values:?}");
            let kind = match change {
                Some(i) => match reference::value_at(&batch.columns()[i], row)? {
                    RefValue::Bytes(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    other => format!("{other:?}"),
                },
                None => "final".to_string(),
            };
            match kind.as_str() {
                "final" => {
                    if table
                        .insert(identity.clone(), (values, aggregates))
                        .is_some()
                    {
                        return Err(QuiverError::Internal(format!(
                            "window result {identity} emitted twice in EMIT FINAL mode"
                        )));
                    }
                }
                "insert" | "update" => {
                    let row = (values, aggregates);
                    let previous = table.insert(identity.clone(), row.clone());
                    if kind == "update" && previous.is_none() {
                        return Err(QuiverError::Internal(format!(
                            "update of {identity}, which was never inserted"
                        )));
                    }
                    if reject_repeated_updates
                        && kind == "update"
                        && previous.as_ref() == Some(&row)
                    {
                        return Err(QuiverError::Internal(format!(
                            "update of {identity} repeats the previous emission"
                        )));
                    }
                }
                "delete" => {
                    if table.remove(&identity).is_none() {
                        return Err(QuiverError::Internal(format!(
                            "delete of {identity}, which was never emitted"
                        )));
                    }
                }
                other => {
                    return Err(QuiverError::Internal(format!("change kind {other}")));
                }
            }
        }
    }
    let mut rows: Vec<RefRow> = table.into_values().collect();
    reference::sort_rows(&mut rows);
    Ok(rows)
}

/// Event times for a column of optional milliseconds (test and fuzz helper).
pub fn millis_column(times: &[Option<i64>]) -> ArrayRef {
    std::sync::Arc::new(arrow::array::Int64Array::from(times.to_vec()))
}

/// Concatenates event-time columns (test helper for building one-batch streams).
pub fn concat_times(columns: &[ArrayRef]) -> Result<ArrayRef> {
    let refs: Vec<&dyn arrow::array::Array> = columns.iter().map(|c| c.as_ref()).collect();
    Ok(concat(&refs)?)
}
