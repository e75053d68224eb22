//! Accumulators over dense group ids: one `Vec` of state per aggregate, updated in tight loops.
//!
//! Each accumulator updates from a batch (`update_batch`), merges partial states from other
//! partitions (`merge_batch`), exposes its state as Arrow arrays (`state`) and produces final
//! values (`evaluate`). Exactness: integer sums accumulate in `i128` (overflow of the output type
//! is an error), decimal sums and averages stay decimal, float sums use Neumaier compensated
//! summation so results are stable across batch sizes and partitionings to within a few ulps.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Decimal128Array, Float64Array,
    Int64Array, PrimitiveArray, StringArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use quiver_core::{QuiverError, Result};

use crate::EmitTo;

/// A vectorised aggregate over group ids.
pub trait GroupsAccumulator: Send {
    /// Adds rows of `values` (empty for `COUNT(*)`) to groups `group_ids`; rows where
    /// `filter` is not true are skipped. `total_groups` is the number of groups after this batch.
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()>;
    /// Merges partial states (as produced by [`GroupsAccumulator::state`]) into groups.
    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()>;
    /// The partial state of the emitted groups, removing them.
    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>>;
    /// Final values of the emitted groups, removing them.
    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef>;
    /// Bytes held.
    fn size(&self) -> usize;
}

/// The rows of a batch that an aggregate sees: not null and passing the filter. `None`: all.
pub fn selected_rows(
    value_nulls: Option<&NullBuffer>,
    filter: Option<&BooleanArray>,
) -> Option<NullBuffer> {
    let filter_mask = filter.map(|f| match f.nulls() {
        Some(nulls) => NullBuffer::new(f.values() & nulls.inner()),
        None => NullBuffer::new(f.values().clone()),
    });
    NullBuffer::union(value_nulls, filter_mask.as_ref()).filter(|m| m.null_count() > 0)
}

/// Runs `$body` with `$g` (group index) and `$v` (value) bound for every selected row: a plain
/// zipped loop when all rows are selected, the set bits of the mask otherwise.
macro_rules! for_each_selected {
    ($mask:expr, $group_ids:expr, $values:expr, |$g:ident, $v:ident| $body:block) => {
        match $mask {
            None => {
                for (&group, &value) in $group_ids.iter().zip($values.iter()) {
                    let $g = group as usize;
                    let $v = value;
                    $body
                }
            }
            Some(mask) => {
                for row in mask.valid_indices() {
                    let $g = $group_ids[row] as usize;
                    let $v = $values[row];
                    $body
                }
            }
        }
    };
}

/// Removes and returns the values of the groups `emit_to` takes.
pub(crate) fn take_front<T>(values: &mut Vec<T>, emit_to: EmitTo) -> Vec<T> {
    let n = emit_to.count(values.len());
    if n == values.len() {
        std::mem::take(values)
    } else {
        values.drain(..n).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// COUNT

/// `COUNT(*)` and `COUNT(col)`.
#[derive(Debug, Default)]
pub struct CountAccumulator {
    counts: Vec<i64>,
}

impl CountAccumulator {
    /// A new count.
    pub fn new() -> Self {
        Self::default()
    }
}

impl GroupsAccumulator for CountAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.counts.resize(total_groups, 0);
        let value_nulls = values.first().and_then(|v| v.logical_nulls());
        let mask = selected_rows(value_nulls.as_ref(), filter);
        let counts = &mut self.counts;
        match mask {
            None => {
                for &g in group_ids {
                    counts[g as usize] += 1;
                }
            }
            Some(mask) => {
                for row in mask.valid_indices() {
                    counts[group_ids[row] as usize] += 1;
                }
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.counts.resize(total_groups, 0);
        let partial = state_column::<Int64Type>(states, 0)?;
        for (&g, &count) in group_ids.iter().zip(partial.values()) {
            self.counts[g as usize] = self.counts[g as usize]
                .checked_add(count)
                .ok_or_else(|| QuiverError::overflow("COUNT", "Int64"))?;
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(Arc::new(Int64Array::from(take_front(
            &mut self.counts,
            emit_to,
        ))))
    }

    fn size(&self) -> usize {
        self.counts.capacity() * 8
    }
}

/// Partial-state column `index` as a primitive array of `T`.
pub(crate) fn state_column<T: ArrowPrimitiveType>(
    states: &[ArrayRef],
    index: usize,
) -> Result<&PrimitiveArray<T>> {
    states
        .get(index)
        .and_then(|a| a.as_primitive_opt::<T>())
        .ok_or_else(|| {
            QuiverError::Internal(format!("partial state column {index} has the wrong type"))
        })
}

// ---------------------------------------------------------------------------------------------
// SUM and AVG

/// Whether a [`SumAccumulator`] reports the sum or the mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumKind {
    /// `SUM`.
    Sum,
    /// `AVG`.
    Avg,
}

/// How values are summed, by input type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SumDomain {
    /// Integers, exact in `i128`.
    Integer,
    /// Decimal128 with this scale, exact in `i128`.
    Decimal(i8),
    /// Floats, Neumaier-compensated `f64`.
    Float,
}

/// `SUM` and `AVG` over integers, decimals and floats.
#[derive(Debug)]
pub struct SumAccumulator {
    kind: SumKind,
    domain: SumDomain,
    input_type: DataType,
    counts: Vec<i64>,
    exact_sums: Vec<i128>,
    float_sums: Vec<f64>,
    float_compensations: Vec<f64>,
}

/// Adds `value` to a Neumaier-compensated sum.
#[inline(always)]
fn neumaier_add(sum: &mut f64, compensation: &mut f64, value: f64) {
    let t = *sum + value;
    if sum.abs() >= value.abs() {
        *compensation += (*sum - t) + value;
    } else {
        *compensation += (value - t) + *sum;
    }
    *sum = t;
}

impl SumAccumulator {
    /// A `SUM` or `AVG` over values of `input_type`.
    pub fn try_new(kind: SumKind, input_type: &DataType) -> Result<Self> {
        let domain = match input_type {
            t if t.is_integer() => SumDomain::Integer,
            DataType::Decimal128(_, scale) => SumDomain::Decimal(*scale),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => SumDomain::Float,
            other => {
                return Err(QuiverError::Unsupported(format!(
                    "{kind:?} of {other}; it takes integers, decimals and floats"
                )))
            }
        };
        Ok(SumAccumulator {
            kind,
            domain,
            input_type: input_type.clone(),
            counts: Vec::new(),
            exact_sums: Vec::new(),
            float_sums: Vec::new(),
            float_compensations: Vec::new(),
        })
    }

    /// The output type for `kind` over `input_type`.
    pub fn output_type(kind: SumKind, input_type: &DataType) -> Result<DataType> {
        Ok(match (kind, Self::try_new(kind, input_type)?.domain) {
            (SumKind::Sum, SumDomain::Integer) => DataType::Int64,
            (SumKind::Sum, SumDomain::Decimal(s)) => DataType::Decimal128(38, s),
            (SumKind::Avg, SumDomain::Decimal(s)) => DataType::Decimal128(38, avg_scale(s)),
            (_, SumDomain::Float) | (SumKind::Avg, SumDomain::Integer) => DataType::Float64,
        })
    }

    fn resize(&mut self, total_groups: usize) {
        self.counts.resize(total_groups, 0);
        match self.domain {
            SumDomain::Float => {
                self.float_sums.resize(total_groups, 0.0);
                self.float_compensations.resize(total_groups, 0.0);
            }
            _ => self.exact_sums.resize(total_groups, 0),
        }
    }

    #[inline(never)]
    fn update_exact<T>(
        &mut self,
        values: &PrimitiveArray<T>,
        group_ids: &[u32],
        mask: Option<&NullBuffer>,
    ) -> Result<()>
    where
        T: ArrowPrimitiveType,
        T::Native: Into<i128>,
    {
        let (sums, counts, raw) = (&mut self.exact_sums, &mut self.counts, values.values());
        if std::mem::size_of::<T::Native>() <= 8 {
            // Values of at most 64 bits: 2^64 rows cannot overflow an i128 sum.
            for_each_selected!(mask, group_ids, raw, |g, v| {
                sums[g] += v.into();
                counts[g] += 1;
            });
            return Ok(());
        }
        let mut overflow = false;
        for_each_selected!(mask, group_ids, raw, |g, v| {
            match sums[g].checked_add(v.into()) {
                Some(s) => sums[g] = s,
                None => overflow = true,
            }
            counts[g] += 1;
        });
        if overflow {
            return Err(QuiverError::overflow(
                format!("{:?}", self.kind),
                "Decimal128 (i128)",
            ));
        }
        Ok(())
    }

    #[inline(never)]
    fn update_float<T>(
        &mut self,
        values: &PrimitiveArray<T>,
        group_ids: &[u32],
        mask: Option<&NullBuffer>,
    ) where
        T: ArrowPrimitiveType,
        T::Native: Into<f64>,
    {
        let (sums, comps, counts, raw) = (
            &mut self.float_sums,
            &mut self.float_compensations,
            &mut self.counts,
            values.values(),
        );
        for_each_selected!(mask, group_ids, raw, |g, v| {
            neumaier_add(&mut sums[g], &mut comps[g], v.into());
            counts[g] += 1;
        });
    }

    fn emitted(&mut self, emit_to: EmitTo) -> (Vec<i64>, Vec<i128>, Vec<f64>, Vec<f64>) {
        (
            take_front(&mut self.counts, emit_to),
            take_front(&mut self.exact_sums, emit_to),
            take_front(&mut self.float_sums, emit_to),
            take_front(&mut self.float_compensations, emit_to),
        )
    }
}

/// Scale of `AVG` over a decimal of scale `scale`: four more digits, as DataFusion and Spark.
pub fn avg_scale(scale: i8) -> i8 {
    scale.saturating_add(4).min(38)
}

/// `numerator / denominator` rounded half away from zero.
pub fn div_round_half_away(numerator: i128, denominator: i128) -> Option<i128> {
    let quotient = numerator.checked_div(denominator)?;
    let remainder = numerator.checked_rem(denominator)?;
    if remainder.unsigned_abs().checked_mul(2)? >= denominator.unsigned_abs() {
        let away = if (numerator < 0) == (denominator < 0) {
            1
        } else {
            -1
        };
        quotient.checked_add(away)
    } else {
        Some(quotient)
    }
}

const DECIMAL38_MAX: i128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

impl GroupsAccumulator for SumAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.resize(total_groups);
        let array = values
            .first()
            .ok_or_else(|| QuiverError::Internal("SUM without an argument".into()))?;
        let mask = selected_rows(array.nulls(), filter);
        let mask = mask.as_ref();
        macro_rules! exact {
            ($t:ty) => {
                self.update_exact(array.as_primitive::<$t>(), group_ids, mask)
            };
        }
        match array.data_type() {
            DataType::Int8 => exact!(Int8Type),
            DataType::Int16 => exact!(Int16Type),
            DataType::Int32 => exact!(Int32Type),
            DataType::Int64 => exact!(Int64Type),
            DataType::UInt8 => exact!(UInt8Type),
            DataType::UInt16 => exact!(UInt16Type),
            DataType::UInt32 => exact!(UInt32Type),
            DataType::UInt64 => exact!(UInt64Type),
            DataType::Decimal128(..) => exact!(Decimal128Type),
            DataType::Float32 => {
                self.update_float(array.as_primitive::<Float32Type>(), group_ids, mask);
                Ok(())
            }
            DataType::Float64 => {
                self.update_float(array.as_primitive::<Float64Type>(), group_ids, mask);
                Ok(())
            }
            DataType::Float16 => {
                let widened = cast(array, &DataType::Float64)?;
                self.update_float(widened.as_primitive::<Float64Type>(), group_ids, mask);
                Ok(())
            }
            other => Err(QuiverError::Internal(format!(
                "{:?} built for {} got {other}",
                self.kind, self.input_type
            ))),
        }
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.resize(total_groups);
        let counts = state_column::<Int64Type>(states, 0)?;
        for (&g, &c) in group_ids.iter().zip(counts.values()) {
            self.counts[g as usize] += c;
        }
        match self.domain {
            SumDomain::Float => {
                let sums = state_column::<Float64Type>(states, 1)?;
                let comps = state_column::<Float64Type>(states, 2)?;
                for ((&g, &s), &c) in group_ids.iter().zip(sums.values()).zip(comps.values()) {
                    let g = g as usize;
                    neumaier_add(&mut self.float_sums[g], &mut self.float_compensations[g], s);
                    // A partial that reached ±inf or NaN has a meaningless compensation.
                    if c.is_finite() {
                        neumaier_add(&mut self.float_sums[g], &mut self.float_compensations[g], c);
                    }
                }
            }
            _ => {
                let sums = state_column::<Decimal128Type>(states, 1)?;
                for (&g, &s) in group_ids.iter().zip(sums.values()) {
                    let g = g as usize;
                    self.exact_sums[g] = self.exact_sums[g]
                        .checked_add(s)
                        .ok_or_else(|| QuiverError::overflow(format!("{:?}", self.kind), "i128"))?;
                }
            }
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (counts, exact, sums, comps) = self.emitted(emit_to);
        let counts: ArrayRef = Arc::new(Int64Array::from(counts));
        Ok(match self.domain {
            SumDomain::Float => vec![
                counts,
                Arc::new(Float64Array::from(sums)),
                Arc::new(Float64Array::from(comps)),
            ],
            // The raw i128 sum; it may exceed 38 digits until the final check.
            _ => vec![
                counts,
                Arc::new(Decimal128Array::from(exact).with_precision_and_scale(38, 0)?),
            ],
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let (counts, exact, sums, comps) = self.emitted(emit_to);
        let nulls = NullBuffer::from_iter(counts.iter().map(|&c| c > 0));
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        let context = format!("{:?}({})", self.kind, self.input_type);
        Ok(match (self.kind, self.domain) {
            (SumKind::Sum, SumDomain::Integer) => {
                let values = exact
                    .iter()
                    .map(|&s| {
                        i64::try_from(s).map_err(|_| QuiverError::overflow(&context, "Int64"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(Int64Array::new(values.into(), nulls))
            }
            (SumKind::Sum, SumDomain::Decimal(scale)) => {
                if exact
                    .iter()
                    .any(|s| s.unsigned_abs() > DECIMAL38_MAX.unsigned_abs())
                {
                    return Err(QuiverError::overflow(&context, "Decimal128(38)"));
                }
                Arc::new(
                    Decimal128Array::new(exact.into(), nulls)
                        .with_precision_and_scale(38, scale)?,
                )
            }
            (SumKind::Avg, SumDomain::Decimal(scale)) => {
                let out_scale = avg_scale(scale);
                let factor = 10_i128.pow(u32::from((out_scale - scale).unsigned_abs()));
                let values = exact
                    .iter()
                    .zip(&counts)
                    .map(|(&s, &c)| {
                        if c == 0 {
                            return Ok(0);
                        }
                        s.checked_mul(factor)
                            .and_then(|scaled| div_round_half_away(scaled, i128::from(c)))
                            .filter(|v| v.unsigned_abs() <= DECIMAL38_MAX.unsigned_abs())
                            .ok_or_else(|| QuiverError::overflow(&context, "Decimal128(38)"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(
                    Decimal128Array::new(values.into(), nulls)
                        .with_precision_and_scale(38, out_scale)?,
                )
            }
            (SumKind::Avg, SumDomain::Integer) => {
                let values: Vec<f64> = exact
                    .iter()
                    .zip(&counts)
                    .map(|(&s, &c)| if c == 0 { 0.0 } else { exact_mean(s, c) })
                    .collect();
                Arc::new(Float64Array::new(values.into(), nulls))
            }
            (kind, SumDomain::Float) => {
                let values: Vec<f64> = sums
                    .iter()
                    .zip(&comps)
                    .zip(&counts)
                    .map(|((&s, &c), &n)| {
                        // Past ±inf or NaN the compensation is NaN and must not leak.
                        let total = if s.is_finite() { s + c } else { s };
                        match kind {
                            SumKind::Sum => total,
                            SumKind::Avg if n == 0 => 0.0,
                            SumKind::Avg => total / n as f64,
                        }
                    })
                    .collect();
                Arc::new(Float64Array::new(values.into(), nulls))
            }
        })
    }

    fn size(&self) -> usize {
        self.counts.capacity() * 8
            + self.exact_sums.capacity() * 16
            + self.float_sums.capacity() * 8
            + self.float_compensations.capacity() * 8
    }
}

/// Mean of an exact integer sum, with one rounding when the quotient is an integer that fits
/// 53 bits, and the remainder added separately otherwise.
fn exact_mean(sum: i128, count: i64) -> f64 {
    let count = i128::from(count);
    let quotient = sum / count;
    let remainder = sum % count;
    quotient as f64 + remainder as f64 / count as f64
}

// ---------------------------------------------------------------------------------------------
// MIN and MAX

/// SQL ordering of a native value: NaN sorts above every number, `-0.0` equals `0.0`.
pub trait SqlOrd: Copy + Send + 'static {
    /// True when `self` sorts before `other`.
    fn sql_lt(self, other: Self) -> bool;
}

macro_rules! sql_ord_total {
    ($($t:ty),*) => {$(
        impl SqlOrd for $t {
            #[inline(always)]
            fn sql_lt(self, other: Self) -> bool {
                self < other
            }
        }
    )*};
}
sql_ord_total!(i8, i16, i32, i64, i128, u8, u16, u32, u64);

macro_rules! sql_ord_float {
    ($($t:ty),*) => {$(
        impl SqlOrd for $t {
            #[inline(always)]
            fn sql_lt(self, other: Self) -> bool {
                if self.is_nan() {
                    false
                } else {
                    other.is_nan() || self < other
                }
            }
        }
    )*};
}
sql_ord_float!(f32, f64);

/// Whether a min/max accumulator keeps the least or the greatest value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MinMaxKind {
    /// `MIN`.
    Min,
    /// `MAX`.
    Max,
}

/// `MIN` / `MAX` of a primitive column (numbers, decimals, dates, timestamps).
pub struct PrimitiveMinMax<T: ArrowPrimitiveType> {
    kind: MinMaxKind,
    data_type: DataType,
    values: Vec<T::Native>,
    seen: Vec<bool>,
}

impl<T: ArrowPrimitiveType> PrimitiveMinMax<T>
where
    T::Native: SqlOrd,
{
    /// A min or max over values of `data_type`.
    pub fn new(kind: MinMaxKind, data_type: DataType) -> Self {
        PrimitiveMinMax {
            kind,
            data_type,
            values: Vec::new(),
            seen: Vec::new(),
        }
    }

    #[inline(never)]
    fn update(&mut self, array: &PrimitiveArray<T>, group_ids: &[u32], mask: Option<&NullBuffer>) {
        let (values, seen, raw) = (&mut self.values, &mut self.seen, array.values());
        let keep_new: fn(T::Native, T::Native) -> bool = match self.kind {
            MinMaxKind::Min => |new, current| new.sql_lt(current),
            MinMaxKind::Max => |new, current| current.sql_lt(new),
        };
        for_each_selected!(mask, group_ids, raw, |g, v| {
            if !seen[g] || keep_new(v, values[g]) {
                values[g] = v;
                seen[g] = true;
            }
        });
    }
}

impl<T: ArrowPrimitiveType> GroupsAccumulator for PrimitiveMinMax<T>
where
    T::Native: SqlOrd,
{
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.values.resize(total_groups, T::Native::default());
        self.seen.resize(total_groups, false);
        let array = values
            .first()
            .and_then(|a| a.as_primitive_opt::<T>())
            .ok_or_else(|| {
                QuiverError::Internal(format!("{:?} input is not {}", self.kind, self.data_type))
            })?;
        let mask = selected_rows(array.nulls(), filter);
        self.update(array, group_ids, mask.as_ref());
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.update_batch(states, group_ids, None, total_groups)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let values = take_front(&mut self.values, emit_to);
        let seen = take_front(&mut self.seen, emit_to);
        let nulls = NullBuffer::from(seen);
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        Ok(Arc::new(
            PrimitiveArray::<T>::new(values.into(), nulls).with_data_type(self.data_type.clone()),
        ))
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<T::Native>() + self.seen.capacity()
    }
}

/// `MIN` / `MAX` of a string column (byte order, which is code-point order for UTF-8).
pub struct StringMinMax {
    kind: MinMaxKind,
    data_type: DataType,
    values: Vec<Option<String>>,
}

impl StringMinMax {
    /// A min or max over strings of `data_type` (Utf8, LargeUtf8 or Utf8View).
    pub fn new(kind: MinMaxKind, data_type: DataType) -> Self {
        StringMinMax {
            kind,
            data_type,
            values: Vec::new(),
        }
    }

    fn offer(&mut self, group: usize, candidate: &str) {
        let slot = &mut self.values[group];
        let better = match (slot.as_deref(), self.kind) {
            (None, _) => true,
            (Some(current), MinMaxKind::Min) => candidate < current,
            (Some(current), MinMaxKind::Max) => candidate > current,
        };
        if better {
            // Reuses the slot's allocation when it is large enough.
            let text = slot.get_or_insert_with(String::new);
            text.clear();
            text.push_str(candidate);
        }
    }
}

impl GroupsAccumulator for StringMinMax {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.values.resize(total_groups, None);
        let array = values
            .first()
            .ok_or_else(|| QuiverError::Internal("MIN/MAX without an argument".into()))?;
        let mask = selected_rows(array.nulls(), filter);
        macro_rules! each {
            ($a:expr) => {{
                let a = $a;
                match mask.as_ref() {
                    None => (0..a.len())
                        .for_each(|row| self.offer(group_ids[row] as usize, a.value(row))),
                    Some(m) => m
                        .valid_indices()
                        .for_each(|row| self.offer(group_ids[row] as usize, a.value(row))),
                }
            }};
        }
        match array.data_type() {
            DataType::Utf8 => each!(array.as_string::<i32>()),
            DataType::LargeUtf8 => each!(array.as_string::<i64>()),
            DataType::Utf8View => each!(array.as_string_view()),
            other => return Err(QuiverError::Internal(format!("string MIN/MAX got {other}"))),
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.update_batch(states, group_ids, None, total_groups)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let values = take_front(&mut self.values, emit_to);
        let array: ArrayRef = Arc::new(StringArray::from(values));
        Ok(if &self.data_type == array.data_type() {
            array
        } else {
            cast(&array, &self.data_type)?
        })
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<Option<String>>()
            + self
                .values
                .iter()
                .flatten()
                .map(String::capacity)
                .sum::<usize>()
    }
}

/// A `MIN` or `MAX` accumulator for `data_type`.
pub fn new_min_max(kind: MinMaxKind, data_type: &DataType) -> Result<Box<dyn GroupsAccumulator>> {
    macro_rules! primitive {
        ($t:ty) => {
            Ok(Box::new(PrimitiveMinMax::<$t>::new(
                kind,
                data_type.clone(),
            )))
        };
    }
    match data_type {
        DataType::Int8 => primitive!(Int8Type),
        DataType::Int16 => primitive!(Int16Type),
        DataType::Int32 => primitive!(Int32Type),
        DataType::Int64 => primitive!(Int64Type),
        DataType::UInt8 => primitive!(UInt8Type),
        DataType::UInt16 => primitive!(UInt16Type),
        DataType::UInt32 => primitive!(UInt32Type),
        DataType::UInt64 => primitive!(UInt64Type),
        DataType::Float32 => primitive!(Float32Type),
        DataType::Float64 => primitive!(Float64Type),
        DataType::Decimal128(..) => primitive!(Decimal128Type),
        DataType::Date32 => primitive!(Date32Type),
        DataType::Date64 => primitive!(Date64Type),
        DataType::Timestamp(TimeUnit::Second, _) => primitive!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => primitive!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => primitive!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => primitive!(TimestampNanosecondType),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            Ok(Box::new(StringMinMax::new(kind, data_type.clone())))
        }
        other => Err(QuiverError::Unsupported(format!("{kind:?} of {other}"))),
    }
}

/// Field of state column `index` of a SUM/AVG over `input_type` (for partial-state schemas).
pub fn sum_state_fields(input_type: &DataType, name: &str) -> Vec<Field> {
    let count = Field::new(format!("{name}[count]"), DataType::Int64, false);
    if matches!(
        input_type,
        DataType::Float16 | DataType::Float32 | DataType::Float64
    ) {
        vec![
            count,
            Field::new(format!("{name}[sum]"), DataType::Float64, false),
            Field::new(format!("{name}[compensation]"), DataType::Float64, false),
        ]
    } else {
        vec![
            count,
            Field::new(format!("{name}[sum]"), DataType::Decimal128(38, 0), false),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_half_away_from_zero() {
        assert_eq!(div_round_half_away(5, 2), Some(3));
        assert_eq!(div_round_half_away(-5, 2), Some(-3));
        assert_eq!(div_round_half_away(4, 3), Some(1));
        assert_eq!(div_round_half_away(-4, 3), Some(-1));
        assert_eq!(div_round_half_away(1, 0), None);
    }

    #[test]
    fn float_ordering_puts_nan_last() {
        assert!(1.0_f64.sql_lt(f64::NAN));
        assert!(!f64::NAN.sql_lt(1.0));
        assert!(!f64::NAN.sql_lt(f64::NAN));
        assert!(f64::NEG_INFINITY.sql_lt(-1.0));
    }

    #[test]
    fn integer_sum_overflowing_int64_is_an_error() {
        let mut sum = SumAccumulator::try_new(SumKind::Sum, &DataType::Int64).unwrap();
        let values: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, 1, i64::MIN, -1]));
        sum.update_batch(std::slice::from_ref(&values), &[0, 0, 1, 1], None, 2)
            .unwrap();
        let error = sum.evaluate(EmitTo::All).unwrap_err();
        assert!(error.to_string().contains("overflow of Int64"), "{error}");
        // The intermediate overflow alone is fine when the final sum fits.
        let mut sum = SumAccumulator::try_new(SumKind::Sum, &DataType::Int64).unwrap();
        let values: ArrayRef = Arc::new(Int64Array::from(vec![i64::MAX, 1, -1]));
        sum.update_batch(&[values], &[0, 0, 0], None, 1).unwrap();
        let result = sum.evaluate(EmitTo::All).unwrap();
        assert_eq!(result.as_primitive::<Int64Type>().value(0), i64::MAX);
    }

    #[test]
    fn filter_and_nulls_are_both_applied() {
        let mut count = CountAccumulator::new();
        let values: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None, Some(3), Some(4)]));
        let filter = BooleanArray::from(vec![Some(true), Some(true), None, Some(true)]);
        count
            .update_batch(&[values], &[0, 0, 0, 1], Some(&filter), 2)
            .unwrap();
        let result = count.evaluate(EmitTo::All).unwrap();
        assert_eq!(
            result.as_primitive::<Int64Type>().values().to_vec(),
            vec![1, 1]
        );
    }

    #[test]
    fn emit_first_keeps_the_rest() {
        let mut max = new_min_max(MinMaxKind::Max, &DataType::Int64).unwrap();
        let values: ArrayRef = Arc::new(Int64Array::from(vec![5, 7, 9]));
        max.update_batch(&[values], &[0, 1, 2], None, 3).unwrap();
        let first = max.evaluate(EmitTo::First(2)).unwrap();
        assert_eq!(
            first.as_primitive::<Int64Type>().values().to_vec(),
            vec![5, 7]
        );
        let rest = max.evaluate(EmitTo::All).unwrap();
        assert_eq!(rest.as_primitive::<Int64Type>().values().to_vec(), vec![9]);
    }
}
