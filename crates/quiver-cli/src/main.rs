//! The `quiver` command: demo, the 1BRC run, and benchmark data generators.

mod demo;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use quiver_cli::generate::TradesFormat;
use quiver_core::{QuiverError, Result};

/// Quiver: a columnar, vectorized streaming-SQL engine.
#[derive(Debug, Parser)]
#[command(name = "quiver", version, about)]
struct Cli {
    /// No progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Show error details and dead-letter reasons.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate trading records, run the seed GROUP BY and 1-minute-window queries, report rates.
    Demo {
        /// Number of trading records to generate.
        #[arg(long, default_value_t = 2_000_000)]
        rows: usize,
        /// Number of distinct traders.
        #[arg(long, default_value_t = 100)]
        traders: u64,
    },
    /// The One Billion Row Challenge: MIN/AVG/MAX temperature by station, official output.
    #[command(name = "1brc")]
    OneBrc {
        /// Input file of `station;temperature` lines.
        path: PathBuf,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Run a SQL query over files: `--table NAME=PATH` (a file, `-` for stdin, or a directory
    /// whose files are independent partitions aggregated in parallel).
    Run {
        /// A source: NAME=PATH. Repeatable; none for a query without FROM.
        #[arg(long = "table", value_parser = table_spec)]
        tables: Vec<String>,
        /// The query.
        #[arg(long)]
        sql: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
        format: OutputFormat,
        /// Write output here instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Input format (default: from the file extension).
        #[arg(long, value_enum)]
        input_format: Option<InputFormat>,
        #[command(flatten)]
        stream: StreamArgs,
    },
    /// Print the plan of a query.
    Explain {
        /// A source: NAME=PATH (read for its schema). Repeatable.
        #[arg(long = "table", value_parser = table_spec)]
        tables: Vec<String>,
        /// The query.
        #[arg(long)]
        sql: String,
        /// Input format (default: from the file extension).
        #[arg(long, value_enum)]
        input_format: Option<InputFormat>,
    },
    /// Write benchmark data sets.
    Gen {
        /// Which data set.
        dataset: Dataset,
        /// Rows to write.
        #[arg(long)]
        rows: u64,
        /// Distinct keys (stations for 1brc, traders for trades, K for h2o); at least 1.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        keys: Option<u64>,
        /// Random seed; the same seed writes the same file.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file.
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// Event-time settings of windowed and EMIT CHANGES queries.
#[derive(Debug, Clone, Copy, clap::Args)]
struct StreamArgs {
    /// Bounded out-of-orderness: the watermark trails the largest event time by this much.
    #[arg(long, default_value_t = 0)]
    max_out_of_orderness_ms: i64,
    /// Windows stay open this long after the watermark passes their end.
    #[arg(long, default_value_t = 0)]
    allowed_lateness_ms: i64,
    /// What happens to rows whose window already closed.
    #[arg(long, value_enum, default_value_t = LateArg::DeadLetter)]
    late_policy: LateArg,
    /// With `--late-policy update-closed`: how long closed windows accept corrections.
    #[arg(long, default_value_t = 60_000)]
    update_horizon_ms: i64,
    /// Hash partitions of the window state, one rayon worker each (default: all cores).
    #[arg(long)]
    window_partitions: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LateArg {
    /// Report late rows as dead letters (on stderr) with the reason.
    DeadLetter,
    /// Drop late rows; they are counted.
    Drop,
    /// Update closed windows and emit the corrected rows as `update`s.
    UpdateClosed,
}

impl StreamArgs {
    fn options(&self) -> quiver::StreamOptions {
        quiver::StreamOptions {
            max_out_of_orderness_ms: self.max_out_of_orderness_ms,
            allowed_lateness_ms: self.allowed_lateness_ms,
            late_policy: match self.late_policy {
                LateArg::DeadLetter => quiver::LatePolicy::DeadLetter,
                LateArg::Drop => quiver::LatePolicy::Drop,
                LateArg::UpdateClosed => quiver::LatePolicy::UpdateClosed {
                    horizon_ms: self.update_horizon_ms,
                },
            },
            partitions: self.window_partitions.unwrap_or_else(default_threads),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    /// An aligned table (floats may be shown rounded).
    Table,
    /// CSV with a header row (RFC 4180).
    Csv,
    /// JSON lines, one object per row.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InputFormat {
    /// CSV with a header row.
    Csv,
    /// JSON lines.
    Jsonl,
    /// Arrow IPC file or stream.
    Arrow,
    /// 1BRC text (`station;temperature`).
    #[value(name = "1brc")]
    OneBrc,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dataset {
    /// 1BRC measurements (`station;temperature`).
    #[value(name = "1brc")]
    OneBrc,
    /// Trading records: CSV for a `.csv` output, JSON lines for `.jsonl`/`.ndjson`/`.json`.
    Trades,
    /// The H2O db-benchmark groupby table as CSV (`--keys` is K, default 100).
    H2o,
}

impl Dataset {
    fn name(self) -> &'static str {
        match self {
            Dataset::OneBrc => "1brc",
            Dataset::Trades => "trades",
            Dataset::H2o => "h2o",
        }
    }
}

/// Exit codes: 0 success, 1 runtime or input error, 2 usage error (from clap).
const EXIT_ERROR: u8 = 1;

fn main() -> ExitCode {
    // A reader that goes away (`quiver run ... | head`) ends the process quietly, as it does
    // any Unix filter, instead of `print!`/`eprint!` panicking on the closed pipe.
    #[cfg(unix)]
    // SAFETY: restoring the default action of one signal, before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    if let Command::Run { tables, .. } | Command::Explain { tables, .. } = &cli.command {
        // A table named twice is a usage error like a malformed `--table` (exit code 2), not
        // one of the two silently ignored.
        if let Some(name) = duplicate_table_name(tables) {
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    format!("--table {name} is given more than once"),
                )
                .exit();
        }
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            if cli.verbose {
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    eprintln!("  caused by: {cause}");
                    source = cause.source();
                }
            }
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    match &cli.command {
        Command::Demo { rows, traders } => demo::run(*rows, *traders, cli.quiet),
        Command::OneBrc { path, threads } => {
            one_brc(path, threads.unwrap_or_else(default_threads), cli.verbose)
        }
        Command::Run {
            tables,
            sql,
            format,
            output,
            input_format,
            stream,
        } => {
            let query = |project_columns: bool| {
                let query = StreamedQuery {
                    sql,
                    format: *format,
                    output: output.as_deref(),
                    stream: stream.options(),
                    verbose: cli.verbose,
                    project_columns,
                };
                run_query(tables, *input_format, &query)
            };
            match query(true) {
                // Planned over the columns the query names, an unknown name would be reported
                // with only those as the table's columns: planned again over all of them.
                Err(error) if error.to_string().contains("unknown column") => query(false),
                other => other,
            }
        }
        Command::Explain {
            tables,
            sql,
            input_format,
        } => {
            let sources = load_tables(tables, *input_format, cli.verbose, None)?;
            let mut engine = quiver::Engine::new();
            for source in &sources {
                engine = engine.register(source.name.clone(), source.schema.clone())?;
            }
            print!("{}", engine.explain(sql)?);
            Ok(())
        }
        Command::Gen {
            dataset,
            rows,
            keys,
            seed,
            output,
        } => gen(*dataset, *rows, *keys, *seed, output, cli.quiet),
    }
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// A progress bar on stderr, hidden when stderr is not a terminal or with `--quiet`.
pub fn progress_bar(total: u64, message: &str, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:40}] {human_pos}/{human_len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(message.to_string());
    bar
}

fn one_brc(path: &std::path::Path, threads: usize, verbose: bool) -> Result<()> {
    let input = quiver_ingest::onebrc::map_file(path)?;
    let run = quiver_exec::onebrc::run(&input, threads, &path.display().to_string())?;
    let text = run.stations.format_official()?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| QuiverError::io("stdout", e))?;
    if !run.dead_letters.is_empty() {
        eprintln!(
            "{} of {} lines rejected (not `station;temperature` with one decimal)",
            run.dead_letters.len(),
            run.lines
        );
        let shown = if verbose { run.dead_letters.len() } else { 5 };
        for dead in run.dead_letters.iter().take(shown) {
            eprintln!("  {dead}: {:?}", dead.payload_text());
        }
    }
    Ok(())
}

fn gen(
    dataset: Dataset,
    rows: u64,
    keys: Option<u64>,
    seed: u64,
    output: &std::path::Path,
    quiet: bool,
) -> Result<()> {
    let started = Instant::now();
    let extension = output
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    // The file's extension decides what `quiver run` will read it as, so it must match.
    let expected: &[&str] = match dataset {
        Dataset::OneBrc => &["txt"],
        Dataset::H2o => &["csv"],
        Dataset::Trades => &["csv", "jsonl", "ndjson", "json"],
    };
    if !expected.contains(&extension.as_str()) {
        return Err(QuiverError::Config(format!(
            "{} data goes to a .{} file, not {}",
            dataset.name(),
            expected.join(" or ."),
            output.display()
        )));
    }
    let trades_format = if extension == "csv" {
        TradesFormat::Csv
    } else {
        TradesFormat::JsonLines
    };
    let file = std::fs::File::create(output)
        .map_err(|e| QuiverError::io(output.display().to_string(), e))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let bar = progress_bar(rows, "generating", quiet);
    const BLOCK_ROWS: u64 = 1 << 16;
    // Blocks are generated in parallel and written in order; each block has its own seed (from
    // its first row), so the bytes do not depend on the thread count.
    let generate_block = |first_row: u64, buffer: &mut Vec<u8>| {
        let block = BLOCK_ROWS.min(rows - first_row);
        let block_seed = seed ^ first_row.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        buffer.clear();
        match dataset {
            Dataset::OneBrc => {
                let stations = keys.unwrap_or(quiver_cli::generate::STATIONS.len() as u64) as usize;
                quiver_cli::generate::onebrc_lines(block, stations, block_seed, buffer);
            }
            Dataset::H2o => {
                if first_row == 0 {
                    buffer.extend_from_slice(quiver_cli::generate::H2O_HEADER.as_bytes());
                }
                quiver_cli::generate::h2o_groupby_lines(
                    block,
                    rows,
                    keys.unwrap_or(100),
                    block_seed,
                    buffer,
                );
            }
            Dataset::Trades => {
                if first_row == 0 && trades_format == TradesFormat::Csv {
                    buffer.extend_from_slice(quiver_cli::generate::TRADES_CSV_HEADER.as_bytes());
                }
                quiver_cli::generate::trades_text(
                    block,
                    keys.unwrap_or(100),
                    block_seed,
                    first_row,
                    trades_format,
                    buffer,
                );
            }
        }
    };
    let header: &[u8] = match (dataset, trades_format) {
        (Dataset::H2o, _) => quiver_cli::generate::H2O_HEADER.as_bytes(),
        (Dataset::Trades, TradesFormat::Csv) => quiver_cli::generate::TRADES_CSV_HEADER.as_bytes(),
        _ => b"",
    };
    if rows == 0 {
        // An empty table still has its header, so that it reads as one.
        writer
            .write_all(header)
            .and_then(|()| writer.flush())
            .map_err(|e| QuiverError::io(output.display().to_string(), e))?;
    } else {
        let total_blocks = rows.div_ceil(BLOCK_ROWS);
        let generators = default_threads().max(1);
        quiver_cli::generate::write_blocks_in_order(
            total_blocks,
            generators,
            |block, buffer| generate_block(block * BLOCK_ROWS, buffer),
            |block, buffer| {
                writer.write_all(buffer)?;
                bar.set_position(((block + 1) * BLOCK_ROWS).min(rows));
                Ok(())
            },
        )
        .and_then(|()| writer.flush())
        .map_err(|e| QuiverError::io(output.display().to_string(), e))?;
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    if !quiet {
        eprintln!(
            "wrote {rows} rows to {} in {seconds:.2} s ({:.1} M rows/s)",
            output.display(),
            rows as f64 / seconds / 1e6
        );
    }
    Ok(())
}

/// One `--table` source, read into partitions (one per file).
struct Source {
    name: String,
    schema: arrow::datatypes::SchemaRef,
    partitions: Vec<Vec<arrow::record_batch::RecordBatch>>,
}

fn input_format_of(path: &std::path::Path, forced: Option<InputFormat>) -> Result<InputFormat> {
    if let Some(format) = forced {
        return Ok(format);
    }
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    Ok(match extension.as_str() {
        "csv" => InputFormat::Csv,
        "jsonl" | "ndjson" | "json" => InputFormat::Jsonl,
        "arrow" | "ipc" | "feather" => InputFormat::Arrow,
        "txt" => InputFormat::OneBrc,
        _ => {
            return Err(QuiverError::Config(format!(
                "cannot tell the format of {} from its extension; use --input-format",
                path.display()
            )))
        }
    })
}

/// Whether `path` names a regular file (not `-`, stdin), which can be memory-mapped.
fn is_regular_file(path: &std::path::Path) -> bool {
    path.as_os_str() != "-" && path.is_file()
}

/// The bytes of an input (stdin for `-`); none for a 1BRC file, which is memory-mapped.
fn read_bytes(path: &std::path::Path, format: InputFormat) -> Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut data)
            .map_err(|e| QuiverError::io("stdin", e))?;
        Ok(data)
    } else if format == InputFormat::OneBrc {
        Ok(Vec::new())
    } else {
        std::fs::read(path).map_err(|e| QuiverError::io(path.display().to_string(), e))
    }
}

/// The schema a CSV or JSON-lines input would be read with, before untyped columns become text.
fn infer_text_schema(
    path: &std::path::Path,
    format: InputFormat,
    bytes: &[u8],
) -> Result<arrow::datatypes::Schema> {
    let config =
        quiver_ingest::IngestConfig::default().with_source_name(path.display().to_string());
    match format {
        InputFormat::Csv => quiver_ingest::text::infer_csv_schema(
            bytes,
            quiver_ingest::text::CsvOptions::default(),
            &config,
        ),
        _ => quiver_ingest::text::infer_json_lines_schema(bytes, &config),
    }
}

/// The columns of a CSV `schema` that `sql` reads, when that is not all of them. A query that
/// names none (`COUNT(*)`) still counts rows through one column: a text one when there is
/// one, whose values always parse.
fn columns_to_decode(sql: &str, schema: &arrow::datatypes::Schema) -> Option<Vec<usize>> {
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let mut columns = quiver_sql::columns_read(sql, &names)?;
    if columns.is_empty() && !names.is_empty() {
        let text = schema
            .fields()
            .iter()
            .position(|f| f.data_type() == &arrow::datatypes::DataType::Utf8);
        columns.push(text.unwrap_or(0));
    }
    (columns.len() < names.len()).then_some(columns)
}

/// Reads one input file (or stdin): `schema` is the one to decode CSV or JSON lines with,
/// inferred from the input when `None`; `projection` the CSV columns to decode (given a
/// schema).
fn read_input(
    path: &std::path::Path,
    format: InputFormat,
    bytes: Vec<u8>,
    schema: Option<arrow::datatypes::SchemaRef>,
    projection: Option<&[usize]>,
    verbose: bool,
) -> Result<quiver_ingest::IngestOutput> {
    let name = path.display().to_string();
    let config = quiver_ingest::IngestConfig::default().with_source_name(&name);
    let output = match (format, schema, projection) {
        (InputFormat::Csv, Some(schema), Some(projection)) => {
            quiver_ingest::text::read_csv_projected(
                &bytes,
                schema,
                projection,
                quiver_ingest::text::CsvOptions::default(),
                &config,
            )?
        }
        (format, schema, _) => read_whole_input(path, format, bytes, schema, &config)?,
    };
    report_input_dead_letters(&name, &output, verbose);
    Ok(output)
}

fn read_whole_input(
    path: &std::path::Path,
    format: InputFormat,
    bytes: Vec<u8>,
    schema: Option<arrow::datatypes::SchemaRef>,
    config: &quiver_ingest::IngestConfig,
) -> Result<quiver_ingest::IngestOutput> {
    let name = path.display().to_string();
    let from_stdin = path.as_os_str() == "-";
    Ok(match format {
        InputFormat::Csv => quiver_ingest::text::read_csv(
            &bytes,
            schema,
            quiver_ingest::text::CsvOptions::default(),
            config,
        )?,
        InputFormat::Jsonl => quiver_ingest::text::read_json_lines(&bytes, schema, config)?,
        InputFormat::OneBrc => {
            let buffer = if from_stdin {
                arrow::buffer::Buffer::from(bytes)
            } else {
                quiver_ingest::onebrc::map_file(path)?
            };
            quiver_ingest::onebrc::parse_buffer(&buffer, config, default_threads())?
        }
        InputFormat::Arrow => {
            let (schema, batches) = read_arrow(&bytes).map_err(|e| QuiverError::Parse {
                position: quiver_core::Position {
                    source: name.clone(),
                    record: 0,
                    byte_offset: None,
                },
                message: format!("not an Arrow IPC file or stream: {e}"),
            })?;
            quiver_ingest::IngestOutput {
                schema: Some(schema),
                accepted_rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
                batches,
                ..Default::default()
            }
        }
    })
}

/// The dead letters of one input on stderr (the first five unless `verbose`).
fn report_input_dead_letters(name: &str, output: &quiver_ingest::IngestOutput, verbose: bool) {
    if output.dead_letters.is_empty() {
        return;
    }
    eprintln!(
        "{name}: {} records rejected (dead letters), {} accepted",
        output.rejected_rows, output.accepted_rows
    );
    let shown = if verbose {
        output.dead_letters.len()
    } else {
        5
    };
    for dead in output.dead_letters.iter().take(shown) {
        eprintln!("  {dead}");
    }
    report_more(output.dead_letters.len(), shown);
}

/// Says how many dead letters were not listed.
fn report_more(total: usize, shown: usize) {
    if total > shown {
        eprintln!(
            "  ... and {} more dead letters (--verbose lists them all)",
            total - shown
        );
    }
}

/// An Arrow IPC file or stream: its schema (also when it holds no batch) and its batches.
fn read_arrow(
    bytes: &[u8],
) -> std::result::Result<
    (
        arrow::datatypes::SchemaRef,
        Vec<arrow::record_batch::RecordBatch>,
    ),
    arrow::error::ArrowError,
> {
    if bytes.starts_with(b"ARROW1") {
        let reader = arrow::ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)?;
        let schema = reader.schema();
        Ok((schema, reader.collect::<std::result::Result<_, _>>()?))
    } else {
        let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
        let schema = reader.schema();
        Ok((schema, reader.collect::<std::result::Result<_, _>>()?))
    }
}

/// Reads the files of one table, each on its own worker. CSV or JSON-lines files (all of one
/// format) are decoded with one schema, unified from each file's inferred schema, so that a
/// column that is integral or empty in one file and not in another reads the same everywhere.
fn read_partitions(
    files: &[PathBuf],
    forced: Option<InputFormat>,
    verbose: bool,
    sql: Option<&str>,
) -> Result<Vec<quiver_ingest::IngestOutput>> {
    use rayon::prelude::*;
    let formats = files
        .iter()
        .map(|file| input_format_of(file, forced))
        .collect::<Result<Vec<_>>>()?;
    if let ([file], [format @ (InputFormat::Csv | InputFormat::Jsonl)]) = (files, &formats[..]) {
        // One text file decodes in chunks on every worker, as a streamed table does.
        let mut input = ChunkedInput::open(file, *format, verbose)?;
        if let Some(sql) = sql {
            input.decode_only_columns_of(sql)?;
        }
        let schema = input.schema().ok();
        // A regular file is mapped and read as consecutive partitions, one per worker.
        let partitions = if is_regular_file(file) {
            input.read_mapped(file)?
        } else {
            vec![input.read_all()?]
        };
        return Ok(partitions
            .into_iter()
            .map(|batches| quiver_ingest::IngestOutput {
                schema: schema.clone(),
                accepted_rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
                batches,
                ..Default::default()
            })
            .collect());
    }
    let text = matches!(formats[..], [InputFormat::Csv | InputFormat::Jsonl, _, ..])
        && formats.iter().all(|f| *f == formats[0]);
    if !text {
        return files
            .par_iter()
            .zip(&formats)
            .map(|(file, &format)| {
                read_input(file, format, read_bytes(file, format)?, None, None, verbose)
            })
            .collect();
    }
    let format = formats[0];
    let inputs = files
        .par_iter()
        .map(|file| {
            let bytes = read_bytes(file, format)?;
            let schema = infer_text_schema(file, format, &bytes)?;
            Ok((bytes, schema))
        })
        .collect::<Result<Vec<_>>>()?;
    let (inputs, schemas): (Vec<Vec<u8>>, Vec<arrow::datatypes::Schema>) =
        inputs.into_iter().unzip();
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let schema = std::sync::Arc::new(quiver_ingest::text::unify_schemas(
        &schemas,
        &names,
        format == InputFormat::Csv,
    )?);
    let projection = sql
        .filter(|_| format == InputFormat::Csv)
        .and_then(|sql| columns_to_decode(sql, &schema));
    files
        .par_iter()
        .zip(inputs)
        .map(|(file, bytes)| {
            read_input(
                file,
                format,
                bytes,
                Some(schema.clone()),
                projection.as_deref(),
                verbose,
            )
        })
        .collect()
}

/// Checks a `--table` value's shape, so that a malformed one is a usage error (exit code 2).
fn table_spec(spec: &str) -> std::result::Result<String, String> {
    match spec.split_once('=') {
        Some((name, path)) if !name.trim().is_empty() && !path.is_empty() => Ok(spec.to_string()),
        _ => Err(format!("expected NAME=PATH, got `{spec}`")),
    }
}

/// The first table name given twice (names are case-insensitive, as in SQL).
fn duplicate_table_name(specs: &[String]) -> Option<&str> {
    let mut names = std::collections::HashSet::new();
    specs.iter().find_map(|spec| {
        let name = spec.split_once('=').map_or(spec.as_str(), |(name, _)| name);
        (!names.insert(name.to_ascii_lowercase())).then_some(name)
    })
}

/// A regular file of zero bytes.
fn is_empty_file(path: &std::path::Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() == 0)
}

/// Reads the `--table` inputs; CSV columns that `sql` never names are not decoded.
fn load_tables(
    specs: &[String],
    forced: Option<InputFormat>,
    verbose: bool,
    sql: Option<&str>,
) -> Result<Vec<Source>> {
    specs
        .iter()
        .map(|spec| {
            let (name, path) = spec.split_once('=').ok_or_else(|| {
                QuiverError::Config(format!("--table {spec}: expected NAME=PATH"))
            })?;
            let pattern = path;
            let path = std::path::Path::new(path);
            let files: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) && !path.exists() {
                // A glob: every matching file is an independent partition.
                let mut files: Vec<PathBuf> = glob::glob(pattern)
                    .map_err(|e| QuiverError::Config(format!("--table {spec}: {e}")))?
                    .filter_map(|entry| entry.ok())
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                if files.is_empty() {
                    return Err(QuiverError::Config(format!(
                        "{pattern}: no files match the pattern"
                    )));
                }
                files
            } else if path.is_dir() {
                let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| QuiverError::io(path.display().to_string(), e))?
                    .filter_map(|entry| entry.ok().map(|e| e.path()))
                    // Hidden files (`.name`) are not partitions, as in Spark, Hive and Arrow.
                    .filter(|p| {
                        p.is_file()
                            && !p
                                .file_name()
                                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                            && input_format_of(p, forced).is_ok()
                    })
                    .collect();
                files.sort();
                if files.is_empty() {
                    return Err(QuiverError::Config(format!(
                        "{}: no input files in the directory",
                        path.display()
                    )));
                }
                files
            } else {
                vec![path.to_path_buf()]
            };
            // An empty file among others is an empty partition (it has no header to check).
            let files = if files.iter().any(|f| !is_empty_file(f)) {
                files.into_iter().filter(|f| !is_empty_file(f)).collect()
            } else {
                files
            };
            // Independent files are read in parallel, each into its own partition.
            let outputs = read_partitions(&files, forced, verbose, sql)?;
            // The schema of the rows read, or (no row accepted anywhere) the one the first file
            // was decoded into: a header-only CSV is an empty table, not an error.
            let schema = outputs
                .iter()
                .flat_map(|output| &output.batches)
                .next()
                .map(|b| b.schema())
                .or_else(|| outputs.iter().find_map(|output| output.schema.clone()))
                .filter(|schema| !schema.fields().is_empty())
                .ok_or_else(|| {
                    QuiverError::Config(format!(
                        "{}: no rows to take a schema from",
                        path.display()
                    ))
                })?;
            let partitions: Vec<Vec<arrow::record_batch::RecordBatch>> =
                outputs.into_iter().map(|output| output.batches).collect();
            let describe = |schema: &arrow::datatypes::Schema| -> String {
                schema
                    .fields()
                    .iter()
                    .map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if let Some((file, other)) = files.iter().zip(&partitions).find_map(|(file, part)| {
                part.iter()
                    .find(|batch| batch.schema().fields() != schema.fields())
                    .map(|batch| (file, batch.schema()))
            }) {
                return Err(QuiverError::Config(format!(
                    "{}: files have different schemas: {} has [{}], expected [{}]",
                    path.display(),
                    file.display(),
                    describe(&other),
                    describe(&schema)
                )));
            }
            Ok(Source {
                name: name.to_string(),
                schema,
                partitions,
            })
        })
        .collect()
}

fn run_query(
    specs: &[String],
    input_format: Option<InputFormat>,
    query: &StreamedQuery<'_>,
) -> Result<()> {
    let StreamedQuery {
        sql,
        format,
        output,
        stream,
        verbose,
        project_columns,
    } = *query;
    // A table is streamed only when the query reads it (a query without FROM reads none).
    // A query with joins holds its tables in memory: it is not streamed.
    let reads_a_table = quiver_sql::source_name(sql).map_or(true, |name| !name.is_empty())
        && !quiver_sql::has_joins(sql);
    if let Some((name, path, text_format)) =
        streamable_table(specs, input_format).filter(|_| reads_a_table)
    {
        return run_streamed(&name, &path, text_format, query);
    }
    // Only the tables the query reads are loaded (a `--table` it never names costs nothing).
    let read: Vec<String> = match quiver_sql::relation_names(sql) {
        Some(names) => specs
            .iter()
            .filter(|spec| {
                let name = spec.split_once('=').map_or(spec.as_str(), |(name, _)| name);
                names.iter().any(|n| n.eq_ignore_ascii_case(name))
            })
            .cloned()
            .collect(),
        None => specs.to_vec(),
    };
    let sources = load_tables(
        &read,
        input_format,
        verbose,
        Some(sql).filter(|_| project_columns),
    )?;
    let tables: Vec<(String, arrow::datatypes::SchemaRef)> = sources
        .iter()
        .map(|s| (s.name.clone(), s.schema.clone()))
        .collect();
    let mut plan = quiver_sql::plan(sql, &tables)?;
    // Joined tables are held in memory whole; the FROM table streams through them.
    for name in plan.joined_tables() {
        let source = sources
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| QuiverError::Internal(format!("joined table {name} not loaded")))?;
        let rows: Vec<arrow::record_batch::RecordBatch> =
            source.partitions.iter().flatten().cloned().collect();
        plan.attach_table(&name, &rows)?;
    }
    let no_partitions = Vec::new();
    let partitions = if plan.has_source() {
        let source = sources
            .iter()
            .find(|s| s.name == plan.source)
            .ok_or_else(|| {
                QuiverError::Internal(format!("planned source {} not loaded", plan.source))
            })?;
        &source.partitions
    } else {
        // Without FROM the plan reads its one row itself.
        &no_partitions
    };
    let (schema, batches) = if plan.window.is_some() || plan.emit == quiver_sql::EmitMode::Changes {
        // Streams run in arrival order (file by file) through one operator: the watermark
        // depends on order.
        let mut runner = quiver_exec::query::QueryRunner::try_new_with(plan.clone(), stream)?;
        let mut out = Vec::new();
        for batch in partitions.iter().flatten() {
            out.extend(runner.push(batch)?);
        }
        out.extend(runner.finish()?);
        report_window_run(&mut runner, verbose);
        (runner.schema().clone(), out)
    } else {
        let batches = quiver_exec::query::run_partitioned(&plan, partitions)?;
        (plan.output_schema.clone(), batches)
    };
    let (mut sink, context) = open_output(output)?;
    write_batches(&mut sink, &schema, &batches, format)?;
    sink.flush().map_err(|e| QuiverError::io(context, e))
}

/// The query's output: the file given, or stdout.
fn open_output(output: Option<&std::path::Path>) -> Result<(Box<dyn Write>, String)> {
    let context = output.map_or("stdout".to_string(), |p| p.display().to_string());
    let sink: Box<dyn Write> = match output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| QuiverError::io(&context, e))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    Ok((sink, context))
}

/// The one `--table` of a query that is read in chunks as it arrives: a single CSV or JSON-lines
/// file, or `-` (stdin) with `--input-format csv|jsonl`.
fn streamable_table(
    specs: &[String],
    forced: Option<InputFormat>,
) -> Option<(String, PathBuf, InputFormat)> {
    let [spec] = specs else {
        return None;
    };
    let (name, path) = spec.split_once('=')?;
    let path = PathBuf::from(path);
    if path.as_os_str() != "-" && !path.is_file() {
        return None;
    }
    match input_format_of(&path, forced) {
        Ok(format @ (InputFormat::Csv | InputFormat::Jsonl)) => {
            Some((name.to_string(), path, format))
        }
        _ => None,
    }
}

/// What `quiver run` runs, and where its output goes.
#[derive(Clone, Copy)]
struct StreamedQuery<'a> {
    sql: &'a str,
    format: OutputFormat,
    output: Option<&'a std::path::Path>,
    stream: quiver::StreamOptions,
    verbose: bool,
    /// Whether CSV columns the query never names are skipped.
    project_columns: bool,
}

/// Decodes the chunks of one streamed table, keeping dead-letter positions those of the whole
/// input and reporting them on stderr as they come.
struct ChunkDecoder {
    format: InputFormat,
    /// The input's schema (all columns), once known.
    schema: Option<arrow::datatypes::SchemaRef>,
    /// The CSV columns decoded, when not all: see [`ChunkedInput::decode_only_columns_of`].
    projection: Option<Vec<usize>>,
    config: quiver_ingest::IngestConfig,
    lines_before: u64,
    bytes_before: u64,
    accepted_rows: u64,
    rejected_rows: u64,
    verbose: bool,
}

impl ChunkDecoder {
    /// Decodes one chunk and takes it in: [`Self::parse`] then [`Self::absorb`].
    fn decode(&mut self, chunk: &[u8]) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        let output = self.parse(chunk)?;
        Ok(self.absorb(chunk, output))
    }

    /// Decodes one chunk; touches no state, so chunks after the first decode in parallel.
    fn parse(&self, chunk: &[u8]) -> Result<quiver_ingest::IngestOutput> {
        self.parse_projected(chunk, false)
    }

    /// [`Self::parse`]; a projected CSV chunk starts with the header when `header`.
    fn parse_projected(&self, chunk: &[u8], header: bool) -> Result<quiver_ingest::IngestOutput> {
        if let (InputFormat::Csv, Some(schema), Some(projection)) =
            (self.format, &self.schema, &self.projection)
        {
            return quiver_ingest::text::read_csv_projected(
                chunk,
                schema.clone(),
                projection,
                quiver_ingest::text::CsvOptions {
                    has_header: header,
                    ..quiver_ingest::text::CsvOptions::default()
                },
                &self.config,
            );
        }
        Ok(match self.format {
            InputFormat::Csv => quiver_ingest::text::read_csv(
                chunk,
                self.schema.clone(),
                quiver_ingest::text::CsvOptions {
                    // Only the first chunk starts with the header.
                    has_header: self.schema.is_none(),
                    ..quiver_ingest::text::CsvOptions::default()
                },
                &self.config,
            )?,
            _ => quiver_ingest::text::read_json_lines(chunk, self.schema.clone(), &self.config)?,
        })
    }

    /// Takes a decoded chunk in input order: its dead letters get their positions in the whole
    /// input and are reported.
    fn absorb(
        &mut self,
        chunk: &[u8],
        mut output: quiver_ingest::IngestOutput,
    ) -> Vec<arrow::record_batch::RecordBatch> {
        let batches = std::mem::take(&mut output.batches);
        self.take_in(&ChunkReport::of(chunk, output));
        batches
    }

    /// [`Self::absorb`] of a chunk whose batches went elsewhere.
    fn take_in(&mut self, report: &ChunkReport) {
        let output = &report.output;
        if self.schema.is_none() {
            // An input without a single record or header has no columns to plan against.
            self.schema = output
                .schema
                .clone()
                .filter(|schema| !schema.fields().is_empty());
        }
        self.accepted_rows += output.accepted_rows;
        for dead in &output.dead_letters {
            let mut dead = dead.clone();
            self.rejected_rows += 1;
            dead.position.record += self.lines_before;
            dead.position.byte_offset = dead.position.byte_offset.map(|b| b + self.bytes_before);
            if self.verbose || self.rejected_rows <= 5 {
                eprintln!("  {dead}");
            }
        }
        self.lines_before += report.newlines;
        self.bytes_before += report.bytes;
    }

    fn report(&self) {
        if self.rejected_rows > 0 {
            eprintln!(
                "{}: {} records rejected (dead letters), {} accepted",
                self.config.source_name, self.rejected_rows, self.accepted_rows
            );
            if !self.verbose {
                report_more(self.rejected_rows as usize, 5);
            }
        }
    }
}

/// What decoding one chunk found, besides its rows: taken in by [`ChunkDecoder::take_in`] in
/// input order, which gives its dead letters their positions in the whole input.
struct ChunkReport {
    newlines: u64,
    bytes: u64,
    /// The chunk's decoding, without its batches.
    output: quiver_ingest::IngestOutput,
}

impl ChunkReport {
    fn of(chunk: &[u8], output: quiver_ingest::IngestOutput) -> Self {
        ChunkReport {
            newlines: memchr::memchr_iter(b'\n', chunk).count() as u64,
            bytes: chunk.len() as u64,
            output,
        }
    }
}

/// Bytes of a mapped input that one worker decodes at a time: about eight chunks per worker,
/// within these bounds (small enough to spread a small file over the workers, large enough that
/// a chunk's set-up cost stays small).
const MAPPED_CHUNK_BYTES: std::ops::RangeInclusive<usize> = (64 << 10)..=(1 << 20);

/// A run of consecutive chunks of a mapped CSV or JSON-lines file: one partition of
/// [`ChunkedInput::run_mapped`], decoded chunk by chunk on the worker that runs it.
struct MappedPartition<'a> {
    text: &'a [u8],
    /// Rows decoded before the run (the first chunk's, in the first partition).
    decoded: Vec<arrow::record_batch::RecordBatch>,
    /// Each chunk's number among all chunks, and its bytes in `text`.
    chunks: &'a [(usize, std::ops::Range<usize>)],
    decoder: &'a ChunkDecoder,
    /// Each chunk's report, by chunk number, once decoded.
    reports: &'a std::sync::Mutex<Vec<Option<ChunkReport>>>,
}

impl quiver_exec::query::PartitionInput for MappedPartition<'_> {
    fn for_each_batch(
        &self,
        each: &mut dyn FnMut(&arrow::record_batch::RecordBatch) -> Result<()>,
    ) -> Result<()> {
        self.decoded.iter().try_for_each(&mut *each)?;
        for (number, range) in self.chunks {
            let chunk = &self.text[range.clone()];
            let mut output = self.decoder.parse(chunk)?;
            let batches = std::mem::take(&mut output.batches);
            let report = ChunkReport::of(chunk, output);
            match self.reports.lock() {
                Ok(mut reports) => reports[*number] = Some(report),
                Err(_) => return Err(QuiverError::Internal("a decoding worker panicked".into())),
            }
            batches.iter().try_for_each(&mut *each)?;
        }
        Ok(())
    }
}

/// A CSV or JSON-lines input (a file, or `-` for stdin) read in chunks of whole records. The
/// first chunk, which holds the first `infer_schema_rows` records (or all of a shorter input), is
/// decoded on opening: the input's schema is inferred from it.
struct ChunkedInput {
    source_name: String,
    chunks: quiver_cli::chunked::ChunkedRecords<Box<dyn std::io::Read>>,
    decoder: ChunkDecoder,
    /// The first chunk and its decoding, taken in (dead letters reported) by
    /// [`ChunkedInput::take_first`] once the columns to decode are settled.
    first_chunk: Vec<u8>,
    first: Option<quiver_ingest::IngestOutput>,
}

impl ChunkedInput {
    fn open(path: &std::path::Path, format: InputFormat, verbose: bool) -> Result<Self> {
        let source_name = path.display().to_string();
        let reader: Box<dyn std::io::Read> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            Box::new(std::fs::File::open(path).map_err(|e| QuiverError::io(&source_name, e))?)
        };
        let config = quiver_ingest::IngestConfig::default().with_source_name(&source_name);
        let syntax = match format {
            InputFormat::Csv => quiver_cli::chunked::RecordSyntax::Csv,
            _ => quiver_cli::chunked::RecordSyntax::Lines,
        };
        // One more record than inference reads: the CSV header.
        let chunks =
            quiver_cli::chunked::ChunkedRecords::new(reader, syntax, config.infer_schema_rows + 1);
        let mut input = ChunkedInput {
            source_name,
            chunks,
            decoder: ChunkDecoder {
                format,
                schema: None,
                projection: None,
                config,
                lines_before: 0,
                bytes_before: 0,
                accepted_rows: 0,
                rejected_rows: 0,
                verbose,
            },
            first_chunk: Vec::new(),
            first: None,
        };
        let first_chunk = input.next_chunk()?.unwrap_or_default();
        let first = input.decoder.parse(&first_chunk)?;
        // An input without a single record or header has no columns to plan against.
        input.decoder.schema = first
            .schema
            .clone()
            .filter(|schema| !schema.fields().is_empty());
        input.first_chunk = first_chunk;
        input.first = Some(first);
        Ok(input)
    }

    /// The schema inferred from the first chunk, of the columns decoded; an error for an input
    /// without a record or header.
    fn schema(&self) -> Result<arrow::datatypes::SchemaRef> {
        let schema = self.decoder.schema.clone().ok_or_else(|| {
            QuiverError::Config(format!(
                "{}: no rows to take a schema from",
                self.source_name
            ))
        })?;
        Ok(match &self.decoder.projection {
            Some(columns) => std::sync::Arc::new(schema.project(columns)?),
            None => schema,
        })
    }

    /// From now on decodes only the CSV columns `sql` names (the first chunk, decoded for its
    /// schema, is decoded again): values of other columns are split off but never parsed.
    fn decode_only_columns_of(&mut self, sql: &str) -> Result<()> {
        let Some(schema) = self.decoder.schema.clone() else {
            return Ok(());
        };
        if self.decoder.format != InputFormat::Csv || self.decoder.projection.is_some() {
            return Ok(());
        }
        if let Some(columns) = columns_to_decode(sql, &schema) {
            self.decoder.projection = Some(columns);
            // Decoded again: a value of a column no longer read is no dead letter.
            self.first = Some(self.decoder.parse_projected(&self.first_chunk, true)?);
        }
        Ok(())
    }

    /// The first chunk's rows, its dead letters reported (once).
    fn take_first(&mut self) -> Vec<arrow::record_batch::RecordBatch> {
        let chunk = std::mem::take(&mut self.first_chunk);
        match self.first.take() {
            Some(output) => self.decoder.absorb(&chunk, output),
            None => Vec::new(),
        }
    }

    fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        self.chunks
            .next_chunk()
            .map_err(|e| QuiverError::io(&self.source_name, e))
    }

    /// Runs `plan` over the rest of the input, a regular file mapped into memory, with one
    /// partition per worker (see [`Self::with_mapped_partitions`]): each chunk is decoded and
    /// pushed through the plan on its worker, so decoding and the query's work share the cores
    /// and the decoded rows are never all held. The result is that of one pass over the input.
    fn run_mapped(
        self,
        path: &std::path::Path,
        plan: &quiver_sql::Plan,
    ) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        self.with_mapped_partitions(path, |partitions| {
            quiver_exec::query::run_partitioned_inputs(plan, partitions)
        })
    }

    /// Whether `plan` over this input, the file at `path`, gains from running in partitions
    /// ([`quiver_exec::query::partitions_pay_off`], judged from the first chunk's rows).
    fn partitions_pay_off(&self, path: &std::path::Path, plan: &quiver_sql::Plan) -> bool {
        let sample = self
            .first
            .as_ref()
            .map_or(&[][..], |first| &first.batches[..]);
        let sample_rows: usize = sample.iter().map(|b| b.num_rows()).sum();
        let file_bytes = std::fs::metadata(path).map_or(0, |m| m.len()) as u128;
        let sample_bytes = (self.first_chunk.len() as u128).max(1);
        let total_rows = (sample_rows as u128 * file_bytes / sample_bytes).min(usize::MAX as u128);
        quiver_exec::query::partitions_pay_off(plan, sample, total_rows as usize)
    }

    /// Every row of the input, a regular file mapped into memory, decoded in parallel: one
    /// partition per worker, the partitions consecutive pieces of the input.
    fn read_mapped(
        self,
        path: &std::path::Path,
    ) -> Result<Vec<Vec<arrow::record_batch::RecordBatch>>> {
        use quiver_exec::query::PartitionInput;
        use rayon::prelude::*;
        self.with_mapped_partitions(path, |partitions| {
            partitions
                .par_iter()
                .map(PartitionInput::collect_batches)
                .collect()
        })
    }

    /// Hands `work` the rest of the input, a regular file mapped into memory, cut into chunks of
    /// whole records and dealt out as one consecutive run of chunks per worker (the first
    /// chunk's rows, decoded on opening, lead the first run); chunks are decoded as `work` reads
    /// the partitions. Then takes in every chunk's dead letters in input order (positions in
    /// the whole input) and reports them.
    fn with_mapped_partitions<T>(
        mut self,
        path: &std::path::Path,
        work: impl FnOnce(&[MappedPartition<'_>]) -> Result<T>,
    ) -> Result<T> {
        let first = self.take_first();
        let consumed = self.decoder.bytes_before as usize;
        let file = std::fs::File::open(path).map_err(|e| QuiverError::io(&self.source_name, e))?;
        let length = file
            .metadata()
            .map_err(|e| QuiverError::io(&self.source_name, e))?
            .len();
        let map = if length as usize > consumed {
            // SAFETY: the mapping is read-only; a concurrent writer truncating the file is
            // outside what any mmap-based reader can defend against.
            Some(
                unsafe { memmap2::Mmap::map(&file) }
                    .map_err(|e| QuiverError::io(&self.source_name, e))?,
            )
        } else {
            None
        };
        let text = match &map {
            Some(map) => map.get(consumed..).ok_or_else(|| {
                QuiverError::io(
                    &self.source_name,
                    std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the file shrank while it was read",
                    ),
                )
            })?,
            None => &[][..],
        };
        let syntax = match self.decoder.format {
            InputFormat::Csv => quiver_cli::chunked::RecordSyntax::Csv,
            _ => quiver_cli::chunked::RecordSyntax::Lines,
        };
        let workers = rayon::current_num_threads().max(1);
        let chunk_bytes = (text.len() / (8 * workers))
            .clamp(*MAPPED_CHUNK_BYTES.start(), *MAPPED_CHUNK_BYTES.end());
        let chunks: Vec<(usize, std::ops::Range<usize>)> =
            quiver_cli::chunked::record_ranges(text, syntax, chunk_bytes)
                .into_iter()
                .enumerate()
                .collect();
        // Consecutive runs of about equal bytes, one per worker.
        let mut runs: Vec<&[(usize, std::ops::Range<usize>)]> = Vec::with_capacity(workers);
        let mut rest = &chunks[..];
        for worker in 1..=workers {
            let until = text.len() * worker / workers;
            let take = rest.partition_point(|(_, range)| range.start < until);
            let (run, after) = rest.split_at(take);
            runs.push(run);
            rest = after;
        }
        let reports = std::sync::Mutex::new((0..chunks.len()).map(|_| None).collect::<Vec<_>>());
        let mut first = Some(first);
        let partitions: Vec<MappedPartition<'_>> = runs
            .into_iter()
            .map(|chunks| MappedPartition {
                text,
                decoded: first.take().unwrap_or_default(),
                chunks,
                decoder: &self.decoder,
                reports: &reports,
            })
            .collect();
        let result = work(&partitions);
        drop(partitions);
        let reports = reports
            .into_inner()
            .map_err(|_| QuiverError::Internal("a decoding worker panicked".into()))?;
        // Chunks after a failed one may be missing; the error is the answer then.
        for report in reports.iter().map_while(Option::as_ref) {
            self.decoder.take_in(report);
        }
        self.decoder.report();
        result
    }

    /// Every row of the input in order: a few chunks at a time decode in parallel and are taken
    /// in input order. Reports the dead letters' count at the end.
    fn read_all(mut self) -> Result<Vec<arrow::record_batch::RecordBatch>> {
        use rayon::prelude::*;
        let mut batches = self.take_first();
        let group_size = 2 * default_threads();
        loop {
            let mut group = Vec::with_capacity(group_size);
            while group.len() < group_size {
                match self.next_chunk()? {
                    Some(chunk) => group.push(chunk),
                    None => break,
                }
            }
            if group.is_empty() {
                break;
            }
            let decoder = &self.decoder;
            let outputs: Vec<Result<quiver_ingest::IngestOutput>> =
                group.par_iter().map(|chunk| decoder.parse(chunk)).collect();
            for (chunk, output) in group.iter().zip(outputs) {
                batches.extend(self.decoder.absorb(chunk, output?));
            }
        }
        self.decoder.report();
        Ok(batches)
    }
}

/// Runs `query` over a CSV or JSON-lines table read in chunks as it arrives: window and EMIT
/// CHANGES queries push each chunk through and write (and flush) their output as it is
/// produced, so a query over a pipe answers before the pipe closes; other queries aggregate
/// every chunk and answer at the end. The schema is inferred from the first chunk, which holds
/// the first `infer_schema_rows` records (or all of a shorter input).
fn run_streamed(
    name: &str,
    path: &std::path::Path,
    format: InputFormat,
    query: &StreamedQuery<'_>,
) -> Result<()> {
    let mut input = ChunkedInput::open(path, format, query.verbose)?;
    if query.project_columns {
        input.decode_only_columns_of(query.sql)?;
    }
    let schema = input.schema()?;
    let plan = quiver_sql::plan(query.sql, &[(name.to_string(), schema)])?;
    let (mut sink, context) = open_output(query.output)?;
    // Rows selected from a pipe go out as they arrive (a filter over a stream); from a file they
    // take the parallel path below like any other query.
    let piped_projection = path.as_os_str() == "-"
        && plan.kind == quiver_sql::PlanKind::Projection
        && plan.order_by.is_empty();
    if plan.window.is_none() && plan.emit != quiver_sql::EmitMode::Changes && !piped_projection {
        let results = if !is_regular_file(path) {
            let batches = input.read_all()?;
            quiver_exec::query::run_partitioned(&plan, &[batches])?
        } else if input.partitions_pay_off(path, &plan) {
            input.run_mapped(path, &plan)?
        } else {
            // Decoded in parallel, queried in one partition.
            let batches: Vec<_> = input.read_mapped(path)?.into_iter().flatten().collect();
            quiver_exec::query::run_partitioned(&plan, &[batches])?
        };
        write_batches(&mut sink, &plan.output_schema, &results, query.format)?;
        return sink.flush().map_err(|e| QuiverError::io(context, e));
    }
    let mut runner = quiver_exec::query::QueryRunner::try_new_with(plan, query.stream)?;
    let mut writer = StreamWriter {
        format: query.format,
        schema: runner.schema().clone(),
        wrote_header: false,
        table_rows: Vec::new(),
    };
    let mut batches = input.take_first();
    loop {
        let mut results = Vec::new();
        for batch in &batches {
            results.extend(runner.push(batch)?);
        }
        writer.write(&mut sink, &results)?;
        sink.flush().map_err(|e| QuiverError::io(&context, e))?;
        match input.next_chunk()? {
            Some(chunk) => batches = input.decoder.decode(&chunk)?,
            None => break,
        }
    }
    let results = runner.finish()?;
    writer.write(&mut sink, &results)?;
    writer.finish(&mut sink)?;
    input.decoder.report();
    report_window_run(&mut runner, query.verbose);
    sink.flush().map_err(|e| QuiverError::io(context, e))
}

/// Writes a streaming query's output as it is produced: CSV and JSON lines at once (the CSV
/// header before the first rows), the aligned table at the end (it needs every row's width).
struct StreamWriter {
    format: OutputFormat,
    schema: arrow::datatypes::SchemaRef,
    wrote_header: bool,
    table_rows: Vec<arrow::record_batch::RecordBatch>,
}

impl StreamWriter {
    fn write(
        &mut self,
        sink: &mut dyn Write,
        batches: &[arrow::record_batch::RecordBatch],
    ) -> Result<()> {
        let batches: Vec<_> = batches.iter().filter(|b| b.num_rows() > 0).collect();
        if batches.is_empty() {
            return Ok(());
        }
        match self.format {
            OutputFormat::Table => self.table_rows.extend(batches.into_iter().cloned()),
            OutputFormat::Csv => {
                write_csv(sink, batches, !self.wrote_header)?;
                self.wrote_header = true;
            }
            OutputFormat::Json => write_json_lines(sink, batches)?,
        }
        Ok(())
    }

    fn finish(self, sink: &mut dyn Write) -> Result<()> {
        match self.format {
            OutputFormat::Table => write_batches(sink, &self.schema, &self.table_rows, self.format),
            // A query without rows still prints its header.
            OutputFormat::Csv if !self.wrote_header => {
                write_batches(sink, &self.schema, &[], self.format)
            }
            _ => Ok(()),
        }
    }
}

/// Late rows and row accounting of a windowed run, on stderr.
fn report_window_run(runner: &mut quiver_exec::query::QueryRunner, verbose: bool) {
    let dead_letters = runner.take_dead_letters();
    if let Some(metrics) = runner.window_metrics() {
        if verbose || metrics.rows_late_dropped > 0 || !dead_letters.is_empty() {
            eprintln!(
                "rows: {} in = {} aggregated ({} late, into closed windows) + {} late dropped + \
                 {} dead-lettered; watermark {}",
                metrics.rows_in,
                metrics.rows_aggregated,
                metrics.rows_late_updated,
                metrics.rows_late_dropped,
                metrics.rows_dead_lettered,
                metrics
                    .watermark_ms
                    .map_or_else(|| "none yet".to_string(), |w| format!("{w} ms"))
            );
        }
    }
    let shown = if verbose { dead_letters.len() } else { 5 };
    for dead in dead_letters.iter().take(shown) {
        eprintln!("  dead letter {dead}: {}", dead.payload_text());
    }
    report_more(dead_letters.len(), shown);
}

fn write_batches(
    sink: &mut dyn Write,
    schema: &arrow::datatypes::SchemaRef,
    batches: &[arrow::record_batch::RecordBatch],
    format: OutputFormat,
) -> Result<()> {
    let empty = arrow::record_batch::RecordBatch::new_empty(schema.clone());
    let batches: &[arrow::record_batch::RecordBatch] = if batches.is_empty() {
        std::slice::from_ref(&empty)
    } else {
        batches
    };
    match format {
        OutputFormat::Table => {
            let table = arrow::util::pretty::pretty_format_batches(batches)?;
            writeln!(sink, "{table}").map_err(|e| QuiverError::io("output", e))
        }
        OutputFormat::Csv => write_csv(sink, batches, true),
        OutputFormat::Json => write_json_lines(sink, batches),
    }
}

/// Writes `batches` as CSV rows (RFC 4180), after a header row of the column names when
/// `with_header`. Values print as Arrow displays them (ISO 8601 times, shortest round-trip
/// floats); NULL is an empty field and an empty string is `""`, so the two stay apart, as
/// DuckDB and PostgreSQL write them.
fn write_csv<'a>(
    sink: &mut dyn Write,
    batches: impl IntoIterator<Item = &'a arrow::record_batch::RecordBatch>,
    with_header: bool,
) -> Result<()> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    use std::fmt::Write as _;
    let options = FormatOptions::default();
    let mut text = String::new();
    let mut value = String::new();
    let mut header_due = with_header;
    for batch in batches {
        text.clear();
        if std::mem::take(&mut header_due) {
            for (index, field) in batch.schema().fields().iter().enumerate() {
                if index > 0 {
                    text.push(',');
                }
                push_csv_field(&mut text, field.name(), false);
            }
            text.push('\n');
        }
        let formatters = batch
            .columns()
            .iter()
            .map(|column| ArrayFormatter::try_new(column.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        // Logical nulls: a column of type NULL has no validity buffer.
        let nulls: Vec<_> = batch.columns().iter().map(|c| c.logical_nulls()).collect();
        for row in 0..batch.num_rows() {
            for (index, (formatter, nulls)) in formatters.iter().zip(&nulls).enumerate() {
                if index > 0 {
                    text.push(',');
                }
                if nulls.as_ref().is_some_and(|n| n.is_null(row)) {
                    continue;
                }
                value.clear();
                write!(value, "{}", formatter.value(row))
                    .map_err(|e| QuiverError::Internal(format!("formatting a CSV value: {e}")))?;
                push_csv_field(&mut text, &value, true);
            }
            text.push('\n');
        }
        sink.write_all(text.as_bytes())
            .map_err(|e| QuiverError::io("output", e))?;
    }
    Ok(())
}

/// Appends one CSV field, quoted when it holds a comma, quote or line break, or when it is an
/// empty `value` (which would otherwise read as NULL).
fn push_csv_field(text: &mut String, field: &str, value: bool) {
    let quoted = field.contains([',', '"', '\n', '\r']) || (value && field.is_empty());
    if quoted {
        text.push('"');
        text.push_str(&field.replace('"', "\"\""));
        text.push('"');
    } else {
        text.push_str(field);
    }
}

/// Writes `batches` as JSON lines, one object per row, every column in it (NULL as `null`).
fn write_json_lines<'a>(
    sink: &mut dyn Write,
    batches: impl IntoIterator<Item = &'a arrow::record_batch::RecordBatch>,
) -> Result<()> {
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::LineDelimited>(sink);
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    Ok(())
}
