//! Reading line-based text (CSV, JSON lines) in chunks of whole records as it arrives, so that a
//! streaming query over a pipe produces output before its input ends; and cutting text already
//! in memory (a mapped file) into such chunks without copying it.

use std::io::Read;
use std::ops::Range;

/// How records end in the text being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordSyntax {
    /// Every newline ends a record (JSON lines).
    Lines,
    /// A newline ends a record unless it is inside a double-quoted field (RFC 4180 CSV with
    /// `,` between fields). As in the `csv` crate, a quote opens a quoted field only at the
    /// start of a field; elsewhere it is an ordinary character.
    Csv,
}

/// Bytes asked of the reader at a time.
const READ_BYTES: usize = 1 << 20;

/// Finds where records end, carrying the quote state from one call to the next. Positions are
/// offsets into a text that starts at a record start.
#[derive(Debug, Clone)]
struct RecordEnds {
    syntax: RecordSyntax,
    /// Inside a quoted CSV field where the last scan stopped.
    in_quotes: bool,
    /// Where the last quoted field closed (a quote right after it is an escaped quote, and the
    /// field goes on).
    closed_quote_at: Option<usize>,
}

impl RecordEnds {
    fn new(syntax: RecordSyntax) -> Self {
        RecordEnds {
            syntax,
            in_quotes: false,
            closed_quote_at: None,
        }
    }

    /// Scans `text[from..]`, where the previous call stopped: the position just past the first
    /// record-ending newline, or `None` when the text ends first (the quote state then holds
    /// for the end of the text, and a later call goes on from there).
    fn next_end(&mut self, text: &[u8], mut from: usize) -> Option<usize> {
        match self.syntax {
            RecordSyntax::Lines => {
                memchr::memchr(b'\n', text.get(from..)?).map(|offset| from + offset + 1)
            }
            RecordSyntax::Csv => loop {
                let at = from + memchr::memchr2(b'"', b'\n', text.get(from..)?)?;
                from = at + 1;
                if text[at] == b'\n' {
                    if !self.in_quotes {
                        return Some(from);
                    }
                } else if self.in_quotes {
                    self.in_quotes = false;
                    self.closed_quote_at = Some(at);
                } else {
                    // The text starts at a record start, so `at == 0` is a field start.
                    let escaped = at > 0 && self.closed_quote_at == Some(at - 1);
                    let field_start = at
                        .checked_sub(1)
                        .is_none_or(|before| matches!(text[before], b',' | b'\n' | b'\r'));
                    self.in_quotes = escaped || field_start;
                }
            },
        }
    }

    /// The text's first `cut` bytes were dropped: positions move with it. A quote that closed
    /// before a record end cannot escape anything any more.
    fn drop_front(&mut self, cut: usize) {
        self.closed_quote_at = self.closed_quote_at.and_then(|at| at.checked_sub(cut));
    }
}

/// Cuts `text`, which starts at a record start, into ranges of whole records of about
/// `chunk_bytes` each (at least one record each): every range ends just after a record-ending
/// newline, the last at the end of the text. Stretches without a quote are cut at the first
/// newline past the size without looking at the records inside them.
pub fn record_ranges(text: &[u8], syntax: RecordSyntax, chunk_bytes: usize) -> Vec<Range<usize>> {
    let chunk_bytes = chunk_bytes.max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    // The first quote at or after `start` (the text's length when there is none); JSON lines
    // have no quoting that can hide a newline.
    let next_quote_from = |from: usize| match syntax {
        RecordSyntax::Lines => text.len(),
        RecordSyntax::Csv => memchr::memchr(b'"', &text[from..]).map_or(text.len(), |q| from + q),
    };
    let mut next_quote = next_quote_from(0);
    while start < text.len() {
        let wanted = (start + chunk_bytes).min(text.len());
        let end = if next_quote >= wanted {
            // No quote between `start` and `wanted`: the first newline at or after
            // `wanted - 1` ends a record, unless a quote comes before it.
            let past_newline = memchr::memchr(b'\n', &text[wanted - 1..])
                .map_or(text.len(), |offset| wanted + offset);
            (past_newline <= next_quote).then_some(past_newline)
        } else {
            None
        };
        let end = end.unwrap_or_else(|| {
            let mut ends = RecordEnds::new(syntax);
            let mut from = start;
            loop {
                match ends.next_end(&text[start..], from - start) {
                    Some(offset) if start + offset >= wanted => break start + offset,
                    Some(offset) => from = start + offset,
                    None => break text.len(),
                }
            }
        });
        ranges.push(start..end);
        start = end;
        if next_quote < start {
            next_quote = next_quote_from(start);
        }
    }
    ranges
}

/// Splits a byte stream into chunks that each end just after a record-ending newline (the last
/// chunk: at the end of input). A chunk is handed out as soon as a read brings at least one
/// whole record, except the first, which waits for `first_chunk_records` records (or the end),
/// so that a schema can be inferred from it.
pub struct ChunkedRecords<R: Read> {
    reader: R,
    syntax: RecordSyntax,
    /// Bytes read and not yet handed out.
    pending: Vec<u8>,
    /// Bytes asked of the reader at a time ([`READ_BYTES`]; less in tests).
    read_bytes: usize,
    /// How much of `pending` has been scanned for record ends.
    scanned: usize,
    /// The quote state at `scanned`.
    ends: RecordEnds,
    /// Just past the last record end found in `pending`, and the records before it.
    boundary: usize,
    records: usize,
    first_chunk_records: usize,
    handed_out: bool,
    at_end: bool,
}

impl<R: Read> ChunkedRecords<R> {
    /// Chunks of `reader`'s bytes; the first holds at least `first_chunk_records` records.
    pub fn new(reader: R, syntax: RecordSyntax, first_chunk_records: usize) -> Self {
        ChunkedRecords {
            reader,
            syntax,
            pending: Vec::new(),
            read_bytes: READ_BYTES,
            scanned: 0,
            ends: RecordEnds::new(syntax),
            boundary: 0,
            records: 0,
            first_chunk_records,
            handed_out: false,
            at_end: false,
        }
    }

    /// Finds the record ends in the bytes read since the last scan.
    fn scan(&mut self) {
        let mut from = self.scanned;
        while let Some(end) = self.ends.next_end(&self.pending, from) {
            self.boundary = end;
            self.records += 1;
            from = end;
        }
        self.scanned = self.pending.len();
    }

    /// The next chunk of whole records, or `None` when the input is exhausted.
    pub fn next_chunk(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            let wanted = if self.handed_out {
                1
            } else {
                self.first_chunk_records
            };
            if self.records >= wanted && self.boundary > 0 {
                let rest = self.pending.split_off(self.boundary);
                let chunk = std::mem::replace(&mut self.pending, rest);
                self.scanned -= self.boundary;
                self.ends.drop_front(self.boundary);
                self.boundary = 0;
                self.records = 0;
                self.handed_out = true;
                return Ok(Some(chunk));
            }
            if self.at_end {
                if self.pending.is_empty() {
                    return Ok(None);
                }
                // The end of input ends the last record, with or without a newline.
                self.scanned = 0;
                self.ends = RecordEnds::new(self.syntax);
                self.boundary = 0;
                self.records = 0;
                self.handed_out = true;
                return Ok(Some(std::mem::take(&mut self.pending)));
            }
            let start = self.pending.len();
            self.pending.resize(start + self.read_bytes, 0);
            let read = self.reader.read(&mut self.pending[start..]);
            self.pending.truncate(start + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => self.at_end = true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            self.scan();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns its parts one `read` call at a time, as a pipe does (an empty
    /// part is skipped: a read of 0 bytes means the end).
    struct Parts(std::collections::VecDeque<Vec<u8>>);

    impl Read for Parts {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.pop_front() {
                None => Ok(0),
                Some(mut part) => {
                    let n = part.len().min(buf.len());
                    buf[..n].copy_from_slice(&part[..n]);
                    if n < part.len() {
                        self.0.push_front(part.split_off(n));
                    }
                    Ok(n)
                }
            }
        }
    }

    fn chunks(parts: &[&str], syntax: RecordSyntax, first: usize) -> Vec<String> {
        let reader = Parts(
            parts
                .iter()
                .filter(|p| !p.is_empty())
                .map(|p| p.as_bytes().to_vec())
                .collect(),
        );
        let mut chunked = ChunkedRecords::new(reader, syntax, first);
        // Small reads keep the many cases of these tests quick (the parts are small).
        chunked.read_bytes = 4096;
        let mut out = Vec::new();
        while let Some(chunk) = chunked.next_chunk().unwrap() {
            out.push(String::from_utf8(chunk).unwrap());
        }
        out
    }

    #[test]
    fn chunks_end_at_record_ends_as_reads_bring_them() {
        assert_eq!(
            chunks(&["a\nb", "c\n", "d"], RecordSyntax::Lines, 1),
            vec!["a\n", "bc\n", "d"]
        );
        assert_eq!(
            chunks(&["a\nb", "c\n", "d\n"], RecordSyntax::Lines, 2),
            vec!["a\nbc\n", "d\n"]
        );
        assert_eq!(chunks(&[], RecordSyntax::Lines, 1), Vec::<String>::new());
        assert_eq!(chunks(&["", "x"], RecordSyntax::Lines, 5), vec!["x"]);
    }

    fn records(text: &str) -> Vec<csv::ByteRecord> {
        csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes())
            .byte_records()
            .map(|record| record.unwrap())
            .collect()
    }

    /// Where the `csv` crate finds each record to end (just past its newline; blank lines are
    /// no records to it).
    fn record_ends(text: &str) -> Vec<usize> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes());
        let mut record = csv::ByteRecord::new();
        let mut ends = Vec::new();
        while reader.read_byte_record(&mut record).unwrap() {
            // The crate ends a record at `\r`; the chunker at the `\n` that follows it.
            let end = reader.position().byte() as usize;
            let crlf = end > 0
                && text.as_bytes()[end - 1] == b'\r'
                && text.as_bytes().get(end) == Some(&b'\n');
            ends.push(end + usize::from(crlf));
        }
        ends
    }

    #[test]
    fn csv_chunks_end_where_the_csv_crate_ends_records() {
        let pieces = ["a", "\"", ",", "\n", "\"\"", "\r\n", "b c", "\"x\ny\""];
        let mut rng = quiver_core::rng::SplitMix64::new(17);
        let mut next = |bound: usize| rng.below(bound as u64) as usize;
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..next(16) + 4 {
                text.push_str(pieces[next(pieces.len())]);
            }
            // Cutting where the chunker does changes no record the `csv` crate reads.
            // Reads end anywhere: between a closing quote and its escape, inside a field.
            let cut_a = next(text.len() + 1);
            let cut_b = cut_a + next(text.len() - cut_a + 1);
            let reads = [&text[..cut_a], &text[cut_a..cut_b], &text[cut_b..]];
            let pieces = chunks(&reads, RecordSyntax::Csv, 1);
            assert_eq!(pieces.concat(), text);
            let by_chunk: Vec<csv::ByteRecord> = pieces.iter().flat_map(|p| records(p)).collect();
            assert_eq!(by_chunk, records(&text), "{text:?} cut into {pieces:?}");
        }
    }

    #[test]
    fn record_ranges_cover_the_text_and_end_where_the_csv_crate_ends_records() {
        let pieces = [
            "a",
            "\"",
            ",",
            "\n",
            "\"\"",
            "\r\n",
            "b c",
            "\"x\ny\"",
            "long,row\n",
        ];
        let mut rng = quiver_core::rng::SplitMix64::new(23);
        let mut next = |bound: usize| rng.below(bound as u64) as usize;
        for case in 0..4000 {
            let mut text = String::new();
            for _ in 0..next(40) + 1 {
                // Some texts have no quote at all: the fast path alone.
                let piece = pieces[next(pieces.len())];
                if case % 3 == 0 && piece.contains('"') {
                    continue;
                }
                text.push_str(piece);
            }
            let chunk_bytes = next(24) + 1;
            let ranges = record_ranges(text.as_bytes(), RecordSyntax::Csv, chunk_bytes);
            let mut expected_start = 0;
            for range in &ranges {
                assert_eq!(range.start, expected_start, "{text:?}");
                assert!(range.end > range.start, "{text:?}: {ranges:?}");
                expected_start = range.end;
            }
            assert_eq!(expected_start, text.len());
            let pieces: Vec<&str> = ranges.iter().map(|r| &text[r.clone()]).collect();
            let by_range: Vec<csv::ByteRecord> = pieces.iter().flat_map(|p| records(p)).collect();
            assert_eq!(by_range, records(&text), "{text:?} cut into {pieces:?}");
            // Each range but the last holds at least `chunk_bytes` bytes, and no record end
            // inside it comes at or after that size.
            let ends = record_ends(&text);
            for range in ranges.iter().rev().skip(1) {
                assert!(range.len() >= chunk_bytes, "{text:?} cut into {pieces:?}");
                assert!(
                    !ends
                        .iter()
                        .any(|&end| end > range.start + chunk_bytes - 1 && end < range.end),
                    "{text:?} cut into {pieces:?}, record ends {ends:?}"
                );
            }
        }
    }

    #[test]
    fn record_ranges_of_lines_end_at_newlines() {
        let text = b"ab\ncd\n\"e\nf\n";
        let ranges = record_ranges(text, RecordSyntax::Lines, 2);
        assert_eq!(ranges, vec![0..3, 3..6, 6..9, 9..11]);
        assert_eq!(record_ranges(text, RecordSyntax::Lines, 100), vec![0..11]);
        assert_eq!(
            record_ranges(b"", RecordSyntax::Csv, 4),
            Vec::<Range<usize>>::new()
        );
        assert_eq!(record_ranges(b"x", RecordSyntax::Csv, 4), vec![0..1]);
        // A quoted newline past the size does not end the range.
        assert_eq!(
            record_ranges(b"a,\"b\nc\"\nd\n", RecordSyntax::Csv, 3),
            vec![0..8, 8..10]
        );
    }

    #[test]
    fn newlines_inside_quoted_csv_fields_do_not_end_records() {
        let parts = ["h\n\"a\nb\",1\n\"c", "\"\"\n\",2\n", "x,3"];
        assert_eq!(
            chunks(&parts, RecordSyntax::Csv, 1),
            vec!["h\n\"a\nb\",1\n", "\"c\"\"\n\",2\n", "x,3"]
        );
        // A quote inside an unquoted field is an ordinary character; one right after a closing
        // quote is an escaped quote.
        assert_eq!(
            chunks(&["h\nab\"c,\"x\ny", "\"\"\"\nz"], RecordSyntax::Csv, 1),
            vec!["h\n", "ab\"c,\"x\ny\"\"\"\n", "z"]
        );
        // A read that ends between a closing quote and the quote escaping it.
        assert_eq!(
            chunks(&["h\n\"x\"", "\"\ny", "\",1\n"], RecordSyntax::Csv, 1),
            vec!["h\n", "\"x\"\"\ny\",1\n"]
        );
        // Every piece of the input is handed out exactly once, for any split.
        let text = "h\n\"a\nb\",1\n\"c\"\"\n\",2\nx,3\n";
        for cut in 0..text.len() {
            let joined = chunks(&[&text[..cut], &text[cut..]], RecordSyntax::Csv, 1).concat();
            assert_eq!(joined, text);
        }
    }
}
