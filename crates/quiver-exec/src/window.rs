//! The stateful windowed aggregation operator: event-time windows over the hash-aggregation
//! kernels, watermarks, late-data policies, and `EMIT FINAL` / `EMIT CHANGES` output.
//!
//! State is one [`HashAggregator`] keyed by `(slot, group keys)`, where a slot is a tumbling
//! window, a hopping pane (`gcd(size, advance)` long, so each row is aggregated once) or a
//! session fragment. Rows are aggregated once, on arrival; a window's result is the merge of its
//! slots' partial states, computed when it is emitted. Closed windows free their state.
//!
//! Semantics, all independent of how the input is cut into batches:
//! - The watermark before a row is `max(explicit watermark, max event time of earlier rows -
//!   max_out_of_orderness)`; it never goes back.
//! - A time window `[start, end)` closes when the watermark reaches `end + allowed_lateness`;
//!   a session closes when it reaches `last row + gap + allowed_lateness`. Closing is checked at
//!   the end of each batch and on [`WindowAggregator::advance_watermark`];
//!   [`WindowAggregator::finish`] closes everything.
//! - A row is late when the earliest window containing it is closed under the watermark before
//!   the row (for sessions: when the session it would form or join is closed). Late rows follow
//!   the [`LatePolicy`]; every row is counted once in [`WindowMetrics`]:
//!   `rows_in = rows_aggregated + rows_late_dropped + rows_dead_lettered`.
//! - `EMIT FINAL` emits each (window, group) once when the window closes; `EMIT CHANGES` emits,
//!   after each batch, every (window, group) the batch changed. The `change` column (present in
//!   `EMIT CHANGES` mode and with [`LatePolicy::UpdateClosed`]) says `insert`, `update` or
//!   `delete` (a session that was merged away or whose bounds moved: it is retracted and its
//!   successor inserted), so the output applied as a changelog keyed by (window_start,
//!   window_end, group keys) equals the `EMIT FINAL` result. Retractions precede the inserts
//!   that replace them.

use std::collections::{BTreeMap, BTreeSet};

use hashbrown::HashMap;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch,
    RecordBatchOptions, StringArray, UInt32Array,
};
use arrow::compute::{cast, filter_record_batch, take, take_record_batch};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef, TimeUnit};
use quiver_core::{QuiverError, Result};
use quiver_kernels::group_values::{new_group_values, GroupValues};
pub use quiver_kernels::window::EmitMode;
use quiver_kernels::window::{event_times_ms, WindowSpec};
use quiver_kernels::{AggregateExpr, EmitTo, HashAggregator};

#[path = "window_checkpoint.rs"]
mod checkpoint;
#[path = "window_panes.rs"]
mod panes;

/// What happens to a late row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatePolicy {
    /// Discard it; counted in `rows_late_dropped`.
    Drop,
    /// Return it as rejected, with the reason; counted in `rows_dead_lettered`.
    DeadLetter,
    /// Keep closed windows' state for `horizon_ms` more of watermark progress; a late row within
    /// the horizon updates its windows and the corrected rows are emitted as `update`s. Rows
    /// beyond the horizon are dropped and counted. Time windows only.
    UpdateClosed {
        /// How long closed state is kept, in watermark milliseconds after the window closed.
        horizon_ms: i64,
    },
}

/// Configuration of a [`WindowAggregator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowOptions {
    /// The windows.
    pub spec: WindowSpec,
    /// Bounded out-of-orderness: the watermark trails the largest event time seen by this much.
    pub max_out_of_orderness_ms: i64,
    /// Windows stay open this long after the watermark passes their end.
    pub allowed_lateness_ms: i64,
    /// What happens to late rows.
    pub late_policy: LatePolicy,
    /// When results are emitted.
    pub emit: EmitMode,
}

impl Default for WindowOptions {
    /// Global (unwindowed), in-order, late rows dead-lettered, `EMIT FINAL`.
    fn default() -> Self {
        WindowOptions {
            spec: WindowSpec::Global,
            max_out_of_orderness_ms: 0,
            allowed_lateness_ms: 0,
            late_policy: LatePolicy::DeadLetter,
            emit: EmitMode::Final,
        }
    }
}

/// Row accounting and progress of a [`WindowAggregator`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowMetrics {
    /// Rows pushed.
    pub rows_in: u64,
    /// Rows aggregated into some window (late rows accepted by `UpdateClosed` included).
    pub rows_aggregated: u64,
    /// Late rows aggregated into already closed windows (a subset of `rows_aggregated`).
    pub rows_late_updated: u64,
    /// Late rows discarded (policy `Drop`, or beyond the `UpdateClosed` horizon).
    pub rows_late_dropped: u64,
    /// Rows returned as rejected: late under `DeadLetter`, or with a NULL event time.
    pub rows_dead_lettered: u64,
    /// Result rows emitted (all change kinds).
    pub rows_emitted: u64,
    /// The current watermark, once there is one.
    pub watermark_ms: Option<i64>,
}

/// A pushed row that was not aggregated and must go to the dead-letter path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// Row index in the pushed batch.
    pub row: usize,
    /// Why.
    pub reason: String,
}

/// What a push returns: result rows emitted now, and rejected input rows.
#[derive(Debug, Default)]
pub struct WindowOutput {
    /// Result batches of [`WindowAggregator::output_schema`].
    pub batches: Vec<RecordBatch>,
    /// Input rows for the dead-letter path.
    pub rejected: Vec<Rejected>,
}

/// How an output row changes the result, read as a changelog keyed by window and group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A (window, group) seen for the first time.
    Insert,
    /// A new value for a (window, group) emitted before.
    Update,
    /// A (window, group) emitted before no longer exists (sessions only).
    Delete,
}

impl ChangeKind {
    /// The value in the `change` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One live session of one key.
#[derive(Debug, Clone)]
struct Session {
    key: u32,
    start: i64,
    last: i64,
    /// State slots holding its rows (more than one after merges).
    slots: Vec<i64>,
    touched_batch: u64,
    /// Bounds of its last `EMIT CHANGES` emission.
    emitted: Option<(i64, i64)>,
    /// Bounds of emitted sessions it absorbed: they are retracted on its next emission.
    absorbed_emitted: Vec<(i64, i64)>,
}

#[derive(Default)]
struct Sessions {
    keys: Option<Box<dyn GroupValues>>,
    key_ids: Vec<u32>,
    /// Session id (its first slot) → session.
    live: BTreeMap<i64, Session>,
    by_key: Vec<Vec<i64>>,
    slot_owner: HashMap<i64, i64>,
    next_slot: i64,
}

/// Windowed hash aggregation over a stream of batches.
///
/// Input batches hold the group key columns first (`group_count` of them), then the columns the
/// aggregates read; the event time travels beside them as its own column.
pub struct WindowAggregator {
    options: WindowOptions,
    input_schema: SchemaRef,
    state_input_schema: SchemaRef,
    group_count: usize,
    /// Aggregates over the input (the state's are shifted past its slot column).
    aggregates: Vec<AggregateExpr>,
    state_aggregates: Vec<AggregateExpr>,
    state: HashAggregator,
    /// Per-pane state of the `EMIT FINAL` time-window path (see `window_panes`); the general
    /// path keeps everything in `state`.
    panes: Option<panes::PaneStore>,
    /// Batch number in which each state group first received a row.
    first_batch: Vec<u64>,
    batch_number: u64,
    watermark_ms: i64,
    max_time_ms: i64,
    open_windows: BTreeSet<i64>,
    retained_windows: BTreeSet<i64>,
    touched_windows: BTreeSet<i64>,
    sessions: Sessions,
    output_schema: SchemaRef,
    window_type: Option<DataType>,
    with_change_column: bool,
    metrics: WindowMetrics,
    times: Vec<Option<i64>>,
    windows_scratch: Vec<i64>,
}

impl std::fmt::Debug for WindowAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowAggregator")
            .field("options", &self.options)
            .field("metrics", &self.metrics)
            .finish()
    }
}

const GLOBAL_WINDOW: i64 = 0;

impl WindowAggregator {
    /// An operator over inputs of `input_schema` (group keys first), with event times of
    /// `event_time_type`.
    pub fn try_new(
        options: WindowOptions,
        input_schema: SchemaRef,
        group_count: usize,
        aggregates: Vec<AggregateExpr>,
        event_time_type: &DataType,
    ) -> Result<Self> {
        options.spec.validate()?;
        for (what, value) in [
            ("max out-of-orderness", options.max_out_of_orderness_ms),
            ("allowed lateness", options.allowed_lateness_ms),
        ] {
            if value < 0 {
                return Err(QuiverError::Config(format!(
                    "{what} must not be negative, found {value} ms"
                )));
            }
        }
        if let LatePolicy::UpdateClosed { horizon_ms } = options.late_policy {
            if horizon_ms < 0 {
                return Err(QuiverError::Config(format!(
                    "update horizon must not be negative, found {horizon_ms} ms"
                )));
            }
            if matches!(
                options.spec,
                WindowSpec::Session { .. } | WindowSpec::Global
            ) {
                return Err(QuiverError::Unsupported(
                    "late policy UpdateClosed with session or global windows; use Drop or \
                     DeadLetter, or allowed lateness to keep sessions open longer"
                        .into(),
                ));
            }
        }
        // Hopping windows merge panes and sessions merge fragments in time or creation order,
        // not arrival order, so order-sensitive aggregates would be silently reordered.
        if matches!(
            options.spec,
            WindowSpec::Hopping { .. } | WindowSpec::Session { .. }
        ) {
            if let Some(sensitive) = aggregates.iter().find(|a| {
                matches!(
                    a.function,
                    quiver_kernels::AggregateFunction::FirstValue
                        | quiver_kernels::AggregateFunction::LastValue
                        | quiver_kernels::AggregateFunction::StringAgg
                )
            }) {
                return Err(QuiverError::Unsupported(format!(
                    "{} in hopping or session windows (it depends on arrival order, which \
                     pane and session merges do not keep); use a tumbling window",
                    sensitive.name
                )));
            }
        }
        if group_count > input_schema.fields().len() {
            return Err(QuiverError::Internal(format!(
                "{group_count} group keys in an input of {} columns",
                input_schema.fields().len()
            )));
        }
        if !quiver_kernels::window::is_event_time_type(event_time_type) {
            return Err(QuiverError::Unsupported(format!(
                "event time of type {event_time_type}; a timestamp, date or integer \
                 milliseconds column is expected"
            )));
        }
        let mut state_fields = vec![Field::new("__slot", DataType::Int64, false)];
        state_fields.extend(input_schema.fields().iter().map(|f| f.as_ref().clone()));
        let state_input_schema = Arc::new(Schema::new(state_fields));
        let pane_path = matches!(
            options.spec,
            WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. }
        ) && options.emit == EmitMode::Final
            && !matches!(options.late_policy, LatePolicy::UpdateClosed { .. });
        let state_aggregates: Vec<AggregateExpr> = aggregates
            .iter()
            .map(|a| {
                let mut shifted = a.clone();
                shifted.input = a.input.map(|i| i + 1);
                shifted.filter = a.filter.map(|i| i + 1);
                shifted
            })
            .collect();
        let state = HashAggregator::try_new(
            state_input_schema.clone(),
            (0..=group_count).collect(),
            state_aggregates.clone(),
        )?;
        let window_type = match options.spec {
            WindowSpec::Global => None,
            _ => Some(match event_time_type {
                DataType::Timestamp(_, zone) => {
                    DataType::Timestamp(TimeUnit::Millisecond, zone.clone())
                }
                DataType::Date32 | DataType::Date64 => {
                    DataType::Timestamp(TimeUnit::Millisecond, None)
                }
                _ => DataType::Int64,
            }),
        };
        let with_change_column = options.emit == EmitMode::Changes
            || matches!(options.late_policy, LatePolicy::UpdateClosed { .. });
        let mut fields = Vec::new();
        if let Some(window_type) = &window_type {
            fields.push(Field::new("window_start", window_type.clone(), true));
            fields.push(Field::new("window_end", window_type.clone(), true));
        }
        // Keys and aggregates as the state aggregator outputs them, without the slot.
        for field in &state.output_schema().fields()[1..] {
            fields.push(field.as_ref().clone().with_nullable(true));
        }
        if with_change_column {
            fields.push(Field::new("change", DataType::Utf8, false));
        }
        let mut sessions = Sessions::default();
        if matches!(options.spec, WindowSpec::Session { .. }) && group_count > 0 {
            let key_types: Vec<DataType> = input_schema.fields()[..group_count]
                .iter()
                .map(|f| f.data_type().clone())
                .collect();
            sessions.keys = Some(new_group_values(&key_types)?);
        }
        Ok(WindowAggregator {
            options,
            input_schema,
            state_input_schema,
            group_count,
            aggregates,
            state_aggregates,
            state,
            panes: pane_path.then(panes::PaneStore::default),
            first_batch: Vec::new(),
            batch_number: 0,
            watermark_ms: i64::MIN,
            max_time_ms: i64::MIN,
            open_windows: BTreeSet::new(),
            retained_windows: BTreeSet::new(),
            touched_windows: BTreeSet::new(),
            sessions,
            output_schema: Arc::new(Schema::new(fields)),
            window_type,
            with_change_column,
            metrics: WindowMetrics::default(),
            times: Vec::new(),
            windows_scratch: Vec::new(),
        })
    }

    /// Schema of emitted batches: `window_start`, `window_end` (time and session windows), group
    /// keys, aggregates, and `change` (see the module docs).
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Row accounting so far.
    pub fn metrics(&self) -> &WindowMetrics {
        &self.metrics
    }

    /// Bytes of aggregation state held.
    pub fn state_size(&self) -> usize {
        self.state.size()
            + self.first_batch.capacity() * 8
            + self.panes.as_ref().map_or(0, |p| p.size())
    }

    /// (slot, group) states held: per window, pane or session fragment.
    pub fn state_groups(&self) -> usize {
        self.state.num_groups() + self.panes.as_ref().map_or(0, |p| p.groups())
    }

    fn empty_aggregator(&self) -> Result<HashAggregator> {
        HashAggregator::try_new(
            self.state_input_schema.clone(),
            (0..=self.group_count).collect(),
            self.state_aggregates.clone(),
        )
    }

    fn row_watermark(&self) -> i64 {
        self.watermark_ms.max(
            self.max_time_ms
                .saturating_sub(self.options.max_out_of_orderness_ms),
        )
    }

    /// The watermark before each row of a batch with event times `times`, and the batch's
    /// largest event time.
    pub(crate) fn row_watermarks(&self, times: &[Option<i64>]) -> (Vec<i64>, i64) {
        let delay = self.options.max_out_of_orderness_ms;
        let mut max_time = self.max_time_ms;
        let mut marks = Vec::with_capacity(times.len());
        for time in times {
            marks.push(self.watermark_ms.max(max_time.saturating_sub(delay)));
            if let Some(time) = time {
                max_time = max_time.max(*time);
            }
        }
        (marks, max_time)
    }

    /// Aggregates one batch (`input` of the input schema, `event_time` beside it) and returns
    /// what that emits.
    pub fn push(&mut self, input: &RecordBatch, event_time: &ArrayRef) -> Result<WindowOutput> {
        if input.num_columns() != self.input_schema.fields().len()
            || event_time.len() != input.num_rows()
        {
            return Err(QuiverError::Internal(format!(
                "window input of {} columns and {} event times for {} rows; expected {} columns",
                input.num_columns(),
                event_time.len(),
                input.num_rows(),
                self.input_schema.fields().len()
            )));
        }
        let mut times = std::mem::take(&mut self.times);
        event_times_ms(event_time, &mut times)?;
        let (marks, batch_max_time) = self.row_watermarks(&times);
        let output = self.push_prepared(input, &times, &marks, batch_max_time);
        self.times = times;
        output
    }

    /// [`WindowAggregator::push`] with event times in milliseconds, the watermark before each
    /// row and the largest event time of the whole batch given (by a caller that splits one
    /// stream's batches across several operators, so they all see the stream's watermark).
    pub(crate) fn push_prepared(
        &mut self,
        input: &RecordBatch,
        times: &[Option<i64>],
        marks: &[i64],
        batch_max_time: i64,
    ) -> Result<WindowOutput> {
        if times.len() != input.num_rows() || marks.len() != input.num_rows() {
            return Err(QuiverError::Internal(
                "event times and watermarks do not match the batch".into(),
            ));
        }
        self.batch_number += 1;
        self.touched_windows.clear();
        let rows = input.num_rows();
        self.metrics.rows_in += rows as u64;
        let mut slots: Vec<i64> = Vec::with_capacity(rows);
        let mut accepted = vec![true; rows];
        let mut rejected = Vec::new();
        let result = match self.options.spec {
            WindowSpec::Session { gap_ms } => self.assign_sessions(
                input,
                (times, marks),
                gap_ms,
                &mut slots,
                &mut accepted,
                &mut rejected,
            ),
            _ => self.assign_panes(times, marks, &mut slots, &mut accepted, &mut rejected),
        };
        result?;
        self.max_time_ms = self.max_time_ms.max(batch_max_time);
        self.watermark_ms = self.row_watermark();
        if self.max_time_ms != i64::MIN {
            self.metrics.watermark_ms = Some(self.watermark_ms);
        }
        let accepted_rows = slots.len();
        self.metrics.rows_aggregated += accepted_rows as u64;
        if self.panes.is_some() {
            if accepted_rows > 0 {
                let kept = if accepted_rows == rows {
                    input.clone()
                } else {
                    filter_rows(input, accepted)?
                };
                self.update_panes(&kept, &slots)?;
            }
            let batches = self.close_panes(false)?;
            return Ok(WindowOutput { batches, rejected });
        }
        let mut touched = Vec::new();
        if accepted_rows > 0 {
            let kept = if accepted_rows == rows {
                input.clone()
            } else {
                filter_rows(input, accepted)?
            };
            let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(slots))];
            columns.extend(kept.columns().iter().cloned());
            let options = RecordBatchOptions::new().with_row_count(Some(accepted_rows));
            let state_input = RecordBatch::try_new_with_options(
                self.state_input_schema.clone(),
                columns,
                &options,
            )?;
            self.state.update(&state_input)?;
            self.first_batch
                .resize(self.state.num_groups(), self.batch_number);
            touched = vec![false; self.state.num_groups()];
            for &group in self.state.last_group_ids() {
                touched[group as usize] = true;
            }
        }
        let batches = self.close_and_emit(&touched, false)?;
        Ok(WindowOutput { batches, rejected })
    }

    fn reject(&mut self, rejected: &mut Vec<Rejected>, row: usize, reason: String) {
        self.metrics.rows_dead_lettered += 1;
        rejected.push(Rejected { row, reason });
    }

    /// Late-row policy for a row whose earliest window ends at `end` (None for sessions);
    /// returns whether the row is aggregated anyway.
    fn late(
        &mut self,
        rejected: &mut Vec<Rejected>,
        row: usize,
        time_ms: i64,
        watermark_ms: i64,
        closes_at_ms: i64,
    ) -> bool {
        match self.options.late_policy {
            LatePolicy::Drop => {
                self.metrics.rows_late_dropped += 1;
                false
            }
            LatePolicy::DeadLetter => {
                self.reject(
                    rejected,
                    row,
                    format!(
                        "late row: event time {time_ms} ms is behind the watermark \
                         {watermark_ms} ms; its window closed at {closes_at_ms} ms"
                    ),
                );
                false
            }
            LatePolicy::UpdateClosed { horizon_ms } => {
                if closes_at_ms.saturating_add(horizon_ms) > watermark_ms {
                    self.metrics.rows_late_updated += 1;
                    true
                } else {
                    self.metrics.rows_late_dropped += 1;
                    false
                }
            }
        }
    }

    fn assign_panes(
        &mut self,
        times: &[Option<i64>],
        marks: &[i64],
        slots: &mut Vec<i64>,
        accepted: &mut [bool],
        rejected: &mut Vec<Rejected>,
    ) -> Result<()> {
        let spec = self.options.spec;
        let lateness = self.options.allowed_lateness_ms;
        let pane_ms = spec.pane_ms();
        // The pane of the previous row, its range and earliest window end: consecutive rows
        // mostly share a pane, so the division and window walk run once per pane change.
        let mut current: Option<(i64, i64, i64)> = None;
        let mut windows = std::mem::take(&mut self.windows_scratch);
        for (row, time) in times.iter().enumerate() {
            let Some(time) = *time else {
                accepted[row] = false;
                self.reject(rejected, row, "event time is NULL".into());
                continue;
            };
            let (pane, closes_at) = match (pane_ms, current) {
                (None, _) => (GLOBAL_WINDOW, i64::MAX),
                (Some(_), Some((start, end, closes_at))) if start <= time && time < end => {
                    (start, closes_at)
                }
                (Some(pane_ms), _) => {
                    let start = spec.pane_start(time)?;
                    let closes_at = spec.earliest_window_end(time)?.saturating_add(lateness);
                    current = Some((start, start.saturating_add(pane_ms), closes_at));
                    (start, closes_at)
                }
            };
            let watermark = marks[row];
            let is_late = pane_ms.is_some() && closes_at <= watermark;
            if is_late && !self.late(rejected, row, time, watermark, closes_at) {
                accepted[row] = false;
                continue;
            }
            if slots.last() != Some(&pane) || slots.is_empty() {
                if pane_ms.is_some() {
                    spec.windows_of_pane(pane, &mut windows)?;
                } else {
                    windows.clear();
                    windows.push(GLOBAL_WINDOW);
                }
                for &window in &windows {
                    self.touched_windows.insert(window);
                    if !self.retained_windows.contains(&window) {
                        self.open_windows.insert(window);
                    }
                }
            }
            slots.push(pane);
        }
        self.windows_scratch = windows;
        Ok(())
    }

    fn assign_sessions(
        &mut self,
        input: &RecordBatch,
        (times, marks): (&[Option<i64>], &[i64]),
        gap_ms: i64,
        slots: &mut Vec<i64>,
        accepted: &mut [bool],
        rejected: &mut Vec<Rejected>,
    ) -> Result<()> {
        let lateness = self.options.allowed_lateness_ms;
        let mut key_ids = std::mem::take(&mut self.sessions.key_ids);
        match &mut self.sessions.keys {
            Some(keys) => {
                keys.intern(&input.columns()[..self.group_count], &mut key_ids)?;
                self.sessions.by_key.resize(keys.len(), Vec::new());
            }
            None => {
                key_ids.clear();
                key_ids.resize(input.num_rows(), 0);
                self.sessions.by_key.resize(1, Vec::new());
            }
        }
        let mut overlapping: Vec<i64> = Vec::new();
        for (row, time) in times.iter().enumerate() {
            let Some(time) = *time else {
                accepted[row] = false;
                self.reject(rejected, row, "event time is NULL".into());
                continue;
            };
            let key = key_ids[row];
            let watermark = marks[row];
            let row_end = time.saturating_add(gap_ms);
            // Open sessions of this key that the row's own span [time, time + gap) touches.
            overlapping.clear();
            let mut start = time;
            let mut last = time;
            for &id in &self.sessions.by_key[key as usize] {
                let Some(session) = self.sessions.live.get(&id) else {
                    continue;
                };
                let end = session.last.saturating_add(gap_ms);
                let closed = end.saturating_add(lateness) <= watermark;
                if !closed && session.start < row_end && time < end {
                    overlapping.push(id);
                    start = start.min(session.start);
                    last = last.max(session.last);
                }
            }
            if overlapping.is_empty() {
                let closes_at = row_end.saturating_add(lateness);
                if closes_at <= watermark && !self.late(rejected, row, time, watermark, closes_at) {
                    accepted[row] = false;
                    continue;
                }
                let id = self.sessions.next_slot;
                self.sessions.next_slot += 1;
                self.sessions.live.insert(
                    id,
                    Session {
                        key,
                        start,
                        last,
                        slots: vec![id],
                        touched_batch: self.batch_number,
                        emitted: None,
                        absorbed_emitted: Vec::new(),
                    },
                );
                self.sessions.slot_owner.insert(id, id);
                self.sessions.by_key[key as usize].push(id);
                slots.push(id);
            } else {
                overlapping.sort_unstable();
                let target = overlapping[0];
                for &absorbed_id in &overlapping[1..] {
                    let Some(absorbed) = self.sessions.live.remove(&absorbed_id) else {
                        continue;
                    };
                    self.sessions.by_key[key as usize].retain(|&id| id != absorbed_id);
                    for &slot in &absorbed.slots {
                        self.sessions.slot_owner.insert(slot, target);
                    }
                    let session = self.sessions.live.get_mut(&target).ok_or_else(|| {
                        QuiverError::Internal(format!("session {target} vanished"))
                    })?;
                    session.slots.extend(absorbed.slots);
                    session.absorbed_emitted.extend(absorbed.absorbed_emitted);
                    session.absorbed_emitted.extend(absorbed.emitted);
                }
                let session =
                    self.sessions.live.get_mut(&target).ok_or_else(|| {
                        QuiverError::Internal(format!("session {target} vanished"))
                    })?;
                session.start = start;
                session.last = last;
                session.touched_batch = self.batch_number;
                slots.push(target);
            }
        }
        self.sessions.key_ids = key_ids;
        Ok(())
    }

    /// Moves the watermark to at least `watermark_ms` and emits the windows that closes.
    pub fn advance_watermark(&mut self, watermark_ms: i64) -> Result<Vec<RecordBatch>> {
        self.watermark_ms = self.watermark_ms.max(watermark_ms);
        self.metrics.watermark_ms = Some(self.watermark_ms);
        self.touched_windows.clear();
        if self.panes.is_some() {
            return self.close_panes(false);
        }
        self.close_and_emit(&[], false)
    }

    /// Ends the input: closes every window and emits what remains.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        self.touched_windows.clear();
        if self.panes.is_some() {
            return self.close_panes(true);
        }
        self.close_and_emit(&[], true)
    }

    fn window_end(&self, window: i64) -> i64 {
        match self.options.spec.size_ms() {
            Some(size) => window.saturating_add(size),
            None => i64::MAX,
        }
    }

    /// Closes windows under the current watermark (all when `finishing`), emits what the mode
    /// asks for, and frees state no live window needs. `touched` flags the state groups the
    /// current batch changed.
    fn close_and_emit(&mut self, touched: &[bool], finishing: bool) -> Result<Vec<RecordBatch>> {
        if matches!(self.options.spec, WindowSpec::Session { .. }) {
            return self.close_and_emit_sessions(touched, finishing);
        }
        let watermark = self.watermark_ms;
        let lateness = self.options.allowed_lateness_ms;
        let horizon = match self.options.late_policy {
            LatePolicy::UpdateClosed { horizon_ms } => Some(horizon_ms),
            _ => None,
        };
        let closes_at = |this: &Self, window: i64| this.window_end(window).saturating_add(lateness);
        // Windows closed earlier and changed by late rows in this batch.
        let reopened: BTreeSet<i64> = self
            .touched_windows
            .intersection(&self.retained_windows)
            .copied()
            .collect();
        let mut closing = BTreeSet::new();
        while let Some(&window) = self.open_windows.first() {
            let closed = finishing
                || (self.options.spec != WindowSpec::Global
                    && closes_at(self, window) <= watermark);
            if !closed {
                break;
            }
            self.open_windows.pop_first();
            closing.insert(window);
            if let Some(horizon) = horizon {
                if !finishing && closes_at(self, window).saturating_add(horizon) > watermark {
                    self.retained_windows.insert(window);
                }
            }
        }
        let mut expired = false;
        while let Some(&window) = self.retained_windows.first() {
            let keep = !finishing
                && horizon.is_some_and(|h| closes_at(self, window).saturating_add(h) > watermark);
            if keep {
                break;
            }
            self.retained_windows.pop_first();
            expired = true;
        }
        let candidates: BTreeSet<i64> = match self.options.emit {
            EmitMode::Final => closing.union(&reopened).copied().collect(),
            EmitMode::Changes => self.touched_windows.clone(),
        };
        if candidates.is_empty() && closing.is_empty() && !expired {
            return Ok(Vec::new());
        }
        let spec = self.options.spec;
        let mut windows = std::mem::take(&mut self.windows_scratch);
        let state = self.state.state(EmitTo::All)?;
        let panes = state.column(0).as_primitive::<Int64Type>();
        let mut contributions = Contributions::default();
        let mut keep_rows: Vec<u32> = Vec::new();
        for (row, &pane) in panes.values().iter().enumerate() {
            if spec == WindowSpec::Global {
                windows.clear();
                windows.push(GLOBAL_WINDOW);
            } else {
                spec.windows_of_pane(pane, &mut windows)?;
            }
            let mut live = false;
            for &window in &windows {
                if candidates.contains(&window) {
                    contributions.push(row, window, touched, &self.first_batch);
                }
                live |=
                    self.open_windows.contains(&window) || self.retained_windows.contains(&window);
            }
            if live {
                keep_rows.push(row as u32);
            }
        }
        self.windows_scratch = windows;
        let batch_number = self.batch_number;
        let emit = self.options.emit;
        let emitted = self.emit(&state, &contributions, |window, touched, first_batch| {
            let fresh = first_batch == batch_number;
            match emit {
                EmitMode::Final if closing.contains(&window) => Some(ChangeKind::Insert),
                EmitMode::Final | EmitMode::Changes if touched => Some(if fresh {
                    ChangeKind::Insert
                } else {
                    ChangeKind::Update
                }),
                _ => None,
            }
        })?;
        self.keep_state(&state, &keep_rows)?;
        let size = self.options.spec.size_ms();
        let bounds = |window: i64| {
            let end = size.map_or(i64::MAX, |size| window.saturating_add(size));
            (window, end)
        };
        let batch = self.assemble(emitted, bounds, Vec::new())?;
        Ok(batch.into_iter().collect())
    }

    fn close_and_emit_sessions(
        &mut self,
        touched: &[bool],
        finishing: bool,
    ) -> Result<Vec<RecordBatch>> {
        let WindowSpec::Session { gap_ms } = self.options.spec else {
            return Err(QuiverError::Internal(
                "session close without sessions".into(),
            ));
        };
        let watermark = self.watermark_ms;
        let lateness = self.options.allowed_lateness_ms;
        let closing: BTreeSet<i64> = self
            .sessions
            .live
            .iter()
            .filter(|(_, s)| {
                finishing || s.last.saturating_add(gap_ms).saturating_add(lateness) <= watermark
            })
            .map(|(&id, _)| id)
            .collect();
        let candidates: BTreeSet<i64> = match self.options.emit {
            EmitMode::Final => closing.clone(),
            EmitMode::Changes => self
                .sessions
                .live
                .iter()
                // Only a push touches sessions; the watermark and finish never do.
                .filter(|(_, s)| !touched.is_empty() && s.touched_batch == self.batch_number)
                .map(|(&id, _)| id)
                .collect(),
        };
        if candidates.is_empty() && closing.is_empty() {
            return Ok(Vec::new());
        }
        let state = self.state.state(EmitTo::All)?;
        let slots = state.column(0).as_primitive::<Int64Type>();
        let mut contributions = Contributions::default();
        let mut keep_rows: Vec<u32> = Vec::new();
        // (emitted now, closing) per session touched by this step, for the per-row lookups.
        let mut status: HashMap<i64, (bool, bool)> = HashMap::new();
        for &id in &candidates {
            status.entry(id).or_default().0 = true;
        }
        for &id in &closing {
            status.entry(id).or_default().1 = true;
        }
        for (row, slot) in slots.values().iter().enumerate() {
            let owner = *self.sessions.slot_owner.get(slot).ok_or_else(|| {
                QuiverError::Internal(format!("state slot {slot} has no session"))
            })?;
            let (emitted, closes) = status.get(&owner).copied().unwrap_or_default();
            if emitted {
                contributions.push(row, owner, touched, &self.first_batch);
            }
            if !closes {
                keep_rows.push(row as u32);
            }
        }
        let emit = self.options.emit;
        let sessions = &self.sessions.live;
        let session_bounds: HashMap<i64, (i64, i64)> = candidates
            .iter()
            .filter_map(|id| {
                sessions
                    .get(id)
                    .map(|s| (*id, (s.start, s.last.saturating_add(gap_ms))))
            })
            .collect();
        let mut deletes: Vec<(i64, i64, i64)> = Vec::new();
        let mut kinds: HashMap<i64, ChangeKind> = HashMap::new();
        for &id in &candidates {
            let Some(session) = sessions.get(&id) else {
                continue;
            };
            let kind = match (emit, session.emitted) {
                (EmitMode::Final, _) | (EmitMode::Changes, None) => ChangeKind::Insert,
                (EmitMode::Changes, Some((start, end))) => {
                    // A session is identified by its bounds: once they move, the old row is
                    // retracted (two sessions of a key can share a start, never both bounds).
                    if (start, end) == (session.start, session.last.saturating_add(gap_ms)) {
                        ChangeKind::Update
                    } else {
                        deletes.push((id, start, end));
                        ChangeKind::Insert
                    }
                }
            };
            for &(start, end) in &session.absorbed_emitted {
                deletes.push((id, start, end));
            }
            kinds.insert(id, kind);
        }
        let emitted = self.emit(&state, &contributions, |id, _, _| kinds.get(&id).copied())?;
        self.keep_state(&state, &keep_rows)?;
        let batch = self.assemble(
            emitted,
            |id| session_bounds.get(&id).copied().unwrap_or((0, 0)),
            deletes,
        )?;
        if emit == EmitMode::Changes {
            for (id, bounds) in &session_bounds {
                if let Some(session) = self.sessions.live.get_mut(id) {
                    session.emitted = Some(*bounds);
                    session.absorbed_emitted.clear();
                }
            }
        }
        for id in &closing {
            if let Some(session) = self.sessions.live.remove(id) {
                self.sessions.by_key[session.key as usize].retain(|s| s != id);
                for slot in &session.slots {
                    self.sessions.slot_owner.remove(slot);
                }
            }
        }
        Ok(batch.into_iter().collect())
    }

    /// Merges the contributing state rows per (window, keys), evaluates them and keeps the rows
    /// `kind_of(window, touched, first_batch)` selects.
    fn emit(
        &self,
        state: &RecordBatch,
        contributions: &Contributions,
        kind_of: impl Fn(i64, bool, u64) -> Option<ChangeKind>,
    ) -> Result<Option<Emitted>> {
        if contributions.rows.is_empty() {
            return Ok(None);
        }
        let indices = UInt32Array::from(contributions.rows.clone());
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(Int64Array::from(contributions.windows.clone()))];
        for column in &state.columns()[1..] {
            columns.push(take(column, &indices, None)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
        let remapped = RecordBatch::try_new_with_options(state.schema(), columns, &options)?;
        let mut merger = self.empty_aggregator()?;
        merger.merge(&remapped)?;
        let groups = merger.num_groups();
        let mut touched = vec![false; groups];
        let mut first_batch = vec![u64::MAX; groups];
        for (i, &group) in merger.last_group_ids().iter().enumerate() {
            let group = group as usize;
            touched[group] |= contributions.touched[i];
            first_batch[group] = first_batch[group].min(contributions.first_batch[i]);
        }
        let result = merger.evaluate(EmitTo::All)?;
        let windows = result.column(0).as_primitive::<Int64Type>();
        let mut keep = Vec::new();
        let mut kinds = Vec::new();
        for (group, &window) in windows.values().iter().enumerate() {
            if let Some(kind) = kind_of(window, touched[group], first_batch[group]) {
                keep.push(group as u32);
                kinds.push(kind);
            }
        }
        if keep.is_empty() {
            return Ok(None);
        }
        let result = take_record_batch(&result, &UInt32Array::from(keep))?;
        Ok(Some(Emitted { result, kinds }))
    }

    /// Replaces the state with the rows in `keep_rows` (in order, so group ids keep their order).
    fn keep_state(&mut self, state: &RecordBatch, keep_rows: &[u32]) -> Result<()> {
        let mut fresh = self.empty_aggregator()?;
        if !keep_rows.is_empty() {
            let kept = if keep_rows.len() == state.num_rows() {
                state.clone()
            } else {
                take_record_batch(state, &UInt32Array::from(keep_rows.to_vec()))?
            };
            fresh.merge(&kept)?;
        }
        if fresh.num_groups() != keep_rows.len() {
            return Err(QuiverError::Internal(format!(
                "state rebuild kept {} of {} groups",
                fresh.num_groups(),
                keep_rows.len()
            )));
        }
        self.first_batch = keep_rows
            .iter()
            .map(|&row| self.first_batch.get(row as usize).copied().unwrap_or(0))
            .collect();
        self.state = fresh;
        Ok(())
    }

    /// The output batch: window bounds, keys, aggregates, change kind; delete rows (sessions)
    /// copy the keys of their session's row with NULL aggregates. Sorted by window start.
    fn assemble(
        &mut self,
        emitted: Option<Emitted>,
        bounds: impl Fn(i64) -> (i64, i64),
        deletes: Vec<(i64, i64, i64)>,
    ) -> Result<Option<RecordBatch>> {
        let Some(Emitted { result, mut kinds }) = emitted else {
            return Ok(None);
        };
        let windows: Vec<i64> = result
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .to_vec();
        let mut rows: Vec<u32> = (0..result.num_rows() as u32).collect();
        let mut starts: Vec<i64> = Vec::with_capacity(rows.len());
        let mut ends: Vec<i64> = Vec::with_capacity(rows.len());
        for &window in &windows {
            let (start, end) = bounds(window);
            starts.push(start);
            ends.push(end);
        }
        let normal_rows = rows.len();
        if !deletes.is_empty() {
            let row_of: HashMap<i64, u32> = windows
                .iter()
                .enumerate()
                .map(|(row, &w)| (w, row as u32))
                .collect();
            for (id, start, end) in deletes {
                if let Some(&row) = row_of.get(&id) {
                    rows.push(row);
                    starts.push(start);
                    ends.push(end);
                    kinds.push(ChangeKind::Delete);
                }
            }
        }
        let indices = UInt32Array::from(rows);
        let mut columns: Vec<ArrayRef> = Vec::new();
        if let Some(window_type) = &self.window_type {
            columns.push(cast(&Int64Array::from(starts.clone()), window_type)?);
            columns.push(cast(&Int64Array::from(ends), window_type)?);
        }
        let key_end = 1 + self.group_count;
        for (i, column) in result.columns()[1..].iter().enumerate() {
            let taken = take(column, &indices, None)?;
            if i + 1 >= key_end && indices.len() > normal_rows {
                // Aggregates of delete rows are NULL.
                let mask: BooleanArray =
                    (0..indices.len()).map(|r| Some(r < normal_rows)).collect();
                let nulls = new_null_array(taken.data_type(), taken.len());
                columns.push(arrow::compute::kernels::zip::zip(&mask, &taken, &nulls)?);
            } else {
                columns.push(taken);
            }
        }
        if self.with_change_column {
            columns.push(Arc::new(StringArray::from_iter_values(
                kinds.iter().map(|k| k.as_str()),
            )) as ArrayRef);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
        let batch =
            RecordBatch::try_new_with_options(self.output_schema.clone(), columns, &options)?;
        let batch = if self.window_type.is_some() {
            // By window start; a retraction goes before the insert that replaces it (a merged
            // session can keep the start of the session it absorbed). Rust's sort is stable.
            let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
            order.sort_by_key(|&i| (starts[i as usize], kinds[i as usize] != ChangeKind::Delete));
            take_record_batch(&batch, &UInt32Array::from(order))?
        } else {
            batch
        };
        self.metrics.rows_emitted += batch.num_rows() as u64;
        Ok(Some(batch))
    }
}

/// State rows feeding emitted windows: row, the window it feeds, and its change flags.
#[derive(Default)]
struct Contributions {
    rows: Vec<u32>,
    windows: Vec<i64>,
    touched: Vec<bool>,
    first_batch: Vec<u64>,
}

impl Contributions {
    fn push(&mut self, row: usize, window: i64, touched: &[bool], first_batch: &[u64]) {
        self.rows.push(row as u32);
        self.windows.push(window);
        self.touched
            .push(touched.get(row).copied().unwrap_or(false));
        self.first_batch
            .push(first_batch.get(row).copied().unwrap_or(0));
    }
}

struct Emitted {
    result: RecordBatch,
    kinds: Vec<ChangeKind>,
}

/// The rows of `batch` where `keep` is true (also for batches without columns, such as the
/// input of a `COUNT(*)`-only query).
pub(crate) fn filter_rows(batch: &RecordBatch, keep: Vec<bool>) -> Result<RecordBatch> {
    if batch.num_columns() > 0 {
        return Ok(filter_record_batch(batch, &BooleanArray::from(keep))?);
    }
    let rows = keep.iter().filter(|&&k| k).count();
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        Vec::new(),
        &options,
    )?)
}

/// The rows of `batch` at `indices` (also for batches without columns).
pub(crate) fn take_rows(batch: &RecordBatch, indices: Vec<u32>) -> Result<RecordBatch> {
    if batch.num_columns() > 0 {
        return Ok(take_record_batch(batch, &UInt32Array::from(indices))?);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        Vec::new(),
        &options,
    )?)
}
