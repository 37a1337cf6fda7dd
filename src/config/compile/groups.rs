//! `groups`: who is in each group (networks, users), checked.

use crate::config::raw::RawGroup;
use crate::identity::{Group, GroupTable, MAX_GROUPS};

use super::{Cx, parse_net};

impl Cx<'_> {
    /// `groups`, in the order written: each network checked, empty groups warned about.
    pub(super) fn groups(&mut self, raw: &[(String, RawGroup)]) -> GroupTable {
        if raw.len() > MAX_GROUPS {
            self.err(
                "too-many-groups",
                "groups",
                self.pos.key("groups"),
                format!("{} groups; at most {MAX_GROUPS} are supported", raw.len()),
                None,
            );
        }
        let mut groups = GroupTable::default();
        for (name, g) in raw {
            let mut networks = Vec::new();
            for (i, n) in g.networks.iter().enumerate() {
                let key = format!("groups.{name}.networks[{i}]");
                match parse_net(n) {
                    Some(net) => networks.push(net),
                    None => {
                        let pos = self.pos.value(&key);
                        self.err(
                            "bad-network",
                            &key,
                            pos,
                            format!("not a network: {n:?}"),
                            Some("write an address or a CIDR block, like 10.0.0.0/8 or 2001:db8::/32".into()),
                        );
                    }
                }
            }
            if g.networks.is_empty() && g.users.is_empty() {
                let key = format!("groups.{name}");
                let pos = self.pos.key(&key);
                self.warn(
                    "empty-group",
                    &key,
                    pos,
                    format!("group `{name}` has neither `networks` nor `users`: nobody is in it"),
                    None,
                );
            }
            groups.groups.push(Group {
                name: name.as_str().into(),
                description: g.description.as_deref().map(Into::into),
                networks,
                users: g.users.iter().map(|u| u.as_str().into()).collect(),
                inspect: g.inspect,
            });
        }
        groups
    }
}
