//! A rendered answer (body, type, and its gzip form once asked for), and the per-generation
//! cache of them: a page or an API answer is rendered once per generation and URL, then
//! served from memory. The cache is bounded in bytes and entries; past the bound answers are
//! rendered each time instead.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

use crate::limits;

pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv; charset=utf-8";
pub const HTML: &str = "text/html; charset=utf-8";

pub struct Answer {
    pub content_type: &'static str,
    pub body: Bytes,
    gzip: OnceLock<Option<Bytes>>,
}

impl Answer {
    pub fn new(content_type: &'static str, body: impl Into<Bytes>) -> Answer {
        Answer {
            content_type,
            body: body.into(),
            gzip: OnceLock::new(),
        }
    }

    /// An answer whose gzip form is made now (assets, at start-up).
    pub fn precompressed(content_type: &'static str, body: impl Into<Bytes>) -> Answer {
        let answer = Answer::new(content_type, body);
        let _ = answer.gzip();
        answer
    }

    /// The body gzipped, made on first use; `None` when it is too small to be worth it or
    /// does not shrink.
    pub fn gzip(&self) -> Option<&Bytes> {
        self.gzip
            .get_or_init(|| {
                if self.body.len() < limits::COMPRESS_BYTES_MIN {
                    return None;
                }
                let mut encoder =
                    GzEncoder::new(Vec::with_capacity(self.body.len() / 3), Compression::new(6));
                encoder.write_all(&self.body).ok()?;
                let packed = encoder.finish().ok()?;
                (packed.len() < self.body.len()).then(|| Bytes::from(packed))
            })
            .as_ref()
    }
}

#[derive(Default)]
pub struct AnswerCache {
    answers: Mutex<HashMap<String, Arc<Answer>>>,
    bytes: AtomicUsize,
}

impl AnswerCache {
    /// The answer for `key`, rendered by `render` the first time (outside the lock: two
    /// concurrent first requests may both render; the first one stored wins).
    pub fn get_or_render(&self, key: &str, render: impl FnOnce() -> Answer) -> Arc<Answer> {
        if let Some(found) = self
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
        {
            return found.clone();
        }
        let answer = Arc::new(render());
        // The gzip form is counted too (about a third of the body for JSON and HTML).
        let cost = key.len() + answer.body.len() + answer.body.len() / 3;
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        if answers.len() < limits::ANSWER_CACHE_ENTRIES_MAX
            && self.bytes.load(Ordering::Relaxed) + cost <= limits::ANSWER_CACHE_BYTES_MAX
        {
            let stored = answers
                .entry(key.to_owned())
                .or_insert_with(|| answer.clone())
                .clone();
            if Arc::ptr_eq(&stored, &answer) {
                self.bytes.fetch_add(cost, Ordering::Relaxed);
            }
            return stored;
        }
        answer
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_rendered_once_and_gzip_round_trips() {
        let cache = AnswerCache::default();
        let mut renders = 0;
        let body = "x".repeat(10_000);
        for _ in 0..3 {
            let a = cache.get_or_render("k", || {
                renders += 1;
                Answer::new(JSON, body.clone())
            });
            assert_eq!(a.body.len(), 10_000);
            let packed = a.gzip().unwrap();
            let mut out = String::new();
            std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&packed[..]), &mut out)
                .unwrap();
            assert_eq!(out, body);
        }
        assert_eq!(renders, 1);
        assert_eq!(cache.len(), 1);
        assert!(Answer::new(JSON, "tiny").gzip().is_none());
    }

    #[test]
    fn the_cache_stops_growing_at_its_byte_bound() {
        let cache = AnswerCache::default();
        let big = "y".repeat(limits::ANSWER_CACHE_BYTES_MAX / 4);
        for i in 0..10 {
            cache.get_or_render(&format!("k{i}"), || Answer::new(JSON, big.clone()));
        }
        assert!(cache.len() < 4, "{} entries", cache.len());
        assert!(cache.bytes.load(Ordering::Relaxed) <= limits::ANSWER_CACHE_BYTES_MAX);
    }
}
