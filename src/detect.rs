//! detect: see design.md (to be written).
