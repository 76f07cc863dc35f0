//! Scoped worker threads for the fallible parallel loops of index building and benchmarking.

use crate::error::{Result, RetrievalError};

/// Runs `work(t)` for `t` in `0..threads` (at least one), each on its own scoped thread, and waits
/// for all of them. Returns the first error in thread order; a panicking worker becomes
/// `RetrievalError::Usearch("{what} thread panicked")` (`what`: "an insert", "a search") instead
/// of unwinding into the caller.
pub(crate) fn run<F>(threads: usize, what: &str, work: F) -> Result<()>
where
    F: Fn(usize) -> Result<()> + Sync,
{
    let work = &work;
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads.max(1)).map(|t| s.spawn(move || work(t))).collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(RetrievalError::Usearch(format!("{what} thread panicked"))))
            })
            .collect()
    });
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_index_runs_once() {
        let seen: Vec<AtomicUsize> = (0..5).map(|_| AtomicUsize::new(0)).collect();
        run(5, "test", |t| {
            seen[t].fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert!(seen.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        // Zero threads still runs one worker.
        let n = AtomicUsize::new(0);
        run(0, "test", |_| {
            n.fetch_add(1, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
        assert_eq!(n.into_inner(), 1);
    }

    #[test]
    fn the_first_error_in_thread_order_wins_and_all_threads_finish() {
        let done = AtomicUsize::new(0);
        let err = run(4, "test", |t| {
            done.fetch_add(1, Ordering::Relaxed);
            if t >= 2 {
                Err(RetrievalError::Usearch(format!("worker {t}")))
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(done.into_inner(), 4);
        assert!(err.to_string().contains("worker 2"), "{err}");
    }

    #[test]
    fn a_panic_becomes_an_error_naming_the_work() {
        let err = run(3, "an insert", |t| {
            if t == 1 {
                panic!("boom");
            }
            Ok(())
        })
        .unwrap_err();
        assert!(err.to_string().contains("an insert thread panicked"), "{err}");
    }
}
