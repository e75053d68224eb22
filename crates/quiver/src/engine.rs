//! The embedder's entry point: register sources, plan SQL, push batches or records through.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use quiver_core::{DeadLetter, QuiverError, Record, Result};
use quiver_exec::query::{QueryRunner, StreamOptions};
use quiver_exec::window::WindowMetrics;
use quiver_ingest::{IngestConfig, RecordBatcher, UnknownFields};

/// Registered sources, from which queries are planned.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    tables: Vec<(String, SchemaRef)>,
    /// Rows of tables registered with them, for JOINs.
    rows: Vec<(String, Vec<RecordBatch>)>,
    stream: StreamOptions,
}

impl Engine {
    /// An engine with no sources.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a source (table or stream) `name` with `schema`.
    pub fn register(mut self, name: impl Into<String>, schema: SchemaRef) -> Result<Self> {
        let name = name.into();
        if self
            .tables
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            return Err(QuiverError::Config(format!(
                "source `{name}` is registered twice"
            )));
        }
        self.tables.push((name, schema));
        Ok(self)
    }

    /// Registers table `name` with its rows, which queries can JOIN (held in memory; a query
    /// `FROM` it reads the rows you push, as for [`Engine::register`]).
    pub fn register_table(
        self,
        name: impl Into<String>,
        schema: SchemaRef,
        rows: Vec<RecordBatch>,
    ) -> Result<Self> {
        let name = name.into();
        let mut engine = self.register(name.clone(), schema)?;
        engine.rows.push((name, rows));
        Ok(engine)
    }

    fn planned(&self, sql: &str) -> Result<quiver_sql::Plan> {
        let mut plan = quiver_sql::plan(sql, &self.tables)?;
        for name in plan.joined_tables() {
            if let Some((_, rows)) = self.rows.iter().find(|(n, _)| n == &name) {
                plan.attach_table(&name, rows)?;
            }
        }
        Ok(plan)
    }

    /// Watermark and late-row settings for windowed and `EMIT CHANGES` queries planned from
    /// now on (default: in-order input, late rows dead-lettered).
    pub fn with_stream_options(mut self, stream: StreamOptions) -> Self {
        self.stream = stream;
        self
    }

    /// Plans `sql` into a running query.
    pub fn sql(&self, sql: &str) -> Result<Query> {
        let plan = self.planned(sql)?;
        Ok(Query {
            runner: QueryRunner::try_new_with(plan, self.stream)?,
            batcher: None,
            dead_letters: Vec::new(),
        })
    }

    /// The plan of `sql`, as text.
    pub fn explain(&self, sql: &str) -> Result<String> {
        Ok(quiver_sql::plan(sql, &self.tables)?.explain())
    }

    /// Runs `sql` once over `batches`; the `FROM` source takes the batches' schema (a query
    /// without `FROM` ignores them).
    pub fn query_batches(sql: &str, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
        if quiver_sql::source_name(sql)?.is_empty() {
            return Engine::new().sql(sql)?.finish();
        }
        let schema = batches.first().map(RecordBatch::schema).ok_or_else(|| {
            QuiverError::Config("query_batches needs at least one batch (for the schema)".into())
        })?;
        // Registered with its rows too, so the query can join the table to itself or read it
        // in a subquery.
        let engine = Engine::new().register_table(
            quiver_sql::source_name(sql)?,
            schema,
            batches.to_vec(),
        )?;
        let mut query = engine.sql(sql)?;
        let mut out = Vec::new();
        // A set operation reads the registered rows instead.
        if query.source().is_some() {
            for batch in batches {
                out.extend(query.push(batch)?);
            }
        }
        out.extend(query.finish()?);
        Ok(out)
    }
}

/// A running query.
#[derive(Debug)]
pub struct Query {
    runner: QueryRunner,
    batcher: Option<RecordBatcher>,
    dead_letters: Vec<DeadLetter>,
}

impl Query {
    /// The table whose rows the query expects pushed ([`Query::push`]); `None` when it reads
    /// none: no `FROM`, or only registered tables' held rows (a set operation, `VALUES`).
    pub fn source(&self) -> Option<&str> {
        let plan = self.runner.plan();
        plan.has_source().then_some(plan.source.as_str())
    }

    /// The output schema.
    pub fn schema(&self) -> &SchemaRef {
        self.runner.schema()
    }

    /// Pushes one batch of the source schema; returns output that is already final.
    pub fn push(&mut self, batch: &RecordBatch) -> Result<Vec<RecordBatch>> {
        self.runner.push(batch)
    }

    /// Pushes row-shaped records (converted with the source schema; records that do not fit
    /// become dead letters, see [`Query::take_dead_letters`]); extra fields are ignored.
    pub fn push_records(&mut self, records: &[Record]) -> Result<Vec<RecordBatch>> {
        if self.batcher.is_none() {
            let config = IngestConfig {
                unknown_fields: UnknownFields::Ignore,
                source_name: self.runner.plan().source.clone(),
                ..IngestConfig::default()
            };
            self.batcher = Some(RecordBatcher::with_schema(
                self.runner.plan().input_schema().clone(),
                config,
            )?);
        }
        let mut batches = Vec::new();
        if let Some(batcher) = &mut self.batcher {
            for record in records {
                batches.extend(batcher.push(record)?);
            }
            batches.extend(batcher.finish()?);
            self.dead_letters.extend(batcher.take_dead_letters());
        }
        let mut out = Vec::new();
        for batch in &batches {
            out.extend(self.runner.push(batch)?);
        }
        Ok(out)
    }

    /// Input rejected so far: records that did not fit the schema ([`Query::push_records`]), and
    /// in windowed queries late rows (policy `DeadLetter`) and rows without event time.
    pub fn take_dead_letters(&mut self) -> Vec<DeadLetter> {
        let mut all = std::mem::take(&mut self.dead_letters);
        all.extend(self.runner.take_dead_letters());
        all
    }

    /// Moves the watermark of a windowed query to at least `watermark_ms` and returns the
    /// results of the windows that closes.
    pub fn advance_watermark(&mut self, watermark_ms: i64) -> Result<Vec<RecordBatch>> {
        self.runner.advance_watermark(watermark_ms)
    }

    /// Row accounting of a windowed or `EMIT CHANGES` query: rows in, aggregated, late,
    /// dead-lettered, emitted, and the watermark.
    pub fn window_metrics(&self) -> Option<WindowMetrics> {
        self.runner.window_metrics()
    }

    /// Ends the input and returns the remaining output.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>> {
        self.runner.finish()
    }
}
