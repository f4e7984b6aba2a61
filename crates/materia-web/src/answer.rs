//! A rendered answer (body, type, and its gzip form once asked for), and the per-generation
//! cache of them: a page or an API answer is rendered once per generation and URL, then
//! served from memory. The cache is bounded in bytes and entries and evicts the least
//! recently used answer first.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use bytes::Bytes;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};

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
    pub fn new(content_type: &'static str, body: impl Into<Vec<u8>>) -> Answer {
        let mut body = body.into();
        // Exactly its length: a rendered String has spare capacity that the cache's byte
        // bound would not see.
        body.shrink_to_fit();
        Answer {
            content_type,
            body: Bytes::from(body),
            gzip: OnceLock::new(),
        }
    }

    /// An answer whose gzip form is made now (assets, at start-up).
    pub fn precompressed(content_type: &'static str, body: impl Into<Bytes>) -> Answer {
        let answer = Answer {
            content_type,
            body: body.into(),
            gzip: OnceLock::new(),
        };
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
                let packed = gzip(&self.body)?;
                (packed.len() < self.body.len()).then(|| Bytes::from(packed))
            })
            .as_ref()
    }
}

/// One cached answer: what it costs in memory and when it was last used.
struct Entry {
    answer: Arc<Answer>,
    cost: usize,
    used: u64,
}

/// `body` as a gzip member, made with this thread's deflate state. One state per thread, reset
/// for each answer: a new one per answer (about 300 KB of tables) freed while the answer stays
/// cached fragmented the heap by about that much per cached answer.
fn gzip(body: &[u8]) -> Option<Vec<u8>> {
    thread_local! {
        static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(6), false));
    }
    DEFLATE.with(|deflate| {
        let mut deflate = deflate.borrow_mut();
        deflate.reset();
        // Header: magic, deflate, no flags, no time, no extra flags, unknown OS.
        let mut out = Vec::with_capacity(body.len() / 3 + 64);
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
        loop {
            let consumed = usize::try_from(deflate.total_in()).ok()?;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity() / 2 + 64);
            }
            let status = deflate
                .compress_vec(&body[consumed..], &mut out, FlushCompress::Finish)
                .ok()?;
            if status == Status::StreamEnd {
                break;
            }
        }
        let mut crc = Crc::new();
        crc.update(body);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&u32::try_from(body.len() % (1 << 32)).ok()?.to_le_bytes());
        out.shrink_to_fit();
        Some(out)
    })
}

#[derive(Default)]
struct Entries {
    map: HashMap<String, Entry>,
    bytes: usize,
    /// Bumped on every use: the entry with the smallest `used` is the least recently used.
    clock: u64,
}

/// The answers of one generation, least recently used evicted first, bounded in entries
/// ([`limits::ANSWER_CACHE_ENTRIES_MAX`]) and bytes ([`limits::ANSWER_CACHE_BYTES_MAX`],
/// bodies and their gzip forms). Eviction scans the entries for the oldest: a few thousand
/// comparisons, paid only when a newly rendered answer goes in.
#[derive(Default)]
pub struct AnswerCache {
    entries: Mutex<Entries>,
}

impl AnswerCache {
    pub fn get(&self, key: &str) -> Option<Arc<Answer>> {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.clock += 1;
        let now = entries.clock;
        entries.map.get_mut(key).map(|e| {
            e.used = now;
            e.answer.clone()
        })
    }

    /// Keeps `answer` under `key` (an answer already there wins) and returns what is kept. An
    /// answer larger than the whole bound is returned without being kept.
    pub fn insert(&self, key: &str, answer: Answer) -> Arc<Answer> {
        let cost = key.len()
            + answer.body.len()
            + answer
                .gzip
                .get()
                .and_then(Option::as_ref)
                .map_or(0, Bytes::len)
            + ENTRY_OVERHEAD_BYTES;
        let answer = Arc::new(answer);
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.clock += 1;
        let now = entries.clock;
        if let Some(e) = entries.map.get_mut(key) {
            e.used = now;
            return e.answer.clone();
        }
        if cost > limits::ANSWER_CACHE_BYTES_MAX {
            return answer;
        }
        while entries.map.len() >= limits::ANSWER_CACHE_ENTRIES_MAX
            || entries.bytes + cost > limits::ANSWER_CACHE_BYTES_MAX
        {
            let Some(oldest) = entries
                .map
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(gone) = entries.map.remove(&oldest) {
                entries.bytes -= gone.cost;
            }
        }
        entries.bytes += cost;
        entries.map.insert(
            key.to_owned(),
            Entry {
                answer: answer.clone(),
                cost,
                used: now,
            },
        );
        answer
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .bytes
    }
}

/// The map's own memory per entry (key and entry headers, hash table slot), roughly.
const ENTRY_OVERHEAD_BYTES: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    fn get_or_render(
        cache: &AnswerCache,
        key: &str,
        render: impl FnOnce() -> Answer,
    ) -> Arc<Answer> {
        match cache.get(key) {
            Some(found) => found,
            None => cache.insert(key, render()),
        }
    }

    #[test]
    fn answers_are_rendered_once_and_gzip_round_trips() {
        let cache = AnswerCache::default();
        let mut renders = 0;
        let body = "x".repeat(10_000);
        for _ in 0..3 {
            let a = get_or_render(&cache, "k", || {
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
    fn the_cache_evicts_the_least_recently_used_at_its_byte_bound() {
        let cache = AnswerCache::default();
        let big = "y".repeat(limits::ANSWER_CACHE_BYTES_MAX / 4);
        for i in 0..3 {
            cache.insert(&format!("k{i}"), Answer::new(JSON, big.clone()));
        }
        // k0 used again: k1 is now the least recently used and goes first.
        assert!(cache.get("k0").is_some());
        cache.insert("k3", Answer::new(JSON, big.clone()));
        cache.insert("k4", Answer::new(JSON, big));
        assert!(
            cache.get("k1").is_none(),
            "the least recently used is evicted"
        );
        assert!(cache.get("k0").is_some(), "a recently used answer stays");
        assert!(cache.get("k4").is_some(), "the newest answer is kept");
        assert!(cache.bytes() <= limits::ANSWER_CACHE_BYTES_MAX);
        // Larger than the whole bound: answered, never kept.
        let huge = cache.insert(
            "huge",
            Answer::new(JSON, "z".repeat(limits::ANSWER_CACHE_BYTES_MAX + 1)),
        );
        assert_eq!(huge.body.len(), limits::ANSWER_CACHE_BYTES_MAX + 1);
        assert!(cache.get("huge").is_none());
    }

    #[test]
    fn the_cache_evicts_at_its_entry_bound() {
        let cache = AnswerCache::default();
        for i in 0..limits::ANSWER_CACHE_ENTRIES_MAX + 10 {
            cache.insert(&format!("k{i}"), Answer::new(JSON, "small"));
        }
        assert_eq!(cache.len(), limits::ANSWER_CACHE_ENTRIES_MAX);
        assert!(cache.get("k0").is_none());
        assert!(
            cache
                .get(&format!("k{}", limits::ANSWER_CACHE_ENTRIES_MAX + 9))
                .is_some()
        );
    }
}
