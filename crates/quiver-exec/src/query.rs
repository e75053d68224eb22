//! Runs a planned SQL query over a stream of batches: filter, aggregate or project, then
//! `HAVING`, output expressions, `ORDER BY` and `LIMIT` at the end.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, RecordBatchOptions};
use arrow::compute::{concat_batches, filter_record_batch, take, SortColumn, SortOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use quiver_core::{DeadLetter, DeadLetterPayload, Position, QuiverError, Result};
use quiver_kernels::expr::{BinaryOp, Expr, Literal, ScalarFunction, ValueSet};
use quiver_kernels::{AggregateExpr, AggregateFunction, EmitTo, HashAggregator};
use quiver_sql::{EmitMode, Plan, PlanKind, PlanSubquery, WindowSpec};

use crate::derived::derived_rows;
use rayon::prelude::*;

use crate::having_changelog::HavingChangelog;
use crate::join::JoinTable;
use crate::window::{LatePolicy, WindowMetrics, WindowOptions};
use crate::window_parallel::PartitionedWindowAggregator;

/// Event-time settings of windowed and `EMIT CHANGES` queries (the SQL text gives the window
/// and the emit mode; these give the watermark and the late-row policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamOptions {
    /// The watermark trails the largest event time seen by this much.
    pub max_out_of_orderness_ms: i64,
    /// Windows stay open this long after the watermark passes their end.
    pub allowed_lateness_ms: i64,
    /// What happens to late rows.
    pub late_policy: LatePolicy,
    /// Hash partitions of the window state, each on its own rayon worker (1: no split).
    pub partitions: usize,
}

impl Default for StreamOptions {
    /// In-order input; late rows go to the dead-letter path.
    fn default() -> Self {
        StreamOptions {
            max_out_of_orderness_ms: 0,
            allowed_lateness_ms: 0,
            late_policy: LatePolicy::DeadLetter,
            partitions: 1,
        }
    }
}

/// A running query: push batches in, take result batches out.
pub struct QueryRunner {
    plan: Plan,
    state: State,
    dead_letters: Vec<DeadLetter>,
    /// Source rows pushed so far (positions of dead letters count from here).
    rows_pushed: u64,
    /// The subquery in `FROM`: pushed batches go through it first.
    inner: Option<Box<QueryRunner>>,
    /// The joined tables, probed by each scanned batch before `WHERE`.
    joins: Vec<JoinTable>,
}

enum State {
    Projection {
        buffered: Vec<RecordBatch>,
        emitted_rows: usize,
    },
    Aggregate {
        aggregator: Box<HashAggregator>,
        layout: AggregateLayout,
    },
    Window {
        operator: Box<PartitionedWindowAggregator>,
        layout: AggregateLayout,
        emitted_rows: usize,
        /// `HAVING` over a changelog output: which keys the consumer holds.
        having_changelog: Option<HavingChangelog>,
    },
    /// `EXPLAIN`: the plan's description, returned by `finish`.
    Explain { done: bool },
}

/// The aggregation input: group keys, then each aggregate's argument and filter, as columns
/// computed from the filtered source batch.
struct AggregateLayout {
    input_schema: SchemaRef,
    aggregates: Vec<AggregateExpr>,
    input_exprs: Vec<Expr>,
    group_count: usize,
}

impl AggregateLayout {
    /// The aggregation input computed from a filtered source batch.
    fn input(&self, filtered: &RecordBatch) -> Result<RecordBatch> {
        let columns = self
            .input_exprs
            .iter()
            .map(|e| e.evaluate(filtered))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(filtered.num_rows()));
        Ok(RecordBatch::try_new_with_options(
            self.input_schema.clone(),
            columns,
            &options,
        )?)
    }

    fn aggregator(&self) -> Result<HashAggregator> {
        HashAggregator::try_new(
            self.input_schema.clone(),
            (0..self.group_count).collect(),
            self.aggregates.clone(),
        )
    }
}

impl std::fmt::Debug for QueryRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryRunner")
            .field("source", &self.plan.source)
            .finish()
    }
}

fn aggregate_layout(plan: &Plan) -> Result<Option<AggregateLayout>> {
    let PlanKind::Aggregate {
        group_by,
        aggregates,
        ..
    } = &plan.kind
    else {
        return Ok(None);
    };
    let source = plan.source_schema.as_ref();
    let mut fields = Vec::new();
    let mut exprs = Vec::new();
    for (expr, name) in group_by {
        fields.push(Field::new(name, expr.data_type(source)?, true));
        exprs.push(expr.clone());
    }
    // An argument or filter that repeats an earlier expression reuses its column: evaluated
    // once, and the kernels then run the numeric aggregates of one column in one pass.
    let mut column_of = |expr: &Expr, prefix: &str, data_type: DataType| -> Result<usize> {
        if let Some(index) = exprs.iter().position(|e| e == expr) {
            return Ok(index);
        }
        fields.push(Field::new(
            format!("{prefix}{}", fields.len()),
            data_type,
            true,
        ));
        exprs.push(expr.clone());
        Ok(fields.len() - 1)
    };
    let mut aggregate_exprs = Vec::new();
    for call in aggregates {
        let input = match &call.argument {
            Some(argument) => Some(column_of(argument, "arg", argument.data_type(source)?)?),
            None => None,
        };
        let function = match (call.function, input) {
            (AggregateFunction::Count, None) => AggregateFunction::CountStar,
            (f, _) => f,
        };
        let mut aggregate = AggregateExpr::new(function, input, call.text.clone())
            .with_separator(call.separator.clone());
        if let Some(filter) = &call.filter {
            aggregate = aggregate.with_filter(column_of(filter, "filter", DataType::Boolean)?);
        }
        aggregate_exprs.push(aggregate);
    }
    Ok(Some(AggregateLayout {
        input_schema: Arc::new(Schema::new(fields)),
        aggregates: aggregate_exprs,
        input_exprs: exprs,
        group_count: group_by.len(),
    }))
}

impl QueryRunner {
    /// A runner for `plan` with default [`StreamOptions`].
    pub fn try_new(plan: Plan) -> Result<Self> {
        Self::try_new_with(plan, StreamOptions::default())
    }

    /// A runner for `plan`; windowed and `EMIT CHANGES` plans use `stream` for watermarks and
    /// late rows.
    pub fn try_new_with(mut plan: Plan, stream: StreamOptions) -> Result<Self> {
        if plan.explain {
            plan.output_schema = explain_schema();
            return Ok(QueryRunner {
                plan,
                state: State::Explain { done: false },
                dead_letters: Vec::new(),
                rows_pushed: 0,
                inner: None,
                joins: Vec::new(),
            });
        }
        let mut plan = resolve_subqueries(plan)?;
        let joins = JoinTable::for_plan(&plan)?;
        let inner = match &plan.input {
            Some(input) => Some(Box::new(QueryRunner::try_new_with(
                input.as_ref().clone(),
                stream,
            )?)),
            None => None,
        };
        let streaming = plan.window.is_some() || plan.emit == EmitMode::Changes;
        if streaming && matches!(stream.late_policy, LatePolicy::UpdateClosed { .. }) {
            // Corrections of closed windows are updates: the output says so.
            plan.add_change_column()?;
        }
        let state = match aggregate_layout(&plan)? {
            None => State::Projection {
                buffered: Vec::new(),
                emitted_rows: 0,
            },
            Some(layout) if streaming => {
                let (spec, time_type) = match &plan.window {
                    Some(window) => (window.spec, window.time_type.clone()),
                    None => (WindowSpec::Global, DataType::Int64),
                };
                let options = WindowOptions {
                    spec,
                    max_out_of_orderness_ms: stream.max_out_of_orderness_ms,
                    allowed_lateness_ms: stream.allowed_lateness_ms,
                    late_policy: stream.late_policy,
                    emit: plan.emit,
                };
                let operator = PartitionedWindowAggregator::try_new(
                    options,
                    layout.input_schema.clone(),
                    layout.group_count,
                    layout.aggregates.clone(),
                    &time_type,
                    stream.partitions,
                )?;
                let has_having = matches!(
                    &plan.kind,
                    PlanKind::Aggregate {
                        having: Some(_),
                        ..
                    }
                );
                let has_change_column = operator
                    .output_schema()
                    .fields()
                    .last()
                    .is_some_and(|f| f.name() == "change");
                let having_changelog = if has_having && has_change_column {
                    let windowed = plan.window.is_some();
                    let key_columns = layout.group_count + if windowed { 2 } else { 0 };
                    let key_types: Vec<DataType> = operator.output_schema().fields()[..key_columns]
                        .iter()
                        .map(|f| f.data_type().clone())
                        .collect();
                    let horizon_ms = match stream.late_policy {
                        LatePolicy::UpdateClosed { horizon_ms } => horizon_ms,
                        _ => 0,
                    };
                    Some(HavingChangelog::try_new(
                        &key_types,
                        windowed,
                        stream.allowed_lateness_ms.saturating_add(horizon_ms),
                    )?)
                } else {
                    None
                };
                State::Window {
                    operator: Box::new(operator),
                    layout,
                    emitted_rows: 0,
                    having_changelog,
                }
            }
            Some(layout) => State::Aggregate {
                aggregator: Box::new(layout.aggregator()?),
                layout,
            },
        };
        Ok(QueryRunner {
            plan,
            state,
            dead_letters: Vec::new(),
            rows_pushed: 0,
            inner,
            joins,
        })
    }

    /// Rows rejected so far (late or without event time, in windowed queries), each with the
    /// source row as a JSON line.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        let mut all = match &mut self.inner {
            Some(inner) => inner.take_dead_letters(),
            None => Vec::new(),
        };
        all.append(&mut self.dead_letters);
        all
    }

    /// Row accounting of a windowed or `EMIT CHANGES` query.
    pub fn window_metrics(&self) -> Option<WindowMetrics> {
        match &self.state {
            State::Window { operator, .. } => Some(operator.metrics()),
            _ => None,
        }
    }

    /// Moves the watermark of a windowed query to at least `watermark_ms` (milliseconds since
    /// the epoch, or the integer time column's unit) and returns what closes.
    pub fn advance_watermark(&mut self, watermark_ms: i64) -> Result<Vec<RecordBatch>> {
        let State::Window {
            operator,
            emitted_rows,
            having_changelog,
            ..
        } = &mut self.state
        else {
            return Ok(Vec::new());
        };
        let batches = operator.advance_watermark(watermark_ms)?;
        let watermark = operator.metrics().watermark_ms;
        finish_window_batches(
            &self.plan,
            batches,
            emitted_rows,
            having_changelog.as_mut(),
            watermark,
        )
    }

    /// The subquery's runner, if `FROM` is one.
    pub fn inner(&self) -> Option<&QueryRunner> {
        self.inner.as_deref()
    }

    /// The output schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.plan.output_schema
    }

    /// The plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    fn filtered(&mut self, batch: &RecordBatch) -> Result<RecordBatch> {
        filter_batch(&self.plan, &mut self.joins, batch)
    }

    /// Adds one source batch; returns output that is final already (projections without
    /// ORDER BY), otherwise nothing until [`QueryRunner::finish`].
    pub fn push(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        if let Some(inner) = &mut self.inner {
            // The subquery's rows, as it produces them, are this query's source rows.
            let produced = inner.push(batch)?;
            return self.push_produced(produced);
        }
        if !self.plan.has_source() && batch.num_columns() > 0 {
            return Err(QuiverError::Config(
                "this query reads no pushed input (it has no FROM, or reads held tables only: \
                 a set operation or VALUES): push nothing, call finish"
                    .into(),
            ));
        }
        self.push_own(batch)
    }

    fn push_produced(&mut self, produced: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let mut out = Vec::new();
        for batch in &produced {
            out.extend(self.push_own(batch)?);
        }
        Ok(out)
    }

    fn push_own(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        let filtered = self.filtered(batch)?;
        let rows_before = self.rows_pushed;
        self.rows_pushed += batch.num_rows() as u64;
        match &mut self.state {
            // The input is checked against the schema, then ignored.
            State::Explain { .. } => Ok(Vec::new()),
            State::Aggregate { aggregator, layout } => {
                aggregator.update(&layout.input(&filtered)?)?;
                Ok(Vec::new())
            }
            State::Window {
                operator,
                layout,
                emitted_rows,
                having_changelog,
            } => {
                let input = layout.input(&filtered)?;
                let times: ArrayRef = match self.plan.window.as_ref().map(|w| w.time_column) {
                    Some(Some(column)) => Arc::clone(filtered.column(column)),
                    Some(None) => {
                        // Processing time: the wall clock now, for every row of the batch.
                        let now_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as i64);
                        Arc::new(
                            arrow::array::TimestampMillisecondArray::from(vec![
                                now_ms;
                                filtered.num_rows()
                            ])
                            .with_timezone("+00:00"),
                        )
                    }
                    None => Arc::new(Int64Array::from(vec![0_i64; filtered.num_rows()])),
                };
                let output = operator.push(&input, &times)?;
                if !output.rejected.is_empty() {
                    let rows = source_rows(&self.plan, batch)?;
                    for rejected in &output.rejected {
                        let source_row = rows.as_ref().map_or(rejected.row, |r| r[rejected.row]);
                        self.dead_letters.push(DeadLetter {
                            position: Position {
                                source: self.plan.source.clone(),
                                record: rows_before + source_row as u64,
                                byte_offset: None,
                            },
                            reason: rejected.reason.clone(),
                            payload: DeadLetterPayload::Bytes(row_as_json(
                                &filtered,
                                rejected.row,
                            )?),
                        });
                    }
                }
                let watermark = operator.metrics().watermark_ms;
                finish_window_batches(
                    &self.plan,
                    output.batches,
                    emitted_rows,
                    having_changelog.as_mut(),
                    watermark,
                )
            }
            State::Projection {
                buffered,
                emitted_rows,
            } => {
                if !self.plan.analytic.is_empty() {
                    // Window functions need every row: the source rows wait for `finish`.
                    buffered.push(filtered);
                    return Ok(Vec::new());
                }
                let projected = project(&self.plan.output, &filtered)?;
                if !self.plan.order_by.is_empty() {
                    buffered.push(projected);
                    return Ok(Vec::new());
                }
                // `emitted_rows` counts projected rows so far, skipped ones included: this
                // batch holds rows [seen, seen + n) of the result; OFFSET and LIMIT keep
                // [offset, offset + limit).
                let seen = *emitted_rows;
                let n = projected.num_rows();
                *emitted_rows += n;
                let first = self.plan.offset.max(seen).min(seen + n);
                let end = self
                    .plan
                    .limit
                    .map_or(usize::MAX, |l| l.saturating_add(self.plan.offset))
                    .min(seen + n)
                    .max(first);
                let out = projected.slice(first - seen, end - first);
                Ok(if out.num_rows() > 0 {
                    vec![finish_columns(&self.plan, out)?]
                } else {
                    Vec::new()
                })
            }
        }
    }

    /// Ends the input; returns the remaining output.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        if let Some(inner) = &mut self.inner {
            let produced = inner.finish()?;
            let mut out = self.push_produced(produced)?;
            out.extend(self.finish_input()?);
            return Ok(out);
        }
        if !self.plan.has_source() && !self.plan.explain && self.rows_pushed == 0 {
            // A query without FROM reads its one row here, unless the caller pushed it; a
            // set operation or VALUES list its rows.
            let rows = match &self.plan.derived_source {
                Some(_) => derived_rows(&self.plan)?,
                None => vec![Plan::single_row_input()?],
            };
            let mut output = Vec::new();
            for batch in &rows {
                output.extend(self.push_own(batch)?);
            }
            output.extend(self.finish_input()?);
            return Ok(output);
        }
        self.finish_input()
    }

    fn finish_input(&mut self) -> Result<Vec<RecordBatch>> {
        let output = match &mut self.state {
            State::Explain { done } => {
                if std::mem::replace(done, true) {
                    return Ok(Vec::new());
                }
                return Ok(vec![explain_batch(&self.plan)?]);
            }
            State::Window {
                operator,
                emitted_rows,
                having_changelog,
                ..
            } => {
                let batches = operator.finish()?;
                return finish_window_batches(
                    &self.plan,
                    batches,
                    emitted_rows,
                    having_changelog.as_mut(),
                    None,
                );
            }
            State::Aggregate { aggregator, .. } => {
                let result = aggregator.evaluate(EmitTo::All)?;
                finish_aggregate(&self.plan, result)?
            }
            State::Projection { buffered, .. } if !self.plan.analytic.is_empty() => {
                let rows = match buffered.first() {
                    Some(first) => concat_batches(&first.schema(), buffered.iter())?,
                    None => RecordBatch::new_empty(self.plan.source_schema.clone()),
                };
                buffered.clear();
                project(&self.plan.output, &with_window_functions(&self.plan, rows)?)?
            }
            State::Projection { buffered, .. } => {
                if self.plan.order_by.is_empty() {
                    return Ok(Vec::new());
                }
                let schema = match buffered.first() {
                    Some(b) => b.schema(),
                    None => return Ok(Vec::new()),
                };
                concat_batches(&schema, buffered.iter())?
            }
        };
        let sorted = sort_and_limit(&self.plan, output)?;
        Ok(vec![finish_columns(&self.plan, sorted)?])
    }
}

fn explain_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("plan", DataType::Utf8, false)]))
}

/// The plan's description, one row per line.
fn explain_batch(plan: &Plan) -> Result<RecordBatch> {
    let text = plan.explain();
    let lines: Vec<&str> = text.lines().collect();
    let lines = arrow::array::StringArray::from(lines);
    Ok(RecordBatch::try_new(
        explain_schema(),
        vec![Arc::new(lines)],
    )?)
}

/// Windowed output: `HAVING` (over a changelog, through `having_changelog`), output
/// expressions, `ORDER BY` within each emission, and `LIMIT` over everything emitted so far.
fn finish_window_batches(
    plan: &Plan,
    batches: Vec<RecordBatch>,
    emitted_rows: &mut usize,
    mut having_changelog: Option<&mut HavingChangelog>,
    watermark_ms: Option<i64>,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::new();
    for batch in batches {
        let room = plan
            .limit
            .map_or(usize::MAX, |l| l.saturating_sub(*emitted_rows));
        if room == 0 {
            break;
        }
        let projected = match (&mut having_changelog, &plan.kind) {
            (
                Some(changelog),
                PlanKind::Aggregate {
                    having: Some(having),
                    ..
                },
            ) => {
                let passes = having.evaluate(&batch)?;
                let passes = passes.as_boolean_opt().ok_or_else(|| {
                    QuiverError::Unsupported(format!(
                        "HAVING of type {}; a boolean is expected",
                        passes.data_type()
                    ))
                })?;
                let kept = changelog.apply(&batch, passes, watermark_ms)?;
                project(&plan.output, &with_window_functions(plan, kept)?)?
            }
            _ => finish_aggregate(plan, batch)?,
        };
        let sorted = sort_and_limit(plan, projected)?;
        let sorted = sorted.slice(0, sorted.num_rows().min(room));
        *emitted_rows += sorted.num_rows();
        if sorted.num_rows() > 0 {
            out.push(finish_columns(plan, sorted)?);
        }
    }
    Ok(out)
}

/// Source row index of each row that passed `WHERE` (None when there is no filter).
fn source_rows(plan: &Plan, batch: &RecordBatch) -> Result<Option<Vec<usize>>> {
    let Some(filter) = &plan.filter else {
        return Ok(None);
    };
    let mask = filter.evaluate(batch)?;
    let mask = mask
        .as_boolean_opt()
        .ok_or_else(|| QuiverError::Internal("WHERE is not boolean".into()))?;
    Ok(Some(
        (0..mask.len())
            .filter(|&i| mask.is_valid(i) && mask.value(i))
            .collect(),
    ))
}

/// One row as a JSON line, the payload of its dead letter.
fn row_as_json(batch: &RecordBatch, row: usize) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut bytes);
        writer.write(&batch.slice(row, 1))?;
        writer.finish()?;
    }
    while bytes.last() == Some(&b'\n') {
        bytes.pop();
    }
    Ok(bytes)
}

/// Checks a scanned batch against the plan's scan schema, joins it, and applies `WHERE`.
fn filter_batch(plan: &Plan, joins: &mut [JoinTable], batch: &RecordBatch) -> Result<RecordBatch> {
    if batch.schema().fields() != plan.scan_schema.fields() {
        return Err(QuiverError::Schema {
            position: quiver_core::Position {
                source: plan.source.clone(),
                record: 0,
                byte_offset: None,
            },
            field: "(batch)".into(),
            expected: format!("{:?}", plan.scan_schema.fields()),
            found: format!("{:?}", batch.schema().fields()),
        });
    }
    let mut joined = match &plan.scan_filter {
        Some(filter) => filter_by(filter, batch, "WHERE")?,
        None => batch.clone(),
    };
    for join in joins.iter_mut() {
        joined = join.probe(&joined)?;
    }
    Ok(match &plan.filter {
        Some(filter) => filter_by(filter, &joined, "WHERE")?,
        None => joined,
    })
}

/// The rows of `batch` where `predicate` is true.
fn filter_by(predicate: &Expr, batch: &RecordBatch, clause: &str) -> Result<RecordBatch> {
    let mask = predicate.evaluate(batch)?;
    let mask = mask.as_boolean_opt().ok_or_else(|| {
        QuiverError::Unsupported(format!(
            "{clause} of type {}; a boolean is expected",
            mask.data_type()
        ))
    })?;
    Ok(filter_record_batch(batch, mask)?)
}

fn project(output: &[(Expr, String)], batch: &RecordBatch) -> Result<RecordBatch> {
    let columns = output
        .iter()
        .map(|(e, _)| e.evaluate(batch))
        .collect::<Result<Vec<ArrayRef>>>()?;
    let fields: Vec<Field> = output
        .iter()
        .zip(&columns)
        .map(|((_, name), c)| Field::new(name, c.data_type().clone(), true))
        .collect();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &options,
    )?)
}

fn finish_aggregate(plan: &Plan, result: RecordBatch) -> Result<RecordBatch> {
    let result = match &plan.kind {
        PlanKind::Aggregate {
            having: Some(having),
            ..
        } => filter_by(having, &result, "HAVING")?,
        _ => result,
    };
    project(&plan.output, &with_window_functions(plan, result)?)
}

/// `rows` (the rows the output reads) with the plan's window function results appended as
/// columns, and `QUALIFY` applied.
fn with_window_functions(plan: &Plan, rows: RecordBatch) -> Result<RecordBatch> {
    if plan.analytic.is_empty() {
        return Ok(rows);
    }
    let mut fields: Vec<Field> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns = rows.columns().to_vec();
    for (i, call) in plan.analytic.iter().enumerate() {
        let values = call.evaluate(&rows)?;
        fields.push(Field::new(
            format!("window_function_{i}"),
            values.data_type().clone(),
            true,
        ));
        columns.push(values);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows.num_rows()));
    let extended =
        RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?;
    match &plan.qualify {
        None => Ok(extended),
        Some(qualify) => filter_by(qualify, &extended, "QUALIFY"),
    }
}

fn sort_and_limit(plan: &Plan, batch: RecordBatch) -> Result<RecordBatch> {
    let batch = if plan.order_by.is_empty() {
        batch
    } else {
        let keys = plan
            .order_by
            .iter()
            .map(|key| {
                Ok(SortColumn {
                    // SQL float order (-0.0 ties 0.0, every NaN last), not IEEE total order.
                    values: quiver_kernels::expr::sql_float_order(key.expr.evaluate(&batch)?)?,
                    options: Some(SortOptions {
                        descending: key.descending,
                        nulls_first: key.nulls_first,
                    }),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let fetch = plan.limit.map(|l| l.saturating_add(plan.offset));
        // Ties keep the order rows arrived in.
        let indices = quiver_kernels::sort::sorted_positions(&keys, fetch)?;
        let columns = batch
            .columns()
            .iter()
            .map(|c| take(c, &indices, None))
            .collect::<Result<Vec<_>, _>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(indices.len()));
        RecordBatch::try_new_with_options(batch.schema(), columns, &options)?
    };
    let first = plan.offset.min(batch.num_rows());
    let rows = plan
        .limit
        .unwrap_or(usize::MAX)
        .min(batch.num_rows() - first);
    Ok(if first == 0 && rows == batch.num_rows() {
        batch
    } else {
        batch.slice(first, rows)
    })
}

/// Drops hidden sort columns and applies the output schema's names.
fn finish_columns(plan: &Plan, batch: RecordBatch) -> Result<RecordBatch> {
    let visible = plan.output_schema.fields().len();
    let columns: Vec<ArrayRef> = batch.columns()[..visible].to_vec();
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        plan.output_schema.clone(),
        columns,
        &options,
    )?)
}

/// `plan` with its subqueries (in expressions) run over their tables' held rows and their
/// values in place: a scalar subquery's value as a constant (NULL without rows, an error with
/// more than one), `IN (SELECT ...)` as a set lookup, `EXISTS` as a constant.
pub fn resolve_subqueries(mut plan: Plan) -> Result<Plan> {
    for join in &mut plan.joins {
        if let (Some(derived), None) = (&join.derived, &join.rows) {
            join.rows = Some(held_plan_rows(derived)?);
        }
    }
    if plan.subqueries.is_empty() {
        return Ok(plan);
    }
    let mut results = Vec::new();
    for subquery in &plan.subqueries {
        let out = held_plan_rows(subquery)?;
        results.push(concat_batches(&subquery.plan.output_schema, out.iter())?);
    }
    plan.subqueries.clear();
    let mut values: Vec<std::result::Result<Expr, String>> = Vec::new();
    let mut sets: Vec<Option<ValueSet>> = Vec::new();
    for result in &results {
        let column = (result.num_columns() == 1).then(|| result.column(0));
        values.push(match (column, result.num_rows()) {
            (None, _) => Err("a subquery used as a value must select one column".to_string()),
            (Some(_), 0) => Ok(Expr::Literal(Literal::Null)),
            (Some(column), 1) => Literal::value_at(column, 0).map_err(|e| match e {
                QuiverError::Unsupported(why) => why,
                other => other.to_string(),
            }),
            (Some(_), rows) => Err(format!(
                "a subquery used as a value returned {rows} rows; at most one is allowed"
            )),
        });
        sets.push(
            column
                .map(|c| ValueSet::try_new(Arc::clone(c)))
                .transpose()?,
        );
    }
    let failure = std::cell::RefCell::new(None);
    plan.map_exprs(&|e| match &e {
        Expr::Function(ScalarFunction::Subquery(i), _) => match values.get(*i) {
            Some(Ok(value)) => value.clone(),
            Some(Err(why)) => {
                failure.borrow_mut().get_or_insert(why.clone());
                e
            }
            None => e,
        },
        Expr::Function(ScalarFunction::InSubquery(i), args) => match (sets.get(*i), args.first()) {
            (Some(Some(set)), Some(value)) => Expr::InSet(Box::new(value.clone()), set.clone()),
            _ => e,
        },
        Expr::Function(ScalarFunction::ExistsSubquery(i), _) => match results.get(*i) {
            Some(result) => Expr::Literal(Literal::Bool(result.num_rows() > 0)),
            None => e,
        },
        Expr::Function(ScalarFunction::QuantifiedSubquery { index, op, all }, args) => {
            let column = results
                .get(*index)
                .filter(|result| result.num_columns() == 1)
                .map(|result| result.column(0));
            match (column, args.first()) {
                (Some(column), Some(value)) => {
                    match quantified_comparison(column, value, *op, *all) {
                        Ok(comparison) => comparison,
                        Err(error) => {
                            failure.borrow_mut().get_or_insert(error.to_string());
                            e
                        }
                    }
                }
                _ => e,
            }
        }
        _ => e,
    });
    if let Some(why) = failure.into_inner() {
        return Err(QuiverError::Unsupported(why));
    }
    Ok(plan)
}

/// `value op ANY (values)` (`op ALL` when `all`) as comparisons with the least and greatest
/// of `values`, in SQL's three-valued logic: ANY is TRUE when some value compares TRUE, else
/// NULL when `value` is NULL or a value is, else FALSE (so FALSE over no values); ALL is FALSE
/// when some value compares FALSE, else NULL likewise, else TRUE (so TRUE over no values).
fn quantified_comparison(values: &ArrayRef, value: &Expr, op: BinaryOp, all: bool) -> Result<Expr> {
    if values.is_empty() {
        return Ok(Expr::Literal(Literal::Bool(all)));
    }
    let nulls = values.null_count();
    let (least, greatest) = if nulls == values.len() {
        (Expr::Literal(Literal::Null), Expr::Literal(Literal::Null))
    } else {
        // NULLs first, then the values in ascending order.
        let options = SortOptions {
            descending: false,
            nulls_first: true,
        };
        let order = arrow::compute::sort_to_indices(values, Some(options), None)?;
        let at = |position: usize| Literal::value_at(values, order.value(position) as usize);
        (at(nulls)?, at(values.len() - 1)?)
    };
    let compare = |bound: &Expr| Expr::Binary(Box::new(value.clone()), op, Box::new(bound.clone()));
    let both = |joiner: BinaryOp| {
        Expr::Binary(
            Box::new(compare(&least)),
            joiner,
            Box::new(compare(&greatest)),
        )
    };
    // For ANY, TRUE when some value compares TRUE; for ALL, TRUE when every value does.
    let decided = match (op, all) {
        (BinaryOp::Lt | BinaryOp::LtEq, false) | (BinaryOp::Gt | BinaryOp::GtEq, true) => {
            compare(&greatest)
        }
        (BinaryOp::Gt | BinaryOp::GtEq, false) | (BinaryOp::Lt | BinaryOp::LtEq, true) => {
            compare(&least)
        }
        (BinaryOp::NotEq, false) => both(BinaryOp::Or),
        (BinaryOp::Eq, true) => both(BinaryOp::And),
        _ => {
            return Err(QuiverError::Internal(format!(
                "{op:?} {} over a subquery's extremes",
                if all { "ALL" } else { "ANY" }
            )))
        }
    };
    let unknown = Expr::Binary(
        Box::new(Expr::IsNull(Box::new(value.clone()), false)),
        BinaryOp::Or,
        Box::new(Expr::Literal(Literal::Bool(nulls > 0))),
    );
    let truth = |b: bool| Box::new(Expr::Literal(Literal::Bool(b)));
    Ok(if all {
        Expr::Case(
            vec![
                (Expr::Not(Box::new(decided)), *truth(false)),
                (unknown, Expr::Literal(Literal::Null)),
            ],
            Some(truth(true)),
        )
    } else {
        Expr::Case(
            vec![
                (decided, *truth(true)),
                (unknown, Expr::Literal(Literal::Null)),
            ],
            Some(truth(false)),
        )
    })
}

/// The output of a plan run before the query over its table's held rows (a subquery in an
/// expression, a joined subquery, a branch of a set operation).
pub fn held_plan_rows(held: &PlanSubquery) -> Result<Vec<RecordBatch>> {
    let rows = match (&held.rows, held.plan.has_source()) {
        (Some(rows), _) => rows.clone(),
        (None, false) => Vec::new(),
        (None, true) => {
            return Err(QuiverError::Config(format!(
                "table `{}` is read before the query (by a subquery, a set operation or a \
                 RIGHT / FULL JOIN), but its rows were not given (`quiver run --table {}=PATH`, \
                 or `Engine::register_table`)",
                held.plan.source, held.plan.source
            )))
        }
    };
    run_partitioned(&held.plan, &[rows])
}

/// Runs `plan` over `batches` in one partition.
pub fn run(plan: &Plan, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let mut runner = QueryRunner::try_new(plan.clone())?;
    let mut out = Vec::new();
    for batch in batches {
        out.extend(runner.push(batch)?);
    }
    out.extend(runner.finish()?);
    Ok(out)
}

/// One partition's input for [`run_partitioned_inputs`]: batches produced on demand, on the
/// rayon worker that runs the partition (e.g. decoded from a range of a file as it is read), so
/// a partition's rows never have to be held all at once.
pub trait PartitionInput: Sync {
    /// Calls `each` on the partition's batches in arrival order; stops at the first error.
    fn for_each_batch(&self, each: &mut dyn FnMut(&RecordBatch) -> Result<()>) -> Result<()>;

    /// Every batch, in order.
    fn collect_batches(&self) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        self.for_each_batch(&mut |batch| {
            batches.push(batch.clone());
            Ok(())
        })?;
        Ok(batches)
    }
}

impl PartitionInput for Vec<RecordBatch> {
    fn for_each_batch(&self, each: &mut dyn FnMut(&RecordBatch) -> Result<()>) -> Result<()> {
        self.iter().try_for_each(each)
    }

    fn collect_batches(&self) -> Result<Vec<RecordBatch>> {
        Ok(self.clone())
    }
}

/// Runs `plan` over independent partitions in parallel (each with its own state) and merges:
/// aggregates through partial states, projections by concatenation in partition order.
///
/// Windowed and `EMIT CHANGES` plans depend on arrival order (watermarks), so their partitions
/// run one after another, in order, through one operator.
pub fn run_partitioned(plan: &Plan, partitions: &[Vec<RecordBatch>]) -> Result<Vec<RecordBatch>> {
    run_partitioned_inputs(plan, partitions)
}

/// Whether cutting one input of `total_rows` rows into consecutive partitions that run in
/// parallel pays off for `plan`, judged from `sample`, its first rows. It does unless the plan
/// (or the innermost query that reads the input) is a grouped aggregation whose groups look
/// nearly as many as the rows: its partial states would then be about as large as the input,
/// and merging them (serially) costs more than aggregating in parallel saves. The number of
/// groups is estimated from how many of the sample's rows repeat a group (the birthday
/// estimate `n² / 2d` for `n` rows with `d` repeats); a plan the sample cannot be run through
/// is partitioned.
pub fn partitions_pay_off(plan: &Plan, sample: &[RecordBatch], total_rows: usize) -> bool {
    let mut reading = plan;
    while let Some(input) = &reading.input {
        reading = input;
    }
    let grouped =
        matches!(&reading.kind, PlanKind::Aggregate { group_by, .. } if !group_by.is_empty());
    if !grouped || reading.window.is_some() || reading.emit == EmitMode::Changes {
        return true;
    }
    let sample_rows: usize = sample.iter().map(RecordBatch::num_rows).sum();
    let groups = (|| -> Result<usize> {
        let mut runner = QueryRunner::try_new(resolve_subqueries(reading.clone())?)?;
        for batch in sample {
            runner.push(batch)?;
        }
        match &runner.state {
            State::Aggregate { aggregator, .. } => Ok(aggregator.num_groups()),
            _ => Err(QuiverError::Internal("not an aggregation".into())),
        }
    })();
    let Ok(groups) = groups else {
        return true;
    };
    let repeats = sample_rows.saturating_sub(groups) as u128;
    if repeats == 0 {
        return sample_rows >= total_rows;
    }
    let estimated_groups = (sample_rows as u128).pow(2) / (2 * repeats);
    estimated_groups * 4 < total_rows as u128
}

/// [`run_partitioned`] over partitions whose batches are produced as each partition runs.
///
/// The result is that of one pass over the partitions' rows in partition order, as if they
/// were one input cut into consecutive pieces: aggregates see their groups in that order and
/// merge later partitions' states into the first's.
pub fn run_partitioned_inputs<P: PartitionInput>(
    plan: &Plan,
    partitions: &[P],
) -> Result<Vec<RecordBatch>> {
    if plan.explain {
        return Ok(vec![explain_batch(plan)?]);
    }
    let resolved = resolve_subqueries(plan.clone())?;
    let plan = &resolved;
    if let Some(input) = &plan.input {
        // The subquery runs over the partitions in parallel; this query over its result.
        let produced = run_partitioned_inputs(input, partitions)?;
        let own = Plan {
            input: None,
            // Its source is the subquery's rows, even when the subquery reads no table.
            source: if plan.source.is_empty() {
                "(subquery)".to_string()
            } else {
                plan.source.clone()
            },
            ..plan.clone()
        };
        return run(&own, &produced);
    }
    if !plan.has_source() {
        // It reads its one row (no FROM), or its derived rows, itself.
        return run(plan, &[]);
    }
    if plan.window.is_some() || plan.emit == EmitMode::Changes {
        let all: Vec<Vec<RecordBatch>> = partitions
            .par_iter()
            .map(PartitionInput::collect_batches)
            .collect::<Result<_>>()?;
        return run(plan, &all.into_iter().flatten().collect::<Vec<_>>());
    }
    let Some(layout) = aggregate_layout(plan)? else {
        if !plan.analytic.is_empty() {
            // Filtered in parallel; window functions then see every row at once.
            let filtered: Vec<Vec<RecordBatch>> = partitions
                .par_iter()
                .map(|input| {
                    let mut joins = JoinTable::for_plan(plan)?;
                    let mut filtered = Vec::new();
                    input.for_each_batch(&mut |batch| {
                        filtered.push(filter_batch(plan, &mut joins, batch)?);
                        Ok(())
                    })?;
                    Ok(filtered)
                })
                .collect::<Result<_>>()?;
            // The batches are joined and filtered already.
            let unfiltered = Plan {
                filter: None,
                scan_filter: None,
                joins: Vec::new(),
                scan_schema: plan.source_schema.clone(),
                ..plan.clone()
            };
            return run(
                &unfiltered,
                &filtered.into_iter().flatten().collect::<Vec<_>>(),
            );
        }
        let per_partition: Vec<Vec<RecordBatch>> = partitions
            .par_iter()
            .map(|input| {
                let mut joins = JoinTable::for_plan(plan)?;
                let mut projected = Vec::new();
                input.for_each_batch(&mut |batch| {
                    projected.push(project(
                        &plan.output,
                        &filter_batch(plan, &mut joins, batch)?,
                    )?);
                    Ok(())
                })?;
                Ok(projected)
            })
            .collect::<Result<_>>()?;
        // Ordering and limits apply to the whole result.
        let mut runner = PostProcess { plan };
        return runner.finish(per_partition.into_iter().flatten().collect());
    };
    let partials: Vec<Box<HashAggregator>> = partitions
        .par_iter()
        .map(|input| {
            let mut runner = QueryRunner::try_new(plan.clone())?;
            input.for_each_batch(&mut |batch| runner.push(batch).map(drop))?;
            match runner.state {
                State::Aggregate { aggregator, .. } => Ok(aggregator),
                State::Projection { .. } | State::Window { .. } | State::Explain { .. } => {
                    Err(QuiverError::Internal(
                        "projection, window or explain in the partial-aggregate path".into(),
                    ))
                }
            }
        })
        .collect::<Result<_>>()?;
    // The first partition's groups stay where they are (with one partition nothing is merged);
    // the others' states merge into them in partition order, as their rows would arrive.
    let mut partials = partials.into_iter();
    let mut merged = match partials.next() {
        Some(first) => first,
        None => Box::new(layout.aggregator()?),
    };
    for mut partial in partials {
        merged.merge(&partial.state(EmitTo::All)?)?;
    }
    let result = finish_aggregate(plan, merged.evaluate(EmitTo::All)?)?;
    let sorted = sort_and_limit(plan, result)?;
    Ok(vec![finish_columns(plan, sorted)?])
}

/// ORDER BY / LIMIT over already projected batches (hidden sort columns included).
struct PostProcess<'a> {
    plan: &'a Plan,
}

impl PostProcess<'_> {
    fn finish(&mut self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        let Some(first) = batches.first() else {
            return Ok(Vec::new());
        };
        let all = concat_batches(&first.schema(), batches.iter())?;
        let sorted = sort_and_limit(self.plan, all)?;
        Ok(vec![finish_columns(self.plan, sorted)?])
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Running `plan` over the partitions in parallel gives the rows of one pass over all.
    fn same_over_partitions(plan: &Plan, partitions: &[Vec<RecordBatch>], sql: &str) {
        let all: Vec<RecordBatch> = partitions.iter().flatten().cloned().collect();
        let one_pass = run(plan, &all).unwrap();
        let parallel = run_partitioned(plan, partitions).unwrap();
        let concat = |batches: &[RecordBatch]| {
            arrow::compute::concat_batches(&plan.output_schema, batches).unwrap()
        };
        assert_eq!(concat(&one_pass), concat(&parallel), "{sql}");
        assert!(concat(&one_pass).num_rows() > 0, "{sql}");
    }

    #[test]
    fn an_aggregate_over_no_partitions_has_its_empty_answer() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let tables = [("t".to_string(), schema)];
        let plan = quiver_sql::plan("SELECT COUNT(*) AS n, SUM(v) AS s FROM t", &tables).unwrap();
        let result = run_partitioned(&plan, &[]).unwrap();
        let rows: usize = result.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 1);
        let counts = result[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(counts.value(0), 0);
        assert!(result[0].column(1).is_null(0));
        let grouped =
            quiver_sql::plan("SELECT v, COUNT(*) AS n FROM t GROUP BY v", &tables).unwrap();
        let rows: usize = run_partitioned(&grouped, &[])
            .unwrap()
            .iter()
            .map(RecordBatch::num_rows)
            .sum();
        assert_eq!(rows, 0);
    }

    #[test]
    fn partitions_pay_off_unless_the_groups_look_as_many_as_the_rows() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, true)]));
        let tables = vec![("t".to_string(), schema.clone())];
        let batch = |values: Vec<i64>| {
            RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(values))]).unwrap()
        };
        let distinct = [batch((0..10_000).collect())];
        // 1 000 repeats among 10 000 rows: about 50 000 groups.
        let repeating = [batch((0..10_000).map(|v| v % 9_000).collect())];
        let grouped =
            quiver_sql::plan("SELECT v, COUNT(*) AS n FROM t GROUP BY v", &tables).unwrap();
        assert!(!partitions_pay_off(&grouped, &distinct, 10_000_000));
        assert!(partitions_pay_off(&grouped, &repeating, 10_000_000));
        assert!(!partitions_pay_off(&grouped, &repeating, 100_000));
        // The innermost query that reads the input decides.
        let nested = quiver_sql::plan(
            "SELECT COUNT(*) AS groups FROM (SELECT v FROM t GROUP BY v)",
            &tables,
        )
        .unwrap();
        assert!(!partitions_pay_off(&nested, &distinct, 10_000_000));
        assert!(partitions_pay_off(&nested, &repeating, 10_000_000));
        // Without groups, partials are one row each.
        for sql in ["SELECT COUNT(*) AS n FROM t", "SELECT v FROM t WHERE v > 3"] {
            let plan = quiver_sql::plan(sql, &tables).unwrap();
            assert!(partitions_pay_off(&plan, &distinct, 10_000_000), "{sql}");
        }
    }

    #[test]
    fn a_subquery_over_partitions_equals_one_pass_over_all_rows() {
        use arrow::array::{Int64Array, StringArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let mut rng = quiver_core::rng::SplitMix64::new(3);
        let batch = |rng: &mut quiver_core::rng::SplitMix64| {
            let keys: StringArray = (0..500)
                .map(|_| Some(format!("k{}", rng.next_u64() % 13)))
                .collect();
            let values: Int64Array = (0..500)
                .map(|_| Some((rng.next_u64() % 1_000) as i64 - 500))
                .collect();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(values)]).unwrap()
        };
        let partitions: Vec<Vec<RecordBatch>> = (0..3)
            .map(|_| (0..4).map(|_| batch(&mut rng)).collect())
            .collect();
        let tables = [("t".to_string(), schema.clone())];
        for sql in [
            "SELECT COUNT(*) AS n, SUM(total) AS s, MIN(total) AS lo FROM \
             (SELECT k, SUM(v) AS total FROM t GROUP BY k) AS per_key",
            "WITH per AS (SELECT k, SUM(v) AS total FROM t GROUP BY k) \
             SELECT k, total FROM per WHERE total > 0 ORDER BY k",
            "SELECT k, COUNT(*) AS n FROM (SELECT k, v FROM t WHERE v > 100) GROUP BY k ORDER BY k",
            // Window functions see every partition's rows at once.
            "SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn, \
             SUM(v) OVER (ORDER BY v ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS moving \
             FROM t WHERE v > -400 QUALIFY rn <= 3 ORDER BY k, rn",
            "SELECT k, SUM(v) AS s, RANK() OVER (ORDER BY SUM(v) DESC) AS place \
             FROM t GROUP BY k ORDER BY k",
        ] {
            let plan = quiver_sql::plan(sql, &tables).unwrap();
            assert_eq!(plan.source, "t");
            assert_eq!(plan.input_schema(), &schema);
            same_over_partitions(&plan, &partitions, sql);
        }
    }

    #[test]
    fn joins_over_partitions_equal_one_pass_over_all_rows() {
        use arrow::array::{Int64Array, StringArray};
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("v", DataType::Int64, true),
        ]));
        let mut rng = quiver_core::rng::SplitMix64::new(5);
        let mut batch = || {
            let keys: StringArray = (0..300)
                .map(|_| match rng.next_u64() % 17 {
                    0 => None,
                    k => Some(format!("k{k}")),
                })
                .collect();
            let values: Int64Array = (0..300)
                .map(|_| Some((rng.next_u64() % 100) as i64))
                .collect();
            RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(values)]).unwrap()
        };
        let partitions: Vec<Vec<RecordBatch>> =
            (0..3).map(|_| (0..3).map(|_| batch()).collect()).collect();
        let all: Vec<RecordBatch> = partitions.iter().flatten().cloned().collect();
        let tables = [("t".to_string(), schema.clone())];
        for sql in [
            "SELECT a.k, COUNT(*) AS n, SUM(b.v) AS s FROM t a JOIN t b ON a.k = b.k \
             AND b.v < a.v WHERE a.v > 90 GROUP BY a.k ORDER BY a.k",
            "SELECT a.k, a.v, b.v AS w FROM t a LEFT JOIN t b ON a.v = b.v + 1000 \
             WHERE a.v < 3",
        ] {
            let mut plan = quiver_sql::plan(sql, &tables).unwrap();
            assert_eq!(plan.joined_tables(), vec!["t".to_string()]);
            plan.attach_table("t", &all).unwrap();
            same_over_partitions(&plan, &partitions, sql);
        }
        // Without the joined table's rows, running is a clear error.
        let plan = quiver_sql::plan("SELECT * FROM t a JOIN t b ON a.k = b.k", &tables).unwrap();
        let error = QueryRunner::try_new(plan).unwrap_err().to_string();
        assert!(error.contains("its rows were not given"), "{error}");
    }

    #[test]
    fn a_query_without_from_reads_one_row_once() {
        let plan = quiver_sql::plan("SELECT 1 + 1 AS two, COUNT(*) AS n", &[]).unwrap();
        assert!(!plan.has_source());
        let mut runner = QueryRunner::try_new(plan.clone()).unwrap();
        let out = runner.finish().unwrap();
        let rows: usize = out.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 1);
        let two = out[0]
            .column(0)
            .as_primitive::<arrow::datatypes::Int64Type>();
        assert_eq!(two.value(0), 2);
        // The partitioned path ignores partitions it is handed.
        let out = run_partitioned(&plan, &[]).unwrap();
        assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
        let projection = quiver_sql::plan("SELECT 'x' AS s WHERE 1 > 2", &[]).unwrap();
        let out = run_partitioned(&projection, &[]).unwrap();
        assert_eq!(out.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    }

    #[test]
    fn repeated_arguments_and_filters_share_one_input_column() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("x", DataType::Float64, true),
            Field::new("y", DataType::Int64, true),
        ]));
        let sql = "SELECT k, COUNT(*), SUM(x), AVG(x), MIN(x) FILTER (WHERE y > 1), \
                   MAX(x) FILTER (WHERE y > 1), COUNT(*) FILTER (WHERE y > 1), SUM(x + 1), \
                   COUNT(k) FROM t GROUP BY k";
        let plan = quiver_sql::plan(sql, &[("t".to_string(), schema)]).unwrap();
        let layout = aggregate_layout(&plan).unwrap().unwrap();
        // k, x, y > 1, x + 1: one column each.
        assert_eq!(layout.input_exprs.len(), 4, "{:?}", layout.input_exprs);
        let inputs: Vec<Option<usize>> = layout.aggregates.iter().map(|a| a.input).collect();
        assert_eq!(
            inputs,
            vec![
                None,
                Some(1),
                Some(1),
                Some(1),
                Some(1),
                None,
                Some(3),
                Some(0)
            ]
        );
        let filters: Vec<Option<usize>> = layout.aggregates.iter().map(|a| a.filter).collect();
        assert_eq!(
            filters,
            vec![None, None, None, Some(2), Some(2), Some(2), None, None]
        );
        assert_eq!(layout.input_schema.field(2).data_type(), &DataType::Boolean);
    }
}
