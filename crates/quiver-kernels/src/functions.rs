//! Scalar SQL functions over whole arrays: strings (`UPPER`, `LOWER`, `LENGTH`, `SUBSTRING`,
//! `CONCAT`, `||`, `TRIM`, and those of [`crate::string_functions`]), date/time (`EXTRACT`,
//! `DATE_TRUNC`), `ABS` and the numeric functions of [`crate::math`].
//!
//! Strings are Unicode-aware: `LENGTH` counts characters and `SUBSTRING` positions are
//! 1-based characters, as in PostgreSQL. `CONCAT` skips NULLs; `||` is NULL when an operand is.
//! Date/time functions read timestamps in UTC (time zones are fixed offsets; truncation happens
//! on the UTC clock) and keep the input's type and unit.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, PrimitiveArray, StringArray, StringBuilder,
};
use arrow::compute::kernels::temporal::{date_part, DatePart};
use arrow::compute::{cast, kernels::numeric};
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use quiver_core::{QuiverError, Result};

use crate::math::{FloatFunction, Rounding};
use crate::string_functions::StringFunction;

/// Which side `TRIM` strips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrimSide {
    /// Both ends (`TRIM(s)`, `BTRIM`).
    Both,
    /// The start (`LTRIM`, `TRIM(LEADING ...)`).
    Leading,
    /// The end (`RTRIM`, `TRIM(TRAILING ...)`).
    Trailing,
}

/// Fields `EXTRACT` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeField {
    /// Calendar year.
    Year,
    /// Quarter, 1..=4.
    Quarter,
    /// Month, 1..=12.
    Month,
    /// ISO week, 1..=53.
    Week,
    /// Day of the month, 1..=31.
    Day,
    /// Day of the week, Sunday = 0 (PostgreSQL `DOW`).
    DayOfWeek,
    /// Day of the year, 1..=366.
    DayOfYear,
    /// Hour, 0..=23.
    Hour,
    /// Minute, 0..=59.
    Minute,
    /// Second, 0..=59 (whole seconds).
    Second,
    /// Milliseconds within the minute, including seconds (PostgreSQL).
    Millisecond,
    /// Microseconds within the minute, including seconds (PostgreSQL).
    Microsecond,
    /// Seconds since the epoch, with the fraction, as a double.
    Epoch,
    /// ISO day of the week, Monday = 1 .. Sunday = 7 (`ISODOW`).
    IsoDayOfWeek,
    /// ISO 8601 week-numbering year (`ISOYEAR`).
    IsoYear,
    /// Year / 10 (`DECADE`).
    Decade,
    /// Century: 2000 is in the 20th, 2001 in the 21st (`CENTURY`).
    Century,
    /// Millennium: 2000 is in the 2nd, 2001 in the 3rd (`MILLENNIUM`).
    Millennium,
}

impl TimeField {
    /// Parses an `EXTRACT` / `DATE_PART` field name (case-insensitive; PostgreSQL's plurals and
    /// abbreviations).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "y" | "yr" | "yrs" | "year" | "years" => TimeField::Year,
            "qtr" | "quarter" | "quarters" => TimeField::Quarter,
            "mon" | "mons" | "month" | "months" => TimeField::Month,
            "w" | "week" | "weeks" => TimeField::Week,
            "d" | "day" | "days" => TimeField::Day,
            "dow" | "dayofweek" => TimeField::DayOfWeek,
            "isodow" => TimeField::IsoDayOfWeek,
            "doy" | "dayofyear" => TimeField::DayOfYear,
            "h" | "hr" | "hrs" | "hour" | "hours" => TimeField::Hour,
            "m" | "min" | "mins" | "minute" | "minutes" => TimeField::Minute,
            "s" | "sec" | "secs" | "second" | "seconds" => TimeField::Second,
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => TimeField::Millisecond,
            "us" | "usec" | "usecs" | "microsecond" | "microseconds" => TimeField::Microsecond,
            "epoch" => TimeField::Epoch,
            "isoyear" => TimeField::IsoYear,
            "dec" | "decade" | "decades" => TimeField::Decade,
            "c" | "cent" | "century" | "centuries" => TimeField::Century,
            "mil" | "millennium" | "millennia" | "millenniums" => TimeField::Millennium,
            _ => return None,
        })
    }
}

/// Units `DATE_TRUNC` rounds down to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruncUnit {
    /// Millisecond.
    Millisecond,
    /// Second.
    Second,
    /// Minute.
    Minute,
    /// Hour.
    Hour,
    /// Day (UTC midnight).
    Day,
    /// ISO week (Monday).
    Week,
    /// First day of the month.
    Month,
    /// First day of the quarter.
    Quarter,
    /// January 1st.
    Year,
}

impl TruncUnit {
    /// Parses a `DATE_TRUNC` unit name (case-insensitive, singular or plural).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.to_ascii_lowercase();
        Some(match name.trim_end_matches('s') {
            "millisecond" => TruncUnit::Millisecond,
            "second" => TruncUnit::Second,
            "minute" => TruncUnit::Minute,
            "hour" => TruncUnit::Hour,
            "day" => TruncUnit::Day,
            "week" => TruncUnit::Week,
            "month" => TruncUnit::Month,
            "quarter" => TruncUnit::Quarter,
            "year" => TruncUnit::Year,
            _ => return None,
        })
    }
}

/// A scalar function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarFunction {
    /// `UPPER(s)`.
    Upper,
    /// `LOWER(s)`.
    Lower,
    /// `LENGTH(s)` / `CHAR_LENGTH(s)`: characters.
    Length,
    /// `SUBSTRING(s FROM start [FOR length])`, 1-based characters.
    Substring,
    /// `CONCAT(a, b, ...)`: NULLs count as empty.
    Concat,
    /// `a || b`: NULL when either is.
    ConcatOperator,
    /// `TRIM`, `LTRIM`, `RTRIM` (spaces, or the characters of a second argument).
    Trim(TrimSide),
    /// `EXTRACT(field FROM t)`.
    Extract(TimeField),
    /// `DATE_TRUNC(unit, t)`.
    DateTrunc(TruncUnit),
    /// `ABS(x)` (checked: `ABS` of the smallest integer is an overflow error).
    Abs,
    /// `ROUND` / `TRUNC` / `FLOOR` / `CEIL` to a constant number of decimal digits.
    Round(Rounding, i32),
    /// `SIGN(x)`.
    Sign,
    /// `SQRT`, `EXP`, `LN`, ... as `DOUBLE`.
    Float(FloatFunction),
    /// `POWER(base, exponent)` as `DOUBLE`.
    Power,
    /// `LOG(base, x)` as `DOUBLE`.
    LogBase,
    /// `REPLACE`, `LEFT`, `LPAD`, `SPLIT_PART`, ...
    Text(StringFunction),
    /// The `(y, x)` struct a two-variable aggregate (`CORR(y, x)`) reads; not callable by name.
    Pair,
    /// The value of the query's scalar subquery `i` (typed by a CAST around it); replaced by
    /// the value before the query runs.
    Subquery(usize),
    /// `value IN (subquery i)`; replaced by comparisons with the subquery's values before the
    /// query runs.
    InSubquery(usize),
    /// `EXISTS (subquery i)`; replaced by its truth before the query runs.
    ExistsSubquery(usize),
    /// `value op ANY (subquery)` (`op ALL` when `all`) for a comparison `op`; replaced by
    /// comparisons with the subquery's least and greatest values before the query runs.
    QuantifiedSubquery {
        /// The subquery's index.
        index: usize,
        /// The comparison.
        op: crate::expr::BinaryOp,
        /// `ALL` rather than `ANY`.
        all: bool,
    },
    /// `GREATEST(a, b, ...)`: the largest non-NULL argument (NULL when all are).
    Greatest,
    /// `CONCAT_WS(separator, a, b, ...)`: the non-NULL arguments joined by the separator
    /// (NULL when the separator is).
    ConcatWs,
    /// `ATAN2(y, x)` as `DOUBLE`.
    Atan2,
    /// `ISNAN`, `ISINF`, `ISFINITE`.
    FloatTest(crate::math::FloatTest),
    /// `GCD(a, b)` (false) / `LCM(a, b)` (true) of integers.
    GcdLcm(bool),
    /// `DATE_DIFF(unit, start, end)`.
    DateDiff(TimeField),
    /// `MAKE_DATE(year, month, day)`.
    MakeDate,
    /// `LAST_DAY(d)`: the month's last day, as a date.
    LastDay,
    /// `TIME_BUCKET(width, t [, origin])` (DuckDB's): the start of the bucket of `width` that
    /// holds `t`, buckets counted from `origin` (a second argument of the kernel; by default
    /// 2000-01-03, a Monday, and for month widths 2000-01, whose month alone counts).
    TimeBucket(BucketWidth),
    /// `STRFTIME(t, format)`.
    Strftime,
    /// `LEAST(a, b, ...)`: the smallest non-NULL argument (NULL when all are).
    Least,
    /// `REGEXP_MATCHES`, `REGEXP_REPLACE`, ... and the `~` operators.
    Regex(crate::regex_functions::RegexFunction),
}

pub(crate) fn strings(array: &ArrayRef, function: &str) -> Result<StringArray> {
    match array.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            let utf8 = cast(array, &DataType::Utf8)?;
            Ok(utf8.as_string::<i32>().clone())
        }
        other => Err(QuiverError::Unsupported(format!(
            "{function} of {other}; it takes strings"
        ))),
    }
}

pub(crate) fn integers(array: &ArrayRef, function: &str) -> Result<Int64Array> {
    if array.data_type().is_integer() || array.data_type() == &DataType::Null {
        Ok(cast(array, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .clone())
    } else {
        Err(QuiverError::Unsupported(format!(
            "{function} position of {}; an integer is expected",
            array.data_type()
        )))
    }
}

/// Any value as `Utf8` text for CONCAT: timestamps as CAST(ts AS VARCHAR) prints them, not in
/// Arrow's ISO `T` form.
fn as_text(array: &ArrayRef) -> Result<ArrayRef> {
    match array.data_type() {
        DataType::Timestamp(..) => crate::expr::timestamp_text(array),
        _ => Ok(cast(array, &DataType::Utf8)?),
    }
}

fn map_strings(input: &StringArray, f: impl Fn(&str) -> String) -> ArrayRef {
    let mut builder = StringBuilder::with_capacity(input.len(), input.value_data().len());
    for value in input.iter() {
        match value {
            Some(s) => builder.append_value(f(s)),
            None => builder.append_null(),
        }
    }
    Arc::new(builder.finish())
}

fn arity(function: ScalarFunction, args: &[ArrayRef], allowed: &[usize]) -> Result<()> {
    if allowed.contains(&args.len()) {
        Ok(())
    } else {
        Err(QuiverError::Unsupported(format!(
            "{function:?} with {} arguments; it takes {allowed:?}",
            args.len()
        )))
    }
}

/// Applies `function` to argument arrays of equal length.
pub fn evaluate(function: ScalarFunction, args: &[ArrayRef]) -> Result<ArrayRef> {
    match function {
        ScalarFunction::Upper | ScalarFunction::Lower => {
            arity(function, args, &[1])?;
            let input = strings(&args[0], "UPPER/LOWER")?;
            Ok(if function == ScalarFunction::Upper {
                map_strings(&input, str::to_uppercase)
            } else {
                map_strings(&input, str::to_lowercase)
            })
        }
        ScalarFunction::Length => {
            arity(function, args, &[1])?;
            let input = strings(&args[0], "LENGTH")?;
            Ok(Arc::new(
                input
                    .iter()
                    .map(|v| v.map(|s| s.chars().count() as i64))
                    .collect::<Int64Array>(),
            ))
        }
        ScalarFunction::Substring => {
            arity(function, args, &[2, 3])?;
            let input = strings(&args[0], "SUBSTRING")?;
            let starts = integers(&args[1], "SUBSTRING")?;
            let lengths = args.get(2).map(|a| integers(a, "SUBSTRING")).transpose()?;
            let mut builder = StringBuilder::with_capacity(input.len(), input.value_data().len());
            for row in 0..input.len() {
                let length = match &lengths {
                    Some(l) if l.is_null(row) => None,
                    Some(l) => Some(Some(l.value(row))),
                    None => Some(None),
                };
                if input.is_null(row) || starts.is_null(row) || length.is_none() {
                    builder.append_null();
                    continue;
                }
                let start = starts.value(row);
                let length = length.flatten();
                if length.is_some_and(|l| l < 0) {
                    return Err(QuiverError::Unsupported(
                        "SUBSTRING with a negative length".into(),
                    ));
                }
                // PostgreSQL: characters from `start` (1-based, may be < 1) for `length`.
                let end = length.map(|l| start.saturating_add(l));
                let text: String = input
                    .value(row)
                    .chars()
                    .enumerate()
                    .filter(|(i, _)| {
                        let position = *i as i64 + 1;
                        position >= start && end.is_none_or(|e| position < e)
                    })
                    .map(|(_, c)| c)
                    .collect();
                builder.append_value(text);
            }
            Ok(Arc::new(builder.finish()))
        }
        ScalarFunction::Concat | ScalarFunction::ConcatOperator => {
            if args.is_empty() {
                return Err(QuiverError::Unsupported("CONCAT without arguments".into()));
            }
            let inputs = args.iter().map(as_text).collect::<Result<Vec<_>>>()?;
            let inputs: Vec<&StringArray> = inputs.iter().map(|a| a.as_string::<i32>()).collect();
            let rows = inputs[0].len();
            let mut builder = StringBuilder::with_capacity(rows, 0);
            let mut text = String::new();
            for row in 0..rows {
                text.clear();
                let mut null = false;
                for input in &inputs {
                    if input.is_null(row) {
                        null = true;
                    } else {
                        text.push_str(input.value(row));
                    }
                }
                if null && function == ScalarFunction::ConcatOperator {
                    builder.append_null();
                } else {
                    builder.append_value(&text);
                }
            }
            Ok(Arc::new(builder.finish()))
        }
        ScalarFunction::Trim(side) => {
            arity(function, args, &[1, 2])?;
            let input = strings(&args[0], "TRIM")?;
            let characters = args.get(1).map(|a| strings(a, "TRIM")).transpose()?;
            let mut builder = StringBuilder::with_capacity(input.len(), input.value_data().len());
            for row in 0..input.len() {
                let set = match &characters {
                    Some(c) if c.is_null(row) => {
                        builder.append_null();
                        continue;
                    }
                    Some(c) => c.value(row),
                    None => " ",
                };
                if input.is_null(row) {
                    builder.append_null();
                    continue;
                }
                let value = input.value(row);
                let strip = |c: char| set.contains(c);
                builder.append_value(match side {
                    TrimSide::Both => value.trim_matches(strip),
                    TrimSide::Leading => value.trim_start_matches(strip),
                    TrimSide::Trailing => value.trim_end_matches(strip),
                });
            }
            Ok(Arc::new(builder.finish()))
        }
        ScalarFunction::Extract(field) => {
            arity(function, args, &[1])?;
            extract(field, &args[0])
        }
        ScalarFunction::DateTrunc(unit) => {
            arity(function, args, &[1])?;
            date_trunc(unit, &args[0])
        }
        ScalarFunction::Abs => {
            arity(function, args, &[1])?;
            let value = &args[0];
            if value.data_type() == &DataType::Null {
                return Ok(Arc::clone(value));
            }
            if !value.data_type().is_numeric() {
                return Err(QuiverError::Unsupported(format!(
                    "ABS of {}; it takes numbers",
                    value.data_type()
                )));
            }
            if value.data_type().is_unsigned_integer() {
                return Ok(Arc::clone(value));
            }
            // |x| = -x where x < 0; negation is checked (the smallest integer overflows).
            let zero = cast(
                &(Arc::new(Int64Array::from(vec![0])) as ArrayRef),
                value.data_type(),
            )?;
            let negative =
                arrow::compute::kernels::cmp::lt(value, &arrow::array::Scalar::new(zero))?;
            let negated =
                numeric::neg(value).map_err(|_| QuiverError::overflow("ABS", value.data_type()))?;
            Ok(arrow::compute::kernels::zip::zip(
                &negative, &negated, value,
            )?)
        }
        ScalarFunction::Round(rounding, digits) => {
            arity(function, args, &[1])?;
            crate::math::round(&args[0], rounding, digits)
        }
        ScalarFunction::Sign => {
            arity(function, args, &[1])?;
            crate::math::sign(&args[0])
        }
        ScalarFunction::Float(float) => {
            arity(function, args, &[1])?;
            crate::math::float_function(float, &args[0])
        }
        ScalarFunction::Power => {
            arity(function, args, &[2])?;
            crate::math::power(&args[0], &args[1])
        }
        ScalarFunction::LogBase => {
            arity(function, args, &[2])?;
            crate::math::log_base(&args[0], &args[1])
        }
        ScalarFunction::Atan2 => {
            arity(function, args, &[2])?;
            crate::math::atan2(&args[0], &args[1])
        }
        ScalarFunction::FloatTest(test) => {
            arity(function, args, &[1])?;
            crate::math::float_test(test, &args[0])
        }
        ScalarFunction::GcdLcm(lcm) => {
            arity(function, args, &[2])?;
            crate::math::gcd_lcm(lcm, &args[0], &args[1])
        }
        ScalarFunction::DateDiff(unit) => {
            arity(function, args, &[2])?;
            crate::calendar::date_diff(unit, &args[0], &args[1])
        }
        ScalarFunction::MakeDate => {
            arity(function, args, &[3])?;
            crate::calendar::make_date(&args[0], &args[1], &args[2])
        }
        ScalarFunction::TimeBucket(width) => {
            arity(function, args, &[1, 2])?;
            time_bucket(width, &args[0], args.get(1))
        }
        ScalarFunction::LastDay => {
            arity(function, args, &[1])?;
            crate::calendar::last_day(&args[0])
        }
        ScalarFunction::Strftime => {
            arity(function, args, &[2])?;
            // DuckDB also takes STRFTIME(format, value).
            let text_first = matches!(
                args[0].data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            );
            if text_first {
                crate::calendar::strftime(&args[1], &args[0])
            } else {
                crate::calendar::strftime(&args[0], &args[1])
            }
        }
        ScalarFunction::ConcatWs => {
            if args.len() < 2 {
                return Err(QuiverError::Unsupported(
                    "CONCAT_WS takes a separator and at least one value".into(),
                ));
            }
            let separators = strings(&args[0], "CONCAT_WS")?;
            let values = args[1..].iter().map(as_text).collect::<Result<Vec<_>>>()?;
            let values: Vec<&StringArray> = values.iter().map(|a| a.as_string::<i32>()).collect();
            let mut builder = StringBuilder::with_capacity(separators.len(), 0);
            let mut text = String::new();
            for row in 0..separators.len() {
                if separators.is_null(row) {
                    builder.append_null();
                    continue;
                }
                text.clear();
                let mut first = true;
                for value in values.iter().filter(|v| v.is_valid(row)) {
                    if !first {
                        text.push_str(separators.value(row));
                    }
                    text.push_str(value.value(row));
                    first = false;
                }
                builder.append_value(&text);
            }
            Ok(Arc::new(builder.finish()))
        }
        ScalarFunction::Text(text) => crate::string_functions::evaluate(text, args),
        ScalarFunction::Regex(regex) => crate::regex_functions::evaluate(regex, args),
        ScalarFunction::Subquery(_)
        | ScalarFunction::InSubquery(_)
        | ScalarFunction::ExistsSubquery(_)
        | ScalarFunction::QuantifiedSubquery { .. } => Err(QuiverError::Internal(format!(
            "{function:?} evaluated before the subquery was computed"
        ))),
        ScalarFunction::Pair => {
            arity(function, args, &[2])?;
            let fields = ["y", "x"]
                .iter()
                .zip(args)
                .map(|(name, a)| arrow::datatypes::Field::new(*name, a.data_type().clone(), true))
                .collect::<Vec<_>>();
            Ok(Arc::new(arrow::array::StructArray::try_new(
                fields.into(),
                args.to_vec(),
                None,
            )?))
        }
        ScalarFunction::Greatest | ScalarFunction::Least => {
            extreme(args, function == ScalarFunction::Greatest)
        }
    }
}

/// `GREATEST` / `LEAST`: the arguments coerced to one type as comparison operands are (exactly),
/// then folded left to right, NULLs skipped; NaN is above every number, as in PostgreSQL.
fn extreme(args: &[ArrayRef], greatest: bool) -> Result<ArrayRef> {
    let name = if greatest { "GREATEST" } else { "LEAST" };
    let Some(first) = args.first() else {
        return Err(QuiverError::Unsupported(format!(
            "{name} without arguments"
        )));
    };
    let mut common = first.data_type().clone();
    for arg in &args[1..] {
        common = crate::expr::coerce(&common, crate::expr::BinaryOp::Eq, arg.data_type()).map_err(
            |_| {
                QuiverError::Unsupported(format!(
                    "{name} of {common} and {}; no common type",
                    arg.data_type()
                ))
            },
        )?;
    }
    let mut result = crate::expr::cast_operand(first, &common)?;
    for arg in &args[1..] {
        let next = crate::expr::cast_operand(arg, &common)?;
        let beats = if greatest {
            arrow::compute::kernels::cmp::gt(&next, &result)?
        } else {
            arrow::compute::kernels::cmp::lt(&next, &result)?
        };
        let take_next: arrow::array::BooleanArray = (0..result.len())
            .map(|row| {
                Some(
                    result.is_null(row)
                        || (next.is_valid(row) && beats.is_valid(row) && beats.value(row)),
                )
            })
            .collect();
        result = arrow::compute::kernels::zip::zip(&take_next, &next, &result)?;
    }
    Ok(result)
}

fn timestamp_unit(array: &ArrayRef, function: &str) -> Result<TimeUnit> {
    match array.data_type() {
        DataType::Timestamp(unit, _) => Ok(*unit),
        other => Err(QuiverError::Unsupported(format!(
            "{function} of {other}; it takes timestamps"
        ))),
    }
}

fn per_second(unit: TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    }
}

/// A timestamp with a time zone as the same instants without one, so that its fields are
/// read in UTC (as every timestamp is, and as `DATE_TRUNC` works); Arrow would read them in the
/// zone's local time.
pub(crate) fn in_utc(value: &ArrayRef) -> Result<ArrayRef> {
    Ok(match value.data_type() {
        DataType::Timestamp(unit, Some(_)) => arrow::array::make_array(
            value
                .to_data()
                .into_builder()
                .data_type(DataType::Timestamp(*unit, None))
                .build()
                .map_err(QuiverError::from)?,
        ),
        _ => Arc::clone(value),
    })
}

fn extract(field: TimeField, value: &ArrayRef) -> Result<ArrayRef> {
    if !matches!(
        value.data_type(),
        DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null
    ) {
        return Err(QuiverError::Unsupported(format!(
            "EXTRACT / DATE_PART of {}; it takes dates and timestamps",
            value.data_type()
        )));
    }
    if value.data_type() == &DataType::Null {
        let data_type = if field == TimeField::Epoch {
            DataType::Float64
        } else {
            DataType::Int64
        };
        return Ok(arrow::array::new_null_array(&data_type, value.len()));
    }
    let value = &in_utc(value)?;
    let year_based = |scale: fn(i64) -> i64| -> Result<ArrayRef> {
        let years = cast(
            &date_part(value.as_ref(), DatePart::Year)?,
            &DataType::Int64,
        )?;
        Ok(Arc::new(
            years
                .as_primitive::<Int64Type>()
                .unary::<_, Int64Type>(scale),
        ))
    };
    let part = match field {
        TimeField::Year => DatePart::Year,
        TimeField::Quarter => DatePart::Quarter,
        TimeField::Month => DatePart::Month,
        TimeField::Week => DatePart::Week,
        TimeField::Day => DatePart::Day,
        TimeField::DayOfWeek => DatePart::DayOfWeekSunday0,
        TimeField::DayOfYear => DatePart::DayOfYear,
        TimeField::Hour => DatePart::Hour,
        TimeField::Minute => DatePart::Minute,
        TimeField::Second => DatePart::Second,
        TimeField::IsoDayOfWeek => DatePart::DayOfWeekMonday1,
        TimeField::IsoYear => DatePart::YearISO,
        TimeField::Decade => return year_based(|y| y.div_euclid(10)),
        // PostgreSQL: year 1 starts the first century; there is no year 0 to count.
        TimeField::Century => {
            return year_based(|y| {
                if y > 0 {
                    (y - 1) / 100 + 1
                } else {
                    y / 100 - 1
                }
            })
        }
        TimeField::Millennium => {
            return year_based(|y| {
                if y > 0 {
                    (y - 1) / 1000 + 1
                } else {
                    y / 1000 - 1
                }
            })
        }
        TimeField::Microsecond => {
            let seconds = cast(
                &date_part(value.as_ref(), DatePart::Second)?,
                &DataType::Int64,
            )?;
            let micros = cast(
                &date_part(value.as_ref(), DatePart::Microsecond)?,
                &DataType::Int64,
            )?;
            let million = Int64Array::new_scalar(1_000_000);
            let whole = numeric::mul(&seconds, &million)?;
            let fraction = numeric::rem(&micros, &million)?;
            return Ok(numeric::add(&whole, &fraction)?);
        }
        TimeField::Millisecond => {
            let seconds = date_part(value.as_ref(), DatePart::Second)?;
            let millis = date_part(value.as_ref(), DatePart::Millisecond)?;
            let seconds = cast(&seconds, &DataType::Int64)?;
            let millis = cast(&millis, &DataType::Int64)?;
            let thousand = Int64Array::new_scalar(1_000);
            let whole = numeric::mul(&seconds, &thousand)?;
            // Arrow's millisecond part is the fraction of the second only.
            let fraction = numeric::rem(&millis, &thousand)?;
            return Ok(numeric::add(&whole, &fraction)?);
        }
        TimeField::Epoch => {
            // A date's epoch is its midnight's (UTC).
            let value = &match value.data_type() {
                DataType::Date32 | DataType::Date64 => {
                    cast(value, &DataType::Timestamp(TimeUnit::Second, None))?
                }
                _ => Arc::clone(value),
            };
            let unit = timestamp_unit(value, "EXTRACT(EPOCH)")?;
            let raw = value.to_data();
            let values: PrimitiveArray<Int64Type> = PrimitiveArray::from(
                raw.into_builder()
                    .data_type(DataType::Int64)
                    .build()
                    .map_err(QuiverError::from)?,
            );
            // Seconds with their fraction, as a double (DuckDB's type; PostgreSQL's numeric).
            let scale = per_second(unit);
            return Ok(Arc::new(values.unary::<_, arrow::datatypes::Float64Type>(
                |v| v.div_euclid(scale) as f64 + v.rem_euclid(scale) as f64 / scale as f64,
            )));
        }
    };
    let result = date_part(value.as_ref(), part)?;
    Ok(cast(&result, &DataType::Int64)?)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The width of a [`ScalarFunction::TimeBucket`]: calendar months, or a fixed span (days are
/// 24 hours, as timestamps are read in UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketWidth {
    /// A positive number of months.
    Months(i32),
    /// A positive number of nanoseconds.
    Nanos(i64),
}

const NANOS_PER_DAY: i128 = 86_400_000_000_000;

/// 2000-01-03T00:00:00 (a Monday) in nanoseconds since the epoch: DuckDB's default origin for
/// buckets of days and time.
const DEFAULT_BUCKET_ORIGIN_NANOS: i128 = 10_959 * NANOS_PER_DAY;

/// Months since year 0 of the instant `nanos` since the epoch (UTC).
fn month_index(nanos: i128) -> Result<i64> {
    let days = i64::try_from(nanos.div_euclid(NANOS_PER_DAY))
        .map_err(|_| QuiverError::overflow("TIME_BUCKET", "Int64"))?;
    let (year, month, _) = civil_from_days(days);
    Ok(year * 12 + month - 1)
}

fn time_bucket(
    width: BucketWidth,
    value: &ArrayRef,
    origin: Option<&ArrayRef>,
) -> Result<ArrayRef> {
    if matches!(value.data_type(), DataType::Date32 | DataType::Date64) {
        // A date buckets to a date, as in DuckDB.
        let timestamps = cast(value, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
        return Ok(cast(
            &time_bucket(width, &timestamps, origin)?,
            value.data_type(),
        )?);
    }
    let time_unit = timestamp_unit(value, "TIME_BUCKET")?;
    let nanos_per_unit = i128::from(1_000_000_000 / per_second(time_unit));
    let raw = as_int64(value)?;
    let origins = origin
        .map(|origin| -> Result<PrimitiveArray<Int64Type>> {
            let origin = match origin.data_type() {
                DataType::Timestamp(..) | DataType::Date32 | DataType::Date64 | DataType::Null => {
                    cast(
                        &in_utc(origin)?,
                        &DataType::Timestamp(TimeUnit::Nanosecond, None),
                    )?
                }
                other => {
                    return Err(QuiverError::Unsupported(format!(
                        "TIME_BUCKET origin of {other}; it takes a timestamp or an interval"
                    )))
                }
            };
            as_int64(&origin)
        })
        .transpose()?;
    let bucket = |value: i64, origin_nanos: Option<i128>| -> Result<i64> {
        let nanos = i128::from(value) * nanos_per_unit;
        let start_nanos = match width {
            BucketWidth::Months(months) => {
                let months = i64::from(months);
                let origin_month = match origin_nanos {
                    Some(origin) => month_index(origin)?,
                    None => 2000 * 12,
                };
                let month =
                    origin_month + (month_index(nanos)? - origin_month).div_euclid(months) * months;
                i128::from(days_from_civil(
                    month.div_euclid(12),
                    month.rem_euclid(12) + 1,
                    1,
                )) * NANOS_PER_DAY
            }
            BucketWidth::Nanos(span) => {
                let origin = origin_nanos.unwrap_or(DEFAULT_BUCKET_ORIGIN_NANOS);
                let span = i128::from(span);
                origin + (nanos - origin).div_euclid(span) * span
            }
        };
        i64::try_from(start_nanos.div_euclid(nanos_per_unit))
            .map_err(|_| QuiverError::overflow("TIME_BUCKET", value_type_name(time_unit)))
    };
    let buckets: PrimitiveArray<Int64Type> = match &origins {
        None => raw.try_unary(|v| bucket(v, None))?,
        Some(origins) => raw
            .iter()
            .zip(origins.iter())
            .map(|(value, origin)| match (value, origin) {
                (Some(value), Some(origin)) => bucket(value, Some(i128::from(origin))).map(Some),
                _ => Ok(None),
            })
            .collect::<Result<_>>()?,
    };
    Ok(cast(&(Arc::new(buckets) as ArrayRef), value.data_type())?)
}

fn value_type_name(unit: TimeUnit) -> String {
    DataType::Timestamp(unit, None).to_string()
}

/// A timestamp array's values as `Int64` (same buffers).
fn as_int64(value: &ArrayRef) -> Result<PrimitiveArray<Int64Type>> {
    Ok(PrimitiveArray::from(
        value
            .to_data()
            .into_builder()
            .data_type(DataType::Int64)
            .build()
            .map_err(QuiverError::from)?,
    ))
}

fn date_trunc(unit: TruncUnit, value: &ArrayRef) -> Result<ArrayRef> {
    if matches!(value.data_type(), DataType::Date32 | DataType::Date64) {
        // A date truncates to a date (DuckDB's type; PostgreSQL's timestamp at midnight).
        let midnight = cast(value, &DataType::Timestamp(TimeUnit::Second, None))?;
        return Ok(cast(&date_trunc(unit, &midnight)?, value.data_type())?);
    }
    let time_unit = timestamp_unit(value, "DATE_TRUNC")?;
    let scale = per_second(time_unit);
    let day = 86_400 * scale;
    let raw = as_int64(value)?;
    let fixed = |size: i64| move |v: i64| v - v.rem_euclid(size);
    let truncated: PrimitiveArray<Int64Type> = match unit {
        TruncUnit::Millisecond => raw.unary(fixed((scale / 1_000).max(1))),
        TruncUnit::Second => raw.unary(fixed(scale)),
        TruncUnit::Minute => raw.unary(fixed(60 * scale)),
        TruncUnit::Hour => raw.unary(fixed(3_600 * scale)),
        TruncUnit::Day => raw.unary(fixed(day)),
        // 1970-01-05 was a Monday.
        TruncUnit::Week => raw.unary(move |v| {
            let shifted = v - 4 * day;
            shifted - shifted.rem_euclid(7 * day) + 4 * day
        }),
        TruncUnit::Month | TruncUnit::Quarter | TruncUnit::Year => raw.unary(move |v| {
            let (year, month, _) = civil_from_days(v.div_euclid(day));
            let month = match unit {
                TruncUnit::Year => 1,
                TruncUnit::Quarter => (month - 1) / 3 * 3 + 1,
                _ => month,
            };
            days_from_civil(year, month, 1) * day
        }),
    };
    Ok(cast(&(Arc::new(truncated) as ArrayRef), value.data_type())?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::TimestampMillisecondArray;

    fn text(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn string_functions_follow_postgres() {
        let s = text(&[Some("  Grüße "), None]);
        let upper = evaluate(ScalarFunction::Upper, std::slice::from_ref(&s)).unwrap();
        assert_eq!(upper.as_string::<i32>().value(0), "  GRÜSSE ");
        assert!(upper.is_null(1));
        let length = evaluate(ScalarFunction::Length, std::slice::from_ref(&s)).unwrap();
        assert_eq!(length.as_primitive::<Int64Type>().value(0), 8);
        let trimmed = evaluate(
            ScalarFunction::Trim(TrimSide::Both),
            std::slice::from_ref(&s),
        )
        .unwrap();
        assert_eq!(trimmed.as_string::<i32>().value(0), "Grüße");
        let two: ArrayRef = Arc::new(Int64Array::from(vec![3, 3]));
        let three: ArrayRef = Arc::new(Int64Array::from(vec![4, 4]));
        let sub = evaluate(ScalarFunction::Substring, &[s.clone(), two, three]).unwrap();
        assert_eq!(sub.as_string::<i32>().value(0), "Grüß");
        let b = text(&[Some("x"), Some("y")]);
        let concat = evaluate(ScalarFunction::Concat, &[s.clone(), b.clone()]).unwrap();
        assert_eq!(concat.as_string::<i32>().value(1), "y");
        let strict = evaluate(ScalarFunction::ConcatOperator, &[s, b]).unwrap();
        assert!(strict.is_null(1));
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-1_000_000_i64, -719_468, -1, 0, 59, 60, 18_000, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{days}");
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
    }

    #[test]
    fn date_trunc_and_extract() {
        // 2026-05-17T13:45:30.250Z
        let t: ArrayRef = Arc::new(
            TimestampMillisecondArray::from(vec![Some(1_779_025_530_250), None])
                .with_timezone("+00:00"),
        );
        let at = |unit| {
            date_trunc(unit, &t)
                .unwrap()
                .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
                .value(0)
        };
        assert_eq!(at(TruncUnit::Minute), 1_779_025_500_000);
        assert_eq!(at(TruncUnit::Day), 1_778_976_000_000);
        assert_eq!(at(TruncUnit::Month), 1_777_593_600_000); // 2026-05-01
        assert_eq!(at(TruncUnit::Year), 1_767_225_600_000); // 2026-01-01
        assert_eq!(at(TruncUnit::Week), 1_778_457_600_000); // Monday 2026-05-11
        let field = |f| extract(f, &t).unwrap().as_primitive::<Int64Type>().value(0);
        assert_eq!(field(TimeField::Year), 2026);
        assert_eq!(field(TimeField::Month), 5);
        assert_eq!(field(TimeField::Hour), 13);
        assert_eq!(field(TimeField::Millisecond), 30_250);
        assert_eq!(field(TimeField::DayOfWeek), 0);
        let epoch = extract(TimeField::Epoch, &t).unwrap();
        assert_eq!(
            epoch
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(0),
            1_779_025_530.25
        );
        // A zoned timestamp's fields are its UTC fields.
        let zoned: ArrayRef = Arc::new(
            TimestampMillisecondArray::from(vec![Some(1_779_025_530_250)]).with_timezone("+05:00"),
        );
        let hour = extract(TimeField::Hour, &zoned).unwrap();
        assert_eq!(hour.as_primitive::<Int64Type>().value(0), 13);
    }
}
