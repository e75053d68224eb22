//! Window functions checked against a naive row-at-a-time reference on seeded random data:
//! for every row, its partition is collected and sorted on its own and its frame read off.
#![allow(clippy::unwrap_used)]

use std::cmp::Ordering;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Int64Type, Schema};
use quiver_kernels::analytic::{
    AnalyticCall, AnalyticFunction, AnalyticOrder, Frame, FrameBound, FrameUnits,
};
use quiver_kernels::expr::{Expr, Literal};
use quiver_kernels::AggregateFunction;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Columns: 0 partition key, 1 order key, 2 value, 3 value as text.
fn random_batch(rng: &mut StdRng, rows: usize, partitions: i64, null_fraction: f64) -> RecordBatch {
    let maybe = |v: i64, rng: &mut StdRng| (!rng.gen_bool(null_fraction)).then_some(v);
    let keys: Vec<Option<i64>> = (0..rows)
        .map(|_| {
            let k = rng.gen_range(0..partitions.max(1));
            maybe(k, rng)
        })
        .collect();
    let order: Vec<Option<i64>> = (0..rows)
        .map(|_| {
            let k = rng.gen_range(0..8);
            maybe(k, rng)
        })
        .collect();
    let values: Vec<Option<i64>> = (0..rows)
        .map(|_| {
            let v = match rng.gen_range(0..20) {
                0 => i64::MAX / 4096,
                1 => i64::MIN / 4096,
                _ => rng.gen_range(-1000..1000),
            };
            maybe(v, rng)
        })
        .collect();
    let text: Vec<Option<String>> = values.iter().map(|v| v.map(|v| v.to_string())).collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("p", DataType::Int64, true),
        Field::new("o", DataType::Int64, true),
        Field::new("v", DataType::Int64, true),
        Field::new("t", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(keys)),
            Arc::new(Int64Array::from(order)),
            Arc::new(Int64Array::from(values)),
            Arc::new(StringArray::from(text)),
        ],
    )
    .unwrap()
}

fn int(batch: &RecordBatch, column: usize, row: usize) -> Option<i64> {
    let a = batch.column(column).as_primitive::<Int64Type>();
    a.is_valid(row).then(|| a.value(row))
}

/// NULLs placed by `nulls_first`, then values by `descending`.
fn compare_key(a: Option<i64>, b: Option<i64>, descending: bool, nulls_first: bool) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) if nulls_first => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) if nulls_first => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(x), Some(y)) if descending => y.cmp(&x),
        (Some(x), Some(y)) => x.cmp(&y),
    }
}

struct Window {
    partitioned: bool,
    ordered: bool,
    descending: bool,
    nulls_first: bool,
    frame: Frame,
}

impl Window {
    fn call(&self, function: AnalyticFunction, arguments: Vec<Expr>) -> AnalyticCall {
        AnalyticCall {
            function,
            arguments,
            filter: None,
            partition_by: if self.partitioned {
                vec![Expr::Column(0)]
            } else {
                vec![]
            },
            order_by: if self.ordered {
                vec![AnalyticOrder {
                    expr: Expr::Column(1),
                    descending: self.descending,
                    nulls_first: self.nulls_first,
                }]
            } else {
                vec![]
            },
            frame: self.frame.clone(),
            ignore_nulls: false,
            text: "test".into(),
        }
    }

    /// Row `row`'s partition in window order (ties by arrival), and its position there.
    fn sorted_partition(&self, batch: &RecordBatch, row: usize) -> (Vec<usize>, usize) {
        let mut members: Vec<usize> = (0..batch.num_rows())
            .filter(|&r| !self.partitioned || int(batch, 0, r) == int(batch, 0, row))
            .collect();
        if self.ordered {
            members.sort_by(|&a, &b| {
                compare_key(
                    int(batch, 1, a),
                    int(batch, 1, b),
                    self.descending,
                    self.nulls_first,
                )
                .then(a.cmp(&b))
            });
        }
        let position = members.iter().position(|&r| r == row).unwrap();
        (members, position)
    }

    fn peers(&self, batch: &RecordBatch, members: &[usize], position: usize) -> (usize, usize) {
        if !self.ordered {
            return (0, members.len());
        }
        let key = int(batch, 1, members[position]);
        let first = members
            .iter()
            .position(|&r| int(batch, 1, r) == key)
            .unwrap();
        let last = members
            .iter()
            .rposition(|&r| int(batch, 1, r) == key)
            .unwrap();
        (first, last + 1)
    }

    /// The frame as positions in the sorted partition.
    fn frame(&self, batch: &RecordBatch, members: &[usize], position: usize) -> Vec<usize> {
        let (peer_start, peer_end) = self.peers(batch, members, position);
        if self.frame.units == FrameUnits::Groups {
            // Peer group numbers along the partition: a new one at each change of ORDER BY key.
            let mut group = Vec::with_capacity(members.len());
            for i in 0..members.len() {
                let changed = i > 0
                    && self.ordered
                    && int(batch, 1, members[i]) != int(batch, 1, members[i - 1]);
                group.push(group.last().map_or(0, |g| g + i64::from(changed)));
            }
            let current = group[position];
            let bound = |b: &FrameBound| match b {
                FrameBound::UnboundedPreceding => i64::MIN,
                FrameBound::Preceding(k) => current - *k as i64,
                FrameBound::Following(k) => current + *k as i64,
                FrameBound::UnboundedFollowing => i64::MAX,
                _ => current,
            };
            let (low, high) = (bound(&self.frame.start), bound(&self.frame.end));
            return (0..members.len())
                .filter(|&i| low <= group[i] && group[i] <= high)
                .map(|i| members[i])
                .collect();
        }
        let rows = self.frame.units == FrameUnits::Rows;
        let n = members.len() as i64;
        let p = position as i64;
        // RANGE offsets: the rows whose key lies within the offsets (keyless rows: the peers).
        let key = |i: usize| int(batch, 1, members[i]);
        let current = key(position);
        let value_ok = |i: usize, bound: &FrameBound, is_start: bool| -> bool {
            let (offset, preceding) = match bound {
                FrameBound::PrecedingValue(Literal::Int64(k)) => (*k, true),
                FrameBound::FollowingValue(Literal::Int64(k)) => (*k, false),
                _ => return true,
            };
            let Some(v) = current else {
                // A keyless current row: the offset bound is its peers' edge.
                return if is_start {
                    i >= peer_start
                } else {
                    i < peer_end
                };
            };
            let Some(x) = key(i) else {
                // NULL keys sort before (NULLS FIRST) or after every key.
                return self.nulls_first != is_start;
            };
            // Signed distance along window order from the current key to x.
            let along = if self.descending { v - x } else { x - v };
            let limit = if preceding { -offset } else { offset };
            if is_start {
                along >= limit
            } else {
                along <= limit
            }
        };
        let start = match &self.frame.start {
            FrameBound::PrecedingValue(_) | FrameBound::FollowingValue(_) => 0,
            FrameBound::UnboundedPreceding => 0,
            FrameBound::Preceding(k) => p - *k as i64,
            FrameBound::CurrentRow if rows => p,
            FrameBound::CurrentRow => peer_start as i64,
            FrameBound::Following(k) => p + *k as i64,
            FrameBound::UnboundedFollowing => n,
        };
        let last = match &self.frame.end {
            FrameBound::PrecedingValue(_) | FrameBound::FollowingValue(_) => n - 1,
            FrameBound::UnboundedPreceding => -1,
            FrameBound::Preceding(k) => p - *k as i64,
            FrameBound::CurrentRow if rows => p,
            FrameBound::CurrentRow => peer_end as i64 - 1,
            FrameBound::Following(k) => p + *k as i64,
            FrameBound::UnboundedFollowing => n - 1,
        };
        (start.max(0)..=last.min(n - 1))
            .map(|i| i as usize)
            .filter(|&i| {
                value_ok(i, &self.frame.start, true) && value_ok(i, &self.frame.end, false)
            })
            .map(|i| members[i])
            .collect()
    }
}

fn check(window: &Window, batch: &RecordBatch) {
    let sorted: Vec<(Vec<usize>, usize)> = (0..batch.num_rows())
        .map(|row| window.sorted_partition(batch, row))
        .collect();
    let ranks = [
        AnalyticFunction::RowNumber,
        AnalyticFunction::Rank,
        AnalyticFunction::DenseRank,
    ];
    for function in ranks {
        let got = window
            .call(function.clone(), vec![])
            .evaluate(batch)
            .unwrap();
        let got = got.as_primitive::<Int64Type>();
        for (row, (members, position)) in sorted.iter().enumerate() {
            let position = *position;
            let (peer_start, _) = window.peers(batch, members, position);
            let expected = match function {
                AnalyticFunction::RowNumber => position + 1,
                AnalyticFunction::Rank => peer_start + 1,
                _ => {
                    let mut keys: Vec<Option<i64>> = members[..=position]
                        .iter()
                        .map(|&r| int(batch, 1, r))
                        .collect();
                    keys.dedup();
                    if window.ordered {
                        keys.len()
                    } else {
                        1
                    }
                }
            };
            assert_eq!(got.value(row), expected as i64, "{function:?} row {row}");
        }
    }
    for (function, arguments) in [
        (AnalyticFunction::Lag, vec![Expr::Column(2)]),
        (
            AnalyticFunction::Lead,
            vec![
                Expr::Column(2),
                Expr::Literal(Literal::Int64(2)),
                Expr::Literal(Literal::Int64(-7)),
            ],
        ),
    ] {
        let got = window
            .call(function.clone(), arguments)
            .evaluate(batch)
            .unwrap();
        let got = got.as_primitive::<Int64Type>();
        for (row, (members, position)) in sorted.iter().enumerate() {
            let position = *position;
            let expected = match function {
                AnalyticFunction::Lag => position
                    .checked_sub(1)
                    .and_then(|p| int(batch, 2, members[p])),
                _ => members
                    .get(position + 2)
                    .map_or(Some(-7), |&r| int(batch, 2, r)),
            };
            let value = got.is_valid(row).then(|| got.value(row));
            assert_eq!(value, expected, "{function:?} row {row}");
        }
    }
    let values =
        |frame: &[usize]| -> Vec<Option<i64>> { frame.iter().map(|&r| int(batch, 2, r)).collect() };
    // Value functions over the frame.
    for function in [
        AnalyticFunction::FirstValue,
        AnalyticFunction::LastValue,
        AnalyticFunction::NthValue,
    ] {
        let arguments = match function {
            AnalyticFunction::NthValue => vec![Expr::Column(2), Expr::Literal(Literal::Int64(2))],
            _ => vec![Expr::Column(2)],
        };
        let got = window
            .call(function.clone(), arguments)
            .evaluate(batch)
            .unwrap();
        let got = got.as_primitive::<Int64Type>();
        for (row, (members, position)) in sorted.iter().enumerate() {
            let position = *position;
            let frame = values(&window.frame(batch, members, position));
            let expected = match function {
                AnalyticFunction::FirstValue => frame.first().copied().flatten(),
                AnalyticFunction::LastValue => frame.last().copied().flatten(),
                _ => frame.get(1).copied().flatten(),
            };
            let value = got.is_valid(row).then(|| got.value(row));
            assert_eq!(value, expected, "{function:?} row {row}");
        }
    }
    // IGNORE NULLS: offsets and positions count only the rows whose value is not NULL.
    for (function, arguments) in [
        (AnalyticFunction::Lag, vec![Expr::Column(2)]),
        (
            AnalyticFunction::Lag,
            vec![Expr::Column(2), Expr::Literal(Literal::Int64(-2))],
        ),
        (
            AnalyticFunction::Lead,
            vec![
                Expr::Column(2),
                Expr::Literal(Literal::Int64(2)),
                Expr::Literal(Literal::Int64(-7)),
            ],
        ),
        (
            AnalyticFunction::Lead,
            vec![Expr::Column(2), Expr::Literal(Literal::Int64(0))],
        ),
        (AnalyticFunction::FirstValue, vec![Expr::Column(2)]),
        (AnalyticFunction::LastValue, vec![Expr::Column(2)]),
        (
            AnalyticFunction::NthValue,
            vec![Expr::Column(2), Expr::Literal(Literal::Int64(2))],
        ),
    ] {
        let offset = match arguments.get(1) {
            Some(Expr::Literal(Literal::Int64(o))) => *o,
            _ => 1,
        };
        let default = match arguments.get(2) {
            Some(Expr::Literal(Literal::Int64(d))) => Some(*d),
            _ => None,
        };
        let mut call = window.call(function.clone(), arguments);
        call.ignore_nulls = true;
        let got = call.evaluate(batch).unwrap();
        let got = got.as_primitive::<Int64Type>();
        for (row, (members, position)) in sorted.iter().enumerate() {
            let position = *position;
            let non_null_values = |rows: &[usize]| -> Vec<i64> {
                rows.iter().filter_map(|&r| int(batch, 2, r)).collect()
            };
            let expected = match function {
                AnalyticFunction::Lag | AnalyticFunction::Lead => {
                    let forward = if function == AnalyticFunction::Lag {
                        -offset
                    } else {
                        offset
                    };
                    let found = if forward == 0 {
                        Some(int(batch, 2, members[position]))
                    } else if forward > 0 {
                        non_null_values(&members[position + 1..])
                            .get(forward as usize - 1)
                            .map(|&v| Some(v))
                    } else {
                        let before = non_null_values(&members[..position]);
                        before
                            .len()
                            .checked_sub(forward.unsigned_abs() as usize)
                            .map(|i| Some(before[i]))
                    };
                    found.unwrap_or(default)
                }
                _ => {
                    let present = non_null_values(&window.frame(batch, members, position));
                    match function {
                        AnalyticFunction::FirstValue => present.first().copied(),
                        AnalyticFunction::LastValue => present.last().copied(),
                        _ => present.get(1).copied(),
                    }
                }
            };
            let value = got.is_valid(row).then(|| got.value(row));
            assert_eq!(value, expected, "{function:?} IGNORE NULLS row {row}");
        }
    }
    // Aggregates over the frame.
    for function in [
        AggregateFunction::Sum,
        AggregateFunction::Count,
        AggregateFunction::CountStar,
        AggregateFunction::Min,
        AggregateFunction::Max,
        AggregateFunction::CountDistinct,
    ] {
        let arguments = match function {
            AggregateFunction::CountStar => vec![],
            _ => vec![Expr::Column(2)],
        };
        let call = window.call(
            AnalyticFunction::Aggregate {
                function,
                separator: String::new(),
            },
            arguments,
        );
        let got = call.evaluate(batch).unwrap();
        assert_eq!(got.data_type(), &call.data_type(&batch.schema()).unwrap());
        let got = got.as_primitive::<Int64Type>();
        for (row, (members, position)) in sorted.iter().enumerate() {
            let position = *position;
            let frame_rows = window.frame(batch, members, position);
            let present: Vec<i64> = values(&frame_rows).into_iter().flatten().collect();
            let expected = match function {
                AggregateFunction::Sum => (!present.is_empty())
                    .then(|| present.iter().map(|&v| v as i128).sum::<i128>() as i64),
                AggregateFunction::Count => Some(present.len() as i64),
                AggregateFunction::CountStar => Some(frame_rows.len() as i64),
                AggregateFunction::Min => present.iter().min().copied(),
                AggregateFunction::Max => present.iter().max().copied(),
                _ => {
                    let mut distinct = present.clone();
                    distinct.sort_unstable();
                    distinct.dedup();
                    Some(distinct.len() as i64)
                }
            };
            let value = got.is_valid(row).then(|| got.value(row));
            assert_eq!(value, expected, "{function:?} row {row}");
        }
    }
    // Percentiles over the frame (forward-moving frames take the sliding path).
    for function in [
        AggregateFunction::Median,
        AggregateFunction::PercentileCont(0.3),
    ] {
        let call = window.call(
            AnalyticFunction::Aggregate {
                function,
                separator: String::new(),
            },
            vec![Expr::Column(2)],
        );
        let got = call.evaluate(batch).unwrap();
        let got = got.as_primitive::<arrow::datatypes::Float64Type>();
        for (row, (members, position)) in sorted.iter().enumerate() {
            let mut present: Vec<f64> = values(&window.frame(batch, members, *position))
                .into_iter()
                .flatten()
                .map(|v| v as f64)
                .collect();
            present.sort_by(f64::total_cmp);
            let fraction = match function {
                AggregateFunction::PercentileCont(f) => f,
                _ => 0.5,
            };
            let expected = quiver_kernels::more_accumulators::percentile_cont(&present, fraction);
            let value = got.is_valid(row).then(|| got.value(row));
            assert_eq!(value, expected, "{function:?} row {row}");
        }
    }
    // STRING_AGG sees the frame's rows in window order.
    let call = window.call(
        AnalyticFunction::Aggregate {
            function: AggregateFunction::StringAgg,
            separator: "|".into(),
        },
        vec![Expr::Column(3)],
    );
    let got = call.evaluate(batch).unwrap();
    let got = got.as_string::<i32>();
    for (row, (members, position)) in sorted.iter().enumerate() {
        let position = *position;
        let present: Vec<String> = values(&window.frame(batch, members, position))
            .into_iter()
            .flatten()
            .map(|v| v.to_string())
            .collect();
        let expected = (!present.is_empty()).then(|| present.join("|"));
        let value = got.is_valid(row).then(|| got.value(row).to_string());
        assert_eq!(value, expected, "STRING_AGG row {row}");
    }
}

fn frames() -> Vec<Frame> {
    use FrameBound::*;
    let rows = |start, end| Frame::try_new(FrameUnits::Rows, start, end).unwrap();
    let range = |start, end| Frame::try_new(FrameUnits::Range, start, end).unwrap();
    let groups = |start, end| Frame::try_new(FrameUnits::Groups, start, end).unwrap();
    vec![
        groups(Preceding(1), CurrentRow),
        groups(Preceding(2), Following(1)),
        groups(CurrentRow, Following(2)),
        groups(UnboundedPreceding, Preceding(1)),
        groups(Following(1), UnboundedFollowing),
        groups(Following(2), Following(3)),
        groups(Preceding(3), Preceding(2)),
        groups(CurrentRow, CurrentRow),
        Frame::DEFAULT,
        range(UnboundedPreceding, UnboundedFollowing),
        range(CurrentRow, UnboundedFollowing),
        range(CurrentRow, CurrentRow),
        range(Preceding(2), CurrentRow),
        range(Preceding(1), Following(3)),
        range(UnboundedPreceding, Following(0)),
        range(Following(1), Following(2)),
        range(Preceding(3), Preceding(1)),
        range(CurrentRow, Following(1)),
        rows(UnboundedPreceding, CurrentRow),
        rows(Preceding(2), CurrentRow),
        rows(Preceding(1), Following(1)),
        rows(CurrentRow, Following(3)),
        rows(Following(1), Following(2)),
        rows(Preceding(3), Preceding(1)),
        rows(Preceding(0), UnboundedFollowing),
        rows(UnboundedPreceding, Following(100)),
    ]
}

#[test]
fn window_functions_match_the_reference() {
    let mut rng = StdRng::seed_from_u64(7);
    for frame in frames() {
        for (rows, partitions, null_fraction) in [
            (0, 1, 0.0),
            (1, 1, 0.0),
            (37, 3, 0.1),
            (64, 1, 0.0),
            (150, 10, 0.3),
            (200, 200, 0.0),
        ] {
            let batch = random_batch(&mut rng, rows, partitions, null_fraction);
            for (partitioned, ordered, descending, nulls_first) in [
                (true, true, false, false),
                (true, true, true, true),
                (false, true, false, true),
                (true, false, false, false),
                (false, false, false, false),
            ] {
                let value_offset = |b: &FrameBound| {
                    matches!(
                        b,
                        FrameBound::PrecedingValue(_) | FrameBound::FollowingValue(_)
                    )
                };
                if !ordered && (value_offset(&frame.start) || value_offset(&frame.end)) {
                    // A RANGE offset needs an ORDER BY key.
                    continue;
                }
                let window = Window {
                    partitioned,
                    ordered,
                    descending,
                    nulls_first,
                    frame: frame.clone(),
                };
                check(&window, &batch);
            }
        }
    }
}

#[test]
fn a_large_partition_uses_many_tree_levels() {
    let mut rng = StdRng::seed_from_u64(11);
    let batch = random_batch(&mut rng, 1200, 2, 0.05);
    let window = Window {
        partitioned: true,
        ordered: true,
        descending: false,
        nulls_first: false,
        frame: Frame::try_new(
            FrameUnits::Rows,
            FrameBound::Preceding(37),
            FrameBound::Following(5),
        )
        .unwrap(),
    };
    check(&window, &batch);
}

#[test]
fn ntile_and_distribution_functions() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("p", DataType::Int64, true),
        Field::new("o", DataType::Int64, true),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(vec![1, 1, 1, 1, 1, 1, 1, 2, 2])) as ArrayRef,
            Arc::new(Int64Array::from(vec![5, 1, 2, 2, 3, 4, 6, 1, 1])),
        ],
    )
    .unwrap();
    let window = Window {
        partitioned: true,
        ordered: true,
        descending: false,
        nulls_first: false,
        frame: Frame::DEFAULT,
    };
    let ntile = window
        .call(
            AnalyticFunction::Ntile,
            vec![Expr::Literal(Literal::Int64(3))],
        )
        .evaluate(&batch)
        .unwrap();
    // Partition 1 in order: o = 1 2 2 3 4 5 6 → buckets 1 1 1 2 2 3 3.
    assert_eq!(
        ntile.as_primitive::<Int64Type>().values().to_vec(),
        vec![3, 1, 1, 1, 2, 2, 3, 1, 2]
    );
    let percent = window
        .call(AnalyticFunction::PercentRank, vec![])
        .evaluate(&batch)
        .unwrap();
    let percent = percent.as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!(percent.value(2), 1.0 / 6.0);
    assert_eq!(percent.value(3), 1.0 / 6.0);
    assert_eq!(percent.value(7), 0.0);
    let cume = window
        .call(AnalyticFunction::CumeDist, vec![])
        .evaluate(&batch)
        .unwrap();
    let cume = cume.as_primitive::<arrow::datatypes::Float64Type>();
    assert_eq!(cume.value(2), 3.0 / 7.0);
    assert_eq!(cume.value(7), 1.0);
    let zero = window
        .call(
            AnalyticFunction::Ntile,
            vec![Expr::Literal(Literal::Int64(0))],
        )
        .evaluate(&batch)
        .unwrap_err();
    assert!(zero.to_string().contains("positive"), "{zero}");
}

#[test]
fn invalid_frames_are_refused() {
    use FrameBound::*;
    for (units, start, end) in [
        (FrameUnits::Rows, UnboundedFollowing, UnboundedFollowing),
        (FrameUnits::Rows, CurrentRow, UnboundedPreceding),
        (FrameUnits::Rows, CurrentRow, Preceding(1)),
        (FrameUnits::Rows, Following(1), CurrentRow),
        (
            FrameUnits::Range,
            PrecedingValue(Literal::Int64(-1)),
            CurrentRow,
        ),
        (
            FrameUnits::Rows,
            PrecedingValue(Literal::Int64(1)),
            CurrentRow,
        ),
    ] {
        let text = format!("{start:?} {end:?}");
        assert!(Frame::try_new(units, start, end).is_err(), "{text}");
    }
}
