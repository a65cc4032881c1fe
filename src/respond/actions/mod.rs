//! actions: what runs when a source is banned and when its ban ends, in
//! which order, and what is logged for each step.
//!
//! Order (PortSentry 1.2's DisposeTCP/DisposeUDP, with the kernel set as
//! the first block): the set element, the hosts.deny line, the route (native
//! or the legacy `kill_route` command), the external command; with
//! `run_before_block` the command comes first. In block mode "command" only
//! the command runs. A step that fails logs an error line naming the host
//! and the action, and the others still run. At the end of a ban the route
//! and the hosts.deny line are removed (commands are not undone).
//!
//! Every step reports what it applied (`state::Applied`), so that the state
//! file says what must be undone, and a step given what is already applied
//! only checks that it is still there (a restart, a repeated ban).
//!
//! Knows nothing of when bans start or end, of the state file's format or
//! of detection: the caller passes a target and the kernel-set step.

pub mod command;
pub mod hosts_deny;
pub mod route;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::{BlockMode, Config, RouteMode};
use crate::error::{Error, Result};
use crate::journal::state::{self, Applied};
use crate::logging;

use command::{Purpose, Runner, Template, Vars};
use route::RouteSocket;

/// Whom a ban is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: IpAddr,
    /// The port that tripped (0 for `nftsentry block`).
    pub port: u16,
    /// $MODE$: PortSentry's detection type ("stcp", "sudp", ...).
    pub mode: String,
}

impl Target {
    fn vars(&self) -> Vars {
        Vars {
            target: self.addr,
            port: self.port,
            mode: self.mode.clone(),
        }
    }
}

/// What a ban did.
#[derive(Debug)]
pub struct Outcome {
    /// Everything in force now, including what was in force before.
    pub applied: Applied,
    /// The kernel-set step's error, for the caller to report (it may
    /// throttle a flood of them).
    pub set_error: Option<Error>,
}

/// The configured actions and the children they started.
pub struct Actions {
    route: RouteMode,
    kill_route: Option<Template>,
    hosts_deny: Option<PathBuf>,
    hosts_deny_line: String,
    command: Option<Template>,
    run_before_block: bool,
    /// Taken around each hosts.deny change when set: the state file's
    /// lock, which the command line holds while it changes the same files.
    lock: Option<PathBuf>,
    routes: Option<RouteSocket>,
    pub runner: Runner,
    /// Error lines of the hosts.deny, route and command steps: a flood of
    /// bans that all fail the same way logs one line a minute per step.
    errors: [ErrorGate; 3],
}

const HOSTS_DENY: usize = 0;
const ROUTE: usize = 1;
const COMMAND: usize = 2;
/// How often each step's errors are logged, at most.
const ERROR_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Lets an error line through at most once per interval, and counts the
/// ones held back for the next line.
#[derive(Default)]
struct ErrorGate {
    last: Option<Instant>,
    held: u64,
}

impl ErrorGate {
    fn report(&mut self, line: String) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < ERROR_REPORT_INTERVAL)
        {
            self.held += 1;
            return;
        }
        let more = std::mem::take(&mut self.held);
        if more > 0 {
            logging::error(&format!(
                "{line} ({more} more such errors since the last report)"
            ));
        } else {
            logging::error(&line);
        }
        self.last = Some(now);
    }
}

impl Actions {
    /// `take_lock`: take the state file's lock around each hosts.deny edit
    /// (the daemon); false when the caller holds it already (the CLI).
    pub fn new(cfg: &Config, take_lock: bool) -> Actions {
        Actions {
            route: cfg.route,
            kill_route: Template::from_line(&cfg.kill_route, cfg.command_shell),
            hosts_deny: cfg.hosts_deny.clone(),
            hosts_deny_line: cfg.hosts_deny_line.clone(),
            command: Template::new(cfg.command.clone(), cfg.command_shell),
            run_before_block: cfg.run_before_block,
            lock: if take_lock {
                cfg.state_file.clone()
            } else {
                None
            },
            routes: None,
            runner: Runner::new(cfg.command_timeout),
            errors: Default::default(),
        }
    }

    /// New settings (reload). Commands still running keep their deadline
    /// and are reaped as before; the route socket stays open.
    pub fn reconfigure(&mut self, cfg: &Config) {
        let mut runner = std::mem::replace(&mut self.runner, Runner::new(cfg.command_timeout));
        runner.set_timeout(cfg.command_timeout);
        let routes = self.routes.take();
        let errors = std::mem::take(&mut self.errors);
        *self = Actions::new(cfg, self.lock.is_some());
        self.runner = runner;
        self.routes = routes;
        self.errors = errors;
    }

    /// The native route kind in use: none when off or replaced by kill_route.
    pub fn native_route(&self) -> Option<RouteMode> {
        (self.route != RouteMode::Off && self.kill_route.is_none()).then_some(self.route)
    }

    /// A ban of `t` in `mode` (Log does nothing). `set` adds the kernel
    /// element and `set_label` says where ("nftables set blocked4 in table
    /// inet nftsentry for 1d"). `already` is what is in force from an
    /// earlier ban of the same source.
    pub fn ban(
        &mut self,
        t: &Target,
        mode: BlockMode,
        already: &Applied,
        set: &mut dyn FnMut() -> Result<()>,
        set_label: &str,
        now: Instant,
    ) -> Outcome {
        let mut out = Outcome {
            applied: already.clone(),
            set_error: None,
        };
        match mode {
            BlockMode::Log => {}
            BlockMode::Command => self.run_command(t, &mut out.applied, now),
            BlockMode::Block => {
                if self.run_before_block {
                    self.run_command(t, &mut out.applied, now);
                }
                match set() {
                    Ok(()) => {
                        out.applied.set = true;
                        logging::notice(&format!(
                            "attackalert: Host {} has been blocked via {set_label}",
                            t.addr
                        ));
                    }
                    Err(e) => {
                        out.applied.set = false;
                        out.set_error = Some(e);
                    }
                }
                self.hosts_deny_step(t, &mut out.applied, false);
                self.route_step(t, &mut out.applied, now);
                if !self.run_before_block {
                    self.run_command(t, &mut out.applied, now);
                }
            }
        }
        out
    }

    /// The actions that can be checked and undone (hosts.deny line, native
    /// route), applied where missing: for `nftsentry block` and for live bans
    /// at start. What `already` records is put back if it went missing.
    /// `claim`: a hosts.deny line that is there already is taken as ours
    /// (a ban adopted from the kernel after a crash: we wrote the line but
    /// did not live to record it).
    pub fn ensure(&mut self, t: &Target, already: &Applied, claim: bool) -> Applied {
        let mut applied = already.clone();
        self.hosts_deny_step(t, &mut applied, claim);
        if applied.route.is_some() || self.native_route().is_some() {
            self.native_route_step(t, &mut applied);
        }
        applied
    }

    /// Undoes what `applied` holds (route, hosts.deny line) for `addr`;
    /// returns what is still in force because undoing it failed.
    pub fn undo(&mut self, addr: IpAddr, applied: &Applied) -> Applied {
        let mut left = Applied::default();
        if let Some(kind) = applied.route {
            let what = route::describe(kind, addr);
            match self.routes().and_then(|r| r.delete(kind, addr)) {
                Ok(true) => logging::info(&format!(
                    "attackalert: Host {addr}: dropped route \"{what}\" removed"
                )),
                Ok(false) => logging::info(&format!(
                    "attackalert: Host {addr}: dropped route \"{what}\" was already gone"
                )),
                Err(e) => {
                    logging::error(&format!(
                        "adminalert: ERROR: could not remove the dropped route of host {addr}: {e}"
                    ));
                    left.route = Some(kind);
                }
            }
        }
        if let Some((path, line)) = &applied.hosts_deny {
            match self.locked(|| hosts_deny::remove(path, line)) {
                Ok(true) => logging::info(&format!(
                    "attackalert: Host {addr}: wrappers string \"{line}\" removed from {}",
                    path.display()
                )),
                Ok(false) => logging::info(&format!(
                    "attackalert: Host {addr}: wrappers string \"{line}\" was already gone from {}",
                    path.display()
                )),
                Err(e) => {
                    logging::error(&format!(
                        "adminalert: ERROR: could not remove the wrappers string of host {addr}: {e}"
                    ));
                    left.hosts_deny = Some((path.clone(), line.clone()));
                }
            }
        }
        left
    }

    /// Reaps ended children (after SIGCHLD).
    pub fn reap(&mut self, now: Instant) {
        self.runner.reap(now);
    }

    /// Command timeouts; the time to the next one.
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        self.runner.tick(now)
    }

    fn routes(&mut self) -> Result<&mut RouteSocket> {
        if self.routes.is_none() {
            self.routes = Some(RouteSocket::open()?);
        }
        Ok(self.routes.as_mut().expect("just opened"))
    }

    /// Removes the temporary files of hosts.deny writes that died half-way
    /// (see `state::remove_dead_writers_files`); returns what went.
    pub fn remove_leftovers(&self) -> Vec<PathBuf> {
        match &self.hosts_deny {
            Some(p) => self
                .locked(|| Ok(hosts_deny::remove_leftovers(p)))
                .unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Runs `f` under the state file's lock when we are to take it.
    fn locked<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let _guard = match &self.lock {
            Some(p) => Some(state::lock(p).map_err(|e| {
                Error::other(format!(
                    "cannot lock {}: {e}",
                    state::lock_path(p).display()
                ))
            })?),
            None => None,
        };
        f()
    }

    fn hosts_deny_step(&mut self, t: &Target, applied: &mut Applied, claim: bool) {
        let (path, line, recorded) = match (&applied.hosts_deny, &self.hosts_deny) {
            (Some((p, l)), _) => (p.clone(), l.clone(), true),
            (None, Some(p)) => (
                p.clone(),
                command::substitute(&self.hosts_deny_line, &t.vars(), false),
                false,
            ),
            (None, None) => return,
        };
        match self.locked(|| hosts_deny::add(&path, &line)) {
            Ok(hosts_deny::Added::Added) => {
                if recorded {
                    logging::notice(&format!(
                        "attackalert: Host {} has been blocked via wrappers with string: \"{line}\" (put back: it was missing from {})",
                        t.addr,
                        path.display()
                    ));
                } else {
                    logging::notice(&format!(
                        "attackalert: Host {} has been blocked via wrappers with string: \"{line}\"",
                        t.addr
                    ));
                }
                applied.hosts_deny = Some((path, line));
            }
            Ok(hosts_deny::Added::AlreadyThere) if claim => {
                applied.hosts_deny = Some((path, line));
            }
            Ok(hosts_deny::Added::AlreadyThere) => {
                if !recorded {
                    // Not ours: it stays when the ban ends.
                    logging::info(&format!(
                        "attackalert: Host {}: {} already has the line \"{line}\"; not added",
                        t.addr,
                        path.display()
                    ));
                }
            }
            Err(e) => self.errors[HOSTS_DENY].report(format!(
                "attackalert: ERROR: could not block host {} via wrappers: {e}",
                t.addr
            )),
        }
    }

    fn route_step(&mut self, t: &Target, applied: &mut Applied, now: Instant) {
        if let Some(template) = self.kill_route.clone() {
            if applied.kill_route {
                return;
            }
            let text = template.text(&t.vars());
            match self
                .runner
                .spawn(&template, &t.vars(), Purpose::KillRoute, now)
            {
                Ok(_) => {
                    applied.kill_route = true;
                    logging::notice(&format!(
                        "attackalert: Host {} has been blocked via dropped route using command: \"{text}\"",
                        t.addr
                    ));
                }
                Err(e) => self.errors[ROUTE].report(format!(
                    "attackalert: ERROR: could not block host {} via dropped route: {e}",
                    t.addr
                )),
            }
        } else if applied.route.is_some() || self.native_route().is_some() {
            self.native_route_step(t, applied);
        }
    }

    fn native_route_step(&mut self, t: &Target, applied: &mut Applied) {
        let recorded = applied.route;
        let Some(kind) = recorded.or(self.native_route()) else {
            return;
        };
        let what = route::describe(kind, t.addr);
        match self.routes().and_then(|r| r.add(kind, t.addr)) {
            Ok(route::Added::New) => {
                let again = if recorded.is_some() {
                    " (put back: it was missing)"
                } else {
                    ""
                };
                logging::notice(&format!(
                    "attackalert: Host {} has been blocked via dropped route: \"{what}\"{again}",
                    t.addr
                ));
                applied.route = Some(kind);
            }
            Ok(route::Added::Existing) => applied.route = Some(kind),
            Err(e) => self.errors[ROUTE].report(format!(
                "attackalert: ERROR: could not block host {} via dropped route: {e}",
                t.addr
            )),
        }
    }

    fn run_command(&mut self, t: &Target, applied: &mut Applied, now: Instant) {
        let Some(template) = self.command.clone() else {
            return;
        };
        let text = template.text(&t.vars());
        match self
            .runner
            .spawn(&template, &t.vars(), Purpose::Command, now)
        {
            Ok(_) => {
                applied.command = true;
                logging::notice(&format!(
                    "attackalert: External command run for host: {} using command: \"{text}\"",
                    t.addr
                ));
            }
            Err(e) => self.errors[COMMAND].report(format!(
                "attackalert: ERROR: could not run external command for host: {}: {e}",
                t.addr
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_gate_holds_back_a_flood() {
        let mut g = ErrorGate::default();
        g.report("first".into());
        assert!(g.last.is_some());
        assert_eq!(g.held, 0);
        for _ in 0..1000 {
            g.report("again".into());
        }
        assert_eq!(g.held, 1000);
        // Once the interval has passed, the next line goes out with the count.
        g.last = Some(Instant::now() - ERROR_REPORT_INTERVAL);
        g.report("later".into());
        assert_eq!(g.held, 0);
    }

    #[test]
    fn native_route_only_without_kill_route() {
        let mut cfg = Config {
            state_file: None,
            route: RouteMode::Blackhole,
            ..Config::default()
        };
        assert_eq!(
            Actions::new(&cfg, true).native_route(),
            Some(RouteMode::Blackhole)
        );
        cfg.kill_route = "/sbin/ip route add blackhole $TARGET$".into();
        assert_eq!(Actions::new(&cfg, true).native_route(), None);
        cfg.route = RouteMode::Off;
        cfg.kill_route.clear();
        assert_eq!(Actions::new(&cfg, true).native_route(), None);
    }

    #[test]
    fn log_mode_does_nothing_and_block_mode_reports_the_set_error() {
        let cfg = Config {
            state_file: None,
            ..Config::default()
        };
        let mut a = Actions::new(&cfg, false);
        let t = Target {
            addr: "192.0.2.2".parse().unwrap(),
            port: 1,
            mode: "stcp".into(),
        };
        let mut calls = 0;
        let out = a.ban(
            &t,
            BlockMode::Log,
            &Applied::default(),
            &mut || {
                calls += 1;
                Ok(())
            },
            "x",
            Instant::now(),
        );
        assert!(out.applied.is_empty() && out.set_error.is_none());
        let out = a.ban(
            &t,
            BlockMode::Block,
            &Applied {
                set: true,
                ..Applied::default()
            },
            &mut || {
                calls += 1;
                Err(Error::other("the set is full"))
            },
            "x",
            Instant::now(),
        );
        assert_eq!(calls, 1);
        // A failed set step is not in force, even if it was before.
        assert!(!out.applied.set);
        assert_eq!(out.set_error.unwrap().message, "the set is full");
        // Command mode without a command: nothing happens.
        let out = a.ban(
            &t,
            BlockMode::Command,
            &Applied::default(),
            &mut || unreachable!("no set step in command mode"),
            "x",
            Instant::now(),
        );
        assert!(out.applied.is_empty());
    }
}
