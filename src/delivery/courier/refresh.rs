//! Remote templates refreshed in the background: each `http(s)://` template (channel bodies and
//! message templates) is fetched again, conditionally, when its copy expires (see
//! [`crate::template::remote`]). A changed template is compiled and swapped in atomically for the
//! next attempts; a failed fetch or a template that no longer compiles keeps the last good copy,
//! logged and counted (`courier_template_refreshes_total`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{route, Courier, Setup};
use crate::http::{self, HttpClient};
use crate::template::remote::{self, Fetched, Validators};
use crate::template::source::{redact, RemoteCopy, FETCH_TIMEOUT, MAX_REMOTE_BYTES};
use crate::template::Template;

/// How often the refresh loop looks for due templates (a reload may bring new ones).
const POLL: Duration = Duration::from_secs(1);

/// The remote templates of one configuration, by URI. Cheap to clone (shared).
#[derive(Clone)]
pub(super) struct Remotes(Arc<Shared>);

struct Shared {
    states: Mutex<HashMap<String, State>>,
    client: OnceLock<HttpClient>,
}

struct State {
    /// The text in use.
    source: String,
    validators: Validators,
    fresh_for: Duration,
    due: Instant,
    /// Failed fetches in a row: retries back off from the copy's freshness.
    failures: u32,
    refreshes: u64,
    last: Option<RefreshOutcome>,
    last_error: Option<String>,
}

/// What one refresh of a remote template did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The server answered 304, or the same text: the copy stays, nothing is recompiled.
    Unchanged,
    /// The text changed and the new one is in use.
    Updated,
    /// The fetch failed: the last good copy stays.
    Failed,
    /// The text changed but does not compile: the last good copy stays.
    Rejected,
}

impl RefreshOutcome {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::Updated => "updated",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
        }
    }
}

/// A remote template's refresh state.
#[derive(Debug, Clone)]
pub struct RemoteTemplate {
    /// The URI, without credentials or query.
    pub uri: String,
    /// The validator sent as `If-None-Match` next time.
    pub etag: Option<String>,
    /// The validator sent as `If-Modified-Since` next time.
    pub last_modified: Option<String>,
    /// How long the current copy is good, as the server said (within bounds).
    pub fresh_for: Duration,
    /// Refreshes attempted since the configuration was loaded.
    pub refreshes: u64,
    /// What the last refresh did.
    pub last: Option<RefreshOutcome>,
    /// Why the last failed or rejected refresh failed.
    pub last_error: Option<String>,
}

/// When to fetch again: after the copy's freshness; after failures, that doubled per failure in a
/// row up to the default interval (a server that is down is not asked every second).
fn retry_after(fresh_for: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return fresh_for;
    }
    let doubled = fresh_for.saturating_mul(1 << (failures - 1).min(16));
    doubled.min(remote::DEFAULT_REFRESH.max(fresh_for))
}

impl Remotes {
    pub(super) fn new(copies: HashMap<String, RemoteCopy>) -> Self {
        let now = Instant::now();
        let states = copies
            .into_iter()
            .map(|(uri, c)| {
                let state = State {
                    source: c.source,
                    validators: c.validators,
                    fresh_for: c.fresh_for,
                    due: now + c.fresh_for,
                    failures: 0,
                    refreshes: 0,
                    last: None,
                    last_error: None,
                };
                (uri, state)
            })
            .collect();
        Self(Arc::new(Shared {
            states: Mutex::new(states),
            client: OnceLock::new(),
        }))
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, State>) -> T) -> T {
        match self.0.states.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn client(&self) -> &HttpClient {
        self.0.client.get_or_init(|| http::client(FETCH_TIMEOUT))
    }

    fn same(&self, other: &Remotes) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Courier {
    /// The remote templates in force and how their refreshes went, sorted by URI.
    pub fn remote_templates(&self) -> Vec<RemoteTemplate> {
        let mut out = self.current().remotes.with(|states| {
            states
                .iter()
                .map(|(uri, s)| RemoteTemplate {
                    uri: redact(uri),
                    etag: s.validators.etag.clone(),
                    last_modified: s.validators.last_modified.clone(),
                    fresh_for: s.fresh_for,
                    refreshes: s.refreshes,
                    last: s.last,
                    last_error: s.last_error.clone(),
                })
                .collect::<Vec<_>>()
        });
        out.sort_by(|a, b| a.uri.cmp(&b.uri));
        out
    }

    /// Refreshes every remote template whose copy has expired, one after the other. Returns when
    /// the next one is due, if any.
    pub async fn refresh_remotes(&self) -> Option<Instant> {
        let remotes = self.current().remotes.clone();
        let now = Instant::now();
        let due: Vec<(String, Validators)> = remotes.with(|states| {
            states
                .iter()
                .filter(|(_, s)| s.due <= now)
                .map(|(uri, s)| (uri.clone(), s.validators.clone()))
                .collect()
        });
        for (uri, validators) in due {
            let fetched = remote::fetch(
                remotes.client(),
                &uri,
                FETCH_TIMEOUT,
                MAX_REMOTE_BYTES,
                Some(&validators),
            )
            .await;
            let (outcome, error) = self.apply(&remotes, &uri, fetched);
            crate::metrics::template_refreshed(outcome.as_str());
            match (&error, outcome) {
                (Some(e), RefreshOutcome::Failed) => tracing::warn!(
                    "remote template {}: refresh failed; the last good copy stays: {e}",
                    redact(&uri)
                ),
                (Some(e), _) => tracing::error!(
                    "remote template {} changed but is refused; the last good copy stays: {e}",
                    redact(&uri)
                ),
                (None, RefreshOutcome::Updated) => {
                    tracing::info!("remote template {} changed: in use", redact(&uri));
                }
                (None, _) => tracing::debug!("remote template {} unchanged", redact(&uri)),
            }
            remotes.with(|states| {
                if let Some(s) = states.get_mut(&uri) {
                    s.refreshes += 1;
                    s.last = Some(outcome);
                    s.last_error = error;
                    s.failures = if outcome == RefreshOutcome::Failed {
                        s.failures.saturating_add(1)
                    } else {
                        0
                    };
                    s.due = Instant::now() + retry_after(s.fresh_for, s.failures);
                }
            });
        }
        remotes.with(|states| states.values().map(|s| s.due).min())
    }

    /// Refreshes remote templates as they expire until `shutdown` turns true (`courier serve`
    /// runs this on its own task).
    pub async fn keep_remotes_fresh(&self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let next = self.refresh_remotes().await;
            let wait = next.map_or(POLL, |n| {
                n.saturating_duration_since(Instant::now()).min(POLL)
            });
            tokio::select! {
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        return;
                    }
                }
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Records a fetch's validators and freshness, and swaps a changed text in.
    fn apply(
        &self,
        remotes: &Remotes,
        uri: &str,
        fetched: Result<Fetched, http::FetchError>,
    ) -> (RefreshOutcome, Option<String>) {
        let (body, validators, fresh_for) = match fetched {
            Err(e) => return (RefreshOutcome::Failed, Some(e.to_string())),
            Ok(Fetched::NotModified {
                validators,
                fresh_for,
            }) => (None, validators, fresh_for),
            Ok(Fetched::Modified {
                body,
                validators,
                fresh_for,
            }) => (Some(body), validators, fresh_for),
        };
        let previous = remotes.with(|states| {
            let s = states.get_mut(uri)?;
            s.validators = validators;
            s.fresh_for = fresh_for;
            Some(s.source.clone())
        });
        let (Some(body), Some(previous)) = (body, previous) else {
            return (RefreshOutcome::Unchanged, None);
        };
        let Ok(text) = String::from_utf8(body.to_vec()) else {
            return (RefreshOutcome::Rejected, Some("not UTF-8 text".into()));
        };
        if text == previous {
            return (RefreshOutcome::Unchanged, None);
        }
        match self.swap(remotes, uri, &text) {
            Ok(()) => {
                remotes.with(|states| {
                    if let Some(s) = states.get_mut(uri) {
                        s.source = text;
                    }
                });
                (RefreshOutcome::Updated, None)
            }
            Err(e) => (RefreshOutcome::Rejected, Some(e)),
        }
    }

    /// Replaces the setup in force with one where `uri` reads `text`, compiled like at load. A
    /// setup of another configuration (reloaded meanwhile) is left alone.
    fn swap(&self, remotes: &Remotes, uri: &str, text: &str) -> Result<(), String> {
        let seen = self.current();
        if !seen.remotes.same(remotes) {
            return Ok(());
        }
        let template = Template::new(redact(uri), text);
        let routes = route::with_template(
            &seen.routes,
            &seen.config,
            self.pool.limits(),
            uri,
            &template,
        )
        .map_err(|(key, e)| format!("{key}: {e}"))?;
        let composer = seen
            .composer
            .with_source(&seen.config.templates, uri, text)
            .map_err(|e| e.to_string())?;
        let next = Arc::new(Setup {
            routes: routes.unwrap_or_else(|| seen.routes.clone()),
            composer: composer.unwrap_or_else(|| seen.composer.clone()),
            mailers: seen.mailers.clone(),
            policy: seen.policy.clone(),
            config: Arc::clone(&seen.config),
            remotes: seen.remotes.clone(),
        });
        let mut current = match self.setup.write() {
            Ok(c) => c,
            Err(poisoned) => poisoned.into_inner(),
        };
        if Arc::ptr_eq(&current, &seen) {
            *current = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_refreshes_back_off_up_to_the_default_interval() {
        let s = Duration::from_secs;
        assert_eq!(retry_after(s(1), 0), s(1));
        assert_eq!(retry_after(s(1), 1), s(1));
        assert_eq!(retry_after(s(1), 2), s(2));
        assert_eq!(retry_after(s(1), 4), s(8));
        assert_eq!(retry_after(s(1), 40), remote::DEFAULT_REFRESH);
        assert_eq!(
            retry_after(s(3600), 3),
            s(3600),
            "never sooner than the copy's freshness"
        );
    }
}
