//! The templates of the pages: the shipped set (`templates/` at the top of the
//! repository, embedded in the binary), the files of the override folder named in the
//! server file (`pages.templates`) in their place, and the town's details every page
//! shows (name, logo, the IT service's contact, the time zone).
//!
//! What this module owns and why:
//! - **Compile once, render without I/O.** [`Pages::load`] reads every file, compiles
//!   every template and renders each page on sample values in both languages; the
//!   request path only renders the compiled set ([`current`]).
//! - **Broken is an error, never a blank page.** A syntax error, an unknown template, a
//!   render error on the samples, a missing logo or an unknown time zone comes back as a
//!   [`LoadError`] naming the file and line; `serve` refuses to start with it, a reload
//!   keeps the previous set ([`reload`]).
//! - **Escaping stays automatic.** Every `.html` template escapes what it prints, with
//!   [`super::html_escape`] (so a URL keeps its `/`); only the words of the pages (`t`,
//!   HTML written in this crate, like `&nbsp;`) are marked safe. The Rust side gives the
//!   templates plain values, never HTML.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwap;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value};

use crate::policy::Lang;
use crate::settings::PagesSettings;

/// The shipped templates, by name. A file of the override folder with one of these names
/// replaces it; other `.html` files there are added (parts a template may include).
pub const SHIPPED: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/layout.html")),
    ("header.html", include_str!("../../templates/header.html")),
    ("footer.html", include_str!("../../templates/footer.html")),
    ("style.css", include_str!("../../templates/style.css")),
    ("block.html", include_str!("../../templates/block.html")),
    ("help.html", include_str!("../../templates/help.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("page.html", include_str!("../../templates/page.html")),
    // The portal's pages (`page.html` around them).
    (
        "portal-facts.html",
        include_str!("../../templates/portal-facts.html"),
    ),
    (
        "portal-form.html",
        include_str!("../../templates/portal-form.html"),
    ),
    (
        "portal-closed.html",
        include_str!("../../templates/portal-closed.html"),
    ),
    (
        "portal-done.html",
        include_str!("../../templates/portal-done.html"),
    ),
    (
        "portal-status.html",
        include_str!("../../templates/portal-status.html"),
    ),
    (
        "portal-request.html",
        include_str!("../../templates/portal-request.html"),
    ),
    (
        "portal-list.html",
        include_str!("../../templates/portal-list.html"),
    ),
    // The administrators' pages (`page.html` around them).
    (
        "admin-nav.html",
        include_str!("../../templates/admin-nav.html"),
    ),
    (
        "admin-login.html",
        include_str!("../../templates/admin-login.html"),
    ),
    (
        "admin-pending.html",
        include_str!("../../templates/admin-pending.html"),
    ),
    (
        "admin-history.html",
        include_str!("../../templates/admin-history.html"),
    ),
    (
        "admin-message.html",
        include_str!("../../templates/admin-message.html"),
    ),
    (
        "admin-traces.html",
        include_str!("../../templates/admin-traces.html"),
    ),
    // The administrators' dashboard (`super::dashboard`).
    (
        "dashboard.html",
        include_str!("../../templates/dashboard.html"),
    ),
];

/// The largest logo inlined in every page (as a `data:` URI).
pub const LOGO_MAX_BYTES: u64 = 256 * 1024;

/// A template set that cannot be used: `file:line: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{}: {message}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default(), col.map(|c| format!(":{c}")).unwrap_or_default())]
pub struct LoadError {
    /// The template file (`<shipped>/block.html` for a shipped one), or the logo.
    pub file: PathBuf,
    /// 1-based, when the problem has a line.
    pub line: Option<usize>,
    /// 1-based, when the problem has a place on its line.
    pub col: Option<usize>,
    pub message: String,
}

/// The IT service's contact, as the pages show it.
#[derive(Debug, Clone, Default)]
struct Support {
    phone: String,
    mail: String,
}

/// The compiled templates and the town's details: everything a page needs besides the
/// request's own values.
pub struct Pages {
    env: Environment<'static>,
    town: String,
    /// `data:` URI of the logo.
    logo: Option<String>,
    support: Support,
    tz: jiff::tz::TimeZone,
    /// The words of each language, as the templates' `t` (French first): the proxy
    /// listener's pages' at the top, the portal's in `t.portal`, the admin pages' in
    /// `t.admin`.
    words: [Value; 2],
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages")
            .field("town", &self.town)
            .field("tz", &self.tz.iana_name())
            .finish_non_exhaustive()
    }
}

/// The set the pages render with: the shipped one until [`install`] puts another.
static CURRENT: LazyLock<ArcSwap<Pages>> = LazyLock::new(|| {
    let shipped = Pages::load(&PagesSettings::default())
        .unwrap_or_else(|e| panic!("the shipped templates are broken (tested): {e}"));
    ArcSwap::from_pointee(shipped)
});

/// The template set in use.
pub fn current() -> Arc<Pages> {
    CURRENT.load_full()
}

/// Puts `pages` in use for every page rendered from now on.
pub fn install(pages: Pages) {
    CURRENT.store(Arc::new(pages));
}

/// Loads the set again with `settings` (the override folder may have changed) and puts
/// it in use; on error the previous set stays and the error is returned.
pub fn reload(settings: &PagesSettings) -> Result<(), LoadError> {
    install(Pages::load(settings)?);
    Ok(())
}

impl Pages {
    /// Reads, compiles and tries every template; reads the logo; finds the time zone.
    pub fn load(s: &PagesSettings) -> Result<Pages, LoadError> {
        let tz = crate::settings::time_zone(&s.time_zone).map_err(|message| LoadError {
            file: PathBuf::from("time_zone"),
            line: None,
            col: None,
            message,
        })?;
        let logo = s.logo.as_deref().map(logo_uri).transpose()?;
        let mut sources: BTreeMap<String, (PathBuf, String)> = SHIPPED
            .iter()
            .map(|(name, src)| {
                let file = Path::new("<shipped>").join(name);
                ((*name).to_owned(), (file, (*src).to_owned()))
            })
            .collect();
        if let Some(dir) = &s.templates {
            read_overrides(dir, &mut sources)?;
        }
        let files = sources.clone();
        let located = |e: minijinja::Error| located(&files, e);

        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(format_value);
        for (name, (_, src)) in sources {
            env.add_template_owned(name, src).map_err(located)?;
        }
        let pages = Pages {
            env,
            town: s.town.clone(),
            logo,
            support: Support {
                phone: s.support_phone.clone(),
                mail: s.support_mail.clone(),
            },
            tz,
            words: [words(Lang::Fr), words(Lang::En)],
        };
        super::proxy::try_samples(&pages)
            .and_then(|()| super::portal::try_samples(&pages))
            .and_then(|()| super::admin::try_samples(&pages))
            .and_then(|()| super::traces::try_samples(&pages))
            .and_then(|()| super::dashboard::try_samples(&pages))
            .map_err(located)?;
        Ok(pages)
    }

    /// Renders `name` with the page's values `page` merged over the common ones
    /// (`lang`, `t`, `town`, `logo`, `support`).
    pub(super) fn render(
        &self,
        name: &str,
        lang: Lang,
        page: Value,
    ) -> Result<String, minijinja::Error> {
        let phone_uri: String = self
            .support
            .phone
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect();
        let common = minijinja::context! {
            lang => lang.code(),
            t => &self.words[usize::from(lang == Lang::En)],
            town => &self.town,
            logo => &self.logo,
            support => minijinja::context! {
                phone => &self.support.phone,
                phone_uri => phone_uri,
                mail => &self.support.mail,
            },
        };
        let tmpl = self.env.get_template(name)?;
        let mut out = tmpl.render(minijinja::context! { ..page, ..common })?;
        out.push('\n');
        Ok(out)
    }

    /// The town's time zone.
    pub(super) fn tz(&self) -> &jiff::tz::TimeZone {
        &self.tz
    }

    /// A time for people in the town's zone, and its machine-readable form:
    /// "23/11/2026 15:05 CET" (fr) or "2026-11-23 15:05 CET" (en), "2026-11-23T15:05:09+01:00".
    pub fn time(&self, unix_seconds: i64, lang: Lang) -> (String, String) {
        let ts = jiff::Timestamp::from_second(unix_seconds).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let zdt = ts.to_zoned(self.tz.clone());
        let shown = match lang {
            Lang::Fr => zdt.strftime("%d/%m/%Y %H:%M %Z"),
            Lang::En => zdt.strftime("%Y-%m-%d %H:%M %Z"),
        };
        (
            shown.to_string(),
            zdt.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        )
    }
}

/// The templates' `t` in `lang`.
fn words(lang: Lang) -> Value {
    minijinja::context! {
        portal => safe_words(super::portal::words(lang)),
        admin => safe_words(super::admin::words(lang)),
        ..super::proxy::words_value(lang)
    }
}

/// A table of words as a map of safe strings: they are HTML, written in this crate.
pub(super) fn safe_words(words: &impl serde::Serialize) -> Value {
    let json = serde_json::to_value(words).unwrap_or_default();
    let map: BTreeMap<String, Value> = json
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| {
            let text = v.as_str().unwrap_or_default().to_owned();
            (k.clone(), Value::from_safe_string(text))
        })
        .collect();
    Value::from(map)
}

/// Prints a value: strings through [`super::html_escape`] in `.html` templates (unless
/// marked safe), nothing for `none`, the rest as minijinja does.
fn format_value(
    out: &mut minijinja::Output,
    state: &minijinja::State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if value.is_none() {
        return Ok(());
    }
    if let (AutoEscape::Html, false, Some(s)) =
        (state.auto_escape(), value.is_safe(), value.as_str())
    {
        return out
            .write_str(&super::html_escape(s))
            .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()));
    }
    minijinja::escape_formatter(out, state, value)
}

/// The `.html` and `.css` files of the override folder over the shipped ones.
fn read_overrides(
    dir: &Path,
    sources: &mut BTreeMap<String, (PathBuf, String)>,
) -> Result<(), LoadError> {
    let err = |file: &Path, message: String| LoadError {
        file: file.to_path_buf(),
        line: None,
        col: None,
        message,
    };
    let entries = std::fs::read_dir(dir)
        .map_err(|e| err(dir, format!("cannot read the templates folder: {e}")))?;
    for entry in entries {
        let path = entry
            .map_err(|e| err(dir, format!("cannot read the templates folder: {e}")))?
            .path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !(name.ends_with(".html") || name.ends_with(".css")) || !path.is_file() {
            continue;
        }
        let src = std::fs::read_to_string(&path)
            .map_err(|e| err(&path, format!("cannot read the template: {e}")))?;
        sources.insert(name.to_owned(), (path.clone(), src));
    }
    Ok(())
}

/// A minijinja error at its file, line and column: the innermost place, so that an
/// error in an included template names that template, not the one including it.
fn located(sources: &BTreeMap<String, (PathBuf, String)>, outer: minijinja::Error) -> LoadError {
    let mut e = &outer;
    let mut cause = std::error::Error::source(&outer);
    while let Some(c) = cause {
        if let Some(inner) = c.downcast_ref::<minijinja::Error>()
            && inner.line().is_some()
        {
            e = inner;
        }
        cause = c.source();
    }
    let source = e.name().and_then(|n| sources.get(n));
    let file = source
        .map(|(file, _)| file.clone())
        .or_else(|| e.name().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("<templates>"));
    let col = match (source, e.range()) {
        (Some((_, src)), Some(r)) => src.get(..r.start).map(|before| {
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            before[line_start..].chars().count() + 1
        }),
        _ => None,
    };
    let mut message = e.kind().to_string();
    if let Some(d) = e.detail() {
        message = format!("{message}: {d}");
    }
    LoadError {
        file,
        line: e.line(),
        col,
        message,
    }
}

/// The logo as a `data:` URI, so that a page needs nothing but itself.
fn logo_uri(path: &Path) -> Result<String, LoadError> {
    use base64::Engine as _;
    let err = |message: String| LoadError {
        file: path.to_path_buf(),
        line: None,
        col: None,
        message,
    };
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let mime = match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("svg") => "image/svg+xml",
        _ => {
            return Err(err(
                "the logo must be a .png, .jpg, .gif, .webp or .svg file".into(),
            ));
        }
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read the logo: {e}")))?;
    if meta.len() > LOGO_MAX_BYTES {
        return Err(err(format!(
            "the logo is {} bytes, over the limit of {LOGO_MAX_BYTES} (it is inlined in every page)",
            meta.len()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read the logo: {e}")))?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    Ok(format!("data:{mime};base64,{b64}"))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::pages::{BlockPage, UnblockOffer};

    fn with_folder(files: &[(&str, &str)]) -> (tempfile::TempDir, PagesSettings) {
        let dir = tempfile::tempdir().unwrap();
        for (name, src) in files {
            std::fs::write(dir.path().join(name), src).unwrap();
        }
        let s = PagesSettings {
            templates: Some(dir.path().to_path_buf()),
            ..PagesSettings::default()
        };
        (dir, s)
    }

    fn block<'a>(host: &'a str, url: &'a str) -> BlockPage<'a> {
        BlockPage {
            lang: Lang::Fr,
            url,
            host,
            categories: &[],
            reason: "",
            reason_code: "block-rule",
            rule: None,
            time: UNIX_EPOCH + Duration::from_secs(1_795_442_709),
            who: "10.0.0.1",
            unblock: UnblockOffer::NotOverridable,
            found: None,
        }
    }

    #[test]
    fn the_shipped_set_loads_and_renders_every_page() {
        let pages = Pages::load(&PagesSettings::default()).unwrap();
        let html = pages.block_page(&block("site.example", "http://site.example/"));
        assert!(
            html.starts_with("<!DOCTYPE html>\n<html lang=\"fr\">"),
            "{html}"
        );
        assert!(html.ends_with("</html>\n"), "{html}");
        assert!(!html.contains("<header"), "no town set, no header: {html}");
        assert!(
            !html.contains("<footer"),
            "no contact set, no footer: {html}"
        );
    }

    #[test]
    fn an_override_replaces_its_template_and_the_others_stay_shipped() {
        let (_dir, s) = with_folder(&[(
            "block.html",
            "{% extends \"layout.html\" %}{% block content %}<p id=\"mine\">{{ town }} {{ host }}</p>{% endblock %}",
        )]);
        let s = PagesSettings {
            town: "Ville d'Arras".into(),
            ..s
        };
        let pages = Pages::load(&s).unwrap();
        let html = pages.block_page(&block("site.example", "http://site.example/"));
        assert!(
            html.contains("<p id=\"mine\">Ville d&#39;Arras site.example</p>"),
            "{html}"
        );
        assert!(!html.contains("Accès bloqué</h1>"), "replaced: {html}");
        // The shipped layout around it, and the shipped help page untouched.
        assert!(html.contains("<span>Ville d&#39;Arras</span>"), "{html}");
        let help = pages.help_page(Lang::Fr, "p:3128", "", "");
        assert!(
            help.contains("Proxy de filtrage de la collectivité"),
            "{help}"
        );
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let (dir, s) = with_folder(&[(
            "error.html",
            "{% extends \"layout.html\" %}\n{% block content %}\n\n<p>{{ title }</p>\n{% endblock %}\n",
        )]);
        let e = Pages::load(&s).unwrap_err();
        assert_eq!(e.file, dir.path().join("error.html"));
        assert_eq!(e.line, Some(4));
        let text = e.to_string();
        let at = format!("{}:4:", dir.path().join("error.html").display());
        assert!(text.starts_with(&at), "{text}");
        assert!(text.contains(": syntax error"), "{text}");
    }

    #[test]
    fn an_unknown_template_or_variable_fails_at_load_not_on_a_request() {
        let (dir, s) = with_folder(&[(
            "help.html",
            "{% extends \"layout.html\" %}\n{% block content %}\n{% include \"absent.html\" %}\n{% endblock %}\n",
        )]);
        let e = Pages::load(&s).unwrap_err();
        assert_eq!((e.file, e.line), (dir.path().join("help.html"), Some(3)));
        assert!(e.message.contains("absent.html"), "{}", e.message);

        let (dir, s) = with_folder(&[("footer.html", "<footer>\n{{ t.no_such_word }}</footer>\n")]);
        let e = Pages::load(&s).unwrap_err();
        assert_eq!((e.file, e.line), (dir.path().join("footer.html"), Some(2)));
    }

    #[test]
    fn an_override_escapes_hostile_values_automatically() {
        let (_dir, s) = with_folder(&[(
            "block.html",
            "{% extends \"layout.html\" %}{% block content %}<a href=\"{{ url }}\">{{ host }}</a>{% endblock %}",
        )]);
        let pages = Pages::load(&s).unwrap();
        let hostile = "\"><script>alert('x')</script>";
        let html = pages.block_page(&block(hostile, &format!("http://e.example/{hostile}")));
        assert!(!html.contains("<script"), "{html}");
        assert!(
            html.contains("<a href=\"http://e.example/&quot;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;\">"),
            "{html}"
        );
    }

    #[test]
    fn town_logo_support_and_time_zone_show_on_the_pages() {
        let dir = tempfile::tempdir().unwrap();
        let logo = dir.path().join("logo.png");
        std::fs::write(&logo, b"\x89PNG\r\n\x1a\n").unwrap();
        let s = PagesSettings {
            town: "Ville d'Arras".into(),
            logo: Some(logo),
            support_phone: "03 21 00 00 00".into(),
            support_mail: "support@arras.example".into(),
            time_zone: "Indian/Reunion".into(),
            ..PagesSettings::default()
        };
        let pages = Pages::load(&s).unwrap();
        let html = pages.done_page(3, false, "/mes-demandes/3", Lang::En);
        assert!(
            html.contains("<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"\">"),
            "{html}"
        );
        assert!(
            html.contains("<a href=\"tel:0321000000\">03 21 00 00 00</a>"),
            "{html}"
        );
        assert!(html.contains("IT support:"), "{html}");
        assert_eq!(
            pages.time(1_795_442_709, Lang::En).1,
            "2026-11-23T18:05:09+04:00"
        );
    }

    #[test]
    fn a_bad_logo_or_time_zone_is_refused() {
        let s = PagesSettings {
            time_zone: "Europe/Arras".into(),
            ..PagesSettings::default()
        };
        assert!(
            Pages::load(&s)
                .unwrap_err()
                .message
                .contains("unknown time zone")
        );
        let s = PagesSettings {
            logo: Some("/nonexistent/logo.bmp".into()),
            ..PagesSettings::default()
        };
        let e = Pages::load(&s).unwrap_err();
        assert_eq!(e.file, Path::new("/nonexistent/logo.bmp"));
    }

    #[test]
    fn a_broken_part_of_the_portal_names_its_own_file_not_the_page_including_it() {
        // portal-status.html is included by portal-request.html and portal-list.html.
        let (dir, s) = with_folder(&[(
            "portal-status.html",
            "{% if request.status == \"pending\" %}\n{{ t.portal.no_such_word }}\n{% endif %}\n",
        )]);
        let e = Pages::load(&s).unwrap_err();
        assert_eq!(
            (e.file, e.line),
            (dir.path().join("portal-status.html"), Some(2))
        );
        assert!(e.message.contains("undefined value"), "{}", e.message);
    }
}
