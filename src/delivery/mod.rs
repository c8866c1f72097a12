//! Delivering messages: render, build the request (or compose the mail), send, classify, retry.

mod courier;
mod report;
mod smtp;

pub use courier::Courier;
pub use report::{rfc3339, Attempt, AttemptClass, DeliveryReport, ErrorKind, Outcome};
