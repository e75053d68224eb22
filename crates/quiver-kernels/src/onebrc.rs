//! The 1BRC aggregate (MIN/AVG/MAX of temperature tenths by station) and its official output.
//!
//! Stations are interned by the same byte-string group-id mapping as string GROUP BY keys;
//! statistics are integers of tenths, so the mean is exact before its one rounding.

use quiver_core::{QuiverError, Result};

use crate::group_values::BytesGroupValues;

/// Min, max, sum and count of one station, in tenths of a degree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StationStats {
    /// Lowest temperature.
    pub min_tenths: i16,
    /// Highest temperature.
    pub max_tenths: i16,
    /// Sum of temperatures.
    pub sum_tenths: i64,
    /// Number of measurements.
    pub count: u64,
}

impl StationStats {
    fn new(tenths: i16) -> Self {
        StationStats {
            min_tenths: tenths,
            max_tenths: tenths,
            sum_tenths: i64::from(tenths),
            count: 1,
        }
    }

    /// The mean in tenths, rounded half up (towards positive infinity), as the official
    /// `Math.round(mean * 10.0) / 10.0` does.
    pub fn mean_tenths(&self) -> i64 {
        let count = i128::from(self.count);
        // floor(sum / count + 1/2) = floor((2 * sum + count) / (2 * count)).
        (2 * i128::from(self.sum_tenths) + count).div_euclid(2 * count) as i64
    }
}

/// Per-station statistics of one partition of the input.
pub struct OneBrcAggregator {
    stations: BytesGroupValues,
    stats: Vec<StationStats>,
}

impl std::fmt::Debug for OneBrcAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneBrcAggregator")
            .field("stations", &self.stats.len())
            .finish()
    }
}

impl Default for OneBrcAggregator {
    fn default() -> Self {
        Self::new()
    }
}

impl OneBrcAggregator {
    /// An empty aggregate.
    pub fn new() -> Self {
        OneBrcAggregator {
            stations: BytesGroupValues::new(arrow::datatypes::DataType::Utf8, true),
            stats: Vec::new(),
        }
    }

    /// Adds one measurement.
    #[inline]
    pub fn add(&mut self, station: &[u8], tenths: i16) {
        let group = self.stations.intern_key(station) as usize;
        match self.stats.get_mut(group) {
            Some(stats) => {
                stats.min_tenths = stats.min_tenths.min(tenths);
                stats.max_tenths = stats.max_tenths.max(tenths);
                stats.sum_tenths += i64::from(tenths);
                stats.count += 1;
            }
            None => self.stats.push(StationStats::new(tenths)),
        }
    }

    /// Folds another partition's statistics into this one.
    pub fn merge(&mut self, other: &OneBrcAggregator) {
        for (station, stats) in other.iter() {
            let group = self.stations.intern_key(station) as usize;
            match self.stats.get_mut(group) {
                Some(mine) => {
                    mine.min_tenths = mine.min_tenths.min(stats.min_tenths);
                    mine.max_tenths = mine.max_tenths.max(stats.max_tenths);
                    mine.sum_tenths += stats.sum_tenths;
                    mine.count += stats.count;
                }
                None => self.stats.push(*stats),
            }
        }
    }

    /// `(station bytes, stats)` in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &StationStats)> {
        self.stats
            .iter()
            .enumerate()
            .map(|(g, s)| (self.stations.key(g as u32), s))
    }

    /// Number of stations.
    pub fn len(&self) -> usize {
        self.stats.len()
    }

    /// True when no measurement was added.
    pub fn is_empty(&self) -> bool {
        self.stats.is_empty()
    }

    /// The official output: `{name=min/mean/max, ...}` sorted by name (byte order) and a newline.
    pub fn format_official(&self) -> Result<String> {
        let mut rows: Vec<(&str, &StationStats)> = self
            .iter()
            .map(|(name, stats)| {
                std::str::from_utf8(name)
                    .map(|name| (name, stats))
                    .map_err(|e| QuiverError::Internal(format!("station name is not UTF-8: {e}")))
            })
            .collect::<Result<_>>()?;
        rows.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut out = String::with_capacity(rows.len() * 32 + 3);
        out.push('{');
        for (i, (name, stats)) in rows.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(name);
            out.push('=');
            push_tenths(&mut out, i64::from(stats.min_tenths));
            out.push('/');
            push_tenths(&mut out, stats.mean_tenths());
            out.push('/');
            push_tenths(&mut out, i64::from(stats.max_tenths));
        }
        out.push_str("}\n");
        Ok(out)
    }
}

/// Appends `tenths / 10` with exactly one decimal, e.g. `-3.4`, `0.0`.
pub fn push_tenths(out: &mut String, tenths: i64) {
    use std::fmt::Write;
    let sign = if tenths < 0 { "-" } else { "" };
    let magnitude = tenths.unsigned_abs();
    // Writing to a String cannot fail.
    let _ = write!(out, "{sign}{}.{}", magnitude / 10, magnitude % 10);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_rounds_half_up() {
        let stats = |sum, count| StationStats {
            min_tenths: 0,
            max_tenths: 0,
            sum_tenths: sum,
            count,
        };
        assert_eq!(stats(3, 2).mean_tenths(), 2); // 1.5 → 2
        assert_eq!(stats(-3, 2).mean_tenths(), -1); // -1.5 → -1
        assert_eq!(stats(-5, 3).mean_tenths(), -2); // -1.67 → -2
        assert_eq!(stats(10, 4).mean_tenths(), 3); // 2.5 → 3
    }

    #[test]
    fn formats_the_official_output() {
        let mut a = OneBrcAggregator::new();
        a.add(b"b", 10);
        a.add(b"a", -5);
        let mut b = OneBrcAggregator::new();
        b.add(b"b", 21);
        b.add(b"a", 0);
        a.merge(&b);
        assert_eq!(
            a.format_official().unwrap(),
            "{a=-0.5/-0.2/0.0, b=1.0/1.6/2.1}\n"
        );
        assert_eq!(OneBrcAggregator::new().format_official().unwrap(), "{}\n");
    }
}
