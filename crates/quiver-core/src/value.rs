//! `Value`: one exactly-typed field value of a row-shaped record.

use std::fmt;
use std::sync::Arc;

use arrow::datatypes::{DataType, TimeUnit};

/// An exact decimal: `mantissa * 10^-scale`, with at most `precision` digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// The unscaled integer value.
    pub mantissa: i128,
    /// Total number of significant digits the type allows (1..=38).
    pub precision: u8,
    /// Digits after the decimal point.
    pub scale: i8,
}

impl Decimal {
    /// The largest precision an `i128` mantissa holds.
    pub const MAX_PRECISION: u8 = 38;

    /// A decimal with the widest precision.
    pub fn new(mantissa: i128, scale: i8) -> Self {
        Decimal {
            mantissa,
            precision: Self::MAX_PRECISION,
            scale,
        }
    }

    /// The same number with `scale` digits after the point, if that is exact and fits.
    pub fn rescale(&self, scale: i8) -> Option<i128> {
        if scale == self.scale {
            return Some(self.mantissa);
        }
        let diff = i32::from(scale) - i32::from(self.scale);
        if diff >= 0 {
            let factor = 10_i128.checked_pow(diff.unsigned_abs())?;
            self.mantissa.checked_mul(factor)
        } else {
            let factor = 10_i128.checked_pow(diff.unsigned_abs())?;
            (self.mantissa % factor == 0).then_some(self.mantissa / factor)
        }
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_decimal(self.mantissa, self.scale))
    }
}

/// Renders `mantissa * 10^-scale` exactly, e.g. `(-5, 2)` as `-0.05`.
pub fn format_decimal(mantissa: i128, scale: i8) -> String {
    if scale <= 0 {
        let mut text = mantissa.to_string();
        if mantissa != 0 {
            text.extend(std::iter::repeat_n('0', usize::from(scale.unsigned_abs())));
        }
        return text;
    }
    let digits = mantissa.unsigned_abs().to_string();
    let scale = usize::from(scale.unsigned_abs());
    let sign = if mantissa < 0 { "-" } else { "" };
    if digits.len() > scale {
        let (int_part, frac_part) = digits.split_at(digits.len() - scale);
        format!("{sign}{int_part}.{frac_part}")
    } else {
        format!("{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
    }
}

/// A point in time: an integer count of `unit` since the Unix epoch, in an optional time zone.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Timestamp {
    /// Count of `unit` since 1970-01-01T00:00:00Z.
    pub value: i64,
    /// Seconds, milli-, micro- or nanoseconds.
    pub unit: TimeUnit,
    /// IANA name or fixed offset such as `+02:00`; `None` means a zone-less local time.
    pub timezone: Option<Arc<str>>,
}

impl Timestamp {
    /// A UTC timestamp in milliseconds.
    pub fn millis(value: i64) -> Self {
        Timestamp {
            value,
            unit: TimeUnit::Millisecond,
            timezone: Some(Arc::from("+00:00")),
        }
    }

    /// The same instant in `unit`, if it is exact (no truncation) and fits in `i64`.
    pub fn to_unit(&self, unit: TimeUnit) -> Option<i64> {
        let from = unit_exponent(self.unit);
        let to = unit_exponent(unit);
        if to >= from {
            self.value.checked_mul(10_i64.pow(to - from))
        } else {
            let factor = 10_i64.pow(from - to);
            (self.value % factor == 0).then_some(self.value / factor)
        }
    }
}

/// Decimal digits of sub-second precision of `unit`.
pub fn unit_exponent(unit: TimeUnit) -> u32 {
    match unit {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 3,
        TimeUnit::Microsecond => 6,
        TimeUnit::Nanosecond => 9,
    }
}

/// One field value. Types are exact: integers never pass through floats, decimals keep their scale.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Value {
    /// SQL NULL.
    #[default]
    Null,
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int64(i64),
    /// A 64-bit float.
    Float64(f64),
    /// UTF-8 text.
    Utf8(String),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A timestamp with unit and time zone.
    Timestamp(Timestamp),
    /// Days since 1970-01-01.
    Date32(i32),
    /// An exact decimal.
    Decimal(Decimal),
}

impl Value {
    /// The Arrow type this value maps to when a schema is inferred; `Null` maps to `DataType::Null`.
    pub fn data_type(&self) -> DataType {
        match self {
            Value::Null => DataType::Null,
            Value::Bool(_) => DataType::Boolean,
            Value::Int64(_) => DataType::Int64,
            Value::Float64(_) => DataType::Float64,
            Value::Utf8(_) => DataType::Utf8,
            Value::Bytes(_) => DataType::Binary,
            Value::Timestamp(ts) => DataType::Timestamp(ts.unit, ts.timezone.clone()),
            Value::Date32(_) => DataType::Date32,
            Value::Decimal(d) => DataType::Decimal128(d.precision, d.scale),
        }
    }

    /// True for SQL NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// A short description for error messages, e.g. `string "abc"` (long text is cut).
    pub fn describe(&self) -> String {
        const MAX_CHARS: usize = 40;
        match self {
            Value::Null => "null".to_string(),
            Value::Bool(b) => format!("bool {b}"),
            Value::Int64(v) => format!("integer {v}"),
            Value::Float64(v) => format!("float {v}"),
            Value::Utf8(s) if s.chars().count() > MAX_CHARS => {
                let cut: String = s.chars().take(MAX_CHARS).collect();
                format!("string {cut:?}...")
            }
            Value::Utf8(s) => format!("string {s:?}"),
            Value::Bytes(b) => format!("{} bytes", b.len()),
            Value::Timestamp(ts) => format!("timestamp {} {:?}", ts.value, ts.unit),
            Value::Date32(d) => format!("date {d} (days since epoch)"),
            Value::Decimal(d) => format!("decimal {d}"),
        }
    }

    /// Bytes this value adds to a batch; used to bound batch size in bytes.
    pub fn encoded_size_bytes(&self) -> usize {
        match self {
            Value::Null => 0,
            Value::Bool(_) => 1,
            Value::Int64(_) | Value::Float64(_) | Value::Timestamp(_) => 8,
            Value::Date32(_) => 4,
            Value::Decimal(_) => 16,
            Value::Utf8(s) => s.len() + 4,
            Value::Bytes(b) => b.len() + 4,
        }
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int64(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Int64(i64::from(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float64(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Utf8(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Utf8(v)
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(v)
    }
}
impl From<Decimal> for Value {
    fn from(v: Decimal) -> Self {
        Value::Decimal(v)
    }
}
impl From<Timestamp> for Value {
    fn from(v: Timestamp) -> Self {
        Value::Timestamp(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_formats_exactly() {
        assert_eq!(format_decimal(12345, 2), "123.45");
        assert_eq!(format_decimal(-5, 2), "-0.05");
        assert_eq!(format_decimal(0, 3), "0.000");
        assert_eq!(format_decimal(7, 0), "7");
        assert_eq!(format_decimal(7, -2), "700");
        assert_eq!(format_decimal(i128::MIN, 0), i128::MIN.to_string());
    }

    #[test]
    fn decimal_rescale_is_exact_or_none() {
        let d = Decimal::new(1250, 2);
        assert_eq!(d.rescale(3), Some(12500));
        assert_eq!(d.rescale(1), Some(125));
        assert_eq!(d.rescale(0), None);
        assert_eq!(Decimal::new(i128::MAX, 0).rescale(1), None);
    }

    #[test]
    fn timestamp_unit_conversion_is_exact_or_none() {
        let ts = Timestamp::millis(1_500);
        assert_eq!(ts.to_unit(TimeUnit::Microsecond), Some(1_500_000));
        assert_eq!(ts.to_unit(TimeUnit::Second), None);
        assert_eq!(
            Timestamp::millis(i64::MAX).to_unit(TimeUnit::Nanosecond),
            None
        );
    }
}
