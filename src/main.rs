//! The `remarket` binary: a thin clap front-end over the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use remarket::app::{self, ReplayOptions};
use remarket::config::Config;
use remarket::output::OutDir;
use remarket::sink::dry_run::DryRunSink;
use remarket::sink::replay::ReplayTikTokSink;
use remarket::sink::AudienceSink;

/// mimalloc: records are allocated by the router thread and freed by shard threads; glibc's
/// arena locks made that cross-thread traffic a quarter of a replay's time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "remarket",
    version,
    about = "Live remarketing engine: events in, TikTok audiences out"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum SinkKind {
    DryRun,
    Tiktok,
}

#[derive(Subcommand)]
enum Command {
    /// Replay recorded topics through the campaigns and write the decisions.
    Replay {
        /// The config file (TOML; REMARKET__SECTION__KEY variables override its service sections).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Output directory for decisions.jsonl, summary.json, dead-letter.jsonl.
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Detect shards (0 = engine.shards from the config, whose 0 = one per core).
        #[arg(long, default_value_t = 0)]
        shards: usize,
        /// Where the audience ops go: dry-run (counted, nothing sent) or tiktok (the [tiktok]
        /// section's API; failures in sink-failed.jsonl).
        #[arg(long, value_enum, default_value_t = SinkKind::DryRun)]
        sink: SinkKind,
        /// No progress bar, no summary table.
        #[arg(long)]
        quiet: bool,
        /// A recording of the campaigns topic (`kcat -C -J` output, or the store's records as
        /// JSON lines): its published campaigns join the config's, each from its publish time.
        #[arg(long, value_name = "RECORDING")]
        campaigns: Option<PathBuf>,
        /// Recorded topics: plain JSON lines or `kcat -C -J` output.
        #[arg(required = true)]
        recording: Vec<PathBuf>,
    },
    /// Consume from Kafka and push to TikTok (the production mode).
    Run {
        /// The config file (TOML; REMARKET__SECTION__KEY variables override its service sections).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Validate a config file and list every problem.
    CheckConfig {
        /// The config file (TOML; REMARKET__SECTION__KEY variables override its service sections).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Also a campaign file (one `[[campaign]]`, or its keys), checked as the admin API
        /// would publish it alongside the config
        #[arg(long, value_name = "FILE")]
        campaign: Option<PathBuf>,
    },
    /// Write live topics as a recording (`kcat -C -J` lines) that `replay` reads.
    Record(remarket::record::RecordArgs),
    /// Manage campaigns through a running service's admin API.
    Campaigns(remarket::campaigns_cli::CampaignsArgs),
    /// Produce recorded topics into a Kafka topic, keeping keys, partitions and timestamps.
    Publish(remarket::publish::PublishArgs),
    /// Write a synthetic recording to stdout.
    Generate(remarket::generate::GenerateArgs),
    /// Run the TikTok Marketing API simulator (for local work and tests).
    TiktokSim(remarket::tiktok_sim::SimArgs),
}

/// Log output: `REMARKET_LOG` (else `RUST_LOG`, else `info`) is the filter,
/// `REMARKET_LOG_FORMAT` `text` (the default) or `json`. A filter or format that does not
/// parse is an error, not a silent fallback. Returns whether logs are JSON.
fn init_tracing() -> Result<bool, String> {
    use tracing_subscriber::EnvFilter;
    let (var, directives) = match (std::env::var("REMARKET_LOG"), std::env::var("RUST_LOG")) {
        (Ok(v), _) => ("REMARKET_LOG", v),
        (Err(_), Ok(v)) => ("RUST_LOG", v),
        (Err(_), Err(_)) => ("", "info".to_owned()),
    };
    let filter = EnvFilter::builder()
        .parse(&directives)
        .map_err(|e| format!("{var}={directives:?} is not a log filter: {e}"))?;
    let json = match std::env::var("REMARKET_LOG_FORMAT").as_deref() {
        Err(_) | Ok("text") => false,
        Ok("json") => true,
        Ok(other) => return Err(format!("REMARKET_LOG_FORMAT={other:?}: use text or json")),
    };
    // Colours only on a terminal: log files and collectors get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(!json && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(json)
}

fn main() -> ExitCode {
    let json = match init_tracing() {
        Ok(json) => json,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // JSON logs stay JSON up to the last line.
            if json {
                tracing::error!(error = %format!("{e:#}"), "fatal");
            } else {
                eprintln!("error: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path)
}

/// `check-config --campaign FILE`: the config with the file's campaign added as if published.
fn check_campaign_file(
    config_text: &str,
    file: &std::path::Path,
) -> anyhow::Result<Result<Config, remarket::problems::Problems>> {
    use remarket::store::{Doc, Kind, Store};
    let base: toml::Table = match config_text.parse() {
        Ok(b) => b,
        Err(_) => return Ok(Config::parse(config_text, std::env::vars())),
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let definition = remarket::campaigns_cli::campaign_file(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let id = definition["id"].as_str().unwrap_or("").to_owned();
    let doc = Doc::draft(Kind::Campaign, id, definition, 0);
    Ok(Store::default().check(&base, &doc, std::env::vars()))
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Replay {
            config,
            out,
            shards,
            sink,
            quiet,
            campaigns,
            recording,
        } => {
            let config = match campaigns {
                None => load(&config)?,
                Some(path) => {
                    let text = std::fs::read_to_string(&path).map_err(|e| {
                        anyhow::anyhow!("cannot read campaigns {}: {e}", path.display())
                    })?;
                    let store = remarket::store::Store::read_recording(&text)
                        .map_err(|e| anyhow::anyhow!("campaigns {}: {e}", path.display()))?;
                    store.load_config(&config)?
                }
            };
            let opts = ReplayOptions {
                out_dir: out.clone(),
                now_ms: remarket::clock::WallClock::now_ms(&remarket::clock::SystemClock),
                shards: if shards == 0 {
                    config.engine.shards
                } else {
                    shards
                },
                progress: !quiet,
            };
            let started = std::time::SystemTime::now();
            // Owned before the sink starts: the TikTok sink keeps its audiences there.
            let out_dir = OutDir::lock(&out)?;
            let mut sink: Box<dyn AudienceSink> = match sink {
                SinkKind::DryRun => Box::new(DryRunSink::default()),
                SinkKind::Tiktok => Box::new(ReplayTikTokSink::start(&config, out_dir.path())?),
            };
            let report = app::replay_into(&config, &recording, &out_dir, &opts, sink.as_mut())?;
            let secs = started.elapsed().map_or(0.0, |d| d.as_secs_f64());
            if !quiet {
                let s = &report.summary;
                println!(
                    "replayed {} records ({} events, {} profiles), {} malformed, {} late in {:.2}s ({:.0} records/s); {} users tracked",
                    s.records,
                    s.events,
                    s.profiles,
                    s.malformed,
                    s.late_dropped,
                    secs,
                    (s.records + s.malformed) as f64 / secs.max(1e-9),
                    report.users
                );
                print!("{}", s.table());
                print!("{}", s.reports());
                let k = &report.sink;
                if k.requests > 0 {
                    println!(
                        "tiktok: {} users added, {} deleted in {} requests ({} retried), {} failed",
                        k.adds, k.deletes, k.requests, k.retries, k.failed
                    );
                }
                println!(
                    "wrote {}/{{decisions.jsonl,summary.json,dead-letter.jsonl}}",
                    out.display()
                );
            }
            if let Some(failure) = report.sink_failure {
                return Err(failure.into());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { config, campaign } => {
            let text = std::fs::read_to_string(&config)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", config.display()))?;
            let parsed = match &campaign {
                None => Config::parse(&text, std::env::vars()),
                Some(file) => check_campaign_file(&text, file)?,
            };
            match parsed {
                Ok(c) => {
                    println!(
                        "{}: ok, {} campaign(s)",
                        config.display(),
                        c.campaigns.len()
                    );
                    for c in &c.campaigns {
                        let kind = match (&c.trigger, &c.schedule) {
                            (Some(t), _) => match &t.inaction {
                                Some(i) => format!(
                                    "{:?} not followed by {:?} within {}",
                                    t.event, i.event, i.within
                                ),
                                None => format!("on {:?}", t.event),
                            },
                            (None, Some(s)) => {
                                let end = (c.end < i64::MAX).then_some(c.end);
                                let runs: Vec<i64> = s.runs(c.start, end).take(3).collect();
                                let first = runs
                                    .first()
                                    .and_then(|t| jiff::Timestamp::from_millisecond(*t).ok())
                                    .map_or("none".into(), |t| t.to_string());
                                format!(
                                    "past behaviour ({} rule(s)), first run {first}",
                                    c.who.past.len()
                                )
                            }
                            (None, None) => String::new(),
                        };
                        println!("  {}: {kind}", c.id);
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(problems) => {
                    eprint!("{}: {problems}", config.display());
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Record(args) => {
            let n = remarket::record::record(&args)?;
            eprintln!("recorded {n} records");
            Ok(ExitCode::SUCCESS)
        }
        Command::Campaigns(args) => {
            remarket::campaigns_cli::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Publish(args) => {
            remarket::publish::publish(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Generate(args) => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
            remarket::generate::generate(&args, &mut w)?;
            use std::io::Write;
            w.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { config } => {
            remarket::run::run(load(&config)?)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::TiktokSim(args) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(remarket::tiktok_sim::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag and argument of every command says what it is for.
    #[test]
    fn every_argument_has_help() {
        use clap::CommandFactory;
        let cli = Cli::command();
        cli.clone().debug_assert();
        for sub in cli.get_subcommands() {
            assert!(sub.get_about().is_some(), "{} has no about", sub.get_name());
            for arg in sub.get_arguments() {
                if matches!(arg.get_id().as_str(), "help" | "version") {
                    continue;
                }
                assert!(
                    arg.get_help().is_some(),
                    "remarket {} --{} has no help",
                    sub.get_name(),
                    arg.get_id()
                );
            }
        }
    }
}
