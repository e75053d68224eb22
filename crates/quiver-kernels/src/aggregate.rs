//! The hash aggregation operator: group keys → group ids → accumulators, per batch.
//!
//! One [`HashAggregator`] owns the state of one partition. Partitions aggregate independently
//! ([`HashAggregator::update`]), hand their partial state over as a batch
//! ([`HashAggregator::state`]) and a final aggregator merges them ([`HashAggregator::merge`]);
//! the result equals single-phase aggregation.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use arrow::array::{new_null_array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use quiver_core::{QuiverError, Result};

use crate::accumulators::{new_min_max, CountAccumulator, GroupsAccumulator, MinMaxKind};
use crate::approx_percentile::ApproxPercentileAccumulator;
use crate::fused::{self, new_fused, FusedAccumulator, NumericRole};
use crate::group_values::{new_group_values, GroupValues};
pub use crate::more_accumulators::BitOperation;
pub use crate::more_accumulators::MomentKind;
use crate::more_accumulators::{
    ApproxDistinctAccumulator, ArgExtremeAccumulator, BitAccumulator, BoolAccumulator,
    CountDistinctAccumulator, CovarianceAccumulator, CovarianceKind, DistinctNumericAccumulator,
    FirstLastAccumulator, ModeAccumulator, MomentsAccumulator, OrderedStringAggAccumulator,
    PercentileAccumulator, PercentileDiscAccumulator, StringAggAccumulator, VarianceAccumulator,
    VarianceKind,
};
use crate::EmitTo;

/// An aggregate function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AggregateFunction {
    /// `COUNT(*)`: rows.
    CountStar,
    /// `COUNT(col)`: non-null values.
    Count,
    /// `SUM(col)`.
    Sum,
    /// `AVG(col)`.
    Avg,
    /// `MIN(col)`.
    Min,
    /// `MAX(col)`.
    Max,
    /// `COUNT(DISTINCT col)`.
    CountDistinct,
    /// `VAR_SAMP(col)`.
    VarSamp,
    /// `VAR_POP(col)`.
    VarPop,
    /// `STDDEV_SAMP(col)`.
    StddevSamp,
    /// `STDDEV_POP(col)`.
    StddevPop,
    /// `BOOL_AND(col)`.
    BoolAnd,
    /// `BOOL_OR(col)`.
    BoolOr,
    /// `BIT_AND(col)` / `BIT_OR(col)` / `BIT_XOR(col)` of integers, in the column's type.
    Bit(BitOperation),
    /// `MEDIAN(col)`, exact.
    Median,
    /// `PERCENTILE_CONT(fraction) WITHIN GROUP (ORDER BY col)`, exact.
    PercentileCont(f64),
    /// `PERCENTILE_DISC(fraction) WITHIN GROUP (ORDER BY col [DESC])` / `QUANTILE_DISC(col,
    /// fraction)`: an input value, exact, of any sortable type.
    PercentileDisc {
        /// In `[0, 1]`.
        fraction: f64,
        /// `ORDER BY col DESC`.
        descending: bool,
    },
    /// `STRING_AGG(col, separator)` in arrival order.
    StringAgg,
    /// `APPROX_COUNT_DISTINCT(col)`, HyperLogLog (standard error 3.25%).
    ApproxCountDistinct,
    /// `APPROX_PERCENTILE(col, fraction)`: a DDSketch, relative error 0.5%, exact extremes.
    ApproxPercentile(f64),
    /// `FIRST_VALUE(col)`: the first row's value in arrival order (NULL included).
    FirstValue,
    /// `LAST_VALUE(col)`: the last row's value in arrival order (NULL included).
    LastValue,
    /// `CORR(y, x)`, `COVAR_POP`, `COVAR_SAMP`, `REGR_SLOPE`, `REGR_INTERCEPT`, `REGR_R2` over
    /// a `(y, x)` struct column.
    Covariance(CovarianceKind),
    /// `STRING_AGG([DISTINCT] col, sep ORDER BY key)` over a `(col, key)` struct column.
    StringAggOrdered {
        /// `DESC`.
        descending: bool,
        /// `NULLS FIRST` (keys).
        nulls_first: bool,
        /// `DISTINCT`: each value once (the key is the value itself).
        distinct: bool,
    },
    /// `SUM(DISTINCT col)`: the sum of the group's distinct values.
    SumDistinct,
    /// `AVG(DISTINCT col)`: the mean of the group's distinct values.
    AvgDistinct,
    /// `ARG_MAX(value, key)` (true) / `ARG_MIN(value, key)` (false) over a `(value, key)`
    /// struct column: the value at the row with the largest (smallest) key.
    ArgExtreme(bool),
    /// `MODE(col)`: the most frequent non-NULL value (the smallest of equally frequent ones).
    Mode,
    /// `SKEWNESS(col)`, `KURTOSIS(col)`, `KURTOSIS_POP(col)` of numbers, as `Float64`.
    Moment(MomentKind),
}

impl fmt::Display for AggregateFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AggregateFunction::CountStar | AggregateFunction::Count => "COUNT",
            AggregateFunction::Sum => "SUM",
            AggregateFunction::Avg => "AVG",
            AggregateFunction::Min => "MIN",
            AggregateFunction::Max => "MAX",
            AggregateFunction::CountDistinct => "COUNT DISTINCT",
            AggregateFunction::VarSamp => "VAR_SAMP",
            AggregateFunction::VarPop => "VAR_POP",
            AggregateFunction::StddevSamp => "STDDEV_SAMP",
            AggregateFunction::StddevPop => "STDDEV_POP",
            AggregateFunction::BoolAnd => "BOOL_AND",
            AggregateFunction::Bit(operation) => operation.name(),
            AggregateFunction::BoolOr => "BOOL_OR",
            AggregateFunction::Median => "MEDIAN",
            AggregateFunction::PercentileCont(_) => "PERCENTILE_CONT",
            AggregateFunction::PercentileDisc { .. } => "PERCENTILE_DISC",
            AggregateFunction::StringAgg => "STRING_AGG",
            AggregateFunction::ApproxCountDistinct => "APPROX_COUNT_DISTINCT",
            AggregateFunction::ApproxPercentile(_) => "APPROX_PERCENTILE",
            AggregateFunction::FirstValue => "FIRST_VALUE",
            AggregateFunction::LastValue => "LAST_VALUE",
            AggregateFunction::Covariance(kind) => kind.name(),
            AggregateFunction::SumDistinct => "SUM DISTINCT",
            AggregateFunction::StringAggOrdered { .. } => "STRING_AGG",
            AggregateFunction::ArgExtreme(true) => "ARG_MAX",
            AggregateFunction::ArgExtreme(false) => "ARG_MIN",
            AggregateFunction::Mode => "MODE",
            AggregateFunction::AvgDistinct => "AVG DISTINCT",
            AggregateFunction::Moment(kind) => kind.name(),
        })
    }
}

/// One aggregate of a query: function, input column, optional `FILTER (WHERE ...)` column.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateExpr {
    /// The function.
    pub function: AggregateFunction,
    /// Index of the input column (ignored for `COUNT(*)`).
    pub input: Option<usize>,
    /// Index of a boolean column; only rows where it is true are aggregated.
    pub filter: Option<usize>,
    /// Output column name.
    pub name: String,
    /// Separator of `STRING_AGG`.
    pub separator: String,
}

impl AggregateExpr {
    /// `function(column)` named `name`.
    pub fn new(function: AggregateFunction, input: Option<usize>, name: impl Into<String>) -> Self {
        AggregateExpr {
            function,
            input,
            filter: None,
            name: name.into(),
            separator: ",".to_string(),
        }
    }

    /// With the separator of `STRING_AGG`.
    pub fn with_separator(mut self, separator: impl Into<String>) -> Self {
        self.separator = separator.into();
        self
    }

    /// With a `FILTER (WHERE filter_column)`.
    pub fn with_filter(mut self, filter_column: usize) -> Self {
        self.filter = Some(filter_column);
        self
    }
}

/// Hash aggregation of one partition.
pub struct HashAggregator {
    input_schema: SchemaRef,
    group_by: Vec<usize>,
    aggregates: Vec<AggregateExpr>,
    /// `None` for a global aggregate (no GROUP BY): every row is in group 0.
    group_values: Option<Box<dyn GroupValues>>,
    units: Vec<Unit>,
    /// Each aggregate's columns in a state batch, after the keys.
    state_ranges: Vec<Range<usize>>,
    group_ids: Vec<u32>,
    output_schema: SchemaRef,
    state_schema: SchemaRef,
    memory_limit_bytes: Option<usize>,
    global_groups: usize,
}

impl fmt::Debug for HashAggregator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashAggregator")
            .field("group_by", &self.group_by)
            .field("aggregates", &self.aggregates)
            .field("groups", &self.num_groups())
            .finish()
    }
}

impl HashAggregator {
    /// An aggregator grouping `input_schema` rows by columns `group_by`.
    pub fn try_new(
        input_schema: SchemaRef,
        group_by: Vec<usize>,
        aggregates: Vec<AggregateExpr>,
    ) -> Result<Self> {
        let column = |index: usize| -> Result<&Field> {
            input_schema
                .fields()
                .get(index)
                .map(|f| f.as_ref())
                .ok_or_else(|| {
                    QuiverError::Internal(format!(
                        "column index {index} out of range for {} columns",
                        input_schema.fields().len()
                    ))
                })
        };
        let key_fields = group_by
            .iter()
            .map(|&i| column(i).map(|f| Field::new(f.name(), f.data_type().clone(), true)))
            .collect::<Result<Vec<_>>>()?;
        let key_types: Vec<DataType> = key_fields.iter().map(|f| f.data_type().clone()).collect();
        let group_values = if group_by.is_empty() {
            None
        } else {
            Some(new_group_values(&key_types)?)
        };
        let mut units: Vec<Unit> = Vec::new();
        let mut pending: Vec<PendingFused> = Vec::new();
        let mut count_stars: Vec<usize> = Vec::new();
        let mut output_fields = key_fields.clone();
        let mut state_fields = key_fields;
        let mut state_ranges = Vec::new();
        for (index, aggregate) in aggregates.iter().enumerate() {
            if let Some(filter) = aggregate.filter {
                if column(filter)?.data_type() != &DataType::Boolean {
                    return Err(QuiverError::Unsupported(format!(
                        "FILTER of {} must be boolean, found {}",
                        aggregate.name,
                        column(filter)?.data_type()
                    )));
                }
            }
            let input_type = match (aggregate.function, aggregate.input) {
                (AggregateFunction::CountStar, _) => DataType::Null,
                (_, Some(i)) => column(i)?.data_type().clone(),
                (function, None) => {
                    return Err(QuiverError::Internal(format!(
                        "{function} without an input column"
                    )))
                }
            };
            let (output_type, states) = match (numeric_role(aggregate.function), aggregate.input) {
                (Some(NumericRole::CountStar), _) => {
                    count_stars.push(index);
                    (
                        DataType::Int64,
                        fused::state_fields(NumericRole::CountStar, &input_type, &aggregate.name),
                    )
                }
                (Some(role), Some(input)) if fused::is_fusable(&input_type) => {
                    let output_type = fused::output_type(role, &input_type)?;
                    let found = pending
                        .iter_mut()
                        .find(|p| p.input == input && p.filter == aggregate.filter);
                    match found {
                        Some(unit) => unit.members.push((index, role)),
                        None => pending.push(PendingFused {
                            input,
                            filter: aggregate.filter,
                            input_type: input_type.clone(),
                            members: vec![(index, role)],
                        }),
                    }
                    (
                        output_type,
                        fused::state_fields(role, &input_type, &aggregate.name),
                    )
                }
                _ => {
                    let (accumulator, output_type, states) =
                        own_accumulator(aggregate, &input_type)?;
                    units.push(Unit::Own {
                        aggregate: index,
                        accumulator,
                    });
                    (output_type, states)
                }
            };
            let nullable = !matches!(
                aggregate.function,
                AggregateFunction::CountStar
                    | AggregateFunction::Count
                    | AggregateFunction::CountDistinct
                    | AggregateFunction::ApproxCountDistinct
            );
            output_fields.push(Field::new(&aggregate.name, output_type, nullable));
            let start = state_fields.len() - group_by.len();
            state_ranges.push(start..start + states.len());
            state_fields.extend(states);
        }
        // A COUNT(*) rides along with a numeric column under the same filter, if there is one.
        for index in count_stars {
            let filter = aggregates[index].filter;
            match pending.iter_mut().find(|p| p.filter == filter) {
                Some(unit) => unit.members.push((index, NumericRole::CountStar)),
                None => units.push(Unit::Own {
                    aggregate: index,
                    accumulator: Box::new(CountAccumulator::new()),
                }),
            }
        }
        for unit in pending {
            units.push(unit.build()?);
        }
        Ok(HashAggregator {
            input_schema,
            group_by,
            aggregates,
            group_values,
            units,
            state_ranges,
            group_ids: Vec::new(),
            output_schema: Arc::new(Schema::new(output_fields)),
            state_schema: Arc::new(Schema::new(state_fields)),
            memory_limit_bytes: None,
            global_groups: 0,
        })
    }

    /// Fails `update`/`merge` with [`QuiverError::ResourceExhausted`] once state exceeds `bytes`.
    pub fn with_memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit_bytes = Some(bytes);
        self
    }

    /// Schema of [`HashAggregator::evaluate`] output: keys, then one column per aggregate.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output_schema
    }

    /// Schema of [`HashAggregator::state`] output: keys, then each aggregate's state columns.
    pub fn state_schema(&self) -> &SchemaRef {
        &self.state_schema
    }

    /// The input schema.
    pub fn input_schema(&self) -> &SchemaRef {
        &self.input_schema
    }

    /// Groups held.
    pub fn num_groups(&self) -> usize {
        match &self.group_values {
            Some(values) => values.len(),
            None => self.global_groups,
        }
    }

    /// The group id of each row of the last `update` or `merge` input.
    pub fn last_group_ids(&self) -> &[u32] {
        &self.group_ids
    }

    /// Bytes held by keys and accumulator state.
    pub fn size(&self) -> usize {
        self.group_values.as_ref().map_or(0, |g| g.size())
            + self.units.iter().map(Unit::size).sum::<usize>()
            + self.group_ids.capacity() * 4
    }

    fn assign_groups(&mut self, keys: &[ArrayRef], rows: usize) -> Result<usize> {
        match &mut self.group_values {
            Some(values) => {
                values.intern(keys, &mut self.group_ids)?;
                Ok(values.len())
            }
            None => {
                self.group_ids.clear();
                self.group_ids.resize(rows, 0);
                self.global_groups = 1;
                Ok(1)
            }
        }
    }

    fn check_memory(&self) -> Result<()> {
        match self.memory_limit_bytes {
            Some(limit) if self.size() > limit => Err(QuiverError::ResourceExhausted(format!(
                "hash aggregation holds {} bytes in {} groups, over its limit of {limit} bytes",
                self.size(),
                self.num_groups()
            ))),
            _ => Ok(()),
        }
    }

    /// Aggregates one input batch.
    pub fn update(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields().len() != self.input_schema.fields().len() {
            return Err(QuiverError::Internal(format!(
                "batch has {} columns, aggregator expects {}",
                batch.num_columns(),
                self.input_schema.fields().len()
            )));
        }
        let keys: Vec<ArrayRef> = self
            .group_by
            .iter()
            .map(|&i| Arc::clone(batch.column(i)))
            .collect();
        // Empty batches still reach the accumulators: a global aggregate sizes its one group.
        let total_groups = self.assign_groups(&keys, batch.num_rows())?;
        for unit in &mut self.units {
            match unit {
                Unit::Own {
                    aggregate,
                    accumulator,
                } => {
                    let aggregate = &self.aggregates[*aggregate];
                    let values: Vec<ArrayRef> = match (aggregate.function, aggregate.input) {
                        (AggregateFunction::CountStar, _) | (_, None) => Vec::new(),
                        (_, Some(i)) => vec![Arc::clone(batch.column(i))],
                    };
                    let filter = aggregate.filter.map(|i| batch.column(i).as_boolean());
                    accumulator.update_batch(&values, &self.group_ids, filter, total_groups)?;
                }
                Unit::Fused {
                    input,
                    filter,
                    accumulator,
                    ..
                } => {
                    let filter = filter.map(|i| batch.column(i).as_boolean());
                    accumulator.update_batch(
                        batch.column(*input),
                        &self.group_ids,
                        filter,
                        total_groups,
                    )?;
                }
            }
        }
        self.check_memory()
    }

    /// Merges a partial-state batch of [`HashAggregator::state_schema`].
    pub fn merge(&mut self, state: &RecordBatch) -> Result<()> {
        if state.num_columns() != self.state_schema.fields().len() {
            return Err(QuiverError::Internal(format!(
                "state batch has {} columns, expected {}",
                state.num_columns(),
                self.state_schema.fields().len()
            )));
        }
        let key_count = self.group_by.len();
        let keys: Vec<ArrayRef> = state.columns()[..key_count].to_vec();
        let total_groups = self.assign_groups(&keys, state.num_rows())?;
        let states = &state.columns()[key_count..];
        let ranges = &self.state_ranges;
        for unit in &mut self.units {
            match unit {
                Unit::Own {
                    aggregate,
                    accumulator,
                } => {
                    let columns = &states[ranges[*aggregate].clone()];
                    accumulator.merge_batch(columns, &self.group_ids, total_groups)?;
                }
                Unit::Fused {
                    members,
                    accumulator,
                    ..
                } => {
                    let columns: Vec<&[ArrayRef]> = members
                        .iter()
                        .map(|&a| &states[ranges[a].clone()])
                        .collect();
                    accumulator.merge_batch(&columns, &self.group_ids, total_groups)?;
                }
            }
        }
        self.check_memory()
    }

    fn emit_keys(&mut self, emit_to: EmitTo) -> Result<(Vec<ArrayRef>, usize, EmitTo)> {
        match &mut self.group_values {
            Some(values) => {
                let n = emit_to.count(values.len());
                Ok((values.emit(emit_to)?, n, emit_to))
            }
            None => {
                // A global aggregate always has its one row, even over no input.
                let n = 1;
                self.global_groups = 0;
                Ok((Vec::new(), n, EmitTo::All))
            }
        }
    }

    /// Final results of the emitted groups (removing them), as a batch of the output schema.
    pub fn evaluate(&mut self, emit_to: EmitTo) -> Result<RecordBatch> {
        let (mut columns, rows, emit_to) = self.emit_keys(emit_to)?;
        let outputs = per_aggregate(
            &mut self.units,
            self.aggregates.len(),
            |accumulator| accumulator.evaluate(emit_to),
            |accumulator| accumulator.evaluate(emit_to),
        )?;
        for ((field, output), aggregate) in self.output_schema.fields()[self.group_by.len()..]
            .iter()
            .zip(outputs)
            .zip(&self.aggregates)
        {
            let column = output.ok_or_else(|| {
                QuiverError::Internal(format!("no accumulator evaluated {}", aggregate.name))
            })?;
            columns.push(pad_global(
                column,
                rows,
                field.data_type(),
                aggregate.function,
            )?);
        }
        batch(&self.output_schema, columns, rows)
    }

    /// Partial state of the emitted groups (removing them), as a batch of the state schema.
    pub fn state(&mut self, emit_to: EmitTo) -> Result<RecordBatch> {
        if self.group_values.is_none() && self.global_groups == 0 {
            return Ok(RecordBatch::new_empty(Arc::clone(&self.state_schema)));
        }
        let (mut columns, rows, emit_to) = self.emit_keys(emit_to)?;
        let states = per_aggregate(
            &mut self.units,
            self.aggregates.len(),
            |accumulator| accumulator.state(emit_to),
            |accumulator| accumulator.state(emit_to),
        )?;
        for (state, aggregate) in states.into_iter().zip(&self.aggregates) {
            columns.extend(state.ok_or_else(|| {
                QuiverError::Internal(format!(
                    "no accumulator held the state of {}",
                    aggregate.name
                ))
            })?);
        }
        batch(&self.state_schema, columns, rows)
    }
}

/// The accumulators of a [`HashAggregator`]: one per aggregate, or one pass shared by the
/// numeric aggregates of a column (see [`crate::fused`]).
enum Unit {
    /// One aggregate with an accumulator of its own.
    Own {
        aggregate: usize,
        accumulator: Box<dyn GroupsAccumulator>,
    },
    /// Aggregates of column `input` under `filter`, updated in one pass.
    Fused {
        input: usize,
        filter: Option<usize>,
        members: Vec<usize>,
        accumulator: Box<dyn FusedAccumulator>,
    },
}

/// A fused unit while the aggregator is being built: its column, filter and members.
struct PendingFused {
    input: usize,
    filter: Option<usize>,
    input_type: DataType,
    members: Vec<(usize, NumericRole)>,
}

impl PendingFused {
    fn build(self) -> Result<Unit> {
        Ok(Unit::Fused {
            input: self.input,
            filter: self.filter,
            members: self.members.iter().map(|&(a, _)| a).collect(),
            accumulator: new_fused(
                self.members.iter().map(|&(_, r)| r).collect(),
                &self.input_type,
            )?,
        })
    }
}

impl Unit {
    fn size(&self) -> usize {
        match self {
            Unit::Own { accumulator, .. } => accumulator.size(),
            Unit::Fused { accumulator, .. } => accumulator.size(),
        }
    }
}

/// One result per aggregate, in aggregate order, from `own` of each unit with one aggregate and
/// `fused` (one result per member) of each fused unit.
fn per_aggregate<T>(
    units: &mut [Unit],
    aggregates: usize,
    mut own: impl FnMut(&mut dyn GroupsAccumulator) -> Result<T>,
    mut fused: impl FnMut(&mut dyn FusedAccumulator) -> Result<Vec<T>>,
) -> Result<Vec<Option<T>>> {
    let mut results: Vec<Option<T>> = (0..aggregates).map(|_| None).collect();
    for unit in units {
        match unit {
            Unit::Own {
                aggregate,
                accumulator,
            } => results[*aggregate] = Some(own(accumulator.as_mut())?),
            Unit::Fused {
                members,
                accumulator,
                ..
            } => {
                for (&a, result) in members.iter().zip(fused(accumulator.as_mut())?) {
                    results[a] = Some(result);
                }
            }
        }
    }
    Ok(results)
}

/// The role of `function` in a fused numeric pass, if it can take part in one.
fn numeric_role(function: AggregateFunction) -> Option<NumericRole> {
    Some(match function {
        AggregateFunction::CountStar => NumericRole::CountStar,
        AggregateFunction::Count => NumericRole::Count,
        AggregateFunction::Sum => NumericRole::Sum,
        AggregateFunction::Avg => NumericRole::Avg,
        AggregateFunction::Min => NumericRole::Min,
        AggregateFunction::Max => NumericRole::Max,
        _ => return None,
    })
}

/// An accumulator of its own for `aggregate` over `input_type`, its output type and its
/// partial-state fields.
fn own_accumulator(
    aggregate: &AggregateExpr,
    input_type: &DataType,
) -> Result<(Box<dyn GroupsAccumulator>, DataType, Vec<Field>)> {
    let input_type = input_type.clone();
    Ok(match aggregate.function {
        AggregateFunction::CountStar | AggregateFunction::Count => (
            Box::new(CountAccumulator::new()),
            DataType::Int64,
            vec![Field::new(
                format!("{}[count]", aggregate.name),
                DataType::Int64,
                false,
            )],
        ),
        function @ (AggregateFunction::Sum | AggregateFunction::Avg) => {
            // Numeric inputs are fused; anything else cannot be summed.
            return Err(QuiverError::Unsupported(format!(
                "{function} of {input_type}; it takes integers, decimals and floats"
            )));
        }
        // FALSE < TRUE: the minimum of booleans is BOOL_AND, the maximum BOOL_OR (next arm).
        AggregateFunction::Min | AggregateFunction::Max if input_type != DataType::Boolean => {
            let kind = if aggregate.function == AggregateFunction::Min {
                MinMaxKind::Min
            } else {
                MinMaxKind::Max
            };
            (
                new_min_max(kind, &input_type)?,
                input_type.clone(),
                vec![Field::new(
                    format!("{}[value]", aggregate.name),
                    input_type.clone(),
                    true,
                )],
            )
        }
        AggregateFunction::ApproxCountDistinct => (
            Box::new(ApproxDistinctAccumulator::try_new(&input_type)?),
            DataType::Int64,
            ApproxDistinctAccumulator::state_fields(&aggregate.name),
        ),
        AggregateFunction::CountDistinct => (
            Box::new(CountDistinctAccumulator::try_new(&input_type)?),
            DataType::Int64,
            CountDistinctAccumulator::state_fields(&aggregate.name, &input_type),
        ),
        function @ (AggregateFunction::VarSamp
        | AggregateFunction::VarPop
        | AggregateFunction::StddevSamp
        | AggregateFunction::StddevPop) => {
            require_numeric(&aggregate.name, &input_type)?;
            let kind = match function {
                AggregateFunction::VarSamp => VarianceKind::VarSamp,
                AggregateFunction::VarPop => VarianceKind::VarPop,
                AggregateFunction::StddevSamp => VarianceKind::StddevSamp,
                _ => VarianceKind::StddevPop,
            };
            (
                Box::new(VarianceAccumulator::new(kind)),
                DataType::Float64,
                VarianceAccumulator::state_fields(&aggregate.name),
            )
        }
        AggregateFunction::Moment(kind) => {
            require_numeric(&aggregate.name, &input_type)?;
            (
                Box::new(MomentsAccumulator::new(kind)),
                DataType::Float64,
                MomentsAccumulator::state_fields(&aggregate.name),
            )
        }
        AggregateFunction::Bit(operation) => (
            Box::new(BitAccumulator::try_new(operation, &input_type)?),
            input_type.clone(),
            BitAccumulator::state_fields(&aggregate.name),
        ),
        function @ (AggregateFunction::BoolAnd
        | AggregateFunction::BoolOr
        | AggregateFunction::Min
        | AggregateFunction::Max) => {
            if input_type != DataType::Boolean {
                return Err(QuiverError::Unsupported(format!(
                    "{function} of {input_type} in {}; it takes booleans",
                    aggregate.name
                )));
            }
            (
                Box::new(BoolAccumulator::new(matches!(
                    function,
                    AggregateFunction::BoolAnd | AggregateFunction::Min
                ))),
                DataType::Boolean,
                vec![Field::new(
                    format!("{}[value]", aggregate.name),
                    DataType::Boolean,
                    true,
                )],
            )
        }
        AggregateFunction::StringAggOrdered {
            descending,
            nulls_first,
            distinct,
        } => {
            let key_type = OrderedStringAggAccumulator::key_type(&aggregate.name, &input_type)?;
            (
                Box::new(
                    OrderedStringAggAccumulator::try_new(
                        aggregate.separator.clone(),
                        &key_type,
                        descending,
                        nulls_first,
                    )?
                    .distinct(distinct),
                ),
                DataType::Utf8,
                OrderedStringAggAccumulator::state_fields(&aggregate.name),
            )
        }
        function @ (AggregateFunction::SumDistinct | AggregateFunction::AvgDistinct) => {
            let role = if function == AggregateFunction::SumDistinct {
                NumericRole::Sum
            } else {
                NumericRole::Avg
            };
            if !fused::is_fusable(&input_type) {
                return Err(QuiverError::Unsupported(format!(
                    "{function} of {input_type}; it takes integers, decimals and floats"
                )));
            }
            (
                Box::new(DistinctNumericAccumulator::try_new(role, &input_type)?),
                fused::output_type(role, &input_type)?,
                CountDistinctAccumulator::state_fields(&aggregate.name, &input_type),
            )
        }
        AggregateFunction::Mode => (
            Box::new(ModeAccumulator::try_new(&input_type)?),
            input_type.clone(),
            ModeAccumulator::state_fields(&aggregate.name, &input_type),
        ),
        AggregateFunction::ArgExtreme(max) => {
            let (value_type, _) = ArgExtremeAccumulator::value_and_key_types(&input_type)?;
            (
                Box::new(ArgExtremeAccumulator::try_new(max, &input_type)?),
                value_type,
                ArgExtremeAccumulator::state_fields(&aggregate.name, &input_type)?,
            )
        }
        AggregateFunction::Covariance(kind) => {
            CovarianceAccumulator::check_input(&aggregate.name, &input_type)?;
            (
                Box::new(CovarianceAccumulator::new(kind)),
                DataType::Float64,
                CovarianceAccumulator::state_fields(&aggregate.name),
            )
        }
        function @ (AggregateFunction::Median | AggregateFunction::PercentileCont(_)) => {
            require_numeric(&aggregate.name, &input_type)?;
            let fraction = match function {
                AggregateFunction::PercentileCont(fraction) => fraction,
                _ => 0.5,
            };
            (
                Box::new(PercentileAccumulator::try_new(fraction)?),
                DataType::Float64,
                PercentileAccumulator::state_fields(&aggregate.name),
            )
        }
        AggregateFunction::PercentileDisc {
            fraction,
            descending,
        } => (
            Box::new(PercentileDiscAccumulator::try_new(
                fraction,
                descending,
                &input_type,
            )?),
            PercentileDiscAccumulator::output_type(&input_type),
            PercentileDiscAccumulator::state_fields(&aggregate.name),
        ),
        AggregateFunction::ApproxPercentile(fraction) => {
            require_numeric(&aggregate.name, &input_type)?;
            (
                Box::new(ApproxPercentileAccumulator::try_new(fraction)?),
                DataType::Float64,
                ApproxPercentileAccumulator::state_fields(&aggregate.name),
            )
        }
        function @ (AggregateFunction::FirstValue | AggregateFunction::LastValue) => (
            Box::new(FirstLastAccumulator::new(
                function == AggregateFunction::FirstValue,
                input_type.clone(),
            )),
            input_type.clone(),
            FirstLastAccumulator::state_fields(&aggregate.name, &input_type),
        ),
        AggregateFunction::StringAgg => (
            Box::new(StringAggAccumulator::new(aggregate.separator.clone())),
            DataType::Utf8,
            vec![Field::new(
                format!("{}[joined]", aggregate.name),
                DataType::Utf8,
                true,
            )],
        ),
    })
}

fn require_numeric(name: &str, data_type: &DataType) -> Result<()> {
    if data_type.is_numeric() {
        Ok(())
    } else {
        Err(QuiverError::Unsupported(format!(
            "{name} of {data_type}; it takes numbers"
        )))
    }
}

/// A global aggregate over no rows still has one output row: counts 0, the rest NULL.
fn pad_global(
    column: ArrayRef,
    rows: usize,
    data_type: &DataType,
    function: AggregateFunction,
) -> Result<ArrayRef> {
    if column.len() == rows {
        return Ok(column);
    }
    if column.is_empty() && rows == 1 {
        return Ok(match function {
            AggregateFunction::CountStar
            | AggregateFunction::Count
            | AggregateFunction::CountDistinct
            | AggregateFunction::ApproxCountDistinct => {
                Arc::new(arrow::array::Int64Array::from(vec![0_i64]))
            }
            _ => new_null_array(data_type, 1),
        });
    }
    Err(QuiverError::Internal(format!(
        "aggregate produced {} rows for {rows} groups",
        column.len()
    )))
}

fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>, rows: usize) -> Result<RecordBatch> {
    let options = RecordBatchOptions::new().with_row_count(Some(rows));
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &options,
    )?)
}
