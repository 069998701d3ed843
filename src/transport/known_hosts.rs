//! OpenSSH known_hosts checking.
