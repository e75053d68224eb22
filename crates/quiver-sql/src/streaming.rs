//! Streaming clauses on top of standard SQL: the window clause in its two spellings and the emit
//! mode.
//!
//! The Velostream spelling puts the window after `GROUP BY` and the emit mode at the end:
//! `... GROUP BY k WINDOW TUMBLING(ts, INTERVAL '1' MINUTE) EMIT CHANGES`, with
//! `WINDOW SLIDING(ts, size, advance)` (also `HOPPING`) and `WINDOW SESSION(ts, gap)`. Neither
//! clause is SQL, so they are taken out of the **token stream** (from `sqlparser`'s tokenizer)
//! before parsing: only the words `WINDOW` and `EMIT` at parenthesis depth 0 and followed by a
//! window kind or `CHANGES`/`FINAL` are clauses. Words inside string literals or quoted
//! identifiers are single tokens of another kind, so they are never mistaken for clauses; token
//! spans are kept, so errors still point at the original text.
//!
//! The Flink / Arroyo spelling is ordinary SQL and is recognised by the planner:
//! `GROUP BY tumble(ts, INTERVAL '1' MINUTE), k`, `hop(ts, slide, size)`, `session(ts, gap)`.
//! For hopping windows the longer interval is the size and the shorter the advance in both
//! spellings (an advance longer than the size is invalid anyway), so `SLIDING(ts, size,
//! advance)` and Flink's `HOP(ts, slide, size)` both read as written.

use arrow::datatypes::DataType;
use quiver_core::{QuiverError, Result};
use quiver_kernels::window::{EmitMode, WindowSpec};
use sqlparser::ast;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};

/// A window clause as written: its kind, arguments and where it starts.
#[derive(Debug, Clone)]
pub struct WindowClause {
    /// `TUMBLING`, `SLIDING`/`HOPPING`/`HOP`, `SESSION` (upper case).
    pub kind: String,
    /// Arguments: the time column, then intervals.
    pub arguments: Vec<ast::Expr>,
    /// Position of the clause in the SQL text.
    pub span: Span,
}

/// Statements with the streaming clauses taken out.
#[derive(Debug, Clone, Default)]
pub struct Parsed {
    /// The SQL statements.
    pub statements: Vec<ast::Statement>,
    /// `WINDOW ...` (Velostream spelling).
    pub window: Option<WindowClause>,
    /// `EMIT CHANGES` / `EMIT FINAL`.
    pub emit: Option<EmitMode>,
}

fn location(span: Span) -> String {
    if span.start.line == 0 {
        String::new()
    } else {
        format!(" at line {}, column {}", span.start.line, span.start.column)
    }
}

fn syntax(message: impl std::fmt::Display) -> QuiverError {
    QuiverError::Unsupported(format!("SQL syntax error: {message}"))
}

fn word_is(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn next_significant(tokens: &[TokenWithSpan], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
}

const WINDOW_KINDS: [&str; 4] = ["TUMBLING", "SLIDING", "HOPPING", "SESSION"];

/// The deepest nesting of brackets a query may have. The parser recurses once per level (for
/// parenthesised FROM items without a depth limit of its own), so unbounded nesting could
/// exhaust the stack; real queries stay far below this.
pub const MAX_NESTING_DEPTH: usize = 32;

/// Refuses SQL whose brackets nest deeper than [`MAX_NESTING_DEPTH`], before it reaches the
/// recursive parser.
fn check_nesting(tokens: &[TokenWithSpan]) -> Result<()> {
    let mut depth = 0_usize;
    for token in tokens {
        match token.token {
            Token::LParen | Token::LBracket | Token::LBrace => {
                depth += 1;
                if depth > MAX_NESTING_DEPTH {
                    return Err(syntax(format!(
                        "brackets nest more than {MAX_NESTING_DEPTH} levels deep{}",
                        location(token.span)
                    )));
                }
            }
            Token::RParen | Token::RBracket | Token::RBrace => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Stack for the parser: it recurses once or more per nesting level, and an unoptimised build
/// takes tens of KiB per level, more than a test thread's 2 MiB at [`MAX_NESTING_DEPTH`].
const PARSER_STACK_BYTES: usize = 16 << 20;

/// Parses `sql`, taking out the Velostream window clause and the emit mode.
pub fn parse(sql: &str) -> Result<Parsed> {
    // A segment of its own (mapped lazily), whatever stack the caller runs on.
    stacker::grow(PARSER_STACK_BYTES, || parse_on_this_stack(sql))
}

fn parse_on_this_stack(sql: &str) -> Result<Parsed> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(syntax)?;
    check_nesting(&tokens)?;
    let mut kept = Vec::with_capacity(tokens.len());
    let mut window = None;
    let mut emit = None;
    let mut depth = 0_i64;
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        match token.token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            _ => {}
        }
        if depth == 0 && word_is(&token.token, "WINDOW") {
            let kind_at = next_significant(&tokens, i + 1);
            let kind = kind_at.and_then(|k| {
                WINDOW_KINDS
                    .iter()
                    .find(|kind| word_is(&tokens[k].token, kind))
                    .map(|kind| (k, *kind))
            });
            if let Some((k, kind)) = kind {
                let open = next_significant(&tokens, k + 1)
                    .filter(|&o| tokens[o].token == Token::LParen)
                    .ok_or_else(|| {
                        syntax(format!(
                            "`(` expected after WINDOW {kind}{}",
                            location(tokens[k].span)
                        ))
                    })?;
                let mut nesting = 0_i64;
                let mut close = None;
                for (j, t) in tokens.iter().enumerate().skip(open) {
                    match t.token {
                        Token::LParen => nesting += 1,
                        Token::RParen => {
                            nesting -= 1;
                            if nesting == 0 {
                                close = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let close = close.ok_or_else(|| {
                    syntax(format!(
                        "unclosed `(` of WINDOW {kind}{}",
                        location(tokens[open].span)
                    ))
                })?;
                if window.is_some() {
                    return Err(syntax(format!(
                        "a second WINDOW clause{}",
                        location(token.span)
                    )));
                }
                let inner = tokens[open + 1..close].to_vec();
                let mut parser = Parser::new(&dialect).with_tokens_with_locations(inner);
                let arguments = parser
                    .parse_comma_separated(Parser::parse_expr)
                    .map_err(|e| syntax(format!("in WINDOW {kind}(...): {e}")))?;
                if parser.peek_token().token != Token::EOF {
                    return Err(syntax(format!(
                        "unexpected `{}` in WINDOW {kind}(...){}",
                        parser.peek_token().token,
                        location(parser.peek_token().span)
                    )));
                }
                window = Some(WindowClause {
                    kind: kind.to_string(),
                    arguments,
                    span: token.span,
                });
                i = close + 1;
                continue;
            }
        }
        if depth == 0 && word_is(&token.token, "EMIT") {
            let mode_at = next_significant(&tokens, i + 1);
            let mode = mode_at.and_then(|m| {
                if word_is(&tokens[m].token, "CHANGES") {
                    Some((m, EmitMode::Changes))
                } else if word_is(&tokens[m].token, "FINAL") {
                    Some((m, EmitMode::Final))
                } else {
                    None
                }
            });
            let Some((m, mode)) = mode else {
                return Err(syntax(format!(
                    "EMIT must be followed by CHANGES or FINAL{}",
                    location(token.span)
                )));
            };
            if emit.is_some() {
                return Err(syntax(format!(
                    "a second EMIT clause{}",
                    location(token.span)
                )));
            }
            emit = Some(mode);
            i = m + 1;
            continue;
        }
        kept.push(token.clone());
        i += 1;
    }
    let mut statements = Parser::new(&dialect)
        .with_tokens_with_locations(kept)
        .parse_statements()
        .map_err(syntax)?;
    for statement in &mut statements {
        let _ = ast::visit_expressions_mut(statement, |e| {
            reassociate_distinct_from(e);
            std::ops::ControlFlow::<()>::Continue(())
        });
    }
    Ok(Parsed {
        statements,
        window,
        emit,
    })
}

/// The parser reads the right side of `a IS [NOT] DISTINCT FROM b AND c` as all of `b AND c`;
/// like any comparison it binds tighter than AND / OR / XOR, so `b` is only the leftmost
/// operand there: `(a IS DISTINCT FROM b) AND c`.
fn reassociate_distinct_from(expr: &mut ast::Expr) {
    let looser = |e: &ast::Expr| {
        matches!(
            e,
            ast::Expr::BinaryOp {
                op: ast::BinaryOperator::And | ast::BinaryOperator::Or | ast::BinaryOperator::Xor,
                ..
            }
        )
    };
    let right = match expr {
        ast::Expr::IsDistinctFrom(_, right) | ast::Expr::IsNotDistinctFrom(_, right) => right,
        _ => return,
    };
    if !looser(right) {
        return;
    }
    fn onto_leftmost(e: ast::Expr, wrap: &mut dyn FnMut(ast::Expr) -> ast::Expr) -> ast::Expr {
        match e {
            ast::Expr::BinaryOp { left, op, right }
                if matches!(
                    op,
                    ast::BinaryOperator::And | ast::BinaryOperator::Or | ast::BinaryOperator::Xor
                ) =>
            {
                ast::Expr::BinaryOp {
                    left: Box::new(onto_leftmost(*left, wrap)),
                    op,
                    right,
                }
            }
            other => wrap(other),
        }
    }
    let taken = std::mem::replace(expr, ast::Expr::Value(ast::Value::Null.into()));
    *expr = match taken {
        ast::Expr::IsDistinctFrom(left, right) => {
            let mut left = Some(left);
            onto_leftmost(*right, &mut |leaf| match left.take() {
                Some(l) => ast::Expr::IsDistinctFrom(l, Box::new(leaf)),
                None => leaf,
            })
        }
        ast::Expr::IsNotDistinctFrom(left, right) => {
            let mut left = Some(left);
            onto_leftmost(*right, &mut |leaf| match left.take() {
                Some(l) => ast::Expr::IsNotDistinctFrom(l, Box::new(leaf)),
                None => leaf,
            })
        }
        other => other,
    };
}

/// Whether a GROUP BY item is a Flink-style window call (`tumble`, `hop`, `session`); returns
/// the kind in Velostream terms.
pub fn group_window_kind(expr: &ast::Expr) -> Option<&'static str> {
    let ast::Expr::Function(f) = expr else {
        return None;
    };
    let name = f.name.to_string();
    match name.to_ascii_lowercase().as_str() {
        "tumble" | "tumbling" => Some("TUMBLING"),
        "hop" | "hopping" | "sliding" => Some("SLIDING"),
        "session" => Some("SESSION"),
        _ => None,
    }
}

/// The arguments of a Flink-style window call.
pub fn call_arguments(expr: &ast::Expr) -> Result<Vec<ast::Expr>> {
    let ast::Expr::Function(f) = expr else {
        return Err(QuiverError::Internal("window call expected".into()));
    };
    let ast::FunctionArguments::List(list) = &f.args else {
        return Err(QuiverError::Unsupported(format!(
            "`{expr}`: arguments expected{}",
            location(sqlparser::ast::Spanned::span(expr))
        )));
    };
    list.args
        .iter()
        .map(|arg| match arg {
            ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e.clone()),
            other => Err(QuiverError::Unsupported(format!(
                "window argument `{other}`{}",
                location(sqlparser::ast::Spanned::span(expr))
            ))),
        })
        .collect()
}

/// Milliseconds of an interval argument: `INTERVAL '1' MINUTE`, `INTERVAL '1 minute'`,
/// `INTERVAL '1.5' SECOND`, or a plain integer (milliseconds).
pub fn interval_ms(expr: &ast::Expr) -> Result<i64> {
    let span = sqlparser::ast::Spanned::span(expr);
    let bad = |why: &str| {
        QuiverError::Unsupported(format!(
            "window length `{expr}`{}: {why}; write e.g. INTERVAL '1' MINUTE",
            location(span)
        ))
    };
    match expr {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::Number(n, _) => n
                .parse::<i64>()
                .map_err(|_| bad("an integer number of milliseconds expected")),
            _ => Err(bad("an interval expected")),
        },
        ast::Expr::Interval(interval) => {
            let text = match interval.value.as_ref() {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    ast::Value::Number(n, _) => n.clone(),
                    _ => return Err(bad("a quoted amount expected")),
                },
                _ => return Err(bad("a quoted amount expected")),
            };
            if interval.last_field.is_some() {
                return Err(bad(
                    "interval ranges (e.g. MINUTE TO SECOND) are not supported",
                ));
            }
            let (amount, unit) = match &interval.leading_field {
                Some(field) => (text.trim().to_string(), field.to_string()),
                None => {
                    let mut parts = text.split_whitespace();
                    let amount = parts.next().unwrap_or("").to_string();
                    let unit = parts
                        .next()
                        .ok_or_else(|| bad("a unit expected"))?
                        .to_string();
                    if parts.next().is_some() {
                        return Err(bad("one amount and one unit expected"));
                    }
                    (amount, unit)
                }
            };
            let unit_ms: i128 = match unit.to_ascii_lowercase().as_str() {
                "ms" | "millisecond" | "milliseconds" => 1,
                "s" | "sec" | "secs" | "second" | "seconds" => 1_000,
                "min" | "mins" | "minute" | "minutes" => 60_000,
                "h" | "hour" | "hours" => 3_600_000,
                "day" | "days" => 86_400_000,
                "week" | "weeks" => 7 * 86_400_000,
                _ => return Err(bad(&format!("unit {unit} is not supported"))),
            };
            if amount.starts_with(['-', '+']) {
                return Err(bad("a non-negative decimal amount expected"));
            }
            let total = exact_amount(&amount, unit_ms).map_err(bad)?;
            i64::try_from(total).map_err(|_| bad("amount too large"))
        }
        _ => Err(bad("an interval expected")),
    }
}

/// `amount` (a decimal with an optional sign and up to 9 fraction digits, as written in an
/// interval) times `unit`, exactly; an error names what is wrong (not a number, too large, a
/// fraction of the unit's smallest step).
pub fn exact_amount(amount: &str, unit: i128) -> std::result::Result<i128, &'static str> {
    let (negative, digits) = match amount.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, amount.strip_prefix('+').unwrap_or(amount)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || fraction.len() > 9
    {
        return Err("a decimal amount expected");
    }
    let parse = |s: &str| -> std::result::Result<i128, &'static str> {
        if s.is_empty() {
            Ok(0)
        } else {
            s.parse().map_err(|_| "amount too large")
        }
    };
    let scale = 10_i128.pow(fraction.len() as u32);
    let total = parse(whole)?
        .checked_mul(scale)
        .and_then(|w| w.checked_add(parse(fraction).ok()?))
        .and_then(|exact| exact.checked_mul(unit))
        .ok_or("amount too large")?;
    if total % scale != 0 {
        return Err("not a whole number of the smallest unit");
    }
    Ok(if negative {
        -total / scale
    } else {
        total / scale
    })
}

/// The window of a clause, given the kind and arguments after the time column.
pub fn window_spec(kind: &str, lengths: &[ast::Expr], span: Span) -> Result<WindowSpec> {
    let lengths_ms = lengths
        .iter()
        .map(interval_ms)
        .collect::<Result<Vec<_>>>()?;
    let wrong = |expected: &str| {
        QuiverError::Unsupported(format!(
            "{kind} window with {} lengths{}; expected {expected}",
            lengths_ms.len(),
            location(span)
        ))
    };
    let spec = match (kind, lengths_ms.as_slice()) {
        ("TUMBLING", [size]) => WindowSpec::Tumbling {
            size_ms: *size,
            offset_ms: 0,
        },
        ("TUMBLING", _) => return Err(wrong("(time, size)")),
        ("SLIDING" | "HOPPING", [a, b]) => WindowSpec::Hopping {
            size_ms: *a.max(b),
            advance_ms: *a.min(b),
            offset_ms: 0,
        },
        ("SLIDING" | "HOPPING", _) => return Err(wrong("(time, size, advance)")),
        ("SESSION", [gap]) => WindowSpec::Session { gap_ms: *gap },
        ("SESSION", _) => return Err(wrong("(time, gap)")),
        _ => return Err(wrong("a window kind")),
    };
    spec.validate().map_err(|e| {
        QuiverError::Unsupported(format!("{}{}", e.to_string().trim(), location(span)))
    })?;
    Ok(spec)
}

/// The type of `window_start` / `window_end` for an event-time column type.
pub fn window_bound_type(time_type: &DataType) -> DataType {
    match time_type {
        DataType::Timestamp(_, zone) => {
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, zone.clone())
        }
        DataType::Date32 | DataType::Date64 => {
            DataType::Timestamp(arrow::datatypes::TimeUnit::Millisecond, None)
        }
        _ => DataType::Int64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_a_clear_error_not_a_stack_overflow() {
        let nested_from =
            |depth: usize| format!("SELECT * FROM {}t{}", "(".repeat(depth), ")".repeat(depth));
        let nested_expression =
            |depth: usize| format!("SELECT {}1{} FROM t", "(".repeat(depth), ")".repeat(depth));
        let nested_subquery = |depth: usize| {
            format!(
                "{}SELECT * FROM t{}",
                "SELECT * FROM (".repeat(depth),
                ")".repeat(depth)
            )
        };
        for sql in [
            nested_from(MAX_NESTING_DEPTH),
            nested_expression(MAX_NESTING_DEPTH),
            nested_subquery(MAX_NESTING_DEPTH),
            // Found by the sql_parse fuzz target: overflowed a 2 MiB stack in a debug build.
            "SELECT * FROM   (((((((((((SELECT * FROM   (((((((((     L FROM   ((((((((((||/|"
                .to_string(),
        ] {
            // Parsed (or refused by the parser) within the depth, in a debug test thread's stack.
            let _ = parse(&sql);
        }
        for sql in [
            nested_from(MAX_NESTING_DEPTH + 1),
            nested_expression(MAX_NESTING_DEPTH + 1),
            nested_from(100_000),
        ] {
            let error = parse(&sql).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("nest more than 32 levels"), "{error}");
        }
    }

    #[test]
    fn velostream_clauses_come_out_of_the_token_stream() {
        let parsed = parse(
            "SELECT k, COUNT(*) FROM t WHERE s <> 'WINDOW TUMBLING(x)' GROUP BY k \
             WINDOW TUMBLING(ts, INTERVAL '1' MINUTE) EMIT CHANGES",
        )
        .unwrap();
        assert_eq!(parsed.statements.len(), 1);
        let window = parsed.window.unwrap();
        assert_eq!(window.kind, "TUMBLING");
        assert_eq!(window.arguments.len(), 2);
        assert_eq!(parsed.emit, Some(EmitMode::Changes));
        // The string literal stays in the query.
        assert!(parsed.statements[0]
            .to_string()
            .contains("'WINDOW TUMBLING(x)'"));
    }

    #[test]
    fn no_clauses_means_plain_sql() {
        let parsed = parse("SELECT \"window\" FROM t").unwrap();
        assert!(parsed.window.is_none() && parsed.emit.is_none());
        assert!(parse("SELECT a FROM t EMIT SOON").is_err());
        assert!(parse("SELECT a FROM t GROUP BY a WINDOW TUMBLING ts").is_err());
        assert!(
            parse("SELECT a FROM t GROUP BY a WINDOW TUMBLING(ts, INTERVAL '1' MINUTE").is_err()
        );
    }

    #[test]
    fn intervals_are_exact_milliseconds() {
        let ms = |text: &str| {
            let expr = Parser::new(&GenericDialect {})
                .try_with_sql(text)
                .unwrap()
                .parse_expr()
                .unwrap();
            interval_ms(&expr)
        };
        assert_eq!(ms("INTERVAL '1' MINUTE").unwrap(), 60_000);
        assert_eq!(ms("INTERVAL '30' SECOND").unwrap(), 30_000);
        assert_eq!(ms("INTERVAL '1.5' SECOND").unwrap(), 1_500);
        assert_eq!(ms("INTERVAL '2 hours'").unwrap(), 7_200_000);
        assert_eq!(ms("INTERVAL '250' MILLISECOND").unwrap(), 250);
        assert_eq!(ms("500").unwrap(), 500);
        assert!(ms("INTERVAL '0.0001' SECOND").is_err());
        assert!(ms("INTERVAL 'x' SECOND").is_err());
        assert!(ms("'1 minute'").is_err());
    }

    #[test]
    fn hopping_reads_either_argument_order() {
        let span = Span::empty();
        let args = |a: &str, b: &str| {
            [a, b]
                .iter()
                .map(|t| {
                    Parser::new(&GenericDialect {})
                        .try_with_sql(t)
                        .unwrap()
                        .parse_expr()
                        .unwrap()
                })
                .collect::<Vec<_>>()
        };
        let expected = WindowSpec::Hopping {
            size_ms: 300_000,
            advance_ms: 60_000,
            offset_ms: 0,
        };
        let size_first = args("INTERVAL '5' MINUTE", "INTERVAL '1' MINUTE");
        let slide_first = args("INTERVAL '1' MINUTE", "INTERVAL '5' MINUTE");
        assert_eq!(window_spec("SLIDING", &size_first, span).unwrap(), expected);
        assert_eq!(
            window_spec("SLIDING", &slide_first, span).unwrap(),
            expected
        );
    }
}
