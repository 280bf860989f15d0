//! The context package and the reasoning result: what goes into `reasoningsidecar` and what
//! comes out of it.
//!
//! # Context package (`application/x-interaction-context`)
//!
//! The interaction model asks the background model for help by pushing a **context package**:
//! one UTF-8 JSON object per buffer, caps [`CONTEXT_CAPS`] (`application/x-interaction-context`,
//! no caps fields). The buffer's PTS is the running time at which the request was made. Schema,
//! version 1 (every running time is in nanoseconds of the pipeline's running time, as a
//! GStreamer `ClockTime` is):
//!
//! ```json
//! {
//!   "version": 1,
//!   "request_id": 7,
//!   "trigger": { "reason": "user-turn-ended", "running_time_ns": 5200000000, "detail": null },
//!   "conversation": [
//!     { "speaker": "user", "role": "user", "start_ns": 1000000000, "end_ns": 2400000000,
//!       "text": "What is the capital of France?" },
//!     { "speaker": "agent", "role": "agent", "start_ns": 2900000000, "end_ns": 3300000000,
//!       "text": "Let me think about",
//!       "truncation": { "planned": "Let me think about that for a second.", "heard_chars": 18 } },
//!     { "speaker": "alice", "role": "user", "start_ns": 3400000000, "end_ns": 5000000000,
//!       "text": "Sorry, go on." }
//!   ],
//!   "observations": [
//!     { "running_time_ns": 5100000000, "source": "camera", "label": "a person waving",
//!       "score": 0.82 }
//!   ]
//! }
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `version` | [`CONTEXT_VERSION`]; a reader refuses a package from a newer major version |
//! | `request_id` | unsigned, increasing within a stream: a higher id is a newer request and supersedes every older one still running |
//! | `trigger.reason` | why it was asked: `user-turn-ended`, `user-request`, `observation`, `filler-timeout` or `other` (any unknown reason reads as `other`) |
//! | `trigger.running_time_ns` | when the decision was taken |
//! | `trigger.detail` | optional free text (for example the tool or the question) |
//! | `conversation[]` | oldest first: `speaker` (a label: `user`, `agent`, or a participant's name), `role` (`user`, `agent` or `system`), `start_ns`, optional `end_ns`, `text` |
//! | `conversation[].text` | for the agent: what the user actually **heard**, not what was planned |
//! | `conversation[].truncation` | only on an agent turn that was cut off (the user barged in): `planned` is the whole text the agent meant to say, `heard_chars` how many characters of it were played out |
//! | `observations[]` | the latest visual (or other) observations: `running_time_ns`, `source`, `label`, optional `score`. `interactionmodel` writes the classes of its latest classified camera frame here, one entry each, best first: `source` `camera`, `running_time_ns` of the frame, `label` an ImageNet-1k class name, `score` its probability |
//!
//! Unknown fields are ignored, so a version 1 reader accepts packages from writers that add
//! fields.
//!
//! # Reasoning result (`application/x-interaction-result`)
//!
//! The sidecar answers as a stream of **results**: one UTF-8 JSON object per buffer, caps
//! [`RESULT_CAPS`] (`application/x-interaction-result`, no caps fields). The buffer's PTS is the
//! running time at which the result was pushed. `microturnmux`'s `text_%u` pads accept these
//! buffers beside `text/x-raw, format=utf8`.
//!
//! ```json
//! { "version": 1, "request_id": 7, "seq": 3, "final": false,
//!   "text": "The capital of France", "delta": " France", "error": null }
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `request_id` | the request this answers |
//! | `seq` | 0, 1, 2, … within one request, in push order |
//! | `final` | `false` for a partial result, `true` for the last result of this request; exactly one final result goes out for every request that was started, unless it was cancelled (a superseded or yielded request ends with no final result) |
//! | `text` | the whole answer so far (cumulative) |
//! | `delta` | what this result adds to the previous one (`text` of the previous result + `delta` = `text`) |
//! | `error` | `null`, or on a failed request `{ "kind": ..., "message": ... }`; an error result is always final. `kind` is one of `unreachable`, `timeout`, `http-status`, `protocol`, `disconnected`, `model`, `bad-request`; `message` is a short sentence the interaction model may say aloud. `text` still holds what arrived before the failure |

use serde::{Deserialize, Serialize};

/// Caps of a context package buffer.
pub const CONTEXT_CAPS: &str = "application/x-interaction-context";
/// Media type (caps structure name) of a context package buffer.
pub const CONTEXT_MEDIA_TYPE: &str = "application/x-interaction-context";
/// Caps of a reasoning result buffer.
pub const RESULT_CAPS: &str = "application/x-interaction-result";
/// Media type (caps structure name) of a reasoning result buffer.
pub const RESULT_MEDIA_TYPE: &str = "application/x-interaction-result";
/// The context package version this crate writes and reads.
pub const CONTEXT_VERSION: u32 = 1;
/// The result version this crate writes and reads.
pub const RESULT_VERSION: u32 = 1;

/// A parse failure, with a message that says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not valid UTF-8 JSON: {0}")]
    Json(String),
    #[error("version {found} is newer than the supported version {supported}")]
    UnsupportedVersion { found: u32, supported: u32 },
}

/// Why the interaction model asked for reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TriggerReason {
    /// The user finished a turn that needs an answer.
    UserTurnEnded,
    /// The user asked for something explicitly (a command, a chat message).
    UserRequest,
    /// Something was seen that may need a comment.
    Observation,
    /// Reasoning took long and the interaction model wants an update.
    FillerTimeout,
    /// Anything else, including reasons a newer writer added.
    #[serde(other)]
    Other,
}

/// Why and when the request was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    pub reason: TriggerReason,
    /// Running time of the decision, in nanoseconds.
    pub running_time_ns: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The role a speaker plays in the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    User,
    Agent,
    System,
}

/// How an agent turn was cut off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// The whole text the agent planned to say.
    pub planned: String,
    /// How many characters (Unicode scalar values) of `planned` were played out.
    pub heard_chars: usize,
}

/// One turn of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Turn {
    /// A label: `user`, `agent`, or a participant's name.
    pub speaker: String,
    pub role: Role,
    /// Running time the turn started, in nanoseconds.
    pub start_ns: u64,
    /// Running time the turn ended, in nanoseconds, when it has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_ns: Option<u64>,
    /// What was said; for the agent, what was actually heard.
    pub text: String,
    /// Present only on an agent turn that was cut off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<Truncation>,
}

/// A visual (or other) observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    pub running_time_ns: u64,
    pub source: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
}

/// A context package, version 1 (see the module documentation for the schema).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContextPackage {
    pub version: u32,
    pub request_id: u64,
    pub trigger: Trigger,
    #[serde(default)]
    pub conversation: Vec<Turn>,
    #[serde(default)]
    pub observations: Vec<Observation>,
}

impl ContextPackage {
    /// A package of the current version with no conversation and no observations.
    pub fn new(request_id: u64, trigger: Trigger) -> Self {
        Self {
            version: CONTEXT_VERSION,
            request_id,
            trigger,
            conversation: Vec::new(),
            observations: Vec::new(),
        }
    }

    /// Parses one package from a buffer's bytes (surrounding whitespace is allowed).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let package: Self =
            serde_json::from_slice(bytes).map_err(|err| ParseError::Json(err.to_string()))?;
        if package.version > CONTEXT_VERSION {
            return Err(ParseError::UnsupportedVersion {
                found: package.version,
                supported: CONTEXT_VERSION,
            });
        }
        Ok(package)
    }

    /// Serialises the package to the bytes of one buffer (one line of JSON, no newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// What went wrong with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The server could not be reached (connection refused, DNS).
    Unreachable,
    /// The request took longer than its timeout.
    Timeout,
    /// The server answered with a non-success HTTP status.
    HttpStatus,
    /// The server's answer was not the expected protocol (garbage, malformed SSE or JSON).
    Protocol,
    /// The connection closed before the answer was complete.
    Disconnected,
    /// The local model failed.
    Model,
    /// The context package could not be read.
    BadRequest,
    /// Anything else, including kinds a newer writer added.
    #[serde(other)]
    Other,
}

/// The error carried by a failed result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultError {
    pub kind: ErrorKind,
    /// A short sentence that can be said aloud.
    pub message: String,
}

/// One reasoning result (see the module documentation for the schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasoningResult {
    pub version: u32,
    pub request_id: u64,
    pub seq: u32,
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The whole answer so far.
    pub text: String,
    /// What this result adds to the previous one.
    pub delta: String,
    #[serde(default)]
    pub error: Option<ResultError>,
}

impl ReasoningResult {
    /// Parses one result from a buffer's bytes (surrounding whitespace is allowed).
    pub fn parse(bytes: &[u8]) -> Result<Self, ParseError> {
        let result: Self =
            serde_json::from_slice(bytes).map_err(|err| ParseError::Json(err.to_string()))?;
        if result.version > RESULT_VERSION {
            return Err(ParseError::UnsupportedVersion {
                found: result.version,
                supported: RESULT_VERSION,
            });
        }
        Ok(result)
    }

    /// Serialises the result to the bytes of one buffer (one line of JSON, no newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// True for a result that carries an error.
    pub fn is_error(&self) -> bool {
        self.error.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ContextPackage {
        let mut package = ContextPackage::new(
            7,
            Trigger {
                reason: TriggerReason::UserTurnEnded,
                running_time_ns: 5_200_000_000,
                detail: None,
            },
        );
        package.conversation.push(Turn {
            speaker: "user".into(),
            role: Role::User,
            start_ns: 1_000_000_000,
            end_ns: Some(2_400_000_000),
            text: "What is the capital of France?".into(),
            truncation: None,
        });
        package.conversation.push(Turn {
            speaker: "agent".into(),
            role: Role::Agent,
            start_ns: 2_900_000_000,
            end_ns: Some(3_300_000_000),
            text: "Let me think about".into(),
            truncation: Some(Truncation {
                planned: "Let me think about that for a second.".into(),
                heard_chars: 18,
            }),
        });
        package.observations.push(Observation {
            running_time_ns: 5_100_000_000,
            source: "camera".into(),
            label: "a person waving".into(),
            score: Some(0.82),
        });
        package
    }

    #[test]
    fn context_round_trips() {
        let package = sample();
        let bytes = package.to_bytes();
        assert_eq!(ContextPackage::parse(&bytes), Ok(package));
    }

    #[test]
    fn documented_example_parses() {
        // The example in the module documentation, field for field.
        let text = r#"{ "version": 1, "request_id": 7,
          "trigger": { "reason": "user-turn-ended", "running_time_ns": 5200000000, "detail": null },
          "conversation": [
            { "speaker": "user", "role": "user", "start_ns": 1000000000, "end_ns": 2400000000,
              "text": "What is the capital of France?" },
            { "speaker": "agent", "role": "agent", "start_ns": 2900000000, "end_ns": 3300000000,
              "text": "Let me think about",
              "truncation": { "planned": "Let me think about that for a second.", "heard_chars": 18 } }
          ],
          "observations": [ { "running_time_ns": 5100000000, "source": "camera",
              "label": "a person waving", "score": 0.82 } ] }"#;
        let parsed = ContextPackage::parse(text.as_bytes()).expect("documented example parses");
        assert_eq!(parsed, sample());
    }

    #[test]
    fn unknown_trigger_and_fields_are_accepted() {
        let text = br#"{"version":1,"request_id":3,"extra":true,
            "trigger":{"reason":"tool-finished","running_time_ns":1}}"#;
        let parsed = ContextPackage::parse(text).expect("parses");
        assert_eq!(parsed.trigger.reason, TriggerReason::Other);
        assert!(parsed.conversation.is_empty());
    }

    #[test]
    fn newer_version_and_garbage_are_refused() {
        let newer =
            br#"{"version":2,"request_id":3,"trigger":{"reason":"other","running_time_ns":1}}"#;
        assert_eq!(
            ContextPackage::parse(newer),
            Err(ParseError::UnsupportedVersion {
                found: 2,
                supported: 1
            })
        );
        assert!(matches!(
            ContextPackage::parse(b"\xff not json"),
            Err(ParseError::Json(_))
        ));
        assert!(matches!(
            ContextPackage::parse(br#"{"version":1}"#),
            Err(ParseError::Json(_))
        ));
    }

    #[test]
    fn result_round_trips_with_final_keyword() {
        let result = ReasoningResult {
            version: RESULT_VERSION,
            request_id: 7,
            seq: 3,
            is_final: true,
            text: "The capital of France is Paris.".into(),
            delta: " Paris.".into(),
            error: Some(ResultError {
                kind: ErrorKind::Disconnected,
                message: "I lost my connection to the reasoning server.".into(),
            }),
        };
        let bytes = result.to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        assert_eq!(json["final"], serde_json::Value::Bool(true));
        assert_eq!(json["error"]["kind"], "disconnected");
        assert_eq!(ReasoningResult::parse(&bytes), Ok(result));
    }
}
