//! The SQLite schema migrations (`migrations/sqlite`, embedded by `sqlx::migrate!`), applied over
//! our own connection. The bookkeeping is sqlx's own table, `_sqlx_migrations`, written as sqlx
//! writes it, so a database migrated by any version of this program reads the same.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::StoreError;

fn failed(what: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("migrating the SQLite database: {what}"))
}

/// Applies the migrations `conn` lacks, each in a write transaction of its own (so two processes
/// opening one new file apply each once). A migration recorded with another checksum (its file
/// changed since) or left unfinished is an error.
pub(super) fn run(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS _sqlx_migrations ( \
             version BIGINT PRIMARY KEY, \
             description TEXT NOT NULL, \
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, \
             success BOOLEAN NOT NULL, \
             checksum BLOB NOT NULL, \
             execution_time BIGINT NOT NULL)",
    )
    .map_err(failed)?;
    let migrator = sqlx::migrate!("migrations/sqlite");
    for m in migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        let start = std::time::Instant::now();
        conn.execute_batch("BEGIN IMMEDIATE").map_err(failed)?;
        let applied = apply(conn, m);
        match applied {
            Ok(true) => {
                let nanos = i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX);
                conn.execute(
                    "UPDATE _sqlx_migrations SET execution_time = ?1 WHERE version = ?2",
                    params![nanos, m.version],
                )
                .map_err(failed)?;
                conn.execute_batch("COMMIT").map_err(failed)?;
            }
            Ok(false) => conn.execute_batch("COMMIT").map_err(failed)?,
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Applies `m` unless recorded; returns whether it ran.
fn apply(conn: &Connection, m: &sqlx::migrate::Migration) -> Result<bool, StoreError> {
    let recorded: Option<(bool, Vec<u8>)> = conn
        .query_row(
            "SELECT success, checksum FROM _sqlx_migrations WHERE version = ?1",
            [m.version],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(failed)?;
    match recorded {
        Some((false, _)) => Err(failed(format!(
            "migration {} was left unfinished; repair the database by hand",
            m.version
        ))),
        Some((true, checksum)) if checksum != *m.checksum => Err(failed(format!(
            "migration {} was applied but has been modified since",
            m.version
        ))),
        Some(_) => Ok(false),
        None => {
            conn.execute_batch(&m.sql)
                .map_err(|e| failed(format!("migration {}: {e}", m.version)))?;
            conn.execute(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
                 execution_time) VALUES (?1, ?2, TRUE, ?3, -1)",
                params![m.version, &*m.description, &*m.checksum],
            )
            .map_err(failed)?;
            Ok(true)
        }
    }
}
