//! Rebuilds when a migration is added or removed: `sqlx::migrate!` embeds the migration folders at
//! compile time, and cargo does not otherwise see new files there.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
