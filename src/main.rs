//! The command line: parses arguments, loads the config, runs one command and
//! maps its error to an exit code (0 ok, 64 usage, 78 config, 77 privilege,
//! 1 other; see nftsentry(8)).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nftsentry::config::{self, Config};
use nftsentry::error::{Error, Result};
use nftsentry::nft::NftSocket;
use nftsentry::{bans, daemon, ignores, import, logging, respond};

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
    /// Ban ADDR now
    Block {
        addr: IpAddr,
        /// How long [default: ban_time from the config], e.g. 90s, 15m, 1h, 2d
        #[arg(long = "for", value_name = "DURATION")]
        duration: Option<String>,
    },
    /// Lift the ban on ADDR
    Unblock { addr: IpAddr },
    /// List active bans with the time they have left
    List {
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Lift every ban
    Flush,
    /// Convert a PortSentry config to nftsentry.toml, printed on standard output
    ImportPortsentry {
        /// PortSentry's config file
        #[arg(value_name = "FILE", default_value = nftsentry::import::DEFAULT_CONF)]
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
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            logging::error(&format!("nftsentry: {e}"));
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
        });
    }
    let cfg = load_config(cli.config.as_deref())?;
    match cli.command {
        Command::Run { debug } => {
            logging::init(logging::auto_target(), debug);
            daemon::run(cfg)
        }
        Command::Check => check(&cfg),
        Command::Ruleset => {
            let (ruleset, _) = daemon::build_ruleset(&cfg)?;
            print!("{}", ruleset.render());
            Ok(())
        }
        Command::Block { addr, duration } => {
            let timeout = match duration {
                Some(d) => config::parse_duration(&d)
                    .map_err(|e| Error::usage(format!("--for {d}: {e}")))?,
                None => cfg.ban_time,
            };
            if timeout < Duration::from_secs(1) {
                return Err(Error::usage("--for: a ban must last at least 1s"));
            }
            let mut sock = NftSocket::open()?;
            // The element, the route and hosts.deny line where configured,
            // and the state file's record.
            respond::block(&cfg, &mut sock, addr, timeout)?;
            // The ignore rule comes first in the chain: say so rather than
            // let the admin believe the address is cut off.
            if nftsentry::detect::IgnoreList::new(ignores::collect(&cfg)?).contains(&addr) {
                eprintln!(
                    "nftsentry: note: {addr} is in the ignore list (ignore file or a local address); its packets are not dropped while it is ignored"
                );
            }
            println!(
                "{} blocked for {}",
                bans::canonical(addr),
                nftsentry::ruleset::nft_duration(timeout)
            );
            Ok(())
        }
        Command::Unblock { addr } => {
            let mut sock = NftSocket::open()?;
            if respond::unblock(&cfg, &mut sock, addr)? {
                println!("{} unblocked", bans::canonical(addr));
                Ok(())
            } else {
                Err(Error::other(format!(
                    "{} is not blocked",
                    bans::canonical(addr)
                )))
            }
        }
        Command::List { json } => {
            let mut sock = NftSocket::open()?;
            let list = bans::list(&mut sock, &cfg.table)?;
            print!(
                "{}",
                if json {
                    list_json(&list)
                } else {
                    list_text(&list)
                }
            );
            Ok(())
        }
        Command::Flush => {
            let mut sock = NftSocket::open()?;
            let n = respond::flush(&cfg, &mut sock)?;
            println!("{n} bans lifted");
            Ok(())
        }
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
    print!("{}", out.toml);
    Ok(())
}

fn check(cfg: &Config) -> Result<()> {
    let ignores = ignores::collect(cfg)?;
    println!("config {}: OK", cfg.source);
    println!(
        "table inet {} at priority {}",
        cfg.table,
        nftsentry::ruleset::render_priority(cfg.chain_priority)
    );
    for (name, p) in [("tcp", &cfg.tcp), ("udp", &cfg.udp)] {
        println!(
            "{name}: mode {}, {} ports watched by tripwires, {} ports listened on",
            p.mode,
            p.tripwire_ports().len(),
            p.connect_ports().len()
        );
    }
    println!(
        "ban time {}, at most {} bans per family",
        nftsentry::ruleset::nft_duration(cfg.ban_time),
        cfg.set_size
    );
    println!("{} ignored networks", ignores.len());
    for w in nftsentry::daemon::handshake_warnings(cfg) {
        println!("warning: {w}");
    }
    println!(
        "block mode: tcp {}, udp {}",
        cfg.tcp.block_mode, cfg.udp.block_mode
    );
    for line in respond::describe_actions(cfg) {
        println!("{line}");
    }
    let path = |p: &Option<PathBuf>| {
        p.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "none".into())
    };
    println!("history file: {}", path(&cfg.history_file));
    println!("state file: {}", path(&cfg.state_file));
    Ok(())
}

fn secs(d: Option<Duration>) -> String {
    d.map(|d| d.as_secs().to_string())
        .unwrap_or_else(|| "null".into())
}

fn list_json(list: &[bans::Ban]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|b| {
            format!(
                "{{\"address\":\"{}\",\"timeout\":{},\"expires_in\":{}}}",
                b.addr,
                secs(b.timeout),
                secs(b.expires_in)
            )
        })
        .collect();
    format!("[{}]\n", items.join(","))
}

fn list_text(list: &[bans::Ban]) -> String {
    let dur = |d: Option<Duration>| {
        d.map(|d| nftsentry::ruleset::nft_duration(Duration::from_secs(d.as_secs())))
            .unwrap_or_else(|| "-".into())
    };
    let mut out = format!(
        "{:<40} {:>12} {:>12}\n",
        "ADDRESS", "EXPIRES IN", "BAN TIME"
    );
    for b in list {
        out.push_str(&format!(
            "{:<40} {:>12} {:>12}\n",
            b.addr.to_string(),
            dur(b.expires_in),
            dur(b.timeout)
        ));
    }
    out
}
