//! The 1BRC aggregate (MIN/AVG/MAX of temperature tenths by station) and its official output.
//!
//! Stations live in a hash table of their own: a row costs one hash of the name's first 16
//! bytes (already loaded by the parser), an index slot, the station's entry and, for names
//! longer than 16 bytes only, a comparison of the rest.
//! Statistics are integers of tenths, so the mean is exact before its one rounding.
//! A name is checked for UTF-8 once, when it is first seen: equal bytes are equally valid, so
//! the parser need not check every line.

use quiver_core::prefix::prefix_words;
use quiver_core::{QuiverError, Result};

use crate::hash::hash_short_words;

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

    #[inline(always)]
    fn add(&mut self, tenths: i16) {
        self.min_tenths = self.min_tenths.min(tenths);
        self.max_tenths = self.max_tenths.max(tenths);
        self.sum_tenths += i64::from(tenths);
        self.count += 1;
    }

    fn merge(&mut self, other: &StationStats) {
        self.min_tenths = self.min_tenths.min(other.min_tenths);
        self.max_tenths = self.max_tenths.max(other.max_tenths);
        self.sum_tenths += other.sum_tenths;
        self.count += other.count;
    }

    /// The mean in tenths, rounded half up (towards positive infinity), as the official
    /// `Math.round(mean * 10.0) / 10.0` does.
    pub fn mean_tenths(&self) -> i64 {
        let count = i128::from(self.count);
        // floor(sum / count + 1/2) = floor((2 * sum + count) / (2 * count)).
        (2 * i128::from(self.sum_tenths) + count).div_euclid(2 * count) as i64
    }
}

/// A station's name prefix, length and statistics.
#[derive(Debug, Clone, Copy)]
struct Entry {
    prefix: [u64; 2],
    /// The name's length; past u32::MAX only a quick filter, as every name over 16 bytes is
    /// compared in full.
    len: u32,
    /// Whether the name is valid UTF-8; measurements of a name that is not are refused.
    utf8: bool,
    stats: StationStats,
}

/// An index slot with no station.
const EMPTY_SLOT: u32 = u32::MAX;

/// Per-station statistics of one partition of the input.
///
/// An open-addressing index of 4-byte station numbers, at most an eighth full, points into
/// the stations in first-appearance order: both stay in L1 for the official 413 stations, where
/// slots holding the statistics inline (and twice as many of them for the same load) did not.
pub struct OneBrcAggregator {
    index: Vec<u32>,
    entries: Vec<Entry>,
    /// Every station's name, concatenated; station `i` spans `name_ends[i - 1]..name_ends[i]`.
    names: Vec<u8>,
    name_ends: Vec<usize>,
    /// Entries whose names are not UTF-8 (kept so that repeats are refused quickly).
    invalid_names: usize,
}

impl std::fmt::Debug for OneBrcAggregator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OneBrcAggregator")
            .field("stations", &self.len())
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
            index: vec![EMPTY_SLOT; 4096],
            entries: Vec::new(),
            names: Vec::new(),
            name_ends: Vec::new(),
            invalid_names: 0,
        }
    }

    fn name(&self, station: usize) -> &[u8] {
        let end = self.name_ends[station];
        let start = match station {
            0 => 0,
            _ => self.name_ends[station - 1],
        };
        &self.names[start..end]
    }

    /// Adds one measurement of the station `name`, whose [`prefix_words`] are `prefix` (the
    /// parser hands them over already loaded). Returns false, adding nothing, when `name` is not
    /// valid UTF-8 (checked the first time a name is seen).
    #[inline(always)]
    #[must_use]
    pub fn add(&mut self, name: &[u8], prefix: [u64; 2], tenths: i16) -> bool {
        debug_assert_eq!(prefix, prefix_words(name));
        match self.find_or_insert(name, prefix, StationStats::new(tenths)) {
            Some(station) => {
                let entry = &mut self.entries[station];
                if entry.utf8 {
                    entry.stats.add(tenths);
                }
                entry.utf8
            }
            None => self.entries.last().is_some_and(|entry| entry.utf8),
        }
    }

    /// The station number of `name`, or `None` after inserting it with `initial` statistics.
    #[inline(always)]
    fn find_or_insert(
        &mut self,
        name: &[u8],
        prefix: [u64; 2],
        initial: StationStats,
    ) -> Option<usize> {
        let len = name.len() as u32;
        let mask = self.index.len() - 1;
        let mut slot = hash_short_words(prefix[0], prefix[1], name.len()) as usize & mask;
        loop {
            let station = self.index[slot];
            if station == EMPTY_SLOT {
                self.insert(slot, name, prefix, initial);
                return None;
            }
            let station = station as usize;
            let entry = &self.entries[station];
            if entry.prefix == prefix
                && entry.len == len
                && (name.len() <= 16 || self.name(station) == name)
            {
                return Some(station);
            }
            slot = (slot + 1) & mask;
        }
    }

    #[cold]
    fn insert(&mut self, slot: usize, name: &[u8], prefix: [u64; 2], stats: StationStats) {
        self.index[slot] = self.entries.len() as u32;
        let utf8 = std::str::from_utf8(name).is_ok();
        self.invalid_names += usize::from(!utf8);
        self.entries.push(Entry {
            prefix,
            len: name.len() as u32,
            utf8,
            stats,
        });
        self.names.extend_from_slice(name);
        self.name_ends.push(self.names.len());
        // At most an eighth full: the first slot probed nearly always decides, so the probe
        // loop's branch predicts (a quarter full left one station in ten a slot away:
        // 100 M rows on 2 threads 0.68-0.70 s -> 0.65-0.67 s).
        if self.entries.len() * 8 > self.index.len() {
            self.grow();
        }
    }

    fn grow(&mut self) {
        self.index = vec![EMPTY_SLOT; self.index.len() * 2];
        let mask = self.index.len() - 1;
        for (station, entry) in self.entries.iter().enumerate() {
            let len = self.name(station).len();
            let mut slot = hash_short_words(entry.prefix[0], entry.prefix[1], len) as usize & mask;
            while self.index[slot] != EMPTY_SLOT {
                slot = (slot + 1) & mask;
            }
            self.index[slot] = station as u32;
        }
    }

    /// Folds another partition's statistics into this one.
    pub fn merge(&mut self, other: &OneBrcAggregator) {
        for (station, entry) in other.entries.iter().enumerate() {
            if !entry.utf8 {
                continue;
            }
            let name = other.name(station);
            if let Some(mine) = self.find_or_insert(name, entry.prefix, entry.stats) {
                self.entries[mine].stats.merge(&entry.stats);
            }
        }
    }

    /// `(station bytes, stats)` in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &StationStats)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.utf8)
            .map(|(station, entry)| (self.name(station), &entry.stats))
    }

    /// Number of stations.
    pub fn len(&self) -> usize {
        self.entries.len() - self.invalid_names
    }

    /// True when no measurement was added.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

    fn add(aggregator: &mut OneBrcAggregator, name: &[u8], tenths: i16) {
        assert!(aggregator.add(name, prefix_words(name), tenths));
    }

    #[test]
    fn matches_a_map_for_many_and_tricky_names() {
        use std::collections::BTreeMap;
        // Names that share 16-byte prefixes, differ only by length or a trailing NUL, are
        // empty or long; enough of them to grow the table several times.
        let mut names: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"\0".to_vec(),
            b"a".to_vec(),
            b"a\0".to_vec(),
            b"sixteen bytes!!!".to_vec(),
            b"sixteen bytes!!!x".to_vec(),
            b"sixteen bytes!!!y".to_vec(),
            b"sixteen bytes!!!xy".to_vec(),
        ];
        names.extend((0..5000).map(|i| format!("station {i}").into_bytes()));
        names.extend((0..500).map(|i| format!("a long shared station prefix {i}").into_bytes()));
        let mut expected: BTreeMap<Vec<u8>, StationStats> = BTreeMap::new();
        let mut parts = [OneBrcAggregator::new(), OneBrcAggregator::new()];
        let mut rng = quiver_core::rng::SplitMix64::new(7);
        for row in 0..60_000 {
            let name = &names[rng.below(names.len() as u64) as usize];
            let tenths = rng.below(1999) as i16 - 999;
            add(&mut parts[row % 2], name, tenths);
            expected
                .entry(name.clone())
                .and_modify(|stats| stats.add(tenths))
                .or_insert(StationStats::new(tenths));
        }
        let [mut merged, other] = parts;
        merged.merge(&other);
        let got: BTreeMap<Vec<u8>, StationStats> = merged
            .iter()
            .map(|(name, stats)| (name.to_vec(), *stats))
            .collect();
        assert_eq!(merged.len(), expected.len());
        assert_eq!(got, expected);
    }

    #[test]
    fn names_that_are_not_utf8_are_refused_every_time() {
        let long_valid = "sixteen bytes!!!é".as_bytes();
        let long_invalid = b"sixteen bytes!!!\xc3";
        let mut a = OneBrcAggregator::new();
        for round in 0..3 {
            assert!(!a.add(b"\xff", prefix_words(b"\xff"), 5), "round {round}");
            assert!(a.add(b"ok", prefix_words(b"ok"), 10));
            assert!(!a.add(long_invalid, prefix_words(long_invalid), 7));
            assert!(a.add(long_valid, prefix_words(long_valid), -10));
        }
        assert_eq!(a.len(), 2);
        let mut b = OneBrcAggregator::new();
        assert!(!b.add(b"\xfe", prefix_words(b"\xfe"), 1));
        assert!(b.add(b"ok", prefix_words(b"ok"), 40));
        a.merge(&b);
        assert_eq!(a.len(), 2);
        assert!(!a.is_empty());
        let got: Vec<(Vec<u8>, i64, u64)> = a
            .iter()
            .map(|(name, stats)| (name.to_vec(), stats.sum_tenths, stats.count))
            .collect();
        assert_eq!(
            got,
            vec![(b"ok".to_vec(), 70, 4), (long_valid.to_vec(), -30, 3)]
        );
        assert_eq!(
            a.format_official().unwrap(),
            "{ok=1.0/1.8/4.0, sixteen bytes!!!é=-1.0/-1.0/-1.0}\n"
        );
        let mut only_invalid = OneBrcAggregator::new();
        assert!(!only_invalid.add(b"\x80", prefix_words(b"\x80"), 0));
        assert!(only_invalid.is_empty());
        assert_eq!(only_invalid.format_official().unwrap(), "{}\n");
    }

    #[test]
    fn formats_the_official_output() {
        let mut a = OneBrcAggregator::new();
        add(&mut a, b"b", 10);
        add(&mut a, b"a", -5);
        let mut b = OneBrcAggregator::new();
        add(&mut b, b"b", 21);
        add(&mut b, b"a", 0);
        a.merge(&b);
        assert_eq!(
            a.format_official().unwrap(),
            "{a=-0.5/-0.2/0.0, b=1.0/1.6/2.1}\n"
        );
        assert_eq!(OneBrcAggregator::new().format_official().unwrap(), "{}\n");
    }
}
