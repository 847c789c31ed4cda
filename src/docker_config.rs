//! Docker config.json credentials (being written).
