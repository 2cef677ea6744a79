//! Splits a byte stream into lines without ever holding more than the maximum line length.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Line(Vec<u8>),
    /// A line longer than the maximum; its bytes were discarded as they arrived.
    TooLong {
        bytes: usize,
    },
}

pub struct LineReader<R> {
    inner: R,
    max: usize,
}

impl<R: AsyncBufRead + Unpin> LineReader<R> {
    pub fn new(inner: R, max: usize) -> Self {
        LineReader { inner, max }
    }

    /// The next non-blank line, or None at end of input. A final line without a newline
    /// still counts.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            let mut line = Vec::new();
            let mut seen = 0usize;
            let mut overflow = false;
            loop {
                let available = self.inner.fill_buf().await?;
                if available.is_empty() {
                    if seen == 0 {
                        return Ok(None);
                    }
                    break;
                }
                let (chunk, done) = match memchr(available) {
                    Some(at) => (&available[..at], Some(at + 1)),
                    None => (available, None),
                };
                seen += chunk.len();
                if !overflow && line.len() + chunk.len() > self.max {
                    overflow = true;
                    line = Vec::new();
                }
                if !overflow {
                    line.extend_from_slice(chunk);
                }
                let consumed = done.unwrap_or(chunk.len());
                self.inner.consume(consumed);
                if done.is_some() {
                    break;
                }
            }
            if overflow {
                return Ok(Some(Frame::TooLong { bytes: seen }));
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(Frame::Line(line)));
        }
    }
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(input: &[u8], max: usize) -> Vec<Frame> {
        let mut reader = LineReader::new(tokio::io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        while let Some(frame) = reader.next().await.unwrap() {
            out.push(frame);
        }
        out
    }

    #[tokio::test]
    async fn splits_skips_blanks_and_bounds_length() {
        let got = frames(b"ab\r\n\n  \n0123456789abc\ncd", 8).await;
        assert_eq!(
            got,
            vec![
                Frame::Line(b"ab".to_vec()),
                Frame::TooLong { bytes: 13 },
                Frame::Line(b"cd".to_vec()),
            ]
        );
    }
}
