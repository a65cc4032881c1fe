//! KILL_ROUTE: which of the commands portsentry.conf suggests (route, ip,
//! iptables, ipchains, ipfwadm, ipfw) nftsentry does natively, a host route
//! or the ban itself, and which stay commands to run.
//!
//! Reads the command's words only; knows nothing of the config file or of
//! what the conversion writes for each kind.

/// The dummy gateway of portsentry.conf's route examples.
const DUMMY_GATEWAY: &str = "333.444.555.666";

/// What a KILL_ROUTE command does, as far as nftsentry is concerned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillRoute {
    /// A route of this type (`route` key): "blackhole", "unreachable" or
    /// "prohibit"; the string says which PortSentry form it was.
    Route(&'static str, &'static str),
    /// A packet filter rule that drops or rejects the source: nftsentry's
    /// ban already does that.
    FilterDrop(&'static str),
    /// Anything else: kept as a command (`kill_route`).
    Command,
    /// No `$TARGET$`: PortSentry skipped it ("No target variable").
    NoTarget,
}

fn is_target(t: &str) -> bool {
    t == "$TARGET$" || t == "$TARGET$/32"
}

fn program(t: &str) -> &str {
    t.rsplit('/').next().unwrap_or(t)
}

/// Recognise the KILL_ROUTE forms of portsentry.conf and of Linux's `ip`.
pub fn classify_kill_route(cmd: &str) -> KillRoute {
    if !cmd.contains("$TARGET$") {
        return KillRoute::NoTarget;
    }
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let Some((&first, args)) = words.split_first() else {
        return KillRoute::NoTarget;
    };
    let recognised = match program(first) {
        "route" => classify_route(args),
        "ip" => classify_ip(args),
        "iptables" | "ip6tables" | "ipchains" => classify_iptables(args),
        "ipfwadm" => classify_ipfwadm(args),
        "ipfw" => classify_ipfw(args),
        _ => None,
    };
    recognised.unwrap_or(KillRoute::Command)
}

/// net-tools/BSD `route add`: `-host T reject`, `T gw G`, `T G [1]`,
/// `-blackhole` forms. A gateway counts only when it is PortSentry's dummy
/// 333.444.555.666 or 127.0.0.1, which its comments offer for "the same
/// effect": a route to a real host stays a command.
fn classify_route(args: &[&str]) -> Option<KillRoute> {
    let (&add, rest) = args.split_first()?;
    if add != "add" {
        return None;
    }
    let (mut target, mut reject, mut blackhole) = (false, false, false);
    let mut gateway: Option<&str> = None;
    let mut i = 0;
    while i < rest.len() {
        match rest[i] {
            "-host" | "host" => {}
            "-net" | "net" => {}
            "-netmask" | "netmask" if rest.get(i + 1) == Some(&"255.255.255.255") => i += 1,
            "reject" | "-reject" => reject = true,
            "-blackhole" | "blackhole" => blackhole = true,
            "gw" => {
                gateway = Some(rest.get(i + 1)?);
                i += 1;
            }
            // Sun's and NEXTSTEP's metric after the gateway.
            "1" if gateway.is_some() => {}
            t if is_target(t) && !target => target = true,
            g if gateway.is_none() && (g == DUMMY_GATEWAY || g == "127.0.0.1") => gateway = Some(g),
            _ => return None,
        }
        i += 1;
    }
    if !target {
        return None;
    }
    match (reject, blackhole, gateway) {
        (true, false, None) => Some(KillRoute::Route("unreachable", "a reject route")),
        (false, true, _) => Some(KillRoute::Route("blackhole", "a blackhole route")),
        (false, false, Some(DUMMY_GATEWAY)) => Some(KillRoute::Route(
            "blackhole",
            "a route through the dummy gateway 333.444.555.666",
        )),
        (false, false, Some("127.0.0.1")) => Some(KillRoute::Route(
            "blackhole",
            "a route through the loopback address",
        )),
        _ => None,
    }
}

/// `ip [-4|-6] route add|replace blackhole|unreachable|prohibit T`.
fn classify_ip(args: &[&str]) -> Option<KillRoute> {
    let args = match args.first() {
        Some(&"-4" | &"-6") => &args[1..],
        _ => args,
    };
    let [obj, verb, kind, target] = args else {
        return None;
    };
    let is_route = !obj.is_empty() && "route".starts_with(obj);
    let is_add = ["add", "a", "replace", "r"].contains(verb);
    if !is_route || !is_add || !is_target(target) {
        return None;
    }
    match *kind {
        "blackhole" => Some(KillRoute::Route("blackhole", "an ip blackhole route")),
        "unreachable" => Some(KillRoute::Route("unreachable", "an ip unreachable route")),
        "prohibit" => Some(KillRoute::Route("prohibit", "an ip prohibit route")),
        _ => None,
    }
}

/// `iptables|ipchains -I|-A INPUT [n] -s T -j DROP|DENY|REJECT [-l] [-w]`.
fn classify_iptables(args: &[&str]) -> Option<KillRoute> {
    let (mut chain, mut source, mut verdict) = (false, false, None);
    let mut i = 0;
    while i < args.len() {
        match args[i] {
            "-I" | "-A" | "--insert" | "--append" => {
                if !matches!(args.get(i + 1), Some(&"INPUT" | &"input")) {
                    return None;
                }
                chain = true;
                i += 1;
                // -I INPUT 1: a rule position.
                if args.get(i + 1).is_some_and(|n| n.parse::<u32>().is_ok()) {
                    i += 1;
                }
            }
            "-s" | "--source" | "--src" => {
                if !args.get(i + 1).is_some_and(|t| is_target(t)) {
                    return None;
                }
                source = true;
                i += 1;
            }
            "-j" | "--jump" => {
                verdict = Some(*args.get(i + 1)?);
                i += 1;
            }
            "-l" | "-w" | "--wait" => {}
            _ => return None,
        }
        i += 1;
    }
    match (chain, source, verdict) {
        (true, true, Some("DROP" | "DENY")) => Some(KillRoute::FilterDrop("drops")),
        (true, true, Some("REJECT")) => Some(KillRoute::FilterDrop("rejects")),
        _ => None,
    }
}

/// `ipfwadm -I -i deny -S T [-o]`.
fn classify_ipfwadm(args: &[&str]) -> Option<KillRoute> {
    match args {
        ["-I", "-i", "deny" | "reject", "-S", t]
        | ["-I", "-i", "deny" | "reject", "-S", t, "-o"]
            if is_target(t) =>
        {
            Some(KillRoute::FilterDrop("drops"))
        }
        _ => None,
    }
}

/// `ipfw add [n] deny|drop all|ip from T[:255.255.255.255] to any`.
fn classify_ipfw(args: &[&str]) -> Option<KillRoute> {
    let args = match args {
        ["add", n, rest @ ..] if n.parse::<u32>().is_ok() => rest,
        ["add", rest @ ..] => rest,
        _ => return None,
    };
    match args {
        ["deny" | "drop", "all" | "ip", "from", t, "to", "any"]
            if is_target(t) || *t == "$TARGET$:255.255.255.255" =>
        {
            Some(KillRoute::FilterDrop("drops"))
        }
        _ => None,
    }
}
