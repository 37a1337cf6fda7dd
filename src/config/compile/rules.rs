//! `rules`: each rule's head (id, action, mode, reason), its conditions with every name
//! resolved (groups, categories, lists), its inline sites under tags of their own; then
//! the rules that can never match because an earlier one always matches first.

use std::collections::{BTreeMap, HashMap};

use crate::classify::{TagId, TagInfo, TagKind};
use crate::config::diag::{some_names, suggest};
use crate::config::raw::{RawAction, RawMode, RawRule, RawSchedule};
use crate::content::filetype::FileKind;
use crate::identity::{GroupSet, GroupTable};
use crate::policy::schedule::{DAY_MINUTES, day_number};
use crate::policy::{Action, Conditions, FileTypes, Mode, Rule, Schedule};

use super::content::ContentNames;
use super::{Cx, Tags, tag_set, text};

/// The names a rule may use, with what each stands for.
pub(super) struct Known<'a> {
    pub(super) groups: &'a GroupTable,
    pub(super) categories: &'a BTreeMap<String, TagId>,
    pub(super) lists: &'a BTreeMap<String, TagId>,
    pub(super) content: &'a ContentNames,
}

/// A rule with its names resolved. Its tag sets are made by [`Pending::finish`] once
/// every tag exists, since a set is sized by the number of tags.
pub(super) struct Pending {
    rule: Rule,
    categories: Option<Vec<TagId>>,
    lists: Option<Vec<TagId>>,
    domains: Option<TagId>,
    urls: Option<TagId>,
}

impl Pending {
    /// The rule, its tag sets sized for `n` tags.
    pub(super) fn finish(self, n: usize) -> Rule {
        let mut rule = self.rule;
        rule.conds.categories = self.categories.as_deref().map(|ids| tag_set(n, ids));
        rule.conds.lists = self.lists.as_deref().map(|ids| tag_set(n, ids));
        rule.conds.domains = self.domains.map(|t| tag_set(n, &[t]));
        rule.conds.urls = self.urls.map(|t| tag_set(n, &[t]));
        rule
    }
}

impl Cx<'_> {
    /// `rules`, in order; a rule that did not deserialize is skipped (already reported).
    pub(super) fn rules(
        &mut self,
        raw: &[Option<RawRule>],
        known: &Known,
        tags: &mut Tags,
    ) -> Vec<Pending> {
        let mut pending = Vec::new();
        let mut seen_ids: HashMap<String, usize> = HashMap::new();
        for (i, r) in raw.iter().enumerate() {
            let Some(r) = r else { continue };
            self.rule_id(i, r, &mut seen_ids);
            pending.push(self.rule(i, r, known, tags));
        }
        pending
    }

    /// Rule `i`'s id: not empty, not the id of an earlier rule (`seen`: the index of
    /// each id's first rule).
    fn rule_id(&mut self, i: usize, r: &RawRule, seen: &mut HashMap<String, usize>) {
        let key = format!("rules[{i}].id");
        if r.id.trim().is_empty() {
            let pos = self.pos.value(&key);
            self.err(
                "empty-id",
                &key,
                pos,
                "a rule needs a non-empty `id`".into(),
                None,
            );
        }
        if let Some(first) = seen.get(&r.id) {
            let pos = self.pos.value(&key);
            let first_line = self.pos.value(&format!("rules[{first}].id")).line;
            self.err(
                "duplicate-rule-id",
                &key,
                pos,
                format!("duplicate rule id `{}`", r.id),
                Some(format!(
                    "rule ids must be unique (the first `{}` is on line {first_line}); rename one",
                    r.id
                )),
            );
        } else {
            seen.insert(r.id.clone(), i);
        }
    }

    /// Rule `i`, its id already checked: its head, then its conditions in the order of
    /// the README.
    fn rule(&mut self, i: usize, r: &RawRule, known: &Known, tags: &mut Tags) -> Pending {
        let base = format!("rules[{i}]");
        let (action, mode) = self.rule_effect(&base, r);
        self.empty_conditions(&base, r);
        let conds = Conditions {
            groups: (r.groups.as_ref()).map(|gs| self.group_condition(&base, gs, known.groups)),
            users: (r.users.as_ref()).map(|u| u.iter().map(|s| s.as_str().into()).collect()),
            methods: (r.methods.as_ref()).map(|ms| self.method_condition(&base, ms)),
            approved_requests: r.approved_requests,
            schedule: (r.schedule.as_ref()).map(|s| self.schedule_condition(&base, &r.id, s)),
            content: (r.content.as_ref()).map(|c| self.content_condition(&base, c, known.content)),
            file_types: (r.file_types.as_ref()).map(|t| self.file_types_condition(&base, t)),
            ..Conditions::default()
        };
        let categories = r.categories.as_ref().map(|cs| {
            let key = format!("{base}.categories");
            self.resolve_all(cs, known.categories, &key, "category")
        });
        let lists = r
            .lists
            .as_ref()
            .map(|ls| self.resolve_all(ls, known.lists, &format!("{base}.lists"), "list"));
        let domains = r.domains.as_ref().map(|ds| {
            let id = tags.add(TagInfo::new(
                &format!("{}.domains", r.id),
                TagKind::RuleSites,
            ));
            self.add_entries(tags, id, ds, &format!("{base}.domains"), false);
            id
        });
        let urls = r.urls.as_ref().map(|us| {
            let id = tags.add(TagInfo::new(&format!("{}.urls", r.id), TagKind::RuleSites));
            self.add_urls(tags, id, us, &format!("{base}.urls"));
            id
        });
        Pending {
            rule: Rule {
                id: r.id.as_str().into(),
                conds,
                action,
                mode,
                overridable: r.overridable.unwrap_or(true),
                reason: r.reason.as_ref().map(text),
            },
            categories,
            lists,
            domains,
            urls,
        }
    }

    /// The rule's action and mode: a `block` or `block-upload` needs a reason; report
    /// mode on an `allow` rule is pointless (a warning).
    fn rule_effect(&mut self, base: &str, r: &RawRule) -> (Action, Mode) {
        let action = match r.action {
            RawAction::Allow => Action::Allow,
            RawAction::Block => Action::Block,
            RawAction::BlockUpload => Action::BlockUpload,
        };
        let mode = match r.mode {
            Some(RawMode::Report) => Mode::Report,
            _ => Mode::Enforce,
        };
        if action != Action::Allow && r.reason.is_none() {
            let pos = self.pos.key(base);
            self.err(
                "missing-reason",
                base,
                pos,
                format!("rule `{}` has action `{}` but no `reason`", r.id, action.as_str()),
                Some("add `reason: \"…\"` saying why, with the charter clause: it is shown on the block page and recorded in the trace (§4.8)".into()),
            );
        }
        if mode == Mode::Report && action == Action::Allow {
            let pos = self.pos.key(&format!("{base}.mode"));
            self.warn(
                "report-allow",
                &format!("{base}.mode"),
                pos,
                format!(
                    "rule `{}` is in report mode but only allows: it can never report a block",
                    r.id
                ),
                Some(
                    "report mode is meant for `block` and `block-upload` rules being tried out"
                        .into(),
                ),
            );
        }
        (action, mode)
    }

    /// A condition written with no entry can never match: an error.
    fn empty_conditions(&mut self, base: &str, r: &RawRule) {
        for (cond, list) in [
            ("groups", &r.groups),
            ("users", &r.users),
            ("categories", &r.categories),
            ("lists", &r.lists),
            ("domains", &r.domains),
            ("urls", &r.urls),
            ("methods", &r.methods),
            ("content", &r.content),
            ("file_types", &r.file_types),
        ] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                let key = format!("{base}.{cond}");
                let pos = self.pos.key(&key);
                self.err(
                    "empty-condition",
                    &key,
                    pos,
                    format!("`{cond}` is empty, so rule `{}` can never match", r.id),
                    Some(format!("list at least one entry, or remove `{cond}`")),
                );
            }
        }
    }

    /// `file_types`: the kinds named; unknown names are reported.
    fn file_types_condition(&mut self, base: &str, names: &[String]) -> FileTypes {
        let mut set = FileTypes::NONE;
        for (j, n) in names.iter().enumerate() {
            match FileKind::parse(n) {
                Some(k) => set = set.with(k),
                None => {
                    let key = format!("{base}.file_types[{j}]");
                    let pos = self.pos.value(&key);
                    let all = FileKind::ALL.map(FileKind::as_str);
                    let help = suggest(n, all.iter().copied())
                        .unwrap_or_else(|| format!("the kinds are {}", all.join(", ")));
                    self.err(
                        "bad-file-type",
                        &key,
                        pos,
                        format!("unknown kind of file `{n}`"),
                        Some(help),
                    );
                }
            }
        }
        set
    }

    /// `groups`: the set of the groups named; unknown names are reported.
    pub(super) fn group_condition(
        &mut self,
        base: &str,
        names: &[String],
        groups: &GroupTable,
    ) -> GroupSet {
        let mut set = GroupSet::EMPTY;
        for (j, g) in names.iter().enumerate() {
            let key = format!("{base}.groups[{j}]");
            match groups.id(g) {
                Some(id) => set.insert(id),
                None => {
                    let pos = self.pos.value(&key);
                    let help =
                        suggest(g, groups.groups.iter().map(|g| &*g.name)).unwrap_or_else(|| {
                            format!(
                                "groups of this policy: {}",
                                some_names(groups.groups.iter().map(|g| &*g.name), 20)
                            )
                        });
                    self.err(
                        "unknown-group",
                        &key,
                        pos,
                        format!("unknown group `{g}`"),
                        Some(help),
                    );
                }
            }
        }
        set
    }

    /// `methods`, upper-cased; what cannot be an HTTP method is reported.
    fn method_condition(&mut self, base: &str, methods: &[String]) -> Box<[Box<str>]> {
        let mut out = Vec::new();
        for (j, m) in methods.iter().enumerate() {
            let up = m.to_ascii_uppercase();
            if up.is_empty()
                || !up
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
            {
                let key = format!("{base}.methods[{j}]");
                let pos = self.pos.value(&key);
                self.err(
                    "bad-method",
                    &key,
                    pos,
                    format!("not an HTTP method: {m:?}"),
                    Some("write methods like GET, POST, PUT, CONNECT".into()),
                );
            }
            out.push(up.into_boxed_str());
        }
        out.into()
    }

    /// `schedule`: its days (every day when absent) and hours (the whole day when
    /// absent) as minutes of the week; what cannot be read is reported, with the forms
    /// that can.
    fn schedule_condition(&mut self, base: &str, id: &str, raw: &RawSchedule) -> Schedule {
        let key = format!("{base}.schedule");
        if raw.days.is_none() && raw.hours.is_none() {
            let pos = self.pos.key(&key);
            self.err(
                "empty-condition",
                &key,
                pos,
                format!("`schedule` of rule `{id}` names neither days nor hours"),
                Some("add `days:` (mon-fri…), `hours:` (\"12:00-14:00\"…) or both, or remove `schedule`".into()),
            );
        }
        for (part, list, what) in [
            ("days", &raw.days, "a day or a range of days"),
            ("hours", &raw.hours, "a range of hours"),
        ] {
            if list.as_ref().is_some_and(Vec::is_empty) {
                let key = format!("{key}.{part}");
                let pos = self.pos.key(&key);
                self.err(
                    "empty-condition",
                    &key,
                    pos,
                    format!("`schedule.{part}` is empty, so rule `{id}` can never match"),
                    Some(format!(
                        "list {what}, or remove `{part}` (every day, the whole day)"
                    )),
                );
            }
        }
        let mut days = [raw.days.is_none(); 7];
        for (j, d) in raw.days.iter().flatten().enumerate() {
            match parse_days(d) {
                Ok((from, to)) => {
                    let mut day = from;
                    loop {
                        days[day as usize] = true;
                        if day == to {
                            break;
                        }
                        day = (day + 1) % 7;
                    }
                }
                Err(msg) => {
                    let key = format!("{key}.days[{j}]");
                    let pos = self.pos.value(&key);
                    self.err(
                        "bad-day",
                        &key,
                        pos,
                        msg,
                        Some("write days as mon, tue, wed, thu, fri, sat, sun (or lun, mar, mer, jeu, ven, sam, dim), and ranges as mon-fri".into()),
                    );
                }
            }
        }
        let mut ranges = Vec::new();
        match &raw.hours {
            None => ranges.push((0, DAY_MINUTES)),
            Some(hours) => {
                for (j, h) in hours.iter().enumerate() {
                    match parse_hours(h) {
                        Ok(r) => ranges.push(r),
                        Err(msg) => {
                            let key = format!("{key}.hours[{j}]");
                            let pos = self.pos.value(&key);
                            self.err(
                                "bad-hours",
                                &key,
                                pos,
                                msg,
                                Some("write \"HH:MM-HH:MM\" in the town's time, the end excluded: \"12:00-14:00\"; \"22:00-06:00\" runs past midnight; \"00:00-24:00\" is the whole day".into()),
                            );
                        }
                    }
                }
            }
        }
        let mut s = Schedule::default();
        for (day, on) in days.iter().enumerate() {
            if *on {
                for (start, end) in &ranges {
                    s.add(day as u8, *start, *end);
                }
            }
        }
        s
    }

    /// The tags of the categories or lists (`what`) named at `key`; unknown names are
    /// reported and left out.
    fn resolve_all(
        &mut self,
        names: &[String],
        known: &BTreeMap<String, TagId>,
        key: &str,
        what: &str,
    ) -> Vec<TagId> {
        names
            .iter()
            .enumerate()
            .filter_map(|(j, n)| self.resolve_name(n, known, &format!("{key}[{j}]"), what))
            .collect()
    }

    /// Warns about rules that can never decide because an earlier enforcing rule
    /// matches whenever they would.
    pub(super) fn check_shadowed(&mut self, rules: &[Rule]) {
        for (j, later) in rules.iter().enumerate() {
            for (i, earlier) in rules[..j].iter().enumerate() {
                if earlier.mode == Mode::Enforce && covers(&earlier.conds, &later.conds) {
                    let key = format!("rules[{j}]");
                    let pos = self.pos.key(&key);
                    let line = self.pos.key(&format!("rules[{i}]")).line;
                    self.warn(
                        "unreachable-rule",
                        &key,
                        pos,
                        format!("rule `{}` can never match: rule `{}` (line {line}) always matches first", later.id, earlier.id),
                        Some(format!("move `{}` above `{}`, or narrow `{}`", later.id, earlier.id, earlier.id)),
                    );
                    break;
                }
            }
        }
    }
}

/// Whether `a` matches every request that `b` matches: each condition of `a` is also a
/// condition of `b` with no more alternatives.
fn covers(a: &Conditions, b: &Conditions) -> bool {
    fn sub<T>(a: &Option<T>, b: &Option<T>, f: impl Fn(&T, &T) -> bool) -> bool {
        match (a, b) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(x), Some(y)) => f(y, x),
        }
    }
    sub(&a.groups, &b.groups, |x, y| x.is_subset(y))
        && sub(&a.users, &b.users, |x, y| all_in(x, y))
        && sub(&a.methods, &b.methods, |x, y| all_in(x, y))
        && sub(&a.categories, &b.categories, |x, y| x.is_subset(y))
        && sub(&a.lists, &b.lists, |x, y| x.is_subset(y))
        // a rule's own inline sites are never a subset of another rule's
        && a.domains.is_none()
        && a.urls.is_none()
        && sub(&a.approved_requests, &b.approved_requests, |x, y| x == y)
        && sub(&a.schedule, &b.schedule, |x, y| x.is_subset(y))
        && sub(&a.content, &b.content, |x, y| x.0 & !y.0 == 0)
        && sub(&a.file_types, &b.file_types, |x, y| x.0 & !y.0 == 0)
}

/// A day (`mon`) or a range of days (`mon-fri`; `fri-mon` runs over the weekend), as
/// the first and last day (0 = Monday).
fn parse_days(s: &str) -> Result<(u8, u8), String> {
    let day = |d: &str| day_number(d).ok_or_else(|| format!("unknown day {:?} in {s:?}", d.trim()));
    match s.split_once('-') {
        Some((from, to)) => Ok((day(from)?, day(to)?)),
        None => day(s)
            .map(|d| (d, d))
            .map_err(|_| format!("unknown day {s:?}")),
    }
}

/// `HH:MM-HH:MM` as minutes of the day, the end excluded; the end may be `24:00`, and
/// an end before the start runs past midnight.
fn parse_hours(s: &str) -> Result<(u16, u16), String> {
    let Some((from, to)) = s.split_once('-') else {
        return Err(format!("not a range of hours: {s:?}"));
    };
    let start = parse_clock(from.trim(), false)?;
    let end = parse_clock(to.trim(), true)?;
    if start == end {
        return Err(format!(
            "the range {s:?} is empty (it starts where it ends)"
        ));
    }
    Ok((start, end))
}

/// `HH:MM` (or `H:MM`) as a minute of the day; `24:00` only as an end.
fn parse_clock(s: &str, end: bool) -> Result<u16, String> {
    let bad = || format!("not a time of day: {s:?}");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let digits = |x: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&x.len()) && x.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(h, 1..=2) || !digits(m, 2..=2) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) if end => Ok(DAY_MINUTES),
        (24, 0) => Err(format!(
            "{s:?} can only end a range (it is midnight at the end of the day)"
        )),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(format!("no such time of day: {s:?}")),
    }
}

/// Whether every name of `x` is in `y`.
fn all_in(x: &[Box<str>], y: &[Box<str>]) -> bool {
    x.iter().all(|n| y.contains(n))
}
