//! The receiver's response body, read only as far as it is useful and made safe to store. The
//! status is the receiver's answer; the body is kept for diagnostics only, so a receiver that
//! answers with an endless, dripping, binary or NUL-filled body costs a bounded read and a
//! bounded, printable string — never a worker for the whole request timeout, and never a row
//! the database refuses (PostgreSQL's `text` cannot hold NUL, and one refused row used to fail
//! the whole batch of recorded outcomes).

use std::fmt::Write;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;

/// Reads at most `limit` bytes for at most `deadline`, then stops (the connection is dropped with
/// the response). A body error or the deadline just ends the read, keeping what arrived.
pub async fn read_prefix(body: &mut Incoming, limit: usize, deadline: Duration) -> String {
    let until = tokio::time::Instant::now() + deadline;
    let mut prefix = Vec::new();
    while prefix.len() < limit {
        match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                // Trailers are not data: skipped.
                let Ok(chunk) = frame.into_data() else {
                    continue;
                };
                let take = chunk.len().min(limit.saturating_sub(prefix.len()));
                prefix.extend_from_slice(chunk.get(..take).unwrap_or_default());
            }
            Ok(None | Some(Err(_))) => return sanitise(&prefix, limit),
            Err(_) => {
                let mut text = sanitise(&prefix, limit);
                let _ = write!(
                    text,
                    "…[body read stopped after {} ms]",
                    deadline.as_millis()
                );
                return text;
            }
        }
    }
    sanitise(&prefix, limit)
}

/// Lossy UTF-8 with control characters escaped (`\u0000`), except tab and line breaks, which
/// keep an HTML or text error page readable; at most `limit` bytes, cut on a character boundary.
pub fn sanitise(bytes: &[u8], limit: usize) -> String {
    let lossy = String::from_utf8_lossy(bytes);
    let mut text = String::with_capacity(lossy.len().min(limit));
    for c in lossy.chars() {
        let escaped_len = if is_escaped(c) { 6 } else { c.len_utf8() };
        if text.len() + escaped_len > limit {
            break;
        }
        if is_escaped(c) {
            let _ = write!(text, "\\u{:04x}", u32::from(c));
        } else {
            text.push(c);
        }
    }
    text
}

fn is_escaped(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_bad_utf8_replaced() {
        assert_eq!(
            sanitise(b"ok\0\x1b[1m\x7f", 100),
            "ok\\u0000\\u001b[1m\\u007f"
        );
        assert_eq!(sanitise(b"a\tb\r\nc", 100), "a\tb\r\nc");
        assert_eq!(sanitise(b"\xff\xfex", 100), "\u{fffd}\u{fffd}x");
        assert_eq!(sanitise("\u{85}".as_bytes(), 100), "\\u0085");
        assert!(!sanitise(&[0u8; 50], 1000).contains('\0'));
    }

    #[test]
    fn the_result_is_capped_on_a_character_boundary() {
        assert_eq!(sanitise("éé".as_bytes(), 3), "é");
        assert_eq!(sanitise(b"\0\0", 8), "\\u0000");
        assert_eq!(sanitise(&[b'x'; 10_000], 4096).len(), 4096);
    }
}
