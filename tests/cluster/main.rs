//! Cluster tests: three real `voxmail serve` processes on one PostgreSQL (or MariaDB) database and
//! one S3 bucket (s3rver), as a PBX cluster runs them behind a load balancer. Deposits, reads,
//! events, capacity limits and idempotency must hold across nodes, and a node killed with SIGKILL
//! mid-deposit must leave neither a half-stored message nor, once the orphan collector ran, an
//! unreferenced object.
//!
//! Needs `TEST_POSTGRES_URL` / `TEST_MYSQL_URL` (tests/common/db.rs) and `TEST_S3RVER`
//! (tests/common/s3.rs); each case is skipped with a loud message when its database server is
//! not configured, and fails instead under `TEST_REQUIRE_SQL_SERVERS=1`. Without an S3 server
//! the nodes share an `fs` directory (or the run fails under `TEST_REQUIRE_S3=1`).

#[path = "../common/mod.rs"]
mod common;

mod harness;
mod scenarios;
