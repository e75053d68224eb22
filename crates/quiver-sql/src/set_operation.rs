//! Query bodies other than one `SELECT`: set operations (`UNION`, `INTERSECT`, `EXCEPT`,
//! with or without `ALL`), `VALUES` lists and parenthesised queries with their own
//! `ORDER BY` / `LIMIT`, planned as rows computed before the query.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use quiver_core::{QuiverError, Result};
use quiver_kernels::expr::{BinaryOp, Expr};
use sqlparser::ast;

use crate::{
    plan_query, streaming, Columns, DerivedSource, EmitMode, NamedQuery, Plan, PlanSubquery,
    SetOperation, SetOperator,
};

/// Plans `query`, whose body is not a plain `SELECT`: the body's rows become the scanned rows
/// of `SELECT * ... ORDER BY ... LIMIT ...` (the query's own clauses).
pub(crate) fn plan_query_body(
    query: &ast::Query,
    tables: &[(String, SchemaRef)],
    parsed: &streaming::Parsed,
    ctes: &[NamedQuery<'_>],
) -> Result<Plan> {
    if parsed.window.is_some() || parsed.emit.is_some() {
        return Err(QuiverError::Unsupported(format!(
            "a WINDOW or EMIT clause on `{}`; window a single SELECT (its FROM may be a \
             subquery holding the set operation)",
            query.body
        )));
    }
    let (derived, schema, name) = match query.body.as_ref() {
        ast::SetExpr::Query(inner) => {
            // `(SELECT ...) ORDER BY ...`: the inner query as a subquery in FROM.
            let mut outer = query.clone();
            outer.with = None;
            *outer.body = select_star_from(ast::TableFactor::Derived {
                lateral: false,
                subquery: inner.clone(),
                alias: None,
                sample: None,
            })?;
            return plan_query(&outer, tables, &streaming::Parsed::default(), ctes);
        }
        ast::SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } => {
            let operator = match op {
                ast::SetOperator::Union => SetOperator::Union,
                ast::SetOperator::Intersect => SetOperator::Intersect,
                ast::SetOperator::Except | ast::SetOperator::Minus => SetOperator::Except,
            };
            let all = match set_quantifier {
                ast::SetQuantifier::All => true,
                ast::SetQuantifier::Distinct | ast::SetQuantifier::None => false,
                other => {
                    return Err(QuiverError::Unsupported(format!(
                        "`{op} {other}`; UNION, INTERSECT and EXCEPT match columns by position \
                         ([ALL | DISTINCT] only)"
                    )))
                }
            };
            let left = side(left, tables, ctes)?;
            let right = side(right, tables, ctes)?;
            let schema = set_schema(&left.plan, &right.plan, op)?;
            let name = format!("({})", op.to_string().to_ascii_lowercase());
            let operation = SetOperation {
                operator,
                all,
                left,
                right,
            };
            (
                DerivedSource::SetOperation(Box::new(operation)),
                schema,
                name,
            )
        }
        ast::SetExpr::Values(values) => {
            let (rows, schema) = plan_values(values)?;
            (DerivedSource::Values(rows), schema, "(values)".to_string())
        }
        other => {
            return Err(QuiverError::Unsupported(format!(
                "query body `{other}`; SELECT, a set operation or VALUES is expected"
            )))
        }
    };
    // The query's ORDER BY, LIMIT and OFFSET apply to the body's rows, named as `name`.
    let mut outer = query.clone();
    outer.with = None;
    *outer.body = select_star_from(ast::TableFactor::Table {
        name: ast::ObjectName::from(vec![ast::Ident::with_quote('"', name.clone())]),
        alias: None,
        args: None,
        with_hints: Vec::new(),
        version: None,
        with_ordinality: false,
        partitions: Vec::new(),
        json_path: None,
        sample: None,
        index_hints: Vec::new(),
    })?;
    let mut plan = plan_query(
        &outer,
        &[(name, schema)],
        &streaming::Parsed::default(),
        &[],
    )?;
    plan.source = String::new();
    plan.derived_source = Some(derived);
    Ok(plan)
}

/// One side of a set operation, planned on its own.
fn side(
    body: &ast::SetExpr,
    tables: &[(String, SchemaRef)],
    ctes: &[NamedQuery<'_>],
) -> Result<PlanSubquery> {
    let query = match body {
        ast::SetExpr::Query(query) => query.as_ref().clone(),
        other => query_of(other.clone())?,
    };
    let plan = plan_query(&query, tables, &streaming::Parsed::default(), ctes)?;
    if plan.explain || plan.window.is_some() || plan.emit == EmitMode::Changes {
        return Err(QuiverError::Unsupported(format!(
            "a window or EMIT CHANGES in `{body}` of a set operation"
        )));
    }
    Ok(PlanSubquery { plan, rows: None })
}

/// The schema of `left op right`: the left side's names, each column of the common type of
/// both sides', nullable.
fn set_schema(left: &Plan, right: &Plan, op: &ast::SetOperator) -> Result<SchemaRef> {
    let (l, r) = (&left.output_schema, &right.output_schema);
    if l.fields().len() != r.fields().len() {
        return Err(QuiverError::Unsupported(format!(
            "each side of {op} must have the same number of columns: {} and {}",
            l.fields().len(),
            r.fields().len()
        )));
    }
    let fields = l
        .fields()
        .iter()
        .zip(r.fields().iter())
        .enumerate()
        .map(|(i, (a, b))| {
            let data_type = common_type(a.data_type(), b.data_type()).map_err(|_| {
                QuiverError::Unsupported(format!(
                    "{op} column {} (`{}`): types {} and {} have no common type; CAST one side",
                    i + 1,
                    a.name(),
                    a.data_type(),
                    b.data_type()
                ))
            })?;
            Ok(Field::new(a.name(), data_type, true))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// The type values of types `a` and `b` are both cast to when they meet in one column.
fn common_type(a: &DataType, b: &DataType) -> Result<DataType> {
    match (a, b) {
        _ if a == b => Ok(a.clone()),
        (DataType::Null, other) | (other, DataType::Null) => Ok(other.clone()),
        // The finer unit; naive on both sides stays naive, else instants are shown in UTC.
        (DataType::Timestamp(_, z1), DataType::Timestamp(_, z2)) => {
            quiver_kernels::expr::coerce(a, BinaryOp::Eq, b).map(|t| match t {
                DataType::Timestamp(unit, _) if z1.is_none() && z2.is_none() => {
                    DataType::Timestamp(unit, None)
                }
                DataType::Timestamp(unit, _) => DataType::Timestamp(unit, Some("+00:00".into())),
                other => other,
            })
        }
        (DataType::Date32, DataType::Timestamp(..))
        | (DataType::Timestamp(..), DataType::Date32) => {
            quiver_kernels::expr::coerce(a, BinaryOp::Eq, b)
        }
        _ if is_text(a) != is_text(b) => Err(QuiverError::Unsupported(format!(
            "{a} and {b}: no common type"
        ))),
        _ => quiver_kernels::expr::coerce(a, BinaryOp::Eq, b),
    }
}

fn is_text(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        || matches!(t, DataType::Dictionary(_, v) if is_text(v))
}

/// `VALUES (...), (...)`: constant expressions per row, each cast to its column's common
/// type; columns named `column1`, `column2`, ... (as PostgreSQL does).
fn plan_values(values: &ast::Values) -> Result<(Vec<Vec<Expr>>, SchemaRef)> {
    let empty = Schema::empty();
    let columns = Columns::new(&empty);
    let width = values.rows.first().map_or(0, |r| r.content.len());
    if width == 0 {
        return Err(QuiverError::Unsupported(
            "VALUES without columns".to_string(),
        ));
    }
    let mut rows = Vec::with_capacity(values.rows.len());
    let mut types: Vec<DataType> = vec![DataType::Null; width];
    for (index, row) in values.rows.iter().enumerate() {
        let row = &row.content;
        if row.len() != width {
            return Err(QuiverError::Unsupported(format!(
                "VALUES row {} has {} values, the first has {width}",
                index + 1,
                row.len()
            )));
        }
        let planned = row
            .iter()
            .map(|e| columns.scalar(e).map(Expr::fold))
            .collect::<Result<Vec<_>>>()?;
        for (column, e) in planned.iter().enumerate() {
            let data_type = e.data_type(&empty)?;
            types[column] = common_type(&types[column], &data_type).map_err(|_| {
                QuiverError::Unsupported(format!(
                    "VALUES column {}: types {} and {data_type} have no common type; CAST one",
                    column + 1,
                    types[column]
                ))
            })?;
        }
        rows.push(planned);
    }
    for row in &mut rows {
        for (e, data_type) in row.iter_mut().zip(&types) {
            if &e.data_type(&empty)? != data_type {
                let value =
                    std::mem::replace(e, Expr::Literal(quiver_kernels::expr::Literal::Null));
                *e = Expr::Cast(Box::new(value), data_type.clone(), false).fold();
            }
        }
    }
    let fields: Vec<Field> = types
        .into_iter()
        .enumerate()
        .map(|(i, t)| Field::new(format!("column{}", i + 1), t, true))
        .collect();
    Ok((rows, Arc::new(Schema::new(fields))))
}

/// `SELECT * FROM relation`.
fn select_star_from(relation: ast::TableFactor) -> Result<ast::SetExpr> {
    let mut select = template_select()?;
    select.from = vec![ast::TableWithJoins {
        relation,
        joins: Vec::new(),
    }];
    Ok(ast::SetExpr::Select(Box::new(select)))
}

/// A query of `body` alone (no WITH, ORDER BY or LIMIT).
fn query_of(body: ast::SetExpr) -> Result<ast::Query> {
    let mut query = template_query()?;
    *query.body = body;
    Ok(query)
}

/// `SELECT * FROM t`, parsed: the AST nodes built here start from it.
fn template_query() -> Result<ast::Query> {
    let parsed = sqlparser::parser::Parser::parse_sql(
        &sqlparser::dialect::GenericDialect {},
        "SELECT * FROM t",
    );
    match parsed.ok().and_then(|mut s| s.pop()) {
        Some(ast::Statement::Query(query)) => Ok(*query),
        _ => Err(QuiverError::Internal(
            "the template query does not parse".into(),
        )),
    }
}

fn template_select() -> Result<ast::Select> {
    match *template_query()?.body {
        ast::SetExpr::Select(select) => Ok(*select),
        _ => Err(QuiverError::Internal(
            "the template query is no SELECT".into(),
        )),
    }
}
