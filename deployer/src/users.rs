//! Who may use a deployment's API: the Cognito user pool `<app>-<env>-users`, its web app
//! client and its `approvers` group. `deployer users add|list|remove` manage the people;
//! on the local default `up` also stands in for what the emulator's CloudFormation skips
//! (it has no Cognito or API Gateway authorizer resource types): it creates the pool, client,
//! group and authorizer through their own APIs with the template's names and settings, points
//! the functions' `USER_POOL_ID`/`USER_POOL_CLIENT_ID` at them, and creates a first approver
//! whose password it prints once.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use aws_sdk_cognitoidentityprovider as cognito;
use cognito::types::{
    AdminCreateUserConfigType, AttributeType, AuthFlowType, DeletionProtectionType,
    ExplicitAuthFlowsType, MessageActionType, PasswordPolicyType, PreventUserExistenceErrorTypes,
    UserPoolPolicyType, UsernameAttributeType, VerifiedAttributeType,
};
use serde::Serialize;

use crate::aws::{describe_err, Clients};
use crate::config::{looks_like_email, Environment};
use crate::output::{emit, table, Format, Reporter};

/// The group whose members may start training, accept, reject, roll back and subscribe.
/// The api function checks the same name in the token's `cognito:groups`.
pub const APPROVERS: &str = "approvers";

/// The first approver `up` creates on a local environment.
pub const LOCAL_FIRST_USER: &str = "approver@example.com";

pub fn pool_name(env: &Environment) -> String {
    format!("{}-users", env.prefix())
}

pub fn client_name(env: &Environment) -> String {
    format!("{}-web", env.prefix())
}

/// A deployment's user pool as found by name.
#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    pub id: String,
    /// Known when the pool was just created; only `up`'s authorizer needs it otherwise
    /// ([`pool_arn`]), so a lookup does not describe the pool.
    pub arn: Option<String>,
    pub client_id: Option<String>,
}

/// Every user pool of the account and region: (name, id), all pages. Shared with the
/// teardown audit.
pub async fn list_pools(c: &Clients) -> Result<Vec<(String, String)>, String> {
    let mut pools = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = c
            .cognito
            .list_user_pools()
            .max_results(60)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| describe_err(&e))?;
        pools.extend(
            page.user_pools()
                .iter()
                .filter_map(|p| Some((p.name()?.to_string(), p.id()?.to_string()))),
        );
        match page.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => return Ok(pools),
        }
    }
}

/// Finds the pool `<prefix>-users` and its web client by name.
pub async fn find_pool(c: &Clients, env: &Environment) -> Result<Option<Pool>> {
    let name = pool_name(env);
    let pools = list_pools(c)
        .await
        .map_err(anyhow::Error::msg)
        .context("failed to list Cognito user pools")?;
    let Some((_, id)) = pools.into_iter().find(|(n, _)| *n == name) else {
        return Ok(None);
    };
    let client_id = find_client(c, &id, &client_name(env)).await?;
    Ok(Some(Pool {
        id,
        arn: None,
        client_id,
    }))
}

/// A user pool's ARN (DescribeUserPool).
async fn pool_arn(c: &Clients, id: &str) -> Result<String> {
    let described = c
        .cognito
        .describe_user_pool()
        .user_pool_id(id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe_err(&e)))
        .with_context(|| format!("failed to describe user pool {id}"))?;
    Ok(described
        .user_pool()
        .and_then(|u| u.arn())
        .unwrap_or_default()
        .to_string())
}

async fn find_client(c: &Clients, pool: &str, name: &str) -> Result<Option<String>> {
    let clients = c
        .cognito
        .list_user_pool_clients()
        .user_pool_id(pool)
        .max_results(60)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe_err(&e)))
        .with_context(|| format!("failed to list the app clients of user pool {pool}"))?;
    Ok(clients
        .user_pool_clients()
        .iter()
        .find(|c| c.client_name() == Some(name))
        .and_then(|c| c.client_id())
        .map(str::to_string))
}

/// The pool, or an error that says how to get one.
async fn require_pool(c: &Clients, env: &Environment) -> Result<Pool> {
    find_pool(c, env).await?.with_context(|| {
        format!(
            "environment {} has no user pool {} yet; run `deployer up --env {}` first",
            env.name,
            pool_name(env),
            env.name
        )
    })
}

/// A password that meets the pool's policy (12+ characters, upper, lower, digit), from the
/// operating system's random source.
pub fn new_password() -> Result<String> {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("failed to read random bytes for a password")?;
    // Unambiguous letters and digits only: it is read off a terminal and typed.
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let body: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    Ok(format!("{}-{}-Aa7", &body[..6], &body[6..]))
}

/// What `up` reports about the local user pool.
#[derive(Debug, Clone, Serialize)]
pub struct LocalAuth {
    pub user_pool_id: String,
    pub client_id: String,
    /// Set only when this run created the first approver: the one time its password is shown.
    pub first_user: Option<FirstUser>,
    /// What this run created or changed.
    pub changed: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FirstUser {
    pub email: String,
    pub password: String,
}

/// Local only: creates what the emulator's CloudFormation skipped (pool, client, group,
/// authorizer), with the template's names and settings; points every function at them; and
/// creates the first approver when the pool has no users. Idempotent: a second run changes
/// nothing.
pub async fn ensure_local(
    c: &Clients,
    env: &Environment,
    rest_api_id: &str,
    functions: &[String],
) -> Result<LocalAuth> {
    let mut changed = Vec::new();
    let pool = match find_pool(c, env).await? {
        Some(p) => p,
        None => {
            let created = c
                .cognito
                .create_user_pool()
                .pool_name(pool_name(env))
                .username_attributes(UsernameAttributeType::Email)
                .auto_verified_attributes(VerifiedAttributeType::Email)
                .admin_create_user_config(
                    AdminCreateUserConfigType::builder()
                        .allow_admin_create_user_only(true)
                        .build(),
                )
                .policies(
                    UserPoolPolicyType::builder()
                        .password_policy(
                            PasswordPolicyType::builder()
                                .minimum_length(12)
                                .require_lowercase(true)
                                .require_uppercase(true)
                                .require_numbers(true)
                                .require_symbols(false)
                                .temporary_password_validity_days(7)
                                .build(),
                        )
                        .build(),
                )
                .deletion_protection(DeletionProtectionType::Inactive)
                .user_pool_tags("app", &env.app)
                .user_pool_tags("env", &env.name)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(describe_err(&e)))
                .context("failed to create the local user pool")?;
            let p = created
                .user_pool()
                .context("CreateUserPool answered no pool")?;
            changed.push(format!("user pool {}", pool_name(env)));
            Pool {
                id: p.id().unwrap_or_default().to_string(),
                arn: p.arn().map(str::to_string),
                client_id: None,
            }
        }
    };
    let client_id = match pool.client_id.clone() {
        Some(id) => id,
        None => {
            let created = c
                .cognito
                .create_user_pool_client()
                .user_pool_id(&pool.id)
                .client_name(client_name(env))
                .generate_secret(false)
                .explicit_auth_flows(ExplicitAuthFlowsType::AllowUserPasswordAuth)
                .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
                .prevent_user_existence_errors(PreventUserExistenceErrorTypes::Enabled)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!(describe_err(&e)))
                .context("failed to create the local user pool's web client")?;
            changed.push(format!("app client {}", client_name(env)));
            created
                .user_pool_client()
                .and_then(|c| c.client_id())
                .context("CreateUserPoolClient answered no client id")?
                .to_string()
        }
    };
    if c.cognito
        .get_group()
        .user_pool_id(&pool.id)
        .group_name(APPROVERS)
        .send()
        .await
        .is_err()
    {
        c.cognito
            .create_group()
            .user_pool_id(&pool.id)
            .group_name(APPROVERS)
            .description(
                "May start training, accept, reject and roll back models, and subscribe emails",
            )
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe_err(&e)))
            .context("failed to create the approvers group")?;
        changed.push(format!("group {APPROVERS}"));
    }
    let arn = match &pool.arn {
        Some(a) => a.clone(),
        None => pool_arn(c, &pool.id).await?,
    };
    if ensure_authorizer(c, env, rest_api_id, &arn).await? {
        changed.push(format!("API authorizer {}", pool_name(env)));
    }
    for f in functions {
        if point_function(c, f, &pool.id, &client_id).await? {
            changed.push(format!("function {f} (user pool settings)"));
        }
    }
    let users = c
        .cognito
        .list_users()
        .user_pool_id(&pool.id)
        .limit(1)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe_err(&e)))
        .context("failed to list the local user pool's users")?;
    let first_user = if users.users().is_empty() {
        let password = new_password()?;
        // A first approver left from an earlier pool gets the new password below.
        create_user(c, &pool.id, LOCAL_FIRST_USER, &password).await?;
        c.cognito
            .admin_set_user_password()
            .user_pool_id(&pool.id)
            .username(LOCAL_FIRST_USER)
            .password(&password)
            .permanent(true)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe_err(&e)))
            .context("failed to set the first approver's password")?;
        add_to_approvers(c, &pool.id, LOCAL_FIRST_USER).await?;
        changed.push(format!("first approver {LOCAL_FIRST_USER}"));
        Some(FirstUser {
            email: LOCAL_FIRST_USER.into(),
            password,
        })
    } else {
        None
    };
    Ok(LocalAuth {
        user_pool_id: pool.id,
        client_id,
        first_user,
        changed,
    })
}

/// The REST API's Cognito authorizer, created unless one of that name exists. The emulator
/// cannot attach it to the methods (no UpdateMethod): the methods keep the template's
/// `COGNITO_USER_POOLS` authorization type, and the local gateway enforces the API's authorizer
/// for them.
async fn ensure_authorizer(
    c: &Clients,
    env: &Environment,
    rest_api_id: &str,
    pool_arn: &str,
) -> Result<bool> {
    let existing = c
        .apigateway
        .get_authorizers()
        .rest_api_id(rest_api_id)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe_err(&e)))
        .with_context(|| format!("failed to list the authorizers of REST API {rest_api_id}"))?;
    let name = pool_name(env);
    if existing
        .items()
        .iter()
        .any(|a| a.name() == Some(name.as_str()) && a.provider_arns().iter().any(|p| p == pool_arn))
    {
        return Ok(false);
    }
    c.apigateway
        .create_authorizer()
        .rest_api_id(rest_api_id)
        .name(&name)
        .r#type(aws_sdk_apigateway::types::AuthorizerType::CognitoUserPools)
        .provider_arns(pool_arn)
        .identity_source("method.request.header.Authorization")
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe_err(&e)))
        .with_context(|| format!("failed to create the authorizer of REST API {rest_api_id}"))?;
    Ok(true)
}

/// Sets a function's USER_POOL_ID and USER_POOL_CLIENT_ID (the emulator drops the template's
/// references to the pool it skipped). Returns whether it changed anything.
async fn point_function(c: &Clients, function: &str, pool: &str, client: &str) -> Result<bool> {
    let cfg = c
        .lambda
        .get_function_configuration()
        .function_name(function)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe_err(&e)))
        .with_context(|| format!("failed to read function {function}'s configuration"))?;
    let mut vars = cfg
        .environment()
        .and_then(|e| e.variables())
        .cloned()
        .unwrap_or_default();
    if vars.get("USER_POOL_ID").map(String::as_str) == Some(pool)
        && vars.get("USER_POOL_CLIENT_ID").map(String::as_str) == Some(client)
    {
        return Ok(false);
    }
    vars.insert("USER_POOL_ID".into(), pool.into());
    vars.insert("USER_POOL_CLIENT_ID".into(), client.into());
    c.lambda
        .update_function_configuration()
        .function_name(function)
        .environment(
            aws_sdk_lambda::types::Environment::builder()
                .set_variables(Some(vars))
                .build(),
        )
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe_err(&e)))
        .with_context(|| format!("failed to update function {function}'s configuration"))?;
    Ok(true)
}

/// Creates a user with a temporary password; `false` when the user exists already.
async fn create_user(c: &Clients, pool: &str, email: &str, password: &str) -> Result<bool> {
    let sent = c
        .cognito
        .admin_create_user()
        .user_pool_id(pool)
        .username(email)
        .user_attributes(
            AttributeType::builder()
                .name("email")
                .value(email)
                .build()?,
        )
        .user_attributes(
            AttributeType::builder()
                .name("email_verified")
                .value("true")
                .build()?,
        )
        .temporary_password(password)
        // The deployer prints the password; no invitation mail.
        .message_action(MessageActionType::Suppress)
        .send()
        .await;
    match sent {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_username_exists_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(anyhow::anyhow!(describe_err(&e)))
            .with_context(|| format!("failed to add user {email}")),
    }
}

async fn add_to_approvers(c: &Clients, pool: &str, email: &str) -> Result<()> {
    c.cognito
        .admin_add_user_to_group()
        .user_pool_id(pool)
        .username(email)
        .group_name(APPROVERS)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe_err(&e)))
        .with_context(|| format!("failed to add {email} to the {APPROVERS} group"))?;
    Ok(())
}

async fn approvers(c: &Clients, pool: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = c
            .cognito
            .list_users_in_group()
            .user_pool_id(pool)
            .group_name(APPROVERS)
            .set_next_token(next.take())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe_err(&e)))
            .context("failed to list the approvers group")?;
        out.extend(page.users().iter().filter_map(email_of));
        match page.next_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => return Ok(out),
        }
    }
}

fn email_of(u: &cognito::types::UserType) -> Option<String> {
    u.attributes()
        .iter()
        .find(|a| a.name() == "email")
        .and_then(|a| a.value())
        .or(u.username())
        .map(str::to_string)
}

fn check_email(email: &str) -> Result<()> {
    if !looks_like_email(email) {
        bail!("{email:?} is not an email address; users sign in with their email, e.g. deployer users add ana@example.com");
    }
    Ok(())
}

#[derive(Debug, Serialize)]
struct Added {
    email: String,
    approver: bool,
    /// Shown once; the user chooses their own at first sign-in. `None` when the user existed.
    temporary_password: Option<String>,
    user_pool_id: String,
}

/// `deployer users add EMAIL [--approver]`. An existing user with `--approver` is promoted.
pub async fn add(
    c: &Clients,
    env: &Environment,
    email: &str,
    approver: bool,
    format: Format,
    rep: &Reporter,
) -> Result<ExitCode> {
    check_email(email)?;
    let pool = require_pool(c, env).await?;
    let password = new_password()?;
    let created = create_user(c, &pool.id, email, &password).await?;
    if !created && !approver {
        bail!(
            "to make an existing user an approver run `deployer users add {email} --approver`; to start over run `deployer users remove {email}` first: failed to add user {email}: {email} is already a user"
        );
    }
    if approver {
        add_to_approvers(c, &pool.id, email).await?;
    }
    if !created {
        rep.info(&format!("{email} was already a user: now an approver"));
    }
    let out = Added {
        email: email.into(),
        approver,
        temporary_password: created.then(|| password.clone()),
        user_pool_id: pool.id,
    };
    emit(format, &out, || {
        let mut s = String::new();
        if created {
            let _ = writeln!(
                s,
                "added {email}{}",
                if approver {
                    " (approver)"
                } else {
                    " (read-only)"
                }
            );
            let _ = writeln!(s, "temporary password (shown once): {password}");
            let _ = writeln!(
                s,
                "they sign in to the web app with it and choose their own password"
            );
        } else {
            let _ = writeln!(s, "{email} is an approver");
        }
        s
    });
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct Listed {
    email: String,
    status: String,
    approver: bool,
    enabled: bool,
    created: Option<String>,
}

/// `deployer users list`.
pub async fn list(c: &Clients, env: &Environment, format: Format) -> Result<ExitCode> {
    let pool = require_pool(c, env).await?;
    let approvers = approvers(c, &pool.id).await?;
    let mut users = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = c
            .cognito
            .list_users()
            .user_pool_id(&pool.id)
            .set_pagination_token(next.take())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(describe_err(&e)))
            .context("failed to list users")?;
        for u in page.users() {
            let email = email_of(u).unwrap_or_default();
            users.push(Listed {
                approver: approvers.contains(&email),
                status: u
                    .user_status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                enabled: u.enabled(),
                created: u
                    .user_create_date()
                    .and_then(|d| d.fmt(aws_smithy_types::date_time::Format::DateTime).ok()),
                email,
            });
        }
        match page.pagination_token() {
            Some(t) if !t.is_empty() => next = Some(t.to_string()),
            _ => break,
        }
    }
    users.sort_by(|a, b| a.email.cmp(&b.email));
    emit(format, &users, || {
        if users.is_empty() {
            return "no users; add one with `deployer users add EMAIL --approver`\n".into();
        }
        let rows: Vec<Vec<String>> = users
            .iter()
            .map(|u| {
                vec![
                    u.email.clone(),
                    if u.approver { "approver" } else { "read-only" }.into(),
                    u.status.clone(),
                    if u.enabled { "yes" } else { "no" }.into(),
                    u.created.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let mut t = table(&["EMAIL", "ROLE", "STATUS", "ENABLED", "CREATED"], &rows);
        if !t.ends_with('\n') {
            t.push('\n');
        }
        t
    });
    Ok(ExitCode::SUCCESS)
}

/// `deployer users remove EMAIL`.
pub async fn remove(
    c: &Clients,
    env: &Environment,
    email: &str,
    format: Format,
) -> Result<ExitCode> {
    check_email(email)?;
    let pool = require_pool(c, env).await?;
    c.cognito
        .admin_delete_user()
        .user_pool_id(&pool.id)
        .username(email)
        .send()
        .await
        .map_err(|e| {
            let missing = e
                .as_service_error()
                .is_some_and(|s| s.is_user_not_found_exception());
            user_error(env, email, missing, describe_err(&e))
        })
        .with_context(|| format!("failed to remove user {email}"))?;
    emit(format, &serde_json::json!({ "removed": email }), || {
        format!("removed {email}; their tokens stop working when they expire (at most an hour)")
    });
    Ok(ExitCode::SUCCESS)
}

/// A failed call about one user: "not a user" with where to look, or the service's error.
fn user_error(env: &Environment, email: &str, missing: bool, other: String) -> anyhow::Error {
    if missing {
        anyhow::anyhow!(
            "{email} is not a user of {}; `deployer users list` shows who is",
            pool_name(env)
        )
    } else {
        anyhow::anyhow!(other)
    }
}

/// `deployer users reset EMAIL`: a new temporary password, shown once (the way back in for
/// someone who lost theirs, including the local first approver).
pub async fn reset(
    c: &Clients,
    env: &Environment,
    email: &str,
    format: Format,
) -> Result<ExitCode> {
    check_email(email)?;
    let pool = require_pool(c, env).await?;
    let password = new_password()?;
    c.cognito
        .admin_set_user_password()
        .user_pool_id(&pool.id)
        .username(email)
        .password(&password)
        .permanent(false)
        .send()
        .await
        .map_err(|e| {
            let missing = e
                .as_service_error()
                .is_some_and(|s| s.is_user_not_found_exception());
            user_error(env, email, missing, describe_err(&e))
        })
        .with_context(|| format!("failed to reset the password of {email}"))?;
    emit(
        format,
        &serde_json::json!({ "email": email, "temporary_password": password }),
        || {
            format!(
                "temporary password for {email} (shown once): {password}\nthey sign in with it and choose their own\n"
            )
        },
    );
    Ok(ExitCode::SUCCESS)
}

/// Signs a user in with email and password (the web app's flow) and returns the ID token.
/// Used by `deployer users token` for scripts and by tests.
pub async fn sign_in(
    c: &Clients,
    env: &Environment,
    email: &str,
    password: &str,
) -> Result<String> {
    let pool = require_pool(c, env).await?;
    let client = pool
        .client_id
        .context("the user pool has no web client; run `deployer up` again")?;
    let out = c
        .cognito
        .initiate_auth()
        .auth_flow(AuthFlowType::UserPasswordAuth)
        .client_id(client)
        .auth_parameters("USERNAME", email)
        .auth_parameters("PASSWORD", password)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!(describe_err(&e)))
        .with_context(|| format!("failed to sign in as {email}"))?;
    if let Some(ch) = out.challenge_name() {
        bail!(
            "{email} must first answer the {} challenge: sign in once in the web app and choose a password",
            ch.as_str()
        );
    }
    out.authentication_result()
        .and_then(|r| r.id_token())
        .map(str::to_string)
        .context("Cognito answered no ID token")
}
