//! One file per probe family.

pub mod call;
pub mod exit;
