//! Fixtures shared by the integration tests.

pub mod age;
pub mod ansible;
pub mod http;
pub mod litellm;
pub mod ntlm_gateway;
pub mod powershell;
pub mod project;
pub mod sshd;
pub mod terminal;
pub mod users;
pub mod vllm;
pub mod winrm_replay;
pub mod winrm_standin;
