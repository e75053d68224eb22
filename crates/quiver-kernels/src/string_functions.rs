//! String scalar functions beyond the basic set: `REPLACE`, `POSITION`/`STRPOS`, `LEFT`,
//! `RIGHT`, `REVERSE`, `LPAD`/`RPAD`, `REPEAT`, `SPLIT_PART`, `STARTS_WITH`, `ENDS_WITH`,
//! `CONTAINS`, `TRANSLATE`, `INITCAP`, `ASCII`, `CHR`, `MD5`, `SHA256`.
//!
//! Positions and lengths count characters, as in PostgreSQL, whose semantics these follow at
//! the edges: negative `LEFT`/`RIGHT` lengths drop characters from the other end, padding
//! truncates a longer string to the requested length, `SPLIT_PART` counts fields from the end
//! for a negative index, and a NULL argument gives NULL. A result past Arrow's 2 GiB per-array
//! limit is an error rather than a panic.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Int64Array, StringArray, StringBuilder};
use md5::Md5;
use quiver_core::{QuiverError, Result};
use sha2::{Digest, Sha256};

use crate::functions::{integers, strings};

/// Which end padding goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadSide {
    /// `LPAD`.
    Left,
    /// `RPAD`.
    Right,
}

/// String functions of this module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StringFunction {
    /// `REPLACE(s, from, to)`: every occurrence of `from` (an empty `from` changes nothing).
    Replace,
    /// `POSITION(sub IN s)` / `STRPOS(s, sub)`: 1-based character position, 0 when absent.
    Position,
    /// `LEFT(s, n)`: the first `n` characters (all but the last `-n` when negative).
    Left,
    /// `RIGHT(s, n)`: the last `n` characters (all but the first `-n` when negative).
    Right,
    /// `REVERSE(s)`, by characters.
    Reverse,
    /// `LPAD(s, n [, fill])` / `RPAD(...)`: pads with `fill` (a space by default) to `n`
    /// characters, or truncates to `n`.
    Pad(PadSide),
    /// `REPEAT(s, n)`.
    Repeat,
    /// `SPLIT_PART(s, delimiter, n)`: the `n`-th field (1-based; negative from the end).
    SplitPart,
    /// `STARTS_WITH(s, prefix)`.
    StartsWith,
    /// `ENDS_WITH(s, suffix)`.
    EndsWith,
    /// `CONTAINS(s, sub)`.
    Contains,
    /// `OCTET_LENGTH(s)` / `STRLEN(s)`: bytes of UTF-8.
    OctetLength,
    /// `ASCII(s)`: the code point of the first character (0 for an empty string).
    Ascii,
    /// `CHR(n)`: the character with code point `n`.
    Chr,
    /// `INITCAP(s)`: each word's first letter upper case, the others lower case (words are
    /// runs of letters and digits).
    Initcap,
    /// `TRANSLATE(s, from, to)`: each character of `from` becomes the character at the same
    /// position of `to`, or is removed when `to` is shorter (the first occurrence in `from`
    /// counts).
    Translate,
    /// `MD5(s)`: the MD5 digest of the string's UTF-8 bytes, 32 lower-case hex digits.
    Md5,
    /// `SHA256(s)`: the SHA-256 digest of the string's UTF-8 bytes, 64 lower-case hex digits.
    Sha256,
}

impl StringFunction {
    /// The argument counts the function takes.
    pub fn arities(self) -> &'static [usize] {
        match self {
            StringFunction::Reverse
            | StringFunction::OctetLength
            | StringFunction::Ascii
            | StringFunction::Chr
            | StringFunction::Initcap
            | StringFunction::Md5
            | StringFunction::Sha256 => &[1],
            StringFunction::Replace | StringFunction::SplitPart | StringFunction::Translate => &[3],
            StringFunction::Pad(_) => &[2, 3],
            _ => &[2],
        }
    }

    fn name(self) -> &'static str {
        match self {
            StringFunction::Replace => "REPLACE",
            StringFunction::Position => "POSITION",
            StringFunction::Left => "LEFT",
            StringFunction::Right => "RIGHT",
            StringFunction::Reverse => "REVERSE",
            StringFunction::Pad(PadSide::Left) => "LPAD",
            StringFunction::Pad(PadSide::Right) => "RPAD",
            StringFunction::Repeat => "REPEAT",
            StringFunction::SplitPart => "SPLIT_PART",
            StringFunction::StartsWith => "STARTS_WITH",
            StringFunction::EndsWith => "ENDS_WITH",
            StringFunction::Contains => "CONTAINS",
            StringFunction::OctetLength => "OCTET_LENGTH",
            StringFunction::Ascii => "ASCII",
            StringFunction::Chr => "CHR",
            StringFunction::Initcap => "INITCAP",
            StringFunction::Translate => "TRANSLATE",
            StringFunction::Md5 => "MD5",
            StringFunction::Sha256 => "SHA256",
        }
    }
}

/// A word's first character in title case, as Python's `str.title` writes it: the four Latin
/// digraphs have title forms of their own (`ǆ` → `ǅ`), and a character whose upper case is
/// several (`ﬁ` → `FI`, `ß` → `SS`) keeps the first upper and the rest lower (`Fi`, `Ss`).
fn push_title_case(c: char, out: &mut String) {
    let digraph = match c {
        'Ǆ' | 'ǅ' | 'ǆ' => Some('ǅ'),
        'Ǉ' | 'ǈ' | 'ǉ' => Some('ǈ'),
        'Ǌ' | 'ǋ' | 'ǌ' => Some('ǋ'),
        'Ǳ' | 'ǲ' | 'ǳ' => Some('ǲ'),
        _ => None,
    };
    if let Some(title) = digraph {
        out.push(title);
        return;
    }
    let mut upper = c.to_uppercase();
    out.extend(upper.next());
    for rest in upper {
        out.extend(rest.to_lowercase());
    }
}

/// Appends a digest as lower-case hex digits.
fn write_hex(out: &mut String, digest: &impl std::fmt::LowerHex) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = write!(out, "{digest:x}");
}

/// Arrow's `Utf8` arrays address their bytes with `i32` offsets.
const MAX_ARRAY_BYTES: usize = i32::MAX as usize;

/// The longest string one function call may build: 1 GiB, PostgreSQL's limit on a value
/// (a constant argument is folded into one value that is then repeated on every row).
const MAX_VALUE_BYTES: usize = 1 << 30;

/// Builds a string column row by row; `row` writes the value into the buffer and returns
/// `Ok(false)` for NULL.
fn build_strings(
    rows: usize,
    name: &str,
    mut row: impl FnMut(usize, &mut String) -> Result<bool>,
) -> Result<ArrayRef> {
    let mut builder = StringBuilder::with_capacity(rows, 0);
    let mut value = String::new();
    let mut bytes = 0_usize;
    for index in 0..rows {
        value.clear();
        if row(index, &mut value)? {
            bytes += value.len();
            if bytes > MAX_ARRAY_BYTES {
                return Err(too_large(name));
            }
            builder.append_value(&value);
        } else {
            builder.append_null();
        }
    }
    Ok(Arc::new(builder.finish()))
}

fn too_large(name: &str) -> QuiverError {
    QuiverError::ResourceExhausted(format!(
        "{name} result exceeds {MAX_ARRAY_BYTES} bytes in one batch"
    ))
}

fn value_too_large(name: &str) -> QuiverError {
    QuiverError::ResourceExhausted(format!(
        "{name} result exceeds {MAX_VALUE_BYTES} bytes, the limit of one value"
    ))
}

/// The first `count` characters of `s` (all of it when shorter).
fn prefix_chars(s: &str, count: usize) -> &str {
    match s.char_indices().nth(count) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// `s` without its first `count` characters.
fn skip_chars(s: &str, count: usize) -> &str {
    match s.char_indices().nth(count) {
        Some((start, _)) => &s[start..],
        None => "",
    }
}

fn char_count(value: i64) -> usize {
    usize::try_from(value.unsigned_abs()).unwrap_or(usize::MAX)
}

/// Applies `function` to argument arrays of equal length.
pub fn evaluate(function: StringFunction, args: &[ArrayRef]) -> Result<ArrayRef> {
    let name = function.name();
    if !function.arities().contains(&args.len()) {
        return Err(QuiverError::Unsupported(format!(
            "{name} with {} arguments; it takes {:?}",
            args.len(),
            function.arities()
        )));
    }
    if function == StringFunction::Chr {
        let codes = integers(&args[0], name)?;
        return build_strings(codes.len(), name, |row, out| {
            if codes.is_null(row) {
                return Ok(false);
            }
            let code = codes.value(row);
            match u32::try_from(code).ok().and_then(char::from_u32) {
                Some(c) if c != '\0' => {
                    out.push(c);
                    Ok(true)
                }
                _ => Err(QuiverError::Unsupported(format!(
                    "CHR({code}): not the code point of a character"
                ))),
            }
        });
    }
    let text = strings(&args[0], name)?;
    let rows = text.len();
    let valid = |arrays: &[&dyn Array], row: usize| arrays.iter().all(|a| a.is_valid(row));
    match function {
        StringFunction::Replace => {
            let from = strings(&args[1], name)?;
            let to = strings(&args[2], name)?;
            build_strings(rows, name, |row, out| {
                if !valid(&[&text, &from, &to], row) {
                    return Ok(false);
                }
                let (s, f, t) = (text.value(row), from.value(row), to.value(row));
                if f.is_empty() {
                    out.push_str(s);
                } else {
                    let matches = s.matches(f).count();
                    if s.len() - matches * f.len() + matches * t.len() > MAX_VALUE_BYTES {
                        return Err(value_too_large(name));
                    }
                    out.push_str(&s.replace(f, t));
                }
                Ok(true)
            })
        }
        StringFunction::Translate => {
            let from = strings(&args[1], name)?;
            let to = strings(&args[2], name)?;
            build_strings(rows, name, |row, out| {
                if !valid(&[&text, &from, &to], row) {
                    return Ok(false);
                }
                let (f, t) = (from.value(row), to.value(row));
                for c in text.value(row).chars() {
                    match f.chars().position(|x| x == c) {
                        Some(index) => out.extend(t.chars().nth(index)),
                        None => out.push(c),
                    }
                }
                Ok(true)
            })
        }
        StringFunction::Position => {
            let needle = strings(&args[1], name)?;
            let positions: Int64Array = (0..rows)
                .map(|row| {
                    valid(&[&text, &needle], row).then(|| {
                        let s = text.value(row);
                        s.find(needle.value(row))
                            .map_or(0, |byte| s[..byte].chars().count() as i64 + 1)
                    })
                })
                .collect();
            Ok(Arc::new(positions))
        }
        StringFunction::Left | StringFunction::Right => {
            let counts = integers(&args[1], name)?;
            build_strings(rows, name, |row, out| {
                if !valid(&[&text, &counts], row) {
                    return Ok(false);
                }
                let s = text.value(row);
                let n = counts.value(row);
                let total = s.chars().count();
                // How many characters to keep from the chosen end.
                let keep = if n >= 0 {
                    char_count(n).min(total)
                } else {
                    total.saturating_sub(char_count(n))
                };
                out.push_str(if function == StringFunction::Left {
                    prefix_chars(s, keep)
                } else {
                    skip_chars(s, total - keep)
                });
                Ok(true)
            })
        }
        StringFunction::Md5 => build_strings(rows, name, |row, out| {
            if text.is_null(row) {
                return Ok(false);
            }
            write_hex(out, &Md5::digest(text.value(row)));
            Ok(true)
        }),
        StringFunction::Sha256 => build_strings(rows, name, |row, out| {
            if text.is_null(row) {
                return Ok(false);
            }
            write_hex(out, &Sha256::digest(text.value(row)));
            Ok(true)
        }),
        StringFunction::Reverse => build_strings(rows, name, |row, out| {
            if text.is_null(row) {
                return Ok(false);
            }
            out.extend(text.value(row).chars().rev());
            Ok(true)
        }),
        StringFunction::Pad(side) => {
            let lengths = integers(&args[1], name)?;
            let fills = args.get(2).map(|a| strings(a, name)).transpose()?;
            let space = StringArray::from(vec![" "; 1]);
            build_strings(rows, name, |row, out| {
                let (fill_array, fill_row) = match &fills {
                    Some(f) => (f, row),
                    None => (&space, 0),
                };
                if !valid(&[&text, &lengths], row) || fill_array.is_null(fill_row) {
                    return Ok(false);
                }
                let s = text.value(row);
                let fill = fill_array.value(fill_row);
                let target = lengths.value(row).max(0);
                let target = usize::try_from(target).unwrap_or(usize::MAX);
                let length = s.chars().count();
                if length >= target || fill.is_empty() {
                    out.push_str(prefix_chars(s, target));
                    return Ok(true);
                }
                let missing = target - length;
                let max_char_bytes = fill.chars().map(char::len_utf8).max().unwrap_or(1);
                if missing.saturating_mul(max_char_bytes) > MAX_VALUE_BYTES {
                    return Err(value_too_large(name));
                }
                let padding = fill.chars().cycle().take(missing);
                if side == PadSide::Left {
                    out.extend(padding);
                    out.push_str(s);
                } else {
                    out.push_str(s);
                    out.extend(padding);
                }
                Ok(true)
            })
        }
        StringFunction::Repeat => {
            let counts = integers(&args[1], name)?;
            build_strings(rows, name, |row, out| {
                if !valid(&[&text, &counts], row) {
                    return Ok(false);
                }
                let s = text.value(row);
                let times = usize::try_from(counts.value(row).max(0)).unwrap_or(usize::MAX);
                if s.len().saturating_mul(times) > MAX_VALUE_BYTES {
                    return Err(value_too_large(name));
                }
                // An empty string repeats to itself at once, however large the count.
                if !s.is_empty() {
                    out.push_str(&s.repeat(times));
                }
                Ok(true)
            })
        }
        StringFunction::SplitPart => {
            let delimiters = strings(&args[1], name)?;
            let indices = integers(&args[2], name)?;
            build_strings(rows, name, |row, out| {
                if !valid(&[&text, &delimiters, &indices], row) {
                    return Ok(false);
                }
                let (s, delimiter, index) =
                    (text.value(row), delimiters.value(row), indices.value(row));
                if index == 0 {
                    return Err(QuiverError::Unsupported(
                        "SPLIT_PART field position 0; fields count from 1 (from the end when \
                         negative)"
                            .into(),
                    ));
                }
                // An empty delimiter leaves the whole string as the only field.
                let field = if delimiter.is_empty() {
                    (index.unsigned_abs() == 1).then_some(s)
                } else if index > 0 {
                    s.split(delimiter).nth(char_count(index) - 1)
                } else {
                    s.rsplit(delimiter).nth(char_count(index) - 1)
                };
                out.push_str(field.unwrap_or(""));
                Ok(true)
            })
        }
        StringFunction::StartsWith | StringFunction::EndsWith | StringFunction::Contains => {
            let other = strings(&args[1], name)?;
            let result: BooleanArray = (0..rows)
                .map(|row| {
                    valid(&[&text, &other], row).then(|| {
                        let (s, o) = (text.value(row), other.value(row));
                        match function {
                            StringFunction::StartsWith => s.starts_with(o),
                            StringFunction::EndsWith => s.ends_with(o),
                            _ => s.contains(o),
                        }
                    })
                })
                .collect();
            Ok(Arc::new(result))
        }
        StringFunction::OctetLength | StringFunction::Ascii => {
            let result: Int64Array = text
                .iter()
                .map(|v| {
                    v.map(|s| match function {
                        StringFunction::OctetLength => s.len() as i64,
                        _ => s.chars().next().map_or(0, |c| i64::from(u32::from(c))),
                    })
                })
                .collect();
            Ok(Arc::new(result))
        }
        StringFunction::Initcap => build_strings(rows, name, |row, out| {
            if text.is_null(row) {
                return Ok(false);
            }
            let mut in_word = false;
            for c in text.value(row).chars() {
                if in_word {
                    out.extend(c.to_lowercase());
                } else {
                    push_title_case(c, out);
                }
                in_word = c.is_alphanumeric();
            }
            Ok(true)
        }),
        StringFunction::Chr => Err(QuiverError::Internal("CHR reached the string path".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;

    fn text(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn ints(values: &[Option<i64>]) -> ArrayRef {
        Arc::new(Int64Array::from(values.to_vec()))
    }

    fn run(function: StringFunction, args: &[ArrayRef]) -> Vec<Option<String>> {
        let out = evaluate(function, args).unwrap();
        out.as_string::<i32>()
            .iter()
            .map(|v| v.map(String::from))
            .collect()
    }

    fn owned(values: &[Option<&str>]) -> Vec<Option<String>> {
        values.iter().map(|v| v.map(String::from)).collect()
    }

    #[test]
    fn digests_are_lower_case_hex_of_the_utf8_bytes() {
        let s = text(&[Some("abc"), Some(""), None, Some("héllo")]);
        assert_eq!(
            run(StringFunction::Md5, std::slice::from_ref(&s)),
            owned(&[
                Some("900150983cd24fb0d6963f7d28e17f72"),
                Some("d41d8cd98f00b204e9800998ecf8427e"),
                None,
                Some("be50e8478cf24ff3595bc7307fb91b50"),
            ])
        );
        assert_eq!(
            run(StringFunction::Sha256, &[s]),
            owned(&[
                Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
                Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
                None,
                Some("3c48591d8d098a4538f5e013dfcf406e948eac4d3277b10bf614e295d6068179"),
            ])
        );
    }

    #[test]
    fn left_right_and_reverse_count_characters() {
        let s = text(&[
            Some("héllo"),
            Some("héllo"),
            Some("héllo"),
            None,
            Some("ab"),
        ]);
        let n = ints(&[Some(2), Some(-1), Some(9), Some(1), None]);
        assert_eq!(
            run(StringFunction::Left, &[s.clone(), n.clone()]),
            owned(&[Some("hé"), Some("héll"), Some("héllo"), None, None])
        );
        assert_eq!(
            run(StringFunction::Right, &[s.clone(), n]),
            owned(&[Some("lo"), Some("éllo"), Some("héllo"), None, None])
        );
        assert_eq!(
            run(StringFunction::Reverse, &[s]),
            owned(&[
                Some("olléh"),
                Some("olléh"),
                Some("olléh"),
                None,
                Some("ba")
            ])
        );
    }

    #[test]
    fn initcap_title_cases_each_word() {
        let s = text(&[Some("ﬁne ǆungla straße"), Some("hELLO wORLD-x1y"), None]);
        assert_eq!(
            run(StringFunction::Initcap, &[s]),
            owned(&[Some("Fine ǅungla Straße"), Some("Hello World-X1y"), None])
        );
    }

    #[test]
    fn translate_maps_removes_and_keeps_characters() {
        let s = text(&[Some("hello wörld"), Some("abcab"), None, Some("xyz")]);
        let from = text(&[Some("lö"), Some("aba"), Some("a"), Some("")]);
        let to = text(&[Some("Lo"), Some("x"), Some("b"), Some("q")]);
        assert_eq!(
            run(StringFunction::Translate, &[s, from, to]),
            owned(&[Some("heLLo worLd"), Some("xcx"), None, Some("xyz")])
        );
    }

    #[test]
    fn padding_follows_postgresql() {
        let s = text(&[
            Some("ab"),
            Some("abcdef"),
            Some("ab"),
            Some("ab"),
            Some("é"),
        ]);
        let n = ints(&[Some(5), Some(3), Some(-1), Some(4), Some(3)]);
        let fill = text(&[Some("xy"), Some("x"), Some("x"), Some(""), Some("ü")]);
        assert_eq!(
            run(
                StringFunction::Pad(PadSide::Left),
                &[s.clone(), n.clone(), fill.clone()]
            ),
            owned(&[
                Some("xyxab"),
                Some("abc"),
                Some(""),
                Some("ab"),
                Some("üüé")
            ])
        );
        assert_eq!(
            run(
                StringFunction::Pad(PadSide::Right),
                &[s.clone(), n.clone(), fill]
            ),
            owned(&[
                Some("abxyx"),
                Some("abc"),
                Some(""),
                Some("ab"),
                Some("éüü")
            ])
        );
        assert_eq!(
            run(StringFunction::Pad(PadSide::Right), &[s, n]),
            owned(&[
                Some("ab   "),
                Some("abc"),
                Some(""),
                Some("ab  "),
                Some("é  ")
            ])
        );
    }

    #[test]
    fn replace_position_split_and_repeat() {
        let s = text(&[Some("a,b,,c"), Some("héllo"), None, Some("")]);
        assert_eq!(
            run(
                StringFunction::Replace,
                &[
                    s.clone(),
                    text(&[Some(","), Some(""), Some("x"), Some("")]),
                    text(&[Some("; "), Some("z"), Some("y"), Some("q")])
                ]
            ),
            owned(&[Some("a; b; ; c"), Some("héllo"), None, Some("")])
        );
        let positions = evaluate(
            StringFunction::Position,
            &[
                s.clone(),
                text(&[Some(",c"), Some("l"), Some("a"), Some("")]),
            ],
        )
        .unwrap();
        assert_eq!(
            positions
                .as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .collect::<Vec<_>>(),
            [Some(5), Some(3), None, Some(1)]
        );
        let comma = text(&[Some(","), Some("l"), Some(","), Some(",")]);
        assert_eq!(
            run(
                StringFunction::SplitPart,
                &[
                    s.clone(),
                    comma.clone(),
                    ints(&[Some(4), Some(-1), Some(1), Some(2)])
                ]
            ),
            owned(&[Some("c"), Some("o"), None, Some("")])
        );
        assert_eq!(
            run(
                StringFunction::SplitPart,
                &[
                    s.clone(),
                    comma.clone(),
                    ints(&[Some(3), Some(9), Some(1), Some(1)])
                ]
            ),
            owned(&[Some(""), Some(""), None, Some("")])
        );
        let zero = evaluate(
            StringFunction::SplitPart,
            &[s.clone(), comma, ints(&[Some(0); 4])],
        );
        assert!(zero.unwrap_err().to_string().contains("position 0"));
        assert_eq!(
            run(
                StringFunction::Repeat,
                &[s.clone(), ints(&[Some(2), Some(0), Some(3), Some(-2)])]
            ),
            owned(&[Some("a,b,,ca,b,,c"), Some(""), None, Some("")])
        );
        let huge = evaluate(StringFunction::Repeat, &[s, ints(&[Some(i64::MAX); 4])]);
        assert!(huge.unwrap_err().to_string().contains("limit of one value"));
    }

    #[test]
    fn predicates() {
        let s = text(&[Some("quiver"), Some("quiver"), None]);
        let other = text(&[Some("qui"), Some("ver"), Some("x")]);
        let get = |f| {
            evaluate(f, &[s.clone(), other.clone()])
                .unwrap()
                .as_boolean()
                .iter()
                .collect::<Vec<_>>()
        };
        assert_eq!(
            get(StringFunction::StartsWith),
            [Some(true), Some(false), None]
        );
        assert_eq!(
            get(StringFunction::EndsWith),
            [Some(false), Some(true), None]
        );
        assert_eq!(
            get(StringFunction::Contains),
            [Some(true), Some(true), None]
        );
        let number: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        assert!(evaluate(StringFunction::Contains, &[number, other]).is_err());
    }
}
