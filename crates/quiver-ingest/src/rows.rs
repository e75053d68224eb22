//! Row-shaped [`Record`]s → Arrow [`RecordBatch`]es, with a declared or inferred schema.
//!
//! Coercion rules (a value of type *found* written to a column of type *column*):
//!
//! | column                 | accepts                                                             |
//! |------------------------|---------------------------------------------------------------------|
//! | `Boolean`              | bool                                                                |
//! | `Int8`..`Int64`, `UInt8`..`UInt64` | int64 that fits the range                               |
//! | `Float64`, `Float32`   | float; int64 only when exactly representable; decimal (rounded)     |
//! | `Decimal128(p, s)`     | decimal or int64 when rescaling to `s` is exact and fits `p` digits |
//! | `Timestamp(unit, _)`   | timestamp when the unit conversion is exact; int64 read in `unit`   |
//! | `Date32`               | date                                                                |
//! | `Utf8`, `LargeUtf8`, `Utf8View` | string; anything else only with [`MixedTypes::String`]     |
//! | `Binary`, `LargeBinary`| bytes or string                                                     |
//!
//! A null (or a missing field) in a non-nullable column, a value outside these rules, or a field
//! the schema lacks (with [`UnknownFields::Reject`]) sends the whole record to dead letters; no
//! column of the batch is touched, so batches stay consistent.
//!
//! Inference over the first `infer_schema_rows` records unifies types per field: null with T is
//! T; int64 with float64 is float64; int64 with decimal is decimal(38, s); decimals widen to
//! decimal(38, max scale); float64 with decimal is float64; timestamps take the finest unit.
//! Any other mix is an error, or `Utf8` with [`MixedTypes::String`]. Inferred columns are
//! nullable, in order of first appearance; a field that is null in every inspected record is
//! `Null`-typed.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, Int8Builder, LargeBinaryBuilder,
    LargeStringBuilder, NullBuilder, StringBuilder, StringViewBuilder, TimestampMicrosecondBuilder,
    TimestampMillisecondBuilder, TimestampNanosecondBuilder, TimestampSecondBuilder, UInt16Builder,
    UInt32Builder, UInt64Builder, UInt8Builder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use quiver_core::{
    DeadLetter, DeadLetterPayload, Position, QuiverError, Record, Result, Timestamp, Value,
};

use crate::config::{IngestConfig, MixedTypes, UnknownFields};
use crate::output::IngestOutput;

/// Converts a stream of records into bounded batches, reusing its column builders.
#[derive(Debug)]
pub struct RecordBatcher {
    config: IngestConfig,
    schema: Option<SchemaRef>,
    columns: Vec<ColumnBuilder>,
    /// Per column, the shared name of the field last found at the column's position: records
    /// built from one schema share name allocations, so a pointer check replaces a string compare.
    known_names: Vec<Option<Arc<str>>>,
    /// Records held back until the schema is inferred.
    pending: Vec<Record>,
    rows_in_batch: usize,
    bytes_in_batch: usize,
    next_record_index: u64,
    dead_letters: Vec<DeadLetter>,
    accepted_rows: u64,
    rejected_rows: u64,
}

impl RecordBatcher {
    /// A batcher for a declared schema.
    pub fn with_schema(schema: SchemaRef, config: IngestConfig) -> Result<Self> {
        config.validate()?;
        let columns = schema
            .fields()
            .iter()
            .map(|f| ColumnBuilder::new(f.data_type(), config.batch_size_rows))
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatcher {
            config,
            schema: Some(schema),
            columns,
            known_names: Vec::new(),
            pending: Vec::new(),
            rows_in_batch: 0,
            bytes_in_batch: 0,
            next_record_index: 0,
            dead_letters: Vec::new(),
            accepted_rows: 0,
            rejected_rows: 0,
        })
    }

    /// A batcher that infers its schema from the first `config.infer_schema_rows` records.
    pub fn inferring(config: IngestConfig) -> Result<Self> {
        config.validate()?;
        Ok(RecordBatcher {
            config,
            schema: None,
            columns: Vec::new(),
            known_names: Vec::new(),
            pending: Vec::new(),
            rows_in_batch: 0,
            bytes_in_batch: 0,
            next_record_index: 0,
            dead_letters: Vec::new(),
            accepted_rows: 0,
            rejected_rows: 0,
        })
    }

    /// The schema, once declared or inferred.
    pub fn schema(&self) -> Option<&SchemaRef> {
        self.schema.as_ref()
    }

    /// Adds one record; returns the batches that became full (usually none or one).
    pub fn push(&mut self, record: &Record) -> Result<Vec<RecordBatch>> {
        if self.schema.is_none() {
            self.pending.push(record.clone());
            if self.pending.len() < self.config.infer_schema_rows {
                return Ok(Vec::new());
            }
            return self.infer_and_replay();
        }
        let mut out = Vec::new();
        self.append(record, &mut out)?;
        Ok(out)
    }

    /// Flushes the last partial batch (inferring the schema first if needed).
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        let mut out = if self.schema.is_none() {
            self.infer_and_replay()?
        } else {
            Vec::new()
        };
        if self.rows_in_batch > 0 {
            out.push(self.flush()?);
        }
        Ok(out)
    }

    /// Dead letters collected so far, leaving the list empty.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        std::mem::take(&mut self.dead_letters)
    }

    /// Records accepted into batches so far.
    pub fn accepted_rows(&self) -> u64 {
        self.accepted_rows
    }

    /// Records sent to dead letters so far.
    pub fn rejected_rows(&self) -> u64 {
        self.rejected_rows
    }

    fn infer_and_replay(&mut self) -> Result<Vec<RecordBatch>> {
        let pending = std::mem::take(&mut self.pending);
        let schema = Arc::new(infer_schema(&pending, self.config.mixed_types)?);
        self.columns = schema
            .fields()
            .iter()
            .map(|f| ColumnBuilder::new(f.data_type(), self.config.batch_size_rows))
            .collect::<Result<Vec<_>>>()?;
        self.schema = Some(schema);
        let mut out = Vec::new();
        for record in &pending {
            self.append(record, &mut out)?;
        }
        Ok(out)
    }

    fn append(&mut self, record: &Record, out: &mut Vec<RecordBatch>) -> Result<()> {
        let index = self.next_record_index;
        self.next_record_index += 1;
        let schema = self
            .schema
            .clone()
            .ok_or_else(|| QuiverError::Internal("append before schema is known".into()))?;
        // Convert every column before touching a builder, so a bad record leaves none half
        // appended; each value is converted once.
        let mut scalars = Scalars::new();
        let row_bytes = match self.check(&schema, record, &mut scalars) {
            Ok(row_bytes) => row_bytes,
            Err(reason) => {
                self.reject(index, reason, record);
                return Ok(());
            }
        };
        self.remember_names(record, &schema);
        for (column, scalar) in self.columns.iter_mut().zip(scalars) {
            column.append(scalar)?;
        }
        self.accepted_rows += 1;
        self.rows_in_batch += 1;
        self.bytes_in_batch += row_bytes;
        if self.rows_in_batch >= self.config.batch_size_rows
            || self.bytes_in_batch >= self.config.batch_size_bytes
        {
            out.push(self.flush()?);
        }
        Ok(())
    }

    /// Converts a record's values for the schema's columns into `scalars`, without touching any
    /// builder; returns the row's size in bytes, or why the record does not fit.
    fn check<'r>(
        &self,
        schema: &Schema,
        record: &'r Record,
        scalars: &mut Scalars<'r>,
    ) -> std::result::Result<usize, String> {
        let mut fields_found = 0;
        let mut row_bytes = 0;
        for (column_index, field) in schema.fields().iter().enumerate() {
            match lookup(record, column_index, field.name(), &self.known_names) {
                None if !field.is_nullable() => {
                    return Err(format!(
                        "field `{}`: required ({}), found no such field",
                        field.name(),
                        field.data_type()
                    ));
                }
                None => scalars.push(Scalar::Null),
                Some(Value::Null) if !field.is_nullable() => {
                    return Err(format!(
                        "field `{}`: required ({}), found null",
                        field.name(),
                        field.data_type()
                    ));
                }
                Some(value) => {
                    fields_found += 1;
                    row_bytes += value.encoded_size_bytes();
                    let scalar = convert(value, field.data_type(), self.config.mixed_types)
                        .map_err(|e| {
                            format!(
                                "field `{}`: expected {e}, found {}",
                                field.name(),
                                value.describe()
                            )
                        })?;
                    scalars.push(scalar);
                }
            }
        }
        // Field names are unique in a record, so a count short of its length means extras.
        if self.config.unknown_fields == UnknownFields::Reject && fields_found < record.len() {
            if let Some((name, _)) = record
                .fields()
                .find(|(name, _)| schema.field_with_name(name).is_err())
            {
                return Err(format!("field `{name}` is not in the schema"));
            }
        }
        Ok(row_bytes)
    }

    fn remember_names(&mut self, record: &Record, schema: &Schema) {
        if self.known_names.len() != schema.fields().len() {
            self.known_names = vec![None; schema.fields().len()];
        }
        for (column_index, field) in schema.fields().iter().enumerate() {
            if let Some((name, _)) = record.entry_at(column_index) {
                let known = &mut self.known_names[column_index];
                if !known.as_ref().is_some_and(|k| Arc::ptr_eq(k, name)) && &**name == field.name()
                {
                    *known = Some(Arc::clone(name));
                }
            }
        }
    }

    fn reject(&mut self, index: u64, reason: String, record: &Record) {
        self.rejected_rows += 1;
        self.dead_letters.push(DeadLetter {
            position: Position {
                source: self.config.source_name.clone(),
                record: index,
                byte_offset: None,
            },
            reason,
            payload: DeadLetterPayload::Record(Box::new(record.clone())),
        });
    }

    fn flush(&mut self) -> Result<RecordBatch> {
        let schema = self
            .schema
            .clone()
            .ok_or_else(|| QuiverError::Internal("flush before schema is known".into()))?;
        let arrays: Vec<ArrayRef> = self.columns.iter_mut().map(ColumnBuilder::finish).collect();
        self.rows_in_batch = 0;
        self.bytes_in_batch = 0;
        Ok(RecordBatch::try_new(schema, arrays)?)
    }
}

/// Converts all `records` at once.
pub fn records_to_batches<'a>(
    records: impl IntoIterator<Item = &'a Record>,
    schema: Option<SchemaRef>,
    config: IngestConfig,
) -> Result<IngestOutput> {
    let mut batcher = match schema {
        Some(schema) => RecordBatcher::with_schema(schema, config)?,
        None => RecordBatcher::inferring(config)?,
    };
    let mut batches = Vec::new();
    for record in records {
        batches.extend(batcher.push(record)?);
    }
    batches.extend(batcher.finish()?);
    Ok(IngestOutput {
        schema: batcher.schema().cloned(),
        batches,
        accepted_rows: batcher.accepted_rows(),
        rejected_rows: batcher.rejected_rows(),
        dead_letters: batcher.take_dead_letters(),
    })
}

/// Infers a schema from `records` with the module's unification rules.
pub fn infer_schema(records: &[Record], mixed_types: MixedTypes) -> Result<Schema> {
    let mut names: Vec<&str> = Vec::new();
    let mut types: Vec<DataType> = Vec::new();
    for (record_index, record) in records.iter().enumerate() {
        for (name, value) in record.fields() {
            let found = value.data_type();
            let slot = match names.iter().position(|n| *n == name) {
                Some(slot) => slot,
                None => {
                    names.push(name);
                    types.push(DataType::Null);
                    names.len() - 1
                }
            };
            types[slot] = match unify(&types[slot], &found) {
                Some(t) => t,
                None if mixed_types == MixedTypes::String => DataType::Utf8,
                None => {
                    return Err(QuiverError::Schema {
                        position: Position {
                            source: "schema inference".into(),
                            record: record_index as u64,
                            byte_offset: None,
                        },
                        field: name.to_string(),
                        expected: types[slot].to_string(),
                        found: format!(
                            "{} (no common type; declare a schema or use MixedTypes::String)",
                            value.describe()
                        ),
                    })
                }
            };
        }
    }
    Ok(Schema::new(
        names
            .into_iter()
            .zip(types)
            .map(|(name, data_type)| Field::new(name, data_type, true))
            .collect::<Vec<_>>(),
    ))
}

pub(crate) fn unify(a: &DataType, b: &DataType) -> Option<DataType> {
    use DataType::*;
    Some(match (a, b) {
        (Null, t) | (t, Null) => t.clone(),
        (a, b) if a == b => a.clone(),
        (Int64, Float64) | (Float64, Int64) => Float64,
        (Int64, Decimal128(_, s)) | (Decimal128(_, s), Int64) => Decimal128(38, (*s).max(0)),
        (Decimal128(_, s1), Decimal128(_, s2)) => Decimal128(38, (*s1).max(*s2)),
        (Float64, Decimal128(..)) | (Decimal128(..), Float64) => Float64,
        (Timestamp(u1, tz1), Timestamp(u2, tz2)) if tz1 == tz2 => {
            let unit = if quiver_core::value::unit_exponent(*u1)
                >= quiver_core::value::unit_exponent(*u2)
            {
                *u1
            } else {
                *u2
            };
            Timestamp(unit, tz1.clone())
        }
        _ => return None,
    })
}

fn lookup<'r>(
    record: &'r Record,
    column_index: usize,
    name: &str,
    known_names: &[Option<Arc<str>>],
) -> Option<&'r Value> {
    // Records built with the schema's field order hit the positional fast path, and records
    // sharing name allocations skip the string compare.
    match record.entry_at(column_index) {
        Some((n, v)) => {
            let known = known_names.get(column_index).and_then(Option::as_ref);
            if known.is_some_and(|k| Arc::ptr_eq(k, n)) || &**n == name {
                Some(v)
            } else {
                record.get(name)
            }
        }
        None => record.get(name),
    }
}

/// One row's converted values; rows of up to 16 columns stay on the stack.
type Scalars<'r> = smallvec::SmallVec<[Scalar<'r>; 16]>;

/// A value converted to the representation a column builder takes.
#[derive(Debug)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    I128(i128),
    Str(Cow<'a, str>),
    Bytes(&'a [u8]),
}

/// Converts `value` for a column of `target`; the error names what the column expects.
fn convert<'a>(
    value: &'a Value,
    target: &DataType,
    mixed: MixedTypes,
) -> std::result::Result<Scalar<'a>, String> {
    use DataType as T;
    if value.is_null() {
        return Ok(Scalar::Null);
    }
    let expected = || Err(target.to_string());
    let int_in = |min: i64, max: i64| match value {
        Value::Int64(v) if (min..=max).contains(v) => Ok(Scalar::I64(*v)),
        Value::Int64(_) => Err(format!("{target} (value out of range)")),
        _ => expected(),
    };
    match target {
        T::Boolean => match value {
            Value::Bool(b) => Ok(Scalar::Bool(*b)),
            _ => expected(),
        },
        T::Int8 => int_in(i8::MIN.into(), i8::MAX.into()),
        T::Int16 => int_in(i16::MIN.into(), i16::MAX.into()),
        T::Int32 => int_in(i32::MIN.into(), i32::MAX.into()),
        T::Int64 => int_in(i64::MIN, i64::MAX),
        T::UInt8 => int_in(0, u8::MAX.into()),
        T::UInt16 => int_in(0, u16::MAX.into()),
        T::UInt32 => int_in(0, u32::MAX.into()),
        T::UInt64 => match value {
            Value::Int64(v) if *v >= 0 => Ok(Scalar::U64(v.unsigned_abs())),
            Value::Int64(_) => Err(format!("{target} (value out of range)")),
            _ => expected(),
        },
        T::Float32 | T::Float64 => match value {
            Value::Float64(v) => Ok(Scalar::F64(*v)),
            Value::Int64(v) if (*v as f64) as i128 == i128::from(*v) => Ok(Scalar::F64(*v as f64)),
            Value::Int64(_) => Err(format!("{target} (integer not exactly representable)")),
            Value::Decimal(d) => Ok(Scalar::F64(d.mantissa as f64 / 10f64.powi(d.scale.into()))),
            _ => expected(),
        },
        T::Decimal128(precision, scale) => {
            let mantissa = match value {
                Value::Decimal(d) => d.rescale(*scale),
                Value::Int64(v) => quiver_core::Decimal::new(i128::from(*v), 0).rescale(*scale),
                _ => return expected(),
            };
            match mantissa {
                Some(m) if decimal_fits(m, *precision) => Ok(Scalar::I128(m)),
                _ => Err(format!("{target} (not exact at this precision and scale)")),
            }
        }
        T::Timestamp(unit, _) => match value {
            Value::Timestamp(ts) => ts
                .to_unit(*unit)
                .map(Scalar::I64)
                .ok_or_else(|| format!("{target} (unit conversion not exact)")),
            Value::Int64(v) => Ok(Scalar::I64(*v)),
            _ => expected(),
        },
        T::Date32 => match value {
            Value::Date32(d) => Ok(Scalar::I64(i64::from(*d))),
            _ => expected(),
        },
        T::Utf8 | T::LargeUtf8 | T::Utf8View => match value {
            Value::Utf8(s) => Ok(Scalar::Str(Cow::Borrowed(s))),
            other if mixed == MixedTypes::String => Ok(Scalar::Str(Cow::Owned(render(other)))),
            _ => expected(),
        },
        T::Binary | T::LargeBinary => match value {
            Value::Bytes(b) => Ok(Scalar::Bytes(b)),
            Value::Utf8(s) => Ok(Scalar::Bytes(s.as_bytes())),
            _ => expected(),
        },
        T::Null => expected(),
        _ => expected(),
    }
}

fn decimal_fits(mantissa: i128, precision: u8) -> bool {
    // Decimal128 precision is at most 38 and 10^38 fits in i128.
    10_i128
        .checked_pow(u32::from(precision))
        .is_some_and(|bound| mantissa.unsigned_abs() < bound.unsigned_abs())
}

fn render(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int64(v) => v.to_string(),
        Value::Float64(v) => v.to_string(),
        Value::Utf8(s) => s.clone(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::Timestamp(Timestamp { value, unit, .. }) => format!("{value} {unit:?}"),
        Value::Date32(d) => d.to_string(),
        Value::Decimal(d) => d.to_string(),
    }
}

/// One reusable Arrow builder per supported column type.
#[derive(Debug)]
enum ColumnBuilder {
    Null(NullBuilder),
    Boolean(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal128(Decimal128Builder),
    TimestampSecond(TimestampSecondBuilder),
    TimestampMillisecond(TimestampMillisecondBuilder),
    TimestampMicrosecond(TimestampMicrosecondBuilder),
    TimestampNanosecond(TimestampNanosecondBuilder),
    Date32(Date32Builder),
    Utf8(StringBuilder),
    LargeUtf8(LargeStringBuilder),
    Utf8View(StringViewBuilder),
    Binary(BinaryBuilder),
    LargeBinary(LargeBinaryBuilder),
}

impl ColumnBuilder {
    fn new(data_type: &DataType, capacity: usize) -> Result<Self> {
        use DataType as T;
        Ok(match data_type {
            T::Null => Self::Null(NullBuilder::new()),
            T::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            T::Int8 => Self::Int8(Int8Builder::with_capacity(capacity)),
            T::Int16 => Self::Int16(Int16Builder::with_capacity(capacity)),
            T::Int32 => Self::Int32(Int32Builder::with_capacity(capacity)),
            T::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            T::UInt8 => Self::UInt8(UInt8Builder::with_capacity(capacity)),
            T::UInt16 => Self::UInt16(UInt16Builder::with_capacity(capacity)),
            T::UInt32 => Self::UInt32(UInt32Builder::with_capacity(capacity)),
            T::UInt64 => Self::UInt64(UInt64Builder::with_capacity(capacity)),
            T::Float32 => Self::Float32(Float32Builder::with_capacity(capacity)),
            T::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
            T::Decimal128(p, s) => Self::Decimal128(
                Decimal128Builder::with_capacity(capacity).with_precision_and_scale(*p, *s)?,
            ),
            T::Timestamp(TimeUnit::Second, tz) => Self::TimestampSecond(
                TimestampSecondBuilder::with_capacity(capacity).with_timezone_opt(tz.clone()),
            ),
            T::Timestamp(TimeUnit::Millisecond, tz) => Self::TimestampMillisecond(
                TimestampMillisecondBuilder::with_capacity(capacity).with_timezone_opt(tz.clone()),
            ),
            T::Timestamp(TimeUnit::Microsecond, tz) => Self::TimestampMicrosecond(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone_opt(tz.clone()),
            ),
            T::Timestamp(TimeUnit::Nanosecond, tz) => Self::TimestampNanosecond(
                TimestampNanosecondBuilder::with_capacity(capacity).with_timezone_opt(tz.clone()),
            ),
            T::Date32 => Self::Date32(Date32Builder::with_capacity(capacity)),
            T::Utf8 => Self::Utf8(StringBuilder::with_capacity(capacity, capacity * 8)),
            T::LargeUtf8 => {
                Self::LargeUtf8(LargeStringBuilder::with_capacity(capacity, capacity * 8))
            }
            T::Utf8View => Self::Utf8View(StringViewBuilder::with_capacity(capacity)),
            T::Binary => Self::Binary(BinaryBuilder::with_capacity(capacity, capacity * 8)),
            T::LargeBinary => {
                Self::LargeBinary(LargeBinaryBuilder::with_capacity(capacity, capacity * 8))
            }
            other => {
                return Err(QuiverError::Unsupported(format!(
                    "column type {other} for row ingest"
                )))
            }
        })
    }

    fn append(&mut self, scalar: Scalar<'_>) -> Result<()> {
        macro_rules! narrow {
            ($builder:expr, $ty:ty) => {
                match scalar {
                    Scalar::Null => $builder.append_null(),
                    Scalar::I64(v) => $builder.append_value(<$ty>::try_from(v).map_err(|_| {
                        QuiverError::Internal(format!("range-checked value {v} did not fit"))
                    })?),
                    other => return Err(mismatch(&other)),
                }
            };
        }
        match self {
            Self::Null(b) => match scalar {
                Scalar::Null => b.append_null(),
                other => return Err(mismatch(&other)),
            },
            Self::Boolean(b) => match scalar {
                Scalar::Null => b.append_null(),
                Scalar::Bool(v) => b.append_value(v),
                other => return Err(mismatch(&other)),
            },
            Self::Int8(b) => narrow!(b, i8),
            Self::Int16(b) => narrow!(b, i16),
            Self::Int32(b) => narrow!(b, i32),
            Self::Int64(b) => narrow!(b, i64),
            Self::UInt8(b) => narrow!(b, u8),
            Self::UInt16(b) => narrow!(b, u16),
            Self::UInt32(b) => narrow!(b, u32),
            Self::TimestampSecond(b) => narrow!(b, i64),
            Self::TimestampMillisecond(b) => narrow!(b, i64),
            Self::TimestampMicrosecond(b) => narrow!(b, i64),
            Self::TimestampNanosecond(b) => narrow!(b, i64),
            Self::Date32(b) => narrow!(b, i32),
            Self::UInt64(b) => match scalar {
                Scalar::Null => b.append_null(),
                Scalar::U64(v) => b.append_value(v),
                other => return Err(mismatch(&other)),
            },
            Self::Float32(b) => match scalar {
                Scalar::Null => b.append_null(),
                Scalar::F64(v) => b.append_value(v as f32),
                other => return Err(mismatch(&other)),
            },
            Self::Float64(b) => match scalar {
                Scalar::Null => b.append_null(),
                Scalar::F64(v) => b.append_value(v),
                other => return Err(mismatch(&other)),
            },
            Self::Decimal128(b) => match scalar {
                Scalar::Null => b.append_null(),
                Scalar::I128(v) => b.append_value(v),
                other => return Err(mismatch(&other)),
            },
            Self::Utf8(b) => match scalar {
                Scalar::Null => b.append_null(),
                Scalar::Str(s) => b.append_value(s),
                other => return Err(mismatch(&other)),
            },
            Self::LargeUtf8(b) => match scalar {
                Scalar::Null => b.append_null(),
                Scalar::Str(s) => b.append_value(s),
                other => return Err(mismatch(&other)),
            },
            Self::Utf8View(b) => match scalar {
                Scalar::Null => b.append_null(),
                Scalar::Str(s) => b.append_value(s),
                other => return Err(mismatch(&other)),
            },
            Self::Binary(b) => match scalar {
                Scalar::Null => b.append_null(),
                Scalar::Bytes(v) => b.append_value(v),
                other => return Err(mismatch(&other)),
            },
            Self::LargeBinary(b) => match scalar {
                Scalar::Null => b.append_null(),
                Scalar::Bytes(v) => b.append_value(v),
                other => return Err(mismatch(&other)),
            },
        }
        Ok(())
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Null(b) => Arc::new(b.finish()),
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Int8(b) => Arc::new(b.finish()),
            Self::Int16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::UInt8(b) => Arc::new(b.finish()),
            Self::UInt16(b) => Arc::new(b.finish()),
            Self::UInt32(b) => Arc::new(b.finish()),
            Self::UInt64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Decimal128(b) => Arc::new(b.finish()),
            Self::TimestampSecond(b) => Arc::new(b.finish()),
            Self::TimestampMillisecond(b) => Arc::new(b.finish()),
            Self::TimestampMicrosecond(b) => Arc::new(b.finish()),
            Self::TimestampNanosecond(b) => Arc::new(b.finish()),
            Self::Date32(b) => Arc::new(b.finish()),
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::LargeUtf8(b) => Arc::new(b.finish()),
            Self::Utf8View(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
            Self::LargeBinary(b) => Arc::new(b.finish()),
        }
    }
}

fn mismatch(scalar: &Scalar<'_>) -> QuiverError {
    QuiverError::Internal(format!(
        "converted value {scalar:?} does not match its column builder"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Float64Type, Int64Type};
    use quiver_core::Decimal;

    fn trade(i: i64) -> Record {
        Record::new()
            .with("trader_id", format!("T{i}"))
            .with("price", 100.5 + i as f64)
            .with("quantity", i)
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("trader_id", DataType::Utf8, false),
            Field::new("price", DataType::Float64, false),
            Field::new("quantity", DataType::Int64, true),
        ]))
    }

    #[test]
    fn declared_schema_batches_are_bounded_and_complete() {
        let records: Vec<Record> = (0..25).map(trade).collect();
        let config = IngestConfig::default().with_batch_size_rows(10);
        let out = records_to_batches(&records, Some(schema()), config).unwrap();
        let sizes: Vec<usize> = out.batches.iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, vec![10, 10, 5]);
        assert_eq!(out.accepted_rows, 25);
        assert_eq!(out.rejected_rows, 0);
        let quantity = out.batches[2].column(2).as_primitive::<Int64Type>();
        assert_eq!(quantity.value(4), 24);
    }

    #[test]
    fn each_kind_of_bad_record_becomes_a_dead_letter() {
        let records = vec![
            trade(1),
            Record::new().with("price", 1.0).with("quantity", 1_i64), // missing required
            trade(2).with("price", "abc"),                            // wrong type
            trade(3).with("price", Value::Null),                      // null in required
            trade(4).with("extra", 1_i64),                            // unknown field
            trade(5).with("price", i64::MAX),                         // inexact int → float
            trade(6),
        ];
        let out = records_to_batches(&records, Some(schema()), IngestConfig::default()).unwrap();
        assert_eq!(out.accepted_rows, 2);
        assert_eq!(out.rejected_rows, 5);
        let reasons: Vec<&str> = out.dead_letters.iter().map(|d| d.reason.as_str()).collect();
        assert!(reasons[0].contains("`trader_id`") && reasons[0].contains("no such field"));
        assert!(reasons[1].contains("expected Float64") && reasons[1].contains("\"abc\""));
        assert!(reasons[2].contains("null"));
        assert!(reasons[3].contains("`extra` is not in the schema"));
        assert!(reasons[4].contains("not exactly representable"));
        let positions: Vec<u64> = out.dead_letters.iter().map(|d| d.position.record).collect();
        assert_eq!(positions, vec![1, 2, 3, 4, 5]);
        assert!(matches!(
            out.dead_letters[1].payload,
            DeadLetterPayload::Record(_)
        ));
        let ids = out.batches[0].column(0).as_string::<i32>();
        assert_eq!((ids.value(0), ids.value(1)), ("T1", "T6"));
    }

    #[test]
    fn inference_unifies_types_and_replays_buffered_records() {
        let records = vec![
            Record::new().with("a", 1_i64).with("b", Value::Null),
            Record::new().with("a", 2.5).with("c", Decimal::new(125, 2)),
            Record::new().with("a", 3_i64).with("c", 7_i64),
        ];
        let config = IngestConfig {
            infer_schema_rows: 2,
            ..IngestConfig::default()
        };
        let out = records_to_batches(&records, None, config).unwrap();
        let schema = out.batches[0].schema();
        assert_eq!(schema.field(0).data_type(), &DataType::Float64);
        assert_eq!(schema.field(1).data_type(), &DataType::Null);
        assert_eq!(schema.field(2).data_type(), &DataType::Decimal128(38, 2));
        assert_eq!(out.accepted_rows, 3);
        let a = out.batches[0].column(0).as_primitive::<Float64Type>();
        assert_eq!(a.values().to_vec(), vec![1.0, 2.5, 3.0]);
        let c = out.batches[0].column(2).as_primitive::<Decimal128Type>();
        assert!(c.is_null(0));
        assert_eq!((c.value(1), c.value(2)), (125, 700));
    }

    #[test]
    fn mixed_types_are_an_error_or_strings_as_configured() {
        let records = vec![
            Record::new().with("a", true),
            Record::new().with("a", 1_i64),
        ];
        let error = records_to_batches(&records, None, IngestConfig::default()).unwrap_err();
        assert!(error.to_string().contains("no common type"), "{error}");
        let config = IngestConfig {
            mixed_types: MixedTypes::String,
            ..IngestConfig::default()
        };
        let out = records_to_batches(&records, None, config).unwrap();
        let a = out.batches[0].column(0).as_string::<i32>();
        assert_eq!((a.value(0), a.value(1)), ("true", "1"));
    }

    #[test]
    fn narrow_and_decimal_columns_check_ranges() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("small", DataType::Int8, true),
            Field::new("money", DataType::Decimal128(5, 2), true),
        ]));
        let records = vec![
            Record::new()
                .with("small", 127_i64)
                .with("money", Decimal::new(99999, 2)),
            Record::new().with("small", 128_i64),
            Record::new().with("money", Decimal::new(1, 3)),
            Record::new().with("money", 1000_i64),
        ];
        let out = records_to_batches(&records, Some(schema), IngestConfig::default()).unwrap();
        assert_eq!(out.accepted_rows, 1);
        assert_eq!(out.rejected_rows, 3);
        assert!(out.dead_letters[0].reason.contains("out of range"));
        assert!(out.dead_letters[1].reason.contains("not exact"));
        assert!(out.dead_letters[2].reason.contains("not exact"));
    }

    #[test]
    fn zero_batch_size_is_a_config_error() {
        let config = IngestConfig::default().with_batch_size_rows(0);
        assert!(matches!(
            RecordBatcher::with_schema(schema(), config),
            Err(QuiverError::Config(_))
        ));
    }

    #[test]
    fn byte_bound_splits_batches() {
        let records: Vec<Record> = (0..4)
            .map(|i| {
                Record::new()
                    .with("s", "x".repeat(100))
                    .with("i", i64::from(i))
            })
            .collect();
        let config = IngestConfig {
            batch_size_bytes: 200,
            ..IngestConfig::default()
        };
        let out = records_to_batches(&records, None, config).unwrap();
        assert_eq!(out.batches.len(), 2);
        assert_eq!(out.batch_rows(), 4);
        assert_eq!(out.batches[0].column(0).len(), 2);
    }
}
