//! `kubectl exec` over SPDY/3.1, the only exec transport kubectl 1.27–1.29 speak and the
//! fallback of later versions.
//!
//! No maintained Rust crate implements SPDY, so the framing is written here, after the SPDY/3
//! draft and what client-go's spdystream sends: 8-byte frame headers, SYN_STREAM/SYN_REPLY
//! carrying name/value header blocks compressed with zlib (one stream per direction for the whole
//! session, primed with SPDY's dictionary, via flate2), DATA frames with a FIN flag, and PING,
//! SETTINGS, WINDOW_UPDATE, RST_STREAM and GOAWAY. On top of it sits Kubernetes' remotecommand
//! protocol v4: the client opens one stream per channel (`streamtype`: error, stdin, stdout,
//! stderr, resize); the server replies to each, runs the command, copies the channels, and
//! writes a `Status` to the error stream at the end.

use std::collections::HashMap;
use std::time::Duration;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const FLAG_FIN: u8 = 0x01;

/// The SPDY/3 header-compression dictionary (draft 3, section 2.6.10.1): length-prefixed
/// header names and values, then a run of common value fragments; 1423 bytes, Adler-32
/// 0xe3c6a7c2 (the dictionary id every SPDY/3 zlib stream names).
pub fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
    let mut d = Vec::with_capacity(1500);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
}

#[derive(Debug)]
enum Frame {
    Control { kind: u16, data: Vec<u8> },
    Data { stream: u32, flags: u8, data: Vec<u8> },
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Frame> {
    let mut h = [0u8; 8];
    r.read_exact(&mut h).await?;
    let flags = h[4];
    let len = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
    if len > 16 << 20 {
        return Err(std::io::Error::other("SPDY frame too large"));
    }
    let mut data = vec![0u8; len];
    r.read_exact(&mut data).await?;
    if h[0] & 0x80 != 0 {
        Ok(Frame::Control { kind: u16::from_be_bytes([h[2], h[3]]), data })
    } else {
        Ok(Frame::Data { stream: u32::from_be_bytes([h[0] & 0x7f, h[1], h[2], h[3]]), flags, data })
    }
}

fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80, 0x03];
    f.extend_from_slice(&kind.to_be_bytes());
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

fn data(stream: u32, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = (stream & 0x7fff_ffff).to_be_bytes().to_vec();
    f.push(flags);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    f.extend_from_slice(payload);
    f
}

/// Inflates header blocks: one zlib stream for the session, primed with the dictionary.
struct Inflater {
    z: Decompress,
    dict: Vec<u8>,
}

/// How large an inflated header block may be (Go's MaxHeaderBytes, as kube-apiserver keeps
/// it): zlib turns a 16 MiB frame into gigabytes otherwise.
const MAX_HEADER_BLOCK: usize = 1 << 20;

impl Inflater {
    fn headers(&mut self, block: &[u8]) -> std::io::Result<HashMap<String, String>> {
        let mut out = Vec::with_capacity((block.len().saturating_mul(4) + 256).min(MAX_HEADER_BLOCK));
        let mut input = block;
        loop {
            if out.len() > MAX_HEADER_BLOCK {
                return Err(std::io::Error::other("SPDY header block too large"));
            }
            let before = self.z.total_in();
            out.reserve(4096);
            match self.z.decompress_vec(input, &mut out, FlushDecompress::Sync) {
                Ok(_) => {
                    let used = (self.z.total_in() - before) as usize;
                    input = &input[used..];
                    if input.is_empty() {
                        break;
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    let used = (self.z.total_in() - before) as usize;
                    input = &input[used..];
                    self.z.set_dictionary(&self.dict).map_err(|e| std::io::Error::other(e.to_string()))?;
                }
                Err(e) => return Err(std::io::Error::other(e.to_string())),
            }
        }
        parse_headers(&out)
    }
}

fn parse_headers(b: &[u8]) -> std::io::Result<HashMap<String, String>> {
    let bad = || std::io::Error::other("malformed SPDY header block");
    let u32_at = |i: usize| -> std::io::Result<usize> { b.get(i..i + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize).ok_or_else(bad) };
    let n = u32_at(0)?;
    let mut i = 4;
    let mut out = HashMap::new();
    for _ in 0..n {
        let nl = u32_at(i)?;
        let name = b.get(i + 4..i + 4 + nl).ok_or_else(bad)?;
        i += 4 + nl;
        let vl = u32_at(i)?;
        let value = b.get(i + 4..i + 4 + vl).ok_or_else(bad)?;
        i += 4 + vl;
        out.insert(String::from_utf8_lossy(name).to_lowercase(), String::from_utf8_lossy(value).into_owned());
    }
    Ok(out)
}

/// Deflates our header blocks (always empty ones: SYN_REPLY needs no headers).
struct Deflater {
    z: Compress,
}

impl Deflater {
    fn block(&mut self, pairs: &[(&str, &str)]) -> std::io::Result<Vec<u8>> {
        let mut raw = (pairs.len() as u32).to_be_bytes().to_vec();
        for (k, v) in pairs {
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        loop {
            out.reserve(256);
            let before = self.z.total_in() as usize;
            self.z.compress_vec(&raw, &mut out, FlushCompress::Sync).map_err(|e| std::io::Error::other(e.to_string()))?;
            let used = self.z.total_in() as usize - before;
            raw.drain(..used);
            if raw.is_empty() && out.capacity() > out.len() {
                break;
            }
        }
        Ok(out)
    }
}

/// Which channels the client asked for.
pub struct Wanted {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Reads a client's byte stream as the session loop does, up to the process: frames, and the
/// header block of every SYN_STREAM through the session's inflater. The fuzzing entry point
/// (`crates/fuzz`); returns how many frames were read before the bytes ran out or were refused.
pub fn read_client_frames(bytes: &[u8]) -> usize {
    let mut input = bytes;
    let mut inflater = Inflater { z: Decompress::new(true), dict: dictionary() };
    let mut frames = 0;
    // Reading from a byte slice never waits, so no runtime is needed to drive it.
    while let Ok(frame) = futures::executor::block_on(read_frame(&mut input)) {
        frames += 1;
        if let Frame::Control { kind: SYN_STREAM, data } = frame {
            if data.len() >= 10 && inflater.headers(&data[10..]).is_err() {
                break;
            }
        }
    }
    frames
}

/// Serves one exec session on an upgraded connection; `spawn` starts the process.
pub async fn serve<IO>(io: IO, wanted: Wanted, spawn: impl FnOnce() -> std::io::Result<crate::execio::ExecIo>) -> std::io::Result<()>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(64);
    // One writer owns the socket, so frames never interleave.
    let writer = tokio::spawn(async move {
        while let Some(frame) = out_rx.recv().await {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });
    let dict = dictionary();
    let mut inflater = Inflater { z: Decompress::new(true), dict: dict.clone() };
    let mut deflater = Deflater { z: Compress::new(Compression::default(), true) };
    deflater.z.set_dictionary(&dict).map_err(|e| std::io::Error::other(e.to_string()))?;

    // Collect the client's streams.
    let mut streams: HashMap<String, u32> = HashMap::new();
    let need = |s: &HashMap<String, u32>| {
        s.contains_key("error")
            && (!wanted.stdin || s.contains_key("stdin"))
            && (!wanted.stdout || s.contains_key("stdout"))
            && (!wanted.stderr || wanted.tty || s.contains_key("stderr"))
            && (!wanted.tty || s.contains_key("resize"))
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !need(&streams) {
        let frame =
            tokio::time::timeout_at(deadline, read_frame(&mut rd)).await.map_err(|_| std::io::Error::other("timed out waiting for the client's streams"))??;
        match frame {
            Frame::Control { kind: SYN_STREAM, data } if data.len() >= 10 => {
                let id = u32::from_be_bytes([data[0] & 0x7f, data[1], data[2], data[3]]);
                let headers = inflater.headers(&data[10..])?;
                let kind = headers.get("streamtype").cloned().unwrap_or_default();
                let mut reply = id.to_be_bytes().to_vec();
                reply.extend(deflater.block(&[])?);
                let _ = out_tx.send(control(SYN_REPLY, 0, &reply)).await;
                streams.insert(kind, id);
            }
            Frame::Control { kind: PING, data, .. } => {
                let _ = out_tx.send(control(PING, 0, &data)).await;
            }
            Frame::Control { kind: GOAWAY, .. } => return Ok(()),
            _ => {}
        }
    }
    let error_stream = streams["error"];
    let crate::execio::ExecIo { mut child, stdin: child_stdin, stdout: out, stderr: err, resize } = match spawn() {
        Ok(c) => c,
        Err(e) => {
            let status = serde_json::json!({"metadata": {}, "status": "Failure", "message": format!("failed to exec in container: {e}"), "reason": "InternalError", "code": 500});
            let _ = out_tx.send(data(error_stream, FLAG_FIN, status.to_string().as_bytes())).await;
            drop(out_tx);
            let _ = writer.await;
            return Ok(());
        }
    };
    // Output channels.
    let mut pumps = Vec::new();
    for (name, pipe) in [("stdout", out), ("stderr", err)] {
        let (Some(mut pipe), Some(&id)) = (pipe, streams.get(name)) else { continue };
        let tx = out_tx.clone();
        pumps.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match pipe.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(data(id, 0, &buf[..n])).await.is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = tx.send(data(id, FLAG_FIN, &[])).await;
        }));
    }
    // Input: stdin data and stream control, until the process ends.
    let stdin_id = streams.get("stdin").copied();
    let resize_id = streams.get("resize").copied();
    let mut child_stdin = child_stdin;
    let ping_tx = out_tx.clone();
    let input = tokio::spawn(async move {
        while let Ok(frame) = read_frame(&mut rd).await {
            match frame {
                Frame::Data { stream, flags, data: bytes } if Some(stream) == stdin_id => {
                    if let Some(s) = child_stdin.as_mut() {
                        if !bytes.is_empty() {
                            let _ = s.write_all(&bytes).await;
                        }
                    }
                    if flags & FLAG_FIN != 0 {
                        child_stdin = None;
                    }
                }
                Frame::Data { stream, data: bytes, .. } if Some(stream) == resize_id => crate::execio::apply_resize(&resize, &bytes),
                Frame::Control { kind: PING, data: d, .. } => {
                    let _ = ping_tx.send(control(PING, 0, &d)).await;
                }
                Frame::Control { kind: GOAWAY, .. } | Frame::Control { kind: RST_STREAM, .. } => {}
                _ => {}
            }
        }
    });
    let status = child.wait().await?;
    for p in pumps {
        let _ = p.await;
    }
    let code = status.code().unwrap_or(1);
    let st: Value = if code == 0 {
        serde_json::json!({"metadata": {}, "status": "Success"})
    } else {
        serde_json::json!({"metadata": {}, "status": "Failure", "message": format!("command terminated with non-zero exit code: exit status {code}"), "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    };
    let _ = out_tx.send(data(error_stream, FLAG_FIN, st.to_string().as_bytes())).await;
    // Give the client a moment to read and close; then end the session.
    tokio::time::sleep(Duration::from_millis(100)).await;
    input.abort();
    let _ = out_tx.send(control(GOAWAY, 0, &[0, 0, 0, 0, 0, 0, 0, 0])).await;
    drop(out_tx);
    let _ = writer.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_blocks_round_trip_through_the_dictionary() {
        let dict = dictionary();
        let mut d = Deflater { z: Compress::new(Compression::default(), true) };
        d.z.set_dictionary(&dict).unwrap();
        let mut i = Inflater { z: Decompress::new(true), dict };
        for _ in 0..3 {
            let block = d.block(&[("streamtype", "stdout"), ("port", "1")]).unwrap();
            let h = i.headers(&block).unwrap();
            assert_eq!(h["streamtype"], "stdout");
        }
    }

    #[test]
    fn a_header_block_that_inflates_past_the_limit_is_refused() {
        let dict = dictionary();
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(&dict).unwrap();
        let zeros = vec![0u8; 64 << 20];
        let mut block = Vec::with_capacity(1 << 20);
        z.compress_vec(&zeros, &mut block, flate2::FlushCompress::Sync).unwrap();
        assert!(block.len() < 1 << 20, "a small frame: {}", block.len());
        let mut i = Inflater { z: Decompress::new(true), dict };
        let e = i.headers(&block).unwrap_err();
        assert_eq!(e.to_string(), "SPDY header block too large");
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // zlib names its preset dictionary by Adler-32; a wrong byte would fail every session.
        let (mut a, mut b) = (1u32, 0u32);
        for x in &d {
            a = (a + *x as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6a7c2);
    }

    #[test]
    fn frames_encode_their_headers() {
        let f = control(SYN_REPLY, 0, &[0, 0, 0, 1]);
        assert_eq!(&f[..8], &[0x80, 0x03, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04]);
        let d = data(5, FLAG_FIN, b"hi");
        assert_eq!(&d[..8], &[0, 0, 0, 5, 1, 0, 0, 2]);
    }
}
