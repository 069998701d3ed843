//! SSH transport (russh): one connection per host for the whole run. (Stub until it lands.)

use async_trait::async_trait;

use super::{
    CommandOutput, RemoteFile, SshOptions, SshTarget, Transport, TransportError, WriteFile,
};

pub struct SshTransport;

impl SshTransport {
    pub async fn connect(
        _target: &SshTarget,
        _opts: &SshOptions,
    ) -> Result<SshTransport, TransportError> {
        Err(TransportError::Unsupported("ssh".into()))
    }
}

#[async_trait]
impl Transport for SshTransport {
    async fn read_files(&self, _paths: &[String]) -> Result<Vec<RemoteFile>, TransportError> {
        Err(TransportError::Unsupported("ssh".into()))
    }
    async fn write_files(&self, _files: &[WriteFile]) -> Result<(), TransportError> {
        Err(TransportError::Unsupported("ssh".into()))
    }
    async fn run(&self, _command: &str) -> Result<CommandOutput, TransportError> {
        Err(TransportError::Unsupported("ssh".into()))
    }
}
