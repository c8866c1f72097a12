//! The SQLite backend's connections, each owned by a thread of our own.
//!
//! **The writer**: one connection on one OS thread runs every write of this process. A caller
//! hands it a whole job (a closure over the connection) and awaits the answer: one hand-off per
//! job, however many statements it runs. The thread takes every job waiting when it wakes, runs
//! them in one `BEGIN IMMEDIATE` transaction, each under a savepoint of its own (a failing job is
//! rolled back alone and gets its error), commits once (one fsync for all of them), and only then
//! answers: an insert is acknowledged after its commit, never before. Claims and attempt records
//! are lazy ([`Writer::write_lazy`]): a group of only those commits without an fsync, so the one
//! fsync per round of the hot path is the inserts'.
//!
//! **The readers** (file databases): a few connections lent to blocking tasks; WAL readers block
//! neither each other nor the writer. A private in-memory database has only the writer's
//! connection, so its reads go there too.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use tokio::sync::{oneshot, Semaphore};

use crate::store::StoreError;

/// Most jobs in one transaction: bounds how long the first caller waits behind the others.
const MAX_JOBS: usize = 512;

/// A job as the writer thread sees it: run it, or fail it unrun.
trait Work: Send {
    /// How it runs.
    fn mode(&self) -> Mode;
    /// Whether its answer waits for the commit to be on disk (see [`Writer::write_lazy`]).
    fn durable(&self) -> bool;
    /// Runs it; the answer waits for the transaction's outcome.
    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Ran>;
    /// Answers without running it.
    fn fail(self: Box<Self>, error: &str);
}

/// A job that ran, waiting for its transaction's outcome.
trait Ran: Send {
    fn ok(&self) -> bool;
    /// Answers: its own result if the transaction committed, else the commit's error.
    fn answer(self: Box<Self>, committed: Result<(), &str>);
}

/// How a job runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// In the group's write transaction, under a savepoint of its own.
    Write,
    /// Outside any transaction, between two groups (a checkpoint).
    Alone,
    /// Alone, then the thread ends (closing the connection).
    Last,
}

/// What a job does with the connection, and where its answer goes.
struct Job<F, T> {
    f: F,
    mode: Mode,
    durable: bool,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

struct Done<T> {
    result: Result<T, StoreError>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<F, T> Work for Job<F, T>
where
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
    T: Send + 'static,
{
    fn mode(&self) -> Mode {
        self.mode
    }

    fn durable(&self) -> bool {
        self.durable
    }

    fn run(self: Box<Self>, conn: &Connection) -> Box<dyn Ran> {
        let result = (self.f)(conn);
        Box::new(Done {
            result,
            reply: self.reply,
        })
    }

    fn fail(self: Box<Self>, error: &str) {
        let _ = self
            .reply
            .send(Err(StoreError::Unavailable(error.to_owned())));
    }
}

impl<T: Send> Ran for Done<T> {
    fn ok(&self) -> bool {
        self.result.is_ok()
    }

    fn answer(self: Box<Self>, committed: Result<(), &str>) {
        let answer = match committed {
            Ok(()) => self.result,
            Err(e) => Err(StoreError::Unavailable(e.to_owned())),
        };
        let _ = self.reply.send(answer);
    }
}

/// The handle to the writer thread; cloning it shares the thread.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Box<dyn Work>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

fn closed() -> StoreError {
    StoreError::Unavailable("the SQLite store is closed".into())
}

impl Writer {
    /// Starts the thread over `conn` (already configured and migrated).
    pub(super) fn start(conn: Connection) -> Result<Self, StoreError> {
        let (jobs, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("courier-sqlite-writer".into())
            .spawn(move || serve(&conn, &rx))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the SQLite writer: {e}")))?;
        Ok(Self { jobs })
    }

    /// Runs `f` in a write transaction (shared with the other jobs waiting), answering once it
    /// committed. An error from `f` rolls back `f`'s changes only.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.send(f, Mode::Write, true).await
    }

    /// Like [`write`](Self::write), but the answer need not wait for the disk: when no job of
    /// the transaction needs durability, it commits with `synchronous = NORMAL` (no fsync; the
    /// next durable commit's fsync of the log covers it, or a checkpoint's within
    /// [`SYNC_WITHIN`]). Committed either way, so visible to other connections and processes at
    /// once, and kept if this process dies; only a power loss or OS crash can undo it. For writes
    /// whose loss is harmless: a lost claim leaves the message queued, as an expired lease would;
    /// a lost attempt record leaves it leased, to be delivered again (at least once).
    pub(super) async fn write_lazy<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.send(f, Mode::Write, false).await
    }

    /// Runs `f` outside any transaction, between two groups.
    pub(super) async fn alone<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        self.send(f, Mode::Alone, true).await
    }

    async fn send<T, F>(&self, f: F, mode: Mode, durable: bool) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Box::new(Job {
                f,
                mode,
                durable,
                reply,
            }))
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Ends the thread once the jobs sent before have run; the connection closes with it.
    pub(super) async fn close(&self) {
        let _ = self.send(|_| Ok(()), Mode::Last, true).await;
    }
}

/// How long a lazy commit may stay off the disk: the next group is then committed durably, and
/// an idle writer checkpoints (which syncs the log first).
const SYNC_WITHIN: Duration = Duration::from_millis(10);

fn serve(conn: &Connection, rx: &mpsc::Receiver<Box<dyn Work>>) {
    let mut next: Option<Box<dyn Work>> = None;
    // The connection's `synchronous` setting: FULL as configured, NORMAL for lazy groups.
    let mut full = true;
    // Since when lazy commits have been waiting for an fsync.
    let mut unsynced: Option<Instant> = None;
    loop {
        let first = match next.take() {
            Some(job) => job,
            None => {
                let got = match unsynced {
                    Some(since) => {
                        let wait = SYNC_WITHIN.saturating_sub(since.elapsed());
                        rx.recv_timeout(wait)
                            .map_err(|e| matches!(e, mpsc::RecvTimeoutError::Disconnected))
                    }
                    None => rx.recv().map_err(|_| true),
                };
                match got {
                    Ok(job) => job,
                    Err(closed) => {
                        if unsynced.is_some() {
                            // Failed, it is tried again a period later (not in a busy loop).
                            unsynced = (!sync(conn)).then(Instant::now);
                        }
                        if closed {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let mode = first.mode();
        if mode != Mode::Write {
            first.run(conn).answer(Ok(()));
            if mode == Mode::Last {
                if unsynced.is_some() {
                    sync(conn);
                }
                return;
            }
            continue;
        }
        let mut group = vec![first];
        while group.len() < MAX_JOBS {
            match rx.try_recv() {
                Ok(job) if job.mode() != Mode::Write => {
                    next = Some(job);
                    break;
                }
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let durable = group.iter().any(|job| job.durable())
            || unsynced.is_some_and(|since| since.elapsed() >= SYNC_WITHIN);
        if durable != full {
            let pragma = if durable {
                "PRAGMA synchronous = FULL"
            } else {
                "PRAGMA synchronous = NORMAL"
            };
            if let Err(e) = run(conn, pragma) {
                let e = e.to_string();
                for job in group {
                    job.fail(&e);
                }
                continue;
            }
            full = durable;
        }
        if run_group(conn, group) {
            if durable {
                // The log's fsync covers every commit before it.
                unsynced = None;
            } else if unsynced.is_none() {
                unsynced = Some(Instant::now());
            }
        }
    }
}

/// Puts the lazy commits on disk while the writer is idle: a checkpoint syncs the log before
/// copying it into the database. Returns whether it ran.
fn sync(conn: &Connection) -> bool {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
        .is_ok()
}

/// Runs `group` in one transaction, a savepoint per job, then answers every job.
/// Returns whether it committed.
fn run_group(conn: &Connection, group: Vec<Box<dyn Work>>) -> bool {
    if let Err(e) = run(conn, "BEGIN IMMEDIATE") {
        let e = e.to_string();
        for job in group {
            job.fail(&e);
        }
        return false;
    }
    let single = group.len() == 1;
    let mut done = Vec::with_capacity(group.len());
    for job in group {
        if single {
            done.push(job.run(conn));
            continue;
        }
        if let Err(e) = run(conn, "SAVEPOINT job") {
            job.fail(&e.to_string());
            continue;
        }
        let ran = job.run(conn);
        let end = if ran.ok() {
            run(conn, "RELEASE job")
        } else {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")
        };
        match end {
            Ok(()) => done.push(ran),
            // The transaction is in an unknown state: roll everything back.
            Err(e) => {
                let e = e.to_string();
                ran.answer(Err(&e));
                rollback_all(conn, done, &e);
                return false;
            }
        }
    }
    if single && !done.iter().all(|d| d.ok()) {
        // The one job failed: nothing of it may stay.
        let _ = conn.execute_batch("ROLLBACK");
        for ran in done {
            ran.answer(Ok(()));
        }
        return false;
    }
    match run(conn, "COMMIT") {
        Ok(()) => {
            for ran in done {
                ran.answer(Ok(()));
            }
            true
        }
        Err(e) => {
            rollback_all(conn, done, &e.to_string());
            false
        }
    }
}

/// Runs one statement of the writer's own, prepared once per connection.
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

fn rollback_all(conn: &Connection, done: Vec<Box<dyn Ran>>, error: &str) {
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for ran in done {
        ran.answer(Err(error));
    }
}

/// Read connections lent to blocking tasks, opened on first use.
pub(super) struct Readers {
    open: Box<dyn Fn() -> Result<Connection, StoreError> + Send + Sync>,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Readers")
    }
}

impl Readers {
    pub(super) fn new(
        max: usize,
        open: impl Fn() -> Result<Connection, StoreError> + Send + Sync + 'static,
    ) -> Self {
        Self {
            open: Box::new(open),
            idle: Arc::default(),
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }

    /// Runs `f` on an idle connection (or a new one) in a blocking task.
    pub(super) async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
        T: Send + 'static,
    {
        let _permit = self.permits.acquire().await.map_err(|_| closed())?;
        let conn = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        let conn = match conn {
            Some(conn) => conn,
            None => (self.open)()?,
        };
        let idle = Arc::clone(&self.idle);
        tokio::task::spawn_blocking(move || {
            let result = f(&conn);
            if let Ok(mut idle) = idle.lock() {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("SQLite read task failed: {e}")))?
    }

    /// Closes the idle connections; new reads open new ones.
    pub(super) fn close(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
