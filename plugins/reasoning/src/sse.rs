//! A server-sent events reader: bytes in, `data` payloads out.
//!
//! Follows the HTML event-stream rules that chat-completion servers rely on: lines end in `\n`,
//! `\r\n` or `\r`; a blank line ends an event; `data:` lines of one event are joined with `\n`;
//! comments (`:`) and other fields (`event`, `id`, `retry`, unknown names) are skipped. A line
//! that is not UTF-8, or an event that grows past [`MAX_EVENT_BYTES`], is an error.

/// The largest event accepted; a server that streams without blank lines is not speaking SSE.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    data: Option<String>,
    /// The previous byte was `\r`: a following `\n` belongs to the same line end.
    after_cr: bool,
}

impl SseParser {
    /// Feeds bytes; returns the payloads of the events they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<String>, String> {
        let mut events = Vec::new();
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.end_line(&line)? {
                        events.push(event);
                    }
                }
                _ => {
                    self.line.push(byte);
                    let pending = self.line.len() + self.data.as_ref().map_or(0, String::len);
                    if pending > MAX_EVENT_BYTES {
                        return Err(format!(
                            "an SSE event is longer than {MAX_EVENT_BYTES} bytes"
                        ));
                    }
                }
            }
        }
        Ok(events)
    }

    fn end_line(&mut self, line: &[u8]) -> Result<Option<String>, String> {
        if line.is_empty() {
            return Ok(self.data.take());
        }
        let line =
            std::str::from_utf8(line).map_err(|_| "an SSE line is not valid UTF-8".to_owned())?;
        if line.starts_with(':') {
            return Ok(None);
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        if field == "data" {
            match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_ends() {
        let mut parser = SseParser::default();
        assert_eq!(parser.feed(b"data: {\"a\"").unwrap(), Vec::<String>::new());
        assert_eq!(parser.feed(b":1}\n\n").unwrap(), vec!["{\"a\":1}"]);
        assert_eq!(
            parser
                .feed(b": keep-alive\r\nevent: x\r\ndata: one\r\ndata:two\r\n\r\ndata: [DONE]\r")
                .unwrap(),
            vec!["one\ntwo"]
        );
        assert_eq!(parser.feed(b"\r").unwrap(), vec!["[DONE]"]);
    }

    #[test]
    fn lines_without_data_give_no_event() {
        let mut parser = SseParser::default();
        assert!(
            parser
                .feed(b"hello world\n\nnot sse at all\n\n")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut parser = SseParser::default();
        assert!(parser.feed(b"data: \xff\xfe\n\n").is_err());
    }
}
