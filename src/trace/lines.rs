//! Fast line reading: large reads into one buffer, lines handed out as borrowed slices.
//!
//! `BufRead::read_until` copies every line into a caller buffer; trace files have tens of
//! millions of short lines, so [`LineReader`] instead scans its own 1 MiB buffer for newlines
//! and only moves the unfinished tail when it refills.

use std::io::{self, Read};

const CHUNK: usize = 1 << 20;

/// Reads newline-terminated lines from `R`.
#[derive(Debug)]
pub struct LineReader<R> {
    input: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

/// One line: its bytes without the newline (and without a trailing `\r`), and whether it
/// ended with a newline (false only for a last line cut short).
#[derive(Debug, Clone, Copy)]
pub struct Line<'a> {
    /// The text.
    pub text: &'a [u8],
    /// Whether a newline terminated it.
    pub complete: bool,
}

impl<R: Read> LineReader<R> {
    /// A reader over `input`.
    pub fn new(input: R) -> LineReader<R> {
        LineReader {
            input,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.buf[self.start..self.end]) {
                let line_start = self.start;
                self.start += i + 1;
                return Ok(Some(Line {
                    text: trim_cr(&self.buf[line_start..line_start + i]),
                    complete: true,
                }));
            }
            if self.eof {
                if self.start == self.end {
                    return Ok(None);
                }
                let line_start = self.start;
                self.start = self.end;
                return Ok(Some(Line {
                    text: trim_cr(&self.buf[line_start..self.end]),
                    complete: false,
                }));
            }
            self.refill()?;
        }
    }

    fn refill(&mut self) -> io::Result<()> {
        // Move the unfinished tail to the front, grow if one line fills the buffer.
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = self.input.read(&mut self.buf[self.end..])?;
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines_and_flags_an_unterminated_last_line() {
        let text = b"a\r\nbb\n\nccc";
        let mut r = LineReader::new(&text[..]);
        let mut got = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            got.push((String::from_utf8(l.text.to_vec()).unwrap(), l.complete));
        }
        assert_eq!(
            got,
            [
                ("a".into(), true),
                ("bb".into(), true),
                (String::new(), true),
                ("ccc".into(), false)
            ]
        );
    }

    #[test]
    fn handles_lines_longer_than_the_buffer() {
        let long = vec![b'x'; CHUNK * 2 + 7];
        let mut text = long.clone();
        text.push(b'\n');
        text.extend_from_slice(b"y\n");
        let mut r = LineReader::new(&text[..]);
        assert_eq!(r.next_line().unwrap().unwrap().text.len(), long.len());
        assert_eq!(r.next_line().unwrap().unwrap().text, b"y");
        assert!(r.next_line().unwrap().is_none());
    }
}
