//! Quiver's shared vocabulary: the error type, the row-shaped record model and exact values.
//!
//! This crate holds no engine logic and depends on no other Quiver crate.
#![warn(missing_docs)]

pub mod dead_letter;
pub mod error;
pub mod prefix;
pub mod record;
pub mod rng;
pub mod value;

pub use dead_letter::{DeadLetter, DeadLetterPayload};
pub use error::{Position, QuiverError, Result};
pub use record::Record;
pub use value::{format_decimal, Decimal, Timestamp, Value};
