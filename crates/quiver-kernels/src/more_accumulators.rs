//! Accumulators beyond the basic five: variance and standard deviation (Welford, mergeable by
//! Chan's formula), skewness and kurtosis (one-pass central moments, Pébay's merge), the two-variable CORR / COVAR / REGR family (the same, for co-moments),
//! BOOL_AND / BOOL_OR, exact MEDIAN / PERCENTILE_CONT, STRING_AGG and
//! COUNT(DISTINCT).

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListArray, StringArray,
    UInt32Array,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Float64Type};
use arrow::row::{RowConverter, Rows, SortField};
use hashbrown::HashTable;
use quiver_core::{QuiverError, Result};

use crate::accumulators::{selected_rows, state_column, take_front, GroupsAccumulator};
use crate::hash::{bytes_equal, hash_bytes, hash_value};
use crate::huge_pages;
use crate::EmitTo;

fn first_input(values: &[ArrayRef]) -> Result<&ArrayRef> {
    values
        .first()
        .ok_or_else(|| QuiverError::Internal("aggregate without an argument".into()))
}

/// Numeric input as `Float64` (variance and percentiles are computed in f64).
fn as_f64(array: &ArrayRef) -> Result<ArrayRef> {
    if !array.data_type().is_numeric() {
        return Err(QuiverError::Unsupported(format!(
            "statistical aggregate of {}; it takes numbers",
            array.data_type()
        )));
    }
    Ok(cast(array, &DataType::Float64)?)
}

// ---------------------------------------------------------------------------------------------
// VAR_SAMP, VAR_POP, STDDEV_SAMP, STDDEV_POP

/// Which dispersion statistic a [`VarianceAccumulator`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarianceKind {
    /// Sample variance (n - 1); NULL for fewer than 2 values.
    VarSamp,
    /// Population variance (n).
    VarPop,
    /// Square root of the sample variance.
    StddevSamp,
    /// Square root of the population variance.
    StddevPop,
}

/// Welford's running mean and sum of squared deviations, per group.
#[derive(Debug)]
pub struct VarianceAccumulator {
    kind: VarianceKind,
    counts: Vec<i64>,
    means: Vec<f64>,
    m2s: Vec<f64>,
}

impl VarianceAccumulator {
    /// A variance-family accumulator.
    pub fn new(kind: VarianceKind) -> Self {
        VarianceAccumulator {
            kind,
            counts: Vec::new(),
            means: Vec::new(),
            m2s: Vec::new(),
        }
    }

    /// State fields: count, mean, m2.
    pub fn state_fields(name: &str) -> Vec<Field> {
        vec![
            Field::new(format!("{name}[count]"), DataType::Int64, false),
            Field::new(format!("{name}[mean]"), DataType::Float64, false),
            Field::new(format!("{name}[m2]"), DataType::Float64, false),
        ]
    }

    fn resize(&mut self, groups: usize) {
        huge_pages::resize(&mut self.counts, groups, 0);
        huge_pages::resize(&mut self.means, groups, 0.0);
        huge_pages::resize(&mut self.m2s, groups, 0.0);
    }

    /// Chan et al.'s parallel combination of two (count, mean, m2) summaries.
    fn combine(&mut self, g: usize, count: i64, mean: f64, m2: f64) {
        if count == 0 {
            return;
        }
        if self.counts[g] == 0 {
            // Merging into an empty group copies the summary exactly, so a state round trip
            // (checkpoint, re-partitioning) changes no bits.
            self.counts[g] = count;
            self.means[g] = mean;
            self.m2s[g] = m2;
            return;
        }
        let n_a = self.counts[g] as f64;
        let n_b = count as f64;
        let n = n_a + n_b;
        let delta = mean - self.means[g];
        self.means[g] += delta * n_b / n;
        self.m2s[g] += m2 + delta * delta * n_a * n_b / n;
        self.counts[g] += count;
    }
}

impl GroupsAccumulator for VarianceAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.resize(total_groups);
        let input = first_input(values)?;
        let floats = as_f64(input)?;
        let floats = floats.as_primitive::<Float64Type>();
        let mask = selected_rows(floats.nulls(), filter);
        let raw = floats.values();
        let mut add = |row: usize| {
            let g = group_ids[row] as usize;
            let x = raw[row];
            self.counts[g] += 1;
            let delta = x - self.means[g];
            self.means[g] += delta / self.counts[g] as f64;
            self.m2s[g] += delta * (x - self.means[g]);
        };
        match mask {
            None => (0..raw.len()).for_each(&mut add),
            Some(mask) => mask.valid_indices().for_each(&mut add),
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.resize(total_groups);
        let (counts, means, m2s) = (
            state_column::<arrow::datatypes::Int64Type>(states, 0)?,
            state_column::<Float64Type>(states, 1)?,
            state_column::<Float64Type>(states, 2)?,
        );
        for (row, &g) in group_ids.iter().enumerate() {
            self.combine(
                g as usize,
                counts.value(row),
                means.value(row),
                m2s.value(row),
            );
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![
            Arc::new(Int64Array::from(take_front(&mut self.counts, emit_to))),
            Arc::new(Float64Array::from(take_front(&mut self.means, emit_to))),
            Arc::new(Float64Array::from(take_front(&mut self.m2s, emit_to))),
        ])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let counts = take_front(&mut self.counts, emit_to);
        let _means = take_front(&mut self.means, emit_to);
        let m2s = take_front(&mut self.m2s, emit_to);
        let sample = matches!(self.kind, VarianceKind::VarSamp | VarianceKind::StddevSamp);
        let root = matches!(
            self.kind,
            VarianceKind::StddevSamp | VarianceKind::StddevPop
        );
        let values: Vec<Option<f64>> = counts
            .iter()
            .zip(&m2s)
            .map(|(&n, &m2)| {
                let divisor = if sample { n - 1 } else { n };
                (divisor > 0).then(|| {
                    // Rounding can leave a tiny negative m2 for constant input; NaN stays NaN.
                    let variance = m2 / divisor as f64;
                    let variance = if variance < 0.0 { 0.0 } else { variance };
                    if root {
                        variance.sqrt()
                    } else {
                        variance
                    }
                })
            })
            .collect();
        Ok(Arc::new(Float64Array::from(values)))
    }

    fn size(&self) -> usize {
        self.counts.capacity() * 8 + self.means.capacity() * 8 + self.m2s.capacity() * 8
    }
}

// ---------------------------------------------------------------------------------------------
// SKEWNESS, KURTOSIS, KURTOSIS_POP

/// Which shape statistic a [`MomentsAccumulator`] reports (DuckDB's definitions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MomentKind {
    /// Sample skewness, `sqrt(n (n - 1)) / (n - 2) · m3 / m2^1.5` over the central moments
    /// `m_k = Σ (x - mean)^k / n`; NULL for fewer than 3 values or no spread.
    Skewness,
    /// Sample excess kurtosis, `(n - 1) ((n + 1) m4 / m2² - 3 (n - 1)) / ((n - 2)(n - 3))`;
    /// NULL for fewer than 4 values or no spread.
    Kurtosis,
    /// Population excess kurtosis, `m4 / m2² - 3`; NULL for no values or no spread.
    KurtosisPop,
}

impl MomentKind {
    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            MomentKind::Skewness => "SKEWNESS",
            MomentKind::Kurtosis => "KURTOSIS",
            MomentKind::KurtosisPop => "KURTOSIS_POP",
        }
    }
}

/// One group's count, mean and sums of the 2nd to 4th powers of deviations from the mean.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Moments {
    pub(crate) count: i64,
    pub(crate) mean: f64,
    pub(crate) m2: f64,
    pub(crate) m3: f64,
    pub(crate) m4: f64,
}

impl Moments {
    /// Adds one value (Terriberry's one-pass update, the extension of Welford's).
    fn add(&mut self, x: f64) {
        let before = self.count as f64;
        self.count += 1;
        let n = self.count as f64;
        let delta = x - self.mean;
        let delta_n = delta / n;
        let delta_n2 = delta_n * delta_n;
        let term = delta * delta_n * before;
        self.mean += delta_n;
        self.m4 += term * delta_n2 * (n * n - 3.0 * n + 3.0) + 6.0 * delta_n2 * self.m2
            - 4.0 * delta_n * self.m3;
        self.m3 += term * delta_n * (n - 2.0) - 3.0 * delta_n * self.m2;
        self.m2 += term;
    }

    /// Combines two groups' moments (Pébay's pairwise formulas).
    fn merge(&mut self, other: Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            // Copied exactly, so a state round trip changes no bits.
            *self = other;
            return;
        }
        let (a, b) = (self.count as f64, other.count as f64);
        let n = a + b;
        let delta = other.mean - self.mean;
        let delta2 = delta * delta;
        self.m4 += other.m4
            + delta2 * delta2 * a * b * (a * a - a * b + b * b) / (n * n * n)
            + 6.0 * delta2 * (a * a * other.m2 + b * b * self.m2) / (n * n)
            + 4.0 * delta * (a * other.m3 - b * self.m3) / n;
        self.m3 += other.m3
            + delta * delta2 * a * b * (a - b) / (n * n)
            + 3.0 * delta * (a * other.m2 - b * self.m2) / n;
        self.m2 += other.m2 + delta2 * a * b / n;
        self.mean += delta * b / n;
        self.count += other.count;
    }

    /// The statistic `kind` of these moments (shared with the reference, which computes the
    /// moments in two passes).
    pub(crate) fn statistic(self, kind: MomentKind) -> Option<f64> {
        let n = self.count as f64;
        let (m2, m3, m4) = (self.m2 / n, self.m3 / n, self.m4 / n);
        // Equal values leave every deviation exactly 0 (the first value is the mean exactly).
        if m2 == 0.0 {
            return None;
        }
        match kind {
            MomentKind::Skewness => {
                (self.count > 2).then(|| (n * (n - 1.0)).sqrt() / (n - 2.0) * m3 / m2.powf(1.5))
            }
            MomentKind::Kurtosis => (self.count > 3).then(|| {
                (n - 1.0) * ((n + 1.0) * m4 / (m2 * m2) - 3.0 * (n - 1.0)) / ((n - 2.0) * (n - 3.0))
            }),
            MomentKind::KurtosisPop => (self.count > 0).then(|| m4 / (m2 * m2) - 3.0),
        }
    }
}

/// SKEWNESS / KURTOSIS per group: one-pass central moments, mergeable.
#[derive(Debug)]
pub struct MomentsAccumulator {
    kind: MomentKind,
    moments: Vec<Moments>,
}

impl MomentsAccumulator {
    /// A shape-statistic accumulator.
    pub fn new(kind: MomentKind) -> Self {
        MomentsAccumulator {
            kind,
            moments: Vec::new(),
        }
    }

    /// State fields: count, mean, m2, m3, m4.
    pub fn state_fields(name: &str) -> Vec<Field> {
        let mut fields = vec![Field::new(format!("{name}[count]"), DataType::Int64, false)];
        fields.extend(
            ["mean", "m2", "m3", "m4"]
                .map(|part| Field::new(format!("{name}[{part}]"), DataType::Float64, false)),
        );
        fields
    }
}

impl GroupsAccumulator for MomentsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        huge_pages::resize(&mut self.moments, total_groups, Moments::default());
        let floats = as_f64(first_input(values)?)?;
        let floats = floats.as_primitive::<Float64Type>();
        let raw = floats.values();
        let mut add = |row: usize| self.moments[group_ids[row] as usize].add(raw[row]);
        match selected_rows(floats.nulls(), filter) {
            None => (0..raw.len()).for_each(&mut add),
            Some(mask) => mask.valid_indices().for_each(&mut add),
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        huge_pages::resize(&mut self.moments, total_groups, Moments::default());
        let counts = state_column::<arrow::datatypes::Int64Type>(states, 0)?;
        let parts = [1, 2, 3, 4].map(|i| state_column::<Float64Type>(states, i));
        let [means, m2s, m3s, m4s] = parts;
        let (means, m2s, m3s, m4s) = (means?, m2s?, m3s?, m4s?);
        for (row, &g) in group_ids.iter().enumerate() {
            self.moments[g as usize].merge(Moments {
                count: counts.value(row),
                mean: means.value(row),
                m2: m2s.value(row),
                m3: m3s.value(row),
                m4: m4s.value(row),
            });
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let moments = take_front(&mut self.moments, emit_to);
        let column = |part: fn(&Moments) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(moments.iter().map(part)))
        };
        Ok(vec![
            Arc::new(Int64Array::from_iter_values(
                moments.iter().map(|m| m.count),
            )),
            column(|m| m.mean),
            column(|m| m.m2),
            column(|m| m.m3),
            column(|m| m.m4),
        ])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let moments = take_front(&mut self.moments, emit_to);
        Ok(Arc::new(
            moments
                .iter()
                .map(|m| m.statistic(self.kind))
                .collect::<Float64Array>(),
        ))
    }

    fn size(&self) -> usize {
        self.moments.capacity() * std::mem::size_of::<Moments>()
    }
}

// ---------------------------------------------------------------------------------------------
// CORR, COVAR_POP, COVAR_SAMP, REGR_SLOPE, REGR_INTERCEPT, REGR_R2

/// Which statistic of two variables a [`CovarianceAccumulator`] reports; the input is a
/// two-field struct `(y, x)` (dependent first, as SQL writes `REGR_SLOPE(y, x)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CovarianceKind {
    /// Pearson's correlation coefficient; NULL when either variable is constant.
    Corr,
    /// Population covariance.
    CovarPop,
    /// Sample covariance; NULL for fewer than 2 pairs.
    CovarSamp,
    /// Least-squares slope of y on x; NULL when x is constant.
    RegrSlope,
    /// Least-squares intercept; NULL when x is constant.
    RegrIntercept,
    /// Coefficient of determination; NULL when x is constant, 1 when only y is.
    RegrR2,
}

impl CovarianceKind {
    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            CovarianceKind::Corr => "CORR",
            CovarianceKind::CovarPop => "COVAR_POP",
            CovarianceKind::CovarSamp => "COVAR_SAMP",
            CovarianceKind::RegrSlope => "REGR_SLOPE",
            CovarianceKind::RegrIntercept => "REGR_INTERCEPT",
            CovarianceKind::RegrR2 => "REGR_R2",
        }
    }

    /// The statistic from a summary of `n` pairs (PostgreSQL's definitions and NULL cases).
    pub fn finish(self, summary: &CoMoments) -> Option<f64> {
        let n = summary.count as f64;
        let (sxx, syy, sxy) = (summary.m2_x, summary.m2_y, summary.c_xy);
        if summary.count == 0 {
            return None;
        }
        match self {
            CovarianceKind::CovarPop => Some(sxy / n),
            CovarianceKind::CovarSamp => (summary.count > 1).then(|| sxy / (n - 1.0)),
            CovarianceKind::Corr => (sxx != 0.0 && syy != 0.0)
                .then(|| (sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0)),
            CovarianceKind::RegrSlope => (sxx != 0.0).then(|| sxy / sxx),
            CovarianceKind::RegrIntercept => {
                (sxx != 0.0).then(|| summary.mean_y - summary.mean_x * (sxy / sxx))
            }
            CovarianceKind::RegrR2 => match (sxx != 0.0, syy != 0.0) {
                (false, _) => None,
                (true, false) => Some(1.0),
                (true, true) => Some((sxy * sxy) / (sxx * syy)),
            },
        }
    }
}

/// Count, means, and sums of squared and cross deviations of `n` pairs: enough for every
/// [`CovarianceKind`], and mergeable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CoMoments {
    /// Pairs seen.
    pub count: i64,
    /// Mean of x.
    pub mean_x: f64,
    /// Mean of y.
    pub mean_y: f64,
    /// Σ (x − mean_x)².
    pub m2_x: f64,
    /// Σ (y − mean_y)².
    pub m2_y: f64,
    /// Σ (x − mean_x)(y − mean_y).
    pub c_xy: f64,
}

impl CoMoments {
    /// Adds one pair (Welford's update for two variables).
    pub fn add(&mut self, x: f64, y: f64) {
        self.count += 1;
        let n = self.count as f64;
        let dx = x - self.mean_x;
        let dy = y - self.mean_y;
        self.mean_x += dx / n;
        self.mean_y += dy / n;
        self.m2_x += dx * (x - self.mean_x);
        self.m2_y += dy * (y - self.mean_y);
        self.c_xy += dx * (y - self.mean_y);
    }

    /// Adds another summary (Chan et al.'s combination).
    pub fn merge(&mut self, other: &CoMoments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = *other;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let dx = other.mean_x - self.mean_x;
        let dy = other.mean_y - self.mean_y;
        let weight = na * nb / n;
        self.mean_x += dx * nb / n;
        self.mean_y += dy * nb / n;
        self.m2_x += other.m2_x + dx * dx * weight;
        self.m2_y += other.m2_y + dy * dy * weight;
        self.c_xy += other.c_xy + dx * dy * weight;
        self.count += other.count;
    }
}

/// Two-variable statistics per group over a `(y, x)` struct input; pairs with a NULL are
/// skipped, as SQL defines.
#[derive(Debug)]
pub struct CovarianceAccumulator {
    kind: CovarianceKind,
    groups: Vec<CoMoments>,
}

impl CovarianceAccumulator {
    /// An accumulator of `kind`.
    pub fn new(kind: CovarianceKind) -> Self {
        CovarianceAccumulator {
            kind,
            groups: Vec::new(),
        }
    }

    /// Checks the input: a struct of two numeric fields.
    pub fn check_input(name: &str, input_type: &DataType) -> Result<()> {
        match input_type {
            DataType::Struct(fields)
                if fields.len() == 2
                    && fields.iter().all(|f| {
                        f.data_type().is_numeric() || f.data_type() == &DataType::Null
                    }) =>
            {
                Ok(())
            }
            other => Err(QuiverError::Unsupported(format!(
                "{name} of {other}; it takes two numbers"
            ))),
        }
    }

    /// State fields: count, the two means, the two sums of squares, the cross sum.
    pub fn state_fields(name: &str) -> Vec<Field> {
        let float = |part: &str| Field::new(format!("{name}[{part}]"), DataType::Float64, false);
        vec![
            Field::new(format!("{name}[count]"), DataType::Int64, false),
            float("mean_x"),
            float("mean_y"),
            float("m2_x"),
            float("m2_y"),
            float("c_xy"),
        ]
    }
}

impl GroupsAccumulator for CovarianceAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        huge_pages::resize(&mut self.groups, total_groups, CoMoments::default());
        let input = first_input(values)?;
        let pair = input
            .as_struct_opt()
            .filter(|s| s.num_columns() == 2)
            .ok_or_else(|| {
                QuiverError::Internal(format!("two-variable aggregate of {}", input.data_type()))
            })?;
        let y = as_f64(pair.column(0))?;
        let x = as_f64(pair.column(1))?;
        let (y, x) = (
            y.as_primitive::<Float64Type>(),
            x.as_primitive::<Float64Type>(),
        );
        let both = NullBuffer::union(
            NullBuffer::union(x.nulls(), y.nulls()).as_ref(),
            pair.nulls(),
        );
        let mask = selected_rows(both.as_ref(), filter);
        let (xs, ys) = (x.values(), y.values());
        let mut add = |row: usize| self.groups[group_ids[row] as usize].add(xs[row], ys[row]);
        match mask {
            None => (0..xs.len()).for_each(&mut add),
            Some(mask) => mask.valid_indices().for_each(&mut add),
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        huge_pages::resize(&mut self.groups, total_groups, CoMoments::default());
        let counts = state_column::<arrow::datatypes::Int64Type>(states, 0)?;
        let parts = (1..6)
            .map(|i| state_column::<Float64Type>(states, i))
            .collect::<Result<Vec<_>>>()?;
        for (row, &g) in group_ids.iter().enumerate() {
            let other = CoMoments {
                count: counts.value(row),
                mean_x: parts[0].value(row),
                mean_y: parts[1].value(row),
                m2_x: parts[2].value(row),
                m2_y: parts[3].value(row),
                c_xy: parts[4].value(row),
            };
            self.groups[g as usize].merge(&other);
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = take_front(&mut self.groups, emit_to);
        let column = |f: fn(&CoMoments) -> f64| -> ArrayRef {
            Arc::new(Float64Array::from_iter_values(groups.iter().map(f)))
        };
        Ok(vec![
            Arc::new(Int64Array::from_iter_values(groups.iter().map(|g| g.count))),
            column(|g| g.mean_x),
            column(|g| g.mean_y),
            column(|g| g.m2_x),
            column(|g| g.m2_y),
            column(|g| g.c_xy),
        ])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = take_front(&mut self.groups, emit_to);
        let kind = self.kind;
        Ok(Arc::new(
            groups
                .iter()
                .map(|g| kind.finish(g))
                .collect::<Float64Array>(),
        ))
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<CoMoments>()
    }
}

// ---------------------------------------------------------------------------------------------
// SUM (DISTINCT), AVG (DISTINCT)

/// `SUM(DISTINCT x)` / `AVG(DISTINCT x)`: the group's distinct values are kept as for
/// `COUNT(DISTINCT)` (and merge the same way); evaluating sums them with the exact fused
/// accumulator, so results equal SUM / AVG over the distinct values.
pub struct DistinctNumericAccumulator {
    role: crate::fused::NumericRole,
    value_type: DataType,
    distinct: CountDistinctAccumulator,
}

impl std::fmt::Debug for DistinctNumericAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DistinctNumericAccumulator")
            .field("role", &self.role)
            .field("distinct", &self.distinct)
            .finish()
    }
}

impl DistinctNumericAccumulator {
    /// A `role` (SUM or AVG) over the distinct values of `value_type`.
    pub fn try_new(role: crate::fused::NumericRole, value_type: &DataType) -> Result<Self> {
        Ok(DistinctNumericAccumulator {
            role,
            value_type: value_type.clone(),
            distinct: CountDistinctAccumulator::try_new(value_type)?,
        })
    }
}

impl GroupsAccumulator for DistinctNumericAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.distinct
            .update_batch(values, group_ids, filter, total_groups)
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.distinct.merge_batch(states, group_ids, total_groups)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.distinct.state(emit_to)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let state = self.distinct.state(emit_to)?;
        let lists = state
            .first()
            .and_then(|s| s.as_list_opt::<i32>())
            .ok_or_else(|| QuiverError::Internal("distinct values state".into()))?;
        let groups = lists.len();
        let offsets = lists.value_offsets();
        let (start, end) = (offsets[0] as usize, offsets[groups] as usize);
        let mut group_ids = Vec::with_capacity(end - start);
        for (group, pair) in offsets.windows(2).enumerate() {
            group_ids.extend(std::iter::repeat_n(
                group as u32,
                (pair[1] - pair[0]) as usize,
            ));
        }
        let values = lists.values().slice(start, end - start);
        let mut sums = crate::fused::new_fused(vec![self.role], &self.value_type)?;
        sums.update_batch(&values, &group_ids, None, groups)?;
        sums.evaluate(EmitTo::All)?
            .pop()
            .ok_or_else(|| QuiverError::Internal("fused SUM without output".into()))
    }

    fn size(&self) -> usize {
        self.distinct.size()
    }
}

// ---------------------------------------------------------------------------------------------
// STRING_AGG(x, sep ORDER BY key)

/// `STRING_AGG(x, separator ORDER BY key [DESC] [NULLS FIRST|LAST])` over a `(x, key)` struct
/// input: each group keeps its values with their keys in Arrow's row format (which sorts as
/// the key's order), and joins them sorted when evaluated; equal keys keep arrival order.
pub struct OrderedStringAggAccumulator {
    separator: String,
    /// Equal (key, text) entries are joined once.
    distinct: bool,
    converter: RowConverter,
    groups: Vec<Vec<(Box<[u8]>, String)>>,
}

impl std::fmt::Debug for OrderedStringAggAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderedStringAggAccumulator")
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl OrderedStringAggAccumulator {
    /// Joins with `separator` in the order of keys of `key_type`.
    pub fn try_new(
        separator: impl Into<String>,
        key_type: &DataType,
        descending: bool,
        nulls_first: bool,
    ) -> Result<Self> {
        let options = arrow::compute::SortOptions {
            descending,
            nulls_first,
        };
        Ok(OrderedStringAggAccumulator {
            separator: separator.into(),
            distinct: false,
            converter: RowConverter::new(vec![SortField::new_with_options(
                key_type.clone(),
                options,
            )])?,
            groups: Vec::new(),
        })
    }

    /// Joins each distinct (key, value) once: `STRING_AGG(DISTINCT x ORDER BY x)`.
    pub fn distinct(mut self, distinct: bool) -> Self {
        self.distinct = distinct;
        self
    }

    /// The key type inside a `(value, key)` input type.
    pub fn key_type(name: &str, input_type: &DataType) -> Result<DataType> {
        match input_type {
            DataType::Struct(fields) if fields.len() == 2 => Ok(fields[1].data_type().clone()),
            other => Err(QuiverError::Unsupported(format!(
                "{name} of {other}; a value and an ORDER BY key are expected"
            ))),
        }
    }

    /// State fields: each group's keys (row format) and values, as two lists.
    pub fn state_fields(name: &str) -> Vec<Field> {
        let list = |item: DataType| DataType::List(Arc::new(Field::new_list_field(item, true)));
        vec![
            Field::new(format!("{name}[keys]"), list(DataType::Binary), true),
            Field::new(format!("{name}[values]"), list(DataType::Utf8), true),
        ]
    }
}

impl GroupsAccumulator for OrderedStringAggAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_groups, Vec::new);
        let input = first_input(values)?;
        let pair = input
            .as_struct_opt()
            .filter(|s| s.num_columns() == 2)
            .ok_or_else(|| {
                QuiverError::Internal(format!("ordered STRING_AGG of {}", input.data_type()))
            })?;
        let texts = cast(pair.column(0), &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let keys = self
            .converter
            .convert_columns(&[Arc::clone(pair.column(1))])?;
        // NULL values are skipped; NULL keys sort by the NULLS option.
        let mask = selected_rows(texts.nulls(), filter);
        let mut add = |row: usize| {
            self.groups[group_ids[row] as usize]
                .push((keys.row(row).as_ref().into(), texts.value(row).to_string()));
        };
        match mask {
            None => (0..texts.len()).for_each(&mut add),
            Some(mask) => mask.valid_indices().for_each(&mut add),
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_groups, Vec::new);
        let lists = |i: usize| {
            states
                .get(i)
                .and_then(|s| s.as_list_opt::<i32>())
                .ok_or_else(|| QuiverError::Internal("ordered STRING_AGG state".into()))
        };
        let (keys, texts) = (lists(0)?, lists(1)?);
        for (row, &g) in group_ids.iter().enumerate() {
            let (row_keys, row_texts) = (keys.value(row), texts.value(row));
            let (row_keys, row_texts) = (row_keys.as_binary::<i32>(), row_texts.as_string::<i32>());
            for (key, text) in row_keys.iter().zip(row_texts.iter()) {
                if let (Some(key), Some(text)) = (key, text) {
                    self.groups[g as usize].push((key.into(), text.to_string()));
                }
            }
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = take_front(&mut self.groups, emit_to);
        let mut keys = arrow::array::ListBuilder::new(arrow::array::BinaryBuilder::new());
        let mut texts = arrow::array::ListBuilder::new(arrow::array::StringBuilder::new());
        for entries in &groups {
            for (key, text) in entries {
                keys.values().append_value(key);
                texts.values().append_value(text);
            }
            keys.append(true);
            texts.append(true);
        }
        Ok(vec![Arc::new(keys.finish()), Arc::new(texts.finish())])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = take_front(&mut self.groups, emit_to);
        let joined: StringArray = groups
            .into_iter()
            .map(|mut entries| {
                if entries.is_empty() {
                    return None;
                }
                // Stable: equal keys keep arrival order.
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                if self.distinct {
                    // Sorted by key, equal entries are neighbours.
                    entries.dedup();
                }
                let texts: Vec<&str> = entries.iter().map(|(_, t)| t.as_str()).collect();
                Some(texts.join(&self.separator))
            })
            .collect();
        Ok(Arc::new(joined))
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<Vec<(Box<[u8]>, String)>>()
            + self
                .groups
                .iter()
                .flatten()
                .map(|(k, t)| k.len() + t.capacity() + std::mem::size_of::<(Box<[u8]>, String)>())
                .sum::<usize>()
    }
}

// ---------------------------------------------------------------------------------------------
// BOOL_AND, BOOL_OR

/// `BOOL_AND` (every value true) or `BOOL_OR` (some value true); NULL when no values.
#[derive(Debug)]
pub struct BoolAccumulator {
    is_and: bool,
    values: Vec<bool>,
    seen: Vec<bool>,
}

impl BoolAccumulator {
    /// `BOOL_AND` when `is_and`, else `BOOL_OR`.
    pub fn new(is_and: bool) -> Self {
        BoolAccumulator {
            is_and,
            values: Vec::new(),
            seen: Vec::new(),
        }
    }
}

impl GroupsAccumulator for BoolAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        huge_pages::resize(&mut self.values, total_groups, self.is_and);
        huge_pages::resize(&mut self.seen, total_groups, false);
        let input = first_input(values)?;
        let booleans = input.as_boolean_opt().ok_or_else(|| {
            QuiverError::Unsupported(format!(
                "BOOL_AND/BOOL_OR of {}; it takes booleans",
                input.data_type()
            ))
        })?;
        let mask = selected_rows(booleans.nulls(), filter);
        let mut add = |row: usize| {
            let g = group_ids[row] as usize;
            let v = booleans.value(row);
            self.values[g] = if self.is_and {
                self.values[g] && v
            } else {
                self.values[g] || v
            };
            self.seen[g] = true;
        };
        match mask {
            None => (0..booleans.len()).for_each(&mut add),
            Some(mask) => mask.valid_indices().for_each(&mut add),
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
        let seen = take_front(&mut self.seen, emit_to);
        let nulls = NullBuffer::from(seen);
        Ok(Arc::new(BooleanArray::new(values.into(), Some(nulls))))
    }

    fn size(&self) -> usize {
        self.values.capacity() + self.seen.capacity()
    }
}

// ---------------------------------------------------------------------------------------------
// BIT_AND, BIT_OR, BIT_XOR

/// Which bitwise aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOperation {
    /// `BIT_AND`: bits set in every value.
    And,
    /// `BIT_OR`: bits set in some value.
    Or,
    /// `BIT_XOR`: bits set in an odd number of values.
    Xor,
}

impl BitOperation {
    fn apply(self, a: i64, b: i64) -> i64 {
        match self {
            BitOperation::And => a & b,
            BitOperation::Or => a | b,
            BitOperation::Xor => a ^ b,
        }
    }

    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            BitOperation::And => "BIT_AND",
            BitOperation::Or => "BIT_OR",
            BitOperation::Xor => "BIT_XOR",
        }
    }
}

/// `BIT_AND` / `BIT_OR` / `BIT_XOR` of an integer column, in the column's type; NULL when no
/// values. Values are held as the 64 bits of an `i64` (signed types sign-extended, unsigned
/// zero-extended, `UInt64` reinterpreted), so the result narrows back exactly.
#[derive(Debug)]
pub struct BitAccumulator {
    operation: BitOperation,
    input_type: DataType,
    values: Vec<i64>,
    seen: Vec<bool>,
}

impl BitAccumulator {
    /// A bitwise aggregate of `input_type`, which must be an integer type.
    pub fn try_new(operation: BitOperation, input_type: &DataType) -> Result<Self> {
        if !input_type.is_integer() {
            return Err(QuiverError::Unsupported(format!(
                "{} of {input_type}; it takes integers",
                operation.name()
            )));
        }
        Ok(BitAccumulator {
            operation,
            input_type: input_type.clone(),
            values: Vec::new(),
            seen: Vec::new(),
        })
    }

    fn bits(values: &ArrayRef) -> Result<Int64Array> {
        Ok(match values.data_type() {
            DataType::UInt64 => values
                .as_primitive::<arrow::datatypes::UInt64Type>()
                .unary(|v| v as i64),
            _ => cast(values, &DataType::Int64)?.as_primitive().clone(),
        })
    }

    /// State fields: the bits so far (NULL before any value).
    pub fn state_fields(name: &str) -> Vec<Field> {
        vec![Field::new(format!("{name}[bits]"), DataType::Int64, true)]
    }
}

impl GroupsAccumulator for BitAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        let identity = if self.operation == BitOperation::And {
            -1
        } else {
            0
        };
        huge_pages::resize(&mut self.values, total_groups, identity);
        huge_pages::resize(&mut self.seen, total_groups, false);
        let bits = Self::bits(first_input(values)?)?;
        let mask = selected_rows(bits.nulls(), filter);
        let raw = bits.values();
        let operation = self.operation;
        let mut add = |row: usize| {
            let g = group_ids[row] as usize;
            self.values[g] = operation.apply(self.values[g], raw[row]);
            self.seen[g] = true;
        };
        match mask {
            None => (0..raw.len()).for_each(&mut add),
            Some(mask) => mask.valid_indices().for_each(&mut add),
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
        let values = take_front(&mut self.values, emit_to);
        let seen = take_front(&mut self.seen, emit_to);
        Ok(vec![Arc::new(Int64Array::new(
            values.into(),
            Some(NullBuffer::from(seen)),
        ))])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let bits = self.state(emit_to)?.remove(0);
        Ok(match &self.input_type {
            DataType::UInt64 => Arc::new(
                bits.as_primitive::<arrow::datatypes::Int64Type>()
                    .unary::<_, arrow::datatypes::UInt64Type>(|v| v as u64),
            ),
            // Every result's bits came from values of this type, so it fits.
            other => cast(&bits, other)?,
        })
    }

    fn size(&self) -> usize {
        self.values.capacity() * 8 + self.seen.capacity()
    }
}

// ---------------------------------------------------------------------------------------------
// MEDIAN, PERCENTILE_CONT (exact)

/// Exact `PERCENTILE_CONT(fraction)` (MEDIAN is 0.5): keeps every value, sorts at evaluation,
/// interpolates linearly between the two nearest ranks. NaN sorts last.
#[derive(Debug)]
pub struct PercentileAccumulator {
    fraction: f64,
    values: Vec<Vec<f64>>,
}

impl PercentileAccumulator {
    /// A percentile accumulator; `fraction` must be in `[0, 1]`.
    pub fn try_new(fraction: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(QuiverError::Config(format!(
                "PERCENTILE_CONT fraction {fraction} is outside [0, 1]"
            )));
        }
        Ok(PercentileAccumulator {
            fraction,
            values: Vec::new(),
        })
    }

    /// State field: the group's values as a list.
    pub fn state_fields(name: &str) -> Vec<Field> {
        vec![Field::new(
            format!("{name}[values]"),
            DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
            true,
        )]
    }
}

/// Linear interpolation at `fraction` of sorted `values` (PERCENTILE_CONT).
pub fn percentile_cont(sorted: &[f64], fraction: f64) -> Option<f64> {
    percentile_of_sorted(sorted.len(), fraction, |rank| sorted[rank])
}

/// [`percentile_cont`] of `count` sorted values given by rank (so a sliding window can look
/// up only the two ranks it needs).
pub fn percentile_of_sorted(
    count: usize,
    fraction: f64,
    value_at: impl Fn(usize) -> f64,
) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let position = fraction * (count - 1) as f64;
    let lower = position.floor() as usize;
    let upper = position.ceil() as usize;
    let weight = position - lower as f64;
    if lower == upper || weight == 0.0 {
        return Some(value_at(lower));
    }
    let low = value_at(lower);
    Some(low + (value_at(upper) - low) * weight)
}

impl GroupsAccumulator for PercentileAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.values.resize_with(total_groups, Vec::new);
        let floats = as_f64(first_input(values)?)?;
        let floats = floats.as_primitive::<Float64Type>();
        let mask = selected_rows(floats.nulls(), filter);
        let raw = floats.values();
        let mut add = |row: usize| self.values[group_ids[row] as usize].push(raw[row]);
        match mask {
            None => (0..raw.len()).for_each(&mut add),
            Some(mask) => mask.valid_indices().for_each(&mut add),
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.values.resize_with(total_groups, Vec::new);
        let lists = states
            .first()
            .and_then(|a| a.as_list_opt::<i32>())
            .ok_or_else(|| QuiverError::Internal("percentile state is not a list".into()))?;
        for (row, &g) in group_ids.iter().enumerate() {
            let list = lists.value(row);
            let floats = list.as_primitive::<Float64Type>();
            self.values[g as usize].extend(floats.iter().flatten());
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = take_front(&mut self.values, emit_to);
        let lengths = groups.iter().map(Vec::len);
        let offsets = OffsetBuffer::from_lengths(lengths);
        let flat: Vec<f64> = groups.into_iter().flatten().collect();
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Float64, true)),
            offsets,
            Arc::new(Float64Array::from(flat)),
            None,
        )?;
        Ok(vec![Arc::new(list)])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = take_front(&mut self.values, emit_to);
        let fraction = self.fraction;
        let results: Vec<Option<f64>> = groups
            .into_iter()
            .map(|mut values| {
                values.sort_unstable_by(|a, b| crate::reference::sql_float_cmp(*a, *b));
                percentile_cont(&values, fraction)
            })
            .collect();
        Ok(Arc::new(Float64Array::from(results)))
    }

    fn size(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<Vec<f64>>()
            + self.values.iter().map(|v| v.capacity() * 8).sum::<usize>()
    }
}

// ---------------------------------------------------------------------------------------------
// PERCENTILE_DISC

/// `PERCENTILE_DISC(f) WITHIN GROUP (ORDER BY x [DESC])` / `QUANTILE_DISC(x, f)`: the first
/// value, in that order, whose cumulative share of the group's non-NULL values reaches `f`; an
/// input value of the input type (numbers, strings, dates, ...), exact. Values are kept in
/// arrow's row format, which sorts every type as one byte string.
pub struct PercentileDiscAccumulator {
    fraction: f64,
    descending: bool,
    input_type: DataType,
    converter: RowConverter,
    groups: Vec<Vec<Box<[u8]>>>,
}

impl std::fmt::Debug for PercentileDiscAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PercentileDiscAccumulator")
            .field("fraction", &self.fraction)
            .field("groups", &self.groups.len())
            .finish()
    }
}

/// The 0-based position `PERCENTILE_DISC(fraction)` picks among `count` sorted values: the
/// first whose cumulative share `(i + 1) / count` reaches `fraction`.
pub fn percentile_disc_position(count: usize, fraction: f64) -> Option<usize> {
    if count == 0 {
        return None;
    }
    let reached = (fraction * count as f64).ceil() as usize;
    Some(reached.clamp(1, count) - 1)
}

impl PercentileDiscAccumulator {
    /// A discrete percentile of values of `input_type`; `fraction` must be in `[0, 1]`.
    pub fn try_new(fraction: f64, descending: bool, input_type: &DataType) -> Result<Self> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(QuiverError::Config(format!(
                "PERCENTILE_DISC fraction {fraction} is outside [0, 1]"
            )));
        }
        let field = SortField::new(input_type.clone());
        if !RowConverter::supports_fields(std::slice::from_ref(&field)) {
            return Err(QuiverError::Unsupported(format!(
                "PERCENTILE_DISC of {input_type}; its values do not sort"
            )));
        }
        Ok(PercentileDiscAccumulator {
            fraction,
            descending,
            input_type: input_type.clone(),
            converter: RowConverter::new(vec![field])?,
            groups: Vec::new(),
        })
    }

    /// The result type: the input's (a dictionary's values).
    pub fn output_type(input_type: &DataType) -> DataType {
        match input_type {
            DataType::Dictionary(_, values) => values.as_ref().clone(),
            other => other.clone(),
        }
    }

    /// State fields: each group's values in row format, as a list.
    pub fn state_fields(name: &str) -> Vec<Field> {
        vec![Field::new(
            format!("{name}[values]"),
            DataType::List(Arc::new(Field::new_list_field(DataType::Binary, true))),
            true,
        )]
    }
}

impl GroupsAccumulator for PercentileDiscAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_groups, Vec::new);
        let input = first_input(values)?;
        let rows = self.converter.convert_columns(&[Arc::clone(input)])?;
        let mask = selected_rows(input.logical_nulls().as_ref(), filter);
        let mut add = |row: usize| {
            self.groups[group_ids[row] as usize].push(rows.row(row).as_ref().into());
        };
        match mask {
            None => (0..input.len()).for_each(&mut add),
            Some(mask) => mask.valid_indices().for_each(&mut add),
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.groups.resize_with(total_groups, Vec::new);
        let lists = states
            .first()
            .and_then(|a| a.as_list_opt::<i32>())
            .ok_or_else(|| QuiverError::Internal("PERCENTILE_DISC state is not a list".into()))?;
        for (row, &g) in group_ids.iter().enumerate() {
            let list = lists.value(row);
            let encoded = list.as_binary::<i32>();
            self.groups[g as usize].extend(encoded.iter().flatten().map(Box::from));
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = take_front(&mut self.groups, emit_to);
        let mut lists = arrow::array::ListBuilder::new(arrow::array::BinaryBuilder::new());
        for values in &groups {
            for value in values {
                lists.values().append_value(value);
            }
            lists.append(true);
        }
        Ok(vec![Arc::new(lists.finish())])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = take_front(&mut self.groups, emit_to);
        // Groups without values take a NULL encoded the same way.
        let null_row = self
            .converter
            .convert_columns(&[arrow::array::new_null_array(&self.input_type, 1)])?;
        let parser = self.converter.parser();
        let mut picked = Vec::with_capacity(groups.len());
        for mut values in groups {
            values.sort_unstable();
            let position = percentile_disc_position(values.len(), self.fraction);
            match position {
                Some(p) => {
                    let p = if self.descending {
                        values.len() - 1 - p
                    } else {
                        p
                    };
                    picked.push(values.swap_remove(p));
                }
                None => picked.push(null_row.row(0).as_ref().into()),
            }
        }
        let rows = picked.iter().map(|bytes| parser.parse(bytes));
        let mut columns = self.converter.convert_rows(rows)?;
        let picked = columns
            .pop()
            .ok_or_else(|| QuiverError::Internal("PERCENTILE_DISC decoded no column".into()))?;
        let output_type = Self::output_type(&self.input_type);
        if picked.data_type() == &output_type {
            Ok(picked)
        } else {
            Ok(cast(&picked, &output_type)?)
        }
    }

    fn size(&self) -> usize {
        self.groups.capacity() * std::mem::size_of::<Vec<Box<[u8]>>>()
            + self
                .groups
                .iter()
                .flatten()
                .map(|v| v.len() + std::mem::size_of::<Box<[u8]>>())
                .sum::<usize>()
    }
}

// ---------------------------------------------------------------------------------------------
// STRING_AGG

/// `STRING_AGG(col, separator)`: values joined in arrival order; NULL when no values.
#[derive(Debug)]
pub struct StringAggAccumulator {
    separator: String,
    values: Vec<Option<String>>,
}

impl StringAggAccumulator {
    /// A string aggregate joining with `separator`.
    pub fn new(separator: impl Into<String>) -> Self {
        StringAggAccumulator {
            separator: separator.into(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, g: usize, text: &str) {
        match &mut self.values[g] {
            Some(joined) => {
                joined.push_str(&self.separator);
                joined.push_str(text);
            }
            slot @ None => *slot = Some(text.to_string()),
        }
    }
}

impl GroupsAccumulator for StringAggAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.values.resize(total_groups, None);
        let input = first_input(values)?;
        let strings = cast(input, &DataType::Utf8)?;
        let strings = strings.as_string::<i32>();
        let mask = selected_rows(strings.nulls(), filter);
        match mask {
            None => (0..strings.len())
                .for_each(|row| self.push(group_ids[row] as usize, strings.value(row))),
            Some(mask) => mask
                .valid_indices()
                .for_each(|row| self.push(group_ids[row] as usize, strings.value(row))),
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
        Ok(Arc::new(StringArray::from(take_front(
            &mut self.values,
            emit_to,
        ))))
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

// ---------------------------------------------------------------------------------------------
// COUNT(DISTINCT)

/// `COUNT(DISTINCT col)`: one hash set of (group, value) pairs over `arrow-row` encoded values
/// (floats normalised so `-0.0 = 0.0` and NaNs are one value); NULLs are not counted.
pub struct CountDistinctAccumulator {
    value_type: DataType,
    converter: RowConverter,
    /// Distinct (group, value) pairs: `pair_groups[i]` and row `i` of `pair_values`.
    pair_groups: Vec<u32>,
    pair_values: Rows,
    pair_hashes: Vec<u64>,
    table: HashTable<u32>,
    counts: Vec<i64>,
}

impl std::fmt::Debug for CountDistinctAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountDistinctAccumulator")
            .field("value_type", &self.value_type)
            .field("pairs", &self.pair_groups.len())
            .finish()
    }
}

impl CountDistinctAccumulator {
    /// A distinct count over values of `value_type`.
    pub fn try_new(value_type: &DataType) -> Result<Self> {
        let converter = RowConverter::new(vec![SortField::new(value_type.clone())])?;
        let pair_values = converter.empty_rows(0, 0);
        Ok(CountDistinctAccumulator {
            value_type: value_type.clone(),
            converter,
            pair_groups: Vec::new(),
            pair_values,
            pair_hashes: Vec::new(),
            table: HashTable::new(),
            counts: Vec::new(),
        })
    }

    /// State field: the group's distinct values as a list.
    pub fn state_fields(name: &str, value_type: &DataType) -> Vec<Field> {
        vec![Field::new(
            format!("{name}[distinct]"),
            DataType::List(Arc::new(Field::new_list_field(value_type.clone(), true))),
            true,
        )]
    }

    fn insert(
        &mut self,
        values: &ArrayRef,
        group_ids: &[u32],
        mask: Option<&NullBuffer>,
    ) -> Result<()> {
        let normalized = crate::group_values::normalize_floats(values)?;
        let rows = self.converter.convert_columns(&[normalized])?;
        let mut add = |row: usize| {
            let g = group_ids[row];
            let value = rows.row(row);
            let hash = hash_bytes(value.data()) ^ hash_value(&g);
            let (groups, stored, hashes) =
                (&self.pair_groups, &self.pair_values, &self.pair_hashes);
            let found = self.table.find(hash, |&i| {
                let i = i as usize;
                hashes[i] == hash
                    && groups[i] == g
                    && bytes_equal(stored.row(i).data(), value.data())
            });
            if found.is_none() {
                let i = self.pair_groups.len() as u32;
                self.pair_groups.push(g);
                self.pair_values.push(value);
                self.pair_hashes.push(hash);
                let hashes = &self.pair_hashes;
                self.table.insert_unique(hash, i, |&i| hashes[i as usize]);
                self.counts[g as usize] += 1;
            }
        };
        match mask {
            None => (0..values.len()).for_each(&mut add),
            Some(mask) => mask.valid_indices().for_each(&mut add),
        }
        Ok(())
    }

    /// Removes the pairs of the first `n` groups, renumbering the rest; returns the removed
    /// pairs' indices grouped by group.
    fn split_front(&mut self, n: usize) -> Vec<Vec<usize>> {
        let mut by_group: Vec<Vec<usize>> = vec![Vec::new(); n];
        for (i, &g) in self.pair_groups.iter().enumerate() {
            if (g as usize) < n {
                by_group[g as usize].push(i);
            }
        }
        by_group
    }

    fn rebuild_after_emit(&mut self, n: usize) {
        let mut groups = Vec::new();
        let mut values = self.converter.empty_rows(0, 0);
        let mut hashes = Vec::new();
        for (i, &g) in self.pair_groups.iter().enumerate() {
            if (g as usize) >= n {
                let g = g - n as u32;
                let value = self.pair_values.row(i);
                groups.push(g);
                hashes.push(hash_bytes(value.data()) ^ hash_value(&g));
                values.push(value);
            }
        }
        self.table.clear();
        for (i, &hash) in hashes.iter().enumerate() {
            self.table
                .insert_unique(hash, i as u32, |&i| hashes[i as usize]);
        }
        self.pair_groups = groups;
        self.pair_values = values;
        self.pair_hashes = hashes;
    }
}

impl GroupsAccumulator for CountDistinctAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        huge_pages::resize(&mut self.counts, total_groups, 0);
        let input = first_input(values)?;
        let nulls = input.logical_nulls();
        let mask = selected_rows(nulls.as_ref(), filter);
        self.insert(input, group_ids, mask.as_ref())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        huge_pages::resize(&mut self.counts, total_groups, 0);
        let lists = states
            .first()
            .and_then(|a| a.as_list_opt::<i32>())
            .ok_or_else(|| QuiverError::Internal("distinct state is not a list".into()))?;
        let offsets = lists.value_offsets();
        let mut flat_groups = Vec::with_capacity(lists.values().len());
        for (row, &g) in group_ids.iter().enumerate() {
            let len = (offsets[row + 1] - offsets[row]) as usize;
            flat_groups.extend(std::iter::repeat_n(g, len));
        }
        let start = offsets[0] as usize;
        let end = offsets[group_ids.len()] as usize;
        let values = lists.values().slice(start, end - start);
        let nulls = values.logical_nulls();
        let mask = nulls.filter(|n| n.null_count() > 0);
        self.insert(&values, &flat_groups, mask.as_ref())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let n = emit_to.count(self.counts.len());
        let by_group = self.split_front(n);
        let order: Vec<usize> = by_group.iter().flatten().copied().collect();
        let offsets = OffsetBuffer::from_lengths(by_group.iter().map(Vec::len));
        let all = self.converter.convert_rows(self.pair_values.iter())?;
        let indices = UInt32Array::from_iter_values(order.iter().map(|&i| i as u32));
        let mut flat = take(&all[0], &indices, None)?;
        if flat.data_type() != &self.value_type {
            flat = cast(&flat, &self.value_type)?;
        }
        let list = ListArray::try_new(
            Arc::new(Field::new_list_field(self.value_type.clone(), true)),
            offsets,
            flat,
            None,
        )?;
        self.rebuild_after_emit(n);
        take_front(&mut self.counts, emit_to);
        Ok(vec![Arc::new(list)])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let n = emit_to.count(self.counts.len());
        self.rebuild_after_emit(n);
        Ok(Arc::new(Int64Array::from(take_front(
            &mut self.counts,
            emit_to,
        ))))
    }

    fn size(&self) -> usize {
        self.pair_groups.capacity() * 4
            + self.pair_values.size()
            + self.pair_hashes.capacity() * 8
            + self.table.allocation_size()
            + self.counts.capacity() * 8
    }
}

// ---------------------------------------------------------------------------------------------
// APPROX_COUNT_DISTINCT

/// HyperLogLog precision: 2^10 registers of one byte per group.
pub const HLL_PRECISION: u32 = 10;
const HLL_REGISTERS: usize = 1 << HLL_PRECISION;
/// Standard error of the estimate: 1.04 / sqrt(2^10) ≈ 3.25%.
pub const HLL_STANDARD_ERROR: f64 = 0.0325;

/// `APPROX_COUNT_DISTINCT(col)`: HyperLogLog with 1024 one-byte registers per group (standard
/// error 3.25%, linear counting for small cardinalities). Merging takes register-wise maxima,
/// so two-phase results equal single-phase results exactly. NULLs are not counted.
pub struct ApproxDistinctAccumulator {
    converter: RowConverter,
    registers: Vec<u8>,
}

impl std::fmt::Debug for ApproxDistinctAccumulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApproxDistinctAccumulator")
            .field("groups", &(self.registers.len() / HLL_REGISTERS))
            .finish()
    }
}

/// SplitMix64's finaliser: spreads the short-key hash over all 64 bits, as HLL needs.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The HyperLogLog estimate of one group's registers.
pub fn hll_estimate(registers: &[u8]) -> f64 {
    let m = registers.len() as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = registers
        .iter()
        .map(|&r| (-(i32::from(r)) as f64).exp2())
        .sum();
    let raw = alpha * m * m / sum;
    let zeros = registers.iter().filter(|&&r| r == 0).count();
    if raw <= 2.5 * m && zeros > 0 {
        m * (m / zeros as f64).ln()
    } else {
        raw
    }
}

impl ApproxDistinctAccumulator {
    /// An approximate distinct count over values of `value_type`.
    pub fn try_new(value_type: &DataType) -> Result<Self> {
        Ok(ApproxDistinctAccumulator {
            converter: RowConverter::new(vec![SortField::new(value_type.clone())])?,
            registers: Vec::new(),
        })
    }

    /// State field: the group's registers.
    pub fn state_fields(name: &str) -> Vec<Field> {
        vec![Field::new(format!("{name}[hll]"), DataType::Binary, false)]
    }

    fn resize(&mut self, groups: usize) {
        huge_pages::resize(&mut self.registers, groups * HLL_REGISTERS, 0);
    }
}

impl GroupsAccumulator for ApproxDistinctAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.resize(total_groups);
        let input = first_input(values)?;
        let nulls = input.logical_nulls();
        let mask = selected_rows(nulls.as_ref(), filter);
        let normalized = crate::group_values::normalize_floats(input)?;
        let rows = self.converter.convert_columns(&[normalized])?;
        let registers = &mut self.registers;
        let mut add = |row: usize| {
            let hash = mix64(hash_bytes(rows.row(row).data()));
            let index = (hash >> (64 - HLL_PRECISION)) as usize;
            // Rank: position of the first 1 in the remaining bits, capped for all-zero bits.
            let rank =
                ((hash << HLL_PRECISION) | (1 << (HLL_PRECISION - 1))).leading_zeros() as u8 + 1;
            let slot = &mut registers[group_ids[row] as usize * HLL_REGISTERS + index];
            *slot = (*slot).max(rank);
        };
        match mask {
            None => (0..input.len()).for_each(&mut add),
            Some(mask) => mask.valid_indices().for_each(&mut add),
        }
        Ok(())
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        self.resize(total_groups);
        let sketches = states
            .first()
            .and_then(|a| a.as_binary_opt::<i32>())
            .ok_or_else(|| QuiverError::Internal("HLL state is not binary".into()))?;
        for (row, &g) in group_ids.iter().enumerate() {
            let sketch = sketches.value(row);
            if sketch.len() != HLL_REGISTERS {
                return Err(QuiverError::Internal(format!(
                    "HLL state of {} bytes, expected {HLL_REGISTERS}",
                    sketch.len()
                )));
            }
            let start = g as usize * HLL_REGISTERS;
            for (mine, &theirs) in self.registers[start..start + HLL_REGISTERS]
                .iter_mut()
                .zip(sketch)
            {
                *mine = (*mine).max(theirs);
            }
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = emit_to.count(self.registers.len() / HLL_REGISTERS);
        let emitted: Vec<u8> = self.registers.drain(..groups * HLL_REGISTERS).collect();
        let array = arrow::array::BinaryArray::from_iter_values(emitted.chunks(HLL_REGISTERS));
        Ok(vec![Arc::new(array)])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = emit_to.count(self.registers.len() / HLL_REGISTERS);
        let emitted: Vec<u8> = self.registers.drain(..groups * HLL_REGISTERS).collect();
        let estimates: Vec<i64> = emitted
            .chunks(HLL_REGISTERS)
            .map(|registers| hll_estimate(registers).round() as i64)
            .collect();
        Ok(Arc::new(Int64Array::from(estimates)))
    }

    fn size(&self) -> usize {
        self.registers.capacity()
    }
}

// ---------------------------------------------------------------------------------------------
// FIRST_VALUE, LAST_VALUE

/// Where each group's pick sits in one batch's `(group, row)` picks, marked by batch (epoch)
/// instead of a per-batch array over all groups: O(rows) per batch.
#[derive(Default)]
struct BatchSlots {
    seen_epoch: Vec<u32>,
    seen_slot: Vec<u32>,
    epoch: u32,
}

impl BatchSlots {
    /// Starts a batch over `total_groups` groups: no group has a pick in it yet.
    fn start_batch(&mut self, total_groups: usize) {
        huge_pages::resize(&mut self.seen_epoch, total_groups, 0);
        huge_pages::resize(&mut self.seen_slot, total_groups, 0);
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.seen_epoch.fill(0);
            self.epoch = 1;
        }
    }

    /// Picks `row` for `group` in `chosen`: appended for the batch's first pick of the group,
    /// else replacing the earlier one when `replace` (kept otherwise).
    fn choose(&mut self, chosen: &mut Vec<(u32, u32)>, group: u32, row: u32, replace: bool) {
        let g = group as usize;
        if self.seen_epoch[g] == self.epoch {
            if replace {
                chosen[self.seen_slot[g] as usize].1 = row;
            }
        } else {
            self.seen_epoch[g] = self.epoch;
            self.seen_slot[g] = chosen.len() as u32;
            chosen.push((group, row));
        }
    }
}

/// `FIRST_VALUE(x)` / `LAST_VALUE(x)`: the value of the first or last row of each group in
/// arrival order (NULL values included; rows failing the FILTER skipped). Picked values are
/// copied into chunks (one `take` per batch) and each group points at its pick; merging keeps
/// the first (or the last) partial state in merge order, so partial states must be merged in
/// arrival order (partitions in input order).
pub struct FirstLastAccumulator {
    first: bool,
    data_type: DataType,
    chunks: Vec<ArrayRef>,
    /// Per group: (chunk, row) of its pick.
    picks: Vec<Option<(u32, u32)>>,
    chunk_rows: usize,
    slots: BatchSlots,
}

impl FirstLastAccumulator {
    /// `FIRST_VALUE` when `first`, else `LAST_VALUE`, over values of `data_type`.
    pub fn new(first: bool, data_type: DataType) -> Self {
        FirstLastAccumulator {
            first,
            data_type,
            chunks: Vec::new(),
            picks: Vec::new(),
            chunk_rows: 0,
            slots: BatchSlots::default(),
        }
    }

    /// State fields: the picked value and whether the group has a pick.
    pub fn state_fields(name: &str, data_type: &DataType) -> Vec<Field> {
        vec![
            Field::new(format!("{name}[value]"), data_type.clone(), true),
            Field::new(format!("{name}[set]"), DataType::Boolean, false),
        ]
    }

    /// Records `(group, row)` picks from `values` (in row order; later picks of a group win).
    fn pick(&mut self, values: &ArrayRef, picks: &[(u32, u32)]) -> Result<()> {
        if picks.is_empty() {
            return Ok(());
        }
        let rows = arrow::array::UInt32Array::from_iter_values(picks.iter().map(|&(_, r)| r));
        let chunk = arrow::compute::take(values.as_ref(), &rows, None)?;
        let chunk_index = self.chunks.len() as u32;
        self.chunk_rows += chunk.len();
        self.chunks.push(chunk);
        for (i, &(group, _)) in picks.iter().enumerate() {
            self.picks[group as usize] = Some((chunk_index, i as u32));
        }
        self.compact_if_sparse()
    }

    /// Rebuilds the chunks from the live picks when most stored values are superseded.
    fn compact_if_sparse(&mut self) -> Result<()> {
        if self.chunk_rows <= 2 * self.picks.len() + 1024 {
            return Ok(());
        }
        let column = self.gather(&self.picks)?;
        self.chunks = vec![column];
        self.chunk_rows = self.picks.len();
        for (group, pick) in self.picks.iter_mut().enumerate() {
            if pick.is_some() {
                *pick = Some((0, group as u32));
            }
        }
        Ok(())
    }

    /// The picked values of `picks` (NULL where a group has none), as one array.
    fn gather(&self, picks: &[Option<(u32, u32)>]) -> Result<ArrayRef> {
        let null = arrow::array::new_null_array(&self.data_type, 1);
        let mut sources: Vec<&dyn Array> = self.chunks.iter().map(|c| c.as_ref()).collect();
        sources.push(null.as_ref());
        let null_source = sources.len() - 1;
        let indices: Vec<(usize, usize)> = picks
            .iter()
            .map(|pick| match pick {
                Some((chunk, row)) => (*chunk as usize, *row as usize),
                None => (null_source, 0),
            })
            .collect();
        Ok(arrow::compute::interleave(&sources, &indices)?)
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<(ArrayRef, Vec<bool>)> {
        let emitted = take_front(&mut self.picks, emit_to);
        let values = self.gather(&emitted)?;
        let set = emitted.iter().map(Option::is_some).collect();
        if self.picks.is_empty() {
            self.chunks.clear();
            self.chunk_rows = 0;
        }
        Ok((values, set))
    }
}

impl GroupsAccumulator for FirstLastAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        let values = first_input(values)?;
        self.picks.resize(total_groups, None);
        let passes = |row: usize| filter.is_none_or(|f| f.is_valid(row) && f.value(row));
        self.slots.start_batch(total_groups);
        let mut chosen: Vec<(u32, u32)> = Vec::new();
        for (row, &group) in group_ids.iter().enumerate() {
            if (self.first && self.picks[group as usize].is_some()) || !passes(row) {
                continue;
            }
            self.slots
                .choose(&mut chosen, group, row as u32, !self.first);
        }
        self.pick(values, &chosen)
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        let [values, set] = states else {
            return Err(QuiverError::Internal(format!(
                "FIRST/LAST state has {} columns, expected 2",
                states.len()
            )));
        };
        let set = set
            .as_boolean_opt()
            .ok_or_else(|| QuiverError::Internal("FIRST/LAST state flag is not boolean".into()))?;
        let flags = BooleanArray::from(
            (0..set.len())
                .map(|i| set.is_valid(i) && set.value(i))
                .collect::<Vec<bool>>(),
        );
        // A state row is one more row in arrival order; rows without a pick are skipped.
        self.update_batch(
            std::slice::from_ref(values),
            group_ids,
            Some(&flags),
            total_groups,
        )
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (values, set) = self.emit(emit_to)?;
        Ok(vec![values, Arc::new(BooleanArray::from(set))])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.emit(emit_to)?.0)
    }

    fn size(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.get_array_memory_size())
            .sum::<usize>()
            + self.picks.capacity() * std::mem::size_of::<Option<(u32, u32)>>()
    }
}

/// `ARG_MAX(value, key)` / `ARG_MIN(value, key)`: each group's `value` at the row with the
/// largest (smallest) `key`, over a `(value, key)` struct column. Rows where either is NULL
/// are skipped, as in DuckDB; of equal keys the first in arrival order wins (partial states
/// merge in input order). Keys of any orderable type compare as `arrow-row` bytes; the best
/// key per group is kept in those bytes, values as [`FirstLastAccumulator`] keeps its picks.
pub struct ArgExtremeAccumulator {
    max: bool,
    key_type: DataType,
    converter: RowConverter,
    /// Per group, the best key so far in row format (empty: none yet).
    best_keys: Vec<Vec<u8>>,
    values: FirstLastAccumulator,
    slots: BatchSlots,
}

impl ArgExtremeAccumulator {
    /// `ARG_MAX` when `max`, else `ARG_MIN`, over a `(value, key)` struct of these types.
    pub fn try_new(max: bool, input_type: &DataType) -> Result<Self> {
        let (value_type, key_type) = Self::value_and_key_types(input_type)?;
        Ok(ArgExtremeAccumulator {
            max,
            converter: RowConverter::new(vec![SortField::new(key_type.clone())])?,
            key_type,
            best_keys: Vec::new(),
            values: FirstLastAccumulator::new(false, value_type),
            slots: BatchSlots::default(),
        })
    }

    /// The value and key types of a `(value, key)` struct input.
    pub fn value_and_key_types(input_type: &DataType) -> Result<(DataType, DataType)> {
        match input_type {
            DataType::Struct(fields) if fields.len() == 2 => {
                Ok((fields[0].data_type().clone(), fields[1].data_type().clone()))
            }
            other => Err(QuiverError::Internal(format!(
                "ARG_MAX / ARG_MIN input {other}; a (value, key) struct is expected"
            ))),
        }
    }

    /// State fields: the value, its key, and whether the group has one.
    pub fn state_fields(name: &str, input_type: &DataType) -> Result<Vec<Field>> {
        let (value_type, key_type) = Self::value_and_key_types(input_type)?;
        Ok(vec![
            Field::new(format!("{name}[value]"), value_type, true),
            Field::new(format!("{name}[key]"), key_type, true),
            Field::new(format!("{name}[set]"), DataType::Boolean, false),
        ])
    }

    /// Takes in rows of `values` and `keys` where `usable` holds.
    fn absorb(
        &mut self,
        values: &ArrayRef,
        keys: &ArrayRef,
        group_ids: &[u32],
        usable: impl Fn(usize) -> bool,
        total_groups: usize,
    ) -> Result<()> {
        self.best_keys.resize(total_groups, Vec::new());
        self.values.picks.resize(total_groups, None);
        let rows = self.converter.convert_columns(std::slice::from_ref(keys))?;
        self.slots.start_batch(total_groups);
        let mut chosen: Vec<(u32, u32)> = Vec::new();
        for (row, &group) in group_ids.iter().enumerate() {
            if !usable(row) || values.is_null(row) || keys.is_null(row) {
                continue;
            }
            let key = rows.row(row);
            let best = &mut self.best_keys[group as usize];
            let better = best.is_empty()
                || if self.max {
                    key.as_ref() > best.as_slice()
                } else {
                    key.as_ref() < best.as_slice()
                };
            if better {
                best.clear();
                best.extend_from_slice(key.as_ref());
                self.slots.choose(&mut chosen, group, row as u32, true);
            }
        }
        self.values.pick(values, &chosen)
    }

    fn emit(&mut self, emit_to: EmitTo) -> Result<(ArrayRef, ArrayRef, Vec<bool>)> {
        let keys = take_front(&mut self.best_keys, emit_to);
        let (values, set) = self.values.emit(emit_to)?;
        // Groups without a key take the row of a NULL key, which decodes as NULL.
        let parser = self.converter.parser();
        let placeholder = self
            .converter
            .convert_columns(&[arrow::array::new_null_array(&self.key_type, 1)])?;
        let rows: Vec<arrow::row::Row<'_>> = keys
            .iter()
            .map(|k| {
                if k.is_empty() {
                    placeholder.row(0)
                } else {
                    parser.parse(k)
                }
            })
            .collect();
        let mut decoded = self.converter.convert_rows(rows)?;
        let keys = decoded.pop().ok_or_else(|| {
            QuiverError::Internal("ARG_MAX / ARG_MIN key decoded to no column".into())
        })?;
        Ok((values, keys, set))
    }
}

impl GroupsAccumulator for ArgExtremeAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        let input = first_input(values)?;
        let pair = input.as_struct_opt().ok_or_else(|| {
            QuiverError::Internal("ARG_MAX / ARG_MIN input is not a struct".into())
        })?;
        let (values, keys) = (Arc::clone(pair.column(0)), Arc::clone(pair.column(1)));
        let passes = |row: usize| filter.is_none_or(|f| f.is_valid(row) && f.value(row));
        self.absorb(&values, &keys, group_ids, passes, total_groups)
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_ids: &[u32],
        total_groups: usize,
    ) -> Result<()> {
        let [values, keys, set] = states else {
            return Err(QuiverError::Internal(format!(
                "ARG_MAX / ARG_MIN state has {} columns, expected 3",
                states.len()
            )));
        };
        let set = set.as_boolean_opt().ok_or_else(|| {
            QuiverError::Internal("ARG_MAX / ARG_MIN state flag is not boolean".into())
        })?;
        let usable = |row: usize| set.is_valid(row) && set.value(row);
        self.absorb(values, keys, group_ids, usable, total_groups)
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let (values, keys, set) = self.emit(emit_to)?;
        Ok(vec![values, keys, Arc::new(BooleanArray::from(set))])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        Ok(self.emit(emit_to)?.0)
    }

    fn size(&self) -> usize {
        self.values.size()
            + self.best_keys.capacity() * std::mem::size_of::<Vec<u8>>()
            + self.best_keys.iter().map(Vec::capacity).sum::<usize>()
    }
}

/// `MODE(x)`: each group's most frequent non-NULL value; of equally frequent ones the smallest
/// in SQL order, so the answer does not depend on arrival order or partitioning. Values count
/// by their `arrow-row` bytes (floats with -0.0 as 0.0 and one NaN, as GROUP BY keys them).
/// The partial state is two lists per group: its distinct values and their counts.
pub struct ModeAccumulator {
    value_type: DataType,
    converter: RowConverter,
    counts: Vec<hashbrown::HashMap<Box<[u8]>, i64>>,
}

impl ModeAccumulator {
    /// MODE over values of `value_type`.
    pub fn try_new(value_type: &DataType) -> Result<Self> {
        Ok(ModeAccumulator {
            value_type: value_type.clone(),
            converter: RowConverter::new(vec![SortField::new(value_type.clone())])?,
            counts: Vec::new(),
        })
    }

    /// State fields: each group's distinct values and their counts, as lists.
    pub fn state_fields(name: &str, value_type: &DataType) -> Vec<Field> {
        let item = |t: DataType| Arc::new(Field::new("item", t, true));
        vec![
            Field::new(
                format!("{name}[values]"),
                DataType::List(item(value_type.clone())),
                true,
            ),
            Field::new(
                format!("{name}[counts]"),
                DataType::List(item(DataType::Int64)),
                true,
            ),
        ]
    }

    /// Values in row format, floats normalised first.
    fn rows(&self, values: &ArrayRef) -> Result<Rows> {
        let normal = |x: f64| {
            if x == 0.0 {
                0.0
            } else if x.is_nan() {
                f64::NAN
            } else {
                x
            }
        };
        let values: ArrayRef = match values.data_type() {
            DataType::Float64 => Arc::new(
                values
                    .as_primitive::<Float64Type>()
                    .unary::<_, Float64Type>(normal),
            ),
            DataType::Float32 => Arc::new(
                values
                    .as_primitive::<arrow::datatypes::Float32Type>()
                    .unary::<_, arrow::datatypes::Float32Type>(|x| normal(f64::from(x)) as f32),
            ),
            _ => Arc::clone(values),
        };
        Ok(self.converter.convert_columns(&[values])?)
    }

    fn add(&mut self, group: u32, value: &[u8], count: i64) {
        let counts = &mut self.counts[group as usize];
        match counts.get_mut(value) {
            Some(n) => *n += count,
            None => {
                counts.insert(value.into(), count);
            }
        }
    }

    /// Decodes row-format values (`None`: NULL) into one array.
    fn decode<'a>(&self, values: impl Iterator<Item = Option<&'a [u8]>>) -> Result<ArrayRef> {
        let null = self
            .converter
            .convert_columns(&[arrow::array::new_null_array(&self.value_type, 1)])?;
        let parser = self.converter.parser();
        let rows: Vec<arrow::row::Row<'_>> = values
            .map(|v| match v {
                Some(bytes) => parser.parse(bytes),
                None => null.row(0),
            })
            .collect();
        self.converter
            .convert_rows(rows)?
            .pop()
            .ok_or_else(|| QuiverError::Internal("MODE values decoded to no column".into()))
    }
}

impl GroupsAccumulator for ModeAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        let values = first_input(values)?;
        self.counts.resize_with(total_groups, Default::default);
        let rows = self.rows(values)?;
        for (row, &group) in group_ids.iter().enumerate() {
            let passes = filter.is_none_or(|f| f.is_valid(row) && f.value(row));
            if passes && values.is_valid(row) {
                self.add(group, rows.row(row).as_ref(), 1);
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
        let [values, counts] = states else {
            return Err(QuiverError::Internal(format!(
                "MODE state has {} columns, expected 2",
                states.len()
            )));
        };
        let (Some(values), Some(counts)) =
            (values.as_list_opt::<i32>(), counts.as_list_opt::<i32>())
        else {
            return Err(QuiverError::Internal("MODE state is not two lists".into()));
        };
        self.counts.resize_with(total_groups, Default::default);
        let rows = self.rows(values.values())?;
        let numbers = counts
            .values()
            .as_primitive_opt::<arrow::datatypes::Int64Type>()
            .ok_or_else(|| QuiverError::Internal("MODE state counts are not BIGINT".into()))?;
        let offsets = values.value_offsets();
        for (state_row, &group) in group_ids.iter().enumerate() {
            if values.is_null(state_row) {
                continue;
            }
            let (start, end) = (offsets[state_row] as usize, offsets[state_row + 1] as usize);
            for item in start..end {
                self.add(group, rows.row(item).as_ref(), numbers.value(item));
            }
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let emitted = take_front(&mut self.counts, emit_to);
        let mut lengths = Vec::with_capacity(emitted.len());
        let mut counts = Vec::new();
        let values = self.decode(emitted.iter().flat_map(|group| {
            lengths.push(group.len());
            counts.extend(group.values().copied());
            group.keys().map(|k| Some(k.as_ref()))
        }))?;
        let item = |t: DataType| Arc::new(Field::new("item", t, true));
        let offsets = OffsetBuffer::from_lengths(lengths);
        Ok(vec![
            Arc::new(ListArray::try_new(
                item(self.value_type.clone()),
                offsets.clone(),
                values,
                None,
            )?),
            Arc::new(ListArray::try_new(
                item(DataType::Int64),
                offsets,
                Arc::new(Int64Array::from(counts)),
                None,
            )?),
        ])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let emitted = take_front(&mut self.counts, emit_to);
        let modes = emitted.iter().map(|group| {
            group
                .iter()
                // Most frequent, then smallest: the maximum of (count, reversed bytes).
                .max_by(|(a, m), (b, n)| m.cmp(n).then_with(|| b.cmp(a)))
                .map(|(bytes, _)| bytes.as_ref())
        });
        self.decode(modes)
    }

    fn size(&self) -> usize {
        self.counts.capacity() * std::mem::size_of::<hashbrown::HashMap<Box<[u8]>, i64>>()
            + self
                .counts
                .iter()
                .map(|group| {
                    group.capacity() * (std::mem::size_of::<(Box<[u8]>, i64)>() + 1)
                        + group.keys().map(|k| k.len()).sum::<usize>()
                })
                .sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `input` over `groups` through two accumulators (the first third and the rest, in
    /// updates of 700 rows), their states merged into a third one, evaluated.
    fn through_two_partitions<A: GroupsAccumulator>(
        fresh: impl Fn() -> A,
        input: &ArrayRef,
        groups: &[u32],
        total_groups: usize,
    ) -> ArrayRef {
        let split = groups.len() / 3;
        let mut parts = [fresh(), fresh()];
        for (part, range) in parts.iter_mut().zip([0..split, split..groups.len()]) {
            for start in range.clone().step_by(700) {
                let end = (start + 700).min(range.end);
                part.update_batch(
                    &[input.slice(start, end - start)],
                    &groups[start..end],
                    None,
                    total_groups,
                )
                .unwrap();
            }
        }
        let mut merged = fresh();
        let ids: Vec<u32> = (0..total_groups as u32).collect();
        for part in &mut parts {
            let state = part.state(EmitTo::All).unwrap();
            merged.merge_batch(&state, &ids, total_groups).unwrap();
        }
        merged.evaluate(EmitTo::All).unwrap()
    }

    /// The row-at-a-time reference's value of `aggregate` (over column 1) per group id.
    fn reference_per_group(
        input: &ArrayRef,
        groups: &[u32],
        aggregate: crate::aggregate::AggregateExpr,
    ) -> Vec<(usize, crate::reference::RefValue)> {
        let batch = arrow::record_batch::RecordBatch::try_from_iter(vec![
            (
                "g",
                Arc::new(arrow::array::UInt32Array::from(groups.to_vec())) as ArrayRef,
            ),
            ("input", Arc::clone(input)),
        ])
        .unwrap();
        crate::reference::aggregate(&[batch], &[0], &[aggregate])
            .unwrap()
            .into_iter()
            .map(|(keys, mut values)| match keys[0] {
                crate::reference::RefValue::Int(g) => (g as usize, values.remove(0)),
                ref other => panic!("{other:?}"),
            })
            .collect()
    }

    /// Random (y, x) pairs with NULLs in either, grouped, through two partitions and a merge,
    /// against the row-at-a-time reference's two-pass sums.
    #[test]
    fn two_variable_statistics_match_the_reference_across_partitions() {
        use crate::aggregate::{AggregateExpr, AggregateFunction};
        use arrow::array::{Decimal128Array, StructArray};
        let mut rng = quiver_core::rng::SplitMix64::new(17);
        let rows = 5_000;
        let groups: Vec<u32> = (0..rows).map(|_| (rng.next_u64() % 40) as u32).collect();
        let ys: ArrayRef = Arc::new(
            (0..rows)
                .map(|_| {
                    let v = rng.next_u64();
                    (v % 10 != 0).then(|| (v % 200_001) as i128 - 100_000)
                })
                .collect::<Decimal128Array>()
                .with_precision_and_scale(12, 2)
                .unwrap(),
        );
        let xs: ArrayRef = Arc::new(
            (0..rows)
                .map(|_| {
                    let v = rng.next_u64();
                    (v % 10 != 1).then(|| (v % 1_000) as f64 / 7.0)
                })
                .collect::<Float64Array>(),
        );
        let input: ArrayRef = Arc::new(StructArray::from(vec![
            (Arc::new(Field::new("y", ys.data_type().clone(), true)), ys),
            (Arc::new(Field::new("x", DataType::Float64, true)), xs),
        ]));
        for kind in [
            CovarianceKind::Corr,
            CovarianceKind::CovarPop,
            CovarianceKind::CovarSamp,
            CovarianceKind::RegrSlope,
            CovarianceKind::RegrIntercept,
            CovarianceKind::RegrR2,
        ] {
            let out =
                through_two_partitions(|| CovarianceAccumulator::new(kind), &input, &groups, 40);
            let out = out.as_primitive::<Float64Type>();
            let aggregate = AggregateExpr::new(AggregateFunction::Covariance(kind), Some(1), "s");
            let expected = reference_per_group(&input, &groups, aggregate);
            assert_eq!(expected.len(), 40);
            for (g, value) in expected {
                match value {
                    crate::reference::RefValue::Float(want) => {
                        let got = out.value(g);
                        assert!(
                            out.is_valid(g) && (got - want).abs() <= 1e-9 * want.abs().max(1e-9),
                            "{kind:?} group {g}: {got} vs {want}"
                        );
                    }
                    crate::reference::RefValue::Null => assert!(out.is_null(g), "{kind:?} {g}"),
                    other => panic!("{other:?}"),
                }
            }
        }
    }

    /// BIT_AND / BIT_OR / BIT_XOR keep the input type, narrow signed results back exactly and
    /// keep all 64 bits of `UInt64`; a group without values is NULL.
    #[test]
    fn bitwise_aggregates_keep_the_input_type() {
        use arrow::array::{Int8Array, UInt64Array};
        let run = |operation, input: ArrayRef, groups: &[u32]| {
            let mut accumulator = BitAccumulator::try_new(operation, input.data_type()).unwrap();
            accumulator.update_batch(&[input], groups, None, 3).unwrap();
            accumulator.evaluate(EmitTo::All).unwrap()
        };
        let small: ArrayRef = Arc::new(Int8Array::from(vec![Some(-1), Some(5), None, Some(-128)]));
        let groups = [0, 0, 1, 2];
        let and = run(BitOperation::And, Arc::clone(&small), &groups);
        assert_eq!(
            and.as_primitive::<arrow::datatypes::Int8Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(5), None, Some(-128)]
        );
        let xor = run(BitOperation::Xor, small, &groups);
        assert_eq!(
            xor.as_primitive::<arrow::datatypes::Int8Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(-6), None, Some(-128)]
        );
        let wide: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX, (1 << 63) | 3, 8, 1]));
        let or = run(BitOperation::Or, wide, &[0, 0, 1, 1]);
        assert_eq!(
            or.as_primitive::<arrow::datatypes::UInt64Type>()
                .iter()
                .collect::<Vec<_>>(),
            vec![Some(u64::MAX), Some(9), None]
        );
        assert!(BitAccumulator::try_new(BitOperation::And, &DataType::Float64).is_err());
    }

    /// Ordered STRING_AGG through two partitions and a merge, against the reference's stable
    /// sort, for every direction and NULL placement, with NULL values and keys and ties.
    #[test]
    fn ordered_string_agg_matches_the_reference_across_partitions() {
        use crate::aggregate::{AggregateExpr, AggregateFunction};
        use arrow::array::StructArray;
        let mut rng = quiver_core::rng::SplitMix64::new(29);
        let rows = 3_000;
        let groups: Vec<u32> = (0..rows).map(|_| (rng.next_u64() % 25) as u32).collect();
        let texts: ArrayRef = Arc::new(
            (0..rows)
                .map(|i| (rng.next_u64() % 9 != 0).then(|| format!("v{i}")))
                .collect::<StringArray>(),
        );
        let keys: ArrayRef = Arc::new(
            (0..rows)
                .map(|_| {
                    let v = rng.next_u64();
                    (v % 7 != 0).then(|| (v % 50) as i64 - 25)
                })
                .collect::<Int64Array>(),
        );
        // DISTINCT aggregates the key itself: many repeats per group.
        let key_texts = cast(&keys, &DataType::Utf8).unwrap();
        let pair = |texts: &ArrayRef| -> ArrayRef {
            Arc::new(StructArray::from(vec![
                (
                    Arc::new(Field::new("y", DataType::Utf8, true)),
                    Arc::clone(texts),
                ),
                (
                    Arc::new(Field::new("x", DataType::Int64, true)),
                    Arc::clone(&keys),
                ),
            ]))
        };
        for (descending, nulls_first, distinct) in [
            (false, false, false),
            (false, true, false),
            (true, true, false),
            (true, false, false),
            (false, false, true),
            (true, true, true),
        ] {
            let fresh = || {
                OrderedStringAggAccumulator::try_new("/", &DataType::Int64, descending, nulls_first)
                    .unwrap()
                    .distinct(distinct)
            };
            let input = pair(if distinct { &key_texts } else { &texts });
            let out = through_two_partitions(fresh, &input, &groups, 25);
            let out = out.as_string::<i32>();
            let function = AggregateFunction::StringAggOrdered {
                descending,
                nulls_first,
                distinct,
            };
            let aggregate = AggregateExpr::new(function, Some(1), "s").with_separator("/");
            let expected = reference_per_group(&input, &groups, aggregate);
            assert_eq!(expected.len(), 25);
            for (g, value) in expected {
                let crate::reference::RefValue::Bytes(want) = value else {
                    panic!("{value:?}")
                };
                assert_eq!(
                    out.value(g).as_bytes(),
                    want.as_slice(),
                    "desc {descending} nulls first {nulls_first}"
                );
                if distinct {
                    let parts: Vec<&str> = out.value(g).split('/').collect();
                    let mut unique = parts.clone();
                    unique.sort_unstable();
                    unique.dedup();
                    assert_eq!(unique.len(), parts.len(), "group {g}: {parts:?}");
                }
            }
        }
    }

    #[test]
    fn two_variable_statistics_are_null_where_postgresql_says() {
        let mut one = CoMoments::default();
        one.add(1.0, 5.0);
        assert_eq!(CovarianceKind::CovarPop.finish(&one), Some(0.0));
        for kind in [
            CovarianceKind::Corr,
            CovarianceKind::CovarSamp,
            CovarianceKind::RegrSlope,
            CovarianceKind::RegrIntercept,
            CovarianceKind::RegrR2,
        ] {
            assert_eq!(kind.finish(&one), None, "{kind:?}");
            assert_eq!(kind.finish(&CoMoments::default()), None, "{kind:?}");
        }
        // y constant, x varying: slope 0, intercept y, R² 1, correlation undefined.
        let mut flat = CoMoments::default();
        flat.add(1.0, 2.0);
        flat.add(3.0, 2.0);
        assert_eq!(CovarianceKind::RegrSlope.finish(&flat), Some(0.0));
        assert_eq!(CovarianceKind::RegrIntercept.finish(&flat), Some(2.0));
        assert_eq!(CovarianceKind::RegrR2.finish(&flat), Some(1.0));
        assert_eq!(CovarianceKind::Corr.finish(&flat), None);
    }

    fn estimate_of(values: Vec<i64>, groups: &[u32]) -> Vec<i64> {
        let mut hll = ApproxDistinctAccumulator::try_new(&DataType::Int64).unwrap();
        let total = groups.iter().max().map_or(0, |&g| g as usize + 1);
        let array: ArrayRef = Arc::new(Int64Array::from(values));
        hll.update_batch(&[array], groups, None, total).unwrap();
        let out = hll.evaluate(EmitTo::All).unwrap();
        out.as_primitive::<arrow::datatypes::Int64Type>()
            .values()
            .to_vec()
    }

    #[test]
    #[cfg_attr(
        feature = "force-hash-collisions",
        ignore = "every hash is 0 under force-hash-collisions, so HyperLogLog cannot estimate"
    )]
    fn estimates_are_within_three_standard_errors() {
        for cardinality in [1_i64, 10, 100, 1_000, 20_000, 200_000] {
            // Every value three times: duplicates must not count.
            let values: Vec<i64> = (0..cardinality * 3)
                .map(|i| (i % cardinality) * 7919)
                .collect();
            let groups = vec![0; values.len()];
            let estimate = estimate_of(values, &groups)[0] as f64;
            let error = (estimate - cardinality as f64).abs() / cardinality as f64;
            assert!(
                error <= 3.0 * HLL_STANDARD_ERROR,
                "{cardinality}: estimate {estimate}"
            );
        }
    }

    #[test]
    fn merged_sketches_equal_one_sketch_exactly() {
        let values: Vec<i64> = (0..30_000).map(|i| i * 31 % 17_000).collect();
        let groups: Vec<u32> = (0..30_000).map(|i| (i % 3) as u32).collect();
        let single = estimate_of(values.clone(), &groups);
        let mut merged = ApproxDistinctAccumulator::try_new(&DataType::Int64).unwrap();
        for half in [0..15_000, 15_000..30_000] {
            let mut part = ApproxDistinctAccumulator::try_new(&DataType::Int64).unwrap();
            let array: ArrayRef = Arc::new(Int64Array::from(values[half.clone()].to_vec()));
            part.update_batch(&[array], &groups[half], None, 3).unwrap();
            let state = part.state(EmitTo::All).unwrap();
            merged.merge_batch(&state, &[0, 1, 2], 3).unwrap();
        }
        let out = merged.evaluate(EmitTo::All).unwrap();
        assert_eq!(
            out.as_primitive::<arrow::datatypes::Int64Type>()
                .values()
                .to_vec(),
            single
        );
        assert_eq!(estimate_of(vec![], &[]), Vec::<i64>::new());
    }
}
