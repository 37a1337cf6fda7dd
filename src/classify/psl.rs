//! Registrable domains and public suffixes, from the Public Suffix List.
//!
//! The list (Mozilla Public License 2.0, publicsuffix.org) is compiled into the binary
//! from `public_suffix_list.dat` and parsed once, on first use; the proxy never fetches
//! it at run time. Used for logs and statistics (the registrable domain of a host) and by
//! `check`, which warns when a rule would cover a whole public suffix such as `co.uk`.

use std::sync::LazyLock;

use publicsuffix::{List, Psl, Type};

use super::host::Host;

static LIST: LazyLock<List> = LazyLock::new(|| {
    include_str!("public_suffix_list.dat")
        .parse()
        .expect("the bundled public suffix list parses")
});

/// Which section of the list a public suffix comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuffixKind {
    /// Delegated by ICANN (`com`, `co.uk`, `gouv.fr`).
    Icann,
    /// Declared by a company for its customers' names (`github.io`, `blogspot.com`).
    Private,
}

/// The registrable domain ("eTLD+1") of a host: `www.example.co.uk` → `example.co.uk`.
/// `None` for addresses and for names that are themselves public suffixes.
pub fn registrable_domain(host: &Host) -> Option<&str> {
    if !host.is_domain() {
        return None;
    }
    let name = host.as_str();
    let d = LIST.domain(name.as_bytes())?;
    let len = d.as_bytes().len();
    Some(&name[name.len() - len..])
}

/// Whether the host is itself a public suffix listed in the PSL (not merely a name
/// under an unknown TLD).
pub fn public_suffix_kind(host: &Host) -> Option<SuffixKind> {
    if !host.is_domain() {
        return None;
    }
    let name = host.as_str().as_bytes();
    let s = LIST.suffix(name)?;
    if s.as_bytes() != name || !s.is_known() {
        return None;
    }
    match s.typ() {
        Some(Type::Private) => Some(SuffixKind::Private),
        _ => Some(SuffixKind::Icann),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Host {
        Host::parse(s).unwrap()
    }

    #[test]
    fn registrable_domains() {
        assert_eq!(
            registrable_domain(&h("www.example.co.uk")),
            Some("example.co.uk")
        );
        assert_eq!(registrable_domain(&h("a.b.ameli.fr")), Some("ameli.fr"));
        assert_eq!(registrable_domain(&h("x.github.io")), Some("x.github.io"));
        assert_eq!(registrable_domain(&h("co.uk")), None);
        assert_eq!(registrable_domain(&h("10.0.0.1")), None);
    }

    #[test]
    fn public_suffixes() {
        assert_eq!(public_suffix_kind(&h("co.uk")), Some(SuffixKind::Icann));
        assert_eq!(public_suffix_kind(&h("com")), Some(SuffixKind::Icann));
        assert_eq!(
            public_suffix_kind(&h("github.io")),
            Some(SuffixKind::Private)
        );
        assert_eq!(public_suffix_kind(&h("example.com")), None);
        assert_eq!(public_suffix_kind(&h("intranet")), None);
    }
}
