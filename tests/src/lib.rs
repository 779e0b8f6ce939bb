//! End-to-end tests of `qube-agent` and `govctl` against real in-process
//! relays live in `tests/tests/`; this library will hold their shared
//! harness (relay start-up, key fixtures) as those tests arrive.

#![forbid(unsafe_code)]
