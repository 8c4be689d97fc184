pub mod cache_replay;
pub mod quant_gemv;
pub mod route_replay;
pub mod sim_decode;
pub mod trace_io;
