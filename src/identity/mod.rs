//! Identity: who is asking. A client is in every group whose `networks` hold its
//! address and in every group that names its user. Built from the compiled policy's
//! [`GroupTable`]; used by the policy stage, never the other way round.

pub mod auth;
pub mod directory;
pub mod negotiate;
pub mod workstation;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// Most groups a policy may define (the width of [`GroupSet`]).
pub const MAX_GROUPS: usize = 256;

/// Index of a group in the [`GroupTable`].
pub type GroupId = u16;

/// A set of groups, as a fixed bit set: copying and testing cost nothing.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct GroupSet([u64; MAX_GROUPS / 64]);

impl GroupSet {
    pub const EMPTY: GroupSet = GroupSet([0; MAX_GROUPS / 64]);

    pub fn insert(&mut self, g: GroupId) {
        self.0[g as usize / 64] |= 1 << (g % 64);
    }

    pub fn contains(&self, g: GroupId) -> bool {
        self.0[g as usize / 64] & (1 << (g % 64)) != 0
    }

    pub fn intersects(&self, other: &GroupSet) -> bool {
        self.0.iter().zip(other.0.iter()).any(|(a, b)| a & b != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// Whether every group of `self` is also in `other`.
    pub fn is_subset(&self, other: &GroupSet) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }

    /// The groups of the set, in order; cost proportional to the words and set bits.
    pub fn iter(&self) -> impl Iterator<Item = GroupId> + '_ {
        self.0.iter().enumerate().flat_map(|(i, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                if w == 0 {
                    return None;
                }
                let b = w.trailing_zeros();
                w &= w - 1;
                Some((i * 64 + b as usize) as GroupId)
            })
        })
    }
}

impl fmt::Debug for GroupSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// A group of the policy, compiled.
#[derive(Clone, Debug)]
pub struct Group {
    /// Shared, so that each request's record takes a reference, not a copy.
    pub name: Arc<str>,
    pub description: Option<Box<str>>,
    pub networks: Vec<IpNet>,
    pub users: HashSet<Box<str>>,
    /// Directory groups whose members are in this group: DNs normalised by
    /// [`directory::normalize_dn`], nested membership included (the directory's answer).
    pub directory: Vec<Box<str>>,
    /// Directory groups named by their short name (`cn` or `sAMAccountName`), resolved
    /// to a DN by the directory once per policy load (see [`DirectoryNames`]).
    pub directory_names: Vec<DirectoryName>,
    /// `false`: traffic of this group's members is never decrypted (guest devices that
    /// do not trust the organisation's CA, for instance).
    pub inspect: bool,
}

/// A directory group written by its short name in the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryName {
    /// Lowercased: names compare without case, as the directory compares them.
    pub name: Box<str>,
    /// Where the policy writes it (1-based; 0 when unknown), for `check`'s reports.
    pub line: usize,
    pub col: usize,
}

/// Short names of directory groups resolved to their DN (lowercased name → normalised
/// DN); a name missing from the map matches nobody.
pub type DirectoryNames = HashMap<Box<str>, Box<str>>;

/// All groups of the policy, in the order they were written.
#[derive(Clone, Debug, Default)]
pub struct GroupTable {
    pub groups: Vec<Group>,
}

/// Who is asking, as far as the proxy knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub addr: IpAddr,
    /// Authenticated user name, when proxy authentication gave one.
    pub user: Option<Box<str>>,
    pub groups: GroupSet,
}

impl GroupTable {
    /// The identity of a client at `addr`, authenticated as `user` if any.
    pub fn resolve(&self, addr: IpAddr, user: Option<&str>) -> Identity {
        self.resolve_with(addr, user, &[], &DirectoryNames::new())
    }

    /// The same, with the directory groups the user is in (normalised DNs, sorted, as
    /// [`directory::Groups::Known`] gives them) and the DNs of the short names the
    /// policy uses.
    pub fn resolve_with(
        &self,
        addr: IpAddr,
        user: Option<&str>,
        directory: &[Box<str>],
        names: &DirectoryNames,
    ) -> Identity {
        // An IPv4 client seen through an IPv6 socket (::ffff:a.b.c.d) is the IPv4 client.
        let addr = addr.to_canonical();
        let mut groups = GroupSet::EMPTY;
        for (i, g) in self.groups.iter().enumerate() {
            let by_net = g.networks.iter().any(|n| n.contains(&addr));
            let by_user = user.is_some_and(|u| g.users.contains(u));
            let member = |dn: &str| directory.binary_search_by(|d| (**d).cmp(dn)).is_ok();
            let by_directory = !directory.is_empty()
                && (g.directory.iter().any(|dn| member(dn))
                    || g.directory_names
                        .iter()
                        .any(|n| names.get(&n.name).is_some_and(|dn| member(dn))));
            if by_net || by_user || by_directory {
                groups.insert(i as GroupId);
            }
        }
        Identity {
            addr,
            user: user.map(Into::into),
            groups,
        }
    }

    /// Whether a group of the policy names directory groups (a directory lookup can
    /// change a client's groups).
    pub fn uses_directory(&self) -> bool {
        self.groups
            .iter()
            .any(|g| !g.directory.is_empty() || !g.directory_names.is_empty())
    }

    /// Whether a group of the policy names a directory group by its short name.
    pub fn has_directory_names(&self) -> bool {
        self.groups.iter().any(|g| !g.directory_names.is_empty())
    }

    /// The short names of directory groups the policy uses, each once, sorted.
    pub fn directory_names(&self) -> Vec<Box<str>> {
        let mut names: Vec<Box<str>> = self
            .groups
            .iter()
            .flat_map(|g| g.directory_names.iter().map(|n| n.name.clone()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    pub fn id(&self, name: &str) -> Option<GroupId> {
        self.groups
            .iter()
            .position(|g| &*g.name == name)
            .map(|i| i as GroupId)
    }

    pub fn name(&self, id: GroupId) -> &str {
        &self.groups[id as usize].name
    }

    /// Names of the groups in `set`, in policy order.
    pub fn names<'a>(&'a self, set: &'a GroupSet) -> impl Iterator<Item = &'a str> + 'a {
        set.iter().map(|g| self.name(g))
    }

    /// The same names, shared: for records, which outlive the policy snapshot.
    pub fn shared_names<'a>(&'a self, set: &'a GroupSet) -> impl Iterator<Item = Arc<str>> + 'a {
        set.iter()
            .map(|g| Arc::clone(&self.groups[g as usize].name))
    }

    /// Whether inspection is off for any group of `set`.
    pub fn inspection_off(&self, set: &GroupSet) -> bool {
        set.iter().any(|g| !self.groups[g as usize].inspect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> GroupTable {
        let g = |name: &str, nets: &[&str], users: &[&str], inspect| Group {
            name: name.into(),
            description: None,
            networks: nets.iter().map(|n| n.parse().unwrap()).collect(),
            users: users.iter().map(|u| (*u).into()).collect(),
            directory: Vec::new(),
            directory_names: Vec::new(),
            inspect,
        };
        GroupTable {
            groups: vec![
                g("agents", &["10.0.0.0/8"], &[], true),
                g("communication", &[], &["c.martin"], true),
                g("invites", &["192.168.100.0/24"], &[], false),
            ],
        }
    }

    #[test]
    fn groups_come_from_address_and_user() {
        let t = table();
        let id = t.resolve("10.1.2.3".parse().unwrap(), None);
        assert_eq!(t.names(&id.groups).collect::<Vec<_>>(), ["agents"]);
        let id = t.resolve("10.1.2.3".parse().unwrap(), Some("c.martin"));
        assert_eq!(
            t.names(&id.groups).collect::<Vec<_>>(),
            ["agents", "communication"]
        );
        let id = t.resolve("172.16.0.1".parse().unwrap(), None);
        assert!(id.groups.is_empty());
    }

    #[test]
    fn directory_groups_add_to_address_and_user() {
        let mut t = table();
        t.groups[1].directory =
            vec!["cn=gg-internet-communication,ou=groupes,dc=mairie,dc=test".into()];
        assert!(t.uses_directory());
        let dns: Vec<Box<str>> = vec![
            "cn=gg-com-nested,ou=groupes,dc=mairie,dc=test".into(),
            "cn=gg-internet-communication,ou=groupes,dc=mairie,dc=test".into(),
        ];
        let none = DirectoryNames::new();
        let id = t.resolve_with("10.1.2.3".parse().unwrap(), Some("bob"), &dns, &none);
        assert_eq!(
            t.names(&id.groups).collect::<Vec<_>>(),
            ["agents", "communication"]
        );
        let id = t.resolve_with("10.1.2.3".parse().unwrap(), Some("bob"), &dns[..1], &none);
        assert_eq!(t.names(&id.groups).collect::<Vec<_>>(), ["agents"]);
    }

    #[test]
    fn short_names_match_through_their_resolved_dn() {
        let mut t = table();
        t.groups[1].directory_names = vec![DirectoryName {
            name: "gg-internet-communication".into(),
            line: 3,
            col: 5,
        }];
        assert!(t.uses_directory());
        assert_eq!(t.directory_names(), ["gg-internet-communication".into()]);
        let dns: Vec<Box<str>> = vec!["cn=gg-internet-communication,ou=groupes,dc=m".into()];
        let addr = "10.1.2.3".parse().unwrap();
        // Unresolved: the name matches nobody.
        let id = t.resolve_with(addr, Some("bob"), &dns, &DirectoryNames::new());
        assert_eq!(t.names(&id.groups).collect::<Vec<_>>(), ["agents"]);
        let names = DirectoryNames::from([(
            "gg-internet-communication".into(),
            "cn=gg-internet-communication,ou=groupes,dc=m".into(),
        )]);
        let id = t.resolve_with(addr, Some("bob"), &dns, &names);
        assert_eq!(
            t.names(&id.groups).collect::<Vec<_>>(),
            ["agents", "communication"]
        );
        // Resolved, but the user is not in that group.
        let id = t.resolve_with(addr, Some("bob"), &dns[..0], &names);
        assert_eq!(t.names(&id.groups).collect::<Vec<_>>(), ["agents"]);
    }

    #[test]
    fn mapped_ipv4_clients_are_ipv4() {
        let t = table();
        let id = t.resolve("::ffff:192.168.100.7".parse().unwrap(), None);
        assert_eq!(id.addr, "192.168.100.7".parse::<IpAddr>().unwrap());
        assert!(t.inspection_off(&id.groups));
    }

    #[test]
    fn group_sets() {
        let mut a = GroupSet::EMPTY;
        a.insert(3);
        a.insert(200);
        let mut b = GroupSet::EMPTY;
        b.insert(200);
        assert!(a.intersects(&b) && b.is_subset(&a) && !a.is_subset(&b));
        assert_eq!(a.iter().collect::<Vec<_>>(), [3, 200]);
    }
}
