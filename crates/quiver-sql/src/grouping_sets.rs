//! `GROUP BY ROLLUP (...)`, `CUBE (...)` and `GROUPING SETS (...)`, rewritten before planning
//! as a `UNION ALL` of one grouped query per grouping set.
//!
//! In the query of a set, the keys it leaves out read as NULL outside aggregate calls (in the
//! SELECT list and HAVING), and `GROUPING(k, ...)` is the set's bit mask (1 for a key left
//! out, the first argument the highest bit). The query's `ORDER BY` / `LIMIT` apply to the
//! union, by output name or position. Each set's query reads the source again.

use quiver_core::{QuiverError, Result};
use sqlparser::ast;

/// Whether `select` groups by ROLLUP, CUBE or GROUPING SETS (its table is then read once per
/// set, so it must be held).
pub(crate) fn has_grouping_sets(select: &ast::Select) -> bool {
    match &select.group_by {
        ast::GroupByExpr::Expressions(items, modifiers) => {
            items.iter().any(|e| {
                matches!(
                    e,
                    ast::Expr::Rollup(_) | ast::Expr::Cube(_) | ast::Expr::GroupingSets(_)
                )
            }) || modifiers.iter().any(|m| {
                matches!(
                    m,
                    ast::GroupByWithModifier::Rollup | ast::GroupByWithModifier::Cube
                )
            })
        }
        ast::GroupByExpr::All(_) => false,
    }
}

/// `query` with its grouping sets expanded into a union of plain `GROUP BY` queries; `None`
/// when its GROUP BY has no ROLLUP, CUBE or GROUPING SETS.
pub(crate) fn expanded(
    query: &ast::Query,
    source_columns: &dyn Fn(&ast::Select) -> Vec<String>,
) -> Result<Option<ast::Query>> {
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    let ast::GroupByExpr::Expressions(items, modifiers) = &select.group_by else {
        return Ok(None);
    };
    let sets_written = items.iter().any(|e| {
        matches!(
            e,
            ast::Expr::Rollup(_) | ast::Expr::Cube(_) | ast::Expr::GroupingSets(_)
        )
    });
    let modifier = modifiers.iter().find(|m| {
        matches!(
            m,
            ast::GroupByWithModifier::Rollup | ast::GroupByWithModifier::Cube
        )
    });
    if !sets_written && modifier.is_none() {
        return Ok(None);
    }
    if let Some(top) = &select.top {
        return Err(QuiverError::Unsupported(format!(
            "`{top}` with grouping sets; use LIMIT"
        )));
    }
    let windowed = select
        .projection
        .iter()
        .filter_map(crate::item_expr)
        .chain(select.qualify.as_ref());
    if !crate::windowed_calls(windowed)?.is_empty() || select.qualify.is_some() {
        return Err(QuiverError::Unsupported(
            "window functions or QUALIFY with grouping sets; compute them over a subquery \
             that groups"
                .into(),
        ));
    }
    if modifiers.len() > usize::from(modifier.is_some()) {
        return Err(QuiverError::Unsupported(format!(
            "`{}`; WITH ROLLUP and WITH CUBE are the modifiers supported",
            select.group_by
        )));
    }
    // Each GROUP BY item is a list of alternative key lists; the sets are their products.
    let mut alternatives: Vec<Vec<Vec<ast::Expr>>> = Vec::new();
    for item in items {
        alternatives.push(match item {
            ast::Expr::Rollup(parts) => (0..=parts.len())
                .rev()
                .map(|n| parts[..n].concat())
                .collect(),
            ast::Expr::Cube(parts) => {
                if parts.len() > 12 {
                    return Err(QuiverError::Unsupported(format!(
                        "CUBE of {} items ({} grouping sets); at most 12",
                        parts.len(),
                        1_u64 << parts.len()
                    )));
                }
                (0..1_usize << parts.len())
                    .rev()
                    .map(|mask| {
                        (0..parts.len())
                            .filter(|i| mask & (1 << (parts.len() - 1 - i)) != 0)
                            .flat_map(|i| parts[i].clone())
                            .collect()
                    })
                    .collect()
            }
            ast::Expr::GroupingSets(sets) => sets.clone(),
            plain => vec![vec![plain.clone()]],
        });
    }
    if let Some(modifier) = modifier {
        // `GROUP BY a, b WITH ROLLUP` is `GROUP BY ROLLUP (a, b)`.
        let keys: Vec<ast::Expr> = alternatives
            .iter()
            .flat_map(|a| a.first().cloned().unwrap_or_default())
            .collect();
        let parts: Vec<Vec<ast::Expr>> = keys.into_iter().map(|k| vec![k]).collect();
        let item = match modifier {
            ast::GroupByWithModifier::Cube => ast::Expr::Cube(parts),
            _ => ast::Expr::Rollup(parts),
        };
        let mut rewritten = query.clone();
        if let ast::SetExpr::Select(select) = rewritten.body.as_mut() {
            select.group_by = ast::GroupByExpr::Expressions(vec![item], Vec::new());
        }
        return expanded(&rewritten, source_columns);
    }
    let mut sets: Vec<Vec<ast::Expr>> = vec![Vec::new()];
    for choices in &alternatives {
        let mut next = Vec::new();
        for set in &sets {
            for choice in choices {
                let mut combined = set.clone();
                combined.extend(choice.iter().cloned());
                next.push(combined);
            }
        }
        if next.len() > 4096 {
            return Err(QuiverError::Unsupported(format!(
                "`{}` makes more than 4096 grouping sets",
                select.group_by
            )));
        }
        sets = next;
    }
    // Every key, each once, resolved to the expression it stands for (`GROUP BY 1`, aliases).
    // A name in GROUP BY is the source column before a SELECT alias.
    let columns = source_columns(select);
    let resolve = |key: &ast::Expr| -> ast::Expr { resolved_key(key, select, &columns) };
    let mut keys: Vec<ast::Expr> = Vec::new();
    for key in sets.iter().flatten() {
        let key = resolve(key);
        if !keys.iter().any(|k| same(k, &key)) {
            keys.push(key);
        }
    }
    let mut branches: Vec<ast::SetExpr> = Vec::new();
    for set in &sets {
        let present: Vec<ast::Expr> = set.iter().map(resolve).collect();
        let absent: Vec<&ast::Expr> = keys
            .iter()
            .filter(|k| !present.iter().any(|p| same(p, k)))
            .collect();
        let mut branch = select.as_ref().clone();
        let mut distinct_present: Vec<ast::Expr> = Vec::new();
        for key in set {
            if !distinct_present
                .iter()
                .any(|p| same(&resolve(p), &resolve(key)))
            {
                distinct_present.push(key.clone());
            }
        }
        // DISTINCT applies to the whole union (below).
        branch.distinct = None;
        let no_keys = distinct_present.is_empty();
        branch.group_by = ast::GroupByExpr::Expressions(distinct_present, Vec::new());
        if no_keys && !crate::selects_aggregate(&branch) && branch.having.is_none() {
            // The set `()` is one row (as an aggregate without GROUP BY), not one per row.
            branch.having = Some(ast::Expr::value(ast::Value::Boolean(true)));
        }
        for item in &mut branch.projection {
            match item {
                ast::SelectItem::UnnamedExpr(e) => {
                    let name = crate::display_name(e);
                    let rewritten = with_keys_absent(e, &absent, &present)?;
                    if rewritten != *e {
                        // Named as written.
                        *item = ast::SelectItem::ExprWithAlias {
                            expr: rewritten,
                            alias: ast::Ident::with_quote('"', name),
                        };
                    }
                }
                ast::SelectItem::ExprWithAlias { expr, .. } => {
                    *expr = with_keys_absent(expr, &absent, &present)?;
                }
                other => {
                    return Err(QuiverError::Unsupported(format!(
                        "`{other}` with grouping sets; list the columns"
                    )))
                }
            }
        }
        if let Some(having) = &mut branch.having {
            *having = with_keys_absent(having, &absent, &present)?;
        }
        branches.push(ast::SetExpr::Select(Box::new(branch)));
    }
    let quantifier = match select.distinct {
        Some(ast::Distinct::Distinct) => ast::SetQuantifier::Distinct,
        None | Some(ast::Distinct::All) => ast::SetQuantifier::All,
        Some(ast::Distinct::On(_)) => {
            return Err(QuiverError::Unsupported(
                "DISTINCT ON with grouping sets".into(),
            ))
        }
    };
    if let [ast::SetExpr::Select(only)] = branches.as_mut_slice() {
        // One set: a plain GROUP BY, with the query's own DISTINCT.
        only.distinct = select.distinct.clone();
    }
    let body = branches
        .into_iter()
        .reduce(|left, right| ast::SetExpr::SetOperation {
            op: ast::SetOperator::Union,
            set_quantifier: quantifier,
            left: Box::new(left),
            right: Box::new(right),
        })
        .ok_or_else(|| QuiverError::Internal("no grouping sets".into()))?;
    let mut rewritten = query.clone();
    *rewritten.body = body;
    Ok(Some(rewritten))
}

/// What GROUP BY item `key` stands for: the SELECT item at a position, or an aliased one.
fn resolved_key(key: &ast::Expr, select: &ast::Select, columns: &[String]) -> ast::Expr {
    let item_expr = |item: &ast::SelectItem| crate::item_expr(item).cloned();
    match key {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| select.projection.get(i))
                .and_then(item_expr)
                .unwrap_or_else(|| key.clone()),
            _ => key.clone(),
        },
        ast::Expr::Identifier(ident)
            if !columns.iter().any(|c| c.eq_ignore_ascii_case(&ident.value)) =>
        {
            select
            .projection
            .iter()
            .find_map(|item| match item {
                ast::SelectItem::ExprWithAlias { expr, alias }
                    if alias.value.eq_ignore_ascii_case(&ident.value)
                        && !matches!(expr, ast::Expr::Identifier(i) if i.value.eq_ignore_ascii_case(&ident.value)) =>
                {
                    Some(expr.clone())
                }
                _ => None,
            })
            .unwrap_or_else(|| key.clone())
        }
        _ => key.clone(),
    }
}

/// Whether two key expressions are the same (names compared without case).
fn same(a: &ast::Expr, b: &ast::Expr) -> bool {
    a == b || a.to_string().eq_ignore_ascii_case(&b.to_string())
}

/// `expr` with the `absent` keys read as NULL outside aggregate calls, and `GROUPING(...)` as
/// its bit mask.
fn with_keys_absent(
    expr: &ast::Expr,
    absent: &[&ast::Expr],
    present: &[ast::Expr],
) -> Result<ast::Expr> {
    let mut failure: Option<QuiverError> = None;
    let mut rewritten = expr.clone();
    // Aggregate calls read the rows, keys included: they step aside while keys are replaced.
    let mut aggregates: Vec<ast::Expr> = Vec::new();
    let _ = ast::visit_expressions_mut(&mut rewritten, |e| {
        let ast::Expr::Function(f) = e else {
            return std::ops::ControlFlow::<()>::Continue(());
        };
        let name = f.name.to_string().to_ascii_lowercase();
        if name == "grouping" || name == "grouping_id" {
            match grouping_mask(f, absent, present) {
                Ok(mask) => *e = ast::Expr::value(ast::Value::Number(mask.to_string(), false)),
                Err(why) => {
                    failure.get_or_insert(why);
                }
            }
        } else if f.over.is_none() && crate::aggregate_function(&name).is_some() {
            let placeholder = ast::Expr::Identifier(ast::Ident::with_quote(
                '"',
                format!("quiver aggregate {}", aggregates.len()),
            ));
            aggregates.push(std::mem::replace(e, placeholder));
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    if let Some(failure) = failure {
        return Err(failure);
    }
    // Outermost first: a present key holding an absent one (`UPPER(s)` kept, `s` left out)
    // stays whole, an absent key holding a present one becomes NULL.
    let mut replacer = KeyReplacer {
        absent,
        present,
        kept: Vec::new(),
    };
    let _ = ast::VisitMut::visit(&mut rewritten, &mut replacer);
    let kept = replacer.kept;
    let _ = ast::visit_expressions_mut(&mut rewritten, |e| {
        if let ast::Expr::Identifier(ident) = e {
            let restored = if let Some(index) = placeholder_index(&ident.value, "quiver aggregate ")
            {
                aggregates.get(index)
            } else if let Some(index) = placeholder_index(&ident.value, "quiver key ") {
                kept.get(index)
            } else {
                None
            };
            if let Some(restored) = restored {
                *e = restored.clone();
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Ok(rewritten)
}

fn placeholder_index(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix).and_then(|i| i.parse().ok())
}

/// Replaces, outermost first, each present key by a placeholder (restored afterwards, so
/// nothing inside it is replaced) and each absent key by NULL.
struct KeyReplacer<'a> {
    absent: &'a [&'a ast::Expr],
    present: &'a [ast::Expr],
    kept: Vec<ast::Expr>,
}

impl ast::VisitorMut for KeyReplacer<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &mut ast::Expr) -> std::ops::ControlFlow<()> {
        if self.present.iter().any(|k| same(k, e)) {
            let placeholder = ast::Expr::Identifier(ast::Ident::with_quote(
                '"',
                format!("quiver key {}", self.kept.len()),
            ));
            self.kept.push(std::mem::replace(e, placeholder));
        } else if self.absent.iter().any(|k| same(k, e)) {
            *e = ast::Expr::value(ast::Value::Null);
        }
        std::ops::ControlFlow::Continue(())
    }
}

/// `GROUPING(k1, k2, ...)`: bit `i` (from the left, highest first) set when `ki` is left out.
fn grouping_mask(
    call: &ast::Function,
    absent: &[&ast::Expr],
    present: &[ast::Expr],
) -> Result<u64> {
    let ast::FunctionArguments::List(list) = &call.args else {
        return Err(QuiverError::Unsupported(format!(
            "`{call}`: GROUPING needs keys"
        )));
    };
    if list.args.is_empty() || list.args.len() > 63 {
        return Err(QuiverError::Unsupported(format!("`{call}`: 1 to 63 keys")));
    }
    let mut mask: u64 = 0;
    for arg in &list.args {
        let ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg)) = arg else {
            return Err(QuiverError::Unsupported(format!("`{arg}` in `{call}`")));
        };
        let left_out = absent.iter().any(|k| same(k, arg));
        if !left_out && !present.iter().any(|k| same(k, arg)) {
            return Err(QuiverError::Unsupported(format!(
                "`{arg}` in `{call}` is not a GROUP BY key"
            )));
        }
        mask = (mask << 1) | u64::from(left_out);
    }
    Ok(mask)
}
