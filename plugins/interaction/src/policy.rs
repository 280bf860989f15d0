//! The cascade's turn-taking policy: from per-frame speech probabilities (Silero VAD, one per
//! 32 ms frame and participant) and Smart Turn verdicts to turn decisions. A plain state
//! machine with no model and no GStreamer in it; times are running times in nanoseconds.
//!
//! - A participant is *in speech* from its first voiced frame (probability ≥ `vad_threshold`)
//!   until `hangover` of unvoiced frames; short dips inside a word do not end speech.
//! - While the agent speaks, user speech starts a user turn only once it has lasted
//!   `barge_in` (a barge-in: the element yields). Shorter speech is a back-channel ("mm-hm")
//!   and starts no turn. With `hold` > 0, user speech of `hold` over the agent pauses it at
//!   once ([`PolicyEvent::Hold`]); the pause becomes the yield at `barge_in`, or is released
//!   ([`PolicyEvent::Release`]) when the speech ends as a back-channel. So the agent falls
//!   silent within a frame or two of being interrupted without stopping for good at "mm-hm".
//! - Otherwise speech of `min_speech` or more starts (or continues) the user's turn.
//! - The turn ends, by `detection`:
//!   - `Silence`: after `silence` without speech from anyone;
//!   - `SmartTurn`: after `pause` of silence the policy asks for Smart Turn
//!     ([`PolicyEvent::AskTurnModel`]); a verdict ≥ `turn_threshold` ends the turn at once, a
//!     lower one waits for more speech, or ends the turn after `turn_timeout` of silence.
//! - Optionally, in a long turn (≥ `backchannel_after`) the agent back-channels at a pause
//!   that is not the end of the turn, at most once per `backchannel_after`.

/// How the end of the user's turn is detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnDetection {
    SmartTurn,
    Silence,
}

/// Thresholds, all documented as element properties.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub detection: TurnDetection,
    pub vad_threshold: f32,
    /// Silence that ends a turn with `Silence` detection, ns.
    pub silence: u64,
    /// Silence after which Smart Turn is asked, ns.
    pub pause: u64,
    pub turn_threshold: f32,
    /// Silence after an "incomplete" verdict that ends the turn anyway, ns.
    pub turn_timeout: u64,
    /// Sustained user speech over the agent that makes it yield, ns.
    pub barge_in: u64,
    /// User speech over the agent that pauses it until the speech ends or becomes a barge-in,
    /// ns; 0: never pause.
    pub hold: u64,
    /// Shortest speech that starts a user turn when the agent is silent, ns.
    pub min_speech: u64,
    /// Unvoiced time that ends a participant's speech, ns.
    pub hangover: u64,
    pub backchannel: bool,
    pub backchannel_after: u64,
}

const MS: u64 = 1_000_000;

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            detection: TurnDetection::SmartTurn,
            vad_threshold: 0.5,
            silence: 500 * MS,
            pause: 200 * MS,
            turn_threshold: 0.5,
            turn_timeout: 2000 * MS,
            barge_in: 700 * MS,
            hold: 32 * MS,
            min_speech: 64 * MS,
            hangover: 96 * MS,
            backchannel: false,
            backchannel_after: 4000 * MS,
        }
    }
}

/// Why a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    SmartTurn,
    Silence,
    Timeout,
    Eos,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::SmartTurn => "smart-turn",
            EndReason::Silence => "silence",
            EndReason::Timeout => "timeout",
            EndReason::Eos => "eos",
        }
    }
}

/// What the policy asks the element to do.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyEvent {
    /// A participant started speaking at `at` (the start of its first voiced frame).
    SpeechStarted { track: usize, at: u64 },
    /// A participant stopped speaking; `at` is the end of its last voiced frame.
    SpeechStopped { track: usize, at: u64 },
    /// Run Smart Turn on `track`'s audio up to now, then call [`TurnPolicy::verdict`].
    AskTurnModel { track: usize },
    /// The user spoke over the agent for `barge_in`: yield.
    BargeIn { track: usize, speech_start: u64 },
    /// The user started speaking over the agent (`hold`): pause it.
    Hold { track: usize, speech_start: u64 },
    /// The speech that caused a [`PolicyEvent::Hold`] ended before it became a barge-in, and
    /// nobody else holds the agent: resume.
    Release { track: usize },
    /// The user's turn ended.
    TurnEnded {
        reason: EndReason,
        /// End of the last voiced frame of anyone.
        speech_end: u64,
        /// The Smart Turn probability that decided, if any.
        probability: Option<f32>,
    },
    /// Say a back-channel now.
    Backchannel,
}

#[derive(Debug, Clone, Default)]
struct Track {
    in_speech: bool,
    run_start: u64,
    last_voiced_end: u64,
    barge_fired: bool,
    hold_fired: bool,
    /// First and last voiced frame of this participant in the current user turn.
    turn_span: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
struct ActiveTurn {
    started: u64,
    asked: bool,
    incomplete: bool,
    backchannel_pause_done: bool,
}

/// The state machine. One per element; [`TurnPolicy::reset`] on flush.
#[derive(Debug, Clone)]
pub struct TurnPolicy {
    config: PolicyConfig,
    tracks: Vec<Track>,
    turn: Option<ActiveTurn>,
    last_voiced_end: Option<u64>,
    last_track: usize,
    last_backchannel: Option<u64>,
    events: Vec<PolicyEvent>,
}

impl TurnPolicy {
    pub fn new(config: PolicyConfig) -> Self {
        TurnPolicy {
            config,
            tracks: Vec::new(),
            turn: None,
            last_voiced_end: None,
            last_track: 0,
            last_backchannel: None,
            events: Vec::with_capacity(8),
        }
    }

    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    pub fn set_config(&mut self, config: PolicyConfig) {
        self.config = config;
    }

    pub fn reset(&mut self) {
        *self = TurnPolicy::new(self.config.clone());
    }

    /// Whether anyone is in speech now.
    pub fn user_speaking(&self) -> bool {
        self.tracks.iter().any(|t| t.in_speech)
    }

    /// Whether `track` is in speech now (voiced, or silent for less than the hangover).
    pub fn in_speech(&self, track: usize) -> bool {
        self.tracks.get(track).is_some_and(|t| t.in_speech)
    }

    /// Whether a user turn is open (speech heard, end not decided).
    pub fn in_turn(&self) -> bool {
        self.turn.is_some()
    }

    /// The participant who spoke last.
    pub fn last_track(&self) -> usize {
        self.last_track
    }

    /// First and last voiced time of `track` in the open turn.
    pub fn turn_span(&self, track: usize) -> Option<(u64, u64)> {
        self.tracks.get(track).and_then(|t| t.turn_span)
    }

    /// End of `track`'s last voiced frame (0 if it never spoke).
    pub fn last_voiced_end(&self, track: usize) -> u64 {
        self.tracks.get(track).map_or(0, |t| t.last_voiced_end)
    }

    /// The tracks that spoke in the open turn.
    pub fn turn_tracks(&self) -> Vec<usize> {
        (0..self.tracks.len())
            .filter(|i| self.tracks[*i].turn_span.is_some())
            .collect()
    }

    /// One VAD frame of `track` ending at `end` (`frame` ns long).
    pub fn frame(
        &mut self,
        track: usize,
        probability: f32,
        end: u64,
        frame: u64,
        agent_speaking: bool,
    ) {
        if self.tracks.len() <= track {
            self.tracks.resize_with(track + 1, Track::default);
        }
        let config = &self.config;
        let voiced = probability >= config.vad_threshold;
        let t = &mut self.tracks[track];
        if voiced {
            if !t.in_speech {
                t.in_speech = true;
                t.run_start = end.saturating_sub(frame);
                t.barge_fired = false;
                t.hold_fired = false;
                self.events.push(PolicyEvent::SpeechStarted {
                    track,
                    at: t.run_start,
                });
            }
            t.last_voiced_end = end;
            self.last_voiced_end = Some(self.last_voiced_end.map_or(end, |l| l.max(end)));
            self.last_track = track;
            let run = end - t.run_start;
            if agent_speaking && self.turn.is_none() {
                if config.hold > 0 && run >= config.hold && !t.hold_fired && !t.barge_fired {
                    t.hold_fired = true;
                    self.events.push(PolicyEvent::Hold {
                        track,
                        speech_start: t.run_start,
                    });
                }
                if run >= config.barge_in && !t.barge_fired {
                    t.barge_fired = true;
                    t.hold_fired = false;
                    self.events.push(PolicyEvent::BargeIn {
                        track,
                        speech_start: t.run_start,
                    });
                    self.turn = Some(ActiveTurn {
                        started: t.run_start,
                        asked: false,
                        incomplete: false,
                        backchannel_pause_done: false,
                    });
                }
            } else if self.turn.is_none() {
                if run >= config.min_speech {
                    self.turn = Some(ActiveTurn {
                        started: t.run_start,
                        asked: false,
                        incomplete: false,
                        backchannel_pause_done: false,
                    });
                }
            } else if let Some(turn) = self.turn.as_mut() {
                // Speech again: the pause is over, a new pause will be judged afresh.
                turn.asked = false;
                turn.incomplete = false;
                turn.backchannel_pause_done = false;
            }
            if self.turn.is_some() {
                let span = t.turn_span.get_or_insert((t.run_start, end));
                span.1 = end;
            }
        } else if t.in_speech && end.saturating_sub(t.last_voiced_end) >= config.hangover {
            t.in_speech = false;
            let released = std::mem::take(&mut t.hold_fired);
            self.events.push(PolicyEvent::SpeechStopped {
                track,
                at: t.last_voiced_end,
            });
            if released && !self.tracks.iter().any(|t| t.hold_fired) {
                self.events.push(PolicyEvent::Release { track });
            }
        }
    }

    /// Checks the turn at `now` (after the micro-turn's frames); returns what to do.
    pub fn check(&mut self, now: u64) -> Vec<PolicyEvent> {
        if let (Some(turn), Some(last)) = (self.turn.as_mut(), self.last_voiced_end)
            && !self.tracks.iter().any(|t| t.in_speech)
        {
            let silence = now.saturating_sub(last);
            let config = &self.config;
            match config.detection {
                TurnDetection::Silence => {
                    if silence >= config.silence {
                        self.end_turn(EndReason::Silence, None);
                    } else if silence >= config.pause
                        && config.backchannel
                        && !turn.backchannel_pause_done
                    {
                        turn.backchannel_pause_done = true;
                        self.maybe_backchannel(now);
                    }
                }
                TurnDetection::SmartTurn => {
                    if silence >= config.pause && !turn.asked {
                        turn.asked = true;
                        self.events.push(PolicyEvent::AskTurnModel {
                            track: self.last_track,
                        });
                    } else if turn.incomplete && silence >= config.turn_timeout {
                        self.end_turn(EndReason::Timeout, None);
                    }
                }
            }
        }
        std::mem::take(&mut self.events)
    }

    /// Smart Turn's probability for the pause asked about at `now`.
    pub fn verdict(&mut self, probability: f32, now: u64) -> Vec<PolicyEvent> {
        if self.turn.is_some() {
            if probability >= self.config.turn_threshold {
                self.end_turn(EndReason::SmartTurn, Some(probability));
            } else {
                if let Some(turn) = self.turn.as_mut() {
                    turn.incomplete = true;
                }
                if self.config.backchannel {
                    self.maybe_backchannel(now);
                }
            }
        }
        std::mem::take(&mut self.events)
    }

    /// End of stream: an open turn ends now.
    pub fn finish(&mut self) -> Vec<PolicyEvent> {
        if self.turn.is_some() {
            self.end_turn(EndReason::Eos, None);
        }
        std::mem::take(&mut self.events)
    }

    fn maybe_backchannel(&mut self, now: u64) {
        let Some(turn) = &self.turn else { return };
        let after = self.config.backchannel_after;
        let long_enough = now.saturating_sub(turn.started) >= after;
        let spaced = self
            .last_backchannel
            .is_none_or(|last| now.saturating_sub(last) >= after);
        if long_enough && spaced {
            self.last_backchannel = Some(now);
            self.events.push(PolicyEvent::Backchannel);
        }
    }

    fn end_turn(&mut self, reason: EndReason, probability: Option<f32>) {
        self.turn = None;
        let speech_end = self.last_voiced_end.unwrap_or(0);
        self.events.push(PolicyEvent::TurnEnded {
            reason,
            speech_end,
            probability,
        });
    }

    /// Forgets the finished turn's per-participant spans (after the element has used them).
    pub fn clear_spans(&mut self) {
        for t in &mut self.tracks {
            t.turn_span = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: u64 = 32 * MS;

    /// Feeds `frames` frames of probability `p` on track 0 starting after `*t`.
    fn feed(
        policy: &mut TurnPolicy,
        t: &mut u64,
        frames: usize,
        p: f32,
        agent: bool,
    ) -> Vec<PolicyEvent> {
        let mut out = Vec::new();
        for _ in 0..frames {
            *t += FRAME;
            policy.frame(0, p, *t, FRAME, agent);
            out.extend(policy.check(*t));
        }
        out
    }

    fn ended(events: &[PolicyEvent]) -> Option<EndReason> {
        events.iter().find_map(|e| match e {
            PolicyEvent::TurnEnded { reason, .. } => Some(*reason),
            _ => None,
        })
    }

    #[test]
    fn silence_policy_ends_after_silence_ms() {
        let mut policy = TurnPolicy::new(PolicyConfig {
            detection: TurnDetection::Silence,
            ..PolicyConfig::default()
        });
        let mut t = 0;
        let speech = feed(&mut policy, &mut t, 30, 0.9, false);
        assert!(policy.in_turn());
        assert_eq!(ended(&speech), None);
        let speech_end = t;
        // 15 frames = 480 ms: not yet.
        assert_eq!(ended(&feed(&mut policy, &mut t, 15, 0.05, false)), None);
        let events = feed(&mut policy, &mut t, 1, 0.05, false);
        assert_eq!(ended(&events), Some(EndReason::Silence));
        assert!(events.contains(&PolicyEvent::TurnEnded {
            reason: EndReason::Silence,
            speech_end,
            probability: None
        }));
        assert!(!policy.in_turn());
    }

    #[test]
    fn smart_turn_asks_at_pause_and_respects_verdicts() {
        let mut policy = TurnPolicy::new(PolicyConfig::default());
        let mut t = 0;
        feed(&mut policy, &mut t, 20, 0.9, false);
        // 200 ms = 6.25 frames: asked at the 7th silent frame, once.
        let events = feed(&mut policy, &mut t, 10, 0.1, false);
        let asks = events
            .iter()
            .filter(|e| matches!(e, PolicyEvent::AskTurnModel { .. }))
            .count();
        assert_eq!(asks, 1);
        // Incomplete: the turn stays open, then times out after 2 s of silence.
        assert!(policy.verdict(0.2, t).is_empty());
        assert!(policy.in_turn());
        assert_eq!(ended(&feed(&mut policy, &mut t, 40, 0.1, false)), None);
        assert_eq!(
            ended(&feed(&mut policy, &mut t, 30, 0.1, false)),
            Some(EndReason::Timeout)
        );
        // A second turn with a "complete" verdict ends at once.
        feed(&mut policy, &mut t, 20, 0.9, false);
        feed(&mut policy, &mut t, 7, 0.1, false);
        let events = policy.verdict(0.9, t);
        assert_eq!(ended(&events), Some(EndReason::SmartTurn));
    }

    #[test]
    fn speech_after_incomplete_verdict_resets_the_pause() {
        let mut policy = TurnPolicy::new(PolicyConfig::default());
        let mut t = 0;
        feed(&mut policy, &mut t, 20, 0.9, false);
        feed(&mut policy, &mut t, 8, 0.1, false);
        policy.verdict(0.1, t);
        feed(&mut policy, &mut t, 20, 0.9, false);
        let events = feed(&mut policy, &mut t, 8, 0.1, false);
        assert!(
            events
                .iter()
                .any(|e| matches!(e, PolicyEvent::AskTurnModel { .. }))
        );
    }

    #[test]
    fn barge_in_needs_sustained_speech_over_the_agent() {
        let config = PolicyConfig::default();
        let mut policy = TurnPolicy::new(config.clone());
        let mut t = 0;
        // 288 ms of speech over the agent (a back-channel): no barge-in, no turn.
        let events = feed(&mut policy, &mut t, 9, 0.9, true);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, PolicyEvent::BargeIn { .. }))
        );
        let events = feed(&mut policy, &mut t, 40, 0.05, true);
        assert!(!policy.in_turn());
        assert_eq!(ended(&events), None);
        // Sustained speech: barge-in once when the run reaches 700 ms (22nd frame = 704 ms).
        let start = t;
        let mut barge_at = None;
        for i in 0..30 {
            t += FRAME;
            policy.frame(0, 0.9, t, FRAME, true);
            for e in policy.check(t) {
                if let PolicyEvent::BargeIn { speech_start, .. } = e {
                    assert_eq!(speech_start, start);
                    assert!(barge_at.is_none(), "barge-in fired twice");
                    barge_at = Some(i);
                }
            }
        }
        assert_eq!(barge_at, Some(21));
        assert!(policy.in_turn());
    }

    #[test]
    fn speech_over_the_agent_holds_it_then_releases_or_barges_in() {
        let mut policy = TurnPolicy::new(PolicyConfig::default());
        let mut t = 0;
        let holds = |events: &[PolicyEvent]| {
            events
                .iter()
                .filter(|e| matches!(e, PolicyEvent::Hold { .. }))
                .count()
        };
        let releases = |events: &[PolicyEvent]| {
            events
                .iter()
                .filter(|e| matches!(e, PolicyEvent::Release { .. }))
                .count()
        };
        // The first voiced frame (32 ms) over the agent holds it, once.
        let events = feed(&mut policy, &mut t, 1, 0.9, true);
        assert_eq!(holds(&events), 1);
        let events = feed(&mut policy, &mut t, 8, 0.9, true);
        assert_eq!(holds(&events), 0);
        // A back-channel (288 ms): released once its speech ends (after the hangover).
        let events = feed(&mut policy, &mut t, 2, 0.05, true);
        assert_eq!(releases(&events), 0, "released before the hangover");
        let events = feed(&mut policy, &mut t, 2, 0.05, true);
        assert_eq!(releases(&events), 1);
        assert!(!policy.in_turn());
        // Sustained speech: held, then the barge-in, and no release when it ends.
        let mut all = feed(&mut policy, &mut t, 25, 0.9, true);
        all.extend(feed(&mut policy, &mut t, 10, 0.05, true));
        assert_eq!(holds(&all), 1);
        assert_eq!(releases(&all), 0);
        assert!(all.iter().any(|e| matches!(e, PolicyEvent::BargeIn { .. })));
        // Speech while the agent is silent is a turn, never a hold.
        let mut quiet = TurnPolicy::new(PolicyConfig::default());
        let mut t = 0;
        assert_eq!(holds(&feed(&mut quiet, &mut t, 5, 0.9, false)), 0);
        // hold = 0 never holds.
        let mut never = TurnPolicy::new(PolicyConfig {
            hold: 0,
            ..PolicyConfig::default()
        });
        let mut t = 0;
        assert_eq!(holds(&feed(&mut never, &mut t, 5, 0.9, true)), 0);
    }

    #[test]
    fn short_dips_do_not_end_speech_and_eos_ends_the_turn() {
        let mut policy = TurnPolicy::new(PolicyConfig::default());
        let mut t = 0;
        feed(&mut policy, &mut t, 10, 0.9, false);
        let events = feed(&mut policy, &mut t, 2, 0.1, false);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, PolicyEvent::SpeechStopped { .. }))
        );
        assert!(policy.user_speaking());
        feed(&mut policy, &mut t, 10, 0.9, false);
        assert_eq!(ended(&policy.finish()), Some(EndReason::Eos));
        assert!(policy.finish().is_empty());
    }

    #[test]
    fn backchannel_in_long_turns_only() {
        let mut policy = TurnPolicy::new(PolicyConfig {
            backchannel: true,
            backchannel_after: 2000 * MS,
            ..PolicyConfig::default()
        });
        let mut t = 0;
        feed(&mut policy, &mut t, 20, 0.9, false); // 640 ms
        feed(&mut policy, &mut t, 8, 0.1, false);
        assert!(policy.verdict(0.1, t).is_empty(), "too early");
        feed(&mut policy, &mut t, 60, 0.9, false); // now > 2 s
        feed(&mut policy, &mut t, 8, 0.1, false);
        assert_eq!(policy.verdict(0.1, t), vec![PolicyEvent::Backchannel]);
    }
}
