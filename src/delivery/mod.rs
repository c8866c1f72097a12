//! Delivering messages: render, build the request, send, classify, retry.

mod courier;
mod report;

pub use courier::{Courier, RouteInfo};
pub use report::{rfc3339, Attempt, AttemptClass, DeliveryReport, ErrorKind, Outcome};
