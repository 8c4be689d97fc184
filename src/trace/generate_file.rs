//! A generated trace as a native file (`moesim trace generate`): the header, then every
//! request's records in request order, generated in parallel over requests.
//!
//! Request `r` draws from its own stream (see `generate`), so requests are generated on the
//! rayon pool in chunks and written in order: the bytes never depend on the thread count.
//! The caller owns the sink (the CLI writes through an `AtomicFile`, so a failed run leaves no
//! partial file).

use std::io::{self, Write};

use rayon::prelude::*;

use super::generate::{GeneratedEvent, Generator, GeneratorSpec};
use super::native::{format_record, header_line};

/// Writes `requests` requests generated from `spec` and `seed` to `out` as a native trace;
/// returns the number of records written. `spec` must be valid.
pub fn write_generated(
    spec: &GeneratorSpec,
    requests: u32,
    seed: u64,
    out: &mut dyn Write,
) -> io::Result<u64> {
    let generator = Generator::new(spec, seed);
    let mut header = header_line(&spec.meta(seed, requests));
    header.push('\n');
    out.write_all(header.as_bytes())?;
    // A few requests per thread at a time: memory stays at one chunk's records.
    let chunk = (rayon::current_num_threads() * 2).max(1) as u32;
    let mut records = 0u64;
    let mut start = 0u32;
    while start < requests {
        let end = (start + chunk).min(requests);
        let parts: Vec<(Vec<u8>, u64)> = (start..end)
            .into_par_iter()
            .map(|r| {
                let mut buf = Vec::new();
                let mut n = 0u64;
                let mut ev = GeneratedEvent::default();
                let mut events = generator.request(r);
                while events.try_next_event(&mut ev)? {
                    format_record(&ev.record, &mut buf);
                    n += 1;
                }
                Ok((buf, n))
            })
            .collect::<Result<_, String>>()
            .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))?;
        for (buf, n) in parts {
            out.write_all(&buf)?;
            records += n;
        }
        start = end;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::generate::load_spec;

    #[test]
    fn bytes_do_not_depend_on_the_thread_count() {
        let spec = load_spec("micro-moe").unwrap();
        let write = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut bytes = Vec::new();
            let n = pool
                .install(|| write_generated(&spec, 5, 3, &mut bytes))
                .unwrap();
            (bytes, n)
        };
        let (one, n) = write(1);
        assert_eq!(write(3), (one.clone(), n));
        let per_request = (spec.prefill_tokens + spec.decode_tokens) as u64 * spec.layers as u64;
        assert_eq!(n, 5 * per_request);
        // The header and one line per record.
        assert_eq!(one.iter().filter(|&&b| b == b'\n').count() as u64, n + 1);
    }
}
