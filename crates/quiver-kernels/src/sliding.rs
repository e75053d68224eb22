//! Holistic window aggregates (`MEDIAN`, `PERCENTILE_CONT`, `COUNT(DISTINCT)`) over frames that
//! only move forward: rows enter at the frame's end and leave at its start, so each row is
//! added and removed once, instead of merging value lists per frame (quadratic for a running
//! `ORDER BY` frame).
//!
//! Percentiles keep a Fenwick tree of counts over the values' ranks and find the k-th value by
//! descending it (O(log n) per step); distinct counts keep a count per distinct value. Results
//! equal the accumulators' (`PercentileAccumulator`, `CountDistinctAccumulator`): the same
//! f64 values, order and interpolation; the same value identity (`arrow-row` bytes, floats
//! normalised).

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use arrow::row::{RowConverter, SortField};
use hashbrown::HashMap;
use quiver_core::{QuiverError, Result};

use crate::more_accumulators::percentile_of_sorted;

/// Whether every frame starts and ends no earlier than the one before it.
pub fn monotone(frames: &[Range<usize>]) -> bool {
    frames
        .windows(2)
        .all(|pair| pair[0].start <= pair[1].start && pair[0].end <= pair[1].end)
}

/// Rows counted: valid and selected by the aggregate's FILTER.
fn counted(values: &ArrayRef, filter: &BooleanArray, row: usize) -> bool {
    values.is_valid(row) && filter.is_valid(row) && filter.value(row)
}

/// Moves a monotone frame forward, calling `cross(row, true)` for each row that enters and
/// `cross(row, false)` for each that leaves.
struct Slider {
    start: usize,
    end: usize,
}

impl Slider {
    fn advance(&mut self, frame: &Range<usize>, mut cross: impl FnMut(usize, bool)) {
        if frame.start >= self.end {
            // Past the held rows: all leave, the new frame's rows enter.
            (self.start..self.end).for_each(|row| cross(row, false));
            (frame.start..frame.end).for_each(|row| cross(row, true));
        } else {
            (self.end..frame.end).for_each(|row| cross(row, true));
            (self.start..frame.start).for_each(|row| cross(row, false));
        }
        self.start = frame.start;
        self.end = frame.end;
    }
}

/// `PERCENTILE_CONT(fraction)` of each frame's counted values, as `Float64` (NULL for a
/// frame without any).
pub fn sliding_percentile(
    values: &ArrayRef,
    filter: &BooleanArray,
    frames: &[Range<usize>],
    fraction: f64,
) -> Result<ArrayRef> {
    check_monotone(frames)?;
    let floats = cast(values, &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>();
    let raw = floats.values();
    // Ranks in the accumulator's order (NaN last).
    let mut order: Vec<usize> = (0..raw.len())
        .filter(|&row| counted(values, filter, row))
        .collect();
    order.sort_by(|&a, &b| crate::reference::sql_float_cmp(raw[a], raw[b]));
    let mut rank_of = vec![usize::MAX; raw.len()];
    for (rank, &row) in order.iter().enumerate() {
        rank_of[row] = rank;
    }
    let mut tree = Fenwick::new(order.len());
    let mut slider = Slider { start: 0, end: 0 };
    let mut results = Vec::with_capacity(frames.len());
    for frame in frames {
        slider.advance(frame, |row, entering| {
            if rank_of[row] != usize::MAX {
                tree.add(rank_of[row], if entering { 1 } else { -1 });
            }
        });
        let held = tree.total();
        results.push(percentile_of_sorted(held, fraction, |k| {
            raw[order[tree.kth(k)]]
        }));
    }
    Ok(Arc::new(Float64Array::from(results)))
}

/// `COUNT(DISTINCT x)` of each frame's counted values, as `Int64`.
pub fn sliding_count_distinct(
    values: &ArrayRef,
    filter: &BooleanArray,
    frames: &[Range<usize>],
) -> Result<ArrayRef> {
    check_monotone(frames)?;
    let normalized = crate::group_values::normalize_floats(values)?;
    let converter = RowConverter::new(vec![SortField::new(values.data_type().clone())])?;
    let rows = converter.convert_columns(std::slice::from_ref(&normalized))?;
    // A dense id per distinct value.
    let mut ids: HashMap<&[u8], usize> = HashMap::new();
    let id_of: Vec<Option<usize>> = (0..values.len())
        .map(|row| {
            counted(values, filter, row).then(|| {
                let next = ids.len();
                *ids.entry(rows.row(row).data()).or_insert(next)
            })
        })
        .collect();
    let mut held = vec![0_u32; ids.len()];
    let mut distinct = 0_i64;
    let mut slider = Slider { start: 0, end: 0 };
    let mut results = Vec::with_capacity(frames.len());
    for frame in frames {
        slider.advance(frame, |row, entering| {
            let Some(id) = id_of[row] else {
                return;
            };
            if entering {
                held[id] += 1;
                if held[id] == 1 {
                    distinct += 1;
                }
            } else {
                held[id] -= 1;
                if held[id] == 0 {
                    distinct -= 1;
                }
            }
        });
        results.push(distinct);
    }
    Ok(Arc::new(Int64Array::from(results)))
}

fn check_monotone(frames: &[Range<usize>]) -> Result<()> {
    if monotone(frames) {
        Ok(())
    } else {
        Err(QuiverError::Internal(
            "sliding aggregate over frames that move backwards".into(),
        ))
    }
}

/// Counts per rank, with prefix sums and k-th lookup in O(log n).
struct Fenwick {
    tree: Vec<i64>,
    total: i64,
}

impl Fenwick {
    fn new(size: usize) -> Self {
        Fenwick {
            tree: vec![0; size + 1],
            total: 0,
        }
    }

    fn add(&mut self, index: usize, delta: i64) {
        self.total += delta;
        let mut i = index + 1;
        while i < self.tree.len() {
            self.tree[i] += delta;
            i += i & i.wrapping_neg();
        }
    }

    fn total(&self) -> usize {
        usize::try_from(self.total).unwrap_or(0)
    }

    /// The rank of the `k`-th held value (0-based), `k < total()`.
    fn kth(&self, k: usize) -> usize {
        let mut position = 0;
        let mut remaining = k as i64;
        let mut step = (self.tree.len().max(1)).next_power_of_two();
        while step > 0 {
            let next = position + step;
            if next < self.tree.len() && self.tree[next] <= remaining {
                position = next;
                remaining -= self.tree[next];
            }
            step /= 2;
        }
        position
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::more_accumulators::percentile_cont;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Frames as a running or sliding window over partitions of random lengths.
    fn random_frames(rng: &mut StdRng, rows: usize) -> Vec<Range<usize>> {
        let (preceding, following) = (rng.gen_range(0..6), rng.gen_range(0..4));
        let running = rng.gen_bool(0.3);
        let mut frames = Vec::new();
        let mut partition_start = 0;
        while partition_start < rows {
            let end = (partition_start + rng.gen_range(1..40)).min(rows);
            for row in partition_start..end {
                let start = if running {
                    partition_start
                } else {
                    row.saturating_sub(preceding).max(partition_start)
                };
                frames.push(start..(row + 1 + following).min(end));
            }
            partition_start = end;
        }
        frames
    }

    #[test]
    fn sliding_results_equal_recomputing_each_frame() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..200 {
            let rows = rng.gen_range(0..120);
            let values: Vec<Option<f64>> = (0..rows)
                .map(|_| match rng.gen_range(0..10) {
                    0 => None,
                    1 => Some(f64::NAN),
                    2 => Some(-0.0),
                    3 => Some(0.0),
                    _ => Some(f64::from(rng.gen_range(-5..5)) / 2.0),
                })
                .collect();
            let filter: BooleanArray = (0..rows).map(|_| Some(rng.gen_bool(0.8))).collect();
            let array: ArrayRef = Arc::new(Float64Array::from(values.clone()));
            let frames = random_frames(&mut rng, rows);
            assert!(monotone(&frames));
            let fraction = [0.0, 0.25, 0.5, 0.9, 1.0][rng.gen_range(0..5)];
            let percentiles = sliding_percentile(&array, &filter, &frames, fraction).unwrap();
            let distinct = sliding_count_distinct(&array, &filter, &frames).unwrap();
            for (i, frame) in frames.iter().enumerate() {
                let mut held: Vec<f64> = frame
                    .clone()
                    .filter(|&r| filter.value(r))
                    .filter_map(|r| values[r])
                    .collect();
                held.sort_by(|a, b| crate::reference::sql_float_cmp(*a, *b));
                let expected = percentile_cont(&held, fraction);
                let got = percentiles.as_primitive::<Float64Type>();
                let got = got.is_valid(i).then(|| got.value(i));
                assert_eq!(
                    got.map(f64::to_bits),
                    expected.map(f64::to_bits),
                    "frame {frame:?} of {values:?}"
                );
                let mut keys: Vec<u64> = held
                    .iter()
                    .map(|v| if v.is_nan() { f64::NAN } else { *v + 0.0 }.to_bits())
                    .collect();
                keys.sort_unstable();
                keys.dedup();
                let counts = distinct.as_primitive::<arrow::datatypes::Int64Type>();
                assert_eq!(counts.value(i), keys.len() as i64, "frame {frame:?}");
            }
        }
    }

    #[test]
    fn frames_moving_backwards_are_detected() {
        assert!(monotone(&[0..2, 0..3, 1..3, 3..3, 3..5]));
        assert!(!monotone(&[0..3, 1..2]));
        assert!(!monotone(&[1..3, 0..4]));
    }
}
