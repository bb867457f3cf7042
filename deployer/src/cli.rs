//! The command line: clap definitions and the dispatch from a parsed command to its
//! implementation in [`crate::commands`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::output::Format;

const EXAMPLES: &str = "\
Examples:
  deployer up --yes                 bring the stack up on the local emulator (the default)
  deployer plan --env aws           show what `up` would change in the aws environment
  deployer status --output json     stack status, outputs, code hashes, endpoint state
  deployer render --out /tmp/cfn    write the rendered templates for review
  deployer down --yes               tear everything down and audit that nothing is left";

/// Deploys and tears down the waste-classifier MLOps stack.
#[derive(Debug, Parser)]
#[command(name = "deployer", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Environment from deployer.toml (default: local).
    #[arg(long, short, global = true, env = "DEPLOYER_ENV")]
    pub env: Option<String>,
    /// Path of deployer.toml (default: found from the working directory upwards).
    #[arg(long, global = true, env = "DEPLOYER_CONFIG")]
    pub config: Option<PathBuf>,
    /// AWS region, overriding the environment's setting.
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// AWS profile, overriding the environment's setting.
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// How data is printed on stdout; logs always go to stderr.
    #[arg(long, short, global = true, value_enum, default_value_t = Format::Table, env = "DEPLOYER_OUTPUT")]
    pub output: Format,
    /// A mutating command (up, down, redeploy, dataset push, users add|remove|reset, local
    /// stop) finding another one running on the same environment exits 1 instead of waiting.
    #[arg(long, global = true, env = "DEPLOYER_NO_WAIT")]
    pub no_wait: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Command {
    /// The name of a command that changes the environment (and so takes its lock), as typed;
    /// `None` for read-only commands, which never wait.
    pub fn mutating_name(&self) -> Option<&'static str> {
        Some(match self {
            Command::Up { .. } => "up",
            Command::Down { .. } => "down",
            Command::Redeploy { .. } => "redeploy",
            Command::Dataset(DatasetCommand::Push { .. }) => "dataset push",
            Command::Users(UsersCommand::Add { .. }) => "users add",
            Command::Users(UsersCommand::Remove { .. }) => "users remove",
            Command::Users(UsersCommand::Reset { .. }) => "users reset",
            Command::Local(LocalCommand::Stop) => "local stop",
            _ => return None,
        })
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write the rendered CloudFormation templates (and the values they were rendered with).
    #[command(
        after_help = "Example:\n  deployer render --out /tmp/cfn && cfn-lint /tmp/cfn/*.yaml"
    )]
    Render {
        /// Directory to write into (default: .deployer/<env>/rendered).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Do not build the handlers; use the code hashes recorded by the last `up`.
        #[arg(long)]
        no_build: bool,
    },
    /// Show what `up` would change: exit 0 when nothing, 2 when there are changes, 1 on error.
    #[command(after_help = "Example:\n  deployer plan --env aws || echo \"changes pending\"")]
    Plan,
    /// Build, upload and deploy everything; prints the stack outputs.
    #[command(after_help = "Example:\n  deployer up --yes")]
    Up {
        /// Do not ask for confirmation (needed for non-interactive use on AWS).
        #[arg(long, short)]
        yes: bool,
    },
    /// Remove everything, then audit every service for leftovers; exit 1 if anything billable is left.
    #[command(after_help = "Example:\n  deployer down --yes --output json")]
    Down {
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Stack status, outputs, each function's deployed code hash and the endpoint's state.
    #[command(after_help = "Example:\n  deployer status --output json")]
    Status,
    /// Rebuild the handlers and update only the functions whose code changed, without a stack update.
    #[command(
        after_help = "Examples:\n  deployer redeploy            every function whose package changed\n  deployer redeploy api        only the api function"
    )]
    Redeploy {
        /// Function names (default: all).
        functions: Vec<String>,
    },
    /// Training data sets in the data bucket.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// The local emulator of a local environment.
    #[command(subcommand)]
    Local(LocalCommand),
    /// The people who may use the deployment's API and web app (its Cognito user pool).
    #[command(subcommand)]
    Users(UsersCommand),
    /// The model's container image, built and pushed without Docker.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Check an environment before any change: region, credentials, account, serverless
    /// settings, the image's build target. Exit 1 if a check fails.
    #[command(after_help = "Example:\n  deployer preflight --env aws")]
    Preflight,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the static model binary and assemble its image in .deployer/<env>/image (the same
    /// binary always gives the same digest).
    Build,
    /// Push the built image to the environment's ECR repository, or to --to HOST[:PORT]/NAME;
    /// blobs and images the registry has are not sent again.
    #[command(
        after_help = "Examples:\n  deployer image push --env aws\n  deployer image push --to 127.0.0.1:5000/waste-model --plain-http"
    )]
    Push {
        /// Another registry and repository than the environment's ECR repository.
        #[arg(long)]
        to: Option<String>,
        /// Plain HTTP (loopback registries only).
        #[arg(long)]
        plain_http: bool,
    },
    /// The built image: digest, platform, entrypoint, layers; with --to, whether that registry has it.
    Inspect {
        #[arg(long)]
        to: Option<String>,
        #[arg(long)]
        plain_http: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user; prints a temporary password once (they choose their own at first sign-in).
    #[command(
        after_help = "Examples:\n  deployer users add ana@example.com --approver   may accept models\n  deployer users add ben@example.com              read-only"
    )]
    Add {
        email: String,
        /// May start training, accept, reject and roll back models, and subscribe emails.
        /// Promotes an existing user.
        #[arg(long)]
        approver: bool,
    },
    /// Every user with their role and status.
    List,
    /// Remove a user.
    Remove { email: String },
    /// Give a user a new temporary password (printed once); they choose their own at next sign-in.
    Reset { email: String },
    /// Sign in and print an ID token for the API's Authorization header (password on stdin).
    #[command(
        after_help = "Example:\n  TOKEN=$(echo \"$PASSWORD\" | deployer users token ana@example.com)\n  curl -H \"Authorization: $TOKEN\" \"$API_URL/models\""
    )]
    Token { email: String },
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Upload a labelled image folder as a new data set; its `_READY` marker starts training.
    #[command(
        after_help = "Examples:\n  deployer dataset push ~/data/waste      # TRAIN/ and TEST/ with O/ and R/ inside\n  deployer dataset push ./photos          # O/ and R/ (or organic/ recyclable/) only\n  deployer dataset push --synth 600       # 600 synthetic demo images"
    )]
    Push {
        /// The folder to upload: the Kaggle layout (TRAIN/ and TEST/) or class folders.
        #[arg(required_unless_present = "synth", conflicts_with = "synth")]
        dir: Option<PathBuf>,
        /// Push a synthetic data set of N labelled images instead (demo data, made by the
        /// model binary's `synth`).
        #[arg(long, value_name = "N")]
        synth: Option<usize>,
        /// Seed of the synthetic data set (another seed gives other images).
        #[arg(long, default_value_t = 42, requires = "synth")]
        seed: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// The emulator, the local cloud and the processes it runs (handlers, training, models).
    Status,
    /// Print the local cloud's and the emulator's logs (function, training and endpoint logs
    /// are under the state directory's logs/).
    Logs,
    /// Stop the local cloud and the emulator; state survives for the next `up`.
    Stop,
    /// The mail the pipeline sent (SNS email lands in a local outbox).
    #[command(after_help = "Example:\n  deployer local mail --output json")]
    Mail,
    /// Fire a schedule rule now (e.g. the retraining schedule), whatever its schedule.
    #[command(after_help = "Example:\n  deployer local fire retrain-schedule")]
    Fire {
        /// The rule's name, with or without the <app>-<env>- prefix.
        rule: String,
    },
    /// Run the local cloud in the foreground (started by `up`; not for direct use).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        state_dir: PathBuf,
        #[arg(long)]
        moto_url: String,
        #[arg(long, default_value_t = 0)]
        port: u16,
        #[arg(long, default_value_t = 0)]
        api_port: u16,
        #[arg(long)]
        region: String,
        #[arg(long)]
        model_binary: Option<PathBuf>,
        #[arg(long)]
        model_sha256: Option<String>,
        #[arg(long)]
        restore: bool,
    },
}
