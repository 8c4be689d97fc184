pub mod trace_io;
