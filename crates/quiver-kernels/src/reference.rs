//! A plain row-at-a-time aggregation, the oracle that differential tests and fuzz targets check
//! the vectorized kernels against. It favours obviousness over speed.

use std::cmp::Ordering;
use std::collections::HashMap;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use quiver_core::{QuiverError, Result};

use crate::aggregate::{AggregateExpr, AggregateFunction};

/// One value, in a form where equal SQL values are equal Rust values.
#[derive(Debug, Clone, PartialEq)]
pub enum RefValue {
    /// NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// Any integer, decimal mantissa, date or timestamp.
    Int(i128),
    /// A float (`-0.0` and NaN normalised when used as a key).
    Float(f64),
    /// Bytes of a string or binary value.
    Bytes(Vec<u8>),
}

impl RefValue {
    fn rank(&self) -> u8 {
        match self {
            RefValue::Null => 0,
            RefValue::Bool(_) => 1,
            RefValue::Int(_) => 2,
            RefValue::Float(_) => 3,
            RefValue::Bytes(_) => 4,
        }
    }

    /// A total order (NULL first, NaN last among floats) for sorting result rows.
    pub fn total_cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (RefValue::Bool(a), RefValue::Bool(b)) => a.cmp(b),
            (RefValue::Int(a), RefValue::Int(b)) => a.cmp(b),
            (RefValue::Float(a), RefValue::Float(b)) => sql_float_cmp(*a, *b),
            (RefValue::Bytes(a), RefValue::Bytes(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }

    fn key(&self) -> KeyBits {
        match self {
            RefValue::Null => KeyBits::Null,
            RefValue::Bool(b) => KeyBits::Int(i128::from(*b)),
            RefValue::Int(v) => KeyBits::Int(*v),
            RefValue::Float(f) if f.is_nan() => KeyBits::Float(f64::NAN.to_bits()),
            RefValue::Float(f) if *f == 0.0 => KeyBits::Float(0.0_f64.to_bits()),
            RefValue::Float(f) => KeyBits::Float(f.to_bits()),
            RefValue::Bytes(b) => KeyBits::Bytes(b.clone()),
        }
    }
}

/// SQL order of floats: NaN above every number.
pub fn sql_float_cmp(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum KeyBits {
    Null,
    Int(i128),
    Float(u64),
    Bytes(Vec<u8>),
}

/// The value at `row` of `array`.
pub fn value_at(array: &ArrayRef, row: usize) -> Result<RefValue> {
    if array.is_null(row) {
        return Ok(RefValue::Null);
    }
    macro_rules! int {
        ($t:ty) => {
            RefValue::Int(i128::from(array.as_primitive::<$t>().value(row)))
        };
    }
    Ok(match array.data_type() {
        DataType::Boolean => RefValue::Bool(array.as_boolean().value(row)),
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Date32 => int!(Date32Type),
        DataType::Decimal128(..) => int!(Decimal128Type),
        DataType::Timestamp(TimeUnit::Second, _) => int!(TimestampSecondType),
        DataType::Timestamp(TimeUnit::Millisecond, _) => int!(TimestampMillisecondType),
        DataType::Timestamp(TimeUnit::Microsecond, _) => int!(TimestampMicrosecondType),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => int!(TimestampNanosecondType),
        DataType::Float32 => {
            RefValue::Float(f64::from(array.as_primitive::<Float32Type>().value(row)))
        }
        DataType::Float64 => RefValue::Float(array.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => RefValue::Bytes(array.as_string::<i32>().value(row).as_bytes().to_vec()),
        DataType::LargeUtf8 => {
            RefValue::Bytes(array.as_string::<i64>().value(row).as_bytes().to_vec())
        }
        DataType::Utf8View => {
            RefValue::Bytes(array.as_string_view().value(row).as_bytes().to_vec())
        }
        DataType::Binary => RefValue::Bytes(array.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => RefValue::Bytes(array.as_binary::<i64>().value(row).to_vec()),
        DataType::BinaryView => RefValue::Bytes(array.as_binary_view().value(row).to_vec()),
        DataType::Dictionary(..) => {
            let dictionary = array.as_any_dictionary();
            let key = dictionary.normalized_keys()[row];
            return value_at(dictionary.values(), key);
        }
        other => {
            return Err(QuiverError::Unsupported(format!(
                "reference value of {other}"
            )))
        }
    })
}

/// One result row: key values, then aggregate values.
pub type RefRow = (Vec<RefValue>, Vec<RefValue>);

#[derive(Debug, Clone)]
enum State {
    Count(i64),
    Sum {
        int: i128,
        float: f64,
        count: i64,
    },
    Extreme(RefValue),
    Distinct(std::collections::HashSet<KeyBits>),
    Values(Vec<f64>),
    Bool(Option<bool>),
    Text(Option<String>),
    /// FIRST_VALUE / LAST_VALUE: the picked value, once a row was seen.
    Pick(Option<RefValue>),
    /// The (x, y) pairs of a two-variable statistic.
    Pairs(Vec<(f64, f64)>),
    /// Ordered STRING_AGG: (key, text) in arrival order.
    OrderedText(Vec<(RefValue, String)>),
    /// MODE: each distinct value (by key) with its count.
    Mode(HashMap<KeyBits, (RefValue, i64)>),
    /// PERCENTILE_DISC: the non-NULL values.
    Picks(Vec<RefValue>),
    /// BIT_AND / BIT_OR / BIT_XOR so far, over the values as exact integers.
    Bits(Option<i128>),
    /// ARG_MAX / ARG_MIN: the best (key, value) so far.
    ArgPick(Option<(RefValue, RefValue)>),
    /// SUM / AVG (DISTINCT): the values seen, and the sum of each first occurrence.
    DistinctSum(std::collections::HashSet<KeyBits>, Box<State>),
}

/// Adds `value` to a SUM / AVG state.
fn add_to_sum(state: &mut State, value: RefValue) -> Result<()> {
    let State::Sum { int, float, count } = state else {
        return Err(QuiverError::Internal("reference SUM state".into()));
    };
    *count += 1;
    match value {
        RefValue::Int(v) => {
            *int = int
                .checked_add(v)
                .ok_or_else(|| QuiverError::overflow("reference SUM", "i128"))?
        }
        RefValue::Float(v) => *float += v,
        other => {
            return Err(QuiverError::Unsupported(format!(
                "reference SUM of {other:?}"
            )))
        }
    }
    Ok(())
}

/// A numeric value as `f64` (decimals by their scale); `None` for NULL.
fn number(value: RefValue, data_type: &DataType) -> Result<Option<f64>> {
    Ok(match value {
        RefValue::Null => None,
        RefValue::Int(v) => Some(match data_type {
            DataType::Decimal128(_, scale) => v as f64 / 10f64.powi(i32::from(*scale)),
            _ => v as f64,
        }),
        RefValue::Float(v) => Some(v),
        other => {
            return Err(QuiverError::Unsupported(format!(
                "reference statistic of {other:?}"
            )))
        }
    })
}

/// Aggregates `batches` row by row. Rows come back in order of first appearance of their key.
pub fn aggregate(
    batches: &[RecordBatch],
    group_by: &[usize],
    aggregates: &[AggregateExpr],
) -> Result<Vec<RefRow>> {
    let mut index: HashMap<Vec<KeyBits>, usize> = HashMap::new();
    let mut keys: Vec<Vec<RefValue>> = Vec::new();
    let mut states: Vec<Vec<State>> = Vec::new();
    let fresh = || -> Vec<State> {
        aggregates
            .iter()
            .map(|a| match a.function {
                AggregateFunction::CountStar | AggregateFunction::Count => State::Count(0),
                AggregateFunction::Sum | AggregateFunction::Avg => State::Sum {
                    int: 0,
                    float: 0.0,
                    count: 0,
                },
                AggregateFunction::Min | AggregateFunction::Max => State::Extreme(RefValue::Null),
                // The reference counts exactly; tests compare APPROX_COUNT_DISTINCT within its
                // error bound rather than exactly.
                AggregateFunction::CountDistinct | AggregateFunction::ApproxCountDistinct => {
                    State::Distinct(Default::default())
                }
                AggregateFunction::VarSamp
                | AggregateFunction::VarPop
                | AggregateFunction::StddevSamp
                | AggregateFunction::StddevPop
                | AggregateFunction::Moment(_)
                | AggregateFunction::Median
                | AggregateFunction::PercentileCont(_)
                | AggregateFunction::ApproxPercentile(_) => State::Values(Vec::new()),
                AggregateFunction::BoolAnd | AggregateFunction::BoolOr => State::Bool(None),
                AggregateFunction::Bit(_) => State::Bits(None),
                AggregateFunction::StringAgg => State::Text(None),
                AggregateFunction::FirstValue | AggregateFunction::LastValue => State::Pick(None),
                AggregateFunction::Covariance(_) => State::Pairs(Vec::new()),
                AggregateFunction::StringAggOrdered { .. } => State::OrderedText(Vec::new()),
                AggregateFunction::ArgExtreme(_) => State::ArgPick(None),
                AggregateFunction::Mode => State::Mode(HashMap::new()),
                AggregateFunction::PercentileDisc { .. } => State::Picks(Vec::new()),
                AggregateFunction::SumDistinct | AggregateFunction::AvgDistinct => {
                    State::DistinctSum(
                        Default::default(),
                        Box::new(State::Sum {
                            int: 0,
                            float: 0.0,
                            count: 0,
                        }),
                    )
                }
            })
            .collect()
    };
    if group_by.is_empty() {
        keys.push(Vec::new());
        states.push(fresh());
        index.insert(Vec::new(), 0);
    }
    for batch in batches {
        for row in 0..batch.num_rows() {
            let key = group_by
                .iter()
                .map(|&c| value_at(batch.column(c), row))
                .collect::<Result<Vec<_>>>()?;
            let bits: Vec<KeyBits> = key.iter().map(RefValue::key).collect();
            let group = *index.entry(bits).or_insert_with(|| {
                keys.push(key);
                states.push(fresh());
                keys.len() - 1
            });
            for (aggregate, state) in aggregates.iter().zip(&mut states[group]) {
                if let Some(filter) = aggregate.filter {
                    if value_at(batch.column(filter), row)? != RefValue::Bool(true) {
                        continue;
                    }
                }
                if let State::OrderedText(entries) = state {
                    // The input is a (value, key) struct; NULL values are skipped.
                    let column = aggregate.input.map(|c| batch.column(c));
                    let Some(pair) = column.and_then(|c| c.as_struct_opt()) else {
                        return Err(QuiverError::Unsupported("reference ordered input".into()));
                    };
                    if let RefValue::Bytes(text) = value_at(pair.column(0), row)? {
                        let key = value_at(pair.column(1), row)?;
                        entries.push((key, String::from_utf8_lossy(&text).into_owned()));
                    }
                    continue;
                }
                if let State::ArgPick(best) = state {
                    // The input is a (value, key) struct; a row with a NULL is skipped, and an
                    // equal key keeps the earlier row.
                    let column = aggregate.input.map(|c| batch.column(c));
                    let Some(pair) = column.and_then(|c| c.as_struct_opt()) else {
                        return Err(QuiverError::Unsupported("reference ARG_MAX input".into()));
                    };
                    let value = value_at(pair.column(0), row)?;
                    let key = value_at(pair.column(1), row)?;
                    if value == RefValue::Null || key == RefValue::Null {
                        continue;
                    }
                    let better = best.as_ref().is_none_or(|(current, _)| {
                        let order = key.total_cmp(current);
                        if aggregate.function == AggregateFunction::ArgExtreme(true) {
                            order == std::cmp::Ordering::Greater
                        } else {
                            order == std::cmp::Ordering::Less
                        }
                    });
                    if better {
                        *best = Some((key, value));
                    }
                    continue;
                }
                if let State::Pairs(pairs) = state {
                    // The input is a (y, x) struct; a pair with a NULL is skipped.
                    let column = aggregate.input.map(|c| batch.column(c));
                    let Some(pair) = column.and_then(|c| c.as_struct_opt()) else {
                        return Err(QuiverError::Unsupported("reference pair input".into()));
                    };
                    let (ys, xs) = (pair.column(0), pair.column(1));
                    let y = number(value_at(ys, row)?, ys.data_type())?;
                    let x = number(value_at(xs, row)?, xs.data_type())?;
                    if let (Some(x), Some(y), true) = (x, y, pair.is_valid(row)) {
                        pairs.push((x, y));
                    }
                    continue;
                }
                let value = match aggregate.input {
                    Some(c) if aggregate.function != AggregateFunction::CountStar => {
                        value_at(batch.column(c), row)?
                    }
                    _ => RefValue::Bool(true),
                };
                if let State::Pick(picked) = state {
                    // NULL values count: the first or last row decides.
                    if picked.is_none() || aggregate.function == AggregateFunction::LastValue {
                        *picked = Some(value);
                    }
                    continue;
                }
                if value == RefValue::Null {
                    continue;
                }
                match state {
                    // Handled above, NULLs included.
                    State::Pick(_)
                    | State::Pairs(_)
                    | State::OrderedText(_)
                    | State::ArgPick(_) => {}
                    State::Count(n) => *n += 1,
                    State::Distinct(set) => {
                        set.insert(value.key());
                    }
                    State::Values(values) => values.push(match value {
                        RefValue::Int(v) => match aggregate
                            .input
                            .map(|c| batch.schema().field(c).data_type().clone())
                        {
                            Some(DataType::Decimal128(_, scale)) => {
                                v as f64 / 10f64.powi(i32::from(scale))
                            }
                            _ => v as f64,
                        },
                        RefValue::Float(v) => v,
                        other => {
                            return Err(QuiverError::Unsupported(format!(
                                "reference statistic of {other:?}"
                            )))
                        }
                    }),
                    State::Bool(current) => {
                        let RefValue::Bool(v) = value else {
                            return Err(QuiverError::Unsupported("reference BOOL_AND/OR".into()));
                        };
                        *current = Some(match (*current, aggregate.function) {
                            (None, _) => v,
                            (Some(c), AggregateFunction::BoolAnd) => c && v,
                            (Some(c), _) => c || v,
                        });
                    }
                    State::Text(current) => {
                        let RefValue::Bytes(bytes) = value else {
                            return Err(QuiverError::Unsupported("reference STRING_AGG".into()));
                        };
                        let text = String::from_utf8_lossy(&bytes).into_owned();
                        *current = Some(match current.take() {
                            None => text,
                            Some(joined) => format!("{joined}{}{text}", aggregate.separator),
                        });
                    }
                    State::Mode(counts) => counts.entry(value.key()).or_insert((value, 0)).1 += 1,
                    State::Picks(values) => values.push(value),
                    State::Bits(current) => {
                        let (RefValue::Int(v), AggregateFunction::Bit(operation)) =
                            (value, aggregate.function)
                        else {
                            return Err(QuiverError::Unsupported("reference BIT_*".into()));
                        };
                        *current = Some(match (*current, operation) {
                            (None, _) => v,
                            (Some(c), crate::BitOperation::And) => c & v,
                            (Some(c), crate::BitOperation::Or) => c | v,
                            (Some(c), crate::BitOperation::Xor) => c ^ v,
                        });
                    }
                    State::Sum { .. } => add_to_sum(state, value)?,
                    State::DistinctSum(seen, sum) => {
                        if seen.insert(value.key()) {
                            add_to_sum(sum, value)?;
                        }
                    }
                    State::Extreme(current) => {
                        let better = match &*current {
                            RefValue::Null => true,
                            current => {
                                let order = value.total_cmp(current);
                                if aggregate.function == AggregateFunction::Min {
                                    order == Ordering::Less
                                } else {
                                    order == Ordering::Greater
                                }
                            }
                        };
                        if better {
                            *current = value;
                        }
                    }
                }
            }
        }
    }
    let input_types: Vec<Option<DataType>> = aggregates
        .iter()
        .map(|a| {
            a.input.and_then(|c| {
                batches
                    .first()
                    .map(|b| b.schema().field(c).data_type().clone())
            })
        })
        .collect();
    keys.into_iter()
        .zip(states)
        .map(|(key, states)| {
            let values = aggregates
                .iter()
                .zip(states)
                .zip(&input_types)
                .map(|((aggregate, state), input_type)| {
                    finish(aggregate, state, input_type.as_ref())
                })
                .collect::<Result<Vec<_>>>()?;
            Ok((key, values))
        })
        .collect()
}

fn finish(
    aggregate: &AggregateExpr,
    state: State,
    input_type: Option<&DataType>,
) -> Result<RefValue> {
    let is_float = matches!(input_type, Some(DataType::Float32 | DataType::Float64));
    Ok(match state {
        State::Count(n) => RefValue::Int(i128::from(n)),
        State::Distinct(set) => RefValue::Int(set.len() as i128),
        State::Bool(value) => value.map_or(RefValue::Null, RefValue::Bool),
        State::Text(value) => value.map_or(RefValue::Null, |t| RefValue::Bytes(t.into_bytes())),
        State::Pick(value) => value.unwrap_or(RefValue::Null),
        State::ArgPick(best) => best.map_or(RefValue::Null, |(_, value)| value),
        State::Bits(bits) => bits.map_or(RefValue::Null, RefValue::Int),
        State::Picks(mut values) => {
            let AggregateFunction::PercentileDisc {
                fraction,
                descending,
            } = aggregate.function
            else {
                return Err(QuiverError::Internal("picks of another aggregate".into()));
            };
            values.sort_by(|a, b| {
                let order = a.total_cmp(b);
                if descending {
                    order.reverse()
                } else {
                    order
                }
            });
            // The first value whose cumulative share (i + 1) / n reaches the fraction.
            let n = values.len();
            match (0..n).find(|&i| (i + 1) as f64 >= fraction * n as f64) {
                Some(i) => values.swap_remove(i),
                None => RefValue::Null,
            }
        }
        State::Mode(counts) => counts
            .into_values()
            .max_by(|(a, m), (b, n)| m.cmp(n).then_with(|| b.total_cmp(a)))
            .map_or(RefValue::Null, |(value, _)| value),
        State::OrderedText(mut entries) => {
            let AggregateFunction::StringAggOrdered {
                descending,
                nulls_first,
                distinct,
            } = aggregate.function
            else {
                return Err(QuiverError::Internal(
                    "ordered text of another aggregate".into(),
                ));
            };
            // Stable: equal keys keep arrival order.
            entries.sort_by(|(a, _), (b, _)| match (a, b) {
                (RefValue::Null, RefValue::Null) => Ordering::Equal,
                (RefValue::Null, _) if nulls_first => Ordering::Less,
                (RefValue::Null, _) => Ordering::Greater,
                (_, RefValue::Null) if nulls_first => Ordering::Greater,
                (_, RefValue::Null) => Ordering::Less,
                (a, b) if descending => b.total_cmp(a),
                (a, b) => a.total_cmp(b),
            });
            if distinct {
                entries.dedup_by(|(a_key, a_text), (b_key, b_text)| {
                    a_text == b_text && a_key.total_cmp(b_key) == Ordering::Equal
                });
            }
            if entries.is_empty() {
                RefValue::Null
            } else {
                let texts: Vec<&str> = entries.iter().map(|(_, t)| t.as_str()).collect();
                RefValue::Bytes(texts.join(&aggregate.separator).into_bytes())
            }
        }
        State::DistinctSum(_, sum) => {
            let plain = AggregateExpr {
                function: if aggregate.function == AggregateFunction::SumDistinct {
                    AggregateFunction::Sum
                } else {
                    AggregateFunction::Avg
                },
                ..aggregate.clone()
            };
            finish(&plain, *sum, input_type)?
        }
        State::Pairs(pairs) => {
            let AggregateFunction::Covariance(kind) = aggregate.function else {
                return Err(QuiverError::Internal(
                    "pairs of a one-variable aggregate".into(),
                ));
            };
            // Two passes: means first, then the sums of deviations (not Welford).
            let n = pairs.len() as f64;
            let mean_x = pairs.iter().map(|p| p.0).sum::<f64>() / n;
            let mean_y = pairs.iter().map(|p| p.1).sum::<f64>() / n;
            let summary = crate::more_accumulators::CoMoments {
                count: pairs.len() as i64,
                mean_x,
                mean_y,
                m2_x: pairs.iter().map(|p| (p.0 - mean_x).powi(2)).sum(),
                m2_y: pairs.iter().map(|p| (p.1 - mean_y).powi(2)).sum(),
                c_xy: pairs.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum(),
            };
            kind.finish(&summary)
                .map_or(RefValue::Null, RefValue::Float)
        }
        State::Values(mut values) => match aggregate.function {
            AggregateFunction::Moment(kind) => {
                // Two passes: the mean first, then the sums of powers of deviations.
                let n = values.len() as f64;
                let mean = values.iter().sum::<f64>() / n;
                let power = |k: i32| values.iter().map(|v| (v - mean).powi(k)).sum::<f64>();
                let moments = crate::more_accumulators::Moments {
                    count: values.len() as i64,
                    mean,
                    m2: power(2),
                    m3: power(3),
                    m4: power(4),
                };
                if values.is_empty() {
                    RefValue::Null
                } else {
                    moments
                        .statistic(kind)
                        .map_or(RefValue::Null, RefValue::Float)
                }
            }
            AggregateFunction::ApproxPercentile(fraction) => {
                crate::approx_percentile::approx_percentile_of(&values, fraction)
                    .map_or(RefValue::Null, RefValue::Float)
            }
            AggregateFunction::Median | AggregateFunction::PercentileCont(_) => {
                let fraction = match aggregate.function {
                    AggregateFunction::PercentileCont(f) => f,
                    _ => 0.5,
                };
                values.sort_by(|a, b| sql_float_cmp(*a, *b));
                if values.is_empty() {
                    RefValue::Null
                } else {
                    let position = fraction * (values.len() - 1) as f64;
                    let (lo, hi) = (position.floor() as usize, position.ceil() as usize);
                    let weight = position - lo as f64;
                    if lo == hi || weight == 0.0 {
                        RefValue::Float(values[lo])
                    } else {
                        RefValue::Float(values[lo] + (values[hi] - values[lo]) * weight)
                    }
                }
            }
            function => {
                // Two passes: the textbook definition, not Welford.
                let n = values.len();
                let sample = matches!(
                    function,
                    AggregateFunction::VarSamp | AggregateFunction::StddevSamp
                );
                let divisor = if sample { n.saturating_sub(1) } else { n };
                if divisor == 0 {
                    RefValue::Null
                } else {
                    let mean = values.iter().sum::<f64>() / n as f64;
                    let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
                    let variance = squares / divisor as f64;
                    match function {
                        AggregateFunction::StddevSamp | AggregateFunction::StddevPop => {
                            RefValue::Float(variance.sqrt())
                        }
                        _ => RefValue::Float(variance),
                    }
                }
            }
        },
        State::Extreme(value) => value,
        State::Sum { count: 0, .. } => RefValue::Null,
        State::Sum { float, count, .. } if is_float => match aggregate.function {
            AggregateFunction::Sum => RefValue::Float(float),
            _ => RefValue::Float(float / count as f64),
        },
        State::Sum { int, count, .. } => match (aggregate.function, input_type) {
            (AggregateFunction::Sum, Some(DataType::Decimal128(..))) => {
                if int.unsigned_abs() >= 10_u128.pow(38) {
                    return Err(QuiverError::overflow("reference SUM", "Decimal128(38)"));
                }
                RefValue::Int(int)
            }
            (AggregateFunction::Sum, _) => RefValue::Int(i128::from(
                i64::try_from(int).map_err(|_| QuiverError::overflow("reference SUM", "Int64"))?,
            )),
            (_, Some(DataType::Decimal128(_, scale))) => {
                // Scale up by 10^(s+4 - s), divide, round half away from zero.
                let extra = (scale.saturating_add(4).min(38) - scale).unsigned_abs();
                let scaled = int
                    .checked_mul(10_i128.pow(u32::from(extra)))
                    .ok_or_else(|| QuiverError::overflow("reference AVG", "i128"))?;
                let count = i128::from(count);
                let (q, r) = (scaled / count, scaled % count);
                let rounded = if 2 * r.abs() >= count {
                    q + scaled.signum()
                } else {
                    q
                };
                if rounded.unsigned_abs() >= 10_u128.pow(38) {
                    return Err(QuiverError::overflow("reference AVG", "Decimal128(38)"));
                }
                RefValue::Int(rounded)
            }
            _ => RefValue::Float(int as f64 / count as f64),
        },
    })
}

/// The rows of a kernel output batch, in the reference's representation.
pub fn batch_rows(batch: &RecordBatch, key_count: usize) -> Result<Vec<RefRow>> {
    (0..batch.num_rows())
        .map(|row| {
            let values = batch
                .columns()
                .iter()
                .map(|c| value_at(c, row))
                .collect::<Result<Vec<_>>>()?;
            let mut values = values;
            let aggregates = values.split_off(key_count);
            Ok((values, aggregates))
        })
        .collect()
}

/// Sorts result rows by key, so outputs in different group orders compare.
pub fn sort_rows(rows: &mut [RefRow]) {
    rows.sort_by(|a, b| {
        a.0.iter()
            .zip(&b.0)
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
}

/// Compares two sorted result sets: exact for everything but floats, which may differ by
/// `relative_tolerance` relative to the larger magnitude, absolute below 1.0 (a variance of
/// equal values is exactly 0 by Welford and a rounding residue by two passes); both NaN, or
/// equal infinities, are equal.
pub fn compare_rows(
    actual: &[RefRow],
    expected: &[RefRow],
    relative_tolerance: f64,
) -> std::result::Result<(), String> {
    if actual.len() != expected.len() {
        return Err(format!(
            "{} groups, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let same_key = a.0.len() == e.0.len()
            && a.0
                .iter()
                .zip(&e.0)
                .all(|(x, y)| x.total_cmp(y) == Ordering::Equal);
        if !same_key {
            return Err(format!("row {i}: key {:?}, expected {:?}", a.0, e.0));
        }
        for (j, (x, y)) in a.1.iter().zip(&e.1).enumerate() {
            let equal = match (x, y) {
                (RefValue::Float(x), RefValue::Float(y)) => {
                    (x.is_nan() && y.is_nan())
                        || x == y
                        || (x - y).abs() <= relative_tolerance * x.abs().max(y.abs()).max(1.0)
                }
                _ => x == y,
            };
            if !equal {
                return Err(format!(
                    "row {i} key {:?}: aggregate {j} is {x:?}, expected {y:?}",
                    a.0
                ));
            }
        }
    }
    Ok(())
}
