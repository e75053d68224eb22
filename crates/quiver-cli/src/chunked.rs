//! Reading line-based text (CSV, JSON lines) in chunks of whole records as it arrives, so that a
//! streaming query over a pipe produces output before its input ends.

use std::io::Read;

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
    /// Inside a quoted CSV field at `scanned`.
    in_quotes: bool,
    /// Where in `pending` the last quoted field closed (a quote right after it is an escaped
    /// quote, and the field goes on).
    closed_quote_at: Option<usize>,
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
            in_quotes: false,
            closed_quote_at: None,
            boundary: 0,
            records: 0,
            first_chunk_records,
            handed_out: false,
            at_end: false,
        }
    }

    /// Finds the record ends in the bytes read since the last scan.
    fn scan(&mut self) {
        let new = &self.pending[self.scanned..];
        match self.syntax {
            RecordSyntax::Lines => {
                for offset in memchr::memchr_iter(b'\n', new) {
                    self.boundary = self.scanned + offset + 1;
                    self.records += 1;
                }
            }
            RecordSyntax::Csv => {
                for offset in memchr::memchr2_iter(b'"', b'\n', new) {
                    let at = self.scanned + offset;
                    if new[offset] == b'\n' {
                        if !self.in_quotes {
                            self.boundary = at + 1;
                            self.records += 1;
                        }
                    } else if self.in_quotes {
                        self.in_quotes = false;
                        self.closed_quote_at = Some(at);
                    } else {
                        // `pending` starts at a record start, so `at == 0` is a field start.
                        let escaped = at > 0 && self.closed_quote_at == Some(at - 1);
                        let field_start = at.checked_sub(1).is_none_or(|before| {
                            matches!(self.pending[before], b',' | b'\n' | b'\r')
                        });
                        self.in_quotes = escaped || field_start;
                    }
                }
            }
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
                // Positions in `pending` move with it; a quote that closed before the record
                // end cannot escape anything any more.
                self.closed_quote_at = self
                    .closed_quote_at
                    .and_then(|at| at.checked_sub(self.boundary));
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
                self.closed_quote_at = None;
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
