//! The micro-turn packet: caps, layout, parse and serialise (filled by the microturnmux work).
