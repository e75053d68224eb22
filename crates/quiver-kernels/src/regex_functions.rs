//! Regular-expression functions: `REGEXP_MATCHES`, `REGEXP_FULL_MATCH`, `REGEXP_REPLACE`,
//! `REGEXP_EXTRACT` and the `~` / `~*` / `!~` / `!~*` operators.
//!
//! Patterns are RE2 syntax (the `regex` crate's, as in DuckDB): `.` does not match a newline
//! unless the `s` option is given, and `^` / `$` anchor the whole string. Options are a string
//! of letters: `i` case-insensitive, `c` case-sensitive, `s` dot matches newline, `m` / `n` /
//! `p` it does not, `l` the pattern is literal text, and `g` (only for `REGEXP_REPLACE`)
//! replaces every match instead of the first. A replacement refers to groups as `\1` ... `\9`
//! (`\0` the whole match) and writes a backslash as `\\`. A NULL string or pattern gives NULL;
//! a NULL option string, an unknown option and a pattern that does not compile are errors.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray, StringBuilder};
use regex::{Regex, RegexBuilder};

use quiver_core::{QuiverError, Result};

use crate::functions::{integers, strings};

/// The functions of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegexFunction {
    /// `REGEXP_MATCHES(s, pattern [, options])` and `s ~ pattern`: whether some part of `s`
    /// matches.
    Matches,
    /// `REGEXP_FULL_MATCH(s, pattern [, options])`: whether all of `s` matches.
    FullMatch,
    /// `REGEXP_REPLACE(s, pattern, replacement [, options])`: the first match replaced (every
    /// match with the `g` option).
    Replace,
    /// `REGEXP_EXTRACT(s, pattern [, group [, options]])`: the group (0, the whole match, by
    /// default) of the first match; an empty string when nothing matches or the group took
    /// no part in the match.
    Extract,
}

impl RegexFunction {
    /// The argument counts the function takes.
    pub fn arities(self) -> &'static [usize] {
        match self {
            RegexFunction::Matches | RegexFunction::FullMatch => &[2, 3],
            RegexFunction::Replace => &[3, 4],
            RegexFunction::Extract => &[2, 3, 4],
        }
    }

    /// The SQL name.
    pub fn name(self) -> &'static str {
        match self {
            RegexFunction::Matches => "REGEXP_MATCHES",
            RegexFunction::FullMatch => "REGEXP_FULL_MATCH",
            RegexFunction::Replace => "REGEXP_REPLACE",
            RegexFunction::Extract => "REGEXP_EXTRACT",
        }
    }

    /// Where the options string is among the arguments.
    fn options_index(self) -> usize {
        match self {
            RegexFunction::Matches | RegexFunction::FullMatch => 2,
            RegexFunction::Replace | RegexFunction::Extract => 3,
        }
    }
}

/// How a pattern is compiled and applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
struct Options {
    case_insensitive: bool,
    dot_matches_new_line: bool,
    literal: bool,
    replace_all: bool,
}

fn parse_options(text: &str, function: RegexFunction) -> Result<Options> {
    let mut options = Options::default();
    for letter in text.chars() {
        match letter {
            'i' => options.case_insensitive = true,
            'c' => options.case_insensitive = false,
            's' => options.dot_matches_new_line = true,
            'm' | 'n' | 'p' => options.dot_matches_new_line = false,
            'l' => options.literal = true,
            'g' if function == RegexFunction::Replace => options.replace_all = true,
            'g' => {
                return Err(QuiverError::Unsupported(format!(
                    "{}: option 'g' (replace every match) is only for REGEXP_REPLACE",
                    function.name()
                )))
            }
            other => {
                return Err(QuiverError::Unsupported(format!(
                    "{}: unknown regular-expression option '{other}' (options are i, c, s, m, n, p, l{})",
                    function.name(),
                    if function == RegexFunction::Replace { ", g" } else { "" }
                )))
            }
        }
    }
    Ok(options)
}

/// Compiled patterns kept per thread, so a constant pattern compiles once per query thread
/// rather than once per batch.
const CACHED_PATTERNS: usize = 64;

thread_local! {
    static PATTERNS: RefCell<HashMap<(String, Options), Regex>> = RefCell::new(HashMap::new());
}

/// `pattern` compiled with `options`; a pattern that does not compile is an error naming it.
/// The match-whole-string form wraps the pattern, so `a|b` matches `a` or `b` entirely.
fn compile(pattern: &str, options: Options, whole: bool, function: RegexFunction) -> Result<Regex> {
    let source = if options.literal {
        regex::escape(pattern)
    } else {
        re2_classes(pattern)
    };
    let source = if whole {
        format!(r"\A(?:{source})\z")
    } else {
        source
    };
    let key = (source, options);
    if let Some(found) = PATTERNS.with(|cache| cache.borrow().get(&key).cloned()) {
        return Ok(found);
    }
    let compiled = RegexBuilder::new(&key.0)
        .case_insensitive(options.case_insensitive)
        .dot_matches_new_line(options.dot_matches_new_line)
        .build()
        .map_err(|error| {
            QuiverError::InvalidQuery(format!(
                "{}: invalid regular expression '{pattern}': {}",
                function.name(),
                regex_error_reason(&error.to_string())
            ))
        })?;
    PATTERNS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.len() >= CACHED_PATTERNS {
            cache.clear();
        }
        cache.insert(key, compiled.clone());
    });
    Ok(compiled)
}

/// `pattern` with RE2's meaning where the `regex` crate's differs: `\d \w \s \b` (and their
/// negations) are ASCII in RE2 and Unicode in `regex`; inside brackets RE2 reads `&`, `~`,
/// `--` and `[` (other than `[:name:]`) literally, where `regex` has set operators and nested
/// classes.
fn re2_classes(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 16);
    let chars: Vec<char> = pattern.chars().collect();
    let mut in_class = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            let Some(&next) = chars.get(i + 1) else {
                out.push(c);
                break;
            };
            let replacement = match (next, in_class) {
                ('d', false) => Some("[0-9]"),
                ('D', _) => Some("[^0-9]"),
                ('w', false) => Some("[0-9A-Za-z_]"),
                ('W', _) => Some("[^0-9A-Za-z_]"),
                ('s', false) => Some("[\\t\\n\\x0C\\r ]"),
                ('S', _) => Some("[^\\t\\n\\x0C\\r ]"),
                ('d', true) => Some("0-9"),
                ('w', true) => Some("0-9A-Za-z_"),
                ('s', true) => Some("\\t\\n\\x0C\\r "),
                ('b', false) => Some("(?-u:\\b)"),
                ('B', false) => Some("(?-u:\\B)"),
                _ => None,
            };
            match replacement {
                Some(text) => out.push_str(text),
                None => {
                    out.push(c);
                    out.push(next);
                }
            }
            i += 2;
            continue;
        }
        if !in_class {
            out.push(c);
            if c == '[' {
                in_class = true;
                // A `]` first in the class (after an optional `^`) is a literal.
                if chars.get(i + 1) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i + 1) == Some(&']') {
                    out.push_str("\\]");
                    i += 1;
                }
            }
            i += 1;
            continue;
        }
        match c {
            ']' => {
                in_class = false;
                out.push(c);
            }
            '[' if chars.get(i + 1) == Some(&':') => {
                // `[:alpha:]`: copied through its closing `:]`.
                let end = (i + 2..chars.len().saturating_sub(1))
                    .find(|&j| chars[j] == ':' && chars[j + 1] == ']');
                match end {
                    Some(end) => {
                        out.extend(&chars[i..=end + 1]);
                        i = end + 2;
                        continue;
                    }
                    None => out.push_str("\\["),
                }
            }
            '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            '-' if chars.get(i + 1) == Some(&'-') => out.push_str("\\-"),
            _ => out.push(c),
        }
        i += 1;
    }
    out
}

/// The `regex` crate's errors draw the pattern over several lines; the last line says what
/// is wrong.
fn regex_error_reason(message: &str) -> String {
    message
        .lines()
        .rev()
        .find(|line| line.starts_with("error:"))
        .map_or(message, |line| line.trim_start_matches("error:").trim())
        .to_string()
}

/// One piece of a parsed replacement string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Group(usize),
}

/// Parses `\0`..`\9` group references and `\\`; a group the pattern lacks is an error.
fn parse_replacement(text: &str, groups: usize) -> Result<Vec<Piece>> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            literal.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => literal.push('\\'),
            Some(digit @ '0'..='9') => {
                let group = digit as usize - '0' as usize;
                if group >= groups {
                    return Err(QuiverError::InvalidQuery(format!(
                        "REGEXP_REPLACE: the replacement '{text}' refers to group {group}, but \
                         the pattern has {} parenthesized group(s)",
                        groups - 1
                    )));
                }
                if !literal.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut literal)));
                }
                pieces.push(Piece::Group(group));
            }
            _ => {
                return Err(QuiverError::InvalidQuery(format!(
                    "REGEXP_REPLACE: in the replacement '{text}' a backslash must be followed \
                     by a digit or a backslash"
                )))
            }
        }
    }
    if !literal.is_empty() {
        pieces.push(Piece::Text(literal));
    }
    Ok(pieces)
}

fn replace(subject: &str, regex: &Regex, pieces: &[Piece], all: bool, out: &mut String) {
    let mut last = 0;
    for captures in regex.captures_iter(subject) {
        let Some(whole) = captures.get(0) else {
            continue;
        };
        out.push_str(&subject[last..whole.start()]);
        for piece in pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Group(group) => {
                    if let Some(found) = captures.get(*group) {
                        out.push_str(found.as_str());
                    }
                }
            }
        }
        last = whole.end();
        if !all {
            break;
        }
    }
    out.push_str(&subject[last..]);
}

/// Applies `function` (`negated` for `!~`, `insensitive` for `~*`: the operators' forms) to
/// argument arrays of equal length.
pub fn evaluate(function: RegexFunction, args: &[ArrayRef]) -> Result<ArrayRef> {
    let name = function.name();
    if !function.arities().contains(&args.len()) {
        return Err(QuiverError::InvalidQuery(format!(
            "{name} with {} arguments; it takes {:?}",
            args.len(),
            function.arities()
        )));
    }
    let subjects = strings(&args[0], name)?;
    let patterns = strings(&args[1], name)?;
    let options_texts = args
        .get(function.options_index())
        .map(|a| strings(a, name))
        .transpose()?;
    let rows = subjects.len();
    // The compiled pattern of the previous row, reused while pattern and options repeat.
    let mut current: Option<(usize, Regex, Options)> = None;
    let mut pattern_of = |row: usize| -> Result<Option<(Regex, Options)>> {
        if subjects.is_null(row) || patterns.is_null(row) {
            return Ok(None);
        }
        let options_text = match &options_texts {
            Some(texts) if texts.is_null(row) => {
                return Err(QuiverError::InvalidQuery(format!(
                    "{name}: the options argument is NULL"
                )))
            }
            Some(texts) => texts.value(row),
            None => "",
        };
        if let Some((previous, regex, options)) = &current {
            if same_text(&patterns, *previous, row)
                && options_texts
                    .as_ref()
                    .is_none_or(|texts| same_text(texts, *previous, row))
            {
                return Ok(Some((regex.clone(), *options)));
            }
        }
        let options = parse_options(options_text, function)?;
        let whole = function == RegexFunction::FullMatch;
        let regex = compile(patterns.value(row), options, whole, function)?;
        current = Some((row, regex.clone(), options));
        Ok(Some((regex, options)))
    };
    match function {
        RegexFunction::Matches | RegexFunction::FullMatch => {
            let mut result = Vec::with_capacity(rows);
            for row in 0..rows {
                result.push(pattern_of(row)?.map(|(regex, _)| regex.is_match(subjects.value(row))));
            }
            Ok(Arc::new(BooleanArray::from(result)))
        }
        RegexFunction::Replace => {
            let replacements = strings(&args[2], name)?;
            let mut builder = StringBuilder::with_capacity(rows, 0);
            let mut value = String::new();
            let mut parsed: Option<(usize, usize, Vec<Piece>)> = None;
            for row in 0..rows {
                let Some((regex, options)) = pattern_of(row)? else {
                    builder.append_null();
                    continue;
                };
                if replacements.is_null(row) {
                    builder.append_null();
                    continue;
                }
                let groups = regex.captures_len();
                let reuse = parsed
                    .as_ref()
                    .is_some_and(|(previous, previous_groups, _)| {
                        *previous_groups == groups && same_text(&replacements, *previous, row)
                    });
                if !reuse {
                    let pieces = parse_replacement(replacements.value(row), groups)?;
                    parsed = Some((row, groups, pieces));
                }
                let pieces = parsed.as_ref().map_or(&[][..], |(_, _, p)| p.as_slice());
                value.clear();
                replace(
                    subjects.value(row),
                    &regex,
                    pieces,
                    options.replace_all,
                    &mut value,
                );
                builder.append_value(&value);
            }
            Ok(Arc::new(builder.finish()))
        }
        RegexFunction::Extract => {
            let groups = args.get(2).map(|a| integers(a, name)).transpose()?;
            let mut builder = StringBuilder::with_capacity(rows, 0);
            for row in 0..rows {
                let group = match &groups {
                    Some(groups) if groups.is_null(row) => {
                        builder.append_null();
                        continue;
                    }
                    Some(groups) => usize::try_from(groups.value(row)).map_err(|_| {
                        QuiverError::InvalidQuery(format!(
                            "{name}: group index {} is negative",
                            groups.value(row)
                        ))
                    })?,
                    None => 0,
                };
                let Some((regex, _)) = pattern_of(row)? else {
                    builder.append_null();
                    continue;
                };
                let found = regex
                    .captures(subjects.value(row))
                    .and_then(|captures| captures.get(group))
                    .map_or("", |m| m.as_str());
                builder.append_value(found);
            }
            Ok(Arc::new(builder.finish()))
        }
    }
}

fn same_text(texts: &StringArray, a: usize, b: usize) -> bool {
    texts.is_valid(a) && texts.is_valid(b) && texts.value(a) == texts.value(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};

    fn text(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn constant(value: &str, rows: usize) -> ArrayRef {
        text(&vec![Some(value); rows])
    }

    fn run(function: RegexFunction, args: &[ArrayRef]) -> Result<ArrayRef> {
        evaluate(function, args)
    }

    fn strings_of(array: &ArrayRef) -> Vec<Option<String>> {
        array
            .as_string::<i32>()
            .iter()
            .map(|v| v.map(str::to_string))
            .collect()
    }

    #[test]
    fn matches_find_a_part_and_full_match_the_whole() {
        let subjects = text(&[Some("abc"), Some("xyz"), None, Some("a\nb"), Some("ABC")]);
        let found = run(
            RegexFunction::Matches,
            &[subjects.clone(), constant("b", 5)],
        )
        .unwrap();
        assert_eq!(
            found.as_boolean().iter().collect::<Vec<_>>(),
            vec![Some(true), Some(false), None, Some(true), Some(false)]
        );
        let whole = run(
            RegexFunction::FullMatch,
            &[subjects.clone(), constant("a.c|xyz", 5)],
        )
        .unwrap();
        assert_eq!(
            whole.as_boolean().iter().collect::<Vec<_>>(),
            vec![Some(true), Some(true), None, Some(false), Some(false)]
        );
        // Options: case-insensitive, and a dot over a newline.
        let insensitive = run(
            RegexFunction::FullMatch,
            &[subjects.clone(), constant("a.c", 5), constant("i", 5)],
        )
        .unwrap();
        assert!(insensitive.as_boolean().value(4));
        let dot = run(
            RegexFunction::Matches,
            &[subjects.clone(), constant("a.b", 5), constant("s", 5)],
        )
        .unwrap();
        assert!(dot.as_boolean().value(3));
        let no_dot = run(RegexFunction::Matches, &[subjects, constant("a.b", 5)]).unwrap();
        assert!(!no_dot.as_boolean().value(3));
    }

    #[test]
    fn classes_are_ascii_and_bracket_operators_literal_as_in_re2() {
        let cases = [
            ("ß", "\\w", false),
            ("a", "\\w", true),
            ("٣", "^\\d$", false),
            ("7", "^\\d$", true),
            ("\u{a0}", "\\s", false),
            ("ß", "^\\W$", true),
            ("ab", "[a&&b]", true),
            ("&", "^[a&&b]$", true),
            ("~", "[x~~y]", true),
            ("]", "^[]a]$", true),
            ("b", "^[^]a]$", true),
            ("x", "^[[:alpha:]]$", true),
            ("[", "^[[]$", true),
            ("5", "^[\\d]$", true),
            ("étéx", "\\bx", true),
            ("a x", "\\bx\\b", true),
        ];
        for (subject, pattern, expected) in cases {
            let found = run(
                RegexFunction::Matches,
                &[constant(subject, 1), constant(pattern, 1)],
            )
            .unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert_eq!(
                found.as_boolean().value(0),
                expected,
                "{subject:?} ~ {pattern}"
            );
        }
    }

    #[test]
    fn patterns_may_differ_per_row_and_null_patterns_give_null() {
        let subjects = constant("abc", 4);
        let patterns = text(&[Some("b"), Some("z"), None, Some("^a")]);
        let found = run(RegexFunction::Matches, &[subjects, patterns]).unwrap();
        assert_eq!(
            found.as_boolean().iter().collect::<Vec<_>>(),
            vec![Some(true), Some(false), None, Some(true)]
        );
    }

    #[test]
    fn replace_first_or_every_match_with_group_references() {
        let subjects = text(&[Some("aXbXc"), None, Some("")]);
        let first = run(
            RegexFunction::Replace,
            &[subjects.clone(), constant("X", 3), constant("-", 3)],
        )
        .unwrap();
        assert_eq!(
            strings_of(&first),
            vec![Some("a-bXc".into()), None, Some(String::new())]
        );
        let all = run(
            RegexFunction::Replace,
            &[
                subjects.clone(),
                constant("X", 3),
                constant("-", 3),
                constant("g", 3),
            ],
        )
        .unwrap();
        assert_eq!(strings_of(&all)[0].as_deref(), Some("a-b-c"));
        let groups = run(
            RegexFunction::Replace,
            &[
                constant("k=v", 1),
                constant("(\\w)=(\\w)", 1),
                constant("\\2=\\1 \\\\ \\0 $1", 1),
            ],
        )
        .unwrap();
        assert_eq!(strings_of(&groups)[0].as_deref(), Some("v=k \\ k=v $1"));
        // An empty match replaces between characters, as DuckDB and PostgreSQL do.
        let empty = run(
            RegexFunction::Replace,
            &[
                constant("abc", 1),
                constant("", 1),
                constant("x", 1),
                constant("g", 1),
            ],
        )
        .unwrap();
        assert_eq!(strings_of(&empty)[0].as_deref(), Some("xaxbxcx"));
        let literal = run(
            RegexFunction::Replace,
            &[
                constant("a.c.", 1),
                constant(".", 1),
                constant("x", 1),
                constant("lg", 1),
            ],
        )
        .unwrap();
        assert_eq!(strings_of(&literal)[0].as_deref(), Some("axcx"));
    }

    #[test]
    fn extract_a_group_or_the_empty_string() {
        let subjects = text(&[Some("abc123def456"), Some("abc"), None]);
        let numbers = run(
            RegexFunction::Extract,
            &[subjects.clone(), constant("\\d+", 3)],
        )
        .unwrap();
        assert_eq!(
            strings_of(&numbers),
            vec![Some("123".into()), Some(String::new()), None]
        );
        let second = run(
            RegexFunction::Extract,
            &[
                constant("k=v", 1),
                constant("(\\w)=(\\w)", 1),
                Arc::new(Int64Array::from(vec![2])),
            ],
        )
        .unwrap();
        assert_eq!(strings_of(&second)[0].as_deref(), Some("v"));
        let absent_group = run(
            RegexFunction::Extract,
            &[
                constant("abc", 1),
                constant("b", 1),
                Arc::new(Int64Array::from(vec![3])),
            ],
        )
        .unwrap();
        assert_eq!(strings_of(&absent_group)[0].as_deref(), Some(""));
    }

    #[test]
    fn mistakes_are_errors_that_say_which() {
        let bad_pattern = run(
            RegexFunction::Matches,
            &[constant("a", 1), constant("(", 1)],
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad_pattern.contains("invalid regular expression '('"),
            "{bad_pattern}"
        );
        let bad_option = run(
            RegexFunction::Matches,
            &[constant("a", 1), constant("a", 1), constant("q", 1)],
        )
        .unwrap_err()
        .to_string();
        assert!(
            bad_option.contains("unknown regular-expression option 'q'"),
            "{bad_option}"
        );
        let global = run(
            RegexFunction::Matches,
            &[constant("a", 1), constant("a", 1), constant("g", 1)],
        )
        .unwrap_err()
        .to_string();
        assert!(global.contains("only for REGEXP_REPLACE"), "{global}");
        let null_options = run(
            RegexFunction::Matches,
            &[constant("a", 1), constant("a", 1), text(&[None])],
        )
        .unwrap_err()
        .to_string();
        assert!(
            null_options.contains("options argument is NULL"),
            "{null_options}"
        );
        let missing_group = run(
            RegexFunction::Replace,
            &[constant("abc", 1), constant("(b)", 1), constant("\\2", 1)],
        )
        .unwrap_err()
        .to_string();
        assert!(
            missing_group.contains("refers to group 2"),
            "{missing_group}"
        );
        let bad_escape = run(
            RegexFunction::Replace,
            &[constant("abc", 1), constant("b", 1), constant("\\x", 1)],
        )
        .unwrap_err()
        .to_string();
        assert!(bad_escape.contains("followed by a digit"), "{bad_escape}");
        let negative = run(
            RegexFunction::Extract,
            &[
                constant("abc", 1),
                constant("b", 1),
                Arc::new(Int64Array::from(vec![-1])),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(negative.contains("negative"), "{negative}");
    }
}
