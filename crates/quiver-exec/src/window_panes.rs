//! The `EMIT FINAL` path for tumbling and hopping windows (late rows dropped or dead-lettered):
//! one [`HashAggregator`] per pane, keyed by the group keys only. A closing tumbling window is
//! its pane's `evaluate`; a closing hopping window merges its panes' partial states. A pane
//! stops receiving rows when the earliest window containing it closes (later rows for it are
//! late), so its state is frozen then, once, and reused by the later windows that contain it
//! until the last of them closes. Nothing is taken out and merged back, as the general path
//! must for `EMIT CHANGES` and corrections.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, RecordBatchOptions, UInt32Array};
use arrow::compute::{cast, concat_batches, take_record_batch};
use arrow::datatypes::{Field, Schema};
use quiver_core::{QuiverError, Result};
use quiver_kernels::window::align_down;
use quiver_kernels::{EmitTo, HashAggregator};

use super::WindowAggregator;

/// Per-pane state of the fast path.
#[derive(Default)]
pub(super) struct PaneStore {
    /// Panes still receiving rows.
    live: BTreeMap<i64, HashAggregator>,
    /// Partial states of panes no row can reach any more, kept for the windows still open.
    frozen: BTreeMap<i64, RecordBatch>,
}

impl PaneStore {
    pub(super) fn groups(&self) -> usize {
        self.live.values().map(|a| a.num_groups()).sum::<usize>()
            + self.frozen.values().map(|b| b.num_rows()).sum::<usize>()
    }

    pub(super) fn size(&self) -> usize {
        self.live.values().map(|a| a.size()).sum::<usize>()
            + self
                .frozen
                .values()
                .map(|b| b.get_array_memory_size())
                .sum::<usize>()
    }
}

impl WindowAggregator {
    fn pane_aggregator(&self) -> Result<HashAggregator> {
        HashAggregator::try_new(
            self.input_schema.clone(),
            (0..self.group_count).collect(),
            self.aggregates.clone(),
        )
    }

    /// Aggregates accepted rows (`kept`, with the pane of each row in `slots`) into their panes.
    pub(super) fn update_panes(&mut self, kept: &RecordBatch, slots: &[i64]) -> Result<()> {
        let Some(first) = slots.first().copied() else {
            return Ok(());
        };
        if slots.iter().all(|&s| s == first) {
            return self.update_pane(first, kept);
        }
        let mut rows_of: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (row, &slot) in slots.iter().enumerate() {
            rows_of.entry(slot).or_default().push(row as u32);
        }
        for (slot, rows) in rows_of {
            let part = super::take_rows(kept, rows)?;
            self.update_pane(slot, &part)?;
        }
        Ok(())
    }

    fn update_pane(&mut self, pane: i64, rows: &RecordBatch) -> Result<()> {
        if !self.panes_ref()?.live.contains_key(&pane) {
            let aggregator = self.pane_aggregator()?;
            self.panes_mut()?.live.insert(pane, aggregator);
        }
        match self.panes_mut()?.live.get_mut(&pane) {
            Some(aggregator) => aggregator.update(rows),
            None => Err(QuiverError::Internal(format!("pane {pane} vanished"))),
        }
    }

    fn panes_ref(&self) -> Result<&PaneStore> {
        self.panes
            .as_ref()
            .ok_or_else(|| QuiverError::Internal("pane path without panes".into()))
    }

    fn panes_mut(&mut self) -> Result<&mut PaneStore> {
        self.panes
            .as_mut()
            .ok_or_else(|| QuiverError::Internal("pane path without panes".into()))
    }

    /// Closes the windows the watermark passed (all when `finishing`) and emits them in order.
    pub(super) fn close_panes(&mut self, finishing: bool) -> Result<Vec<RecordBatch>> {
        let spec = self.options.spec;
        let (Some(size), Some(pane)) = (spec.size_ms(), spec.pane_ms()) else {
            return Err(QuiverError::Internal(format!("{spec:?} has no panes")));
        };
        let advance = match spec {
            quiver_kernels::window::WindowSpec::Hopping { advance_ms, .. } => advance_ms,
            _ => size,
        };
        let offset = match spec {
            quiver_kernels::window::WindowSpec::Hopping { offset_ms, .. }
            | quiver_kernels::window::WindowSpec::Tumbling { offset_ms, .. } => offset_ms,
            _ => 0,
        };
        let lateness = self.options.allowed_lateness_ms;
        let watermark = self.watermark_ms;
        let closes_at = |start: i64| start.saturating_add(size).saturating_add(lateness);
        let mut results = Vec::new();
        while let Some(&window) = self.open_windows.first() {
            if !finishing && closes_at(window) > watermark {
                break;
            }
            self.open_windows.pop_first();
            let result = if size == pane {
                // Tumbling: the window is its one pane.
                match self.panes_mut()?.live.remove(&window) {
                    Some(mut aggregator) => Some(aggregator.evaluate(EmitTo::All)?),
                    None => None,
                }
            } else {
                let mut merger = self.pane_aggregator()?;
                let mut pane_start = window;
                while pane_start < window.saturating_add(size) {
                    let store = self.panes_mut()?;
                    if let Some(mut aggregator) = store.live.remove(&pane_start) {
                        store
                            .frozen
                            .insert(pane_start, aggregator.state(EmitTo::All)?);
                    }
                    if let Some(state) = store.frozen.get(&pane_start) {
                        merger.merge(state)?;
                    }
                    pane_start = pane_start.saturating_add(pane);
                }
                Some(merger.evaluate(EmitTo::All)?)
            };
            if let Some(result) = result.filter(|r| r.num_rows() > 0) {
                results.push((window, result));
            }
        }
        // A frozen pane goes when the latest window containing it has closed.
        let store = self.panes_mut()?;
        if finishing {
            store.frozen.clear();
        } else {
            let mut expired = Vec::new();
            for &pane_start in store.frozen.keys() {
                if closes_at(align_down(pane_start, advance, offset)?) <= watermark {
                    expired.push(pane_start);
                } else {
                    break;
                }
            }
            for pane_start in expired {
                store.frozen.remove(&pane_start);
            }
        }
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let mut batches = Vec::with_capacity(results.len());
        for (window, result) in results {
            let rows = result.num_rows();
            let mut columns: Vec<ArrayRef> = Vec::with_capacity(result.num_columns() + 2);
            if let Some(window_type) = &self.window_type {
                columns.push(cast(&Int64Array::from(vec![window; rows]), window_type)?);
                columns.push(cast(
                    &Int64Array::from(vec![window.saturating_add(size); rows]),
                    window_type,
                )?);
            }
            columns.extend(result.columns().iter().cloned());
            let options = RecordBatchOptions::new().with_row_count(Some(rows));
            batches.push(RecordBatch::try_new_with_options(
                self.output_schema.clone(),
                columns,
                &options,
            )?);
        }
        let batch = concat_batches(&self.output_schema, &batches)?;
        self.metrics.rows_emitted += batch.num_rows() as u64;
        Ok(vec![batch])
    }

    /// Pane states as rows of the general path's state schema (`__slot`, keys, states), for
    /// checkpoints; live panes are taken out and merged back unchanged.
    pub(super) fn pane_state_batch(&mut self) -> Result<RecordBatch> {
        let schema = self.state.state_schema().clone();
        let mut parts: Vec<(i64, RecordBatch)> = Vec::new();
        let live: Vec<i64> = self.panes_ref()?.live.keys().copied().collect();
        for pane_start in live {
            let fresh = self.pane_aggregator()?;
            let store = self.panes_mut()?;
            let Some(mut aggregator) = store.live.insert(pane_start, fresh) else {
                continue;
            };
            let state = aggregator.state(EmitTo::All)?;
            if let Some(restored) = store.live.get_mut(&pane_start) {
                restored.merge(&state)?;
            }
            parts.push((pane_start, state));
        }
        for (&pane_start, state) in &self.panes_ref()?.frozen {
            parts.push((pane_start, state.clone()));
        }
        let mut batches = Vec::with_capacity(parts.len());
        for (pane_start, state) in parts {
            let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(vec![
                pane_start;
                state.num_rows()
            ]))];
            columns.extend(state.columns().iter().cloned());
            let options = RecordBatchOptions::new().with_row_count(Some(state.num_rows()));
            batches.push(RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &options,
            )?);
        }
        Ok(concat_batches(&schema, &batches)?)
    }

    /// Loads pane states written by [`WindowAggregator::pane_state_batch`]: every pane comes
    /// back live (a frozen pane receives no rows either way).
    pub(super) fn restore_panes(&mut self, state: &RecordBatch) -> Result<()> {
        let slots = state
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| QuiverError::Config("checkpoint pane column is not Int64".into()))?;
        let mut rows_of: BTreeMap<i64, Vec<u32>> = BTreeMap::new();
        for (row, &slot) in slots.values().iter().enumerate() {
            rows_of.entry(slot).or_default().push(row as u32);
        }
        let fields: Vec<Field> = state.schema().fields()[1..]
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let without_slot = RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            state.columns()[1..].to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(state.num_rows())),
        )?;
        let mut store = PaneStore::default();
        for (slot, rows) in rows_of {
            let mut aggregator = self.pane_aggregator()?;
            aggregator.merge(&take_record_batch(&without_slot, &UInt32Array::from(rows))?)?;
            store.live.insert(slot, aggregator);
        }
        self.panes = Some(store);
        Ok(())
    }
}
