//! Window assignment over whole columns: event times to milliseconds, tumbling windows, hopping
//! panes, and the windows that contain a pane.
//!
//! Bounds are half-open, `[start, end)`, in milliseconds since the epoch. Windows are aligned to
//! `offset_ms` (0 by default): a tumbling window of size `s` starts at every `offset + k·s`.
//! Hopping windows of size `s` and advance `a` are aggregated in panes of `gcd(s, a)`
//! milliseconds, so each row is aggregated once and a window is the merge of its panes.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Date64Type, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType, UInt32Type,
};
use quiver_core::{QuiverError, Result};

/// When windowed results are emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitMode {
    /// One row per window and group, when the window closes (`EMIT FINAL`).
    Final,
    /// After each batch, the current value of every window and group the batch changed
    /// (`EMIT CHANGES`).
    Changes,
}

/// How rows are grouped in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSpec {
    /// No time windows: one running aggregate per group, closed at end of input.
    Global,
    /// Fixed, non-overlapping windows of `size_ms`, aligned to `offset_ms`.
    Tumbling {
        /// Window length.
        size_ms: i64,
        /// Alignment of window starts.
        offset_ms: i64,
    },
    /// Overlapping windows of `size_ms` starting every `advance_ms`, aligned to `offset_ms`.
    Hopping {
        /// Window length.
        size_ms: i64,
        /// Distance between window starts.
        advance_ms: i64,
        /// Alignment of window starts.
        offset_ms: i64,
    },
    /// Per-key sessions: a row extends the key's session when it falls within `gap_ms` of it;
    /// a row that bridges two sessions merges them. A session of rows `t1..tn` spans
    /// `[t1, tn + gap)`.
    Session {
        /// Inactivity gap that ends a session.
        gap_ms: i64,
    },
}

impl WindowSpec {
    /// Checks sizes: positive, and an advance no longer than the window (else rows would fall in
    /// no window).
    pub fn validate(&self) -> Result<()> {
        let positive = |what: &str, value: i64| {
            if value > 0 {
                Ok(())
            } else {
                Err(QuiverError::Config(format!(
                    "window {what} must be positive, found {value} ms"
                )))
            }
        };
        match *self {
            WindowSpec::Global => Ok(()),
            WindowSpec::Tumbling { size_ms, .. } => positive("size", size_ms),
            WindowSpec::Hopping {
                size_ms,
                advance_ms,
                ..
            } => {
                positive("size", size_ms)?;
                positive("advance", advance_ms)?;
                if advance_ms > size_ms {
                    return Err(QuiverError::Config(format!(
                        "hopping window advance ({advance_ms} ms) longer than its size \
                         ({size_ms} ms) would skip rows; use a tumbling window or a shorter advance"
                    )));
                }
                Ok(())
            }
            WindowSpec::Session { gap_ms } => positive("session gap", gap_ms),
        }
    }

    /// The pane length for time windows (tumbling: the size; hopping: gcd of size and advance).
    pub fn pane_ms(&self) -> Option<i64> {
        match *self {
            WindowSpec::Tumbling { size_ms, .. } => Some(size_ms),
            WindowSpec::Hopping {
                size_ms,
                advance_ms,
                ..
            } => Some(gcd(size_ms, advance_ms)),
            WindowSpec::Global | WindowSpec::Session { .. } => None,
        }
    }

    /// `(size, advance, offset)` of time windows.
    fn time_windows(&self) -> Option<(i64, i64, i64)> {
        match *self {
            WindowSpec::Tumbling { size_ms, offset_ms } => Some((size_ms, size_ms, offset_ms)),
            WindowSpec::Hopping {
                size_ms,
                advance_ms,
                offset_ms,
            } => Some((size_ms, advance_ms, offset_ms)),
            WindowSpec::Global | WindowSpec::Session { .. } => None,
        }
    }

    /// Start of the pane holding `time_ms` (time windows only).
    pub fn pane_start(&self, time_ms: i64) -> Result<i64> {
        match (self.pane_ms(), self.time_windows()) {
            (Some(pane), Some((_, _, offset))) => align_down(time_ms, pane, offset),
            _ => Err(QuiverError::Internal(format!("{self:?} has no panes"))),
        }
    }

    /// Starts of the windows containing the pane starting at `pane_start`, latest first.
    pub fn windows_of_pane(&self, pane_start: i64, out: &mut Vec<i64>) -> Result<()> {
        out.clear();
        let Some((size, advance, offset)) = self.time_windows() else {
            return Err(QuiverError::Internal(format!("{self:?} has no panes")));
        };
        let mut start = align_down(pane_start, advance, offset)?;
        // Windows `[start, start + size)` with start <= pane_start < start + size.
        while i128::from(start) + i128::from(size) > i128::from(pane_start) {
            out.push(start);
            match start.checked_sub(advance) {
                Some(previous) => start = previous,
                None => break,
            }
        }
        Ok(())
    }

    /// End of the earliest window containing `time_ms` (time windows only): once the watermark
    /// passes it (plus allowed lateness), a row at `time_ms` is late.
    pub fn earliest_window_end(&self, time_ms: i64) -> Result<i64> {
        let Some((size, advance, offset)) = self.time_windows() else {
            return Err(QuiverError::Internal(format!(
                "{self:?} has no time windows"
            )));
        };
        let latest = i128::from(align_down(time_ms, advance, offset)?);
        let (size, advance) = (i128::from(size), i128::from(advance));
        // The earliest start above time - size, on the advance grid below `latest`.
        let steps = (latest - (i128::from(time_ms) - size) - 1) / advance;
        let earliest = latest - steps * advance;
        to_i64(earliest + size, time_ms)
    }

    /// Length of time windows (None for global and session windows).
    pub fn size_ms(&self) -> Option<i64> {
        self.time_windows().map(|(size, _, _)| size)
    }
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

fn to_i64(value: i128, time_ms: i64) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        QuiverError::Unsupported(format!(
            "event time {time_ms} ms is too close to the end of the timestamp range for its window"
        ))
    })
}

/// The largest `offset + k·step` not above `time_ms`.
pub fn align_down(time_ms: i64, step_ms: i64, offset_ms: i64) -> Result<i64> {
    let shifted = i128::from(time_ms) - i128::from(offset_ms);
    to_i64(
        i128::from(time_ms) - shifted.rem_euclid(i128::from(step_ms)),
        time_ms,
    )
}

/// Whether a column can carry event time: timestamps, dates, or integer milliseconds.
pub fn is_event_time_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(_, _)
            | DataType::Date32
            | DataType::Date64
            | DataType::Int64
            | DataType::Int32
            | DataType::UInt32
    )
}

/// Event times of `column` in milliseconds since the epoch (sub-millisecond units round down),
/// `None` where the value is NULL.
pub fn event_times_ms(column: &ArrayRef, out: &mut Vec<Option<i64>>) -> Result<()> {
    out.clear();
    out.reserve(column.len());
    macro_rules! convert {
        ($t:ty, $f:expr) => {{
            let array = column.as_primitive::<$t>();
            let convert = $f;
            if array.null_count() == 0 {
                out.extend(array.values().iter().map(|&v| Some(convert(v))));
            } else {
                out.extend(array.iter().map(|v| v.map(convert)));
            }
        }};
    }
    match column.data_type() {
        DataType::Timestamp(TimeUnit::Second, _) => {
            convert!(TimestampSecondType, |v: i64| v.saturating_mul(1000))
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            convert!(TimestampMillisecondType, |v: i64| v)
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            convert!(TimestampMicrosecondType, |v: i64| v.div_euclid(1000))
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            convert!(TimestampNanosecondType, |v: i64| v.div_euclid(1_000_000))
        }
        DataType::Date32 => convert!(Date32Type, |v: i32| i64::from(v) * 86_400_000),
        DataType::Date64 => convert!(Date64Type, |v: i64| v),
        DataType::Int64 => convert!(Int64Type, |v: i64| v),
        DataType::Int32 => convert!(Int32Type, i64::from),
        DataType::UInt32 => convert!(UInt32Type, i64::from),
        other => {
            return Err(QuiverError::Unsupported(format!(
                "event time of type {other}; a timestamp, date or integer milliseconds column is \
                 expected"
            )))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMicrosecondArray};
    use std::sync::Arc;

    #[test]
    fn tumbling_panes_align_to_offset_including_negative_times() {
        let spec = WindowSpec::Tumbling {
            size_ms: 60_000,
            offset_ms: 0,
        };
        assert_eq!(spec.pane_start(59_999).unwrap(), 0);
        assert_eq!(spec.pane_start(60_000).unwrap(), 60_000);
        assert_eq!(spec.pane_start(-1).unwrap(), -60_000);
        assert_eq!(spec.earliest_window_end(-1).unwrap(), 0);
        let shifted = WindowSpec::Tumbling {
            size_ms: 10,
            offset_ms: 3,
        };
        assert_eq!(shifted.pane_start(12).unwrap(), 3);
        assert_eq!(shifted.pane_start(13).unwrap(), 13);
    }

    #[test]
    fn hopping_panes_and_windows() {
        let spec = WindowSpec::Hopping {
            size_ms: 10,
            advance_ms: 4,
            offset_ms: 0,
        };
        assert_eq!(spec.pane_ms(), Some(2));
        let mut windows = Vec::new();
        spec.windows_of_pane(8, &mut windows).unwrap();
        assert_eq!(windows, vec![8, 4, 0]);
        spec.windows_of_pane(10, &mut windows).unwrap();
        assert_eq!(windows, vec![8, 4]);
        // Row 10 is in [4,14) and [8,18); the earliest ends at 14.
        assert_eq!(spec.earliest_window_end(10).unwrap(), 14);
        assert_eq!(spec.earliest_window_end(9).unwrap(), 10);
        // Brute force over a range of times.
        for t in -50..50_i64 {
            let containing: Vec<i64> = (-100..100_i64)
                .filter(|s| s.rem_euclid(4) == 0 && *s <= t && t < s + 10)
                .collect();
            let earliest = containing.iter().min().unwrap() + 10;
            assert_eq!(spec.earliest_window_end(t).unwrap(), earliest, "t={t}");
            let pane = spec.pane_start(t).unwrap();
            spec.windows_of_pane(pane, &mut windows).unwrap();
            windows.sort_unstable();
            assert_eq!(windows, containing, "t={t}");
        }
    }

    #[test]
    fn validation_and_extremes_are_errors_not_panics() {
        assert!(WindowSpec::Tumbling {
            size_ms: 0,
            offset_ms: 0
        }
        .validate()
        .is_err());
        assert!(WindowSpec::Hopping {
            size_ms: 5,
            advance_ms: 10,
            offset_ms: 0
        }
        .validate()
        .is_err());
        let spec = WindowSpec::Tumbling {
            size_ms: 1000,
            offset_ms: 0,
        };
        assert!(spec.earliest_window_end(i64::MAX).is_err());
        assert!(spec.pane_start(i64::MIN).is_err());
    }

    #[test]
    fn event_times_convert_units_and_keep_nulls() {
        let micros: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            Some(1_500),
            None,
            Some(-1),
        ]));
        let mut out = Vec::new();
        event_times_ms(&micros, &mut out).unwrap();
        assert_eq!(out, vec![Some(1), None, Some(-1)]);
        let millis: ArrayRef = Arc::new(Int64Array::from(vec![7]));
        event_times_ms(&millis, &mut out).unwrap();
        assert_eq!(out, vec![Some(7)]);
        let text: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["x"]));
        assert!(event_times_ms(&text, &mut out).is_err());
    }
}
