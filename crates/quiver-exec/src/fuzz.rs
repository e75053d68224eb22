//! Checks the `window_differential` fuzz target and `cargo test` call: arbitrary bytes decode to
//! a window configuration and an event-time stream (out of order, late, NULL times, explicit
//! watermarks, batches cut anywhere); the window operator must agree with the naive reference.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use quiver_kernels::fuzz::FLOAT_RELATIVE_TOLERANCE;
use quiver_kernels::reference;
use quiver_kernels::window::WindowSpec;
use quiver_kernels::{AggregateExpr, AggregateFunction};

use crate::window::{EmitMode, LatePolicy, WindowAggregator, WindowOptions, WindowOutput};
use crate::window_parallel::PartitionedWindowAggregator;
use crate::window_reference::{
    apply_changelog_checked, millis_column, window_aggregate, StreamEvent,
};

/// A decoded case: configuration, input layout and the stream.
#[derive(Debug, Clone)]
pub struct WindowCase {
    /// Operator configuration.
    pub options: WindowOptions,
    /// Input schema: group keys, then `v` (Int64) and `x` (Float64).
    pub schema: SchemaRef,
    /// Number of group key columns.
    pub group_count: usize,
    /// Aggregates over the input.
    pub aggregates: Vec<AggregateExpr>,
    /// The stream.
    pub events: Vec<StreamEvent>,
}

/// Decodes bytes into a window case; every input gives a valid case.
pub fn decode_window_case(data: &[u8]) -> WindowCase {
    let mut choices = quiver_kernels::fuzz::Bytes::new(data);
    let spec = match choices.below(4) {
        0 => WindowSpec::Global,
        1 => {
            let size_ms = 1 + i64::from(choices.below(40));
            WindowSpec::Tumbling {
                size_ms,
                offset_ms: i64::from(choices.u8()) % size_ms,
            }
        }
        2 => {
            let size_ms = 1 + i64::from(choices.below(40));
            WindowSpec::Hopping {
                size_ms,
                advance_ms: 1 + i64::from(choices.u8()) % size_ms,
                offset_ms: i64::from(choices.below(7)),
            }
        }
        _ => WindowSpec::Session {
            gap_ms: 1 + i64::from(choices.below(20)),
        },
    };
    let time_windows = matches!(
        spec,
        WindowSpec::Tumbling { .. } | WindowSpec::Hopping { .. }
    );
    let late_policy = match choices.below(3) {
        0 => LatePolicy::Drop,
        2 if time_windows => LatePolicy::UpdateClosed {
            horizon_ms: i64::from(choices.below(40)),
        },
        _ => LatePolicy::DeadLetter,
    };
    let options = WindowOptions {
        spec,
        max_out_of_orderness_ms: i64::from(choices.below(30)),
        allowed_lateness_ms: i64::from(choices.below(10)),
        late_policy,
        emit: if choices.u8() & 1 == 0 {
            EmitMode::Final
        } else {
            EmitMode::Changes
        },
    };
    let group_count = usize::from(choices.below(3));
    let mut fields = Vec::new();
    for k in 0..group_count {
        let data_type = if k == 0 {
            DataType::Int64
        } else {
            DataType::Utf8
        };
        fields.push(Field::new(format!("k{k}"), data_type, true));
    }
    fields.push(Field::new("v", DataType::Int64, true));
    fields.push(Field::new("x", DataType::Float64, true));
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let v = group_count;
    let x = group_count + 1;
    let mut aggregates = vec![AggregateExpr::new(
        AggregateFunction::CountStar,
        None,
        "count",
    )];
    let menu = [
        (AggregateFunction::Sum, v),
        (AggregateFunction::Min, v),
        (AggregateFunction::Max, x),
        (AggregateFunction::Avg, x),
        (AggregateFunction::Count, v),
        (AggregateFunction::Sum, x),
        (AggregateFunction::VarSamp, x),
        (AggregateFunction::ApproxPercentile(0.75), x),
    ];
    let picks = choices.u8();
    for (i, (function, input)) in menu.into_iter().enumerate() {
        if picks & (1 << i) != 0 {
            aggregates.push(AggregateExpr::new(function, Some(input), format!("a{i}")));
        }
    }
    let mut events = Vec::new();
    let mut clock: i64 = i64::from(choices.u8()) - 100;
    while !choices.exhausted() && events.len() < 64 {
        if choices.below(8) == 0 {
            let mark = clock + i64::from(choices.below(60)) - 30;
            events.push(StreamEvent::Watermark(mark));
            continue;
        }
        let rows = usize::from(choices.below(12));
        let mut times = Vec::with_capacity(rows);
        let mut keys: Vec<Vec<Option<u8>>> = vec![Vec::with_capacity(rows); group_count];
        let mut values = Vec::with_capacity(rows);
        let mut floats = Vec::with_capacity(rows);
        for _ in 0..rows {
            let step = choices.u8();
            clock += i64::from(step & 7);
            // Mostly in order, sometimes behind by up to 63 ms, now and then NULL.
            let time = match step >> 3 {
                0 => None,
                1..=5 => Some(clock - i64::from(choices.below(64))),
                _ => Some(clock),
            };
            times.push(time);
            for key in &mut keys {
                let b = choices.u8();
                key.push((b & 7 != 0).then_some(b >> 6));
            }
            let b = choices.u8();
            values.push((b != 0).then_some(i64::from(b) - 128));
            let b = choices.u8();
            floats.push((b != 1).then(|| f64::from(b) / 4.0 - 30.0));
        }
        let mut columns: Vec<ArrayRef> = Vec::new();
        for (k, key) in keys.iter().enumerate() {
            if k == 0 {
                columns.push(Arc::new(Int64Array::from_iter(
                    key.iter().map(|v| v.map(i64::from)),
                )));
            } else {
                columns.push(Arc::new(StringArray::from_iter(
                    key.iter().map(|v| v.map(|id| format!("s{id}"))),
                )));
            }
        }
        columns.push(Arc::new(Int64Array::from(values)));
        columns.push(Arc::new(Float64Array::from(floats)));
        let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows));
        let Ok(batch) = RecordBatch::try_new_with_options(schema.clone(), columns, &options) else {
            continue;
        };
        events.push(StreamEvent::Rows(batch, millis_column(&times)));
    }
    WindowCase {
        options,
        schema,
        group_count,
        aggregates,
        events,
    }
}

/// What the operator produced for a case: changelog-applied rows, metrics, and rejected rows as
/// (event number, row).
pub type WindowRun = (
    Vec<reference::RefRow>,
    crate::window::WindowMetrics,
    Vec<(usize, usize)>,
);

/// Runs the operator over the case; returns the changelog-applied rows, the metrics and the
/// rejected rows as (event number, row).
pub fn run_window_case(case: &WindowCase) -> quiver_core::Result<WindowRun> {
    let (output, metrics, rejected) = run_window_events(case, None)?;
    let windowed = case.options.spec != WindowSpec::Global;
    let rows = apply_changelog_checked(&output, windowed, case.group_count, true)?;
    Ok((rows, metrics, rejected))
}

/// Raw output batches, metrics and rejected rows of a run.
pub type WindowEvents = (
    Vec<RecordBatch>,
    crate::window::WindowMetrics,
    Vec<(usize, usize)>,
);

/// Runs the operator over the case, checkpointing before event `restart_at` and continuing in
/// a fresh operator restored from the checkpoint; returns the raw output batches.
pub fn run_window_events(
    case: &WindowCase,
    restart_at: Option<usize>,
) -> quiver_core::Result<WindowEvents> {
    let new_operator = || {
        WindowAggregator::try_new(
            case.options,
            case.schema.clone(),
            case.group_count,
            case.aggregates.clone(),
            &DataType::Int64,
        )
    };
    let mut operator = new_operator()?;
    let mut rejected = Vec::new();
    let output = drive(
        case,
        &mut operator,
        &mut rejected,
        |operator, event_number| {
            if restart_at == Some(event_number) {
                let bytes = operator.checkpoint()?;
                *operator = new_operator()?;
                operator.restore(&bytes)?;
            }
            Ok(())
        },
    )?;
    Ok((output, operator.metrics().clone(), rejected))
}

/// The operations the stream driver needs, shared by one operator and its partitioned form.
trait WindowStream {
    fn push(&mut self, batch: &RecordBatch, times: &ArrayRef) -> quiver_core::Result<WindowOutput>;
    fn advance_watermark(&mut self, mark: i64) -> quiver_core::Result<Vec<RecordBatch>>;
    fn finish(&mut self) -> quiver_core::Result<Vec<RecordBatch>>;
    fn state_groups(&self) -> usize;
}

impl WindowStream for WindowAggregator {
    fn push(&mut self, batch: &RecordBatch, times: &ArrayRef) -> quiver_core::Result<WindowOutput> {
        WindowAggregator::push(self, batch, times)
    }
    fn advance_watermark(&mut self, mark: i64) -> quiver_core::Result<Vec<RecordBatch>> {
        WindowAggregator::advance_watermark(self, mark)
    }
    fn finish(&mut self) -> quiver_core::Result<Vec<RecordBatch>> {
        WindowAggregator::finish(self)
    }
    fn state_groups(&self) -> usize {
        WindowAggregator::state_groups(self)
    }
}

impl WindowStream for PartitionedWindowAggregator {
    fn push(&mut self, batch: &RecordBatch, times: &ArrayRef) -> quiver_core::Result<WindowOutput> {
        PartitionedWindowAggregator::push(self, batch, times)
    }
    fn advance_watermark(&mut self, mark: i64) -> quiver_core::Result<Vec<RecordBatch>> {
        PartitionedWindowAggregator::advance_watermark(self, mark)
    }
    fn finish(&mut self) -> quiver_core::Result<Vec<RecordBatch>> {
        PartitionedWindowAggregator::finish(self)
    }
    fn state_groups(&self) -> usize {
        PartitionedWindowAggregator::state_groups(self)
    }
}

/// Feeds the case's events to `operator` (calling `before_event` first for each), then finishes;
/// returns every output batch, records rejected rows as (event number, row), and fails if any
/// state is left after finish.
fn drive<S: WindowStream>(
    case: &WindowCase,
    operator: &mut S,
    rejected: &mut Vec<(usize, usize)>,
    mut before_event: impl FnMut(&mut S, usize) -> quiver_core::Result<()>,
) -> quiver_core::Result<Vec<RecordBatch>> {
    let mut output = Vec::new();
    for (event_number, event) in case.events.iter().enumerate() {
        before_event(operator, event_number)?;
        match event {
            StreamEvent::Rows(batch, times) => {
                let out = operator.push(batch, times)?;
                output.extend(out.batches);
                rejected.extend(out.rejected.iter().map(|r| (event_number, r.row)));
            }
            StreamEvent::Watermark(mark) => output.extend(operator.advance_watermark(*mark)?),
        }
    }
    output.extend(operator.finish()?);
    if operator.state_groups() != 0 {
        return Err(quiver_core::QuiverError::Internal(format!(
            "{} state groups left after finish",
            operator.state_groups()
        )));
    }
    Ok(output)
}

/// Runs the case through `partitions` hash partitions.
pub fn run_partitioned_case(
    case: &WindowCase,
    partitions: usize,
) -> quiver_core::Result<WindowRun> {
    let mut operator = PartitionedWindowAggregator::try_new(
        case.options,
        case.schema.clone(),
        case.group_count,
        case.aggregates.clone(),
        &DataType::Int64,
        partitions,
    )?;
    let mut rejected = Vec::new();
    let output = drive(case, &mut operator, &mut rejected, |_, _| Ok(()))?;
    let windowed = case.options.spec != WindowSpec::Global;
    let rows = apply_changelog_checked(&output, windowed, case.group_count, true)?;
    Ok((rows, operator.metrics(), rejected))
}

/// The window operator, its output applied as a changelog, equals the naive reference; the row
/// accounting adds up and matches.
pub fn check_window_differential(data: &[u8]) {
    let case = decode_window_case(data);
    let expected = window_aggregate(
        &case.options,
        &case.schema,
        case.group_count,
        &case.aggregates,
        &case.events,
    )
    .unwrap_or_else(|e| panic!("reference failed: {e}\n{:?}", case.options));
    let (rows, metrics, rejected) = run_window_case(&case)
        .unwrap_or_else(|e| panic!("operator failed: {e}\n{:?}", case.options));
    if let Err(difference) =
        reference::compare_rows(&rows, &expected.rows, FLOAT_RELATIVE_TOLERANCE)
    {
        panic!(
            "window results differ: {difference}\noptions {:?}\nactual {rows:?}\nexpected {:?}",
            case.options, expected.rows
        );
    }
    assert_eq!(
        rejected, expected.dead_lettered,
        "dead-lettered rows differ, {:?}",
        case.options
    );
    assert_eq!(metrics.rows_aggregated, expected.aggregated, "aggregated");
    assert_eq!(
        metrics.rows_late_updated, expected.late_updated,
        "late updated"
    );
    assert_eq!(
        metrics.rows_late_dropped, expected.late_dropped,
        "late dropped"
    );
    assert_eq!(
        metrics.rows_in,
        metrics.rows_aggregated + metrics.rows_late_dropped + metrics.rows_dead_lettered,
        "accounting"
    );
    assert_eq!(metrics.rows_dead_lettered, rejected.len() as u64);
    // Hash-partitioned over several workers: the same rows, rejections and counts.
    let partitions = 2 + data.first().map_or(0, |b| usize::from(b % 3));
    match run_partitioned_case(&case, partitions) {
        Ok((partitioned_rows, partitioned_metrics, partitioned_rejected)) => {
            if let Err(difference) =
                reference::compare_rows(&partitioned_rows, &rows, FLOAT_RELATIVE_TOLERANCE)
            {
                panic!("{partitions} partitions differ from one: {difference}");
            }
            assert_eq!(partitioned_rejected, rejected, "partitioned rejections");
            assert_eq!(
                (
                    partitioned_metrics.rows_in,
                    partitioned_metrics.rows_aggregated,
                    partitioned_metrics.rows_late_dropped,
                    partitioned_metrics.rows_dead_lettered
                ),
                (
                    metrics.rows_in,
                    metrics.rows_aggregated,
                    metrics.rows_late_dropped,
                    metrics.rows_dead_lettered
                ),
                "partitioned metrics"
            );
        }
        Err(e) => panic!("partitioned operator failed: {e}"),
    }
    // A checkpoint taken anywhere and restored into a fresh operator changes nothing.
    let restart_at = data.len() % (case.events.len() + 1);
    let straight = run_window_events(&case, None).map(|r| (r.0, r.1));
    let restarted = run_window_events(&case, Some(restart_at)).map(|r| (r.0, r.1));
    match (straight, restarted) {
        (Ok(a), Ok(b)) => assert!(
            a == b,
            "output after restoring a checkpoint before event {restart_at} differs"
        ),
        (a, b) => panic!("checkpoint run failed: {:?} / {:?}", a.err(), b.err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn random_streams_match_the_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x51d0);
        for case in 0..2000 {
            let len = rng.gen_range(0..600);
            let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            let outcome = std::panic::catch_unwind(|| check_window_differential(&data));
            if outcome.is_err() {
                panic!("case {case} failed; bytes {data:?}");
            }
        }
    }
}
