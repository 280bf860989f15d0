//! Cued user speech for the live runner: interruptions and back-channels wait for the agent.
//!
//! A generated dialogue places the user's interruption "1.5–3 s into the agent's answer" by
//! assuming where that answer starts (`expected_agent_onset`). A real agent answers when it
//! answers: a short filler first, the reasoning model's words seconds later. Played at fixed
//! times, the interruption then often falls into the agent's silence and measures nothing. A
//! person interrupts what they hear, so the runner does the same:
//!
//! - the user side plays as generated up to the end of the user speech before a cued item
//!   (its *hold*), then silence while the runner listens to the agent's live output;
//! - an item with an expected agent onset (the first interruption or back-channel after a
//!   request) starts once the agent has been talking for as long as the script put it into the
//!   expected answer (`start - expected_agent_onset`), talk that began after the hold;
//! - a later item (the second back-channel) starts once the script's gap after the previous
//!   user speech has passed and the agent is talking;
//! - if that does not happen within [`CUE_TIMEOUT_S`], the item starts anyway (and is scored
//!   "not applicable" when the agent is silent at its onset);
//! - everything after the item's start plays as generated, shifted by the wait.
//!
//! The runner records the user side as actually played and maps every segment and item of the
//! script onto it ([`CuedPlayer::played_segments`]), so the scorer measures against what the
//! agent really heard. "Talking" is the scorer's own level rule, applied live: 10 ms hops at
//! or above `on_db`; pauses of up to [`TALK_BRIDGE_NS`] (between the synthesizer's phrases and
//! sentences) stay inside one talk.

use crate::detect::DetectorConfig;
use crate::segments::{Task, UserSegments};

/// How long a cued item waits for the agent beyond its scripted lead, in seconds.
pub const CUE_TIMEOUT_S: f64 = 10.0;
/// Gaps in the agent's talk up to this long are one talk (a synthesizer's pause between
/// phrases and sentences), in ns.
pub const TALK_BRIDGE_NS: u64 = 600_000_000;
/// Agent audio is judged this far behind the moment of the decision, in ns: audio that is due
/// now may still be on its way to the recording sink.
pub const LISTEN_DELAY_NS: u64 = 40_000_000;

/// The agent's talk as heard live: merged stretches of loud 10 ms hops, in running time (ns).
#[derive(Debug, Clone)]
pub struct AgentTalk {
    hop_ms: f64,
    on_level: f64,
    bridge_ns: u64,
    stretches: Vec<(u64, u64)>,
}

impl AgentTalk {
    pub fn new(detector: &DetectorConfig) -> Self {
        AgentTalk {
            hop_ms: detector.hop_ms,
            on_level: 10f64.powf(detector.on_db / 20.0),
            bridge_ns: TALK_BRIDGE_NS.max((detector.min_silence_ms * 1e6) as u64),
            stretches: Vec::new(),
        }
    }

    /// Takes agent audio that starts at `running_time_ns`.
    pub fn feed(&mut self, running_time_ns: u64, samples: &[f32], sample_rate: u32) {
        let hop = ((self.hop_ms / 1000.0 * f64::from(sample_rate)).round() as usize).max(1);
        for (index, chunk) in samples.chunks(hop).enumerate() {
            let energy: f64 = chunk.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
            let rms = (energy / chunk.len() as f64).sqrt();
            if rms < self.on_level {
                continue;
            }
            let start = running_time_ns
                + (index * hop) as u64 * 1_000_000_000 / u64::from(sample_rate.max(1));
            let end = start + chunk.len() as u64 * 1_000_000_000 / u64::from(sample_rate.max(1));
            match self.stretches.last_mut() {
                Some(last) if start <= last.1 + self.bridge_ns => last.1 = last.1.max(end),
                _ => self.stretches.push((start, end)),
            }
        }
    }

    /// When the talk going on at `at` began: the last stretch that started by `at` and was
    /// still loud within one hop of it.
    pub fn talking_since(&self, at: u64) -> Option<u64> {
        let tolerance = (self.hop_ms * 1e6) as u64 * 2;
        self.stretches
            .iter()
            .rev()
            .find(|(start, _)| *start <= at)
            .filter(|(_, end)| at <= end + tolerance)
            .map(|(start, _)| *start)
    }
}

/// One cued item, in samples of the generated user side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cue {
    /// The end of the user speech before the item: playback holds here.
    pub hold_from: u64,
    /// The item's onset in the generated side.
    pub start: u64,
    /// How long the agent must have talked (`from_onset`), or how long after the hold the item
    /// may start, in samples.
    pub lead: u64,
    pub from_onset: bool,
}

/// The cued items of a user side: its interruptions and back-channels, in order.
pub fn cues(user: &UserSegments) -> Vec<Cue> {
    let mut items: Vec<_> = user
        .items
        .iter()
        .filter(|i| matches!(i.task, Task::Interruption | Task::Backchannel))
        .collect();
    items.sort_by_key(|i| i.start);
    items
        .into_iter()
        .map(|item| {
            let hold_from = user
                .segments
                .iter()
                .map(|s| s.end)
                .filter(|&end| end <= item.start)
                .max()
                .unwrap_or(0);
            match item.expected_agent_onset {
                Some(expected) if expected <= item.start => Cue {
                    hold_from,
                    start: item.start,
                    lead: item.start - expected,
                    from_onset: true,
                },
                _ => Cue {
                    hold_from,
                    start: item.start,
                    lead: item.start - hold_from,
                    from_onset: false,
                },
            }
        })
        .collect()
}

/// Where a cue held and fired, in generated and in played samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fired {
    hold_from: u64,
    start: u64,
    hold_played: u64,
    fire_played: u64,
}

/// What to push next.
#[derive(Debug, PartialEq)]
pub enum Chunk<'a> {
    Audio(&'a [f32]),
    Silence(usize),
    End,
}

/// Plays a generated user side with its cues, chunk by chunk.
#[derive(Debug)]
pub struct CuedPlayer<'a> {
    samples: &'a [f32],
    sample_rate: u32,
    chunk: usize,
    cues: Vec<Cue>,
    next_cue: usize,
    /// Position in the generated side.
    position: u64,
    /// Samples played so far.
    played: u64,
    /// Played sample where the current hold began.
    holding_since: Option<u64>,
    fired: Vec<Fired>,
}

impl<'a> CuedPlayer<'a> {
    /// `cues` from [`cues`]; an empty list plays the side as it is.
    pub fn new(samples: &'a [f32], sample_rate: u32, chunk: usize, cues: Vec<Cue>) -> Self {
        CuedPlayer {
            samples,
            sample_rate,
            chunk: chunk.max(1),
            cues,
            next_cue: 0,
            position: 0,
            played: 0,
            holding_since: None,
            fired: Vec::new(),
        }
    }

    /// Samples played so far (the played side's length once [`Chunk::End`] came).
    pub fn played(&self) -> u64 {
        self.played
    }

    fn ns(&self, samples: u64) -> u64 {
        (u128::from(samples) * 1_000_000_000 / u128::from(self.sample_rate.max(1))) as u64
    }

    /// The next chunk, which starts at played sample [`CuedPlayer::played`], i.e. at running
    /// time `t0 + played`. `talk` is the agent's live output.
    pub fn next_chunk(&mut self, t0: u64, talk: &AgentTalk) -> Chunk<'a> {
        if let Some(&cue) = self.cues.get(self.next_cue)
            && self.position >= cue.hold_from
        {
            let held = *self.holding_since.get_or_insert(self.played);
            if self.fires(cue, held, t0, talk) {
                self.fired.push(Fired {
                    hold_from: cue.hold_from,
                    start: cue.start,
                    hold_played: held,
                    fire_played: self.played,
                });
                self.position = cue.start;
                self.holding_since = None;
                self.next_cue += 1;
            } else {
                self.played += self.chunk as u64;
                return Chunk::Silence(self.chunk);
            }
        }
        let end_of_side = self.samples.len() as u64;
        if self.position >= end_of_side {
            return Chunk::End;
        }
        let limit = self
            .cues
            .get(self.next_cue)
            .map_or(end_of_side, |cue| cue.hold_from.max(self.position));
        let mut end = (self.position + self.chunk as u64).min(end_of_side);
        if limit > self.position {
            end = end.min(limit);
        }
        let audio = &self.samples[self.position as usize..end as usize];
        self.played += end - self.position;
        self.position = end;
        Chunk::Audio(audio)
    }

    fn fires(&self, cue: Cue, held: u64, t0: u64, talk: &AgentTalk) -> bool {
        let now = self.played;
        let waited = now - held;
        let lead = cue.lead;
        let timeout = (CUE_TIMEOUT_S * f64::from(self.sample_rate)) as u64;
        if waited >= lead + timeout {
            return true;
        }
        let listen_at = (t0 + self.ns(now)).saturating_sub(LISTEN_DELAY_NS);
        let Some(since) = talk.talking_since(listen_at) else {
            return false;
        };
        if cue.from_onset {
            let hold_time = t0 + self.ns(held);
            since >= hold_time && listen_at.saturating_sub(since) >= self.ns(lead)
        } else {
            waited >= lead
        }
    }

    /// Maps a sample of the generated side onto the played side.
    pub fn map(&self, sample: u64) -> u64 {
        let (mut base_generated, mut base_played) = (0u64, 0u64);
        for fired in &self.fired {
            if sample < fired.hold_from {
                break;
            }
            if sample < fired.start {
                return (fired.hold_played + (sample - fired.hold_from)).min(fired.fire_played);
            }
            base_generated = fired.start;
            base_played = fired.fire_played;
        }
        base_played + (sample - base_generated)
    }

    /// The script's segments and items on the played side (length [`CuedPlayer::played`]).
    pub fn played_segments(&self, generated: &UserSegments) -> UserSegments {
        let mut played = generated.clone();
        for segment in &mut played.segments {
            segment.start = self.map(segment.start);
            segment.end = self.map(segment.end);
        }
        for item in &mut played.items {
            item.start = self.map(item.start);
            item.end = self.map(item.end);
            item.window_end = item.window_end.map(|w| self.map(w));
            item.expected_agent_onset = item.expected_agent_onset.map(|e| self.map(e));
        }
        played.num_samples = self.played;
        played
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::segments::{Item, SCHEMA, Segment};

    const RATE: u32 = 16_000;
    const NS_PER_SAMPLE: u64 = 62_500;

    fn side() -> UserSegments {
        // A request 0.5–2.0 s, then an interruption at 4.0–4.5 s expected 1.5 s into an answer
        // expected at 2.5 s, then a back-channel 1.0 s after it (5.5–5.8 s); 7 s in all.
        let s = |t: f64| (t * f64::from(RATE)) as u64;
        UserSegments {
            schema: SCHEMA.into(),
            dialogue: "d".into(),
            sample_rate: RATE,
            num_samples: s(7.0),
            seed: None,
            voice: None,
            segments: vec![
                Segment {
                    start: s(0.5),
                    end: s(2.0),
                    text: "tell me".into(),
                },
                Segment {
                    start: s(4.0),
                    end: s(4.5),
                    text: "wait".into(),
                },
                Segment {
                    start: s(5.5),
                    end: s(5.8),
                    text: "yeah".into(),
                },
            ],
            items: vec![
                Item {
                    task: Task::Interruption,
                    start: s(4.0),
                    end: s(4.5),
                    window_end: Some(s(5.5)),
                    expected_agent_onset: Some(s(2.5)),
                    text: "wait".into(),
                },
                Item {
                    task: Task::Backchannel,
                    start: s(5.5),
                    end: s(5.8),
                    window_end: Some(s(7.0)),
                    expected_agent_onset: None,
                    text: "yeah".into(),
                },
            ],
        }
    }

    fn loud(seconds: f64) -> Vec<f32> {
        vec![0.3; (seconds * f64::from(RATE)) as usize]
    }

    /// Plays the side against an agent whose talk is given in played seconds, feeding the
    /// agent audio as the clock passes it. Returns the player's played side.
    fn play(talk_spans: &[(f64, f64)]) -> (UserSegments, Vec<f32>) {
        let user = side();
        let samples: Vec<f32> = (0..user.num_samples).map(|i| (i % 7) as f32).collect();
        let mut player = CuedPlayer::new(&samples, RATE, 320, cues(&user));
        let mut talk = AgentTalk::new(&DetectorConfig::default());
        let t0 = 1_000_000_000;
        let mut fed = 0.0f64;
        let mut out = Vec::new();
        loop {
            // The agent's audio up to now arrives.
            let now = player.played() as f64 / f64::from(RATE);
            for &(from, to) in talk_spans {
                let (a, b) = (from.max(fed), to.min(now));
                if b > a {
                    talk.feed(t0 + (a * 1e9) as u64, &loud(b - a), RATE);
                }
            }
            fed = fed.max(now);
            match player.next_chunk(t0, &talk) {
                Chunk::Audio(a) => out.extend_from_slice(a),
                Chunk::Silence(n) => out.extend(std::iter::repeat_n(-1.0, n)),
                Chunk::End => break,
            }
            assert!(out.len() < 40 * RATE as usize, "never ended");
        }
        assert_eq!(out.len() as u64, player.played());
        (player.played_segments(&user), out)
    }

    #[test]
    fn cues_follow_the_script() {
        let c = cues(&side());
        assert_eq!(c.len(), 2);
        assert_eq!(
            c[0],
            Cue {
                hold_from: 32_000,
                start: 64_000,
                lead: 24_000,
                from_onset: true
            }
        );
        assert_eq!(
            c[1],
            Cue {
                hold_from: 72_000,
                start: 88_000,
                lead: 16_000,
                from_onset: false
            }
        );
    }

    #[test]
    fn an_interruption_waits_for_the_agents_answer_not_its_filler() {
        // A 0.6 s filler at 2.3 s, the answer from 5.0 s to 12.0 s.
        let (played, audio) = play(&[(2.3, 2.9), (5.0, 12.0)]);
        let onset = played.items[0].start as f64 / f64::from(RATE);
        // 1.5 s into the answer, plus the listening delay, on the 20 ms grid.
        assert!(
            (6.5..=6.6).contains(&onset),
            "interruption at {onset} s (answer from 5.0 s)"
        );
        // The user audio is the generated audio, moved: the interruption's first sample is the
        // generated one.
        let generated_start = side().items[0].start as usize;
        assert_eq!(
            audio[played.items[0].start as usize],
            (generated_start % 7) as f32
        );
        assert_eq!(
            played.items[0].end - played.items[0].start,
            side().items[0].end - side().items[0].start
        );
        // The request is where it was.
        assert_eq!(played.segments[0], side().segments[0]);
        // The back-channel: 1.0 s after the interruption ended, the agent still talking.
        let gap = (played.items[1].start - played.items[0].end) as f64 / f64::from(RATE);
        assert!((1.0..1.05).contains(&gap), "back-channel {gap} s after");
        assert!(played.validate().is_ok());
        assert_eq!(played.num_samples as usize, audio.len());
        // Every window still ends at the next user onset or at the end.
        assert_eq!(played.items[0].window_end, Some(played.items[1].start));
        assert_eq!(played.items[1].window_end, Some(played.num_samples));
    }

    #[test]
    fn a_silent_agent_gets_the_item_after_the_timeout() {
        let (played, _) = play(&[]);
        let hold = played.segments[0].end as f64 / f64::from(RATE);
        let onset = played.items[0].start as f64 / f64::from(RATE);
        let expected = hold + 1.5 + CUE_TIMEOUT_S;
        assert!(
            (onset - expected).abs() < 0.03,
            "onset {onset} s, expected {expected} s"
        );
    }

    #[test]
    fn an_early_agent_pulls_the_item_earlier() {
        // The agent answers at once (2.1 s): the interruption comes at 3.6 s instead of 4.0 s.
        let (played, _) = play(&[(2.1, 9.0)]);
        let onset = played.items[0].start as f64 / f64::from(RATE);
        assert!((3.6..=3.7).contains(&onset), "onset {onset} s");
        let map_ok = played.segments.windows(2).all(|w| w[0].end <= w[1].start);
        assert!(map_ok);
    }

    #[test]
    fn talk_bridges_short_gaps_only() {
        let mut talk = AgentTalk::new(&DetectorConfig::default());
        talk.feed(0, &loud(1.0), RATE);
        // 200 ms gap: bridged.
        talk.feed(1_200_000_000, &loud(0.5), RATE);
        assert_eq!(talk.talking_since(1_600_000_000), Some(0));
        // 500 ms gap (a pause between sentences): still the same talk.
        talk.feed(2_200_000_000, &loud(0.5), RATE);
        assert_eq!(talk.talking_since(2_300_000_000), Some(0));
        // 1 s gap: a new talk.
        talk.feed(3_700_000_000, &loud(0.5), RATE);
        assert_eq!(talk.talking_since(3_800_000_000), Some(3_700_000_000));
        // Silence after the talk.
        assert_eq!(talk.talking_since(4_500_000_000), None);
        assert_eq!(NS_PER_SAMPLE * u64::from(RATE), 1_000_000_000);
    }
}
