//! Shared helpers for the integration tests: process guards, workload discovery,
//! reference-image locations.
