//! Sorting rows by several key columns: the row order of window functions and `ORDER BY`.
//!
//! The keys are encoded once in the `arrow-row` format (bytes that compare as the rows do,
//! descending and NULL placement included), and rows are sorted by the first up to 32 bytes of
//! their encoding held inline as big-endian words, then by the whole encoding, then by
//! position. Comparing a few machine words in place is several times faster than a comparator
//! that dispatches on each column's type for every comparison (arrow's `lexsort_to_indices`);
//! where every encoding has one length that fits in the words — fixed-width keys such as an
//! integer and a float — the words alone decide. Ties keep input order, so the result does not depend on the sort
//! algorithm.

use std::cmp::Ordering;

use arrow::array::{Array, ArrayRef, UInt32Array};
use arrow::compute::{lexsort_to_indices, SortColumn};
use arrow::row::{RowConverter, Rows, SortField};
use quiver_core::{QuiverError, Result};

/// Positions of the rows of `columns` (equal lengths) in sorted order, ties in input order; with
/// `fetch`, only the first `fetch` of them.
pub fn sorted_positions(columns: &[SortColumn], fetch: Option<usize>) -> Result<UInt32Array> {
    let row_count = columns.first().map_or(0, |c| c.values.len());
    if u32::try_from(row_count).is_err() {
        return Err(QuiverError::ResourceExhausted(format!(
            "sorting {row_count} rows; at most {} are supported",
            u32::MAX
        )));
    }
    let fields: Vec<SortField> = columns
        .iter()
        .map(|c| {
            SortField::new_with_options(c.values.data_type().clone(), c.options.unwrap_or_default())
        })
        .collect();
    // A short head (`ORDER BY ... LIMIT 10`) is one pass of comparisons, cheaper than encoding
    // every row.
    let short_head = fetch.is_some_and(|fetch| fetch.saturating_mul(8) < row_count);
    if columns.is_empty() || short_head || !RowConverter::supports_fields(&fields) {
        return by_comparator(columns, row_count, fetch);
    }
    let converter = RowConverter::new(fields)?;
    let arrays: Vec<ArrayRef> = columns.iter().map(|c| c.values.clone()).collect();
    let rows = converter.convert_columns(&arrays)?;
    let (mut shortest, mut longest) = (usize::MAX, 0);
    for i in 0..rows.num_rows() {
        let len = rows.row(i).as_ref().len();
        shortest = shortest.min(len);
        longest = longest.max(len);
    }
    // Encodings of one length that fit in the words: the words decide, and padding never hides
    // that one encoding is a prefix of another.
    let fixed = (shortest == longest).then_some(longest);
    let positions = match longest.div_ceil(8) {
        0 | 1 => by_words::<1>(&rows, fixed, fetch),
        2 => by_words::<2>(&rows, fixed, fetch),
        3 => by_words::<3>(&rows, fixed, fetch),
        _ => by_words::<4>(&rows, fixed, fetch),
    };
    Ok(UInt32Array::from(positions))
}

/// A row's first `8 * W` encoded bytes as big-endian words (zero-padded; where the words tie,
/// the whole encodings decide), and its position.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Prefixed<const W: usize> {
    words: [u64; W],
    position: u32,
}

/// Sorts by [`Prefixed`] entries; `fixed_len`: every encoding has this length.
fn by_words<const W: usize>(
    rows: &Rows,
    fixed_len: Option<usize>,
    fetch: Option<usize>,
) -> Vec<u32> {
    let mut entries: Vec<Prefixed<W>> = (0..rows.num_rows())
        .map(|position| {
            let bytes = rows.row(position);
            let bytes = bytes.as_ref();
            let mut words = [0_u64; W];
            for (word, chunk) in words.iter_mut().zip(bytes.chunks(8)) {
                let mut padded = [0_u8; 8];
                padded[..chunk.len()].copy_from_slice(chunk);
                *word = u64::from_be_bytes(padded);
            }
            Prefixed {
                words,
                position: position as u32,
            }
        })
        .collect();
    if fixed_len.is_some_and(|len| len <= 8 * W) {
        // The words hold every encoding whole: they and the position decide.
        sort_head(&mut entries, fetch, Prefixed::cmp);
    } else {
        sort_head(&mut entries, fetch, |a, b| {
            a.words
                .cmp(&b.words)
                .then_with(|| {
                    rows.row(a.position as usize)
                        .cmp(&rows.row(b.position as usize))
                })
                .then(a.position.cmp(&b.position))
        });
    }
    entries.into_iter().map(|e| e.position).collect()
}

/// Sorts `entries`, or with `fetch` only enough to put the smallest `fetch` first, in order,
/// and drops the rest.
fn sort_head<T: Send>(
    entries: &mut Vec<T>,
    fetch: Option<usize>,
    compare: impl Fn(&T, &T) -> Ordering + Sync,
) {
    match fetch {
        Some(fetch) if fetch < entries.len() => {
            if fetch == 0 {
                entries.clear();
                return;
            }
            entries.select_nth_unstable_by(fetch - 1, &compare);
            entries.truncate(fetch);
            entries.sort_unstable_by(compare);
        }
        _ if entries.len() >= PARALLEL_SORT_ROWS => {
            use rayon::slice::ParallelSliceMut;
            entries.par_sort_unstable_by(compare);
        }
        _ => entries.sort_unstable_by(compare),
    }
}

/// Rows from which a full sort is worth splitting over the worker threads.
const PARALLEL_SORT_ROWS: usize = 1 << 16;

/// Key types the row format does not encode, and short heads: arrow's comparator, position
/// breaking ties.
fn by_comparator(
    columns: &[SortColumn],
    row_count: usize,
    fetch: Option<usize>,
) -> Result<UInt32Array> {
    let mut with_position = columns.to_vec();
    with_position.push(SortColumn {
        values: std::sync::Arc::new(UInt32Array::from_iter_values(0..row_count as u32)),
        options: None,
    });
    Ok(lexsort_to_indices(&with_position, fetch)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray};
    use arrow::compute::SortOptions;
    use quiver_core::rng::SplitMix64;
    use std::sync::Arc;

    fn column(values: ArrayRef, descending: bool, nulls_first: bool) -> SortColumn {
        SortColumn {
            values,
            options: Some(SortOptions {
                descending,
                nulls_first,
            }),
        }
    }

    /// Past [`PARALLEL_SORT_ROWS`] the sort runs on the worker threads, with the same result.
    #[test]
    fn a_parallel_sort_equals_the_comparator_sort() {
        let mut rng = SplitMix64::new(3);
        let rows = PARALLEL_SORT_ROWS + 5_000;
        let ints: ArrayRef = Arc::new(
            (0..rows)
                .map(|_| (rng.below(20) > 0).then(|| rng.below(300) as i64))
                .collect::<Int64Array>(),
        );
        let texts: ArrayRef = Arc::new(
            (0..rows)
                .map(|_| Some(format!("{:>40}", rng.below(50))))
                .collect::<StringArray>(),
        );
        for columns in [
            vec![column(ints.clone(), true, false)],
            vec![column(texts, false, true), column(ints, false, true)],
        ] {
            let got = sorted_positions(&columns, None).unwrap();
            assert_eq!(got, by_comparator(&columns, rows, None).unwrap());
        }
    }

    /// Every key shape (short fixed width, fixed width past 16 and 32 bytes, strings longer
    /// than the inline words) and fetch sorts as arrow's comparator with position last does.
    #[test]
    fn positions_equal_the_comparator_sort() {
        let mut rng = SplitMix64::new(11);
        for round in 0..60 {
            let rows = [0, 1, 2, 17, 300, 2000][round % 6];
            let mut pick = |distinct: u64| rng.below(distinct);
            let ints: Int64Array = (0..rows)
                .map(|_| (pick(10) > 0).then(|| pick(7) as i64 - 3))
                .collect();
            let floats: Float64Array = (0..rows)
                .map(|_| (pick(10) > 0).then(|| [0.5, -1.0, 2.25, 1e300][pick(4) as usize]))
                .collect();
            let texts: StringArray = (0..rows)
                .map(|_| {
                    (pick(10) > 0).then(|| {
                        [
                            "a",
                            "",
                            "same long prefix of more than thirty-two bytes: x",
                            "same long prefix of more than thirty-two bytes: y",
                        ][pick(4) as usize]
                    })
                })
                .collect();
            let (ints, floats, texts): (ArrayRef, ArrayRef, ArrayRef) =
                (Arc::new(ints), Arc::new(floats), Arc::new(texts));
            let flip = round % 4;
            let narrow: ArrayRef =
                Arc::new(arrow::compute::cast(&ints, &arrow::datatypes::DataType::Int32).unwrap());
            let shapes = [
                vec![column(narrow, flip == 3, flip == 0)],
                vec![column(ints.clone(), flip == 1, flip == 2)],
                vec![
                    column(ints.clone(), false, true),
                    column(floats.clone(), flip > 1, flip == 3),
                ],
                vec![
                    column(ints.clone(), true, false),
                    column(floats.clone(), false, true),
                    column(ints.clone(), flip == 0, true),
                    column(floats.clone(), true, flip == 1),
                ],
                vec![
                    column(texts.clone(), flip == 2, flip == 1),
                    column(ints.clone(), false, false),
                ],
            ];
            for columns in shapes {
                for fetch in [None, Some(0), Some(1), Some(rows / 2), Some(rows + 3)] {
                    let got = sorted_positions(&columns, fetch).unwrap();
                    let expected = by_comparator(&columns, rows, fetch).unwrap();
                    assert_eq!(got, expected, "round {round}, fetch {fetch:?}");
                }
            }
        }
    }
}
