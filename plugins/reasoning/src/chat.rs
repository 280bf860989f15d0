//! From a context package to chat messages (the same messages for both backends).
//!
//! - the system prompt comes first; the latest observations are appended to it, one line per
//!   source and running time: `- camera at 3.2 s: desk (41%), monitor (22%)` (the labels of one
//!   frame, best first, with their scores as percentages when they have one);
//! - user turns become `user` messages; a participant other than the plain `user` speaks as
//!   `name: text`;
//! - agent turns become `assistant` messages holding what the user actually **heard**; a cut-off
//!   turn ends with `…` and a note that the user interrupted, so the model does not assume the
//!   rest was said;
//! - consecutive messages of the same role are joined;
//! - when the conversation does not end with a user message and the trigger carries a detail,
//!   the detail is the last user message.

use interaction_protocol::context::{ContextPackage, Role};
use serde::{Deserialize, Serialize};

/// One chat message, as OpenAI's chat API and the chat templates take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// The note that marks an agent turn the user cut off.
pub const INTERRUPTED_NOTE: &str = "… (the user interrupted me here)";

/// The chat messages for a context package.
pub fn messages_for(package: &ContextPackage, system_prompt: &str) -> Vec<ChatMessage> {
    let mut system = system_prompt.trim().to_owned();
    if !package.observations.is_empty() {
        if !system.is_empty() {
            system.push_str("\n\n");
        }
        system.push_str("Latest observations:");
        // Observations of the same source and running time (the classes of one camera frame)
        // share a line, in the package's order.
        let mut lines: Vec<(&str, u64, Vec<String>)> = Vec::new();
        for observation in &package.observations {
            let label = match observation.score {
                Some(score) => format!("{} ({:.0}%)", observation.label, score * 100.0),
                None => observation.label.clone(),
            };
            match lines.iter_mut().find(|(source, at, _)| {
                *source == observation.source && *at == observation.running_time_ns
            }) {
                Some((_, _, labels)) => labels.push(label),
                None => lines.push((
                    &observation.source,
                    observation.running_time_ns,
                    vec![label],
                )),
            }
        }
        for (source, at, labels) in lines {
            system.push_str(&format!(
                "\n- {source} at {:.1} s: {}",
                at as f64 / 1e9,
                labels.join(", ")
            ));
        }
    }
    let mut messages: Vec<ChatMessage> = Vec::new();
    if !system.is_empty() {
        messages.push(ChatMessage::system(system));
    }
    for turn in &package.conversation {
        let text = turn.text.trim();
        let (role, content) = match turn.role {
            Role::Agent => {
                let content = match &turn.truncation {
                    Some(_) => format!("{text}{INTERRUPTED_NOTE}"),
                    None => text.to_owned(),
                };
                ("assistant", content)
            }
            Role::User if turn.speaker.is_empty() || turn.speaker == "user" => {
                ("user", text.to_owned())
            }
            Role::User => ("user", format!("{}: {text}", turn.speaker)),
            Role::System => ("system", text.to_owned()),
        };
        if content.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last.role == role => {
                last.content.push('\n');
                last.content.push_str(&content);
            }
            _ => messages.push(ChatMessage::new(role, content)),
        }
    }
    if let Some(detail) = package.trigger.detail.as_deref().map(str::trim) {
        let ends_with_user = messages.last().is_some_and(|last| last.role == "user");
        if !detail.is_empty() && !ends_with_user {
            messages.push(ChatMessage::user(detail));
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use interaction_protocol::context::{Observation, Trigger, TriggerReason, Truncation, Turn};

    fn turn(speaker: &str, role: Role, text: &str) -> Turn {
        Turn {
            speaker: speaker.into(),
            role,
            start_ns: 0,
            end_ns: None,
            text: text.into(),
            truncation: None,
        }
    }

    #[test]
    fn speakers_truncations_and_observations() {
        let mut package = ContextPackage::new(
            1,
            Trigger {
                reason: TriggerReason::UserTurnEnded,
                running_time_ns: 0,
                detail: None,
            },
        );
        package
            .conversation
            .push(turn("user", Role::User, "Hello there."));
        let mut cut = turn("agent", Role::Agent, "Hi! Today we");
        cut.truncation = Some(Truncation {
            planned: "Hi! Today we will talk about Paris.".into(),
            heard_chars: 12,
        });
        package.conversation.push(cut);
        package.conversation.push(turn("user", Role::User, "Wait."));
        package
            .conversation
            .push(turn("alice", Role::User, "Me too."));
        package.observations.push(Observation {
            running_time_ns: 2_500_000_000,
            source: "camera".into(),
            label: "two people".into(),
            score: None,
        });
        // The classes of one frame share a line; scores become percentages.
        for (label, score) in [("desk", 0.41), ("monitor", 0.224)] {
            package.observations.push(Observation {
                running_time_ns: 3_200_000_000,
                source: "camera".into(),
                label: label.into(),
                score: Some(score),
            });
        }
        let messages = messages_for(&package, "Be brief.");
        assert_eq!(
            messages,
            vec![
                ChatMessage::system(
                    "Be brief.\n\nLatest observations:\n- camera at 2.5 s: two people\n\
                     - camera at 3.2 s: desk (41%), monitor (22%)"
                ),
                ChatMessage::user("Hello there."),
                ChatMessage::assistant(format!("Hi! Today we{INTERRUPTED_NOTE}")),
                ChatMessage::user("Wait.\nalice: Me too."),
            ]
        );
    }

    #[test]
    fn trigger_detail_becomes_the_question() {
        let package = ContextPackage::new(
            1,
            Trigger {
                reason: TriggerReason::UserRequest,
                running_time_ns: 0,
                detail: Some("What is the capital of France?".into()),
            },
        );
        assert_eq!(
            messages_for(&package, ""),
            vec![ChatMessage::user("What is the capital of France?")]
        );
    }
}
