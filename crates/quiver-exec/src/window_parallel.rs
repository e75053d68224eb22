//! The window operator over several rayon workers: rows are partitioned by a hash of their
//! group keys, each partition owns a [`WindowAggregator`] with its share of the state, and all
//! partitions run on the stream's one watermark (computed once per batch, before the split), so
//! the result equals one operator's. A (window, group) lives in exactly one partition, so
//! partition outputs combine by concatenation, ordered by window start.

use arrow::array::{ArrayRef, Int64Array, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::row::{RowConverter, SortField};
use quiver_core::{QuiverError, Result};
use quiver_kernels::hash::hash_bytes;
use quiver_kernels::window::event_times_ms;
use quiver_kernels::AggregateExpr;
use rayon::prelude::*;

use crate::window::{Rejected, WindowAggregator, WindowMetrics, WindowOptions, WindowOutput};

/// One partition's share of a batch: rows, their event times and watermarks, and their row
/// numbers in the batch.
type PartitionInput = (RecordBatch, Vec<Option<i64>>, Vec<i64>, Vec<u32>);

/// [`WindowAggregator`]s over hash partitions of the group keys.
#[derive(Debug)]
pub struct PartitionedWindowAggregator {
    partitions: Vec<WindowAggregator>,
    group_count: usize,
    converter: Option<RowConverter>,
    times: Vec<Option<i64>>,
}

impl PartitionedWindowAggregator {
    /// `partitions` operators (at least one) of the same configuration; without group keys
    /// everything runs in one partition.
    pub fn try_new(
        options: WindowOptions,
        input_schema: SchemaRef,
        group_count: usize,
        aggregates: Vec<AggregateExpr>,
        event_time_type: &DataType,
        partitions: usize,
    ) -> Result<Self> {
        let count = if group_count == 0 {
            1
        } else {
            partitions.max(1)
        };
        let partitions = (0..count)
            .map(|_| {
                WindowAggregator::try_new(
                    options,
                    input_schema.clone(),
                    group_count,
                    aggregates.clone(),
                    event_time_type,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let converter = if count > 1 {
            let fields = input_schema.fields()[..group_count]
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect();
            Some(RowConverter::new(fields)?)
        } else {
            None
        };
        Ok(PartitionedWindowAggregator {
            partitions,
            group_count,
            converter,
            times: Vec::new(),
        })
    }

    /// Schema of emitted batches (as [`WindowAggregator::output_schema`]).
    pub fn output_schema(&self) -> &SchemaRef {
        self.first().output_schema()
    }

    fn first(&self) -> &WindowAggregator {
        // `try_new` always makes at least one partition.
        &self.partitions[0]
    }

    /// Row accounting summed over partitions.
    pub fn metrics(&self) -> WindowMetrics {
        let mut total = WindowMetrics::default();
        for partition in &self.partitions {
            let m = partition.metrics();
            total.rows_in += m.rows_in;
            total.rows_aggregated += m.rows_aggregated;
            total.rows_late_updated += m.rows_late_updated;
            total.rows_late_dropped += m.rows_late_dropped;
            total.rows_dead_lettered += m.rows_dead_lettered;
            total.rows_emitted += m.rows_emitted;
            total.watermark_ms = total.watermark_ms.max(m.watermark_ms);
        }
        total
    }

    /// (window, group) states held over all partitions.
    pub fn state_groups(&self) -> usize {
        self.partitions.iter().map(|p| p.state_groups()).sum()
    }

    /// Aggregates one batch; see [`WindowAggregator::push`].
    pub fn push(&mut self, input: &RecordBatch, event_time: &ArrayRef) -> Result<WindowOutput> {
        if self.partitions.len() == 1 {
            return self.partitions[0].push(input, event_time);
        }
        let mut times = std::mem::take(&mut self.times);
        event_times_ms(event_time, &mut times)?;
        // One watermark for the stream, before the split.
        let (marks, batch_max_time) = self.first().row_watermarks(&times);
        let count = self.partitions.len();
        let mut rows_of: Vec<Vec<u32>> = vec![Vec::new(); count];
        let converter = self
            .converter
            .as_ref()
            .ok_or_else(|| QuiverError::Internal("partitioned window without keys".into()))?;
        let keys = converter.convert_columns(&input.columns()[..self.group_count])?;
        for row in 0..input.num_rows() {
            let hash = hash_bytes(keys.row(row).as_ref());
            let partition = ((hash >> 32) * count as u64) >> 32;
            rows_of[partition as usize].push(row as u32);
        }
        let work: Vec<PartitionInput> = rows_of
            .into_iter()
            .map(|rows| {
                let batch = crate::window::take_rows(input, rows.clone())?;
                let part_times = rows.iter().map(|&r| times[r as usize]).collect();
                let part_marks = rows.iter().map(|&r| marks[r as usize]).collect();
                Ok((batch, part_times, part_marks, rows))
            })
            .collect::<Result<_>>()?;
        self.times = times;
        let outputs: Vec<(WindowOutput, Vec<u32>)> = self
            .partitions
            .par_iter_mut()
            .zip(work)
            .map(|(partition, (batch, part_times, part_marks, rows))| {
                let output =
                    partition.push_prepared(&batch, &part_times, &part_marks, batch_max_time)?;
                Ok((output, rows))
            })
            .collect::<Result<_>>()?;
        let mut batches = Vec::new();
        let mut rejected = Vec::new();
        for (output, rows) in outputs {
            batches.extend(output.batches);
            rejected.extend(output.rejected.into_iter().map(|r| Rejected {
                row: rows[r.row] as usize,
                reason: r.reason,
            }));
        }
        rejected.sort_by_key(|r| r.row);
        Ok(WindowOutput {
            batches: self.combine(batches)?,
            rejected,
        })
    }

    /// Moves every partition's watermark; see [`WindowAggregator::advance_watermark`].
    pub fn advance_watermark(&mut self, watermark_ms: i64) -> Result<Vec<RecordBatch>> {
        let batches: Vec<Vec<RecordBatch>> = self
            .partitions
            .par_iter_mut()
            .map(|p| p.advance_watermark(watermark_ms))
            .collect::<Result<_>>()?;
        self.combine(batches.into_iter().flatten().collect())
    }

    /// Ends the input; see [`WindowAggregator::finish`].
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        let batches: Vec<Vec<RecordBatch>> = self
            .partitions
            .par_iter_mut()
            .map(|p| p.finish())
            .collect::<Result<_>>()?;
        self.combine(batches.into_iter().flatten().collect())
    }

    /// One batch ordered by window start (stable, so each partition's order is kept).
    fn combine(&self, batches: Vec<RecordBatch>) -> Result<Vec<RecordBatch>> {
        if batches.len() <= 1 {
            return Ok(batches);
        }
        let schema = self.output_schema().clone();
        let all = concat_batches(&schema, &batches)?;
        if schema.field(0).name() != "window_start" || all.num_rows() == 0 {
            return Ok(vec![all]);
        }
        let starts = arrow::compute::cast(all.column(0), &DataType::Int64)?;
        let starts = starts
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| QuiverError::Internal("window_start is not an integer".into()))?;
        // Stable: each partition's own order (retractions before inserts) is kept.
        let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
        order.sort_by_key(|&i| starts.value(i as usize));
        Ok(vec![take_record_batch(&all, &UInt32Array::from(order))?])
    }
}
