//! The page shell: the head (embedded stylesheet and script), the top bar with the
//! signed-in user and sign-out, an app's tabs, notices, and small shared pieces.

use maud::{html, Markup, DOCTYPE};

use super::seg;
use super::session::Session;

/// A message shown at the top of a page: what a form did, or the API's error.
#[derive(Debug, Clone, Default)]
pub struct Notice {
    pub notice: Option<String>,
    pub error: Option<String>,
}

impl Notice {
    pub fn error(m: &str) -> Notice {
        Notice {
            notice: None,
            error: Some(m.to_string()),
        }
    }

    pub fn from_query(notice: Option<&str>, error: Option<&str>) -> Notice {
        Notice {
            notice: notice.map(str::to_string),
            error: error.map(str::to_string),
        }
    }

    fn render(&self) -> Markup {
        html! {
            @if let Some(n) = &self.notice { p.notice role="status" { (n) } }
            @if let Some(e) = &self.error { p.error role="alert" { (e) } }
        }
    }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Haven" }
            link rel="stylesheet" href="/dashboard/assets/dashboard.css";
            script src="/dashboard/assets/dashboard.js" defer {}
        }
    }
}

/// A page without a session (sign-in, errors).
pub fn bare_page(title: &str, notice: &Notice, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/dashboard" { "⬢ Haven" } }
                main { (notice.render()) (body) }
            }
        }
    }
}

/// A signed-in page.
pub fn page(session: &Session, title: &str, notice: &Notice, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top {
                    a.brand href="/dashboard" { "⬢ Haven" }
                    nav aria-label="Main" {
                        a href="/dashboard" { "Apps" }
                        a href="/dashboard/cluster" { "Cluster" }
                    }
                    form.inline method="post" action="/dashboard/logout" {
                        (csrf(session))
                        span.who { (session.email) }
                        button type="submit" { "Sign out" }
                    }
                }
                main { (notice.render()) (body) }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf()); }
}

/// The tabs of an app's pages, `current` marked.
pub fn app_tabs(app: &str, current: &str) -> Markup {
    let tabs = [
        ("Overview", ""),
        ("Resources", "/resources"),
        ("Deploy", "/deploy"),
        ("Activity", "/activity"),
        ("Logs", "/logs"),
        ("Metrics", "/metrics"),
        ("Access", "/access"),
        ("Settings", "/settings"),
    ];
    html! {
        h1 { "⬢ " (app) }
        nav.tabs aria-label="App" {
            @for (name, path) in tabs {
                @if name == current {
                    a aria-current="page" href={ "/dashboard/apps/" (seg(app)) (path) } { (name) }
                } @else {
                    a href={ "/dashboard/apps/" (seg(app)) (path) } { (name) }
                }
            }
        }
    }
}

/// A time as the API gives it (RFC 3339), shortened for reading.
pub fn when(t: &serde_json::Value) -> String {
    t.as_str()
        .map(|s| s.replace('T', " ").trim_end_matches('Z').to_string() + " UTC")
        .unwrap_or_default()
}

/// A bar chart as inline SVG: one bar per `(label, value)`.
pub fn bars(title: &str, data: &[(String, f64)], unit: &str) -> Markup {
    let max = data
        .iter()
        .map(|(_, v)| *v)
        .fold(0.0_f64, f64::max)
        .max(1.0);
    let w = 60 * data.len().max(1);
    html! {
        figure {
            figcaption { (title) }
            svg role="img" aria-label=(title) width=(w) height="150" viewBox={ "0 0 " (w) " 150" } {
                @for (i, (label, v)) in data.iter().enumerate() {
                    @let h = (v / max * 100.0).round();
                    rect x=(i * 60 + 10) y=(120.0 - h) width="40" height=(h) class="bar" {}
                    text x=(i * 60 + 30) y="135" text-anchor="middle" { (label) }
                    text x=(i * 60 + 30) y=(115.0 - h) text-anchor="middle" { (format!("{v:.0}{unit}")) }
                }
            }
        }
    }
}
