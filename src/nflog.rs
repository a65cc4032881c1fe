//! nflog: see design.md (to be written).
