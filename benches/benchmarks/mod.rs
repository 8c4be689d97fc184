pub mod cache_replay;
pub mod trace_io;
