//! The dashboard page ("Tableau de bord"): the figures of [`crate::report::Dashboard`]
//! drawn as SVG charts by `dashboard.html`.
//!
//! What this module owns and why:
//! - **Coordinates are computed here, markup is in the template.** Each chart is a
//!   [`Chart`] of ready-made rectangles, ticks and labels; the template's macros only
//!   print them, so a town may restyle the charts without doing arithmetic in Jinja.
//! - **Readable without the picture.** Every chart has a title and a description for
//!   screen readers, and the same figures as a table in a `<details>`.
//! - **Hours in the town's time zone**, numbers written the way each language does.
//! - **Nothing external**: inline SVG and CSS, no script, so the page works offline.

use minijinja::Value;
use serde::Serialize;

use super::templates::Pages;
use crate::policy::Lang;
use crate::report::{DAYS, Dashboard, Hour, WEEKS, Week};

/// The dashboard, whole, for administrator `admin` (with the session's `csrf` for the
/// logout form of the navigation bar).
pub fn page(lang: Lang, admin: &str, csrf: &str, d: &Dashboard) -> String {
    let pages = super::templates::current();
    let ctx = context(&pages, lang, admin, csrf, d);
    super::proxy::render_or_bare(&pages, "dashboard.html", lang, ctx, words(lang).title)
}

fn context(pages: &Pages, lang: Lang, admin: &str, csrf: &str, d: &Dashboard) -> Value {
    let w = words(lang);
    let (updated, updated_iso) = pages.time(d.now, lang);
    let charts = vec![
        hourly(pages, lang, &d.hours),
        bars(
            "categories",
            w.categories,
            w.categories_caption,
            [w.category, w.blocks],
            &named(&d.categories, w.no_category),
            lang,
        ),
        bars(
            "rules",
            w.rules,
            w.rules_caption,
            [w.rule, w.blocks],
            &named(&d.rules, w.default_rule),
            lang,
        ),
        bars(
            "sites",
            w.sites,
            w.sites_caption,
            [w.site, w.blocks],
            &d.sites,
            lang,
        ),
        bars(
            "groups",
            w.groups,
            w.groups_caption,
            [w.group, w.blocks],
            &named(&d.groups, w.no_group),
            lang,
        ),
        share(lang, d),
        weekly(pages, lang, &d.weeks),
        bars(
            "users",
            w.users,
            if d.names {
                w.users_caption_names
            } else {
                w.users_caption_pseudonyms
            },
            [w.person, w.blocks],
            &d.users,
            lang,
        ),
    ];
    minijinja::context! {
        csrf,
        admin_name => admin,
        w => Value::from_serialize(w),
        updated,
        updated_iso,
        names => d.names,
        charts => Value::from_serialize(&charts),
    }
}

/// Renders the dashboard on sample figures in both languages, so that a broken
/// override of `dashboard.html` stops the start with its file and line.
pub(super) fn try_samples(pages: &Pages) -> Result<(), minijinja::Error> {
    let now = 1_796_466_600;
    let d = Dashboard {
        now,
        hours: (0..crate::report::HOURS)
            .map(|i| Hour {
                start: (now / 3600 - crate::report::HOURS + 1 + i) * 3600,
                requests: i * 3,
                blocked: i % 7,
            })
            .collect(),
        categories: vec![("jeux".into(), 12), (String::new(), 1)],
        rules: vec![("<pas-de-jeux>".into(), 12)],
        sites: vec![("casino.example".into(), 9)],
        groups: vec![],
        users: vec![("agent-3f9a1c2b".into(), 4)],
        names: false,
        share: [100, 60, 30, 10, 123_456],
        blocked: 13,
        weeks: (0..WEEKS)
            .map(|i| Week {
                start: now - (WEEKS - i) * 7 * 86_400,
                opened: i,
                approved: i / 2,
                refused: i / 3,
            })
            .collect(),
    };
    for lang in [Lang::Fr, Lang::En] {
        pages.render(
            "dashboard.html",
            lang,
            context(pages, lang, "dsi", "CSRF", &d),
        )?;
    }
    Ok(())
}

/// One chart: what the template draws, and the same figures as a table.
#[derive(Debug, Serialize)]
struct Chart {
    id: &'static str,
    /// `bars` (horizontal, labelled), `columns` (vertical, over time) or `stack` (one
    /// bar of shares).
    kind: &'static str,
    title: String,
    caption: String,
    width: u32,
    height: u32,
    /// Nothing to draw: the template says so instead.
    empty: bool,
    bars: Vec<HBar>,
    rects: Vec<Rect>,
    /// Values on the vertical axis (`columns`).
    ticks: Vec<Tick>,
    /// Labels under the horizontal axis (`columns`).
    xlabels: Vec<Tick>,
    legend: Vec<Legend>,
    head: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Chart {
    fn new(id: &'static str, kind: &'static str, title: &str, caption: &str) -> Chart {
        Chart {
            id,
            kind,
            title: title.to_owned(),
            caption: caption.to_owned(),
            width: 0,
            height: 0,
            empty: false,
            bars: Vec::new(),
            rects: Vec::new(),
            ticks: Vec::new(),
            xlabels: Vec::new(),
            legend: Vec::new(),
            head: Vec::new(),
            rows: Vec::new(),
        }
    }
}

/// A labelled horizontal bar.
#[derive(Debug, Serialize)]
struct HBar {
    /// As shown beside the bar (cut); the full label is in `full`.
    label: String,
    full: String,
    value: String,
    y: u32,
    w: f64,
}

#[derive(Debug, Serialize)]
struct Rect {
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    class: &'static str,
    tip: String,
}

#[derive(Debug, Serialize)]
struct Tick {
    x: f64,
    y: f64,
    label: String,
}

#[derive(Debug, Serialize)]
struct Legend {
    class: &'static str,
    label: String,
}

/// Widths of the horizontal bar charts: labels, then bars, then the value.
const BAR_LABEL: u32 = 230;
const BAR_AREA: f64 = 380.0;
const BAR_ROW: u32 = 26;
/// Longest label drawn (characters); the table has it whole.
const LABEL_MAX: usize = 34;

fn bars(
    id: &'static str,
    title: &str,
    caption: &str,
    head: [&str; 2],
    items: &[(String, i64)],
    lang: Lang,
) -> Chart {
    let mut c = Chart::new(id, "bars", title, caption);
    let max = items.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1) as f64;
    c.width = BAR_LABEL + BAR_AREA as u32 + 90;
    c.height = BAR_ROW * items.len() as u32 + 4;
    c.empty = items.is_empty();
    c.head = head.iter().map(|h| (*h).to_owned()).collect();
    for (i, (label, n)) in items.iter().enumerate() {
        let (cut, was_cut) = super::frame::cut(label, LABEL_MAX);
        c.bars.push(HBar {
            label: if was_cut {
                format!("{cut}…")
            } else {
                label.clone()
            },
            full: label.clone(),
            value: number(*n, lang),
            y: i as u32 * BAR_ROW,
            w: round(*n as f64 / max * BAR_AREA).max(1.0),
        });
        c.rows.push(vec![label.clone(), number(*n, lang)]);
    }
    c
}

/// Vertical axis: a round maximum at or above `max`, and its ticks.
fn axis(max: i64, plot_h: f64, top: f64, lang: Lang) -> (f64, Vec<Tick>) {
    let max = max.max(1) as f64;
    let step = 10f64.powf((max / 4.0).log10().floor());
    let nice = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * step)
        .find(|s| s * 4.0 >= max)
        .unwrap_or(step * 10.0);
    let ticks = (0..=4)
        .map(|i| Tick {
            x: 0.0,
            y: round(top + plot_h - plot_h * f64::from(i) / 4.0),
            label: number((nice * f64::from(i)) as i64, lang),
        })
        .collect();
    (nice * 4.0, ticks)
}

const PLOT_LEFT: f64 = 56.0;
const PLOT_TOP: f64 = 10.0;
const PLOT_H: f64 = 180.0;

fn hourly(pages: &Pages, lang: Lang, hours: &[Hour]) -> Chart {
    let w = words(lang);
    let mut c = Chart::new("hours", "columns", w.hours, w.hours_caption);
    let col = 5.0;
    c.width = (PLOT_LEFT + col * hours.len() as f64 + 10.0) as u32;
    c.height = (PLOT_TOP + PLOT_H + 30.0) as u32;
    let max = hours.iter().map(|h| h.requests).max().unwrap_or(0);
    let (top, ticks) = axis(max, PLOT_H, PLOT_TOP, lang);
    c.ticks = ticks;
    c.empty = max == 0;
    c.legend = vec![
        Legend {
            class: "req",
            label: w.requests.to_owned(),
        },
        Legend {
            class: "blk",
            label: w.blocks.to_owned(),
        },
    ];
    c.head = vec![w.hour.into(), w.requests.into(), w.blocks.into()];
    let tz = pages.tz();
    for (i, h) in hours.iter().enumerate() {
        let x = round(PLOT_LEFT + col * i as f64);
        let zoned = jiff::Timestamp::from_second(h.start)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_zoned(tz.clone());
        let when = match lang {
            Lang::Fr => zoned.strftime("%d/%m %H:%M").to_string(),
            Lang::En => zoned.strftime("%Y-%m-%d %H:%M").to_string(),
        };
        if zoned.hour() == 0 {
            c.xlabels.push(Tick {
                x,
                y: PLOT_TOP + PLOT_H + 18.0,
                label: match lang {
                    Lang::Fr => zoned.strftime("%d/%m").to_string(),
                    Lang::En => zoned.strftime("%b %-d").to_string(),
                },
            });
        }
        for (n, class) in [(h.requests, "req"), (h.blocked, "blk")] {
            if n > 0 {
                let hh = round(n as f64 / top * PLOT_H).max(1.0);
                c.rects.push(Rect {
                    x,
                    y: round(PLOT_TOP + PLOT_H - hh),
                    w: col - 1.0,
                    h: hh,
                    class,
                    tip: format!(
                        "{when} : {} {}",
                        number(n, lang),
                        if class == "req" { w.requests } else { w.blocks }
                    ),
                });
            }
        }
        c.rows.push(vec![
            when,
            number(h.requests, lang),
            number(h.blocked, lang),
        ]);
    }
    c
}

fn weekly(pages: &Pages, lang: Lang, weeks: &[Week]) -> Chart {
    let w = words(lang);
    let mut c = Chart::new("weeks", "columns", w.weeks, w.weeks_caption);
    let group = 60.0;
    let bar = 16.0;
    c.width = (PLOT_LEFT + group * weeks.len() as f64 + 10.0) as u32;
    c.height = (PLOT_TOP + PLOT_H + 30.0) as u32;
    let max = weeks
        .iter()
        .map(|x| x.opened.max(x.approved).max(x.refused))
        .max()
        .unwrap_or(0);
    let (top, ticks) = axis(max, PLOT_H, PLOT_TOP, lang);
    c.ticks = ticks;
    c.empty = max == 0;
    let series = [
        ("opened", w.opened),
        ("approved", w.approved),
        ("refused", w.refused),
    ];
    c.legend = series
        .iter()
        .map(|(class, label)| Legend {
            class,
            label: (*label).to_owned(),
        })
        .collect();
    c.head = vec![
        w.week.into(),
        w.opened.into(),
        w.approved.into(),
        w.refused.into(),
    ];
    for (i, wk) in weeks.iter().enumerate() {
        let x0 = PLOT_LEFT + group * i as f64 + 6.0;
        let monday = pages.time(wk.start, lang).1;
        let day = match lang {
            Lang::Fr => format!("{}/{}", &monday[8..10], &monday[5..7]),
            Lang::En => monday[..10].to_owned(),
        };
        c.xlabels.push(Tick {
            x: round(x0),
            y: PLOT_TOP + PLOT_H + 18.0,
            label: day.clone(),
        });
        for (j, (n, (class, label))) in [wk.opened, wk.approved, wk.refused]
            .into_iter()
            .zip(series)
            .enumerate()
        {
            if n > 0 {
                let hh = round(n as f64 / top * PLOT_H).max(1.0);
                c.rects.push(Rect {
                    x: round(x0 + bar * j as f64),
                    y: round(PLOT_TOP + PLOT_H - hh),
                    w: bar - 2.0,
                    h: hh,
                    class,
                    tip: format!("{} {day} : {} {label}", w.week_of, number(n, lang)),
                });
            }
        }
        c.rows.push(vec![
            day,
            number(wk.opened, lang),
            number(wk.approved, lang),
            number(wk.refused, lang),
        ]);
    }
    c
}

/// The share of requests inspected, tunnelled without inspection, and plain HTTP.
fn share(lang: Lang, d: &Dashboard) -> Chart {
    let w = words(lang);
    let [requests, inspected, tunnelled, plain, bytes] = d.share;
    let caption = match lang {
        Lang::Fr => format!(
            "{} requêtes sur {DAYS} jours, dont {} bloquées ; volume échangé : {}.",
            number(requests, lang),
            number(d.blocked, lang),
            volume(bytes, lang)
        ),
        Lang::En => format!(
            "{} requests over {DAYS} days, {} of them blocked; volume exchanged: {}.",
            number(requests, lang),
            number(d.blocked, lang),
            volume(bytes, lang)
        ),
    };
    let mut c = Chart::new("share", "stack", w.share, &caption);
    c.width = 640;
    c.height = 40;
    let sum = inspected + tunnelled + plain;
    c.empty = sum == 0;
    c.head = vec![w.kind.into(), w.requests.into(), w.percent.into()];
    let mut x = 0.0;
    for (n, class, label) in [
        (inspected, "inspected", w.inspected),
        (tunnelled, "tunnelled", w.tunnelled),
        (plain, "plain", w.plain),
    ] {
        let pct = if sum > 0 {
            n as f64 * 100.0 / sum as f64
        } else {
            0.0
        };
        let pct_text = match lang {
            Lang::Fr => format!("{:.1} %", pct).replace('.', ","),
            Lang::En => format!("{pct:.1}%"),
        };
        let width = round(pct / 100.0 * f64::from(c.width));
        if width > 0.0 {
            c.rects.push(Rect {
                x,
                y: 0.0,
                w: width,
                h: 40.0,
                class,
                tip: format!("{label} : {pct_text}"),
            });
        }
        x = round(x + width);
        c.legend.push(Legend {
            class,
            label: format!("{label} : {pct_text}"),
        });
        c.rows.push(vec![label.into(), number(n, lang), pct_text]);
    }
    c
}

/// `items` with the empty key named (no category, default rule, no group).
fn named(items: &[(String, i64)], none: &str) -> Vec<(String, i64)> {
    items
        .iter()
        .map(|(k, n)| {
            let k = if k.is_empty() {
                none.to_owned()
            } else {
                k.clone()
            };
            (k, *n)
        })
        .collect()
}

fn round(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// `12 345` (fr, narrow no-break space) or `12,345` (en).
fn number(n: i64, lang: Lang) -> String {
    let digits = n.unsigned_abs().to_string();
    let sep = match lang {
        Lang::Fr => "\u{202f}",
        Lang::En => ",",
    };
    let mut out = String::new();
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push_str(sep);
        }
        out.push(c);
    }
    out
}

/// Bytes for people: `1,2 Go` (fr) or `1.2 GB` (en).
fn volume(bytes: i64, lang: Lang) -> String {
    let units = match lang {
        Lang::Fr => ["o", "ko", "Mo", "Go", "To"],
        Lang::En => ["B", "kB", "MB", "GB", "TB"],
    };
    let mut v = bytes.max(0) as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    let s = if u == 0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    };
    let s = match lang {
        Lang::Fr => s.replace('.', ","),
        Lang::En => s,
    };
    format!("{s}\u{a0}{}", units[u])
}

/// The page's words in one language.
#[derive(Debug, Serialize)]
struct Words {
    title: &'static str,
    intro: &'static str,
    updated: &'static str,
    names_shown: &'static str,
    pseudonyms_shown: &'static str,
    table: &'static str,
    nothing: &'static str,
    hours: &'static str,
    hours_caption: &'static str,
    categories: &'static str,
    categories_caption: &'static str,
    rules: &'static str,
    rules_caption: &'static str,
    sites: &'static str,
    sites_caption: &'static str,
    groups: &'static str,
    groups_caption: &'static str,
    users: &'static str,
    users_caption_names: &'static str,
    users_caption_pseudonyms: &'static str,
    share: &'static str,
    weeks: &'static str,
    weeks_caption: &'static str,
    requests: &'static str,
    blocks: &'static str,
    hour: &'static str,
    category: &'static str,
    rule: &'static str,
    site: &'static str,
    group: &'static str,
    person: &'static str,
    kind: &'static str,
    percent: &'static str,
    week: &'static str,
    week_of: &'static str,
    opened: &'static str,
    approved: &'static str,
    refused: &'static str,
    inspected: &'static str,
    tunnelled: &'static str,
    plain: &'static str,
    no_category: &'static str,
    default_rule: &'static str,
    no_group: &'static str,
}

fn words(lang: Lang) -> &'static Words {
    match lang {
        Lang::Fr => &FR,
        Lang::En => &EN,
    }
}

static FR: Words = Words {
    title: "Tableau de bord",
    intro: "Ce que fait le filtre, compté par le proxy au fil des requêtes (compteurs horaires de la base des demandes, pas les fichiers de trace).",
    updated: "Chiffres au",
    names_shown: "Les personnes sont désignées par leur nom : votre compte figure dans trace.names_visible_to.",
    pseudonyms_shown: "Les personnes sont désignées par un pseudonyme stable (agent-…) : votre compte ne figure pas dans trace.names_visible_to.",
    table: "Les chiffres en tableau",
    nothing: "Rien à afficher pour cette période.",
    hours: "Requêtes et blocages par heure, 7 derniers jours",
    hours_caption: "Chaque barre est une heure (heure de la commune) ; la partie foncée, les requêtes bloquées.",
    categories: "Blocages par catégorie, 30 derniers jours",
    categories_caption: "Une requête de plusieurs catégories compte dans chacune.",
    rules: "Blocages par règle, 30 derniers jours",
    rules_caption: "La règle de la politique qui a bloqué.",
    sites: "Sites les plus bloqués, 30 derniers jours",
    sites_caption: "Les 10 sites qui ont reçu le plus de blocages.",
    groups: "Blocages par groupe, 30 derniers jours",
    groups_caption: "Une personne de plusieurs groupes compte dans chacun.",
    users: "Personnes les plus bloquées, 30 derniers jours",
    users_caption_names: "Noms affichés (trace.names_visible_to).",
    users_caption_pseudonyms: "Pseudonymes : le même agent garde le même pseudonyme ; le nom n'est pas affiché.",
    share: "Part du trafic inspecté, en tunnel et en clair, 30 derniers jours",
    weeks: "Demandes de déblocage par semaine, 12 dernières semaines",
    weeks_caption: "Demandes ouvertes, acceptées et refusées ; semaines du lundi.",
    requests: "Requêtes",
    blocks: "Blocages",
    hour: "Heure",
    category: "Catégorie",
    rule: "Règle",
    site: "Site",
    group: "Groupe",
    person: "Personne",
    kind: "Trafic",
    percent: "Part",
    week: "Semaine du",
    week_of: "Semaine du",
    opened: "Ouvertes",
    approved: "Acceptées",
    refused: "Refusées",
    inspected: "Inspecté (HTTPS déchiffré)",
    tunnelled: "En tunnel (non inspecté)",
    plain: "HTTP en clair",
    no_category: "(sans catégorie)",
    default_rule: "(règle par défaut)",
    no_group: "(sans groupe)",
};

static EN: Words = Words {
    title: "Dashboard",
    intro: "What the filter does, counted by the proxy as requests go (hourly counters in the request database, not the trace files).",
    updated: "Figures as of",
    names_shown: "People are shown by name: your account is in trace.names_visible_to.",
    pseudonyms_shown: "People are shown by a stable pseudonym (agent-…): your account is not in trace.names_visible_to.",
    table: "The figures as a table",
    nothing: "Nothing to show for this period.",
    hours: "Requests and blocks per hour, last 7 days",
    hours_caption: "Each bar is one hour (the town's time); the dark part, blocked requests.",
    categories: "Blocks by category, last 30 days",
    categories_caption: "A request in several categories counts in each.",
    rules: "Blocks by rule, last 30 days",
    rules_caption: "The policy rule that blocked.",
    sites: "Most blocked sites, last 30 days",
    sites_caption: "The 10 sites with the most blocks.",
    groups: "Blocks by group, last 30 days",
    groups_caption: "A person in several groups counts in each.",
    users: "Most blocked people, last 30 days",
    users_caption_names: "Names shown (trace.names_visible_to).",
    users_caption_pseudonyms: "Pseudonyms: each person keeps the same pseudonym; names are not shown.",
    share: "Share of traffic inspected, tunnelled and plain, last 30 days",
    weeks: "Unblock requests per week, last 12 weeks",
    weeks_caption: "Requests opened, approved and refused; weeks from Monday.",
    requests: "Requests",
    blocks: "Blocks",
    hour: "Hour",
    category: "Category",
    rule: "Rule",
    site: "Site",
    group: "Group",
    person: "Person",
    kind: "Traffic",
    percent: "Share",
    week: "Week of",
    week_of: "Week of",
    opened: "Opened",
    approved: "Approved",
    refused: "Refused",
    inspected: "Inspected (HTTPS decrypted)",
    tunnelled: "Tunnelled (not inspected)",
    plain: "Plain HTTP",
    no_category: "(no category)",
    default_rule: "(default rule)",
    no_group: "(no group)",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_volumes_are_written_per_language() {
        assert_eq!(number(1_234_567, Lang::En), "1,234,567");
        assert_eq!(number(1_234, Lang::Fr), "1\u{202f}234");
        assert_eq!(number(12, Lang::Fr), "12");
        assert_eq!(volume(1_234_567, Lang::Fr), "1,2\u{a0}Mo");
        assert_eq!(volume(999, Lang::En), "999\u{a0}B");
    }

    #[test]
    fn the_axis_is_round_and_holds_the_maximum() {
        let (top, ticks) = axis(37, 100.0, 0.0, Lang::En);
        assert_eq!(top, 40.0);
        assert_eq!(ticks.last().unwrap().label, "40");
        let (top, _) = axis(0, 100.0, 0.0, Lang::En);
        assert!(top >= 1.0);
    }

    #[test]
    fn the_shipped_dashboard_renders_escaped_in_both_languages() {
        let pages = Pages::load(&Default::default()).unwrap();
        try_samples(&pages).unwrap();
        let d = Dashboard {
            now: 1_796_466_600,
            hours: vec![],
            categories: vec![],
            rules: vec![("<script>alert(1)</script>".into(), 3)],
            sites: vec![],
            groups: vec![],
            users: vec![],
            names: true,
            share: [0; 5],
            blocked: 0,
            weeks: vec![],
        };
        let html = pages
            .render(
                "dashboard.html",
                Lang::En,
                context(&pages, Lang::En, "<b>", "C", &d),
            )
            .unwrap();
        assert!(
            html.contains("&lt;b&gt;") && html.contains("/deconnexion"),
            "{html}"
        );
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("trace.names_visible_to"));
    }
}
