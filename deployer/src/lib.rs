//! The deployer: renders the CloudFormation templates in `stacks/`, builds and packages the
//! Lambda handlers in `functions/`, deploys both stacks through change sets, and tears everything
//! down with an audit of every service. `main.rs` only parses the command line and maps errors to
//! exit codes; everything else lives in these modules.

pub mod audit;
pub mod aws;
pub mod cli;
pub mod commands;
pub mod config;
pub mod dataset;
pub mod emulator;
pub mod fault;
pub mod http;
pub mod image;
pub mod localrun;
pub mod lock;
pub mod model_image;
pub mod output;
pub mod package;
pub mod preflight;
pub mod redeploy;
pub mod registry;
pub mod render;
pub mod stack;
pub mod state;
pub mod users;
