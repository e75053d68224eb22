//! The rows of a derived source, computed before the query: a set operation over two queries
//! run on held tables, a `VALUES` list, or a FROM clause with RIGHT / FULL joins (joined one
//! join at a time, each table's unmatched rows after its matches).

use arrow::array::{ArrayRef, RecordBatch, UInt32Array};
use arrow::compute::{concat, concat_batches, take};
use quiver_core::{QuiverError, Result};
use quiver_kernels::expr::Expr;
use quiver_kernels::group_values::new_group_values;
use quiver_kernels::EmitTo;
use quiver_sql::{DerivedSource, Plan, SetOperation, SetOperator};

use crate::join::JoinTable;
use crate::query::held_plan_rows;

/// Rows of the scan probed at a time when joins are computed before the query.
const PROBE_ROWS: usize = 1 << 16;

/// The scanned rows of `plan`, whose source is derived (`plan.derived_source`), in the
/// schema `plan.scan_schema`.
pub fn derived_rows(plan: &Plan) -> Result<Vec<RecordBatch>> {
    let schema = &plan.scan_schema;
    match &plan.derived_source {
        None => Err(QuiverError::Internal(
            "derived rows of a plan without a derived source".into(),
        )),
        Some(DerivedSource::Values(rows)) => {
            let one_row = Plan::single_row_input()?;
            let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::new(); schema.fields().len()];
            for row in rows {
                for (column, e) in columns.iter_mut().zip(row) {
                    column.push(e.evaluate(&one_row)?);
                }
            }
            let columns = columns
                .iter()
                .map(|parts| {
                    let parts: Vec<&dyn arrow::array::Array> =
                        parts.iter().map(|a| a.as_ref()).collect();
                    concat(&parts)
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(vec![RecordBatch::try_new(schema.clone(), columns)?])
        }
        Some(DerivedSource::Joined { scan, joins }) => {
            let scanned = held_plan_rows(scan)?;
            let mut rows = concat_batches(&scan.plan.output_schema, &scanned)?;
            for join in joins {
                let mut join = join.clone();
                if let (Some(derived), None) = (&join.derived, &join.rows) {
                    join.rows = Some(held_plan_rows(derived)?);
                }
                let mut table = JoinTable::try_new(&join)?;
                let mut parts = Vec::new();
                // Probed in slices, so the pair lists stay small (once when there are no rows,
                // for the joined rows' schema).
                let mut offset = 0;
                loop {
                    let length = PROBE_ROWS.min(rows.num_rows() - offset);
                    parts.push(table.probe(&rows.slice(offset, length))?);
                    offset += length;
                    if offset >= rows.num_rows() {
                        break;
                    }
                }
                if join.kind.keeps_unmatched_table_rows() {
                    let unmatched = table.unmatched_rows(&rows.schema())?;
                    // The probe's schema (nullability included) for every part.
                    parts.push(RecordBatch::try_new(
                        parts[0].schema(),
                        unmatched.columns().to_vec(),
                    )?);
                }
                rows = concat_batches(&parts[0].schema(), &parts)?;
            }
            Ok(vec![RecordBatch::try_new(
                schema.clone(),
                rows.columns().to_vec(),
            )?])
        }
        Some(DerivedSource::SetOperation(operation)) => {
            let left = side_rows(plan, &operation.left)?;
            let right = side_rows(plan, &operation.right)?;
            combine(plan, operation, left, right)
        }
    }
}

/// One side's output, its columns cast to the set operation's types.
fn side_rows(plan: &Plan, side: &quiver_sql::PlanSubquery) -> Result<Vec<RecordBatch>> {
    let schema = &plan.scan_schema;
    held_plan_rows(side)?
        .iter()
        .map(|batch| {
            let columns = schema
                .fields()
                .iter()
                .zip(batch.columns())
                .enumerate()
                .map(|(i, (field, column))| {
                    if column.data_type() == field.data_type() {
                        Ok(column.clone())
                    } else {
                        Expr::Cast(Box::new(Expr::Column(i)), field.data_type().clone(), false)
                            .evaluate(batch)
                    }
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

/// `left op right`: every row of both for `UNION ALL`; otherwise the distinct rows (first
/// seen first), each repeated as many times as the operator keeps it.
fn combine(
    plan: &Plan,
    operation: &SetOperation,
    left: Vec<RecordBatch>,
    right: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    if operation.operator == SetOperator::Union && operation.all {
        return Ok(left.into_iter().chain(right).collect());
    }
    let schema = &plan.scan_schema;
    let types: Vec<_> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    let mut rows = new_group_values(&types)?;
    let mut ids = Vec::new();
    let mut counts: Vec<[u64; 2]> = Vec::new();
    for (side, batches) in [&left, &right].into_iter().enumerate() {
        for batch in batches {
            ids.clear();
            rows.intern(batch.columns(), &mut ids)?;
            counts.resize(rows.len(), [0, 0]);
            for &id in &ids {
                counts[id as usize][side] += 1;
            }
        }
    }
    let copies = |[l, r]: [u64; 2]| -> u64 {
        match (operation.operator, operation.all) {
            (SetOperator::Union, _) => 1,
            (SetOperator::Intersect, false) => u64::from(l > 0 && r > 0),
            (SetOperator::Intersect, true) => l.min(r),
            (SetOperator::Except, false) => u64::from(l > 0 && r == 0),
            (SetOperator::Except, true) => l.saturating_sub(r),
        }
    };
    let mut picked = Vec::new();
    for (id, &count) in counts.iter().enumerate() {
        let id = u32::try_from(id)
            .map_err(|_| QuiverError::Internal("more than u32::MAX distinct rows".into()))?;
        picked.extend(std::iter::repeat_n(id, copies(count) as usize));
    }
    let picked = UInt32Array::from(picked);
    let keys = rows.emit(EmitTo::All)?;
    let columns = keys
        .iter()
        .zip(schema.fields())
        .map(|(key, field)| {
            let column = take(key.as_ref(), &picked, None)?;
            if column.data_type() == field.data_type() {
                Ok(column)
            } else {
                Ok(arrow::compute::cast(&column, field.data_type())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(vec![RecordBatch::try_new(schema.clone(), columns)?])
}
