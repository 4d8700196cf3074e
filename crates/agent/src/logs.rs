//! Container logs in the CRI log format (`<RFC 3339 time> <stream> <F|P> <text>`), and the
//! reading side of `kubectl logs`: `--tail`, `--since`, `--since-time`, `--timestamps`,
//! `--limit-bytes`.

use std::path::PathBuf;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};

/// Copies a pipe into the log file, one timestamped line at a time.
pub async fn copy_lines(pipe: Box<dyn AsyncRead + Unpin + Send>, path: PathBuf, stream: &'static str) {
    let Ok(mut file) = tokio::fs::OpenOptions::new().create(true).append(true).open(&path).await else { return };
    let mut reader = BufReader::new(pipe);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let full = line.last() == Some(&b'\n');
                let ts = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
                let mut rec = format!("{ts} {stream} {} ", if full { "F" } else { "P" }).into_bytes();
                rec.extend_from_slice(&line);
                if !full {
                    rec.push(b'\n');
                }
                if file.write_all(&rec).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Options of a log request.
#[derive(Default, Clone)]
pub struct Options {
    pub tail: Option<usize>,
    pub since: Option<jiff::Timestamp>,
    pub timestamps: bool,
    pub limit_bytes: Option<usize>,
}

impl Options {
    pub fn from_query(q: &std::collections::HashMap<String, String>) -> Options {
        let since = q
            .get("sinceSeconds")
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| jiff::Timestamp::now().checked_sub(jiff::SignedDuration::from_secs(s)).ok())
            .or_else(|| q.get("sinceTime").and_then(|t| t.parse().ok()));
        Options {
            tail: q.get("tailLines").and_then(|t| t.parse().ok()),
            since,
            timestamps: q.get("timestamps").is_some_and(|v| v == "true"),
            limit_bytes: q.get("limitBytes").and_then(|l| l.parse().ok()),
        }
    }

    /// Renders stored records: filtered by time, with or without their timestamps.
    pub fn render(&self, records: &[u8]) -> Vec<u8> {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut partial: Vec<u8> = Vec::new();
        for rec in records.split_inclusive(|b| *b == b'\n') {
            let mut parts = rec.splitn(4, |b| *b == b' ');
            let (Some(ts), Some(_stream), Some(tag), Some(text)) = (parts.next(), parts.next(), parts.next(), parts.next()) else { continue };
            let when: Option<jiff::Timestamp> = std::str::from_utf8(ts).ok().and_then(|t| t.parse().ok());
            if let (Some(since), Some(when)) = (self.since, when) {
                if when < since {
                    continue;
                }
            }
            let text = if tag == b"P" { text.strip_suffix(b"\n").unwrap_or(text) } else { text };
            if partial.is_empty() && self.timestamps {
                partial.extend_from_slice(ts);
                partial.push(b' ');
            }
            partial.extend_from_slice(text);
            if tag == b"F" {
                lines.push(std::mem::take(&mut partial));
            }
        }
        if !partial.is_empty() {
            lines.push(partial);
        }
        if let Some(t) = self.tail {
            lines = lines.split_off(lines.len().saturating_sub(t));
        }
        let mut out = lines.concat();
        if let Some(l) = self.limit_bytes {
            out.truncate(l);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_cri_records() {
        let recs = b"2026-01-01T00:00:00.000000001Z stdout F one\n2026-01-01T00:00:10Z stderr P tw\n2026-01-01T00:00:11Z stderr F o\n2026-01-01T00:00:20Z stdout F three\n";
        assert_eq!(Options::default().render(recs), b"one\ntwo\nthree\n");
        assert_eq!(Options { tail: Some(1), ..Default::default() }.render(recs), b"three\n");
        let since = Options { since: Some("2026-01-01T00:00:15Z".parse().unwrap()), ..Default::default() };
        assert_eq!(since.render(recs), b"three\n");
        let ts = Options { timestamps: true, tail: Some(1), ..Default::default() }.render(recs);
        assert_eq!(ts, b"2026-01-01T00:00:20Z three\n");
    }
}
