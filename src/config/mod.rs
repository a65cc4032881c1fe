//! config: TOML schema and defaults (to be written).
