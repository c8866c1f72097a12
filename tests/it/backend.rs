//! The one store harness for the store contract tests and the service tests: a fresh store per
//! test on SQLite (a temp file, or memory) or PostgreSQL (a schema of its own, dropped at the end,
//! so tests run in parallel and leave nothing). PostgreSQL tests are `#[ignore]`d and need
//! `COURIER_TEST_POSTGRES_URL`.

use std::sync::Arc;

use jsonnet_courier::store::{MessageStore, PostgresStore, SqliteStore};

use crate::support::catch_unwind;

pub(crate) const POSTGRES_URL_VAR: &str = "COURIER_TEST_POSTGRES_URL";

#[derive(Clone, Copy, Debug)]
pub(crate) enum Backend {
    SqliteFile,
    SqliteMemory,
    Postgres,
}

/// The PostgreSQL test database: a test that needs it and runs without it fails, saying why.
pub(crate) fn postgres_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "set {POSTGRES_URL_VAR} to run the PostgreSQL tests (they are #[ignore]d without it)"
        )
    })
}

/// A schema name no other test uses.
pub(crate) fn fresh_schema() -> String {
    format!("t_{}", uuid::Uuid::new_v4().simple())
}

/// One backend under test, set up fresh for one test.
pub(crate) struct TestStore {
    pub store: Arc<dyn MessageStore>,
    kind: Kind,
}

enum Kind {
    SqliteFile {
        _dir: tempfile::TempDir,
        url: String,
    },
    SqliteMemory,
    Postgres {
        url: String,
        schema: String,
        stores: Vec<PostgresStore>,
    },
}

impl TestStore {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::SqliteFile => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("courier.db").display());
                let store = SqliteStore::open(&url).await.expect("open sqlite file");
                Self {
                    store: Arc::new(store),
                    kind: Kind::SqliteFile { _dir: dir, url },
                }
            }
            Backend::SqliteMemory => {
                let store = SqliteStore::open("sqlite::memory:")
                    .await
                    .expect("open memory");
                Self {
                    store: Arc::new(store),
                    kind: Kind::SqliteMemory,
                }
            }
            Backend::Postgres => {
                let url = postgres_url();
                let schema = fresh_schema();
                let store = PostgresStore::open_in_schema(&url, &schema)
                    .await
                    .expect("open postgres schema");
                Self {
                    store: Arc::new(store.clone()),
                    kind: Kind::Postgres {
                        url,
                        schema,
                        stores: vec![store],
                    },
                }
            }
        }
    }

    /// A second store on the same database, as another process would open it.
    pub async fn another(&mut self) -> Arc<dyn MessageStore> {
        match &mut self.kind {
            Kind::SqliteFile { url, .. } => {
                Arc::new(SqliteStore::open(url).await.expect("reopen sqlite"))
            }
            Kind::SqliteMemory => self.store.clone(),
            Kind::Postgres {
                url,
                schema,
                stores,
            } => {
                let store = PostgresStore::open_in_schema(url, schema)
                    .await
                    .expect("reopen postgres");
                stores.push(store.clone());
                Arc::new(store)
            }
        }
    }

    /// Closes PostgreSQL pools and drops the schema (a temp dir goes with `self`).
    pub async fn cleanup(self) {
        if let Kind::Postgres { stores, .. } = &self.kind {
            for store in stores {
                store.close().await;
            }
            if let Some(store) = stores.first() {
                store.drop_schema().await.expect("drop test schema");
            }
        }
    }

    /// Runs `body`, cleans up, then passes a panic on.
    pub async fn run(self, body: impl std::future::Future<Output = ()>) {
        let result = catch_unwind(body).await;
        self.cleanup().await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Runs `body` against a fresh store of `backend`, cleans up, then passes a panic on.
pub(crate) async fn with_store<F, Fut>(backend: Backend, body: F)
where
    F: FnOnce(Arc<dyn MessageStore>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let ts = TestStore::new(backend).await;
    let store = Arc::clone(&ts.store);
    ts.run(body(store)).await;
}
