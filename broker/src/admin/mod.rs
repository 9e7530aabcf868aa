//! Administrative domain logic shared by the admin API handlers.

pub mod configs;
