//! `courier bench --storage N`: bytes per stored message, per sample. For each sample, N distinct
//! copies (own recipient and code) go into a fresh store, are claimed and recorded as delivered
//! (one attempt each, as the worker writes it), and the store's footprint is divided by N.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use courier_loadgen::service::MessageMaker;
use jsonnet_courier::delivery::{Attempt, AttemptClass};
use jsonnet_courier::message::{samples, Message};
use jsonnet_courier::store::{AttemptUpdate, MessageStore, PostgresStore, SqliteStore, Status};

use super::BenchArgs;
use crate::cli::{CmdResult, Failure};

const BATCH: u64 = 500;

pub(super) async fn run(args: &BenchArgs, n: u64) -> CmdResult {
    let n = n.max(1);
    let tmp = std::env::temp_dir().join(format!("courier-storage-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(Failure::failed)?;
    let postgres = args.database.clone().filter(|d| d.starts_with("postgres"));
    let shown = postgres
        .as_deref()
        .map_or_else(|| "SQLite".to_owned(), jsonnet_courier::config::mask_url);
    if !args.json {
        eprintln!("storage bench: {n} distinct messages per sample, each recorded as delivered once, in {shown}");
        println!(
            "{:<34} {:>10} {:>14}",
            "sample", "JSON bytes", "stored bytes/msg"
        );
    }
    let mut rows = Vec::new();
    for (k, (template_type, kind, sample)) in samples::all().enumerate() {
        let name = format!("{}/{}", template_type.as_str(), kind.as_str());
        let maker = MessageMaker::new(serde_json::to_value(&sample).map_err(Failure::failed)?);
        let json_bytes = maker.nth("storage-", 0).len();
        let schema = format!("bench_storage_{}_{k}", std::process::id());
        let (store, pg): (Arc<dyn MessageStore>, Option<PostgresStore>) = match &postgres {
            Some(url) => {
                let s = PostgresStore::open_in_schema(url, &schema)
                    .await
                    .map_err(Failure::usage)?;
                (Arc::new(s.clone()), Some(s))
            }
            None => {
                let path = tmp.join(format!("{k}.db"));
                let s = SqliteStore::open(&format!("sqlite://{}", path.display()))
                    .await
                    .map_err(Failure::usage)?;
                (Arc::new(s), None)
            }
        };
        let filled = fill(&*store, &maker, n).await;
        let bytes = match filled {
            Ok(()) => store.footprint().await.map_err(Failure::failed),
            Err(e) => Err(e),
        };
        if let Some(pg) = pg {
            let _ = pg.drop_schema().await;
        }
        let per = bytes? as f64 / n as f64;
        if !args.json {
            println!("{name:<34} {json_bytes:>10} {per:>14.0}");
        }
        rows.push(
            serde_json::json!({"sample": name, "json_bytes": json_bytes, "bytes_per_message": per}),
        );
    }
    let _ = std::fs::remove_dir_all(&tmp);
    if args.json {
        println!(
            "{:#}",
            serde_json::json!({"store": shown, "messages_per_sample": n, "samples": rows})
        );
    }
    Ok(())
}

/// Inserts `n` messages, then claims and records each as delivered.
async fn fill(store: &dyn MessageStore, maker: &MessageMaker, n: u64) -> Result<(), Failure> {
    let mut from = 0;
    while from < n {
        let to = (from + BATCH).min(n);
        let batch = (from..to)
            .map(|i| Message::from_json(maker.nth("storage-", i).as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Failure::failed)?;
        store.insert(&batch).await.map_err(Failure::failed)?;
        from = to;
    }
    let worker = "storage-bench";
    loop {
        let claimed = store
            .claim_due(
                worker,
                SystemTime::now(),
                BATCH as usize,
                Duration::from_secs(60),
            )
            .await
            .map_err(Failure::failed)?;
        if claimed.is_empty() {
            return Ok(());
        }
        let now = SystemTime::now();
        let updates: Vec<AttemptUpdate> = claimed
            .into_iter()
            .map(|c| AttemptUpdate {
                id: c.id,
                worker: worker.to_owned(),
                attempt: delivered(now),
                status: Status::Sent,
                next_attempt_at: now,
            })
            .collect();
        store.record(&updates).await.map_err(Failure::failed)?;
    }
}

/// What the worker records for a first attempt answered 200 with an empty body.
fn delivered(now: SystemTime) -> Attempt {
    Attempt {
        number: 1,
        started_at: now,
        latency_ms: 1.234,
        render_ms: Some(0.012),
        class: AttemptClass::Delivered,
        status: Some(200),
        error_kind: None,
        error: None,
        response_body: None,
        retry_after_s: None,
        notes: Vec::new(),
    }
}
