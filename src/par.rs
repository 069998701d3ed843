//! `(items, f)` -> `f` of every item, in order, spread over the machine's cores.
//!
//! For the CPU-bound stages that run before any host is contacted (rendering every host,
//! parsing the rendered files for the checks): they are independent per host, and nothing
//! else runs while they do, so on N cores they take about 1/N of the time. Plain scoped
//! threads: no pool outlives the call, and no async runtime is involved.

use std::num::NonZeroUsize;

/// Below this many items per extra thread, a thread costs more than it saves.
const MIN_ITEMS_PER_THREAD: usize = 4;

/// `items.iter().map(f).collect()`, computed in contiguous chunks on up to one thread per
/// core. The result is in `items` order whatever finishes first; a panic in `f` propagates.
pub fn map<T, R, F>(items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let threads = cores.min(items.len() / MIN_ITEMS_PER_THREAD).max(1);
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let mut chunks = items.chunks(chunk);
        // The calling thread takes the first chunk itself.
        let first = chunks.next().unwrap_or_default();
        // A chunk whose thread cannot be started is done here instead.
        let parts: Vec<_> = chunks
            .map(|part| {
                std::thread::Builder::new()
                    .spawn_scoped(scope, move || part.iter().map(f).collect::<Vec<R>>())
                    .map_err(|_| part)
            })
            .collect();
        let mut out: Vec<R> = first.iter().map(f).collect();
        out.reserve(items.len() - out.len());
        for part in parts {
            match part {
                Ok(handle) => match handle.join() {
                    Ok(done) => out.extend(done),
                    Err(panic) => std::panic::resume_unwind(panic),
                },
                Err(part) => out.extend(part.iter().map(f)),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn keeps_order() {
        let items: Vec<usize> = (0..1000).collect();
        assert_eq!(
            super::map(&items, |i| i * 2),
            (0..1000).map(|i| i * 2).collect::<Vec<_>>()
        );
        assert_eq!(super::map(&items[..3], |i| i + 1), vec![1, 2, 3]);
        assert!(super::map(&items[..0], |i| *i).is_empty());
    }
}
