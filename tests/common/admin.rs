//! A browser-like client of the admin pages, and the account it logs in with.
#![allow(dead_code)]

use super::proxy::Proxy;

/// Adds an administrator to the proxy's DATA/admins.
pub fn add_admin(p: &Proxy, name: &str, password: &str) {
    use std::io::Write as _;
    let mut child = super::bin()
        .args(["admins", "add", name, "--password-stdin", "--file"])
        .arg(p.path("data/admins"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success());
}

/// A browser-like client of the admin pages: keeps its cookies by hand, follows nothing.
pub struct AdminClient {
    http: reqwest::blocking::Client,
    base: String,
    cookies: Vec<(String, String)>,
}

pub struct Answer {
    pub status: u16,
    pub location: String,
    pub set_cookies: Vec<String>,
    pub body: String,
}

impl AdminClient {
    pub fn new(p: &Proxy) -> AdminClient {
        AdminClient {
            http: reqwest::blocking::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: format!("http://{}", p.admin),
            cookies: Vec::new(),
        }
    }

    /// The same browser (cookies and all) going to `p`'s admin pages: another proxy of a
    /// cluster behind one name.
    pub fn to(&mut self, p: &Proxy) {
        self.base = format!("http://{}", p.admin);
    }

    fn keep(&mut self, r: reqwest::blocking::Response) -> Answer {
        let set_cookies: Vec<String> = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        for c in &set_cookies {
            let (kv, _) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            self.cookies.retain(|(n, _)| n != k);
            if !v.is_empty() {
                self.cookies.push((k.to_string(), v.to_string()));
            }
        }
        Answer {
            status: r.status().as_u16(),
            location: r
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            set_cookies,
            body: r.text().unwrap(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn get(&mut self, path: &str) -> Answer {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("accept-language", "fr")
            .send()
            .unwrap();
        self.keep(r)
    }

    pub fn post(&mut self, path: &str, form: &[(&str, &str)], origin: Option<&str>) -> Answer {
        let mut b = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(form)
                    .finish(),
            );
        if let Some(o) = origin {
            b = b.header("origin", o);
        }
        let r = b.send().unwrap();
        self.keep(r)
    }

    /// Opens the login form, as a browser would before posting it: keeps its cookie and
    /// returns the CSRF value of its form.
    pub fn open_login(&mut self) -> String {
        let form = self.get("/connexion");
        assert_eq!(form.status, 200, "{}", form.body);
        csrf_of(&form.body)
    }

    /// Posts the login form opened by [`AdminClient::open_login`].
    pub fn post_login(&mut self, csrf: &str, user: &str, password: &str) -> Answer {
        self.post(
            "/connexion",
            &[("csrf", csrf), ("user", user), ("password", password)],
            None,
        )
    }

    /// Logs in; returns the answer of the POST.
    pub fn login(&mut self, user: &str, password: &str) -> Answer {
        let csrf = self.open_login();
        self.post_login(&csrf, user, password)
    }
}

/// The value of the first `csrf` field of a page.
pub fn csrf_of(page: &str) -> String {
    let i = page
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("no csrf field: {page}"));
    let rest = &page[i + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}
