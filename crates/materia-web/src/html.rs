//! HTML building blocks: escaping (every text from the data or the request goes through
//! [`esc`]), value cells, and the page layout shared by every page.

use std::fmt::Write as _;

use crate::assets::Assets;
use crate::format::{grouped, percent, plain_number, value};

/// Escapes text for HTML element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes one path segment or query value for a URL inside an attribute.
pub fn url_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// JSON for a `<script type="application/json">` block: `</` cannot end the element early.
pub fn script_json(json: &str) -> String {
    json.replace("</", "<\\/").replace("<!--", "<\\!--")
}

/// A table cell holding a value: the exact value in `data-value`, a readable one inside.
pub fn cell(v: f64) -> String {
    let shown = value(v);
    let class = if shown.is_some() { "num" } else { "num null" };
    format!(
        "<td class=\"{class}\" data-value=\"{}\">{}</td>",
        plain_number(v),
        grouped(shown)
    )
}

/// A cell for a ratio (stocks-to-use), shown as a percentage.
pub fn ratio_cell(v: f64) -> String {
    let shown = value(v);
    let class = if shown.is_some() { "num" } else { "num null" };
    format!(
        "<td class=\"{class}\" data-value=\"{}\">{}</td>",
        plain_number(v),
        percent(shown)
    )
}

/// Which navigation entry is the current page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Overview,
    Commodity,
    Revisions,
    Status,
    None,
}

/// A whole page: head, navigation, `body`, and a footer saying which generation it shows.
pub fn page(
    assets: &Assets,
    title: &str,
    nav: Nav,
    exported_at: Option<&str>,
    body: &str,
) -> String {
    let mut out = String::with_capacity(body.len() + 2048);
    let item = |out: &mut String, href: &str, label: &str, this: Nav| {
        let current = if nav == this {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(out, "<a href=\"{href}\"{current}>{label}</a>");
    };
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n\
         <title>{} · Materia</title>\n\
         <link rel=\"icon\" href=\"/static/{}\" type=\"image/svg+xml\">\n\
         <link rel=\"stylesheet\" href=\"/static/{}\">\n\
         <script src=\"/static/{}\" defer></script>\n\
         <script src=\"/static/{}\" defer></script>\n\
         </head>\n<body>\n<header class=\"top\"><a class=\"brand\" href=\"/\">Materia</a><nav>",
        esc(title),
        assets.icon.name,
        assets.app_css.name,
        assets.echarts.name,
        assets.app_js.name,
    );
    item(&mut out, "/", "Coffee", Nav::Overview);
    item(&mut out, "/revisions", "Revisions", Nav::Revisions);
    item(&mut out, "/status", "Status", Nav::Status);
    out.push_str("</nav></header>\n<main>\n");
    out.push_str(body);
    out.push_str("</main>\n<footer>");
    match exported_at {
        Some(at) => {
            let _ = write!(
                out,
                "USDA FAS PSD data, serving file exported at <time datetime=\"{0}\">{0}</time>. ",
                esc(at)
            );
        }
        None => out.push_str("USDA FAS PSD data. "),
    }
    let _ = write!(
        out,
        "Data as JSON: <a href=\"/api/v1/openapi.json\">API</a>. Charts: \
         <a href=\"/static/{}\">Apache ECharts {}</a>.</footer>\n</body>\n</html>\n",
        assets.echarts_license.name,
        crate::assets::ECHARTS_VERSION
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            esc("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(url_part("NA"), "NA");
        assert_eq!(url_part("a/b c"), "a%2Fb%20c");
        assert_eq!(script_json(r#"{"x":"</script>"}"#), r#"{"x":"<\/script>"}"#);
    }
}
