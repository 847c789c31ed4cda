//! Kubernetes manifest rewriting (being written).
