//! `control_group`: the group whose members may change state through the
//! control socket (block, unblock, flush, reload) besides root. The name
//! must be a group of this host when the config is read; its id is kept.
//!
//! Knows nothing of the socket: the daemon decides with this who may.

/// A group named by `control_group`, with the id it had when the config
/// was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlGroup {
    pub name: String,
    pub gid: u32,
}

/// Group names as long as this are pasted text, not a group.
pub const GROUP_NAME_MAX: usize = 256;

/// `control_group`'s value: "" for none (root only), else a group that
/// exists here.
pub(super) fn control_group(s: &str) -> Result<Option<ControlGroup>, String> {
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > GROUP_NAME_MAX || s.chars().any(|c| c.is_control() || c == ':') {
        return Err(format!(
            "{s:?} is not a group name (at most {GROUP_NAME_MAX} bytes, no `:` or control characters); \"\" lets only root change bans"
        ));
    }
    match nix::unistd::Group::from_name(s) {
        Ok(Some(g)) => Ok(Some(ControlGroup {
            name: s.to_string(),
            gid: g.gid.as_raw(),
        })),
        Ok(None) => Err(format!(
            "no group {s:?} on this host (getent group {s} finds nothing): create it (groupadd {s}) or write \"\" to let only root change bans"
        )),
        Err(e) => Err(format!("looking up group {s:?}: {}", e.desc())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn names_a_group_of_this_host_or_nothing() {
        assert_eq!(control_group(""), Ok(None));
        // Group 0 is on every host; its name is not always `root`.
        let root = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(0))
            .unwrap()
            .unwrap()
            .name;
        assert_eq!(
            control_group(&root),
            Ok(Some(ControlGroup {
                name: root.clone(),
                gid: 0
            }))
        );
        let c = Config::parse(&format!("control_group = {root:?}\n"), "t.toml").unwrap();
        assert_eq!(c.control_group.unwrap().gid, 0);
        assert_eq!(Config::parse("", "t.toml").unwrap().control_group, None);
    }

    #[test]
    fn a_missing_or_malformed_group_names_file_line_and_key() {
        for (value, why) in [
            (
                "\"nftsentry-no-such-group\"",
                "no group \"nftsentry-no-such-group\" on this host",
            ),
            ("\"a:b\"", "\"a:b\" is not a group name"),
            ("\"a\\u001bb\"", "is not a group name"),
            ("7", "expected a string, found the integer 7"),
        ] {
            let e = Config::parse(
                &format!("table = \"t\"\ncontrol_group = {value}\n"),
                "/etc/x.toml",
            )
            .unwrap_err();
            assert_eq!(e.kind, crate::error::Kind::Config);
            assert!(
                e.message
                    .starts_with("/etc/x.toml:2: key `control_group`: ")
                    && e.message.contains(why),
                "{value}: {e}"
            );
        }
        let long = "g".repeat(GROUP_NAME_MAX + 1);
        assert!(
            control_group(&long)
                .unwrap_err()
                .contains("not a group name")
        );
    }
}
