//! The signalling messages: JSON text frames on the page's WebSocket (`/ws`).
//!
//! The server offers (webrtcbin's `create-offer`), the page answers; both sides trickle their
//! ICE candidates. The server also forwards the agent's captions and decisions, and says why
//! it ends a session.

use serde::{Deserialize, Serialize};

/// One WebSocket text frame, in either direction. `type` names the variant (kebab-case).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Signal {
    /// Server to page: webrtcbin's offer.
    Offer { sdp: String },
    /// Page to server: the browser's answer.
    Answer { sdp: String },
    /// Either way: one trickled ICE candidate (`candidate:...` line, media line index).
    Ice {
        candidate: String,
        #[serde(rename = "sdpMLineIndex")]
        sdp_mline_index: u32,
    },
    /// Server to page: one line of the agent's `transcript` pad (`user: ...`, `agent: ...`).
    Caption { text: String },
    /// Server to page: one of the agent's decision bus messages (`user-turn-ended`, ...), with
    /// the seconds since the agent started and a short detail (reason, text) when there is one.
    Decision {
        kind: String,
        time_s: f64,
        detail: String,
    },
    /// Server to page: the session cannot go on (busy, negotiation failed, pipeline error).
    Error { message: String },
}

impl Signal {
    /// Parses one text frame, with an error a page author can act on.
    pub fn parse(text: &str) -> Result<Signal, String> {
        serde_json::from_str(text).map_err(|e| format!("bad signalling message ({e}): {text}"))
    }

    /// The text frame.
    pub fn to_json(&self) -> String {
        // A derived Serialize of strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"type":"error","message":"cannot encode a message: {e}"}}"#)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_match_what_the_page_sends_and_reads() {
        let ice = Signal::parse(
            r#"{"type":"ice","candidate":"candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host","sdpMLineIndex":0}"#,
        )
        .unwrap();
        assert_eq!(
            ice,
            Signal::Ice {
                candidate: "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host".into(),
                sdp_mline_index: 0
            }
        );
        assert_eq!(
            Signal::parse(r#"{"type":"answer","sdp":"v=0\r\n"}"#).unwrap(),
            Signal::Answer {
                sdp: "v=0\r\n".into()
            }
        );
        assert_eq!(
            Signal::Offer { sdp: "v=0".into() }.to_json(),
            r#"{"type":"offer","sdp":"v=0"}"#
        );
        assert_eq!(
            Signal::Decision {
                kind: "user-turn-ended".into(),
                time_s: 1.5,
                detail: "smart-turn".into()
            }
            .to_json(),
            r#"{"type":"decision","kind":"user-turn-ended","time_s":1.5,"detail":"smart-turn"}"#
        );
    }

    #[test]
    fn bad_frames_are_errors_naming_the_frame() {
        let error = Signal::parse(r#"{"type":"hello"}"#).unwrap_err();
        assert!(error.contains(r#"{"type":"hello"}"#), "{error}");
        assert!(Signal::parse("not json").is_err());
        assert!(Signal::parse(r#"{"type":"ice","candidate":"x"}"#).is_err());
    }
}
