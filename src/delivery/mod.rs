//! Delivering messages: render, build the request, send, classify, retry.

mod report;

pub use report::{rfc3339, Attempt, AttemptClass, DeliveryReport, ErrorKind, Outcome};
