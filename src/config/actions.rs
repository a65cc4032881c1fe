//! The keys of what happens on a ban (issue 5): block modes, the route,
//! hosts.deny and command actions, the history and state files and
//! repeat-offender escalation. Value checks only; `mod.rs` walks the file.
//!
//! Knows nothing of how an action is carried out.

use std::fmt;
use std::path::PathBuf;

use toml::de::DeValue;

use super::describe;

/// `[tcp]`/`[udp]` `block_mode`: PortSentry's BLOCK_TCP/BLOCK_UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockMode {
    /// Act: ban in the kernel set and run every configured action (1).
    Block,
    /// Detect and log only; nothing is recorded as blocked (0).
    Log,
    /// Run only the external command (2).
    Command,
}

impl BlockMode {
    pub const NAMES: &'static [&'static str] = &["block", "log", "command"];

    pub fn as_str(self) -> &'static str {
        match self {
            BlockMode::Block => "block",
            BlockMode::Log => "log",
            BlockMode::Command => "command",
        }
    }

    pub fn from_name(name: &str) -> Option<BlockMode> {
        match name {
            "block" => Some(BlockMode::Block),
            "log" => Some(BlockMode::Log),
            "command" => Some(BlockMode::Command),
            _ => None,
        }
    }
}

impl fmt::Display for BlockMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `route`: the kind of host route that cuts a banned source off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteMode {
    Off,
    Blackhole,
    Unreachable,
    Prohibit,
}

impl RouteMode {
    pub const NAMES: &'static [&'static str] = &["off", "blackhole", "unreachable", "prohibit"];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteMode::Off => "off",
            RouteMode::Blackhole => "blackhole",
            RouteMode::Unreachable => "unreachable",
            RouteMode::Prohibit => "prohibit",
        }
    }

    pub fn from_name(name: &str) -> Option<RouteMode> {
        match name {
            "off" => Some(RouteMode::Off),
            "blackhole" => Some(RouteMode::Blackhole),
            "unreachable" => Some(RouteMode::Unreachable),
            "prohibit" => Some(RouteMode::Prohibit),
            _ => None,
        }
    }
}

impl fmt::Display for RouteMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The variables a template may use, as PortSentry named them.
pub const TEMPLATE_VARIABLES: &[&str] = &["$TARGET$", "$PORT$", "$MODE$"];

/// Most bytes in one template or argument; PortSentry's MAXBUF was 1024.
pub const TEMPLATE_MAX: usize = 4096;
/// Most arguments in `command`.
pub const COMMAND_ARGS_MAX: usize = 256;
pub const BAN_TIME_FACTOR_MAX: i64 = 1000;

fn quoted_names(names: &[&str]) -> String {
    names
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn block_mode(s: &str) -> Result<BlockMode, String> {
    BlockMode::from_name(s).ok_or_else(|| {
        format!(
            "unknown block mode `{s}`; valid block modes: {} (PortSentry's BLOCK_TCP/BLOCK_UDP 1, 0, 2)",
            quoted_names(BlockMode::NAMES)
        )
    })
}

pub(super) fn route_mode(s: &str) -> Result<RouteMode, String> {
    RouteMode::from_name(s).ok_or_else(|| {
        format!(
            "unknown route `{s}`; valid routes: {}; a PortSentry KILL_ROUTE command goes in `kill_route`",
            quoted_names(RouteMode::NAMES)
        )
    })
}

/// One template string: bounded, one line, no NUL.
fn template_text(s: &str, what: &str) -> Result<(), String> {
    if s.len() > TEMPLATE_MAX {
        return Err(format!(
            "{what} is {} bytes long; at most {TEMPLATE_MAX}",
            s.len()
        ));
    }
    if let Some(c) = s.chars().find(|c| matches!(c, '\0' | '\n' | '\r')) {
        return Err(format!(
            "{what} may not contain {:?}: it must stay on one line",
            c
        ));
    }
    Ok(())
}

/// `kill_route`: "" or a command line with $TARGET$.
pub(super) fn kill_route(s: &str) -> Result<String, String> {
    template_text(s, "the command")?;
    if !s.trim().is_empty() && !s.contains("$TARGET$") {
        return Err(format!(
            "`{s}` has no $TARGET$: the command would not know which host to block"
        ));
    }
    Ok(s.trim().to_string())
}

/// `hosts_deny_line`: one line with $TARGET$.
pub(super) fn hosts_deny_line(s: &str) -> Result<String, String> {
    template_text(s, "the line")?;
    if !s.contains("$TARGET$") {
        return Err(format!(
            "`{s}` has no $TARGET$: every banned host would get the same line"
        ));
    }
    if s.trim_start().starts_with('#') {
        return Err(format!(
            "`{s}` is a comment in hosts.deny: it would block nothing"
        ));
    }
    Ok(s.to_string())
}

/// `command`: an array of arguments, or a string split on white space.
pub(super) fn command(v: &DeValue<'_>) -> Result<Vec<String>, String> {
    let args: Vec<String> = match v {
        DeValue::String(s) => {
            template_text(s, "the command")?;
            s.split_whitespace().map(str::to_string).collect()
        }
        DeValue::Array(items) => {
            let mut args = Vec::new();
            for (i, item) in items.iter().enumerate() {
                match item.get_ref() {
                    DeValue::String(s) => {
                        template_text(s, &format!("argument {}", i + 1))?;
                        args.push(s.to_string());
                    }
                    other => {
                        return Err(format!(
                            "argument {} of the command: expected a string, found {}",
                            i + 1,
                            describe(other)
                        ));
                    }
                }
            }
            args
        }
        other => {
            return Err(format!(
                "expected an array of arguments such as [\"/usr/local/sbin/notify\", \"$TARGET$\"] or a string, found {}",
                describe(other)
            ));
        }
    };
    if args.len() > COMMAND_ARGS_MAX {
        return Err(format!(
            "{} arguments; at most {COMMAND_ARGS_MAX}",
            args.len()
        ));
    }
    if args.first().is_some_and(|a| a.is_empty()) {
        return Err("the program (first argument) is empty".to_string());
    }
    if args.first().is_some_and(|a| a.contains('$')) {
        return Err(format!(
            "the program `{}` contains `$`: variables go in the arguments, the program is fixed",
            args[0]
        ));
    }
    Ok(args)
}

/// A file path: "" (off) or absolute, as `ignore_file`.
pub(super) fn file_path(s: &str, example: &str) -> Result<Option<PathBuf>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.contains('\0') {
        return Err("a path cannot contain a NUL character".to_string());
    }
    if !s.starts_with('/') {
        return Err(format!(
            "`{s}` is not an absolute path: write the full path, e.g. \"{example}\", or \"\" to turn it off"
        ));
    }
    if s.ends_with('/') {
        return Err(format!("`{s}` names a directory; give a file name"));
    }
    Ok(Some(PathBuf::from(s)))
}
