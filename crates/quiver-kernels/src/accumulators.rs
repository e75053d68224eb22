//! Accumulators over dense group ids: one `Vec` of state per aggregate, updated in tight loops
//! (COUNT / SUM / AVG / MIN / MAX of numbers share one pass in [`crate::fused`]).
//!
//! Each accumulator updates from a batch (`update_batch`), merges partial states from other
//! partitions (`merge_batch`), exposes its state as Arrow arrays (`state`) and produces final
//! values (`evaluate`). The sums' exactness rules (i128, decimal, Neumaier) are in
//! [`crate::fused`].

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Int64Array, PrimitiveArray,
    StringArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, Field, Float32Type, Float64Type, Int16Type,
    Int32Type, Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use quiver_core::{QuiverError, Result};

use crate::huge_pages;
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
        huge_pages::resize(&mut self.counts, total_groups, 0);
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
        huge_pages::resize(&mut self.counts, total_groups, 0);
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

/// Whether a sum reports the sum or the mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SumKind {
    /// `SUM`.
    Sum,
    /// `AVG`.
    Avg,
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
        huge_pages::resize(&mut self.values, total_groups, T::Native::default());
        huge_pages::resize(&mut self.seen, total_groups, false);
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
