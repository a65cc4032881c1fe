//! The command line: parses arguments, loads the config, runs one command and
//! maps its error to an exit code (0 ok, 64 usage, 78 config, 77 privilege,
//! 1 other; see nftsentry(8)).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use nftsentry::cli::{commands, import};
use nftsentry::config::{self, Config};
use nftsentry::error::{Error, Result};
use nftsentry::service::{self, control::Request, requests};
use nftsentry::{log_error, logging};

/// Where the config is read from when --config is not given.
const DEFAULT_CONFIG: &str = "/etc/nftsentry/nftsentry.toml";

#[derive(Parser)]
#[command(
    name = "nftsentry",
    version,
    about = "Port-scan detector and blocker: PortSentry's tripwires on nftables",
    long_about = None
)]
struct Cli {
    /// Config file [default: /etc/nftsentry/nftsentry.toml if it exists, else the built-in default]
    #[arg(short, long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install the table and watch for probes, in the foreground
    Run {
        /// Log debug lines too (packets that are not probes, ignored sources)
        #[arg(short, long)]
        debug: bool,
    },
    /// Check the config and ignore file, print a summary, change nothing
    Check,
    /// Print the table nftsentry would install, in nft syntax
    Ruleset,
    /// Ban ADDR (an address, or a prefix such as 2001:db8::/64) now
    Block {
        #[arg(value_name = "ADDR|PREFIX")]
        addr: nftsentry::cidr::Cidr,
        /// How long [default: ban_time from the config], e.g. 90s, 15m, 1h, 2d
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
    /// Lift the ban on ADDR (an address, or a prefix such as 2001:db8::/64)
    Unblock {
        #[arg(value_name = "ADDR|PREFIX")]
        addr: nftsentry::cidr::Cidr,
        /// Also delete its decisions on the CrowdSec Local API, fleet-wide
        #[arg(long)]
        fleet: bool,
    },
    /// List active bans with the time they have left
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Lift every ban
    Flush,
    /// Show the running daemon's state: modes, bans, probes, lost events
    Status {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Print the running daemon's metrics in Prometheus' text format
    Metrics,
    /// Say why ADDR is banned, or why it is not
    Why {
        addr: IpAddr,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Make the running daemon re-read its config and ignore file
    Reload,
    /// Convert a PortSentry config to nftsentry.toml, printed on standard output
    ImportPortsentry {
        /// PortSentry's config file
        #[arg(value_name = "FILE", default_value = nftsentry::cli::import::DEFAULT_CONF)]
        file: PathBuf,
        /// PortSentry's ignore file [default: IGNORE_FILE of the config]
        #[arg(long, value_name = "FILE")]
        ignore: Option<PathBuf>,
        /// Debian's file of TCP_MODE and UDP_MODE [default: /etc/default/portsentry if it exists]
        #[arg(long = "default", value_name = "FILE")]
        default_file: Option<PathBuf>,
        /// Write the ignore entries to FILE and set ignore_file to it, instead of listing them as comments
        #[arg(long, value_name = "FILE")]
        write_ignore: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 64 } else { 0 });
        }
    };
    // Errors of every command go to standard error; under systemd (a
    // reload run by ExecReload=) with their priority for the journal. `run`
    // sets its own target.
    logging::init(logging::Target::Stderr, false);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log_error!("nftsentry: {e}");
            ExitCode::from(e.kind.exit_code() as u8)
        }
    }
}

fn load_config(path: Option<&Path>) -> Result<Config> {
    match path {
        Some(p) => Config::load(Some(p)),
        None if Path::new(DEFAULT_CONFIG).exists() => Config::load(Some(Path::new(DEFAULT_CONFIG))),
        None => Config::load(None),
    }
}

fn run(cli: Cli) -> Result<()> {
    // The import writes an nftsentry config; it reads none.
    if let Command::ImportPortsentry {
        file,
        ignore,
        default_file,
        write_ignore,
    } = cli.command
    {
        return import_portsentry(import::Options {
            conf: file,
            ignore,
            default: default_file,
            write_ignore,
            ..Default::default()
        });
    }
    let cfg = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Run { debug } => {
            logging::init(logging::auto_target(), debug);
            service::run(cfg)
        }
        Command::Check => nftsentry::cli::check::check(&cfg),
        Command::Ruleset => {
            let (ruleset, _) = service::build_ruleset(&cfg)?;
            print!("{}", ruleset.render());
            Ok(())
        }
        Command::Block { addr, duration } => {
            let timeout = match duration {
                Some(d) => config::parse_duration(&d)
                    .map_err(|e| Error::usage(format!("--for {d}: {e}")))?,
                None => cfg.ban_time,
            };
            if timeout < requests::MIN_BAN {
                return Err(Error::usage("--for: a ban must last at least 1s"));
            }
            let secs = timeout.as_secs();
            commands::run(&cfg, &Request::Block { addr, secs })
        }
        Command::Unblock { addr, fleet } => commands::run(&cfg, &Request::Unblock { addr, fleet }),
        Command::List { json } => commands::run(&cfg, &Request::List { json }),
        Command::Flush => commands::run(&cfg, &Request::Flush),
        Command::Status { json } => commands::run(&cfg, &Request::Status { json }),
        Command::Metrics => commands::run(&cfg, &Request::Metrics),
        Command::Why { addr, json } => commands::run(&cfg, &Request::Why { addr, json }),
        Command::Reload => commands::run(&cfg, &Request::Reload),
        Command::ImportPortsentry { .. } => unreachable!("handled before the config is loaded"),
    }
}

/// `import-portsentry`: the converted config on standard output, notes on
/// standard error, the ignore file written when asked for.
fn import_portsentry(opts: import::Options) -> Result<()> {
    let out = import::import(&opts)?;
    // Never print a config that nftsentry itself would refuse.
    if let Err(e) = Config::parse(&out.toml, "<converted config>") {
        return Err(Error::other(format!(
            "the converted config does not pass nftsentry's checks (please report this as a bug of import-portsentry): {e}"
        )));
    }
    for w in &out.warnings {
        eprintln!("nftsentry: note: {w}");
    }
    if let Some((path, text)) = &out.ignore_file {
        import::write_file(path, text)?;
        eprintln!("nftsentry: wrote the ignore entries to {}", path.display());
    }
    eprint!("{}", import::todo_text(&out.todo));
    print!("{}", out.toml);
    Ok(())
}
