//! nft: the nf_tables netlink layer (to be written).
