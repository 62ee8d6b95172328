//! Lock contention of the session registry, against a faithful port of the
//! locking model of NeMo Agent Toolkit's Python client (reported as `seed_port`)
//! and against the floor (a bare map lookup plus an atomic increment and
//! decrement).
//!
//! Two modes:
//! - `cargo bench -p mcp-group-registry --features _bench --bench registry`
//!   (the feature exposes the registry's benchmark hooks) runs the criterion
//!   benchmarks (single- and multi-task acquire + release, per path);
//! - `... -- --summary FILE [--quick]` (what `cargo xtask bench` runs) measures
//!   the whole table — 1, 2, 8, 64 tasks on a 2-worker runtime, with and
//!   without a writer inserting and removing a session every 100 µs — plus
//!   parallel creation and a 10,000-session cleanup, prints it, and writes
//!   the summary JSON.
#![allow(missing_docs, clippy::unwrap_used, unreachable_pub)]

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use criterion::Criterion;
use mcp_group_core::{SessionId, SessionKey};
use mcp_group_registry::{Registry, RegistryConfig, SessionHandle};
use mcp_group_test_kit::InMemoryTransport;

const SESSIONS: usize = 1_000;
const WRITER_PERIOD: Duration = Duration::from_micros(100);
const WRITER_TARGET_PER_SEC: f64 = 10_000.0;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn keys() -> Vec<SessionKey> {
    (0..SESSIONS)
        .map(|i| SessionKey::new(SessionId::new(format!("session-{i}"))))
        .collect()
}

/// xorshift: random keys without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % SESSIONS as u64) as usize
    }
}

// ---------------------------------------------------------------- the four paths

/// (a) A faithful port of NeMo Agent Toolkit's Python client: an async RW
/// lock before a per-session async lock guarding the ref count;
/// `last_activity` set on release.
struct SeedPort {
    sessions: tokio::sync::RwLock<HashMap<SessionKey, Arc<SeedSession>>>,
}

struct SeedSession {
    lock: tokio::sync::Mutex<usize>,
    last_activity: std::sync::Mutex<Instant>,
}

impl SeedPort {
    fn new(keys: &[SessionKey]) -> Self {
        let map = keys
            .iter()
            .map(|k| {
                let session = SeedSession {
                    lock: tokio::sync::Mutex::new(0),
                    last_activity: std::sync::Mutex::new(Instant::now()),
                };
                (k.clone(), Arc::new(session))
            })
            .collect();
        Self {
            sessions: tokio::sync::RwLock::new(map),
        }
    }

    async fn acquire_release(&self, key: &SessionKey) {
        let session = {
            let sessions = self.sessions.read().await;
            let Some(session) = sessions.get(key).cloned() else {
                return;
            };
            *session.lock.lock().await += 1;
            session
        };
        std::hint::black_box(&session);
        let sessions = self.sessions.read().await;
        let mut refs = session.lock.lock().await;
        *refs -= 1;
        *session.last_activity.lock().unwrap() = Instant::now();
        drop(refs);
        drop(sessions);
    }

    fn write_churn(&self, key: &SessionKey) {
        let session = Arc::new(SeedSession {
            lock: tokio::sync::Mutex::new(0),
            last_activity: std::sync::Mutex::new(Instant::now()),
        });
        self.sessions.blocking_write().insert(key.clone(), session);
        self.sessions.blocking_write().remove(key);
    }
}

/// (d) The floor: a map lookup, an `Arc` clone, an atomic add and sub.
struct Floor {
    sessions: RwLock<HashMap<SessionKey, Arc<AtomicU64>>>,
}

impl Floor {
    fn new(keys: &[SessionKey]) -> Self {
        Self {
            sessions: RwLock::new(keys.iter().map(|k| (k.clone(), Arc::default())).collect()),
        }
    }

    fn acquire_release(&self, key: &SessionKey) {
        let Some(refs) = self.sessions.read().unwrap().get(key).cloned() else {
            return;
        };
        refs.fetch_add(1, Ordering::AcqRel);
        std::hint::black_box(&refs);
        refs.fetch_sub(1, Ordering::AcqRel);
    }

    fn write_churn(&self, key: &SessionKey) {
        self.sessions
            .write()
            .unwrap()
            .insert(key.clone(), Arc::default());
        self.sessions.write().unwrap().remove(key);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    SeedPort,
    Keyed,
    Handle,
    Floor,
}

impl Path {
    const ALL: [Path; 4] = [Path::SeedPort, Path::Keyed, Path::Handle, Path::Floor];

    fn name(self) -> &'static str {
        match self {
            Path::SeedPort => "seed_port",
            Path::Keyed => "keyed",
            Path::Handle => "handle",
            Path::Floor => "floor",
        }
    }
}

struct Subjects {
    keys: Arc<Vec<SessionKey>>,
    seed: Arc<SeedPort>,
    floor: Arc<Floor>,
    registry: Registry<InMemoryTransport>,
    handles: Vec<SessionHandle<InMemoryTransport>>,
}

impl Subjects {
    async fn new() -> Self {
        let keys = keys();
        let registry = Registry::new(
            InMemoryTransport::empty(),
            RegistryConfig::new(SESSIONS + 16, Duration::from_secs(3600)),
        );
        let mut handles = Vec::with_capacity(SESSIONS);
        for key in &keys {
            handles.push(registry.handle(key).await.unwrap());
        }
        Self {
            seed: Arc::new(SeedPort::new(&keys)),
            floor: Arc::new(Floor::new(&keys)),
            keys: Arc::new(keys),
            registry,
            handles,
        }
    }

    fn write_churn(&self, path: Path, key: &SessionKey) {
        match path {
            Path::SeedPort => self.seed.write_churn(key),
            Path::Floor => self.floor.write_churn(key),
            Path::Keyed | Path::Handle => {
                self.registry.__bench_insert(key);
                self.registry.__bench_remove(key);
            }
        }
    }
}

/// Runs `total_ops` acquire + release pairs spread over `tasks` tasks and
/// returns the wall time.
async fn run_ops(subjects: &Subjects, path: Path, tasks: usize, total_ops: u64) -> Duration {
    let per_task = (total_ops / tasks as u64).max(1);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let keys = subjects.keys.clone();
        let seed = subjects.seed.clone();
        let floor = subjects.floor.clone();
        let registry = subjects.registry.clone();
        let mut handles = if path == Path::Handle {
            subjects.handles.clone()
        } else {
            Vec::new()
        };
        set.spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
            for i in 0..per_task {
                let k = rng.next();
                match path {
                    Path::SeedPort => seed.acquire_release(&keys[k]).await,
                    Path::Keyed => drop(registry.acquire(&keys[k]).await.unwrap()),
                    Path::Handle => drop(handles[k].acquire().await.unwrap()),
                    Path::Floor => floor.acquire_release(&keys[k]),
                }
                // Let other tasks run, as a real caller would between calls.
                if tasks > 1 && i % 256 == 255 {
                    tokio::task::yield_now().await;
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    start.elapsed()
}

/// A writer thread inserting and removing a session every 100 µs; returns
/// the achieved writes per second when stopped.
fn start_writer(
    subjects: &Arc<Subjects>,
    path: Path,
) -> (Arc<AtomicBool>, std::thread::JoinHandle<f64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let handle = {
        let stop = stop.clone();
        let subjects = subjects.clone();
        std::thread::spawn(move || {
            let key = SessionKey::new(SessionId::new("writer-churn"));
            let start = Instant::now();
            let mut next = start;
            let mut writes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                while Instant::now() < next {
                    std::thread::yield_now();
                }
                subjects.write_churn(path, &key);
                writes += 1;
                next += WRITER_PERIOD;
            }
            writes as f64 / start.elapsed().as_secs_f64()
        })
    };
    (stop, handle)
}

// ---------------------------------------------------------------- summary mode

struct Row {
    path: Path,
    tasks: usize,
    writer: bool,
    ns_per_op: f64,
    writer_rate: Option<f64>,
}

/// Measures one cell of the table (a task count, with or without the
/// writer) for every path. The paths are run in interleaved rounds and each
/// reports its median, so that drift on a shared machine (frequency, other
/// load) falls on all paths alike instead of on whichever ran last.
fn measure_cell(
    rt: &tokio::runtime::Runtime,
    subjects: &Arc<Subjects>,
    tasks: usize,
    writer: bool,
    run_time: Duration,
    rounds: usize,
) -> Vec<Row> {
    let ops: Vec<u64> = Path::ALL
        .iter()
        .map(|&path| {
            let mut ops = 2_000u64;
            loop {
                let elapsed = rt.block_on(run_ops(subjects, path, tasks, ops));
                if elapsed >= run_time / 4 || ops > 1 << 26 {
                    let scale = run_time.as_secs_f64() / elapsed.as_secs_f64().max(1e-6);
                    break ((ops as f64 * scale) as u64).max(tasks as u64);
                }
                ops *= 4;
            }
        })
        .collect();
    let mut samples = vec![Vec::with_capacity(rounds); Path::ALL.len()];
    let mut rates = vec![Vec::new(); Path::ALL.len()];
    for _ in 0..rounds {
        for (i, &path) in Path::ALL.iter().enumerate() {
            let running_writer = writer.then(|| start_writer(subjects, path));
            let elapsed = rt.block_on(run_ops(subjects, path, tasks, ops[i]));
            if let Some((stop, thread)) = running_writer {
                stop.store(true, Ordering::Relaxed);
                rates[i].push(thread.join().unwrap());
            }
            let done = (ops[i] / tasks as u64).max(1) * tasks as u64;
            samples[i].push(elapsed.as_nanos() as f64 / done as f64);
        }
    }
    Path::ALL
        .iter()
        .enumerate()
        .map(|(i, &path)| Row {
            path,
            tasks,
            writer,
            ns_per_op: median(&mut samples[i]),
            writer_rate: writer.then(|| rates[i].iter().sum::<f64>() / rates[i].len() as f64),
        })
        .collect()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn parallel_creation_ms(rt: &tokio::runtime::Runtime) -> f64 {
    rt.block_on(async {
        let registry = Registry::new(
            InMemoryTransport::empty().with_connect_delay(Duration::from_millis(50)),
            RegistryConfig::new(1_000, Duration::from_secs(3600)),
        );
        let start = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..64 {
            let registry = registry.clone();
            set.spawn(async move {
                drop(
                    registry
                        .acquire(&SessionKey::new(SessionId::new(format!("new-{i}"))))
                        .await
                        .unwrap(),
                );
            });
        }
        while set.join_next().await.is_some() {}
        let ms = start.elapsed().as_secs_f64() * 1e3;
        registry.shutdown(Duration::from_secs(1)).await;
        ms
    })
}

/// Cleanup of 10,000 idle sessions: its duration, and the worst latency of a
/// map read (peek) seen by a concurrent reader meanwhile.
fn cleanup_10k(rt: &tokio::runtime::Runtime) -> (f64, f64) {
    rt.block_on(async {
        let registry = Registry::new(
            InMemoryTransport::empty(),
            RegistryConfig::new(20_000, Duration::from_secs(3600)).with_reap_interval(None),
        );
        let keys: Vec<SessionKey> = (0..10_000)
            .map(|i| SessionKey::new(SessionId::new(format!("idle-{i}"))))
            .collect();
        for key in &keys {
            registry.__bench_insert(key);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let registry = registry.clone();
            let stop = stop.clone();
            let key = keys[17].clone();
            std::thread::spawn(move || {
                let mut worst = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    std::hint::black_box(registry.peek(&key));
                    worst = worst.max(t.elapsed());
                }
                worst
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let start = Instant::now();
        let removed = registry.cleanup_sessions(Some(Duration::ZERO)).await;
        let took = start.elapsed();
        stop.store(true, Ordering::Relaxed);
        let worst = reader.join().unwrap();
        assert_eq!(removed, 10_000);
        (took.as_secs_f64() * 1e3, worst.as_secs_f64() * 1e6)
    })
}

fn summary(path: &str, quick: bool) {
    let rt = runtime();
    let subjects = Arc::new(rt.block_on(Subjects::new()));
    let (run_time, rounds) = if quick {
        (Duration::from_millis(25), 5)
    } else {
        (Duration::from_millis(60), 15)
    };
    // Warm up (caches, page faults, CPU frequency) before the first cell, so
    // that whichever path and cell come first are not charged for it.
    measure_cell(&rt, &subjects, 1, false, run_time, 2);
    let mut rows = Vec::new();
    for writer in [false, true] {
        for tasks in [1, 2, 8, 64] {
            rows.extend(measure_cell(
                &rt, &subjects, tasks, writer, run_time, rounds,
            ));
        }
    }
    let creation = parallel_creation_ms(&rt);
    let (cleanup_ms, worst_read_us) = cleanup_10k(&rt);

    println!(
        "\nregistry contention: ns per acquire+release pair (aggregate), 2-worker runtime, {SESSIONS} sessions, random keys"
    );
    println!(
        "{:<8} {:>6} | {:>10} {:>10} {:>10} {:>10} | writes/s (seed, keyed, floor)",
        "writer", "tasks", "seed_port", "keyed", "handle", "floor"
    );
    for writer in [false, true] {
        for tasks in [1, 2, 8, 64] {
            let get = |p: Path| {
                rows.iter()
                    .find(|r| r.path == p && r.tasks == tasks && r.writer == writer)
                    .unwrap()
            };
            let rate = |p: Path| {
                get(p)
                    .writer_rate
                    .map_or("-".to_owned(), |r| format!("{r:.0}"))
            };
            println!(
                "{:<8} {:>6} | {:>10.1} {:>10.1} {:>10.1} {:>10.1} | {}",
                if writer { "10k/s" } else { "none" },
                tasks,
                get(Path::SeedPort).ns_per_op,
                get(Path::Keyed).ns_per_op,
                get(Path::Handle).ns_per_op,
                get(Path::Floor).ns_per_op,
                if writer {
                    format!(
                        "{}, {}, {}",
                        rate(Path::SeedPort),
                        rate(Path::Keyed),
                        rate(Path::Floor)
                    )
                } else {
                    String::new()
                },
            );
        }
    }
    println!("64 new sessions, 50 ms handshake each: {creation:.1} ms total");
    println!(
        "cleanup of 10,000 idle sessions: {cleanup_ms:.2} ms; worst concurrent map read: {worst_read_us:.1} µs"
    );

    let ns = |p: Path, tasks: usize, writer: bool| {
        rows.iter()
            .find(|r| r.path == p && r.tasks == tasks && r.writer == writer)
            .unwrap()
            .ns_per_op
    };
    let keyed_writer_rate = rows
        .iter()
        .find(|r| r.path == Path::Keyed && r.tasks == 64 && r.writer)
        .and_then(|r| r.writer_rate)
        .unwrap_or(0.0);
    let mut json = String::from("{\n");
    let mut field = |k: &str, v: f64| json.push_str(&format!("  \"{k}\": {v:.4},\n"));
    field(
        "keyed_speedup_vs_seed_port_64_tasks_writer",
        ns(Path::SeedPort, 64, true) / ns(Path::Keyed, 64, true),
    );
    field(
        "keyed_slowdown_vs_floor_1_task",
        ns(Path::Keyed, 1, false) / ns(Path::Floor, 1, false),
    );
    field(
        "handle_speedup_vs_seed_port_1_task",
        ns(Path::SeedPort, 1, false) / ns(Path::Handle, 1, false),
    );
    field(
        "writer_rate_fraction_64_tasks",
        keyed_writer_rate / WRITER_TARGET_PER_SEC,
    );
    field("parallel_creation_64x50ms_ms", creation);
    field("cleanup_10000_idle_ms", cleanup_ms);
    field("cleanup_worst_reader_us", worst_read_us);
    for r in &rows {
        field(
            &format!(
                "ns_{}_{}_tasks{}",
                r.path.name(),
                r.tasks,
                if r.writer { "_writer" } else { "" }
            ),
            r.ns_per_op,
        );
    }
    json.truncate(json.len() - 2);
    json.push_str("\n}\n");
    if let Some(dir) = std::path::Path::new(path).parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(path, json).unwrap();
    println!("wrote {path}");
}

// ---------------------------------------------------------------- criterion mode

fn criterion_benches(c: &mut Criterion) {
    let rt = runtime();
    let subjects = rt.block_on(Subjects::new());
    let mut group = c.benchmark_group("acquire_release");
    for tasks in [1usize, 64] {
        for p in Path::ALL {
            group.bench_function(format!("{}/{tasks}_tasks", p.name()), |b| {
                b.iter_custom(|iters| {
                    rt.block_on(run_ops(&subjects, p, tasks, iters.max(tasks as u64)))
                });
            });
        }
    }
    group.finish();
}

/// `--profile PATH TASKS`: run one path for ~3 s, for `perf record`.
fn profile(path: &str, tasks: usize) {
    let rt = runtime();
    let subjects = Arc::new(rt.block_on(Subjects::new()));
    let path = Path::ALL.into_iter().find(|p| p.name() == path).unwrap();
    let start = Instant::now();
    let mut ops = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        rt.block_on(run_ops(&subjects, path, tasks, 100_000));
        ops += 100_000;
    }
    println!("{} ns/op", start.elapsed().as_nanos() as f64 / ops as f64);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--profile") {
        profile(&args[i + 1], args[i + 2].parse().unwrap());
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--summary") {
        let path = args
            .get(i + 1)
            .cloned()
            .unwrap_or_else(|| "target/xtask-bench/registry.json".into());
        summary(&path, args.iter().any(|a| a == "--quick"));
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
