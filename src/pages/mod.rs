//! Every page people read, on every listener: what the proxy shows in place of a site
//! (block, help and error pages), the portal's unblock pages, and the administrators'
//! pages. One place, so that the look, the languages and the escaping are one, and so
//! that a template engine can take over here alone.
//!
//! What this module owns and why:
//! - **Language.** French by default, English only when the browser prefers it
//!   ([`negotiate_lang`]); every visible word exists in both.
//! - **Safety.** Every reflected value (URL, host, reason, user name, links…) goes through
//!   [`html_escape`]; nothing is ever placed in a script, a style or an unquoted attribute.
//! - **Self-contained.** One HTML document with inline CSS and no external resource
//!   (the town's logo is inlined as a `data:` URI), and no script.
//! - **Templates.** Every page comes from minijinja templates ([`templates`]): shipped in
//!   `templates/`, embedded in the binary, each replaceable by a file of the folder
//!   `pages.templates` names. The modules here only give them plain values and the words
//!   of each language; the templates escape what they print. They are compiled and tried
//!   at start; a broken one stops the start with its file and line.
//!
//! Pages are built from values the handlers give; no page decides anything.

pub mod admin;
pub mod dashboard;
mod frame;
mod lang;
pub mod portal;
pub mod proxy;
pub mod templates;
pub mod traces;

pub use frame::{date, html_escape};
pub use lang::{lang_of, negotiate_lang, wants_html};
pub use proxy::{
    BlockPage, URL_SHOWN_MAX, UnblockOffer, render_block_page, render_error_page, render_help_page,
};
pub use templates::{LoadError, Pages};
