//! Parallel hash aggregation: each partition aggregates on its own rayon worker with state it
//! owns (no lock on the hot path); partial states are merged into one result at the end.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use quiver_core::Result;
use quiver_kernels::{AggregateExpr, EmitTo, HashAggregator};
use rayon::prelude::*;

/// What to aggregate: input schema, key columns and aggregates.
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    /// Schema of every input batch.
    pub input_schema: SchemaRef,
    /// Indices of the key columns.
    pub group_by: Vec<usize>,
    /// The aggregates.
    pub aggregates: Vec<AggregateExpr>,
    /// Optional bound on each partition's state.
    pub memory_limit_bytes: Option<usize>,
}

impl AggregatePlan {
    fn aggregator(&self) -> Result<HashAggregator> {
        let aggregator = HashAggregator::try_new(
            self.input_schema.clone(),
            self.group_by.clone(),
            self.aggregates.clone(),
        )?;
        Ok(match self.memory_limit_bytes {
            Some(limit) => aggregator.with_memory_limit(limit),
            None => aggregator,
        })
    }
}

/// Aggregates each partition's batches in parallel and merges the partial states.
///
/// The result equals aggregating all batches in one partition (group order may differ).
pub fn aggregate_partitions(
    plan: &AggregatePlan,
    partitions: &[Vec<RecordBatch>],
) -> Result<RecordBatch> {
    let states: Vec<RecordBatch> = partitions
        .par_iter()
        .map(|batches| {
            let mut aggregator = plan.aggregator()?;
            for batch in batches {
                aggregator.update(batch)?;
            }
            aggregator.state(EmitTo::All)
        })
        .collect::<Result<_>>()?;
    let mut merged = plan.aggregator()?;
    for state in &states {
        merged.merge(state)?;
    }
    merged.evaluate(EmitTo::All)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow::array::{AsArray, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use quiver_kernels::AggregateFunction;

    #[test]
    fn partitions_merge_to_the_single_partition_result() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("v", DataType::Int64, false),
        ]));
        let batch = |keys: Vec<&str>, values: Vec<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(keys)),
                    Arc::new(Int64Array::from(values)),
                ],
            )
            .unwrap()
        };
        let plan = AggregatePlan {
            input_schema: schema.clone(),
            group_by: vec![0],
            aggregates: vec![AggregateExpr::new(AggregateFunction::Sum, Some(1), "s")],
            memory_limit_bytes: None,
        };
        let partitions = vec![
            vec![batch(vec!["a", "b"], vec![1, 2])],
            vec![batch(vec!["b", "c"], vec![3, 4]), batch(vec!["a"], vec![5])],
        ];
        let out = aggregate_partitions(&plan, &partitions).unwrap();
        let keys = out.column(0).as_string::<i32>();
        let sums = out.column(1).as_primitive::<Int64Type>();
        let mut rows: Vec<(String, i64)> = (0..out.num_rows())
            .map(|i| (keys.value(i).to_string(), sums.value(i)))
            .collect();
        rows.sort();
        assert_eq!(
            rows,
            vec![("a".into(), 6), ("b".into(), 5), ("c".into(), 4)]
        );
    }
}
