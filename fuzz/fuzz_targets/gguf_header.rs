#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| moesim_fuzz::gguf_header(data));
