//! The render pool: a fixed set of threads ([`limits::RENDERS_MAX`]) that render and gzip
//! answers, so the async workers never do CPU-heavy work and `/healthz` and cached answers are
//! never queued behind a render. Jobs wait in a queue; a job whose request has gone (timed out,
//! disconnected) is skipped when its turn comes, and a running one finishes, still counted by
//! the fixed thread count. Dedicated threads, not tokio's shared blocking pool, also keep the
//! allocator's per-thread arenas to the few threads that render.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, PoisonError};

type Job = Box<dyn FnOnce() + Send>;

pub struct RenderPool {
    jobs: Mutex<Sender<Job>>,
}

impl RenderPool {
    pub fn new(threads: usize) -> RenderPool {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("render-{n}"))
                .spawn(move || work(&queue));
            if let Err(e) = spawned {
                log::warn!("cannot start render thread {n}: {e}");
            }
        }
        RenderPool {
            jobs: Mutex::new(jobs),
        }
    }

    /// Runs `f` on the pool; `None` when it panicked or the pool is gone.
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            if done.is_closed() {
                return;
            }
            let _ = done.send(f());
        });
        self.jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .send(job)
            .ok()?;
        wait.await.ok()
    }
}

fn work(queue: &Mutex<Receiver<Job>>) {
    loop {
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else { return };
        // A panicking render fails its own request (its sender is dropped), not the thread.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_the_pool_and_a_panic_fails_only_its_own() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let pool = RenderPool::new(2);
        rt.block_on(async {
            let name = pool
                .run(|| std::thread::current().name().unwrap_or("").to_owned())
                .await;
            assert!(name.unwrap().starts_with("render-"));
            assert_eq!(pool.run(|| -> u32 { panic!("boom") }).await, None);
            assert_eq!(pool.run(|| 2 + 2).await, Some(4));
        });
    }
}
