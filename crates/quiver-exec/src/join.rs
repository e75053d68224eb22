//! Hash joins of the scanned rows with in-memory tables (`FROM s JOIN t ON s.x = t.y`).
//!
//! The joined table is the build side: its key columns are mapped to dense ids by the same
//! group-id mapping the aggregation kernels use, and its rows listed per id. Each scanned batch
//! probes with its own keys; ids past the table's mean no match. A key holding a NULL never
//! matches (the table's rows with one are left out of the map, and a probe key with one maps to
//! an id of its own). Candidate pairs then pass the rest of the `ON` condition; a `LEFT JOIN`
//! keeps each scanned row without a match once, with NULLs. Output rows keep the scanned rows'
//! order.

use std::sync::Arc;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, BooleanArray, RecordBatch, RecordBatchOptions,
    UInt32Array,
};
use arrow::compute::{concat_batches, filter_record_batch, take};
use arrow::datatypes::{DataType, Field, Schema};
use quiver_core::{QuiverError, Result};
use quiver_kernels::group_values::{new_group_values, GroupValues};
use quiver_sql::{JoinKind, Plan, PlanJoin};

/// Probe keys interned beyond the table's own before the key map is rebuilt (distinct probe
/// keys without a match would otherwise stay in it).
const SPARE_PROBE_KEYS: usize = 1 << 16;

/// At most this many matching pairs per probed batch.
const MAX_PAIRS: usize = u32::MAX as usize;

/// Candidate pairs checked against the rest of `ON` at a time.
const PAIR_CHUNK: usize = 1 << 16;

/// One joined table, ready to probe.
pub struct JoinTable {
    join: PlanJoin,
    rows: RecordBatch,
    /// The table's keys, for its rows whose keys hold no NULL (rebuilds the map).
    keys_without_nulls: Vec<ArrayRef>,
    /// None without equality keys: every row is a candidate for every probe row.
    key_map: Option<Box<dyn GroupValues>>,
    /// Ids `0..table_keys` are the table's keys.
    table_keys: usize,
    /// Rows of key id `i`: `key_rows[key_starts[i]..key_starts[i + 1]]`.
    key_starts: Vec<u32>,
    key_rows: Vec<u32>,
    probe_ids: Vec<u32>,
    /// `RIGHT` / `FULL`: which of the table's rows matched some probe row so far.
    matched: Vec<bool>,
}

impl std::fmt::Debug for JoinTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinTable")
            .field("table", &self.join.table)
            .field("rows", &self.rows.num_rows())
            .field("keys", &self.table_keys)
            .finish()
    }
}

impl JoinTable {
    /// The build sides of every join of `plan` (not of its subquery).
    pub fn for_plan(plan: &Plan) -> Result<Vec<JoinTable>> {
        plan.joins.iter().map(JoinTable::try_new).collect()
    }

    /// Builds the key map of `join`'s table.
    pub fn try_new(join: &PlanJoin) -> Result<JoinTable> {
        let batches = join.rows.as_ref().ok_or_else(|| {
            QuiverError::Config(format!(
                "table `{}` is joined, but its rows were not given (`quiver run --table {}=PATH`, \
                 or `Engine::register_table`)",
                join.table, join.table
            ))
        })?;
        let mut rows = concat_batches(&join.schema, batches)?;
        if let Some(table_filter) = &join.table_filter {
            // Rows failing the conditions on the table alone can never match.
            let keep = table_filter.evaluate(&rows)?;
            let keep = keep.as_boolean_opt().ok_or_else(|| {
                QuiverError::Internal(format!("join filter of type {}", keep.data_type()))
            })?;
            rows = filter_record_batch(&rows, keep)?;
        }
        let row_count = u32::try_from(rows.num_rows()).map_err(|_| {
            QuiverError::ResourceExhausted(format!(
                "joined table `{}` has {} rows; at most {} are supported",
                join.table,
                rows.num_rows(),
                u32::MAX
            ))
        })?;
        let mut table = JoinTable {
            join: join.clone(),
            rows,
            keys_without_nulls: Vec::new(),
            key_map: None,
            table_keys: 1,
            key_starts: vec![0, row_count],
            key_rows: (0..row_count).collect(),
            probe_ids: Vec::new(),
            matched: if join.kind.keeps_unmatched_table_rows() {
                vec![false; row_count as usize]
            } else {
                Vec::new()
            },
        };
        if join.right_keys.is_empty() {
            return Ok(table);
        }
        let keys = join
            .right_keys
            .iter()
            .map(|k| k.evaluate(&table.rows))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let usable: UInt32Array = (0..row_count)
            .filter(|&r| keys.iter().all(|k| k.is_valid(r as usize)))
            .collect();
        table.keys_without_nulls = keys
            .iter()
            .map(|k| take(k.as_ref(), &usable, None))
            .collect::<std::result::Result<_, _>>()?;
        table.rebuild_key_map()?;
        let ids = &table.probe_ids;
        let mut starts = vec![0_u32; table.table_keys + 1];
        for &id in ids {
            starts[id as usize + 1] += 1;
        }
        for i in 0..table.table_keys {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut key_rows = vec![0_u32; ids.len()];
        for (&id, &row) in ids.iter().zip(usable.values()) {
            key_rows[next[id as usize] as usize] = row;
            next[id as usize] += 1;
        }
        table.key_starts = starts;
        table.key_rows = key_rows;
        Ok(table)
    }

    /// A fresh key map holding exactly the table's keys (ids in first-seen order, as before).
    fn rebuild_key_map(&mut self) -> Result<()> {
        let types: Vec<_> = self
            .keys_without_nulls
            .iter()
            .map(|k| k.data_type().clone())
            .collect();
        let mut map = new_group_values(&types)?;
        map.intern(&self.keys_without_nulls, &mut self.probe_ids)?;
        self.table_keys = map.len();
        self.key_map = Some(map);
        Ok(())
    }

    /// The rows of `left` (the rows before this join) paired with this table's rows.
    pub fn probe(&mut self, left: &RecordBatch) -> Result<RecordBatch> {
        // Each probe row's candidate ids (the table's key id, or all rows without keys).
        let with_keys = match &mut self.key_map {
            None => false,
            Some(map) => {
                let keys = self
                    .join
                    .left_keys
                    .iter()
                    .map(|k| k.evaluate(left))
                    .collect::<Result<Vec<ArrayRef>>>()?;
                map.intern(&keys, &mut self.probe_ids)?;
                true
            }
        };
        let mut left_rows: Vec<u32> = Vec::new();
        let mut right_rows: Vec<u32> = Vec::new();
        // Candidate pairs are checked against the rest of ON a chunk at a time, so a wide
        // cross product never exists whole.
        let mut chunk_left: Vec<u32> = Vec::new();
        let mut chunk_right: Vec<u32> = Vec::new();
        for l in 0..left.num_rows() {
            let candidates: &[u32] = if !with_keys {
                &self.key_rows
            } else {
                let id = self.probe_ids[l] as usize;
                if id >= self.table_keys {
                    continue;
                }
                &self.key_rows[self.key_starts[id] as usize..self.key_starts[id + 1] as usize]
            };
            for piece in candidates.chunks(PAIR_CHUNK) {
                chunk_left.extend(std::iter::repeat_n(l as u32, piece.len()));
                chunk_right.extend_from_slice(piece);
                if chunk_left.len() >= PAIR_CHUNK {
                    self.keep_matching(
                        left,
                        &mut chunk_left,
                        &mut chunk_right,
                        &mut left_rows,
                        &mut right_rows,
                    )?;
                }
            }
        }
        self.keep_matching(
            left,
            &mut chunk_left,
            &mut chunk_right,
            &mut left_rows,
            &mut right_rows,
        )?;
        if let Some(map) = &self.key_map {
            if map.len() > self.table_keys * 2 + SPARE_PROBE_KEYS {
                self.rebuild_key_map()?;
            }
        }
        if self.join.kind.keeps_unmatched_table_rows() {
            for &r in &right_rows {
                self.matched[r as usize] = true;
            }
        }
        if self.join.kind == JoinKind::Mark {
            let mut marks = vec![false; left.num_rows()];
            for &l in &left_rows {
                marks[l as usize] = true;
            }
            let mut fields: Vec<Field> = left
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect();
            fields.push(Field::new(
                quiver_sql::MARK_COLUMN,
                DataType::Boolean,
                false,
            ));
            let mut columns = left.columns().to_vec();
            columns.push(Arc::new(BooleanArray::from(marks)));
            let options = RecordBatchOptions::new().with_row_count(Some(left.num_rows()));
            return Ok(RecordBatch::try_new_with_options(
                Arc::new(Schema::new(fields)),
                columns,
                &options,
            )?);
        }
        let (left_rows, right_rows): (Vec<u32>, Vec<Option<u32>>) = match self.join.kind {
            JoinKind::Inner | JoinKind::Right | JoinKind::Mark => {
                (left_rows, right_rows.into_iter().map(Some).collect())
            }
            JoinKind::Left | JoinKind::Full => {
                // Pairs come in scanned-row order; a row without one gets a NULL partner.
                let mut all_left = Vec::with_capacity(left_rows.len());
                let mut all_right = Vec::with_capacity(left_rows.len());
                let mut next = 0;
                for l in 0..left.num_rows() as u32 {
                    let first = next;
                    while next < left_rows.len() && left_rows[next] == l {
                        all_left.push(l);
                        all_right.push(Some(right_rows[next]));
                        next += 1;
                    }
                    if next == first {
                        all_left.push(l);
                        all_right.push(None);
                    }
                }
                (all_left, all_right)
            }
        };
        self.pairs(left, &left_rows, &right_rows)
    }

    /// Moves the candidate pairs of `chunk_*` that satisfy the rest of `ON` to `left_rows` /
    /// `right_rows` (all of them without a residual condition).
    fn keep_matching(
        &self,
        left: &RecordBatch,
        chunk_left: &mut Vec<u32>,
        chunk_right: &mut Vec<u32>,
        left_rows: &mut Vec<u32>,
        right_rows: &mut Vec<u32>,
    ) -> Result<()> {
        if chunk_left.is_empty() {
            return Ok(());
        }
        match &self.join.residual {
            None => {
                left_rows.append(chunk_left);
                right_rows.append(chunk_right);
            }
            Some(residual) => {
                let candidates = self.pairs(
                    left,
                    chunk_left,
                    &chunk_right.iter().map(|&r| Some(r)).collect::<Vec<_>>(),
                )?;
                let mask = residual.evaluate(&candidates)?;
                let mask = mask.as_boolean_opt().ok_or_else(|| {
                    QuiverError::Unsupported(format!(
                        "JOIN {} condition of type {}; a boolean is expected",
                        self.join.table,
                        mask.data_type()
                    ))
                })?;
                for i in 0..mask.len() {
                    if mask.is_valid(i) && mask.value(i) {
                        left_rows.push(chunk_left[i]);
                        right_rows.push(chunk_right[i]);
                    }
                }
                chunk_left.clear();
                chunk_right.clear();
            }
        }
        if left_rows.len() > MAX_PAIRS {
            return Err(QuiverError::ResourceExhausted(format!(
                "JOIN {}: more than {MAX_PAIRS} matching pairs from one batch of {} rows",
                self.join.table,
                left.num_rows()
            )));
        }
        Ok(())
    }

    /// `RIGHT` / `FULL`: the table's rows that matched no probe row so far, after NULLs for
    /// the columns of `left_schema` (the rows before the join).
    pub fn unmatched_rows(&self, left_schema: &Schema) -> Result<RecordBatch> {
        let unmatched: UInt32Array = (0..self.matched.len() as u32)
            .filter(|&r| !self.matched[r as usize])
            .collect();
        let count = unmatched.len();
        let mut fields = Vec::new();
        let mut columns = Vec::new();
        for field in left_schema.fields() {
            fields.push(field.as_ref().clone().with_nullable(true));
            columns.push(new_null_array(field.data_type(), count));
        }
        for (field, column) in self.rows.schema().fields().iter().zip(self.rows.columns()) {
            fields.push(Field::new(field.name(), field.data_type().clone(), true));
            columns.push(take(column.as_ref(), &unmatched, None)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(count));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &options,
        )?)
    }

    /// `left` rows side by side with this table's rows (NULLs for `None`).
    fn pairs(
        &self,
        left: &RecordBatch,
        left_rows: &[u32],
        right_rows: &[Option<u32>],
    ) -> Result<RecordBatch> {
        let left_indices = UInt32Array::from(left_rows.to_vec());
        let right_indices = UInt32Array::from(right_rows.to_vec());
        let mut fields: Vec<Field> = left
            .schema()
            .fields()
            .iter()
            .map(|f| {
                f.as_ref()
                    .clone()
                    .with_nullable(f.is_nullable() || self.join.kind.keeps_unmatched_table_rows())
            })
            .collect();
        fields.extend(
            self.rows
                .schema()
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true)),
        );
        let mut columns = left
            .columns()
            .iter()
            .map(|c| take(c.as_ref(), &left_indices, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for column in self.rows.columns() {
            columns.push(take(column.as_ref(), &right_indices, None)?);
        }
        let options = RecordBatchOptions::new().with_row_count(Some(left_rows.len()));
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            columns,
            &options,
        )?)
    }
}
