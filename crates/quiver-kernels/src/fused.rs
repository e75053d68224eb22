//! One pass over a numeric column for all of its COUNT, SUM, AVG, MIN and MAX aggregates.
//!
//! Aggregates of the same column under the same filter share per-group state: a 32-byte cell
//! holding the non-null count, the row count (for a `COUNT(*)` with that filter) and an exact
//! `i128` or Neumaier-compensated `f64` sum, plus a `[min, max]` pair when MIN or MAX is asked
//! for. `COUNT(*), SUM(x), AVG(x), MIN(x), MAX(x)` thus walks the group ids once and touches one
//! cell (and one pair) per row instead of five arrays; with a million groups that is one cache
//! miss instead of several. Each aggregate keeps its own output and partial-state columns, so
//! plans and partial states look the same as with one accumulator per aggregate.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Decimal128Array, Float64Array,
    Int64Array, PrimitiveArray,
};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Decimal128Type, Field, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use quiver_core::{QuiverError, Result};

use crate::accumulators::{
    avg_scale, div_round_half_away, selected_rows, state_column, sum_state_fields, take_front,
    SqlOrd, SumKind,
};
use crate::group_values::prefetch;
use crate::huge_pages;
use crate::EmitTo;

/// Cell arrays larger than this (about half a core's L2) are prefetched ahead of the update.
const PREFETCH_ABOVE_BYTES: usize = 512 * 1024;

/// How many rows ahead cells are prefetched: a row's update takes a few nanoseconds, a miss to
/// memory about a hundred.
const PREFETCH_DISTANCE: usize = 64;

/// What one aggregate sharing a [`FusedAccumulator`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumericRole {
    /// `COUNT(*)` under the unit's filter.
    CountStar,
    /// `COUNT(col)`.
    Count,
    /// `SUM(col)`.
    Sum,
    /// `AVG(col)`.
    Avg,
    /// `MIN(col)`.
    Min,
    /// `MAX(col)`.
    Max,
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

impl SumDomain {
    fn of(input_type: &DataType) -> Option<SumDomain> {
        match input_type {
            t if t.is_integer() => Some(SumDomain::Integer),
            DataType::Decimal128(_, scale) => Some(SumDomain::Decimal(*scale)),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => Some(SumDomain::Float),
            _ => None,
        }
    }
}

/// Whether the aggregates of a column of `input_type` can share a [`FusedAccumulator`]:
/// integers, floats and decimals.
pub fn is_fusable(input_type: &DataType) -> bool {
    SumDomain::of(input_type).is_some()
}

/// The output type of `role` over `input_type`.
pub fn output_type(role: NumericRole, input_type: &DataType) -> Result<DataType> {
    let domain = domain_for(role, input_type)?;
    Ok(match (role, domain) {
        (NumericRole::CountStar | NumericRole::Count, _) => DataType::Int64,
        (NumericRole::Min | NumericRole::Max, _) => input_type.clone(),
        (NumericRole::Sum, SumDomain::Integer) => DataType::Int64,
        (NumericRole::Sum, SumDomain::Decimal(s)) => DataType::Decimal128(38, s),
        (NumericRole::Avg, SumDomain::Decimal(s)) => DataType::Decimal128(38, avg_scale(s)),
        (NumericRole::Sum | NumericRole::Avg, SumDomain::Float)
        | (NumericRole::Avg, SumDomain::Integer) => DataType::Float64,
    })
}

/// The partial-state fields of `role` over `input_type`, for the aggregate named `name`.
pub fn state_fields(role: NumericRole, input_type: &DataType, name: &str) -> Vec<Field> {
    match role {
        NumericRole::CountStar | NumericRole::Count => {
            vec![Field::new(format!("{name}[count]"), DataType::Int64, false)]
        }
        NumericRole::Sum | NumericRole::Avg => sum_state_fields(input_type, name),
        NumericRole::Min | NumericRole::Max => vec![Field::new(
            format!("{name}[value]"),
            input_type.clone(),
            true,
        )],
    }
}

fn domain_for(role: NumericRole, input_type: &DataType) -> Result<SumDomain> {
    let domain = SumDomain::of(input_type);
    match (role, domain) {
        (NumericRole::Min | NumericRole::Max, _) if input_type == &DataType::Float16 => Err(
            QuiverError::Unsupported(format!("{role:?} of {input_type}")),
        ),
        (_, Some(domain)) => Ok(domain),
        (NumericRole::Sum | NumericRole::Avg, None) => Err(QuiverError::Unsupported(format!(
            "{role:?} of {input_type}; it takes integers, decimals and floats"
        ))),
        (_, None) => Err(QuiverError::Unsupported(format!(
            "{role:?} of {input_type} in a fused numeric accumulator"
        ))),
    }
}

/// Aggregates of one numeric column (and a `COUNT(*)`) under one filter, updated in one pass.
pub trait FusedAccumulator: Send {
    /// Adds the rows of `values` (those passing `filter`) to groups `group_ids`;
    /// `total_groups` is the number of groups after this batch.
    fn update_batch(
        &mut self,
        values: &ArrayRef,
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()>;
    /// Merges partial states: `states[i]` holds the state columns of role `i`.
    fn merge_batch(
        &mut self,
        states: &[&[ArrayRef]],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()>;
    /// The partial state of each role for the emitted groups, removing them.
    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<Vec<ArrayRef>>>;
    /// The final value of each role for the emitted groups, removing them.
    fn evaluate(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>>;
    /// Bytes held.
    fn size(&self) -> usize;
}

/// A fused accumulator for `roles` over a column of `input_type`.
pub fn new_fused(
    roles: Vec<NumericRole>,
    input_type: &DataType,
) -> Result<Box<dyn FusedAccumulator>> {
    for &role in &roles {
        domain_for(role, input_type)?;
    }
    macro_rules! exact {
        ($t:ty) => {
            Ok(Box::new(Fused::<$t, i128>::new(roles, input_type)?))
        };
    }
    match input_type {
        DataType::Int8 => exact!(Int8Type),
        DataType::Int16 => exact!(Int16Type),
        DataType::Int32 => exact!(Int32Type),
        DataType::Int64 => exact!(Int64Type),
        DataType::UInt8 => exact!(UInt8Type),
        DataType::UInt16 => exact!(UInt16Type),
        DataType::UInt32 => exact!(UInt32Type),
        DataType::UInt64 => exact!(UInt64Type),
        DataType::Decimal128(..) => exact!(Decimal128Type),
        DataType::Float32 => Ok(Box::new(Fused::<Float32Type, Compensated>::new(
            roles, input_type,
        )?)),
        // Float16 (SUM / AVG / COUNT only) is widened to f64 per batch.
        DataType::Float16 | DataType::Float64 => Ok(Box::new(
            Fused::<Float64Type, Compensated>::new(roles, input_type)?,
        )),
        other => Err(QuiverError::Unsupported(format!(
            "fused numeric aggregates of {other}"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// Per-group state

/// A Neumaier-compensated `f64` sum.
#[derive(Debug, Clone, Copy, Default)]
pub struct Compensated {
    sum: f64,
    compensation: f64,
}

impl Compensated {
    /// Adds `value`, keeping the exact rounding error of the addition (Knuth's TwoSum: the
    /// same error term as Neumaier's ordered form, with no select on the magnitudes).
    #[inline(always)]
    fn add(&mut self, value: f64) {
        let t = self.sum + value;
        let value_part = t - self.sum;
        let sum_part = t - value_part;
        self.compensation += (self.sum - sum_part) + (value - value_part);
        self.sum = t;
    }

    /// The sum with its compensation applied; past ±inf or NaN the compensation is NaN and
    /// must not leak.
    fn total(self) -> f64 {
        if self.sum.is_finite() {
            self.sum + self.compensation
        } else {
            self.sum
        }
    }
}

/// One group's counts and sum: 32 bytes, aligned to 32 so a cell never straddles two cache
/// lines (at the allocator's 16-byte alignment every other cell did, two misses instead of one).
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(32))]
struct Cell<S> {
    sum: S,
    /// Non-null values passing the filter.
    count: i64,
    /// Rows passing the filter (for `COUNT(*)`).
    rows: i64,
}

/// A running sum `Self` of native values `N`.
trait AddValue<N>: Copy + Default + Send + 'static {
    /// Adds `value`; false when an exact sum overflowed (it is then unchanged).
    fn add_value(&mut self, value: N) -> bool;
}

macro_rules! add_narrow_integer {
    ($($t:ty),*) => {$(
        impl AddValue<$t> for i128 {
            // 2^64 rows of 64-bit values cannot overflow an i128.
            #[inline(always)]
            fn add_value(&mut self, value: $t) -> bool {
                *self += i128::from(value);
                true
            }
        }
    )*};
}
add_narrow_integer!(i8, i16, i32, i64, u8, u16, u32, u64);

impl AddValue<i128> for i128 {
    #[inline(always)]
    fn add_value(&mut self, value: i128) -> bool {
        match self.checked_add(value) {
            Some(sum) => {
                *self = sum;
                true
            }
            None => false,
        }
    }
}

impl AddValue<f32> for Compensated {
    #[inline(always)]
    fn add_value(&mut self, value: f32) -> bool {
        self.add(f64::from(value));
        true
    }
}

impl AddValue<f64> for Compensated {
    #[inline(always)]
    fn add_value(&mut self, value: f64) -> bool {
        self.add(value);
        true
    }
}

/// Starting values for a `[min, max]` pair: every value sorts at or before the first, at or
/// after the second, so the first value seen replaces both.
trait Bounds: SqlOrd + Default {
    const GREATEST: Self;
    const LEAST: Self;
}

macro_rules! integer_bounds {
    ($($t:ty),*) => {$(
        impl Bounds for $t {
            const GREATEST: Self = <$t>::MAX;
            const LEAST: Self = <$t>::MIN;
        }
    )*};
}
integer_bounds!(i8, i16, i32, i64, i128, u8, u16, u32, u64);

impl Bounds for f32 {
    // NaN sorts above every number.
    const GREATEST: Self = f32::NAN;
    const LEAST: Self = f32::NEG_INFINITY;
}

impl Bounds for f64 {
    const GREATEST: Self = f64::NAN;
    const LEAST: Self = f64::NEG_INFINITY;
}

/// Adds value `v` to group `g` (and a row, when `every_row`); false on an exact-sum overflow.
#[inline(always)]
fn visit<N, S, const SUM: bool, const EXTREMES: bool>(
    cells: &mut [Cell<S>],
    extremes: &mut [[N; 2]],
    g: usize,
    v: N,
    every_row: bool,
) -> bool
where
    N: Bounds,
    S: AddValue<N>,
{
    let cell = &mut cells[g];
    if every_row {
        cell.rows += 1;
    }
    cell.count += 1;
    let ok = !SUM || cell.sum.add_value(v);
    if EXTREMES {
        let pair = &mut extremes[g];
        if v.sql_lt(pair[0]) {
            pair[0] = v;
        }
        if pair[1].sql_lt(v) {
            pair[1] = v;
        }
    }
    ok
}

/// The update loop, specialised on whether the sum and the extremes are wanted. Rows are
/// counted here only when every row is selected; otherwise the caller counts them.
#[inline(always)]
fn update_cells<N, S, const SUM: bool, const EXTREMES: bool>(
    cells: &mut [Cell<S>],
    extremes: &mut [[N; 2]],
    group_ids: &[u32],
    values: &[N],
    mask: Option<&NullBuffer>,
) -> bool
where
    N: Bounds,
    S: AddValue<N>,
{
    let mut ok = true;
    let large = std::mem::size_of_val(cells) > PREFETCH_ABOVE_BYTES;
    match mask {
        // Past the caches the cells miss on every row; fetch them a few rows ahead.
        None if large => {
            for (row, (&g, &v)) in group_ids.iter().zip(values).enumerate() {
                if let Some(&ahead) = group_ids.get(row + PREFETCH_DISTANCE) {
                    prefetch(&cells[ahead as usize]);
                    if EXTREMES {
                        prefetch(&extremes[ahead as usize]);
                    }
                }
                ok &= visit::<N, S, SUM, EXTREMES>(cells, extremes, g as usize, v, true);
            }
        }
        None => {
            for (&g, &v) in group_ids.iter().zip(values) {
                ok &= visit::<N, S, SUM, EXTREMES>(cells, extremes, g as usize, v, true);
            }
        }
        Some(mask) => {
            for row in mask.valid_indices() {
                let g = group_ids[row] as usize;
                ok &= visit::<N, S, SUM, EXTREMES>(cells, extremes, g, values[row], false);
            }
        }
    }
    ok
}

/// A [`FusedAccumulator`] over native type `T::Native`, summing into `S`.
struct Fused<T: ArrowPrimitiveType, S> {
    roles: Vec<NumericRole>,
    input_type: DataType,
    domain: SumDomain,
    wants_sum: bool,
    wants_extremes: bool,
    wants_rows: bool,
    cells: Vec<Cell<S>>,
    extremes: Vec<[T::Native; 2]>,
}

/// The emitted groups' state, column by column.
struct Emitted<S, N> {
    counts: Vec<i64>,
    rows: Vec<i64>,
    sums: Vec<S>,
    extremes: Vec<[N; 2]>,
}

/// How a sum type turns into partial-state columns and final values.
trait SumOutput: Sized {
    fn state_columns(counts: &ArrayRef, sums: &[Self]) -> Result<Vec<ArrayRef>>;
    fn merge_column(
        cells: &mut [Cell<Self>],
        columns: &[ArrayRef],
        group_ids: &[u32],
        context: &str,
    ) -> Result<()>;
    fn finish(
        kind: SumKind,
        domain: SumDomain,
        context: &str,
        counts: &[i64],
        sums: &[Self],
    ) -> Result<ArrayRef>;
}

const DECIMAL38_MAX: u128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

impl SumOutput for i128 {
    fn state_columns(counts: &ArrayRef, sums: &[i128]) -> Result<Vec<ArrayRef>> {
        // The raw i128 sum; it may exceed 38 digits until the final check.
        Ok(vec![
            Arc::clone(counts),
            Arc::new(Decimal128Array::from(sums.to_vec()).with_precision_and_scale(38, 0)?),
        ])
    }

    fn merge_column(
        cells: &mut [Cell<i128>],
        columns: &[ArrayRef],
        group_ids: &[u32],
        context: &str,
    ) -> Result<()> {
        let partial = state_column::<Decimal128Type>(columns, 1)?;
        for (&g, &s) in group_ids.iter().zip(partial.values()) {
            let sum = &mut cells[g as usize].sum;
            *sum = sum
                .checked_add(s)
                .ok_or_else(|| QuiverError::overflow(context, "i128"))?;
        }
        Ok(())
    }

    fn finish(
        kind: SumKind,
        domain: SumDomain,
        context: &str,
        counts: &[i64],
        sums: &[i128],
    ) -> Result<ArrayRef> {
        let nulls = nulls_where_empty(counts);
        Ok(match (kind, domain) {
            (SumKind::Sum, SumDomain::Decimal(scale)) => {
                if sums.iter().any(|s| s.unsigned_abs() > DECIMAL38_MAX) {
                    return Err(QuiverError::overflow(context, "Decimal128(38)"));
                }
                Arc::new(
                    Decimal128Array::new(sums.to_vec().into(), nulls)
                        .with_precision_and_scale(38, scale)?,
                )
            }
            (SumKind::Avg, SumDomain::Decimal(scale)) => {
                let out_scale = avg_scale(scale);
                let factor = 10_i128.pow(u32::from((out_scale - scale).unsigned_abs()));
                let values = sums
                    .iter()
                    .zip(counts)
                    .map(|(&s, &c)| {
                        if c == 0 {
                            return Ok(0);
                        }
                        s.checked_mul(factor)
                            .and_then(|scaled| div_round_half_away(scaled, i128::from(c)))
                            .filter(|v| v.unsigned_abs() <= DECIMAL38_MAX)
                            .ok_or_else(|| QuiverError::overflow(context, "Decimal128(38)"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(
                    Decimal128Array::new(values.into(), nulls)
                        .with_precision_and_scale(38, out_scale)?,
                )
            }
            (SumKind::Sum, _) => {
                let values = sums
                    .iter()
                    .map(|&s| i64::try_from(s).map_err(|_| QuiverError::overflow(context, "Int64")))
                    .collect::<Result<Vec<_>>>()?;
                Arc::new(Int64Array::new(values.into(), nulls))
            }
            (SumKind::Avg, _) => {
                let values: Vec<f64> = sums
                    .iter()
                    .zip(counts)
                    .map(|(&s, &c)| if c == 0 { 0.0 } else { exact_mean(s, c) })
                    .collect();
                Arc::new(Float64Array::new(values.into(), nulls))
            }
        })
    }
}

impl SumOutput for Compensated {
    fn state_columns(counts: &ArrayRef, sums: &[Compensated]) -> Result<Vec<ArrayRef>> {
        Ok(vec![
            Arc::clone(counts),
            Arc::new(Float64Array::from_iter_values(sums.iter().map(|s| s.sum))),
            Arc::new(Float64Array::from_iter_values(
                sums.iter().map(|s| s.compensation),
            )),
        ])
    }

    fn merge_column(
        cells: &mut [Cell<Compensated>],
        columns: &[ArrayRef],
        group_ids: &[u32],
        _context: &str,
    ) -> Result<()> {
        let partial_sums = state_column::<Float64Type>(columns, 1)?;
        let partial_compensations = state_column::<Float64Type>(columns, 2)?;
        for ((&g, &s), &c) in group_ids
            .iter()
            .zip(partial_sums.values())
            .zip(partial_compensations.values())
        {
            let sum = &mut cells[g as usize].sum;
            sum.add(s);
            // A partial that reached ±inf or NaN has a meaningless compensation.
            if c.is_finite() {
                sum.add(c);
            }
        }
        Ok(())
    }

    fn finish(
        kind: SumKind,
        _domain: SumDomain,
        _context: &str,
        counts: &[i64],
        sums: &[Compensated],
    ) -> Result<ArrayRef> {
        let values: Vec<f64> = sums
            .iter()
            .zip(counts)
            .map(|(s, &n)| match kind {
                SumKind::Sum => s.total(),
                SumKind::Avg if n == 0 => 0.0,
                SumKind::Avg => s.total() / n as f64,
            })
            .collect();
        Ok(Arc::new(Float64Array::new(
            values.into(),
            nulls_where_empty(counts),
        )))
    }
}

/// A validity buffer that is null where a group saw no value; `None` when none is null.
fn nulls_where_empty(counts: &[i64]) -> Option<NullBuffer> {
    let nulls = NullBuffer::from_iter(counts.iter().map(|&c| c > 0));
    (nulls.null_count() > 0).then_some(nulls)
}

/// Mean of an exact integer sum, with one rounding when the quotient is an integer that fits
/// 53 bits, and the remainder added separately otherwise.
fn exact_mean(sum: i128, count: i64) -> f64 {
    let count = i128::from(count);
    let quotient = sum / count;
    let remainder = sum % count;
    quotient as f64 + remainder as f64 / count as f64
}

impl<T, S> Fused<T, S>
where
    T: ArrowPrimitiveType,
    T::Native: Bounds,
    S: AddValue<T::Native> + SumOutput,
{
    fn new(roles: Vec<NumericRole>, input_type: &DataType) -> Result<Self> {
        let domain = SumDomain::of(input_type).ok_or_else(|| {
            QuiverError::Unsupported(format!("fused numeric aggregates of {input_type}"))
        })?;
        let has = |wanted: &[NumericRole]| roles.iter().any(|r| wanted.contains(r));
        Ok(Fused {
            wants_sum: has(&[NumericRole::Sum, NumericRole::Avg]),
            wants_extremes: has(&[NumericRole::Min, NumericRole::Max]),
            wants_rows: has(&[NumericRole::CountStar]),
            roles,
            input_type: input_type.clone(),
            domain,
            cells: Vec::new(),
            extremes: Vec::new(),
        })
    }

    fn resize(&mut self, total_groups: usize) {
        huge_pages::resize(&mut self.cells, total_groups, Cell::default());
        if self.wants_extremes {
            let unset = [T::Native::GREATEST, T::Native::LEAST];
            huge_pages::resize(&mut self.extremes, total_groups, unset);
        }
    }

    /// `SUM(Int64)`-style context for error messages.
    fn context(&self, kind: SumKind) -> String {
        format!("{kind:?}({})", self.input_type)
    }

    #[inline(never)]
    fn update_values(
        &mut self,
        values: &PrimitiveArray<T>,
        group_ids: &[u32],
        mask: Option<&NullBuffer>,
    ) -> Result<()> {
        let (cells, extremes, raw) = (&mut self.cells, &mut self.extremes, values.values());
        let ok = match (self.wants_sum, self.wants_extremes) {
            (true, true) => update_cells::<_, _, true, true>(cells, extremes, group_ids, raw, mask),
            (true, false) => {
                update_cells::<_, _, true, false>(cells, extremes, group_ids, raw, mask)
            }
            (false, true) => {
                update_cells::<_, _, false, true>(cells, extremes, group_ids, raw, mask)
            }
            (false, false) => {
                update_cells::<_, _, false, false>(cells, extremes, group_ids, raw, mask)
            }
        };
        if ok {
            Ok(())
        } else {
            let kind = if self.roles.contains(&NumericRole::Sum) {
                SumKind::Sum
            } else {
                SumKind::Avg
            };
            Err(QuiverError::overflow(
                self.context(kind),
                "Decimal128 (i128)",
            ))
        }
    }

    fn emitted(&mut self, emit_to: EmitTo) -> Emitted<S, T::Native> {
        let cells = take_front(&mut self.cells, emit_to);
        Emitted {
            counts: cells.iter().map(|c| c.count).collect(),
            rows: cells.iter().map(|c| c.rows).collect(),
            sums: cells.iter().map(|c| c.sum).collect(),
            extremes: if self.wants_extremes {
                take_front(&mut self.extremes, emit_to)
            } else {
                Vec::new()
            },
        }
    }

    fn extreme_column(&self, emitted: &Emitted<S, T::Native>, side: usize) -> ArrayRef {
        let values: Vec<T::Native> = emitted.extremes.iter().map(|pair| pair[side]).collect();
        Arc::new(
            PrimitiveArray::<T>::new(values.into(), nulls_where_empty(&emitted.counts))
                .with_data_type(self.input_type.clone()),
        )
    }
}

impl<T, S> FusedAccumulator for Fused<T, S>
where
    T: ArrowPrimitiveType,
    T::Native: Bounds,
    S: AddValue<T::Native> + SumOutput,
{
    fn update_batch(
        &mut self,
        values: &ArrayRef,
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.resize(total_groups);
        let widened;
        let array = if values.data_type() == &DataType::Float16 {
            widened = cast(values, &DataType::Float64)?;
            &widened
        } else {
            values
        };
        let typed = array.as_primitive_opt::<T>().ok_or_else(|| {
            QuiverError::Internal(format!(
                "fused aggregates built for {} got {}",
                self.input_type,
                values.data_type()
            ))
        })?;
        let mask = selected_rows(typed.nulls(), filter);
        self.update_values(typed, group_ids, mask.as_ref())?;
        if self.wants_rows && mask.is_some() {
            // Some rows were skipped for NULL or the filter; COUNT(*) skips only the filter.
            let cells = &mut self.cells;
            match selected_rows(None, filter) {
                None => group_ids.iter().for_each(|&g| cells[g as usize].rows += 1),
                Some(passing) => passing
                    .valid_indices()
                    .for_each(|row| cells[group_ids[row] as usize].rows += 1),
            }
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[&[ArrayRef]],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.resize(total_groups);
        if states.len() != self.roles.len() {
            return Err(QuiverError::Internal(format!(
                "{} partial states for {} fused aggregates",
                states.len(),
                self.roles.len()
            )));
        }
        let state_of = |wanted: &[NumericRole]| {
            self.roles
                .iter()
                .zip(states)
                .find(|(role, _)| wanted.contains(role))
                .map(|(_, &columns)| columns)
        };
        let count_overflow = || QuiverError::overflow("COUNT", "Int64");
        // The non-null count comes from any role that carries one; with only MIN / MAX, a
        // valid partial value stands for "at least one value".
        if let Some(columns) = state_of(&[NumericRole::Count, NumericRole::Sum, NumericRole::Avg]) {
            let partial = state_column::<Int64Type>(columns, 0)?;
            for (&g, &c) in group_ids.iter().zip(partial.values()) {
                let count = &mut self.cells[g as usize].count;
                *count = count.checked_add(c).ok_or_else(count_overflow)?;
            }
        } else if let Some(columns) = state_of(&[NumericRole::Min, NumericRole::Max]) {
            let partial = state_column::<T>(columns, 0)?;
            for (row, &g) in group_ids.iter().enumerate() {
                self.cells[g as usize].count += i64::from(partial.is_valid(row));
            }
        }
        if let Some(columns) = state_of(&[NumericRole::CountStar]) {
            let partial = state_column::<Int64Type>(columns, 0)?;
            for (&g, &c) in group_ids.iter().zip(partial.values()) {
                let rows = &mut self.cells[g as usize].rows;
                *rows = rows.checked_add(c).ok_or_else(count_overflow)?;
            }
        }
        if let Some(columns) = state_of(&[NumericRole::Sum, NumericRole::Avg]) {
            let context = self.context(SumKind::Sum);
            S::merge_column(&mut self.cells, columns, group_ids, &context)?;
        }
        for (side, role) in [(0, NumericRole::Min), (1, NumericRole::Max)] {
            let Some(columns) = state_of(&[role]) else {
                continue;
            };
            let partial = state_column::<T>(columns, 0)?;
            for (row, &g) in group_ids.iter().enumerate() {
                if partial.is_null(row) {
                    continue;
                }
                let v = partial.value(row);
                let current = &mut self.extremes[g as usize][side];
                let better = if side == 0 {
                    v.sql_lt(*current)
                } else {
                    current.sql_lt(v)
                };
                if better {
                    *current = v;
                }
            }
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<Vec<ArrayRef>>> {
        let emitted = self.emitted(emit_to);
        let counts: ArrayRef = Arc::new(Int64Array::from(emitted.counts.clone()));
        let mut sum_state: Option<Vec<ArrayRef>> = None;
        let mut states = Vec::with_capacity(self.roles.len());
        for &role in &self.roles {
            states.push(match role {
                NumericRole::CountStar => {
                    vec![Arc::new(Int64Array::from(emitted.rows.clone())) as ArrayRef]
                }
                NumericRole::Count => vec![Arc::clone(&counts)],
                NumericRole::Sum | NumericRole::Avg => match &sum_state {
                    Some(columns) => columns.clone(),
                    None => sum_state
                        .insert(S::state_columns(&counts, &emitted.sums)?)
                        .clone(),
                },
                NumericRole::Min => vec![self.extreme_column(&emitted, 0)],
                NumericRole::Max => vec![self.extreme_column(&emitted, 1)],
            });
        }
        Ok(states)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let emitted = self.emitted(emit_to);
        let mut outputs = Vec::with_capacity(self.roles.len());
        for &role in &self.roles {
            outputs.push(match role {
                NumericRole::CountStar => {
                    Arc::new(Int64Array::from(emitted.rows.clone())) as ArrayRef
                }
                NumericRole::Count => Arc::new(Int64Array::from(emitted.counts.clone())),
                NumericRole::Sum => S::finish(
                    SumKind::Sum,
                    self.domain,
                    &self.context(SumKind::Sum),
                    &emitted.counts,
                    &emitted.sums,
                )?,
                NumericRole::Avg => S::finish(
                    SumKind::Avg,
                    self.domain,
                    &self.context(SumKind::Avg),
                    &emitted.counts,
                    &emitted.sums,
                )?,
                NumericRole::Min => self.extreme_column(&emitted, 0),
                NumericRole::Max => self.extreme_column(&emitted, 1),
            });
        }
        Ok(outputs)
    }

    fn size(&self) -> usize {
        self.cells.capacity() * std::mem::size_of::<Cell<S>>()
            + self.extremes.capacity() * std::mem::size_of::<[T::Native; 2]>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int64(values: Vec<Option<i64>>) -> ArrayRef {
        Arc::new(Int64Array::from(values))
    }

    #[test]
    fn compensation_is_the_exact_rounding_error_of_each_addition() {
        // TwoSum must give the error term of Neumaier's ordered form bit for bit, so sums do not
        // depend on which one is used: seeded pairs over every exponent range, both signs,
        // zeros of both signs and exact cancellations.
        let mut rng = quiver_core::rng::SplitMix64::new(11);
        let mut value = || -> f64 {
            match rng.below(6) {
                0 => 0.0,
                1 => -0.0,
                _ => {
                    let mantissa = rng.below(1 << 53) as f64 / (1u64 << 53) as f64;
                    let exponent = rng.below(1200) as i32 - 600;
                    let sign = if rng.below(2) == 0 { 1.0 } else { -1.0 };
                    sign * mantissa * 2f64.powi(exponent)
                }
            }
        };
        for round in 0..100_000 {
            let sum = value();
            let added = if round % 7 == 0 { -sum } else { value() };
            let mut compensated = Compensated {
                sum,
                compensation: 0.0,
            };
            compensated.add(added);
            let t = sum + added;
            let ordered = if sum.abs() >= added.abs() {
                (sum - t) + added
            } else {
                (added - t) + sum
            };
            assert_eq!(compensated.sum.to_bits(), t.to_bits());
            assert_eq!(
                compensated.compensation.to_bits(),
                (0.0 + ordered).to_bits(),
                "{sum:e} + {added:e}"
            );
        }
    }

    #[test]
    fn cells_are_32_bytes() {
        assert_eq!(std::mem::size_of::<Cell<i128>>(), 32);
        assert_eq!(std::mem::size_of::<Cell<Compensated>>(), 32);
    }

    #[test]
    fn integer_sum_overflowing_int64_is_an_error() {
        let mut sum = new_fused(vec![NumericRole::Sum], &DataType::Int64).unwrap();
        let values = int64(vec![Some(i64::MAX), Some(1), Some(i64::MIN), Some(-1)]);
        sum.update_batch(&values, &[0, 0, 1, 1], None, 2).unwrap();
        let error = sum.evaluate(EmitTo::All).unwrap_err();
        assert!(error.to_string().contains("overflow of Int64"), "{error}");
        // The intermediate overflow alone is fine when the final sum fits.
        let mut sum = new_fused(vec![NumericRole::Sum], &DataType::Int64).unwrap();
        let values = int64(vec![Some(i64::MAX), Some(1), Some(-1)]);
        sum.update_batch(&values, &[0, 0, 0], None, 1).unwrap();
        let result = sum.evaluate(EmitTo::All).unwrap();
        assert_eq!(result[0].as_primitive::<Int64Type>().value(0), i64::MAX);
    }

    #[test]
    fn count_star_counts_null_values_but_not_filtered_rows() {
        let roles = vec![
            NumericRole::CountStar,
            NumericRole::Count,
            NumericRole::Min,
            NumericRole::Max,
        ];
        let mut fused = new_fused(roles, &DataType::Int64).unwrap();
        let values = int64(vec![Some(4), None, Some(-2), Some(9), None]);
        let filter = BooleanArray::from(vec![Some(true), Some(true), Some(true), None, Some(true)]);
        fused
            .update_batch(&values, &[0, 0, 0, 0, 1], Some(&filter), 2)
            .unwrap();
        let out = fused.evaluate(EmitTo::All).unwrap();
        let ints = |i: usize| {
            out[i]
                .as_primitive::<Int64Type>()
                .iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(ints(0), vec![Some(3), Some(1)]);
        assert_eq!(ints(1), vec![Some(2), Some(0)]);
        assert_eq!(ints(2), vec![Some(-2), None]);
        assert_eq!(ints(3), vec![Some(4), None]);
    }

    #[test]
    fn float_extremes_order_nan_last_and_keep_the_first_of_equal_zeros() {
        let mut fused =
            new_fused(vec![NumericRole::Min, NumericRole::Max], &DataType::Float64).unwrap();
        let values: ArrayRef = Arc::new(Float64Array::from(vec![
            f64::NAN,
            -0.0,
            0.0,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::NAN,
        ]));
        fused
            .update_batch(&values, &[0, 0, 0, 1, 1, 2], None, 3)
            .unwrap();
        let out = fused.evaluate(EmitTo::All).unwrap();
        let min = out[0].as_primitive::<Float64Type>();
        let max = out[1].as_primitive::<Float64Type>();
        assert!(min.value(0) == 0.0 && min.value(0).is_sign_negative());
        assert!(max.value(0).is_nan());
        assert_eq!(min.value(1), f64::NEG_INFINITY);
        assert!(max.value(1).is_nan());
        assert!(min.value(2).is_nan() && max.value(2).is_nan());
    }

    #[test]
    fn min_max_of_float16_is_refused() {
        let error = new_fused(vec![NumericRole::Min], &DataType::Float16)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("Float16"), "{error}");
        assert!(new_fused(vec![NumericRole::Sum], &DataType::Float16).is_ok());
    }

    #[test]
    fn emit_first_keeps_the_rest() {
        let mut fused =
            new_fused(vec![NumericRole::Max, NumericRole::Sum], &DataType::Int64).unwrap();
        fused
            .update_batch(&int64(vec![Some(5), Some(7), Some(9)]), &[0, 1, 2], None, 3)
            .unwrap();
        let first = fused.evaluate(EmitTo::First(2)).unwrap();
        assert_eq!(
            first[0].as_primitive::<Int64Type>().values().to_vec(),
            vec![5, 7]
        );
        let rest = fused.evaluate(EmitTo::All).unwrap();
        assert_eq!(
            rest[1].as_primitive::<Int64Type>().values().to_vec(),
            vec![9]
        );
    }
}
