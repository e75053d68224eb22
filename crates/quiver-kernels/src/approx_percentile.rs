//! `APPROX_PERCENTILE`: a DDSketch (logarithmic buckets with a relative-error guarantee) per
//! group.
//!
//! Why DDSketch rather than t-digest or KLL: its state is a set of bucket counts, so merging is
//! addition — the sketch of a group does not depend on batch cuts, partitioning or merge order,
//! and two-phase results equal single-phase results bit for bit, like every exact accumulator.
//!
//! Guarantee: for a fraction `q` over `n` values sorted (NaN last), the result `v` estimates the
//! value `x` of rank `k = floor(q · (n − 1))` with `|v − x| ≤ α·|x|`, `α` =
//! [`RELATIVE_ACCURACY`] (0.5%). The smallest and largest values are exact (the result is
//! clamped to the group's exact minimum and maximum), ±∞ and NaN are exact. The bound holds while
//! the magnitudes of one sign in a group span less than γ^[`MAX_BUCKETS`] ≈ 1.7·10^17; beyond
//! that the buckets of the smallest magnitudes are folded together (the DDSketch "collapsing
//! lowest" store), and only their quantiles lose accuracy.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Float64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type};
use quiver_core::{QuiverError, Result};

use crate::accumulators::{selected_rows, take_front, GroupsAccumulator};
use crate::EmitTo;

/// The relative accuracy `α` of [`ApproxPercentileAccumulator`]: 0.5%.
pub const RELATIVE_ACCURACY: f64 = 0.005;
/// Buckets kept per sign and group before the smallest magnitudes are folded together.
pub const MAX_BUCKETS: i32 = 4096;

/// `ln γ` with `γ = (1 + α) / (1 − α)`: bucket `i` holds magnitudes in `(γ^(i−1), γ^i]`.
/// A literal so that the hot loop does not compute a logarithm of a constant per row.
const LN_GAMMA: f64 = 0.010_000_083_334_583_179;

/// The bucket index of a finite, non-zero magnitude.
pub fn bucket_index(magnitude: f64) -> i32 {
    // |ln| ≤ 745 for every finite non-zero f64, so the index fits an i32 comfortably.
    (magnitude.ln() / LN_GAMMA).ceil() as i32
}

/// The representative magnitude of bucket `index`: `2γ^i / (γ + 1)`, within `α` of every
/// magnitude in `(γ^(i−1), γ^i]`.
pub fn bucket_value(index: i32) -> f64 {
    let gamma = LN_GAMMA.exp();
    2.0 * (f64::from(index) * LN_GAMMA).exp() / (gamma + 1.0)
}

/// The rank [`ApproxPercentileAccumulator`] estimates for `fraction` of `count` values.
pub fn target_rank(fraction: f64, count: u64) -> u64 {
    let rank = (fraction * count.saturating_sub(1) as f64).floor() as u64;
    rank.min(count.saturating_sub(1))
}

/// Bucket counts of one sign, indices `offset..offset + counts.len()`, keeping at most
/// [`MAX_BUCKETS`]: an index below `highest − MAX_BUCKETS + 1` is counted at that index. The
/// final counts equal folding every index at once against the highest one ever seen, which is
/// what makes the store independent of insertion and merge order.
#[derive(Debug, Clone, Default, PartialEq)]
struct BucketStore {
    offset: i32,
    counts: VecDeque<u64>,
}

impl BucketStore {
    fn highest(&self) -> i32 {
        self.offset + self.counts.len() as i32 - 1
    }

    fn add(&mut self, index: i32, count: u64) {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push_back(count);
            return;
        }
        let highest = self.highest().max(index);
        let lowest_kept = highest - MAX_BUCKETS + 1;
        // Grow upwards first, then fold what fell below the kept range into its first bucket.
        while self.highest() < index {
            self.counts.push_back(0);
        }
        if self.offset < lowest_kept {
            let mut folded = 0u64;
            while self.offset < lowest_kept {
                folded += self.counts.pop_front().unwrap_or(0);
                self.offset += 1;
            }
            if let Some(front) = self.counts.front_mut() {
                *front += folded;
            }
        }
        let index = index.max(lowest_kept);
        while index < self.offset {
            self.counts.push_front(0);
            self.offset -= 1;
        }
        self.counts[(index - self.offset) as usize] += count;
    }

    fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn bytes(&self) -> usize {
        self.counts.capacity() * 8
    }
}

/// One group's sketch.
#[derive(Debug, Clone, PartialEq)]
struct Sketch {
    negative: BucketStore,
    positive: BucketStore,
    zeros: u64,
    negative_infinities: u64,
    positive_infinities: u64,
    nans: u64,
    /// Exact extremes of the finite values (`+∞`/`−∞` when there are none).
    min: f64,
    max: f64,
}

impl Default for Sketch {
    fn default() -> Self {
        Sketch {
            negative: BucketStore::default(),
            positive: BucketStore::default(),
            zeros: 0,
            negative_infinities: 0,
            positive_infinities: 0,
            nans: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Sketch {
    fn add(&mut self, value: f64) {
        if value.is_nan() {
            self.nans += 1;
        } else if value == f64::INFINITY {
            self.positive_infinities += 1;
        } else if value == f64::NEG_INFINITY {
            self.negative_infinities += 1;
        } else {
            self.min = self.min.min(value);
            self.max = self.max.max(value);
            if value > 0.0 {
                self.positive.add(bucket_index(value), 1);
            } else if value < 0.0 {
                self.negative.add(bucket_index(-value), 1);
            } else {
                self.zeros += 1;
            }
        }
    }

    fn merge(&mut self, other: &Sketch) {
        for (store, theirs) in [
            (&mut self.negative, &other.negative),
            (&mut self.positive, &other.positive),
        ] {
            for (i, &count) in theirs.counts.iter().enumerate() {
                if count > 0 {
                    store.add(theirs.offset + i as i32, count);
                }
            }
        }
        self.zeros += other.zeros;
        self.negative_infinities += other.negative_infinities;
        self.positive_infinities += other.positive_infinities;
        self.nans += other.nans;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    fn count(&self) -> u64 {
        self.negative.total()
            + self.positive.total()
            + self.zeros
            + self.negative_infinities
            + self.positive_infinities
            + self.nans
    }

    /// The estimate at `fraction`, walking the buckets in value order; NULL when empty.
    fn quantile(&self, fraction: f64) -> Option<f64> {
        let count = self.count();
        if count == 0 {
            return None;
        }
        let rank = target_rank(fraction, count);
        let mut seen = self.negative_infinities;
        if rank < seen {
            return Some(f64::NEG_INFINITY);
        }
        // The first and last finite ranks are the exact extremes; between them a bucket's
        // representative, which never leaves [min, max].
        let finite = count - self.negative_infinities - self.positive_infinities - self.nans;
        let (first_finite, last_finite) = (seen, (seen + finite).saturating_sub(1));
        let clamp = |v: f64| {
            if rank == first_finite {
                self.min
            } else if rank == last_finite {
                self.max
            } else {
                v.clamp(self.min, self.max)
            }
        };
        for (i, &n) in self.negative.counts.iter().enumerate().rev() {
            seen += n;
            if rank < seen {
                return Some(clamp(-bucket_value(self.negative.offset + i as i32)));
            }
        }
        seen += self.zeros;
        if rank < seen {
            return Some(0.0);
        }
        for (i, &n) in self.positive.counts.iter().enumerate() {
            seen += n;
            if rank < seen {
                return Some(clamp(bucket_value(self.positive.offset + i as i32)));
            }
        }
        seen += self.positive_infinities;
        if rank < seen {
            return Some(f64::INFINITY);
        }
        Some(f64::NAN)
    }

    fn bytes(&self) -> usize {
        std::mem::size_of::<Sketch>() + self.negative.bytes() + self.positive.bytes()
    }

    /// Serialised state: six little-endian u64/f64 fields, then each store as
    /// `offset: i32, len: u32, counts: [u64; len]`.
    fn encode(&self, out: &mut Vec<u8>) {
        for n in [
            self.zeros,
            self.negative_infinities,
            self.positive_infinities,
            self.nans,
        ] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(&self.min.to_le_bytes());
        out.extend_from_slice(&self.max.to_le_bytes());
        for store in [&self.negative, &self.positive] {
            out.extend_from_slice(&store.offset.to_le_bytes());
            out.extend_from_slice(&(store.counts.len() as u32).to_le_bytes());
            for n in &store.counts {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
    }

    fn decode(mut bytes: &[u8]) -> Result<Sketch> {
        fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N]> {
            let (head, rest) = bytes.split_first_chunk::<N>().ok_or_else(|| {
                QuiverError::Internal("APPROX_PERCENTILE state is truncated".into())
            })?;
            *bytes = rest;
            Ok(*head)
        }
        let mut sketch = Sketch {
            zeros: u64::from_le_bytes(take(&mut bytes)?),
            negative_infinities: u64::from_le_bytes(take(&mut bytes)?),
            positive_infinities: u64::from_le_bytes(take(&mut bytes)?),
            nans: u64::from_le_bytes(take(&mut bytes)?),
            min: f64::from_le_bytes(take(&mut bytes)?),
            max: f64::from_le_bytes(take(&mut bytes)?),
            ..Sketch::default()
        };
        for negative in [true, false] {
            let offset = i32::from_le_bytes(take(&mut bytes)?);
            let len = u32::from_le_bytes(take(&mut bytes)?) as usize;
            if len > MAX_BUCKETS as usize || bytes.len() < len * 8 {
                return Err(QuiverError::Internal(format!(
                    "APPROX_PERCENTILE state with {len} buckets does not fit its bytes"
                )));
            }
            let mut counts = VecDeque::with_capacity(len);
            for _ in 0..len {
                counts.push_back(u64::from_le_bytes(take(&mut bytes)?));
            }
            let store = BucketStore { offset, counts };
            if negative {
                sketch.negative = store;
            } else {
                sketch.positive = store;
            }
        }
        if !bytes.is_empty() {
            return Err(QuiverError::Internal(
                "APPROX_PERCENTILE state has trailing bytes".into(),
            ));
        }
        Ok(sketch)
    }
}

/// `APPROX_PERCENTILE(x, fraction)`: a mergeable, order-independent quantile sketch per group;
/// see the module documentation for its guarantee. Input: any numeric type (as `f64`); output
/// `Float64`; NULL for a group without values.
#[derive(Debug)]
pub struct ApproxPercentileAccumulator {
    fraction: f64,
    sketches: Vec<Sketch>,
}

impl ApproxPercentileAccumulator {
    /// A sketch per group answering `fraction` in `[0, 1]`.
    pub fn try_new(fraction: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(QuiverError::Config(format!(
                "APPROX_PERCENTILE fraction {fraction} is outside [0, 1]"
            )));
        }
        Ok(ApproxPercentileAccumulator {
            fraction,
            sketches: Vec::new(),
        })
    }

    /// State field: the group's serialised sketch.
    pub fn state_fields(name: &str) -> Vec<Field> {
        vec![Field::new(
            format!("{name}[sketch]"),
            DataType::Binary,
            false,
        )]
    }
}

impl GroupsAccumulator for ApproxPercentileAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_ids: &[u32],
        filter: Option<&BooleanArray>,
        total_groups: usize,
    ) -> Result<()> {
        self.sketches.resize_with(total_groups, Sketch::default);
        let input = values
            .first()
            .ok_or_else(|| QuiverError::Internal("aggregate without an argument".into()))?;
        if !input.data_type().is_numeric() {
            return Err(QuiverError::Unsupported(format!(
                "APPROX_PERCENTILE of {}; it takes numbers",
                input.data_type()
            )));
        }
        let floats = cast(input, &DataType::Float64)?;
        let floats = floats.as_primitive::<Float64Type>();
        let raw = floats.values();
        let sketches = &mut self.sketches;
        let mut add = |row: usize| sketches[group_ids[row] as usize].add(raw[row]);
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
        self.sketches.resize_with(total_groups, Sketch::default);
        let encoded = states
            .first()
            .and_then(|a| a.as_binary_opt::<i32>())
            .ok_or_else(|| QuiverError::Internal("APPROX_PERCENTILE state is not binary".into()))?;
        for (row, &g) in group_ids.iter().enumerate() {
            let theirs = Sketch::decode(encoded.value(row))?;
            self.sketches[g as usize].merge(&theirs);
        }
        Ok(())
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        let groups = take_front(&mut self.sketches, emit_to);
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(groups.len() + 1);
        offsets.push(0usize);
        for sketch in &groups {
            sketch.encode(&mut bytes);
            offsets.push(bytes.len());
        }
        let array = BinaryArray::from_iter_values(offsets.windows(2).map(|w| &bytes[w[0]..w[1]]));
        Ok(vec![Arc::new(array)])
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let groups = take_front(&mut self.sketches, emit_to);
        let results: Float64Array = groups
            .iter()
            .map(|sketch| sketch.quantile(self.fraction))
            .collect();
        Ok(Arc::new(results))
    }

    fn size(&self) -> usize {
        self.sketches.capacity() * std::mem::size_of::<Sketch>()
            + self
                .sketches
                .iter()
                .map(|s| s.bytes() - std::mem::size_of::<Sketch>())
                .sum::<usize>()
    }
}

/// What [`ApproxPercentileAccumulator`] returns for `values` (any order), computed row by row
/// from the definition: the value of rank [`target_rank`] mapped to its bucket's representative
/// (after folding the smallest magnitudes, as the store does), clamped to the exact extremes.
/// The reference implementation and tests use it.
pub fn approx_percentile_of(values: &[f64], fraction: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| crate::reference::sql_float_cmp(*a, *b));
    let rank = target_rank(fraction, sorted.len() as u64) as usize;
    let x = sorted[rank];
    if x == 0.0 {
        return Some(0.0);
    }
    if !x.is_finite() {
        return Some(x);
    }
    let finite: Vec<f64> = sorted.iter().copied().filter(|v| v.is_finite()).collect();
    let first_finite = sorted
        .iter()
        .take_while(|v| **v == f64::NEG_INFINITY)
        .count();
    let (min, max) = (finite[0], finite[finite.len() - 1]);
    if rank == first_finite {
        return Some(min);
    }
    if rank == first_finite + finite.len() - 1 {
        return Some(max);
    }
    // The store of x's sign folds indices below its highest index − MAX_BUCKETS + 1.
    let highest = sorted
        .iter()
        .filter(|v| v.is_finite() && *v != &0.0 && (v.is_sign_negative() == x.is_sign_negative()))
        .map(|v| bucket_index(v.abs()))
        .max()
        .unwrap_or(i32::MIN);
    let index = bucket_index(x.abs()).max(highest - MAX_BUCKETS + 1);
    let magnitude = bucket_value(index);
    let estimate = if x < 0.0 { -magnitude } else { magnitude };
    Some(estimate.clamp(min, max))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sketch_of(values: &[f64]) -> Sketch {
        let mut sketch = Sketch::default();
        values.iter().for_each(|&v| sketch.add(v));
        sketch
    }

    fn exact_at(values: &[f64], fraction: f64) -> f64 {
        let mut sorted = values.to_vec();
        sorted.sort_by(|a, b| crate::reference::sql_float_cmp(*a, *b));
        sorted[target_rank(fraction, sorted.len() as u64) as usize]
    }

    #[test]
    fn the_bucket_constant_matches_the_stated_accuracy() {
        let gamma = (1.0 + RELATIVE_ACCURACY) / (1.0 - RELATIVE_ACCURACY);
        assert!((LN_GAMMA - gamma.ln()).abs() < 1e-15);
    }

    #[test]
    fn estimates_stay_within_the_relative_accuracy() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for case in 0..200 {
            let n = rng.gen_range(1..2000);
            let spread = 10f64.powi(rng.gen_range(-6..12));
            let values: Vec<f64> = (0..n)
                .map(|_| match case % 4 {
                    0 => rng.gen_range(-spread..spread),
                    1 => rng.gen_range(0.0..spread.min(50.0)).exp2(),
                    2 => f64::from(rng.gen_range(-50i32..50)),
                    _ => -rng.gen_range(1.0..1.0 + spread),
                })
                .collect();
            let sketch = sketch_of(&values);
            for fraction in [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0] {
                let estimate = sketch.quantile(fraction).unwrap();
                let exact = exact_at(&values, fraction);
                assert!(
                    (estimate - exact).abs() <= RELATIVE_ACCURACY * exact.abs() * (1.0 + 1e-12),
                    "case {case} q {fraction}: {estimate} vs {exact}"
                );
                assert_eq!(Some(estimate), approx_percentile_of(&values, fraction));
            }
            assert_eq!(sketch.quantile(0.0), Some(exact_at(&values, 0.0)));
            assert_eq!(sketch.quantile(1.0), Some(exact_at(&values, 1.0)));
        }
    }

    #[test]
    fn merging_in_any_order_equals_one_sketch() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let values: Vec<f64> = (0..5000)
            .map(|_| rng.gen_range(-1e6..1e6) * 10f64.powi(rng.gen_range(-30..30)))
            .collect();
        let whole = sketch_of(&values);
        for parts in [2, 3, 7] {
            let mut merged = Sketch::default();
            for chunk in values.chunks(values.len() / parts + 1).rev() {
                let mut bytes = Vec::new();
                sketch_of(chunk).encode(&mut bytes);
                merged.merge(&Sketch::decode(&bytes).unwrap());
            }
            assert_eq!(merged, whole);
        }
    }

    #[test]
    fn wide_ranges_fold_the_smallest_magnitudes_consistently() {
        // Magnitudes from 1e-300 to 1e300 span far more than MAX_BUCKETS buckets.
        let values: Vec<f64> = (-300..=300).map(|e| 10f64.powi(e)).collect();
        let sketch = sketch_of(&values);
        assert!(sketch.positive.counts.len() <= MAX_BUCKETS as usize);
        let reversed: Vec<f64> = values.iter().rev().copied().collect();
        assert_eq!(sketch_of(&reversed), sketch);
        for fraction in [0.0, 0.1, 0.5, 0.9, 1.0] {
            assert_eq!(
                sketch.quantile(fraction),
                approx_percentile_of(&values, fraction)
            );
        }
        // The top of the range keeps its accuracy.
        let high = sketch.quantile(0.999).unwrap();
        let exact = exact_at(&values, 0.999);
        assert!((high - exact).abs() <= RELATIVE_ACCURACY * exact);
    }

    #[test]
    fn special_values_sort_like_the_exact_percentile() {
        let values = [
            f64::NAN,
            1.0,
            f64::NEG_INFINITY,
            0.0,
            -0.0,
            f64::INFINITY,
            -2.0,
        ];
        let sketch = sketch_of(&values);
        assert_eq!(sketch.quantile(0.0), Some(f64::NEG_INFINITY));
        assert!(sketch.quantile(1.0).unwrap().is_nan());
        assert_eq!(sketch.quantile(5.0 / 6.0), Some(f64::INFINITY));
        assert_eq!(sketch.quantile(0.5), Some(0.0));
        assert_eq!(Sketch::default().quantile(0.5), None);
    }

    #[test]
    fn damaged_state_is_an_error() {
        let mut bytes = Vec::new();
        sketch_of(&[1.0, 2.0, 3.0]).encode(&mut bytes);
        for cut in [0, 10, bytes.len() - 1] {
            assert!(Sketch::decode(&bytes[..cut]).is_err());
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Sketch::decode(&longer).is_err());
        assert!(Sketch::decode(&bytes).is_ok());
    }
}
