//! Helpers shared by the end-to-end suites live in `tests/tests/common`.
