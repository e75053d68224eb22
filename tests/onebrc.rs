//! The 1BRC conformance samples through ingest (parsed values checked) and through the generic
//! hash aggregation kernels (MIN/SUM/COUNT/MAX by station), compared with the official outputs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers fail loudly by design.

use std::path::{Path, PathBuf};

use arrow::array::AsArray;
use arrow::buffer::Buffer;
use arrow::datatypes::{Decimal128Type, Int64Type};
use quiver_ingest::{onebrc, IngestConfig};
use quiver_kernels::onebrc::{push_tenths, StationStats};
use quiver_kernels::{AggregateExpr, AggregateFunction as F, EmitTo, HashAggregator};

fn samples() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/1brc");
    let mut samples: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt") && !p.ends_with("LICENSE.txt"))
        .collect();
    samples.sort();
    samples
}

/// Parses a sample line by line with the standard library: the plain reading of the format.
fn plain_parse(text: &str) -> Vec<(String, i128)> {
    text.lines()
        .map(|line| {
            let (station, temperature) = line.rsplit_once(';').unwrap();
            let tenths: i128 = temperature.replace('.', "").parse().unwrap();
            (station.to_string(), tenths)
        })
        .collect()
}

#[test]
fn parser_yields_every_station_and_temperature() {
    for sample in samples() {
        let text = std::fs::read_to_string(&sample).unwrap();
        let expected = plain_parse(&text);
        for chunks in [1, 3, 16] {
            let config = IngestConfig::default().with_batch_size_rows(7);
            let out =
                onebrc::parse_buffer(&Buffer::from(text.as_bytes().to_vec()), &config, chunks)
                    .unwrap();
            assert_eq!(out.rejected_rows, 0, "{}", sample.display());
            let mut parsed = Vec::new();
            for batch in &out.batches {
                let stations = batch.column(0).as_string_view();
                let temperatures = batch.column(1).as_primitive::<Decimal128Type>();
                for i in 0..batch.num_rows() {
                    parsed.push((stations.value(i).to_string(), temperatures.value(i)));
                }
            }
            assert_eq!(parsed, expected, "{} in {chunks} chunks", sample.display());
        }
    }
}

#[test]
fn generic_kernels_reproduce_the_official_outputs() {
    for sample in samples() {
        let buffer = onebrc::map_file(&sample).unwrap();
        let out =
            onebrc::parse_buffer(&buffer, &IngestConfig::default().with_batch_size_rows(5), 2)
                .unwrap();
        let aggregates = vec![
            AggregateExpr::new(F::Min, Some(1), "min"),
            AggregateExpr::new(F::Sum, Some(1), "sum"),
            AggregateExpr::new(F::CountStar, None, "count"),
            AggregateExpr::new(F::Max, Some(1), "max"),
        ];
        let mut aggregator =
            HashAggregator::try_new(onebrc::schema(), vec![0], aggregates).unwrap();
        for batch in &out.batches {
            aggregator.update(batch).unwrap();
        }
        let result = aggregator.evaluate(EmitTo::All).unwrap();
        let stations = result.column(0).as_string_view();
        let min = result.column(1).as_primitive::<Decimal128Type>();
        let sum = result.column(2).as_primitive::<Decimal128Type>();
        let count = result.column(3).as_primitive::<Int64Type>();
        let max = result.column(4).as_primitive::<Decimal128Type>();
        let mut rows: Vec<(String, String)> = (0..result.num_rows())
            .map(|i| {
                let stats = StationStats {
                    min_tenths: min.value(i) as i16,
                    max_tenths: max.value(i) as i16,
                    sum_tenths: sum.value(i) as i64,
                    count: count.value(i) as u64,
                };
                let mut text = String::new();
                push_tenths(&mut text, i64::from(stats.min_tenths));
                text.push('/');
                push_tenths(&mut text, stats.mean_tenths());
                text.push('/');
                push_tenths(&mut text, i64::from(stats.max_tenths));
                (stations.value(i).to_string(), text)
            })
            .collect();
        rows.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let body: Vec<String> = rows.iter().map(|(s, v)| format!("{s}={v}")).collect();
        let actual = format!("{{{}}}\n", body.join(", "));
        let expected = std::fs::read_to_string(sample.with_extension("out")).unwrap();
        assert_eq!(actual, expected, "{}", sample.display());
    }
}
