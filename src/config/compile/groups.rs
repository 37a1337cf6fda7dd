//! `groups`: who is in each group (networks, users, directory groups), checked.

use crate::config::raw::RawGroup;
use crate::identity::directory::normalize_dn;
use crate::identity::{DirectoryName, Group, GroupTable, MAX_GROUPS};

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
            let (directory, directory_names) = self.directory_groups(name, &g.directory);
            if g.networks.is_empty() && g.users.is_empty() && g.directory.is_empty() {
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
                directory,
                directory_names,
                inspect: g.inspect,
            });
        }
        groups
    }

    /// A group's `directory` entries: a distinguished name (it has a `=`), normalised
    /// as the directory's answers are (so that case and spaces do not matter), or a
    /// group's short name (`cn` or `sAMAccountName`), which the directory resolves at
    /// each load.
    fn directory_groups(
        &mut self,
        name: &str,
        raw: &[String],
    ) -> (Vec<Box<str>>, Vec<DirectoryName>) {
        let mut dns = Vec::new();
        let mut names: Vec<DirectoryName> = Vec::new();
        for (i, entry) in raw.iter().enumerate() {
            let key = format!("groups.{name}.directory[{i}]");
            if !entry.contains('=') {
                let short = entry.trim();
                if short.is_empty()
                    || short.len() > MAX_SHORT_NAME
                    || short
                        .chars()
                        .any(|c| c.is_control() || matches!(c, ',' | '*' | '(' | ')' | '\\'))
                {
                    let pos = self.pos.value(&key);
                    self.err(
                        "bad-group-name",
                        &key,
                        pos,
                        format!("not a directory group's name: {entry:?}"),
                        Some(
                            "write the group's name (GG-Internet-Communication) or its full \
                             DN (CN=GG-Internet-Communication,OU=Groupes,DC=mairie,DC=local)"
                                .into(),
                        ),
                    );
                    continue;
                }
                let pos = self.pos.value(&key);
                let lower: Box<str> = short.to_lowercase().into();
                if !names.iter().any(|n| n.name == lower) {
                    names.push(DirectoryName {
                        name: lower,
                        line: pos.line,
                        col: pos.col,
                    });
                }
                continue;
            }
            match normalize_dn(entry) {
                Some(n) => dns.push(n),
                None => {
                    let pos = self.pos.value(&key);
                    self.err(
                        "bad-group-dn",
                        &key,
                        pos,
                        format!("not a distinguished name: {entry:?}"),
                        Some(
                            "write the group's full DN, like \
                             CN=GG-Internet-Communication,OU=Groupes,DC=mairie,DC=local, \
                             or its short name"
                                .into(),
                        ),
                    );
                }
            }
        }
        dns.sort();
        dns.dedup();
        (dns, names)
    }
}

/// Longest short name of a directory group (AD's `cn` is at most 64 characters).
const MAX_SHORT_NAME: usize = 256;
