//! Date functions that count, build and format calendar values: `DATE_DIFF`, `MAKE_DATE`,
//! `LAST_DAY`, `STRFTIME`. Every timestamp is read in UTC, as `EXTRACT` and `DATE_TRUNC` read it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Date32Builder, Int64Array, Int64Builder};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use quiver_core::{QuiverError, Result};

use crate::functions::{civil_from_days, days_from_civil, in_utc, integers, strings, TimeField};

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// A date or timestamp column as microseconds since 1970-01-01 UTC (nanoseconds are cut to
/// whole microseconds, toward the past).
fn micros(value: &ArrayRef, function: &str) -> Result<Int64Array> {
    let value = in_utc(value)?;
    let raw = |array: &ArrayRef| -> Result<Int64Array> {
        Ok(cast(array, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone())
    };
    Ok(match value.data_type() {
        DataType::Date32 => {
            let days = cast(&value, &DataType::Int32)?;
            let days = cast(&days, &DataType::Int64)?;
            days.as_primitive::<Int64Type>()
                .unary(|d| d * MICROS_PER_DAY)
        }
        DataType::Date64 => raw(&value)?.unary(|ms| ms * 1_000),
        DataType::Timestamp(unit, _) => {
            let values = raw(&value)?;
            match unit {
                TimeUnit::Second => values.unary(|v| v * 1_000_000),
                TimeUnit::Millisecond => values.unary(|v| v * 1_000),
                TimeUnit::Microsecond => values,
                TimeUnit::Nanosecond => values.unary(|v| v.div_euclid(1_000)),
            }
        }
        DataType::Null => Int64Array::new_null(value.len()),
        other => {
            return Err(QuiverError::Unsupported(format!(
                "{function} of {other}; it takes dates and timestamps"
            )))
        }
    })
}

/// The units `DATE_DIFF` counts in.
pub fn date_diff_unit(field: TimeField) -> Option<TimeField> {
    matches!(
        field,
        TimeField::Year
            | TimeField::Quarter
            | TimeField::Month
            | TimeField::Week
            | TimeField::Day
            | TimeField::Hour
            | TimeField::Minute
            | TimeField::Second
            | TimeField::Millisecond
            | TimeField::Microsecond
            | TimeField::Decade
            | TimeField::Century
            | TimeField::Millennium
    )
    .then_some(field)
}

/// `DATE_DIFF(unit, start, end)` as DuckDB counts it: the number of unit boundaries from
/// `start` to `end` (both cut down to the unit first: 23:59 to 00:01 the next day is one day),
/// except weeks, which are whole periods of seven days between the two days. Negative when
/// `end` is earlier; `BIGINT`.
pub fn date_diff(unit: TimeField, start: &ArrayRef, end: &ArrayRef) -> Result<ArrayRef> {
    if date_diff_unit(unit).is_none() {
        return Err(QuiverError::Unsupported(format!(
            "DATE_DIFF unit {unit:?}; one of year, quarter, month, week, day, hour, minute, \
             second, millisecond, microsecond, decade, century, millennium is expected"
        )));
    }
    let (start, end) = (micros(start, "DATE_DIFF")?, micros(end, "DATE_DIFF")?);
    let ordinal = |v: i64| -> i64 {
        let floor = |per: i64| v.div_euclid(per);
        let months = || {
            let (year, month, _) = civil_from_days(floor(MICROS_PER_DAY));
            year * 12 + month - 1
        };
        let year = || months().div_euclid(12);
        match unit {
            TimeField::Microsecond => v,
            TimeField::Millisecond => floor(1_000),
            TimeField::Second => floor(1_000_000),
            TimeField::Minute => floor(60_000_000),
            TimeField::Hour => floor(3_600_000_000),
            TimeField::Day | TimeField::Week => floor(MICROS_PER_DAY),
            TimeField::Month => months(),
            TimeField::Quarter => months().div_euclid(3),
            TimeField::Year => year(),
            // DuckDB counts these by the year's digits (1999 to 2000 is one century), not by
            // EXTRACT's centuries that start with years ending in 1.
            TimeField::Decade => year().div_euclid(10),
            TimeField::Century => year().div_euclid(100),
            _ => year().div_euclid(1_000),
        }
    };
    let mut out = Int64Builder::with_capacity(start.len());
    for (a, b) in start.iter().zip(end.iter()) {
        match (a, b) {
            (Some(a), Some(b)) => {
                let difference = ordinal(b) - ordinal(a);
                out.append_value(if unit == TimeField::Week {
                    difference / 7
                } else {
                    difference
                });
            }
            _ => out.append_null(),
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `MAKE_DATE(year, month, day)`: a `DATE`; a month or day outside the calendar is an error.
pub fn make_date(year: &ArrayRef, month: &ArrayRef, day: &ArrayRef) -> Result<ArrayRef> {
    let (years, months, days) = (
        integers(year, "MAKE_DATE")?,
        integers(month, "MAKE_DATE")?,
        integers(day, "MAKE_DATE")?,
    );
    let mut out = Date32Builder::with_capacity(years.len());
    for row in 0..years.len() {
        if years.is_null(row) || months.is_null(row) || days.is_null(row) {
            out.append_null();
            continue;
        }
        let (y, m, d) = (years.value(row), months.value(row), days.value(row));
        let valid = (1..=12).contains(&m)
            && d >= 1
            && (-5_000_000..=5_000_000).contains(&y)
            && civil_from_days(days_from_civil(y, m, d)) == (y, m, d);
        let epoch_days = days_from_civil(y, m, d);
        match i32::try_from(epoch_days).ok().filter(|_| valid) {
            Some(days) => out.append_value(days),
            None => {
                return Err(QuiverError::Arithmetic {
                    context: "MAKE_DATE".into(),
                    message: format!("year {y}, month {m}, day {d} is not a date"),
                })
            }
        }
    }
    Ok(Arc::new(out.finish()))
}

/// `LAST_DAY(d)`: the last day of the month of a date or timestamp, as a date.
pub fn last_day(value: &ArrayRef) -> Result<ArrayRef> {
    let instants = micros(value, "LAST_DAY")?;
    let mut out = Date32Builder::with_capacity(instants.len());
    for instant in instants.iter() {
        let Some(instant) = instant else {
            out.append_null();
            continue;
        };
        let (year, month, _) = civil_from_days(instant.div_euclid(MICROS_PER_DAY));
        let (next_year, next_month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        let last = days_from_civil(next_year, next_month, 1) - 1;
        let last = i32::try_from(last).map_err(|_| QuiverError::Arithmetic {
            context: "LAST_DAY".into(),
            message: format!("the month of year {year} is past the date range"),
        })?;
        out.append_value(last);
    }
    Ok(Arc::new(out.finish()))
}

/// A DuckDB / C `strftime` format as `chrono`'s: `%f` is microseconds there (six digits),
/// `%g` milliseconds and `%n` nanoseconds; the other specifiers are the same.
fn chrono_format(format: &str) -> String {
    let mut out = String::with_capacity(format.len() + 4);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('f') => out.push_str("%6f"),
            Some('g') => out.push_str("%3f"),
            Some('n') => out.push_str("%9f"),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// `STRFTIME(t, format)`: a date or timestamp as text in a C `strftime` format (`%Y-%m-%d
/// %H:%M:%S`, `%f` microseconds, `%j` day of the year, `%a` / `%b` English names, ...).
pub fn strftime(value: &ArrayRef, format: &ArrayRef) -> Result<ArrayRef> {
    use std::fmt::Write as _;
    let instants = micros(value, "STRFTIME")?;
    let formats = strings(format, "STRFTIME")?;
    let mut out = arrow::array::StringBuilder::with_capacity(instants.len(), instants.len() * 20);
    let mut translated: Option<(String, String)> = None;
    let mut text = String::new();
    for row in 0..instants.len() {
        if instants.is_null(row) || formats.is_null(row) {
            out.append_null();
            continue;
        }
        let format = formats.value(row);
        if translated.as_ref().is_none_or(|(f, _)| f != format) {
            translated = Some((format.to_string(), chrono_format(format)));
        }
        let pattern = translated.as_ref().map_or("", |(_, c)| c.as_str());
        let v = instants.value(row);
        let instant = chrono::DateTime::from_timestamp_micros(v)
            .ok_or_else(|| {
                QuiverError::Unsupported(format!("STRFTIME of {v} µs: out of chrono's range"))
            })?
            .naive_utc();
        text.clear();
        let items = chrono::format::StrftimeItems::new(pattern);
        if items
            .clone()
            .any(|item| item == chrono::format::Item::Error)
        {
            return Err(QuiverError::Unsupported(format!(
                "STRFTIME format '{format}': an unknown % specifier"
            )));
        }
        write!(text, "{}", instant.format_with_items(items)).map_err(|_| {
            QuiverError::Unsupported(format!(
                "STRFTIME format '{format}' does not apply to this value"
            ))
        })?;
        out.append_value(&text);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Date32Array, StringArray, TimestampMicrosecondArray};

    fn timestamps(values: &[&str]) -> ArrayRef {
        let text: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        cast(&text, &DataType::Timestamp(TimeUnit::Microsecond, None)).unwrap()
    }

    fn dates(values: &[&str]) -> ArrayRef {
        let text: ArrayRef = Arc::new(StringArray::from(values.to_vec()));
        cast(&text, &DataType::Date32).unwrap()
    }

    fn diff(unit: TimeField, a: &ArrayRef, b: &ArrayRef) -> Vec<i64> {
        let d = date_diff(unit, a, b).unwrap();
        d.as_primitive::<Int64Type>().values().to_vec()
    }

    #[test]
    fn date_diff_counts_boundaries_as_duckdb_does() {
        // Each case checked against DuckDB 2.0.1.
        let a = timestamps(&[
            "2024-01-01T10:59:00",
            "2024-01-01T23:59:00",
            "2024-01-01T00:00:00.9",
        ]);
        let b = timestamps(&[
            "2024-01-01T11:01:00",
            "2024-01-02T00:01:00",
            "2024-01-01T00:00:01.1",
        ]);
        assert_eq!(diff(TimeField::Hour, &a, &b), [1, 1, 0]);
        assert_eq!(diff(TimeField::Hour, &b, &a), [-1, -1, 0]);
        assert_eq!(diff(TimeField::Day, &a, &b), [0, 1, 0]);
        assert_eq!(diff(TimeField::Second, &a, &b)[2], 1);
        let a = dates(&[
            "2024-01-06",
            "2024-01-01",
            "2024-01-31",
            "2024-12-31",
            "2024-03-31",
            "2019-12-31",
            "2000-12-31",
        ]);
        let b = dates(&[
            "2024-01-08",
            "2024-01-14",
            "2024-02-01",
            "2025-01-01",
            "2024-04-01",
            "2020-01-01",
            "2001-01-01",
        ]);
        assert_eq!(diff(TimeField::Week, &a, &b), [0, 1, 0, 0, 0, 0, 0]);
        assert_eq!(diff(TimeField::Month, &a, &b), [0, 0, 1, 1, 1, 1, 1]);
        assert_eq!(diff(TimeField::Quarter, &a, &b), [0, 0, 0, 1, 1, 1, 1]);
        assert_eq!(diff(TimeField::Year, &a, &b), [0, 0, 0, 1, 0, 1, 1]);
        assert_eq!(diff(TimeField::Decade, &a, &b), [0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(diff(TimeField::Century, &a, &b), [0; 7]);
        let (a, b) = (dates(&["1999-12-31"]), dates(&["2000-01-01"]));
        assert_eq!(diff(TimeField::Century, &a, &b), [1]);
        assert_eq!(diff(TimeField::Millennium, &a, &b), [1]);
        let t = timestamps(&["2024-01-01T23:00:00", "2024-01-14T00:00:00"]);
        let u = timestamps(&["2024-01-08T01:00:00", "2024-01-01T00:00:00"]);
        assert_eq!(diff(TimeField::Week, &t, &u), [1, -1]);
        // A date against a timestamp; NULL in, NULL out.
        let t = timestamps(&["2024-04-01T05:00:00"]);
        assert_eq!(diff(TimeField::Day, &dates(&["2024-03-31"]), &t), [1]);
        let null: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![None::<i64>]));
        assert!(date_diff(TimeField::Day, &t, &null).unwrap().is_null(0));
        assert!(date_diff(TimeField::DayOfWeek, &t, &t).is_err());
    }

    #[test]
    fn make_date_builds_calendar_dates_only() {
        let int = |v: i64| -> ArrayRef { Arc::new(Int64Array::from(vec![v])) };
        let date = make_date(&int(2024), &int(2), &int(29)).unwrap();
        let days = date
            .as_any()
            .downcast_ref::<Date32Array>()
            .unwrap()
            .value(0);
        assert_eq!(days, 19_782);
        assert!(make_date(&int(2023), &int(2), &int(29)).is_err());
        assert!(make_date(&int(2023), &int(13), &int(1)).is_err());
        assert!(make_date(&int(2023), &int(1), &int(0)).is_err());
    }

    #[test]
    fn strftime_speaks_duckdbs_specifiers() {
        let t = timestamps(&["2024-03-05T07:08:09.123456"]);
        let format: ArrayRef = Arc::new(StringArray::from(vec![
            "%Y/%m/%d %H:%M:%S.%f %j %a %b %A %B %p %I %y %g",
        ]));
        let text = strftime(&t, &format).unwrap();
        assert_eq!(
            text.as_string::<i32>().value(0),
            "2024/03/05 07:08:09.123456 065 Tue Mar Tuesday March AM 07 24 123"
        );
        let format: ArrayRef = Arc::new(StringArray::from(vec!["%d.%m.%Y"]));
        let text = strftime(&dates(&["2024-03-05"]), &format).unwrap();
        assert_eq!(text.as_string::<i32>().value(0), "05.03.2024");
        let bad: ArrayRef = Arc::new(StringArray::from(vec!["%Q"]));
        assert!(strftime(&t, &bad).is_err());
    }
}
