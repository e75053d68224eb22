//! SQL text → query plans, on `sqlparser` (generic dialect).
//!
//! A query is a `SELECT` (or a set operation, `VALUES` list, `WITH` queries) whose FROM is a
//! table, subquery or `VALUES` list joined to others (inner, left, right, full, cross, natural,
//! `USING`, comma-separated), with `WHERE`, `GROUP BY` expressions,
//! aggregates (with `DISTINCT` for COUNT, `FILTER (WHERE ...)`, `WITHIN GROUP` for
//! PERCENTILE_CONT), `HAVING`, `ORDER BY` (ASC/DESC, NULLS FIRST/LAST, by output name, position
//! or expression) and `LIMIT`; expressions are column references, literals, arithmetic,
//! comparisons, `AND`/`OR`/`NOT`, `IS [NOT] NULL`, `BETWEEN`, `IN (list)`, `CAST`/`TRY_CAST`,
//! `CASE`, `COALESCE`, `NULLIF`, `LIKE`/`ILIKE`, string and date/time functions. Windows (both
//! spellings) and `EMIT` modes come from [`streaming`]. Identifiers match column names
//! case-insensitively unless quoted. Anything else is an error naming the construct and its
//! line:column.
//! Depends on `quiver-core` and `quiver-kernels` (for the expression and aggregate IR).
#![warn(missing_docs)]

use std::fmt::Write as _;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use quiver_core::{QuiverError, Result};
use quiver_kernels::analytic::{
    AnalyticCall, AnalyticFunction, AnalyticOrder, Frame, FrameBound, FrameUnits,
};
use quiver_kernels::expr::{BinaryOp, Expr, Literal, ScalarFunction};
use quiver_kernels::functions::{BucketWidth, TimeField, TrimSide, TruncUnit};
use quiver_kernels::math::{FloatFunction, FloatTest, Rounding};
use quiver_kernels::more_accumulators::{CovarianceKind, MomentKind};
use quiver_kernels::regex_functions::RegexFunction;
use quiver_kernels::string_functions::{PadSide, StringFunction};
use quiver_kernels::AggregateFunction;
use sqlparser::ast;
use sqlparser::ast::Spanned;

mod decorrelate;
mod grouping_sets;
mod set_operation;
pub mod streaming;

pub use quiver_kernels::window::{EmitMode, WindowSpec};

/// The time window of a windowed aggregation.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanWindow {
    /// The windows.
    pub spec: WindowSpec,
    /// The source column holding event time; `None` for processing time (`PROCTIME()`: the
    /// wall clock when a batch is pushed).
    pub time_column: Option<usize>,
    /// Its type.
    pub time_type: DataType,
}

/// How a joined table's rows pair with the rows before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// `[INNER] JOIN` / `CROSS JOIN`: pairs that match.
    Inner,
    /// `LEFT [OUTER] JOIN`: pairs that match, and each row without a match once, with NULLs.
    Left,
    /// `RIGHT [OUTER] JOIN`: pairs that match, then each joined-table row without a match,
    /// with NULLs for the columns before it.
    Right,
    /// `FULL [OUTER] JOIN`: as `LEFT`, then the joined-table rows without a match as `RIGHT`.
    Full,
    /// A correlated `EXISTS` (or `IN`) turned into a join: each row before the join once,
    /// with one more column, a boolean saying whether some table row matched it. The table's
    /// own columns are not in the output.
    Mark,
}

/// The name of a mark join's one output column.
pub const MARK_COLUMN: &str = "quiver match";

impl PlanJoin {
    /// How many columns the join adds to the rows before it: its table's, or one for a mark
    /// join.
    pub fn output_width(&self) -> usize {
        match self.kind {
            JoinKind::Mark => 1,
            _ => self.schema.fields().len(),
        }
    }
}

impl JoinKind {
    /// Whether the joined table's rows without a match are kept (`RIGHT`, `FULL`).
    pub fn keeps_unmatched_table_rows(self) -> bool {
        matches!(self, JoinKind::Right | JoinKind::Full)
    }

    /// Whether the rows before the join without a match are kept (`LEFT`, `FULL`).
    pub fn keeps_unmatched_rows(self) -> bool {
        matches!(self, JoinKind::Left | JoinKind::Full)
    }
}

/// A table joined to the rows before it (the scanned rows and earlier joins): a hash join on
/// the equality conjuncts of `ON`, the other conjuncts checked on each candidate pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanJoin {
    /// The joined table's name, as registered.
    pub table: String,
    /// Its schema.
    pub schema: SchemaRef,
    /// Inner or left.
    pub kind: JoinKind,
    /// Keys over the rows before the join; equal keys (never NULL) match.
    pub left_keys: Vec<Expr>,
    /// The matching keys over the joined table's rows (same types as `left_keys`).
    pub right_keys: Vec<Expr>,
    /// The rest of `ON`, over the joined rows (a pair matches when it is true).
    pub residual: Option<Expr>,
    /// The conjuncts of `ON` (and, for inner joins, of `WHERE`) over the joined table's own
    /// columns: its rows failing them never match, so they are left out before the key map
    /// is built.
    pub table_filter: Option<Expr>,
    /// A subquery or `WITH` query joined: it runs once, before the query, over its tables'
    /// held rows, and its output is the joined rows.
    pub derived: Option<Box<PlanSubquery>>,
    /// The joined table's rows: given by the caller before running
    /// ([`Plan::attach_table`]), or the output of `derived`.
    pub rows: Option<Vec<RecordBatch>>,
}

/// `UNION`, `INTERSECT` or `EXCEPT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOperator {
    /// Rows of either side.
    Union,
    /// Rows of both sides.
    Intersect,
    /// Rows of the left side that the right side does not have.
    Except,
}

/// `left UNION | INTERSECT | EXCEPT [ALL] right`. Rows are compared as `IS NOT DISTINCT
/// FROM` does (NULLs equal). Without `ALL` the result has each distinct row once; with it, a
/// row appearing `l` times on the left and `r` times on the right appears `l + r` (UNION),
/// `min(l, r)` (INTERSECT) or `max(l - r, 0)` (EXCEPT) times.
#[derive(Debug, Clone, PartialEq)]
pub struct SetOperation {
    /// The operator.
    pub operator: SetOperator,
    /// `ALL`: duplicates counted instead of removed.
    pub all: bool,
    /// The left query, run before the query over its tables' held rows.
    pub left: PlanSubquery,
    /// The right query.
    pub right: PlanSubquery,
}

/// Rows computed before a query from held tables or constants, as its scanned rows.
#[derive(Debug, Clone, PartialEq)]
pub enum DerivedSource {
    /// A set operation; each side's columns are cast to the scanned schema's types.
    SetOperation(Box<SetOperation>),
    /// `VALUES (...), (...)`: each row's expressions, constants already of the column types.
    Values(Vec<Vec<Expr>>),
    /// `FROM` with a `RIGHT` or `FULL JOIN`: the scanned rows (held) joined one join at a
    /// time, so that each table's rows without a match can follow the matches.
    Joined {
        /// The first FROM item's rows (a table, a subquery, ...).
        scan: Box<PlanSubquery>,
        /// The joins, in order; their columns follow the scanned ones.
        joins: Vec<PlanJoin>,
    },
}

/// An uncorrelated subquery in an expression.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSubquery {
    /// Its plan.
    pub plan: Plan,
    /// The rows of the table it reads, given by the caller ([`Plan::attach_table`]).
    pub rows: Option<Vec<RecordBatch>>,
}

/// One aggregate call of a query, over expressions of the source.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateCall {
    /// The function.
    pub function: AggregateFunction,
    /// Its argument (None for `COUNT(*)`).
    pub argument: Option<Expr>,
    /// `FILTER (WHERE ...)`.
    pub filter: Option<Expr>,
    /// `STRING_AGG` separator.
    pub separator: String,
    /// The call as written, for names and messages.
    pub text: String,
}

/// What the query computes from the filtered source rows.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanKind {
    /// No aggregation: `output` expressions over source rows.
    Projection,
    /// Aggregation: `group_by` and `aggregates` over source rows; `output` and `having` over the
    /// aggregate result (group columns first, then aggregates).
    Aggregate {
        /// Group key expressions and their names.
        group_by: Vec<(Expr, String)>,
        /// Aggregate calls.
        aggregates: Vec<AggregateCall>,
        /// `HAVING`.
        having: Option<Expr>,
    },
}

/// One `ORDER BY` key over the output columns.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    /// Expression over the output row (usually a column).
    pub expr: Expr,
    /// Descending when true.
    pub descending: bool,
    /// NULLs first when true.
    pub nulls_first: bool,
}

/// A planned query.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The table the caller feeds: the one named in `FROM` (or in the innermost query when
    /// `FROM` is a subquery); empty for a query without `FROM`, which reads one row of no
    /// columns (`SELECT 1 + 1`).
    pub source: String,
    /// The schema this plan's own expressions were resolved against: the scanned rows' (the
    /// table's, or the subquery's output), followed by the columns of each joined table.
    pub source_schema: SchemaRef,
    /// The schema of the rows scanned (pushed, or produced by the subquery), before joins.
    pub scan_schema: SchemaRef,
    /// Tables joined to the scanned rows, in order, before `WHERE`.
    pub joins: Vec<PlanJoin>,
    /// Subqueries in expressions (`x > (SELECT AVG(x) FROM t)`, `IN (SELECT ...)`,
    /// `EXISTS (...)`), uncorrelated: each runs once, before this query, over its table's
    /// held rows; expressions refer to them by index until their values are put in place.
    pub subqueries: Vec<PlanSubquery>,
    /// `FROM (SELECT ...)` or a `WITH` query: its output rows are this plan's source rows.
    pub input: Option<Box<Plan>>,
    /// A set operation or `VALUES` list as the scanned rows (then nothing is pushed:
    /// `source` is empty), computed before the query.
    pub derived_source: Option<DerivedSource>,
    /// The conjuncts of `WHERE` that read only scanned columns, applied before the joins (so
    /// fewer rows probe them); `None` without joins.
    pub scan_filter: Option<Expr>,
    /// `WHERE` (the rest of it, with joins), over source rows, applied after the joins.
    pub filter: Option<Expr>,
    /// Projection or aggregation.
    pub kind: PlanKind,
    /// Window functions (`OVER`), over the rows `output` reads (source rows after `WHERE`, or
    /// the aggregate result after `HAVING`); their values are columns appended after those
    /// rows' columns, in this order. Computing them needs every row first.
    pub analytic: Vec<AnalyticCall>,
    /// `QUALIFY`: keeps the rows (with their window function columns) where it is true,
    /// before the output is computed.
    pub qualify: Option<Expr>,
    /// Output expressions and names (over source rows or over the aggregate result, plus the
    /// window function columns).
    pub output: Vec<(Expr, String)>,
    /// `ORDER BY`, over the output columns (after `output` is computed, extra hidden sort
    /// columns are appended at the end and dropped after sorting).
    pub order_by: Vec<SortKey>,
    /// `LIMIT`.
    pub limit: Option<usize>,
    /// `OFFSET`: output rows skipped before `LIMIT` counts (0 without one).
    pub offset: usize,
    /// Output schema.
    pub output_schema: SchemaRef,
    /// Time window (aggregations only); its bounds are the first two aggregate result columns,
    /// `window_start` and `window_end`.
    pub window: Option<PlanWindow>,
    /// When results are emitted; `EMIT CHANGES` adds a last aggregate result column `change`.
    pub emit: EmitMode,
    /// `EXPLAIN <query>`: running the plan yields its description (one `plan` row per line)
    /// instead of the query's rows.
    pub explain: bool,
}

impl Plan {
    /// The joins of this plan's FROM (its own, or those of a `Joined` derived source) and the
    /// plans it runs over held rows first (joined subqueries, subqueries in expressions, the
    /// sides of a set operation, the scan of a `Joined` source); not those of `input`.
    fn held_parts(&self) -> (Vec<&PlanJoin>, Vec<&PlanSubquery>) {
        let mut joins: Vec<&PlanJoin> = self.joins.iter().collect();
        let mut held: Vec<&PlanSubquery> = self.subqueries.iter().collect();
        match &self.derived_source {
            Some(DerivedSource::SetOperation(op)) => held.extend([&op.left, &op.right]),
            Some(DerivedSource::Joined { scan, joins: more }) => {
                held.push(scan);
                joins.extend(more);
            }
            Some(DerivedSource::Values(_)) | None => {}
        }
        held.extend(joins.iter().filter_map(|j| j.derived.as_deref()));
        (joins, held)
    }

    /// [`Plan::held_parts`], to change.
    fn held_parts_mut(&mut self) -> (Vec<&mut PlanJoin>, Vec<&mut PlanSubquery>) {
        let mut joins: Vec<&mut PlanJoin> = self.joins.iter_mut().collect();
        let mut held: Vec<&mut PlanSubquery> = self.subqueries.iter_mut().collect();
        match &mut self.derived_source {
            Some(DerivedSource::SetOperation(op)) => {
                let op = op.as_mut();
                held.extend([&mut op.left, &mut op.right]);
            }
            Some(DerivedSource::Joined { scan, joins: more }) => {
                held.push(scan);
                joins.extend(more.iter_mut());
            }
            Some(DerivedSource::Values(_)) | None => {}
        }
        let mut plain_joins = Vec::new();
        for join in joins {
            if join.derived.is_none() {
                plain_joins.push(join);
            } else if let Some(derived) = join.derived.as_deref_mut() {
                held.push(derived);
            }
        }
        (plain_joins, held)
    }

    /// Whether the query reads a source (`false` without `FROM`).
    pub fn has_source(&self) -> bool {
        !self.source.is_empty()
    }

    /// The schema of the batches the caller pushes: the table's, through any subqueries.
    pub fn input_schema(&self) -> &SchemaRef {
        match &self.input {
            Some(inner) => inner.input_schema(),
            None => &self.scan_schema,
        }
    }

    /// The tables the plan holds in memory, each once: those joined anywhere, and those
    /// subqueries in expressions read.
    pub fn joined_tables(&self) -> Vec<String> {
        let mut names = match &self.input {
            Some(inner) => inner.joined_tables(),
            None => Vec::new(),
        };
        let mut add = |name: &String| {
            if !name.is_empty() && !names.contains(name) {
                names.push(name.clone());
            }
        };
        let (joins, held) = self.held_parts();
        for join in joins.iter().filter(|j| j.derived.is_none()) {
            add(&join.table);
        }
        for subquery in held {
            add(&subquery.plan.source);
            for name in subquery.plan.joined_tables() {
                add(&name);
            }
        }
        names
    }

    /// Gives the rows of joined table `table` (every join of it, subqueries included).
    pub fn attach_table(&mut self, table: &str, rows: &[RecordBatch]) -> Result<()> {
        if let Some(inner) = &mut self.input {
            inner.attach_table(table, rows)?;
        }
        // The rows must have the schema the plan was made with.
        let checked = |planned: &Schema| -> Result<Vec<RecordBatch>> {
            match rows
                .iter()
                .find(|b| b.schema().fields() != planned.fields())
            {
                Some(batch) => Err(QuiverError::Config(format!(
                    "table `{table}`: rows of schema {:?}, planned with {:?}",
                    batch.schema().fields(),
                    planned.fields()
                ))),
                None => Ok(rows.to_vec()),
            }
        };
        let (joins, held) = self.held_parts_mut();
        for join in joins {
            if join.table == table {
                join.rows = Some(checked(&join.schema)?);
            }
        }
        for subquery in held {
            subquery.plan.attach_table(table, rows)?;
            if subquery.plan.source == table {
                subquery.rows = Some(checked(subquery.plan.input_schema())?);
            }
        }
        Ok(())
    }

    /// Every expression of this plan (not of its subquery in FROM) rebuilt by `rewrite`,
    /// bottom-up.
    pub fn map_exprs(&mut self, rewrite: &dyn Fn(Expr) -> Expr) {
        let apply = |e: &mut Expr| {
            let taken = std::mem::replace(e, Expr::Literal(Literal::Null));
            *e = taken.transform(rewrite);
        };
        for e in [&mut self.scan_filter, &mut self.filter, &mut self.qualify]
            .into_iter()
            .flatten()
        {
            apply(e);
        }
        let more_joins = match &mut self.derived_source {
            Some(DerivedSource::Joined { joins, .. }) => joins.as_mut_slice(),
            _ => &mut [],
        };
        for join in self.joins.iter_mut().chain(more_joins) {
            join.left_keys.iter_mut().for_each(apply);
            join.right_keys.iter_mut().for_each(apply);
            join.residual.iter_mut().for_each(apply);
            join.table_filter.iter_mut().for_each(apply);
        }
        if let PlanKind::Aggregate {
            group_by,
            aggregates,
            having,
        } = &mut self.kind
        {
            group_by.iter_mut().for_each(|(e, _)| apply(e));
            for call in aggregates {
                call.argument.iter_mut().for_each(apply);
                call.filter.iter_mut().for_each(apply);
            }
            having.iter_mut().for_each(apply);
        }
        for call in &mut self.analytic {
            call.arguments.iter_mut().for_each(apply);
            call.filter.iter_mut().for_each(apply);
            call.partition_by.iter_mut().for_each(apply);
            call.order_by.iter_mut().for_each(|o| apply(&mut o.expr));
        }
        self.output.iter_mut().for_each(|(e, _)| apply(e));
    }

    /// The input of a query without `FROM`: one row of no columns.
    pub fn single_row_input() -> Result<RecordBatch> {
        Ok(RecordBatch::try_new_with_options(
            std::sync::Arc::new(Schema::empty()),
            Vec::new(),
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
        )?)
    }

    /// Whether the output ends with the `change` column (insert / update / delete).
    pub fn has_change_column(&self) -> bool {
        self.output_schema
            .fields()
            .last()
            .is_some_and(|f| f.name() == "change")
            && matches!(self.kind, PlanKind::Aggregate { .. })
            && (self.window.is_some() || self.emit == EmitMode::Changes)
    }

    /// Adds the `change` column to a windowed aggregation's output (after the visible
    /// columns), for runs that emit corrections (late rows updating closed windows).
    pub fn add_change_column(&mut self) -> Result<()> {
        if self.has_change_column() {
            return Ok(());
        }
        let PlanKind::Aggregate {
            group_by,
            aggregates,
            ..
        } = &self.kind
        else {
            return Err(QuiverError::Internal(
                "change column on a projection".into(),
            ));
        };
        let window_columns = if self.window.is_some() { 2 } else { 0 };
        let index = window_columns + group_by.len() + aggregates.len();
        let visible = self.output_schema.fields().len();
        self.output
            .insert(visible, (Expr::Column(index), "change".to_string()));
        let mut fields: Vec<Field> = self
            .output_schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("change", DataType::Utf8, false));
        self.output_schema = std::sync::Arc::new(Schema::new(fields));
        Ok(())
    }

    /// A readable description (for `EXPLAIN`).
    pub fn explain(&self) -> String {
        let mut text = String::new();
        if let Some(input) = &self.input {
            let _ = writeln!(text, "Subquery:");
            for line in input.explain().lines() {
                let _ = writeln!(text, "    {line}");
            }
            let _ = writeln!(
                text,
                "Scan: the subquery's rows ({} columns)",
                self.source_schema.fields().len()
            );
        } else if let Some(DerivedSource::SetOperation(op)) = &self.derived_source {
            let _ = writeln!(
                text,
                "{:?}{} (computed first):",
                op.operator,
                if op.all { " ALL" } else { "" }
            );
            for side in [&op.left, &op.right] {
                for line in side.plan.explain().lines() {
                    let _ = writeln!(text, "    {line}");
                }
            }
        } else if let Some(DerivedSource::Values(rows)) = &self.derived_source {
            let _ = writeln!(text, "Values: {} rows", rows.len());
        } else if let Some(DerivedSource::Joined { scan, joins }) = &self.derived_source {
            let _ = writeln!(text, "Joined rows (computed first, one join at a time):");
            for line in scan.plan.explain().lines() {
                let _ = writeln!(text, "    {line}");
            }
            for join in joins {
                let _ = writeln!(text, "    {}", join_text(join));
            }
        } else if self.has_source() {
            let _ = writeln!(
                text,
                "Scan: {} ({} columns)",
                self.source,
                self.scan_schema.fields().len()
            );
        } else {
            let _ = writeln!(text, "Values: one row (no FROM)");
        }
        if let Some(filter) = &self.scan_filter {
            let _ = writeln!(text, "  Filter (before the joins): {filter:?}");
        }
        for (i, subquery) in self.subqueries.iter().enumerate() {
            let _ = writeln!(text, "  Subquery {i} (computed first):");
            for line in subquery.plan.explain().lines() {
                let _ = writeln!(text, "      {line}");
            }
        }
        for join in &self.joins {
            if let Some(derived) = &join.derived {
                let _ = writeln!(text, "  Joined subquery {} (computed first):", join.table);
                for line in derived.plan.explain().lines() {
                    let _ = writeln!(text, "      {line}");
                }
            }
            let _ = writeln!(text, "  {}", join_text(join));
        }
        if let Some(filter) = &self.filter {
            let _ = writeln!(text, "  Filter: {filter:?}");
        }
        if let Some(window) = &self.window {
            let _ = writeln!(
                text,
                "  Window: {:?} on {} ({}), emit {:?}",
                window.spec,
                window
                    .time_column
                    .map_or("processing time".to_string(), |c| format!(
                        "column {}",
                        self.source_schema.field(c).name()
                    )),
                window.time_type,
                self.emit
            );
        } else if self.emit == EmitMode::Changes {
            let _ = writeln!(text, "  Emit: changes");
        }
        if let PlanKind::Aggregate {
            group_by,
            aggregates,
            having,
        } = &self.kind
        {
            let keys: Vec<&str> = group_by.iter().map(|(_, n)| n.as_str()).collect();
            let calls: Vec<&str> = aggregates.iter().map(|a| a.text.as_str()).collect();
            let _ = writeln!(
                text,
                "  HashAggregate: keys [{}], aggregates [{}]",
                keys.join(", "),
                calls.join(", ")
            );
            if let Some(having) = having {
                let _ = writeln!(text, "    Having: {having:?}");
            }
        }
        if !self.analytic.is_empty() {
            let calls: Vec<&str> = self.analytic.iter().map(|a| a.text.as_str()).collect();
            let _ = writeln!(text, "  Window functions: [{}]", calls.join(", "));
        }
        if let Some(qualify) = &self.qualify {
            let _ = writeln!(text, "    Qualify: {qualify:?}");
        }
        let names: Vec<&str> = self.output.iter().map(|(_, n)| n.as_str()).collect();
        let _ = writeln!(text, "  Project: [{}]", names.join(", "));
        if !self.order_by.is_empty() {
            let _ = writeln!(text, "  Sort: {} keys", self.order_by.len());
        }
        if let Some(limit) = self.limit {
            let _ = writeln!(text, "  Limit: {limit}");
        }
        if self.offset > 0 {
            let _ = writeln!(text, "  Offset: {}", self.offset);
        }
        text
    }
}

/// One join, for `EXPLAIN`.
fn join_text(join: &PlanJoin) -> String {
    format!(
        "HashJoin ({:?}): {} ({} columns){} on keys {:?} = {:?}{}",
        join.kind,
        join.table,
        join.schema.fields().len(),
        join.table_filter
            .as_ref()
            .map_or(String::new(), |f| format!(" filtered by {f:?}")),
        join.left_keys,
        join.right_keys,
        join.residual
            .as_ref()
            .map_or(String::new(), |r| format!(", then {r:?}"))
    )
}

fn location(span: sqlparser::tokenizer::Span) -> String {
    if span.start.line == 0 {
        String::new()
    } else {
        format!(" at line {}, column {}", span.start.line, span.start.column)
    }
}

fn unsupported(what: impl std::fmt::Display, span: sqlparser::tokenizer::Span) -> QuiverError {
    QuiverError::Unsupported(format!("{what}{}", location(span)))
}

fn expr_span(expr: &ast::Expr) -> sqlparser::tokenizer::Span {
    expr.span()
}

/// Every table (or WITH query) name `sql` reads anywhere: FROM items, joined tables,
/// subqueries. `None` when the text does not parse (planning reports why).
pub fn relation_names(sql: &str) -> Option<Vec<String>> {
    let parsed = streaming::parse(sql).ok()?;
    let mut names = Vec::new();
    let _ = ast::visit_relations(&parsed.statements, |relation| {
        let name = last_name(relation);
        if !names.contains(&name) {
            names.push(name);
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    Some(names)
}

/// Which of a table's `columns` `sql` may read (indices, in table order): every column
/// whose name the query mentions anywhere, as a column or a qualified name's last part. `None`
/// when the text does not parse or the query reads columns it does not name (`*`, `t.*`,
/// `NATURAL JOIN`); empty when it names none (`COUNT(*)`: the reader still needs some column
/// to count rows by). A superset is harmless: it only lets a reader skip decoding the rest.
pub fn columns_read(sql: &str, columns: &[String]) -> Option<Vec<usize>> {
    let parsed = streaming::parse(sql).ok()?;
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: &str| names.push(name.to_ascii_lowercase());
    if let Some(window) = &parsed.window {
        for argument in &window.arguments {
            let _ = ast::visit_expressions(argument, |e| {
                collect_column_name(e, &mut add);
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
    }
    let _ = ast::visit_expressions(&parsed.statements, |e| {
        collect_column_name(e, &mut add);
        std::ops::ControlFlow::<()>::Continue(())
    });
    struct Unnamed {
        names: Vec<String>,
    }
    impl ast::Visitor for Unnamed {
        type Break = ();
        fn pre_visit_query(&mut self, query: &ast::Query) -> std::ops::ControlFlow<()> {
            if reads_unnamed_columns(&query.body, &mut self.names) {
                return std::ops::ControlFlow::Break(());
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let mut unnamed = Unnamed { names: Vec::new() };
    if ast::Visit::visit(&parsed.statements, &mut unnamed).is_break() {
        return None;
    }
    names.extend(unnamed.names);
    Some(
        columns
            .iter()
            .enumerate()
            .filter(|(_, c)| names.contains(&c.to_ascii_lowercase()))
            .map(|(i, _)| i)
            .collect(),
    )
}

fn collect_column_name(expr: &ast::Expr, add: &mut impl FnMut(&str)) {
    match expr {
        ast::Expr::Identifier(ident) => add(&ident.value),
        ast::Expr::CompoundIdentifier(parts) => {
            if let Some(last) = parts.last() {
                add(&last.value);
            }
        }
        _ => {}
    }
}

/// Whether a query body selects `*` / `t.*` or joins NATURAL; adds the names of USING joins.
fn reads_unnamed_columns(body: &ast::SetExpr, names: &mut Vec<String>) -> bool {
    match body {
        ast::SetExpr::Select(select) => {
            let wildcard = select.projection.iter().any(|item| {
                matches!(
                    item,
                    ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..)
                )
            });
            let mut natural = false;
            for from in &select.from {
                for join in &from.joins {
                    match join_constraint(&join.join_operator) {
                        Some(ast::JoinConstraint::Natural) => natural = true,
                        Some(ast::JoinConstraint::Using(using)) => {
                            names.extend(using.iter().map(|n| last_name(n).to_ascii_lowercase()))
                        }
                        _ => {}
                    }
                }
            }
            wildcard || natural
        }
        ast::SetExpr::SetOperation { left, right, .. } => {
            reads_unnamed_columns(left, names) || reads_unnamed_columns(right, names)
        }
        ast::SetExpr::Query(query) => reads_unnamed_columns(&query.body, names),
        _ => false,
    }
}

fn join_constraint(operator: &ast::JoinOperator) -> Option<&ast::JoinConstraint> {
    use ast::JoinOperator as J;
    match operator {
        J::Join(c)
        | J::Inner(c)
        | J::Left(c)
        | J::LeftOuter(c)
        | J::Right(c)
        | J::RightOuter(c)
        | J::FullOuter(c)
        | J::Semi(c)
        | J::LeftSemi(c)
        | J::RightSemi(c)
        | J::Anti(c)
        | J::LeftAnti(c)
        | J::RightAnti(c)
        | J::CrossJoin(c)
        | J::StraightJoin(c) => Some(c),
        _ => None,
    }
}

/// The source named in the `FROM` clause of `sql`.
pub fn source_name(sql: &str) -> Result<String> {
    let statements = streaming::parse(sql)?.statements;
    let statement = match statements.as_slice() {
        [ast::Statement::Explain { statement, .. }] => Some(statement.as_ref()),
        [one] => Some(one),
        _ => None,
    };
    if let Some(ast::Statement::Query(query)) = statement {
        if let Some(name) = table_read(query, &[]) {
            return Ok(name);
        }
    }
    Err(QuiverError::Unsupported(
        "a single SELECT ... FROM <name> query is expected".into(),
    ))
}

/// Whether `sql` joins tables, has subqueries in expressions, set operations or grouping sets
/// anywhere (then every table it reads must be held in memory, not streamed). Text that does not parse has neither
/// (planning reports the error).
pub fn has_joins(sql: &str) -> bool {
    fn query_joins(query: &ast::Query) -> bool {
        let in_ctes = query
            .with
            .as_ref()
            .is_some_and(|w| w.cte_tables.iter().any(|c| query_joins(&c.query)));
        in_ctes || body_joins(&query.body)
    }
    fn body_joins(body: &ast::SetExpr) -> bool {
        match body {
            ast::SetExpr::Select(select) => select.from.len() > 1 || grouping_sets::has_grouping_sets(select) || select.from.iter().any(|from| {
                !from.joins.is_empty()
                    || matches!(&from.relation, ast::TableFactor::Derived { subquery, .. } if query_joins(subquery))
            }),
            ast::SetExpr::Query(query) => query_joins(query),
            // Set operations and VALUES read held tables (or none).
            _ => true,
        }
    }
    let Ok(parsed) = streaming::parse(sql) else {
        return false;
    };
    let expression_subquery = ast::visit_expressions(&parsed.statements, |e| {
        if matches!(
            e,
            ast::Expr::Subquery(_) | ast::Expr::InSubquery { .. } | ast::Expr::Exists { .. }
        ) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .is_break();
    expression_subquery
        || parsed.statements.iter().any(|statement| match statement {
            ast::Statement::Query(query) => query_joins(query),
            ast::Statement::Explain { statement, .. } => {
                matches!(statement.as_ref(), ast::Statement::Query(query) if query_joins(query))
            }
            _ => false,
        })
}

/// The table `query` reads, through subqueries in FROM and WITH queries; empty when it reads
/// none (no FROM).
fn table_read(query: &ast::Query, outer_ctes: &[(String, &ast::Query)]) -> Option<String> {
    let mut ctes: Vec<(String, &ast::Query)> = outer_ctes.to_vec();
    if let Some(with) = &query.with {
        ctes.extend(
            with.cte_tables
                .iter()
                .map(|c| (c.alias.name.value.clone(), c.query.as_ref())),
        );
    }
    let select = match query.body.as_ref() {
        ast::SetExpr::Select(select) => select,
        ast::SetExpr::Query(inner) => return table_read(inner, &ctes),
        ast::SetExpr::SetOperation { left, right, .. } => {
            // The first table either side reads (what `Engine::query_batches` registers).
            let side = |body: &ast::SetExpr| {
                let mut wrapped = query.clone();
                wrapped.with = None;
                *wrapped.body = body.clone();
                table_read(&wrapped, &ctes)
            };
            let (left, right) = (side(left), side(right));
            return match (left, right) {
                (Some(l), _) if !l.is_empty() => Some(l),
                (_, Some(r)) if !r.is_empty() => Some(r),
                (l, r) => l.or(r),
            };
        }
        ast::SetExpr::Values(_) => return Some(String::new()),
        _ => return None,
    };
    if select.from.is_empty() {
        // A query without FROM reads no source.
        return Some(String::new());
    }
    // `FROM a, b` scans `a` and joins `b`.
    let from = select.from.first()?;
    match &from.relation {
        ast::TableFactor::Derived { subquery, .. } => table_read(subquery, &ctes),
        ast::TableFactor::Table { name, .. } => {
            let wanted = unquoted_name(name);
            match ctes
                .iter()
                .rposition(|(n, _)| n.eq_ignore_ascii_case(&wanted))
            {
                // A WITH query sees only the ones named before it.
                Some(i) => table_read(ctes[i].1, &ctes[..i]),
                None => Some(wanted),
            }
        }
        _ => None,
    }
}

/// Parses and plans `sql` against the source tables (`name`, schema).
pub fn plan(sql: &str, tables: &[(String, SchemaRef)]) -> Result<Plan> {
    plan_statement(sql, tables).map_err(|error| match error {
        QuiverError::Unsupported(why) if is_user_mistake(&why) => QuiverError::InvalidQuery(why),
        other => other,
    })
}

/// Whether a planning error names a mistake in the query rather than something Quiver lacks
/// (planning reports both as `Unsupported` inside, where some are caught and retried).
fn is_user_mistake(why: &str) -> bool {
    why.starts_with("SQL syntax error")
        || why.starts_with("unknown column")
        || why.starts_with("unknown table")
        || why.starts_with("empty SQL text")
        || why.contains(" is ambiguous")
        || why.contains("must appear in GROUP BY")
        || ((why.starts_with("ORDER BY position") || why.starts_with("GROUP BY position"))
            && why.contains("; the "))
        || (why.contains(" arguments; ") && why.contains(" takes "))
}

fn plan_statement(sql: &str, tables: &[(String, SchemaRef)]) -> Result<Plan> {
    let parsed = streaming::parse(sql)?;
    let statements = &parsed.statements;
    let statement = match statements.as_slice() {
        [one] => one,
        [] => return Err(QuiverError::Unsupported("empty SQL text".into())),
        _ => {
            return Err(QuiverError::Unsupported(
                "one statement at a time, found several".into(),
            ))
        }
    };
    let (statement, explain) = match statement {
        ast::Statement::Explain {
            statement,
            analyze: false,
            ..
        } => (statement.as_ref(), true),
        other => (other, false),
    };
    let ast::Statement::Query(query) = statement else {
        return Err(QuiverError::Unsupported(format!(
            "statement `{statement}`; only SELECT queries (and EXPLAIN SELECT ...) run"
        )));
    };
    let mut plan = plan_query(query, tables, &parsed, &[])?;
    if explain {
        plan.explain = true;
        plan.output_schema =
            std::sync::Arc::new(Schema::new(vec![Field::new("plan", DataType::Utf8, false)]));
    }
    Ok(plan)
}

/// A query named by `WITH name AS (...)`, with the queries named before it (which it may read).
struct NamedQuery<'a> {
    name: String,
    query: &'a ast::Query,
    earlier: Vec<NamedQuery<'a>>,
    /// Names for its output columns (`WITH name(a, b) AS ...`), when given.
    columns: Vec<String>,
}

impl Clone for NamedQuery<'_> {
    fn clone(&self) -> Self {
        NamedQuery {
            name: self.name.clone(),
            query: self.query,
            earlier: self.earlier.clone(),
            columns: self.columns.clone(),
        }
    }
}

fn plan_query(
    query: &ast::Query,
    tables: &[(String, SchemaRef)],
    parsed: &streaming::Parsed,
    outer_ctes: &[NamedQuery<'_>],
) -> Result<Plan> {
    if let Some(rewritten) = named_windows_inlined(query)? {
        return plan_query(&rewritten, tables, parsed, outer_ctes);
    }
    refuse_unplanned_clauses(query)?;
    if let Some(rewritten) = with_all_expanded(query)? {
        return plan_query(&rewritten, tables, parsed, outer_ctes);
    }
    if parsed.window.is_none() && parsed.emit.is_none() {
        if let Some(rewritten) = distinct_rewritten(query)? {
            return plan_query(&rewritten, tables, parsed, outer_ctes);
        }
    }
    let mut ctes: Vec<NamedQuery<'_>> = outer_ctes.to_vec();
    if let Some(with) = &query.with {
        if with.recursive {
            return Err(QuiverError::Unsupported("WITH RECURSIVE".into()));
        }
        for (index, cte) in with.cte_tables.iter().enumerate() {
            let name = &cte.alias.name.value;
            if with.cte_tables[..index]
                .iter()
                .any(|earlier| earlier.alias.name.value.eq_ignore_ascii_case(name))
            {
                return Err(QuiverError::Unsupported(format!(
                    "WITH query name `{name}` is given more than once"
                )));
            }
            let earlier = ctes.clone();
            ctes.push(NamedQuery {
                name: cte.alias.name.value.clone(),
                query: &cte.query,
                earlier,
                columns: alias_columns(Some(&cte.alias)),
            });
        }
    }
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return set_operation::plan_query_body(query, tables, parsed, &ctes);
    };
    // ROLLUP, CUBE and GROUPING SETS: a union of plain GROUP BY queries.
    let source_columns = |select: &ast::Select| -> Vec<String> {
        let from: Vec<String> = select.from.iter().map(|f| f.to_string()).collect();
        sqlparser::parser::Parser::parse_sql(
            &sqlparser::dialect::GenericDialect {},
            &format!("SELECT * FROM {}", from.join(", ")),
        )
        .ok()
        .and_then(|mut statements| statements.pop())
        .and_then(|statement| match statement {
            ast::Statement::Query(scope) => {
                plan_query(&scope, tables, &streaming::Parsed::default(), &ctes).ok()
            }
            _ => None,
        })
        .map_or_else(Vec::new, |scope| {
            scope
                .output_schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        })
    };
    if let Some(union) = grouping_sets::expanded(query, &source_columns)? {
        if parsed.window.is_some() || parsed.emit.is_some() {
            return Err(QuiverError::Unsupported(
                "grouping sets (ROLLUP, CUBE, GROUPING SETS) in a windowed or EMIT query".into(),
            ));
        }
        let mut union = union;
        union.with = None;
        if matches!(union.body.as_ref(), ast::SetExpr::Select(_)) {
            // A single grouping set is a plain GROUP BY.
            return plan_query(&union, tables, parsed, &ctes);
        }
        return set_operation::plan_query_body(&union, tables, parsed, &ctes);
    }
    // `FROM a, b, c` is `FROM a CROSS JOIN b CROSS JOIN c`; WHERE conjuncts that compare
    // them become join keys below.
    let merged;
    let select = if select.from.len() > 1 {
        if let Some(join) = select.from[1..].iter().flat_map(|f| &f.joins).find(|j| {
            matches!(
                j.join_operator,
                ast::JoinOperator::Right(_)
                    | ast::JoinOperator::RightOuter(_)
                    | ast::JoinOperator::FullOuter(_)
            )
        }) {
            return Err(QuiverError::Unsupported(format!(
                "`{join}` after a comma in FROM (it would join the comma's product); write \
                 the FROM items as explicit JOINs"
            )));
        }
        merged = comma_joins_merged(select, &comma_join_order(select, tables, &ctes));
        &merged
    } else {
        select.as_ref()
    };
    // `(a AND b) OR (a AND c)` is `a AND (b OR c)`: a shared join condition becomes a key.
    let factored;
    let select = match select.selection.as_ref().map(common_conjuncts_factored) {
        Some(Some(selection)) => {
            let mut rewritten = select.clone();
            rewritten.selection = Some(selection);
            factored = rewritten;
            &factored
        }
        _ => select,
    };
    // Correlated subqueries in WHERE become joins.
    let decorrelated;
    let select = match decorrelate::decorrelated(select, tables, &ctes)? {
        Some(rewritten) => {
            decorrelated = rewritten;
            &decorrelated
        }
        None => select,
    };
    // A subquery in FROM, or a WITH query named there, runs first; its rows are the source.
    let (input, source, source_schema) = match subquery_source(select, &ctes)? {
        Some((subquery, scope, columns)) => {
            let mut inner = plan_query(subquery, tables, &streaming::Parsed::default(), &scope)?;
            if inner.explain || inner.window.is_some() || inner.emit == EmitMode::Changes {
                return Err(QuiverError::Unsupported(
                    "a window or EMIT CHANGES inside a subquery; put it in the outer query".into(),
                ));
            }
            if let Some(from) = select.from.first() {
                rename_output(&mut inner, &columns, &from.relation)?;
            }
            let (source, schema) = (inner.source.clone(), inner.output_schema.clone());
            (Some(Box::new(inner)), source, schema)
        }
        None => {
            let (source, schema) = resolve_source(select, tables)?;
            (None, source, schema)
        }
    };
    let scan_schema = source_schema;
    // Subqueries in this level's expressions are planned first, each on its own.
    let mut expression_roots: Vec<&ast::Expr> = select
        .projection
        .iter()
        .filter_map(item_expr)
        .chain(select.selection.as_ref())
        .chain(select.having.as_ref())
        .chain(select.qualify.as_ref())
        .collect();
    if let ast::GroupByExpr::Expressions(exprs, _) = &select.group_by {
        expression_roots.extend(exprs);
    }
    if let Some(ast::OrderByKind::Expressions(keys)) = query.order_by.as_ref().map(|o| &o.kind) {
        expression_roots.extend(keys.iter().map(|k| &k.expr));
    }
    for from in &select.from {
        for join in &from.joins {
            if let ast::JoinOperator::Join(ast::JoinConstraint::On(on))
            | ast::JoinOperator::Inner(ast::JoinConstraint::On(on))
            | ast::JoinOperator::Left(ast::JoinConstraint::On(on))
            | ast::JoinOperator::LeftOuter(ast::JoinConstraint::On(on)) = &join.join_operator
            {
                expression_roots.push(on);
            }
        }
    }
    let mut subqueries = Vec::new();
    let mut scope: SubqueryScope = Vec::new();
    for subquery in expression_subqueries(expression_roots.into_iter()) {
        let planned =
            plan_query(&subquery, tables, &streaming::Parsed::default(), &ctes).map_err(|e| {
                let why = match e {
                    QuiverError::Unsupported(why) => why,
                    other => other.to_string(),
                };
                // An unknown name in `x.col` or `col` may be the outer query's.
                let outer_name = why.contains("unknown column") || why.contains("tables in FROM");
                let hint = if outer_name && !why.contains("correlated subquery") {
                    " (a subquery reading the outer query's columns, a correlated subquery, is \
                     supported in WHERE and in the SELECT list of a query without aggregates: \
                     [NOT] EXISTS, IN (in WHERE, not under NOT) and scalar aggregates, comparing \
                     the subquery's columns with the outer query's)"
                } else {
                    ""
                };
                QuiverError::Unsupported(format!("in the subquery `{subquery}`: {why}{hint}"))
            })?;
        if planned.explain || planned.window.is_some() || planned.emit == EmitMode::Changes {
            return Err(QuiverError::Unsupported(format!(
                "a window or EMIT CHANGES in the subquery `{subquery}`"
            )));
        }
        let data_type = match planned.output_schema.fields().as_ref() {
            [one] => Some(one.data_type().clone()),
            _ => None,
        };
        scope.push((subquery, subqueries.len(), data_type));
        subqueries.push(PlanSubquery {
            plan: planned,
            rows: None,
        });
    }
    let _subquery_scope = SubqueryScopeGuard::enter(scope);
    let PlannedFrom {
        mut joins,
        schema: source_schema,
        qualifiers,
        merged,
        star,
    } = plan_joins(select, tables, &ctes, &scan_schema)?;
    if !joins.is_empty() && (parsed.window.is_some() || parsed.emit == Some(EmitMode::Changes)) {
        return Err(QuiverError::Unsupported(
            "JOIN in a windowed or EMIT CHANGES query (not yet); join in a subquery in FROM \
             and window its rows: SELECT ... FROM (SELECT ... JOIN ...) AS j GROUP BY ... \
             WINDOW ..."
                .into(),
        ));
    }
    // Window functions: in SELECT, QUALIFY and ORDER BY only; computed after HAVING.
    let order_keys: Vec<&ast::Expr> = match query.order_by.as_ref().map(|o| &o.kind) {
        Some(ast::OrderByKind::Expressions(keys)) => keys.iter().map(|k| &k.expr).collect(),
        _ => Vec::new(),
    };
    let windowed = windowed_calls(
        select
            .projection
            .iter()
            .filter_map(|item| match item {
                ast::SelectItem::UnnamedExpr(e)
                | ast::SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
                _ => None,
            })
            .chain(select.qualify.as_ref())
            .chain(order_keys.iter().copied()),
    )?;
    if let Some(selection) = &select.selection {
        refuse_windowed(selection, "WHERE")?;
    }
    if let ast::GroupByExpr::Expressions(exprs, _) = &select.group_by {
        for e in exprs {
            refuse_windowed(e, "GROUP BY")?;
        }
    }
    if let Some(having) = &select.having {
        refuse_windowed(having, "HAVING")?;
    }
    if !windowed.is_empty() && matches!(select.distinct, Some(ast::Distinct::Distinct)) {
        return Err(QuiverError::Unsupported(
            "SELECT DISTINCT with window functions; select them in a subquery and apply \
             DISTINCT outside"
                .into(),
        ));
    }
    if select.qualify.is_some() && windowed.is_empty() {
        return Err(QuiverError::Unsupported(
            "QUALIFY without a window function; use WHERE or HAVING".into(),
        ));
    }
    let star_names: Vec<String> = match &star {
        Some(star) => star.iter().map(|(_, name)| name.clone()).collect(),
        None => source_schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(i, _)| {
                !qualifiers
                    .as_ref()
                    .and_then(|q| q.get(*i))
                    .is_some_and(|q| decorrelate::is_joined_subquery(q))
            })
            .map(|(_, f)| f.name().clone())
            .collect(),
    };
    let select = &distinct_as_group_by(select, &star_names)?;
    let columns = Columns {
        schema: &source_schema,
        qualifiers: qualifiers.as_deref(),
        merged: &merged,
    };
    // With joins, the WHERE conjuncts over scanned columns alone filter before joining: the
    // same rows result (inner and left joins keep or extend each scanned row).
    // Conjuncts over the columns up to an inner join's table are checked at that join
    // (equalities become its keys): `FROM a, b WHERE a.x = b.y` is a hash join.
    let (mut scan_conjuncts, mut other_conjuncts) = (Vec::new(), Vec::new());
    let scan_width = scan_schema.fields().len();
    // Not past a RIGHT or FULL join: rows filtered out before it would come back as its
    // table's unmatched rows, with NULLs a condition such as `x IS NULL` keeps.
    let pushdown = !joins.iter().any(|j| j.kind.keeps_unmatched_table_rows());
    for conjunct in select.selection.iter().flat_map(conjuncts) {
        let planned = columns.scalar(conjunct)?;
        let used = column_indices(&planned);
        if !pushdown {
            other_conjuncts.push(planned);
        } else if !joins.is_empty() && used.iter().all(|&c| c < scan_width) {
            scan_conjuncts.push(planned);
        } else if let Some(index) = inner_join_reading(&joins, scan_width, &used) {
            let start = join_start(&joins, scan_width, index);
            add_join_condition(&mut joins[index], planned, start, &source_schema)?;
        } else {
            other_conjuncts.push(planned);
        }
    }
    let all_of = |parts: Vec<Expr>| {
        parts
            .into_iter()
            .reduce(|a, b| Expr::Binary(Box::new(a), BinaryOp::And, Box::new(b)))
            .map(predicate)
    };
    let scan_filter = all_of(scan_conjuncts);
    let filter = all_of(other_conjuncts);
    let mut group_exprs: Vec<ast::Expr> = match &select.group_by {
        ast::GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => exprs
            .iter()
            .map(|e| select_item_for_group(e, select, &source_schema))
            .collect::<Result<_>>()?,
        other => return Err(QuiverError::Unsupported(format!("`{other}`"))),
    };
    // The window: a WINDOW clause, or a tumble/hop/session call among the GROUP BY items.
    let mut window_call: Option<(String, Vec<ast::Expr>, sqlparser::tokenizer::Span)> = parsed
        .window
        .as_ref()
        .map(|w| (w.kind.clone(), w.arguments.clone(), w.span));
    let mut kept_groups = Vec::new();
    for expr in group_exprs {
        match streaming::group_window_kind(&expr) {
            Some(kind) => {
                if window_call.is_some() {
                    return Err(unsupported(
                        format!("a second window `{expr}`; a query has one window"),
                        expr_span(&expr),
                    ));
                }
                window_call = Some((
                    kind.to_string(),
                    streaming::call_arguments(&expr)?,
                    expr_span(&expr),
                ));
            }
            None => kept_groups.push(expr),
        }
    }
    group_exprs = kept_groups;
    let window = match &window_call {
        None => None,
        Some((kind, arguments, span)) => {
            let Some((time, lengths)) = arguments.split_first() else {
                return Err(unsupported(
                    format!("{kind} window without arguments; expected (time column, ...)"),
                    *span,
                ));
            };
            let processing_time = match time {
                ast::Expr::Function(f) => matches!(
                    f.name.to_string().to_ascii_lowercase().as_str(),
                    "proctime" | "now" | "current_timestamp"
                ),
                _ => false,
            };
            let (time_column, time_type) = if processing_time {
                (
                    None,
                    DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
                )
            } else {
                let column = match columns.scalar(time)? {
                    Expr::Column(i) => i,
                    _ => {
                        return Err(unsupported(
                            format!(
                                "window time `{time}`; a column name (or PROCTIME() for \
                                 processing time) is expected"
                            ),
                            expr_span(time),
                        ))
                    }
                };
                (
                    Some(column),
                    source_schema.field(column).data_type().clone(),
                )
            };
            if !quiver_kernels::window::is_event_time_type(&time_type) {
                return Err(unsupported(
                    format!(
                        "window time column `{time}` of type {time_type}; a timestamp, date or \
                         integer milliseconds column is expected"
                    ),
                    expr_span(time),
                ));
            }
            Some(PlanWindow {
                spec: streaming::window_spec(kind, lengths, *span)?,
                time_column,
                time_type,
            })
        }
    };
    let emit = parsed.emit.unwrap_or(EmitMode::Final);
    let has_aggregates = selects_aggregate(select) || select.having.is_some();

    let mut plan_output: Vec<(Expr, String)> = Vec::new();
    let mut aliases: Vec<(String, usize)> = Vec::new();
    let kind;
    let output_input_schema: Schema;
    let mut aggregate_scope: Option<AggregateScope> = None;
    let mut change_output: Option<usize> = None;
    if group_exprs.is_empty() && !has_aggregates && window.is_none() {
        for item in &select.projection {
            match item {
                ast::SelectItem::Wildcard(options) => {
                    // `* REPLACE (expr AS name)`: the column keeps its place, under the name
                    // as written there (as in DuckDB).
                    let (options, replacements) = wildcard_replacements(options);
                    let first_output = plan_output.len();
                    match &star {
                        // With USING / NATURAL: each merged column once, first.
                        Some(star) => {
                            let kept = wildcard_columns(&options, &star_schema(star))?;
                            plan_output.extend(kept.into_iter().map(|i| star[i].clone()));
                        }
                        None => {
                            for i in wildcard_columns(&options, &source_schema)? {
                                // Not the columns of subqueries joined for correlated ones.
                                if qualifiers
                                    .as_ref()
                                    .and_then(|q| q.get(i))
                                    .is_some_and(|q| decorrelate::is_joined_subquery(q))
                                {
                                    continue;
                                }
                                let name = source_schema.field(i).name().clone();
                                plan_output.push((Expr::Column(i), name));
                            }
                        }
                    }
                    for (name, replacement) in replacements {
                        let output = plan_output[first_output..]
                            .iter_mut()
                            .find(|(_, column)| same_column_name(column, &name))
                            .ok_or_else(|| {
                                QuiverError::Unsupported(format!(
                                    "REPLACE of `{name}`, which `*` does not select"
                                ))
                            })?;
                        *output = (columns.scalar_with(replacement, &windowed)?, name);
                    }
                }
                ast::SelectItem::QualifiedWildcard(
                    ast::SelectItemQualifiedWildcardKind::ObjectName(table),
                    options,
                ) if qualifiers.is_some() => {
                    // `t.*`: the columns of one FROM item.
                    let wanted = last_name(table);
                    let owned: Vec<usize> = qualifiers
                        .iter()
                        .flatten()
                        .enumerate()
                        .filter(|(_, q)| q.eq_ignore_ascii_case(&wanted))
                        .map(|(i, _)| i)
                        .collect();
                    if owned.is_empty() {
                        return Err(QuiverError::Unsupported(format!(
                            "`{table}.*`: no table `{wanted}` in FROM"
                        )));
                    }
                    for i in wildcard_columns(options, &source_schema)? {
                        if owned.contains(&i) {
                            let name = source_schema.field(i).name().clone();
                            plan_output.push((Expr::Column(i), name));
                        }
                    }
                }
                ast::SelectItem::UnnamedExpr(e) => {
                    plan_output.push((columns.scalar_with(e, &windowed)?, display_name(e)))
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    aliases.push((alias.value.clone(), plan_output.len()));
                    plan_output.push((columns.scalar_with(expr, &windowed)?, alias.value.clone()));
                }
                other => return Err(QuiverError::Unsupported(format!("select item `{other}`"))),
            }
        }
        kind = PlanKind::Projection;
        output_input_schema = source_schema.as_ref().clone();
    } else {
        let mut scope = AggregateScope {
            window_type: window
                .as_ref()
                .map(|w| streaming::window_bound_type(&w.time_type)),
            changes: emit == EmitMode::Changes,
            columns: &columns,
            group_by: group_exprs
                .iter()
                .map(|e| Ok((e.clone(), columns.scalar(e)?, display_name(e))))
                .collect::<Result<Vec<_>>>()?,
            aggregates: Vec::new(),
            windowed: &windowed,
        };
        for item in &select.projection {
            match item {
                ast::SelectItem::UnnamedExpr(e) => {
                    let planned = scope.output(e)?;
                    plan_output.push((planned, display_name(e)));
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    aliases.push((alias.value.clone(), plan_output.len()));
                    let planned = scope.output(expr)?;
                    plan_output.push((planned, alias.value.clone()));
                }
                ast::SelectItem::Wildcard(_) => {
                    return Err(QuiverError::Unsupported(
                        "SELECT * with GROUP BY or aggregates".into(),
                    ))
                }
                other => return Err(QuiverError::Unsupported(format!("select item `{other}`"))),
            }
        }
        let having = select
            .having
            .as_ref()
            .map(|h| scope.output(h).map(predicate))
            .transpose()?;
        // Window bounds lead the output unless the query selects them itself.
        if window.is_some()
            && !plan_output
                .iter()
                .any(|(e, _)| matches!(e, Expr::Column(0 | 1)))
        {
            for (_, index) in &mut aliases {
                *index += 2;
            }
            plan_output.insert(0, (Expr::Column(1), "window_end".to_string()));
            plan_output.insert(0, (Expr::Column(0), "window_start".to_string()));
        }
        if emit == EmitMode::Changes {
            change_output = Some(plan_output.len());
            plan_output.push((Expr::Column(scope.change_column()), "change".to_string()));
        }
        output_input_schema = scope.result_schema(&source_schema)?;
        kind = PlanKind::Aggregate {
            group_by: scope
                .group_by
                .iter()
                .map(|(_, e, n)| (e.clone(), n.clone()))
                .collect(),
            aggregates: scope.aggregates.clone(),
            having,
        };
        aggregate_scope = Some(scope);
    }

    // Window functions over the rows the output reads (their aggregates join the aggregate
    // list), and QUALIFY over the same rows plus their results.
    let mut analytic = Vec::new();
    for call in &windowed {
        analytic.push(match &mut aggregate_scope {
            Some(scope) => plan_windowed(call, &mut |e| scope.output(e))?,
            None => plan_windowed(call, &mut |e| columns.scalar(e))?,
        });
    }
    let qualify = select
        .qualify
        .as_ref()
        .map(|q| with_aliases_expanded(q, select, &source_schema))
        .map(|q| {
            match &mut aggregate_scope {
                Some(scope) => scope.output(&q),
                None => columns.scalar_with(&q, &windowed),
            }
            .map(predicate)
        })
        .transpose()?;
    if !analytic.is_empty() && (window.is_some() || emit == EmitMode::Changes) {
        return Err(QuiverError::Unsupported(
            "window functions (OVER) in a windowed or EMIT CHANGES query; compute them in an \
             outer query over its result"
                .into(),
        ));
    }

    // ORDER BY: an output name or alias, a 1-based position, or an expression (planned in the
    // same scope as the output and appended as a hidden column).
    let mut order_by = Vec::new();
    let mut hidden = 0;
    if let Some(order) = &query.order_by {
        let ast::OrderByKind::Expressions(keys) = &order.kind else {
            return Err(QuiverError::Unsupported("ORDER BY ALL".into()));
        };
        for key in keys {
            let descending = key.options.asc == Some(false);
            // PostgreSQL's default: NULLs last ascending, first descending (DuckDB puts them last
            // both ways; write NULLS FIRST/LAST to be portable).
            let nulls_first = key.options.nulls_first.unwrap_or(descending);
            let by_name = match &key.expr {
                ast::Expr::Identifier(ident) => aliases
                    .iter()
                    .find(|(a, _)| a.eq_ignore_ascii_case(&ident.value))
                    .map(|(_, i)| *i)
                    .or_else(|| {
                        plan_output
                            .iter()
                            .position(|(_, n)| n.eq_ignore_ascii_case(&ident.value))
                    }),
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::Number(n, _) => {
                        let position: usize = n
                            .parse()
                            .map_err(|_| unsupported(format!("ORDER BY position {n}"), v.span))?;
                        if position == 0 || position > plan_output.len() {
                            return Err(unsupported(
                                format!(
                                    "ORDER BY position {position}; the query has {} columns",
                                    plan_output.len()
                                ),
                                v.span,
                            ));
                        }
                        Some(position - 1)
                    }
                    _ => None,
                },
                _ => None,
            };
            let index = match by_name {
                Some(i) => i,
                None => {
                    let planned = match &mut aggregate_scope {
                        Some(scope) => scope.output(&key.expr)?,
                        None => columns.scalar_with(&key.expr, &windowed)?,
                    };
                    hidden += 1;
                    plan_output.push((planned, format!("__sort_{hidden}")));
                    plan_output.len() - 1
                }
            };
            order_by.push(SortKey {
                expr: Expr::Column(index),
                descending,
                nulls_first,
            });
        }
    }
    // Aggregates first seen in ORDER BY extend the aggregate list.
    let (kind, output_input_schema) = match (kind, aggregate_scope) {
        (
            PlanKind::Aggregate {
                group_by, having, ..
            },
            Some(scope),
        ) => {
            let schema = scope.result_schema(&source_schema)?;
            if let Some(i) = change_output {
                plan_output[i].0 = Expr::Column(scope.change_column());
            }
            (
                PlanKind::Aggregate {
                    group_by,
                    aggregates: scope.aggregates.clone(),
                    having,
                },
                schema,
            )
        }
        (kind, _) => (kind, output_input_schema),
    };
    // Window function results follow the columns the output reads.
    let base_width = output_input_schema.fields().len();
    let mut extended = output_input_schema.fields().to_vec();
    for (i, call) in analytic.iter().enumerate() {
        extended.push(std::sync::Arc::new(Field::new(
            format!("window_function_{i}"),
            call.data_type(&output_input_schema)?,
            true,
        )));
    }
    let output_input_schema = Schema::new(extended);
    let renumber = |e: Expr| {
        e.map_columns(&|c| {
            if c >= WINDOWED_COLUMN_BASE {
                base_width + (c - WINDOWED_COLUMN_BASE)
            } else {
                c
            }
        })
    };
    for (e, _) in &mut plan_output {
        *e = renumber(std::mem::replace(e, Expr::Column(0)));
    }
    let qualify = qualify.map(renumber);
    // A constant expression of a whole number (`LIMIT 10`, `LIMIT 2 * 5`).
    let count = |e: &ast::Expr, what: &str| -> Result<usize> {
        let empty = Schema::empty();
        let value = Columns::new(&empty)
            .scalar(e)
            .ok()
            .filter(Expr::is_constant)
            .map(Expr::fold);
        match value {
            Some(Expr::Literal(Literal::Int64(n))) => usize::try_from(n).map_err(|_| {
                unsupported(
                    format!("{what} {e}: a count is never negative"),
                    expr_span(e),
                )
            }),
            _ => Err(unsupported(
                format!("{what} {e}; a whole number is expected"),
                expr_span(e),
            )),
        }
    };
    let (limit, offset) = match &query.limit_clause {
        None => (None, 0),
        Some(ast::LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) if limit_by.is_empty() => (
            limit.as_ref().map(|l| count(l, "LIMIT")).transpose()?,
            offset
                .as_ref()
                .map(|o| count(&o.value, "OFFSET"))
                .transpose()?
                .unwrap_or(0),
        ),
        Some(ast::LimitClause::OffsetCommaLimit { offset, limit }) => {
            (Some(count(limit, "LIMIT")?), count(offset, "OFFSET")?)
        }
        Some(other) => return Err(QuiverError::Unsupported(format!("`{other}`"))),
    };
    // `FETCH FIRST n ROWS ONLY` and `TOP n` are LIMIT n.
    let fetched = match (&query.fetch, &select.top) {
        (None, None) => None,
        (Some(fetch), None) if !fetch.with_ties && !fetch.percent => Some(match &fetch.quantity {
            Some(quantity) => count(quantity, "FETCH FIRST")?,
            None => 1,
        }),
        (None, Some(top)) if !top.with_ties && !top.percent => Some(match &top.quantity {
            Some(ast::TopQuantity::Constant(n)) => {
                usize::try_from(*n).map_err(|_| QuiverError::Unsupported(format!("TOP {n}")))?
            }
            Some(ast::TopQuantity::Expr(e)) => count(e, "TOP")?,
            None => return Err(QuiverError::Unsupported("TOP without a count".into())),
        }),
        (Some(fetch), None) => {
            return Err(QuiverError::Unsupported(format!(
                "`{fetch}`: WITH TIES and PERCENT are not supported; FETCH FIRST n ROWS ONLY is"
            )))
        }
        (None, Some(top)) => {
            return Err(QuiverError::Unsupported(format!(
                "`{top}`: WITH TIES and PERCENT are not supported; TOP n is"
            )))
        }
        (Some(_), Some(_)) => {
            return Err(QuiverError::Unsupported("both TOP and FETCH FIRST".into()))
        }
    };
    let limit = match (limit, fetched) {
        (Some(_), Some(_)) => {
            return Err(QuiverError::Unsupported(
                "both LIMIT and FETCH FIRST (or TOP); give one".into(),
            ))
        }
        (limit, fetched) => limit.or(fetched),
    };
    if offset > 0 && (window.is_some() || emit == EmitMode::Changes) {
        return Err(QuiverError::Unsupported(
            "OFFSET on a windowed or EMIT CHANGES stream; its rows are emitted as windows close"
                .into(),
        ));
    }
    let fields = plan_output
        .iter()
        .map(|(e, n)| Ok(Field::new(n, e.data_type(&output_input_schema)?, true)))
        .collect::<Result<Vec<_>>>()?;
    let visible = plan_output.len() - hidden;
    let output_schema = std::sync::Arc::new(Schema::new(fields[..visible].to_vec()));
    let emit = match kind {
        // Projections stream rows as they come; EMIT has nothing to change there.
        PlanKind::Projection => EmitMode::Final,
        PlanKind::Aggregate { .. } => emit,
    };
    // Constants are computed once, here (types were taken above, before folding).
    let filter = filter.map(Expr::fold);
    let kind = match kind {
        PlanKind::Projection => PlanKind::Projection,
        PlanKind::Aggregate {
            group_by,
            aggregates,
            having,
        } => PlanKind::Aggregate {
            group_by: group_by.into_iter().map(|(e, n)| (e.fold(), n)).collect(),
            aggregates: aggregates
                .into_iter()
                .map(|mut call| {
                    call.argument = call.argument.map(Expr::fold);
                    call.filter = call.filter.map(Expr::fold);
                    call
                })
                .collect(),
            having: having.map(Expr::fold),
        },
    };
    let plan_output = plan_output
        .into_iter()
        .map(|(e, n)| (e.fold(), n))
        .collect();
    let analytic = analytic
        .into_iter()
        .map(|mut call| {
            call.arguments = call.arguments.into_iter().map(Expr::fold).collect();
            call.filter = call.filter.map(Expr::fold);
            call.partition_by = call.partition_by.into_iter().map(Expr::fold).collect();
            for key in &mut call.order_by {
                key.expr = std::mem::replace(&mut key.expr, Expr::Column(0)).fold();
            }
            call
        })
        .collect();
    let plan = Plan {
        source,
        source_schema,
        scan_schema,
        scan_filter: scan_filter.map(Expr::fold),
        subqueries,
        joins: joins
            .into_iter()
            .map(|mut join| {
                join.left_keys = join.left_keys.into_iter().map(Expr::fold).collect();
                join.right_keys = join.right_keys.into_iter().map(Expr::fold).collect();
                join.residual = join.residual.map(Expr::fold);
                join.table_filter = join.table_filter.map(Expr::fold);
                join
            })
            .collect(),
        input,
        derived_source: None,
        filter,
        kind,
        analytic,
        qualify: qualify.map(Expr::fold),
        output: plan_output,
        order_by,
        limit,
        offset,
        output_schema,
        window,
        emit,
        explain: false,
    };
    Ok(with_outer_joins_held(plan))
}

/// `plan` with its FROM rows computed before the query (a `Joined` derived source) when a
/// join keeps its table's unmatched rows (`RIGHT`, `FULL`): those rows are known only after
/// every row before the join has probed it.
fn with_outer_joins_held(mut plan: Plan) -> Plan {
    if !plan
        .joins
        .iter()
        .any(|j| j.kind.keeps_unmatched_table_rows())
    {
        return plan;
    }
    let joins = std::mem::take(&mut plan.joins);
    let scan = Plan {
        source: std::mem::take(&mut plan.source),
        source_schema: plan.scan_schema.clone(),
        scan_schema: plan.scan_schema.clone(),
        joins: Vec::new(),
        subqueries: Vec::new(),
        input: plan.input.take(),
        derived_source: plan.derived_source.take(),
        scan_filter: plan.scan_filter.take(),
        filter: None,
        kind: PlanKind::Projection,
        analytic: Vec::new(),
        qualify: None,
        output: plan
            .scan_schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (Expr::Column(i), f.name().clone()))
            .collect(),
        order_by: Vec::new(),
        limit: None,
        offset: 0,
        output_schema: plan.scan_schema.clone(),
        window: None,
        emit: plan.emit,
        explain: false,
    };
    plan.scan_schema = plan.source_schema.clone();
    plan.derived_source = Some(DerivedSource::Joined {
        scan: Box::new(PlanSubquery {
            plan: scan,
            rows: None,
        }),
        joins,
    });
    plan
}

/// `SELECT DISTINCT items ...` as `SELECT items ... GROUP BY items` (a `*` expanded to every
/// source column): the rows' distinct values are the groups. Other selects pass through.
/// A GROUP BY item as the expression it stands for: `GROUP BY 2` is the second SELECT item, and
/// a name that is not a source column but a SELECT alias is that item (a source column wins, as
/// in PostgreSQL). Anything else is itself.
fn select_item_for_group(
    expr: &ast::Expr,
    select: &ast::Select,
    source_schema: &Schema,
) -> Result<ast::Expr> {
    match expr {
        ast::Expr::Value(v) => {
            let ast::Value::Number(n, _) = &v.value else {
                return Ok(expr.clone());
            };
            let position: usize = n
                .parse()
                .map_err(|_| unsupported(format!("GROUP BY position {n}"), v.span))?;
            let item = position
                .checked_sub(1)
                .and_then(|i| select.projection.get(i))
                .ok_or_else(|| {
                    unsupported(
                        format!(
                            "GROUP BY position {position}; the SELECT list has {} items",
                            select.projection.len()
                        ),
                        v.span,
                    )
                })?;
            match item {
                ast::SelectItem::UnnamedExpr(e)
                | ast::SelectItem::ExprWithAlias { expr: e, .. } => Ok(e.clone()),
                other => Err(unsupported(
                    format!("GROUP BY position {position}, which is `{other}`"),
                    v.span,
                )),
            }
        }
        ast::Expr::Identifier(ident)
            if !source_schema
                .fields()
                .iter()
                .any(|f| f.name().eq_ignore_ascii_case(&ident.value)) =>
        {
            Ok(aliased_item(select, &ident.value).unwrap_or_else(|| expr.clone()))
        }
        _ => Ok(expr.clone()),
    }
}

/// `SELECT DISTINCT items` as `GROUP BY items`; `star` names the columns `*` stands for.
fn distinct_as_group_by(select: &ast::Select, star: &[String]) -> Result<ast::Select> {
    let mut select = select.clone();
    match select.distinct.take() {
        None | Some(ast::Distinct::All) => return Ok(select),
        Some(ast::Distinct::On(_)) => {
            return Err(QuiverError::Unsupported(
                "SELECT DISTINCT ON (...); use GROUP BY with FIRST_VALUE".into(),
            ))
        }
        Some(ast::Distinct::Distinct) => {}
    }
    let grouped = !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
    if grouped || selects_aggregate(&select) || select.having.is_some() {
        return Err(QuiverError::Unsupported(
            "SELECT DISTINCT with GROUP BY, HAVING or aggregates; GROUP BY the selected \
             columns instead"
                .into(),
        ));
    }
    let mut projection = Vec::new();
    let mut keys = Vec::new();
    for item in &select.projection {
        match item {
            ast::SelectItem::Wildcard(options) => {
                let names = Schema::new(
                    star.iter()
                        .map(|name| Field::new(name, DataType::Null, true))
                        .collect::<Vec<_>>(),
                );
                for i in wildcard_columns(options, &names)? {
                    let field = names.field(i);
                    let column = ast::Expr::Identifier(ast::Ident::with_quote('"', field.name()));
                    keys.push(column.clone());
                    projection.push(ast::SelectItem::UnnamedExpr(column));
                }
            }
            ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                keys.push(e.clone());
                projection.push(item.clone());
            }
            other => {
                return Err(QuiverError::Unsupported(format!(
                    "`{other}` in SELECT DISTINCT"
                )))
            }
        }
    }
    select.projection = projection;
    select.group_by = ast::GroupByExpr::Expressions(keys, Vec::new());
    Ok(select)
}

/// The query `FROM` reads when it is a subquery (`FROM (SELECT ...) [AS] x`) or names a `WITH`
/// query, with the `WITH` queries in scope for it.
#[allow(clippy::type_complexity)]
fn subquery_source<'a>(
    select: &'a ast::Select,
    ctes: &[NamedQuery<'a>],
) -> Result<Option<(&'a ast::Query, Vec<NamedQuery<'a>>, Vec<String>)>> {
    let [from] = select.from.as_slice() else {
        return Ok(None);
    };
    match &from.relation {
        ast::TableFactor::Derived {
            lateral: false,
            subquery,
            alias,
            ..
        } => Ok(Some((
            subquery.as_ref(),
            ctes.to_vec(),
            alias_columns(alias.as_ref()),
        ))),
        ast::TableFactor::Table { name, alias, .. } => {
            let wanted = unquoted_name(name);
            // The latest definition of a name wins; it sees only the queries named before it.
            Ok(ctes
                .iter()
                .rev()
                .find(|c| c.name.eq_ignore_ascii_case(&wanted))
                .map(|c| {
                    let columns = match alias.as_ref().filter(|a| !a.columns.is_empty()) {
                        Some(renamed) => alias_columns(Some(renamed)),
                        None => c.columns.clone(),
                    };
                    (c.query, c.earlier.clone(), columns)
                }))
        }
        _ => Ok(None),
    }
}

/// `expr` with the conjuncts shared by every branch of an OR (`(a AND b) OR (a AND c)`)
/// taken out of it (`a AND (b OR c)`, the same in SQL's three-valued logic), in each of its
/// conjuncts; `None` when there are none.
fn common_conjuncts_factored(expr: &ast::Expr) -> Option<ast::Expr> {
    fn disjuncts(expr: &ast::Expr) -> Vec<&ast::Expr> {
        match expr {
            ast::Expr::BinaryOp {
                left,
                op: ast::BinaryOperator::Or,
                right,
            } => {
                let mut all = disjuncts(left);
                all.extend(disjuncts(right));
                all
            }
            ast::Expr::Nested(inner) => disjuncts(inner),
            other => vec![other],
        }
    }
    fn joined(parts: Vec<ast::Expr>, op: ast::BinaryOperator) -> Option<ast::Expr> {
        parts.into_iter().reduce(|left, right| ast::Expr::BinaryOp {
            left: Box::new(left),
            op: op.clone(),
            right: Box::new(right),
        })
    }
    let mut changed = false;
    let mut parts: Vec<ast::Expr> = Vec::new();
    for conjunct in conjuncts(expr) {
        let branches = disjuncts(conjunct);
        if branches.len() < 2 {
            parts.push(conjunct.clone());
            continue;
        }
        let branch_conjuncts: Vec<Vec<&ast::Expr>> =
            branches.iter().map(|b| conjuncts(b)).collect();
        let key = |e: &ast::Expr| e.to_string();
        let common: Vec<&ast::Expr> = branch_conjuncts[0]
            .iter()
            .copied()
            .filter(|c| {
                branch_conjuncts[1..]
                    .iter()
                    .all(|other| other.iter().any(|o| key(o) == key(c)))
            })
            .collect();
        if common.is_empty() {
            parts.push(conjunct.clone());
            continue;
        }
        changed = true;
        let common_keys: Vec<String> = common.iter().map(|c| key(c)).collect();
        parts.extend(common.iter().map(|c| (*c).clone()));
        let rest: Vec<Option<ast::Expr>> = branch_conjuncts
            .iter()
            .map(|cs| {
                joined(
                    cs.iter()
                        .filter(|c| !common_keys.contains(&key(c)))
                        .map(|c| ast::Expr::Nested(Box::new((*c).clone())))
                        .collect(),
                    ast::BinaryOperator::And,
                )
            })
            .collect();
        // A branch left with nothing is TRUE: so is the OR.
        if rest.iter().all(Option::is_some) {
            let or = joined(
                rest.into_iter()
                    .flatten()
                    .map(|e| ast::Expr::Nested(Box::new(e)))
                    .collect(),
                ast::BinaryOperator::Or,
            );
            parts.extend(or.map(|e| ast::Expr::Nested(Box::new(e))));
        }
    }
    if !changed {
        return None;
    }
    joined(parts, ast::BinaryOperator::And)
}

/// The query with its `WINDOW name AS (...)` definitions written into every `OVER name` and
/// `OVER (name ORDER BY ... frame)` of its own SELECT (subqueries resolve their own), as
/// PostgreSQL defines them: a window named in parentheses lends its PARTITION BY and ORDER BY,
/// which the call may not repeat, and must have no frame. A definition may build on an earlier
/// one.
fn named_windows_inlined(query: &ast::Query) -> Result<Option<ast::Query>> {
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    if select.named_window.is_empty() {
        return Ok(None);
    }
    let mut definitions: Vec<(ast::Ident, ast::WindowSpec)> = Vec::new();
    for ast::NamedWindowDefinition(name, definition) in &select.named_window {
        if definitions
            .iter()
            .any(|(known, _)| same_identifier(known, name))
        {
            return Err(QuiverError::InvalidQuery(format!(
                "window `{name}` is defined twice"
            )));
        }
        let spec = match definition {
            ast::NamedWindowExpr::NamedWindow(base) => {
                window_named(&definitions, base, &format!("WINDOW {name} AS {base}"))?.clone()
            }
            ast::NamedWindowExpr::WindowSpec(spec) => {
                window_spec_resolved(&definitions, spec, &format!("WINDOW {name}"))?
            }
        };
        definitions.push((name.clone(), spec));
    }
    struct Inliner<'a> {
        definitions: &'a [(ast::Ident, ast::WindowSpec)],
        depth: usize,
        failure: Option<QuiverError>,
    }
    impl ast::VisitorMut for Inliner<'_> {
        type Break = ();
        fn pre_visit_query(&mut self, _: &mut ast::Query) -> std::ops::ControlFlow<()> {
            self.depth += 1;
            std::ops::ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &mut ast::Query) -> std::ops::ControlFlow<()> {
            self.depth -= 1;
            std::ops::ControlFlow::Continue(())
        }
        fn pre_visit_expr(&mut self, e: &mut ast::Expr) -> std::ops::ControlFlow<()> {
            // Depth 1 is the query itself; deeper ones are subqueries with their own WINDOW.
            if self.depth != 1 {
                return std::ops::ControlFlow::Continue(());
            }
            let ast::Expr::Function(f) = e else {
                return std::ops::ControlFlow::Continue(());
            };
            let call = format!("`{f}`");
            let resolved = match &f.over {
                Some(ast::WindowType::NamedWindow(name)) => {
                    window_named(self.definitions, name, &call).cloned()
                }
                Some(ast::WindowType::WindowSpec(spec)) if spec.window_name.is_some() => {
                    window_spec_resolved(self.definitions, spec, &call)
                }
                _ => return std::ops::ControlFlow::Continue(()),
            };
            match resolved {
                Ok(spec) => {
                    f.over = Some(ast::WindowType::WindowSpec(spec));
                    std::ops::ControlFlow::Continue(())
                }
                Err(e) => {
                    self.failure = Some(e);
                    std::ops::ControlFlow::Break(())
                }
            }
        }
    }
    let mut rewritten = query.clone();
    if let ast::SetExpr::Select(select) = rewritten.body.as_mut() {
        select.named_window.clear();
    }
    let mut inliner = Inliner {
        definitions: &definitions,
        depth: 0,
        failure: None,
    };
    let _ = ast::VisitMut::visit(&mut rewritten, &mut inliner);
    match inliner.failure {
        Some(failure) => Err(failure),
        None => Ok(Some(rewritten)),
    }
}

/// Whether two identifiers name the same thing: quoted ones exactly, others in any case.
fn same_identifier(a: &ast::Ident, b: &ast::Ident) -> bool {
    if a.quote_style.is_some() || b.quote_style.is_some() {
        a.value == b.value
    } else {
        a.value.eq_ignore_ascii_case(&b.value)
    }
}

fn window_named<'a>(
    definitions: &'a [(ast::Ident, ast::WindowSpec)],
    name: &ast::Ident,
    context: &str,
) -> Result<&'a ast::WindowSpec> {
    definitions
        .iter()
        .find(|(known, _)| same_identifier(known, name))
        .map(|(_, spec)| spec)
        .ok_or_else(|| {
            QuiverError::InvalidQuery(format!(
                "{context}: window `{name}` is not defined; WINDOW {name} AS (...) defines it"
            ))
        })
}

/// `(base ORDER BY ... frame)` with `base`'s PARTITION BY and ORDER BY filled in.
fn window_spec_resolved(
    definitions: &[(ast::Ident, ast::WindowSpec)],
    spec: &ast::WindowSpec,
    context: &str,
) -> Result<ast::WindowSpec> {
    let Some(name) = &spec.window_name else {
        return Ok(spec.clone());
    };
    let base = window_named(definitions, name, context)?;
    let refuse = |why: String| Err(QuiverError::InvalidQuery(format!("{context}: {why}")));
    if !spec.partition_by.is_empty() {
        return refuse(format!(
            "cannot override the PARTITION BY of window `{name}`"
        ));
    }
    if !spec.order_by.is_empty() && !base.order_by.is_empty() {
        return refuse(format!("cannot override the ORDER BY of window `{name}`"));
    }
    if base.window_frame.is_some() {
        return refuse(format!(
            "cannot copy window `{name}` because it has a frame; write OVER {name} without \
             parentheses"
        ));
    }
    Ok(ast::WindowSpec {
        window_name: None,
        partition_by: base.partition_by.clone(),
        order_by: if spec.order_by.is_empty() {
            base.order_by.clone()
        } else {
            spec.order_by.clone()
        },
        window_frame: spec.window_frame.clone(),
    })
}

/// `SELECT DISTINCT ON (keys) ... ORDER BY ...` as `QUALIFY ROW_NUMBER() OVER (PARTITION BY
/// keys ORDER BY ...) = 1`: the first row of each key in the query's order (ties in arrival
/// order), as PostgreSQL and DuckDB define it. `SELECT DISTINCT` over aggregates or window
/// functions as `SELECT DISTINCT *` over the query as a subquery, which then orders and
/// limits (its ORDER BY names output columns, as PostgreSQL requires of DISTINCT).
fn distinct_rewritten(query: &ast::Query) -> Result<Option<ast::Query>> {
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(None);
    };
    match &select.distinct {
        Some(ast::Distinct::On(keys)) => {
            let grouping_sets = matches!(&select.group_by, ast::GroupByExpr::Expressions(exprs, _)
                if exprs.iter().any(|e| matches!(e, ast::Expr::Rollup(_) | ast::Expr::Cube(_) | ast::Expr::GroupingSets(_))));
            if grouping_sets || keys.is_empty() {
                return Ok(None);
            }
            // The first row is picked after QUALIFY, which this rewrite would fold it into.
            if select.qualify.is_some() {
                return Err(QuiverError::Unsupported(
                    "SELECT DISTINCT ON with QUALIFY; apply QUALIFY in a subquery and DISTINCT ON \
                     outside"
                        .into(),
                ));
            }
            let keys = keys
                .iter()
                .map(|key| output_name_resolved(key, select, "DISTINCT ON"))
                .collect::<Result<Vec<_>>>()?;
            let order = match query.order_by.as_ref().map(|o| &o.kind) {
                Some(ast::OrderByKind::Expressions(order)) => order
                    .iter()
                    .map(|key| {
                        Ok(ast::OrderByExpr {
                            expr: output_name_resolved(&key.expr, select, "ORDER BY")?,
                            options: key.options,
                            with_fill: None,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                _ => Vec::new(),
            };
            if !windowed_calls(keys.iter().chain(order.iter().map(|o| &o.expr)))?.is_empty() {
                return Err(QuiverError::Unsupported(
                    "SELECT DISTINCT ON keyed or ordered by a window function; compute it in a \
                     subquery and apply DISTINCT ON outside"
                        .into(),
                ));
            }
            let partition = keys
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ");
            let ordering = if order.is_empty() {
                String::new()
            } else {
                let order: Vec<String> = order.iter().map(ToString::to_string).collect();
                format!(" ORDER BY {}", order.join(", "))
            };
            let first = parse_expression(&format!(
                "ROW_NUMBER() OVER (PARTITION BY {partition}{ordering}) = 1"
            ))?;
            let mut rewritten = query.clone();
            if let ast::SetExpr::Select(select) = rewritten.body.as_mut() {
                select.distinct = None;
                select.qualify = Some(first);
            }
            Ok(Some(rewritten))
        }
        Some(ast::Distinct::Distinct) => {
            let items: Vec<&ast::Expr> = select.projection.iter().filter_map(item_expr).collect();
            let grouped =
                !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty());
            let aggregated = grouped
                || select.having.is_some()
                || items.iter().any(|e| contains_aggregate(e))
                || !windowed_calls(items.iter().copied())?.is_empty();
            if !aggregated || select.into.is_some() {
                return Ok(None);
            }
            let mut inner_select = select.as_ref().clone();
            inner_select.distinct = None;
            let text = format!("SELECT DISTINCT * FROM ({inner_select}) AS distinct_rows");
            let parsed =
                sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::GenericDialect {}, &text)
                    .map_err(|e| {
                        QuiverError::Internal(format!("rewritten DISTINCT `{text}`: {e}"))
                    })?;
            let Some(ast::Statement::Query(outer)) = parsed.into_iter().next() else {
                return Err(QuiverError::Internal(format!(
                    "rewritten DISTINCT `{text}` is not a query"
                )));
            };
            // The query's WITH, ORDER BY and LIMIT now apply to the distinct rows.
            let mut rewritten = query.clone();
            rewritten.body = outer.body;
            Ok(Some(rewritten))
        }
        None | Some(ast::Distinct::All) => Ok(None),
    }
}

/// The expression of the SELECT item aliased `name` (case-insensitive), if any.
fn aliased_item(select: &ast::Select, name: &str) -> Option<ast::Expr> {
    select.projection.iter().find_map(|item| match item {
        ast::SelectItem::ExprWithAlias { expr, alias }
            if alias.value.eq_ignore_ascii_case(name) =>
        {
            Some(expr.clone())
        }
        _ => None,
    })
}

/// An ORDER BY or DISTINCT ON key with output names and positions replaced by the SELECT
/// items they name (an output name wins over a source column, as in PostgreSQL's ORDER BY).
fn output_name_resolved(key: &ast::Expr, select: &ast::Select, clause: &str) -> Result<ast::Expr> {
    match key {
        ast::Expr::Value(v) => {
            let ast::Value::Number(n, _) = &v.value else {
                return Ok(key.clone());
            };
            let item = n
                .parse::<usize>()
                .ok()
                .and_then(|position| position.checked_sub(1))
                .and_then(|i| select.projection.get(i));
            match item {
                Some(
                    ast::SelectItem::UnnamedExpr(e)
                    | ast::SelectItem::ExprWithAlias { expr: e, .. },
                ) => Ok(e.clone()),
                _ => Err(unsupported(
                    format!(
                        "{clause} position {n}; the SELECT list has {} items (before any `*`)",
                        select
                            .projection
                            .iter()
                            .take_while(|i| item_expr(i).is_some())
                            .count()
                    ),
                    v.span,
                )),
            }
        }
        ast::Expr::Identifier(ident) => {
            Ok(aliased_item(select, &ident.value).unwrap_or_else(|| key.clone()))
        }
        _ => Ok(key.clone()),
    }
}

/// One SQL expression parsed from text built by a rewrite.
fn parse_expression(text: &str) -> Result<ast::Expr> {
    sqlparser::parser::Parser::new(&sqlparser::dialect::GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut parser| parser.parse_expr())
        .map_err(|e| QuiverError::Internal(format!("rewritten expression `{text}`: {e}")))
}

/// DuckDB's `GROUP BY ALL` (every SELECT item without an aggregate) and `ORDER BY ALL` (every
/// output column, left to right) written out; `None` when the query has neither.
fn with_all_expanded(query: &ast::Query) -> Result<Option<ast::Query>> {
    let select = match query.body.as_ref() {
        ast::SetExpr::Select(select) => Some(select.as_ref()),
        _ => None,
    };
    let group_all = select.is_some_and(|s| matches!(s.group_by, ast::GroupByExpr::All(_)));
    // The generic dialect reads `ORDER BY ALL` as a column named ALL (unquoted).
    let mut query = std::borrow::Cow::Borrowed(query);
    if let Some(ast::OrderByKind::Expressions(keys)) = query.order_by.as_ref().map(|o| &o.kind) {
        if let [key] = keys.as_slice() {
            if matches!(&key.expr, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("all"))
            {
                let options = key.options;
                if let Some(order_by) = query.to_mut().order_by.as_mut() {
                    order_by.kind = ast::OrderByKind::All(options);
                }
            }
        }
    }
    let order_all = matches!(
        query.order_by.as_ref().map(|o| &o.kind),
        Some(ast::OrderByKind::All(_))
    );
    if !group_all && !order_all {
        return Ok(None);
    }
    let mut rewritten = query.as_ref().clone();
    if let (true, Some(select)) = (group_all, select) {
        if let ast::GroupByExpr::All(modifiers) = &select.group_by {
            if !modifiers.is_empty() {
                return Err(QuiverError::Unsupported(format!("`{}`", select.group_by)));
            }
        }
        let mut keys = Vec::new();
        for item in &select.projection {
            match item {
                ast::SelectItem::UnnamedExpr(e)
                | ast::SelectItem::ExprWithAlias { expr: e, .. } => {
                    // Constants need no grouping (and a number would read as a position).
                    let constant = !ast::visit_expressions(e, |x| match x {
                        ast::Expr::Identifier(_) | ast::Expr::CompoundIdentifier(_) => {
                            std::ops::ControlFlow::Break(())
                        }
                        _ => std::ops::ControlFlow::Continue(()),
                    })
                    .is_break();
                    if !constant
                        && !contains_aggregate(e)
                        && windowed_calls(std::iter::once(e))?.is_empty()
                    {
                        keys.push(e.clone());
                    }
                }
                other => {
                    return Err(QuiverError::Unsupported(format!(
                        "GROUP BY ALL with `{other}`; list the columns"
                    )))
                }
            }
        }
        if let ast::SetExpr::Select(select) = rewritten.body.as_mut() {
            select.group_by = ast::GroupByExpr::Expressions(keys, Vec::new());
        }
    }
    if let Some(order_by) = rewritten.order_by.as_mut() {
        if let ast::OrderByKind::All(options) = &order_by.kind {
            let width = match query.body.as_ref() {
                ast::SetExpr::Select(select) => {
                    if select.projection.iter().any(|i| {
                        !matches!(
                            i,
                            ast::SelectItem::UnnamedExpr(_) | ast::SelectItem::ExprWithAlias { .. }
                        )
                    }) {
                        return Err(QuiverError::Unsupported(
                            "ORDER BY ALL with `*`; list the columns".into(),
                        ));
                    }
                    select.projection.len()
                }
                _ => {
                    return Err(QuiverError::Unsupported(
                        "ORDER BY ALL on a set operation; order by the columns' positions".into(),
                    ))
                }
            };
            let keys = (1..=width)
                .map(|position| ast::OrderByExpr {
                    expr: ast::Expr::value(ast::Value::Number(position.to_string(), false)),
                    options: *options,
                    with_fill: None,
                })
                .collect();
            order_by.kind = ast::OrderByKind::Expressions(keys);
        }
    }
    Ok(Some(rewritten))
}

/// Clauses the parser reads that no plan carries out: an error naming them, never a query run
/// without them.
fn refuse_unplanned_clauses(query: &ast::Query) -> Result<()> {
    let refuse = |what: String| Err(QuiverError::Unsupported(what));
    if let Some(lock) = query.locks.first() {
        return refuse(format!("`{lock}`: locking clauses"));
    }
    if let Some(clause) = &query.for_clause {
        return refuse(format!("`{clause}`"));
    }
    if query.settings.is_some() {
        return refuse("SETTINGS on a query".into());
    }
    if let Some(clause) = &query.format_clause {
        return refuse(format!("`{clause}` on a query"));
    }
    if !query.pipe_operators.is_empty() {
        return refuse("pipe syntax (`|>`)".into());
    }
    if query.fetch.is_some() && !matches!(query.body.as_ref(), ast::SetExpr::Select(_)) {
        return refuse("FETCH FIRST on a set operation; use LIMIT".into());
    }
    let ast::SetExpr::Select(select) = query.body.as_ref() else {
        return Ok(());
    };
    if let Some(into) = &select.into {
        return refuse(format!("`{into}`: SELECT INTO"));
    }
    if !select.lateral_views.is_empty() {
        return refuse("LATERAL VIEW".into());
    }
    if let Some(prewhere) = &select.prewhere {
        return refuse(format!("PREWHERE {prewhere}; use WHERE"));
    }
    if !select.connect_by.is_empty() {
        return refuse("CONNECT BY".into());
    }
    if !select.cluster_by.is_empty() || !select.distribute_by.is_empty() {
        return refuse("CLUSTER BY / DISTRIBUTE BY".into());
    }
    if !select.sort_by.is_empty() {
        return refuse("SORT BY; use ORDER BY".into());
    }
    if let Some(window) = select.named_window.first() {
        return refuse(format!(
            "named window `{window}`; write the window inline, OVER (...)"
        ));
    }
    if select.value_table_mode.is_some() {
        return refuse("SELECT AS STRUCT / VALUE".into());
    }
    if let Some(modifiers) = &select.select_modifiers {
        return refuse(format!("`{modifiers}` select modifiers"));
    }
    if select.exclude.is_some() {
        return refuse("EXCLUDE after the SELECT list; write * EXCLUDE (...)".into());
    }
    Ok(())
}

/// The order to join a plain comma list `FROM a, b, c` in (indices into it): the first item,
/// then repeatedly the first of the others that an equality in WHERE compares with one already
/// joined, so that a chain of key equalities never becomes a cross product first (TPC-H Q9 lists
/// `part, supplier, lineitem`: in that order `part × supplier` was a 2 M-row product). Items
/// keep their written order where there is no such choice to make, and always when the SELECT
/// list has a `*` (whose columns come in FROM order) or an item has joins of its own.
fn comma_join_order(
    select: &ast::Select,
    tables: &[(String, SchemaRef)],
    ctes: &[NamedQuery<'_>],
) -> Vec<usize> {
    let written: Vec<usize> = (0..select.from.len()).collect();
    let has_wildcard = select.projection.iter().any(|item| {
        matches!(
            item,
            ast::SelectItem::Wildcard(_) | ast::SelectItem::QualifiedWildcard(..)
        )
    });
    let Some(selection) = select.selection.as_ref() else {
        return written;
    };
    if has_wildcard || select.from.iter().any(|item| !item.joins.is_empty()) {
        return written;
    }
    // The columns each item is known to have: a registered table's (WITH queries of the same
    // name come first, and their columns are not known here).
    let columns: Vec<Option<Vec<String>>> = select
        .from
        .iter()
        .map(|item| match &item.relation {
            ast::TableFactor::Table { name, .. }
                if !ctes
                    .iter()
                    .any(|c| c.name.eq_ignore_ascii_case(&unquoted_name(name))) =>
            {
                find_table(name, tables)
                    .ok()
                    .map(|(_, schema)| schema.fields().iter().map(|f| f.name().clone()).collect())
            }
            _ => None,
        })
        .collect();
    let qualifiers: Vec<String> = select
        .from
        .iter()
        .map(|item| relation_qualifier(&item.relation))
        .collect();
    // The one item a column reference can only belong to.
    let item_of = |expr: &ast::Expr| -> Option<usize> {
        let candidates: Vec<usize> = match expr {
            ast::Expr::Identifier(column) => (0..columns.len())
                .filter(|&i| {
                    columns[i]
                        .as_ref()
                        .is_some_and(|c| c.iter().any(|n| n.eq_ignore_ascii_case(&column.value)))
                })
                .collect(),
            ast::Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
                let qualifier = &parts[parts.len() - 2].value;
                (0..qualifiers.len())
                    .filter(|&i| qualifiers[i].eq_ignore_ascii_case(qualifier))
                    .collect()
            }
            _ => return None,
        };
        match candidates[..] {
            [only] => Some(only),
            _ => None,
        }
    };
    let factored = common_conjuncts_factored(selection);
    let mut edges = Vec::new();
    for conjunct in conjuncts(factored.as_ref().unwrap_or(selection)) {
        if let ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::Eq,
            right,
        } = conjunct
        {
            if let (Some(a), Some(b)) = (item_of(left), item_of(right)) {
                if a != b {
                    edges.push((a, b));
                }
            }
        }
    }
    let mut order = vec![0];
    let mut remaining: Vec<usize> = written[1..].to_vec();
    while !remaining.is_empty() {
        let connected = remaining.iter().position(|&candidate| {
            edges.iter().any(|&(a, b)| {
                (a == candidate && order.contains(&b)) || (b == candidate && order.contains(&a))
            })
        });
        order.push(remaining.remove(connected.unwrap_or(0)));
    }
    order
}

/// `FROM a, b JOIN c ON ...` as one join chain: `a CROSS JOIN b JOIN c ON ...`, the comma's
/// items taken in `order`.
fn comma_joins_merged(select: &ast::Select, order: &[usize]) -> ast::Select {
    let mut merged = select.clone();
    let mut from: Vec<Option<ast::TableWithJoins>> = std::mem::take(&mut merged.from)
        .into_iter()
        .map(Some)
        .collect();
    let mut items = order
        .iter()
        .filter_map(|&i| from.get_mut(i).and_then(Option::take));
    if let Some(mut first) = items.next() {
        for item in items {
            first.joins.push(ast::Join {
                relation: item.relation,
                global: false,
                join_operator: ast::JoinOperator::CrossJoin(ast::JoinConstraint::None),
            });
            first.joins.extend(item.joins);
        }
        merged.from = vec![first];
    }
    merged
}

/// The registered table `name` names.
fn find_table(
    name: &ast::ObjectName,
    tables: &[(String, SchemaRef)],
) -> Result<(String, SchemaRef)> {
    let wanted = unquoted_name(name);
    tables
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(&wanted))
        .or_else(|| {
            // `schema.table` names the table `table` (as `quiver run` loads it).
            let last = last_name(name);
            tables.iter().find(|(n, _)| n.eq_ignore_ascii_case(&last))
        })
        .map(|(n, s)| (n.clone(), s.clone()))
        .ok_or_else(|| {
            let known: Vec<&str> = tables.iter().map(|(n, _)| n.as_str()).collect();
            QuiverError::Unsupported(format!(
                "unknown table `{wanted}`{}; registered: {}",
                location(
                    name.0
                        .first()
                        .map_or(sqlparser::tokenizer::Span::empty(), |p| p.span())
                ),
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
}

/// A possibly schema-qualified name as its parts' text, without quotes (`"my-table"` is
/// `my-table`).
fn unquoted_name(name: &ast::ObjectName) -> String {
    name.0
        .iter()
        .map(|part| {
            part.as_ident()
                .map_or_else(|| part.to_string(), |i| i.value.clone())
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// The last part of a possibly schema-qualified name (`public.trades` → `trades`).
fn last_name(name: &ast::ObjectName) -> String {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map_or_else(|| name.to_string(), |i| i.value.clone())
}

/// The name a FROM item is referred to by: its alias, else its table name.
fn relation_qualifier(relation: &ast::TableFactor) -> String {
    match relation {
        ast::TableFactor::Table {
            alias: Some(alias), ..
        }
        | ast::TableFactor::Derived {
            alias: Some(alias), ..
        } => alias.name.value.clone(),
        ast::TableFactor::Table { name, .. } => last_name(name),
        _ => String::new(),
    }
}

/// The column indices `expr` reads.
fn column_indices(expr: &Expr) -> Vec<usize> {
    let seen = std::cell::RefCell::new(Vec::new());
    let _ = expr.clone().map_columns(&|c| {
        seen.borrow_mut().push(c);
        c
    });
    seen.into_inner()
}

/// The conjuncts of `a AND b AND ...`.
fn conjuncts(expr: &ast::Expr) -> Vec<&ast::Expr> {
    match expr {
        ast::Expr::BinaryOp {
            left,
            op: ast::BinaryOperator::And,
            right,
        } => {
            let mut all = conjuncts(left);
            all.extend(conjuncts(right));
            all
        }
        ast::Expr::Nested(inner) => conjuncts(inner),
        other => vec![other],
    }
}

/// The FROM clause planned: joins, the joined rows' schema, and how names resolve over it.
struct PlannedFrom {
    joins: Vec<PlanJoin>,
    schema: SchemaRef,
    /// The table (alias) each column comes from; `None` without FROM.
    qualifiers: Option<Vec<String>>,
    /// Columns merged by `USING` / `NATURAL`.
    merged: Vec<MergedColumn>,
    /// What `SELECT *` lists when `USING` / `NATURAL` merged columns (each merged column once,
    /// first); `None` otherwise (every column, in order).
    star: Option<Vec<(Expr, String)>>,
}

/// Plans the JOINs of FROM over the scanned rows: each joined table's columns follow the
/// columns before it.
fn plan_joins(
    select: &ast::Select,
    tables: &[(String, SchemaRef)],
    ctes: &[NamedQuery<'_>],
    scan_schema: &SchemaRef,
) -> Result<PlannedFrom> {
    let Some(from) = select.from.first() else {
        return Ok(PlannedFrom {
            joins: Vec::new(),
            schema: scan_schema.clone(),
            qualifiers: None,
            merged: Vec::new(),
            star: None,
        });
    };
    if from.joins.is_empty() {
        // One FROM item: `x.col` must still name it (a subquery's `o.col` naming an outer
        // query would otherwise read its own `col`).
        let qualifier = relation_qualifier(&from.relation);
        return Ok(PlannedFrom {
            joins: Vec::new(),
            schema: scan_schema.clone(),
            qualifiers: Some(vec![qualifier; scan_schema.fields().len()]),
            merged: Vec::new(),
            star: None,
        });
    }
    let mut merged: Vec<MergedColumn> = Vec::new();
    let mut star: Option<Vec<(Expr, String)>> = None;
    let mut fields: Vec<Field> = scan_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut qualifiers = vec![relation_qualifier(&from.relation); fields.len()];
    let mut joins = Vec::new();
    for join in &from.joins {
        let (table, schema, derived) = joined_relation(&join.relation, tables, ctes)?;
        let qualifier = relation_qualifier(&join.relation);
        if !qualifier.is_empty()
            && qualifiers
                .iter()
                .any(|q| q.eq_ignore_ascii_case(&qualifier))
        {
            return Err(QuiverError::Unsupported(format!(
                "table name `{qualifier}` appears twice in FROM; give one an alias (`JOIN {} AS x`)",
                join.relation
            )));
        }
        let (kind, constraint) = match &join.join_operator {
            ast::JoinOperator::Join(c) | ast::JoinOperator::Inner(c) => (JoinKind::Inner, c),
            ast::JoinOperator::Left(c) | ast::JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
            ast::JoinOperator::CrossJoin(c) => (JoinKind::Inner, c),
            ast::JoinOperator::Right(c) | ast::JoinOperator::RightOuter(c) => (JoinKind::Right, c),
            ast::JoinOperator::FullOuter(c) => (JoinKind::Full, c),
            // Only made by the rewriting of correlated subqueries.
            ast::JoinOperator::LeftSemi(c)
                if decorrelate::is_joined_subquery(&relation_qualifier(&join.relation)) =>
            {
                (JoinKind::Mark, c)
            }
            _ => return Err(QuiverError::Unsupported(format!("`{join}`"))),
        };
        let cross = matches!(join.join_operator, ast::JoinOperator::CrossJoin(_));
        let mut using: Option<Vec<ast::Ident>> = None;
        let condition = match constraint {
            ast::JoinConstraint::On(e) => Some(e),
            ast::JoinConstraint::None if cross => None,
            ast::JoinConstraint::None => {
                return Err(QuiverError::Unsupported(format!(
                    "`{join}` without ON; write ON a.x = b.y, or CROSS JOIN for every pair"
                )))
            }
            ast::JoinConstraint::Using(names) => {
                let mut idents = Vec::new();
                for name in names {
                    match name.0.as_slice() {
                        [part] => idents.push(part.as_ident().cloned().ok_or_else(|| {
                            QuiverError::Unsupported(format!("USING column `{name}`"))
                        })?),
                        _ => {
                            return Err(QuiverError::Unsupported(format!(
                                "USING column `{name}`; a plain column name is expected"
                            )))
                        }
                    }
                }
                using = Some(idents);
                None
            }
            ast::JoinConstraint::Natural => {
                // Every column name the two sides share (visible on the left).
                let left_columns = Columns {
                    schema: &Schema::new(fields.clone()),
                    qualifiers: Some(&qualifiers),
                    merged: &merged,
                };
                let mut common = Vec::new();
                for field in schema.fields() {
                    let ident = ast::Ident::new(field.name());
                    match left_columns.column(&ident) {
                        Ok(_) => common.push(ident),
                        // A name two tables on the left share cannot be merged.
                        Err(QuiverError::Unsupported(why)) if why.contains("ambiguous") => {
                            return Err(QuiverError::Unsupported(format!(
                                "NATURAL JOIN on `{}`: {why}",
                                field.name()
                            )))
                        }
                        Err(_) => {}
                    }
                }
                using = Some(common);
                None
            }
        };
        if let Some(condition) = condition {
            refuse_windowed(condition, "JOIN ... ON")?;
            if contains_aggregate(condition) {
                return Err(unsupported(
                    format!("aggregate in the JOIN condition `{condition}`"),
                    expr_span(condition),
                ));
            }
        }
        let left_width = fields.len();
        if kind.keeps_unmatched_table_rows() {
            // The joined table's rows without a match have NULLs on the left.
            for field in &mut fields {
                *field = field.clone().with_nullable(true);
            }
        }
        fields.extend(
            schema
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true)),
        );
        qualifiers.extend(std::iter::repeat_n(qualifier, schema.fields().len()));
        let combined = Schema::new(fields.clone());
        let columns = Columns {
            schema: &combined,
            qualifiers: Some(&qualifiers),
            merged: &merged,
        };
        let mut planned_join = PlanJoin {
            table,
            schema,
            kind,
            left_keys: Vec::new(),
            right_keys: Vec::new(),
            residual: None,
            table_filter: None,
            derived,
            rows: None,
        };
        for conjunct in condition.map(conjuncts).unwrap_or_default() {
            add_join_condition(
                &mut planned_join,
                columns.scalar(conjunct)?,
                left_width,
                &combined,
            )?;
        }
        if kind == JoinKind::Mark {
            // The table's columns served the condition; the output has the mark instead.
            let qualifier = qualifiers.get(left_width).cloned().unwrap_or_default();
            fields.truncate(left_width);
            qualifiers.truncate(left_width);
            fields.push(Field::new(MARK_COLUMN, DataType::Boolean, false));
            qualifiers.push(qualifier);
        }
        let before_star = star.take().unwrap_or_else(|| {
            (0..left_width)
                .map(|i| (Expr::Column(i), combined.field(i).name().clone()))
                .collect()
        });
        match using {
            Some(names) => {
                let merged_before = merged.clone();
                let left_schema = Schema::new(fields[..left_width].to_vec());
                let left_columns = Columns {
                    schema: &left_schema,
                    qualifiers: Some(&qualifiers[..left_width]),
                    merged: &merged_before,
                };
                let mut merged_star = Vec::new();
                let mut right_used = Vec::new();
                for name in &names {
                    if names
                        .iter()
                        .filter(|n| n.value.eq_ignore_ascii_case(&name.value))
                        .count()
                        > 1
                    {
                        return Err(QuiverError::Unsupported(format!(
                            "column `{}` appears twice in USING of `{join}`",
                            name.value
                        )));
                    }
                    let left = left_columns.column(name).map_err(|e| match e {
                        QuiverError::Unsupported(why) if why.starts_with("unknown column") => {
                            QuiverError::Unsupported(format!(
                                "USING column `{}` is not a column of the tables before `{join}`",
                                name.value
                            ))
                        }
                        other => other,
                    })?;
                    let right_matches: Vec<usize> = (left_width..combined.fields().len())
                        .filter(|&i| combined.field(i).name().eq_ignore_ascii_case(&name.value))
                        .collect();
                    let &[right_index] = right_matches.as_slice() else {
                        return Err(QuiverError::Unsupported(format!(
                            "USING column `{}` is {} in `{}`",
                            name.value,
                            if right_matches.is_empty() {
                                "not a column"
                            } else {
                                "ambiguous"
                            },
                            join.relation
                        )));
                    };
                    let right = Expr::Column(right_index);
                    add_join_condition(
                        &mut planned_join,
                        Expr::Binary(
                            Box::new(left.clone()),
                            BinaryOp::Eq,
                            Box::new(right.clone()),
                        ),
                        left_width,
                        &combined,
                    )?;
                    let expr = match kind {
                        JoinKind::Inner | JoinKind::Left | JoinKind::Mark => left.clone(),
                        JoinKind::Right => right.clone(),
                        JoinKind::Full => {
                            let common = quiver_kernels::expr::coerce(
                                &left.data_type(&combined)?,
                                BinaryOp::Eq,
                                combined.field(right_index).data_type(),
                            )?;
                            let cast = |e: Expr| Expr::Cast(Box::new(e), common.clone(), false);
                            Expr::Case(
                                vec![(
                                    Expr::IsNull(Box::new(left.clone()), true),
                                    cast(left.clone()),
                                )],
                                Some(Box::new(cast(right.clone()))),
                            )
                        }
                    };
                    let mut hidden: Vec<usize> = column_indices(&left);
                    hidden.push(right_index);
                    // Merged again (`a JOIN b USING (k) JOIN c USING (k)`): all stay hidden.
                    if let Some(previous) = merged
                        .iter()
                        .find(|m| m.name.eq_ignore_ascii_case(&name.value))
                    {
                        hidden.extend(previous.hidden.iter().copied());
                    }
                    let column_name = match &left {
                        Expr::Column(i) => combined.field(*i).name().clone(),
                        _ => name.value.clone(),
                    };
                    merged.retain(|m| !m.name.eq_ignore_ascii_case(&name.value));
                    merged.push(MergedColumn {
                        name: column_name.clone(),
                        expr: expr.clone(),
                        hidden,
                    });
                    merged_star.push((expr, column_name));
                    right_used.push(right_index);
                }
                // As DuckDB lists them: each merged column where the left side had it, then
                // the joined table's other columns.
                let mut in_place: Vec<(Expr, String)> = before_star
                    .into_iter()
                    .map(|(e, n)| {
                        match merged_star.iter().find(|(_, m)| m.eq_ignore_ascii_case(&n)) {
                            Some(merged_column) => merged_column.clone(),
                            None => (e, n),
                        }
                    })
                    .collect();
                in_place.extend(
                    (left_width..combined.fields().len())
                        .filter(|i| !right_used.contains(i))
                        .map(|i| (Expr::Column(i), combined.field(i).name().clone())),
                );
                star = Some(in_place);
            }
            None if qualifiers
                .get(left_width)
                .is_some_and(|q| decorrelate::is_joined_subquery(q)) =>
            {
                star = (!merged.is_empty()).then_some(before_star);
            }
            None if star.is_some() || !merged.is_empty() => {
                let mut all = before_star;
                all.extend(
                    (left_width..combined.fields().len())
                        .map(|i| (Expr::Column(i), combined.field(i).name().clone())),
                );
                star = Some(all);
            }
            None => {}
        }
        joins.push(planned_join);
    }
    Ok(PlannedFrom {
        joins,
        schema: std::sync::Arc::new(Schema::new(fields)),
        qualifiers: Some(qualifiers),
        merged,
        star,
    })
}

/// `a AND b`, either side optional.
fn and_also(existing: Option<Expr>, more: Expr) -> Expr {
    match existing {
        Some(existing) => Expr::Binary(Box::new(existing), BinaryOp::And, Box::new(more)),
        None => more,
    }
}

/// Adds one conjunct of a join condition, planned over the rows joined so far (`left_width`
/// columns before the joined table's): an equality between the two sides becomes a key pair,
/// one over the joined table alone filters its rows, anything else is checked per pair.
fn add_join_condition(
    join: &mut PlanJoin,
    planned: Expr,
    left_width: usize,
    schema: &Schema,
) -> Result<()> {
    let used = column_indices(&planned);
    // RIGHT and FULL joins keep the table's rows failing the condition (unmatched).
    if !used.is_empty()
        && used.iter().all(|&c| c >= left_width)
        && !join.kind.keeps_unmatched_table_rows()
    {
        let own = predicate(planned).map_columns(&|c| c.saturating_sub(left_width));
        join.table_filter = Some(and_also(join.table_filter.take(), own));
        return Ok(());
    }
    if let Expr::Binary(left, BinaryOp::Eq, right) = &planned {
        let (l, r) = (column_indices(left), column_indices(right));
        let before = |c: &[usize]| !c.is_empty() && c.iter().all(|&i| i < left_width);
        let joined = |c: &[usize]| !c.is_empty() && c.iter().all(|&i| i >= left_width);
        let pair = if before(&l) && joined(&r) {
            Some((left, right))
        } else if before(&r) && joined(&l) {
            Some((right, left))
        } else {
            None
        };
        if let Some((outer, inner)) = pair {
            let outer_type = outer.data_type(schema)?;
            let inner_type = inner.data_type(schema)?;
            let common = quiver_kernels::expr::coerce(&outer_type, BinaryOp::Eq, &inner_type)?;
            let cast = |e: &Expr, t: &DataType| {
                if t == &common {
                    e.clone()
                } else {
                    Expr::Cast(Box::new(e.clone()), common.clone(), false)
                }
            };
            join.left_keys.push(cast(outer, &outer_type));
            join.right_keys
                .push(cast(inner, &inner_type).map_columns(&|c| c.saturating_sub(left_width)));
            return Ok(());
        }
    }
    join.residual = Some(and_also(join.residual.take(), predicate(planned)));
    Ok(())
}

/// The join whose table holds the last column `used` reads, with its first column, when it is
/// an inner join: a `WHERE` conjunct over those columns can be checked there instead.
fn inner_join_reading(joins: &[PlanJoin], scan_width: usize, used: &[usize]) -> Option<usize> {
    let last = *used.iter().max()?;
    let mut start = scan_width;
    for (index, join) in joins.iter().enumerate() {
        let end = start + join.output_width();
        if last < end {
            return (last >= start && join.kind == JoinKind::Inner).then_some(index);
        }
        start = end;
    }
    None
}

/// The first column of join `index`'s table in the joined rows.
fn join_start(joins: &[PlanJoin], scan_width: usize, index: usize) -> usize {
    scan_width
        + joins[..index]
            .iter()
            .map(PlanJoin::output_width)
            .sum::<usize>()
}

/// The table a JOIN reads: a registered table, or a subquery or `WITH` query, planned on its
/// own and run before the query.
#[allow(clippy::type_complexity)]
fn joined_relation(
    relation: &ast::TableFactor,
    tables: &[(String, SchemaRef)],
    ctes: &[NamedQuery<'_>],
) -> Result<(String, SchemaRef, Option<Box<PlanSubquery>>)> {
    let derived = match relation {
        ast::TableFactor::Derived {
            lateral: false,
            subquery,
            alias,
            ..
        } => Some((
            subquery.as_ref(),
            ctes.to_vec(),
            alias_columns(alias.as_ref()),
        )),
        ast::TableFactor::Table {
            name,
            alias,
            args: None,
            ..
        } => {
            let wanted = unquoted_name(name);
            ctes.iter()
                .rev()
                .find(|c| c.name.eq_ignore_ascii_case(&wanted))
                .map(|c| {
                    let mut columns = c.columns.clone();
                    if let Some(renamed) = alias.as_ref().filter(|a| !a.columns.is_empty()) {
                        columns = alias_columns(Some(renamed));
                    }
                    (c.query, c.earlier.clone(), columns)
                })
        }
        _ => None,
    };
    match (derived, relation) {
        (Some((query, scope, columns)), _) => {
            let mut planned = plan_query(query, tables, &streaming::Parsed::default(), &scope)?;
            if planned.explain || planned.window.is_some() || planned.emit == EmitMode::Changes {
                return Err(QuiverError::Unsupported(format!(
                    "a window or EMIT CHANGES in the joined `{relation}`"
                )));
            }
            rename_output(&mut planned, &columns, relation)?;
            let name = match relation_qualifier(relation) {
                q if q.is_empty() => "(subquery)".to_string(),
                q => q,
            };
            let schema = planned.output_schema.clone();
            Ok((
                name,
                schema,
                Some(Box::new(PlanSubquery {
                    plan: planned,
                    rows: None,
                })),
            ))
        }
        (None, ast::TableFactor::Table { name, alias, .. }) => {
            refuse_table_column_aliases(relation, alias.as_ref())?;
            let (table, schema) = find_table(name, tables)?;
            Ok((table, schema, None))
        }
        (None, other) => Err(QuiverError::Unsupported(format!(
            "JOIN to `{other}`; a table, a subquery or a WITH query is expected"
        ))),
    }
}

/// `FROM t AS x(a, b)` renames a registered table's columns: not supported (an error, so the
/// names are not silently the table's own).
fn refuse_table_column_aliases(
    relation: &ast::TableFactor,
    alias: Option<&ast::TableAlias>,
) -> Result<()> {
    match alias {
        Some(alias) if !alias.columns.is_empty() => Err(QuiverError::Unsupported(format!(
            "column names in `{relation}` for a table; rename them in a subquery: \
             (SELECT a AS x, ...) AS t"
        ))),
        _ => Ok(()),
    }
}

/// The column names of `AS t(a, b, ...)`.
fn alias_columns(alias: Option<&ast::TableAlias>) -> Vec<String> {
    alias.map_or_else(Vec::new, |a| {
        a.columns.iter().map(|c| c.name.value.clone()).collect()
    })
}

/// Gives the first `names.len()` output columns of `plan` those names (`AS t(a, b)`).
fn rename_output(
    plan: &mut Plan,
    names: &[String],
    relation: &dyn std::fmt::Display,
) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    if names.len() > plan.output.len() {
        return Err(QuiverError::Unsupported(format!(
            "`{relation}` names {} columns, but its query has {}",
            names.len(),
            plan.output.len()
        )));
    }
    for ((_, name), new) in plan.output.iter_mut().zip(names) {
        name.clone_from(new);
    }
    let fields: Vec<Field> = plan
        .output_schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| match names.get(i) {
            Some(new) => f.as_ref().clone().with_name(new),
            None => f.as_ref().clone(),
        })
        .collect();
    plan.output_schema = std::sync::Arc::new(Schema::new(fields));
    Ok(())
}

fn resolve_source(
    select: &ast::Select,
    tables: &[(String, SchemaRef)],
) -> Result<(String, SchemaRef)> {
    if select.from.is_empty() {
        return Ok((String::new(), std::sync::Arc::new(Schema::empty())));
    }
    let [from] = select.from.as_slice() else {
        return Err(QuiverError::Unsupported(format!(
            "FROM with {} comma-separated sources; join them with `JOIN ... ON` (or CROSS JOIN)",
            select.from.len()
        )));
    };
    let ast::TableFactor::Table { name, alias, .. } = &from.relation else {
        return Err(QuiverError::Unsupported(format!(
            "FROM `{}`; a table name is expected",
            from.relation
        )));
    };
    refuse_table_column_aliases(&from.relation, alias.as_ref())?;
    find_table(name, tables)
}

/// A schema of `star`'s names (types do not matter), for [`wildcard_columns`].
fn star_schema(star: &[(Expr, String)]) -> Schema {
    Schema::new(
        star.iter()
            .map(|(_, name)| Field::new(name, DataType::Null, true))
            .collect::<Vec<_>>(),
    )
}

/// `options` without its `REPLACE (expr AS name, ...)`, and those replacements.
fn wildcard_replacements(
    options: &ast::WildcardAdditionalOptions,
) -> (ast::WildcardAdditionalOptions, Vec<(String, &ast::Expr)>) {
    let replacements = options
        .opt_replace
        .iter()
        .flat_map(|replace| &replace.items)
        .map(|item| (item.column_name.value.clone(), &item.expr))
        .collect();
    let mut rest = options.clone();
    rest.opt_replace = None;
    (rest, replacements)
}

/// Whether an output column named `column` is the one `name` refers to (exactly, else
/// ignoring ASCII case, as column references resolve).
fn same_column_name(column: &str, name: &str) -> bool {
    column == name || column.eq_ignore_ascii_case(name)
}

/// The source columns `*` stands for: all, or all but those of `EXCLUDE (...)` / `EXCEPT (...)`.
fn wildcard_columns(
    options: &ast::WildcardAdditionalOptions,
    schema: &Schema,
) -> Result<Vec<usize>> {
    if options.opt_ilike.is_some()
        || options.opt_replace.is_some()
        || options.opt_rename.is_some()
        || options.opt_alias.is_some()
    {
        return Err(QuiverError::Unsupported(format!(
            "`*{options}`; only EXCLUDE (...) / EXCEPT (...) are supported after * here \
             (and REPLACE (...) in a SELECT without GROUP BY or aggregates)"
        )));
    }
    let mut excluded: Vec<String> = Vec::new();
    match &options.opt_exclude {
        Some(ast::ExcludeSelectItem::Single(name)) => excluded.push(name.to_string()),
        Some(ast::ExcludeSelectItem::Multiple(names)) => {
            excluded.extend(names.iter().map(|n| n.to_string()))
        }
        None => {}
    }
    if let Some(except) = &options.opt_except {
        excluded.push(except.first_element.value.clone());
        excluded.extend(except.additional_elements.iter().map(|i| i.value.clone()));
    }
    let matches = |field: &Field, name: &str| {
        let name = name.trim_matches('"');
        field.name() == name || field.name().eq_ignore_ascii_case(name)
    };
    for name in &excluded {
        if !schema.fields().iter().any(|f| matches(f, name)) {
            return Err(QuiverError::Unsupported(format!(
                "EXCLUDE of unknown column `{name}`"
            )));
        }
    }
    Ok((0..schema.fields().len())
        .filter(|&i| !excluded.iter().any(|name| matches(schema.field(i), name)))
        .collect())
}

fn display_name(expr: &ast::Expr) -> String {
    match expr {
        ast::Expr::Identifier(ident) => ident.value.clone(),
        ast::Expr::CompoundIdentifier(parts) => {
            parts.last().map_or_else(String::new, |p| p.value.clone())
        }
        other => other.to_string(),
    }
}

fn aggregate_function(name: &str) -> Option<AggregateFunction> {
    Some(match name.to_ascii_lowercase().as_str() {
        // COUNT_IF(c) is COUNT(CASE WHEN c THEN 1 END) (see `plan_call`).
        "count" | "count_if" | "countif" => AggregateFunction::Count,
        "sum" => AggregateFunction::Sum,
        "avg" | "mean" => AggregateFunction::Avg,
        "min" => AggregateFunction::Min,
        "max" => AggregateFunction::Max,
        "var_samp" | "variance" | "var" => AggregateFunction::VarSamp,
        "var_pop" => AggregateFunction::VarPop,
        "stddev_samp" | "stddev" | "stdev" => AggregateFunction::StddevSamp,
        "stddev_pop" => AggregateFunction::StddevPop,
        "bool_and" | "every" => AggregateFunction::BoolAnd,
        "bool_or" => AggregateFunction::BoolOr,
        "bit_and" => AggregateFunction::Bit(quiver_kernels::BitOperation::And),
        "bit_or" => AggregateFunction::Bit(quiver_kernels::BitOperation::Or),
        "bit_xor" => AggregateFunction::Bit(quiver_kernels::BitOperation::Xor),
        "median" => AggregateFunction::Median,
        "first_value" | "first" | "any_value" => AggregateFunction::FirstValue,
        "last_value" | "last" => AggregateFunction::LastValue,
        // The fraction comes from the call's arguments (see `plan_call`).
        "percentile_cont" | "quantile_cont" | "quantile" => AggregateFunction::PercentileCont(0.5),
        "percentile_disc" | "quantile_disc" => AggregateFunction::PercentileDisc {
            fraction: 0.5,
            descending: false,
        },
        "string_agg" => AggregateFunction::StringAgg,
        "approx_count_distinct" | "approx_distinct" => AggregateFunction::ApproxCountDistinct,
        "approx_median" => AggregateFunction::ApproxPercentile(0.5),
        "mode" => AggregateFunction::Mode,
        "skewness" => AggregateFunction::Moment(MomentKind::Skewness),
        "kurtosis" => AggregateFunction::Moment(MomentKind::Kurtosis),
        "kurtosis_pop" => AggregateFunction::Moment(MomentKind::KurtosisPop),
        "arg_max" | "argmax" | "max_by" => AggregateFunction::ArgExtreme(true),
        "arg_min" | "argmin" | "min_by" => AggregateFunction::ArgExtreme(false),
        "corr" => AggregateFunction::Covariance(CovarianceKind::Corr),
        "covar_pop" => AggregateFunction::Covariance(CovarianceKind::CovarPop),
        "covar_samp" => AggregateFunction::Covariance(CovarianceKind::CovarSamp),
        "regr_slope" => AggregateFunction::Covariance(CovarianceKind::RegrSlope),
        "regr_intercept" => AggregateFunction::Covariance(CovarianceKind::RegrIntercept),
        "regr_r2" => AggregateFunction::Covariance(CovarianceKind::RegrR2),
        // The fraction comes from the call's arguments (see `plan_call`).
        "approx_percentile_cont" | "approx_percentile" | "approx_quantile" => {
            AggregateFunction::ApproxPercentile(f64::NAN)
        }
        _ => return None,
    })
}

/// Whether an aggregate call appears anywhere in `expr` (inside CASE, BETWEEN, CEIL, function
/// arguments, ...).
fn contains_aggregate(expr: &ast::Expr) -> bool {
    // Aggregates inside a subquery are the subquery's.
    let expr = &without_subqueries(expr);
    ast::visit_expressions(expr, |e| match e {
        ast::Expr::Function(f)
            if f.over.is_none() && aggregate_function(&f.name.to_string()).is_some() =>
        {
            std::ops::ControlFlow::Break(())
        }
        _ => std::ops::ControlFlow::Continue(()),
    })
    .is_break()
}

/// `expr` with every name of a SELECT alias that is not a source column replaced by the
/// aliased expression (`QUALIFY rn = 1` for `ROW_NUMBER() OVER (...) AS rn`).
fn with_aliases_expanded(
    expr: &ast::Expr,
    select: &ast::Select,
    source_schema: &Schema,
) -> ast::Expr {
    let mut expanded = expr.clone();
    let _ = ast::visit_expressions_mut(&mut expanded, |e| {
        if let ast::Expr::Identifier(ident) = e {
            let is_column = source_schema
                .fields()
                .iter()
                .any(|f| f.name().eq_ignore_ascii_case(&ident.value));
            let aliased = select.projection.iter().find_map(|item| match item {
                ast::SelectItem::ExprWithAlias { expr, alias }
                    if alias.value.eq_ignore_ascii_case(&ident.value) =>
                {
                    Some(expr)
                }
                _ => None,
            });
            if let (false, Some(aliased)) = (is_column, aliased) {
                *e = ast::Expr::Nested(Box::new(aliased.clone()));
            }
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    expanded
}

/// `expr` with each subquery in it replaced by NULL (for questions about `expr`'s own level).
fn without_subqueries(expr: &ast::Expr) -> ast::Expr {
    let mut stripped = expr.clone();
    let _ = ast::visit_expressions_mut(&mut stripped, |e| {
        if matches!(
            e,
            ast::Expr::Subquery(_) | ast::Expr::InSubquery { .. } | ast::Expr::Exists { .. }
        ) {
            *e = ast::Expr::Value(ast::Value::Null.into());
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    stripped
}

/// The subqueries of one query level being planned: each query, its index in
/// `Plan::subqueries` and its first column's type. A stack: subqueries nest.
type SubqueryScope = Vec<(ast::Query, usize, Option<DataType>)>;

thread_local! {
    static SUBQUERY_SCOPES: std::cell::RefCell<Vec<SubqueryScope>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Keeps a query level's subqueries in scope while its expressions are planned.
struct SubqueryScopeGuard;

impl SubqueryScopeGuard {
    fn enter(scope: SubqueryScope) -> SubqueryScopeGuard {
        SUBQUERY_SCOPES.with(|s| s.borrow_mut().push(scope));
        SubqueryScopeGuard
    }
}

impl Drop for SubqueryScopeGuard {
    fn drop(&mut self) {
        SUBQUERY_SCOPES.with(|s| {
            s.borrow_mut().pop();
        });
    }
}

/// The index and (with one column) type of subquery `query` at the level being planned.
fn subquery_in_scope(
    query: &ast::Query,
    span: sqlparser::tokenizer::Span,
) -> Result<(usize, Option<DataType>)> {
    SUBQUERY_SCOPES
        .with(|s| {
            s.borrow().last().and_then(|scope| {
                scope
                    .iter()
                    .find(|(q, _, _)| q == query)
                    .map(|(_, i, t)| (*i, t.clone()))
            })
        })
        .ok_or_else(|| {
            unsupported(
                "a subquery here (subqueries go in SELECT, WHERE, HAVING, QUALIFY, ORDER BY \
                 and JOIN ... ON)",
                span,
            )
        })
}

/// The query of a subquery expression (`(SELECT ...)`, `IN (SELECT ...)`, `EXISTS (...)`).
fn subquery_of(expr: &ast::Expr) -> Option<&ast::Query> {
    match expr {
        ast::Expr::Subquery(q) => Some(q.as_ref()),
        ast::Expr::InSubquery { subquery, .. } | ast::Expr::Exists { subquery, .. } => {
            Some(subquery.as_ref())
        }
        _ => None,
    }
}

/// The subquery expressions directly in `exprs` (not those nested inside a subquery, which
/// belong to it), each once.
fn top_level_subqueries<'a>(exprs: impl Iterator<Item = &'a ast::Expr>) -> Vec<ast::Expr> {
    let mut found: Vec<ast::Expr> = Vec::new();
    let mut nested: Vec<ast::Query> = Vec::new();
    for expr in exprs {
        let _ = ast::visit_expressions(expr, |e| {
            if let Some(query) = subquery_of(e) {
                if !found.contains(e) {
                    found.push(e.clone());
                    let _ = ast::visit_expressions(query, |inner| {
                        nested.extend(subquery_of(inner).cloned());
                        std::ops::ControlFlow::<()>::Continue(())
                    });
                }
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    found.retain(|e| subquery_of(e).is_none_or(|q| !nested.contains(q)));
    found
}

/// The subqueries directly in `exprs` (not those nested inside them), each once.
fn expression_subqueries<'a>(exprs: impl Iterator<Item = &'a ast::Expr>) -> Vec<ast::Query> {
    let mut queries: Vec<ast::Query> = Vec::new();
    for expr in top_level_subqueries(exprs) {
        if let Some(query) = subquery_of(&expr) {
            if !queries.contains(query) {
                queries.push(query.clone());
            }
        }
    }
    queries
}

/// The expression of a SELECT item (not of `*`).
fn item_expr(item: &ast::SelectItem) -> Option<&ast::Expr> {
    match item {
        ast::SelectItem::UnnamedExpr(e) | ast::SelectItem::ExprWithAlias { expr: e, .. } => Some(e),
        _ => None,
    }
}

/// Whether the SELECT list of `select` calls an aggregate.
fn selects_aggregate(select: &ast::Select) -> bool {
    select
        .projection
        .iter()
        .filter_map(item_expr)
        .any(contains_aggregate)
}

/// Columns of window function results are numbered from here while planning, then renumbered
/// to follow the columns the output reads.
const WINDOWED_COLUMN_BASE: usize = 1 << 30;

/// The window function calls (`f(...) OVER (...)`) in `exprs`, each once, in order of first
/// appearance; a call inside another's arguments or window is an error.
fn windowed_calls<'a>(exprs: impl Iterator<Item = &'a ast::Expr>) -> Result<Vec<ast::Expr>> {
    let mut calls: Vec<ast::Expr> = Vec::new();
    for expr in exprs {
        // Window functions inside a subquery are the subquery's.
        let mut inside_subqueries: Vec<ast::Expr> = Vec::new();
        for subquery in expression_subqueries(std::iter::once(expr)) {
            let _ = ast::visit_expressions(&subquery, |e| {
                if matches!(e, ast::Expr::Function(f) if f.over.is_some()) {
                    inside_subqueries.push(e.clone());
                }
                std::ops::ControlFlow::<()>::Continue(())
            });
        }
        let _ = ast::visit_expressions(expr, |e| {
            if matches!(e, ast::Expr::Function(f) if f.over.is_some())
                && !calls.contains(e)
                && !inside_subqueries.contains(e)
            {
                calls.push(e.clone());
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    for call in &calls {
        let mut inner = 0;
        let _ = ast::visit_expressions(call, |e| {
            if matches!(e, ast::Expr::Function(f) if f.over.is_some()) {
                inner += 1;
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        if inner > 1 {
            return Err(unsupported(
                format!("window function calls nested in `{call}`"),
                expr_span(call),
            ));
        }
    }
    Ok(calls)
}

/// An error if `expr` holds a window function: they are computed after WHERE, GROUP BY and
/// HAVING.
fn refuse_windowed(expr: &ast::Expr, clause: &str) -> Result<()> {
    match windowed_calls(std::iter::once(expr))?.first() {
        Some(call) => Err(unsupported(
            format!(
                "window function `{call}` in {clause}; window functions belong in SELECT or \
                 ORDER BY (filter their results in an outer query)"
            ),
            expr_span(call),
        )),
        None => Ok(()),
    }
}

/// Name resolution against one schema.
struct Columns<'a> {
    schema: &'a Schema,
    /// With joins: the table (alias) each column comes from, for `t.x` and ambiguity checks.
    qualifiers: Option<&'a [String]>,
    /// Columns merged by `JOIN ... USING` / `NATURAL JOIN`.
    merged: &'a [MergedColumn],
}

/// A column `JOIN ... USING (x)` (or `NATURAL JOIN`) merged: unqualified `x` reads `expr`
/// (the left side's value, the right side's for `RIGHT JOIN`, the first non-NULL for `FULL`),
/// while `a.x` and `b.x` still read each table's own column.
#[derive(Debug, Clone)]
struct MergedColumn {
    name: String,
    expr: Expr,
    /// The joined columns it stands for, no longer reachable unqualified.
    hidden: Vec<usize>,
}

impl<'a> Columns<'a> {
    fn new(schema: &'a Schema) -> Self {
        Columns {
            schema,
            qualifiers: None,
            merged: &[],
        }
    }

    /// `t.x` (with joins, `t` must name the table the column comes from) or `x`.
    fn compound(&self, parts: &[ast::Ident]) -> Result<Expr> {
        let Some(name) = parts.last() else {
            return Err(QuiverError::Unsupported("an empty column name".into()));
        };
        let (Some(qualifiers), [.., table, _]) = (self.qualifiers, parts) else {
            return self.column(name);
        };
        if !qualifiers
            .iter()
            .any(|q| q.eq_ignore_ascii_case(&table.value))
        {
            let mut known: Vec<&str> = Vec::new();
            for q in qualifiers {
                if !known.contains(&q.as_str()) {
                    known.push(q);
                }
            }
            let written: Vec<&str> = parts.iter().map(|p| p.value.as_str()).collect();
            return Err(QuiverError::Unsupported(format!(
                "unknown table `{}`{} in `{}`; tables in FROM: {}",
                table.value,
                location(table.span),
                written.join("."),
                known.join(", ")
            )));
        }
        self.find(name, Some(&table.value))
    }

    fn column(&self, ident: &ast::Ident) -> Result<Expr> {
        self.find(ident, None)
    }

    fn find(&self, ident: &ast::Ident, table: Option<&str>) -> Result<Expr> {
        let fields = self.schema.fields();
        let merged = self.merged.iter().find(|m| {
            table.is_none()
                && (m.name == ident.value
                    || (ident.quote_style.is_none() && m.name.eq_ignore_ascii_case(&ident.value)))
        });
        let in_table = |i: usize| match (table, self.qualifiers) {
            (Some(table), Some(qualifiers)) => qualifiers
                .get(i)
                .is_some_and(|q| q.eq_ignore_ascii_case(table)),
            // A correlated subquery joined in is reached only through its own (qualified)
            // names: an unqualified name is the query's own column.
            (None, _) => {
                !self.merged.iter().any(|m| m.hidden.contains(&i))
                    && !self
                        .qualifiers
                        .and_then(|q| q.get(i))
                        .is_some_and(|q| decorrelate::is_joined_subquery(q))
            }
            _ => true,
        };
        let matching = |exact: bool| -> Vec<usize> {
            (0..fields.len())
                .filter(|&i| {
                    in_table(i)
                        && if exact {
                            fields[i].name() == &ident.value
                        } else {
                            fields[i].name().eq_ignore_ascii_case(&ident.value)
                        }
                })
                .collect()
        };
        let mut candidates = matching(true);
        if candidates.is_empty() && ident.quote_style.is_none() {
            candidates = matching(false);
        }
        if let Some(merged) = merged {
            // A later table's column of the same name makes the name ambiguous.
            if let Some(&other) = candidates.first() {
                let table = self
                    .qualifiers
                    .and_then(|q| q.get(other))
                    .cloned()
                    .unwrap_or_default();
                return Err(QuiverError::Unsupported(format!(
                    "column `{}`{} is ambiguous: the USING column, or {table}.{}",
                    ident.value,
                    location(ident.span),
                    ident.value
                )));
            }
            return Ok(merged.expr.clone());
        }
        if let (Some(qualifiers), [first, second, ..]) = (self.qualifiers, candidates.as_slice()) {
            let tables = |i: usize| qualifiers.get(i).cloned().unwrap_or_default();
            return Err(QuiverError::Unsupported(format!(
                "column `{}`{} is ambiguous: write {}.{} or {}.{}",
                ident.value,
                location(ident.span),
                tables(*first),
                ident.value,
                tables(*second),
                ident.value
            )));
        }
        candidates
            .first()
            .copied()
            .map(Expr::Column)
            .ok_or_else(|| {
                let names: Vec<&str> = fields.iter().map(|f| f.name().as_str()).collect();
                QuiverError::Unsupported(format!(
                    "unknown column `{}`{}; columns are: {}",
                    ident.value,
                    location(ident.span),
                    names.join(", ")
                ))
            })
    }

    /// A scalar (non-aggregate) expression over the source columns.
    fn scalar(&self, expr: &ast::Expr) -> Result<Expr> {
        self.scalar_with(expr, &[])
    }

    /// A scalar expression over the source columns that may hold the window function calls
    /// `windowed` (planned as their result columns).
    fn scalar_with(&self, expr: &ast::Expr, windowed: &[ast::Expr]) -> Result<Expr> {
        scalar_expr(expr, &mut |e| match e {
            _ if windowed.contains(e) => windowed
                .iter()
                .position(|w| w == e)
                .map(|i| Ok(Expr::Column(WINDOWED_COLUMN_BASE + i))),
            ast::Expr::Identifier(ident) => Some(self.column(ident)),
            ast::Expr::CompoundIdentifier(parts) => Some(self.compound(parts)),
            ast::Expr::Function(f) if aggregate_function(&f.name.to_string()).is_some() => {
                Some(Err(unsupported(
                    format!(
                        "aggregate `{e}` here (aggregates belong in SELECT, HAVING or ORDER BY)"
                    ),
                    expr_span(e),
                )))
            }
            _ => None,
        })
    }
}

/// The comparison `op` is, if it is one (`=`, `<>`, `<`, `<=`, `>`, `>=`).
fn comparison(op: &ast::BinaryOperator) -> Option<BinaryOp> {
    Some(match op {
        ast::BinaryOperator::Eq => BinaryOp::Eq,
        ast::BinaryOperator::NotEq => BinaryOp::NotEq,
        ast::BinaryOperator::Lt => BinaryOp::Lt,
        ast::BinaryOperator::LtEq => BinaryOp::LtEq,
        ast::BinaryOperator::Gt => BinaryOp::Gt,
        ast::BinaryOperator::GtEq => BinaryOp::GtEq,
        _ => return None,
    })
}

/// Plans a scalar expression; `leaf` resolves identifiers (and may claim other nodes).
fn scalar_expr(
    expr: &ast::Expr,
    leaf: &mut dyn FnMut(&ast::Expr) -> Option<Result<Expr>>,
) -> Result<Expr> {
    if let Some(resolved) = leaf(expr) {
        return resolved;
    }
    let mut recurse = |e: &ast::Expr| scalar_expr(e, leaf);
    Ok(match expr {
        ast::Expr::Nested(inner) => recurse(inner)?,
        ast::Expr::Subquery(query) => {
            let (index, data_type) = subquery_in_scope(query, expr_span(expr))?;
            let data_type = data_type.ok_or_else(|| {
                unsupported(
                    "a subquery used as a value must select one column",
                    expr_span(expr),
                )
            })?;
            Expr::Cast(
                Box::new(Expr::Function(ScalarFunction::Subquery(index), Vec::new())),
                data_type,
                false,
            )
        }
        ast::Expr::InSubquery {
            expr: value,
            subquery,
            negated,
        } => {
            let (index, data_type) = subquery_in_scope(subquery, expr_span(expr))?;
            if data_type.is_none() {
                return Err(unsupported(
                    "the subquery of `IN (SELECT ...)` must select one column",
                    expr_span(expr),
                ));
            }
            let test = Expr::Function(ScalarFunction::InSubquery(index), vec![recurse(value)?]);
            if *negated {
                Expr::Not(Box::new(test))
            } else {
                test
            }
        }
        // `x = ANY (SELECT ...)` is `x IN (...)`, `x <> ALL (SELECT ...)` is `x NOT IN (...)`.
        ast::Expr::AnyOp {
            left,
            compare_op,
            right,
            ..
        }
        | ast::Expr::AllOp {
            left,
            compare_op,
            right,
        } => {
            let all = matches!(expr, ast::Expr::AllOp { .. });
            let Some(op) = comparison(compare_op) else {
                return Err(unsupported(
                    format!("`{expr}`: ANY / ALL take a comparison (=, <>, <, <=, >, >=)"),
                    expr_span(expr),
                ));
            };
            let ast::Expr::Subquery(subquery) = right.as_ref() else {
                return Err(unsupported(
                    format!(
                        "`{expr}`: ANY / ALL are supported over a subquery, `x > ANY (SELECT ...)`"
                    ),
                    expr_span(expr),
                ));
            };
            let (index, data_type) = subquery_in_scope(subquery, expr_span(expr))?;
            if data_type.is_none() {
                return Err(unsupported(
                    "the subquery of ANY / ALL must select one column",
                    expr_span(expr),
                ));
            }
            let value = recurse(left)?;
            match (op, all) {
                (BinaryOp::Eq, false) => {
                    Expr::Function(ScalarFunction::InSubquery(index), vec![value])
                }
                (BinaryOp::NotEq, true) => Expr::Not(Box::new(Expr::Function(
                    ScalarFunction::InSubquery(index),
                    vec![value],
                ))),
                _ => Expr::Function(
                    ScalarFunction::QuantifiedSubquery { index, op, all },
                    vec![value],
                ),
            }
        }
        ast::Expr::Exists { subquery, negated } => {
            let (index, _) = subquery_in_scope(subquery, expr_span(expr))?;
            let test = Expr::Function(ScalarFunction::ExistsSubquery(index), Vec::new());
            if *negated {
                Expr::Not(Box::new(test))
            } else {
                test
            }
        }
        ast::Expr::Value(value) => Expr::Literal(literal(&value.value, value.span)?),
        ast::Expr::BinaryOp { left, op, right } => {
            let op = match op {
                ast::BinaryOperator::Plus => BinaryOp::Plus,
                ast::BinaryOperator::Minus => BinaryOp::Minus,
                ast::BinaryOperator::Multiply => BinaryOp::Multiply,
                ast::BinaryOperator::Divide => BinaryOp::Divide,
                // DuckDB's `//`: `/` already divides integers to an integer (truncated), and
                // other numbers as `/` does, as `//` does there.
                ast::BinaryOperator::DuckIntegerDivide => BinaryOp::Divide,
                ast::BinaryOperator::Modulo => BinaryOp::Modulo,
                ast::BinaryOperator::And => BinaryOp::And,
                ast::BinaryOperator::Or => BinaryOp::Or,
                ast::BinaryOperator::StringConcat => {
                    return Ok(Expr::Function(
                        ScalarFunction::ConcatOperator,
                        vec![recurse(left)?, recurse(right)?],
                    ))
                }
                // `a ^ b` is a power in PostgreSQL and DuckDB (the parser calls it XOR). The
                // parser binds it more loosely than `+` and `*` (`2 + 3 ^ 2` as `(2 + 3) ^ 2`),
                // so an operand that is another binary operation must be in parentheses.
                ast::BinaryOperator::BitwiseXor | ast::BinaryOperator::PGExp => {
                    let loose = |operand: &ast::Expr| {
                        matches!(operand, ast::Expr::BinaryOp { op, .. }
                            if !matches!(op, ast::BinaryOperator::BitwiseXor | ast::BinaryOperator::PGExp))
                    };
                    if loose(left) || loose(right) {
                        return Err(unsupported(
                            format!(
                                "`{expr}`: write the operands of `^` that are operations in \
                                 parentheses, e.g. `2 + (3 ^ 2)`"
                            ),
                            expr_span(expr),
                        ));
                    }
                    return Ok(Expr::Function(
                        ScalarFunction::Power,
                        vec![recurse(left)?, recurse(right)?],
                    ));
                }
                ast::BinaryOperator::PGRegexMatch
                | ast::BinaryOperator::PGRegexIMatch
                | ast::BinaryOperator::PGRegexNotMatch
                | ast::BinaryOperator::PGRegexNotIMatch => {
                    let insensitive = matches!(
                        op,
                        ast::BinaryOperator::PGRegexIMatch | ast::BinaryOperator::PGRegexNotIMatch
                    );
                    let negated = matches!(
                        op,
                        ast::BinaryOperator::PGRegexNotMatch
                            | ast::BinaryOperator::PGRegexNotIMatch
                    );
                    return Ok(regex_match(
                        recurse(left)?,
                        recurse(right)?,
                        insensitive,
                        negated,
                    ));
                }
                other => comparison(other)
                    .ok_or_else(|| unsupported(format!("operator `{other}`"), expr_span(expr)))?,
            };
            let left = recurse(left)?;
            let right = recurse(right)?;
            Expr::Binary(Box::new(left), op, Box::new(right))
        }
        ast::Expr::UnaryOp { op, expr: inner } => match op {
            ast::UnaryOperator::Not => Expr::Not(Box::new(recurse(inner)?)),
            ast::UnaryOperator::Minus => match inner.as_ref() {
                // -9223372036854775808 is the smallest BIGINT, not a negated DECIMAL.
                ast::Expr::Value(v) if matches!(&v.value, ast::Value::Number(t, _) if t == "9223372036854775808") => {
                    Expr::Literal(Literal::Int64(i64::MIN))
                }
                _ => Expr::Negate(Box::new(recurse(inner)?)),
            },
            ast::UnaryOperator::Plus => recurse(inner)?,
            other => return Err(unsupported(format!("operator `{other}`"), expr_span(expr))),
        },
        ast::Expr::IsNull(inner) => Expr::IsNull(Box::new(recurse(inner)?), false),
        ast::Expr::IsNotNull(inner) => Expr::IsNull(Box::new(recurse(inner)?), true),
        ast::Expr::IsUnknown(inner) => Expr::IsNull(Box::new(recurse(inner)?), false),
        ast::Expr::IsNotUnknown(inner) => Expr::IsNull(Box::new(recurse(inner)?), true),
        // `x IS TRUE` is never NULL: CASE WHEN x THEN TRUE ELSE FALSE END, and so on.
        ast::Expr::IsTrue(inner)
        | ast::Expr::IsNotTrue(inner)
        | ast::Expr::IsFalse(inner)
        | ast::Expr::IsNotFalse(inner) => {
            let value = recurse(inner)?;
            let (condition, when) = match expr {
                ast::Expr::IsTrue(_) => (value, true),
                ast::Expr::IsNotTrue(_) => (value, false),
                ast::Expr::IsFalse(_) => (Expr::Not(Box::new(value)), true),
                _ => (Expr::Not(Box::new(value)), false),
            };
            Expr::Case(
                vec![(condition, Expr::Literal(Literal::Bool(when)))],
                Some(Box::new(Expr::Literal(Literal::Bool(!when)))),
            )
        }
        // NULL is not distinct from NULL; otherwise `<>`, evaluated only where both are values.
        ast::Expr::IsDistinctFrom(left, right) | ast::Expr::IsNotDistinctFrom(left, right) => {
            let distinct = matches!(expr, ast::Expr::IsDistinctFrom(..));
            let (left, right) = (recurse(left)?, recurse(right)?);
            let null = |e: &Expr| Expr::IsNull(Box::new(e.clone()), false);
            let both_null =
                Expr::Binary(Box::new(null(&left)), BinaryOp::And, Box::new(null(&right)));
            let one_null =
                Expr::Binary(Box::new(null(&left)), BinaryOp::Or, Box::new(null(&right)));
            let op = if distinct {
                BinaryOp::NotEq
            } else {
                BinaryOp::Eq
            };
            Expr::Case(
                vec![
                    (both_null, Expr::Literal(Literal::Bool(!distinct))),
                    (one_null, Expr::Literal(Literal::Bool(distinct))),
                ],
                Some(Box::new(Expr::Binary(Box::new(left), op, Box::new(right)))),
            )
        }
        ast::Expr::Interval(interval) => Expr::Literal(interval_literal(interval, expr)?),
        // DATE '2024-01-05', TIMESTAMP '2024-01-05 10:00:00': a cast of the string.
        ast::Expr::TypedString(typed) => {
            let ast::Value::SingleQuotedString(text) = &typed.value.value else {
                return Err(unsupported(format!("`{expr}`"), expr_span(expr)));
            };
            Expr::Cast(
                Box::new(Expr::Literal(Literal::Utf8(text.clone()))),
                arrow_type(&typed.data_type, expr_span(expr))?,
                false,
            )
        }
        ast::Expr::Between {
            expr: inner,
            negated,
            low,
            high,
        } => {
            let value = recurse(inner)?;
            let low = recurse(low)?;
            let high = recurse(high)?;
            let between = Expr::Binary(
                Box::new(Expr::Binary(
                    Box::new(value.clone()),
                    BinaryOp::GtEq,
                    Box::new(low),
                )),
                BinaryOp::And,
                Box::new(Expr::Binary(
                    Box::new(value),
                    BinaryOp::LtEq,
                    Box::new(high),
                )),
            );
            if *negated {
                Expr::Not(Box::new(between))
            } else {
                between
            }
        }
        ast::Expr::InList {
            expr: inner,
            list,
            negated,
        } => {
            let value = recurse(inner)?;
            let mut any: Option<Expr> = None;
            for item in list {
                let equal = Expr::Binary(
                    Box::new(value.clone()),
                    BinaryOp::Eq,
                    Box::new(recurse(item)?),
                );
                any = Some(match any {
                    None => equal,
                    Some(previous) => {
                        Expr::Binary(Box::new(previous), BinaryOp::Or, Box::new(equal))
                    }
                });
            }
            let any = any.unwrap_or(Expr::Literal(Literal::Bool(false)));
            if *negated {
                Expr::Not(Box::new(any))
            } else {
                any
            }
        }
        ast::Expr::Cast {
            kind,
            expr: inner,
            data_type,
            ..
        } => {
            let safe = matches!(kind, ast::CastKind::TryCast | ast::CastKind::SafeCast);
            Expr::Cast(
                Box::new(recurse(inner)?),
                arrow_type(data_type, expr_span(expr))?,
                safe,
            )
        }
        ast::Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            let operand = operand.as_deref().map(&mut recurse).transpose()?;
            let mut branches = Vec::with_capacity(conditions.len());
            for when in conditions {
                let condition = recurse(&when.condition)?;
                let condition = match &operand {
                    // Simple CASE: `CASE x WHEN v THEN ...` is `x = v`.
                    Some(operand) => {
                        Expr::Binary(Box::new(operand.clone()), BinaryOp::Eq, Box::new(condition))
                    }
                    None => condition,
                };
                branches.push((condition, recurse(&when.result)?));
            }
            let otherwise = else_result.as_deref().map(&mut recurse).transpose()?;
            Expr::Case(branches, otherwise.map(Box::new))
        }
        ast::Expr::Like {
            negated,
            any,
            expr: value,
            pattern,
            escape_char,
        }
        | ast::Expr::ILike {
            negated,
            any,
            expr: value,
            pattern,
            escape_char,
        } => {
            if *any {
                return Err(unsupported(
                    format!("`{expr}` (LIKE ANY is not supported)"),
                    expr_span(expr),
                ));
            }
            let pattern = recurse(pattern)?;
            let pattern = match escape_char.as_ref().map(|e| &e.value) {
                // The backslash is LIKE's own escape: any pattern, constant or not.
                None => pattern,
                Some(ast::Value::SingleQuotedString(escape)) if escape == "\\" => pattern,
                Some(
                    ast::Value::SingleQuotedString(escape)
                    | ast::Value::EscapedStringLiteral(escape),
                ) => match pattern.fold() {
                    Expr::Literal(Literal::Utf8(text)) => Expr::Literal(Literal::Utf8(
                        quiver_kernels::expr::like_pattern_with_escape(&text, escape)?,
                    )),
                    Expr::Literal(Literal::Null) => Expr::Literal(Literal::Null),
                    _ => {
                        return Err(unsupported(
                            format!("`{expr}`: ESCAPE with a pattern that is not a constant"),
                            expr_span(expr),
                        ))
                    }
                },
                Some(other) => {
                    return Err(unsupported(
                        format!("`{expr}`: ESCAPE {other}; a one-character string is expected"),
                        expr_span(expr),
                    ))
                }
            };
            Expr::Like {
                value: Box::new(recurse(value)?),
                pattern: Box::new(pattern),
                negated: *negated,
                case_insensitive: matches!(expr, ast::Expr::ILike { .. }),
            }
        }
        ast::Expr::RLike {
            negated,
            expr: value,
            pattern,
            ..
        } => regex_match(recurse(value)?, recurse(pattern)?, false, *negated),
        ast::Expr::Substring {
            expr: value,
            substring_from,
            substring_for,
            ..
        } => {
            if substring_from.is_none() && substring_for.is_none() {
                return Err(unsupported(
                    format!("`{expr}` with 1 arguments; SUBSTRING takes 2 or 3"),
                    expr_span(expr),
                ));
            }
            let mut args = vec![recurse(value)?];
            args.push(match substring_from {
                Some(from) => recurse(from)?,
                None => Expr::Literal(Literal::Int64(1)),
            });
            if let Some(length) = substring_for {
                args.push(recurse(length)?);
            }
            Expr::Function(ScalarFunction::Substring, args)
        }
        ast::Expr::Trim {
            expr: value,
            trim_where,
            trim_what,
            trim_characters,
        } => {
            let side = match trim_where {
                Some(ast::TrimWhereField::Leading) => TrimSide::Leading,
                Some(ast::TrimWhereField::Trailing) => TrimSide::Trailing,
                _ => TrimSide::Both,
            };
            let mut args = vec![recurse(value)?];
            match (trim_what, trim_characters.as_deref()) {
                (Some(what), None) => args.push(recurse(what)?),
                // TRIM(s, characters), as DuckDB writes it.
                (None, Some([characters])) => args.push(recurse(characters)?),
                (None, None) => {}
                _ => return Err(unsupported(format!("`{expr}`"), expr_span(expr))),
            }
            Expr::Function(ScalarFunction::Trim(side), args)
        }
        ast::Expr::Extract {
            field, expr: value, ..
        } => {
            let name = field.to_string();
            let field = TimeField::parse(&name)
                .ok_or_else(|| unsupported(format!("EXTRACT field {name}"), expr_span(expr)))?;
            Expr::Function(ScalarFunction::Extract(field), vec![recurse(value)?])
        }
        ast::Expr::Ceil { expr: value, field } | ast::Expr::Floor { expr: value, field } => {
            let rounding = if matches!(expr, ast::Expr::Ceil { .. }) {
                Rounding::Up
            } else {
                Rounding::Down
            };
            let digits = match field {
                ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime) => 0,
                ast::CeilFloorKind::Scale(scale) => {
                    match constant_digits(Expr::Literal(literal(&scale.value, scale.span)?), expr)?
                    {
                        Some(digits) => digits,
                        None => return Ok(Expr::Literal(Literal::Null)),
                    }
                }
                ast::CeilFloorKind::DateTimeField(_) => {
                    return Err(unsupported(format!("`{expr}`"), expr_span(expr)))
                }
            };
            Expr::Function(
                ScalarFunction::Round(rounding, digits),
                vec![recurse(value)?],
            )
        }
        ast::Expr::Position {
            expr: needle,
            r#in: haystack,
        } => Expr::Function(
            ScalarFunction::Text(StringFunction::Position),
            vec![recurse(haystack)?, recurse(needle)?],
        ),
        ast::Expr::Function(f) if f.over.is_some() => {
            return Err(unsupported(
                format!(
                    "window function `{expr}` here; window functions belong in SELECT or ORDER BY"
                ),
                expr_span(expr),
            ))
        }
        ast::Expr::Function(f) => scalar_function(f, expr, &mut recurse)?,
        other => {
            return Err(unsupported(
                format!("expression `{other}`"),
                expr_span(other),
            ))
        }
    })
}

/// `CURRENT_DATE`, `CURRENT_TIMESTAMP`, `NOW()`, ... : the moment the query is planned (UTC),
/// one value for every row. `None` for other names.
/// `value ~ pattern` (`~*` when `insensitive`, `!~` when `negated`): a partial match, as
/// `REGEXP_MATCHES` with the `i` option for `~*`.
fn regex_match(value: Expr, pattern: Expr, insensitive: bool, negated: bool) -> Expr {
    let mut args = vec![value, pattern];
    if insensitive {
        args.push(Expr::Literal(Literal::Utf8("i".into())));
    }
    let test = Expr::Function(ScalarFunction::Regex(RegexFunction::Matches), args);
    if negated {
        Expr::Not(Box::new(test))
    } else {
        test
    }
}

fn current_time(name: &str) -> Option<Result<Expr>> {
    let is_date = match name {
        "current_date" | "today" => true,
        "current_timestamp" | "now" | "localtimestamp" | "get_current_timestamp" => false,
        _ => return None,
    };
    Some((|| {
        let micros = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| QuiverError::Internal(format!("the clock is before 1970: {e}")))?
            .as_micros();
        let micros = i64::try_from(micros)
            .map_err(|_| QuiverError::Internal("the clock is past year 294 000".into()))?;
        let now = Expr::Cast(
            Box::new(Expr::Literal(Literal::Int64(micros))),
            DataType::Timestamp(TimeUnit::Microsecond, None),
            false,
        );
        Ok(if is_date {
            Expr::Cast(Box::new(now), DataType::Date32, false)
        } else {
            now
        })
    })())
}

/// Scalar function calls (aggregates are resolved before this by the caller's leaf).
fn scalar_function(
    f: &ast::Function,
    whole: &ast::Expr,
    recurse: &mut dyn FnMut(&ast::Expr) -> Result<Expr>,
) -> Result<Expr> {
    let span = expr_span(whole);
    let name = f.name.to_string().to_ascii_lowercase();
    if matches!(
        name.as_str(),
        "row_number"
            | "rank"
            | "dense_rank"
            | "percent_rank"
            | "cume_dist"
            | "ntile"
            | "lag"
            | "lead"
            | "nth_value"
    ) {
        return Err(unsupported(
            format!("`{whole}` is a window function: it needs an OVER (...) clause"),
            span,
        ));
    }
    let no_arguments = match &f.args {
        ast::FunctionArguments::None => true,
        ast::FunctionArguments::List(list) => list.args.is_empty(),
        ast::FunctionArguments::Subquery(_) => false,
    };
    if let Some(now) = current_time(&name).filter(|_| no_arguments) {
        return now;
    }
    let ast::FunctionArguments::List(list) = &f.args else {
        return Err(unsupported(format!("`{whole}`: arguments expected"), span));
    };
    if f.over.is_some() || f.filter.is_some() || list.duplicate_treatment.is_some() {
        return Err(unsupported(
            format!("`{whole}`: OVER, FILTER and DISTINCT apply to aggregates only"),
            span,
        ));
    }
    let raw: Vec<&ast::Expr> = list
        .args
        .iter()
        .map(|arg| match arg {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
            other => Err(unsupported(
                format!("argument `{other}` of `{whole}`"),
                span,
            )),
        })
        .collect::<Result<_>>()?;
    let expect = |counts: &[usize]| -> Result<()> {
        if counts.contains(&raw.len()) {
            Ok(())
        } else {
            Err(unsupported(
                format!(
                    "`{whole}` with {} arguments; {} takes {}",
                    raw.len(),
                    name.to_uppercase(),
                    counts
                        .iter()
                        .map(|c| c.to_string())
                        .collect::<Vec<_>>()
                        .join(" or ")
                ),
                span,
            ))
        }
    };
    let function = match name.as_str() {
        "coalesce" => {
            if raw.is_empty() {
                return Err(unsupported("COALESCE without arguments", span));
            }
            // COALESCE(a, b, c) = CASE WHEN a IS NOT NULL THEN a WHEN b ... ELSE c END.
            let args = raw.iter().map(|e| recurse(e)).collect::<Result<Vec<_>>>()?;
            let (last, rest) = args
                .split_last()
                .ok_or_else(|| QuiverError::Internal("COALESCE arguments vanished".into()))?;
            let branches = rest
                .iter()
                .map(|a| (Expr::IsNull(Box::new(a.clone()), true), a.clone()))
                .collect();
            return Ok(Expr::Case(branches, Some(Box::new(last.clone()))));
        }
        "ifnull" | "nvl" => {
            expect(&[2])?;
            let (a, b) = (recurse(raw[0])?, recurse(raw[1])?);
            return Ok(Expr::Case(
                vec![(Expr::IsNull(Box::new(a.clone()), true), a)],
                Some(Box::new(b)),
            ));
        }
        "if" | "iif" => {
            expect(&[3])?;
            let (condition, then, otherwise) =
                (recurse(raw[0])?, recurse(raw[1])?, recurse(raw[2])?);
            return Ok(Expr::Case(
                vec![(condition, then)],
                Some(Box::new(otherwise)),
            ));
        }
        // DAYNAME(d) / MONTHNAME(d): English names, as DuckDB gives them.
        "dayname" | "monthname" => {
            expect(&[1])?;
            let format = if name == "dayname" { "%A" } else { "%B" };
            return Ok(Expr::Function(
                ScalarFunction::Strftime,
                vec![
                    recurse(raw[0])?,
                    Expr::Literal(Literal::Utf8(format.into())),
                ],
            ));
        }
        "pi" => {
            expect(&[0])?;
            return Ok(Expr::Literal(Literal::Float64(std::f64::consts::PI)));
        }
        "year" | "quarter" | "month" | "week" | "day" | "dayofmonth" | "dayofweek" | "weekday"
        | "dayofyear" | "isodow" | "isoyear" | "hour" | "minute" | "second" | "millisecond"
        | "microsecond" | "epoch" | "decade" | "century" | "millennium" => {
            expect(&[1])?;
            let field = match name.as_str() {
                "dayofmonth" => TimeField::Day,
                "weekday" => TimeField::DayOfWeek,
                other => TimeField::parse(other)
                    .ok_or_else(|| QuiverError::Internal(format!("time field {other}")))?,
            };
            return Ok(Expr::Function(
                ScalarFunction::Extract(field),
                vec![recurse(raw[0])?],
            ));
        }
        "date_diff" | "datediff" => {
            expect(&[3])?;
            let unit = match raw[0] {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(u) => {
                        TimeField::parse(u).and_then(quiver_kernels::calendar::date_diff_unit)
                    }
                    _ => None,
                },
                _ => None,
            }
            .ok_or_else(|| {
                unsupported(
                    format!(
                        "DATE_DIFF unit `{}`; one of 'year', 'quarter', 'month', 'week', \
                         'day', 'hour', 'minute', 'second', 'millisecond', 'microsecond', \
                         'decade', 'century', 'millennium' is expected",
                        raw[0]
                    ),
                    span,
                )
            })?;
            return Ok(Expr::Function(
                ScalarFunction::DateDiff(unit),
                vec![recurse(raw[1])?, recurse(raw[2])?],
            ));
        }
        "date_add" => {
            expect(&[2])?;
            let (date, interval) = (recurse(raw[0])?, recurse(raw[1])?);
            return Ok(Expr::Binary(
                Box::new(date),
                BinaryOp::Plus,
                Box::new(interval),
            ));
        }
        "nullif" => {
            expect(&[2])?;
            let (a, b) = (recurse(raw[0])?, recurse(raw[1])?);
            let equal = Expr::Binary(Box::new(a.clone()), BinaryOp::Eq, Box::new(b));
            return Ok(Expr::Case(
                vec![(equal, Expr::Literal(Literal::Null))],
                Some(Box::new(a)),
            ));
        }
        "upper" => (ScalarFunction::Upper, &[1][..]),
        "lower" => (ScalarFunction::Lower, &[1][..]),
        "length" | "char_length" | "character_length" => (ScalarFunction::Length, &[1][..]),
        "substr" | "substring" => (ScalarFunction::Substring, &[2, 3][..]),
        "concat" => (ScalarFunction::Concat, &[][..]),
        "trim" | "btrim" => (ScalarFunction::Trim(TrimSide::Both), &[1, 2][..]),
        "ltrim" => (ScalarFunction::Trim(TrimSide::Leading), &[1, 2][..]),
        "rtrim" => (ScalarFunction::Trim(TrimSide::Trailing), &[1, 2][..]),
        "abs" => (ScalarFunction::Abs, &[1][..]),
        "round" | "trunc" | "truncate" | "floor" | "ceil" | "ceiling" => {
            expect(&[1, 2])?;
            let rounding = match name.as_str() {
                "round" => Rounding::HalfAwayFromZero,
                "floor" => Rounding::Down,
                "ceil" | "ceiling" => Rounding::Up,
                _ => Rounding::TowardZero,
            };
            let digits = match raw.get(1) {
                Some(d) => match constant_digits(recurse(d)?, whole)? {
                    Some(digits) => digits,
                    // ROUND(x, NULL) is NULL.
                    None => return Ok(Expr::Literal(Literal::Null)),
                },
                None => 0,
            };
            return Ok(Expr::Function(
                ScalarFunction::Round(rounding, digits),
                vec![recurse(raw[0])?],
            ));
        }
        "sign" => (ScalarFunction::Sign, &[1][..]),
        "sqrt" => (ScalarFunction::Float(FloatFunction::Sqrt), &[1][..]),
        "cbrt" => (ScalarFunction::Float(FloatFunction::Cbrt), &[1][..]),
        "exp" => (ScalarFunction::Float(FloatFunction::Exp), &[1][..]),
        "ln" => (ScalarFunction::Float(FloatFunction::Ln), &[1][..]),
        "log" if raw.len() == 2 => (ScalarFunction::LogBase, &[2][..]),
        "log" | "log10" => (ScalarFunction::Float(FloatFunction::Log10), &[1][..]),
        "log2" => (ScalarFunction::Float(FloatFunction::Log2), &[1][..]),
        "sin" => (ScalarFunction::Float(FloatFunction::Sin), &[1][..]),
        "cos" => (ScalarFunction::Float(FloatFunction::Cos), &[1][..]),
        "tan" => (ScalarFunction::Float(FloatFunction::Tan), &[1][..]),
        "cot" => (ScalarFunction::Float(FloatFunction::Cot), &[1][..]),
        "asin" => (ScalarFunction::Float(FloatFunction::Asin), &[1][..]),
        "acos" => (ScalarFunction::Float(FloatFunction::Acos), &[1][..]),
        "atan" => (ScalarFunction::Float(FloatFunction::Atan), &[1][..]),
        "degrees" => (ScalarFunction::Float(FloatFunction::Degrees), &[1][..]),
        "radians" => (ScalarFunction::Float(FloatFunction::Radians), &[1][..]),
        "atan2" => (ScalarFunction::Atan2, &[2][..]),
        "isnan" => (ScalarFunction::FloatTest(FloatTest::Nan), &[1][..]),
        "isinf" => (ScalarFunction::FloatTest(FloatTest::Infinite), &[1][..]),
        "isfinite" => (ScalarFunction::FloatTest(FloatTest::Finite), &[1][..]),
        "gcd" => (ScalarFunction::GcdLcm(false), &[2][..]),
        "lcm" => (ScalarFunction::GcdLcm(true), &[2][..]),
        "make_date" => (ScalarFunction::MakeDate, &[3][..]),
        "last_day" => (ScalarFunction::LastDay, &[1][..]),
        "strftime" => (ScalarFunction::Strftime, &[2][..]),
        "concat_ws" => (ScalarFunction::ConcatWs, &[][..]),
        "octet_length" | "strlen" => (ScalarFunction::Text(StringFunction::OctetLength), &[1][..]),
        "ascii" => (ScalarFunction::Text(StringFunction::Ascii), &[1][..]),
        "chr" => (ScalarFunction::Text(StringFunction::Chr), &[1][..]),
        "initcap" => (ScalarFunction::Text(StringFunction::Initcap), &[1][..]),
        "power" | "pow" => (ScalarFunction::Power, &[2][..]),
        "mod" => {
            expect(&[2])?;
            let (a, b) = (recurse(raw[0])?, recurse(raw[1])?);
            return Ok(Expr::Binary(Box::new(a), BinaryOp::Modulo, Box::new(b)));
        }
        "greatest" => (ScalarFunction::Greatest, &[][..]),
        "least" => (ScalarFunction::Least, &[][..]),
        "replace" => (ScalarFunction::Text(StringFunction::Replace), &[3][..]),
        "translate" => (ScalarFunction::Text(StringFunction::Translate), &[3][..]),
        "strpos" | "instr" => (ScalarFunction::Text(StringFunction::Position), &[2][..]),
        "left" => (ScalarFunction::Text(StringFunction::Left), &[2][..]),
        "right" => (ScalarFunction::Text(StringFunction::Right), &[2][..]),
        "reverse" => (ScalarFunction::Text(StringFunction::Reverse), &[1][..]),
        "md5" => (ScalarFunction::Text(StringFunction::Md5), &[1][..]),
        "sha256" => (ScalarFunction::Text(StringFunction::Sha256), &[1][..]),
        "lpad" => (
            ScalarFunction::Text(StringFunction::Pad(PadSide::Left)),
            &[2, 3][..],
        ),
        "rpad" => (
            ScalarFunction::Text(StringFunction::Pad(PadSide::Right)),
            &[2, 3][..],
        ),
        "repeat" => (ScalarFunction::Text(StringFunction::Repeat), &[2][..]),
        "split_part" => (ScalarFunction::Text(StringFunction::SplitPart), &[3][..]),
        "starts_with" => (ScalarFunction::Text(StringFunction::StartsWith), &[2][..]),
        "ends_with" => (ScalarFunction::Text(StringFunction::EndsWith), &[2][..]),
        "contains" => (ScalarFunction::Text(StringFunction::Contains), &[2][..]),
        "regexp_matches" | "regexp_like" => (
            ScalarFunction::Regex(RegexFunction::Matches),
            RegexFunction::Matches.arities(),
        ),
        "regexp_full_match" => (
            ScalarFunction::Regex(RegexFunction::FullMatch),
            RegexFunction::FullMatch.arities(),
        ),
        "regexp_replace" => (
            ScalarFunction::Regex(RegexFunction::Replace),
            RegexFunction::Replace.arities(),
        ),
        "regexp_extract" => (
            ScalarFunction::Regex(RegexFunction::Extract),
            RegexFunction::Extract.arities(),
        ),
        "date_part" | "datepart" => {
            expect(&[2])?;
            let field = match raw[0] {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(f) => Some(
                        TimeField::parse(f)
                            .ok_or_else(|| unsupported(format!("DATE_PART field '{f}'"), span))?,
                    ),
                    _ => None,
                },
                _ => None,
            }
            .ok_or_else(|| {
                unsupported(
                    format!(
                        "DATE_PART field `{}`; a quoted field name is expected",
                        raw[0]
                    ),
                    span,
                )
            })?;
            return Ok(Expr::Function(
                ScalarFunction::Extract(field),
                vec![recurse(raw[1])?],
            ));
        }
        "time_bucket" => {
            expect(&[2, 3])?;
            let width = match recurse(raw[0])? {
                Expr::Literal(Literal::Interval {
                    months,
                    days,
                    nanos,
                }) => bucket_width(months, days, nanos)
                    .map_err(|reason| unsupported(format!("`{whole}`: {reason}"), span))?,
                _ => {
                    return Err(unsupported(
                        format!("`{whole}`: the bucket width must be a constant INTERVAL"),
                        span,
                    ))
                }
            };
            let value = recurse(raw[1])?;
            return Ok(match raw.get(2).map(|e| recurse(e)).transpose()? {
                None => Expr::Function(ScalarFunction::TimeBucket(width), vec![value]),
                // An offset shifts the buckets: they hold `t - offset`, then move by `offset`
                // (calendar arithmetic, as `t - INTERVAL ...` everywhere).
                Some(offset @ Expr::Literal(Literal::Interval { .. })) => Expr::Binary(
                    Box::new(Expr::Function(
                        ScalarFunction::TimeBucket(width),
                        vec![Expr::Binary(
                            Box::new(value),
                            BinaryOp::Minus,
                            Box::new(offset.clone()),
                        )],
                    )),
                    BinaryOp::Plus,
                    Box::new(offset),
                ),
                Some(origin) => {
                    Expr::Function(ScalarFunction::TimeBucket(width), vec![value, origin])
                }
            });
        }
        "date_trunc" => {
            expect(&[2])?;
            let unit = match raw[0] {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(u) => TruncUnit::parse(u),
                    _ => None,
                },
                _ => None,
            }
            .ok_or_else(|| {
                unsupported(
                    format!(
                        "DATE_TRUNC unit `{}`; one of 'millisecond', 'second', 'minute', \
                         'hour', 'day', 'week', 'month', 'quarter', 'year' is expected",
                        raw[0]
                    ),
                    span,
                )
            })?;
            return Ok(Expr::Function(
                ScalarFunction::DateTrunc(unit),
                vec![recurse(raw[1])?],
            ));
        }
        other => {
            return Err(unsupported(
                format!("function `{other}` in `{whole}`"),
                span,
            ))
        }
    };
    let (function, counts) = function;
    if counts.is_empty() {
        if raw.is_empty() {
            return Err(unsupported(format!("`{whole}` without arguments"), span));
        }
    } else {
        expect(counts)?;
    }
    let args = raw.iter().map(|e| recurse(e)).collect::<Result<Vec<_>>>()?;
    Ok(Expr::Function(function, args))
}

/// The width of `TIME_BUCKET` for an interval of `months`, `days` and `nanos`: months alone or
/// days and time alone, positive.
fn bucket_width(months: i32, days: i32, nanos: i64) -> std::result::Result<BucketWidth, String> {
    const NANOS_PER_DAY: i128 = 86_400_000_000_000;
    if months != 0 {
        if days != 0 || nanos != 0 {
            return Err("a width of months cannot also have days or time".to_string());
        }
        return if months > 0 {
            Ok(BucketWidth::Months(months))
        } else {
            Err("the bucket width must be positive".to_string())
        };
    }
    let total = i128::from(days) * NANOS_PER_DAY + i128::from(nanos);
    match i64::try_from(total) {
        Ok(span) if span > 0 => Ok(BucketWidth::Nanos(span)),
        Ok(_) => Err("the bucket width must be positive".to_string()),
        Err(_) => Err("the bucket width is too large".to_string()),
    }
}

/// `INTERVAL '1' DAY`, `INTERVAL '1 day 2 hours'`, `INTERVAL '-1.5 seconds'`: months (years,
/// months), days (weeks, days) and nanoseconds (hours down to microseconds), kept apart as
/// PostgreSQL keeps them, so that a month added is a calendar month.
fn interval_literal(interval: &ast::Interval, whole: &ast::Expr) -> Result<Literal> {
    let bad = |why: &str| {
        unsupported(
            format!("interval `{whole}`: {why}; write e.g. INTERVAL '1 day' or INTERVAL '2' HOUR"),
            expr_span(whole),
        )
    };
    if interval.last_field.is_some() || interval.fractional_seconds_precision.is_some() {
        return Err(bad("interval ranges are not supported"));
    }
    let text = match interval.value.as_ref() {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => s.clone(),
            ast::Value::Number(n, _) => n.clone(),
            _ => return Err(bad("a quoted amount is expected")),
        },
        _ => return Err(bad("a quoted amount is expected")),
    };
    let text = match &interval.leading_field {
        Some(field) => format!("{text} {field}"),
        None => text,
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || words.len() % 2 != 0 {
        return Err(bad("amount and unit pairs are expected"));
    }
    let (mut months, mut days, mut nanos) = (0_i64, 0_i64, 0_i128);
    for pair in words.chunks(2) {
        let (amount, unit) = (pair[0], pair[1].to_ascii_lowercase());
        let nanos_of = |unit_nanos: i128| -> Result<i128> {
            streaming::exact_amount(amount, unit_nanos)
                .map_err(|why| bad(&format!("`{amount}`: {why}")))
        };
        let whole_units = |what: &str| -> Result<i64> {
            let count = streaming::exact_amount(amount, 1)
                .map_err(|_| bad(&format!("a whole number of {what} is expected")))?;
            i64::try_from(count).map_err(|_| bad("amount too large"))
        };
        match unit.as_str() {
            "y" | "yr" | "yrs" | "year" | "years" => months += whole_units("years")? * 12,
            "mon" | "mons" | "month" | "months" => months += whole_units("months")?,
            "w" | "week" | "weeks" => days += whole_units("weeks")? * 7,
            "d" | "day" | "days" => days += whole_units("days")?,
            "h" | "hr" | "hrs" | "hour" | "hours" => nanos += nanos_of(3_600_000_000_000)?,
            "m" | "min" | "mins" | "minute" | "minutes" => nanos += nanos_of(60_000_000_000)?,
            "s" | "sec" | "secs" | "second" | "seconds" => nanos += nanos_of(1_000_000_000)?,
            "ms" | "msec" | "msecs" | "millisecond" | "milliseconds" => {
                nanos += nanos_of(1_000_000)?
            }
            "us" | "usec" | "usecs" | "microsecond" | "microseconds" => nanos += nanos_of(1_000)?,
            _ => return Err(bad(&format!("unit `{unit}` is not supported"))),
        }
    }
    Ok(Literal::Interval {
        months: i32::try_from(months).map_err(|_| bad("amount too large"))?,
        days: i32::try_from(days).map_err(|_| bad("amount too large"))?,
        nanos: i64::try_from(nanos).map_err(|_| bad("amount too large"))?,
    })
}

/// The digits argument of `ROUND` / `TRUNC` / `FLOOR` / `CEIL`: a constant integer (`None`
/// for NULL), since a decimal result's scale depends on it. Beyond ±1000 digits nothing
/// changes any more.
fn constant_digits(digits: Expr, whole: &ast::Expr) -> Result<Option<i32>> {
    let error = || {
        unsupported(
            format!("the digits of `{whole}`: a constant integer is expected"),
            expr_span(whole),
        )
    };
    let integer = match digits {
        Expr::Literal(Literal::Null) => return Ok(None),
        Expr::Literal(Literal::Decimal(..) | Literal::Float64(_)) => return Err(error()),
        other if other.is_constant() => Expr::Cast(Box::new(other), DataType::Int64, false),
        _ => return Err(error()),
    };
    match integer.fold() {
        Expr::Literal(Literal::Int64(n)) => Ok(Some(n.clamp(-1_000, 1_000) as i32)),
        Expr::Literal(Literal::Null) => Ok(None),
        _ => Err(error()),
    }
}

/// A WHERE, HAVING or FILTER condition: a bare NULL keeps no row, as FALSE does (it has no
/// type of its own to test).
fn predicate(condition: Expr) -> Expr {
    match condition {
        Expr::Literal(Literal::Null) => Expr::Literal(Literal::Bool(false)),
        other => other,
    }
}

fn literal(value: &ast::Value, span: sqlparser::tokenizer::Span) -> Result<Literal> {
    Ok(match value {
        ast::Value::Null => Literal::Null,
        ast::Value::Boolean(b) => Literal::Bool(*b),
        ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => {
            Literal::Utf8(s.clone())
        }
        ast::Value::Number(text, _) => {
            if let Ok(v) = text.parse::<i64>() {
                Literal::Int64(v)
            } else if let Some(mantissa) = text
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| text.parse::<i128>().ok())
                .flatten()
                .filter(|_| text.len() <= 38)
            {
                // An integer beyond BIGINT stays exact, as DECIMAL(38, 0).
                Literal::Decimal(mantissa, 0)
            } else if let Some((int_part, frac_part)) =
                text.split_once('.').filter(|_| !text.contains(['e', 'E']))
            {
                // Exact decimal literal, as in standard SQL.
                let digits = format!("{int_part}{frac_part}");
                let scale = i8::try_from(frac_part.len())
                    .map_err(|_| unsupported(format!("literal {text}"), span))?;
                match digits.parse::<i128>() {
                    Ok(mantissa) if scale <= 38 => Literal::Decimal(mantissa, scale),
                    _ => Literal::Float64(
                        text.parse()
                            .map_err(|_| unsupported(format!("number {text}"), span))?,
                    ),
                }
            } else {
                Literal::Float64(
                    text.parse()
                        .map_err(|_| unsupported(format!("number {text}"), span))?,
                )
            }
        }
        other => return Err(unsupported(format!("literal {other}"), span)),
    })
}

fn arrow_type(data_type: &ast::DataType, span: sqlparser::tokenizer::Span) -> Result<DataType> {
    use ast::DataType as S;
    Ok(match data_type {
        S::Boolean | S::Bool => DataType::Boolean,
        S::TinyInt(_) => DataType::Int8,
        S::SmallInt(_) => DataType::Int16,
        S::Int(_) | S::Integer(_) => DataType::Int32,
        S::BigInt(_) => DataType::Int64,
        S::Real | S::Float4 => DataType::Float32,
        S::Double(_) | S::DoublePrecision | S::Float8 | S::Float(_) => DataType::Float64,
        S::Decimal(info) | S::Numeric(info) => match info {
            ast::ExactNumberInfo::PrecisionAndScale(p, s) => DataType::Decimal128(
                u8::try_from(*p).map_err(|_| unsupported("decimal precision", span))?,
                i8::try_from(*s).map_err(|_| unsupported("decimal scale", span))?,
            ),
            ast::ExactNumberInfo::Precision(p) => DataType::Decimal128(
                u8::try_from(*p).map_err(|_| unsupported("decimal precision", span))?,
                0,
            ),
            ast::ExactNumberInfo::None => DataType::Decimal128(38, 10),
        },
        S::Varchar(_) | S::Text | S::String(_) | S::Char(_) => DataType::Utf8,
        S::Date => DataType::Date32,
        S::Timestamp(_, _) => DataType::Timestamp(TimeUnit::Microsecond, None),
        other => return Err(unsupported(format!("CAST to {other}"), span)),
    })
}

/// Planning of output expressions in an aggregate query.
struct AggregateScope<'a> {
    /// Type of `window_start`/`window_end` for windowed queries (they lead the result).
    window_type: Option<DataType>,
    /// `EMIT CHANGES`: the result ends with a `change` column.
    changes: bool,
    columns: &'a Columns<'a>,
    /// (as written, planned over source, name)
    group_by: Vec<(ast::Expr, Expr, String)>,
    aggregates: Vec<AggregateCall>,
    /// Window function calls of the query, planned as their result columns.
    windowed: &'a [ast::Expr],
}

impl AggregateScope<'_> {
    fn window_columns(&self) -> usize {
        if self.window_type.is_some() {
            2
        } else {
            0
        }
    }

    fn change_column(&self) -> usize {
        self.window_columns() + self.group_by.len() + self.aggregates.len()
    }

    fn result_schema(&self, source: &Schema) -> Result<Schema> {
        let mut fields = Vec::new();
        if let Some(window_type) = &self.window_type {
            fields.push(Field::new("window_start", window_type.clone(), true));
            fields.push(Field::new("window_end", window_type.clone(), true));
        }
        for (_, expr, name) in &self.group_by {
            fields.push(Field::new(name, expr.data_type(source)?, true));
        }
        // The aggregate's output type is computed by the kernels at run time; plan with the
        // same rules by building the aggregator over a schema of argument columns.
        let mut argument_fields: Vec<Field> = Vec::new();
        let mut exprs = Vec::new();
        for (i, call) in self.aggregates.iter().enumerate() {
            let input = match &call.argument {
                Some(argument) => {
                    argument_fields.push(Field::new(
                        format!("arg{i}"),
                        argument.data_type(source)?,
                        true,
                    ));
                    Some(argument_fields.len() - 1)
                }
                None => None,
            };
            let function = match (call.function, input) {
                (AggregateFunction::Count, None) => AggregateFunction::CountStar,
                (f, _) => f,
            };
            exprs.push(
                quiver_kernels::AggregateExpr::new(function, input, call.text.clone())
                    .with_separator(call.separator.clone()),
            );
        }
        let aggregator = quiver_kernels::HashAggregator::try_new(
            std::sync::Arc::new(Schema::new(argument_fields)),
            Vec::new(),
            exprs,
        )?;
        for field in &aggregator.output_schema().fields()[..] {
            fields.push(Field::new(field.name(), field.data_type().clone(), true));
        }
        if self.changes {
            fields.push(Field::new("change", DataType::Utf8, false));
        }
        Ok(Schema::new(fields))
    }

    fn output(&mut self, expr: &ast::Expr) -> Result<Expr> {
        let offset = self.window_columns();
        let group_count = self.group_by.len();
        let columns = self.columns;
        let group_by = &self.group_by;
        let aggregates = &mut self.aggregates;
        let windowed = self.windowed;
        let mut leaf = |e: &ast::Expr| -> Option<Result<Expr>> {
            if let Some(i) = windowed.iter().position(|w| w == e) {
                return Some(Ok(Expr::Column(WINDOWED_COLUMN_BASE + i)));
            }
            if let Some(i) = group_by.iter().position(|(g, _, _)| g == e) {
                return Some(Ok(Expr::Column(offset + i)));
            }
            if offset > 0 {
                if let Some(bound) = window_bound(e) {
                    return Some(Ok(Expr::Column(bound)));
                }
            }
            match e {
                ast::Expr::Function(f) => {
                    let function = aggregate_function(&f.name.to_string())?;
                    Some(
                        plan_call(f, function, &mut |x| columns.scalar(x), e, false).map(|call| {
                            let index = match aggregates.iter().position(|c| c == &call) {
                                Some(index) => index,
                                None => {
                                    aggregates.push(call);
                                    aggregates.len() - 1
                                }
                            };
                            Expr::Column(offset + group_count + index)
                        }),
                    )
                }
                ast::Expr::Identifier(ident) => {
                    // A bare column must be a GROUP BY key (matched by name).
                    let position = group_by.iter().position(|(g, _, _)| match g {
                        ast::Expr::Identifier(g) => g.value.eq_ignore_ascii_case(&ident.value),
                        ast::Expr::CompoundIdentifier(g) => g
                            .last()
                            .is_some_and(|g| g.value.eq_ignore_ascii_case(&ident.value)),
                        _ => false,
                    });
                    Some(match position {
                        Some(i) => Ok(Expr::Column(offset + i)),
                        None => columns.column(ident).and_then(|_| {
                            Err(unsupported(
                                format!(
                                    "column `{}` must appear in GROUP BY or be used in an aggregate",
                                    ident.value
                                ),
                                ident.span,
                            ))
                        }),
                    })
                }
                ast::Expr::CompoundIdentifier(parts) => {
                    // `t.x`: the GROUP BY key it names, written `t.x` or `x`.
                    let same =
                        |a: &ast::Ident, b: &ast::Ident| a.value.eq_ignore_ascii_case(&b.value);
                    let position = group_by.iter().position(|(g, _, _)| match g {
                        ast::Expr::CompoundIdentifier(g) => {
                            g.len() == parts.len() && g.iter().zip(parts).all(|(a, b)| same(a, b))
                        }
                        ast::Expr::Identifier(g) => parts.last().is_some_and(|p| same(p, g)),
                        _ => false,
                    });
                    Some(match position {
                        Some(i) => Ok(Expr::Column(offset + i)),
                        None => columns.compound(parts).and_then(|_| {
                            Err(unsupported(
                                format!(
                                    "column `{e}` must appear in GROUP BY or be used in an aggregate"
                                ),
                                expr_span(e),
                            ))
                        }),
                    })
                }
                _ => None,
            }
        };
        scalar_expr(expr, &mut leaf)
    }
}

/// `window_start` / `window_end` (column 0 / 1 of a windowed result), also spelled
/// `TUMBLE_START(...)`, `HOP_END(...)`, `SESSION_START(...)` and so on.
fn window_bound(expr: &ast::Expr) -> Option<usize> {
    let name = match expr {
        ast::Expr::Identifier(ident) if ident.quote_style.is_none() => ident.value.clone(),
        ast::Expr::Function(f) => f.name.to_string(),
        _ => return None,
    };
    let name = name.to_ascii_lowercase();
    let is_call = matches!(expr, ast::Expr::Function(_));
    match name.as_str() {
        "window_start" if !is_call => Some(0),
        "window_end" if !is_call => Some(1),
        "tumble_start" | "hop_start" | "session_start" if is_call => Some(0),
        "tumble_end" | "hop_end" | "session_end" if is_call => Some(1),
        _ => None,
    }
}

/// Plans an aggregate call; `scalar` plans its arguments. A window aggregate's arguments are
/// over the rows the output reads, which may be aggregate results (`SUM(SUM(x)) OVER ()`).
fn plan_call(
    f: &ast::Function,
    function: AggregateFunction,
    scalar: &mut dyn FnMut(&ast::Expr) -> Result<Expr>,
    whole: &ast::Expr,
    windowed: bool,
) -> Result<AggregateCall> {
    let span = expr_span(whole);
    if f.over.is_some() && !windowed {
        return Err(unsupported(
            format!("window function `{whole}` (OVER)"),
            span,
        ));
    }
    let ast::FunctionArguments::List(list) = &f.args else {
        return Err(unsupported(format!("`{whole}`: arguments expected"), span));
    };
    let null_treatment = f.null_treatment.is_some()
        || list
            .clauses
            .iter()
            .any(|c| matches!(c, ast::FunctionArgumentClause::IgnoreOrRespectNulls(_)));
    // Over a window, the caller decides which functions take it.
    if null_treatment && !windowed {
        return Err(unsupported(
            format!(
                "IGNORE / RESPECT NULLS in `{whole}`; only the window functions LAG, LEAD, \
                 FIRST_VALUE, LAST_VALUE and NTH_VALUE take it"
            ),
            span,
        ));
    }
    let distinct = matches!(
        list.duplicate_treatment,
        Some(ast::DuplicateTreatment::Distinct)
    );
    let order_by: Option<&Vec<ast::OrderByExpr>> = list.clauses.iter().find_map(|c| match c {
        ast::FunctionArgumentClause::OrderBy(keys) => Some(keys),
        _ => None,
    });
    // STRING_AGG(x, sep ORDER BY key): the key travels with the value, sorted per group.
    let aggregated = match list.args.first() {
        Some(ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))) => Some(e),
        _ => None,
    };
    let string_order = match (function, order_by.map(Vec::as_slice)) {
        (AggregateFunction::StringAgg, Some([key])) => {
            // As in PostgreSQL: which of equal values' keys would order them is undefined.
            if distinct && aggregated != Some(&key.expr) {
                return Err(unsupported(
                    format!(
                        "`{whole}`: with DISTINCT, STRING_AGG may only be ordered by the \
                         aggregated value"
                    ),
                    span,
                ));
            }
            let descending = key.options.asc == Some(false);
            // PostgreSQL: NULLs sort as if larger than every value.
            let nulls_first = key.options.nulls_first.unwrap_or(descending);
            Some((
                AggregateFunction::StringAggOrdered {
                    descending,
                    nulls_first,
                    distinct,
                },
                &key.expr,
            ))
        }
        // Distinct values, joined in their own order.
        (AggregateFunction::StringAgg, None) if distinct => aggregated.map(|value| {
            (
                AggregateFunction::StringAggOrdered {
                    descending: false,
                    nulls_first: false,
                    distinct: true,
                },
                value,
            )
        }),
        (AggregateFunction::StringAgg, Some(_)) => {
            return Err(unsupported(
                format!("`{whole}`: STRING_AGG takes one ORDER BY key"),
                span,
            ))
        }
        _ => None,
    };
    if order_by.is_some()
        && string_order.is_none()
        && matches!(
            function,
            AggregateFunction::FirstValue | AggregateFunction::LastValue
        )
    {
        // The result would depend on the order: refuse rather than silently use arrival order.
        return Err(unsupported(
            format!("ORDER BY inside `{whole}`: {function} takes values in arrival order"),
            span,
        ));
    }
    let mut arguments = Vec::new();
    let mut star = false;
    for argument in &list.args {
        match argument {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                if !windowed && contains_aggregate(e) {
                    return Err(unsupported(format!("nested aggregate in `{whole}`"), span));
                }
                arguments.push(e.clone());
            }
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => star = true,
            other => {
                return Err(unsupported(
                    format!("argument `{other}` of `{whole}`"),
                    span,
                ))
            }
        }
    }
    let function = match (function, distinct) {
        (AggregateFunction::Count, true) => AggregateFunction::CountDistinct,
        (AggregateFunction::Sum, true) => AggregateFunction::SumDistinct,
        (AggregateFunction::Avg, true) => AggregateFunction::AvgDistinct,
        // The extremes of the distinct values are the extremes.
        (f @ (AggregateFunction::Min | AggregateFunction::Max), true) => f,
        // Carried by the ordered form above.
        (AggregateFunction::StringAgg, true) if string_order.is_some() => {
            AggregateFunction::StringAgg
        }
        (f, true) => {
            return Err(unsupported(
                format!("DISTINCT in {f} (COUNT, SUM, AVG, MIN, MAX and STRING_AGG take DISTINCT)"),
                span,
            ))
        }
        (f, false) => f,
    };
    let fraction = |e: &ast::Expr| -> Result<f64> {
        let value = match e {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => n.parse::<f64>().ok(),
                _ => None,
            },
            _ => None,
        };
        value.filter(|f| (0.0..=1.0).contains(f)).ok_or_else(|| {
            unsupported(
                format!("percentile `{e}` in `{whole}`; a number from 0 to 1 is expected"),
                span,
            )
        })
    };
    // The fraction of an exact or approximate percentile, and its function with it.
    let with_fraction = |p: f64, descending: bool| match function {
        AggregateFunction::ApproxPercentile(_) if descending => {
            AggregateFunction::ApproxPercentile(1.0 - p)
        }
        AggregateFunction::ApproxPercentile(_) => AggregateFunction::ApproxPercentile(p),
        // A discrete percentile picks a value in the given order (no 1 - p symmetry).
        AggregateFunction::PercentileDisc { .. } => AggregateFunction::PercentileDisc {
            fraction: p,
            descending,
        },
        _ if descending => AggregateFunction::PercentileCont(1.0 - p),
        _ => AggregateFunction::PercentileCont(p),
    };
    let takes_fraction = matches!(
        function,
        AggregateFunction::PercentileCont(_) | AggregateFunction::PercentileDisc { .. }
    ) || matches!(function, AggregateFunction::ApproxPercentile(p) if p.is_nan());
    let (function, arguments) = match (
        takes_fraction,
        arguments.as_slice(),
        f.within_group.as_slice(),
    ) {
        // PERCENTILE_CONT(f) WITHIN GROUP (ORDER BY x [DESC])
        (true, [p], [order]) => {
            let descending = order.options.asc == Some(false);
            (
                with_fraction(fraction(p)?, descending),
                vec![order.expr.clone()],
            )
        }
        // QUANTILE_CONT(x, f), APPROX_PERCENTILE(x, f)
        (true, [value, p], []) => (with_fraction(fraction(p)?, false), vec![value.clone()]),
        (true, _, _) => {
            let name = f.name.to_string().to_ascii_uppercase();
            return Err(unsupported(
                format!("`{whole}`; write {name}(f) WITHIN GROUP (ORDER BY x) or {name}(x, f)"),
                span,
            ));
        }
        (false, _, [_, ..]) => return Err(unsupported(format!("WITHIN GROUP in `{whole}`"), span)),
        (false, _, []) => (function, arguments),
    };
    let (argument, separator) = match (function, star, arguments.as_slice()) {
        (AggregateFunction::Count, true, []) => (None, String::new()),
        (AggregateFunction::StringAgg, false, [value, separator]) => {
            let ast::Expr::Value(v) = separator else {
                return Err(unsupported(
                    "STRING_AGG separator must be a string literal",
                    span,
                ));
            };
            let ast::Value::SingleQuotedString(separator) = &v.value else {
                return Err(unsupported(
                    "STRING_AGG separator must be a string literal",
                    span,
                ));
            };
            (Some(scalar(value)?), separator.clone())
        }
        (AggregateFunction::Covariance(_), false, [y, x]) => (
            Some(Expr::Function(
                ScalarFunction::Pair,
                vec![scalar(y)?, scalar(x)?],
            )),
            String::new(),
        ),
        (AggregateFunction::ArgExtreme(_), false, [value, key]) => (
            Some(Expr::Function(
                ScalarFunction::Pair,
                vec![scalar(value)?, scalar(key)?],
            )),
            String::new(),
        ),
        (function @ AggregateFunction::ArgExtreme(_), _, _) => {
            return Err(unsupported(
                format!("`{whole}`: {function} takes two arguments (value, key)"),
                span,
            ))
        }
        (AggregateFunction::Covariance(kind), _, _) => {
            return Err(unsupported(
                format!("`{whole}`: {} takes two arguments (y, x)", kind.name()),
                span,
            ))
        }
        // One argument: values joined with a comma, as DuckDB does.
        (AggregateFunction::StringAgg, false, [value]) => (Some(scalar(value)?), ",".to_string()),
        (_, false, [value]) => (Some(scalar(value)?), String::new()),
        _ => return Err(unsupported(format!("arguments of `{whole}`"), span)),
    };
    // COUNT_IF(c): the rows where `c` is true.
    let argument = match argument {
        Some(condition)
            if matches!(
                f.name.to_string().to_ascii_lowercase().as_str(),
                "count_if" | "countif"
            ) =>
        {
            Some(Expr::Case(
                vec![(predicate(condition), Expr::Literal(Literal::Int64(1)))],
                None,
            ))
        }
        argument => argument,
    };
    let (function, argument) = match (string_order, argument) {
        (Some((ordered, key)), Some(value)) => (
            ordered,
            Some(Expr::Function(
                ScalarFunction::Pair,
                vec![value, scalar(key)?],
            )),
        ),
        (_, argument) => (function, argument),
    };
    let filter = f
        .filter
        .as_ref()
        .map(|e| scalar(e).map(predicate))
        .transpose()?;
    Ok(AggregateCall {
        function,
        argument,
        filter,
        separator,
        text: whole.to_string(),
    })
}

/// Plans a window function call; `scalar` plans its arguments, PARTITION BY and ORDER BY
/// over the rows the output reads.
fn plan_windowed(
    whole: &ast::Expr,
    scalar: &mut dyn FnMut(&ast::Expr) -> Result<Expr>,
) -> Result<AnalyticCall> {
    let span = expr_span(whole);
    let ast::Expr::Function(f) = whole else {
        return Err(QuiverError::Internal(format!(
            "`{whole}` is no window function"
        )));
    };
    let spec = match &f.over {
        Some(ast::WindowType::NamedWindow(name))
        | Some(ast::WindowType::WindowSpec(ast::WindowSpec {
            window_name: Some(name),
            ..
        })) => {
            return Err(QuiverError::InvalidQuery(format!(
                "`{whole}`: window `{name}` is not defined; WINDOW {name} AS (...) after \
                 the FROM, WHERE, GROUP BY and HAVING of the same SELECT defines it"
            )))
        }
        Some(ast::WindowType::WindowSpec(spec)) => spec,
        None => return Err(QuiverError::Internal(format!("`{whole}` has no OVER"))),
    };
    let ignore_nulls = matches!(f.null_treatment, Some(ast::NullTreatment::IgnoreNulls))
        || matches!(&f.args, ast::FunctionArguments::List(list) if list.clauses.iter().any(|c| matches!(c, ast::FunctionArgumentClause::IgnoreOrRespectNulls(ast::NullTreatment::IgnoreNulls))));
    let partition_by = spec
        .partition_by
        .iter()
        .map(&mut *scalar)
        .collect::<Result<Vec<_>>>()?;
    let order_by = spec
        .order_by
        .iter()
        .map(|key| {
            let descending = key.options.asc == Some(false);
            Ok(AnalyticOrder {
                expr: scalar(&key.expr)?,
                descending,
                // As in the query's ORDER BY: PostgreSQL's default.
                nulls_first: key.options.nulls_first.unwrap_or(descending),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let frame = match &spec.window_frame {
        None => Frame::DEFAULT,
        Some(frame) => {
            let units = match frame.units {
                ast::WindowFrameUnits::Rows => FrameUnits::Rows,
                ast::WindowFrameUnits::Range => FrameUnits::Range,
                // Without an ORDER BY every row of a partition is one peer group (DuckDB;
                // PostgreSQL refuses).
                ast::WindowFrameUnits::Groups => FrameUnits::Groups,
            };
            let bound = |b: &ast::WindowFrameBound| -> Result<FrameBound> {
                let offset = |e: &ast::Expr| -> Result<u64> {
                    match e {
                        ast::Expr::Value(v) => match &v.value {
                            ast::Value::Number(n, _) => n.parse::<u64>().ok(),
                            _ => None,
                        },
                        _ => None,
                    }
                    .ok_or_else(|| {
                        unsupported(
                            format!(
                                "frame offset `{e}` in `{whole}`; a non-negative integer \
                                 constant is expected"
                            ),
                            span,
                        )
                    })
                };
                // A RANGE offset is a constant of the order key's kind: a number, or an
                // interval for dates and timestamps.
                let value = |e: &ast::Expr| -> Result<Literal> {
                    match Columns::new(&Schema::empty()).scalar(e).map(Expr::fold) {
                        Ok(Expr::Literal(literal)) => Ok(literal),
                        _ => Err(unsupported(
                            format!(
                                "RANGE offset `{e}` in `{whole}`; a constant number or interval \
                                 is expected"
                            ),
                            span,
                        )),
                    }
                };
                let range = units == FrameUnits::Range;
                Ok(match b {
                    ast::WindowFrameBound::Preceding(Some(e)) if range => {
                        FrameBound::PrecedingValue(value(e)?)
                    }
                    ast::WindowFrameBound::Following(Some(e)) if range => {
                        FrameBound::FollowingValue(value(e)?)
                    }
                    ast::WindowFrameBound::CurrentRow => FrameBound::CurrentRow,
                    ast::WindowFrameBound::Preceding(None) => FrameBound::UnboundedPreceding,
                    ast::WindowFrameBound::Preceding(Some(e)) => FrameBound::Preceding(offset(e)?),
                    ast::WindowFrameBound::Following(None) => FrameBound::UnboundedFollowing,
                    ast::WindowFrameBound::Following(Some(e)) => FrameBound::Following(offset(e)?),
                })
            };
            let start = bound(&frame.start_bound)?;
            let end = match &frame.end_bound {
                Some(end) => bound(end)?,
                None => FrameBound::CurrentRow,
            };
            Frame::try_new(units, start, end).map_err(|e| match e {
                QuiverError::Unsupported(why) => unsupported(format!("{why} in `{whole}`"), span),
                other => other,
            })?
        }
    };
    let name = f.name.to_string().to_ascii_lowercase();
    // FIRST_VALUE / LAST_VALUE are also aggregates (by arrival), which keep NULLs.
    let value_function = matches!(name.as_str(), "first_value" | "last_value");
    let aggregate = aggregate_function(&name).filter(|_| !(ignore_nulls && value_function));
    let (function, arguments, filter) = match aggregate {
        Some(aggregate) => {
            let call = plan_call(f, aggregate, scalar, whole, true)?;
            let function = match (call.function, &call.argument) {
                (AggregateFunction::Count, None) => AggregateFunction::CountStar,
                (function, _) => function,
            };
            (
                AnalyticFunction::Aggregate {
                    function,
                    separator: call.separator,
                },
                call.argument.into_iter().collect(),
                call.filter,
            )
        }
        None => {
            let (function, arity) = match name.as_str() {
                "row_number" => (AnalyticFunction::RowNumber, 0..=0),
                "rank" => (AnalyticFunction::Rank, 0..=0),
                "dense_rank" => (AnalyticFunction::DenseRank, 0..=0),
                "percent_rank" => (AnalyticFunction::PercentRank, 0..=0),
                "cume_dist" => (AnalyticFunction::CumeDist, 0..=0),
                "ntile" => (AnalyticFunction::Ntile, 1..=1),
                "lag" => (AnalyticFunction::Lag, 1..=3),
                "lead" => (AnalyticFunction::Lead, 1..=3),
                "first_value" => (AnalyticFunction::FirstValue, 1..=1),
                "last_value" => (AnalyticFunction::LastValue, 1..=1),
                "nth_value" => (AnalyticFunction::NthValue, 2..=2),
                _ => {
                    return Err(unsupported(
                        format!(
                            "window function `{}`; window functions are ROW_NUMBER, RANK, \
                             DENSE_RANK, PERCENT_RANK, CUME_DIST, NTILE, LAG, LEAD, \
                             FIRST_VALUE, LAST_VALUE, NTH_VALUE and the aggregates",
                            f.name
                        ),
                        span,
                    ))
                }
            };
            let arguments: Vec<&ast::Expr> = match &f.args {
                ast::FunctionArguments::None => Vec::new(),
                ast::FunctionArguments::List(list)
                    if list.duplicate_treatment.is_none()
                        && list.clauses.iter().all(|c| {
                            matches!(c, ast::FunctionArgumentClause::IgnoreOrRespectNulls(_))
                        }) =>
                {
                    list.args
                        .iter()
                        .map(|a| match a {
                            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                            other => Err(unsupported(
                                format!("argument `{other}` of `{whole}`"),
                                span,
                            )),
                        })
                        .collect::<Result<_>>()?
                }
                _ => return Err(unsupported(format!("arguments of `{whole}`"), span)),
            };
            if !arity.contains(&arguments.len()) || f.filter.is_some() || !f.within_group.is_empty()
            {
                return Err(unsupported(
                    format!(
                        "`{whole}`: {} takes {} argument{}{}",
                        name.to_ascii_uppercase(),
                        if arity.start() == arity.end() {
                            arity.start().to_string()
                        } else {
                            format!("{} to {}", arity.start(), arity.end())
                        },
                        if *arity.end() == 1 { "" } else { "s" },
                        if f.filter.is_some() {
                            " and no FILTER"
                        } else {
                            ""
                        }
                    ),
                    span,
                ));
            }
            let arguments = arguments
                .into_iter()
                .map(&mut *scalar)
                .collect::<Result<Vec<_>>>()?;
            (function, arguments, None)
        }
    };
    let takes_null_treatment = matches!(
        function,
        AnalyticFunction::Lag
            | AnalyticFunction::Lead
            | AnalyticFunction::FirstValue
            | AnalyticFunction::LastValue
            | AnalyticFunction::NthValue
    );
    if ignore_nulls && !takes_null_treatment {
        return Err(unsupported(
            format!(
                "IGNORE NULLS in `{whole}`; only LAG, LEAD, FIRST_VALUE, LAST_VALUE and \
                 NTH_VALUE take it"
            ),
            span,
        ));
    }
    Ok(AnalyticCall {
        function,
        arguments,
        filter,
        partition_by,
        order_by,
        frame,
        ignore_nulls,
        text: whole.to_string(),
    })
}

/// Fuzz check: planning arbitrary text against a fixed schema returns `Ok` or an error, never
/// panics (the `sql_parse` fuzz target and `cargo test` call it).
pub fn check_sql_parse(data: &[u8]) {
    use std::sync::Arc;
    let text = String::from_utf8_lossy(data);
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("x", DataType::Float64, true),
        Field::new("d", DataType::Decimal128(10, 2), true),
        Field::new("b", DataType::Boolean, true),
    ]));
    let _ = plan(&text, &[("t".to_string(), schema)]);
}

#[cfg(test)]
mod tests {

    #[test]
    fn columns_read_names_every_mentioned_column_or_refuses_to_guess() {
        let columns: Vec<String> = ["id", "Price", "qty", "ts", "note"]
            .iter()
            .map(|c| c.to_string())
            .collect();
        let read = |sql: &str| columns_read(sql, &columns);
        assert_eq!(
            read("SELECT id, SUM(price * t.qty) FROM t WHERE note LIKE 'a%' GROUP BY id"),
            Some(vec![0, 1, 2, 4])
        );
        assert_eq!(
            read("SELECT COUNT(*) FROM t WINDOW TUMBLING (ts, INTERVAL '1' MINUTE)"),
            Some(vec![3])
        );
        assert_eq!(read("SELECT COUNT(*) FROM t"), Some(vec![]));
        assert_eq!(
            read("SELECT a.id FROM t a JOIN u USING (qty) WHERE EXISTS (SELECT 1 FROM v WHERE v.ts = a.id)"),
            Some(vec![0, 2, 3])
        );
        for unnamed in [
            "SELECT * FROM t",
            "SELECT t.* FROM t",
            "SELECT id FROM (SELECT * FROM t) s",
            "SELECT id FROM t NATURAL JOIN u",
            "SELECT id FROM t UNION SELECT * FROM u",
        ] {
            assert_eq!(read(unnamed), None, "{unnamed}");
        }
        assert_eq!(read("SELEC oops"), None);
    }
    use super::*;
    use std::sync::Arc;

    fn tables() -> Vec<(String, SchemaRef)> {
        vec![(
            "trades".to_string(),
            Arc::new(Schema::new(vec![
                Field::new("symbol", DataType::Utf8, false),
                Field::new("price", DataType::Float64, false),
                Field::new("quantity", DataType::Int64, false),
            ])),
        )]
    }

    /// A table of `Int64` columns with these names.
    fn schema_of(names: &[&str]) -> SchemaRef {
        Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::Int64, true))
                .collect::<Vec<_>>(),
        ))
    }

    #[test]
    fn quoted_and_schema_qualified_table_names_find_the_table() {
        let tables = vec![("my-table".to_string(), schema_of(&["a"]))];
        for sql in [
            "SELECT a FROM \"my-table\"",
            "SELECT t.a FROM \"my-table\" t JOIN \"my-table\" u ON t.a = u.a",
            "WITH \"q\" AS (SELECT a FROM \"my-table\") SELECT a FROM \"q\"",
            "SELECT a FROM main.\"my-table\"",
        ] {
            let planned = plan(sql, &tables);
            assert!(planned.is_ok(), "{sql}: {:?}", planned.err());
            assert_eq!(relation_names(sql).unwrap()[0], "my-table", "{sql}");
        }
    }

    #[test]
    fn comma_joins_take_their_keys_from_where_even_inside_an_or() {
        for sql in [
            "SELECT a.symbol FROM trades a, trades b WHERE a.symbol = b.symbol AND b.price > 1",
            "SELECT a.symbol FROM trades a, trades b WHERE (a.symbol = b.symbol AND a.price > 1) \
             OR (b.quantity < 3 AND a.symbol = b.symbol)",
        ] {
            let planned = plan(sql, &tables()).unwrap();
            let [join] = planned.joins.as_slice() else {
                panic!("{sql}: {} joins", planned.joins.len());
            };
            assert_eq!(join.left_keys, vec![Expr::Column(0)], "{sql}");
            assert_eq!(join.right_keys, vec![Expr::Column(0)], "{sql}");
        }
    }

    #[test]
    fn comma_joins_follow_their_key_equalities_unless_star_fixes_the_order() {
        let tables = vec![
            ("a".to_string(), schema_of(&["ak", "x"])),
            ("b".to_string(), schema_of(&["bk", "y"])),
            ("c".to_string(), schema_of(&["ak2", "bk2"])),
        ];
        // `a, b` share no key: `c` (keyed to `a`) is joined before `b`.
        let planned = plan(
            "SELECT x, y FROM a, b, c WHERE ak = ak2 AND c.bk2 = b.bk",
            &tables,
        )
        .unwrap();
        let joined: Vec<&str> = planned.joins.iter().map(|j| j.table.as_str()).collect();
        assert_eq!(joined, ["c", "b"]);
        assert!(planned.joins.iter().all(|j| !j.left_keys.is_empty()));
        // With `*` the columns come in FROM order, so the written order is kept.
        let planned = plan("SELECT * FROM a, b, c WHERE ak = ak2 AND bk2 = bk", &tables).unwrap();
        let joined: Vec<&str> = planned.joins.iter().map(|j| j.table.as_str()).collect();
        assert_eq!(joined, ["b", "c"]);
        let names: Vec<&str> = planned
            .output_schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["ak", "x", "bk", "y", "ak2", "bk2"]);
    }

    #[test]
    fn plans_a_group_by_with_expressions_in_aggregates() {
        let plan = plan(
            "SELECT Symbol, COUNT(*) AS n, SUM(price * quantity) AS value FROM trades WHERE quantity > 10 GROUP BY symbol ORDER BY value DESC LIMIT 3",
            &tables(),
        )
        .unwrap();
        let PlanKind::Aggregate {
            group_by,
            aggregates,
            ..
        } = &plan.kind
        else {
            panic!("not an aggregate")
        };
        assert_eq!(group_by.len(), 1);
        assert_eq!(aggregates.len(), 2);
        assert_eq!(plan.output_schema.field(2).data_type(), &DataType::Float64);
        assert_eq!(plan.limit, Some(3));
        assert!(plan.order_by[0].descending);
    }

    #[test]
    fn unknown_column_names_it_and_its_position() {
        let error = plan("SELECT symbol,\n  prise FROM trades", &tables())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown column `prise` at line 2, column 3"),
            "{error}"
        );
        assert!(
            error.contains("columns are: symbol, price, quantity"),
            "{error}"
        );
    }

    #[test]
    fn non_grouped_column_is_an_error() {
        let error = plan(
            "SELECT symbol, price, COUNT(*) FROM trades GROUP BY symbol",
            &tables(),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("`price` must appear in GROUP BY"), "{error}");
    }

    #[test]
    fn unsupported_constructs_are_named() {
        for (sql, expected) in [
            (
                "SELECT * FROM trades JOIN other ON true",
                "unknown table `other`",
            ),
            ("SELECT symbol FROM trades SORT BY symbol", "SORT BY"),
            ("SELECT symbol FROM trades FOR UPDATE", "locking clauses"),
            ("SELECT 1 UNION SELECT 1, 2", "same number of columns"),
            ("DELETE FROM trades", "only SELECT"),
            ("SELECT * FROM nowhere", "unknown table `nowhere`"),
            ("SELEC * FROM trades", "syntax error"),
        ] {
            let error = plan(sql, &tables()).unwrap_err().to_string();
            assert!(error.contains(expected), "{sql}: {error}");
        }
    }
}
