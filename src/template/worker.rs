//! The evaluator process of template isolation: the child side of [`super::wire`].
//!
//! [`run_worker`] reads the limits, caps its own address space (RLIMIT_AS) before it evaluates
//! anything, answers "ready", then renders batches from stdin to stdout until stdin ends. The
//! parent kills it at a render's deadline; as a backstop, a watchdog thread ends the process
//! itself when a render runs far past the timeout or when its parent has gone.

use std::collections::HashMap;
use std::io::{self, BufReader, BufWriter, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::wire::{self, Hello};
use super::{CtxRef, Engine, RenderError, RenderErrorKind, Template};

/// Exit status when the watchdog ends a render that outlived its parent's deadline.
const EXIT_RUNAWAY: i32 = 70;

/// Serves a render pool over stdin and stdout; the `courier template-worker` subcommand. A
/// program of a library user that runs its pool with process isolation calls this when started
/// with the arguments it gave [`super::ProcessOptions::args`].
///
/// # Errors
/// The pipe breaks, a frame is malformed, or the engine cannot be built (the import directory
/// is missing).
pub fn run_worker() -> io::Result<()> {
    let mut input = BufReader::new(io::stdin().lock());
    let mut output = BufWriter::new(io::stdout().lock());
    let mut frame = Vec::new();
    if !wire::read_frame(&mut input, &mut frame)? {
        return Ok(());
    }
    let hello: Hello = serde_json::from_slice(&frame)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    limit_memory(hello.max_memory_bytes)?;
    let limits = hello.limits();
    let mut engine = Engine::new(limits.clone())?;
    let epoch = Instant::now();
    let started = Arc::new(AtomicU64::new(0));
    spawn_watchdog(epoch, Arc::clone(&started), limits.timeout)?;
    wire::write_frame(&mut output, b"ready")?;
    output.flush()?;

    let mut templates: HashMap<u64, Template> = HashMap::new();
    let mut out = String::with_capacity(1024);
    while wire::read_frame(&mut input, &mut frame)? {
        for request in wire::parse_batch(&frame)? {
            if request.reset {
                templates.clear();
            }
            if let Some((name, source)) = request.source {
                templates.insert(request.template_id, Template::new(name, source));
            }
            let result = match templates.get(&request.template_id) {
                Some(template) => {
                    let now = epoch.elapsed().as_millis() as u64;
                    started.store(now.max(1), Ordering::Release);
                    let r = engine.render_into(template, CtxRef::Json(request.ctx), &mut out);
                    started.store(0, Ordering::Release);
                    r
                }
                None => Err(RenderError::new(
                    RenderErrorKind::Crashed,
                    &Template::new(format!("#{}", request.template_id), ""),
                    "the evaluator process was sent a template it does not know",
                )),
            };
            wire::write_reply(&mut output, result.as_ref().map(|()| out.as_str()))?;
            // Each reply leaves at once: the parent times every render from the previous reply.
            output.flush()?;
        }
    }
    Ok(())
}

/// Ends the process when a render has run for twice the timeout plus a second (the parent
/// should have killed it at the timeout), or when the parent is gone (stdin may never be read
/// again while a render loops). `started` is the current render's start in milliseconds since
/// `epoch`, 0 when idle.
fn spawn_watchdog(epoch: Instant, started: Arc<AtomicU64>, timeout: Duration) -> io::Result<()> {
    let limit = (timeout * 2 + Duration::from_secs(1)).as_millis() as u64;
    #[cfg(unix)]
    let parent = std::os::unix::process::parent_id();
    thread::Builder::new()
        .name("courier-worker-watchdog".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            thread::sleep(Duration::from_millis(50));
            #[cfg(unix)]
            if std::os::unix::process::parent_id() != parent {
                std::process::exit(0);
            }
            let t = started.load(Ordering::Acquire);
            let now = epoch.elapsed().as_millis() as u64;
            if t != 0 && now.saturating_sub(t) > limit {
                eprintln!("a render ran past {limit} ms; the evaluator process ends itself");
                std::process::exit(EXIT_RUNAWAY);
            }
        })?;
    Ok(())
}

/// Caps the process's address space, so that a template allocating without bound fails here
/// (the allocation aborts this process) instead of growing until the host runs out.
#[cfg(unix)]
fn limit_memory(bytes: u64) -> io::Result<()> {
    if bytes == 0 {
        return Ok(());
    }
    let limit = libc::rlimit {
        rlim_cur: bytes as libc::rlim_t,
        rlim_max: bytes as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass and has no other effect on this process's memory.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_AS, &limit) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(unix))]
fn limit_memory(_bytes: u64) -> io::Result<()> {
    Ok(())
}
