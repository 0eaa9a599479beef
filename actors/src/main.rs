//! `switchyard`: the command line, logging set-up and the start of the actor system.
//!
//! The commands are the contract tests and benchmarks depend on:
//! `serve [DIR] [--listen ADDR]` (zero-config), `run -c FILE` and `check -c FILE`.

mod acceptor;
mod notify;
mod quic;
mod seeding;
mod server;
mod steering;
mod udp;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc's thread-local free lists suit a server whose allocations are short-lived and stay
/// on the worker thread that made them (measured in `interop/bench/`: less time in malloc/free
/// than glibc's allocator on the request path).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use switchyard_conf::Config;

#[derive(Debug, Parser)]
#[command(
    name = "switchyard",
    version,
    about = "HTTP/1.1, HTTP/2, HTTP/3 and BitTorrent on one address"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a directory with zero configuration (directory listings on).
    Serve {
        /// The directory to serve.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Address to listen on (repeatable). Port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: Vec<SocketAddr>,
        /// Worker threads (default: available cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Write an access log to this file (`-` for stderr).
        #[arg(long)]
        access_log: Option<PathBuf>,
        /// TLS certificate chain (PEM); without it a self-signed one is generated at start.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Private key (PEM) of `--cert`.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Where piece hashes of seeded files are cached (default: $XDG_STATE_HOME/switchyard).
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// Do not seed over BitTorrent (no .torrent, tracker or peer wire).
        #[arg(long)]
        no_seed: bool,
        /// Answer this path (e.g. /metrics) with the process's counters in the Prometheus text
        /// format instead of a file.
        #[arg(long, value_parser = parse_metrics_path)]
        metrics: Option<String>,
        /// QUIC options (`[quic]` of a configuration file).
        #[command(flatten)]
        quic: QuicArgs,
    },
    /// Run with a configuration file (plus its conf.d/ directory).
    Run {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// Override `workers` from the file.
        #[arg(long)]
        workers: Option<usize>,
        /// Override `torrent.state_dir` from the file.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Reverse-proxy ADDR to one or more members, with zero configuration.
    Proxy {
        /// Address to listen on (repeatable).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: Vec<SocketAddr>,
        /// A member: host:port, http://host[:port] or https://host[:port] (repeatable).
        #[arg(long, required = true)]
        to: Vec<String>,
        /// round_robin, weighted, least_conn, ip_hash, consistent_hash or random_two.
        #[arg(long, default_value = "round_robin")]
        balance: String,
        /// Worker threads (default: available cores).
        #[arg(long)]
        workers: Option<usize>,
        /// Write an access log to this file (`-` for stderr).
        #[arg(long)]
        access_log: Option<PathBuf>,
    },
    /// Validate a configuration file and exit (non-zero with file:line:column on error).
    Check {
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
}

/// `serve`'s QUIC options.
#[derive(Debug, clap::Args)]
struct QuicArgs {
    /// Do not open the QUIC (HTTP/3) endpoint on UDP.
    #[arg(long)]
    no_quic: bool,
    /// When new QUIC connections must first answer a Retry: never, always, or "above N/s".
    #[arg(long, value_parser = switchyard_conf::parse_retry)]
    quic_retry: Option<switchyard_conf::RetryPolicy>,
    /// Write one qlog file per QUIC connection into this directory.
    #[arg(long)]
    qlog_dir: Option<PathBuf>,
    /// Refuse 0-RTT early data.
    #[arg(long)]
    no_zero_rtt: bool,
    /// QUIC congestion controller: cubic, bbr or newreno.
    #[arg(long, value_parser = parse_congestion)]
    quic_congestion: Option<switchyard_conf::Congestion>,
    /// Close a QUIC connection silent for this long (the max_idle_timeout transport parameter,
    /// e.g. "30s", the default).
    #[arg(long, value_parser = switchyard_conf::parse_idle_timeout)]
    quic_idle_timeout: Option<std::time::Duration>,
}

fn parse_metrics_path(text: &str) -> Result<String, String> {
    if text.starts_with('/') {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?}: a path starting with \"/\", such as /metrics"
        ))
    }
}

fn parse_congestion(text: &str) -> Result<switchyard_conf::Congestion, String> {
    match text {
        "cubic" => Ok(switchyard_conf::Congestion::Cubic),
        "bbr" => Ok(switchyard_conf::Congestion::Bbr),
        "newreno" => Ok(switchyard_conf::Congestion::NewReno),
        other => Err(format!("{other:?}: expected cubic, bbr or newreno")),
    }
}

impl QuicArgs {
    fn apply(self, quic: &mut switchyard_conf::QuicConfig) {
        quic.enabled = !self.no_quic;
        quic.zero_rtt = !self.no_zero_rtt;
        if let Some(retry) = self.quic_retry {
            quic.retry = retry;
        }
        if let Some(congestion) = self.quic_congestion {
            quic.congestion = congestion;
        }
        if let Some(dir) = self.qlog_dir {
            quic.qlog_dir = Some(dir);
        }
        if let Some(idle) = self.quic_idle_timeout {
            quic.idle_timeout = idle;
        }
    }
}

fn main() -> ExitCode {
    init_tracing();
    switchyard_services::metrics::mark_start();
    let cli = Cli::parse();
    let mut reload_from = None;
    let config = match cli.command {
        Command::Check { config } => {
            return match switchyard_conf::check(&config) {
                Ok(summary) => {
                    println_stdout(&summary);
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            };
        }
        Command::Serve {
            dir,
            listen,
            workers,
            access_log,
            cert,
            key,
            state_dir,
            no_seed,
            metrics,
            quic,
        } => {
            let first = listen
                .first()
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
            Config::serve_dir(&dir, first).map(|mut config| {
                config.listeners = listen
                    .into_iter()
                    .map(|addr| switchyard_conf::Listener { addr })
                    .collect();
                if let Some(workers) = workers {
                    config.workers = workers;
                }
                if let Some(path) = access_log {
                    let target = if path.as_os_str() == "-" {
                        switchyard_conf::LogTarget::Stderr
                    } else {
                        switchyard_conf::LogTarget::File(path)
                    };
                    config.log.access = Some(switchyard_conf::AccessLog {
                        target,
                        format: Default::default(),
                    });
                }
                if let (Some(cert), Some(key)) = (cert, key) {
                    config.tls.default_cert = Some(switchyard_conf::CertPair { cert, key });
                }
                if let Some(dir) = state_dir {
                    config.torrent.state_dir = dir;
                }
                config.torrent.enabled = !no_seed;
                if let (Some(prefix), Some(vhost)) = (metrics, config.vhosts.first_mut()) {
                    vhost.locations.push(switchyard_conf::Location {
                        prefix,
                        handler: switchyard_conf::Handler::Metrics,
                        cache: false,
                    });
                }
                quic.apply(&mut config.quic);
                config
            })
        }
        Command::Proxy {
            listen,
            to,
            balance,
            workers,
            access_log,
        } => proxy_config(listen, &to, &balance).map(|mut config| {
            if let Some(workers) = workers {
                config.workers = workers;
            }
            if let Some(path) = access_log {
                let target = if path.as_os_str() == "-" {
                    switchyard_conf::LogTarget::Stderr
                } else {
                    switchyard_conf::LogTarget::File(path)
                };
                config.log.access = Some(switchyard_conf::AccessLog {
                    target,
                    format: Default::default(),
                });
            }
            config
        }),
        Command::Run {
            config: path,
            workers,
            state_dir,
        } => {
            let loaded = switchyard_conf::load(&path).map(|mut config| {
                if let Some(workers) = workers {
                    config.workers = workers;
                }
                if let Some(dir) = state_dir {
                    config.torrent.state_dir = dir;
                }
                config
            });
            reload_from = Some(path);
            loaded
        }
    };
    let mut config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("switchyard: {e}");
            return ExitCode::FAILURE;
        }
    };
    config.workers = config.workers.max(1);
    match server::run(config, reload_from) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration of `switchyard proxy`: one pool of the `--to` members behind `/`.
fn proxy_config(
    listen: Vec<SocketAddr>,
    to: &[String],
    balance: &str,
) -> Result<Config, switchyard_conf::ConfError> {
    let bad = |what: String| switchyard_conf::ConfError::new(what);
    let members = to
        .iter()
        .map(|m| switchyard_conf::proxy::parse_member(m).map_err(|e| bad(format!("--to {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let mut upstream = switchyard_conf::Upstream::with_members("default", members);
    upstream.balance =
        switchyard_conf::Balance::parse(balance).map_err(|e| bad(format!("--balance: {e}")))?;
    let first = listen
        .first()
        .copied()
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let mut config = Config::serve_dir(std::path::Path::new("."), first)?;
    config.listeners = listen
        .into_iter()
        .map(|addr| switchyard_conf::Listener { addr })
        .collect();
    config.vhosts = vec![switchyard_conf::VirtualHost {
        names: Vec::new(),
        locations: vec![switchyard_conf::Location {
            prefix: "/".to_owned(),
            handler: switchyard_conf::Handler::Proxy(switchyard_conf::ProxyLocation::new(
                "default",
            )),
            cache: false,
        }],
    }];
    config.upstreams = vec![upstream];
    Ok(config)
}

/// Diagnostics go to stderr, filtered by `RUST_LOG` (default `info`, with rustls's per-handshake
/// complaints about clients, such as an IP address sent as SNI, kept at `error`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rustls=error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// Machine-readable lines (readiness, `check` results) go to stdout.
#[allow(clippy::print_stdout)]
fn println_stdout(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
