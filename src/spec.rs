//! The airgap.yaml spec file (being written).
