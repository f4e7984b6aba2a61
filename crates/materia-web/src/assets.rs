//! The files served under `/static/`, embedded in the binary at compile time: the pages' script,
//! style sheet and icon, and Apache ECharts (from the npm package pinned by
//! `third-party/echarts.lock`, found by `build.rs`). Names carry a digest of the content, so
//! they are cached for a year; a request for any other name is 404. Nothing is read from disk,
//! so no path can escape anywhere.

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

use crate::answer::Answer;

const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
const ICON_SVG: &str = include_str!("assets/icon.svg");
const ECHARTS_JS: &[u8] = include_bytes!(env!("MATERIA_ECHARTS_JS"));
const ECHARTS_LICENSE: &[u8] = include_bytes!(env!("MATERIA_ECHARTS_LICENSE"));
pub const ECHARTS_VERSION: &str = env!("MATERIA_ECHARTS_VERSION");
/// The OpenAPI 3 document of `/api/v1/`.
pub const OPENAPI: &str = include_str!("openapi.json");

pub struct Asset {
    pub name: String,
    pub answer: Answer,
}

/// The embedded files, each under its digest-bearing name.
pub struct Assets {
    pub app_js: Asset,
    pub app_css: Asset,
    pub icon: Asset,
    pub echarts: Asset,
    pub echarts_license: Asset,
    pub openapi: Answer,
}

fn digest_name(stem: &str, ext: &str, content: &[u8]) -> String {
    let d = Sha256::digest(content);
    let hex: String = d[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("{stem}-{hex}.{ext}")
}

impl Assets {
    /// Builds the table and gzips every file once.
    pub fn new() -> Assets {
        let asset = |name: String, content_type: &'static str, content: &'static [u8]| Asset {
            name,
            answer: Answer::precompressed(content_type, content),
        };
        Assets {
            app_js: asset(
                digest_name("app", "js", APP_JS.as_bytes()),
                "text/javascript; charset=utf-8",
                APP_JS.as_bytes(),
            ),
            app_css: asset(
                digest_name("app", "css", APP_CSS.as_bytes()),
                "text/css; charset=utf-8",
                APP_CSS.as_bytes(),
            ),
            icon: asset(
                digest_name("icon", "svg", ICON_SVG.as_bytes()),
                "image/svg+xml",
                ICON_SVG.as_bytes(),
            ),
            echarts: asset(
                digest_name(&format!("echarts-{ECHARTS_VERSION}"), "min.js", ECHARTS_JS),
                "text/javascript; charset=utf-8",
                ECHARTS_JS,
            ),
            echarts_license: asset(
                format!("echarts-{ECHARTS_VERSION}-LICENSE.txt"),
                "text/plain; charset=utf-8",
                ECHARTS_LICENSE,
            ),
            openapi: Answer::precompressed(crate::answer::JSON, OPENAPI.as_bytes()),
        }
    }

    /// The asset called `name` under `/static/`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Asset> {
        [
            &self.app_js,
            &self.app_css,
            &self.icon,
            &self.echarts,
            &self.echarts_license,
        ]
        .into_iter()
        .find(|a| a.name == name)
    }
}

/// What identifies this build's answers: the version and a digest of everything embedded, so a
/// release that renders differently never answers 304 to a page the last one sent.
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut h = Sha256::new();
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        for part in [
            APP_JS.as_bytes(),
            APP_CSS.as_bytes(),
            ICON_SVG.as_bytes(),
            ECHARTS_JS,
            OPENAPI.as_bytes(),
        ] {
            h.update(Sha256::digest(part));
        }
        // The executable itself: a rebuild with other page templates is another build.
        if let Ok(meta) = std::fs::metadata("/proc/self/exe") {
            h.update(meta.len().to_le_bytes());
            if let Ok(modified) = meta.modified()
                && let Ok(d) = modified.duration_since(std::time::UNIX_EPOCH)
            {
                h.update(d.as_nanos().to_le_bytes());
            }
        }
        let d = h.finalize();
        d[..8].iter().map(|b| format!("{b:02x}")).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_names_carry_their_digest_and_only_they_are_found() {
        let assets = Assets::new();
        assert!(assets.app_js.name.starts_with("app-"));
        assert!(assets.app_js.name.ends_with(".js"));
        assert!(assets.get(&assets.echarts.name).is_some());
        for bad in ["", "app.js", "../app.js", "..%2Fapp.js", "/etc/passwd"] {
            assert!(assets.get(bad).is_none(), "{bad}");
        }
        // The embedded ECharts is the locked file (fetch-npm.sh verified it before the build).
        let lock = include_str!("../../../third-party/echarts.lock");
        let want = lock
            .lines()
            .find_map(|l| l.strip_prefix("file=dist/echarts.common.min.js "))
            .unwrap();
        let got: String = Sha256::digest(ECHARTS_JS)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_openapi_document_is_json_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for route in [
            "/api/v1/commodities",
            "/api/v1/global-balance",
            "/api/v1/commodity-balance",
            "/api/v1/revisions",
            "/api/v1/releases",
            "/api/v1/release-changes",
            "/api/v1/openapi.json",
            "/healthz",
        ] {
            assert!(doc["paths"][route].is_object(), "{route}");
        }
    }
}
