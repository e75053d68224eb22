//! The `quiver` command: demo, the 1BRC run, and benchmark data generators.

mod demo;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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
    /// Write benchmark data sets.
    Gen {
        /// Which data set.
        dataset: Dataset,
        /// Rows to write.
        #[arg(long)]
        rows: u64,
        /// Distinct keys (stations for 1brc, traders for trades).
        #[arg(long)]
        keys: Option<u64>,
        /// Random seed; the same seed writes the same file.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Output file.
        #[arg(long, short)]
        output: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Dataset {
    /// 1BRC measurements (`station;temperature`).
    #[value(name = "1brc")]
    OneBrc,
    /// Trading records as JSON lines.
    Trades,
}

/// Exit codes: 0 success, 1 runtime or input error, 2 usage error (from clap).
const EXIT_ERROR: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let file = std::fs::File::create(output)
        .map_err(|e| QuiverError::io(output.display().to_string(), e))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let bar = progress_bar(rows, "generating", quiet);
    const BLOCK_ROWS: u64 = 1 << 16;
    let mut buffer = Vec::with_capacity(1 << 22);
    let mut written = 0;
    while written < rows {
        let block = BLOCK_ROWS.min(rows - written);
        buffer.clear();
        // Each block has its own seed so output does not depend on the block size.
        let block_seed = seed ^ written.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        match dataset {
            Dataset::OneBrc => {
                let stations = keys.unwrap_or(quiver_cli::generate::STATIONS.len() as u64) as usize;
                quiver_cli::generate::onebrc_lines(block, stations, block_seed, &mut buffer);
            }
            Dataset::Trades => {
                let traders = keys.unwrap_or(100);
                quiver_cli::generate::trades_jsonl(
                    block,
                    traders,
                    block_seed,
                    written,
                    &mut buffer,
                );
            }
        }
        writer
            .write_all(&buffer)
            .map_err(|e| QuiverError::io(output.display().to_string(), e))?;
        written += block;
        bar.set_position(written);
    }
    writer
        .flush()
        .map_err(|e| QuiverError::io(output.display().to_string(), e))?;
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
