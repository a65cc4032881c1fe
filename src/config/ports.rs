//! Sets of TCP/UDP ports as sorted inclusive ranges, the port list syntax
//! (`1,11,100-200`) and PortSentry's three named port lists.
//!
//! Pure data; knows nothing of TOML, files or nftables.

use std::fmt;

/// Which transport protocol a port list is for: PortSentry's presets differ
/// between TCP and UDP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// PortSentry 1.2's three TCP_PORTS/UDP_PORTS lists, copied digit for digit
// from /etc/portsentry/portsentry.conf of Debian's portsentry 1.2-14 package
// (the upstream 1.2 lists; Debian changed only file paths). Their order and
// quirks are kept: the "aware" UDP list has 37444 where "anal" has 27444.

/// "Un-comment these if you are really anal" (TCP).
pub const PORTSENTRY_TCP_PARANOID: &[u16] = &[
    1, 7, 9, 11, 15, 70, 79, 80, 109, 110, 111, 119, 138, 139, 143, 512, 513, 514, 515, 540, 635,
    1080, 1524, 2000, 2001, 4000, 4001, 5742, 6000, 6001, 6667, 12345, 12346, 20034, 27665, 30303,
    32771, 32772, 32773, 32774, 31337, 40421, 40425, 49724, 54320,
];
/// "Un-comment these if you are really anal" (UDP).
pub const PORTSENTRY_UDP_PARANOID: &[u16] = &[
    1, 7, 9, 66, 67, 68, 69, 111, 137, 138, 161, 162, 474, 513, 517, 518, 635, 640, 641, 666, 700,
    2049, 31335, 27444, 34555, 32770, 32771, 32772, 32773, 32774, 31337, 54321,
];
/// "Use these if you just want to be aware" (TCP): PortSentry's default.
pub const PORTSENTRY_TCP_AWARE: &[u16] = &[
    1, 11, 15, 79, 111, 119, 143, 540, 635, 1080, 1524, 2000, 5742, 6667, 12345, 12346, 20034,
    27665, 31337, 32771, 32772, 32773, 32774, 40421, 49724, 54320,
];
/// "Use these if you just want to be aware" (UDP): PortSentry's default.
pub const PORTSENTRY_UDP_AWARE: &[u16] = &[
    1, 7, 9, 69, 161, 162, 513, 635, 640, 641, 700, 37444, 34555, 31335, 32770, 32771, 32772,
    32773, 32774, 31337, 54321,
];
/// "Use these for just bare-bones" (TCP).
pub const PORTSENTRY_TCP_BARE_BONES: &[u16] = &[
    1, 11, 15, 110, 111, 143, 540, 635, 1080, 1524, 2000, 12345, 12346, 20034, 32771, 32772, 32773,
    32774, 49724, 54320,
];
/// "Use these for just bare-bones" (UDP).
pub const PORTSENTRY_UDP_BARE_BONES: &[u16] = &[
    1, 7, 9, 69, 161, 162, 513, 640, 700, 32770, 32771, 32772, 32773, 32774, 31337, 54321,
];

/// One of PortSentry's named port lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// PortSentry's default list.
    Aware,
    /// The list portsentry.conf offers "if you are really anal".
    Paranoid,
    BareBones,
}

/// The preset names as the config file spells them, for error messages.
pub const PRESET_NAMES: &str = "\"aware\", \"paranoid\" (alias \"anal\"), \"bare-bones\"";

impl Preset {
    /// `aware`, `paranoid` or its PortSentry name `anal`, `bare-bones`
    /// (`bare_bones` too, since TOML keys nearby use underscores).
    pub fn from_name(name: &str) -> Option<Preset> {
        match name.trim() {
            "aware" => Some(Preset::Aware),
            "paranoid" | "anal" => Some(Preset::Paranoid),
            "bare-bones" | "bare_bones" => Some(Preset::BareBones),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Preset::Aware => "aware",
            Preset::Paranoid => "paranoid",
            Preset::BareBones => "bare-bones",
        }
    }

    /// The ports in PortSentry's order.
    pub fn ports(self, proto: Proto) -> &'static [u16] {
        match (self, proto) {
            (Preset::Aware, Proto::Tcp) => PORTSENTRY_TCP_AWARE,
            (Preset::Aware, Proto::Udp) => PORTSENTRY_UDP_AWARE,
            (Preset::Paranoid, Proto::Tcp) => PORTSENTRY_TCP_PARANOID,
            (Preset::Paranoid, Proto::Udp) => PORTSENTRY_UDP_PARANOID,
            (Preset::BareBones, Proto::Tcp) => PORTSENTRY_TCP_BARE_BONES,
            (Preset::BareBones, Proto::Udp) => PORTSENTRY_UDP_BARE_BONES,
        }
    }
}

/// A set of ports kept as sorted inclusive ranges, overlapping and adjacent
/// ranges merged, which is the form an nftables interval set takes.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PortSet {
    ranges: Vec<(u16, u16)>,
}

impl PortSet {
    /// Sorted, non-overlapping, non-adjacent inclusive ranges.
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }

    pub fn contains(&self, port: u16) -> bool {
        let i = self.ranges.partition_point(|&(_, end)| end < port);
        self.ranges.get(i).is_some_and(|&(start, _)| start <= port)
    }

    /// Number of ports in the set.
    pub fn len(&self) -> usize {
        self.ranges
            .iter()
            .map(|&(a, b)| usize::from(b) - usize::from(a) + 1)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Every port, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        self.ranges.iter().flat_map(|&(a, b)| a..=b)
    }

    /// Normalise any ranges: a reversed pair is read as its swap, then the
    /// ranges are sorted and overlapping or adjacent ones merged.
    pub fn from_ranges(it: impl IntoIterator<Item = (u16, u16)>) -> PortSet {
        let v: Vec<(u16, u16)> = it
            .into_iter()
            .map(|(a, b)| if a <= b { (a, b) } else { (b, a) })
            .collect();
        PortSet {
            ranges: crate::cidr::merge_ranges(v, |p| p.checked_add(1)),
        }
    }

    pub fn from_ports(ports: impl IntoIterator<Item = u16>) -> PortSet {
        PortSet::from_ranges(ports.into_iter().map(|p| (p, p)))
    }

    /// One of PortSentry's named lists for `proto`.
    pub fn preset(preset: Preset, proto: Proto) -> PortSet {
        PortSet::from_ports(preset.ports(proto).iter().copied())
    }

    /// The union of two sets.
    pub fn union(&self, other: &PortSet) -> PortSet {
        PortSet::from_ranges(self.ranges.iter().chain(other.ranges.iter()).copied())
    }

    /// The ports of `self` that are not in `other`.
    pub fn difference(&self, other: &PortSet) -> PortSet {
        let mut out = Vec::new();
        for &(a, b) in &self.ranges {
            // u32 so that stepping past 65535 cannot overflow.
            let (mut start, end) = (u32::from(a), u32::from(b));
            for &(x, y) in &other.ranges {
                let (x, y) = (u32::from(x), u32::from(y));
                if y < start || x > end {
                    continue;
                }
                if x > start {
                    out.push((start as u16, (x - 1) as u16));
                }
                start = y + 1;
                if start > end {
                    break;
                }
            }
            if start <= end {
                out.push((start as u16, end as u16));
            }
        }
        PortSet::from_ranges(out)
    }

    /// A port list such as `"1,11,100-200"`, whose items may also be presets
    /// qualified by protocol (`"tcp:aware"`, `"udp:anal,8080"`). A bare
    /// preset name is refused: PortSentry's lists differ between TCP and UDP
    /// (use [`PortSet::parse_for`]). An empty or blank string is the empty
    /// set. Ports are 1-65535.
    pub fn parse(spec: &str) -> Result<PortSet, String> {
        parse_list(spec, None)
    }

    /// A port list whose items may be bare preset names, read for `proto`:
    /// `"aware"`, `"aware,8080"`, `"1,11,100-200"`.
    pub fn parse_for(spec: &str, proto: Proto) -> Result<PortSet, String> {
        parse_list(spec, Some(proto))
    }
}

/// `1,11,100-200` and presets; blank is the empty set. With `proto`, bare
/// preset names are read for it; without, presets need a `tcp:` or `udp:`.
fn parse_list(spec: &str, proto: Option<Proto>) -> Result<PortSet, String> {
    let s = spec.trim();
    if s.is_empty() {
        return Ok(PortSet::default());
    }
    let mut ranges = Vec::new();
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err(format!("empty item in port list `{s}`"));
        }
        match preset_item(item, proto)? {
            Some(set) => ranges.extend_from_slice(set.ranges()),
            None => ranges.push(parse_item(item)?),
        }
    }
    Ok(PortSet::from_ranges(ranges))
}

/// The preset an item names, if it names one.
fn preset_item(item: &str, proto: Option<Proto>) -> Result<Option<PortSet>, String> {
    if let Some((p, name)) = item.split_once(':') {
        let p = match p.trim() {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => {
                return Err(format!(
                    "`{other}` is not a protocol: write \"tcp:{0}\" or \"udp:{0}\"",
                    name.trim()
                ));
            }
        };
        return match Preset::from_name(name) {
            Some(preset) => Ok(Some(PortSet::preset(preset, p))),
            None => Err(format!(
                "`{}` is not a preset; presets are {PRESET_NAMES}",
                name.trim()
            )),
        };
    }
    match (Preset::from_name(item), proto) {
        (Some(preset), Some(p)) => Ok(Some(PortSet::preset(preset, p))),
        (Some(_), None) => Err(format!(
            "preset `{item}` differs between TCP and UDP: write \"tcp:{item}\" or \"udp:{item}\""
        )),
        (None, _) => Ok(None),
    }
}

/// One port (`80`) or one inclusive range (`100-200`).
pub fn parse_item(item: &str) -> Result<(u16, u16), String> {
    let item = item.trim();
    match item.split_once('-') {
        None => {
            let p = parse_port(item, item)?;
            Ok((p, p))
        }
        Some((a, b)) => {
            let (a, b) = (parse_port(a.trim(), item)?, parse_port(b.trim(), item)?);
            if a > b {
                return Err(format!(
                    "range {a}-{b} is reversed: its start must not be above its end"
                ));
            }
            Ok((a, b))
        }
    }
}

fn parse_port(s: &str, item: &str) -> Result<u16, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{item}` is not a port or a range like \"100-200\" (or a preset: {PRESET_NAMES})"
        ));
    }
    // Digits only, so a parse failure is overflow: out of range too.
    match s.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(format!("port {s} is out of range 1-65535")),
    }
}

/// `1,11,100-200`: the list syntax `parse` reads back.
impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(a, b)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if a == b {
                write!(f, "{a}")?;
            } else {
                write!(f, "{a}-{b}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difference() {
        let all = PortSet::from_ranges([(1, 65535)]);
        let ex = PortSet::from_ports([1, 113, 139, 65535]);
        assert_eq!(
            all.difference(&ex).ranges(),
            &[(2, 112), (114, 138), (140, 65534)]
        );
        assert!(ex.difference(&all).is_empty());
        assert_eq!(all.difference(&PortSet::default()), all);
        let a = PortSet::from_ranges([(10, 20), (30, 40)]);
        let b = PortSet::from_ranges([(15, 35)]);
        assert_eq!(a.difference(&b).ranges(), &[(10, 14), (36, 40)]);
        assert_eq!(b.difference(&a).ranges(), &[(21, 29)]);
        // Brute force against a bitmap on a small universe.
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) as u16 % 64 + 1
        };
        for _ in 0..200 {
            let x = PortSet::from_ranges((0..3).map(|_| (next(), next())));
            let y = PortSet::from_ranges((0..3).map(|_| (next(), next())));
            let want: Vec<u16> = x.iter().filter(|p| !y.contains(*p)).collect();
            assert_eq!(x.difference(&y).iter().collect::<Vec<_>>(), want);
        }
    }

    #[test]
    fn merges_overlapping_and_adjacent() {
        let s = PortSet::from_ranges([(10, 20), (5, 9), (15, 30), (40, 40), (41, 45), (100, 90)]);
        assert_eq!(s.ranges(), &[(5, 30), (40, 45), (90, 100)]);
        assert_eq!(s.len(), 26 + 6 + 11);
        assert_eq!(s.to_string(), "5-30,40-45,90-100");
        let top = PortSet::from_ranges([(65535, 65535), (65000, 65534), (1, 1), (3, 3)]);
        assert_eq!(top.ranges(), &[(1, 1), (3, 3), (65000, 65535)]);
        let all = PortSet::from_ranges([(0, 65535), (80, 80)]);
        assert_eq!(all.ranges(), &[(0, 65535)]);
        assert_eq!(all.len(), 65536);
        assert!(PortSet::from_ranges([]).is_empty());
    }

    #[test]
    fn contains_checks_every_range_edge() {
        let s = PortSet::from_ranges([(1, 1), (100, 200), (65535, 65535)]);
        for (p, want) in [
            (0, false),
            (1, true),
            (2, false),
            (99, false),
            (100, true),
            (150, true),
            (200, true),
            (201, false),
            (65534, false),
            (65535, true),
        ] {
            assert_eq!(s.contains(p), want, "port {p}");
        }
        assert!(!PortSet::default().contains(1));
    }

    #[test]
    fn preset_sizes() {
        // Counted from portsentry.conf: 45/32, 26/21, 20/16 ports, no repeats.
        let size = |p, proto| PortSet::preset(p, proto).len();
        assert_eq!(size(Preset::Paranoid, Proto::Tcp), 45);
        assert_eq!(size(Preset::Paranoid, Proto::Udp), 32);
        assert_eq!(size(Preset::Aware, Proto::Tcp), 26);
        assert_eq!(size(Preset::Aware, Proto::Udp), 21);
        assert_eq!(size(Preset::BareBones, Proto::Tcp), 20);
        assert_eq!(size(Preset::BareBones, Proto::Udp), 16);
        // Spot checks against the file's text.
        assert!(PortSet::preset(Preset::Aware, Proto::Udp).contains(37444));
        assert!(!PortSet::preset(Preset::Aware, Proto::Udp).contains(27444));
        assert!(PortSet::preset(Preset::Paranoid, Proto::Udp).contains(27444));
        assert!(PortSet::preset(Preset::Paranoid, Proto::Tcp).contains(6000));
        assert!(!PortSet::preset(Preset::Aware, Proto::Tcp).contains(6000));
    }

    #[test]
    fn preset_names() {
        assert_eq!(Preset::from_name("anal"), Some(Preset::Paranoid));
        assert_eq!(Preset::from_name("paranoid"), Some(Preset::Paranoid));
        assert_eq!(Preset::from_name("bare-bones"), Some(Preset::BareBones));
        assert_eq!(Preset::from_name("aware"), Some(Preset::Aware));
        assert_eq!(Preset::from_name("Aware"), None);
        assert_eq!(
            PortSet::parse_for("aware", Proto::Udp).unwrap(),
            PortSet::preset(Preset::Aware, Proto::Udp)
        );
        assert_eq!(
            PortSet::parse("udp:anal").unwrap(),
            PortSet::preset(Preset::Paranoid, Proto::Udp)
        );
        let e = PortSet::parse("aware").unwrap_err();
        assert!(e.contains("tcp:aware"), "{e}");
        assert!(PortSet::parse("sctp:aware").is_err());
        // Presets combine with ports and with each other.
        let s = PortSet::parse_for("aware, 8080", Proto::Tcp).unwrap();
        assert_eq!(s.len(), 27);
        assert!(s.contains(8080) && s.contains(54320));
        let s = PortSet::parse("tcp:bare-bones,udp:bare-bones").unwrap();
        assert_eq!(s.len(), 20 + 16 - 5);
        assert!(PortSet::parse("tcp:lazy").is_err());
    }

    #[test]
    fn parses_lists() {
        let s = PortSet::parse("1,11,100-200").unwrap();
        assert_eq!(s.ranges(), &[(1, 1), (11, 11), (100, 200)]);
        assert_eq!(s.len(), 103);
        let s = PortSet::parse(" 3 , 1-2 , 5 - 6 ").unwrap();
        assert_eq!(s.ranges(), &[(1, 3), (5, 6)]);
        assert_eq!(PortSet::parse("").unwrap(), PortSet::default());
        assert_eq!(PortSet::parse("65535").unwrap().ranges(), &[(65535, 65535)]);
        // The Display form parses back to the same set.
        let s = PortSet::parse("9,1-3,4,100-200,65535").unwrap();
        assert_eq!(PortSet::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn list_errors_say_what_is_wrong() {
        let e = PortSet::parse("1,70000").unwrap_err();
        assert_eq!(e, "port 70000 is out of range 1-65535");
        let e = PortSet::parse("0").unwrap_err();
        assert_eq!(e, "port 0 is out of range 1-65535");
        let e = PortSet::parse("200-100").unwrap_err();
        assert!(e.contains("200-100 is reversed"), "{e}");
        let e = PortSet::parse("1,,2").unwrap_err();
        assert!(e.contains("empty item"), "{e}");
        let e = PortSet::parse("http").unwrap_err();
        assert!(e.contains("`http` is not a port"), "{e}");
        for bad in [
            "-5",
            "5-",
            "1-2-3",
            "1;2",
            "99999999999999999999999",
            "+5",
            "1,",
            "0x50",
        ] {
            assert!(PortSet::parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
