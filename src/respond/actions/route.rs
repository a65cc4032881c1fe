//! actions::route: the native route step, a host route of the configured
//! kind to each banned source, tagged as ours (`proto 110`), so that only
//! ours are ever removed.
//!
//! Knows nothing of netlink beyond `kernel::rtnetlink`.

use crate::config::RouteMode;
use crate::error::{Error, Result};
use crate::kernel::rtnetlink::{Added, RouteKind, describe};

use super::{Action, ActionKind, Context, End, Ensure, How, Target};

/// The route kind of a `route` setting; `None` for "off".
pub fn kind(mode: RouteMode) -> Option<RouteKind> {
    match mode {
        RouteMode::Off => None,
        RouteMode::Blackhole => Some(RouteKind::Blackhole),
        RouteMode::Unreachable => Some(RouteKind::Unreachable),
        RouteMode::Prohibit => Some(RouteKind::Prohibit),
    }
}

/// The native route step: a host route of one kind, tagged as ours.
pub struct NativeRoute {
    mode: RouteMode,
    kind: RouteKind,
}

impl NativeRoute {
    /// `None` for `route = "off"`.
    pub fn new(mode: RouteMode) -> Option<NativeRoute> {
        Some(NativeRoute {
            mode,
            kind: kind(mode)?,
        })
    }
}

impl Action for NativeRoute {
    fn kind(&self) -> ActionKind {
        ActionKind::Route(self.mode)
    }

    fn apply(&mut self, cx: &mut Context<'_>, t: &Target, how: How) -> Result<bool> {
        let what = describe(self.kind, t.addr);
        match cx.routes()?.add(self.kind, t.addr)? {
            Added::New => {
                let again = if how == How::PutBack {
                    " (put back: it was missing)"
                } else {
                    ""
                };
                log_notice!(
                    "attackalert: Host {} has been blocked via dropped route: \"{what}\"{again}",
                    t.addr
                );
            }
            Added::Existing => {}
        }
        Ok(true)
    }

    fn check(&mut self, cx: &mut Context<'_>, t: &Target) -> Result<bool> {
        Ok(cx
            .routes()?
            .ours(Some(self.kind))?
            .contains(&(self.kind, t.addr)))
    }

    fn undo(&mut self, cx: &mut Context<'_>, t: &Target, _end: End) -> Result<bool> {
        let addr = t.addr;
        let what = describe(self.kind, addr);
        let kind = self.kind;
        match cx.routes().and_then(|r| r.delete(kind, addr)) {
            Ok(true) => {
                log_info!("attackalert: Host {addr}: dropped route \"{what}\" removed");
                Ok(true)
            }
            Ok(false) => {
                log_info!("attackalert: Host {addr}: dropped route \"{what}\" was already gone");
                Ok(false)
            }
            Err(e) => {
                log_error!(
                    "adminalert: ERROR: could not remove the dropped route of host {addr}: {e}"
                );
                Err(e)
            }
        }
    }

    fn failure(&self, t: &Target, e: &Error) -> String {
        format!(
            "attackalert: ERROR: could not block host {} via dropped route: {e}",
            t.addr
        )
    }

    /// One dump of our routes for all of them, not one per ban.
    fn ensure_all(&mut self, cx: &mut Context<'_>, items: &[Ensure<'_>]) -> Vec<Result<bool>> {
        let ours: std::collections::HashSet<crate::cidr::Cidr> =
            match cx.routes().and_then(|r| r.ours(Some(self.kind))) {
                Ok(list) => list.into_iter().map(|(_, a)| a).collect(),
                Err(e) => return items.iter().map(|_| Err(e.clone())).collect(),
            };
        items
            .iter()
            .map(|i| {
                if ours.contains(&i.target.addr) {
                    // Ours, of this kind: in force.
                    Ok(true)
                } else {
                    self.apply(cx, i.target, i.how())
                }
            })
            .collect()
    }
}
