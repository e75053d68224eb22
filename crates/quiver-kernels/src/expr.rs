//! Scalar expressions evaluated over whole batches with Arrow compute kernels.
//!
//! Arithmetic is checked: integer overflow and division by zero are errors, as in SQL — also a
//! zero integer or decimal divisor when the division is computed in floats; only a float
//! divisor of 0.0 gives IEEE's ±∞ or NaN. Mixed
//! numeric operands are coerced first: any float makes both `Float64`; otherwise any decimal
//! makes both `Decimal128(38, max scale)` for `+`/`-`/`%`, `*` multiplies exactly into
//! `Decimal128(38, s1 + s2)` (an integer has scale 0; past scale 38 an error), and `/`
//! divides in `Float64` (as DuckDB does); otherwise both
//! become `Int64`, except that `UInt64` with a signed integer becomes `Decimal128(38, 0)` for
//! `+`/`-` and comparisons (both ranges exactly) and two unsigned operands with a `UInt64` stay
//! `UInt64`. Comparisons use the same coercion; strings compare with strings; dictionary-encoded
//! operands take part as their values. Operand casts are exact: a value that does not fit the
//! common type is an error, never a NULL.
//!
//! `AND` and `OR` evaluate their right side over every row at once; if that fails (division by
//! zero, overflow), it is evaluated again over only the rows the left side does not decide,
//! so `x <> 0 AND 10 / x > 1` works as it reads.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, Datum, RecordBatch, StringArray,
};
use arrow::compute::kernels::{boolean, cmp, numeric};
use arrow::compute::{cast, is_not_null, is_null};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use quiver_core::{QuiverError, Result};

pub use crate::functions::ScalarFunction;

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// NULL (typed as `Null`).
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int64(i64),
    /// A float.
    Float64(f64),
    /// An exact decimal: mantissa and scale.
    Decimal(i128, i8),
    /// A string.
    Utf8(String),
    /// An interval (`INTERVAL '1 day'`): calendar months, days and nanoseconds, added to
    /// dates and timestamps field by field as in PostgreSQL.
    Interval {
        /// Months (a year is 12).
        months: i32,
        /// Days.
        days: i32,
        /// Nanoseconds (hours, minutes, seconds and fractions).
        nanos: i64,
    },
}

impl Literal {
    /// The literal as a one-element array.
    pub fn to_array(&self) -> Result<ArrayRef> {
        Ok(match self {
            Literal::Null => new_null_array(&DataType::Null, 1),
            Literal::Bool(v) => Arc::new(BooleanArray::from(vec![*v])),
            Literal::Int64(v) => Arc::new(arrow::array::Int64Array::from(vec![*v])),
            Literal::Float64(v) => Arc::new(arrow::array::Float64Array::from(vec![*v])),
            Literal::Interval {
                months,
                days,
                nanos,
            } => Arc::new(arrow::array::IntervalMonthDayNanoArray::from(vec![
                arrow::datatypes::IntervalMonthDayNano::new(*months, *days, *nanos),
            ])),
            Literal::Decimal(m, s) => Arc::new(
                arrow::array::Decimal128Array::from(vec![*m]).with_precision_and_scale(38, *s)?,
            ),
            Literal::Utf8(v) => Arc::new(arrow::array::StringArray::from(vec![v.as_str()])),
        })
    }
}

/// Binary operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Multiply,
    /// `/`
    Divide,
    /// `%`
    Modulo,
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `AND` (three-valued)
    And,
    /// `OR` (three-valued)
    Or,
}

impl fmt::Display for BinaryOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BinaryOp::Plus => "+",
            BinaryOp::Minus => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Modulo => "%",
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
        })
    }
}

/// A scalar expression over the columns of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The column at this index.
    Column(usize),
    /// A constant.
    Literal(Literal),
    /// `left op right`.
    Binary(Box<Expr>, BinaryOp, Box<Expr>),
    /// `NOT expr`.
    Not(Box<Expr>),
    /// `-expr`.
    Negate(Box<Expr>),
    /// `expr IS NULL` (or `IS NOT NULL` when the flag is true).
    IsNull(Box<Expr>, bool),
    /// `CAST(expr AS type)`; `TRY_CAST` when the flag is true (NULL instead of an error).
    Cast(Box<Expr>, DataType, bool),
    /// `CASE WHEN condition THEN value ... [ELSE value] END`: each branch's value is evaluated
    /// only over the rows that branch decides (so `CASE WHEN x = 0 THEN 0 ELSE 1 / x END` never
    /// divides by zero); a NULL condition does not match; no match and no ELSE gives NULL.
    Case(Vec<(Expr, Expr)>, Option<Box<Expr>>),
    /// `value [NOT] LIKE pattern` (`ILIKE` when `case_insensitive`), `%` and `_` wildcards.
    Like {
        /// The string tested.
        value: Box<Expr>,
        /// The pattern.
        pattern: Box<Expr>,
        /// `NOT LIKE`.
        negated: bool,
        /// `ILIKE`.
        case_insensitive: bool,
    },
    /// A scalar function of its arguments.
    Function(ScalarFunction, Vec<Expr>),
    /// `value IN (values of a subquery)`: TRUE when the value is in the set, NULL when it is
    /// NULL or not in a set holding a NULL, else FALSE.
    InSet(Box<Expr>, ValueSet),
}

/// The distinct values of one column (a subquery's result), tested by hash lookups of their
/// row-format bytes.
#[derive(Debug, Clone)]
pub struct ValueSet {
    values: ArrayRef,
    members: Arc<std::collections::HashSet<Vec<u8>>>,
    has_null: bool,
}

impl PartialEq for ValueSet {
    fn eq(&self, other: &Self) -> bool {
        self.values.to_data() == other.values.to_data()
    }
}

impl ValueSet {
    /// The set of `values`' values.
    pub fn try_new(values: ArrayRef) -> Result<ValueSet> {
        let converter = arrow::row::RowConverter::new(vec![arrow::row::SortField::new(
            values.data_type().clone(),
        )])?;
        // -0.0 is 0.0 and NaN is NaN, as `=` has them.
        let normalized = crate::group_values::normalize_floats(&values)?;
        let rows = converter.convert_columns(std::slice::from_ref(&normalized))?;
        let members = (0..values.len())
            .filter(|&i| values.is_valid(i))
            .map(|i| rows.row(i).as_ref().to_vec())
            .collect();
        Ok(ValueSet {
            has_null: values.null_count() > 0,
            values,
            members: Arc::new(members),
        })
    }

    /// Distinct non-NULL values held.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// True when no non-NULL value is held.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// SQL `IN` of each of `probe`'s values.
    pub fn contains(&self, probe: &ArrayRef) -> Result<ArrayRef> {
        let set_type = self.values.data_type();
        let common = coerce(probe.data_type(), BinaryOp::Eq, set_type)?;
        let (probe, set) = if &common == set_type {
            (cast(probe, set_type)?, None)
        } else {
            // The set's values in the common type (an integer set tested with decimals).
            let widened = ValueSet::try_new(cast(&self.values, &common)?)?;
            (cast(probe, &common)?, Some(widened))
        };
        let set = set.as_ref().unwrap_or(self);
        let converter = arrow::row::RowConverter::new(vec![arrow::row::SortField::new(
            probe.data_type().clone(),
        )])?;
        let normalized = crate::group_values::normalize_floats(&probe)?;
        let rows = converter.convert_columns(std::slice::from_ref(&normalized))?;
        let empty = set.members.is_empty() && !set.has_null;
        let result: BooleanArray = (0..probe.len())
            .map(|i| {
                if probe.is_null(i) {
                    // Nothing is IN an empty set, NULL included.
                    (empty).then_some(false)
                } else if set.members.contains(rows.row(i).as_ref()) {
                    Some(true)
                } else if set.has_null {
                    None
                } else {
                    Some(false)
                }
            })
            .collect();
        Ok(Arc::new(result))
    }
}

impl Expr {
    /// Whether the expression reads no column (a constant).
    pub fn is_constant(&self) -> bool {
        match self {
            Expr::Column(_) => false,
            Expr::Literal(_) => true,
            Expr::Binary(l, _, r) => l.is_constant() && r.is_constant(),
            Expr::Not(e) | Expr::Negate(e) | Expr::IsNull(e, _) | Expr::Cast(e, _, _) => {
                e.is_constant()
            }
            Expr::Case(branches, otherwise) => {
                branches
                    .iter()
                    .all(|(c, v)| c.is_constant() && v.is_constant())
                    && otherwise.as_ref().is_none_or(|e| e.is_constant())
            }
            Expr::Like { value, pattern, .. } => value.is_constant() && pattern.is_constant(),
            Expr::Function(_, args) => args.iter().all(Expr::is_constant),
            Expr::InSet(value, _) => value.is_constant(),
        }
    }

    /// Constant subexpressions replaced by their value, computed once here instead of per
    /// batch. A constant that fails to evaluate (`1 / 0`) stays as written, so it errors only
    /// if a row reaches it; values without a literal form (timestamps) stay too.
    pub fn fold(self) -> Expr {
        if matches!(self, Expr::Literal(_) | Expr::Column(_)) {
            return self;
        }
        if self.is_constant() {
            let one_row = RecordBatch::try_new_with_options(
                Arc::new(Schema::empty()),
                Vec::new(),
                &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
            );
            if let Ok(value) = one_row.and_then(|batch| {
                self.evaluate(&batch)
                    .map_err(|e| arrow::error::ArrowError::ComputeError(e.to_string()))
            }) {
                if let Some(literal) = literal_of(&value) {
                    return Expr::Literal(literal);
                }
            }
            return self;
        }
        let fold = |e: Box<Expr>| Box::new(e.fold());
        match self {
            Expr::Binary(l, op, r) => Expr::Binary(fold(l), op, fold(r)),
            Expr::Not(e) => Expr::Not(fold(e)),
            Expr::Negate(e) => Expr::Negate(fold(e)),
            Expr::IsNull(e, negated) => Expr::IsNull(fold(e), negated),
            Expr::Cast(e, to, safe) => Expr::Cast(fold(e), to, safe),
            Expr::Case(branches, otherwise) => Expr::Case(
                branches
                    .into_iter()
                    .map(|(c, v)| (c.fold(), v.fold()))
                    .collect(),
                otherwise.map(fold),
            ),
            Expr::Like {
                value,
                pattern,
                negated,
                case_insensitive,
            } => Expr::Like {
                value: fold(value),
                pattern: fold(pattern),
                negated,
                case_insensitive,
            },
            Expr::Function(f, args) => {
                Expr::Function(f, args.into_iter().map(Expr::fold).collect())
            }
            Expr::InSet(value, set) => Expr::InSet(fold(value), set),
            other => other,
        }
    }

    /// The same expression with every column index passed through `renumber`.
    pub fn map_columns(self, renumber: &dyn Fn(usize) -> usize) -> Expr {
        self.transform(&|e| match e {
            Expr::Column(i) => Expr::Column(renumber(i)),
            other => other,
        })
    }

    /// The type this expression produces over `schema`.
    pub fn data_type(&self, schema: &Schema) -> Result<DataType> {
        let empty = RecordBatch::new_empty(Arc::new(schema.clone()));
        Ok(self.evaluate(&empty)?.data_type().clone())
    }

    /// Evaluates over every row of `batch`.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        let rows = batch.num_rows();
        match self {
            Expr::Column(i) => batch.columns().get(*i).cloned().ok_or_else(|| {
                QuiverError::Internal(format!(
                    "column {i} of a {}-column batch",
                    batch.num_columns()
                ))
            }),
            Expr::Literal(literal) => broadcast(&literal.to_array()?, rows),
            Expr::Binary(left, op @ (BinaryOp::And | BinaryOp::Or), right) => {
                let left = left.evaluate(batch)?;
                match right.evaluate(batch) {
                    Ok(right) => binary(&left, *op, &right),
                    Err(error) => logical_on_undecided_rows(batch, &left, *op, right, error),
                }
            }
            Expr::Binary(left_expr, op, right_expr) => {
                let left = left_expr.evaluate(batch)?;
                let right = right_expr.evaluate(batch)?;
                let left = text_literal_as_number(left_expr, left, right.data_type(), batch)?;
                let right = text_literal_as_number(right_expr, right, left.data_type(), batch)?;
                binary(&left, *op, &right)
            }
            Expr::Not(inner) => {
                let value = cast_null_to_bool(&inner.evaluate(batch)?)?;
                Ok(Arc::new(boolean::not(as_boolean(&value, "NOT")?)?))
            }
            Expr::Negate(inner) => {
                let value = inner.evaluate(batch)?;
                match value.data_type() {
                    // An untyped NULL negated is NULL.
                    DataType::Null => Ok(value),
                    data_type if data_type.is_numeric() => Ok(numeric::neg(&value)
                        .map_err(|_| QuiverError::overflow("negation", data_type))?),
                    other => Err(QuiverError::Unsupported(format!(
                        "negation of {other}; it takes numbers"
                    ))),
                }
            }
            Expr::IsNull(inner, negated) => {
                let value = inner.evaluate(batch)?;
                Ok(Arc::new(if *negated {
                    is_not_null(&value)?
                } else {
                    is_null(&value)?
                }))
            }
            Expr::Cast(inner, to, safe) => {
                let mut value = plain(&inner.evaluate(batch)?)?;
                if is_string(value.data_type())
                    && matches!(
                        to,
                        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
                    )
                {
                    // ' 2024-01-05 ' reads as a date, as numbers and booleans with spaces do,
                    // and '2024-01-05 10:20' as a timestamp, as in PostgreSQL and DuckDB.
                    value = trimmed(&value, matches!(to, DataType::Timestamp(..)))?;
                }
                if to == &DataType::Utf8 {
                    if let DataType::Timestamp(..) = value.data_type() {
                        return timestamp_text(&value);
                    }
                }
                if to.is_integer() && matches!(value.data_type(), DataType::Decimal128(_, 1..)) {
                    // Decimals round to the nearest integer, ties away from zero (PostgreSQL's
                    // numeric rounding); Arrow's cast would truncate. Rescaling rounds.
                    value = cast(&value, &DataType::Decimal128(38, 0))?;
                }
                if to.is_integer() && value.data_type().is_floating() {
                    // SQL rounds floats to the nearest integer (ties to even), as
                    // PostgreSQL and DuckDB do; Arrow's cast would truncate.
                    let floats = cast(&value, &DataType::Float64)?;
                    let floats = floats.as_primitive::<arrow::datatypes::Float64Type>();
                    value = Arc::new(
                        floats.unary::<_, arrow::datatypes::Float64Type>(f64::round_ties_even),
                    );
                }
                let text_to_decimal =
                    is_string(value.data_type()) && matches!(to, DataType::Decimal128(..));
                if text_to_decimal {
                    value = without_exponents(&value)?;
                }
                let options = arrow::compute::CastOptions {
                    safe: *safe,
                    ..Default::default()
                };
                arrow::compute::cast_with_options(&value, to, &options).map_err(|e| match e {
                    // Arrow names its default decimal type, not the one asked for.
                    arrow::error::ArrowError::CastError(message) if text_to_decimal => {
                        QuiverError::Arrow(arrow::error::ArrowError::CastError(
                            message.replace("Decimal128(38, 10)", &to.to_string()),
                        ))
                    }
                    other => other.into(),
                })
            }
            Expr::Case(branches, otherwise) => case(batch, branches, otherwise.as_deref()),
            Expr::Like {
                value,
                pattern,
                negated,
                case_insensitive,
            } => {
                let value = text(&value.evaluate(batch)?, "LIKE")?;
                let pattern = text(&pattern.evaluate(batch)?, "LIKE pattern")?;
                check_like_patterns(&pattern)?;
                use arrow::compute::kernels::comparison::{ilike, like, nilike, nlike};
                let result = match (negated, case_insensitive) {
                    (false, false) => like(&value, &pattern)?,
                    (false, true) => ilike(&value, &pattern)?,
                    (true, false) => nlike(&value, &pattern)?,
                    (true, true) => nilike(&value, &pattern)?,
                };
                Ok(Arc::new(result))
            }
            // Subquery placeholders type-check over no rows (a CAST gives a scalar its type).
            Expr::Function(
                ScalarFunction::Subquery(_)
                | ScalarFunction::InSubquery(_)
                | ScalarFunction::ExistsSubquery(_)
                | ScalarFunction::QuantifiedSubquery { .. },
                _,
            ) if rows == 0 => Ok(match self {
                Expr::Function(ScalarFunction::Subquery(_), _) => {
                    arrow::array::new_null_array(&DataType::Null, 0)
                }
                _ => Arc::new(BooleanArray::from(Vec::<bool>::new())),
            }),
            Expr::Function(function @ (ScalarFunction::Greatest | ScalarFunction::Least), args) => {
                let args: Vec<&Expr> = args.iter().collect();
                let args = text_literals_as_numbers(&args, batch)?
                    .iter()
                    .map(|a| plain(&a.evaluate(batch)?))
                    .collect::<Result<Vec<_>>>()?;
                crate::functions::evaluate(*function, &args)
            }
            Expr::Function(function, args) => {
                let args = args
                    .iter()
                    .map(|a| plain(&a.evaluate(batch)?))
                    .collect::<Result<Vec<_>>>()?;
                crate::functions::evaluate(*function, &args)
            }
            Expr::InSet(value, set) => set.contains(&plain(&value.evaluate(batch)?)?),
        }
    }

    /// The expression rebuilt bottom-up: children first, then `rewrite` applied to each node.
    pub fn transform(self, rewrite: &dyn Fn(Expr) -> Expr) -> Expr {
        let child = |e: Box<Expr>| Box::new(e.transform(rewrite));
        let rebuilt = match self {
            Expr::Column(_) | Expr::Literal(_) => self,
            Expr::Binary(l, op, r) => Expr::Binary(child(l), op, child(r)),
            Expr::Not(e) => Expr::Not(child(e)),
            Expr::Negate(e) => Expr::Negate(child(e)),
            Expr::IsNull(e, negated) => Expr::IsNull(child(e), negated),
            Expr::Cast(e, to, safe) => Expr::Cast(child(e), to, safe),
            Expr::Case(branches, otherwise) => Expr::Case(
                branches
                    .into_iter()
                    .map(|(c, v)| (c.transform(rewrite), v.transform(rewrite)))
                    .collect(),
                otherwise.map(child),
            ),
            Expr::Like {
                value,
                pattern,
                negated,
                case_insensitive,
            } => Expr::Like {
                value: child(value),
                pattern: child(pattern),
                negated,
                case_insensitive,
            },
            Expr::Function(f, args) => {
                Expr::Function(f, args.into_iter().map(|a| a.transform(rewrite)).collect())
            }
            Expr::InSet(value, set) => Expr::InSet(child(value), set),
        };
        rewrite(rebuilt)
    }
}

impl Literal {
    /// The value at `row` of `array` as a constant expression of the array's type: a literal,
    /// cast to the type when the literal's own differs (dates and timestamps go through their
    /// text).
    pub fn value_at(array: &ArrayRef, row: usize) -> Result<Expr> {
        let data_type = array.data_type().clone();
        let one = array.slice(row, 1);
        // A NullArray has no validity buffer: its values are NULL by type.
        if one.is_null(0) || data_type == DataType::Null {
            return Ok(Expr::Cast(
                Box::new(Expr::Literal(Literal::Null)),
                data_type,
                false,
            ));
        }
        let carrier = match &data_type {
            DataType::Boolean => DataType::Boolean,
            t if t.is_integer() => DataType::Int64,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => DataType::Float64,
            DataType::Decimal128(_, scale) => DataType::Decimal128(38, *scale),
            _ => DataType::Utf8,
        };
        let carried = if matches!(
            data_type,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _)
        ) {
            // ISO text with the full fraction and the zone, read back exactly by CAST.
            let options = arrow::util::display::FormatOptions::default();
            let formatter = arrow::util::display::ArrayFormatter::try_new(one.as_ref(), &options)?;
            Arc::new(StringArray::from(vec![formatter.value(0).to_string()])) as ArrayRef
        } else {
            cast(&one, &carrier)?
        };
        let literal = literal_of(&carried)
            .ok_or_else(|| QuiverError::Unsupported(format!("a constant of type {data_type}")))?;
        Ok(if carrier == data_type {
            Expr::Literal(literal)
        } else {
            Expr::Cast(Box::new(Expr::Literal(literal)), data_type, false)
        })
    }
}

/// PostgreSQL's date arithmetic: `date - date` is a number of days, `date ± days` a date.
fn date_arithmetic(left: &ArrayRef, op: BinaryOp, right: &ArrayRef) -> Result<Option<ArrayRef>> {
    let (l, r) = (left.data_type(), right.data_type());
    let days = |a: &ArrayRef| -> Result<ArrayRef> {
        if a.data_type() == &DataType::Date32 {
            Ok(cast(&cast(a, &DataType::Int32)?, &DataType::Int64)?)
        } else {
            cast_exact(a, &DataType::Int64)
        }
    };
    let checked = |result: std::result::Result<ArrayRef, arrow::error::ArrowError>| {
        result.map_err(|_| QuiverError::overflow(format!("date {op}"), "Date32"))
    };
    let as_date = |days: ArrayRef| -> Result<ArrayRef> {
        let narrow = cast_exact(&days, &DataType::Int32)
            .map_err(|_| QuiverError::overflow(format!("date {op}"), "Date32"))?;
        Ok(cast(&narrow, &DataType::Date32)?)
    };
    let interval = |t: &DataType| matches!(t, DataType::Interval(_));
    let temporal = |t: &DataType| {
        matches!(
            t,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
        )
    };
    let shifted = |result: std::result::Result<ArrayRef, arrow::error::ArrowError>| {
        result.map_err(|e| QuiverError::Arithmetic {
            context: format!("date/time {op} interval"),
            message: e.to_string(),
        })
    };
    if matches!(op, BinaryOp::Plus | BinaryOp::Minus)
        && ((temporal(l) && r == &DataType::Null) || (l == &DataType::Null && temporal(r)))
    {
        // A date or timestamp plus or minus an untyped NULL is NULL, of the temporal type.
        let data_type = if temporal(l) { l } else { r };
        return Ok(Some(new_null_array(data_type, left.len())));
    }
    if (temporal(l) && interval(r)) || (interval(l) && temporal(r)) {
        // A date with an interval is a timestamp (at midnight), as in PostgreSQL and DuckDB;
        // months and days move on the calendar, then the time.
        let as_timestamp = |a: &ArrayRef| -> Result<ArrayRef> {
            Ok(match a.data_type() {
                DataType::Date32 | DataType::Date64 => {
                    cast(a, &DataType::Timestamp(TimeUnit::Microsecond, None))?
                }
                _ => Arc::clone(a),
            })
        };
        let (left, right) = (&as_timestamp(left)?, &as_timestamp(right)?);
        let (l, r) = (left.data_type(), right.data_type());
        return Ok(Some(match (l, op, r) {
            (t, BinaryOp::Plus, i) if temporal(t) && interval(i) => {
                shifted(numeric::add(left, right))?
            }
            (t, BinaryOp::Minus, i) if temporal(t) && interval(i) => {
                shifted(numeric::sub(left, right))?
            }
            (i, BinaryOp::Plus, t) if temporal(t) && interval(i) => {
                shifted(numeric::add(right, left))?
            }
            _ => {
                return Err(QuiverError::Unsupported(format!(
                    "{l} {op} {r}; an interval is added to or subtracted from a date or timestamp"
                )))
            }
        }));
    }
    Ok(Some(match (l, op, r) {
        (DataType::Date32, BinaryOp::Minus, DataType::Date32) => {
            checked(numeric::sub(&days(left)?, &days(right)?))?
        }
        (DataType::Date32, BinaryOp::Plus | BinaryOp::Minus, i) if i.is_integer() => {
            let sum = if op == BinaryOp::Plus {
                numeric::add(&days(left)?, &days(right)?)
            } else {
                numeric::sub(&days(left)?, &days(right)?)
            };
            as_date(checked(sum)?)?
        }
        (i, BinaryOp::Plus, DataType::Date32) if i.is_integer() => {
            as_date(checked(numeric::add(&days(left)?, &days(right)?))?)?
        }
        _ => return Ok(None),
    }))
}

/// Numbers in scientific notation (`1E5`, `-2.5e-3`) written out in plain digits, which is all
/// Arrow's text-to-decimal cast reads; other strings as they are.
fn without_exponents(array: &ArrayRef) -> Result<ArrayRef> {
    let strings = cast(array, &DataType::Utf8)?;
    let strings = strings.as_string::<i32>();
    if !strings.iter().flatten().any(|s| s.contains(['e', 'E'])) {
        return Ok(Arc::new(strings.clone()));
    }
    Ok(Arc::new(
        strings
            .iter()
            .map(|v| v.map(|s| expanded_exponent(s).unwrap_or_else(|| s.to_string())))
            .collect::<arrow::array::StringArray>(),
    ))
}

/// `1.5e3` as `1500`, `25E-3` as `0.025`; `None` for anything else (left for the cast to
/// judge) and for exponents beyond ±100 (no decimal holds them).
fn expanded_exponent(text: &str) -> Option<String> {
    let text = text.trim();
    let (mantissa, exponent) = text.split_once(['e', 'E'])?;
    let exponent: i32 = exponent
        .strip_prefix('+')
        .unwrap_or(exponent)
        .parse()
        .ok()?;
    if exponent.abs() > 100 {
        return None;
    }
    let (sign, unsigned) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    let digits = format!("{whole}{fraction}");
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Where the point falls within `digits` after the shift.
    let point = whole.len() as i32 + exponent;
    let (whole, fraction) = if point <= 0 {
        (
            "0".to_string(),
            format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)),
        )
    } else if point as usize >= digits.len() {
        (
            format!("{digits}{}", "0".repeat(point as usize - digits.len())),
            String::new(),
        )
    } else {
        let (w, f) = digits.split_at(point as usize);
        (w.to_string(), f.to_string())
    };
    Some(if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    })
}

/// Strings without their leading and trailing whitespace.
/// The strings of `array` without surrounding spaces; with `add_seconds`, a clock of hours and
/// minutes alone (`2024-01-05 10:20`, which Arrow's parser refuses) gains `:00`.
fn trimmed(array: &ArrayRef, add_seconds: bool) -> Result<ArrayRef> {
    let strings = cast(array, &DataType::Utf8)?;
    let strings = strings.as_string::<i32>();
    let minutes_only = |text: &str| {
        let bytes = text.as_bytes();
        bytes.len() == 16 && matches!(bytes[10], b' ' | b'T') && bytes[13] == b':'
    };
    Ok(Arc::new(
        strings
            .iter()
            .map(|v| {
                v.map(|text| {
                    let text = text.trim();
                    if add_seconds && minutes_only(text) {
                        std::borrow::Cow::Owned(format!("{text}:00"))
                    } else {
                        std::borrow::Cow::Borrowed(text)
                    }
                })
            })
            .collect::<arrow::array::StringArray>(),
    ))
}

/// Timestamps as text the way PostgreSQL and DuckDB print them: `2024-01-05 10:20:30.5`
/// (a space, the fraction without trailing zeros, the UTC clock).
pub(crate) fn timestamp_text(value: &ArrayRef) -> Result<ArrayRef> {
    let DataType::Timestamp(unit, _) = value.data_type() else {
        return Err(QuiverError::Internal(
            "timestamp_text of a non-timestamp".into(),
        ));
    };
    let per_second: i64 = match unit {
        TimeUnit::Second => 1,
        TimeUnit::Millisecond => 1_000,
        TimeUnit::Microsecond => 1_000_000,
        TimeUnit::Nanosecond => 1_000_000_000,
    };
    let digits = per_second.ilog10() as usize;
    let raw = cast(&crate::functions::in_utc(value)?, &DataType::Int64)?;
    let raw = raw.as_primitive::<arrow::datatypes::Int64Type>();
    let mut out = arrow::array::StringBuilder::with_capacity(raw.len(), raw.len() * 24);
    for v in raw.iter() {
        let Some(v) = v else {
            out.append_null();
            continue;
        };
        let (seconds, fraction) = (v.div_euclid(per_second), v.rem_euclid(per_second));
        let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
        let (year, month, day) = crate::functions::civil_from_days(days);
        let mut text = format!(
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
            second_of_day / 3_600,
            second_of_day / 60 % 60,
            second_of_day % 60
        );
        if fraction != 0 {
            let fraction = format!("{fraction:0digits$}");
            text.push('.');
            text.push_str(fraction.trim_end_matches('0'));
        }
        out.append_value(text);
    }
    Ok(Arc::new(out.finish()))
}

/// A `LIKE ... ESCAPE 'c'` pattern rewritten with the backslash escapes LIKE evaluates:
/// `c%`, `c_` and `cc` become `\%`, `\_` and a literal `c`; a backslash that is not the escape
/// character stands for itself. `ESCAPE ''` means no escape character, as in PostgreSQL.
pub fn like_pattern_with_escape(pattern: &str, escape: &str) -> Result<String> {
    let mut escape_chars = escape.chars();
    let escape = match (escape_chars.next(), escape_chars.next()) {
        (None, _) => None,
        (Some('\\'), None) => return Ok(pattern.to_string()),
        (Some(c), None) => Some(c),
        _ => {
            return Err(QuiverError::InvalidQuery(format!(
                "LIKE ... ESCAPE '{escape}': the escape must be one character or empty"
            )))
        }
    };
    let mut rewritten = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            let Some(escaped) = chars.next() else {
                return Err(QuiverError::InvalidQuery(format!(
                    "LIKE pattern '{pattern}' ends with the escape character '{c}'"
                )));
            };
            rewritten.push('\\');
            rewritten.push(escaped);
        } else if c == '\\' {
            rewritten.push_str("\\\\");
        } else {
            rewritten.push(c);
        }
    }
    Ok(rewritten)
}

/// PostgreSQL's check: a LIKE pattern may not end with an unfinished escape (`'ab\'`).
fn check_like_patterns(patterns: &ArrayRef) -> Result<()> {
    for pattern in patterns.as_string::<i32>().iter().flatten() {
        let trailing = pattern.bytes().rev().take_while(|&b| b == b'\\').count();
        if trailing % 2 == 1 {
            return Err(QuiverError::Unsupported(format!(
                "LIKE pattern '{pattern}' ends with the escape character"
            )));
        }
    }
    Ok(())
}

/// A string operand as `Utf8` (NULL literals included).
fn text(array: &ArrayRef, context: &str) -> Result<ArrayRef> {
    let array = &plain(array)?;
    match array.data_type() {
        DataType::Utf8 => Ok(Arc::clone(array)),
        DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            Ok(cast(array, &DataType::Utf8)?)
        }
        other => Err(QuiverError::Unsupported(format!(
            "{context} of {other}; it takes strings"
        ))),
    }
}

/// The rows of `batch` at `rows` (batches without columns keep their row count).
fn take_batch(batch: &RecordBatch, rows: &[u32]) -> Result<RecordBatch> {
    let indices = arrow::array::UInt32Array::from(rows.to_vec());
    let columns = batch
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &indices, None))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let options = arrow::array::RecordBatchOptions::new().with_row_count(Some(rows.len()));
    Ok(RecordBatch::try_new_with_options(
        batch.schema(),
        columns,
        &options,
    )?)
}

fn case(
    batch: &RecordBatch,
    branches: &[(Expr, Expr)],
    otherwise: Option<&Expr>,
) -> Result<ArrayRef> {
    let values: Vec<&Expr> = branches.iter().map(|(_, v)| v).chain(otherwise).collect();
    let values = text_literals_as_numbers(&values, batch)?;
    let (branch_values, otherwise) = values.split_at(branches.len());
    let otherwise = otherwise.first();
    // The result type: all branch values coerced together (evaluated over no rows).
    let empty = batch.slice(0, 0);
    let mut result_type = DataType::Null;
    for value in branch_values.iter().chain(otherwise) {
        let branch_type = value.evaluate(&empty)?.data_type().clone();
        result_type = coerce(&result_type, BinaryOp::Eq, &branch_type).map_err(|_| {
            QuiverError::Unsupported(format!(
                "CASE branches of types {result_type} and {branch_type}; no common type"
            ))
        })?;
    }
    let rows = batch.num_rows();
    let mut remaining: Vec<u32> = (0..rows as u32).collect();
    let mut parts: Vec<ArrayRef> = Vec::new();
    let mut picks: Vec<(usize, usize)> = vec![(0, 0); rows];
    for ((condition, _), value) in branches.iter().zip(branch_values) {
        if remaining.is_empty() {
            break;
        }
        let subset = take_batch(batch, &remaining)?;
        let decided = cast_null_to_bool(&condition.evaluate(&subset)?)?;
        let decided = as_boolean(&decided, "CASE WHEN")?;
        let (mut chosen, mut rest) = (Vec::new(), Vec::new());
        for (i, &row) in remaining.iter().enumerate() {
            if decided.is_valid(i) && decided.value(i) {
                chosen.push(row);
            } else {
                rest.push(row);
            }
        }
        if !chosen.is_empty() {
            let values = value.evaluate(&take_batch(batch, &chosen)?)?;
            parts.push(cast(&values, &result_type)?);
            for (j, &row) in chosen.iter().enumerate() {
                picks[row as usize] = (parts.len() - 1, j);
            }
        }
        remaining = rest;
    }
    if !remaining.is_empty() {
        let values = match otherwise {
            Some(value) => cast(
                &value.evaluate(&take_batch(batch, &remaining)?)?,
                &result_type,
            )?,
            None => new_null_array(&result_type, remaining.len()),
        };
        parts.push(values);
        for (j, &row) in remaining.iter().enumerate() {
            picks[row as usize] = (parts.len() - 1, j);
        }
    }
    if parts.is_empty() {
        return Ok(arrow::array::new_empty_array(&result_type));
    }
    let refs: Vec<&dyn Array> = parts.iter().map(|p| p.as_ref()).collect();
    Ok(arrow::compute::interleave(&refs, &picks)?)
}

/// The literal holding a one-element array's value, for the types literals can hold.
fn literal_of(value: &ArrayRef) -> Option<Literal> {
    if value.len() != 1 {
        return None;
    }
    if value.is_null(0) {
        return (value.data_type() == &DataType::Null).then_some(Literal::Null);
    }
    Some(match value.data_type() {
        DataType::Boolean => Literal::Bool(value.as_boolean().value(0)),
        DataType::Int64 => {
            Literal::Int64(value.as_primitive::<arrow::datatypes::Int64Type>().value(0))
        }
        DataType::Float64 => Literal::Float64(
            value
                .as_primitive::<arrow::datatypes::Float64Type>()
                .value(0),
        ),
        DataType::Decimal128(38, scale) => Literal::Decimal(
            value
                .as_primitive::<arrow::datatypes::Decimal128Type>()
                .value(0),
            *scale,
        ),
        DataType::Utf8 => Literal::Utf8(value.as_string::<i32>().value(0).to_string()),
        _ => return None,
    })
}

fn broadcast(one: &ArrayRef, rows: usize) -> Result<ArrayRef> {
    if rows == 1 {
        return Ok(Arc::clone(one));
    }
    let indices = arrow::array::UInt32Array::from(vec![0_u32; rows]);
    Ok(arrow::compute::take(one, &indices, None)?)
}

fn as_boolean<'a>(array: &'a ArrayRef, context: &str) -> Result<&'a BooleanArray> {
    array.as_boolean_opt().ok_or_else(|| {
        QuiverError::Unsupported(format!(
            "{context} of {}; it takes booleans",
            array.data_type()
        ))
    })
}

/// A dictionary-encoded array as its values (other arrays as they are): expressions work on
/// values, and only grouping uses the encoding.
pub fn plain(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(match array.data_type() {
        DataType::Dictionary(_, values) => cast(array, values)?,
        _ => Arc::clone(array),
    })
}

/// `array` cast to `to` exactly: a value that does not fit is an error, not a NULL.
pub(crate) fn cast_exact(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    let options = arrow::compute::CastOptions {
        safe: false,
        ..Default::default()
    };
    Ok(arrow::compute::cast_with_options(array, to, &options)?)
}

/// `left AND right` / `left OR right` with `right` evaluated only over the rows `left` leaves
/// open (not FALSE for AND, not TRUE for OR); `error` is what evaluating it over every row gave,
/// returned again when every row is open.
fn logical_on_undecided_rows(
    batch: &RecordBatch,
    left: &ArrayRef,
    op: BinaryOp,
    right: &Expr,
    error: QuiverError,
) -> Result<ArrayRef> {
    let decided_by = op == BinaryOp::Or;
    let left_values = cast_null_to_bool(left)?;
    let left_values = as_boolean(&left_values, "AND/OR")?;
    let open: Vec<u32> = (0..left_values.len() as u32)
        .filter(|&row| {
            left_values.is_null(row as usize) || left_values.value(row as usize) != decided_by
        })
        .collect();
    if open.len() == left_values.len() {
        return Err(error);
    }
    let open_right = right.evaluate(&take_batch(batch, &open)?)?;
    let open_right = cast_null_to_bool(&open_right)?;
    let open_right = as_boolean(&open_right, "AND/OR")?;
    // Decided rows take any right value: FALSE AND x is FALSE, TRUE OR x is TRUE.
    let mut full = vec![Some(decided_by); left_values.len()];
    for (&row, value) in open.iter().zip(open_right.iter()) {
        full[row as usize] = value;
    }
    let full: ArrayRef = Arc::new(BooleanArray::from(full));
    binary(left, op, &full)
}

/// A string literal beside a number reads as a number, as PostgreSQL reads its untyped
/// literals: `k = '1'` compares integers, `x + '0.25'` adds the exact decimal 0.25 (its own
/// scale), `f < '1e3'` compares doubles; text that is not such a number is a cast error.
fn text_literal_as_number(
    expr: &Expr,
    value: ArrayRef,
    other: &DataType,
    batch: &RecordBatch,
) -> Result<ArrayRef> {
    let Expr::Literal(Literal::Utf8(text)) = expr else {
        return Ok(value);
    };
    match number_type_of_text(text, other) {
        Some(target) => cast_literal(expr, target, batch),
        None => Ok(value),
    }
}

/// The type a string literal reads as beside a value of type `other`: `None` when `other` is
/// no number.
fn number_type_of_text(text: &str, other: &DataType) -> Option<DataType> {
    Some(match other {
        t if t.is_integer() => DataType::Int64,
        DataType::Decimal128(..) => {
            let trimmed = text.trim();
            let scale = match trimmed.split_once('.') {
                Some((_, fraction)) if fraction.bytes().all(|b| b.is_ascii_digit()) => {
                    fraction.len()
                }
                Some(_) => return Some(DataType::Float64),
                None if trimmed.contains(['e', 'E']) => return Some(DataType::Float64),
                None => 0,
            };
            match i8::try_from(scale) {
                Ok(scale) if scale <= 38 => DataType::Decimal128(38, scale),
                _ => DataType::Float64,
            }
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 => DataType::Float64,
        _ => return None,
    })
}

/// Values that meet in one result (CASE branches and so COALESCE, GREATEST / LEAST arguments),
/// with their string literals read as numbers when the other values are numbers, as PostgreSQL
/// resolves untyped literals: `COALESCE(n, '0')` is an integer; text that is no such number is
/// an error.
fn text_literals_as_numbers(values: &[&Expr], batch: &RecordBatch) -> Result<Vec<Expr>> {
    let is_text_literal = |e: &Expr| matches!(e, Expr::Literal(Literal::Utf8(_)));
    if !values.iter().any(|e| is_text_literal(e)) {
        return Ok(values.iter().map(|&e| e.clone()).collect());
    }
    let empty = batch.slice(0, 0);
    let mut others = DataType::Null;
    for value in values.iter().filter(|e| !is_text_literal(e)) {
        let value_type = value.evaluate(&empty)?.data_type().clone();
        match coerce(&others, BinaryOp::Eq, &value_type) {
            Ok(common) => others = common,
            // The caller reports the mismatch.
            Err(_) => return Ok(values.iter().map(|&e| e.clone()).collect()),
        }
    }
    // Checked on one row: over no rows a bad literal would not fail.
    let one_row = RecordBatch::try_new_with_options(
        Arc::new(Schema::empty()),
        vec![],
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )?;
    values
        .iter()
        .map(|&value| match value {
            Expr::Literal(Literal::Utf8(text)) => match number_type_of_text(text, &others) {
                Some(target) => {
                    cast_literal(value, target.clone(), &one_row)?;
                    Ok(Expr::Cast(Box::new(value.clone()), target, false))
                }
                None => Ok(value.clone()),
            },
            other => Ok(other.clone()),
        })
        .collect()
}

fn cast_literal(literal: &Expr, to: DataType, batch: &RecordBatch) -> Result<ArrayRef> {
    Expr::Cast(Box::new(literal.clone()), to.clone(), false)
        .evaluate(batch)
        .map_err(|error| match literal {
            Expr::Literal(Literal::Utf8(text)) => QuiverError::InvalidQuery(format!(
                "the string '{text}' beside a number is not a {}",
                sql_type_name(&to)
            )),
            _ => error,
        })
}

fn sql_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Int64 => "BIGINT".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        other => other.to_string(),
    }
}

/// The common type two operands are cast to before `op`.
pub fn coerce(left: &DataType, op: BinaryOp, right: &DataType) -> Result<DataType> {
    use DataType as T;
    // Equal decimals still go through the rules below: `/` divides them in floats.
    if left == right && !matches!(left, T::Decimal128(..)) {
        return Ok(left.clone());
    }
    if let T::Dictionary(_, values) = left {
        return coerce(values, op, right);
    }
    if let T::Dictionary(_, values) = right {
        return coerce(left, op, values);
    }
    let is_float = |t: &DataType| matches!(t, T::Float16 | T::Float32 | T::Float64);
    Ok(match (left, right) {
        (T::Null, other) | (other, T::Null) => other.clone(),
        (l, r) if is_float(l) || is_float(r) => T::Float64,
        (T::Decimal128(_, s1), T::Decimal128(_, s2))
            if matches!(op, BinaryOp::Plus | BinaryOp::Minus | BinaryOp::Modulo)
                || is_comparison(op) =>
        {
            T::Decimal128(38, (*s1).max(*s2))
        }
        (T::Decimal128(_, s), i) | (i, T::Decimal128(_, s))
            if i.is_integer()
                && (matches!(op, BinaryOp::Plus | BinaryOp::Minus | BinaryOp::Modulo)
                    || is_comparison(op)) =>
        {
            T::Decimal128(38, *s)
        }
        (T::Decimal128(..), _) | (_, T::Decimal128(..)) => T::Float64,
        (l, r) if l.is_unsigned_integer() && r.is_unsigned_integer() => {
            if l == &T::UInt64 || r == &T::UInt64 {
                T::UInt64
            } else {
                T::Int64
            }
        }
        (T::UInt64, i) | (i, T::UInt64)
            if i.is_integer()
                && (matches!(op, BinaryOp::Plus | BinaryOp::Minus) || is_comparison(op)) =>
        {
            T::Decimal128(38, 0)
        }
        (l, r) if l.is_integer() && r.is_integer() => T::Int64,
        (l, r) if is_string(l) && is_string(r) => T::Utf8,
        // Instants compare in the finer unit; every timestamp is read in UTC, so the zone
        // is dropped (the operands are reinterpreted, not shifted: see `binary`).
        (T::Timestamp(u1, _), T::Timestamp(u2, _)) if is_comparison(op) => {
            T::Timestamp(finer_unit(*u1, *u2), None)
        }
        (T::Timestamp(unit, _), T::Date32 | T::Date64)
        | (T::Date32 | T::Date64, T::Timestamp(unit, _))
            if is_comparison(op) =>
        {
            T::Timestamp(*unit, None)
        }
        (T::Timestamp(..) | T::Date32 | T::Date64, T::Utf8)
        | (T::Utf8, T::Timestamp(..) | T::Date32 | T::Date64)
            if is_comparison(op) =>
        {
            if left != &T::Utf8 {
                left.clone()
            } else {
                right.clone()
            }
        }
        (l, r) => {
            return Err(QuiverError::Unsupported(format!(
                "{l} {op} {r}: no common type"
            )))
        }
    })
}

fn finer_unit(a: TimeUnit, b: TimeUnit) -> TimeUnit {
    let rank = |u: TimeUnit| match u {
        TimeUnit::Second => 0,
        TimeUnit::Millisecond => 1,
        TimeUnit::Microsecond => 2,
        TimeUnit::Nanosecond => 3,
    };
    if rank(a) >= rank(b) {
        a
    } else {
        b
    }
}

/// `array` cast to `to`, an operand's common type; a zoned timestamp going to a zoneless
/// common type keeps its instants (Arrow's cast would read them as local times).
pub(crate) fn cast_operand(array: &ArrayRef, to: &DataType) -> Result<ArrayRef> {
    if array.data_type() == to {
        return Ok(Arc::clone(array));
    }
    if matches!(
        (array.data_type(), to),
        (
            DataType::Timestamp(_, Some(_)),
            DataType::Timestamp(_, None)
        )
    ) {
        return cast_exact(&crate::functions::in_utc(array)?, to);
    }
    if is_string(array.data_type())
        && matches!(
            to,
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
        )
    {
        // Text compared with a date or timestamp reads as a CAST of it does.
        return cast_exact(&trimmed(array, matches!(to, DataType::Timestamp(..)))?, to);
    }
    cast_exact(array, to)
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

fn is_comparison(op: BinaryOp) -> bool {
    matches!(
        op,
        BinaryOp::Eq
            | BinaryOp::NotEq
            | BinaryOp::Lt
            | BinaryOp::LtEq
            | BinaryOp::Gt
            | BinaryOp::GtEq
    )
}

/// Applies `op` to two arrays of equal length.
pub fn binary(left: &ArrayRef, op: BinaryOp, right: &ArrayRef) -> Result<ArrayRef> {
    if matches!(op, BinaryOp::And | BinaryOp::Or) {
        let (l, r) = (cast_null_to_bool(left)?, cast_null_to_bool(right)?);
        let (l, r) = (as_boolean(&l, "AND/OR")?, as_boolean(&r, "AND/OR")?);
        return Ok(Arc::new(match op {
            BinaryOp::And => boolean::and_kleene(l, r)?,
            _ => boolean::or_kleene(l, r)?,
        }));
    }
    let (left, right) = (&plain(left)?, &plain(right)?);
    if let Some(result) = date_arithmetic(left, op, right)? {
        return Ok(result);
    }
    if op == BinaryOp::Multiply {
        if let Some((l, r)) = exact_factors(left, right)? {
            let product = numeric::mul(&l, &r).map_err(|e| arithmetic_error(op, e))?;
            return within_precision(op, product);
        }
    }
    let common = coerce(left.data_type(), op, right.data_type())?;
    let l = cast_operand(left, &common)?;
    let r = cast_operand(right, &common)?;
    if matches!(op, BinaryOp::Divide | BinaryOp::Modulo)
        && common.is_floating()
        && !right.data_type().is_floating()
        && has_zero_divisor(&l, &r)
    {
        // An exact divisor (integer or decimal) computed in floats: zero is still an error, as
        // with exact division, not ±∞ or NaN.
        return Err(QuiverError::Arithmetic {
            context: op.to_string(),
            message: "division by zero".into(),
        });
    }
    let (l, r) = if is_comparison(op) {
        (sql_float_order(l)?, sql_float_order(r)?)
    } else {
        (l, r)
    };
    let (l, r): (&dyn Datum, &dyn Datum) = (&l, &r);
    Ok(match op {
        BinaryOp::Plus => {
            within_precision(op, numeric::add(l, r).map_err(|e| arithmetic_error(op, e))?)?
        }
        BinaryOp::Minus => {
            within_precision(op, numeric::sub(l, r).map_err(|e| arithmetic_error(op, e))?)?
        }
        BinaryOp::Multiply => numeric::mul(l, r).map_err(|e| arithmetic_error(op, e))?,
        BinaryOp::Divide => numeric::div(l, r).map_err(|e| arithmetic_error(op, e))?,
        BinaryOp::Modulo => numeric::rem(l, r).map_err(|e| arithmetic_error(op, e))?,
        BinaryOp::Eq => Arc::new(cmp::eq(l, r)?),
        BinaryOp::NotEq => Arc::new(cmp::neq(l, r)?),
        BinaryOp::Lt => Arc::new(cmp::lt(l, r)?),
        BinaryOp::LtEq => Arc::new(cmp::lt_eq(l, r)?),
        BinaryOp::Gt => Arc::new(cmp::gt(l, r)?),
        BinaryOp::GtEq => Arc::new(cmp::gt_eq(l, r)?),
        BinaryOp::And | BinaryOp::Or => {
            return Err(QuiverError::Internal(
                "AND/OR reached the arithmetic path".into(),
            ))
        }
    })
}

/// The operands of an exact decimal product: both decimal or integer, at least one decimal,
/// scales adding up to at most 38 (more is an error); each as `Decimal128(38, its scale)`, so that Arrow's product
/// is `Decimal128(38, s1 + s2)`, checked for overflow.
fn exact_factors(left: &ArrayRef, right: &ArrayRef) -> Result<Option<(ArrayRef, ArrayRef)>> {
    let scale = |t: &DataType| match t {
        DataType::Decimal128(_, s) => Some(*s),
        t if t.is_integer() || t == &DataType::Null => Some(0),
        _ => None,
    };
    let (Some(sl), Some(sr)) = (scale(left.data_type()), scale(right.data_type())) else {
        return Ok(None);
    };
    let decimal = |t: &DataType| matches!(t, DataType::Decimal128(..));
    if !(decimal(left.data_type()) || decimal(right.data_type())) || sl < 0 || sr < 0 {
        return Ok(None);
    }
    let scale = i16::from(sl) + i16::from(sr);
    if scale > 38 {
        // A double would silently drop digits of the exact product.
        return Err(QuiverError::Arithmetic {
            context: "*".into(),
            message: format!(
                "the exact product of {} and {} needs {scale} decimal places, more than 38; \
                 CAST an operand to fewer decimal places or to DOUBLE",
                left.data_type(),
                right.data_type()
            ),
        });
    }
    let as_decimal = |array: &ArrayRef, s: i8| -> Result<ArrayRef> {
        let to = DataType::Decimal128(38, s);
        if array.data_type() == &to {
            Ok(Arc::clone(array))
        } else {
            cast_exact(array, &to)
        }
    };
    Ok(Some((as_decimal(left, sl)?, as_decimal(right, sr)?)))
}

/// A decimal result checked against its precision: a sum of two 38-digit decimals fits an
/// `i128` with 39 digits, which Arrow's kernels do not reject.
fn within_precision(op: BinaryOp, result: ArrayRef) -> Result<ArrayRef> {
    if let DataType::Decimal128(precision, _) = result.data_type() {
        result
            .as_primitive::<arrow::datatypes::Decimal128Type>()
            .validate_decimal_precision(*precision)
            .map_err(|_| QuiverError::Arithmetic {
                context: op.to_string(),
                message: format!("overflow of {}", result.data_type()),
            })?;
    }
    Ok(result)
}

/// Arrow's division-by-zero and overflow errors in SQL's words; other errors as they are.
fn arithmetic_error(op: BinaryOp, error: arrow::error::ArrowError) -> QuiverError {
    match error {
        arrow::error::ArrowError::DivideByZero => QuiverError::Arithmetic {
            context: op.to_string(),
            message: "division by zero".into(),
        },
        arrow::error::ArrowError::ArithmeticOverflow(message) => QuiverError::Arithmetic {
            context: op.to_string(),
            message: format!(
                "overflow: {}",
                message.trim_start_matches("Overflow happened on: ")
            ),
        },
        other => other.into(),
    }
}

/// Whether a `Float64` division has a zero divisor in a row where the dividend is not NULL
/// (a NULL operand makes the row NULL, as in exact division).
fn has_zero_divisor(dividends: &ArrayRef, divisors: &ArrayRef) -> bool {
    divisors
        .as_primitive_opt::<arrow::datatypes::Float64Type>()
        .is_some_and(|v| {
            v.iter()
                .enumerate()
                .any(|(row, x)| x == Some(0.0) && dividends.is_valid(row))
        })
}

/// Floats prepared for Arrow's comparison kernels, which order by IEEE total order: `-0.0`
/// becomes `0.0` (SQL: `-0.0 = 0.0`) and every NaN the positive quiet NaN (SQL: NaN equals NaN
/// and is above every number; a NaN with the sign bit, as `0.0 / 0.0` gives on x86, would
/// otherwise sort below `-∞`). Other types pass through.
pub fn sql_float_order(array: ArrayRef) -> Result<ArrayRef> {
    use arrow::datatypes::{Float32Type, Float64Type};
    Ok(match array.data_type() {
        DataType::Float64 => Arc::new(
            array
                .as_primitive::<Float64Type>()
                .unary::<_, Float64Type>(|v| if v.is_nan() { f64::NAN } else { v + 0.0 }),
        ),
        DataType::Float32 => Arc::new(
            array
                .as_primitive::<Float32Type>()
                .unary::<_, Float32Type>(|v| if v.is_nan() { f32::NAN } else { v + 0.0 }),
        ),
        DataType::Float16 => sql_float_order(cast(&array, &DataType::Float64)?)?,
        _ => array,
    })
}

fn cast_null_to_bool(array: &ArrayRef) -> Result<ArrayRef> {
    Ok(if array.data_type() == &DataType::Null {
        cast(array, &DataType::Boolean)?
    } else {
        Arc::clone(array)
    })
}

/// A schema field for an expression result.
pub fn field(name: &str, data_type: DataType) -> Field {
    Field::new(name, data_type, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_escape_characters_become_backslashes() {
        let rewrite = |p: &str, e: &str| super::like_pattern_with_escape(p, e).unwrap();
        assert_eq!(rewrite("a!%b!_c!!", "!"), "a\\%b\\_c\\!");
        assert_eq!(rewrite("a\\b%", "!"), "a\\\\b%");
        assert_eq!(rewrite("a\\%", "\\"), "a\\%");
        assert_eq!(rewrite("a\\%", ""), "a\\\\%");
        assert_eq!(rewrite("%é_", "é"), "%\\_");
        assert!(super::like_pattern_with_escape("ab!", "!").is_err());
        assert!(super::like_pattern_with_escape("ab", "!!").is_err());
    }

    use super::*;
    use arrow::array::{Float64Array, Int64Array};
    use arrow::datatypes::Int64Type;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None, Some(i64::MAX)])),
                Arc::new(Float64Array::from(vec![0.5, 1.5, 2.5])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn arithmetic_coerces_and_checks_overflow() {
        let plus_one = Expr::Binary(
            Box::new(Expr::Column(0)),
            BinaryOp::Plus,
            Box::new(Expr::Literal(Literal::Int64(1))),
        );
        let error = plus_one.evaluate(&batch()).unwrap_err();
        assert!(error.to_string().contains("overflow"), "{error}");
        let mixed = Expr::Binary(
            Box::new(Expr::Column(0)),
            BinaryOp::Multiply,
            Box::new(Expr::Column(1)),
        );
        let result = mixed.evaluate(&batch()).unwrap();
        assert_eq!(result.data_type(), &DataType::Float64);
        assert!(result.is_null(1));
    }

    #[test]
    fn scientific_notation_expands_to_plain_digits() {
        for (text, plain) in [
            ("1E5", Some("100000")),
            ("-2.5e-3", Some("-0.0025")),
            ("3.5e18", Some("3500000000000000000")),
            ("+1.25E+1", Some("12.5")),
            (" 7e0 ", Some("7")),
            ("12.345e1", Some("123.45")),
            ("1e", None),
            ("e5", None),
            ("1x5e2", None),
            ("1e400", None),
        ] {
            assert_eq!(expanded_exponent(text).as_deref(), plain, "{text}");
        }
        let cast = Expr::Cast(
            Box::new(Expr::Literal(Literal::Utf8("1E5".into()))),
            DataType::Decimal128(10, 2),
            false,
        );
        let value = cast.evaluate(&batch()).unwrap();
        let decimal = value.as_primitive::<arrow::datatypes::Decimal128Type>();
        assert_eq!(decimal.value_as_string(0), "100000.00");
        let bad = Expr::Cast(
            Box::new(Expr::Literal(Literal::Utf8("abc".into()))),
            DataType::Decimal128(10, 1),
            false,
        );
        let error = bad.evaluate(&batch()).unwrap_err().to_string();
        assert!(error.contains("Decimal128(10, 1)"), "{error}");
    }

    #[test]
    fn decimals_overflow_past_38_digits_and_divide_in_floats() {
        let decimal = |m: i128, scale: i8| -> ArrayRef {
            Arc::new(
                arrow::array::Decimal128Array::from(vec![m])
                    .with_precision_and_scale(38, scale)
                    .unwrap(),
            )
        };
        let largest = decimal(10i128.pow(38) - 1, 1);
        for op in [BinaryOp::Plus, BinaryOp::Minus] {
            let other = decimal(if op == BinaryOp::Plus { 1 } else { -1 }, 1);
            let error = binary(&largest, op, &other).unwrap_err().to_string();
            assert!(error.contains("overflow of Decimal128(38, 1)"), "{error}");
        }
        let product = binary(
            &decimal(10i128.pow(19), 0),
            BinaryOp::Multiply,
            &decimal(10i128.pow(19), 0),
        );
        assert!(product.is_err(), "{product:?}");
        // Scale 20 + 20: no decimal holds the exact product, and a double would round it.
        let error = binary(&decimal(1, 20), BinaryOp::Multiply, &decimal(1, 20))
            .unwrap_err()
            .to_string();
        assert!(error.contains("needs 40 decimal places"), "{error}");
        let fits = binary(&largest, BinaryOp::Minus, &decimal(1, 1)).unwrap();
        assert_eq!(fits.data_type(), &DataType::Decimal128(38, 1));
        // Equal decimal types divide in floats too.
        let quotient = binary(&decimal(25, 1), BinaryOp::Divide, &decimal(15, 1)).unwrap();
        assert_eq!(quotient.data_type(), &DataType::Float64);
        let value = quotient
            .as_primitive::<arrow::datatypes::Float64Type>()
            .value(0);
        assert_eq!(value, 2.5 / 1.5);
    }

    #[test]
    fn constants_fold_but_failing_ones_stay() {
        let int = |v| Box::new(Expr::Literal(Literal::Int64(v)));
        let seven = Expr::Binary(
            int(1),
            BinaryOp::Plus,
            Box::new(Expr::Binary(int(2), BinaryOp::Multiply, int(3))),
        );
        assert_eq!(seven.fold(), Expr::Literal(Literal::Int64(7)));
        let failing = Expr::Binary(int(1), BinaryOp::Divide, int(0));
        assert_eq!(failing.clone().fold(), failing);
        let mixed = Expr::Binary(
            Box::new(Expr::Column(0)),
            BinaryOp::Plus,
            Box::new(Expr::Binary(int(2), BinaryOp::Minus, int(1))),
        );
        assert_eq!(
            mixed.fold(),
            Expr::Binary(Box::new(Expr::Column(0)), BinaryOp::Plus, int(1))
        );
    }

    #[test]
    fn division_by_zero_is_an_error() {
        let divide = Expr::Binary(
            Box::new(Expr::Column(0)),
            BinaryOp::Divide,
            Box::new(Expr::Literal(Literal::Int64(0))),
        );
        assert!(divide.evaluate(&batch()).is_err());
    }

    #[test]
    fn three_valued_logic() {
        let is_null = Expr::IsNull(Box::new(Expr::Column(0)), false);
        let or = Expr::Binary(
            Box::new(is_null),
            BinaryOp::Or,
            Box::new(Expr::Literal(Literal::Null)),
        );
        let result = or.evaluate(&batch()).unwrap();
        let result = result.as_boolean();
        assert!(result.is_null(0) && result.value(1) && result.is_null(2));
        let negated = Expr::Negate(Box::new(Expr::Literal(Literal::Int64(5))));
        assert_eq!(
            negated
                .evaluate(&batch())
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(2),
            -5
        );
    }
}
