//! Vectorized kernels: group-id mapping, aggregate accumulators and the hash aggregation
//! operator, plus a row-at-a-time reference used to check them.
//!
//! Kernels run over whole Arrow arrays; the `DataType` switch happens once per batch at the
//! boundary, hot loops are generic over the native type. This crate does not know about SQL.
#![warn(missing_docs)]

pub mod accumulators;
pub mod aggregate;
pub mod analytic;
pub mod approx_percentile;
pub mod calendar;
pub mod expr;
pub mod expr_fuzz;
pub mod functions;
pub mod fused;
pub mod fuzz;
pub mod group_values;
pub mod hash;
mod huge_pages;
pub mod math;
pub mod more_accumulators;
pub mod onebrc;
pub mod reference;
pub mod regex_functions;
pub mod sliding;
pub mod sort;
pub mod string_functions;
pub mod window;

pub use aggregate::{AggregateExpr, AggregateFunction, BitOperation, HashAggregator};

/// Which groups an emit takes: all, or the first `n` (in group-id order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmitTo {
    /// Every group.
    All,
    /// The first `n` groups; the rest are renumbered from 0.
    First(usize),
}

impl EmitTo {
    /// How many of `len` groups this emit takes.
    pub fn count(self, len: usize) -> usize {
        match self {
            EmitTo::All => len,
            EmitTo::First(n) => n.min(len),
        }
    }
}
