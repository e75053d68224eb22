//! Numeric scalar functions: rounding (`ROUND`, `TRUNC`, `FLOOR`, `CEIL` to a number of
//! decimal digits), `SIGN`, and the floating-point functions (`SQRT`, `CBRT`, `EXP`, `LN`,
//! `LOG10`, `LOG2`, `POWER`).
//!
//! Rounding is exact on integers and decimals: the digits are dropped from the `i128` mantissa
//! (ties away from zero for `ROUND`), and a result that no longer fits the input's integer type
//! is an overflow error. A double rounds (`ROUND`) as its exact binary value does, as in DuckDB
//! (`ROUND(2.675, 2)` is 2.67: the double is 2.67499999…), while `TRUNC`, `FLOOR` and `CEIL`
//! to digits take the double as the decimal it prints as (`TRUNC(2.675, 3)` is 2.675, not
//! 2.674), as PostgreSQL's numeric functions do. The floating-point functions return `DOUBLE`
//! and follow IEEE 754 outside their domain (`SQRT(-1)` is NaN, `LN(0)` is −∞), as DuckDB does.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Float64Array, Int64Array};
use arrow::compute::{cast, cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Float64Type};
use quiver_core::{QuiverError, Result};

/// How a rounding function treats the digits it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// To the nearest, ties away from zero (`ROUND`).
    HalfAwayFromZero,
    /// Toward zero (`TRUNC`).
    TowardZero,
    /// Toward −∞ (`FLOOR`).
    Down,
    /// Toward +∞ (`CEIL`).
    Up,
}

impl Rounding {
    fn name(self) -> &'static str {
        match self {
            Rounding::HalfAwayFromZero => "ROUND",
            Rounding::TowardZero => "TRUNC",
            Rounding::Down => "FLOOR",
            Rounding::Up => "CEIL",
        }
    }

    /// The integer nearest `quotient + remainder / divisor` in this direction, where
    /// `quotient` and `remainder` come from truncating division by `divisor` (> 0).
    fn adjust(self, quotient: i128, remainder: i128, divisor: i128) -> i128 {
        match self {
            Rounding::TowardZero => quotient,
            Rounding::Down if remainder < 0 => quotient - 1,
            Rounding::Up if remainder > 0 => quotient + 1,
            Rounding::Down | Rounding::Up => quotient,
            Rounding::HalfAwayFromZero => {
                // |r| ≥ divisor / 2, written so that nothing overflows at divisor = 10^38.
                let magnitude = remainder.abs();
                if magnitude >= divisor - magnitude {
                    quotient + remainder.signum()
                } else {
                    quotient
                }
            }
        }
    }

    fn float(self, value: f64) -> f64 {
        match self {
            Rounding::HalfAwayFromZero => value.round(),
            Rounding::TowardZero => value.trunc(),
            Rounding::Down => value.floor(),
            Rounding::Up => value.ceil(),
        }
    }
}

/// Floating-point functions of one argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatFunction {
    /// Square root.
    Sqrt,
    /// Cube root.
    Cbrt,
    /// e^x.
    Exp,
    /// Natural logarithm.
    Ln,
    /// Base-10 logarithm (`LOG10`, one-argument `LOG`).
    Log10,
    /// Base-2 logarithm.
    Log2,
    /// Sine of radians.
    Sin,
    /// Cosine of radians.
    Cos,
    /// Tangent of radians.
    Tan,
    /// Cotangent of radians.
    Cot,
    /// Arcsine, in radians.
    Asin,
    /// Arccosine, in radians.
    Acos,
    /// Arctangent, in radians.
    Atan,
    /// Radians to degrees.
    Degrees,
    /// Degrees to radians.
    Radians,
}

impl FloatFunction {
    fn apply(self, x: f64) -> f64 {
        match self {
            FloatFunction::Sqrt => x.sqrt(),
            FloatFunction::Cbrt => x.cbrt(),
            FloatFunction::Exp => x.exp(),
            FloatFunction::Ln => x.ln(),
            FloatFunction::Log10 => x.log10(),
            FloatFunction::Log2 => x.log2(),
            FloatFunction::Sin => x.sin(),
            FloatFunction::Cos => x.cos(),
            FloatFunction::Tan => x.tan(),
            FloatFunction::Cot => 1.0 / x.tan(),
            FloatFunction::Asin => x.asin(),
            FloatFunction::Acos => x.acos(),
            FloatFunction::Atan => x.atan(),
            FloatFunction::Degrees => x.to_degrees(),
            FloatFunction::Radians => x.to_radians(),
        }
    }
}

fn numeric<'a>(value: &'a ArrayRef, function: &str) -> Result<&'a ArrayRef> {
    let data_type = value.data_type();
    if data_type.is_numeric() || data_type == &DataType::Null {
        Ok(value)
    } else {
        Err(QuiverError::Unsupported(format!(
            "{function} of {data_type}; it takes numbers"
        )))
    }
}

fn as_doubles(value: &ArrayRef, function: &str) -> Result<Float64Array> {
    let value = numeric(value, function)?;
    Ok(cast(value, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

/// `ROUND` / `TRUNC` / `FLOOR` / `CEIL` of `value` to `digits` decimal digits (negative: to
/// tens, hundreds, ...). Integers keep their type, floats theirs; a decimal's scale becomes
/// `digits` (0 when negative) where that is below its own.
pub fn round(value: &ArrayRef, rounding: Rounding, digits: i32) -> Result<ArrayRef> {
    let name = rounding.name();
    let value = numeric(value, name)?;
    match value.data_type() {
        DataType::Null => Ok(Arc::clone(value)),
        DataType::Float64 => Ok(Arc::new(
            value
                .as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(|x| round_float(x, rounding, digits)),
        )),
        DataType::Float32 | DataType::Float16 => {
            // Rounded in double precision, then back to the input's width.
            let rounded: ArrayRef = Arc::new(
                as_doubles(value, name)?
                    .unary::<_, Float64Type>(|x| round_float(x, rounding, digits)),
            );
            Ok(cast(&rounded, value.data_type())?)
        }
        DataType::Decimal128(precision, scale) => {
            round_decimal(value, *precision, *scale, rounding, digits)
        }
        integer if integer.is_integer() => {
            if digits >= 0 {
                return Ok(Arc::clone(value));
            }
            let wide = cast(value, &DataType::Decimal128(38, 0))?;
            let rounded = round_decimal(&wide, 38, 0, rounding, digits)?;
            // Back to the input's type; a value that grew out of it is an error, not a NULL.
            cast_with_options(
                &rounded,
                integer,
                &CastOptions {
                    safe: false,
                    ..Default::default()
                },
            )
            .map_err(|_| QuiverError::overflow(name, integer))
        }
        other => Err(QuiverError::Unsupported(format!(
            "{name} of {other}; it takes numbers"
        ))),
    }
}

/// A float rounded to `digits` decimal places: the result is the double nearest the rounded
/// decimal. `ROUND` rounds the exact binary value (`ROUND(2.675, 2)` is 2.67, since 2.675 is
/// 2.67499999… in binary; `ROUND(0.125, 2)` is 0.13); the directed roundings round the
/// shortest decimal that reads back as `x` (`TRUNC(2.675, 3)` is 2.675). The scaled value
/// decides in one float operation unless it lies within its rounding error of the decision
/// point; then the decimal digits do.
fn round_float(x: f64, rounding: Rounding, digits: i32) -> f64 {
    if digits == 0 || !x.is_finite() {
        return rounding.float(x);
    }
    // 10^22 is the largest power of ten a double holds exactly.
    if digits.unsigned_abs() > 22 {
        return round_float_exactly(x, rounding, digits);
    }
    let scale = 10_f64.powi(digits.abs());
    let scaled = if digits > 0 { x * scale } else { x / scale };
    // Past 2^52 the scaled value has no fraction left to judge by.
    if scaled.abs() >= 4_503_599_627_370_496.0 {
        return round_float_exactly(x, rounding, digits);
    }
    let fraction = (scaled - scaled.trunc()).abs();
    let boundary = match rounding {
        Rounding::HalfAwayFromZero => (fraction - 0.5).abs(),
        _ => fraction.min(1.0 - fraction),
    };
    // The scaling's error is at most half an ulp of `scaled`; keep well clear of it.
    if boundary <= scaled.abs() * f64::EPSILON * 4.0 + f64::MIN_POSITIVE {
        return round_float_exactly(x, rounding, digits);
    }
    let rounded = rounding.float(scaled);
    // Both operands are exact, so IEEE's correctly rounded operation gives the nearest double.
    if digits > 0 {
        rounded / scale
    } else {
        rounded * scale
    }
}

/// `round_float` through decimal digits of `x`, rounded as a digit string and parsed back:
/// the exact expansion for `ROUND` (every finite double has at most 1074 fraction digits),
/// the shortest round-trip form for the directed roundings.
fn round_float_exactly(x: f64, rounding: Rounding, digits: i32) -> f64 {
    let expansion = if rounding == Rounding::HalfAwayFromZero {
        format!("{:.1100}", x.abs())
    } else {
        // Rust's `Display` of a double is its shortest round-trip form, without an exponent.
        format!("{}", x.abs())
    };
    let (integer, fraction) = expansion.split_once('.').unwrap_or((&expansion, ""));
    let all: Vec<u8> = integer.bytes().chain(fraction.bytes()).collect();
    // Digits kept: the integer digits plus `digits` fraction digits (fewer when negative).
    let keep = integer.len() as i64 + i64::from(digits);
    let (mut kept, rest): (Vec<u8>, Vec<u8>) = if keep <= 0 {
        let zeros = std::iter::repeat_n(b'0', keep.unsigned_abs() as usize);
        (Vec::new(), zeros.chain(all.iter().copied()).collect())
    } else {
        let keep = keep as usize;
        if keep >= all.len() {
            // Fewer digits than kept (a short round-trip form): nothing to drop.
            let mut kept = all.clone();
            kept.resize(keep, b'0');
            (kept, Vec::new())
        } else {
            (all[..keep].to_vec(), all[keep..].to_vec())
        }
    };
    let rest_nonzero = rest.iter().any(|&d| d != b'0');
    let away_from_zero = match (rounding, x < 0.0) {
        (Rounding::TowardZero, _) | (Rounding::Down, false) | (Rounding::Up, true) => false,
        (Rounding::Down, true) | (Rounding::Up, false) => rest_nonzero,
        (Rounding::HalfAwayFromZero, _) => rest.first().is_some_and(|&d| d >= b'5'),
    };
    if away_from_zero {
        // Add one unit in the last kept place, carrying.
        let mut carry = true;
        for d in kept.iter_mut().rev() {
            if *d == b'9' {
                *d = b'0';
            } else {
                *d += 1;
                carry = false;
                break;
            }
        }
        if carry {
            kept.insert(0, b'1');
        }
    }
    if kept.is_empty() {
        kept.push(b'0');
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let text = format!(
        "{sign}{}e{}",
        String::from_utf8_lossy(&kept),
        -i64::from(digits)
    );
    text.parse().unwrap_or(x)
}

fn round_decimal(
    value: &ArrayRef,
    precision: u8,
    scale: i8,
    rounding: Rounding,
    digits: i32,
) -> Result<ArrayRef> {
    let scale = i32::from(scale);
    if digits >= scale {
        return Ok(Arc::clone(value));
    }
    let dropped = scale - digits;
    let (out_precision, out_scale) = if digits >= 0 {
        (precision, digits)
    } else {
        // Rounding to tens can carry into one more integer digit.
        let integer_digits = (i32::from(precision) - scale + 1).max(1);
        (precision.max(integer_digits.min(38) as u8), 0)
    };
    // Multiplies the rounded quotient back for negative digits (ROUND(1255, -1) = 1260).
    let restore = if digits < 0 { pow10(-digits) } else { Some(1) };
    let divisor = pow10(dropped);
    let limit = pow10(i32::from(out_precision)).unwrap_or(i128::MAX);
    let decimals = value.as_primitive::<arrow::datatypes::Decimal128Type>();
    let rounded: Decimal128Array = decimals
        .try_unary(|v| {
            round_mantissa(v, divisor, restore, rounding)
                .filter(|r| r.unsigned_abs() < limit.unsigned_abs())
                .ok_or(())
        })
        .map_err(|()| {
            QuiverError::overflow(
                rounding.name(),
                format!("DECIMAL({out_precision}, {out_scale})"),
            )
        })?;
    Ok(Arc::new(rounded.with_precision_and_scale(
        out_precision,
        out_scale as i8,
    )?))
}

/// One mantissa rounded at `divisor` (`None`: beyond 10^38) and scaled back by `restore`;
/// `None` when the result overflows `i128`.
fn round_mantissa(
    v: i128,
    divisor: Option<i128>,
    restore: Option<i128>,
    rounding: Rounding,
) -> Option<i128> {
    let quotient = match divisor {
        Some(divisor) => rounding.adjust(v / divisor, v % divisor, divisor),
        // 10^dropped exceeds every mantissa: the quotient is 0, the remainder v.
        None => match (rounding, v.signum()) {
            (Rounding::Down, -1) | (Rounding::Up, 1) => v.signum(),
            _ => 0,
        },
    };
    if quotient == 0 {
        return Some(0);
    }
    restore.and_then(|r| quotient.checked_mul(r))
}

/// 10^exponent as an `i128`, or `None` past 10^38.
fn pow10(exponent: i32) -> Option<i128> {
    u32::try_from(exponent)
        .ok()
        .and_then(|e| 10_i128.checked_pow(e))
}

/// `SIGN(x)`: −1, 0 or 1 as `BIGINT` (NaN gives 0).
pub fn sign(value: &ArrayRef) -> Result<ArrayRef> {
    let value = numeric(value, "SIGN")?;
    let signs: Int64Array = match value.data_type() {
        DataType::Decimal128(_, _) => value
            .as_primitive::<arrow::datatypes::Decimal128Type>()
            .unary(|v| v.signum() as i64),
        data_type if data_type.is_floating() => as_doubles(value, "SIGN")?.unary(|x| {
            if x > 0.0 {
                1
            } else if x < 0.0 {
                -1
            } else {
                0
            }
        }),
        DataType::UInt64 => cast(value, &DataType::UInt64)?
            .as_primitive::<arrow::datatypes::UInt64Type>()
            .unary(|v| i64::from(v > 0)),
        _ => cast(value, &DataType::Int64)?
            .as_primitive::<arrow::datatypes::Int64Type>()
            .unary(i64::signum),
    };
    Ok(Arc::new(signs))
}

/// A floating-point function of one argument, as `DOUBLE`.
pub fn float_function(function: FloatFunction, value: &ArrayRef) -> Result<ArrayRef> {
    let name = format!("{function:?}").to_uppercase();
    let doubles = as_doubles(value, &name)?;
    Ok(Arc::new(
        doubles.unary::<_, Float64Type>(|x| function.apply(x)),
    ))
}

/// `LOG(base, x)` as `DOUBLE`: `log10(x) / log10(base)`, DuckDB's formula (`LOG(10, 1000)`
/// is exactly 3).
pub fn log_base(base: &ArrayRef, value: &ArrayRef) -> Result<ArrayRef> {
    let base = as_doubles(base, "LOG")?;
    let value = as_doubles(value, "LOG")?;
    Ok(Arc::new(arrow::compute::binary::<_, _, _, Float64Type>(
        &base,
        &value,
        |b, x| x.log10() / b.log10(),
    )?))
}

/// `POWER(base, exponent)` as `DOUBLE`.
pub fn power(base: &ArrayRef, exponent: &ArrayRef) -> Result<ArrayRef> {
    let base = as_doubles(base, "POWER")?;
    let exponent = as_doubles(exponent, "POWER")?;
    Ok(Arc::new(arrow::compute::binary::<_, _, _, Float64Type>(
        &base,
        &exponent,
        f64::powf,
    )?))
}

/// `ATAN2(y, x)`: the angle of the point (x, y), in radians, as `DOUBLE`.
pub fn atan2(y: &ArrayRef, x: &ArrayRef) -> Result<ArrayRef> {
    let y = as_doubles(y, "ATAN2")?;
    let x = as_doubles(x, "ATAN2")?;
    Ok(Arc::new(arrow::compute::binary::<_, _, _, Float64Type>(
        &y,
        &x,
        f64::atan2,
    )?))
}

/// Tests of a number's IEEE class (`ISNAN`, `ISINF`, `ISFINITE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloatTest {
    /// NaN.
    Nan,
    /// +∞ or −∞.
    Infinite,
    /// Neither NaN nor infinite (every integer and decimal).
    Finite,
}

/// `ISNAN(x)` / `ISINF(x)` / `ISFINITE(x)` as booleans (NULL for NULL).
pub fn float_test(test: FloatTest, value: &ArrayRef) -> Result<ArrayRef> {
    let name = match test {
        FloatTest::Nan => "ISNAN",
        FloatTest::Infinite => "ISINF",
        FloatTest::Finite => "ISFINITE",
    };
    let doubles = as_doubles(value, name)?;
    Ok(Arc::new(
        doubles
            .iter()
            .map(|v| {
                v.map(|x| match test {
                    FloatTest::Nan => x.is_nan(),
                    FloatTest::Infinite => x.is_infinite(),
                    FloatTest::Finite => x.is_finite(),
                })
            })
            .collect::<arrow::array::BooleanArray>(),
    ))
}

/// `GCD(a, b)` / `LCM(a, b)` of integers as `BIGINT` (`GCD(0, 0)` is 0; a result past
/// `BIGINT` is an overflow error).
pub fn gcd_lcm(lcm: bool, a: &ArrayRef, b: &ArrayRef) -> Result<ArrayRef> {
    let name = if lcm { "LCM" } else { "GCD" };
    let as_integers = |v: &ArrayRef| -> Result<arrow::array::Int64Array> {
        if v.data_type().is_integer() || v.data_type() == &DataType::Null {
            Ok(cast(v, &DataType::Int64)?
                .as_primitive::<arrow::datatypes::Int64Type>()
                .clone())
        } else {
            Err(QuiverError::Unsupported(format!(
                "{name} of {}; it takes integers",
                v.data_type()
            )))
        }
    };
    let (a, b) = (as_integers(a)?, as_integers(b)?);
    let gcd = |mut x: u64, mut y: u64| {
        while y != 0 {
            (x, y) = (y, x % y);
        }
        x
    };
    let mut out = arrow::array::Int64Builder::with_capacity(a.len());
    for (x, y) in a.iter().zip(b.iter()) {
        let (Some(x), Some(y)) = (x, y) else {
            out.append_null();
            continue;
        };
        let divisor = gcd(x.unsigned_abs(), y.unsigned_abs());
        let result = if lcm {
            // LCM(0, 0) is 0.
            match x.unsigned_abs().checked_div(divisor) {
                Some(quotient) => quotient.checked_mul(y.unsigned_abs()),
                None => Some(0),
            }
        } else {
            Some(divisor)
        };
        match result.and_then(|r| i64::try_from(r).ok()) {
            Some(r) => out.append_value(r),
            None => return Err(QuiverError::overflow(name, DataType::Int64)),
        }
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Int32Array, Int8Array, UInt64Array};

    fn decimals(values: &[Option<i128>], precision: u8, scale: i8) -> ArrayRef {
        Arc::new(
            Decimal128Array::from(values.to_vec())
                .with_precision_and_scale(precision, scale)
                .unwrap(),
        )
    }

    fn decimal_strings(array: &ArrayRef) -> Vec<Option<String>> {
        let array = array.as_primitive::<arrow::datatypes::Decimal128Type>();
        (0..array.len())
            .map(|i| array.is_valid(i).then(|| array.value_as_string(i)))
            .collect()
    }

    /// Row-at-a-time reference: exact rational rounding of `mantissa / 10^scale`.
    fn reference(mantissa: i128, scale: i32, rounding: Rounding, digits: i32) -> (i128, i32) {
        if digits >= scale {
            return (mantissa, scale);
        }
        let divisor = 10_i128.pow((scale - digits) as u32);
        let floor = mantissa.div_euclid(divisor);
        let remainder = mantissa.rem_euclid(divisor); // 0 <= remainder < divisor
        let quotient = match rounding {
            Rounding::Down => floor,
            Rounding::Up => floor + i128::from(remainder > 0),
            Rounding::TowardZero => {
                if mantissa < 0 && remainder > 0 {
                    floor + 1
                } else {
                    floor
                }
            }
            Rounding::HalfAwayFromZero => {
                let twice = 2 * remainder;
                if twice > divisor || (twice == divisor && mantissa >= 0) {
                    floor + 1
                } else {
                    floor
                }
            }
        };
        if digits < 0 {
            (quotient * 10_i128.pow((-digits) as u32), 0)
        } else {
            (quotient, digits)
        }
    }

    #[test]
    fn decimal_rounding_matches_the_exact_reference() {
        let mut rng = quiver_core::rng::SplitMix64::new(7);
        let mut mantissas: Vec<Option<i128>> = (0..2_000)
            .map(|_| Some(rng.next_u64() as i64 as i128 % 10_000_000))
            .collect();
        mantissas.extend([
            Some(0),
            None,
            Some(5),
            Some(-5),
            Some(15),
            Some(-15),
            Some(9_999),
        ]);
        let input = decimals(&mantissas, 18, 3);
        for rounding in [
            Rounding::HalfAwayFromZero,
            Rounding::TowardZero,
            Rounding::Down,
            Rounding::Up,
        ] {
            for digits in -4..=4 {
                let out = round(&input, rounding, digits).unwrap();
                let DataType::Decimal128(_, out_scale) = *out.data_type() else {
                    panic!("{rounding:?} {digits}: {}", out.data_type());
                };
                let out = out.as_primitive::<arrow::datatypes::Decimal128Type>();
                for (row, m) in mantissas.iter().enumerate() {
                    match m {
                        None => assert!(out.is_null(row)),
                        Some(m) => {
                            let (want, want_scale) = reference(*m, 3, rounding, digits);
                            assert_eq!(i32::from(out_scale), want_scale);
                            assert_eq!(out.value(row), want, "{rounding:?} {digits} of {m}e-3");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn decimal_rounding_types_and_ties() {
        let input = decimals(&[Some(2675), Some(-2675), Some(9999), None], 4, 3);
        let out = round(&input, Rounding::HalfAwayFromZero, 2).unwrap();
        assert_eq!(out.data_type(), &DataType::Decimal128(4, 2));
        assert_eq!(
            decimal_strings(&out),
            [Some("2.68"), Some("-2.68"), Some("10.00"), None].map(|s| s.map(String::from))
        );
        let floor = round(&input, Rounding::Down, 0).unwrap();
        assert_eq!(floor.data_type(), &DataType::Decimal128(4, 0));
        assert_eq!(
            decimal_strings(&floor),
            [Some("2"), Some("-3"), Some("9"), None].map(|s| s.map(String::from))
        );
        // Digits beyond the scale change nothing; far negative digits give zero.
        assert_eq!(
            round(&input, Rounding::HalfAwayFromZero, 5)
                .unwrap()
                .data_type(),
            &DataType::Decimal128(4, 3)
        );
        let far = round(&input, Rounding::HalfAwayFromZero, -60).unwrap();
        assert_eq!(
            decimal_strings(&far),
            [Some("0"), Some("0"), Some("0"), None].map(|s| s.map(String::from))
        );
        // 9 rounded to tens carries into a second digit.
        let nine = decimals(&[Some(9)], 1, 0);
        let tens = round(&nine, Rounding::HalfAwayFromZero, -1).unwrap();
        assert_eq!(tens.data_type(), &DataType::Decimal128(2, 0));
        assert_eq!(decimal_strings(&tens), [Some("10".to_string())]);
        // CEIL of a tiny positive fraction with every digit dropped is one unit of 10^-digits.
        let tiny = decimals(&[Some(1), Some(-1)], 38, 0);
        assert!(round(&tiny, Rounding::Up, -39).is_err());
        let big = decimals(&[Some(10_i128.pow(36) * 94)], 38, 0);
        let nines = round(&big, Rounding::HalfAwayFromZero, -37).unwrap();
        assert_eq!(
            decimal_strings(&nines),
            [Some(format!("9{}", "0".repeat(37)))]
        );
        // 10^38 has 39 digits: more than a decimal holds.
        assert!(round(&big, Rounding::HalfAwayFromZero, -38).is_err());
    }

    #[test]
    fn integer_rounding_keeps_the_type_and_checks_overflow() {
        let input: ArrayRef = Arc::new(Int32Array::from(vec![Some(15), Some(-15), Some(14), None]));
        let out = round(&input, Rounding::HalfAwayFromZero, -1).unwrap();
        assert_eq!(out.data_type(), &DataType::Int32);
        let out = out.as_primitive::<arrow::datatypes::Int32Type>();
        assert_eq!(
            out.iter().collect::<Vec<_>>(),
            [Some(20), Some(-20), Some(10), None]
        );
        assert!(Arc::ptr_eq(
            &round(&input, Rounding::Down, 2).unwrap(),
            &input
        ));
        let small: ArrayRef = Arc::new(Int8Array::from(vec![125]));
        let error = round(&small, Rounding::HalfAwayFromZero, -1).unwrap_err();
        assert!(error.to_string().contains("overflow"), "{error}");
        let unsigned: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX - 10]));
        let out = round(&unsigned, Rounding::Down, -1).unwrap();
        assert_eq!(
            out.as_primitive::<arrow::datatypes::UInt64Type>().value(0),
            u64::MAX - 15
        );
        let top: ArrayRef = Arc::new(UInt64Array::from(vec![u64::MAX - 3]));
        assert!(round(&top, Rounding::Up, -1).is_err());
    }

    #[test]
    fn float_rounding_follows_duckdb() {
        let input: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(2.5),
            Some(-2.5),
            Some(2.675),
            Some(1234.5),
            Some(f64::NAN),
            None,
        ]));
        let at = |rounding, digits| {
            let out = round(&input, rounding, digits).unwrap();
            out.as_primitive::<Float64Type>()
                .iter()
                .map(|v| {
                    v.map(|x| {
                        if x.is_nan() {
                            "NaN".into()
                        } else {
                            x.to_string()
                        }
                    })
                })
                .collect::<Vec<_>>()
        };
        let strings = |v: &[&str]| {
            let mut out: Vec<Option<String>> = v.iter().map(|s| Some(s.to_string())).collect();
            out.push(None);
            out
        };
        assert_eq!(
            at(Rounding::HalfAwayFromZero, 0),
            strings(&["3", "-3", "3", "1235", "NaN"])
        );
        // 2.675 is 2.67499999... as a double.
        assert_eq!(
            at(Rounding::HalfAwayFromZero, 2),
            strings(&["2.5", "-2.5", "2.67", "1234.5", "NaN"])
        );
        assert_eq!(
            at(Rounding::HalfAwayFromZero, -2),
            strings(&["0", "-0", "0", "1200", "NaN"])
        );
        assert_eq!(
            at(Rounding::Down, 0),
            strings(&["2", "-3", "2", "1234", "NaN"])
        );
        assert_eq!(
            at(Rounding::Up, 0),
            strings(&["3", "-2", "3", "1235", "NaN"])
        );
        assert_eq!(
            at(Rounding::TowardZero, 1),
            strings(&["2.5", "-2.5", "2.6", "1234.5", "NaN"])
        );
        // Directed roundings take the double as the decimal it prints as.
        for (x, rounding, digits, want) in [
            (2.675, Rounding::TowardZero, 3, 2.675),
            (9.995, Rounding::Down, 3, 9.995),
            (8.345, Rounding::Up, 3, 8.345),
            (-1.45, Rounding::Up, 2, -1.45),
            (-1.45, Rounding::Down, 1, -1.5),
            (1.45, Rounding::TowardZero, 1, 1.4),
            (0.1 + 0.2, Rounding::Down, 1, 0.3),
            (0.1 + 0.2, Rounding::Up, 1, 0.4),
            (-2.5, Rounding::TowardZero, 3, -2.5),
            (1234.5, Rounding::Down, 3, 1234.5),
            (7.0, Rounding::Up, 2, 7.0),
        ] {
            assert_eq!(
                round_float(x, rounding, digits),
                want,
                "{rounding:?}({x}, {digits})"
            );
        }
        let big: ArrayRef = Arc::new(Float64Array::from(vec![1e308, 1.5]));
        let far = round(&big, Rounding::HalfAwayFromZero, 400).unwrap();
        assert_eq!(far.as_primitive::<Float64Type>().values(), &[1e308, 1.5]);
        let far = round(&big, Rounding::HalfAwayFromZero, -400).unwrap();
        assert_eq!(far.as_primitive::<Float64Type>().values(), &[0.0, 0.0]);
        // Values DuckDB 2.0 rounds this way (the exact binary value decides).
        for (x, want) in [
            (1.005, 1.0),
            (0.285, 0.28),
            (1.115, 1.11),
            (8.345, 8.35),
            (0.125, 0.13),
            (-0.125, -0.13),
        ] {
            assert_eq!(round_float(x, Rounding::HalfAwayFromZero, 2), want, "{x}");
        }
        let singles: ArrayRef = Arc::new(Float32Array::from(vec![2.5_f32]));
        let out = round(&singles, Rounding::HalfAwayFromZero, 0).unwrap();
        assert_eq!(out.data_type(), &DataType::Float32);
    }

    #[test]
    fn float_rounding_fast_path_matches_the_exact_expansion() {
        let mut rng = quiver_core::rng::SplitMix64::new(11);
        let modes = [
            Rounding::HalfAwayFromZero,
            Rounding::TowardZero,
            Rounding::Down,
            Rounding::Up,
        ];
        for i in 0..20_000 {
            let bits = rng.next_u64();
            // Short decimals (ties and near-ties), then arbitrary doubles of many magnitudes.
            let x = if i % 2 == 0 {
                let mantissa = (bits % 2_000_001) as i64 - 1_000_000;
                format!("{mantissa}e-3").parse().unwrap()
            } else {
                let exponent = (bits % 60) as i32 - 30;
                (bits >> 11) as f64 / (1_u64 << 53) as f64 * 10_f64.powi(exponent)
            };
            let digits = (rng.next_u64() % 15) as i32 - 5;
            let rounding = modes[(i / 2) % 4];
            let fast = round_float(x, rounding, digits);
            let exact = round_float_exactly(x, rounding, digits);
            assert!(
                fast == exact || (fast == 0.0 && exact == 0.0),
                "{rounding:?}({x}, {digits}): {fast} vs {exact}"
            );
            if i % 2 == 0 && rounding != Rounding::HalfAwayFromZero {
                // A short decimal is its own shortest form: directed rounding is the decimal's.
                let mantissa = (bits % 2_000_001) as i128 - 1_000_000;
                let (m, scale) = reference(mantissa, 3, rounding, digits);
                let want: f64 = format!("{m}e-{scale}").parse().unwrap();
                assert_eq!(fast, want, "{rounding:?}({x}, {digits})");
            }
        }
    }

    #[test]
    fn sign_and_float_functions() {
        let values: ArrayRef = Arc::new(Float64Array::from(vec![
            Some(-2.5),
            Some(0.0),
            Some(4.0),
            None,
        ]));
        let signs = sign(&values).unwrap();
        assert_eq!(
            signs
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .collect::<Vec<_>>(),
            [Some(-1), Some(0), Some(1), None]
        );
        let roots = float_function(FloatFunction::Sqrt, &values).unwrap();
        let roots = roots.as_primitive::<Float64Type>();
        assert!(roots.value(0).is_nan());
        assert_eq!(roots.value(2), 2.0);
        assert!(roots.is_null(3));
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![2, 3]));
        let ten: ArrayRef = Arc::new(Int32Array::from(vec![10, 2]));
        let powers = power(&ints, &ten).unwrap();
        assert_eq!(
            powers.as_primitive::<Float64Type>().values(),
            &[1024.0, 9.0]
        );
        let text: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["x"]));
        assert!(float_function(FloatFunction::Ln, &text).is_err());
        assert!(sign(&text).is_err());
    }
}
