//! The event vocabulary between elements (filled by the speechsynth / interactionmodel work).
