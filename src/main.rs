//! The command line: parses arguments, loads the config, runs one command and
//! maps its error to an exit code (0 ok, 64 usage, 78 config, 77 privilege,
//! 1 other; see nftsentry(8)).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use nftsentry::config::{self, Config};
use nftsentry::control::{self, Request};
use nftsentry::detect::IgnoreList;
use nftsentry::error::Kind;
use nftsentry::error::{Error, Result};
use nftsentry::nft::NftSocket;
use nftsentry::{commands, daemon, ignores, import, logging, respond};

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
    /// Show the running daemon's state: modes, bans, probes, lost events
    Status {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Make the running daemon re-read its config and ignore file
    Reload,
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
            ..Default::default()
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
            if timeout < commands::MIN_BAN {
                return Err(Error::usage("--for: a ban must last at least 1s"));
            }
            let secs = timeout.as_secs().to_string();
            by_daemon_or(&cfg, "block", &[&addr.to_string(), &secs], |sock| {
                let ignored = IgnoreList::new(ignores::collect(&cfg)?);
                commands::block(&cfg, sock, addr, timeout, &ignored)
            })
        }
        Command::Unblock { addr } => by_daemon_or(&cfg, "unblock", &[&addr.to_string()], |sock| {
            commands::unblock(&cfg, sock, addr)
        }),
        Command::List { json } => {
            let args: &[&str] = if json { &["--json"] } else { &[] };
            by_daemon_or(&cfg, "list", args, |sock| commands::list(&cfg, sock, json))
        }
        Command::Flush => by_daemon_or(&cfg, "flush", &[], |sock| commands::flush(&cfg, sock)),
        Command::Status { json } => {
            let args: &[&str] = if json { &["--json"] } else { &[] };
            match ask_daemon(&cfg, "status", args)? {
                Some(done) => done,
                None => Err(Error::other(format!(
                    "nftsentry is not running (no daemon answers on {})",
                    control_path(&cfg)
                ))),
            }
        }
        Command::Reload => match ask_daemon(&cfg, "reload", &[])? {
            Some(done) => done,
            None => Err(Error::other(format!(
                "nftsentry is not running (no daemon answers on {}): nothing to reload",
                control_path(&cfg)
            ))),
        },
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

fn check(cfg: &Config) -> Result<()> {
    let ignores = ignores::collect(cfg)?;
    // The files as the installed unit (or `run` by hand) will use them.
    let service = nftsentry::unit_sandbox::check(cfg, Path::new("/"))?;
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
    service.iter().for_each(|l| println!("{l}"));
    Ok(())
}

fn control_path(cfg: &Config) -> String {
    cfg.control_socket
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "no control socket (control_socket = \"\")".into())
}

/// Sends a command to the running daemon. `None`: no daemon answers (or
/// the config has no control socket). `Some`: its answer, printed, as the
/// command's result.
fn ask_daemon(cfg: &Config, command: &str, args: &[&str]) -> Result<Option<Result<()>>> {
    let Some(path) = &cfg.control_socket else {
        return Ok(None);
    };
    let req = Request {
        command: command.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
    };
    // A reload replaces a table that may hold many bans: give it time.
    let Some(reply) = control::request(path, &req, Duration::from_secs(30))? else {
        return Ok(None);
    };
    if reply.code == 0 {
        print_output(&reply.body);
        return Ok(Some(Ok(())));
    }
    let kind = match reply.code {
        64 => Kind::Usage,
        77 => Kind::Privilege,
        78 => Kind::Config,
        _ => Kind::Other,
    };
    let message = reply.body.trim_end();
    let message = message.strip_prefix("nftsentry: ").unwrap_or(message);
    Ok(Some(Err(Error::new(kind, message.to_string()))))
}

/// The daemon does it when it runs (it owns the table); else `direct` on
/// a socket of our own.
fn by_daemon_or(
    cfg: &Config,
    command: &str,
    args: &[&str],
    direct: impl FnOnce(&mut NftSocket) -> Result<String>,
) -> Result<()> {
    if let Some(done) = ask_daemon(cfg, command, args)? {
        return done;
    }
    let mut sock = NftSocket::open()?;
    print_output(&direct(&mut sock)?);
    Ok(())
}

/// A command's output: notes to standard error, the rest to standard output.
fn print_output(out: &str) {
    for line in out.lines() {
        if let Some(note) = line.strip_prefix("note: ") {
            eprintln!("nftsentry: note: {note}");
        } else {
            println!("{line}");
        }
    }
}
