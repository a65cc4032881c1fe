//! ruleset (to be written).
