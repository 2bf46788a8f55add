//! One file per probe family.

pub mod call;
pub mod exit;
pub mod fork;
pub mod library;
