//! Prometheus metrics (being written).
