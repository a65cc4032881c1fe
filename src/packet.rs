//! packet: see design.md (to be written).
