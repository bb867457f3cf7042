//! The workspace-hack crate (managed by `cargo hakari`): it depends on every third-party crate
//! that workspace members use with different features, with the union of those features, so
//! `cargo build -p deployer`, the local handlers' build, `cargo test --workspace` and the model
//! built beside the handlers all resolve each dependency the same way and share one compiled
//! copy of it (the AWS SDK above all). It has no code. Regenerate after changing dependencies:
//! `cargo hakari generate && cargo hakari manage-deps` (cargo-hakari 0.9.39).
