//! Window functions (`f(...) OVER (PARTITION BY ... ORDER BY ... frame)`): ranking, offsets
//! and aggregates over frames, computed over all rows of a batch at once.
//!
//! Rows are sorted once per call by (partition keys, order keys, arrival), so ties keep their
//! arrival order. Ranking and offset functions are index arithmetic over the sorted rows.
//! Aggregates reuse the hash-aggregation accumulators: a frame that is the whole partition is
//! one group per partition; any other frame is merged from the partial states of a segment
//! tree over the sorted rows (at most two blocks per level, merged left to right, so
//! order-sensitive aggregates such as `STRING_AGG` see the frame's rows in order). Results are
//! those of `GROUP BY` over the frame's rows: exact sums, the same output types.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    new_empty_array, new_null_array, Array, ArrayRef, AsArray, BooleanArray, Float64Array,
    Int64Array, RecordBatch, RecordBatchOptions, UInt32Array,
};
use arrow::compute::kernels::partition::partition;
use arrow::compute::kernels::zip::zip;
use arrow::compute::{cast_with_options, concat, take, CastOptions, SortColumn, SortOptions};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use quiver_core::{QuiverError, Result};

use crate::expr::{sql_float_order, Expr, Literal};
use crate::{AggregateExpr, AggregateFunction, EmitTo, HashAggregator};

/// A window function.
#[derive(Debug, Clone, PartialEq)]
pub enum AnalyticFunction {
    /// `ROW_NUMBER()`: 1, 2, 3, ... in window order.
    RowNumber,
    /// `RANK()`: the row number of the row's first peer.
    Rank,
    /// `DENSE_RANK()`: the number of distinct peer groups up to the row's.
    DenseRank,
    /// `PERCENT_RANK()`: `(rank - 1) / (partition rows - 1)`, 0 for a one-row partition.
    PercentRank,
    /// `CUME_DIST()`: rows up to the row's last peer over partition rows.
    CumeDist,
    /// `NTILE(buckets)`: bucket 1..=buckets, the first buckets one row larger when the
    /// partition does not divide evenly.
    Ntile,
    /// `LAG(value [, offset [, default]])`: the value `offset` rows (default 1) earlier in the
    /// partition; `default` (or NULL) past its start.
    Lag,
    /// `LEAD(value [, offset [, default]])`: the same, later.
    Lead,
    /// `FIRST_VALUE(value)`: the value at the frame's first row (NULL included).
    FirstValue,
    /// `LAST_VALUE(value)`: the value at the frame's last row.
    LastValue,
    /// `NTH_VALUE(value, n)`: the value at the frame's `n`-th row (1-based), NULL past its end.
    NthValue,
    /// An aggregate of the frame's rows; argument 0 is its input (none for `COUNT(*)`).
    Aggregate {
        /// The aggregate.
        function: AggregateFunction,
        /// The separator of `STRING_AGG`.
        separator: String,
    },
}

/// How frame offsets count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameUnits {
    /// Physical rows.
    Rows,
    /// Peer groups by the ORDER BY value (`CURRENT ROW` includes every peer).
    Range,
    /// Peer groups counted: `n PRECEDING` starts at the peer group `n` groups before the
    /// current row's.
    Groups,
}

/// One end of a frame.
#[derive(Debug, Clone, PartialEq)]
pub enum FrameBound {
    /// The partition's first row.
    UnboundedPreceding,
    /// `n PRECEDING`: `n` rows before (`ROWS`), or order keys down to the current row's key
    /// minus `n` (`RANGE`; read as [`FrameBound::PrecedingValue`]).
    Preceding(u64),
    /// The current row (with `RANGE`, its first or last peer).
    CurrentRow,
    /// `n FOLLOWING` (rows; with `RANGE`, a value as for `Preceding`).
    Following(u64),
    /// The partition's last row.
    UnboundedFollowing,
    /// `RANGE offset PRECEDING`: rows whose order key is at least the current row's key minus
    /// `offset` (a number of the key's kind, or an interval for dates and timestamps); with a
    /// descending key, at most the key plus `offset`.
    PrecedingValue(Literal),
    /// `RANGE offset FOLLOWING`: the same, the other way.
    FollowingValue(Literal),
}

/// The rows an aggregate or value function sees for each row.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// How offsets count.
    pub units: FrameUnits,
    /// First row.
    pub start: FrameBound,
    /// Last row (inclusive).
    pub end: FrameBound,
}

impl Frame {
    /// SQL's default frame: from the partition's start to the current row's last peer (the
    /// whole partition when the window has no ORDER BY, since every row is then a peer).
    pub const DEFAULT: Frame = Frame {
        units: FrameUnits::Range,
        start: FrameBound::UnboundedPreceding,
        end: FrameBound::CurrentRow,
    };

    /// A frame, checked as PostgreSQL checks it. With `RANGE`, `Preceding(n)` and
    /// `Following(n)` are the integer values `n`.
    pub fn try_new(units: FrameUnits, start: FrameBound, end: FrameBound) -> Result<Frame> {
        use FrameBound::*;
        let value_bound = |bound: FrameBound| -> Result<FrameBound> {
            let integer = |n: u64| {
                i64::try_from(n).map(Literal::Int64).map_err(|_| {
                    QuiverError::Unsupported(format!("window frame: offset {n} is too large"))
                })
            };
            Ok(match (units, bound) {
                (FrameUnits::Range, Preceding(n)) => PrecedingValue(integer(n)?),
                (FrameUnits::Range, Following(n)) => FollowingValue(integer(n)?),
                (FrameUnits::Rows | FrameUnits::Groups, PrecedingValue(_) | FollowingValue(_)) => {
                    return Err(QuiverError::Unsupported(
                        "window frame: ROWS and GROUPS offsets are counts; a value offset needs \
                         RANGE"
                            .into(),
                    ))
                }
                (_, bound) => bound,
            })
        };
        let (start, end) = (value_bound(start)?, value_bound(end)?);
        let refuse = |why: &str| Err(QuiverError::Unsupported(format!("window frame: {why}")));
        let preceding = |b: &FrameBound| matches!(b, Preceding(_) | PrecedingValue(_));
        let following = |b: &FrameBound| matches!(b, Following(_) | FollowingValue(_));
        if start == UnboundedFollowing {
            return refuse("frame start cannot be UNBOUNDED FOLLOWING");
        }
        if end == UnboundedPreceding {
            return refuse("frame end cannot be UNBOUNDED PRECEDING");
        }
        if start == CurrentRow && preceding(&end) {
            return refuse("a frame starting from the current row cannot end before it");
        }
        if following(&start) && (preceding(&end) || end == CurrentRow) {
            return refuse("a frame starting after the current row cannot end before it");
        }
        for bound in [&start, &end] {
            if let PrecedingValue(offset) | FollowingValue(offset) = bound {
                let negative = match offset {
                    Literal::Int64(n) => *n < 0,
                    Literal::Float64(f) => f.is_nan() || *f < 0.0,
                    Literal::Decimal(m, _) => *m < 0,
                    Literal::Interval {
                        months,
                        days,
                        nanos,
                    } => *months != 0 || *days < 0 || *nanos < 0,
                    _ => true,
                };
                if negative {
                    return refuse(
                        "a RANGE offset must be a non-negative number, or an interval of days \
                         and time (no months) for dates and timestamps",
                    );
                }
            }
        }
        Ok(Frame { units, start, end })
    }

    fn has_value_offsets(&self) -> bool {
        [&self.start, &self.end].into_iter().any(|b| {
            matches!(
                b,
                FrameBound::PrecedingValue(_) | FrameBound::FollowingValue(_)
            )
        })
    }

    /// The frame of sorted row `row` in partition `partition`, whose peers are `peers`, as a
    /// range of sorted rows (empty when the frame holds no row).
    fn rows(&self, row: usize, partition: &Range<usize>, peers: &Range<usize>) -> Range<usize> {
        let offset = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let range = self.units != FrameUnits::Rows;
        let start = match self.start {
            // Value offsets are resolved by `value_frames`; here they stand for the peers.
            FrameBound::PrecedingValue(_) | FrameBound::FollowingValue(_) => peers.start,
            FrameBound::UnboundedPreceding => partition.start,
            FrameBound::Preceding(n) => row.saturating_sub(offset(n)).max(partition.start),
            FrameBound::CurrentRow if range => peers.start,
            FrameBound::CurrentRow => row,
            FrameBound::Following(n) => row.saturating_add(offset(n)).min(partition.end),
            FrameBound::UnboundedFollowing => partition.end,
        };
        let end = match self.end {
            FrameBound::PrecedingValue(_) | FrameBound::FollowingValue(_) => peers.end,
            FrameBound::UnboundedPreceding => partition.start,
            FrameBound::Preceding(n) => (row + 1).saturating_sub(offset(n)).max(partition.start),
            FrameBound::CurrentRow if range => peers.end,
            FrameBound::CurrentRow => row + 1,
            FrameBound::Following(n) => (row + 1).saturating_add(offset(n)).min(partition.end),
            FrameBound::UnboundedFollowing => partition.end,
        };
        start..end.max(start)
    }
}

/// One `ORDER BY` key of a window.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticOrder {
    /// The key.
    pub expr: Expr,
    /// `DESC`.
    pub descending: bool,
    /// `NULLS FIRST`.
    pub nulls_first: bool,
}

/// One window function call, over the rows of one batch.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyticCall {
    /// The function.
    pub function: AnalyticFunction,
    /// Its arguments.
    pub arguments: Vec<Expr>,
    /// `FILTER (WHERE ...)` of an aggregate.
    pub filter: Option<Expr>,
    /// `PARTITION BY`.
    pub partition_by: Vec<Expr>,
    /// `ORDER BY`.
    pub order_by: Vec<AnalyticOrder>,
    /// The frame (aggregates and FIRST/LAST/NTH_VALUE).
    pub frame: Frame,
    /// `IGNORE NULLS` (LAG, LEAD, FIRST/LAST/NTH_VALUE only): offsets and positions count the
    /// rows whose value is not NULL.
    pub ignore_nulls: bool,
    /// The call as written, for names and messages.
    pub text: String,
}

/// The sorted positions whose value is not NULL, and for each sorted position how many of them
/// come before it: `IGNORE NULLS` walks these instead of all rows.
struct NonNullPositions {
    positions: Vec<usize>,
    /// `before[p]` = non-NULL sorted positions in `0..p`; one entry more than there are rows.
    before: Vec<usize>,
}

impl NonNullPositions {
    fn new(values: &dyn Array, order: &Ordering) -> Self {
        // Logical: a NULL-typed or dictionary column's NULLs count too.
        let nulls = values.logical_nulls();
        let mut positions = Vec::new();
        let mut before = Vec::with_capacity(order.rows.len() + 1);
        for (position, &row) in order.rows.iter().enumerate() {
            before.push(positions.len());
            if nulls.as_ref().is_none_or(|n| n.is_valid(row as usize)) {
                positions.push(position);
            }
        }
        before.push(positions.len());
        NonNullPositions { positions, before }
    }

    /// The `n`-th (from 0) non-NULL position in `range`.
    fn nth_in(&self, range: &Range<usize>, n: usize) -> Option<usize> {
        if range.start >= range.end {
            return None;
        }
        let first = self.before[range.start];
        let index = first.checked_add(n)?;
        (index < self.before[range.end]).then(|| self.positions[index])
    }

    /// The last non-NULL position in `range`.
    fn last_in(&self, range: &Range<usize>) -> Option<usize> {
        if range.start >= range.end {
            return None;
        }
        let end = self.before[range.end];
        (end > self.before[range.start]).then(|| self.positions[end - 1])
    }
}

/// Rows of a batch in window order, with their partitions and peer groups.
struct Ordering {
    /// Sorted position → batch row.
    rows: Vec<u32>,
    /// Partitions, as ranges of sorted positions, in order.
    partitions: Vec<Range<usize>>,
    /// Peer groups (equal partition and order keys), in order; each inside one partition.
    peers: Vec<Range<usize>>,
    /// The first ORDER BY key in window order (for RANGE offsets).
    order_key: Option<ArrayRef>,
}

impl Ordering {
    fn new(call: &AnalyticCall, batch: &RecordBatch) -> Result<Ordering> {
        let row_count = batch.num_rows();
        let last_row = u32::try_from(row_count).map_err(|_| {
            QuiverError::ResourceExhausted(format!(
                "{}: {row_count} rows in one window; at most {} are supported",
                call.text,
                u32::MAX
            ))
        })?;
        let keys = |exprs: &mut dyn Iterator<Item = &Expr>| -> Result<Vec<ArrayRef>> {
            exprs.map(|e| sql_float_order(e.evaluate(batch)?)).collect()
        };
        let partition_keys = keys(&mut call.partition_by.iter())?;
        let order_keys = keys(&mut call.order_by.iter().map(|o| &o.expr))?;
        if partition_keys.is_empty() && order_keys.is_empty() {
            let everything = whole(row_count);
            return Ok(Ordering {
                rows: (0..last_row).collect(),
                partitions: everything.clone(),
                peers: everything,
                order_key: None,
            });
        }
        let mut sort_columns: Vec<SortColumn> = partition_keys
            .iter()
            .map(|values| SortColumn {
                values: Arc::clone(values),
                options: Some(SortOptions {
                    descending: false,
                    nulls_first: true,
                }),
            })
            .collect();
        for (values, key) in order_keys.iter().zip(&call.order_by) {
            sort_columns.push(SortColumn {
                values: Arc::clone(values),
                options: Some(SortOptions {
                    descending: key.descending,
                    nulls_first: key.nulls_first,
                }),
            });
        }
        // Arrival order breaks ties, so results do not depend on the sort's stability.
        let sorted = crate::sort::sorted_positions(&sort_columns, None)?;
        let sorted_keys = |columns: &[ArrayRef]| -> Result<Vec<ArrayRef>> {
            Ok(columns
                .iter()
                .map(|c| take(c.as_ref(), &sorted, None))
                .collect::<std::result::Result<_, _>>()?)
        };
        let sorted_partition_keys = sorted_keys(&partition_keys)?;
        let sorted_order_keys = sorted_keys(&order_keys)?;
        let ranges = |columns: &[ArrayRef]| -> Result<Vec<Range<usize>>> {
            Ok(if columns.is_empty() {
                whole(row_count)
            } else {
                partition(columns)?.ranges()
            })
        };
        let partitions = ranges(&sorted_partition_keys)?;
        let order_key = sorted_order_keys.first().cloned();
        let peers = if sorted_order_keys.is_empty() {
            partitions.clone()
        } else {
            let mut all = sorted_partition_keys;
            all.extend(sorted_order_keys);
            ranges(&all)?
        };
        Ok(Ordering {
            rows: sorted.values().to_vec(),
            partitions,
            peers,
            order_key,
        })
    }

    /// Calls `visit(sorted position, partition, peers, peer group number in the partition)`
    /// for every row in window order.
    fn for_each(&self, mut visit: impl FnMut(usize, &Range<usize>, &Range<usize>, usize)) {
        let mut peer_index = 0;
        for partition in &self.partitions {
            let mut ordinal = 0;
            while let Some(peers) = self.peers.get(peer_index) {
                if peers.start >= partition.end {
                    break;
                }
                ordinal += 1;
                for row in peers.clone() {
                    visit(row, partition, peers, ordinal);
                }
                peer_index += 1;
            }
        }
    }
}

/// One partition of every row (none without rows).
fn whole(row_count: usize) -> Vec<Range<usize>> {
    std::iter::once(0..row_count)
        .filter(|r| !r.is_empty())
        .collect()
}

impl AnalyticCall {
    /// The type of the result over rows of `schema`.
    pub fn data_type(&self, schema: &Schema) -> Result<DataType> {
        match &self.function {
            AnalyticFunction::RowNumber
            | AnalyticFunction::Rank
            | AnalyticFunction::DenseRank
            | AnalyticFunction::Ntile => Ok(DataType::Int64),
            AnalyticFunction::PercentRank | AnalyticFunction::CumeDist => Ok(DataType::Float64),
            AnalyticFunction::Lag | AnalyticFunction::Lead => {
                let value = self.argument(0)?.data_type(schema)?;
                match (&value, self.arguments.get(2)) {
                    (DataType::Null, Some(default)) => default.data_type(schema),
                    _ => Ok(value),
                }
            }
            AnalyticFunction::FirstValue
            | AnalyticFunction::LastValue
            | AnalyticFunction::NthValue => self.argument(0)?.data_type(schema),
            AnalyticFunction::Aggregate {
                function,
                separator,
            } => {
                let input = self
                    .arguments
                    .first()
                    .map(|a| a.data_type(schema))
                    .transpose()?;
                let (input_schema, aggregate) = aggregate_layout(*function, separator, input);
                let aggregator = HashAggregator::try_new(input_schema, vec![0], vec![aggregate])?;
                Ok(aggregator.output_schema().field(1).data_type().clone())
            }
        }
    }

    fn argument(&self, index: usize) -> Result<&Expr> {
        self.arguments.get(index).ok_or_else(|| {
            QuiverError::Internal(format!("{}: argument {index} missing", self.text))
        })
    }

    /// An evaluated argument as BIGINT (offsets, bucket counts, positions).
    fn integer_argument(&self, index: usize, batch: &RecordBatch) -> Result<Option<Int64Array>> {
        let Some(expr) = self.arguments.get(index) else {
            return Ok(None);
        };
        let values = expr.evaluate(batch)?;
        if !values.data_type().is_integer() && values.data_type() != &DataType::Null {
            return Err(QuiverError::Unsupported(format!(
                "{}: argument {} is {}; an integer is expected",
                self.text,
                index + 1,
                values.data_type()
            )));
        }
        let values = cast_with_options(&values, &DataType::Int64, &CastOptions::default())?;
        Ok(Some(values.as_primitive().clone()))
    }

    /// The window function's value for every row of `batch`, in the batch's row order.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        if batch.num_rows() == 0 {
            return Ok(new_empty_array(&self.data_type(&batch.schema())?));
        }
        let order = Ordering::new(self, batch)?;
        let row_count = batch.num_rows();
        match &self.function {
            AnalyticFunction::RowNumber | AnalyticFunction::Rank | AnalyticFunction::DenseRank => {
                let mut out = vec![0_i64; row_count];
                order.for_each(|row, partition, peers, ordinal| {
                    let value = match self.function {
                        AnalyticFunction::RowNumber => row - partition.start + 1,
                        AnalyticFunction::Rank => peers.start - partition.start + 1,
                        _ => ordinal,
                    };
                    out[order.rows[row] as usize] = value as i64;
                });
                Ok(Arc::new(Int64Array::from(out)))
            }
            AnalyticFunction::PercentRank | AnalyticFunction::CumeDist => {
                let mut out = vec![0_f64; row_count];
                order.for_each(|row, partition, peers, _| {
                    let size = partition.len() as f64;
                    let value = match self.function {
                        AnalyticFunction::PercentRank if partition.len() > 1 => {
                            (peers.start - partition.start) as f64 / (size - 1.0)
                        }
                        AnalyticFunction::PercentRank => 0.0,
                        _ => (peers.end - partition.start) as f64 / size,
                    };
                    out[order.rows[row] as usize] = value;
                });
                Ok(Arc::new(Float64Array::from(out)))
            }
            AnalyticFunction::Ntile => self.ntile(batch, &order),
            AnalyticFunction::Lag | AnalyticFunction::Lead => self.offset_value(batch, &order),
            AnalyticFunction::FirstValue
            | AnalyticFunction::LastValue
            | AnalyticFunction::NthValue => self.frame_value(batch, &order),
            AnalyticFunction::Aggregate {
                function,
                separator,
            } => self.frame_aggregate(*function, separator, batch, &order),
        }
    }

    /// Every sorted row's frame, as a range of sorted rows.
    fn frames(&self, order: &Ordering) -> Result<Vec<Range<usize>>> {
        let mut frames = vec![0..0; order.rows.len()];
        if self.frame.units == FrameUnits::Groups {
            self.group_frames(order, &mut frames);
            return Ok(frames);
        }
        order.for_each(|row, partition, peers, _| {
            frames[row] = self.frame.rows(row, partition, peers);
        });
        if self.frame.has_value_offsets() {
            self.value_frames(order, &mut frames)?;
        }
        Ok(frames)
    }

    /// GROUPS frames: offsets count peer groups of the row's partition.
    fn group_frames(&self, order: &Ordering, frames: &mut [Range<usize>]) {
        let offset = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        let mut first_group = 0;
        for partition in &order.partitions {
            // The partition's peer groups: `order.peers[first_group..end_group]`.
            let mut end_group = first_group;
            while order
                .peers
                .get(end_group)
                .is_some_and(|p| p.start < partition.end)
            {
                end_group += 1;
            }
            let groups = &order.peers[first_group..end_group];
            for (index, peers) in groups.iter().enumerate() {
                let start = match self.frame.start {
                    FrameBound::UnboundedPreceding => partition.start,
                    FrameBound::Preceding(n) => groups[index.saturating_sub(offset(n))].start,
                    FrameBound::Following(n) => groups
                        .get(index.saturating_add(offset(n)))
                        .map_or(partition.end, |g| g.start),
                    FrameBound::UnboundedFollowing => partition.end,
                    _ => peers.start,
                };
                let end = match self.frame.end {
                    FrameBound::UnboundedPreceding => partition.start,
                    FrameBound::Preceding(n) => index
                        .checked_sub(offset(n))
                        .map_or(partition.start, |g| groups[g].end),
                    FrameBound::Following(n) => {
                        groups[index.saturating_add(offset(n)).min(groups.len() - 1)].end
                    }
                    FrameBound::UnboundedFollowing => partition.end,
                    _ => peers.end,
                };
                for row in peers.clone() {
                    frames[row] = start..end.max(start);
                }
            }
            first_group = end_group;
        }
    }

    /// Resolves RANGE offsets: for each row with a key, the frame ends found by binary search
    /// among the partition's rows with keys (rows without a key, NULL or NaN, frame their
    /// peers).
    fn value_frames(&self, order: &Ordering, frames: &mut [Range<usize>]) -> Result<()> {
        let (Some(key), [first_key]) = (&order.order_key, self.order_by.as_slice()) else {
            return Err(QuiverError::Unsupported(format!(
                "{}: a RANGE frame with an offset needs exactly one ORDER BY key",
                self.text
            )));
        };
        let descending = first_key.descending;
        let values = RangeKeys::new(key, &self.frame, &self.text)?;
        for partition in &order.partitions {
            // The rows with a comparable key are contiguous: NULLs sort to one end, NaN last.
            let keyed: Vec<usize> = partition
                .clone()
                .filter(|&r| values.key(r).is_some())
                .collect();
            let (Some(&first), Some(&last)) = (keyed.first(), keyed.last()) else {
                continue;
            };
            let keyed = first..last + 1;
            for row in keyed.clone() {
                let Some(current) = values.key(row) else {
                    continue;
                };
                let start = match &self.frame.start {
                    FrameBound::PrecedingValue(_) | FrameBound::FollowingValue(_) => {
                        let preceding = matches!(self.frame.start, FrameBound::PrecedingValue(_));
                        let bound = shifted(current, values.start_offset, preceding, descending);
                        // First row whose key is not before the bound in window order.
                        partition_point(&keyed, |r| {
                            values.key(r).is_some_and(|k| before(k, bound, descending))
                        })
                    }
                    _ => frames[row].start,
                };
                let end = match &self.frame.end {
                    FrameBound::PrecedingValue(_) | FrameBound::FollowingValue(_) => {
                        let preceding = matches!(self.frame.end, FrameBound::PrecedingValue(_));
                        let bound = shifted(current, values.end_offset, preceding, descending);
                        // First row whose key is after the bound in window order.
                        partition_point(&keyed, |r| {
                            values.key(r).is_some_and(|k| !before(bound, k, descending))
                        })
                    }
                    _ => frames[row].end,
                };
                frames[row] = start..end.max(start);
            }
        }
        Ok(())
    }

    fn ntile(&self, batch: &RecordBatch, order: &Ordering) -> Result<ArrayRef> {
        let buckets = self
            .integer_argument(0, batch)?
            .ok_or_else(|| QuiverError::Internal(format!("{}: no bucket count", self.text)))?;
        let mut out: Vec<Option<i64>> = vec![None; batch.num_rows()];
        let mut failure = None;
        order.for_each(|row, partition, _, _| {
            let original = order.rows[row] as usize;
            if buckets.is_null(original) {
                return;
            }
            let count = buckets.value(original);
            if count <= 0 {
                failure.get_or_insert(count);
                return;
            }
            let count = count as u64;
            let (size, index) = (partition.len() as u64, (row - partition.start) as u64);
            // The first `size % count` buckets hold one row more.
            let (small, larger) = (size / count, size % count);
            let bucket = if index < larger * (small + 1) {
                index / (small + 1)
            } else {
                larger + (index - larger * (small + 1)) / small.max(1)
            };
            out[original] = Some(bucket as i64 + 1);
        });
        if let Some(count) = failure {
            return Err(QuiverError::Unsupported(format!(
                "{}: the bucket count must be positive, found {count}",
                self.text
            )));
        }
        Ok(Arc::new(Int64Array::from(out)))
    }

    fn offset_value(&self, batch: &RecordBatch, order: &Ordering) -> Result<ArrayRef> {
        let values = self.argument(0)?.evaluate(batch)?;
        let offsets = self.integer_argument(1, batch)?;
        let default = self
            .arguments
            .get(2)
            .map(|d| d.evaluate(batch))
            .transpose()?;
        let output_type = self.data_type(&batch.schema())?;
        let mut source: Vec<Option<u32>> = vec![None; batch.num_rows()];
        let mut use_default = vec![false; batch.num_rows()];
        let backwards = self.function == AnalyticFunction::Lag;
        let non_null = self
            .ignore_nulls
            .then(|| NonNullPositions::new(values.as_ref(), order));
        order.for_each(|row, partition, _, _| {
            let original = order.rows[row] as usize;
            let offset = match &offsets {
                Some(o) if o.is_null(original) => return,
                Some(o) => o.value(original),
                None => 1,
            };
            let offset = if backwards {
                offset.checked_neg()
            } else {
                Some(offset)
            };
            let target = match (&non_null, offset) {
                (_, None) => None,
                // A zero offset is the row itself, NULL or not.
                (Some(_), Some(0)) => Some(row),
                (Some(non_null), Some(o)) if o > 0 => usize::try_from(o - 1)
                    .ok()
                    .and_then(|n| non_null.nth_in(&(row + 1..partition.end), n)),
                (Some(non_null), Some(o)) => {
                    // The |o|-th non-NULL row before this one.
                    let back = usize::try_from(o.unsigned_abs()).ok();
                    let before = non_null.before[row];
                    back.and_then(|b| before.checked_sub(b))
                        .filter(|&index| index >= non_null.before[partition.start])
                        .map(|index| non_null.positions[index])
                }
                (None, Some(o)) => i64::try_from(row)
                    .ok()
                    .and_then(|r| r.checked_add(o))
                    .and_then(|t| usize::try_from(t).ok())
                    .filter(|t| partition.contains(t)),
            };
            match target {
                Some(t) => source[original] = Some(order.rows[t]),
                None => use_default[original] = true,
            }
        });
        let values = sql_cast(values, &output_type)?;
        let taken = take(values.as_ref(), &UInt32Array::from(source), None)?;
        Ok(match default {
            None => taken,
            Some(default) => {
                let default = sql_cast(default, &output_type).map_err(|e| {
                    QuiverError::InvalidQuery(format!(
                        "{}: the default does not convert to the value's type {output_type}: {e}",
                        self.text
                    ))
                })?;
                zip(&BooleanArray::from(use_default), &default, &taken)?
            }
        })
    }

    fn frame_value(&self, batch: &RecordBatch, order: &Ordering) -> Result<ArrayRef> {
        let values = self.argument(0)?.evaluate(batch)?;
        let positions = match self.function {
            AnalyticFunction::NthValue => Some(
                self.integer_argument(1, batch)?
                    .ok_or_else(|| QuiverError::Internal(format!("{}: no position", self.text)))?,
            ),
            _ => None,
        };
        let frames = self.frames(order)?;
        let non_null = self
            .ignore_nulls
            .then(|| NonNullPositions::new(values.as_ref(), order));
        let mut source: Vec<Option<u32>> = vec![None; batch.num_rows()];
        let mut failure = None;
        order.for_each(|row, _, _, _| {
            let original = order.rows[row] as usize;
            let frame = frames[row].clone();
            let nth = |n: usize| match &non_null {
                Some(non_null) => non_null.nth_in(&frame, n),
                None => frame.start.checked_add(n),
            };
            let picked = match (&self.function, &positions) {
                (AnalyticFunction::FirstValue, _) => nth(0),
                (AnalyticFunction::LastValue, _) => match &non_null {
                    Some(non_null) => non_null.last_in(&frame),
                    None => frame.end.checked_sub(1),
                },
                (_, Some(p)) if p.is_null(original) => None,
                (_, Some(p)) => match usize::try_from(p.value(original)) {
                    Ok(n) if n >= 1 => nth(n - 1),
                    _ => {
                        failure.get_or_insert(p.value(original));
                        None
                    }
                },
                _ => None,
            };
            source[original] = picked.filter(|p| frame.contains(p)).map(|p| order.rows[p]);
        });
        if let Some(position) = failure {
            return Err(QuiverError::Unsupported(format!(
                "{}: the position must be at least 1, found {position}",
                self.text
            )));
        }
        Ok(take(values.as_ref(), &UInt32Array::from(source), None)?)
    }

    fn frame_aggregate(
        &self,
        function: AggregateFunction,
        separator: &str,
        batch: &RecordBatch,
        order: &Ordering,
    ) -> Result<ArrayRef> {
        let sorted = UInt32Array::from(order.rows.clone());
        let input = match self.arguments.first() {
            Some(argument) => Some(take(argument.evaluate(batch)?.as_ref(), &sorted, None)?),
            None => None,
        };
        // The aggregate's own FILTER; NULL counts as false.
        let filter: BooleanArray = match &self.filter {
            Some(filter) => {
                let mask = filter.evaluate(batch)?;
                let mask = mask.as_boolean_opt().ok_or_else(|| {
                    QuiverError::Unsupported(format!(
                        "{}: FILTER of type {}; a boolean is expected",
                        self.text,
                        mask.data_type()
                    ))
                })?;
                let mask = take(mask, &sorted, None)?;
                let mask = mask.as_boolean();
                mask.iter().map(|v| Some(v == Some(true))).collect()
            }
            None => BooleanArray::from(vec![true; batch.num_rows()]),
        };
        let (input_schema, aggregate) = aggregate_layout(
            function,
            separator,
            input.as_ref().map(|i| i.data_type().clone()),
        );
        let layout = FrameAggregate {
            input_schema,
            aggregate,
            input,
            filter,
        };
        let frames = self.frames(order)?;
        let mut partition_of: Vec<u32> = Vec::with_capacity(batch.num_rows());
        let mut whole_partitions = true;
        order.for_each(|row, partition, _, _| {
            whole_partitions &= frames[row] == *partition;
            partition_of.push(partition_of.last().map_or(0, |&last| {
                if row == partition.start {
                    last + 1
                } else {
                    last
                }
            }));
        });
        // One value per partition, or per distinct frame; then each row takes its own.
        let (values, value_of_sorted) = if whole_partitions {
            (layout.per_partition(&partition_of)?, partition_of)
        } else {
            let mut distinct: Vec<Range<usize>> = Vec::new();
            let mut frame_of_sorted = Vec::with_capacity(frames.len());
            for frame in frames {
                if distinct.last() != Some(&frame) {
                    distinct.push(frame);
                }
                frame_of_sorted.push((distinct.len() - 1) as u32);
            }
            let monotone = crate::sliding::monotone(&distinct);
            let values = match (function, &layout.input) {
                // Holistic aggregates over frames moving forward: add and remove rows instead
                // of merging value lists per frame.
                (AggregateFunction::Median | AggregateFunction::PercentileCont(_), Some(input))
                    if monotone && input.data_type().is_numeric() =>
                {
                    let fraction = match function {
                        AggregateFunction::PercentileCont(fraction) => fraction,
                        _ => 0.5,
                    };
                    if (0.0..=1.0).contains(&fraction) {
                        crate::sliding::sliding_percentile(
                            input,
                            &layout.filter,
                            &distinct,
                            fraction,
                        )?
                    } else {
                        layout.per_frame(&distinct)?
                    }
                }
                (AggregateFunction::CountDistinct, Some(input)) if monotone => {
                    crate::sliding::sliding_count_distinct(input, &layout.filter, &distinct)?
                }
                _ => layout.per_frame(&distinct)?,
            };
            (values, frame_of_sorted)
        };
        let mut value_of_row = vec![0_u32; order.rows.len()];
        for (position, &row) in order.rows.iter().enumerate() {
            value_of_row[row as usize] = value_of_sorted[position];
        }
        Ok(take(
            values.as_ref(),
            &UInt32Array::from(value_of_row),
            None,
        )?)
    }
}

/// `values` as `to` by SQL's CAST (a fractional default of an integer column rounds, an
/// overflow is an error), as `CAST(default AS type)` would.
fn sql_cast(values: ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if values.data_type() == to {
        return Ok(values);
    }
    let schema = Arc::new(Schema::new(vec![Field::new(
        "value",
        values.data_type().clone(),
        true,
    )]));
    let batch = RecordBatch::try_new(schema, vec![values])?;
    Expr::Cast(Box::new(Expr::Column(0)), to.clone(), false).evaluate(&batch)
}

/// The first row of `range` where `leading` turns false (it holds for a prefix of the range).
fn partition_point(range: &Range<usize>, leading: impl Fn(usize) -> bool) -> usize {
    let (mut low, mut high) = (range.start, range.end);
    while low < high {
        let middle = low + (high - low) / 2;
        if leading(middle) {
            low = middle + 1;
        } else {
            high = middle;
        }
    }
    low
}

/// An order key value for RANGE offsets: exact integers (decimal mantissas, nanoseconds of
/// dates and timestamps) or floats.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RangeKey {
    Int(i128),
    Float(f64),
}

/// Whether `a` comes strictly before `b` in window order.
fn before(a: RangeKey, b: RangeKey, descending: bool) -> bool {
    let order = match (a, b) {
        (RangeKey::Int(x), RangeKey::Int(y)) => x.partial_cmp(&y),
        (RangeKey::Float(x), RangeKey::Float(y)) => x.partial_cmp(&y),
        // One key column gives one kind; never mixed.
        _ => None,
    };
    order
        == Some(if descending {
            std::cmp::Ordering::Greater
        } else {
            std::cmp::Ordering::Less
        })
}

/// The sorted order key as [`RangeKey`]s, and the frame's offsets in the same units.
struct RangeKeys {
    keys: Vec<Option<RangeKey>>,
    start_offset: Option<RangeKey>,
    end_offset: Option<RangeKey>,
}

const NANOS_PER_DAY: i128 = 86_400_000_000_000;

impl RangeKeys {
    fn new(key: &ArrayRef, frame: &Frame, text: &str) -> Result<RangeKeys> {
        use arrow::datatypes::{Date32Type, Date64Type, Decimal128Type, Float64Type, TimeUnit};
        let data_type = key.data_type().clone();
        let refuse = |offset: &Literal| {
            let offset = match offset {
                Literal::Int64(n) => n.to_string(),
                Literal::Float64(f) => f.to_string(),
                Literal::Decimal(m, s) => format!("{m}e-{s}"),
                Literal::Interval { .. } => "of an interval".to_string(),
                other => format!("{other:?}"),
            };
            QuiverError::Unsupported(format!(
                "{text}: RANGE offset {offset} for an ORDER BY key of type {data_type}; \
                 numbers need a numeric key, intervals a date or timestamp key"
            ))
        };
        let interval_nanos = |offset: &Literal| -> Result<i128> {
            match offset {
                Literal::Interval { days, nanos, .. } => {
                    Ok(i128::from(*days) * NANOS_PER_DAY + i128::from(*nanos))
                }
                Literal::Int64(days) => Ok(i128::from(*days) * NANOS_PER_DAY),
                other => Err(refuse(other)),
            }
        };
        let nanos_per = |unit: &TimeUnit| -> i128 {
            match unit {
                TimeUnit::Second => 1_000_000_000,
                TimeUnit::Millisecond => 1_000_000,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1,
            }
        };
        let offset = |offset: &Literal| -> Result<RangeKey> {
            Ok(match (&data_type, offset) {
                (t, Literal::Int64(n)) if t.is_integer() => RangeKey::Int(i128::from(*n)),
                (DataType::Float16 | DataType::Float32 | DataType::Float64, o) => {
                    RangeKey::Float(match o {
                        Literal::Int64(n) => *n as f64,
                        Literal::Float64(f) => *f,
                        Literal::Decimal(m, s) => *m as f64 / 10_f64.powi(i32::from(*s)),
                        other => return Err(refuse(other)),
                    })
                }
                (DataType::Decimal128(_, scale), o) => {
                    let (mantissa, offset_scale) = match o {
                        Literal::Int64(n) => (i128::from(*n), 0),
                        Literal::Decimal(m, s) => (*m, *s),
                        other => return Err(refuse(other)),
                    };
                    let shift = i32::from(*scale) - i32::from(offset_scale);
                    let factor = 10_i128
                        .checked_pow(shift.unsigned_abs())
                        .ok_or_else(|| refuse(o))?;
                    RangeKey::Int(if shift >= 0 {
                        mantissa.checked_mul(factor).ok_or_else(|| refuse(o))?
                    } else if mantissa % factor == 0 {
                        mantissa / factor
                    } else {
                        return Err(refuse(o));
                    })
                }
                (DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _), o) => {
                    RangeKey::Int(interval_nanos(o)?)
                }
                (_, other) => return Err(refuse(other)),
            })
        };
        let bound_offset = |bound: &FrameBound| -> Result<Option<RangeKey>> {
            match bound {
                FrameBound::PrecedingValue(o) | FrameBound::FollowingValue(o) => {
                    offset(o).map(Some)
                }
                _ => Ok(None),
            }
        };
        let (start_offset, end_offset) = (bound_offset(&frame.start)?, bound_offset(&frame.end)?);
        let keys: Vec<Option<RangeKey>> = match &data_type {
            t if t.is_integer() => {
                let wide = cast_with_options(key, &DataType::Int64, &CastOptions::default());
                match wide {
                    // UInt64 beyond i64: compare as decimals instead.
                    Ok(wide) if wide.null_count() == key.null_count() => wide
                        .as_primitive::<arrow::datatypes::Int64Type>()
                        .iter()
                        .map(|v| v.map(|v| RangeKey::Int(i128::from(v))))
                        .collect(),
                    _ => cast_with_options(
                        key,
                        &DataType::Decimal128(38, 0),
                        &CastOptions::default(),
                    )?
                    .as_primitive::<Decimal128Type>()
                    .iter()
                    .map(|v| v.map(RangeKey::Int))
                    .collect(),
                }
            }
            DataType::Float16 | DataType::Float32 | DataType::Float64 => {
                let wide = cast_with_options(key, &DataType::Float64, &CastOptions::default())?;
                wide.as_primitive::<Float64Type>()
                    .iter()
                    .map(|v| v.filter(|f| !f.is_nan()).map(RangeKey::Float))
                    .collect()
            }
            DataType::Decimal128(_, _) => key
                .as_primitive::<Decimal128Type>()
                .iter()
                .map(|v| v.map(RangeKey::Int))
                .collect(),
            DataType::Date32 => key
                .as_primitive::<Date32Type>()
                .iter()
                .map(|v| v.map(|d| RangeKey::Int(i128::from(d) * NANOS_PER_DAY)))
                .collect(),
            DataType::Date64 => key
                .as_primitive::<Date64Type>()
                .iter()
                .map(|v| v.map(|ms| RangeKey::Int(i128::from(ms) * 1_000_000)))
                .collect(),
            DataType::Timestamp(unit, _) => {
                let per = nanos_per(unit);
                let raw = cast_with_options(
                    key,
                    &DataType::Timestamp(*unit, None),
                    &CastOptions::default(),
                )?;
                let raw = cast_with_options(&raw, &DataType::Int64, &CastOptions::default())?;
                raw.as_primitive::<arrow::datatypes::Int64Type>()
                    .iter()
                    .map(|v| v.map(|t| RangeKey::Int(i128::from(t) * per)))
                    .collect()
            }
            other => {
                return Err(QuiverError::Unsupported(format!(
                    "{text}: a RANGE frame with an offset over an ORDER BY key of type {other}; \
                     a number, date or timestamp is expected"
                )))
            }
        };
        Ok(RangeKeys {
            keys,
            start_offset,
            end_offset,
        })
    }

    fn key(&self, row: usize) -> Option<RangeKey> {
        self.keys.get(row).copied().flatten()
    }
}

/// `current` moved by `offset`: against window order for PRECEDING, along it for FOLLOWING.
fn shifted(
    current: RangeKey,
    offset: Option<RangeKey>,
    preceding: bool,
    descending: bool,
) -> RangeKey {
    let subtract = preceding != descending;
    match (current, offset) {
        (RangeKey::Int(v), Some(RangeKey::Int(o))) => RangeKey::Int(if subtract {
            v.saturating_sub(o)
        } else {
            v.saturating_add(o)
        }),
        (RangeKey::Float(v), Some(RangeKey::Float(o))) => {
            RangeKey::Float(if subtract { v - o } else { v + o })
        }
        (current, _) => current,
    }
}

/// The aggregator input for a window aggregate: `[key: UInt32, input?, filter: Boolean]`, and
/// the aggregate over it (always filtered, so groups can be created without values).
fn aggregate_layout(
    function: AggregateFunction,
    separator: &str,
    input: Option<DataType>,
) -> (SchemaRef, AggregateExpr) {
    let mut fields = vec![Field::new("key", DataType::UInt32, false)];
    let input_column = input.map(|data_type| {
        fields.push(Field::new("input", data_type, true));
        fields.len() - 1
    });
    fields.push(Field::new("filter", DataType::Boolean, false));
    let function = match (function, input_column) {
        (AggregateFunction::Count, None) => AggregateFunction::CountStar,
        (f, _) => f,
    };
    let aggregate = AggregateExpr::new(function, input_column, "value")
        .with_separator(separator)
        .with_filter(fields.len() - 1);
    (Arc::new(Schema::new(fields)), aggregate)
}

/// A window aggregate's input in window order.
struct FrameAggregate {
    input_schema: SchemaRef,
    aggregate: AggregateExpr,
    input: Option<ArrayRef>,
    filter: BooleanArray,
}

/// Frames evaluated per aggregator, bounding the block lists held at once.
const FRAMES_PER_ROUND: usize = 1 << 16;

impl FrameAggregate {
    fn aggregator(&self) -> Result<HashAggregator> {
        HashAggregator::try_new(
            Arc::clone(&self.input_schema),
            vec![0],
            vec![self.aggregate.clone()],
        )
    }

    /// An input batch of the sorted rows, keyed by `keys`.
    fn rows_batch(&self, keys: Vec<u32>) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from(keys))];
        columns.extend(self.input.iter().cloned());
        columns.push(Arc::new(self.filter.clone()));
        Ok(RecordBatch::try_new(
            Arc::clone(&self.input_schema),
            columns,
        )?)
    }

    /// Groups `0..count` created in order, holding nothing yet.
    fn empty_groups(&self, aggregator: &mut HashAggregator, count: usize) -> Result<()> {
        let mut columns: Vec<ArrayRef> =
            vec![Arc::new(UInt32Array::from_iter_values(0..count as u32))];
        if let Some(input) = &self.input {
            columns.push(new_null_array(input.data_type(), count));
        }
        columns.push(Arc::new(BooleanArray::from(vec![false; count])));
        aggregator.update(&RecordBatch::try_new(
            Arc::clone(&self.input_schema),
            columns,
        )?)
    }

    /// One value per partition; `partition_of` numbers the sorted rows' partitions from 0 in
    /// order, so groups are created in partition order.
    fn per_partition(&self, partition_of: &[u32]) -> Result<ArrayRef> {
        let mut aggregator = self.aggregator()?;
        aggregator.update(&self.rows_batch(partition_of.to_vec())?)?;
        Ok(Arc::clone(aggregator.evaluate(EmitTo::All)?.column(1)))
    }

    /// One value per frame (ranges of sorted rows), merged from a segment tree of states.
    fn per_frame(&self, frames: &[Range<usize>]) -> Result<ArrayRef> {
        let row_count = self.filter.len();
        // Level 0: one state per row; level l + 1 merges pairs of level l.
        let mut aggregator = self.aggregator()?;
        aggregator.update(&self.rows_batch((0..row_count as u32).collect())?)?;
        let mut levels = vec![aggregator.state(EmitTo::All)?];
        while let Some(below) = levels.last().filter(|l| l.num_rows() > 1) {
            let keys: Vec<u32> = (0..below.num_rows() as u32).map(|i| i / 2).collect();
            let mut aggregator = self.aggregator()?;
            aggregator.merge(&with_keys(below, keys)?)?;
            let level = aggregator.state(EmitTo::All)?;
            levels.push(level);
        }
        let mut values = Vec::new();
        let mut blocks: Vec<(u8, u32)> = Vec::new();
        for chunk in frames.chunks(FRAMES_PER_ROUND) {
            // Each frame's blocks, left to right; merged round by round (the r-th block of
            // every frame in round r) so each frame's rows arrive in window order.
            blocks.clear();
            let mut block_ranges = Vec::with_capacity(chunk.len());
            for frame in chunk {
                let first = blocks.len();
                frame_blocks(frame, &mut blocks);
                block_ranges.push(first..blocks.len());
            }
            let mut aggregator = self.aggregator()?;
            self.empty_groups(&mut aggregator, chunk.len())?;
            let rounds = block_ranges.iter().map(Range::len).max().unwrap_or(0);
            for round in 0..rounds {
                let mut per_level: Vec<(Vec<u32>, Vec<u32>)> =
                    vec![Default::default(); levels.len()];
                for (frame, range) in block_ranges.iter().enumerate() {
                    if let Some(&(level, block)) = blocks[range.clone()].get(round) {
                        let (rows, keys) = &mut per_level[level as usize];
                        rows.push(block);
                        keys.push(frame as u32);
                    }
                }
                for (level, (rows, keys)) in per_level.into_iter().enumerate() {
                    if rows.is_empty() {
                        continue;
                    }
                    let states = take_rows(&levels[level], &UInt32Array::from(rows))?;
                    aggregator.merge(&with_keys(&states, keys)?)?;
                }
            }
            values.push(Arc::clone(aggregator.evaluate(EmitTo::All)?.column(1)));
        }
        let parts: Vec<&dyn Array> = values.iter().map(|v| v.as_ref()).collect();
        Ok(concat(&parts)?)
    }
}

/// The aligned blocks covering `frame`, left to right: block `(level, i)` holds sorted rows
/// `[i << level, (i + 1) << level)`.
fn frame_blocks(frame: &Range<usize>, out: &mut Vec<(u8, u32)>) {
    let (mut left, mut right) = (frame.start, frame.end);
    let mut level = 0_u8;
    let mut from_right: Vec<(u8, u32)> = Vec::new();
    while left < right {
        if left & 1 == 1 {
            out.push((level, left as u32));
            left += 1;
        }
        if right & 1 == 1 {
            right -= 1;
            from_right.push((level, right as u32));
        }
        left >>= 1;
        right >>= 1;
        level += 1;
    }
    out.extend(from_right.into_iter().rev());
}

/// `state` with its key column replaced.
fn with_keys(state: &RecordBatch, keys: Vec<u32>) -> Result<RecordBatch> {
    let mut columns = state.columns().to_vec();
    columns[0] = Arc::new(UInt32Array::from(keys));
    let options = RecordBatchOptions::new().with_row_count(Some(state.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        state.schema(),
        columns,
        &options,
    )?)
}

fn take_rows(batch: &RecordBatch, rows: &UInt32Array) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|c| take(c.as_ref(), rows, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &options,
    )?)
}
