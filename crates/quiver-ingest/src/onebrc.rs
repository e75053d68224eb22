//! The One Billion Row Challenge text format (`station;temperature` lines), parsed zero-copy.
//!
//! The input is memory-mapped and wrapped in one Arrow [`Buffer`] without copying; it is cut at
//! line boundaries into chunks that parse independently (in parallel on rayon). Temperatures
//! become integers of tenths with no float parsing; stations stay in the mapped bytes and are
//! referenced by `Utf8View` views. A line that breaks the format (no `;`, empty station, a
//! temperature other than `-?d?d.d`, invalid UTF-8) is a dead letter with its line number,
//! byte offset and reason; parsing goes on with the next line.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use arrow::array::builder::make_view;
use arrow::array::{ArrayRef, Decimal128Array, StringViewArray};
use arrow::buffer::{Buffer, ScalarBuffer};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use quiver_core::prefix::prefix_words;
use quiver_core::{DeadLetter, DeadLetterPayload, Position, QuiverError, Result};
use rayon::prelude::*;

use crate::config::IngestConfig;
use crate::output::IngestOutput;

/// Largest chunk, so that `Utf8View` offsets (u32) into a chunk's buffer never overflow.
pub const MAX_CHUNK_BYTES: usize = 1 << 30;

/// The schema of parsed 1BRC batches: `station Utf8View`, `temperature Decimal128(3, 1)`.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("station", DataType::Utf8View, false),
        Field::new("temperature", DataType::Decimal128(3, 1), false),
    ]))
}

/// Maps `path` into memory as one Arrow buffer (no copy; the mapping lives as long as the buffer).
pub fn map_file(path: &Path) -> Result<Buffer> {
    if path.is_dir() {
        return Err(QuiverError::io(
            path.display().to_string(),
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a directory, not a measurements file",
            ),
        ));
    }
    let file =
        std::fs::File::open(path).map_err(|e| QuiverError::io(path.display().to_string(), e))?;
    let length = file
        .metadata()
        .map_err(|e| QuiverError::io(path.display().to_string(), e))?
        .len();
    if length == 0 {
        // Mapping an empty file fails on some platforms; an empty input is simply empty.
        return Ok(Buffer::from(Vec::<u8>::new()));
    }
    // SAFETY: the mapping is read-only; a concurrent writer truncating the file is outside
    // what any mmap-based reader can defend against, as with every memory-mapped input.
    let mmap = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|e| QuiverError::io(path.display().to_string(), e))?;
    Ok(Buffer::from(bytes::Bytes::from_owner(mmap)))
}

/// Splits `input` into about `chunk_count` ranges that each end just after a newline (or at the
/// end of input), each at most [`MAX_CHUNK_BYTES`].
pub fn split_lines(input: &[u8], chunk_count: usize) -> Vec<Range<usize>> {
    let target = input
        .len()
        .div_ceil(chunk_count.max(1))
        .clamp(1, MAX_CHUNK_BYTES);
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < input.len() {
        let guess = (start + target).min(input.len());
        let end = if guess >= input.len() {
            input.len()
        } else {
            match memchr::memchr(b'\n', &input[guess - 1..]) {
                Some(i) => guess + i,
                None => input.len(),
            }
        };
        if end - start > MAX_CHUNK_BYTES {
            // One line longer than a chunk: cut it anyway; its parts are reported as bad lines.
            let cut = start + MAX_CHUNK_BYTES;
            ranges.push(start..cut);
            start = cut;
            continue;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

/// A line that broke the format, before line numbers across chunks are known.
#[derive(Debug, Clone, PartialEq)]
pub struct BadLine {
    /// 0-based line index within its chunk.
    pub line_in_chunk: u64,
    /// Byte offset of the line within the chunk.
    pub offset_in_chunk: usize,
    /// Length of the line without its newline.
    pub length: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Counts from parsing one chunk.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChunkParse {
    /// Lines seen (good and bad).
    pub lines: u64,
    /// Lines that broke the format.
    pub bad_lines: Vec<BadLine>,
}

/// Parses `-?d?d.d` into tenths. Returns the value and the bytes consumed.
#[inline(always)]
fn parse_tenths(text: &[u8]) -> Option<(i16, usize)> {
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    let digit = |i: usize| -> Option<i16> {
        let b = *digits.get(i)?;
        b.is_ascii_digit().then(|| i16::from(b - b'0'))
    };
    let (magnitude, used) = if digits.get(1) == Some(&b'.') {
        (digit(0)? * 10 + digit(2)?, 3)
    } else if digits.get(2) == Some(&b'.') {
        (digit(0)? * 100 + digit(1)? * 10 + digit(3)?, 4)
    } else {
        return None;
    };
    let sign_len = usize::from(negative);
    Some((
        if negative { -magnitude } else { magnitude },
        used + sign_len,
    ))
}

/// Position of the first `;` or `\n` in `bytes`, eight bytes at a time (SWAR): station names
/// are short, so this beats a `memchr2` call per line.
#[inline(always)]
fn find_separator(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let zero_bytes = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let mut at = 0;
    while let Some(window) = bytes.get(at..at + 8) {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(window);
        let word = u64::from_le_bytes(buf);
        // The lowest flagged byte is exact (borrows only flag bytes above a true match).
        let found = zero_bytes(word ^ (ONES * u64::from(b';')))
            | zero_bytes(word ^ (ONES * u64::from(b'\n')));
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    bytes[at..]
        .iter()
        .position(|&b| b == b';' || b == b'\n')
        .map(|p| at + p)
}

/// A station name as the parser hands it on: its bytes, and its first 16 bytes as two
/// little-endian words with zeros past the name (the fast path has them loaded already, so a
/// station table can hash and compare short names without touching the bytes again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Station<'a> {
    /// The name's bytes (valid UTF-8, never empty).
    pub name: &'a [u8],
    /// [`prefix_words`] of `name`.
    pub prefix: [u64; 2],
}

/// Bytes the fast path reads per line: a station of up to 31 bytes, `;` and 8 bytes after it.
const FAST_WINDOW_BYTES: usize = 40;

/// A line the fast path parsed.
struct FastLine {
    name_len: usize,
    prefix: [u64; 2],
    tenths: i16,
    /// Bytes up to and including the newline.
    length: usize,
}

/// Parses the common line shape (`name;-?d?d.d\n` with a name of 1 to 31 bytes) from a window
/// starting at the line, with one data-dependent branch: `None` for anything else (longer
/// names, `\r\n`, bad lines), which then takes the exact path. Whatever it accepts, the exact
/// path parses to the same result (tested against it).
#[inline(always)]
fn fast_line(window: &[u8; FAST_WINDOW_BYTES]) -> Option<FastLine> {
    let (head, _) = window.split_first_chunk::<16>()?;
    let head = u128::from_le_bytes(*head);
    // Only `;` decides where the name ends; a newline inside the name is checked off that
    // critical path, below.
    let (semicolons, newlines) = semicolons_and_newlines(window);
    if semicolons == 0 {
        return None;
    }
    let name_len = semicolons.trailing_zeros() as usize;
    let newline_in_name = newlines & ((1u32 << name_len) - 1) != 0;
    // The name's first 16 bytes, zero past its end (`prefix_words`).
    let kept_bits = 8 * name_len.min(16) as u32;
    let name = head & u128::MAX.checked_shr(128 - kept_bits).unwrap_or(0);
    let after: [u8; 8] = window.get(name_len + 1..name_len + 9)?.try_into().ok()?;
    let text = u64::from_le_bytes(after);
    let negative = text & 0xFF == u64::from(b'-');
    let digits = if negative { text >> 8 } else { text };
    // `d.d` has its dot at byte 1, `dd.d` at byte 2.
    let dot_at = if (digits >> 8) & 0xFF == u64::from(b'.') {
        1
    } else {
        2
    };
    let values = digits ^ 0x3030_3030_3030_3030;
    // A byte is a digit iff its xor with '0' is at most 9: adding 0x76 to its low 7 bits then
    // reaches bit 7 exactly when it is not (no carry leaves the byte).
    let non_digits = (((values & 0x7F7F_7F7F_7F7F_7F7F) + 0x7676_7676_7676_7676) | values)
        & 0x8080_8080_8080_8080;
    let digit_bytes: u64 = if dot_at == 1 {
        0x0080_0080
    } else {
        0x8000_8080
    };
    let byte_at = |at: usize| (digits >> (8 * at)) & 0xFF;
    let well_formed = (name_len != 0)
        & !newline_in_name
        & (non_digits & digit_bytes == 0)
        & (byte_at(dot_at) == u64::from(b'.'))
        & (byte_at(dot_at + 2) == u64::from(b'\n'));
    if !well_formed {
        return None;
    }
    // Digits to bytes 0, 1 and 3 (`d.d` gets a zero hundreds digit), then one multiply sums
    // 100·b0 + 10·b1 + b3 into bits 24..34 with no carry from below.
    let aligned = (values << (8 * (2 - dot_at))) & 0x0F00_0F0F;
    let magnitude = ((aligned * 0x640A_0001) >> 24) & 0x3FF;
    let magnitude = magnitude as i16;
    Some(FastLine {
        name_len,
        prefix: [name as u64, (name >> 64) as u64],
        tenths: if negative { -magnitude } else { magnitude },
        length: name_len + 1 + usize::from(negative) + dot_at + 3,
    })
}

/// Bit `i` set where byte `i` of the window's first 32 is `;`, and where it is a newline.
#[inline(always)]
fn semicolons_and_newlines(window: &[u8; FAST_WINDOW_BYTES]) -> (u32, u32) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of x86_64; both 16-byte loads lie within the 40-byte window.
        unsafe {
            let low = _mm_loadu_si128(window.as_ptr().cast::<__m128i>());
            let high = _mm_loadu_si128(window.as_ptr().add(16).cast::<__m128i>());
            let mask = |byte: u8| {
                let wanted = _mm_set1_epi8(byte as i8);
                let low = _mm_movemask_epi8(_mm_cmpeq_epi8(low, wanted)) as u32;
                let high = _mm_movemask_epi8(_mm_cmpeq_epi8(high, wanted)) as u32;
                low | (high << 16)
            };
            (mask(b';'), mask(b'\n'))
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let mut semicolons = 0;
        let mut newlines = 0;
        for (i, &byte) in window[..32].iter().enumerate() {
            semicolons |= u32::from(byte == b';') << i;
            newlines |= u32::from(byte == b'\n') << i;
        }
        (semicolons, newlines)
    }
}

/// Receives the good lines of a chunk. Closures `FnMut(Station, usize, i16)` are sinks; a type
/// of its own lets a hot consumer be inlined into the parse loop for certain.
pub trait RowSink {
    /// One good line: its station, the station's byte offset in the chunk, the temperature.
    fn row(&mut self, station: Station<'_>, offset: usize, tenths: i16);
}

impl<F: FnMut(Station<'_>, usize, i16)> RowSink for F {
    #[inline(always)]
    fn row(&mut self, station: Station<'_>, offset: usize, tenths: i16) {
        self(station, offset, tenths)
    }
}

/// Parses every line of `chunk`, calling `on_row(station, station_offset, tenths)` for each
/// good line in input order. Bad lines are returned, not passed to `on_row`.
#[inline]
pub fn parse_chunk<F>(chunk: &[u8], on_row: F) -> ChunkParse
where
    F: FnMut(Station<'_>, usize, i16),
{
    parse_chunk_with::<F, true>(chunk, on_row)
}

/// [`parse_chunk`] into a [`RowSink`] of the caller's own type.
#[inline]
pub fn parse_chunk_into<S: RowSink>(chunk: &[u8], sink: S) -> ChunkParse {
    parse_chunk_with::<S, true>(chunk, sink)
}

/// [`parse_chunk_into`] for a sink that checks station names for UTF-8 itself: names reach
/// `sink` unchecked, and the lines it refuses are added to the result with
/// [`add_invalid_names`]. A sink that keeps each distinct name (as the 1BRC aggregate does)
/// checks every name once instead of every line's bytes, and the input is read once, by the
/// parse, instead of twice.
///
/// Rows reach `sink` out of input order: the two halves of the chunk are parsed by two cursors
/// in step, whose lines do not depend on each other, so the CPU overlaps them. The offset given
/// with each row says where it is. Counts and bad lines are those of [`parse_chunk_into`].
#[inline]
pub fn parse_chunk_unchecked_into<S: RowSink>(chunk: &[u8], mut sink: S) -> ChunkParse {
    let middle = chunk.len() / 2;
    let first_end = memchr::memchr(b'\n', &chunk[middle..]).map_or(chunk.len(), |i| middle + i + 1);
    let mut first = ChunkParse::default();
    let mut second = ChunkParse::default();
    let (mut a, mut b) = (0, first_end);
    // A window may reach past its half, never past the chunk; a line starting in the first
    // half ends in it, as the half ends with a newline.
    while a < first_end && b < chunk.len() {
        let (Some(window_a), Some(window_b)) = (
            chunk
                .get(a..)
                .and_then(|rest| rest.first_chunk::<FAST_WINDOW_BYTES>()),
            chunk
                .get(b..)
                .and_then(|rest| rest.first_chunk::<FAST_WINDOW_BYTES>()),
        ) else {
            break;
        };
        let (line_a, line_b) = (fast_line(window_a), fast_line(window_b));
        a += match line_a {
            Some(line) => fast_row(chunk, a, &line, &mut first, &mut sink),
            None => exact_line(chunk, a, true, &mut first, &mut sink),
        };
        b += match line_b {
            Some(line) => fast_row(chunk, b, &line, &mut second, &mut sink),
            None => exact_line(chunk, b, true, &mut second, &mut sink),
        };
    }
    parse_lines::<S, true>(chunk, a, first_end, true, &mut first, &mut sink);
    parse_lines::<S, true>(chunk, b, chunk.len(), true, &mut second, &mut sink);
    for bad in &mut second.bad_lines {
        bad.line_in_chunk += first.lines;
    }
    first.lines += second.lines;
    first.bad_lines.append(&mut second.bad_lines);
    first
}

/// Adds to `parse` the lines of `chunk` starting at `line_offsets` (in any order), whose
/// station names a sink of [`parse_chunk_unchecked_into`] refused as not UTF-8, as bad lines in
/// chunk order, with the same line numbers, lengths and reason that [`parse_chunk_into`] gives.
pub fn add_invalid_names(chunk: &[u8], parse: &mut ChunkParse, line_offsets: &mut [usize]) {
    if line_offsets.is_empty() {
        return;
    }
    line_offsets.sort_unstable();
    let mut line_in_chunk = 0;
    let mut counted_to = 0;
    for &offset in line_offsets.iter() {
        line_in_chunk += memchr::memchr_iter(b'\n', &chunk[counted_to..offset]).count() as u64;
        counted_to = offset;
        let rest = &chunk[offset..];
        parse.bad_lines.push(BadLine {
            line_in_chunk,
            offset_in_chunk: offset,
            length: memchr::memchr(b'\n', rest).unwrap_or(rest.len()),
            reason: INVALID_NAME,
        });
    }
    parse.bad_lines.sort_by_key(|line| line.offset_in_chunk);
}

/// The reason given for a line whose station name is not UTF-8.
const INVALID_NAME: &str = "station name is not valid UTF-8";

/// [`parse_chunk`] with the fast path on or off (off: every line takes the exact path, the
/// reference the fast path is tested against).
#[inline(always)]
pub(crate) fn parse_chunk_with<S: RowSink, const FAST: bool>(
    chunk: &[u8],
    mut sink: S,
) -> ChunkParse {
    let mut result = ChunkParse::default();
    let mut pos = 0;
    while pos < chunk.len() {
        // Blocks of whole lines, each validated as UTF-8 just before it is parsed, so the
        // parse reads it from L2 rather than from memory a second time; per-line checks only
        // in a block that fails.
        let block_end = chunk
            .get(pos + UTF8_BLOCK_BYTES..)
            .and_then(|rest| memchr::memchr(b'\n', rest))
            .map_or(chunk.len(), |newline| pos + UTF8_BLOCK_BYTES + newline + 1);
        let block_is_utf8 = simdutf8::basic::from_utf8(&chunk[pos..block_end]).is_ok();
        parse_lines::<S, FAST>(chunk, pos, block_end, block_is_utf8, &mut result, &mut sink);
        pos = block_end;
    }
    result
}

/// Parses the lines of `chunk` from `pos` (a line start) to `end` (just past a newline, or the
/// end of the chunk). `known_utf8` as for [`exact_line`]; the fast path runs only then.
#[inline(always)]
fn parse_lines<S: RowSink, const FAST: bool>(
    chunk: &[u8],
    mut pos: usize,
    end: usize,
    known_utf8: bool,
    result: &mut ChunkParse,
    sink: &mut S,
) {
    if FAST && known_utf8 {
        // A line that starts before `end` ends there.
        while pos < end {
            let Some(window) = chunk
                .get(pos..)
                .and_then(|rest| rest.first_chunk::<FAST_WINDOW_BYTES>())
            else {
                break;
            };
            pos += match fast_line(window) {
                Some(line) => fast_row(chunk, pos, &line, result, sink),
                None => exact_line(chunk, pos, true, result, sink),
            };
        }
    }
    while pos < end {
        pos += exact_line(chunk, pos, known_utf8, result, sink);
    }
}

/// Hands the line at `pos` that the fast path parsed to `sink`; returns its length.
#[inline(always)]
fn fast_row<S: RowSink>(
    chunk: &[u8],
    pos: usize,
    line: &FastLine,
    result: &mut ChunkParse,
    sink: &mut S,
) -> usize {
    let station = Station {
        name: &chunk[pos..pos + line.name_len],
        prefix: line.prefix,
    };
    sink.row(station, pos, line.tenths);
    result.lines += 1;
    line.length
}

/// Bytes of input validated as UTF-8 at a time (then rounded up to a line end): small enough
/// to still be in L2 when the parse reads them. Tests use tiny blocks, so their inputs cross
/// many block ends.
const UTF8_BLOCK_BYTES: usize = if cfg!(test) { 64 } else { 128 * 1024 };

/// Parses the line at `chunk[pos..]` with every check spelled out, passing it to `sink` or
/// reporting it as a bad line; returns the bytes it used (the line and its newline, at least 1).
/// `known_utf8`: the line lies in input already validated as UTF-8 (or the sink checks names
/// itself), so its name is not checked.
fn exact_line<S: RowSink>(
    chunk: &[u8],
    pos: usize,
    known_utf8: bool,
    result: &mut ChunkParse,
    sink: &mut S,
) -> usize {
    let line_index = result.lines;
    result.lines += 1;
    let rest = &chunk[pos..];
    let mut bad = |reason: &'static str| -> usize {
        let length = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
        result.bad_lines.push(BadLine {
            line_in_chunk: line_index,
            offset_in_chunk: pos,
            length,
            reason,
        });
        length + 1
    };
    let Some(semicolon) = find_separator(rest) else {
        return bad("missing ';' between station and temperature");
    };
    if rest[semicolon] == b'\n' {
        return bad("missing ';' between station and temperature");
    }
    if semicolon == 0 {
        return bad("empty station name");
    }
    let Some((tenths, used)) = parse_tenths(&rest[semicolon + 1..]) else {
        return bad("temperature is not -?d?d.d");
    };
    let mut end = semicolon + 1 + used;
    if rest.get(end) == Some(&b'\r') {
        end += 1;
    }
    match rest.get(end) {
        None | Some(b'\n') => {}
        Some(_) => return bad("unexpected text after the temperature"),
    }
    let name = &rest[..semicolon];
    if !known_utf8 && std::str::from_utf8(name).is_err() {
        return bad(INVALID_NAME);
    }
    let station = Station {
        name,
        prefix: prefix_words(name),
    };
    sink.row(station, pos, tenths);
    end + 1
}

/// Parses a whole 1BRC input into batches of [`schema`], chunks in parallel on rayon.
///
/// Stations are views into `input` (no copy); batches hold at most `config.batch_size_rows`
/// rows and about `config.batch_size_bytes` bytes of columns.
pub fn parse_buffer(
    input: &Buffer,
    config: &IngestConfig,
    chunk_count: usize,
) -> Result<IngestOutput> {
    config.validate()?;
    let rows_per_batch = config
        .batch_size_rows
        .min((config.batch_size_bytes / 32).max(1));
    let ranges = split_lines(input.as_slice(), chunk_count);
    let parsed: Vec<Result<(Vec<RecordBatch>, ChunkParse)>> = ranges
        .par_iter()
        .map(|range| {
            parse_chunk_to_batches(
                &input.slice_with_length(range.start, range.len()),
                rows_per_batch,
            )
        })
        .collect();
    let mut output = IngestOutput {
        schema: Some(schema()),
        ..IngestOutput::default()
    };
    let mut lines_before: u64 = 0;
    for (range, chunk) in ranges.iter().zip(parsed) {
        let (batches, parse) = chunk?;
        for bad in &parse.bad_lines {
            let start = range.start + bad.offset_in_chunk;
            output.dead_letters.push(DeadLetter {
                position: Position {
                    source: config.source_name.clone(),
                    record: lines_before + bad.line_in_chunk + 1,
                    byte_offset: Some(start as u64),
                },
                reason: bad.reason.to_string(),
                payload: DeadLetterPayload::Bytes(
                    input.as_slice()[start..start + bad.length].to_vec(),
                ),
            });
        }
        output.rejected_rows += parse.bad_lines.len() as u64;
        output.accepted_rows += parse.lines - parse.bad_lines.len() as u64;
        lines_before += parse.lines;
        output.batches.extend(batches);
    }
    Ok(output)
}

fn parse_chunk_to_batches(
    chunk: &Buffer,
    rows_per_batch: usize,
) -> Result<(Vec<RecordBatch>, ChunkParse)> {
    let schema = schema();
    let mut batches = Vec::new();
    let mut views: Vec<u128> = Vec::with_capacity(rows_per_batch);
    let mut temperatures: Vec<i128> = Vec::with_capacity(rows_per_batch);
    let mut error = None;
    let finish = |views: &mut Vec<u128>, temperatures: &mut Vec<i128>| -> Result<RecordBatch> {
        let views = ScalarBuffer::from(std::mem::take(views));
        let buffers = vec![chunk.clone()];
        debug_assert!(StringViewArray::try_new(views.clone(), buffers.clone(), None).is_ok());
        // SAFETY: every view was made by `make_view` from a station slice of `chunk` at its
        // offset within `chunk` (buffer 0), and `parse_chunk` only reports stations that are
        // valid UTF-8 (the whole chunk was validated, or the line was). `try_new` would
        // validate every string again: 18% of parse-to-batch time in a profile.
        let stations = unsafe { StringViewArray::new_unchecked(views, buffers, None) };
        let temperatures =
            Decimal128Array::new(ScalarBuffer::from(std::mem::take(temperatures)), None)
                .with_precision_and_scale(3, 1)?;
        let columns: Vec<ArrayRef> = vec![Arc::new(stations), Arc::new(temperatures)];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    };
    let parse = parse_chunk(chunk.as_slice(), |station, offset, tenths| {
        // Offsets fit u32: chunks are at most MAX_CHUNK_BYTES.
        views.push(make_view(station.name, 0, offset as u32));
        temperatures.push(i128::from(tenths));
        if views.len() == rows_per_batch && error.is_none() {
            match finish(&mut views, &mut temperatures) {
                Ok(batch) => batches.push(batch),
                Err(e) => error = Some(e),
            }
            views.reserve(rows_per_batch);
            temperatures.reserve(rows_per_batch);
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if !views.is_empty() {
        batches.push(finish(&mut views, &mut temperatures)?);
    }
    Ok((batches, parse))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::AsArray;
    use arrow::datatypes::Decimal128Type;

    fn rows(text: &str) -> (Vec<(String, i16)>, ChunkParse) {
        let mut rows = Vec::new();
        let parse = parse_chunk(text.as_bytes(), |s, _, t| {
            rows.push((String::from_utf8(s.name.to_vec()).unwrap(), t))
        });
        (rows, parse)
    }

    #[test]
    fn parses_all_temperature_shapes() {
        let (rows, parse) = rows("a;1.2\nbb;-3.4\nc;12.5\nd;-99.9\ne;0.0\nf;-0.1");
        assert_eq!(
            rows,
            vec![
                ("a".into(), 12),
                ("bb".into(), -34),
                ("c".into(), 125),
                ("d".into(), -999),
                ("e".into(), 0),
                ("f".into(), -1)
            ]
        );
        assert_eq!(parse.lines, 6);
        assert!(parse.bad_lines.is_empty());
    }

    #[test]
    fn bad_lines_are_reported_and_parsing_continues() {
        let (rows, parse) =
            rows("nosemicolon\n;1.0\nx;1.23\nx;abc\nx;123.4\nx;1.0junk\nok;2.0\r\nx;\nlast;3.0\n");
        assert_eq!(rows, vec![("ok".into(), 20), ("last".into(), 30)]);
        assert_eq!(parse.lines, 9);
        let reasons: Vec<(u64, &str)> = parse
            .bad_lines
            .iter()
            .map(|b| (b.line_in_chunk, b.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (0, "missing ';' between station and temperature"),
                (1, "empty station name"),
                (2, "unexpected text after the temperature"),
                (3, "temperature is not -?d?d.d"),
                (4, "temperature is not -?d?d.d"),
                (5, "unexpected text after the temperature"),
                (7, "temperature is not -?d?d.d"),
            ]
        );
    }

    #[test]
    fn separator_search_matches_a_plain_scan() {
        let alphabet = b"ab;\n\xff\x3a\x3c\x0b\x09";
        let mut rng = quiver_core::rng::SplitMix64::new(12345);
        for len in 0..40 {
            for _ in 0..200 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
                    .collect();
                let plain = bytes.iter().position(|&b| b == b';' || b == b'\n');
                assert_eq!(find_separator(&bytes), plain, "{bytes:?}");
            }
        }
    }

    /// Good rows `(name, prefix, offset, tenths)` and the counts, fast path on or off.
    type Parsed = (Vec<(Vec<u8>, [u64; 2], usize, i16)>, ChunkParse);

    fn parse_with<const FAST: bool>(bytes: &[u8]) -> Parsed {
        let mut rows = Vec::new();
        let parse = parse_chunk_with::<_, FAST>(bytes, |s: Station<'_>, offset, t| {
            rows.push((s.name.to_vec(), s.prefix, offset, t))
        });
        (rows, parse)
    }

    /// [`parse_with`] (fast path on) through [`parse_chunk_unchecked_into`], with a sink that
    /// refuses names that are not UTF-8 and [`add_invalid_names`] after it.
    fn parse_unchecked(bytes: &[u8]) -> Parsed {
        let mut rows = Vec::new();
        let mut refused = Vec::new();
        let mut parse = parse_chunk_unchecked_into(bytes, |s: Station<'_>, offset, t| {
            if std::str::from_utf8(s.name).is_ok() {
                rows.push((s.name.to_vec(), s.prefix, offset, t));
            } else {
                refused.push(offset);
            }
        });
        add_invalid_names(bytes, &mut parse, &mut refused);
        rows.sort_by_key(|row| row.2);
        (rows, parse)
    }

    #[test]
    fn fast_path_reads_every_temperature_of_every_shape() {
        for name in [
            "a",
            "Hamburg",
            "Abéché",
            "fifteen bytes!!",
            "sixteen bytes!!!",
            "Las Palmas de Gran Canaria",
            "thirty-one bytes, the longest!!",
        ] {
            for tenths in -999i16..=999 {
                let magnitude = tenths.unsigned_abs();
                let sign = if tenths < 0 { "-" } else { "" };
                let text = format!("{name};{sign}{}.{}\n", magnitude / 10, magnitude % 10);
                let mut window = [b'#'; FAST_WINDOW_BYTES];
                window[..text.len()].copy_from_slice(text.as_bytes());
                let line = fast_line(&window).unwrap_or_else(|| panic!("{text:?} not fast"));
                assert_eq!(line.tenths, tenths, "{text:?}");
                assert_eq!(line.length, text.len(), "{text:?}");
                assert_eq!(line.name_len, name.len());
                assert_eq!(line.prefix, prefix_words(name.as_bytes()));
            }
        }
    }

    #[test]
    fn fast_path_agrees_with_the_exact_path() {
        let names: [&[u8]; 15] = [
            b"",
            b"a",
            b"Oslo",
            "Abéché".as_bytes(),
            b"seven b",
            b"eight by",
            b"fifteen bytes!!",
            b"sixteen bytes!!!",
            b"A very long station name",
            b"thirty-one bytes, the longest!!",
            b"thirty-two bytes, one too long!!",
            b"a;b",
            b"\xff\xfe",
            b"x\ny",
            b"seventeen bytes!!\nand more",
        ];
        let temperatures: [&[u8]; 22] = [
            b"1.2", b"-1.2", b"12.3", b"-12.3", b"0.0", b"-0.0", b"99.9", b"-99.9", b"123.4",
            b"1.", b".5", b"-", b"", b"1.23", b"+1.0", b"1,0", b"/.0", b"1:0", b"--1.0", b"1.0x",
            b"a1.0", b"-1/0",
        ];
        let ends: [&[u8]; 5] = [b"\n", b"\n", b"\n", b"\r\n", b" \n"];
        let mut rng = quiver_core::rng::SplitMix64::new(0x9E37_79B9_7F4A_7C15);
        let mut next = |bound: usize| rng.below(bound as u64) as usize;
        let mut fast_lines = 0;
        for case in 0..400 {
            let mut text = Vec::new();
            for _ in 0..next(60) {
                // Mostly good lines, so the fast path runs long stretches between bad ones.
                let good = next(4) != 0;
                let name = if good {
                    names[1 + next(10)]
                } else {
                    names[next(names.len())]
                };
                let temperature = if good {
                    temperatures[next(9)]
                } else {
                    temperatures[next(22)]
                };
                let end = if good {
                    b"\n".as_slice()
                } else {
                    ends[next(ends.len())]
                };
                text.extend_from_slice(name);
                if good || next(8) != 0 {
                    text.push(b';');
                }
                text.extend_from_slice(temperature);
                text.extend_from_slice(end);
            }
            if case % 3 == 0 {
                text.truncate(text.len().saturating_sub(next(4)));
            }
            let fast = parse_with::<true>(&text);
            let exact = parse_with::<false>(&text);
            assert_eq!(fast, exact, "{:?}", String::from_utf8_lossy(&text));
            let unchecked = parse_unchecked(&text);
            assert_eq!(unchecked, fast, "{:?}", String::from_utf8_lossy(&text));
            fast_lines += fast.1.lines;
        }
        assert!(fast_lines > 5000, "too few lines to compare: {fast_lines}");
    }

    #[test]
    fn bytes_below_the_digit_range_are_bad_temperatures() {
        // Regression: `b - b'0'` was computed before the digit check and overflowed.
        let (rows, parse) = rows("x;/.0\nx;1./\nx;-,5\n");
        assert!(rows.is_empty());
        assert_eq!(parse.bad_lines.len(), 3);
    }

    #[test]
    fn invalid_utf8_station_is_a_bad_line() {
        let mut rows = Vec::new();
        let parse = parse_chunk(b"ok;1.0\n\xff\xfe;2.0\n", |s, _, t| {
            rows.push((s.name.to_vec(), t))
        });
        assert_eq!(rows, vec![(b"ok".to_vec(), 10)]);
        assert_eq!(parse.bad_lines[0].reason, "station name is not valid UTF-8");

        // Blocks are validated one at a time: an invalid name past the first block.
        let mut text = b"good;1.0\n".repeat(2 * UTF8_BLOCK_BYTES / 9);
        let bad_line = text.len();
        text.extend_from_slice(b"b\xffd;2.0\ngood;3.0\n");
        let mut good_rows = 0;
        let parse = parse_chunk(&text, |s, _, _| {
            assert_eq!(s.name, b"good");
            good_rows += 1;
        });
        assert_eq!(good_rows, 2 * UTF8_BLOCK_BYTES / 9 + 1);
        assert_eq!(parse.bad_lines.len(), 1);
        assert_eq!(parse.bad_lines[0].offset_in_chunk, bad_line);

        // Names left to the sink: the same bad lines, numbered among the other bad lines.
        text.extend_from_slice(b"no separator\n\xc3;1.0\r\nlast;2.0\n\xe9t\xe9;-1.5");
        assert_eq!(parse_unchecked(&text), parse_with::<true>(&text));
        assert_eq!(parse_unchecked(&text).1.bad_lines.len(), 4);
    }

    #[test]
    fn chunks_end_at_line_boundaries_and_cover_input() {
        let text = b"aa;1.0\nbbbb;2.0\nc;3.0\ndddddd;4.0\ne;5.0";
        for count in 1..12 {
            let ranges = split_lines(text, count);
            assert_eq!(ranges.first().map(|r| r.start), Some(0));
            assert_eq!(ranges.last().map(|r| r.end), Some(text.len()));
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
                assert_eq!(text[pair[0].end - 1], b'\n');
            }
        }
        assert!(split_lines(b"", 4).is_empty());
    }

    #[test]
    fn batches_are_zero_copy_views_with_positions_for_dead_letters() {
        let text = "Hamburg;12.0\nA very long station name;-3.4\nbad line\nX;0.5\n";
        let buffer = Buffer::from(text.as_bytes().to_vec());
        let config = IngestConfig::default().with_batch_size_rows(2);
        let out = parse_buffer(&buffer, &config, 3).unwrap();
        assert_eq!((out.accepted_rows, out.rejected_rows), (3, 1));
        let dead = &out.dead_letters[0];
        assert_eq!(dead.position.record, 3);
        assert_eq!(dead.position.byte_offset, Some(43));
        assert_eq!(dead.payload, DeadLetterPayload::Bytes(b"bad line".to_vec()));
        let mut stations = Vec::new();
        let mut temperatures = Vec::new();
        for batch in &out.batches {
            assert!(batch.num_rows() <= 2);
            let s = batch.column(0).as_string_view();
            let t = batch.column(1).as_primitive::<Decimal128Type>();
            for i in 0..batch.num_rows() {
                stations.push(s.value(i).to_string());
                temperatures.push(t.value_as_string(i));
            }
            // Zero copy: the view buffer points into the input, not at a copy of it.
            let data = s.data_buffers()[0].as_ptr() as usize;
            let input = buffer.as_ptr() as usize;
            assert!(data >= input && data < input + buffer.len());
        }
        assert_eq!(stations, vec!["Hamburg", "A very long station name", "X"]);
        assert_eq!(temperatures, vec!["12.0", "-3.4", "0.5"]);
    }
}
