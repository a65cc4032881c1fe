//! actions: what a ban does in the world, each behind one interface
//! (`Action`: apply, check, undo), built in order from the config.
//!
//! Order (PortSentry 1.2's DisposeTCP/DisposeUDP, with the kernel set as
//! the first block): the set element, the hosts.deny line, the route (native
//! or the legacy `kill_route` command), the external command; with
//! `run_before_block` the command comes first. In block mode "command" only
//! the command runs; a manual `nftsentry block` and a restart apply only
//! what can be checked and undone (set, hosts.deny, native route). A step
//! that fails logs an error line naming the host and the action (at most one
//! a minute per step), and the others still run; the kernel set's error goes
//! back to the caller, which reports it. At the end of a ban the route and
//! the hosts.deny line are undone (commands are not).
//!
//! What each step did is reported as `Applied`, which the state file
//! records: which actions are in force, never how. Paths, lines and
//! commands come from the config each time an action is applied or undone.
//!
//! Knows nothing of when bans start or end, of the state file's format or
//! of detection.

pub mod command;
pub mod hosts_deny;
pub mod kernel_set;
pub mod route;

use crate::cidr::Cidr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::config::{BlockMode, Config, RouteMode};
use crate::error::{Error, Result};
use crate::journal::state::Applied;
use crate::logging::Gate;
use crate::table::bans::BanSets;

use crate::kernel::rtnetlink::RouteSocket;
use command::{Purpose, Runner, Template};

/// Whom a ban is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: Cidr,
    /// The port that tripped (0 for `nftsentry block`).
    pub port: u16,
    /// $MODE$: PortSentry's detection type ("stcp", "sudp", ...; "manual").
    pub mode: String,
    /// How long the ban lasts.
    pub length: Duration,
}

impl Target {
    fn vars(&self) -> command::Vars {
        command::Vars {
            target: self.addr,
            port: self.port,
            mode: self.mode.clone(),
        }
    }
}

/// Which action a step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActionKind {
    Set,
    HostsDeny,
    Route(RouteMode),
    KillRoute,
    Command,
}

impl ActionKind {
    /// Marks this action as in force (`on`) or not in `a`.
    fn record(self, a: &mut Applied, on: bool) {
        match self {
            ActionKind::Set => a.set = on,
            ActionKind::HostsDeny => a.hosts_deny = on,
            ActionKind::Route(k) => a.route = on.then_some(k),
            ActionKind::KillRoute => a.kill_route = on,
            ActionKind::Command => a.command = on,
        }
    }

    fn is_in(self, a: &Applied) -> bool {
        match self {
            ActionKind::Set => a.set,
            ActionKind::HostsDeny => a.hosts_deny,
            ActionKind::Route(k) => a.route == Some(k),
            ActionKind::KillRoute => a.kill_route,
            ActionKind::Command => a.command,
        }
    }

    /// Can be checked and undone (and so applied by `nftsentry block` and
    /// put back at a restart).
    fn undoable(self) -> bool {
        matches!(
            self,
            ActionKind::Set | ActionKind::HostsDeny | ActionKind::Route(_)
        )
    }

    /// One error gate per step, by index.
    fn gate(self) -> usize {
        match self {
            ActionKind::Set => 0,
            ActionKind::HostsDeny => 1,
            ActionKind::Route(_) | ActionKind::KillRoute => 2,
            ActionKind::Command => 3,
        }
    }
}

/// What a step may use besides its own settings.
pub struct Context<'a> {
    /// The kernel's ban sets.
    pub sets: &'a mut dyn BanSets,
    /// Children of command steps.
    pub runner: &'a mut Runner,
    /// The rtnetlink socket of route steps, opened when first needed.
    pub routes: &'a mut Option<RouteSocket>,
    pub now: Instant,
}

impl Context<'_> {
    pub fn routes(&mut self) -> Result<&mut RouteSocket> {
        if self.routes.is_none() {
            *self.routes = Some(RouteSocket::open()?);
        }
        Ok(self.routes.as_mut().expect("just opened"))
    }
}

/// How an action is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum How {
    /// For a new ban.
    New,
    /// Recorded as in force already but missing: put back (and say so).
    PutBack,
    /// A ban adopted from the kernel after a crash: what is found in place
    /// is ours (we applied it but did not live to record it).
    Claim,
}

/// The end of what an action did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// The kernel element is gone already (expired, or the set flushed).
    SetGone,
    /// The ban is lifted: the kernel element goes too.
    Lift,
}

/// One action of a ban.
pub trait Action {
    fn kind(&self) -> ActionKind;

    /// Carries the action out for `t`. `Ok(true)`: in force now and ours
    /// (to undo, where undoing means anything); `Ok(false)`: found in place
    /// and not ours (a hosts.deny line someone else wrote), nothing to undo.
    fn apply(&mut self, cx: &mut Context<'_>, t: &Target, how: How) -> Result<bool>;

    /// Whether it is in force for `t` now (for an action with nothing to
    /// undo: whether it could be, which is always).
    fn check(&mut self, cx: &mut Context<'_>, t: &Target) -> Result<bool>;

    /// Undoes it for `t`: `Ok(true)` removed, `Ok(false)` already gone.
    fn undo(&mut self, cx: &mut Context<'_>, t: &Target, end: End) -> Result<bool>;

    /// The log line for a failed `apply`.
    fn failure(&self, t: &Target, e: &Error) -> String;

    /// Removes the temporary files its writer left when it died half-way;
    /// returns what went.
    fn remove_leftovers(&self) -> Vec<PathBuf> {
        Vec::new()
    }

    /// `check`, and `apply` where it is missing, for many bans at once (a
    /// restart, a reload): one result per item, as `apply` gives it. A
    /// step that rewrites a file does them in one read and one write.
    fn ensure_all(&mut self, cx: &mut Context<'_>, items: &[Ensure<'_>]) -> Vec<Result<bool>> {
        items
            .iter()
            .map(|i| {
                if i.recorded && self.check(cx, i.target).unwrap_or(false) {
                    return Ok(true);
                }
                self.apply(cx, i.target, i.how())
            })
            .collect()
    }

    /// `undo` for many bans at once (a flood of bans that end together, a
    /// flush): one result per target.
    fn undo_all(
        &mut self,
        cx: &mut Context<'_>,
        targets: &[&Target],
        end: End,
    ) -> Vec<Result<bool>> {
        targets.iter().map(|t| self.undo(cx, t, end)).collect()
    }
}

/// One ban of `Action::ensure_all`.
#[derive(Clone, Copy, Debug)]
pub struct Ensure<'a> {
    pub target: &'a Target,
    /// Recorded as in force already: put back if missing.
    pub recorded: bool,
    /// Adopted after a crash: what is in place is ours.
    pub claim: bool,
}

impl Ensure<'_> {
    /// How to apply it where it is missing.
    pub fn how(&self) -> How {
        match (self.recorded, self.claim) {
            (true, _) => How::PutBack,
            (false, true) => How::Claim,
            (false, false) => How::New,
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

/// What an undo left.
#[derive(Debug, Default)]
pub struct Undone {
    /// Still in force, because undoing it failed: tried again later.
    pub left: Applied,
    /// The kernel element was there and is removed (`End::Lift`).
    pub lifted: bool,
}

/// The configured actions, in order, and the children they started.
pub struct Actions {
    steps: Vec<Box<dyn Action>>,
    pub runner: Runner,
    routes: Option<RouteSocket>,
    /// Error lines per step: a flood of bans that all fail the same way
    /// logs one line a minute per step.
    gates: [Gate; 4],
}

/// How often each step's errors are logged, at most.
const ERROR_REPORT_INTERVAL: Duration = Duration::from_secs(60);

impl Actions {
    /// The actions `cfg` asks for. `lock`: the state file whose lock the
    /// hosts.deny step takes around each edit (the daemon); `None` when the
    /// caller holds it already (the command line).
    pub fn new(cfg: &Config, table: &str, lock: Option<PathBuf>) -> Actions {
        let mut steps: Vec<Box<dyn Action>> = Vec::new();
        let command = Template::new(cfg.command.clone(), cfg.command_shell)
            .map(|t| Box::new(command::RunCommand::new(t, Purpose::Command)) as Box<dyn Action>);
        let mut command = command;
        if cfg.run_before_block {
            steps.extend(command.take());
        }
        steps.push(Box::new(kernel_set::KernelSet::new(table, cfg.ban_prefix6)));
        if let Some(path) = &cfg.hosts_deny {
            steps.push(Box::new(hosts_deny::HostsDeny::new(
                path.clone(),
                cfg.hosts_deny_line.clone(),
                lock,
            )));
        }
        match Template::from_line(&cfg.kill_route, cfg.command_shell) {
            Some(t) => steps.push(Box::new(command::RunCommand::new(t, Purpose::KillRoute))),
            None => {
                if let Some(step) = route::NativeRoute::new(cfg.route) {
                    steps.push(Box::new(step));
                }
            }
        }
        steps.extend(command);
        Actions {
            steps,
            runner: Runner::new(cfg.command_timeout),
            routes: None,
            gates: std::array::from_fn(|_| Gate::new(ERROR_REPORT_INTERVAL)),
        }
    }

    /// New settings (reload). Commands still running keep their deadline
    /// and are reaped as before; the route socket stays open.
    pub fn reconfigure(&mut self, cfg: &Config, table: &str, lock: Option<PathBuf>) {
        let fresh = Actions::new(cfg, table, lock);
        self.steps = fresh.steps;
        self.runner.set_timeout(cfg.command_timeout);
    }

    /// The actions with something to undo that a ban in `mode` applies: what
    /// an intent must name before they run.
    pub fn undoable_in(&self, mode: BlockMode) -> Applied {
        let mut a = Applied::default();
        if mode == BlockMode::Block {
            for s in &self.steps {
                match s.kind() {
                    ActionKind::HostsDeny => a.hosts_deny = true,
                    ActionKind::Route(k) => a.route = Some(k),
                    _ => {}
                }
            }
        }
        a
    }

    /// The kernel set is the only action: a ban's success is its element's,
    /// so additions may wait for the end of a burst (`table::bans::BanQueue`).
    pub fn set_only(&self) -> bool {
        self.steps.iter().all(|s| s.kind() == ActionKind::Set)
    }

    /// The native route kind in use: none when off or replaced by kill_route.
    pub fn native_route(&self) -> Option<RouteMode> {
        self.steps.iter().find_map(|s| match s.kind() {
            ActionKind::Route(k) => Some(k),
            _ => None,
        })
    }

    fn context<'a>(
        runner: &'a mut Runner,
        routes: &'a mut Option<RouteSocket>,
        sets: &'a mut dyn BanSets,
        now: Instant,
    ) -> Context<'a> {
        Context {
            sets,
            runner,
            routes,
            now,
        }
    }

    /// A ban of `t` in `mode` (Log does nothing). `already` is what is in
    /// force from an earlier ban of the same source: a recorded hosts.deny
    /// line or route is put back if missing, a kill_route command that ran
    /// is not run again.
    pub fn ban(
        &mut self,
        sets: &mut dyn BanSets,
        t: &Target,
        mode: BlockMode,
        already: &Applied,
        now: Instant,
    ) -> Outcome {
        let mut out = Outcome {
            applied: already.clone(),
            set_error: None,
        };
        let mut cx = Self::context(&mut self.runner, &mut self.routes, sets, now);
        for step in &mut self.steps {
            let kind = step.kind();
            let runs = match mode {
                BlockMode::Log => false,
                BlockMode::Command => kind == ActionKind::Command,
                BlockMode::Block => match kind {
                    // It ran for this ban already; nothing tells it is gone.
                    ActionKind::KillRoute => !already.kill_route,
                    // A route of another kind is in force (the config
                    // changed): it stays, and goes at the end of the ban.
                    ActionKind::Route(k) => already.route.is_none_or(|r| r == k),
                    _ => true,
                },
            };
            if !runs {
                continue;
            }
            let how = if kind.undoable() && kind != ActionKind::Set && kind.is_in(already) {
                How::PutBack
            } else {
                How::New
            };
            match step.apply(&mut cx, t, how) {
                Ok(ours) => kind.record(&mut out.applied, ours),
                Err(e) if kind == ActionKind::Set => {
                    // Not banned: nothing else runs (no route, no line, no
                    // command for a ban that is not there).
                    kind.record(&mut out.applied, false);
                    out.set_error = Some(e);
                    break;
                }
                Err(e) => self.gates[kind.gate()].error(step.failure(t, &e)),
            }
        }
        out
    }

    /// The actions that can be checked and undone (hosts.deny line, native
    /// route), applied where missing: for `nftsentry block` and for live bans
    /// at start. What `already` records is put back if it went missing.
    /// `claim`: what is found in place is taken as ours (a ban adopted from
    /// the kernel after a crash).
    pub fn ensure(
        &mut self,
        sets: &mut dyn BanSets,
        t: &Target,
        already: &Applied,
        claim: bool,
        now: Instant,
    ) -> Applied {
        let mut items = [(t.clone(), already.clone(), claim)];
        self.ensure_all(sets, &mut items, now);
        let [(_, applied, _)] = items;
        applied
    }

    /// `ensure` for many bans at once: each item's `Applied` is updated in
    /// place. Each step sees all its bans in one call (hosts.deny: one read,
    /// one write, however many bans).
    pub fn ensure_all(
        &mut self,
        sets: &mut dyn BanSets,
        items: &mut [(Target, Applied, bool)],
        now: Instant,
    ) {
        let mut cx = Self::context(&mut self.runner, &mut self.routes, sets, now);
        for step in &mut self.steps {
            let kind = step.kind();
            if !kind.undoable() || kind == ActionKind::Set {
                continue;
            }
            // A route of another kind is in force: it stays, and goes at
            // the end of the ban.
            let mine: Vec<usize> = (0..items.len())
                .filter(|&i| {
                    !matches!(kind, ActionKind::Route(k) if items[i].1.route.is_some_and(|r| r != k))
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            let asks: Vec<Ensure<'_>> = mine
                .iter()
                .map(|&i| Ensure {
                    target: &items[i].0,
                    recorded: kind.is_in(&items[i].1),
                    claim: items[i].2,
                })
                .collect();
            let results = step.ensure_all(&mut cx, &asks);
            drop(asks);
            for (&i, r) in mine.iter().zip(results) {
                match r {
                    Ok(ours) => kind.record(&mut items[i].1, ours),
                    Err(e) => self.gates[kind.gate()].error(step.failure(&items[i].0, &e)),
                }
            }
        }
    }

    /// The end of many bans at once (kernel elements gone already): for each
    /// `(target, applied)`, what is still in force because undoing it
    /// failed. Routes go one by one, hosts.deny lines in one rewrite.
    pub fn undo_all(
        &mut self,
        sets: &mut dyn BanSets,
        items: &[(Target, Applied)],
        now: Instant,
    ) -> Vec<Applied> {
        let mut left = vec![Applied::default(); items.len()];
        let mut cx = Self::context(&mut self.runner, &mut self.routes, sets, now);
        for (i, (t, applied)) in items.iter().enumerate() {
            // The kind recorded is the kind to remove, whatever the config
            // says now: a route of ours is found by kind and protocol alone.
            if let Some(kind) = applied.route {
                if let Some(mut step) = route::NativeRoute::new(kind) {
                    if step.undo(&mut cx, t, End::SetGone).is_err() {
                        left[i].route = Some(kind);
                    }
                }
            }
        }
        let lines: Vec<usize> = (0..items.len())
            .filter(|&i| items[i].1.hosts_deny)
            .collect();
        if !lines.is_empty() {
            match self
                .steps
                .iter_mut()
                .find(|s| s.kind() == ActionKind::HostsDeny)
            {
                Some(step) => {
                    let targets: Vec<&Target> = lines.iter().map(|&i| &items[i].0).collect();
                    for (&i, r) in lines.iter().zip(step.undo_all(&mut cx, &targets, End::SetGone)) {
                        if r.is_err() {
                            left[i].hosts_deny = true;
                        }
                    }
                }
                None => self.gates[ActionKind::HostsDeny.gate()].error(format!(
                    "adminalert: ERROR: {} bans have hosts.deny lines of an earlier configuration, and hosts_deny is not set now: remove them by hand (the first: host {})",
                    lines.len(),
                    items[lines[0]].0.addr
                )),
            }
        }
        left
    }

    /// Undoes what `applied` holds for `t`: the kernel element with
    /// `End::Lift` (first: a refusal, such as a missing privilege, returns
    /// the error before anything else changed), then the hosts.deny line and
    /// the route. The rest of `Undone` is what is still in force because
    /// undoing it failed.
    pub fn undo(
        &mut self,
        sets: &mut dyn BanSets,
        t: &Target,
        applied: &Applied,
        end: End,
        now: Instant,
    ) -> Result<Undone> {
        let mut done = Undone::default();
        let mut cx = Self::context(&mut self.runner, &mut self.routes, sets, now);
        if end == End::Lift {
            let set = self
                .steps
                .iter_mut()
                .find(|s| s.kind() == ActionKind::Set)
                .expect("every chain has the kernel set");
            done.lifted = set.undo(&mut cx, t, end)?;
        }
        if let Some(kind) = applied.route {
            // The kind recorded is the kind to remove, whatever the config
            // says now: a route of ours is found by kind and protocol alone.
            if let Some(mut step) = route::NativeRoute::new(kind) {
                if step.undo(&mut cx, t, end).is_err() {
                    done.left.route = Some(kind);
                }
            }
        }
        if applied.hosts_deny {
            match self
                .steps
                .iter_mut()
                .find(|s| s.kind() == ActionKind::HostsDeny)
            {
                Some(step) => {
                    if step.undo(&mut cx, t, end).is_err() {
                        done.left.hosts_deny = true;
                    }
                }
                None => self.gates[ActionKind::HostsDeny.gate()].error(format!(
                    "adminalert: ERROR: host {} has a hosts.deny line of an earlier configuration, and hosts_deny is not set now: remove the line by hand",
                    t.addr
                )),
            }
        }
        Ok(done)
    }

    /// Reaps ended children (after SIGCHLD).
    pub fn reap(&mut self, now: Instant) {
        self.runner.reap(now);
    }

    /// Command timeouts; the time to the next one.
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        self.runner.tick(now)
    }

    /// Removes the temporary files of hosts.deny writes that died half-way
    /// (see `files::remove_dead_writers_files`); returns what went.
    pub fn remove_leftovers(&self) -> Vec<PathBuf> {
        self.steps
            .iter()
            .flat_map(|s| s.remove_leftovers())
            .collect()
    }
}
