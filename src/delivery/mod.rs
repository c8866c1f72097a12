//! Delivering messages. [`Courier`] runs an attempt in phases: route the message to its channel
//! (`route.rs`), render the template, send over the channel's transport (`request.rs` builds the
//! HTTP request, with [`shaped`] reading a template's own request and [`stamp`] adding the
//! per-message headers; `http.rs` sends it, `smtp.rs` sends mail), record the answer in an [`Attempt`] (`report.rs`); then the
//! [`policy`] decides what follows, for `Courier::deliver` and the service worker alike.

mod courier;
mod http;
mod http_channel;
pub mod policy;
mod report;
pub mod request;
mod route;
pub mod shaped;
mod smtp;
pub mod stamp;

pub use courier::{Courier, RefreshOutcome, RemoteTemplate, RouteInfo};
pub use http::SendError;
pub use policy::{Decision, GiveUp, RetryPolicy};
pub use report::{rfc3339, Attempt, AttemptClass, DeliveryReport, ErrorKind, Outcome};
pub use request::{RequestError, RequestTemplate};
