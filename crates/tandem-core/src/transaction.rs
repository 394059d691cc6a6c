//! RFC 3261 §17 transactions (sans-IO). See the API contract in `docs/architecture.md`.
