//! [`LoadThread`]: a load generator's own thread, with a single-threaded tokio runtime on it, so
//! that the load a bench makes (its clients and its sink) runs apart from the service it measures
//! and their CPU time can be told apart ([`crate::cpu`]).

use std::future::Future;

use crate::cpu::LOAD_THREAD;

/// A thread named [`LOAD_THREAD`] driving a current-thread runtime until dropped.
#[derive(Debug)]
pub struct LoadThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LoadThread {
    /// Starts the thread and its runtime.
    ///
    /// # Errors
    /// The runtime or the thread cannot be created.
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(LOAD_THREAD.into())
            .spawn(move || {
                // Tasks spawned on a current-thread runtime run only while it is driven here.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Runs `work` on the load thread (with every task it spawns) and returns its output.
    ///
    /// # Panics
    /// If `work` panics.
    pub async fn run<F>(&self, work: F) -> F::Output
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.handle.spawn(work).await {
            Ok(out) => out,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
}

impl Drop for LoadThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_named_thread() {
        let load = LoadThread::start().unwrap();
        let name = load
            .run(async {
                // A task spawned from the work stays on the load thread too.
                tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
                    .await
                    .unwrap()
            })
            .await;
        assert_eq!(name.as_deref(), Some(LOAD_THREAD));
    }
}
