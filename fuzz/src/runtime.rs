//! Where the checks run: on a thread with a tokio worker's stack, since
//! that is where `rigger serve` parses what arrives (a parser that recurses
//! once per nesting level overflows 2 MiB long before the 8 MiB of a main
//! thread), and on one shared runtime for the checks that talk HTTP.

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Runtime;

/// The engine's clock whenever a check runs it (ms since 1970): fixed, so
/// that an input does the same thing every time.
pub const NOW_MS: i64 = 1_700_000_000_000;

/// tokio's default stack for its worker threads.
pub const WORKER_STACK_BYTES: usize = 2 * 1024 * 1024;

/// Run `f` on a new thread with a tokio worker's stack and wait for it; a
/// panic there is a panic here.
pub fn on_worker_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("fuzz-worker".into())
            .stack_size(WORKER_STACK_BYTES)
            .spawn_scoped(scope, f)
            .expect("the OS starts a thread");
        match thread.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// One runtime for the whole process: the servers the HTTP checks start
/// live as long as the fuzzer, and each input is one future on it. One
/// worker, so what a check sees depends on its input alone.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// Run a future to its end on a worker of [`runtime`] (a 2 MiB stack, as in
/// `rigger serve`); a panic in it is a panic here.
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let rt = runtime();
    match rt.block_on(rt.spawn(future)) {
        Ok(value) => value,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the check's task did not finish: {e}"),
    }
}

/// With `RIGGER_FUZZ_SHOW` set, print what a call returned: for whoever
/// writes a seed and wants to see that it reaches the code it is meant for.
pub fn show(call: &str, outcome: &str) {
    if std::env::var_os("RIGGER_FUZZ_SHOW").is_some() {
        eprintln!("{call} -> {outcome}");
    }
}
