//! A pool of evaluators for async (and blocking) callers: threads in this process (the default),
//! or child processes ([`Isolation::Process`], see [`super::process`]).
//!
//! Each worker thread owns an [`Engine`] on its own stack (never in a thread-local: jrsonnet values
//! destroyed by thread-local destructors crash). Jobs arrive over one channel; the answer goes back
//! over a oneshot. A watchdog thread enforces the evaluation timeout: a render still running at its
//! deadline gets a timeout error at once, and its worker is written off and replaced, so the pool
//! keeps its full capacity. A written-off thread exits when its evaluation ends; jrsonnet offers no
//! way to interrupt one sooner.
//!
//! Written-off threads are capped ([`PoolOptions::max_written_off`]): once that many are still
//! running, the pool refuses renders of every template that has one of them (a
//! [`RenderErrorKind::Refused`] error, counted by [`crate::metrics::render_refused`]) rather
//! than grow. Each written-off thread gives its place back when its evaluation ends, and the
//! template's renders are admitted again. A template not yet responsible for any is still
//! admitted, so at most `max_written_off - 1` plus one per distinct timed-out template run.
//!
//! The compiled fast path ([`super::fast`]) does bounded work and always runs on the caller's
//! thread, before any of this.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::process::{self, Isolation};
use super::{fast, Ctx, Engine, Limits, RenderError, RenderErrorKind, Template};

pub(super) type Reply = oneshot::Sender<Result<String, RenderError>>;

pub(super) struct Job {
    pub(super) template: Template,
    pub(super) ctx: Ctx,
    pub(super) reply: Reply,
}

/// How a [`Pool`] evaluates: how many evaluators, how many written-off threads it tolerates,
/// and whether templates run in this process.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolOptions {
    /// Evaluator threads, or evaluator processes with [`Isolation::Process`] (at least one).
    pub threads: usize,
    /// Written-off threads (renders past the timeout, still evaluating) at which the pool
    /// refuses renders of the templates responsible (default 4, at least 1). Threads only.
    pub max_written_off: usize,
    /// Threads in this process (default) or child processes.
    pub isolation: Isolation,
}

/// The default cap of written-off threads.
pub const DEFAULT_MAX_WRITTEN_OFF: usize = 4;

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            threads: thread::available_parallelism().map_or(1, |n| n.get()),
            max_written_off: DEFAULT_MAX_WRITTEN_OFF,
            isolation: Isolation::Thread,
        }
    }
}

/// One worker's view for the watchdog: when its current job started, and the job's reply sender.
/// Whoever takes the reply (the worker when done, the watchdog at the deadline) answers the job.
struct Slot {
    /// Nanoseconds since the pool's epoch at which the current job started; 0 when idle.
    started: AtomicU64,
    current: Mutex<Option<(Template, Reply, u64)>>,
}

pub(super) struct Shared {
    pub(super) jobs: Mutex<mpsc::Receiver<Job>>,
    pub(super) limits: Limits,
    epoch: Instant,
    slots: Mutex<Vec<Arc<Slot>>>,
    closed: AtomicBool,
    pub(super) renders: AtomicU64,
    pub(super) timeouts: AtomicU64,
    panics: AtomicU64,
    /// Evaluator processes running now (process isolation).
    pub(super) processes: AtomicU64,
    /// Processes replaced after a timeout or a death.
    pub(super) replaced: AtomicU64,
    max_written_off: usize,
    /// Written-off threads still running, by template id.
    written_off: Mutex<HashMap<u64, usize>>,
    refused: AtomicU64,
}

/// Counters of a [`Pool`]'s life so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Worker threads serving renders now (0 with process isolation: see `processes`).
    pub threads: usize,
    /// Renders answered by workers (successes and template errors).
    pub renders: u64,
    /// Renders stopped by the timeout; each wrote off one worker.
    pub timeouts: u64,
    /// Evaluations that panicked (the worker's engine was rebuilt).
    pub panics: u64,
    /// Written-off threads still running.
    pub written_off: usize,
    /// Renders refused at the cap of written-off threads.
    pub refused: u64,
    /// Evaluator processes running (process isolation).
    pub processes: usize,
    /// Evaluator processes killed at a timeout or found dead, and replaced.
    pub replaced: u64,
}

/// Evaluator threads with a job queue. Cheap to clone; the threads stop when the last clone is
/// dropped.
#[derive(Clone)]
pub struct Pool {
    tx: mpsc::Sender<Job>,
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
}

struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::Release);
    }
}

impl Pool {
    /// Starts `threads` evaluator threads (at least one) enforcing `limits`.
    ///
    /// # Errors
    /// An engine cannot be built (the import directory does not exist), or a thread cannot be
    /// spawned.
    pub fn new(threads: usize, limits: Limits) -> std::io::Result<Self> {
        Self::with_options(
            limits,
            PoolOptions {
                threads,
                ..PoolOptions::default()
            },
        )
    }

    /// Starts the evaluators `options` describe, enforcing `limits`.
    ///
    /// # Errors
    /// As [`Pool::new`]; with process isolation, also when the program cannot be found or its
    /// first evaluator process does not start.
    pub fn with_options(limits: Limits, options: PoolOptions) -> std::io::Result<Self> {
        // Fail here, not in a worker, when the limits cannot be honoured.
        drop(Engine::new(limits.clone())?);
        let threads = options.threads.max(1);
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            jobs: Mutex::new(rx),
            limits,
            epoch: Instant::now(),
            slots: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            renders: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            processes: AtomicU64::new(0),
            replaced: AtomicU64::new(0),
            max_written_off: options.max_written_off.max(1),
            written_off: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
        });
        if let Isolation::Process(opts) = options.isolation {
            process::start(&shared, threads, opts)?;
            return Ok(Self {
                tx,
                _closer: Arc::new(Closer(Arc::clone(&shared))),
                shared,
            });
        }
        for _ in 0..threads {
            spawn_worker(&shared)?;
        }
        let watched = Arc::clone(&shared);
        thread::Builder::new()
            .name("courier-render-watchdog".into())
            .spawn(move || watchdog(&watched))?;
        Ok(Self {
            tx,
            _closer: Arc::new(Closer(Arc::clone(&shared))),
            shared,
        })
    }

    /// A pool with one thread per available core.
    ///
    /// # Errors
    /// As [`Pool::new`].
    pub fn with_default_threads(limits: Limits) -> std::io::Result<Self> {
        let n = thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(n, limits)
    }

    /// The limits every render runs under.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    fn submit(
        &self,
        template: &Template,
        ctx: Ctx,
    ) -> oneshot::Receiver<Result<String, RenderError>> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            template: template.clone(),
            ctx,
            reply,
        };
        if let Err(mpsc::SendError(job)) = self.tx.send(job) {
            let _ = job.reply.send(Err(closed(template)));
        }
        rx
    }

    /// Renders `template` over `ctx` on a pool thread and returns the payload as compact JSON.
    ///
    /// # Errors
    /// As [`Engine::render`], plus [`RenderErrorKind::Timeout`] when evaluation runs past the
    /// limit.
    pub async fn render(
        &self,
        template: &Template,
        ctx: impl Into<Ctx>,
    ) -> Result<String, RenderError> {
        let ctx = ctx.into();
        if let Some(out) = self.fast(template, &ctx) {
            return Ok(out);
        }
        self.admit(template)?;
        self.submit(template, ctx)
            .await
            .unwrap_or_else(|_| Err(closed(template)))
    }

    /// Like [`Pool::render`], blocking the calling thread. Do not call it from async code.
    ///
    /// # Errors
    /// As [`Pool::render`].
    pub fn render_blocking(
        &self,
        template: &Template,
        ctx: impl Into<Ctx>,
    ) -> Result<String, RenderError> {
        let ctx = ctx.into();
        if let Some(out) = self.fast(template, &ctx) {
            return Ok(out);
        }
        self.admit(template)?;
        self.submit(template, ctx)
            .blocking_recv()
            .unwrap_or_else(|_| Err(closed(template)))
    }

    /// The compiled fast path, on the calling thread: bounded work, so no hop to a worker. `None`
    /// when the template is outside the subset or this render needs the evaluator (errors).
    fn fast(&self, template: &Template, ctx: &Ctx) -> Option<String> {
        let program = template.fast_program().ok()?;
        let mut out = String::with_capacity(512);
        fast::render(program, ctx.as_ref(), &mut out, &self.shared.limits).ok()?;
        Some(out)
    }

    /// Refuses `template` while written-off threads fill the cap and it has one of them.
    fn admit(&self, template: &Template) -> Result<(), RenderError> {
        let s = &self.shared;
        let Ok(map) = s.written_off.lock() else {
            return Ok(());
        };
        let total: usize = map.values().sum();
        let Some(&mine) = map.get(&template.id()) else {
            return Ok(());
        };
        if total < s.max_written_off {
            return Ok(());
        }
        drop(map);
        s.refused.fetch_add(1, Ordering::Relaxed);
        crate::metrics::render_refused(template.name());
        Err(RenderError::new(
            RenderErrorKind::Refused,
            template,
            format!(
                "render refused: {mine} evaluator thread(s) are still running earlier renders of this template that timed out, and the pool's cap of {} written-off threads (max_written_off) is reached; renders of this template resume as they finish",
                s.max_written_off
            ),
        ))
    }

    /// Counters so far.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        PoolStats {
            threads: s.slots.lock().map_or(0, |v| v.len()),
            renders: s.renders.load(Ordering::Relaxed),
            timeouts: s.timeouts.load(Ordering::Relaxed),
            panics: s.panics.load(Ordering::Relaxed),
            written_off: s.written_off.lock().map_or(0, |m| m.values().sum()),
            refused: s.refused.load(Ordering::Relaxed),
            processes: s.processes.load(Ordering::Relaxed) as usize,
            replaced: s.replaced.load(Ordering::Relaxed),
        }
    }
}

pub(super) fn closed(template: &Template) -> RenderError {
    RenderError::new(
        RenderErrorKind::PoolClosed,
        template,
        "the render pool is shut down",
    )
}

/// Native stack of an evaluator thread. jrsonnet grows its stack on the heap for function calls
/// (stacker), but not for chained binary operators, which [`nesting`](super::nesting) bounds.
/// Set explicitly so that `RUST_MIN_STACK` cannot shrink it.
const RENDER_THREAD_STACK: usize = super::nesting::EVAL_STACK;

fn spawn_worker(shared: &Arc<Shared>) -> std::io::Result<()> {
    let slot = Arc::new(Slot {
        started: AtomicU64::new(0),
        current: Mutex::new(None),
    });
    // Listed before it starts, so that stats never miss a thread already serving renders.
    if let Ok(mut slots) = shared.slots.lock() {
        slots.push(Arc::clone(&slot));
    }
    let shared2 = Arc::clone(shared);
    let slot2 = Arc::clone(&slot);
    let spawned = thread::Builder::new()
        .name("courier-render".into())
        .stack_size(RENDER_THREAD_STACK)
        .spawn(move || worker(&shared2, &slot2));
    if spawned.is_err() {
        if let Ok(mut slots) = shared.slots.lock() {
            slots.retain(|s| !Arc::ptr_eq(s, &slot));
        }
    }
    spawned.map(|_| ())
}

fn worker(shared: &Shared, slot: &Slot) {
    let Ok(mut engine) = Engine::new(shared.limits.clone()) else {
        return;
    };
    let mut out = String::with_capacity(1024);
    loop {
        // The lock is held only while waiting for the next job, so idle workers queue up on it.
        let job = match shared.jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(Job {
            template,
            ctx,
            reply,
        }) = job
        else {
            return; // every sender dropped: the pool is gone
        };
        let started = (shared.epoch.elapsed().as_nanos() as u64).max(1);
        if let Ok(mut cur) = slot.current.lock() {
            *cur = Some((template.clone(), reply, started));
        }
        slot.started.store(started, Ordering::Release);

        let result = catch_unwind(AssertUnwindSafe(|| {
            engine
                .render_into(&template, ctx.as_ref(), &mut out)
                .map(|()| out.clone())
        }));
        slot.started.store(0, Ordering::Release);
        let result = result.unwrap_or_else(|panic| {
            shared.panics.fetch_add(1, Ordering::Relaxed);
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            // The engine may be mid-way through anything: start from a fresh one.
            if let Ok(fresh) = Engine::new(shared.limits.clone()) {
                engine = fresh;
            }
            Err(RenderError::new(
                RenderErrorKind::Panic,
                &template,
                format!("the evaluator panicked: {what}"),
            ))
        });
        let taken = slot.current.lock().ok().and_then(|mut cur| cur.take());
        match taken {
            Some((_, reply, _)) => {
                shared.renders.fetch_add(1, Ordering::Relaxed);
                let _ = reply.send(result);
            }
            // The watchdog answered this job with a timeout and replaced this worker: give its
            // place among the written-off back, and end.
            None => {
                release_written_off(shared, template.id());
                return;
            }
        }
        drop(ctx);
    }
}

fn watchdog(shared: &Arc<Shared>) {
    let timeout = shared.limits.timeout;
    let tick = (timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(25));
    let limit = timeout.as_nanos() as u64;
    while !shared.closed.load(Ordering::Acquire) {
        thread::sleep(tick);
        let now = shared.epoch.elapsed().as_nanos() as u64;
        let expired: Vec<(Arc<Slot>, u64)> = match shared.slots.lock() {
            Ok(slots) => slots
                .iter()
                .map(|s| (Arc::clone(s), s.started.load(Ordering::Acquire)))
                .filter(|(_, t)| *t != 0 && now.saturating_sub(*t) >= limit)
                .collect(),
            Err(_) => return,
        };
        for (slot, started) in expired {
            // Take the job only if it is still the one that expired, not a newer one.
            // Counted as written off before the lock is released: the worker, when it ends,
            // finds its job gone only after this and gives the place back.
            let taken = slot.current.lock().ok().and_then(|mut c| {
                if c.as_ref().is_some_and(|(_, _, t)| *t == started) {
                    let taken = c.take();
                    if let Some((template, _, _)) = &taken {
                        if let Ok(mut map) = shared.written_off.lock() {
                            *map.entry(template.id()).or_default() += 1;
                        }
                        crate::metrics::written_off_changed(1);
                    }
                    taken
                } else {
                    None
                }
            });
            let Some((template, reply, _)) = taken else {
                continue; // finished just now
            };
            shared.timeouts.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                template = template.name(),
                "render timed out; replacing its evaluator thread"
            );
            // Replaced before the caller hears of the timeout: a render it sends next finds the
            // pool at full capacity.
            if let Ok(mut slots) = shared.slots.lock() {
                slots.retain(|s| !Arc::ptr_eq(s, &slot));
            }
            if let Err(e) = spawn_worker(shared) {
                tracing::error!("cannot replace an evaluator thread: {e}");
            }
            let _ = reply.send(Err(RenderError::timeout(&template, timeout)));
        }
    }
}

/// A written-off thread of `template_id` has ended.
fn release_written_off(shared: &Shared, template_id: u64) {
    if let Ok(mut map) = shared.written_off.lock() {
        if let Some(n) = map.get_mut(&template_id) {
            *n -= 1;
            if *n == 0 {
                map.remove(&template_id);
            }
        }
    }
    crate::metrics::written_off_changed(-1);
}
