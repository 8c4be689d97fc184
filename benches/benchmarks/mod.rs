pub mod cache_replay;
pub mod route_replay;
pub mod trace_io;
