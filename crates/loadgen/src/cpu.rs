//! CPU time by part of a bench, read from Linux's `/proc`: this process's threads grouped by
//! name (the load generator's own thread, the service's runtime, the SQLite writer, the
//! evaluators), the processes that serve it (its evaluator child processes; PostgreSQL's server
//! processes when asked: all of them, other clients' work included), and the rest of the
//! machine. On the 2-core machines
//! the benches run on, every part shares the same cores, so a throughput figure means little
//! without who took them. Where `/proc` is missing every figure is zero.

use std::collections::HashMap;
use std::time::Instant;

/// Linux reports CPU time in `/proc` in units of `USER_HZ`, 100 per second on every
/// architecture the kernel exposes to user space.
const TICKS_PER_SECOND: f64 = 100.0;

/// The name this crate's load thread carries (see [`crate::LoadThread`]).
pub const LOAD_THREAD: &str = "bench-load";

/// CPU counters at one instant.
#[derive(Debug, Clone, Default)]
struct Counters {
    /// This process's threads: thread id → (name, ticks).
    threads: HashMap<u32, (String, u64)>,
    /// Other processes by pid → (part, ticks): this process's children and, when counted,
    /// PostgreSQL's.
    processes: HashMap<u32, (&'static str, u64)>,
    /// This whole process, threads that have exited included.
    own: u64,
    /// The whole machine: (busy ticks, idle ticks) over all cores.
    machine: (u64, u64),
}

const LOAD_PART: &str = "load generator + sink";
const SERVICE_PART: &str = "service (runtime: API, worker, deliveries)";
const REST_PART: &str = "rest of the machine";
const IDLE_PART: &str = "idle";
/// Parts listed even when idle.
const ALWAYS: [&str; 2] = [LOAD_PART, SERVICE_PART];

/// A running measurement: [`CpuClock::start`], then [`CpuClock::stop`].
#[derive(Debug, Clone)]
pub struct CpuClock {
    at: Instant,
    postgres: bool,
    before: Counters,
}

/// One part's CPU time over a measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuPart {
    /// What the part is.
    pub part: String,
    /// CPU seconds it used.
    pub seconds: f64,
    /// Average cores busy with it: `seconds` over the wall time.
    pub cores: f64,
}

/// CPU time by part over a measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CpuReport {
    /// Wall time measured, seconds.
    pub wall_seconds: f64,
    /// Cores the machine has.
    pub machine_cores: usize,
    /// Parts, largest first; the last two are the rest of the machine and its idle time.
    pub parts: Vec<CpuPart>,
}

impl CpuClock {
    /// Starts measuring now; `postgres`: count PostgreSQL's server processes as a part (else
    /// they are in the rest of the machine).
    pub fn start(postgres: bool) -> Self {
        Self {
            at: Instant::now(),
            postgres,
            before: counters(postgres),
        }
    }

    /// CPU time by part since [`CpuClock::start`].
    pub fn stop(&self) -> CpuReport {
        let after = counters(self.postgres);
        let wall = self.at.elapsed().as_secs_f64().max(1e-9);
        // The load and the service are always listed, idle or not.
        let mut by_part: HashMap<&'static str, u64> = ALWAYS.map(|p| (p, 0)).into();
        for (tid, (name, ticks)) in &after.threads {
            let from = self.before.threads.get(tid).map_or(0, |t| t.1);
            *by_part.entry(thread_part(name)).or_default() += ticks.saturating_sub(from);
        }
        // Threads that exited during the measurement took their counters with them; the
        // process's own counter still holds their time: they were runtime threads.
        let threads: u64 = by_part.values().sum();
        let exited = after
            .own
            .saturating_sub(self.before.own)
            .saturating_sub(threads);
        *by_part.entry(SERVICE_PART).or_default() += exited;
        for (pid, (part, ticks)) in &after.processes {
            let from = self.before.processes.get(pid).map_or(0, |p| p.1);
            *by_part.entry(part).or_default() += ticks.saturating_sub(from);
        }
        let ours: u64 = by_part.values().sum();
        let busy = after.machine.0.saturating_sub(self.before.machine.0);
        let idle = after.machine.1.saturating_sub(self.before.machine.1);
        let seconds = |t: u64| t as f64 / TICKS_PER_SECOND;
        let mut parts: Vec<CpuPart> = by_part
            .into_iter()
            .filter(|(part, t)| *t > 0 || ALWAYS.contains(part))
            .map(|(part, t)| CpuPart {
                part: part.to_owned(),
                seconds: seconds(t),
                cores: seconds(t) / wall,
            })
            .collect();
        parts.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        for (part, t) in [(REST_PART, busy.saturating_sub(ours)), (IDLE_PART, idle)] {
            parts.push(CpuPart {
                part: part.to_owned(),
                seconds: seconds(t),
                cores: seconds(t) / wall,
            });
        }
        CpuReport {
            wall_seconds: wall,
            machine_cores: std::thread::available_parallelism().map_or(1, usize::from),
            parts,
        }
    }
}

impl CpuReport {
    /// CPU seconds of the system under test: every part but the load generator, the rest of
    /// the machine and idle time.
    pub fn service_seconds(&self) -> f64 {
        self.parts
            .iter()
            .filter(|p| !matches!(p.part.as_str(), LOAD_PART | REST_PART | IDLE_PART))
            .map(|p| p.seconds)
            .sum()
    }
}

impl std::fmt::Display for CpuReport {
    /// One line: `cpu over 3.2 s (2 cores): part 0.91 cores, …`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cpu over {:.1} s ({} cores):",
            self.wall_seconds, self.machine_cores
        )?;
        for (i, p) in self.parts.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            write!(f, "{sep}{} {:.2}", p.part, p.cores)?;
        }
        f.write_str(" cores")
    }
}

/// The part a thread of this process belongs to, by the names the courier gives its threads.
fn thread_part(name: &str) -> &'static str {
    if name == LOAD_THREAD {
        LOAD_PART
    } else if name.starts_with("courier-sqlite") {
        "store (SQLite writer)"
    } else if name.starts_with("courier-render") {
        "template evaluators"
    } else {
        SERVICE_PART
    }
}

fn counters(postgres: bool) -> Counters {
    let mut c = Counters::default();
    let own = std::process::id();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(stat) = read_stat(&task.path().join("stat")) {
                c.threads.insert(tid, (stat.name, stat.ticks));
            }
        }
    }
    if let Ok(procs) = std::fs::read_dir("/proc") {
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            let Some(stat) = read_stat(&p.path().join("stat")) else {
                continue;
            };
            let part = if stat.parent == own {
                "template evaluator processes"
            } else if postgres && stat.name == "postgres" {
                "store (PostgreSQL server)"
            } else {
                continue;
            };
            c.processes.insert(pid, (part, stat.ticks));
        }
    }
    c.own = read_stat(std::path::Path::new("/proc/self/stat")).map_or(0, |s| s.ticks);
    c.machine = machine();
    c
}

/// What a `stat` file of `/proc` says of a thread or process.
#[derive(Debug, PartialEq)]
struct Stat {
    name: String,
    parent: u32,
    /// utime + stime.
    ticks: u64,
}

fn read_stat(path: &std::path::Path) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(path).ok()?)
}

fn parse_stat(text: &str) -> Option<Stat> {
    // `pid (comm) state ppid …`: the name may hold spaces and parentheses, so it ends at the last
    // `)`; ppid is the 4th field, utime and stime the 14th and 15th.
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().take(13).collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        name,
        parent: u32::try_from(num(1)?).ok()?,
        ticks: num(11)? + num(12)?,
    })
}

/// (busy, idle) ticks of all cores, from the `cpu` line of `/proc/stat`.
fn machine() -> (u64, u64) {
    std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| parse_machine(&s))
        .unwrap_or((0, 0))
}

fn parse_machine(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    let idle = get(3) + get(4);
    let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
    Some((busy, idle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_awkward_names() {
        let line = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 75 0 0 20 0 1";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                name: "a (b) c".to_owned(),
                parent: 1,
                ticks: 325
            })
        );
        assert_eq!(parse_stat("4242 (x) S 1"), None);
    }

    #[test]
    fn machine_line() {
        let text = "cpu  100 5 50 1000 20 1 2 3 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(parse_machine(text), Some((161, 1020)));
    }

    #[test]
    fn a_busy_thread_is_counted_in_its_part() {
        if !std::path::Path::new("/proc/self/task").exists() {
            return;
        }
        let clock = CpuClock::start(false);
        let (spun, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel::<()>());
        let spin = std::thread::Builder::new()
            .name(LOAD_THREAD.into())
            .spawn(move || {
                // 0.2 s of this thread's own CPU time (20 ticks of /proc's resolution), however
                // loaded the machine; bounded in wall time.
                let until = Instant::now() + std::time::Duration::from_secs(20);
                let own = || read_stat(std::path::Path::new("/proc/thread-self/stat"));
                let mut x = 0u64;
                while own().is_some_and(|s| s.ticks < 20) && Instant::now() < until {
                    for _ in 0..100_000 {
                        x = x.wrapping_mul(31).wrapping_add(7);
                    }
                }
                spun.0.send(x).unwrap();
                // Alive until measured: an exited thread's counters are gone.
                let _ = release.1.recv();
            })
            .unwrap();
        std::hint::black_box(spun.1.recv().unwrap());
        let report = clock.stop();
        release.0.send(()).unwrap();
        spin.join().unwrap();
        let load = report
            .parts
            .iter()
            .find(|p| p.part == "load generator + sink")
            .expect("the spinning thread's part");
        assert!(load.seconds >= 0.2, "{report}");
        assert!(report.to_string().contains("load generator + sink"));
        assert_eq!(report.parts.last().map(|p| p.part.as_str()), Some("idle"));
    }
}
