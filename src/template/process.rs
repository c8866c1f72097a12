//! Template isolation: a [`super::Pool`] whose evaluators are child processes.
//!
//! Each evaluator process is driven by one manager thread. The manager takes a job from the
//! pool's queue and, without waiting, every job queued behind it (up to
//! [`ProcessOptions::max_batch`]), and sends them in one frame (see [`super::wire`]); the child
//! answers each as soon as it is rendered. Each render has the pool's timeout from the moment the
//! child can start it (the previous reply); at the deadline the child is killed (SIGKILL),
//! reaped, and replaced, and the rest of the batch goes to the replacement. A child that dies
//! during a render (its memory limit, a crash) fails that render with
//! [`RenderErrorKind::Crashed`] and is replaced the same way. So a runaway template costs one
//! process for at most the timeout, and never memory beyond the child's cap.
//!
//! The child sets its own limits at startup (see [`super::worker`]): RLIMIT_AS at
//! [`ProcessOptions::max_memory_bytes`]; the CPU it may spend is bounded by the timeout.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::pool::{Job, Shared};
use super::wire::{self, Hello};
use super::{Ctx, RenderError, RenderErrorKind, Template};

/// The reference's memory cap for its Jsonnet subprocess, and ours by default: 2 GiB.
pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// How long a new evaluator process may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Templates a parent remembers having sent to one child; past it both sides start over.
const SENT_CAPACITY: usize = 512;

/// Where templates are evaluated.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Isolation {
    /// On threads of this process (the default): fastest; a runaway render's thread is written
    /// off at the timeout, and a template's memory is not capped.
    #[default]
    Thread,
    /// In child processes, each with a memory cap, killed and replaced at the timeout.
    Process(ProcessOptions),
}

/// The evaluator processes of [`Isolation::Process`].
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessOptions {
    /// The program to run. `None`: the current executable, when it is `courier` (whose hidden
    /// `template-worker` subcommand serves the pool); any other program must call
    /// [`super::run_worker`] when given [`ProcessOptions::args`].
    pub program: Option<PathBuf>,
    /// Its arguments (default `template-worker`).
    pub args: Vec<OsString>,
    /// Address-space cap of each process, RLIMIT_AS (default 2 GiB, as the reference); 0 for
    /// none.
    pub max_memory_bytes: u64,
    /// Most renders sent to a process in one round trip (default 16).
    pub max_batch: usize,
}

impl Default for ProcessOptions {
    fn default() -> Self {
        Self {
            program: None,
            args: vec!["template-worker".into()],
            max_memory_bytes: DEFAULT_MAX_MEMORY_BYTES,
            max_batch: 16,
        }
    }
}

impl ProcessOptions {
    /// The program to run: the one set, else the current executable if it is `courier`.
    fn resolve(&self) -> io::Result<PathBuf> {
        if let Some(p) = &self.program {
            return Ok(p.clone());
        }
        let exe = std::env::current_exe()?;
        if exe.file_stem().is_some_and(|s| s == "courier") {
            return Ok(exe);
        }
        Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "template isolation needs an evaluator program: {} is not `courier`; set ProcessOptions::program to the courier binary (or to a program that calls template::run_worker)",
                exe.display()
            ),
        ))
    }
}

/// What managers need to start a child.
struct Spawner {
    program: PathBuf,
    args: Vec<OsString>,
    hello: Vec<u8>,
    max_memory_bytes: u64,
    max_batch: usize,
}

/// Starts `n` managers, each with a running child (so that a program that cannot start fails
/// here, at pool creation).
pub(super) fn start(shared: &Arc<Shared>, n: usize, opts: ProcessOptions) -> io::Result<()> {
    let hello = serde_json::to_vec(&Hello::new(&shared.limits, opts.max_memory_bytes))
        .map_err(io::Error::other)?;
    let spawner = Arc::new(Spawner {
        program: opts.resolve()?,
        args: opts.args,
        hello,
        max_memory_bytes: opts.max_memory_bytes,
        max_batch: opts.max_batch.max(1),
    });
    for _ in 0..n {
        let child = Evaluator::spawn(&spawner, shared)?;
        let (shared, spawner) = (Arc::clone(shared), Arc::clone(&spawner));
        thread::Builder::new()
            .name("courier-render-process".into())
            .spawn(move || manage(&shared, &spawner, Some(child)))?;
    }
    Ok(())
}

/// One manager: jobs from the queue to its child, until the pool is gone. The child is kept fed:
/// while it renders one batch, the next is already in its pipe (up to two batches outstanding),
/// so it never waits for the manager between batches.
fn manage(shared: &Arc<Shared>, spawner: &Spawner, mut slot: Option<Evaluator>) {
    let timeout = shared.limits.timeout;
    // Jobs sent to the child, in the order it answers them.
    let mut inflight: VecDeque<Job> = VecDeque::new();
    // When the front job's time is up: the timeout from the moment the child can start it.
    let mut deadline = Instant::now();
    loop {
        if inflight.is_empty() {
            let mut batch = VecDeque::new();
            {
                let Ok(rx) = shared.jobs.lock() else { return };
                match rx.recv() {
                    Ok(job) => batch.push_back(job),
                    Err(_) => return, // every sender dropped: the pool is gone
                }
                take_queued(&rx, &mut batch, spawner.max_batch);
            }
            dispatch(shared, spawner, &mut slot, &mut inflight, batch);
            deadline = Instant::now() + timeout;
        } else if inflight.len() <= spawner.max_batch {
            // Top up before the child runs dry. A queue locked by another manager is one that
            // manager waits on, idle: it is empty.
            if let Ok(rx) = shared.jobs.try_lock() {
                let mut batch = VecDeque::new();
                take_queued(&rx, &mut batch, spawner.max_batch);
                drop(rx);
                if !batch.is_empty() {
                    dispatch(shared, spawner, &mut slot, &mut inflight, batch);
                }
            }
        }
        let Some(child) = slot.as_mut() else {
            continue; // it could not start: `dispatch` failed the jobs
        };
        if inflight.is_empty() {
            continue;
        }
        let outcome = child.next_reply(deadline);
        let Some(job) = inflight.pop_front() else {
            continue;
        };
        match outcome {
            Ok(frame) => {
                shared.renders.fetch_add(1, Ordering::Relaxed);
                let _ = job.reply.send(decode(&job.template, frame));
                deadline = Instant::now() + timeout;
                continue;
            }
            Err(RecvTimeoutError::Timeout) => {
                shared.timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    template = job.template.name(),
                    "render timed out; killing and replacing its evaluator process"
                );
                let _ = job.reply.send(Err(RenderError::new(
                    RenderErrorKind::Timeout,
                    &job.template,
                    format!(
                        "evaluation took longer than {timeout:?}; the evaluator process was killed and replaced"
                    ),
                )));
                retire(shared, &mut slot, "timeout");
            }
            Err(RecvTimeoutError::Disconnected) => {
                let why = retire(shared, &mut slot, "crashed");
                tracing::warn!(
                    template = job.template.name(),
                    "evaluator process died: {why}"
                );
                let msg = format!(
                    "the evaluator process died during this render ({why}); {}",
                    spawner.limit_note()
                );
                let _ = job.reply.send(Err(RenderError::new(
                    RenderErrorKind::Crashed,
                    &job.template,
                    msg,
                )));
            }
        }
        // The jobs behind the one blamed go to the replacement; with none, it is started now
        // rather than when the next render waits for it.
        let rest = std::mem::take(&mut inflight);
        if rest.is_empty() {
            slot = Evaluator::spawn(spawner, shared).ok();
        } else {
            dispatch(shared, spawner, &mut slot, &mut inflight, rest);
            deadline = Instant::now() + timeout;
        }
    }
}

/// Moves jobs already queued into `batch`, without waiting, until it holds `max`.
fn take_queued(rx: &mpsc::Receiver<Job>, batch: &mut VecDeque<Job>, max: usize) {
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push_back(job),
            Err(_) => break,
        }
    }
}

/// Sends `batch` to `slot`'s child behind `inflight`, starting a child if there is none; the
/// jobs join `inflight`. When no child can start, every job fails (`inflight` included).
fn dispatch(
    shared: &Arc<Shared>,
    spawner: &Spawner,
    slot: &mut Option<Evaluator>,
    inflight: &mut VecDeque<Job>,
    batch: VecDeque<Job>,
) {
    loop {
        if slot.is_none() {
            match Evaluator::spawn(spawner, shared) {
                Ok(c) => *slot = Some(c),
                Err(e) => {
                    let msg = format!(
                        "cannot start the evaluator process {}: {e}",
                        spawner.program.display()
                    );
                    tracing::error!("{msg}");
                    for job in inflight.drain(..).chain(batch) {
                        let err = RenderError::new(RenderErrorKind::Crashed, &job.template, &msg);
                        let _ = job.reply.send(Err(err));
                    }
                    return;
                }
            }
        }
        let Some(child) = slot.as_mut() else { return };
        match child.send(&batch) {
            Ok(()) => break,
            // It died between batches, blaming no render: replace it and send again.
            Err(_) if inflight.is_empty() => {
                retire(shared, slot, "crashed");
            }
            // It died during the render in front, which the end of its replies will blame.
            Err(_) => break,
        }
    }
    inflight.extend(batch);
}

impl Spawner {
    fn limit_note(&self) -> String {
        match self.max_memory_bytes {
            0 => "it has no memory limit".into(),
            n => format!("its memory limit is {} MiB", n / (1024 * 1024)),
        }
    }
}

/// Kills and reaps `slot`'s child, counting it as replaced for `reason`; says how it ended.
fn retire(shared: &Shared, slot: &mut Option<Evaluator>, reason: &'static str) -> String {
    shared.replaced.fetch_add(1, Ordering::Relaxed);
    crate::metrics::evaluator_process_replaced(reason);
    slot.take().map_or_else(String::new, Evaluator::end)
}

/// The reply frame of `template`'s render.
fn decode(template: &Template, frame: Vec<u8>) -> Result<String, RenderError> {
    match wire::parse_reply(frame) {
        Ok(Ok(payload)) => Ok(payload),
        Ok(Err(text)) => Err(RenderError::from_wire(&text).unwrap_or_else(|| {
            RenderError::new(RenderErrorKind::Crashed, template, "unreadable error reply")
        })),
        Err(e) => Err(RenderError::new(
            RenderErrorKind::Crashed,
            template,
            format!("unreadable reply from the evaluator process: {e}"),
        )),
    }
}

/// One running child: its stdin (batches), its stdout (reply frames), and a thread reading its
/// stderr (its last line, for the error when it dies; every line to the debug log).
struct Evaluator {
    process: Child,
    stdin: Input,
    replies: Replies,
    last_stderr: Arc<Mutex<String>>,
    /// Disconnected when the stderr thread has read everything.
    stderr_done: mpsc::Receiver<()>,
    /// Template ids whose source this child has.
    sent: HashSet<u64>,
    counted: Arc<Shared>,
    ended: bool,
}

impl Evaluator {
    fn spawn(spawner: &Spawner, shared: &Arc<Shared>) -> io::Result<Self> {
        let mut process = Command::new(&spawner.program)
            .args(&spawner.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its last stderr line goes into the error when it dies: the reason, not a
            // backtrace.
            .env("RUST_BACKTRACE", "0")
            // mimalloc (courier's allocator) otherwise reserves 1 GiB of address space at
            // startup, which would count against RLIMIT_AS.
            .env("MIMALLOC_ARENA_RESERVE", "0")
            .spawn()?;
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            process.stdin.take(),
            process.stdout.take(),
            process.stderr.take(),
        ) else {
            let _ = process.kill();
            let _ = process.wait();
            return Err(io::Error::other("the child's pipes are missing"));
        };
        let replies = Replies::new(stdout)?;
        let last_stderr = Arc::new(Mutex::new(String::new()));
        let last = Arc::clone(&last_stderr);
        let (done, stderr_done) = mpsc::channel::<()>();
        thread::Builder::new()
            .name("courier-render-stderr".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                forward_stderr(stderr, &last);
                drop(done);
            })?;
        let mut child = Self {
            process,
            stdin: Input::new(stdin)?,
            replies,
            last_stderr,
            stderr_done,
            sent: HashSet::new(),
            counted: Arc::clone(shared),
            ended: false,
        };
        child.counted.processes.fetch_add(1, Ordering::Relaxed);
        let buf = child.stdin.frame_start();
        buf.extend_from_slice(&spawner.hello);
        let ready = child
            .stdin
            .frame_end()
            .ok()
            .and_then(|()| child.next_reply(Instant::now() + START_TIMEOUT).ok());
        if ready.as_deref() != Some(b"ready".as_slice()) {
            let why = child.end();
            return Err(io::Error::other(format!("it did not start ({why})")));
        }
        Ok(child)
    }

    /// Sends `jobs` as one batch frame, built in place in the pipe's buffer; what the pipe
    /// cannot take now goes while the manager waits for replies.
    fn send(&mut self, jobs: &VecDeque<Job>) -> io::Result<()> {
        let frame = self.stdin.frame_start();
        frame.extend_from_slice(&(jobs.len() as u32).to_le_bytes());
        for job in jobs {
            let t = &job.template;
            let (source, reset) = if self.sent.contains(&t.id()) {
                (None, false)
            } else {
                let reset = self.sent.len() >= SENT_CAPACITY;
                if reset {
                    self.sent.clear();
                }
                self.sent.insert(t.id());
                (Some((t.name(), t.source())), reset)
            };
            let json;
            let ctx = match &job.ctx {
                Ctx::Json(text) => text.as_str(),
                Ctx::Value(v) => {
                    json = v.to_string();
                    json.as_str()
                }
            };
            wire::put_request(frame, t.id(), source, reset, ctx);
        }
        self.stdin.frame_end()
    }

    /// Kills the child (if still running) and reaps it; says how it ended.
    fn end(mut self) -> String {
        let status = self.reap();
        // Its stderr is closed now; let the forwarding thread read the last line.
        let _ = self.stderr_done.recv_timeout(Duration::from_millis(200));
        let last = self
            .last_stderr
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        let status = status.map_or_else(|e| format!("wait failed: {e}"), describe);
        if last.is_empty() {
            status
        } else {
            format!("{status}: {last}")
        }
    }

    /// Kills and waits for the child, once: no zombie is left.
    fn reap(&mut self) -> io::Result<ExitStatus> {
        let _ = self.process.kill();
        let status = self.process.wait();
        if !self.ended {
            self.ended = true;
            self.counted.processes.fetch_sub(1, Ordering::Relaxed);
        }
        status
    }
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.reap();
        }
    }
}

/// Keeps the child's last stderr line and sends every line to the debug log.
fn forward_stderr(stderr: impl Read, last: &Mutex<String>) {
    let mut r = BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded: a huge trace line is cut, not buffered whole.
        match r.by_ref().take(4096).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.is_empty() {
            continue;
        }
        tracing::debug!(target: "courier::template", "evaluator process: {text}");
        // Rust's hint about RUST_BACKTRACE says nothing about the failure.
        if text.starts_with("note: ") {
            continue;
        }
        if let Ok(mut l) = last.lock() {
            *l = text;
        }
    }
}

/// An exit status in words: `exit status 70`, `killed by signal 6 (SIGABRT)`.
fn describe(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(sig) = status.signal() {
            let name = match sig {
                6 => " (SIGABRT)",
                7 => " (SIGBUS)",
                9 => " (SIGKILL)",
                11 => " (SIGSEGV)",
                24 => " (SIGXCPU)",
                _ => "",
            };
            return format!("killed by signal {sig}{name}");
        }
    }
    status.to_string()
}

/// The child's stdin. Batches are built in its buffer and written without blocking (on Unix):
/// a batch may wait for room in the pipe while the child writes the replies of the previous
/// one, and the manager must keep reading those meanwhile, or both would wait for ever.
struct Input {
    pipe: ChildStdin,
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    written: usize,
    /// Where the frame being built starts.
    frame: usize,
}

impl Input {
    fn new(pipe: ChildStdin) -> io::Result<Self> {
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            let fd = pipe.as_raw_fd();
            // SAFETY: fcntl on a descriptor we own, changing only its status flags.
            let ok = unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
            };
            if !ok {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(Self {
            pipe,
            buf: Vec::with_capacity(64 * 1024),
            written: 0,
            frame: 0,
        })
    }

    /// Starts a frame: the caller appends its payload to the returned buffer.
    fn frame_start(&mut self) -> &mut Vec<u8> {
        if self.written == self.buf.len() {
            self.buf.clear();
            self.written = 0;
        }
        self.frame = self.buf.len();
        self.buf.extend_from_slice(&[0; 4]);
        &mut self.buf
    }

    /// Ends the frame begun by [`Input::frame_start`] and writes what the pipe takes.
    fn frame_end(&mut self) -> io::Result<()> {
        let len = u32::try_from(self.buf.len() - self.frame - 4)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        self.buf[self.frame..self.frame + 4].copy_from_slice(&len.to_le_bytes());
        self.write_some()
    }

    /// Writes until the pipe is full or the buffer written.
    fn write_some(&mut self) -> io::Result<()> {
        while self.written < self.buf.len() {
            match self.pipe.write(&self.buf[self.written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The child is gone: nothing more will be read.
                    self.written = self.buf.len();
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn waiting(&self) -> bool {
        self.written < self.buf.len()
    }
}

/// The child's replies. On Unix the manager reads them itself, waiting with `poll` for the
/// deadline: no thread between the pipe and the manager, so a reply costs no extra wake-up.
#[cfg(unix)]
struct Replies {
    reader: BufReader<std::process::ChildStdout>,
}

#[cfg(unix)]
impl Replies {
    fn new(stdout: std::process::ChildStdout) -> io::Result<Self> {
        Ok(Self {
            reader: BufReader::with_capacity(64 * 1024, stdout),
        })
    }
}

#[cfg(unix)]
impl Evaluator {
    /// The next reply frame, waiting until `deadline` for it to start arriving (the child
    /// writes each frame whole); meanwhile the rest of a batch goes into the pipe as it drains.
    fn next_reply(&mut self, deadline: Instant) -> Result<Vec<u8>, RecvTimeoutError> {
        use std::os::fd::AsRawFd;
        if self.replies.reader.buffer().is_empty() {
            loop {
                let mut fds = [
                    libc::pollfd {
                        fd: self.replies.reader.get_ref().as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    },
                    libc::pollfd {
                        // A negative descriptor is ignored: nothing waits to be written.
                        fd: if self.stdin.waiting() {
                            self.stdin.pipe.as_raw_fd()
                        } else {
                            -1
                        },
                        events: libc::POLLOUT,
                        revents: 0,
                    },
                ];
                let left = deadline.saturating_duration_since(Instant::now());
                let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
                // SAFETY: two valid pollfds, borrowed for the duration of the call.
                let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
                if n == 0 {
                    return Err(RecvTimeoutError::Timeout);
                }
                if n < 0 {
                    if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                        return Err(RecvTimeoutError::Disconnected);
                    }
                    continue;
                }
                if fds[1].revents != 0 {
                    // A write error means the child is gone: its replies' end will say so.
                    let _ = self.stdin.write_some();
                }
                if fds[0].revents != 0 {
                    break;
                }
            }
        }
        let mut frame = Vec::new();
        match wire::read_frame(&mut self.replies.reader, &mut frame) {
            Ok(true) => Ok(frame),
            _ => Err(RecvTimeoutError::Disconnected),
        }
    }
}

/// The child's replies, read by a thread of their own where `poll` is not available.
#[cfg(not(unix))]
struct Replies(mpsc::Receiver<Vec<u8>>);

#[cfg(not(unix))]
impl Replies {
    fn new(stdout: std::process::ChildStdout) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("courier-render-pipe".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut r = BufReader::with_capacity(64 * 1024, stdout);
                let mut buf = Vec::new();
                while let Ok(true) = wire::read_frame(&mut r, &mut buf) {
                    if tx.send(std::mem::take(&mut buf)).is_err() {
                        break;
                    }
                }
            })?;
        Ok(Self(rx))
    }
}

#[cfg(not(unix))]
impl Evaluator {
    /// The next reply frame, waiting until `deadline` (writes block here: a batch is in the
    /// pipe when `send` returns, and the reading thread keeps the child from blocking).
    fn next_reply(&mut self, deadline: Instant) -> Result<Vec<u8>, RecvTimeoutError> {
        self.replies
            .0
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
    }
}
