//! Correlated subqueries in `WHERE` (and in the SELECT list of a query without aggregates),
//! rewritten as joins before planning.
//!
//! A subquery whose `WHERE` compares its own columns with the outer query's by equality
//! (`t.k = o.k AND ...`) and is otherwise uncorrelated becomes a grouped subquery joined to the
//! outer rows on those keys (`LEFT JOIN (SELECT t.k, ... FROM t WHERE <the rest> GROUP BY t.k)`),
//! which matches each outer row at most once:
//! - `[NOT] EXISTS (...)` is whether the row found a match;
//! - `x IN (SELECT y ...)` as a `WHERE` conjunct is `EXISTS` with `y = x` added;
//! - a scalar subquery of one aggregate expression (`(SELECT AVG(x) FROM t WHERE t.k = o.k)`)
//!   is that expression per key, and for rows without a match its value over no rows (NULL,
//!   or 0 for COUNT), computed once by the same query over no rows.
//!
//! `EXISTS` / `IN` over one table may also compare other columns (`t.x > o.x`): then the table
//! is mark-joined, every condition checked per candidate pair. Any other reference to the
//! outer query (a non-equality in a scalar subquery, one in its SELECT list) is an error that
//! says which.

use arrow::datatypes::SchemaRef;
use quiver_core::{QuiverError, Result};
use sqlparser::ast;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::{aggregate_function, conjuncts, plan_query, relation_qualifier, streaming, NamedQuery};

/// The alias of each subquery joined here starts with this; its columns are left out of `*`.
pub(crate) const JOINED_SUBQUERY_PREFIX: &str = "quiver subquery ";

/// Whether a FROM item's qualifier is one of the subqueries joined here.
pub(crate) fn is_joined_subquery(qualifier: &str) -> bool {
    qualifier.starts_with(JOINED_SUBQUERY_PREFIX)
}

/// `select` with its correlated subqueries in `WHERE` turned into joins; `None` when it has
/// none.
pub(crate) fn decorrelated(
    select: &ast::Select,
    tables: &[(String, SchemaRef)],
    ctes: &[NamedQuery<'_>],
) -> Result<Option<ast::Select>> {
    let [_] = select.from.as_slice() else {
        return Ok(None);
    };
    let mut rewritten = select.clone();
    let mut joins: Vec<ast::Join> = Vec::new();
    if let Some(selection) = &select.selection {
        // `x IN (SELECT y ...)`, correlated, where only AND / OR lead to it (there a NULL
        // result and FALSE reject the row alike): EXISTS with `y = x`.
        let mut selection = in_as_exists(selection, tables, ctes, &mut joins)?;
        replace_subqueries(&mut selection, tables, ctes, &mut joins)?;
        rewritten.selection = Some(selection);
    }
    // In the SELECT list of a query without aggregation (rows are not grouped, so the joined
    // values stay per row).
    let grouped = !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
        || select.having.is_some()
        || crate::selects_aggregate(select);
    if !grouped {
        for item in &mut rewritten.projection {
            match item {
                ast::SelectItem::UnnamedExpr(e) => {
                    let name = crate::display_name(e);
                    let mut value = e.clone();
                    replace_subqueries(&mut value, tables, ctes, &mut joins)?;
                    if value != *e {
                        // Named as written, not as rewritten.
                        *item = ast::SelectItem::ExprWithAlias {
                            expr: value,
                            alias: ast::Ident::with_quote('"', name),
                        };
                    }
                }
                ast::SelectItem::ExprWithAlias { expr, .. } => {
                    replace_subqueries(expr, tables, ctes, &mut joins)?;
                }
                _ => {}
            }
        }
    }
    if joins.is_empty() && rewritten == *select {
        return Ok(None);
    }
    if let Some(from) = rewritten.from.first_mut() {
        from.joins.extend(joins);
    }
    Ok(Some(rewritten))
}

/// Replaces the correlated EXISTS and scalar subqueries in `expr` (not those nested in a
/// subquery, which belong to it) by the columns of joins added to `joins`.
fn replace_subqueries(
    expr: &mut ast::Expr,
    tables: &[(String, SchemaRef)],
    ctes: &[NamedQuery<'_>],
    joins: &mut Vec<ast::Join>,
) -> Result<()> {
    for subquery_expr in crate::top_level_subqueries(std::iter::once(&*expr)) {
        let replacement = match &subquery_expr {
            ast::Expr::Exists { subquery, negated } => match correlation(subquery, tables, ctes)? {
                // Aggregates without GROUP BY give one row, always: EXISTS is true.
                Some(found) if crate::selects_aggregate(&found.select) => {
                    Some(ast::Expr::value(ast::Value::Boolean(!*negated)))
                }
                Some(found) => Some(exists_join(&found, *negated, joins)?),
                None => None,
            },
            ast::Expr::Subquery(subquery) => match correlation(subquery, tables, ctes)? {
                Some(found) => Some(scalar_join(&found, joins)?),
                None => None,
            },
            _ => None,
        };
        if let Some(replacement) = replacement {
            let _ = ast::visit_expressions_mut(expr, |e| {
                if *e == subquery_expr {
                    *e = replacement.clone();
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
    }
    Ok(())
}

/// `expr` with each correlated `x IN (SELECT y ...)` reached through AND / OR only rewritten as
/// `EXISTS (... AND y = x)`.
fn in_as_exists(
    expr: &ast::Expr,
    tables: &[(String, SchemaRef)],
    ctes: &[NamedQuery<'_>],
    joins: &mut Vec<ast::Join>,
) -> Result<ast::Expr> {
    Ok(match expr {
        ast::Expr::BinaryOp {
            left,
            op: op @ (ast::BinaryOperator::And | ast::BinaryOperator::Or),
            right,
        } => ast::Expr::BinaryOp {
            left: Box::new(in_as_exists(left, tables, ctes, joins)?),
            op: op.clone(),
            right: Box::new(in_as_exists(right, tables, ctes, joins)?),
        },
        ast::Expr::Nested(inner) => {
            ast::Expr::Nested(Box::new(in_as_exists(inner, tables, ctes, joins)?))
        }
        // `x = ANY (SELECT ...)` is `x IN (SELECT ...)`.
        ast::Expr::AnyOp {
            left,
            compare_op: ast::BinaryOperator::Eq,
            right,
            ..
        } if matches!(right.as_ref(), ast::Expr::Subquery(_)) => {
            let ast::Expr::Subquery(subquery) = right.as_ref() else {
                return Ok(expr.clone());
            };
            let as_in = ast::Expr::InSubquery {
                expr: left.clone(),
                subquery: subquery.clone(),
                negated: false,
            };
            let rewritten = in_as_exists(&as_in, tables, ctes, joins)?;
            // Uncorrelated, it stays as written.
            if rewritten == as_in {
                expr.clone()
            } else {
                rewritten
            }
        }
        ast::Expr::InSubquery {
            expr: value,
            subquery,
            negated: false,
        } => match correlation(subquery, tables, ctes)? {
            // One aggregate row per outer row: `x IN (SELECT MAX(y) ...)` is `x = (SELECT ...)`.
            Some(found) if crate::selects_aggregate(&found.select) => ast::Expr::BinaryOp {
                left: value.clone(),
                op: ast::BinaryOperator::Eq,
                right: Box::new(ast::Expr::Subquery(subquery.clone())),
            },
            Some(mut found) => {
                if let Some(why) = &found.outer_in_select {
                    return Err(QuiverError::Unsupported(why.clone()));
                }
                let item = match found.select.projection.as_slice() {
                    [ast::SelectItem::UnnamedExpr(e)
                    | ast::SelectItem::ExprWithAlias { expr: e, .. }] => e.clone(),
                    _ => {
                        return Err(QuiverError::Unsupported(format!(
                            "the subquery of `{expr}` must select one column"
                        )))
                    }
                };
                found.inner_keys.push(item);
                found.outer_keys.push(value.as_ref().clone());
                exists_join(&found, false, joins)?
            }
            None => expr.clone(),
        },
        other => other.clone(),
    })
}

/// A subquery correlated with its outer query by equalities only.
struct Correlation {
    select: ast::Select,
    /// `inner_keys[i] = outer_keys[i]`: over the subquery's columns and the outer query's.
    inner_keys: Vec<ast::Expr>,
    outer_keys: Vec<ast::Expr>,
    /// The subquery's own conditions.
    uncorrelated: Vec<ast::Expr>,
    /// The other conditions reading both queries' columns (`t.x <> o.x`).
    residual: Vec<ast::Expr>,
    /// The subquery's column names and FROM qualifiers (lowercase).
    columns: Vec<String>,
    qualifiers: Vec<String>,
    /// Whether a condition holds a subquery of its own.
    nested: bool,
    /// Why the SELECT list cannot be used (it reads the outer query's columns), if so; EXISTS
    /// ignores it.
    outer_in_select: Option<String>,
}

/// How `query` refers to its outer query: `None` when it does not (or is no plain `SELECT`
/// this rewriting understands: then it is planned as an uncorrelated subquery, which reports
/// any outer name it meets).
fn correlation(
    query: &ast::Query,
    tables: &[(String, SchemaRef)],
    ctes: &[NamedQuery<'_>],
) -> Result<Option<Correlation>> {
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    let plain_group_by = matches!(&select.group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || select.from.is_empty()
        || select.having.is_some()
        || !plain_group_by
        || select.selection.is_none()
    {
        return Ok(None);
    }
    // The subquery's own names: its FROM items' qualifiers and columns.
    let from_text: Vec<String> = select.from.iter().map(|f| f.to_string()).collect();
    let Some(scope_query) = parse_query(&format!("SELECT * FROM {}", from_text.join(", "))) else {
        return Ok(None);
    };
    let Ok(scope) = plan_query(&scope_query, tables, &streaming::Parsed::default(), ctes) else {
        return Ok(None);
    };
    let columns: Vec<String> = scope
        .output_schema
        .fields()
        .iter()
        .map(|f| f.name().to_ascii_lowercase())
        .collect();
    let mut qualifiers: Vec<String> = Vec::new();
    for from in &select.from {
        qualifiers.push(relation_qualifier(&from.relation).to_ascii_lowercase());
        for join in &from.joins {
            qualifiers.push(relation_qualifier(&join.relation).to_ascii_lowercase());
        }
    }
    let side = |expr: &ast::Expr| -> Side {
        let mut side = Side::Constant;
        let _ = ast::visit_expressions(expr, |e| {
            let this = match e {
                ast::Expr::Subquery(_)
                | ast::Expr::InSubquery { .. }
                | ast::Expr::Exists { .. } => Side::Opaque,
                ast::Expr::Identifier(ident) => {
                    if columns.contains(&ident.value.to_ascii_lowercase()) {
                        Side::Inner
                    } else {
                        Side::Outer
                    }
                }
                ast::Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                    let table = &parts[parts.len() - 2];
                    if qualifiers.contains(&table.value.to_ascii_lowercase()) {
                        Side::Inner
                    } else {
                        Side::Outer
                    }
                }
                _ => Side::Constant,
            };
            side = side.with(this);
            std::ops::ControlFlow::<()>::Continue(())
        });
        side
    };
    let mut found = Correlation {
        select: select.as_ref().clone(),
        inner_keys: Vec::new(),
        outer_keys: Vec::new(),
        uncorrelated: Vec::new(),
        residual: Vec::new(),
        columns: columns.clone(),
        qualifiers: qualifiers.clone(),
        nested: false,
        outer_in_select: None,
    };
    let mut correlated = false;
    for conjunct in select.selection.iter().flat_map(conjuncts) {
        match side(conjunct) {
            Side::Outer | Side::Mixed => {}
            other => {
                found.nested |= other == Side::Opaque;
                found.uncorrelated.push(conjunct.clone());
                continue;
            }
        }
        correlated = true;
        let pair = match conjunct {
            ast::Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Eq,
                right,
            } => match (side(left), side(right)) {
                (Side::Inner, Side::Outer) => Some((left, right)),
                (Side::Outer, Side::Inner) => Some((right, left)),
                _ => None,
            },
            _ => None,
        };
        let Some((inner, outer)) = pair else {
            found.residual.push(conjunct.clone());
            continue;
        };
        found.inner_keys.push(inner.as_ref().clone());
        found.outer_keys.push(outer.as_ref().clone());
    }
    if !correlated {
        return Ok(None);
    }
    for item in &select.projection {
        if let ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } =
            item
        {
            if matches!(side(e), Side::Outer | Side::Mixed) && found.outer_in_select.is_none() {
                found.outer_in_select = Some(format!(
                    "`{e}` in the SELECT list of the correlated subquery `{query}` reads the \
                     outer query's columns; only its WHERE may"
                ));
            }
        }
    }
    Ok(Some(found))
}

/// Which query an expression's names belong to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Constant,
    Inner,
    Outer,
    Mixed,
    /// Holds a subquery of its own.
    Opaque,
}

impl Side {
    fn with(self, other: Side) -> Side {
        match (self, other) {
            (Side::Opaque, _) | (_, Side::Opaque) => Side::Opaque,
            (Side::Constant, x) | (x, Side::Constant) => x,
            (a, b) if a == b => a,
            _ => Side::Mixed,
        }
    }
}

/// The joined subquery for `found` (its keys, `extra` columns, a match marker), added to
/// `joins`; returns its alias.
fn join_grouped(found: &Correlation, extra: &str, joins: &mut Vec<ast::Join>) -> Result<String> {
    let alias = format!("{JOINED_SUBQUERY_PREFIX}{}", joins.len() + 1);
    let keys: Vec<String> = found
        .inner_keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} AS \"quiver key {}\"", i + 1))
        .collect();
    let group: Vec<String> = found.inner_keys.iter().map(|k| k.to_string()).collect();
    let from: Vec<String> = found.select.from.iter().map(|f| f.to_string()).collect();
    let filter: Vec<String> = found
        .uncorrelated
        .iter()
        .map(|c| format!("({c})"))
        .collect();
    let on: Vec<String> = found
        .outer_keys
        .iter()
        .enumerate()
        .map(|(i, k)| format!("\"{alias}\".\"quiver key {}\" = ({k})", i + 1))
        .collect();
    let text = format!(
        "SELECT 1 FROM t LEFT JOIN (SELECT {}{extra}, TRUE AS \"quiver match\" FROM {}{} GROUP BY {}) AS \"{alias}\" ON {}",
        keys.join(", "),
        from.join(", "),
        if filter.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", filter.join(" AND "))
        },
        group.join(", "),
        on.join(" AND ")
    );
    let join = parse_query(&text)
        .and_then(|q| match *q.body {
            ast::SetExpr::Select(select) => select.from.into_iter().next(),
            _ => None,
        })
        .and_then(|from| from.joins.into_iter().next())
        .ok_or_else(|| {
            QuiverError::Internal(format!(
                "the rewritten correlated subquery `{text}` does not parse"
            ))
        })?;
    joins.push(join);
    Ok(alias)
}

/// `[NOT] EXISTS`: whether the row found a match.
fn exists_join(
    found: &Correlation,
    negated: bool,
    joins: &mut Vec<ast::Join>,
) -> Result<ast::Expr> {
    if !found.residual.is_empty() {
        return mark_join(found, negated, joins);
    }
    let alias = join_grouped(found, "", joins)?;
    let marker = marker(&alias, "quiver match");
    Ok(if negated {
        ast::Expr::IsNull(Box::new(marker))
    } else {
        ast::Expr::IsNotNull(Box::new(marker))
    })
}

/// A scalar subquery of one aggregate expression: its value for the row's keys, or its
/// value over no rows.
fn scalar_join(found: &Correlation, joins: &mut Vec<ast::Join>) -> Result<ast::Expr> {
    if let Some(why) = &found.outer_in_select {
        return Err(QuiverError::Unsupported(why.clone()));
    }
    if let Some(condition) = found.residual.first() {
        return Err(QuiverError::Unsupported(format!(
            "the correlated condition `{condition}` in a scalar subquery: it may refer to the \
             outer query only in equalities between its columns and the outer query's \
             (`t.k = o.k`)"
        )));
    }
    let value = match found.select.projection.as_slice() {
        [ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. }] => e,
        _ => {
            return Err(QuiverError::Unsupported(
                "a correlated scalar subquery must select one value".into(),
            ))
        }
    };
    if !crate::contains_aggregate(value) {
        return Err(QuiverError::Unsupported(format!(
            "the correlated scalar subquery of `{value}` has no aggregate; aggregate its \
             rows (e.g. MAX({value})) so there is one value per outer row"
        )));
    }
    let alias = join_grouped(found, &format!(", {value} AS \"quiver value\""), joins)?;
    let joined = marker(&alias, "quiver value");
    if null_on_no_rows(value) {
        return Ok(joined);
    }
    // Rows without a match take the expression's value over no rows (0 for COUNT).
    let from: Vec<String> = found.select.from.iter().map(|f| f.to_string()).collect();
    let text = format!(
        "SELECT CASE WHEN \"{alias}\".\"quiver match\" IS NULL THEN (SELECT {value} FROM {} WHERE FALSE) ELSE \"{alias}\".\"quiver value\" END",
        from.join(", ")
    );
    parse_query(&text)
        .and_then(|q| match *q.body {
            ast::SetExpr::Select(select) => select.projection.into_iter().next(),
            _ => None,
        })
        .and_then(|item| match item {
            ast::SelectItem::UnnamedExpr(e) => Some(ast::Expr::Nested(Box::new(e))),
            _ => None,
        })
        .ok_or_else(|| QuiverError::Internal(format!("`{text}` does not parse")))
}

/// Whether `value` is NULL over no rows for sure: an aggregate other than COUNT, or such an
/// expression combined with constants by arithmetic.
fn null_on_no_rows(value: &ast::Expr) -> bool {
    match value {
        ast::Expr::Nested(inner) => null_on_no_rows(inner),
        ast::Expr::Function(f) => {
            let name = f.name.to_string().to_ascii_lowercase();
            f.over.is_none()
                && aggregate_function(&name).is_some()
                && !name.starts_with("count")
                && !matches!(
                    name.as_str(),
                    "approx_count_distinct" | "string_agg" | "bool_and" | "bool_or"
                )
        }
        ast::Expr::BinaryOp { left, op, right } => {
            let arithmetic = matches!(
                op,
                ast::BinaryOperator::Plus
                    | ast::BinaryOperator::Minus
                    | ast::BinaryOperator::Multiply
                    | ast::BinaryOperator::Divide
            );
            let constant = |e: &ast::Expr| matches!(e, ast::Expr::Value(_));
            arithmetic
                && ((null_on_no_rows(left) && (constant(right) || null_on_no_rows(right)))
                    || (constant(left) && null_on_no_rows(right)))
        }
        _ => false,
    }
}

/// `EXISTS` with conditions beyond equalities (`t.k = o.k AND t.x <> o.x`): a mark join of
/// the subquery's one table, every condition checked per candidate pair.
fn mark_join(found: &Correlation, negated: bool, joins: &mut Vec<ast::Join>) -> Result<ast::Expr> {
    let unsupported = |why: &str| {
        Err(QuiverError::Unsupported(format!(
            "the correlated condition `{}`: {why}",
            found
                .residual
                .first()
                .map_or(String::new(), |c| c.to_string())
        )))
    };
    let [from] = found.select.from.as_slice() else {
        return unsupported("a subquery over one table (no joins) may have conditions other than equalities with the outer query");
    };
    let table = match &from.relation {
        _ if !from.joins.is_empty() || found.nested => {
            return unsupported("a subquery over one table (no joins, no nested subqueries) may have conditions other than equalities with the outer query")
        }
        ast::TableFactor::Table { name, args: None, .. } => name.to_string(),
        ast::TableFactor::Derived { subquery, lateral: false, .. } => format!("({subquery})"),
        _ => return unsupported("the subquery's FROM must be a table or a subquery"),
    };
    let alias = format!("{JOINED_SUBQUERY_PREFIX}{}", joins.len() + 1);
    // The subquery's names, qualified by its new alias (unqualified ones may also be the
    // outer query's).
    let requalified = |expr: &ast::Expr| -> ast::Expr {
        let mut expr = expr.clone();
        let _ = ast::visit_expressions_mut(&mut expr, |e| {
            let column = match e {
                ast::Expr::Identifier(ident)
                    if found.columns.contains(&ident.value.to_ascii_lowercase()) =>
                {
                    Some(ident.clone())
                }
                ast::Expr::CompoundIdentifier(parts)
                    if parts.len() >= 2
                        && found
                            .qualifiers
                            .contains(&parts[parts.len() - 2].value.to_ascii_lowercase()) =>
                {
                    parts.last().cloned()
                }
                _ => None,
            };
            if let Some(column) = column {
                *e = ast::Expr::CompoundIdentifier(vec![
                    ast::Ident::with_quote('"', &alias),
                    column,
                ]);
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        expr
    };
    let mut condition: Vec<String> = found
        .inner_keys
        .iter()
        .zip(&found.outer_keys)
        .map(|(inner, outer)| format!("({}) = ({outer})", requalified(inner)))
        .collect();
    condition.extend(
        found
            .residual
            .iter()
            .chain(&found.uncorrelated)
            .map(|c| format!("({})", requalified(c))),
    );
    let text = format!(
        "SELECT 1 FROM t LEFT SEMI JOIN {table} AS \"{alias}\" ON {}",
        condition.join(" AND ")
    );
    let join = parse_query(&text)
        .and_then(|q| match *q.body {
            ast::SetExpr::Select(select) => select.from.into_iter().next(),
            _ => None,
        })
        .and_then(|from| from.joins.into_iter().next())
        .filter(|join| matches!(join.join_operator, ast::JoinOperator::LeftSemi(_)))
        .ok_or_else(|| {
            QuiverError::Internal(format!(
                "the rewritten correlated subquery `{text}` does not parse"
            ))
        })?;
    joins.push(join);
    let marker = marker(&alias, crate::MARK_COLUMN);
    Ok(if negated {
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Not,
            expr: Box::new(marker),
        }
    } else {
        marker
    })
}

fn marker(alias: &str, column: &str) -> ast::Expr {
    ast::Expr::CompoundIdentifier(vec![
        ast::Ident::with_quote('"', alias),
        ast::Ident::with_quote('"', column),
    ])
}

fn parse_query(text: &str) -> Option<ast::Query> {
    match Parser::parse_sql(&GenericDialect {}, text).ok()?.pop()? {
        ast::Statement::Query(query) => Some(*query),
        _ => None,
    }
}
