//! Optional behaviours on real speech (espeak-ng): back-channels in long turns, the filler when
//! reasoning is slow, and the bound of the conversation record.

mod common;

use common::*;
use interaction_protocol::events::messages;

#[test]
fn backchannel_at_a_pause_inside_a_long_turn() {
    let script = Script::default()
        .silence(300)
        .say("So yesterday I went to the market in the old town")
        .silence(500)
        .say("and I bought some apples and a loaf of fresh bread")
        .silence(1800)
        .whole_turns();
    let run = run_element(
        &element(&[
            ("turn-detection", "silence"),
            ("silence-ms", "1200"),
            ("backchannel", "true"),
            ("backchannel-after-ms", "2000"),
            ("backchannel-text", "uh-huh"),
            ("filler-ms", "0"),
        ]),
        packets(&[("audio", &script.audio)], &[]),
    );
    // The first in the pause inside the turn (a later one may come at the final pause, which
    // is not yet known to end the turn, 2 s after the first).
    assert_eq!(
        run.speech.iter().find(|o| matches!(o, Out::Backchannel(_))),
        Some(&Out::Backchannel("uh-huh".into()))
    );
    let times: Vec<u64> = run
        .messages(messages::BACKCHANNEL)
        .iter()
        .map(|m| running_time(m))
        .collect();
    assert!(
        times.windows(2).all(|w| w[1] - w[0] >= 2000 * MS),
        "{times:?}"
    );
    let at = times[0];
    let (_, _, first_end) = script.spoken[0];
    let (_, second_start, _) = script.spoken[1];
    assert!(
        at > first_end && at <= second_start + TURN_NS,
        "back-channel in the pause: {} ms",
        at / MS
    );
    assert_eq!(run.messages(messages::USER_TURN_ENDED).len(), 1, "one turn");
}

#[test]
fn filler_when_reasoning_is_slow_and_the_record_is_bounded() {
    let script = Script::default()
        .silence(300)
        .say("Good morning")
        .silence(2500)
        .say("What is on my calendar today")
        .silence(2500)
        .whole_turns();
    let run = run_element(
        &element(&[
            ("turn-detection", "silence"),
            ("filler-ms", "1000"),
            ("filler-text", "Let me check."),
            ("record-limit", "2"),
        ]),
        packets(&[("audio", &script.audio)], &[]),
    );
    let ends: Vec<u64> = run
        .messages(messages::USER_TURN_ENDED)
        .iter()
        .map(|m| running_time(m))
        .collect();
    let speech_ends: Vec<u64> = run
        .messages(messages::USER_TURN_ENDED)
        .iter()
        .map(|m| m.get::<u64>("speech-end").unwrap())
        .collect();
    assert_eq!(ends.len(), 2);
    // No result came: a filler once the user has been silent 1 s (spoken with a speak event),
    // never before the end-of-turn decision.
    let fillers: Vec<u64> = run
        .messages(gstinteraction::conversation::FILLER)
        .iter()
        .map(|m| running_time(m))
        .collect();
    assert_eq!(fillers.len(), 2, "{fillers:?}");
    for ((filler, end), speech_end) in fillers.iter().zip(&ends).zip(&speech_ends) {
        let due = (speech_end + 1000 * MS).max(*end);
        assert!(
            *filler >= due && *filler <= due + TURN_NS,
            "filler at {filler}, due {due}"
        );
    }
    assert!(
        run.speech
            .iter()
            .any(|o| matches!(o, Out::Text { text, .. } if text == "Let me check."))
    );
    // The record keeps the last 2 entries: the second package has 2 of the 3 so far
    // (user, agent filler, user).
    let contexts = run.contexts();
    assert_eq!(contexts.len(), 2);
    assert_eq!(contexts[1].conversation.len(), 2);
    assert_eq!(contexts[1].conversation[0].speaker, "agent");
    assert_eq!(contexts[1].conversation[0].text, "Let me check.");
    assert_eq!(contexts[1].conversation[1].speaker, "user");
}
