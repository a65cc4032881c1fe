//! actions::command: external commands (`command`, and the legacy
//! `kill_route` template). A template is an argument vector in which
//! $TARGET$, $PORT$ and $MODE$ are replaced; it runs without a shell unless
//! `command_shell` is set, so nothing in an argument is ever parsed as shell
//! syntax. The values are also passed in the environment (TARGET, PORT,
//! MODE).
//!
//! Children run in their own process group with standard input from
//! /dev/null and their output in our standard error. Nothing here waits for
//! a child: the event loop calls `Runner::reap` when SIGCHLD arrives (and on
//! its timer) and `Runner::tick` for timeouts, which end the whole group
//! (SIGTERM, then SIGKILL after a grace period). Every end is logged with
//! its exit status.
//!
//! Knows nothing of bans or of the order of actions.

use crate::cidr::Cidr;
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::error::{Error, Result};

use super::{Action, ActionKind, Context, End, How, Target};

/// Children running at once, at most; a flood of bans cannot fork-bomb us.
pub const MAX_RUNNING: usize = 64;
/// Between SIGTERM and SIGKILL for a command past its timeout.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// The values of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vars {
    pub target: Cidr,
    pub port: u16,
    /// PortSentry's detection type: "stcp", "sudp", "atcp", "tcp", ...
    pub mode: String,
}

impl Vars {
    fn env(&self) -> [(&'static str, String); 3] {
        [
            ("TARGET", self.target.to_string()),
            ("PORT", self.port.to_string()),
            ("MODE", self.mode.clone()),
        ]
    }
}

/// `'text'` for sh, with embedded quotes escaped.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Replaces $TARGET$, $PORT$ and $MODE$ in `s`; `quote` single-quotes the
/// values (for a shell script).
pub fn substitute(s: &str, v: &Vars, quote: bool) -> String {
    let q = |x: String| if quote { shell_quote(&x) } else { x };
    s.replace("$TARGET$", &q(v.target.to_string()))
        .replace("$PORT$", &q(v.port.to_string()))
        .replace("$MODE$", &q(v.mode.clone()))
}

/// A command template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    args: Vec<String>,
    shell: bool,
}

impl Template {
    /// `None` for an empty argument list.
    pub fn new(args: Vec<String>, shell: bool) -> Option<Template> {
        if args.is_empty() {
            None
        } else {
            Some(Template { args, shell })
        }
    }

    /// A command line split on white space (PortSentry's form).
    pub fn from_line(line: &str, shell: bool) -> Option<Template> {
        Template::new(line.split_whitespace().map(str::to_string).collect(), shell)
    }

    /// What to execute: the program and its arguments.
    pub fn argv(&self, v: &Vars) -> Vec<String> {
        if self.shell {
            vec!["/bin/sh".into(), "-c".into(), self.script(v)]
        } else {
            self.args.iter().map(|a| substitute(a, v, false)).collect()
        }
    }

    fn script(&self, v: &Vars) -> String {
        self.args
            .iter()
            .map(|a| substitute(a, v, true))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command as one line for the log: the shell script, or the
    /// arguments joined by spaces, quoted where a reader could not tell
    /// where one ends.
    pub fn text(&self, v: &Vars) -> String {
        if self.shell {
            return self.script(v);
        }
        self.argv(v)
            .iter()
            .map(|a| {
                let plain = !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_graphic() && !b"'\"\\`$;&|<>(){}*?[]#~".contains(&b));
                if plain { a.clone() } else { shell_quote(a) }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What a child is for, in its log lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    Command,
    KillRoute,
}

impl Purpose {
    fn label(self) -> &'static str {
        match self {
            Purpose::Command => "External command",
            Purpose::KillRoute => "kill_route command",
        }
    }
}

struct Running {
    child: Child,
    purpose: Purpose,
    target: Cidr,
    text: String,
    started: Instant,
    deadline: Instant,
    terminated: Option<Instant>,
}

/// The children we started and have not reaped yet.
pub struct Runner {
    running: Vec<Running>,
    timeout: Duration,
}

impl Runner {
    pub fn new(timeout: Duration) -> Runner {
        Runner {
            running: Vec::new(),
            timeout,
        }
    }

    /// A new timeout (reload), for commands started from now on.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Children not reaped yet.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// PIDs of the children not reaped yet.
    pub fn pids(&self) -> Vec<u32> {
        self.running.iter().map(|r| r.child.id()).collect()
    }

    /// Starts `template` for `v`; returns the child's PID. Never waits.
    pub fn spawn(
        &mut self,
        template: &Template,
        v: &Vars,
        purpose: Purpose,
        now: Instant,
    ) -> Result<u32> {
        if self.running.len() >= MAX_RUNNING {
            return Err(Error::other(format!(
                "{MAX_RUNNING} commands are still running; not started"
            )));
        }
        let argv = template.argv(v);
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(v.env())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0);
        // The child's output goes where our log lines go.
        if let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() {
            cmd.stdout(Stdio::from(fd));
        }
        // Our signals are blocked (the loop reads them from a signalfd) and
        // a blocked mask is inherited: std's posix_spawn path keeps it (seen
        // with strace in the daemon), and SIGTERM would then never end a
        // command (tests/actions.rs checks that the timeout's SIGTERM does).
        // The program gets no capability, whatever the daemon kept and
        // whatever file capabilities it carries (privileges.rs).
        // SAFETY: the closure runs between fork and exec and only calls
        // sigprocmask, capset and prctl, which are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::signal::sigprocmask(
                    nix::sys::signal::SigmaskHow::SIG_SETMASK,
                    Some(&nix::sys::signal::SigSet::empty()),
                    None,
                )
                .map_err(std::io::Error::from)?;
                drop_in_child()
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| Error::other(format!("cannot start {}: {e}", argv[0])))?;
        let pid = child.id();
        self.running.push(Running {
            child,
            purpose,
            target: v.target,
            text: template.text(v),
            started: now,
            deadline: now + self.timeout,
            terminated: None,
        });
        Ok(pid)
    }

    /// Reaps every child that has ended (waitpid with WNOHANG on each of
    /// our PIDs, never on "any child") and logs its exit status. Returns
    /// how many ended.
    pub fn reap(&mut self, now: Instant) -> usize {
        let mut ended = 0;
        let mut i = 0;
        while i < self.running.len() {
            let r = &mut self.running[i];
            match r.child.try_wait() {
                Ok(None) => i += 1,
                Ok(Some(status)) => {
                    let r = self.running.swap_remove(i);
                    log_end(&r, status, now);
                    ended += 1;
                }
                Err(e) => {
                    // ECHILD: it was reaped elsewhere; nothing left to wait for.
                    let r = self.running.swap_remove(i);
                    log_error!(
                        "attackalert: ERROR: {} for host: {} could not be waited for: {e}: \"{}\"",
                        r.purpose.label(),
                        r.target,
                        r.text
                    );
                }
            }
        }
        ended
    }

    /// Ends children past their timeout (SIGTERM to the group, SIGKILL
    /// after KILL_GRACE); returns the time until the next deadline.
    pub fn tick(&mut self, now: Instant) -> Option<Duration> {
        let mut next: Option<Instant> = None;
        let timeout = crate::config::format_duration(self.timeout);
        for r in &mut self.running {
            let pgid = Pid::from_raw(r.child.id() as i32);
            match r.terminated {
                None if now >= r.deadline => {
                    log_error!(
                        "attackalert: ERROR: {} for host: {} still running after command_timeout ({timeout}); terminating it: \"{}\"",
                        r.purpose.label(),
                        r.target,
                        r.text
                    );
                    let _ = killpg(pgid, Signal::SIGTERM);
                    r.terminated = Some(now);
                }
                Some(t) if now >= t + KILL_GRACE => {
                    let _ = killpg(pgid, Signal::SIGKILL);
                    // Reaping follows SIGCHLD; no need to kill again.
                    r.terminated = Some(now + Duration::from_secs(3600));
                }
                _ => {}
            }
            let due = match r.terminated {
                None => r.deadline,
                Some(t) => t + KILL_GRACE,
            };
            next = Some(next.map_or(due, |n| n.min(due)));
        }
        next.map(|n| n.saturating_duration_since(now))
    }
}

fn log_end(r: &Running, status: std::process::ExitStatus, now: Instant) {
    let took = now.duration_since(r.started);
    let took = format!("{}.{:03}s", took.as_secs(), took.subsec_millis());
    let label = r.purpose.label();
    match (status.code(), status.signal()) {
        (Some(0), _) => log_info!(
            "attackalert: {label} for host: {} exited with status 0 after {took}: \"{}\"",
            r.target,
            r.text
        ),
        (Some(code), _) => log_error!(
            "attackalert: ERROR: {label} for host: {} exited with status {code} after {took}: \"{}\"",
            r.target,
            r.text
        ),
        (None, Some(sig)) => log_error!(
            "attackalert: ERROR: {label} for host: {} was killed by signal {sig} after {took}: \"{}\"",
            r.target,
            r.text
        ),
        (None, None) => log_error!(
            "attackalert: ERROR: {label} for host: {} ended with {status} after {took}: \"{}\"",
            r.target,
            r.text
        ),
    }
}

/// For `Command::pre_exec` of every program the daemon runs: empties the
/// child's capability sets and sets no_new_privs (inherited already; set
/// again so the guarantee does not depend on the parent's drop). With an
/// empty permitted set and no_new_privs, execve grants nothing, whatever
/// the bounding set, the uid or the program's file capabilities. Only raw
/// system calls on the stack: safe between fork and exec.
pub fn drop_in_child() -> std::io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    // SAFETY: header and data are the version-3 layout capset(2) reads.
    let r = unsafe { nix::libc::syscall(nix::libc::SYS_capset, &header, data.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integers only.
    let r = unsafe { nix::libc::prctl(nix::libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A command step: `command`, or the legacy `kill_route` template. Nothing
/// to check or undo: it ran.
pub struct RunCommand {
    template: Template,
    purpose: Purpose,
}

impl RunCommand {
    pub fn new(template: Template, purpose: Purpose) -> RunCommand {
        RunCommand { template, purpose }
    }
}

impl Action for RunCommand {
    fn kind(&self) -> ActionKind {
        match self.purpose {
            Purpose::Command => ActionKind::Command,
            Purpose::KillRoute => ActionKind::KillRoute,
        }
    }

    fn apply(&mut self, cx: &mut Context<'_>, t: &Target, _how: How) -> Result<bool> {
        let vars = t.vars();
        let text = self.template.text(&vars);
        cx.runner
            .spawn(&self.template, &vars, self.purpose, cx.now)?;
        match self.purpose {
            Purpose::Command => log_notice!(
                "attackalert: External command run for host: {} using command: \"{text}\"",
                t.addr
            ),
            Purpose::KillRoute => log_notice!(
                "attackalert: Host {} has been blocked via dropped route using command: \"{text}\"",
                t.addr
            ),
        }
        Ok(true)
    }

    fn check(&mut self, _cx: &mut Context<'_>, _t: &Target) -> Result<bool> {
        // A command leaves nothing behind to look for.
        Ok(true)
    }

    fn undo(&mut self, _cx: &mut Context<'_>, _t: &Target, _end: End) -> Result<bool> {
        // Commands are not undone (PortSentry never did).
        Ok(false)
    }

    fn failure(&self, t: &Target, e: &Error) -> String {
        match self.purpose {
            Purpose::Command => format!(
                "attackalert: ERROR: could not run external command for host: {}: {e}",
                t.addr
            ),
            Purpose::KillRoute => format!(
                "attackalert: ERROR: could not block host {} via dropped route: {e}",
                t.addr
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> Vars {
        Vars {
            target: "192.0.2.2".parse().unwrap(),
            port: 79,
            mode: "stcp".into(),
        }
    }

    #[test]
    fn substitutes_every_variable_everywhere() {
        let t = Template::new(
            vec![
                "/bin/x".into(),
                "$TARGET$".into(),
                "--port=$PORT$".into(),
                "$MODE$$MODE$".into(),
                "$NOTAVAR$".into(),
            ],
            false,
        )
        .unwrap();
        assert_eq!(
            t.argv(&vars()),
            ["/bin/x", "192.0.2.2", "--port=79", "stcpstcp", "$NOTAVAR$"]
        );
        assert_eq!(
            t.text(&vars()),
            "/bin/x 192.0.2.2 --port=79 stcpstcp '$NOTAVAR$'"
        );
    }

    #[test]
    fn hostile_arguments_stay_arguments() {
        // Shell syntax next to $TARGET$ is one literal argument: no shell runs.
        let t = Template::new(
            vec!["/bin/echo".into(), "$TARGET$;reboot".into(), "`id`".into()],
            false,
        )
        .unwrap();
        let argv = t.argv(&vars());
        assert_eq!(argv, ["/bin/echo", "192.0.2.2;reboot", "`id`"]);
        assert_eq!(t.text(&vars()), "/bin/echo '192.0.2.2;reboot' '`id`'");
        // The string form splits on white space and nothing else.
        let t = Template::from_line("/bin/echo $TARGET$&&touch x", false).unwrap();
        assert_eq!(t.argv(&vars()), ["/bin/echo", "192.0.2.2&&touch", "x"]);
    }

    #[test]
    fn shell_mode_quotes_values() {
        let t = Template::from_line("logger -t ps $TARGET$ port $PORT$ | cat", true).unwrap();
        assert_eq!(
            t.argv(&vars()),
            ["/bin/sh", "-c", "logger -t ps '192.0.2.2' port '79' | cat"]
        );
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
        assert!(Template::new(Vec::new(), false).is_none());
        assert!(Template::from_line("  ", false).is_none());
    }

    #[test]
    fn runs_reaps_and_times_out_without_waiting() {
        let mut r = Runner::new(Duration::from_millis(300));
        let now = Instant::now();
        let quick = Template::new(
            vec![
                "/bin/sh".into(),
                "-c".into(),
                "test \"$TARGET\" = 192.0.2.2 -a \"$PORT\" = 79 -a \"$MODE\" = stcp".into(),
            ],
            false,
        )
        .unwrap();
        let slow = Template::new(vec!["/bin/sleep".into(), "30".into()], false).unwrap();
        let t0 = Instant::now();
        r.spawn(&quick, &vars(), Purpose::Command, now).unwrap();
        r.spawn(&slow, &vars(), Purpose::Command, now).unwrap();
        assert!(t0.elapsed() < Duration::from_millis(250), "spawn waited");
        assert_eq!(r.running(), 2);
        let missing = Template::new(vec!["/nonexistent/x".into()], false).unwrap();
        let e = r
            .spawn(&missing, &vars(), Purpose::Command, now)
            .unwrap_err();
        assert!(e.message.contains("cannot start /nonexistent/x"), "{e}");
        // The quick one ends by itself; the slow one is ended at its deadline.
        let deadline = Instant::now() + Duration::from_secs(10);
        while r.running() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            r.tick(Instant::now());
            r.reap(Instant::now());
            if r.running() == 1 {
                assert!(r.tick(Instant::now()).is_some());
            }
        }
        assert_eq!(r.running(), 0);
        assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    }

    #[test]
    fn at_most_max_running() {
        let mut r = Runner::new(Duration::from_secs(5));
        let now = Instant::now();
        let slow = Template::new(vec!["/bin/sleep".into(), "5".into()], false).unwrap();
        for _ in 0..MAX_RUNNING {
            r.spawn(&slow, &vars(), Purpose::Command, now).unwrap();
        }
        let e = r.spawn(&slow, &vars(), Purpose::Command, now).unwrap_err();
        assert!(e.message.contains("still running"), "{e}");
        for pid in r.pids() {
            let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.running() > 0 && Instant::now() < deadline {
            r.reap(Instant::now());
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(r.running(), 0);
    }
}
